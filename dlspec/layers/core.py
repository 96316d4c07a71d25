"""Linear, Identity, Flatten, Unflatten, Dropout*, Embedding."""

from __future__ import annotations

from collections.abc import Callable
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
    Optional_,
    register,
)

# --- Linear ------------------------------------------------------------------------------------------

def _linear(c: Ctx, x: TT) -> TT:
    c.float_input()
    if not x.shape:
        raise c.fail(codes.RANK, "Linear needs at least one feature dimension")
    flat: Any = None
    if len(x.shape) >= 3 or (len(x.shape) == 2 and x.layout == "channels"):
        flat = dims.product(x.shape)
        c.warn(codes.FORGOTTEN_FLATTEN,
               f"Linear is applied to the {dims.fmt_map(x.shape)} feature map {dims.fmt_shape(x.shape)}: it mixes "
               f"only the last dimension ({dims.fmt(x.shape[-1])} features) and keeps the other "
               f"{len(x.shape) - 1} dimensions",
               help=f"add `- Flatten` before it (it would then receive {dims.fmt(flat)} features)", once=True)
    f = c.need_known(x.shape[-1], "in_features", "input features")
    fix = None
    if flat is not None and c.written("in_features") and c.a["in_features"] == flat:  # the Flatten is what is missing
        fix = (f"add `- Flatten` before this Linear: it then receives {dims.fmt_map(x.shape)} = {dims.fmt(flat)} "
               "features, as in_features says")
    c.infer_size("in_features", f, help=fix)
    layout = x.layout if len(x.shape) > 1 else None
    return x.with_shape(x.shape[:-1] + (c.a["out_features"],), layout)


register(LayerType(
    name="Linear", family="core", prefix="fc", per_step=True, keras=(KerasName("Dense"),),
    errors=[ErrorExample({"in_features": 5, "out_features": 3}, (4,), codes.SHAPE_MISMATCH)],
    args={"in_features": Arg(Int(1), inferred=True), "out_features": Arg(Int(1)), "bias": Arg(Bool(), True)},
    infer=_linear,
    params=lambda a: a["in_features"] * a["out_features"] + (a["out_features"] if a["bias"] else 0),
    macs=lambda a, x, y: dims.mul(dims.product(y), a["in_features"]),
    label=lambda a: f"linear{a['out_features']}",
    summary=lambda a: f"Linear({a.get('in_features', '?')}→{a['out_features']})",
    examples=[Example({"out_features": 10}, (20,)), Example({"in_features": 7, "out_features": 3, "bias": False}, (5, 7)),
              Example({"out_features": 4}, (2, 3, 6))],
))


def _identity(c: Ctx, x: TT) -> TT:
    return x


register(LayerType(name="Identity", family="core", args={}, passthrough=True, keeps_channels=True,
                   per_step=True, infer=_identity, examples=[Example({}, (3, 4))]))


# --- Flatten / Unflatten -----------------------------------------------------------------------------

def _norm_dim(c: Ctx, d: int, full_rank: int, name: str) -> int:
    nd = d + full_rank if d < 0 else d
    if not 0 <= nd < full_rank:
        raise c.fail(codes.RANK, f"{c.item.entry.name} {name} {d} is out of range for a {full_rank}-D input "
                     f"{dims.fmt_shape(c.x.shape)}", arg=name, help=f"use a dim in [1, {full_rank - 1}] (0 is the batch)")
    if nd == 0:
        raise c.fail(codes.RANK, f"{c.item.entry.name} {name} {d} would include the batch dimension", arg=name,
                     help="dimension 0 is the batch N; start at 1")
    return nd


def _flatten(c: Ctx, x: TT) -> TT:
    r = len(x.shape) + 1
    s = _norm_dim(c, c.a["start_dim"], r, "start_dim")
    e = _norm_dim(c, c.a["end_dim"], r, "end_dim")
    if s > e:
        raise c.fail(codes.INVALID_ARGUMENT, f"Flatten start_dim {c.a['start_dim']} comes after end_dim {c.a['end_dim']}",
                     arg="start_dim", help="start_dim must be at most end_dim (the defaults 1 and -1 flatten "
                                           "everything but the batch)")
    shp = x.shape[: s - 1] + (dims.product(x.shape[s - 1: e]),) + x.shape[e:]
    layout = None if len(shp) == 1 else x.layout
    return x.with_shape(shp, layout)


register(LayerType(
    name="Flatten", family="shape", reshapes=True, errors=[ErrorExample({"start_dim": 3}, (4,), codes.RANK)],
    args={"start_dim": Arg(Int(), 1), "end_dim": Arg(Int(), -1)},
    infer=_flatten, label=lambda a: "flatten",
    examples=[Example({}, (3, 4, 5)), Example({"start_dim": 2}, (3, 4, 5)), Example({"end_dim": 2}, (2, 3, 4)),
              Example({}, (7,))],
))


def _unflatten(c: Ctx, x: TT) -> TT:
    r = len(x.shape) + 1
    d = _norm_dim(c, c.a["dim"], r, "dim")
    sizes = list(c.a["unflattened_size"])
    have = x.shape[d - 1]
    if sizes.count(-1) > 1:
        raise c.fail(codes.RESHAPE, "Unflatten allows at most one -1", arg="unflattened_size")
    known_prod = dims.product(tuple(s for s in sizes if s != -1))
    if isinstance(have, int) and isinstance(known_prod, int):
        if -1 in sizes:
            if known_prod == 0 or have % known_prod:
                raise c.fail(codes.RESHAPE, f"Unflatten cannot split {have} into {sizes}", arg="unflattened_size")
            sizes[sizes.index(-1)] = have // known_prod
        elif known_prod != have:
            raise c.fail(codes.RESHAPE, f"Unflatten sizes {sizes} multiply to {known_prod}, but dimension {d} has {have}",
                         arg="unflattened_size", notes=[c.origin()],
                         help=f"sizes must multiply to {have}")
    elif -1 in sizes:
        sizes[sizes.index(-1)] = dims.floordiv(have, known_prod) if isinstance(known_prod, int) else dims.UNKNOWN
    shp = x.shape[: d - 1] + tuple(sizes) + x.shape[d:]
    return x.with_shape(shp, "channels" if len(shp) >= 3 else x.layout)


register(LayerType(
    name="Unflatten", family="shape", reshapes=True,
    errors=[ErrorExample({"dim": 1, "unflattened_size": [2, 3]}, (8,), codes.RESHAPE)],
    args={"dim": Arg(Int()), "unflattened_size": Arg(IntList(1, allow_minus_one=True, text="a list of positive sizes (one may be -1)"))},
    infer=_unflatten,
    examples=[Example({"dim": 1, "unflattened_size": [1, 28, 28]}, (784,)),
              Example({"dim": -1, "unflattened_size": [2, -1]}, (3, 8))],
))


# --- Dropout family -----------------------------------------------------------------------------------

def _dropout(rank: tuple[int, ...] | None, what: str = "") -> Any:
    def infer(c: Ctx, x: TT) -> TT:
        if rank is not None:
            c.rank(rank, what)
        return x
    return infer


def _dropout_summary(name: str) -> Callable[[dict[str, Any]], str]:
    def summary(a: dict[str, Any]) -> str:
        return f"{name}(p={a['p']:g})"
    return summary


_P = {"p": Arg(Float(0.0, 1.0), 0.5), "inplace": Arg(Bool(), False)}
# (name, the ranks it accepts (None: any), what they mean, example inputs)
_DROPOUTS: list[tuple[str, tuple[int, ...] | None, str, list[tuple[int, ...]]]] = [
    ("Dropout", None, "", [(5,), (4, 6)]), ("Dropout1d", (2,), "channels-first 1d", [(3, 8)]),
    ("Dropout2d", (3,), "channels-first 2d", [(3, 4, 4)]), ("Dropout3d", (4,), "channels-first 3d", [(2, 3, 3, 3)]),
    ("AlphaDropout", None, "", [(6,), (4, 6)]), ("FeatureAlphaDropout", None, "", [(3, 4, 4), (4, 6)]),
]
for _name, _rank, _what, _ex in _DROPOUTS:
    register(LayerType(name=_name, family="dropout", args=dict(_P), infer=_dropout(_rank, _what), positional="p",
                       prefix="drop", passthrough=True, keeps_channels=True,
                       per_step=_rank is None or _rank == (2,),  # the identity when evaluating, on (N, T, F) too
                       keras=(KerasName(f"SpatialDropout{_rank[0] - 1}D"),) if _rank else (),
                       summary=_dropout_summary(_name), examples=[Example({"p": 0.25}, e) for e in _ex]))


# --- Embedding ----------------------------------------------------------------------------------------

def _embedding(c: Ctx, x: TT) -> TT:
    if x.dtype != "long":
        raise c.fail(codes.DTYPE, f"Embedding looks up integer ids but receives float features {dims.fmt_shape(x.shape)}",
                     notes=[c.origin()],
                     help=(f"write input: {{shape: {list(x.shape)}, dtype: long}} (integer ids)"
                           if not c.checker.chain else "give it integer ids: the spec's input with dtype: long")
                          + "; to project float features use Linear",
                     recover=TT(x.shape + (c.a["embedding_dim"],), "float", "sequence"))
    v = c.a["num_embeddings"]
    pi = c.a["padding_idx"]
    if pi is not None and not -v <= pi < v:
        raise c.fail(codes.INVALID_ARGUMENT, f"Embedding padding_idx {pi} must be in [-{v}, {v})", arg="padding_idx",
                     help=f"padding_idx must be one of the {v} ids (0 to {v - 1}, or negative from the end), or null")
    return TT(x.shape + (c.a["embedding_dim"],), "float", "sequence" if len(x.shape) == 1 else None)


register(LayerType(
    name="Embedding", family="core", prefix="embed", per_step=True,
    errors=[ErrorExample({"num_embeddings": 10, "embedding_dim": 4}, (5,), codes.DTYPE)],
    args={"num_embeddings": Arg(Int(1)), "embedding_dim": Arg(Int(1)), "padding_idx": Arg(Optional_(Int()), None),
          "max_norm": Arg(Optional_(Float(0.0, open_min=True)), None), "norm_type": Arg(Float(), 2.0),
          "scale_grad_by_freq": Arg(Bool(), False), "sparse": Arg(Bool(), False)},
    infer=_embedding,
    params=lambda a: a["num_embeddings"] * a["embedding_dim"],
    summary=lambda a: f"Embedding({a['num_embeddings']}, {a['embedding_dim']})",
    examples=[Example({"num_embeddings": 50, "embedding_dim": 8}, (7,), "long"),
              Example({"num_embeddings": 10, "embedding_dim": 4, "padding_idx": 0}, (3, 5), "long")],
))
