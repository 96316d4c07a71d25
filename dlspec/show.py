"""`dlspec show`: what each layer makes of one input — pictures and statistics, without writing matplotlib code.

For one sample (from the spec's data set, `--sample K`; or a file, `--npy PATH` / `--image PATH`, prepared as
the data set prepares its samples) the model runs once with a forward hook on each of its top-level layers.
Every layer gets a line: its output shape, mean, std, the share of exact zeros (dead ReLUs) and, after a
Sigmoid or Tanh, the share of saturated values (within 0.01 of the bounds).  The chosen layers (`--layers`;
default: every convolution, pooling and recurrent layer) get a PNG each:

    (C, H, W) maps       a grid of the C feature maps, each labelled with its channel and min/max
    (T, F) or (C, L)     one image: steps (or positions) across, features (or channels) down
    (F,) features        a bar strip

`--weights` also draws the first convolution's kernels.  The pictures go into one folder (`--out`; default
show/NAME, NAME the spec's name as one file-name part), named `NN_layer.png` in layer order, all of them or
none: each is drawn in memory and written beside its place, and they are moved in once every one is written
(a full disk leaves the folder as it was).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .safeio import shown

MAX_MAPS = 64  # feature maps drawn per layer (the first ones)
SATURATED = 0.01  # a Sigmoid output below 0.01 or above 0.99, a Tanh one beyond ±0.99


class ShowError(Exception):
    """A bad --sample, --npy, --image or --layers: one line for the user."""


@dataclass
class LayerOutput:
    index: int
    name: str  # the module's name in the built model (conv1, pool1, ...)
    kind: str  # its class (Conv2d, ...)
    value: Any  # the output for the one sample, without the batch dimension (a CPU float tensor)

    def stats(self) -> dict[str, float]:
        v = self.value.double()
        out = {"mean": float(v.mean()), "std": float(v.std(unbiased=False)) if v.numel() > 1 else 0.0,
               "zeros": float((v == 0).double().mean())}
        if self.kind == "Sigmoid":
            out["saturated"] = float(((v < SATURATED) | (v > 1 - SATURATED)).double().mean())
        elif self.kind in ("Tanh", "Hardtanh"):
            out["saturated"] = float((v.abs() > 1 - SATURATED).double().mean())
        return out


def is_default(module: Any) -> bool:
    """Convolutions, poolings and recurrent layers: the ones whose outputs are pictures worth looking at."""
    from torch import nn

    return isinstance(module, (nn.modules.conv._ConvNd, nn.RNNBase)) or "Pool" in type(module).__name__ \
        or type(module).__name__ in ("RNN", "LSTM", "GRU")


def run_layers(model: Any, x: Any) -> list[LayerOutput]:
    """One forward pass of x (one sample with its batch dimension) with a hook on each top-level layer."""
    import torch

    outs: list[LayerOutput] = []
    hooks = []
    for i, (name, m) in enumerate(model.named_children()):
        def hook(mod: Any, args: Any, out: Any, i: int = i, name: str = name) -> None:
            t = out[0] if isinstance(out, (tuple, list)) else out
            if isinstance(t, torch.Tensor):
                outs.append(LayerOutput(i, name, type(mod).__name__, t.detach()[0].float().cpu()))
        hooks.append(m.register_forward_hook(hook))
    try:
        model.eval()
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return outs


def pick(outs: list[LayerOutput], model: Any, wanted: str | None) -> list[LayerOutput]:
    """The layers to draw: `wanted` is a comma-separated list of indices or module names (each layer once, in
    the order given), or `all`.  A list that names no layer is refused, as is a name that is no layer's."""
    if wanted is None:
        modules = dict(model.named_children())
        chosen = [o for o in outs if is_default(modules[o.name])]
        return chosen or outs
    if wanted.strip() == "all":
        return outs
    by_name = {o.name: o for o in outs}
    picked: dict[int, LayerOutput] = {}
    for w in (p.strip() for p in wanted.split(",") if p.strip()):
        if w.isdigit() and int(w) < len(outs):
            o = outs[int(w)]
        elif w in by_name:
            o = by_name[w]
        else:
            raise ShowError(f"--layers: no layer '{shown(w)}'; {_choices(outs)}")
        picked.setdefault(o.index, o)
    if not picked:
        raise ShowError(f"--layers {shown(wanted)!r} names no layer; {_choices(outs)}")
    return list(picked.values())


def _choices(outs: list[LayerOutput]) -> str:
    """What --layers can pick, for its refusals."""
    return (f"the layers are 0 .. {len(outs) - 1}: " + ", ".join(o.name for o in outs) + ", or `all`") if outs \
        else "the model has no layers to draw"


def load_npy(path: str, shape: tuple[int, ...], dtype: str, model: Any = None, bundle: Any = None) -> Any:
    """A .npy array of one sample of `shape` (or a batch of one), read by readers.read_npy: its header checked
    (shape, size) before its data is read.  Floats must be finite; token ids (dtype long) whole numbers in the
    range the model reads (inputs.id_range of `model` and the data set `bundle`)."""
    import numpy as np
    import torch

    from .inputs import id_range
    from .readers import ArrayHeader, ReadError, check_finite, check_ids, read_npy
    from .safeio import shown

    def accept(h: ArrayHeader) -> None:
        if h.shape in (tuple(shape), (1, *shape)):
            return
        if h.shape[:1] == (0,) and h.shape[1:] == tuple(shape):
            raise ReadError(f"{shown(path)} holds no sample: its shape is {list(h.shape)}")
        raise ReadError(f"{shown(path)} holds an array of shape {list(h.shape)}, but the model reads samples of shape "
                        f"{list(shape)}")

    try:
        a = read_npy(path, accept)
        if a.shape != tuple(shape):
            a = a[0]
        if dtype == "long":
            vocab, what = (id_range(model, bundle) if model is not None else None) or (None, "")
            check_ids(a, shown(path), vocab, what)
            return torch.from_numpy(a.astype(np.int64))
        check_finite(a, shown(path))
    except ReadError as e:
        raise ShowError(str(e)) from None
    return torch.from_numpy(a.astype(np.float32))


def load_image(path: str, shape: tuple[int, ...], scale: float, mean: list[float] | None, std: list[float] | None) -> Any:
    """An image file as a sample of `shape` (C, H, W): gray or RGB as C says, resized to H×W, the data set's
    scaling and normalisation (readers.read_image: the pixel bound, 16-bit images at their real scale)."""
    import torch

    from .readers import ReadError, read_image

    if len(shape) != 3 or shape[0] not in (1, 3):
        raise ShowError(f"--image needs a model that reads images (C, H, W) with C 1 or 3; this one reads {list(shape)}")
    try:
        a = read_image(path, shape[0], (shape[1], shape[2]))
    except ReadError as e:
        raise ShowError(str(e)) from None
    return normalised(torch.from_numpy(a.transpose(2, 0, 1).copy()) / scale, mean, std)


def normalised(t: Any, mean: list[float] | None, std: list[float] | None) -> Any:
    """A sample (channels first) with a data set's per-channel normalisation (as it is without one)."""
    import torch

    if mean is None or std is None:
        return t
    view = (-1,) + (1,) * (t.dim() - 1)
    return (t - torch.tensor(mean, dtype=torch.float32).reshape(view)) / torch.tensor(std, dtype=torch.float32).reshape(view)


def draw(o: LayerOutput, title: str) -> tuple[bytes, str]:
    """The PNG of one layer's output (its bytes) and a phrase saying what it shows."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from .pictures import png_bytes, title_text

    v = o.value
    if v.dim() == 3:  # (C, H, W) feature maps
        c = min(v.shape[0], MAX_MAPS)
        cols = min(c, 8 if c > 20 else 5 if c > 12 else 4 if c > 4 else c)
        rows = math.ceil(c / cols)
        fig = Figure(figsize=(1.7 * cols, 1.8 * rows + 0.5))
        FigureCanvasAgg(fig)
        axes = fig.subplots(rows, cols, squeeze=False)
        for k in range(rows * cols):
            ax = axes[k // cols][k % cols]
            ax.set_xticks([])
            ax.set_yticks([])
            if k >= c:
                ax.axis("off")
                continue
            m = v[k].numpy()
            ax.imshow(m, cmap="viridis", interpolation="nearest")
            ax.set_title(f"{k}: {m.min():.2g}…{m.max():.2g}", fontsize=7)
        what = f"{c} of {v.shape[0]} feature maps" if c < v.shape[0] else f"{c} feature maps"
    elif v.dim() == 2:  # (T, F) steps × features, or (C, L) channels × positions
        fig = Figure(figsize=(8, 4))
        FigureCanvasAgg(fig)
        ax = fig.subplots()
        seq = o.kind in ("RNN", "LSTM", "GRU") or not o.kind.startswith(("Conv", "MaxPool1", "AvgPool1"))
        img = v.numpy().T if seq else v.numpy()
        im = ax.imshow(img, aspect="auto", cmap="viridis", interpolation="nearest")
        ax.set_xlabel("step" if seq else "position")
        ax.set_ylabel("feature" if seq else "channel")
        fig.colorbar(im, ax=ax)
        what = f"{v.shape[0]} steps × {v.shape[1]} features" if seq else f"{v.shape[0]} channels × {v.shape[1]} positions"
    else:  # (F,) or anything else, flattened
        flat = v.reshape(-1).numpy()
        fig = Figure(figsize=(8, 2.6))
        FigureCanvasAgg(fig)
        ax = fig.subplots()
        ax.bar(range(len(flat)), flat, width=1.0, color="tab:blue")
        ax.set_xlabel("feature")
        what = f"{len(flat)} activations"
    fig.suptitle(title_text(title), fontsize=9, parse_math=False)
    fig.tight_layout()
    return png_bytes(fig), what


def draw_kernels(model: Any, title: str) -> tuple[bytes, str] | None:
    """The first convolution's kernels as a grid (each out-channel's kernel; RGB for 3 input channels, else
    the mean over the input channels): the PNG's bytes and what it shows.  None when the model has no 2-d
    convolution."""
    from torch import nn

    from .pictures import image_grid, png_bytes

    conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    if conv is None:
        return None
    w = conv.weight.detach().float().cpu()
    k = w if w.shape[1] in (1, 3) else w.mean(1, keepdim=True)
    k = k[:MAX_MAPS]
    return png_bytes(image_grid(k, columns=min(8, len(k)), title=title)), f"{len(k)} kernels of {w.shape[2]}×{w.shape[3]}"


def stats_table(outs: list[LayerOutput]) -> list[str]:
    """A line per layer: its output shape and statistics."""
    lines = [f"{'#':>3}  {'layer':<26} {'output':<16} {'mean':>9} {'std':>9} {'zeros':>7} {'saturated':>9}"]
    for o in outs:
        st = o.stats()
        sat = f"{st['saturated']:.1%}" if "saturated" in st else ""
        shape = "(" + ", ".join(str(d) for d in o.value.shape) + ")"
        lines.append(f"{o.index:>3}  {f'{o.name} ({o.kind})':<26.26} {shape:<16} {st['mean']:>9.4f} {st['std']:>9.4f} "
                     f"{st['zeros']:>7.1%} {sat:>9}")
    return lines
