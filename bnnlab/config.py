"""The training configuration: one validated pydantic model per run step.

A run (``bnnlab train``, one row of a recipe, one variant of ``bnnlab compare``) is a
list of :class:`StepConfig`. Every field has a default, so ``TrainConfig()`` is the
quickstart run (a binary MLP on the bundled digits). Overrides use dotted keys
(``optim.name=bop``), the same syntax as ``bnnlab compare --vary``.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from bnnlab.errors import BnnlabError

__all__ = [
    "Schedule", "DataConfig", "ModelConfig", "OptimConfig", "TeacherConfig", "LossConfig",
    "AugmentConfig", "CmimConfig", "TrainerConfig", "InitConfig", "TrainConfig", "StepConfig",
    "validate_config", "deep_merge", "apply_overrides", "parse_value", "flatten",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class Schedule(_Strict):
    """A value over training: ``constant``, ``cosine`` or ``linear`` from the base value to
    ``end`` (default 0), or ``step`` (multiply by ``factor`` at each of ``milestones``, in
    epochs). ``warmup_epochs`` ramps linearly from 0 first."""

    kind: Literal["constant", "cosine", "linear", "step"] = "constant"
    end: float | None = Field(default=None, ge=0)
    milestones: list[float] = Field(default_factory=list)
    factor: float = Field(default=0.1, gt=0)
    warmup_epochs: float = Field(default=0.0, ge=0)

    def value(self, base: float, epoch: float, total_epochs: float) -> float:
        """Value at fractional ``epoch`` (0 <= epoch <= total_epochs)."""
        if self.warmup_epochs and epoch < self.warmup_epochs:
            return base * (epoch + 1e-12) / self.warmup_epochs
        end = 0.0 if self.end is None else self.end
        t = min(max(epoch / max(total_epochs, 1e-12), 0.0), 1.0)
        if self.kind == "constant":
            return base
        if self.kind == "linear":
            return base + (end - base) * t
        if self.kind == "cosine":
            return end + (base - end) * 0.5 * (1 + math.cos(math.pi * t))
        return base * self.factor ** sum(epoch >= m for m in self.milestones)


class DataConfig(_Strict):
    name: str = "digits"
    data_dir: str | None = None
    batch_size: int = Field(default=64, gt=0)
    val_fraction: float | None = Field(default=None, gt=0, lt=1)
    download: bool = False
    augment: bool = True
    image_size: int | None = Field(default=None, gt=0)
    train_limit: int | None = Field(default=None, gt=0)
    val_limit: int | None = Field(default=None, gt=0)
    num_workers: int = Field(default=0, ge=0)
    normalize: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)


class ModelConfig(_Strict):
    name: str = "binary-mlp"
    activation: str | None = None
    weight: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)


class OptimConfig(_Strict):
    """Optimizer. With ``name: bop`` the binary weights go to Bop (``gamma``, ``tau``,
    ``gamma_schedule``) and every other parameter to Adam (``lr``, ``schedule``)."""

    name: Literal["adam", "adamw", "sgd", "bop"] = "adam"
    lr: float = Field(default=1e-3, gt=0)
    momentum: float = Field(default=0.9, ge=0, lt=1)
    nesterov: bool = False
    weight_decay: float = Field(default=0.0, ge=0)
    weight_decay_on: Literal["all", "conv", "binary"] = "all"
    schedule: Schedule = Field(default_factory=Schedule)
    latent_clip: float | None = Field(default=None, gt=0)
    # Bop defaults: the paper's CIFAR-10 hyperparameter-sweep setting (Helwegen et al. 2019,
    # sec. 5.1); larq's defaults (gamma 1e-4, tau 1e-8) suit 100x more steps per epoch.
    gamma: float = Field(default=1e-3, gt=0, le=1)
    tau: float = Field(default=1e-6, ge=0)
    gamma_schedule: Schedule = Field(default_factory=Schedule)
    foreach: bool | None = None  # None: per-device default (Bop: loop on CPU, foreach on CUDA)


class TeacherConfig(_Strict):
    """A frozen real-valued network: a registered model, with weights from ``checkpoint``
    (a path to a bnnlab/Lightning checkpoint or a torch state_dict file) or from an
    earlier step of the same run (``step:NAME``)."""

    model: str
    options: dict[str, Any] = Field(default_factory=dict)
    checkpoint: str | None = None


class LossConfig(_Strict):
    name: Literal["ce", "kd"] = "ce"
    label_smoothing: float = Field(default=0.0, ge=0, lt=1)
    temperature: float = Field(default=1.0, gt=0)
    hard_weight: float = Field(default=0.0, ge=0)
    teacher: TeacherConfig | None = None

    @model_validator(mode="after")
    def _kd_needs_teacher(self):
        if self.name == "kd" and self.teacher is None:
            raise ValueError("loss 'kd' needs a teacher (loss.teacher.model and .checkpoint)")
        return self


class AugmentConfig(_Strict):
    name: Literal["none", "cutmix", "attentive"] = "none"
    alpha: float = Field(default=1.0, gt=0)
    prob: float = Field(default=1.0, ge=0, le=1)
    grid: int = Field(default=7, gt=0)
    top_k: int = Field(default=6, gt=0)
    extractor: TeacherConfig | None = None

    @model_validator(mode="after")
    def _check(self):
        if self.name == "attentive" and self.extractor is None:
            raise ValueError("augment 'attentive' needs an extractor (augment.extractor.model)")
        if self.top_k > self.grid * self.grid:
            raise ValueError(f"top_k={self.top_k} exceeds grid*grid={self.grid ** 2}")
        return self


class CmimConfig(_Strict):
    """Contrastive mutual-information loss; off while ``alpha`` is 0."""

    alpha: float = Field(default=0.0, ge=0)
    num_negatives: int = Field(default=4096, gt=0)
    temperature: float = Field(default=0.1, gt=0)
    momentum: float = Field(default=0.5, ge=0, lt=1)
    feat_dim: int = Field(default=128, gt=0)
    teacher: TeacherConfig | None = None

    @model_validator(mode="after")
    def _check(self):
        if self.alpha > 0 and self.teacher is None:
            raise ValueError("cmim with alpha > 0 needs a teacher (cmim.teacher.model)")
        return self


class TrainerConfig(_Strict):
    epochs: int = Field(default=15, gt=0)
    accelerator: str = "cpu"
    devices: int | str = 1
    strategy: str = "auto"
    num_nodes: int = Field(default=1, gt=0)
    precision: str = "32-true"
    channels_last: bool = False
    compile: bool = False
    limit_train_batches: float | int | None = None
    limit_val_batches: float | int | None = None
    deterministic: bool = False
    # CPU intra-op threads (torch.set_num_threads); None keeps torch's default. Tiny models
    # (digits) run faster and bit-reproducibly with 1.
    num_threads: int | None = Field(default=None, gt=0)

    @field_validator("precision")
    @classmethod
    def _precision(cls, v: str) -> str:
        ok = {"32-true", "32", "bf16-mixed", "16-mixed", "bf16-true", "64-true"}
        if v not in ok:
            raise ValueError(f"must be one of {sorted(ok)}")
        return v


class InitConfig(_Strict):
    """Where a step's weights start: ``from_: previous`` (the step before), ``step:NAME``,
    a checkpoint path, or nothing (random). ``snap_weights`` overwrites binary latent
    weights with their sign (exact +-1), as Bi-Real's second step."""

    from_: str | None = Field(default=None, alias="from")
    strict: bool = True
    snap_weights: bool = False

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class TrainConfig(_Strict):
    seed: int = 0
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    cmim: CmimConfig = Field(default_factory=CmimConfig)
    trainer: TrainerConfig = Field(default_factory=TrainerConfig)
    init: InitConfig = Field(default_factory=InitConfig)
    train_only: Literal["all", "bn"] = "all"


class StepConfig(TrainConfig):
    name: str = "train"


# --------------------------------------------------------------------------- helpers


def _format_validation_error(err: ValidationError, source: str) -> str:
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"]) or "(top level)"
    msg = first["msg"]
    if first["type"] == "extra_forbidden":
        msg = "unknown field"
    got = first.get("input")
    got_s = "" if first["type"] in ("missing", "extra_forbidden") else f" (got {got!r})"
    if first["type"] == "literal_error" and isinstance(got, str):
        import difflib
        import re

        known = re.findall(r"'([^']*)'", str(first.get("ctx", {}).get("expected", "")))
        close = difflib.get_close_matches(got, known, n=1, cutoff=0.5)
        if close:
            got_s += f". Did you mean '{close[0]}'?"
    more = f" (+{len(err.errors()) - 1} more)" if len(err.errors()) > 1 else ""
    return f"{source}: field '{loc}': {msg}{got_s}{more}"


def validate_config(data: dict[str, Any], source: str = "config", cls: type = StepConfig):
    """Validate a config dict; a bad field raises one-line :class:`BnnlabError`."""
    try:
        return cls.model_validate(data)
    except ValidationError as err:
        raise BnnlabError(_format_validation_error(err, source)) from None


def deep_merge(base: dict, over: dict) -> dict:
    """Recursive dict merge; ``over`` wins; neither input is modified."""
    out = copy.deepcopy(base)
    for k, v in (over or {}).items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def parse_value(text: str) -> Any:
    """Parse a CLI value as YAML (``1e-3`` -> float, ``true`` -> bool, ``[1,2]`` -> list)."""
    if not isinstance(text, str):
        return text
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    # YAML 1.1 reads "1e-3" as a string; accept it as a float
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def apply_overrides(data: dict, overrides: dict[str, Any], merge: bool = False) -> dict:
    """Set dotted keys (``{"optim.name": "bop"}``) in a copy of ``data``.

    String values are parsed as YAML (``"1e-3"`` -> 0.001), as on the command line. With
    ``merge=True`` a non-empty mapping merges into an existing section
    (``model.options: {width: 0.25}`` keeps the other options) while an empty one clears it.
    """
    out = copy.deepcopy(data)
    for key, value in (overrides or {}).items():
        node = out
        parts = str(key).split(".")
        for p in parts[:-1]:
            nxt = node.get(p)
            if nxt is None:
                nxt = node[p] = {}
            elif not isinstance(nxt, dict):
                raise BnnlabError(f"override '{key}': '{p}' is not a section")
            node = nxt
        value, last = parse_value(value), parts[-1]
        if merge and isinstance(value, dict) and value and isinstance(node.get(last), dict):
            node[last] = deep_merge(node[last], value)
        else:
            node[last] = copy.deepcopy(value)
    return out


def flatten(data: dict, prefix: str = "") -> dict[str, Any]:
    """``{"optim": {"lr": 1}}`` -> ``{"optim.lr": 1}`` (for MLflow params)."""
    out: dict[str, Any] = {}
    for k, v in data.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out
