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

At most MAX_SAMPLES samples in all, and MAX_BYTES of them as float32 (InputError beyond, before a file is
read in full).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

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


def _folder(path: str, bundle: Any) -> list[Sample]:
    classes = {c: i for i, c in enumerate(bundle.classes or [])}
    files = []
    for root, dirs, names in os.walk(path):
        dirs.sort()
        for n in sorted(names):
            if n.lower().endswith(IMAGE_SUFFIXES):
                files.append(os.path.join(root, n))
                if len(files) > cap(bundle):
                    raise InputError(f"{path} holds more than {cap(bundle):,} images; give fewer at a time")
    if not files:
        raise InputError(f"{path} holds no image files ({', '.join(IMAGE_SUFFIXES)})")
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


def _npy(path: str, bundle: Any) -> list[Sample]:
    import numpy as np
    import torch

    shape = tuple(bundle.sample_shape)
    try:
        a = np.load(path, allow_pickle=False, mmap_mode="r")
    except (OSError, ValueError) as e:
        raise InputError(f"cannot read {path} as a .npy array ({type(e).__name__}: {str(e)[:120]})") from None
    if a.dtype.kind not in "biuf":
        raise InputError(f"{path} holds {a.dtype} values, not numbers")
    if tuple(a.shape) == shape:
        a = a[None]
    if tuple(a.shape[1:]) != shape:
        raise InputError(f"{path} holds an array of shape {list(a.shape)}; the model reads samples of shape "
                         f"{list(shape)} (one, or a batch [N, {', '.join(map(str, shape))}])")
    if len(a) > cap(bundle):
        raise InputError(f"{path} holds {len(a):,} samples; at most {cap(bundle):,} at a time")
    pixels = a.dtype == np.uint8
    t = torch.from_numpy(np.array(a))  # a copy of the mapped file
    if bundle.x_dtype == "long":
        t = t.long()
    else:
        t = t.float()
        if pixels:
            t = _normalise(t / float(bundle.info.get("scale") or 255), bundle) if t.dim() > 1 else t
    if t.is_floating_point() and not bool(torch.isfinite(t).all()):
        raise InputError(f"{path} holds nan or infinite values")
    return [Sample(f"{path}[{i}]" if len(t) > 1 else path, t[i]) for i in range(len(t))]


def _csv(path: str, bundle: Any) -> list[Sample]:
    import numpy as np
    import torch

    from .data.base import DataError
    from .data.files import _has_header, _read_table
    from .data.files import _is_number as _number

    try:
        rows = _read_table(path, ",")
    except DataError as e:
        raise InputError(str(e)) from None
    header = _has_header(rows, "auto")
    names = rows[0][1] if header else None
    body = rows[1:] if header else rows
    if len(body) > cap(bundle):
        raise InputError(f"{path} has {len(body):,} rows; at most {cap(bundle):,} at a time")
    features = bundle.info.get("features") if bundle.name == "csv" else None
    target_col = None
    if features and names and all(f in names for f in features):
        cols = [names.index(f) for f in features]
        target = bundle.info.get("target")
        target_col = names.index(target) if target in names else None
        table = True
    else:
        n = int(np.prod(bundle.sample_shape))
        width = len(rows[0][1])
        if width != n:
            what = (f"the {len(features)} feature columns of the training file ({', '.join(features[:5])}"
                    f"{', ...' if len(features) > 5 else ''}) by name in a header row, or " if features else "")
            raise InputError(f"{path} has {width} columns; the model reads {n} values a sample: give {what}"
                             f"{n} numbers a row")
        cols, table = list(range(width)), False
    out = []
    classes = {c: i for i, c in enumerate(bundle.classes or [])}
    for line, r in body:
        try:
            v = np.array([float(r[j]) for j in cols], dtype=np.float32)
        except ValueError:
            bad = next(r[j] for j in cols if not _number(r[j]))
            raise InputError(f"{path} line {line}: {bad!r} is not a number") from None
        if not np.isfinite(v).all():
            raise InputError(f"{path} line {line}: nan or infinite values")
        t = torch.from_numpy(v).reshape(bundle.sample_shape)
        if table:
            t = _normalise(t, bundle)
        tgt: int | float | None = None
        if target_col is not None:
            cell = r[target_col]
            if bundle.classes:
                key = cell if cell in classes else (str(int(float(cell))) if _number(cell) and float(cell).is_integer()
                                                     else cell)
                tgt = classes.get(key)
            elif _number(cell):
                tgt = float(cell)
        out.append(Sample(f"{path}:{line}", t.long() if bundle.x_dtype == "long" else t, tgt))
    return out


def collect(paths: list[str], bundle: Any) -> list[Sample]:
    """The samples of every input, in order; InputError for the first that cannot be read as this model's."""
    out: list[Sample] = []
    for p in paths:
        if os.path.isdir(p):
            out += _folder(p, bundle)
        elif not os.path.exists(p):
            raise InputError(f"no file or folder {p}")
        elif p.lower().endswith(".npy"):
            out += _npy(p, bundle)
        elif p.lower().endswith((".csv", ".tsv", ".txt")):
            out += _csv(p, bundle)
        elif p.lower().endswith(IMAGE_SUFFIXES):
            out.append(Sample(p, _image(p, bundle)))
        else:
            raise InputError(f"{p}: not an image ({', '.join(IMAGE_SUFFIXES)}), a .csv, a .npy or a folder")
        if len(out) > cap(bundle):
            raise InputError(f"more than {cap(bundle):,} samples in all; give fewer at a time")
    return out
