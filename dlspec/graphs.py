"""The CUDA-graph engine (the path dlspec.plan chose as `graph`).

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
from typing import Any, Protocol

import torch
from torch import nn

from .batch import Batch, Feed
from .data import Split
from .plan import Fallback


class Host(Protocol):
    """What the graph engine drives: a step of one optimizer (dlspec.step.OptimizerStep)."""

    model: nn.Module
    optimizer: torch.optim.Optimizer | None
    meter: Any  # dlspec.objectives.Meter

    def captured(self, batch: Batch) -> int: ...

    def evaluate(self, batch: Batch, meter: Any) -> int: ...


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
    """Captured training steps (one graph per batch size) and evaluation passes of a run's step (`host`) on the
    samples of `data` (the training split, on the device), batches made by `feed`.  `tensor_lr`: the plan's
    (the learning rate is a device tensor); `fall_back(fallback, note)` is told when the engine gives up."""

    WARMUP = 3

    def __init__(self, step: Host, feed: Feed, data: Split, device: torch.device, tensor_lr: bool,
                 fall_back: Callable[[Fallback, str], None], api: Any = None):
        self.host, self.feed, self.data, self.device = step, feed, data, device
        self.tensor_lr, self.fall_back = tensor_lr, fall_back
        self.api = api or CudaGraphAPI(device)
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
    @property
    def opt(self) -> torch.optim.Optimizer:
        assert self.host.optimizer is not None, "the graph engine captures a training step"
        return self.host.optimizer

    def _tensors(self) -> list[torch.Tensor]:
        model, opt = self.host.model, self.opt
        ts = [p for p in model.parameters()] + [b for b in model.buffers()]
        for st in opt.state.values():
            ts += [v for v in st.values() if isinstance(v, torch.Tensor)]
        ts += [g["lr"] for g in opt.param_groups if isinstance(g["lr"], torch.Tensor)]
        ts += list(self.host.meter.sums.values())
        ts += [p.grad for p in model.parameters() if p.grad is not None]
        return ts

    def _snapshot(self) -> Snapshot:
        return Snapshot(self._tensors(), {"rng": self.api.rng_state()})

    def _restore(self, snap: Snapshot) -> None:
        snap.restore()
        self.api.set_rng_state(snap.extra["rng"])

    def _hypers(self) -> list[dict[str, Any]]:
        return [{k: (("tensor", id(v)) if isinstance(v, torch.Tensor) else v) for k, v in g.items() if k != "params"}
                for g in self.opt.param_groups]

    # setting up ------------------------------------------------------------------------------------------
    def start(self) -> None:
        """After the first (eager) step: make the optimizer capturable, the lr a tensor if the plan says so."""
        opt = self.opt
        self.original = [{k: g[k] for k in ("capturable",) if k in g} for g in opt.param_groups]
        for g in opt.param_groups:
            if "capturable" in g and self.device.type == "cuda":  # (torch refuses it on a CPU)
                g["capturable"] = True
            if self.tensor_lr and not isinstance(g["lr"], torch.Tensor):
                g["lr"] = torch.tensor(float(g["lr"]), device=self.device)
        self.lr_tensors = [g["lr"] for g in opt.param_groups] if self.tensor_lr else []
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
        for g, t in zip(self.opt.param_groups, self.lr_tensors, strict=False):
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
        idx = torch.zeros(n, dtype=torch.long, device=self.device)  # sample 0, n times: valid for the warm-up
        counts: list[int] = []

        def body() -> None:  # the gather by index inside the graph, then the step
            counts.append(self.host.captured(self.feed.gather(self.data, idx)))

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
        self.host.meter.count += count
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
        for g in self.opt.param_groups:  # back to what an eager step expects
            if isinstance(g["lr"], torch.Tensor):
                g["lr"] = float(g["lr"])
        self.lr_tensors = []
        self.fall_back(Fallback("graph", f"cuda graph: off from here ({self.failed})"),
                       f"note: CUDA graph path off ({self.failed}); continuing eagerly")

    def evaluate(self, split: Split, bs: int, meter: Any) -> bool:
        """Adds a whole split to `meter` with captured forward passes (one graph per batch size; the
        meter's sums are static tensors, zeroed in place between passes); False to go eager."""
        if self.failed or not self.started:
            return False
        n = len(split)
        try:
            order = torch.arange(n, device=split.x.device)
            for i in range(0, n, bs):
                k = min(bs, n - i)
                key = (id(split.x), k)
                entry = self.eval.get(key)
                if entry is None:
                    entry = self.eval[key] = self._capture_eval(split, k, meter)
                graph, static, count = entry
                static.copy_(order[i:i + k])
                graph.replay()
                meter.count += count
        except Exception as e:  # noqa: BLE001
            self._give_up(e)
            return False
        return True

    def _capture_eval(self, split: Split, k: int, meter: Any) -> tuple[Any, torch.Tensor, int]:
        idx = torch.zeros(k, dtype=torch.long, device=split.x.device)
        counts: list[int] = []

        def body() -> None:
            counts.append(self.host.evaluate(self.feed.gather(split, idx), meter))

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
