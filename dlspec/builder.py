"""Stage 4, build: turn a checked spec into a torch.nn.Module.  The only stage of `check` that imports torch."""

from __future__ import annotations

import re
from collections import OrderedDict
from typing import Any

from .infer import Checked, Row

_PREFIX = [
    (r"ConvTranspose\dd", "deconv"), (r"Conv\dd", "conv"), (r"(Max|Avg|LP)Pool\dd", "pool"),
    (r"Adaptive(Max|Avg)Pool\dd", "pool"), (r"Linear", "fc"), (r"BatchNorm\dd", "bn"), (r"LayerNorm", "ln"),
    (r"GroupNorm", "gn"), (r"InstanceNorm\dd", "inorm"), (r"RMSNorm", "rms"), (r".*Dropout.*", "drop"),
    (r"Embedding", "embed"), (r"MultiheadAttention", "attn"), (r"TransformerEncoderLayer", "encoder"),
    (r"Residual", "res"), (r".*Pad\dd", "pad"),
]


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
    name = row.entry.name
    for pat, p in _PREFIX:
        if re.fullmatch(pat, name):
            return p
    return name.lower()


def ctor_args(row: Row) -> dict[str, Any]:
    """The constructor's keyword arguments: what was written or inferred (torch's defaults do the rest)."""
    out = {}
    for name, spec in row.entry.args.items():
        if name in row.entry.children or name not in row.args:
            continue
        if name in row.item.written or spec.inferred or spec.required:
            out[name] = row.args[name]
    return out


def build_list(rows: list[Row]) -> Any:
    from .modules import SpecModel

    counts: dict[str, int] = {}
    named: OrderedDict[str, Any] = OrderedDict()
    def numbered(base: str, n: int) -> str:
        # a separator when the name ends in a digit: block basic16's first use is basic16_1, not basic161
        return f"{base}_{n}" if base[-1:].isdigit() else f"{base}{n}"

    for row in rows:
        if row.item.name:
            base = row.item.name
            key = base if row.item.repeat == 1 else numbered(base, row.rep + 1)
        else:
            base = prefix(row)
            counts[base] = counts.get(base, 0) + 1
            key = numbered(base, counts[base])
        while key in named:
            key += "_"
        named[key] = build_row(row)
    return SpecModel(named)


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
    in this machine's memory (checked before a weight is allocated)."""
    if not checked.ok:
        raise SpecError(checked)
    from .preflight import build_refusal

    refused = build_refusal(checked)
    if refused is not None:
        raise ResourceError(checked, [refused])
    model = build_list(checked.rows)
    model.spec_name = checked.spec.name
    return model
