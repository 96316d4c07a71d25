"""MNIST and Fashion-MNIST from their IDX files.

The files are read in torchvision's layout, so data downloaded with torchvision just works:

    ROOT/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]
    ROOT/FashionMNIST/raw/...

Whole arrays are read with numpy (gzip or raw), checked (magic number, dimensions, sizes, label range),
scaled and normalised once; no per-sample work.  numpy and torch are imported inside the functions only:
importing this module (as `dlspec check` does) stays torch-free.
"""

from __future__ import annotations

import math
import os
import struct
import time
from typing import Any

from ..readers import bound_words, bounds
from ..registry import Arg, Bool, IntList, Optional_
from ..safeio import FileRefused, open_input
from .base import IMAGE_ALIASES, Bundle, DataError, DataFacts, DatasetType, Seed, labelled_images, register, reshaped
from .common import (
    Normalize,
    Text,
    blocked,
    check_memory,
    import_optional,
    make_split,
    normalize_arrays,
    permission_denied,
    reshape_samples,
    resolve,
    take_subset,
    uint8_pixels,
)

# --- IDX files ----------------------------------------------------------------------------------------

# type code -> (numpy dtype, name); IDX data is big-endian
_IDX_TYPES = {0x08: (">u1", "unsigned byte"), 0x09: (">i1", "signed byte"), 0x0B: (">i2", "short"),
              0x0C: (">i4", "int"), 0x0D: (">f4", "float"), 0x0E: (">f8", "double")}


# deflate's largest ratio is 1032:1; a gzip file cannot hold more than this many bytes per byte of it
GZIP_MAX_RATIO = 1032


class _Source:
    """An IDX file's bytes as a stream, gunzipped when it is gzip (by content, whatever its name): read only
    as much as asked, so a gzip bomb posing as an IDX file is never inflated beyond what its header says."""

    def __init__(self, path: str):
        import gzip

        self.path = path
        try:
            self.file = open_input(path, "file")  # a FIFO or a device is refused, not read
        except FileRefused as e:
            raise DataError(str(e), help="check the file's permissions" if "permission denied" in str(e) else None) from None
        try:
            self.size = os.fstat(self.file.fileno()).st_size
            head = self.file.read(2)
            self.file.seek(0)
        except OSError as e:
            self.file.close()
            raise DataError(f"cannot read {path}: {e.strerror or e}") from None
        self.gzip = head == b"\x1f\x8b"
        if not self.gzip and path.endswith(".gz"):
            self.file.close()
            raise DataError(f"{path} is not a gzip file (it does not start with the gzip signature 1f 8b)",
                            help="the file is damaged or mislabelled: delete it and download it again")
        self.stream: Any = gzip.GzipFile(fileobj=self.file, mode="rb") if self.gzip else self.file

    def read(self, n: int) -> bytes:
        """Up to n bytes (fewer only at the end of the data); DataError when the gzip stream is damaged."""
        import zlib

        parts, got = [], 0
        try:
            while got < n:
                chunk = self.stream.read(min(n - got, 1 << 26))
                if not chunk:
                    break
                parts.append(chunk)
                got += len(chunk)
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(f"{self.path} is damaged: cannot decompress it ({e})",
                            help="the file is incomplete or corrupted: delete it and download it again") from None
        return b"".join(parts)

    def close(self) -> None:
        self.file.close()


def read_idx(path: str, ndim: int | None = None) -> Any:
    """An IDX file (raw or gzip) as a numpy array of its stored type; every header field is checked.

    The header says how many bytes of data follow: no more is read (or inflated), and a header claiming
    more than the file could hold, or more than this machine's memory, is refused before reading them."""
    import numpy as np

    src = _Source(path)
    try:
        data = src.read(4)
        if len(data) < 4:
            raise DataError(f"{path} is not an IDX file: it has only {len(data)} bytes",
                            help="the file is empty or truncated: delete it and download it again")
        magic = struct.unpack(">I", data[:4])[0]
        code, dims_n = data[2], data[3]
        if data[0] or data[1] or code not in _IDX_TYPES or dims_n == 0:
            raise DataError(f"{path} is not an IDX file: wrong magic number 0x{magic:08X}",
                            notes=["an IDX file starts with two zero bytes, a type code (0x08 for unsigned bytes) "
                                   "and the number of dimensions: 0x00000803 for images, 0x00000801 for labels"],
                            help="the file is damaged, or not one of the MNIST-style files: download it again")
        if ndim is not None and dims_n != ndim:
            what = {3: "images (N, rows, columns)", 1: "labels (N,)"}.get(ndim, f"{ndim} dimensions")
            raise DataError(f"{path} has {dims_n} dimensions (magic 0x{magic:08X}), expected {ndim} for {what}",
                            help="check that the images and labels files are not swapped or renamed")
        header = 4 + 4 * dims_n
        data += src.read(header - 4)
        if len(data) < header:
            raise DataError(f"{path} is truncated: it ends inside its header ({len(data)} of {header} bytes)",
                            help="delete it and download it again")
        dims = struct.unpack(f">{dims_n}I", data[4:header])
        dtype = np.dtype(_IDX_TYPES[code][0])
        count = math.prod(dims)
        need = count * dtype.itemsize
        said = f"its header says {' × '.join(map(str, dims))} {_IDX_TYPES[code][1]}s ({need:,} bytes of data)"
        if math.prod(d for d in dims if d) * dtype.itemsize >= 2**63:  # no array has this shape, even of 0 values
            raise DataError(f"{path} is damaged: {said}, a shape larger than any array can have",
                            help="the file is damaged or not an MNIST-style file: delete it and download it again")
        if src.gzip and need > GZIP_MAX_RATIO * src.size:
            raise DataError(f"{path} cannot be an IDX file: {said} but a gzip file of {src.size:,} bytes holds at "
                            f"most {GZIP_MAX_RATIO * src.size:,}",
                            help="the file is damaged or not an MNIST-style file: delete it and download it again")
        if not src.gzip and need != src.size - header:
            have = src.size - header
            raise DataError(f"{path} {'is truncated' if have < need else 'has extra bytes'}: {said} but it has "
                            f"{have:,}", help="the file is damaged or incomplete: delete it and download it again")
        if need > bounds().array_bytes:
            raise DataError(f"{path}: {said}: more than {bounds().array_bytes:,} bytes, "
                            + bound_words("array_bytes", "an array"),
                            help="the file is damaged or not an MNIST-style file (or raise the bound)")
        check_memory(path, need, f"its data ({said[len('its header says '):]})", None,
                     "the file is damaged or not an MNIST-style file (or use a machine with more memory)")
        body = src.read(need)
        if len(body) < need:
            raise DataError(f"{path} is truncated: {said} but it has {len(body):,}",
                            help="the file is damaged or incomplete: delete it and download it again")
        if src.gzip and src.read(1):
            raise DataError(f"{path} has extra bytes: {said} but more follow",
                            help="the file is damaged or from another data set: delete it and download it again")
    finally:
        src.close()
    return np.frombuffer(body, dtype=dtype, count=count).reshape(dims)


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
        return self.load(args, root, uint8=False)

    def raw(self, args: dict[str, Any], root: str) -> Bundle:
        """The same Bundle with uint8 images (N, 1, H, W) and `pixels` saying how to make them float."""
        return self.load(args, root, uint8=True)

    def load(self, args: dict[str, Any], root: str, uint8: bool) -> Bundle:
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
            for f in folders:  # not found: perhaps not allowed to look
                b = blocked(os.path.join(f, _IDX_FILES["train"][0]))
                if b is not None:
                    raise permission_denied(self.title, os.path.abspath(f), b, "root")
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
        xtr, ytr, xte, yte = take_subset(self.name, xtr, ytr, xte, yte, a["subset"], a["seed"])
        pixels_n = xtr.size + xte.size
        check_memory(self.title, 4 * pixels_n, f"{len(xtr) + len(xte):,} images as float32 ({pixels_n:,} pixels)",
                     "subset", "use `subset: {train: N, test: M}`, or a machine with more memory")
        standard = self.stats if a["scale"] else tuple(tuple(v * 255 for v in s) for s in self.stats)
        pixels = None
        if uint8:
            shape = a["shape"]
            if shape is not None:  # checked (and -1 resolved) by the float loader's own rule, on one sample
                shape = reshape_samples(self.name, np.zeros((1, 1) + xtr.shape[1:], dtype=np.float32), shape).shape[1:]
            pixels, norm = uint8_pixels(self.name, a["normalize"], standard, 1, a["scale"],
                                        tuple(int(d) for d in shape) if shape is not None else None)
            sample = list(pixels.shape) if pixels.shape else [1, *xtr.shape[1:]]
            # (N, 1, H, W) uint8; torch wants writable memory
            xs = [(x if x.flags.writeable else x.copy())[:, None] for x in (xtr, xte)]
        else:
            xs = []
            for x in (xtr, xte):
                f = x.astype(np.float32)[:, None]  # (N, 1, H, W) as torchvision's ToTensor
                if a["scale"]:
                    f *= np.float32(1 / 255)
                xs.append(f)
            norm = normalize_arrays(self.name, xs[0], xs[1], a["normalize"], standard)
            xs = [reshape_samples(self.name, x, a["shape"]) for x in xs]
            sample = list(xs[0].shape[1:])
        return Bundle(
            name=self.name, train=make_split(xs[0], ytr.astype(np.int64), aliases=IMAGE_ALIASES),
            test=make_split(xs[1], yte.astype(np.int64), aliases=IMAGE_ALIASES),
            task="classification", num_classes=len(self.classes), classes=list(self.classes), pixels=pixels,
            info={"folder": os.path.abspath(folder), "files": [os.path.abspath(paths[n]) for p in _IDX_FILES.values()
                                                               for n in p],
                  "sample_shape": sample,
                  "scale": 255 if a["scale"] else 1, "normalize": norm, "subset": a["subset"],
                  "seconds": round(time.perf_counter() - t0, 3), **({"uint8": True} if pixels else {})})

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
        "seed": Seed(0, doc="seed for `subset` (the data's own seed; train.seed does not change it)"),
    }


MNIST_CLASSES = [str(d) for d in range(10)]
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot"]
MNIST_STATS = ((0.1307,), (0.3081,))
FASHION_STATS = ((0.2860,), (0.3530,))

_MNIST = _MnistLike("mnist", "MNIST", "MNIST", MNIST_CLASSES, MNIST_STATS,
                    "https://ossci-datasets.s3.amazonaws.com/mnist/ (torchvision's mirror)")
_FASHION = _MnistLike("fashion_mnist", "FashionMNIST", "Fashion-MNIST", FASHION_CLASSES, FASHION_STATS,
                      "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/")

def _facts(name: str) -> Any:
    def facts(args: dict[str, Any]) -> DataFacts:
        shape = reshaped((1, 28, 28), args.get("shape"))
        return DataFacts(name, shape, "float", (), "long", "classification", 10, fields=labelled_images(shape))
    return facts


register(DatasetType(
    "mnist", _mnist_args("null: pixels only scaled; true: MNIST's mean/std (0.1307, 0.3081); or [[means], [stds]]"),
    _MNIST, raw=_MNIST.raw, facts=_facts("mnist"),
    doc="MNIST handwritten digits: 60000 + 10000 grayscale 28×28 images, 10 classes; x (N, 1, 28, 28)"))

register(DatasetType(
    "fashion_mnist",
    _mnist_args("null: pixels only scaled; true: Fashion-MNIST's mean/std (0.2860, 0.3530); or [[means], [stds]]"),
    _FASHION, raw=_FASHION.raw, facts=_facts("fashion_mnist"),
    doc="Fashion-MNIST (Zalando): 60000 + 10000 grayscale 28×28 clothing images, 10 classes; x (N, 1, 28, 28)"))
