"""Parameterised blocks: a block's arguments, and the values its layers compute from them.

    blocks:
      bottleneck:
        args: {width: 64, stride: 1, expansion: 4}     # defaults; null: the use must give it
        layers:
          - Conv2d: {out_channels: width, kernel_size: 1, bias: false}
          - Conv2d: {out_channels: width, kernel_size: 3, stride: stride, padding: 1}
          - Conv2d: {out_channels: width * expansion, kernel_size: 1}
    layers:
      - bottleneck: {width: 128, stride: 2}

In a block's layers, a text value that is one of its argument names is that argument's value; a text
value that is arithmetic over them (`width * expansion`, `channels // 2`, `max(8, c // 4)`) is computed.
Any other text stays text (`padding: same`). The arithmetic is + - * / // % **, parentheses, numbers,
min, max, round and int: evaluated on a whitelist of Python's syntax tree, never with eval, and bounded
(limits.EXPR_NODES, limits.EXPR_DEPTH, limits.MAX_INT): a chain of thousands of terms is refused before
Python's parser reads it, and `2 ** 10 ** 10` from its operands, before anything is computed.
"""

from __future__ import annotations

import ast
import math
import re
from typing import Any

from . import limits

REQUIRED = None  # an argument declared `name: null` has no default: every use must give it

_NAME = re.compile(r"(?<![\w.])[A-Za-z_]\w*")  # (not the e308 of 1e308)
# the pieces of an expression as the bounds count them: names and numbers, operators, parentheses and commas
_TOKEN = re.compile(r"[A-Za-z_]\w*|(?:\d[\d_]*\.?[\d_]*|\.\d[\d_]*)(?:[eE][-+]?\d+)?|\*\*|//|\S")
_FUNCS: dict[str, Any] = {"min": min, "max": max, "round": round, "int": int}
_ARITY = {"min": (2, None), "max": (2, None), "round": (1, 2), "int": (1, 1)}
_ROUND_DIGITS = 18  # round(x, n): |n| at most this (round(5, -10**9) would compute 10**(10**9))
_BIN: dict[type, Any] = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
                         ast.Div: lambda a, b: a / b, ast.FloorDiv: lambda a, b: a // b, ast.Mod: lambda a, b: a % b,
                         ast.Pow: lambda a, b: a ** b}
_WHAT = "+ - * / // % **, min, max, round, int"


class ExprError(ValueError):
    """Why an expression has no value; limit: the message names one of the bounds of limits.py."""

    def __init__(self, message: str, help: str | None = None, limit: bool = False):
        super().__init__(message)
        self.help, self.limit = help, limit


def refers(text: str, names: set[str]) -> bool:
    """Whether text is one of the names, or arithmetic that uses at least one of them."""
    words = set(_NAME.findall(text)) - set(_FUNCS)
    if not words or not words <= names:
        return False
    return text.strip() in names or bool(re.search(r"[-+*/%()]", text))


def evaluate(text: str, env: dict[str, Any]) -> Any:
    """The value of an argument name or arithmetic over the arguments; ExprError says why not.

    Bounded before anything is computed: at most limits.EXPR_NODES numbers, names and operators, parentheses
    nested at most limits.EXPR_DEPTH deep, and every value on the way a real number of magnitude at most
    limits.MAX_INT (a power that would pass it is refused from its operands, never computed)."""
    text = text.strip()
    if text in env:
        return env[text]
    _bounded(text)
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError):  # (ValueError: a NUL character)
        raise ExprError(f"cannot read `{_short(text)}` as arithmetic") from None
    value = _eval(tree.body, env, text)
    if isinstance(value, float) and value.is_integer() and all(
            isinstance(env[n], int) for n in set(_NAME.findall(text)) - set(_FUNCS)):
        return int(value)  # channels / 2 of whole numbers, when it comes out whole, is a size
    return value


def _bounded(text: str) -> None:
    """Refuse an expression too long or too deeply nested to read, before Python's parser reads it (a chain of
    thousands of terms exhausts the parser's stack)."""
    nodes = depth = deepest = 0
    for tok in _TOKEN.findall(text):
        if tok == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif tok == ")":
            depth -= 1
        elif tok != ",":
            nodes += 1
        if nodes > limits.EXPR_NODES:
            raise ExprError(f"`{_short(text)}` has more than {limits.EXPR_NODES} numbers, names and operators, the "
                            "most one block expression may have", "compute it in steps: give the block another "
                            "argument for a part of it, or write the value", limit=True)
        if deepest > limits.EXPR_DEPTH:
            raise ExprError(f"`{_short(text)}` nests parentheses more than {limits.EXPR_DEPTH} deep, the most one "
                            "block expression may", "write it with fewer parentheses", limit=True)


def _short(text: str) -> str:
    return text if len(text) <= 60 else text[:40] + " … " + text[-12:]


def _eval(node: ast.AST, env: dict[str, Any], text: str) -> Any:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return _bound(node.value, text)
    if isinstance(node, ast.Name):
        if node.id not in env:
            raise ExprError(f"`{node.id}` in `{_short(text)}` is not an argument of the block")
        return _bound(_number(env[node.id], text), text)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        v = _number(_eval(node.operand, env, text), text)
        return -v if isinstance(node.op, ast.USub) else v
    if isinstance(node, ast.BinOp) and type(node.op) in _BIN:
        a, b = _number(_eval(node.left, env, text), text), _number(_eval(node.right, env, text), text)
        if isinstance(node.op, (ast.Div, ast.FloorDiv, ast.Mod)) and b == 0:
            raise ExprError(f"`{_short(text)}` divides by zero")
        if isinstance(node.op, ast.Pow):
            _power(a, b, text)
        try:
            return _bound(_BIN[type(node.op)](a, b), text)
        except (OverflowError, ZeroDivisionError, ValueError):  # a float beyond ~1e308 on the way
            raise _too_large(text) from None
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCS and not node.keywords:
        name, args = node.func.id, [_number(_eval(a, env, text), text) for a in node.args]
        least, most = _ARITY[name]
        if len(args) < least or (most is not None and len(args) > most):
            takes = f"{least}" if least == most else f"{least} or {most}" if most else f"{least} or more"
            raise ExprError(f"`{_short(text)}`: {name} takes {takes} values, got {len(args)}")
        if name == "round" and len(args) == 2 and (not isinstance(args[1], int) or abs(args[1]) > _ROUND_DIGITS):
            raise ExprError(f"`{_short(text)}`: round's digits must be a whole number from -{_ROUND_DIGITS} to "
                            f"{_ROUND_DIGITS}, got {args[1]!r}")
        try:
            return _bound(_FUNCS[name](*args), text)
        except (OverflowError, ValueError):
            raise _too_large(text) from None
    raise ExprError(f"`{_short(text)}` uses what block arithmetic does not have ({_WHAT})")


def _power(a: int | float, b: int | float, text: str) -> None:
    """Refuse a ** b from its operands when it has no real value or its magnitude would pass limits.MAX_INT."""
    if a == 0 and b < 0:
        raise ExprError(f"`{_short(text)}` divides by zero (0 to a negative power)")
    if a < 0 and not float(b).is_integer():
        raise ExprError(f"`{_short(text)}` has no real value (a negative number to a fractional power)")
    if abs(a) in (0, 1):
        return
    if b * math.log2(abs(a)) > 63:  # |a ** b| > 2**63: refused without being computed
        raise _too_large(text)


def _too_large(text: str) -> ExprError:
    return ExprError(f"`{_short(text)}` computes a value beyond {limits.MAX_INT:,} (2**63 - 1), the largest block "
                     "arithmetic holds", "a size, count or index must fit torch's 64-bit integers", limit=True)


def _bound(v: Any, text: str) -> Any:
    """v when it is a number block arithmetic holds: finite, and of magnitude at most limits.MAX_INT."""
    if isinstance(v, complex):
        raise ExprError(f"`{_short(text)}` has no real value")
    if isinstance(v, float) and math.isnan(v):
        raise ExprError(f"`{_short(text)}` computes nan, which is not a number a spec can use",
                        "a size, rate or factor is a finite number")
    if isinstance(v, float) and math.isinf(v):  # a float beyond ~1e308
        raise _too_large(text)
    if isinstance(v, (int, float)) and not isinstance(v, bool) and abs(v) > limits.MAX_INT:
        raise _too_large(text)
    return v


def _number(v: Any, text: str) -> Any:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ExprError(f"`{_short(text)}` computes with {v!r}, which is not a number")
    return v


def substitute(value: Any, env: dict[str, Any], path: tuple[Any, ...],
               errors: list[tuple[tuple[Any, ...], ExprError]]) -> Any:
    """value with every argument name and arithmetic over the arguments replaced by its value; problems are
    collected as (path, error) and leave the text as it was."""
    if isinstance(value, str):
        if not refers(value, set(env)):
            return value
        try:
            return evaluate(value, env)
        except ExprError as e:
            errors.append((path, e))
            return value
    if isinstance(value, list):
        return [substitute(v, env, path + (i,), errors) for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {k: substitute(v, env, path + (k,), errors) for k, v in value.items()}
    return value
