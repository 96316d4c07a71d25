"""Stage 2, schema: turn the YAML data into a typed Spec, reporting every structural mistake.

The top level is validated with a JSON Schema (``SPEC_SCHEMA``); layer entries are validated against
their registry entry (names case-insensitive, did-you-mean for unknown names and arguments).
"""

from __future__ import annotations

import keyword
import os
import re
import unicodedata
from dataclasses import dataclass, field, replace
from itertools import islice
from typing import Any

from . import codes, dims, limits
from .codes import ErrorCode
from .diagnostics import Diagnostic, diag, did_you_mean, dotted, error, locate
from .params import REQUIRED as PARAM_REQUIRED
from .params import ExprError, substitute
from .registry import REGISTRY, TT, Float, Int, KerasName, Layers, LayerType, lookup
from .source import Document, Path

META_KEYS = ("expect", "name", "repeat", "from")
DTYPES = {"float": "float", "float32": "float", "long": "long", "int64": "long", "int": "long"}

# What one network's body holds: at the top level of a spec of one network, or under each name of `networks:`
BODY_KEYS = ("input", "inputs", "outputs", "layers", "symbols")
NETWORK_KEYS = ("description",) + BODY_KEYS
MAX_NETWORKS = 16  # the networks of one spec (a GAN has two, a CycleGAN four)

# The top level's structure; what each value holds (a shape, a layer list, a network's body) is checked by the
# stage that reads it, with a diagnostic that says exactly what is wrong there.  A spec is one network (`input`
# and `layers` at the top level) or several (`networks:`, each with its own), never both.
SPEC_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "description": {"type": "string"},
        "input": {"type": ["array", "string", "object"]},
        "inputs": {"type": "object", "minProperties": 1},
        "outputs": {"type": ["array", "string"]},
        "layers": {"type": "array", "minItems": 1},
        "networks": {"type": "object", "minProperties": 1, "additionalProperties": {"type": "object"}},
        "blocks": {"type": "object", "additionalProperties": {"type": ["array", "object"]}},
        "symbols": {"type": "object"},
        "train": {"type": "object"},
    },
    "if": {"required": ["networks"]},
    "then": {"not": {"anyOf": [{"required": [k]} for k in BODY_KEYS]}},
    "else": {"required": ["layers"]},
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
    name: str | None = None  # names the module and the output (which later entries can read with `from:`)
    repeat: int = 1
    sources: list[str | int] | None = None  # `from:`: the names (or -k / index) of what it reads; None: the previous
    sources_path: Path = ()  # where `from:` is written
    block_args: dict[str, Any] = field(default_factory=dict)  # a parameterised block's arguments at this use
    context: list[tuple[Path, str]] = field(default_factory=list)  # the block uses it is inside (for diagnostics)
    block: str | None = None

    @property
    def args_path(self) -> Path:
        return self.path + (self.key,)

    key: str = ""  # the key as written (to point at it)
    unknown: bool = False  # an entry that could not be read (no layer to carry on as): the shape pass stops here
    error: bool = False  # the schema reported an error about this entry (its parameter count would be a guess)
    by_rank: dict[int, LayerType] = field(default_factory=dict)  # per-sample rank -> entry, picked by the pass
    stand_in: bool = False  # checked in place of an unknown name (did-you-mean, a Keras name's torch layers)
    dropped: bool = False  # an invalid argument was left out (its default stands in, the table must not show it)
    # the unknown-layer diagnostic of a name that stands for one type per rank (`BatchNorm`, Keras'
    # BatchNormalization): the shape pass names the one for the rank it receives in its help
    rank_diag: Any = None
    rank_what: str = ""


# an entry that could not be read: an unknown layer name with no did-you-mean, or a malformed list entry
UNREADABLE = LayerType(name="?", args={}, infer=lambda c, x: x, family="unknown")


# --- Keras names: a frequent source of unknown layers and arguments ---------------------------------------

_KERAS_ACTIVATIONS: dict[str, tuple[str, dict[str, Any]] | None] = {
    "relu": ("ReLU", {}), "sigmoid": ("Sigmoid", {}), "tanh": ("Tanh", {}), "softmax": ("Softmax", {"dim": -1}),
    "log_softmax": ("LogSoftmax", {"dim": -1}), "elu": ("ELU", {}), "selu": ("SELU", {}), "gelu": ("GELU", {}),
    "swish": ("SiLU", {}), "silu": ("SiLU", {}), "softplus": ("Softplus", {}), "softsign": ("Softsign", {}),
    "relu6": ("ReLU6", {}), "leaky_relu": ("LeakyReLU", {}), "hard_sigmoid": ("Hardsigmoid", {}),
    "hard_swish": ("Hardswish", {}), "mish": ("Mish", {}), "linear": None,  # Keras' "linear" is no activation
}

# Keras argument -> the torch arguments it may stand for (the first one the layer has)
KERAS_ARGS: dict[str, tuple[str, ...]] = {
    "units": ("out_features", "hidden_size"), "filters": ("out_channels",), "strides": ("stride",),
    "pool_size": ("kernel_size",), "rate": ("p",), "input_dim": ("num_embeddings",),
    "output_dim": ("embedding_dim",), "epsilon": ("eps",), "use_bias": ("bias",), "dilation_rate": ("dilation",),
    "target_shape": ("shape",), "axis": ("dim",),
}


def keras_names() -> dict[str, list[tuple[LayerType, KerasName]]]:
    """lower-case Keras layer name -> the torch layers that stand for it (each entry's `keras` in the registry)."""
    out: dict[str, list[tuple[LayerType, KerasName]]] = {}
    for entry in REGISTRY.values():
        for k in entry.keras:
            out.setdefault(k.name.lower(), []).append((entry, k))
    return out


_SHOWN = 16  # yaml_text shows this many entries of a list or mapping, and texts of up to 5 times as many characters


def yaml_text(v: Any, depth: int = 0) -> str:
    """A value as it is written in a spec (flow style), for a message: long texts, lists and mappings, and deep
    nesting are shortened with `…` (a megabyte of text in a block argument would be in every message about the
    block's layers)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    if isinstance(v, int) and abs(v) >= 10**30:
        return limits.number(v)
    if depth > 8:
        return "…"
    if isinstance(v, (list, tuple)):
        items = [yaml_text(e, depth + 1) for e in v[:_SHOWN]] + (["…"] if len(v) > _SHOWN else [])
        return "[" + ", ".join(items) + "]"
    if isinstance(v, dict):
        pairs = [f"{yaml_text(k, depth + 1)}: {yaml_text(e, depth + 1)}" for k, e in islice(v.items(), _SHOWN)]
        return "{" + ", ".join(pairs + (["…"] if len(v) > _SHOWN else [])) + "}"
    text = str(v)
    return text if len(text) <= 5 * _SHOWN else text[:4 * _SHOWN] + "…" + text[-_SHOWN // 2:]


def layer_text(name: str, args: Any) -> str:
    """`- Linear: {out_features: 10}`, as it would be written in a layer list."""
    return f"`- {name}: {yaml_text(args)}`" if args else f"`- {name}`"


@dataclass
class KerasLayer:
    """What a Keras layer entry is in torch: the layers to write (args renamed), and a help line saying so."""

    layers: list[tuple[str, Any, dict[str, str]]]  # (torch name, args, torch arg -> key as written)
    help: str
    by_rank: dict[int, str] = field(default_factory=dict)


def keras_layer(key: str, args: Any) -> KerasLayer | None:
    low = key.lower()
    if low == "activation":
        act = args.get("activation") if isinstance(args, dict) else args
        found = _KERAS_ACTIVATIONS.get(act) if isinstance(act, str) else None
        if found is None:
            return None
        return KerasLayer([(found[0], dict(found[1]), {})],
                          f"Keras' Activation {act} is torch's {found[0]}: write {layer_text(*found)}")
    found_as = keras_names().get(low)
    if not found_as:
        return None
    entry, kn = found_as[0]
    renames, implied, after = dict(kn.renames), dict(kn.implied), kn.after
    # several torch layers for one Keras name (BatchNormalization): the one for each input rank
    by_rank = {r: e.name for e, k in found_as for r in k.ranks} if len(found_as) > 1 else {}
    extra: list[tuple[str, Any, dict[str, str]]] = [(a, None, {}) for a in after]
    written_as: dict[str, str] = {}
    if isinstance(args, dict):
        new: dict[str, Any] = {}
        for k, v in args.items():
            t = renames.get(k) or next((a for a in KERAS_ARGS.get(k, ()) if a in entry.args), None)
            if k == "activation" and isinstance(v, str) and v in _KERAS_ACTIVATIONS:
                act = _KERAS_ACTIVATIONS[v]
                if act is not None:
                    extra.insert(0, (act[0], dict(act[1]), {}))
                continue
            if k == "padding" and v == "valid" and entry.family == "pool":
                continue  # torch pools do not pad by default
            if t is not None and t not in entry.args:
                t = None
            new[t or k] = v
            if t:
                written_as[t] = k
        args = {**new, **{k: v for k, v in implied.items() if k not in new}}
    elif args is None and implied:
        args = dict(implied)
    elif implied and entry.main_arg:  # `- Dense: 10`: the value is the torch layer's main argument
        args = {entry.main_arg: args, **{k: v for k, v in implied.items() if k != entry.main_arg}}
    torch_layers = [(entry.name, args, written_as)] + extra
    shown = args if isinstance(args, dict) or args is None else {entry.main_arg: args}
    if by_rank:
        names = sorted(set(by_rank.values()))
        code = " or ".join(layer_text(n, shown) for n in names[:2])
        help = (f"Keras' {key} is torch's {names[0]} for features (N, F) or (N, C, L) and {names[1]} for feature "
                f"maps (N, C, H, W): write {code}")
    else:
        code = " and ".join(layer_text(n, a if n != entry.name else shown) for n, a, _ in torch_layers)
        torch_names = " + ".join(n for n, _, _ in torch_layers)
        help = f"Keras' {key} is torch's {torch_names}: write {code}"
    return KerasLayer(torch_layers, help, by_rank)


@dataclass
class BlockDef:
    """A named layer list (`blocks:`), with the arguments a use passes (`args:` and their defaults)."""

    layers: Any  # the raw layer list
    path: Path  # where the list is written
    args: dict[str, Any] = field(default_factory=dict)  # name -> default (params.REQUIRED: the use must give it)


@dataclass
class Spec:
    doc: Document
    name: str
    input: TT | None
    items: list[Item]
    blocks: dict[str, BlockDef]
    train: dict[str, Any] | None
    diagnostics: list[Diagnostic]
    train_config: Any = None  # trainspec.TrainConfig when `train:` is valid
    inputs: dict[str, TT] = field(default_factory=dict)  # `inputs:` by name (one for `input:`, named "input")
    outputs: list[str] = field(default_factory=list)  # `outputs:`: the names the model returns; []: the last output
    symbols: dict[str, int] = field(default_factory=dict)  # `symbols: {H: {divisible_by: 8}}`: name -> divisor
    # `networks:`: each network as a Spec of one network (file order; its own diagnostics only, its paths under
    # `base`); {} for a spec of one network, whose body is this Spec's own
    networks: dict[str, Spec] = field(default_factory=dict)
    base: Path = ()  # where the network's body is in the document: () at the top level, ("networks", name)

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
    if any(k not in props for k in data):
        return False
    if "networks" in data:
        nets = data["networks"]
        if any(k in data for k in BODY_KEYS) or not (isinstance(nets, dict) and nets) or \
                not all(isinstance(v, dict) for v in nets.values()):
            return False
    elif "layers" not in data:
        return False
    if "input" in data and not isinstance(data["input"], (list, str, dict)):
        return False
    if "inputs" in data and not (isinstance(data["inputs"], dict) and data["inputs"]):
        return False
    if "outputs" in data and not isinstance(data["outputs"], (list, str)):
        return False
    if "layers" in data and not (isinstance(data["layers"], list) and data["layers"]):
        return False
    for key in ("name", "description"):
        if key in data and not isinstance(data[key], str):
            return False
    if "blocks" in data:
        b = data["blocks"]
        if not isinstance(b, dict) or not all(isinstance(v, (list, dict)) for v in b.values()):
            return False
    if "train" in data and not isinstance(data["train"], dict):
        return False
    if "symbols" in data and not isinstance(data["symbols"], dict):
        return False
    return True


def _top_level(doc: Document) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    data = doc.data
    if not isinstance(data, dict):
        out.append(error(codes.SPEC_STRUCTURE,
                         "a spec is a mapping with at least `input:` and `layers:`", (),
                         help="start from a spec in specs/, e.g. `input: [1, 28, 28]` and `layers: [...]`"))
        return out
    if "networks" in data:
        out += _both_forms(data)
    elif "input" not in data and "inputs" not in data:
        # Point at `layers:`, where `input:` belongs (just above it, as in every spec): it reads as "these
        # layers receive what?".  The document start is the header comment in most specs (a caret on a
        # comment reads as if the comment were wrong) and the last line is some unrelated layer.
        where: Path = ("layers",) if "layers" in data else ()
        out.append(error(codes.MISSING_INPUT, "the spec has no `input` shape", where, key=True,
                         help="add `input:` above `layers:` with the shape of one sample, batch left "
                              "out, e.g. `input: [1, 28, 28]`"))
    elif "input" in data and "inputs" in data:
        out.append(error(codes.SPEC_STRUCTURE, "the spec has both `input:` and `inputs:`", ("inputs",), key=True,
                         help="write `input:` for one input, or `inputs:` (name: shape, ...) for several"))
    if quick_valid(data):
        return out
    for err in sorted(_schema_validator().iter_errors(data), key=lambda e: list(map(str, e.absolute_path))):
        path = tuple(err.absolute_path)
        v = err.validator
        if v == "not" or (path[:1] == ("networks",) and len(path) > 1):
            continue  # both forms (_both_forms), a network's body (_network_body): said there, exactly
        if v == "required":
            missing = err.message.split("'")[1] if "'" in err.message else str(err.message)
            if not any(did_you_mean(str(k), [missing]) for k in data if k not in SPEC_SCHEMA["properties"]):
                # (a misspelt `layer:` is said once, as an unknown key with its did-you-mean)
                out.append(error(codes.SPEC_STRUCTURE, f"the spec has no `{missing}:`", path,
                                 help="add `layers:` with the list of layers, e.g. `layers: [Flatten, {Linear: 10}]` "
                                 "(or `networks:` for several networks, each with its `input:` and `layers:`)"
                                 if missing == "layers" else None))
        elif v == "additionalProperties":
            known = list(err.schema.get("properties", {}))
            parent = err.instance if isinstance(err.instance, dict) else {}
            for k in parent:
                if k not in known:
                    hint = did_you_mean(str(k), known)
                    out.append(error(codes.SPEC_STRUCTURE, f"unknown top-level key '{k}'", path + (k,),
                                     key=True, help=f"did you mean '{hint}'?" if hint else
                                     "top-level keys are " + ", ".join(known)))
        elif path and path[0] == "input":
            continue  # _parse_input says exactly what is wrong with it
        elif path == ("networks",):
            out.append(error(codes.SPEC_STRUCTURE, "`networks` must map each network's name to its `input:` and "
                             "`layers:`", path, help="e.g. `networks: {generator: {input: [100], layers: [...]}, "
                             "discriminator: {input: [1, 28, 28], layers: [...]}}`"))
        else:
            what = {"type": f"must be of type {err.validator_value}", "minItems": "must not be empty"}.get(
                str(v), err.message)
            out.append(error(codes.SPEC_STRUCTURE, f"`{'.'.join(map(str, path))}` {what}", path))
    # one diagnostic per input problem is enough
    seen = set()
    uniq = []
    for d in out:
        k = (d.code, d.path, d.key)
        if k not in seen:
            seen.add(k)
            uniq.append(d)
    return uniq


def _both_forms(data: dict[Any, Any]) -> list[Diagnostic]:
    """A spec with `networks:` and a top-level network body too (`input:`, `layers:`, ...): one error per key."""
    return [error(codes.SPEC_STRUCTURE, f"a spec with `networks:` has no top-level `{k}:`: each network has its own",
                  (k,), key=True, help=f"move `{k}:` into the network it belongs to, under `networks:`; or, for a "
                  "spec of one network, remove `networks:`") for k in BODY_KEYS if k in data]


def _parse_input(doc: Document, raw: Any, where: Path = ("input",), scalar: bool = False
                 ) -> tuple[TT | None, list[Diagnostic]]:
    """The per-sample shape, every size checked: positive integers or symbol names, nothing else.  scalar: one
    value per sample (`[]`, e.g. a class label among `inputs:`) is allowed too."""
    dtype = "float"
    path: Path = where
    eg = "e.g. [1, 28, 28] or [T, 28]"
    if isinstance(raw, dict):
        extra = [k for k in raw if k not in ("shape", "dtype")]
        if extra:
            return None, [error(codes.INVALID_INPUT, f"`input` has no key '{extra[0]}'", where + (extra[0],), key=True,
                                help="the mapping form is `input: {shape: [T], dtype: long}`")]
        if "dtype" in raw and (not isinstance(raw["dtype"], str) or raw["dtype"] not in DTYPES):
            return None, [error(codes.INVALID_INPUT, f"input dtype must be one of {', '.join(DTYPES)}, got "
                                f"{yaml_text(raw['dtype'])}", where + ("dtype",), help="write dtype: long for ids")]
        if "shape" not in raw:
            return None, [error(codes.INVALID_INPUT, "`input` needs `shape:`", where, key=True,
                                help="write `input: {shape: [T], dtype: long}`")]
        dtype = DTYPES.get(str(raw.get("dtype", "float")), "float")
        raw = raw["shape"]
        path = where + ("shape",)
    shape: tuple[Any, ...] | None
    if isinstance(raw, str):
        shape = dims.parse_map(raw)
        if shape is None:
            return None, [error(codes.INVALID_INPUT, f"cannot read input shape {raw!r}", path,
                                help="write a list such as [1, 28, 28], or 1@28x28")]
    elif isinstance(raw, list):
        shape = tuple(raw)
    else:
        return None, [error(codes.INVALID_INPUT, f"`input` must be the shape of one sample, {eg}; got "
                            f"{yaml_text(raw)}", path, help="sizes are positive integers or symbol names (the batch "
                            "N is implicit)")]
    if not shape and not scalar:
        return None, [error(codes.INVALID_INPUT, "`input` needs the size of at least one dimension", path,
                            help=f"write the shape of one sample, {eg}")]
    if len(shape) > limits.MAX_RANK:
        return None, [error(codes.LIMIT, f"`input` has {len(shape):,} dimensions, more than the {limits.MAX_RANK} a "
                            "sample may have", path, help=f"write the shape of one sample, {eg}")]
    diags = [d for i, v in enumerate(shape) if (d := _bad_size(v, path + (i,) if isinstance(raw, list) else path))]
    if diags:
        return None, diags[:1]
    count = dims.product(tuple(d for d in shape if isinstance(d, int)))
    if isinstance(count, int) and count > limits.MAX_INT:
        return None, [error(codes.LIMIT, f"`input` holds {limits.number(count)} values per sample, more than a "
                            f"tensor can hold ({limits.MAX_INT:,}, torch's 64-bit sizes)", path,
                            help=f"write the shape of one sample, {eg}")]
    bad = [d for d in shape if isinstance(d, str) and d == "N"]
    if bad:
        return None, [error(codes.INVALID_INPUT, "`N` is the batch and is implicit: leave it out of `input`",
                            path, help=f"write input: {list(d for d in shape if d != 'N')}")]
    # (C, H, W...) is a feature map; (T, F) with a symbolic T a sequence (a variable length is time)
    layout = "channels" if len(shape) >= 3 else "sequence" if len(shape) == 2 and isinstance(shape[0], str) else None
    return TT(shape, dtype, layout), []


def _bad_size(v: Any, path: Path) -> Diagnostic | None:
    """The diagnostic for one input size that is not a positive integer or a symbol name, else None."""
    if isinstance(v, int) and not isinstance(v, bool):
        if v > limits.MAX_INT:
            return error(codes.LIMIT, f"input size {limits.number(v)} is more than a tensor dimension can hold "
                         f"({limits.MAX_INT:,}, torch's 64-bit sizes)", path,
                         help="write the size of each dimension, e.g. [1, 28, 28]")
        if v >= 1:
            return None
        return error(codes.INVALID_INPUT, f"input sizes are positive, got {v}", path,
                     help="for a size that varies, write a symbol such as T (-1 does not mean 'any size' here)")
    if isinstance(v, str) and dims.SYMBOL.match(v):
        return None
    if isinstance(v, float) and v.is_integer() and 1 <= v < 2**63:
        return error(codes.INVALID_INPUT, f"input sizes are integers, got the number {v!r}", path,
                     help=f"write {int(v)}")
    return error(codes.INVALID_INPUT, f"input sizes are positive integers or symbol names, got {yaml_text(v)}", path,
                 help="write the size of each dimension, e.g. [1, 28, 28], or a name such as T for a size that varies")


class _MissingArgument(Exception):
    """A block used without an argument that has no default (reported): its layers are not read."""


class _Parser:
    def __init__(self, doc: Document, blocks: dict[str, Any]):
        self.doc = doc
        self.blocks = blocks
        self.diags: list[Diagnostic] = []
        self.block_stack: list[str] = []
        self.bounds = limits.current()
        self.depth = 0  # nesting of layer lists (Sequential, Residual, Concat branches, blocks) being read
        self.read = 0  # entries read: a block is read again at every use, so this bounds the work
        self.over = False  # a bound was passed: said once, everything after it is unreadable
        self.read_blocks: dict[tuple[str, int, Any], list[Item]] = {}  # (block, top index, args) -> its entries
        self.context: list[tuple[Path, str]] = []  # the block uses being read: said with a diagnostic inside them
        # where block arithmetic has no value (said), and the paths that hold one: its argument is left out
        self.unvalued: set[Path] = set()

    def err(self, code: ErrorCode, msg: str, path: Path, key: bool = False, help: str | None = None,
            index: int | None = None, notes: list[str] | None = None, item: Item | None = None) -> Diagnostic:
        d = diag("error", code, msg, path, key=key, layer=index, help=help, notes=notes)
        d.related = list(reversed(self.context))
        self.diags.append(d)
        if item is not None:
            item.error = True
        return d

    def unreadable(self, path: Path, index: int, key: Any = "", meta: dict[str, Any] | None = None) -> Item:
        """A placeholder for an entry with no layer to carry on as: it keeps its place in the table (index, name
        as written) and stops the shape pass there, instead of the pass silently skipping it."""
        return Item(entry=UNREADABLE, written={}, path=path, index=index, key=key if isinstance(key, str) else "",
                    unknown=True, error=True, **(meta or {}))

    def items(self, raw: Any, path: Path, index: int | None, scope: set[str] | None = None) -> list[Item]:
        """The entries of a layer list.  scope: the names its entries may read besides its own (a nested list
        or block reads its own names and `input`, its input; the top-level list the spec's inputs too)."""
        out: list[Item] = []
        scope = scope or {"input"}
        named: dict[str, int] = {}  # the names of this list's entries read so far -> their position
        if not isinstance(raw, list):
            self.err(codes.INVALID_LAYER, "expected a list of layers", path, index=index)
            return out
        if self.depth >= self.bounds.layer_depth:
            self.limit(f"layer lists nest more than {self.bounds.layer_depth} deep (Sequential, Residual, Concat "
                       "and blocks inside one another)", path, index, "layer_depth")
            return [self.unreadable(path, index or 0)]
        self.depth += 1
        try:
            for i, entry in enumerate(raw):
                top = i if index is None else index
                self.read += 1
                if self.read > self.bounds.layers:
                    self.limit(f"the spec has more than {self.bounds.layers:,} layer entries (blocks counted at "
                               "every use)", path + (i,), top, "layers")
                    out.append(self.unreadable(path + (i,), top))
                    break
                item = self.item(entry, path + (i,), top)
                if self.context:
                    item.context = list(reversed(self.context))
                self.references(item, i, named, scope, raw)
                if item.name is not None:
                    if item.name in named or item.name in scope:
                        self.err(codes.REFERENCE, f"name '{item.name}' is used twice in this list", item.path + ("name",),
                                 index=top, help="give each layer of a list its own name (`from:` would not know "
                                 "which one it means)")
                    named[item.name] = i
                out.append(item)
        finally:
            self.depth -= 1
        return out

    def references(self, item: Item, pos: int, named: dict[str, int], scope: set[str], raw: list[Any]) -> None:
        """`from:` names an input or an entry before this one (a name, -k for k entries back, or an index), as many as
        the layer reads: one, or two or more for a merge (Add, Concatenate, ...)."""
        many = item.entry.arity == 0
        where = item.sources_path or item.path + ("from",)
        if item.entry.arity == 2 and not item.unknown and (item.sources is None or len(item.sources) != 2):
            order = item.entry.doc.split("`from: ")[-1].rstrip("`")  # the doc ends with `from: [target, memory]`
            self.err(codes.REFERENCE, f"{item.entry.name} reads two inputs: name them with `from:`"
                     + (f" (it names {len(item.sources)})" if item.sources else ""),
                     where if item.sources else item.args_path, key=item.sources is None, index=item.index,
                     help=f"e.g. `from: [-1, {order.strip('[]').split(', ')[-1]}]`, in the order {order}")
            return
        if item.sources is None:
            if many and not item.unknown:
                self.err(codes.REFERENCE, f"{item.entry.name} merges two or more inputs: say which with `from:`",
                         item.args_path, key=True, index=item.index,
                         help=f"e.g. `- {item.entry.name}: [-1, skip]` (the previous output and the one named skip)")
            return
        if many and len(item.sources) < 2:
            self.err(codes.REFERENCE, f"{item.entry.name} merges two or more inputs, `from:` names "
                     f"{len(item.sources)}", where, index=item.index, help="list them all: `from: [-1, skip]`")
        elif item.entry.arity == 1 and len(item.sources) > 1 and not item.unknown:
            self.err(codes.REFERENCE, f"{item.entry.name} reads one input, `from:` names {len(item.sources)}", where,
                     index=item.index, help="merge them first (Add, Multiply, Concatenate, Average, Maximum), or "
                     "name one")
        later = {e["name"]: j for j, e in enumerate(raw) if isinstance(e, dict) and isinstance(e.get("name"), str)
                 and j > pos}
        for k, s in enumerate(item.sources):
            spath = where + (k,) if self._listed(where) else where
            if isinstance(s, int):
                if (s < 0 and -s > pos + 1) or (s >= 0 and s >= pos):  # -(pos + 1): the list's input
                    self.err(codes.REFERENCE, f"`from: {s}` is no entry before this one (it is entry {pos} of its "
                             "list)", spath, index=item.index, help="-1 is the previous entry (the list's input for "
                             "the first), -2 the one before; 0 the first entry; or write the `name:` of the one meant")
            elif s not in named and s not in scope:
                if s in later:
                    msg = f"'{s}' is defined after this layer (entry {later[s]} of the list)"
                    help = "a layer reads only what comes before it"
                else:
                    msg = f"no layer or input named '{s}' before this one"
                    hint = did_you_mean(s, list(named) + sorted(scope))
                    help = f"did you mean '{hint}'?" if hint else (
                        "names this list can read: " + ", ".join(list(named) + sorted(scope)))
                self.err(codes.REFERENCE, msg, spath, index=item.index, help=help)

    def _listed(self, path: Path) -> bool:
        """Whether the document holds a list at path (`from: [a, b]`, not `from: a`)."""
        node: Any = self.doc.data
        try:
            for p in path:
                node = node[p]
        except (KeyError, IndexError, TypeError):
            return False
        return isinstance(node, list)

    def limit(self, message: str, path: Path, index: int | None, bound: str) -> None:
        if not self.over:
            self.over = True
            self.err(codes.LIMIT, message, path, index=index, help=limits.raise_with(bound))

    def item(self, raw: Any, path: Path, index: int) -> Item:
        if isinstance(raw, str):
            key, args, meta = raw, None, {}
        elif isinstance(raw, dict) and raw:
            type_keys = [k for k in raw if k not in META_KEYS]
            meta = {k: raw[k] for k in raw if k in META_KEYS}
            flat = _flat_arguments(raw, type_keys)
            if flat is not None:  # `- Conv2d:` with its arguments at the name's indent: YAML reads them as names
                name, flat_args = flat
                shown = yaml_text(flat_args)
                self.err(codes.INVALID_LAYER, f"the arguments of {name} are not indented under it, so YAML reads "
                         f"{', '.join(map(str, flat_args))} as more layer names", path + (type_keys[1],), key=True,
                         index=index, help=f"indent them further than `{name}` (they belong to it), or write "
                         f"`- {name}: {shown}`")
                raw = {name: flat_args, **meta}
                type_keys = [name]
            if len(type_keys) != 1:
                what = "no layer name" if not type_keys else "several layer names: " + ", ".join(map(str, type_keys))
                self.err(codes.INVALID_LAYER, f"a layer entry needs exactly one layer name, found {what}", path,
                         index=index, help="write one layer per list entry: `- Conv2d: {...}`; "
                         f"besides the name only {', '.join(META_KEYS)} may appear")
                return self.unreadable(path, index)
            key = type_keys[0]
            args = raw[key]
        else:
            self.err(codes.INVALID_LAYER, f"a layer entry is `- Name` or `- Name: {{args}}`, got {raw!r}", path,
                     index=index)
            return self.unreadable(path, index)
        if not isinstance(key, str):
            self.err(codes.INVALID_LAYER, f"a layer name must be text, got {key!r}", path, index=index)
            return self.unreadable(path, index)
        kpath = path + (key,) if isinstance(raw, dict) else path
        from_path = path + ("from",)
        if isinstance(args, dict) and "from" in args and "from" not in meta:  # `- Add: {from: [a, b]}`
            meta = {**meta, "from": args["from"]}
            args = {k: v for k, v in args.items() if k != "from"} or None
            from_path = kpath + ("from",)
        entry = lookup(key)
        if entry is not None and entry.reads_list and isinstance(args, list) and "from" not in meta:
            meta, args = {**meta, "from": args}, None  # `- Add: [-1, skip]`: a merge's bare value is what it reads
            from_path = kpath
        meta_ok = self.meta(meta, path, index)
        if "sources" in meta_ok:
            meta_ok["sources_path"] = from_path
        if key in self.blocks:
            return self.block_ref(key, args, kpath, path, index, meta_ok)
        if entry is None:
            return self.unknown_layer(key, args, isinstance(raw, dict), kpath, path, index, meta_ok)
        item = Item(entry=entry, written={}, path=path, index=index, key=key, **meta_ok)
        self.arguments(item, args, kpath)
        return item

    def unknown_layer(self, key: str, args: Any, as_key: bool, kpath: Path, path: Path, index: int,
                      meta: dict[str, Any]) -> Item:
        """Report an unknown name; carry on as the layer it probably means (a Keras name's torch layers, or the
        closest spelling), so later mistakes are found in this run too, or else stop the pass at it."""
        keras = keras_layer(key, args)
        if keras is not None:
            d = self.err(codes.UNKNOWN_LAYER, f"unknown layer type '{key}'", kpath, key=as_key, index=index,
                         help=keras.help)
            items = []
            for i, (name, a, written_as) in enumerate(keras.layers):
                it = Item(entry=REGISTRY[name], written={}, path=path, index=index, key=key, error=True,
                          by_rank={r: REGISTRY[n] for r, n in keras.by_rank.items()} if i == 0 else {})
                if it.by_rank:
                    it.rank_diag, it.rank_what = d, f"Keras' {key} is torch's"
                self.arguments(it, a, kpath, written_as)
                items.append(it)
            if len(items) == 1:
                return replace(items[0], stand_in=True, **meta)
            return Item(entry=REGISTRY["Sequential"], written={}, path=path, index=index, key=key,
                        children={"layers": items}, error=True, stand_in=True, **meta)
        sized = _sized(key)
        if sized:  # `BatchNorm`, `Conv`, `MaxPool`: the type for the rank it receives (BatchNorm2d for a map)
            names = sorted(set(sized.values()))
            forms = "; ".join(f"{n} for {' or '.join(_rank_text(r) for r in sorted(sized) if sized[r] == n)}"
                              for n in names)
            d = self.err(codes.UNKNOWN_LAYER, f"unknown layer type '{key}': torch names it by the input's rank",
                         kpath, key=as_key, index=index, help=f"write {', '.join(names[:-1])} or {names[-1]}: "
                         + forms)
            first = REGISTRY[sized[min(sized)]]
            item = Item(entry=first, written={}, path=path, index=index, key=key, error=True, stand_in=True,
                        by_rank={r: REGISTRY[n] for r, n in sized.items()}, rank_diag=d,
                        rank_what=f"`{key}` is torch's", **meta)
            self.arguments(item, args, kpath)
            return item
        # a stricter match than for arguments: the pass carries on as this layer ('Flaten' is Flatten at 0.92,
        # 'Frobnicate' is not Concat at 0.62)
        hint = did_you_mean(key, list(REGISTRY) + list(self.blocks), cutoff=0.7)
        self.err(codes.UNKNOWN_LAYER, f"unknown layer type '{key}'", kpath, key=as_key, index=index,
                 help=f"did you mean '{hint}'?" if hint else "`dlspec layers` lists the layer types")
        if hint is None:
            return self.unreadable(path, index, key, meta)
        if hint in self.blocks:
            return replace(self.block_ref(hint, args, kpath, path, index, meta), key=key, error=True, stand_in=True)
        item = Item(entry=REGISTRY[hint], written={}, path=path, index=index, key=key, error=True, stand_in=True,
                    **meta)
        self.arguments(item, args, kpath)
        return item

    def meta(self, meta: dict[str, Any], path: Path, index: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        meta = {k: v for k, v in meta.items() if path + (k,) not in self.unvalued}  # (block arithmetic, said)
        if "expect" in meta:
            e = meta["expect"]
            shape = dims.parse_map(e) if isinstance(e, str) else tuple(e) if isinstance(e, list) else None
            if shape is None or not all((isinstance(d, int) and not isinstance(d, bool) and d >= 0)
                                        or (isinstance(d, str) and dims.SYMBOL.match(d)) for d in shape):
                self.err(codes.INVALID_ARGUMENT, f"cannot read expect: {e!r}", path + ("expect",), index=index,
                         help="write the layer's output for one sample: 16@5x5 or [16, 5, 5]")
            else:
                out["expect"] = tuple(shape)
        if "name" in meta:
            n = meta["name"]
            problem = layer_name_problem(n)
            if problem is not None:
                self.err(codes.INVALID_ARGUMENT, problem[0], path + ("name",), index=index, help=problem[1])
            else:
                out["name"] = n
        if "from" in meta:
            src = _sources(meta["from"])
            if src is None:
                self.err(codes.REFERENCE, f"cannot read from: {yaml_text(meta['from'])}", path + ("from",), index=index,
                         help="`from:` is the name of an earlier layer (or input), -1 for the previous one, or a list "
                              "of them for a merge: `from: [-1, skip]`")
            else:
                out["sources"] = src
        if "repeat" in meta:
            r = meta["repeat"]
            if not isinstance(r, int) or isinstance(r, bool) or r < 1:
                self.err(codes.INVALID_ARGUMENT, f"repeat must be a positive integer, got {yaml_text(r)}",
                         path + ("repeat",), index=index,
                         help="`repeat: 2` puts the layer twice in a row; leave it out for once")
            elif r > self.bounds.layers:
                self.err(codes.LIMIT, f"repeat: {limits.number(r)} is more than the {self.bounds.layers:,} layers a "
                         "spec may expand to", path + ("repeat",), index=index, help=limits.raise_with("layers"))
            else:
                out["repeat"] = r
        return out

    def block_ref(self, key: str, args: Any, kpath: Path, path: Path, index: int, meta: dict[str, Any]) -> Item:
        block = self.blocks[key]
        try:
            env = self.block_args(key, block, args, kpath, index)
        except _MissingArgument:  # its layers cannot be read without it
            return self.unreadable(path, index, key, meta)
        if key in self.block_stack:
            self.err(codes.RECURSIVE_BLOCK, f"block '{key}' uses itself ({' → '.join(self.block_stack + [key])})",
                     kpath, index=index, help=f"a block cannot contain itself; to use '{key}' several times in a row, "
                     f"write `repeat:` beside its name where it is used (`- {key}:` then `repeat: 3`)")
            return self.unreadable(path, index, key, meta)
        memo = (key, index, _frozen(env))
        children = self.read_blocks.get(memo)
        if children is None:  # read once per top-level entry and arguments: a block used twice in a block used
            raw = block.layers  # twice ... is read once, not 2^depth times (`expanded` counts what it stands for)
            shown = ", ".join(f"{k}={yaml_text(v)}" for k, v in env.items())
            self.context.append((kpath, f"in block {key}" + (f"({shown})" if shown else "") + ", used"))
            self.block_stack.append(key)
            outer = self.unvalued
            try:
                if env:
                    problems: list[tuple[Path, ExprError]] = []
                    raw = substitute(block.layers, env, block.path, problems)
                    for ppath, problem in problems:  # (the argument it was for is not checked again: said here)
                        self.err(codes.LIMIT if problem.limit else codes.INVALID_ARGUMENT, str(problem), ppath,
                                 index=index, help=problem.help or f"the block's arguments are {', '.join(block.args)}")
                    # this use's: the same block used with other arguments may give those places a value
                    self.unvalued = set(outer)
                    for ppath, _ in problems:
                        for n in range(len(ppath), len(block.path) - 1, -1):  # (shorter ones are in from another)
                            if ppath[:n] in self.unvalued:
                                break
                            self.unvalued.add(ppath[:n])
                children = self.items(raw, block.path, index)
            finally:
                self.block_stack.pop()
                self.context.pop()
                self.unvalued = outer
            self.read_blocks[memo] = children
        entry = REGISTRY["Sequential"]
        return Item(entry=entry, written={}, path=path, index=index, key=key,
                    children={"layers": children}, block=key, block_args=env, **meta)

    def block_args(self, key: str, block: BlockDef, args: Any, kpath: Path, index: int) -> dict[str, Any]:
        """The values of a block's arguments at one use: given, or the defaults; `- name: 128` fills the first."""
        if args in (None, {}):
            args = {}
        elif not isinstance(args, dict):
            if not block.args:
                self.err(codes.INVALID_ARGUMENT, f"block '{key}' takes no arguments", kpath, index=index,
                         help="use `repeat:` beside the name to repeat it; or give the block `args:`")
                return {}
            args = {next(iter(block.args)): args}
        if args and not block.args:
            self.err(codes.INVALID_ARGUMENT, f"block '{key}' takes no arguments", kpath, index=index,
                     help="use `repeat:` beside the name to repeat it; or give the block `args:`")
            return {}
        env: dict[str, Any] = {}
        for name, value in args.items():
            if name not in block.args:
                hint = did_you_mean(str(name), list(block.args))
                self.err(codes.UNKNOWN_ARGUMENT, f"block '{key}' has no argument '{name}'", kpath + (name,), key=True,
                         index=index, help=f"did you mean '{hint}'?" if hint else f"{key} takes " + ", ".join(block.args))
                continue
            if isinstance(value, str) and re.search(r"(?<!\w)[A-Za-z_]\w*\s*[-+*/%]|[-+*/%]\s*[A-Za-z_]", value):
                self.err(codes.INVALID_ARGUMENT, f"block '{key}' {name}: `{yaml_text(value)}` computes with names "
                         "that are no arguments here", kpath + (name,), index=index,
                         help="arithmetic over arguments works inside a block's layers; here write a number")
                continue
            env[name] = value
        for name, default in block.args.items():
            if name not in env:
                if default is PARAM_REQUIRED:
                    self.err(codes.MISSING_ARGUMENT, f"block '{key}' needs `{name}`", kpath, key=True, index=index,
                             help=f"write `- {key}: {{{name}: ...}}`")
                    raise _MissingArgument
                env[name] = default
        return env

    def arguments(self, item: Item, args: Any, kpath: Path, written_as: dict[str, str] | None = None) -> None:
        """Check and store an entry's arguments.  written_as: argument -> the key written for it in the file
        (a Keras entry's arguments are renamed before they get here), to point at it."""
        written_as = written_as or {}
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
            self.err(codes.INVALID_ARGUMENT, f"{entry.name} arguments must be a mapping, got {args!r}", kpath,
                     index=item.index, item=item, help=f"write `- {entry.name}: {{name: value, ...}}`"
                     + ("" if main is None else f" (a single value stands for {main})"))
            return
        fixed: set[str] = set()
        for name, value in args.items():
            apath = kpath if positional else kpath + (written_as.get(name, name),)
            spec = entry.args.get(name) if isinstance(name, str) else None
            if spec is None:
                keras = next((a for a in KERAS_ARGS.get(str(name), ()) if a in entry.args), None)
                # Keras' activation and the keys that belong beside the name are not misspellings of an argument
                other = name in META_KEYS or (name == "activation" and isinstance(value, str)
                                              and value in _KERAS_ACTIVATIONS)
                hint = keras or (None if other else did_you_mean(str(name), list(entry.args)))
                self.err(codes.UNKNOWN_ARGUMENT, f"{entry.name} has no argument '{name}'", apath, key=True,
                         index=item.index, item=item, help=self.argument_help(item, str(name), value, hint, keras))
                if hint is None or hint in args or hint in fixed:
                    continue
                # carry on as the argument it was probably meant to be (no second 'missing' error for it)
                name, spec = hint, entry.args[hint]
                fixed.add(hint)
            if value is None and spec.inferred:
                continue
            if apath in self.unvalued:  # block arithmetic with no value, said where it is written
                item.error = item.dropped = True
                continue
            problem = spec.kind.check(value)
            if problem:
                self.err(codes.INVALID_ARGUMENT, f"{entry.name} {name} cannot be {yaml_text(value)}", apath,
                         index=item.index, item=item, help=_accepted(name, spec, value, problem))
                item.dropped = True
                continue
            if isinstance(spec.kind, Layers) or name in entry.children:
                item.children[name] = self.nested(entry, name, value, apath, item.index)
            else:
                item.written[name] = spec.kind.normalize(value)
        missing = [n for n, spec in entry.args.items() if spec.required and n not in item.written
                   and n not in item.children and n not in args and n not in fixed]
        if missing:  # the whole entry as it must be written: what is there, and each missing argument
            whole = {**{k: v for k, v in args.items() if isinstance(k, str)}, **{n: _EXAMPLE.get(n, "...")
                                                                             for n in missing}}
            note = [f"a bare value fills {main}, the first required argument"] if positional else []
            for name in missing:
                self.err(codes.MISSING_ARGUMENT, f"{entry.name} needs `{name}` ({entry.args[name].kind.text})", kpath,
                         key=True, index=item.index, item=item, notes=note,
                         help=f"write {layer_text(entry.name, whole)}")

    def argument_help(self, item: Item, name: str, value: Any, hint: str | None, keras: str | None) -> str:
        entry = item.entry
        if keras:
            return f"Keras' {name} is torch's {keras}: write {keras}: {yaml_text(value)}"
        if hint:
            return f"did you mean '{hint}'?"
        if name == "activation" and isinstance(value, str) and value in _KERAS_ACTIVATIONS:
            act = _KERAS_ACTIVATIONS[value]
            return ("torch layers take no activation argument: " + (f"add {layer_text(*act)} after this layer"
                    if act else "leave it out (Keras' 'linear' is no activation)"))
        if name in META_KEYS:
            return f"`{name}:` belongs beside the layer name, not under it: indent it like `{item.key}`, not further"
        return f"{entry.name} takes " + (", ".join(entry.args) or "no arguments")

    def nested(self, entry: LayerType, name: str, value: Any, path: Path, index: int) -> Any:
        if name == "branches":
            if not isinstance(value, list) or len(value) < 2 or not all(isinstance(b, list) and b for b in value):
                self.err(codes.INVALID_ARGUMENT, f"{entry.name} branches must be a list of at least two layer lists",
                         path, index=index, help="e.g. `- Concat: [[Conv2d: {...}], [MaxPool2d: {...}]]`")
                return []
            return [self.items(b, path + (i,), index) for i, b in enumerate(value)]
        return self.items(value, path, index)


# example values of required arguments, for a missing-argument help that reads as a spec line
_EXAMPLE: dict[str, Any] = {"kernel_size": 3, "out_channels": 16, "out_features": 10, "hidden_size": 64,
                            "num_embeddings": 1000, "embedding_dim": 64, "num_heads": 4, "nhead": 4, "num_groups": 4,
                            "output_size": 1, "size": 2}


def _frozen(v: Any) -> Any:
    """v as a hashable key that tells apart what a block's layers would read differently (1, 1.0 and true are
    equal in Python); built in one pass, with no copy of a long text (a repr would be one per use)."""
    if isinstance(v, dict):
        return ("map", tuple((_frozen(k), _frozen(e)) for k, e in v.items()))
    if isinstance(v, list):
        return ("list", tuple(_frozen(e) for e in v))
    return (type(v).__name__, v)


def _sources(v: Any) -> list[str | int] | None:
    """`from:` as a list of names and ints, or None when it is neither."""
    vs = v if isinstance(v, list) else [v]
    ok = vs and all((isinstance(x, str) and x.isidentifier()) or (isinstance(x, int) and not isinstance(x, bool))
                    for x in vs)
    return list(vs) if ok else None


def _flat_arguments(raw: dict[Any, Any], type_keys: list[Any]) -> tuple[str, dict[str, Any]] | None:
    """(name, arguments) when an entry's first key is a layer type with no value and the others are its
    arguments: block-style arguments indented like the name instead of under it."""
    if len(type_keys) < 2 or not isinstance(type_keys[0], str) or raw[type_keys[0]] is not None:
        return None
    entry = lookup(type_keys[0])
    rest = type_keys[1:]
    if entry is None or not all(isinstance(k, str) and (k in entry.args or k in KERAS_ARGS) for k in rest):
        return None
    return type_keys[0], {k: raw[k] for k in rest}


def expanded(item: Item, cap: int) -> int:
    """The rows an entry becomes: repeat × (itself and what it holds), counted up to just past cap."""
    inner = 1
    for v in item.children.values():
        for sub in v:
            for it in (sub if isinstance(sub, list) else [sub]):
                inner += expanded(it, cap)
                if inner > cap:
                    return cap + 1
    return min(item.repeat * inner, cap + 1)


def _expansion_limit(items: list[Item], cap: int) -> Diagnostic | None:
    """A `limit` diagnostic at the entry where the expanded layer list passes cap, or None."""
    total = 0
    for it in items:
        n = expanded(it, cap)
        total += n
        if total > cap:
            big = f"entry {it.index} alone expands to more than {cap:,}" if n > cap else \
                f"{total:,} by entry {it.index}"
            return error(codes.LIMIT, f"the layer list expands to more than the {cap:,} layers a spec may have "
                         f"({big}: `repeat:` multiplies what it repeats, blocks included)", it.path, layer=it.index,
                         help=limits.raise_with("layers"))
    return None


def _block_def(name: str, raw: Any, diags: list[Diagnostic]) -> BlockDef | None:
    """A block as written: a layer list, or {args: {name: default}, layers: [...]}."""
    base: Path = ("blocks", name)
    if isinstance(raw, list):
        if not raw:
            diags.append(error(codes.SPEC_STRUCTURE, f"block '{name}' is an empty list", base,
                               help="give the block its layers, or remove it"))
            return None
        return BlockDef(raw, base)
    if not isinstance(raw, dict):
        return None  # the top level's schema said so
    extra = [k for k in raw if k not in ("args", "layers")]
    for k in extra:
        hint = did_you_mean(str(k), ["args", "layers"])
        diags.append(error(codes.SPEC_STRUCTURE, f"block '{name}' has no key '{k}'", base + (k,), key=True,
                           help=f"did you mean '{hint}'?" if hint else "a block is a layer list, or {args: {...}, "
                           "layers: [...]}"))
    layers = raw.get("layers")
    if not isinstance(layers, list) or not layers:
        diags.append(error(codes.SPEC_STRUCTURE, f"block '{name}' needs `layers:`, a list of layers", base,
                           key=True, help="write `layers:` under the block, with its layers"))
        return None
    args = raw.get("args") or {}
    if not isinstance(args, dict) or not all(isinstance(k, str) and k.isidentifier() for k in args):
        diags.append(error(codes.SPEC_STRUCTURE, f"block '{name}' args must map names to defaults",
                           base + ("args",), help="e.g. `args: {channels: 64, stride: 1}` (null: no default)"))
        args = {}
    return BlockDef(layers, base + ("layers",), dict(args))


def _sized(key: str) -> dict[int, str]:
    """The rank-suffixed layer types a generic name stands for, by per-sample input rank:
    'BatchNorm' -> {1: BatchNorm1d, 2: BatchNorm1d, 3: BatchNorm2d, 4: BatchNorm3d}; {} for other names."""
    found = {n: e.name for n in (1, 2, 3) if (e := lookup(f"{key}{n}d")) is not None}
    if len(found) < 2:
        return {}
    by_rank = {n + 1: name for n, name in found.items()}
    if 1 in found and found[1].startswith("BatchNorm"):  # BatchNorm1d also normalises features (N, F)
        by_rank[1] = found[1]
    return by_rank


def _rank_text(r: int) -> str:
    return {1: "(N, F)", 2: "(N, C, L)", 3: "(N, C, H, W)", 4: "(N, C, D, H, W)"}.get(r, f"{r + 1}-D inputs")


def _accepted(name: str, spec: Any, value: Any, problem: str) -> str:
    """The help of an invalid-argument error: what the argument accepts, and the likely intent."""
    text = f"{name} {problem}"
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if value == -1 and number and isinstance(spec.kind, Int):
        text += ": leave it out and it is inferred" if spec.inferred else ": -1 does not mean \"infer\" here"
    elif number and isinstance(spec.kind, Float) and spec.kind.max == 1.0 and 1 < value <= 100:
        text += f" (a fraction: {value:g}% is {name}: {value / 100:g})"
    return text


def _bare_name_help(doc: Document, d: Diagnostic) -> Diagnostic:
    """A YAML syntax error on a key under a bare list entry (`- Last` then `expect: ...` below it): YAML reads
    `- Last` as a plain string, which cannot have keys.  Say how to write it."""
    lines = doc.text.splitlines()
    if d.code != codes.YAML_SYNTAX or d.line is None or not 0 < d.line <= len(lines):
        return d
    m = re.match(r"(\s*)([A-Za-z_]\w*)\s*:", lines[d.line - 1])
    j = d.line - 2
    while j >= 0 and (not lines[j].strip() or lines[j].lstrip().startswith("#")):
        j -= 1
    bare = re.match(r"(\s*-\s+)([A-Za-z_]\w*)\s*(#.*)?$", lines[j]) if j >= 0 else None
    if not m or not bare or len(m.group(1)) <= len(bare.group(1)) - len(bare.group(1).lstrip()):
        return d  # the key is not under the entry
    name, key = bare.group(2), m.group(2)
    if key in META_KEYS:
        fix = f"put `{key}:` under it at the same indent as `{name}`"
    else:
        fix = f"put its arguments under it, indented further than `{name}`"
    return replace(d, help=f"a bare name `- {name}` cannot have keys: write `- {name}:` (with a colon) and {fix}")


def parse_spec(doc: Document) -> Spec:
    diags = [_bare_name_help(doc, d) for d in doc.diagnostics]
    stem = os.path.splitext(os.path.basename(doc.path))[0]
    spec = Spec(doc=doc, name=stem, input=None, items=[], blocks={}, train=None, diagnostics=diags)
    if any(d.code in (codes.YAML_SYNTAX, codes.IO, codes.LIMIT) for d in diags):
        return spec
    _check_structure(doc, spec, diags)
    for d in diags:  # the stage's diagnostics get their positions last
        locate(d, doc)
    return spec


def _check_structure(doc: Document, spec: Spec, diags: list[Diagnostic]) -> None:
    stem = spec.name
    diags.extend(_top_level(doc))
    data = doc.data if isinstance(doc.data, dict) else {}
    spec.name = str(data.get("name") or stem)
    spec.blocks = _blocks(data, diags)
    if "networks" in data:
        _networks(doc, spec, data["networks"], diags)
    else:
        _body(doc, spec, data, diags)
    t = data.get("train")
    spec.train = t if isinstance(t, dict) else None
    if spec.train is not None:
        from .trainspec import validate_train

        spec.train_config, d = validate_train(doc, spec.train)
        diags.extend(d)


def _blocks(data: dict[Any, Any], diags: list[Diagnostic]) -> dict[str, BlockDef]:
    """`blocks:`, shared by every network of the spec: each block's definition, its name checked."""
    raw_blocks = data.get("blocks")
    blocks: dict[str, Any] = dict(raw_blocks) if isinstance(raw_blocks, dict) else {}
    for bname in list(blocks):
        problem = ((f"block name {yaml_text(bname)} is not a name", "") if not isinstance(bname, str) or
                   not bname.isidentifier() else python_name_problem(bname, "block name"))
        if problem is not None:
            diags.append(error(codes.SPEC_STRUCTURE, problem[0], ("blocks", bname), key=True, help=problem[1] or
                               "a block is named like a layer: letters, digits and _, not starting with a digit "
                               "(e.g. `stage1`)"))
            del blocks[bname]
    out = {n: bd for n, raw in blocks.items() if (bd := _block_def(n, raw, diags)) is not None}
    for bname in out:
        hidden = lookup(str(bname))
        if hidden is not None:
            diags.append(error(codes.SPEC_STRUCTURE,
                               f"block name '{bname}' hides the layer type {hidden.name}",
                               ("blocks", bname), key=True, help="give the block another name"))
    return out


def _body(doc: Document, spec: Spec, data: dict[Any, Any], diags: list[Diagnostic], read: int = 0) -> int:
    """One network's body into spec: its input(s), symbols, outputs and layers, every path under spec.base (the
    top level for a spec of one network, ("networks", name) for one of several).  read: the layer entries read
    before it (the bound counts those of every network); returns the count after it."""
    base = spec.base
    if "input" in data:
        spec.input, d = _parse_input(doc, data["input"], base + ("input",))
        diags.extend(d)
        if spec.input is not None:
            spec.inputs = {"input": spec.input}
    elif isinstance(data.get("inputs"), dict):
        for iname, raw in data["inputs"].items():
            problem = ((f"input name {yaml_text(iname)} is not a name", "") if not isinstance(iname, str) or
                       not iname.isidentifier() else python_name_problem(iname, "input name"))
            if problem is not None:
                diags.append(error(codes.INVALID_INPUT, problem[0], base + ("inputs", iname), key=True,
                                   help=problem[1] or "name each input like a variable: `image:`"))
                continue
            tt, d = _parse_input(doc, raw, base + ("inputs", iname), scalar=True)
            diags.extend(d)
            if tt is not None:
                spec.inputs[iname] = tt
        spec.input = next(iter(spec.inputs.values()), None)
    for sname, decl in (data.get("symbols") or {}).items() if isinstance(data.get("symbols"), dict) else ():
        k = decl.get("divisible_by") if isinstance(decl, dict) else None
        if not (isinstance(sname, str) and dims.SYMBOL.match(sname)) or not isinstance(decl, dict) or \
                set(decl) - {"divisible_by"} or not isinstance(k, int) or isinstance(k, bool) or k < 1:
            diags.append(error(codes.SPEC_STRUCTURE, f"cannot read symbols.{sname}: {yaml_text(decl)}",
                               base + ("symbols", sname), help="declare what is known of a symbol: `symbols: {H: "
                               "{divisible_by: 8}}` (H is always a multiple of 8)"))
            continue
        spec.symbols[sname] = k
    outs = data.get("outputs")
    if outs is not None:
        outs = [outs] if isinstance(outs, str) else outs
        for i, o in enumerate(outs if isinstance(outs, list) else []):
            if isinstance(o, str) and o.isidentifier():
                spec.outputs.append(o)
            else:
                diags.append(error(codes.SPEC_STRUCTURE, f"an output is the name of a layer or input, got "
                                   f"{yaml_text(o)}", base + ("outputs", i), help="write `outputs: [logits, aux]`, "
                                   "the `name:`s of the layers whose outputs the model returns"))
    if isinstance(data.get("layers"), list):
        p = _Parser(doc, spec.blocks)
        p.read = read
        spec.items = p.items(data["layers"], base + ("layers",), None, scope=set(spec.inputs) | {"input"})
        diags.extend(p.diags)
        too_many = _expansion_limit(spec.items, p.bounds.layers)
        if too_many is not None and not p.over:  # what `repeat:` multiplies: the rows the shape pass would make
            diags.append(too_many)
            spec.items = []
        read = p.read
    return read


def _networks(doc: Document, spec: Spec, raw: Any, diags: list[Diagnostic]) -> None:
    """`networks:`: each network's name checked and its body read as a spec of one network would be, into
    spec.networks (file order).  A network's diagnostics go into its own Spec's and into diags."""
    if not isinstance(raw, dict):
        return  # the top level's schema said so
    read = 0
    for i, (name, body) in enumerate(raw.items()):
        path: Path = ("networks", name)
        if i == MAX_NETWORKS:
            diags.append(error(codes.LIMIT, f"the spec has more than the {MAX_NETWORKS} networks a spec may hold",
                               path, key=True, help="put the others in a spec of their own (a GAN has two networks)"))
            return
        mine: list[Diagnostic] = []
        problem = _network_name(name, spec.blocks)
        if problem is not None:
            mine.append(error(codes.SPEC_STRUCTURE, problem[0], path, key=True, help=problem[1]))
        if not isinstance(body, dict):
            mine.append(error(codes.SPEC_STRUCTURE, f"network '{name}' is a mapping with `input:` and `layers:`, "
                              f"got {yaml_text(body)}", path, help=f"e.g. `{name}: {{input: [100], layers: "
                              "[{Linear: 784}, Tanh]}`"))
            diags.extend(mine)
            continue
        mine += _network_body(str(name), body, path)
        net = Spec(doc=doc, name=str(name), input=None, items=[], blocks=spec.blocks, train=None,
                   diagnostics=mine, base=path)
        read = _body(doc, net, body, mine, read)
        diags.extend(mine)
        spec.networks.setdefault(str(name), net)  # (checked under a bad name too: its mistakes are said now)


# The names the modules of dlspec.build's model already have, which a module it holds cannot take (nn.Module
# refuses a child under an attribute's name).  Written out, not read from torch: `dlspec check` never imports it
# (tests/test_hostile_export.py and tests/test_networks.py compare them with the installed torch's).
# nn.Module's own, not underscored: its methods, and `training`, the flag model.train() and model.eval() set
NN_MODULE_ATTRIBUTES = frozenset("""
    T_destination add_module apply bfloat16 buffers call_super_init children compile cpu cuda double
    dump_patches eval extra_repr float forward get_buffer get_extra_state get_parameter get_submodule half ipu
    load_state_dict modules mtia named_buffers named_children named_modules named_parameters
    parameters register_backward_hook register_buffer register_forward_hook register_forward_pre_hook
    register_full_backward_hook register_full_backward_pre_hook register_load_state_dict_post_hook
    register_load_state_dict_pre_hook register_module register_parameter register_state_dict_post_hook
    register_state_dict_pre_hook requires_grad_ set_extra_state set_submodule share_memory state_dict to
    to_empty train training type xpu zero_grad
""".split())
# a spec of several networks is an nn.ModuleDict: its dict methods too
MODULE_ATTRIBUTES = NN_MODULE_ATTRIBUTES | {"clear", "items", "keys", "pop", "update", "values"}
# a layer list is an nn.Sequential (its list methods) or dlspec's Graph (what its steps read, in, out): a layer
# named one of these is stored as NAME_ (`forward` as forward_; builder.layout), but for `training`, refused
LAYER_ATTRIBUTES = NN_MODULE_ATTRIBUTES | {"append", "extend", "insert", "pop", "steps", "input_names",
                                           "output_names"}


def python_name_problem(name: str, what: str, form: str = "`{}:`") -> tuple[str, str] | None:
    """(message, help) when an identifier cannot stand for itself in Python code (a module attribute, a variable
    of `dlspec export`'s file): a keyword, or a name Python reads as another (it NFKC-normalises identifiers:
    `ﬁ` is `fi`, so two names would be one, and the exported file's `self.ﬁ` would not be dlspec.build's).
    None for a good name.  `form`: how the help writes the fixed name (`name: {}` for a layer's)."""
    if keyword.iskeyword(name):
        return (f"{what} '{name}' is a Python keyword, which Python code cannot use as a name",
                f"write another name, e.g. {form.format(name + '_')}")
    read = unicodedata.normalize("NFKC", name)
    if read != name:
        return (f"{what} '{name}' is '{read}' to Python (it reads names NFKC-normalised), so exported code would "
                "not find it", f"write {form.format(read)}")
    return None


def layer_name_problem(name: Any) -> tuple[str, str] | None:
    """(message, help) when `name:` cannot name a layer, else None.  It names the layer's module in the built
    model (model.NAME, its state_dict keys) and a variable in the exported code: an identifier, not a keyword,
    as Python reads it, not underscored (torch's own state: _modules, _parameters, dunders) and not `training`
    (every module's flag).  nn.Module's method names are allowed: the module is stored as NAME_ (forward_)."""
    if not isinstance(name, str) or not name.isidentifier():
        return (f"name must be a Python identifier, got {name!r}", "a name is letters, digits and _, not starting "
                "with a digit, e.g. `name: conv1`; it names the module in the built model")
    problem = python_name_problem(name, "name", "`name: {}`")
    if problem is not None:
        return problem
    if name.startswith("_"):
        plain = name.strip("_")
        return (f"name '{name}' starts with _, as the names torch keeps a module's own state under (_modules, "
                "_parameters, __dict__)", f"write `name: {plain}`" if plain.isidentifier() and
                layer_name_problem(plain) is None else "write a name that starts with a letter, e.g. `name: conv1`")
    if name == "training":
        return ("name 'training' is taken: every torch module holds its training flag under it (model.train() "
                "and model.eval() set it)", "give the layer another name, e.g. `name: training_`")
    return None


def _network_name(name: Any, blocks: dict[str, BlockDef]) -> tuple[str, str] | None:
    """(message, help) when name cannot name a network, else None."""
    if not isinstance(name, str) or not name.isidentifier():
        return (f"network name {yaml_text(name)} is not a name", "name a network like a variable: letters, digits "
                "and _, not starting with a digit (e.g. `generator`)")
    problem = python_name_problem(name, "network name")
    if problem is not None:
        return problem
    if name.startswith("_") or name in MODULE_ATTRIBUTES:
        return (f"network name '{name}' is taken by torch's nn.ModuleDict, which `dlspec.build` gives",
                "give the network another name (e.g. `generator`, `discriminator`)")
    if name in blocks:
        return (f"network name '{name}' is also the name of a block", "give the network or the block another name")
    hidden = lookup(name)
    if hidden is not None:
        return (f"network name '{name}' is the name of the layer type {hidden.name}", "give the network another "
                "name (e.g. `generator`, `discriminator`)")
    return None


_TOP_ONLY = ("name", "blocks", "train")  # written inside a network, these belong beside `networks:`


def _network_body(name: str, body: dict[Any, Any], path: Path) -> list[Diagnostic]:
    """The keys of one network's body: known ones of the right type, `layers:`, and `input:` or `inputs:`."""
    out: list[Diagnostic] = []
    for k in body:
        if k in NETWORK_KEYS:
            continue
        hint = did_you_mean(str(k), list(NETWORK_KEYS))
        help = f"`{k}:` belongs at the top level, beside `networks:`" if k in _TOP_ONLY else \
            f"did you mean '{hint}'?" if hint else "a network holds " + ", ".join(NETWORK_KEYS)
        out.append(error(codes.SPEC_STRUCTURE, f"network '{name}' has no key '{k}'", path + (k,), key=True, help=help))
    props = SPEC_SCHEMA["properties"]
    for k in NETWORK_KEYS:
        if k not in body or k == "input":  # (_parse_input says exactly what is wrong with an input)
            continue
        want, v = props[k], body[k]
        kinds = {"array": list, "string": str, "object": dict}
        types = want["type"] if isinstance(want["type"], list) else [want["type"]]
        if not isinstance(v, tuple(kinds[t] for t in types)):
            out.append(error(codes.SPEC_STRUCTURE, f"`{dotted(path + (k,))}` must be of type "
                             f"{' or '.join(types)}, got {yaml_text(v)}", path + (k,)))
        elif not v and k in ("inputs", "layers"):
            out.append(error(codes.SPEC_STRUCTURE, f"`{dotted(path + (k,))}` must not be empty", path + (k,)))
    if "layers" not in body:
        out.append(error(codes.SPEC_STRUCTURE, f"network '{name}' has no `layers:`", path, key=True,
                         help="add `layers:` under it with the list of layers, e.g. `layers: [Flatten, {Linear: 10}]`"))
    if "input" not in body and "inputs" not in body:
        where = path + ("layers",) if "layers" in body else path
        out.append(error(codes.MISSING_INPUT, f"network '{name}' has no `input` shape", where, key=True,
                         help="add `input:` above its `layers:` with the shape of one sample, batch left out, e.g. "
                              "`input: [100]`"))
    elif "input" in body and "inputs" in body:
        out.append(error(codes.SPEC_STRUCTURE, f"network '{name}' has both `input:` and `inputs:`", path + ("inputs",),
                         key=True, help="write `input:` for one input, or `inputs:` (name: shape, ...) for several"))
    return out
