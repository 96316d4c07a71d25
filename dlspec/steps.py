"""How the training step runs: the plan (eager, channels_last, torch.compile, CUDA graph) and the graph engine.

`plan()` decides, from the spec's options and what the run uses, which path a run takes and why; the
decisions are data (`Plan`), printed at the start of a run and stored in summary.json.

`Graphs` runs the training step, and the evaluation pass, as CUDA graphs: the data stays on the device,
a batch is an index tensor copied into a static buffer, and one replay does the gather, forward, loss,
backward, clipping, optimizer step and the on-device loss/metric sums.  The rules that keep the results
those of the eager path:

- the first step of a run is eager (it creates the optimizer state the way torch does);
- warm-up steps (needed before a capture) run on a snapshot that is restored in place afterwards, so
  they change no weight, optimizer state, metric sum or random-number state;
- a batch of another size (the last, smaller batch of an epoch) gets its own graph: no sample is
  dropped or repeated, and the order is the eager path's;
- the learning rate is a device tensor when a scheduler changes it every batch (Adam/AdamW, whose
  capturable step reads it); any other change of an optimizer hyperparameter (a per-epoch scheduler,
  ReduceLROnPlateau) is seen before the next replay and the graphs are captured again.

Everything here that is not the capture itself runs on the CPU too (`api=` takes a stand-in for
torch.cuda's graph functions), which is how the tests check these rules without a GPU.
"""

from __future__ import annotations

from collections.abc import Callable
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

class CudaGraphAPI:
    """torch.cuda's graph functions, as the engine uses them, on the run's device (cuda:N included: streams,
    captures, replays and the random-number state all belong to the current device otherwise)."""

    def __init__(self, device: torch.device):
        self.device = device

    def warmup(self, fn: Callable[[], None], times: int) -> None:
        """`fn` on a side stream, as torch requires before a capture.  Runs with CUDA's sync debug mode set to
        error: a step that reads a value back to the host (which a capture cannot hold) fails here, before
        any capture began, and the engine carries on eagerly from a clean state."""
        with torch.cuda.device(self.device):
            current = torch.cuda.current_stream()
            s = torch.cuda.Stream()
            s.wait_stream(current)
            mode = torch.cuda.get_sync_debug_mode()
            torch.cuda.set_sync_debug_mode("error")
            try:
                with torch.cuda.stream(s):
                    for _ in range(times):
                        fn()
            finally:
                torch.cuda.set_sync_debug_mode(mode)
                current.wait_stream(s)  # also after a failure: the restore that follows must come after fn's work

    def capture(self, fn: Callable[[], None]) -> Any:
        with torch.cuda.device(self.device):
            current = torch.cuda.current_stream()
            g = torch.cuda.CUDAGraph()
            try:
                with torch.cuda.graph(g):
                    fn()
            except BaseException:
                # when the capture ends in an error, torch's graph context exits without giving the stream back
                torch.cuda.set_stream(current)
                raise
            return _Graph(g, self.device)

    def rng_state(self) -> Any:
        return torch.cuda.get_rng_state(self.device)

    def set_rng_state(self, st: Any) -> None:
        torch.cuda.set_rng_state(st, self.device)


class _Graph:
    """A captured graph, replayed on its own device."""

    def __init__(self, graph: Any, device: torch.device):
        self.graph, self.device = graph, device

    def replay(self) -> None:
        with torch.cuda.device(self.device):
            self.graph.replay()


class Snapshot:
    """Every tensor a step changes (weights, buffers, optimizer state, metric sums), copied, and put back
    in place (same storage, so graphs captured after a restore see the restored values)."""

    def __init__(self, tensors: list[torch.Tensor], extra: dict[str, Any]):
        self.tensors = tensors
        self.copies = [t.detach().clone() for t in tensors]
        self.extra = extra

    def restore(self) -> None:
        with torch.no_grad():
            for t, c in zip(self.tensors, self.copies, strict=True):
                t.copy_(c)


class Graphs:
    """Captured training steps (one graph per batch size) and evaluation passes for a Trainer."""

    WARMUP = 3

    def __init__(self, tr: Any, api: Any = None):
        self.tr = tr
        self.api = api or CudaGraphAPI(tr.device)
        self.train: dict[int, tuple[Any, torch.Tensor, int]] = {}  # batch size -> (graph, static index, count)
        self.eval: dict[tuple[int, int], tuple[Any, torch.Tensor, Any]] = {}
        self.hypers: list[dict[str, Any]] | None = None
        self.captures = 0  # how many graphs were captured (re-captures included)
        self.recaptures_this_epoch = 0
        self.failed: str | None = None  # why the graph path ended (the run goes on eagerly)
        self.started = False
        self.original: list[dict[str, Any]] = []  # the param groups' own capturable flags
        self.lr_tensors: list[torch.Tensor] = []  # per param group, when the lr is read from the device

    # state a step touches ---------------------------------------------------------------------------------
    def _tensors(self) -> list[torch.Tensor]:
        tr = self.tr
        ts = [p for p in tr.model.parameters()] + [b for b in tr.model.buffers()]
        for st in tr.opt.state.values():
            ts += [v for v in st.values() if isinstance(v, torch.Tensor)]
        ts += [g["lr"] for g in tr.opt.param_groups if isinstance(g["lr"], torch.Tensor)]
        ts += list(tr.meter.sums.values())
        ts += [p.grad for p in tr.model.parameters() if p.grad is not None]
        return ts

    def _snapshot(self) -> Snapshot:
        return Snapshot(self._tensors(), {"rng": self.api.rng_state()})

    def _restore(self, snap: Snapshot) -> None:
        snap.restore()
        self.api.set_rng_state(snap.extra["rng"])

    def _hypers(self) -> list[dict[str, Any]]:
        return [{k: (("tensor", id(v)) if isinstance(v, torch.Tensor) else v) for k, v in g.items() if k != "params"}
                for g in self.tr.opt.param_groups]

    # setting up ------------------------------------------------------------------------------------------
    def start(self) -> None:
        """After the first (eager) step: make the optimizer capturable, the lr a tensor if the plan says so."""
        tr = self.tr
        opt = tr.opt
        self.original = [{k: g[k] for k in ("capturable",) if k in g} for g in opt.param_groups]
        for g in opt.param_groups:
            if "capturable" in g and tr.device.type == "cuda":  # (torch refuses it on a CPU)
                g["capturable"] = True
            if tr.plan.tensor_lr and not isinstance(g["lr"], torch.Tensor):
                g["lr"] = torch.tensor(float(g["lr"]), device=tr.device)
        self.lr_tensors = [g["lr"] for g in opt.param_groups] if tr.plan.tensor_lr else []
        self.hypers = self._hypers()
        opt._warned_capturable_if_run_uncaptured = True  # type: ignore[attr-defined]  # the warm-up steps are
        # uncaptured on purpose; torch would warn about capturable=True outside a capture
        for p, st in opt.state.items():  # a non-capturable step keeps its counters (step; NAdam's mu_product)
            for k, v in st.items():      # on the host: a capturable one reads them on the device
                if isinstance(v, torch.Tensor) and v.dim() == 0 and v.device != p.device:
                    st[k] = v.to(p.device)
        self.started = True

    def after_schedule(self) -> None:
        """After a scheduler step: a learning rate the scheduler assigned as a number (torch versions that
        assign rather than fill a tensor lr) goes into the device tensor the graphs read."""
        for g, t in zip(self.tr.opt.param_groups, self.lr_tensors, strict=False):
            if g["lr"] is not t:
                t.fill_(float(g["lr"]))
                g["lr"] = t
        self._check_hypers()

    def _check_hypers(self) -> None:
        """Hyperparameters change only in a scheduler step: checked after a per-batch one and at the start
        of each epoch (after a per-epoch one), not at every replay."""
        now = self._hypers()
        if self.hypers is not None and now != self.hypers:
            self.train.clear()  # the graphs baked the old values in: capture again
            self.recaptures_this_epoch += 1
            if self.recaptures_this_epoch > 2 and not self.failed:
                self._give_up(RuntimeError("the optimizer's hyperparameters change every batch "
                                           "(capturing again each time is slower than running eagerly)"))
        self.hypers = now

    def _capture_train(self, n: int) -> tuple[Any, torch.Tensor, int]:
        tr = self.tr
        idx = torch.zeros(n, dtype=torch.long, device=tr.device)  # sample 0, n times: valid for the warm-up
        counts: list[int] = []

        def body() -> None:
            counts.append(tr.fused_step(idx))

        snap = self._snapshot()
        try:
            self.api.warmup(body, self.WARMUP)
            self._restore(snap)
            graph = self.api.capture(body)
        finally:
            self._restore(snap)  # also when the capture failed: the run goes on eagerly from this state
        self.captures += 1
        return graph, idx, counts[-1]

    # running ---------------------------------------------------------------------------------------------
    def step(self, idx: torch.Tensor) -> bool:
        """One training step on these sample indices; False when the step must run eagerly."""
        if self.failed:
            return False
        if not self.started:
            return False  # the caller runs the first step eagerly, then calls start()
        n = idx.numel()
        entry = self.train.get(n)
        if entry is None:
            try:
                entry = self.train[n] = self._capture_train(n)
            except Exception as e:  # noqa: BLE001 - an op that cannot be captured: carry on eagerly
                self._give_up(e)
                return False
        graph, static, count = entry
        static.copy_(idx)
        graph.replay()
        self.tr.meter.count += count
        return True

    def new_epoch(self) -> None:
        self.recaptures_this_epoch = 0
        if self.started and not self.failed:
            self._check_hypers()

    def _give_up(self, e: Exception) -> None:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        self.failed = f"{type(e).__name__}: {first}"
        self.train.clear()
        self.eval.clear()
        tr = self.tr
        for g in tr.opt.param_groups:  # back to what an eager step expects
            if isinstance(g["lr"], torch.Tensor):
                g["lr"] = float(g["lr"])
        self.lr_tensors = []
        tr.plan.graph = False
        tr.plan.tensor_lr = False
        tr.plan.why.append(f"cuda graph: off from here ({self.failed})")
        tr.say(f"note: CUDA graph path off ({self.failed}); continuing eagerly")

    def evaluate(self, x: torch.Tensor, y: torch.Tensor, bs: int, meter: Any) -> bool:
        """Adds a whole split to `meter` with captured forward passes (one graph per batch size; the
        meter's sums are static tensors, zeroed in place between passes); False to go eager."""
        if self.failed or not self.started:
            return False
        n = len(x)
        try:
            order = torch.arange(n, device=x.device)
            for i in range(0, n, bs):
                k = min(bs, n - i)
                key = (id(x), k)
                entry = self.eval.get(key)
                if entry is None:
                    entry = self.eval[key] = self._capture_eval(x, y, k, meter)
                graph, static, count = entry
                static.copy_(order[i:i + k])
                graph.replay()
                meter.count += count
        except Exception as e:  # noqa: BLE001
            self._give_up(e)
            return False
        return True

    def _capture_eval(self, x: torch.Tensor, y: torch.Tensor, k: int, meter: Any) -> tuple[Any, torch.Tensor, int]:
        tr = self.tr
        idx = torch.zeros(k, dtype=torch.long, device=x.device)
        counts: list[int] = []

        def body() -> None:
            counts.append(tr.eval_batch(x.index_select(0, idx), y.index_select(0, idx), meter))

        sums = [t.clone() for t in meter.sums.values()]
        try:
            self.api.warmup(body, 1)
            graph = self.api.capture(body)
        finally:
            with torch.no_grad():
                for t, c in zip(meter.sums.values(), sums, strict=True):
                    t.copy_(c)
        self.captures += 1
        return graph, idx, counts[-1]
