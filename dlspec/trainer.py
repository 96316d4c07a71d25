"""Stage 6b, trainer: the state of a run — the epoch, the position in it, the history, the checkpoint — and
the loop over an epoch's batches.

`Trainer` holds what a checkpoint saves and restores (bit-exact resume: weights, the step's optimizer and
scheduler state, the RNG, the position within an epoch), runs an epoch's batches in the order
`epoch_permutation` fixes, each process its part of each, and evaluates a split.  What a batch is trained on
is the task's (dlspec.tasks); the training step itself — forward, objective, backward, optimizer steps —
is the step's the task chose (dlspec.step); how it is executed (eager, compiled, CUDA graph) is the
plan's (dlspec.plan, dlspec.graphs), chosen from the step's capabilities.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, cast

import torch

from . import distributed, runs
from . import graphs as graph_engine
from . import plan as fast_path
from .batch import Batch, feed_for, moved
from .data import Split
from .data.base import float_bytes
from .objectives import Sums
from .plan import Fallback, Plan
from .selection import ended_early
from .session import Options, Session, fits_on, steps_per_epoch
from .step import Context, Step


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


# --- the trainer ----------------------------------------------------------------------------------------

class Diverged(Exception):
    """The training went to nan or infinity (a loss, a weight): the run stops without saving it.  str(): what
    is not finite and where, `epoch 3: train d_loss nan, train g_loss nan`."""


class Trainer:
    """A run's state and its loop around the one step (`step`) its task chose."""

    def __init__(self, s: Session, opts: Options, training: bool = True):
        self.s, self.opts = s, opts
        self.model, self.device = s.model, s.device
        self.steps_per_epoch = steps_per_epoch(len(s.bundle.train), s.cfg)
        self.world = s.world if s.world is not None else distributed.World()
        self.epoch = 0  # completed epochs
        self.batch = 0  # next batch within the current epoch (non-zero only in a mid-epoch checkpoint)
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] | None = None
        self.bad_evals = 0
        self.stopped_early = False  # early stopping ended the run (a resume with more epochs trains on)
        self.clock = Clock()
        self.stop_requested = False
        self.stop_signal = 0  # the signal that asked for the stop (SIGINT, SIGTERM, SIGHUP)
        self.first_step_checked = False  # the weights after this command's first step were looked at
        self.say: Any = (lambda *a: None) if opts.quiet or not self.world.main else (lambda *a: print(*a, flush=True))
        self.on_device = self._fits_on_device()
        if self.on_device:
            self._move_data()
        self.task = s.task.make(Context.of(s), s.task_args)  # the task's runtime, holding the run's step
        self.step: Step = self.task.step
        self.feed = feed_for(s.bundle, self.step.data_inputs)
        self.plan: Plan = fast_path.plan(s.cfg, self.device, self.step.capabilities(training), self.world.size,
                                         self.on_device)
        self.fallbacks: list[Fallback] = []  # what the run fell back from (a compile, a capture that failed)
        self.step.setup(self.plan, self.fall_back, training)
        self.model = s.model = self.step.model  # (with SyncBatchNorm where the plan says so)
        self.graphs = self._graphs() if self.plan.graph else None
        self._eval_meters: dict[int, Sums] = {}

    def _graphs(self) -> graph_engine.Graphs:
        """The CUDA-graph engine over the step (a plan captures only a step that says it can be)."""
        return graph_engine.Graphs(cast(graph_engine.Host, self.step), self.feed, self.s.bundle.train, self.device,
                                   self.plan.tensor_lr, self.fall_back)

    @property
    def meter(self) -> Sums:
        """The training epoch's sums (the step's)."""
        return self.step.meter

    def lr(self) -> float:
        """The learning rate metrics.csv shows (the step's first optimizer's)."""
        return self.step.lr()

    def fall_back(self, fallback: Fallback, note: str) -> None:
        """A run-time fallback from the plan (a compile or a graph capture that failed): recorded beside the plan
        (`ran`), and said."""
        self.fallbacks.append(fallback)
        self.say(note)

    def ran(self) -> Plan:
        """The plan as the run took it (with its fallbacks), for summary.json."""
        return self.plan.ran(self.fallbacks)

    def _fits_on_device(self) -> bool:
        b = self.s.bundle
        if b.train.x.device == self.device:
            return True  # already there (CPU, or materialized on the GPU by prepare)
        return fits_on(self.device, float_bytes(b))

    def _move_data(self) -> None:
        b, d = self.s.bundle, self.device
        b.train, b.test = moved(b.train, d), moved(b.test, d)
        if self.s.val is not None:
            self.s.val = moved(self.s.val, d)

    # checkpoint state ----------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            "format": 1,
            "model": self.model.state_dict(),
            **self.step.state(self.graphs.original if self.graphs else []),  # optimizer, scheduler, task
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

    def _meter_state(self) -> dict[str, Any]:
        """The epoch's sums so far, over every rank (a checkpoint is the same whatever the number of processes)."""
        st = self.meter.state()
        if self.world.distributed:
            sums, count = distributed.summed(self.meter.sums, self.meter.count, self.world, self.device)
            st = {"sums": {k: v.cpu() for k, v in sums.items()}, "count": count}
        return st

    def load(self, st: dict[str, Any]) -> None:
        self.step.load(st)  # (first: it refuses a checkpoint it cannot go on from)
        self.model.load_state_dict(st["model"])
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
        perm = self.permutation(self.epoch)
        if self.on_device:
            perm = perm.to(self.device, non_blocking=True)
        bs = self.s.cfg.batch_size
        self.model.train()
        if self.batch == 0:
            self.meter.reset()
        if self.graphs is not None:
            self.graphs.new_epoch()
        for b in range(self.batch, self.steps_per_epoch):
            self._train_batch(perm[b * bs:(b + 1) * bs])
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

    def _train_batch(self, idx: torch.Tensor) -> None:
        """One step on the samples idx: a graph's replay, else the step taken eagerly (the run's first step
        is, and it makes the optimizer's state the graphs start from)."""
        graphs = self.graphs
        if graphs is not None and graphs.step(idx):
            if self.step.schedule_batch():
                graphs.after_schedule()
            return
        self.step.train(self._local(self.s.bundle.train, idx))
        if graphs is not None and not graphs.started and not graphs.failed:
            graphs.start()

    def _local(self, split: Split, idx: torch.Tensor) -> Batch:
        """This process's part of the global batch idx, weighted by its size (all of it, for one process).  A
        last batch smaller than the world: a rank without a sample still steps (DDP needs every rank's
        backward), on one sample weighted 0."""
        share, where = 1.0, None
        if self.world.distributed:
            n = len(idx)
            at = distributed.part(n, self.world)
            mine = idx[at]
            idx, share = (mine, len(mine) * self.world.size / n) if len(mine) else (idx[:1], 0.0)
            where = (at.start, at.stop, n) if len(mine) else (0, 1, n)
        batch = self.feed.take(split, idx)
        batch.share, batch.part = share, where
        return batch if self.on_device else batch.to(self.device)

    # evaluation -------------------------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, split: Split) -> dict[str, float]:
        """The step's losses and metrics over a split (several processes: each its part of every batch, the
        sums added up)."""
        self.model.eval()
        self.step.start_eval()
        bs = self.s.cfg.eval_batch_size or max(256, 4 * self.s.cfg.batch_size)
        if self.graphs is not None and self.on_device:
            meter = self._eval_meters.get(id(split.x)) or self.step.new_meter()
            self._eval_meters[id(split.x)] = meter  # the same sums every time: the eval graphs add into them
            meter.reset()
            if self.graphs.evaluate(split, bs, meter):
                return meter.result()
        meter = self.step.new_meter()
        for i in range(0, len(split), bs):
            batch = self._eval_part(split, i, min(i + bs, len(split)))
            if batch is not None:
                meter.count += self.step.evaluate(batch, meter)
        return self.totals(meter)

    def _eval_part(self, split: Split, start: int, stop: int) -> Batch | None:
        """This process's part of the evaluation batch [start, stop) on the device (None: it has none)."""
        at = distributed.part(stop - start, self.world)
        if at.start == at.stop:
            return None
        batch = self.feed.rows(split, start + at.start, start + at.stop).to(self.device)
        batch.part = (at.start, at.stop, stop - start) if self.world.distributed else None
        return batch

    def totals(self, meter: Sums) -> dict[str, float]:
        """A meter's result over every rank (its own, for one process); the meter itself is left as it is."""
        if not self.world.distributed:
            return meter.result()
        total = self.step.new_meter()
        total.sums, total.count = distributed.summed(meter.sums, meter.count, self.world, self.device)
        return total.result()
