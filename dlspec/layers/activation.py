"""Every torch.nn activation (element-wise ones keep the shape; GLU halves a dimension)."""

from __future__ import annotations

from typing import Any

from .. import codes, dims
from ..infer import Ctx
from ..registry import TT, Arg, Bool, Choice, ErrorExample, Example, Float, Int, LayerType, Optional_, register

_INPLACE = {"inplace": Arg(Bool(), False)}


# two arguments that bound a range, as torch's constructors check them: (low, high, may they be equal)
_RANGES: dict[str, tuple[str, str, bool]] = {"Hardtanh": ("min_val", "max_val", False),
                                             "RReLU": ("lower", "upper", True)}


def _elementwise(c: Ctx, x: TT) -> TT:
    c.float_input()
    rng = _RANGES.get(c.item.entry.name)
    if rng is None:
        return x
    low, high, equal = rng
    if (c.a[low] > c.a[high] or (not equal and c.a[low] == c.a[high])):
        raise c.fail(codes.INVALID_ARGUMENT, f"{c.item.entry.name} {low} ({c.a[low]:g}) must be "
                     f"{'at most' if equal else 'less than'} {high} ({c.a[high]:g})",
                     arg=low if low in c.item.written else high,
                     help=f"give {low} < {high}" if not equal else f"give {low} ≤ {high}", recover=x)
    return x


_SIMPLE: dict[str, dict[str, Arg]] = {
    "ReLU": _INPLACE, "ReLU6": _INPLACE, "SELU": _INPLACE, "SiLU": _INPLACE, "Mish": _INPLACE,
    "Hardsigmoid": _INPLACE, "Hardswish": _INPLACE,
    "Sigmoid": {}, "Tanh": {}, "LogSigmoid": {}, "Softsign": {}, "Tanhshrink": {},
    "ELU": {"alpha": Arg(Float(), 1.0), **_INPLACE},
    "CELU": {"alpha": Arg(Float(0.0, open_min=True), 1.0), **_INPLACE},
    "LeakyReLU": {"negative_slope": Arg(Float(), 0.01), **_INPLACE},
    "Hardshrink": {"lambd": Arg(Float(0.0), 0.5)},
    "Softshrink": {"lambd": Arg(Float(0.0), 0.5)},
    "Hardtanh": {"min_val": Arg(Float(), -1.0), "max_val": Arg(Float(), 1.0), **_INPLACE},
    "RReLU": {"lower": Arg(Float(), 1.0 / 8), "upper": Arg(Float(), 1.0 / 3), **_INPLACE},
    "GELU": {"approximate": Arg(Choice("none", "tanh"), "none")},
    "Softplus": {"beta": Arg(Float(), 1.0), "threshold": Arg(Float(), 20.0)},
    "Threshold": {"threshold": Arg(Float()), "value": Arg(Float()), **_INPLACE},
}

_SIMPLE_EX: dict[str, dict[str, Any]] = {"LeakyReLU": {"negative_slope": 0.2}, "ELU": {"alpha": 0.5},
                                         "Threshold": {"threshold": 0.1, "value": 0.0}, "GELU": {"approximate": "tanh"},
                                         "Hardtanh": {"min_val": -2.0, "max_val": 2.0}, "Softplus": {"beta": 2}}

for _name, _args in _SIMPLE.items():
    register(LayerType(name=_name, family="activation", args=dict(_args), infer=_elementwise,
                       keeps_channels=True, per_step=True,
                       positional=next((a for a in _args if a != "inplace"), None) if _name != "Threshold" else None,
                       examples=[Example(_SIMPLE_EX.get(_name, {}), (3, 4)), Example({}, (5,))
                                 if _name != "Threshold" else Example({"threshold": 0.0, "value": -1.0}, (5,))],
                       errors=[ErrorExample({_RANGES[_name][0]: 1.0, _RANGES[_name][1]: 0.5}, (4,), codes.INVALID_ARGUMENT)]
                       if _name in _RANGES else []))


def _prelu(c: Ctx, x: TT) -> TT:
    c.float_input()
    n = c.a["num_parameters"]
    if n != 1:
        ch = x.shape[0] if x.shape else 1
        if isinstance(ch, int) and ch != n:
            c.error(codes.SHAPE_MISMATCH, f"PReLU num_parameters {n} must be 1 or the number of channels ({ch})",
                    arg="num_parameters", notes=[c.origin()], help=f"write num_parameters: {ch}, or 1")
    return x


register(LayerType(
    name="PReLU", family="activation", keeps_channels=True,
    per_step=lambda a: a["num_parameters"] == 1,  # else one weight per channel: dim 1, the steps of (N, T, F)
    errors=[ErrorExample({"num_parameters": 3}, (4, 5), codes.SHAPE_MISMATCH)],
    args={"num_parameters": Arg(Int(1), 1), "init": Arg(Float(), 0.25)},
    infer=_prelu, params=lambda a: a["num_parameters"],
    examples=[Example({}, (3, 4)), Example({"num_parameters": 3}, (3, 5, 5)), Example({"num_parameters": 3}, (3, 5))],
))


def _dim_arg(c: Ctx, x: TT, default_for_none: bool = True) -> int:
    r = len(x.shape) + 1
    d = c.a.get("dim")
    name = c.item.entry.name
    if d is None:
        implicit = 0 if r in (0, 1, 3) else 1
        batch = " — the batch!" if implicit == 0 else ""
        c.warn(codes.IMPLICIT_DIM, f"{name} without dim: torch picks dim {implicit} for a {r}-D input "
               f"{dims.fmt_shape(x.shape)}{batch}", help=f"write `- {name}: {{dim: -1}}` (or the dim you mean)")
        return implicit
    nd = d + r if d < 0 else d
    if not 0 <= nd < r:
        raise c.fail(codes.RANK, f"{name} dim {d} is out of range for a {r}-D input {dims.fmt_shape(x.shape)}", arg="dim",
                     help=f"use a dim in [1, {r - 1}] or [-{r - 1}, -1]")
    if nd == 0:
        c.warn(codes.RANK, f"{name} dim {d} runs across the batch dimension N", arg="dim",
               help="use dim: -1 (the features) or dim: 1")
    return nd


def _softmax(c: Ctx, x: TT) -> TT:
    c.float_input()
    _dim_arg(c, x)
    return x


for _name in ("Softmax", "Softmin", "LogSoftmax"):
    register(LayerType(name=_name, family="activation", args={"dim": Arg(Optional_(Int()), None)}, infer=_softmax,
                       errors=[ErrorExample({"dim": 3}, (3, 4), codes.RANK)],
                       keeps_channels=True, per_step=lambda a: a["dim"] in (None, -1, 2),  # not over the steps of (N, T, F)
                       positional="dim",
                       examples=[Example({"dim": 1}, (10,)), Example({"dim": -1}, (3, 4)), Example({"dim": 1}, (3, 4))]))


def _softmax2d(c: Ctx, x: TT) -> TT:
    c.float_input()
    c.rank((3,), "channels-first 2d")
    return x


register(LayerType(name="Softmax2d", family="activation", args={}, infer=_softmax2d, keeps_channels=True,
                   examples=[Example({}, (3, 4, 4))]))


def _glu(c: Ctx, x: TT) -> TT:
    c.float_input()
    d = c.a["dim"]
    r = len(x.shape) + 1
    nd = d + r if d < 0 else d
    if not 1 <= nd < r:
        raise c.fail(codes.RANK, f"GLU dim {d} is out of range for {dims.fmt_shape(x.shape)}", arg="dim")
    size = x.shape[nd - 1]
    if isinstance(size, int) and size % 2:
        raise c.fail(codes.SHAPE_MISMATCH, f"GLU halves dimension {d}, which has odd size {size}", arg="dim",
                     notes=[c.origin()], help="give that dimension an even size")
    shp = list(x.shape)
    shp[nd - 1] = dims.floordiv(size, 2)
    return x.with_shape(tuple(shp))


register(LayerType(name="GLU", family="activation", args={"dim": Arg(Int(), -1)}, infer=_glu, positional="dim",
                   errors=[ErrorExample({"dim": -1}, (3, 5), codes.SHAPE_MISMATCH)],
                   per_step=lambda a: a["dim"] in (-1, 2),
                   examples=[Example({}, (3, 8)), Example({"dim": 1}, (4, 5))]))
