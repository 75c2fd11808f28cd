"""Model complexity: binary/real parameters, memory in bits, BOPs, FLOPs and OPs.

    >>> s = summarize("bireal18")            # paper input size (224), batch of 1
    >>> s.totals["ops"]                      # ~1.64e8
    >>> print(s.to_markdown())

Conventions (those of Bi-Real Net, arXiv:1808.00278, and the ReActNet README,
arXiv:2003.03488):

* One forward pass on a batch of 1 in eval mode (``torch.no_grad``) with forward hooks on
  every ``nn.Conv2d`` / ``nn.Linear`` (including :class:`~bnnlab.binary.BinaryConv2d` and
  :class:`~bnnlab.binary.BinaryLinear`).
* A layer's multiply-accumulates (MACs): conv ``H_out * W_out * C_out * C_in/groups * k_h * k_w``;
  linear ``in_features * out_features`` (per leading position).
* **BOPs** = MACs of layers whose input *and* weight are both binary (binary activation
  quantizer or an :class:`~bnnlab.binary.RSign` with a binary quantizer, and a binary
  weight quantizer). **FLOPs** = MACs of every other conv/linear layer: the real first
  conv, the real 1x1 downsample convs, the FC, and layers with binary weights but a real
  input (BinaryNet's first conv). BatchNorm, pooling, shortcuts adds, RSign/RPReLU and
  the weight scales are not counted (they are elementwise and negligible, and the papers
  leave them out).
* **OPs** = BOPs / 64 + FLOPs (a 64-bit CPU does 64 binary MACs per instruction).
* Parameters: a *binary* parameter is a weight of a layer with a binary weight quantizer
  (1 bit); every other parameter is *real* (32 bits): first/last layers, biases,
  BatchNorm affine parameters, RSign/RPReLU/PReLU parameters. Buffers (BN running
  statistics) and the per-channel weight scales (computed from the weights) are not
  counted. Memory is in Mbit = 1e6 bits; ``real_memory_mbit`` is the same model with every
  parameter 32-bit and ``memory_saving`` their ratio (Bi-Real-18: 33.6 vs 374.1 Mbit, 11.1x).

Checked against the papers (see tests/test_complexity.py): Bi-Real-18 1.64e8 OPs
(paper 1.63e8; BOPs 1.68e9, FLOPs 1.38e8 vs the paper's 1.68e9 and 1.39e8), ReActNet-A
0.87e8 OPs (BOPs 4.82e9, FLOPs 1.2e7), real ResNet-18 1.81e9 FLOPs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["LayerStats", "ModelSummary", "summarize"]

_TOTAL_KEYS = ("params", "binary_params", "real_params", "memory_mbit", "real_memory_mbit",
               "memory_saving", "macs", "bops", "flops", "ops")


@dataclass
class LayerStats:
    """One module's own parameters and, for conv/linear layers, its operation counts."""

    name: str
    type: str
    binary_input: bool = False
    binary_weight: bool = False
    binary_params: int = 0
    real_params: int = 0
    macs: int = 0
    bops: int = 0
    flops: int = 0
    output_shape: tuple[int, ...] = ()

    @property
    def memory_bits(self) -> int:
        return self.binary_params + 32 * self.real_params


@dataclass
class ModelSummary:
    """Per-layer rows and model totals (see the module docstring for the conventions)."""

    model: str
    input_shape: tuple[int, ...]
    layers: list[LayerStats] = field(default_factory=list)
    totals: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable: ``{"model", "input_shape", "totals", "layers"}``."""
        return {
            "model": self.model,
            "input_shape": list(self.input_shape),
            "totals": {k: (float(v) if isinstance(v, float) else int(v)) for k, v in self.totals.items()},
            "layers": [dict(asdict(r), output_shape=list(r.output_shape)) for r in self.layers],
        }

    def to_frame(self):
        """Per-layer :class:`pandas.DataFrame` (one row per module with parameters or MACs)."""
        import pandas as pd

        rows = [dict(asdict(r), output_shape="x".join(map(str, r.output_shape))) for r in self.layers]
        columns = [f for f in LayerStats.__dataclass_fields__]
        return pd.DataFrame(rows, columns=columns)

    def totals_line(self) -> str:
        t = self.totals
        return (f"{self.model}: params {t['params'] / 1e6:.2f}M ({t['binary_params'] / 1e6:.2f}M binary), "
                f"memory {t['memory_mbit']:.1f} Mbit ({t['memory_saving']:.1f}x smaller), "
                f"BOPs {t['bops']:.3g}, FLOPs {t['flops']:.3g}, OPs {t['ops']:.3g}")

    def to_markdown(self, layers: bool = False) -> str:
        """A Markdown totals table; with ``layers=True`` the per-layer table follows."""
        t = self.totals
        lines = [
            f"**{self.model}** (input {'x'.join(map(str, self.input_shape))})",
            "",
            "| params | binary params | real params | memory (Mbit) | 32-bit memory (Mbit) | saving | "
            "BOPs | FLOPs | OPs |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
            f"| {t['params']:,} | {t['binary_params']:,} | {t['real_params']:,} | {t['memory_mbit']:.2f} | "
            f"{t['real_memory_mbit']:.2f} | {t['memory_saving']:.2f}x | {t['bops']:.3g} | {t['flops']:.3g} | "
            f"{t['ops']:.3g} |",
        ]
        if layers:
            lines += ["", self.to_frame().to_markdown(index=False)]
        return "\n".join(lines)

    def rich_table(self, layers: bool = True):
        """A :class:`rich.table.Table`: per-layer rows (conv/linear only) and a totals row."""
        from rich.table import Table

        title = f"{self.model} ({'x'.join(map(str, self.input_shape))})"
        t = self.totals
        if not layers:
            table = Table(title=title)
            table.add_column("total")
            table.add_column("value", justify="right")
            for label, value in (("params", f"{t['params']:,}"), ("binary params", f"{t['binary_params']:,}"),
                                 ("real params", f"{t['real_params']:,}"),
                                 ("memory (Mbit)", f"{t['memory_mbit']:.2f}"),
                                 ("32-bit memory (Mbit)", f"{t['real_memory_mbit']:.2f}"),
                                 ("saving", f"{t['memory_saving']:.2f}x"), ("BOPs", f"{t['bops']:.3g}"),
                                 ("FLOPs", f"{t['flops']:.3g}"), ("OPs = BOPs/64 + FLOPs", f"{t['ops']:.3g}")):
                table.add_row(label, value)
            return table
        table = Table(title=title)
        for col in ("layer", "type", "in", "w", "binary params", "real params", "BOPs", "FLOPs", "output"):
            table.add_column(col, justify="left" if col in ("layer", "type", "output") else "right")
        if layers:
            for r in self.layers:
                if not r.macs:
                    continue
                table.add_row(r.name, r.type, "1b" if r.binary_input else "32b",
                              "1b" if r.binary_weight else "32b", f"{r.binary_params:,}",
                              f"{r.real_params:,}", f"{r.bops:.3g}", f"{r.flops:.3g}",
                              "x".join(map(str, r.output_shape)))
        t = self.totals
        table.add_section()
        table.add_row("total", "", "", "", f"{t['binary_params']:,}", f"{t['real_params']:,}",
                      f"{t['bops']:.3g}", f"{t['flops']:.3g}",
                      f"OPs {t['ops']:.3g}, {t['memory_mbit']:.1f} Mbit", style="bold")
        return table


def _input_is_binary(module) -> bool:
    q = getattr(module, "input_quantizer", None)
    if q is None:
        return False
    inner = getattr(q, "quantizer", None)  # RSign wraps an activation quantizer
    if inner is not None:
        q = inner
    return bool(getattr(q, "is_binary", False))


def _weight_is_binary(module) -> bool:
    return bool(getattr(module, "has_binary_weight", False))


def _macs(module, output) -> int:
    from torch import nn

    if isinstance(module, nn.Conv2d):
        k = module.kernel_size[0] * module.kernel_size[1] * (module.in_channels // module.groups)
        return int(output[0].numel()) * k
    if isinstance(module, nn.Linear):
        return int(output[0].numel()) * module.in_features
    return 0


def summarize(model_or_name, input_size: int | None = None, in_channels: int | None = None,
              **model_kwargs) -> ModelSummary:
    """Count parameters, memory and operations of a model (or a registered model name).

    With a name, the model is built with ``model_kwargs`` (and ``input_size`` /
    ``in_channels`` when given, so size-dependent layers match; ResNet-style models then
    pick their stem from the input size unless ``stem`` is given). The forward pass uses a
    batch of 1 at ``input_size`` (default: the model's own ``input_size``, i.e. the
    paper's).
    """
    import torch
    from torch import nn

    if isinstance(model_or_name, str):
        from bnnlab.models import create_model

        kwargs = dict(model_kwargs)
        if input_size is not None:
            kwargs["input_size"] = input_size
        if in_channels is not None:
            kwargs["in_channels"] = in_channels
        model, label = create_model(model_or_name, **kwargs), model_or_name
    else:
        if model_kwargs:
            raise TypeError("model keyword arguments only apply when a model name is given")
        model = model_or_name
        label = getattr(model, "model_name", type(model).__name__)
    size = input_size or getattr(model, "input_size", None) or 224
    channels = in_channels or getattr(model, "in_channels", None) or 3
    shape = (1, channels, size, size)

    rows: dict[str, LayerStats] = {}
    for name, module in model.named_modules():
        own = list(module.parameters(recurse=False))
        if not own and not isinstance(module, (nn.Conv2d, nn.Linear)):
            continue
        binary_w = _weight_is_binary(module)
        row = LayerStats(name or "(model)", type(module).__name__, _input_is_binary(module), binary_w)
        for pname, p in module.named_parameters(recurse=False):
            if binary_w and pname == "weight":
                row.binary_params += p.numel()
            else:
                row.real_params += p.numel()
        rows[name] = row

    def hook(module, inputs, output, row):
        macs = _macs(module, output)
        row.macs += macs
        if row.binary_input and row.binary_weight:
            row.bops += macs
        else:
            row.flops += macs
        row.output_shape = tuple(output.shape[1:])

    handles = [m.register_forward_hook(lambda m, i, o, r=rows[n]: hook(m, i, o, r))
               for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    was_training = model.training
    try:
        model.eval()
        p = next(model.parameters(), None)
        x = torch.zeros(shape) if p is None else torch.randn(shape, dtype=p.dtype, device=p.device)
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)

    layers = list(rows.values())
    binary = sum(r.binary_params for r in layers)
    real = sum(r.real_params for r in layers)
    bops = sum(r.bops for r in layers)
    flops = sum(r.flops for r in layers)
    memory = (binary + 32 * real) / 1e6
    real_memory = 32 * (binary + real) / 1e6
    totals = dict(params=binary + real, binary_params=binary, real_params=real, memory_mbit=memory,
                  real_memory_mbit=real_memory, memory_saving=real_memory / memory if memory else 1.0,
                  macs=sum(r.macs for r in layers), bops=bops, flops=flops, ops=bops / 64 + flops)
    return ModelSummary(label, shape, layers, totals)


def list_summary(names: list[str] | None = None):
    """One row per registered model at its paper input size, as a :class:`pandas.DataFrame`.

    Columns: model, input, params (M), binary params (M), memory (Mbit), saving vs 32-bit,
    BOPs, FLOPs, OPs.
    """
    import pandas as pd

    from bnnlab.models import list_models

    rows = []
    for name in names or list_models():
        s = summarize(name)
        t = s.totals
        rows.append({"model": name, "input": "x".join(map(str, s.input_shape[1:])),
                     "params (M)": t["params"] / 1e6, "binary (M)": t["binary_params"] / 1e6,
                     "memory (Mbit)": t["memory_mbit"], "saving": t["memory_saving"],
                     "BOPs": float(t["bops"]), "FLOPs": float(t["flops"]), "OPs": float(t["ops"])})
    return pd.DataFrame(rows)
