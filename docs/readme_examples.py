"""Keep README.md honest: every example in it is real output of the current code.

    python docs/readme_examples.py            # check: exit 1 and show a diff when an example is stale
    python docs/readme_examples.py --update   # rewrite the stale examples in place

Three kinds of examples are checked:

* ```console blocks: each ``$ command`` line is run with bash in the repository root (the Python running
  this script first on PATH, ``NO_COLOR=1``, ``COLUMNS=100``) and the lines after it, up to the next
  ``$`` line, must be its output (stdout and stderr together, trailing spaces ignored).
* generated tables between ``<!-- generated: NAME -->`` and ``<!-- end generated -->``: ``codes`` is
  the table of `dlspec codes`, ``layers`` the table of `dlspec layers`, ``train`` the options of the
  `train:` section (dlspec.trainspec.TRAIN_ARGS).
* ```pycon blocks: run as doctests (``>>>`` lines), in the repository root.
"""

from __future__ import annotations

import difflib
import doctest
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
FENCE = re.compile(r"^```console\n(.*?)^```$", re.S | re.M)
GENERATED = re.compile(r"(<!-- generated: (\w+) -->\n)(.*?)(<!-- end generated -->)", re.S)
PYCON = re.compile(r"^```pycon\n(.*?)^```$", re.S | re.M)


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


def console(block: str) -> str:
    """The block with every command's output replaced by what the command prints now."""
    out: list[str] = []
    for line in block.rstrip("\n").split("\n"):
        if line.startswith("$ "):
            out.append(line)
            text = run(line[2:])
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


def generated(name: str) -> str:
    if name == "codes":
        rows = ["| code | meaning |", "|---|---|"]
        rows += ["| `" + c + "` | " + m.replace("|", "\\|") + " |" for c, m in two_columns(run("dlspec codes"))]
    elif name == "layers":
        families = [(fam, [n.strip() for n in names.split(",")]) for fam, names in two_columns(run("dlspec layers"))]
        rows = ["| family | layer types |", "|---|---|"]
        rows += [f"| {fam} | {', '.join(f'`{n}`' for n in names)} |" for fam, names in families]
        rows += ["", f"{sum(len(names) for _, names in families)} layer types in all."]
    elif name == "train":
        sys.path.insert(0, ROOT)
        from dlspec.registry import REQUIRED
        from dlspec.trainspec import TRAIN_ARGS

        def show(v: object) -> str:
            return "required" if v is REQUIRED else "null" if v is None else str(v).lower() if isinstance(v, bool) \
                else str(v)

        rows = ["| option | value | default | meaning |", "|---|---|---|---|"]
        rows += [f"| `{k}` | {a.kind.text.replace('|', chr(92) + '|')} | {show(a.default)} | {a.doc} |"
                 for k, a in TRAIN_ARGS.items()]
    else:
        raise SystemExit(f"readme_examples: unknown generated section {name!r}")
    return "\n".join(rows) + "\n"


def refresh(text: str) -> str:
    text = FENCE.sub(lambda m: "```console\n" + console(m.group(1)) + "```", text)
    return GENERATED.sub(lambda m: m.group(1) + generated(m.group(2)) + m.group(4), text)


def doctests(text: str) -> int:
    """Run the pycon blocks as one doctest; returns the number of failures."""
    source = "\n".join(m.group(1) for m in PYCON.finditer(text))
    if not source.strip():
        return 0
    parser = doctest.DocTestParser()
    test = parser.get_doctest(source, {}, "README.md (pycon blocks)", README, 0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        runner.run(test)
    finally:
        os.chdir(cwd)
    return runner.failures


def main(argv: list[str]) -> int:
    update = "--update" in argv
    with open(README, encoding="utf-8") as f:
        old = f.read()
    new = refresh(old)
    failures = doctests(new)
    if new != old:
        if update:
            with open(README, "w", encoding="utf-8") as f:
                f.write(new)
            print("README.md: examples updated")
        else:
            sys.stdout.writelines(difflib.unified_diff(old.splitlines(True), new.splitlines(True),
                                                       "README.md", "README.md (current output)"))
            print("\nREADME.md: examples are stale; run `python docs/readme_examples.py --update` and review the diff")
            return 1
    if failures:
        print(f"README.md: {failures} pycon example(s) failed")
        return 1
    if new == old:
        print("README.md: every example matches the current output")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
