"""How long does one optimizer step take, for-loop / foreach / fused, for the recipes' own models and optimizers?

    python benchmarks/optimizer_step.py                     # the CPU (and CUDA when there is one)
    python benchmarks/optimizer_step.py --device cuda --threads 2

This is the measurement behind `train.fused: auto` (dlspec/plan.py, FUSED_PAYS): the run takes torch's fused
step where it pays.  Each spec's model is built by dlspec, its parameters get random gradients, and the three
implementations of the spec's optimizer (with the spec's arguments) take turns, `--steps` steps per turn,
`--repeats` turns; the medians are printed with the ratio to torch's default (foreach on CUDA, for-loop on
the CPU).  No data and no forward pass: the step alone.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import torch  # noqa: E402
import yaml  # noqa: E402

import dlspec  # noqa: E402

SPECS = ("simple_cnn", "lenet", "lstm_rows", "mnist_cnn", "mnist_speedrun")
IMPLS = {"for-loop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}


def optimizer_of(name: str) -> tuple[str, dict[str, Any]]:
    """The spec's train.optimizer: {Name: {arguments}} or a bare name."""
    with open(os.path.join(ROOT, "specs", f"{name}.yaml"), encoding="utf-8") as f:
        opt = yaml.safe_load(f)["train"]["optimizer"]
    if isinstance(opt, str):
        return opt, {}
    ((opt_name, kw),) = opt.items()
    return opt_name, dict(kw or {})


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure(name: str, device: torch.device, steps: int, repeats: int) -> dict[str, Any]:
    opt_name, kw = optimizer_of(name)
    model = dlspec.build(os.path.join(ROOT, "specs", f"{name}.yaml")).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    g = torch.Generator(device=device).manual_seed(0)
    for p in params:
        p.grad = torch.randn(p.shape, generator=g, device=device) * 1e-3
    cls = getattr(torch.optim, opt_name)
    opts: dict[str, Any] = {}
    for impl, extra in IMPLS.items():
        try:
            o = cls(params, **kw, **extra)
            o.step()  # the first step creates the state; and a missing fused kernel fails here
            opts[impl] = o
        except (RuntimeError, TypeError, ValueError) as e:
            opts[impl] = str(e).splitlines()[0][:60]
    times: dict[str, list[float]] = {k: [] for k, o in opts.items() if not isinstance(o, str)}
    with torch.no_grad():
        for _ in range(repeats):
            for impl in times:
                sync(device)
                t = time.perf_counter()
                for _ in range(steps):
                    opts[impl].step()
                sync(device)
                times[impl].append((time.perf_counter() - t) / steps * 1e3)
    return {"spec": name, "optimizer": opt_name, "params": sum(p.numel() for p in params), "tensors": len(params),
            "ms": {k: statistics.median(v) for k, v in times.items()},
            "failed": {k: o for k, o in opts.items() if isinstance(o, str)}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", choices=("auto", "cpu", "cuda", "all"), default="auto",
                    help="auto: the CPU, and CUDA too when there is one (default)")
    ap.add_argument("--specs", nargs="+", default=list(SPECS))
    ap.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's own choice)")
    ap.add_argument("--steps", type=int, default=50, help="steps per turn (default 50)")
    ap.add_argument("--repeats", type=int, default=15, help="turns per implementation (default 15)")
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() and a.device in ("auto", "all") else [])
    if a.device == "cuda":
        devices = ["cuda"]
    print(f"torch {torch.__version__} · {torch.get_num_threads()} CPU threads"
          + (f" · {torch.cuda.get_device_name()}" if "cuda" in devices else ""))
    for dev in devices:
        default = "foreach" if dev == "cuda" else "for-loop"
        print(f"\n{dev}: ms per optimizer step (median of {a.repeats} turns of {a.steps}); torch's default is {default}")
        print(f"{'spec':<16}{'optimizer':<11}{'params':>9}  {'for-loop':>9}{'foreach':>9}{'fused':>9}  "
              f"{'default / fused':>15}")
        for name in a.specs:
            r = measure(name, torch.device(dev), a.steps, a.repeats)
            ms = r["ms"]
            cells = "".join(f"{ms[k]:>9.3f}" if k in ms else f"{'—':>9}" for k in IMPLS)
            ratio = f"{ms[default] / ms['fused']:.2f}×" if "fused" in ms and default in ms else "—"
            print(f"{name:<16}{r['optimizer']:<11}{r['params']:>9,}  {cells}  {ratio:>15}")
            for k, why in r["failed"].items():
                print(f"{'':<16}{k}: {why}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
