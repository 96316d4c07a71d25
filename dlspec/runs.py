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
              ("train", "restore_best"), ("train", "test_every"), ("train", "channels_last"), ("train", "compile"),
              ("train", "cuda_graph"), ("train", "fused"))


def may_change() -> str:
    """The train options a resume may change, as a phrase: `epochs, device, ... and fused`."""
    names = [p[-1] for p in NOT_HASHED if p[0] == "train"]
    return ", ".join(names[:-1]) + " and " + names[-1]


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


def plot_curves(run_dir: str, rows: list[dict[str, Any]], name: str | None = None,
                best: dict[str, Any] | None = None) -> str | None:
    """curves.png (see curves_figure).  Returns a note when matplotlib is missing."""
    try:
        fig = curves_figure(rows, title=run_title(name, run_dir), best=best)
    except ImportError:
        return "curves.png not written: matplotlib is not installed (pip install 'dlspec[plot]')"
    if fig is not None:
        fig.savefig(os.path.join(run_dir, "curves.png"), dpi=110)
    return None


def run_title(name: str | None, run_dir: str) -> str:
    """`LeNet · 2026-11-25 03:09:56`: the spec's name and the date-time of its run folder."""
    stamp = os.path.basename(os.path.normpath(run_dir))
    m = re.fullmatch(r"(\d{4})(\d\d)(\d\d)-(\d\d)(\d\d)(\d\d)(-\d+)?", stamp)
    when = f"{m[1]}-{m[2]}-{m[3]} {m[4]}:{m[5]}:{m[6]}" + (f" ({m[7][1:]})" if m[7] else "") if m else stamp
    return f"{name} · {when}" if name else when


def curves_figure(rows: list[dict[str, Any]], title: str = "", best: dict[str, Any] | None = None) -> Any:
    """Loss and each metric per epoch (train, val, test), a learning-rate panel when the lr changed, and a
    line at the best epoch of early stopping; None without rows.  ImportError without matplotlib."""
    # the object API with the Agg canvas: no pyplot (whose import alone took 0.5 s of a 4 s quick start)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    if not rows:
        return None
    epochs = [r["epoch"] for r in rows]
    metrics = sorted({k.split("_", 1)[1] for r in rows for k in r if k.startswith(("train_", "val_", "test_"))})
    metrics = ["loss"] + [m for m in metrics if m != "loss"]
    lrs = [(r["epoch"], float(r["lr"])) for r in rows if r.get("lr") not in (None, "")]
    with_lr = len({v for _, v in lrs}) > 1  # a scheduler changed it: one more panel
    panels = len(metrics) + with_lr
    fig = Figure(figsize=(4.5 * panels, 3.8))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, panels, squeeze=False)[0]
    for ax, m in zip(axes, metrics, strict=False):
        for split, style in (("train", "-o"), ("val", "-s"), ("test", "-^")):
            pts = [(e, r[f"{split}_{m}"]) for e, r in zip(epochs, rows, strict=True) if r.get(f"{split}_{m}") not in (None, "")]
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], style, label=split, markersize=3)
        ax.set_title(m)
    if with_lr:
        ax = axes[-1]
        ax.plot([e for e, _ in lrs], [v for _, v in lrs], "-o", color="tab:gray", markersize=3, label="lr")
        lo, hi = min(v for _, v in lrs), max(v for _, v in lrs)
        if lo > 0 and hi / lo > 20:  # a one-cycle or a long step decay: orders of magnitude
            ax.set_yscale("log")
        ax.set_title("learning rate")
    for ax in axes:
        if best is not None:
            ax.axvline(best["epoch"], color="tab:red", linestyle="--", linewidth=1,
                       label=f"best epoch {best['epoch']} ({best['metric']})")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


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
