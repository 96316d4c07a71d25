"""The layer registry: one entry per layer type, holding everything every stage needs to know about it.

An entry has its argument schema (``args``), its pure shape rule (``infer``), its parameter and MAC
counts, its torch constructor (``build``; by default ``torch.nn.<name>(**args)``, imported lazily) and a
few example argument sets.  The schema check, the shape pass, the builder, ``dlspec layers`` and the
torch-parity test all read this table, so a new layer is one ``register(...)`` call.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import limits
from .dims import Dim, Shape


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()


# --- argument kinds --------------------------------------------------------------------------------

class Kind:
    """A kind of argument value: check() returns an error phrase or None; normalize() the stored value."""

    text = "a value"

    def check(self, v: Any) -> str | None:
        return None

    def normalize(self, v: Any) -> Any:
        return v


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _beyond(v: Any) -> str | None:
    """The phrase for an integer beyond what torch holds (64 bits), else None."""
    return f"must be at most {limits.MAX_INT:,} in magnitude (torch's 64-bit integers)" \
        if _is_int(v) and abs(v) > limits.MAX_INT else None


class Int(Kind):
    def __init__(self, min: int | None = None, max: int | None = None):
        self.min, self.max = min, max
        self.text = {None: "an integer", 0: "a non-negative integer", 1: "a positive integer"}.get(
            min, f"an integer ≥ {min}")
        if max is not None:
            self.text += f" (at most {max:,})"

    def check(self, v: Any) -> str | None:
        if not _is_int(v):
            return f"must be {self.text}"
        if self.min is not None and v < self.min:
            return f"must be {self.text}"
        if self.max is not None and v > self.max:  # (the entry's own bound says more than torch's 64 bits)
            return f"must be at most {self.max:,}"
        return _beyond(v)


FLOAT32_MAX = 3.4028234663852886e38  # the largest finite float32: torch holds a layer's number in a float32 tensor


class Float(Kind):
    def __init__(self, min: float | None = None, max: float | None = None, open_min: bool = False,
                 wide: bool = False):
        self.min, self.max, self.open_min = min, max, open_min
        self.wide = wide  # beyond float32's range allowed (a number torch keeps as a Python float, e.g. a clip)
        if min is not None and max is not None:
            self.text = f"a number in [{min}, {max}]"
        elif min is not None:
            self.text = f"a number {'>' if open_min else '≥'} {min}"
        else:
            self.text = "a number"

    def check(self, v: Any) -> str | None:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return f"must be {self.text}"
        if not math.isfinite(v):  # .inf and .nan are YAML floats, and no size, rate or factor
            return f"must be a finite number ({self.text[2:]})"
        if self.min is not None and (v < self.min or (self.open_min and v == self.min)):
            return f"must be {self.text}"
        if self.max is not None and v > self.max:
            return f"must be {self.text}"
        if abs(v) > FLOAT32_MAX and not self.wide:  # torch turns it into a float32 scalar, and fails mid-run ("without overflow")
            return f"must be a number float32 holds (at most {FLOAT32_MAX:.4g} in size): torch computes with it in " \
                   "float32"
        return None

    def normalize(self, v: Any) -> Any:
        return float(v)


class Bool(Kind):
    text = "true or false"

    def check(self, v: Any) -> str | None:
        return None if isinstance(v, bool) else "must be true or false"


class Choice(Kind):
    def __init__(self, *options: Any):
        self.options = options
        self.text = str(options[0]) if len(options) == 1 else "one of " + ", ".join(str(o) for o in options)

    def check(self, v: Any) -> str | None:
        return None if v in self.options else f"must be {self.text}"


class IntTuple(Kind):
    """An int or a list of n ints, as torch's _pair/_triple arguments."""

    def __init__(self, n: int, min: int = 1, allow: tuple[str, ...] = ()):
        self.n, self.min, self.allow = n, min, allow
        word = {0: "non-negative ", 1: "positive "}.get(min, "" if min < 0 else f"≥ {min} ")
        self.text = f"a {word}integer" + (f" or a list of {n}" if n > 1 else "")
        if allow:
            self.text += " or " + " or ".join(repr(a) for a in allow)

    def check(self, v: Any) -> str | None:
        if isinstance(v, str) and v in self.allow:
            return None
        big = next((b for e in (v if isinstance(v, list) else [v]) if (b := _beyond(e))), None)
        if big:
            return big
        if _is_int(v):
            return None if v >= self.min else f"must be {self.text}"
        if isinstance(v, list) and len(v) == self.n and all(_is_int(e) and e >= self.min for e in v):
            return None
        if isinstance(v, list) and len(v) != self.n and all(_is_int(e) for e in v):
            return f"must have {self.n} entries, got {len(v)}"
        return f"must be {self.text}"

    def normalize(self, v: Any) -> Any:
        if isinstance(v, str):
            return v
        return tuple(v) if isinstance(v, list) else v

    def expand(self, v: Any) -> tuple[int, ...]:
        return tuple(v) if isinstance(v, (list, tuple)) else (v,) * self.n


class IntList(Kind):
    def __init__(self, min: int | None = None, allow_minus_one: bool = False, text: str = ""):
        self.min, self.allow_minus_one = min, allow_minus_one
        self.text = text or "a list of integers"

    def check(self, v: Any) -> str | None:
        if not isinstance(v, list) or not v or not all(_is_int(e) for e in v):
            return f"must be {self.text}"
        if len(v) > limits.MAX_RANK:
            return f"must have at most {limits.MAX_RANK} entries (a tensor's dimensions), got {len(v):,}"
        big = next((b for e in v if (b := _beyond(e))), None)
        if big:
            return big
        for e in v:
            if self.min is not None and e < self.min and not (self.allow_minus_one and e == -1):
                return f"must be {self.text}"
        return None

    def normalize(self, v: Any) -> Any:
        return tuple(v)


class Optional_(Kind):
    def __init__(self, inner: Kind):
        self.inner = inner
        self.text = inner.text + " or null"

    def check(self, v: Any) -> str | None:
        return None if v is None else self.inner.check(v)

    def normalize(self, v: Any) -> Any:
        return None if v is None else self.inner.normalize(v)


class OneOf(Kind):
    def __init__(self, *kinds: Kind):
        self.kinds = kinds
        self.text = " or ".join(k.text for k in kinds)

    def check(self, v: Any) -> str | None:
        return None if any(k.check(v) is None for k in self.kinds) else f"must be {self.text}"

    def normalize(self, v: Any) -> Any:
        for k in self.kinds:
            if k.check(v) is None:
                return k.normalize(v)
        return v


class Layers(Kind):
    """A nested layer list (for Residual, Concat, ...): checked by the schema stage, not here."""

    text = "a list of layers"

    def check(self, v: Any) -> str | None:
        return None if isinstance(v, list) and v else "must be a non-empty list of layers"


@dataclass
class Arg:
    kind: Kind
    default: Any = REQUIRED
    inferred: bool = False  # an input size: may be omitted, and is then inferred from the input
    doc: str = ""
    own: bool = False  # dlspec's own option (e.g. causal), not an argument of the torch class

    @property
    def required(self) -> bool:
        return self.default is REQUIRED and not self.inferred


# --- tensor type that flows through the pass ----------------------------------------------------------

@dataclass(frozen=True)
class TT:
    """What the shape pass knows about a tensor: per-sample shape (batch N implicit), dtype, layout."""

    shape: Shape
    dtype: str = "float"  # "float" | "long"
    layout: str | None = None  # "channels" (C, *spatial) | "sequence" (T, F) | None

    def with_shape(self, shape: Shape, layout: str | None | bool = False) -> TT:
        return TT(tuple(shape), self.dtype, self.layout if layout is False else layout)  # type: ignore[arg-type]


@dataclass
class Example:
    args: dict[str, Any]
    input: tuple[int, ...]  # per-sample input shape
    dtype: str = "float"


@dataclass(frozen=True)
class KerasName:
    """A Keras layer that is this torch layer: its name, its own argument names (-> torch's), the arguments it
    implies, the layers that follow it in torch, and the input rank it stands for when several torch layers
    share the name (BatchNormalization: BatchNorm1d for (N, F) and (N, C, L), BatchNorm2d for maps, ...)."""

    name: str
    renames: tuple[tuple[str, str], ...] = ()
    implied: tuple[tuple[str, Any], ...] = ()
    after: tuple[str, ...] = ()
    ranks: tuple[int, ...] = ()


@dataclass
class ErrorExample:
    """Arguments and a per-sample input that torch refuses, and the diagnostic code dlspec must give."""

    args: dict[str, Any]
    input: tuple[int, ...]
    code: str
    dtype: str = "float"


@dataclass
class LayerType:
    name: str
    args: dict[str, Arg]
    infer: Callable[..., TT]
    family: str = "misc"
    params: Callable[[dict[str, Any]], int] = lambda a: 0
    # values of the state that is not trained (BatchNorm's running mean, variance and batch count): in the
    # state dict and the checkpoint, not in the parameter count
    buffers: Callable[[dict[str, Any]], int] = lambda a: 0
    # values per sample that training keeps for the backward pass, when more than the output (None: the
    # output's): a recurrent layer keeps each step's gates (memory.estimate, the table's activation line)
    saved: Callable[[dict[str, Any], Shape, Shape], Dim] | None = None
    macs: Callable[[dict[str, Any], Shape, Shape], Dim] = lambda a, x, y: 0
    build: Callable[..., Any] | None = None  # (args, children_modules) -> nn.Module; None: torch.nn.<name>
    label: Callable[[dict[str, Any]], str] | None = None  # short label for arithmetic notes ('conv3')
    summary: Callable[[dict[str, Any]], str] | None = None  # one line for the table
    examples: list[Example] = field(default_factory=list)
    structural: bool = False  # not a torch class: dlspec provides the module
    children: tuple[str, ...] = ()  # argument names holding nested layer lists
    positional: str | None = None  # `- Reshape: [1, 28, 28]` fills this argument (default: see main_arg)
    doc: str = ""
    torch_min: str | None = None  # oldest torch that has the class, when newer than our floor
    arity: int = 1  # how many tensors it reads: 1, 2, or 0 for "two or more" (the merges: Add, Concatenate, ...)
    # what the stages ask of a layer, said here rather than inferred from its family elsewhere
    prefix: str = ""  # its module's name in the built model: conv1, fc2, ... ("" -> the type's name, lower case)
    keeps_channels: bool = False  # gives as many channels as it receives (activations, norms, pools, dropout)
    reads_maps: bool = False  # reads channels-first feature maps (convolutions, pools): a channels-last input is said
    reshapes: bool = False  # lays the tensor out anew (Flatten, Reshape, ...): chained warnings start over after it
    passthrough: bool = False  # the identity when evaluating (Identity, dropout): not "the last layer" of a model
    mixes_steps: bool = False  # mixes the time steps of a sequence (recurrent layers, attention)
    per_step: Callable[[dict[str, Any]], bool] | bool = False  # maps each time step alone (generation steps through)
    stateful: bool = False  # carries a state from step to step (its module has step(x, state))
    keras: tuple[KerasName, ...] = ()  # the Keras layer names that stand for it (reported with it as the fix)
    errors: list[ErrorExample] = field(default_factory=list)  # arguments and inputs torch refuses, and dlspec's code


    @property
    def reads_list(self) -> bool:
        """A bare list after its name is what it reads (`- Add: [-1, skip]`, `- Reparameterize: [mu, logvar]`): a
        merge, or a two-input type without arguments (the list can mean nothing else)."""
        return self.arity == 0 or (self.arity == 2 and not self.args)

    @property
    def main_arg(self) -> str | None:
        """The argument a bare value fills (`- MaxPool2d: 2`): `positional`, else the first required one."""
        if self.positional:
            return self.positional
        return next((n for n, a in self.args.items() if a.required), None)


REGISTRY: dict[str, LayerType] = {}
_LOWER: dict[str, str] = {}


def register(entry: LayerType) -> LayerType:
    if entry.name in REGISTRY:
        raise ValueError(f"layer type {entry.name} registered twice")
    REGISTRY[entry.name] = entry
    _LOWER[entry.name.lower()] = entry.name
    return entry


def lookup(name: str) -> LayerType | None:
    real = _LOWER.get(name.lower())
    return REGISTRY[real] if real else None


def names() -> list[str]:
    return sorted(REGISTRY)


def prod(xs: Any) -> int:
    return math.prod(xs)


class FloatList(Kind):
    text = "a list of positive numbers"

    def check(self, v: Any) -> str | None:
        if isinstance(v, list) and v and all(isinstance(e, (int, float)) and not isinstance(e, bool) and e > 0
                                             and math.isfinite(e) for e in v):
            return None
        return f"must be {self.text}"

    def normalize(self, v: Any) -> Any:
        return tuple(float(e) for e in v)
