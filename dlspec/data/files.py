"""Data sets from the user's own files: `npz` (numpy arrays by key) and `csv` (a table of numbers).

Relative paths are read from the working directory, else from the data root.  numpy and torch are
imported inside the loaders only.
"""

from __future__ import annotations

import os
import re
import time
from typing import Any

from ..diagnostics import did_you_mean
from ..readers import ArrayHeader, CsvReader, ReadError, is_number, opened, read_npz
from ..registry import Arg, Bool, Choice, Float, Int, IntList, Kind, OneOf, Optional_
from .base import Bundle, DataError, DataFacts, DatasetType, FieldFacts, Seed, register
from .common import (
    Normalize,
    Text,
    check_memory,
    column_index,
    find_path,
    make_split,
    normalize_arrays,
    reshape_samples,
    resolve,
    split_fraction,
    subset_indices,
    take_subset,
)

# up to this many distinct integer values, a numeric target is read as class labels (task: auto)
MAX_AUTO_CLASSES = 20
MAX_CLASSES = 1_000_000  # class labels 0 .. K-1: K at most this (DLSPEC_MAX_CLASSES raises it)
FLOAT32_MAX = 3.4028234663852886e38  # a float beyond this is inf as float32
NPZ_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a zip archive (numpy.savez), or an empty one


def max_classes() -> int:
    try:
        n = int(os.environ.get("DLSPEC_MAX_CLASSES", ""))
    except ValueError:
        return MAX_CLASSES
    return n if n > 0 else MAX_CLASSES


def first_not_finite(a: Any) -> int | None:
    """The flat index of a's first value that is nan, infinite or too large for float32 (None: all fine);
    in chunks, so the check takes little memory beside the array."""
    import numpy as np

    if a.dtype.kind != "f":
        return None
    flat = a.reshape(-1)
    step = 1 << 22
    for i in range(0, flat.size, step):
        part = flat[i:i + step]
        bad = ~np.isfinite(part) if part.dtype.itemsize <= 4 else ~(np.abs(part) <= FLOAT32_MAX)
        if bad.any():
            return i + int(np.argmax(bad))
    return None


def _finite(name: str, a: Any, what: str, where: str, arg: str | None) -> None:
    """DataError at the first sample of `a` holding nan, inf or a value float32 cannot hold."""
    i = first_not_finite(a)
    if i is None:
        return
    per = max(1, a.size // max(1, len(a)))
    value = a.reshape(-1)[i]
    raise DataError(f"{name}: {what} in {where} holds {value!r} (sample {i // per}): not a finite number", arg=arg,
                    help="remove or fix that sample: nan and infinite values make every loss nan")


def _targets(name: str, task: str, y_train: Any, y_test: Any, where: str) -> tuple[str, Any, Any, int | None]:
    """(task, y_train, y_test, num_classes) from numeric arrays: int64 (N,) labels or float32 targets."""
    import numpy as np

    if task == "auto":
        task = "classification" if y_train.ndim == 1 and y_train.dtype.kind in "iub" else "regression"
    if task == "regression":
        for split, y in (("train", y_train), ("test", y_test)):
            _finite(name, y, f"the {split} targets", where, "task")
        ys = [y.astype(np.float32) for y in (y_train, y_test)]
        return task, *[y[:, None] if y.ndim == 1 else y for y in ys], None  # (N, 1): matches a Linear(…, 1)
    out = []
    for split, y in (("train", y_train), ("test", y_test)):
        if y.ndim != 1:
            raise DataError(f"{name}: class labels must be one per sample, but the {split} labels in {where} have "
                            f"shape {tuple(y.shape)}", arg="task",
                            help="use task: regression for vector targets, or store labels as (N,)")
        if y.dtype.kind == "f":
            if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
                raise DataError(f"{name}: the {split} labels in {where} are not whole numbers", arg="task",
                                help="class labels are integers 0 .. K-1; use task: regression for real targets")
        elif y.dtype.kind not in "iub":
            raise DataError(f"{name}: the {split} labels in {where} are not numbers (dtype {y.dtype})")
        most = max_classes()
        if len(y) and y.max() >= most:  # before a name is made for each of the classes it implies
            raise DataError(f"{name}: the {split} labels in {where} go up to {y.max().item()!r}, which would make "
                            f"{int(y.max()) + 1:,} classes; at most {most:,} are read", arg="task",
                            help="class labels are 0 .. K-1; use task: regression for numeric targets "
                            "(DLSPEC_MAX_CLASSES=N raises the bound)")
        y = y.astype(np.int64)
        if len(y) and y.min() < 0:
            raise DataError(f"{name}: the {split} labels in {where} include {int(y.min())}; class labels are "
                            "0 .. K-1", arg="task")
        out.append(y)
    k = int(max((int(y.max()) for y in out if len(y)), default=0)) + 1
    return task, out[0], out[1], k


# --- npz ----------------------------------------------------------------------------------------------


def data_error(e: ReadError, arg: str | None = "path") -> DataError:
    """A reader's refusal as the data set's diagnostic, with the help its kind calls for."""
    helps = {"encoding": "save the file as UTF-8",
             "ragged": "every row needs the same columns (is the delimiter right?)",
             "finite": "fix or remove that row: nan and infinite values (or values beyond float32, about 3.4e38) make "
                       "every loss nan",
             "value": "feature columns must hold numbers; leave text columns out with `features: [...]`",
             "memory": "use a smaller file, or a machine with more memory",
             "bound": "the file is damaged, or larger than meant: raise the bound if it is not (docs/limits.md)"}
    if e.kind in ("finite", "value"):
        arg = "features"
    elif e.kind == "ragged":
        arg = "delimiter"
    return DataError(str(e), arg=arg, help=helps.get(e.kind))


def _load_npz(args: dict[str, Any], root: str) -> Bundle:
    import numpy as np

    t0 = time.perf_counter()
    a = resolve("npz", args)
    path = find_path(a["path"], root, "npz")
    keys = {k: a[k] for k in ("x_train", "y_train", "x_test", "y_test")}
    try:
        with opened(path, ".npz file") as f:
            head = f.read(6)
    except ReadError as e:
        raise DataError(str(e), arg="path") from None
    if not head.startswith(NPZ_MAGIC) and not head.startswith(b"\x93NUMPY"):
        text = head and all(32 <= c < 127 or c in b"\t\r\n" for c in head)
        raise DataError(f"{path} is not a .npz file: it is not a zip archive (it starts with {head!r}"
                        + (", text" if text else "") + ")", arg="path",
                        help="npz reads files written by numpy.savez; for a table of numbers use the csv data set")
    if head.startswith(b"\x93NUMPY"):
        raise DataError(f"{path} is a .npy file (one array); npz needs a .npz file of named arrays", arg="path",
                        help="save with numpy.savez(path, x_train=..., y_train=..., x_test=..., y_test=...)")

    def accept(stored: list[str], headers: dict[str, ArrayHeader]) -> None:
        need = ["x_train", "y_train"]
        if any(keys[k] in stored for k in ("x_test", "y_test")):
            need += ["x_test", "y_test"]
        missing = [k for k in need if keys[k] not in stored]
        if missing:
            notes = [f"the file holds: {', '.join(stored) or 'no arrays'}"]
            notes += [f"'{keys[k]}': did you mean '{h}'?" for k in missing if (h := did_you_mean(keys[k], stored))]
            raise DataError(f"{path} has no array " + ", ".join(repr(keys[k]) for k in missing), arg=missing[0],
                            notes=notes, help="name the stored arrays with the options x_train, y_train, x_test, "
                                              "y_test (the test pair may be left out: test_fraction)")
        total = sum(h.nbytes + 4 * h.count for h in headers.values())  # each array and its float32 copy
        check_memory("npz", total, f"the arrays of {path}", "path", "use a smaller file (or a machine with more memory)")

    try:
        _, found = read_npz(path, list(dict.fromkeys(keys.values())), accept)
    except ReadError as e:
        raise DataError(str(e), arg="path", help={"file": "the file is damaged or not written by numpy.savez",
                                                  "value": "store numbers, one row per sample; object arrays are not "
                                                           "read (no pickles)"}.get(e.kind, data_error(e).help)) from None
    arrays = {k: found[keys[k]] for k in keys if keys[k] in found}
    for k, v in arrays.items():
        if v.ndim == 0:
            raise DataError(f"{path}: array '{keys[k]}' is not numeric data per sample (dtype {v.dtype}, "
                            f"shape {tuple(v.shape)})", arg=k, help="store numbers, one row per sample")
        if k.startswith("x"):
            _finite("npz", v, f"'{keys[k]}'", path, k)
    split_note = None
    if "x_test" not in arrays:
        x, y = arrays["x_train"], arrays["y_train"]
        if len(x) != len(y):
            raise DataError(f"{path}: '{keys['x_train']}' has {len(x)} samples but '{keys['y_train']}' has {len(y)}")
        tr, te = split_fraction("npz", len(x), a["test_fraction"], a["seed"], path)
        arrays = {"x_train": x[tr], "y_train": y[tr], "x_test": x[te], "y_test": y[te]}
        split_note = f"no test arrays: {len(te)} of {len(x)} samples held out (test_fraction {a['test_fraction']})"
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if len(x) != len(y):
            raise DataError(f"{path}: '{keys[f'x_{split}']}' has {len(x)} samples but '{keys[f'y_{split}']}' has "
                            f"{len(y)}", help="x and y must have one entry per sample, in the same order")
    if arrays["x_train"].shape[1:] != arrays["x_test"].shape[1:]:
        raise DataError(f"{path}: training samples have shape {tuple(arrays['x_train'].shape[1:])} but test samples "
                        f"{tuple(arrays['x_test'].shape[1:])}")
    task, ytr, yte, num_classes = _targets("npz", a["task"] or "auto", arrays["y_train"], arrays["y_test"], path)
    xtr, ytr, xte, yte = take_subset("npz", arrays["x_train"], ytr, arrays["x_test"], yte, a["subset"], a["seed"])
    norm = None
    if a["dtype"] == "long":
        if xtr.dtype.kind not in "iub" or a["scale"] or a["normalize"] is not None:
            raise DataError(f"npz dtype: long needs integer x arrays and no scale / normalize ({path} x is "
                            f"{xtr.dtype})", arg="dtype")
        xtr, xte = xtr.astype(np.int64), xte.astype(np.int64)
    else:
        xtr, xte = xtr.astype(np.float32), xte.astype(np.float32)  # copies: safe to scale in place
        if a["scale"]:
            xtr /= np.float32(a["scale"])
            xte /= np.float32(a["scale"])
        norm = normalize_arrays("npz", xtr, xte, a["normalize"])
    xtr, xte = reshape_samples("npz", xtr, a["shape"]), reshape_samples("npz", xte, a["shape"])
    info = {"file": os.path.abspath(path), "keys": keys, "sample_shape": list(xtr.shape[1:]), "normalize": norm,
            "scale": a["scale"], "subset": a["subset"], "seconds": round(time.perf_counter() - t0, 3)}
    if split_note:
        info["split"] = split_note
    return Bundle("npz", make_split(xtr, ytr), make_split(xte, yte), task=task, num_classes=num_classes,
                  classes=[str(i) for i in range(num_classes)] if num_classes else None, info=info)


_SHAPE = Optional_(IntList(min=1, allow_minus_one=True, text="a list of positive sizes (one may be -1)"))
_NORMALIZE_DOC = "null; true: per channel (axis 1) mean/std of the training split; or [[means], [stds]]"

register(DatasetType(
    "npz",
    {
        "path": Arg(Text(), doc="the .npz file (numpy.savez)"),
        "x_train": Arg(Text(), "x_train", doc="key of the training inputs"),
        "y_train": Arg(Text(), "y_train", doc="key of the training targets"),
        "x_test": Arg(Text(), "x_test", doc="key of the test inputs (absent: test_fraction of the training arrays)"),
        "y_test": Arg(Text(), "y_test", doc="key of the test targets"),
        "test_fraction": Arg(Float(0.0, 1.0, open_min=True), 0.2, doc="used only when the file has no test arrays"),
        "task": Arg(Optional_(Choice("classification", "regression")), None,
                    doc="default: classification for integer (N,) labels, else regression"),
        "scale": Arg(Optional_(Float(0.0, open_min=True)), None, doc="divide x by this (e.g. 255)"),
        "normalize": Arg(Normalize(), None, doc=_NORMALIZE_DOC),
        "shape": Arg(_SHAPE, None, doc="reshape each sample (after normalising)"),
        "dtype": Arg(Choice("float", "long"), "float", doc="x as float32, or int64 ids (for an Embedding)"),
        "seed": Seed(0, doc="seed for test_fraction and subset (the data's own seed; train.seed does not "
                                            "change it)"),
    },
    _load_npz,
    # the arrays' shapes are known once the file is read; what the options fix is known before
    facts=lambda a: DataFacts("npz", tuple(a["shape"]) if a["shape"] and -1 not in a["shape"] else None, a["dtype"],
                              None, None, a["task"], None, ids_help="write `dtype: long` under train.data (integer "
                              "arrays as token ids)"),
    doc="arrays from a .npz file by key (x_train, y_train, x_test, y_test)"))


# --- csv ----------------------------------------------------------------------------------------------


class Columns(Kind):
    """A list of column names or 0-based indices."""

    text = "a list of column names or indices"

    def check(self, v: Any) -> str | None:
        def ok(c: Any) -> bool:
            return (isinstance(c, str) and bool(c)) or (isinstance(c, int) and not isinstance(c, bool))

        return None if isinstance(v, list) and v and all(ok(c) for c in v) else f"must be {self.text}"


GROUP_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


class Groups(Kind):
    """{name: [columns]} or {name: {columns: [...], dtype: long}}: named column groups, each a field of its own."""

    text = "a mapping {name: [columns]} (or {name: {columns: [...], dtype: float or long}})"

    def check(self, v: Any) -> str | None:
        if not isinstance(v, dict) or not v:
            return f"must be {self.text}"
        for name, cols in v.items():
            if not isinstance(name, str) or not GROUP_NAME.fullmatch(name):
                return f"has the group name {name!r}: a name is letters, digits and _ (at most 64, not starting " \
                       "with a digit)"
            if name in ("x", "y"):
                return f"has the group name '{name}', the name of the samples (x) or targets (y): choose another"
            if isinstance(cols, dict):
                extra = [k for k in cols if k not in ("columns", "dtype")]
                if extra or "columns" not in cols or cols.get("dtype", "float") not in ("float", "long"):
                    return f"has a group '{name}' that is not {{columns: [...], dtype: float or long}}"
                cols = cols["columns"]
            if Columns().check(cols) is not None:
                return f"has a group '{name}' that is not a list of column names or indices"
        return None

    def normalize(self, v: Any) -> Any:
        """{name: (columns, dtype)}."""
        if v is None:
            return None
        return {n: (list(c["columns"]), c.get("dtype", "float")) if isinstance(c, dict) else (list(c), "float")
                for n, c in v.items()}


class Delimiter(Kind):
    text = "one character, e.g. ',' or ';' or '\\t'"

    def check(self, v: Any) -> str | None:
        return None if isinstance(v, str) and len(v) == 1 and v not in "\"\r\n" else f"must be {self.text}"


_is_number = is_number


def _has_header(rows: list[tuple[int, list[str]]], header: Any) -> bool:
    if header != "auto":
        return bool(header)
    if len(rows) < 2:
        return False
    first, rest = rows[0][1], [r for _, r in rows[1:50]]
    for j, cell in enumerate(first):
        if not _is_number(cell) and all(_is_number(r[j]) for r in rest):
            return True  # a name above a column of numbers
    # every field text, and some column of the rest numeric, or all of them distinct words
    return all(not _is_number(c) for c in first) and any(all(_is_number(r[j]) for r in rest)
                                                         for j in range(len(first)))


def _not_finite(path: str, line: int, column: str, cell: str, arg: str) -> DataError:
    return DataError(f"{path} line {line}, {column}: {cell!r} is not a finite number", arg=arg,
                     help="fix or remove that row: nan and infinite values (or values beyond float32, about 3.4e38) "
                          "make every loss nan")


def _finite_number(s: str) -> bool:
    try:
        return abs(float(s)) <= FLOAT32_MAX
    except ValueError:
        return False


def _read_split(reader: CsvReader, p: str, arg: str, a: dict[str, Any]
                ) -> tuple[Any, list[tuple[int, str]], list[str], str, dict[str, Any]]:
    """One CSV file's features (rows × features), its (line, target cell) pairs, the feature names, the
    target's, and each column group's values (rows × its columns): the header and the columns decided from its
    first rows, then every row streamed.  float32, or float64 where a column is read as whole numbers."""
    rows = reader.head
    groups = a["groups"] or {}
    by_name = [c for c in [a["target"], *(a["features"] or []), *(c for g in groups.values() for c in g[0])]
               if isinstance(c, str)]
    header = _has_header(rows, a["header"]) or (a["header"] == "auto" and bool(by_name) and
                                                all(c in rows[0][1] for c in by_name))
    names = rows[0][1] if header else None
    if header and len(rows) == 1:
        raise DataError(f"{p} has a header but no data rows", arg=arg)
    width = reader.width
    t = column_index(p, names, a["target"], width, "target")
    feats = [column_index(p, names, c, width, "features") for c in a["features"]] if a["features"] else \
        [j for j in range(width) if j != t]
    if t in feats:
        raise DataError(f"the target column {a['target']!r} is also in features", arg="features")
    if not feats:
        raise DataError(f"{p} has no feature columns besides the target", arg="features")
    group_cols = {g: [column_index(p, names, c, width, "groups") for c in cols] for g, (cols, _) in groups.items()}
    for g, cols in group_cols.items():
        if t in cols:
            raise DataError(f"the target column {a['target']!r} is also in the column group '{g}'", arg="groups")
    numeric = feats + sorted({j for cols in group_cols.values() for j in cols} - set(feats))
    label = [names[j] if names else str(j) for j in feats]
    shown_names = [repr(names[j]) if names else str(j) for j in numeric]
    whole = a["dtype"] == "long" or any(d == "long" for _, d in groups.values())
    table = reader.table(header, numeric, shown_names, text=t, dtype="float64" if whole else "float32")
    pos = {j: k for k, j in enumerate(numeric)}
    x = table.x[:, :len(feats)]
    out = {}
    for g, cols in group_cols.items():
        values = table.x[:, [pos[j] for j in cols]]
        if groups[g][1] == "long":
            _check_whole(values, table.lines, [shown_names[pos[j]] for j in cols], p, "groups")
        out[g] = values
    if a["dtype"] == "long":
        _check_whole(x, table.lines, shown_names[:len(feats)], p, "dtype")
    return x, list(zip(table.lines, table.text or [], strict=True)), label, names[t] if names else str(t), out


WHOLE_MAX = 2**53  # the largest whole number a CSV cell (read as float64) holds exactly


def _check_whole(values: Any, lines: list[int], columns: list[str], path: str, arg: str) -> None:
    """Values read as integer ids (dtype: long): whole numbers from 0 to WHOLE_MAX, else a DataError at the
    first other value's line and column."""
    import numpy as np

    bad = (values < 0) | (values != np.floor(values)) | (values > WHOLE_MAX)
    if bad.any():
        i, k = (int(v) for v in np.unravel_index(int(np.argmax(bad)), bad.shape))
        raise DataError(f"{path} line {lines[i]}, column {columns[k]}: {values[i, k]!r} is not a whole number from 0 "
                        f"to 2**53, as an integer id (dtype long) must be", arg=arg,
                        help="read these columns as float (the default), or fix that row")


def _load_csv(args: dict[str, Any], root: str) -> Bundle:
    import numpy as np

    t0 = time.perf_counter()
    a = resolve("csv", args)
    if a["dtype"] == "long" and a["normalize"] is not None:
        raise DataError("csv dtype: long reads token ids, which are not normalised", arg="normalize",
                        help="leave normalize out, or read the features as float")
    path = find_path(a["path"], root, "csv")
    files = {"train": (path, "path")}
    if a["test_path"]:
        files["test"] = (find_path(a["test_path"], root, "csv test_path", arg="test_path"), "test_path")
    parsed: dict[str, tuple[Any, list[tuple[int, str]]]] = {}  # split -> (x, [(line number, target cell)])
    grouped: dict[str, dict[str, Any]] = {}  # split -> {group: values}
    names_used: list[str] = []
    target_name = ""
    for split, (p, arg) in files.items():
        try:
            with CsvReader(p, a["delimiter"]) as reader:
                x, targets, label, target, grouped[split] = _read_split(reader, p, arg, a)
        except ReadError as e:
            raise data_error(e, arg) from None
        if split == "train":
            names_used, target_name = label, target
        parsed[split] = (x, targets)
    if "test" in parsed and parsed["test"][0].shape[1] != parsed["train"][0].shape[1]:
        raise DataError(f"{a['test_path']} gives {parsed['test'][0].shape[1]} features, {path} "
                        f"{parsed['train'][0].shape[1]}", arg="test_path")
    # targets: classes (sorted labels) or numbers
    cells = {s: [v for _, v in parsed[s][1]] for s in parsed}
    every = [v for s in parsed for v in cells[s]]
    numeric = all(_is_number(v) for v in every)
    task = a["task"]
    if task == "auto":
        if not numeric:
            task = "classification"
        else:
            vals = np.array(every, dtype=np.float64)
            whole = np.all(np.isfinite(vals)) and np.all(vals == np.round(vals))
            task = "classification" if whole and len(np.unique(vals)) <= MAX_AUTO_CLASSES else "regression"
    classes = None
    ys: dict[str, Any] = {}
    if task == "regression":
        for s in parsed:
            for line, v in parsed[s][1]:
                if not _is_number(v):
                    raise DataError(f"{files[s][0]} line {line}, target column {target_name!r}: {v!r} is not a "
                                    "number (task: regression)", arg="task",
                                    help="a regression target must be numeric; text labels mean task: classification")
                if not _finite_number(v):
                    raise _not_finite(files[s][0], line, f"target column {target_name!r}", v, "target")
            ys[s] = np.array(cells[s], dtype=np.float32)[:, None]
    else:
        for s in parsed:
            for line, v in parsed[s][1]:
                if v == "":
                    raise DataError(f"{files[s][0]} line {line}: the target ({target_name!r}) is missing",
                                    arg="target")
        if numeric:  # sorted by value: labels 0 .. K-1 keep their ids
            for s in parsed:
                for line, v in parsed[s][1]:
                    if not _finite_number(v):
                        raise _not_finite(files[s][0], line, f"target column {target_name!r}", v, "target")
            values = sorted({float(v) for v in every})
            classes = [str(int(f)) if f == int(f) else str(f) for f in values]
            pos = {f: i for i, f in enumerate(values)}
            ids = {v: pos[float(v)] for v in set(every)}
        else:
            classes = sorted(set(every))
            ids = {c: i for i, c in enumerate(classes)}
        if len(classes) > max_classes():
            raise DataError(f"{path}: the target column {target_name!r} has {len(classes):,} distinct labels; at most "
                            f"{max_classes():,} classes are read", arg="target",
                            help="is it the right column? numeric targets are task: regression "
                            "(DLSPEC_MAX_CLASSES=N raises the bound)")
        for s in parsed:
            ys[s] = np.array([ids[v] for v in cells[s]], dtype=np.int64)
    xtr = parsed["train"][0]
    gtr = grouped["train"]
    if "test" in parsed:
        xte, yte, ytr, gte = parsed["test"][0], ys["test"], ys["train"], grouped["test"]
        split_note = f"test rows from {os.path.abspath(files['test'][0])}"
    else:
        tr, te = split_fraction("csv", len(xtr), a["test_fraction"], a["seed"], path)
        xtr, xte, ytr, yte = xtr[tr], xtr[te], ys["train"][tr], ys["train"][te]
        gtr, gte = {g: v[tr] for g, v in gtr.items()}, {g: v[te] for g, v in gtr.items()}
        split_note = f"{len(te)} of {len(tr) + len(te)} rows held out for testing " \
                     f"(test_fraction {a['test_fraction']}, seed {a['seed']})"
    itr, ite = subset_indices("csv", len(xtr), len(xte), a["subset"], a["seed"])
    if itr is not None:
        xtr, ytr, gtr = xtr[itr], ytr[itr], {g: v[itr] for g, v in gtr.items()}
    if ite is not None:
        xte, yte, gte = xte[ite], yte[ite], {g: v[ite] for g, v in gte.items()}
    kind = np.int64 if a["dtype"] == "long" else np.float32
    xtr, xte = xtr.astype(kind), xte.astype(kind)
    norm = normalize_arrays("csv", xtr, xte, a["normalize"]) if a["dtype"] == "float" else None
    for g, (_, dtype) in (a["groups"] or {}).items():
        gtr[g], gte[g] = gtr[g].astype(np.int64 if dtype == "long" else np.float32), \
            gte[g].astype(np.int64 if dtype == "long" else np.float32)
        if dtype == "float" and a["normalize"] is True:  # each column standardised with the training rows' statistics
            normalize_arrays("csv", gtr[g], gte[g], True)
    info = {"file": os.path.abspath(path), "features": names_used, "target": target_name, "split": split_note,
            "normalize": norm, "subset": a["subset"], "seconds": round(time.perf_counter() - t0, 3)}
    if a["groups"]:
        info["groups"] = {g: {"columns": [str(c) for c in cols], "dtype": dtype} for g, (cols, dtype) in a["groups"].items()}
    return Bundle("csv", make_split(xtr, ytr, gtr), make_split(xte, yte, gte), task=task,
                  num_classes=len(classes) if classes is not None else None, classes=classes, info=info)


CSV_IDS_HELP = ("write `dtype: long` under train.data to read the feature columns as token ids, or, for a column of "
                "texts, use `data: {name: text_classes, path: FILE, text: COLUMN, label: COLUMN}` (ids from a "
                "vocabulary)")


def _csv_facts(a: dict[str, Any]) -> DataFacts:
    """The feature count when the columns are listed; the task (and the targets' form) when it is written; each
    column group's width and dtype."""
    task = None if a["task"] == "auto" else a["task"]
    target = {"classification": ((), "long"), "regression": ((1,), "float")}.get(task or "", (None, None))
    fields = {g: FieldFacts((len(cols),), dtype, doc=f"columns {', '.join(map(str, cols))}")
              for g, (cols, dtype) in (a["groups"] or {}).items()}
    return DataFacts("csv", (len(a["features"]),) if a["features"] else None, a["dtype"], target[0], target[1], task,
                     None, False, fields, CSV_IDS_HELP)


register(DatasetType(
    "csv",
    {
        "path": Arg(Text(), doc="the CSV file (the training rows, or all rows with test_fraction)"),
        "target": Arg(OneOf(Text(), Int()), -1, doc="the target column: a name (needs a header) or an index "
                                                    "(0-based, -1 = last)"),
        "features": Arg(Optional_(Columns()), None, doc="feature columns (names or indices); default: all others"),
        "test_path": Arg(Optional_(Text()), None, doc="a CSV file of test rows, same columns"),
        "test_fraction": Arg(Float(0.0, 1.0, open_min=True), 0.2, doc="without test_path: hold out this part "
                                                                      "(seeded random rows)"),
        "header": Arg(OneOf(Choice("auto"), Bool()), "auto", doc="whether the first row names the columns"),
        "delimiter": Arg(Delimiter(), ","),
        "task": Arg(Choice("auto", "classification", "regression"), "auto",
                    doc=f"auto: classification for text labels or at most {MAX_AUTO_CLASSES} distinct whole "
                        "numbers, else regression"),
        "normalize": Arg(Normalize(), None, doc="null; true: standardise each feature (and each float group's "
                                                "column) with the training split's mean/std; or [[means], [stds]] "
                                                "(the features only)"),
        "dtype": Arg(Choice("float", "long"), "float", doc="the features as float32, or as int64 ids (whole numbers "
                                                           "0 .. 2**53, for an Embedding)"),
        "groups": Arg(Optional_(Groups()), None, doc="named column groups, each a field a spec's inputs can read: "
                                                     "{numeric: [a, b], category: {columns: [c], dtype: long}}"),
        "seed": Seed(0, doc="seed for test_fraction and subset (the data's own seed; train.seed does not "
                                            "change it)"),
    },
    _load_csv,
    facts=_csv_facts,
    doc="a table: numeric feature columns and a target column (class labels or numbers); x (N, F)"))
