"""What `dlspec run` (and `dlspec.build`) check after the spec and the data, before anything is created.

* **Memory** (`memory_diagnostics`): the estimate of `dlspec.memory` against the memory of the device (and,
  for a CUDA run, the CPU the model is built on).  A refusal names what takes the memory — a layer's
  parameters, a layer's output, the batch size — with the numbers and a fix.
* **The trial step** (`trial_step`): one forward pass, loss, backward pass, optimizer step and scheduler
  step on two training samples, on a copy of the model, with the random number generators' states put
  back afterwards: whatever torch refuses only once it runs (a `label_smoothing` of 5, a StepLR with
  `step_size: 0`, an Embedding index out of range, a BatchNorm on a last batch of one sample) is a
  diagnostic at the argument torch refused, not a traceback in the middle of the run.  The scheduler is
  also taken to the run's last step, where a OneCycleLR with too few `total_steps` fails.  A loss, weights
  or a learning rate that are nan or infinite after it are failures too (`lr: .nan` trains on nan without
  a word).  Nothing the run sees changes: not the weights, not the optimizer, not the random numbers, and
  the model's hooks do not see the copy.
"""

from __future__ import annotations

import copy
import math
import warnings
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from . import codes, memory
from .diagnostics import Diagnostic, error
from .memory import fmt_bytes
from .schema import yaml_text

NORMAL_BATCH = 32  # a refusal blames the batch size when a batch of this many samples would fit, else a layer
FLOAT32_MAX = 3.4028234663852886e38  # the largest learning rate a step on float32 weights takes
TRIAL_SAMPLES = 2  # samples of the trial step's batch (fewer when the run's smallest batch is smaller)


# --- memory --------------------------------------------------------------------------------------------

def _numeric(v: Any) -> float:
    if isinstance(v, bool):
        return 0.0
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, (list, tuple)) and v:
        return max(_numeric(e) for e in v)
    return 0.0


def _layer_path(row: Any) -> tuple[tuple[Any, ...], bool]:
    """The document path of the written argument of row with the largest number (the size that makes it
    large: out_features, scale_factor, out_channels), else of the layer's name."""
    item = row.item
    written = {k: v for k, v in item.written.items() if _numeric(v) > 0}
    if written:
        arg = max(written, key=lambda k: _numeric(written[k]))
        return item.args_path + (arg,), False
    return item.args_path, True


def _what(row: Any) -> str:
    return f"layer {row.item.index} ({row.type})" if row.depth else f"layer {row.item.index} {row.type}"


def memory_diagnostics(checked: Any, cfg: Any, optimizer: tuple[str, dict[str, Any]] | None,
                       symbols: dict[str, int], device: torch.device, samples: tuple[int, int],
                       extra: int = 0) -> list[Diagnostic]:
    """A `memory` error when the run would not fit: optimizer None for evaluation only; `samples` the
    training and the largest evaluated split's sizes (no batch is larger); `extra` bytes the run puts on the
    device besides the model (the data set, when the trainer moves it there)."""
    eval_bs = cfg.eval_batch_size or max(256, 4 * cfg.batch_size)
    est = memory.estimate(checked, max(1, min(cfg.batch_size, samples[0])), max(1, min(eval_bs, samples[1])),
                          optimizer, symbols, cfg.precision)
    need = est.total + extra
    out: list[Diagnostic] = []
    budget = memory.check_fits(need, device)
    if budget is None and device.type != "cpu":  # the model is built on the CPU first, then moved
        cpu = memory.check_fits(est.terms[0].bytes)
        if cpu is not None:
            return [_weights_refusal(est, cpu, f"building the model on the CPU (before it moves to {_where(device)}) "
                                     f"needs about {fmt_bytes(est.terms[0].bytes)} of memory")]
        return out
    if budget is None:
        return out
    what = "training" if optimizer is not None else "evaluating"
    return [_refusal(cfg, est, need, budget, what, _where(device), extra)]


def _where(device: torch.device) -> str:
    return "this machine" if device.type == "cpu" else f"{device.type}:{device.index or 0}"


def _refusal(cfg: Any, est: memory.Estimate, need: int, budget: memory.Budget, what: str, where: str,
             extra: int) -> Diagnostic:
    """The `memory` error of a run: the numbers, and what to change — the batch size when a usual batch fits,
    else the layer whose output or whose parameters take the most."""
    have = budget.bytes or 0
    notes = [f"{est.params:,} parameters; {est.breakdown()}" + (f", the data set {fmt_bytes(extra)}" if extra else "")]
    peak = est.terms[-1]
    fixed = need - peak.bytes
    path: tuple[Any, ...]
    key = False
    train_peak = peak.what.startswith("the activations of a batch") and "evaluation" not in peak.what
    eval_peak = "evaluation" in peak.what
    per_sample = est.per_sample + est.output_bytes if train_peak else 2 * est.output_bytes
    fits = (have - fixed) // per_sample if per_sample and have > fixed else 0
    row = None
    if (train_peak or eval_peak) and fits >= NORMAL_BATCH:  # the batch is the problem: a usual one fits
        name = "eval_batch_size" if eval_peak else "batch_size"
        path = ("train", name if name in cfg.written or not eval_peak else "batch_size")
        culprit = f"the batch size ({peak.what})"
        help = f"use {name}: {fits} or less" + (" (evaluation's batch is 4 × batch_size, at least 256, unless "
                                                "eval_batch_size says)" if eval_peak and name not in cfg.written else "")
    elif peak.what.startswith("the activations") and est.largest_output is not None and \
            est.output_bytes * 4 > est.terms[0].bytes:
        row = est.largest_output
        path, key = _layer_path(row)
        shape = row.output.shape
        culprit = f"{_what(row)} and after: its output {'×'.join(str(d) for d in shape)} per sample"
        help = "make that layer's output smaller" + (", or use a smaller batch_size" if train_peak else "")
    else:
        row = est.largest_params
        path, key = (_layer_path(row) if row is not None else (("layers",), True))
        culprit = f"{_what(row)}: {row.params:,} parameters ({fmt_bytes(4 * row.params)})" if row is not None \
            else "the weights"
        help = "make that layer smaller (fewer parameters)"
    notes.append(f"most of it: {culprit}")
    notes.append(budget.note())
    msg = f"{what} needs about {fmt_bytes(need)} of memory, more than the {fmt_bytes(have)} {where} has available"
    return error(codes.MEMORY, msg, path, key=key, notes=notes, help=help,
                 layer=row.item.index if row is not None and row.depth == 0 else None)


def build_refusal(checked: Any) -> Diagnostic | None:
    """`dlspec.build`'s check: the weights (float32) against the memory of this machine."""
    est = memory.estimate(checked)
    budget = memory.check_fits(est.total)
    if budget is None:
        return None
    return _weights_refusal(est, budget, f"the model's weights take {fmt_bytes(est.total)}")


def _weights_refusal(est: memory.Estimate, budget: memory.Budget, what: str) -> Diagnostic:
    """The `memory` error of weights that do not fit, at the layer with the most parameters."""
    row = est.largest_params
    path, key = _layer_path(row) if row is not None else (("layers",), True)
    notes = [f"{est.params:,} parameters as float32"]
    if row is not None:
        notes.append(f"most of it: {_what(row)}: {row.params:,} parameters ({fmt_bytes(4 * row.params)})")
    notes.append(budget.note())
    return error(codes.MEMORY, f"{what}, more than the {fmt_bytes(budget.bytes or 0)} this machine has available",
                 path, key=key, notes=notes, help="make that layer smaller (fewer parameters)",
                 layer=row.item.index if row is not None and row.depth == 0 else None)


# --- the data against the model -------------------------------------------------------------------------

def id_diagnostics(s: Any) -> list[Diagnostic]:
    """Integer ids in the data against every Embedding that reads them: an id the table does not have fails
    (IndexError) at the batch that holds it, perhaps late in the run."""
    x = [t.x for t in (s.bundle.train, s.bundle.test, s.val) if t is not None and len(t)]
    if not x or x[0].is_floating_point():
        return []
    lo, hi = min(int(t.min()) for t in x), max(int(t.max()) for t in x)
    out = []
    for r in s.checked.all_rows():
        if r.entry.name != "Embedding" or r.input is None or r.input.dtype != "long":
            continue
        n = r.args["num_embeddings"]
        if lo < 0 or hi >= n:
            bad = lo if lo < 0 else hi
            out.append(error(codes.DATA, f"the data holds id {bad} but {_what(r)} has num_embeddings {n} (ids 0 to "
                             f"{n - 1})", r.item.args_path + ("num_embeddings",), layer=r.item.index,
                             help=f"write num_embeddings: {hi + 1}" if lo >= 0 else
                             "ids must be 0 or more: check the data"))
    return out


# --- the trial step ------------------------------------------------------------------------------------

class _NotFinite(ArithmeticError):
    """The trial's loss, or the weights after its step, are nan or infinite."""


class _Failed(Exception):
    """The trial failed at `stage` (forward, loss, backward, optimizer, scheduler, last-scheduler)."""

    def __init__(self, stage: str, cause: BaseException, module: str | None = None):
        super().__init__(stage)
        self.stage, self.cause, self.module = stage, cause, module


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    if isinstance(e, _NotFinite):
        return text
    return f"{type(e).__name__}: {text.splitlines()[0][:300]}" if text else type(e).__name__


def run_steps(s: Any) -> int:
    """The number of scheduler steps the run takes (per batch or per epoch)."""
    from .objectives import scheduler_per_batch
    from .session import steps_per_epoch

    per = scheduler_per_batch(s.resolved, s.cfg)
    return s.cfg.epochs * max(1, steps_per_epoch(len(s.bundle.train), s.cfg)) if per else s.cfg.epochs


def trial_batches(s: Any, training: bool) -> list[int]:
    """The trial's batch sizes: TRIAL_SAMPLES, and then the run's smallest batch when that is smaller (a last
    batch of one sample is what a BatchNorm refuses)."""
    if not training:
        return [min(TRIAL_SAMPLES, len(s.bundle.test))]
    n, bs = len(s.bundle.train), s.cfg.batch_size
    smallest = bs if s.cfg.drop_last or n % bs == 0 else n % bs
    first = min(TRIAL_SAMPLES, bs, n)
    return [first] + ([smallest] if 0 < smallest < first else [])


def _attempt(s: Any, resolved: dict[str, Any], split: Any, n: int, training: bool) -> float:
    """One step as the run takes it on the first n samples of split — the run's own step object (dlspec.step),
    made for a copy of the model and `resolved`, driven stage by stage; the loss, or _Failed at the stage that
    failed."""
    from .batch import feed_for
    from .step import Context

    model = copy.deepcopy(s.model)
    for m in model.modules():  # the copy is nobody's to watch: hooks on the model do not see the trial
        for name, hooks in vars(m).items():
            if "_hooks" in name and isinstance(hooks, dict):
                hooks.clear()
    model.train(training)
    task = s.task.make(replace(Context.of(s), model=model, resolved=resolved), s.task_args)
    step = task.step
    # what the task trains on (reconstruction: the input; noise from the global RNG, which trial_step restores)
    batch = task.prepare(feed_for(s.bundle, step.data_inputs).rows(split, 0, n).to(s.device), True)
    with torch.set_grad_enabled(training):
        outputs = _forward(step, model, batch)
    loss, value = _loss(step, outputs, batch)
    if training:
        _optimize(s, step, loss, value, "scheduler" in resolved)
    return value


def _forward(step: Any, model: nn.Module, batch: Any) -> Any:
    """The step's forward pass; _Failed("forward") naming the innermost module it failed in."""
    entered: list[str] = []
    names = {m: n for n, m in model.named_modules()}

    def pre(m: nn.Module, _: Any) -> None:
        entered.append(names.get(m, ""))

    def post(m: nn.Module, _: Any, __: Any) -> None:
        if entered:
            entered.pop()

    hooks = [m.register_forward_pre_hook(pre) for m in model.modules()] + \
        [m.register_forward_hook(post) for m in model.modules()]
    try:
        return step.forward(batch)
    except Exception as e:  # noqa: BLE001 - anything torch refuses is the spec's or the data's mistake
        raise _Failed("forward", e, next((n for n in reversed(entered) if n), None)) from None
    finally:
        for h in hooks:
            h.remove()


def _loss(step: Any, outputs: Any, batch: Any) -> tuple[torch.Tensor, float]:
    """The step's objective on the outputs (and its value); _Failed("loss") when torch refuses it, when it is
    not one number, or when it is nan or infinite before any step (nan in the data, a nan loss weight)."""
    try:
        loss = step.objective(outputs, batch.targets)[0]
        value = float(loss.detach().float().mean()) if loss.numel() else 0.0
        if loss.dim() != 0:
            raise ValueError(f"the loss gives a tensor of shape {tuple(loss.shape)}, not one number (reduction "
                             "'none' cannot train)")
    except Exception as e:  # noqa: BLE001
        raise _Failed("loss", e) from None
    if not math.isfinite(value):
        raise _Failed("loss", _NotFinite(f"the loss is {value} before any step"))
    return loss, value


def _stage(stage: str, fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except Exception as e:  # noqa: BLE001
        raise _Failed(stage, e) from None


def _optimize(s: Any, step: Any, loss: torch.Tensor, value: float, scheduled: bool) -> None:
    """Backward, the optimizer and its scheduler made as the run makes them, the optimizer's step (clipped), the
    scheduler's first step and its last of the run; _Failed at the stage that fails, or whose result is not
    finite (weights, a learning rate)."""
    _stage("backward", step.backward, loss)
    opt = _stage("optimizer", step.build_optimizer)
    if scheduled:  # made before the first step, as the run makes it
        _stage("scheduler", step.build_scheduler)
        _finite_lr(opt, "scheduler")  # the learning rate it starts with (OneCycleLR's max_lr / div_factor)
    _stage("optimizer", step.update)
    if not all(bool(torch.isfinite(p).all()) for p in step.model.parameters()):  # lr: .nan, or one so large
        raise _Failed("optimizer", _NotFinite("the weights are not finite after the first step"))
    if step.scheduler is not None:
        _schedule(s, step.scheduler, opt, value)


def _schedule(s: Any, sched: Any, opt: torch.optim.Optimizer, value: float) -> None:
    """The scheduler's first step, then the run's last, where a schedule of too few steps ends."""
    plateau = type(sched).__name__ == "ReduceLROnPlateau"
    _stage("scheduler", lambda: sched.step(value) if plateau else sched.step())
    _finite_lr(opt, "scheduler")
    n = run_steps(s)
    if n > 1 and not plateau and isinstance(getattr(sched, "last_epoch", None), int) and \
            type(sched).__name__ not in ("SequentialLR", "ChainedScheduler"):
        sched.last_epoch = n - 1
        _stage("last-scheduler", sched.step)
        _finite_lr(opt, "last-scheduler")


def _finite_lr(opt: torch.optim.Optimizer, stage: str) -> None:
    """_Failed when the scheduler made a learning rate nan or infinite (gamma: .nan): every step after is nan;
    or negative, which every optimizer refuses when it is made with one (the steps would climb the loss)."""
    for g in opt.param_groups:
        lr = float(g["lr"])
        if not math.isfinite(lr) or lr < 0 or lr > FLOAT32_MAX:
            why = " (negative: the steps would climb the loss)" if lr < 0 else \
                " (more than float32 holds: torch fails at the step that uses it)" if lr > FLOAT32_MAX else ""
            raise _Failed(stage, _NotFinite(f"the learning rate becomes {lr:g}{why}"))


_STAGE_KEY = {"loss": "loss", "optimizer": "optimizer", "scheduler": "scheduler", "last-scheduler": "scheduler"}
STAGES = ("forward", "loss", "backward", "optimizer", "scheduler", "last-scheduler")  # in the order they run


def _stand_ins(v: Any) -> list[Any]:
    """Plain values of the kind of v, for an argument torch requires (so it cannot just be left out)."""
    if isinstance(v, bool):
        return [not v]
    if isinstance(v, int):
        return [1]
    if isinstance(v, float):
        return [0.1, 1.0]
    return []


def _culprit(s: Any, key: str, stage: str, split: Any, n: int, training: bool) -> tuple[str, bool] | None:
    """The one argument of the loss, optimizer or scheduler without which (or with a plain value in its place,
    for an argument torch requires) the trial gets past `stage`, and whether leaving it out does."""
    name, cls, kw = s.resolved[key]
    for k in kw:
        rest = {a: v for a, v in kw.items() if a != k}
        for i, variant in enumerate([rest] + [{**rest, k: v} for v in _stand_ins(kw[k])]):
            try:
                _attempt(s, {**s.resolved, key: (name, cls, variant)}, split, n, training)
            except _Failed as f:
                if STAGES.index(f.stage) <= STAGES.index(stage):  # not past the stage that failed
                    continue
            except Exception:  # noqa: BLE001, S112 - not this one
                continue
            return k, i == 0
    return None


def trial_step(s: Any, training: bool = True) -> list[Diagnostic]:
    """The trial step on TRIAL_SAMPLES samples (see the module docstring): its failure as a diagnostic."""
    split = s.bundle.train if training else s.bundle.test
    cpu_rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if s.device.type == "cuda" else None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the run itself says what torch warns about
            sizes = trial_batches(s, training)
            for n in sizes:
                if n == 0:
                    continue
                try:
                    _attempt(s, s.resolved, split, n, training)
                except _Failed as f:
                    return [_diagnostic(s, f, split, n, training, last=n < sizes[0])]
    finally:
        torch.set_rng_state(cpu_rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)
    return []


def _diagnostic(s: Any, f: _Failed, split: Any, n: int, training: bool,
                last: bool) -> Diagnostic:
    """The diagnostic of a failed trial (last: on the run's last, smaller batch, the full one having passed)."""
    cause = _first_line(f.cause)
    samples = f"{n} {'training' if training else 'test'} sample{'s' if n != 1 else ''}"
    if isinstance(f.cause, MemoryError) or "out of memory" in str(f.cause).lower() or \
            "can't allocate memory" in str(f.cause):
        return error(codes.MEMORY, f"the trial step on {samples} runs out of memory ({cause})", ("layers",),
                     key=True, help="make the model smaller")
    if f.stage == "forward":
        row, qual = _row_of(s, f.module)
        where = f"{_what(row)}{f' ({qual})' if qual else ''}: " if row is not None else ""
        hint = (f"the last batch of each epoch has {n} sample{'s' if n != 1 else ''} "
                f"({len(s.bundle.train)} samples, batch_size {s.cfg.batch_size}): use drop_last: true or another "
                "batch_size") if last else "check the layer's arguments against the data"
        return error(codes.RUNTIME,
                     f"{where}the forward pass fails on a batch of {samples}: {cause}",
                     ("train", "batch_size") if last else (row.item.args_path if row is not None else ("layers",)),
                     key=not last, layer=row.item.index if row is not None and not last else None, help=hint)
    key = _STAGE_KEY.get(f.stage)
    if key is None or key not in s.resolved:  # backward: nothing written to blame
        return error(codes.RUNTIME, f"the {f.stage} pass fails on {samples}: {cause}", ("train",),
                     help="check the model and the loss")
    name = s.resolved[key][0]
    when = {"loss": "computing the loss", "optimizer": "at the optimizer's first step",
            "scheduler": "at the scheduler's first step",
            "last-scheduler": f"at the scheduler's last step ({run_steps(s)} of the run)"}[f.stage]
    blame = _culprit(s, key, f.stage, split, n, training)
    written = getattr(s.cfg, key)
    base: tuple[Any, ...] = ("train", key, written[0]) if written else ("train",)
    if blame is None and f.stage == "loss" and isinstance(f.cause, _NotFinite):
        return error(codes.RUNTIME, f"{f.cause} on the first {samples}: the run would learn nothing",
                     ("train", "data"), help="look for nan or infinite values in the data (or targets the loss "
                     "cannot take)")
    if blame is not None:
        arg, optional = blame
        value = s.resolved[key][2][arg]
        steps = f" (the run takes {run_steps(s)} scheduler steps)" if f.stage == "last-scheduler" else ""
        what = (cause if f.stage in ("loss", "optimizer") else f"{cause} {when}") if isinstance(f.cause, _NotFinite) \
            else f"torch fails {when} ({cause})"
        return error(codes.TRAIN, f"{name} {arg}: {what}", base + (arg,),
                     help=f"torch refused {arg}: {yaml_text(value)}{steps}; "
                     + ("leave it out (torch's default), or give another value" if optional else "give another value"))
    return error(codes.RUNTIME, f"{name}: torch fails {when} ({cause})", base, key=bool(written),
                 help=f"check the arguments of {name} (torch refused them)")


def _row_of(s: Any, qualified: str | None) -> tuple[Any, str]:
    """The top-level row of the module named `qualified` in the model (its first name part is one of the
    model's layers, in the order of the checked rows), and the name."""
    if not qualified:
        return None, ""
    top = qualified.split(".")[0]
    names = [n for n, _ in s.model.named_children()]
    if top in names and names.index(top) < len(s.checked.rows):
        return s.checked.rows[names.index(top)], qualified
    return None, qualified
