"""Sizes that flow through the shape pass: concrete ints, symbolic expressions, or unknown.

A dimension is an ``int`` when it is known, a ``str`` holding a small arithmetic expression over named
symbols when it depends on one (``"T"``, ``"T*28"``, ``"(L-3)//2+1"``), or ``UNKNOWN`` (``"?"``) after an
error upstream.  Expressions are kept readable and can be evaluated for given symbol values, which is how
the tests compare them with torch's real shapes.  Nothing here imports torch.
"""

from __future__ import annotations

import ast
import math
import re
from fractions import Fraction
from typing import Union

Dim = Union[int, str]
Shape = tuple[Dim, ...]

UNKNOWN = "?"
_ATOM = re.compile(r"^(?:[A-Za-z_]\w*|\d+|\(.*\))$")
_AFFINE = re.compile(r"^(?P<base>.+?)(?P<off>[+-]\d+)$")
SYMBOL = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")  # ASCII: Python's parser would rewrite `ﬁ` as `fi`
_FUNCS = ("ceil", "floor", "min")


def known(d: Dim) -> bool:
    return isinstance(d, int)


def all_known(shape: Shape) -> bool:
    return all(isinstance(d, int) for d in shape)


def _paren(e: str) -> str:
    if _ATOM.match(e) and (not e.startswith("(") or _balanced_outer(e)):
        return e
    return f"({e})"


def _balanced_outer(e: str) -> bool:
    """True when e is one parenthesised group, e.g. '(L-1)' but not '(L-1)//2+(T)'."""
    depth = 0
    for i, ch in enumerate(e):
        depth += ch == "("
        depth -= ch == ")"
        if depth == 0 and i < len(e) - 1:
            return False
    return True


def _split_affine(e: str) -> tuple[str, int]:
    """'L-4' -> ('L', -4); 'L' -> ('L', 0).  Only a top-level trailing constant is split off."""
    m = _AFFINE.match(e)
    if m:
        base = m.group("base")
        depth = 0
        for ch in base:
            depth += ch == "("
            depth -= ch == ")"
        if depth == 0 and not base.endswith(("*", "/", "+", "-")):
            return base, int(m.group("off"))
    return e, 0


def add(d: Dim, k: int) -> Dim:
    if isinstance(d, int):
        return d + k
    if d == UNKNOWN:
        return UNKNOWN
    if k == 0:
        return d
    base, off = _split_affine(d)
    off += k
    if off == 0:
        return base
    return f"{base}{off:+d}"


def mul(d: Dim, k: int) -> Dim:
    if isinstance(d, int):
        return d * k
    if d == UNKNOWN:
        return UNKNOWN
    if k == 1:
        return d
    return f"{_paren(d)}*{k}"


def floordiv(d: Dim, k: int) -> Dim:
    if isinstance(d, int):
        return d // k
    if d == UNKNOWN:
        return UNKNOWN
    if k == 1:
        return d
    return f"{_paren(d)}//{k}"


def ceildiv(d: Dim, k: int) -> Dim:
    if isinstance(d, int):
        return -(-d // k)
    if d == UNKNOWN:
        return UNKNOWN
    if k == 1:
        return d
    return f"ceil({_paren(d)}/{k})"


def scale(d: Dim, factor: float) -> Dim:
    """floor(d * factor), as torch computes an upsampled size."""
    if isinstance(d, int):
        return int(math.floor(d * float(factor)))
    if d == UNKNOWN:
        return UNKNOWN
    if float(factor).is_integer():
        return mul(d, int(factor))
    return f"floor({_paren(d)}*{float(factor)!r})"


def minimum(a: Dim, b: Dim) -> Dim:
    """min(a, b); symbolic when either is."""
    if isinstance(a, int) and isinstance(b, int):
        return min(a, b)
    if UNKNOWN in (a, b):
        return UNKNOWN
    if a == b:
        return a
    return f"min({a}, {b})"


def product(dims: Shape) -> Dim:
    if any(d == UNKNOWN for d in dims):
        return UNKNOWN
    const = 1
    syms: list[str] = []
    for d in dims:
        if isinstance(d, int):
            const *= d
        else:
            syms.append(_paren(d))
    if not syms:
        return const
    if const == 0:
        return 0
    return "*".join(syms + ([str(const)] if const != 1 else []))


def fmt(d: Dim) -> str:
    return str(d)


def fmt_shape(shape: Shape, batch: bool = True) -> str:
    parts = (["N"] if batch else []) + [fmt(d) for d in shape]
    return "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"


def fmt_map(shape: Shape) -> str:
    """Feature-map notation: (16, 5, 5) -> '16@5×5'."""
    if len(shape) < 2:
        return ""
    return f"{fmt(shape[0])}@" + "×".join(fmt(d) for d in shape[1:])


def symbols(d: Dim) -> set[str]:
    if isinstance(d, int) or d == UNKNOWN:
        return set()
    return {n for n in re.findall(r"(?<![\w.])[A-Za-z_]\w*", d) if n not in _FUNCS}


# --- evaluation (used by the builder's tests and by `dlspec` when a symbol is given a value) ---------

def evaluate(d: Dim, values: dict[str, int]) -> int:
    """Evaluate a dimension for concrete symbol values, exactly (integer and rational arithmetic)."""
    if isinstance(d, int):
        return d
    if d == UNKNOWN:
        raise ValueError("unknown dimension")
    result = _eval(ast.parse(d, mode="eval").body, values)
    if isinstance(result, Fraction):
        if result.denominator != 1:
            raise ValueError(f"{d} is not an integer for {values}")
        return int(result)
    return int(result)


def _eval(node: ast.AST, env: dict[str, int]) -> Fraction:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
        return Fraction(node.value)
    if isinstance(node, ast.Name):
        if node.id not in env:
            raise ValueError(f"no value for symbol {node.id}")
        return Fraction(env[node.id])
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_eval(node.operand, env)
    if isinstance(node, ast.BinOp):
        a, b = _eval(node.left, env), _eval(node.right, env)
        if isinstance(node.op, ast.Add):
            return a + b
        if isinstance(node.op, ast.Sub):
            return a - b
        if isinstance(node.op, ast.Mult):
            if _is_float(node.left) or _is_float(node.right):
                # a size times a float scale factor: torch multiplies in double precision, and
                # floor(10 * 0.7) is 7 there but 6 in exact arithmetic (0.7 is a little less than 7/10)
                return Fraction(float(a) * float(b))
            return a * b
        if isinstance(node.op, ast.FloorDiv):
            return Fraction(math.floor(a / b))
        if isinstance(node.op, ast.Div):
            return a / b
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "min" and node.args:
        return min(_eval(arg, env) for arg in node.args)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and len(node.args) == 1:
        v = _eval(node.args[0], env)
        if node.func.id == "ceil":
            return Fraction(math.ceil(v))
        if node.func.id == "floor":
            return Fraction(math.floor(v))
    raise ValueError(f"cannot evaluate {ast.dump(node)}")


def _is_float(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, float)


_TRIAL = 2**16  # divisors(): trial division up to this, so that any size up to 2**63 is answered at once


def divisors(n: int, near: int = 1, most: int = 12) -> str:
    """The divisors of n for a help ('1, 2, 4, …, 64 (28 in all)'): at most `most` of them, those nearest `near`
    (the value that does not divide), found in O(sqrt n) steps and at most _TRIAL of them: a prime channel count
    near 2**31 is answered in milliseconds, and a larger n with the divisors up to _TRIAL and their cofactors."""
    import bisect

    root = math.isqrt(n)
    small = [d for d in range(1, min(root, _TRIAL) + 1) if n % d == 0]
    found = sorted(set(small) | {n // d for d in small})
    among = f"among the divisors up to {_TRIAL:,} and their cofactors" if root > _TRIAL else ""
    if len(found) <= most:
        return ", ".join(map(str, found)) + (f" ({among})" if among else "")
    at = min(max(bisect.bisect(found, near) - most // 2, 0), len(found) - most)
    return ("…, " if at else "") + ", ".join(map(str, found[at:at + most])) + \
        (", …" if at + most < len(found) else "") + (f" ({len(found)} found {among})" if among else
                                                     f" ({len(found)} in all)")


def parse_map(text: str) -> Shape | None:
    """'16@5x5' / '16@5×5' / '16@5' -> (16, 5, 5); None when the text is not in that notation.

    Split with str methods, not one regular expression: `x` is a separator and a letter, and a pattern that
    reads both ways backtracks exponentially (`1@2x2x2x...!` took minutes)."""
    head, at, tail = text.partition("@")
    if not at or "@" in tail:
        return None
    parts = [head.strip()] + [p.strip() for p in tail.replace("×", "x").replace("*", "x").split("x")]
    out: list[Dim] = []
    for p in parts:
        if p.isascii() and p.isdigit() and len(p) <= 30:  # (int() of thousands of digits is refused by Python)
            out.append(int(p))
        elif SYMBOL.match(p):
            out.append(p)
        else:
            return None
    return tuple(out)
