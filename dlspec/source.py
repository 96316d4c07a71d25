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

from .diagnostics import Diagnostic

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

    def diag(self, severity: str, code: str, message: str, path: Path = (), key: bool = False,
             layer: int | None = None, notes: list[str] | None = None, help: str | None = None) -> Diagnostic:
        s = self.span(path, key)
        notes = list(notes or [])
        dotted = ".".join(map(str, path))
        for o in self.overrides:  # a value set on the command line has no line of its own: say so
            opath = o.split("=", 1)[0]
            if dotted == opath or dotted.startswith(opath + ".") or opath.startswith(dotted + ".") and dotted:
                notes.append(f"set on the command line: {o}")
        d = Diagnostic(severity, code, message, file=self.path,
                       line=s.line if s else None, column=s.col if s else None,
                       end_column=(s.end_col if s and s.end_line == s.line else None),
                       layer=layer, notes=list(notes or []), help=help)
        return d


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
        mark = e.problem_mark or e.context_mark
        msg = (e.problem or str(e)).strip()
        if e.context:
            msg = f"{msg} ({e.context.strip()})"
        doc.diagnostics.append(Diagnostic(
            "error", "yaml-syntax", f"invalid YAML: {msg}", file=path,
            line=mark.line + 1 if mark else None, column=mark.column + 1 if mark else None,
            help="check indentation, colons and brackets on this line or the one before"))
        return doc
    except yaml.YAMLError as e:  # e.g. a reader error on bad bytes
        doc.diagnostics.append(Diagnostic("error", "yaml-syntax", f"invalid YAML: {e}", file=path))
        return doc
    if root is None:
        doc.data = None
        return doc
    constructor = SafeConstructor()
    doc.data = _build(root, (), doc, constructor)
    return doc


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
                doc.diagnostics.append(doc.diag(
                    "error", "duplicate-key", f"duplicate key '{key}' (YAML would keep only the last one)",
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
        doc.diagnostics.append(Diagnostic("error", "io", f"cannot read {path}: {reason}", file=path))
        return doc
    return parse(text, path)
