"""The README's table of tasks: each spec trained in full by `dlspec run`, its reported figure measured.

    python benchmarks/tasks_table.py [--data-root ../shared/data] [--only mlp,autoencoder,...] [--out DIR]

Runs, one after another (minutes each on a 2-core CPU):
  mlp                     specs/mlp.yaml on MNIST: test accuracy
  autoencoder             specs/autoencoder.yaml on Fashion-MNIST: test MSE vs the mean-image baseline
  denoising_autoencoder   specs/denoising_autoencoder.yaml on MNIST (noise 0.5): the same
  char_lm                 specs/char_rnn.yaml for its 12 epochs, then specs/char_transformer.yaml for as many
                          epochs as fit in the RNN's training time (from a 1-epoch timing run): test loss and
                          perplexity at the same training wall time; and the Transformer's own 12 epochs
  row_transformer         specs/row_transformer.yaml on MNIST rows (attention) against specs/lstm_rows.yaml
                          (recurrent, its recipe's 20 epochs): test accuracy
Prints one markdown row per spec with the device, torch version and date, as the README's table wants.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(spec: str, out: str, data_root: str, *overrides: str) -> dict:
    cmd = [sys.executable, "-m", "dlspec", "run", spec, "--data-root", data_root, "--out", out, "--no-progress",
           *overrides]
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
    run_dir = next(line.split(" ", 1)[1] for line in p.stdout.splitlines() if line.startswith("run "))
    with open(os.path.join(ROOT, run_dir, "summary.json")) as f:
        summary = json.load(f)
    summary["stdout"] = p.stdout
    return summary


def fmt(s: dict, *keys: str) -> str:
    return " · ".join(f"{k[5:]} {s['final'][k]:.4f}" for k in keys if k in s["final"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-root", default=os.path.join(ROOT, "..", "shared", "data"))
    ap.add_argument("--only", default="mlp,autoencoder,denoising_autoencoder,char_lm,row_transformer")
    ap.add_argument("--out", default=os.path.join(ROOT, "runs", "tasks_table"))
    a = ap.parse_args()
    import torch

    where = f"{torch.__version__}, {os.cpu_count()} CPUs, {datetime.date.today()}"
    rows = []
    for name in a.only.split(","):
        if name == "char_lm":
            rnn = run("specs/char_rnn.yaml", a.out, a.data_root)
            one = run("specs/char_transformer.yaml", a.out, a.data_root, "train.epochs=1", "train.task.language_model.sample_length=0")
            epochs = max(1, round(rnn["train_time_s"] / one["train_time_s"]))
            tf = run("specs/char_transformer.yaml", a.out, a.data_root, f"train.epochs={epochs}")
            full = run("specs/char_transformer.yaml", a.out, a.data_root)
            for s in (rnn, tf, full):
                rows.append(f"| `{s['spec']}` | {s['epochs']} epochs, {s['train_time_s']:.0f} s training | "
                            f"{fmt(s, 'test_loss', 'test_perplexity', 'test_accuracy')} | {where} |")
            sample = [line for line in full["stdout"].splitlines() if line.startswith("sample: ")]
            print("transformer sample:", sample[-1] if sample else "-")
        elif name == "row_transformer":
            for spec in ("row_transformer", "lstm_rows"):
                s = run(f"specs/{spec}.yaml", a.out, a.data_root)
                rows.append(f"| `{s['spec']}` | {s['epochs']} epochs, {s['train_time_s']:.0f} s training | "
                            f"{fmt(s, 'test_accuracy')} | {where} |")
                print(rows[-1], flush=True)
            continue
        else:
            s = run(f"specs/{name}.yaml", a.out, a.data_root)
            base = s.get("baseline", {})
            extra = " · ".join(f"{k.replace('_', ' ')} {v:.4f}" for k, v in base.items())
            rows.append(f"| `{s['spec']}` | {s['epochs']} epochs, {s['train_time_s']:.0f} s training | "
                        f"{fmt(s, 'test_accuracy', 'test_mse')}{' · ' + extra if extra else ''} | {where} |")
        print(rows[-1], flush=True)
    print("\n".join(["", "| spec | run | test | device, torch, date |", "|---|---|---|---|", *rows]))


if __name__ == "__main__":
    main()
