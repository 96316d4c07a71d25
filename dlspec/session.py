"""Stage 6a, session: everything `dlspec run` (and eval, predict, generate) does before the first step.

`prepare()` reads the spec (with command-line overrides), checks it, picks the device, loads the data,
checks the data↔model↔loss contract again with the torch that runs and the data as loaded, estimates the
memory, builds the model and tries one step on a copy.  Whatever stops it is a `Refused` with diagnostics:
the run never starts half-way.
"""

from __future__ import annotations

import copy
import math
import os
import time
import zipfile
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from . import codes, distributed, tasks
from . import overrides as ov
from .contract import DataFacts, check_metrics
from .data import DATASETS, Bundle, DataError, Split, data_root
from .data.base import float_bytes, materialize
from .diagnostics import Diagnostic, error, locate
from .infer import Checked
from .objectives import (
    check_objects,
    init_weights,
    resolve,
)
from .preflight import id_diagnostics, memory_diagnostics, trial_step
from .schema import parse_spec
from .source import Document, read
from .traincheck import networks_refusal, task_contract
from .trainspec import MAX_THREADS_PER_CPU, TrainConfig


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
        self.agreed = False  # several processes: this is every rank's verdict (see agree)
        self.together = False  # ... and every rank has it (they leave together once it is said)
        self.quiet = False  # said by another process of this machine (the first, local rank 0)
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
    task: Any = None  # dlspec.tasks.TaskType: what the run learns
    task_args: dict[str, Any] = field(default_factory=dict)
    val: Split | None = None
    warnings: list[Diagnostic] = field(default_factory=list)
    overrides: list[str] = field(default_factory=list)
    prepare_s: float = 0.0  # reading, checking, loading the data, building: everything before the Trainer
    world: Any = None  # distributed.World: this process's rank among torchrun's (None: one process)


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


def _world_problems(world: Any, cfg: Any, device: Any) -> list[Diagnostic]:
    """What several processes cannot run: the same on every rank (each checks its own copy of the spec)."""
    d = []
    if cfg.batch_size % world.size:
        d.append(error(codes.TRAIN, f"batch_size {cfg.batch_size} is not divisible by the {world.size} processes",
                       ("train", "batch_size"), help=f"a multiple of {world.size}: each process takes an equal part "
                       "of every batch"))
    if device is not None and device.type == "cuda":
        n = torch.cuda.device_count()
        if world.local_rank >= n:
            d.append(error(codes.DEVICE, f"process {world.rank} (local rank {world.local_rank}) has no GPU: this "
                           f"machine has {n}", ("train", "device"),
                           help=f"--nproc-per-node {n} at most on this machine (one GPU per process)"))
    return d


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

    training=False (eval, predict, generate) skips constructing the optimizer and scheduler.  Several
    processes (torchrun): every rank prepares its own, then they agree; when any cannot start, each raises
    the same Refused (see agree)."""
    world = distributed.from_env()
    if not (training and world.distributed):
        return _prepare(path, items, opts, doc, training)
    try:
        s = _prepare(path, items, opts, doc, training)
    except Refused as e:
        raise agree(world, e) or e from None
    refused = agree(world, None, s.doc)
    if refused is not None:
        raise refused
    return s


def agree(world: distributed.World, refusal: Refused | None, doc: Document | None = None) -> Refused | None:
    """Several processes: this rank's verdict (None: ready) against every other's.  The Refused every rank
    then stops with (None when all are ready): a refusal found by all alike as it is, otherwise each
    refusing process's diagnostics prefixed with which process (and machine) found them.  A rank that cannot
    hear from the others (one died, or did not get ready in time) gets a Refused of its own that says so."""
    import socket

    mine = None if refusal is None else (refusal.diagnostics, refusal.message, refusal.status)
    doc = refusal.doc if refusal is not None and refusal.doc is not None else doc
    try:
        verdicts = distributed.gather((socket.gethostname(), mine), world)
    except (RuntimeError, ValueError, OSError) as e:  # (torch's DistError and its timeouts are RuntimeErrors)
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        out = Refused(refusal.diagnostics if refusal else [], doc, status=refusal.status if refusal else 1,
                      message=(refusal.message + "\n" if refusal and refusal.message else "")
                      + f"process {world.rank} of {world.size}: the other processes did not get ready ({first}); "
                      "one stopped before training began: see its message")
        out.agreed = True
        return out
    bad = [(rank, host, v) for rank, (host, v) in enumerate(verdicts) if v is not None]
    if not bad:
        return None
    groups: dict[Any, list[tuple[int, str, Any]]] = {}
    for rank, host, v in bad:
        key = (v[1], tuple((d.severity, str(d.code), d.message, d.path) for d in v[0]))
        groups.setdefault(key, []).append((rank, host, v))
    hosts = len({h for h, _ in verdicts}) > 1
    diagnostics: list[Diagnostic] = []
    messages: list[str] = []
    for members in groups.values():
        _, _, (diags, message, _) = members[0]
        who = ""
        if len(groups) > 1 or len(bad) < world.size:  # not every process says the same: which ones
            ranks = [r for r, _, _ in members]
            who = (f"process {ranks[0]}" if len(ranks) == 1 else "processes " + ", ".join(map(str, ranks))) \
                + f" of {world.size}" + (" on " + ", ".join(sorted({h for _, h, _ in members})) if hosts else "")
        for d in diags:
            c = copy.copy(d)
            if who:
                c.message = f"{who}: {d.message}"
            diagnostics.append(c)
        if message:
            messages.append(f"{who}: {message}" if who else message)
    out = Refused(diagnostics, doc, message="\n".join(messages), status=max(v[2] for _, _, v in bad))
    out.agreed = out.together = True
    out.quiet = world.local_rank != 0
    return out


def _prepare(path: str, items: list[str], opts: Options, doc: Document | None, training: bool) -> Session:
    """prepare() of one process."""
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
    refused = networks_refusal(checked)
    if not errors and spec.train is None and refused is not None:  # several networks: only a GAN trains them
        raise Refused([refused], doc)
    if not errors and spec.train is None:
        raise Refused([error(codes.TRAIN, "the spec has no `train:` section, so there is nothing to run", (),
                             help="add e.g. `train: {data: {name: mnist}, epochs: 5, optimizer: {Adam: {lr: 0.001}}}`")],
                      doc)
    cfg = spec.train_config
    if errors or cfg is None:
        raise Refused(checked.diagnostics, doc)
    warnings = [d for d in checked.diagnostics if d.severity == "warning"]
    device, d = pick_device(doc, cfg.device)
    world = distributed.from_env()
    if world.distributed and training:
        d += _world_problems(world, cfg, device)
        if device is not None and device.type == "cuda" and not d:  # one GPU per process: LOCAL_RANK's
            device = torch.device("cuda", world.local_rank)
            torch.cuda.set_device(device)
        if not d:  # the process group, before the data loads (the ranks agree on starting at the end)
            distributed.join(world, device)
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
    facts = facts_of(bundle, cfg.data_name)
    task, task_args = tasks.chosen(cfg, facts)
    if task is None:  # (validate_train refused an unknown name; a data set's own task is always known)
        raise Refused(warnings + [error(codes.TRAIN, f"no task for {bundle.name}'s {bundle.task} data", ("train",),
                                        help="write train.task")], doc)
    facts = tasks.task_facts(task, facts, task_args)
    resolved, d = resolve(cfg, task.kind, task.default_loss)
    if task.loaded is not None:  # its options against the data as loaded (a prime against the vocabulary)
        d += task.loaded(bundle, task_args, ("train", "task") if cfg.task is not None else ())
    if task.resolve is not None:  # the task's own torch objects (a GAN's two optimizers)
        resolved["task"], more = task.resolve(cfg, task_args)
        d += more
    loss_name = resolved["loss"][0] if "loss" in resolved else None
    c, symbols = task_contract(checked, facts, loss_name, cfg, task, task_args)
    said = {(x.code, x.path) for x in checked.diagnostics}
    d += [x for x in c + check_metrics(cfg, task.kind, loss_name, task) if (x.code, x.path) not in said]
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
                resolved=resolved, symbols=symbols, warnings=warnings, task=task, task_args=task_args,
                overrides=items if not doc.overrides else list(doc.overrides),
                world=world if training else distributed.World())
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
    d = id_diagnostics(s) or (trial_step(s, training) if task.trial else [])  # what torch refuses once it runs
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
