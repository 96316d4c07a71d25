"""Run folders: runs/<name>/<timestamp>/ with spec.yaml, metrics.csv, curves.png, checkpoint.pt, summary.json.

Every file is written whole or not at all (temp file, fsync, rename: WriteError on a full disk leaves the
previous file); checkpoints carry a SHA-256 of their contents, checked when read (with weights_only=True);
a run folder is locked (flock on the folder itself; RUN/.lock names the process) while a command writes it.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import datetime as _dt
import hashlib
import io
import json
import os
import platform
import re
import zipfile
from typing import Any

import yaml

from . import limits, pictures, safeio

# Options that do not change the training trajectory: a run may be resumed with them changed.
NOT_HASHED = (("name",), ("description",), ("train", "epochs"), ("train", "device"), ("train", "eval_every"),
              ("train", "checkpoint_every"), ("train", "eval_batch_size"), ("train", "early_stopping"),
              ("train", "restore_best"), ("train", "test_every"), ("train", "channels_last"), ("train", "compile"),
              ("train", "cuda_graph"), ("train", "fused"))


def may_change() -> str:
    """The train options a resume may change, as a phrase: `epochs, device, ... and fused`."""
    names = [p[-1] for p in NOT_HASHED if p[0] == "train"]
    return ", ".join(names[:-1]) + " and " + names[-1]


def _strip(data: Any) -> Any:
    d = copy.deepcopy(data)
    for path in NOT_HASHED:
        node = d
        for p in path[:-1]:
            node = node.get(p) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(path[-1], None)
    return d


def plain(data: Any) -> Any:
    """A spec document with only JSON types (YAML dates, sets... as text): what a checkpoint stores, so
    that torch.load(weights_only=True) can read it back."""
    return json.loads(json.dumps(data, default=str))


def spec_hash(data: Any) -> str:
    text = json.dumps(_strip(data), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def diff(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted paths that differ between two spec documents, with old → new values."""
    if not prefix:
        old, new = _strip(plain(old)), _strip(plain(new))
    out: list[str] = []
    if isinstance(old, dict) and isinstance(new, dict):
        for k in list(old) + [k for k in new if k not in old]:
            p = f"{prefix}.{k}" if prefix else str(k)
            if k not in new:
                out.append(f"{p}: removed (was {old[k]!r})")
            elif k not in old:
                out.append(f"{p}: added ({new[k]!r})")
            else:
                out += diff(old[k], new[k], p)
    elif isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for i, (a, b) in enumerate(zip(old, new, strict=True)):
            out += diff(a, b, f"{prefix}.{i}")
    elif old != new:
        out.append(f"{prefix or '(spec)'}: {old!r} → {new!r}")
    return out


def safe_name(name: str) -> str:
    """A spec name as one folder name: no separators, no '..', nothing hidden."""
    return safeio.file_part(name)


def new_run_dir(base: str, name: str) -> str:
    """runs/<name>/<timestamp>[-n]: a new folder, also when two runs start in the same second."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    parent = os.path.join(base, safe_name(name))
    os.makedirs(parent, exist_ok=True)
    n = 1
    while True:
        path = os.path.join(parent, stamp if n == 1 else f"{stamp}-{n}")
        try:
            os.mkdir(path)
            return path
        except FileExistsError:
            n += 1


def write_spec(run_dir: str, data: Any, source_path: str, overrides: list[str]) -> None:
    header = f"# resolved spec of this run (from {source_path}" + (f", with {' '.join(overrides)}" if overrides else "") + ")\n"
    text = header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    write_atomic(os.path.join(run_dir, "spec.yaml"), text.encode("utf-8"))


# --- writing: whole files or nothing (safeio's, named here for the run folder's callers) ------------------

WriteError = safeio.WriteError
write_atomic = safeio.write_atomic


# --- checkpoints --------------------------------------------------------------------------------------

CHECKSUM = "checksum"  # the key of the SHA-256 over everything else in the checkpoint (see digest)


def digest(obj: Any) -> str:
    """SHA-256 over a checkpoint's contents: every tensor's dtype, shape and bytes (in C order) and every
    other value's repr, dicts in their order (which torch.save keeps).  torch.load does not check the zip's
    CRCs, so a flipped byte inside a tensor would otherwise load as a different weight without a word."""
    import torch

    h = hashlib.sha256()

    def feed(x: Any) -> None:
        if isinstance(x, torch.Tensor):
            t = x.detach().cpu().contiguous()
            h.update(f"T{t.dtype}{list(t.shape)}:".encode())
            if t.numel():
                h.update(t.reshape(-1).view(torch.uint8).numpy().data)
        elif isinstance(x, dict):
            h.update(b"{")
            for k, v in x.items():
                feed(k)
                feed(v)
            h.update(b"}")
        elif isinstance(x, (list, tuple)):
            h.update(b"[")
            for v in x:
                feed(v)
            h.update(b"]")
        else:
            h.update(f"{type(x).__name__}:{x!r};".encode())

    feed(obj)
    return "sha256:" + h.hexdigest()


def atomic_save(obj: dict[str, Any], path: str) -> None:
    """torch.save(obj) to path with a checksum (digest) of obj added, atomically: path is the new checkpoint
    or the old one, never a part.  Raises WriteError (a full disk, ...), leaving no temp file."""
    import io

    import torch

    payload = {k: v for k, v in obj.items() if k != CHECKSUM}
    payload[CHECKSUM] = digest(payload)
    buf = io.BytesIO()
    torch.save(payload, buf)  # in memory: torch's own writer reports a full disk as a RuntimeError, without errno
    write_atomic(path, buf.getbuffer())


class CheckpointError(Exception):
    """A file that is not a usable checkpoint; str(): `PATH is damaged: checksum mismatch` and the like."""

    def __init__(self, path: str, reason: str, not_a_file: bool = False):
        self.path, self.reason = path, reason
        self.not_a_file = not_a_file  # a FIFO, a device, a folder, or unreadable: the path is wrong, not the file
        super().__init__(f"{safeio.shown(path)} {reason}")


# The bounds on what a checkpoint may hold (docs/limits.md, "Runs and checkpoints"), checked before its
# values are used.  torch.load(weights_only=True) reads lists and dicts nested to any depth, and values shared
# through the pickle's memo: 6 KB can stand for 10^9 values (a list of 1,000 references to a list of 1,000
# references to ...), or for a 1 MB tensor used a million times, which a walk over them (the checksum, the
# spec's comparison) would never finish.
CHECKPOINT_PICKLE = 16 * 2**20  # bytes of the archive's data.pkl (all but the tensors' bytes): what torch.load reads
CHECKPOINT_DEPTH = 256  # lists, dicts and tuples inside one another (a spec's own YAML nesting is at most 200)
CHECKPOINT_EXTRA = 64 * 2**20  # the bytes its values stand for: at most twice the file's size plus this
CHECKPOINT_ENV = {"pickle": "DLSPEC_MAX_CHECKPOINT_PICKLE", "depth": "DLSPEC_MAX_CHECKPOINT_DEPTH",
                  "bytes": "DLSPEC_MAX_CHECKPOINT_EXTRA"}


def checkpoint_bounds(size: int = 0) -> dict[str, int]:
    """The bounds in force for a checkpoint file of `size` bytes: the defaults, or the environment's
    DLSPEC_MAX_CHECKPOINT_* values."""
    return {"pickle": limits.env_bound(CHECKPOINT_ENV["pickle"], CHECKPOINT_PICKLE),
            "depth": limits.env_bound(CHECKPOINT_ENV["depth"], CHECKPOINT_DEPTH),
            "bytes": 2 * size + limits.env_bound(CHECKPOINT_ENV["bytes"], CHECKPOINT_EXTRA)}


def _children(x: Any) -> Any:
    if isinstance(x, dict):
        for k, v in x.items():
            yield k
            yield v
    else:
        yield from x


def _container(x: Any) -> bool:
    return isinstance(x, (dict, list, tuple, set, frozenset))


def _cost(x: Any) -> int:
    """The bytes a walk over a value reads (digest hashes them): 8 for a number or a container, more for a
    text, a long integer, a tensor (its elements' bytes, however few its storage holds: a stride of 0)."""
    if isinstance(x, (str, bytes, bytearray)):
        return 8 + len(x)
    if isinstance(x, int):
        return 8 + x.bit_length() // 8
    nbytes = getattr(x, "nbytes", None)  # a tensor
    return 8 + nbytes if isinstance(nbytes, int) else 8


def measure(obj: Any, most_bytes: int, most_depth: int) -> tuple[str, str] | None:
    """Why obj is not what a checkpoint holds — nested deeper than most_depth, standing for more than most_bytes
    bytes (see _cost; a value shared through the pickle's memo counted at every use, as a walk over it meets
    it), a container that holds itself — with the bound it is over ("depth", "bytes"; "" for the last), or
    None.  Each container is looked at once (its cost and depth remembered), so this takes the time of the
    pickle that made obj, not of the walk it stands for; and it does not recurse."""
    done: dict[int, tuple[int, int]] = {}  # id -> (bytes, depth) of a container looked at
    on_path: set[int] = set()
    frames: list[list[Any]] = []  # [container, its children, bytes so far, depth so far]

    def enter(x: Any) -> tuple[str, str] | None:
        if id(x) in on_path:
            return f"a {type(x).__name__} in it holds itself", ""
        if len(frames) >= most_depth:
            return f"its values are nested more than {most_depth:,} deep", "depth"
        on_path.add(id(x))
        frames.append([x, _children(x), 8, 1])
        return None

    def add(f: list[Any], cost: int, depth: int) -> tuple[str, str] | None:
        f[2] += cost
        f[3] = max(f[3], depth + 1)
        if len(frames) - 1 + f[3] > most_depth:
            return f"its values are nested more than {most_depth:,} deep", "depth"
        if f[2] > most_bytes:
            return f"its values stand for more than {most_bytes:,} bytes, a value used in several places counted " \
                "at each", "bytes"
        return None

    if not _container(obj):
        return None
    why = enter(obj)
    end = object()
    while frames and why is None:
        f = frames[-1]
        child = next(f[1], end)
        if child is end:
            frames.pop()
            on_path.discard(id(f[0]))
            done[id(f[0])] = (f[2], f[3])
            if frames:
                why = add(frames[-1], f[2], f[3])
        elif not _container(child):
            why = add(f, _cost(child), 0)
        elif id(child) in done:
            why = add(f, *done[id(child)])
        else:
            why = enter(child)
    return why


def _archive_problem(f: Any, bounds: dict[str, int]) -> str | None:
    """What torch.load must not be given: a compressed member (torch.save stores them; a compressed one can
    stand for any size), or a data.pkl beyond its bound.  None for a zip archive as torch.save writes one."""
    try:
        infos = zipfile.ZipFile(f).infolist()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, RuntimeError):
        return None  # torch.load says what is wrong (and _bad_member where)
    for info in infos:
        if info.compress_type != zipfile.ZIP_STORED:
            return f"is not a dlspec checkpoint: {info.filename} is compressed (torch.save stores its members as they are)"
        if info.filename.endswith("data.pkl") and info.file_size > bounds["pickle"]:
            return (f"is not a dlspec checkpoint: its {info.filename} has {info.file_size:,} bytes, more than the "
                    f"bound of {bounds['pickle']:,} ({CHECKPOINT_ENV['pickle']}=N raises it)")
    return None


def _bounds_problem(st: Any, bounds: dict[str, int]) -> str | None:
    found = measure(st, bounds["bytes"], bounds["depth"])
    if found is None:
        return None
    why, bound = found
    bound_is = {"depth": f"the bound; {CHECKPOINT_ENV['depth']}=N raises it",
                "bytes": f"the bound: twice the file's size plus 64 MiB; {CHECKPOINT_ENV['bytes']}=N raises the 64 MiB"}
    return f"is not a dlspec checkpoint: {why}" + (f" ({bound_is[bound]})" if bound else "")


def load_checkpoint(path: str) -> dict[str, Any]:
    """A dlspec checkpoint (checkpoint.pt, best.pt), verified: its checksum when it has one (checkpoints of
    an earlier dlspec have none: then the zip archive's CRCs).  CheckpointError says what is wrong: not a
    regular file (a FIFO, a device, a folder: refused before it is read), empty, not a zip archive, truncated,
    damaged (checksum or CRC mismatch, unreadable), not a dlspec checkpoint (also: beyond the bounds of
    checkpoint_bounds, checked before its values are walked)."""
    import pickle

    import torch

    try:
        what = safeio.kind(os.stat(path).st_mode)
    except OSError as e:
        raise CheckpointError(path, f"cannot be read: {os.strerror(e.errno) if e.errno else e}", True) from None
    if what:
        raise CheckpointError(path, f"is {what}, not a checkpoint file", True)
    try:
        f = safeio.open_input(path, "checkpoint file")  # (a FIFO put in its place since: refused, not waited on)
    except safeio.FileRefused as e:
        raise CheckpointError(path, f"cannot be read ({e})", True) from None
    with f:
        head = f.read(4)
        size = os.fstat(f.fileno()).st_size
        bounds = checkpoint_bounds(size)
        if size == 0:
            raise CheckpointError(path, "is empty (0 bytes)")
        if head != b"PK\x03\x04":
            raise CheckpointError(path, "is not a checkpoint: not a zip archive (torch.save writes one)")
        f.seek(0)
        if not zipfile.is_zipfile(f):
            raise CheckpointError(path, f"is truncated: {size:,} bytes, and the end of its zip archive is missing")
        problem = _archive_problem(f, bounds)
        if problem:
            raise CheckpointError(path, problem)
        f.seek(0)
        try:
            st = torch.load(f, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:  # weights_only refuses what a dlspec checkpoint never holds
            first = (str(e).strip().splitlines() or [""])[0][:160]
            raise CheckpointError(path, "is not a dlspec checkpoint: it holds objects torch.load(weights_only=True) "
                                  f"does not read ({first})") from None
        except Exception as e:  # noqa: BLE001 - miniz, pickle and zip errors of a damaged file
            bad = _bad_member(f)
            if bad:
                raise CheckpointError(path, f"is damaged: CRC mismatch in {bad}") from None
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
            raise CheckpointError(path, f"is damaged: {type(e).__name__}: {first}") from None
        problem = _bounds_problem(st, bounds)  # before anything walks it: the checksum, the spec's comparison
        if problem:
            raise CheckpointError(path, problem)
        if not isinstance(st, dict) or not isinstance(st.get("model"), dict):
            what = "a dict without 'model'" if isinstance(st, dict) else f"a {type(st).__name__}"
            raise CheckpointError(path, f"is not a dlspec checkpoint: it holds {what} (a plain state_dict? "
                                  "dlspec's hold it under 'model', with the spec)")
        if CHECKSUM in st:
            want = st.pop(CHECKSUM)
            if digest(st) != want:
                raise CheckpointError(path, "is damaged: checksum mismatch (its contents are not what was saved)")
        else:
            bad = _bad_member(f)  # a checkpoint of an earlier dlspec: no checksum, but the zip has CRCs
            if bad:
                raise CheckpointError(path, f"is damaged: CRC mismatch in {bad}")
    return st


def _bad_member(f: Any) -> str | None:
    """The first member of a zip archive (an open file) whose CRC does not match (its name inside the archive),
    or None."""
    try:
        f.seek(0)
        with zipfile.ZipFile(f) as z:
            bad = z.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, RuntimeError, ValueError):
        return None
    return bad.split("/", 1)[1] if bad and "/" in bad else bad


# --- the model a checkpoint belongs to ------------------------------------------------------------------

def model_layers(checked: Any) -> list[tuple[str, str]]:
    """The model of a checked spec as (where, what) lines: the input, then every layer (nested ones too) with
    its spec path and `name: Type(argument=value, ...)`, the arguments written or inferred (what the
    constructor gets).  Two specs with the same lines build the same modules whatever they write
    differently (an inferred in_features written out, `expect:`, the train: section)."""
    from .builder import ctor_args

    out: list[tuple[str, str]] = []
    if checked.spec.input is not None:
        out.append(("input", f"{list(checked.spec.input.shape)} {checked.spec.input.dtype}"))
    for r in checked.all_rows():
        where = ".".join(map(str, r.item.path)) + (f" (repeat {r.rep + 1})" if r.item.repeat > 1 else "")
        args = ", ".join(f"{k}={v}" for k, v in ctor_args(r).items())
        out.append((where, (f"{r.item.name}: " if r.item.name else "") + f"{r.type}({args})"))
    return out


def spec_model_layers(data: Any) -> list[tuple[str, str]] | None:
    """model_layers of a spec document (a checkpoint's "spec"), or None when it does not check cleanly with
    this dlspec (then only the weights' names and shapes can be compared)."""
    from . import loads
    from .infer import check

    try:
        checked = check(loads(json.dumps(data), "<checkpoint>"))
    except Exception:  # noqa: BLE001 - a spec from another dlspec: no claim
        return None
    return model_layers(checked) if checked.ok else None


def model_difference(old: list[tuple[str, str]], new: list[tuple[str, str]], new_name: str) -> str | None:
    """The first line where two models differ, as a phrase, or None when they are the same."""
    for i in range(max(len(old), len(new))):
        a = old[i] if i < len(old) else None
        b = new[i] if i < len(new) else None
        if a == b:
            continue
        if a is None:
            return f"{b[0]}: {b[1]} in {new_name}, nothing in the checkpoint's model"  # type: ignore[index]
        if b is None:
            return f"{a[0]}: {a[1]} in the checkpoint's model, nothing in {new_name}"
        where = a[0] if a[0] == b[0] else f"{a[0]} / {b[0]}"
        return f"{where}: {a[1]} in the checkpoint's model, {b[1]} in {new_name}"
    return None


def weights_difference(saved: dict[str, Any], model: dict[str, Any]) -> str | None:
    """The first entry of a state dict that the model's does not have as it is (name and shape), or None."""
    for k, t in model.items():
        if k not in saved:
            return f"{k} {list(t.shape)} is in the model, not in the checkpoint"
        if tuple(saved[k].shape) != tuple(t.shape):
            return f"{k} is {list(saved[k].shape)} in the checkpoint, {list(t.shape)} in the model"
    extra = [k for k in saved if k not in model]
    if extra:
        return f"{extra[0]} {list(saved[extra[0]].shape)} is in the checkpoint, not in the model"
    return None


# --- the run folder's lock -----------------------------------------------------------------------------

LOCK = ".lock"


class RunInUse(Exception):
    def __init__(self, run_dir: str, pid: int | None):
        self.run_dir, self.pid = run_dir, pid
        who = f"process {pid}" if pid else "another process"
        super().__init__(f"run folder {run_dir} is in use by {who}")


class RunLock:
    """An exclusive flock on the run folder itself (an fd of the folder), held while a command writes it; the
    kernel drops it when the process ends, however it ends.  RUN/.lock only says which process holds it (for
    the message of the next one): removing it, or a stale one of a killed process, changes nothing.  `note`
    says why there is no lock (a filesystem without flock)."""

    def __init__(self, path: str, fd: int | None, note: str = ""):
        self.path, self.fd, self.note = path, fd, note

    def release(self) -> None:
        if self.fd is None:
            return
        with contextlib.suppress(OSError):
            os.remove(self.path)  # while still locked: the next holder writes its own
        os.close(self.fd)
        self.fd = None

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def lock_run_dir(run_dir: str) -> RunLock:
    """Lock a run folder for this process: RunInUse when another holds it, WriteError when the folder
    cannot be opened; on a filesystem without flock (some network ones) an unlocked RunLock with a note.

    The lock is on the folder, not on a file in it: a lock file can be removed (or replaced) while its lock
    is held, and the next command would lock the new file and write beside the first."""
    path = os.path.join(run_dir, LOCK)
    try:
        import fcntl
    except ImportError:  # not POSIX
        return RunLock(path, None, f"note: {run_dir} is not locked (no flock on this system): two commands "
                       "resuming it at once would overwrite each other's checkpoints")
    try:
        fd = os.open(run_dir, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise WriteError(run_dir, e) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise RunInUse(run_dir, _read_pid(path)) from None
    except OSError as e:  # ENOLCK, EOPNOTSUPP, EBADF (NFS's flock wants a file open for writing): no flock here
        os.close(fd)
        return RunLock(path, None, f"note: {run_dir} is not locked ({os.strerror(e.errno or 0).lower()} "
                       "for flock on its filesystem): two commands resuming it at once would overwrite each "
                       "other's checkpoints")
    with contextlib.suppress(WriteError, OSError):  # who holds it, for the message of the next one (a full disk:
        write_atomic(path, f"{os.getpid()}\n".encode())  # unknown); whole or not at all, for a reader meanwhile
    return RunLock(path, fd)


def _read_pid(path: str) -> int | None:
    """The process id in RUN/.lock, or None (no file, not a regular one, not a number)."""
    try:
        with safeio.open_input(path, "lock file") as f:
            text = f.read(32).decode("ascii", "replace").strip()
    except (safeio.FileRefused, OSError):
        return None
    return int(text) if text.isdigit() else None


# --- where runs go ---------------------------------------------------------------------------------------

def unwritable(out: str) -> str | None:
    """Why run folders cannot be made under `out` (`not a directory: ... is a file`, `permission denied`),
    or None.  Checked before any data is loaded; nothing is created."""
    p = os.path.abspath(out)
    while not os.path.exists(p):
        parent = os.path.dirname(p)
        if parent == p:
            break
        p = parent
    if not os.path.isdir(p):
        return f"not a directory ({p} is a file)" if p == os.path.abspath(out) else \
            f"not a directory ({p} is a file, so no folder can be made in it)"
    if not os.access(p, os.W_OK | os.X_OK):
        return "permission denied" + ("" if p == os.path.abspath(out) else f" (no folder can be made in {p})")
    return None


class MetricsLog:
    def __init__(self, run_dir: str, history: list[dict[str, Any]] | None = None):
        self.path = os.path.join(run_dir, "metrics.csv")
        self.rows: list[dict[str, Any]] = list(history or [])

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        self.write()

    def write(self) -> None:
        """metrics.csv of the rows so far, atomically (WriteError); no rows: no file."""
        if not self.rows:
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.path)
            return
        cols: list[str] = []
        for r in self.rows:
            cols += [k for k in r if k not in cols]
        order = ("epoch", "train_", "val_", "test_")  # then lr and timings: the same columns whatever eval_every
        cols.sort(key=lambda c: next((i for i, p in enumerate(order) if c.startswith(p)), len(order)))
        f = io.StringIO(newline="")
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        for r in self.rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
        write_atomic(self.path, f.getvalue().encode("utf-8"))


def plot_curves(run_dir: str, rows: list[dict[str, Any]], name: str | None = None,
                best: dict[str, Any] | None = None) -> str | None:
    """curves.png (see curves_figure).  Returns a note when matplotlib is missing."""
    try:
        fig = curves_figure(rows, title=run_title(name, run_dir), best=best)
    except ImportError:
        return "curves.png not written: matplotlib is not installed (pip install 'dlspec[plot]')"
    if fig is not None:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110)
        write_atomic(os.path.join(run_dir, "curves.png"), buf.getbuffer())
    return None


def run_title(name: str | None, run_dir: str) -> str:
    """`LeNet · 2026-11-25 03:09:56`: the spec's name and the date-time of its run folder."""
    stamp = os.path.basename(os.path.normpath(run_dir))
    m = re.fullmatch(r"(\d{4})(\d\d)(\d\d)-(\d\d)(\d\d)(\d\d)(-\d+)?", stamp)
    when = f"{m[1]}-{m[2]}-{m[3]} {m[4]}:{m[5]}:{m[6]}" + (f" ({m[7][1:]})" if m[7] else "") if m else stamp
    return f"{name} · {when}" if name else when


def curves_figure(rows: list[dict[str, Any]], title: str = "", best: dict[str, Any] | None = None) -> Any:
    """Loss and each metric per epoch (train, val, test), a learning-rate panel when the lr changed, and a
    line at the best epoch of early stopping; None without rows.  ImportError without matplotlib."""
    # the object API with the Agg canvas: no pyplot (whose import alone took 0.5 s of a 4 s quick start)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    if not rows:
        return None
    epochs = [r["epoch"] for r in rows]
    metrics = sorted({k.split("_", 1)[1] for r in rows for k in r if k.startswith(("train_", "val_", "test_"))})
    metrics = (["loss"] if "loss" in metrics else []) + [m for m in metrics if m != "loss"]  # (a GAN: d_loss, ...)
    lrs = [(r["epoch"], float(r["lr"])) for r in rows if r.get("lr") not in (None, "")]
    with_lr = len({v for _, v in lrs}) > 1  # a scheduler changed it: one more panel
    panels = len(metrics) + with_lr
    fig = Figure(figsize=(4.5 * panels, 3.8))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, panels, squeeze=False)[0]
    for ax, m in zip(axes, metrics, strict=False):
        for split, style in (("train", "-o"), ("val", "-s"), ("test", "-^")):
            pts = [(e, r[f"{split}_{m}"]) for e, r in zip(epochs, rows, strict=True) if r.get(f"{split}_{m}") not in (None, "")]
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], style, label=split, markersize=3)
        ax.set_title(m)
    if with_lr:
        ax = axes[-1]
        ax.plot([e for e, _ in lrs], [v for _, v in lrs], "-o", color="tab:gray", markersize=3, label="lr")
        lo, hi = min(v for _, v in lrs), max(v for _, v in lrs)
        if lo > 0 and hi / lo > 20:  # a one-cycle or a long step decay: orders of magnitude
            ax.set_yscale("log")
        ax.set_title("learning rate")
    for ax in axes:
        if best is not None:
            ax.axvline(best["epoch"], color="tab:red", linestyle="--", linewidth=1,
                       label=f"best epoch {best['epoch']} ({best['metric']})")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(pictures.title_text(title), parse_math=False)  # a spec's name: text, never mathtext
    fig.tight_layout()
    return fig


def cpu_model() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo), else what platform knows."""
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return name


def versions() -> dict[str, str]:
    import numpy
    import torch

    from . import __version__

    v = {"dlspec": __version__, "torch": torch.__version__, "numpy": numpy.__version__,
         "python": platform.python_version()}
    try:
        import torchvision  # noqa: F401

        v["torchvision"] = torchvision.__version__
    except Exception:  # noqa: BLE001 - a broken torchvision must not stop a run
        pass
    return v


def write_summary(run_dir: str, summary: dict[str, Any]) -> None:
    write_atomic(os.path.join(run_dir, "summary.json"), json.dumps(summary, indent=2, default=str).encode("utf-8"))
