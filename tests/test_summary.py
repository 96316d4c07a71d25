"""The summary under `dlspec check`'s table against torch: non-trainable values (the built model's buffers),
the activation memory of a sample (what autograd really keeps for the backward pass, measured by storage with
saved_tensors_hooks; the largest layer input plus output, measured with forward hooks) and `--depth`."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
import dlspec  # noqa: E402
from dlspec import cli, export  # noqa: E402
from dlspec.memory import activation_values  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def kept_for_backward(model: Any, net: Any) -> float:
    """Float32 values (bytes / 4) per sample autograd keeps: the storages saved for backward (not the weights, not the input), the
    difference between a batch of 16 and one of 8 divided by 8 (what does not grow with the batch drops out)."""
    def values(batch: int) -> float:
        x = export.example_inputs(net, batch=batch)
        weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
        weights |= {t.untyped_storage().data_ptr() for t in x}
        seen: dict[int, float] = {}

        def pack(t: Any) -> Any:
            st = t.untyped_storage()
            if st.data_ptr() not in weights:
                seen[st.data_ptr()] = st.nbytes() / 4  # as float32 values (a workspace may be bytes)
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model(*x)
        return sum(seen.values())
    return (values(16) - values(8)) / 8


@pytest.mark.parametrize("name", ["lenet", "mlp", "simple_cnn", "resnet_tiny", "inception_tiny", "lstm_rows",
                                  "gru_stack", "rnn_series", "zoo/mobilenet_v2"])
def test_training_activations_are_what_autograd_keeps(name: str) -> None:
    checked = dlspec.check(str(ROOT / "specs" / f"{name}.yaml"))
    model = dlspec.build(checked).train()
    train, _ = activation_values(checked)
    if not isinstance(train, int):  # symbolic sizes: the expression at the example's sizes
        from dlspec import dims

        train = dims.evaluate(train, export.symbol_values(checked))
    real = kept_for_backward(model, checked)
    assert 0.5 <= real / train <= 1.6, f"{name}: dlspec says {train:,} values, autograd keeps {real:,.0f}"


@pytest.mark.parametrize("name", ["lenet", "mlp", "simple_cnn", "lstm_rows", "mnist_cnn", "zoo/vgg16"])
def test_inference_peak_is_the_largest_layer_input_plus_output(name: str) -> None:
    checked = dlspec.check(str(ROOT / "specs" / f"{name}.yaml"))
    model = dlspec.build(checked).eval()
    peak = [0]

    def hook(mod: Any, args: Any, out: Any) -> None:
        out = out[0] if isinstance(out, tuple) else out
        peak[0] = max(peak[0], (sum(a.numel() for a in args) + out.numel()) // 2)

    for m in model.modules():
        if not list(m.children()):
            m.register_forward_hook(hook)
    with torch.no_grad():
        model(*export.example_inputs(checked, batch=2))
    assert activation_values(checked)[1] == peak[0]


def table(capsys: Any, *argv: str) -> str:
    capsys.readouterr()
    assert cli.main(["check", *argv]) == 0
    return capsys.readouterr().out


def test_depth_keeps_the_top_rows_and_the_totals(capsys: Any) -> None:
    spec = str(ROOT / "specs" / "resnet_tiny.yaml")
    checked = dlspec.check(spec)
    full, top, one = table(capsys, spec), table(capsys, spec, "--depth", "0"), table(capsys, spec, "--depth", "1")
    body = [line for line in top.splitlines() if re.match(r"^\s*\d+(\[\d+\])?\s{2}", line)]
    assert len(body) == len(checked.rows)  # one line per top-level entry (and repetition), nothing nested
    assert "Conv2d(16→16" not in top and "Residual" in one and "Conv2d(16→16" not in one and "Conv2d(16→16" in full
    tail = [line for line in full.splitlines() if line.startswith(("output", "activations"))]
    assert tail == [line for line in top.splitlines() if line.startswith(("output", "activations"))]
    assert f"non-trainable {sum(b.numel() for b in dlspec.build(checked).buffers()):,} (BatchNorm" in full
