"""Self-attention (MultiheadAttention with query = key = value) and TransformerEncoderLayer."""

from __future__ import annotations

from typing import Any

from .. import codes, dims
from ..dims import Dim
from ..infer import Ctx
from ..registry import TT, Arg, Bool, Choice, Example, Float, Int, LayerType, register
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
                         + ", ".join(str(d) for d in range(1, c.a[dim_arg] + 1) if c.a[dim_arg] % d == 0),
                         recover=x)
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


def _build_mha(args: dict[str, Any], children: dict[str, Any]) -> Any:
    from ..modules import SelfAttention

    return SelfAttention(**args)


register(LayerType(
    name="MultiheadAttention", family="attention",
    args={"embed_dim": Arg(Int(1), inferred=True), "num_heads": Arg(Int(1)), "dropout": Arg(Float(0.0, 1.0), 0.0),
          "bias": Arg(Bool(), True), "add_bias_kv": Arg(Bool(), False), "add_zero_attn": Arg(Bool(), False),
          "batch_first": Arg(Bool(), False)},
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
    name="TransformerEncoderLayer", family="attention",
    args={"d_model": Arg(Int(1), inferred=True), "nhead": Arg(Int(1)), "dim_feedforward": Arg(Int(1), 2048),
          "dropout": Arg(Float(0.0, 1.0), 0.1), "activation": Arg(Choice("relu", "gelu"), "relu"),
          "layer_norm_eps": Arg(Float(0.0, open_min=True), 1e-5), "batch_first": Arg(Bool(), False),
          "norm_first": Arg(Bool(), False), "bias": Arg(Bool(), True)},
    infer=attention("d_model", "nhead"), params=_tel_params,
    macs=lambda a, x, y: _sum(dims.mul(x[0], 2 * a["d_model"] * a["dim_feedforward"]), _attn_macs(a["d_model"], x[0])),
    summary=lambda a: f"TransformerEncoderLayer({a.get('d_model', '?')}, heads={a['nhead']}, ff={a['dim_feedforward']})",
    label=lambda a: "encoder",
    examples=[Example({"nhead": 2, "dim_feedforward": 32, "batch_first": True}, (5, 8)),
              Example({"nhead": 4, "dim_feedforward": 16, "norm_first": True, "activation": "gelu", "bias": False,
                       "batch_first": True}, (3, 16))],
))
