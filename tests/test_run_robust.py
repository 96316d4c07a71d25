"""`dlspec run` and `dlspec.build` on bad input of any kind: one diagnostic, in bounded time and memory, and
nothing created (no run folder) before everything that can be checked is checked.

Each huge case is refused from the estimate, never by trying: the subprocess cases run under an
address-space limit (RLIMIT_AS) far below what the huge thing would take, the in-process ones are measured
with tracemalloc and by the calls they make (conftest.work: no clock, the machines are shared).  References: torch's own parameter counts, optimizer state and layer outputs
for the memory estimate; torch's own refusals for the trial step; an uninterrupted run's bit-exact weights
for "the trial step changes nothing".
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import textwrap
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import run_or_hang, work

torch = pytest.importorskip("torch")

from test_train import line_of, write  # noqa: E402  (the same helpers; test_faults imports them so too)

import dlspec  # noqa: E402
from dlspec import cli, memory  # noqa: E402
from dlspec.data import DataError, load  # noqa: E402
from dlspec.data.idx import read_idx  # noqa: E402
from dlspec.session import Options, Refused, prepare  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
GiB = 2**30

SHAPES_MLP = """\
name: mlp
input: [1, 28, 28]
layers:
  - Flatten
  - Linear: {out_features: 32}
  - ReLU
  - Linear: {out_features: 10}
train:
  data: {name: shapes, n_train: 40, n_test: 20}
  epochs: 2
  batch_size: 8
  device: cpu
"""


def run_cli(capsys: Any, tmp_path: Path, *argv: str) -> tuple[int, str]:
    """`dlspec run ... --out tmp/runs` in-process: (exit status, stderr)."""
    capsys.readouterr()
    rc = cli.main(["run", *map(str, argv), "--out", str(tmp_path / "runs"), "--no-progress"])
    return rc, capsys.readouterr().err


def refused(capsys: Any, tmp_path: Path, text: str, *overrides: str, code: str, rc: int = 1) -> str:
    """The spec is refused with `code` and nothing is created: no run folder, no traceback."""
    rc_, err = run_cli(capsys, tmp_path, write(tmp_path, text), *overrides)
    assert rc_ == rc, err
    assert f"error[{code}]" in err and "Traceback" not in err, err
    assert not (tmp_path / "runs").exists(), "a run folder was created"
    return err


def bounded_subprocess(script: str, limit: int = 3 * GiB, timeout: float = 120, env: dict[str, str] | None = None
                       ) -> subprocess.CompletedProcess[str]:
    """script in a fresh Python whose address space is limited to `limit` bytes (it cannot allocate a huge thing,
    it can only refuse it)."""
    pre = f"import resource; resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))\n"
    return subprocess.run([sys.executable, "-c", pre + textwrap.dedent(script)], capture_output=True, text=True,
                          timeout=timeout, cwd=str(REPO), env={**os.environ, **(env or {})})


class Peak:
    """The function calls made (conftest.work) and the peak of Python-visible allocations (numpy's included)
    inside a `with`: what a refusal "before anything" does, measured without a clock.  Over `budget` calls the
    block stops with WorkExceeded (a runaway loop fails the test instead of hanging it)."""

    def __init__(self, budget: int = 20_000_000):
        self.budget = budget

    def __enter__(self) -> Peak:
        tracemalloc.start()
        self._work = work(self.budget)
        self._counted = self._work.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._work.__exit__(*exc)
        self.calls = self._counted.calls
        self.bytes = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()


# a refusal from an estimate or a header makes ~100 to ~17,000 calls (measured, imports included); the work the
# bounds stop (1e11 images drawn, 1e12 classes counted, a billion-layer model built) makes billions
REFUSAL_CALLS = 200_000


def data_error(name: str, args: dict[str, Any], root: str = ".") -> tuple[DataError, Peak]:
    with Peak() as peak, pytest.raises(DataError) as e:
        load(name, args, root)
    return e.value, peak


def text_of(e: DataError) -> str:
    return " ".join([e.message, e.help or ""] + e.notes)


# --- 1. huge models: refused from the estimate, before a weight is allocated -----------------------------

HUGE_LINEAR = SHAPES_MLP.replace("out_features: 32}", "out_features: 1000000000000}")
UPSAMPLE = SHAPES_MLP.replace("  - Flatten\n", "  - Upsample: {scale_factor: 1000}\n  - Conv2d: {out_channels: 2, "
                              "kernel_size: 3}\n  - AdaptiveAvgPool2d: 1\n  - Flatten\n")
TYPO = SHAPES_MLP.replace("out_features: 32}", "out_features: 2000000}")  # meant 2000: 1.57 billion parameters


def test_huge_models_refused_in_a_bounded_process(tmp_path):
    """The three cases through the real command line in a 3 GiB address space: one memory diagnostic each at
    the argument that makes the model huge, with the numbers, and no run folder."""
    script = """
        import sys
        from dlspec.cli import main
        for spec in sys.argv[1:]:
            rc = main(["run", spec, "--out", spec + ".runs", "--no-progress"])
            print("RC", spec, rc, file=sys.stderr)
    """
    specs = [write(tmp_path, t, f"{n}.yaml") for n, t in (("linear", HUGE_LINEAR), ("upsample", UPSAMPLE),
                                                           ("typo", TYPO))]
    pre = "import resource; resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))\n"
    p = run_or_hang([sys.executable, "-c", pre + textwrap.dedent(script), *specs], timeout=180, capture_output=True,
                    text=True, cwd=str(REPO), env={**os.environ, "DLSPEC_MEMORY": "16G"})
    err = p.stderr
    assert "Traceback" not in err and p.returncode == 0, err
    for spec in specs:
        rc = next(line.split()[2] for line in err.splitlines() if line.startswith(f"RC {spec} "))
        assert rc == "1", err
        assert not os.path.exists(spec + ".runs"), "a run folder was created"
    blocks = err.split("\n\n")
    linear = next(b for b in blocks if "linear.yaml:" in b)
    assert linear.startswith(f"{specs[0]}:{line_of(HUGE_LINEAR, '1000000000000')}:")
    assert "error[memory]: training needs about 14.1 PiB of memory, more than the 16.0 GiB this machine has" in linear
    assert "795,000,000,000,010 parameters" in linear and "Adam's state 5.6 PiB" in linear
    assert "layer 1 Linear: 785,000,000,000,000 parameters (2.8 PiB)" in linear
    up = next(b for b in blocks if "upsample.yaml:" in b)
    assert f"upsample.yaml:{line_of(UPSAMPLE, 'scale_factor')}:" in up and "^^^^" in up  # under the 1000
    assert "layer 0 Upsample and after: its output 1×28000×28000 per sample" in up
    typo = next(b for b in blocks if "typo.yaml:" in b)
    assert "1,590,000,010 parameters" in typo  # 784 × 2,000,000 + 2,000,000 + 2,000,000 × 10 + 10
    assert f"typo.yaml:{line_of(TYPO, '2000000')}:" in typo and "more than the 16.0 GiB" in typo


def test_build_refuses_huge_weights_before_allocating():
    """dlspec.build raises ResourceError (a SpecError) with the numbers; under a 3 GiB address space a
    1.5-billion-parameter model (6 GiB of weights) is refused, not half-allocated."""
    script = f"""
        import dlspec
        for text in ({HUGE_LINEAR!r}, {TYPO!r}):
            try:
                dlspec.build(dlspec.loads(text, "spec.yaml"))
            except dlspec.ResourceError as e:
                assert isinstance(e, dlspec.SpecError)
                print("REFUSED", str(e).splitlines()[0])
    """
    p = bounded_subprocess(script, env={"DLSPEC_MEMORY": "2G"})
    assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr
    lines = [line for line in p.stdout.splitlines() if line.startswith("REFUSED")]
    assert len(lines) == 2, p.stdout
    assert "error[memory]: the model's weights take 2.8 PiB, more than the 2.0 GiB" in lines[0]
    assert "error[memory]: the model's weights take 5.9 GiB, more than the 2.0 GiB" in lines[1]


def test_build_of_a_model_that_fits_is_unchanged(monkeypatch):
    monkeypatch.setenv("DLSPEC_MEMORY", "1G")
    model = dlspec.build(dlspec.loads(SHAPES_MLP, "spec.yaml"))
    assert sum(p.numel() for p in model.parameters()) == 784 * 32 + 32 + 32 * 10 + 10


@pytest.mark.parametrize("optimizer,kw,states", [("Adam", {}, 2), ("SGD", {"momentum": 0.9}, 1), ("SGD", {}, 0),
                                                  ("RMSprop", {"momentum": 0.9, "centered": True}, 3),
                                                  ("AdamW", {"amsgrad": True}, 3)])
def test_estimate_against_torch(optimizer, kw, states):
    """The estimate's terms are torch's numbers: the weights of the built model, the optimizer's state after a
    step, and every layer's output (hooks) for a batch."""
    text = SHAPES_MLP.replace("  - Flatten\n", "  - Conv2d: {out_channels: 4, kernel_size: 3}\n  - Flatten\n")
    checked = dlspec.check(dlspec.loads(text, "spec.yaml"))
    est = memory.estimate(checked, 8, 16, (optimizer, kw), {})
    model = dlspec.build(checked)
    weights = sum(4 * p.numel() for p in model.parameters())
    assert est.terms[0].bytes == weights and est.terms[1].bytes == weights
    outputs: list[int] = []
    for m in model.modules():
        if not list(m.children()):
            m.register_forward_hook(lambda m, a, out: outputs.append(out.numel() * out.element_size()))
    opt = getattr(torch.optim, optimizer)(model.parameters(), lr=0.01, **kw)
    model(torch.randn(8, 1, 28, 28)).sum().backward()
    opt.step()
    state = sum(t.numel() * t.element_size() for s in opt.state.values() for t in s.values()
                if isinstance(t, torch.Tensor) and t.dim() > 0)
    assert state == states * weights
    assert (est.terms[2].bytes if states else 0) == state
    assert est.per_sample * 8 == sum(outputs)


def test_memory_on_a_cuda_device(monkeypatch):
    """On CUDA the estimate (with the data set, when the trainer moves it there) is compared with the device's
    free memory, and the weights with the CPU's, where the model is built first (torch.cuda's answer stood in
    for: no GPU is needed, and nothing is allocated)."""
    from dlspec.preflight import memory_diagnostics
    from dlspec.schema import parse_spec
    from dlspec.source import parse

    monkeypatch.delenv("DLSPEC_MEMORY", raising=False)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (8 * GiB, 80 * GiB))
    spec = parse_spec(parse(TYPO, "spec.yaml"))
    checked = dlspec.check(spec)
    cfg = spec.train_config
    (d,) = memory_diagnostics(checked, cfg, ("Adam", {}), {}, torch.device("cuda"), (40, 20))
    assert d.code == "memory" and "more than the 8.0 GiB cuda:0 has available" in d.message
    assert d.path == ("layers", 1, "Linear", "out_features")
    small = dlspec.check(dlspec.loads(SHAPES_MLP, "spec.yaml"))
    assert memory_diagnostics(small, cfg, ("Adam", {}), {}, torch.device("cuda"), (40, 20)) == []
    (d,) = memory_diagnostics(small, cfg, ("Adam", {}), {}, torch.device("cuda"), (40, 20), extra=9 * GiB)
    assert "the data set 9.0 GiB" in d.notes[0]
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (200 * GiB, 200 * GiB))
    monkeypatch.setattr(memory, "_meminfo", lambda: 4 * GiB)  # the CPU cannot hold the weights to build them
    monkeypatch.setattr(memory, "_cgroup", lambda: None)
    monkeypatch.setattr(memory, "_address_space", lambda: None)
    (d,) = memory_diagnostics(checked, cfg, ("Adam", {}), {}, torch.device("cuda"), (40, 20))
    assert d.message == ("building the model on the CPU (before it moves to cuda:0) needs about 5.9 GiB of memory, "
                         "more than the 4.0 GiB this machine has available")
    assert d.path == ("layers", 1, "Linear", "out_features")


def test_memory_budget(monkeypatch):
    assert memory.parse_size("8G") == 8 * GiB and memory.parse_size("512mib") == 512 * 2**20
    assert memory.parse_size("1.5k") == 1536 and memory.parse_size("unlimited") is None
    for bad in ("", "abc", "-1G", "nan", "8X"):
        with pytest.raises(ValueError):
            memory.parse_size(bad)
    monkeypatch.setenv("DLSPEC_MEMORY", "3G")
    assert memory.available().bytes == 3 * GiB and memory.check_fits(3 * GiB) is None
    assert memory.check_fits(3 * GiB + 1) is not None
    monkeypatch.setenv("DLSPEC_MEMORY", "lots")
    b = memory.available()
    assert "is not a size" in b.source and b.bytes is not None and 0 < b.bytes
    monkeypatch.delenv("DLSPEC_MEMORY")
    with open("/proc/meminfo") as f:
        mem = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    assert 0 < memory.available().bytes <= mem * 1.1  # type: ignore[operator]


def test_budget_sees_the_address_space_limit():
    p = bounded_subprocess("from dlspec import memory; b = memory.available(); print(b.bytes, b.source)",
                           limit=2 * GiB)
    n, source = p.stdout.split(" ", 1)
    assert int(n) < 2 * GiB and "RLIMIT_AS" in source, p.stdout + p.stderr


def test_batch_size_is_blamed_when_a_usual_batch_fits(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("DLSPEC_MEMORY", "128M")  # the data (50 MB to make) fits, a batch of 4000 does not
    text = SHAPES_MLP.replace("n_train: 40,", "n_train: 4000,").replace("batch_size: 8", "batch_size: 4000") \
        .replace("out_features: 32}", "out_features: 4096}").replace("epochs: 2", "epochs: 1")
    err = refused(capsys, tmp_path, text, code="memory")
    assert f"spec.yaml:{line_of(text, 'batch_size')}:" in err and "help: use batch_size: " in err
    assert "the activations of a batch of 4000 " in err
    fits = int(err.split("help: use batch_size: ")[1].split()[0])
    assert 32 <= fits < 4000
    rc, err = run_cli(capsys, tmp_path, write(tmp_path, text), f"train.batch_size={fits}")
    assert rc == 0, err  # the help applied: the run starts


# --- 2. data ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,args,words", [
    ("shapes", {"size": 100000}, ["7,000 images of 100000×100000", "would take 1018.6 TiB", "more than the 1.0 GiB"]),
    ("shapes", {"n_train": 10**11}, ["100,000,001,000 images of 28×28", "more than the 1.0 GiB"]),
    ("sine_series", {"n_steps": 10**9}, ["10,000 series of 1,000,000,001 values", "more than the 1.0 GiB"]),
    ("sine_series", {"n_train": 10**12}, ["1,000,000,003,000 series of 51 values"]),
])
def test_huge_generated_data_refused_with_the_bytes(monkeypatch, name, args, words):
    monkeypatch.setenv("DLSPEC_MEMORY", "1G")
    e, peak = data_error(name, args)
    for w in words:
        assert w in text_of(e)
    assert "DLSPEC_MEMORY" in text_of(e) and e.arg in ("size", "n_train")
    assert peak.calls < REFUSAL_CALLS and peak.bytes < 1 << 20


def test_generated_data_within_the_budget_loads(monkeypatch):
    monkeypatch.setenv("DLSPEC_MEMORY", "64M")
    assert len(load("shapes", {"n_train": 100, "n_test": 20}, ".").train) == 100
    with pytest.raises(DataError):
        load("shapes", {"n_train": 1_000_000, "n_test": 20}, ".")


def test_huge_data_refused_by_run_before_anything(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("DLSPEC_MEMORY", "1G")
    text = SHAPES_MLP.replace("n_train: 40,", "n_train: 100000000000,")
    with Peak() as peak:
        err = refused(capsys, tmp_path, text, code="data")
    assert f"spec.yaml:{line_of(text, 'n_train')}:" in err and "would take 1.1 PiB" in err
    assert peak.calls < REFUSAL_CALLS and peak.bytes < 64 << 20


def test_npz_label_of_a_trillion_is_not_a_trillion_classes(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, x_train=np.zeros((4, 3), np.float32), y_train=np.array([0, 1, 10**12, 2]),
             x_test=np.zeros((2, 3), np.float32), y_test=np.array([0, 1]))
    e, peak = data_error("npz", {"path": str(path)})
    assert "go up to 1000000000000, which would make 1,000,000,000,001 classes; at most 1,000,000" in e.message
    assert "DLSPEC_MAX_CLASSES" in (e.help or "")
    assert peak.calls < REFUSAL_CALLS and peak.bytes < 1 << 20


def test_class_bound_can_be_raised(tmp_path, monkeypatch):
    path = tmp_path / "d.npz"
    np.savez(path, x_train=np.zeros((2, 3), np.float32), y_train=np.array([0, 1500]),
             x_test=np.zeros((1, 3), np.float32), y_test=np.array([0]))
    monkeypatch.setenv("DLSPEC_MAX_CLASSES", "1000")
    with pytest.raises(DataError, match="at most 1,000 are read"):
        load("npz", {"path": str(path)}, ".")
    monkeypatch.setenv("DLSPEC_MAX_CLASSES", "2000")
    assert load("npz", {"path": str(path)}, ".").num_classes == 1501


def _idx_header(dims: tuple[int, ...]) -> bytes:
    return struct.pack(">I", 0x0800 | len(dims)) + struct.pack(f">{len(dims)}I", *dims)


def _gzip_bomb(path: Path, header: bytes, size: int, noise: bool = False) -> None:
    """A gzip file of header + `size` zero (or random) bytes, written in chunks (the test never holds them)."""
    rng = np.random.default_rng(0)
    with gzip.open(path, "wb", compresslevel=9) as f:
        f.write(header)
        for _ in range(size >> 20):
            f.write(rng.bytes(1 << 20) if noise else bytes(1 << 20))


def test_gzip_bomb_posing_as_idx(tmp_path, monkeypatch):
    """A 200 MB inflation behind an IDX header that claims 100 images: no more than the header's bytes (and one)
    are inflated; a header claiming more than the file could hold is refused before inflating anything."""
    inflated = [0]
    read = gzip.GzipFile.read

    def counted(self: Any, *a: Any) -> bytes:
        out = read(self, *a)
        inflated[0] += len(out)
        return out

    monkeypatch.setattr(gzip.GzipFile, "read", counted)
    bomb = tmp_path / "train-images-idx3-ubyte.gz"
    _gzip_bomb(bomb, _idx_header((100, 28, 28)), 200 << 20)
    assert bomb.stat().st_size < 1 << 20
    inflated[0] = 0
    with Peak() as peak, pytest.raises(DataError, match="has extra bytes: its header says 100 × 28 × 28"):
        read_idx(str(bomb), ndim=3)
    assert inflated[0] == 16 + 100 * 28 * 28 + 1  # the header, the data it says, one byte more
    assert peak.bytes < 4 << 20 and peak.calls < REFUSAL_CALLS
    liar = tmp_path / "liar.gz"
    _gzip_bomb(liar, _idx_header((1_000_000, 1000, 1000)), 1 << 20)
    inflated[0] = 0
    with Peak() as peak, pytest.raises(DataError, match="cannot be an IDX file: its header says 1000000 × 1000 × 1000"):
        read_idx(str(liar), ndim=3)
    assert inflated[0] == 16  # the header alone
    assert peak.bytes < 1 << 20 and peak.calls < REFUSAL_CALLS


def test_idx_header_beyond_memory(tmp_path, monkeypatch):
    big = tmp_path / "big.gz"
    _gzip_bomb(big, _idx_header((2000, 1000, 1000)), 2 << 20, noise=True)  # 2 GB claimed: plausible for 2 MB
    monkeypatch.setenv("DLSPEC_MEMORY", "256M")
    with Peak() as peak, pytest.raises(DataError, match="its data .* would take 1.9 GiB of memory, more than"):
        read_idx(str(big), ndim=3)
    assert peak.bytes < 1 << 20


@pytest.mark.parametrize("cell", ["nan", "inf", "-inf", "1e999", "NaN", "5e38"])
def test_csv_non_finite_cell(tmp_path, cell):
    path = tmp_path / "t.csv"
    path.write_text("a,b,label\n" + "".join(f"{i},{i * 2},{i % 2}\n" for i in range(6)) + f"7,{cell},1\n8,9,0\n")
    e, _ = data_error("csv", {"path": str(path), "target": "label"})
    assert e.message == f"{path} line 8, column 'b': {cell!r} is not a finite number" and e.arg == "features"


def test_csv_non_finite_target(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("a,y\n" + "".join(f"{i},{i * 0.5}\n" for i in range(30)) + "3,inf\n")
    e, _ = data_error("csv", {"path": str(path), "target": "y", "task": "regression"})
    assert e.message == f"{path} line 32, target column 'y': 'inf' is not a finite number"
    e, _ = data_error("csv", {"path": str(path), "target": "y", "task": "classification"})
    assert "line 32" in e.message and "not a finite number" in e.message


def test_csv_nan_refused_by_run(capsys, tmp_path):
    """It trained to `loss nan` with exit 0; now the run does not start, and the message names the cell."""
    csv = tmp_path / "t.csv"
    csv.write_text("a,b,y\n" + "".join(f"{i % 5},{i % 3},{i % 2}\n" for i in range(40)) + "1,nan,0\n")
    text = f"input: [2]\nlayers:\n  - Linear: 2\ntrain:\n  data: {{name: csv, path: {csv}, target: y}}\n  epochs: 1\n"
    err = refused(capsys, tmp_path, text, code="data")
    assert f"{csv} line 42, column 'b': 'nan' is not a finite number" in err


def test_npz_non_finite(tmp_path):
    path = tmp_path / "d.npz"
    x = np.ones((5, 3), np.float64)
    x[3, 1] = 1e300  # inf as float32
    np.savez(path, x_train=x, y_train=np.arange(5) % 2, x_test=np.ones((2, 3)), y_test=np.array([0, 1]))
    e, _ = data_error("npz", {"path": str(path)})
    assert "'x_train'" in e.message and "(sample 3)" in e.message and "not a finite number" in e.message
    np.savez(path, x_train=np.ones((5, 3)), y_train=np.array([0.5, np.nan, 1, 2, 3]), x_test=np.ones((2, 3)),
             y_test=np.array([0.0, 1.0]))
    e, _ = data_error("npz", {"path": str(path)})
    assert "the train targets" in e.message and "(sample 1)" in e.message


def test_text_file_named_npz(tmp_path):
    path = tmp_path / "data.npz"
    path.write_text("x,y\n1,2\n")
    e, _ = data_error("npz", {"path": str(path)})
    assert e.message == f"{path} is not a .npz file: it is not a zip archive (it starts with b'x,y\\n1,', text)"
    assert "pickle" not in text_of(e) and "csv" in (e.help or "")


def test_npz_member_claiming_more_than_the_archive(tmp_path):
    """An .npy header inside the archive that claims 10^12 values: refused from the header, not allocated."""
    import io
    import zipfile

    import numpy.lib.format as npy

    liar = io.BytesIO()
    npy.write_array_header_1_0(liar, {"descr": "<f4", "fortran_order": False, "shape": (10**12,)})
    member = liar.getvalue() + bytes(16)
    path = tmp_path / "d.npz"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("x_train.npy", member)
        for k in ("y_train", "x_test", "y_test"):
            b = io.BytesIO()
            np.save(b, np.zeros(4, np.float32))
            z.writestr(f"{k}.npy", b.getvalue())
    e, peak = data_error("npz", {"path": str(path)})
    assert "is damaged: its array 'x_train' claims shape (1000000000000,)" in e.message, e.message
    assert peak.bytes < 1 << 20


def test_image_resize_beyond_memory(tmp_path, monkeypatch):
    pytest.importorskip("PIL")
    from PIL import Image

    for c in ("a", "b"):
        (tmp_path / c).mkdir()
        for i in range(3):
            Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(tmp_path / c / f"{i}.png")
    monkeypatch.setenv("DLSPEC_MEMORY", "1G")
    e, peak = data_error("image_folder", {"path": str(tmp_path), "size": [100000, 100000]})
    assert "images of 100000×100000×3 (uint8, then float32) would take" in e.message and e.arg == "size"
    assert peak.bytes < 1 << 20 and peak.calls < REFUSAL_CALLS


def test_image_resize_out_of_memory_says_so(tmp_path):
    """Without the estimate (DLSPEC_MEMORY=unlimited), Pillow itself runs out of memory in a 3 GiB address
    space: the error says so (it said 'damaged or not an image')."""
    pytest.importorskip("PIL")
    from PIL import Image

    for c in ("a", "b"):
        (tmp_path / c).mkdir()
        for i in range(3):
            Image.new("RGB", (8, 8)).save(tmp_path / c / f"{i}.png")
    p = bounded_subprocess(f"""
        from dlspec.data import DataError, load
        try:
            load("image_folder", {{"path": {str(tmp_path)!r}, "size": [40000, 40000]}}, ".")
        except DataError as e:
            print("ERROR", e.message, "|", e.help)
    """, env={"DLSPEC_MEMORY": "unlimited"})
    assert "ERROR out of memory resizing image" in p.stdout and "to 40000×40000" in p.stdout, p.stdout + p.stderr
    assert "damaged" not in p.stdout


PERMISSION_SCRIPT = """
    import os, sys
    import numpy, gzip, zlib, struct, zipfile, torch  # everything the loaders import, before giving up root
    from dlspec.data import DataError, load
    import dlspec.data.common, dlspec.data.idx, dlspec.data.files, dlspec.memory
    if os.getuid() == 0:
        os.setgid(65534)
        os.setuid(65534)
    for name, args, root in ((\"mnist\", {}, sys.argv[1]), (\"csv\", {\"path\": sys.argv[2]}, \".\")):
        try:
            load(name, args, root)
        except DataError as e:
            print(\"ERROR\", e.message)
"""


def test_unreadable_folder_is_permission_denied():
    """MNIST in a folder this user may not enter is 'permission denied', not 'files not found' (run as the
    user nobody when the tests run as root, whom no permission stops)."""
    base = Path(tempfile.mkdtemp(prefix="dlspec-perm-"))
    try:
        os.chmod(base, 0o755)
        raw = base / "MNIST" / "raw"
        raw.mkdir(parents=True)
        (raw / "train-images-idx3-ubyte").write_bytes(b"")
        locked = base / "locked"
        locked.mkdir()
        (locked / "t.csv").write_text("a,b\n1,2\n")
        for p in (base / "MNIST",):
            os.chmod(p, 0o755)
        os.chmod(raw, 0o700 if os.getuid() == 0 else 0o000)
        os.chmod(locked, 0o700 if os.getuid() == 0 else 0o000)
        p = subprocess.run([sys.executable, "-c", textwrap.dedent(PERMISSION_SCRIPT), str(base), str(locked / "t.csv")],
                           capture_output=True, text=True, timeout=120, cwd=str(REPO))
        lines = [line for line in p.stdout.splitlines() if line.startswith("ERROR")]
        assert len(lines) == 2, p.stdout + p.stderr
        assert lines[0] == f"ERROR MNIST: permission denied: cannot enter the folder '{raw}' (to reach '{raw}')"
        assert lines[1].startswith(f"ERROR csv: permission denied: cannot enter the folder '{locked}'")
        assert "not found" not in p.stdout
    finally:
        for d in (base / "MNIST" / "raw", base / "locked"):
            if d.exists():
                os.chmod(d, 0o755)
        shutil.rmtree(base)


# --- 3. what torch refuses only when it runs: the trial step -----------------------------------------------

FIVE = [
    ("loss: {CrossEntropyLoss: {label_smoothing: 5}}", "label_smoothing", "train", "label_smoothing must be"),
    ("loss: {CrossEntropyLoss: {reduction: bogus}}", "reduction", "train", "bogus"),
    ("loss: {CrossEntropyLoss: {ignore_index: abc}}", "ignore_index", "train", "ignore_index"),
    ("scheduler: {StepLR: {step_size: 0}}", "step_size", "train", "step_size"),
    ("scheduler: {OneCycleLR: {max_lr: 0.1, total_steps: 1}}", "total_steps", "train", "total_steps"),
]


@pytest.mark.parametrize("option,arg,code,words", FIVE, ids=[f[1] for f in FIVE])
def test_run_refuses_what_torch_refuses_only_at_a_step(capsys, tmp_path, option, arg, code, words):
    text = SHAPES_MLP + f"  {option}\n"
    err = refused(capsys, tmp_path, text, code=code)
    col = text.splitlines()[line_of(text, arg) - 1].index(arg) + 1
    first = err.splitlines()[0]
    assert first.startswith(f"{tmp_path / 'spec.yaml'}:{line_of(text, arg)}:"), err
    assert words in err and arg in first
    assert int(first.split(":")[2]) >= col  # at the argument (its key or its value), not at the class name


def test_trial_messages(capsys, tmp_path):
    # (StepLR step_size: 0, whose modulo by zero the trial step found, is refused by dlspec check now: a period ≥ 1)
    err = refused(capsys, tmp_path, SHAPES_MLP + "  scheduler: {StepLR: {step_size: 0}}\n", code="train")
    assert "StepLR step_size must be an integer ≥ 1, got 0" in err
    err = refused(capsys, tmp_path, SHAPES_MLP + "  scheduler: {OneCycleLR: {max_lr: 0.1, div_factor: -1}}\n",
                  code="train")
    assert "OneCycleLR div_factor: the learning rate becomes -0.1 (negative: the steps would climb the loss) at the " \
        "scheduler's first step" in err and "help: torch refused div_factor: -1; leave it out" in err
    err = refused(capsys, tmp_path, SHAPES_MLP + "  scheduler: {OneCycleLR: {max_lr: 0.1, total_steps: 1}}\n",
                  code="train")
    assert "OneCycleLR total_steps: torch fails at the scheduler's last step (10 of the run)" in err
    assert "torch refused total_steps: 1 (the run takes 10 scheduler steps); leave it out" in err
    err = refused(capsys, tmp_path, SHAPES_MLP + "  loss: {CrossEntropyLoss: {reduction: none}}\n", code="train")
    assert "CrossEntropyLoss reduction: torch fails computing the loss" in err and "not one number" in err


NOT_FINITE = [  # torch takes each and the run trains on nan: the trial step sees the nan and blames the argument
    # (lr: .nan, lr: 1e300, gamma: .nan and a loss weight with .nan, which it found too, dlspec check refuses now:
    # tests/test_hostile_run.py)
    ("optimizer: {RMSprop: {lr: 0.01, alpha: 2}}", "alpha", "RMSprop alpha: the weights are not finite after the "
     "first step"),
    ("scheduler: {ExponentialLR: {gamma: 1.0e+30}}", "gamma",  # 1e27 after one step, then 1e57: float32 ends at 3.4e38
     "ExponentialLR gamma: the learning rate becomes 1e+57 (more than float32 holds: torch fails at the step that uses "
     "it) at the scheduler's last step (2 of the run)"),
]


@pytest.mark.parametrize("option,arg,message", NOT_FINITE, ids=[f[0].split(":")[0] + "-" + f[1] for f in NOT_FINITE])
def test_values_that_train_on_nan(capsys, tmp_path, option, arg, message):
    text = SHAPES_MLP + f"  {option}\n"
    err = refused(capsys, tmp_path, text, code="train")
    assert f"error[train]: {message}" in err and err.startswith(f"{tmp_path / 'spec.yaml'}:{line_of(text, arg)}:")


def test_one_cycle_with_enough_steps_runs(capsys, tmp_path):
    rc, err = run_cli(capsys, tmp_path, write(tmp_path, SHAPES_MLP + "  scheduler: {OneCycleLR: {max_lr: 0.1, "
                                                          "total_steps: 10}}\n"))
    assert rc == 0, err


def test_last_batch_of_one_sample_with_batchnorm(capsys, tmp_path):
    text = SHAPES_MLP.replace("  - ReLU\n", "  - BatchNorm1d\n  - ReLU\n").replace("n_train: 40", "n_train: 41")
    err = refused(capsys, tmp_path, text, code="runtime")
    assert f"spec.yaml:{line_of(text, 'batch_size')}:" in err
    assert "layer 2 BatchNorm1d (bn1): the forward pass fails on a batch of 1 training sample" in err
    assert "the last batch of each epoch has 1 sample (41 samples, batch_size 8): use drop_last: true" in err
    rc, err = run_cli(capsys, tmp_path, write(tmp_path, text), "train.drop_last=true")
    assert rc == 0, err


def test_embedding_ids_beyond_the_table(capsys, tmp_path):
    path = tmp_path / "ids.npz"
    rng = np.random.default_rng(0)
    x = rng.integers(0, 20, (40, 5))
    x[37, 2] = 49  # late in the data: the first batches would run
    np.savez(path, x_train=x, y_train=np.arange(40) % 3, x_test=rng.integers(0, 20, (10, 5)), y_test=np.arange(10) % 3)
    text = (f"input: {{shape: [5], dtype: long}}\nlayers:\n  - Embedding: {{num_embeddings: 20, embedding_dim: 4}}\n"
            f"  - Flatten\n  - Linear: 3\ntrain:\n  data: {{name: npz, path: {path}, dtype: long}}\n  epochs: 1\n")
    err = refused(capsys, tmp_path, text, code="data")
    assert "the data holds id 49 but layer 0 Embedding has num_embeddings 20 (ids 0 to 19)" in err
    assert "help: write num_embeddings: 50" in err and f"spec.yaml:{line_of(text, 'num_embeddings')}:" in err


def test_trial_step_changes_nothing(tmp_path, monkeypatch):
    """The trial step leaves the weights, the random number generator and the model's hooks as they were:
    prepare with and without it hands the run the same model and the same RNG state."""
    import dlspec.session as session_mod

    text = SHAPES_MLP.replace("  - ReLU\n", "  - Dropout: 0.5\n  - ReLU\n")
    path = write(tmp_path, text)
    seen: list[int] = []
    s = prepare(path, [], Options(progress=False, quiet=True))
    after = (torch.get_rng_state(), {k: v.clone() for k, v in s.model.state_dict().items()})
    s.model.register_forward_hook(lambda *a: seen.append(1))
    assert session_mod.trial_step(s) == [] and not seen
    assert torch.equal(after[0], torch.get_rng_state())
    assert all(torch.equal(v, after[1][k]) for k, v in s.model.state_dict().items())
    monkeypatch.setattr(session_mod, "trial_step", lambda s, training=True: [])
    s2 = prepare(path, [], Options(progress=False, quiet=True))
    assert torch.equal(torch.get_rng_state(), after[0])
    assert all(torch.equal(v, after[1][k]) for k, v in s2.model.state_dict().items())


def test_nan_loss_at_the_start(capsys, tmp_path):
    """Data no loader checks (a data set registered from Python, with a nan): the run does not start, to print
    `loss nan` for every epoch and exit 0."""
    from dlspec.data.base import DATASETS, Bundle, DatasetType, Split, register

    def nan_data(args: dict[str, Any], root: str) -> Bundle:
        x = torch.randn(16, 4)
        x[0, 1] = float("nan")
        return Bundle("nan_data", Split(x, torch.arange(16) % 2), Split(torch.randn(4, 4), torch.arange(4) % 2),
                      "classification", num_classes=2)

    register(DatasetType("nan_data", {}, nan_data))
    try:
        text = "input: [4]\nlayers:\n  - Linear: 2\ntrain:\n  data: {name: nan_data}\n  epochs: 1\n"
        err = refused(capsys, tmp_path, text, code="runtime")
        assert "error[runtime]: the loss is nan before any step on the first 2 training samples: the run would learn " \
            "nothing" in err
    finally:
        DATASETS.pop("nan_data")


# --- 4. the command line and overrides --------------------------------------------------------------------

def test_yaml_error_inside_an_override(capsys, tmp_path):
    for item in ("train.epochs=!!int abc", "train.optimizer.SGD.lr=!!float x"):
        err = refused(capsys, tmp_path, SHAPES_MLP, item, code="override", rc=2)
        assert "command line: error[override]" in err and "the value is not valid YAML (" in err


@pytest.mark.parametrize("item,words", [
    ("train.seed=100000000000000000000000", "train.seed must be at most 4,294,967,295"),
    ("train.epochs=1000000000000000000000000000000", "train.epochs must be at most 1,000,000"),
    ("train.batch_size=10000000000", "train.batch_size must be at most 1,000,000,000"),
    ("train.data.seed=4294967296", "shapes seed must be at most 4,294,967,295"),
    ("train.early_stopping={metric: test_loss, patience: 10000000}", "patience must be from 1 to 1,000,000"),
])
def test_counts_beyond_their_bound(capsys, tmp_path, item, words):
    with Peak() as peak:
        err = refused(capsys, tmp_path, SHAPES_MLP, item, code="train")
    assert words in err and "command line:" in err and peak.calls < REFUSAL_CALLS


def test_seed_at_its_bound_runs(capsys, tmp_path):
    rc, err = run_cli(capsys, tmp_path, write(tmp_path, SHAPES_MLP), "train.seed=4294967295", "train.epochs=1")
    assert rc == 0, err


@pytest.mark.parametrize("argv,words", [
    (["run", "s.yaml", "--threads", "100000"], "--threads: must be at most"),
    (["run", "s.yaml", "--threads", "2000"], "--threads: must be at most"),
    (["run", "s.yaml", "--threads", "0"], "--threads: must be a positive integer"),
    (["predict", "s.yaml", "--checkpoint", "c.pt", "-n", "-5"], "-n: must be a positive integer, not '-5'"),
    (["generate", "s.yaml", "--checkpoint", "c.pt", "--seed", str(2**70)], "--seed: must be a seed"),
])
def test_usage_errors(capsys, argv, words):
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == 2 and words in capsys.readouterr().err


def test_threads_bound(capsys, tmp_path):
    most = 4 * (os.cpu_count() or 1)
    capsys.readouterr()
    with pytest.raises(SystemExit):
        cli.main(["run", "s.yaml", "--threads", str(most + 1)])
    assert f"must be at most {most} (4 × the {os.cpu_count()} CPUs of this machine)" in capsys.readouterr().err
    with pytest.raises(Refused) as e:  # the Python API's Options too
        prepare(write(tmp_path, SHAPES_MLP), [], Options(threads=most + 1))
    assert e.value.status == 2 and "threads must be from 1 to" in e.value.message


def test_generate_length_bound(tmp_path):
    from dlspec.generate import MAX_LENGTH, generate

    class S:
        class bundle:  # noqa: N801
            vocab = ["a"]
            name = "chars"
    with pytest.raises(ValueError, match="--length must be from 0 to 1,000,000"):
        generate(S, "a", MAX_LENGTH + 1, 0.8, 0)
    with pytest.raises(ValueError, match=r"--temperature must be from 1\.18e-38 \(2\*\*-126, .*\) to 100, not nan"):
        generate(S, "a", 5, float("nan"), 0)


def test_refusals_are_json_serialisable(capsys, tmp_path):
    """Every refusal above is a diagnostic like the check's: it has a code, a position and a help."""
    text = SHAPES_MLP + "  scheduler: {StepLR: {step_size: 0}}\n"
    with pytest.raises(Refused) as e:
        prepare(write(tmp_path, text), [], Options(progress=False, quiet=True))
    (d,) = e.value.diagnostics
    j = d.to_json()
    assert j["code"] == "train" and j["line"] == line_of(text, "step_size") and j["help"]
    json.dumps(j)
