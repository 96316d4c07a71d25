"""`dlspec run`, its tasks, its run folder and its checkpoints against hostile input (issue 22).

Each case was reproduced before it was fixed; the references are torch's own behaviour (what
torch.load(weights_only=True) accepts, what float32 holds, what softmax gives), a second real process, and
an uninterrupted run's weights:

- a language model's `prime` outside the vocabulary, or a `temperature` float32 cannot divide by, trained
  a whole epoch and then died on the end-of-epoch sample: refused before anything is created; an extra after
  an epoch that fails (a sample, a picture) never loses the epoch;
- a loss that goes to nan (every task) trained on to exit 0: the run stops, and the checkpoint before stays;
- a network of `networks:` that no task uses was ignored;
- a run folder's `.lock` removed while a `--resume` runs let a second one write beside it;
- checkpoints nested deep (RecursionError), or sharing values through the pickle's memo (a hang), or not
  regular files (a FIFO: a hang) in eval, export and resume;
- the train: options' degenerate values, in the spec and on the command line.
"""

from __future__ import annotations

import json
import os
import re
import struct
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from test_faults import HERE as FAULTS_SCRIPT  # noqa: E402
from test_faults import env, start_paused  # noqa: E402
from test_run_robust import GiB  # noqa: E402
from test_train import (  # noqa: E402
    RESUME,
    TEST_DATASETS,
    csv_rows,
    dlspec_main,
    line_of,
    register_test_datasets,
    run_dir,
    write,
)

from dlspec import runs  # noqa: E402
from dlspec.data.base import DATASETS  # noqa: E402
from dlspec.tasks.language import MIN_TEMPERATURE  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True, scope="module")
def datasets():
    register_test_datasets()
    yield
    for entry in TEST_DATASETS:
        DATASETS.pop(entry.name, None)


TEXT = "the quick brown fox jumps over the lazy dog. " * 12

SHAPES = """\
name: Sup
input: [1, 28, 28]
layers:
  - Flatten
  - Linear: 16
  - ReLU
  - Linear: 10
train:
  data: {name: shapes, n_train: 96, n_test: 32}
  epochs: 3
  batch_size: 32
  device: cpu
"""

AUTOENCODER = """\
name: AE
input: [1, 28, 28]
layers:
  - Flatten
  - Linear: 8
  - ReLU
  - Linear: 784
  - Unflatten: {dim: 1, unflattened_size: [1, 28, 28]}
train:
  task: {reconstruction: {pictures: 2}}
  data: {name: shapes, n_train: 96, n_test: 32}
  epochs: 3
  batch_size: 32
  device: cpu
"""

LM = """\
name: LM
input: [T, 28]
layers:
  - RNN: {hidden_size: 16, batch_first: true}
  - Linear: 28
train:
  task: {language_model: {sample_length: 10}}
  data: {name: char_text, path: TEXT_PATH, seq_len: 8, step: 4}
  epochs: 3
  batch_size: 32
  device: cpu
"""

GAN = """\
name: GAN
networks:
  generator:
    input: [8]
    layers:
      - Linear: 16
      - ReLU
      - Linear: 784
      - Unflatten: {dim: 1, unflattened_size: [1, 28, 28]}
      - Tanh
  discriminator:
    input: [1, 28, 28]
    layers:
      - Flatten
      - Linear: 16
      - LeakyReLU: 0.2
      - Linear: 1
train:
  task: {adversarial: {samples: 4}}
  data: {name: shapes, n_train: 96, n_test: 32}
  epochs: 3
  batch_size: 32
  device: cpu
"""


def lm_spec(tmp_path: Path, options: str = "sample_length: 10") -> str:
    text = tmp_path / "text.txt"
    text.write_text(TEXT, encoding="utf-8")
    vocab = len(set(TEXT))
    return LM.replace("TEXT_PATH", str(text)).replace("[T, 28]", f"[T, {vocab}]").replace("Linear: 28", f"Linear: {vocab}") \
        .replace("sample_length: 10", options)


def check_cli(capsys: Any, tmp_path: Path, text: str, *overrides: str) -> tuple[int, str]:
    rc, out, err = dlspec_main(capsys, "check", write(tmp_path, text), *overrides)
    return rc, out + err


def run(capsys: Any, tmp_path: Path, text: str, *args: str) -> tuple[int, str, str]:
    return dlspec_main(capsys, "run", write(tmp_path, text), *args, "--out", tmp_path / "runs", "--no-progress")


# --- 1. a language model's samples --------------------------------------------------------------------------

def test_a_prime_outside_the_vocabulary_is_refused_before_anything_is_made(capsys, tmp_path):
    """It trained the whole epoch, then died on the sample (internal error), leaving a folder with spec.yaml."""
    text = lm_spec(tmp_path, 'prime: "☃the☃x"')
    rc, out, err = run(capsys, tmp_path, text)
    vocab = sorted(set(TEXT))
    assert "☃" not in vocab and "x" in vocab  # the reference: the text's own characters
    assert rc == 1 and "epoch 1" not in out, err
    first = err.splitlines()[0]
    assert first == (f"{tmp_path / 'spec.yaml'}:{line_of(text, 'prime')}:{text.splitlines()[line_of(text, 'prime') - 1].index('☃') }"
                     f": error[train]: prime has 1 character that char_text's vocabulary does not have: '☃'")
    assert "dlspec: not started: 1 error" in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()  # a refused run creates nothing


def test_a_temperature_float32_cannot_divide_by_is_refused_by_check(capsys, tmp_path):
    """1e-300 is 0 in float32: the sample was softmax(x / 0), nan, and torch.multinomial failed after an epoch."""
    assert float(torch.tensor(1e-300, dtype=torch.float32)) == 0.0
    text = lm_spec(tmp_path, "temperature: 1.0e-300")
    rc, out = check_cli(capsys, tmp_path, text)
    assert rc == 1
    assert f"spec.yaml:{line_of(text, 'temperature')}:" in out and "error[train]: language_model temperature must be " \
        "a number from 1.18e-38 (2**-126, float32's smallest normal number) to 100, got 1e-300" in out
    rc, out, err = run(capsys, tmp_path, lm_spec(tmp_path), "train.task.language_model.temperature=1.0e-38")
    assert rc == 1 and err.startswith("command line: error[train]: language_model temperature must be a number from "
                                      "1.18e-38") and not (tmp_path / "runs").exists(), err


def test_the_lowest_temperature_samples_finitely_whatever_the_logits():
    """MIN_TEMPERATURE is float32's smallest normal number; softmax((logits - max) / MIN_TEMPERATURE), as the
    samples are drawn, is finite for finite logits as large as float32 holds, where logits / T alone is not."""
    f32 = torch.finfo(torch.float32)
    assert MIN_TEMPERATURE == f32.tiny and float(torch.tensor(MIN_TEMPERATURE, dtype=torch.float32)) == MIN_TEMPERATURE
    g = torch.Generator().manual_seed(0)
    for scale in (1.0, 1e3, 1e30, f32.max / 2):
        logits = (torch.rand(50, generator=g) * 2 - 1) * scale
        p = torch.softmax((logits - logits.max()) / MIN_TEMPERATURE, -1)
        assert bool(torch.isfinite(p).all()) and int(torch.multinomial(p, 1)) == int(logits.argmax())
        if scale >= 1e3:  # without the shift: nan (the logits above about 4 overflow float32)
            assert not bool(torch.isfinite(torch.softmax(logits / MIN_TEMPERATURE, -1)).all())


def test_the_lowest_temperature_trains_and_samples(capsys, tmp_path):
    rc, out, err = run(capsys, tmp_path, lm_spec(tmp_path, f"temperature: {MIN_TEMPERATURE!r}"), "train.epochs=1")
    assert rc == 0, err
    d = run_dir(tmp_path / "runs")
    assert "--- epoch 1\n" in (d / "samples.txt").read_text(encoding="utf-8")


def test_a_failing_sample_loses_nothing(capsys, tmp_path, monkeypatch):
    """An extra after an epoch runs once the epoch is saved; when it fails, one line, and the run goes on."""
    from dlspec.tasks.language import LanguageModel

    seen: list[int] = []

    def failing(self: Any, run_dir: str, epoch: int, last: bool) -> list[str]:
        seen.append(runs.load_checkpoint(os.path.join(run_dir, "checkpoint.pt"))["epoch"])  # saved before
        raise RuntimeError("probability tensor contains either `inf`, `nan` or element < 0")

    monkeypatch.setattr(LanguageModel, "after_epoch", failing)
    rc, out, err = run(capsys, tmp_path, lm_spec(tmp_path))
    assert rc == 0, err
    assert seen == [1, 2, 3]
    assert ("note: epoch 2: the language_model task's samples failed (RuntimeError: probability tensor contains either "
            "`inf`, `nan` or element < 0); the epoch is saved, the run goes on") in out
    d = run_dir(tmp_path / "runs")
    assert runs.load_checkpoint(str(d / "checkpoint.pt"))["epoch"] == 3 and (d / "summary.json").exists()


def test_failing_curves_still_write_the_summary(capsys, tmp_path, monkeypatch):
    def broken(*a: Any, **k: Any) -> None:
        raise ValueError("Image size of 1x99999999 pixels is too large")

    monkeypatch.setattr(runs, "plot_curves", broken)
    rc, out, err = run(capsys, tmp_path, SHAPES, "train.epochs=1")
    assert rc == 0, err
    assert "note: curves.png not written (ValueError: Image size of 1x99999999 pixels is too large)" in out
    assert json.loads((run_dir(tmp_path / "runs") / "summary.json").read_text())["epochs"] == 1


# --- 2. nan in any task's loss ------------------------------------------------------------------------------

DIVERGING = "  optimizer: {SGD: {lr: 0.01}}\n  scheduler: {ExponentialLR: {gamma: 1.0e+20}}\n"  # epoch 2: lr 1e18


@pytest.mark.parametrize("task", ["supervised", "reconstruction", "language_model", "adversarial"])
def test_a_loss_that_goes_to_nan_stops_the_run_and_keeps_the_checkpoint_before(capsys, tmp_path, task):
    """It trained on nan to exit 0 (a GAN: `d_loss nan`); now the epoch that went to nan is not saved, and the
    checkpoint of the epoch before is the one an uninterrupted one-epoch run saves."""
    text = {"supervised": SHAPES, "reconstruction": AUTOENCODER, "adversarial": GAN,
            "language_model": lm_spec(tmp_path)}[task] + DIVERGING
    rc, out, err = run(capsys, tmp_path, text)
    d = run_dir(tmp_path / "runs")
    losses = "train d_loss (nan|inf), train g_loss (nan|inf)" if task == "adversarial" else \
        r"train loss (nan|inf)|the weights are not finite \(\S+\)"
    m = re.fullmatch(rf"dlspec: the training diverged at epoch (\d): ({losses}); {re.escape(str(d))} keeps the checkpoint "
                     r"of epoch (\d), from before \(a smaller learning rate, or clip_grad_norm, may keep it finite: start "
                     r"a new run with it\)\n", err)
    assert rc == 1 and m, err
    bad, good = int(m[1]), int(m.groups()[-1])  # (an RNN's tanh keeps its loss finite an epoch longer)
    assert good == bad - 1 >= 1 and f"epoch {bad}/3" not in out
    kept = runs.load_checkpoint(str(d / "checkpoint.pt"))  # it loads, checksum and all
    assert kept["epoch"] == good and all(bool(torch.isfinite(t).all()) for t in kept["model"].values()
                                         if t.is_floating_point())
    assert [r["epoch"] for r in csv_rows(d)] == [str(e) for e in range(1, bad)] and not (d / "summary.json").exists()
    rc, _, err = dlspec_main(capsys, "run", write(tmp_path, text, "good.yaml"), "--epochs", str(good), "--out",
                             tmp_path / "good", "--quiet")
    assert rc == 0, err
    reference = runs.load_checkpoint(str(run_dir(tmp_path / "good") / "checkpoint.pt"))
    for name, t in reference["model"].items():  # the kept checkpoint is the last good epoch, bit for bit
        assert torch.equal(t, kept["model"][name]), name
    rc, out, err = dlspec_main(capsys, "eval", d)
    assert rc == 0 and "nan" not in out, err


def test_nan_after_the_first_step_of_a_gan_stops_at_once(capsys, tmp_path):
    """A GAN has no trial step (it alternates two networks): its first step is looked at instead of an epoch."""
    text = GAN.replace("  device: cpu\n", "  device: cpu\n  optimizer: {RMSprop: {lr: 0.01, alpha: 2}}\n")
    rc, out, err = run(capsys, tmp_path, text)
    d = run_dir(tmp_path / "runs")
    assert rc == 1 and "epoch 1/3" not in out
    assert re.fullmatch(rf"dlspec: the training diverged at epoch 1, batch 1: the weights are not finite \(\S+\); no "
                        rf"checkpoint was saved in {re.escape(str(d))} before \(a smaller .*\)\n", err), err
    assert sorted(os.listdir(d)) == ["spec.yaml"]


def test_not_finite_names_the_weight():
    from types import SimpleNamespace

    from dlspec.trainer import Trainer

    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    tr = SimpleNamespace(model=model)
    assert Trainer.not_finite(tr) is None  # type: ignore[arg-type]
    assert Trainer.not_finite(tr, {"train_loss": 0.5, "train_accuracy": float("nan")}) is None  # type: ignore[arg-type]
    assert Trainer.not_finite(tr, {"train_loss": float("inf")}) == "train loss inf"  # type: ignore[arg-type]
    model[1].running_var[1] = float("nan")
    assert Trainer.not_finite(tr) == "the weights are not finite (1.running_var)"  # type: ignore[arg-type]


# --- 3. a network no task uses ------------------------------------------------------------------------------

def test_a_network_no_task_uses_is_an_error_at_its_name(capsys, tmp_path):
    text = GAN.replace("  discriminator:\n", "  encoder:\n    input: [1, 28, 28]\n    layers:\n      - Flatten\n"
                       "      - Linear: 8\n  discriminator:\n", 1)
    rc, out = check_cli(capsys, tmp_path, text)
    assert rc == 1
    assert (f"spec.yaml:{line_of(text, 'encoder:')}:3: error[train]: network 'encoder' is not used: the adversarial "
            "task trains generator and discriminator") in out
    assert out.count("error[") == 1
    # without train: every network is built for Python: nothing unused
    assert check_cli(capsys, tmp_path, text.split("train:")[0])[0] == 0
    # a misspelt role: the task's own error, which names the networks, and no second one
    rc, out = check_cli(capsys, tmp_path, text.replace("{adversarial: {samples: 4}}",
                                                       "{adversarial: {samples: 4, generator: genrator}}"))
    assert rc == 1 and "the spec has no network 'genrator' for the generator" in out and "not used" not in out


# --- 4. the run folder's lock -------------------------------------------------------------------------------

def test_removing_the_lock_file_does_not_let_a_second_resume_in(tmp_path):
    """Two real processes: the first trains (held inside a batch of epoch 2); its .lock is removed, then made a
    FIFO; a second process resuming the folder is refused each time, and the first ends as it would have."""
    p, d, go = start_paused(tmp_path, RESUME, 8 + 3)

    def second() -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, str(FAULTS_SCRIPT), "run", "--resume", str(d), "--no-progress"],
                              cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=120)

    try:
        assert (d / ".lock").read_text().strip() == str(p.pid)
        r = second()
        assert (r.returncode, r.stderr) == (1, f"dlspec: run folder {d} is in use by process {p.pid}\n")
        (d / ".lock").unlink()
        r = second()
        assert (r.returncode, r.stderr) == (1, f"dlspec: run folder {d} is in use by another process\n")
        os.mkfifo(d / ".lock")  # what names the process cannot be read: still refused, without waiting on it
        r = second()
        assert (r.returncode, r.stderr) == (1, f"dlspec: run folder {d} is in use by another process\n")
        assert runs.load_checkpoint(str(d / "checkpoint.pt"))["epoch"] == 1  # nobody wrote beside it
    finally:
        go.touch()
        out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    assert runs.load_checkpoint(str(d / "checkpoint.pt"))["epoch"] == 3
    r = second()  # the lock went with the process
    assert r.returncode == 0 and "is finished" in r.stdout, r.stderr


# --- 5. checkpoints -------------------------------------------------------------------------------------------

def _text(s: str) -> bytes:
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def _dlspec_like(spec: bytes) -> bytes:
    """A pickle (protocol 2) of {"model": {}, "checksum": "sha256:0", "spec": SPEC}, SPEC given as opcodes."""
    return b"\x80\x02}(" + _text("model") + b"}" + _text("checksum") + _text("sha256:0") + _text("spec") + spec + b"u."


def _zipped(pkl: bytes, path: Path) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:  # torch.save's layout, as torch.load reads it
        z.writestr("archive/data.pkl", pkl)
        z.writestr("archive/byteorder", "little")
        z.writestr("archive/version", "3\n")
    return path


def deep(path: Path, n: int = 100_000) -> Path:
    """A list in a list ... n deep (2 bytes a level)."""
    return _zipped(_dlspec_like(b"]" * n + b"a" * (n - 1)), path)


def fan_out(path: Path, width: int = 1000, levels: int = 3) -> Path:
    """[[[...] * width] * width] * width through the memo: width**levels references in a few KB."""
    def build(level: int) -> bytes:
        if level == 0:
            return b"]q\x00"
        return b"](" + build(level - 1) + (b"h" + bytes([level - 1])) * (width - 1) + b"eq" + bytes([level])
    return _zipped(_dlspec_like(build(levels)), path)


def cycle(path: Path) -> Path:
    return _zipped(_dlspec_like(b"]q\x00h\x00a"), path)


def saved(path: Path, obj: Any) -> Path:
    torch.save(obj, path)
    return path


def test_the_hostile_checkpoints_are_what_torch_load_accepts(tmp_path):
    """The reference: torch.load(weights_only=True) reads each of them, in a moment; what it gives cannot be
    walked (json.dumps stands for the checksum's walk and the spec's comparison)."""
    st = torch.load(deep(tmp_path / "deep.pt"), weights_only=True)
    with pytest.raises(RecursionError):
        json.dumps(st["spec"])
    st = torch.load(fan_out(tmp_path / "fan.pt"), weights_only=True)
    assert os.path.getsize(tmp_path / "fan.pt") < 10_000
    assert len(st["spec"]) == len(st["spec"][0]) == len(st["spec"][0][0]) == 1000  # 10^9 references to []
    assert st["spec"][0] is st["spec"][1]
    st = torch.load(cycle(tmp_path / "cycle.pt"), weights_only=True)
    assert st["spec"][0] is st["spec"]
    t = torch.zeros(16384)
    st = torch.load(saved(tmp_path / "shared.pt", {"model": {}, "many": [t] * 1_000_000}), weights_only=True)
    assert st["many"][0] is st["many"][-1] and os.path.getsize(tmp_path / "shared.pt") < 8 * 2**20  # 64 GB to hash
    st = torch.load(saved(tmp_path / "stride0.pt", {"model": {"w": torch.zeros(1).expand(2**31)}}), weights_only=True)
    assert st["model"]["w"].nbytes == 2**33 and st["model"]["w"].stride() == (0,)  # .contiguous(): 8 GB


BOMBS = {
    "deep": (deep, "is not a dlspec checkpoint: its values are nested more than 256 deep (the bound; "
             "DLSPEC_MAX_CHECKPOINT_DEPTH=N raises it)"),
    "fan_out": (fan_out, "is not a dlspec checkpoint: its values stand for more than {bound:,} bytes, a value used "
                "in several places counted at each (the bound: twice the file's size plus 64 MiB; "
                "DLSPEC_MAX_CHECKPOINT_EXTRA=N raises the 64 MiB)"),
    "cycle": (cycle, "is not a dlspec checkpoint: a list in it holds itself"),
    "shared_tensor": (lambda p: saved(p, {"model": {}, "many": [torch.zeros(16384)] * 1_000_000}),
                      "is not a dlspec checkpoint: its values stand for more than {bound:,} bytes"),
    "stride_0": (lambda p: saved(p, {"model": {"w": torch.zeros(1).expand(2**31)}}),
                 "is not a dlspec checkpoint: its values stand for more than {bound:,} bytes"),
}

SCRIPT = """\
import sys
from dlspec import cli
sys.exit(cli.main(sys.argv[1:]))
"""


def bounded_dlspec(*argv: Any, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`dlspec ARGV` in a process limited to 2 GiB of address space; the timeout only keeps a hang from hanging the
    tests."""
    pre = f"import resource; resource.setrlimit(resource.RLIMIT_AS, ({2 * GiB}, {2 * GiB}))\n"
    return subprocess.run([sys.executable, "-c", pre + SCRIPT, *map(str, argv)], capture_output=True, text=True,
                          timeout=120, cwd=cwd, env={**os.environ, "PYTHONPATH": os.pathsep.join(
                              [str(REPO)] + os.environ.get("PYTHONPATH", "").split(os.pathsep))})


@pytest.mark.parametrize("bomb", list(BOMBS))
def test_hostile_checkpoints_are_refused_in_one_line_by_eval_export_and_resume(tmp_path, bomb):
    """Before: RecursionError (internal error, exit 70) for the deep one; eval, export and resume hung on the
    others while the checksum was computed (and the stride-0 tensor asked for 8 GB)."""
    make, message = BOMBS[bomb]
    ckpt = make(tmp_path / "bomb.pt")
    want = message.format(bound=2 * os.path.getsize(ckpt) + 64 * 2**20)
    spec = write(tmp_path, SHAPES)
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "spec.yaml").write_text(SHAPES)
    os.link(ckpt, folder / "checkpoint.pt")
    for argv, prefix in (
            (["eval", spec, "--checkpoint", ckpt], f"dlspec: {ckpt} "),
            (["export", spec, "--checkpoint", ckpt, "--out", tmp_path / "model.py"], f"dlspec: {ckpt} "),
            (["run", "--resume", folder], f"dlspec: cannot resume {folder}: {folder / 'checkpoint.pt'} ")):
        r = bounded_dlspec(*argv, cwd=tmp_path)
        assert r.returncode in (1, 2) and r.stderr.startswith(prefix + want) and r.stderr.count("\n") == 1, r.stderr
    assert not (tmp_path / "model.py").exists() and sorted(os.listdir(folder)) == ["checkpoint.pt", "spec.yaml"]


def test_a_data_pkl_over_its_bound_is_refused_before_torch_reads_it(tmp_path, capsys, monkeypatch):
    rc, _, err = dlspec_main(capsys, "run", write(tmp_path, SHAPES), "--epochs", "1", "--out", tmp_path / "runs",
                             "--quiet")
    assert rc == 0, err
    ckpt = run_dir(tmp_path / "runs") / "checkpoint.pt"
    size = zipfile.ZipFile(ckpt).getinfo(next(n for n in zipfile.ZipFile(ckpt).namelist()
                                             if n.endswith("data.pkl"))).file_size
    monkeypatch.setenv("DLSPEC_MAX_CHECKPOINT_PICKLE", str(size - 1))
    with pytest.raises(runs.CheckpointError) as e:
        runs.load_checkpoint(str(ckpt))
    assert str(e.value).endswith(f"is not a dlspec checkpoint: its archive/data.pkl has {size:,} bytes, more than the "
                                 f"bound of {size - 1:,} (DLSPEC_MAX_CHECKPOINT_PICKLE=N raises it)")
    monkeypatch.setenv("DLSPEC_MAX_CHECKPOINT_PICKLE", str(size))
    assert runs.load_checkpoint(str(ckpt))["epoch"] == 1
    # a member compressed (torch.save stores them): its size says nothing of what it inflates to
    packed = tmp_path / "packed.pt"
    with zipfile.ZipFile(ckpt) as src, zipfile.ZipFile(packed, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info.filename))
    with pytest.raises(runs.CheckpointError, match=r"is not a dlspec checkpoint: archive/\S+ is compressed"):
        runs.load_checkpoint(str(packed))


@pytest.mark.parametrize("what", ["fifo", "device", "folder"])
def test_a_checkpoint_that_is_not_a_regular_file_is_refused_unread(tmp_path, what):
    path = {"fifo": tmp_path / "ck.pt", "device": Path("/dev/zero"), "folder": tmp_path / "ck"}[what]
    if what == "fifo":
        os.mkfifo(path)  # opened for reading, it would wait for a writer for ever
    elif what == "folder":
        path.mkdir()
    kind = {"fifo": "a FIFO (named pipe)", "device": "a character device", "folder": "a folder"}[what]
    spec = write(tmp_path, SHAPES)
    for argv in (["eval", spec, "--checkpoint", path], ["export", spec, "--checkpoint", path, "--out", tmp_path / "m.py"]):
        r = bounded_dlspec(*argv, cwd=tmp_path)
        assert (r.returncode, r.stderr) == (2, f"dlspec: {path} is {kind}, not a checkpoint file\n")
    if what != "device":
        folder = tmp_path / "run"
        folder.mkdir()
        (folder / "spec.yaml").write_text(SHAPES)
        os.rename(path, folder / "checkpoint.pt")
        r = bounded_dlspec("run", "--resume", folder, cwd=tmp_path)
        assert (r.returncode, r.stderr) == (2, f"dlspec: cannot resume {folder}: {folder / 'checkpoint.pt'} is {kind}, "
                                               "not a checkpoint file\n")


def test_a_real_checkpoint_is_within_every_bound(tmp_path, capsys):
    """The bounds leave a real checkpoint far inside them: a spec nested as deep as YAML allows (200), and a
    history of many epochs."""
    rc, _, err = dlspec_main(capsys, "run", write(tmp_path, SHAPES), "--epochs", "1", "--out", tmp_path / "runs",
                             "--quiet")
    assert rc == 0, err
    st = runs.load_checkpoint(str(run_dir(tmp_path / "runs") / "checkpoint.pt"))
    nested: Any = 1
    for _ in range(200):
        nested = [nested]
    st["spec"]["deep"] = nested
    st["history"] = st["history"] * 50_000
    path = tmp_path / "big.pt"
    runs.atomic_save(st, str(path))
    assert runs.load_checkpoint(str(path))["history"][-1] == st["history"][0]


# --- 6. the train: options' degenerate values ---------------------------------------------------------------

REFUSED = [  # (the option, as written under train:, the words of its diagnostic)
    ("batch_size: 0", "train.batch_size must be a positive integer"),
    ("batch_size: 9223372036854775808", "train.batch_size must be at most 1,000,000,000"),
    ("epochs: -1", "train.epochs must be a positive integer"),
    ("epochs: 1.0e+308", "train.epochs must be a positive integer"),
    ("eval_every: .nan", "train.eval_every must be a positive integer"),
    ("checkpoint_every: 0", "train.checkpoint_every must be a positive integer"),
    ("eval_batch_size: ''", "train.eval_batch_size must be a positive integer"),
    ("seed: -1", "train.seed must be a non-negative integer"),
    ("clip_grad_norm: 1.0e-300", "train.clip_grad_norm must be a number ≥ 1.18e-38 (2**-126: a smaller one is 0 in "
     "float32)"),
    ("clip_grad_norm: .inf", "train.clip_grad_norm must be a finite number"),
    ("val_split: 1.0", "train.val_split must be a number between 0 and 1 (both left out)"),
    ("early_stopping: {metric: test_loss, min_delta: -0.5}", "min_delta must be a finite number ≥ 0"),
    ("early_stopping: {metric: test_loss, patience: 0}", "patience must be from 1 to 1,000,000"),
    ("optimizer: {SGD: {lr: .nan}}", "SGD lr must be a finite number (torch takes nan and infinity, and trains on nan)"),
    ("optimizer: {SGD: {lr: -1}}", "SGD lr must be a number from 0 to 100"),
    ("optimizer: {SGD: {lr: 9223372036854775808}}", "SGD lr must be a number from 0 to 100"),
    ("optimizer: {AdamW: {lr: 0.001, weight_decay: 1.0e+308}}", "AdamW weight_decay must be a number from 0 to 100"),
    ("optimizer: {SGD: {lr: 0.1, momentum: 2}}", "SGD momentum must be a number from 0 to 1"),
    ("optimizer: {Adam: {lr: 0.001, eps: .inf}}", "Adam eps must be a finite number"),
    ("optimizer: {Adam: {lr: 0.001, betas: [.nan, 0.999]}}", "Adam betas must be a finite number"),
    ("scheduler: {StepLR: {step_size: -1}}", "StepLR step_size must be an integer ≥ 1"),
    ("scheduler: {StepLR: {step_size: 1, gamma: -0.5}}", "StepLR gamma must be a number ≥ 0"),
    ("scheduler: {OneCycleLR: {max_lr: -1}}", "OneCycleLR max_lr must be a number from 0 to 100"),
    ("loss: {CrossEntropyLoss: {label_smoothing: -1}}", "CrossEntropyLoss label_smoothing must be a number from 0 to 1"),
    ("loss: {CrossEntropyLoss: {weight: [1, 1, 1, .nan, 1, 1, 1, 1, 1, 1]}}", "CrossEntropyLoss weight must be a finite "
     "number"),
]


@pytest.mark.parametrize("option,words", REFUSED, ids=[r[0] for r in REFUSED])
def test_degenerate_train_options_are_refused_at_their_line(capsys, tmp_path, option, words):
    text = SHAPES + f"  {option}\n"
    rc, out = check_cli(capsys, tmp_path, text)
    assert rc == 1 and f"spec.yaml:{len(text.splitlines())}:" in out and words in out, out


@pytest.mark.parametrize("override,words", [("train.epochs=0", "train.epochs must be a positive integer"),
                                            ("train.batch_size=9223372036854775808", "must be at most 1,000,000,000"),
                                            ("train.optimizer={SGD: {lr: .inf}}", "SGD lr must be a finite number")])
def test_degenerate_overrides_are_refused_on_the_command_line(capsys, tmp_path, override, words):
    rc, out, err = run(capsys, tmp_path, SHAPES, override)
    assert rc == 1 and err.startswith("command line: error[train]: ") and words in err, err
    assert not (tmp_path / "runs").exists()


MEANINGFUL = [  # documented in docs/limits.md ("Runs and checkpoints"): each checks clean, and means what it says
    "optimizer: {SGD: {lr: 0}}",  # trains nothing: the epochs evaluate the initial weights
    "optimizer: {SGD: {lr: 1.0e-300}}",  # 0 in float32: as lr 0
    "scheduler: {StepLR: {step_size: 9223372036854775808}}",  # never steps
    "scheduler: {StepLR: {step_size: 1, gamma: 0}}",  # lr 0 after the first step
    "clip_grad_norm: 1.0e+308",  # never clips
    "val_split: 1.0e-300",  # holds out one sample
    "val_split: 0.25\n  early_stopping: {metric: val_loss, min_delta: 1.0e+308}",  # nothing improves: stops
    # after `patience` evaluations
]


@pytest.mark.parametrize("option", MEANINGFUL)
def test_documented_degenerate_values_check_clean(capsys, tmp_path, option):
    rc, out = check_cli(capsys, tmp_path, SHAPES + f"  {option}\n")
    assert rc == 0 and "error" not in out, out


def test_the_documented_values_are_in_the_docs():
    text = (REPO / "docs" / "limits.md").read_text(encoding="utf-8")
    section = text.split("## Runs and checkpoints", 1)[1].split("\n## ", 1)[0]
    for words in ("DLSPEC_MAX_CHECKPOINT_PICKLE", "DLSPEC_MAX_CHECKPOINT_DEPTH", "DLSPEC_MAX_CHECKPOINT_EXTRA",
                  "2**-126", "min_delta", "clip_grad_norm", "step_size", "lr: 0"):
        assert words in section, words

