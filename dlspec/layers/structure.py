"""Structural layers a layer list needs and torch lacks: Sequential (and named blocks), Residual, Concat,
Last, Reshape, Permute.  Their modules live in dlspec.modules."""

from __future__ import annotations

from typing import Any

from .. import codes, dims
from ..dims import Dim
from ..infer import Ctx
from ..registry import TT, Arg, Example, Int, IntList, Layers, LayerType, Optional_, register


def _module(cls: str) -> Any:
    def build(args: dict[str, Any], children: dict[str, Any]) -> Any:
        from .. import modules

        return getattr(modules, cls)(**args, **children)
    return build


def _sequential(c: Ctx, x: TT) -> TT:
    out = c.run("layers", x)
    if out is None:
        raise c.fail(codes.NOT_KNOWN, "")
    return out


register(LayerType(
    name="Sequential", family="structure", structural=True, args={"layers": Arg(Layers())}, children=("layers",),
    positional="layers", infer=_sequential, build=lambda args, children: children["layers"],
    doc="a nested layer list (named blocks are Sequentials)",
    examples=[Example({"layers": [{"Linear": {"out_features": 4}}, "ReLU"]}, (6,))],
))


def _same_shape(c: Ctx, a: TT, b: TT, what: str) -> bool:
    if len(a.shape) != len(b.shape):
        return False
    return all(dims.UNKNOWN in (x, y) or c.same(x, y) for x, y in zip(a.shape, b.shape, strict=True))


def _residual(c: Ctx, x: TT) -> TT:
    y = c.run("body", x)
    s = c.run("shortcut", x) if c.item.children.get("shortcut") else x
    if y is None or s is None:
        raise c.fail(codes.NOT_KNOWN, "")
    if not _same_shape(c, y, s, "body"):
        def show(t: TT) -> str:
            return dims.fmt_map(t.shape) if t.layout == "channels" and len(t.shape) >= 2 else dims.fmt_shape(t.shape)
        raise c.fail(codes.MERGE_SHAPE, f"Residual adds its body's output {show(y)} to its "
                     f"{'shortcut' if c.item.children.get('shortcut') else 'input'} {show(s)}: the shapes differ",
                     notes=[f"the body maps {show(x)} to {show(y)}"],
                     help=(len(y.shape) == len(s.shape) and c.divisor_hint(list(zip(y.shape, s.shape, strict=True))))
                     or "keep the body shape-preserving (padding, stride 1, same channels), or give a `shortcut:` "
                        "list that maps the input to the body's shape (e.g. a 1×1 Conv2d)",
                     recover=y)
    return y


register(LayerType(
    name="Residual", family="structure", structural=True, prefix="res",
    args={"body": Arg(Layers()), "shortcut": Arg(Optional_(Layers()), None)}, children=("body", "shortcut"),
    positional="body", infer=_residual, build=_module("Residual"), label=lambda a: "residual",
    doc="x + body(x), or shortcut(x) + body(x) when a shortcut list is given",
    examples=[Example({"body": [{"Conv2d": {"out_channels": 4, "kernel_size": 3, "padding": 1}}, "ReLU"]}, (4, 6, 6)),
              Example({"body": [{"Conv2d": {"out_channels": 8, "kernel_size": 3, "stride": 2, "padding": 1}}],
                       "shortcut": [{"Conv2d": {"out_channels": 8, "kernel_size": 1, "stride": 2}}]}, (4, 6, 6))],
))


class _Branches(Layers):
    text = "a list of at least two layer lists"

    def check(self, v: Any) -> str | None:
        ok = isinstance(v, list) and len(v) >= 2 and all(isinstance(b, list) and b for b in v)
        return None if ok else f"must be {self.text}"


def _show(t: TT) -> str:
    """16@32×32 for a feature map, (N, T, 64) otherwise (as Residual's messages)."""
    return dims.fmt_map(t.shape) if t.layout == "channels" and len(t.shape) >= 2 else dims.fmt_shape(t.shape)


def _others(t: TT, skip: int) -> str:
    """The sizes that must agree: 'size 16×16' beside concatenated channels, else the shape with · at skip."""
    if t.layout == "channels" and skip == 0 and len(t.shape) >= 2:
        return "size " + "×".join(dims.fmt(s) for s in t.shape[1:])
    return "shape " + dims.fmt_shape(tuple("·" if j == skip else s for j, s in enumerate(t.shape)))


def _agree(a: TT, b: TT, skip: int) -> bool:
    """Same rank and the same sizes except at index skip (unknown sizes agree with anything)."""
    return len(a.shape) == len(b.shape) and all(
        p == q or dims.UNKNOWN in (p, q) for j, (p, q) in enumerate(zip(a.shape, b.shape, strict=True)) if j != skip)


def _agreeing(outs: list[TT], skip: int) -> list[list[int]]:
    """Branch indices grouped by the shape they give (all dimensions but the concatenated one)."""
    groups: list[list[int]] = []
    for i, o in enumerate(outs):
        for g in groups:
            if _agree(outs[g[0]], o, skip):
                g.append(i)
                break
        else:
            groups.append([i])
    return groups


def _concat(c: Ctx, x: TT) -> TT:
    n = len(c.item.children.get("branches", []))
    outs = [c.run("branches", x, branch=i) for i in range(n)]
    if any(o is None for o in outs):
        raise c.fail(codes.NOT_KNOWN, "")
    outs_t: list[TT] = [o for o in outs if o is not None]
    r = len(outs_t[0].shape) + 1
    d = c.a["dim"]
    nd = d + r if d < 0 else d
    if not 1 <= nd < r:
        raise c.fail(codes.RANK, f"Concat dim {d} is out of range for {r}-D branch outputs", arg="dim",
                     help=f"use a dim in [1, {r - 1}] (0 is the batch)")
    first = outs_t[0]
    groups = _agreeing(outs_t, nd - 1)
    if len(groups) > 1:
        # the shape most branches give (a tie: the one that keeps the input's other sizes) is the reference; the
        # others are named, and the pass carries on with the reference, its concatenated size unknown
        ref = max(groups, key=lambda g: (len(g), _agree(outs_t[g[0]], x, nd - 1), -g[0]))
        base = outs_t[ref[0]]
        refs = f"branch {ref[0]}" if len(ref) == 1 else \
            "branches " + ", ".join(map(str, ref[:-1])) + f" and {ref[-1]}"
        notes = [f"branch {i} maps {_show(x)} to {_show(outs_t[i])}: its {_others(outs_t[i], nd - 1)} differs "
                 f"from the {_others(base, nd - 1)} of {refs}" for g in groups if g is not ref for i in g]
        shp = list(base.shape)
        shp[nd - 1] = dims.UNKNOWN
        raise c.fail(codes.MERGE_SHAPE, f"Concat along dim {d} cannot join its branches' outputs "
                     + ", ".join(_show(o) for o in outs_t) + f": every dimension but dim {d} must agree",
                     notes=notes, help=(len({len(o.shape) for o in outs_t}) == 1 and c.divisor_hint(
                         [(o.shape[i], base.shape[i]) for o in outs_t for i in range(r - 1) if i != nd - 1]))
                     or "make the branches agree on every dimension except the concatenated one "
                     "(e.g. the same stride and padding in each)", recover=base.with_shape(tuple(shp)))
    total: Dim = 0
    parts = [o.shape[nd - 1] for o in outs_t]
    if all(isinstance(p, int) for p in parts):
        total = sum(parts)
    else:
        total = " + ".join(dims.fmt(p) for p in parts)
    shp = list(first.shape)
    shp[nd - 1] = total
    return first.with_shape(tuple(shp))


register(LayerType(
    name="Concat", family="structure", structural=True,
    args={"branches": Arg(_Branches()), "dim": Arg(Int(), 1)}, children=("branches",), positional="branches",
    infer=_concat, build=_module("Concat"), label=lambda a: "concat",
    doc="runs each branch on the input and concatenates the results along dim (1: channels/features)",
    examples=[Example({"branches": [[{"Conv2d": {"out_channels": 3, "kernel_size": 1}}],
                                    [{"Conv2d": {"out_channels": 5, "kernel_size": 3, "padding": 1}}]]}, (2, 5, 5)),
              Example({"branches": [[{"Linear": {"out_features": 3}}], ["Identity"]], "dim": -1}, (4,))],
))


def _last(c: Ctx, x: TT) -> TT:
    if len(x.shape) < 2:
        raise c.fail(codes.RANK, f"Last takes the last step of a sequence (N, T, F) but receives {dims.fmt_shape(x.shape)}",
                     notes=[c.origin()])
    if x.layout == "channels":  # x[:, -1] of (N, C, L) is the last channel, not the last position
        c.warn(codes.LAYOUT, f"Last takes x[:, -1], the last channel of the channels-first map "
               f"{dims.fmt_map(x.shape)} {dims.fmt_shape(x.shape)}, not its last position", notes=[c.origin()],
               help="for the last position write `- Select: {dim: -1, index: -1}`, or `- Permute: [0, 2, 1]` "
                    "before Last to read the map as a sequence")
    return x.with_shape(tuple(x.shape[1:]), "sequence" if len(x.shape) > 2 else None)


register(LayerType(
    name="Last", family="structure", structural=True, args={}, infer=_last, build=_module("Last"),
    label=lambda a: "last", doc="the last time step: (N, T, F) → (N, F)",
    examples=[Example({}, (7, 5)), Example({}, (3, 4, 2))],
))


def _reshape(c: Ctx, x: TT) -> TT:
    target = list(c.a["shape"])
    if target.count(-1) > 1:
        raise c.fail(codes.RESHAPE, "Reshape allows at most one -1", arg="shape")
    have = dims.product(x.shape)
    known_prod = dims.product(tuple(t for t in target if t != -1))
    if -1 in target:
        if isinstance(have, int) and isinstance(known_prod, int):
            if known_prod == 0 or have % known_prod:
                raise c.fail(codes.RESHAPE, f"Reshape cannot fit {have} values ({dims.fmt_shape(x.shape)}) into {target}",
                             arg="shape", notes=[c.origin()])
            target[target.index(-1)] = have // known_prod
        else:
            target[target.index(-1)] = dims.floordiv(have, known_prod) if isinstance(known_prod, int) else dims.UNKNOWN
    elif isinstance(have, int):
        if have != known_prod:
            raise c.fail(codes.RESHAPE, f"Reshape to {target} needs {known_prod} values per sample but receives {have} "
                         f"{dims.fmt_shape(x.shape)}", arg="shape", notes=[c.origin()],
                         help="the sizes must multiply to " + str(have) + " (one of them may be -1)")
    elif have != known_prod and have != dims.UNKNOWN:
        raise c.fail(codes.SYMBOLIC_SIZE, f"Reshape to a fixed {target} but the input {dims.fmt_shape(x.shape)} has a "
                     "symbolic size", arg="shape", help="use -1 for the size that varies")
    shp = tuple(target)
    return x.with_shape(shp, "channels" if len(shp) >= 3 else None)


register(LayerType(
    name="Reshape", family="shape", structural=True, reshapes=True,
    args={"shape": Arg(IntList(1, allow_minus_one=True, text="a list of sizes for one sample (one may be -1)"))},
    positional="shape", infer=_reshape, build=_module("Reshape"), label=lambda a: "reshape",
    doc="reshapes each sample (the batch is kept): `- Reshape: [1, 28, 28]`",
    examples=[Example({"shape": [1, 28, 28]}, (784,)), Example({"shape": [-1, 4]}, (3, 8)), Example({"shape": [6]}, (2, 3))],
))


def _permute(c: Ctx, x: TT) -> TT:
    p = list(c.a["dims"])
    r = len(x.shape) + 1
    if sorted(p) != list(range(r)):
        raise c.fail(codes.RANK, f"Permute dims {p} must be a permutation of 0..{r - 1} for the {r}-D input "
                     f"{dims.fmt_shape(x.shape)}", arg="dims", help="dims count the batch: 0 stays first")
    if p[0] != 0:
        raise c.fail(codes.RANK, f"Permute dims {p} would move the batch dimension", arg="dims",
                     help="keep 0 first, e.g. [0, 2, 1]")
    full = ("N",) + tuple(x.shape)
    shp = tuple(full[i] for i in p[1:])
    return x.with_shape(shp, None)


register(LayerType(
    name="Permute", family="shape", structural=True, reshapes=True, args={"dims": Arg(IntList(0, text="a permutation of the dims"))},
    positional="dims", infer=_permute, build=_module("Permute"), label=lambda a: "permute",
    doc="torch.permute with the batch counted as dim 0 (which must stay first): `- Permute: [0, 2, 1]`",
    examples=[Example({"dims": [0, 2, 1]}, (3, 5)), Example({"dims": [0, 2, 3, 1]}, (2, 3, 4))],
))
