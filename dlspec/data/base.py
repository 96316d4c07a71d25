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

SEED_MAX = 2**32 - 1  # every seed (train.seed, a data set's seed): what numpy's RandomState takes


def Seed(default: int, doc: str) -> Arg:
    """A seed argument: an integer 0 .. SEED_MAX."""
    return Arg(Int(0, SEED_MAX), default, doc=doc)


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
class Pixels:
    """How uint8 images (N, C, H, W) become the float32 samples: x * scale, then (x - mean) / std per
    channel, then each sample reshaped to `shape` — the float loader's own arithmetic, in the same order."""

    scale: float | None
    mean: list[float] | None
    std: list[float] | None
    shape: tuple[int, ...] | None


@dataclass
class Bundle:
    """A loaded dataset: whole tensors in memory, normalised once.

    A loader's `raw` form (DatasetType.raw) leaves the images uint8 and says how to convert them in
    `pixels`; `materialize` does that where the training runs (on the GPU: a quarter of the bytes to copy,
    and the normalisation there)."""

    name: str
    train: Split
    test: Split
    task: str  # "classification" | "regression"
    num_classes: int | None = None
    classes: list[str] | None = None  # class names, when known
    vocab: list[str] | None = None  # char_text: the characters, id order
    info: dict[str, Any] = field(default_factory=dict)  # what was loaded from where (for summary.json)
    pixels: Pixels | None = None  # set: train.x / test.x are uint8 images still to be materialized

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
class DataFacts:
    """What the data↔model↔loss contract needs to know about a dataset (no tensors).

    Known statically, from the dataset's options alone (`DatasetType.facts`, used by `dlspec check`), or from
    the loaded data (`dlspec run`).  None is "not known without reading the data": a size (a CSV's column
    count, a text's vocabulary), the task, the class count; the contract checks what is known."""

    name: str
    sample_shape: tuple[int | None, ...] | None
    x_dtype: str | None  # "float" | "long"
    target_shape: tuple[int | None, ...] | None  # per sample: () for class ids
    target_dtype: str | None  # "long" | "float"
    task: str | None  # "classification" | "regression"
    num_classes: int | None
    can_reshape: bool = True  # the dataset has a `shape:` option that reshapes its samples


@dataclass
class DatasetType:
    name: str
    args: dict[str, Arg]
    load: Callable[[dict[str, Any], str], Bundle]  # (resolved args, data root) -> Bundle
    doc: str = ""
    needs: str | None = None  # an optional package it needs ("torchvision")
    raw: Callable[[dict[str, Any], str], Bundle] | None = None  # the same data with uint8 images (Bundle.pixels)
    facts: Callable[[dict[str, Any]], DataFacts] | None = None  # (resolved args) -> what is known without loading


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


__all__ = ["Arg", "Bool", "Int", "Seed", "SEED_MAX", "Bundle", "Split", "DataError", "DataFacts", "DatasetType", "DATASETS", "register",
           "data_root", "reshaped"]


def reshaped(shape: tuple[int, ...], to: Any) -> tuple[int | None, ...]:
    """`shape` reshaped as a dataset's `shape:` option says (one size may be -1); unknown sizes when the
    element count does not allow it (the loader reports that, with the data at hand)."""
    if to is None:
        return shape
    to = [int(d) for d in to]
    total = 1
    for d in shape:
        total *= d
    known = 1
    for d in to:
        if d != -1:
            known *= d
    if to.count(-1) == 1 and known and total % known == 0:
        return tuple(total // known if d == -1 else d for d in to)
    return tuple(None if d == -1 else d for d in to)


def float_bytes(b: Bundle) -> int:
    """The bytes of the training and test samples once they are float32 (and the targets)."""
    xs = sum(4 * t.x.nelement() if b.pixels is not None else t.x.element_size() * t.x.nelement()
             for t in (b.train, b.test))
    return xs + sum(t.y.element_size() * t.y.nelement() for t in (b.train, b.test))


def materialize(b: Bundle, device: Any) -> Bundle:
    """uint8 images → the float32 samples, computed on `device` (a raw Bundle; others are returned as
    they are).  Bit for bit the float loader's values: the same float32 operations in the same order."""
    import torch

    p = b.pixels
    if p is None:
        return b

    def convert(x: Any) -> Any:
        f = x.to(device).float()
        if p.scale is not None:
            f.mul_(torch.tensor(p.scale, dtype=torch.float32, device=f.device))
        if p.mean is not None and p.std is not None:
            view = (1, len(p.mean)) + (1,) * (f.dim() - 2)
            f.sub_(torch.tensor(p.mean, dtype=torch.float32, device=f.device).reshape(view))
            f.div_(torch.tensor(p.std, dtype=torch.float32, device=f.device).reshape(view))
        return f.reshape(len(f), *p.shape) if p.shape is not None else f

    b.train = Split(convert(b.train.x), b.train.y.to(device))
    b.test = Split(convert(b.test.x), b.test.y.to(device))
    b.pixels = None
    return b
