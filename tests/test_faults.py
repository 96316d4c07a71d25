"""Faults a run meets, checked against references, not against dlspec's own output.

SIGTERM and SIGHUP sent to a real `dlspec run` process, then `--resume`: the run ends bit for bit where an
uninterrupted one ends.  A full disk (a writer that fails with ENOSPC, and a real tmpfs filled mid-run):
one line, the last checkpoint and the metrics.csv that goes with it survive, and a resume after freeing
space ends where the uninterrupted run ends.  An --out that cannot be written, before any data is read.
Damaged checkpoints (a byte flipped inside a tensor: torch.load returns other weights, and dlspec refuses;
truncated, empty, not a zip, not dlspec's).  Another model's checkpoint, whose weights torch would load.
Two commands on one run folder, and a lock that dies with its process.

Run as a script (`python tests/test_faults.py run SPEC ...`) this file is the `dlspec` command with the
test datasets of tests/test_train.py, and two hooks set by environment variables for the subprocess tests:
DLSPEC_TEST_PAUSE="K:READY:GO" (in the K-th training batch: create READY, then wait for GO) and
DLSPEC_TEST_FILL="K:DIR" (in the K-th training batch: fill DIR's filesystem up).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from test_train import (  # noqa: E402
    BLOBS,
    DATA_ROOT,
    ES,
    RESUME,
    TEST_DATASETS,
    checkpoint,
    csv_rows,
    dlspec_main,
    register_test_datasets,
    run_dir,
    train,
    uninterrupted,  # noqa: F401 - the fixture: the run every resumed run must reproduce
    without_timing,
    write,
)

import dlspec  # noqa: E402
from dlspec import cli, runs, safeio  # noqa: E402
from dlspec.data.base import DATASETS  # noqa: E402

HERE = Path(__file__).resolve()
RUN_FILES = {"spec.yaml", "metrics.csv", "curves.png", "checkpoint.pt", "summary.json", "best.pt"}


@pytest.fixture(autouse=True, scope="module")
def datasets():
    register_test_datasets()
    yield
    for entry in TEST_DATASETS:
        DATASETS.pop(entry.name, None)


def assert_ends_as(reference: Path, d: Path) -> None:
    """d's run ended bit for bit where the reference run ended: weights, optimizer state, scheduler, history,
    metrics.csv, best.pt, the final numbers."""
    a, b = checkpoint(reference), checkpoint(d)
    assert a["model"].keys() == b["model"].keys()
    for name, t in a["model"].items():
        assert torch.equal(t, b["model"][name]), name
    for pid, st in a["optimizer"]["state"].items():
        for key, t in st.items():
            assert torch.equal(torch.as_tensor(t), torch.as_tensor(b["optimizer"]["state"][pid][key])), key
    assert a["scheduler"] == b["scheduler"]
    assert without_timing(a["history"]) == without_timing(b["history"])
    assert without_timing(csv_rows(reference)) == without_timing(csv_rows(d))
    if (reference / "best.pt").exists():
        best_a, best_b = (torch.load(x / "best.pt", weights_only=True) for x in (reference, d))
        assert (best_a["epoch"], best_a["value"]) == (best_b["epoch"], best_b["value"])
        for name, t in best_a["model"].items():
            assert torch.equal(t, best_b["model"][name]), name
    sa, sb = (json.loads((x / "summary.json").read_text()) for x in (reference, d))
    assert (sa["final"], sa["final_from"], sa["epochs"]) == (sb["final"], sb["final_from"], sb["epochs"])
    assert set(os.listdir(d)) == set(os.listdir(reference))  # no temp file, no .lock


def env(**extra: str) -> dict[str, str]:
    return dict(os.environ, DLSPEC_DATA=DATA_ROOT, OMP_NUM_THREADS="1", NO_COLOR="1", **extra)


def start_paused(tmp_path: Path, text: str, k: int) -> tuple[subprocess.Popen[str], Path, Path]:
    """`dlspec run` in another process, stopped inside its k-th training batch: (process, its run folder,
    the file that lets it go on)."""
    ready, go = tmp_path / "ready", tmp_path / "go"
    p = subprocess.Popen([sys.executable, str(HERE), "run", write(tmp_path, text), "--out", str(tmp_path / "runs"),
                          "--no-progress"], cwd=tmp_path, env=env(DLSPEC_TEST_PAUSE=f"{k}:{ready}:{go}"),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300  # a hang guard only: batch k comes within seconds
    while not ready.exists():
        if p.poll() is not None or time.monotonic() > deadline:
            hung = p.poll() is None
            p.kill()
            out, err = p.communicate()
            pytest.fail(f"the run {'hung before it reached' if hung else 'ended before'} batch {k}: {err}")
        time.sleep(0.05)
    return p, run_dir(tmp_path / "runs"), go


# --- signals -------------------------------------------------------------------------------------------

def test_sigterm_and_sighup_mid_epoch_then_resumed_equals_uninterrupted(tmp_path, capsys, uninterrupted):  # noqa: F811
    text, steps, reference = uninterrupted
    sig = signal.SIGTERM if "SGD" in text else signal.SIGHUP  # one signal per spec of the fixture
    p, d, go = start_paused(tmp_path, text, steps + 3)  # the 3rd batch of epoch 2
    # while it runs, its folder is locked: a resume beside it refuses, naming the process
    rc, out, err = dlspec_main(capsys, "run", "--resume", d)
    assert (rc, err) == (1, f"dlspec: run folder {d} is in use by process {p.pid}\n")
    p.send_signal(sig)
    go.touch()
    out, err = p.communicate(timeout=120)
    assert p.returncode == 128 + sig, err  # 143, 129
    word = {signal.SIGTERM: "terminated (SIGTERM)", signal.SIGHUP: "hung up (SIGHUP)"}[sig]
    assert f"{word}: finishing this batch and saving a checkpoint (a second signal aborts)" in err
    assert "Traceback" not in err and f"saved {d / 'checkpoint.pt'} at epoch 2, batch 3; continue with: " \
        f"dlspec run --resume {d}" in out
    cut = checkpoint(d)
    assert (cut["epoch"], cut["batch"]) == (1, 3)  # the batch in flight finished
    assert set(os.listdir(d)) <= RUN_FILES  # no temp file; the lock went with the process

    rc, out, err = dlspec_main(capsys, "run", "--resume", d, "--no-progress")
    assert rc == 0, err
    assert "resumed at epoch 2, batch 3" in out
    assert_ends_as(reference, d)


def test_a_second_signal_aborts_without_a_checkpoint(tmp_path, capsys, monkeypatch):
    import dlspec.builder as builder

    build = builder.build_checked
    seen = [0]

    def build_with_hook(checked: Any) -> Any:
        model = build(checked)

        def hook(module: Any, args: Any, out: Any) -> None:
            seen[0] += module.training
            if seen[0] == 3 and module.training:
                os.kill(os.getpid(), signal.SIGTERM)
                os.kill(os.getpid(), signal.SIGTERM)  # the handler of the first has run: this one aborts

        model.register_forward_hook(hook)
        return model

    monkeypatch.setattr(builder, "build_checked", build_with_hook)
    rc, out, err = dlspec_main(capsys, "run", write(tmp_path, RESUME), "--out", tmp_path / "runs", "--no-progress")
    assert rc == 143 and "saved" not in out
    assert os.listdir(run_dir(tmp_path / "runs")) == ["spec.yaml"]  # no checkpoint, no temp file, no .lock


# --- a full disk -------------------------------------------------------------------------------------------

class FullDisk:
    """runs' file writer, failing like a disk that fills up: the n-th write of `name` (checkpoint.pt,
    metrics.csv, ...) writes half of its bytes and fails with ENOSPC, and so does every write after it."""

    def __init__(self, monkeypatch: Any, name: str, n: int):
        self.name, self.n, self.seen, self.full = name, n, 0, False
        write_file = safeio._write_file

        def failing(path: str, data: Any) -> None:
            if os.path.basename(path).startswith(f".{name}-"):
                self.seen += 1
                self.full |= self.seen == n
            if self.full:
                with open(path, "wb") as f:
                    f.write(bytes(data)[:len(data) // 2])
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
            write_file(path, data)

        monkeypatch.setattr(safeio, "_write_file", failing)


def improvements(values: list[float]) -> list[int]:
    """The epochs (1-based) at which a metric to minimise reached a new best: when best.pt is written."""
    best, out = float("inf"), []
    for e, v in enumerate(values, 1):
        if v < best:
            best = v
            out.append(e)
    return out


# which write fails (the n-th of that file) → the epoch of the checkpoint that survives, and of metrics.csv
@pytest.mark.parametrize("name, n", [("checkpoint.pt", 2), ("metrics.csv", 2), ("best.pt", 2), ("summary.json", 1)])
def test_disk_full_keeps_the_last_checkpoint_and_resumes_from_it(tmp_path, capsys, monkeypatch,
                                                                 uninterrupted, name, n):  # noqa: F811
    text, steps, reference = uninterrupted
    if name == "best.pt" and "early_stopping" not in text:
        text += "  val_split: 0.25\n  early_stopping: {metric: val_loss, patience: 5}\n"  # a run with best.pt
        reference, _ = train(tmp_path, capsys, text, "--quiet", out="ref")
    history = checkpoint(reference)["history"]
    if name == "best.pt":
        second = improvements([r["val_loss"] for r in history])[1]  # the epoch of best.pt's second write
        kept, rows = second - 1, second - 1  # checkpoint.pt comes after best.pt: the epoch before survives
    else:
        # checkpoint.pt fails at epoch 2; metrics.csv fails after epoch 2's checkpoint (it lags by that
        # epoch, never leads); summary.json after the last epoch's checkpoint and metrics.csv
        kept, rows = {"checkpoint.pt": (1, 1), "metrics.csv": (2, 1), "summary.json": (3, 3)}[name]
    FullDisk(monkeypatch, name, n)
    rc, out, err = dlspec_main(capsys, "run", write(tmp_path, text), "--out", tmp_path / "runs", "--no-progress")
    d = run_dir(tmp_path / "runs")
    assert rc == 1 and "Traceback" not in err
    assert err == (f"dlspec: no space left on device ({d / name}); {d} keeps the checkpoint of epoch {kept}; free "
                   f"space and continue with: dlspec run --resume {d}\n")
    assert set(os.listdir(d)) <= RUN_FILES - {"summary.json"}  # no temp file, no half-written file
    ck = checkpoint(d)
    assert ck["epoch"] == kept and not ck["batch"]
    assert without_timing(ck["history"]) == without_timing(history[:kept])  # the reference's state at that epoch
    assert without_timing(csv_rows(d)) == without_timing(csv_rows(reference))[:rows]
    if (d / "best.pt").exists():  # readable, and at most the weights of the epoch after the checkpoint
        assert runs.load_checkpoint(str(d / "best.pt"))["epoch"] in (ck["best"]["epoch"], kept + 1)

    monkeypatch.undo()  # space freed
    rc, out, err = dlspec_main(capsys, "run", "--resume", d, "--no-progress")
    assert rc == 0, err
    assert ("finishing: 3 epochs trained" if name == "summary.json" else f"resumed at epoch {kept + 1}\n") in out
    assert_ends_as(reference, d)


def unshare_works() -> bool:
    try:
        return subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
                              capture_output=True, timeout=120).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="tmpfs in a mount namespace: Linux")
def test_a_real_full_tmpfs(tmp_path, capsys):
    """A 1 MiB tmpfs (in a private mount namespace, `unshare -rm`: no root needed where user namespaces
    are allowed) filled up in the middle of epoch 2; then space is freed and the run resumed."""
    if not unshare_works():
        pytest.skip("unshare -rm with a tmpfs mount is not allowed here")
    mnt, spec = tmp_path / "mnt", write(tmp_path, RESUME)
    mnt.mkdir()
    script = f"""
        mount -t tmpfs -o size=1m tmpfs {mnt} || exit 99
        DLSPEC_TEST_FILL=11:{mnt} {sys.executable} {HERE} run {spec} --out {mnt}/runs --no-progress \
            > {tmp_path}/out1 2> {tmp_path}/err1
        echo $? > {tmp_path}/rc1
        cp -r {mnt}/runs {tmp_path}/failed
        rm {mnt}/filler
        {sys.executable} {HERE} run --resume {mnt}/runs/Resume/* --no-progress > {tmp_path}/out2 2> {tmp_path}/err2
        echo $? > {tmp_path}/rc2
        cp -r {mnt}/runs {tmp_path}/resumed
    """
    p = subprocess.run(["unshare", "-rm", "sh", "-c", script], env=env(), capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr
    err1 = (tmp_path / "err1").read_text()
    failed = run_dir(tmp_path / "failed")
    d = f"{mnt}/runs/Resume/{failed.name}"
    assert (tmp_path / "rc1").read_text().strip() == "1", err1
    assert err1 == (f"dlspec: no space left on device ({d}/checkpoint.pt); {d} keeps the checkpoint of epoch 1; "
                    f"free space and continue with: dlspec run --resume {d}\n")
    assert set(os.listdir(failed)) == {"spec.yaml", "metrics.csv", "checkpoint.pt"}
    assert checkpoint(failed)["epoch"] == 1 and len(csv_rows(failed)) == 1
    assert (tmp_path / "rc2").read_text().strip() == "0", (tmp_path / "err2").read_text()
    reference, _ = train(tmp_path, capsys, RESUME, "--quiet", out="ref")
    assert_ends_as(reference, run_dir(tmp_path / "resumed"))


# --- --out ---------------------------------------------------------------------------------------------------

def test_out_that_is_a_file_is_refused_before_the_data_is_read(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    spec = write(tmp_path, BLOBS)
    for out, why in ((f, f"not a directory ({f} is a file)"),
                     (f / "runs", f"not a directory ({f} is a file, so no folder can be made in it)")):
        # train.data.fail: loading the data would be an error (status 1); the --out error comes first
        rc, _, err = dlspec_main(capsys, "run", spec, "--out", out, "train.data.fail=true")
        assert (rc, err) == (2, f"dlspec: --out {out}: {why}\n")
    assert f.read_text() == "x"


def test_out_without_permission_is_refused_before_the_data_is_read(tmp_path, capsys):
    if os.geteuid() != 0:
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o555)
        rc, _, err = dlspec_main(capsys, "run", write(tmp_path, BLOBS), "--out", ro / "runs", "train.data.fail=true")
        assert (rc, err) == (2, f"dlspec: --out {ro / 'runs'}: permission denied (no folder can be made in {ro})\n")
        return
    # root may write anywhere: the command runs as an unprivileged user, in a user namespace
    if subprocess.run(["unshare", "--user", "true"], capture_output=True).returncode != 0:
        pytest.skip("running as root, and unshare --user is not allowed")
    base = Path(tempfile_dir())
    try:
        spec = write(base, BLOBS)
        os.chmod(spec, 0o644)
        os.chmod(base, 0o555)  # in the namespace the owner's w counts, and root's override does not
        p = subprocess.run(["unshare", "--user", sys.executable, str(HERE), "run", spec, "--out", str(base / "runs"),
                            "train.data.fail=true"], env=env(), capture_output=True, text=True, timeout=120)
        assert (p.returncode, p.stderr) == \
            (2, f"dlspec: --out {base / 'runs'}: permission denied (no folder can be made in {base})\n")
    finally:
        os.chmod(base, 0o755)
        shutil.rmtree(base)


def tempfile_dir() -> str:
    import tempfile

    d = tempfile.mkdtemp(prefix="dlspec-ro-")
    os.chmod(d, 0o755)  # readable by anyone, writable by its owner (root) only
    return d


# --- damaged checkpoints -----------------------------------------------------------------------------------

def flip_byte(path: Path, member: str, at: int = 5) -> None:
    """Flip one byte `at` bytes into a stored (uncompressed) member of the zip archive at path."""
    import struct

    with zipfile.ZipFile(path) as z:
        info = next(i for i in z.infolist() if i.filename.split("/", 1)[1] == member)
    raw = bytearray(path.read_bytes())
    off = info.header_offset
    name_len, extra_len = struct.unpack("<HH", raw[off + 26:off + 30])  # the local header's own lengths
    raw[off + 30 + name_len + extra_len + at] ^= 0xFF
    path.write_bytes(bytes(raw))


def tensors(st: Any) -> list[Any]:
    if isinstance(st, torch.Tensor):
        return [st]
    if isinstance(st, dict):
        return [t for v in st.values() for t in tensors(v)]
    if isinstance(st, (list, tuple)):
        return [t for v in st for t in tensors(v)]
    return []


def test_a_flipped_byte_in_a_tensor_is_found(tmp_path, capsys):
    d, _ = train(tmp_path, capsys, ES, "train.epochs=2", "--quiet")
    for name in ("checkpoint.pt", "best.pt"):
        pristine = checkpoint(d) if name == "checkpoint.pt" else torch.load(d / name, weights_only=True)
        flip_byte(d / name, "data/0")
        damaged = torch.load(d / name, weights_only=True)  # torch reads it without a word ...
        assert any(not torch.equal(a, b) for a, b in zip(tensors(pristine), tensors(damaged), strict=True))
        rc, _, err = dlspec_main(capsys, "eval", d / "spec.yaml", "--checkpoint", d / name)  # ... dlspec refuses
        assert (rc, err) == (1, f"dlspec: {d / name} is damaged: checksum mismatch (its contents are not what was "
                                "saved)\n")
    rc, _, err = dlspec_main(capsys, "run", "--resume", d, "--epochs", "3")
    assert (rc, err) == (2, f"dlspec: cannot resume {d}: {d / 'checkpoint.pt'} is damaged: checksum mismatch (its "
                            "contents are not what was saved)\n")


def test_checksum_finds_what_the_zip_crcs_cannot(tmp_path, capsys):
    """A checkpoint rewritten with one weight changed (a valid zip, its CRCs right): the checksum tells."""
    d, _ = train(tmp_path, capsys, BLOBS, "--quiet")
    ck = checkpoint(d)
    w = next(iter(ck["model"].values()))
    w[0, 0] = w[0, 0] + 1e-3
    torch.save(ck, d / "checkpoint.pt")
    assert zipfile.ZipFile(d / "checkpoint.pt").testzip() is None
    rc, _, err = dlspec_main(capsys, "predict", d / "spec.yaml", "--checkpoint", d / "checkpoint.pt")
    assert rc == 1 and "is damaged: checksum mismatch" in err


def test_checkpoints_without_a_checksum_still_load(tmp_path, capsys):
    d, _ = train(tmp_path, capsys, BLOBS, "--quiet")
    rc, want, err = dlspec_main(capsys, "eval", d / "spec.yaml", "--checkpoint", d / "checkpoint.pt")
    assert rc == 0, err
    old = checkpoint(d)
    del old["checksum"]  # a checkpoint of an earlier dlspec
    torch.save(old, d / "old.pt")
    rc, out, err = dlspec_main(capsys, "eval", d / "spec.yaml", "--checkpoint", d / "old.pt")
    assert (rc, out) == (0, want), err
    flip_byte(d / "old.pt", "data/0")  # no checksum, but the zip's CRCs still tell
    rc, out, err = dlspec_main(capsys, "eval", d / "spec.yaml", "--checkpoint", d / "old.pt")
    assert (rc, err) == (1, f"dlspec: {d / 'old.pt'} is damaged: CRC mismatch in data/0\n")


def test_every_damaged_checkpoint_says_why(tmp_path, capsys):
    d, _ = train(tmp_path, capsys, BLOBS, "--quiet")
    good = (d / "checkpoint.pt").read_bytes()
    cases = {
        "empty.pt": (b"", "is empty (0 bytes)"),
        "text.pt": (b"not a checkpoint", "is not a checkpoint: not a zip archive (torch.save writes one)"),
        "half.pt": (good[:len(good) // 2], f"is truncated: {len(good) // 2:,} bytes, and the end of its zip archive "
                    "is missing"),
    }
    for name, (data, _) in cases.items():
        (d / name).write_bytes(data)
    torch.save(checkpoint(d)["model"], d / "state_dict.pt")  # a plain state dict
    cases["state_dict.pt"] = (b"", "is not a dlspec checkpoint: it holds a dict without 'model' (a plain "
                              "state_dict? dlspec's hold it under 'model', with the spec)")
    for name, (_, why) in cases.items():
        rc, _, err = dlspec_main(capsys, "eval", d / "spec.yaml", "--checkpoint", d / name)
        assert (rc, err) == (1, f"dlspec: {d / name} {why}\n")
    (d / "checkpoint.pt").write_bytes(good[:-100])
    rc, _, err = dlspec_main(capsys, "run", "--resume", d, "--epochs", "3")
    assert rc == 2 and err.startswith(f"dlspec: cannot resume {d}: {d / 'checkpoint.pt'} is truncated: ")


def test_a_damaged_best_pt_is_not_restored(tmp_path, capsys):
    """restore_best with a damaged best.pt: a note, and the final numbers are the last epoch's weights'."""
    text = BLOBS + "  val_split: 0.25\n  early_stopping: {metric: val_loss, patience: 5, min_delta: 10}\n"
    d, _ = train(tmp_path, capsys, text, "--quiet")  # best.pt: epoch 1, which min_delta 10 never lets improve on
    flip_byte(d / "best.pt", "data/0")
    rc, out, err = dlspec_main(capsys, "run", "--resume", d, "--epochs", "3", "--no-progress")
    assert rc == 0, err
    assert f"note: cannot restore the best epoch's weights from {d / 'best.pt'} (it is damaged: checksum mismatch " \
        "(its contents are not what was saved)); the final numbers are the last epoch's\n" in out
    summary = json.loads((d / "summary.json").read_text())
    assert summary["final_from"] == "last epoch 3"
    rc, ev, err = dlspec_main(capsys, "eval", d / "spec.yaml", "--checkpoint", d / "checkpoint.pt")
    final = summary["final"]
    assert rc == 0 and f"loss {final['test_loss']:.4f}  accuracy {final['test_accuracy']:.4f}" in ev, err


# --- another model's checkpoint ----------------------------------------------------------------------------

def test_another_models_checkpoint_is_refused_though_torch_would_load_it(tmp_path, capsys):
    d, _ = train(tmp_path, capsys, BLOBS, "--quiet")
    ck = d / "checkpoint.pt"
    other = write(tmp_path, BLOBS.replace("  - ReLU\n", "  - Tanh\n"), "tanh.yaml")
    dlspec.build(other).load_state_dict(checkpoint(d)["model"])  # the same names and shapes: torch takes them
    for cmd in ("eval", "predict", "generate"):
        rc, out, err = dlspec_main(capsys, cmd, other, "--checkpoint", ck)
        assert (rc, out) == (1, "")
        assert err == (f"dlspec: {ck} holds another model than {other}: layers.1: ReLU() in the checkpoint's "
                       f"model, Tanh() in {other} (use the spec.yaml of the checkpoint's run)\n")
    rc, want, err = dlspec_main(capsys, "eval", d / "spec.yaml", "--checkpoint", ck)
    assert rc == 0, err
    # the same model written differently, trained differently: accepted, the same numbers
    same = write(tmp_path, BLOBS.replace("{out_features: 16}", "{in_features: 4, out_features: 16}")
                 .replace("epochs: 2", "epochs: 7").replace("lr: 0.1", "lr: 0.5"), "same.yaml")
    rc, out, err = dlspec_main(capsys, "eval", same, "--checkpoint", ck)
    assert (rc, out) == (0, want), err


def test_a_checkpoint_without_its_spec_is_refused_by_its_first_differing_weight(tmp_path, capsys):
    d, _ = train(tmp_path, capsys, BLOBS, "--quiet")
    old = checkpoint(d)
    del old["spec"], old["checksum"]  # a best.pt of an earlier dlspec: weights and their epoch only
    torch.save(old, d / "old.pt")
    other = write(tmp_path, BLOBS.replace("out_features: 16", "out_features: 17"), "wider.yaml")
    rc, _, err = dlspec_main(capsys, "eval", other, "--checkpoint", d / "old.pt")
    assert (rc, err) == (1, f"dlspec: cannot load {d / 'old.pt'} into {other}'s model: fc1.weight is [16, 4] in "
                            "the checkpoint, [17, 4] in the model\n")
    deeper = write(tmp_path, BLOBS.replace("  - Linear: {out_features: 3}\n", "  - Linear: {out_features: 8}\n"
                                           "  - Linear: {out_features: 3}\n"), "deeper.yaml")
    rc, _, err = dlspec_main(capsys, "eval", deeper, "--checkpoint", d / "old.pt")
    assert rc == 1 and err.endswith("model: fc2.weight is [3, 16] in the checkpoint, [8, 16] in the model\n")


def test_lenet_and_its_max_pool_variant_differ_at_their_first_activation():
    """The brief's case: LeNet's weights fit the max-pool LeNet's shapes exactly; the layers tell them apart."""
    specs = Path(__file__).resolve().parent.parent / "specs"
    a, b = (dlspec.check(str(specs / n)) for n in ("lenet.yaml", "lenet_maxpool.yaml"))
    shapes = [{k: tuple(v.shape) for k, v in dlspec.build(c).state_dict().items()} for c in (a, b)]
    assert shapes[0] == shapes[1]
    assert runs.model_difference(runs.model_layers(a), runs.model_layers(b), "lenet_maxpool.yaml") == \
        "layers.1: Sigmoid() in the checkpoint's model, ReLU() in lenet_maxpool.yaml"
    assert runs.model_difference(runs.model_layers(a), runs.model_layers(a), "x") is None


# --- the run folder's lock ---------------------------------------------------------------------------------

def test_a_run_folder_in_use_is_refused(tmp_path, capsys):
    d, _ = train(tmp_path, capsys, BLOBS, "--quiet")
    with runs.lock_run_dir(str(d)):  # another command's lock (an open file of its own: flock tells them apart)
        rc, _, err = dlspec_main(capsys, "run", "--resume", d, "--epochs", "3")
        assert (rc, err) == (1, f"dlspec: run folder {d} is in use by process {os.getpid()}\n")
    assert checkpoint(d)["epoch"] == 2
    rc, _, err = dlspec_main(capsys, "run", "--resume", d, "--epochs", "3", "--quiet")
    assert rc == 0 and checkpoint(d)["epoch"] == 3, err
    assert ".lock" not in os.listdir(d)


def test_the_lock_of_a_killed_process_locks_nothing(tmp_path, capsys):
    reference, _ = train(tmp_path, capsys, RESUME, "--quiet", out="ref")
    p, d, _ = start_paused(tmp_path, RESUME, 8 + 3)
    p.kill()  # SIGKILL: no handler, no clean-up
    p.communicate(timeout=60)
    assert (d / ".lock").read_text().strip() == str(p.pid)  # the stale file is left; its flock went with p
    rc, out, err = dlspec_main(capsys, "run", "--resume", d, "--no-progress")
    assert rc == 0, err
    assert "resumed at epoch 2\n" in out  # from the checkpoint of epoch 1
    assert_ends_as(reference, d)


def test_no_flock_on_the_filesystem_runs_with_a_note(tmp_path, capsys, monkeypatch):
    import fcntl

    def no_flock(fd: int, op: int) -> None:
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", no_flock)
    rc, out, err = dlspec_main(capsys, "run", write(tmp_path, BLOBS), "--out", tmp_path / "runs", "--no-progress")
    d = run_dir(tmp_path / "runs")
    assert rc == 0 and err == (f"note: {d} is not locked (no locks available for flock on its filesystem): two "
                               "commands resuming it at once would overwrite each other's checkpoints\n")
    assert set(os.listdir(d)) == RUN_FILES - {"best.pt"}


# --- the command with hooks, for the subprocess tests --------------------------------------------------------

def _hooks() -> None:
    import dlspec.builder as builder

    pause, fill = os.environ.get("DLSPEC_TEST_PAUSE"), os.environ.get("DLSPEC_TEST_FILL")
    if not pause and not fill:
        return
    build = builder.build_checked
    seen = [0]

    def hook(module: Any, args: Any, out: Any) -> None:
        if not module.training:
            return
        seen[0] += 1
        if pause and seen[0] == int(pause.split(":")[0]):
            _, ready, go = pause.split(":")
            Path(ready).touch()
            deadline = time.monotonic() + 600  # (the test lets it go at once; this only ends an orphan)
            while not os.path.exists(go) and time.monotonic() < deadline:
                time.sleep(0.02)  # signals are handled here, between the sleeps
        if fill and seen[0] == int(fill.split(":")[0]):
            fd = os.open(os.path.join(fill.split(":", 1)[1], "filler"), os.O_WRONLY | os.O_CREAT, 0o644)
            for size in (1 << 16, 1 << 10, 1):  # until not a byte more fits
                try:
                    while os.write(fd, b"\0" * size):
                        pass
                except OSError:
                    pass
            os.close(fd)

    def build_with_hook(checked: Any) -> Any:
        model = build(checked)
        model.register_forward_hook(hook)
        return model

    builder.build_checked = build_with_hook


if __name__ == "__main__":
    torch.set_num_threads(1)
    register_test_datasets()
    _hooks()
    sys.exit(cli.main(sys.argv[1:]))
