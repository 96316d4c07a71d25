"""Files in and out, safely: the one place that decides what a command may read and where it may write.

- **Inputs are regular files.** A FIFO, a device, a socket or a folder given where a file is read is refused
  before anything blocks on it: `open_input` opens without blocking (O_NONBLOCK) and looks at what it opened
  (fstat), so a FIFO swapped in between a check and the open is refused too.  `check_input` does the same for
  readers that take a path (PIL, torch.load), and `regular_entries` lists a folder's regular files only.
- **Outputs land where the user said.** `inside(folder, name)` is a path under `folder` (resolved, symlinks
  included) or a refusal; `file_part` turns any text (a spec's name) into one safe file-name part.
  `check_output` refuses a target that exists and is not a regular file (/dev/full, a FIFO, a folder), so an
  atomic rename never replaces a device.  `write_atomic` writes a whole file or nothing (temp, fsync, rename);
  `write_together` several files that belong together: all of them, or none.
- **What is printed is printable.** `shown(text)` escapes control characters (terminal escape codes in a file
  name are shown as `\\x1b`, never sent to the terminal).

Every refusal is a FileRefused (or a WriteError for a failed write) whose str() is one line for the user.
This module imports nothing of dlspec and never torch.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import tempfile
import unicodedata
from collections.abc import Iterable
from typing import IO


class FileRefused(Exception):
    """A path a command will not read or write; str() is one line: `PATH is a FIFO (named pipe), not a file`."""


class WriteError(Exception):
    """A file could not be written (a full disk, a quota, permissions); the file as it was before, if any, is
    unchanged and no temp file is left.  str(): `no space left on device (PATH)`."""

    def __init__(self, path: str, error: OSError):
        self.path, self.error = path, error
        self.errno = error.errno
        reason = os.strerror(error.errno) if error.errno else (str(error) or type(error).__name__)
        super().__init__(f"{reason[:1].lower() + reason[1:]} ({shown(path)})")


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def shown(text: object) -> str:
    """Text as it may be printed: control characters (ESC, NUL, newlines, bidi overrides) as escapes, and lone
    surrogates too (a file name's undecodable byte such as 0x9b, a C1 CSI to some terminals, is `\\udc9b`)."""
    s = str(text)
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), s)


def kind(mode: int) -> str | None:
    """What a file of this st_mode is, when it is not a regular file: `a FIFO (named pipe)`, ..., or None."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _a(what: str) -> str:
    """`a file`, `an image file`: the article a noun takes (by its first letter, enough for dlspec's nouns)."""
    return ("an " if what[:1].lower() in "aeio" else "a ") + what


def _reason(e: OSError) -> str:
    r = e.strerror or str(e) or type(e).__name__
    return r[:1].lower() + r[1:]


def check_input(path: str, what: str = "file") -> os.stat_result:
    """The stat of an input that must be a regular file (symlinks followed); FileRefused otherwise."""
    try:
        st = os.stat(path)
    except OSError as e:
        raise FileRefused(f"cannot read {shown(path)}: {_reason(e)}") from None
    k = kind(st.st_mode)
    if k:
        raise FileRefused(f"{shown(path)} is {k}, not {_a(what)}")
    return st


def open_input(path: str, what: str = "file") -> IO[bytes]:
    """A regular file opened for reading in binary mode; FileRefused for anything else, without blocking on a
    FIFO (opened non-blocking, then looked at).  The caller bounds how much it reads."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as e:
        if e.errno is not None and os.path.isdir(path):
            raise FileRefused(f"{shown(path)} is a folder, not {_a(what)}") from None
        raise FileRefused(f"cannot read {shown(path)}: {_reason(e)}") from None
    try:
        k = kind(os.fstat(fd).st_mode)
        if k:
            raise FileRefused(f"{shown(path)} is {k}, not {_a(what)}")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_bounded(path: str, limit: int, what: str = "file") -> bytes:
    """A regular file's bytes, refused (FileRefused) when it holds more than `limit` bytes."""
    with open_input(path, what) as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise FileRefused(f"{shown(path)} is larger than {limit:,} bytes, the bound for {_a(what)}")
    return data


def regular_entries(folder: str) -> list[str]:
    """The names of a folder's entries that are regular files (after symlinks), sorted; FIFOs, devices and
    sockets are left out (never opened), sub-folders too."""
    try:
        names = sorted(os.listdir(folder))
    except OSError as e:
        raise FileRefused(f"cannot read the folder {shown(folder)}: {_reason(e)}") from None
    out = []
    for n in names:
        with contextlib.suppress(OSError):
            if stat.S_ISREG(os.stat(os.path.join(folder, n)).st_mode):
                out.append(n)
    return out


def file_part(name: str, default: str = "run") -> str:
    """Any text as one file-name part: letters (any script), digits, `_ . + -` kept (NFKC-normalised), every other run of
    characters one `_`, no leading or trailing dot or `_`, at most 100 characters.  Never a separator, never
    `.` or `..`, never hidden."""
    text = unicodedata.normalize("NFKC", str(name))
    part = re.sub(r"[^\w.+-]+", "_", text).strip("._")[:100].strip("._")
    return part or default


def _within(path: str, folder: str) -> bool:
    root = os.path.realpath(folder)
    real = os.path.realpath(path)
    return real == root or real.startswith(root.rstrip(os.sep) + os.sep)


def inside(folder: str, *parts: str) -> str:
    """folder/part/...: a path that stays under `folder` once resolved (symlinks included), else FileRefused.
    Each part must be one name (no separator, not `.` or `..`): make it with file_part."""
    for p in parts:
        if not p or p in (".", "..") or os.sep in p or (os.altsep and os.altsep in p) or "\x00" in p:
            raise FileRefused(f"{shown(p)!r} is not one file name (it would leave {shown(folder)})")
    path = os.path.join(folder, *parts)
    if not _within(path, folder):
        raise FileRefused(f"{shown(path)} leads outside {shown(folder)} (a symbolic link)")
    return path


def check_output(path: str, what: str = "file") -> None:
    """Refuse an output path that exists and is not a regular file (a device such as /dev/full, a FIFO, a
    folder, a socket): writing would block, or replace it.  A symlink to a regular file is written through."""
    if not path:
        raise FileRefused(f"an empty path is not {_a(what)}")
    if "\x00" in path:
        raise FileRefused(f"{shown(path)} holds a NUL character")
    try:
        st = os.stat(path)
    except FileNotFoundError:
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            raise FileRefused(f"cannot write {shown(path)}: the folder {shown(parent)} does not exist") from None
        return
    except OSError as e:
        raise FileRefused(f"cannot write {shown(path)}: {_reason(e)}") from None
    k = kind(st.st_mode)
    if k:
        raise FileRefused(f"{shown(path)} is {k}: give the path of a file to write")


def check_output_folder(path: str, what: str = "folder") -> None:
    """Refuse a folder to write into that is empty (``''``), holds a NUL, or exists and is not a folder (a file,
    a FIFO, a device); one that does not exist yet is made by the writer (its parents too)."""
    if not path:
        raise FileRefused(f"an empty path is not {_a(what)}")
    if "\x00" in path:
        raise FileRefused(f"{shown(path)} holds a NUL character")
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return
    except OSError as e:
        raise FileRefused(f"cannot write into {shown(path)}: {_reason(e)}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise FileRefused(f"{shown(path)} is {kind(st.st_mode) or 'a file'}: give the path of {_a(what)}")


def make_folders(path: str) -> list[str]:
    """os.makedirs(path), returning the folders it made (outermost first), for remove_folders to take back;
    WriteError when it cannot (a full disk, a parent that is a file, permissions)."""
    missing = []
    p = os.path.abspath(path)
    while not os.path.isdir(p) and p != os.path.dirname(p):
        missing.append(p)
        p = os.path.dirname(p)
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        remove_folders(missing[::-1])
        raise WriteError(path, e) from None
    return missing[::-1]


def remove_folders(made: list[str]) -> None:
    """Remove the folders make_folders made, innermost first, where they are still empty."""
    for d in reversed(made):
        with contextlib.suppress(OSError):
            os.rmdir(d)


def _write_file(path: str, data: bytes | memoryview) -> None:
    """Write data to a new file and flush it to the disk (a rename after this cannot leave an empty file)."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def write_atomic(path: str, data: bytes | memoryview) -> None:
    """path gets exactly `data`, or stays as it was: written to a temp file beside it, then renamed over it.
    A symlink at path is replaced, never written through.  Raises WriteError; the temp file is removed either
    way.  A new file gets the permissions the user's umask gives (as open() would), a replaced one keeps its."""
    tmp = _staged(path, data)
    try:
        os.replace(tmp, path)
        tmp = ""
        _sync_dir(os.path.dirname(os.path.abspath(path)))
    except OSError as e:
        raise WriteError(path, e) from None
    finally:
        if tmp:
            with contextlib.suppress(OSError):
                os.remove(tmp)


def write_together(files: Iterable[tuple[str, bytes | memoryview]]) -> list[str]:
    """Files that belong together (an exported .py and the .pt it loads, the pictures of one `dlspec show`) all
    land, or none does and each path is as it was: every file is first written whole to a temp file beside it
    as `files` yields it (a generator that renders them holds one at a time; a full disk fails here, before any
    is replaced), then all are renamed in; should a rename fail, those already renamed are put back (a replaced
    file from a hard link kept to it).  Raises WriteError for the file that failed, or what `files` raised
    itself; no temp is left.  Returns the paths, in order."""
    staged: list[tuple[str, str]] = []
    try:
        for path, data in files:
            staged.append((path, _staged(path, data)))
    except BaseException:
        _remove(tmp for _, tmp in staged)
        raise
    done: list[tuple[str, str | None]] = []  # (path, a link to the file it replaced, or None)
    try:
        for path, tmp in staged:
            old = _keep(path)
            try:
                os.replace(tmp, path)
            except OSError as e:
                _remove([old] if old else [])
                raise WriteError(path, e) from None
            done.append((path, old))
    except WriteError:
        for path, old in reversed(done):
            with contextlib.suppress(OSError):
                if old:
                    os.replace(old, path)
                else:
                    os.remove(path)
        _remove(tmp for _, tmp in staged)
        raise
    _remove(old for _, old in done if old)
    for d in dict.fromkeys(os.path.dirname(os.path.abspath(p)) for p, _ in staged):
        _sync_dir(d)
    return [p for p, _ in staged]


def _keep(path: str) -> str | None:
    """A hard link beside `path` to the regular file there (to put it back), or None when there is none (or
    the file system has no hard links: then it cannot be put back)."""
    if not os.path.isfile(path) or os.path.islink(path):
        return None
    d = os.path.dirname(os.path.abspath(path))
    for n in range(100):
        link = os.path.join(d, f".{os.path.basename(path)}-{os.getpid()}-{n}.old")
        try:
            os.link(path, link)
            return link
        except FileExistsError:
            continue
        except OSError:
            return None
    return None


def _remove(paths: Iterable[str | None]) -> None:
    for p in paths:
        if p:
            with contextlib.suppress(OSError):
                os.remove(p)


def _staged(path: str, data: bytes | memoryview) -> str:
    """A temp file beside `path` holding `data`, flushed to the disk, with the permissions path will have
    (a replaced file's, or the umask's for a new one); WriteError (and no temp left) when it cannot be written."""
    d = os.path.dirname(os.path.abspath(path))
    tmp = ""
    try:
        fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + "-", suffix=".tmp", dir=d)
        os.close(fd)
        with contextlib.suppress(OSError):
            old = os.lstat(path)
            os.chmod(tmp, old.st_mode & 0o777 if stat.S_ISREG(old.st_mode) else _umask_mode())
        if not os.path.lexists(path):
            with contextlib.suppress(OSError):
                os.chmod(tmp, _umask_mode())
        _write_file(tmp, data)
        return tmp
    except OSError as e:
        if tmp:
            with contextlib.suppress(OSError):
                os.remove(tmp)
        raise WriteError(path, e) from None


def _umask_mode() -> int:
    """0o666 less the process's umask: the mode open() gives a new file (mkstemp's 0o600 is not what a user's
    other files get)."""
    try:  # Linux 4.7+: read, without changing it (os.umask sets it for every thread meanwhile)
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def _sync_dir(d: str) -> None:
    """The rename itself on the disk (POSIX; elsewhere, or where a folder cannot be opened, skipped)."""
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
