"""Image data sets that need an optional package: `cifar10` (torchvision) and `image_folder` (Pillow, and
torchvision's ImageFolder for the scan when torchvision imports).

Both are registered whatever is installed, so `dlspec check` accepts their names; the package is
imported when the data is loaded, and its absence is a DataError that says what to install.  Images are
decoded once into one uint8 array, then scaled and normalised as a whole.
"""

from __future__ import annotations

import math
import os
import time
from typing import Any

from ..readers import ReadError, read_image
from ..registry import Arg, Bool, Float, IntTuple, Optional_
from .base import IMAGE_ALIASES, Bundle, DataError, DataFacts, DatasetType, Seed, labelled_images, register
from .common import (
    Normalize,
    Text,
    check_memory,
    count_files,
    files_below,
    find_path,
    import_optional,
    make_split,
    normalize_arrays,
    regular,
    resolve,
    split_fraction,
    subset_indices,
    take_subset,
    uint8_pixels,
)

CIFAR10_STATS = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))


def _finish(name: str, a: dict[str, Any], xtr: Any, ytr: Any, xte: Any, yte: Any, standard: Any,
            uint8: bool = False) -> tuple[Any, ...]:
    """uint8 (N, H, W, C) arrays -> subset, float32 (N, C, H, W) in [0, 1], normalised.

    uint8=True: the images stay uint8 (N, C, H, W) and the last item is the Pixels that make them float
    (None, and float32 as without it, when the statistics must be computed from the float images)."""
    import numpy as np

    xtr, ytr, xte, yte = take_subset(name, xtr, ytr, xte, yte, a["subset"], a["seed"])
    if uint8 and not (a["normalize"] is True and standard is None):
        pixels, norm = uint8_pixels(name, a["normalize"], standard, int(xtr.shape[-1]), True)
        xs = [np.ascontiguousarray(x.transpose(0, 3, 1, 2)) for x in (xtr, xte)]
        return xs[0], np.asarray(ytr, dtype=np.int64), xs[1], np.asarray(yte, dtype=np.int64), norm, pixels
    xs = []
    for x in (xtr, xte):
        f = np.ascontiguousarray(x.transpose(0, 3, 1, 2), dtype=np.float32)
        f *= np.float32(1 / 255)
        xs.append(f)
    norm = normalize_arrays(name, xs[0], xs[1], a["normalize"], standard)
    return xs[0], np.asarray(ytr, dtype=np.int64), xs[1], np.asarray(yte, dtype=np.int64), norm, None


# --- cifar10 ------------------------------------------------------------------------------------------


def _load_cifar10(args: dict[str, Any], root: str, uint8: bool = False) -> Bundle:
    import numpy as np

    t0 = time.perf_counter()
    a = resolve("cifar10", args)
    base = os.path.expanduser(a["root"] or root)
    datasets = import_optional("torchvision.datasets", "cifar10")
    parts = []
    for train in (True, False):
        try:
            ds = datasets.CIFAR10(base, train=train, download=a["download"])
        except Exception as e:  # noqa: BLE001 - missing, damaged (md5), no network...
            folder = os.path.abspath(os.path.join(base, "cifar-10-batches-py"))
            raise DataError(f"CIFAR-10 not loaded from '{folder}': {e}", arg="root",
                            help="set `download: true`, or put cifar-10-python.tar.gz (unpacked) there; point "
                                 "`root:` (or --data-root, $DLSPEC_DATA) at the folder that holds "
                                 "cifar-10-batches-py/") from None
        x, y = np.asarray(ds.data), np.asarray(ds.targets)
        if x.ndim != 4 or x.shape[-1] != 3 or x.dtype != np.uint8 or len(x) != len(y):
            raise DataError(f"CIFAR-10 in '{base}' has unexpected arrays: images {x.shape} {x.dtype}, "
                            f"{len(y)} labels", arg="root", help="delete cifar-10-batches-py/ and download it again")
        parts.append((x, y, list(getattr(ds, "classes", [])) or [str(i) for i in range(10)]))
    (xtr, ytr, classes), (xte, yte, _) = parts
    xtr, ytr, xte, yte, norm, pixels = _finish("cifar10", a, xtr, ytr, xte, yte, CIFAR10_STATS, uint8)
    return Bundle("cifar10", make_split(xtr, ytr, aliases=IMAGE_ALIASES), make_split(xte, yte, aliases=IMAGE_ALIASES),
                  task="classification",
                  num_classes=len(classes), classes=classes, pixels=pixels,
                  info={"folder": os.path.abspath(os.path.join(base, "cifar-10-batches-py")),
                        "sample_shape": list(xtr.shape[1:]), "normalize": norm, "subset": a["subset"],
                        "seconds": round(time.perf_counter() - t0, 3), **({"uint8": True} if pixels else {})})


register(DatasetType(
    "cifar10",
    {
        "root": Arg(Optional_(Text()), None, doc="the folder holding cifar-10-batches-py/ (default: the data root)"),
        "download": Arg(Bool(), False, doc="download with torchvision when missing"),
        "normalize": Arg(Normalize(), None, doc="null: [0, 1]; true: CIFAR-10's per-channel mean/std; "
                                                "or [[means], [stds]]"),
        "seed": Seed(0, doc="seed for subset (the data's own seed; train.seed does not change it)"),
    },
    _load_cifar10, raw=lambda args, root: _load_cifar10(args, root, uint8=True),
    facts=lambda a: DataFacts("cifar10", (3, 32, 32), "float", (), "long", "classification", 10, False,
                              labelled_images((3, 32, 32))),
    doc="CIFAR-10 (via torchvision): 50000 + 10000 colour 32×32 images, 10 classes; x (N, 3, 32, 32)",
    needs="torchvision"))


# --- image_folder -------------------------------------------------------------------------------------

# torchvision's IMG_EXTENSIONS
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def _torchvision_image_folder() -> Any:
    """torchvision's ImageFolder when torchvision imports (its scanning rules then apply), else None."""
    try:
        from torchvision.datasets import ImageFolder

        return ImageFolder
    except Exception:  # noqa: BLE001 - absent or broken (e.g. built for another torch): use our own scan
        return None


def _scan(folder: str, classes: list[str] | None) -> tuple[list[str], list[tuple[str, int]]]:
    """ImageFolder's layout: one sub-folder per class (sorted), the images anywhere below it.

    With torchvision installed, its ImageFolder does the scan; without it, the same rules are applied here.
    """
    image_folder = _torchvision_image_folder()
    if image_folder is not None:
        try:
            ds = image_folder(folder)
        except PermissionError:
            raise DataError(f"image_folder: permission denied: cannot read the folder '{folder}'", arg="path",
                            help="give this user read and enter permission (chmod u+rx)") from None
        except (FileNotFoundError, RuntimeError, OSError) as e:
            raise DataError(f"'{folder}': {e}", arg="path",
                            help="image_folder reads FOLDER/<class>/<image> (torchvision's ImageFolder layout)") from None
        kept = [(p, int(i)) for p, i in ds.samples if regular(p)]  # a FIFO named x.png would block the decode
        count_files(folder, len(kept), "images")
        if classes is None:
            return list(ds.classes), kept
        extra = [c for c in ds.classes if c not in classes]
        if extra:
            raise DataError(f"'{folder}' has classes the training folder lacks: {', '.join(extra)}", arg="test_path")
        index = {c: classes.index(c) for c in ds.classes}
        return classes, [(p, index[ds.classes[i]]) for p, i in kept]
    try:
        found = sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))
    except PermissionError:
        raise DataError(f"image_folder: permission denied: cannot read the folder '{folder}'", arg="path",
                        help="give this user read and enter permission (chmod u+rx), or use a copy it can read") from None
    if classes is None:
        classes = found
        if not classes:
            raise DataError(f"'{folder}' has no class folders", arg="path",
                            help="image_folder reads FOLDER/<class>/<image> (torchvision's ImageFolder layout)")
    else:
        extra = [c for c in found if c not in classes]
        if extra:
            raise DataError(f"'{folder}' has classes the training folder lacks: {', '.join(extra)}", arg="test_path")
    samples: list[tuple[str, int]] = []
    for i, c in enumerate(classes):
        d = os.path.join(folder, c)
        if os.path.isdir(d):
            samples += [(p, i) for p in files_below(d, folder, len(samples), IMAGE_EXTENSIONS, "image_folder", "images")]
    if not samples:
        raise DataError(f"'{folder}' has no images ({', '.join(IMAGE_EXTENSIONS)}) in its class folders", arg="path")
    return classes, samples


IMAGE_BYTES_PER_VALUE = 5  # the uint8 images and their float32 form


def _check_images(n: int, hw: tuple[int, ...], channels: int, arg: str) -> None:
    values = n * channels * math.prod(hw)
    check_memory("image_folder", IMAGE_BYTES_PER_VALUE * values,
                 f"{n:,} images of {hw[1]}×{hw[0]}×{channels} (uint8, then float32)", arg,
                 "use a smaller `size`, a subset, or a machine with more memory")


def _decode(samples: list[tuple[str, int]], size: tuple[int, int] | None, grayscale: bool) -> tuple[Any, Any]:
    """The images as one uint8 (N, H, W, C) array, each read by readers.read_image (the pixel bound, 16-bit
    images rounded to 8 bits at their real scale) and resized to `size` when given."""
    import numpy as np

    import_optional("PIL.Image", "image_folder", package="Pillow")
    channels = 1 if grayscale else 3
    if size is not None:  # every image resized: known before one is decoded
        _check_images(len(samples), size, channels, "size")
    out = None
    first = ""
    for k, (p, _) in enumerate(samples):
        try:
            arr = read_image(p, channels, size, form="uint8")
        except ReadError as e:
            if e.kind == "memory":
                what = f"resizing image {p} to {size[1]}×{size[0]}" if size is not None else f"decoding image {p}"
                raise DataError(f"out of memory {what}", arg="size" if size is not None else "path",
                                help="use a smaller `size`, or a machine with more memory") from None
            raise DataError(str(e), arg="path", help="replace the image with a smaller one, or raise the bound"
                            if e.kind == "bound" else "delete or replace the file (it is damaged or not an image)"
                            ) from None
        if out is None:
            if size is None:  # the images' size is the first one's
                _check_images(len(samples), arr.shape[:2], channels, "path")
            out, first = np.empty((len(samples),) + arr.shape, dtype=np.uint8), p
        elif arr.shape != out.shape[1:]:
            raise DataError(f"images differ in size: {first} is {out.shape[2]}×{out.shape[1]} but {p} is "
                            f"{arr.shape[1]}×{arr.shape[0]}", arg="size",
                            help="set `size: [H, W]` (or one number) to resize every image")
        out[k] = arr
    return out, np.array([c for _, c in samples], dtype=np.int64)


def _image_folder_facts(a: dict[str, Any]) -> DataFacts:
    """The channels and, with `size`, the image size; the class count is the number of folders."""
    size = a["size"]
    hw: tuple[int | None, ...] = (None, None) if size is None else tuple(size) if isinstance(size, tuple) else (size, size)
    shape = (1 if a["grayscale"] else 3,) + hw
    return DataFacts("image_folder", shape, "float", (), "long", "classification", None, False, labelled_images(shape))


def _load_image_folder(args: dict[str, Any], root: str, uint8: bool = False) -> Bundle:
    t0 = time.perf_counter()
    a = resolve("image_folder", args)
    base = find_path(a["path"], root, "image_folder", folder=True)
    size: tuple[int, int] | None = None
    if a["size"] is not None:
        height, width = IntTuple(2).expand(a["size"])
        size = (height, width)
    if a["test_path"]:
        train_dir, test_dir = base, find_path(a["test_path"], root, "image_folder test_path", arg="test_path",
                                              folder=True)
    elif os.path.isdir(os.path.join(base, "train")) and os.path.isdir(os.path.join(base, "test")):
        train_dir, test_dir = os.path.join(base, "train"), os.path.join(base, "test")
    else:
        train_dir, test_dir = base, None
    classes, train_samples = _scan(train_dir, None)
    if test_dir is not None:
        _, test_samples = _scan(test_dir, classes)
        split = f"train {os.path.abspath(train_dir)}, test {os.path.abspath(test_dir)}"
    else:
        import numpy as np

        tr, te = split_fraction("image_folder", len(train_samples), a["test_fraction"], a["seed"], train_dir)
        test_samples = [train_samples[i] for i in te]
        train_samples = [train_samples[i] for i in np.asarray(tr)]
        split = f"{len(te)} of {len(tr) + len(te)} images of {os.path.abspath(train_dir)} held out " \
                f"(test_fraction {a['test_fraction']}; no train/ and test/ sub-folders, no test_path)"
    # decode only what the subset keeps
    itr, ite = subset_indices("image_folder", len(train_samples), len(test_samples), a["subset"], a["seed"])
    if itr is not None:
        train_samples = [train_samples[i] for i in itr]
    if ite is not None:
        test_samples = [test_samples[i] for i in ite]
    xtr, ytr = _decode(train_samples, size, a["grayscale"])
    xte, yte = _decode(test_samples, size, a["grayscale"])
    if xtr.shape[1:] != xte.shape[1:]:
        raise DataError(f"training images are {xtr.shape[2]}×{xtr.shape[1]} but test images {xte.shape[2]}×"
                        f"{xte.shape[1]}", arg="size", help="set `size: [H, W]` to resize every image")
    subset = a["subset"]
    xtr, ytr, xte, yte, norm, pixels = _finish("image_folder", dict(a, subset=None), xtr, ytr, xte, yte, None,
                                               uint8)
    return Bundle("image_folder", make_split(xtr, ytr, aliases=IMAGE_ALIASES),
                  make_split(xte, yte, aliases=IMAGE_ALIASES), task="classification",
                  num_classes=len(classes), classes=classes, pixels=pixels,
                  info={"split": split, "sample_shape": list(xtr.shape[1:]),
                        "normalize": norm, "subset": subset,
                        "seconds": round(time.perf_counter() - t0, 3), **({"uint8": True} if pixels else {})})


register(DatasetType(
    "image_folder",
    {
        "path": Arg(Text(), doc="a folder with train/ and test/ (each FOLDER/<class>/<image>), or the training "
                                "folder itself"),
        "test_path": Arg(Optional_(Text()), None, doc="the test folder, when path is the training folder"),
        "test_fraction": Arg(Float(0.0, 1.0, open_min=True), 0.2,
                             doc="with neither train/+test/ nor test_path: hold out this part (seeded)"),
        "size": Arg(Optional_(IntTuple(2)), None, doc="resize every image to [H, W] (or one number for both)"),
        "grayscale": Arg(Bool(), False, doc="one channel instead of RGB"),
        "normalize": Arg(Normalize(), None, doc="null: [0, 1]; true: per-channel mean/std of the training images; "
                                                "or [[means], [stds]]"),
        "seed": Seed(0, doc="seed for test_fraction and subset (the data's own seed; train.seed does not "
                                            "change it)"),
    },
    _load_image_folder, raw=lambda args, root: _load_image_folder(args, root, uint8=True),
    facts=_image_folder_facts,
    doc="images in class folders (torchvision's ImageFolder layout), decoded with Pillow; x (N, C, H, W)",
    needs="Pillow"))
