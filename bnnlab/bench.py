"""``bnnlab bench``: the speed figures that matter for BNN training, as ratios.

Sections (every figure is a warm-up followed by the median of repeated runs, timed with
:func:`time.perf_counter`, with ``torch.cuda.synchronize`` on CUDA):

1. **train** -- one training step (forward, cross-entropy backward, ``Adam.step``) of
   ``bireal18`` (``stem="cifar"``, 32x32 input, 10 classes) and of ``bireal20``, binary
   (``activation="approx"``, ``weight="scaled"``) vs the *identical* network with real
   activations and weights (``activation="relu"``, ``weight="real"``: same layers, same
   parameter count, ReLU instead of sign). Ratio ``binary / real``.
2. **reference** -- the same binary ``bireal20`` built here in the style of the official
   Bi-Real Net / ReActNet PyTorch code (``sign(x).detach() - F(x).detach() + F(x)`` with the
   three-mask polynomial; ``HardBinaryConv``'s ``scaled.detach() - clamp(w).detach() +
   clamp(w)``) vs bnnlab's ``bireal20`` with the same gradients (``activation="approx"``,
   ``weight="scaled-official"``). Ratio ``bnnlab / reference``.
3. **optimizer** -- :class:`~bnnlab.binary.Bop` step vs ``torch.optim.Adam(foreach=True)``
   and ``Adam(fused=True)`` (where the device supports it) on tensors shaped like
   Bi-Real-18's binary weights (~11M); ratios of step times and of optimizer-state bytes.
4. **cli** -- ``bnnlab --help`` start-up time (a fresh ``python -m bnnlab --help``
   process, median of a few runs) and, with ``quickstart=True``, the wall time of
   ``bnnlab reproduce quickstart`` (in a temporary directory).

Binary and real (or bnnlab and reference) steps are timed interleaved (A, B, A, B, ...)
so that load from other processes hits both alike.

    >>> result = run_bench(quick=True)
    >>> print_bench(result)
"""

from __future__ import annotations

import json as _json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["run_bench", "print_bench", "TARGETS", "official_bireal20"]

#: ratio key -> (comparison, target) the issue sets; "<=" means lower is better.
TARGETS: dict[str, tuple[str, float]] = {
    "train_bireal18": ("<=", 1.15),
    "train_bireal20": ("<=", 1.30),
    "bnnlab_vs_reference": ("<=", 0.75),
    "bop_vs_adam_foreach_step": ("<=", 0.80),
    "bop_vs_adam_fused_step": ("<=", math.inf),  # reported, no target
    "bop_vs_adam_state_bytes": ("==", 0.5),
}
CLI_TARGET_S = 1.0
QUICKSTART_TARGET_S = 60.0


# --------------------------------------------------------------------------- timing


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time_interleaved(fns: list[Callable[[], Any]], device: torch.device, repeats: int,
                      warmup: int) -> list[list[float]]:
    """Seconds per call of each function (``repeats`` each), timed interleaved after ``warmup``."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    _sync(device)
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            _sync(device)
            t0 = time.perf_counter()
            fn()
            _sync(device)
            times[i].append(time.perf_counter() - t0)
    return times


# --------------------------------------------------------------------------- official-style reference


class _OfficialBinaryActivation(nn.Module):
    """``BinaryActivation`` of the official Bi-Real Net PyTorch code (detach trick)."""

    def forward(self, x):
        out_forward = torch.sign(x)
        mask1 = x < -1
        mask2 = x < 0
        mask3 = x < 1
        out1 = (-1) * mask1.type(torch.float32) + (x * x + 2 * x) * (1 - mask1.type(torch.float32))
        out2 = out1 * mask2.type(torch.float32) + (-x * x + 2 * x) * (1 - mask2.type(torch.float32))
        out3 = out2 * mask3.type(torch.float32) + 1 * (1 - mask3.type(torch.float32))
        return out_forward.detach() - out3.detach() + out3


class _OfficialHardBinaryConv(nn.Module):
    """``HardBinaryConv`` of the official code: detached per-channel scale, clip-STE weights."""

    def __init__(self, cin, cout, kernel_size=3, stride=1, padding=1):
        super().__init__()
        self.stride, self.padding = stride, padding
        self.shape = (cout, cin, kernel_size, kernel_size)
        self.weights = nn.Parameter(torch.rand((cin * cout * kernel_size * kernel_size, 1)) * 0.001)

    def forward(self, x):
        real_weights = self.weights.view(self.shape)
        scaling_factor = torch.mean(torch.mean(torch.mean(abs(real_weights), dim=3, keepdim=True),
                                               dim=2, keepdim=True), dim=1, keepdim=True)
        scaling_factor = scaling_factor.detach()
        binary_weights_no_grad = scaling_factor * torch.sign(real_weights)
        cliped_weights = torch.clamp(real_weights, -1.0, 1.0)
        binary_weights = binary_weights_no_grad.detach() - cliped_weights.detach() + cliped_weights
        return F.conv2d(x, binary_weights, stride=self.stride, padding=self.padding)


class _OfficialBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.binary_activation = _OfficialBinaryActivation()
        self.binary_conv = _OfficialHardBinaryConv(cin, cout, stride=stride)
        self.bn1 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.AvgPool2d(kernel_size=2, stride=stride) if stride != 1 else nn.Identity(),
                nn.Conv2d(cin, cout, 1, bias=False),
                nn.BatchNorm2d(cout),
            )

    def forward(self, x):
        residual = x
        out = self.bn1(self.binary_conv(self.binary_activation(x)))
        if self.downsample is not None:
            residual = self.downsample(x)
        out += residual
        return out


class _OfficialNet(nn.Module):
    def __init__(self, channels=(16, 32, 64), units=(6, 6, 6), num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, channels[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels[0])
        layers, cin = [], channels[0]
        for i, (c, n) in enumerate(zip(channels, units, strict=True)):
            for j in range(n):
                layers.append(_OfficialBlock(cin, c, 2 if (i > 0 and j == 0) else 1))
                cin = c
        self.layers = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        x = self.layers(self.bn1(self.conv1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def official_bireal20(num_classes: int = 10) -> nn.Module:
    """Bi-Real-20 (3 stages x 6 binary convs, 16/32/64 channels, CIFAR stem) written the way
    the official Bi-Real Net PyTorch code writes its layers; the benchmark's reference."""
    return _OfficialNet(num_classes=num_classes)


# --------------------------------------------------------------------------- sections


class _Ctx:
    def __init__(self, device, precision, channels_last):
        self.device = torch.device(device)
        if self.device.type == "cuda" and self.device.index is None:
            self.device = torch.device("cuda", torch.cuda.current_device())
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
        self.precision, self.channels_last = precision, channels_last

    def autocast(self):
        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return nullcontext()

    def prepare(self, model: nn.Module, x: torch.Tensor):
        model = model.to(self.device)
        x = x.to(self.device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
            x = x.contiguous(memory_format=torch.channels_last)
        return model.train(), x


def _train_step_fn(ctx: _Ctx, model: nn.Module, x, y) -> Callable[[], None]:
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step():
        opt.zero_grad(set_to_none=True)
        with ctx.autocast():
            loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()

    return step


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _compare_training(ctx: _Ctx, name_a, model_a, name_b, model_b, batch, repeats, warmup):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, 32, 32, generator=gen)
    y = torch.randint(0, 10, (batch,), generator=gen)
    model_a, xa = ctx.prepare(model_a, x)
    model_b, xb = ctx.prepare(model_b, x)
    y = y.to(ctx.device)
    times = _time_interleaved([_train_step_fn(ctx, model_a, xa, y), _train_step_fn(ctx, model_b, xb, y)],
                              ctx.device, repeats, warmup)
    ta, tb = (statistics.median(t) for t in times)
    return {name_a + "_ms": ta * 1e3, name_b + "_ms": tb * 1e3, "ratio": ta / tb, "batch": batch,
            name_a + "_min_ms": min(times[0]) * 1e3, name_b + "_min_ms": min(times[1]) * 1e3,
            "params_" + name_a: _n_params(model_a), "params_" + name_b: _n_params(model_b)}


def _bench_train(ctx: _Ctx, batch: int, repeats: int, warmup: int) -> dict[str, dict]:
    from bnnlab.models import create_model

    out = {}
    specs = {
        "bireal18": lambda **kw: create_model("bireal18", stem="cifar", input_size=32, num_classes=10, **kw),
        "bireal20": lambda **kw: create_model("bireal20", num_classes=10, **kw),
    }
    for name, make in specs.items():
        torch.manual_seed(0)
        binary = make(activation="approx", weight="scaled")
        torch.manual_seed(0)
        real = make(activation="relu", weight="real")
        r = _compare_training(ctx, "binary", binary, "real", real, batch, repeats, warmup)
        r.update(model=name, binary_spec="approx/scaled", real_spec="relu/real")
        out[name] = r
    return out


def _bench_reference(ctx: _Ctx, batch: int, repeats: int, warmup: int) -> dict:
    from bnnlab.models import create_model

    torch.manual_seed(0)
    ours = create_model("bireal20", num_classes=10, activation="approx", weight="scaled-official")
    ref = official_bireal20(10)
    r = _compare_training(ctx, "bnnlab", ours, "reference", ref, batch, repeats, warmup)
    r.update(model="bireal20", bnnlab_spec="approx/scaled-official", reference_spec="official-style detach")
    return r


def _bireal18_binary_shapes() -> list[torch.Size]:
    from bnnlab.binary import binary_weights
    from bnnlab.models import create_model

    model = create_model("bireal18", stem="cifar", input_size=32, num_classes=10)
    return [p.shape for _, p in binary_weights(model)]


def _state_bytes(opt: torch.optim.Optimizer) -> int:
    return sum(v.nbytes for s in opt.state.values() for v in s.values() if torch.is_tensor(v))


def _bench_optimizer(ctx: _Ctx, repeats: int, warmup: int) -> dict:
    from bnnlab.binary import Bop

    shapes = _bireal18_binary_shapes()
    gen = torch.Generator().manual_seed(0)
    base = [torch.randn(s, generator=gen) for s in shapes]
    grads = [torch.randn(s, generator=gen) * 1e-3 for s in shapes]

    def make(factory):
        ps = [nn.Parameter(b.to(ctx.device)) for b in base]
        for p, g in zip(ps, grads, strict=True):
            p.grad = g.to(ctx.device)
        return factory(ps)

    makers = {
        "bop": lambda ps: Bop(ps, gamma=1e-4, tau=1e-8),
        "adam_foreach": lambda ps: torch.optim.Adam(ps, lr=1e-3, foreach=True),
        "adam_fused": lambda ps: torch.optim.Adam(ps, lr=1e-3, fused=True),
    }
    opts, notes = {}, {}
    for name, factory in makers.items():
        try:
            opt = make(factory)
            opt.step()  # creates the state; Bop's first step maps weights to +-1
            opts[name] = opt
        except (RuntimeError, ValueError) as e:  # fused Adam where the device lacks it
            notes[name] = str(e).splitlines()[0]
    names = list(opts)
    times = _time_interleaved([opts[n].step for n in names], ctx.device, repeats, warmup)
    res: dict[str, Any] = {"n_weights": sum(s.numel() for s in shapes), "n_tensors": len(shapes),
                           "skipped": notes}
    for n, t in zip(names, times, strict=True):
        res[n + "_ms"] = statistics.median(t) * 1e3
        res[n + "_min_ms"] = min(t) * 1e3
        res[n + "_state_bytes"] = _state_bytes(opts[n])
    return res


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine() or "cpu"


def _run_cli(args: list[str], cwd: str | None = None, timeout: float = 600) -> tuple[float, int, str]:
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "bnnlab", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
    wall = time.perf_counter() - t0
    tail = (proc.stderr or proc.stdout or "").strip().splitlines()
    return wall, proc.returncode, tail[-1] if tail else ""


def _bench_cli(runs: int, quickstart: bool) -> dict:
    res: dict[str, Any] = {}
    try:
        walls = []
        for _ in range(runs):
            wall, rc, tail = _run_cli(["--help"], timeout=120)
            if rc != 0:
                raise RuntimeError(f"exit code {rc}: {tail}")
            walls.append(wall)
        res["help_s"] = statistics.median(walls)
        res["help_runs"] = runs
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
        res["help_s"] = None
        res["help_error"] = str(e)
    if quickstart:
        try:
            with tempfile.TemporaryDirectory(prefix="bnnlab-bench-") as tmp:
                wall, rc, tail = _run_cli(["reproduce", "quickstart"], cwd=tmp)
            if rc != 0:
                raise RuntimeError(f"exit code {rc}: {tail}")
            res["quickstart_s"] = wall
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
            res["quickstart_s"] = None
            res["quickstart_error"] = str(e)
    return res


# --------------------------------------------------------------------------- entry points


def run_bench(device: str = "cpu", precision: str = "fp32", channels_last: bool = False,
              quick: bool = False, repeats: int | None = None, batch_size: int | None = None,
              quickstart: bool = False, cli: bool = True, threads: int | None = None,
              json: bool = False, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the benchmark and return its figures as a JSON-serialisable dict.

    Args:
        device: ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        precision: ``"fp32"``, or ``"bf16"`` (``torch.autocast`` with bfloat16 around the
            forward pass and loss; parameters and optimizer stay float32).
        channels_last: put models and inputs in ``torch.channels_last`` (GPU runs).
        quick: smoke-test sizes (batch 8, 2 repeats, 1 warm-up, one CLI run); the figures
            are then not meaningful, only their presence.
        repeats: timed repetitions per figure (default 10, quick 2); the median is reported.
        batch_size: training-step batch (default 64, quick 8).
        quickstart: also time ``bnnlab reproduce quickstart`` (skipped with a note if the
            command fails).
        cli: time ``bnnlab --help`` (default on).
        threads: ``torch.set_num_threads`` for the run (restored afterwards); default: as is.
        json: the caller prints JSON: no progress lines at all (they go to stderr anyway).
        progress: called with a short line as each section starts (default: stderr).

    Returns:
        ``{"env": {...}, "train": {...}, "reference": {...}, "optimizer": {...},
        "cli": {...}, "ratios": {key: float}, "targets": {key: [op, value]}}``. Ratio keys:
        ``train_bireal18``, ``train_bireal20`` (binary/real step), ``bnnlab_vs_reference``,
        ``bop_vs_adam_foreach_step``, ``bop_vs_adam_fused_step`` (absent where fused Adam is
        unsupported), ``bop_vs_adam_state_bytes``.
    """
    old_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        return _run_bench(device, precision, channels_last, quick, repeats, batch_size, quickstart, cli,
                          json, progress)
    finally:
        torch.set_num_threads(old_threads)


def _run_bench(device, precision, channels_last, quick, repeats, batch_size, quickstart, cli, json,
               progress) -> dict[str, Any]:
    ctx = _Ctx(device, precision, channels_last)
    if ctx.device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but torch.cuda.is_available() is False")
    repeats = repeats or (2 if quick else 10)
    warmup = 1 if quick else 3
    batch = batch_size or (8 if quick else 64)
    if progress is None:
        progress = (lambda s: None) if json else (lambda s: print(f"[bench] {s}", file=sys.stderr, flush=True))

    env = {
        "device": str(ctx.device),
        "device_name": (torch.cuda.get_device_name(ctx.device) if ctx.device.type == "cuda"
                        else _cpu_name()),
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "precision": precision,
        "dtype": "bfloat16 autocast" if precision == "bf16" else "float32",
        "channels_last": channels_last,
        "torch": torch.__version__,
        "quick": quick,
        "repeats": repeats,
        "warmup": warmup,
    }
    result: dict[str, Any] = {"env": env}
    t0 = time.perf_counter()
    progress(f"training step, batch {batch}: bireal18 (cifar stem) and bireal20, binary vs real")
    result["train"] = _bench_train(ctx, batch, repeats, warmup)
    progress("training step: bnnlab bireal20 vs official-style reference")
    result["reference"] = _bench_reference(ctx, batch, repeats, warmup)
    progress("optimizer step: Bop vs Adam on Bi-Real-18's binary weights")
    result["optimizer"] = _bench_optimizer(ctx, repeats * 2, warmup)
    if cli or quickstart:
        progress("CLI start-up" + (" and quickstart" if quickstart else ""))
        result["cli"] = _bench_cli(1 if quick else 5, quickstart) if cli else _bench_cli(0, quickstart)
    env["bench_s"] = time.perf_counter() - t0

    opt = result["optimizer"]
    ratios = {
        "train_bireal18": result["train"]["bireal18"]["ratio"],
        "train_bireal20": result["train"]["bireal20"]["ratio"],
        "bnnlab_vs_reference": result["reference"]["ratio"],
        "bop_vs_adam_foreach_step": opt["bop_ms"] / opt["adam_foreach_ms"],
        "bop_vs_adam_state_bytes": opt["bop_state_bytes"] / opt["adam_foreach_state_bytes"],
    }
    if "adam_fused_ms" in opt:
        ratios["bop_vs_adam_fused_step"] = opt["bop_ms"] / opt["adam_fused_ms"]
    result["ratios"] = ratios
    result["targets"] = {k: list(TARGETS[k]) for k in ratios}
    result["targets"] = {k: [op, (None if math.isinf(v) else v)] for k, (op, v) in result["targets"].items()}
    return result


def _meets(op: str, value: float | None, target: float | None) -> bool | None:
    if value is None or target is None:
        return None
    if op == "<=":
        return value <= target
    return abs(value - target) <= 1e-3 * abs(target)


def print_bench(result: dict[str, Any], console=None) -> None:
    """Print :func:`run_bench`'s result as rich tables (figures, ratios and targets)."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    env = result["env"]
    console.print(f"[bold]bnnlab bench[/]: device {env['device']} ({env['device_name']}), "
                  f"threads {env['threads']}, dtype {env['dtype']}, channels_last {env['channels_last']}, "
                  f"torch {env['torch']}; median of {env['repeats']} after {env['warmup']} warm-up"
                  + (" [yellow](QUICK: figures not meaningful)[/]" if env.get("quick") else ""))

    t = Table(title="Training step (forward + backward + Adam), median ms")
    for col in ("model", "A vs B", "batch", "A ms", "B ms", "A / B", "target"):
        t.add_column(col, justify="left" if col in ("model", "A vs B") else "right")
    for k, r in result["train"].items():
        t.add_row(k + (" cifar" if k == "bireal18" else ""), "binary vs real", str(r["batch"]),
                  f"{r['binary_ms']:.1f}", f"{r['real_ms']:.1f}", *_ratio_cells(result, "train_" + k))
    ref = result["reference"]
    t.add_row(ref["model"], "bnnlab vs official", str(ref["batch"]), f"{ref['bnnlab_ms']:.1f}",
              f"{ref['reference_ms']:.1f}", *_ratio_cells(result, "bnnlab_vs_reference"))
    console.print(t)
    console.print("  binary = activation approx, weight scaled; real = activation relu, weight real "
                  "(same layers); bnnlab = approx / scaled-official; official = detach-trick layers")

    opt = result["optimizer"]
    t = Table(title=f"Optimizer step, Bi-Real-18 binary weights ({opt['n_weights'] / 1e6:.1f}M, "
                    f"{opt['n_tensors']} tensors)")
    for col in ("optimizer", "step ms", "state MB"):
        t.add_column(col, justify="right" if col != "optimizer" else "left")
    for n in ("bop", "adam_foreach", "adam_fused"):
        if n + "_ms" in opt:
            t.add_row(n, f"{opt[n + '_ms']:.2f}", f"{opt[n + '_state_bytes'] / 2**20:.1f}")
        elif n in opt.get("skipped", {}):
            t.add_row(n, "skipped", opt["skipped"][n][:40])
    console.print(t)

    t = Table(title="Ratios and targets")
    for col in ("figure", "value", "target", "met"):
        t.add_column(col, justify="left" if col == "figure" else "right")
    for key in result["ratios"]:
        t.add_row(key, *_ratio_cells(result, key, met=True))
    cli = result.get("cli")
    if cli:
        if "help_s" in cli:
            v = cli["help_s"]
            t.add_row("bnnlab --help (s)", "n/a" if v is None else f"{v:.2f}", f"< {CLI_TARGET_S:g}",
                      "" if v is None else _mark(v < CLI_TARGET_S))
        if "quickstart_s" in cli:
            v = cli["quickstart_s"]
            t.add_row("quickstart (s)", "n/a" if v is None else f"{v:.1f}", f"~ {QUICKSTART_TARGET_S:g}",
                      "" if v is None else _mark(v <= QUICKSTART_TARGET_S))
    console.print(t)
    for k in ("help_error", "quickstart_error"):
        if cli and cli.get(k):
            console.print(f"[yellow]{k.replace('_', ' ')}:[/] {cli[k]}")


def _mark(ok: bool | None) -> str:
    return "" if ok is None else ("[green]yes[/]" if ok else "[red]no[/]")


def _ratio_cells(result, key, met=False):
    value = result["ratios"].get(key)
    op, target = result["targets"].get(key, ["<=", None])
    cells = [f"{value:.3f}" if value is not None else "n/a",
             f"{op} {target:g}" if target is not None else "-"]
    if met:
        cells.append(_mark(_meets(op, value, target)))
    return cells


def bench_json(result: dict[str, Any]) -> str:
    """The result as indented JSON text."""
    return _json.dumps(result, indent=2)


def bench_markdown(result: dict[str, Any], command: str = "bnnlab bench") -> str:
    """The printed tables as a Markdown page (for ``results/bench.md``), with the machine,
    the command and the bnnlab commit it ran at."""
    import io

    from rich.console import Console

    from bnnlab.tracking import git_info

    console = Console(record=True, width=120, file=io.StringIO(), color_system=None)
    print_bench(result, console)
    env, g = result["env"], git_info()
    return "\n".join([
        "# bnnlab bench", "",
        f"- command: `{command}`",
        f"- machine: {env['device_name']} ({env['device']}, {env['threads']} threads), "
        f"torch {env['torch']}, dtype {env['dtype']}",
        f"- bnnlab commit: `{g['commit'][:12] or 'unknown'}`" + (" (dirty)" if g["dirty"] == "true" else ""),
        "- ratios are printed, never asserted; absolute times depend on the machine and its load", "",
        "```", console.export_text().rstrip(), "```", ""])
