"""`dlspec predict --input`: the user's own images, folders, .npy arrays and CSV rows, against the trained model
applied by hand to the same values (PIL + the data set's normalisation, written out here), and the one-line
refusals of inputs that cannot be this model's samples."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
Image = pytest.importorskip("PIL.Image")
from dlspec import cli  # noqa: E402
from dlspec.session import Options, prepare  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SMALL = ["train.data.n_test=100"]  # the quick-start recipe (2 epochs, about 2 s)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: Any) -> tuple[Path, Any]:
    """A quick-start run (its generated glyphs), and its session with the checkpoint's weights."""
    import os

    out = tmp_path_factory.mktemp("runs")
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        assert cli.main(["run", "specs/quickstart.yaml", *SMALL, "--out", str(out),
                         "--no-progress", "--quiet"]) == 0
    finally:
        os.chdir(cwd)
    (folder,) = list(out.glob("*/*"))
    s = prepare(str(folder / "spec.yaml"), [], Options(progress=False, quiet=True), training=False)
    s.model.load_state_dict(torch.load(folder / "checkpoint.pt", weights_only=False)["model"])
    s.model.eval()
    return folder, s


def predict(capsys: Any, *argv: Any) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = cli.main(["predict", *map(str, argv)])
    c = capsys.readouterr()
    return rc, c.out, c.err


def predicted(out: str) -> dict[str, int]:
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\S+)\s+predicted (\d+)", out, re.M)}


def by_hand(s: Any, x: Any) -> list[int]:
    with torch.no_grad():
        return [int(k) for k in s.model(x).argmax(-1)]


def test_a_folder_of_images_in_class_subfolders(trained: Any, tmp_path: Path, capsys: Any) -> None:
    folder, s = trained
    b = s.bundle
    mean, std = b.info["normalize"]["mean"][0], b.info["normalize"]["std"][0]
    files, targets = [], []
    for i in range(40):
        name = b.classes[int(b.test.y[i])]
        (tmp_path / "imgs" / name).mkdir(parents=True, exist_ok=True)
        pixels = ((b.test.x[i, 0].numpy() * std + mean) * 255).clip(0, 255).round().astype(np.uint8)
        path = tmp_path / "imgs" / name / f"{i:03d}.png"
        Image.fromarray(pixels).save(path)
        files.append(path)
        targets.append(int(b.test.y[i]))
    # by hand: PIL reads each file back, /255, the data set's mean and std
    x = torch.stack([(torch.from_numpy(np.asarray(Image.open(f).convert("L"), dtype=np.float32))[None] / 255 - mean)
                     / std for f in files])
    want = by_hand(s, x)
    rc, out, err = predict(capsys, folder, "--input", tmp_path / "imgs")
    assert rc == 0, err
    got = predicted(out)
    assert [got[str(f)] for f in files] == want
    right = sum(w == t for w, t in zip(want, targets, strict=True))
    assert f"accuracy {right / 40:.4f} ({right} of 40 inputs with a known class)" in out
    assert right >= 30  # trained: far above chance (0.1)


def test_npy_batches_and_csv_rows_are_model_ready_values(trained: Any, tmp_path: Path, capsys: Any) -> None:
    folder, s = trained
    x = s.bundle.test.x[:6]
    np.save(tmp_path / "one.npy", x[0].numpy())
    np.save(tmp_path / "batch.npy", x[1:4].numpy())
    np.savetxt(tmp_path / "rows.csv", x[4:6].reshape(2, -1).numpy(), delimiter=",")
    rc, out, err = predict(capsys, folder, "--input", tmp_path / "one.npy", tmp_path / "batch.npy",
                           tmp_path / "rows.csv")
    assert rc == 0, err
    got = predicted(out)
    names = [f"{tmp_path / 'one.npy'}"] + [f"{tmp_path / 'batch.npy'}[{i}]" for i in range(3)] + \
        [f"{tmp_path / 'rows.csv'}:{line}" for line in (1, 2)]
    assert [got[n] for n in names] == by_hand(s, x)
    assert "accuracy" not in out  # no input says its class


@pytest.mark.parametrize("make, message", [
    (lambda d: d / "missing.png", "no file or folder"),
    (lambda d: (np.save(d / "w.npy", np.zeros((2, 5))), d / "w.npy")[1], "holds an array of shape [2, 5]"),
    (lambda d: ((d / "t.csv").write_text("1,2,x\n"), d / "t.csv")[1], "has 3 columns; the model reads 784"),
    (lambda d: ((d / "empty").mkdir(), d / "empty")[1], "holds no image files"),
    (lambda d: ((d / "m.bin").write_bytes(b"\0"), d / "m.bin")[1], "not an image"),
    (lambda d: ((d / "bad.png").write_bytes(b"not a png"), d / "bad.png")[1], "cannot read"),
    (lambda d: (np.save(d / "nan.npy", np.full((1, 28, 28), np.nan, dtype=np.float32)), d / "nan.npy")[1],
     "holds 784 values that are not a finite number (nan, infinite or beyond float32), the first nan at [0, 0, 0]"),
])
def test_inputs_that_are_not_samples_get_one_line(trained: Any, tmp_path: Path, capsys: Any, make: Any,
                                                  message: str) -> None:
    folder, _ = trained
    rc, out, err = predict(capsys, folder, "--input", make(tmp_path))
    assert rc == 2 and message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def test_csv_rows_of_a_table_model_by_column_name(tmp_path: Path, capsys: Any) -> None:
    """A model trained on a csv data set (normalize: true): rows of another CSV whose header names the training
    file's feature columns in another order, with the target column, are read by name, normalised with the
    training split's statistics and judged against their targets."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 2)) * [3.0, 0.5] + [10.0, -2.0]
    y = np.where(x[:, 0] - 10.0 + 4 * (x[:, 1] + 2.0) > 0, "yes", "no")
    with open(tmp_path / "train.csv", "w") as f:
        f.write("a,b,label\n" + "".join(f"{p:.5f},{q:.5f},{t}\n" for (p, q), t in zip(x, y, strict=True)))
    (tmp_path / "spec.yaml").write_text(
        "# A two-feature classifier, for the predict test.\nname: table\ninput: [2]\nlayers:\n"
        "  - Linear: {out_features: 16}\n  - ReLU\n  - Linear: {out_features: 2}\n"
        f"train:\n  data: {{name: csv, path: {tmp_path / 'train.csv'}, target: label, normalize: true}}\n"
        "  epochs: 30\n  batch_size: 32\n  optimizer: {Adam: {lr: 0.01}}\n", encoding="utf-8")
    assert cli.main(["run", str(tmp_path / "spec.yaml"), "--out", str(tmp_path / "runs"), "--quiet",
                     "--no-progress"]) == 0
    (folder,) = list((tmp_path / "runs").glob("*/*"))
    s = prepare(str(folder / "spec.yaml"), [], Options(progress=False, quiet=True), training=False)
    s.model.load_state_dict(torch.load(folder / "checkpoint.pt", weights_only=False)["model"])
    s.model.eval()
    rows = x[:12]
    with open(tmp_path / "mine.csv", "w") as f:  # b before a, an extra column, the target
        f.write("b,note,a,label\n" + "".join(f"{q:.5f},n,{p:.5f},{t}\n" for (p, q), t in zip(rows, y[:12], strict=True)))
    norm = s.bundle.info["normalize"]
    by_hand = (torch.tensor(rows, dtype=torch.float32) - torch.tensor(norm["mean"])) / torch.tensor(norm["std"])
    want = [int(k) for k in s.model(by_hand).argmax(-1)]
    capsys.readouterr()
    assert cli.main(["predict", str(folder), "--input", str(tmp_path / "mine.csv")]) == 0
    out = capsys.readouterr().out
    got = predicted(out)
    assert [got[f"{tmp_path / 'mine.csv'}:{line}"] for line in range(2, 14)] == want
    classes = s.bundle.classes
    right = sum(classes[w] == t for w, t in zip(want, y[:12], strict=True))
    assert f"accuracy {right / 12:.4f} ({right} of 12 inputs with a known class)" in out


# --- hostile inputs (issue 22): bombs, lying headers, FIFOs, ids beyond the vocabulary ------------------


def _png_bomb(path: Path, w: int, h: int, depth: int = 8) -> Path:
    """A PNG whose header says w×h (65 bytes; the pixels do not follow)."""
    import struct
    import zlib

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, 0, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))
    return path


def _npy_liar(path: Path) -> Path:
    import numpy.lib.format as npy

    with open(path, "wb") as f:
        npy.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (800000000000, 1, 28, 28)})
        f.write(bytes(100))
    return path


@pytest.mark.parametrize("make, message", [
    (lambda d: _png_bomb(d / "bomb.png", 20000, 20000), "bomb.png is a 20000×20000 image (400,000,000 pixels): more "
     "than 67,108,864 pixels, the bound for an image (DLSPEC_MAX_IMAGE_PIXELS=N raises it)"),
    (lambda d: _png_bomb(d / "bomb16.png", 20000, 20000, 16), "more than 67,108,864 pixels"),
    (lambda d: _npy_liar(d / "liar.npy"), "liar.npy is damaged: its header claims shape (800000000000, 1, 28, 28) "
     "float32 (2,508,800,000,000,000 bytes) but the file holds 100 bytes of data"),
    (lambda d: (np.save(d / "z.npy", np.zeros((0, 1, 28, 28), np.float32)), d / "z.npy")[1],
     "z.npy holds no samples: its shape is [0, 1, 28, 28]"),
    (lambda d: (np.save(d / "o.npy", np.array([{}], dtype=object), allow_pickle=True), d / "o.npy")[1],
     "o.npy holds object values, not numbers"),
    (lambda d: (np.save(d / "h.npy", np.full((1, 28, 28), np.inf, np.float16)), d / "h.npy")[1],
     "h.npy holds 784 values that are not a finite number (nan, infinite or beyond float32), the first inf at "
     "[0, 0, 0]"),
    (lambda d: ((d / "h.csv").write_text("a,b\n"), d / "h.csv")[1], "h.csv has a header row but no data rows"),
    (lambda d: ((d / "e.csv").write_text("\n\n"), d / "e.csv")[1], "e.csv is empty"),
    (lambda d: ((d / "r.csv").write_text(",".join(["0"] * 784) + "\n0,0\n"), d / "r.csv")[1],
     "r.csv line 2 has 2 fields but the first row has 784"),
    (lambda d: ((d / "n.csv").write_text(",".join(["0"] * 783) + ",inf\n"), d / "n.csv")[1],
     "n.csv line 1, column 783: 'inf' is not a finite number"),
    (lambda d: ((d / "big.csv").write_text((",".join(["0"] * 784) + "\n") * 2000), d / "big.csv")[1],
     "big.csv has more than 1,341 rows; at most 1,341 are read at a time"),  # the 1 GiB cap of a 784-value sample
    (lambda d: Path("/dev/null"), "/dev/null: not an image"),
])
def test_hostile_inputs_get_one_line(trained: Any, tmp_path: Path, capsys: Any, make: Any, message: str,
                                     monkeypatch: Any) -> None:
    """Each was an internal error (exit 70), a 5.7 GB read, or a silent prediction; now one line, exit 2."""
    folder, _ = trained
    import dlspec.inputs as inputs

    monkeypatch.setattr(inputs, "MAX_BYTES", 1341 * 784 * 4)  # a cap small enough to reach in a test
    rc, out, err = predict(capsys, folder, "--input", make(tmp_path))
    assert rc == 2 and message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def test_a_big_endian_array_and_a_16_bit_image_are_the_values_they_hold(trained: Any, tmp_path: Path,
                                                                       capsys: Any) -> None:
    """A big-endian .npy was an internal error; a 16-bit PNG of a dark digit was read as saturated white.
    By hand: numpy's native values, and the raw 16-bit values / 65535 with the data set's mean and std."""
    folder, s = trained
    x = s.bundle.test.x[:3]
    np.save(tmp_path / "be.npy", x.numpy().astype(">f4"))
    norm = s.bundle.info["normalize"]
    mean, std = norm["mean"][0], norm["std"][0]
    raw = ((x[0, 0].numpy() * std + mean) * 65535).clip(0, 65535).round().astype(np.uint16)
    Image.fromarray(raw).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode == "I;16"
    rc, out, err = predict(capsys, folder, "--input", tmp_path / "be.npy", tmp_path / "deep.png")
    assert rc == 0, err
    got = predicted(out)
    want = by_hand(s, torch.cat([x, ((torch.from_numpy(raw.astype(np.float32)) / 65535 - mean) / std)[None, None]]))
    assert [got[f"{tmp_path / 'be.npy'}[{i}]"] for i in range(3)] + [got[str(tmp_path / "deep.png")]] == want


def test_fifos_are_refused_and_skipped_in_folders(trained: Any, tmp_path: Path) -> None:
    """A FIFO given as an image, a CSV or an .npy blocked forever; now refused.  In a folder it is skipped and
    the images beside it are predicted.  (A subprocess: a regression fails on its timeout, not the suite.)"""
    import subprocess
    import sys

    folder, _ = trained
    for name in ("f.png", "f.csv", "f.npy"):
        os.mkfifo(tmp_path / name)
    (tmp_path / "imgs").mkdir()
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(tmp_path / "imgs" / "a.png")
    os.mkfifo(tmp_path / "imgs" / "b.png")
    for name, what in (("f.png", "an image file"), ("f.csv", "a CSV file"), ("f.npy", "a .npy file")):
        p = subprocess.run([sys.executable, "-m", "dlspec", "predict", str(folder), "--input", str(tmp_path / name)],
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 2 and p.stderr == f"dlspec predict: {tmp_path / name} is a FIFO (named pipe), not " \
                                                 f"{what}\n", p.stderr
    p = subprocess.run([sys.executable, "-m", "dlspec", "predict", str(folder), "--input", str(tmp_path / "imgs")],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and f"{tmp_path / 'imgs' / 'a.png'}  predicted" in p.stdout and "b.png" not in p.stdout


@pytest.fixture(scope="module")
def ids_run(tmp_path_factory: Any) -> tuple[Path, Any]:
    """A model of token ids (Embedding of 62) trained one epoch on an npz of ids."""
    d = tmp_path_factory.mktemp("ids")
    r = np.random.default_rng(0)
    np.savez(d / "ids.npz", x_train=r.integers(0, 62, (64, 16)), y_train=r.integers(0, 4, 64),
             x_test=r.integers(0, 62, (16, 16)), y_test=r.integers(0, 4, 16))
    (d / "ids.yaml").write_text(
        "# ids for the predict test\nname: ids\ninput: {shape: [16], dtype: long}\nlayers:\n"
        "  - Embedding: {num_embeddings: 62, embedding_dim: 8}\n  - Flatten\n  - Linear: {out_features: 4}\n"
        f"train:\n  data: {{name: npz, path: {d / 'ids.npz'}, dtype: long}}\n  epochs: 1\n  batch_size: 16\n")
    assert cli.main(["run", str(d / "ids.yaml"), "--out", str(d / "runs"), "--quiet", "--no-progress"]) == 0
    (folder,) = list((d / "runs").glob("*/*"))
    s = prepare(str(folder / "spec.yaml"), [], Options(progress=False, quiet=True), training=False)
    s.model.load_state_dict(torch.load(folder / "checkpoint.pt", weights_only=False)["model"])
    s.model.eval()
    return folder, s


@pytest.mark.parametrize("ids, message", [
    ([[3] * 15 + [2**63 - 1]], "holds the id 9223372036854775807 at [0, 15]"),
    ([[-5] * 16], "holds the id -5 at [0, 0]"),
    ([[62] * 16], "holds the id 62 at [0, 0]"),
])
def test_token_ids_beyond_the_embedding_are_refused_before_torch(ids_run: Any, tmp_path: Path, capsys: Any,
                                                                 ids: list[list[int]], message: str) -> None:
    """torch's IndexError ('index out of range in self') was an internal error, on a GPU a device assert."""
    folder, _ = ids_run
    np.save(tmp_path / "t.npy", np.array(ids, dtype=np.int64))
    rc, out, err = predict(capsys, folder, "--input", tmp_path / "t.npy")
    assert rc == 2 and err == f"dlspec predict: {tmp_path / 't.npy'} {message}: the model's ids are 0 to 61 (layer " \
                              "embed1 Embedding has num_embeddings 62)\n", err
    (tmp_path / "t.csv").write_text("\n".join(",".join(map(str, row)) for row in ids) + "\n")
    rc, out, err = predict(capsys, folder, "--input", tmp_path / "t.csv")
    assert rc == 2 and "the model's ids are 0 to 61" in err and len(err.splitlines()) == 1, err


def test_token_ids_in_range_are_predicted_as_by_hand(ids_run: Any, tmp_path: Path, capsys: Any) -> None:
    folder, s = ids_run
    x = s.bundle.test.x[:4]
    np.save(tmp_path / "t.npy", x.numpy())
    (tmp_path / "t.csv").write_text("\n".join(",".join(map(str, row)) for row in x.tolist()) + "\n")
    rc, out, err = predict(capsys, folder, "--input", tmp_path / "t.npy", tmp_path / "t.csv")
    assert rc == 0, err
    got = predicted(out)
    want = by_hand(s, x)
    assert [got[f"{tmp_path / 't.npy'}[{i}]"] for i in range(4)] == want
    assert [got[f"{tmp_path / 't.csv'}:{i + 1}"] for i in range(4)] == want
