"""BatchNorm, LayerNorm, GroupNorm, InstanceNorm, LocalResponseNorm, RMSNorm."""

from __future__ import annotations

from typing import Any

from .. import codes, dims
from ..infer import Ctx
from ..registry import (
    TT,
    Arg,
    Bool,
    ErrorExample,
    Example,
    Float,
    Int,
    IntList,
    KerasName,
    LayerType,
    OneOf,
    Optional_,
    prod,
    register,
)


def _channels(c: Ctx, x: TT, name: str = "num_features") -> None:
    c.float_input()
    ch = c.need_known(x.shape[0], name, "channels")
    c.infer_size(name, ch, "channels")


def batchnorm(ranks: tuple[int, ...], what: str) -> Any:
    def infer(c: Ctx, x: TT) -> TT:
        c.rank(ranks, what)
        if len(x.shape) == 2 and x.layout == "sequence" and c.item.entry.name == "BatchNorm1d":
            # first: it explains what follows (a variable length T is a variable number of channels)
            t, f = dims.fmt(x.shape[0]), dims.fmt(x.shape[1])
            fix = (f"to normalise the {f} features of each step use `- LayerNorm`, or `- Permute: [0, 2, 1]` to "
                   f"(N, {f}, {t}) before it (and back after)")
            c.warn(codes.RANK, f"BatchNorm1d reads {dims.fmt_shape(x.shape)} as (N, C, L): it normalises each of the "
                   f"{t} time steps as a channel, not each feature", help=fix)
            c.need_known(x.shape[0], "num_features", "channels", help=fix)
        _channels(c, x)
        return x
    return infer


def _running(a: dict[str, Any]) -> int:
    """The running mean and variance, one value per feature each, and the count of batches seen."""
    return 2 * a["num_features"] + 1 if a["track_running_stats"] else 0


_BN_ARGS = {"num_features": Arg(Int(1), inferred=True), "eps": Arg(Float(0.0, open_min=True), 1e-5),
            "momentum": Arg(Optional_(Float(0.0, 1.0)), 0.1), "affine": Arg(Bool(), True),
            "track_running_stats": Arg(Bool(), True)}

# (name, accepted ranks, what they mean, example input shapes)
_BN_TYPES: list[tuple[str, tuple[int, ...], str, list[tuple[int, ...]]]] = [
    ("BatchNorm1d", (1, 2), "(C) or (C, L)", [(16,), (4, 10)]),
    ("BatchNorm2d", (3,), "channels-first 2d", [(6, 5, 5)]),
    ("BatchNorm3d", (4,), "channels-first 3d", [(3, 2, 4, 4)]),
]
for _name, _ranks, _what, _ex in _BN_TYPES:
    register(LayerType(
        name=_name, family="norm", prefix="bn", keeps_channels=True, args=dict(_BN_ARGS),
        keras=(KerasName("BatchNormalization", ranks=_ranks),),
        errors=[ErrorExample({"num_features": _ex[0][0] + 1}, _ex[0], codes.SHAPE_MISMATCH),
                ErrorExample({"num_features": 4}, (4,) + (5,) * max(_ranks), codes.RANK)], infer=batchnorm(_ranks, _what),
        params=lambda a: 2 * a["num_features"] if a["affine"] else 0, label=lambda a: "bn", buffers=_running,
        examples=[Example({}, e) for e in _ex] + [Example({"affine": False, "momentum": None}, _ex[0])],
    ))

_IN_ARGS = {"num_features": Arg(Int(1), inferred=True), "eps": Arg(Float(0.0, open_min=True), 1e-5),
            "momentum": Arg(Optional_(Float(0.0, 1.0)), 0.1), "affine": Arg(Bool(), False),
            "track_running_stats": Arg(Bool(), False)}

def instancenorm(n: int) -> Any:
    def infer(c: Ctx, x: TT) -> TT:
        c.rank((n + 1,), f"channels-first {n}d")
        c.float_input()
        a = c.a
        ch = c.need_known(x.shape[0], "num_features", "channels")
        if c.written("num_features") and a["num_features"] != ch and not a["affine"] and not a["track_running_stats"]:
            # torch only warns here: without weights or running statistics num_features is never used
            c.warn(codes.SHAPE_MISMATCH, f"{c.item.entry.name} num_features {a['num_features']} differs from the "
                   f"{ch} channels it receives; torch ignores it (affine and track_running_stats are false)",
                   arg="num_features", notes=[c.origin()], help="leave num_features out, and it is inferred")
        else:
            c.infer_size("num_features", ch, "channels")
        if dims.product(x.shape[1:]) == 1:  # torch's _verify_spatial_size, whenever input statistics are used
            what = f"{c.item.entry.name} normalises each sample over its {dims.fmt_shape(x.shape[1:], batch=False)} " \
                   "spatial values: one value per channel"
            if not a["track_running_stats"]:
                raise c.fail(codes.RANK, f"{what} gives no statistics (torch: expected more than 1 spatial element)",
                             notes=[c.origin()], help="normalise a larger feature map, or use BatchNorm", recover=x)
            c.warn(codes.RANK, f"{what} cannot be trained (torch: expected more than 1 spatial element when training)",
                   notes=[c.origin()], help="normalise a larger feature map, or use BatchNorm")
        return x
    return infer


for _n in (1, 2, 3):
    register(LayerType(
        name=f"InstanceNorm{_n}d", family="norm", prefix="inorm", keeps_channels=True,
        errors=[ErrorExample({"num_features": 4, "affine": True}, (3,) + (5,) * _n, codes.SHAPE_MISMATCH)], args=dict(_IN_ARGS), infer=instancenorm(_n),
        params=lambda a: 2 * a["num_features"] if a["affine"] else 0, label=lambda a: "in", buffers=_running,
        examples=[Example({}, (3,) + (6,) * _n), Example({"affine": True}, (2,) + (5,) * _n)],
    ))


def _layernorm(c: Ctx, x: TT) -> TT:
    c.float_input()
    if not x.shape:  # torch would take the batch for the features and mix the samples
        raise c.fail(codes.RANK, f"{c.item.entry.name} normalises the last dimension of each sample but receives "
                     f"{dims.fmt_shape(x.shape)}, one value per sample", notes=[c.origin()],
                     help="normalise before the layer that reduces each sample to one value", recover=x)
    if c.written("normalized_shape"):
        ns = c.a["normalized_shape"]
        ns = tuple(ns) if isinstance(ns, (list, tuple)) else (ns,)
        tail = tuple(x.shape[-len(ns):]) if len(ns) <= len(x.shape) else None
        if tail is None or any(isinstance(t, int) and t != w for t, w in zip(tail, ns, strict=False)):
            actual = list(x.shape[-len(ns):]) if tail is not None else list(x.shape)
            c.error(codes.SHAPE_MISMATCH, f"{c.item.entry.name} normalized_shape {list(ns)} does not match the last "
                    f"dimensions {actual} of its input {dims.fmt_shape(x.shape)}", arg="normalized_shape",
                    notes=[c.origin()], help=f"write normalized_shape: {actual}, or leave it out "
                    "(then the last dimension is normalised)")
        c.a["normalized_shape"] = tuple(ns)
    else:
        c.a["normalized_shape"] = (c.need_known(x.shape[-1], "normalized_shape", "features"),)
    return x


register(LayerType(
    name="LayerNorm", family="norm", prefix="ln", keeps_channels=True, keras=(KerasName("LayerNormalization"),),
    errors=[ErrorExample({"normalized_shape": 5}, (3, 4), codes.SHAPE_MISMATCH)],
    per_step=lambda a: isinstance(a["normalized_shape"], int) or len(a["normalized_shape"]) == 1,  # the features of each step
    args={"normalized_shape": Arg(OneOf(Int(1), IntList(1)), inferred=True), "eps": Arg(Float(0.0, open_min=True), 1e-5),
          "elementwise_affine": Arg(Bool(), True), "bias": Arg(Bool(), True)},
    infer=_layernorm, label=lambda a: "ln",
    params=lambda a: prod(a["normalized_shape"]) * (2 if a["bias"] else 1) if a["elementwise_affine"] else 0,
    examples=[Example({}, (10,)), Example({"normalized_shape": [5, 5]}, (3, 5, 5)), Example({}, (4, 6)),
              Example({"normalized_shape": [4, 6]}, (4, 6)),
              Example({"bias": False}, (4, 8)), Example({"elementwise_affine": False}, (6,))],
))

register(LayerType(
    name="RMSNorm", family="norm", prefix="rms", keeps_channels=True,
    errors=[ErrorExample({"normalized_shape": [4, 5]}, (3, 4), codes.SHAPE_MISMATCH)],
    per_step=lambda a: isinstance(a["normalized_shape"], int) or len(a["normalized_shape"]) == 1,
    args={"normalized_shape": Arg(OneOf(Int(1), IntList(1)), inferred=True),
          "eps": Arg(Optional_(Float(0.0, open_min=True)), None), "elementwise_affine": Arg(Bool(), True)},
    infer=_layernorm, label=lambda a: "rms",
    params=lambda a: prod(a["normalized_shape"]) if a["elementwise_affine"] else 0,
    examples=[Example({}, (10,)), Example({"normalized_shape": [4, 6]}, (4, 6)), Example({}, (5, 6))],
    torch_min="2.4",
))


def _groupnorm(c: Ctx, x: TT) -> TT:
    c.rank(tuple(range(1, 6)), "channels-first")
    _channels(c, x, "num_channels")
    g, ch = c.a["num_groups"], c.a["num_channels"]
    if ch % g:
        raise c.fail(codes.GROUPS, f"GroupNorm num_groups {g} does not divide num_channels {ch}", arg="num_groups",
                     help=f"pick num_groups among the divisors of {ch}: {dims.divisors(ch, g)}", recover=x)
    return x


register(LayerType(
    name="GroupNorm", family="norm", prefix="gn", keeps_channels=True,
    errors=[ErrorExample({"num_groups": 3, "num_channels": 4}, (4, 5), codes.GROUPS),
            ErrorExample({"num_groups": 2, "num_channels": 4}, (6, 5), codes.SHAPE_MISMATCH)],
    args={"num_groups": Arg(Int(1)), "num_channels": Arg(Int(1), inferred=True),
          "eps": Arg(Float(0.0, open_min=True), 1e-5), "affine": Arg(Bool(), True)},
    infer=_groupnorm, label=lambda a: "gn",
    params=lambda a: 2 * a["num_channels"] if a["affine"] else 0,
    examples=[Example({"num_groups": 2}, (4, 6, 6)), Example({"num_groups": 3, "affine": False}, (6, 10))],
))


def _lrn(c: Ctx, x: TT) -> TT:
    c.float_input()
    if len(x.shape) < 2:  # torch takes (N, C, *) with at least one dimension after C
        c.rank((2, 3, 4), "channels-first")
    return x


register(LayerType(
    name="LocalResponseNorm", family="norm", keeps_channels=True,
    errors=[ErrorExample({"size": 2}, (5,), codes.RANK)],
    args={"size": Arg(Int(1)), "alpha": Arg(Float(), 1e-4), "beta": Arg(Float(), 0.75), "k": Arg(Float(), 1.0)},
    infer=_lrn, label=lambda a: "lrn", examples=[Example({"size": 2}, (4, 5, 5))],
))
