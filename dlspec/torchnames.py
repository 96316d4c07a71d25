"""torch's losses, optimizers and schedulers as `dlspec check` knows them, without importing torch.

The names, keyword arguments, their kinds and defaults live in a table generated from the installed
torch (``dlspec/torch_table.py``).  ``python -m dlspec.torchnames`` writes it again; a test regenerates it
and compares, so a torch upgrade that adds, removes or retypes an argument fails loudly instead of
``dlspec check`` silently going stale.  ``dlspec run`` still checks every name against the torch it
runs with (``objectives.resolve``), and constructs the objects once before training (torch checks the
values, e.g. a negative learning rate).

A kind is a short string: ``number``, ``integer``, ``bool``, ``text``, ``choice:a|b``, ``numbers``
(one number or a list of them), ``list:KIND:N`` (N entries; N ``*`` for any number), ``tensor`` (a number
or a list of numbers, made a float tensor), ``any`` (not checked) or ``python`` (a Python object such as
a function: cannot be written in YAML); ``?`` at the end: null allowed too.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from typing import Any

# per-batch schedulers and classes dlspec run cannot drive: shared with objectives.py (which imports torch)
UNSUPPORTED_OPTIMIZERS = {"LBFGS": "it needs a closure that re-evaluates the loss",
                          "SparseAdam": "it only takes sparse gradients"}
# arguments dlspec run fills in itself when they are not written
FILLED_IN = {"OneCycleLR": ("total_steps", "epochs", "steps_per_epoch")}

KINDS = ("loss", "optimizer", "scheduler")
# what torch's signatures annotate only as `str`: the values torch accepts (torch.nn._reduction)
CHOICES = {("loss", "reduction"): "choice:none|mean|sum", ("KLDivLoss", "reduction"): "choice:none|batchmean|sum|mean"}


@dataclass(frozen=True)
class Param:
    name: str
    kind: str
    default: Any  # REQUIRED_MARK when the argument is required
    required: bool


REQUIRED_MARK = "<required>"


def table() -> dict[str, dict[str, list[Param]]]:
    """kind ("loss", "optimizer", "scheduler") -> class name -> its keyword arguments."""
    global _TABLE
    if _TABLE is None:
        from .torch_table import TABLE

        _TABLE = {k: {name: [Param(n, kd, d, d == REQUIRED_MARK) for n, kd, d in params]
                      for name, params in TABLE[k].items()} for k in KINDS}
    return _TABLE


_TABLE: dict[str, dict[str, list[Param]]] | None = None


def version() -> str:
    from .torch_table import TORCH_VERSION

    return TORCH_VERSION


def lookup(kind: str, name: str) -> str | None:
    """The class name as torch spells it (names are case-insensitive, as layer types are), or None."""
    lower = {n.lower(): n for n in table()[kind]}
    return lower.get(name.lower())


# --- checking a value against a kind --------------------------------------------------------------------

def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def describe(kind: str) -> str:
    """The kind in words, for messages: 'a number', 'a list of 2 numbers or null', ..."""
    nullable = kind.endswith("?")
    k = kind.rstrip("?")
    if k.startswith("choice:"):
        text = "one of " + ", ".join(k[len("choice:"):].split("|"))
    elif k.startswith("list:"):
        _, inner, n = k.split(":")
        noun = {"number": "numbers", "integer": "integers", "number?": "numbers or nulls"}.get(inner, inner)
        text = f"a list of {noun}" if n == "*" else f"a list of {n} {noun}"
    else:
        text = {"number": "a number", "integer": "an integer", "bool": "true or false", "text": "text",
                "numbers": "a number or a list of numbers", "tensor": "a number or a list of numbers",
                "any": "a value", "python": "a Python object (a function, a scheduler, ...)"}.get(k, k)
    return text + (" or null" if nullable else "")


def accepts(kind: str, v: Any) -> bool:
    if v is None:
        return kind.endswith("?") or kind == "any"
    k = kind.rstrip("?")
    if k == "any":
        return True
    if k == "python":
        return False
    if k == "number":
        return _is_number(v)
    if k == "integer":
        return isinstance(v, int) and not isinstance(v, bool)
    if k == "bool":
        return isinstance(v, bool)
    if k == "text":
        return isinstance(v, str)
    if k.startswith("choice:"):
        return isinstance(v, str) and v in k[len("choice:"):].split("|")
    if k in ("numbers", "tensor"):
        return _is_number(v) or (isinstance(v, list) and bool(v) and all(_is_number(e) for e in v))
    if k.startswith("list:"):
        _, inner, n = k.split(":")
        return isinstance(v, list) and (n == "*" or len(v) == int(n)) and all(accepts(inner, e) for e in v)
    return True  # a kind this version does not know: torch decides at run time


# --- generating the table from the installed torch -----------------------------------------------------

def _normalise(annotation: str) -> str:
    a = re.sub(r"<class '([\w.]+)'>", r"\1", annotation)
    a = re.sub(r"\b(typing|collections\.abc|torch\.optim\.optimizer|torch)\.", "", a)
    while True:  # Optional[X] -> X | None, Union[A, B] -> A | B
        b = re.sub(r"Optional\[([^\[\]]*(?:\[[^\[\]]*\])*[^\[\]]*)\]", r"\1 | None", a)
        b = re.sub(r"Union\[([^\[\]]*(?:\[[^\[\]]*\])*[^\[\]]*)\]", lambda m: m.group(1).replace(", ", " | "), b)
        if b == a:
            return a
        a = b


def _split_union(a: str) -> list[str]:
    parts, depth, cur = [], 0, ""
    for ch in a:
        depth += (ch == "[") - (ch == "]")
        if ch == "|" and depth == 0:
            parts.append(cur.strip())
            cur = ""
        else:
            cur += ch
    parts.append(cur.strip())
    return [p for p in parts if p]


def kind_of(annotation: str | None, default: Any) -> str:
    """The kind of an argument from its annotation (or, without one, its default's type)."""
    if annotation is None or annotation in ("", "None"):
        if default is None or default == REQUIRED_MARK:
            return "any"
        if isinstance(default, bool):
            return "bool"
        if isinstance(default, (int, float)):
            return "number"
        if isinstance(default, str):
            return "text"
        return "any"
    parts = _split_union(_normalise(annotation))
    nullable = "None" in parts or default is None
    parts = [p for p in parts if p != "None"]
    kinds = {_one_kind(p, default) for p in parts}
    kinds.discard("tensor-scalar")  # `float | Tensor`: a number in YAML
    if kinds == {"number", "numbers"}:
        kinds = {"numbers"}
    kind = kinds.pop() if len(kinds) == 1 else ("python" if "python" in kinds else "any")
    if parts and all(_one_kind(p, default) == "tensor-scalar" for p in parts):
        kind = "tensor"  # a loss's `weight`: written as a list of numbers
    return kind + ("?" if nullable and kind != "any" else "")


def _one_kind(p: str, default: Any) -> str:
    if p in ("float", "Tensor"):
        return "number" if p == "float" else "tensor-scalar"
    if p == "int":
        return "integer"
    if p == "bool":
        return "bool"
    if p == "str":
        return "text"
    m = re.fullmatch(r"Literal\[(.*)\]", p)
    if m:
        return "choice:" + "|".join(x.strip().strip("'\"") for x in m.group(1).split(","))
    m = re.fullmatch(r"(?:list|Iterable|Sequence|tuple)\[(.*)\]", p)
    if m:
        items = [x.strip() for x in _split_args(m.group(1))]
        if p.startswith("tuple") and items and items[-1] != "...":
            inner = {kind_of(i, None if "None" in i else 0.0) for i in items}
            return f"list:{inner.pop()}:{len(items)}" if len(inner) == 1 else "any"
        inner_kind = kind_of(items[0], 0.0)
        if inner_kind in ("number", "integer"):
            return "numbers" if inner_kind == "number" and not p.startswith("tuple") else f"list:{inner_kind}:*"
        return "python"
    return "python"  # Callable, Optimizer, LRScheduler, an options object: not writable in YAML


def _split_args(s: str) -> list[str]:
    parts, depth, cur = [], 0, ""
    for ch in s:
        depth += (ch == "[") - (ch == "]")
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    return parts + [cur]


def generate() -> str:
    """The text of dlspec/torch_table.py for the installed torch (imports torch)."""
    import inspect

    import torch

    from .objectives import losses, optimizers, schedulers

    out = ['"""Generated by `python -m dlspec.torchnames` from the installed torch: do not edit.\n\n'
           "kind -> class -> [(argument, kind, default)]; see dlspec/torchnames.py for the kinds.\n\"\"\"\n",
           f"TORCH_VERSION = {torch.__version__.split('+')[0]!r}\n",
           "TABLE: dict[str, dict[str, list[tuple[str, str, object]]]] = {"]
    for kind, classes, skip in (("loss", losses(), 0), ("optimizer", optimizers(), 1),
                                ("scheduler", schedulers(), 1)):
        out.append(f"    {kind!r}: {{")
        for name in sorted(classes):
            sig = inspect.signature(classes[name].__init__)  # type: ignore[misc]
            params = [p for p in sig.parameters.values() if p.name != "self"][skip:]
            rows = []
            for p in params:
                if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                    continue
                default = REQUIRED_MARK if p.default is p.empty else p.default
                if isinstance(default, tuple):
                    default = list(default)
                if not isinstance(default, (int, float, str, bool, list, type(None))):
                    default = repr(default)
                ann = None if p.annotation is p.empty else (
                    p.annotation if isinstance(p.annotation, str) else
                    p.annotation.__name__ if isinstance(p.annotation, type) else str(p.annotation))
                k = CHOICES.get((name, p.name)) or CHOICES.get((kind, p.name)) or kind_of(ann, default)
                rows.append(f"({p.name!r}, {k!r}, {default!r})")
            out.append(f"        {name!r}: [" + ", ".join(rows) + "],")
        out.append("    },")
    out.append("}\n")
    return "\n".join(out)


def main(argv: list[str]) -> int:
    import os

    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "torch_table.py")
    text = generate()
    if "--check" in argv:
        with open(path, encoding="utf-8") as f:
            same = f.read() == text
        print("dlspec/torch_table.py is current" if same else "dlspec/torch_table.py is stale: run "
              "`python -m dlspec.torchnames` and review the diff")
        return 0 if same else 1
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
