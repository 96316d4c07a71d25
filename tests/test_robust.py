"""`dlspec check` on hostile input: a one-line diagnostic at the right line, in bounded time and memory.

(a) Each cause found by fuzzing and by hand (YAML tags and constructors, control characters, malformed
    `input` sizes, non-finite factors, numeric block names, cycles, deep nesting, expansions, sizes beyond
    torch's 64 bits, block arithmetic past its bounds) gives its diagnostic at its line, and never an
    exception.
(b) The bombs (alias bombs, billion laughs, repeats of repeats, blocks doubling, a million layers) are
    answered in a separate process under a memory limit, before they expand: the work is counted in calls
    (conftest.work), not timed; so is the work a size used to drive (divisors of a prime, a power computed in
    full, patterns that backtrack).
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
    ("input: [4]\nlayers: [{LeakyReLU: 1e308}]\n", (2, "invalid-argument"), "negative_slope cannot be 1e+308"),  # fuzz
    ("input: [4]\nblocks:\n  1: [ReLU]\nlayers: [Relu2]\n", (3, "spec-structure"), "block name 1"),
    ("input: [4]\nlayers: &l [ReLU, {Sequential: *l}]\n", (2, "yaml-syntax"), "contains the alias itself"),
    ("input: [4]\nlayers:\n  - ReLU:\n    repeat: 2147483647\n", (4, "limit"), "2,147,483,647"),
    ("input: [T, 4]\nlayers: [{LSTM: {hidden_size: 4, num_layers: 1000000000000, batch_first: true}}]\n",
     (2, "model-size"), "parameters"),
    ("input: [100000, 100000, 100000]\nlayers: [{Conv2d: {out_channels: 4, kernel_size: 3}}]\n", (2, "model-size"),
     "values"),
    # tags on lists and mappings are refused as on scalars (they were dropped without a word)
    ("input: !!python/object/apply:os.system [1, 28, 28]\n" + L, (1, "yaml-syntax"), "!!python/object/apply:os.system"),
    ("input: [4]\nlayers:\n  - Linear: !mytag {out_features: 2}\n", (3, "yaml-syntax"), "!mytag"),
    ("input: [4]\n" + L + "train: !!set {a: null}\n", (3, "yaml-syntax"), "!!set"),
    # what aliases repeat is bounded apart from what the file holds: a 200-byte file read for seconds
    ("a: &a [1,2,3,4,5,6,7,8,9]\n" + "".join(f"{n}: &{n} [" + ", ".join(["*" + p] * 9) + "]\n" for p, n in
                                              zip("abcde", "bcdef", strict=True)) + "input: [4]\n" + L, (5, "limit"), "20,000"),
    # one value per sample (a reduction over every dimension) reaching a layer that normalises the last one
    ("input: [4, 5]\nlayers:\n  - Mean: {dim: [1, 2]}\n  - LayerNorm\n", (4, "rank"), "one value per sample"),
    ("input: [4, 5]\nlayers:\n  - Sum: [1, 2]\n  - RMSNorm\n", (4, "rank"), "one value per sample"),
    # a dimension named twice in a reduction: torch refuses it ("dim 1 appears multiple times in the list of dims")
    ("input: [4, 5]\nlayers:\n  - Mean: {dim: [1, 1]}\n", (3, "invalid-argument"), "names dim 1 twice"),
    ("input: [4, 5]\nlayers:\n  - Max: {dim: [1, -2]}\n", (3, "invalid-argument"), "1 and -2 are both dim 1"),
    ("input: [4, 5, 6]\nlayers:\n  - Sum: {dim: [-1, 3], keepdim: true}\n", (3, "invalid-argument"), "-1 and 3"),
    # sizes are torch's 64-bit integers: beyond them, a limit or an invalid argument, never an overflow later
    ("input: [9223372036854775808]\n" + L, (1, "limit"), "9,223,372,036,854,775,808"),
    ("input: [4294967296, 4294967296]\n" + L, (1, "limit"), "values per sample"),
    ("input: [" + ", ".join(["1"] * 65) + "]\n" + L, (1, "limit"), "65 dimensions"),
    ("input: [4]\nlayers:\n  - Linear: {out_features: 9223372036854775808}\n", (3, "invalid-argument"),
     "9223372036854775808"),
    ("input: [1, 8, 8]\nlayers:\n  - Conv2d: {out_channels: 2, kernel_size: [3, 9223372036854775808]}\n",
     (3, "invalid-argument"), "kernel_size"),
    ("input: [4]\nlayers:\n  - Reshape: [" + ", ".join(["1"] * 65) + ", 4]\n", (3, "invalid-argument"), "Reshape"),
    ("input: [1, 8]\nlayers:\n  - ConvTranspose1d: {out_channels: 2, kernel_size: 9223372036854775807, stride: "
     "9223372036854775807}\n", (3, "limit"), "more than a tensor can hold"),
    ("input: [4]\nlayers:\n  - ReLU:\n    from: x\n  - name: [1]\n    ReLU:\n", (4, "reference"), "'x'"),
    # a symbol is an ASCII name: Python's parser would read `Tﬁ` as `Tfi`, another symbol
    ("input: [Tﬁ, 4]\n" + L, (1, "invalid-input"), "Tﬁ"),
    # a symbolic size grown beyond any tensor for every value of L (L*3^39), instead of a text of thousands of digits
    ("input: [2, L]\nlayers:\n" + "  - ConvTranspose1d: {out_channels: 2, kernel_size: 3, stride: 3}\n" * 50,
     (42, "limit"), "for any value of its symbols"),
]


def block(expr: str, args: str = "{c: 8}") -> str:
    """A spec whose block computes Linear's out_features from its argument c (line 6, column 32)."""
    return f"input: [4]\nblocks:\n  b:\n    args: {args}\n    layers:\n      - Linear: {{out_features: {expr}}}\n" \
        "layers: [b]\n"


# block arithmetic: every bound said at the expression's line and column, once (not again as the argument)
EXPRESSIONS = [
    (block(" + ".join(["c"] * 5000)), "limit", "more than 100 numbers, names and operators"),
    (block("-" * 3000 + "c"), "limit", "more than 100"),
    (block("(" * 50 + "c" + ")" * 50), "limit", "more than 16 deep"),
    (block("c ** -1", "{c: 0.0}"), "invalid-argument", "divides by zero"),
    (block("c // 0"), "invalid-argument", "divides by zero"),
    (block("c % (c - 8)"), "invalid-argument", "divides by zero"),
    (block("(-c) ** 0.5"), "invalid-argument", "no real value"),
    (block("c * 1e308"), "limit", "2**63 - 1"),
    (block("c * c * c * c * c * c * c * c", "{c: 4294967296}"), "limit", "2**63 - 1"),
    (block("c * 2", "{c: 100000000000000000000}"), "limit", "2**63 - 1"),
    (block("c * 2", "{c: .nan}"), "invalid-argument", "computes nan"),
    (block("min(c)"), "invalid-argument", "min takes 2 or more values, got 1"),
    (block("c / 3"), "invalid-argument", "cannot be 2.6666666666666665"),  # a size from a fraction
    (block("c - 100"), "invalid-argument", "cannot be -92"),
]


@pytest.mark.parametrize("text, code, word", EXPRESSIONS, ids=[e[2] for e in EXPRESSIONS])
def test_block_arithmetic_is_bounded(text: str, code: str, word: str) -> None:
    checked = dlspec.check(dlspec.loads(text, "spec.yaml"))
    said = [(d.line, d.column, str(d.code)) for d in checked.diagnostics]
    assert said == [(6, 32, code)] and word in checked.diagnostics[0].message, checked.diagnostics


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


# work a size used to drive: each took minutes (or all memory) before it was bounded; run in a process under a
# memory limit, its only clock the generous timeout that keeps a regression from hanging the suite
HANGS = {
    "a power computed in full": (block("c ** 10 ** 10", "{c: 2}"), "limit", "2**63 - 1"),
    "round to a billion digits": (block('"round(c, -1000000000)"'), "invalid-argument", "round's digits"),
    "GroupNorm divisors of a prime": ("input: [2147483647, 4]\nlayers:\n  - GroupNorm: {num_groups: 2}\n", "groups",
                                      "divisors of 2147483647: 1, 2147483647"),
    "attention divisors of a prime": ("input: [T, 2147483629]\nlayers:\n  - MultiheadAttention: {num_heads: 2, "
                                      "batch_first: true}\n", "groups", "divisors of 2147483629: 1, 2147483629"),
    "encoder divisors of a prime": ("input: [T, 2147483647]\nlayers:\n  - TransformerEncoderLayer: {nhead: 4, "
                                    "batch_first: true}\n", "groups", "divisors of 2147483647: 1, 2147483647"),
    "expect read by backtracking": ("input: [4]\nlayers:\n  - ReLU:\n    expect: 1@" + "2x" * 200 + "!\n",
                                    "invalid-argument", "cannot read expect"),
    "a symbolic size grown by fractional upsampling": ("input: [2, L]\nlayers:\n" + "  - Upsample: {scale_factor: "
                                                      "1.5}\n" * 300, "limit", "more than the 500"),
    "a long text repeated by aliases": ("x: &x " + "y" * 1_000_000 + "\ninput: [4]\nlayers:\n"
                                        + "  - Linear: {out_features: *x}\n" * 3000, "limit", "per 80 characters"),
    "one line of 20,000 layers shown under each of its errors": ("input: [4]\nlayers: [" + ", ".join(
        ["Linear: x"] * 20_000) + "]\n", "invalid-argument", "2 | …"),
    "a block argument scanned quadratically": ("input: [4]\nblocks:\n  b:\n    args: {c: 8}\n    layers: [{Linear: c}]"
                                               "\nlayers:\n  - b: {c: " + "x" * 200_000 + "}\n", "invalid-argument",
                                               "cannot be"),
}


@pytest.mark.parametrize("name", list(HANGS))
def test_size_driven_work_is_bounded(tmp_path: Path, name: str) -> None:
    text, code, word = HANGS[name]
    spec = tmp_path / "spec.yaml"
    spec.write_text(text, encoding="utf-8")
    program = textwrap.dedent(f"""
        import resource, sys
        resource.setrlimit(resource.RLIMIT_AS, (1_500_000_000, 1_500_000_000))
        from dlspec.cli import main
        sys.exit(main(["check", {str(spec)!r}]))
    """)
    p = run_or_hang([sys.executable, "-c", program], timeout=120, capture_output=True, text=True)
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr[-2000:]
    assert f"error[{code}]" in p.stdout and word in p.stdout, p.stdout[-3000:]


def test_messages_about_a_long_value_are_short() -> None:
    """A long text given to a block that uses it in 200 layers: each message shows it shortened (a megabyte in
    each of them was 200 MB of messages)."""
    text = ("input: [4]\nblocks:\n  b:\n    args: {c: 8}\n    layers:\n" + "      - Linear: c\n" * 200
            + "layers:\n  - b: {c: " + "x" * 100_000 + "}\n")
    checked = dlspec.check(dlspec.loads(text, "spec.yaml"))
    assert len(checked.errors) == 200 and all("x…x" in d.message for d in checked.errors)
    assert max(len(d.message) + sum(len(n) for n in d.notes) for d in checked.errors) < 500
    assert "b(c=xxx" in render_text(checked)


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
