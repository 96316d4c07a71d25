"""Every layer type fuzzed from its own registry entry, against torch.

The arguments are drawn from each argument's kind (Int, Float, IntTuple, Choice, ..., with the bounds the
entry declares, and values just outside them), the input from the entry's examples with sizes nudged and
sometimes a dimension added or dropped.  dlspec's verdict is compared with torch's, computed without
dlspec: torch.nn.<Name> built from the written arguments (the input sizes the spec leaves out taken from
the real tensor) and run on a batch.

* torch refuses (constructing the module or in forward)  ->  `dlspec check` reports an error
* torch runs it                                          ->  no error, and torch's output shape and
  parameter count are the ones inferred

Where dlspec is stricter than torch on purpose, the test says so by rule, not by layer name: a value
outside the bounds the entry declares must be an `invalid-argument` (torch may take it and fail later, or
compute nan); a written input size that disagrees is a `shape-mismatch` even where torch never reads it
(BatchNorm with affine: false); and a `rank` error where torch reads the batch as one unbatched sample is
accepted when torch also runs that reading (the tensor given a batch of one).  Gated the same way as the
stack tests: tests/test_properties.py's deliberately_refused (dims on the batch, Last on (N, F), ...).
`return_indices` (refused: a layer list carries one tensor) and dlspec's own options are not drawn.

A new layer type is fuzzed as soon as it is registered, 40 cases each here (about 3,800 in all, 12 s on
2 cores); 600 each (56,000) passed on 2026-12-02 after fixing what they found: Hardtanh min_val ≥ max_val,
RReLU lower > upper, LPPool1d kernel_size as a list, and Upsample recompute_scale_factor with a size.
"""

from __future__ import annotations

import inspect
import json
from typing import Any

import hypothesis.strategies as st
import pytest
import torch
from conftest import flow, spec_text
from hypothesis import HealthCheck, given, settings
from test_properties import deliberately_refused

import dlspec
from dlspec.registry import (
    REGISTRY,
    Bool,
    Choice,
    Float,
    FloatList,
    Int,
    IntList,
    IntTuple,
    Kind,
    LayerType,
    OneOf,
    Optional_,
)
from dlspec.report import render_text, to_json

BATCH = 2
# the input sizes a spec may leave out, and where torch's constructor gets them from: the channels (dim 1)
# or the features (the last dim) of the tensor the layer receives
INFERRED_FROM = {"in_channels": 1, "num_features": 1, "num_channels": 1, "in_features": -1, "input_size": -1,
                 "embed_dim": -1, "d_model": -1, "normalized_shape": -1}
REFUSED = (RuntimeError, ValueError, TypeError, IndexError, AssertionError, NotImplementedError, ZeroDivisionError)


def _fuzzed(entry: LayerType) -> bool:
    torch_class = getattr(torch.nn, entry.name, None)
    return not entry.structural and entry.arity == 1 and isinstance(torch_class, type) and not entry.children


NAMES = sorted(n for n, e in REGISTRY.items() if _fuzzed(e))
pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning"), pytest.mark.filterwarnings("ignore::FutureWarning")]


def kind_values(kind: Kind) -> st.SearchStrategy[Any]:
    """Values of a kind, mostly valid and small, sometimes just outside its bounds."""
    if isinstance(kind, Optional_):
        return st.one_of(st.none(), kind_values(kind.inner))
    if isinstance(kind, OneOf):
        return st.one_of(*(kind_values(k) for k in kind.kinds))
    if isinstance(kind, Bool):
        return st.booleans()
    if isinstance(kind, Choice):
        return st.sampled_from(kind.options)
    if isinstance(kind, Int):
        lo = -3 if kind.min is None else kind.min
        hi = lo + 5 if kind.max is None else min(kind.max, lo + 5)
        return st.integers(lo - 1, hi)  # lo - 1: one below the bound
    if isinstance(kind, Float):
        values = [0.0, 0.1, 0.5, 1.0, 1.5, 2.0, 3.0, -0.5]
        if kind.min is not None:
            values += [kind.min, kind.min + 0.25]
        if kind.max is not None:
            values += [kind.max, kind.max + 0.5]
        return st.sampled_from(sorted(set(values)))
    if isinstance(kind, IntTuple):
        one = st.integers(kind.min - 1 if kind.min > 0 else kind.min, kind.min + 3)
        options = [one, st.lists(one, min_size=kind.n, max_size=kind.n)]
        if kind.allow:
            options.append(st.sampled_from(kind.allow))
        return st.one_of(*options)
    if isinstance(kind, IntList):
        lo = -1 if kind.min is None or kind.allow_minus_one else kind.min
        return st.lists(st.integers(lo, 4), min_size=1, max_size=3)
    if isinstance(kind, FloatList):
        return st.lists(st.sampled_from([0.5, 1.0, 1.5, 2.0]), min_size=1, max_size=3)
    raise AssertionError(f"no strategy for the argument kind {type(kind).__name__}: add one to kind_values")


@st.composite
def layer_case(draw: Any, name: str) -> tuple[dict[str, Any], tuple[int, ...], str]:
    entry = REGISTRY[name]
    ex = draw(st.sampled_from(entry.examples))
    args = dict(ex.args)
    for arg, spec in entry.args.items():
        if spec.own or arg == "return_indices":
            continue  # dlspec's own options (causal) have no torch counterpart; (values, indices) is refused
        if spec.inferred:
            if draw(st.integers(0, 9)) == 0:  # sometimes written, right or wrong
                args[arg] = draw(kind_values(spec.kind))
        elif spec.required and arg not in args or draw(st.integers(0, 3)) == 0:
            args[arg] = draw(kind_values(spec.kind))
    shape = [draw(st.sampled_from(sorted({1, 2, max(1, d - 1), d, d + 1}))) for d in ex.input]
    change = draw(st.integers(0, 9))
    if change == 0 and len(shape) > 1:
        shape.pop(draw(st.integers(0, len(shape) - 1)))
    elif change == 1:
        shape.insert(draw(st.integers(0, len(shape))), draw(st.integers(1, 4)))
    return args, tuple(shape), ex.dtype


def _torch_value(v: Any, x: torch.Tensor) -> Any:
    if v == "in_channels":  # `groups: in_channels`, `out_channels: in_channels`
        return x.shape[1]
    return tuple(v) if isinstance(v, list) else v


def torch_output(entry: LayerType, args: dict[str, Any], x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """torch's output for a batch, and the module's parameter count; raises what torch raises."""
    kw = {k: _torch_value(v, x) for k, v in args.items() if not entry.args[k].own}
    for arg, dim in INFERRED_FROM.items():
        if arg in entry.args and arg not in kw:
            kw[arg] = x.shape[dim]
    module = getattr(torch.nn, entry.name)(**kw).eval()
    wants = [p for p in inspect.signature(module.forward).parameters.values()
             if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    with torch.no_grad():
        y = module(*([x] * max(1, len(wants))))  # self-attention: query, key and value are the input
    if isinstance(y, tuple):  # (output, state) of a recurrent layer, (output, weights) of attention
        y = y[0]
    return y, sum(p.numel() for p in module.parameters())


def _agree(name: str, args: dict[str, Any], shape: tuple[int, ...], dtype: str) -> None:
    entry = REGISTRY[name]
    text = spec_text([{name: args} if args else name], shape, dtype)
    checked = dlspec.check(dlspec.loads(text))
    errors = [f"{d.code}: {d.message}" for d in checked.errors]
    outside = [k for k, v in args.items() if entry.args[k].kind.check(v) is not None]
    if outside:  # beyond the bounds the entry declares (some of which torch leaves to fail later, or never)
        assert any(d.code == "invalid-argument" for d in checked.errors), f"{outside} out of bounds, dlspec: {errors}"
        return
    x = torch.randn(BATCH, *shape) if dtype == "float" else \
        torch.randint(0, max(1, args.get("num_embeddings", 2)) if isinstance(args.get("num_embeddings"), int)
                      else 2, (BATCH, *shape))
    refused: BaseException | str | None = None
    if deliberately_refused(name, args, x):
        refused = "read as one unbatched sample (dlspec refuses it on purpose)"
    else:
        try:
            y, params = torch_output(entry, args, x)
            if y.numel() == 0:  # torch gives an empty tensor; dlspec's output-too-small refuses it
                refused = f"an empty output {tuple(y.shape)}"
        except REFUSED as e:
            refused = e
    if refused is not None:
        assert errors, f"torch refuses it ({str(refused).splitlines()[0][:200]}), dlspec says ok\n{text}"
        return
    said = {d.code for d in checked.errors}
    if said == {"shape-mismatch"} and any(entry.args[k].inferred for k in args):
        return  # a written input size that disagrees: refused even where torch never reads it (affine: false)
    if said and said <= {"rank", "channels-last"}:
        # a rank torch reads as one unbatched sample, the batch as a channel or a step: it then takes one more
        # dimension as well (dlspec wants the batch and a whole sample, and refuses this on purpose)
        try:
            torch_output(entry, args, x.unsqueeze(0))  # the unbatched reading, given a batch of one
            return
        except REFUSED:
            pass
    assert not errors, f"torch runs it, dlspec says {errors}\n{text}"
    row = checked.rows[0]
    assert tuple(y.shape[1:]) == row.output.shape, f"torch gives {tuple(y.shape[1:])}, dlspec {row.output.shape}\n{text}"
    assert params == row.params, f"torch has {params} parameters, dlspec {row.params}\n{text}"


FUZZ = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


@pytest.mark.parametrize("name", NAMES)
@FUZZ
@given(data=st.data())
def test_layer_fuzzed_from_its_entry_agrees_with_torch(name: str, data: Any) -> None:
    entry = REGISTRY[name]
    if entry.torch_min is not None and tuple(int(p) for p in torch.__version__.split("+")[0].split(".")[:2]) < \
            tuple(int(p) for p in entry.torch_min.split(".")):
        pytest.skip(f"{name} needs torch {entry.torch_min}")
    args, shape, dtype = data.draw(layer_case(name))
    _agree(name, args, shape, dtype)


def test_every_argument_kind_has_a_strategy() -> None:
    for entry in REGISTRY.values():
        if _fuzzed(entry):
            for spec in entry.args.values():
                kind_values(spec.kind)
    assert len(NAMES) > 80


# --- every rank, every layer type: a diagnostic or torch's shape, never an exception ------------------------

def _ranked_spec(name: str, args: dict[str, Any], shape: list[Any], dtype: str) -> str:
    """A spec whose one layer reads an input of this shape (`inputs:` allows one value per sample, shape [])."""
    entry = REGISTRY[name]
    layer: dict[str, Any] = {name: args or None}
    if entry.arity != 1:
        layer["from"] = ["x", "x"]
    return f"inputs: {{x: {{shape: {flow(shape)}, dtype: {dtype}}}}}\nlayers:\n  - {flow(layer)}\n"


RANKED = [pytest.param(name, i, id=f"{name}-{i}") for name in sorted(REGISTRY)
          for i in range(len(REGISTRY[name].examples))]


@pytest.mark.parametrize("name, i", RANKED)
def test_every_rank_is_answered(name: str, i: int) -> None:
    """Each example's arguments on inputs of rank 0 (one value per sample, as after a Mean over every dimension)
    to 5, with known and symbolic sizes: a diagnostic or an output, never an exception.  Where the checker
    accepts one value per sample, torch runs the layer on (N,) and gives the shape inferred."""
    entry = REGISTRY[name]
    ex = entry.examples[i]
    for rank in range(6):
        for symbolic in (False, True):
            sizes = (list(ex.input) + [3, 4, 5, 6, 7])[:rank]
            shape: list[Any] = [f"S{j}" if symbolic and j % 2 == 0 else d for j, d in enumerate(sizes)]
            checked = dlspec.check(dlspec.loads(_ranked_spec(name, ex.args, shape, ex.dtype)))
            json.dumps(to_json(checked))
            render_text(checked)
            if rank or not checked.ok or not _fuzzed(entry) or _too_new(entry):
                continue
            x = torch.randn(BATCH) if ex.dtype == "float" else torch.randint(0, 2, (BATCH,))
            y, params = torch_output(entry, ex.args, x)  # the checker accepts it: torch must run it
            assert tuple(y.shape[1:]) == checked.rows[0].output.shape and params == checked.rows[0].params


def _too_new(entry: LayerType) -> bool:
    if entry.torch_min is None:
        return False
    return tuple(int(p) for p in torch.__version__.split("+")[0].split(".")[:2]) < \
        tuple(int(p) for p in entry.torch_min.split("."))
