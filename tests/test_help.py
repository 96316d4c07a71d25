"""Every diagnostic's help is the right fix: applied, it makes the spec check clean.

(a) The mistakes in specs/errors/: each diagnostic's help is applied to the file as a person would
    apply it — mechanically where the help names one edit (`did you mean 'X'?`, `write KEY: VALUE`,
    `write `- Name: {...}``, `put `- Layer` before it`, `use Name`, `close it with `}` on this line`,
    ...), by the hand-written edit of MANUAL where it leaves a choice — until no diagnostic is left.
    MANUAL must hold exactly the specs whose helps are not mechanical, so the list stays honest.
(b) One case per diagnostic code that no error spec shows, the help pinned word for word and its fix
    applied the same way; `dlspec run`'s own codes (data, device, precision, override, io) through the
    run.  Every public code is covered by (a) or (b), except `unknown-size`, a guard no spec reaches.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

import dlspec
from dlspec.codes import CODES
from dlspec.diagnostics import Diagnostic

ROOT = Path(__file__).resolve().parent.parent
ERRORS = sorted((ROOT / "specs" / "errors").glob("*.yaml"))

# --- applying a help -----------------------------------------------------------------------------------


def _value(text: str) -> str:
    """The YAML value at the start of text: up to a comma, semicolon or ' (' outside brackets."""
    depth, out = 0, ""
    for i, ch in enumerate(text):
        depth += ch in "[{(" and 1 or 0
        depth -= ch in "]})" and 1 or 0
        if depth < 0 or depth == 0 and (ch in ",;" or text.startswith(" (", i) or text.startswith(" or ", i)):
            break
        out += ch
    return out.strip().rstrip(".")


def _entry_lines(lines: list[str], line: int) -> tuple[int, int, str]:
    """(first, end, indent) of the list entry holding 0-based `line`: from its `- ` to the next line that is
    not more indented than the dash."""
    first = line
    while first > 0 and not re.match(r"\s*- ", lines[first]):
        first -= 1
    indent = re.match(r"(\s*)- ", lines[first])
    assert indent, "no list entry around the diagnostic"
    end = first + 1
    while end < len(lines) and lines[end].strip() and len(lines[end]) - len(lines[end].lstrip()) > len(indent.group(1)):
        end += 1
    return first, end, indent.group(1)


def _split_comment(line: str) -> tuple[str, str]:
    m = re.search(r"\s+#.*$", line)
    return (line[:m.start()], line[m.start():]) if m else (line, "")


def apply_help(text: str, d: Diagnostic) -> str | None:
    """text with the one edit d.help names applied, or None when the help leaves a choice to a person."""
    h, lines = d.help or "", text.split("\n")
    if d.line is None:
        return None
    i = d.line - 1
    span = (d.column - 1, (d.end_column or d.column + 1) - 1) if d.column else None
    line = lines[i]

    def replace_span(new: str) -> str:
        assert span is not None
        lines[i] = line[:span[0]] + new + line[span[1]:]
        return "\n".join(lines)

    m = re.match(r"did you mean '([^']+)'\?", h)
    if m:
        return replace_span(m.group(1))
    m = re.search(r"write (`- [^`]+`)(?: or |$|,|;| \()", h)
    if m and " or `- " not in h[m.end() - 5:m.end() + 10]:
        first, end, indent = _entry_lines(lines, i)
        comment = _split_comment(lines[first])[1]
        lines[first:end] = [indent + m.group(1).strip("`") + comment]
        return "\n".join(lines)
    m = re.search(r"(?:put|add) `(- [^`]+)` before (?:it|this)", h)
    if m:
        first, _, indent = _entry_lines(lines, i)
        lines.insert(first, indent + m.group(1))
        return "\n".join(lines)
    m = re.search(r"\badd (\w+): (\S+) to \w+", h)
    if m:
        body, comment = _split_comment(line)
        assert body.rstrip().endswith("}")
        lines[i] = body.rstrip()[:-1] + f", {m.group(1)}: {m.group(2)}}}" + comment
        return "\n".join(lines)
    m = re.search(r"close it with `(.)` on this line", h)
    if m:
        body, comment = _split_comment(line)
        lines[i] = body.rstrip() + m.group(1) + comment
        return "\n".join(lines)
    m = re.search(r"(?:^|\(|: )(?:write|e\.g\.) (\w+): ", h)
    if m:
        key, value = m.group(1), _value(h[m.end():])
        body, comment = _split_comment(line)
        if d.code == "unknown-argument" and span is not None and body[span[1]:span[1] + 1] == ":":
            body = body[:span[0]] + key + body[span[1]:]  # the argument renamed (Keras' units: out_features)
        km = re.search(rf"\b{key}:\s*", body)
        if km is None:  # a top-level key (input:) elsewhere in the file
            j = next((j for j, t in enumerate(lines) if t.startswith(f"{key}:")), None)
            if j is None:
                return None
            i, (body, comment) = j, _split_comment(lines[j])
            km = re.search(rf"\b{key}:\s*", body)
            assert km is not None
        rest = body[km.end():]
        old = _value(rest + ",")
        lines[i] = body[:km.end()] + value + rest[len(old):] + comment
        return "\n".join(lines)
    m = re.search(r"(?:^|for class ids )use (\w+)\b(?! padding)", h)
    if m and m.group(1)[0].isupper():
        return replace_span(m.group(1))
    return None


def fix_all(text: str, manual: list[tuple[str, str]] | None = None) -> tuple[str, list[str]]:
    """Apply the helps (and the manual edits first) until the spec checks clean; the helps applied."""
    for old, new in manual or []:  # the first occurrence outside the header comment
        at = next((m.start() for m in re.finditer(re.escape(old), text)
                   if not text[text.rfind("\n", 0, m.start()) + 1:].startswith("#")), None)
        assert at is not None, f"manual edit {old!r} not in the spec"
        text = text[:at] + new + text[at + len(old):]
    applied = []
    for _ in range(10):
        diags = dlspec.check(dlspec.loads(text, "spec.yaml")).diagnostics
        if not diags:
            return text, applied
        fixed = apply_help(text, diags[0])
        assert fixed is not None and fixed != text, \
            f"help not mechanical: {diags[0].code} {diags[0].message!r}: {diags[0].help!r}\n{text}"
        applied.append(f"{diags[0].code}: {diags[0].help}")
        text = fixed
    raise AssertionError(f"still not clean after 10 helps:\n{text}")


# the error specs whose help leaves a choice: the edit a person makes following it
MANUAL: dict[str, list[tuple[str, str]]] = {
    "groups": [("groups: 3", "groups: 4")],
    "invalid_argument": [("p: 50", "p: 0.5"), ("out_features: -1", "out_features: 10")],
    "kernel_too_large": [("out_channels: 6, kernel_size: 5}", "out_channels: 6, kernel_size: 5, padding: 2}")],
    "merge_shape": [("out_channels: 32, kernel_size: 3, stride: 2", "out_channels: 16, kernel_size: 3"),
                    ("out_channels: 32", "out_channels: 16")],
    "missing_input": [("layers:", "input: [1, 28, 28]\nlayers:")],
    "nhead": [("nhead: 8", "nhead: 10")],
    "output_padding": [("stride: 1, padding: 1, output_padding: 1}", "stride: 1, padding: 1}")],
    "reshape": [("Reshape: [64, 7, 7]", "Reshape: [32, 7, 7]")],
    "rnn_per_step_output": [("  - Linear: {out_features: 1}", "  - Last\n  - Linear: {out_features: 1}")],
    "symbolic_size": [("  - Flatten\n", "  - Last\n")],
    "rank": [("input: [784]", "input: [1, 28, 28]")],
    "reconstruction_shape": [("  - Linear: 784  # error: loss\n",
                              "  - Linear: 784\n  - Unflatten: {dim: 1, unflattened_size: [1, 28, 28]}\n")],
    "gan_shapes": [("Linear: 1024", "Linear: 784"), ("[1, 32, 32]}", "[1, 28, 28]}"), ("Linear: 2  #", "Linear: 1  #")],
    "early_stopping_on_test": [("metric: test_accuracy", "metric: val_accuracy"), ("  epochs: 30\n",
                                                                                  "  epochs: 30\n  val_split: 0.1\n")],
}


@pytest.mark.parametrize("path", ERRORS, ids=lambda p: p.stem)
def test_error_spec_help_fixes_it(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    before = dlspec.check(dlspec.loads(text, "spec.yaml")).diagnostics
    assert before, f"{path.name} checks clean"
    manual = MANUAL.get(path.stem)
    if manual is not None:  # the list stays honest: the helps alone really do not fix this spec
        with pytest.raises(AssertionError):
            fix_all(text)
    fixed, applied = fix_all(text, manual)
    assert dlspec.check(dlspec.loads(fixed, "spec.yaml")).ok


def test_manual_list_names_error_specs() -> None:
    assert set(MANUAL) <= {p.stem for p in ERRORS}


# --- (b) one case for each code no error spec shows -----------------------------------------------------

MNIST_MLP = "input: [1, 28, 28]\nlayers:\n  - Flatten\n  - Linear: {out_features: 10}\n"

# code -> (spec text, the help, word for word; or a manual edit (old, new) where the help leaves a choice)
CASES: dict[str, tuple[str, str, tuple[str, str] | None]] = {
    "duplicate-key": ("input: [4]\nlayers:\n  - Linear: {out_features: 2, out_features: 3}\n",
                      "write each key once", ("out_features: 2, ", "")),
    "spec-structure": ("input: [4]\nlayer:\n  - Linear: 2\n", "did you mean 'layers'?", None),
    "invalid-input": ("input: [N, 28]\nlayers:\n  - Linear: 2\n", "write input: [28]", None),
    "recursive-block": ("input: [4]\nblocks:\n  mlp: [{Linear: 4}, mlp]\nlayers:\n  - mlp\n",
                        "a block cannot contain itself; to use 'mlp' several times in a row, write `repeat:` beside "
                        "its name where it is used (`- mlp:` then `repeat: 3`)",
                        ("mlp: [{Linear: 4}, mlp]\nlayers:\n  - mlp\n",
                         "mlp: [{Linear: 4}]\nlayers:\n  - mlp:\n    repeat: 2\n")),
    "output-too-small": ("input: [1, 4, 4]\nlayers:\n  - Conv2d: {out_channels: 2, kernel_size: 3, padding: 2}\n"
                         "  - MaxPool2d: {kernel_size: 7}\n",
                         "use a smaller kernel, or remove a pooling layer before it",
                         ("kernel_size: 7", "kernel_size: 2")),
    "no-effect": ("input: [T, 4]\nlayers:\n  - LSTM: {hidden_size: 8, dropout: 0.5, batch_first: true}\n",
                  "use num_layers ≥ 2, or put a Dropout layer after it", ("dropout: 0.5, ", "num_layers: 2, dropout: 0.5, ")),
    "implicit-dim": ("input: [10]\nlayers:\n  - Linear: 3\n  - Softmax\n",
                     "write `- Softmax: {dim: -1}` (or the dim you mean)", None),
    "train": (MNIST_MLP + "train:\n  data: {name: mnist}\n  epochs: 0\n",
              "write epochs: 10 (the default), or a positive integer (at most 1,000,000)", None),
    "unknown-dataset": (MNIST_MLP + "train:\n  data: {name: mnsit}\n", "did you mean 'mnist'?", None),
    "double-softmax": (MNIST_MLP + "  - Softmax: {dim: 1}\ntrain:\n  data: {name: mnist}\n",
                       "remove the Softmax layer (apply softmax only at prediction time)",
                       ("  - Softmax: {dim: 1}\n", "")),
    "nll-without-log-softmax": (MNIST_MLP + "train:\n  data: {name: mnist}\n  loss: NLLLoss\n",
                                "end the model with `- LogSoftmax: {dim: -1}`, or use CrossEntropyLoss on raw scores",
                                ("train:", "  - LogSoftmax: {dim: -1}\ntrain:")),
    "bce-without-sigmoid": ("input: [2]\nlayers:\n  - Linear: 1\ntrain:\n  data: {name: csv, path: x.csv, features: [a, b], "
                            "task: classification}\n  loss: BCELoss\n",
                            "use BCEWithLogitsLoss on raw scores (numerically safer), or end with Sigmoid",
                            ("loss: BCELoss", "loss: BCEWithLogitsLoss")),
    "layout": ("input: [4, 16]\nlayers:\n  - Conv1d: {out_channels: 8, kernel_size: 3}\n  - Last\n  - Linear: 2\n",
               "for the last position write `- Select: {dim: -1, index: -1}`, or `- Permute: [0, 2, 1]` before Last "
               "to read the map as a sequence", ("  - Last\n", "  - Select: {dim: -1, index: -1}\n")),
    "limit": ("input: [4]\nlayers:\n  - ReLU:\n    repeat: 200000\n",
              "raise the bound with DLSPEC_MAX_LAYERS=N if the spec really is meant to be this large",
              ("repeat: 200000", "repeat: 2")),
    "model-size": ("input: [100000]\nlayers:\n  - Linear: 100000\n",
                   "check the sizes for a typo (out_features: 100000?); raise the bound with DLSPEC_WARN_PARAMS=N if "
                   "the spec really is meant to be this large", ("Linear: 100000", "Linear: 100")),
}


@pytest.mark.parametrize("code", sorted(CASES))
def test_code_help(code: str) -> None:
    text, help, manual = CASES[code]
    diags = dlspec.check(dlspec.loads(text, "spec.yaml")).diagnostics
    mine = [d for d in diags if d.code == code]
    assert mine and mine[0].help == help, [(d.code, d.help) for d in diags]
    if manual is None:
        assert apply_help(text, mine[0]) is not None, "a mechanical help: applied by the test"
    fixed, _ = fix_all(text, [manual] if manual else None)
    assert dlspec.check(dlspec.loads(fixed, "spec.yaml")).ok


def test_every_code_has_a_help_test() -> None:
    from test_specs import expected_diagnostics  # noqa: PLC0415 - the annotation reader of the spec tests

    shown = {code for p in ERRORS for _, _, code in expected_diagnostics(p)}
    run_only = set(RUN_CASES)
    missing = set(CODES) - shown - set(CASES) - run_only - {"unknown-size"}
    assert not missing, f"no help test for {sorted(missing)}"


# --- `dlspec run`'s own codes: what only the run can see -----------------------------------------------

RUN_CASES = ("data", "device", "precision", "override", "io", "memory", "runtime")


def _run(tmp_path: Path, capsys: Any, text: str, *args: str) -> tuple[int, str]:
    from dlspec.cli import main

    spec = tmp_path / "spec.yaml"
    spec.write_text(text, encoding="utf-8")
    capsys.readouterr()
    rc = main(["run", str(spec), *args, "--out", str(tmp_path / "runs"), "--no-progress"])
    return rc, capsys.readouterr().err


SHAPES = "input: [1, 28, 28]\nlayers:\n  - Flatten\n  - Linear: 10\ntrain:\n  data: {name: shapes, n_train: 40, n_test: 20}\n" \
    "  epochs: 1\n"


def test_run_codes_help(tmp_path: Path, capsys: Any, monkeypatch: Any) -> None:
    monkeypatch.chdir(tmp_path)
    text = SHAPES.replace("data: {name: shapes, n_train: 40, n_test: 20}", "data: {name: mnist, root: nowhere}")
    rc, err = _run(tmp_path, capsys, text)
    assert rc == 1 and "error[data]" in err and "= help: " in err  # where the files go, and how to get them
    rc, err = _run(tmp_path, capsys, SHAPES, "--device", "cuda:7")
    assert rc == 1 and "error[device]" in err and "help: use device: auto (or cpu), or --device cpu" in err
    rc, err = _run(tmp_path, capsys, SHAPES, "--precision", "fp16", "--device", "cpu")
    assert rc == 1 and "error[precision]" in err and "help: use precision: bf16 on CPU, or fp32" in err
    # the help applied: each run starts
    rc, err = _run(tmp_path, capsys, SHAPES, "--precision", "bf16", "--device", "cpu")
    assert rc == 0, err
    rc, err = _run(tmp_path, capsys, SHAPES, "layers.7.Linear.out_features=3")
    assert rc == 2 and "command line: error[override]" in err and "help: overrides are PATH=VALUE" in err
    from dlspec.cli import main

    capsys.readouterr()
    assert main(["check", str(tmp_path / "absent.yaml")]) == 2
    assert "error[io]" in capsys.readouterr().out


def test_run_memory_and_runtime_helps(tmp_path: Path, capsys: Any, monkeypatch: Any) -> None:
    """`memory` (a batch too large for the memory) and `runtime` (a last batch of one sample for a BatchNorm):
    each help, applied, lets the run start."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DLSPEC_MEMORY", "64M")
    wide = SHAPES.replace("n_train: 40", "n_train: 2000").replace("Linear: 10", "Linear: 2048\n  - ReLU\n  - Linear: 10") \
        + "  batch_size: 2000\n"
    rc, err = _run(tmp_path, capsys, wide)
    assert rc == 1 and "error[memory]" in err, err
    m = re.search(r"help: use batch_size: (\d+) or less", err)
    assert m, err
    rc, err = _run(tmp_path, capsys, wide.replace("batch_size: 2000", f"batch_size: {m.group(1)}"))
    assert rc == 0, err
    bn = SHAPES.replace("n_train: 40", "n_train: 41").replace("  - Linear: 10", "  - Linear: 8\n  - BatchNorm1d\n  - Linear: 10") \
        + "  batch_size: 8\n"
    rc, err = _run(tmp_path, capsys, bn)
    assert rc == 1 and "error[runtime]" in err and "help: the last batch of each epoch has 1 sample" in err, err
    rc, err = _run(tmp_path, capsys, bn + "  drop_last: true\n")
    assert rc == 0, err
