"""Stage 6b, step: one training step as an object, chosen once per run from the task.

A `Step` owns the forward pass, the objective (weighted loss terms over named outputs, and the metrics),
the backward pass, the optimizer step(s) and their schedulers, and the evaluation's forward pass.  It is
what the trainer (dlspec.trainer), the trial step (dlspec.preflight), the CUDA-graph engine
(dlspec.graphs), `dlspec eval`, `predict` and `generate` drive: no step is taken anywhere else.  Which
step a run takes is the task's (its entry's `step`), as Lightning picks automatic or manual optimisation:

    OptimizerStep    one objective, one optimizer (and its scheduler): every task of one network
    AdversarialStep  two networks, two optimizers, alternating (dlspec.tasks.adversarial_step)

How it is executed (precision, channels_last, torch.compile, a CUDA graph, fused optimizer steps, a DDP
replica) is the plan's (dlspec.plan): `plan()` reads the step's `capabilities`, and `setup` applies the
plan to it.  A step receives a `Batch` (dlspec.batch): named inputs and named targets.

    task entry ──make──▶ task runtime (pictures, prepare a batch) ──holds──▶ step ◀──drive── trainer, trial,
                                                                                           graphs, eval, predict
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from . import distributed
from .batch import TARGET, Batch
from .contract import CLASS_LOSSES, default_metrics
from .data import Bundle
from .infer import Checked
from .objectives import Meter, Sums, binary_threshold, make_loss, make_optimizer, make_scheduler, scheduler_per_batch
from .plan import Capabilities, Fallback, Plan
from .trainspec import TrainConfig

if TYPE_CHECKING:
    from .session import Session
    from .tasks import TaskType
    from .tasks.supervised import Supervised

OUTPUT = "output"  # the name of a model's one output when the spec does not name it (`outputs:`)


@dataclass(frozen=True)
class Context:
    """What a task's runtime and its step may read of a run: the narrow interface they get instead of the
    trainer (the trial step gives them one with a copy of the model and the arguments it tries)."""

    cfg: TrainConfig
    checked: Checked
    bundle: Bundle
    model: nn.Module
    device: torch.device
    resolved: dict[str, Any]  # the torch classes of train: (loss, optimizer, scheduler; a task's own in "task")
    task: TaskType
    args: dict[str, Any]  # the task's options, defaults filled in
    world: distributed.World = field(default_factory=distributed.World)

    @classmethod
    def of(cls, s: Session) -> Context:
        return cls(s.cfg, s.checked, s.bundle, s.model, s.device, s.resolved, s.task, s.task_args,
                   s.world if s.world is not None else distributed.World())

    @property
    def steps_per_epoch(self) -> int:
        from .session import steps_per_epoch

        return max(1, steps_per_epoch(len(self.bundle.train), self.cfg))


def make_task(s: Session) -> Supervised:
    """The runtime of a prepared session's task, holding the step its entry chooses (eval, predict, generate)."""
    return s.task.make(Context.of(s), s.task_args)


# --- the objective -----------------------------------------------------------------------------------------

def _flat(out: torch.Tensor, y: torch.Tensor, per_step: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-step class targets (N, T) against scores (N, T, C) become (N·T, C) and (N·T,)."""
    if per_step:
        return out.reshape(-1, out.shape[-1]), y.reshape(-1)
    return out, y


def _target(y: torch.Tensor, out: torch.Tensor, loss: nn.Module) -> torch.Tensor:
    if isinstance(loss, (nn.BCEWithLogitsLoss, nn.BCELoss)) and not y.is_floating_point():
        return y.to(out.dtype).reshape(out.shape)
    return y


def per_step_targets(ctx: Context, loss: str) -> bool:
    """Whether the targets are class ids at every step (N, T) against scores (N, T, C), flattened for the loss."""
    b = ctx.bundle
    return ctx.task.kind == "classification" and len(b.target_shape) >= 1 and not b.train.y.is_floating_point() \
        and loss in CLASS_LOSSES


@dataclass(frozen=True)
class Term:
    """One weighted term of an objective: `weight × loss(outputs[output], targets[target])`."""

    loss: nn.Module
    output: str  # a name of the model's outputs (OUTPUT when the spec names none)
    target: str = TARGET  # a name of the batch's targets
    weight: float = 1.0
    per_step: bool = False  # class ids at every step (N, T) against scores (N, T, C): both flattened
    name: str = "loss"

    def __call__(self, outputs: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(the loss, the scores and the targets it compared, per-step ones flattened)."""
        out = outputs[self.output]
        o, t = _flat(out, targets[self.target], self.per_step)
        return self.loss(o.float(), _target(t, o, self.loss)), o, t


@dataclass(frozen=True)
class Objective:
    """What a step minimises: the weighted sum of its terms.  The first term's scores and targets are what the
    metrics (train.metrics) judge."""

    terms: tuple[Term, ...]

    def __call__(self, outputs: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(the objective, the first term's scores and targets)."""
        first, *rest = self.terms
        loss, o, t = first(outputs, targets)
        total = loss * first.weight if first.weight != 1.0 else loss
        for term in rest:
            total = total + term.weight * term(outputs, targets)[0]
        return total, o, t


def objective_of(ctx: Context, outputs: list[str]) -> Objective:
    """The objective the spec writes: `loss:` (or the task's default loss), one term over the model's output."""
    if len(outputs) > 1:
        raise ValueError(f"the model gives {len(outputs)} outputs ({', '.join(outputs)}) and `loss:` compares one "
                         "output with the target")
    name = ctx.resolved["loss"][0]
    loss = make_loss(ctx.resolved).to(ctx.device)
    return Objective((Term(loss, outputs[0], per_step=per_step_targets(ctx, name)),))


# --- a step ---------------------------------------------------------------------------------------------

def _note(e: Exception) -> str:
    return f"{type(e).__name__}: " + (str(e).strip().splitlines() or [type(e).__name__])[0][:200]


def _not_profiler_note(record: logging.LogRecord) -> bool:
    return "Profiler record function" not in record.getMessage()


class Step(ABC):
    """One training step of a run (see the module docstring).  A step is made for a run's model (`ctx`) and
    its task's runtime (`task`: what a batch trains on), asked its capabilities for the plan, then set up
    with the plan (`setup`).  Made and not set up (predict, the trial step) it runs plainly: fp32, eager."""

    meter: Sums  # the training epoch's sums (loss and metrics, or a task's own), on the device

    def __init__(self, ctx: Context, task: Any):
        self.ctx, self.task = ctx, task
        self.model: nn.Module = ctx.model
        self.device = ctx.device
        self.autocast: Callable[[], Any] = contextlib.nullcontext
        self.uncached: Callable[[], Any] = contextlib.nullcontext  # autocast inside a CUDA graph (no weight cache)
        self.eval_autocast: Callable[[], Any] = contextlib.nullcontext  # a run with CUDA graphs: as it captures
        self.fall_back: Callable[[Fallback, str], None] = lambda f, note: None

    @property
    @abstractmethod
    def data_inputs(self) -> list[str]:
        """The names of the inputs it reads from the data (dlspec.batch.Feed feeds them)."""

    @abstractmethod
    def capabilities(self, training: bool) -> Capabilities:
        """What plan() needs to know of it (training=False: evaluation only, no optimizer)."""

    def setup(self, plan: Plan, fall_back: Callable[[Fallback, str], None], training: bool = True) -> None:
        """The plan applied: autocast for its precision, SyncBatchNorm, then the step's own (_setup: optimizers
        when training, channels_last, compile, DDP).  fall_back(fallback, note) records a run-time fallback."""
        amp = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(plan.precision)
        if amp is not None:
            kind = self.device.type
            self.autocast = lambda: torch.autocast(kind, dtype=amp)
            self.uncached = lambda: torch.autocast(kind, dtype=amp, cache_enabled=False)
            self.eval_autocast = self.uncached if plan.graph else self.autocast
        self.fall_back = fall_back
        if plan.sync_batchnorm:  # before the optimizers: the same parameters, in SyncBatchNorm modules
            self.model = distributed.sync_batchnorm(self.model)
        self._setup(plan, training)

    @abstractmethod
    def _setup(self, plan: Plan, training: bool) -> None: ...

    @abstractmethod
    def train(self, batch: Batch) -> None:
        """One training step on the batch: forward, objective, backward, optimizer step(s), per-batch
        schedulers, the meter's sums (unless batch.share is 0: a stand-in sample of a process with none)."""

    def schedule_batch(self) -> bool:
        """The per-batch scheduler steps a captured step leaves out (after a replay); whether there were any."""
        return False

    @abstractmethod
    def evaluate(self, batch: Batch, meter: Sums) -> int:
        """The batch's losses and metrics added to meter's sums (no host synchronisation); the count to add."""

    def start_eval(self) -> None:  # noqa: B027 - a hook: most steps need nothing here
        """Before each evaluation pass (a step with random inputs fixes them here)."""

    @abstractmethod
    def new_meter(self) -> Sums:
        """Empty sums of what it measures."""

    def end_epoch(self, row: dict[str, Any]) -> None:  # noqa: B027 - a hook: a step without schedulers has none
        """After an epoch's row: the per-epoch schedulers' steps."""

    @property
    def plateau(self) -> bool:
        """Whether a scheduler reads the validation loss after each epoch (ReduceLROnPlateau)."""
        return False

    @abstractmethod
    def lr(self) -> float:
        """The learning rate metrics.csv shows (its first optimizer's)."""

    @abstractmethod
    def state(self, groups: list[dict[str, Any]]) -> dict[str, Any]:
        """Its part of a checkpoint: "optimizer", "scheduler" and "task" (a task's own); `groups`: values the
        graph engine changed in the first optimizer's param groups, as the checkpoint keeps them."""

    @abstractmethod
    def load(self, st: dict[str, Any]) -> None:
        """Its part of checkpoint st (Refused when it cannot go on from it)."""

    @abstractmethod
    def describe(self) -> str:
        """Its losses and optimizers for the run's `model` line."""


class OptimizerStep(Step):
    """Automatic optimisation: the model's outputs, one objective, one optimizer and its scheduler (every task
    of one network: classification, regression, reconstruction, language_model)."""

    meter: Meter

    def __init__(self, ctx: Context, task: Any):
        super().__init__(ctx, task)
        spec = ctx.checked.spec
        self.inputs = list(spec.inputs) or ["input"]  # the model reads them in this order
        self.outputs = list(spec.outputs) or [OUTPUT]
        self.metrics = list(ctx.cfg.metrics or default_metrics(ctx.task.kind, ctx.task))
        self.threshold = binary_threshold(ctx.resolved)
        self.meter = self.new_meter()
        self.optimizer: torch.optim.Optimizer | None = None
        self.scheduler: Any = None
        self.per_batch = scheduler_per_batch(ctx.resolved, ctx.cfg)
        self.scaler: Any = None
        self._objective: Objective | None = None
        self.channels_last = False
        self.net: Any = self.model  # what a training forward calls: the model, its DDP replica, or their compiled form
        self._compiling: Any = None  # torch.compile's module, until its first call worked
        self._impl: dict[str, Any] = {}  # the optimizer implementation the plan chose (fused), not the spec's
        self._spec_impl: dict[str, Any] = {}

    @property
    def data_inputs(self) -> list[str]:
        return self.inputs

    @property
    def objective(self) -> Objective:
        """The objective (made on first use: the trial step makes it at its `loss` stage)."""
        if self._objective is None:
            self._objective = objective_of(self.ctx, self.outputs)
        return self._objective

    def capabilities(self, training: bool) -> Capabilities:
        opt, sched = self.ctx.resolved["optimizer"], self.ctx.resolved.get("scheduler")
        return Capabilities(model=self.model, input_rank=len(self.ctx.bundle.sample_shape),
                            optimizers=((opt[0], opt[2]),) if training else (),
                            scheduler=(sched[0], sched[2]) if sched else None, per_batch=self.per_batch,
                            graph=self.task.why_not_graph or None)

    # set-up ------------------------------------------------------------------------------------------------
    def _setup(self, plan: Plan, training: bool) -> None:
        if training:
            self._impl = {"fused": True} if plan.fused_each and plan.fused_each[0] else {}
            self._spec_impl = {k: self.ctx.resolved["optimizer"][2].get(k) for k in self._impl}
            self.build_optimizer(self._impl)
            self.build_scheduler()
        self.scaler = torch.amp.GradScaler("cuda") if plan.precision == "fp16" else None
        self.channels_last = plan.channels_last
        if plan.channels_last:
            self.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        if self.ctx.world.distributed:  # the replica whose backward averages the gradients over the processes
            self.net = distributed.replica(self.model, self.device)
        if plan.compile:
            self._compiling = torch.compile(self.net, mode=plan.compile)
            if self.ctx.world.distributed:  # (dynamo's note, on every rank, that DDP's profiler label is not traced)
                logging.getLogger("torch._dynamo.variables.ctx_manager").addFilter(_not_profiler_note)

    def build_optimizer(self, impl: dict[str, Any] | None = None) -> torch.optim.Optimizer:
        """The spec's optimizer over the model (`impl`: the implementation the plan chose, fused=True)."""
        self.optimizer = make_optimizer(self.ctx.resolved, self.model, **(impl or {}))
        return self.optimizer

    def build_scheduler(self) -> Any:
        """The spec's scheduler of the optimizer (None when it has none)."""
        assert self.optimizer is not None
        self.scheduler = make_scheduler(self.ctx.resolved, self.optimizer, self.ctx.cfg.epochs,
                                        self.ctx.steps_per_epoch)
        return self.scheduler

    # forward and objective ---------------------------------------------------------------------------------
    def _call(self, *xs: torch.Tensor) -> Any:
        """The networks' forward: compiled when the plan says so (a compiler failure on the first call falls
        back to the plain module, recorded beside the plan), the DDP replica in training, the plain module in
        a DDP evaluation (DDP's forward would sync buffers, and the processes' parts differ in size)."""
        if not self.model.training and self.ctx.world.distributed:
            return self.model(*xs)
        if self._compiling is None:
            return self.net(*xs)
        compiled, self._compiling = self._compiling, None
        try:
            out = compiled(*xs)
        except Exception as e:  # noqa: BLE001 - no C++ compiler, an unsupported op, ...: run eagerly
            self.fall_back(Fallback("compile", f"compile: off, it failed ({type(e).__name__})"),
                           f"note: torch.compile failed ({_note(e)}); continuing without it")
            return self.net(*xs)
        self.net = compiled  # it works: the compiled module from here on
        return out

    def _prep(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.dim() == 4 else x

    def _named(self, out: Any) -> dict[str, torch.Tensor]:
        return dict(zip(self.outputs, out if isinstance(out, tuple) else (out,), strict=True))

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        """The model's outputs by name, for the batch's inputs."""
        return self._named(self._call(*[self._prep(batch.inputs[n]) for n in self.inputs]))

    def _loss(self, batch: Batch, autocast: Callable[[], Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(objective, scores, targets) of a batch as the task prepares it."""
        batch = self.task.prepare(batch, self.model.training)
        with autocast():
            return self.objective(self.forward(batch), batch.targets)

    @torch.no_grad()
    def predict(self, batch: Batch) -> dict[str, torch.Tensor]:
        """The outputs by name of the plain model in evaluation mode (predict, pictures): no compile, autocast
        or DDP; the model's mode is put back."""
        was = self.model.training
        self.model.eval()
        try:
            return self._named(self.model(*[batch.inputs[n] for n in self.inputs]))
        finally:
            self.model.train(was)

    # training ------------------------------------------------------------------------------------------------
    def train(self, batch: Batch) -> None:
        loss, o, t = self._loss(batch, self.autocast)
        assert self.optimizer is not None
        self.optimizer.zero_grad(set_to_none=True)
        self.backward(loss * batch.share if batch.share != 1.0 else loss)
        self.update()
        self.schedule_batch()
        if batch.share:
            self.meter.add(loss, o.detach().float(), t)

    def backward(self, objective: torch.Tensor) -> None:
        (self.scaler.scale(objective) if self.scaler is not None else objective).backward()

    def update(self) -> None:
        """Clip the gradients (train.clip_grad_norm), then the optimizer's step (through fp16's grad scaler)."""
        clip, opt = self.ctx.cfg.clip_grad_norm, self.optimizer
        assert opt is not None
        if self.scaler is not None:
            if clip:
                self.scaler.unscale_(opt)
                nn.utils.clip_grad_norm_(self.model.parameters(), clip)
            self.scaler.step(opt)
            self.scaler.update()
            return
        if clip:
            nn.utils.clip_grad_norm_(self.model.parameters(), clip)
        opt.step()

    def schedule_batch(self) -> bool:
        if self.scheduler is None or not self.per_batch:
            return False
        self.scheduler.step()
        return True

    def captured(self, batch: Batch) -> int:
        """The step a CUDA graph captures: forward, objective, backward, clipping, optimizer step, device-side
        sums.  No host synchronisation and no allocation that outlives it; the gradients are zeroed in place
        (they are the same tensors in every replay).  Returns the meter count to add."""
        loss, o, t = self._loss(batch, self.uncached)
        assert self.optimizer is not None
        self.optimizer.zero_grad(set_to_none=False)
        loss.backward()
        if self.ctx.cfg.clip_grad_norm:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.ctx.cfg.clip_grad_norm, foreach=True)
        self.optimizer.step()
        return self.meter.add_sums(loss, o.detach().float(), t)

    # evaluation ------------------------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, batch: Batch, meter: Sums) -> int:
        loss, o, t = self._loss(batch, self.eval_autocast)
        assert isinstance(meter, Meter)
        return meter.add_sums(loss, o.float(), t)

    def start_eval(self) -> None:
        self.task.start_eval()

    def new_meter(self) -> Meter:
        return Meter(self.metrics, self.device, self.threshold)

    # the epoch and the checkpoint --------------------------------------------------------------------------
    @property
    def plateau(self) -> bool:
        return self.scheduler is not None and not self.per_batch and \
            type(self.scheduler).__name__ == "ReduceLROnPlateau"

    def end_epoch(self, row: dict[str, Any]) -> None:
        if self.scheduler is None or self.per_batch:
            return
        with warnings.catch_warnings():  # resumed after the epoch's last batch: no optimizer.step() yet
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step")
            if self.plateau:  # the validation loss (with val_split), else the training loss
                self.scheduler.step(row["val_loss"] if "val_loss" in row else row["train_loss"])
            else:
                self.scheduler.step()

    def lr(self) -> float:
        assert self.optimizer is not None
        return float(self.optimizer.param_groups[0]["lr"])

    def describe(self) -> str:
        r = self.ctx.resolved
        return f"loss {r['loss'][0]} · optimizer {r['optimizer'][0]}" + \
            (f" · scheduler {r['scheduler'][0]}" if "scheduler" in r else "")

    def state(self, groups: list[dict[str, Any]]) -> dict[str, Any]:
        st = {"optimizer": self._portable_optimizer_state(groups), "task": None,
              "scheduler": self._portable_scheduler_state()}
        if self.scaler is not None:
            st["scaler"] = self.scaler.state_dict()
        return st

    def _portable_optimizer_state(self, groups: list[dict[str, Any]]) -> dict[str, Any]:
        """The optimizer's state as an eager run on any device can load it (a CUDA-graph run's tensor learning
        rate and capturable flag, and the implementation the plan chose, are this run's, not the checkpoint's)."""
        assert self.optimizer is not None
        sd = self.optimizer.state_dict()
        for g, d in zip(sd["param_groups"], groups, strict=False):
            g.update(d)
        for g in sd["param_groups"]:
            g.update(self._spec_impl)
            if isinstance(g.get("lr"), torch.Tensor):
                g["lr"] = float(g["lr"])
        return sd

    def _portable_scheduler_state(self) -> dict[str, Any] | None:
        if self.scheduler is None:
            return None
        sd = self.scheduler.state_dict()
        for k in ("_last_lr", "base_lrs"):
            if isinstance(sd.get(k), list):
                sd[k] = [float(v) if isinstance(v, torch.Tensor) else v for v in sd[k]]
        return sd

    def load(self, st: dict[str, Any]) -> None:
        old = (st.get("scheduler") or {}).get("total_steps")
        sched = self.scheduler
        if type(sched).__name__ == "OneCycleLR" and old is not None and old != sched.total_steps:
            from .session import Refused

            raise Refused([], message=f"OneCycleLR of this run was set up for {old} steps but train.epochs now makes "
                          f"{sched.total_steps}; resuming would change its schedule (keep train.epochs, or "
                          "start a new run)")
        assert self.optimizer is not None
        sd = st["optimizer"]
        # this run's implementation in the groups torch reads while loading (it places a fused step's counter)
        self.optimizer.load_state_dict({**sd, "param_groups": [{**g, **self._impl} for g in sd["param_groups"]]})
        if sched is not None and st.get("scheduler") is not None:
            sched.load_state_dict(st["scheduler"])
        if self.scaler is not None and st.get("scaler"):
            self.scaler.load_state_dict(st["scaler"])
