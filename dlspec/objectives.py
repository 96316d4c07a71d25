"""torch objects named in `train:`: loss, optimizer, scheduler, weight init, metrics.

Names and keyword arguments are checked against torch itself; a mistake becomes a diagnostic at the
line of the option (did-you-mean for names and keywords), never a traceback.
"""

from __future__ import annotations

import inspect
import math
from typing import Any

import torch
from torch import nn

from . import codes
from .diagnostics import Diagnostic, did_you_mean, error
from .schema import yaml_text
from .source import Document
from .torchnames import FILLED_IN, UNSUPPORTED_OPTIMIZERS
from .trainspec import TrainConfig

PER_BATCH_SCHEDULERS = ("OneCycleLR", "CyclicLR", "CosineAnnealingWarmRestarts")


def _classes(module: Any, base: type) -> dict[str, type]:
    out = {}
    for n in dir(module):
        obj = getattr(module, n)
        if isinstance(obj, type) and issubclass(obj, base) and obj is not base and not n.startswith("_"):
            out[n] = obj
    return out


def losses() -> dict[str, type]:
    return {n: c for n, c in _classes(nn, nn.Module).items() if n.endswith("Loss")}


def optimizers() -> dict[str, type]:
    return _classes(torch.optim, torch.optim.Optimizer)


def schedulers() -> dict[str, type]:
    L = torch.optim.lr_scheduler
    base = getattr(L, "LRScheduler", getattr(L, "_LRScheduler", object))
    out = _classes(L, base)
    out["ReduceLROnPlateau"] = L.ReduceLROnPlateau
    return {n: c for n, c in out.items() if n not in ("LRScheduler", "_LRScheduler")}


def _keywords(cls: type, skip: int) -> tuple[list[str], list[str]]:
    """(accepted keyword names, required ones) of cls.__init__, after `skip` leading positional params."""
    sig = inspect.signature(cls.__init__)  # type: ignore[misc]
    params = [p for p in sig.parameters.values() if p.name != "self"][skip:]
    names = [p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    required = [p.name for p in params if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    return names, required


def resolve(cfg: TrainConfig, task: str, default_loss: str | None = None) -> tuple[dict[str, Any], list[Diagnostic]]:
    """The torch classes of loss/optimizer/scheduler, looked up in the torch that runs (`dlspec check` used the
    table generated from the pinned release): diagnostics for unknown names or keywords."""
    diags: list[Diagnostic] = []
    out: dict[str, Any] = {}
    default = default_loss or ("CrossEntropyLoss" if task == "classification" else "MSELoss")
    specs = [("loss", cfg.loss or (default, {}), losses(), 0),
             ("optimizer", cfg.optimizer, optimizers(), 1)]
    if cfg.scheduler:
        specs.append(("scheduler", cfg.scheduler, schedulers(), 1))
    for key, (name, kwargs), table, skip in specs:
        path: tuple[Any, ...] = ("train", key, name)
        lower = {n.lower(): n for n in table}
        real = lower.get(name.lower())
        if real is None:
            hint = did_you_mean(name, list(table))
            diags.append(error(codes.TORCH_NAME, f"torch has no {key} '{name}'", path, key=True,
                               help=f"did you mean '{hint}'?" if hint else f"{key}s: " + ", ".join(sorted(table))))
            continue
        if key == "optimizer" and real in UNSUPPORTED_OPTIMIZERS:
            diags.append(error(codes.TRAIN, f"dlspec run does not support {real}: {UNSUPPORTED_OPTIMIZERS[real]}",
                               path, key=True, help="use SGD, Adam or AdamW"))
            continue
        accepted, required = _keywords(table[real], skip)
        bad = False
        for kw in kwargs:
            if kw not in accepted:
                hint = did_you_mean(str(kw), accepted)
                diags.append(error(codes.TORCH_NAME, f"{real} has no argument '{kw}'", path + (kw,), key=True,
                                   help=f"did you mean '{hint}'?" if hint else f"{real} takes " + ", ".join(accepted)))
                bad = True
        filled = FILLED_IN.get(real, ())
        for r in required:
            if r not in kwargs and r not in filled:
                diags.append(error(codes.TRAIN, f"{real} needs `{r}`", path, key=True,
                                   help=f"write {key}: {{{real}: {{{r}: ...}}}}"))
                bad = True
        if not bad:
            out[key] = (real, table[real], dict(kwargs))
    return out, diags


def make_optimizer(resolved: dict[str, Any], model: nn.Module, **impl: Any) -> torch.optim.Optimizer:
    """The spec's optimizer; `impl` adds the implementation the run's plan chose (fused=True)."""
    name, cls, kw = resolved["optimizer"]
    return cls(model.parameters(), **kw, **impl)


def make_scheduler(resolved: dict[str, Any], opt: torch.optim.Optimizer, epochs: int, steps_per_epoch: int) -> Any:
    if "scheduler" not in resolved:
        return None
    name, cls, kw = resolved["scheduler"]
    kw = dict(kw)
    if name == "OneCycleLR" and "total_steps" not in kw:
        if "epochs" in kw:
            kw.setdefault("steps_per_epoch", steps_per_epoch)
        else:
            kw["total_steps"] = epochs * steps_per_epoch
    return cls(opt, **kw)


def check_objects(doc: Document, cfg: TrainConfig, resolved: dict[str, Any], model: nn.Module, steps_per_epoch: int,
                  classes: Any) -> list[Diagnostic]:
    """Construct loss, optimizer and scheduler once (torch checks their values); errors become diagnostics at
    the argument torch refused (the one without which the construction succeeds), else at the class name.

    Nothing here touches the model's parameters or the random number generator.
    """
    diags: list[Diagnostic] = []

    def fail(key: str, e: Exception, blame: str | None) -> None:
        written = getattr(cfg, key)
        name = written[0] if written else resolved[key][0]
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        path: tuple[Any, ...] = ("train", key, name) if written else ("train",)
        if blame is not None:
            diags.append(error(codes.TRAIN, f"{resolved[key][0]} {blame}: {msg}", path + (blame,),
                               help=f"torch refused {blame}: {yaml_text(resolved[key][2][blame])}"))
        else:
            diags.append(error(codes.TRAIN, f"{resolved[key][0]}: {msg}", path, key=True,
                               help=f"check the arguments of {resolved[key][0]} (torch refused them)"))

    def attempt(key: str, make: Any) -> Any:
        """make(kwargs) with the written arguments; on a refusal, the diagnostic and None."""
        name, cls, kw = resolved[key]
        try:
            return make(kw)
        except Exception as e:  # noqa: BLE001 - any refusal by torch is the spec's mistake
            fail(key, e, _culprit(make, kw))
            return None

    if "loss" in resolved:
        def loss(kw: dict[str, Any]) -> Any:
            made = make_loss({"loss": (resolved["loss"][0], resolved["loss"][1], kw)})
            w = getattr(made, "weight", None)
            if resolved["loss"][0] in ("CrossEntropyLoss", "NLLLoss", "MultiMarginLoss") and \
                    isinstance(w, torch.Tensor) and isinstance(classes, int) and w.numel() != classes:
                raise ValueError(f"weight has {w.numel()} values but the model gives {classes} class scores")
            return made
        attempt("loss", loss)
    if "optimizer" in resolved:
        opt = attempt("optimizer", lambda kw: make_optimizer({"optimizer": (*resolved["optimizer"][:2], kw)}, model))
        if opt is not None and "scheduler" in resolved:
            attempt("scheduler", lambda kw: make_scheduler({"scheduler": (*resolved["scheduler"][:2], kw)}, opt,
                                                           cfg.epochs, max(1, steps_per_epoch)))
    return diags


def _culprit(make: Any, kwargs: dict[str, Any]) -> str | None:
    """The one argument without which torch accepts the rest (its default stands in), if there is one."""
    for k in kwargs:
        try:
            make({a: v for a, v in kwargs.items() if a != k})
        except Exception:  # noqa: BLE001, S112 - still refused: not this one
            continue
        return k
    return None


def scheduler_per_batch(resolved: dict[str, Any], cfg: TrainConfig) -> bool:
    if "scheduler" not in resolved:
        return False
    if cfg.scheduler_step != "auto":
        return cfg.scheduler_step == "batch"
    return resolved["scheduler"][0] in PER_BATCH_SCHEDULERS


TENSOR_ARGS = ("weight", "pos_weight")  # loss arguments torch wants as tensors (written as YAML lists)


def make_loss(resolved: dict[str, Any]) -> nn.Module:
    name, cls, kw = resolved["loss"]
    kw = {k: torch.tensor(v, dtype=torch.float32) if k in TENSOR_ARGS and isinstance(v, (list, int, float))
          and not isinstance(v, bool) else v for k, v in kw.items()}
    for k in TENSOR_ARGS:  # torch takes them, and every loss is nan from the first sample of that class on
        if isinstance(kw.get(k), torch.Tensor) and kw[k].is_floating_point() and not bool(torch.isfinite(kw[k]).all()):
            raise ValueError(f"{k} has values that are not finite numbers (nan or inf)")
    return cls(**kw)


def init_weights(model: nn.Module, scheme: str | None) -> None:
    """Apply an init scheme to Linear/Conv/ConvTranspose weights.

    Biases keep torch's default init, as in the source material's recipes (d2l's `init_weights` touches
    `m.weight` only); zeroing them changes where a sigmoid LeNet at lr 0.9 ends by a point or more.
    """
    if not scheme or scheme == "default":
        return
    fn = {
        "xavier_uniform": nn.init.xavier_uniform_, "xavier_normal": nn.init.xavier_normal_,
        "kaiming_uniform": lambda w: nn.init.kaiming_uniform_(w, nonlinearity="relu"),
        "kaiming_normal": lambda w: nn.init.kaiming_normal_(w, nonlinearity="relu"),
        "orthogonal": nn.init.orthogonal_, "trunc_normal": lambda w: nn.init.trunc_normal_(w, std=0.02),
        "normal": lambda w: nn.init.normal_(w, std=0.01), "uniform": lambda w: nn.init.uniform_(w, -0.05, 0.05),
    }[scheme]
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.modules.conv._ConvNd)):
            fn(m.weight)


def binary_threshold(resolved: dict[str, Any]) -> float | None:
    """Where a binary loss puts the decision: 0 for logits, 0.5 for probabilities; None for other losses."""
    name = resolved["loss"][0] if "loss" in resolved else None
    return {"BCEWithLogitsLoss": 0.0, "BCELoss": 0.5}.get(name or "")


class Sums:
    """Named sums on the device and the count they are over: added to every batch, read once per epoch (no
    host sync per batch), kept in a mid-epoch checkpoint.  result() is each sum's mean."""

    def __init__(self, names: Any, device: torch.device):
        self.device = device
        self.sums: dict[str, torch.Tensor] = {k: torch.zeros((), dtype=torch.float64, device=device) for k in names}
        self.count = 0  # samples (or steps for per-step targets)

    def reset(self) -> None:
        """Zero the sums in place (a captured CUDA graph keeps adding into the same tensors)."""
        for t in self.sums.values():
            t.zero_()
        self.count = 0

    def state(self) -> dict[str, Any]:
        return {"sums": {k: v.cpu() for k, v in self.sums.items()}, "count": self.count}

    def load(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            for k, v in state["sums"].items():
                self.sums[k].copy_(v)
        self.count = int(state["count"])

    def result(self) -> dict[str, float]:
        return {k: float(v) / self.count for k, v in self.sums.items()} if self.count else {}  # one sync per epoch


class Meter(Sums):
    """The loss and the metrics of a run's batches."""

    def __init__(self, metrics: list[str], device: torch.device, threshold: float | None = None):
        super().__init__(("loss", *metrics), device)
        self.metrics = metrics
        self.threshold = threshold  # binary losses: accuracy of (out > threshold), not of an argmax

    def add(self, loss: torch.Tensor, out: torch.Tensor, y: torch.Tensor) -> None:
        self.count += self.add_sums(loss, out, y)

    @torch.no_grad()
    def add_sums(self, loss: torch.Tensor, out: torch.Tensor, y: torch.Tensor) -> int:
        """Device-side sums only (capturable); returns the count to add on the host."""
        n = y.shape[0]
        self.sums["loss"] += loss.detach().double() * n
        for m in self.metrics:
            if m == "accuracy" and self.threshold is not None:
                hit = (out.reshape(y.shape) > self.threshold) == (y > 0.5)
                self.sums[m] += hit.double().reshape(n, -1).mean(1).sum()
            elif m == "accuracy":
                self.sums[m] += (out.argmax(-1) == y).sum()
            elif m == "top5_accuracy":
                k = min(5, out.shape[-1])
                self.sums[m] += (out.topk(k, -1).indices == y.unsqueeze(-1)).any(-1).sum()
            elif m in ("mse", "rmse"):
                self.sums[m] += ((out.double() - y.double()) ** 2).mean(tuple(range(1, y.dim()))).sum() \
                    if y.dim() > 1 else ((out.double() - y.double()) ** 2).sum()
            elif m == "mae":
                self.sums[m] += (out.double() - y.double()).abs().mean(tuple(range(1, y.dim()))).sum() \
                    if y.dim() > 1 else (out.double() - y.double()).abs().sum()
        return n

    def result(self) -> dict[str, float]:
        vals = super().result()
        if not vals:
            return {}
        if "rmse" in vals:
            vals["rmse"] = math.sqrt(vals["rmse"])
        if "perplexity" in self.metrics:
            vals["perplexity"] = math.exp(min(vals["loss"], 50.0))
        return vals
