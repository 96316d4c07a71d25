"""The architectures of specs/zoo/ against hand-written torch references (tests/zoo_reference.py).

For each: the exact parameter count of the checker, the built module and the reference; every top-level
row's shape against what the built module really gives (at the spec's own input size, on the `meta`
device, so no memory or time is spent); and the same outputs as the reference once its weights (and
BatchNorm statistics, randomised) are copied in — at a smaller input where the network allows it, to stay
fast on 2 CPU cores.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import zoo_reference as ref
from torch import nn

import dlspec
from dlspec import dims

ROOT = Path(__file__).resolve().parent.parent
ZOO = ROOT / "specs" / "zoo"

# spec, reference, the input to compare outputs on (per sample), the symbols' values, the dtype
CASES: list[tuple[str, Callable[[], nn.Module], tuple[int, ...], dict[str, int], str]] = [
    ("vgg16", ref.VGG16, (3, 32, 32), {}, "float"),
    ("resnet18", ref.resnet18, (3, 64, 64), {}, "float"),
    ("resnet50", ref.resnet50, (3, 64, 64), {}, "float"),
    ("mobilenet_v2", ref.MobileNetV2, (3, 64, 64), {}, "float"),
    ("shufflenet_v2", ref.ShuffleNetV2, (3, 64, 64), {}, "float"),
    ("googlenet", ref.GoogLeNet, (3, 96, 96), {}, "float"),
    ("unet", ref.UNet, (3, 32, 48), {"H": 32, "W": 48}, "float"),
    ("vit_ti16", ref.ViT, (3, 224, 224), {}, "float"),
    ("gpt_char", ref.GPT, (24,), {"T": 24}, "long"),
    ("seq2seq_encoder", ref.Seq2SeqEncoder, (9,), {"T": 9}, "long"),
    ("cvae", ref.CVAE, (1, 28, 28), {}, "float"),
]


def test_every_zoo_spec_has_a_reference() -> None:
    assert {p.stem for p in ZOO.glob("*.yaml")} == {c[0] for c in CASES}


def _sample(shape: tuple[int, ...], dtype: str, batch: int = 2) -> torch.Tensor:
    return torch.randint(0, 60, (batch, *shape)) if dtype == "long" else torch.randn(batch, *shape)


def _more_inputs(checked: Any, device: str = "cpu") -> tuple[torch.Tensor, ...]:
    """The inputs after the first, at their declared shapes (a conditional model's labels: ids below its
    smallest Embedding's vocabulary)."""
    vocab = min((r.args["num_embeddings"] for r in checked.all_rows() if r.entry.name == "Embedding"), default=2)
    out = []
    for t in list(checked.spec.inputs.values())[1:]:
        shape = (2, *(int(d) for d in t.shape))
        out.append(torch.randint(0, vocab, shape) if t.dtype == "long" else torch.randn(shape))
    return tuple(x.to(device) for x in out)


def _randomise_batchnorm(m: nn.Module) -> None:
    g = torch.Generator().manual_seed(1)
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.copy_(torch.randn(mod.num_features, generator=g) * 0.1)
            mod.running_var.copy_(torch.rand(mod.num_features, generator=g) + 0.5)


def _copy(model: nn.Module, reference: nn.Module) -> None:
    mine, theirs = model.state_dict(), reference.state_dict()
    assert [tuple(v.shape) for v in mine.values()] == [tuple(v.shape) for v in theirs.values()]
    model.load_state_dict(dict(zip(mine.keys(), theirs.values(), strict=True)))


def _as_tuple(y: Any) -> tuple[torch.Tensor, ...]:
    return y if isinstance(y, tuple) else (y,)


@pytest.mark.parametrize("name, make, shape, symbols, dtype", CASES, ids=[c[0] for c in CASES])
def test_zoo_spec_equals_its_reference(name: str, make: Callable[[], nn.Module], shape: tuple[int, ...],
                                       symbols: dict[str, int], dtype: str) -> None:
    checked = dlspec.check(str(ZOO / f"{name}.yaml"))
    assert checked.ok, [(d.line, d.code, d.message) for d in checked.diagnostics]
    torch.manual_seed(0)

    # every top-level row's shape, as the built module really gives it, at the spec's input size (meta device)
    inp = checked.spec.input
    assert inp is not None
    full = tuple(dims.evaluate(d, symbols) for d in inp.shape)
    with torch.device("meta"):
        meta_model = dlspec.build(checked).eval()
    seen: list[tuple[int, ...]] = []
    hooks = [m.register_forward_hook(lambda m, i, o: seen.append(tuple(_as_tuple(o)[0].shape[1:])))
             for m in meta_model.children()]
    x = torch.zeros((2, *full), device="meta", dtype=torch.long if dtype == "long" else torch.float32) \
        if dtype == "float" or name != "gpt_char" else torch.zeros((2, *full), device="meta", dtype=torch.long)
    if dtype == "long" and name != "gpt_char":  # the GRU has no meta kernel: real ids, on the CPU
        seen.clear()
        for h in hooks:
            h.remove()
        cpu_model = dlspec.build(checked).eval()
        hooks = [m.register_forward_hook(lambda m, i, o: seen.append(tuple(_as_tuple(o)[0].shape[1:])))
                 for m in cpu_model.children()]
        with torch.no_grad():
            cpu_model(_sample(full, dtype))
    else:
        with torch.no_grad():
            meta_model(x, *_more_inputs(checked, "meta"))
    for h in hooks:
        h.remove()
    want = [tuple(dims.evaluate(d, symbols) for d in r.output.shape) for r in checked.rows if r.output is not None]
    assert seen == want

    # the parameters, exactly, and the outputs after copying the reference's weights in
    model = dlspec.build(checked).eval()
    reference = make().eval()
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in reference.parameters()) \
        == checked.params
    with torch.no_grad():
        _randomise_batchnorm(reference)
        _copy(model, reference)
        xs = (_sample(shape, dtype), *_more_inputs(checked))
        got, expected = _as_tuple(model(*xs)), _as_tuple(reference(*xs))
    assert len(got) == len(expected)
    for g, w in zip(got, expected, strict=True):
        assert g.shape == w.shape
        assert torch.allclose(g, w, atol=1e-4, rtol=1e-4), f"{name}: max difference {(g - w).abs().max():.3g}"
