"""Max/Avg/LP pooling 1d/2d/3d and the adaptive pools, with torch's pooling_output_shape."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import codes, dims
from ..dims import Dim
from ..infer import Ctx
from ..registry import (
    TT,
    Arg,
    Bool,
    ErrorExample,
    Example,
    Float,
    Int,
    IntTuple,
    KerasName,
    LayerType,
    OneOf,
    Optional_,
    register,
)
from .conv import _k, _short


def pool_out(L: Dim, k: int, s: int, p: int, d: int, ceil_mode: bool) -> Dim:
    eff = d * (k - 1) + 1
    if isinstance(L, int):
        num = L + 2 * p - eff + ((s - 1) if ceil_mode else 0)
        o = num // s + 1
        if ceil_mode and (o - 1) * s >= L + p:
            o -= 1
        return o
    if L == dims.UNKNOWN:
        return L
    if not ceil_mode:
        return dims.add(dims.floordiv(dims.add(L, 2 * p - eff), s), 1)
    last = dims.ceildiv(dims.add(L, 2 * p - eff), s)  # start of the last window, in strides
    if p + s <= eff:  # torch's "last window starts in the padding" correction can never apply
        return dims.add(last, 1)
    # torch drops the last window when it would start at or after L + p; the windows that start before
    # that number ceil((L+p)/s), and ceil((L+p)/s) - 1 ≥ last - 1, so the correction is a minimum
    return dims.add(dims.minimum(last, dims.add(dims.ceildiv(dims.add(L, p), s), -1)), 1)


def pool_label(a: dict[str, Any], n: int) -> str:
    k = _short(a["kernel_size"], n)
    s = a.get("stride")
    lab = f"pool{k}"
    if s is not None and _k(s, n) != _k(a["kernel_size"], n):
        lab += f"s{_short(s, n)}"
    if _k(a.get("padding", 0), n) != (0,) * n:
        lab += f"p{_short(a['padding'], n)}"
    if a.get("ceil_mode"):
        lab += "c"
    return lab


def pool(n: int, kind: str) -> Any:
    def infer(c: Ctx, x: TT) -> TT:
        c.float_input()
        c.rank((n + 1,), f"channels-first {n}d")
        a = c.a
        if a.get("return_indices"):
            raise c.fail(codes.INVALID_ARGUMENT, f"{c.item.entry.name} return_indices gives (values, indices), which a "
                         "layer list cannot carry", arg="return_indices", help="leave return_indices out")
        k = _k(a["kernel_size"], n)
        s = _k(a["stride"], n) if a.get("stride") is not None else k
        p = _k(a.get("padding", 0), n)
        d = _k(a.get("dilation", 1), n)
        recover = TT((x.shape[0],) + (dims.UNKNOWN,) * n, "float", "channels")
        for i in range(n):
            if p[i] > k[i] // 2:
                raise c.fail(codes.PADDING, f"{c.item.entry.name} padding {p[i]} is more than half the kernel {k[i]}",
                             arg="padding", help=f"write padding: {k[i] // 2} (at most half the kernel, {k[i]})",
                             recover=recover)
        out: list[Dim] = []
        for i, L in enumerate(x.shape[1:]):
            if kind == "avg" and n == 3 and isinstance(L, int) and L < k[i]:  # torch's avg_pool3d checks this
                raise c.fail(codes.KERNEL_TOO_LARGE, f"{c.item.entry.name} kernel {k[i]} is larger than the input size "
                             f"{L} (avg_pool3d does not count the padding here)", arg="kernel_size",
                             notes=[c.origin()], help=f"use kernel_size ≤ {L}, or remove a pooling layer before it",
                             recover=recover)
            o = pool_out(L, k[i], s[i], p[i], d[i], bool(a.get("ceil_mode")))
            if isinstance(o, int) and o < 1:
                raise c.fail(codes.OUTPUT_TOO_SMALL,
                             f"{c.item.entry.name} kernel {k[i]} does not fit in an input of size {L}"
                             + (f" (padded {dims.add(L, 2 * p[i])})" if p[i] else ""),
                             arg="kernel_size", notes=[c.origin()],
                             help="use a smaller kernel, or remove a pooling layer before it", recover=recover)
            out.append(o)
        return x.with_shape((x.shape[0],) + tuple(out), "channels")
    return infer


def _label(n: int) -> Callable[[dict[str, Any]], str]:
    def label(a: dict[str, Any]) -> str:
        return pool_label(a, n)
    return label


def _summary(name: str, n: int) -> Callable[[dict[str, Any]], str]:
    def summary(a: dict[str, Any]) -> str:
        return f"{name}({pool_label(a, n).replace('pool', 'k')})"
    return summary


_KERAS_POOL = (("pool_size", "kernel_size"), ("strides", "stride"))  # Keras' own argument names

_EX = {
    1: [Example({"kernel_size": 2}, (3, 11)), Example({"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True}, (2, 10))],
    2: [Example({"kernel_size": 2}, (6, 28, 28)), Example({"kernel_size": 3, "stride": 2, "padding": 1}, (4, 13, 13)),
        Example({"kernel_size": [3, 2], "stride": [2, 1], "ceil_mode": True}, (2, 10, 7)),
        Example({"kernel_size": 2, "stride": 3, "ceil_mode": True, "padding": 1}, (1, 8, 8))],
    3: [Example({"kernel_size": 2}, (2, 6, 6, 6)), Example({"kernel_size": 3, "stride": 2, "padding": 1}, (1, 7, 8, 9))],
}

for _n in (1, 2, 3):
    register(LayerType(
        name=f"MaxPool{_n}d", family="pool", prefix="pool", reads_maps=True, keeps_channels=True,
        keras=(KerasName(f"MaxPooling{_n}D", _KERAS_POOL),),
        args={"kernel_size": Arg(IntTuple(_n)), "stride": Arg(Optional_(IntTuple(_n)), None),
              "padding": Arg(IntTuple(_n, 0), 0), "dilation": Arg(IntTuple(_n), 1),
              "return_indices": Arg(Bool(), False), "ceil_mode": Arg(Bool(), False)},
        infer=pool(_n, "max"), label=_label(_n), summary=_summary(f"MaxPool{_n}d", _n),
        examples=_EX[_n] + [Example({"kernel_size": 2, "dilation": 2}, (2,) + (9,) * _n)],
        errors=[ErrorExample({"kernel_size": 3}, (2,) + (2,) * _n, codes.OUTPUT_TOO_SMALL),
                ErrorExample({"kernel_size": 2, "padding": 2}, (2,) + (8,) * _n, codes.PADDING)],
    ))
    avg_args = {"kernel_size": Arg(IntTuple(_n)), "stride": Arg(Optional_(IntTuple(_n)), None),
                "padding": Arg(IntTuple(_n, 0), 0), "ceil_mode": Arg(Bool(), False),
                "count_include_pad": Arg(Bool(), True)}
    if _n > 1:
        avg_args["divisor_override"] = Arg(Optional_(Int(1)), None)
    register(LayerType(
        name=f"AvgPool{_n}d", family="pool", prefix="pool", reads_maps=True, keeps_channels=True,
        keras=(KerasName(f"AveragePooling{_n}D", _KERAS_POOL),), args=avg_args,
        infer=pool(_n, "avg"), label=_label(_n), summary=_summary(f"AvgPool{_n}d", _n),
        examples=_EX[_n] + [Example({"kernel_size": 3, "padding": 1, "count_include_pad": False}, (2,) + (6,) * _n)],
        errors=[ErrorExample({"kernel_size": 4}, (2,) + (3,) * _n, codes.KERNEL_TOO_LARGE if _n == 3 else codes.OUTPUT_TOO_SMALL),
                ErrorExample({"kernel_size": 2, "padding": 2}, (2,) + (8,) * _n, codes.PADDING)],
    ))

for _n in (1, 2):
    register(LayerType(
        name=f"LPPool{_n}d", family="pool", prefix="pool", reads_maps=True, keeps_channels=True,
        # torch's lp_pool1d multiplies by kernel_size: an int, not a list
        args={"norm_type": Arg(Float(0.0, open_min=True)), "kernel_size": Arg(IntTuple(_n) if _n > 1 else Int(1)),
              "stride": Arg(Optional_(IntTuple(_n)), None), "ceil_mode": Arg(Bool(), False)},
        infer=pool(_n, "lp"), label=_label(_n), summary=_summary(f"LPPool{_n}d", _n),
        examples=[Example({"norm_type": 2, "kernel_size": 2}, (3,) + (8,) * _n),
                  Example({"norm_type": 1, "kernel_size": 3, "stride": 2, "ceil_mode": True}, (2,) + (9,) * _n)],
        errors=[ErrorExample({"norm_type": 2, "kernel_size": 4}, (2,) + (3,) * _n, codes.OUTPUT_TOO_SMALL)],
    ))


# --- adaptive pools ------------------------------------------------------------------------------------

class _OutSize(IntTuple):
    """int, or a list of n entries each a positive int or null (null keeps that input size)."""

    def __init__(self, n: int):
        super().__init__(n, 1)
        self.text = "a positive integer" + (f" or a list of {n} (null keeps that size)" if n > 1 else "")

    def check(self, v: Any) -> str | None:
        # torch's 1d adaptive pools take ints only: adaptive_avg_pool1d rejects None
        if self.n > 1 and isinstance(v, list) and len(v) == self.n and all(e is None or (isinstance(e, int) and not isinstance(e, bool)
                                                                          and e >= 1) for e in v):
            return None
        return super().check(v)


def adaptive(n: int) -> Any:
    def infer(c: Ctx, x: TT) -> TT:
        c.float_input()
        c.rank((n + 1,), f"channels-first {n}d")
        if c.a.get("return_indices"):
            raise c.fail(codes.INVALID_ARGUMENT, f"{c.item.entry.name} return_indices gives (values, indices), which a "
                         "layer list cannot carry", arg="return_indices", help="leave return_indices out")
        os = c.a["output_size"]
        os = tuple(os) if isinstance(os, (list, tuple)) else (os,) * n
        out = tuple(x.shape[1 + i] if o is None else o for i, o in enumerate(os))
        return x.with_shape((x.shape[0],) + out, "channels")
    return infer


def _adaptive_summary(kind: str, n: int) -> Callable[[dict[str, Any]], str]:
    def summary(a: dict[str, Any]) -> str:
        return f"Adaptive{kind}Pool{n}d(→" + "×".join(
            "same" if o is None else str(o) for o in _k(a["output_size"], n)) + ")"
    return summary


for _n in (1, 2, 3):
    for _kind in ("Max", "Avg"):
        _args: dict[str, Arg] = {"output_size": Arg(OneOf(_OutSize(_n)))}
        if _kind == "Max":
            _args["return_indices"] = Arg(Bool(), False)
        register(LayerType(
            name=f"Adaptive{_kind}Pool{_n}d", family="pool", prefix="pool", reads_maps=True,
            keeps_channels=True, keras=tuple(KerasName(f"Global{_g}{_n}D", implied=(("output_size", 1),), after=("Flatten",))
                                         for _g in (("MaxPooling", "MaxPool") if _kind == "Max" else ("AveragePooling", "AvgPool"))), args=_args, infer=adaptive(_n),
            label=lambda a: f"adaptive{a['output_size']}",
            summary=_adaptive_summary(_kind, _n),
            examples=[Example({"output_size": 1}, (4,) + (7,) * _n), Example({"output_size": 3}, (2,) + (10,) * _n)]
            + ([Example({"output_size": [2, None]}, (3, 9, 5))] if _n == 2 else []),
            errors=[ErrorExample({"output_size": 2}, (2,) * (_n + 2), codes.RANK)],
        ))
