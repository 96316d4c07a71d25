"""Generated data sets: no files, no network, the same arrays for the same seed.

* ``sine_series``: the noisy two-sine time series of the common "forecast the next value" teaching
  example (Géron, *Hands-On Machine Learning*, chapter 15, ``generate_time_series``), regression.
* ``shapes``: 28×28 grayscale images of ten geometric glyphs, an offline MNIST stand-in, classification.
"""

from __future__ import annotations

import time
from typing import Any

from ..registry import Arg, Bool, Float, Int
from .base import IMAGE_ALIASES, Bundle, DataFacts, DatasetType, Seed, labelled_images, register
from .common import Normalize, check_memory, make_split, normalize_arrays, resolve, take_subset

# the memory generating a set takes at its peak, per value of the arrays it gives (measured: float64 working
# arrays for the series, a class's coordinate grids for the glyphs): refused beyond the memory available
SINE_BYTES_PER_VALUE = 32
SHAPES_BYTES_PER_PIXEL = 16

# --- sine_series --------------------------------------------------------------------------------------


def sine_series_values(n_series: int, n_steps: int = 50, seed: int = 42) -> Any:
    """The series as a float32 numpy array (n_series, n_steps + 1); the last column is the target.

    Exactly this generator (so a test, or anyone, can recompute it):

        rs = numpy.random.RandomState(seed)
        f1, f2, o1, o2 = rs.rand(4, n_series, 1)               # U(0, 1), one per series
        t = numpy.linspace(0, 1, n_steps + 1)
        s = 0.5 * sin((t - o1) * (10 * f1 + 10))               # float64 throughout
        s += 0.2 * sin((t - o2) * (20 * f2 + 20))
        s += 0.1 * (rs.rand(n_series, n_steps + 1) - 0.5)      # u ~ U(0, 1) per step
        return s.astype(float32)

    numpy's legacy RandomState is used on purpose: with seed 42 and 10000 series these are the very
    arrays of Géron's notebook (``np.random.seed(42); generate_time_series(10000, 51)``), so its
    numbers (naive last-value MSE ≈ 0.020 on the validation part) carry over.
    """
    import numpy as np

    rs = np.random.RandomState(seed)
    f1, f2, o1, o2 = rs.rand(4, n_series, 1)
    t = np.linspace(0, 1, n_steps + 1)
    s = 0.5 * np.sin((t - o1) * (f1 * 10 + 10))
    s += 0.2 * np.sin((t - o2) * (f2 * 20 + 20))
    s += 0.1 * (rs.rand(n_series, n_steps + 1) - 0.5)
    return s.astype(np.float32)


def _load_sine(args: dict[str, Any], root: str) -> Bundle:
    import numpy as np

    t0 = time.perf_counter()
    a = resolve("sine_series", args)
    n_train, n_valid, n_test, steps = a["n_train"], a["n_valid"], a["n_test"], a["n_steps"]
    values = (n_train + n_valid + n_test) * (steps + 1)
    check_memory("sine_series", SINE_BYTES_PER_VALUE * values,
                 f"{n_train + n_valid + n_test:,} series of {steps + 1:,} values ({values:,} values, "
                 f"{SINE_BYTES_PER_VALUE} bytes each while they are made)", "n_train",
                 "use fewer or shorter series (n_train, n_valid, n_test, n_steps)")
    s = sine_series_values(n_train + n_valid + n_test, steps, a["seed"])
    x, y = s[:, :steps, None], s[:, steps:]  # (N, T, 1), (N, 1)
    cut = n_train + n_valid if a["merge_valid"] else n_train
    parts = {"train": (x[:cut], y[:cut]), "valid": (x[n_train:n_train + n_valid], y[n_train:n_train + n_valid]),
             "test": (x[n_train + n_valid:], y[n_train + n_valid:])}

    def naive(part: str) -> float | None:
        px, py = parts[part]
        return float(np.mean((px[:, -1, 0].astype(np.float64) - py[:, 0]) ** 2)) if len(px) else None

    info = {"series": len(s), "n_steps": steps, "seed": a["seed"],
            "train_series": [0, cut], "valid_series": [n_train, n_train + n_valid], "test_series": [n_train + n_valid,
                                                                                                len(s)],
            "valid_in_train": a["merge_valid"],
            "naive_mse_test": naive("test"), "naive_mse_valid": naive("valid"),
            "naive": "predict the last value of the window: mean((x[:, -1, 0] - y[:, 0]) ** 2)"}
    (xtr, ytr), (xte, yte) = parts["train"], parts["test"]
    xtr, ytr, xte, yte = take_subset("sine_series", xtr, ytr, xte, yte, a["subset"], a["seed"])
    if (a["subset"] or {}).get("test") is not None:
        info["naive_mse_test_subset"] = float(np.mean((xte[:, -1, 0].astype(np.float64) - yte[:, 0]) ** 2))
    info.update(subset=a["subset"], seconds=round(time.perf_counter() - t0, 3))
    return Bundle("sine_series", make_split(xtr, ytr), make_split(xte, yte), task="regression", info=info)


register(DatasetType(
    "sine_series",
    {
        "n_steps": Arg(Int(1), 50, doc="time steps per input window; the target is the next value"),
        "n_train": Arg(Int(1), 7000, doc="series 0 .. n_train-1 are the training split"),
        "n_valid": Arg(Int(0), 2000, doc="the next n_valid series: Géron's validation part (left out unless "
                                         "merge_valid; the trainer's val_split holds out its own)"),
        "n_test": Arg(Int(1), 1000, doc="the last n_test series are the test split"),
        "merge_valid": Arg(Bool(), False, doc="append the validation part to the training split"),
        "seed": Seed(42, doc="numpy RandomState seed (42: Géron's arrays), also for subset (the data's own "
                                             "seed; train.seed does not change it)"),
    },
    _load_sine,
    facts=lambda a: DataFacts("sine_series", (a["n_steps"], 1), "float", (1,), "float", "regression", None, False),
    doc="noisy sum of two sines, 50 steps → next value (regression); x (N, 50, 1), y (N, 1); "
        "info has the naive last-value MSE of the test split"))


# --- shapes -------------------------------------------------------------------------------------------

SHAPE_CLASSES = ["disk", "ring", "square", "triangle", "plus", "cross", "L", "T", "equals", "dots"]


def _seg(u: Any, v: Any, ax: float, ay: float, bx: float, by: float) -> Any:
    """Distance from the points (u, v) to the segment a-b."""
    import numpy as np

    dx, dy = bx - ax, by - ay
    t = np.clip(((u - ax) * dx + (v - ay) * dy) * (1.0 / (dx * dx + dy * dy)), 0.0, 1.0)
    return np.hypot(u - ax - t * dx, v - ay - t * dy)


def _glyph(k: int, u: Any, v: Any) -> tuple[str, Any]:
    """Class k's glyph in glyph coordinates (u right, v down, the glyph within about [-1, 1]²):
    ("fill", signed distance to the outline) or ("stroke", distance to the centre line)."""
    import numpy as np

    if k == 0:  # disk
        return "fill", np.hypot(u, v) - 0.85
    if k == 1:  # ring
        return "stroke", np.abs(np.hypot(u, v) - 0.8)
    if k == 2:  # square outline
        return "stroke", np.abs(np.maximum(np.abs(u), np.abs(v)) - 0.7)
    if k == 3:  # triangle, apex up, centroid at the origin
        return "fill", np.maximum(np.maximum(v, 0.866 * u - 0.5 * v), -0.866 * u - 0.5 * v) - 0.5
    segments = {
        4: [(-0.9, 0, 0.9, 0), (0, -0.9, 0, 0.9)],  # plus
        5: [(-0.7, -0.7, 0.7, 0.7), (-0.7, 0.7, 0.7, -0.7)],  # cross
        6: [(-0.55, -0.9, -0.55, 0.85), (-0.55, 0.85, 0.75, 0.85)],  # L
        7: [(-0.85, -0.8, 0.85, -0.8), (0, -0.8, 0, 0.9)],  # T
        8: [(-0.85, -0.4, 0.85, -0.4), (-0.85, 0.4, 0.85, 0.4)],  # equals
    }
    if k in segments:
        return "stroke", np.minimum(*(_seg(u, v, *s) for s in segments[k]))
    # dots: four dots at the corners of a square
    d = [np.hypot(u - cx, v - cy) for cx in (-0.6, 0.6) for cy in (-0.6, 0.6)]
    return "fill", np.minimum(np.minimum(d[0], d[1]), np.minimum(d[2], d[3])) - 0.27


def shapes_images(n: int, size: int = 28, noise: float = 0.1, seed: int = 0, stream: int = 0) -> tuple[Any, Any]:
    """n images (n, size, size) float32 in [0, 1] and their labels (n,) int64, balanced (n % 10 aside).

    Each glyph gets a random half-size (7 to 11 px at 28×28), rotation (±15°, so plus and cross, or
    the bars of `equals`, stay apart), stroke width (1.8 to 3.2 px), position (inside the image), ink
    (0.75 to 1), then gaussian noise of std `noise`, clipped to [0, 1].  Edges are anti-aliased from
    the distance fields; everything is vectorised numpy over (n, size, size) coordinate grids.
    """
    import numpy as np

    rng = np.random.default_rng([seed, stream])
    y = rng.permutation(np.arange(n) % len(SHAPE_CLASSES)).astype(np.int64)
    s = size / 28.0
    r = rng.uniform(7.0, 11.0, n) * s
    theta = np.deg2rad(rng.uniform(-15.0, 15.0, n))
    width = rng.uniform(1.8, 3.2, n) * s
    margin = r * 1.15 + 0.5
    cx = margin + rng.random(n) * np.maximum(size - 1 - 2 * margin, 0)
    cy = margin + rng.random(n) * np.maximum(size - 1 - 2 * margin, 0)
    ink = rng.uniform(0.75, 1.0, n).astype(np.float32)
    grid = np.arange(size, dtype=np.float32)
    img = np.empty((n, size, size), dtype=np.float32)
    for k in range(len(SHAPE_CLASSES)):
        idx = np.flatnonzero(y == k)
        if not len(idx):
            continue
        rr, c, sn, px, py, w = (p[idx].astype(np.float32)[:, None, None]
                                for p in (r, np.cos(theta), np.sin(theta), cx, cy, width))
        dx = grid[None, None, :] - px
        dy = grid[None, :, None] - py
        u = (dx * c + dy * sn) / rr
        v = (dy * c - dx * sn) / rr
        kind, dist = _glyph(k, u, v)
        dist *= rr  # back to pixels
        edge = 0.5 - dist if kind == "fill" else 0.5 + w / 2 - dist
        img[idx] = np.clip(edge, 0.0, 1.0)
    img *= ink[:, None, None]
    if noise > 0:
        img += rng.standard_normal(img.shape, dtype=np.float32) * np.float32(noise)
        np.clip(img, 0.0, 1.0, out=img)
    return img, y


def _load_shapes(args: dict[str, Any], root: str) -> Bundle:
    t0 = time.perf_counter()
    a = resolve("shapes", args)
    n_train, n_test = a["n_train"], a["n_test"]
    pixels = (n_train + n_test) * a["size"] ** 2
    check_memory("shapes", SHAPES_BYTES_PER_PIXEL * pixels,
                 f"{n_train + n_test:,} images of {a['size']}×{a['size']} ({pixels:,} pixels, "
                 f"{SHAPES_BYTES_PER_PIXEL} bytes each while they are drawn)", "size" if a["size"] > 256 else "n_train",
                 "use fewer images (n_train, n_test) or a smaller size")
    # a subset of a generated set: the first N after the seeded shuffle, like every data set
    xtr, ytr = shapes_images(n_train, a["size"], a["noise"], a["seed"], stream=0)
    xte, yte = shapes_images(n_test, a["size"], a["noise"], a["seed"], stream=1)
    xtr, ytr, xte, yte = take_subset("shapes", xtr, ytr, xte, yte, a["subset"], a["seed"])
    xtr, xte = xtr[:, None], xte[:, None]
    norm = normalize_arrays("shapes", xtr, xte, a["normalize"], ((0.5,), (0.5,)))
    return Bundle("shapes", make_split(xtr, ytr, aliases=IMAGE_ALIASES), make_split(xte, yte, aliases=IMAGE_ALIASES),
                  task="classification",
                  num_classes=len(SHAPE_CLASSES), classes=list(SHAPE_CLASSES),
                  info={"size": a["size"], "noise": a["noise"],
                        "seed": a["seed"], "normalize": norm, "subset": a["subset"],
                        "seconds": round(time.perf_counter() - t0, 3)})


register(DatasetType(
    "shapes",
    {
        "n_train": Arg(Int(10), 6000, doc="training images (balanced over the 10 classes)"),
        "n_test": Arg(Int(10), 1000, doc="test images (drawn from their own random stream)"),
        "size": Arg(Int(12), 28, doc="image height and width"),
        "noise": Arg(Float(0.0), 0.1, doc="std of the gaussian pixel noise"),
        "normalize": Arg(Normalize(), [[0.5], [0.5]], doc="[[means], [stds]], true (= 0.5, 0.5) or null ([0, 1])"),
        "seed": Seed(0, doc="seed of the generated images and of subset (the data's own seed; train.seed "
                                   "does not change it)"),
    },
    _load_shapes,
    facts=lambda a: DataFacts("shapes", (1, a["size"], a["size"]), "float", (), "long", "classification", 10, False,
                              labelled_images((1, a["size"], a["size"]))),
    doc="generated 28×28 grayscale glyphs, 10 classes (" + ", ".join(SHAPE_CLASSES) + "): an offline MNIST "
        "stand-in; x (N, 1, 28, 28)"))
