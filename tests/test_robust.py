"""`dlspec check` on hostile input: a one-line diagnostic at the right line, in bounded time and memory.

(a) Each cause found by fuzzing and by hand (YAML tags and constructors, control characters, malformed
    `input` sizes, non-finite factors, numeric block names, cycles, deep nesting, expansions) gives its
    diagnostic at its line, and never an exception.
(b) The bombs (alias bombs, billion laughs, repeats of repeats, blocks doubling, a million layers) are
    answered in a separate process under a memory limit, before they expand: the work is counted in calls
    (conftest.work), not timed.
(c) A seeded hypothesis fuzz test mutates the example specs and override strings: nothing escapes as an
    exception, every answer is JSON-serialisable, and none does more work than the bounds allow.
"""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import run_or_hang, within
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dlspec
from dlspec.report import render_text, to_json

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "specs").glob("**/*.yaml"))


def diagnose(text: str) -> list[tuple[int | None, str, str]]:
    """(line, code, message) of every diagnostic; the JSON and text renderings must work too."""
    checked = dlspec.check(dlspec.loads(text, "spec.yaml"))
    json.dumps(to_json(checked))
    render_text(checked)
    return [(d.line, str(d.code), d.message) for d in checked.diagnostics]


L = "layers: [ReLU]\n"

# text, (line, code) of the first diagnostic, a word its message must hold
CASES = [
    ("name: !mytag x\ninput: [4]\n" + L, (1, "yaml-syntax"), "!mytag"),
    ("name: !!python/name:os.system x\ninput: [4]\n" + L, (1, "yaml-syntax"), "python/name"),
    ("=\n", (1, "yaml-syntax"), "!!value"),
    ("input: =\n" + L, (1, "yaml-syntax"), "!!value"),
    ("<<: 3\ninput: [4]\n" + L, (1, "yaml-syntax"), "merg"),
    ("input: [4]\n" + L + "name: !!bool maybe\n", (3, "yaml-syntax"), "'maybe'"),
    ("input: [!!int ten]\n" + L, (1, "yaml-syntax"), "'ten'"),
    ("input: [4]\nlayers: [{Dropout: !!float abc}]\n", (2, "yaml-syntax"), "'abc'"),
    ("input: [4]\n" + L + "name: !!timestamp yesterday\n", (3, "yaml-syntax"), "!!timestamp"),
    ("input: [4]\n" + L + "name: !!binary é\n", (3, "yaml-syntax"), "!!binary"),
    ("? {[1]: 2}\n: 3\ninput: [4]\n" + L, (1, "yaml-syntax"), "key"),
    ("input: [4]\n" + L + "name: a\x00b\n", (3, "yaml-syntax"), "#x0000"),
    ("input: [4]\n" + L + "name: a\x1bb\n", (3, "yaml-syntax"), "#x001b"),
    ("input: [4]\n" + L + "name: a\x7fb\n", (3, "yaml-syntax"), "#x007f"),
    ("input: [4]\n" + L + "name: a\ud800b\n", (3, "yaml-syntax"), "surrogate"),
    ("input: [[1], 28, 28]\n" + L, (1, "invalid-input"), "[1]"),
    ("input: [1, 28, 28.0]\nlayers: [{Conv2d: {out_channels: 2, kernel_size: 3}}]\n", (1, "invalid-input"), "28.0"),
    ("input: [1, 8, 1e3]\n" + L, (1, "invalid-input"), "1000"),
    ("input: [null]\n" + L, (1, "invalid-input"), "null"),
    ("input: []\nlayers: [LayerNorm]\n", (1, "invalid-input"), "at least one"),
    ("input: [-1]\nlayers: [{Conv2d: {out_channels: 2, kernel_size: 3}}]\n", (1, "invalid-input"), "-1"),
    ("input: [1, 8, 8]\nlayers: [{Upsample: {scale_factor: .inf}}]\n", (2, "invalid-argument"), "inf"),
    ("input: [1, 8, 8]\nlayers: [{Upsample: {scale_factor: .nan}}]\n", (2, "invalid-argument"), "nan"),
    ("input: [1, 8, 8]\nlayers: [{Upsample: {scale_factor: 1e308}}]\n", (2, "invalid-argument"), "1e+308"),
    ("input: [4]\nblocks:\n  1: [ReLU]\nlayers: [Relu2]\n", (3, "spec-structure"), "block name 1"),
    ("input: [4]\nlayers: &l [ReLU, {Sequential: *l}]\n", (2, "yaml-syntax"), "contains the alias itself"),
    ("input: [4]\nlayers:\n  - ReLU:\n    repeat: 2147483647\n", (4, "limit"), "2,147,483,647"),
    ("input: [T, 4]\nlayers: [{LSTM: {hidden_size: 4, num_layers: 1000000000000, batch_first: true}}]\n",
     (2, "model-size"), "parameters"),
    ("input: [100000, 100000, 100000]\nlayers: [{Conv2d: {out_channels: 4, kernel_size: 3}}]\n", (2, "model-size"),
     "values"),
]


@pytest.mark.parametrize("text, first, word", CASES, ids=[c[2] for c in CASES])
def test_hostile_spec_is_a_diagnostic(text: str, first: tuple[int, str], word: str) -> None:
    # a few thousand calls each; what this pins (2**31 repeats expanded, 1e12 LSTM layers counted) takes billions
    diags = within(200_000, diagnose, text)
    assert diags, "no diagnostic"
    assert diags[0][:2] == first, diags
    assert word in diags[0][2], diags


def test_dates_stay_text_and_json_never_fails() -> None:
    """A date-like value is text (a spec has no dates): `--format json` serialises it."""
    checked = dlspec.check(dlspec.loads("description: 2001-12-14\ninput: [4]\n" + L))
    assert checked.ok and json.loads(json.dumps(to_json(checked)))["name"] == "<string>"


def test_deep_nesting_is_bounded() -> None:
    deep = "input: [4]\nlayers:\n"
    indent = "  "
    for _ in range(300):
        deep += indent + "- Sequential:\n"
        indent += "    "
    deep += indent + "- ReLU\n"
    assert diagnose(deep)[0][1] == "limit"
    chain = "input: [4]\nblocks:\n" + "".join(f"  b{i}: [b{i + 1}]\n" for i in range(400)) + "  b400: [ReLU]\n" \
        "layers: [b0]\n"
    line, code, message = diagnose(chain)[0]
    assert code == "limit" and "64 deep" in message
    flow = "input: [4]\nlayers: " + "[" * 5000 + "]" * 5000 + "\n"  # deeper than the reader's own stack
    assert diagnose(flow)[0][1] in ("limit", "yaml-syntax")


def test_bounds_can_be_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    text = "input: [4]\nlayers:\n  - ReLU:\n    repeat: 200000\n"
    assert diagnose(text)[0][1] == "limit"
    monkeypatch.setenv("DLSPEC_MAX_LAYERS", "300000")
    assert diagnose(text) == []


# --- (b) bombs: a separate process, a memory limit, a count of the work --------------------------------

BOMBS = {
    "billion laughs": "lol: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
        f"l{i}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(8)) + "input: [4]\n" + L,
    "414-byte alias bomb": "a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{','.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8)) + "input: [4]\n" + L,
    "repeats of repeats": "input: [4]\nblocks:\n  a: [{ReLU: null, repeat: 1000}]\n  b: [{a: null, repeat: 1000}]\n"
                          "layers:\n  - b:\n    repeat: 1000\n",
    "blocks doubling 40 times": "input: [4]\nblocks:\n" + "".join(f"  b{i}: [b{i + 1}, b{i + 1}]\n" for i in range(40))
                                + "  b40: [ReLU]\nlayers: [b0]\n",
    "a million layers": "input: [4]\nlayers:\n" + "  - ReLU\n" * 1_000_000,
}


@pytest.mark.parametrize("name", list(BOMBS))
def test_bomb_is_answered_in_bounded_time_and_memory(tmp_path: Path, name: str) -> None:
    spec = tmp_path / "bomb.yaml"
    spec.write_text(BOMBS[name], encoding="utf-8")
    code = textwrap.dedent(f"""
        import resource, sys
        resource.setrlimit(resource.RLIMIT_AS, (1_500_000_000, 1_500_000_000))  # 1.5 GB of address space
        from dlspec.cli import main
        sys.exit(main(["check", {str(spec)!r}]))
    """)
    p = run_or_hang([sys.executable, "-c", code], timeout=120, capture_output=True, text=True)
    assert p.returncode == 1, p.stderr[-2000:]
    assert "error[limit]" in p.stdout and "Traceback" not in p.stderr


# what the bombs expand to (the alias bombs 10**9 and 9**9 items, 10**9 ReLUs, 2**40 ReLUs): the work to refuse
# them is counted before anything is built, so it is a few thousand calls, or the ~800,000 of the doubling
# blocks expanded up to the 100,000-layer bound — never the billions of the expansion itself
BOMB_CALLS = {"billion laughs": 20_000, "414-byte alias bomb": 20_000, "repeats of repeats": 20_000,
              "blocks doubling 40 times": 4_000_000}


def test_bombs_are_refused_before_they_expand() -> None:
    """The expansion is counted before anything is built: the calls stay within BOMB_CALLS."""
    for name, budget in BOMB_CALLS.items():
        assert within(budget, diagnose, BOMBS[name])[0][1] == "limit", name


# --- (c) the fuzz test -------------------------------------------------------------------------------------

TEXTS = [p.read_text(encoding="utf-8") for p in SPECS]
SNIPPETS = ["!!binary ", "!mytag ", "&a ", "*a", "<<: *a", "<<: 3", "=", "\x00", "\x1b", "\ud800", "[", "]", "{", "}",
            ": ", "- ", "\n  ", "\t", "repeat: 99999999", "repeat: -1", "expect: 3@3x3", "-1", "0", "1e309", ".nan",
            ".inf", "null", "true", "2001-12-14", "? ", "Sequential: ", "Residual: ", "Concat: ", "BatchNorm",
            "out_features: 100000000", "num_layers: 999999999999", "T", "N", "'", '"', "#", "%YAML 1.2\n", "---\n"]


@st.composite
def mutated(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(TEXTS))
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(text)))
        kind = draw(st.integers(0, 2))
        if kind == 0:
            text = text[:at] + draw(st.sampled_from(SNIPPETS)) + text[at:]
        elif kind == 1:
            text = text[:at] + text[at + draw(st.integers(1, 20)):]
        else:
            text = text[:at] + draw(st.characters()) + text[at:]
    return text


FUZZ_CALLS = 60_000_000


@settings(max_examples=1500, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(mutated())
def test_fuzz_check_never_raises(text: str) -> None:
    # the work a spec may take is bounded by the limits: 100,000 layers (DLSPEC_MAX_LAYERS) at ~500 calls each
    within(FUZZ_CALLS, diagnose, text)


OVERRIDE = st.one_of(
    st.tuples(st.sampled_from(["train.epochs", "train.seed", "train.optimizer.SGD.lr", "layers.0", "layers.0.Linear",
                               "layers.99.Linear.out_features", "train.data", "train", "input", "blocks.x", "train..x",
                               "", "layers.-1.Conv2d.kernel_size", "train.data.subset"]),
              st.sampled_from(["3", "!!int abc", "abc", "[1", "{a: 1}", "", "1e999", "-5", "99999999999999999999999",
                               "!!python/name:os.system", "*a", "&a [1]", "null", "[]", "\x00"]))
    .map(lambda kv: f"{kv[0]}={kv[1]}"),
    st.text(max_size=30))


@settings(max_examples=600, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(st.sampled_from([str(p) for p in SPECS if "train:" in p.read_text(encoding="utf-8")]), st.lists(OVERRIDE, max_size=3))
def test_fuzz_overrides_never_raise(path: str, items: list[str]) -> None:
    """Overrides are applied and checked as `dlspec run` does before it loads any data."""
    from dlspec.session import Refused, load_document

    try:
        doc = load_document(path, items)
    except Refused as e:
        assert e.status == 2 and all(d.code == "override" for d in e.diagnostics)
        return
    from dlspec.schema import parse_spec

    checked = dlspec.check(parse_spec(doc))
    json.dumps(to_json(checked))
    render_text(checked)
