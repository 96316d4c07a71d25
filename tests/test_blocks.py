"""Parameterised blocks: arguments with defaults, arithmetic over them, depthwise convolutions, and
diagnostics that name both the line inside the block and the use. References are torch modules written
out by hand."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import dlspec

BOTTLENECK = """\
input: [16, 8, 8]
blocks:
  bottleneck:
    args: {width: 4, stride: 1, expansion: 4}
    layers:
      - Residual:
          body:
            - Conv2d: {out_channels: width, kernel_size: 1, bias: false}
            - BatchNorm2d
            - ReLU
            - Conv2d: {out_channels: width, kernel_size: 3, stride: stride, padding: 1, bias: false}
            - BatchNorm2d
            - ReLU
            - Conv2d: {out_channels: width * expansion, kernel_size: 1, bias: false}
            - BatchNorm2d
          shortcut:
            - Conv2d: {out_channels: width * expansion, kernel_size: 1, stride: stride, bias: false}
            - BatchNorm2d
      - ReLU
layers:
  - bottleneck
  - bottleneck: {width: 8, stride: 2}
  - bottleneck: 2
"""


def torch_bottleneck(cin: int, width: int, stride: int, expansion: int = 4) -> tuple[nn.Module, nn.Module]:
    body = nn.Sequential(nn.Conv2d(cin, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
                         nn.Conv2d(width, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
                         nn.Conv2d(width, width * expansion, 1, bias=False), nn.BatchNorm2d(width * expansion))
    short = nn.Sequential(nn.Conv2d(cin, width * expansion, 1, stride, bias=False), nn.BatchNorm2d(width * expansion))
    return body, short


def test_parameterised_block_equals_torch() -> None:
    checked = dlspec.check(dlspec.loads(BOTTLENECK))
    assert checked.ok, [d.message for d in checked.diagnostics]
    model = dlspec.build(checked).eval()
    parts = [torch_bottleneck(16, 4, 1), torch_bottleneck(16, 8, 2), torch_bottleneck(32, 2, 1)]
    ref = nn.ModuleList([m for pair in parts for m in pair]).eval()
    with torch.no_grad():
        for a, b in zip(model.parameters(), ref.parameters(), strict=True):
            assert a.shape == b.shape
            b.copy_(torch.randn_like(b))
            a.copy_(b)
        x = torch.randn(2, 16, 8, 8)
        want = x
        for body, short in ((ref[0], ref[1]), (ref[2], ref[3]), (ref[4], ref[5])):
            want = torch.relu(body(want) + short(want))
        assert torch.allclose(model(x), want, atol=1e-5)
    assert checked.output.shape == (8, 4, 4)
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in ref.parameters()) == checked.params
    assert [r.item.block_args for r in checked.rows] == [
        {"width": 4, "stride": 1, "expansion": 4}, {"width": 8, "stride": 2, "expansion": 4},
        {"width": 2, "stride": 1, "expansion": 4}]


def test_depthwise_groups_follow_the_input() -> None:
    text = "input: [6, 5, 5]\nlayers:\n  - Conv2d: {out_channels: in_channels, kernel_size: 3, groups: in_channels}\n"
    model = dlspec.build(text and dlspec.loads(text))
    conv = model.conv1
    assert (conv.in_channels, conv.out_channels, conv.groups) == (6, 6, 6)
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in nn.Conv2d(6, 6, 3, groups=6).parameters())


def test_nested_parameterised_blocks_pass_arithmetic_down() -> None:
    text = """\
input: [4]
blocks:
  dense:
    args: {units: null}
    layers: [{Linear: units}, ReLU]
  mlp:
    args: {width: 8}
    layers:
      - dense: {units: width}
      - dense: {units: width // 2}
layers:
  - mlp: {width: 16}
"""
    checked = dlspec.check(dlspec.loads(text))
    assert checked.ok and checked.output.shape == (8,)
    assert checked.params == (4 * 16 + 16) + (16 * 8 + 8)


@pytest.mark.parametrize("use, line, code, words", [
    ("  - bottleneck: {widht: 8}\n", 21, "unknown-argument", "no argument 'widht'"),
    ("  - bottleneck: {width: width * 2}\n", 21, "invalid-argument", "no arguments here"),
    ("  - bottleneck: {width: 0}\n", 8, "invalid-argument", "out_channels cannot be 0"),
])
def test_block_mistakes_name_the_use_and_the_line_inside(use: str, line: int, code: str, words: str) -> None:
    text = BOTTLENECK.split("layers:\n  - bottleneck\n")[0] + "layers:\n" + use
    checked = dlspec.check(dlspec.loads(text))
    d = next(d for d in checked.diagnostics if d.code == code)
    assert d.line == line and words in d.message, (d.line, d.message)
    if line < 20:  # inside the block: the use is named too
        assert any("in block bottleneck(width=0" in n and "line 21" in n for n in d.notes), d.notes


def test_missing_block_argument_and_bad_arithmetic() -> None:
    text = "input: [4]\nblocks:\n  d:\n    args: {units: null}\n    layers: [{Linear: units * two}]\nlayers:\n  - d\n"
    diags = dlspec.check(dlspec.loads(text)).diagnostics
    assert [(d.code, d.line) for d in diags][:1] == [("missing-argument", 7)]
    text = text.replace("  - d\n", "  - d: 3\n").replace("units * two", "units // 0")
    diags = dlspec.check(dlspec.loads(text)).diagnostics
    assert diags and "divides by zero" in diags[0].message and diags[0].line == 5


def test_a_block_read_once_per_argument_values_tells_1_from_1_0() -> None:
    """A block used twice in one top-level entry is read once per argument values: 1 and 1.0 (equal in Python)
    are read apart, so the float is refused where a count is needed, as torch's nn.Linear refuses it."""
    text = ("input: [4]\nblocks:\n  b:\n    args: {c: 1}\n    layers: [{Linear: c}]\n  pair:\n    - b: {c: 1}\n"
            "    - b: {c: 1.0}\nlayers: [pair]\n")
    checked = dlspec.check(dlspec.loads(text))
    assert [(d.code, d.message) for d in checked.errors] == [("invalid-argument", "Linear out_features cannot be 1.0")]
    with pytest.raises(TypeError):
        nn.Linear(4, 1.0)  # type: ignore[arg-type]
