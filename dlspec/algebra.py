"""Deciding that two symbolic sizes are equal for every value of their symbols.

The shape pass writes sizes as readable expressions (dims.py): `(L-1)*2-2+4` after a ConvTranspose1d,
`((L-1)*2-2+4+2-3-1)//2+1` after a Conv1d on top. Written differently, they can still be the same size
for every L: `((L-1)*2+2+2-3-1)//2+1` is L. `same(a, b)` decides that by bringing both to a normal form:
a polynomial with rational coefficients over symbols and *floor atoms* `floor(P / k)`, where a floor is
simplified away whenever it can be for every integer value of its symbols (`floor((2L - 2) / 2)` is
`L - 1`: the coefficient of each symbol divisible by k). A symbol declared divisible by d (`symbols: {H:
{divisible_by: 8}}`) is written d·H' first, so `(H//2)*2` is H when H is even. What the normal form
cannot decide stays unequal: `same` never says yes wrongly.

Pure Python (fractions), no sympy: a few microseconds per comparison, imported only when a spec has a
symbolic size to compare.
"""

from __future__ import annotations

import ast
import math
from fractions import Fraction
from functools import lru_cache
from typing import Any, Union

from .dims import UNKNOWN, Dim

# A polynomial: monomial -> coefficient; a monomial is a sorted tuple of atoms, the empty tuple the constant.
# An atom is a symbol name (str), or ("floor", polynomial, k) / ("min", polynomial, polynomial), hashable.
Atom = Union[str, tuple[Any, ...]]
Mono = tuple[Atom, ...]
Poly = tuple[tuple[Mono, Fraction], ...]  # sorted items: a frozen dict


class NotPolynomial(ValueError):
    """An expression outside the arithmetic the shape pass writes."""


def _freeze(p: dict[Mono, Fraction]) -> Poly:
    return tuple(sorted(((m, c) for m, c in p.items() if c != 0), key=lambda mc: repr(mc[0])))


def _const(c: Fraction | int) -> dict[Mono, Fraction]:
    return {(): Fraction(c)} if c else {}


def _add(a: dict[Mono, Fraction], b: dict[Mono, Fraction], sign: int = 1) -> dict[Mono, Fraction]:
    out = dict(a)
    for m, c in b.items():
        out[m] = out.get(m, Fraction(0)) + sign * c
    return {m: c for m, c in out.items() if c != 0}


def _mul(a: dict[Mono, Fraction], b: dict[Mono, Fraction]) -> dict[Mono, Fraction]:
    out: dict[Mono, Fraction] = {}
    for ma, ca in a.items():
        for mb, cb in b.items():
            m = tuple(sorted(ma + mb, key=repr))
            out[m] = out.get(m, Fraction(0)) + ca * cb
    return {m: c for m, c in out.items() if c != 0}


def _scale(a: dict[Mono, Fraction], k: Fraction) -> dict[Mono, Fraction]:
    return {m: c * k for m, c in a.items() if c * k != 0}


def _floor_div(p: dict[Mono, Fraction], k: Fraction) -> dict[Mono, Fraction]:
    """floor(p / k) for k > 0, every atom integer-valued: exact where the non-constant part is a multiple of k."""
    if k <= 0:
        raise NotPolynomial("division by a non-positive number")
    q = {m: c / k for m, c in p.items()}
    varying = {m: c for m, c in q.items() if m != ()}
    if all(c.denominator == 1 for c in varying.values()):  # an integer plus floor of the constant
        return _add(varying, _const(math.floor(q.get((), Fraction(0)))))
    if not varying:
        return _const(math.floor(q.get((), Fraction(0))))
    # a floor of a floor: floor((floor(q / a) + c) / k) = floor((q + c·a) / (a·k)) for integers q, c, a, k
    const = p.get((), Fraction(0))
    if len(varying) == 1 and k.denominator == 1 and const.denominator == 1:
        (m, c1), = varying.items()
        if c1 == 1 / k and len(m) == 1 and isinstance(m[0], tuple) and m[0][0] == "floor" and m[0][2].denominator == 1:
            return _floor_div(_add(dict(m[0][1]), _const(const * m[0][2])), m[0][2] * k)
    # pull out whole multiples of the constant: floor(x + n) = floor(x) + n for an integer n
    whole = (const // k) if const.denominator == 1 and k.denominator == 1 else Fraction(0)
    rest = _add(p, _const(-whole * k))
    return _add({(("floor", _freeze(rest), k),): Fraction(1)}, _const(whole))


def _poly(node: ast.AST) -> dict[Mono, Fraction]:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return _const(Fraction(node.value))
    if isinstance(node, ast.Name):
        return {(node.id,): Fraction(1)}
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return _scale(_poly(node.operand), Fraction(-1))
    if isinstance(node, ast.BinOp):
        a, b = _poly(node.left), _poly(node.right)
        if isinstance(node.op, ast.Add):
            return _add(a, b)
        if isinstance(node.op, ast.Sub):
            return _add(a, b, -1)
        if isinstance(node.op, ast.Mult):
            return _mul(a, b)
        if isinstance(node.op, (ast.FloorDiv, ast.Div)) and set(b) <= {()}:
            k = b.get((), Fraction(0))
            return _floor_div(a, k) if isinstance(node.op, ast.FloorDiv) else _scale(a, 1 / k)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "ceil" and \
            len(node.args) == 1 and isinstance(node.args[0], ast.BinOp) and isinstance(node.args[0].op, ast.Div):
        num, den = _poly(node.args[0].left), _poly(node.args[0].right)
        k = den.get((), Fraction(0)) if set(den) <= {()} else Fraction(0)
        if k > 0 and k.denominator == 1 and all(c.denominator == 1 for c in num.values()):
            return _floor_div(_add(num, _const(k - 1)), k)  # ceil(x / k) = floor((x + k - 1) / k) for integer x
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        name, args = node.func.id, [_poly(x) for x in node.args]
        if name == "floor" and len(args) == 1:
            return _floor_div(args[0], Fraction(1))
        if name == "ceil" and len(args) == 1:  # ceil(x) = -floor(-x)
            return _scale(_floor_div(_scale(args[0], Fraction(-1)), Fraction(1)), Fraction(-1))
        if name == "min" and len(args) == 2:
            lo, hi = sorted((_freeze(args[0]), _freeze(args[1])), key=repr)
            return {(("min", lo, hi),): Fraction(1)} if lo != hi else dict(lo)
    raise NotPolynomial(ast.dump(node))


@lru_cache(maxsize=4096)
def normal(d: Dim, divisible: tuple[tuple[str, int], ...] = ()) -> Poly:
    """The normal form of a size: symbols declared divisible by k written as k times a fresh symbol."""
    if isinstance(d, int):
        return _freeze(_const(d))
    text = d
    for name, k in divisible:
        text = _rename(text, name, f"({k}*{name}__d{k})")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        raise NotPolynomial(text) from None
    return _freeze(_poly(tree.body))


def _rename(text: str, name: str, to: str) -> str:
    import re

    return re.sub(rf"(?<![\w.]){re.escape(name)}(?!\w)", to, text)


def same(a: Dim, b: Dim, divisible: dict[str, int] | None = None) -> bool:
    """True when a and b are the same size for every (allowed) value of their symbols; False when they differ
    or it cannot be decided."""
    if a == b:
        return True
    if UNKNOWN in (a, b) or (isinstance(a, int) and isinstance(b, int)):
        return False
    key = tuple(sorted((divisible or {}).items()))
    try:
        return normal(a, key) == normal(b, key)
    except (NotPolynomial, ZeroDivisionError, RecursionError, OverflowError):
        return False


def simplify(d: Dim, divisible: dict[str, int] | None = None) -> Dim:
    """d written shorter through its normal form: `((L-1)*2)//2+1` is `L`, `L*2-2+4` is `L*2+2`, `(H-2)//2+1`
    (a pooling's arithmetic) is `H//2`; d as it was when the normal form is not shorter."""
    if isinstance(d, int) or d == UNKNOWN:
        return d
    return _simplify(d, tuple(sorted((divisible or {}).items())))


@lru_cache(maxsize=4096)  # (every layer of a long stack simplifies the sizes it passes on, most of them unchanged)
def _simplify(d: str, key: tuple[tuple[str, int], ...]) -> Dim:
    try:
        p = normal(d, key)
    except (NotPolynomial, ZeroDivisionError, RecursionError, OverflowError):
        return d
    plain = _undeclare(p)
    div = dict(key)
    # a fraction only of a symbol declared divisible by its denominator: H//2 when H is a multiple of 16
    if plain is None or any(c.denominator != 1 and not (len(m) == 1 and div.get(str(m[0]), 1) % c.denominator == 0)
                            for m, c in plain):
        return d
    if all(m == () for m, _ in plain):
        return int(plain[0][1]) if plain else 0
    text = _render(plain)
    return text if text is not None and len(text) < len(d) else d


def _render(p: Poly) -> str | None:
    """A normal form as the shape pass's arithmetic (None where a coefficient is a fraction of a sum)."""
    varying = [(m, c) for m, c in p if m != ()]
    fold = dict(p).get((), Fraction(0))
    if len(varying) == 1 and fold:  # c·floor(q / k) + C, C a multiple of c: c·floor((q + (C/c)·k) / k)
        (m, c), = varying
        if len(m) == 1 and isinstance(m[0], tuple) and m[0][0] == "floor" and c.denominator == 1 \
                and (fold / c).denominator == 1 and m[0][2].denominator == 1:
            _, q, k = m[0]
            folded = _freeze(_add(dict(q), _const(fold / c * k)))
            p = ((((("floor", folded, k),), c),))
    terms = []
    const = 0
    for m, c in sorted(p, key=lambda mc: (-len(mc[0]), repr(mc[0]))):
        if m == ():
            if c.denominator != 1:
                return None
            const = c.numerator
            continue
        atoms = []
        for a in m:
            if isinstance(a, str):
                atoms.append(a)
            elif a[0] == "floor":
                inner = _render(a[1])
                if inner is None or a[2].denominator != 1:
                    return None
                atoms.append(f"{inner if inner.isidentifier() else f'({inner})'}//{a[2].numerator}")
            else:
                lo, hi = _render(a[1]), _render(a[2])
                if lo is None or hi is None:
                    return None
                atoms.append(f"min({lo}, {hi})")
        base = "*".join(x if len(m) == 1 or "//" not in x else f"({x})" for x in atoms)
        if c.denominator != 1:  # H//2, (H//4)*3: exact for a declared multiple
            if len(m) != 1 or not isinstance(m[0], str):
                return None
            base = f"{base}//{c.denominator}" if abs(c.numerator) == 1 else f"({base}//{c.denominator})"
            c = Fraction(c.numerator)
        k = int(c)
        if "//" in base and k not in (1, -1):
            base = f"({base})"
        terms.append(base if k == 1 else f"-{base}" if k == -1 else f"{base}*{k}")
    text = "+".join(terms).replace("+-", "-")
    if const:
        text = text + f"{const:+d}" if terms else str(const)
    return text or "0"


def _undeclare(p: Poly) -> Poly | None:
    """The fresh symbols of a divisibility declaration (k*H__dk) written as H again, inside floors and minima too
    (`floor((16·H' - 3) / 3)` of a MaxPool on H divisible by 16); None where one cannot be."""
    out: dict[Mono, Fraction] = {}
    for m, c in p:
        atoms: list[Atom] = []
        for a in m:
            if isinstance(a, str):
                name, _, k = a.partition("__d")
                atoms.append(name)
                c = c / int(k) if k else c  # H' = H / k
                continue
            inner = [_undeclare(q) for q in a[1:-1]] if a[0] == "floor" else [_undeclare(q) for q in a[1:]]
            if any(q is None for q in inner):
                return None
            atoms.append((a[0], *inner, a[-1]) if a[0] == "floor" else (a[0], *inner))
        key = tuple(sorted(atoms, key=repr))
        out[key] = out.get(key, Fraction(0)) + c
    return _freeze(out)
