"""Stage 6b, trainer: the state of a run and its steps — model, optimizer, scheduler, meter, checkpoint.

`Trainer` holds what a checkpoint saves and restores (bit-exact resume: weights, optimizer and scheduler
state, the RNG, the position within an epoch), runs an epoch's batches in the order `epoch_permutation`
fixes, and evaluates a split.  What a batch is trained on and how its loss is formed is the task's
(dlspec.tasks); how the step is executed (eager, compiled, CUDA graph) is the plan's (dlspec.plan, dlspec.graphs).
"""

from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from . import distributed, runs
from . import graphs as graph_engine
from . import plan as fast_path
from .contract import CLASS_LOSSES, default_metrics
from .data import Split
from .data.base import float_bytes
from .objectives import (
    Meter,
    Sums,
    binary_threshold,
    make_loss,
    make_optimizer,
    make_scheduler,
    scheduler_per_batch,
)
from .selection import ended_early
from .session import Options, Refused, Session, fits_on, steps_per_epoch


def epoch_permutation(n: int, seed: int, epoch: int, shuffle: bool = True) -> torch.Tensor:
    """The order in which epoch `epoch` (0-based) visits the n training samples.

    The rule, part of the run's contract (a resumed run and a hand-written reference loop rely on it):
    ``torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))`` with
    `seed` = train.seed, or ``torch.arange(n)`` with `shuffle: false`.  Batch b is
    ``perm[b * batch_size:(b + 1) * batch_size]``.  The generator is private: the global torch RNG
    (dropout, ...) is not touched.
    """
    if not shuffle:
        return torch.arange(n)
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g)



def _not_profiler_note(record: logging.LogRecord) -> bool:
    return "Profiler record function" not in record.getMessage()


@dataclass
class Clock:
    """The run's time so far, carried across a resume in checkpoint["timing"] (a checkpoint from before
    these fields starts them at 0): metrics.csv's elapsed_s goes on growing, and the epoch a mid-epoch
    checkpoint cut in two gets its samples/s over the whole epoch."""

    run_s: float = 0.0  # the run's elapsed seconds (elapsed_s, summary.json's wall and run times)
    train_s: float = 0.0  # seconds in training epochs (train_time_s)
    epoch_s: float = 0.0  # a mid-epoch checkpoint: training seconds already spent in its unfinished epoch
    epoch_samples: int = 0  # ... and the samples already trained in it

    @classmethod
    def of(cls, st: dict[str, Any]) -> Clock:
        t = st.get("timing") or {}
        return cls(float(t.get("run_s", 0.0)), float(t.get("train_s", 0.0)), float(t.get("epoch_s", 0.0)),
                   int(t.get("epoch_samples", 0)))


# --- the loop ------------------------------------------------------------------------------------------

def _flat(out: torch.Tensor, y: torch.Tensor, per_step: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-step class targets (N, T) against scores (N, T, C) become (N·T, C) and (N·T,)."""
    if per_step:
        return out.reshape(-1, out.shape[-1]), y.reshape(-1)
    return out, y


def per_step_targets(s: Session, loss: str) -> bool:
    """Whether the targets are class ids at every step (N, T) against scores (N, T, C), flattened for the loss."""
    kind = s.task.kind if s.task is not None else s.bundle.task
    return kind == "classification" and len(s.bundle.target_shape) >= 1 and \
        not s.bundle.train.y.is_floating_point() and loss in CLASS_LOSSES


def _target(y: torch.Tensor, out: torch.Tensor, loss: nn.Module) -> torch.Tensor:
    if isinstance(loss, (nn.BCEWithLogitsLoss, nn.BCELoss)) and not y.is_floating_point():
        return y.to(out.dtype).reshape(out.shape)
    return y


class Diverged(Exception):
    """The training went to nan or infinity (a loss, a weight): the run stops without saving it.  str(): what
    is not finite and where, `epoch 3: train d_loss nan, train g_loss nan`."""


class Trainer:
    def __init__(self, s: Session, opts: Options, training: bool = True):
        self.s, self.opts = s, opts
        cfg = s.cfg
        self.model = s.model
        self.device = s.device
        self.loss_fn = make_loss(s.resolved).to(self.device)
        self.steps_per_epoch = steps_per_epoch(len(s.bundle.train), cfg)
        # eval/predict (training=False) need neither optimizer nor scheduler (and skip their imports)
        self._opt: torch.optim.Optimizer | None = None
        self.sched: Any = None
        self.sched_per_batch = scheduler_per_batch(s.resolved, cfg)
        self.metrics = [m for m in (cfg.metrics or default_metrics(s.task.kind, s.task))]
        self.per_step = per_step_targets(s, s.resolved["loss"][0])
        self.task = s.task.make(self, s.task_args)  # what a batch trains on, and what it shows after an epoch
        self.threshold = binary_threshold(s.resolved)
        self.epoch = 0  # completed epochs
        self.batch = 0  # next batch within the current epoch (non-zero only in a mid-epoch checkpoint)
        self.own_step = bool(self.task.own_step)  # the task trains each batch itself (a GAN)
        self.meter: Any = self.task.meter if self.own_step else Meter(self.metrics, self.device, self.threshold)
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] | None = None
        self.bad_evals = 0
        self.stopped_early = False  # early stopping ended the run (a resume with more epochs trains on)
        self.clock = Clock()
        self.stop_requested = False
        self.stop_signal = 0  # the signal that asked for the stop (SIGINT, SIGTERM, SIGHUP)
        self.first_step_checked = False  # the weights after this command's first step were looked at
        self.on_device = self._fits_on_device()
        if self.on_device:
            b = s.bundle
            b.train = Split(b.train.x.to(self.device), b.train.y.to(self.device))
            b.test = Split(b.test.x.to(self.device), b.test.y.to(self.device))
            if s.val is not None:
                s.val = Split(s.val.x.to(self.device), s.val.y.to(self.device))
        self.world = s.world if s.world is not None else distributed.World()
        self.sync_bn = self.world.distributed and cfg.sync_batchnorm and self.device.type == "cuda" \
            and distributed.has_batchnorm(self.model)
        if self.sync_bn:  # before the optimizer: the same parameters, in SyncBatchNorm modules
            self.model = s.model = distributed.sync_batchnorm(self.model)
        self.say: Any = (lambda *a: None) if opts.quiet or not self.world.main else (lambda *a: print(*a, flush=True))
        sched = s.resolved.get("scheduler")
        _, _, opt_kw = s.resolved["optimizer"]
        self.plan = fast_path.plan(cfg, self.device, self.model, s.resolved["optimizer"][0] if training else None,
                               (sched[0], sched[2]) if sched else None, self.sched_per_batch, self.on_device,
                               len(s.bundle.sample_shape), opt_kw)
        # the optimizer implementation this run chose (not the spec's): re-applied after loading a checkpoint,
        # and left out of the checkpoint, which keeps the spec's own values
        if self.own_step and (self.plan.compile or self.plan.channels_last):
            self.plan.compile, self.plan.channels_last = None, False
            self.plan.why = [w for w in self.plan.why if not w.startswith(("compile", "channels_last"))]
            self.plan.why.append(f"compile, channels_last: off, the {s.task.name} task runs its networks itself")
        if self.world.distributed:
            # torch.compile wraps the DDP replica (torch's DDPOptimizer cuts the graph at the gradient buckets);
            # dlspec's CUDA graphs capture one process's whole step, without DDP's all-reduce: off
            graph = self.plan.graph
            self.plan.graph = self.plan.tensor_lr = False
            self.plan.why = [w for w in self.plan.why if not w.startswith("cuda graph")]
            self.plan.why.append(f"ddp: {self.world.size} processes ({distributed.backend(self.device)}), "
                                 "DistributedDataParallel"
                                 + (", compiled" if self.plan.compile else "")
                                 + ("; cuda graph: off, its capture does not take DDP's all-reduce" if graph else ""))
            if distributed.has_batchnorm(self.model):
                self.plan.why.append(
                    "sync_batchnorm: on, BatchNorm over the whole batch" if self.sync_bn else
                    "sync_batchnorm: off, each process normalises its part of the batch"
                    + (" (torch's SyncBatchNorm needs CUDA)" if cfg.sync_batchnorm else " (as written)"))
        if self.plan.graph and not self.task.graph_ok:
            self.plan.graph = self.plan.tensor_lr = False
            self.plan.why.append(f"cuda graph: off, {self.task.why_not_graph}")
        self._impl = {"fused": True} if self.plan.fused else {}
        self._spec_impl = {k: opt_kw.get(k) for k in self._impl}
        if training and self.own_step:
            self.task.setup(self._impl)
        elif training:
            opt = make_optimizer(s.resolved, self.model, **self._impl)
            self._opt = opt
            self.sched = make_scheduler(s.resolved, opt, cfg.epochs, max(1, self.steps_per_epoch))
        else:
            self.plan.graph = self.plan.tensor_lr = False  # eval/predict: a few batches, not worth a capture
        amp = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.plan.precision)
        self.autocast = (lambda: torch.autocast(self.device.type, dtype=amp)) if amp else contextlib.nullcontext
        self.scaler = torch.amp.GradScaler("cuda") if self.plan.precision == "fp16" else None
        if self.plan.channels_last:
            self.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.eager: Any = self.model  # the step's module uncompiled: the model, or its DDP replica
        if self.world.distributed and not self.own_step:  # the replica whose backward averages the gradients
            # over the ranks (a task with its own step makes a replica of each network it trains)
            self.eager = distributed.replica(self.model, self.device)
        self.forward: Any = self.eager
        if self.plan.compile:
            self.forward = torch.compile(self.eager, mode=self.plan.compile)
            if self.world.distributed:  # (dynamo's note, on every rank, that DDP's profiler label is not traced)
                logging.getLogger("torch._dynamo.variables.ctx_manager").addFilter(_not_profiler_note)
        self._compiled_ok = False
        self.graphs = graph_engine.Graphs(self) if self.plan.graph else None
        self._eval_meters: dict[int, Meter] = {}
        self._autocast_graph = (lambda: torch.autocast(self.device.type, dtype=amp, cache_enabled=False)) \
            if amp else contextlib.nullcontext

    @property
    def opt(self) -> torch.optim.Optimizer:
        """The optimizer: only a Trainer made with training=True has one."""
        if self._opt is None:
            raise RuntimeError("this Trainer was made with training=False (eval): it has no optimizer")
        return self._opt

    def lr(self) -> float:
        """The learning rate metrics.csv shows (a task with its own optimizers: its first's)."""
        return float(self.task.lr()) if self.own_step else float(self.opt.param_groups[0]["lr"])

    def _fits_on_device(self) -> bool:
        b = self.s.bundle
        if b.train.x.device == self.device:
            return True  # already there (CPU, or materialized on the GPU by prepare)
        return fits_on(self.device, float_bytes(b))

    # checkpoint state ----------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        st: dict[str, Any] = {
            "format": 1,
            "model": self.model.state_dict(),
            "optimizer": None if self.own_step else self._portable_optimizer_state(),
            "task": self.task.state() if self.own_step else None,
            "scheduler": self._portable_scheduler_state(),
            "epoch": self.epoch,
            "batch": self.batch,
            "meter": self._meter_state() if self.batch else None,
            "rng": {"torch": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
            "spec_hash": runs.spec_hash(self.s.doc.data),
            "spec": runs.plain(self.s.doc.data),
            "history": self.history,
            "best": self.best,
            "bad_evals": self.bad_evals,
            "stopped_early": self.stopped_early,
            "timing": vars(self.clock).copy(),
        }
        if self.scaler is not None:
            st["scaler"] = self.scaler.state_dict()
        return st

    def _meter_state(self) -> dict[str, Any]:
        """The epoch's sums so far, over every rank (a checkpoint is the same whatever the number of processes)."""
        st = self.meter.state()
        if self.world.distributed:
            sums, count = distributed.summed(self.meter.sums, self.meter.count, self.world, self.device)
            st = {"sums": {k: v.cpu() for k, v in sums.items()}, "count": count}
        return st

    def _portable_optimizer_state(self) -> dict[str, Any]:
        """The optimizer's state as an eager run on any device can load it (a CUDA-graph run's tensor
        learning rate and capturable flag are this run's business, not the checkpoint's)."""
        sd = self.opt.state_dict()
        for g, d in zip(sd["param_groups"], self.graphs.original if self.graphs else [], strict=False):
            g.update(d)
        for g in sd["param_groups"]:
            g.update(self._spec_impl)
            if isinstance(g.get("lr"), torch.Tensor):
                g["lr"] = float(g["lr"])
        return sd

    def _portable_scheduler_state(self) -> dict[str, Any] | None:
        if self.sched is None:
            return None
        sd = self.sched.state_dict()
        for k in ("_last_lr", "base_lrs"):
            if isinstance(sd.get(k), list):
                sd[k] = [float(v) if isinstance(v, torch.Tensor) else v for v in sd[k]]
        return sd

    def load(self, st: dict[str, Any]) -> None:
        old = (st.get("scheduler") or {}).get("total_steps")
        if type(self.sched).__name__ == "OneCycleLR" and old is not None and old != self.sched.total_steps:
            raise Refused([], message=f"OneCycleLR of this run was set up for {old} steps but train.epochs now makes "
                          f"{self.sched.total_steps}; resuming would change its schedule (keep train.epochs, or "
                          "start a new run)")
        self.model.load_state_dict(st["model"])
        if self.own_step:
            self.task.load(st.get("task"))
        else:
            sd = st["optimizer"]
            # this run's implementation in the groups torch reads while loading (it places a fused step's counter)
            self.opt.load_state_dict({**sd, "param_groups": [{**g, **self._impl} for g in sd["param_groups"]]})
        if self.sched is not None and st.get("scheduler") is not None:
            self.sched.load_state_dict(st["scheduler"])
        self.epoch, self.batch = int(st["epoch"]), int(st["batch"])
        if st.get("meter") and self.world.main:  # the sums of every rank: rank 0 carries them, the others add theirs
            self.meter.load(st["meter"])
        torch.set_rng_state(st["rng"]["torch"])
        if st["rng"].get("cuda") and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(st["rng"]["cuda"])
        self.history = list(st.get("history") or [])
        self.best = st.get("best")
        self.bad_evals = int(st.get("bad_evals", 0))
        self.stopped_early = ended_early(st)
        self.clock = Clock.of(st)
        if self.scaler is not None and st.get("scaler"):
            self.scaler.load_state_dict(st["scaler"])

    # nan and infinity -------------------------------------------------------------------------------------
    def not_finite(self, row: dict[str, Any] | None = None) -> str | None:
        """What of the training is nan or infinite — an epoch's training loss (every task's: `train_loss`,
        a GAN's `train_d_loss` and `train_g_loss`), else the first weight or buffer of the model that holds
        such a value — as a phrase, or None.  One host synchronisation (read once per epoch and before a
        checkpoint is written: a checkpoint never holds what a nan step made)."""
        if row is not None:
            bad = [f"train {k[6:]} {v}" for k, v in row.items()
                   if k.startswith("train_") and k.endswith("loss") and isinstance(v, float) and not math.isfinite(v)]
            if bad:
                return ", ".join(bad)
        named = [(k, t) for k, t in self.model.state_dict().items() if t.is_floating_point() and t.numel()]
        if not named:
            return None
        with torch.no_grad():
            ok = torch.stack([torch.isfinite(t).all() for _, t in named]).cpu()
        if bool(ok.all()):
            return None
        name = named[int((~ok).nonzero()[0])][0]
        return f"the weights are not finite ({name})"

    def check_finite(self, where: str, row: dict[str, Any] | None = None) -> None:
        """Diverged (`where: what`) when not_finite says so."""
        why = self.not_finite(row)
        if why:
            raise Diverged(f"{where}: {why}")

    # one epoch -------------------------------------------------------------------------------------------
    def permutation(self, epoch: int) -> torch.Tensor:
        return epoch_permutation(len(self.s.bundle.train), self.s.cfg.seed, epoch, self.s.cfg.shuffle)

    def train_epoch(self, bar: Any) -> bool:
        """Runs the rest of the current epoch; False when stopped by Ctrl-C (state saved mid-epoch)."""
        cfg, data = self.s.cfg, self.s.bundle.train
        perm = self.permutation(self.epoch)
        if self.on_device:
            perm = perm.to(self.device, non_blocking=True)
        bs = cfg.batch_size
        self.model.train()
        if self.batch == 0:
            self.meter.reset()
        graphs = self.graphs
        if graphs is not None:
            graphs.new_epoch()
        for b in range(self.batch, self.steps_per_epoch):
            idx = perm[b * bs:(b + 1) * bs]
            if graphs is not None and graphs.step(idx):
                if self.sched is not None and self.sched_per_batch:
                    self.sched.step()
                    graphs.after_schedule()
            else:
                share, where = 1.0, None
                if self.world.distributed:  # this rank's part of the global batch, weighted by its size
                    n = len(idx)
                    at = distributed.part(n, self.world)
                    mine = idx[at]
                    # a last batch smaller than the world: a rank without a sample still steps (DDP needs every
                    # rank's backward), on one sample weighted 0
                    idx, share = (mine, len(mine) * self.world.size / n) if len(mine) else (idx[:1], 0.0)
                    where = (at.start, at.stop, n) if len(mine) else (0, 1, n)
                x, y = data.x[idx], data.y[idx]
                if not self.on_device:
                    x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
                self.task.step(x, y, share, where) if self.own_step else self.step(x, y, share)
                if graphs is not None and not graphs.started and not graphs.failed:
                    graphs.start()  # the first step ran eagerly and made the optimizer's state
            if not self.first_step_checked:  # lr: .nan, or one so large: known after one step, not an epoch
                self.first_step_checked = True
                self.check_finite(f"epoch {self.epoch + 1}, batch {b + 1}")
            self.batch = b + 1
            if bar is not None:
                bar.update(1)
            if self.world.distributed:  # a stop on one rank stops them all after the same batch
                self.stop_requested = distributed.any_rank(self.stop_requested, self.world, self.device)
            if self.stop_requested:
                return False
        self.batch = 0
        self.epoch += 1
        return True

    def prep(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.plan.channels_last and x.dim() == 4 else x

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        """The model's forward (compiled when the plan says so; a compiler failure on the first call
        falls back to the plain module, with a note)."""
        if self.forward is self.eager or self.forward is self.model or self._compiled_ok:
            return self.forward(x)
        try:
            out = self.forward(x)
        except Exception as e:  # noqa: BLE001 - no C++ compiler, an unsupported op, ...: run eagerly
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            self.say(f"note: torch.compile failed ({type(e).__name__}: {first}); continuing without it")
            self.plan.why.append(f"compile: off, it failed ({type(e).__name__})")
            self.plan.compile = None
            self.forward = self.eager
            return self.eager(x)
        self._compiled_ok = True
        return out

    def _loss(self, x: torch.Tensor, y: torch.Tensor, autocast: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Forward and loss: (loss, scores, targets), per-step targets flattened."""
        x, y = self.task.pair(x, y, self.model.training)
        with autocast():
            out = self._forward(self.prep(x))
            o, t = _flat(out, y, self.per_step)
            return self.loss_fn(o.float(), _target(t, o, self.loss_fn)), o, t

    def step(self, x: torch.Tensor, y: torch.Tensor, share: float = 1.0) -> None:
        """One eager training step on a batch (`share`: this rank's part of a global batch, times the world size:
        the loss weight that makes the ranks' averaged gradient the whole batch's)."""
        cfg = self.s.cfg
        loss, o, t = self._loss(x, y, self.autocast)
        self.opt.zero_grad(set_to_none=True)
        objective = loss * share if share != 1.0 else loss
        if self.scaler is not None:
            self.scaler.scale(objective).backward()
            if cfg.clip_grad_norm:
                self.scaler.unscale_(self.opt)
                nn.utils.clip_grad_norm_(self.model.parameters(), cfg.clip_grad_norm)
            self.scaler.step(self.opt)
            self.scaler.update()
        else:
            objective.backward()
            if cfg.clip_grad_norm:
                nn.utils.clip_grad_norm_(self.model.parameters(), cfg.clip_grad_norm)
            self.opt.step()
        if self.sched is not None and self.sched_per_batch:
            self.sched.step()
        if share:  # (0: a stand-in sample of a rank with none, not counted)
            self.meter.add(loss, o.detach().float(), t)

    def fused_step(self, idx: torch.Tensor) -> int:
        """The step a CUDA graph captures: gather by index, forward, loss, backward, clip, optimizer step,
        device-side sums.  No host synchronisation and no allocation that outlives it; the gradients are
        zeroed in place (they are the same tensors in every replay).  Returns the meter count to add."""
        cfg, data = self.s.cfg, self.s.bundle.train
        loss, o, t = self._loss(data.x.index_select(0, idx), data.y.index_select(0, idx), self._autocast_graph)
        self.opt.zero_grad(set_to_none=False)
        loss.backward()
        if cfg.clip_grad_norm:
            nn.utils.clip_grad_norm_(self.model.parameters(), cfg.clip_grad_norm, foreach=True)
        self.opt.step()
        return self.meter.add_sums(loss, o.detach().float(), t)

    @torch.no_grad()
    def eval_batch(self, x: torch.Tensor, y: torch.Tensor, meter: Meter) -> int:
        loss, o, t = self._loss(x, y, self._autocast_graph if self.graphs is not None else self.autocast)
        return meter.add_sums(loss, o.float(), t)

    @torch.no_grad()
    def evaluate(self, split: Split) -> dict[str, float]:
        if self.world.distributed:  # the plain module: DDP's forward would sync buffers, and parts differ in size
            ddp, self.forward = self.forward, self.model
            try:
                return self._evaluate(split)
            finally:
                self.forward = ddp
        return self._evaluate(split)

    def _evaluate(self, split: Split) -> dict[str, float]:
        self.model.eval()
        self.task.start_eval()
        bs = self.s.cfg.eval_batch_size or max(256, 4 * self.s.cfg.batch_size)
        if self.own_step:
            return dict(self.task.evaluate(split, bs))
        if self.graphs is not None and self.on_device:
            meter = self._eval_meters.get(id(split.x)) or Meter(self.metrics, self.device, self.threshold)
            self._eval_meters[id(split.x)] = meter  # the same sums every time: the eval graphs add into them
            meter.reset()
            if self.graphs.evaluate(split.x, split.y, bs, meter):
                return meter.result()
        meter = Meter(self.metrics, self.device, self.threshold)
        part = distributed.part(len(split), self.world)  # each rank its part; the sums added up
        for i in range(part.start, part.stop, bs):
            j = min(i + bs, part.stop)
            x, y = split.x[i:j].to(self.device), split.y[i:j].to(self.device)
            meter.count += self.eval_batch(x, y, meter)
        return self.totals(meter)

    def totals(self, meter: Any) -> dict[str, float]:
        """A meter's result over every rank (its own, for one process); the meter itself is left as it is."""
        if not self.world.distributed:
            return meter.result()
        total = Meter(self.metrics, self.device, self.threshold) if isinstance(meter, Meter) \
            else Sums(list(meter.sums), self.device)  # (a task's own sums: a GAN's losses)
        total.sums, total.count = distributed.summed(meter.sums, meter.count, self.world, self.device)
        return total.result()
