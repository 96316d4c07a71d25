#!/usr/bin/env python3
"""A mutation fuzzer for dlspec's command surfaces (issue 22: bad input of any kind gets a one-line diagnostic
in bounded time and memory, never a traceback, an internal error, a crash or a hang).

    python tests/fuzz.py --minutes 10                 # every surface, seed 0, findings in fuzz_findings/
    python tests/fuzz.py --minutes 2 --surfaces check,predict --seed 7 --out /tmp/findings
    python tests/fuzz.py --seed 7 --replay 1234       # case 1234 of seed 7 again, with its output

Surfaces: `check` (mutated specs, --format text/json/dot and hostile options), `run` (a mutated spec trained for
one step on a tiny subset of its data), `overrides` (a spec's PATH=VALUE items with hostile paths and values),
`show`, `export --to python`, `predict --input` (mutated PNG, NPY and CSV files, devices, FIFOs, folders) and
`generate` (a character model and a GAN, hostile options), each also with hostile checkpoints and options.
The specs are every file of specs/ (specs/zoo/ and specs/errors/ included), mutated as YAML (numbers replaced
by 0, -1, 2**31-1, 2**63, 1e308, nan, '', a huge string; keys and entries dropped, duplicated, swapped, nested,
aliased) or as bytes.

Each case runs in a process of its own, forked from this one (torch is imported once, before any torch op),
under RLIMIT_AS (--memory, 3 GiB) and a wall-clock limit (20 s for check, 120 s for the others).  A case is a
finding when the process exits with 70 (dlspec's internal error), prints a Python traceback, dies by a signal,
exits with a status other than 0, 1 and 2, or passes its limit (a hang).  The first case of each kind of
finding (its signature: the surface, the exception type and dlspec's innermost frame) is confirmed through the
real command line (`python -m dlspec ...` in a fresh process) and saved under --out as a folder: the input
files, cmd.sh (the command line, runnable from the folder), output.txt, traceback.txt (DLSPEC_DEBUG=1) and
case.json.  The cases are a function of --seed and their number, whatever the machine's speed: a run can be
repeated, and --replay runs one case again.  Not collected by pytest (not named test_*); docs/development.md,
"Robustness tests", says how it is used.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import io
import json
import math
import os
import random
import re
import resource
import select
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted(p for p in (ROOT / "specs").glob("**/*.yaml"))
SHAKESPEARE = ROOT / "examples" / "shakespeare.txt"
SURFACES = ("check", "run", "overrides", "show", "export", "predict", "generate")
LIMIT_S = {"check": 20}  # the others: DEFAULT_LIMIT_S
DEFAULT_LIMIT_S = 120
TINY = ["train.epochs=1", "train.batch_size=16", "train.data.subset={train: 16, test: 8}"]
RUN_OPTS = ["--no-progress", "--threads", "1"]

# --- hostile values ------------------------------------------------------------------------------------------

HUGE = "x" * 100_000
NUMBERS: list[Any] = [0, -1, 2**31 - 1, 2**63, -2**63, 10**30, 1e308, -1e308, float("nan"), float("inf"), 0.5, -0.0,
                      1e-320, "", HUGE, True, None, [], {}]
SCALARS: list[Any] = [*NUMBERS, "../../etc/passwd", "/dev/zero", "\u202e\u0301", "a\x1bb", "$(touch pwned)",
                      "'; import os #", "{{x}}", "%s%n", "null", "~", "=", "NaN", "ReLU", "Sequential", "T", "N",
                      "a" * 300, "é" * 50, "\ud7ff", "-", "[", "*"]
KEYS = ["repeat", "expect", "name", "input", "layers", "blocks", "train", "networks", "data", "subset", "epochs",
        "batch_size", "optimizer", "loss", "scheduler", "seed", "task", "metrics", "residual", "Sequential",
        "Concat", "inputs", "outputs", "dtype", "shape", "<<", "device", "path", "normalize", "n_train", "size"]
SNIPPETS = ["!!binary ", "!mytag ", "&a ", "*a", "<<: *a", "<<: 3", "=", "\x00", "\x1b", "\ufeff", "[", "]", "{",
            "}", ": ", "- ", "\n  ", "\t", "repeat: 99999999", "repeat: -1", "expect: 3@3x3", "-1", "0", "1e309",
            ".nan", ".inf", "null", "true", "2001-12-14", "? ", "Sequential: ", "Residual: ", "Concat: ",
            "out_features: 100000000", "num_layers: 999999999999", "T", "'", '"', "#", "%YAML 1.2\n", "---\n",
            "...\n", "!!python/object:os.system ", "\r\n", "\x85", "\u2028", "&b [*b]", "[" * 200]
OVERRIDE_PATHS = ["", ".", "..", "train..x", "layers.-1", "layers.99999999999999999999", "layers.0.0.0", "=",
                  "train.data.name", "train.data", "train", "input", "input.0", "name", "blocks.x", "networks",
                  "train.optimizer", "train.loss", "train.data.subset.train", "train.data.path", "a" * 1000,
                  "train.\u202e", "layers.0.repeat", "train.scheduler", "train.early_stopping.patience",
                  "train.device", "train.compile", "train.precision", "train.data.n_train"]
OVERRIDE_VALUES = ["0", "-1", "2147483647", "9223372036854775808", "1e308", "-1e308", ".nan", ".inf", "''", "x" * 5000,
                   "!!int abc", "!!python/name:os.system", "*a", "&a [*a]", "[1", "{a: 1}", "[]", "{}", "null", "~",
                   "true", "[[[[[[[[[[]]]]]]]]]]", "{SGD: {lr: -1}}", "{Adam: {lr: .nan}}", "/dev/zero", "..",
                   "\u202e", "\x1b[31m", "'\\x00'", "{name: mnist, subset: {train: 0}}", "{name: csv, path: /dev/zero}",
                   "{name: char_text, path: /dev/zero}", "{name: shapes, n_train: 1, n_test: 1}", "cuda:99",
                   "max-autotune", "fp16", "[1, 1, 1, 1, 1, 1, 1, 1, 1, 1]", "1e-320", "0.0"]


# --- mutations ------------------------------------------------------------------------------------------------

def _nodes(doc: Any, path: tuple = ()) -> list[tuple[tuple, Any]]:
    """(path, node) of every node of a loaded YAML document (an alias's target once)."""
    out, seen, todo = [], set(), [(path, doc)]
    while todo and len(out) < 20_000:
        p, n = todo.pop()
        out.append((p, n))
        if isinstance(n, (dict, list)) and id(n) not in seen:
            seen.add(id(n))
            items = n.items() if isinstance(n, dict) else enumerate(n)
            todo.extend((p + (k,), v) for k, v in items)
    return out


def _get(doc: Any, path: tuple) -> Any:
    for k in path:
        doc = doc[k]
    return doc


def _set(doc: Any, path: tuple, value: Any) -> Any:
    """The document with the node at `path` replaced (the root itself when path is empty)."""
    if not path:
        return value
    _get(doc, path[:-1])[path[-1]] = value
    return doc


OPS = ["number", "number", "scalar", "drop", "dup", "swap", "nest", "alias", "insert", "retype"]
MILD = ["number", "number", "number", "number", "scalar", "drop", "dup", "swap"]  # (the run surface's)


def mutate_yaml(rng: random.Random, doc: Any, mild: bool = False) -> tuple[Any, list[str]]:
    """1 to 3 structural mutations of a loaded document (one, of the MILD kinds, when mild): what was done."""
    what = []
    for _ in range(1 if mild else rng.randint(1, 3)):
        nodes = _nodes(doc)
        path, node = rng.choice(nodes)
        where = ".".join(map(str, path)) or "<root>"
        op = rng.choice(MILD if mild else OPS)
        if op == "number":
            nums = [(p, n) for p, n in nodes if isinstance(n, (int, float)) and not isinstance(n, bool)]
            if nums:
                path, node = rng.choice(nums)
                where = ".".join(map(str, path))
            v = rng.choice(NUMBERS)
            doc = _set(doc, path, v)
            what.append(f"{where} = {_short(v)}")
        elif op == "scalar":
            v = rng.choice(SCALARS)
            doc = _set(doc, path, v)
            what.append(f"{where} = {_short(v)}")
        elif op in ("drop", "dup", "swap", "insert") and isinstance(node, (dict, list)) and node:
            keys = list(node) if isinstance(node, dict) else list(range(len(node)))
            k = rng.choice(keys)
            if op == "drop":
                del node[k]
                what.append(f"drop {where}.{k}")
            elif op == "dup" and isinstance(node, list):
                node.insert(k, copy.deepcopy(node[k]) if rng.random() < 0.5 else node[k])
                what.append(f"duplicate {where}.{k}")
            elif op == "dup":
                node[f"{k}_"] = copy.deepcopy(node[k])
                what.append(f"copy {where}.{k} to {k}_")
            elif op == "swap":
                j = rng.choice(keys)
                node[k], node[j] = node[j], node[k]
                what.append(f"swap {where}.{k} and .{j}")
            else:
                name, v = rng.choice(KEYS), rng.choice(SCALARS + [[1, 2], {"a": 1}])
                if isinstance(node, dict):
                    node[name] = v
                else:
                    node.insert(k, {name: v})
                what.append(f"insert {where}.{name} = {_short(v)}")
        elif op == "nest":
            v = rng.choice([[node], {"Sequential": [node]}, {rng.choice(KEYS): node}, {"x": node, "repeat": 3}])
            doc = _set(doc, path, v)
            what.append(f"nest {where}")
        elif op == "alias":
            containers = [(p, n) for p, n in nodes if isinstance(n, (dict, list)) and p]
            if containers:
                p2, other = rng.choice(containers)
                if isinstance(other, list) and rng.random() < 0.3:
                    other.append(other)  # a cycle: the list holds itself
                    what.append(f"cycle at {'.'.join(map(str, p2))}")
                else:
                    doc = _set(doc, path, other)  # a shared node: the dump writes an anchor and an alias
                    what.append(f"alias {where} -> {'.'.join(map(str, p2))}")
        elif op == "retype":
            v = {"list": [node], "dict": {"x": node}, "str": str(node)[:200]}[rng.choice(["list", "dict", "str"])]
            doc = _set(doc, path, v)
            what.append(f"retype {where}")
        else:
            v = rng.choice(NUMBERS)
            doc = _set(doc, path, v)
            what.append(f"{where} = {_short(v)}")
    return doc, what


def mutate_text(rng: random.Random, text: bytes) -> tuple[bytes, list[str]]:
    """1 to 6 byte-level mutations: snippets inserted, bytes flipped, ranges deleted, lines duplicated."""
    what = []
    b = bytearray(text)
    for _ in range(rng.randint(1, 6)):
        at = rng.randint(0, len(b))
        op = rng.choice(["snippet", "snippet", "flip", "delete", "dupline", "swaplines", "truncate", "bytes"])
        if op == "snippet":
            s = rng.choice(SNIPPETS).encode("utf-8", "surrogatepass")
            b[at:at] = s
            what.append(f"insert {_short(s)} at {at}")
        elif op == "flip" and b:
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
            what.append(f"flip a bit at {i}")
        elif op == "delete":
            n = rng.randint(1, 40)
            del b[at:at + n]
            what.append(f"delete {n} at {at}")
        elif op in ("dupline", "swaplines"):
            lines = bytes(b).split(b"\n")
            i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
            if op == "dupline":
                lines.insert(i, lines[i])
                what.append(f"duplicate line {i + 1}")
            else:
                lines[i], lines[j] = lines[j], lines[i]
                what.append(f"swap lines {i + 1} and {j + 1}")
            b = bytearray(b"\n".join(lines))
        elif op == "truncate":
            del b[at:]
            what.append(f"truncate at {at}")
        else:
            junk = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
            b[at:at] = junk
            what.append(f"insert bytes {junk.hex()} at {at}")
    return bytes(b), what


def mutated_spec(rng: random.Random, path: Path, mild: bool = False) -> tuple[bytes, list[str]]:
    """A spec file mutated as YAML (two cases in three, when it loads; always when mild) or as bytes."""
    import yaml

    raw = path.read_bytes()
    if mild or rng.random() < 0.67:
        try:
            doc = yaml.safe_load(raw)
        except yaml.YAMLError:
            doc = None
        if isinstance(doc, (dict, list)):
            doc, what = mutate_yaml(rng, doc, mild)
            try:
                return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=120).encode(), what
            except (yaml.YAMLError, ValueError, RecursionError) as e:
                return raw, [f"(the mutation could not be written as YAML: {type(e).__name__})"]
    return mutate_text(rng, raw)


def _short(v: Any) -> str:
    s = repr(v)
    return s if len(s) <= 40 else s[:37] + "..."


# --- hostile input files --------------------------------------------------------------------------------------

def _png(width: int, height: int, mode: str, seed: int) -> bytes:
    from PIL import Image

    r = random.Random(seed)
    im = Image.new(mode, (width, height))
    if width * height <= 4096:
        im.putdata([r.randrange(256) if mode in ("L", "P", "1", "I;16") else
                    tuple(r.randrange(256) for _ in mode) for _ in range(width * height)])
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def _png_ihdr(width: int, height: int) -> bytes:
    """A PNG that claims width × height in its header and holds one row of data (a decompression bomb's
    header, without the bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def hostile_image(rng: random.Random) -> tuple[bytes, str]:
    kind = rng.choice(["ok", "mode", "size", "ihdr", "bytes", "other", "empty", "text"])
    if kind == "ok":
        return _png(28, 28, "L", rng.randrange(1000)), "a 28×28 grayscale PNG"
    if kind == "mode":
        mode = rng.choice(["RGB", "RGBA", "P", "1", "I;16", "LA"])
        return _png(28, 28, mode, rng.randrange(1000)), f"a 28×28 {mode} PNG"
    if kind == "size":
        w, h = rng.choice([(1, 1), (1, 5000), (5000, 1), (3000, 3000), (2, 28)])
        return _png(w, h, "L", 0), f"a {w}×{h} PNG"
    if kind == "ihdr":
        w, h = rng.choice([(2**31 - 1, 1), (100_000, 100_000), (0, 0), (1, 2**31 - 1), (65536, 65536)])
        return _png_ihdr(w, h), f"a PNG header claiming {w}×{h}"
    if kind == "bytes":
        data, what = mutate_text(rng, _png(28, 28, "L", rng.randrange(1000)))
        return data, "a 28×28 PNG, bytes mutated: " + "; ".join(what)
    if kind == "other":
        from PIL import Image

        fmt = rng.choice(["GIF", "BMP", "JPEG", "TIFF", "ICO"])
        buf = io.BytesIO()
        im = Image.new("RGB" if fmt == "JPEG" else "L", (28, 28))
        im.save(buf, format=fmt)
        return buf.getvalue(), f"a {fmt} named .png"
    if kind == "empty":
        return b"", "an empty file"
    return b"P1\n28 28\n" + b"0 " * 50, "text"


def _npy(arr: Any) -> bytes:
    import numpy as np

    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=arr.dtype == object)
    return buf.getvalue()


def _npy_header(shape: tuple, dtype: str = "<f4", data: bytes = b"\0" * 64, fortran: bool = False) -> bytes:
    header = repr({"descr": dtype, "fortran_order": fortran, "shape": shape}).encode()
    header += b" " * (-(len(header) + 11) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + data


def hostile_npy(rng: random.Random, sample: tuple) -> tuple[bytes, str]:
    import numpy as np

    r = np.random.default_rng(rng.randrange(2**32))
    kind = rng.choice(["ok", "shape", "dtype", "values", "header", "bytes", "pickle", "npz", "empty"])
    if kind == "ok":
        return _npy(r.random(sample, dtype=np.float32)), f"a float32 array {sample}"
    if kind == "shape":
        shape = rng.choice([(), (0,), (1,), (1, *sample), (2, *sample), sample[::-1], (*sample, 1), (10**6,),
                            tuple(1 for _ in range(32))])
        return _npy(np.zeros(shape, np.float32)), f"a float32 array {shape}"
    if kind == "dtype":
        dt = rng.choice(["float64", "float16", "int64", "uint8", "bool", "complex64", "U5", "S3", "datetime64[s]",
                         "i4,f4", "V8"])
        return _npy(np.zeros(sample, dtype=dt)), f"a {dt} array {sample}"
    if kind == "values":
        v = rng.choice([np.nan, np.inf, -np.inf, 1e38, -1e38, 2**31])
        return _npy(np.full(sample, v, np.float32)), f"a float32 array {sample} of {v}"
    if kind == "header":
        shape = rng.choice([(10**12,), (2**62, 2**62), (-1,), (1, 28, 28, 10**9), (2**31,) * 3])
        dt = rng.choice(["<f4", "<f8", "|O", "<U1000000000", ">f4", "<f4"])
        return _npy_header(shape, dt, fortran=rng.random() < 0.3), f"an .npy header saying {shape} {dt}"
    if kind == "bytes":
        data, what = mutate_text(rng, _npy(r.random(sample, dtype=np.float32)))
        return data, "an .npy, bytes mutated: " + "; ".join(what)
    if kind == "pickle":
        return _npy(np.array([{"a": 1}, None], dtype=object)), "an object array (a pickle)"
    if kind == "npz":
        buf = io.BytesIO()
        np.savez(buf, x=np.zeros(sample, np.float32))
        return buf.getvalue(), "an .npz named .npy"
    return b"", "an empty file"


def hostile_csv(rng: random.Random, width: int) -> tuple[bytes, str]:
    row = lambda: ",".join(f"{rng.random():.3f}" for _ in range(width))  # noqa: E731
    header = ",".join(f"f{i}" for i in range(width))
    kind = rng.choice(["ok", "columns", "values", "header", "bytes", "long", "empty", "quotes"])
    if kind == "ok":
        return (row() + "\n" + row() + "\n").encode(), f"2 rows of {width} numbers"
    if kind == "columns":
        n = rng.choice([0, 1, width - 1, width + 1, 10 * width])
        return (",".join(["0.5"] * n) + "\n").encode(), f"a row of {n} numbers"
    if kind == "values":
        v = rng.choice(["nan", "inf", "-inf", "1e999", "abc", "", "0x10", "1,5", "True", "\x00", "١٢"])
        return (",".join([v] * width) + "\n").encode(), f"a row of {v!r}"
    if kind == "header":
        return (header + "\n" + row() + "\n").encode(), "a header row, then a row"
    if kind == "bytes":
        data, what = mutate_text(rng, (row() + "\n" + row() + "\n").encode())
        return data, "rows, bytes mutated: " + "; ".join(what)
    if kind == "long":
        return ("0," * 1_000_000 + "0\n").encode(), "a row of 1,000,001 numbers"
    if kind == "quotes":
        return ('"' + row() + "\n" + row() + "\n").encode(), "an unclosed quote"
    return b"", "an empty file"


SPECIALS = ["fifo", "dir", "devzero", "devnull", "dangling", "loop"]


# --- cases ----------------------------------------------------------------------------------------------------

@dataclass
class Case:
    index: int
    surface: str
    argv: list[str]
    files: dict[str, bytes] = field(default_factory=dict)  # name -> content, in the case's folder
    specials: dict[str, str] = field(default_factory=dict)  # name -> fifo | dir | devzero | ... (made, not copied)
    runs: dict[str, str] = field(default_factory=dict)  # name in the folder -> a prepared run folder (copied)
    what: list[str] = field(default_factory=list)

    @property
    def limit(self) -> int:
        return LIMIT_S.get(self.surface, DEFAULT_LIMIT_S)


class Maker:
    """The cases, each a function of (seed, index) alone."""

    def __init__(self, seed: int, prepared: dict[str, Path], surfaces: list[str]):
        self.seed, self.prepared, self.surfaces = seed, prepared, surfaces
        self.train_specs = [p for p in SPECS if _has_train(p) and p.parent.name != "errors"]
        # a block of 10 check cases (~0.1 s each), then one case of the next other surface (~1-5 s each)
        self.expensive = [s for s in surfaces if s != "check"]

    def surface(self, i: int) -> str:
        if not self.expensive:
            return "check"
        if "check" not in self.surfaces:
            return self.expensive[i % len(self.expensive)]
        block, at = divmod(i, 11)
        return "check" if at < 10 else self.expensive[block % len(self.expensive)]

    def make(self, i: int) -> Case:
        rng = random.Random(f"{self.seed}/{i}")
        surface = self.surface(i)
        case = Case(i, surface, [])
        getattr(self, "_" + surface)(rng, case)
        for a in case.argv:  # (an argument cannot hold a NUL byte on a real command line)
            assert "\x00" not in a, a
        return case

    def _spec_file(self, rng: random.Random, case: Case, pool: list[Path], mutate: float = 1.0,
                   mild: bool = False) -> str:
        path = rng.choice(pool)
        if rng.random() < mutate:
            data, what = mutated_spec(rng, path, mild)
            case.what.append(f"{path.relative_to(ROOT)} mutated: " + "; ".join(what))
        else:
            data = path.read_bytes()
            case.what.append(f"{path.relative_to(ROOT)}")
        if b"examples/shakespeare.txt" in data:  # the character data, beside the spec
            case.files["examples/shakespeare.txt"] = SHAKESPEARE.read_bytes()
        case.files["spec.yaml"] = data
        return "spec.yaml"

    def _check(self, rng: random.Random, case: Case) -> None:
        spec = self._spec_file(rng, case, SPECS)
        argv = ["check", spec, "--format", rng.choice(["text", "json", "dot"]), "--color", "never"]
        r = rng.random()
        if r < 0.05:
            argv += ["--depth", rng.choice(["0", "1000", "-1", "99999999999", "x"])]
        elif r < 0.08:
            argv += ["--diagram", self._output(rng, case, "diagram.svg")]
        elif r < 0.10:
            argv += [spec, spec]
        case.argv = argv

    def _run(self, rng: random.Random, case: Case) -> None:
        # the check surface covers what `dlspec check` refuses: here, mostly mutations it lets through, which
        # reach the data, the build and the training step (up to 8 tries, the first that checks clean)
        for _ in range(8):
            case.files.clear()
            case.what.clear()
            spec = self._spec_file(rng, case, self.train_specs, mild=True)
            if checks_clean(case.files[spec]):
                break
        case.argv = ["run", spec, *TINY, "--out", "runs", *RUN_OPTS, *self._run_option(rng, case)]

    def _run_option(self, rng: random.Random, case: Case) -> list[str]:
        if rng.random() < 0.7:
            return []
        opt = rng.choice([["--epochs", rng.choice(["0", "-1", "1000000000000", "x"])],
                          ["--out", self._output(rng, case, "runs")],
                          ["--device", rng.choice(["cuda:99", "xyz", "cpu:0", "", "meta", "mps"])],
                          ["--precision", rng.choice(["bf16", "fp16", "auto"])],
                          ["--data-root", self._output(rng, case, "data")],
                          ["--compile", "off"], ["--eager"], ["--fused", "on"], ["--channels-last", "on"],
                          ["--resume", self._output(rng, case, "runs")]])
        case.what.append("option " + " ".join(opt))
        return opt

    def _output(self, rng: random.Random, case: Case, name: str) -> str:
        """An output or input path that is hostile in one way: a device, a FIFO, a folder, a file, a dangling link,
        a path through a file, an empty string, or a plain one."""
        kind = rng.choice(["plain", "fifo", "dir", "devzero", "devnull", "dangling", "file", "through", "empty",
                           "full"])
        if kind == "plain":
            return name
        if kind == "file":
            case.files[name] = b"not a folder\n"
            return name
        if kind == "through":
            case.files["afile"] = b"x"
            return f"afile/{name}"
        if kind == "empty":
            return ""
        if kind == "full":
            return "/dev/full"
        case.specials[name] = kind
        case.what.append(f"{name} is {kind}")
        return name

    def _overrides(self, rng: random.Random, case: Case) -> None:
        import yaml

        spec = self._spec_file(rng, case, self.train_specs, mutate=0.0)
        try:
            doc = yaml.safe_load(case.files[spec])
            paths = [".".join(map(str, p)) for p, _ in _nodes(doc) if p]
        except yaml.YAMLError:
            paths = []
        items = []
        numeric = [".".join(map(str, p)) for p, n in _nodes(doc) if p and isinstance(n, (int, float))] if paths else []
        for _ in range(rng.randint(1, 3)):
            r = rng.random()
            if numeric and r < 0.4:  # a number of the spec's own, hostile: it may pass the check and reach torch
                path, value = rng.choice(numeric), _yaml_number(rng.choice(NUMBERS[:13]))
            else:
                path = rng.choice(paths) if paths and r < 0.7 else rng.choice(OVERRIDE_PATHS)
                value = rng.choice(OVERRIDE_VALUES)
            items.append(f"{path}={value}")
        case.what.append("overrides " + " ".join(_short(x) for x in items))
        case.argv = ["run", spec, *TINY, *items, "--out", "runs", *RUN_OPTS]

    def _run_folder(self, case: Case, which: str) -> str:
        case.runs["run"] = str(self.prepared[which])
        return "run"

    def _input_file(self, rng: random.Random, case: Case, name: str, sample: tuple) -> str:
        """A hostile input file (PNG, NPY or CSV by name) or a special file by that name."""
        if rng.random() < 0.1:
            kind = rng.choice(SPECIALS)
            case.specials[name] = kind
            case.what.append(f"{name} is {kind}")
            return name
        if name.endswith(".png"):
            data, what = hostile_image(rng)
        elif name.endswith(".npy"):
            data, what = hostile_npy(rng, sample)
        else:
            data, what = hostile_csv(rng, math.prod(sample))
        case.files[name] = data
        case.what.append(f"{name}: {what}")
        return name

    def _checkpoint(self, rng: random.Random, case: Case) -> str:
        kinds = [k for k in self.prepared if k.startswith("ckpt-")]
        which = rng.choice(kinds)
        data = self.prepared[which].read_bytes()
        if rng.random() < 0.4:
            data, what = mutate_text(rng, data)
            case.what.append(f"checkpoint {which[5:]}, bytes mutated: " + "; ".join(what[:3]))
        else:
            case.what.append(f"checkpoint {which[5:]}")
        case.files["weights.pt"] = data
        return "weights.pt"

    def _show(self, rng: random.Random, case: Case) -> None:
        if rng.random() < 0.5:
            target = self._run_folder(case, "classifier")
        else:
            target = self._spec_file(rng, case, SPECS, mutate=0.7)
        argv = ["show", target, "--out", "shown", *RUN_OPTS[1:]]
        for _ in range(rng.randint(0, 2)):
            opt = rng.choice(["sample", "npy", "image", "layers", "network", "checkpoint", "out", "weights"])
            if opt == "sample":
                argv += ["--sample", rng.choice(["-1", "0", "7", "99999999999999999999", "x"])]
            elif opt == "npy":
                argv += ["--npy", self._input_file(rng, case, "x.npy", (1, 28, 28))]
            elif opt == "image":
                argv += ["--image", self._input_file(rng, case, "x.png", (1, 28, 28))]
            elif opt == "layers":
                argv += ["--layers", rng.choice(["all", "", ",", "0,0,0", "-1", "999", "x", "1-3", "conv1," * 1000])]
            elif opt == "network":
                argv += ["--network", rng.choice(["generator", "x", "", "../x"])]
            elif opt == "checkpoint":
                argv += ["--checkpoint", self._checkpoint(rng, case)]
            elif opt == "out":
                argv[argv.index("--out") + 1] = self._output(rng, case, "shown")
            else:
                argv += ["--weights"]
        case.argv = argv

    def _export(self, rng: random.Random, case: Case) -> None:
        if rng.random() < 0.3:
            target = self._run_folder(case, "classifier")
        else:
            target = self._spec_file(rng, case, SPECS, mutate=0.8)
        argv = ["export", target, "--to", "python", "--out", "model.py"]
        for _ in range(rng.randint(0, 2)):
            opt = rng.choice(["size", "out", "checkpoint", "force"])
            if opt == "size":
                argv += ["--size", rng.choice(["T=0", "T=1", "T=2", "T=100000000000", "=", "T", "T=x", "N=3",
                                               "T=-5", "\u202e=3", "T=3"])]
            elif opt == "out":
                argv[argv.index("--out") + 1] = self._output(rng, case, "model.py")
            elif opt == "checkpoint":
                argv += ["--checkpoint", self._checkpoint(rng, case)]
            else:
                argv += ["--force"]
        case.argv = argv

    def _predict(self, rng: random.Random, case: Case) -> None:
        which = rng.choice(["classifier", "classifier", "regression"])
        run = self._run_folder(case, which)
        sample = (1, 28, 28) if which == "classifier" else (50, 1)
        names = {"classifier": ["a.png", "b.npy", "c.csv"], "regression": ["b.npy", "c.csv"]}[which]
        inputs = [self._input_file(rng, case, f"{k}{rng.choice(names)}", sample) for k in range(rng.randint(1, 3))]
        if rng.random() < 0.15:  # a folder of inputs (a class subfolder gives the target)
            sub = rng.choice(["disk", "0", "nonsense", "..", "x" * 200])
            name = f"in/{sub}/{rng.choice(names)}"
            self._input_file(rng, case, name, sample)
            inputs.append("in")
        argv = ["predict", run, "--input", *inputs, *RUN_OPTS[1:]]
        if rng.random() < 0.2:
            argv += ["-n", rng.choice(["0", "-1", "1000000000000", "x"])]
        if rng.random() < 0.15:
            argv += ["--checkpoint", self._checkpoint(rng, case)]
        case.argv = argv

    def _generate(self, rng: random.Random, case: Case) -> None:
        if rng.random() < 0.6:
            run = self._run_folder(case, "charlm")
            argv = ["generate", run, *RUN_OPTS[1:]]
            opts = {"--prime": ["", "To be", "\x1b[2J", "é" * 100, "\u202e", "ZZZZ", "x" * 100_000, "\n\n"],
                    "--length": ["0", "-1", "1", "1000000", "1000001", "99999999999"],
                    "--temperature": ["0", "-1", "nan", "inf", "1e-320", "1e308", "x"],
                    "--top-k": ["0", "1", "1000000", "-1"], "--seed": ["-1", "4294967296", "0"]}
        else:
            run = self._run_folder(case, "gan")
            argv = ["generate", run, *RUN_OPTS[1:]]
            opts = {"-n": ["0", "1", "-1", "100000", "65"], "--seed": ["-1", "0", "4294967295"],
                    "--image": [self._output(rng, case, "samples.png"), "x.jpg", "x", "/dev/full", ""]}
        for _ in range(rng.randint(1, 3)):
            opt = rng.choice(list(opts))
            argv += [opt, rng.choice(opts[opt])]
        if rng.random() < 0.1:
            argv += ["--checkpoint", self._checkpoint(rng, case)]
        case.what.append(" ".join(_short(a) for a in argv[4:]))
        case.argv = argv


def _yaml_number(v: Any) -> str:
    return {math.inf: ".inf", -math.inf: "-.inf"}.get(v, ".nan" if v != v else repr(v))


class _Slow(Exception):
    pass


def checks_clean(data: bytes) -> bool:
    """Whether `dlspec check` finds no error in a spec (in this process: torch-free, a few ms; 5 s at most)."""
    import dlspec

    def slow(*_: Any) -> None:
        raise _Slow

    old = signal.signal(signal.SIGALRM, slow)
    signal.setitimer(signal.ITIMER_REAL, 5.0)
    try:
        checked = dlspec.check(dlspec.loads(data.decode("utf-8"), "spec.yaml"))
        return not any(d.severity == "error" for d in checked.diagnostics)
    except (_Slow, Exception):  # noqa: BLE001 - whatever it is, the run surface tries another mutation
        return False
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _has_train(path: Path) -> bool:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    return re.search(r"^train:", text, re.M) is not None and "path: data/" not in text


# --- preparing the run folders the commands read --------------------------------------------------------------

GAN = """\
name: mlp_gan
networks:
  generator:
    input: [16]
    layers: [{Linear: {out_features: 64}}, {LeakyReLU: 0.2}, {Linear: {out_features: 784}}, Tanh,
             {Unflatten: {dim: 1, unflattened_size: [1, 28, 28]}}]
  discriminator:
    input: [1, 28, 28]
    layers: [Flatten, {Linear: {out_features: 64}}, {LeakyReLU: 0.2}, {Linear: 1}]
train:
  task: {adversarial: {samples: 0}}
  data: {name: shapes, n_train: 32, n_test: 16}
  batch_size: 16
  epochs: 1
"""

CHECKPOINTS = """\
# hostile checkpoints, written by torch: each a file name and what it holds
import sys, torch
from pathlib import Path
out, good = Path(sys.argv[1]), torch.load(sys.argv[2], weights_only=False, map_location="cpu")
m = good["model"]
def save(name, obj):
    torch.save(obj, out / name)
save("missing-model.pt", {k: v for k, v in good.items() if k != "model"})
save("model-list.pt", {**good, "model": [1, 2, 3]})
save("wrong-shapes.pt", {**good, "model": {k: torch.zeros(3, 3) for k in m}})
save("nan-weights.pt", {**good, "model": {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v
                                          for k, v in m.items()}})
save("extra-keys.pt", {**good, "model": {**m, "ghost.weight": torch.zeros(2)}})
save("spec-changed.pt", {**good, "spec": {"input": [3, 1000, 1000], "layers": ["Flatten"]}})
save("epoch-huge.pt", {**good, "epoch": 10**18, "batch": -1})
save("not-a-dict.pt", [good])
save("tensor.pt", torch.zeros(3))
save("bare-state-dict.pt", m)
(out / "not-zip.pt").write_bytes(b"PK\\x03\\x04" + b"\\0" * 100)
(out / "text.pt").write_text("hello")
"""


def prepare(base: Path, env: dict[str, str]) -> dict[str, Path]:
    """Run folders (one training step each, through the real command line) and hostile checkpoints."""
    specs = {"classifier": (str(ROOT / "specs" / "quickstart.yaml"), ["train.data.n_train=32", "train.data.n_test=16"]),
             "regression": (str(ROOT / "specs" / "rnn_series.yaml"), ["train.data.n_train=32", "train.data.n_valid=0",
                                                                       "train.data.n_test=16"]),
             "charlm": (str(ROOT / "specs" / "char_rnn.yaml"), ["train.data.subset={train: 16, test: 8}",
                                                                f"train.data.path={SHAKESPEARE}"])}
    base.mkdir(parents=True)
    (base / "gan.yaml").write_text(GAN, encoding="utf-8")
    specs["gan"] = (str(base / "gan.yaml"), [])
    out: dict[str, Path] = {}
    for name, (spec, items) in specs.items():
        where = base / name
        r = subprocess.run([sys.executable, "-m", "dlspec", "run", spec, *items, "train.epochs=1",
                            "train.batch_size=16", "--out", str(where), "--quiet", "--threads", "1"],
                           capture_output=True, text=True, env=env, cwd=str(base), timeout=600)
        runs = sorted(where.glob("*/*/checkpoint.pt"))
        if r.returncode != 0 or not runs:
            sys.exit(f"fuzz: could not prepare the {name} run folder: {r.stderr.strip()[-2000:]}")
        out[name] = runs[0].parent
    ck = base / "checkpoints"
    ck.mkdir()
    r = subprocess.run([sys.executable, "-c", CHECKPOINTS, str(ck), str(out["classifier"] / "checkpoint.pt")],
                       capture_output=True, text=True, env=env, timeout=300)
    if r.returncode != 0:
        sys.exit(f"fuzz: could not write the hostile checkpoints: {r.stderr.strip()[-2000:]}")
    out["ckpt-good"] = out["classifier"] / "checkpoint.pt"
    for p in sorted(ck.iterdir()):
        out["ckpt-" + p.stem] = p
    return out


# --- running a case --------------------------------------------------------------------------------------------

def materialize(case: Case, folder: Path) -> None:
    """The case's files, special files and run folders in `folder` (made, never copied: a FIFO is not opened)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in case.files.items():
        p = folder / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    for name, src in case.runs.items():
        shutil.copytree(src, folder / name)
    for name, kind in case.specials.items():
        p = folder / name
        p.parent.mkdir(parents=True, exist_ok=True)
        if p.is_symlink() or p.is_file():  # (a special file replaces a file of the same name)
            p.unlink()
        elif p.is_dir():
            shutil.rmtree(p)
        if kind == "fifo":
            os.mkfifo(p)
        elif kind == "dir":
            p.mkdir(exist_ok=True)
        elif kind == "devzero":
            p.symlink_to("/dev/zero")
        elif kind == "devnull":
            p.symlink_to("/dev/null")
        elif kind == "dangling":
            p.symlink_to("nowhere/x")
        elif kind == "loop":
            p.symlink_to(p.name)


def special_lines(case: Case) -> list[str]:
    """The shell commands that make the case's special files (cmd.sh makes them: they are not stored)."""
    lines = []
    for name, kind in case.specials.items():
        q = shlex.quote(name)
        make = {"fifo": f"mkfifo {q}", "dir": f"mkdir -p {q}", "devzero": f"ln -s /dev/zero {q}",
                "devnull": f"ln -s /dev/null {q}", "dangling": f"ln -s nowhere/x {q}",
                "loop": f"ln -s {shlex.quote(Path(name).name)} {q}"}[kind]
        lines.append(f"[ -e {q} ] || [ -L {q} ] || {make}")
    return lines


@dataclass
class Outcome:
    kind: str  # ok, crash, hang
    status: str  # "exit 70", "signal SIGSEGV", "hang (120 s)"
    output: str

    @property
    def finding(self) -> bool:
        return self.kind != "ok"


def classify(rc: int | None, sig: int | None, hung: bool, output: str, limit: int) -> Outcome:
    if hung or sig == signal.SIGALRM:
        return Outcome("hang", f"hang (no answer in {limit} s)", output)
    if sig is not None:
        return Outcome("crash", f"signal {signal.Signals(sig).name}", output)
    if rc == 70 or "Traceback (most recent call last)" in output:
        return Outcome("crash", f"exit {rc}", output)
    if rc not in (0, 1, 2):
        return Outcome("crash", f"exit {rc}", output)
    return Outcome("ok", f"exit {rc}", output)


def limit_memory(memory: int) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))


def run_forked(case: Case, folder: Path, memory: int) -> Outcome:
    """The case in a process forked from this one (dlspec and torch imported already): its own session,
    RLIMIT_AS, an alarm at the limit, stdout and stderr into a file."""
    out = folder / ".output"
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child
        rc = 70
        try:
            os.setsid()
            os.chdir(folder)
            fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
            limit_memory(memory)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            signal.alarm(case.limit)  # SIGALRM's default action ends the process: a hang
            import torch

            torch.set_num_threads(1)
            from dlspec import cli

            sys.argv = ["dlspec", *case.argv]
            rc = cli.main(case.argv)
        except SystemExit as e:
            rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        except BaseException:  # noqa: BLE001 - what escapes dlspec's own handler: a finding
            import traceback

            traceback.print_exc()
            rc = 70
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(int(rc) & 0xFF if isinstance(rc, int) else 70)
    try:
        hung, status = _wait(pid, case.limit + 15)
    except BaseException:  # Ctrl-C of the fuzzer: the case goes with it
        os.killpg(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise
    try:
        os.killpg(pid, signal.SIGKILL)  # what it started (torchrun's processes, ...)
    except (ProcessLookupError, PermissionError):
        pass
    text = out.read_bytes().decode("utf-8", "replace") if out.exists() else ""
    rc = os.WEXITSTATUS(status) if not hung and os.WIFEXITED(status) else None
    sig = os.WTERMSIG(status) if not hung and os.WIFSIGNALED(status) else None
    return classify(rc, sig, hung, text, case.limit)


def _wait(pid: int, limit: float) -> tuple[bool, int]:
    """(whether it passed the limit and was killed, its wait status)."""
    deadline = time.monotonic() + limit
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        fd = None
    try:
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return False, status
            left = deadline - time.monotonic()
            if left <= 0:
                os.killpg(pid, signal.SIGKILL)
                return True, os.waitpid(pid, 0)[1]
            if fd is not None:
                select.select([fd], [], [], min(left, 1.0))
            else:
                time.sleep(0.01)
    finally:
        if fd is not None:
            os.close(fd)


def run_real(case: Case, folder: Path, memory: int, env: dict[str, str]) -> Outcome:
    """The case through the real command line, in a fresh process (the confirmation of a finding)."""
    try:
        p = subprocess.run([sys.executable, "-m", "dlspec", *case.argv], cwd=folder, env=env,
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=case.limit + 10, preexec_fn=lambda: (os.setsid(), limit_memory(memory)))
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode("utf-8", "replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        return classify(None, None, True, out, case.limit)
    out = p.stdout.decode("utf-8", "replace")
    return classify(p.returncode if p.returncode >= 0 else None, -p.returncode if p.returncode < 0 else None, False,
                    out, case.limit)


def signature(case: Case, o: Outcome) -> str:
    """What makes two findings the same: the surface, what happened, the exception and dlspec's innermost frame."""
    text = o.output
    exc = ""
    m = re.search(r"internal error \((\w+): (.*?)\); this is a bug", text)
    if m:  # the exception and its message, numbers and quoted names left out
        exc = m.group(1) + ": " + re.sub(r"'[^']*'|\"[^\"]*\"|\d+(\.\d+)?", "_", m.group(2))[:60]
    tb = text.rsplit("Traceback (most recent call last)", 1)
    if len(tb) == 2:
        frames = re.findall(r'File "([^"]+)", line \d+, in (\S+)', tb[1])
        own = [f"{Path(f).name}:{fn}" for f, fn in frames if "/dlspec/" in f]
        last = [ln for ln in tb[1].strip().splitlines() if ln and not ln.startswith(" ")]
        exc = (last[-1].split(":")[0] if last else "") + (" at " + own[-1] if own else "")
    if o.kind == "hang":  # what it may have waited on
        exc = ", ".join(sorted(set(case.specials.values()))) or "no special file"
    return f"{case.surface} · {o.status} · {exc}".strip(" ·")


def headline(o: Outcome) -> str:
    lines = [ln for ln in o.output.strip().splitlines() if ln.strip()]
    for ln in lines:
        if "internal error" in ln:
            return ln[:300]
    return (lines[-1] if lines else "(no output)")[:300]


def save(case: Case, o: Outcome, real: Outcome | None, debug: str, seed: int, out: Path, env: dict[str, str]) -> Path:
    """The finding's folder: its files, cmd.sh, output.txt, traceback.txt, case.json."""
    tag = hashlib.sha1(f"{seed}/{case.index}".encode()).hexdigest()[:6]
    folder = out / f"{case.index:06d}-{case.surface}-{o.kind}-{tag}"
    if folder.exists():
        shutil.rmtree(folder)
    materialize(Case(case.index, case.surface, case.argv, case.files, {}, case.runs, case.what), folder)
    keep = {k: env[k] for k in ("DLSPEC_DATA", "OMP_NUM_THREADS", "NO_COLOR") if k in env}
    keep["PYTHONPATH"] = str(ROOT)  # the tree that was fuzzed
    lines = ["#!/bin/sh", f"# dlspec fuzz finding: {o.status} in `dlspec {case.surface}` (seed {seed}, case {case.index})",
             *(f"# {w}" for w in case.what), 'cd "$(dirname "$0")" || exit 1', *special_lines(case),
             "exec env " + " ".join(f"{k}={shlex.quote(v)}" for k, v in keep.items()) + " python -m dlspec "
             + " ".join(shlex.quote(a) for a in case.argv)]
    (folder / "cmd.sh").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (folder / "cmd.sh").chmod(0o755)
    (folder / "output.txt").write_text(o.output[-20_000:], encoding="utf-8")
    if debug:
        (folder / "traceback.txt").write_text(debug[-20_000:], encoding="utf-8")
    info = {"seed": seed, "case": case.index, "surface": case.surface, "status": o.status, "argv": case.argv,
            "what": case.what, "headline": headline(o), "signature": signature(case, o),
            "confirmed": None if real is None else real.finding, "confirmed_status": None if real is None else real.status,
            "specials": case.specials, "replay": f"python tests/fuzz.py --seed {seed} --replay {case.index}"}
    (folder / "case.json").write_text(json.dumps(info, indent=1, ensure_ascii=False), encoding="utf-8")
    return folder


# --- the loop ----------------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="fuzz.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="how long to fuzz (default 10)")
    ap.add_argument("--cases", type=int, default=None, help="stop after this many cases")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="fuzz_findings", help="where the findings go (default fuzz_findings/)")
    ap.add_argument("--surfaces", default=",".join(SURFACES), help=f"comma-separated, of {', '.join(SURFACES)}")
    ap.add_argument("--memory", type=float, default=3.0, help="RLIMIT_AS of each case, GiB (default 3)")
    ap.add_argument("--replay", type=int, metavar="N", help="run case N of --seed again and print its output")
    ap.add_argument("--no-confirm", action="store_true", help="save findings without re-running them")
    a = ap.parse_args(argv)
    surfaces = [s for s in a.surfaces.split(",") if s]
    bad = [s for s in surfaces if s not in SURFACES]
    if bad or not surfaces:
        ap.error(f"unknown surface {', '.join(bad) or '(none)'}; the surfaces are {', '.join(SURFACES)}")
    memory = int(a.memory * 2**30)
    out = Path(a.out).resolve()
    env = dict(os.environ, OMP_NUM_THREADS="1", NO_COLOR="1", PYTHONPATH=os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))
    env.pop("DLSPEC_DEBUG", None)
    os.environ.clear()
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))
    scratch = Path(tempfile.mkdtemp(prefix="dlspec-fuzz-"))
    try:
        prepared: dict[str, Path] = {}
        if set(surfaces) & {"show", "export", "predict", "generate"}:
            print(f"fuzz: preparing run folders in {scratch} ...", flush=True)
            prepared = prepare(scratch / "base", env)
        import torch  # noqa: F401 - once, here: every forked case starts with it (no torch op runs in this process)

        import dlspec.cli  # noqa: F401

        maker = Maker(a.seed, prepared, surfaces)
        if a.replay is not None:
            case = maker.make(a.replay)
            folder = scratch / "replay"
            materialize(case, folder)
            o = run_forked(case, folder, memory)
            print(f"case {case.index} ({case.surface}): {' '.join(shlex.quote(x) for x in case.argv)[:2000]}")
            print("\n".join("  " + w for w in case.what))
            print(f"-> {o.status}\n{o.output[-5000:]}")
            return 0
        return fuzz(a, maker, scratch, out, memory, env)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def fuzz(a: argparse.Namespace, maker: Maker, scratch: Path, out: Path, memory: int, env: dict[str, str]) -> int:
    stop = time.monotonic() + a.minutes * 60
    counts: dict[str, int] = {s: 0 for s in maker.surfaces}
    seconds: dict[str, float] = {s: 0.0 for s in maker.surfaces}
    statuses: dict[str, dict[str, int]] = {s: {} for s in maker.surfaces}  # how the cases ended
    found: dict[str, list[Any]] = {}  # signature -> [count, folder, outcome status, headline, confirmed]
    try:
        loop(a, maker, scratch, out, memory, env, stop, counts, seconds, statuses, found)
    except KeyboardInterrupt:
        print("\nfuzz: stopped (Ctrl-C)")
    summary(a, maker, counts, seconds, statuses, found)
    return 1 if found else 0


def loop(a: argparse.Namespace, maker: Maker, scratch: Path, out: Path, memory: int, env: dict[str, str],
         stop: float, counts: dict[str, int], seconds: dict[str, float], statuses: dict[str, dict[str, int]],
         found: dict[str, list[Any]]) -> None:
    i = 0
    last_report = time.monotonic()
    while time.monotonic() < stop and (a.cases is None or i < a.cases):
        case = maker.make(i)
        folder = scratch / "case"
        shutil.rmtree(folder, ignore_errors=True)
        t0 = time.monotonic()
        try:
            materialize(case, folder)
            o = run_forked(case, folder, memory)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        seconds[case.surface] += time.monotonic() - t0
        counts[case.surface] += 1
        statuses[case.surface][o.status] = statuses[case.surface].get(o.status, 0) + 1
        if o.finding:
            sig = signature(case, o)
            if sig in found:
                found[sig][0] += 1
            else:
                real, debug = None, ""
                if not a.no_confirm:
                    fresh = scratch / "confirm"
                    shutil.rmtree(fresh, ignore_errors=True)
                    materialize(case, fresh)
                    real = run_real(case, fresh, memory, env)
                    shutil.rmtree(fresh, ignore_errors=True)
                    if o.kind != "hang":  # (the traceback of what dlspec reports as an internal error)
                        materialize(case, fresh)
                        debug = run_real(case, fresh, memory, {**env, "DLSPEC_DEBUG": "1"}).output
                        shutil.rmtree(fresh, ignore_errors=True)
                saved = save(case, o, real, debug, a.seed, out, env)
                found[sig] = [1, saved, o.status, headline(o), None if real is None else real.finding]
                print(f"fuzz: case {i} ({case.surface}): {o.status}: {headline(o)[:160]}\n      -> {saved}", flush=True)
        i += 1
        if time.monotonic() - last_report > 60:
            last_report = time.monotonic()
            print(f"fuzz: {i} cases, {len(found)} findings", flush=True)


def summary(a: argparse.Namespace, maker: Maker, counts: dict[str, int], seconds: dict[str, float],
            statuses: dict[str, dict[str, int]], found: dict[str, list[Any]]) -> None:
    print(f"\nfuzz: seed {a.seed}, {sum(counts.values())} cases in {sum(seconds.values()):.0f} s")
    print(f"{'surface':<10} {'cases':>6} {'seconds':>8} {'findings':>9} {'repeats':>8}  how they ended")
    for s in maker.surfaces:
        mine = [v for k, v in found.items() if k.startswith(s + " ")]
        ended = ", ".join(f"{k} ×{n}" for k, n in sorted(statuses[s].items(), key=lambda kv: -kv[1]))
        print(f"{s:<10} {counts[s]:>6} {seconds[s]:>8.0f} {len(mine):>9} {sum(v[0] - 1 for v in mine):>8}  {ended}")
    if found:
        print(f"\n{len(found)} findings (the first case of each; its folder has cmd.sh to repeat it):")
        for sig, (n, folder, _, head, confirmed) in found.items():
            conf = {True: "confirmed", False: "NOT confirmed by a fresh process", None: "unconfirmed"}[confirmed]
            print(f"- {sig} (×{n}, {conf})\n    {head[:200]}\n    {folder}")


if __name__ == "__main__":
    sys.exit(main())
