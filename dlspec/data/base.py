"""The dataset registry and the in-memory form every dataset is loaded into.

Like the layer registry: one entry per dataset (its argument schema and its loader), so `train.data` is
validated with the same machinery (line:col, did-you-mean) and a new dataset touches one place.
Entries import numpy/torch only inside their loaders: `dlspec check` stays torch-free.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..registry import Arg, Bool, Int, Kind, Optional_


class DataError(Exception):
    """Bad or missing data: becomes a diagnostic at the `train.data` line, never a traceback."""

    def __init__(self, message: str, help: str | None = None, arg: str | None = None, notes: list[str] | None = None):
        super().__init__(message)
        self.message, self.help, self.arg, self.notes = message, help, arg, list(notes or [])


@dataclass
class Split:
    x: Any  # torch.Tensor (N, *sample_shape), float32 (or int64 ids)
    y: Any  # torch.Tensor: (N,) int64 class ids, or (N, *target_shape) float32 / int64

    def __len__(self) -> int:
        return int(self.x.shape[0])


@dataclass
class Bundle:
    """A loaded dataset: whole tensors in memory, normalised once."""

    name: str
    train: Split
    test: Split
    task: str  # "classification" | "regression"
    num_classes: int | None = None
    classes: list[str] | None = None  # class names, when known
    vocab: list[str] | None = None  # char_text: the characters, id order
    info: dict[str, Any] = field(default_factory=dict)  # what was loaded from where (for summary.json)

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.train.x.shape[1:])

    @property
    def target_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.train.y.shape[1:])

    @property
    def x_dtype(self) -> str:
        return "long" if not self.train.x.is_floating_point() else "float"


@dataclass
class DatasetType:
    name: str
    args: dict[str, Arg]
    load: Callable[[dict[str, Any], str], Bundle]  # (resolved args, data root) -> Bundle
    doc: str = ""
    needs: str | None = None  # an optional package it needs ("torchvision")


DATASETS: dict[str, DatasetType] = {}


def register(entry: DatasetType) -> DatasetType:
    entry.args = {**entry.args, **{k: v for k, v in COMMON_ARGS.items() if k not in entry.args}}
    DATASETS[entry.name] = entry
    return entry


class Subset(Kind):
    """{train: N, test: M}: use the first N training and M test samples (after shuffling with the dataset's seed)."""

    text = "a mapping {train: N, test: M} of positive integers"

    def check(self, v: Any) -> str | None:
        if isinstance(v, dict) and v and all(k in ("train", "test") for k in v) and \
                all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in v.values()):
            return None
        return f"must be {self.text}"


COMMON_ARGS: dict[str, Arg] = {
    "subset": Arg(Optional_(Subset()), None, doc="use only part of the data (quick runs, tests)"),
}


def data_root(cli_root: str | None = None) -> str:
    """--data-root, then $DLSPEC_DATA, then ./data."""
    return cli_root or os.environ.get("DLSPEC_DATA") or "data"


__all__ = ["Arg", "Bool", "Int", "Bundle", "Split", "DataError", "DatasetType", "DATASETS", "register", "data_root"]
