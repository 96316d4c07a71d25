"""Run folders: runs/<name>/<timestamp>/ with spec.yaml, metrics.csv, curves.png, checkpoint.pt, summary.json.

Checkpoints are written atomically (temp file + rename) and read with weights_only=True.
"""

from __future__ import annotations

import copy
import csv
import datetime as _dt
import hashlib
import json
import os
import platform
import re
import tempfile
from typing import Any

import yaml

# Options that do not change the training trajectory: a run may be resumed with them changed.
NOT_HASHED = (("name",), ("description",), ("train", "epochs"), ("train", "device"), ("train", "eval_every"),
              ("train", "checkpoint_every"), ("train", "eval_batch_size"), ("train", "early_stopping"),
              ("train", "channels_last"), ("train", "compile"), ("train", "cuda_graph"),
              ("train", "fused"))


def _strip(data: Any) -> Any:
    d = copy.deepcopy(data)
    for path in NOT_HASHED:
        node = d
        for p in path[:-1]:
            node = node.get(p) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(path[-1], None)
    return d


def plain(data: Any) -> Any:
    """A spec document with only JSON types (YAML dates, sets... as text): what a checkpoint stores, so
    that torch.load(weights_only=True) can read it back."""
    return json.loads(json.dumps(data, default=str))


def spec_hash(data: Any) -> str:
    text = json.dumps(_strip(data), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def diff(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted paths that differ between two spec documents, with old → new values."""
    if not prefix:
        old, new = _strip(plain(old)), _strip(plain(new))
    out: list[str] = []
    if isinstance(old, dict) and isinstance(new, dict):
        for k in list(old) + [k for k in new if k not in old]:
            p = f"{prefix}.{k}" if prefix else str(k)
            if k not in new:
                out.append(f"{p}: removed (was {old[k]!r})")
            elif k not in old:
                out.append(f"{p}: added ({new[k]!r})")
            else:
                out += diff(old[k], new[k], p)
    elif isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for i, (a, b) in enumerate(zip(old, new, strict=True)):
            out += diff(a, b, f"{prefix}.{i}")
    elif old != new:
        out.append(f"{prefix or '(spec)'}: {old!r} → {new!r}")
    return out


def safe_name(name: str) -> str:
    """A spec name as one folder name: no separators, no '..', nothing hidden."""
    return re.sub(r"[^\w.+-]+", "_", name).strip("._") or "run"


def new_run_dir(base: str, name: str) -> str:
    """runs/<name>/<timestamp>[-n]: a new folder, also when two runs start in the same second."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    parent = os.path.join(base, safe_name(name))
    os.makedirs(parent, exist_ok=True)
    n = 1
    while True:
        path = os.path.join(parent, stamp if n == 1 else f"{stamp}-{n}")
        try:
            os.mkdir(path)
            return path
        except FileExistsError:
            n += 1


def write_spec(run_dir: str, data: Any, source_path: str, overrides: list[str]) -> None:
    header = f"# resolved spec of this run (from {source_path}" + (f", with {' '.join(overrides)}" if overrides else "") + ")\n"
    with open(os.path.join(run_dir, "spec.yaml"), "w", encoding="utf-8") as f:
        f.write(header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True))


def atomic_save(obj: Any, path: str) -> None:
    import torch

    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".checkpoint-", suffix=".tmp", dir=d)
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def load_checkpoint(path: str) -> dict[str, Any]:
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)


class MetricsLog:
    def __init__(self, run_dir: str, history: list[dict[str, Any]] | None = None):
        self.path = os.path.join(run_dir, "metrics.csv")
        self.rows: list[dict[str, Any]] = list(history or [])

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        self.write()

    def write(self) -> None:
        cols: list[str] = []
        for r in self.rows:
            cols += [k for k in r if k not in cols]
        order = ("epoch", "train_", "val_", "test_")  # then lr and timings: the same columns whatever eval_every
        cols.sort(key=lambda c: next((i for i, p in enumerate(order) if c.startswith(p)), len(order)))
        with open(self.path, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=cols)
            w.writeheader()
            for r in self.rows:
                w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})


def plot_curves(run_dir: str, rows: list[dict[str, Any]]) -> str | None:
    """curves.png: loss and metrics per epoch.  Returns a note when matplotlib is missing."""
    try:  # the object API with the Agg canvas: no pyplot (whose import alone took 0.5 s of a 4 s quick start)
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return "curves.png not written: matplotlib is not installed (pip install 'dlspec[plot]')"
    if not rows:
        return None
    epochs = [r["epoch"] for r in rows]
    metrics = sorted({k.split("_", 1)[1] for r in rows for k in r if k.startswith(("train_", "val_", "test_"))})
    metrics = ["loss"] + [m for m in metrics if m != "loss"]
    fig = Figure(figsize=(4.5 * len(metrics), 3.6))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(metrics), squeeze=False)
    for ax, m in zip(axes[0], metrics, strict=True):
        for split, style in (("train", "-o"), ("val", "-s"), ("test", "-^")):
            pts = [(e, r[f"{split}_{m}"]) for e, r in zip(epochs, rows, strict=True) if r.get(f"{split}_{m}") not in (None, "")]
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], style, label=split, markersize=3)
        ax.set_title(m)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(run_dir, "curves.png"), dpi=110)
    return None


def cpu_model() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo), else what platform knows."""
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return name


def versions() -> dict[str, str]:
    import numpy
    import torch

    from . import __version__

    v = {"dlspec": __version__, "torch": torch.__version__, "numpy": numpy.__version__,
         "python": platform.python_version()}
    try:
        import torchvision  # noqa: F401

        v["torchvision"] = torchvision.__version__
    except Exception:  # noqa: BLE001 - a broken torchvision must not stop a run
        pass
    return v


def write_summary(run_dir: str, summary: dict[str, Any]) -> None:
    path = os.path.join(run_dir, "summary.json")
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2, default=str)
    os.replace(tmp, path)
