"""Slicing, selecting and reducing along a dimension: Narrow, Chunk, Select, Mean, Max, Sum.

Dimensions count the batch as dim 0, as torch does (`- Select: {dim: 1, index: 0}` is `x[:, 0]`), and
may be negative; the batch itself cannot be sliced or reduced. Their modules are in dlspec.modules.
"""

from __future__ import annotations

from typing import Any

from .. import codes, dims
from ..dims import Dim
from ..infer import Ctx
from ..registry import TT, Arg, Bool, Example, Int, IntList, LayerType, OneOf, register


def _module(cls: str) -> Any:
    def build(args: dict[str, Any], children: dict[str, Any]) -> Any:
        from .. import modules

        return getattr(modules, cls)(**args)
    return build


def _axis(c: Ctx, x: TT, d: int, arg: str = "dim") -> int:
    """A torch dim (the batch is 0) as an index into the per-sample shape; out of range or the batch: an error."""
    r = len(x.shape) + 1
    nd = d + r if d < 0 else d
    name = c.item.entry.name
    if not 0 <= nd < r:
        raise c.fail(codes.RANK, f"{name} dim {d} is out of range for the {r}-D input {dims.fmt_shape(x.shape)}",
                     arg=arg, notes=[c.origin()], help=f"use a dim in [1, {r - 1}] or [-{r - 1}, -1] (0 is the batch)")
    if nd == 0:
        raise c.fail(codes.RANK, f"{name} dim {d} is the batch dimension N", arg=arg,
                     help="dims count the batch as 0: the first dimension of a sample is dim 1")
    return nd - 1


def _layout(x: TT, shape: tuple[Dim, ...], kept: bool) -> str | None:
    """A sample keeps its layout when it keeps its rank; a sequence that loses its time axis is features."""
    return x.layout if kept and len(shape) == len(x.shape) else None


def _narrow(c: Ctx, x: TT) -> TT:
    i = _axis(c, x, c.a["dim"])
    size, start, length = x.shape[i], c.a["start"], c.a["length"]
    if isinstance(size, int):
        s = start + size if start < 0 else start
        if not 0 <= s <= size or s + length > size:
            raise c.fail(codes.INVALID_ARGUMENT, f"Narrow start {start} length {length} runs past the size {size} of dim "
                         f"{c.a['dim']}", arg="length", notes=[c.origin()],
                         help=f"start + length must be at most {size}")
    shp = list(x.shape)
    shp[i] = length
    return x.with_shape(tuple(shp))


register(LayerType(
    name="Narrow", family="select", structural=True,
    args={"dim": Arg(Int()), "start": Arg(Int()), "length": Arg(Int(1))}, infer=_narrow, build=_module("Narrow"),
    label=lambda a: "narrow", summary=lambda a: f"Narrow(dim {a['dim']}, {a['start']}:+{a['length']})",
    doc="the part of dim from start, length long (torch.narrow): `- Narrow: {dim: 1, start: 0, length: 58}`",
    examples=[Example({"dim": 1, "start": 2, "length": 3}, (8, 4)), Example({"dim": -1, "start": -2, "length": 2}, (3, 5))],
))


def _chunk(c: Ctx, x: TT) -> TT:
    i = _axis(c, x, c.a["dim"])
    size, n, k = x.shape[i], c.a["chunks"], c.a["index"]
    shp = list(x.shape)
    if isinstance(size, int):
        each = -(-size // n)  # torch.chunk: ceil(size / chunks) each, the last smaller, fewer when they run out
        count = -(-size // each)
        kk = k + count if k < 0 else k
        if not 0 <= kk < count:
            raise c.fail(codes.INVALID_ARGUMENT, f"Chunk index {k}: torch.chunk makes {count} chunk(s) of dim "
                         f"{c.a['dim']} (size {size}, {n} asked for)", arg="index", notes=[c.origin()],
                         help=f"use an index in [0, {count - 1}]")
        shp[i] = min(each, size - kk * each)
    elif k == 0 or (k > 0 and n > 1):
        shp[i] = dims.UNKNOWN if n > 1 else size
    return x.with_shape(tuple(shp))


register(LayerType(
    name="Chunk", family="select", structural=True,
    args={"chunks": Arg(Int(1)), "index": Arg(Int()), "dim": Arg(Int(), 1)}, infer=_chunk, build=_module("Chunk"),
    label=lambda a: "chunk", summary=lambda a: f"Chunk({a['index']} of {a['chunks']}, dim {a['dim']})",
    doc="one of the chunks torch.chunk splits dim into: `- Chunk: {chunks: 2, index: 1}` (the second half)",
    examples=[Example({"chunks": 2, "index": 1}, (6, 3, 3)), Example({"chunks": 4, "index": 2, "dim": -1}, (5,)),
              Example({"chunks": 3, "index": -1, "dim": 1}, (7, 2))],
))


def _select(c: Ctx, x: TT) -> TT:
    i = _axis(c, x, c.a["dim"])
    size, k = x.shape[i], c.a["index"]
    if isinstance(size, int) and not -size <= k < size:
        raise c.fail(codes.INVALID_ARGUMENT, f"Select index {k} is out of range for dim {c.a['dim']} of size {size}",
                     arg="index", notes=[c.origin()], help=f"use an index in [{-size}, {size - 1}] (-1 is the last)")
    shp = tuple(s for j, s in enumerate(x.shape) if j != i)
    layout = None if x.layout == "sequence" and i == 0 else ("channels" if x.layout == "channels" and i > 0
                                                              and len(shp) >= 2 else None)
    return x.with_shape(shp, layout)


register(LayerType(
    name="Select", family="select", structural=True, args={"dim": Arg(Int()), "index": Arg(Int())},
    infer=_select, build=_module("Select"), label=lambda a: "select",
    summary=lambda a: f"Select(dim {a['dim']}, {a['index']})",
    doc="one index of dim, which goes away (x.select): `- Select: {dim: 1, index: 0}` is x[:, 0] (a class token)",
    examples=[Example({"dim": 1, "index": 0}, (5, 4)), Example({"dim": -1, "index": -1}, (3, 6)),
              Example({"dim": 2, "index": 1}, (2, 3, 4))],
))


_DIMS = OneOf(Int(), IntList(text="a list of dims"))


def _dims_text(d: Any) -> str:
    return ", ".join(map(str, d)) if isinstance(d, (list, tuple)) else str(d)


def _reduce(c: Ctx, x: TT) -> TT:
    d = c.a["dim"]
    seen: dict[int, int] = {}  # axis -> the dim written for it
    for k in d if isinstance(d, (list, tuple)) else [d]:
        i = _axis(c, x, k)
        if i in seen:  # torch: "dim 1 appears multiple times in the list of dims"
            same = f"names dim {k} twice" if k == seen[i] else f"names one dimension twice: {seen[i]} and {k} are " \
                f"both dim {i + 1} of the {len(x.shape) + 1}-D input {dims.fmt_shape(x.shape)}"
            raise c.fail(codes.INVALID_ARGUMENT, f"{c.item.entry.name} dim {list(d)} {same}", arg="dim",
                         notes=[c.origin()], help="name each dimension once (torch refuses a dimension named twice)")
        seen[i] = k
    axes = sorted(seen)
    if c.a["keepdim"]:
        shp = tuple(1 if j in axes else s for j, s in enumerate(x.shape))
    else:
        shp = tuple(s for j, s in enumerate(x.shape) if j not in axes)
    return x.with_shape(shp, _layout(x, shp, True) if c.a["keepdim"] else
                        ("channels" if x.layout == "channels" and len(shp) >= 2 and 0 not in axes else None))


for _name, _op in (("Mean", "mean"), ("Max", "maximum"), ("Sum", "sum")):
    register(LayerType(
        name=_name, family="select", structural=True, args={"dim": Arg(_DIMS), "keepdim": Arg(Bool(), False)},
        positional="dim", infer=_reduce, build=_module(_name), label=lambda a: "reduce",
        summary=lambda a, n=_name: f"{n}(dim {_dims_text(a['dim'])}{', keepdim' if a['keepdim'] else ''})",  # type: ignore[misc]
        doc=f"the {_op} over dim (or a list of dims), which goes away unless keepdim: `- {_name}: 1`",
        examples=[Example({"dim": 1}, (4, 3)), Example({"dim": [2, 3], "keepdim": True}, (3, 4, 5)),
                  Example({"dim": -1}, (2, 7))],
    ))
