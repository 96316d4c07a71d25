"""`dlspec predict --input`: the user's own images, folders, .npy arrays and CSV rows, against the trained model
applied by hand to the same values (PIL + the data set's normalisation, written out here), and the one-line
refusals of inputs that cannot be this model's samples."""

from __future__ import annotations

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
