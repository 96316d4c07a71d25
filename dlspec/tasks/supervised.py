"""Supervised learning: the data's targets, as loaded (class ids or real values).  Today's classifiers and
regressors: the model's output against `y` through the loss."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import TaskType, register

if TYPE_CHECKING:
    from ..batch import Batch
    from ..step import Context, Step


class Supervised:
    """The runtime of a task: what a batch trains on and what a run shows of it (every task of one network
    uses it as it is, or a subclass of it).  Made by the entry (TaskType.make) with the run's `Context` — the
    narrow view of the run it may read — and holding the run's step (`step`, the one its entry chooses).

    Subclasses change what the model reads and what it is compared with (`prepare`), add lines to the
    console after an epoch (`after_epoch`) and write pictures into the run folder."""

    why_not_graph = ""  # why a CUDA graph cannot capture a step over prepare (new randomness, host work); "": it can
    step: Step  # the run's step (TaskType.make)

    def __init__(self, ctx: Context, args: dict[str, Any]):
        self.ctx, self.args = ctx, args

    def prepare(self, batch: Batch, training: bool) -> Batch:
        """The batch as the step trains on it: what the model reads, what its outputs are compared with."""
        return batch

    def start_eval(self) -> None:
        """Before each evaluation pass (a task with random inputs fixes them here)."""

    def describe(self) -> str:
        """A phrase for the run's `model` line (empty: nothing to say)."""
        return ""

    def baseline(self) -> dict[str, float]:
        """Reference numbers a run is judged against, for summary.json (e.g. the mean-image MSE)."""
        return {}

    def after_epoch(self, run_dir: str, epoch: int, last: bool) -> list[str]:
        """Console lines after an epoch's row (and pictures written into run_dir)."""
        return []


register(TaskType("classification", "class ids: the model gives a score per class (CrossEntropyLoss)",
                  "classification", "dlspec.tasks.supervised:Supervised", own_inputs=True))
register(TaskType("regression", "real-valued targets (MSELoss)", "regression", "dlspec.tasks.supervised:Supervised",
                  own_inputs=True))
