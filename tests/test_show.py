"""`dlspec show`: the statistics of each layer against the model applied layer by layer by hand, the
pictures it writes, its inputs (a test sample, a .npy, an image file) and its one-line refusals."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("matplotlib")
sys.path.insert(0, os.path.dirname(__file__))
from dlspec import cli  # noqa: E402
from dlspec.session import Options, prepare  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SMALL = ["train.data.n_train=40", "train.data.n_test=10"]  # the quick-start's generated shapes, fewer of them


def show(capsys: Any, *argv: Any) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = cli.main(["show", *map(str, argv)])
    c = capsys.readouterr()
    return rc, c.out, c.err


def rows(out: str) -> list[tuple[str, float, float, float]]:
    """(name, mean, std, zeros) of each line of the table."""
    found = re.findall(r"^\s+\d+\s+(\w+) \(\w+\)\s+\([\d, ]+\)\s+(-?[\d.]+)\s+([\d.]+)\s+([\d.]+)%", out, re.M)
    return [(n, float(m), float(s), float(z) / 100) for n, m, s, z in found]


def by_hand(spec: str, x: Any) -> list[tuple[str, float, float, float]]:
    """The same statistics with the built layers applied one after the other (no hooks)."""
    s = prepare(spec, SMALL, Options(progress=False, quiet=True), training=False)
    s.model.eval()
    out, h = [], x.unsqueeze(0)
    with torch.no_grad():
        for name, layer in s.model.named_children():
            h = layer(h)
            v = h[0].double()
            out.append((name, float(v.mean()), float(v.std(unbiased=False)), float((v == 0).double().mean())))
    return out


def test_statistics_are_the_layers_outputs(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    rc, out, err = show(capsys, "specs/quickstart.yaml", *SMALL, "--sample", 3, "--out", tmp_path, "--weights")
    assert rc == 0, err
    got = rows(out)
    s = prepare("specs/quickstart.yaml", SMALL, Options(progress=False, quiet=True), training=False)
    want = by_hand("specs/quickstart.yaml", s.bundle.test.x[3])
    assert [g[0] for g in got] == [w[0] for w in want]
    for g, w in zip(got, want, strict=True):
        assert g[1] == pytest.approx(w[1], abs=6e-5) and g[2] == pytest.approx(w[2], abs=6e-5), g[0]
        assert g[3] == pytest.approx(w[3], abs=6e-4), g[0]
    relu = dict((g[0], g[3]) for g in got)["relu1"]
    assert 0.05 < relu < 0.95  # fresh weights: about half the ReLU outputs are zero
    # the default pictures: the convolutions and poolings, and the kernels
    assert sorted(p.name for p in tmp_path.iterdir()) == ["00_conv1.png", "02_pool1.png", "03_conv2.png",
                                                           "05_pool2.png", "kernels.png"]
    assert "16 feature maps" in out and "16 kernels of 3×3" in out


def test_npy_and_image_inputs(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    import numpy as np

    s = prepare("specs/quickstart.yaml", SMALL, Options(progress=False, quiet=True), training=False)
    np.save(tmp_path / "x.npy", s.bundle.test.x[2].numpy())
    rc, from_npy, err = show(capsys, "specs/quickstart.yaml", *SMALL, "--npy", tmp_path / "x.npy", "--out", tmp_path / "a")
    assert rc == 0, err
    rc, from_sample, err = show(capsys, "specs/quickstart.yaml", *SMALL, "--sample", 2, "--out", tmp_path / "b")
    assert rows(from_npy) == rows(from_sample)
    pil = pytest.importorskip("PIL.Image")
    pixels = (np.arange(28 * 28).reshape(28, 28) % 251).astype(np.uint8)
    pil.fromarray(pixels).save(tmp_path / "digit.png")
    rc, out, err = show(capsys, "specs/quickstart.yaml", *SMALL, "--image", tmp_path / "digit.png", "--out", tmp_path / "c")
    assert rc == 0, err
    x = (torch.from_numpy(pixels).float() / 255 - 0.5) / 0.5  # shapes: pixels / 255, normalised with 0.5, 0.5
    want = by_hand("specs/quickstart.yaml", x.reshape(1, 28, 28))
    for g, w in zip(rows(out), want, strict=True):
        assert g[0] == w[0] and g[1] == pytest.approx(w[1], abs=6e-5) and g[2] == pytest.approx(w[2], abs=6e-5)


def test_a_recurrent_layer_is_drawn_as_steps_by_features(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    small = ["train.data.n_train=20", "train.data.n_valid=5", "train.data.n_test=5"]
    rc, out, err = show(capsys, "specs/rnn_series.yaml", *small, "--out", tmp_path)
    assert rc == 0, err
    assert "50 steps × 20 features" in out and (tmp_path / "00_rnn1.png").exists()


@pytest.mark.parametrize("args, message", [
    (["--layers", "conv9"], "--layers: no layer 'conv9'; the layers are 0 .. 9: conv1, relu1"),
    (["--sample", "99"], "--sample must be from 0 to 9"),
    (["--npy", "WRONG"], "holds an array of shape [3, 28, 28], but the model reads samples of shape [1, 28, 28]"),
    (["--npy", "MISSING"], "cannot read"),
], ids=["layer", "sample", "npy-shape", "npy-missing"])
def test_bad_inputs_get_one_line(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(REPO)
    import numpy as np

    np.save(tmp_path / "wrong.npy", np.zeros((3, 28, 28), dtype=np.float32))
    args = [str(tmp_path / "wrong.npy") if a == "WRONG" else str(tmp_path / "none.npy") if a == "MISSING" else a
            for a in args]
    rc, out, err = show(capsys, "specs/quickstart.yaml", *SMALL, *args, "--out", tmp_path / "o")
    assert rc == 2 and message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_a_run_folder_stands_for_its_spec_and_checkpoint(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    capsys.readouterr()
    assert cli.main(["run", "specs/quickstart.yaml", *SMALL, "train.epochs=1", "--out", str(tmp_path / "runs"),
                     "--no-progress", "--quiet"]) == 0
    (run,) = list((tmp_path / "runs").glob("*/*"))
    capsys.readouterr()
    assert cli.main(["eval", str(run)]) == 0
    by_folder = capsys.readouterr().out
    assert cli.main(["eval", str(run / "spec.yaml"), "--checkpoint", str(run / "checkpoint.pt")]) == 0
    assert capsys.readouterr().out == by_folder and "test (10 samples): loss" in by_folder
    rc, out, err = show(capsys, run, "--out", tmp_path / "s")
    assert rc == 0 and f"weights of {run / 'checkpoint.pt'}" in out
    assert cli.main(["eval", "specs/quickstart.yaml"]) == 2
    assert "give --checkpoint PATH (the weights), or the run folder instead" in capsys.readouterr().err


def test_a_spec_without_data_runs_on_an_array_or_a_random_input(tmp_path, capsys, monkeypatch):
    """No `train:` section (specs/resnet_tiny.yaml): --npy's array, or a seeded random input, through fresh
    weights (seed 0); the statistics are the built layers' applied by hand to the same array."""
    import numpy as np

    import dlspec

    monkeypatch.chdir(REPO)
    x = torch.randn(3, 32, 32, generator=torch.Generator().manual_seed(5))
    np.save(tmp_path / "x.npy", x.numpy())
    rc, out, err = show(capsys, "specs/resnet_tiny.yaml", "--npy", tmp_path / "x.npy", "--out", tmp_path / "o")
    assert rc == 0, err
    torch.manual_seed(0)
    model = dlspec.build("specs/resnet_tiny.yaml").eval()
    want, h = [], x.unsqueeze(0)
    with torch.no_grad():
        for name, layer in model.named_children():
            h = layer(h)
            v = h[0].double()
            want.append((name, float(v.mean()), float(v.std(unbiased=False)), float((v == 0).double().mean())))
    got = rows(out)
    assert [g[0] for g in got] == [w[0] for w in want]
    for g, w in zip(got, want, strict=True):  # printed to 4 decimals, the zeros as a percentage to 1
        assert g[1:3] == pytest.approx(w[1:3], abs=6e-5) and g[3] == pytest.approx(w[3], abs=5.1e-4)
    rc, out, err = show(capsys, "specs/resnet_tiny.yaml", "--out", tmp_path / "r")
    assert rc == 0 and "on a random input (3, 32, 32) (the spec has no data set" in out


def test_a_gan_shows_the_network_asked_for(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    rc, _, err = show(capsys, "specs/dcgan.yaml", "train.data.name=shapes", "--out", tmp_path / "o")
    assert rc == 2 and "give --network NAME (generator, discriminator)" in err
    rc, out, err = show(capsys, "specs/dcgan.yaml", "--network", "generator", "train.data.name=shapes",
                        "--out", tmp_path / "g")
    assert rc == 0, err
    assert "DCGAN · generator on a random input (100,)" in out  # it reads noise, not the data's images
    rc, out, err = show(capsys, "specs/dcgan.yaml", "--network", "discriminator", "train.data.name=shapes",
                        "--out", tmp_path / "d")
    assert rc == 0, err
    assert "DCGAN · discriminator on shapes test sample 0" in out
