"""Stage 5, report: the layer table and the JSON document of a checked spec.  Rendering happens here, last."""

from __future__ import annotations

from typing import Any

from . import dims
from .diagnostics import render
from .dims import Dim
from .infer import Checked, Row
from .safeio import shown
from .schema import yaml_text


def fmt_int(n: Dim) -> str:
    if isinstance(n, int):
        return f"{n:,}"
    return str(n)


def fmt_count(n: Dim) -> str:
    """1234567 -> '1.23 M'; small numbers stay exact."""
    if not isinstance(n, int):
        return str(n)
    for scale, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return str(n)


def describe_row(row: Row) -> str:
    """The layer column: `name: ` when the spec names the layer, then the layer with its main arguments."""
    label = f"{row.item.name}: " if row.item.name else ""
    return label + _describe(row)


def _describe(row: Row) -> str:
    if row.item.stand_in:  # checked as the layer an unknown name probably means: 'Flaten → Flatten'
        kids = row.children.get("layers", []) if not row.item.block else []
        shown = " + ".join(_describe(k) for k in kids) if kids else _what(row)
        return f"{row.item.key} → {shown}"
    return _what(row)


def _what(row: Row) -> str:
    e = row.entry
    if row.item.unknown:
        return f"{row.item.key} (unknown)" if row.item.key else "(unreadable entry)"
    if row.item.block:
        given = ", ".join(f"{k}={yaml_text(v)}" for k, v in row.item.block_args.items())
        return f"{row.item.block}({given})" if given else f"{row.item.block} (block)"
    if e.summary is not None and not row.failed and not row.item.dropped:
        try:
            return e.summary(row.args)
        except (KeyError, TypeError, ValueError):
            pass
    return e.name


def _count_cell(row: Row, v: Dim | None) -> str:
    return "" if v is None else fmt_int(v)


def _shape_cols(row: Row) -> tuple[str, str]:
    if row.output is None:
        return "?", ""
    shp = dims.fmt_shape(row.output.shape)
    fm = dims.fmt_map(row.output.shape) if row.output.layout == "channels" and len(row.output.shape) >= 2 else ""
    return shp, fm


def _reads(row: Row) -> str:
    """The `reads` column: what `from:` names, as written (a merge or a layer that skips back)."""
    if row.item.sources is None or row.rep:
        return ""
    return ", ".join(map(str, row.item.sources))


def is_graph(checked: Checked) -> bool:
    return any(r.item.sources is not None for r in checked.all_rows()) or len(checked.spec.inputs) > 1


def table_rows(checked: Checked, depth: int | None = None) -> list[list[str]]:
    """The table's cells: the inputs, then every row, nested ones (labelled, indented) down to `depth` levels
    below the top (None: all; 0: the top-level entries only, their counts including what they hold)."""
    out: list[list[str]] = []
    spec = checked.spec
    graph = is_graph(checked)
    for name, inp in (spec.inputs.items() if spec.inputs else ()):
        fm = dims.fmt_map(inp.shape) if inp.layout == "channels" else ""
        dtype = "" if inp.dtype == "float" else f" ({inp.dtype} ids)"
        title = "input" if name == "input" else f"input {name}"
        out.append(["", title + dtype, dims.fmt_shape(inp.shape), fm, "", ""] + ([""] if graph else []))

    def label(text: str, indent: int) -> None:
        out.append(["", "  " * indent + text, "", "", "", ""] + ([""] if graph else []))

    def visit(row: Row, indent: int) -> None:
        idx = ""
        if row.depth == 0:
            idx = str(row.item.index) + (f"[{row.rep}]" if row.item.repeat > 1 else "")
        elif row.item.repeat > 1:
            idx = f"[{row.rep}]"
        shp, fm = _shape_cols(row)
        out.append([idx, "  " * indent + describe_row(row), shp, fm, _count_cell(row, row.params),
                    _count_cell(row, row.macs)] + ([_reads(row)] if graph else []))
        # nested lists are labelled (`body:`, `shortcut:`, `branch 0:`, ...) unless there is only one kind of
        # them, as in a block or a Sequential; a stand-in's torch layers are in its own line already
        labelled = len(row.entry.children) > 1
        if depth is not None and row.depth >= depth:
            return
        for arg, v in ({} if row.item.stand_in and not row.item.block else row.children).items():
            if v and isinstance(v[0], list):
                for i, branch in enumerate(v):
                    label(f"branch {i}:", indent + 1)
                    for r in branch:
                        visit(r, indent + 2)
            elif labelled:
                label(f"{arg}:", indent + 1)
                for r in v:
                    visit(r, indent + 2)
            else:
                for r in v:
                    visit(r, indent + 1)

    for row in checked.rows:
        visit(row, 0)
    return out


_CELL = 120  # characters of a table cell: a longer one (a symbolic MAC count summed over thousands of rows) is
# shortened with `…` (the JSON has it whole), instead of widening every row of its column


def _clipped(cell: str) -> str:
    return cell if len(cell) <= _CELL else cell[:_CELL - 13] + "…" + cell[-12:]


def render_table(checked: Checked, depth: int | None = None) -> str:
    head = ["#", "layer", "output", "map", "params", "MACs"] + (["reads"] if is_graph(checked) else [])
    rows = [[shown(_clipped(c)) for c in r] for r in table_rows(checked, depth)]  # controls escaped
    widths = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]
    right = {0, 4, 5}

    def line(cells: list[str]) -> str:
        parts = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))]
        return "  ".join(parts).rstrip()

    lines = [line(head), line(["-" * w for w in widths])]
    lines += [line(r) for r in rows]
    return "\n".join(lines)


def totals_line(checked: Checked) -> str:
    """The sums of the table's numbers; the rows left blank (errors, unknown input) are said to be left out."""
    p = checked.params
    mb = p * 4 / 1e6
    macs = checked.macs
    m = fmt_count(macs) if isinstance(macs, int) else str(macs)
    out = dims.fmt_shape(checked.output.shape) if checked.output else "?"
    if len(checked.outputs) > 1:
        out = ", ".join(f"{n} {dims.fmt_shape(t.shape) if t else '?'}" for n, t in checked.outputs)
        line = f"outputs {out} · params"
    else:
        line = f"output {out} · params"
    line += f" {p:,} ({mb:.2f} MB as float32)"
    if checked.buffers:  # state in the state dict that the optimizer does not train
        line += f" · non-trainable {checked.buffers:,} (BatchNorm running statistics)"
    line += f" · MACs {m} per sample"
    return line + not_counted(checked)


def memory_line(checked: Checked) -> str | None:
    """The activation memory of one sample as float32: for training, what autograd keeps for the backward
    pass (every layer's output; a recurrent layer's gates of every step), and for inference the largest layer
    input plus output (what must exist at once).  None when a layer has an error; with symbolic input sizes,
    the training values as an expression."""
    from .memory import fmt_bytes

    values = _activations(checked)
    if values is None:
        return None
    train, peak = values
    if not isinstance(train, int):
        if train == dims.UNKNOWN:
            return None
        return (f"activations per sample: {train} values to train (what autograd keeps for the backward pass; "
                "4 bytes each as float32)")
    return (f"activations per sample: {fmt_bytes(4 * train)} to train (what autograd keeps for the backward "
            f"pass), {fmt_bytes(4 * (peak or 0))} for inference (the largest layer input plus output)")


def not_counted(checked: Checked) -> str:
    """` · not counted: 2 layers with errors, ...` when the totals leave rows out, else nothing."""
    errors, unknown = checked.uncounted()
    left = [f"{n} layer{'s' if n != 1 else ''} with {what}" for n, what in
            ((errors, "errors"), (unknown, "unknown input")) if n]
    return " · not counted: " + ", ".join(left) if left else ""


def render_diagnostics(checked: Checked, color: bool = False) -> str:
    doc = checked.spec.doc
    return "\n\n".join(render(d, color=color, doc=doc) for d in checked.diagnostics)


def summary_line(checked: Checked) -> str:
    e = sum(1 for d in checked.diagnostics if d.severity == "error")
    w = len(checked.diagnostics) - e
    if not e and not w:
        return "ok"
    parts = []
    if e:
        parts.append(f"{e} error{'s' if e != 1 else ''}")
    if w:
        parts.append(f"{w} warning{'s' if w != 1 else ''}")
    return ", ".join(parts)


def networks_line(checked: Checked) -> str:
    """The total of a spec of several networks: their names, the parameters of all of them."""
    p = checked.params
    n = len(checked.networks)
    line = f"{n} network{'s' if n != 1 else ''} ({shown(', '.join(checked.networks))}) · params {p:,} " \
        f"({p * 4 / 1e6:.2f} MB as float32) in all"
    return line + not_counted(checked)


def _totals(checked: Checked) -> str:
    mem = memory_line(checked)
    return totals_line(checked) + (f"\n{mem}" if mem else "")


def render_text(checked: Checked, color: bool = False, depth: int | None = None) -> str:
    """The text `dlspec check` prints: the table (nested rows down to `depth` levels; None: all), the totals,
    the diagnostics.  The file's path and every name in it are printed with control characters escaped."""
    spec = checked.spec
    title = f"{shown(spec.path)}: {shown(spec.name)}"
    parts = [title]
    if checked.rows or spec.input is not None:
        parts.append(render_table(checked, depth))
        parts.append(_totals(checked))
    for name, net in checked.networks.items():  # one table per network, titled with its name
        parts.append(f"network {shown(name)}")
        if net.rows or net.spec.input is not None:
            parts.append(render_table(net, depth))
            parts.append(_totals(net))
    if checked.networks:
        parts.append(networks_line(checked))
    if checked.diagnostics:
        parts.append(render_diagnostics(checked, color))
    parts.append(f"{shown(spec.path)}: {summary_line(checked)}")
    return "\n\n".join(parts)


def _json_shape(shape: tuple[Dim, ...] | None) -> list[Any] | None:
    return None if shape is None else ["N"] + list(shape)


def _json_value(v: Any) -> Any:
    if isinstance(v, tuple):
        return [_json_value(e) for e in v]
    return v


def _row_json(row: Row) -> dict[str, Any]:
    d: dict[str, Any] = {
        "index": row.item.index,
        "type": row.type,
        "output_shape": _json_shape(row.output.shape) if row.output else None,
        "params": row.params,
        "buffers": row.buffers,
        "macs": row.macs,
        "args": {k: _json_value(v) for k, v in row.args.items()},
    }
    if row.item.name:
        d["name"] = row.item.name
    if row.item.repeat > 1:
        d["repeat"] = row.rep
    if row.children:
        d["children"] = {k: ([[_row_json(r) for r in b] for b in v] if v and isinstance(v[0], list)
                             else [_row_json(r) for r in v]) for k, v in row.children.items()}
    return d


def _network_json(checked: Checked) -> dict[str, Any]:
    spec = checked.spec
    return {
        "input": _json_shape(spec.input.shape) if spec.input else None,
        "output": _json_shape(checked.output.shape) if checked.output else None,
        "params": checked.params,
        "buffers": checked.buffers,
        "macs": checked.macs,
        "activation_values": _activation_json(checked),
        "layers": [_row_json(r) for r in checked.rows],
    }


def _activation_json(checked: Checked) -> dict[str, Any] | None:
    """{"train": values, "inference": values} of one sample's activations (memory_line; values, not bytes: an
    expression string for symbolic sizes, inference null then); None when a layer has an error."""
    values = _activations(checked)
    return None if values is None else {"train": values[0], "inference": values[1]}


def _activations(checked: Checked) -> tuple[Any, Any] | None:
    """memory.activation_values of a spec of one network whose every layer has a shape; None otherwise."""
    from .memory import activation_values

    if not checked.rows or any(r.output is None for r in checked.all_rows()):
        return None
    return activation_values(checked)


def to_json(checked: Checked) -> dict[str, Any]:
    """The JSON document of a checked spec.  A spec of several networks has `networks` (name -> input, output,
    params, macs, layers of that network, in file order) besides the top-level keys, whose `input` and `output`
    are then null, `layers` empty and `params` and `macs` the sums; its diagnostics are all in `diagnostics`."""
    spec = checked.spec
    out = {"file": spec.path, "name": spec.name, "ok": checked.ok, **_network_json(checked),
           "diagnostics": [d.to_json() for d in checked.diagnostics]}
    if checked.networks:
        out["networks"] = {name: _network_json(net) for name, net in checked.networks.items()}
    return out
