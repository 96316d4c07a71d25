"""The fast path (dlspec/plan.py, dlspec/graphs.py) against the plain eager path.

The reference for every test here is a plain run of the same spec (`cuda_graph: false`,
`channels_last: false`, no compile): the fast path must reach the same losses and weights.  CUDA graphs
cannot be captured on a CPU, so the graph engine runs with a stand-in for torch.cuda's graph calls
(`FakeAPI`): warm-up and capture run the step for real (the engine must undo what they did), and a
"graph" remembers the optimizer hyperparameters it was captured with and refuses to replay once they
changed — what a real graph, which baked them in, would silently get wrong.
"""

from __future__ import annotations

import dataclasses
import json
import types
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from dlspec import cli  # noqa: E402
from dlspec import graphs as graphs_mod  # noqa: E402
from dlspec import plan as plan_mod  # noqa: E402
from dlspec.data.base import DATASETS, Bundle, DatasetType, Split, register  # noqa: E402
from dlspec.registry import Arg, Int  # noqa: E402


def _images(args: dict[str, Any], root: str) -> Bundle:
    """1×8×8 images of 3 classes (a bright row, column or diagonal, plus noise)."""
    g = torch.Generator().manual_seed(5)

    def split(n: int) -> Split:
        y = torch.arange(n) % 3
        x = torch.randn(n, 1, 8, 8, generator=g) * 0.5
        for i in range(n):
            k = int(torch.randint(0, 8, (1,), generator=g))
            if y[i] == 0:
                x[i, 0, k, :] += 2
            elif y[i] == 1:
                x[i, 0, :, k] += 2
            else:
                x[i, 0].diagonal().add_(2)
        return Split(x, y)

    return Bundle("tiny_images", split(args["n"]), split(args["n_test"]), "classification", num_classes=3)


@pytest.fixture(autouse=True, scope="module")
def tiny_images():
    register(DatasetType("tiny_images", {"n": Arg(Int(1), 100), "n_test": Arg(Int(1), 40)}, _images, doc="test"))
    yield
    DATASETS.pop("tiny_images", None)


CNN = """\
name: TinyCNN
input: [1, 8, 8]
layers:
  - Conv2d: {out_channels: 4, kernel_size: 3, padding: 1}
  - BatchNorm2d
  - ReLU
  - MaxPool2d: 2
  - Flatten
  - Dropout: 0.2
  - Linear: {out_features: 3}
train:
  data: {name: tiny_images}
  epochs: 3
  batch_size: 32           # 100 samples: three batches of 32 and one of 4 per epoch
  optimizer: {SGD: {lr: 0.1, momentum: 0.9}}
  scheduler: {StepLR: {step_size: 1, gamma: 0.5}}
  clip_grad_norm: 5.0
  channels_last: false
  cuda_graph: false
  device: cpu
"""


# CNN with Adam.  No conv bias in front of the BatchNorm: its gradient is rounding noise, which Adam scales up
# to lr-sized steps, so two implementations of the same step would part ways on it.
ADAM = CNN.replace("padding: 1}", "padding: 1, bias: false}").replace("{SGD: {lr: 0.1, momentum: 0.9}}",
                                                                      "{Adam: {lr: 0.01}}")


class FakeGraph:
    def __init__(self, fn: Any, graphs: graphs_mod.Graphs, log: list[str]):
        self.fn, self.graphs, self.log = fn, graphs, log
        self.training = graphs.host.model.training  # an evaluation graph has no optimizer step
        self.hypers = graphs._hypers()

    def replay(self) -> None:
        if self.training:
            assert self.graphs._hypers() == self.hypers, "replayed a graph captured with other hyperparameters"
        self.log.append("replay" if self.training else "replay eval")
        self.fn()


class FakeAPI:
    """torch.cuda's graph calls as the engine uses them, on the CPU."""

    fail: str | None = None
    fail_in_warmup = False

    def __init__(self, graphs: graphs_mod.Graphs, log: list[str]):
        self.graphs, self.log = graphs, log

    def warmup(self, fn: Any, times: int) -> None:
        for _ in range(times):
            fn()
            if FakeAPI.fail and FakeAPI.fail_in_warmup:  # after a step changed the weights
                raise RuntimeError(FakeAPI.fail)

    def capture(self, fn: Any) -> FakeGraph:
        if FakeAPI.fail:
            raise RuntimeError(FakeAPI.fail)
        self.log.append("capture" if self.graphs.host.model.training else "capture eval")
        fn()  # a real capture runs the Python once too (but no kernel): the engine restores the state after it
        return FakeGraph(fn, self.graphs, self.log)

    def rng_state(self) -> Any:
        return torch.get_rng_state()

    def set_rng_state(self, st: Any) -> None:
        torch.set_rng_state(st)


@pytest.fixture
def fake_graphs(monkeypatch):
    """Runs as if on CUDA: the plan says graph, and the engine uses FakeAPI.  Yields the event log."""
    log: list[str] = []
    real_plan, real_init = plan_mod.plan, graphs_mod.Graphs.__init__

    def fake_plan(cfg: Any, device: Any, *a: Any, **kw: Any) -> plan_mod.Plan:
        p = real_plan(cfg, torch.device("cuda"), *a, **kw)  # decide as CUDA would
        return dataclasses.replace(p, device=device.type)

    def init(self: graphs_mod.Graphs, *a: Any, api: Any = None) -> None:
        real_init(self, *a, api=FakeAPI(self, log))

    monkeypatch.setattr(plan_mod, "plan", fake_plan)
    monkeypatch.setattr(graphs_mod.Graphs, "__init__", init)
    monkeypatch.setattr(FakeAPI, "fail", None)
    monkeypatch.setattr(FakeAPI, "fail_in_warmup", False)
    yield log


def run(tmp_path: Path, capsys: Any, text: str, *overrides: str, out: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    spec = tmp_path / f"{out}.yaml"
    spec.write_text(text, encoding="utf-8")
    capsys.readouterr()
    rc = cli.main(["run", str(spec), *overrides, "--out", str(tmp_path / out), "--no-progress"])
    o = capsys.readouterr()
    assert rc == 0, o.err
    (d,) = [p for p in (tmp_path / out).glob("*/*") if p.is_dir()]
    ck = torch.load(d / "checkpoint.pt", map_location="cpu", weights_only=True)
    return ck, json.loads((d / "summary.json").read_text()), o.out


def losses(ck: dict[str, Any]) -> list[tuple[float, float, float]]:
    return [(r["train_loss"], r["test_loss"], r["lr"]) for r in ck["history"]]


def test_graph_engine_gives_the_eager_trajectory_bit_for_bit(tmp_path, capsys, fake_graphs):
    plain, s0, _ = run(tmp_path, capsys, CNN, out="plain")
    assert s0["path"] == "eager"
    fast, s1, stdout = run(tmp_path, capsys, CNN, "train.cuda_graph=auto", out="fast")
    assert s1["path"] == "cuda-graph" and s1["plan"]["cuda_graph"], s1["plan"]["why"]
    assert "path cuda-graph" in stdout
    # the same losses, learning rates and accuracy every epoch, and the same weights and momentum buffers
    assert losses(fast) == losses(plain)
    assert [r["test_accuracy"] for r in fast["history"]] == [r["test_accuracy"] for r in plain["history"]]
    for k, v in plain["model"].items():
        assert torch.equal(fast["model"][k], v), k
    for i, st in plain["optimizer"]["state"].items():
        assert torch.equal(fast["optimizer"]["state"][i]["momentum_buffer"], st["momentum_buffer"])
    # StepLR changes the lr every epoch: the train graphs (32 and the last batch, 4) are captured again each
    # epoch; the test pass (40 samples: one batch) once
    assert fake_graphs.count("capture") == 3 * 2 and fake_graphs.count("capture eval") == 1
    assert fake_graphs.count("replay") == 3 * 4 - 1  # every batch but the run's first, which is eager
    assert fake_graphs.count("replay eval") == 3


def test_checkpoint_of_a_graph_run_resumes_eagerly(tmp_path, capsys, fake_graphs):
    fast, _, _ = run(tmp_path, capsys, CNN, "train.cuda_graph=auto", "train.epochs=2", out="fast")
    groups = fast["optimizer"]["param_groups"]
    assert all(isinstance(g["lr"], float) for g in groups)
    (d,) = [p for p in (tmp_path / "fast").glob("*/*") if p.is_dir()]
    capsys.readouterr()
    assert cli.main(["run", "--resume", str(d), "--epochs", "3", "--no-progress"]) == 0
    resumed = torch.load(d / "checkpoint.pt", map_location="cpu", weights_only=True)
    plain, _, _ = run(tmp_path, capsys, CNN, out="plain")
    assert losses(resumed) == losses(plain)


def test_resume_changes_the_optimizer_implementation(tmp_path, capsys):
    """A checkpoint of a for-loop Adam run resumed with the fused step (and saved again) goes on as the for-loop
    run would have, to rounding."""
    text = ADAM.replace("  - Dropout: 0.2\n", "").replace("  cuda_graph: false\n", "  fused: false\n")
    first, _, _ = run(tmp_path, capsys, text, "train.epochs=2", out="first")
    (d,) = [p for p in (tmp_path / "first").glob("*/*") if p.is_dir()]
    capsys.readouterr()
    assert cli.main(["run", "--resume", str(d), "train.fused=auto", "--epochs", "3", "--no-progress"]) == 0
    assert "fused: Adam's fused step" in capsys.readouterr().out
    resumed = torch.load(d / "checkpoint.pt", map_location="cpu", weights_only=True)
    plain, _, _ = run(tmp_path, capsys, text, out="plain")
    assert losses(resumed)[:2] == losses(plain)[:2]
    (a, b, _), (a0, b0, _) = losses(resumed)[2], losses(plain)[2]
    assert a == pytest.approx(a0, rel=1e-5) and b == pytest.approx(b0, rel=1e-5)
    assert [g["fused"] for g in resumed["optimizer"]["param_groups"]] == [None]


ADAM_ONECYCLE = ADAM.replace(
    "{StepLR: {step_size: 1, gamma: 0.5}}", "{OneCycleLR: {max_lr: 0.02, cycle_momentum: false}}").replace(
    "  cuda_graph: false\n", "  cuda_graph: false\n  fused: false\n")  # the eager reference: torch's for-loop step


def test_per_batch_schedule_through_a_tensor_learning_rate(tmp_path, capsys, fake_graphs):
    plain, _, _ = run(tmp_path, capsys, ADAM_ONECYCLE, out="plain")
    fast, s, _ = run(tmp_path, capsys, ADAM_ONECYCLE, "train.cuda_graph=auto", out="fast")
    assert s["plan"]["tensor_lr"] is True
    # the lr changes every batch, yet the graphs are captured once (it is read from a device tensor)
    assert fake_graphs.count("capture") == 2
    for (a, b, lr), (a0, b0, lr0) in zip(losses(fast), losses(plain), strict=True):
        assert a == pytest.approx(a0, rel=1e-5) and b == pytest.approx(b0, rel=1e-5) and lr == pytest.approx(lr0)
    assert all(isinstance(g["lr"], float) for g in fast["optimizer"]["param_groups"])
    for k, v in plain["model"].items():
        assert torch.allclose(fast["model"][k].float(), v.float(), rtol=1e-4, atol=1e-6), k


def test_a_scheduler_that_assigns_the_lr_still_reaches_the_graph(tmp_path, capsys, fake_graphs, monkeypatch):
    """Older torch schedulers assign a float to param_group["lr"] instead of filling a tensor lr."""
    from torch.optim import lr_scheduler

    def assign(group: dict[str, Any], key: str, val: Any) -> None:
        group[key] = float(val)

    monkeypatch.setattr(lr_scheduler, "_update_param_group_val", assign, raising=False)
    plain, _, _ = run(tmp_path, capsys, ADAM_ONECYCLE, out="plain")
    fast, s, _ = run(tmp_path, capsys, ADAM_ONECYCLE, "train.cuda_graph=auto", out="fast")
    assert s["path"] == "cuda-graph" and fake_graphs.count("capture") == 2  # no capture per batch
    for (a, b, lr), (a0, b0, lr0) in zip(losses(fast), losses(plain), strict=True):
        assert a == pytest.approx(a0, rel=1e-5) and b == pytest.approx(b0, rel=1e-5) and lr == pytest.approx(lr0)


def test_hyperparameters_changing_every_batch_end_the_graph_path(tmp_path, capsys, fake_graphs, monkeypatch):
    """The safety net behind the plan: OneCycleLR cycling Adam's beta1 every batch (the plan refuses that
    up front; here it is told not to) is caught at replay time, captured again, then given up."""
    monkeypatch.setattr(plan_mod, "CYCLES_MOMENTUM", ())
    text = ADAM_ONECYCLE.replace("cycle_momentum: false", "cycle_momentum: true").replace("epochs: 3", "epochs: 2")
    plain, _, _ = run(tmp_path, capsys, text, out="plain")
    fast, s, stdout = run(tmp_path, capsys, text, "train.cuda_graph=auto", out="fast")
    assert "hyperparameters change every batch" in stdout and s["path"] == "eager"
    assert fake_graphs.count("capture") == 3  # the first capture and two more, then eager for good
    for (a, b, lr), (a0, b0, lr0) in zip(losses(fast), losses(plain), strict=True):
        assert a == pytest.approx(a0, rel=1e-5) and b == pytest.approx(b0, rel=1e-5) and lr == pytest.approx(lr0)


@pytest.mark.parametrize("in_warmup", [False, True])
def test_a_capture_that_fails_falls_back_to_eager(tmp_path, capsys, fake_graphs, monkeypatch, in_warmup):
    monkeypatch.setattr(FakeAPI, "fail", "operation not permitted when stream is capturing")
    monkeypatch.setattr(FakeAPI, "fail_in_warmup", in_warmup)
    plain, _, _ = run(tmp_path, capsys, CNN, out="plain")
    fast, s, stdout = run(tmp_path, capsys, CNN, "train.cuda_graph=auto", out="fast")
    assert "CUDA graph path off (RuntimeError: operation not permitted" in stdout
    assert s["path"] == "eager" and any("off from here" in w for w in s["plan"]["why"])
    assert losses(fast) == losses(plain)


def cfg(**kw: Any) -> Any:
    base = {"channels_last": "auto", "compile": False, "cuda_graph": "auto", "precision": "fp32", "fused": "auto"}
    return types.SimpleNamespace(**{**base, **kw})


CONV = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.Flatten())
MLP = torch.nn.Sequential(torch.nn.Linear(4, 2))
CUDA, CPU = torch.device("cuda"), torch.device("cpu")


def plan_of(config: Any, device: Any, model: Any, opt: str, sched: Any, per_batch: bool, on_device: bool,
            rank: int, kw: dict[str, Any] | None = None) -> plan_mod.Plan:
    """plan() for a step of one optimizer `opt` (its arguments kw) over `model`, on samples of rank `rank`."""
    step = plan_mod.Capabilities(model=model, input_rank=rank, optimizers=((opt, kw or {}),), scheduler=sched,
                                 per_batch=per_batch)
    return plan_mod.plan(config, device, step, data_on_device=on_device)


@pytest.mark.parametrize("config, device, model, opt, sched, per_batch, graph, why", [
    (cfg(), CUDA, CONV, "SGD", None, False, True, "captured once"),
    (cfg(), CUDA, CONV, "Adam", ("StepLR", {}), False, True, "captured once"),
    (cfg(), CUDA, CONV, "Adam", ("OneCycleLR", {}), True, False, "set cycle_momentum: false"),
    (cfg(), CUDA, CONV, "Adam", ("OneCycleLR", {"cycle_momentum": False}), True, True, "captured once"),
    (cfg(), CUDA, CONV, "SGD", ("OneCycleLR", {"cycle_momentum": False}), True, False, "only Adam/AdamW"),
    (cfg(), CUDA, CONV, "LBFGS", None, False, False, "not capturable"),
    (cfg(), CUDA, CONV, "Adagrad", None, False, False, "not capturable"),
    (cfg(precision="fp16"), CUDA, CONV, "SGD", None, False, False, "grad scaler"),
    (cfg(compile="default"), CUDA, CONV, "SGD", None, False, False, "torch.compile is on"),
    (cfg(cuda_graph=False), CUDA, CONV, "SGD", None, False, False, None),
    (cfg(), CPU, CONV, "SGD", None, False, False, None),
    (cfg(cuda_graph=True), CPU, CONV, "SGD", None, False, False, "runs on cpu"),
])
def test_plan_captures_only_what_a_graph_can_replay(config, device, model, opt, sched, per_batch, graph, why):
    p = plan_of(config, device, model, opt, sched, per_batch, True, 3)
    assert p.graph is graph
    assert p.tensor_lr is (graph and per_batch)
    text = " ".join(p.why)
    assert (why in text) if why else "cuda graph" not in text


@pytest.mark.parametrize("model, words", [
    (torch.nn.LSTM(4, 8, num_layers=2, dropout=0.1), "LSTM with dropout"),
    (torch.nn.GRU(4, 8, dropout=0.2), "GRU with dropout"),
    (torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2, momentum=None)), "momentum: null"),
])
def test_plan_leaves_layers_that_read_back_to_the_host_eager(model, words):
    """cuDNN re-seeds an RNN's dropout with a host read once the random state was set (as around a capture);
    BatchNorm with momentum None divides by its batch count on the host: neither can be captured."""
    p = plan_of(cfg(), CUDA, model, "SGD", None, False, True, 3)
    assert not p.graph and words in " ".join(p.why)
    for fine in (torch.nn.LSTM(4, 8, num_layers=2), torch.nn.BatchNorm2d(2)):
        assert plan_of(cfg(), CUDA, fine, "SGD", None, False, True, 3).graph


def test_start_puts_every_step_counter_on_the_device():
    """A step that is not capturable keeps its counters on the host (NAdam: `step` and `mu_product`); the
    capturable step of the graph reads them on the weights' device.  ('meta' stands in for a GPU here.)"""
    p = torch.nn.Parameter(torch.zeros(3, device="meta"))
    opt = torch.optim.NAdam([p])
    opt.state[p] = {"step": torch.tensor(4.0), "mu_product": torch.tensor(0.9),
                    "exp_avg": torch.zeros(3, device="meta")}
    step = types.SimpleNamespace(optimizer=opt)
    graphs_mod.Graphs(step, None, None, torch.device("cpu"), False, None, api=object()).start()  # type: ignore[arg-type]
    assert {k: v.device.type for k, v in opt.state[p].items()} == {"step": "meta", "mu_product": "meta",
                                                                   "exp_avg": "meta"}


def test_plan_without_the_data_on_the_device():
    p = plan_of(cfg(), CUDA, CONV, "SGD", None, False, False, 3)
    assert not p.graph and "does not fit" in " ".join(p.why)


@pytest.mark.parametrize("config, device, model, rank, want", [
    (cfg(), CPU, CONV, 3, True),                        # measured faster on the CPU
    (cfg(), CUDA, CONV, 3, False),                      # fp32 on CUDA: left alone
    (cfg(precision="bf16"), CUDA, CONV, 3, True),
    (cfg(), CPU, MLP, 1, False),                        # no 2-d convolution
    (cfg(channels_last=True), CPU, MLP, 1, False),
    (cfg(channels_last=False), CPU, CONV, 3, False),
])
def test_plan_channels_last(config, device, model, rank, want):
    assert plan_of(config, device, model, "SGD", None, False, True, rank).channels_last is want


def test_channels_last_keeps_the_trajectory(tmp_path, capsys):
    text = CNN.replace("  - Dropout: 0.2\n", "")
    plain, _, _ = run(tmp_path, capsys, text, out="plain")
    fast, s, _ = run(tmp_path, capsys, text, "train.channels_last=auto", out="fast")
    assert s["path"] == "eager+channels_last"
    for (a, b, _), (a0, b0, _) in zip(losses(fast), losses(plain), strict=True):  # another conv algorithm:
        assert a == pytest.approx(a0, rel=1e-4) and b == pytest.approx(b0, rel=1e-4)  # rounding only


def test_compile_keeps_the_trajectory(tmp_path, capsys):
    text = CNN.replace("  - Dropout: 0.2\n", "").replace("epochs: 3", "epochs: 2")
    plain, _, _ = run(tmp_path, capsys, text, out="plain")
    fast, s, _ = run(tmp_path, capsys, text, "train.compile=true", out="fast")
    if s["path"] == "eager":  # no working compiler on this machine: the run said so and went on
        pytest.skip("torch.compile does not work here: " + " ".join(s["plan"]["why"]))
    assert s["path"] == "compile(default)"
    for (a, b, _), (a0, b0, _) in zip(losses(fast), losses(plain), strict=True):
        assert a == pytest.approx(a0, rel=1e-4) and b == pytest.approx(b0, rel=1e-4)


def test_a_compiler_failure_falls_back_to_eager(tmp_path, capsys, monkeypatch):
    def broken(model: Any, mode: str = "default") -> Any:
        def call(x: Any) -> Any:
            raise RuntimeError("InductorError: no C++ compiler")
        return call

    monkeypatch.setattr(torch, "compile", broken)
    plain, _, _ = run(tmp_path, capsys, CNN, out="plain")
    fast, s, stdout = run(tmp_path, capsys, CNN, "train.compile=max-autotune", out="fast")
    assert "torch.compile failed (RuntimeError: InductorError: no C++ compiler)" in stdout
    assert s["path"] == "eager"
    assert losses(fast) == losses(plain)


@pytest.mark.parametrize("flags, path", [
    ([], "eager+channels_last"),                         # the spec's own choice (auto)
    (["--eager"], "eager"),
    (["--channels-last", "off"], "eager"),
    (["--precision", "bf16"], "eager+channels_last+bf16"),
    (["--fused", "on"], "eager+channels_last+fused"),   # SGD has a fused step, not chosen by auto
])
def test_speed_flags_on_the_command_line(tmp_path, capsys, flags, path):
    text = CNN.replace("  channels_last: false\n", "").replace("epochs: 3", "epochs: 1")
    _, s, _ = run(tmp_path, capsys, text, *flags, out="r")
    assert s["path"] == path


@pytest.mark.parametrize("option, words", [
    ("channels_last: maybe", "train.channels_last must be auto or true or false"),
    ("compile: fastest", "train.compile must be true or false or one of default, reduce-overhead"),
    ("cuda_graph: 1", "train.cuda_graph must be auto or true or false"),
    ("fused: sometimes", "train.fused must be auto or true or false"),
])
def test_speed_options_are_checked(tmp_path, capsys, option, words):
    spec = tmp_path / "s.yaml"
    text = CNN.replace("  cuda_graph: false\n", "").replace("  channels_last: false\n", f"  {option}\n")
    spec.write_text(text, encoding="utf-8")
    capsys.readouterr()
    assert cli.main(["check", str(spec)]) == 1
    assert words in capsys.readouterr().out


@pytest.mark.parametrize("native, device, want", [(True, CPU, "bf16"), (False, CPU, "fp32"), (True, CUDA, "fp32")])
def test_precision_auto(monkeypatch, native, device, want):
    monkeypatch.setattr(plan_mod, "native_bf16_cpu", lambda: native)
    p = plan_of(cfg(precision="auto"), device, CONV, "SGD", None, False, True, 3)
    assert p.precision == want and f"precision: auto → {want}" in " ".join(p.why)
    assert plan_of(cfg(precision="fp32"), device, CONV, "SGD", None, False, True, 3).precision == "fp32"


def test_precision_auto_runs_what_it_chose(tmp_path, capsys):
    text = CNN.replace("  channels_last: false\n", "  precision: auto\n").replace("epochs: 3", "epochs: 1")
    _, s, stdout = run(tmp_path, capsys, text, out="r")
    chosen = "bf16" if plan_mod.native_bf16_cpu() else "fp32"
    assert s["precision"] == chosen and f"precision: auto → {chosen}" in stdout


@pytest.mark.parametrize("option, device, opt, kw, want, why", [
    ("auto", CPU, "Adam", {}, True, "Adam's fused step (auto"),       # measured: the fused Adam step pays on a CPU
    ("auto", CPU, "AdamW", {}, True, "AdamW's fused step"),
    ("auto", CPU, "SGD", {}, False, None),                             # measured: SGD's step is as fast either way
    ("auto", CUDA, "Adam", {}, False, None),                           # CUDA: torch's default (foreach) is kept
    ("auto", CPU, "Adam", {"foreach": False}, False, None),            # the spec chose an implementation
    (True, CPU, "Adam", {"fused": False}, False, "as the optimizer's own fused: False says"),
    (False, CPU, "Adam", {}, False, None),
    (True, CPU, "LBFGS", {}, False, "no fused LBFGS step on cpu"),
])
def test_plan_fused_optimizer_step(option, device, opt, kw, want, why):
    p = plan_of(cfg(fused=option), device, CONV, opt, None, False, True, 3, kw)
    assert p.fused is want and ("fused" in p.name) is want
    text = " ".join(p.why)
    assert (why in text) if why else "fused" not in text


def test_fused_step_keeps_the_trajectory(tmp_path, capsys):
    """Adam's fused step against torch's for-loop step (`fused: false`): the same run, to rounding."""
    text = ADAM.replace("  - Dropout: 0.2\n", "")
    plain, s0, _ = run(tmp_path, capsys, text, "train.fused=false", out="plain")
    fast, s, _ = run(tmp_path, capsys, text, out="fast")
    assert s0["path"] == "eager" and s["path"] == "eager+fused" and s["plan"]["fused"] is True
    for (a, b, _), (a0, b0, _) in zip(losses(fast), losses(plain), strict=True):  # rounding only
        assert a == pytest.approx(a0, rel=1e-5) and b == pytest.approx(b0, rel=1e-5)
    for k, v in plain["model"].items():
        assert torch.allclose(fast["model"][k].float(), v.float(), rtol=1e-4, atol=1e-6), k
    # the checkpoint keeps the spec's own optimizer arguments: an eager run (or another device) loads it as is
    assert [g["fused"] for g in fast["optimizer"]["param_groups"]] == [None]
    assert fast["optimizer"]["state"][0]["step"].device.type == "cpu"


LSTM_ROWS = """\
name: TinyLSTM
input: [1, 8, 8]
layers:
  - Reshape: [8, 8]        # 8 rows of 8 pixels, as lstm_rows reads MNIST
  - LSTM: {hidden_size: 16, batch_first: true}
  - Last
  - Linear: {out_features: 3}
train:
  data: {name: tiny_images}
  epochs: 2
  batch_size: 32
  optimizer: {SGD: {lr: 0.1, momentum: 0.9}}
  cuda_graph: false
  device: cpu
"""


def test_graph_engine_with_a_recurrent_model(tmp_path, capsys, fake_graphs):
    plain, _, _ = run(tmp_path, capsys, LSTM_ROWS, out="plain")
    fast, s, _ = run(tmp_path, capsys, LSTM_ROWS, "train.cuda_graph=auto", out="fast")
    assert s["path"] == "cuda-graph"
    assert losses(fast) == losses(plain)
    for k, v in plain["model"].items():
        assert torch.equal(fast["model"][k], v), k


@pytest.mark.parametrize("native, model, precision, hint", [
    (True, CONV, "fp32", True), (False, CONV, "fp32", False), (True, MLP, "fp32", False),
    (True, CONV, "bf16", False), (True, CONV, "auto", False)])
def test_plan_hints_at_bf16_where_it_pays(monkeypatch, native, model, precision, hint):
    monkeypatch.setattr(plan_mod, "native_bf16_cpu", lambda: native)
    p = plan_of(cfg(precision=precision), CPU, model, "SGD", None, False, True, 3 if model is CONV else 1)
    assert ("--precision auto" in " ".join(p.why)) is hint
    assert p.precision == ("bf16" if precision in ("bf16", "auto") and (native or precision == "bf16") else "fp32")
