"""Keep README.md and docs/*.md honest: every example in them is real output of the current code.

    python docs/examples.py            # check: exit 1 and show a diff when an example is stale
    python docs/examples.py --update   # rewrite the stale examples in place
    python docs/examples.py docs/training.md   # only these files

Three kinds of examples are checked:

* ```console blocks: each ``$ command`` line is run with bash in the repository root (the Python running
  this script first on PATH, ``NO_COLOR=1``, ``COLUMNS=100``) and the lines after it, up to the next
  ``$`` line, must be its output (stdout and stderr together, trailing spaces ignored).  What differs
  from machine to machine is compared loosely (``same()``): run folders' date-times, timings and
  samples/s, metrics to within 0.01 + 5 %, and the path lines that depend on the CPU (the bf16 hint).
* generated tables between ``<!-- generated: NAME -->`` and ``<!-- end generated -->``: ``codes`` is
  the table of `dlspec codes`, ``layers`` of `dlspec layers` (``layer_count``: the README's count of them),
  ``train`` the options of the `train:` section (dlspec.trainspec.TRAIN_ARGS), ``datasets`` the data sets
  and their options, ``tasks`` the tasks (dlspec.tasks) and theirs.
* ```pycon blocks: run as doctests (``>>>`` lines), in the repository root.

And every relative link must lead somewhere: the file exists, and a ``#anchor`` is one of its headings.
"""

from __future__ import annotations

import difflib
import doctest
import glob
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FENCE = re.compile(r"^```console\n(.*?)^```$", re.S | re.M)
GENERATED = re.compile(r"(<!-- generated: (\w+) -->\n)(.*?)(<!-- end generated -->)", re.S)
PYCON = re.compile(r"^```pycon\n(.*?)^```$", re.S | re.M)

# output that differs between machines and runs: masked before comparing (the file keeps the real text)
VOLATILE = [
    (re.compile(r"/tmp/tmp[\w.-]+"), "<tmp>"),
    (re.compile(r"\b\d{8}-\d{6}\b"), "<date-time>"),
    (re.compile(r"\b[\d,]+ samples/s\b"), "<n> samples/s"),
    (re.compile(r"\b\d+(?:\.\d+)?s\b"), "<t>s"),
    (re.compile(r"\b\d+(?:\.\d+)? (?:ms|µs)\b"), "<t>"),
]
# lines present on some CPUs only (the planner's bf16 hint): left out of the comparison
MACHINE_LINES = [re.compile(r"^\s+precision: fp32 as written; this CPU computes bf16 natively")]
NUMBER = re.compile(r"-?\d+\.\d{3,}")


def files(argv: list[str]) -> list[str]:
    named = [a for a in argv if not a.startswith("--")]
    if named:
        return [os.path.abspath(a) for a in named]
    return [os.path.join(ROOT, "README.md")] + sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PATH"] = os.path.dirname(sys.executable) + os.pathsep + e.get("PATH", "")
    e["NO_COLOR"] = "1"
    e["COLUMNS"] = "100"
    e.pop("FORCE_COLOR", None)
    return e


def run(cmd: str) -> str:
    r = subprocess.run(["bash", "-c", cmd], cwd=ROOT, env=env(), stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=300)
    return "\n".join(line.rstrip() for line in r.stdout.rstrip("\n").split("\n"))


def _masked(text: str) -> tuple[list[str], list[float]]:
    lines = [line for line in text.split("\n") if not any(p.search(line) for p in MACHINE_LINES)]
    out = "\n".join(lines)
    for pattern, mask in VOLATILE:
        out = pattern.sub(mask, out)
    numbers = [float(n) for n in NUMBER.findall(out)]
    return NUMBER.sub("<x>", out).split("\n"), numbers


def same(old: str, new: str) -> bool:
    """old and new are the same output up to what differs between machines and runs."""
    a, na = _masked(old)
    b, nb = _masked(new)
    return a == b and all(abs(x - y) <= 0.01 + 0.05 * abs(x) for x, y in zip(na, nb, strict=True))


def console(block: str) -> str:
    """The block with every command's output replaced by what the command prints now (kept as it was when
    it is the same up to what varies between machines)."""
    out: list[str] = []
    old: list[str] = []
    lines = block.rstrip("\n").split("\n")
    chunks: list[tuple[str, list[str]]] = []
    for line in lines:
        if line.startswith("$ "):
            chunks.append((line, []))
        elif chunks:
            chunks[-1][1].append(line)
        else:
            old.append(line)
    out += old
    for cmd, was in chunks:
        out.append(cmd)
        text = run(cmd[2:])
        previous = "\n".join(was)
        if text and same(previous, text):
            text = previous
        if text:
            out.append(text)
    return "\n".join(out) + "\n"


def two_columns(text: str) -> list[tuple[str, str]]:
    rows = []
    for line in text.splitlines():
        if line.strip():
            a, _, b = line.partition(" ")
            rows.append((a, b.strip()))
    return rows


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def generated(name: str) -> str:
    sys.path.insert(0, ROOT)
    from dlspec.registry import REQUIRED

    def show(v: object) -> str:
        return "required" if v is REQUIRED else "null" if v is None else str(v).lower() if isinstance(v, bool) \
            else str(v)

    if name == "codes":
        rows = ["| code | meaning |", "|---|---|"]
        rows += ["| `" + c + "` | " + _cell(m) + " |" for c, m in two_columns(run("dlspec codes"))]
    elif name == "layers":
        families = [(fam, [n.strip() for n in names.split(",")]) for fam, names in two_columns(run("dlspec layers"))]
        rows = ["| family | layer types |", "|---|---|"]
        rows += [f"| {fam} | {', '.join(f'`{n}`' for n in names)} |" for fam, names in families]
        rows += ["", f"{sum(len(names) for _, names in families)} layer types in all."]
    elif name == "layer_count":  # the README's sentence: the same count as the table of docs/spec-language.md
        count = sum(len(names.split(",")) for _, names in two_columns(run("dlspec layers")))
        rows = [f"{count} layer types, by family, with torch's arguments: `dlspec layers`, `dlspec layers NAME`."]
    elif name == "train":
        from dlspec.trainspec import TRAIN_ARGS

        rows = ["| option | value | default | meaning |", "|---|---|---|---|"]
        rows += [f"| `{k}` | {_cell(a.kind.text)} | {show(a.default)} | {a.doc} |" for k, a in TRAIN_ARGS.items()]
    elif name == "tasks":
        from dlspec.tasks import TASKS

        rows = []
        for tname, entry in TASKS.items():
            rows += [f"**`{tname}`** — {entry.doc}", ""]
            if entry.args:
                rows += ["| option | value | default | meaning |", "|---|---|---|---|"]
                rows += [f"| `{k}` | {_cell(a.kind.text)} | {_cell(show(a.default))} | {_cell(a.doc)} |"
                         for k, a in entry.args.items()]
                rows.append("")
        rows = rows[:-1]
    elif name == "datasets":
        from dlspec.data import DATASETS

        rows = []
        for dname, entry in sorted(DATASETS.items()):
            rows += [f"**`{dname}`** — {entry.doc}" + (f" (needs {entry.needs})" if entry.needs else ""), "",
                     "| option | value | default | meaning |", "|---|---|---|---|"]
            rows += [f"| `{k}` | {_cell(a.kind.text)} | {_cell(show(a.default))} | {_cell(a.doc)} |"
                     for k, a in entry.args.items()]
            rows.append("")
        rows = rows[:-1]
    else:
        raise SystemExit(f"docs/examples.py: unknown generated section {name!r}")
    return "\n".join(rows) + "\n"


def refresh(text: str) -> str:
    text = FENCE.sub(lambda m: "```console\n" + console(m.group(1)) + "```", text)
    return GENERATED.sub(lambda m: m.group(1) + generated(m.group(2)) + m.group(4), text)


def doctests(text: str, path: str) -> int:
    """Run the pycon blocks as one doctest; returns the number of failures."""
    source = "\n".join(m.group(1) for m in PYCON.finditer(text))
    if not source.strip():
        return 0
    parser = doctest.DocTestParser()
    test = parser.get_doctest(source, {}, f"{os.path.relpath(path, ROOT)} (pycon blocks)", path, 0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        runner.run(test)
    finally:
        os.chdir(cwd)
    return runner.failures


LINK = re.compile(r"\]\(([^)\s]+)\)")
CODE = re.compile(r"^```.*?^```$", re.S | re.M)


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def anchors(path: str) -> set[str]:
    with open(path, encoding="utf-8") as f:
        text = CODE.sub("", f.read())
    return {slug(m.group(1)) for m in re.finditer(r"^#+ (.+)$", text, re.M)}


def broken_links(text: str, path: str) -> list[str]:
    out = []
    for target in LINK.findall(CODE.sub("", text)):
        if re.match(r"[a-z]+:", target):
            continue  # https:, mailto:
        file, _, anchor = target.partition("#")
        dest = os.path.normpath(os.path.join(os.path.dirname(path), file)) if file else path
        if not os.path.exists(dest):
            out.append(f"{target}: no such file")
        elif anchor and dest.endswith(".md") and anchor not in anchors(dest):
            out.append(f"{target}: no heading #{anchor} in {os.path.relpath(dest, ROOT)}")
    return out


def main(argv: list[str]) -> int:
    update = "--update" in argv
    failed = 0
    for path in files(argv):
        rel = os.path.relpath(path, ROOT)
        with open(path, encoding="utf-8") as f:
            old = f.read()
        new = refresh(old)
        failures = doctests(new, path)
        for b in broken_links(new, path):
            print(f"{rel}: broken link {b}")
            failed += 1
        if new != old:
            if update:
                with open(path, "w", encoding="utf-8") as f:
                    f.write(new)
                print(f"{rel}: examples updated")
            else:
                sys.stdout.writelines(difflib.unified_diff(old.splitlines(True), new.splitlines(True),
                                                           rel, f"{rel} (current output)"))
                print(f"\n{rel}: examples are stale; run `python docs/examples.py --update` and review the diff")
                failed += 1
                continue
        if failures:
            print(f"{rel}: {failures} pycon example(s) failed")
            failed += 1
        elif new == old:
            print(f"{rel}: every example matches the current output")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
