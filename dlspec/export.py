"""Stage 5, export: a built spec as plain PyTorch source, ONNX, TorchScript or a torch.export ExportedProgram.

The python form is one standalone file: an nn.Module class per network whose __init__ holds the layers under
dlspec.build's names (the same state_dict keys, so a dlspec checkpoint's weights load into it as they are) and
whose forward spells out the data flow one line per layer, each with the shape the checker inferred in a
comment.  Containers (blocks, Residual, Concat) keep their layers, as in dlspec.build's model; forward calls
those layers one by one, so every line has its shape.  The few dlspec modules torch.nn lacks (Residual, Last,
Reshape, SelfAttention, ...) are copied into the file from dlspec/modules.py: it imports only torch.

The other forms trace the model on an example batch (export.example_inputs): the batch axis and the spec's
symbolic sizes stay dynamic where torch.export can keep them so (export_program says which did).
"""

from __future__ import annotations

import builtins
import contextlib
import functools
import inspect
import keyword
import math
import os
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from . import dims, safeio
from .builder import ctor_args, layout
from .infer import Checked, Row

FORMATS = ("python", "onnx", "torchscript", "exported-program")
SUFFIX = {"python": ".py", "onnx": ".onnx", "torchscript": ".torchscript.pt", "exported-program": ".pt2"}
_RECURRENT = ("RNN", "LSTM", "GRU")


def _merge(name: str, module: Any, xs: list[str]) -> str | None:
    """A merge of several tensors as the torch expression it computes (the same operations in the same order as
    dlspec/modules.py's), or None for another module.  Spelled out, a graph spec's forward scripts with
    TorchScript (which refuses the modules' *xs) and reads as hand-written code."""
    if name == "Add":
        return " + ".join(xs)
    if name == "Multiply":
        return " * ".join(xs)
    if name == "Maximum":
        out = xs[0]
        for x in xs[1:]:
            out = f"torch.maximum({out}, {x})"
        return out
    if name == "Concatenate":
        return f"torch.cat([{', '.join(xs)}], dim={_value(module.dim)})"
    if name == "Average":
        return f"torch.stack(torch.broadcast_tensors({', '.join(xs)})).mean(0)"
    return None


def _is_merge(module: Any) -> bool:
    from . import modules

    return type(module).__module__ == modules.__name__ and _merge(type(module).__name__, module, ["x"]) is not None
ONNX_MAX_BYTES = 2**31 - 1  # what one protobuf message (an ONNX file without external data) can hold
TOLERANCE = 1e-3  # the largest output difference from dlspec.build an export may show (float32 reordering: ~1e-6)
_COMMENT_COLUMN = 64  # where the shape comments of forward start (a longer line puts its comment after it)


class ExportError(Exception):
    """Why a model cannot be exported in the asked form (one line, for the user)."""


def class_name(name: str) -> str:
    """A spec's name as a Python class name: LeNet stays LeNet, lstm_rows becomes LstmRows (ASCII letters and
    digits only, whatever the name holds; see _class_names for the names the file itself takes)."""
    parts = [p for p in re.split(r"[^0-9A-Za-z]+", name) if p]
    out = "".join(p[:1].upper() + p[1:] for p in parts)[:_CLASS_NAME_MAX] or "Model"
    return "Model" + out if out[0].isdigit() else out


_CLASS_NAME_MAX = 64  # a class name made from a spec's name is cut here (the name itself is free text)


# --- what the spec puts into the file: each piece through one of these ------------------------------------
# A spec's `name:` is free text and a path on the command line any text: neither is ever pasted into the source.
# Names become identifiers (class_name, _Source.fresh, _attr: checked, else a string key), text a literal whose
# value is that text (_docstring, repr) or a comment that cannot end early (_comment), values repr()s (_value).

def _text(s: str) -> str:
    """Text as one printable line: a newline, any control or format character (bidi overrides), a lone surrogate
    written as its escape (\\n, \\u202e, \\udc80), as repr() writes them."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape", "backslashreplace").decode("ascii")
                   for c in s)


def _docstring(text: str) -> str:
    """A triple-quoted literal of `text`: its lines kept, each made printable by _text, backslashes and double
    quotes escaped, so nothing in it can end it early."""
    body = "\n".join(_text(line) for line in text.split("\n"))
    return '"""' + body.replace("\\", "\\\\").replace('"', '\\"') + '"""'


def _comment(text: str) -> str:
    """A `# ...` comment of one line, whatever text holds."""
    return "# " + _text(text)


def _plain(name: str) -> bool:
    """Whether `name` can be written as itself in code as an attribute or variable name: an identifier, not a
    keyword, as Python reads it (NFKC), and not private (`__x` in a class body would be mangled to _C__x)."""
    return (name.isidentifier() and not keyword.iskeyword(name) and unicodedata.normalize("NFKC", name) == name
            and not name.startswith("__"))


# the names the file defines or imports at its top level (but for its own classes): no class or variable of
# the spec's may take one
_TOP_NAMES = frozenset({"annotations", "OrderedDict", "Path", "Any", "torch", "nn", "load"})
_BUILTINS = frozenset(dir(builtins))


@functools.cache
def _taken() -> frozenset[str]:
    """What no generated name may be: keywords, builtins, what the file imports or defines at its top level
    (dlspec.modules' classes and functions, which it copies in)."""
    from . import modules

    return frozenset(keyword.kwlist) | frozenset(keyword.softkwlist) | _BUILTINS | _TOP_NAMES | frozenset(vars(modules))


# --- the python source ---------------------------------------------------------------------------------

@dataclass
class _Source:
    helpers: list[str] = field(default_factory=list)  # dlspec.modules names the file needs, first use first
    names: set[str] = field(default_factory=set)  # the local variables forward has used

    def helper(self, name: str) -> str:
        if name not in self.helpers:
            self.helpers.append(name)
        return name

    def fresh(self, base: str) -> str:
        """A new local variable of forward named after `base` (a layer's or input's name): an identifier as
        Python reads it, no keyword, builtin or top-level name of the file, and none used before (numbered)."""
        base = re.sub(r"\W", "_", unicodedata.normalize("NFKC", base)) or "v"
        if base[0].isdigit():
            base = "v" + base
        if base in _taken() or base in ("self", "x"):
            base += "_"
        name, n = base, 1
        while name in self.names:
            n += 1
            name = f"{base}{n}"
        self.names.add(name)
        return name


def _attr(path: str, key: str) -> str:
    """path.key, or getattr(path, 'key') for a key that is no plain name in code (a keyword, ...)."""
    return f"{path}.{key}" if _plain(key) else f"getattr({path}, {key!r})"


def _value(v: Any) -> str:
    """A constructor argument as a Python literal (numbers, text, booleans, None, tuples of them); ExportError
    for any other value (none reaches here: the registry's kinds)."""
    if isinstance(v, (list, tuple)):
        items = ", ".join(_value(x) for x in v)
        return f"({items},)" if len(v) == 1 else f"({items})"
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else f"float({str(v)!r})"
    if v is None or isinstance(v, (bool, int, str)):
        return repr(v)
    raise ExportError(f"a {type(v).__name__} argument has no export")


def _torch_class(module: Any, src: _Source) -> str:
    """The name the file writes for a module's class: nn.X for torch's, the copied helper's otherwise."""
    import torch.nn as nn

    from . import modules

    cls = type(module)
    if cls.__module__ == modules.__name__:
        if cls.__name__ in _RECURRENT:
            return f"nn.{cls.__name__}"  # forward unpacks (output, state) itself: TorchScript can script it
        if cls is modules.SpecModel:
            return "nn.Sequential"
        return src.helper(cls.__name__)
    if getattr(nn, cls.__name__, None) is cls:
        return f"nn.{cls.__name__}"
    raise ExportError(f"a {cls.__module__}.{cls.__name__} module has no export")


def _call_args(cls_expr: str, module: Any, kwargs: dict[str, Any]) -> str:
    """`Conv2d(1, 6, kernel_size=5)`: the first two required parameters positionally (a kernel size after the
    channels by name), the rest by name."""
    try:
        params = list(inspect.signature(type(module).__init__).parameters.values())[1:]
    except (TypeError, ValueError):
        params = []
    parts, rest = [], dict(kwargs)
    for i, p in enumerate(params[:2]):  # Linear(400, 120), Conv2d(1, 6, kernel_size=5), AvgPool2d(2, stride=2)
        if p.kind is not p.POSITIONAL_OR_KEYWORD or p.default is not p.empty or p.name not in rest or (
                i and p.name == "kernel_size"):
            break
        parts.append(rest.pop(p.name))
    return f"{cls_expr}(" + ", ".join([*parts, *(f"{k}={v}" for k, v in rest.items())]) + ")"


def _ctor(row: Row, module: Any, src: _Source, indent: str) -> str:
    """The expression that constructs one row's module (its children's lists nested, indented)."""
    if row.entry.name == "Sequential" and "layers" in row.children:
        return _list_ctor(row.children["layers"], module, src, indent)
    kwargs = {k: _value(v) for k, v in ctor_args(row).items()}
    for name, kids in row.children.items():
        child = getattr(module, name)
        if kids and isinstance(kids[0], list):
            inner = indent + "    "
            items = [_list_ctor(b, child[i], src, inner + "    ") for i, b in enumerate(kids)]
            kwargs[name] = "[\n" + "".join(f"{inner}    {it},\n" for it in items) + f"{inner}]"
        else:
            kwargs[name] = _list_ctor(kids, child, src, indent + "    ")
    return _call_args(_torch_class(module, src), module, kwargs)


def _list_ctor(rows: list[Row], module: Any, src: _Source, indent: str) -> str:
    """nn.Sequential(OrderedDict(...)) of a layer list, or the copied Graph for a list that reads named tensors."""
    from .modules import Graph

    steps, _ = layout(rows)
    if not steps:
        return "nn.Sequential()"
    inner = indent + "    "
    items = "".join(f"{inner}({key!r}, {_ctor(row, getattr(module, key), src, inner)}),\n"
                    for key, row, *_ in steps)
    body = f"OrderedDict([\n{items}{indent}])"
    if isinstance(module, Graph):
        return (f"{src.helper('Graph')}({body}, steps={module.steps!r}, inputs={module.input_names!r}, "
                f"outputs={module.output_names!r})")
    return f"nn.Sequential({body})"


@dataclass
class _Forward:
    src: _Source
    lines: list[tuple[str, str]] = field(default_factory=list)  # (code, shape comment)

    def emit(self, code: str, comment: str = "") -> None:
        self.lines.append((code, comment))

    def flow(self, rows: list[Row], module: Any, path: str, inputs: dict[str, str], chain: str,
             names: list[str] | None = None, outputs: list[str] | None = None) -> list[str]:
        """Write a layer list's lines; the variables that hold its outputs (the last one's, or `outputs:`'s)."""
        steps, _ = layout(rows, names, outputs)
        wanted = {r for _, _, refs, *_ in steps for r in (refs or [])} | set(outputs or [])
        env = dict(inputs)
        for n, var in inputs.items():  # an input read later must outlive the chain's first assignment
            if var == chain and n in wanted and steps:
                env[n] = self.src.fresh("saved")
                self.emit(f"{env[n]} = {var}")
        inputs = env
        at: dict[int, str] = {}
        cur = inputs["input"]
        for key, row, refs, pos, last, named in steps:
            args = [cur] if refs is None else [env[r] if isinstance(r, str) else at[r] for r in refs]
            out = chain
            if last and (pos in wanted or (named is not None and named in wanted)):
                out = self.src.fresh(named or key)
            cur = self.step(row, getattr(module, key), _attr(path, key), args, out)
            if last:
                at[pos] = cur
                if named is not None:
                    env[named] = cur
        if outputs:
            return [env[n] for n in outputs]
        return [cur]

    def step(self, row: Row, module: Any, path: str, args: list[str], out: str) -> str:
        """One row's lines, its output in `out` (an empty list leaves its input where it is: that is returned)."""
        from . import modules

        shape = _shape(row)
        if row.entry.name == "Sequential" and "layers" in row.children:
            got = self.flow(row.children["layers"], module, path, {"input": args[0]}, out)[0]
            if got != out:
                self.emit(f"{out} = {got}", shape)
            return out
        if isinstance(module, modules.Residual):
            x = args[0]
            if module.shortcut is not None:
                skip = self.flow(row.children["shortcut"], module.shortcut, f"{path}.shortcut", {"input": x},
                                 self.src.fresh("shortcut"))[0]
            else:
                skip = self.src.fresh("identity")
                self.emit(f"{skip} = {x}")
            body = self.flow(row.children["body"], module.body, f"{path}.body", {"input": x}, out)[0]
            self.emit(f"{out} = {skip} + {body}", shape)
            return out
        if isinstance(module, modules.Concat):
            parts = [self.flow(b, module.branches[i], f"{path}.branches[{i}]", {"input": args[0]},
                               self.src.fresh("branch"))[0] for i, b in enumerate(row.children["branches"])]
            self.emit(f"{out} = torch.cat([{', '.join(parts)}], dim={_value(module.dim)})", shape)
            return out
        merged = _merge(type(module).__name__, module, args) if type(module).__module__ == modules.__name__ else None
        if merged is not None:
            self.emit(f"{out} = {merged}", shape)
            return out
        if type(module).__name__ in _RECURRENT and type(module).__module__ == modules.__name__:
            self.emit(f"{out}, _ = {path}({', '.join(args)})", shape)
            return out
        self.emit(f"{out} = {path}({', '.join(args)})", shape)
        return out

    def render(self, indent: str) -> str:
        width = max((len(code) for code, c in self.lines if c and len(code) < _COMMENT_COLUMN), default=0)
        out = []
        for code, comment in self.lines:
            out.append(f"{indent}{code:<{width}}  {_comment(comment)}" if comment else f"{indent}{code}")
        return "\n".join(line.rstrip() for line in out)


def _shape(row: Row) -> str:
    if row.output is None:
        return ""
    return dims.fmt_shape(row.output.shape) + (" long" if row.output.dtype == "long" else "")


def _input_note(checked: Checked) -> str:
    parts = [(f"{n} " if len(checked.spec.inputs) > 1 else "") + dims.fmt_shape(t.shape) + (" long (token ids)" if t.dtype == "long" else "")
             for n, t in checked.spec.inputs.items()]
    return ", ".join(parts)


def _set_module(path: str, key: str, ctor: str, indent: str) -> str:
    """The line of __init__ that makes a module an attribute: self.key = ..., or self.add_module('key', ...)
    for a key that is no plain name in code."""
    if _plain(key):
        return f"{indent}{path}.{key} = {ctor}\n"
    return f"{indent}{path}.add_module({key!r}, {ctor})\n"


def network_class(checked: Checked, model: Any, cls: str, src: _Source) -> str:
    """The class of one network: __init__ with its layers, forward one line per layer."""
    steps, _ = layout(checked.rows, list(checked.spec.inputs), checked.spec.outputs)
    graphy = any(refs for _, _, refs, *_ in steps) or len(checked.spec.inputs) > 1
    # the merges are expressions in forward; they hold no state (the state_dict is dlspec.build's all the same)
    steps = [s for s in steps if not _is_merge(getattr(model, s[0]))]
    init = "".join(_set_module("self", key, _ctor(row, getattr(model, key), src, "        "), "        ")
                   for key, row, *_ in steps)
    fw = _Forward(src)
    src.names = set()
    params: dict[str, str] = {}
    for n in checked.spec.inputs:
        params[n] = src.fresh(n if len(checked.spec.inputs) > 1 else "x0") if graphy else "x"
    inputs = dict(params)
    inputs["input"] = next(iter(params.values()))
    outs = fw.flow(checked.rows, model, "self", inputs, "x", list(checked.spec.inputs), checked.spec.outputs)
    ret = outs[0] if len(outs) == 1 else "(" + ", ".join(outs) + ")"
    out_note = ", ".join(dims.fmt_shape(t.shape) for _, t in checked.outputs if t is not None) if checked.outputs \
        else (dims.fmt_shape(checked.output.shape) if checked.output is not None else "?")
    sig = ", ".join(f"{p}: torch.Tensor" for p in params.values())
    rtype = "torch.Tensor" if len(outs) == 1 else f"tuple[{', '.join(['torch.Tensor'] * len(outs))}]"
    return (f"class {cls}(nn.Module):\n"
            f"    {_docstring(f'{_text(checked.spec.name)}: input {_input_note(checked)}, output {out_note}.')}\n\n"
            f"    def __init__(self) -> None:\n"
            f"        super().__init__()\n{init}\n"
            f"    def forward(self, {sig}) -> {rtype}:\n"
            f"{fw.render('        ')}\n"
            f"        return {ret}\n")


def _helper_sources(names: list[str]) -> str:
    """The source of the dlspec.modules classes (and functions) the file uses, with what they use in turn."""
    from . import modules

    own = {n: v for n, v in vars(modules).items()
           if getattr(v, "__module__", None) == modules.__name__ and (inspect.isclass(v) or inspect.isfunction(v))}
    order: list[str] = []

    def need(name: str) -> None:
        if name in order:
            return
        obj = own[name]
        text = inspect.getsource(obj)
        for base in getattr(obj, "__bases__", ()):
            if base.__module__ == modules.__name__:
                need(base.__name__)
        for other in own:
            if other != name and re.search(rf"\b{other}\b", text):
                need(other)
        order.append(name)

    for n in names:
        need(n)
    return "\n\n".join(inspect.getsource(own[n]).rstrip() + "\n" for n in order)


def _class_names(checked: Checked) -> tuple[str, dict[str | None, str]]:
    """The file's classes: the spec's (its name as a class name) and each network's (None: a spec of one
    network has one class).  None of them is a name the file takes otherwise (a helper it copies, Path, a
    builtin), and no two are the same: the one that would be gets a suffix (ResidualModel, GenA2)."""
    used = set(_taken())

    def pick(base: str, suffix: str) -> str:
        if base in used:
            base += suffix
        name, n = base, 1
        while name in used:
            n += 1
            name = f"{base}{n}"
        used.add(name)
        return name

    top = pick(class_name(checked.spec.name), "Model")
    if not checked.networks:
        return top, {None: top}
    return top, {n: pick(class_name(n), "Network") for n in checked.networks}


def top_class(checked: Checked) -> str:
    """The name of the class the exported python file gives for the whole model (load() makes one)."""
    return _class_names(checked)[0]


def _string(text: str) -> str:
    """A string literal of `text` (repr()'s, in double quotes where it can be)."""
    r = repr(text)
    return '"' + r[1:-1] + '"' if r[0] == "'" and '"' not in text else r


def python_source(checked: Checked, model: Any, source: str, weights: str | None, filename: str = "model.py") -> str:
    """The standalone .py file of a built spec (`model` is what dlspec.build gave for `checked`); `weights` the
    file name of the sibling state dict that load() reads by default (None: fresh weights); `filename` the
    file's own name (its docstring says how to run it); `source` the spec's path (the docstring says so too).
    The spec's name and these paths are free text: they are in the file as literals (_docstring, _string) only."""
    from . import __version__

    src = _Source()
    top, names = _class_names(checked)
    nets: list[tuple[str | None, Checked]] = [*checked.networks.items()] or [(None, checked)]
    classes = [network_class(net, model[name] if name is not None else model, names[name], src) for name, net in nets]
    if checked.networks:
        fields = "".join(_set_module("self", n, f"{names[n]}()", "        ") for n in checked.networks)
        doc = _docstring(f"The networks of {_text(checked.spec.name)} (each its own module, called on its own).")
        classes.append(f"class {top}(nn.Module):\n    {doc}\n\n"
                       f"    def __init__(self) -> None:\n        super().__init__()\n{fields}")
    helpers = _helper_sources(src.helpers)
    default = f"Path(__file__).with_name({_string(weights)})" if weights else "None"
    demo = _demo(checked)
    head = _docstring(f"{_text(checked.spec.name)}, exported by dlspec {__version__} from {_text(source)}: plain "
                      "PyTorch, no dlspec import.\n\n"
                      + (f"Weights: {_text(weights)} beside this file (load() reads it).\n" if weights else
                         "Weights: fresh (torch's initialisation); export with --checkpoint to ship trained ones.\n")
                      + f"Try it: python {_text(filename)} (a random batch through the model).  In code: model = "
                      "load().\n") + "\n"
    body = helpers + "\n".join(classes)
    stdlib = [line for line, used in (("from collections import OrderedDict", "OrderedDict(" in body),
                                       ("from pathlib import Path", True),
                                       ("from typing import Any", re.search(r"\bAny\b", body) is not None)) if used]
    parts = [head, "from __future__ import annotations\n", "\n".join(stdlib) + "\n", "import torch\nfrom torch import nn\n"]
    if helpers:
        parts.append("\n# --- from dlspec/modules.py: the modules torch.nn lacks " + "-" * 40 + "\n\n" + helpers)
    parts.append("\n" + "\n\n".join(classes))
    parts.append(f"\n\ndef load(weights: str | Path | None = {default}) -> {top}:\n"
                 f'    """The model, with the state dict in `weights` when given (None: fresh weights)."""\n'
                 f"    model = {top}()\n"
                 f"    if weights is not None:\n"
                 f'        model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))\n'
                 f"    return model\n")
    parts.append(demo)
    return "\n".join(parts).replace("\n\n\n\n", "\n\n\n")


def _demo(checked: Checked) -> str:
    nets: list[tuple[str | None, Checked]] = [*checked.networks.items()] or [(None, checked)]
    lines = ['\n\nif __name__ == "__main__":', "    model = load().eval()"]
    for name, net in nets:
        args = []
        bindings = symbol_values(net)
        for t in net.spec.inputs.values():
            shape = ", ".join(_value(int(dims.evaluate(d, bindings))) for d in t.shape)
            if t.dtype == "long":
                args.append(f"torch.randint(0, {_value(vocab(net))}, (2, {shape}))")
            else:
                args.append(f"torch.randn(2, {shape})")
        target = _attr("model", name) if name is not None else "model"
        lines.append("    with torch.no_grad():")
        lines.append(f"        y = {target}({', '.join(args)})")
        lines.append("    print(" + (f"{_string(name)}, " if name is not None else "") +
                     "[tuple(t.shape) for t in y] if isinstance(y, tuple) else tuple(y.shape))")
    return "\n".join(lines) + "\n"


# --- example inputs: what the traced forms are traced on --------------------------------------------------

def symbol_values(checked: Checked, sizes: dict[str, int] | None = None) -> dict[str, int]:
    """A value for each symbolic size of the inputs: the smallest multiple of its `divisible_by` from 6 up, and
    twice the divisor at least (a size of 0 or 1, here or after a division, torch.export makes a constant)."""
    out = {}
    for t in checked.spec.inputs.values():
        for d in t.shape:
            for s in sorted(dims.symbols(d)):
                k = checked.spec.symbols.get(s, 1) or 1
                out[s] = k * max(2, -(-6 // k))
    return {**out, **{k: v for k, v in (sizes or {}).items() if k in out}}


def vocab(checked: Checked) -> int:
    """The ids a long input may hold: the smallest Embedding's num_embeddings (2 without an Embedding)."""
    return min((r.args["num_embeddings"] for r in checked.all_rows() if r.entry.name == "Embedding"), default=2)


def example_inputs(checked: Checked, batch: int = 2, bindings: dict[str, int] | None = None, seed: int = 0) -> tuple:
    """A random batch for each input of one network (token ids below the vocabulary for long inputs); the
    symbolic sizes `bindings` (default: symbol_values)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    bindings = bindings if bindings is not None else symbol_values(checked)
    out = []
    for t in checked.spec.inputs.values():
        shape = (batch, *(int(dims.evaluate(d, bindings)) for d in t.shape))
        out.append(torch.randint(0, vocab(checked), shape, generator=g) if t.dtype == "long" else
                   torch.randn(*shape, generator=g))
    return tuple(out)


def _example(net: Checked, sizes: dict[str, int] | None) -> tuple:
    return example_inputs(net, bindings=symbol_values(net, sizes))


def dynamic_axes(checked: Checked) -> list[dict[int, str]]:
    """Per input, its dynamic axes by name: 0 the batch, and each axis whose size is a symbol (T, ...)."""
    out = []
    for t in checked.spec.inputs.values():
        axes = {0: "batch"}
        for i, d in enumerate(t.shape, 1):
            if not isinstance(d, int):
                axes[i] = dims.fmt(d)
        out.append(axes)
    return out


# --- writing and checking each form ---------------------------------------------------------------------

@dataclass
class Written:
    """One exported file and what its check found: the largest difference from dlspec.build's outputs."""

    path: str
    what: str
    difference: float | None = None  # None: not checked (note says why)
    note: str = ""


def load_python(path: str) -> Any:
    """An exported .py file as a module (its classes, load()): for a file the user has; the export's own check
    never imports a file (source_module runs the text it generated)."""
    import importlib.util
    import sys

    name = f"dlspec_export_{abs(hash(path))}_{class_name(path.rsplit('/', 1)[-1].split('.')[0]).lower()}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ExportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # TorchScript reads the classes' source through the module
    spec.loader.exec_module(module)
    return module


_SERIAL = iter(range(1, 1 << 62))


@contextlib.contextmanager
def source_module(text: str) -> Iterator[Any]:
    """The python source `text` (python_source's) run as a module: compiled from the string itself, never read
    back from a file (which anything may have changed since it was written).  Its lines are in linecache under a
    name no file has, so inspect and TorchScript read the classes' source as from a file."""
    import linecache
    import sys
    import types

    name = f"dlspec_export_{next(_SERIAL)}"
    filename = f"<{name}>"
    linecache.cache[filename] = (len(text), None, text.splitlines(keepends=True), filename)
    module = types.ModuleType(name)
    module.__file__ = filename
    sys.modules[name] = module  # TorchScript resolves the classes' globals through the module
    try:
        exec(compile(text, filename, "exec"), module.__dict__)  # noqa: S102 - the text generated here, from checked pieces
        yield module
    finally:
        sys.modules.pop(name, None)
        linecache.cache.pop(filename, None)


def _outputs(y: Any) -> list[Any]:
    return list(y) if isinstance(y, (tuple, list)) else [y]


def max_difference(a: Any, b: Any) -> float:
    """The largest absolute difference between two outputs (tensors or tuples of them); inf when they differ in
    number or shape."""
    import numpy as np

    xs, ys = _outputs(a), _outputs(b)
    if len(xs) != len(ys):
        return math.inf
    worst = 0.0
    for x, y in zip(xs, ys, strict=True):
        x = x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)
        y = y.detach().cpu().numpy() if hasattr(y, "detach") else np.asarray(y)
        if x.shape != y.shape:
            return math.inf
        if x.size:
            worst = max(worst, float(np.max(np.abs(x.astype(np.float64) - y.astype(np.float64)))))
    return worst


def _networks(checked: Checked, model: Any) -> list[tuple[str | None, Checked, Any]]:
    if checked.networks:
        return [(n, net, model[n]) for n, net in checked.networks.items()]
    return [(None, checked, model)]


def _other_batch(net: Checked, sizes: dict[str, int] | None, fixed: set[str] | frozenset[str] = frozenset()) -> tuple:
    """The check's batch: another batch size, and other symbolic sizes, than the traced one (but for the axes
    in `fixed`: those the exported form made constants)."""
    bindings = {s: v + (0 if s in fixed else net.spec.symbols.get(s, 1) or 1)
                for s, v in symbol_values(net, sizes).items()}
    return example_inputs(net, batch=2 if "batch" in fixed else 3, bindings=bindings, seed=1)


def weights_path(path: str) -> str:
    """The state dict shipped beside an exported .py file: lenet.py -> lenet.pt."""
    return os.path.splitext(path)[0] + ".pt"


def destinations(checked: Checked, fmt: str, path: str, weights: bool = False) -> list[str]:
    """The files an export to `path` writes: the .py (and its .pt with `weights`), or a file per network."""
    if fmt == "python":
        return [path] + ([weights_path(path)] if weights else [])
    return [_per_network(path, name) for name in checked.networks] or [path]


def write_python(checked: Checked, model: Any, path: str, source: str, state: dict[str, Any] | None,
                 sizes: dict[str, int] | None = None) -> list[Written]:
    """The .py file (and, with `state`, the sibling .pt it loads), checked before either is written: the same
    parameter count and, with dlspec.build's weights, the same outputs on a random batch.  Both files land or
    neither does (safeio.write_together; WriteError)."""
    import io

    import torch

    weights = weights_path(path) if state is not None else None
    text = python_source(checked, model, source, os.path.basename(weights) if weights else None,
                         os.path.basename(path))
    difference, note = check_python(checked, model, text, sizes)
    files: list[tuple[str, bytes | memoryview]] = [(path, text.encode("utf-8"))]
    out = [Written(path, "python source", difference, note)]
    if weights is not None:
        buf = io.BytesIO()
        torch.save(state, buf)
        files.append((weights, buf.getbuffer()))
        out.append(Written(weights, "state dict"))
    safeio.write_together(files)
    return out


def check_python(checked: Checked, model: Any, text: str, sizes: dict[str, int] | None = None) -> tuple[float, str]:
    """(largest output difference, what was compared) of exported python source (the text itself, run in
    memory) against the built model."""
    import torch

    with source_module(text) as mod:
        top = getattr(mod, top_class(checked))()
    n_built = sum(p.numel() for p in model.parameters())
    n_file = sum(p.numel() for p in top.parameters())
    if n_built != n_file:
        raise ExportError(f"the exported source has {n_file:,} parameters, dlspec.build's model {n_built:,}")
    top.load_state_dict(model.state_dict())
    top.eval()
    worst = 0.0
    with torch.no_grad():
        for name, net, built in _networks(checked, model):
            x = _other_batch(net, sizes)
            worst = max(worst, max_difference(built.eval()(*x), (getattr(top, name) if name else top)(*x)))
    return worst, f"{n_file:,} parameters, outputs on a random batch of 3"


@contextlib.contextmanager
def generated(checked: Checked, model: Any, source: str) -> Iterator[Any]:
    """The exported python module of `checked` (its source run in memory, source_module), holding `model`'s
    weights, in eval mode: what the traced forms trace (its forward has named inputs, TorchScript can script it)."""
    with source_module(python_source(checked, model, source, None)) as mod:
        top = getattr(mod, top_class(checked))()
        top.load_state_dict(model.state_dict())
        yield top.eval()


def write_torchscript(checked: Checked, model: Any, path: str, source: str,
                      sizes: dict[str, int] | None = None) -> list[Written]:
    """A TorchScript archive (torch.jit.load) per network: torch.jit.script of the exported python module,
    or, where scripting refuses it, torch.jit.trace on a batch of 2 (the note says so).  Each is made and
    checked in memory, then all are written together (safeio.write_together)."""
    import io
    import warnings

    import torch

    out, files = [], []
    with generated(checked, model, source) as top:
        for name, net, built in _networks(checked, model):
            target = getattr(top, name) if name else top
            dest = _per_network(path, name)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    scripted, how = torch.jit.script(target), "scripted"
                except Exception as e:  # noqa: BLE001 - what TorchScript cannot compile: trace instead
                    with torch.no_grad():
                        scripted = torch.jit.trace(target, _example(net, sizes), check_trace=False)
                    how = f"traced on a batch of 2 (torch.jit.script refused: {_first_line(e)[:100]})"
                buf = io.BytesIO()
                torch.jit.save(scripted, buf)
                data = buf.getvalue()
                loaded = torch.jit.load(io.BytesIO(data))
            x = _other_batch(net, sizes)
            with torch.no_grad():
                diff = max_difference(built.eval()(*x), _run(loaded, x))
            files.append((dest, data))
            out.append(Written(dest, f"TorchScript, {how}", diff, "outputs on a batch of 3 (torch.jit.load)"))
    safeio.write_together(files)
    return out


def _per_network(path: str, name: str | None) -> str:
    """The file of one network of several: lenet.onnx -> dcgan.generator.onnx."""
    if name is None:
        return path
    for suffix in sorted(SUFFIX.values(), key=len, reverse=True):
        if path.endswith(suffix):
            return path[: -len(suffix)] + f".{name}" + suffix
    return path + f".{name}"


def _dynamic_shapes(net: Checked) -> tuple:
    import torch

    return tuple({axis: torch.export.Dim.AUTO for axis in axes} for axes in dynamic_axes(net))


def _dynamic_note(ep: Any, net: Checked) -> tuple[str, set[str]]:
    """Which of the wanted dynamic axes the exported program kept dynamic (torch.export makes an axis a constant
    when the model needs it to be one, e.g. a size a Reshape fixes)."""

    placeholders = [n for n in ep.graph.nodes if n.op == "placeholder" and n.name not in ep.graph_signature.parameters
                    and n.name not in ep.graph_signature.buffers]
    inputs = [n for n in placeholders if n.name in ep.graph_signature.user_inputs]
    kept, fixed, sizes = [], [], []
    for node, axes in zip(inputs, dynamic_axes(net), strict=False):
        val = node.meta.get("val")
        for axis, label in axes.items():
            size = val.shape[axis] if val is not None and axis < val.dim() else None
            if _symbolic(size, ep):
                kept.append(label)
            else:
                fixed.append(label)
                sizes.append(f"{label}={int(size)}" if size is not None else label)
    note = "dynamic: " + (", ".join(kept) or "none")
    return note + (f"; fixed by torch.export at {', '.join(sizes)} (--size changes it)" if fixed else ""), set(fixed)


def _symbolic(size: Any, ep: Any) -> bool:
    """Whether an input size of an exported program is still a free symbol (not a constant, nor a symbol whose
    range allows one value)."""
    import torch

    if not isinstance(size, torch.SymInt):
        return False
    expr = size.node.expr
    if getattr(expr, "is_number", False):
        return False
    vr = ep.range_constraints.get(expr)
    return vr is None or vr.lower != vr.upper


def export_program(module: Any, net: Checked, what: str, sizes: dict[str, int] | None = None,
                   example: tuple | None = None) -> tuple[Any, str, set[str]]:
    """torch.export.export of one network's module on `example` (example_inputs by default), the batch and
    symbolic sizes dynamic where the model allows: (program, a note on which stayed dynamic, the labels of
    those made constant)."""
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ep = torch.export.export(module, example if example is not None else _example(net, sizes),
                                     dynamic_shapes=_dynamic_shapes(net))
        except Exception as e:  # noqa: BLE001 - torch.export's refusal, in one line
            raise ExportError(f"torch.export cannot export {what}: {_first_line(e)}") from None
    note, fixed = _dynamic_note(ep, net)
    return ep, note, fixed


def write_exported_program(checked: Checked, model: Any, path: str, source: str,
                           sizes: dict[str, int] | None = None) -> list[Written]:
    """A torch.export ExportedProgram (.pt2, torch.export.load) per network, of the exported python module, the
    batch and the symbolic sizes dynamic where the model allows (the note says which stayed so); made and
    checked in memory, then written together."""
    import io
    import warnings

    import torch

    out, files = [], []
    with generated(checked, model, source) as top:
        for name, net, built in _networks(checked, model):
            dest = _per_network(path, name)
            ep, note, fixed = export_program(getattr(top, name) if name else top, net, name or checked.spec.name, sizes)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                buf = io.BytesIO()
                torch.export.save(ep, buf)
                data = buf.getvalue()
                loaded = torch.export.load(io.BytesIO(data)).module()
            x = _other_batch(net, sizes, fixed)
            with torch.no_grad():
                diff = max_difference(built.eval()(*x), _run(loaded, x))
            files.append((dest, data))
            out.append(Written(dest, f"ExportedProgram ({note})", diff,
                               f"outputs on a batch of {x[0].shape[0]} (torch.export.load)"))
    safeio.write_together(files)
    return out


def _run(fn: Any, x: tuple) -> Any:
    try:
        return fn(*x)
    except Exception as e:  # noqa: BLE001 - a size the exported form fixed: the check says so
        raise ExportError(f"the exported model does not run on a batch of {x[0].shape[0]}: {_first_line(e)}") from None


def _first_line(e: BaseException) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(e)).strip()
    return (text.splitlines()[0][:200] if text else type(e).__name__)


def write_onnx(checked: Checked, model: Any, path: str, source: str,
               sizes: dict[str, int] | None = None) -> list[Written]:
    """An ONNX model per network (torch.onnx.export, the dynamo exporter: the `onnx` extra) of the exported
    python module, its batch and symbolic sizes dynamic axes named batch, T, ...; checked with onnxruntime, in
    memory, then written together."""
    import io
    import warnings

    import torch

    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError:
        raise ExportError("ONNX export needs the onnx packages: pip install 'dlspec[onnx]' "
                          "(onnx, onnxscript, onnxruntime)") from None
    out, files = [], []
    with generated(checked, model, source) as top:
        for name, net, built in _networks(checked, model):
            dest = _per_network(path, name)
            outputs = [n for n, _ in net.outputs] or ["output"]
            # through torch.export: the program says which sizes the model made constants (an RNN unrolled over
            # T steps), and the ONNX inputs then say so too, instead of accepting another T and computing garbage
            example = _example(net, sizes)  # (one batch: the program, the exporter and the axes' sizes)
            ep, _, fixed = export_program(getattr(top, name) if name else top, net, name or checked.spec.name, sizes,
                                          example)
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), _quiet("torch.onnx"):
                warnings.simplefilter("ignore")
                try:
                    program = torch.onnx.export(ep, example, None, dynamo=True, external_data=False,
                                                input_names=list(net.spec.inputs), output_names=outputs, verbose=False)
                    proto = program.model_proto if program is not None else None
                except Exception as e:  # noqa: BLE001 - the exporter's refusal, in one line
                    raise ExportError(f"torch.onnx.export cannot export {name or checked.spec.name}: "
                                      f"{_first_line(e)}") from None
            if proto is None or proto.ByteSize() >= ONNX_MAX_BYTES:
                raise ExportError(f"the ONNX model of {name or checked.spec.name} is over 2 GB, more than one ONNX "
                                  "file holds (export it to exported-program or torchscript)")
            data, axes = _name_onnx_axes(proto.SerializeToString(), net, fixed, example)
            diff, note = _check_onnx(data, dest, built, net, fixed, sizes)
            files.append((dest, data))
            out.append(Written(dest, f"ONNX (dynamic axes: {axes})", diff, note))
    safeio.write_together(files)
    return out


@contextlib.contextmanager
def _quiet(name: str) -> Iterator[None]:
    """A logger's warnings off (torch.onnx's registry lists each torchvision operator it skips without it)."""
    import logging

    log = logging.getLogger(name)
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def _name_onnx_axes(data: bytes, net: Checked, fixed: set[str], example: tuple) -> tuple[bytes, str]:
    """The ONNX model (its bytes) with its symbolic axes given the spec's names (batch, T) in place of the
    exporter's (s0, s1), and the axes torch.export made constants their traced size; a note on which are dynamic."""
    import onnx

    m = onnx.load_from_string(data)
    rename: dict[str, str] = {}
    at: dict[str, int] = {}
    for i, (vi, axes) in enumerate(zip(m.graph.input, dynamic_axes(net), strict=False)):
        for axis, label in axes.items():
            d = vi.type.tensor_type.shape.dim[axis]
            if label in fixed:
                d.dim_value = at[label] = int(example[i].shape[axis])
            elif d.dim_param and d.dim_param not in rename:
                rename[d.dim_param] = label
    for vi in [*m.graph.input, *m.graph.output, *m.graph.value_info]:
        for d in vi.type.tensor_type.shape.dim:
            if d.dim_param in rename:
                d.dim_param = rename[d.dim_param]
    kept = ", ".join(sorted(set(rename.values()), key=lambda s: (s != "batch", s))) or "none"
    return m.SerializeToString(), kept + (f"; fixed by torch.export at {', '.join(f'{k}={v}' for k, v in sorted(at.items()))} (--size "
                                          "changes it)" if fixed else "")


def _check_onnx(data: bytes, path: str, built: Any, net: Checked, fixed: set[str], sizes: dict[str, int] | None
                ) -> tuple[float | None, str]:
    """(largest output difference, what was compared) of an ONNX model (its bytes, to be written to `path`)
    under onnxruntime."""
    import torch

    try:
        import onnxruntime as ort
    except ImportError:
        return None, "not checked: onnxruntime is not installed"
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: not onnxruntime's warnings on stderr
    sess = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    x = _other_batch(net, sizes, fixed)
    feeds = {i.name: t.numpy() for i, t in zip(sess.get_inputs(), x, strict=True)}
    try:
        got = sess.run(None, feeds)
    except Exception as e:  # noqa: BLE001 - a size the model fixed, in onnxruntime's words
        raise ExportError(f"onnxruntime cannot run {path} on a batch of {x[0].shape[0]}: {_first_line(e)}") from None
    with torch.no_grad():
        want = built(*x)
    return max_difference(want, got if len(got) > 1 else got[0]), f"outputs on a batch of {x[0].shape[0]} (onnxruntime)"


def write(checked: Checked, model: Any, fmt: str, path: str, source: str, state: dict[str, Any] | None = None,
          sizes: dict[str, int] | None = None) -> list[Written]:
    """Export a built spec in `fmt` (one of FORMATS) to `path` (several networks: a file each, but for python),
    each file checked against `model`; `state`: the weights to ship beside a python export (the traced forms
    hold `model`'s own); `sizes`: the symbolic sizes to trace with (T=100), where the model fixes them."""
    if fmt == "python":
        return write_python(checked, model, path, source, state, sizes)
    if fmt == "torchscript":
        return write_torchscript(checked, model, path, source, sizes)
    if fmt == "exported-program":
        return write_exported_program(checked, model, path, source, sizes)
    if fmt == "onnx":
        return write_onnx(checked, model, path, source, sizes)
    raise ExportError(f"unknown export format {fmt!r}: one of {', '.join(FORMATS)}")
