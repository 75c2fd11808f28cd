"""The Lightning module: one classification module that composes a model, its loss
terms (cross-entropy, ReActNet's distributional loss, the contrastive MI loss), batch
augmentation (CutMix / Attentive CutMix) and an optimizer pair (Bop for binary weights
with Adam for the rest, or one Adam/SGD for everything).

Optimization is manual (``automatic_optimization = False``) so that Bop and Adam step
together on every batch, and learning rate, Bop's gamma and weight decay follow the
config's schedules as pure functions of the fractional epoch (exact on resume).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from bnnlab.binary import Bop, binary_weights, snap_binary_weights, split_parameters
from bnnlab.config import StepConfig, TeacherConfig
from bnnlab.errors import BnnlabError

__all__ = ["BnnModule", "build_model", "load_model_weights", "build_frozen", "NonFiniteLossError"]


class NonFiniteLossError(BnnlabError):
    """The loss became NaN or Inf (the CLI exits with code 3: training diverged)."""

    exit_code = 3


def build_model(cfg: StepConfig, num_classes: int, in_channels: int, input_size: int) -> nn.Module:
    from bnnlab.models import create_model

    kw: dict[str, Any] = dict(num_classes=num_classes, in_channels=in_channels, input_size=input_size)
    if cfg.model.activation is not None:
        kw["activation"] = cfg.model.activation
    if cfg.model.weight is not None:
        kw["weight"] = cfg.model.weight
    elif cfg.optim.name == "bop":
        kw["weight"] = "sign"  # Bop's setting: plain +-1 weights, no scale, no latent weights
    kw.update(cfg.model.options)
    return create_model(cfg.model.name, **kw)


def _read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise BnnlabError(f"checkpoint not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 -- any unpickling failure is a corrupt file
        raise BnnlabError(f"cannot read checkpoint {path}: {type(err).__name__}: "
                          f"{str(err).splitlines()[0][:160] if str(err) else 'corrupt file'}") from None
    if isinstance(obj, dict) and "state_dict" in obj:
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise BnnlabError(f"checkpoint {path} holds no state_dict")
    if any(k.startswith("model.") for k in obj):
        obj = {k[len("model."):]: v for k, v in obj.items() if k.startswith("model.")}
    return obj


def load_model_weights(model: nn.Module, path: str | Path, strict: bool = True) -> dict[str, list[str]]:
    """Load weights into ``model``, mapping every parameter explicitly.

    Missing or unexpected keys and shape mismatches raise :class:`BnnlabError` listing
    them (the official ReActNet code loads with ``strict=False`` and silently keeps random
    binary convs; bnnlab refuses). ``strict=False`` reports instead of failing.
    """
    state = _read_state_dict(path)
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shape = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    problems = {"missing": missing, "unexpected": unexpected, "shape mismatch": shape}
    if strict and any(problems.values()):
        detail = "; ".join(f"{k}: {', '.join(v[:6])}{' ...' if len(v) > 6 else ''} ({len(v)})"
                           for k, v in problems.items() if v)
        raise BnnlabError(f"checkpoint {path} does not match model {type(model).__name__}: {detail}")
    model.load_state_dict({k: v for k, v in state.items() if k in own and k not in shape}, strict=False)
    return problems


def build_frozen(spec: TeacherConfig, num_classes: int, in_channels: int, input_size: int) -> nn.Module:
    """A frozen, eval-mode network from a :class:`TeacherConfig` with a resolved checkpoint."""
    from bnnlab.models import create_model

    net = create_model(spec.model, num_classes=num_classes, in_channels=in_channels,
                       input_size=input_size, **spec.options)
    if spec.checkpoint:
        if spec.checkpoint.startswith("step:"):
            raise BnnlabError(f"teacher checkpoint '{spec.checkpoint}' was not resolved; "
                              "'step:NAME' works only inside a multi-step run")
        load_model_weights(net, spec.checkpoint)
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def _topk_correct(logits: torch.Tensor, y: torch.Tensor, k: int) -> torch.Tensor:
    k = min(k, logits.shape[1])
    top = logits.topk(k, dim=1).indices
    return (top == y.view(-1, 1)).any(dim=1).float().mean()


class BnnModule(L.LightningModule):
    """Classification module for one training step of a bnnlab run.

    Args:
        config: the resolved :class:`~bnnlab.config.StepConfig` as a dict.
        data_info: ``num_classes``, ``in_channels``, ``input_size``, ``train_size``.
    """

    def __init__(self, config: dict[str, Any], data_info: dict[str, int]):
        super().__init__()
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.cfg = cfg = StepConfig.model_validate(config)
        self.info = data_info
        dims = (data_info["num_classes"], data_info["in_channels"], data_info["input_size"])
        self.model = build_model(cfg, *dims)
        if cfg.init.from_ and cfg.init.from_ not in ("previous",) and not cfg.init.from_.startswith("step:"):
            load_model_weights(self.model, cfg.init.from_, strict=cfg.init.strict)
        if cfg.init.snap_weights:
            snap_binary_weights(self.model)
        if cfg.train_only == "bn":
            for m in self.model.modules():
                for p in m.parameters(recurse=False):
                    p.requires_grad_(isinstance(m, nn.modules.batchnorm._BatchNorm))
        # frozen helpers live outside the module tree: not trained, not checkpointed
        self._frozen: dict[str, nn.Module] = {}
        self._frozen_by_spec: dict[str, nn.Module] = {}
        if cfg.loss.name == "kd":
            self._frozen["teacher"] = self._shared_frozen(cfg.loss.teacher, *dims)
        if cfg.cmim.alpha > 0:
            self._frozen["cmim_teacher"] = self._shared_frozen(cfg.cmim.teacher, *dims)
        self.kd = self.cmim = self.mixer = None
        if cfg.loss.name == "kd":
            from bnnlab.methods import DistributionalLoss

            self.kd = DistributionalLoss(temperature=cfg.loss.temperature, hard_weight=cfg.loss.hard_weight,
                                         label_smoothing=cfg.loss.label_smoothing)
        if cfg.cmim.alpha > 0:
            from bnnlab.methods import ContrastiveMILoss

            t = self._frozen["cmim_teacher"]
            self.cmim = ContrastiveMILoss(
                student_dim=self.model.num_features, teacher_dim=t.num_features,
                num_samples=data_info["train_size"], feat_dim=cfg.cmim.feat_dim,
                num_negatives=cfg.cmim.num_negatives, temperature=cfg.cmim.temperature,
                momentum=cfg.cmim.momentum)
        if cfg.augment.name == "cutmix":
            from bnnlab.methods import CutMix

            self.mixer = CutMix(alpha=cfg.augment.alpha, prob=cfg.augment.prob)
        elif cfg.augment.name == "attentive":
            from bnnlab.methods import AttentiveCutMix

            ext = self._shared_frozen(cfg.augment.extractor, *dims)
            self._frozen["extractor"] = ext
            self.mixer = AttentiveCutMix(ext, grid=cfg.augment.grid, top_k=cfg.augment.top_k,
                                         prob=cfg.augment.prob)
        if cfg.trainer.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        if cfg.trainer.compile:
            # compile the two halves the training step calls; the module itself (and so every
            # state_dict key, checkpoint and step-to-step transfer) stays as it is
            self.model.forward_features = torch.compile(self.model.forward_features)
            self.model.forward_head = torch.compile(self.model.forward_head)
        self._epoch_t0 = 0.0

    def _shared_frozen(self, spec: TeacherConfig, *dims) -> nn.Module:
        """One frozen network per distinct spec (a KD teacher doubles as CMIM's)."""
        key = spec.model_dump_json()
        if key not in self._frozen_by_spec:
            self._frozen_by_spec[key] = build_frozen(spec, *dims)
        return self._frozen_by_spec[key]

    # ------------------------------------------------------------------ plumbing

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def on_fit_start(self) -> None:
        for net in self._frozen.values():
            net.to(self.device)
            if self.cfg.trainer.channels_last:
                net.to(memory_format=torch.channels_last)

    def _prep(self, x: torch.Tensor) -> torch.Tensor:
        if self.cfg.trainer.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def _epoch_float(self, batch_idx: int) -> float:
        n = max(self.trainer.num_training_batches, 1)
        n = n if n != float("inf") else 1
        return self.current_epoch + batch_idx / n

    def _apply_schedules(self, batch_idx: int) -> None:
        o = self.cfg.optim
        e, total = self._epoch_float(batch_idx), self.cfg.trainer.epochs
        for opt in self._optimizers():
            for g in opt.param_groups:
                if isinstance(opt, Bop):
                    g["gamma"] = o.gamma_schedule.value(o.gamma, e, total)
                else:
                    g["lr"] = o.schedule.value(o.lr, e, total)

    def _lightning_optimizers(self) -> list:
        """Lightning's optimizer wrappers (their ``step`` goes through the precision plugin)."""
        opts = self.optimizers()
        return opts if isinstance(opts, list) else [opts]

    def _optimizers(self) -> list[torch.optim.Optimizer]:
        """The torch optimizers themselves (for param groups, Bop's flip ratio)."""
        return [getattr(o, "optimizer", o) for o in self._lightning_optimizers()]

    # ------------------------------------------------------------------ steps

    def training_step(self, batch, batch_idx):
        x, y, idx = batch
        x = self._prep(x)
        opts = self._lightning_optimizers()
        self._apply_schedules(batch_idx)
        ya, yb, lam = y, None, 1.0
        if self.mixer is not None:
            x, ya, yb, lam = self.mixer(x, y)
        feats = self.model.forward_features(x)
        logits = self.model.forward_head(feats)
        terms: dict[str, torch.Tensor] = {}
        ls = self.cfg.loss.label_smoothing
        if yb is None:
            ce = F.cross_entropy(logits, ya, label_smoothing=ls)
        else:  # lam: float or per-sample tensor (Attentive CutMix on non-divisible grids)
            from bnnlab.methods import mix_targets

            soft = mix_targets(ya, yb, lam, logits.shape[1]).to(logits.dtype)
            ce = F.cross_entropy(logits, soft, label_smoothing=ls)
        terms["loss/ce"] = ce.detach()
        if self.kd is not None:
            with torch.no_grad():
                t_logits = self._frozen["teacher"](x)
            kd = self.kd(logits, t_logits)
            terms["loss/kd"] = kd.detach()
            loss = kd
            if self.cfg.loss.hard_weight > 0:
                loss = loss + self.cfg.loss.hard_weight * ce
        else:
            loss = ce
        if self.cmim is not None:
            with torch.no_grad():
                t_feats = self._frozen["cmim_teacher"].forward_features(x)
            cm = self.cmim(feats, t_feats, idx)
            terms["loss/cmim"] = cm.detach()
            loss = loss + self.cfg.cmim.alpha * cm
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"loss is {loss.item()} at epoch {self.current_epoch}, batch {batch_idx} "
                f"(global step {self.trainer.global_step}); stopping")
        for o in opts:
            o.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        for o in opts:
            o.step()
        if self.cfg.optim.latent_clip and self.cfg.optim.name != "bop":
            with torch.no_grad():
                c = self.cfg.optim.latent_clip
                for _, p in binary_weights(self.model):
                    p.clamp_(-c, c)
        bs = x.shape[0]
        self.log("train/loss", loss.detach(), on_step=False, on_epoch=True, batch_size=bs, sync_dist=True)
        if yb is None:
            self.log("train/top1", _topk_correct(logits.detach(), y, 1), on_step=False, on_epoch=True,
                     batch_size=bs, sync_dist=True)
        for k, v in terms.items():
            self.log(k, v, on_step=False, on_epoch=True, batch_size=bs, sync_dist=True)
        for opt in self._optimizers():
            if isinstance(opt, Bop) and opt.last_flip_ratio is not None:
                self.log("bop/flip_ratio", opt.last_flip_ratio, on_step=False, on_epoch=True, sync_dist=True)
                self.log("bop/gamma", opt.param_groups[0]["gamma"], on_step=False, on_epoch=True)
            elif not isinstance(opt, Bop):
                self.log("lr", opt.param_groups[0]["lr"], on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y, _ = batch
        logits = self.model(self._prep(x))
        bs = x.shape[0]
        self.log("val/loss", F.cross_entropy(logits, y), on_epoch=True, batch_size=bs, sync_dist=True)
        self.log("val/top1", _topk_correct(logits, y, 1), on_epoch=True, batch_size=bs, sync_dist=True)
        if self.info["num_classes"] > 5:
            self.log("val/top5", _topk_correct(logits, y, 5), on_epoch=True, batch_size=bs, sync_dist=True)

    def on_train_epoch_start(self) -> None:
        self._epoch_t0 = time.perf_counter()

    def on_train_epoch_end(self) -> None:
        self.log("time/epoch_s", time.perf_counter() - self._epoch_t0, on_epoch=True)

    # ------------------------------------------------------------------ optimizers

    def _param_groups(self, params: list[nn.Parameter], binary_ids: set[int]) -> list[dict]:
        o = self.cfg.optim
        if o.weight_decay == 0:
            return [{"params": params, "weight_decay": 0.0}]
        if o.weight_decay_on == "all":
            decay = params
        elif o.weight_decay_on == "binary":
            decay = [p for p in params if id(p) in binary_ids]
        else:  # conv/linear weights only (ReActNet step 1): no BN, biases, RSign/RPReLU
            decay = [p for p in params if p.dim() > 1]
        dec_ids = {id(p) for p in decay}
        rest = [p for p in params if id(p) not in dec_ids]
        groups = [{"params": decay, "weight_decay": o.weight_decay}]
        if rest:
            groups.append({"params": rest, "weight_decay": 0.0})
        return groups

    def _make(self, name: str, groups: list[dict]) -> torch.optim.Optimizer:
        o = self.cfg.optim
        if name in ("adam", "bop"):
            return torch.optim.Adam(groups, lr=o.lr, foreach=o.foreach)
        if name == "adamw":
            return torch.optim.AdamW(groups, lr=o.lr, foreach=o.foreach)
        return torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum, nesterov=o.nesterov, foreach=o.foreach)

    def configure_optimizers(self):
        o = self.cfg.optim
        binary, other = split_parameters(self.model)
        extra = [p for n, p in self.named_parameters() if not n.startswith("model.") and p.requires_grad]
        binary_ids = {id(p) for p in binary}
        if o.name == "bop":
            if not binary:
                raise BnnlabError(f"optimizer 'bop' needs binary weights, but model '{self.cfg.model.name}' "
                                  f"with weight='{self.cfg.model.weight}' has none")
            blocked = sorted({m.weight_quantizer.name for m in self.model.modules()
                              if getattr(getattr(m, "weight_quantizer", None), "grad", None) == "paper"})
            if blocked:
                raise BnnlabError(
                    f"optimizer 'bop' with weight binarizer '{blocked[0]}': its paper gradient 1{{|w|<1}} is zero "
                    "at the +-1 weights Bop keeps, so nothing would ever flip; use --weight sign (Bop paper) "
                    "or scaled-official")
            opts = [Bop(binary, gamma=o.gamma, tau=o.tau, foreach=o.foreach)]
            real = other + extra
            if real:
                opts.append(self._make("adam", self._param_groups(real, binary_ids)))
            return opts
        params = binary + other + extra
        if not params:
            raise BnnlabError("nothing to train: every parameter is frozen")
        return self._make(o.name, self._param_groups(params, binary_ids))
