"""MNIST and Fashion-MNIST from their IDX files, plus the helpers every loader module shares.

The files are read in torchvision's layout, so data downloaded with torchvision just works:

    ROOT/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]
    ROOT/FashionMNIST/raw/...

Whole arrays are read with numpy (gzip or raw), checked (magic number, dimensions, sizes, label range),
scaled and normalised once; no per-sample work.  numpy and torch are imported inside the functions only:
importing this module (as `dlspec check` does) stays torch-free.
"""

from __future__ import annotations

import os
import struct
import time
from typing import Any

from ..diagnostics import did_you_mean
from ..registry import REQUIRED, Arg, Bool, FloatList, Int, IntList, Kind, Optional_
from .base import DATASETS, Bundle, DataError, DatasetType, Split, register

# --- helpers shared by the loader modules -------------------------------------------------------------


class Text(Kind):
    """A non-empty string (a path, a key, a column name)."""

    text = "a non-empty string"

    def check(self, v: Any) -> str | None:
        return None if isinstance(v, str) and v else f"must be {self.text}"


class Normalize(Kind):
    """null (none), true (the dataset's standard mean/std, or the training split's), or [[means], [stds]]."""

    text = "null, true, or [[means], [stds]] (one value per channel, or one for all)"

    def check(self, v: Any) -> str | None:
        if v is None or isinstance(v, bool):
            return None
        if isinstance(v, (list, tuple)) and len(v) == 2 and all(isinstance(p, (list, tuple)) for p in v):
            means, stds = v
            if FloatList().check(list(stds)) is not None:
                return "must have positive standard deviations: [[means], [stds]]"
            if not means or not all(isinstance(m, (int, float)) and not isinstance(m, bool) for m in means):
                return "must have numbers as means: [[means], [stds]]"
            if len(means) != len(stds):
                return f"must have as many means as standard deviations, got {len(means)} and {len(stds)}"
            return None
        return f"must be {self.text}"

    def normalize(self, v: Any) -> Any:
        if v is None or v is False:
            return None
        if v is True:
            return True
        return (tuple(float(m) for m in v[0]), tuple(float(s) for s in v[1]))


def _plain(v: Any) -> Any:
    """A normalised argument value back in its YAML form (tuples -> lists), so it can be checked again."""
    if isinstance(v, tuple):
        return [_plain(e) for e in v]
    return v


def resolve(name: str, args: dict[str, Any] | None) -> dict[str, Any]:
    """The loader's arguments: defaults filled in, each value checked and normalised (DataError if bad).

    The trainer passes arguments validate_train has already checked; this makes `data.load(name, {...})`
    from Python just as safe.
    """
    entry = DATASETS[name]
    given = {k: v for k, v in (args or {}).items() if k != "name"}
    out: dict[str, Any] = {}
    for k, v in given.items():
        spec = entry.args.get(k)
        if spec is None:
            hint = did_you_mean(str(k), list(entry.args))
            raise DataError(f"dataset {name} has no option '{k}'", arg=k,
                            help=f"did you mean '{hint}'?" if hint else f"{name} takes " + ", ".join(entry.args))
        if v is None and spec.default is None:  # the default, filled in by validate_train
            out[k] = None
            continue
        v = _plain(v)
        problem = spec.kind.check(v)
        if problem:
            raise DataError(f"{name} {k} {problem}, got {v!r}", arg=k)
        out[k] = spec.kind.normalize(v)
    for k, spec in entry.args.items():
        if k in out:
            continue
        if spec.default is REQUIRED:
            raise DataError(f"dataset {name} needs `{k}` ({spec.kind.text})", arg=k, help=f"add {k}: ... under data")
        out[k] = spec.kind.normalize(_plain(spec.default)) if spec.default is not None else None
    return out


def find_path(path: str, root: str, what: str, arg: str = "path", folder: bool = False) -> str:
    """A user-given path: absolute, or relative to the working directory, else to the data root."""
    path = os.path.expanduser(path)
    candidates = [path] if os.path.isabs(path) else [path, os.path.join(root, path)]
    for c in candidates:
        if (os.path.isdir(c) if folder else os.path.isfile(c)):
            return c
    tried = " or ".join(f"'{os.path.abspath(c)}'" for c in dict.fromkeys(candidates))
    kind = "folder" if folder else "file"
    hint = ""
    for c in candidates:
        if not folder and os.path.isdir(c):
            hint = f"; '{c}' is a folder, {arg} must name a file"
        elif folder and os.path.isfile(c):
            hint = f"; '{c}' is a file, {arg} must name a folder"
    raise DataError(f"{what}: no such {kind}: {tried}{hint}", arg=arg,
                    help="a relative path is read from the working directory, then from the data root "
                         "(--data-root, $DLSPEC_DATA, else ./data)")


def subset_indices(name: str, n_train: int, n_test: int, subset: dict[str, int] | None, seed: int) -> tuple[Any, Any]:
    """Indices for `subset: {train: N, test: M}`: the first N (M) after a shuffle seeded with `seed`.

    Train and test have their own random streams, so `test: M` picks the same test samples whatever
    `train:` says.  None where the whole split is kept.
    """
    import numpy as np

    if not subset:
        return None, None
    out = []
    for stream, (split, n) in enumerate((("train", n_train), ("test", n_test))):
        want = subset.get(split)
        if want is None:
            out.append(None)
            continue
        if want > n:
            raise DataError(f"subset.{split} = {want} but {name} has only {n} {split} samples", arg="subset",
                            help=f"use at most {split}: {n}")
        out.append(np.random.default_rng([seed, stream]).permutation(n)[:want])
    return out[0], out[1]


def normalize_arrays(name: str, x_train: Any, x_test: Any, spec: Any, standard: Any = None) -> dict[str, Any] | None:
    """Normalise float32 arrays in place along axis 1 (image channels, table features): (x - mean) / std.

    spec: None (nothing), True (`standard` when the dataset has one, else computed on x_train), or
    (means, stds) with one value per channel or a single value for all.  Returns what was applied.
    """
    import numpy as np

    if spec is None:
        return None
    channels = int(x_train.shape[1]) if x_train.ndim > 1 else 1
    if spec is True and standard is None:
        axes = tuple(i for i in range(x_train.ndim) if i != 1)
        mean = x_train.mean(axis=axes, dtype=np.float64)
        std = x_train.std(axis=axes, dtype=np.float64)
        std = np.where(std > 0, std, 1.0)  # a constant feature is left centred, not divided by 0
        means, stds = np.atleast_1d(mean).tolist(), np.atleast_1d(std).tolist()
        source = "training split"
    else:
        means, stds = (standard if spec is True else spec)
        means, stds = list(means), list(stds)
        source = "standard" if spec is True else "given"
        if len(means) not in (1, channels):
            raise DataError(f"{name} normalize has {len(means)} means and standard deviations but the data has "
                            f"{channels} channels (axis 1 of {tuple(x_train.shape)})", arg="normalize",
                            help=f"give 1 or {channels} values: [[means], [stds]]")
    view = (1, len(means)) + (1,) * max(x_train.ndim - 2, 0) if x_train.ndim > 1 else (1,)
    m = np.asarray(means, dtype=np.float32).reshape(view)
    s = np.asarray(stds, dtype=np.float32).reshape(view)
    for x in (x_train, x_test):
        if x is not None:
            x -= m
            x /= s
    return {"mean": [float(v) for v in means], "std": [float(v) for v in stds], "from": source}


def reshape_samples(name: str, x: Any, shape: Any, arg: str = "shape") -> Any:
    """Reshape each sample (the batch kept); the number of elements must stay the same."""
    if shape is None:
        return x
    shape = tuple(int(d) for d in shape)
    per = 1
    for d in x.shape[1:]:
        per *= int(d)
    known = 1
    for d in shape:
        if d != -1:
            known *= d
    if shape.count(-1) > 1 or (shape.count(-1) == 1 and (known == 0 or per % known)) or \
            (-1 not in shape and known != per):
        raise DataError(f"{name} cannot reshape samples of shape {tuple(int(d) for d in x.shape[1:])} "
                        f"({per} values) to {list(shape)}", arg=arg,
                        help=f"the sizes must multiply to {per} (one of them may be -1)")
    return x.reshape((x.shape[0],) + shape)


def make_split(x: Any, y: Any) -> Split:
    """numpy arrays -> a Split of torch tensors (sharing memory where the dtype already fits)."""
    import numpy as np
    import torch

    return Split(torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.ascontiguousarray(y)))


def import_optional(module: str, dataset: str, package: str = "torchvision") -> Any:
    """An optional package, or a DataError that says how to get it (any import failure counts)."""
    import importlib

    try:
        return importlib.import_module(module)
    except Exception as e:  # noqa: BLE001 - a broken install raises more than ImportError
        why = "is not installed" if isinstance(e, ModuleNotFoundError) else \
            f"failed to import ({type(e).__name__}: {e})"
        raise DataError(f"{dataset} needs {package}: pip install 'dlspec[vision]'",
                        notes=[f"{package} {why}"],
                        help="install it next to a matching torch (see the README's installation notes)") from None


# --- IDX files ----------------------------------------------------------------------------------------

# type code -> (numpy dtype, name); IDX data is big-endian
_IDX_TYPES = {0x08: (">u1", "unsigned byte"), 0x09: (">i1", "signed byte"), 0x0B: (">i2", "short"),
              0x0C: (">i4", "int"), 0x0D: (">f4", "float"), 0x0E: (">f8", "double")}


def read_bytes(path: str) -> bytes:
    """A file's bytes, gunzipped when it is gzip (by content, whatever its name); DataError if unreadable."""
    import gzip
    import zlib

    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}") from None
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(f"{path} is damaged: cannot decompress it ({e})",
                            help="the file is incomplete or corrupted: delete it and download it again") from None
    elif path.endswith(".gz"):
        raise DataError(f"{path} is not a gzip file (it does not start with the gzip signature 1f 8b)",
                        help="the file is damaged or mislabelled: delete it and download it again")
    return data


def read_idx(path: str, ndim: int | None = None) -> Any:
    """An IDX file (raw or gzip) as a numpy array of its stored type; every header field is checked."""
    import numpy as np

    data = read_bytes(path)
    if len(data) < 4:
        raise DataError(f"{path} is not an IDX file: it has only {len(data)} bytes",
                        help="the file is empty or truncated: delete it and download it again")
    magic = struct.unpack(">I", data[:4])[0]
    code, dims_n = data[2], data[3]
    if data[0] or data[1] or code not in _IDX_TYPES or dims_n == 0:
        raise DataError(f"{path} is not an IDX file: wrong magic number 0x{magic:08X}",
                        notes=["an IDX file starts with two zero bytes, a type code (0x08 for unsigned bytes) and "
                               "the number of dimensions: 0x00000803 for images, 0x00000801 for labels"],
                        help="the file is damaged, or not one of the MNIST-style files: download it again")
    if ndim is not None and dims_n != ndim:
        what = {3: "images (N, rows, columns)", 1: "labels (N,)"}.get(ndim, f"{ndim} dimensions")
        raise DataError(f"{path} has {dims_n} dimensions (magic 0x{magic:08X}), expected {ndim} for {what}",
                        help="check that the images and labels files are not swapped or renamed")
    header = 4 + 4 * dims_n
    if len(data) < header:
        raise DataError(f"{path} is truncated: it ends inside its header ({len(data)} of {header} bytes)",
                        help="delete it and download it again")
    dims = struct.unpack(f">{dims_n}I", data[4:header])
    dtype = np.dtype(_IDX_TYPES[code][0])
    count = 1
    for d in dims:
        count *= d
    need, have = count * dtype.itemsize, len(data) - header
    if have != need:
        state = "is truncated" if have < need else "has extra bytes"
        raise DataError(f"{path} {state}: its header says {' × '.join(map(str, dims))} "
                        f"{_IDX_TYPES[code][1]}s ({need} bytes of data) but it has {have}",
                        help="the file is damaged or incomplete: delete it and download it again")
    return np.frombuffer(data, dtype=dtype, count=count, offset=header).reshape(dims)


_IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
              "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def _locate(folders: list[str]) -> tuple[str, dict[str, str]] | None:
    """The first folder holding all four files (raw preferred over .gz: faster), with their paths."""
    for folder in folders:
        found = {}
        for base in (n for pair in _IDX_FILES.values() for n in pair):
            for cand in (base, base + ".gz"):
                p = os.path.join(folder, cand)
                if os.path.isfile(p):
                    found[base] = p
                    break
        if len(found) == 4:
            return folder, found
    return None


class _MnistLike:
    def __init__(self, name: str, folder: str, title: str, classes: list[str], stats: tuple[tuple[float, ...], ...],
                 urls: str):
        self.name, self.folder, self.title, self.classes = name, folder, title, classes
        self.stats, self.urls = stats, urls

    def __call__(self, args: dict[str, Any], root: str) -> Bundle:
        import numpy as np

        t0 = time.perf_counter()
        a = resolve(self.name, args)
        base = os.path.expanduser(a["root"] or root)
        raw = os.path.join(base, self.folder, "raw")
        folders = [raw, os.path.join(base, self.folder), base]
        hit = _locate(folders)
        failed = None
        if hit is None and a["download"]:
            failed = self._download(base)
            hit = _locate(folders)
        if hit is None:
            raise self._missing(base, raw, a["download"], failed)
        folder, paths = hit
        arrays: dict[str, tuple[Any, Any]] = {}
        for split, (images, labels) in _IDX_FILES.items():
            x = read_idx(paths[images], ndim=3)
            y = read_idx(paths[labels], ndim=1)
            for path, arr in ((paths[images], x), (paths[labels], y)):
                if arr.dtype != np.uint8:
                    raise DataError(f"{path} does not hold unsigned bytes (type {arr.dtype})",
                                    help=f"{self.title} IDX files hold unsigned bytes (magic 0x00000803 / 0x00000801)")
            if len(x) != len(y):
                raise DataError(f"{self.title} {split} files disagree: {paths[images]} has {len(x)} images but "
                                f"{paths[labels]} has {len(y)} labels",
                                help="one of the two files is from another data set or release: download both again")
            if len(y) and int(y.max()) >= len(self.classes):
                raise DataError(f"{paths[labels]} has label {int(y.max())}; {self.title} labels are 0 to "
                                f"{len(self.classes) - 1}", help="the file is damaged or from another data set")
            arrays[split] = (x, y)
        if arrays["train"][0].shape[1:] != arrays["test"][0].shape[1:]:
            raise DataError(f"{self.title} training images are {arrays['train'][0].shape[1:]} but test images are "
                            f"{arrays['test'][0].shape[1:]} ({folder})", help="the files are from different data sets")
        (xtr, ytr), (xte, yte) = arrays["train"], arrays["test"]
        itr, ite = subset_indices(self.name, len(xtr), len(xte), a["subset"], a["seed"])
        if itr is not None:
            xtr, ytr = xtr[itr], ytr[itr]
        if ite is not None:
            xte, yte = xte[ite], yte[ite]
        xs = []
        for x in (xtr, xte):
            f = x.astype(np.float32)[:, None]  # (N, 1, H, W) as torchvision's ToTensor
            if a["scale"]:
                f *= np.float32(1 / 255)
            xs.append(f)
        standard = self.stats if a["scale"] else tuple(tuple(v * 255 for v in s) for s in self.stats)
        norm = normalize_arrays(self.name, xs[0], xs[1], a["normalize"], standard)
        xs = [reshape_samples(self.name, x, a["shape"]) for x in xs]
        return Bundle(
            name=self.name, train=make_split(xs[0], ytr.astype(np.int64)), test=make_split(xs[1], yte.astype(np.int64)),
            task="classification", num_classes=len(self.classes), classes=list(self.classes),
            info={"folder": os.path.abspath(folder), "files": [os.path.abspath(paths[n]) for p in _IDX_FILES.values()
                                                               for n in p],
                  "sample_shape": list(xs[0].shape[1:]),
                  "scale": 255 if a["scale"] else 1, "normalize": norm, "subset": a["subset"],
                  "seconds": round(time.perf_counter() - t0, 3)})

    def _missing(self, base: str, raw: str, tried_download: bool, failed: str | None) -> DataError:
        names = [n for pair in _IDX_FILES.values() for n in pair]
        have = [n for n in names if any(os.path.isfile(os.path.join(raw, n + ext)) for ext in ("", ".gz"))]
        lacking = [n for n in names if n not in have]
        where = f"'{os.path.abspath(raw)}'" + ("" if os.path.isdir(raw) else " (the folder does not exist)")
        notes = [f"missing: {', '.join(n + '[.gz]' for n in lacking)}"]
        if have:
            notes.append(f"found: {', '.join(have)}")
        notes.append(f"the data root is '{os.path.abspath(base)}'; {self.title} is read from ROOT/{self.folder}/raw "
                     f"(torchvision's layout)")
        if failed:
            notes.append(f"download: true did not work: {failed}")
        help = (f"download the four files from {self.urls} into that folder (raw or .gz), or point `root:` "
                f"(or --data-root, $DLSPEC_DATA) at the folder that holds {self.folder}/")
        if not tried_download:
            help += "; or set `download: true` (needs torchvision: pip install 'dlspec[vision]')"
        return DataError(f"{self.title} files not found in {where}", help=help, notes=notes, arg="root")

    def _download(self, base: str) -> str | None:
        """Download with torchvision into BASE/FOLDER/raw; None, or why it did not work."""
        try:
            tv = import_optional("torchvision.datasets", self.name)
        except DataError as e:
            return f"{e.notes[0] if e.notes else 'torchvision is missing'} (pip install 'dlspec[vision]')"
        try:
            cls = getattr(tv, self.folder)
            for train in (True, False):
                cls(base, train=train, download=True)
        except Exception as e:  # noqa: BLE001 - no network, a mirror down, a full disk...
            return f"torchvision could not download it ({type(e).__name__}: {e})"
        return None


def _mnist_args(normalize_doc: str) -> dict[str, Arg]:
    return {
        "root": Arg(Optional_(Text()), None, doc="the data root holding MNIST/ or FashionMNIST/ (default: "
                                                 "--data-root, $DLSPEC_DATA, else ./data)"),
        "normalize": Arg(Normalize(), None, doc=normalize_doc),
        "scale": Arg(Bool(), True, doc="divide the pixel values by 255"),
        "shape": Arg(Optional_(IntList(min=1, allow_minus_one=True, text="a list of positive sizes (one may be -1)")),
                     None, doc="reshape each (1, 28, 28) sample, e.g. [28, 28] (rows as time steps) or [784]"),
        "download": Arg(Bool(), False, doc="download with torchvision when the files are missing"),
        "seed": Arg(Int(0), 0, doc="seed for `subset`"),
    }


MNIST_CLASSES = [str(d) for d in range(10)]
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot"]
MNIST_STATS = ((0.1307,), (0.3081,))
FASHION_STATS = ((0.2860,), (0.3530,))

register(DatasetType(
    "mnist", _mnist_args("null: pixels only scaled; true: MNIST's mean/std (0.1307, 0.3081); or [[means], [stds]]"),
    _MnistLike("mnist", "MNIST", "MNIST", MNIST_CLASSES, MNIST_STATS,
               "https://ossci-datasets.s3.amazonaws.com/mnist/ (torchvision's mirror)"),
    doc="MNIST handwritten digits: 60000 + 10000 grayscale 28×28 images, 10 classes; x (N, 1, 28, 28)"))

register(DatasetType(
    "fashion_mnist",
    _mnist_args("null: pixels only scaled; true: Fashion-MNIST's mean/std (0.2860, 0.3530); or [[means], [stds]]"),
    _MnistLike("fashion_mnist", "FashionMNIST", "Fashion-MNIST", FASHION_CLASSES, FASHION_STATS,
               "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"),
    doc="Fashion-MNIST (Zalando): 60000 + 10000 grayscale 28×28 clothing images, 10 classes; x (N, 1, 28, 28)"))
