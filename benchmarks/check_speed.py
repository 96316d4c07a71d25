"""How fast is `dlspec check`?  One run measures both targets of the issue, side by side on this machine.

    python benchmarks/check_speed.py            # prints the numbers and PASS/FAIL per target, exits 0
    python benchmarks/check_speed.py --strict   # exits 1 when a target fails
    python benchmarks/check_speed.py --quick    # fewer repetitions (a smoke test, not a measurement)

(a) start-up: the whole process `python -m dlspec check specs/lenet.yaml` against `python -c "import torch"`,
    run alternately (so both see the same machine state), best and median of --runs runs each; dlspec's
    bytecode is compiled first, as torch's is by pip.
    Target: the check takes under a tenth of the torch import (median / median < 0.10).
(b) scale: generated specs of 1,000 / 2,500 / 5,000 / 10,000 layers, each layer its own list entry (no
    `repeat:`), timed in-process (`dlspec.check(dlspec.load(path))`) and as a whole process.
    Targets: 10,000 layers check in under 2 s as a whole process, and the time grows linearly (the
    per-layer time at 10,000 layers is at most 1.5× the per-layer time at 1,000).
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RATIO_TARGET = 0.10
BIG_TARGET_S = 2.0
LINEAR_TARGET = 1.5
SIZES = (1000, 2500, 5000, 10000)

# LeNet-5 (LeCun et al. 1998) on 28×28 MNIST, used when specs/lenet.yaml is not there.
LENET = """\
name: LeNet5
input: [1, 28, 28]
layers:
  - Conv2d: {out_channels: 6, kernel_size: 5, padding: 2}
    expect: 6@28x28
  - Tanh
  - AvgPool2d: 2
  - Conv2d: {out_channels: 16, kernel_size: 5}
    expect: 16@10x10
  - Tanh
  - AvgPool2d: 2
    expect: 16@5x5
  - Flatten
  - Linear: {out_features: 120}
  - Tanh
  - Linear: {out_features: 84}
  - Tanh
  - Linear: {out_features: 10}
"""

# A cycle of 8 layers that starts and ends with the shape (4, 16), so it can be repeated without limit (and
# cut anywhere), and every layer does real work: inferred in_channels / num_features / in_features /
# normalized_shape, conv arithmetic, a flatten and a reshape.
BLOCK = [
    "Conv1d: {out_channels: 4, kernel_size: 3, padding: 1}",
    "BatchNorm1d",
    "ReLU",
    "Flatten",
    "Linear: {out_features: 64}",
    "LayerNorm",
    "GELU",
    "Reshape: [4, 16]",
]
BLOCK_LAYERS = len(BLOCK)


def big_spec(n: int) -> str:
    """A spec of exactly n layers, each written as its own list entry."""
    lines = [f"name: Generated{n}", f"description: {n} layers, one list entry each", "input: [4, 16]", "layers:"]
    lines += [f"  - {BLOCK[i % BLOCK_LAYERS]}" for i in range(n)]
    return "\n".join(lines) + "\n"


def run_process(cmd: list[str]) -> float:
    t = time.perf_counter()
    r = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    dt = time.perf_counter() - t
    if r.returncode != 0:
        sys.exit(f"check_speed: `{' '.join(cmd)}` exited {r.returncode}:\n{r.stderr.decode(errors='replace')}")
    return dt


def timed(fn: Callable[[], Any]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def machine() -> str:
    from dlspec.runs import cpu_model  # dlspec imports no torch at start-up

    cpu = cpu_model()
    try:  # not `import torch`: its objects would sit in this process's heap and slow every GC in (b)
        from importlib.metadata import version

        tv = version("torch")
    except ImportError:  # pragma: no cover
        tv = "not installed"
    import dlspec

    return (f"{os.cpu_count()} CPUs ({cpu}), {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}, torch {tv}, dlspec {dlspec.__version__}, "
            f"{time.strftime('%Y-%m-%d')}")


def startup(tmp: str, runs: int) -> tuple[bool, float]:
    """(target met, best whole-process time of the small check)."""
    lenet = os.path.join(ROOT, "specs", "lenet.yaml")
    shown = "specs/lenet.yaml"
    if not os.path.exists(lenet):
        lenet = os.path.join(tmp, "lenet.yaml")
        with open(lenet, "w") as f:
            f.write(LENET)
        shown = "LeNet-5 (built-in copy; specs/lenet.yaml not found)"
    py = sys.executable
    cmds = {
        "python -m dlspec check lenet": [py, "-m", "dlspec", "check", lenet],
        'python -c "import torch"': [py, "-c", "import torch"],
        'python -c "pass"': [py, "-c", "pass"],
    }
    for cmd in cmds.values():  # warm the file cache and the .pyc files
        run_process(cmd)
    times: dict[str, list[float]] = {k: [] for k in cmds}
    for _ in range(runs):  # alternate, so both see the same machine state
        for k, cmd in cmds.items():
            times[k].append(run_process(cmd))
    print(f"(a) start-up: whole processes, {runs} runs each, alternated; spec: {shown}")
    print(f"    {'command':32} {'best':>8} {'median':>8}")
    for k, ts in times.items():
        print(f"    {k:32} {min(ts) * 1000:6.0f} ms {statistics.median(ts) * 1000:6.0f} ms")
    d, t = times["python -m dlspec check lenet"], times['python -c "import torch"']
    ratio_med = statistics.median(d) / statistics.median(t)
    ratio_best = min(d) / min(t)
    ok = ratio_med < RATIO_TARGET
    print(f"    ratio dlspec check / import torch: median {ratio_med:.3f}, best {ratio_best:.3f}   "
          f"target < {RATIO_TARGET:.2f} (median): {verdict(ok)}")
    return ok, min(d)


def scale(tmp: str, runs: int, proc_runs: int, start: float) -> tuple[bool, bool]:
    """start: the whole-process time of a small check, subtracted to show the per-layer cost of a process."""
    import dlspec

    dlspec.check(dlspec.loads(LENET))  # first-call costs (schema validator) are start-up, measured in (a)
    kinds = ", ".join(b.split(":")[0] for b in BLOCK)
    print(f"\n(b) scale: generated specs (the {BLOCK_LAYERS} layers {kinds} over and over, each its own list "
          f"entry, no `repeat:`); best of {runs} in-process, of {proc_runs} as a process")
    print(f"    {'layers':>7} {'load':>8} {'check':>8} {'in-process':>10} {'µs/layer':>9} "
          f"{'process':>8} {'(process − start-up)/layer':>27}")
    per_layer: dict[int, float] = {}
    proc: dict[int, float] = {}
    for n in SIZES:
        path = os.path.join(tmp, f"generated_{n}.yaml")
        with open(path, "w") as f:
            f.write(big_spec(n))
        loads, checks, totals = [], [], []
        for _ in range(runs):
            spec = checked = None  # the previous run's objects are not this run's garbage to collect
            gc.collect()
            t0 = time.perf_counter()
            spec = dlspec.load(path)
            t1 = time.perf_counter()
            checked = dlspec.check(spec)
            t2 = time.perf_counter()
            loads.append(t1 - t0)
            checks.append(t2 - t1)
            totals.append(t2 - t0)
            if not checked.ok or len(checked.rows) != n:
                sys.exit(f"check_speed: the generated {n}-layer spec did not check cleanly: "
                         f"{[d.message for d in checked.diagnostics[:3]]}")
        p = min(run_process([sys.executable, "-m", "dlspec", "check", path]) for _ in range(proc_runs))
        best = min(totals)
        per_layer[n] = best / n
        proc[n] = p
        print(f"    {n:7,} {min(loads):7.3f}s {min(checks):7.3f}s {best:9.3f}s {best / n * 1e6:9.1f} "
              f"{p:7.3f}s {(p - start) / n * 1e6:24.1f} µs")
    big = max(SIZES)
    ok_big = proc[big] < BIG_TARGET_S
    growth = per_layer[big] / per_layer[min(SIZES)]
    small = min(SIZES)
    growth_proc = ((proc[big] - start) / big) / max((proc[small] - start) / small, 1e-9)
    ok_lin = growth <= LINEAR_TARGET
    print(f"    {big:,} layers, whole process: {proc[big]:.3f} s   target < {BIG_TARGET_S:.0f} s: {verdict(ok_big)}")
    print(f"    per-layer time, {big:,} vs {small:,} layers: in-process {growth:.2f}×, whole process less start-up "
          f"{growth_proc:.2f}×   target ≤ {LINEAR_TARGET}× (in-process): {verdict(ok_lin)}")
    return ok_big, ok_lin


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--strict", action="store_true", help="exit 1 when a target fails")
    ap.add_argument("--runs", type=int, default=7, help="repetitions of each start-up measurement (default 7)")
    ap.add_argument("--quick", action="store_true", help="2 runs of everything: a smoke test, not a measurement")
    args = ap.parse_args(argv)
    runs = 2 if args.quick else args.runs
    print("dlspec check speed on", machine(), "\n")
    # torch is imported from a pip install, whose bytecode is compiled; dlspec's is compiled here too, so that
    # both sides start the same way (with PYTHONDONTWRITEBYTECODE set, as on some machines, an editable
    # checkout would otherwise compile all of dlspec in every timed process: 85 ms became 135 ms here)
    import compileall

    compileall.compile_dir(os.path.join(ROOT, "dlspec"), quiet=1)
    with tempfile.TemporaryDirectory(prefix="dlspec-bench-") as tmp:
        ok_ratio, start = startup(tmp, runs)
        ok_big, ok_lin = scale(tmp, 2 if args.quick else 5, 2 if args.quick else 3, start)
    ok = ok_ratio and ok_big and ok_lin
    print(f"\nstart-up ratio {verdict(ok_ratio)} · 10k layers under {BIG_TARGET_S:.0f} s {verdict(ok_big)} · "
          f"linear growth {verdict(ok_lin)}")
    return 1 if args.strict and not ok else 0


if __name__ == "__main__":
    sys.exit(main())
