"""Stage 1, source: read YAML text into plain Python data plus the position of every key and value.

Positions are kept by *path* (``("layers", 3, "Linear", "in_features")``) so every later stage can point
a diagnostic at the exact characters it is about without carrying YAML nodes around.
"""

from __future__ import annotations

import gc
import re
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.constructor import SafeConstructor

from . import codes
from .diagnostics import Diagnostic, error

Path = tuple[Any, ...]

try:  # libyaml is ~10x faster for big specs; the pure-Python loader gives the same nodes
    _Base: Any = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - depends on how PyYAML was built
    _Base = yaml.SafeLoader


class _Loader(_Base):  # type: ignore[misc,valid-type]
    """PyYAML follows YAML 1.1, where `1e-5` (no dot) is a string; YAML 1.2 and every user read it as a number."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9][0-9_]*)?(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789."))


@dataclass(frozen=True)
class Span:
    line: int  # 1-based
    col: int  # 1-based
    end_line: int
    end_col: int  # exclusive


@dataclass
class Document:
    path: str
    text: str
    data: Any = None
    spans: dict[Path, Span] = field(default_factory=dict)  # value positions
    key_spans: dict[Path, Span] = field(default_factory=dict)  # mapping-key positions
    diagnostics: list[Diagnostic] = field(default_factory=list)
    overrides: list[str] = field(default_factory=list)  # command-line PATH=VALUE applied to data

    @property
    def lines(self) -> list[str]:
        return self.text.splitlines()

    def span(self, path: Path, key: bool = False) -> Span | None:
        """Position of the value (or key) at path, falling back to the nearest enclosing one."""
        p = tuple(path)
        while True:
            table = self.key_spans if key else self.spans
            if p in table:
                return table[p]
            if key and p in self.spans:
                return self.spans[p]
            if not p:
                return None
            p = p[:-1]
            key = False


def _span(node: yaml.Node) -> Span:
    a, b = node.start_mark, node.end_mark
    return Span(a.line + 1, a.column + 1, b.line + 1, b.column + 1)


def parse(text: str, path: str = "<spec>") -> Document:
    # Reading builds many small objects and no cycles: without pausing the cyclic garbage collector its
    # passes over an ever larger heap make big specs read in more than linear time.
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _parse(text, path)
    finally:
        if enabled:
            gc.enable()


def _parse(text: str, path: str) -> Document:
    doc = Document(path=path, text=text)
    try:
        root = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as e:
        doc.diagnostics.append(_syntax_error(e, text, path))
        return doc
    except yaml.YAMLError as e:  # e.g. a reader error on bad bytes
        doc.diagnostics.append(Diagnostic("error", codes.YAML_SYNTAX, f"invalid YAML: {e}", file=path))
        return doc
    if root is None:
        doc.data = None
        return doc
    constructor = SafeConstructor()
    doc.data = _build(root, (), doc, constructor)
    return doc


_OPENERS = {"flow mapping": ("{", "}"), "flow sequence": ("[", "]"), "quoted scalar": ("quote", "quote")}


def _syntax_error(e: yaml.MarkedYAMLError, text: str, path: str) -> Diagnostic:
    """A YAML syntax error where the mistake is: an unclosed `{`, `[` or quote at the character that opens it
    (libyaml only notices at a later line, often the end of the file), a tab at the tab; a position past the
    last line moved onto it, so the source line and caret can be shown."""
    lines = text.splitlines() or [""]
    problem = (e.problem or str(e)).strip()
    context = (e.context or "").strip()
    mark = e.problem_mark or e.context_mark
    line, col = (mark.line, mark.column) if mark else (len(lines) - 1, 0)
    notes: list[str] = []
    help = "check indentation, colons and brackets on this line or the one before"
    msg = f"invalid YAML: {problem}" + (f" ({context})" if context else "")
    opened = next((o for k, o in _OPENERS.items() if context.endswith(k)), None)
    cm = e.context_mark
    if opened and cm is not None and (mark is None or mark.line != cm.line):
        what = "quote" if opened[0] == "quote" else f"`{opened[0]}`"
        closer = "the closing quote" if opened[0] == "quote" else f"`{opened[1]}`"
        line, col = cm.line, cm.column
        end = "the end of the file" if mark is None or mark.line >= len(lines) else f"line {mark.line + 1}"
        msg = f"invalid YAML: this {what} is never closed"
        notes.append(f"YAML read on to {end} looking for {closer}" + (f" ({problem})" if "expected" in problem else ""))
        help = f"close it with {closer} on this line" + ("" if opened[0] == "quote" else
                                                         f", entries separated by commas: {opened[0]}a: 1, b: 2{opened[1]}"
                                                         if opened[0] == "{" else ", entries separated by commas: [1, 28, 28]")
    elif "cannot start any token" in problem and 0 <= line < len(lines) and col < len(lines[line]) \
            and lines[line][col] == "\t":
        msg = "invalid YAML: a tab character; YAML indents with spaces only"
        help = "replace the tab with spaces"
    elif "mapping values are not allowed" in problem:
        help = ("a second `:` on one line: write the arguments as a mapping, e.g. "
                "`- Conv2d: {out_channels: 8}`, or on their own lines indented under the name")
    elif "expected '-' indicator" in problem or "expected <block end>" in problem:
        help = "this line's indentation does not match the list above: list entries start with `- ` at the same " \
               "column; keys beside a layer name (expect:, name:, repeat:) line up with the name"
    if line >= len(lines):  # the end of the file: show its last line
        line = len(lines) - 1
        while line > 0 and not lines[line].strip():
            line -= 1
        col = len(lines[line])
    return Diagnostic("error", codes.YAML_SYNTAX, msg, file=path, line=line + 1, column=col + 1, notes=notes,
                      help=help)


def _build(node: yaml.Node, path: Path, doc: Document, c: SafeConstructor) -> Any:
    doc.spans[path] = _span(node)
    if isinstance(node, yaml.MappingNode):
        c.flatten_mapping(node)  # resolves YAML merge keys (<<)
        out: dict[Any, Any] = {}
        for knode, vnode in node.value:
            key = c.construct_object(knode, deep=True)
            try:
                hash(key)
            except TypeError:
                key = str(key)
            kpath = path + (key,)
            doc.key_spans[kpath] = _span(knode)
            if key in out:
                doc.diagnostics.append(error(codes.DUPLICATE_KEY,
                                             f"duplicate key '{key}' (YAML would keep only the last one)",
                                             kpath, key=True, help="write each key once"))
            out[key] = _build(vnode, kpath, doc, c)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(v, path + (i,), doc, c) for i, v in enumerate(node.value)]
    return c.construct_object(node, deep=True)


def read(path: str) -> Document:
    """Read a spec file; an unreadable file becomes an `io` diagnostic, never an exception."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        doc = Document(path=path, text="")
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        doc.diagnostics.append(Diagnostic("error", codes.IO, f"cannot read {path}: {reason}", file=path))
        return doc
    return parse(text, path)
