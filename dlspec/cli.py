"""The `dlspec` command line: check (and, later, run)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any


def _color(mode: str) -> bool:
    if mode == "always":
        return True
    if mode == "never":
        return False
    return sys.stdout.isatty() and not os.environ.get("NO_COLOR")


def cmd_check(args: argparse.Namespace) -> int:
    from . import check, load
    from .report import render_text, to_json

    results = []
    unreadable = False
    for path in args.specs:
        spec = load(path)
        unreadable |= any(d.code == "io" for d in spec.diagnostics)
        results.append(check(spec))
    if args.format == "json":
        docs = [to_json(c) for c in results]
        print(json.dumps(docs if len(docs) > 1 else docs[0], indent=2))
    else:
        color = _color(args.color)
        print("\n\n".join(render_text(c, color) for c in results))
    if unreadable:
        return 2
    return 1 if any(not c.ok for c in results) else 0


def cmd_layers(args: argparse.Namespace) -> int:
    from .diagnostics import did_you_mean
    from .registry import REGISTRY, lookup

    if args.name:
        e = lookup(args.name)
        if e is None:
            hint = did_you_mean(args.name, list(REGISTRY))
            print(f"dlspec: unknown layer type '{args.name}'" + (f"; did you mean '{hint}'?" if hint else ""),
                  file=sys.stderr)
            return 2
        print(e.name + (f" — {e.doc}" if e.doc else ""))
        for name, a in e.args.items():
            if a.inferred:
                d = "inferred from the input when omitted"
            elif a.required:
                d = "required"
            else:
                d = f"default {a.default!r}"
            print(f"  {name:24} {a.kind.text}; {d}")
        return 0
    by_family: dict[str, list[str]] = {}
    for e in REGISTRY.values():
        by_family.setdefault(e.family, []).append(e.name)
    for fam, ns in by_family.items():
        print(f"{fam:11} " + ", ".join(sorted(ns)))
    return 0


def cmd_codes(args: argparse.Namespace) -> int:
    from .diagnostics import CODES

    for code, text in CODES.items():
        print(f"{code:18} {text}")
    return 0


def parser() -> argparse.ArgumentParser:
    from . import __version__

    p = argparse.ArgumentParser(prog="dlspec", description="Declarative model specs for PyTorch.")
    p.add_argument("--version", action="version", version=f"dlspec {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    c = sub.add_parser("check", help="infer shapes, params and MACs; report mistakes (never imports torch)")
    c.add_argument("specs", nargs="+", metavar="SPEC", help="spec files (YAML)")
    c.add_argument("--format", choices=("text", "json"), default="text")
    c.add_argument("--color", choices=("auto", "always", "never"), default="auto")
    c.set_defaults(func=cmd_check)
    ly = sub.add_parser("layers", help="list the layer types, or one type's arguments")
    ly.add_argument("name", nargs="?")
    ly.set_defaults(func=cmd_layers)
    co = sub.add_parser("codes", help="list the diagnostic codes")
    co.set_defaults(func=cmd_codes)
    return p


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    if not getattr(args, "func", None):
        p.print_help(sys.stderr)
        return 2
    try:
        rc: Any = args.func(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    return int(rc)
