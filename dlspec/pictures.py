"""Pictures written into a run folder or by `dlspec predict` / `dlspec generate`: rows of images (inputs
above reconstructions, a grid of generated samples).  matplotlib's object API with the Agg canvas (no
pyplot); ImportError without matplotlib, which the callers turn into a note.

A title holds user text (a spec's name, a file name): it is drawn as it is (`parse_math=False`: a `$` is a
dollar sign, never mathtext that could fail to parse), with control characters escaped and at most
TITLE_MAX characters."""

from __future__ import annotations

import io
from typing import Any

from . import safeio

TITLE_MAX = 200  # characters of a picture's title (a spec's name may be far longer)


def title_text(text: str) -> str:
    """A title as drawn: control characters escaped, cut to TITLE_MAX characters with an ellipsis."""
    t = safeio.shown(text)
    return t if len(t) <= TITLE_MAX else t[:TITLE_MAX - 1] + "…"


def _as_image(t: Any, span: tuple[float, float] | None = None) -> Any:
    """A (C, H, W), (H, W) or (L,) float tensor as an (H, W) or (H, W, 3) array in 0..1 for imshow, scaled
    from `span` (clipped), or from the picture's own range (normalised data, tanh outputs and 0..1 pixels
    all show)."""
    import numpy as np

    a = t.detach().float().cpu().numpy()
    if a.ndim == 3 and a.shape[0] in (1, 3):
        a = a[0] if a.shape[0] == 1 else np.transpose(a, (1, 2, 0))
    elif a.ndim == 3:
        a = a[0]
    elif a.ndim == 1:
        side = int(round(len(a) ** 0.5))
        a = a.reshape(side, side) if side * side == len(a) else a[None, :]
    lo, hi = span if span is not None else (float(a.min()), float(a.max()))
    return np.clip((a - lo) / (hi - lo), 0, 1) if hi > lo else np.zeros_like(a)


def image_rows(rows: list[tuple[str, Any]], title: str = "", shared: bool = False,
               span: tuple[float, float] | None = None) -> Any:
    """One row per (label, batch of images); the images side by side.  shared: every picture on the first
    row's value range (a reconstruction shows as bright as it really is, next to its input)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n = max(len(b) for _, b in rows)
    if span is None and shared and len(rows[0][1]):
        span = (float(rows[0][1].min()), float(rows[0][1].max()))
    fig = Figure(figsize=(1.0 * n + 0.6, 1.0 * len(rows) + (0.45 if title else 0.05)))
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(rows), n, squeeze=False)
    for r, (label, batch) in enumerate(rows):
        for c in range(n):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(batch):
                img = _as_image(batch[c], span)
                ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
            else:
                ax.axis("off")
            if c == 0:
                ax.set_ylabel(label, fontsize=9, parse_math=False)
    if title:
        fig.suptitle(title_text(title), fontsize=10, parse_math=False)
    labelled = any(label for label, _ in rows)
    fig.subplots_adjust(left=0.08 if labelled else 0.01, right=0.99, bottom=0.01,
                        top=1 - 0.45 / fig.get_figheight() if title else 0.99, wspace=0.06, hspace=0.06)
    return fig


def image_grid(batch: Any, columns: int = 8, title: str = "", span: tuple[float, float] | None = None) -> Any:
    """The images of a batch in a grid of `columns`, on the value range `span` (default: each its own)."""
    rows = [("", batch[i:i + columns]) for i in range(0, len(batch), columns)]
    return image_rows(rows, title, span=span)


def png_bytes(fig: Any, dpi: int = 100) -> bytes:
    """The figure as a PNG file's bytes (drawn in memory: nothing is written until it is whole)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def save_figure(fig: Any, path: str, dpi: int = 100) -> None:
    """The figure as a PNG at path, whole or not at all (safeio.WriteError)."""
    safeio.write_atomic(path, png_bytes(fig, dpi))
