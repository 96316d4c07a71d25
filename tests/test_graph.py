"""Graph specs (`from:`, merges, several inputs and outputs) against torch itself.

(a) Hand-written torch references: a small U-Net (a skip concatenated on the way up), a
    squeeze-excitation block (a gate multiplied into its input) and a two-input, two-output network give
    the outputs of the built module once its weights are copied in.
(b) Hypothesis draws random DAGs of 1×1 convolutions, pooling and merges (Add, Multiply, Concatenate)
    reading random earlier outputs; a reference interpreter in this file runs each with plain torch ops
    (LazyConv2d, +, *, torch.cat): where torch fails the checker must report an error, where it runs the
    checker must report none and every inferred shape must be torch's.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from conftest import flow
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import dlspec

torch.manual_seed(0)


def build(text: str) -> tuple[dlspec.Checked, nn.Module]:
    checked = dlspec.check(dlspec.loads(text))
    assert checked.ok, [(d.line, d.code, d.message) for d in checked.diagnostics]
    return checked, dlspec.build(checked).eval()


def copy_weights(model: nn.Module, ref: nn.Module) -> None:
    """The reference's parameters into the model, in registration order (shapes must agree one by one)."""
    mine, theirs = list(model.parameters()), list(ref.parameters())
    assert [p.shape for p in mine] == [p.shape for p in theirs]
    with torch.no_grad():
        for a, b in zip(mine, theirs, strict=True):
            a.copy_(b)


UNET = """\
input: [1, 16, 16]
layers:
  - Conv2d: {out_channels: 4, kernel_size: 3, padding: 1}
    name: enc1
  - ReLU
  - MaxPool2d: 2
  - Conv2d: {out_channels: 8, kernel_size: 3, padding: 1}
  - ReLU
  - Upsample: {scale_factor: 2}
  - Concatenate: [-1, enc1]
  - Conv2d: {out_channels: 1, kernel_size: 1}
"""


class RefUNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Conv2d(1, 4, 3, padding=1)
        self.mid = nn.Conv2d(4, 8, 3, padding=1)
        self.out = nn.Conv2d(12, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = self.enc(x)
        m = torch.relu(self.mid(nn.functional.max_pool2d(torch.relu(e), 2)))
        return self.out(torch.cat([nn.functional.interpolate(m, scale_factor=2), e], dim=1))


SE = """\
input: [8, 6, 6]
blocks:
  se:
    - AdaptiveAvgPool2d: 1
    - Flatten
    - Linear: 2
    - ReLU
    - Linear: 8
    - Sigmoid
    - Reshape: [8, 1, 1]
    - Multiply: [input, -1]
layers:
  - Conv2d: {out_channels: 8, kernel_size: 3, padding: 1}
  - se
  - Add: [input, -1]
"""


class RefSE(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(8, 8, 3, padding=1)
        self.fc1, self.fc2 = nn.Linear(8, 2), nn.Linear(2, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        g = torch.sigmoid(self.fc2(torch.relu(self.fc1(y.mean((2, 3)))))).reshape(-1, 8, 1, 1)
        return x + y * g


TWO = """\
inputs:
  image: [1, 8, 8]
  extra: [3]
outputs: [logits, features]
layers:
  - Flatten
  - Linear: 5
    name: features
  - Concatenate: [features, extra]
  - Linear: 2
    name: logits
"""


class RefTwo(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(64, 5), nn.Linear(8, 2)

    def forward(self, image: torch.Tensor, extra: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.fc1(image.flatten(1))
        return self.fc2(torch.cat([f, extra], dim=1)), f


@pytest.mark.parametrize("text, ref, shapes", [
    (UNET, RefUNet, [(1, 16, 16)]), (SE, RefSE, [(8, 6, 6)]), (TWO, RefTwo, [(1, 8, 8), (3,)])])
def test_graph_spec_equals_hand_written_reference(text: str, ref: type, shapes: list[tuple[int, ...]]) -> None:
    checked, model = build(text)
    reference = ref().eval()
    copy_weights(model, reference)
    xs = [torch.randn(3, *s) for s in shapes]
    with torch.no_grad():
        got, want = model(*xs), reference(*xs)
    if isinstance(want, tuple):
        assert isinstance(got, tuple) and len(got) == len(want)
        for (name, tt), g, w in zip(checked.outputs, got, want, strict=True):
            assert torch.allclose(g, w, atol=1e-6) and tuple(g.shape[1:]) == tt.shape, name
    else:
        assert torch.allclose(got, want, atol=1e-6)
        assert tuple(got.shape[1:]) == checked.output.shape
    assert sum(p.numel() for p in model.parameters()) == checked.params


def test_state_dict_keys_are_the_plain_list_names() -> None:
    """A graph keeps the module names a plain list would have (checkpoints and docs name them)."""
    _, model = build(UNET)
    assert [n for n, _ in model.named_children()] == ["enc1", "relu1", "pool1", "conv1", "relu2", "upsample1",
                                                      "concatenate1", "conv2"]


@pytest.mark.parametrize("text, line, message", [
    ("input: [4]\nlayers:\n  - Linear: 4\n  - Add: [-1, skip]\n", 4, "no layer or input named 'skip'"),
    ("input: [4]\nlayers:\n  - Add: [-1, b]\n  - Linear: {out_features: 4}\n    name: b\n", 3, "defined after"),
    ("input: [4]\nlayers:\n  - Linear: 4\n  - Add: [-1, -3]\n", 4, "no entry before"),
    ("input: [4]\nlayers:\n  - Linear: {out_features: 4, from: [input, input]}\n", 3, "reads one input"),
    ("input: [4]\nlayers:\n  - Add:\n    from: input\n", 4, "names 1"),
    ("input: [4]\nlayers:\n  - Linear: {out_features: 4}\n    name: a\n  - Linear: {out_features: 4}\n    name: a\n",
     6, "used twice"),
    ("input: [4]\noutputs: [nope]\nlayers:\n  - Linear: {out_features: 4}\n    name: a\n", 2, "to output"),
    ("input: [4]\nlayers:\n  - Linear: 4\n  - Multiply: [input, -1]\n  - Linear: {out_features: 3, from: 0}\n"
     "  - Add: [-1, 1]\n", 6, "cannot broadcast"),
])
def test_graph_mistakes_are_diagnostics(text: str, line: int, message: str) -> None:
    checked = dlspec.check(dlspec.loads(text))
    assert not checked.ok
    d = checked.errors[0]
    assert d.line == line and message in d.message, [(e.line, e.message) for e in checked.errors]


# --- random DAGs against a reference interpreter ------------------------------------------------------

OPS = ("conv", "pool", "add", "mul", "cat", "narrow", "select", "mean")


@st.composite
def dags(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Entries: {op, reads: [earlier names or 'input'], channels}; every entry named n0, n1, ..."""
    out = []
    for i in range(draw(st.integers(1, 7))):
        names = ["input"] + [f"n{j}" for j in range(i)]
        op = draw(st.sampled_from(OPS))
        k = 2 if op in ("add", "mul", "cat") else 1
        reads = [draw(st.sampled_from(names)) for _ in range(k)]
        out.append({"op": op, "reads": reads, "channels": draw(st.sampled_from([1, 2, 3])),
                    "dim": draw(st.sampled_from([1, 2, -1])), "keepdim": draw(st.booleans())})
    return out


def spec_of(dag: list[dict[str, Any]], shape: tuple[int, ...]) -> str:
    layers = []
    for i, e in enumerate(dag):
        layer: dict[str, Any] = {
            "conv": {"Conv2d": {"out_channels": e["channels"], "kernel_size": 1}},
            "pool": {"MaxPool2d": {"kernel_size": 2}},
            "add": {"Add": None}, "mul": {"Multiply": None}, "cat": {"Concatenate": None},
            "narrow": {"Narrow": {"dim": e["dim"], "start": 0, "length": e["channels"]}},
            "select": {"Select": {"dim": e["dim"], "index": 0}},
            "mean": {"Mean": {"dim": e["dim"], "keepdim": e["keepdim"]}},
        }[e["op"]]
        layer["from"] = e["reads"]
        layer["name"] = f"n{i}"
        layers.append(layer)
    return f"input: {flow(list(shape))}\nlayers:\n" + "".join(f"  - {flow(x)}\n" for x in layers)


def run_reference(dag: list[dict[str, Any]], x: torch.Tensor) -> list[torch.Tensor]:
    """The DAG run with plain torch: LazyConv2d, max_pool2d, +, *, torch.cat (raises where torch refuses)."""
    env = {"input": x}
    outs = []
    for i, e in enumerate(dag):
        xs = [env[r] for r in e["reads"]]
        if e["op"] in ("conv", "pool") and xs[0].dim() != 4:  # torch would read (C, H, W) as one unbatched sample
            raise RuntimeError("a 2-d layer needs (N, C, H, W)")
        if e["op"] in ("add", "mul") and xs[0].dim() != xs[1].dim():  # torch would align a batch with a size
            raise RuntimeError("broadcasting tensors of different ranks mixes the batch into a sample")
        if e["op"] == "conv":
            y = nn.LazyConv2d(e["channels"], 1)(xs[0])
        elif e["op"] == "pool":
            y = nn.functional.max_pool2d(xs[0], 2)
        elif e["op"] == "add":
            y = xs[0] + xs[1]
        elif e["op"] == "mul":
            y = xs[0] * xs[1]
        elif e["op"] == "narrow":
            y = xs[0].narrow(e["dim"], 0, e["channels"])
        elif e["op"] == "select":
            y = xs[0].select(e["dim"], 0)
        elif e["op"] == "mean":
            y = xs[0].mean(e["dim"], keepdim=e["keepdim"])
        else:
            y = torch.cat(xs, dim=1)
        env[f"n{i}"] = y
        outs.append(y)
    return outs


@settings(max_examples=500, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(dags(), st.sampled_from([(2, 4, 4), (1, 8, 8), (3, 2, 2)]))
def test_random_dags_agree_with_torch(dag: list[dict[str, Any]], shape: tuple[int, ...]) -> None:
    checked = dlspec.check(dlspec.loads(spec_of(dag, shape)))
    try:
        with torch.no_grad():
            outs = run_reference(dag, torch.randn(2, *shape))
    except (RuntimeError, IndexError, ValueError):
        assert not checked.ok, "torch refuses this graph but dlspec check accepts it"
        return
    assert checked.ok, [(d.line, d.message) for d in checked.errors]
    rows = checked.rows
    assert [tuple(o.shape[1:]) for o in outs] == [r.output.shape for r in rows]
    model = dlspec.build(checked)
    with torch.no_grad():
        assert tuple(model(torch.randn(2, *shape)).shape[1:]) == rows[-1].output.shape
