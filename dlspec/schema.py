"""Stage 2, schema: turn the YAML data into a typed Spec, reporting every structural mistake.

The top level is validated with a JSON Schema (``SPEC_SCHEMA``); layer entries are validated against
their registry entry (names case-insensitive, did-you-mean for unknown names and arguments).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from . import dims
from .diagnostics import Diagnostic, did_you_mean
from .registry import REGISTRY, TT, Layers, LayerType, lookup
from .source import Document, Path

META_KEYS = ("expect", "name", "repeat")
DTYPES = {"float": "float", "float32": "float", "long": "long", "int64": "long", "int": "long"}

_DIM = {"anyOf": [{"type": "integer", "minimum": 1},
                  {"type": "string", "pattern": r"^[A-Za-z_]\w*$"}]}
_SHAPE = {"type": "array", "items": _DIM, "minItems": 1}

SPEC_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["input", "layers"],
    "properties": {
        "name": {"type": "string"},
        "description": {"type": "string"},
        "input": {"anyOf": [
            _SHAPE,
            {"type": "string"},
            {"type": "object", "required": ["shape"], "additionalProperties": False,
             "properties": {"shape": {"anyOf": [_SHAPE, {"type": "string"}]},
                            "dtype": {"enum": sorted(DTYPES)}}},
        ]},
        "layers": {"type": "array", "minItems": 1},
        "blocks": {"type": "object", "additionalProperties": {"type": "array", "minItems": 1}},
        "train": {"type": "object"},  # its own schema arrives with `dlspec run`
    },
    "additionalProperties": False,
}


@dataclass
class Item:
    entry: LayerType
    written: dict[str, Any]  # written arguments, normalised (no nested layer lists)
    path: Path  # the list entry in the document
    index: int  # 0-based index in the top-level layer list
    children: dict[str, Any] = field(default_factory=dict)  # arg -> list[Item] or list[list[Item]]
    expect: Any = None
    name: str | None = None
    repeat: int = 1
    block: str | None = None

    @property
    def args_path(self) -> Path:
        return self.path + (self.key,)

    key: str = ""  # the key as written (to point at it)


@dataclass
class Spec:
    doc: Document
    name: str
    input: TT | None
    items: list[Item]
    blocks: dict[str, list[Any]]
    train: dict[str, Any] | None
    diagnostics: list[Diagnostic]
    train_config: Any = None  # trainspec.TrainConfig when `train:` is valid

    @property
    def path(self) -> str:
        return self.doc.path


def _schema_validator() -> Any:
    global _VALIDATOR
    if _VALIDATOR is None:
        import jsonschema

        _VALIDATOR = jsonschema.Draft202012Validator(SPEC_SCHEMA)
    return _VALIDATOR


_VALIDATOR: Any = None


def _is_dim(v: Any) -> bool:
    if isinstance(v, bool):
        return False
    return (isinstance(v, int) and v >= 1) or (isinstance(v, str) and dims.SYMBOL.match(v) is not None)


def _is_shape(v: Any) -> bool:
    return isinstance(v, list) and len(v) >= 1 and all(_is_dim(d) for d in v)


def quick_valid(data: dict[Any, Any]) -> bool:
    """True exactly when SPEC_SCHEMA accepts data (tests prove the two agree).

    Importing jsonschema costs more than checking a whole LeNet, so `dlspec check` asks it only to explain a
    document this quick test rejects.
    """
    props = SPEC_SCHEMA["properties"]
    if any(k not in props for k in data) or "input" not in data or "layers" not in data:
        return False
    inp = data["input"]
    if isinstance(inp, dict):
        if "shape" not in inp or any(k not in ("shape", "dtype") for k in inp):
            return False
        if "dtype" in inp and (not isinstance(inp["dtype"], str) or inp["dtype"] not in DTYPES):
            return False
        if not (_is_shape(inp["shape"]) or isinstance(inp["shape"], str)):
            return False
    elif not (_is_shape(inp) or isinstance(inp, str)):
        return False
    if not isinstance(data["layers"], list) or not data["layers"]:
        return False
    for key in ("name", "description"):
        if key in data and not isinstance(data[key], str):
            return False
    if "blocks" in data:
        b = data["blocks"]
        if not isinstance(b, dict) or not all(isinstance(v, list) and v for v in b.values()):
            return False
    if "train" in data and not isinstance(data["train"], dict):
        return False
    return True


def _top_level(doc: Document) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    data = doc.data
    if not isinstance(data, dict):
        out.append(doc.diag("error", "spec-structure",
                            "a spec is a mapping with at least `input:` and `layers:`", (),
                            help="start from a spec in specs/, e.g. `input: [1, 28, 28]` and `layers: [...]`"))
        return out
    if quick_valid(data):
        return out
    for err in sorted(_schema_validator().iter_errors(data), key=lambda e: list(map(str, e.absolute_path))):
        path = tuple(err.absolute_path)
        v = err.validator
        if v == "required":
            missing = err.message.split("'")[1] if "'" in err.message else str(err.message)
            if missing == "input":
                out.append(doc.diag("error", "missing-input", "the spec has no `input` shape", (),
                                    help="add the shape of one sample, batch left out, e.g. `input: [1, 28, 28]`"))
            else:
                out.append(doc.diag("error", "spec-structure", f"the spec has no `{missing}:`", path))
        elif v == "additionalProperties":
            known = list(err.schema.get("properties", {}))
            parent = err.instance if isinstance(err.instance, dict) else {}
            for k in parent:
                if k not in known:
                    hint = did_you_mean(str(k), known)
                    out.append(doc.diag("error", "spec-structure", f"unknown top-level key '{k}'", path + (k,),
                                        key=True, help=f"did you mean '{hint}'?" if hint else
                                        "top-level keys are " + ", ".join(known)))
        elif path and path[0] == "input":
            out.append(doc.diag("error", "invalid-input",
                                f"`input` must be the shape of one sample, e.g. [1, 28, 28] or [T, 28]; got {data['input']!r}",
                                ("input",), help="sizes are positive integers or symbol names (the batch N is implicit)"))
        else:
            what = {"type": f"must be of type {err.validator_value}", "minItems": "must not be empty"}.get(
                str(v), err.message)
            out.append(doc.diag("error", "spec-structure", f"`{'.'.join(map(str, path))}` {what}", path))
    # one diagnostic per input problem is enough
    seen = set()
    uniq = []
    for d in out:
        k = (d.code, d.line, d.column)
        if k not in seen:
            seen.add(k)
            uniq.append(d)
    return uniq


def _parse_input(doc: Document, raw: Any) -> tuple[TT | None, list[Diagnostic]]:
    dtype = "float"
    path: Path = ("input",)
    if isinstance(raw, dict):
        dtype = DTYPES.get(str(raw.get("dtype", "float")), "float")
        raw = raw.get("shape")
        path = ("input", "shape")
    shape: tuple[Any, ...] | None
    if isinstance(raw, str):
        shape = dims.parse_map(raw)
        if shape is None:
            return None, [doc.diag("error", "invalid-input", f"cannot read input shape {raw!r}", path,
                                   help="write a list such as [1, 28, 28], or 1@28x28")]
    elif isinstance(raw, list):
        shape = tuple(raw)
    else:
        return None, []
    bad = [d for d in shape if isinstance(d, str) and d == "N"]
    if bad:
        return None, [doc.diag("error", "invalid-input", "`N` is the batch and is implicit: leave it out of `input`",
                               path, help=f"write input: {list(d for d in shape if d != 'N')}")]
    layout = "channels" if len(shape) >= 3 else None
    return TT(shape, dtype, layout), []


class _Parser:
    def __init__(self, doc: Document, blocks: dict[str, Any]):
        self.doc = doc
        self.blocks = blocks
        self.diags: list[Diagnostic] = []
        self.block_stack: list[str] = []

    def err(self, code: str, msg: str, path: Path, key: bool = False, help: str | None = None,
            index: int | None = None, notes: list[str] | None = None) -> None:
        self.diags.append(self.doc.diag("error", code, msg, path, key=key, layer=index, help=help, notes=notes))

    def items(self, raw: Any, path: Path, index: int | None) -> list[Item]:
        out: list[Item] = []
        if not isinstance(raw, list):
            self.err("invalid-layer", "expected a list of layers", path, index=index)
            return out
        for i, entry in enumerate(raw):
            top = i if index is None else index
            item = self.item(entry, path + (i,), top)
            if item is not None:
                out.append(item)
        return out

    def item(self, raw: Any, path: Path, index: int) -> Item | None:
        if isinstance(raw, str):
            key, args, meta = raw, None, {}
        elif isinstance(raw, dict) and raw:
            type_keys = [k for k in raw if k not in META_KEYS]
            meta = {k: raw[k] for k in raw if k in META_KEYS}
            if len(type_keys) != 1:
                what = "no layer name" if not type_keys else "several layer names: " + ", ".join(map(str, type_keys))
                self.err("invalid-layer", f"a layer entry needs exactly one layer name, found {what}", path,
                         index=index, help="write one layer per list entry: `- Conv2d: {...}`; "
                         f"besides the name only {', '.join(META_KEYS)} may appear")
                return None
            key = type_keys[0]
            args = raw[key]
        else:
            self.err("invalid-layer", f"a layer entry is `- Name` or `- Name: {{args}}`, got {raw!r}", path,
                     index=index)
            return None
        if not isinstance(key, str):
            self.err("invalid-layer", f"a layer name must be text, got {key!r}", path, index=index)
            return None
        kpath = path + (key,) if isinstance(raw, dict) else path
        meta_ok = self.meta(meta, path, index)
        if key in self.blocks:
            return self.block_ref(key, args, kpath, path, index, meta_ok)
        entry = lookup(key)
        if entry is None:
            choices = list(REGISTRY) + list(self.blocks)
            hint = did_you_mean(key, choices)
            self.err("unknown-layer", f"unknown layer type '{key}'", kpath, key=isinstance(raw, dict), index=index,
                     help=f"did you mean '{hint}'?" if hint else "`dlspec layers` lists the layer types")
            entry = lookup(hint) if hint else None
            if entry is None:
                return None
            # carry on as the layer it was probably meant to be, so later mistakes are found in this run too
        item = Item(entry=entry, written={}, path=path, index=index, key=key, **meta_ok)
        self.arguments(item, args, kpath)
        return item

    def meta(self, meta: dict[str, Any], path: Path, index: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if "expect" in meta:
            e = meta["expect"]
            shape = dims.parse_map(e) if isinstance(e, str) else tuple(e) if isinstance(e, list) else None
            if shape is None or not all((isinstance(d, int) and not isinstance(d, bool) and d >= 0)
                                        or (isinstance(d, str) and dims.SYMBOL.match(d)) for d in shape):
                self.err("invalid-argument", f"cannot read expect: {e!r}", path + ("expect",), index=index,
                         help="write the layer's output for one sample: 16@5x5 or [16, 5, 5]")
            else:
                out["expect"] = tuple(shape)
        if "name" in meta:
            n = meta["name"]
            if not isinstance(n, str) or not n.isidentifier():
                self.err("invalid-argument", f"name must be a Python identifier, got {n!r}", path + ("name",),
                         index=index)
            else:
                out["name"] = n
        if "repeat" in meta:
            r = meta["repeat"]
            if not isinstance(r, int) or isinstance(r, bool) or r < 1:
                self.err("invalid-argument", f"repeat must be a positive integer, got {r!r}", path + ("repeat",),
                         index=index)
            else:
                out["repeat"] = r
        return out

    def block_ref(self, key: str, args: Any, kpath: Path, path: Path, index: int, meta: dict[str, Any]) -> Item | None:
        if args not in (None, {}):
            self.err("invalid-argument", f"block '{key}' takes no arguments", kpath, index=index,
                     help="use `repeat:` beside the name to repeat it")
        if key in self.block_stack:
            self.err("recursive-block", f"block '{key}' uses itself ({' → '.join(self.block_stack + [key])})",
                     kpath, index=index)
            return None
        self.block_stack.append(key)
        children = self.items(self.blocks[key], ("blocks", key), index)
        self.block_stack.pop()
        entry = REGISTRY["Sequential"]
        return Item(entry=entry, written={}, path=path, index=index, key=key,
                    children={"layers": children}, block=key, **meta)

    def arguments(self, item: Item, args: Any, kpath: Path) -> None:
        entry = item.entry
        if args is None:
            args = {}
        main = entry.main_arg
        if main and isinstance(args, (list, str, int, float)) and not isinstance(args, bool):
            args = {main: args}  # `- MaxPool2d: 2` is short for `- MaxPool2d: {kernel_size: 2}`
            positional = True
        else:
            positional = False
        if not isinstance(args, dict):
            self.err("invalid-argument", f"{entry.name} arguments must be a mapping, got {args!r}", kpath,
                     index=item.index, help=f"write `- {entry.name}: {{name: value, ...}}`"
                     + ("" if main is None else f" (a single value stands for {main})"))
            return
        fixed: set[str] = set()
        for name, value in args.items():
            apath = kpath if positional else kpath + (name,)
            spec = entry.args.get(name) if isinstance(name, str) else None
            if spec is None:
                hint = did_you_mean(str(name), list(entry.args))
                accepted = ", ".join(entry.args) or "no arguments"
                self.err("unknown-argument", f"{entry.name} has no argument '{name}'", apath, key=True,
                         index=item.index,
                         help=f"did you mean '{hint}'?" if hint else f"{entry.name} takes {accepted}")
                if hint is None or hint in args or hint in fixed:
                    continue
                # carry on as the argument it was probably meant to be (no second 'missing' error for it)
                name, spec = hint, entry.args[hint]
                fixed.add(hint)
            if value is None and spec.inferred:
                continue
            problem = spec.kind.check(value)
            if problem:
                self.err("invalid-argument", f"{entry.name} {name} {problem}, got {value!r}", apath,
                         index=item.index)
                continue
            if isinstance(spec.kind, Layers) or name in entry.children:
                item.children[name] = self.nested(entry, name, value, apath, item.index)
            else:
                item.written[name] = spec.kind.normalize(value)
        for name, spec in entry.args.items():
            if spec.required and name not in item.written and name not in item.children and name not in args \
                    and name not in fixed:
                self.err("missing-argument", f"{entry.name} needs `{name}` ({spec.kind.text})", kpath,
                         key=True, index=item.index, help=f"write `- {entry.name}: {{{name}: ...}}`")

    def nested(self, entry: LayerType, name: str, value: Any, path: Path, index: int) -> Any:
        if name == "branches":
            if not isinstance(value, list) or len(value) < 2 or not all(isinstance(b, list) and b for b in value):
                self.err("invalid-argument", f"{entry.name} branches must be a list of at least two layer lists",
                         path, index=index, help="e.g. `- Concat: [[Conv2d: {...}], [MaxPool2d: {...}]]`")
                return []
            return [self.items(b, path + (i,), index) for i, b in enumerate(value)]
        return self.items(value, path, index)


def parse_spec(doc: Document) -> Spec:
    diags = list(doc.diagnostics)
    stem = os.path.splitext(os.path.basename(doc.path))[0]
    spec = Spec(doc=doc, name=stem, input=None, items=[], blocks={}, train=None, diagnostics=diags)
    if any(d.code in ("yaml-syntax", "io") for d in diags):
        return spec
    diags.extend(_top_level(doc))
    data = doc.data if isinstance(doc.data, dict) else {}
    spec.name = str(data.get("name") or stem)
    if "input" in data:
        spec.input, d = _parse_input(doc, data["input"])
        diags.extend(d)
    raw_blocks = data.get("blocks")
    blocks: dict[str, Any] = raw_blocks if isinstance(raw_blocks, dict) else {}
    spec.blocks = blocks
    for bname in blocks:
        hidden = lookup(str(bname))
        if hidden is not None:
            diags.append(doc.diag("error", "spec-structure",
                                  f"block name '{bname}' hides the layer type {hidden.name}",
                                  ("blocks", bname), key=True, help="give the block another name"))
    if isinstance(data.get("layers"), list):
        p = _Parser(doc, blocks)
        spec.items = p.items(data["layers"], ("layers",), None)
        diags.extend(p.diags)
    t = data.get("train")
    spec.train = t if isinstance(t, dict) else None
    if spec.train is not None:
        from .trainspec import validate_train

        spec.train_config, d = validate_train(doc, spec.train)
        diags.extend(d)
    return spec
