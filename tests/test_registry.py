"""Registry-driven torch parity: every layer type, every example, against the installed torch.

For each registry entry and each of its examples, a one-layer spec is checked (torch-free), built, and run
for real; the output shape, the parameter count and (where torch's FlopCounterMode counts them: Linear,
Conv*, ConvTranspose*, RNN, GRU, TransformerEncoderLayer) the MACs must agree with what the checker
inferred.  A new layer is covered by adding its register(...) call with examples; an entry without one
fails.  What an entry says of itself (keeps the channels, maps each time step alone, carries a state, is the
identity when evaluating) is checked on the same examples, and its `errors` against torch refusing them.  Defaults are compared with torch's constructors, and symbolic sizes (input [T, 10], ...) with
torch's real sizes for several values of T.
"""

from __future__ import annotations

import inspect
from typing import Any

import pytest
import torch
from conftest import sample, spec_text
from torch.utils.flop_counter import FlopCounterMode

import dlspec
from dlspec import dims
from dlspec.registry import REGISTRY, REQUIRED, LayerType

BATCH = 3
pytestmark = [pytest.mark.filterwarnings("ignore:LSTM with projections is not supported:UserWarning"),
              pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")]
CASES = [pytest.param(name, i, id=f"{name}-{i}") for name in sorted(REGISTRY) for i in range(len(REGISTRY[name].examples))]
# layers whose MACs torch's FlopCounterMode counts in full (it misses LSTM's fused cell and, in eval mode,
# the attention scores of MultiheadAttention; TransformerEncoderLayer is counted in training mode)
MAC_CHECKED = ("Linear", "Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d",
               "RNN", "GRU")


def _version(v: str) -> tuple[int, ...]:
    return tuple(int(p) for p in v.split("+")[0].split(".")[:2])


def _too_new(entry: LayerType) -> bool:
    return entry.torch_min is not None and _version(torch.__version__) < _version(entry.torch_min)


def _torch_class(entry: LayerType) -> Any:
    return None if entry.structural else getattr(torch.nn, entry.name, None)


def _check_ok(text: str) -> dlspec.Checked:
    checked = dlspec.check(dlspec.loads(text))
    assert checked.ok, [f"{d.code}: {d.message}" for d in checked.errors]
    return checked


@pytest.mark.parametrize("name, i", CASES)
def test_example_matches_torch(name: str, i: int) -> None:
    entry = REGISTRY[name]
    if _too_new(entry):
        pytest.skip(f"{name} needs torch {entry.torch_min}")
    ex = entry.examples[i]
    layer: dict[str, Any] = {name: ex.args}
    if entry.arity != 1:  # a merge or a two-input layer: it reads the input twice (a merge: checked against
        layer["from"] = ["input", "input"]  # torch's own op below)
    checked = _check_ok(spec_text([layer], ex.input, ex.dtype))
    assert len(checked.rows) == 1 and checked.output is not None
    row = checked.rows[0]
    assert dims.all_known(row.output.shape), row.output.shape

    torch.manual_seed(0)
    model = dlspec.build(checked).eval()
    x = sample(ex.input, ex.dtype, high=ex.args.get("num_embeddings", 2), batch=BATCH)
    with torch.no_grad(), FlopCounterMode(display=False) as flops:
        y = model(x)
    if entry.arity == 2 and not entry.structural:  # torch's own class on the same weights and the input twice
        ref = getattr(torch.nn, name)(**{k: v for k, v in row.args.items() if not entry.args[k].own}).eval()
        ref.load_state_dict(model.state_dict() if not hasattr(model, "steps") else
                            {k.split(".", 1)[1]: v for k, v in model.state_dict().items()})
        kw = {}
        if row.args.get("causal"):  # the mask torch's own docs build, passed by hand
            kw = {"tgt_mask": torch.nn.Transformer.generate_square_subsequent_mask(x.shape[1]), "tgt_is_causal": True}
        with torch.no_grad():
            assert torch.allclose(ref(x, x, **kw), y, atol=1e-5)

    assert tuple(y.shape) == (BATCH,) + tuple(row.output.shape), f"{name} {ex.args} on {ex.input}"
    assert sum(p.numel() for p in model.parameters()) == row.params == checked.params
    assert sum(b.numel() for b in model.buffers()) == row.buffers == checked.buffers  # BatchNorm's statistics
    if name in MAC_CHECKED:
        assert flops.get_total_flops() / 2 / BATCH == row.macs
    if name == "TransformerEncoderLayer":
        with torch.no_grad(), FlopCounterMode(display=False) as flops:
            model.train()(x)
        assert flops.get_total_flops() / 2 / BATCH == row.macs
    if ex.dtype == "float" and entry.family not in ("shape", "structure", "core"):
        assert y.dtype == x.dtype
    if entry.arity == 0:
        want = {"Add": x + x, "Multiply": x * x, "Average": x, "Maximum": x,
                "Concatenate": torch.cat([x, x], dim=ex.args.get("dim", 1))}[name]
        assert torch.equal(y, want)
    if entry.family == "select":  # dlspec's own modules: against torch's tensor methods
        a = ex.args
        d = a.get("dim", 1)
        want = {"Narrow": lambda: x.narrow(d, a.get("start", 0), a.get("length", 1)),
                "Chunk": lambda: x.chunk(a.get("chunks", 1), d)[a.get("index", 0)],
                "Select": lambda: x.select(d, a.get("index", 0)),
                "Mean": lambda: x.mean(tuple(d) if isinstance(d, list) else d, keepdim=a.get("keepdim", False)),
                "Max": lambda: x.amax(tuple(d) if isinstance(d, list) else d, keepdim=a.get("keepdim", False)),
                "Sum": lambda: x.sum(tuple(d) if isinstance(d, list) else d, keepdim=a.get("keepdim", False))}[name]()
        assert torch.equal(y, want)
    if entry.family in ("math", "sampling"):  # dlspec's own modules: against torch's functions (evaluating)
        want = {"Exp": lambda: torch.exp(x), "Log": lambda: torch.log(x), "Scale": lambda: x * ex.args["factor"],
                "Reparameterize": lambda: x}[name]()  # Reparameterize evaluating: mu, here the input
        assert torch.equal(y.isnan(), want.isnan()) and torch.equal(y.nan_to_num(), want.nan_to_num())


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_entry_has_an_example(name: str) -> None:
    assert len(REGISTRY[name].examples) >= 1, f"{name} has no examples: add at least one to its register(...) call"


@pytest.mark.parametrize("name", sorted(n for n, e in REGISTRY.items() if e.build is None))
def test_default_build_is_a_torch_class(name: str) -> None:
    entry = REGISTRY[name]
    if _too_new(entry):
        pytest.skip(f"{name} needs torch {entry.torch_min}")
    assert not entry.structural
    cls = getattr(torch.nn, name, None)
    assert isinstance(cls, type) and issubclass(cls, torch.nn.Module), f"torch.nn.{name} does not exist"


def _signature(cls: type) -> dict[str, inspect.Parameter]:
    """Constructor parameters; for (*args, **kwargs) wrappers (nn.LSTM) the first base with real ones."""
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        params = dict(inspect.signature(klass.__init__).parameters)
        params.pop("self", None)
        if any(p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params.values()):
            return params
    return {}


def _ctor_only_required(entry: LayerType) -> Any:
    """The torch module built from the first example's required and inferred arguments only."""
    ex = entry.examples[0]
    checked = _check_ok(spec_text([{entry.name: ex.args}], ex.input, ex.dtype))
    row = checked.rows[0]
    args = {n: row.args[n] for n, a in entry.args.items() if a.default is REQUIRED and n in row.args}
    return _torch_class(entry)(**args)


@pytest.mark.parametrize("name", sorted(n for n, e in REGISTRY.items() if not e.structural))
def test_defaults_match_torch(name: str) -> None:
    entry = REGISTRY[name]
    if _too_new(entry):
        pytest.skip(f"{name} needs torch {entry.torch_min}")
    cls = _torch_class(entry)
    assert cls is not None, f"{name} is not structural but torch.nn has no {name}"
    params = _signature(cls)
    open_kwargs = any(p.kind == p.VAR_KEYWORD for p in inspect.signature(cls).parameters.values())
    module = None
    for arg, spec in entry.args.items():
        if spec.own:  # dlspec's option (causal): the module dlspec builds takes it, torch's class does not
            continue
        p = params.get(arg)
        if p is None:
            assert open_kwargs, f"torch.nn.{name} has no argument {arg!r}"
        if spec.inferred:
            continue
        if p is not None and p.default is not p.empty:
            torch_default = getattr(p.default, "__name__", p.default) if callable(p.default) else p.default
            assert spec.default == torch_default, f"{name} {arg}: dlspec default {spec.default!r}, torch {p.default!r}"
            continue
        if p is not None:  # required in torch
            assert spec.default is REQUIRED, f"{name} {arg} is required by torch but has a default in dlspec"
            continue
        # a keyword torch reads from **kwargs (nn.RNN's nonlinearity): compare with the built module
        module = module if module is not None else _ctor_only_required(entry)
        if spec.default is not REQUIRED and hasattr(module, arg):
            assert spec.default == getattr(module, arg), f"{name} {arg}: dlspec {spec.default!r}, torch " \
                                                         f"{getattr(module, arg)!r}"
    for arg, p in params.items():  # every argument torch requires is known to dlspec
        if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and arg != "mode":
            assert arg in entry.args, f"torch.nn.{name} requires {arg!r}, which dlspec does not know"


# --- what an entry says of itself, against torch ---------------------------------------------------------
# The stages ask the registry, not the family name, what a layer does (its module name, whether it keeps the
# channels, is the identity when evaluating, maps each time step alone or carries a state, which Keras names
# stand for it, what torch refuses).  Each claim is checked here on the entry's own examples.

ERROR_CASES = [pytest.param(name, i, id=f"{name}-{i}") for name in sorted(REGISTRY)
               for i in range(len(REGISTRY[name].errors))]
# families where torch refuses some arguments or inputs: each entry of them says which, with the code dlspec gives
ERRORS_REQUIRED = ("conv", "pool", "norm", "recurrent", "attention", "resize")


def _build_one(name: str, args: dict[str, Any], shape: tuple[int, ...], dtype: str) -> tuple[dlspec.Checked, Any, Any]:
    entry = REGISTRY[name]
    layer: dict[str, Any] = {name: args}
    if entry.arity != 1:
        layer["from"] = ["input", "input"]
    checked = _check_ok(spec_text([layer], shape, dtype))
    torch.manual_seed(0)
    model = dlspec.build(checked).eval()
    x = sample(shape, dtype, high=args.get("num_embeddings", 2), batch=BATCH)
    return checked, model, x


@pytest.mark.parametrize("name, i", ERROR_CASES)
def test_torch_refuses_what_dlspec_refuses(name: str, i: int) -> None:
    """Each ErrorExample: torch's own class raises (constructing it or on a batch), and dlspec's check reports
    the entry's code at that layer, without torch."""
    entry = REGISTRY[name]
    if _too_new(entry):
        pytest.skip(f"{name} needs torch {entry.torch_min}")
    ex = entry.errors[i]
    layer: dict[str, Any] = {name: ex.args}
    if entry.arity != 1:
        layer["from"] = ["input", "input"]
    checked = dlspec.check(dlspec.loads(spec_text([layer], ex.input, ex.dtype)))
    got = [d.code for d in checked.errors]
    assert ex.code in got, f"{name} {ex.args} on {ex.input}: dlspec says {got}, the entry says {ex.code}"
    x = sample(ex.input, ex.dtype, high=10, batch=BATCH)
    with pytest.raises((RuntimeError, ValueError, AssertionError, IndexError, NotImplementedError)):  # noqa: PT012
        module = _torch_class(entry)(**ex.args).eval()
        with torch.no_grad():
            module(x, x, x) if name == "MultiheadAttention" else module(x, x) if entry.arity == 2 else module(x)


@pytest.mark.parametrize("family", ERRORS_REQUIRED)
def test_entries_say_what_torch_refuses(family: str) -> None:
    missing = [n for n, e in REGISTRY.items() if e.family == family and not e.errors and not e.structural]
    assert not missing, f"add errors=[ErrorExample(...)] to the register(...) call of {missing}"


def _per_step(entry: LayerType, args: dict[str, Any]) -> bool:
    return bool(entry.per_step(args) if callable(entry.per_step) else entry.per_step)


def _sequence_example(entry: LayerType, ex: Any) -> bool:
    """An input read as a sequence (T, F) of a batch-first layer, or (T,) ids."""
    return (len(ex.input) == 2 if ex.dtype == "float" else len(ex.input) == 1) and ex.args.get("batch_first", True)


@pytest.mark.parametrize("name, i", CASES)
def test_what_an_entry_says_holds_in_torch(name: str, i: int) -> None:
    from dlspec.generate import _forward

    entry = REGISTRY[name]
    if _too_new(entry):
        pytest.skip(f"{name} needs torch {entry.torch_min}")
    ex = entry.examples[i]
    checked, model, x = _build_one(name, ex.args, ex.input, ex.dtype)
    with torch.no_grad():
        y = model(x)
    if entry.keeps_channels:
        assert y.shape[1] == x.shape[1], f"{name} says it keeps the channels: {tuple(x.shape)} -> {tuple(y.shape)}"
    if entry.passthrough:
        assert torch.equal(y, x), f"{name} says it is the identity when evaluating"
    if entry.stateful:
        assert callable(getattr(model[0], "step", None)), f"{name} says it carries a state: its module needs step()"
    per_step = _per_step(entry, checked.rows[0].args)
    # step by step (the state carried, as `dlspec generate` does) against a full pass: equal where the entry says
    # it maps each step alone; different where it mixes steps or says "not for these arguments" (a callable)
    claimed = per_step or entry.mixes_steps or callable(entry.per_step)
    if _sequence_example(entry, ex) and x.shape[1] > 1 and entry.arity == 1 and claimed:
        state: dict[int, Any] = {}
        try:
            with torch.no_grad():
                steps = torch.cat([_forward(checked, model, x[:, t:t + 1], state) for t in range(x.shape[1])], 1)
        except (RuntimeError, ValueError, IndexError):
            assert not per_step, f"{name} {ex.args} says it maps each step alone, but one step fails"
            return
        if per_step:  # (nan where the full pass gives nan: Log of a negative value)
            torch.testing.assert_close(steps, y, rtol=1e-5, atol=1e-5, equal_nan=True)
        else:
            assert steps.shape != y.shape or not torch.allclose(steps, y, atol=1e-4), \
                f"{name} {ex.args} says it does not map each step alone, but it does"


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_entry_declarations_are_consistent(name: str) -> None:
    entry = REGISTRY[name]
    assert entry.prefix == "" or entry.prefix.isidentifier() and entry.prefix.islower()
    if entry.per_step is not False:  # claimed: some example must show it, step by step against a full pass
        shown = [ex for ex in entry.examples if _sequence_example(entry, ex) and ex.input[0] > 1
                 and _per_step(entry, _check_ok(spec_text([{name: ex.args}], ex.input, ex.dtype)).rows[0].args)]
        assert shown, f"{name} says per_step: add an example on a sequence (T, F) (or (T,) ids) where it holds"
    for k in entry.keras:
        for keras_arg, torch_arg in k.renames:
            assert torch_arg in entry.args, f"{k.name} {keras_arg} -> {name} has no {torch_arg!r}"
        assert all(a in entry.args for a, _ in k.implied), f"{k.name} implies arguments {name} does not have"
        assert all(a in REGISTRY for a in k.after)
    shared = {e.name: k for e in REGISTRY.values() for k in e.keras
              if any(k.name.lower() == mine.name.lower() for mine in entry.keras)}
    if len(shared) > 1:  # one Keras name, several torch layers: each for its own input ranks
        ranks = [r for k in shared.values() for r in k.ranks]
        assert ranks and len(ranks) == len(set(ranks)), f"{sorted(shared)} share a Keras name: give each its ranks"


# --- symbolic sizes: the inferred expression, evaluated, is torch's size -----------------------------------

SYMBOLIC = [
    ([10, "T"], [{"Conv1d": {"out_channels": 4, "kernel_size": 3, "stride": 2, "padding": 1}},
                 {"MaxPool1d": {"kernel_size": 3, "stride": 2, "ceil_mode": True}},
                 {"Conv1d": {"out_channels": 4, "kernel_size": 2, "dilation": 2}},
                 {"AvgPool1d": {"kernel_size": 2, "stride": 2, "padding": 1, "ceil_mode": True}},
                 {"Upsample": {"scale_factor": 3}},
                 {"MaxPool1d": {"kernel_size": 4, "stride": 3, "padding": 2, "ceil_mode": True}},
                 {"ConvTranspose1d": {"out_channels": 2, "kernel_size": 3, "stride": 2, "output_padding": 1}},
                 {"Upsample": {"scale_factor": 1.5, "mode": "linear"}},
                 {"ReflectionPad1d": {"padding": [1, 2]}},
                 {"AvgPool1d": {"kernel_size": 3, "stride": 2}},
                 {"Permute": [0, 2, 1]},
                 {"GRU": {"hidden_size": 5, "batch_first": True}}, "Last"]),
    (["T", 10], [{"LSTM": {"hidden_size": 8, "num_layers": 2, "bidirectional": True, "batch_first": True}},
                 {"Linear": {"out_features": 6}},
                 {"RNN": {"hidden_size": 4, "batch_first": True}},
                 {"Permute": [0, 2, 1]},
                 {"Conv1d": {"out_channels": 3, "kernel_size": 5, "padding": "same"}},
                 {"MaxPool1d": {"kernel_size": 2}},
                 {"Upsample": {"size": 7}}, "Flatten", {"Linear": {"out_features": 2}}]),
    (["T", 10], [{"GRU": {"hidden_size": 6, "batch_first": True}}, {"Linear": {"out_features": 3}},
                 {"Unflatten": {"dim": 1, "unflattened_size": [1, -1]}}, "Flatten", {"Permute": [0, 1]}]),
    ([2, "T", "T"], [{"Conv2d": {"out_channels": 3, "kernel_size": [3, 2], "stride": [2, 1], "padding": 1}},
                     {"MaxPool2d": {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True}},
                     {"ConvTranspose2d": {"out_channels": 2, "kernel_size": 4, "stride": 2, "padding": 1}},
                     {"LPPool2d": {"norm_type": 2, "kernel_size": 2, "ceil_mode": True}},
                     {"PixelUnshuffle": {"downscale_factor": 1}}, {"ZeroPad2d": {"padding": [0, 1, 2, 0]}},
                     {"Upsample": {"scale_factor": [2, 0.5], "mode": "bilinear"}}, "Flatten"]),
]


@pytest.mark.parametrize("shape, layers", SYMBOLIC, ids=[f"stack{i}" for i in range(len(SYMBOLIC))])
def test_symbolic_sizes_evaluate_to_torch_sizes(shape: list[Any], layers: list[Any]) -> None:
    checked = _check_ok(spec_text(layers, shape))
    assert not dims.all_known(checked.rows[0].output.shape)
    torch.manual_seed(0)
    model = dlspec.build(checked).eval()
    assert len(model) == len(checked.rows)
    ran = 0
    for t in (5, 9, 10, 13, 16, 23, 31, 40, 57, 64):
        concrete = [t if d == "T" else d for d in shape]
        fixed = dlspec.check(dlspec.loads(spec_text(layers, concrete)))
        x = torch.randn(2, *concrete)
        if not fixed.ok:  # too small for this stack: torch must refuse it too
            with pytest.raises(RuntimeError), torch.no_grad():
                model(x)
            continue
        ran += 1
        with torch.no_grad():
            for row, fixed_row, module in zip(checked.rows, fixed.rows, model, strict=True):
                x = module(x)
                got = tuple(dims.evaluate(d, {"T": t}) for d in row.output.shape)
                assert tuple(x.shape[1:]) == got == fixed_row.output.shape, \
                    f"T={t}: {row.type} {row.args}: inferred {row.output.shape}"
                assert dims.evaluate(row.macs, {"T": t}) == fixed_row.macs
    assert ran >= 5
