"""safeio: what a command may read and where it may write (FIFOs, devices, folders, symlinks out, names)."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path
from typing import Any

import pytest

from dlspec import safeio


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    p = tmp_path / "pipe"
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs on this system")
    os.mkfifo(p)
    return p


def run_briefly(fn, *args):  # type: ignore[no-untyped-def]
    """fn(*args) in a thread; the exception it raised (a hang fails the test after 60 s, not the suite)."""
    out: list[BaseException | None] = []

    def target() -> None:
        try:
            fn(*args)
            out.append(None)
        except BaseException as e:  # noqa: BLE001
            out.append(e)

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(60)
    assert out, f"{fn.__name__} blocked"
    return out[0]


def test_a_fifo_is_refused_without_blocking(fifo: Path) -> None:
    for fn in (safeio.open_input, safeio.check_input):
        e = run_briefly(fn, str(fifo))
        assert isinstance(e, safeio.FileRefused) and "FIFO" in str(e)
    e = run_briefly(safeio.read_bounded, str(fifo), 10)
    assert isinstance(e, safeio.FileRefused)


def test_devices_and_folders_are_refused_as_inputs_and_outputs(tmp_path: Path) -> None:
    with pytest.raises(safeio.FileRefused, match="character device"):
        safeio.check_input("/dev/null")
    with pytest.raises(safeio.FileRefused, match="folder"):
        safeio.open_input(str(tmp_path))
    with pytest.raises(safeio.FileRefused, match="character device"):
        safeio.check_output("/dev/full")
    with pytest.raises(safeio.FileRefused, match="folder"):
        safeio.check_output(str(tmp_path))
    with pytest.raises(safeio.FileRefused, match="empty"):
        safeio.check_output("")
    with pytest.raises(safeio.FileRefused, match="does not exist"):
        safeio.check_output(str(tmp_path / "no" / "x.png"))
    safeio.check_output(str(tmp_path / "x.png"))  # a new file in a folder that exists: fine


def test_read_bounded(tmp_path: Path) -> None:
    p = tmp_path / "f"
    p.write_bytes(b"x" * 11)
    assert safeio.read_bounded(str(p), 11) == b"x" * 11
    with pytest.raises(safeio.FileRefused, match="larger than 10 bytes"):
        safeio.read_bounded(str(p), 10)


def test_regular_entries_leave_out_fifos_and_folders(tmp_path: Path, fifo: Path) -> None:
    (tmp_path / "a.png").write_bytes(b"")
    (tmp_path / "sub").mkdir()
    os.symlink(tmp_path / "a.png", tmp_path / "b.png")
    os.symlink("/dev/null", tmp_path / "c.png")
    assert safeio.regular_entries(str(tmp_path)) == ["a.png", "b.png"]


@pytest.mark.parametrize("name, part", [
    ("LeNet", "LeNet"), ("lstm rows", "lstm_rows"), ("/etc/passwd", "etc_passwd"), ("../../x", "x"),
    ("..", "run"), ("", "run"), (".hidden", "hidden"), ("a/../b", "a_.._b"), ("a\x1b[31mb", "a_31mb"),
    ("ﬁle", "file"), ("x" * 300, "x" * 100), ("café", "café"),
])
def test_file_part_is_one_safe_name(name: str, part: str) -> None:
    got = safeio.file_part(name)
    assert got == part
    assert os.sep not in got and got not in (".", "..") and not got.startswith(".")


def test_inside_stays_under_the_folder(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    assert safeio.inside(str(out), "a.png") == str(out / "a.png")
    for bad in ("..", ".", "", "../x", "/abs", "a/b"):
        with pytest.raises(safeio.FileRefused):
            safeio.inside(str(out), bad)
    os.symlink(tmp_path, out / "up")  # a link inside that leads out
    with pytest.raises(safeio.FileRefused, match="outside"):
        safeio.inside(str(out), "up")


def test_write_atomic_replaces_a_symlink_never_its_target(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.write_bytes(b"keep")
    link = tmp_path / "link"
    os.symlink(target, link)
    safeio.write_atomic(str(link), b"new")
    assert target.read_bytes() == b"keep" and link.read_bytes() == b"new" and not link.is_symlink()


def test_write_atomic_gives_a_new_file_the_umask_mode(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        safeio.write_atomic(str(tmp_path / "f"), b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "f").st_mode) == 0o640
    os.chmod(tmp_path / "f", 0o600)
    safeio.write_atomic(str(tmp_path / "f"), b"y")  # a replaced file keeps its mode
    assert stat.S_IMODE(os.stat(tmp_path / "f").st_mode) == 0o600


def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "f"
    p.write_bytes(b"old")

    def full(path: str, data: bytes) -> None:
        raise OSError(28, os.strerror(28))

    monkeypatch.setattr(safeio, "_write_file", full)
    with pytest.raises(safeio.WriteError, match="no space left on device"):
        safeio.write_atomic(str(p), b"new")
    assert p.read_bytes() == b"old" and os.listdir(tmp_path) == ["f"]


def test_shown_escapes_control_characters() -> None:
    assert safeio.shown("a\x1b[31mb\nc") == "a\\x1b[31mb\\nc"
    assert safeio.shown("\u202eevil") == "\\u202eevil"
    assert safeio.shown("café ☃") == "café ☃"


def test_shown_escapes_an_undecodable_byte_of_a_file_name() -> None:
    name = os.fsdecode(b"a\x9bb")  # 0x9b: CSI to a terminal that reads 8-bit C1 codes
    assert safeio.shown(name) == "a\\udc9bb" and safeio.shown(safeio.shown(name)) == safeio.shown(name)


def test_write_together_takes_a_generator_every_file_or_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old = tmp_path / "b.png"
    old.write_bytes(b"old")
    paths = [str(tmp_path / n) for n in ("a.png", "b.png", "c.png")]
    real, calls = safeio._write_file, []

    def full_at_third(path: str, data: bytes | memoryview) -> None:
        calls.append(path)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        real(path, data)

    monkeypatch.setattr(safeio, "_write_file", full_at_third)
    with pytest.raises(safeio.WriteError, match=r"no space left on device \(.*c\.png\)"):
        safeio.write_together((p, p.encode()) for p in paths)
    assert sorted(os.listdir(tmp_path)) == ["b.png"] and old.read_bytes() == b"old"  # no temp, nothing replaced

    def failing() -> Any:
        yield paths[0], b"a"
        raise ImportError("no matplotlib")

    monkeypatch.setattr(safeio, "_write_file", real)
    with pytest.raises(ImportError):
        safeio.write_together(failing())
    assert sorted(os.listdir(tmp_path)) == ["b.png"]
    assert safeio.write_together((p, p.encode()) for p in paths) == paths
    assert [Path(p).read_bytes() for p in paths] == [p.encode() for p in paths]


def test_output_folders(tmp_path: Path, fifo: Path) -> None:
    with pytest.raises(safeio.FileRefused, match="FIFO"):
        safeio.check_output_folder(str(fifo))
    (tmp_path / "f").write_bytes(b"")
    with pytest.raises(safeio.FileRefused, match="is a file: give the path of a folder"):
        safeio.check_output_folder(str(tmp_path / "f"))
    with pytest.raises(safeio.FileRefused, match="empty"):
        safeio.check_output_folder("")
    safeio.check_output_folder(str(tmp_path))
    safeio.check_output_folder(str(tmp_path / "new" / "deeper"))
    made = safeio.make_folders(str(tmp_path / "new" / "deeper"))
    assert made == [str(tmp_path / "new"), str(tmp_path / "new" / "deeper")]
    safeio.remove_folders(made)
    assert not (tmp_path / "new").exists()
    with pytest.raises(safeio.WriteError):
        safeio.make_folders(str(tmp_path / "f" / "sub"))

def test_write_together_writes_every_file(tmp_path: Path) -> None:
    a, b = tmp_path / "m.py", tmp_path / "m.pt"
    a.write_bytes(b"old py")
    safeio.write_together([(str(a), b"py"), (str(b), b"pt")])
    assert (a.read_bytes(), b.read_bytes()) == (b"py", b"pt") and sorted(os.listdir(tmp_path)) == ["m.pt", "m.py"]


def test_write_together_leaves_every_file_as_it_was_when_one_cannot_be_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A full disk at the second file: the first is not replaced either (a .py without its .pt, or the new .py
    beside the old .pt, is no export), and no temp file is left."""
    a, b = tmp_path / "m.py", tmp_path / "m.pt"
    a.write_bytes(b"old py")
    write_file = safeio._write_file

    def full_at_pt(path: str, data: bytes) -> None:
        if os.path.basename(path).startswith(".m.pt-"):
            raise OSError(28, os.strerror(28))
        write_file(path, data)

    monkeypatch.setattr(safeio, "_write_file", full_at_pt)
    with pytest.raises(safeio.WriteError, match=r"no space left on device \(.*m\.pt\)"):
        safeio.write_together([(str(a), b"new py"), (str(b), b"pt")])
    assert a.read_bytes() == b"old py" and os.listdir(tmp_path) == ["m.py"]


def test_write_together_puts_back_what_it_replaced_when_a_rename_fails(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = tmp_path / "m.py", tmp_path / "m.pt"
    a.write_bytes(b"old py")
    b.write_bytes(b"old pt")
    replace = os.replace

    def failing(src: str, dst: str) -> None:
        if str(dst) == str(b) and ".m.pt-" in str(src):
            raise OSError(5, os.strerror(5))
        replace(src, dst)

    monkeypatch.setattr(os, "replace", failing)
    with pytest.raises(safeio.WriteError, match="input/output error"):
        safeio.write_together([(str(a), b"new py"), (str(b), b"new pt")])
    monkeypatch.undo()
    assert (a.read_bytes(), b.read_bytes()) == (b"old py", b"old pt")
    assert sorted(os.listdir(tmp_path)) == ["m.pt", "m.py"]
