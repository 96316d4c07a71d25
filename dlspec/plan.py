"""The fast-path plan: which way a run's training step is executed (eager, channels_last, torch.compile,
CUDA graph, fused optimizer step), and why.

`plan()` decides, from the spec's options and what the run uses, which path a run takes and why; the
decisions are data (`Plan`), printed at the start of a run and stored in summary.json."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from .distributed import backend, has_batchnorm

# optimizers whose capturable step takes the learning rate as a device tensor
TENSOR_LR = ("Adam", "AdamW")
# schedulers that also change momentum / beta1 every batch unless cycle_momentum is false
CYCLES_MOMENTUM = ("OneCycleLR", "CyclicLR")
# where torch's fused optimizer step pays (benchmarks/optimizer_step.py; benchmarks/README.md): on the CPU,
# Adam's step for SimpleCNN's 805 k parameters takes 1.17 ms for-loop, 1.09 ms foreach, 0.40 ms fused (2
# threads); SGD's fused step is slower (0.85×).  On CUDA torch's own default (foreach) is kept: not measured.
FUSED_PAYS = {"cpu": ("Adam", "AdamW")}


@dataclass(frozen=True)
class Capabilities:
    """What a training step can be run as: its answers to plan()'s questions (dlspec.step's `capabilities`)."""

    model: nn.Module  # every network it trains (2-d convolutions, BatchNorm, layers a graph cannot hold)
    input_rank: int  # the rank of one sample it reads
    optimizers: tuple[tuple[str, dict[str, Any]], ...] = ()  # (name, written arguments) of each; (): evaluation only
    scheduler: tuple[str, dict[str, Any]] | None = None  # (name, written arguments) of its one optimizer's scheduler
    per_batch: bool = False  # ... which steps every batch
    graph: str | None = None  # why its step cannot be captured as a CUDA graph (None: it can)
    compile: str | None = None  # why its networks cannot be compiled (None: they can)
    channels_last: str | None = None  # why its inputs cannot be channels_last (None: they can)


@dataclass(frozen=True)
class Fallback:
    """A run-time change of a plan that could not be kept (a compile or a graph capture that failed):
    recorded beside the plan, never written into it."""

    what: str  # "compile" | "graph"
    why: str  # the line for the plan's reasons: "cuda graph: off from here (RuntimeError: ...)"


@dataclass(frozen=True)
class Plan:
    """Which path a run takes, and why (each choice that was not simply the spec's)."""

    device: str
    precision: str
    channels_last: bool
    compile: str | None  # a torch.compile mode, or None
    graph: bool
    tensor_lr: bool = False
    fused: bool = False  # an optimizer is made with fused=True
    why: tuple[str, ...] = ()
    fused_each: tuple[bool, ...] = ()  # per optimizer of the step (Capabilities.optimizers): fused=True
    sync_batchnorm: bool = False  # several processes on CUDA: BatchNorm layers become SyncBatchNorm
    fallbacks: tuple[Fallback, ...] = ()  # what the run fell back from (Plan.ran): none in a plan as chosen

    @property
    def name(self) -> str:
        """e.g. 'cuda-graph+channels_last+bf16', 'compile(default)', 'eager'."""
        base = "cuda-graph" if self.graph else f"compile({self.compile})" if self.compile else "eager"
        extras = (["channels_last"] if self.channels_last else []) + ([self.precision] if self.precision != "fp32" else []) \
            + (["fused"] if self.fused else [])
        return "+".join([base] + extras)

    def ran(self, fallbacks: list[Fallback]) -> Plan:
        """The path as the run took it: this plan less what it fell back from, with the fallbacks' lines after
        the plan's reasons."""
        off = {f.what for f in fallbacks}
        graph = self.graph and "graph" not in off
        return replace(self, graph=graph, tensor_lr=self.tensor_lr and graph,
                       compile=None if "compile" in off else self.compile, fallbacks=tuple(fallbacks))

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "channels_last": self.channels_last, "compile": self.compile,
                "cuda_graph": self.graph, "tensor_lr": self.tensor_lr, "fused": self.fused,
                "why": list(self.why) + [f.why for f in self.fallbacks],
                "fallbacks": [f.why for f in self.fallbacks]}


def has_conv2d(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.conv._ConvNd) and m.weight.dim() == 4 for m in model.modules())


def plan(cfg: Any, device: torch.device, step: Capabilities, world: int = 1, data_on_device: bool = True) -> Plan:
    """The path for this run of `step` on `device` in `world` processes.  `cfg` is the TrainConfig; every
    reason is said here, in the order the choices are made."""
    why: list[str] = []
    fused_each = tuple(_fused_each(cfg.fused, device, step.optimizers, why))
    precision = _precision(cfg, device, why)
    conv = has_conv2d(step.model) and step.input_rank == 3
    cl = _channels_last(cfg, device, step, conv, precision, why)
    if precision == "fp32" and cfg.precision == "fp32" and conv and device.type == "cpu" and native_bf16_cpu():
        why.append("precision: fp32 as written; this CPU computes bf16 natively (`--precision auto` trained LeNet "
                   "1.2× faster here, same accuracy)")
    comp = None if step.compile is not None else "default" if cfg.compile is True else cfg.compile or None
    graph, tensor_lr, late = _graph(cfg, device, step, comp, precision, data_on_device, world, why)
    why += _not_for_step(cfg, device, step, conv, precision)
    sync_bn = world > 1 and bool(getattr(cfg, "sync_batchnorm", False)) and device.type == "cuda" \
        and has_batchnorm(step.model)
    if world > 1:
        why += _distributed(cfg, device, step, world, comp, sync_bn, late == "ddp")
    if late not in (None, "ddp"):
        why.append(f"cuda graph: off, {late}")
    return Plan(device=device.type, precision=precision, channels_last=cl, compile=comp, graph=graph,
                tensor_lr=tensor_lr and graph, fused=any(fused_each), why=tuple(why), fused_each=fused_each,
                sync_batchnorm=sync_bn)


def _precision(cfg: Any, device: torch.device, why: list[str]) -> str:
    if cfg.precision != "auto":
        return str(cfg.precision)
    # measured on a CPU with AMX (benchmarks/README.md): bf16 autocast ~1.25× fp32 for LeNet, same accuracy
    # within seed noise; on CUDA the small models of this project are launch-bound: fp32
    precision = "bf16" if device.type == "cpu" and native_bf16_cpu() else "fp32"
    why.append(f"precision: auto → {precision}" + (" (this CPU computes bf16 natively)" if precision == "bf16"
                                                    else f" (no native bf16 measured to pay on {device.type})"))
    return precision


def _channels_last(cfg: Any, device: torch.device, step: Capabilities, conv: bool, precision: str,
                   why: list[str]) -> bool:
    """channels_last: measured on the CPU (benchmarks/README.md: a LeNet fp32 step 12.0–13.5 → 10.7–11.1 ms at
    2 threads); on CUDA it pays with tensor cores (bf16/fp16), so auto turns it on there only then.  A step
    that cannot take it says why (_not_for_step)."""
    if step.channels_last is not None:
        return False
    if cfg.channels_last == "auto":
        cl = conv and (device.type == "cpu" or (device.type == "cuda" and precision != "fp32"))
        if cl:
            why.append("channels_last: auto, the model has 2-d convolutions"
                       + (" (faster on the CPU)" if device.type == "cpu" else f" and runs in {precision}"))
        return cl
    if cfg.channels_last and not conv:
        why.append("channels_last: off, the model has no 2-d convolution over image inputs")
    return bool(cfg.channels_last) and conv


def _not_for_step(cfg: Any, device: torch.device, step: Capabilities, conv: bool, precision: str) -> list[str]:
    """`compile, channels_last: off, REASON`: what the options ask for and the step cannot take."""
    wanted_cl = conv and (cfg.channels_last is True or (cfg.channels_last == "auto" and (
        device.type == "cpu" or (device.type == "cuda" and precision != "fp32"))))
    wanted = {"compile": bool(cfg.compile), "channels_last": wanted_cl}
    refused = {"compile": step.compile, "channels_last": step.channels_last}
    if not any(wanted[k] and refused[k] for k in wanted):
        return []
    reasons: dict[str, list[str]] = {}
    for k, reason in refused.items():
        if reason is not None:
            reasons.setdefault(reason, []).append(k)
    return [f"{', '.join(names)}: off, {reason}" for reason, names in reasons.items()]


def _graph(cfg: Any, device: torch.device, step: Capabilities, comp: str | None, precision: str,
           data_on_device: bool, world: int, why: list[str]) -> tuple[bool, bool, str | None]:
    """(capture the step as a CUDA graph, read the lr from a device tensor, a reason said later: "ddp" for the
    ddp line, or the step's own reason, said last)."""
    if cfg.cuda_graph not in ("auto", True) or not step.optimizers:  # (no optimizer: evaluation only)
        return False, False, None
    reason, tensor_lr = _graph_blocker(cfg, device, step, comp, precision, data_on_device)
    if world > 1:  # dlspec's CUDA graphs capture one process's whole step, without DDP's all-reduce: the ddp
        return False, False, "ddp" if reason is None and device.type == "cuda" else None  # line says so
    if reason is not None:
        why.append(f"cuda graph: off, {reason}")
        return False, False, None
    if device.type != "cuda":
        return False, False, None
    if step.graph is not None or len(step.optimizers) != 1:
        return False, False, step.graph or "the step takes several optimizers' steps"
    why.append("cuda graph: the whole training step is captured once and replayed")
    return True, tensor_lr, None


def _graph_blocker(cfg: Any, device: torch.device, step: Capabilities, comp: str | None, precision: str,
                   data_on_device: bool) -> tuple[str | None, bool]:
    """(why the options, the device, the model or the optimizer keep the step from a graph, or None; whether
    the learning rate must be a device tensor)."""
    optimizer = step.optimizers[0][0]
    if device.type != "cuda":
        return (f"runs on {device.type}" if cfg.cuda_graph is True else None), False
    if comp:
        return "torch.compile is on (its mode reduce-overhead makes its own graphs)", False
    if precision == "fp16":
        return "fp16's grad scaler reads the overflow flag on the host every step", False
    if not data_on_device:
        return "the data does not fit in device memory", False
    if (blocker := graph_blocker(step.model)) is not None:
        return blocker, False
    if not graph_safe_optimizer(optimizer):
        return f"{optimizer}'s step is not capturable (use SGD, Adam, AdamW, RMSprop, ...)", False
    if step.scheduler is None or not step.per_batch:
        return None, False
    name, kw = step.scheduler
    if name in CYCLES_MOMENTUM and kw.get("cycle_momentum", True):
        return f"{name} changes momentum every batch (set cycle_momentum: false to capture)", False
    if optimizer not in TENSOR_LR:
        return f"a per-batch {name} with {optimizer}: only Adam/AdamW read the learning rate from the device", False
    return None, True


def _distributed(cfg: Any, device: torch.device, step: Capabilities, world: int, comp: str | None, sync_bn: bool,
                 graph_off: bool) -> list[str]:
    """The ddp line (torch.compile wraps the DDP replica: torch's DDPOptimizer cuts the graph at the gradient
    buckets), and BatchNorm's over several processes."""
    lines = [f"ddp: {world} processes ({backend(device)}), DistributedDataParallel" + (", compiled" if comp else "")
             + ("; cuda graph: off, its capture does not take DDP's all-reduce" if graph_off else "")]
    if has_batchnorm(step.model):
        lines.append("sync_batchnorm: on, BatchNorm over the whole batch" if sync_bn else
                     "sync_batchnorm: off, each process normalises its part of the batch"
                     + (" (torch's SyncBatchNorm needs CUDA)" if cfg.sync_batchnorm else " (as written)"))
    return lines


def _fused_each(option: Any, device: torch.device, optimizers: tuple[tuple[str, dict[str, Any]], ...],
                why: list[str]) -> list[bool]:
    """plan_fused for each optimizer of the step, each reason said once."""
    out, lines = [], []
    for name, kw in optimizers:
        said: list[str] = []
        out.append(plan_fused(option, device, name, kw, said))
        lines += [line for line in said if line not in lines and line not in why]
    why += lines
    return out


def plan_fused(option: Any, device: torch.device, optimizer: str | None, kw: dict[str, Any], why: list[str]) -> bool:
    """Whether to make the optimizer with fused=True: the `fused` option (auto|true|false), unless the
    optimizer's own arguments already choose an implementation."""
    if optimizer is None or option is False:
        return False
    own = [k for k in ("fused", "foreach") if kw.get(k) is not None]
    if own:
        if option is True:
            why.append(f"fused: as the optimizer's own {own[0]}: {kw[own[0]]} says")
        return False
    if option == "auto" and optimizer not in FUSED_PAYS.get(device.type, ()):
        return False
    if not fused_step_works(optimizer, device.type):
        if option is True:
            why.append(f"fused: off, this torch has no fused {optimizer} step on {device.type}")
        return False
    why.append(f"fused: {optimizer}'s fused step" + (" (auto: faster on the CPU)" if option == "auto" else ""))
    return True


_FUSED_WORKS: dict[tuple[str, str], bool] = {}


def fused_step_works(optimizer: str, device: str) -> bool:
    """Whether torch.optim.<optimizer>(fused=True) takes a step on this device type (tried once, on one number)."""
    key = (optimizer, device)
    if key not in _FUSED_WORKS:
        cls = getattr(torch.optim, optimizer, None)
        try:
            p = torch.zeros(1, device=device, requires_grad=True)
            p.grad = torch.ones_like(p)
            cls([p], fused=True).step()  # type: ignore[misc]
            _FUSED_WORKS[key] = True
        except Exception:  # noqa: BLE001 - no fused argument, or no fused kernel for this device: not fused
            _FUSED_WORKS[key] = False
    return _FUSED_WORKS[key]


def graph_blocker(model: nn.Module) -> str | None:
    """A layer whose training step reads a value back to the host, which a CUDA graph cannot capture."""
    for name, m in model.named_modules():
        if isinstance(m, nn.RNNBase) and m.dropout > 0:
            # cuDNN draws a new dropout seed (on the host) after the random state was set, as the engine does
            # around each capture
            return f"{name or type(m).__name__} ({type(m).__name__} with dropout) seeds cuDNN's dropout on the host"
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.momentum is None and m.track_running_stats:
            return f"{name} ({type(m).__name__} with momentum: null) reads its batch count on the host"
    return None


def native_bf16_cpu() -> bool:
    """Whether this CPU has bf16 arithmetic (AVX512-BF16 / AMX), where bf16 autocast pays."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def graph_safe_optimizer(name: str) -> bool:
    if name == "SGD":
        return True  # no step counter; momentum buffers exist after the first (eager) step
    cls = getattr(torch.optim, name, None)
    try:
        return cls is not None and "capturable" in cls([torch.zeros(1, requires_grad=True)]).defaults
    except Exception:  # noqa: BLE001 - needs arguments we cannot guess: not known to be capturable
        return False


