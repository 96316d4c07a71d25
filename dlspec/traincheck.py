"""Stage 4, train check: the `train:` section against torch's names and the model, without torch or data.

What `dlspec run` would refuse, found by `dlspec check` in the same fraction of a second as the shapes:
the loss, optimizer and scheduler names and their keyword arguments (kinds and required ones) from the
table generated from torch (`torchnames`), the dataset's sample shape, dtype and class count as far as its
options fix them (`DatasetType.facts`), the data↔model↔loss contract and the metrics (`contract`).
Misspelt names get a did-you-mean and the check carries on as the name meant, so one run reports all.
`dlspec run` checks all of it again against the torch it runs with and the data it loads.
"""

from __future__ import annotations

import math
from typing import Any

from . import codes, tasks, torchnames
from .contract import SUPPORTED_LOSSES, check_contract, check_metrics, default_loss
from .data import DATASETS
from .diagnostics import Diagnostic, did_you_mean, error, warning
from .infer import Checked
from .schema import yaml_text

# what dlspec run cannot drive, and why (the optimizers': torchnames.UNSUPPORTED_OPTIMIZERS, which run uses too)
UNSUPPORTED_SCHEDULERS = {"ChainedScheduler": "it chains scheduler objects, which a spec cannot hold",
                          "SequentialLR": "it chains scheduler objects, which a spec cannot hold"}
WRITABLE_SCHEDULERS = "StepLR, MultiStepLR, ExponentialLR, CosineAnnealingLR, OneCycleLR, LinearLR, ReduceLROnPlateau"


def check_train(checked: Checked) -> list[Diagnostic]:
    refused = networks_refusal(checked)
    if refused is not None:  # several networks that are not an adversarial task: no train check applies
        return [refused] if checked.spec.train is not None else []
    cfg = checked.spec.train_config
    if cfg is None:
        return []
    diags: list[Diagnostic] = []
    names: dict[str, str | None] = {}
    for kind in torchnames.KINDS:
        written = getattr(cfg, kind)
        if written is not None:
            names[kind], d = check_call(kind, written)
            diags += d
    entry = DATASETS.get(cfg.data_name)
    facts = entry.facts(cfg.data_args) if entry is not None and entry.facts is not None else None
    task, task_args = tasks.chosen(cfg, facts)
    diags += unused_networks(checked, task, task_args)
    if facts is not None:
        facts = tasks.task_facts(task, facts, task_args)
    loss = names.get("loss") if cfg.loss else None
    if facts is not None and (cfg.loss is None or loss is not None):
        diags += task_contract(checked, facts, loss, cfg, task, task_args)[0]
    learned = task.kind if task is not None else facts.task if facts is not None else None
    if cfg.loss is None or loss is not None:
        diags += check_metrics(cfg, learned, loss or default_loss(learned, task), task)
    return diags


def task_contract(checked: Checked, facts: Any, loss: str | None, cfg: Any, task: Any, task_args: dict[str, Any]
                  ) -> tuple[list[Diagnostic], dict[str, int]]:
    """The data↔model↔loss contract (dlspec.contract) and the task's own checks; a task that judges the output
    against its targets itself (reconstruction) replaces the generic output check.  (dlspec run asks it
    again with the loaded data's facts.)"""
    path = ("train", "task") if cfg.task is not None else ()
    own = task.contract(checked, facts, task_args, path) if task is not None else []
    generic, symbols = check_contract(checked, facts, loss or default_loss(facts.task, task),
                                      ("train", "loss") if cfg.loss else None)
    if task is not None and task.replaces_output_check and own:
        generic = [d for d in generic if d.code != codes.LOSS]
    return generic + own, symbols


def networks_refusal(checked: Checked) -> Diagnostic | None:
    """Why `dlspec run` cannot train this spec of several networks (None when it is one network, or its `train:`
    names a task that trains networks: its entry's `networks`, `task: adversarial`): at `train.task` when it
    names another task, else at `train:` (or the spec's start, when it has no `train:`)."""
    if not checked.networks:
        return None
    train = checked.spec.train if isinstance(checked.spec.train, dict) else {}
    task = train.get("task")
    trainers = tasks.names_where(lambda t: t.networks is not None)
    if task in trainers or (isinstance(task, dict) and any(n in task for n in trainers)):
        return None
    names, which = ", ".join(checked.networks), " or ".join(trainers)
    written = "task" in train
    from .trainspec import TRAIN_ARGS

    if "task" in TRAIN_ARGS:
        help = f"write `task: {which}` under `train:`, or leave `train:` out to check and build the networks"
    else:
        help = (f"this dlspec does not have `train.task: {which}` yet: leave `train:` out to check and build the "
                "networks (dlspec.build gives an nn.ModuleDict of them), and train them from Python")
    path = ("train", "task") if written else ("train",) if checked.spec.train is not None else ()
    return error(codes.TRAIN, f"a spec of several networks (`networks:` {names}) trains with `train.task: "
                 f"{which}`" + (f", not {yaml_text(task)}" if written else ""), path, key=not written, help=help)


def unused_networks(checked: Checked, task: Any, task_args: dict[str, Any]) -> list[Diagnostic]:
    """An error at each network of `networks:` that the task does not train: `dlspec run` would build it, count
    it, save it in every checkpoint and never train it — a network written to be trained (a GAN's encoder)
    would stay at its random weights without a word.  (Without `train:` every network is built, to be used
    from Python; a network the task names but the spec lacks is the task's own error.)"""
    if not checked.networks or task is None or task.networks is None:
        return []
    used = list(task.networks(task_args))
    if any(n not in checked.networks for n in used):  # a misspelt role: the task's contract names the networks
        return []
    roles = " and ".join(used)
    return [error(codes.TRAIN, f"network '{name}' is not used: the {task.name} task trains {roles}", ("networks", name),
                  key=True, help=f"remove it from `networks:` (or build it from Python with dlspec.build, without "
                  f"`train:`); the task's networks are named under train.task.{task.name}")
            for name in checked.networks if name not in used]


def check_call(kind: str, written: tuple[str, dict[str, Any]], where: tuple[Any, ...] | None = None
               ) -> tuple[str | None, list[Diagnostic]]:
    """A `{Name: {keyword: value}}` of train.loss / optimizer / scheduler (or a task's option `where`) against
    the table: the class name to carry on with (the did-you-mean one for a misspelling; None when nothing is
    close) and diagnostics."""
    name, kwargs = written
    path: tuple[Any, ...] = (where if where is not None else ("train", kind)) + (name,)
    diags: list[Diagnostic] = []
    classes = torchnames.table()[kind]
    real = torchnames.lookup(kind, name)
    if real is None:
        hint = did_you_mean(name, list(classes))
        stale = _stale_table()
        report = warning if stale else error
        diags.append(report(codes.TORCH_NAME, f"torch has no {kind} '{name}'" + (f" (in {stale})" if stale else ""),
                            path, key=True, help=(f"did you mean '{hint}'?" if hint else f"{kind}s: "
                                                  + ", ".join(sorted(classes)))))
        if hint is None or stale:
            return None, diags
        real = hint  # carry on as the class it probably means: its arguments are checked in this run too
    why = _unsupported(kind, real)
    if why:
        diags.append(error(codes.TRAIN, f"dlspec run does not support {real}: {why}", path, key=True,
                           help=_instead(kind)))
        return None, diags
    params = {p.name: p for p in classes[real]}
    for kw, value in kwargs.items():
        p = params.get(kw) if isinstance(kw, str) else None
        if p is None:
            hint = did_you_mean(str(kw), list(params))
            diags.append(error(codes.TORCH_NAME, f"{real} has no argument '{kw}'", path + (kw,), key=True,
                               help=f"did you mean '{hint}'?" if hint else f"{real} takes " + ", ".join(params)))
        elif p.kind.rstrip("?") == "python":
            diags.append(error(codes.TRAIN, f"{real} {kw} takes a Python object, which a spec cannot hold",
                               path + (kw,), key=True, help=f"leave {kw} out (torch's default: {p.default!r})"))
        elif not torchnames.accepts(p.kind, value):
            diags.append(error(codes.TRAIN, f"{real} {kw} must be {torchnames.describe(p.kind)}, got "
                               f"{yaml_text(value)}", path + (kw,),
                               help=f"torch's default is {yaml_text(p.default)}" if not p.required else None))
        elif (why := out_of_range(kw, value)) is not None:
            diags.append(error(codes.TRAIN, f"{real} {kw} {why}, got {yaml_text(value)}", path + (kw,),
                               help=(f"torch's default is {yaml_text(p.default)}; " if not p.required else "")
                               + "torch does not refuse it when the run starts: it would train on nan or on nonsense, "
                               "or fail in the middle of the run"))
    filled = torchnames.FILLED_IN.get(real, ())
    for p in classes[real]:
        if p.required and p.name not in kwargs and p.name not in filled:
            example = "0.1" if "number" in p.kind else "2" if p.kind.startswith("integer") else "..."
            diags.append(error(codes.TRAIN, f"{real} needs `{p.name}` ({torchnames.describe(p.kind)})", path,
                               key=True, help=f"write {kind}: {{{real}: {{{p.name}: {example}}}}}"))
    return real, diags


# The ranges of the arguments, of any loss, optimizer or scheduler, that torch takes outside their meaning and
# then trains on nan or on nonsense without a word (a negative learning rate climbs the loss, a momentum of
# 2 or an lr of 2**63 diverges, an eps of 1e308 stops learning): (lowest, highest, integer), each inclusive.
MAX_RATE = 100.0  # a learning rate, weight decay or eps: far beyond any real recipe (SGD's largest are about 10)
RATE, FRACTION, PERIOD, FACTOR = (0.0, MAX_RATE, False), (0.0, 1.0, False), (1, None, True), (0.0, None, False)
RANGES: dict[str, tuple[float | None, float | None, bool]] = {
    "lr": RATE, "max_lr": RATE, "base_lr": RATE, "eta_min": RATE, "min_lr": RATE, "weight_decay": RATE, "eps": RATE,
    "momentum": FRACTION, "dampening": FRACTION, "label_smoothing": FRACTION, "betas": FRACTION,
    "step_size": PERIOD, "T_max": PERIOD, "T_0": PERIOD,
    "gamma": FACTOR,
}


def out_of_range(name: str, value: Any) -> str | None:
    """Why a torch argument's value cannot be meant, or None: a number (or a list's) that is nan or infinite,
    or outside the RANGES of its name."""
    numbers = value if isinstance(value, list) else [value]
    numbers = [v for v in numbers if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if any(isinstance(v, float) and not math.isfinite(v) for v in numbers):
        return "must be a finite number (torch takes nan and infinity, and trains on nan)"
    lo, hi, whole = RANGES.get(name, (None, None, False))
    for v in numbers:
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            if hi is None:
                return f"must be {'an integer' if whole else 'a number'} ≥ {lo:g}"
            return f"must be a number from {lo:g} to {hi:g}"
    return None


def _unsupported(kind: str, name: str) -> str | None:
    if kind == "optimizer":
        return torchnames.UNSUPPORTED_OPTIMIZERS.get(name)
    if kind == "loss" and name not in SUPPORTED_LOSSES:
        return "it needs inputs other than (output, target)"
    if kind == "scheduler":
        if name in UNSUPPORTED_SCHEDULERS:
            return UNSUPPORTED_SCHEDULERS[name]
        python = [p.name for p in torchnames.table()["scheduler"][name] if p.required and p.kind == "python"]
        if python:
            return f"its {python[0]} is a Python function, which a spec cannot hold"
    return None


def _instead(kind: str) -> str:
    return {"optimizer": "use SGD, Adam or AdamW", "loss": "supported losses: " + ", ".join(SUPPORTED_LOSSES),
            "scheduler": "schedulers written with numbers only: " + WRITABLE_SCHEDULERS}[kind]


def _stale_table() -> str | None:
    """When the installed torch is a newer release than the table's: words saying so, else None.

    A name missing from the table may then be one that torch added, so it is a warning (`dlspec run`
    decides); an older torch lacks what the table lacks.  Asked only when a name is not found: reading the
    installed version costs a few milliseconds."""
    from importlib import metadata

    try:
        installed = metadata.version("torch").split("+")[0]
    except metadata.PackageNotFoundError:
        return None
    mine = torchnames.version()
    if _release(installed) <= _release(mine):
        return None
    return f"dlspec's table, from torch {mine}; torch {installed} is installed and `dlspec run` checks against it"


def _release(version: str) -> tuple[int, ...]:
    """'2.13.0' -> (2, 13); a version it cannot read counts as old."""
    try:
        return tuple(int(p) for p in version.split(".")[:2])
    except ValueError:
        return (0,)
