"""What a run learns: one registry entry per task (its options, its data contract, its runtime).

A task says what a batch is trained on and how it is judged; the trainer (dlspec.trainer) is the same for
all of them.  An entry (`TaskType`) holds

- its options (`train.task: {reconstruction: {noise: 0.3}}`), checked like a layer's arguments;
- `kind`: the loss-level task its targets are ("classification": class ids; "regression": real values),
  which picks the default loss and metrics and the checks of dlspec.contract;
- `facts`: the targets the loss sees, from the data's facts (reconstruction: the input itself);
- `contract`: its own static checks (torch-free, for `dlspec check`), as diagnostics at the right line;
- `runtime`: the torch side, "module:Class", imported only by `dlspec run` (see `Runtime`).

    classification  supervised: class ids (the default for labelled data)          tasks/supervised.py
    regression      supervised: real-valued targets                                 tasks/supervised.py
    reconstruction  the target is the input (optionally noised: a denoising AE)    tasks/reconstruction.py
    language_model  the next token at every step, causally (char_text's default)   tasks/language.py
    adversarial     a GAN: generator and discriminator (`networks:`), alternating   tasks/adversarial.py
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from ..data.base import DataFacts
from ..diagnostics import Diagnostic
from ..registry import Arg


def same_facts(facts: DataFacts, args: dict[str, Any]) -> DataFacts:
    return facts


def no_contract(checked: Any, facts: DataFacts, args: dict[str, Any], path: tuple[Any, ...]) -> list[Diagnostic]:
    return []


@dataclass
class TaskType:
    name: str
    doc: str
    kind: str  # "classification" | "regression": the targets the loss sees
    runtime: str  # "dlspec.tasks.module:Class"
    args: dict[str, Arg] = field(default_factory=dict)
    facts: Callable[[DataFacts, dict[str, Any]], DataFacts] = same_facts
    # (checked, facts after `facts`, resolved options, the path of train.task or ()) -> diagnostics
    contract: Callable[[Any, DataFacts, dict[str, Any], tuple[Any, ...]], list[Diagnostic]] = no_contract
    default_loss: str | None = None  # None: the kind's (CrossEntropyLoss, MSELoss)
    default_metrics: tuple[str, ...] | None = None  # None: the kind's
    replaces_output_check: bool = False  # its contract judges output vs target (the generic check is skipped)
    trial: bool = True  # dlspec run takes one trial step on a copy of the model first (dlspec.preflight)
    metrics: tuple[str, ...] | None = None  # the metrics train.metrics may name; None: the kind's
    row_metrics: tuple[str, ...] | None = None  # the columns of its rows (train_X, val_X); None: loss + metrics
    # (cfg, resolved options) -> (more torch objects for the runtime, in Session.resolved["task"]; diagnostics)
    resolve: Callable[[Any, dict[str, Any]], tuple[dict[str, Any], list[Diagnostic]]] | None = None
    # (the loaded Bundle, resolved options, the path of train.task or ()) -> diagnostics: its options against the
    # data as loaded, before the first step (a language model's prime against the text's vocabulary)
    loaded: Callable[[Any, dict[str, Any], tuple[Any, ...]], list[Diagnostic]] | None = None
    # (resolved options) -> the names of the networks (`networks:`) it trains; None: it trains one model
    networks: Callable[[dict[str, Any]], tuple[str, ...]] | None = None

    def make(self, trainer: Any, args: dict[str, Any]) -> Any:
        module, cls = self.runtime.split(":")
        return getattr(importlib.import_module(module), cls)(trainer, args)


TASKS: dict[str, TaskType] = {}


def register(entry: TaskType) -> TaskType:
    TASKS[entry.name] = entry
    return entry


def default_task(facts: DataFacts | None) -> str | None:
    """The task a run learns when `train.task` is left out: the data's own (char_text: language_model)."""
    if facts is None:
        return None
    if facts.name == "char_text":
        return "language_model"
    return facts.task


def chosen(cfg: Any, facts: DataFacts | None) -> tuple[TaskType | None, dict[str, Any]]:
    """The task entry of a run and its resolved options (defaults filled in)."""
    name, args = cfg.task if cfg.task is not None else (default_task(facts), {})
    entry = TASKS.get(name or "")
    if entry is None:
        return None, {}
    full = {k: a.default for k, a in entry.args.items()}
    full.update(args)
    return entry, full


def task_facts(entry: TaskType | None, facts: DataFacts, args: dict[str, Any]) -> DataFacts:
    """The facts the loss and the contract see: the entry's targets, with the kind as the task."""
    if entry is None:
        return facts
    return replace(entry.facts(facts, args), task=entry.kind)


from . import adversarial, language, reconstruction, supervised  # noqa: E402,F401  (fill the registry)
