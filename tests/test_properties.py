"""Property tests: random layer stacks, the torch-free checker against torch itself.

Each example is a random stack written as YAML text and checked.  Independently of dlspec's builder, the
same stack is run layer by layer through plain torch.nn modules (input sizes taken from the real tensor),
which gives torch's verdict: the first layer that raises (at construction or in forward), or none.

* torch fails at layer j  ->  the checker reports an error at layer j (not later, and not earlier: an
  earlier error would reject a layer torch accepts).
* torch runs it all       ->  the checker reports no error, dlspec.build(...) runs on a random batch, and
  every layer's real output shape (and parameter count, and MACs for Conv/Linear) is the inferred one.
* the same stack with a symbolic spatial size: wherever it is inferred, the expression evaluated at the
  concrete size is the concrete shape.

Deliberate strictness (the checker refuses what torch would accept; `deliberately_refused` lists it, and
torch's verdict counts such a layer as refused): the batch dimension is required, so an input torch would
read as one unbatched sample (Softmax2d on (N, H, W), MultiheadAttention on (N, E), ...) is a rank error;
a dim argument that lands on the batch (GLU dim 0, Flatten start_dim 0) is refused; Last needs (N, T, F);
Dropout2d/3d take only the ranks torch has not deprecated; and a layer whose output would be empty
(ConvTranspose1d giving size 0, where torch returns a tensor with no elements) is output-too-small.
return_indices (also refused) is never generated.
"""

from __future__ import annotations

from typing import Any

import hypothesis.strategies as st
import pytest
import torch
from conftest import spec_text
from hypothesis import HealthCheck, example, given, settings
from torch.utils.flop_counter import FlopCounterMode

import dlspec
from dlspec import dims

SETTINGS = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])
BATCH = 2
MAC_CHECKED = ("Linear", "Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d",
               "RNN", "GRU")  # what torch's FlopCounterMode counts in full
Layer = tuple[str, dict[str, Any]]
pytestmark = [pytest.mark.filterwarnings("ignore:dropout option adds dropout after all but last:UserWarning"),
              pytest.mark.filterwarnings("ignore:LSTM with projections is not supported:UserWarning"),
              pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning"),
              pytest.mark.filterwarnings("ignore:input's size at dim=1 does not match num_features:UserWarning")]


# --- strategies -----------------------------------------------------------------------------------------

def _tuple_or_int(n: int, lo: int, hi: int) -> st.SearchStrategy[Any]:
    one = st.integers(lo, hi)
    return st.one_of(one, st.lists(one, min_size=n, max_size=n)) if n > 1 else one


def _maybe_in_size(draw: Any, name: str, args: dict[str, Any]) -> dict[str, Any]:
    """Sometimes write the input size (right or wrong); usually leave it to be inferred."""
    if draw(st.integers(0, 9)) == 0:
        args = {name: draw(st.integers(1, 5)), **args}
    return args


@st.composite
def conv_layer(draw: Any, n: int) -> Layer:
    kind = draw(st.sampled_from(["conv", "conv", "conv", "tconv", "maxpool", "maxpool", "avgpool", "avgpool",
                                 "bn", "act", "dropout", "adaptive", "lppool", "upsample", "pad", "norm"]
                                + (["shuffle"] if n == 2 else [])))
    if kind == "lppool" and n < 3:
        args = {"norm_type": draw(st.sampled_from([1, 2, 3.0])), "kernel_size": draw(_tuple_or_int(n, 1, 4))}
        if draw(st.booleans()):
            args["stride"] = draw(_tuple_or_int(n, 1, 3))
        if draw(st.booleans()):
            args["ceil_mode"] = True
        return f"LPPool{n}d", args
    if kind == "upsample":
        mode = draw(st.sampled_from(["nearest", "nearest-exact", {1: "linear", 2: "bilinear", 3: "trilinear"}[n]]
                                    + (["bicubic"] if n == 2 else [])))
        args = {"mode": mode}
        if draw(st.booleans()):
            one: Any = st.one_of(st.integers(1, 3), st.sampled_from([0.5, 0.7, 1.5, 2.5]))
            args["scale_factor"] = draw(st.one_of(one, st.lists(one, min_size=n, max_size=n)) if n > 1 else one)
        else:
            args["size"] = draw(_tuple_or_int(n, 1, 6))
        if mode not in ("nearest", "nearest-exact") and draw(st.booleans()):
            args["align_corners"] = draw(st.booleans())
        return "Upsample", args
    if kind == "pad":
        pad_kind = draw(st.sampled_from(["Zero", "Constant", "Reflection", "Replication", "Circular"]))
        m = draw(st.integers(1, min(n + 1, 3))) if pad_kind in ("Zero", "Constant") else n
        lo = -2 if pad_kind in ("Zero", "Constant") else 0
        args = {"padding": draw(st.one_of(st.integers(max(lo, 0), 3), st.lists(st.integers(lo, 3), min_size=2 * m,
                                                                               max_size=2 * m)))}
        if pad_kind == "Constant":
            args["value"] = 0.5
        return f"{pad_kind}Pad{m}d", args
    if kind == "norm":
        norm = draw(st.sampled_from(["InstanceNorm", "GroupNorm", "LayerNorm"]))
        if norm == "InstanceNorm":
            args = {k: True for k in ("affine", "track_running_stats") if draw(st.booleans())}
            return f"InstanceNorm{n}d", _maybe_in_size(draw, "num_features", args)
        if norm == "GroupNorm":
            return "GroupNorm", _maybe_in_size(draw, "num_channels", {"num_groups": draw(st.integers(1, 3))})
        return "LayerNorm", {}
    if kind == "shuffle":
        return draw(st.sampled_from([("PixelShuffle", {"upscale_factor": draw(st.integers(1, 2))}),
                                     ("PixelUnshuffle", {"downscale_factor": draw(st.integers(1, 2))})]))
    if kind == "conv":
        args: dict[str, Any] = {"out_channels": draw(st.integers(1, 4)), "kernel_size": draw(_tuple_or_int(n, 1, 4))}
        if draw(st.booleans()):
            args["stride"] = draw(_tuple_or_int(n, 1, 3))
        if draw(st.booleans()):
            args["padding"] = draw(st.one_of(_tuple_or_int(n, 0, 3), st.sampled_from(["same", "valid"])))
        if draw(st.booleans()):
            args["dilation"] = draw(_tuple_or_int(n, 1, 3))
        if draw(st.integers(0, 3)) == 0:
            args["groups"] = draw(st.integers(1, 3))
        if draw(st.integers(0, 3)) == 0:
            args["padding_mode"] = draw(st.sampled_from(["zeros", "reflect", "replicate", "circular"]))
        if draw(st.integers(0, 3)) == 0:
            args["bias"] = False
        return f"Conv{n}d", _maybe_in_size(draw, "in_channels", args)
    if kind == "tconv":
        args = {"out_channels": draw(st.integers(1, 4)), "kernel_size": draw(_tuple_or_int(n, 1, 4))}
        for name, lo, hi in (("stride", 1, 3), ("padding", 0, 3), ("output_padding", 0, 2), ("dilation", 1, 2)):
            if draw(st.booleans()):
                args[name] = draw(_tuple_or_int(n, lo, hi))
        if draw(st.integers(0, 3)) == 0:
            args["groups"] = draw(st.integers(1, 3))
        return f"ConvTranspose{n}d", _maybe_in_size(draw, "in_channels", args)
    if kind in ("maxpool", "avgpool"):
        args = {"kernel_size": draw(_tuple_or_int(n, 1, 4))}
        if draw(st.booleans()):
            args["stride"] = draw(st.one_of(st.none(), _tuple_or_int(n, 1, 3)))
        if draw(st.booleans()):
            args["padding"] = draw(_tuple_or_int(n, 0, 2))
        if draw(st.booleans()):
            args["ceil_mode"] = draw(st.booleans())
        if kind == "maxpool":
            if draw(st.booleans()):
                args["dilation"] = draw(_tuple_or_int(n, 1, 3))
            return f"MaxPool{n}d", args
        if draw(st.booleans()):
            args["count_include_pad"] = draw(st.booleans())
        if n > 1 and draw(st.integers(0, 3)) == 0:
            args["divisor_override"] = draw(st.integers(1, 5))
        return f"AvgPool{n}d", args
    if kind == "bn":
        return f"BatchNorm{n}d", _maybe_in_size(draw, "num_features", {})
    if kind in ("act", "lppool"):
        return draw(st.sampled_from([("ReLU", {}), ("Tanh", {}), ("GELU", {}), ("LeakyReLU", {"negative_slope": 0.1}),
                                     ("ELU", {}), ("Sigmoid", {}), ("SiLU", {}), ("Hardtanh", {})]))
    if kind == "dropout":
        return draw(st.sampled_from(["Dropout", f"Dropout{n}d"])), {"p": 0.3}
    size = draw(st.one_of(st.integers(1, 3), st.lists(st.one_of(st.none(), st.integers(1, 3)), min_size=n, max_size=n)))
    return f"AdaptiveAvgPool{n}d", {"output_size": size}


@st.composite
def conv_stack(draw: Any) -> tuple[list[int], list[Layer]]:
    n = draw(st.integers(1, 3))
    hi = {1: 24, 2: 12, 3: 7}[n]
    shape = [draw(st.integers(1, 4))] + draw(st.lists(st.integers(1, hi), min_size=n, max_size=n))
    layers = draw(st.lists(conv_layer(n), min_size=1, max_size=5))
    tail = draw(st.sampled_from(["", "flatten", "linear", "adaptive-linear", "only-linear"]))
    if tail == "adaptive-linear":
        layers.append((f"AdaptiveAvgPool{n}d", {"output_size": 1}))
    if tail in ("flatten", "linear", "adaptive-linear"):
        flat: dict[str, Any] = {}
        if draw(st.integers(0, 3)) == 0:
            flat["start_dim"] = draw(st.integers(1, n + 1))
        if draw(st.integers(0, 3)) == 0:
            flat["end_dim"] = draw(st.sampled_from([-1, n + 1, n]))
        layers.append(("Flatten", flat))
    if tail.endswith("linear"):
        layers.append(("Linear", _maybe_in_size(draw, "in_features", {"out_features": draw(st.integers(1, 5))})))
    return shape, layers


@st.composite
def recurrent_stack(draw: Any) -> tuple[list[int], list[Layer]]:
    shape = [draw(st.integers(1, 8)), draw(st.integers(1, 6))]
    layers: list[Layer] = []
    for _ in range(draw(st.integers(1, 3))):
        name = draw(st.sampled_from(["RNN", "LSTM", "GRU"]))
        # batch_first false reads (N, T, F) as (T, N, F): the checker warns, and the shapes are the same
        args: dict[str, Any] = {"hidden_size": draw(st.integers(1, 6)), "batch_first": draw(st.integers(0, 5)) > 0}
        if draw(st.booleans()):
            args["num_layers"] = draw(st.integers(1, 3))
        if draw(st.booleans()):
            args["bidirectional"] = draw(st.booleans())
        if name == "LSTM" and draw(st.booleans()):
            args["proj_size"] = draw(st.integers(0, 7))  # must be < hidden_size
        if name == "RNN" and draw(st.booleans()):
            args["nonlinearity"] = "relu"
        if draw(st.integers(0, 3)) == 0:
            args["bias"] = False
        if draw(st.integers(0, 3)) == 0:
            args["dropout"] = 0.25
        layers.append((name, _maybe_in_size(draw, "input_size", args)))
        if draw(st.integers(0, 3)) == 0:
            layers.append(draw(st.sampled_from([("LayerNorm", {}), ("Tanh", {}), ("Dropout", {"p": 0.1}),
                                                ("Linear", {"out_features": draw(st.integers(1, 5))})])))
    if draw(st.booleans()):
        layers.append(("Last", {}))
    if draw(st.booleans()):
        layers.append(("Linear", _maybe_in_size(draw, "in_features", {"out_features": draw(st.integers(1, 4))})))
    return shape, layers


@st.composite
def misc_layer(draw: Any) -> Layer:
    dim = st.sampled_from([-4, -3, -2, -1, 1, 2, 3, 4])
    kind = draw(st.sampled_from(["glu", "softmax", "prelu", "layernorm", "lrn", "flatten", "unflatten", "permute",
                                 "reshape", "linear", "attention", "encoder", "last", "shuffle", "groupnorm", "bn",
                                 "dropout", "softmax2d"]))
    if kind == "glu":
        return "GLU", {"dim": draw(dim)}
    if kind == "softmax":
        return draw(st.sampled_from(["Softmax", "LogSoftmax", "Softmin"])), {"dim": draw(dim)}
    if kind == "prelu":
        return "PReLU", {"num_parameters": draw(st.integers(1, 4))}
    if kind == "layernorm":
        args: dict[str, Any] = {}
        if draw(st.booleans()):
            args["normalized_shape"] = draw(st.one_of(st.integers(1, 4), st.lists(st.integers(1, 4), min_size=1,
                                                                                   max_size=2)))
        return draw(st.sampled_from(["LayerNorm", "RMSNorm"])), args
    if kind == "lrn":
        return "LocalResponseNorm", {"size": draw(st.integers(1, 3))}
    if kind == "flatten":
        return "Flatten", {"start_dim": draw(dim), "end_dim": draw(dim)}
    if kind == "unflatten":
        return "Unflatten", {"dim": draw(dim), "unflattened_size": draw(st.sampled_from([[1, -1], [2, -1], [-1, 2],
                                                                                        [2, 2], [1]]))}
    if kind == "permute":
        rank = draw(st.integers(2, 5))
        return "Permute", {"dims": [0] + draw(st.permutations(list(range(1, rank))))}
    if kind == "reshape":
        return "Reshape", {"shape": draw(st.sampled_from([[-1], [2, -1], [-1, 1, 2], [4], [1, -1, 1]]))}
    if kind == "linear":
        return "Linear", _maybe_in_size(draw, "in_features", {"out_features": draw(st.integers(1, 6))})
    if kind == "attention":
        return "MultiheadAttention", {"num_heads": draw(st.integers(1, 3)), "batch_first": True}
    if kind == "encoder":
        return "TransformerEncoderLayer", {"nhead": draw(st.integers(1, 2)), "dim_feedforward": 8, "dropout": 0.0,
                                           "batch_first": True}
    if kind == "last":
        return "Last", {}
    if kind == "shuffle":
        return draw(st.sampled_from([("PixelShuffle", {"upscale_factor": 2}), ("PixelUnshuffle", {"downscale_factor": 2})]))
    if kind == "groupnorm":
        return "GroupNorm", {"num_groups": draw(st.integers(1, 3))}
    if kind == "bn":
        return "BatchNorm1d", {}
    if kind == "dropout":
        return draw(st.sampled_from(["Dropout1d", "Dropout2d", "AlphaDropout"])), {"p": 0.2}
    return "Softmax2d", {}


@st.composite
def misc_stack(draw: Any) -> tuple[list[int], str, list[Layer]]:
    if draw(st.integers(0, 3)) == 0:  # integer ids through an Embedding
        shape = draw(st.lists(st.integers(1, 5), min_size=1, max_size=2))
        first = ("Embedding", {"num_embeddings": 7, "embedding_dim": draw(st.sampled_from([1, 2, 4, 6]))})
        return shape, "long", [first] + draw(st.lists(misc_layer(), min_size=0, max_size=4))
    shape = draw(st.lists(st.integers(1, 5), min_size=1, max_size=4))
    return shape, "float", draw(st.lists(misc_layer(), min_size=1, max_size=5))


# --- torch's verdict, without dlspec's builder ------------------------------------------------------------

def _torch_module(name: str, args: dict[str, Any], x: torch.Tensor) -> Any:
    """torch.nn.<name> with the input size taken from the real tensor where the spec left it out."""
    kw = {k: tuple(v) if isinstance(v, list) else v for k, v in args.items()}
    if name.startswith(("Conv", "ConvTranspose")):
        kw.setdefault("in_channels", x.shape[1])
    elif name.startswith(("BatchNorm", "InstanceNorm")):
        kw.setdefault("num_features", x.shape[1])
    elif name == "Linear":
        kw.setdefault("in_features", x.shape[-1])
    elif name in ("RNN", "LSTM", "GRU"):
        kw.setdefault("input_size", x.shape[-1])
    elif name in ("LayerNorm", "RMSNorm"):
        kw.setdefault("normalized_shape", x.shape[-1])
    elif name == "GroupNorm":
        kw.setdefault("num_channels", x.shape[1])
    elif name == "Last":
        return lambda t: t[:, -1]
    elif name == "Permute":
        return lambda t: t.permute(*kw["dims"])
    elif name == "Reshape":
        return lambda t: t.reshape(t.shape[0], *kw["shape"])
    if name == "MultiheadAttention":
        kw.setdefault("embed_dim", x.shape[-1])
        attention = torch.nn.MultiheadAttention(**kw).eval()
        return lambda t: attention(t, t, t, need_weights=False)[0]
    if name == "TransformerEncoderLayer":
        kw.setdefault("d_model", x.shape[-1])
    module = getattr(torch.nn, name)(**kw).eval()
    if name in ("RNN", "LSTM", "GRU"):
        return lambda t: module(t)[0]
    return module


# per-sample rank below which torch reads the input as one unbatched sample (the checker refuses that)
_UNBATCHED = {"Softmax2d": 3, "PixelShuffle": 3, "PixelUnshuffle": 3, "MultiheadAttention": 2,
              "TransformerEncoderLayer": 2, "Dropout1d": 2, "Dropout2d": 3}


def deliberately_refused(name: str, args: dict[str, Any], x: torch.Tensor) -> bool:
    """Inputs torch accepts and the checker refuses on purpose: an unbatched reading of the batch, a dim
    argument that lands on the batch dimension (GLU halving it, Flatten/Unflatten mixing it into a sample),
    Last on (N, F), and the ranks torch's Dropout2d/3d accept only with a deprecation warning."""
    if name in _UNBATCHED and x.dim() - 1 == _UNBATCHED[name] - 1:
        return True
    if name == "Last" and x.dim() < 3:  # (N, F)[:, -1] is the last feature, not the last step
        return True
    if name in ("Dropout2d", "Dropout3d") and x.dim() != int(name[7]) + 2:  # torch: deprecated, warns only
        return True
    for arg in {"GLU": ("dim",), "Flatten": ("start_dim", "end_dim"), "Unflatten": ("dim",)}.get(name, ()):
        d = args.get(arg, {"start_dim": 1, "end_dim": -1}.get(arg, -1))
        if -x.dim() <= d < x.dim() and d % x.dim() == 0:
            return True
    return False


def torch_verdict(shape: list[int], layers: list[Layer], dtype: str = "float"
                  ) -> tuple[int | None, list[tuple[int, ...]]]:
    """(index of the first layer torch refuses or None, per-sample output shapes of the layers before it)."""
    x = torch.randn(BATCH, *shape) if dtype == "float" else torch.randint(0, 7, (BATCH, *shape))
    shapes: list[tuple[int, ...]] = []
    with torch.no_grad():
        for i, (name, args) in enumerate(layers):
            if deliberately_refused(name, args, x):
                return i, shapes
            try:
                x = _torch_module(name, args, x)(x)
            except (RuntimeError, ValueError, TypeError, IndexError, AssertionError):  # MHA asserts
                return i, shapes
            if x.numel() == 0:  # torch gives an empty tensor; the checker's output-too-small refuses it
                return i, shapes
            shapes.append(tuple(x.shape[1:]))
    return None, shapes


# --- the properties ---------------------------------------------------------------------------------------

def _yaml(shape: list[Any], layers: list[Layer], dtype: str = "float") -> str:
    return spec_text([{name: args} if args else name for name, args in layers], shape, dtype)


def _first_error(checked: dlspec.Checked) -> int | None:
    layers = [d.layer for d in checked.errors]
    assert None not in layers, [d.message for d in checked.errors]
    return min(layers, default=None)  # type: ignore[type-var]


def _agree(shape: list[int], layers: list[Layer], dtype: str = "float") -> dlspec.Checked:
    text = _yaml(shape, layers, dtype)
    checked = dlspec.check(dlspec.loads(text))
    fail_at, torch_shapes = torch_verdict(shape, layers, dtype)
    err_at = _first_error(checked)
    messages = [f"layer {d.layer}: {d.code}: {d.message}" for d in checked.errors]
    assert err_at == fail_at, f"torch fails at layer {fail_at}, the checker at {err_at}\n{text}{messages}"
    # every layer up to the first error is inferred exactly as torch computes it
    for row, real in zip(checked.rows, torch_shapes, strict=False):
        assert row.output is not None and row.output.shape == real, f"{row.type} {row.args}\n{text}"
    if checked.ok:
        _run_built(checked, shape, text, dtype)
    return checked


def _run_built(checked: dlspec.Checked, shape: list[int], text: str, dtype: str) -> None:
    """dlspec.build(...) runs, and each layer's real shape, parameters and MACs are the checker's."""
    model = dlspec.build(checked).eval()
    assert len(model) == len(checked.rows)
    x = torch.randn(BATCH, *shape) if dtype == "float" else torch.randint(0, 7, (BATCH, *shape))
    with torch.no_grad():
        for row, module in zip(checked.rows, model, strict=True):
            with FlopCounterMode(display=False) as flops:
                x = module(x)
            assert tuple(x.shape[1:]) == row.output.shape, f"{row.type} {row.args}\n{text}"
            assert sum(p.numel() for p in module.parameters()) == row.params, f"{row.type} {row.args}\n{text}"
            if row.entry.name in MAC_CHECKED:
                assert flops.get_total_flops() / 2 / BATCH == row.macs, f"{row.type} {row.args}\n{text}"


def _symbolic_agrees(shape: list[int], layers: list[Layer], concrete: dlspec.Checked, axis: int) -> None:
    """The same stack with the size at `axis` written as T: every inferred expression evaluates to the concrete."""
    sym = list(shape)
    sym[axis] = "T"
    checked = dlspec.check(dlspec.loads(_yaml(sym, layers)))
    stop = _first_error(checked)
    for row, fixed in zip(checked.rows[:stop], concrete.rows, strict=False):
        assert row.output is not None
        got = tuple(dims.evaluate(d, {"T": shape[axis]}) for d in row.output.shape)
        assert got == fixed.output.shape, f"{row.type} {row.args}: {row.output.shape} at T={shape[axis]}"
        assert dims.evaluate(row.macs, {"T": shape[axis]}) == fixed.macs, f"{row.type} {row.args}: {row.macs}"
        assert row.params == fixed.params


# stacks that once disagreed with torch (kept as fixed examples; see the report in each layer rule)
CONV_REGRESSIONS = [
    ([1, 1], [("ConvTranspose1d", {"out_channels": 1, "kernel_size": 4, "padding": 2})]),  # empty output
    ([1, 5], [("AdaptiveAvgPool1d", {"output_size": [None]})]),  # the 1d adaptive pools take no None
    ([1, 1, 1, 1], [("AvgPool3d", {"kernel_size": 2, "padding": 1})]),  # avg_pool3d: input ≥ kernel
    ([1, 1], [("Conv1d", {"out_channels": 1, "kernel_size": 2, "padding": "same", "padding_mode": "reflect"})]),
    ([1, 1], [("Upsample", {"mode": "nearest", "scale_factor": 0.5})]),  # size 0
    ([1, 1], [("ZeroPad1d", {"padding": [2, -2]})]),  # crops more than the input before padding
    ([2, 1], [("InstanceNorm1d", {})]),  # one spatial value: no instance statistics
    ([2, 1], [("InstanceNorm1d", {"track_running_stats": True})]),  # fine in eval (the checker warns)
    ([3, 4], [("InstanceNorm1d", {"num_features": 2})]),  # torch only warns: num_features is unused
    ([2, 9], [("Conv1d", {"out_channels": 2, "kernel_size": 3, "stride": 2}),  # ceil((L-1)//2-1/2): precedence
              ("MaxPool1d", {"kernel_size": 3, "stride": 2, "ceil_mode": True})]),
    ([2, 10], [("MaxPool1d", {"kernel_size": 4, "stride": 3, "padding": 2, "ceil_mode": True})]),  # was '?'
    ([1, 10], [("Upsample", {"scale_factor": 0.7})]),  # floor(10 * 0.7) is 7 in double precision
    ([2, 7], [("Conv1d", {"out_channels": 1, "kernel_size": 2}), ("Upsample", {"scale_factor": 1.5})]),
]


@SETTINGS
@given(conv_stack())
def test_conv_stacks_agree_with_torch(stack: tuple[list[int], list[Layer]]) -> None:
    _conv_stack_agrees(stack)


@pytest.mark.parametrize("stack", CONV_REGRESSIONS, ids=[f"regression{i}" for i in range(len(CONV_REGRESSIONS))])
def test_conv_regressions(stack: tuple[list[int], list[Layer]]) -> None:
    _conv_stack_agrees(stack)


def _conv_stack_agrees(stack: tuple[list[int], list[Layer]]) -> None:
    shape, layers = stack
    checked = _agree(shape, layers)
    if checked.ok:
        _symbolic_agrees(shape, layers, checked, axis=len(shape) - 1)


@SETTINGS
@given(recurrent_stack())
def test_recurrent_stacks_agree_with_torch(stack: tuple[list[int], list[Layer]]) -> None:
    shape, layers = stack
    checked = _agree(shape, layers)
    if checked.ok:
        _symbolic_agrees(shape, layers, checked, axis=0)


@SETTINGS
@given(misc_stack())
@example(stack=([1, 1, 2, 2], "float", [("PixelUnshuffle", {"downscale_factor": 2})]))  # (N, *, C, H, W)
@example(stack=([1, 1, 1, 1], "float", [("Unflatten", {"dim": -4, "unflattened_size": [1, -1]}),
                                        ("LocalResponseNorm", {"size": 1})]))  # (N, C, *) of any rank
def test_other_stacks_agree_with_torch(stack: tuple[list[int], str, list[Layer]]) -> None:
    """Element-wise, normalisation, reshaping, attention and embedding layers on random ranks."""
    shape, dtype, layers = stack
    _agree(shape, layers, dtype)
