"""Diagnostics are data: collected while a spec is read and checked, rendered last (text or JSON).

Codes are a stable table (``CODES``); tests and the error specs in ``specs/errors/`` refer to them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# code -> one line saying what it means (printed by `dlspec codes`, documented in the README)
CODES: dict[str, str] = {
    "yaml-syntax": "the file is not valid YAML",
    "io": "the file cannot be read",
    "duplicate-key": "a mapping has the same key twice (YAML would silently keep the last)",
    "spec-structure": "a top-level key is missing, unknown or of the wrong type",
    "missing-input": "the spec has no `input` shape",
    "invalid-input": "the `input` shape is malformed",
    "unknown-layer": "no layer type of that name",
    "unknown-argument": "the layer type has no argument of that name",
    "missing-argument": "a required argument is not given",
    "invalid-argument": "an argument has the wrong type or an impossible value",
    "invalid-layer": "a layer entry is not written as `- Name` or `- Name: {args}`",
    "recursive-block": "a block uses itself",
    "shape-mismatch": "a written input size disagrees with the size the layer receives",
    "rank": "the layer receives a tensor with the wrong number of dimensions",
    "kernel-too-large": "the (dilated) kernel is larger than the padded input",
    "output-too-small": "the layer would produce an empty output",
    "padding": "padding is larger than torch allows for this layer",
    "groups": "groups (or heads) do not divide the channels",
    "output-padding": "output_padding must be smaller than stride or dilation",
    "symbolic-size": "a symbolic (variable) size reaches a layer that needs a fixed size",
    "dtype": "the layer receives the wrong kind of values (integer ids vs float features)",
    "expect-mismatch": "a layer's output differs from its `expect:`",
    "merge-shape": "Residual / Concat branches produce shapes that cannot be merged",
    "reshape": "Reshape / Unflatten sizes do not multiply to the input size",
    "batch-first": "a recurrent or attention layer reads (N, T, F) data with batch_first false",
    "forgotten-flatten": "a Linear is applied to a feature map (a Flatten is probably missing)",
    "no-effect": "an argument that has no effect in this position",
    "implicit-dim": "Softmax-like layer without `dim`",
    "unknown-size": "a size the layer needs cannot be inferred (a guard: no known spec reaches it)",
    # `train:` and `dlspec run`
    "train": "a `train:` option is unknown, misspelled or of the wrong type (torch names checked at run time)",
    "unknown-dataset": "no dataset of that name",
    "data": "the data cannot be read (missing or corrupted files, wrong arrays)",
    "data-shape": "the dataset's samples do not have the spec's input shape",
    "loss": "the loss cannot compare the model's output with the dataset's targets",
    "classes": "the last layer's size differs from the number of classes",
    "double-softmax": "Softmax before CrossEntropyLoss (which applies log-softmax itself)",
    "nll-without-log-softmax": "NLLLoss on a model that does not end with LogSoftmax",
    "bce-without-sigmoid": "BCELoss on a model that does not end with Sigmoid",
    "device": "the requested device is not available",
    "precision": "the requested precision is not available on the device",
}


@dataclass
class Diagnostic:
    severity: str  # "error" | "warning"
    code: str
    message: str
    file: str | None = None
    line: int | None = None  # 1-based
    column: int | None = None  # 1-based
    end_column: int | None = None  # exclusive, 1-based, same line
    layer: int | None = None  # 0-based index in the top-level layer list
    notes: list[str] = field(default_factory=list)
    help: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "severity": self.severity,
            "code": self.code,
            "message": self.message,
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "layer": self.layer,
            "notes": list(self.notes),
            "help": self.help,
        }


def sort_key(d: Diagnostic) -> tuple[int, int]:
    return (d.line or 0, d.column or 0)


def render(d: Diagnostic, source_lines: list[str] | None = None, color: bool = False) -> str:
    """mypy/rustc-style text: header, the source line with a caret, then notes and help."""
    loc = d.file or "<spec>"
    if d.line is not None:
        loc += f":{d.line}"
        if d.column is not None:
            loc += f":{d.column}"
    sev = d.severity
    if color:
        sev = ("\x1b[1;31m" if sev == "error" else "\x1b[1;33m") + sev + "\x1b[0m"
    out = [f"{loc}: {sev}[{d.code}]: {d.message}"]
    if source_lines is not None and d.line is not None and 0 < d.line <= len(source_lines):
        text = source_lines[d.line - 1].rstrip("\n")
        gutter = " " * len(str(d.line))
        out.append(f"{gutter} |")
        out.append(f"{d.line} | {text}")
        if d.column is not None:
            start = d.column - 1
            end = d.end_column - 1 if d.end_column and d.end_column > d.column else start + 1
            end = max(start + 1, min(end, len(text))) if len(text) > start else start + 1
            out.append(f"{gutter} | " + " " * start + "^" * (end - start))
        for n in d.notes:
            out.append(f"{gutter} = note: {n}")
        if d.help:
            out.append(f"{gutter} = help: {d.help}")
    else:
        for n in d.notes:
            out.append(f"  = note: {n}")
        if d.help:
            out.append(f"  = help: {d.help}")
    return "\n".join(out)


def did_you_mean(word: str, choices: list[str] | tuple[str, ...], n: int = 1, cutoff: float = 0.6) -> str | None:
    """Closest choice by spelling (case-insensitive), or None."""
    import difflib

    lower = {c.lower(): c for c in choices}
    hits = difflib.get_close_matches(word.lower(), list(lower), n=n, cutoff=cutoff)
    return lower[hits[0]] if hits else None
