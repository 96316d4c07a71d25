"""What a run learns: one registry entry per task (its options, its data contract, its runtime).

A task says what a batch is trained on and how it is judged; the trainer (dlspec.trainer) is the same for
all of them.  An entry (`TaskType`) holds

- its options (`train.task: {reconstruction: {noise: 0.3}}`), checked like a layer's arguments;
- `kind`: the loss-level task its targets are ("classification": class ids; "regression": real values),
  which picks the default loss and metrics and the checks of dlspec.contract;
- `facts`: the targets the loss sees, from the data's facts (reconstruction: the input itself);
- `contract`: its own static checks (torch-free, for `dlspec check`), as diagnostics at the right line;
- `runtime`: the torch side, "module:Class", imported only by `dlspec run` (dlspec.tasks.supervised.Supervised:
  what a batch trains on, pictures and text after an epoch), made with a `dlspec.step.Context`, not the trainer;
- `step`: the step it trains with, "module:Class" (dlspec.step: `OptimizerStep`, one objective and one optimizer;
  a GAN's `AdversarialStep`, two networks and two optimizers), made once per run and held by the runtime;
- what the commands do with it: `default_for` (the data sets whose default task it is), `predict` and
  `generate` (what `dlspec predict` and `dlspec generate` make of its models), `own_inputs` (`predict --input`),
  `networks` (the networks of `networks:` it trains: a spec of several networks needs such a task).

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
from typing import TYPE_CHECKING, Any

from ..data.base import DataFacts
from ..diagnostics import Diagnostic
from ..registry import Arg

if TYPE_CHECKING:
    from ..step import Context
    from .supervised import Supervised


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
    step: str = "dlspec.step:OptimizerStep"  # the step it trains with ("module:Class", imported by dlspec run only)
    default_for: tuple[str, ...] = ()  # the data sets whose default task it is (train.task left out)
    predict: str | None = "outputs"  # dlspec predict: "outputs" (each test sample's output against its target),
    # "reconstructions" (a picture of inputs and outputs, and each one's MSE); None: it has nothing to predict
    own_inputs: bool = False  # dlspec predict --input takes its models (own files, prepared as the data's samples)
    generate: str | None = "text"  # dlspec generate: "text" (characters from a model of a data set with a vocabulary:
    # dlspec.generate refuses other data), "samples" (a generator's picture); None: it has nothing to generate

    def make(self, ctx: Context, args: dict[str, Any]) -> Supervised:
        """Its runtime for a run (`ctx`), holding the run's one step."""
        runtime = _load(self.runtime)(ctx, args)
        runtime.step = _load(self.step)(ctx, runtime)
        return runtime


def _load(where: str) -> Any:
    module, name = where.split(":")
    return getattr(importlib.import_module(module), name)


TASKS: dict[str, TaskType] = {}


def register(entry: TaskType) -> TaskType:
    TASKS[entry.name] = entry
    return entry


def default_task(facts: DataFacts | None) -> str | None:
    """The task a run learns when `train.task` is left out: the one whose entry names the data set in its
    `default_for` (char_text: language_model), else the data's own (classification, regression)."""
    if facts is None:
        return None
    return next((t.name for t in TASKS.values() if facts.name in t.default_for), facts.task)


def names_where(test: Callable[[TaskType], Any]) -> list[str]:
    """The names of the tasks whose entry passes `test` (the tasks that generate text, that train networks ...)."""
    return [t.name for t in TASKS.values() if test(t)]


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
