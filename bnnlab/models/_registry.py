"""The model registry: one short, explicit entry point per model name (timm style).

    >>> @register_model("bireal18", paper="...", proxy=dict(width=0.25, stem="cifar", input_size=32))
    ... def bireal18(*, num_classes=1000, in_channels=3, input_size=224, ...): ...

The entry point's keyword defaults are the model's defaults: :class:`ModelInfo` reads
``input_size``, ``num_classes`` and ``in_channels`` from them, and :func:`create_model`
rejects any keyword the entry point does not take.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from bnnlab.errors import BnnlabError
from bnnlab.registry import Registry

__all__ = ["MODELS", "ModelInfo", "ModelEntry", "register_model", "create_model", "list_models", "model_info"]


@dataclass(frozen=True)
class ModelInfo:
    """What the zoo knows about a model name.

    ``input_size`` is the paper's input resolution (square), ``proxy`` the keyword
    arguments of a small CPU-sized variant (``create_model(name, **info.proxy)``), and
    ``options`` every keyword the model accepts with its default.
    """

    name: str
    description: str
    input_size: int
    num_classes: int
    in_channels: int
    paper: str
    proxy: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)


class ModelEntry:
    """A registered model: its entry point and :class:`ModelInfo`. Calling it builds the model."""

    def __init__(self, name: str, factory: Callable[..., nn.Module], paper: str, proxy: dict[str, Any]):
        self.name, self.factory = name, factory
        params = inspect.signature(factory).parameters
        self.options = {k: p.default for k, p in params.items()
                        if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}
        doc = inspect.getdoc(factory) or ""
        self.info = ModelInfo(
            name=name,
            description=doc.splitlines()[0].rstrip(".") if doc else name,
            input_size=self.options["input_size"],
            num_classes=self.options["num_classes"],
            in_channels=self.options["in_channels"],
            paper=paper,
            proxy=dict(proxy),
            options=dict(self.options),
        )
        bad = set(proxy) - set(self.options)
        if bad:
            raise ValueError(f"proxy of model '{name}' uses unknown options {sorted(bad)}")

    def __call__(self, **kwargs: Any) -> nn.Module:
        unknown = [k for k in kwargs if k not in self.options]
        if unknown:
            raise BnnlabError(
                f"model '{self.name}' has no option '{unknown[0]}'; "
                f"options: {', '.join(self.options)}"
            )
        model = self.factory(**kwargs)
        model.model_name = self.name
        return model

    def __repr__(self) -> str:
        return f"ModelEntry({self.name!r})"


MODELS: Registry[ModelEntry] = Registry("model")


def register_model(name: str, *, paper: str, proxy: dict[str, Any] | None = None):
    """Register ``factory`` under ``name``; ``proxy`` gives a small CPU variant's options."""

    def deco(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        MODELS.register(name)(ModelEntry(name, factory, paper, proxy or {}))
        return factory

    return deco


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered model; unknown names raise :class:`~bnnlab.errors.UnknownNameError`
    (with a suggestion) and unknown options a one-line :class:`~bnnlab.errors.BnnlabError`.

        >>> model = create_model("bireal18", num_classes=10, width=0.25, stem="cifar", input_size=32)
    """
    return MODELS.get(name)(**kwargs)


def list_models() -> list[str]:
    """Every registered model name, sorted."""
    return MODELS.names()


def model_info(name: str) -> ModelInfo:
    """The :class:`ModelInfo` of a registered model."""
    return MODELS.get(name).info
