"""``bnnlab train``: one model, one dataset, one tracked run."""

from __future__ import annotations

from pathlib import Path

import typer

from bnnlab.commands._common import console, handle_errors, parse_sets, print_json

_DEFAULT = "(default)"


@handle_errors
def train(
    model: str = typer.Option("binary-mlp", "--model", "-m", help="Model name (see `bnnlab summary`)."),
    activation: str = typer.Option(None, "--activation", "-a",
                                   help="Activation binarizer: ste, approx, approx-detach, or real ones."),
    weight: str = typer.Option(None, "--weight", "-w", help="Weight binarizer: sign, scaled, scaled-official, real."),
    optimizer: str = typer.Option("adam", "--optimizer", "-o", help="adam, adamw, sgd, or bop (+ Adam for reals)."),
    lr: float = typer.Option(None, "--lr", help="Learning rate (of the real-valued optimizer with bop)."),
    gamma: float = typer.Option(None, "--gamma", help="Bop adaptivity rate, in (0, 1]."),
    tau: float = typer.Option(None, "--tau", help="Bop flip threshold, >= 0."),
    weight_decay: float = typer.Option(None, "--weight-decay", help="Weight decay."),
    schedule: str = typer.Option(None, "--schedule", help="LR schedule: constant, cosine, linear, step."),
    epochs: int = typer.Option(None, "--epochs", "-e", help="Epochs."),
    batch_size: int = typer.Option(None, "--batch-size", "-b", help="Batch size."),
    data: str = typer.Option("digits", "--data", "-d", help="Dataset: digits, synthetic, mnist, cifar10, ..."),
    data_dir: Path = typer.Option(None, "--data-dir", help="Folder that holds the dataset."),
    download: bool = typer.Option(False, "--download", help="Allow torchvision to download the dataset."),
    loss: str = typer.Option(None, "--loss", help="ce, or kd (needs --set loss.teacher.model=... )."),
    augment: str = typer.Option(None, "--augment", help="none, cutmix, attentive."),
    seed: int = typer.Option(0, "--seed", help="Random seed (data split, order, init)."),
    accelerator: str = typer.Option("cpu", "--accelerator", help="cpu, gpu, auto."),
    devices: str = typer.Option("1", "--devices", help="Number of devices (or 'auto')."),
    strategy: str = typer.Option("auto", "--strategy", help="Lightning strategy, e.g. ddp."),
    num_nodes: int = typer.Option(1, "--num-nodes", help="Nodes for multi-node (SLURM/torchrun) runs."),
    precision: str = typer.Option("32-true", "--precision", help="32-true, bf16-mixed, 16-mixed."),
    channels_last: bool = typer.Option(False, "--channels-last", help="Use channels_last memory format."),
    compile_: bool = typer.Option(False, "--compile", help="torch.compile the model."),
    threads: int = typer.Option(None, "--threads", help="CPU threads (1 is fastest for tiny models)."),
    config: Path = typer.Option(None, "--config", "-c", help="YAML file with a step config (fields of TrainConfig)."),
    sets: list[str] = typer.Option(None, "--set", "-s", help="Override any config key: --set optim.tau=1e-6."),
    experiment: str = typer.Option("train", "--experiment", help="MLflow experiment name."),
    run_name: str = typer.Option(None, "--run-name", help="MLflow run name."),
    tracking_uri: str = typer.Option(None, "--tracking-uri", help="MLflow store (default: sqlite in ./bnnlab-runs)."),
    resume: bool = typer.Option(
        False, "--resume",
        help="Continue the newest interrupted (KILLED, or RUNNING with its process gone) run with the "
             "same options from its last checkpoint, into the same MLflow run; start one if there is none."),
    resume_run: str = typer.Option(None, "--resume-run", metavar="RUN_ID",
                                   help="Continue this interrupted run (same options required)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Train one model and record params, per-epoch metrics and the checkpoint in MLflow."""
    import yaml

    from bnnlab.config import apply_overrides, validate_config
    from bnnlab.errors import BnnlabError

    base: dict = {}
    if config is not None:
        try:
            base = yaml.safe_load(Path(config).read_text()) or {}
        except (OSError, yaml.YAMLError) as err:
            raise BnnlabError(f"cannot read config {config}: {str(err).splitlines()[0]}") from None
        if not isinstance(base, dict):
            raise BnnlabError(f"config {config}: expected a mapping of config sections")
    flags = {
        "model.name": model, "model.activation": activation, "model.weight": weight,
        "optim.name": optimizer, "optim.lr": lr, "optim.gamma": gamma, "optim.tau": tau,
        "optim.weight_decay": weight_decay, "optim.schedule.kind": schedule,
        "trainer.epochs": epochs, "data.batch_size": batch_size, "data.name": data,
        "data.data_dir": str(data_dir) if data_dir else None, "data.download": download or None,
        "loss.name": loss, "augment.name": augment, "seed": seed,
        "trainer.accelerator": accelerator, "trainer.devices": devices, "trainer.strategy": strategy,
        "trainer.num_nodes": num_nodes, "trainer.precision": precision,
        "trainer.channels_last": channels_last or None, "trainer.compile": compile_ or None,
        "trainer.num_threads": threads,
    }
    overrides = {k: v for k, v in flags.items() if v is not None}
    overrides.update(parse_sets(sets))
    cfg = validate_config(apply_overrides(base, overrides), source="train options")
    from bnnlab.runner import run_steps
    from bnnlab.tracking import Tracker

    tracker = Tracker(tracking_uri)
    name = run_name or f"{cfg.model.name}-{cfg.optim.name}-s{cfg.seed}"
    (res,) = run_steps([cfg], tracker=tracker, experiment=experiment, run_name=name,
                       tags={"bnnlab.command": "train"}, resume=resume_run or resume or None)
    if as_json:
        print_json({"run_id": res.run_id, "status": res.status, "metrics": res.metrics,
                    "checkpoint": str(res.checkpoint), "tracking_uri": tracker.uri})
        return
    c = console()
    m = res.metrics
    c.print(f"[bold]{name}[/] finished in {res.wall_s:.1f}s: val top-1 {m.get('final/val_top1', float('nan')):.4f}"
            f" (best {m.get('best/val_top1', float('nan')):.4f})"
            + (f", mean Bop flip ratio {m['mean/bop_flip_ratio']:.2e}" if "mean/bop_flip_ratio" in m else ""))
    c.print(f"run {res.run_id} in {tracker.uri}; checkpoint {res.checkpoint}")
