"""Merges: layers that read two or more tensors named with `from:` (Add, Multiply, Concatenate, Average,
Maximum).  Element-wise merges broadcast as torch does, per sample and with the same number of
dimensions (a size 1 stretches); Concatenate joins along one dimension.  Their modules are in
dlspec.modules; the graph a spec's `from:` draws is run by dlspec.modules.Graph.  two_inputs is what a layer of
exactly two inputs reads (TransformerDecoderLayer, Transformer, Reparameterize)."""

from __future__ import annotations

from typing import Any

from .. import codes, dims
from ..dims import Dim
from ..infer import Ctx, ShapeError
from ..registry import TT, Arg, Example, Int, LayerType, register


def _module(cls: str) -> Any:
    def build(args: dict[str, Any], children: dict[str, Any]) -> Any:
        from .. import modules

        return getattr(modules, cls)(**args)
    return build


def _show(t: TT) -> str:
    return dims.fmt_map(t.shape) if t.layout == "channels" and len(t.shape) >= 2 else dims.fmt_shape(t.shape)


def _sources(c: Ctx) -> str:
    return ", ".join(_show(t) for t in c.inputs)


def _divisor_hint(c: Ctx, xs: list[TT], at: Any) -> str | None:
    """The `symbols:` declaration under which the inputs' sizes agree at these dims (sizes 1 broadcast)."""
    pairs = []
    for i in at:
        sizes = [t.shape[i] for t in xs if t.shape[i] not in (1, dims.UNKNOWN)]
        pairs += [(s, sizes[0]) for s in sizes[1:]]
    return c.divisor_hint(pairs)


def _broadcast(c: Ctx, what: str) -> TT:
    """torch's broadcasting of the inputs, per sample: equal sizes, or 1 against any size."""
    xs = c.inputs
    ranks = {len(t.shape) for t in xs}
    if len(ranks) > 1:
        small = min(xs, key=lambda t: len(t.shape))
        big = max(xs, key=lambda t: len(t.shape))
        fit = list(small.shape) + [1] * (len(big.shape) - len(small.shape))
        raise c.fail(codes.MERGE_SHAPE, f"{c.item.entry.name} {what} tensors of different ranks: {_sources(c)}",
                     notes=["torch would align them from the last dimension, so the batch of one would meet a size "
                            "of the other"],
                     help=f"reshape the smaller one to the same rank first, e.g. `- Reshape: {fit}`", recover=big)
    out: list[Dim] = []
    for sizes in zip(*(t.shape for t in xs), strict=True):
        known = [s for s in sizes if s != 1 and s != dims.UNKNOWN]
        if any(s == dims.UNKNOWN for s in sizes):
            out.append(known[0] if known and all(c.same(s, known[0]) for s in known) else dims.UNKNOWN)
        elif not known:
            out.append(1)
        elif all(c.same(s, known[0]) for s in known):
            out.append(known[0])
        else:
            raise c.fail(codes.MERGE_SHAPE, f"{c.item.entry.name} cannot broadcast {_sources(c)}: sizes "
                         f"{', '.join(dims.fmt(s) for s in sizes)} differ (only equal sizes, or 1, combine)",
                         help=_divisor_hint(c, xs, range(len(out), len(xs[0].shape)))
                         or "make the shapes agree (the same channels and size), or reduce one to size 1 where it "
                            "should stretch", recover=xs[0])
    layout = next((t.layout for t in xs if len(t.shape) == len(out) and t.layout), None)
    dtype = "long" if all(t.dtype == "long" for t in xs) else "float"
    return TT(tuple(out), dtype, layout)


def two_inputs(c: Ctx) -> tuple[TT, TT]:
    """The two tensors a two-input layer reads.  A `from:` that names another number is the schema stage's
    `reference` error, said there; what is left is a repetition after the first (`repeat:`), which reads only
    the output of the one before."""
    if len(c.inputs) == 2:
        return c.inputs[0], c.inputs[1]
    if c.item.sources is not None and len(c.item.sources) == 2:
        name = c.item.entry.name
        raise c.fail(codes.REFERENCE, f"{name} reads two tensors, but `repeat: {c.item.repeat}` gives each "
                     "repetition after the first only the output of the one before",
                     help=f"leave out repeat, or write {name} once per use, each with its own `from:`")
    raise ShapeError(codes.NOT_KNOWN, f"{c.item.entry.name} reads two tensors")


def _elementwise(what: str) -> Any:
    def infer(c: Ctx, x: TT) -> TT:
        return _broadcast(c, what)
    return infer


for _name, _what, _doc in (
        ("Add", "adds", "the sum of its inputs, element by element (a residual or skip connection)"),
        ("Multiply", "multiplies", "the product of its inputs, element by element (a gate, squeeze-excitation)"),
        ("Average", "averages", "the mean of its inputs, element by element"),
        ("Maximum", "takes the maximum of", "the maximum of its inputs, element by element")):
    register(LayerType(
        name=_name, family="merge", structural=True, args={}, infer=_elementwise(_what), build=_module(_name),
        arity=0, label=lambda a: "merge", doc=_doc + "; `- " + _name + ": [a, b]` reads a and b",
        examples=[Example({}, (4, 5, 5)), Example({}, (6,))],
    ))


def _concatenate(c: Ctx, x: TT) -> TT:
    xs = c.inputs
    r = len(xs[0].shape) + 1
    d = c.a["dim"]
    nd = d + r if d < 0 else d
    if any(len(t.shape) + 1 != r for t in xs):
        raise c.fail(codes.MERGE_SHAPE, f"Concatenate joins tensors of one rank, got {_sources(c)}",
                     help="reshape them to the same number of dimensions first", recover=xs[0])
    if not 1 <= nd < r:
        raise c.fail(codes.RANK, f"Concatenate dim {d} is out of range for {r}-D inputs", arg="dim",
                     help=f"use a dim in [1, {r - 1}] (0 is the batch)")
    for j in range(r - 1):
        if j == nd - 1:
            continue
        sizes = [t.shape[j] for t in xs if t.shape[j] != dims.UNKNOWN]
        if any(not c.same(q, sizes[0]) for q in sizes):
            raise c.fail(codes.MERGE_SHAPE, f"Concatenate along dim {d} cannot join {_sources(c)}: every dimension "
                         f"but dim {d} must agree (dim {j + 1}: {', '.join(dims.fmt(t.shape[j]) for t in xs)})",
                         help=_divisor_hint(c, xs, [i for i in range(r - 1) if i != nd - 1])
                         or "make them agree on every other dimension (e.g. crop or pad the skip connection, or "
                            "use the same stride)", recover=xs[0])
    parts = [t.shape[nd - 1] for t in xs]
    total: Dim = sum(p for p in parts if isinstance(p, int)) if all(isinstance(p, int) for p in parts) else \
        dims.UNKNOWN if dims.UNKNOWN in parts else " + ".join(dims.fmt(p) for p in parts)
    shp = list(xs[0].shape)
    shp[nd - 1] = total
    return xs[0].with_shape(tuple(shp))


register(LayerType(
    name="Concatenate", family="merge", structural=True, args={"dim": Arg(Int(), 1)}, infer=_concatenate,
    build=_module("Concatenate"), arity=0, label=lambda a: "cat",
    summary=lambda a: f"Concatenate(dim {a['dim']})" if a["dim"] != 1 else "Concatenate",
    doc="joins its inputs along dim (1: channels or features); `- Concatenate: [up, skip]`",
    examples=[Example({}, (3, 4, 4)), Example({"dim": -1}, (2, 5))],
))
