"""Symbolic sizes that are equal for every value compare equal, and only those.

The reference is evaluation: `same(a, b)` must imply a and b evaluate to the same integer for every value
of their symbols in a range (and for the multiples the declaration allows); and stacks of layers that
torch maps back to the input's size are accepted by Residual, checked against torch for many lengths.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import dlspec
from dlspec import dims
from dlspec.algebra import same, simplify

PAIRS = [
    ("((L-1)*2-2+4+2-3-1)//2+1", "L", True, {}), ("(L*2)//2", "L", True, {}), ("(L*2-2)//2+1", "L", True, {}),
    ("(H//2)*2", "H", False, {}), ("(H//2)*2", "H", True, {"H": 2}), ("((H//4)*4)//2", "H//2", True, {"H": 4}),
    ("L//2", "(L+1)//2", False, {}), ("ceil(L/2)", "(L+1)//2", True, {}), ("T*64", "64*T", True, {}),
    ("min(T, 8)", "min(8, T)", True, {}), ("L-2", "L-1", False, {}), ("(L-3)//2+1", "(L-1)//2", True, {}),
    ("((L-2)//2-1)//2+1", "L//4", True, {}), ("((T+1)//2+3)//4", "(T+7)//8", True, {}),  # a floor of a floor
    ("(L//2)//3", "L//5", False, {}),
]


@pytest.mark.parametrize("a, b, equal, divisible", PAIRS)
def test_same_agrees_with_evaluation(a: str, b: str, equal: bool, divisible: dict[str, int]) -> None:
    assert same(a, b, divisible) is equal
    names = sorted(dims.symbols(a) | dims.symbols(b))
    values = range(3, 80)
    agree = all(dims.evaluate(a, {n: v * divisible.get(n, 1) for n in names}) ==
                dims.evaluate(b, {n: v * divisible.get(n, 1) for n in names}) for v in values)
    assert agree is equal  # the reference: evaluated for every value in the range


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.lists(st.tuples(st.sampled_from(["conv", "deconv", "pool", "up"]), st.integers(1, 5), st.integers(1, 3),
                          st.integers(0, 2)), min_size=1, max_size=4))
def test_same_never_says_yes_wrongly(stack: list[tuple[str, int, int, int]]) -> None:
    """Random 1-d stacks over L: when same(out, L) holds, torch gives back L for every length that fits."""
    layers = []
    for op, k, s, p in stack:
        layers.append({"conv": {"Conv1d": {"out_channels": 2, "kernel_size": k, "stride": s, "padding": min(p, k // 2)}},
                       "deconv": {"ConvTranspose1d": {"out_channels": 2, "kernel_size": k, "stride": s, "padding":
                                                      min(p, k - 1)}},
                       "pool": {"MaxPool1d": {"kernel_size": s, "stride": s}},
                       "up": {"Upsample": {"scale_factor": s}}}[op])
    text = "input: [2, L]\nlayers:\n" + "".join(f"  - {layer}\n".replace("'", "") for layer in layers)
    checked = dlspec.check(dlspec.loads(text))
    if not checked.ok:
        return
    out = checked.output.shape[1]
    if not same(out, "L"):
        return
    model = dlspec.build(checked)
    for length in range(8, 60):
        with torch.no_grad():
            assert model(torch.randn(1, 2, length)).shape[-1] == length, (text, out, length)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.lists(st.tuples(st.sampled_from(["conv", "deconv", "pool"]), st.integers(1, 5), st.integers(1, 3),
                          st.integers(0, 2)), min_size=1, max_size=4))
def test_shown_sizes_are_torch_sizes(stack: list[tuple[str, int, int, int]]) -> None:
    """The size the table shows (simplified) is, evaluated, the length torch gives, for every length that fits."""
    layers = [{"conv": {"Conv1d": {"out_channels": 2, "kernel_size": k, "stride": s, "padding": min(p, k // 2)}},
               "deconv": {"ConvTranspose1d": {"out_channels": 2, "kernel_size": k, "stride": s, "padding": min(p, k - 1)}},
               "pool": {"MaxPool1d": {"kernel_size": k, "stride": s, "padding": min(p, k // 2)}}}[op]
              for op, k, s, p in stack]
    text = "input: [2, L]\nlayers:\n" + "".join(f"  - {layer}\n".replace("'", "") for layer in layers)
    checked = dlspec.check(dlspec.loads(text))
    if not checked.ok:
        return
    shown = checked.output.shape[1]
    assert shown == simplify(shown)  # already in its shortest form
    model = dlspec.build(checked)
    for length in range(6, 40):
        try:
            with torch.no_grad():
                real = model(torch.randn(1, 2, length)).shape[-1]
        except RuntimeError:
            continue  # too short for this stack
        assert dims.evaluate(shown, {"L": length}) == real, (text, shown, length)


@settings(max_examples=150, deadline=None, derandomize=True)
@given(st.sampled_from([2, 4, 16]), st.lists(st.tuples(st.sampled_from(["conv", "pool"]), st.integers(1, 5),
                                                        st.integers(1, 3)), min_size=1, max_size=3))
def test_sizes_of_a_declared_multiple_are_torch_sizes(d: int, stack: list[tuple[str, int, int]]) -> None:
    """With `symbols: {L: {divisible_by: d}}` the shown size (a floor of the declared L: a MaxPool1d 3 on L
    divisible by 16 once raised ValueError) is, evaluated, torch's length for every multiple of d that fits."""
    layers = [{"conv": {"Conv1d": {"out_channels": 2, "kernel_size": k, "stride": s}},
               "pool": {"MaxPool1d": {"kernel_size": k, "stride": s}}}[op] for op, k, s in stack]
    text = f"input: [2, L]\nsymbols: {{L: {{divisible_by: {d}}}}}\nlayers:\n" + "".join(
        f"  - {layer}\n".replace("'", "") for layer in layers)
    checked = dlspec.check(dlspec.loads(text))
    if not checked.ok:
        return
    shown = checked.output.shape[1]
    model = dlspec.build(checked)
    for length in range(d, 80, d):
        try:
            with torch.no_grad():
                real = model(torch.randn(1, 2, length)).shape[-1]
        except RuntimeError:
            continue  # too short for this stack
        assert dims.evaluate(shown, {"L": length}) == real, (text, shown, length)


def test_simplify_writes_the_size_shorter() -> None:
    assert simplify("((L-1)*2)//2+1") == "L" and simplify("(L-1)*2+2") == "L*2" and simplify("T*64") == "T*64"
    assert simplify("(H//2)*2") == "(H//2)*2" and simplify("(H//2)*2", {"H": 2}) == "H"
    assert simplify("(H-2)//2+1") == "H//2" and simplify("((H-2)//2-1)//2+1") == "H//4"  # two poolings
    assert simplify("min(T, 5)+0") == "min(T, 5)" and simplify("(L+2-3)//2+1") == "(L+1)//2"


def test_residual_accepts_a_size_torch_gives_back() -> None:
    text = ("input: [4, L]\nlayers:\n  - Residual:\n    - ConvTranspose1d: {out_channels: 4, kernel_size: 4, "
            "stride: 2, padding: 1}\n    - Conv1d: {out_channels: 4, kernel_size: 4, stride: 2, padding: 1}\n")
    checked = dlspec.check(dlspec.loads(text))
    assert checked.ok and checked.output.shape == (4, "L")
    model = dlspec.build(checked)
    for length in (5, 6, 17):
        assert model(torch.randn(2, 4, length)).shape == (2, 4, length)
    pixel = "input: [4, H, W]\nlayers:\n  - Residual:\n    - PixelUnshuffle: 2\n    - PixelShuffle: 2\n"
    d = dlspec.check(dlspec.loads(pixel)).errors[0]
    assert d.code == "merge-shape" and "symbols: {H: {divisible_by: 2}, W: {divisible_by: 2}}" in (d.help or "")
    declared = pixel.replace("layers:", "symbols: {H: {divisible_by: 2}, W: {divisible_by: 2}}\nlayers:")
    assert dlspec.check(dlspec.loads(declared)).ok


def test_residual_accepts_upsample_then_pool() -> None:
    """Upsample ×2 then MaxPool2d 2 gives back (H, W) for every H, W: the Residual is accepted, and torch agrees."""
    text = "input: [3, H, W]\nlayers:\n  - Residual:\n    - Upsample: {scale_factor: 2}\n    - MaxPool2d: 2\n"
    checked = dlspec.check(dlspec.loads(text))
    assert checked.ok and checked.output.shape == (3, "H", "W")
    model = dlspec.build(checked)
    for h, w in ((5, 7), (8, 3)):
        assert model(torch.randn(2, 3, h, w)).shape == (2, 3, h, w)
