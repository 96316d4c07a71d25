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

from . import codes, limits
from .codes import ErrorCode
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
    _lines: tuple[str, list[str]] | None = field(default=None, repr=False, compare=False)

    @property
    def lines(self) -> list[str]:
        """The text's lines, split once (every diagnostic shows one: thousands of them each split a 4 MiB text)."""
        if self._lines is None or self._lines[0] is not self.text:
            self._lines = (self.text, self.text.splitlines())
        return self._lines[1]

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
    bounds = limits.current()
    if len(text) > bounds.spec_bytes:
        doc.diagnostics.append(Diagnostic(
            "error", codes.LIMIT, f"the spec is {len(text):,} characters long, more than the {bounds.spec_bytes:,} a "
            "spec may have", file=path, line=1, column=1, help=limits.raise_with("spec_bytes")))
        return doc
    bad = _SURROGATE.search(text)
    if bad:  # text from outside (dlspec.loads) may hold lone surrogates, which no YAML reader accepts
        line = text.count("\n", 0, bad.start())
        doc.diagnostics.append(Diagnostic(
            "error", codes.YAML_SYNTAX, f"invalid text: a lone surrogate {bad.group()!a} (not a character)", file=path,
            line=line + 1, column=bad.start() - (text.rfind("\n", 0, bad.start()) + 1) + 1,
            help="the text was decoded wrongly: read the file as UTF-8"))
        return doc
    try:
        root = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as e:
        doc.diagnostics.append(_syntax_error(e, text, path))
        return doc
    except yaml.reader.ReaderError as e:  # a control character: its position is an offset into the text
        line = text.count("\n", 0, e.position)
        col = e.position - (text.rfind("\n", 0, e.position) + 1)
        char = f"#x{e.character:04x}" if isinstance(e.character, int) else repr(e.character)
        doc.diagnostics.append(Diagnostic(
            "error", codes.YAML_SYNTAX, f"invalid YAML: the control character {char} ({e.reason})", file=path,
            line=line + 1, column=col + 1, help="remove it: a spec is plain text (tabs and newlines only)"))
        return doc
    except yaml.YAMLError as e:
        doc.diagnostics.append(Diagnostic("error", codes.YAML_SYNTAX, f"invalid YAML: {e}", file=path))
        return doc
    except RecursionError:  # nesting deeper than the reader's own stack
        doc.diagnostics.append(Diagnostic(
            "error", codes.LIMIT, "the YAML is nested too deeply to read", file=path, line=1, column=1,
            help=f"a spec nests mappings and lists at most {bounds.yaml_depth} deep"))
        return doc
    if root is None:
        doc.data = None
        return doc
    try:
        _measure(root, doc, bounds)  # a bomb is refused before anything is built
        doc.data = _Builder(doc, bounds).build(root, ())
    except _Stop as stop:
        doc.data = None
        doc.spans.clear()
        doc.key_spans.clear()
        doc.diagnostics.append(stop.diagnostic)
    return doc


_SURROGATE = re.compile("[\ud800-\udfff]")
# the tags a spec's values may have: YAML's core schema (what YAML 1.2 and JSON read); a timestamp-looking
# plain scalar (`2001-12-14`) stays text
_CORE = {f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null", "seq", "map", "merge")}
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_DATE = re.compile(r"\d{4}-\d\d?-\d\d?([Tt ].*)?$")  # what YAML 1.1 reads as a timestamp


class _Stop(Exception):
    """The document cannot be read further: its one diagnostic."""

    def __init__(self, diagnostic: Diagnostic):
        self.diagnostic = diagnostic


def _kids(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return list(node.value) if isinstance(node, yaml.SequenceNode) else []


_TEXT_VALUE = 80  # a text counts as one value per this many characters when aliases repeat it
_FAR = 2**62  # (weights are capped here: a bomb's would be astronomical)


def _weight(node: yaml.Node) -> int:
    """What a node counts for when aliases repeat it: one value, and a long text one per _TEXT_VALUE characters
    (a megabyte of text repeated by a thousand aliases is a gigabyte for every later stage)."""
    if isinstance(node, yaml.ScalarNode) and isinstance(node.value, str):
        return 1 + len(node.value) // _TEXT_VALUE
    return 1


def _measure(root: yaml.Node, doc: Document, bounds: limits.Limits) -> None:
    """How many values the document stands for, every use of an alias counted, without building it: an alias
    bomb (`[*a, *a, ...]` nine levels deep) is refused in milliseconds, at the list that expands too far.
    Also what aliases repeat (the values beyond those written once, long texts weighed by their length: reading
    and reporting them takes time and memory too), a cycle (an alias inside what it names) and nesting beyond
    the bound."""
    cap = bounds.yaml_nodes
    size: dict[int, int] = {}  # values a node stands for, every use of an alias counted
    weight: dict[int, int] = {}  # ... weighed as _weight says
    written = 0  # the weight of the values written in the file, each once
    uses: dict[int, int] = {}  # how many lists and mappings hold the node: more than one through aliases
    shared: dict[int, yaml.Node] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, int, bool]] = [(root, 0, False)]
    where = _Builder(doc, bounds)
    while stack:
        node, depth, done = stack.pop()
        nid = id(node)
        kids = _kids(node)
        if done:
            on_path.discard(nid)
            size[nid] = min(1 + sum(size[id(k)] for k in kids), cap + 1)
            weight[nid] = min(1 + sum(weight[id(k)] for k in kids), _FAR)
            continue
        if nid in size:
            continue
        if nid in on_path:
            raise where.stop(node, codes.YAML_SYNTAX, "invalid YAML: an alias names a list or mapping that "
                             "contains the alias itself (it would be infinite)",
                             "an alias (*name) may only repeat something defined before it, outside it")
        if depth > bounds.yaml_depth:
            raise where.stop(node, codes.LIMIT, f"the YAML nests deeper than {bounds.yaml_depth} levels",
                             limits.raise_with("yaml_depth"))
        written += _weight(node)
        if not kids:
            size[nid], weight[nid] = 1, _weight(node)
            continue
        on_path.add(nid)
        stack.append((node, depth, True))
        for k in kids:
            uses[id(k)] = uses.get(id(k), 0) + 1
            if uses[id(k)] == 2:
                shared[id(k)] = k
        stack.extend((k, depth + 1, False) for k in kids if id(k) not in size)
    if size[id(root)] <= cap:
        if weight[id(root)] - written <= bounds.yaml_alias_nodes:
            return
        node = max(shared.values(), key=lambda n: (uses[id(n)] - 1) * weight[id(n)])  # the anchor repeated most
        raise where.stop(node, codes.LIMIT, f"aliases repeat more than {bounds.yaml_alias_nodes:,} values of the YAML "
                         f"(this one {uses[id(node)] - 1:,} times, {weight[id(node)]:,} values each; a text counts "
                         f"one value per {_TEXT_VALUE} characters)", limits.raise_with("yaml_alias_nodes"))
    node = root  # the deepest collection that alone stands for too much: where the expansion is written
    while True:
        big = next((k for k in _kids(node) if size.get(id(k), 0) > cap), None)
        if big is None:
            break
        node = big
    raise where.stop(node, codes.LIMIT, f"the YAML stands for more than {cap:,} values (every use of an alias "
                     "repeats what it names: a few lines can stand for billions)", limits.raise_with("yaml_nodes"))


class _Builder:
    """YAML nodes -> plain data and positions, within the bounds: nodes read (every use of an alias again),
    nesting depth, and no alias that contains itself."""

    def __init__(self, doc: Document, bounds: limits.Limits):
        self.doc, self.bounds = doc, bounds
        self.c = SafeConstructor()
        self.nodes = 0
        self.open: set[int] = set()  # the collection nodes being built (an alias to one of them is a cycle)

    def stop(self, node: yaml.Node, code: ErrorCode, message: str, help: str) -> _Stop:
        m = node.start_mark
        return _Stop(Diagnostic("error", code, message, file=self.doc.path, line=m.line + 1, column=m.column + 1,
                                help=help))

    def build(self, node: yaml.Node, path: Path) -> Any:
        self.nodes += 1
        if self.nodes > self.bounds.yaml_nodes:
            raise self.stop(node, codes.LIMIT, f"the YAML stands for more than {self.bounds.yaml_nodes:,} values "
                            "(aliases repeat what they name: a few lines can stand for billions)",
                            limits.raise_with("yaml_nodes"))
        if len(path) > self.bounds.yaml_depth:
            raise self.stop(node, codes.LIMIT, f"the YAML nests deeper than {self.bounds.yaml_depth} levels",
                            limits.raise_with("yaml_depth"))
        self.doc.spans[path] = _span(node)
        if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)):
            if node.tag not in _CORE:  # `!!python/object/apply:os.system [...]`, `!mytag {...}`: no tag is dropped
                raise self.stop(node, codes.YAML_SYNTAX, f"invalid YAML: the tag {_tag(node)} is not supported in a "
                                "spec", "write the list or mapping without a tag (a spec is plain data)")
            if id(node) in self.open:
                raise self.stop(node, codes.YAML_SYNTAX, "invalid YAML: an alias names a list or mapping that "
                                "contains the alias itself (it would be infinite)",
                                "an alias (*name) may only repeat something defined before it, outside it")
            self.open.add(id(node))
            try:
                return self.mapping(node, path) if isinstance(node, yaml.MappingNode) else \
                    [self.build(v, path + (i,)) for i, v in enumerate(node.value)]
            finally:
                self.open.discard(id(node))
        return self.scalar(node)

    def mapping(self, node: yaml.MappingNode, path: Path) -> dict[Any, Any]:
        try:
            self.c.flatten_mapping(node)  # resolves YAML merge keys (<<)
        except yaml.YAMLError as e:
            raise self.stop(node, codes.YAML_SYNTAX, f"invalid YAML: {_problem(e)}",
                            "a merge key `<<:` takes an alias of a mapping (`<<: *base`) or a list of them") from None
        out: dict[Any, Any] = {}
        for knode, vnode in node.value:
            if not isinstance(knode, yaml.ScalarNode):
                raise self.stop(knode, codes.YAML_SYNTAX, "invalid YAML: a mapping key must be text or a number, not "
                                "a list or mapping", "write the key as plain text")
            key = self.scalar(knode)
            kpath = path + (key,)
            self.doc.key_spans[kpath] = _span(knode)
            if key in out:
                self.doc.diagnostics.append(error(codes.DUPLICATE_KEY,
                                                  f"duplicate key '{key}' (YAML would keep only the last one)",
                                                  kpath, key=True, help="write each key once"))
            out[key] = self.build(vnode, kpath)
        return out

    def scalar(self, node: yaml.Node) -> Any:
        if node.tag == _TIMESTAMP and _DATE.match(node.value):
            return node.value  # a date-like text (`2001-12-14`) stays text: a spec has no dates
        if node.tag not in _CORE:
            tag = _tag(node)
            hint = "`=` alone is YAML's value key: quote it, '='" if tag == "!!value" else \
                "write the value without a tag (numbers, text, true/false, null, lists and mappings)"
            raise self.stop(node, codes.YAML_SYNTAX, f"invalid YAML: the tag {tag} is not supported in a spec", hint)
        try:
            return self.c.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError, TypeError, KeyError, AttributeError, OverflowError) as e:
            value = node.value if isinstance(node.value, str) else "this value"
            value = value if len(value) <= 60 else value[:40] + "…" + value[-12:]  # (a 5,000-digit number)
            tag = node.tag.replace("tag:yaml.org,2002:", "!!")
            raise self.stop(node, codes.YAML_SYNTAX, f"invalid YAML: {value!r} is not a valid {tag} value"
                            + (f" ({_problem(e)})" if isinstance(e, yaml.YAMLError) else ""),
                            f"write a plain value, without {tag}") from None


def _tag(node: yaml.Node) -> str:
    """A node's tag as it is written: `!!binary` for YAML's own, `!mytag` for a local one."""
    return str(node.tag).replace("tag:yaml.org,2002:", "!!")


def _problem(e: yaml.YAMLError) -> str:
    return str(getattr(e, "problem", None) or e).strip().splitlines()[0]


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


def read(path: str) -> Document:
    """Read a spec file; an unreadable file becomes an `io` diagnostic, never an exception.  Only a regular file
    is read (a FIFO is refused without waiting for a writer, a device or a folder without reading it), and no
    more of it than a spec may hold."""
    import io

    from . import safeio

    bound = limits.current().spec_bytes
    try:
        with safeio.open_input(path, "spec file") as raw, io.TextIOWrapper(raw, encoding="utf-8") as f:
            text = f.read(bound + 1)  # no more than a spec may hold (a huge file)
    except safeio.FileRefused as e:
        return _unreadable(path, str(e))
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        return _unreadable(path, f"cannot read {path}: {reason}")
    return parse(text, path)


def _unreadable(path: str, message: str) -> Document:
    doc = Document(path=path, text="")
    doc.diagnostics.append(Diagnostic("error", codes.IO, message, file=path))
    return doc
