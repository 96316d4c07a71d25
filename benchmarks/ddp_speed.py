"""Samples/s of one process against K processes (torchrun, DistributedDataParallel) in one run.

    python benchmarks/ddp_speed.py [--data-root ../shared/data] [--nproc 2] [--epochs 2] [--device cpu|cuda]

For specs/lenet_mnist.yaml and specs/lstm_rows.yaml on MNIST (when its files are under --data-root; the
generated `shapes` glyphs otherwise, which lstm_rows cannot read: it is then left out), the same global batch
size, `dlspec run` once with one process and once with K.  On the CPU the machine's cores are shared out:
each of the K processes gets cores // K threads, one process all of them.  Prints, per spec, the training
samples/s of the last epoch (the first includes warm-up) and the ratio K-process / 1-process, with the
machine, versions and date; on a GPU machine, --device cuda and --nproc the number of GPUs.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(spec: str, nproc: int, args: argparse.Namespace, extra: list[str], out: str) -> dict:
    cores = os.cpu_count() or 1
    threads = max(1, cores // nproc) if args.device == "cpu" else 1
    words = [spec, "--data-root", args.data_root, "--out", out, "--no-progress", "--epochs", str(args.epochs),
             "--device", args.device, "--threads", str(threads), *extra]
    if nproc == 1:
        cmd = [sys.executable, "-m", "dlspec", "run", *words]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
               "-m", "dlspec", "run", *words]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
    run_dir = next(line.split(" ", 1)[1] for line in p.stdout.splitlines() if line.startswith("run "))
    with open(os.path.join(run_dir, "metrics.csv")) as f:
        rows = [line.strip().split(",") for line in f if line.strip()]
    head, last = rows[0], rows[-1]
    with open(os.path.join(run_dir, "summary.json")) as f:
        summary = json.load(f)
    return {"samples_per_s": float(last[head.index("samples_per_s")]), "test": summary["final"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", default=os.environ.get("DLSPEC_DATA", os.path.join(ROOT, "..", "shared", "data")))
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    mnist = os.path.isdir(os.path.join(args.data_root, "MNIST"))
    specs = [("specs/lenet_mnist.yaml", [] if mnist else ["train.data={name: shapes, n_train: 20000}"])]
    if mnist:
        specs.append(("specs/lstm_rows.yaml", []))
    import torch

    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{datetime.date.today()}, device {args.device}, {args.epochs} epochs, data "
          f"{'MNIST' if mnist else 'shapes (no MNIST under --data-root)'}")
    print(f"| spec | 1 process samples/s | {args.nproc} processes samples/s | ratio | test accuracy 1 / {args.nproc} |")
    print("|---|---|---|---|---|")
    for spec, extra in specs:
        with tempfile.TemporaryDirectory() as tmp:
            one = run(spec, 1, args, extra, os.path.join(tmp, "one"))
            many = run(spec, args.nproc, args, extra, os.path.join(tmp, "many"))
        acc = (one["test"].get("test_accuracy"), many["test"].get("test_accuracy"))
        print(f"| {os.path.basename(spec)} | {one['samples_per_s']:,.0f} | {many['samples_per_s']:,.0f} | "
              f"{many['samples_per_s'] / one['samples_per_s']:.2f}× | {acc[0]:.4f} / {acc[1]:.4f} |")


if __name__ == "__main__":
    main()
