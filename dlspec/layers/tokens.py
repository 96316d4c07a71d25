"""Learned tensors: a class token prepended to a sequence, learned and sinusoidal positional embeddings,
and a learned parameter of any shape.  What a ViT or a GPT-style decoder needs around its attention
layers; their modules (and initialisation, as the reference implementations do it) are in dlspec.modules."""

from __future__ import annotations

from typing import Any

from .. import codes, dims
from ..infer import Ctx
from ..registry import TT, Arg, Choice, Example, Float, Int, IntList, LayerType, Optional_, prod, register

INITS = ("zeros", "ones", "normal", "trunc_normal", "uniform", "xavier_uniform")


def _module(cls: str) -> Any:
    def build(args: dict[str, Any], children: dict[str, Any]) -> Any:
        from .. import modules

        return getattr(modules, cls)(**args)
    return build


def _sequence(c: Ctx, x: TT) -> int:
    """The features of a sequence (N, T, F); a rank error otherwise."""
    c.float_input()
    c.rank((2,), "sequence", help=f"{c.item.entry.name} works on a sequence of vectors (N, T, F), e.g. a ViT's "
           "patches after `- Flatten: {start_dim: 2}` and `- Permute: [0, 2, 1]`")
    return c.need_known(x.shape[1], "embed_dim", "features")


def _class_token(c: Ctx, x: TT) -> TT:
    d = _sequence(c, x)
    c.infer_size("embed_dim", d)
    return x.with_shape((dims.add(x.shape[0], 1), d), "sequence")


register(LayerType(
    name="ClassToken", family="tokens", structural=True, args={"embed_dim": Arg(Int(1), inferred=True)},
    infer=_class_token, build=_module("ClassToken"), params=lambda a: a["embed_dim"], label=lambda a: "+token",
    summary=lambda a: f"ClassToken({a.get('embed_dim', '?')})",
    doc="prepends a learned token (ViT's class token, zeros at first): (N, T, F) → (N, T+1, F)",
    examples=[Example({}, (4, 6)), Example({"embed_dim": 3}, (1, 3))],
))


def _positional(c: Ctx, x: TT) -> TT:
    d = _sequence(c, x)
    c.infer_size("embed_dim", d)
    t = x.shape[0]
    if c.a["length"] is None:
        c.a["length"] = c.need_known(t, "length", "steps", help="give `length:`, the longest sequence it will see")
    elif isinstance(t, int) and t > c.a["length"]:
        raise c.fail(codes.SHAPE_MISMATCH, f"PositionalEmbedding length {c.a['length']} is shorter than the {t} steps "
                     "it receives", arg="length", notes=[c.origin()], help=f"write length: {t}")
    return x.with_shape(x.shape, "sequence")


register(LayerType(
    name="PositionalEmbedding", family="tokens", structural=True,
    args={"length": Arg(Optional_(Int(1)), None, inferred=True, doc="the longest sequence (default: the one it receives)"),
          "embed_dim": Arg(Int(1), inferred=True), "std": Arg(Float(0.0), 0.02)},
    infer=_positional, build=_module("PositionalEmbedding"), params=lambda a: a["length"] * a["embed_dim"],
    label=lambda a: "+pos", summary=lambda a: f"PositionalEmbedding({a.get('length')}×{a.get('embed_dim', '?')})",
    doc="adds a learned embedding per position (ViT, GPT), normal(std) at first; a shorter sequence uses the first "
        "positions",
    examples=[Example({}, (5, 8)), Example({"length": 10, "std": 0.1}, (7, 4))],
))


def _sinusoidal(c: Ctx, x: TT) -> TT:
    d = _sequence(c, x)
    if d % 2:
        raise c.fail(codes.INVALID_ARGUMENT, f"SinusoidalPositionalEncoding needs an even number of features, got {d}",
                     notes=[c.origin()], help="give the embedding an even size (sines and cosines come in pairs)")
    c.a["embed_dim"] = d
    return x.with_shape(x.shape, "sequence")


register(LayerType(
    name="SinusoidalPositionalEncoding", family="tokens", structural=True,
    args={"embed_dim": Arg(Int(2), inferred=True), "base": Arg(Float(1.0), 10000.0)},
    infer=_sinusoidal, build=_module("SinusoidalPositionalEncoding"), label=lambda a: "+sin",
    doc="adds the fixed sines and cosines of 'Attention is all you need' (no parameters), any length",
    examples=[Example({}, (6, 8)), Example({"base": 100.0}, (3, 4))],
))


def _parameter(c: Ctx, x: TT) -> TT:
    shape = tuple(c.a["shape"])
    return TT(shape, "float", "channels" if len(shape) >= 3 else "sequence" if len(shape) == 2 else None)


register(LayerType(
    name="Parameter", family="tokens", structural=True,
    args={"shape": Arg(IntList(1, text="the shape of the tensor, per sample")),
          "init": Arg(Choice(*INITS), "normal"), "std": Arg(Float(0.0), 1.0)},
    positional="shape", infer=_parameter, build=_module("Parameter"), params=lambda a: prod(a["shape"]),
    label=lambda a: "param", summary=lambda a: f"Parameter({list(a['shape'])}, {a['init']})",
    doc="a learned tensor of the given shape, the same for every sample (its input gives only the batch size); "
        "read it with `from:` in a merge",
    examples=[Example({"shape": [3, 4]}, (2,)), Example({"shape": [5], "init": "zeros"}, (7, 2))],
))
