"""`dlspec run` / eval / predict / generate checked against references, not against their own output.

References: a hand-written torch training loop (same init, same batch order, same optimizer), torch's own
schedulers and metrics computed on the same predictions, an uninterrupted run (for resume), and a
full-sequence forward pass (for generation with a carried recurrent state).

The data is tiny: datasets registered by this file (a few hundred samples) and, when present, a few
hundred real MNIST samples from $DLSPEC_DATA (else ../shared/data; those tests skip without it).

Run as a script (`python tests/test_train.py run SPEC ...`) this file is the `dlspec` command with the
test datasets registered: the subprocess tests use it.
"""

from __future__ import annotations

import csv
import math
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
yaml = pytest.importorskip("yaml")

import dlspec  # noqa: E402
from dlspec import cli  # noqa: E402
from dlspec.data.base import DATASETS, Bundle, DataError, DatasetType, Split, register  # noqa: E402
from dlspec.registry import Arg, Bool, Choice, Int  # noqa: E402
from dlspec.session import Options, Refused, prepare  # noqa: E402
from dlspec.trainer import Trainer, epoch_permutation  # noqa: E402

HERE = Path(__file__).resolve()
REPO = HERE.parent.parent
DATA_ROOT = os.environ.get("DLSPEC_DATA") or str(REPO.parent / "shared" / "data")
HAVE_MNIST = any(os.path.isfile(os.path.join(DATA_ROOT, "MNIST", "raw", "train-images-idx3-ubyte" + ext))
                 for ext in ("", ".gz"))
needs_mnist = pytest.mark.skipif(not HAVE_MNIST, reason=f"MNIST IDX files not in {DATA_ROOT}")
TIMING = ("samples_per_s", "elapsed_s")  # metrics.csv columns that measure the machine, not the run
RUN_FILES = {"spec.yaml", "metrics.csv", "curves.png", "checkpoint.pt", "summary.json"}


# --- test datasets ---------------------------------------------------------------------------------------

def _blobs(args: dict[str, Any], root: str) -> Bundle:
    """Gaussian blobs: `classes` centres in `features` dimensions, class ids balanced."""
    if args.get("fail"):
        raise DataError("tiny_blobs was asked to fail", arg="fail", help="set fail: false")
    if args.get("crash"):
        raise OSError(5, "Input/output error")  # what a loader did not turn into a DataError
    g = torch.Generator().manual_seed(123)
    k, f = args["classes"], args["features"]
    centres = torch.randn(k, f, generator=g) * 2.5

    def split(n: int) -> Split:
        y = torch.arange(n) % k
        y = y[torch.randperm(n, generator=g)]
        return Split(centres[y] + torch.randn(n, f, generator=g), y)

    return Bundle("tiny_blobs", split(args["n"]), split(args["n_test"]), "classification", num_classes=k,
                  classes=[f"c{i}" for i in range(k)])


def _regression(args: dict[str, Any], root: str) -> Bundle:
    """y = x·w + b + noise, x (N, 3), y (N, 1)."""
    g = torch.Generator().manual_seed(7)
    w, b = torch.tensor([[1.5], [-2.0], [0.5]]), 0.3

    def split(n: int) -> Split:
        x = torch.randn(n, 3, generator=g)
        return Split(x, x @ w + b + 0.1 * torch.randn(n, 1, generator=g))

    return Bundle("tiny_reg", split(args["n"]), split(args["n_test"]), "regression")


def _series(args: dict[str, Any], root: str) -> Bundle:
    """Windows of 50 steps of a noisy sine (N, 50, 1); the target is the next value (N, 1)."""
    g = torch.Generator().manual_seed(3)

    def split(n: int) -> Split:
        t0 = torch.rand(n, 1, generator=g) * 6.28
        t = t0 + 0.1 * torch.arange(51)
        s = torch.sin(t)
        return Split(s[:, :50, None], s[:, 50:])

    return Bundle("tiny_series", split(args["n"]), split(16), "regression")


TEXT = "the quick brown fox jumps over the lazy dog. " * 8


def _chars(args: dict[str, Any], root: str) -> Bundle:
    """Character windows of TEXT: x (N, T) ids or (N, T, V) one-hot, y (N, T) next-character ids."""
    vocab = sorted(set(TEXT))
    ids = torch.tensor([vocab.index(c) for c in TEXT])
    T, cut = args["seq_len"], int(len(TEXT) * 0.8)

    def split(part: Any) -> Split:
        starts = range(0, len(part) - T - 1, 3)
        x = torch.stack([part[s:s + T] for s in starts])
        y = torch.stack([part[s + 1:s + T + 1] for s in starts])
        if args["encoding"] == "one_hot":
            x = torch.nn.functional.one_hot(x, len(vocab)).float()
        return Split(x, y)

    return Bundle("tiny_chars", split(ids[:cut]), split(ids[cut:]), "classification", num_classes=len(vocab),
                  vocab=vocab)


TEST_DATASETS = [
    DatasetType("tiny_blobs", {"n": Arg(Int(1), 192), "n_test": Arg(Int(1), 64), "classes": Arg(Int(2), 3),
                               "features": Arg(Int(1), 4), "fail": Arg(Bool(), False),
                               "crash": Arg(Bool(), False)}, _blobs, doc="test blobs"),
    DatasetType("tiny_reg", {"n": Arg(Int(1), 160), "n_test": Arg(Int(1), 40)}, _regression, doc="test regression"),
    DatasetType("tiny_series", {"n": Arg(Int(1), 32)}, _series, doc="test series"),
    DatasetType("tiny_chars", {"seq_len": Arg(Int(1), 8), "encoding": Arg(Choice("ids", "one_hot"), "ids")},
                _chars, doc="test characters"),
]


def register_test_datasets() -> None:
    for entry in TEST_DATASETS:
        register(entry)


@pytest.fixture(autouse=True, scope="module")
def test_datasets():
    register_test_datasets()
    yield
    for entry in TEST_DATASETS:
        DATASETS.pop(entry.name, None)


def load_data(name: str, **args: Any) -> Bundle:
    """A test dataset loaded directly (the reference's copy of the data)."""
    entry = DATASETS[name]
    full = {k: a.default for k, a in entry.args.items()}
    full.update(args)
    return entry.load(full, DATA_ROOT)


# --- helpers ---------------------------------------------------------------------------------------------

BLOBS = """\
name: Blobs
input: [4]
layers:
  - Linear: {out_features: 16}
  - ReLU
  - Linear: {out_features: 3}
train:
  data: {name: tiny_blobs}
  epochs: 2
  batch_size: 32
  optimizer: {SGD: {lr: 0.1}}
  device: cpu
"""

REG = """\
name: Reg
input: [3]
layers:
  - Linear: {out_features: 8}
  - Tanh
  - Linear: {out_features: 1}
train:
  data: {name: tiny_reg}
  epochs: 3
  batch_size: 16
  optimizer: {SGD: {lr: 0.05, momentum: 0.9}}
  device: cpu
"""


def write(tmp_path: Path, text: str, name: str = "spec.yaml") -> str:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return str(p)


def line_of(text: str, needle: str) -> int:
    """1-based line of the first line that contains needle."""
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def dlspec_main(capsys: Any, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = cli.main([str(a) for a in argv])
    c = capsys.readouterr()
    return rc, c.out, c.err


def run_dir(out: Path) -> Path:
    dirs = [p for p in out.glob("*/*") if p.is_dir()]
    assert len(dirs) == 1, dirs
    return dirs[0]


def checkpoint(d: Path) -> dict[str, Any]:
    return torch.load(d / "checkpoint.pt", map_location="cpu", weights_only=True)


def csv_rows(d: Path) -> list[dict[str, str]]:
    with open(d / "metrics.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def without_timing(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


def refusal(path: str, *overrides: str) -> list[Any]:
    with pytest.raises(Refused) as e:
        prepare(path, list(overrides), Options(progress=False, quiet=True))
    return e.value.diagnostics


def one(diags: list[Any], code: str, severity: str = "error") -> Any:
    hits = [d for d in diags if d.code == code and d.severity == severity]
    assert len(hits) == 1, [(d.severity, d.code, d.message) for d in diags]
    return hits[0]


def train(tmp_path: Path, capsys: Any, text: str, *overrides: str, out: str = "runs") -> tuple[Path, str]:
    """dlspec run in-process; the run folder and stdout."""
    path = write(tmp_path, text, f"{out}.yaml")
    rc, stdout, err = dlspec_main(capsys, "run", path, *overrides, "--out", tmp_path / out, "--no-progress")
    assert rc == 0, err
    return run_dir(tmp_path / out), stdout


# --- 1. the loop against a hand-written torch loop ---------------------------------------------------------

def reference_loop(spec_path: str, data: Bundle, *, epochs: int, batch_size: int, lr: float, momentum: float = 0.0,
                   seed: int = 0, loss_fn: Any, classification: bool) -> tuple[Any, list[dict[str, float]]]:
    """Plain torch: seed, build, SGD, the documented batch order; per-epoch train and test metrics."""
    torch.manual_seed(seed)
    model = dlspec.build(spec_path)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    n = len(data.train)
    rows = []
    for epoch in range(epochs):
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
        assert torch.equal(perm, epoch_permutation(n, seed, epoch))
        model.train()
        loss_sum, correct = 0.0, 0
        for b in range(math.ceil(n / batch_size)):
            idx = perm[b * batch_size:(b + 1) * batch_size]
            x, y = data.train.x[idx], data.train.y[idx]
            out = model(x)
            loss = loss_fn(out, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss_sum += loss.item() * len(idx)
            if classification:
                correct += int((out.argmax(1) == y).sum())
        model.eval()
        with torch.no_grad():
            out = model(data.test.x)
            row = {"train_loss": loss_sum / n, "test_loss": loss_fn(out, data.test.y).item()}
            if classification:
                row["train_accuracy"] = correct / n
                row["test_accuracy"] = (out.argmax(1) == data.test.y).double().mean().item()
            else:
                err = out.double() - data.test.y.double()
                row["test_mse"] = (err ** 2).mean().item()
        rows.append(row)
    return model, rows


def assert_same_rows(got: list[dict[str, Any]], want: list[dict[str, float]], tol: float = 1e-6) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        for k, v in w.items():
            assert abs(g[k] - v) <= tol * max(1.0, abs(v)), (k, g[k], v)


def test_classification_matches_plain_torch_loop(tmp_path, capsys):
    d, _ = train(tmp_path, capsys, BLOBS)
    ck = checkpoint(d)
    data = load_data("tiny_blobs")
    model, want = reference_loop(str(d / "spec.yaml"), data, epochs=2, batch_size=32, lr=0.1,
                                 loss_fn=torch.nn.functional.cross_entropy, classification=True)
    assert_same_rows(ck["history"], want)
    assert want[1]["train_loss"] < want[0]["train_loss"]  # it does learn
    for k, v in model.state_dict().items():  # same init, same batches, same arithmetic: the same weights, bit for bit
        assert torch.equal(ck["model"][k], v), k
    rows = csv_rows(d)
    assert [float(r["train_loss"]) for r in rows] == pytest.approx([w["train_loss"] for w in want], rel=1e-5)


def test_regression_matches_plain_torch_loop(tmp_path, capsys):
    d, _ = train(tmp_path, capsys, REG)
    data = load_data("tiny_reg")
    model, want = reference_loop(str(d / "spec.yaml"), data, epochs=3, batch_size=16, lr=0.05, momentum=0.9,
                                 loss_fn=torch.nn.functional.mse_loss, classification=False)
    got = checkpoint(d)["history"]
    assert_same_rows(got, want)
    assert [r["test_mse"] for r in got] == pytest.approx([r["test_loss"] for r in got], rel=1e-6)
    for k, v in model.state_dict().items():
        assert torch.equal(checkpoint(d)["model"][k], v), k


@needs_mnist
def test_mnist_subset_matches_plain_torch_loop(tmp_path, capsys):
    text = """\
name: MnistTiny
input: [1, 28, 28]
layers:
  - Flatten
  - Linear: {out_features: 24}
  - ReLU
  - Linear: {out_features: 10}
train:
  data: {name: mnist, subset: {train: 256, test: 128}}
  epochs: 2
  batch_size: 32
  optimizer: {SGD: {lr: 0.05, momentum: 0.9}}
  device: cpu
"""
    path = write(tmp_path, text)
    rc, _, err = dlspec_main(capsys, "run", path, "--out", tmp_path / "runs", "--data-root", DATA_ROOT)
    assert rc == 0, err
    d = run_dir(tmp_path / "runs")
    data = DATASETS["mnist"].load({"subset": {"train": 256, "test": 128}}, DATA_ROOT)
    assert data.train.x.shape == (256, 1, 28, 28)
    _, want = reference_loop(path, data, epochs=2, batch_size=32, lr=0.05, momentum=0.9,
                             loss_fn=torch.nn.functional.cross_entropy, classification=True)
    assert_same_rows(checkpoint(d)["history"], want)


def test_permutation_rule_and_no_shuffle():
    assert torch.equal(epoch_permutation(10, 3, 2),
                       torch.randperm(10, generator=torch.Generator().manual_seed(3 * 1_000_003 + 2)))
    assert not torch.equal(epoch_permutation(50, 0, 0), epoch_permutation(50, 0, 1))
    assert torch.equal(epoch_permutation(5, 3, 2, shuffle=False), torch.arange(5))


# --- 2. resume ---------------------------------------------------------------------------------------------

RESUME = """\
name: Resume
input: [4]
layers:
  - Linear: {out_features: 16}
  - ReLU
  - Dropout: 0.3
  - Linear: {out_features: 3}
train:
  data: {name: tiny_blobs}
  epochs: 3
  batch_size: 24
  optimizer: {SGD: {lr: 0.1, momentum: 0.9}}
  scheduler: {StepLR: {step_size: 1, gamma: 0.5}}
  device: cpu
"""
# per-batch scheduler, Adam's moments, clipping, a validation split and a plateau-free early stopping
RESUME_ADAM = RESUME.replace("{SGD: {lr: 0.1, momentum: 0.9}}", "{Adam: {lr: 0.01}}").replace(
    "{StepLR: {step_size: 1, gamma: 0.5}}", "{OneCycleLR: {max_lr: 0.05}}") + \
    "  clip_grad_norm: 0.5\n  val_split: 0.25\n  early_stopping: {metric: val_loss, patience: 5}\n"
RESUME_SPECS = {"sgd": (RESUME, 192 // 24), "adam": (RESUME_ADAM, 144 // 24)}  # spec, batches per epoch


@pytest.fixture(scope="module", params=list(RESUME_SPECS))
def uninterrupted(request, tmp_path_factory):
    """(spec text, batches per epoch, the folder of the run every resumed run must reproduce)."""
    text, steps = RESUME_SPECS[request.param]
    tmp = tmp_path_factory.mktemp("uninterrupted")
    assert cli.main(["run", write(tmp, text), "--out", str(tmp / "runs"), "--quiet"]) == 0
    return text, steps, run_dir(tmp / "runs")


def interrupt_after(monkeypatch: Any, k: int, training: bool = True) -> None:
    """Send ourselves SIGINT (Ctrl-C) in the k-th training (or evaluation) forward pass of the run's model."""
    import dlspec.builder as builder

    build = builder.build_checked

    def build_with_hook(checked: Any) -> Any:
        model = build(checked)
        seen = [0]

        def hook(module: Any, args: Any, out: Any) -> None:
            if module.training == training:
                seen[0] += 1
                if seen[0] == k:
                    os.kill(os.getpid(), signal.SIGINT)

        model.register_forward_hook(hook)
        return model

    monkeypatch.setattr(builder, "build_checked", build_with_hook)


@pytest.mark.parametrize("where", ["mid-epoch", "last batch", "evaluation"])
def test_interrupted_then_resumed_equals_uninterrupted(tmp_path, capsys, monkeypatch, uninterrupted, where):
    text, steps, reference = uninterrupted
    k = {"mid-epoch": steps + 3, "last batch": steps, "evaluation": 1}[where]
    interrupt_after(monkeypatch, k, training=where != "evaluation")
    rc, out, err = dlspec_main(capsys, "run", write(tmp_path, text), "--out", tmp_path / "runs")
    assert rc == 130, err
    monkeypatch.undo()
    d = run_dir(tmp_path / "runs")
    assert "interrupted" in err and f"--resume {d}" in out
    files = RUN_FILES | ({"best.pt"} if "early_stopping" in text else set())
    assert set(os.listdir(d)) <= files and "checkpoint.pt" in os.listdir(d)  # no temp files
    mid = checkpoint(d)
    assert (mid["epoch"], mid["batch"]) == {"mid-epoch": (1, 3), "last batch": (0, steps), "evaluation": (1, 0)}[where]
    assert len(mid["history"]) == mid["epoch"]

    rc, out, err = dlspec_main(capsys, "run", "--resume", d)
    assert rc == 0, err
    assert "resumed at epoch" in out and "Warning" not in err
    a, b = checkpoint(reference), checkpoint(d)
    assert a["model"].keys() == b["model"].keys()
    for name, t in a["model"].items():
        assert torch.equal(t, b["model"][name]), name  # bit-identical
    for pid, st in a["optimizer"]["state"].items():
        for key, t in st.items():
            assert torch.equal(torch.as_tensor(t), torch.as_tensor(b["optimizer"]["state"][pid][key])), key
    assert a["scheduler"] == b["scheduler"]
    assert without_timing(a["history"]) == without_timing(b["history"])
    assert without_timing(csv_rows(reference)) == without_timing(csv_rows(d))
    assert set(os.listdir(d)) == files
    if "best.pt" in files:  # the best epoch's weights too
        best_a, best_b = (torch.load(x / "best.pt", weights_only=True) for x in (reference, d))
        assert (best_a["epoch"], best_a["value"]) == (best_b["epoch"], best_b["value"])
        for name, t in best_a["model"].items():
            assert torch.equal(t, best_b["model"][name]), name
    import json

    summaries = [json.loads((x / "summary.json").read_text()) for x in (reference, d)]
    assert [(x["final"], x["final_from"]) for x in summaries] == [(summaries[0]["final"], summaries[0]["final_from"])] * 2


def test_resume_refuses_a_changed_spec_but_allows_more_epochs(tmp_path, capsys):
    import shutil

    tmp = tmp_path / "first"
    tmp.mkdir()
    reference, _ = train(tmp, capsys, RESUME, "--quiet")
    d = tmp_path / "run"
    shutil.copytree(reference, d)
    changed = write(tmp_path, (d / "spec.yaml").read_text().replace("lr: 0.1", "lr: 0.2"), "changed.yaml")
    rc, out, err = dlspec_main(capsys, "run", changed, "--resume", d)
    assert rc == 1
    assert "train.optimizer.SGD.lr: 0.1 → 0.2" in err and "Traceback" not in err
    rc, out, err = dlspec_main(capsys, "run", "--resume", d, "train.optimizer.SGD.lr=0.2")  # an override too
    assert rc == 1 and "train.optimizer.SGD.lr: 0.1 → 0.2" in err
    rc, out, err = dlspec_main(capsys, "run", "--resume", d, "--epochs", "4", "--quiet")
    assert rc == 0, err
    ck = checkpoint(d)
    assert ck["epoch"] == 4 and len(ck["history"]) == 4
    assert without_timing(ck["history"][:3]) == without_timing(checkpoint(reference)["history"])
    assert yaml.safe_load((d / "spec.yaml").read_text())["train"]["epochs"] == 4  # what ran
    assert len(csv_rows(d)) == 4


def test_resume_with_onecycle_and_more_epochs_is_refused(tmp_path, capsys):
    text = BLOBS.replace("  device: cpu\n", "  device: cpu\n  scheduler: {OneCycleLR: {max_lr: 0.2}}\n")
    d, _ = train(tmp_path, capsys, text, "--quiet")
    rc, out, err = dlspec_main(capsys, "run", "--resume", d, "--epochs", "3")
    assert rc == 1 and "OneCycleLR" in err and "Traceback" not in err


class FakeClock:
    """time.perf_counter for dlspec.train that advances one second per training batch, and nowhere else: a
    run's timings then follow from its batches alone (an uninterrupted run's elapsed_s after epoch e is
    e × batches per epoch).  Sends SIGINT (Ctrl-C) in batch `interrupt_at` when set."""

    def __init__(self, monkeypatch: Any):
        import types

        import dlspec.builder as builder
        import dlspec.train as train_mod

        self.now, self.batches, self.interrupt_at = 1000.0, 0, None
        monkeypatch.setattr(train_mod, "time", types.SimpleNamespace(perf_counter=lambda: self.now))
        build = builder.build_checked

        def build_with_clock(checked: Any) -> Any:
            model = build(checked)
            model.register_forward_hook(self.tick)
            return model

        monkeypatch.setattr(builder, "build_checked", build_with_clock)

    def tick(self, module: Any, args: Any, out: Any) -> None:
        if module.training:
            self.now += 1.0
            self.batches += 1
            if self.batches == self.interrupt_at:
                os.kill(os.getpid(), signal.SIGINT)


@pytest.mark.parametrize("where", ["mid-epoch", "last batch"])
def test_elapsed_time_and_samples_per_s_go_on_across_a_resume(tmp_path, capsys, monkeypatch, where):
    import json

    clock = FakeClock(monkeypatch)
    path = write(tmp_path, RESUME)  # 3 epochs of 8 batches of 24 samples
    assert cli.main(["run", path, "--out", str(tmp_path / "ref"), "--quiet"]) == 0
    ref = csv_rows(run_dir(tmp_path / "ref"))
    assert [float(r["elapsed_s"]) for r in ref] == [8.0, 16.0, 24.0]  # the clock's own arithmetic
    assert [float(r["samples_per_s"]) for r in ref] == [24.0] * 3  # 192 samples in 8 s

    clock.batches, clock.interrupt_at = 0, {"mid-epoch": 8 + 3, "last batch": 8}[where]
    rc, out, err = dlspec_main(capsys, "run", path, "--out", tmp_path / "runs", "--quiet")
    assert rc == 130, err
    d = run_dir(tmp_path / "runs")
    cut = checkpoint(d)
    assert (cut["epoch"], cut["batch"]) == {"mid-epoch": (1, 3), "last batch": (0, 8)}[where]
    assert cut["timing"]["run_s"] == {"mid-epoch": 11.0, "last batch": 8.0}[where]
    assert (cut["timing"]["epoch_s"], cut["timing"]["epoch_samples"]) == \
        {"mid-epoch": (3.0, 3 * 24), "last batch": (8.0, 192)}[where]
    clock.now += 500.0  # the time between the two commands is not the run's
    clock.interrupt_at = None
    rc, out, err = dlspec_main(capsys, "run", "--resume", d, "--quiet")
    assert rc == 0, err
    assert csv_rows(d) == ref  # timing columns included
    summary = json.loads((d / "summary.json").read_text())
    assert (summary["train_time_s"], summary["wall_time_s"], summary["times_s"]["train"]) == (24.0, 24.0, 24.0)


def test_checkpoint_without_timing_still_resumes(tmp_path, capsys, monkeypatch):
    FakeClock(monkeypatch)
    d, _ = train(tmp_path, capsys, RESUME, "train.epochs=2", "--quiet")
    old = checkpoint(d)
    for key in ("timing", "stopped_early", "checksum"):  # what a checkpoint of an earlier dlspec lacks
        del old[key]
    torch.save(old, d / "checkpoint.pt")
    rc, out, err = dlspec_main(capsys, "run", "--resume", d, "--epochs", "3", "--quiet")
    assert rc == 0, err
    rows = csv_rows(d)
    assert [r["elapsed_s"] for r in rows] == ["8", "16", "8"]  # no time carried: the third epoch's counts from 0
    assert rows[2]["samples_per_s"] == "24"


def files_of(d: Path) -> dict[str, tuple[int, bytes]]:
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in d.iterdir()}


ES = BLOBS.replace("epochs: 2", "epochs: 12") + "  val_split: 0.25\n  early_stopping: {metric: val_accuracy, patience: 2}\n"


def stop_epoch(values: list[float], patience: int, fresh_at: int | None = None) -> tuple[int, int]:
    """(best epoch, epoch early stopping ends the run at) for a metric to maximise, by the documented rule:
    an epoch improves when it beats the best so far; `patience` epochs in a row that do not stop the run.
    `fresh_at`: the epoch after which the count starts again (a resume with more epochs)."""
    best, best_epoch, bad = -math.inf, 0, 0
    for e, v in enumerate(values, 1):
        if v > best:
            best, best_epoch, bad = v, e, 0
        else:
            bad += 1
            if bad >= patience and e != fresh_at:
                return best_epoch, e
        if e == fresh_at:
            bad = 0
    return best_epoch, len(values)


def test_resume_of_a_finished_run_says_so_and_changes_nothing(tmp_path, capsys):
    d, _ = train(tmp_path, capsys, BLOBS, "--quiet")
    before = files_of(d)
    for extra in ([], ["--epochs", "2"], ["--epochs", "1"]):
        rc, out, err = dlspec_main(capsys, "run", "--resume", d, *extra)
        assert rc == 0 and not err
        done = "2 of 2 epochs done" if extra != ["--epochs", "1"] else "2 epochs done (train.epochs is 1)"
        assert out == (f"dlspec: {d} is finished: {done}; nothing to resume\n"
                       f"  to train it further: dlspec run --resume {d} --epochs M, with M larger than 2\n")
        assert files_of(d) == before  # not a byte, not a time stamp
    rc, out, err = dlspec_main(capsys, "run", "--resume", d, "--epochs", "3", "--quiet")
    assert rc == 0 and len(checkpoint(d)["history"]) == 3


def test_resume_of_a_run_early_stopping_ended(tmp_path, capsys):
    import json
    import shutil

    d, _ = train(tmp_path, capsys, ES, "--quiet")
    hist = checkpoint(d)["history"]
    best, stop = stop_epoch([r["val_accuracy"] for r in hist] + [-1.0] * 12, patience=2)
    assert (best, stop) == (6, 8) and len(hist) == stop  # the rule, replayed on the run's own numbers
    summary = json.loads((d / "summary.json").read_text())
    assert summary["stopped_early"] is True and summary["epochs"] == 8
    before = files_of(d)
    rc, out, err = dlspec_main(capsys, "run", "--resume", d)
    assert rc == 0 and not err
    assert out.startswith(f"dlspec: {d} is finished: early stopping ended it after epoch 8 of 12 (val_accuracy had "
                          f"not improved for 2 evaluation(s); best {hist[5]['val_accuracy']:.4f} at epoch 6); "
                          "nothing to resume\n")
    assert f"dlspec run --resume {d} --epochs M, with M larger than 8" in out
    assert files_of(d) == before
    old = tmp_path / "old"  # a checkpoint from before the stopped_early flag: told from its bad evaluations
    shutil.copytree(d, old)
    ck = checkpoint(old)
    del ck["stopped_early"], ck["checksum"]
    torch.save(ck, old / "checkpoint.pt")
    rc, out, err = dlspec_main(capsys, "run", "--resume", old)
    assert rc == 0 and "is finished: early stopping ended it after epoch 8 of 12" in out

    # more epochs: it trains on, early stopping counting its patience afresh; the same numbers as a run that
    # never stopped (early stopping changes when a run ends, never its trajectory)
    rc, out, err = dlspec_main(capsys, "run", "--resume", d, "--epochs", "14")
    assert rc == 0, err
    assert "early stopping had ended this run after epoch 8; it watches val_accuracy again, patience 2" in out
    ref, _ = train(tmp_path, capsys, ES, "train.early_stopping=null", "train.epochs=14", "--quiet", out="ref")
    want = checkpoint(ref)["history"]
    got = checkpoint(d)["history"]
    _, again = stop_epoch([r["val_accuracy"] for r in want], patience=2, fresh_at=8)
    assert again > 9 and len(got) == again  # without the fresh count it would have stopped after epoch 9
    assert without_timing(got) == [{k: v for k, v in r.items() if not k.startswith("test_") and k not in TIMING}
                                   for r in want[:again]]


def test_resume_usage_errors(tmp_path, capsys):
    rc, out, err = dlspec_main(capsys, "run", "--resume", tmp_path)
    assert rc == 2 and "no checkpoint.pt" in err
    (tmp_path / "checkpoint.pt").write_bytes(b"not a checkpoint")
    rc, out, err = dlspec_main(capsys, "run", "--resume", tmp_path)
    assert rc == 2 and err == (f"dlspec: cannot resume {tmp_path}: {tmp_path / 'checkpoint.pt'} is not a checkpoint: "
                               "not a zip archive (torch.save writes one)\n")


# --- 3. the run folder -------------------------------------------------------------------------------------

def test_run_folder(tmp_path, capsys):
    d, out = train(tmp_path, capsys, BLOBS, "train.epochs=1", "layers.0.Linear.out_features=7")
    assert set(os.listdir(d)) == RUN_FILES
    text = (d / "spec.yaml").read_text()
    assert text.startswith("# resolved spec") and "train.epochs=1" in text.splitlines()[0]
    spec = yaml.safe_load(text)
    assert spec["train"]["epochs"] == 1 and spec["layers"][0] == {"Linear": {"out_features": 7}}
    rows = csv_rows(d)
    assert len(rows) == 1
    assert list(rows[0]) == ["epoch", "train_loss", "train_accuracy", "test_loss", "test_accuracy", "lr",
                             "samples_per_s", "elapsed_s"]
    assert (d / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import json

    summary = json.loads((d / "summary.json").read_text())
    for key in ("final", "final_epoch", "final_from", "wall_time_s", "train_time_s", "device", "device_name",
                "versions", "path", "epochs", "stopped_early", "params", "data", "spec_hash", "overrides"):
        assert key in summary, key
    assert (summary["final_epoch"], summary["final_from"]) == (1, "last epoch 1")
    assert summary["device"] == "cpu" and summary["epochs"] == 1 and summary["stopped_early"] is False
    assert summary["versions"]["torch"] == torch.__version__
    assert summary["overrides"] == ["train.epochs=1", "layers.0.Linear.out_features=7"]
    assert summary["params"] == 4 * 7 + 7 + 7 * 3 + 3
    ck = checkpoint(d)
    assert summary["final"]["test_accuracy"] == ck["history"][-1]["test_accuracy"]
    assert summary["final"]["test_loss"] == pytest.approx(float(rows[0]["test_loss"]), rel=1e-5)
    assert next(iter(ck["model"].values())).shape == (7, 4)
    assert f"run {d}" in out and "test loss" in out


def test_curves_figure():
    from matplotlib.figure import Figure

    from dlspec.runs import curves_figure, run_title

    rows = [{"epoch": e, "train_loss": 1 / e, "val_loss": 1.2 / e, "train_accuracy": 0.5 + e / 10, "lr": 0.1,
             "samples_per_s": 1.0, "elapsed_s": float(e)} for e in (1, 2, 3)]
    fig = curves_figure(rows, title="Blobs · 2026-11-25 03:09:56")
    fig.canvas.draw()
    assert [ax.get_title() for ax in fig.axes] == ["loss", "accuracy"]  # a constant lr: no panel for it
    for ax in fig.axes:
        lo, hi = ax.get_xlim()
        ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks
    default = Figure()  # what matplotlib's own locator does with three epochs: half epochs
    ax = default.subplots()
    ax.plot([1, 2, 3], [1, 2, 3])
    assert not all(float(t).is_integer() for t in ax.get_xticks())
    suptitle = fig.get_suptitle() if hasattr(fig, "get_suptitle") else fig._suptitle.get_text()
    assert suptitle == "Blobs · 2026-11-25 03:09:56"
    assert run_title("Blobs", "runs/Blobs/20261125-030956") == "Blobs · 2026-11-25 03:09:56"
    assert run_title("Blobs", "runs/Blobs/20261125-030956-2/") == "Blobs · 2026-11-25 03:09:56 (2)"
    assert run_title("Blobs", "/tmp/elsewhere") == "Blobs · elsewhere"

    for r, lr in zip(rows, (0.1, 0.05, 0.025), strict=True):
        r["lr"] = lr
    fig = curves_figure(rows, best={"epoch": 2, "metric": "val_loss", "value": 0.6})
    assert [ax.get_title() for ax in fig.axes] == ["loss", "accuracy", "learning rate"]
    lr_line = fig.axes[2].get_lines()[0]
    assert list(lr_line.get_xdata()) == [1, 2, 3] and list(lr_line.get_ydata()) == [0.1, 0.05, 0.025]
    for ax in fig.axes:
        marks = [ln for ln in ax.get_lines() if list(ln.get_xdata()) == [2, 2]]
        assert len(marks) == 1 and marks[0].get_label() == "best epoch 2 (val_loss)"
        assert "best epoch 2 (val_loss)" in [t.get_text() for t in ax.get_legend().get_texts()]
    assert curves_figure([]) is None


def test_curves_png_of_a_run_with_a_scheduler_and_early_stopping(tmp_path, capsys, monkeypatch):
    import dlspec.runs as runs_mod

    made: list[Any] = []
    figure = runs_mod.curves_figure
    monkeypatch.setattr(runs_mod, "curves_figure", lambda *a, **k: made.append(figure(*a, **k)) or made[-1])
    d, _ = train(tmp_path, capsys, ES, "train.scheduler={StepLR: {step_size: 2, gamma: 0.5}}", "--quiet")
    assert (d / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    fig, = made
    best = checkpoint(d)["best"]["epoch"]
    assert [ax.get_title() for ax in fig.axes] == ["loss", "accuracy", "learning rate"]
    assert all([best, best] in [list(ln.get_xdata()) for ln in ax.get_lines()] for ax in fig.axes)
    suptitle = fig.get_suptitle() if hasattr(fig, "get_suptitle") else fig._suptitle.get_text()
    assert suptitle == runs_mod.run_title("Blobs", str(d)) and suptitle.startswith("Blobs · 20")


def test_run_folder_name_is_one_safe_folder(tmp_path, capsys):
    d, _ = train(tmp_path, capsys, BLOBS.replace("name: Blobs", "name: ../../My Net/v2"), "train.epochs=1", "--quiet")
    assert d.parent.name == "My_Net_v2" and d.parent.parent == tmp_path / "runs"


def test_more_batches_than_samples_with_drop_last_is_refused(tmp_path):
    text = BLOBS.replace("batch_size: 32", "batch_size: 200") + "  drop_last: true\n"
    d = one(refusal(write(tmp_path, text)), "train")
    assert "no batches" in d.message and d.line == line_of(text, "batch_size") and "at most 192" in d.help


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_is_refused(tmp_path, capsys):
    rc, out, err = dlspec_main(capsys, "run", write(tmp_path, BLOBS), "--device", "cuda", "--out", tmp_path / "r")
    assert rc == 1 and "error[device]" in err and "CUDA is not available" in err


# --- 4. overrides ------------------------------------------------------------------------------------------

def test_overrides_paths_and_values(tmp_path, capsys):
    from dlspec import overrides as ov

    data = yaml.safe_load(BLOBS)
    ov.apply(data, ["train.epochs=1", "layers.0.Linear.out_features=7", "layers.-1.Linear.bias=false",
                    "train.optimizer.SGD.lr=1e-2", "train.data.subset={train: 50}", "layers.1.ReLU.inplace=true"])
    assert data["train"]["epochs"] == 1 and data["layers"][0]["Linear"]["out_features"] == 7
    assert data["layers"][2]["Linear"]["bias"] is False and data["layers"][1] == {"ReLU": {"inplace": True}}
    assert data["train"]["optimizer"]["SGD"]["lr"] == 0.01 and data["train"]["data"]["subset"] == {"train": 50}
    # a name written as a plain string takes arguments too (`optimizer: SGD`)
    path = write(tmp_path, BLOBS.replace("{SGD: {lr: 0.1}}", "SGD"))
    s = prepare(path, ["train.optimizer.SGD.lr=0.3"], Options(progress=False))
    assert s.resolved["optimizer"][2] == {"lr": 0.3}
    # a layer written with its bare main value (`- Linear: 16`) takes an override of that argument by name
    short = BLOBS.replace("Linear: {out_features: 16}", "Linear: 16")
    s = prepare(write(tmp_path, short, "short.yaml"), ["layers.0.Linear.out_features=24"], Options(progress=False))
    assert s.model.fc1.out_features == 24 and s.model.fc2.in_features == 24


@pytest.mark.parametrize("item, words", [
    ("layers.9.Linear.out_features=7", ["layers.9", "3 item"]),
    ("layers.1.Linear.out_features=7", ["'ReLU'"]),
    ("train.epochs.x=1", ["train.epochs", "not a mapping"]),
    ("train..epochs=1", ["empty part"]),
    ("train.epochs=[1", ["not valid YAML"]),
])
def test_bad_override_path_exits_2(tmp_path, capsys, item, words):
    path = write(tmp_path, BLOBS)
    rc, out, err = dlspec_main(capsys, "run", path, item, "--out", tmp_path / "runs")
    assert rc == 2, err
    assert err.startswith("command line: error[override]") and "Traceback" not in err
    assert f"  | {item}" in err
    for w in words:
        assert w in err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("item, code, caret", [
    ("train.epochs=0", "train", "0"),
    ("layers.0.Linear.out_features=-3", "invalid-argument", "-3"),
    ("train.optimizer.SGD.lr=-1", "train", "-1"),
    ("train.optimzer=Adam", "train", "optimzer"),
])
def test_invalid_override_values_point_at_the_command_line(tmp_path, capsys, item, code, caret):
    """A value set on the command line has no line in the file: the diagnostic shows the override as its
    source line with the caret under the characters it is about (not the file's line it replaced)."""
    path = write(tmp_path, BLOBS)
    rc, out, err = dlspec_main(capsys, "run", path, item, "--out", tmp_path / "runs")
    assert rc == 1 and "Traceback" not in err
    assert f"command line: error[{code}]" in err, err
    lines = err.splitlines()
    src = lines.index(f"  | {item}")
    start = item.rindex(caret) if caret != "optimzer" else item.index(caret)
    assert lines[src + 1] == "  | " + " " * start + "^" * len(caret), err
    assert f"set on the command line for {path}" in err
    assert "spec.yaml:" not in err.split("dlspec: not started")[0]  # no file line for it
    if item.startswith("train.optimzer"):
        assert "did you mean 'optimizer'" in err
    rc, out, err = dlspec_main(capsys, "run", path, "--epochs", "0", "--out", tmp_path / "runs")
    assert rc == 1 and "  | train.epochs=0" in err


# --- 5. the contract ---------------------------------------------------------------------------------------

SERIES = """\
name: Series
input: [50, 1]
layers:
  - RNN: {hidden_size: 8, batch_first: true}
  - Linear: {out_features: 1}
train:
  data: {name: tiny_series}
  epochs: 1
  device: cpu
"""


def test_contract_per_step_output_against_one_target(tmp_path):
    d = one(refusal(write(tmp_path, SERIES)), "loss")
    assert d.line == line_of(SERIES, "Linear") and d.layer == 1
    assert "MSELoss" in d.message and "50" in d.message
    assert "`- Last`" in d.help and "last step" in d.help
    fixed = SERIES.replace("  - Linear", "  - Last\n  - Linear")
    prepare(write(tmp_path, fixed, "fixed.yaml"), [], Options(progress=False))  # accepted
    with_loss = SERIES.replace("  epochs: 1\n", "  epochs: 1\n  loss: MSELoss\n")
    d = one(refusal(write(tmp_path, with_loss, "loss.yaml")), "loss")
    assert d.line == line_of(with_loss, "loss: MSELoss")


def test_contract_double_softmax_warns_and_still_runs(tmp_path, capsys):
    text = BLOBS.replace("  - Linear: {out_features: 3}\n", "  - Linear: {out_features: 3}\n  - Softmax: {dim: -1}\n")
    path = write(tmp_path, text)
    rc, out, err = dlspec_main(capsys, "run", path, "train.epochs=1", "--out", tmp_path / "runs", "--quiet")
    assert rc == 0
    assert f"spec.yaml:{line_of(text, 'Softmax')}:" in err and "warning[double-softmax]" in err


def test_contract_nll_without_log_softmax(tmp_path):
    text = BLOBS.replace("  device: cpu\n", "  device: cpu\n  loss: NLLLoss\n")
    s = prepare(write(tmp_path, text), [], Options(progress=False))
    w = one(s.warnings, "nll-without-log-softmax", "warning")
    assert w.line == line_of(text, "out_features: 3") and "LogSoftmax" in w.help
    good = text.replace("  - Linear: {out_features: 3}\n", "  - Linear: {out_features: 3}\n  - LogSoftmax: {dim: -1}\n")
    s = prepare(write(tmp_path, good, "good.yaml"), [], Options(progress=False))
    assert not [x for x in s.warnings if x.code == "nll-without-log-softmax"]


@needs_mnist
def test_contract_mnist_sample_shape(tmp_path):
    text = """\
name: Rows
input: [28, 28]
layers:
  - Flatten
  - Linear: {out_features: 10}
train:
  data: {name: mnist, subset: {train: 64, test: 32}}
  device: cpu
"""
    d = one(refusal(write(tmp_path, text), f"train.data.root={DATA_ROOT}"), "data-shape")
    assert d.line == 2 and "[1, 28, 28]" in d.message and "`shape: [28, 28]`" in d.help
    fixed = text.replace("test: 32}}", "test: 32}, shape: [28, 28]}")
    s = prepare(write(tmp_path, fixed, "fixed.yaml"), [f"train.data.root={DATA_ROOT}"], Options(progress=False))
    assert s.bundle.sample_shape == (28, 28)


def test_contract_sample_shape_without_a_shape_option(tmp_path):
    text = BLOBS.replace("input: [4]", "input: [2, 2]").replace("  - Linear: {out_features: 16}\n",
                                                              "  - Flatten\n  - Linear: {out_features: 16}\n")
    d = one(refusal(write(tmp_path, text)), "data-shape")
    assert d.line == 2 and "write input: [4]" in d.help and "shape:" not in d.help  # tiny_blobs cannot reshape


def test_contract_classes(tmp_path):
    text = BLOBS.replace("{name: tiny_blobs}", "{name: tiny_blobs, classes: 10}").replace("out_features: 3", "out_features: 5")
    d = one(refusal(write(tmp_path, text)), "classes")
    assert d.line == line_of(text, "out_features: 5") and "5 class scores" in d.message and "10 classes" in d.message
    assert "out_features: 10" in d.help
    more = text.replace("out_features: 5", "out_features: 12")
    s = prepare(write(tmp_path, more, "more.yaml"), [], Options(progress=False))
    one(s.warnings, "classes", "warning")


def test_contract_float_data_into_embedding(tmp_path):
    text = """\
name: Ids
input: {shape: [4], dtype: long}
layers:
  - Embedding: {num_embeddings: 10, embedding_dim: 3}
  - Flatten
  - Linear: {out_features: 3}
train:
  data: {name: tiny_blobs}
  device: cpu
"""
    d = one(refusal(write(tmp_path, text)), "dtype")
    assert d.line == 2 and "float features" in d.message and "integer ids" in d.message


def test_contract_unknown_torch_names_and_keywords(tmp_path):
    text = """\
name: Names
input: [4]
layers:
  - Linear: {out_features: 3}
train:
  data: {name: tiny_blobs}
  loss: CrossEntropyLos
  optimizer:
    SGD: {lrr: 0.1}
  scheduler:
    StepLR: {step_size: 1, gama: 0.5}
  device: cpu
"""
    import dlspec

    want = {(7, "did you mean 'CrossEntropyLoss'?"), (9, "did you mean 'lr'?"), (11, "did you mean 'gamma'?")}
    static = {(d.line, d.help) for d in dlspec.check(dlspec.loads(text)).diagnostics if d.code == "torch-name"}
    assert static == want  # `dlspec check` finds them, torch-free
    found = {(d.line, d.help) for d in refusal(write(tmp_path, text)) if d.code == "torch-name"}
    assert found == want  # and `dlspec run` refuses to start
    names = text.replace("SGD: {lrr", "SGDD: {lr").replace("StepLR: {step_size: 1, gama", "StepLRR: {step_size: 1, gamma")
    found = {(d.line, d.help) for d in refusal(write(tmp_path, names, "names.yaml")) if d.code == "torch-name"}
    assert (9, "did you mean 'SGD'?") in found and (11, "did you mean 'StepLR'?") in found


@pytest.mark.parametrize("bad, line_needle, words", [
    ("{SGD: {lr: -1}}", "optimizer", ["lr must be a number from 0"]),
    ("{Adam: {lr: 0.01, betas: [0.9, 1.5]}}", "optimizer", ["beta"]),
])
def test_values_torch_refuses_are_diagnostics(tmp_path, capsys, bad, line_needle, words):
    text = BLOBS.replace("{SGD: {lr: 0.1}}", bad)
    rc, out, err = dlspec_main(capsys, "run", write(tmp_path, text), "--out", tmp_path / "runs")
    assert rc == 1 and "Traceback" not in err and "error[train]" in err
    assert f"spec.yaml:{line_of(text, line_needle)}:" in err
    for w in words:
        assert w in err
    assert not (tmp_path / "runs").exists()  # refused before a run folder is made


def test_loss_weights_from_yaml_lists(tmp_path, capsys):
    text = BLOBS.replace("  device: cpu\n", "  device: cpu\n  loss: {CrossEntropyLoss: {weight: [1, 2, 3]}}\n")
    s = prepare(write(tmp_path, text), [], Options(progress=False))
    tr = Trainer(s, Options(progress=False))
    torch.testing.assert_close(tr.step.objective.terms[0].loss.weight, torch.tensor([1.0, 2.0, 3.0]))
    bad = text.replace("[1, 2, 3]", "[1, 2]")
    d = [x for x in refusal(write(tmp_path, bad, "bad.yaml")) if x.code == "train"][0]
    assert "weight has 2 values" in d.message and d.line == line_of(bad, "loss:")


def test_metric_that_does_not_fit_the_task(tmp_path):
    text = BLOBS.replace("  device: cpu\n", "  device: cpu\n  metrics: [accuracy, mse]\n")
    d = one(refusal(write(tmp_path, text)), "metric")
    assert "mse does not apply to classification" in d.message and d.line == line_of(text, "metrics")
    text = REG.replace("  device: cpu\n", "  device: cpu\n  metrics: [mae, accuracy]\n")
    d = one(refusal(write(tmp_path, text, "reg.yaml")), "metric")
    assert "accuracy does not apply to regression" in d.message


def test_early_stopping_metric_must_exist(tmp_path):
    text = BLOBS.replace("  device: cpu\n", "  device: cpu\n  early_stopping: {metric: val_loss}\n")
    d = one(refusal(write(tmp_path, text)), "metric")
    assert "val_split" in d.message and d.line == line_of(text, "early_stopping")
    typo = text.replace("val_loss", "train_acc")
    d = one(refusal(write(tmp_path, typo, "typo.yaml")), "metric")
    assert "did you mean 'train_accuracy'?" in d.help
    # selecting the epoch on the test set: refused, whatever the data
    test = text.replace("val_loss", "test_accuracy")
    d = one(refusal(write(tmp_path, test, "test.yaml")), "metric")
    assert "may not watch test_accuracy" in d.message and "val_split" in d.help


def test_early_stopping_metric_checked_statically():
    """With a dataset whose task is known from its options, `dlspec check` finds a misspelt metric (`val_acc`)."""
    import dlspec

    text = ("input: [1, 28, 28]\nlayers: [Flatten, {Linear: 10}]\ntrain:\n  data: {name: shapes}\n"
            "  val_split: 0.1\n  early_stopping: {metric: val_acc}\n")
    (d,) = dlspec.check(dlspec.loads(text)).diagnostics
    assert (d.code, d.line, d.path) == ("metric", 6, ("train", "early_stopping", "metric"))
    assert d.help is not None and d.help.startswith("did you mean 'val_accuracy'?")
    fixed = text.replace("val_acc}", "val_accuracy}")
    assert dlspec.check(dlspec.loads(fixed)).ok


def test_precision(tmp_path, capsys, monkeypatch):
    d = one(refusal(write(tmp_path, BLOBS + "  precision: fp16\n")), "precision")
    assert d.line == line_of(BLOBS + "  precision: fp16\n", "precision") and "CUDA" in d.message
    import dlspec.builder as builder

    build, dtypes = builder.build_checked, set()

    def build_with_hook(checked: Any) -> Any:
        model = build(checked)
        model.register_forward_hook(lambda m, a, out: dtypes.add(out.dtype) if m.training else None)
        return model

    monkeypatch.setattr(builder, "build_checked", build_with_hook)
    d_, _ = train(tmp_path, capsys, BLOBS + "  precision: bf16\n", "--quiet")
    assert dtypes == {torch.bfloat16}  # autocast really ran the model in bf16
    import json

    summary = json.loads((d_ / "summary.json").read_text())
    assert summary["precision"] == "bf16"
    assert all(math.isfinite(r["train_loss"]) for r in checkpoint(d_)["history"])


# --- 6. features ---------------------------------------------------------------------------------------------

def test_val_split(tmp_path, capsys):
    text = BLOBS + "  val_split: 0.25\n"
    s = prepare(write(tmp_path, text), [], Options(progress=False))
    assert (len(s.bundle.train), len(s.val)) == (144, 48)
    full = load_data("tiny_blobs").train
    both = torch.cat([s.bundle.train.x, s.val.x])
    assert sorted(map(tuple, both.tolist())) == sorted(map(tuple, full.x.tolist()))  # a partition
    d, out = train(tmp_path, capsys, text, "train.epochs=1")
    import json

    summary = json.loads((d / "summary.json").read_text())
    assert (summary["data"]["train"], summary["data"]["val"], summary["data"]["test"]) == (144, 48, 64)
    row = csv_rows(d)[0]
    assert {"val_loss", "val_accuracy"} <= set(row) and "144 train / 48 val / 64 test" in out


def test_eval_every(tmp_path, capsys):
    d, _ = train(tmp_path, capsys, BLOBS, "train.epochs=3", "train.eval_every=2")
    rows = csv_rows(d)
    assert [r["test_loss"] != "" for r in rows] == [False, True, True]  # epoch 2, and the last
    assert list(rows[0]) == ["epoch", "train_loss", "train_accuracy", "test_loss", "test_accuracy", "lr",
                             "samples_per_s", "elapsed_s"]
    assert all(r["train_loss"] for r in rows)


def test_early_stopping(tmp_path, capsys):
    d, out = train(tmp_path, capsys, BLOBS + "  val_split: 0.25\n", "train.epochs=10",
                   "train.early_stopping={metric: val_loss, patience: 2, min_delta: 10}")
    import json

    summary = json.loads((d / "summary.json").read_text())
    assert summary["stopped_early"] is True and summary["epochs"] == 3 and len(csv_rows(d)) == 3
    assert summary["best"]["epoch"] == 1 and "early stopping" in out


def eval_numbers(text: str) -> dict[str, float]:
    """`dlspec eval`'s line `NAME test (N samples): loss 0.1234  accuracy 0.5678` as numbers."""
    words = text.split(":", 1)[1].split()
    return {f"test_{k}": float(v) for k, v in zip(words[::2], words[1::2], strict=True)}


def test_early_stopping_keeps_the_best_epoch(tmp_path, capsys):
    import json

    d, out = train(tmp_path, capsys, ES)
    hist = checkpoint(d)["history"]
    best, stop = stop_epoch([r["val_accuracy"] for r in hist], patience=2)
    assert (best, stop, len(hist)) == (6, 8, 8)  # a best epoch before the last (7 ties it, 8 is worse)
    assert not any(k.startswith("test_") for r in hist for k in r)  # with val_split: no test set in the loop
    # the reference: the same recipe run uninterrupted, without early stopping, for 6 and for 8 epochs
    at_best, _ = train(tmp_path, capsys, ES, "train.early_stopping=null", "train.epochs=6", "--quiet", out="six")
    at_stop, _ = train(tmp_path, capsys, ES, "train.early_stopping=null", "train.epochs=8", "--quiet", out="eight")
    saved = torch.load(d / "best.pt", map_location="cpu", weights_only=True)
    assert (saved["epoch"], saved["metric"], saved["value"]) == (6, "val_accuracy", hist[5]["val_accuracy"])
    for name, t in checkpoint(at_best)["model"].items():
        assert torch.equal(saved["model"][name], t), name  # best.pt: epoch 6's weights, bit for bit
    for name, t in checkpoint(at_stop)["model"].items():
        assert torch.equal(checkpoint(d)["model"][name], t), name  # checkpoint.pt: still the last epoch's

    summary = json.loads((d / "summary.json").read_text())
    six = json.loads((at_best / "summary.json").read_text())
    assert summary["final"] == six["final"] and set(summary["final"]) == {"test_loss", "test_accuracy"}
    assert (summary["final_epoch"], summary["final_from"]) == (6, f"best epoch 6 (val_accuracy {hist[5]['val_accuracy']:.4f})")
    rc, text, err = dlspec_main(capsys, "eval", d / "spec.yaml", "--checkpoint", d / "best.pt")
    assert rc == 0, err
    assert eval_numbers(text) == pytest.approx(summary["final"], abs=6e-5)  # printed to 4 decimals
    rc, text, err = dlspec_main(capsys, "predict", d / "spec.yaml", "--checkpoint", d / "best.pt", "-n", "2")
    assert rc == 0 and len(text.splitlines()) == 2, err
    last = out.strip().splitlines()[-1]
    assert last.startswith("test loss ") and last.endswith(f"│ weights of the {summary['final_from']}")

    # restore_best: false: the last epoch's weights, tested once at the end
    kept, out = train(tmp_path, capsys, ES, "train.restore_best=false", "--quiet", out="kept")
    summary = json.loads((kept / "summary.json").read_text())
    assert summary["final"] == json.loads((at_stop / "summary.json").read_text())["final"]
    assert (summary["final_epoch"], summary["final_from"]) == (8, "last epoch 8")
    assert (kept / "best.pt").exists()  # still written: the best weights are there to take


def test_early_stopping_never_selects_on_the_test_set():
    from types import SimpleNamespace

    from dlspec.selection import early_stop
    from dlspec.trainspec import TrainConfig

    cfg = TrainConfig(data_name="tiny_blobs", data_args={}, early_stopping={"metric": "test_loss", "patience": 1})
    tr = SimpleNamespace(best=None, bad_evals=0)
    for e, v in enumerate([0.9, 0.8, 0.95, 0.97], 1):
        assert early_stop(tr, {"epoch": e, "test_loss": v, "val_loss": v}, cfg) == (False, False)
    assert tr.best is None
    cfg.early_stopping = {"metric": "val_loss", "patience": 1}  # the same rows through a val metric: it does select
    assert [early_stop(tr, {"epoch": e, "val_loss": v}, cfg) for e, v in enumerate([0.9, 0.8, 0.95], 1)] == \
        [(True, False), (True, False), (False, True)]
    assert tr.best == {"metric": "val_loss", "value": 0.8, "epoch": 2}


@pytest.mark.parametrize("extra, tested", [
    ("", [False, False, False, True]),  # with val_split: the test set only at the end
    ("  test_every: 2\n", [False, True, False, True]),
    ("  test_every: 3\n", [False, False, True, True]),
])
def test_when_the_test_set_is_evaluated(tmp_path, capsys, extra, tested):
    d, out = train(tmp_path, capsys, BLOBS + "  val_split: 0.25\n" + extra, "train.epochs=4")
    rows = csv_rows(d)
    assert [r["test_loss"] != "" for r in rows] == tested and all(r["val_loss"] != "" for r in rows)
    assert [("│ test loss" in line) for line in out.splitlines() if line.startswith("epoch ")] == tested
    plain, _ = train(tmp_path, capsys, BLOBS, "train.epochs=3", "train.eval_every=2", "--quiet", out="plain")
    assert [r["test_loss"] != "" for r in csv_rows(plain)] == [False, True, True]  # no val_split: as eval_every


def grad_norm(model: Any) -> float:
    return float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()
                                                       if p.grad is not None])))


def record_steps(monkeypatch: Any) -> list[tuple[float, float]]:
    """(lr, grad norm) as the optimizer is about to take each step."""
    import dlspec.trainer as trainer_mod

    seen: list[tuple[float, float]] = []
    init = trainer_mod.Trainer.__init__

    def init_recording(self: Any, *a: Any, **k: Any) -> None:  # the run's optimizer (not the trial step's)
        init(self, *a, **k)
        model = self.model
        self.step.optimizer.register_step_pre_hook(
            lambda o, a, k: seen.append((o.param_groups[0]["lr"], grad_norm(model))))

    monkeypatch.setattr(trainer_mod.Trainer, "__init__", init_recording)
    return seen


def test_clip_grad_norm(tmp_path, capsys, monkeypatch):
    seen = record_steps(monkeypatch)
    text = BLOBS + "  clip_grad_norm: 0.05\n"
    train(tmp_path, capsys, text, "--quiet")
    assert len(seen) == 2 * 6
    assert all(n <= 0.05 * (1 + 1e-5) for _, n in seen)
    # reference: the unclipped gradient of the first batch is larger, so the clipped one is exactly 0.05
    torch.manual_seed(0)
    model = dlspec.build(write(tmp_path, text, "ref.yaml"))
    data = load_data("tiny_blobs").train
    idx = epoch_permutation(len(data), 0, 0)[:32]
    torch.nn.functional.cross_entropy(model(data.x[idx]), data.y[idx]).backward()
    assert grad_norm(model) > 0.05
    assert seen[0][1] == pytest.approx(0.05, rel=1e-5)


def test_onecycle_per_batch_matches_torch(tmp_path, capsys, monkeypatch):
    seen = record_steps(monkeypatch)
    train(tmp_path, capsys, BLOBS, "train.epochs=3", "train.scheduler={OneCycleLR: {max_lr: 0.5}}", "--quiet")
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.5, total_steps=3 * 6)
    want = []
    for _ in range(3 * 6):
        want.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert [lr for lr, _ in seen] == pytest.approx(want, rel=1e-12)
    assert len(set(want)) > 10  # it does change at every step


def test_steplr_per_epoch_matches_torch(tmp_path, capsys, monkeypatch):
    seen = record_steps(monkeypatch)
    d, _ = train(tmp_path, capsys, BLOBS, "train.epochs=3", "train.scheduler={StepLR: {step_size: 1, gamma: 0.5}}",
                 "--quiet")
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    want = []
    for _ in range(3):
        want.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert [r["lr"] for r in checkpoint(d)["history"]] == pytest.approx(want, rel=1e-12)
    assert [lr for lr, _ in seen] == pytest.approx([lr for lr in want for _ in range(6)], rel=1e-12)


def test_reduce_lr_on_plateau_watches_val_loss(tmp_path, capsys):
    d, _ = train(tmp_path, capsys, BLOBS + "  val_split: 0.25\n", "train.epochs=4",
                 "train.scheduler={ReduceLROnPlateau: {mode: max, patience: 0, factor: 0.5}}", "--quiet")
    hist = checkpoint(d)["history"]
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", patience=0, factor=0.5)
    want = []
    for r in hist:
        want.append(opt.param_groups[0]["lr"])
        sched.step(r["val_loss"])
    assert [r["lr"] for r in hist] == pytest.approx(want, rel=1e-12)
    assert want[-1] < want[0]


def test_reduce_lr_on_plateau_sees_val_loss_every_epoch_with_eval_every(tmp_path, capsys):
    d, _ = train(tmp_path, capsys, BLOBS + "  val_split: 0.25\n  eval_every: 2\n", "train.epochs=4",
                 "train.scheduler={ReduceLROnPlateau: {mode: max, patience: 0, factor: 0.5}}", "--quiet")
    rows = csv_rows(d)
    assert [r["test_loss"] != "" for r in rows] == [False, False, False, True]  # with val_split: at the end
    assert all(r["val_loss"] != "" for r in rows)  # the scheduler's input: every epoch, one metric
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", patience=0, factor=0.5)
    want = []
    for r in checkpoint(d)["history"]:
        want.append(opt.param_groups[0]["lr"])
        sched.step(r["val_loss"])
    assert [r["lr"] for r in checkpoint(d)["history"]] == pytest.approx(want, rel=1e-12)


def test_xavier_uniform_init(tmp_path):
    text = BLOBS + "  init: xavier_uniform\n  seed: 5\n"
    path = write(tmp_path, text)
    s = prepare(path, [], Options(progress=False))
    linears = [m for m in s.model.modules() if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 2
    for m in linears:
        fan_out, fan_in = m.weight.shape
        bound = math.sqrt(6 / (fan_in + fan_out))
        top = float(m.weight.detach().abs().max())
        assert 0.8 * bound < top <= bound
    torch.manual_seed(5)  # reference: build, then torch's xavier_uniform_ on each Linear's weight, in order (d2l)
    ref = dlspec.build(path)
    for m in ref.modules():
        if isinstance(m, torch.nn.Linear):
            torch.nn.init.xavier_uniform_(m.weight)
    for (k, a), b in zip(ref.state_dict().items(), s.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), k


def test_classification_metrics_equal_direct_computation(tmp_path):
    text = BLOBS.replace("{name: tiny_blobs}", "{name: tiny_blobs, classes: 10, n_test: 70}").replace(
        "out_features: 3", "out_features: 10") + "  metrics: [accuracy, top5_accuracy, perplexity]\n" \
        "  eval_batch_size: 16\n"
    s = prepare(write(tmp_path, text), [], Options(progress=False))
    got = Trainer(s, Options(progress=False)).evaluate(s.bundle.test)
    with torch.no_grad():
        out, y = s.model(s.bundle.test.x), s.bundle.test.y
    loss = torch.nn.functional.cross_entropy(out, y).item()
    want = {"loss": loss, "accuracy": (out.argmax(1) == y).double().mean().item(),
            "top5_accuracy": (out.topk(5, 1).indices == y[:, None]).any(1).double().mean().item(),
            "perplexity": math.exp(loss)}
    assert got == pytest.approx(want, rel=1e-6)
    assert 0 < want["accuracy"] < want["top5_accuracy"] < 1  # the numbers are not trivial


def test_regression_metrics_equal_direct_computation(tmp_path):
    s = prepare(write(tmp_path, REG + "  metrics: [mse, mae, rmse]\n  eval_batch_size: 16\n"), [],
                Options(progress=False))
    got = Trainer(s, Options(progress=False)).evaluate(s.bundle.test)
    with torch.no_grad():
        err = (s.model(s.bundle.test.x) - s.bundle.test.y).double()
    mse = (err ** 2).mean().item()
    assert got == pytest.approx({"loss": mse, "mse": mse, "mae": err.abs().mean().item(), "rmse": math.sqrt(mse)},
                                rel=1e-6)


def test_binary_accuracy_with_one_logit(tmp_path, capsys):
    text = BLOBS.replace("{name: tiny_blobs}", "{name: tiny_blobs, classes: 2}").replace(
        "out_features: 3", "out_features: 1") + "  loss: BCEWithLogitsLoss\n"
    s = prepare(write(tmp_path, text), [], Options(progress=False))
    got = Trainer(s, Options(progress=False)).evaluate(s.bundle.test)
    with torch.no_grad():
        out, y = s.model(s.bundle.test.x)[:, 0], s.bundle.test.y
    assert got["accuracy"] == pytest.approx(((out > 0).long() == y).double().mean().item())
    assert got["loss"] == pytest.approx(torch.nn.functional.binary_cross_entropy_with_logits(out, y.float()).item(),
                                        rel=1e-6)
    d, _ = train(tmp_path, capsys, text, "train.epochs=5", "--quiet")
    assert checkpoint(d)["history"][-1]["test_accuracy"] > 0.8  # learnt (an argmax of one logit gives 0.5)


def test_same_seed_same_metrics(tmp_path, capsys):
    text = RESUME.replace("epochs: 3", "epochs: 2")
    a, _ = train(tmp_path, capsys, text, "--quiet", out="a")
    b, _ = train(tmp_path, capsys, text, "--quiet", out="b")
    c, _ = train(tmp_path, capsys, text, "train.seed=1", "--quiet", out="c")
    assert without_timing(csv_rows(a)) == without_timing(csv_rows(b))
    assert list(csv_rows(a)[0]) == list(csv_rows(b)[0])
    assert csv_rows(a)[0]["train_loss"] != csv_rows(c)[0]["train_loss"]


# --- 7. the command line in a subprocess -----------------------------------------------------------------

def command(*argv: Any, cwd: Path, test_datasets: bool = True) -> subprocess.CompletedProcess[str]:
    """`dlspec ...` in a fresh interpreter: this file as the program (with the test datasets), or the real one."""
    prog = [str(HERE)] if test_datasets else ["-m", "dlspec"]
    env = dict(os.environ, DLSPEC_DATA=DATA_ROOT, OMP_NUM_THREADS="1", NO_COLOR="1")
    return subprocess.run([sys.executable, *prog, *map(str, argv)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


def test_cli_eval_predict(tmp_path, capsys):
    d, _ = train(tmp_path, capsys, BLOBS, "--quiet")
    import json

    final = json.loads((d / "summary.json").read_text())["final"]
    p = command("eval", d / "spec.yaml", "--checkpoint", d / "checkpoint.pt", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("tiny_blobs test (64 samples):")
    assert f"loss {final['test_loss']:.4f}  accuracy {final['test_accuracy']:.4f}" in p.stdout

    p = command("predict", d / "spec.yaml", "--checkpoint", d / "checkpoint.pt", "-n", "5", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert len(lines) == 5
    model = dlspec.build(str(d / "spec.yaml"))
    model.load_state_dict(checkpoint(d)["model"])
    test = load_data("tiny_blobs").test
    with torch.no_grad():
        prob = model.eval()(test.x[:5]).softmax(-1)
    for i, line in enumerate(lines):
        k, y = int(prob[i].argmax()), int(test.y[i])
        assert line.startswith(f"sample {i:>3}: predicted {k} (c{k}) p={float(prob[i, k]):.3f} · target {y} (c{y})")
        assert line.endswith("✓" if k == y else "✗")

    other = write(tmp_path, BLOBS.replace("out_features: 16", "out_features: 17"), "other.yaml")
    rc, out, err = dlspec_main(capsys, "eval", other, "--checkpoint", d / "checkpoint.pt")
    assert rc == 1 and "layers.0: Linear(in_features=4, out_features=16) in the checkpoint's model, " \
        f"Linear(in_features=4, out_features=17) in {other}" in err and "Traceback" not in err
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    rc, out, err = dlspec_main(capsys, "predict", d / "spec.yaml", "--checkpoint", junk)
    assert rc == 1 and f"{junk} is not a checkpoint: not a zip archive" in err
    rc, out, err = dlspec_main(capsys, "eval", d / "spec.yaml", "--checkpoint", tmp_path / "none.pt")
    assert rc == 2 and "no checkpoint file" in err  # like an unreadable spec: status 2, before any data is loaded


def test_predict_regression(tmp_path, capsys):
    d, _ = train(tmp_path, capsys, REG, "--quiet")
    rc, out, err = dlspec_main(capsys, "predict", d / "spec.yaml", "--checkpoint", d / "checkpoint.pt", "-n", "3")
    assert rc == 0, err
    model = dlspec.build(str(d / "spec.yaml"))
    model.load_state_dict(checkpoint(d)["model"])
    test = load_data("tiny_reg").test
    with torch.no_grad():
        pred = model.eval()(test.x[:3])
    assert out.splitlines() == [f"sample {i:>3}: predicted {round(float(pred[i, 0]), 4)} · target "
                                f"{round(float(test.y[i, 0]), 4)}" for i in range(3)]


def test_cli_run_in_a_subprocess(tmp_path):
    path = write(tmp_path, BLOBS)
    p = command("run", path, "train.epochs=1", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    d = run_dir(tmp_path / "runs")  # the default --out
    assert set(os.listdir(d)) == RUN_FILES and p.stdout.startswith(f"run {d.relative_to(tmp_path)}")


def test_cli_exit_codes(tmp_path, capsys):
    p = command("run", "--epochs", "many", cwd=tmp_path, test_datasets=False)  # argparse: usage
    assert p.returncode == 2 and "usage:" in p.stderr
    rc, out, err = dlspec_main(capsys, "run")
    assert rc == 2 and "give a spec file" in err
    rc, out, err = dlspec_main(capsys, "run", tmp_path / "missing.yaml")
    assert rc == 2 and "cannot read" in err
    text = BLOBS.replace("out_features: 3", "out_features: 2")
    rc, out, err = dlspec_main(capsys, "run", write(tmp_path, text), "--out", tmp_path / "runs")
    assert rc == 1 and "error[classes]" in err and "not started: 1 error" in err
    assert not (tmp_path / "runs").exists()
    rc, out, err = dlspec_main(capsys, "run", write(tmp_path, BLOBS.split("train:")[0], "notrain.yaml"))
    assert rc == 1 and "no `train:` section" in err
    rc, out, err = dlspec_main(capsys, "run", write(tmp_path, BLOBS, "b.yaml"), "train.data.fail=true")
    assert rc == 1 and "command line: error[data]" in err and "  | train.data.fail=true" in err
    rc, out, err = dlspec_main(capsys, "run", write(tmp_path, BLOBS, "b.yaml"), "train.data.crash=true")
    assert rc == 1 and "error[data]: cannot load tiny_blobs: OSError: [Errno 5] Input/output error" in err


def usage_error(capsys: Any, *argv: Any) -> str:
    """stderr of a command line argparse refuses (exit status 2)."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        cli.main([str(a) for a in argv])
    assert e.value.code == 2
    return capsys.readouterr().err


def test_overrides_after_options(tmp_path, capsys, monkeypatch):
    import json

    compiled: list[Any] = []
    monkeypatch.setattr(torch, "compile", lambda model, **kw: compiled.append(kw) or model)  # no real compiler
    path = write(tmp_path, BLOBS)
    rc, out, err = dlspec_main(capsys, "run", path, "--out", tmp_path / "runs", "train.epochs=1", "--quiet",
                               "layers.0.Linear.out_features=7", "--compile", "train.seed=3", "--no-progress",
                               "train.batch_size=16")
    assert rc == 0, err
    d = run_dir(tmp_path / "runs")
    spec = yaml.safe_load((d / "spec.yaml").read_text())
    assert (spec["train"]["epochs"], spec["train"]["seed"], spec["train"]["batch_size"]) == (1, 3, 16)
    assert spec["layers"][0] == {"Linear": {"out_features": 7}} and spec["train"]["compile"] == "default"
    assert compiled and json.loads((d / "summary.json").read_text())["path"].startswith("compile(default)")
    assert next(iter(checkpoint(d)["model"].values())).shape == (7, 4)  # the override reached the model
    assert len(csv_rows(d)) == 1

    ck = ("--checkpoint", d / "checkpoint.pt")
    rc, out, err = dlspec_main(capsys, "eval", d / "spec.yaml", *ck, "train.data.n_test=10")
    assert rc == 0 and out.startswith("tiny_blobs test (10 samples):"), err
    rc, out, err = dlspec_main(capsys, "predict", d / "spec.yaml", "-n", "3", *ck, "train.data.n_test=2")
    assert rc == 0 and len(out.splitlines()) == 2, err  # only 2 test samples to predict
    chars, _ = train(tmp_path, capsys, CHARS, "train.epochs=1", "--quiet", out="chars")
    rc, out, err = dlspec_main(capsys, "generate", chars / "spec.yaml", "--checkpoint", chars / "checkpoint.pt",
                               "--length", "5", "train.data.encoding=one_hot")
    assert rc == 1 and "error[data-shape]" in err and "(N, 8, 28) float" in err  # one-hot data: the override ran


@pytest.mark.parametrize("argv, words", [
    (["--bogus"], ["unrecognized arguments: --bogus"]),
    (["--qiet"], ["unrecognized arguments: --qiet (did you mean --quiet?)"]),
    (["--epochs", "2", "train.epochs"], ["unrecognized arguments: train.epochs", "PATH=VALUE, e.g. train.epochs=3"]),
    (["train.epochs"], ["unrecognized arguments: train.epochs", "PATH=VALUE"]),
    (["train.seed=1", "--quiet", "stray", "train.epochs=1"], ["unrecognized arguments: stray"]),
])
def test_command_line_mistakes_are_usage_errors_of_the_subcommand(tmp_path, capsys, argv, words):
    err = usage_error(capsys, "run", write(tmp_path, BLOBS), *argv, "--out", tmp_path / "runs")
    assert err.startswith("usage: dlspec run ") and "dlspec run: error: " in err and "Traceback" not in err
    for w in words:
        assert w in err
    assert not (tmp_path / "runs").exists()
    err = usage_error(capsys, "eval", write(tmp_path, BLOBS), "--checkpoint", "c.pt", *argv)
    assert err.startswith("usage: dlspec eval ") and "dlspec eval: error: unrecognized arguments: " in err
    assert "usage: dlspec check " in usage_error(capsys, "check", write(tmp_path, BLOBS), "--bogus")


def test_compile_takes_a_mode_but_not_a_spec_or_an_override():
    def parsed(*argv: str) -> tuple[Any, list[str]]:
        return cli.parser().parse_known_args(cli._compile_mode_apart(["run", *argv]))

    assert parsed("s.yaml", "--compile")[0].compile == "default"
    assert parsed("s.yaml", "--compile", "max-autotune")[0].compile == "max-autotune"
    args, extras = parsed("--compile", "s.yaml", "train.epochs=1")
    assert (args.compile, args.spec, args.overrides, extras) == ("default", "s.yaml", ["train.epochs=1"], [])
    args, extras = parsed("s.yaml", "--compile", "train.epochs=1")
    assert (args.compile, args.spec, extras) == ("default", "s.yaml", ["train.epochs=1"])


def test_cli_datasets(capsys):
    rc, out, err = dlspec_main(capsys, "datasets")
    assert rc == 0
    names = [line.split()[0] for line in out.splitlines() if line and not line.startswith(" ")]
    assert "mnist" in names and "tiny_blobs" in names and names == sorted(names)
    assert "options: n, n_test, classes, features, fail, crash, subset" in out


# --- generation ----------------------------------------------------------------------------------------------

CHARS = """\
name: Chars
input: {shape: [T], dtype: long}
layers:
  - Embedding: {num_embeddings: 28, embedding_dim: 8}
  - GRU: {hidden_size: 24, batch_first: true}
  - Linear: {out_features: 28}
train:
  data: {name: tiny_chars}
  epochs: 2
  batch_size: 16
  optimizer: {Adam: {lr: 0.01}}
  device: cpu
"""
CHARS_ONE_HOT = """\
name: CharsOneHot
input: [T, 28]
layers:
  - LSTM: {hidden_size: 16, num_layers: 2, batch_first: true}
  - Linear: {out_features: 28}
train:
  data: {name: tiny_chars, encoding: one_hot}
  epochs: 1
  batch_size: 16
  optimizer: {Adam: {lr: 0.01}}
  device: cpu
"""


def reference_generate(s: Any, prime: str, length: int, temperature: float, seed: int) -> str:
    """Sampling with a full forward pass over the whole text so far at every step (no carried state)."""
    vocab = s.bundle.vocab
    g = torch.Generator().manual_seed(seed)
    ids = [vocab.index(c) for c in prime]
    with torch.no_grad():
        for _ in range(length):
            x = torch.tensor([ids])
            if s.bundle.x_dtype == "float":
                x = torch.nn.functional.one_hot(x, len(vocab)).float()
            p = torch.softmax(s.model.eval()(x)[0, -1] / temperature, -1)
            ids.append(int(torch.multinomial(p, 1, generator=g)))
    return "".join(vocab[i] for i in ids)


CHARS_ATTENTION = CHARS.replace("  - GRU: {hidden_size: 24, batch_first: true}\n",
                                "  - MultiheadAttention: {num_heads: 2, batch_first: true}\n")
CHARS_BIDIRECTIONAL = CHARS.replace("batch_first: true}", "batch_first: true, bidirectional: true}")


@pytest.mark.parametrize("text, carried", [(CHARS, True), (CHARS_ONE_HOT, True), (CHARS_ATTENTION, False),
                                           (CHARS_BIDIRECTIONAL, False)],
                         ids=["gru-ids", "lstm-one_hot", "attention", "bidirectional"])
def test_generate_carries_the_recurrent_state(tmp_path, capsys, text, carried):
    from dlspec.generate import _forward, generate, stepwise

    d, _ = train(tmp_path, capsys, text, "train.epochs=1", "--quiet")
    s = prepare(str(d / "spec.yaml"), [], Options(progress=False), training=False)
    assert len(s.bundle.vocab) == 28
    s.model.load_state_dict(checkpoint(d)["model"])
    s.model.eval()
    assert stepwise(s.checked, s.model) == carried  # a layer that mixes time steps: a full pass at every step instead
    x = s.bundle.test.x[:1]
    with torch.no_grad():
        full = s.model(x)
        state: dict[int, Any] = {}
        steps = torch.cat([_forward(s.checked, s.model, x[:, t:t + 1], state) for t in range(x.shape[1])], 1)
    if carried:
        torch.testing.assert_close(steps, full, rtol=1e-5, atol=1e-5)
    else:
        assert not torch.allclose(steps, full, atol=1e-3)  # why a step-by-step pass would be wrong
    got = generate(s, "the ", 30, 0.8, 3)
    assert got == reference_generate(s, "the ", 30, 0.8, 3)
    assert got == generate(s, "the ", 30, 0.8, 3)
    assert len(got) == 34 and got.startswith("the ") and set(got) <= set(s.bundle.vocab)


def test_cli_generate(tmp_path, capsys):
    d, _ = train(tmp_path, capsys, CHARS, "--quiet")
    args = ("generate", d / "spec.yaml", "--checkpoint", d / "checkpoint.pt", "--prime", "the", "--length", "25",
            "--seed", "7", "--temperature", "0.5")
    p = command(*args, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    line = p.stdout.rstrip("\n")
    assert len(line) == 28 and line.startswith("the") and set(line) <= set(TEXT)
    rc, out, err = dlspec_main(capsys, *args)  # the same seed in another process: the same text
    assert rc == 0 and out.rstrip("\n") == line
    rc, out, err = dlspec_main(capsys, *args[:4], "--length", "10", "--seed", "1")  # no prime: a random first one
    assert rc == 0 and len(out.rstrip("\n")) == 11 and set(out.rstrip("\n")) <= set(TEXT)
    rc, out, err = dlspec_main(capsys, *args[:4], "--prime", "THE")
    assert rc == 2 and "not in the vocabulary" in err
    rc, out, err = dlspec_main(capsys, *args[:4], "--temperature", "0")
    assert rc == 2 and "temperature" in err
    blobs, _ = train(tmp_path, capsys, BLOBS, "--quiet", out="blobs")
    rc, out, err = dlspec_main(capsys, "generate", blobs / "spec.yaml", "--checkpoint", blobs / "checkpoint.pt")
    assert rc == 2 and "not a char_text dataset" in err


@pytest.mark.skipif("char_text" not in DATASETS, reason="the char_text dataset is not there yet")
def test_generate_with_char_text(tmp_path, capsys):
    from dlspec.generate import generate

    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    text = CHARS.replace("{name: tiny_chars}", f"{{name: char_text, path: '{corpus}', seq_len: 16, step: 4, "
                                               "encoding: ids, test_fraction: 0.2}")
    d, _ = train(tmp_path, capsys, text, "train.epochs=1", "--quiet")
    s = prepare(str(d / "spec.yaml"), [], Options(progress=False), training=False)
    assert s.bundle.vocab == sorted(set(TEXT))
    s.model.load_state_dict(checkpoint(d)["model"])
    got = generate(s, "the", 20, 1.0, 0)
    assert got == reference_generate(s, "the", 20, 1.0, 0)
    assert len(got) == 23 and got.startswith("the") and set(got) <= set(TEXT)


# --- 8. bad data -------------------------------------------------------------------------------------------

def test_missing_mnist_files(tmp_path):
    text = """\
name: M
input: [1, 28, 28]
layers:
  - Flatten
  - Linear: {out_features: 10}
train:
  data: {name: mnist}
"""
    path = write(tmp_path, text)
    empty = tmp_path / "empty"
    empty.mkdir()
    p = command("run", path, "--data-root", empty, "--device", "cpu", cwd=tmp_path, test_datasets=False)
    assert p.returncode == 1, p.stderr
    assert "Traceback" not in p.stderr and "error[data]" in p.stderr
    assert str(empty / "MNIST" / "raw") in p.stderr and f"spec.yaml:{line_of(text, 'data:')}:" in p.stderr
    assert not (tmp_path / "runs").exists()


if __name__ == "__main__":  # the `dlspec` command with the test datasets (for the subprocess tests)
    torch.set_num_threads(1)
    register_test_datasets()
    sys.exit(cli.main(sys.argv[1:]))


def test_misspelled_dataset_still_checks_its_options():
    import dlspec

    c = dlspec.check(dlspec.loads(
        "input: [4]\nlayers: [{Linear: 2}]\ntrain:\n  data: {name: fashion_mnst, normalise: true}\n", "t.yaml"))
    assert [(d.line, d.code, d.help) for d in c.diagnostics] == [
        (1, "data-shape", "write input: [1, 28, 28]"),  # checked as fashion_mnist, whose samples are known
        (4, "unknown-dataset", "did you mean 'fashion_mnist'?"),
        (4, "train", "did you mean 'normalize'?"),
    ]


def test_threads_option(tmp_path, capsys, monkeypatch):
    import json

    path = write(tmp_path, BLOBS)
    p = command("run", path, "train.epochs=1", "--threads", "2", "--quiet", cwd=tmp_path)  # OMP_NUM_THREADS=1
    assert p.returncode == 0, p.stderr
    summary = json.loads((run_dir(tmp_path / "runs") / "summary.json").read_text())
    assert (summary["threads"], summary["threads_requested"]) == (2, 2)
    p = command("run", path, "train.epochs=1", "--quiet", "--out", "plain", cwd=tmp_path)  # torch's default kept
    assert p.returncode == 0, p.stderr
    summary = json.loads((run_dir(tmp_path / "plain") / "summary.json").read_text())
    assert (summary["threads"], summary["threads_requested"]) == (1, None)
    for bad in ("0", "-1", "two"):
        with pytest.raises(SystemExit) as e:
            cli.main(["run", path, "--threads", bad])
        assert e.value.code == 2 and "--threads: must be a positive integer" in capsys.readouterr().err

    calls: list[int] = []  # in-process: record the calls instead of changing this process's thread count
    monkeypatch.setattr(torch, "set_num_threads", calls.append)
    d, _ = train(tmp_path, capsys, CHARS, "train.epochs=1", "--quiet", "--threads", "3", out="chars")
    assert calls == [3]
    ck = ("--checkpoint", d / "checkpoint.pt")
    for argv in (("eval", d / "spec.yaml", *ck), ("predict", d / "spec.yaml", *ck, "-n", "2"),
                 ("generate", d / "spec.yaml", *ck, "--length", "5")):
        calls.clear()
        rc, out, err = dlspec_main(capsys, *argv, "--threads", "2")
        assert rc == 0 and calls == [2], err
        calls.clear()
        rc, out, err = dlspec_main(capsys, *argv)
        assert rc == 0 and calls == [], err
