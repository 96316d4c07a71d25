"""The fast-path plan: which way a run's training step is executed (eager, channels_last, torch.compile,
CUDA graph, fused optimizer step), and why.

`plan()` decides, from the spec's options and what the run uses, which path a run takes and why; the
decisions are data (`Plan`), printed at the start of a run and stored in summary.json."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

# optimizers whose capturable step takes the learning rate as a device tensor
TENSOR_LR = ("Adam", "AdamW")
# schedulers that also change momentum / beta1 every batch unless cycle_momentum is false
CYCLES_MOMENTUM = ("OneCycleLR", "CyclicLR")
# where torch's fused optimizer step pays (benchmarks/optimizer_step.py; benchmarks/README.md): on the CPU,
# Adam's step for SimpleCNN's 805 k parameters takes 1.17 ms for-loop, 1.09 ms foreach, 0.40 ms fused (2
# threads); SGD's fused step is slower (0.85×).  On CUDA torch's own default (foreach) is kept: not measured.
FUSED_PAYS = {"cpu": ("Adam", "AdamW")}


@dataclass
class Plan:
    """Which path a run takes, and why (each choice that was not simply the spec's)."""

    device: str
    precision: str
    channels_last: bool
    compile: str | None  # a torch.compile mode, or None
    graph: bool
    tensor_lr: bool = False
    fused: bool = False  # the optimizer is made with fused=True
    why: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        """e.g. 'cuda-graph+channels_last+bf16', 'compile(default)', 'eager'."""
        base = "cuda-graph" if self.graph else f"compile({self.compile})" if self.compile else "eager"
        extras = (["channels_last"] if self.channels_last else []) + ([self.precision] if self.precision != "fp32" else []) \
            + (["fused"] if self.fused else [])
        return "+".join([base] + extras)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "channels_last": self.channels_last, "compile": self.compile,
                "cuda_graph": self.graph, "tensor_lr": self.tensor_lr, "fused": self.fused, "why": list(self.why)}


def has_conv2d(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.conv._ConvNd) and m.weight.dim() == 4 for m in model.modules())


def plan(cfg: Any, device: torch.device, model: nn.Module, optimizer: str | None, scheduler: tuple[str, dict] | None,
         sched_per_batch: bool, data_on_device: bool, input_rank: int,
         optimizer_kw: dict[str, Any] | None = None) -> Plan:
    """The path for this run.  `cfg` is the TrainConfig; `input_rank` the rank of one sample; `optimizer_kw`
    the optimizer's arguments as the spec writes them."""
    why: list[str] = []
    fused = plan_fused(cfg.fused, device, optimizer, optimizer_kw or {}, why)
    precision = cfg.precision
    if precision == "auto":
        # measured on a CPU with AMX (benchmarks/README.md): bf16 autocast ~1.25× fp32 for LeNet, same accuracy
        # within seed noise; on CUDA the small models of this project are launch-bound: fp32
        precision = "bf16" if device.type == "cpu" and native_bf16_cpu() else "fp32"
        why.append(f"precision: auto → {precision}" + (" (this CPU computes bf16 natively)" if precision == "bf16"
                                                        else f" (no native bf16 measured to pay on {device.type})"))
    # channels_last: measured on the CPU (benchmarks/README.md: a LeNet fp32 step 12.0–13.5 → 10.7–11.1 ms at
    # 2 threads); on CUDA it pays with tensor cores (bf16/fp16), so auto turns it on there only then.
    conv = has_conv2d(model) and input_rank == 3
    if cfg.channels_last == "auto":
        cl = conv and (device.type == "cpu" or (device.type == "cuda" and precision != "fp32"))
        if cl:
            why.append("channels_last: auto, the model has 2-d convolutions"
                       + (" (faster on the CPU)" if device.type == "cpu" else f" and runs in {precision}"))
    else:
        cl = bool(cfg.channels_last) and conv
        if cfg.channels_last and not conv:
            why.append("channels_last: off, the model has no 2-d convolution over image inputs")
    if precision == "fp32" and cfg.precision == "fp32" and conv and device.type == "cpu" and native_bf16_cpu():
        why.append("precision: fp32 as written; this CPU computes bf16 natively (`--precision auto` trained LeNet "
                   "1.2× faster here, same accuracy)")
    comp = cfg.compile or None
    if comp is True:
        comp = "default"
    graph = False
    tensor_lr = False
    if cfg.cuda_graph in ("auto", True):
        reason = None
        if device.type != "cuda":
            reason = f"runs on {device.type}" if cfg.cuda_graph is True else None
        elif comp:
            reason = "torch.compile is on (its mode reduce-overhead makes its own graphs)"
        elif precision == "fp16":
            reason = "fp16's grad scaler reads the overflow flag on the host every step"
        elif not data_on_device:
            reason = "the data does not fit in device memory"
        elif (blocker := graph_blocker(model)) is not None:
            reason = blocker
        elif optimizer is not None and not graph_safe_optimizer(optimizer):
            reason = f"{optimizer}'s step is not capturable (use SGD, Adam, AdamW, RMSprop, ...)"
        elif scheduler is not None and sched_per_batch:
            name, kw = scheduler
            if name in CYCLES_MOMENTUM and kw.get("cycle_momentum", True):
                reason = f"{name} changes momentum every batch (set cycle_momentum: false to capture)"
            elif optimizer not in TENSOR_LR:
                reason = f"a per-batch {name} with {optimizer}: only Adam/AdamW read the learning rate from the device"
            else:
                tensor_lr = True
        if reason is None and device.type == "cuda":
            graph = True
            why.append("cuda graph: the whole training step is captured once and replayed")
        elif reason is not None:
            why.append(f"cuda graph: off, {reason}")
    return Plan(device=device.type, precision=precision, channels_last=cl, compile=comp, graph=graph,
                tensor_lr=tensor_lr and graph, fused=fused, why=why)


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


# --- the graph engine ------------------------------------------------------------------------------------

