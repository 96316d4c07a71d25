"""The task specs of specs/ train with one `dlspec run` each, kept to seconds for CI: two short epochs on a
subset of the real data (skipped where the MNIST / Fashion-MNIST files are not there).  The full runs and
their figures are benchmarks/tasks_table.py's and benchmarks/gan_quality.py's (docs/tasks.md, Results)."""

from __future__ import annotations

import json
import math
import os
import sys

import pytest

pytest.importorskip("torch")
sys.path.insert(0, os.path.dirname(__file__))
from test_train import DATA_ROOT, REPO, csv_rows, dlspec_main, run_dir  # noqa: E402


def have(folder: str) -> bool:
    return any(os.path.isfile(os.path.join(DATA_ROOT, folder, "raw", "train-images-idx3-ubyte" + ext))
               for ext in ("", ".gz"))


SUBSET = "train.data.subset={train: 1024, test: 256}"
CASES = [
    ("mlp", "MNIST", []),
    ("autoencoder", "FashionMNIST", []),
    ("denoising_autoencoder", "MNIST", []),
    ("row_transformer", "MNIST", ["train.scheduler=null"]),
    ("dcgan", "MNIST", []),
    ("char_transformer", None, ["train.data.subset={train: 256, test: 64}", "train.task.language_model.sample_length=40"]),
]


@pytest.mark.parametrize("name, data, extra", CASES, ids=[c[0] for c in CASES])
def test_task_spec_trains(tmp_path, capsys, monkeypatch, name, data, extra):
    if data is not None and not have(data):
        pytest.skip(f"{data} IDX files not in {DATA_ROOT}")
    monkeypatch.chdir(REPO)  # (char_text's path is relative to the repository)
    overrides = ["train.epochs=2", *([] if data is None else [SUBSET]), *extra]
    rc, out, err = dlspec_main(capsys, "run", f"specs/{name}.yaml", *overrides, "--data-root", DATA_ROOT,
                               "--out", tmp_path, "--no-progress")
    assert rc == 0, err
    d = run_dir(tmp_path)
    rows = csv_rows(d)
    assert len(rows) == 2 and all(math.isfinite(float(v)) for r in rows for k, v in r.items() if k.startswith("t"))
    summary = json.loads((d / "summary.json").read_text())
    if name == "dcgan":  # the discriminator tells real from generated, and the generator is drawn
        assert float(rows[-1]["train_d_real"]) > float(rows[-1]["train_d_fake"])
        assert (d / "samples.png").exists() or "matplotlib is not installed" in out
        return
    assert float(rows[1]["train_loss"]) < float(rows[0]["train_loss"])  # it learns
    if "autoencoder" in name:  # the clean test images come out better, against a baseline of the right size
        assert float(rows[1]["test_mse"]) < float(rows[0]["test_mse"])
        assert 0.02 < summary["baseline"]["test_mse_mean_image"] < 0.2
    if name == "char_transformer":
        assert (d / "samples.txt").read_text(encoding="utf-8").count("--- epoch") == 2
