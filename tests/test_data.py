"""The dataset loaders: IDX (MNIST layout), generated sets, npz / csv, char_text and the vision entries.

Every file these tests read is written by the test, except the real MNIST / Fashion-MNIST checks, which
read $DLSPEC_DATA (or ../shared/data beside the repository) and are skipped when it is absent.
"""

from __future__ import annotations

import gzip
import json
import os
import struct
import subprocess
import sys
import types

import numpy as np
import pytest
from conftest import work

torch = pytest.importorskip("torch")

from dlspec.data import DATASETS, DataError, load  # noqa: E402
from dlspec.data.idx import MNIST_STATS, read_idx, resolve  # noqa: E402
from dlspec.data.synthetic import SHAPE_CLASSES, shapes_images, sine_series_values  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAMES = ["mnist", "fashion_mnist", "sine_series", "shapes", "npz", "csv", "char_text", "text_classes", "cifar10",
         "image_folder"]


# --- helpers ------------------------------------------------------------------------------------------


def write_idx(path: str, arr: np.ndarray, gz: bool = False) -> str:
    """An IDX file of unsigned bytes, as the MNIST files are (raw, or gzip when gz)."""
    arr = np.asarray(arr, dtype=np.uint8)
    data = struct.pack(">I", 0x0800 | arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()
    if gz:
        path += ".gz"
        data = gzip.compress(data)
    with open(path, "wb") as f:
        f.write(data)
    return path


def make_mnist(root, folder: str = "MNIST", gz: bool = True, n_train: int = 60, n_test: int = 20, seed: int = 0):
    """Small random MNIST-style files in ROOT/FOLDER/raw; returns {split: (images, labels)}."""
    rng = np.random.default_rng(seed)
    raw = os.path.join(str(root), folder, "raw")
    os.makedirs(raw, exist_ok=True)
    out = {}
    for split, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        y = (np.arange(n) % 10).astype(np.uint8)
        write_idx(os.path.join(raw, f"{prefix}-images-idx3-ubyte"), x, gz)
        write_idx(os.path.join(raw, f"{prefix}-labels-idx1-ubyte"), y, gz)
        out[split] = (x, y)
    return out


def read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def write(path: str, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)


def raises(fn, *words: str) -> DataError:
    """fn() must raise DataError whose message (with notes and help) contains every word."""
    with pytest.raises(DataError) as e:
        fn()
    err = e.value
    text = " ".join([err.message, err.help or ""] + err.notes)
    for w in words:
        assert w in text, f"{w!r} not in {text!r}"
    return err


# --- registry and the torch-free import -------------------------------------------------------------


def test_import_is_torch_and_numpy_free():
    code = ("import sys, json, dlspec.data as d; "
            "print(json.dumps([sorted(d.DATASETS), 'torch' in sys.modules, 'numpy' in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    names, has_torch, has_numpy = json.loads(out.stdout)
    assert set(NAMES) <= set(names)
    assert not has_torch and not has_numpy


def test_every_entry_has_subset_and_docs():
    for name in NAMES:
        entry = DATASETS[name]
        assert "subset" in entry.args and entry.doc
        for arg, spec in entry.args.items():
            if spec.default is not None and not spec.required:  # defaults pass their own check
                plain = json.loads(json.dumps(spec.default))
                assert spec.kind.check(plain) is None, (name, arg)
        # every default, given back explicitly (as validate_train does), is accepted
        args = {k: a.default for k, a in entry.args.items() if not a.required}
        args.update({k: "some/file" for k, a in entry.args.items() if a.required})
        assert set(resolve(name, args)) == set(entry.args)


def test_bad_arguments_are_data_errors():
    raises(lambda: load("mnist", {"normalise": True}, "."), "no option 'normalise'", "normalize")
    raises(lambda: load("mnist", {"scale": "yes"}, "."), "scale", "true or false")
    raises(lambda: load("mnist", {"normalize": [[0.1], [0.2, 0.3]]}, "."), "as many means")
    raises(lambda: load("mnist", {"normalize": [[0.1], [0.0]]}, "."), "positive")
    raises(lambda: load("npz", {}, "."), "needs `path`")


def test_train_section_accepts_the_arguments(tmp_path):
    from dlspec.source import parse
    from dlspec.trainspec import validate_train

    make_mnist(tmp_path)
    text = ("train:\n  data: {name: mnist, normalize: [[0.1307], [0.3081]], shape: [28, 28],\n"
            f"         subset: {{train: 10, test: 5}}, root: '{tmp_path}'}}\n")
    doc = parse(text)
    cfg, diags = validate_train(doc, doc.data["train"])
    assert cfg is not None and not diags
    b = load(cfg.data_name, cfg.data_args, "nowhere")
    assert b.sample_shape == (28, 28) and len(b.train) == 10 and len(b.test) == 5
    # defaults filled in by validate_train (subset: None among them) are accepted by every loader
    doc = parse("train:\n  data: {name: shapes, n_train: 20, n_test: 10}\n")
    cfg, diags = validate_train(doc, doc.data["train"])
    assert cfg is not None and cfg.data_args["subset"] is None
    assert len(load("shapes", cfg.data_args, ".").train) == 20
    doc = parse("train:\n  data: {name: shapes, normalize: [[0.5], [0.5], [1]]}\n")
    cfg, diags = validate_train(doc, doc.data["train"])
    assert "normalize" in diags[0].message and diags[0].severity == "error"


# --- IDX: MNIST / Fashion-MNIST -----------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("name,folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_idx_layout_raw_and_gz(tmp_path, gz, name, folder):
    arrays = make_mnist(tmp_path, folder, gz=gz)
    b = load(name, {}, str(tmp_path))
    assert b.task == "classification" and b.num_classes == 10 and len(b.classes) == 10
    assert b.sample_shape == (1, 28, 28) and b.train.x.dtype == torch.float32 and b.train.y.dtype == torch.int64
    for split in ("train", "test"):
        x, y = arrays[split]
        got = getattr(b, split)
        np.testing.assert_allclose(got.x.numpy()[:, 0], x / 255.0, rtol=1e-6)
        np.testing.assert_array_equal(got.y.numpy(), y)
    assert b.info["files"][0].endswith("train-images-idx3-ubyte" + (".gz" if gz else ""))
    if name == "fashion_mnist":
        assert b.classes[0] == "T-shirt/top" and b.classes[-1] == "Ankle boot"


def test_idx_root_argument_and_raw_folder(tmp_path):
    arrays = make_mnist(tmp_path / "elsewhere")
    b = load("mnist", {"root": str(tmp_path / "elsewhere")}, "no-such-root")
    np.testing.assert_array_equal(b.train.y.numpy(), arrays["train"][1])
    # the raw folder itself also works as the root
    b = load("mnist", {}, str(tmp_path / "elsewhere" / "MNIST" / "raw"))
    assert len(b.train) == 60


def test_idx_normalize_scale_shape(tmp_path):
    arrays = make_mnist(tmp_path)
    x = arrays["train"][0].astype(np.float64)
    b = load("mnist", {"normalize": [[0.5], [0.25]]}, str(tmp_path))
    np.testing.assert_allclose(b.train.x.numpy()[:, 0], (x / 255 - 0.5) / 0.25, rtol=1e-5, atol=1e-5)
    b = load("mnist", {"normalize": True}, str(tmp_path))
    (m,), (s,) = MNIST_STATS
    np.testing.assert_allclose(b.train.x.numpy()[:, 0], (x / 255 - m) / s, rtol=1e-5, atol=1e-5)
    assert b.info["normalize"] == {"mean": [m], "std": [s], "from": "standard"}
    b = load("mnist", {"scale": False}, str(tmp_path))
    np.testing.assert_array_equal(b.train.x.numpy()[:, 0], x)
    b = load("mnist", {"scale": False, "normalize": True}, str(tmp_path))  # the standard stats, in 0..255 units
    np.testing.assert_allclose(b.train.x.numpy()[:, 0], (x - 255 * m) / (255 * s), rtol=1e-5, atol=1e-4)
    b = load("mnist", {"shape": [28, 28]}, str(tmp_path))
    assert b.sample_shape == (28, 28) and b.test.x.shape == (20, 28, 28)
    np.testing.assert_allclose(b.train.x.numpy(), x / 255, rtol=1e-6)
    assert load("mnist", {"shape": [-1]}, str(tmp_path)).sample_shape == (784,)
    assert load("mnist", {"shape": (1, 28, 28)}, str(tmp_path)).sample_shape == (1, 28, 28)  # normalised tuples
    err = raises(lambda: load("mnist", {"shape": [28, 27]}, str(tmp_path)), "784", "[28, 27]")
    assert err.arg == "shape"
    raises(lambda: load("mnist", {"normalize": [[0.1, 0.2, 0.3], [1, 1, 1]]}, str(tmp_path)), "3 means", "1 channels")


@pytest.mark.parametrize("args", [{}, {"normalize": True}, {"normalize": [[0.5], [0.25]]}, {"scale": False},
                                  {"scale": False, "normalize": True}, {"shape": [28, 28], "normalize": True},
                                  {"shape": [-1]}, {"subset": {"train": 10, "test": 5}, "seed": 3}])
@pytest.mark.parametrize("name,folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_idx_uint8_form_materializes_to_the_float_loader_bit_for_bit(tmp_path, args, name, folder):
    """What `dlspec run` loads (uint8, made float where the training runs) against the float loader."""
    from dlspec.data.base import float_bytes, materialize

    make_mnist(tmp_path, folder=folder)
    want = load(name, dict(args), str(tmp_path))
    entry = DATASETS[name]
    raw = entry.raw({**{k: a.default for k, a in entry.args.items()}, **args}, str(tmp_path))
    assert raw.train.x.dtype == torch.uint8 and raw.pixels is not None
    assert float_bytes(raw) == sum(t.element_size() * t.nelement()
                                   for t in (want.train.x, want.test.x, want.train.y, want.test.y))
    got = materialize(raw, torch.device("cpu"))
    assert got.pixels is None and got.sample_shape == want.sample_shape
    for a, b in ((got.train, want.train), (got.test, want.test)):
        assert a.x.dtype == torch.float32 and torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    assert got.info["normalize"] == want.info["normalize"]


def test_idx_uint8_form_refuses_what_the_float_loader_refuses(tmp_path):
    make_mnist(tmp_path)
    raw = DATASETS["mnist"].raw
    defaults = {k: a.default for k, a in DATASETS["mnist"].args.items()}
    err = raises(lambda: raw({**defaults, "shape": [28, 27]}, str(tmp_path)), "784", "[28, 27]")
    assert err.arg == "shape"
    raises(lambda: raw({**defaults, "normalize": [[0.1, 0.2, 0.3], [1, 1, 1]]}, str(tmp_path)), "3 means",
           "1 channels")


def test_idx_subset(tmp_path):
    arrays = make_mnist(tmp_path)
    args = {"subset": {"train": 10, "test": 5}}
    a, b = load("mnist", args, str(tmp_path)), load("mnist", args, str(tmp_path))
    assert len(a.train) == 10 and len(a.test) == 5
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.test.y, b.test.y)  # consistent
    perm = np.random.default_rng([0, 0]).permutation(60)[:10]  # the documented rule: seeded shuffle, first N
    np.testing.assert_array_equal(a.train.y.numpy(), arrays["train"][1][perm])
    assert len(set(a.train.y.tolist())) > 1  # shuffled, not the first ten
    c = load("mnist", {"subset": {"train": 10, "test": 5}, "seed": 1}, str(tmp_path))
    assert not torch.equal(a.train.x, c.train.x)
    d = load("mnist", {"subset": {"test": 5}}, str(tmp_path))  # the test pick does not depend on train:
    assert len(d.train) == 60 and torch.equal(d.test.x, a.test.x)
    err = raises(lambda: load("mnist", {"subset": {"train": 100}}, str(tmp_path)), "subset.train", "60")
    assert err.arg == "subset"


def _images_path(root, gz=False):
    return os.path.join(str(root), "MNIST", "raw", "train-images-idx3-ubyte" + (".gz" if gz else ""))


def test_idx_bad_magic(tmp_path):
    make_mnist(tmp_path, gz=False)
    path = _images_path(tmp_path)
    data = bytearray(read(path))
    data[0:4] = b"\x12\x34\x08\x03"
    write(path, bytes(data))
    raises(lambda: load("mnist", {}, str(tmp_path)), path, "magic number 0x12340803")


def test_idx_swapped_files(tmp_path):
    make_mnist(tmp_path, gz=False)
    raw = os.path.join(str(tmp_path), "MNIST", "raw")
    os.replace(os.path.join(raw, "train-labels-idx1-ubyte"), os.path.join(raw, "tmp"))
    os.replace(os.path.join(raw, "train-images-idx3-ubyte"), os.path.join(raw, "train-labels-idx1-ubyte"))
    os.replace(os.path.join(raw, "tmp"), os.path.join(raw, "train-images-idx3-ubyte"))
    raises(lambda: load("mnist", {}, str(tmp_path)), "train-images-idx3-ubyte has 1 dimensions", "expected 3")


@pytest.mark.parametrize("gz", [False, True])
def test_idx_truncated(tmp_path, gz):
    make_mnist(tmp_path, gz=gz)
    path = _images_path(tmp_path, gz)
    data = read(path)
    write(path, data[: len(data) // 2])
    raises(lambda: load("mnist", {}, str(tmp_path)), path, "damaged" if gz else "truncated")
    write(path, data[:10])  # inside the header
    raises(lambda: load("mnist", {}, str(tmp_path)), path)
    write(path, b"")
    raises(lambda: load("mnist", {}, str(tmp_path)), path)


def test_idx_not_gzip_but_named_gz(tmp_path):
    make_mnist(tmp_path, gz=True)
    path = _images_path(tmp_path, True)
    write(path, b"<html>not found</html>")
    raises(lambda: load("mnist", {}, str(tmp_path)), path, "not a gzip file")


def test_idx_count_mismatch_and_labels(tmp_path):
    make_mnist(tmp_path, gz=False)
    raw = os.path.join(str(tmp_path), "MNIST", "raw")
    write_idx(os.path.join(raw, "t10k-labels-idx1-ubyte"), np.zeros(19, np.uint8))
    raises(lambda: load("mnist", {}, str(tmp_path)), "20 images", "19 labels", "t10k-images-idx3-ubyte",
           "t10k-labels-idx1-ubyte")
    write_idx(os.path.join(raw, "t10k-labels-idx1-ubyte"), np.full(20, 12, np.uint8))
    raises(lambda: load("mnist", {}, str(tmp_path)), "label 12", "t10k-labels-idx1-ubyte")
    with open(os.path.join(raw, "t10k-labels-idx1-ubyte"), "wb") as f:  # extra bytes after the data
        f.write(struct.pack(">II", 0x801, 20) + bytes(25))
    raises(lambda: load("mnist", {}, str(tmp_path)), "extra bytes")


def test_read_idx_other_types(tmp_path):
    path = str(tmp_path / "f.idx")
    with open(path, "wb") as f:
        f.write(struct.pack(">I", 0x0D02) + struct.pack(">II", 2, 3) + np.arange(6, dtype=">f4").tobytes())
    np.testing.assert_array_equal(read_idx(path), np.arange(6, dtype=np.float32).reshape(2, 3))


def test_idx_missing_files(tmp_path):
    err = raises(lambda: load("mnist", {}, str(tmp_path)), os.path.join(str(tmp_path), "MNIST", "raw"),
                 "train-images-idx3-ubyte", "t10k-labels-idx1-ubyte", "download: true")
    assert err.arg == "root"
    make_mnist(tmp_path, "FashionMNIST")
    os.remove(os.path.join(str(tmp_path), "FashionMNIST", "raw", "t10k-images-idx3-ubyte.gz"))
    err = raises(lambda: load("fashion_mnist", {}, str(tmp_path)), "Fashion-MNIST files not found",
                 "missing: t10k-images-idx3-ubyte[.gz]", "found: train-images-idx3-ubyte")


def _torchvision_imports() -> bool:
    try:
        import torchvision  # noqa: F401
    except Exception:  # noqa: BLE001
        return False
    return True


@pytest.mark.skipif(_torchvision_imports(), reason="torchvision imports: download would go to the network")
def test_idx_download_without_torchvision(tmp_path):
    err = raises(lambda: load("mnist", {"download": True}, str(tmp_path)), "MNIST files not found",
                 os.path.join(str(tmp_path), "MNIST", "raw"), "train-images-idx3-ubyte", "download: true did not work",
                 "torchvision is not installed", "dlspec[vision]", "ossci-datasets")
    assert err.arg == "root"


def _fake_torchvision(monkeypatch, **classes):
    tv = types.ModuleType("torchvision")
    tv.datasets = types.ModuleType("torchvision.datasets")
    for name, cls in classes.items():
        setattr(tv.datasets, name, cls)
    monkeypatch.setitem(sys.modules, "torchvision", tv)
    monkeypatch.setitem(sys.modules, "torchvision.datasets", tv.datasets)


def test_idx_download_through_torchvision(tmp_path, monkeypatch):
    calls = []

    class MNIST:  # writes the files where torchvision would
        def __init__(self, root, train=True, download=False):
            calls.append((root, train, download))
            make_mnist(root)

    _fake_torchvision(monkeypatch, MNIST=MNIST)
    b = load("mnist", {"download": True}, str(tmp_path))
    assert len(b.train) == 60 and calls[0] == (str(tmp_path), True, True)

    class FashionMNIST:
        def __init__(self, root, train=True, download=False):
            raise OSError("<urlopen error [Errno -3] Temporary failure in name resolution>")

    _fake_torchvision(monkeypatch, FashionMNIST=FashionMNIST)
    raises(lambda: load("fashion_mnist", {"download": True}, str(tmp_path)), "Fashion-MNIST files not found",
           "could not download it", "name resolution", "fashion-mnist.s3")


def _real_root() -> str | None:
    for root in (os.environ.get("DLSPEC_DATA"), os.path.join(REPO, "..", "shared", "data")):
        if root and os.path.isdir(os.path.join(root, "MNIST", "raw")):
            return root
    return None


@pytest.mark.skipif(_real_root() is None, reason="no real MNIST: set DLSPEC_DATA (../shared/data)")
@pytest.mark.parametrize("name,stats", [("mnist", (0.1307, 0.3081)), ("fashion_mnist", (0.2860, 0.3530))])
def test_real_mnist(name, stats):
    root = _real_root()
    if not os.path.isdir(os.path.join(root, "MNIST" if name == "mnist" else "FashionMNIST", "raw")):
        pytest.skip(f"no {name} under {root}")
    b = load(name, {}, root)
    assert len(b.train) == 60000 and len(b.test) == 10000 and b.sample_shape == (1, 28, 28)
    x = b.train.x.double()
    assert abs(x.mean().item() - stats[0]) < 5e-4 and abs(x.std().item() - stats[1]) < 5e-4
    assert torch.bincount(b.train.y).min().item() > 5000 and torch.bincount(b.test.y).tolist().count(0) == 0
    n = load(name, {"normalize": True, "subset": {"train": 20000}}, root).train.x
    assert abs(n.mean().item()) < 0.02 and abs(n.std().item() - 1) < 0.02


# --- sine_series --------------------------------------------------------------------------------------


def _sine_reference(n: int, n_steps: int, seed: int) -> np.ndarray:
    """The documented generator, written out again independently."""
    rs = np.random.RandomState(seed)
    f1, f2, o1, o2 = rs.rand(4, n, 1)
    t = np.linspace(0, 1, n_steps + 1)
    u = rs.rand(n, n_steps + 1)
    s = 0.5 * np.sin((t - o1) * (10 * f1 + 10)) + 0.2 * np.sin((t - o2) * (20 * f2 + 20)) + 0.1 * (u - 0.5)
    return s


def test_sine_series_formula_and_splits():
    b = load("sine_series", {}, ".")
    ref = _sine_reference(10000, 50, 42)
    assert b.task == "regression" and b.num_classes is None
    assert b.train.x.shape == (7000, 50, 1) and b.train.y.shape == (7000, 1)
    assert b.test.x.shape == (1000, 50, 1) and b.test.y.shape == (1000, 1)
    assert b.train.x.dtype == torch.float32 and b.train.y.dtype == torch.float32
    np.testing.assert_allclose(b.train.x.numpy()[:, :, 0], ref[:7000, :50], atol=1e-6)
    np.testing.assert_allclose(b.train.y.numpy()[:, 0], ref[:7000, 50], atol=1e-6)
    np.testing.assert_allclose(b.test.x.numpy()[:, :, 0], ref[9000:, :50], atol=1e-6)  # the last 1000
    np.testing.assert_allclose(b.test.y.numpy()[:, 0], ref[9000:, 50], atol=1e-6)
    naive = np.mean((ref[9000:, 49] - ref[9000:, 50]) ** 2)
    assert b.info["naive_mse_test"] == pytest.approx(naive, rel=1e-5)
    assert b.info["naive_mse_valid"] == pytest.approx(0.0202, abs=2e-4)  # Géron's number for these arrays
    np.testing.assert_allclose(sine_series_values(5, 8, 7), _sine_reference(5, 8, 7).astype(np.float32))


def test_sine_series_options():
    b = load("sine_series", {"merge_valid": True}, ".")
    assert len(b.train) == 9000 and len(b.test) == 1000
    b = load("sine_series", {"n_steps": 20, "n_train": 100, "n_valid": 0, "n_test": 30, "seed": 3}, ".")
    ref = _sine_reference(130, 20, 3)
    assert b.train.x.shape == (100, 20, 1)
    np.testing.assert_allclose(b.test.y.numpy()[:, 0], ref[100:, 20], atol=1e-6)
    s = load("sine_series", {"subset": {"train": 50, "test": 10}}, ".")
    assert len(s.train) == 50 and len(s.test) == 10 and "naive_mse_test_subset" in s.info


# --- shapes -------------------------------------------------------------------------------------------


def test_shapes_deterministic_balanced_fast():
    shapes_images(10, 28, 0.1, 0)  # (the first call pays numpy's lazy imports)
    with work() as few:
        shapes_images(70, 28, 0.1, 0)
    with work() as many:
        x, y = shapes_images(7000, 28, 0.1, 0)
    assert many.calls <= few.calls, (few, many)  # vectorised: its Python work does not grow with the images
    assert x.shape == (7000, 28, 28) and x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1
    assert np.bincount(y).tolist() == [700] * 10
    a = load("shapes", {"n_train": 200, "n_test": 50}, ".")
    b = load("shapes", {"n_train": 200, "n_test": 50}, ".")
    c = load("shapes", {"n_train": 200, "n_test": 50, "seed": 1}, ".")
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.test.y, b.test.y)
    assert not torch.equal(a.train.x, c.train.x)
    assert a.train.x.shape == (200, 1, 28, 28) and a.classes == SHAPE_CLASSES and a.num_classes == 10
    assert torch.bincount(a.train.y).tolist() == [20] * 10 and torch.bincount(a.test.y).tolist() == [5] * 10
    assert a.train.x.min() >= -1 and a.train.x.max() <= 1  # (x - 0.5) / 0.5
    # the test set does not depend on n_train
    assert torch.equal(load("shapes", {"n_train": 100, "n_test": 50}, ".").test.x, a.test.x)
    raw = load("shapes", {"n_train": 20, "n_test": 10, "normalize": None, "size": 40, "noise": 0.0}, ".")
    assert raw.sample_shape == (1, 40, 40) and raw.train.x.min() == 0 and raw.train.x.max() <= 1


def test_shapes_learnable():
    """A LeNet-style CNN learns the glyphs in one epoch (the data set is an offline MNIST stand-in)."""
    torch.manual_seed(0)
    b = load("shapes", {}, ".")
    nn = torch.nn
    model = nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(),
                          nn.MaxPool2d(2), nn.Flatten(), nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
                          nn.Linear(84, 10))
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    perm = torch.randperm(len(b.train))
    for i in range(0, len(perm), 64):
        j = perm[i:i + 64]
        loss = nn.functional.cross_entropy(model(b.train.x[j]), b.train.y[j])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        acc = (model(b.test.x).argmax(1) == b.test.y).float().mean().item()
    assert acc > 0.8


# --- npz ----------------------------------------------------------------------------------------------


def test_npz_classification_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    xtr, xte = rng.integers(0, 256, (30, 784), dtype=np.uint8), rng.integers(0, 256, (10, 784), dtype=np.uint8)
    ytr, yte = rng.integers(0, 10, 30), rng.integers(0, 10, 10)
    path = tmp_path / "d.npz"
    np.savez(path, x_train=xtr, y_train=ytr, x_test=xte, y_test=yte)
    b = load("npz", {"path": str(path), "scale": 255, "shape": [1, 28, 28]}, ".")
    assert b.task == "classification" and b.train.y.dtype == torch.int64
    assert b.num_classes == max(ytr.max(), yte.max()) + 1
    assert b.sample_shape == (1, 28, 28)
    np.testing.assert_allclose(b.train.x.numpy().reshape(30, -1), xtr / 255, rtol=1e-6)
    np.testing.assert_array_equal(b.test.y.numpy(), yte)
    # relative to the data root; custom keys; ids
    np.savez(tmp_path / "k.npz", a=xtr, b=ytr, c=xte, d=yte)
    b = load("npz", {"path": "k.npz", "x_train": "a", "y_train": "b", "x_test": "c", "y_test": "d", "dtype": "long"},
             str(tmp_path))
    assert b.x_dtype == "long" and torch.equal(b.train.x, torch.from_numpy(xtr.astype(np.int64)))


def test_npz_regression_and_split(tmp_path):
    x = np.random.default_rng(1).normal(size=(50, 3)).astype(np.float32)
    y = x.sum(1)
    np.savez(tmp_path / "r.npz", x_train=x, y_train=y)
    b = load("npz", {"path": str(tmp_path / "r.npz"), "normalize": True, "test_fraction": 0.2}, ".")
    assert b.task == "regression" and b.train.y.shape == (40, 1) and b.test.y.shape == (10, 1)
    assert "held out" in b.info["split"]
    np.testing.assert_allclose(b.train.x.numpy().mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(b.train.x.numpy().std(0), 1, atol=1e-4)
    b = load("npz", {"path": str(tmp_path / "r.npz"), "task": "regression"}, ".")
    assert sorted(np.concatenate([b.train.y.numpy()[:, 0], b.test.y.numpy()[:, 0]])) == pytest.approx(sorted(y))
    raises(lambda: load("npz", {"path": str(tmp_path / "r.npz"), "task": "classification"}, "."), "whole numbers")


def test_npz_errors(tmp_path):
    raises(lambda: load("npz", {"path": "nope.npz"}, str(tmp_path)), "no such file", "nope.npz")
    np.savez(tmp_path / "m.npz", x_trian=np.zeros((3, 2)), y_train=np.zeros(3, int))
    err = raises(lambda: load("npz", {"path": str(tmp_path / "m.npz")}, "."), "no array 'x_train'", "x_trian")
    assert err.arg == "x_train"
    np.savez(tmp_path / "n.npz", x_train=np.zeros((3, 2)), y_train=np.zeros(4, int), x_test=np.zeros((1, 2)),
             y_test=np.zeros(1, int))
    raises(lambda: load("npz", {"path": str(tmp_path / "n.npz")}, "."), "3 samples", "has 4")
    np.savez(tmp_path / "o.npz", x_train=np.zeros((3, 2)), y_train=np.zeros(3, int), x_test=np.zeros((1, 2)))
    raises(lambda: load("npz", {"path": str(tmp_path / "o.npz")}, "."), "no array 'y_test'")
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 this is not a zip")
    raises(lambda: load("npz", {"path": str(tmp_path / "bad.npz")}, "."), "bad.npz", "cannot read")
    np.save(tmp_path / "one.npy", np.zeros(3))
    raises(lambda: load("npz", {"path": str(tmp_path / "one.npy")}, "."), ".npy file")
    np.savez(tmp_path / "obj.npz", x_train=np.array([{}, {}], dtype=object), y_train=np.zeros(2, int))
    raises(lambda: load("npz", {"path": str(tmp_path / "obj.npz")}, "."), "obj.npz")
    good = tmp_path / "g.npz"
    np.savez(good, x_train=np.zeros((30, 2)), y_train=np.zeros(30, int), x_test=np.zeros((10, 2)),
             y_test=np.zeros(10, int))
    data = good.read_bytes()
    good.write_bytes(data[: len(data) // 2])
    raises(lambda: load("npz", {"path": str(good)}, "."), "g.npz")


# --- csv ----------------------------------------------------------------------------------------------


IRIS_LIKE = """sepal_length,sepal_width,species
5.1,3.5,setosa
7.0,3.2,versicolor
6.3,3.3,virginica
4.9,3.0,setosa
6.4,3.2,versicolor
5.8,2.7,virginica
5.0,3.6,setosa
5.5,2.3,versicolor
7.1,3.0,virginica
4.6,3.1,setosa
"""


def test_csv_classification_with_header(tmp_path):
    (tmp_path / "iris.csv").write_text(IRIS_LIKE)
    b = load("csv", {"path": str(tmp_path / "iris.csv"), "test_fraction": 0.3}, ".")
    assert b.task == "classification" and b.classes == ["setosa", "versicolor", "virginica"] and b.num_classes == 3
    assert len(b.train) == 7 and len(b.test) == 3 and b.sample_shape == (2,)
    assert b.info["features"] == ["sepal_length", "sepal_width"] and b.info["target"] == "species"
    rows = {}
    for line in IRIS_LIKE.split()[1:]:
        a, w, label = line.split(",")
        rows[(round(float(a), 3), round(float(w), 3))] = label
    for split in (b.train, b.test):  # every row kept with its own label
        for xv, yv in zip(split.x.tolist(), split.y.tolist(), strict=True):
            assert rows[(round(xv[0], 3), round(xv[1], 3))] == b.classes[yv]
    again = load("csv", {"path": str(tmp_path / "iris.csv"), "test_fraction": 0.3}, ".")
    assert torch.equal(again.test.x, b.test.x)  # seeded
    b = load("csv", {"path": str(tmp_path / "iris.csv"), "target": "species", "features": ["sepal_width"]}, ".")
    assert b.sample_shape == (1,)
    err = raises(lambda: load("csv", {"path": str(tmp_path / "iris.csv"), "target": "specie"}, "."),
                 "no column 'specie'", "species")
    assert err.arg == "target"


def test_csv_no_header_numbers_and_test_path(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3))
    y = x @ np.array([1.0, -2.0, 0.5]) + 0.1
    np.savetxt(tmp_path / "train.csv", np.c_[x[:30], y[:30]], delimiter=";")
    np.savetxt(tmp_path / "test.csv", np.c_[x[30:], y[30:]], delimiter=";")
    b = load("csv", {"path": str(tmp_path / "train.csv"), "test_path": str(tmp_path / "test.csv"), "delimiter": ";",
                     "normalize": True}, ".")
    assert b.task == "regression" and b.train.y.shape == (30, 1) and len(b.test) == 10
    np.testing.assert_allclose(b.test.y.numpy()[:, 0], y[30:], rtol=1e-5)
    np.testing.assert_allclose(b.train.x.numpy().mean(0), 0, atol=1e-5)
    m, s = x[:30].mean(0), x[:30].std(0)
    np.testing.assert_allclose(b.test.x.numpy(), (x[30:] - m) / s, rtol=1e-4, atol=1e-5)
    # integer labels with few values: classes, ids in sorted order; the target by index
    lab = np.array([3, 1, 2, 3, 1, 2, 3, 1, 2, 3])
    np.savetxt(tmp_path / "c.csv", np.c_[lab, rng.normal(size=(10, 2))], delimiter=",", fmt="%g")
    b = load("csv", {"path": str(tmp_path / "c.csv"), "target": 0, "test_fraction": 0.2}, ".")
    assert b.task == "classification" and b.classes == ["1", "2", "3"]
    assert sorted(b.train.y.tolist() + b.test.y.tolist()) == sorted((lab - 1).tolist())
    b = load("csv", {"path": str(tmp_path / "c.csv"), "target": 0, "task": "regression"}, ".")
    assert b.task == "regression"


def test_csv_errors(tmp_path):
    p = tmp_path / "bad.csv"
    p.write_text("a,b,label\n1,2,x\n3,oops,y\n5,6,x\n")
    err = raises(lambda: load("csv", {"path": str(p)}, "."), "bad.csv line 3", "'b'", "'oops' is not a number")
    assert err.arg == "features"
    p.write_text("a,b,label\n1,2,x\n3,,y\n5,6,x\n")
    raises(lambda: load("csv", {"path": str(p)}, "."), "line 3", "missing")
    p.write_text("1,2,3\n4,5\n")
    raises(lambda: load("csv", {"path": str(p)}, "."), "line 2 has 2 fields")
    p.write_text("1,2,0\n3,4,1\n5,6,0\n")
    raises(lambda: load("csv", {"path": str(p), "target": "label"}, "."), "no header")
    raises(lambda: load("csv", {"path": str(p), "target": 7}, "."), "no column 7")
    p.write_text("a,b\n1,x\n2,y\n")
    raises(lambda: load("csv", {"path": str(p), "task": "regression"}, "."), "line 2", "'x' is not a number")
    p.write_text("")
    raises(lambda: load("csv", {"path": str(p)}, "."), "empty")
    p.write_bytes(b"a,b\n\xff\xfe,1\n")
    raises(lambda: load("csv", {"path": str(p)}, "."), "not UTF-8")
    raises(lambda: load("csv", {"path": "missing.csv"}, str(tmp_path)), "no such file", "missing.csv")


# --- char_text ----------------------------------------------------------------------------------------


def test_char_text_targets_and_vocab(tmp_path):
    text = "the quick brown fox jumps over the lazy dog.\n" * 20
    p = tmp_path / "t.txt"
    p.write_text(text)
    b = load("char_text", {"path": str(p), "seq_len": 16, "encoding": "ids"}, ".")
    assert b.vocab == sorted(set(text)) and b.num_classes == len(b.vocab) and b.task == "classification"
    assert b.train.x.dtype == torch.int64 and b.train.x.shape[1:] == (16,) and b.train.y.shape[1:] == (16,)
    assert torch.equal(b.train.y[:, :-1], b.train.x[:, 1:])  # y[:, t] is the character after x[:, t]
    cut = int(len(text) * 0.9)
    decode = "".join
    for i in range(len(b.train)):
        s = i * 16
        assert decode(b.vocab[c] for c in b.train.x[i].tolist()) == text[s:s + 16]
        assert decode(b.vocab[c] for c in b.train.y[i].tolist()) == text[s + 1:s + 17]
    assert decode(b.vocab[c] for c in b.test.x[0].tolist()) == text[cut:cut + 16]  # the last part is the test part
    assert len(b.train) == (cut - 1 - 16) // 16 + 1
    h = load("char_text", {"path": str(p), "seq_len": 16}, ".")  # one-hot by default
    assert h.train.x.shape == (len(b.train), 16, len(b.vocab)) and h.train.x.dtype == torch.float32
    assert torch.equal(h.train.x.argmax(-1), b.train.x) and torch.equal(h.train.x.sum(-1), torch.ones(len(b.train), 16))
    s = load("char_text", {"path": str(p), "seq_len": 16, "step": 1, "encoding": "ids"}, ".")
    assert len(s.train) == cut - 16 and torch.equal(s.train.x[1, :-1], s.train.x[0, 1:])


def test_char_text_example_and_errors(tmp_path):
    b = load("char_text", {"path": os.path.join(REPO, "examples", "shakespeare.txt"), "subset": {"train": 100}}, ".")
    assert len(b.train) == 100 and b.sample_shape == (64, len(b.vocab)) and 50 < len(b.vocab) < 70
    p = tmp_path / "short.txt"
    p.write_text("abc")
    raises(lambda: load("char_text", {"path": str(p), "seq_len": 8}, "."), "shorter than seq_len")
    p.write_bytes(b"\xff\xfe\x00abc" * 100)
    raises(lambda: load("char_text", {"path": str(p)}, "."), "not UTF-8")


# --- vision -------------------------------------------------------------------------------------------


@pytest.mark.skipif(_torchvision_imports(), reason="torchvision imports here")
def test_cifar10_without_torchvision(tmp_path):
    raises(lambda: load("cifar10", {}, str(tmp_path)), "cifar10 needs torchvision: pip install 'dlspec[vision]'")


def test_cifar10_through_torchvision(tmp_path, monkeypatch):
    """With a stand-in torchvision: the arrays are taken whole, channels first, scaled and normalised."""
    rng = np.random.default_rng(0)

    class CIFAR10:
        classes = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]

        def __init__(self, root, train=True, download=False):
            if not os.path.isdir(os.path.join(root, "cifar-10-batches-py")):
                raise RuntimeError("Dataset not found or corrupted. You can use download=True to download it")
            n = 20 if train else 10
            self.data = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
            self.targets = list(np.arange(n) % 10)

    _fake_torchvision(monkeypatch, CIFAR10=CIFAR10)
    raises(lambda: load("cifar10", {}, str(tmp_path)), "cifar-10-batches-py", "download: true")
    (tmp_path / "cifar-10-batches-py").mkdir()
    b = load("cifar10", {"normalize": True}, str(tmp_path))
    assert b.sample_shape == (3, 32, 32) and len(b.train) == 20 and b.classes[0] == "airplane"
    b2 = load("cifar10", {"subset": {"train": 5}}, str(tmp_path))
    assert len(b2.train) == 5 and 0 <= b2.train.x.min() and b2.train.x.max() <= 1


def assert_uint8_form_matches(name: str, args: dict, root: str, uint8: bool = True) -> None:
    """The loader's uint8 form (what `dlspec run` uses), materialized, against the float loader."""
    from dlspec.data.base import materialize

    want = load(name, dict(args), root)
    entry = DATASETS[name]
    raw = entry.raw({**{k: a.default for k, a in entry.args.items()}, **args}, root)
    assert (raw.pixels is not None) is uint8 and (raw.train.x.dtype == torch.uint8) is uint8
    got = materialize(raw, torch.device("cpu"))
    for a, b in ((got.train, want.train), (got.test, want.test)):
        assert a.x.dtype == torch.float32 and torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    assert got.sample_shape == want.sample_shape and got.info["normalize"] == want.info["normalize"]


def test_cifar10_uint8_form(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)

    class CIFAR10:
        classes = [str(i) for i in range(10)]

        def __init__(self, root, train=True, download=False):
            n = 20 if train else 10
            self.data = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
            self.targets = list(np.arange(n) % 10)

    _fake_torchvision(monkeypatch, CIFAR10=CIFAR10)
    for args in ({}, {"normalize": True}, {"normalize": [[0.5], [0.25]]}, {"subset": {"train": 5}}):
        rng = np.random.default_rng(0)  # the stand-in draws the same arrays for both loaders
        want = load("cifar10", dict(args), str(tmp_path))
        rng = np.random.default_rng(0)
        from dlspec.data.base import materialize

        entry = DATASETS["cifar10"]
        got = materialize(entry.raw({**{k: a.default for k, a in entry.args.items()}, **args}, str(tmp_path)), "cpu")
        assert torch.equal(got.train.x, want.train.x) and torch.equal(got.test.x, want.test.x), args
    entry = DATASETS["cifar10"]
    raises(lambda: entry.raw({**{k: a.default for k, a in entry.args.items()}, "normalize": [[0.1, 0.2], [1, 1]]},
                             str(tmp_path)), "2 means", "3 channels")


def _write_images(root, sizes, mode="RGB"):
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", 4), ("test", 2)):
        for cls in ("cat", "dog"):
            d = os.path.join(str(root), split, cls)
            os.makedirs(d, exist_ok=True)
            for i in range(n):
                h, w = sizes[i % len(sizes)]
                arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
                Image.fromarray(arr, "RGB").convert(mode).save(os.path.join(d, f"{i}.png"))


def test_image_folder(tmp_path):
    pytest.importorskip("PIL")
    _write_images(tmp_path, [(12, 10)])
    b = load("image_folder", {"path": str(tmp_path)}, ".")
    assert b.classes == ["cat", "dog"] and len(b.train) == 8 and len(b.test) == 4
    assert b.sample_shape == (3, 12, 10) and b.train.y.tolist() == [0] * 4 + [1] * 4
    g = load("image_folder", {"path": str(tmp_path), "grayscale": True, "size": 8, "normalize": True}, ".")
    assert g.sample_shape == (1, 8, 8) and abs(g.train.x.mean().item()) < 1e-5
    t = load("image_folder", {"path": str(tmp_path / "train"), "test_path": str(tmp_path / "test")}, ".")
    assert torch.equal(t.test.x, b.test.x)
    s = load("image_folder", {"path": str(tmp_path / "train"), "test_fraction": 0.25}, ".")
    assert len(s.train) == 6 and len(s.test) == 2
    for args, uint8 in (({"path": str(tmp_path)}, True),
                        ({"path": str(tmp_path), "grayscale": True, "size": 8, "normalize": [[0.5], [0.25]]}, True),
                        ({"path": str(tmp_path), "normalize": [[0.4, 0.5, 0.6], [0.2, 0.25, 0.3]]}, True),
                        ({"path": str(tmp_path), "normalize": True}, False),  # statistics of the float images
                        ({"path": str(tmp_path / "train"), "test_fraction": 0.25, "subset": {"train": 3}}, True)):
        assert_uint8_form_matches("image_folder", args, ".", uint8)


def test_image_folder_errors(tmp_path):
    pytest.importorskip("PIL")
    _write_images(tmp_path, [(12, 10), (9, 9)])
    raises(lambda: load("image_folder", {"path": str(tmp_path)}, "."), "differ in size", "size: [H, W]")
    assert load("image_folder", {"path": str(tmp_path), "size": [9, 9]}, ".").sample_shape == (3, 9, 9)
    bad = tmp_path / "train" / "cat" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    raises(lambda: load("image_folder", {"path": str(tmp_path), "size": 9}, "."), "broken.png")
    raises(lambda: load("image_folder", {"path": str(tmp_path / "nope")}, "."), "no such folder")
    (tmp_path / "empty").mkdir()
    raises(lambda: load("image_folder", {"path": str(tmp_path / "empty")}, "."), "no class folders")


def test_image_folder_scans_with_torchvision_when_it_imports(tmp_path, monkeypatch):
    """With torchvision importable, its ImageFolder does the scan (a stand-in records that it was used)."""
    pytest.importorskip("PIL")
    _write_images(tmp_path, [(12, 10)])
    used = []

    class ImageFolder:
        def __init__(self, root):
            used.append(os.path.basename(root))
            self.classes = sorted(os.listdir(root))
            self.samples = [(os.path.join(root, c, f), i) for i, c in enumerate(self.classes)
                            for f in sorted(os.listdir(os.path.join(root, c)))]

    _fake_torchvision(monkeypatch, ImageFolder=ImageFolder)
    b = load("image_folder", {"path": str(tmp_path)}, ".")
    assert used == ["train", "test"]
    assert b.classes == ["cat", "dog"] and len(b.train) == 8 and len(b.test) == 4
    assert b.train.y.tolist() == [0] * 4 + [1] * 4


# --- hostile files in the data sets (issue 22) --------------------------------------------------------


def test_image_folder_skips_fifos_and_follows_a_link_loop_once(tmp_path):
    """A FIFO named x.png in a class folder blocked `dlspec run` forever, and a symbolic link from a class
    folder to itself made the scan go round (os.walk follows links); now the FIFO is skipped and the loop's
    folder entered once.  In a subprocess: a regression fails on the timeout, not the suite."""
    pytest.importorskip("PIL")
    _write_images(tmp_path, [(6, 6)])
    os.mkfifo(tmp_path / "train" / "cat" / "fifo.png")
    os.symlink(tmp_path / "train" / "cat", tmp_path / "train" / "cat" / "again")
    script = ("import sys\nfrom dlspec.data import load\n"
              "b = load('image_folder', {'path': sys.argv[1]}, '.')\nprint(len(b.train), len(b.test))\n")
    p = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and p.stdout.split() == ["8", "4"], p.stdout + p.stderr


def test_image_folder_reads_16_bit_images_at_their_scale_and_refuses_bombs(tmp_path):
    """16-bit images were clipped to white by Pillow's L conversion; now rounded to 8 bits (x / 257) as the
    images' uint8 form, compared with the raw values.  A 20000×20000 header is refused by the pixel bound."""
    from PIL import Image

    rng = np.random.default_rng(0)
    raws = {}
    for split in ("train", "test"):
        for c in ("a", "b"):
            os.makedirs(tmp_path / split / c)
            raw = rng.integers(0, 3000, (5, 4), dtype=np.uint16)  # dark: all within 5 % of the range
            Image.fromarray(raw).save(tmp_path / split / c / "0.png")
            raws[(split, c)] = raw
    b = load("image_folder", {"path": str(tmp_path), "grayscale": True}, ".")
    for i, c in enumerate(("a", "b")):
        want = np.rint(raws[("train", c)] / 257) / 255
        np.testing.assert_allclose(b.train.x[i, 0].numpy(), want, rtol=1e-6)
    from test_readers import png_header

    (tmp_path / "train" / "a" / "bomb.png").write_bytes(png_header(20000, 20000))
    err = raises(lambda: load("image_folder", {"path": str(tmp_path), "grayscale": True}, "."), "bomb.png",
                 "is a 20000×20000 image", "more than 67,108,864 pixels", "DLSPEC_MAX_IMAGE_PIXELS")
    assert err.arg == "path" and "\n" not in err.message


def test_data_files_that_are_fifos_are_refused(tmp_path):
    os.mkfifo(tmp_path / "d.csv")
    for name in ("csv", "npz", "char_text"):
        err = raises(lambda name=name: load(name, {"path": str(tmp_path / "d.csv")}, "."),
                     "d.csv' is a FIFO (named pipe), not a file", "regular file")
        assert err.arg == "path"


def test_csv_data_set_bounds_and_bom(tmp_path, monkeypatch):
    p = tmp_path / "t.csv"
    p.write_bytes("\ufeffa,b,label\n".encode() + b"".join(f"{i},{i % 3},{i % 2}\n".encode() for i in range(50)))
    b = load("csv", {"path": str(p), "target": "label", "test_fraction": 0.2}, ".")  # the BOM is not in 'a'
    assert b.info["features"] == ["a", "b"] and len(b.train) + len(b.test) == 50
    monkeypatch.setenv("DLSPEC_MAX_CSV_ROWS", "40")
    err = raises(lambda: load("csv", {"path": str(p), "target": "label"}, "."), "t.csv has more than 40 rows",
                 "DLSPEC_MAX_CSV_ROWS")
    assert err.arg == "path"
    monkeypatch.delenv("DLSPEC_MAX_CSV_ROWS")
    monkeypatch.setenv("DLSPEC_MAX_CSV_BYTES", "100")
    raises(lambda: load("csv", {"path": str(p), "target": "label"}, "."), "more than 100, the bound for a CSV file")
    monkeypatch.delenv("DLSPEC_MAX_CSV_BYTES")
    p.write_text("a,b,label\n")
    raises(lambda: load("csv", {"path": str(p), "target": "label"}, "."), "has a header but no data rows")


def test_csv_data_set_streams_in_bounded_memory(tmp_path):
    """A 120 MB CSV of 30 million zeros, read as text cells first, took some 2 GB of Python strings (the old
    estimate refused it only where memory was short); streamed, it loads in a 1.2 GiB address space."""
    p = tmp_path / "z.csv"
    line = ",".join(["0.0"] * 499) + ",1\n"
    with open(p, "w") as f:
        for _ in range(60):
            f.write(line * 1000)
    script = ("import resource, sys\nresource.setrlimit(resource.RLIMIT_AS, (1200 << 20, 1200 << 20))\n"
              "from dlspec.data import load\n"
              "b = load('csv', {'path': sys.argv[1], 'task': 'regression'}, '.')\n"
              "print(len(b.train) + len(b.test), b.sample_shape, float(b.train.x.sum()))\n")
    p = subprocess.run([sys.executable, "-c", script, str(p)], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "DLSPEC_MEMORY": "unlimited"})
    assert p.returncode == 0 and p.stdout.split() == ["60000", "(499,)", "0.0"], p.stdout + p.stderr[-2000:]


def test_npz_data_set_zip_bomb_and_array_bound(tmp_path, monkeypatch):
    import io
    import zipfile

    path = tmp_path / "bomb.npz"
    member = io.BytesIO()
    np.save(member, np.zeros(4 * 2**20, np.float32))  # 16 MiB of zeros: 16 KiB deflated
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("x_train.npy", member.getvalue())
        z.writestr("y_train.npy", member.getvalue())
    monkeypatch.setenv("DLSPEC_MAX_ARRAY_BYTES", str(2**20))
    err = raises(lambda: load("npz", {"path": str(path)}, "."), "its array 'x_train' claims shape (4194304,) float32",
                 "more than 1.0 MiB", "DLSPEC_MAX_ARRAY_BYTES")
    assert err.arg == "path"


def test_char_text_and_idx_bounds(tmp_path, monkeypatch):
    p = tmp_path / "t.txt"
    p.write_text("hello world " * 100)
    monkeypatch.setenv("DLSPEC_MAX_TEXT_BYTES", "1000")
    raises(lambda: load("char_text", {"path": str(p), "seq_len": 8}, "."), "has 1,200 bytes: more than 1,000",
           "DLSPEC_MAX_TEXT_BYTES")
    path = str(tmp_path / "x-idx")
    write_idx(path, np.zeros((10, 28, 28)))
    monkeypatch.setenv("DLSPEC_MAX_ARRAY_BYTES", "7000")
    raises(lambda: read_idx(path), "(7,840 bytes of data): more than 7,000 bytes", "DLSPEC_MAX_ARRAY_BYTES")
    monkeypatch.setenv("DLSPEC_MAX_ARRAY_BYTES", "7840")
    assert read_idx(path).shape == (10, 28, 28)
    with open(path, "wb") as f:  # found by test_readers' property test: no values, but a shape numpy refuses
        f.write(struct.pack(">IIIII", 0x0C04, 0, 215, 82898144, 3768346080))
    raises(lambda: read_idx(path), "is damaged", "a shape larger than any array can have")


# --- named fields: a labelled image's label, a CSV's column groups -------------------------------------


def test_labelled_images_feed_image_and_label_by_name(tmp_path):
    """mnist (float and uint8 forms) and shapes: `image` is x and `label` is y, the same tensors; the static
    facts are the loaded data's."""
    from dlspec.data.base import materialize
    from dlspec.data.common import resolve as resolve_args

    arrays = make_mnist(tmp_path)
    for b in (load("mnist", {}, str(tmp_path)),
              materialize(DATASETS["mnist"].raw(resolve_args("mnist", {}), str(tmp_path)), torch.device("cpu"))):
        s = b.test
        assert s.get("image") is s.x and s.get("label") is s.y
        np.testing.assert_array_equal(s.get("label").numpy(), arrays["test"][1])
        batch = s.batch(torch.tensor([3, 1]))
        assert torch.equal(batch["label"], torch.tensor(arrays["test"][1][[3, 1]], dtype=torch.int64))
        assert torch.equal(batch["image"], s.x[[3, 1]])
        facts = DATASETS["mnist"].facts(resolve_args("mnist", {}))
        assert {n: (f.shape, f.dtype, f.of) for n, f in facts.fields.items()} == \
            {n: (f.shape, f.dtype, f.of) for n, f in b.field_facts().items()} == \
            {"image": ((1, 28, 28), "float", "x"), "label": ((), "long", "y")}
    b = load("shapes", {"n_train": 20, "n_test": 10}, ".")
    assert b.train.get("label") is b.train.y and b.field_facts()["image"].shape == (1, 28, 28)
    t = b.train.take(torch.tensor([0, 5]))  # taking samples keeps the names
    assert torch.equal(t.get("label"), b.train.y[[0, 5]])


GROUPED = "a,b,c,cat,label\n1,2,3,0,x\n4,5,6,2,y\n7,8,9,1,x\n10,11,12,2,y\n13,14,15,0,x\n"


def test_csv_column_groups_are_fields(tmp_path):
    p = tmp_path / "g.csv"
    p.write_text(GROUPED)
    table = np.array([[float(v) for v in line.split(",")[:4]] for line in GROUPED.split()[1:]])
    groups = {"numeric": ["a", "c"], "category": {"columns": ["cat"], "dtype": "long"}}
    b = load("csv", {"path": str(p), "test_path": str(p), "features": ["a", "b", "c"], "groups": groups}, ".")
    s = b.train
    np.testing.assert_array_equal(s.x.numpy(), table[:, :3])  # x as before
    np.testing.assert_array_equal(s.get("numeric").numpy(), table[:, [0, 2]])
    assert s.get("numeric").dtype == torch.float32 and s.get("category").dtype == torch.int64
    np.testing.assert_array_equal(s.get("category").numpy(), table[:, [3]])
    assert b.info["groups"] == {"numeric": {"columns": ["a", "c"], "dtype": "float"},
                                "category": {"columns": ["cat"], "dtype": "long"}}
    from dlspec.data.common import resolve as resolve_args

    facts = DATASETS["csv"].facts(resolve_args("csv", {"path": "g.csv", "features": ["a", "b", "c"], "groups": groups}))
    assert {n: (f.shape, f.dtype) for n, f in facts.fields.items()} == \
        {n: (f.shape, f.dtype) for n, f in b.field_facts().items()} == {"numeric": ((2,), "float"),
                                                                         "category": ((1,), "long")}
    # a held-out split and a subset take the same rows of every group (each row known by its column a)
    args = {"path": str(p), "test_fraction": 0.4, "groups": groups, "seed": 3, "features": ["a", "b", "c"]}
    b = load("csv", {**args, "subset": {"train": 2}}, ".")
    assert len(b.train) == 2 and len(b.test) == 2
    rows = {r[0]: r for r in table}
    for split in (b.train, b.test):
        for i in range(len(split)):
            r = rows[float(split.x[i, 0])]
            assert split.get("numeric")[i].tolist() == [r[0], r[2]] and split.get("category")[i].tolist() == [r[3]]
    # normalize: true standardises x and each float group with the training rows' mean and std (numpy's)
    plain, norm = load("csv", args, "."), load("csv", {**args, "normalize": True}, ".")
    train = np.array([rows[float(v)] for v in plain.train.x[:, 0]])
    m, sd = train[:, [0, 2]].mean(0), train[:, [0, 2]].std(0)
    np.testing.assert_allclose(norm.train.get("numeric").numpy(), (train[:, [0, 2]] - m) / sd, rtol=1e-5)
    test = np.array([rows[float(v)] for v in plain.test.x[:, 0]])
    np.testing.assert_allclose(norm.test.get("numeric").numpy(), (test[:, [0, 2]] - m) / sd, rtol=1e-5)
    assert torch.equal(norm.train.get("category"), plain.train.get("category"))  # ids are not normalised
    err = raises(lambda: load("csv", {"path": str(p), "groups": {"x": ["a"]}}, "."), "the name of the samples")
    assert err.arg == "groups"
    raises(lambda: load("csv", {"path": str(p), "groups": {"9g": ["a"]}}, "."), "letters, digits and _")
    raises(lambda: load("csv", {"path": str(p), "groups": {"g": ["nope"]}}, "."), "no column 'nope'")
    raises(lambda: load("csv", {"path": str(p), "groups": {"g": ["label"]}}, "."), "also in the column group 'g'")
    p.write_text(GROUPED.replace("\n7,8,9,1,x", "\n7,8,9,1.5,x"))
    err = raises(lambda: load("csv", {"path": str(p), "groups": {"c": {"columns": ["cat"], "dtype": "long"}}}, "."),
                 "line 4, column 'cat'", "1.5", "whole number")
    assert err.arg == "groups"


def test_csv_dtype_long_reads_token_ids(tmp_path):
    p = tmp_path / "ids.csv"
    p.write_text("t0,t1,t2,label\n1,2,3,0\n4,5,6,1\n7,8,9,0\n9007199254740992,0,1,1\n")
    b = load("csv", {"path": str(p), "test_path": str(p), "target": "label", "dtype": "long"}, ".")
    assert b.train.x.dtype == torch.int64 and b.x_dtype == "long"
    assert b.train.x.tolist() == [[1, 2, 3], [4, 5, 6], [7, 8, 9], [2**53, 0, 1]]
    p.write_text("t0,t1,label\n1,2,0\n4,-1,1\n")
    raises(lambda: load("csv", {"path": str(p), "target": "label", "dtype": "long"}, "."), "line 3, column 't1'",
           "-1.0", "whole number")
    raises(lambda: load("csv", {"path": str(p), "dtype": "long", "normalize": True}, "."), "not normalised")
