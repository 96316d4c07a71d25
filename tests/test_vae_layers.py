"""What the registry-driven tests cannot see of a VAE's pieces: Reparameterize, Exp, Log, Scale and
GaussianKLLoss, each against torch's own (torch.distributions, torch's functions, autograd's saved tensors,
FlopCounterMode), the shape rule's diagnostics at their lines, and a VAE trained by `dlspec run` resuming
bit-exactly.

The registry tests (tests/test_registry.py, test_export.py) already build every example of the new entries
and compare the output, parameters and the evaluating output with torch's functions; here: the sample
itself (training), its gradient, its statistics, the generator it draws from, and the KL term.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from conftest import flow, spec_text
from hypothesis import given, settings
from hypothesis import strategies as st
from test_steps import fake_graphs  # noqa: F401  (a fixture: the CUDA-graph engine on the CPU)

torch = pytest.importorskip("torch")
from torch.distributions import Normal, kl_divergence  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

import dlspec  # noqa: E402
from dlspec import cli, modules  # noqa: E402
from dlspec.losses import LOSSES, GaussianKLLoss  # noqa: E402
from dlspec.registry import REGISTRY  # noqa: E402
from dlspec.report import render_text  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def _errors(text: str) -> list[tuple[str, int, str]]:
    checked = dlspec.check(dlspec.loads(text))
    return [(d.code, d.line, d.message) for d in checked.errors]


# --- Reparameterize: the sample against torch.distributions ---------------------------------------------

def test_training_sample_is_torchs_rsample_from_the_global_generator() -> None:
    """Bit for bit torch's Normal(mu, exp(logvar / 2)).rsample() after the same torch.manual_seed: the eps of
    torch's global generator (which a run seeds and its checkpoint saves), not a generator of its own."""
    mu, logvar = torch.randn(5, 7), torch.randn(5, 7)
    layer = modules.Reparameterize().train()
    for seed in (0, 1, 12345):
        torch.manual_seed(seed)
        got = layer(mu, logvar)
        torch.manual_seed(seed)
        want = Normal(mu, torch.exp(logvar / 2)).rsample()
        assert torch.equal(got, want)
    torch.manual_seed(3)
    a, b = layer(mu, logvar), layer(mu, logvar)
    assert not torch.equal(a, b)  # a new eps each call


def test_training_gradient_is_torchs() -> None:
    """The gradient reaches mu and logvar as through torch's rsample (d/dmu = 1, d/dlogvar = eps·std/2)."""
    mu, logvar = torch.randn(4, 6, requires_grad=True), torch.randn(4, 6, requires_grad=True)
    weight = torch.randn(4, 6)
    torch.manual_seed(7)
    (modules.Reparameterize().train()(mu, logvar) * weight).sum().backward()
    got = mu.grad.clone(), logvar.grad.clone()
    mu.grad = logvar.grad = None
    torch.manual_seed(7)
    (Normal(mu, torch.exp(logvar / 2)).rsample() * weight).sum().backward()
    assert torch.allclose(got[0], mu.grad) and torch.allclose(got[1], logvar.grad)
    assert torch.equal(got[0], weight)


def test_training_samples_have_the_asked_mean_and_variance() -> None:
    mu, logvar = torch.tensor([[-2.0, 0.0, 3.0]]), torch.tensor([[0.0, math.log(4.0), math.log(0.25)]])
    layer = modules.Reparameterize().train()
    torch.manual_seed(0)
    z = layer(mu.expand(200_000, 3), logvar.expand(200_000, 3))
    assert torch.allclose(z.mean(0), mu[0], atol=0.02)
    assert torch.allclose(z.var(0), logvar[0].exp(), rtol=0.02)


def test_evaluating_gives_mu_and_draws_nothing() -> None:
    mu, logvar = torch.randn(3, 5), torch.randn(3, 5)
    layer = modules.Reparameterize().eval()
    state = torch.get_rng_state()
    assert torch.equal(layer(mu, logvar), mu) and torch.equal(layer(mu, logvar + 100), mu)
    assert torch.equal(torch.get_rng_state(), state)


def test_the_built_cvae_samples_as_its_reference_while_training() -> None:
    """specs/zoo/cvae.yaml built, in training mode, against tests/zoo_reference.py's CVAE with the same weights
    and seed (test_zoo compares them evaluating, where the code is mu)."""
    import zoo_reference

    checked = dlspec.check(str(ROOT / "specs" / "zoo" / "cvae.yaml"))
    assert checked.ok
    model, ref = dlspec.build(checked).train(), zoo_reference.CVAE().train()
    model.load_state_dict(dict(zip(model.state_dict(), ref.state_dict().values(), strict=True)))
    image, label = torch.rand(4, 1, 28, 28), torch.tensor([0, 3, 9, 3])
    torch.manual_seed(5)
    got = model(image, label)
    torch.manual_seed(5)
    want = ref(image, label)
    for g, w in zip(got, want, strict=True):
        assert torch.allclose(g, w, atol=1e-6)
    torch.manual_seed(6)
    assert not torch.allclose(model(image, label)[0], got[0])  # another eps, another reconstruction
    model.eval()
    assert torch.equal(model(image, label)[0], model(image, label)[0])


# --- Reparameterize: the shape rule ----------------------------------------------------------------------

HEADS = """\
input: {input}
layers:
  - Linear: 4
    name: mu
  - Linear: {width}
    from: input
    name: logvar
  - Reparameterize: [mu, logvar]
"""


def test_one_shape_is_the_output() -> None:
    checked = dlspec.check(dlspec.loads(HEADS.format(input="[10]", width=4)))
    assert checked.ok and checked.rows[-1].output.shape == (4,) and checked.rows[-1].params == 0
    seq = dlspec.check(dlspec.loads(HEADS.format(input="[T, 10]", width=4)))
    assert seq.ok and seq.rows[-1].output.shape == ("T", 4)


def test_two_shapes_are_a_merge_shape_error_at_its_line_as_torch_fails() -> None:
    text = HEADS.format(input="[10]", width=3)
    assert _errors(text) == [("merge-shape", 8, "Reparameterize reads mu and logvar of one shape, got (N, 4) and "
                                                "(N, 3)")]
    d = dlspec.check(dlspec.loads(text)).errors[0]
    assert d.notes == ["layer 0 Linear gives 4 features", "layer 1 Linear gives 3 features"]
    assert "two `Linear` heads with the same out_features" in (d.help or "")
    with pytest.raises(RuntimeError):  # torch cannot combine them either
        modules.Reparameterize().train()(torch.zeros(2, 4), torch.zeros(2, 3))


def test_sizes_torch_would_broadcast_are_refused_on_purpose() -> None:
    """logvar of one value for four means would broadcast in torch; each mean has its own variance, so dlspec
    refuses it as a mistake (a learned shared variance is a Parameter of the full shape)."""
    assert [e[0] for e in _errors(HEADS.format(input="[10]", width=1))] == ["merge-shape"]
    text = "input: [10]\nlayers:\n  - Linear: 4\n    name: mu\n  - Reshape: [1, 4]\n    name: logvar\n" \
           "  - Reparameterize: [mu, logvar]\n"
    assert _errors(text) == [("merge-shape", 7, "Reparameterize reads mu and logvar of one shape, got (N, 4) and "
                                                "(N, 1, 4)")]


SYMBOLIC = """\
input: [8, H]
layers:
  - Conv1d: {out_channels: 4, kernel_size: 1}
    name: mu
  - Conv1d: {out_channels: 4, kernel_size: 1}
    from: input
  - MaxPool1d: 2
  - Upsample: {scale_factor: 2}
    name: logvar
  - Reparameterize: [mu, logvar]
"""


def test_symbolic_sizes_equal_only_for_even_h_name_the_declaration() -> None:
    checked = dlspec.check(dlspec.loads(SYMBOLIC))
    (d,) = checked.errors
    assert (d.code, d.line) == ("merge-shape", 10)
    assert d.message == "Reparameterize reads mu and logvar of one shape, got 4@H and 4@(H//2)*2"
    assert d.help == ("the sizes agree when H is a multiple of 2: if that always holds, declare it with "
                      "`symbols: {H: {divisible_by: 2}}`")
    declared = dlspec.check(dlspec.loads(SYMBOLIC + "symbols: {H: {divisible_by: 2}}\n"))
    assert declared.ok and declared.rows[-1].output.shape == (4, "H")
    model = dlspec.build(declared).eval()
    for h in (2, 6, 10):  # torch agrees: the shapes meet for even H
        assert model(torch.randn(2, 8, h)).shape == (2, 4, h)
    with pytest.raises(RuntimeError):  # and not for odd H
        dlspec.build(declared).train()(torch.randn(2, 8, 7))


@settings(max_examples=80, derandomize=True)
@given(shapes=st.lists(st.lists(st.integers(1, 3), min_size=1, max_size=3), min_size=2, max_size=2),
       long=st.sampled_from([None, 0, 1]))
def test_random_pairs_against_torch(shapes: list[list[int]], long: int | None) -> None:
    """Two inputs of drawn shapes (and sometimes ids): where dlspec says ok, torch gives the inferred shape;
    where torch fails, dlspec has an error (and beyond torch, shapes that would only broadcast are refused)."""
    kinds = [{"shape": s, "dtype": "long"} if i == long else s for i, s in enumerate(shapes)]
    text = f"inputs: {{mu: {flow(kinds[0])}, logvar: {flow(kinds[1])}}}\nlayers:\n  - Reparameterize: [mu, logvar]\n"
    checked = dlspec.check(dlspec.loads(text))
    xs = [torch.randint(0, 3, (2, *s)) if i == long else torch.randn(2, *s) for i, s in enumerate(shapes)]
    try:
        torch.manual_seed(0)
        y = modules.Reparameterize().train()(*xs)
    except RuntimeError:
        assert not checked.ok
        return
    if checked.ok:
        assert tuple(y.shape) == (2, *checked.rows[0].output.shape) and y.dtype == torch.float32
        model = dlspec.build(checked).train()
        torch.manual_seed(0)
        assert torch.equal(model(*xs), y)
    else:
        assert shapes[0] != shapes[1] or long is not None, [d.message for d in checked.errors]


def test_repeat_gives_the_second_repetition_one_tensor() -> None:
    text = HEADS.format(input="[10]", width=4) + "    repeat: 2\n"
    assert _errors(text) == [("reference", 8, "Reparameterize reads two tensors, but `repeat: 2` gives each "
                                              "repetition after the first only the output of the one before")]


def test_ids_are_a_dtype_error() -> None:
    text = "input: {shape: [5], dtype: long}\nlayers:\n  - Identity:\n    name: mu\n  - Reparameterize: [mu, mu]\n"
    assert [(c, line) for c, line, _ in _errors(text)] == [("dtype", 5)]


@pytest.mark.parametrize("written, named", [("  - Reparameterize\n", None), ("  - Reparameterize: {from: mu}\n", 1),
                                            ("  - Reparameterize: {from: [mu, mu, mu]}\n", 3)])
def test_a_wrong_count_is_one_reference_error(written: str, named: int | None) -> None:
    """Said once, by the schema stage at `from:`, with the order of the two: not again by the shape pass."""
    text = "input: [6]\nlayers:\n  - Linear: 4\n    name: mu\n" + written
    checked = dlspec.check(dlspec.loads(text))
    (d,) = checked.errors
    assert d.code == "reference" and d.line == 5
    assert d.message == "Reparameterize reads two inputs: name them with `from:`" + (f" (it names {named})"
                                                                                   if named else "")
    assert d.help == "e.g. `from: [-1, logvar]`, in the order [mu, logvar]"


def test_a_decoder_layer_without_memory_is_one_error() -> None:
    """The same for TransformerDecoderLayer (it was said twice, the second time by the shape pass)."""
    text = "input: [5, 8]\nlayers:\n  - TransformerDecoderLayer: {nhead: 2, batch_first: true}\n"
    (d,) = dlspec.check(dlspec.loads(text)).errors
    assert (d.code, d.help) == ("reference", "e.g. `from: [-1, memory]`, in the order [target, memory]")


def test_the_bare_list_is_from() -> None:
    bare = dlspec.check(dlspec.loads(HEADS.format(input="[10]", width=4)))
    written = dlspec.check(dlspec.loads(HEADS.format(input="[10]", width=4).replace(
        "Reparameterize: [mu, logvar]", "Reparameterize:\n    from: [mu, logvar]")))
    assert bare.ok and written.ok
    assert [r.item.sources for r in bare.rows] == [r.item.sources for r in written.rows]
    assert REGISTRY["Reparameterize"].reads_list and not REGISTRY["TransformerDecoderLayer"].reads_list


# --- Reparameterize: what training keeps, and the MACs -----------------------------------------------------

def test_saved_values_are_what_autograd_keeps() -> None:
    """The entry's `saved`: the output (as every layer's) plus what autograd saves inside the layer (eps and
    exp(logvar / 2)), counted with torch's saved-tensor hooks."""
    checked = dlspec.check(dlspec.loads(HEADS.format(input="[10]", width=4)))
    row = checked.rows[-1]
    saved: list[int] = []
    mu, logvar = torch.randn(1, 4, requires_grad=True), torch.randn(1, 4, requires_grad=True)
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
        modules.Reparameterize().train()(mu, logvar)
    assert REGISTRY["Reparameterize"].saved(row.args, row.input.shape, row.output.shape) == 4 + sum(saved) == 12


def test_macs_are_torchs_count() -> None:
    """No weights, no multiply-adds: MACs count the multiply-adds of layers with weights (docs/diagnostics.md),
    and torch's FlopCounterMode counts none for the sample, or for Exp, Log and Scale."""
    x = torch.randn(3, 8)
    with FlopCounterMode(display=False) as flops:
        for module, inputs in ((modules.Reparameterize().train(), (x, x)), (modules.Exp(), (x,)),
                               (modules.Log(), (x.abs(),)), (modules.Scale(0.5), (x,))):
            module(*inputs)
    assert flops.get_total_flops() == 0
    checked = dlspec.check(dlspec.loads(HEADS.format(input="[10]", width=4) + "  - Exp\n  - Log\n  - Scale: 2\n"))
    assert [r.macs for r in checked.rows[2:]] == [0, 0, 0, 0]


# --- Exp, Log, Scale against torch's functions -------------------------------------------------------------

FLOAT32_EDGES = [0.0, 1.0, -1.0, 0.5, 1e-30, -3.25, 65504.0, 3.4028234663852886e38, -1e-45]


@settings(max_examples=60, derandomize=True)
@given(name=st.sampled_from(["Exp", "Log", "Scale"]), shape=st.lists(st.integers(1, 4), min_size=1, max_size=3),
       factor=st.sampled_from(FLOAT32_EDGES), spread=st.sampled_from([1.0, 30.0, 100.0]))
def test_elementwise_math_is_torchs(name: str, shape: list[int], factor: float, spread: float) -> None:
    """Built from a spec, the same values as torch.exp, torch.log, x * factor (inf where float32 overflows,
    nan where Log meets a negative value), and the shape the checker inferred."""
    layer: Any = {"Scale": {"factor": factor}} if name == "Scale" else name
    checked = dlspec.check(dlspec.loads(spec_text([layer], shape)))
    assert checked.ok, [d.message for d in checked.errors]
    model = dlspec.build(checked).train()
    g = torch.Generator().manual_seed(len(shape) * 7 + int(spread))
    x = torch.randn(2, *shape, generator=g) * spread
    with torch.no_grad():
        y = model(x)
    want = {"Exp": lambda: torch.exp(x), "Log": lambda: torch.log(x), "Scale": lambda: x * factor}[name]()
    assert tuple(y.shape) == (2, *checked.rows[0].output.shape) == tuple(want.shape)
    assert y.dtype == torch.float32
    assert torch.equal(y.isnan(), want.isnan()) and torch.equal(y.nan_to_num(), want.nan_to_num())


@pytest.mark.parametrize("value, message", [
    (".inf", "Scale factor cannot be inf"),
    ("-1e39", "Scale factor cannot be -1e+39"),
    ("true", "Scale arguments must be a mapping, got True"),
    ("half", "Scale factor cannot be half"),
])
def test_scale_refuses_what_float32_cannot_hold(value: str, message: str) -> None:
    assert _errors(f"input: [3]\nlayers:\n  - Scale: {value}\n") == [("invalid-argument", 3, message)]


def test_scale_bare_value_is_the_factor_and_missing_factor_is_said() -> None:
    bare = dlspec.check(dlspec.loads("input: [3]\nlayers:\n  - Scale: 2\n"))
    assert bare.ok and bare.rows[0].args == {"factor": 2.0} and isinstance(bare.rows[0].args["factor"], float)
    assert "Scale(×2)" in render_text(bare)
    assert _errors("input: [3]\nlayers:\n  - Scale\n") == [("missing-argument", 3, "Scale needs `factor` (a number)")]


@pytest.mark.parametrize("layer", ["Exp", "Log", "Scale: 0.5"])
def test_ids_are_refused(layer: str) -> None:
    errors = _errors(f"input: {{shape: [5], dtype: long}}\nlayers:\n  - {layer}\n")
    assert [(c, line) for c, line, _ in errors] == [("dtype", 3)]


def test_log_of_anything_float_checks_without_a_warning() -> None:
    """Log's domain (positive values) is the data's, not the shapes': a note in its doc, no diagnostic."""
    checked = dlspec.check(dlspec.loads("input: [3]\nlayers:\n  - Linear: 4\n  - Log\n"))
    assert checked.ok and not checked.diagnostics
    assert "positive" in REGISTRY["Log"].doc


# --- GaussianKLLoss against torch.distributions ------------------------------------------------------------

def _reference(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Each value's KL(N(mu, exp(logvar)) || N(0, 1)), from torch.distributions."""
    return kl_divergence(Normal(mu, torch.exp(logvar / 2)), Normal(torch.zeros_like(mu), torch.ones_like(mu)))


@pytest.mark.parametrize("shape", [(8, 20), (3, 4, 5, 5), (1, 1)])
def test_kl_is_torch_distributions(shape: tuple[int, ...]) -> None:
    g = torch.Generator().manual_seed(sum(shape))
    mu, logvar = torch.randn(*shape, generator=g) * 2, torch.randn(*shape, generator=g) * 2
    per_value = _reference(mu, logvar)
    n = shape[0]
    torch.testing.assert_close(GaussianKLLoss()(mu, logvar), per_value.sum() / n)  # default: batchmean
    torch.testing.assert_close(GaussianKLLoss("batchmean")(mu, logvar), per_value.flatten(1).sum(1).mean())
    torch.testing.assert_close(GaussianKLLoss("sum")(mu, logvar), per_value.sum())
    torch.testing.assert_close(GaussianKLLoss("mean")(mu, logvar), per_value.mean())
    torch.testing.assert_close(GaussianKLLoss("none")(mu, logvar), per_value)


def test_kl_gradient_is_torch_distributions() -> None:
    mu, logvar = torch.randn(6, 10, requires_grad=True), torch.randn(6, 10, requires_grad=True)
    GaussianKLLoss()(mu, logvar).backward()
    got = mu.grad.clone(), logvar.grad.clone()
    mu.grad = logvar.grad = None
    (_reference(mu, logvar).sum() / 6).backward()
    torch.testing.assert_close(got[0], mu.grad)
    torch.testing.assert_close(got[1], logvar.grad)
    torch.testing.assert_close(got[0], mu.detach() / 6)  # d/dmu of mu²/2, per sample


def test_kl_is_zero_at_the_prior_and_positive_elsewhere() -> None:
    assert GaussianKLLoss()(torch.zeros(4, 3), torch.zeros(4, 3)).item() == 0
    assert GaussianKLLoss()(torch.full((4, 3), 0.1), torch.zeros(4, 3)).item() > 0


def test_kl_refusals() -> None:
    with pytest.raises(ValueError, match="reduction must be one of batchmean, sum, mean, none, got 'average'"):
        GaussianKLLoss("average")
    with pytest.raises(ValueError, match=r"one shape \(N, ...\), got \(2, 3\) and \(2, 4\)"):
        GaussianKLLoss()(torch.zeros(2, 3), torch.zeros(2, 4))
    assert LOSSES["GaussianKLLoss"] is GaussianKLLoss


# --- a VAE trained by `dlspec run`: resume is bit-exact --------------------------------------------------

# The sampled code inside a graph, trained with one output and one loss (what the trainer takes today: the
# reconstruction task, MSE against the image); the KL term on mu and logvar waits for losses on named outputs.
TINY_VAE = """\
name: tinyvae
input: [1, 28, 28]
outputs: [recon]
layers:
  - Flatten
  - Linear: 16
  - ReLU:
    name: hidden
  - Linear: 4
    name: mu
  - Linear: 4
    from: hidden
    name: logvar
  - Reparameterize: [mu, logvar]
  - Linear: 784
  - Sigmoid
  - Unflatten: {dim: 1, unflattened_size: [1, 28, 28]}
    name: recon
train:
  task: reconstruction
  data: {name: shapes, n_train: 64, n_test: 16}
  epochs: 2
  batch_size: 16
  optimizer: {Adam: {lr: 0.01}}
  device: cpu
  seed: 3
"""


def _run(capsys: Any, *argv: Any) -> None:
    capsys.readouterr()
    assert cli.main(["run", *map(str, argv), "--quiet"]) == 0, capsys.readouterr().err


def _weights(out: Path) -> dict[str, Any]:
    (d,) = [p for p in out.glob("*/*") if p.is_dir()]
    return torch.load(d / "checkpoint.pt", map_location="cpu", weights_only=True)


def _two_epochs_and_resumed(tmp_path: Path, capsys: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    spec = tmp_path / "tinyvae.yaml"
    spec.write_text(TINY_VAE, encoding="utf-8")
    _run(capsys, spec, "--out", tmp_path / "whole")
    _run(capsys, spec, "--out", tmp_path / "parts", "--epochs", "1")
    (d,) = [p for p in (tmp_path / "parts").glob("*/*") if p.is_dir()]
    _run(capsys, "--resume", d, "--epochs", "2")
    return _weights(tmp_path / "whole"), _weights(tmp_path / "parts")


def test_a_vae_resumes_bit_exactly(tmp_path: Path, capsys: Any) -> None:
    """2 epochs against 1 epoch, then a resume for the second: the same weights, bit for bit, because eps comes
    from torch's global generator, whose state the checkpoint saves and a resume restores."""
    whole, parts = _two_epochs_and_resumed(tmp_path, capsys)
    assert (whole["epoch"], parts["epoch"]) == (2, 2)
    for name, t in whole["model"].items():
        assert torch.equal(t, parts["model"][name]), name
    assert [h["train_loss"] for h in whole["history"]] == [h["train_loss"] for h in parts["history"]]


def test_a_generator_of_its_own_would_not_resume(tmp_path: Path, capsys: Any, monkeypatch: Any) -> None:
    """What the test above guards against: eps from a generator the module seeds when built starts again on
    resume, and the second epoch draws the first one's eps — the weights differ."""
    def own_generator(self: Any, mu: Any, logvar: Any) -> Any:
        if not self.training:
            return mu
        if not hasattr(self, "_gen"):
            self._gen = torch.Generator().manual_seed(0)
        return mu + torch.randn(mu.shape, generator=self._gen) * torch.exp(0.5 * logvar)

    monkeypatch.setattr(modules.Reparameterize, "forward", own_generator)
    whole, parts = _two_epochs_and_resumed(tmp_path, capsys)
    assert any(not torch.equal(t, parts["model"][n]) for n, t in whole["model"].items())


def test_the_cuda_graph_engine_draws_the_eager_eps(tmp_path: Path, capsys: Any, fake_graphs: Any) -> None:  # noqa: F811
    """The CUDA-graph path (run on the CPU through test_steps' stand-in for torch.cuda's graph calls): its warm-up
    and capture restore the random state, so each replayed step samples the eps of the eager step, bit for bit."""
    from test_steps import losses, run

    text = TINY_VAE.replace("  device: cpu\n", "  device: cpu\n  cuda_graph: false\n")
    plain, s0, _ = run(tmp_path, capsys, text, out="plain")
    fast, s1, _ = run(tmp_path, capsys, text, "train.cuda_graph=auto", out="fast")
    assert (s0["path"], s1["path"]) == ("eager", "cuda-graph"), s1["plan"]["why"]
    assert fake_graphs.count("replay") > 0
    assert losses(fast) == losses(plain)
    for k, v in plain["model"].items():
        assert torch.equal(fast["model"][k], v), k
