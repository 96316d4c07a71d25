"""The user's own inputs for `dlspec predict --input`: image files, folders of them, CSV rows, .npy arrays.

Each becomes samples of the model's input shape, prepared as the data set's own samples are:

* an image (.png .jpg .jpeg .bmp .gif .webp .tif .tiff): gray or RGB as the model's channels say, resized to
  its H×W, scaled and normalised as the data set's images (show.load_image);
* a folder: its images, sorted, in subfolders too; a subfolder named after one of the data set's classes
  (torchvision's ImageFolder layout, `digits/3/a.png`) gives the image that target;
* a CSV file: one sample per row of numbers (a header row is skipped).  For a spec trained on a `csv` data
  set, a header naming its feature columns picks them, the target column (when present) is the target, and
  the features are normalised as the training file's were; otherwise a row holds the sample's values in
  order, as the model reads them;
* a .npy: one sample (the input shape), or a batch of them (N, *shape); uint8 values are pixels, scaled
  and normalised as images are, any other numbers are taken as the model reads them.

Every file is read by dlspec.readers, within its bounds (pixels, bytes, rows; docs/limits.md), a FIFO or a
device refused before anything blocks on it and a FIFO in a folder skipped.  Values that are not finite
numbers are refused with their count and the place of the first; for a model of token ids, ids outside
0 .. n - 1 (id_range: its Embedding's num_embeddings, or the data set's vocabulary) are refused before torch
sees them.  At most MAX_SAMPLES samples in all, and MAX_BYTES of them as float32 (InputError beyond, before a
file is read in full).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from .safeio import shown

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
MAX_SAMPLES = 100_000
MAX_BYTES = 2**30  # the samples of one predict, as float32: 1 GiB


def cap(bundle: Any) -> int:
    """How many samples of this model's input one predict takes: MAX_SAMPLES, fewer for large inputs."""
    import math

    return max(1, min(MAX_SAMPLES, MAX_BYTES // (4 * max(1, math.prod(bundle.sample_shape)))))


class InputError(ValueError):
    """An input that cannot be a sample of this model: one line, naming the file."""


@dataclass
class Sample:
    source: str  # file, file:line, file[i]
    x: Any  # torch.Tensor of the model's per-sample shape
    target: Any = None  # a class index or a value, when the input says


def _norm(bundle: Any) -> tuple[list[float] | None, list[float] | None]:
    norm = bundle.info.get("normalize") if isinstance(bundle.info.get("normalize"), dict) else {}
    return norm.get("mean"), norm.get("std")


def _normalise(t: Any, bundle: Any) -> Any:
    from .show import normalised

    return normalised(t, *_norm(bundle))


def _image(path: str, bundle: Any) -> Any:
    from .show import ShowError, load_image

    mean, std = _norm(bundle)
    try:
        return load_image(path, bundle.sample_shape, float(bundle.info.get("scale") or 255), mean, std)
    except ShowError as e:
        raise InputError(str(e).replace("--image needs", "image inputs need")) from None


def id_range(model: Any, bundle: Any) -> tuple[int, str] | None:
    """The token ids a model reads, 0 .. n - 1, and what says so: its first Embedding's num_embeddings, or the
    data set's vocabulary when that is smaller (an id beyond it was never seen in training); None when
    neither is known (ids are then only refused below 0)."""
    from torch import nn

    known = []
    for name, m in model.named_modules():
        if isinstance(m, nn.Embedding):
            known.append((int(m.num_embeddings), f"layer {name} Embedding has num_embeddings {m.num_embeddings}"))
            break
    vocab = getattr(bundle, "vocab", None) if bundle is not None else None
    if vocab:
        known.append((len(vocab), f"the data set's vocabulary has {len(vocab)} tokens"))
    return min(known) if known else None


def _ids(a: Any, path: str, ids: tuple[int, str] | None) -> Any:
    """Token ids as int64, refused (ReadError) unless whole numbers in the model's range."""
    import numpy as np

    from .readers import check_ids

    check_ids(a, path, *(ids or (None, "")))
    return a.astype(np.int64)


def _folder(path: str, bundle: Any, ids: tuple[int, str] | None) -> list[Sample]:
    from .safeio import FileRefused, regular_entries

    classes = {c: i for i, c in enumerate(bundle.classes or [])}
    files = []
    for root, dirs, _ in os.walk(path):
        dirs.sort()
        try:
            names = regular_entries(root)  # a FIFO, a device or a socket named x.png is never opened
        except FileRefused as e:
            raise InputError(str(e)) from None
        for n in names:
            if n.lower().endswith(IMAGE_SUFFIXES):
                files.append(os.path.join(root, n))
                if len(files) > cap(bundle):
                    raise InputError(f"{shown(path)} holds more than {cap(bundle):,} images; give fewer at a time")
    if not files:
        raise InputError(f"{shown(path)} holds no image files ({', '.join(IMAGE_SUFFIXES)})")
    out = []
    for f in files:
        parent = os.path.basename(os.path.dirname(f))
        target = None
        if os.path.normpath(os.path.dirname(f)) != os.path.normpath(path):  # digits/3/a.png: class "3" (or id 3)
            target = classes.get(parent)
            if target is None and parent.isdigit() and int(parent) < len(classes):
                target = int(parent)
        out.append(Sample(f, _image(f, bundle), target))
    return out


def _npy(path: str, bundle: Any, ids: tuple[int, str] | None) -> list[Sample]:
    """One sample or a batch of them, the header checked (shape, count) before the data is read."""
    import numpy as np
    import torch

    from .readers import ArrayHeader, ReadError, check_finite, read_npy

    shape = tuple(bundle.sample_shape)

    def accept(h: ArrayHeader) -> None:
        if h.shape == shape:
            return
        if h.shape[1:] != shape:
            raise ReadError(f"{shown(path)} holds an array of shape {list(h.shape)}; the model reads samples of shape "
                            f"{list(shape)} (one, or a batch [N, {', '.join(map(str, shape))}])")
        if h.shape[0] == 0:
            raise ReadError(f"{shown(path)} holds no samples: its shape is {list(h.shape)}")
        if h.shape[0] > cap(bundle):
            raise ReadError(f"{shown(path)} holds {h.shape[0]:,} samples; at most {cap(bundle):,} at a time")

    try:
        a = read_npy(path, accept)  # checked as stored: a place named is the file's own
        pixels = a.dtype == np.uint8
        if bundle.x_dtype == "long":
            a = _ids(a, shown(path), ids)
        else:
            check_finite(a, shown(path))
            a = a.astype(np.float32)
        t = torch.from_numpy(a[None] if a.shape == shape else a)
        if bundle.x_dtype != "long" and pixels and t.dim() > 1:
            t = _normalise(t / float(bundle.info.get("scale") or 255), bundle)
    except ReadError as e:
        raise InputError(str(e)) from None
    return [Sample(f"{path}[{i}]" if len(t) > 1 else path, t[i]) for i in range(len(t))]


def _csv(path: str, bundle: Any, ids: tuple[int, str] | None) -> list[Sample]:
    """CSV rows, read as they stream (readers.CsvReader): at most cap(bundle) of them."""
    import numpy as np
    import torch

    from .data.files import _has_header
    from .readers import CsvReader, ReadError, is_number

    try:
        with CsvReader(path, ",", max_rows=cap(bundle)) as reader:
            header = _has_header(reader.head, "auto")
            first = reader.head[0][1]
            if len(reader.head) == 1 and not any(is_number(c) for c in first):
                raise InputError(f"{shown(path)} has a header row but no data rows")
            names = first if header else None
            features = bundle.info.get("features") if bundle.name == "csv" else None
            target_col = None
            if features and names and all(f in names for f in features):
                cols = [names.index(f) for f in features]
                target = bundle.info.get("target")
                target_col = names.index(target) if target in names else None
                table = True
            else:
                n = int(np.prod(bundle.sample_shape))
                if reader.width != n:
                    what = (f"the {len(features)} feature columns of the training file ({', '.join(features[:5])}"
                            f"{', ...' if len(features) > 5 else ''}) by name in a header row, or " if features else "")
                    raise InputError(f"{shown(path)} has {reader.width} columns; the model reads {n} values a sample: "
                                     f"give {what}{n} numbers a row")
                cols, table = list(range(reader.width)), False
            labels = [repr(names[j]) if names else str(j) for j in cols]
            long = bundle.x_dtype == "long"
            t = reader.table(header, cols, labels, target_col, dtype="float64" if long else "float32")
        if len(t.lines) > cap(bundle):
            raise InputError(f"{shown(path)} has {len(t.lines):,} rows; at most {cap(bundle):,} at a time")
        x = torch.from_numpy(_ids(t.x, shown(path), ids) if long else t.x)
    except ReadError as e:
        raise InputError(str(e)) from None
    out = []
    classes = {c: i for i, c in enumerate(bundle.classes or [])}
    for i, line in enumerate(t.lines):
        v = x[i].reshape(bundle.sample_shape)
        if table:
            v = _normalise(v, bundle)
        tgt: int | float | None = None
        if target_col is not None and t.text is not None:
            cell = t.text[i]
            if bundle.classes:
                key = cell if cell in classes else (str(int(float(cell))) if is_number(cell) and
                                                    float(cell).is_integer() else cell)
                tgt = classes.get(key)
            elif is_number(cell):
                tgt = float(cell)
        out.append(Sample(f"{path}:{line}", v, tgt))
    return out


def collect(paths: list[str], bundle: Any, ids: tuple[int, str] | None = None) -> list[Sample]:
    """The samples of every input, in order; InputError for the first that cannot be read as this model's.
    ids: the range of token ids the model reads (id_range), for a model of ids."""
    out: list[Sample] = []
    for p in paths:
        if os.path.isdir(p):
            out += _folder(p, bundle, ids)
        elif not os.path.lexists(p):
            raise InputError(f"no file or folder {shown(p)}")
        elif p.lower().endswith(".npy"):
            out += _npy(p, bundle, ids)
        elif p.lower().endswith((".csv", ".tsv", ".txt")):
            out += _csv(p, bundle, ids)
        elif p.lower().endswith(IMAGE_SUFFIXES):
            out.append(Sample(p, _image(p, bundle)))
        else:
            raise InputError(f"{shown(p)}: not an image ({', '.join(IMAGE_SUFFIXES)}), a .csv, a .npy or a folder")
        if len(out) > cap(bundle):
            raise InputError(f"more than {cap(bundle):,} samples in all; give fewer at a time")
    return out
