"""RNN, LSTM, GRU: on a layer list they give their output sequence (N, T, H·directions)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import codes, dims
from ..dims import Dim
from ..infer import Ctx
from ..registry import TT, Arg, Bool, Choice, ErrorExample, Example, Float, Int, KerasName, LayerType, register

GATES = {"RNN": 1, "GRU": 3, "LSTM": 4}


def batch_first_warning(c: Ctx, x: TT) -> None:
    if not c.a.get("batch_first"):
        name = c.item.entry.name
        t, f = (dims.fmt(d) for d in x.shape[:2])
        c.warn(codes.BATCH_FIRST, f"{name} without batch_first: true reads the batch-first input (N, {t}, {f}) as "
               f"(T, N, F): the batch becomes the time axis and the {t} steps become the batch",
               arg="batch_first" if c.written("batch_first") else None,
               help=f"add batch_first: true to {name} (dlspec specs are batch-first: (N, T, F))")


def _out_size(a: dict[str, Any]) -> int:
    h = a.get("proj_size") or a["hidden_size"]
    return int(h * (2 if a["bidirectional"] else 1))


def recurrent(name: str) -> Any:
    def infer(c: Ctx, x: TT) -> TT:
        c.float_input()
        c.rank((2,), "sequence", help="a recurrent layer reads (N, T, F); for one value per step write input: [T, 1]"
               if len(x.shape) == 1 else "flatten the extra dimensions into features, or Reshape to [T, F]")
        if x.layout == "channels":  # (N, C, L) from a Conv1d: the recurrent layer would step through channels
            ch, length = (dims.fmt(d) for d in x.shape)
            c.warn(codes.LAYOUT, f"{name} reads the channels-first map (N, {ch}, {length}) as a sequence (N, T, F): "
                   f"its {ch} channels would be the time steps and the {length} positions the features",
                   notes=[c.origin()], help=f"put `- Permute: [0, 2, 1]` before it: it then reads {length} steps of "
                   f"{ch} features")
        f = c.need_known(x.shape[1], "input_size", "input features")
        c.infer_size("input_size", f)
        batch_first_warning(c, x)
        a = c.a
        if a["dropout"] > 0 and a["num_layers"] == 1:
            c.warn(codes.NO_EFFECT, f"{name} dropout {a['dropout']} has no effect with num_layers 1 (it acts between layers)",
                   arg="dropout", help="use num_layers ≥ 2, or put a Dropout layer after it")
        if a.get("proj_size", 0) and a["proj_size"] >= a["hidden_size"]:
            raise c.fail(codes.INVALID_ARGUMENT, f"LSTM proj_size {a['proj_size']} must be smaller than hidden_size "
                         f"{a['hidden_size']}", arg="proj_size",
                         help=f"proj_size must be less than {a['hidden_size']}, or 0 (no projection)")
        return TT((x.shape[0], _out_size(a)), "float", "sequence")
    return infer


def _per_step(name: str, a: dict[str, Any]) -> tuple[int, int]:
    """(parameters, multiply-adds per time step) of the whole stack."""
    g, h = GATES[name], a["hidden_size"]
    p = a.get("proj_size") or 0
    hout = p or h
    dirs = 2 if a["bidirectional"] else 1
    params = macs = 0
    # the first layer reads input_size features, the num_layers - 1 after it hout * dirs: counted in closed
    # form, so that a num_layers of 10**12 costs no more than 1
    for i, count in ((a["input_size"], 1), (hout * dirs, a["num_layers"] - 1)):
        per = g * h * i + g * h * hout + (2 * g * h if a["bias"] else 0) + (p * h if p else 0)
        params += per * dirs * count
        macs += (g * h * (i + hout) + (p * h if p else 0)) * dirs * count
    return params, macs


def _params(name: str) -> Callable[[dict[str, Any]], int]:
    def params(a: dict[str, Any]) -> int:
        return _per_step(name, a)[0]
    return params


def _label(name: str) -> Callable[[dict[str, Any]], str]:
    def label(a: dict[str, Any]) -> str:
        return name.lower()
    return label


def _macs(name: str) -> Any:
    def macs(a: dict[str, Any], x: Any, y: Any) -> Dim:
        return dims.mul(x[0], _per_step(name, a)[1])
    return macs


def _summary(name: str) -> Any:
    def summary(a: dict[str, Any]) -> str:
        extra = [f"layers={a['num_layers']}"] if a["num_layers"] != 1 else []
        if a["bidirectional"]:
            extra.append("bidirectional")
        if a.get("proj_size"):
            extra.append(f"proj={a['proj_size']}")
        return f"{name}({a.get('input_size', '?')}→{a['hidden_size']}" + "".join(", " + e for e in extra) + ")"
    return summary


# values autograd keeps per step and hidden unit (per layer and direction) in torch's CPU kernels, measured by
# storage with saved_tensors_hooks on torch 2.13 (2026-12-02): LSTM 17.5-18.9, GRU 7.2-7.6, RNN 1.2-1.7
_SAVED = {"LSTM": 18, "GRU": 8, "RNN": 2}


def _saved(name: str) -> Any:
    def saved(a: dict[str, Any], x: Any, y: Any) -> Any:
        per_step = _SAVED[name] * a["hidden_size"] * a["num_layers"] * (2 if a["bidirectional"] else 1)
        return dims.mul(y[0], per_step)
    return saved


def _build(name: str) -> Any:
    def build(args: dict[str, Any], children: dict[str, Any]) -> Any:
        from .. import modules

        return getattr(modules, name)(**args)
    return build


for _name in ("RNN", "LSTM", "GRU"):
    _args: dict[str, Arg] = {"input_size": Arg(Int(1), inferred=True), "hidden_size": Arg(Int(1)),
                             "num_layers": Arg(Int(1), 1)}
    if _name == "RNN":
        _args["nonlinearity"] = Arg(Choice("tanh", "relu"), "tanh")
    _args.update({"bias": Arg(Bool(), True), "batch_first": Arg(Bool(), False), "dropout": Arg(Float(0.0, 1.0), 0.0),
                  "bidirectional": Arg(Bool(), False)})
    if _name == "LSTM":
        _args["proj_size"] = Arg(Int(0), 0)
    _ex = [Example({"hidden_size": 20, "batch_first": True}, (7, 10)),
           Example({"hidden_size": 12, "num_layers": 2, "bidirectional": True, "dropout": 0.1, "batch_first": True}, (5, 3)),
           Example({"hidden_size": 8, "bias": False, "batch_first": True}, (4, 6))]
    if _name == "LSTM":
        _ex.append(Example({"hidden_size": 16, "proj_size": 5, "num_layers": 2, "batch_first": True}, (6, 4)))
    if _name == "RNN":
        _ex.append(Example({"hidden_size": 9, "nonlinearity": "relu", "batch_first": True}, (3, 2)))
    register(LayerType(
        name=_name, family="recurrent", args=_args, infer=recurrent(_name), mixes_steps=True, stateful=True,
        errors=[ErrorExample({"input_size": 5, "hidden_size": 4, "batch_first": True}, (3, 4), codes.SHAPE_MISMATCH),
                ErrorExample({"input_size": 4, "hidden_size": 4, "batch_first": True}, (2, 3, 4), codes.RANK)]
        + ([ErrorExample({"input_size": 4, "hidden_size": 4, "proj_size": 4, "batch_first": True}, (3, 4),
                         codes.INVALID_ARGUMENT)] if _name == "LSTM" else []),
        keras=(KerasName("SimpleRNN", implied=(("batch_first", True),)),) if _name == "RNN" else (),  # Keras data is batch-first
        per_step=lambda a: not a["bidirectional"],  # a step at a time, its state carried
        params=_params(_name), macs=_macs(_name), summary=_summary(_name), saved=_saved(_name),
        label=_label(_name), build=_build(_name), examples=_ex,
        doc="gives the output sequence (N, T, hidden·directions); take the last step with `Last`",
    ))
