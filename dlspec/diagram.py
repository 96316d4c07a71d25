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
from .safeio import shown

MERGE_SIGN = {"Residual": "+", "Add": "+", "Concat": "cat", "Concatenate": "cat", "Multiply": "×", "Mean": "mean",
              "Max": "max", "Stack": "stack"}


def _quote(text: str) -> str:
    """A DOT string: the text's own control characters escaped as the text output shows them (`\\x1b`), its
    line breaks (the label's lines) as DOT's `\\n`."""
    text = "\n".join(shown(line) for line in text.split("\n"))
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _shape(row: Row) -> str:
    return dims.fmt_shape(row.output.shape) if row.output is not None else "?"


class _Writer:
    """Writes the dot text, and keeps the same graph as data (nodes, edges, clusters) for draw_matplotlib."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.count = 0
        self.nodes: dict[str, tuple[str, str, tuple[str, ...]]] = {}  # id -> (label, shape, enclosing clusters)
        self.edges: list[tuple[str, str, bool]] = []  # (from, to, dashed)
        self.clusters: dict[str, str] = {}  # id -> label
        self.stack: list[str] = []  # the clusters being written
        self.lines_text = ""

    def node(self, label: str, indent: str, **attrs: str) -> str:
        self.count += 1
        nid = f"n{self.count}"
        extra = "".join(f", {k}={_quote(v) if k != 'style' else v}" for k, v in attrs.items())
        self.lines.append(f"{indent}{nid} [label={_quote(label)}{extra}];")
        self.nodes[nid] = (label, attrs.get("shape", "box"), tuple(self.stack))
        return nid

    def edge(self, a: str, b: str, indent: str, dashed: bool = False) -> None:
        self.lines.append(f"{indent}{a} -> {b}" + (" [style=dashed]" if dashed else "") + ";")
        self.edges.append((a, b, dashed))

    def open(self, cluster: str, label: str) -> None:
        self.clusters[cluster] = label
        self.stack.append(cluster)

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
        self.open(cluster, (f"{idx}  " if idx else "") + describe_row(row))
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
        self.stack.pop()
        return out


def to_dot(checked: Checked) -> str:
    """The Graphviz (dot) text of a checked spec."""
    return _write(checked).lines_text


def _write(checked: Checked) -> _Writer:
    w = _Writer()
    name = checked.spec.name or "spec"
    w.lines += [f"digraph {_quote(name)} {{", "  rankdir=TB;", f"  label={_quote(name)}; labelloc=t;",
                '  node [fontname="Helvetica", fontsize=10];', '  edge [color="#555555"];']
    if checked.networks:
        for net_name, net in checked.networks.items():
            w.count += 1
            w.lines += [f"  subgraph cluster_{w.count} {{", f"    label={_quote('network ' + net_name)}; style=dashed;"]
            w.open(f"cluster_{w.count}", f"network {net_name}")
            w.network(net, "    ")
            w.lines.append("  }")
            w.stack.pop()
    else:
        w.network(checked, "  ")
    w.lines.append("}")
    w.lines_text = "\n".join(w.lines) + "\n"
    return w


def render(checked: Checked, path: str) -> tuple[str | None, str]:
    """Draw the diagram into path (.svg, .png or .pdf): with Graphviz's `dot` when it is installed, else with
    matplotlib (a simpler layered layout).  (why it could not, or None; what drew it).  The picture is made
    in memory and written whole or not at all: safeio.WriteError when it cannot be written (a full disk)."""
    import shutil
    import subprocess

    from .safeio import write_atomic

    fmt = path.rsplit(".", 1)[-1].lower() if "." in path else ""
    if fmt not in ("svg", "png", "pdf"):
        return (f"--diagram {shown(path)}: the file must end in .svg, .png or .pdf (or use --format dot for the "
                "text)"), ""
    w = _write(checked)
    if not w.nodes:  # a spec that did not read (its errors say why): nothing to draw
        return "no diagram: the spec has no input or layer to draw", ""
    exe = shutil.which("dot")
    if exe is None:
        try:
            data = draw_matplotlib(w, fmt, checked.spec.name or "spec")
        except ImportError:
            return ("no picture: it needs Graphviz's `dot` (apt install graphviz, brew install graphviz, conda install "
                    "graphviz) or matplotlib (pip install 'dlspec[plot]')"), ""
        write_atomic(path, data)
        return None, ("drawn with matplotlib: Graphviz's `dot` is not installed (apt install graphviz, brew install "
                      "graphviz, conda install graphviz) and lays it out better")
    try:
        p = subprocess.run([exe, f"-T{fmt}"], input=w.lines_text.encode("utf-8"), capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"dot failed: {shown(e)}", ""
    if p.returncode != 0 or not p.stdout:
        err = p.stderr.decode("utf-8", "replace").strip().splitlines() or ["exit status " + str(p.returncode)]
        return f"dot failed: {shown(err[0][:200])}", ""
    write_atomic(path, p.stdout)
    return None, "drawn with Graphviz"


def layers_of(w: _Writer) -> dict[str, int]:
    """Each node's layer: the longest path to it from an input (the nodes are written in a topological order)."""
    into: dict[str, list[str]] = {n: [] for n in w.nodes}
    for a, b, _ in w.edges:
        into[b].append(a)
    depth: dict[str, int] = {}
    for n in w.nodes:
        depth[n] = 1 + max((depth[a] for a in into[n] if a in depth), default=-1)
    return depth


def draw_matplotlib(w: _Writer, fmt: str, title: str) -> bytes:
    """The diagram without Graphviz: a node per row in layers from the top (its longest path from an input),
    side by side within a layer; clusters as shaded boxes around their nodes, labelled along their left side;
    an edge that passes over other layers goes round them (an identity skip, dashed, on the right).  The
    file's bytes in `fmt` (svg, png, pdf); every text drawn as it is (no mathtext: a `$` in a name is a dollar)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch

    from .pictures import title_text

    depth = layers_of(w)
    rows: dict[int, list[str]] = {}
    for n in w.nodes:
        rows.setdefault(depth[n], []).append(n)
    col_w, row_h, box_w, box_h, merge_w = 3.0, 0.72, 2.6, 0.44, 1.5
    into: dict[str, list[str]] = {n: [] for n in w.nodes}
    for a, b, dashed in w.edges:
        if not dashed:
            into[b].append(a)
    pos: dict[str, tuple[float, float]] = {}
    for d in sorted(rows):  # each node under its inputs (their mean), pushed apart where a layer is crowded
        want = {n: sum(pos[a][0] for a in into[n]) / len(into[n]) if into[n] else 0.0 for n in rows[d]}
        order = sorted(rows[d], key=lambda n: want[n])
        xs_: list[float] = []
        for n in order:
            xs_.append(want[n] if not xs_ else max(want[n], xs_[-1] + col_w))
        shift = sum(x - want[n] for x, n in zip(xs_, order, strict=True)) / len(order)
        for x, n in zip(xs_, order, strict=True):
            pos[n] = (x - shift, -d * row_h)

    def half(n: str) -> float:
        return (merge_w if w.nodes[n][1] == "circle" else box_w) / 2

    levels = {c: 0 for c in w.clusters}
    for _, _, stack in w.nodes.values():
        for k, c in enumerate(stack):
            levels[c] = max(levels[c], len(stack) - k)
    xs = [x for x, _ in pos.values()]
    margin = 0.3 + 0.25 * max(levels.values(), default=0)
    x_min, x_max = min(xs) - box_w / 2 - margin - 0.3, max(xs) + box_w / 2 + margin + 0.3
    height = (max(rows) + 1) * row_h + 0.6
    fig, ax = plt.subplots(figsize=(max(4.0, x_max - x_min), max(2.0, height)))
    ax.set_xlim(x_min, x_max)
    ax.set_ylim(-height + 0.3, row_h / 2)
    ax.axis("off")
    ax.set_title(title_text(title), fontsize=11, parse_math=False)
    for c in sorted(w.clusters, key=lambda c: -levels[c]):  # outermost first: inner ones are drawn over them
        members = [n for n, (_, _, stack) in w.nodes.items() if c in stack]
        if not members:
            continue
        hx, vy = 0.12 + 0.25 * levels[c], 0.03 + 0.06 * levels[c]
        x0 = min(pos[n][0] - half(n) for n in members) - hx
        x1 = max(pos[n][0] + half(n) for n in members) + hx
        y0 = min(pos[n][1] for n in members) - box_h / 2 - vy
        y1 = max(pos[n][1] for n in members) + box_h / 2 + vy
        ax.add_patch(FancyBboxPatch((x0, y0), x1 - x0, y1 - y0, boxstyle="round,pad=0,rounding_size=0.08",
                                    facecolor="#eef2f8" if levels[c] % 2 else "#f7f9fc", edgecolor="#8a9bb0",
                                    linewidth=0.8, zorder=1))
        ax.text(x0 + 0.1, y1 - 0.06, w.clusters[c], ha="left", va="top", rotation=90, fontsize=6, color="#4a5a70",
                zorder=2, parse_math=False)
    arrow = {"arrowstyle": "-|>", "color": "#555555", "lw": 0.8, "shrinkA": 0, "shrinkB": 0}
    for a, b, dashed in w.edges:
        (xa, ya), (xb, yb) = pos[a], pos[b]
        between = [n for n in w.nodes if depth[a] < depth[n] < depth[b]]
        blocked = [n for n in between if abs(pos[n][0] - xa) < box_w or abs(pos[n][0] - xb) < box_w]
        ls = "--" if dashed else "-"
        if not blocked:
            ax.annotate("", xy=(xb, yb + box_h / 2), xytext=(xa, ya - box_h / 2), zorder=3,
                        arrowprops={**arrow, "linestyle": ls})
            continue
        # round the layers in between, on the source's side (an identity skip on the right, a skip from the
        # middle on the left)
        side = 1 if dashed or xa > xb + 0.01 else -1
        edge_x = (max if side > 0 else min)(pos[n][0] + side * half(n) for n in [a, b, *blocked])
        xr = edge_x + side * 0.2
        ax.plot([xa + side * half(a), xr, xr], [ya, ya, yb], color="#555555", lw=0.8, linestyle=ls, zorder=3)
        ax.annotate("", xy=(xb + side * half(b), yb), xytext=(xr, yb), zorder=3,
                    arrowprops={**arrow, "linestyle": ls})
    for n, (label, shape, _) in w.nodes.items():
        x, y = pos[n]
        merge = shape == "circle"
        text = label.replace("\n", "  ") if merge else label
        ax.add_patch(FancyBboxPatch((x - half(n), y - box_h / 2), 2 * half(n), box_h,
                                    boxstyle=f"round,pad=0,rounding_size={0.2 if shape in ('ellipse', 'circle') else 0.05}",
                                    facecolor="#fff8e6" if merge else "white", edgecolor="#333333", linewidth=0.9,
                                    zorder=4))
        ax.text(x, y, text, ha="center", va="center", fontsize=6.5, zorder=5, parse_math=False)
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format=fmt, dpi=130, bbox_inches="tight")
    finally:
        plt.close(fig)
    return buf.getvalue()
