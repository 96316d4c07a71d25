"""Supervised learning: the data's targets, as loaded (class ids or real values).  Today's classifiers and
regressors: the model's output against `y` through the loss."""

from __future__ import annotations

from typing import Any

from . import TaskType, register


class Supervised:
    """The runtime of every task whose batch is the data's (x, y): the model reads x, the loss compares with y.

    Subclasses change what the model reads and what it is compared with (`pair`), add lines to the
    console after an epoch (`after_epoch`) and write pictures into the run folder."""

    graph_ok = True  # the CUDA-graph path may capture its step (no host work, no new randomness)
    why_not_graph = ""
    own_step = False  # True: the task trains a batch itself (step, evaluate, setup, state, load, lr, meter)

    def __init__(self, tr: Any, args: dict[str, Any]):
        self.tr, self.args = tr, args

    def pair(self, x: Any, y: Any, training: bool) -> tuple[Any, Any]:
        """(what the model reads, what its output is compared with) for a batch of the data."""
        return x, y

    def start_eval(self) -> None:
        """Before each evaluation pass (a task with random inputs fixes them here)."""

    def describe(self) -> str:
        """A phrase for the run's `model` line (empty: nothing to say)."""
        return ""

    def baseline(self) -> dict[str, float]:
        """Reference numbers a run is judged against, for summary.json (e.g. the mean-image MSE)."""
        return {}

    def end_epoch(self) -> None:
        """After an epoch's batches (a task with its own schedulers steps them here)."""

    def after_epoch(self, run_dir: str, epoch: int, last: bool) -> list[str]:
        """Console lines after an epoch's row (and pictures written into run_dir)."""
        return []


register(TaskType("classification", "class ids: the model gives a score per class (CrossEntropyLoss)",
                  "classification", "dlspec.tasks.supervised:Supervised"))
register(TaskType("regression", "real-valued targets (MSELoss)", "regression", "dlspec.tasks.supervised:Supervised"))
