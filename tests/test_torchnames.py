"""The table of torch's losses, optimizers and schedulers that `dlspec check` reads instead of torch.

It is generated from the pinned torch (`python -m dlspec.torchnames`); these tests regenerate it and
compare, so a torch upgrade that adds, removes or retypes an argument fails here, not silently in users'
checks; and they check the kinds against torch's own defaults and the static check against `dlspec run`.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dlspec import torchnames

ROOT = Path(__file__).resolve().parent.parent


def pinned_torch() -> str:
    text = (ROOT / "constraints.txt").read_text(encoding="utf-8")
    m = re.search(r"^torch==([\d.]+)", text, re.M)
    assert m, "constraints.txt pins torch"
    return m.group(1)


def test_table_is_from_the_pinned_torch() -> None:
    assert torchnames.version() == pinned_torch(), (
        f"dlspec/torch_table.py is from torch {torchnames.version()} but constraints.txt pins {pinned_torch()}: "
        "install the pin and run `python -m dlspec.torchnames`, then review the diff")


def test_table_is_current() -> None:
    torch = pytest.importorskip("torch")
    if torch.__version__.split("+")[0] != pinned_torch():
        pytest.skip(f"torch {torch.__version__} is not the pinned {pinned_torch()} (.ci/torch_versions)")
    path = ROOT / "dlspec" / "torch_table.py"
    assert path.read_text(encoding="utf-8") == torchnames.generate(), (
        "dlspec/torch_table.py differs from what the installed torch gives: run `python -m dlspec.torchnames` "
        "and review the diff (new or changed arguments of torch's losses, optimizers or schedulers)")


def test_the_table_accepts_torchs_own_defaults() -> None:
    """Each argument's kind accepts the default torch gives it (a reference from torch, not from dlspec)."""
    for kind, classes in torchnames.table().items():
        for name, params in classes.items():
            for p in params:
                if p.required or p.kind.rstrip("?") == "python" or isinstance(p.default, str) and \
                        p.default.startswith("<"):
                    continue
                assert torchnames.accepts(p.kind, p.default), (kind, name, p)


@pytest.mark.parametrize("kind, value, ok", [
    ("number", 0.1, True), ("number", 3, True), ("number", "abc", False), ("number", True, False),
    ("integer", 2, True), ("integer", 2.0, False), ("bool", False, True), ("bool", 0, False),
    ("list:number:2", [0.9, 0.999], True), ("list:number:2", [0.9], False), ("list:integer:*", [3, 6], True),
    ("choice:min|max", "max", True), ("choice:min|max", "avg", False), ("numbers", [0.1, 0.2], True),
    ("numbers", 0.1, True), ("tensor?", None, True), ("tensor?", [1, 2.5], True), ("number", None, False),
    ("python", 1, False), ("any", {"a": 1}, True),
])
def test_kinds(kind: str, value: object, ok: bool) -> None:
    assert torchnames.accepts(kind, value) is ok


def test_value_torch_refuses_statically_too() -> None:
    """A value of the wrong kind is found by check, at the argument, with torch's default as the help."""
    import dlspec

    text = ("input: [1, 28, 28]\nlayers: [Flatten, {Linear: 10}]\ntrain:\n  data: {name: shapes}\n"
            "  optimizer: {Adam: {lr: fast, betas: 0.9}}\n  scheduler: {StepLR: {gamma: 0.5}}\n")
    got = [(d.code, d.path, d.message, d.help) for d in dlspec.check(dlspec.loads(text)).diagnostics]
    assert got == [
        ("train", ("train", "optimizer", "Adam", "lr"), "Adam lr must be a number, got fast", "torch's default is 0.001"),
        ("train", ("train", "optimizer", "Adam", "betas"), "Adam betas must be a list of 2 numbers, got 0.9",
         "torch's default is [0.9, 0.999]"),
        ("train", ("train", "scheduler", "StepLR"), "StepLR needs `step_size` (an integer)",
         "write scheduler: {StepLR: {step_size: 2}}"),
    ]
    import torch

    with pytest.raises((TypeError, ValueError)):  # what torch itself says to those values
        torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr="fast")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        torch.optim.lr_scheduler.StepLR(torch.optim.SGD([torch.zeros(1, requires_grad=True)]), gamma=0.5)  # type: ignore[call-arg]


def test_newer_torch_makes_unknown_names_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    """A name missing from the table may be one a newer torch added: a warning then, `dlspec run` decides."""
    import importlib.metadata

    import dlspec

    text = "input: [4]\nlayers: [{Linear: 2}]\ntrain:\n  data: {name: shapes}\n  optimizer: Lion\n"
    (d,) = [d for d in dlspec.check(dlspec.loads(text)).diagnostics if d.code == "torch-name"]
    assert d.severity == "error"
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "99.0.0")
    (d,) = [d for d in dlspec.check(dlspec.loads(text)).diagnostics if d.code == "torch-name"]
    assert d.severity == "warning" and "torch 99.0.0 is installed" in d.message
