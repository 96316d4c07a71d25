"""`dlspec schema`: a JSON Schema (draft 2020-12) of the spec language, for editors (yaml-language-server).

Generated from the same tables the checker reads: the layer registry (each type's arguments, their kinds,
defaults and docs), the top level (``schema.SPEC_SCHEMA``'s keys), the `train:` options (``TRAIN_ARGS``), the
data set registry and the task registry.  A new layer type, option, data set or task is in the schema with
no edit here.  It never imports torch.

What a static schema cannot know, and how it is allowed:

- Block names are the spec's own (`blocks:`).  A layer entry whose name starts with a lower-case letter or
  `_` (every block of specs/ is named so) is read as a block use, its arguments unchecked; a name starting
  with a capital must be a layer type (any case of a type's name, as the checker reads it: `relu` is ReLU,
  its arguments checked).  So a misspelt capitalised type (`Lineer`) is an error, a misspelt lower-case one
  (`lineer`) looks like a block use, which `dlspec check` reports.  Block names must start with a lower-case
  letter or `_` here (the checker itself takes any identifier).
- Inside a block's layers, any argument may also be text: an argument of the block or arithmetic over them
  (`width * expansion`), computed at each use.
- Symbolic sizes (`T`, `H*2`) are text, accepted where the checker accepts them (input shapes, `expect:`).
- The names of torch's losses, optimizers and schedulers are not listed (any text).
"""

from __future__ import annotations

import json
import re
from typing import Any

from . import layers as _layers  # noqa: F401  (fills the registry)
from .registry import (
    REGISTRY,
    REQUIRED,
    Arg,
    Bool,
    Choice,
    Float,
    FloatList,
    Int,
    IntList,
    IntTuple,
    Kind,
    Layers,
    LayerType,
    OneOf,
    Optional_,
)
from .schema import BODY_KEYS, MAX_NETWORKS, META_KEYS, SPEC_SCHEMA

BLOCK_NAME = "^[a-z_][A-Za-z0-9_]*$"  # a block's name, as told apart from a layer type's (see the module's doc)
IDENT = "^[A-Za-z_][A-Za-z0-9_]*$"
SYMBOL: dict[str, Any] = {"type": "string", "pattern": IDENT, "description": "a symbolic size such as T"}
_EXPR: dict[str, Any] = {"type": "string", "description": "a block argument, or arithmetic over them (width * 2)"}


def _ci(name: str) -> str:
    """A regular expression for name in any case (ECMA 262 has no case-insensitive flag in JSON Schema)."""
    return "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else re.escape(c) for c in name)


def _json(v: Any) -> Any:
    """A default as JSON (tuples as lists); None when it is not plain JSON data."""
    if isinstance(v, (list, tuple)):
        items = [_json(e) for e in v]
        return items
    if v is None or isinstance(v, (bool, int, str)):
        return v
    if isinstance(v, float):
        return v if v == v and v not in (float("inf"), float("-inf")) else None
    return None


def kind_schema(kind: Kind, block: bool = False) -> dict[str, Any]:
    """The JSON Schema of one argument kind.  Kinds this function does not know accept any value (a new kind
    must never make valid specs fail in an editor; tests/test_jsonschema.py asks that every kind is known)."""
    name = type(kind).__name__
    if isinstance(kind, Optional_):
        return {"anyOf": [kind_schema(kind.inner, block), {"type": "null"}]}
    if isinstance(kind, OneOf):
        return {"anyOf": [kind_schema(k, block) for k in kind.kinds]}
    if isinstance(kind, Bool):
        return {"type": "boolean"}
    if isinstance(kind, Int):
        out: dict[str, Any] = {"type": "integer"}
        if kind.min is not None:
            out["minimum"] = kind.min
        if kind.max is not None:
            out["maximum"] = kind.max
        return out
    if isinstance(kind, Float):
        out = {"type": "number"}
        if kind.min is not None:
            out["exclusiveMinimum" if kind.open_min else "minimum"] = kind.min
        if kind.max is not None:
            out["exclusiveMaximum" if getattr(kind, "open_max", False) else "maximum"] = kind.max
        return out
    if isinstance(kind, Choice):
        return {"enum": [_json(o) for o in kind.options]}
    if isinstance(kind, IntTuple):
        one: dict[str, Any] = {"type": "integer", "minimum": kind.min}
        entry: dict[str, Any] = one
        if name == "_OutSize":  # (adaptive pools: null keeps that input size)
            entry = {"anyOf": [one, {"type": "null"}]} if kind.n > 1 else one
        alts: list[dict[str, Any]] = [one, {"type": "array", "items": entry, "minItems": kind.n, "maxItems": kind.n}]
        if kind.allow:
            alts.append({"enum": list(kind.allow)})
        return {"anyOf": alts}
    if isinstance(kind, IntList):
        item: dict[str, Any] = {"type": "integer"}
        if kind.min is not None:
            item["minimum"] = kind.min
            if kind.allow_minus_one:
                item = {"anyOf": [item, {"const": -1}]}
        return {"type": "array", "items": item, "minItems": 1}
    if isinstance(kind, FloatList):
        return {"type": "array", "items": {"type": "number", "exclusiveMinimum": 0}, "minItems": 1}
    if isinstance(kind, Layers):
        ref = {"$ref": "#/$defs/blockLayers" if block else "#/$defs/layers"}
        if name == "_Branches":
            return {"type": "array", "items": ref, "minItems": 2}
        return ref
    known = _TRAIN_KINDS.get(name)
    if known is not None:
        return known()
    return {}


def _device() -> dict[str, Any]:
    return {"type": "string", "pattern": "^(auto|cpu|mps|cuda(:[0-9]+)?)$"}


def _metrics() -> dict[str, Any]:
    from .trainspec import METRICS

    one = {"enum": list(METRICS)}
    return {"anyOf": [one, {"type": "array", "items": one}]}


def _early_stopping() -> dict[str, Any]:
    from .trainspec import MAX_EPOCHS

    return {"type": "object", "required": ["metric"], "additionalProperties": False, "properties": {
        "metric": {"type": "string", "description": "a metrics.csv column, e.g. val_loss"},
        "patience": {"type": "integer", "minimum": 1, "maximum": MAX_EPOCHS},
        "mode": {"enum": ["min", "max"]},
        "min_delta": {"type": "number"}}}


def _torch_call() -> dict[str, Any]:
    return {"anyOf": [{"type": "string", "minLength": 1},
                      {"type": "object", "minProperties": 1, "maxProperties": 1,
                       "additionalProperties": {"type": ["object", "null"]}}]}


_TRAIN_KINDS: dict[str, Any] = {
    "TorchCall": _torch_call,
    "Device": _device,
    "Metrics": _metrics,
    "EarlyStopping": _early_stopping,
    "Text": lambda: {"type": "string", "minLength": 1},
    "Prime": lambda: {"type": "string", "minLength": 1, "maxLength": 10_000},  # (tasks.language.SAMPLE_MAX)
    "Normalize": lambda: {"anyOf": [{"type": ["null", "boolean"]}, {
        "type": "array", "minItems": 2, "maxItems": 2,
        "items": {"type": "array", "items": {"type": "number"}, "minItems": 1}}]},
    "Subset": lambda: {"type": "object", "minProperties": 1, "additionalProperties": False,
                       "properties": {"train": {"type": "integer", "minimum": 1},
                                      "test": {"type": "integer", "minimum": 1}}},
    "Columns": lambda: {"type": "array", "minItems": 1,
                        "items": {"anyOf": [{"type": "string", "minLength": 1}, {"type": "integer"}]}},
    "Delimiter": lambda: {"type": "string", "minLength": 1, "maxLength": 1},
    "Groups": lambda: {"type": "object", "minProperties": 1,
                       "propertyNames": {"pattern": "^[A-Za-z_][A-Za-z0-9_]{0,63}$", "not": {"enum": ["x", "y"]}},
                       "additionalProperties": {"anyOf": [
                           _TRAIN_KINDS["Columns"](),
                           {"type": "object", "required": ["columns"], "additionalProperties": False,
                            "properties": {"columns": _TRAIN_KINDS["Columns"](), "dtype": {"enum": ["float", "long"]}}}]}},
    # (train.data and train.task: replaced by the registries' own in _train)
    "DataRef": lambda: {"anyOf": [{"type": "string"}, {"type": "object", "required": ["name"]}]},
    "TaskRef": lambda: {"anyOf": [{"type": "string"}, {"type": "object", "minProperties": 1, "maxProperties": 1}]},
}


def known_kind(kind: Kind) -> bool:
    """Whether kind_schema knows kind and every kind inside it."""
    if isinstance(kind, Optional_):
        return known_kind(kind.inner)
    if isinstance(kind, OneOf):
        return all(known_kind(k) for k in kind.kinds)
    return isinstance(kind, (Bool, Int, Float, Choice, IntTuple, IntList, FloatList, Layers)) or \
        type(kind).__name__ in _TRAIN_KINDS


def _describe(schema: dict[str, Any], arg: Arg, extra: str = "") -> dict[str, Any]:
    words = [arg.doc] if arg.doc else []
    words.append(arg.kind.text[:1].upper() + arg.kind.text[1:])
    if arg.inferred:
        words.append("Inferred from the input when left out")
    elif arg.default is REQUIRED:
        words.append("Required")
    elif _json(arg.default) is not None or arg.default is None:
        words.append(f"Default: {json.dumps(_json(arg.default))}")
    out = dict(schema)
    out["description"] = ". ".join(w.rstrip(".") for w in words + ([extra] if extra else [])) + "."
    if arg.default is not REQUIRED and (_json(arg.default) is not None or arg.default is None):
        out["default"] = _json(arg.default)
    return out


def _arg_schema(arg: Arg, block: bool) -> dict[str, Any]:
    s = kind_schema(arg.kind, block)
    if arg.inferred:
        s = {"anyOf": [s, {"type": "null"}]}
    if block:
        s = {"anyOf": [s, _EXPR]}
    return _describe(s, arg)


def _sources() -> dict[str, Any]:
    one = {"anyOf": [{"type": "string", "pattern": IDENT}, {"type": "integer"}]}
    return {"anyOf": [one, {"type": "array", "items": one, "minItems": 1}],
            "description": "What the layer reads when it is not the previous output: an earlier `name:` or input, "
                           "-1 for the previous entry, or a list of them for a merge: [-1, skip]."}


def _layer_args(entry: LayerType, block: bool) -> dict[str, Any]:
    """What may follow `- Name:`: {arguments}, a bare value for the main argument, or nothing."""
    props = {n: _arg_schema(a, block) for n, a in entry.args.items()}
    props["from"] = _sources()
    mapping: dict[str, Any] = {"type": "object", "properties": props, "additionalProperties": False}
    required = [n for n, a in entry.args.items() if a.required]
    if required:
        mapping["required"] = required
    alts: list[dict[str, Any]] = [mapping]
    main = entry.main_arg
    if main is not None:
        s = kind_schema(entry.args[main].kind, block)
        if block:
            s = {"anyOf": [s, _EXPR]}
        alts.append({"allOf": [{"type": ["array", "string", "integer", "number"]}, s],
                     "description": f"A bare value: {main}."})
    if entry.reads_list:
        alts.append({"type": "array", "items": _sources()["anyOf"][0], "minItems": 2,
                     **({"maxItems": 2} if entry.arity == 2 else {}),
                     "description": "A bare list: what it " + ("merges" if entry.arity == 0 else "reads") + " (from:)."})
    if not required:
        alts.append({"type": "null"})
    summary = entry.doc or f"{entry.name} ({entry.family})"
    args = ", ".join(entry.args) or "no arguments"
    return {"anyOf": alts, "description": f"{summary}. Arguments: {args}." + (
        f" A bare value is {main}." if main else "")}


def _meta(block: bool) -> dict[str, Any]:
    dim = {"anyOf": [{"type": "integer", "minimum": 0}, SYMBOL]}
    repeat: dict[str, Any] = {"type": "integer", "minimum": 1}
    out: dict[str, dict[str, Any]] = {
        "expect": {"anyOf": [{"type": "string"}, {"type": "array", "items": dim}],
                   "description": "The layer's output for one sample: 16@5x5 or [16, 5, 5]; a difference is an "
                                  "expect-mismatch error."},
        "name": {"type": "string", "pattern": IDENT,
                 "description": "Names the entry's output (for `from:`) and its module in the built model."},
        "repeat": {"anyOf": [repeat, _EXPR]} if block else repeat,
        "from": _sources(),
    }
    out["repeat"]["description"] = "The layer (or block) that many times in a row, each with its own weights."
    assert set(out) == set(META_KEYS)
    return out


def _layer_entry(block: bool) -> dict[str, Any]:
    prefix = "blockLayer." if block else "layer."
    names = sorted(REGISTRY)
    ref = {n: {"$ref": f"#/$defs/{prefix}{n}"} for n in names}
    block_use = {"description": "A block of this spec (`blocks:`), with its arguments if it has any: a mapping, a "
                                "bare value for its first argument, or nothing. (A name that starts with a lower-case "
                                "letter is read as a block: check the spec to catch a misspelt layer type.)"}
    obj = {
        "type": "object",
        "properties": {**ref, **_meta(block)},
        "patternProperties": {**{f"^{_ci(n)}$": ref[n] for n in names}, BLOCK_NAME: block_use},
        "additionalProperties": False,
        "not": {"propertyNames": {"enum": list(META_KEYS)}},  # at least one layer name
        "dependentSchemas": {n: {"propertyNames": {"enum": [n, *META_KEYS]}} for n in names},  # and only one
    }
    bare = {"type": "string", "pattern": "^(" + "|".join(_ci(n) for n in names) + ")$"}
    return {"anyOf": [{"enum": names, "description": "A layer type with no arguments (or only defaults)."},
                      bare, {"type": "string", "pattern": BLOCK_NAME, "description": block_use["description"]},
                      obj],
            "description": "One layer: `- Name`, `- Name: value` (its main argument) or `- Name: {arguments}`, "
                           "beside which expect:, name:, from: and repeat: may appear."}


def _input() -> dict[str, Any]:
    from .schema import DTYPES

    dim = {"anyOf": [{"type": "integer", "minimum": 1}, SYMBOL]}
    shape = {"anyOf": [{"type": "array", "items": dim},
                       {"type": "string", "description": "a feature map: 1@28x28"}]}
    return {"anyOf": [shape, {"type": "object", "required": ["shape"], "additionalProperties": False,
                              "properties": {"shape": shape, "dtype": {"enum": list(DTYPES)}}}],
            "description": "The shape of one sample, batch left out: [1, 28, 28], 1@28x28, [T, 28], or "
                           "{shape: [T], dtype: long} for token ids."}


def _body_properties() -> dict[str, Any]:
    return {
        "description": {"type": "string"},
        "input": _input(),
        "inputs": {"type": "object", "minProperties": 1, "propertyNames": {"pattern": IDENT},
                   "additionalProperties": _input(), "description": "Several named inputs: name: shape."},
        "outputs": {"anyOf": [{"type": "string", "pattern": IDENT},
                              {"type": "array", "items": {"type": "string", "pattern": IDENT}}],
                    "description": "The `name:`s of the layers whose outputs the model returns."},
        "layers": {"$ref": "#/$defs/layers"},
        "symbols": {"type": "object", "propertyNames": {"pattern": IDENT}, "description": "What is known of a "
                    "symbol: {H: {divisible_by: 8}}.", "additionalProperties": {
                        "type": "object", "additionalProperties": False, "required": ["divisible_by"],
                        "properties": {"divisible_by": {"type": "integer", "minimum": 1}}}},
    }


def _options(table: dict[str, Arg]) -> dict[str, Any]:
    return {n: _describe(kind_schema(a.kind), a) for n, a in table.items()}


def _train() -> dict[str, Any]:
    from .data import DATASETS
    from .tasks import TASKS
    from .trainspec import TRAIN_ARGS

    props = _options(TRAIN_ARGS)
    names = sorted(DATASETS)
    per_data = []
    for n in names:
        e = DATASETS[n]
        then: dict[str, Any] = {"properties": {"name": {"const": n}, **_options(e.args)},
                                "additionalProperties": False}
        required = [k for k, a in e.args.items() if a.default is REQUIRED]
        if required:
            then["required"] = required
        per_data.append({"if": {"properties": {"name": {"const": n}}}, "then": then})
    data_doc = "; ".join(f"{n}: {DATASETS[n].doc}" for n in names)
    props["data"] = _describe({"anyOf": [{"enum": names}, {
        "type": "object", "required": ["name"], "properties": {"name": {"enum": names}}, "allOf": per_data}]},
        TRAIN_ARGS["data"], extra=data_doc)
    tnames = sorted(TASKS)
    task_props = {n: {"anyOf": [{"type": "object", "properties": _options(TASKS[n].args),
                                 "additionalProperties": False}, {"type": "null"}],
                      "description": TASKS[n].doc} for n in tnames}
    props["task"] = _describe({"anyOf": [{"enum": tnames}, {"type": "null"}, {
        "type": "object", "minProperties": 1, "maxProperties": 1, "properties": task_props,
        "additionalProperties": False}]}, TRAIN_ARGS["task"])
    return {"type": "object", "required": ["data"], "properties": props, "additionalProperties": False,
            "description": "How `dlspec run` trains the model (docs/training.md)."}


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a spec file (draft 2020-12)."""
    defs: dict[str, Any] = {
        "layers": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/layer"}},
        "blockLayers": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/blockLayer"}},
        "layer": _layer_entry(block=False),
        "blockLayer": _layer_entry(block=True),
    }
    for n in sorted(REGISTRY):
        defs[f"layer.{n}"] = _layer_args(REGISTRY[n], block=False)
    for n in sorted(REGISTRY):
        defs[f"blockLayer.{n}"] = _layer_args(REGISTRY[n], block=True)
    body = _body_properties()
    block_layers = {"$ref": "#/$defs/blockLayers"}
    network = {"type": "object", "properties": body, "additionalProperties": False, "required": ["layers"],
               "anyOf": [{"required": ["input"]}, {"required": ["inputs"]}],
               "not": {"required": ["input", "inputs"]}}
    props: dict[str, Any] = {
        "name": {"type": "string", "description": "The model's name (default: the file's name)."},
        **body,
        "networks": {"type": "object", "minProperties": 1, "maxProperties": MAX_NETWORKS,
                     "propertyNames": {"pattern": IDENT}, "additionalProperties": network,
                     "description": "Several networks (a GAN's generator and discriminator), each with its own "
                                    "input: and layers:."},
        "blocks": {"type": "object", "propertyNames": {"pattern": BLOCK_NAME},
                   "description": "Named layer lists, used in layers: by name like a layer type. Here a block's "
                                  "name starts with a lower-case letter or _ (to be told apart from layer types).",
                   "additionalProperties": {"anyOf": [block_layers, {
                       "type": "object", "required": ["layers"], "additionalProperties": False,
                       "properties": {"args": {"type": ["object", "null"], "propertyNames": {"pattern": IDENT},
                                               "description": "The block's arguments and their defaults (null: "
                                                              "every use must give it)."},
                                      "layers": block_layers}}]}},
        "train": {"$ref": "#/$defs/train"},
    }
    props["description"] = {"type": "string", "description": "What the model is."}
    assert set(props) == set(SPEC_SCHEMA["properties"]), "the top level's keys changed: add them here"
    defs["train"] = _train()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "dlspec model spec",
        "description": "A dlspec spec: input: and layers: (or networks:), blocks:, train:. Generated by "
                       "`dlspec schema`; `dlspec check` says more, and knows the spec's block names.",
        "type": "object",
        "properties": props,
        "additionalProperties": False,
        "if": {"required": ["networks"]},
        "then": {"not": {"anyOf": [{"required": [k]} for k in BODY_KEYS]}},
        "else": {"required": ["layers"], "anyOf": [{"required": ["input"]}, {"required": ["inputs"]}],
                 "not": {"required": ["input", "inputs"]}},
        "$defs": defs,
    }


def text() -> str:
    """The schema as `dlspec schema` prints it (deterministic: registry names sorted)."""
    return json.dumps(json_schema(), indent=1, ensure_ascii=False) + "\n"
