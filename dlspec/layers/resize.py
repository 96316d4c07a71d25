"""Upsample, PixelShuffle/PixelUnshuffle and the padding layers (Zero/Constant/Reflection/Replication/Circular)."""

from __future__ import annotations

import math
from typing import Any

from .. import codes, dims
from ..dims import Dim
from ..infer import Ctx
from ..registry import (
    TT,
    Arg,
    Bool,
    Choice,
    ErrorExample,
    Example,
    Float,
    FloatList,
    Int,
    IntList,
    IntTuple,
    KerasName,
    LayerType,
    OneOf,
    Optional_,
    register,
)

_MODE_RANK = {"linear": (2,), "bilinear": (3,), "bicubic": (3,), "trilinear": (4,),
              "nearest": (2, 3, 4), "nearest-exact": (2, 3, 4)}
_INTERP = ("linear", "bilinear", "bicubic", "trilinear")


def _upsample(c: Ctx, x: TT) -> TT:
    c.float_input()
    a = c.a
    mode = a["mode"]
    c.rank(_MODE_RANK[mode], f"{mode}-mode")
    n = len(x.shape) - 1
    if (a["size"] is None) == (a["scale_factor"] is None):
        if c.item.dropped:  # the one written was invalid, and said so: not "missing" as well
            raise c.fail(codes.NOT_KNOWN, "")
        raise c.fail(codes.INVALID_ARGUMENT, "Upsample needs exactly one of size and scale_factor",
                     arg="size" if a["size"] is not None else None, help="write `size: 32` or `scale_factor: 2`")
    if a["align_corners"] is not None and mode not in _INTERP:
        raise c.fail(codes.INVALID_ARGUMENT, f"Upsample align_corners only applies to the interpolating modes "
                     f"({', '.join(_INTERP)}), not '{mode}'", arg="align_corners", help="leave align_corners out")
    if a["size"] is not None and a["recompute_scale_factor"]:
        raise c.fail(codes.INVALID_ARGUMENT, "Upsample recompute_scale_factor applies to a scale_factor, not to an "
                     "explicit size", arg="recompute_scale_factor", help="leave recompute_scale_factor out")
    if a["size"] is not None:
        s = a["size"]
        out: tuple[Dim, ...] = tuple(s) if isinstance(s, (list, tuple)) else (s,) * n
        if len(out) != n:
            raise c.fail(codes.INVALID_ARGUMENT, f"Upsample size has {len(out)} entries for {n} spatial dimensions",
                         arg="size", help=f"give one size per spatial dimension ({n}), or a single number for all")
    else:
        f = a["scale_factor"]
        fs = tuple(f) if isinstance(f, (list, tuple)) else (f,) * n
        if len(fs) != n:
            raise c.fail(codes.INVALID_ARGUMENT, f"Upsample scale_factor has {len(fs)} entries for {n} spatial "
                         "dimensions", arg="scale_factor",
                         help=f"give one factor per spatial dimension ({n}), or a single number for all")
        for L, s in zip(x.shape[1:], fs, strict=True):
            if isinstance(L, int) and L * float(s) > MAX_SIZE:
                size = f"{L * float(s):.3g}" if math.isfinite(L * float(s)) else "beyond any number"
                raise c.fail(codes.INVALID_ARGUMENT, f"Upsample scale_factor {s:g} gives size {size} from "
                             f"{L}, more than any tensor can hold", arg="scale_factor", notes=[c.origin()],
                             help="use a scale_factor of a few (2, 4), or give size",
                             recover=x.with_shape((x.shape[0],) + (dims.UNKNOWN,) * n, "channels"))
        out = tuple(dims.scale(L, s) for L, s in zip(x.shape[1:], fs, strict=True))
        for L, s, o in zip(x.shape[1:], fs, out, strict=True):
            if isinstance(o, int) and o < 1:
                raise c.fail(codes.OUTPUT_TOO_SMALL, f"Upsample scale_factor {s} gives size {o} from {L}",
                             arg="scale_factor", notes=[c.origin()], help="use a larger scale_factor, or give size",
                             recover=x.with_shape((x.shape[0],) + (dims.UNKNOWN,) * n, "channels"))
    return x.with_shape((x.shape[0],) + out, "channels")


MAX_SIZE = 2**40  # elements along one dimension: beyond any memory


def _scale_text(a: dict[str, Any]) -> str:
    """'×2', '×(2, 1.5)' or '→32×32' for the table."""
    f = a["scale_factor"]
    if f is not None:
        return f"×{f:g}" if not isinstance(f, tuple) else "×(" + ", ".join(f"{v:g}" for v in f) + ")"
    s = a["size"]
    return "→" + "×".join(str(v) for v in (s if isinstance(s, tuple) else (s,)))


register(LayerType(
    name="Upsample", family="resize", keeps_channels=True,
    errors=[ErrorExample({"scale_factor": 2, "mode": "bilinear"}, (3, 4), codes.RANK),
            ErrorExample({"size": 4, "recompute_scale_factor": True}, (3, 4), codes.INVALID_ARGUMENT)],
    keras=tuple(KerasName(f"UpSampling{n}D", (("size", "scale_factor"), ("interpolation", "mode"))) for n in (1, 2, 3)),
    args={"size": Arg(Optional_(OneOf(Int(1), IntList(1))), None),
          "scale_factor": Arg(Optional_(OneOf(Float(0.0, open_min=True), FloatList())), None),
          "mode": Arg(Choice(*_MODE_RANK), "nearest"), "align_corners": Arg(Optional_(Bool()), None),
          "recompute_scale_factor": Arg(Optional_(Bool()), None)},
    infer=_upsample, positional="scale_factor", label=lambda a: f"up×{a['scale_factor']}" if a["scale_factor"] else f"up{a['size']}",
    summary=lambda a: f"Upsample({_scale_text(a)}, {a['mode']})",
    examples=[Example({"scale_factor": 2}, (3, 5, 5)), Example({"size": 9, "mode": "linear"}, (2, 4)),
              Example({"scale_factor": 1.5, "mode": "bilinear", "align_corners": False}, (2, 7, 6)),
              Example({"size": [4, 6, 8], "mode": "trilinear"}, (1, 2, 3, 4)),
              Example({"scale_factor": [2, 3], "mode": "nearest-exact"}, (1, 3, 3))],
))


def _shuffle_rank(c: Ctx, x: TT) -> None:
    """(N, *, C, H, W): torch's pixel_shuffle/unshuffle work on the last three dims, any leading ones kept."""
    c.float_input()
    if len(x.shape) < 3:
        c.rank((3,), "channels-first 2d")


def _pixel_shuffle(c: Ctx, x: TT) -> TT:
    _shuffle_rank(c, x)
    r = c.a["upscale_factor"]
    ch, h, w = x.shape[-3:]
    if isinstance(ch, int) and ch % (r * r):
        raise c.fail(codes.SHAPE_MISMATCH, f"PixelShuffle upscale_factor {r} needs channels divisible by {r * r}, got {ch}",
                     arg="upscale_factor", notes=[c.origin()])
    return x.with_shape(x.shape[:-3] + (dims.floordiv(ch, r * r), dims.mul(h, r), dims.mul(w, r)), "channels")


def _pixel_unshuffle(c: Ctx, x: TT) -> TT:
    _shuffle_rank(c, x)
    r = c.a["downscale_factor"]
    ch, h, w = x.shape[-3:]
    for d in (h, w):
        if isinstance(d, int) and d % r:
            raise c.fail(codes.SHAPE_MISMATCH, f"PixelUnshuffle downscale_factor {r} needs height and width divisible by "
                         f"{r}, got {dims.fmt_map(x.shape[-3:])}", arg="downscale_factor", notes=[c.origin()])
    return x.with_shape(x.shape[:-3] + (dims.mul(ch, r * r), dims.floordiv(h, r), dims.floordiv(w, r)), "channels")


register(LayerType(name="PixelShuffle", family="resize", args={"upscale_factor": Arg(Int(1))}, infer=_pixel_shuffle,
                   errors=[ErrorExample({"upscale_factor": 2}, (6, 3, 3), codes.SHAPE_MISMATCH)],
                   label=lambda a: f"shuffle{a['upscale_factor']}",
                   examples=[Example({"upscale_factor": 2}, (8, 3, 4)), Example({"upscale_factor": 3}, (9, 2, 2)),
                             Example({"upscale_factor": 2}, (2, 4, 3, 1))]))
register(LayerType(name="PixelUnshuffle", family="resize", args={"downscale_factor": Arg(Int(1))},
                   errors=[ErrorExample({"downscale_factor": 2}, (2, 3, 4), codes.SHAPE_MISMATCH)],
                   infer=_pixel_unshuffle, label=lambda a: f"unshuffle{a['downscale_factor']}",
                   examples=[Example({"downscale_factor": 2}, (2, 6, 4)), Example({"downscale_factor": 3}, (2, 1, 3, 6))]))



def _channel_shuffle(c: Ctx, x: TT) -> TT:
    c.rank((2, 3, 4), "channels-first")
    g, ch = c.a["groups"], x.shape[0]
    if isinstance(ch, int) and ch % g:
        raise c.fail(codes.GROUPS, f"ChannelShuffle groups {g} does not divide the {ch} channels", arg="groups",
                     notes=[c.origin()], help=f"pick groups among the divisors of {ch}: {dims.divisors(ch, g)}")
    return x


register(LayerType(name="ChannelShuffle", family="resize", args={"groups": Arg(Int(1))}, infer=_channel_shuffle,
                   errors=[ErrorExample({"groups": 4}, (6, 3, 3), codes.GROUPS)],
                   label=lambda a: f"shuffle/{a['groups']}", summary=lambda a: f"ChannelShuffle({a['groups']})",
                   doc="interleaves the channels of groups (ShuffleNet): (g·k channels) → k groups of g, transposed",
                   examples=[Example({"groups": 2}, (4, 3, 3)), Example({"groups": 3}, (6, 5))]))

# --- padding layers ------------------------------------------------------------------------------------

def pad(n: int, kind: str) -> Any:
    def infer(c: Ctx, x: TT) -> TT:
        c.float_input()
        if kind in ("Zero", "Constant"):
            c.rank(tuple(range(n, 6)), f"at least {n}d")
        else:
            c.rank((n + 1,), f"channels-first {n}d")
        p = c.a["padding"]
        p = tuple(p) if isinstance(p, (list, tuple)) else (p,) * (2 * n)
        shp = list(x.shape)
        for i in range(n):  # the first pair pads the last dimension, as in torch
            d = len(shp) - 1 - i
            lo, hi = p[2 * i], p[2 * i + 1]
            L = shp[d]
            if isinstance(L, int):
                if kind == "Reflection" and (lo >= L or hi >= L):
                    raise c.fail(codes.PADDING, f"{c.item.entry.name} padding ({lo}, {hi}) must be smaller than the input "
                                 f"size {L}", arg="padding", notes=[c.origin()], help=f"use padding < {L}")
                if kind == "Circular" and (lo > L or hi > L):
                    raise c.fail(codes.PADDING, f"{c.item.entry.name} padding ({lo}, {hi}) must be at most the input size "
                                 f"{L}", arg="padding", notes=[c.origin()])
                if L + min(lo, 0) + min(hi, 0) < 0:  # torch crops (narrow) before it pads
                    raise c.fail(codes.PADDING, f"{c.item.entry.name} negative padding ({lo}, {hi}) crops more than the "
                                 f"input size {L}", arg="padding", notes=[c.origin()],
                                 help=f"the negative entries may remove at most {L} in all")
                if L + lo + hi <= 0:
                    raise c.fail(codes.OUTPUT_TOO_SMALL, f"{c.item.entry.name} padding ({lo}, {hi}) leaves nothing of "
                                 f"size {L}", arg="padding")
            shp[d] = dims.add(L, lo + hi)
        return x.with_shape(tuple(shp))
    return infer


def _pad_error(kind: str, n: int) -> ErrorExample:
    value = {"value": 0.5} if kind == "Constant" else {}
    if kind in ("Zero", "Constant"):  # negative padding crops; cropping everything leaves nothing
        return ErrorExample({"padding": -3, **value}, (2,) + (5,) * n, codes.PADDING)
    if kind == "Replication":  # pads any size, but only (C, *n sizes) samples
        return ErrorExample({"padding": 1}, (2,) * (n + 2), codes.RANK)
    return ErrorExample({"padding": 6}, (2,) + (5,) * n, codes.PADDING)  # reflection / circular: less than the size


_PAD_EX: dict[int, list[tuple[int, ...]]] = {1: [(2, 5)], 2: [(2, 5, 5)], 3: [(1, 7, 6, 5)]}  # reflection needs padding < size
for _kind, _min in (("Zero", None), ("Constant", None), ("Reflection", 0), ("Replication", 0), ("Circular", 0)):
    for _n in (1, 2, 3):
        _pargs: dict[str, Arg] = {"padding": Arg(IntTuple(2 * _n, _min if _min is not None else -(10**9)))}
        if _kind == "Constant":
            _pargs["value"] = Arg(Float())
        _exargs: list[dict[str, Any]] = [{"padding": 1}, {"padding": list(range(1, 2 * _n + 1))}]
        if _kind == "Constant":
            for e in _exargs:
                e["value"] = 0.5
        register(LayerType(
            name=f"{_kind}Pad{_n}d", family="resize", prefix="pad", keeps_channels=True, args=_pargs, infer=pad(_n, _kind),
            label=lambda a: "pad",
            examples=[Example(e, _PAD_EX[_n][0]) for e in _exargs],
            errors=[_pad_error(_kind, _n)],
            torch_min="2.1" if _kind == "Circular" or (_kind == "Zero" and _n != 2) else None,
        ))
