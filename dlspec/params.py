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
min, max, round and int: evaluated on a whitelist of Python's syntax tree, never with eval.
"""

from __future__ import annotations

import ast
import math
import re
from typing import Any

REQUIRED = None  # an argument declared `name: null` has no default: every use must give it

_NAME = re.compile(r"[A-Za-z_]\w*")
_FUNCS: dict[str, Any] = {"min": min, "max": max, "round": round, "int": int}
_BIN: dict[type, Any] = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
                         ast.Div: lambda a, b: a / b, ast.FloorDiv: lambda a, b: a // b, ast.Mod: lambda a, b: a % b,
                         ast.Pow: lambda a, b: a ** b}


class ExprError(ValueError):
    pass


def refers(text: str, names: set[str]) -> bool:
    """Whether text is one of the names, or arithmetic that uses at least one of them."""
    words = set(_NAME.findall(text)) - set(_FUNCS)
    if not words or not words <= names:
        return False
    return text.strip() in names or bool(re.search(r"[-+*/%()]", text))


def evaluate(text: str, env: dict[str, Any]) -> Any:
    """The value of an argument name or arithmetic over the arguments; ExprError says why not."""
    text = text.strip()
    if text in env:
        return env[text]
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        raise ExprError(f"cannot read `{text}` as arithmetic") from None
    value = _eval(tree.body, env, text)
    if isinstance(value, float) and math.isfinite(value) and value.is_integer() and all(
            isinstance(env[n], int) for n in set(_NAME.findall(text)) - set(_FUNCS)):
        return int(value)  # channels / 2 of whole numbers, when it comes out whole, is a size
    return value


def _eval(node: ast.AST, env: dict[str, Any], text: str) -> Any:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.Name):
        if node.id not in env:
            raise ExprError(f"`{node.id}` in `{text}` is not an argument of the block")
        return env[node.id]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        v = _number(_eval(node.operand, env, text), text)
        return -v if isinstance(node.op, ast.USub) else v
    if isinstance(node, ast.BinOp) and type(node.op) in _BIN:
        a, b = _number(_eval(node.left, env, text), text), _number(_eval(node.right, env, text), text)
        if isinstance(node.op, ast.Pow) and (abs(b) > 64 or abs(a) > 2**32):
            raise ExprError(f"`{text}` is too large a power")
        if isinstance(node.op, (ast.Div, ast.FloorDiv, ast.Mod)) and b == 0:
            raise ExprError(f"`{text}` divides by zero")
        return _BIN[type(node.op)](a, b)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCS and not node.keywords:
        return _FUNCS[node.func.id](*(_number(_eval(a, env, text), text) for a in node.args))
    raise ExprError(f"`{text}` uses what block arithmetic does not have (+ - * / // % **, min, max, round, int)")


def _number(v: Any, text: str) -> Any:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ExprError(f"`{text}` computes with {v!r}, which is not a number")
    return v


def substitute(value: Any, env: dict[str, Any], path: tuple[Any, ...], errors: list[tuple[tuple[Any, ...], str]]) -> Any:
    """value with every argument name and arithmetic over the arguments replaced by its value; problems are
    collected as (path, message) and leave the text as it was."""
    if isinstance(value, str):
        if not refers(value, set(env)):
            return value
        try:
            return evaluate(value, env)
        except (ExprError, OverflowError, ValueError, TypeError) as e:
            errors.append((path, str(e)))
            return value
    if isinstance(value, list):
        return [substitute(v, env, path + (i,), errors) for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {k: substitute(v, env, path + (k,), errors) for k, v in value.items()}
    return value
