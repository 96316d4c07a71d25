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

from .diagnostics import Diagnostic, did_you_mean
from .source import Document
from .trainspec import TrainConfig

PER_BATCH_SCHEDULERS = ("OneCycleLR", "CyclicLR", "CosineAnnealingWarmRestarts")
UNSUPPORTED_OPTIMIZERS = {"LBFGS": "it needs a closure that re-evaluates the loss",
                          "SparseAdam": "it only takes sparse gradients"}


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


def resolve(doc: Document, cfg: TrainConfig, task: str) -> tuple[dict[str, Any], list[Diagnostic]]:
    """Look up the torch classes of loss/optimizer/scheduler; diagnostics for unknown names or keywords."""
    diags: list[Diagnostic] = []
    out: dict[str, Any] = {}
    specs = [("loss", cfg.loss or (("CrossEntropyLoss" if task == "classification" else "MSELoss"), {}), losses(), 0),
             ("optimizer", cfg.optimizer, optimizers(), 1)]
    if cfg.scheduler:
        specs.append(("scheduler", cfg.scheduler, schedulers(), 1))
    for key, (name, kwargs), table, skip in specs:
        path: tuple[Any, ...] = ("train", key)
        lower = {n.lower(): n for n in table}
        real = lower.get(name.lower())
        if real is None:
            hint = did_you_mean(name, list(table))
            diags.append(doc.diag("error", "train", f"torch has no {key} '{name}'", path + (name,), key=True,
                                  help=f"did you mean '{hint}'?" if hint else f"{key}s: " + ", ".join(sorted(table))))
            continue
        if key == "optimizer" and real in UNSUPPORTED_OPTIMIZERS:
            diags.append(doc.diag("error", "train", f"dlspec run does not support {real}: {UNSUPPORTED_OPTIMIZERS[real]}",
                                  path + (name,), key=True, help="use SGD, Adam or AdamW"))
            continue
        accepted, required = _keywords(table[real], skip)
        bad = False
        for kw in kwargs:
            if kw not in accepted:
                hint = did_you_mean(str(kw), accepted)
                diags.append(doc.diag("error", "train", f"{real} has no argument '{kw}'", path + (name, kw), key=True,
                                      help=f"did you mean '{hint}'?" if hint else f"{real} takes " + ", ".join(accepted)))
                bad = True
        auto = {"OneCycleLR": ("max_lr",), "CyclicLR": ("base_lr", "max_lr")}.get(real, ())
        missing = [r for r in required if r not in kwargs and r not in ("total_steps",) and r not in auto]
        for r in missing:
            diags.append(doc.diag("error", "train", f"{real} needs `{r}`", path + (name,), key=True,
                                  help=f"write {key}: {{{real}: {{{r}: ...}}}}"))
            bad = True
        for r in auto:
            if r not in kwargs:
                diags.append(doc.diag("error", "train", f"{real} needs `{r}`", path + (name,), key=True,
                                      help=f"write {key}: {{{real}: {{{r}: ...}}}}"))
                bad = True
        if not bad:
            out[key] = (real, table[real], dict(kwargs))
    diags += _check_metrics(doc, cfg, task, out.get("loss", (None,))[0])
    return out, diags


CLASS_METRICS = ("accuracy", "top5_accuracy", "perplexity")
REGRESSION_METRICS = ("mse", "mae", "rmse")
BINARY_LOSSES = ("BCELoss", "BCEWithLogitsLoss")


def _check_metrics(doc: Document, cfg: TrainConfig, task: str, loss: str | None) -> list[Diagnostic]:
    """Metrics that make no sense for the task, and an early-stopping metric that is never computed."""
    diags: list[Diagnostic] = []
    metrics = cfg.metrics or default_metrics(task)
    fits: tuple[str, ...] = CLASS_METRICS if task == "classification" else REGRESSION_METRICS
    if loss in BINARY_LOSSES and task == "classification":
        fits = ("accuracy",)  # one logit (or probability) per label: no top-5, no perplexity
    for i, m in enumerate(cfg.metrics or []):
        if m not in fits:
            what = f"{task} with {loss}" if loss in BINARY_LOSSES else task
            diags.append(doc.diag("error", "train", f"metric {m} does not apply to {what}",
                                  ("train", "metrics", i) if ("train", "metrics", i) in doc.spans else ("train", "metrics"),
                                  help="metrics for this task: " + ", ".join(fits)))
    es = cfg.early_stopping
    if es:
        splits = ["train", "test"] + (["val"] if cfg.val_split else [])
        names = [f"{s}_{m}" for s in splits for m in ["loss", *metrics]]
        watched = str(es.get("metric"))
        if watched not in names:
            hint = did_you_mean(watched, names)
            why = " (there is no validation split: set train.val_split)" if watched.startswith("val_") and \
                not cfg.val_split else ""
            diags.append(doc.diag("error", "train", f"early_stopping watches '{watched}', which this run never computes{why}",
                                  ("train", "early_stopping", "metric"),
                                  help=(f"did you mean '{hint}'? " if hint else "") + "metrics of this run: "
                                  + ", ".join(names)))
    return diags


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
    """Construct loss, optimizer and scheduler once (torch checks their values); errors become diagnostics.

    Nothing here touches the model's parameters or the random number generator.
    """
    diags: list[Diagnostic] = []

    def fail(key: str, e: Exception) -> None:
        written = getattr(cfg, key)
        name = written[0] if written else resolved[key][0]
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        path: tuple[Any, ...] = ("train", key, name) if written else ("train",)
        diags.append(doc.diag("error", "train", f"{resolved[key][0]}: {msg}", path, key=not written,
                              help=f"check the arguments of {resolved[key][0]} (torch refused them)"))

    if "loss" in resolved:
        try:
            loss = make_loss(resolved)
            w = getattr(loss, "weight", None)
            if resolved["loss"][0] in ("CrossEntropyLoss", "NLLLoss", "MultiMarginLoss") and \
                    isinstance(w, torch.Tensor) and isinstance(classes, int) and w.numel() != classes:
                raise ValueError(f"weight has {w.numel()} values but the model gives {classes} class scores")
        except Exception as e:  # noqa: BLE001 - any refusal by torch is the spec's mistake
            fail("loss", e)
    if "optimizer" in resolved:
        try:
            opt = make_optimizer(resolved, model)
        except Exception as e:  # noqa: BLE001
            fail("optimizer", e)
            return diags
        if "scheduler" in resolved:
            try:
                make_scheduler(resolved, opt, cfg.epochs, max(1, steps_per_epoch))
            except Exception as e:  # noqa: BLE001
                fail("scheduler", e)
    return diags


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


def default_metrics(task: str) -> list[str]:
    return ["accuracy"] if task == "classification" else ["mse"]


class Meter:
    """Sums on the device, read once per epoch (no host sync per batch)."""

    def __init__(self, metrics: list[str], device: torch.device, threshold: float | None = None):
        self.metrics = metrics
        self.device = device
        self.threshold = threshold  # binary losses: accuracy of (out > threshold), not of an argmax
        self.sums: dict[str, torch.Tensor] = {k: torch.zeros((), dtype=torch.float64, device=device)
                                              for k in ("loss", *metrics)}
        self.count = 0  # samples (or steps for per-step targets)

    def reset(self) -> None:
        """Zero the sums in place (a captured CUDA graph keeps adding into the same tensors)."""
        for t in self.sums.values():
            t.zero_()
        self.count = 0

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

    def state(self) -> dict[str, Any]:
        return {"sums": {k: v.cpu() for k, v in self.sums.items()}, "count": self.count}

    def load(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            for k, v in state["sums"].items():
                self.sums[k].copy_(v)
        self.count = int(state["count"])

    def result(self) -> dict[str, float]:
        if not self.count:
            return {}
        vals = {k: float(v) / self.count for k, v in self.sums.items()}  # one sync per epoch
        if "rmse" in vals:
            vals["rmse"] = math.sqrt(vals["rmse"])
        if "perplexity" in self.metrics:
            vals["perplexity"] = math.exp(min(vals["loss"], 50.0))
        return vals
