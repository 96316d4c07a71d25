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
    """One split of a data set: the samples `x` and targets `y` every task reads, and the named per-sample fields
    a spec's `inputs:` can read besides (a text's `lengths` and `padding_mask`, a CSV's column groups).

    Every tensor has the N samples first.  `aliases` gives x and y other names (a text's `tokens` are its x, a
    labelled image's `label` its y): the same tensor, no copy.  `padded` names the fields (and "x") that are
    right-padded along their first per-sample axis to the data set's max_length; `fields["lengths"]` holds each
    sample's real length, and `batch` cuts them to the longest sample of the batch."""

    x: Any  # torch.Tensor (N, *sample_shape), float32 (or int64 ids)
    y: Any  # torch.Tensor: (N,) int64 class ids, or (N, *target_shape) float32 / int64
    fields: dict[str, Any] = field(default_factory=dict)  # name -> torch.Tensor (N, *shape): more per-sample values
    aliases: dict[str, str] = field(default_factory=dict)  # name -> "x" or "y": another name of the samples/targets
    padded: tuple[str, ...] = ()  # "x" and field names padded along axis 1; their lengths in fields["lengths"]

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def names(self) -> list[str]:
        """Every name `get` answers: x, y, the aliases, the fields."""
        return ["x", "y", *self.aliases, *self.fields]

    def get(self, name: str) -> Any:
        """The whole tensor of one name (KeyError for a name the split does not have)."""
        name = self.aliases.get(name, name)
        if name == "x":
            return self.x
        if name == "y":
            return self.y
        return self.fields[name]

    def take(self, index: Any) -> Split:
        """The samples at `index` (a tensor of indices or a mask), every field with them, aliases and padding kept."""
        return Split(self.x[index], self.y[index], {k: v[index] for k, v in self.fields.items()}, dict(self.aliases),
                     self.padded)

    def to(self, device: Any) -> Split:
        return Split(self.x.to(device), self.y.to(device), {k: v.to(device) for k, v in self.fields.items()},
                     dict(self.aliases), self.padded)

    def batch(self, index: Any, names: list[str] | None = None, trim: bool = True) -> dict[str, Any]:
        """The named tensors (default: every name) of the samples at `index`; with `trim`, the padded ones cut to
        the batch's longest sample (at least 1 step), so a batch of short texts does not carry max_length padding.

        The cut reads the lengths of the batch (a device-to-host copy on a GPU), so its shape varies from batch to
        batch: a step that is captured as a CUDA graph takes trim=False."""
        names = self.names() if names is None else names
        cut = None
        if trim and any(self.aliases.get(n, n) in self.padded for n in names):
            cut = max(1, int(self.fields["lengths"][index].max()))
        out = {}
        for n in names:
            t = self.get(n)[index]
            out[n] = t[:, :cut] if cut is not None and self.aliases.get(n, n) in self.padded else t
        return out


def dtype_name(t: Any) -> str:
    """A tensor's dtype in the spec's words: float, long (integers) or bool."""
    if t.is_floating_point():
        return "float"
    return "bool" if str(t.dtype) == "torch.bool" else "long"


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
    vocab: list[str] | None = None  # char_text: the characters; text_classes: the tokens (0 <pad>, 1 <unk>); id order
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

    def field_facts(self) -> dict[str, FieldFacts]:
        """DataFacts.fields of the data as loaded: each alias and field's per-sample shape and dtype."""
        t = self.train
        out = {n: FieldFacts(tuple(int(d) for d in t.get(n).shape[1:]), dtype_name(t.get(n)), t.aliases[n],
                             t.aliases[n] in t.padded) for n in t.aliases}
        out.update({n: FieldFacts(tuple(int(d) for d in v.shape[1:]), dtype_name(v), None, n in t.padded)
                    for n, v in t.fields.items()})
        return out


@dataclass(frozen=True)
class FieldFacts:
    """One named per-sample value a data set feeds (what a spec's `inputs:` entry of that name reads).

    shape is per sample (() for one value per sample, a None size not known without reading the data; None
    for the whole shape); dtype is "float", "long" or "bool".  `of` says it is the samples ("x") or the targets
    ("y") under another name.  `padded`: right-padded along its first axis to the shape's size, and cut per
    batch to the batch's longest sample (Split.batch): a spec reads it with a symbol there, e.g. [T]."""

    shape: tuple[int | None, ...] | None
    dtype: str | None
    of: str | None = None  # "x" | "y" | None
    padded: bool = False
    doc: str = ""


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
    # the named fields a spec's `inputs:` can read, besides x and y (which every data set has), by name
    fields: dict[str, FieldFacts] = field(default_factory=dict)
    ids_help: str | None = None  # the help when a spec reads integer ids and this data gives float features

    def field_of(self, name: str) -> FieldFacts | None:
        """The facts of one name: "x", "y" or one of `fields` (None for a name the data set does not feed)."""
        if name == "x":
            return FieldFacts(self.sample_shape, self.x_dtype)
        if name == "y":
            return FieldFacts(self.target_shape, self.target_dtype)
        return self.fields.get(name)


def labelled_images(sample_shape: tuple[int | None, ...] | None) -> dict[str, FieldFacts]:
    """The fields of a labelled image data set: `image` (its x) and `label` (its y), for conditional models."""
    return {"image": FieldFacts(sample_shape, "float", "x", doc="the image, as x"),
            "label": FieldFacts((), "long", "y", doc="the class id, as y (an input of a conditional model)")}


IMAGE_ALIASES = {"image": "x", "label": "y"}


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


__all__ = ["Arg", "Bool", "Int", "Seed", "SEED_MAX", "Bundle", "Split", "DataError", "DataFacts", "FieldFacts", "DatasetType",
           "DATASETS", "register", "data_root", "reshaped", "labelled_images", "IMAGE_ALIASES", "dtype_name"]


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
    fields = sum(v.element_size() * v.nelement() for t in (b.train, b.test) for v in t.fields.values())
    return xs + fields + sum(t.y.element_size() * t.y.nelement() for t in (b.train, b.test))


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

    def moved(t: Split) -> Split:
        return Split(convert(t.x), t.y.to(device), {k: v.to(device) for k, v in t.fields.items()}, dict(t.aliases),
                     t.padded)

    b.train, b.test = moved(b.train), moved(b.test)
    b.pixels = None
    return b
