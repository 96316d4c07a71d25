"""Element-wise math on one tensor: Exp, Log, Scale (times a constant).  Each keeps the shape and has no
weights; their modules are in dlspec.modules (torch.nn has none of them)."""

from __future__ import annotations

from ..infer import Ctx
from ..registry import TT, Arg, Example, Float, LayerType, register
from .merge import _module


def _float(c: Ctx, x: TT) -> TT:
    c.float_input()
    return x


for _name, _doc in (
        ("Exp", "e to the power of each value (torch.exp): a log-variance to a variance, a log-rate to a rate"),
        ("Log", "the natural logarithm of each value (torch.log); it needs positive inputs (after Exp, Softplus, "
                "Sigmoid), as 0 gives -inf and a negative value nan")):
    register(LayerType(
        name=_name, family="math", structural=True, args={}, infer=_float, build=_module(_name),
        keeps_channels=True, per_step=True, doc=_doc,
        examples=[Example({}, (3, 4)), Example({}, (2, 3, 3))],
    ))


register(LayerType(
    name="Scale", family="math", structural=True, args={"factor": Arg(Float(), doc="the constant it multiplies by")},
    infer=_float, build=_module("Scale"), keeps_channels=True, per_step=True,
    summary=lambda a: f"Scale(×{a['factor']:g})",
    doc="each value times a constant factor (x * factor); `- Scale: 0.5`",
    examples=[Example({"factor": 0.5}, (3, 4)), Example({"factor": -2.0}, (2, 3, 3))],
))
