"""Stage 4, build: turn a checked spec into a torch.nn.Module.  The only stage of `check` that imports torch."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from .infer import Checked, Row
from .schema import LAYER_ATTRIBUTES


class SpecError(ValueError):
    """A spec with errors was given to build(); the message holds the rendered diagnostics."""

    def __init__(self, checked: Checked):
        from .report import render_diagnostics

        self.checked = checked
        super().__init__("the spec has errors:\n" + render_diagnostics(checked))


class ResourceError(SpecError):
    """A valid spec too large to build on this machine: the message gives the memory its weights need, what
    this machine has available, and the layer that takes the most (a `memory` diagnostic, in `diagnostics`)."""

    def __init__(self, checked: Checked, diagnostics: list[Any]):
        from .diagnostics import render

        self.checked, self.diagnostics = checked, diagnostics
        ValueError.__init__(self, "\n\n".join(render(d, doc=checked.spec.doc) for d in diagnostics))


def prefix(row: Row) -> str:
    if row.item.block:
        return row.item.block
    return row.entry.prefix or row.entry.name.lower()


def ctor_args(row: Row) -> dict[str, Any]:
    """The constructor's keyword arguments: what was written or inferred (torch's defaults do the rest)."""
    out = {}
    for name, spec in row.entry.args.items():
        if name in row.entry.children or name not in row.args:
            continue
        if name in row.item.written or spec.inferred or spec.required:
            out[name] = row.args[name]
    return out


Step = tuple  # (key, row, refs, pos, last, named): see layout()


def layout(rows: list[Row], inputs: list[str] | None = None, outputs: list[str] | None = None) -> tuple[list[Any], bool]:
    """How a layer list becomes modules: for each row its module's key (conv1, relu1, ...: the state_dict
    names), what it reads (None: the previous output; else names and absolute entry positions, "input" for the
    list's input), its entry position, whether it is that entry's last repetition, and the name its output gets;
    and whether the list is a graph (an entry reads a named tensor, or several inputs or outputs).  build_list
    and the exporters (export.py) both follow it, so the exported module has dlspec.build's names."""
    counts: dict[str, int] = {}
    keys: set[str] = set()

    def numbered(base: str, n: int) -> str:
        # a separator when the name ends in a digit: block basic16's first use is basic16_1, not basic161
        return f"{base}_{n}" if base[-1:].isdigit() else f"{base}{n}"

    steps = []
    positions = _positions(rows)
    for row, pos in zip(rows, positions, strict=True):
        if row.item.name:
            base = row.item.name
            key = base if row.item.repeat == 1 else numbered(base, row.rep + 1)
        else:
            base = prefix(row)
            counts[base] = counts.get(base, 0) + 1
            key = numbered(base, counts[base])
        while key in keys or key in LAYER_ATTRIBUTES:  # `name: forward` would hide the module's forward: forward_
            key += "_"
        keys.add(key)
        refs = None
        if row.item.sources is not None and row.rep == 0:
            refs = [s if isinstance(s, str) else (pos + s if s < 0 else s) for s in row.item.sources]
            refs = ["input" if r == -1 else r for r in refs]  # one entry before the first: the list's input
        steps.append((key, row, refs, pos, row.rep == row.item.repeat - 1, row.item.name))
    graph = any(step[2] is not None for step in steps) or len(inputs or []) > 1 or bool(outputs)
    return steps, graph


def build_list(rows: list[Row], inputs: list[str] | None = None, outputs: list[str] | None = None) -> Any:
    """The module of a layer list: an nn.Sequential (SpecModel) when each entry reads the previous one, a Graph
    when an entry reads a named tensor (`from:`), or the spec has several inputs or outputs."""
    from .modules import Graph, SpecModel

    steps, graph = layout(rows, inputs, outputs)
    named = OrderedDict((key, build_row(row)) for key, row, *_ in steps)
    if not graph:
        return SpecModel(named)
    return Graph(named, [(key, refs, pos, last, name) for key, _, refs, pos, last, name in steps],
                 list(inputs or ["input"]), list(outputs or []))


def _positions(rows: list[Row]) -> list[int]:
    """Each row's entry position in its list (the repetitions of an entry share it)."""
    out, pos, prev = [], -1, None
    for row in rows:
        if row.item is not prev or row.rep == 0:
            pos += 1
            prev = row.item
        out.append(pos)
    return out


def build_row(row: Row) -> Any:
    children: dict[str, Any] = {}
    for name, kids in row.children.items():
        if kids and isinstance(kids[0], list):
            children[name] = [build_list(b) for b in kids]
        else:
            children[name] = build_list(kids)
    if row.entry.build is not None:
        return row.entry.build(ctor_args(row), children)
    import torch.nn as nn

    return getattr(nn, row.entry.name)(**ctor_args(row))


def build_checked(checked: Checked) -> Any:
    """The model of a checked spec: SpecError when it has errors, ResourceError when its weights would not fit
    in this machine's memory (checked before a weight is allocated; for several networks, all their weights).

    A spec of several networks (`networks:`) gives an nn.ModuleDict of them by name, in file order, each what a
    spec of that one network builds."""
    if not checked.ok:
        raise SpecError(checked)
    from .preflight import build_refusal

    refused = build_refusal(checked)
    if refused is not None:
        raise ResourceError(checked, [refused])
    if not checked.networks:
        return build_network(checked)
    import torch.nn as nn

    model: Any = nn.ModuleDict({name: build_network(net) for name, net in checked.networks.items()})
    model.spec_name = checked.spec.name
    return model


def build_network(checked: Checked) -> Any:
    """The module of one network (a spec's only one, or one of its `networks:`), its `spec_name` the spec's name
    (the network's name)."""
    spec = checked.spec
    model = build_list(checked.rows, list(spec.inputs), spec.outputs)
    model.spec_name = spec.name
    return model
