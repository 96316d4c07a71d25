"""Self-attention (MultiheadAttention with query = key = value), TransformerEncoderLayer, and the two-input
TransformerDecoderLayer and Transformer; `causal: true` masks each step from the steps after it (a GPT-style
decoder is a stack of causal encoder layers)."""

from __future__ import annotations

from typing import Any

from .. import codes, dims
from ..dims import Dim
from ..infer import Ctx
from ..registry import TT, Arg, Bool, Choice, ErrorExample, Example, Float, Int, LayerType, register
from .merge import two_inputs
from .recurrent import batch_first_warning


def attention(dim_arg: str, heads_arg: str) -> Any:
    def infer(c: Ctx, x: TT) -> TT:
        c.float_input()
        c.rank((2,), "sequence")
        e = c.need_known(x.shape[1], dim_arg, "features")
        c.infer_size(dim_arg, e)
        batch_first_warning(c, x)
        h = c.a[heads_arg]
        if c.a[dim_arg] % h:
            raise c.fail(codes.GROUPS, f"{c.item.entry.name} {heads_arg} {h} does not divide {dim_arg} {c.a[dim_arg]}",
                         arg=heads_arg, help=f"pick {heads_arg} among the divisors of {c.a[dim_arg]}: "
                         f"{dims.divisors(c.a[dim_arg], h)}", recover=x)
        return x.with_shape(x.shape, "sequence")
    return infer


def _mha_params(a: dict[str, Any]) -> int:
    e = a["embed_dim"]
    b = a["bias"]
    return 4 * e * e + (4 * e if b else 0) + (2 * e if a["add_bias_kv"] else 0)


def _attn_macs(e: int, t: Dim) -> Dim:
    # projections (4 E² per token) + scores and weighted sum (2 T E per token)
    return _sum(dims.mul(t, 4 * e * e), dims.mul(dims.product((t, t)), 2 * e))


def _sum(a: Dim, b: Dim) -> Dim:
    if isinstance(a, int) and isinstance(b, int):
        return a + b
    return f"{a} + {b}"


_CAUSAL = "mask each step from the steps after it (language models, GPT-style decoders)"


def _build_mha(args: dict[str, Any], children: dict[str, Any]) -> Any:
    from ..modules import SelfAttention

    return SelfAttention(**args)


def _built(cls: str) -> Any:
    def build(args: dict[str, Any], children: dict[str, Any]) -> Any:
        from .. import modules

        return getattr(modules, cls)(**args)
    return build


register(LayerType(
    name="MultiheadAttention", family="attention", prefix="attn", mixes_steps=True,
    errors=[ErrorExample({"embed_dim": 6, "num_heads": 4, "batch_first": True}, (3, 6), codes.GROUPS),
            ErrorExample({"embed_dim": 8, "num_heads": 2, "batch_first": True}, (3, 6), codes.SHAPE_MISMATCH)],
    args={"embed_dim": Arg(Int(1), inferred=True), "num_heads": Arg(Int(1)), "dropout": Arg(Float(0.0, 1.0), 0.0),
          "bias": Arg(Bool(), True), "add_bias_kv": Arg(Bool(), False), "add_zero_attn": Arg(Bool(), False),
          "batch_first": Arg(Bool(), False), "causal": Arg(Bool(), False, own=True, doc=_CAUSAL)},
    infer=attention("embed_dim", "num_heads"), params=_mha_params,
    macs=lambda a, x, y: _attn_macs(a["embed_dim"], x[0]), build=_build_mha,
    summary=lambda a: f"SelfAttention({a.get('embed_dim', '?')}, heads={a['num_heads']})",
    label=lambda a: "attention",
    examples=[Example({"num_heads": 2, "batch_first": True}, (5, 8)),
              Example({"num_heads": 4, "bias": False, "batch_first": True}, (3, 16)),
              Example({"num_heads": 1, "add_bias_kv": True, "batch_first": True}, (4, 6))],
    doc="self-attention: query, key and value are all the input; gives the attended sequence",
))


def _tel_params(a: dict[str, Any]) -> int:
    d, f, b = a["d_model"], a["dim_feedforward"], a["bias"]
    attn = 4 * d * d + (4 * d if b else 0)
    ff = 2 * d * f + ((f + d) if b else 0)
    norms = 2 * (2 * d if b else d)
    return attn + ff + norms


register(LayerType(
    name="TransformerEncoderLayer", family="attention", prefix="encoder", mixes_steps=True,
    errors=[ErrorExample({"d_model": 6, "nhead": 4, "batch_first": True}, (3, 6), codes.GROUPS),
            ErrorExample({"d_model": 8, "nhead": 2, "batch_first": True}, (3, 6), codes.SHAPE_MISMATCH)],
    args={"d_model": Arg(Int(1), inferred=True), "nhead": Arg(Int(1)), "dim_feedforward": Arg(Int(1), 2048),
          "dropout": Arg(Float(0.0, 1.0), 0.1), "activation": Arg(Choice("relu", "gelu"), "relu"),
          "layer_norm_eps": Arg(Float(0.0, open_min=True), 1e-5), "batch_first": Arg(Bool(), False),
          "norm_first": Arg(Bool(), False), "bias": Arg(Bool(), True),
          "causal": Arg(Bool(), False, own=True, doc=_CAUSAL)},
    infer=attention("d_model", "nhead"), params=_tel_params, build=_built("EncoderLayer"),
    macs=lambda a, x, y: _sum(dims.mul(x[0], 2 * a["d_model"] * a["dim_feedforward"]), _attn_macs(a["d_model"], x[0])),
    summary=lambda a: f"TransformerEncoderLayer({a.get('d_model', '?')}, heads={a['nhead']}, ff={a['dim_feedforward']})",
    label=lambda a: "encoder",
    examples=[Example({"nhead": 2, "dim_feedforward": 32, "batch_first": True}, (5, 8)),
              Example({"nhead": 4, "dim_feedforward": 16, "norm_first": True, "activation": "gelu", "bias": False,
                       "batch_first": True}, (3, 16))],
))


# --- two inputs: the decoder layer (target, memory) and the whole Transformer (source, target) -----------

def _two(c: Ctx, names: tuple[str, str]) -> tuple[TT, TT]:
    a, b = two_inputs(c)
    for t, what in ((a, names[0]), (b, names[1])):
        if len(t.shape) != 2 or t.dtype != "float":
            raise c.fail(codes.RANK, f"{c.item.entry.name} reads float sequences (N, T, F); its {what} is "
                         f"{dims.fmt_shape(t.shape)}", notes=[c.checker.origin(t)],
                         help="embed ids first (`- Embedding: {...}`)")
    return a, b


def _decoder(c: Ctx, x: TT) -> TT:
    tgt, mem = _two(c, ("target", "memory"))
    d = c.need_known(tgt.shape[1], "d_model", "features")
    c.infer_size("d_model", d)
    if mem.shape[1] != d:
        raise c.fail(codes.SHAPE_MISMATCH, f"TransformerDecoderLayer memory has {dims.fmt(mem.shape[1])} features, "
                     f"its target {d}", notes=[c.checker.origin(mem)], help="give both sequences d_model features")
    _heads(c, "d_model", "nhead", x)
    batch_first_warning(c, x)
    return tgt.with_shape(tgt.shape, "sequence")


def _heads(c: Ctx, dim_arg: str, heads_arg: str, x: TT) -> None:
    h, e = c.a[heads_arg], c.a[dim_arg]
    if e % h:
        raise c.fail(codes.GROUPS, f"{c.item.entry.name} {heads_arg} {h} does not divide {dim_arg} {e}", arg=heads_arg,
                     help=f"pick {heads_arg} among the divisors of {e}: {dims.divisors(e, h)}", recover=x)


def _tdl_params(a: dict[str, Any]) -> int:
    d, f, b = a["d_model"], a["dim_feedforward"], a["bias"]
    attn = 4 * d * d + (4 * d if b else 0)
    return 2 * attn + 2 * d * f + ((f + d) if b else 0) + 3 * (2 * d if b else d)


_LAYER_ARGS = {"nhead": Arg(Int(1)), "dim_feedforward": Arg(Int(1), 2048), "dropout": Arg(Float(0.0, 1.0), 0.1),
               "activation": Arg(Choice("relu", "gelu"), "relu"),
               "layer_norm_eps": Arg(Float(0.0, open_min=True), 1e-5), "batch_first": Arg(Bool(), False),
               "norm_first": Arg(Bool(), False), "bias": Arg(Bool(), True)}

register(LayerType(
    name="TransformerDecoderLayer", family="attention", arity=2, prefix="decoder", mixes_steps=True,
    errors=[ErrorExample({"d_model": 6, "nhead": 4, "batch_first": True}, (3, 6), codes.GROUPS)],
    args={"d_model": Arg(Int(1), inferred=True), **_LAYER_ARGS,
          "causal": Arg(Bool(), False, own=True, doc="mask each target step from the steps after it")},
    infer=_decoder, params=_tdl_params, build=_built("DecoderLayer"),
    macs=lambda a, x, y: _sum(dims.mul(x[0], 2 * a["d_model"] * a["dim_feedforward"]),
                              _sum(_attn_macs(a["d_model"], x[0]), _attn_macs(a["d_model"], x[0]))),
    summary=lambda a: f"TransformerDecoderLayer({a.get('d_model', '?')}, heads={a['nhead']}, ff={a['dim_feedforward']})",
    label=lambda a: "decoder",
    doc="a decoder layer: self-attention over the target, attention to the memory, feed-forward; "
        "`from: [target, memory]`",
    examples=[Example({"nhead": 2, "dim_feedforward": 16, "batch_first": True}, (5, 8)),
              Example({"nhead": 4, "dim_feedforward": 8, "batch_first": True, "causal": True, "norm_first": True},
                      (3, 16))],
))


def _transformer(c: Ctx, x: TT) -> TT:
    src, tgt = _two(c, ("source", "target"))
    d = c.need_known(src.shape[1], "d_model", "features")
    c.infer_size("d_model", d)
    if tgt.shape[1] != d:
        raise c.fail(codes.SHAPE_MISMATCH, f"Transformer target has {dims.fmt(tgt.shape[1])} features, its source {d}",
                     notes=[c.checker.origin(tgt)], help="give both sequences d_model features")
    _heads(c, "d_model", "nhead", x)
    batch_first_warning(c, x)
    return tgt.with_shape(tgt.shape, "sequence")


def _cross_macs(e: int, tq: Dim, tk: Dim) -> Dim:
    """Attention of tq queries to tk keys: the query and output projections per query, key and value per key,
    and the scores and weighted sum."""
    return _sum(_sum(dims.mul(tq, 2 * e * e), dims.mul(tk, 2 * e * e)), dims.mul(dims.product((tq, tk)), 2 * e))


def _transformer_macs(a: dict[str, Any], ts: Dim, tt: Dim) -> Dim:
    d, f = a["d_model"], a["dim_feedforward"]
    enc = _sum(dims.mul(ts, 2 * d * f), _attn_macs(d, ts))
    dec = _sum(_sum(dims.mul(tt, 2 * d * f), _attn_macs(d, tt)), _cross_macs(d, tt, ts))
    return _sum(dims.mul(enc, a["num_encoder_layers"]) if isinstance(enc, int) else f"({enc})*{a['num_encoder_layers']}",
                dims.mul(dec, a["num_decoder_layers"]) if isinstance(dec, int) else f"({dec})*{a['num_decoder_layers']}")


def _transformer_params(a: dict[str, Any]) -> int:
    d, b = a["d_model"], a["bias"]
    norm = 2 * d if b else d
    return a["num_encoder_layers"] * _tel_params(a) + a["num_decoder_layers"] * _tdl_params(a) + 2 * norm


register(LayerType(
    name="Transformer", family="attention", arity=2, mixes_steps=True,
    errors=[ErrorExample({"d_model": 6, "nhead": 4, "batch_first": True}, (3, 6), codes.GROUPS)],
    args={"d_model": Arg(Int(1), inferred=True), **{**_LAYER_ARGS, "nhead": Arg(Int(1), 8)},
          "num_encoder_layers": Arg(Int(1), 6), "num_decoder_layers": Arg(Int(1), 6),
          "causal": Arg(Bool(), False, own=True, doc="mask each target step from the steps after it")},
    infer=_transformer, params=_transformer_params, build=_built("Transformer"),
    macs=lambda a, x, y: _transformer_macs(a, x[0], y[0]),
    summary=lambda a: f"Transformer({a.get('d_model', '?')}, heads={a['nhead']}, {a['num_encoder_layers']}+"
                      f"{a['num_decoder_layers']} layers)",
    label=lambda a: "transformer",
    doc="torch's encoder-decoder Transformer: `from: [source, target]`, gives the decoded target",
    examples=[Example({"nhead": 2, "dim_feedforward": 16, "num_encoder_layers": 1, "num_decoder_layers": 2,
                       "batch_first": True}, (5, 8)),
              Example({"nhead": 2, "dim_feedforward": 8, "num_encoder_layers": 2, "num_decoder_layers": 1,
                       "batch_first": True, "causal": True}, (4, 4))],
))
