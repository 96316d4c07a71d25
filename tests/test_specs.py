"""The example specs in specs/ and the mistakes in specs/errors/.

(a) Every ``specs/*.yaml`` checks without errors, builds with ``dlspec.build``, and a forward pass on a batch
    gives the checker's output shape and parameter count (symbolic sizes bound, e.g. T=7).
(b) Every ``specs/errors/*.yaml`` produces exactly the diagnostics written inline in it, mypy test-data
    style: a trailing comment ``# error: CODE`` or ``# warning: CODE`` on the line the diagnostic points at
    (several per line, comma separated: ``# warning: forgotten-flatten, error: shape-mismatch``; a bare code
    after a comma keeps the previous severity: ``# error: unknown-argument, missing-argument``).
    The same annotations, if any, are required of the good specs (a warning there must be deliberate).
(c) The command line: exit statuses and the ``--format json`` document.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import dlspec
from dlspec import dims
from dlspec.diagnostics import CODES

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "specs").glob("*.yaml"))
ERRORS = sorted((ROOT / "specs" / "errors").glob("*.yaml"))
BINDINGS = {"T": 7}  # values for the symbolic sizes the specs use

# codes that specs/errors/ must demonstrate (one file each at least)
REQUIRED_ERROR_CODES = {
    "shape-mismatch", "expect-mismatch", "batch-first", "kernel-too-large", "padding", "groups", "output-padding",
    "dtype", "symbolic-size", "rank", "forgotten-flatten", "unknown-layer", "unknown-argument", "invalid-argument",
    "missing-input", "yaml-syntax", "merge-shape", "reshape", "channels-last", "torch-name", "classes", "data-shape",
    "loss", "metric", "missing-argument", "invalid-layer",
}

_ANNOTATION = re.compile(r"#\s*((?:error|warning)\s*:.*)$")
# `# run-error: code`: a mistake only `dlspec run` can see (it needs the data and the loss)
_RUN_ANNOTATION = re.compile(r"#\s*run-((?:error|warning)\s*:.*)$")
_ITEM = re.compile(r"(?:(error|warning)\s*:\s*)?([a-z][a-z0-9-]*)")


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


Key = tuple[int | None, str, str]  # (line, severity, code)


def expected_diagnostics(path: Path, pattern: re.Pattern[str] = _ANNOTATION) -> set[Key]:
    """(line, severity, code) for every `# error: code` / `# warning: code` comment in the file."""
    out: set[Key] = set()
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        m = pattern.search(line)
        if not m:
            continue
        severity = None
        for item in m.group(1).split(","):
            im = _ITEM.fullmatch(item.strip())
            assert im, f"{rel(path)}:{lineno}: cannot read the annotation {item.strip()!r}"
            severity = im.group(1) or severity
            code = im.group(2)
            assert code in CODES, f"{rel(path)}:{lineno}: unknown diagnostic code {code!r} in an annotation"
            out.add((lineno, str(severity), code))
    return out


def produced_diagnostics(checked: dlspec.Checked) -> set[Key]:
    return {(d.line, d.severity, d.code) for d in checked.diagnostics}


def show(diags: set[Key]) -> str:
    return "\n".join(f"  line {line}: {sev}: {code}" for line, sev, code in sorted(diags, key=str)) or "  (none)"


def compare(path: Path, checked: dlspec.Checked) -> None:
    want = expected_diagnostics(path)
    got = produced_diagnostics(checked)
    if want != got:
        rendered = "\n\n".join(
            f"{d.file}:{d.line}:{d.column}: {d.severity}[{d.code}]: {d.message}" for d in checked.diagnostics)
        pytest.fail(f"{rel(path)}: diagnostics differ from the inline annotations\n"
                    f"missing (annotated, not produced):\n{show(want - got)}\n"
                    f"unexpected (produced, not annotated):\n{show(got - want)}\n"
                    f"all produced:\n{rendered}")


# --- (a) the example specs -------------------------------------------------------------------------------

def test_there_are_specs() -> None:
    assert len(SPECS) >= 20
    assert len(ERRORS) >= 18


def networks(checked: dlspec.Checked) -> list[dlspec.Checked]:
    """The networks of a checked spec: each of its `networks:`, or the spec itself."""
    return list(checked.networks.values()) or [checked]


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_spec_checks(path: Path) -> None:
    checked = dlspec.check(str(path))
    assert checked.ok, "\n".join(d.message for d in checked.errors)
    compare(path, checked)  # warnings only where annotated
    for net in networks(checked):
        assert net.output is not None
        assert net.params > 0
    assert checked.params == sum(net.params for net in networks(checked))


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_spec_header_comment(path: Path) -> None:
    """Each spec starts with a comment saying what network it is and where it comes from."""
    lines = path.read_text(encoding="utf-8").splitlines()
    header = lines[: next(i for i, line in enumerate(lines) if not line.startswith("#"))]
    assert len(header) >= 2, f"{rel(path)} needs a header comment (what network, from where)"


def _sample(checked: dlspec.Checked, batch: int, bindings: dict[str, int]) -> object:
    torch = pytest.importorskip("torch")
    inp = checked.spec.input
    assert inp is not None
    shape = [dims.evaluate(d, bindings) for d in inp.shape]
    if inp.dtype == "long":
        vocab = min((r.args["num_embeddings"] for r in checked.all_rows() if r.entry.name == "Embedding"), default=2)
        return torch.randint(0, vocab, (batch, *shape))
    return torch.randn(batch, *shape)


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_spec_builds_and_runs(path: Path) -> None:
    """(A spec of several networks builds an nn.ModuleDict of them: each network is run.)"""
    torch = pytest.importorskip("torch")
    checked = dlspec.check(str(path))
    built = dlspec.build(checked)
    assert isinstance(built, torch.nn.Module)
    assert sum(p.numel() for p in built.parameters()) == checked.params
    assert sum(b.numel() for b in built.buffers()) == checked.buffers  # non-trainable: BatchNorm's statistics
    built.eval()
    models = [built[name] for name in checked.networks] if checked.networks else [built]
    assert isinstance(built, torch.nn.ModuleDict) == bool(checked.networks)
    for net, model in zip(networks(checked), models, strict=True):
        assert net.output is not None and net.spec.input is not None
        assert sum(p.numel() for p in model.parameters()) == net.params
        symbols = set().union(*(dims.symbols(d) for d in net.spec.input.shape))
        for bindings in ([BINDINGS, {"T": 3}] if symbols else [BINDINGS]):
            x = _sample(net, 3, bindings)
            with torch.no_grad():
                y = model(x)
            ys = y if net.outputs else (y,)  # `outputs:`: a tuple in that order
            for got, out in zip(ys, [t for _, t in net.outputs] or [net.output], strict=True):
                assert out is not None
                want = (3, *(dims.evaluate(d, bindings) for d in out.shape))
                assert tuple(got.shape) == want, \
                    f"{rel(path)} with {bindings}: torch gives {tuple(got.shape)}, dlspec {want}"


# --- (b) the mistakes ------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ERRORS, ids=lambda p: p.stem)
def test_error_spec_diagnostics(path: Path) -> None:
    assert expected_diagnostics(path) or expected_diagnostics(path, _RUN_ANNOTATION), \
        f"{rel(path)} has no `# error: code` / `# warning: code` annotation"
    compare(path, dlspec.check(str(path)))


RUN_ERRORS = [p for p in ERRORS if "\ntrain:" in p.read_text(encoding="utf-8")]


@pytest.mark.parametrize("path", RUN_ERRORS, ids=lambda p: p.stem)
def test_run_refuses_error_spec_with_what_check_said(path: Path) -> None:
    """A mistake with a `train:` section: `dlspec run` refuses before the first step, with exactly the
    diagnostics `dlspec check` gives (`# error: code`) plus those only the loaded data can show
    (`# run-error: code`, e.g. a CSV whose columns are known once read)."""
    from dlspec.session import Options, Refused, prepare

    with pytest.raises(Refused) as e:
        prepare(str(path), [], Options(progress=False, quiet=True))
    got = {(d.line, d.severity, d.code) for d in e.value.diagnostics}
    assert got == expected_diagnostics(path) | expected_diagnostics(path, _RUN_ANNOTATION), [
        f"{d.line}:{d.column} {d.severity}[{d.code}] {d.message}" for d in e.value.diagnostics]


@pytest.mark.parametrize("path", ERRORS, ids=lambda p: p.stem)
def test_error_spec_header_explains(path: Path) -> None:
    """Each mistake starts with a comment explaining the mistake and the fix."""
    lines = path.read_text(encoding="utf-8").splitlines()
    header = "\n".join(lines[: next(i for i, line in enumerate(lines) if not line.startswith("#"))])
    assert header.startswith("# Mistake:"), f"{rel(path)} should start with '# Mistake: ...'"
    assert "Fix:" in header, f"{rel(path)} should say how to fix the mistake ('# Fix: ...')"
    assert not _ANNOTATION.search(header), "annotations belong on the offending line, not in the header"


def test_error_specs_cover_the_codes() -> None:
    covered = {code for p in ERRORS for _, _, code in expected_diagnostics(p)}
    assert REQUIRED_ERROR_CODES <= covered, f"no error spec shows {sorted(REQUIRED_ERROR_CODES - covered)}"


def test_annotation_parser() -> None:
    assert _ANNOTATION.search("  - Linear: {in_features: 2304}  # error: shape-mismatch")
    assert not _ANNOTATION.search("# Mistake: the flatten size")


def test_annotation_parser_several(tmp_path: Path) -> None:
    p = tmp_path / "a.yaml"
    p.write_text("a: 1\nb: 2  # warning: forgotten-flatten, error: shape-mismatch, rank\nc: 3  # error: dtype\n")
    assert expected_diagnostics(p) == {(2, "warning", "forgotten-flatten"), (2, "error", "shape-mismatch"),
                                       (2, "error", "rank"), (3, "error", "dtype")}


# --- (c) the command line --------------------------------------------------------------------------------

def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dlspec", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


def test_cli_all_specs_ok() -> None:
    r = run_cli("check", "--color", "never", *map(rel, SPECS))
    assert r.returncode == 0, r.stdout + r.stderr
    for p in SPECS:
        assert f"{rel(p)}: ok" in r.stdout


def test_cli_errors_exit_1() -> None:
    r = run_cli("check", "--color", "never", *map(rel, ERRORS))
    assert r.returncode == 1, r.stdout + r.stderr


@pytest.mark.parametrize("path", ERRORS, ids=lambda p: p.stem)
def test_cli_error_spec_status(path: Path) -> None:
    """1 when the file has an error; warnings alone leave the status 0."""
    has_error = any(sev == "error" for _, sev, _ in expected_diagnostics(path))
    r = run_cli("check", "--color", "never", rel(path))
    assert r.returncode == (1 if has_error else 0), r.stdout + r.stderr


def test_cli_missing_file_exit_2() -> None:
    r = run_cli("check", "specs/no_such_spec.yaml")
    assert r.returncode == 2
    assert "no_such_spec.yaml" in r.stdout + r.stderr
    # an unreadable file wins over a good one and over a bad one
    assert run_cli("check", rel(SPECS[0]), "specs/no_such_spec.yaml").returncode == 2
    assert run_cli("check", rel(ERRORS[0]), "specs/no_such_spec.yaml").returncode == 2


LAYER_KEYS = {"index", "type", "output_shape", "params"}
DIAG_KEYS = {"severity", "code", "message", "file", "line", "column", "layer"}
DOC_KEYS = {"ok", "input", "output", "layers", "diagnostics"}


def check_doc(doc: dict[str, object]) -> None:
    assert DOC_KEYS <= set(doc), f"missing keys {DOC_KEYS - set(doc)}"
    assert isinstance(doc["layers"], list) and isinstance(doc["diagnostics"], list)
    for layer in doc["layers"]:
        assert LAYER_KEYS <= set(layer), f"layer misses {LAYER_KEYS - set(layer)}"
    for d in doc["diagnostics"]:
        assert DIAG_KEYS <= set(d), f"diagnostic misses {DIAG_KEYS - set(d)}"


def test_cli_json_one_spec() -> None:
    r = run_cli("check", "--format", "json", "specs/lenet.yaml")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert isinstance(doc, dict)
    check_doc(doc)
    assert doc["ok"] is True
    assert doc["input"] == ["N", 1, 28, 28]
    assert doc["output"] == ["N", 10]
    assert doc["diagnostics"] == []
    layers = doc["layers"]
    assert [layer["index"] for layer in layers] == list(range(12))
    assert layers[0]["type"] == "Conv2d" and layers[0]["output_shape"] == ["N", 6, 28, 28]
    assert layers[6]["type"] == "Flatten" and layers[6]["output_shape"] == ["N", 400]
    assert sum(layer["params"] for layer in layers) == dlspec.check(str(ROOT / "specs/lenet.yaml")).params == 61706


def test_cli_json_several_specs() -> None:
    paths = ["specs/lenet.yaml", "specs/lstm_rows.yaml", "specs/errors/mnist_flatten_64x6x6.yaml"]
    r = run_cli("check", "--format", "json", *paths)
    assert r.returncode == 1, r.stderr
    docs = json.loads(r.stdout)
    assert isinstance(docs, list) and len(docs) == 3
    for doc in docs:
        check_doc(doc)
    assert [doc["ok"] for doc in docs] == [True, True, False]
    (d,) = docs[2]["diagnostics"]
    assert d["severity"] == "error" and d["code"] == "shape-mismatch"
    assert d["file"] == "specs/errors/mnist_flatten_64x6x6.yaml"
    assert d["layer"] == 7
    (line,) = [n for n, _, _ in expected_diagnostics(ROOT / "specs/errors/mnist_flatten_64x6x6.yaml")]
    assert d["line"] == line and isinstance(d["column"], int)


def test_cli_json_symbolic_sizes() -> None:
    r = run_cli("check", "--format", "json", "specs/lstm_stack.yaml")
    doc = json.loads(r.stdout)
    assert doc["input"] == ["N", "T", 10]
    assert doc["layers"][0]["output_shape"] == ["N", "T", 20]
    assert doc["output"] == ["N", 1]
