"""Stage 6, train: `dlspec run` — load data, check the contract, build, train, evaluate, checkpoint.

Everything before the first step is checked and reported as diagnostics (the spec, the train section,
torch names, the data, the data↔model↔loss contract).  The loop keeps loss/metric sums on the device and
reads them once per epoch; shuffling is derived from (seed, epoch) (`epoch_permutation`), so a run stopped
by Ctrl-C and resumed from its checkpoint ends exactly where an uninterrupted run ends (and its timings go
on from the checkpoint's).  Early stopping writes the best epoch's weights to best.pt, and the run's final
test numbers come from them (restore_best); with a validation split the test set stays out of the loop.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import sys
import time
import warnings
import zipfile
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from . import codes, runs, steps
from . import overrides as ov
from .contract import CLASS_LOSSES, DataFacts, check_contract, check_metrics, default_metrics
from .data import DATASETS, Bundle, DataError, Split, data_root
from .data.base import float_bytes, materialize
from .diagnostics import Diagnostic, error, locate
from .infer import Checked
from .objectives import (
    Meter,
    binary_threshold,
    check_objects,
    init_weights,
    make_loss,
    make_optimizer,
    make_scheduler,
    resolve,
    scheduler_per_batch,
)
from .preflight import id_diagnostics, memory_diagnostics, trial_step
from .schema import parse_spec
from .source import Document, read
from .trainspec import MAX_THREADS_PER_CPU, TRAIN_ARGS, TrainConfig


@dataclass
class Options:
    data_root: str | None = None
    out: str = "runs"
    device: str | None = None
    epochs: int | None = None
    progress: bool = True
    quiet: bool = False
    threads: int | None = None  # torch.set_num_threads; None leaves torch's default
    started: float | None = None  # time.perf_counter() when the command started (for summary.json's timings)


class Refused(Exception):
    """Training cannot start: diagnostics (or a one-line reason) say why."""

    def __init__(self, diagnostics: list[Diagnostic], doc: Document | None = None, message: str = "", status: int = 1):
        super().__init__(message)
        self.diagnostics, self.doc, self.message, self.status = diagnostics, doc, message, status
        for d in diagnostics:  # preparing is over: the diagnostics get their positions
            locate(d, doc)


@dataclass
class Session:
    doc: Document
    checked: Checked
    cfg: TrainConfig
    bundle: Bundle
    model: nn.Module
    device: torch.device
    resolved: dict[str, Any]
    symbols: dict[str, int]
    val: Split | None = None
    warnings: list[Diagnostic] = field(default_factory=list)
    overrides: list[str] = field(default_factory=list)
    prepare_s: float = 0.0  # reading, checking, loading the data, building: everything before the Trainer


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


# --- preparing a run ---------------------------------------------------------------------------------

def load_document(path: str, items: list[str]) -> Document:
    doc = read(path)
    if doc.data is not None and items and not doc.diagnostics:
        try:
            ov.apply(doc.data, items)
        except ov.OverrideError as e:  # a usage error (status 2), shown on the command line it came from
            d = error(codes.OVERRIDE, e.reason, help="overrides are PATH=VALUE, the path into the spec's keys and "
                      "list indices: train.epochs=3, layers.0.Linear.out_features=64")
            d.file, d.override, d.override_span = doc.path, e.item, e.span
            raise Refused([d], doc, status=2) from None
        doc.overrides = list(items)
    return doc


def pick_device(doc: Document, wanted: str) -> tuple[torch.device | None, list[Diagnostic]]:
    if wanted == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda"), []
        return torch.device("cpu"), []
    if wanted.startswith("cuda"):
        if not torch.cuda.is_available():
            return None, [error(codes.DEVICE, f"device {wanted}: CUDA is not available on this machine",
                                ("train", "device"), help="use device: auto (or cpu), or --device cpu")]
        idx = int(wanted.split(":")[1]) if ":" in wanted else 0
        if idx >= torch.cuda.device_count():
            return None, [error(codes.DEVICE, f"device {wanted}: this machine has "
                                f"{torch.cuda.device_count()} CUDA device(s)", ("train", "device"))]
    if wanted == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        return None, [error(codes.DEVICE, "device mps is not available on this machine", ("train", "device"))]
    return torch.device(wanted), []


def facts_of(bundle: Bundle, dataset: str | None = None) -> DataFacts:
    y = bundle.train.y
    entry = DATASETS.get(dataset or bundle.name)
    return DataFacts(name=bundle.name, sample_shape=bundle.sample_shape, x_dtype=bundle.x_dtype,
                     target_shape=bundle.target_shape, target_dtype="float" if y.is_floating_point() else "long",
                     task=bundle.task, num_classes=bundle.num_classes,
                     can_reshape=entry is not None and "shape" in entry.args)


def prepare(path: str, items: list[str], opts: Options, doc: Document | None = None, training: bool = True) -> Session:
    """Everything up to the first step; Refused (with diagnostics) when the run cannot start.

    training=False (eval, predict, generate) skips constructing the optimizer and scheduler.
    """
    if opts.threads is not None:
        most = MAX_THREADS_PER_CPU * (os.cpu_count() or 1)
        if not 1 <= opts.threads <= most:  # torch hangs or crashes with thousands
            raise Refused([], message=f"threads must be from 1 to {most} ({MAX_THREADS_PER_CPU} × the CPUs), not "
                          f"{opts.threads}", status=2)
        torch.set_num_threads(opts.threads)
    t0 = time.perf_counter()
    items = list(items)
    if opts.epochs is not None:
        items.append(f"train.epochs={opts.epochs}")
    if opts.device is not None:
        items.append(f"train.device={opts.device}")
    doc = doc or load_document(path, items)
    from . import check

    spec = parse_spec(doc)
    checked = check(spec)  # the shapes, and the train: section as far as it is known without torch and data
    errors = [d for d in checked.diagnostics if d.severity == "error"]
    if not errors and spec.train is None:
        raise Refused([error(codes.TRAIN, "the spec has no `train:` section, so there is nothing to run", (),
                             help="add e.g. `train: {data: {name: mnist}, epochs: 5, optimizer: {Adam: {lr: 0.001}}}`")],
                      doc)
    cfg = spec.train_config
    if errors or cfg is None:
        raise Refused(checked.diagnostics, doc)
    warnings = [d for d in checked.diagnostics if d.severity == "warning"]
    device, d = pick_device(doc, cfg.device)
    if cfg.precision == "fp16" and device is not None and device.type != "cuda":
        d.append(error(codes.PRECISION, f"precision fp16 needs a CUDA device (this run is on {device.type})",
                       ("train", "precision"), help="use precision: bf16 on CPU, or fp32"))
    if d or device is None:  # (pick_device gives a device or diagnostics)
        raise Refused(warnings + d, doc)
    entry = DATASETS[cfg.data_name]
    try:
        # a dataset's own `seed` (filled in by validate_train) fixes the data; train.seed drives init and shuffling
        # uint8 images where the loader has them, made float32 where the training runs (bit for bit the
        # float loader's values): on a GPU a quarter of the bytes cross the bus, and the arithmetic is there
        bundle = (entry.raw or entry.load)(dict(cfg.data_args), data_root(opts.data_root))
        if bundle.pixels is not None:
            materialize(bundle, device if fits_on(device, float_bytes(bundle)) else torch.device("cpu"))
    except DataError as e:
        path_ = ("train", "data") + ((e.arg,) if e.arg else ())
        raise Refused(warnings + [error(codes.DATA, e.message, path_, notes=e.notes, help=e.help)], doc) from None
    except MemoryError:
        raise Refused(warnings + [error(codes.DATA, f"cannot load {cfg.data_name}: out of memory", ("train", "data"),
                                        help="use a subset, or a machine with more memory")], doc) from None
    except (OSError, ValueError, EOFError, RuntimeError, zipfile.BadZipFile) as e:  # what a loader did not foresee
        msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise Refused(warnings + [error(codes.DATA, f"cannot load {cfg.data_name}: {type(e).__name__}"
                                        + (f": {msg}" if msg else ""), ("train", "data"),
                                        help="the files are damaged or not what this dataset reads")],
                      doc) from None
    # again with the torch that runs and the data as loaded: what the static check could not know (a CSV's
    # columns, a text's vocabulary), without repeating what it said
    resolved, d = resolve(cfg, bundle.task)
    loss_name = resolved["loss"][0] if "loss" in resolved else None
    loss_path = ("train", "loss") if cfg.loss else None
    c, symbols = check_contract(checked, facts_of(bundle, cfg.data_name), loss_name, loss_path)
    said = {(x.code, x.path) for x in checked.diagnostics}
    d += [x for x in c + check_metrics(cfg, bundle.task, loss_name) if (x.code, x.path) not in said]
    if any(x.severity == "error" for x in d):
        raise Refused(warnings + d, doc)
    warnings += d
    from .builder import build_checked

    d = memory_check(checked, cfg, resolved, symbols, device, bundle, training)  # before a weight is allocated
    if d:
        raise Refused(warnings + d, doc)
    torch.manual_seed(cfg.seed)
    model = build_checked(checked)
    init_weights(model, cfg.init)
    s = Session(doc=doc, checked=checked, cfg=cfg, bundle=bundle, model=model.to(device), device=device,  # type: ignore[arg-type]
                resolved=resolved, symbols=symbols, warnings=warnings,
                overrides=items if not doc.overrides else list(doc.overrides))
    if cfg.val_split:
        split_validation(s)
    n = len(s.bundle.train)
    if training and steps_per_epoch(n, cfg) == 0:
        what = f"batch_size {cfg.batch_size} with drop_last" if n else "an empty training split"
        raise Refused(warnings + [error(codes.TRAIN, f"{what}: an epoch of the {n} training samples has no "
                                        "batches", ("train", "batch_size" if n else "data"),
                                        help=f"use a batch_size of at most {n}, or drop_last: false" if n else
                                        "check the data (and val_split)")], doc)
    out = checked.output.shape[-1] if checked.output is not None and checked.output.shape else None
    d = check_objects(doc, cfg, resolved if training else {k: resolved[k] for k in ("loss",) if k in resolved},
                      s.model, steps_per_epoch(len(s.bundle.train), cfg), out)
    if d:
        raise Refused(warnings + d, doc)
    d = id_diagnostics(s) or trial_step(s, training)  # what torch refuses only once it runs (on a copy)
    if d:
        raise Refused(warnings + d, doc)
    for w in s.warnings:  # preparing is over: the warnings get their positions
        locate(w, doc)
    s.prepare_s = time.perf_counter() - t0
    return s


def memory_check(checked: Checked, cfg: TrainConfig, resolved: dict[str, Any], symbols: dict[str, int],
                 device: torch.device, bundle: Bundle, training: bool) -> list[Diagnostic]:
    """The run's memory estimate against the device's memory (see dlspec.memory): a `memory` error, or none."""
    on_device = device.type != "cpu" and bundle.train.x.device != device and fits_on(device, float_bytes(bundle))
    opt = resolved.get("optimizer")
    n_train = len(bundle.train) - (max(1, int(round(len(bundle.train) * cfg.val_split))) if cfg.val_split else 0)
    return memory_diagnostics(checked, cfg, (opt[0], opt[2]) if training and opt else None, symbols, device,
                              (n_train, max(len(bundle.test), len(bundle.train) - n_train)),
                              float_bytes(bundle) if on_device else 0)


def fits_on(device: torch.device | None, nbytes: int) -> bool:
    """Whether the data set stays resident on the device: always on the CPU; on CUDA when it takes less
    than 40 % of the free memory (room for the model, its activations and the graphs)."""
    if device is None or device.type != "cuda":
        return True
    free, _ = torch.cuda.mem_get_info(device)
    return nbytes < 0.4 * free


def steps_per_epoch(n: int, cfg: TrainConfig) -> int:
    return n // cfg.batch_size if cfg.drop_last else math.ceil(n / cfg.batch_size)


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


def split_validation(s: Session) -> None:
    """Hold out cfg.val_split of the training data (a seeded, fixed choice)."""
    n = len(s.bundle.train)
    k = max(1, int(round(n * float(s.cfg.val_split or 0))))
    g = torch.Generator().manual_seed(s.cfg.seed)
    perm = torch.randperm(n, generator=g)
    vi, ti = perm[:k], perm[k:]
    t = s.bundle.train
    s.val = Split(t.x[vi], t.y[vi])
    s.bundle.train = Split(t.x[ti], t.y[ti])


# --- the loop ------------------------------------------------------------------------------------------

def _flat(out: torch.Tensor, y: torch.Tensor, per_step: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-step class targets (N, T) against scores (N, T, C) become (N·T, C) and (N·T,)."""
    if per_step:
        return out.reshape(-1, out.shape[-1]), y.reshape(-1)
    return out, y


def _target(y: torch.Tensor, out: torch.Tensor, loss: nn.Module) -> torch.Tensor:
    if isinstance(loss, (nn.BCEWithLogitsLoss, nn.BCELoss)) and not y.is_floating_point():
        return y.to(out.dtype).reshape(out.shape)
    return y


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
        task = s.bundle.task
        self.metrics = [m for m in (cfg.metrics or default_metrics(task))]
        self.per_step = task == "classification" and len(s.bundle.target_shape) >= 1 and \
            not s.bundle.train.y.is_floating_point() and s.resolved["loss"][0] in CLASS_LOSSES
        self.threshold = binary_threshold(s.resolved)
        self.epoch = 0  # completed epochs
        self.batch = 0  # next batch within the current epoch (non-zero only in a mid-epoch checkpoint)
        self.meter = Meter(self.metrics, self.device, self.threshold)
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] | None = None
        self.bad_evals = 0
        self.stopped_early = False  # early stopping ended the run (a resume with more epochs trains on)
        self.clock = Clock()
        self.stop_requested = False
        self.stop_signal = 0  # the signal that asked for the stop (SIGINT, SIGTERM, SIGHUP)
        self.on_device = self._fits_on_device()
        if self.on_device:
            b = s.bundle
            b.train = Split(b.train.x.to(self.device), b.train.y.to(self.device))
            b.test = Split(b.test.x.to(self.device), b.test.y.to(self.device))
            if s.val is not None:
                s.val = Split(s.val.x.to(self.device), s.val.y.to(self.device))
        self.say: Any = (lambda *a: None) if opts.quiet else (lambda *a: print(*a, flush=True))
        sched = s.resolved.get("scheduler")
        _, _, opt_kw = s.resolved["optimizer"]
        self.plan = steps.plan(cfg, self.device, self.model, s.resolved["optimizer"][0] if training else None,
                               (sched[0], sched[2]) if sched else None, self.sched_per_batch, self.on_device,
                               len(s.bundle.sample_shape), opt_kw)
        # the optimizer implementation this run chose (not the spec's): re-applied after loading a checkpoint,
        # and left out of the checkpoint, which keeps the spec's own values
        self._impl = {"fused": True} if self.plan.fused else {}
        self._spec_impl = {k: opt_kw.get(k) for k in self._impl}
        if training:
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
        self.forward: Any = self.model
        if self.plan.compile:
            self.forward = torch.compile(self.model, mode=self.plan.compile)
        self._compiled_ok = False
        self.graphs = steps.Graphs(self) if self.plan.graph else None
        self._eval_meters: dict[int, Meter] = {}
        self._autocast_graph = (lambda: torch.autocast(self.device.type, dtype=amp, cache_enabled=False)) \
            if amp else contextlib.nullcontext

    @property
    def opt(self) -> torch.optim.Optimizer:
        """The optimizer: only a Trainer made with training=True has one."""
        if self._opt is None:
            raise RuntimeError("this Trainer was made with training=False (eval): it has no optimizer")
        return self._opt

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
            "optimizer": self._portable_optimizer_state(),
            "scheduler": self._portable_scheduler_state(),
            "epoch": self.epoch,
            "batch": self.batch,
            "meter": self.meter.state() if self.batch else None,
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
        sd = st["optimizer"]
        # this run's implementation in the groups torch reads while loading (it places a fused step's counter)
        self.opt.load_state_dict({**sd, "param_groups": [{**g, **self._impl} for g in sd["param_groups"]]})
        if self.sched is not None and st.get("scheduler") is not None:
            self.sched.load_state_dict(st["scheduler"])
        self.epoch, self.batch = int(st["epoch"]), int(st["batch"])
        if st.get("meter"):
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
                x, y = data.x[idx], data.y[idx]
                if not self.on_device:
                    x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
                self.step(x, y)
                if graphs is not None and not graphs.started and not graphs.failed:
                    graphs.start()  # the first step ran eagerly and made the optimizer's state
            self.batch = b + 1
            if bar is not None:
                bar.update(1)
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
        if self.forward is self.model or self._compiled_ok:
            return self.forward(x)
        try:
            out = self.forward(x)
        except Exception as e:  # noqa: BLE001 - no C++ compiler, an unsupported op, ...: run eagerly
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            self.say(f"note: torch.compile failed ({type(e).__name__}: {first}); continuing without it")
            self.plan.why.append(f"compile: off, it failed ({type(e).__name__})")
            self.plan.compile = None
            self.forward = self.model
            return self.model(x)
        self._compiled_ok = True
        return out

    def _loss(self, x: torch.Tensor, y: torch.Tensor, autocast: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Forward and loss: (loss, scores, targets), per-step targets flattened."""
        with autocast():
            out = self._forward(self.prep(x))
            o, t = _flat(out, y, self.per_step)
            return self.loss_fn(o.float(), _target(t, o, self.loss_fn)), o, t

    def step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """One eager training step on a batch."""
        cfg = self.s.cfg
        loss, o, t = self._loss(x, y, self.autocast)
        self.opt.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            if cfg.clip_grad_norm:
                self.scaler.unscale_(self.opt)
                nn.utils.clip_grad_norm_(self.model.parameters(), cfg.clip_grad_norm)
            self.scaler.step(self.opt)
            self.scaler.update()
        else:
            loss.backward()
            if cfg.clip_grad_norm:
                nn.utils.clip_grad_norm_(self.model.parameters(), cfg.clip_grad_norm)
            self.opt.step()
        if self.sched is not None and self.sched_per_batch:
            self.sched.step()
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
        self.model.eval()
        bs = self.s.cfg.eval_batch_size or max(256, 4 * self.s.cfg.batch_size)
        if self.graphs is not None and self.on_device:
            meter = self._eval_meters.get(id(split.x)) or Meter(self.metrics, self.device, self.threshold)
            self._eval_meters[id(split.x)] = meter  # the same sums every time: the eval graphs add into them
            meter.reset()
            if self.graphs.evaluate(split.x, split.y, bs, meter):
                return meter.result()
        meter = Meter(self.metrics, self.device, self.threshold)
        for i in range(0, len(split), bs):
            x, y = split.x[i:i + bs].to(self.device), split.y[i:i + bs].to(self.device)
            meter.count += self.eval_batch(x, y, meter)
        return meter.result()


# --- running ---------------------------------------------------------------------------------------------

def fmt_metrics(prefix: str, vals: dict[str, float]) -> str:
    """`loss 0.1234  accuracy 0.9876`: the metric names as options and metrics.csv spell them."""
    parts = [f"{k} {v:.4f}" for k, v in vals.items()]
    return (prefix + " " if prefix else "") + "  ".join(parts)


# the signals that stop a run with a checkpoint: Ctrl-C, a scheduler's or cluster's SIGTERM, a closed terminal
STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n))


class Aborted(KeyboardInterrupt):
    """A second stop signal: the run ends at once, without a checkpoint (the command exits 128 + signal)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _stop_message(signum: int) -> str:
    if signum == signal.SIGINT:
        return "interrupted: finishing this batch and saving a checkpoint (Ctrl-C again to abort)"
    name = signal.Signals(signum).name
    what = {"SIGTERM": "terminated", "SIGHUP": "hung up"}.get(name, "stopped")
    return f"{what} ({name}): finishing this batch and saving a checkpoint (a second signal aborts)"


def run(s: Session, opts: Options, run_dir: str, source_path: str, resume: dict[str, Any] | None = None,
        finish_only: bool = False) -> int:
    """Train (or go on training) the prepared session in run_dir; the exit status.

    Ctrl-C, SIGTERM and SIGHUP finish the batch in flight, save checkpoint.pt and return 128 + the signal.
    A file that cannot be written (a full disk) ends the run with one line and status 1, leaving the last
    checkpoint and the metrics.csv that goes with it.  finish_only: a resumed run with nothing left to
    train whose summary.json is missing (its writing had failed): only the final numbers and summary.json.
    """
    try:
        return _run(s, opts, run_dir, source_path, resume, finish_only)
    except runs.WriteError as e:
        print(f"dlspec: {e}; {_kept(run_dir)}", file=sys.stderr)
        return 1


def _kept(run_dir: str) -> str:
    """What a run folder keeps after a failed write, and how to go on: one phrase."""
    path = os.path.join(run_dir, "checkpoint.pt")
    try:
        st = runs.load_checkpoint(path)
    except Exception:  # noqa: BLE001 - none yet (the first epoch's failed), or unreadable
        return f"no checkpoint was saved in {run_dir}, so the run cannot be resumed"
    where = f"epoch {int(st['epoch'])}" + (f", batch {int(st['batch'])}" if st.get("batch") else "")
    return f"{run_dir} keeps the checkpoint of {where}; free space and continue with: dlspec run --resume {run_dir}"


def _run(s: Session, opts: Options, run_dir: str, source_path: str, resume: dict[str, Any] | None,
         finish_only: bool) -> int:
    cfg = s.cfg
    t_setup = time.perf_counter()
    tr = Trainer(s, opts)
    if resume is not None:
        tr.load(resume)
    log = runs.MetricsLog(run_dir, tr.history)
    if resume is not None:
        log.write()  # metrics.csv says what the checkpoint holds (with checkpoint_every > 1 it ran ahead)
        if not finish_only:  # summary.json is a finished run's; this one goes on
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(run_dir, "summary.json"))

    def say(*a: Any) -> None:
        if opts.quiet:
            return
        try:
            print(*a, flush=True)
        except OSError:  # SIGHUP: the terminal is gone; stopping (the checkpoint) must not fail on a print
            if not tr.stop_requested:
                raise

    b = s.bundle
    say(f"run {run_dir}")
    say(f"data {b.name}: {len(b.train):,} train" + (f" / {len(s.val):,} val" if s.val is not None else "")
        + f" / {len(b.test):,} test · samples {list(b.sample_shape)} · device {s.device.type}"
        + (f" · {tr.plan.precision}" if tr.plan.precision != "fp32" else ""))
    params = sum(p.numel() for p in tr.model.parameters())
    say(f"model {s.checked.spec.name}: {params:,} params · loss {s.resolved['loss'][0]} · optimizer "
        f"{s.resolved['optimizer'][0]}" + (f" · scheduler {s.resolved['scheduler'][0]}" if "scheduler" in s.resolved else ""))
    say(f"path {tr.plan.name}" + "".join(f"\n  {w}" for w in tr.plan.why))
    if finish_only:
        say(f"finishing: {tr.epoch} epochs trained; summary.json was missing")
    elif resume is not None:
        say(f"resumed at epoch {tr.epoch + 1}" + (f", batch {tr.batch}" if tr.batch else ""))
        if tr.stopped_early:
            train_on(tr, cfg, say)
    watched = str((cfg.early_stopping or {}).get("metric", ""))
    if watched.startswith("test_"):
        say(f"note: early stopping ignores {watched}: the test set must not choose the model (watch a val_ metric, "
            "with val_split)")
    restoring = restores_best(cfg)

    def on_signal(signum: int, frame: Any) -> None:
        if tr.stop_requested:
            raise Aborted(signum)
        tr.stop_requested, tr.stop_signal = True, signum
        with contextlib.suppress(OSError):  # SIGHUP: the terminal may be gone
            print("\n" + _stop_message(signum), file=sys.stderr, flush=True)

    checkpoint = os.path.join(run_dir, "checkpoint.pt")
    base = tr.clock  # the run's time before this command (zero for a new run)
    t_start = time.perf_counter()
    train_time = 0.0  # this command's
    carried_s, carried_n = base.epoch_s, base.epoch_samples  # of the epoch a mid-epoch checkpoint cut in two

    def save(epoch_s: float = 0.0, epoch_samples: int = 0) -> None:
        tr.clock = Clock(base.run_s + time.perf_counter() - t_start, base.train_s + train_time, epoch_s, epoch_samples)
        runs.atomic_save(tr.state(), checkpoint)

    def stop_with_checkpoint(where: str, epoch_s: float = 0.0, epoch_samples: int = 0) -> int:
        save(epoch_s, epoch_samples)
        say(f"saved {checkpoint} {where}; continue with: dlspec run --resume {run_dir}")
        return 128 + (tr.stop_signal or signal.SIGINT)

    def samples(batches: int) -> int:  # in the first `batches` batches of an epoch
        return min(batches * cfg.batch_size, len(b.train))

    old = {n: signal.signal(n, on_signal) for n in STOP_SIGNALS} if _main_thread() else {}
    try:
        while tr.epoch < cfg.epochs and not finish_only:
            ep = tr.epoch
            if tr.stop_requested:  # a signal while evaluating or saving: stop before the next epoch starts
                return stop_with_checkpoint(f"after epoch {ep}")
            bar = _progress(opts, tr.steps_per_epoch, f"epoch {ep + 1}/{cfg.epochs}", initial=tr.batch)
            t0 = time.perf_counter()
            start_batch = tr.batch
            finished = tr.train_epoch(bar)
            if s.device.type == "cuda":
                torch.cuda.synchronize()
            dt = time.perf_counter() - t0
            train_time += dt
            if bar is not None:
                bar.close()
            spent = carried_s + dt  # this epoch's training time and samples, before and after a resume
            trained = carried_n + samples(tr.steps_per_epoch if finished else tr.batch) - samples(start_batch)
            carried_s, carried_n = 0.0, 0
            if not finished:
                return stop_with_checkpoint(f"at epoch {ep + 1}, batch {tr.batch}", spent, trained)
            row: dict[str, Any] = {"epoch": ep + 1}
            row.update({f"train_{k}": v for k, v in tr.meter.result().items()})
            last = tr.epoch == cfg.epochs
            plateau = tr.sched is not None and not tr.sched_per_batch and type(tr.sched).__name__ == "ReduceLROnPlateau"
            evaluate = (ep + 1) % cfg.eval_every == 0 or last
            if s.val is not None and (evaluate or plateau):  # the plateau scheduler watches val_loss every epoch
                row.update({f"val_{k}": v for k, v in tr.evaluate(s.val).items()})
            if test_due(cfg, ep + 1, last, s.val is not None, restoring):
                row.update({f"test_{k}": v for k, v in tr.evaluate(b.test).items()})
            row["lr"] = float(tr.opt.param_groups[0]["lr"])
            row["samples_per_s"] = trained / spent if spent > 0 else 0.0
            row["elapsed_s"] = base.run_s + time.perf_counter() - t_start
            if tr.sched is not None and not tr.sched_per_batch:
                with warnings.catch_warnings():  # resumed after the epoch's last batch: no optimizer.step() yet
                    warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step")
                    if plateau:
                        tr.sched.step(row["val_loss"] if s.val is not None else row["train_loss"])
                    else:
                        tr.sched.step()
            tr.history.append(row)
            say(epoch_line(row, cfg.epochs))
            improved, tr.stopped_early = early_stop(tr, row, cfg)
            # best.pt, then checkpoint.pt, then metrics.csv: a write that fails (a full disk) leaves
            # metrics.csv with the rows of the checkpoint before, and best.pt at most ahead of it by
            # weights a resume computes again bit for bit
            if improved:
                save_best(tr, run_dir)
            if (ep + 1) % cfg.checkpoint_every == 0 or last or tr.stopped_early:
                save()
            log.add(row)
            if tr.stopped_early:
                say(f"early stopping: {watched} has not improved for {tr.bad_evals} evaluation(s)")
                break
    finally:
        for n, handler in old.items():
            signal.signal(n, handler)
    final, final_epoch, final_from = final_metrics(tr, run_dir, restoring, say)
    note = runs.plot_curves(run_dir, tr.history, name=s.checked.spec.name,
                            best=tr.best if cfg.early_stopping else None)
    if note:
        say(note)
    run_s = base.run_s + time.perf_counter() - t_start  # over every command that trained this run
    summary = {
        "spec": source_path, "name": s.checked.spec.name, "run_dir": run_dir, "epochs": tr.epoch,
        "stopped_early": tr.stopped_early, "final": final, "final_epoch": final_epoch, "final_from": final_from,
        "best": tr.best, "train_time_s": round(base.train_s + train_time, 3), "wall_time_s": round(run_s, 3),
        "times_s": {"prepare": round(s.prepare_s, 3), "setup": round(t_start - t_setup, 3),
                    "train": round(base.train_s + train_time, 3), "run": round(run_s, 3),
                    **({"since_command_start": round(time.perf_counter() - opts.started, 3)}
                       if opts.started is not None else {})},
        "device": str(s.device),
        "device_name": torch.cuda.get_device_name(s.device) if s.device.type == "cuda" else _cpu_name(),
        "threads": torch.get_num_threads(), "threads_requested": opts.threads,
        "precision": tr.plan.precision, "path": tr.plan.name, "plan": tr.plan.as_dict(), "params": sum(p.numel() for p in tr.model.parameters()),
        "data": {"name": b.name, "train": len(b.train), "val": len(s.val) if s.val is not None else 0,
                 "test": len(b.test), **b.info},
        "spec_hash": runs.spec_hash(s.doc.data), "overrides": s.overrides, "versions": runs.versions(),
    }
    runs.write_summary(run_dir, summary)
    say("test " + fmt_metrics("", {k[5:]: v for k, v in final.items()})
        + (f" │ weights of the {final_from}" if cfg.early_stopping else ""))
    return 0


def epoch_line(row: dict[str, Any], epochs: int) -> str:
    parts = [f"epoch {row['epoch']:>{len(str(epochs))}}/{epochs}"]
    for split in ("train", "val", "test"):
        vals = {k[len(split) + 1:]: v for k, v in row.items() if k.startswith(split + "_")}
        if vals:
            parts.append(fmt_metrics(split, vals))
    parts.append(f"{row['samples_per_s']:,.0f} samples/s")
    parts.append(f"{row['elapsed_s']:.1f}s")
    return " │ ".join(parts)


# --- early stopping, the best epoch and the final numbers ----------------------------------------------

def restores_best(cfg: TrainConfig) -> bool:
    """Whether the run ends on the best epoch's weights (early stopping with restore_best)."""
    es = cfg.early_stopping
    return bool(es and cfg.restore_best and not str(es["metric"]).startswith("test_"))


def test_due(cfg: TrainConfig, epoch: int, last: bool, has_val: bool, restoring: bool) -> bool:
    """Whether epoch `epoch` (1-based) evaluates the test set.

    test_every asks for every k epochs.  Left null, a run without a validation split tests every eval_every
    epochs (the source material's recipes print a test line per epoch); with one, the test set is kept out
    of the run until the end: evaluating it every epoch puts it into the choice of the model (and costs a
    pass over it per epoch).  The last epoch is tested for the final numbers, unless those come from the
    best epoch's weights (restore_best), which are tested after the loop instead.
    """
    if cfg.test_every is not None:
        every = epoch % cfg.test_every == 0
    else:
        every = not has_val and epoch % cfg.eval_every == 0
    return every or (last and not restoring)


def early_stop(tr: Trainer, row: dict[str, Any], cfg: TrainConfig) -> tuple[bool, bool]:
    """Early stopping's look at an epoch's row: (the watched metric improved, so tr.best is this epoch now;
    the run should stop).  A test_ metric is never watched: the test set must not choose the model."""
    es = cfg.early_stopping
    if not es:
        return False, False
    m = es["metric"]
    if m not in row or m.startswith("test_"):
        return False, False
    mode = es.get("mode") or ("max" if "acc" in m else "min")
    delta = float(es.get("min_delta", 0.0))
    v = float(row[m])
    better = tr.best is None or (v > tr.best["value"] + delta if mode == "max" else v < tr.best["value"] - delta)
    if better:
        tr.best = {"metric": m, "value": v, "epoch": row["epoch"]}
        tr.bad_evals = 0
        return True, False
    tr.bad_evals += 1
    return False, tr.bad_evals >= int(es.get("patience", 3))


def save_best(tr: Trainer, run_dir: str) -> None:
    """best.pt: the weights of the epoch the watched metric was best at, with that epoch, metric and value
    (`dlspec eval --checkpoint RUN/best.pt` reads its "model" as it reads checkpoint.pt's)."""
    best = dict(tr.best or {})
    runs.atomic_save({"format": 1, "model": tr.model.state_dict(), **best,
                      "spec_hash": runs.spec_hash(tr.s.doc.data), "spec": runs.plain(tr.s.doc.data)},
                     os.path.join(run_dir, "best.pt"))


def final_metrics(tr: Trainer, run_dir: str, restoring: bool, say: Any) -> tuple[dict[str, float], int, str]:
    """The run's final test metrics, the epoch whose weights gave them, and a phrase saying which that is.

    With restore_best the best epoch's weights are loaded back from best.pt and the test set is evaluated
    on them, once.  Otherwise, or when there is no best.pt to load, they are the last epoch's weights: its
    test metrics when it has them, else one evaluation now.  checkpoint.pt keeps the last epoch either way.
    """
    test = tr.s.bundle.test
    best, path = tr.best, os.path.join(run_dir, "best.pt")
    if restoring and best is not None:
        try:
            saved = runs.load_checkpoint(path)
            if "epoch" in saved and int(saved["epoch"]) != int(best["epoch"]):  # a resume chose another best
                raise runs.CheckpointError(path, f"holds epoch {saved['epoch']}, not the best epoch {best['epoch']}")
            tr.model.load_state_dict(saved["model"])
        except Exception as e:  # noqa: BLE001 - deleted, damaged, or a run folder from before best.pt
            why = "there is none" if not os.path.exists(path) else \
                f"it {e.reason}" if isinstance(e, runs.CheckpointError) else f"{type(e).__name__}: {str(e).strip()[:200]}"
            say(f"note: cannot restore the best epoch's weights from {path} ({why}); the final numbers are the "
                "last epoch's")
        else:
            final = {f"test_{k}": v for k, v in tr.evaluate(test).items()}
            return final, int(best["epoch"]), f"best epoch {best['epoch']} ({best['metric']} {best['value']:.4f})"
    last = tr.history[-1] if tr.history else {}
    final = {k: v for k, v in last.items() if k.startswith("test_")}
    if not final:
        final = {f"test_{k}": v for k, v in tr.evaluate(test).items()}
    epoch = int(last.get("epoch", tr.epoch))
    return final, epoch, f"last epoch {epoch}"


# --- resuming ----------------------------------------------------------------------------------------------

def ended_early(st: dict[str, Any]) -> bool:
    """Whether early stopping ended the run of checkpoint `st` (one from before the flag: whether its bad
    evaluations had reached the patience of its spec's early_stopping)."""
    if "stopped_early" in st:
        return bool(st["stopped_early"])
    train = (st.get("spec") or {}).get("train")
    es = train.get("early_stopping") if isinstance(train, dict) else None
    return isinstance(es, dict) and not st.get("batch") and int(st.get("bad_evals", 0)) >= int(es.get("patience", 3))


def nothing_to_resume(st: dict[str, Any], cfg: TrainConfig) -> str | None:
    """Why the run of checkpoint `st` has nothing left to train under `cfg` (the spec it is resumed with),
    or None.  A run early stopping ended trains on when the resume asks for more epochs than it has done
    (or its early_stopping, changed, would not have stopped it)."""
    if st.get("batch"):
        return None  # stopped within an epoch
    done = int(st["epoch"])
    train = (st.get("spec") or {}).get("train")
    before = train.get("epochs", TRAIN_ARGS["epochs"].default) if isinstance(train, dict) else None
    es = cfg.early_stopping
    if ended_early(st) and es and int(st.get("bad_evals", 0)) >= int(es.get("patience", 3)) and \
            not (cfg.epochs != before and cfg.epochs > done):
        best = st.get("best") or {}
        return (f"early stopping ended it after epoch {done} of {cfg.epochs} ({best.get('metric', es['metric'])} had "
                f"not improved for {st.get('bad_evals')} evaluation(s)"
                + (f"; best {best['value']:.4f} at epoch {best['epoch']}" if "value" in best else "") + ")")
    if done >= cfg.epochs:
        return f"{done} of {cfg.epochs} epochs done" if done == cfg.epochs else \
            f"{done} epochs done (train.epochs is {cfg.epochs})"
    return None


def train_on(tr: Trainer, cfg: TrainConfig, say: Any) -> None:
    """A run early stopping had ended, resumed with more epochs: it trains on, and early stopping counts its
    patience afresh from the best so far (else the first epoch without an improvement would stop it again)."""
    es = cfg.early_stopping
    if es and tr.bad_evals >= int(es.get("patience", 3)):
        best = tr.best
        say(f"early stopping had ended this run after epoch {tr.epoch}; it watches {es['metric']} again, patience "
            f"{int(es.get('patience', 3))} from its best" + (f" ({best['value']:.4f} at epoch {best['epoch']})" if best else ""))
        tr.bad_evals = 0
    tr.stopped_early = False


def _progress(opts: Options, total: int, desc: str, initial: int = 0) -> Any:
    if not opts.progress or opts.quiet or not sys.stderr.isatty():
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, initial=initial, desc=desc, unit="batch", leave=False, dynamic_ncols=True,
                mininterval=0.25)


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _cpu_name() -> str:
    return f"{runs.cpu_model()} ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads)"
