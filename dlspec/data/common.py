"""Helpers every loader module shares: argument kinds (Text, Normalize), argument resolution, paths,
the seeded subset and test split, normalisation, reshaping, and the numpy -> torch hand-over.

numpy and torch are imported inside the functions only: importing this module (as `dlspec check` does,
through the dataset registry) stays torch-free and numpy-free.
"""

from __future__ import annotations

import os
from typing import Any

from ..diagnostics import did_you_mean
from ..registry import REQUIRED, FloatList, Kind
from ..safeio import kind as file_kind
from ..safeio import shown
from .base import DATASETS, DataError, Split


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


def check_memory(name: str, nbytes: int, what: str, arg: str | None, help: str) -> None:
    """DataError when `nbytes` (what loading `what` takes) exceed the memory this machine has available."""
    from ..memory import check_fits, fmt_bytes

    budget = check_fits(nbytes)
    if budget is not None:
        raise DataError(f"{name}: {what} would take {fmt_bytes(nbytes)} of memory, more than the "
                        f"{fmt_bytes(budget.bytes or 0)} this machine has available", arg=arg, help=help,
                        notes=[budget.note()])


def blocked(path: str) -> str | None:
    """The folder on the way to `path` this process may not enter (permission denied), or None when `path`
    can be looked at (whether or not it exists)."""
    p = os.path.abspath(path)
    try:
        os.stat(p)
        return None
    except PermissionError:
        pass
    except OSError:
        return None
    while True:  # stat(p) is refused: the deepest folder above it that can be looked at is the one not entered
        parent = os.path.dirname(p)
        if parent == p:
            return p
        try:
            os.stat(parent)
            return parent
        except PermissionError:
            p = parent
        except OSError:
            return None


def permission_denied(what: str, path: str, folder: str, arg: str | None) -> DataError:
    return DataError(f"{what}: permission denied: cannot enter the folder '{folder}' (to reach '{path}')", arg=arg,
                     help="give this user read and enter permission (chmod u+rx, or a+rx), or use a copy it can read")


def find_path(path: str, root: str, what: str, arg: str = "path", folder: bool = False) -> str:
    """A user-given path: absolute, or relative to the working directory, else to the data root."""
    path = os.path.expanduser(path)
    candidates = [path] if os.path.isabs(path) else [path, os.path.join(root, path)]
    for c in candidates:
        if (os.path.isdir(c) if folder else os.path.isfile(c)):
            return c
    for c in candidates:  # there, but a FIFO, a device or a socket: never opened (a FIFO would block)
        try:
            k = file_kind(os.stat(c).st_mode)
        except OSError:
            continue
        if k and k != "a folder":
            raise DataError(f"{what}: '{shown(os.path.abspath(c))}' is {k}, not a {'folder' if folder else 'file'}",
                            arg=arg, help=f"give the path of a {'folder' if folder else 'regular file'}")
    for c in candidates:  # not found: perhaps not allowed to look
        b = blocked(c)
        if b is not None:
            raise permission_denied(what, os.path.abspath(c), b, arg)
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


def column_index(path: str, names: list[str] | None, ref: Any, width: int, what: str) -> int:
    """The 0-based index of a column given by name (from the header row `names`) or by index (-1 = last)."""
    if isinstance(ref, int):
        j = ref + width if ref < 0 else ref
        if not 0 <= j < width:
            raise DataError(f"{path} has {width} columns, no column {ref}", arg=what,
                            help=f"columns are numbered 0 .. {width - 1} (or -1 for the last)")
        return j
    if names is None:
        raise DataError(f"{what} '{ref}' is a column name but {path} has no header row", arg=what,
                        help="give a column number (0-based, -1 = last), or set header: true")
    if ref not in names:
        hint = did_you_mean(ref, names)
        raise DataError(f"{path} has no column '{ref}'", arg=what,
                        help=f"did you mean '{hint}'?" if hint else "columns: " + ", ".join(names))
    return names.index(ref)


def subset_indices(name: str, n_train: int, n_test: int, subset: dict[str, int] | None, seed: int) -> tuple[Any, Any]:
    """Indices for `subset: {train: N, test: M}`: the first N (M) after a shuffle seeded with `seed`.

    Train and test have their own random streams, so `test: M` picks the same test samples whatever
    `train:` says.  None where the whole split is kept.
    """
    import numpy as np

    if not subset:
        return None, None
    out: list[Any] = []
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


def take_subset(name: str, xtr: Any, ytr: Any, xte: Any, yte: Any, subset: dict[str, int] | None,
                seed: int) -> tuple[Any, Any, Any, Any]:
    """Apply `subset: {train: N, test: M}` (see subset_indices) to the four arrays."""
    itr, ite = subset_indices(name, len(xtr), len(xte), subset, seed)
    if itr is not None:
        xtr, ytr = xtr[itr], ytr[itr]
    if ite is not None:
        xte, yte = xte[ite], yte[ite]
    return xtr, ytr, xte, yte


def split_fraction(name: str, n: int, fraction: float, seed: int, what: str) -> tuple[Any, Any]:
    """Seeded random train / test indices, the test part `fraction` of n (at least 1 of each)."""
    import numpy as np

    n_test = int(round(n * fraction))
    if n < 2 or n_test < 1 or n_test >= n:
        raise DataError(f"{name}: cannot split {n} samples of {what} into training and test parts with "
                        f"test_fraction {fraction}", arg="test_fraction",
                        help="give more samples, another test_fraction, or a separate test set")
    perm = np.random.default_rng([seed, 2]).permutation(n)
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


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


def uint8_pixels(name: str, normalize: Any, standard: Any, channels: int, scale: bool,
                 shape: tuple[int, ...] | None = None) -> tuple[Any, dict[str, Any] | None]:
    """The Pixels (and the `normalize` info) that turn uint8 images into what the float loader makes of them:
    x * 1/255 when `scale`, then (x - mean) / std with the given or `standard` statistics.  Statistics to be
    computed from the data (normalize: true without `standard`) are the caller's case: they need the floats."""
    import numpy as np

    from .base import Pixels

    means_stds = None if normalize is None else (standard if normalize is True else normalize)
    if means_stds is not None and len(means_stds[0]) not in (1, channels):  # the float loader's own error
        normalize_arrays(name, np.zeros((1, channels, 1, 1), dtype=np.float32), None, normalize, standard)
    pixels = Pixels(scale=float(np.float32(1 / 255)) if scale else None,
                    mean=[float(v) for v in means_stds[0]] if means_stds else None,
                    std=[float(v) for v in means_stds[1]] if means_stds else None, shape=shape)
    norm = None if means_stds is None else {"mean": pixels.mean, "std": pixels.std,
                                             "from": "standard" if normalize is True else "given"}
    return pixels, norm


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


# --- folders of files (image_folder, text_classes) -----------------------------------------------------

FOLDER_DEPTH = 64  # folders inside a class folder, one inside the other


def regular(path: str) -> bool:
    """Whether path is a regular file (after symbolic links): a FIFO, a device or a socket is never opened."""
    import stat

    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def count_files(folder: str, n: int, noun: str) -> None:
    """DataError when a folder tree holds more than the folder-files bound of `noun` (images, text files)."""
    from ..readers import bound_words, bounds

    limit = bounds().folder_files
    if n > limit:
        raise DataError(f"'{folder}' holds more than {limit:,} {noun}, " + bound_words("folder_files", "a folder"),
                        arg="path", help=f"use a subset of the folder (a folder of fewer {noun})")


def files_below(d: str, folder: str, before: int, extensions: tuple[str, ...], name: str, noun: str) -> list[str]:
    """The files ending in one of `extensions` anywhere below the class folder d, in os.walk(followlinks=True)'s
    sorted order (as torchvision's scan): regular files only, a folder reached again through a symbolic link (a
    loop) entered once, at most FOLDER_DEPTH folders deep and the folder-files bound counted with the `before`
    found.  `name` (the data set) and `noun` (what the files are) word its refusals."""

    def unreadable(e: OSError) -> None:  # os.walk's onerror: a folder it cannot read is an error, not fewer files
        raise DataError(f"{name}: {'permission denied: ' if isinstance(e, PermissionError) else ''}cannot read the "
                        f"folder '{e.filename}'" + ("" if isinstance(e, PermissionError) else f" ({e.strerror or e})"),
                        arg="path", help="give this user read and enter permission (chmod u+rx), or use a copy it can "
                                         "read")

    out = []
    seen: set[tuple[int, int]] = set()
    top = d.rstrip(os.sep).count(os.sep)
    for dirpath, dirnames, files in os.walk(d, followlinks=True, onerror=unreadable):
        try:
            st = os.stat(dirpath)
        except OSError:
            dirnames[:] = []
            continue
        if (st.st_dev, st.st_ino) in seen:
            dirnames[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        if dirpath.count(os.sep) - top >= FOLDER_DEPTH:
            raise DataError(f"'{dirpath}' is more than {FOLDER_DEPTH} folders below '{d}', the bound for {name}",
                            arg="path", help=f"{name} reads FOLDER/<class>/<file>: move the {noun} up")
        dirnames.sort()
        for f in sorted(files):
            p = os.path.join(dirpath, f)
            if f.lower().endswith(extensions) and regular(p):
                out.append(p)
        count_files(folder, before + len(out), noun)
    return out


def make_split(x: Any, y: Any, fields: dict[str, Any] | None = None, aliases: dict[str, str] | None = None,
               padded: tuple[str, ...] = ()) -> Split:
    """numpy arrays -> a Split of torch tensors (sharing memory where the dtype already fits); `fields` are more
    per-sample arrays by name, `aliases` other names of x and y (see Split)."""
    import numpy as np
    import torch

    def tensor(a: Any) -> Any:
        return torch.from_numpy(np.ascontiguousarray(a))

    return Split(tensor(x), tensor(y), {k: tensor(v) for k, v in (fields or {}).items()}, dict(aliases or {}), padded)


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
