"""Stage 3, infer: the shape pass.  Pure Python (never imports torch).

Walks the layer list with a tensor type (per-sample shape, dtype, layout), calls each registry entry's
shape rule, fills omitted input sizes, checks written ones, and records one ``Row`` per module instance.
After an error it carries on from what the layer declares, so one run reports every mistake.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any

from . import codes, dims, limits
from .codes import ErrorCode
from .diagnostics import Diagnostic, diag, did_you_mean, error, locate, sort_key
from .dims import Dim, Shape
from .registry import REQUIRED, TT, lookup
from .schema import Item, Spec, layer_text


class ShapeError(Exception):
    def __init__(self, code: ErrorCode, message: str, arg: str | None = None, notes: list[str] | None = None,
                 help: str | None = None, recover: TT | None = None):
        super().__init__(message)
        self.code, self.message, self.arg = code, message, arg
        self.notes, self.help, self.recover = list(notes or []), help, recover


@dataclass
class Row:
    item: Item
    args: dict[str, Any]
    input: TT | None
    output: TT | None = None
    # None when not counted: the layer has an error, or its input is unknown (the table leaves it blank); a
    # container (Residual, Concat, a block) counts the layers it holds, also when it fails to merge them
    params: int | None = 0
    buffers: int = 0  # values of untrained state (BatchNorm's running statistics), nested rows' included
    macs: Dim | None = 0
    children: dict[str, Any] = field(default_factory=dict)  # arg -> list[Row] | list[list[Row]]
    rep: int = 0
    depth: int = 0
    failed: bool = False  # the shape rule did not finish (the output, if any, is a recovery guess)
    inputs: list[TT] = field(default_factory=list)  # all it read (several for a merge)
    error: bool = False  # an error diagnostic is about this layer itself

    @property
    def entry(self) -> Any:
        return self.item.entry

    @property
    def type(self) -> str:
        if self.item.unknown:
            return self.item.key or "?"
        return self.item.block or self.item.entry.name

    def walk(self) -> Any:
        """This row and every nested row, depth first."""
        yield self
        for v in self.children.values():
            for sub in v:
                if isinstance(sub, list):
                    for r in sub:
                        yield from r.walk()
                else:
                    yield from sub.walk()


@dataclass
class Checked:
    """A checked spec.  For a spec of several networks (`networks:`), `networks` holds each network's Checked (file
    order, each with its own rows, output and diagnostics); `rows` and `outputs` are then empty and `output`
    None, while `diagnostics` holds every diagnostic of the file, and `params`, `macs` and `all_rows()` count all
    the networks."""

    spec: Spec
    rows: list[Row]
    output: TT | None  # the (first) output
    diagnostics: list[Diagnostic]
    outputs: list[tuple[str, TT | None]] = field(default_factory=list)  # `outputs:` by name; [] for the last output
    networks: dict[str, Checked] = field(default_factory=dict)  # `networks:` by name; {} for a spec of one network

    @property
    def ok(self) -> bool:
        return not any(d.severity == "error" for d in self.diagnostics)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]

    def all_rows(self) -> list[Row]:
        """Every row, nested ones included (of every network, for a spec of several)."""
        return [r for top in self.rows for r in top.walk()] + [r for n in self.networks.values() for r in n.all_rows()]

    @property
    def params(self) -> int:
        """The sum of the counted rows (the numbers the table shows; of every network); see uncounted()."""
        return sum(r.params for r in self.rows if r.params is not None) + sum(n.params for n in self.networks.values())

    @property
    def buffers(self) -> int:
        """Values of untrained state (BatchNorm's running statistics) in all the rows (of every network)."""
        return sum(r.buffers for r in self.rows) + sum(n.buffers for n in self.networks.values())

    @property
    def macs(self) -> Dim:
        """MACs per sample (for several networks: the sum of one sample through each)."""
        return sum_dims([r.macs for r in self.rows if r.macs is not None] + [n.macs for n in self.networks.values()])

    def uncounted(self) -> tuple[int, int]:
        """(rows with an error, rows with an unknown input) that params and macs leave out."""
        blank = [r for r in self.all_rows() if r.params is None and not r.children]  # containers: their layers
        errors = sum(1 for r in blank if r.error)
        return errors, len(blank) - errors


def _split_top(s: str, sep: str) -> list[str]:
    """s split at the occurrences of sep (which holds no parenthesis) outside parentheses.  Found with str.find
    and str.count, not a loop over the characters: a spec of thousands of rows sums long symbolic MAC counts."""
    parts, depth, start, i = [], 0, 0, 0
    while (j := s.find(sep, i)) >= 0:
        depth += s.count("(", i, j) - s.count(")", i, j)
        if depth == 0:
            parts.append(s[start:j])
            start = j + len(sep)
        i = j + len(sep)
    parts.append(s[start:])
    return parts


_PAREN = re.compile(r"[()]")


def _top(s: str) -> str:
    """s with everything inside parentheses left out: what its top-level operators are."""
    if "(" not in s and ")" not in s:
        return s
    out, depth, i = [], 0, 0
    for m in _PAREN.finditer(s):
        if depth == 0:
            out.append(s[i:m.start()])
        if m.group() == ")":
            depth -= 1
        if depth == 0:
            out.append(m.group())
        if m.group() == "(":
            depth += 1
        i = m.end()
    if depth == 0:
        out.append(s[i:])
    return "".join(out)


def _factors(term: str) -> list[str] | None:
    """The factors of a pure product, nested ones included ('(T*65)*128' -> ['T', '65', '128']), else None."""
    parts = _split_top(term, "*")
    if any(not p or any(op in _top(p) for op in "+-/") for p in parts):  # also rejects '**' and '//'
        return None
    out: list[str] = []
    for p in parts:
        if p.startswith("(") and p.endswith(")") and _top(p) == "()":
            inner = _factors(p[1:-1])
            if inner is not None:
                out.extend(inner)
                continue
        out.append(p)
    return out


@lru_cache(maxsize=4096)  # (the rows of a repeated layer sum the same terms)
def _monomial(term: str) -> tuple[str, int]:
    """'(T*T)*128' -> ('T*T', 128); a term that is not a pure product is its own base with coefficient 1."""
    factors = _factors(term)
    if factors is None:
        return term, 1
    k = 1
    rest = []
    for f in factors:
        if f.isascii() and f.isdigit():
            k *= int(f)
        else:
            rest.append(f)
    return "*".join(rest), k


def sum_dims(values: list[Dim]) -> Dim:
    """The sum of sizes or MAC counts, like terms combined exactly: 'T*16384 + (T*8)*2048' -> 'T*32768'.

    Symbolic values are sums of terms (' + ' between them, as this function writes them); a term that is a
    product of symbols and integers is split into its symbolic part and an integer coefficient, and the
    coefficients of equal symbolic parts are added (a*k1 + a*k2 = a*(k1+k2)); other terms are kept as written.
    """
    if any(v == dims.UNKNOWN for v in values):
        return dims.UNKNOWN
    const = 0
    coefs: dict[str, int] = {}
    for v in values:
        if isinstance(v, int):
            const += v
            continue
        for term in _split_top(v, " + "):
            base, k = _monomial(term.strip())
            if not base:
                const += k
            else:
                coefs[base] = coefs.get(base, 0) + k
    terms = []
    for base, k in coefs.items():
        if k == 0:
            continue
        if k != 1 and any(op in _top(base) for op in "+-"):
            base = f"({base})"
        terms.append(base if k == 1 else f"{base}*{k}")
    if not terms:
        return const
    return " + ".join(terms + ([str(const)] if const else []))


class Ctx:
    """What a shape rule sees: its resolved arguments and ways to report."""

    def __init__(self, checker: Checker, item: Item, row: Row, x: TT, inputs: list[TT] | None = None):
        self.checker, self.item, self.row, self.x = checker, item, row, x
        self.inputs = inputs or [x]  # all it reads: two or more for a merge (Add, Concatenate, ...)
        self.a = row.args
        self.quiet_in = set(checker.quiet)  # each nested list starts from the warnings said before this layer
        self.quiet_out: set[str] | None = None

    # arguments
    def written(self, name: str) -> bool:
        return name in self.item.written

    def infer_size(self, name: str, actual: Dim, what: str = "features", help: str | None = None) -> None:
        """Fill an omitted input size, or check a written one against what the layer receives.

        help replaces the usual advice (write the size received) when the rule knows better."""
        if not self.written(name):
            self.a[name] = actual
            return
        w = self.a[name]
        if isinstance(actual, int) and w != actual:
            self.error(codes.SHAPE_MISMATCH,
                       f"{self.item.entry.name} expects {name} {w} but receives {actual}", arg=name,
                       notes=[self.origin()],
                       help=help or f"write {name}: {actual}, or leave it out and it is inferred")
            self.a[name] = actual
        elif isinstance(actual, str) and actual != dims.UNKNOWN:
            raise self.fail(codes.SYMBOLIC_SIZE,
                            f"{self.item.entry.name} needs a fixed number of {what} but receives {actual}",
                            arg=name, notes=[self.origin()],
                            help="fix the size before this layer (e.g. take the last step with `Last`, "
                                 "or pool with AdaptiveAvgPool), or give the symbol a fixed value in `input`")

    def need_known(self, d: Dim, name: str, what: str, help: str | None = None) -> int:
        """A size this layer cannot work with symbolically (e.g. Linear's input features)."""
        if isinstance(d, int):
            return d
        if d == dims.UNKNOWN:
            raise ShapeError(codes.NOT_KNOWN, "unknown size")
        raise self.fail(codes.SYMBOLIC_SIZE,
                        f"{self.item.entry.name} needs a fixed number of {what} but receives {d}",
                        arg=name if self.written(name) else None, notes=[self.origin()],
                        help=help or "fix the size before this layer (take the last step with `Last`, pool it "
                                     "with AdaptiveAvgPool, or give the symbol a fixed value in `input`)")

    def same(self, a: Dim, b: Dim) -> bool:
        """a and b are the same size for every value of their symbols (as `symbols:` declares them)."""
        if a == b:
            return True
        if isinstance(a, int) and isinstance(b, int):
            return False
        from .algebra import same

        return same(a, b, self.checker.divisible)

    def divisor_hint(self, pairs: list[tuple[Dim, Dim]]) -> str | None:
        """The `symbols:` declaration under which each pair of sizes is equal (H even, ...), if there is one."""
        from .algebra import same

        found: dict[str, int] = {}
        for a, b in pairs:
            if self.same(a, b):
                continue
            for name, k in ((n, k) for n in sorted(dims.symbols(a) | dims.symbols(b)) for k in (2, 4, 8, 16, 32, 64)):
                if same(a, b, {**self.checker.divisible, **found, name: k}):
                    found[name] = k
                    break
            else:
                return None
        if not found:
            return None
        names = " and ".join(f"{n} is a multiple of {k}" for n, k in found.items())
        decl = ", ".join(f"{n}: {{divisible_by: {k}}}" for n, k in found.items())
        return f"the sizes agree when {names}: if that always holds, declare it with `symbols: {{{decl}}}`"

    # reporting
    def fail(self, code: ErrorCode, message: str, arg: str | None = None, notes: list[str] | None = None,
             help: str | None = None, recover: TT | None = None) -> ShapeError:
        return ShapeError(code, message, arg, notes, help, recover)

    def error(self, code: ErrorCode, message: str, arg: str | None = None, notes: list[str] | None = None,
              help: str | None = None) -> None:
        self.row.error = True
        self.checker.report("error", code, message, self.item, arg, notes, help)

    def warn(self, code: ErrorCode, message: str, arg: str | None = None, notes: list[str] | None = None,
             help: str | None = None, once: bool = False) -> None:
        """once: say it once along a chain of layers, until a shape layer (Flatten, Reshape, ...) runs: one
        missing Flatten is one warning, not one per Linear after it."""
        if once:
            if code in self.checker.quiet:
                return
            self.checker.quiet.add(code)
        self.checker.report("warning", code, message, self.item, arg, notes, help)

    def rank(self, allowed: tuple[int, ...], what: str, help: str | None = None) -> None:
        """Check the per-sample rank (the batch N not counted).

        what says how the layer reads its input: "channels-first 2d", "(C) or (C, L)", "sequence", ...; other
        words (e.g. "linear-mode") are shown beside the layer's name."""
        r = len(self.x.shape)
        if r in allowed:
            return
        name = self.item.entry.name
        if what == "sequence" or what.startswith(("channels-first", "(C)", "at least")):
            qual = ""
        elif what.endswith("-mode"):
            qual = f" in {what[:-len('-mode')]} mode"
        else:
            qual = f" ({what})"
        span = sorted(allowed)
        if len(span) >= 3 and span == list(range(span[0], span[-1] + 1)):
            want = f"a {span[0] + 1}-D to {span[-1] + 1}-D input"
        else:
            noun = "sequence" if what == "sequence" else "input"
            want = " or ".join(f"a {n + 1}-D {noun} (N, {_dim_names(n, what)})" for n in allowed)
        raise self.fail(codes.RANK, f"{name}{qual} expects {want} but receives {r + 1}-D {dims.fmt_shape(self.x.shape)}",
                        notes=[self.origin()], help=help or self.rank_help(allowed, what))

    def rank_help(self, allowed: tuple[int, ...], what: str) -> str | None:
        """How to give a channels-first layer the rank it needs: the same layer for this rank (BatchNorm1d on a
        feature map: BatchNorm2d), or a Reshape that the element count allows (784 -> [1, 28, 28])."""
        if not what.startswith(("channels-first", "(C)")):
            return None
        x, r, name = self.x, len(self.x.shape), self.item.entry.name
        fixes = []
        more = [n for n in allowed if n > r]
        count = dims.product(x.shape)
        if more and isinstance(count, int):
            prefer = x.shape[0] if r >= 2 and isinstance(x.shape[0], int) else None
            shape = _factor(count, min(more) - 1, prefer)
            if shape is not None:
                lst = list(shape)
                fix = f"reshape each sample to {dims.fmt_map(shape)}: `- Reshape: {lst}`"
                if r == 1:
                    fix += f" (or `- Unflatten: {{dim: 1, unflattened_size: {lst}}}`)"
                if not self.checker.chain:  # nothing before this layer: it reads the spec's input
                    fix += f", or declare `input: {lst}`"
                fixes.append(fix)
        m = re.fullmatch(r"(.+?)(\d)d", name)
        if m and 1 <= r - 1 <= 3:
            alt = f"{m.group(1)}{r - 1}d"
            if alt != name and lookup(alt) is not None:
                fixes.append(f"use {alt}, which takes a {r + 1}-D input (N, {_dim_names(r, what)})")
        if not fixes:
            return None
        return "; or ".join(fixes)

    def float_input(self) -> None:
        if self.x.dtype != "float":
            raise self.fail(codes.DTYPE, f"{self.item.entry.name} needs float features but receives integer ids "
                            f"{dims.fmt_shape(self.x.shape)}", notes=[self.origin()],
                            help="turn ids into vectors first, e.g. `- Embedding: {num_embeddings: V, embedding_dim: D}`")

    def origin(self) -> str:
        return self.checker.origin(self.x)

    # nested layer lists (structural types)
    def run(self, name: str, x: TT, branch: int | None = None) -> TT | None:
        items = self.item.children.get(name, [])
        if branch is not None:
            items = items[branch]
        self.checker.quiet = set(self.quiet_in)
        rows, out = self.checker.run_list(items, x, self.row.depth + 1)
        self.quiet_out = (self.quiet_out or set()) | self.checker.quiet
        if branch is None:
            self.row.children[name] = rows
        else:
            self.row.children.setdefault(name, []).append(rows)
        return out


def what_dims(n: int) -> str:
    return {1: "F", 2: "C, L", 3: "C, H, W", 4: "C, D, H, W"}.get(n, ", ".join(["…"] * n))


def _dim_names(n: int, what: str) -> str:
    """The per-sample dimensions of a rank-n input as the layer reads them: 'C, H, W', 'T, F', ..."""
    if what == "sequence" and n == 2:
        return "T, F"
    if n == 1 and what.startswith(("channels-first", "(C)")):
        return "C"
    return what_dims(n)


def _factor(count: int, n: int, prefer: int | None = None) -> tuple[int, ...] | None:
    """(C, S, ..., S) with n sizes S ≥ 2 and C·Sⁿ = count, the fewest channels first (prefer tried before)."""
    if n < 1:
        return None
    for c in ([prefer] if prefer else []) + list(range(1, 65)):
        if count % c:
            continue
        q = count // c
        s = round(q ** (1.0 / n))
        for t in (s - 1, s, s + 1):
            if t >= 2 and t ** n == q:
                return (c,) + (t,) * n
    return None


def trail(rows: list[Row], start: TT) -> str:
    """The arithmetic of the last spatial dimension along a chain: '28 → conv3 → 26 → pool2 → 13'."""
    parts: list[str] = []
    cur: Dim | None = start.shape[-1] if len(start.shape) >= 2 else None
    if cur is not None:
        parts.append(str(cur))
    for r in rows:
        if r.output is None or len(r.output.shape) < 2 or r.output.layout == "sequence":
            continue
        v = r.output.shape[-1]
        if cur is None:
            cur = v
            parts = [str(v)]
            continue
        if v != cur:
            lab = r.entry.label(r.args) if r.entry.label else r.type.lower()
            parts += [lab, str(v)]
            cur = v
    return " → ".join(parts) if len(parts) > 1 else ""


class Checker:
    def __init__(self, spec: Spec):
        self.spec = spec
        self.doc = spec.doc
        self.diags: list[Diagnostic] = []
        self.chain: list[Row] = []  # rows in evaluation order, for arithmetic notes
        self.quiet: set[str] = set()  # `once` warnings already said along this chain (see Ctx.warn)
        self.channels_first = _channels_first(spec.input)  # the input as torch reads it, if written channels-last
        self.made_by: dict[int, Row] = {}  # id(output) -> the row that gave it, for "layer 3 Conv2d gives ..."
        self.divisible = dict(spec.symbols)  # what `symbols:` declares: name -> a divisor of its values
        self.env: dict[str, TT | None] = {}  # the top-level list's named outputs and inputs, when the pass is done

    def report(self, severity: str, code: ErrorCode, message: str, item: Item, arg: str | None,
               notes: list[str] | None, help: str | None) -> None:
        if arg is not None and (arg in item.written or arg in item.children):
            path = item.args_path if item.entry.main_arg == arg and arg not in _mapping_args(self.doc, item) \
                else item.args_path + (arg,)
            key = False
        else:
            path, key = item.args_path, True
        notes = [n for n in (notes or []) if n]
        d = diag(severity, code, message, path, key=key, layer=item.index, notes=notes, help=help)
        d.related = list(item.context)  # inside a block: where it is used
        self.diags.append(d)

    def origin(self, x: TT) -> str:
        made = self.made_by.get(id(x))
        if made is None and (not self.chain or any(x is t for t in self.spec.inputs.values())):
            name = next((n for n, t in self.spec.inputs.items() if t is x), "input")
            return f"the input is {describe(x)}" if name == "input" else f"input {name} is {describe(x)}"
        prev = made or self.chain[-1]
        where = f"layer {prev.item.index}" if prev.depth == 0 else f"layer {prev.item.index} ({prev.type})"
        desc = describe(x)
        if prev.entry.name == "Flatten" and prev.input is not None and len(prev.input.shape) >= 2:
            t = trail(self.chain[:-1], self.spec.input) if self.spec.input else ""
            fm = dims.fmt_map(prev.input.shape) if prev.input.layout != "sequence" else dims.fmt_shape(prev.input.shape)
            desc = f"{fm} = {dims.fmt(x.shape[-1])} features" + (f" ({t})" if t else "")
        return f"{where} {prev.type} gives {desc}"

    def run_list(self, items: list[Item], x: TT | None, depth: int = 0,
                 scope: dict[str, TT] | None = None) -> tuple[list[Row], TT | None]:
        """The rows of a layer list and its output (the last entry's).  An entry reads the previous output, or
        what `from:` names: `input` (the list's input), an input of the spec, a named entry, -k or an index."""
        rows: list[Row] = []
        env: dict[str, TT | None] = {"input": x, **(scope or {})}
        outs: list[TT | None] = []  # each entry's output (its last repetition's)
        for pos, item in enumerate(items):
            for rep in range(item.repeat):
                xs = [self.source(s, env, outs, pos) for s in item.sources] if item.sources and rep == 0 else [x]
                row, x = self.run_item(item, xs, depth, rep)
                rows.append(row)
            outs.append(x)
            if item.name:
                env[item.name] = x
        if depth == 0:
            self.env = env
        return rows, x

    @staticmethod
    def source(s: str | int, env: dict[str, TT | None], outs: list[TT | None], pos: int) -> TT | None:
        """What one `from:` entry names (None when it names nothing: the schema said so)."""
        if isinstance(s, str):
            return env.get(s)
        at = pos + s if s < 0 else s
        if at == -1:  # one entry before the first: the list's input
            return env.get("input")
        return outs[at] if 0 <= at < pos else None

    def run_item(self, item: Item, xs: list[TT | None], depth: int, rep: int) -> tuple[Row, TT | None]:
        x = xs[0] if xs else None
        if item.by_rank and x is not None and len(x.shape) in item.by_rank:
            item = replace(item, entry=item.by_rank[len(x.shape)])  # `BatchNorm`, Keras' BatchNormalization
            if item.rank_diag is not None:  # its unknown-layer help: the type for the input it receives here
                item.rank_diag.help = (f"{item.rank_what} {item.entry.name} for the {len(x.shape) + 1}-D input "
                                       f"{dims.fmt_shape(x.shape)} it receives here: write "
                                       f"{layer_text(item.entry.name, item.written)}")
        entry = item.entry
        args: dict[str, Any] = {}
        for name, spec in entry.args.items():
            if name in item.written:
                args[name] = item.written[name]
            elif spec.default is not REQUIRED and name not in entry.children:
                args[name] = spec.default
        row = Row(item=item, args=args, input=x, rep=rep, depth=depth, error=item.error)
        missing = [n for n, s in entry.args.items() if s.required and n not in item.written and n not in item.children]
        if item.unknown or x is None or missing or any(t is None for t in xs):
            # an entry that could not be read (unknown layer, no did-you-mean) stops the pass: what follows is `?`
            row.failed = True
            row.params = row.macs = None
            self.chain.append(row)
            return row, None
        ctx = Ctx(self, item, row, x, [t for t in xs if t is not None])
        out: TT | None
        # the first layer reads an image channels-last (input: [28, 28, 1]): say so, whatever else goes wrong
        layout = self.channels_first if (depth == 0 and not self.chain and entry.reads_maps) else None
        try:
            out = entry.infer(ctx, x)
            if layout is not None:
                self.diags.append(self.channels_last_diag("warning", layout, x, entry.name))
        except ShapeError as e:
            if layout is not None and e.code != codes.NOT_KNOWN:
                self.diags.append(self.channels_last_diag("error", layout, x, entry.name, e))
                row.error = True
            elif e.code != codes.NOT_KNOWN:
                self.report("error", e.code, e.message, item, e.arg, e.notes, e.help)
                row.error = True
            elif not any(d.severity == "error" for d in self.diags + self.spec.diagnostics):
                # an unknown size with no error before it would let a spec through that cannot be built
                self.report("error", codes.UNKNOWN_SIZE, f"{entry.name}: a size it needs cannot be inferred from "
                            f"{dims.fmt_shape(x.shape)}", item, None, [self.origin(x)],
                            "write the sizes of the layers before it explicitly")
                row.error = True
            out = e.recover
            row.failed = True
        if ctx.quiet_out is not None:
            self.quiet = ctx.quiet_out
        if entry.reshapes:  # a Flatten / Reshape / Permute starts a new chain for `once` warnings
            self.quiet = set()
        if out is not None and any(isinstance(d, str) for d in out.shape):  # `((L-1)*2)//2+1` is L
            from .algebra import simplify

            out = out.with_shape(tuple(simplify(d, self.divisible) for d in out.shape))
        if out is not None and (beyond := _beyond(out.shape)) is not None:  # no tensor holds it: the pass stops
            shown = dims.fmt_shape(out.shape) if len(out.shape) <= limits.MAX_RANK else ""
            short = len(shown) <= 200
            fix = "check the sizes written before it (a stride, a scale factor, a size)" if short else \
                "give the symbol a value in `input`, or fix the size before this layer (e.g. with AdaptiveAvgPool)"
            self.report("error", codes.LIMIT, f"{entry.name} gives {shown + ': ' if short else ''}{beyond}", item, None,
                        [self.origin(x)] if short else [], fix)
            row.error = row.failed = True
            out = None
        row.output = out
        row.inputs = [t for t in xs if t is not None]
        if out is not None:
            self.made_by[id(out)] = row
        self.count(row, x, out)
        self.chain.append(row)
        if item.expect is not None and out is not None and rep == item.repeat - 1:  # a repeated entry: its output,
            self.check_expect(item, row, out)  # the last repetition's
        return row, out

    def channels_last_diag(self, severity: str, fixed: list[int], x: TT, name: str,
                           e: ShapeError | None = None) -> Diagnostic:
        """An image input written channels-last: the diagnostic at `input`, with the error it caused, if any."""
        what = f"torch's {name} reads (N, C, H, W), channels first; input {list(x.shape)} reads as "
        what += f"{x.shape[0]} channels of {dims.fmt(x.shape[1])}×{dims.fmt(x.shape[2])}" if len(x.shape) == 3 else \
            f"{x.shape[0]} channels"
        notes = [f"{name}: {e.message}"] if e is not None else []
        return diag(severity, codes.CHANNELS_LAST, f"the input looks channels-last (H, W, C), as Keras, PIL and numpy "
                    f"write images: {what}", self.spec.base + ("input",), notes=notes,
                    help=f"write input: {fixed} (channels first)")

    def count(self, row: Row, x: TT, out: TT | None) -> None:
        """Parameters and MACs of a row: none for a layer with an error (they would be made up); a container
        (Residual, Concat, a block) adds up the layers it holds, also when merging their outputs failed."""
        entry = row.entry
        own_p: int | None = None
        own_m: Dim | None = None
        if not (row.error or row.failed or out is None):
            try:
                own_p = entry.params(row.args)
                own_m = sum_dims([entry.macs(row.args, x.shape, out.shape)])
            except (TypeError, KeyError, ValueError):  # sizes still unknown after an error upstream
                own_p = own_m = None
            if not isinstance(own_p, int):
                own_p = own_m = None  # (MACs may be `?`: the parameters do not depend on the unknown sizes)
        kids = [r for v in row.children.values() for k in v for r in (k if isinstance(k, list) else [k])]
        own_b = 0
        if own_p is not None:
            try:
                own_b = int(entry.buffers(row.args))
            except (TypeError, KeyError, ValueError):
                own_b = 0
        row.buffers = own_b + sum(r.buffers for r in kids)
        counted = [r for r in kids if r.params is not None]
        if counted:
            row.params = (own_p or 0) + sum(r.params for r in counted if r.params is not None)
            row.macs = sum_dims([own_m or 0] + [r.macs for r in counted if r.macs is not None])
        else:
            row.params, row.macs = own_p, own_m

    def check_expect(self, item: Item, row: Row, out: TT) -> None:
        exp: Shape = item.expect
        got = out.shape
        if len(exp) == len(got) and all(e == g or g == dims.UNKNOWN or (isinstance(g, str) and _same(e, g, self.divisible))
                                        for e, g in zip(exp, got, strict=True)):
            return
        as_map = len(got) >= 2 and out.layout != "sequence"
        g_txt = dims.fmt_map(got) if as_map else dims.fmt_shape(got)
        e_txt = dims.fmt_map(exp) if as_map and len(exp) >= 2 else dims.fmt_shape(exp)
        notes = []
        if row.input is not None:
            i_txt = dims.fmt_map(row.input.shape) if as_map and len(row.input.shape) >= 2 else dims.fmt_shape(row.input.shape)
            lab = item.entry.label(row.args) if item.entry.label else item.entry.name
            notes.append(f"{i_txt} → {lab} → {g_txt}")
            if as_map and len(exp) == len(got) and exp[0] != got[0] and row.input.shape[:1] == got[:1] \
                    and item.entry.keeps_channels:
                notes.append(f"{item.entry.name} keeps the number of channels ({dims.fmt(got[0])})")
        t = trail(self.chain, self.spec.input) if as_map and self.spec.input else ""
        if t:
            notes.append("spatial size: " + t)
        after = f" after its {item.repeat} repetitions" if item.repeat > 1 else ""
        self.diags.append(error(codes.EXPECT_MISMATCH, f"layer {item.index} {row.type} gives {g_txt}{after}, not "
                                f"{e_txt} as `expect` says",
            item.path + ("expect",), layer=item.index, notes=notes,
            help=f"write expect: {dims.fmt_map(got).replace('×', 'x') if as_map else list(got)}, "
                 "or change the layers above so they give what you expect"))


def _same(a: Dim, b: Dim, divisible: dict[str, int]) -> bool:
    from .algebra import same

    return same(a, b, divisible)


def _mapping_args(doc: Any, item: Item) -> set[str]:
    """Argument names written as a mapping (vs. the positional short form `- Reshape: [1, 28, 28]`)."""
    data = doc.data
    try:
        node = data
        for p in item.args_path:
            node = node[p]
        return set(node) if isinstance(node, dict) else set()
    except (KeyError, IndexError, TypeError):
        return set()


_DIGITS = re.compile(r"\d{19,}")  # a number in a symbolic size that may be beyond limits.MAX_INT


def _beyond(shape: Shape) -> str | None:
    """What no tensor can hold about a per-sample shape (too many dimensions, or values), or what the shape pass
    cannot follow (a symbolic size grown past limits.SIZE_TEXT characters, or with a number beyond 2**63 - 1:
    a size beyond any tensor for every value of its symbols), else None."""
    if len(shape) > limits.MAX_RANK:
        return f"{len(shape):,} dimensions per sample, more than the {limits.MAX_RANK} a tensor may have"
    for d in shape:
        if not isinstance(d, str):
            continue
        if len(d) > limits.SIZE_TEXT:
            return f"a size written in {len(d):,} characters ({d[:30]} …), more than the {limits.SIZE_TEXT:,} the " \
                   "shape pass follows"
        big = next((m for m in _DIGITS.findall(d) if len(m) > 30 or int(m) > limits.MAX_INT), None)
        if big is not None:
            shown = f"{int(big):,}" if len(big) <= 30 else f"a {len(big):,}-digit number"
            return f"a size whose arithmetic holds {shown}, beyond {limits.MAX_INT:,} (torch's 64-bit sizes): more " \
                   "than a tensor can hold for any value of its symbols"
    count = dims.product(tuple(d for d in shape if isinstance(d, int)))
    if isinstance(count, int) and count > limits.MAX_INT:
        return f"{limits.number(count)} values per sample, more than a tensor can hold ({limits.MAX_INT:,}, torch's " \
               "64-bit sizes)"
    return None


def _channels_first(x: TT | None) -> list[int] | None:
    """[1, 28, 28] for an input written [28, 28, 1]: an image channels-last (1, 3 or 4 channels at the end,
    at least 8 pixels each way before it), else None."""
    if x is None or x.dtype != "float" or len(x.shape) not in (3, 4) or not all(isinstance(d, int) for d in x.shape):
        return None
    *space, c = x.shape
    if c in (1, 3, 4) and all(isinstance(d, int) and d >= 8 for d in space):
        return [int(c), *(int(d) for d in space)]
    return None


def describe(x: TT) -> str:
    if len(x.shape) >= 2 and x.layout == "channels":
        return f"{dims.fmt_map(x.shape)} {dims.fmt_shape(x.shape)}"
    if len(x.shape) == 1:
        return f"{dims.fmt(x.shape[0])} features"
    return dims.fmt_shape(x.shape)


def check(spec: Spec) -> Checked:
    """The shape pass over a spec: of its one network, or of each of its `networks:` (each exactly as a spec of
    that one network would be checked, its diagnostics in its section)."""
    if not spec.networks:
        checked, _ = _check_network(spec)
        return checked
    networks: dict[str, Checked] = {}
    found: list[Diagnostic] = []
    for name, net in spec.networks.items():
        networks[name], diags = _check_network(net)
        found += diags
    diags = [locate(d, spec.doc) for d in list(spec.diagnostics) + found]
    diags.sort(key=sort_key)
    return Checked(spec=spec, rows=[], output=None, diagnostics=diags, networks=networks)


def _check_network(spec: Spec) -> tuple[Checked, list[Diagnostic]]:
    """The Checked of one network (with the diagnostics of its Spec), and the diagnostics the pass found."""
    checker = Checker(spec)
    rows: list[Row] = []
    out: TT | None = None
    outputs: list[tuple[str, TT | None]] = []
    if spec.input is not None:
        rows, out = checker.run_list(spec.items, spec.input, scope=spec.inputs)
        for i, name in enumerate(spec.outputs):
            if name not in checker.env:
                hint = did_you_mean(name, [n for n in checker.env if n != "input"])
                checker.diags.append(diag("error", codes.REFERENCE, f"no layer or input named '{name}' to output",
                                          spec.base + ("outputs", i), help=f"did you mean '{hint}'?" if hint else
                                          "an output is the `name:` of a top-level layer, or an input"))
            outputs.append((name, checker.env.get(name)))
        if outputs:
            out = outputs[0][1]
    found = checker.diags + _size_warnings(rows, spec.base)
    diags = [locate(d, spec.doc) for d in list(spec.diagnostics) + found]  # positions come last
    diags.sort(key=sort_key)
    return Checked(spec=spec, rows=rows, output=out, diagnostics=diags, outputs=outputs), found


def _size_warnings(rows: list[Row], base: tuple[Any, ...] = ()) -> list[Diagnostic]:
    """`model-size` warnings: more parameters, or more values in one sample's layer outputs, than the bounds
    of dlspec.limits (a valid spec, but few machines can train it; `dlspec run` refuses what does not fit)."""
    bounds = limits.current()
    flat = [r for top in rows for r in top.walk()]
    out: list[Diagnostic] = []
    params = sum(r.params for r in rows if isinstance(r.params, int))
    if params > bounds.warn_params:
        own = [r for r in flat if isinstance(r.params, int) and not r.children]
        big = max(own, key=lambda r: r.params or 0, default=None)
        where = f"; layer {big.item.index} {big.type} alone has {big.params:,}" if big is not None else ""
        out.append(diag("warning", codes.MODEL_SIZE, f"the model has {params:,} parameters ({_bytes(4 * params)} as "
                        f"float32{where}): more than most machines can hold",
                        big.item.args_path if big else base + ("layers",), key=True, layer=big.item.index if big else None,
                        help="check the sizes for a typo (out_features: 100000?); " + limits.raise_with("warn_params")))
    sizes = [(r, dims.product(r.output.shape)) for r in flat if r.output is not None and not r.children]
    counted = [(r, n) for r, n in sizes if isinstance(n, int)]
    total = sum(n for _, n in counted)
    if total > bounds.warn_activations:
        r, n = max(counted, key=lambda rn: rn[1])
        out.append(diag("warning", codes.MODEL_SIZE, f"one sample's layer outputs hold {total:,} values "
                        f"({_bytes(4 * total)} as float32, before the batch); layer {r.item.index} {r.type} gives "
                        f"{dims.fmt_shape(r.output.shape) if r.output else '?'} alone", r.item.args_path, key=True,
                        layer=r.item.index,
                        help="check the sizes (the input, an Upsample factor); " + limits.raise_with("warn_activations")))
    return out


def _bytes(n: int) -> str:
    for scale, unit in ((2**50, "PiB"), (2**40, "TiB"), (2**30, "GiB"), (2**20, "MiB")):
        if n >= scale:  # in integers: n / scale is no float for n beyond 2**1074
            tenths = (10 * n + scale // 2) // scale
            return f"{tenths // 10:,}.{tenths % 10} {unit}" if tenths < 10**30 else f"over 10^29 {unit}"
    return f"{n:,} bytes"
