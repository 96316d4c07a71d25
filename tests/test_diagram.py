"""`dlspec check --format dot`: valid Graphviz for every spec (parsed with pydot, a pure-Python dot parser),
one node per layer with its shape, every layer reachable from an input, and a graph spec's `from:` edges
exactly as written."""

from __future__ import annotations

from pathlib import Path

import pytest

import dlspec
from dlspec.diagram import to_dot

pydot = pytest.importorskip("pydot")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pyparsing 3.3 on pydot's parser
ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted(p for p in (ROOT / "specs").rglob("*.yaml") if "errors" not in p.parts)


def parse(text: str) -> tuple[dict[str, str], set[tuple[str, str]]]:
    """(node id -> label, edges) of a dot text, clusters included."""
    (g,) = pydot.graph_from_dot_data(text)
    nodes: dict[str, str] = {}
    edges: set[tuple[str, str]] = set()

    def walk(graph: object) -> None:
        for n in graph.get_nodes():  # type: ignore[attr-defined]
            if n.get_name() not in ("node", "edge", "graph"):
                nodes[n.get_name()] = (n.get("label") or "").strip('"')
        for e in graph.get_edges():  # type: ignore[attr-defined]
            edges.add((e.get_source(), e.get_destination()))
        for sub in graph.get_subgraphs():  # type: ignore[attr-defined]
            walk(sub)
    walk(g)
    return nodes, edges


@pytest.mark.parametrize("path", SPECS, ids=lambda p: str(p.relative_to(ROOT / "specs")))
def test_every_spec_is_a_valid_connected_diagram(path: Path) -> None:
    checked = dlspec.check(str(path))
    nodes, edges = parse(to_dot(checked))
    nets = list(checked.networks.values()) or [checked]
    leaves = [r for n in nets for r in n.all_rows() if not any(r.children.values())]
    shapes = [label for label in nodes.values() if not label.startswith(("input", "output", "+", "cat", "merge", "×"))]
    assert len([s for s in shapes if "\\n(N" in s or "\\n?" in s]) == len(leaves)  # a node per layer, with its shape
    starts = [n for n, label in nodes.items() if label.startswith("input")]
    seen, todo = set(starts), list(starts)
    while todo:
        a = todo.pop()
        for x, y in edges:
            if x == a and y not in seen:
                seen.add(y)
                todo.append(y)
    assert seen == set(nodes), f"not reachable from an input: {[nodes[n] for n in set(nodes) - seen]}"


def test_from_edges_are_the_ones_written() -> None:
    text = ("input: [4]\nlayers:\n  - Linear: {out_features: 4}\n    name: a\n  - ReLU\n  - Linear: 4\n"
            "  - Add: [-1, a]\n  - Linear: {out_features: 3, from: 0}\n")
    nodes, edges = parse(to_dot(dlspec.check(dlspec.loads(text))))
    by = {label.split("\\n")[0]: n for n, label in nodes.items()}
    named = {k.split("  ", 1)[-1]: v for k, v in by.items()}
    lin_a, relu, lin2, add, lin3 = (named["a: Linear(4→4)"], named["ReLU"], named["Linear(4→4)"], named["Add"],
                                    named["Linear(4→3)"])
    assert {(by["input"], lin_a), (lin_a, relu), (relu, lin2), (lin2, add), (lin_a, add), (lin_a, lin3)} == edges


def test_residual_skip_is_dashed_and_merges(capsys) -> None:
    from dlspec import cli

    rc = cli.main(["check", "--format", "dot", str(ROOT / "specs" / "resnet_tiny.yaml")])
    out = capsys.readouterr().out
    assert rc == 0 and out.startswith('digraph "ResNetTiny"') and "[style=dashed]" in out and 'label="+\\n' in out
    rc = cli.main(["check", "--diagram", "/tmp/dlspec-test.txt", str(ROOT / "specs" / "lenet.yaml")])
    assert rc == 2 and "must end in .svg, .png or .pdf" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["resnet_tiny", "inception_tiny", "zoo/unet", "dcgan"])
def test_without_graphviz_matplotlib_draws_the_same_graph(name: str, tmp_path: Path, capsys, monkeypatch) -> None:
    """No `dot` on the PATH: --diagram still writes the picture, of the graph the dot text describes (the same
    nodes and edges, parsed back from it), every edge pointing down the page."""
    pytest.importorskip("matplotlib")
    import shutil

    from dlspec import cli, diagram

    monkeypatch.setattr(shutil, "which", lambda exe: None)
    path = ROOT / "specs" / f"{name}.yaml"
    out = tmp_path / "d.png"
    assert cli.main(["check", "--diagram", str(out), str(path)]) == 0
    assert "drawn with matplotlib" in capsys.readouterr().err
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    w = diagram._write(dlspec.check(str(path)))
    nodes, edges = parse(w.lines_text)
    assert set(w.nodes) == set(nodes) and {(a, b) for a, b, _ in w.edges} == edges
    layer = diagram.layers_of(w)
    assert all(layer[a] < layer[b] for a, b in edges)


@pytest.mark.parametrize("text", ["# nothing but a comment\n", "input: [4\n", "layers: [ReLU]\n"])
def test_a_spec_that_does_not_read_has_no_diagram_and_its_errors_are_said(text: str, tmp_path: Path, capsys) -> None:
    """(found by tests/fuzz.py: an empty graph made the matplotlib layout fail, exit 70)"""
    from dlspec.cli import main

    spec = tmp_path / "s.yaml"
    spec.write_text(text, encoding="utf-8")
    rc = main(["check", str(spec), "--diagram", str(tmp_path / "d.png")])
    out, err = capsys.readouterr()
    assert rc == 1 and "no diagram: the spec has no input or layer to draw" in err and "error[" in out
    assert not (tmp_path / "d.png").exists()
