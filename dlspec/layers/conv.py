"""Conv1d/2d/3d and ConvTranspose1d/2d/3d, with torch's exact size formulas."""

from __future__ import annotations

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
    Int,
    IntTuple,
    KerasName,
    LayerType,
    OneOf,
    prod,
    register,
)


def _k(v: Any, n: int) -> tuple[int, ...]:
    return tuple(v) if isinstance(v, (list, tuple)) else (v,) * n


def _short(v: Any, n: int) -> str:
    t = _k(v, n)
    return str(t[0]) if len(set(t)) == 1 else "x".join(map(str, t))


# a count, or `in_channels`: as many as the layer receives (`groups: in_channels` is a depthwise convolution)
_CHANNELS = OneOf(Int(1), Choice("in_channels"))


def conv_label(prefix: str, n: int) -> Any:
    def label(a: dict[str, Any]) -> str:
        s = f"{prefix}{_short(a['kernel_size'], n)}"
        if _k(a.get("stride", 1), n) != (1,) * n:
            s += f"s{_short(a['stride'], n)}"
        p = a.get("padding", 0)
        if isinstance(p, str):
            s += "" if p == "valid" else "same"
        elif _k(p, n) != (0,) * n:
            s += f"p{_short(p, n)}"
        if _k(a.get("dilation", 1), n) != (1,) * n:
            s += f"d{_short(a['dilation'], n)}"
        return s
    return label


def conv_out(L: Dim, k: int, s: int, p: int, d: int) -> Dim:
    """floor((L + 2p - d(k-1) - 1) / s) + 1."""
    return dims.add(dims.floordiv(dims.add(L, 2 * p - d * (k - 1) - 1), s), 1)


def _channels(c: Ctx, x: TT, n: int) -> int:
    c.float_input()
    c.rank((n + 1,), f"channels-first {n}d")
    if n == 1 and not isinstance(x.shape[0], int) and x.shape[0] != dims.UNKNOWN and isinstance(x.shape[1], int):
        # (T, F): a sequence, not (C, L); to convolve over time the features must be the channels
        start = "" if c.checker.chain else f", or declare input: [{x.shape[1]}, {x.shape[0]}]"
        raise c.fail(codes.SYMBOLIC_SIZE, f"{c.item.entry.name} reads (N, C, L), channels then length, but receives "
                     f"{dims.fmt_shape(x.shape)}: it would take the {x.shape[0]} steps as channels",
                     notes=[c.origin()],
                     help=f"to convolve over the {x.shape[0]} steps with the {x.shape[1]} features as channels, put "
                          f"`- Permute: [0, 2, 1]` before it (it then receives {dims.fmt_shape(x.shape[::-1])})"
                          + start)
    cin = c.need_known(x.shape[0], "in_channels", "input channels")
    c.infer_size("in_channels", cin, "channels")
    for name in ("groups", "out_channels"):  # `groups: in_channels`: a depthwise convolution, whatever it receives
        if c.a[name] == "in_channels":
            c.a[name] = cin
    g = c.a["groups"]
    for name in ("in_channels", "out_channels"):
        if c.a[name] % g:
            c.error(codes.GROUPS, f"{c.item.entry.name} groups {g} does not divide {name} {c.a[name]}", arg="groups",
                    help=f"groups must divide both in_channels ({c.a['in_channels']}) and out_channels "
                         f"({c.a['out_channels']})")
            break
    return cin


def _mode_padding(c: Ctx, L: Dim, p: int, recover: TT) -> None:
    """reflect padding must be smaller than the input size, circular at most the input size (torch's F.pad)."""
    mode = c.a["padding_mode"]
    if isinstance(L, int) and mode in ("reflect", "circular") and p > L - (mode == "reflect"):
        raise c.fail(codes.PADDING, f"{c.item.entry.name} {mode} padding {p} is too large for an input of size {L}",
                     arg="padding", notes=[c.origin()],
                     help=f"{mode} padding must be {'smaller than' if mode == 'reflect' else 'at most'} the input "
                          "size; use padding_mode: zeros or replicate, or a smaller padding", recover=recover)


def conv(n: int) -> Any:
    def infer(c: Ctx, x: TT) -> TT:
        _channels(c, x, n)
        a = c.a
        out_c = a["out_channels"]
        k, s, d = _k(a["kernel_size"], n), _k(a["stride"], n), _k(a["dilation"], n)
        recover = TT((out_c,) + (dims.UNKNOWN,) * n, "float", "channels")
        pad = a["padding"]
        if pad == "same":
            if s != (1,) * n:
                raise c.fail(codes.PADDING, f"{c.item.entry.name} padding 'same' is not supported with stride {a['stride']}",
                             arg="padding", help="use stride 1 with 'same', or give padding as a number", recover=recover)
            for i, L in enumerate(x.shape[1:]):
                # torch pads d·(k-1) in all, the larger half on the right, with F.pad(mode=padding_mode)
                _mode_padding(c, L, d[i] * (k[i] - 1) - d[i] * (k[i] - 1) // 2, recover)
            return TT((out_c,) + tuple(x.shape[1:]), "float", "channels")
        p = (0,) * n if pad == "valid" else _k(pad, n)
        spatial: list[Dim] = []
        for i, L in enumerate(x.shape[1:]):
            eff = d[i] * (k[i] - 1) + 1
            if isinstance(L, int):
                _mode_padding(c, L, p[i], recover)
                if L + 2 * p[i] < eff:
                    dil = f" (dilated to {eff})" if d[i] != 1 else ""
                    raise c.fail(codes.KERNEL_TOO_LARGE,
                                 f"{c.item.entry.name} kernel {k[i]}{dil} is larger than the "
                                 + (f"padded input {L + 2 * p[i]} ({L} + 2·{p[i]})" if p[i] else f"input size {L}"),
                                 arg="kernel_size", notes=[c.origin()],
                                 help="use a smaller kernel, add padding, or remove a pooling layer before it",
                                 recover=recover)
            spatial.append(conv_out(L, k[i], s[i], p[i], d[i]))
        return TT((out_c,) + tuple(spatial), "float", "channels")
    return infer


def _conv_params(n: int) -> Any:
    def params(a: dict[str, Any]) -> int:
        return a["out_channels"] * (a["in_channels"] // a["groups"]) * prod(_k(a["kernel_size"], n)) + \
            (a["out_channels"] if a["bias"] else 0)
    return params


def _conv_macs(n: int) -> Any:
    def macs(a: dict[str, Any], x: Any, y: Any) -> Dim:
        per = a["out_channels"] * (a["in_channels"] // a["groups"]) * prod(_k(a["kernel_size"], n))
        return dims.mul(dims.product(tuple(y[1:])), per)
    return macs


def _summary(name: str, n: int) -> Any:
    def summary(a: dict[str, Any]) -> str:
        lab = conv_label("k", n)(a)
        if _k(a.get("output_padding") or 0, n) != (0,) * n:  # ConvTranspose
            lab += f"op{_short(a['output_padding'], n)}"
        g = f" g{a['groups']}" if a.get("groups", 1) != 1 else ""
        return f"{name}({a.get('in_channels', '?')}→{a['out_channels']}, {lab}{g})"
    return summary


_CONV_EXAMPLES = {
    1: [Example({"out_channels": 4, "kernel_size": 3}, (2, 16)),
        Example({"out_channels": 6, "kernel_size": 5, "stride": 2, "padding": 1, "dilation": 2, "groups": 2}, (4, 30)),
        Example({"out_channels": 3, "kernel_size": 4, "padding": "same"}, (3, 11)),
        Example({"out_channels": 2, "kernel_size": 3, "padding": 2, "padding_mode": "reflect"}, (1, 9))],
    2: [Example({"out_channels": 6, "kernel_size": 5, "padding": 2}, (1, 28, 28)),
        Example({"out_channels": 8, "kernel_size": [3, 5], "stride": [2, 1], "padding": [1, 0], "bias": False}, (3, 17, 13)),
        Example({"out_channels": 4, "kernel_size": 3, "dilation": 2, "groups": 2}, (2, 12, 12)),
        Example({"out_channels": 4, "kernel_size": 3, "padding": "same", "padding_mode": "circular"}, (2, 7, 9)),
        Example({"out_channels": 4, "kernel_size": 2, "padding": "valid", "stride": 3}, (2, 10, 8))],
    3: [Example({"out_channels": 4, "kernel_size": 3}, (2, 6, 7, 8)),
        Example({"out_channels": 2, "kernel_size": [1, 3, 3], "stride": 2, "padding": 1}, (3, 5, 9, 9))],
}

_TCONV_EXAMPLES = {
    1: [Example({"out_channels": 3, "kernel_size": 4, "stride": 2, "padding": 1}, (2, 10)),
        Example({"out_channels": 4, "kernel_size": 3, "stride": 3, "output_padding": 2, "groups": 2}, (2, 5))],
    2: [Example({"out_channels": 16, "kernel_size": 2, "stride": 2}, (32, 7, 7)),
        Example({"out_channels": 3, "kernel_size": [3, 5], "stride": [2, 3], "padding": [1, 2], "output_padding": [1, 0],
                 "dilation": [1, 2]}, (4, 6, 5))],
    3: [Example({"out_channels": 2, "kernel_size": 3, "stride": 2, "padding": 1, "output_padding": 1}, (3, 4, 4, 4))],
}


def conv_t(n: int) -> Any:
    def infer(c: Ctx, x: TT) -> TT:
        _channels(c, x, n)
        a = c.a
        k, s, d = _k(a["kernel_size"], n), _k(a["stride"], n), _k(a["dilation"], n)
        p, op = _k(a["padding"], n), _k(a["output_padding"], n)
        recover = TT((a["out_channels"],) + (dims.UNKNOWN,) * n, "float", "channels")
        for i in range(n):
            if not (op[i] < s[i] or op[i] < d[i]):
                raise c.fail(codes.OUTPUT_PADDING, f"{c.item.entry.name} output_padding {op[i]} must be smaller than "
                             f"stride {s[i]} or dilation {d[i]}", arg="output_padding", recover=recover,
                             help=f"remove output_padding (a larger kernel_size gives a larger output), or use "
                                  f"stride ≥ {op[i] + 1} as in an upsampling layer")
        spatial: list[Dim] = []
        for i, L in enumerate(x.shape[1:]):
            o = dims.add(dims.mul(dims.add(L, -1), s[i]), -2 * p[i] + d[i] * (k[i] - 1) + op[i] + 1)
            if isinstance(o, int) and o <= 0:
                raise c.fail(codes.OUTPUT_TOO_SMALL, f"{c.item.entry.name} would give size {o} from {L}: padding "
                             f"{p[i]} is too large", arg="padding", recover=recover)
            spatial.append(o)
        return TT((a["out_channels"],) + tuple(spatial), "float", "channels")
    return infer


for _n in (1, 2, 3):
    register(LayerType(
        name=f"Conv{_n}d", family="conv", prefix="conv", reads_maps=True,
        args={"in_channels": Arg(Int(1), inferred=True), "out_channels": Arg(_CHANNELS),
              "kernel_size": Arg(IntTuple(_n)), "stride": Arg(IntTuple(_n), 1),
              "padding": Arg(IntTuple(_n, 0, ("same", "valid")), 0), "dilation": Arg(IntTuple(_n), 1),
              "groups": Arg(_CHANNELS, 1), "bias": Arg(Bool(), True),
              "padding_mode": Arg(Choice("zeros", "reflect", "replicate", "circular"), "zeros")},
        infer=conv(_n), params=_conv_params(_n), macs=_conv_macs(_n), label=conv_label("conv", _n),
        summary=_summary(f"Conv{_n}d", _n), examples=_CONV_EXAMPLES[_n],
        errors=[ErrorExample({"in_channels": 2, "out_channels": 4, "kernel_size": 5}, (2,) + (3,) * _n, codes.KERNEL_TOO_LARGE),
                ErrorExample({"in_channels": 3, "out_channels": 4, "kernel_size": 3}, (4,) + (8,) * _n, codes.SHAPE_MISMATCH),
                ErrorExample({"in_channels": 4, "out_channels": 6, "kernel_size": 3, "groups": 4}, (4,) + (8,) * _n,
                             codes.GROUPS)],
    ))


def _tconv_params(n: int) -> Any:
    def params(a: dict[str, Any]) -> int:
        return a["in_channels"] * (a["out_channels"] // a["groups"]) * prod(_k(a["kernel_size"], n)) + \
            (a["out_channels"] if a["bias"] else 0)
    return params


def _tconv_macs(n: int) -> Any:
    def macs(a: dict[str, Any], x: Any, y: Any) -> Dim:
        per = a["in_channels"] * (a["out_channels"] // a["groups"]) * prod(_k(a["kernel_size"], n))
        return dims.mul(dims.product(tuple(x[1:])), per)
    return macs


for _n in (1, 2, 3):
    register(LayerType(
        name=f"ConvTranspose{_n}d", family="conv", prefix="deconv", reads_maps=True, keras=(KerasName(f"Conv{_n}DTranspose"),),
        args={"in_channels": Arg(Int(1), inferred=True), "out_channels": Arg(_CHANNELS),
              "kernel_size": Arg(IntTuple(_n)), "stride": Arg(IntTuple(_n), 1), "padding": Arg(IntTuple(_n, 0), 0),
              "output_padding": Arg(IntTuple(_n, 0), 0), "groups": Arg(_CHANNELS, 1), "bias": Arg(Bool(), True),
              "dilation": Arg(IntTuple(_n), 1), "padding_mode": Arg(Choice("zeros"), "zeros")},
        infer=conv_t(_n), params=_tconv_params(_n), macs=_tconv_macs(_n), label=conv_label("deconv", _n),
        summary=_summary(f"ConvTranspose{_n}d", _n), examples=_TCONV_EXAMPLES[_n],
        errors=[ErrorExample({"in_channels": 2, "out_channels": 4, "kernel_size": 3}, (3,) + (4,) * _n, codes.SHAPE_MISMATCH),
                ErrorExample({"in_channels": 3, "out_channels": 4, "kernel_size": 3, "stride": 2, "output_padding": 2},
                             (3,) + (4,) * _n, codes.OUTPUT_PADDING)],
    ))
