"""Stage 6b, batch: what a training step receives — named inputs and named targets — and how a data split's
samples become one (`Feed`).

A step never indexes the data itself: the trainer (an epoch's batches, each process's part of one), the
evaluation, the CUDA-graph engine (a gather inside the captured step), the trial step and predict all ask
the run's `Feed` (`feed_for`) for a `Batch`.  Today's data sets give one input and one target per sample (`Split.x`,
`Split.y`): the Feed names the input after the first input the step reads and the target `target`.  Data
that feeds several inputs by name (an image and its class label; tokens and their padding mask) is a Feed
that maps more of the data's tensors to more names; the steps read `inputs[name]` and `targets[name]` already.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from .data import Bundle, Split

TARGET = "target"  # the name of the one target today's data sets give


@dataclass
class Batch:
    """The samples of one step, by name: `inputs` as the model's inputs are named (`input` for a spec's
    `input:`), `targets` as the objective's terms name them (`target` for today's data).

    With several processes a batch is this process's part of a global batch: `share` is its loss weight (the
    part's size × processes / the global batch's: the averaged gradient is the whole batch's), `part` the
    part's [start, stop) within a global batch of n samples (what a step drawing noise per sample needs)."""

    inputs: dict[str, torch.Tensor]
    targets: dict[str, torch.Tensor] = field(default_factory=dict)
    share: float = 1.0
    part: tuple[int, int, int] | None = None

    @property
    def size(self) -> int:
        """The number of samples (of the first input)."""
        return int(next(iter(self.inputs.values())).shape[0])

    def to(self, device: torch.device) -> Batch:
        """The same batch on `device` (copies made without waiting, where the data is pinned)."""
        return Batch({k: v.to(device, non_blocking=True) for k, v in self.inputs.items()},
                     {k: v.to(device, non_blocking=True) for k, v in self.targets.items()}, self.share, self.part)


def feed_for(bundle: Bundle, inputs: Sequence[str]) -> Feed:
    """The Feed of a run: how its data set's samples become batches of the inputs its step reads (`inputs`, in
    the step's order).  Today's data sets give one input: the first name."""
    return Feed(inputs)


def moved(split: Split, device: torch.device) -> Split:
    """The split with every tensor on `device` (the trainer keeps a data set that fits there)."""
    return Split(split.x.to(device), split.y.to(device))


class Feed:
    """How a split's samples become a step's Batch: the data's one input under the first name the step reads,
    its targets as `target`."""

    def __init__(self, inputs: Sequence[str]):
        self.input = inputs[0] if inputs else "input"

    def of(self, x: torch.Tensor, y: torch.Tensor | None = None) -> Batch:
        """A batch of samples x (and their targets y)."""
        return Batch({self.input: x}, {} if y is None else {TARGET: y})

    def take(self, split: Split, idx: torch.Tensor) -> Batch:
        """The samples at indices idx (a training batch)."""
        return self.of(split.x[idx], split.y[idx])

    def gather(self, split: Split, idx: torch.Tensor) -> Batch:
        """The samples at indices idx by index_select: no host synchronisation, as a CUDA graph captures it."""
        return self.of(split.x.index_select(0, idx), split.y.index_select(0, idx))

    def rows(self, split: Split, start: int, stop: int) -> Batch:
        """Samples start to stop (an evaluation batch)."""
        return self.of(split.x[start:stop], split.y[start:stop])
