"""Golden files: the text output of `dlspec check --color never` for a few specs and every specs/errors file.

The golden text pins the whole rendering: the layer table, the totals line, and every diagnostic's
message, source excerpt, caret, notes and help. Each golden file is the exact stdout of

    python -m dlspec check --color never specs/<name>.yaml          (run from the repository root)

stored as tests/golden/<name>.txt (tests/golden/errors/<name>.txt for specs/errors/<name>.yaml), so the
paths in it are relative.

After an intended change to the output, regenerate the golden files and review the diff:

    DLSPEC_UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_golden.py
    git diff tests/golden

With DLSPEC_UPDATE_GOLDEN set the tests write the files (creating missing ones, deleting none) and pass.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

import pytest

from dlspec.cli import main

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).resolve().parent / "golden"
UPDATE = bool(os.environ.get("DLSPEC_UPDATE_GOLDEN"))

# the good specs with a golden file: a plain CNN, a recurrent model, nested blocks and residuals
GOOD = ["specs/lenet.yaml", "specs/lstm_rows.yaml", "specs/resnet_tiny.yaml"]
BAD = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "specs" / "errors").glob("*.yaml"))
CASES = GOOD + BAD


def golden_path(spec: str) -> Path:
    rel = Path(spec).relative_to("specs")
    return GOLDEN / rel.with_suffix(".txt")


def render(spec: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> tuple[str, int]:
    monkeypatch.chdir(ROOT)
    monkeypatch.delenv("NO_COLOR", raising=False)
    capsys.readouterr()
    rc = main(["check", "--color", "never", spec])
    out, err = capsys.readouterr()
    assert err == ""
    return out, rc


@pytest.mark.parametrize("spec", CASES, ids=lambda s: Path(s).stem)
def test_golden(spec: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    out, rc = render(spec, capsys, monkeypatch)
    assert rc in ((0,) if spec in GOOD else (0, 1)), out
    assert "\x1b[" not in out, "--color never must not print escape codes"
    path = golden_path(spec)
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text(encoding="utf-8") != out:
            path.write_text(out, encoding="utf-8")
        return
    if not path.exists():
        pytest.fail(f"no golden file {path.relative_to(ROOT)}; create it with "
                    "DLSPEC_UPDATE_GOLDEN=1 pytest tests/test_golden.py")
    want = path.read_text(encoding="utf-8")
    if out != want:
        diff = "".join(difflib.unified_diff(want.splitlines(True), out.splitlines(True),
                                            f"{path.relative_to(ROOT)} (golden)", f"dlspec check {spec} (now)"))
        pytest.fail(f"the output of `dlspec check --color never {spec}` changed; if intended, regenerate with "
                    f"DLSPEC_UPDATE_GOLDEN=1 pytest tests/test_golden.py\n{diff}")


def test_golden_paths_are_relative() -> None:
    for spec in CASES:
        path = golden_path(spec)
        if path.exists():
            text = path.read_text(encoding="utf-8")
            assert str(ROOT) not in text, f"{path.name} holds an absolute path"
            assert text.startswith(f"{spec}: "), f"{path.name} should start with the relative path {spec}"


def test_no_orphan_golden_files() -> None:
    """Every golden file belongs to a spec that is still tested (delete the stale ones by hand)."""
    expected = {golden_path(s) for s in CASES}
    orphans = sorted(p.relative_to(ROOT).as_posix() for p in GOLDEN.rglob("*.txt") if p not in expected)
    assert not orphans, f"golden files without a spec: {orphans}"


def test_color_always_adds_escapes(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The golden files are the colourless rendering of what a terminal shows."""
    monkeypatch.chdir(ROOT)
    spec = "specs/errors/mnist_flatten_64x6x6.yaml"
    main(["check", "--color", "always", spec])
    coloured = capsys.readouterr().out
    plain, _ = render(spec, capsys, monkeypatch)
    assert "\x1b[" in coloured
    assert coloured.replace("\x1b[1;31m", "").replace("\x1b[1;33m", "").replace("\x1b[0m", "") == plain


JSON_GOLDEN = GOLDEN / "diagnostics.json"


def test_golden_json_diagnostics(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Every field of every diagnostic of `dlspec check --format json` for every error spec, in one file:
    a field that vanishes or changes (a help, a path, a column) fails here."""
    import json

    monkeypatch.chdir(ROOT)
    capsys.readouterr()
    main(["check", "--format", "json", *BAD])
    docs = json.loads(capsys.readouterr().out)
    got = json.dumps({d["file"]: d["diagnostics"] for d in docs}, indent=2, ensure_ascii=False) + "\n"
    if UPDATE:
        if not JSON_GOLDEN.exists() or JSON_GOLDEN.read_text(encoding="utf-8") != got:
            JSON_GOLDEN.write_text(got, encoding="utf-8")
        return
    assert JSON_GOLDEN.exists(), "create it with DLSPEC_UPDATE_GOLDEN=1 pytest tests/test_golden.py"
    want = JSON_GOLDEN.read_text(encoding="utf-8")
    if got != want:
        diff = "".join(difflib.unified_diff(want.splitlines(True), got.splitlines(True), "diagnostics.json (golden)",
                                            "dlspec check --format json (now)"))
        pytest.fail(f"the JSON diagnostics changed; if intended, regenerate with DLSPEC_UPDATE_GOLDEN=1\n{diff}")
