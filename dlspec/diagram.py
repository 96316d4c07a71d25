"""`dlspec check --format dot`: the network as a Graphviz diagram — torch-free, from the checked rows.

One node per layer (its index, what it is, its output shape), the inputs as ellipses, an edge for every
tensor a layer reads: the previous layer's, or what `from:` names (skip connections, merges).  A container
(a block, Residual, Concat, Sequential) is a cluster: its lists (or branches) start from what the container
reads and end in a node that merges them (`+` for Residual and Add, `cat` for Concat, ...); a Residual
without a `shortcut:` gets the identity skip as a dashed edge.  A spec of several networks is a cluster per
network.  `dot -Tsvg` (Graphviz) draws it; `dlspec check --diagram FILE.svg` runs dot when it is installed.
"""

from __future__ import annotations

from . import dims
from .infer import Checked, Row
from .report import describe_row

MERGE_SIGN = {"Residual": "+", "Add": "+", "Concat": "cat", "Concatenate": "cat", "Multiply": "×", "Mean": "mean",
              "Max": "max", "Stack": "stack"}


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _shape(row: Row) -> str:
    return dims.fmt_shape(row.output.shape) if row.output is not None else "?"


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.count = 0

    def node(self, label: str, indent: str, **attrs: str) -> str:
        self.count += 1
        nid = f"n{self.count}"
        extra = "".join(f", {k}={_quote(v) if k != 'style' else v}" for k, v in attrs.items())
        self.lines.append(f"{indent}{nid} [label={_quote(label)}{extra}];")
        return nid

    def edge(self, a: str, b: str, indent: str, dashed: bool = False) -> None:
        self.lines.append(f"{indent}{a} -> {b}" + (" [style=dashed]" if dashed else "") + ";")

    def network(self, checked: Checked, indent: str) -> None:
        spec = checked.spec
        names: dict[str, str] = {}
        for name, inp in (spec.inputs.items() if spec.inputs else ()):
            title = "input" if name == "input" else f"input {name}"
            names[name] = self.node(f"{title}\n{dims.fmt_shape(inp.shape)}", indent, shape="ellipse")
        prev = names.get("input") or next(iter(names.values()), None)
        tops: list[str] = []
        for row in checked.rows:
            reads = self._sources(row, names, tops, prev)
            out = self.row(row, reads, indent)
            tops.append(out)
            if row.item.name:
                names[row.item.name] = out
            prev = out
        for name, _ in checked.outputs:
            if name in names:
                end = self.node(f"output {name}", indent, shape="ellipse")
                self.edge(names[name], end, indent)

    def _sources(self, row: Row, names: dict[str, str], tops: list[str], prev: str | None) -> list[str]:
        if row.item.sources is None or row.rep:
            return [prev] if prev else []
        out = []
        for s in row.item.sources:
            if isinstance(s, str) and s in names:
                out.append(names[s])
            elif isinstance(s, int):
                k = len(tops) + s if s < 0 else s
                if 0 <= k < len(tops):
                    out.append(tops[k])
        return out

    def row(self, row: Row, reads: list[str], indent: str) -> str:
        """The node (or cluster) of a row, with edges from `reads`; the id whose output the next layer reads."""
        idx = f"{row.item.index}" + (f"[{row.rep}]" if row.item.repeat > 1 else "") if row.depth == 0 else ""
        label = (f"{idx}  " if idx else "") + f"{describe_row(row)}\n{_shape(row)}"
        lists = [v for v in row.children.values() if v]
        if not lists:
            nid = self.node(label, indent, shape="box", **({"color": "red"} if row.error or row.failed else {}))
            for r in reads:
                self.edge(r, nid, indent)
            return nid
        self.count += 1
        cluster = f"cluster_{self.count}"
        self.lines.append(f"{indent}subgraph {cluster} {{")
        inner = indent + "  "
        self.lines.append(f"{inner}label={_quote((f'{idx}  ' if idx else '') + describe_row(row))}; style=rounded;")
        branches: list[list[Row]] = []
        for v in row.children.values():
            if v and isinstance(v[0], list):
                branches += [b for b in v]
            elif v:
                branches.append(v)
        sign = MERGE_SIGN.get(row.entry.name, "")
        merged = len(branches) > 1 or row.entry.name == "Residual"
        ends: list[str] = []
        for branch in branches:
            cur = list(reads)
            for sub in branch:
                cur = [self.row(sub, cur, inner)]
            ends += cur
        if merged:
            out = self.node(f"{sign or 'merge'}\n{_shape(row)}", inner, shape="circle" if len(sign) < 3 else "box")
            for e in ends:
                self.edge(e, out, inner)
            if row.entry.name == "Residual" and "shortcut" not in row.children:
                for src in reads:
                    self.edge(src, out, inner, dashed=True)
        else:
            out = ends[-1] if ends else self.node(f"{describe_row(row)}\n{_shape(row)}", inner, shape="box")
        self.lines.append(f"{indent}}}")
        return out


def to_dot(checked: Checked) -> str:
    """The Graphviz (dot) text of a checked spec."""
    w = _Writer()
    name = checked.spec.name or "spec"
    w.lines += [f"digraph {_quote(name)} {{", "  rankdir=TB;", f"  label={_quote(name)}; labelloc=t;",
                '  node [fontname="Helvetica", fontsize=10];', '  edge [color="#555555"];']
    if checked.networks:
        for net_name, net in checked.networks.items():
            w.count += 1
            w.lines += [f"  subgraph cluster_{w.count} {{", f"    label={_quote('network ' + net_name)}; style=dashed;"]
            w.network(net, "    ")
            w.lines.append("  }")
    else:
        w.network(checked, "  ")
    w.lines.append("}")
    return "\n".join(w.lines) + "\n"


def render(dot_text: str, path: str) -> str | None:
    """Draw dot_text into path (.svg, .png or .pdf) with Graphviz's `dot`; None, or why it could not."""
    import shutil
    import subprocess

    fmt = path.rsplit(".", 1)[-1].lower() if "." in path else ""
    if fmt not in ("svg", "png", "pdf"):
        return f"--diagram {path}: the file must end in .svg, .png or .pdf (or use --format dot for the text)"
    exe = shutil.which("dot")
    if exe is None:
        return ("Graphviz's `dot` is not installed, so no picture: install Graphviz (apt install graphviz, brew "
                "install graphviz, conda install graphviz) or paste `dlspec check --format dot` into an online viewer")
    try:
        p = subprocess.run([exe, f"-T{fmt}", "-o", path], input=dot_text, text=True, capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"dot failed: {e}"
    if p.returncode != 0:
        return f"dot failed: {(p.stderr.strip().splitlines() or ['exit status ' + str(p.returncode)])[0][:200]}"
    return None

