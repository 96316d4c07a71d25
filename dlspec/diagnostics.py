"""Diagnostics are data: collected while a spec is read and checked, located and rendered last.

A stage reports *what* is wrong and *where in the document* (a path such as
``("train", "optimizer", "SGD", "momentun")``), never a line or column: ``locate`` gives a diagnostic its
position from the document once every stage is done (a value set by a command-line override is located
on the command line, not on the file's line it replaced), then ``render`` writes it as text and
``Diagnostic.to_json`` as JSON.  Codes are the constants of ``dlspec.codes``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .codes import CODES, ErrorCode
from .safeio import shown

if TYPE_CHECKING:
    from .source import Document

__all__ = ["CODES", "Diagnostic", "diag", "error", "warning", "locate", "render", "sort_key", "did_you_mean",
           "dotted"]

Path = tuple[Any, ...]


@dataclass
class Diagnostic:
    severity: str  # "error" | "warning"
    code: str  # an ErrorCode (a str)
    message: str
    path: Path | None = None  # where in the document: ("layers", 3, "Linear", "in_features")
    key: bool = False  # about the mapping key at path (a name), not its value
    layer: int | None = None  # 0-based index in the top-level layer list
    notes: list[str] = field(default_factory=list)
    help: str | None = None
    # the position, given by locate() (or, for a YAML syntax error, by the reader itself)
    file: str | None = None
    line: int | None = None  # 1-based
    column: int | None = None  # 1-based
    end_column: int | None = None  # exclusive, 1-based, same line
    override: str | None = None  # the command-line PATH=VALUE the diagnostic is about
    override_span: tuple[int, int] | None = None  # its characters in `override` (0-based, end exclusive)
    # other places it concerns, located with it: (path, words), e.g. the use of the block it is inside
    related: list[tuple[Path, str]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "severity": self.severity,
            "code": str(self.code),
            "message": self.message,
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "path": dotted(self.path) if self.path is not None else None,
            "override": self.override,
            "layer": self.layer,
            "notes": list(self.notes),
            "help": self.help,
        }


def diag(severity: str, code: ErrorCode, message: str, path: Path = (), key: bool = False, layer: int | None = None,
         notes: list[str] | None = None, help: str | None = None) -> Diagnostic:
    return Diagnostic(severity, code, message, path=tuple(path), key=key, layer=layer, notes=list(notes or []),
                      help=help)


def error(code: ErrorCode, message: str, path: Path = (), **kw: Any) -> Diagnostic:
    return diag("error", code, message, path, **kw)


def warning(code: ErrorCode, message: str, path: Path = (), **kw: Any) -> Diagnostic:
    return diag("warning", code, message, path, **kw)


def dotted(path: Path) -> str:
    return ".".join(map(str, path))


def _override_of(path: Path, overrides: list[str]) -> str | None:
    """The last override that set the value at path, or a mapping or list holding it."""
    p = dotted(path)
    for item in reversed(overrides):
        opath = item.split("=", 1)[0]
        if p == opath or p.startswith(opath + "."):
            return item
    return None


def locate(d: Diagnostic, doc: Document | None) -> Diagnostic:
    """Give d its position (idempotent): the line and columns of its path in doc, or the command-line
    override that set the value.  A diagnostic about a mapping that an override changed inside gets a note."""
    if doc is None:
        return d
    if d.file is None:
        d.file = doc.path
    for rpath, words in d.related:  # "in block bottleneck, used at line 40": the use site of a block's layer
        rs = doc.span(rpath)
        note = f"{words} at line {rs.line}" if rs is not None else words
        if note not in d.notes:
            d.notes.append(note)
    d.related = []
    if d.path is None or d.line is not None or d.override is not None:
        return d
    item = _override_of(d.path, doc.overrides)
    if item is not None:
        d.override = item
        key, _, value = item.partition("=")
        if d.key and dotted(d.path) == key:  # about the name set: the last part of the path
            start = len(key) - len(str(d.path[-1])) if d.path else 0
            d.override_span = (start, len(key))
        else:
            d.override_span = (len(key) + 1, max(len(item), len(key) + 2))
        return d
    p = dotted(d.path)
    for item in doc.overrides:  # an override inside what the diagnostic is about: say so beside the file line
        opath = item.split("=", 1)[0]
        if p and opath.startswith(p + "."):
            note = f"set on the command line: {item}"
            if note not in d.notes:
                d.notes.append(note)
    s = doc.span(d.path, d.key)
    if s is not None:
        d.line, d.column = s.line, s.col
        d.end_column = s.end_col if s.end_line == s.line else None
    return d


def sort_key(d: Diagnostic) -> tuple[int, int, int]:
    """File order; the command line's diagnostics after the file's, since overrides apply after it."""
    return (1 if d.override is not None else 0, d.line or 0, d.column or 0)


SOURCE_WIDTH = 160  # characters of a source line shown under a diagnostic (a longer one: the part around the caret)


def _excerpt(text: str, start: int, end: int) -> tuple[str, int, int]:
    """The source line as printed, and the caret's columns in it: control characters escaped (the caret moves
    with them), and a line longer than SOURCE_WIDTH cut to the part around the caret, `…` where it is cut."""
    lo = max(0, start - SOURCE_WIDTH)  # the raw text around the caret first: a spec of megabytes on one line
    hi = min(len(text), max(end, start + 1) + SOURCE_WIDTH)  # is escaped a window at a time, not whole
    cut_left, cut_right = lo > 0, hi < len(text)
    text, start, end = text[lo:hi], start - lo, end - lo
    line = shown(text)
    start, end = len(shown(text[:start])), len(shown(text[:end]))
    if len(line) <= SOURCE_WIDTH and not (cut_left or cut_right):
        return line, start, end
    left = max(0, min(start - SOURCE_WIDTH // 4, len(line) - SOURCE_WIDTH))
    part = line[left:left + SOURCE_WIDTH]
    head = "…" if left or cut_left else ""
    tail = "…" if left + SOURCE_WIDTH < len(line) or cut_right else ""
    start = min(start - left, SOURCE_WIDTH) + len(head)
    end = max(start + 1, min(end - left + len(head), len(head) + len(part)))
    return head + part + tail, start, end


def render(d: Diagnostic, source_lines: list[str] | None = None, color: bool = False,
           doc: Document | None = None) -> str:
    """mypy/rustc-style text: header, the source line with a caret, then notes and help.  What the user wrote
    (the file's name, its text, a name quoted in the message) is printed with control characters escaped, so a
    terminal escape in a file name is shown, never sent; to_json keeps the exact text."""
    if doc is not None:
        locate(d, doc)
        source_lines = doc.lines
    sev = d.severity
    if color:
        sev = ("\x1b[1;31m" if sev == "error" else "\x1b[1;33m") + sev + "\x1b[0m"
    if d.override is not None:
        return _render_override(d, sev)
    loc = shown(d.file or "<spec>")
    if d.line is not None:
        loc += f":{d.line}"
        if d.column is not None:
            loc += f":{d.column}"
    out = [f"{loc}: {sev}[{d.code}]: {shown(d.message)}"]
    if source_lines is not None and d.line is not None and 0 < d.line <= len(source_lines):
        text = source_lines[d.line - 1].rstrip("\n")
        gutter = " " * len(str(d.line))
        start = (d.column or 1) - 1
        end = d.end_column - 1 if d.end_column and d.column and d.end_column > d.column else start + 1
        end = max(start + 1, min(end, len(text))) if len(text) > start else start + 1
        line, start, end = _excerpt(text, start, end)
        out.append(f"{gutter} |")
        out.append(f"{d.line} | {line}")
        if d.column is not None:
            out.append(f"{gutter} | " + " " * start + "^" * (end - start))
        out += _tail(d, gutter)
    else:
        out += _tail(d, " ")
    return "\n".join(out)


def _render_override(d: Diagnostic, sev: str) -> str:
    """A value from the command line: the override is the source line, the caret under its value."""
    item = d.override or ""
    start, end = d.override_span or (0, len(item))
    line, start, end = _excerpt(item, start, max(end, start + 1))
    out = [f"command line: {sev}[{d.code}]: {shown(d.message)}", "  |", f"  | {line}",
           "  | " + " " * start + "^" * max(1, end - start)]
    notes = [f"set on the command line for {shown(d.file)}"] if d.file else []
    return "\n".join(out + _tail(d, " ", notes))


def _tail(d: Diagnostic, gutter: str, extra: list[str] | None = None) -> list[str]:
    out = [f"{gutter} = note: {shown(n)}" for n in (extra or []) + d.notes]
    if d.help:
        out.append(f"{gutter} = help: {shown(d.help)}")
    return out


def did_you_mean(word: str, choices: list[str] | tuple[str, ...], n: int = 1, cutoff: float = 0.6) -> str | None:
    """Closest choice by spelling (case-insensitive), or None."""
    import difflib

    lower = {c.lower(): c for c in choices}
    hits = difflib.get_close_matches(word.lower(), list(lower), n=n, cutoff=cutoff)
    return lower[hits[0]] if hits else None
