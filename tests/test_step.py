"""The step object (dlspec/step.py): one per run, chosen by the task's entry, driven by the trainer, the trial
step, the graph engine, eval and predict; plan() reads its capabilities and returns a frozen plan; task facts
live in the task entries.

The references are plain torch (a hand-written loop for an objective of two weighted terms) and the rules the
trainer followed before the step existed (the plan lines of a GAN, of several processes)."""

from __future__ import annotations

import ast
import dataclasses
import math
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from test_train import (  # noqa: E402
    BLOBS,
    checkpoint,
    dlspec_main,
    load_data,
    reference_loop,
    train,
    write,
)
from test_train import test_datasets as _test_datasets  # noqa: E402,F401 - the fixture registering tiny_* data

from dlspec import distributed, plan, tasks  # noqa: E402
from dlspec.batch import TARGET, Batch, Feed  # noqa: E402
from dlspec.plan import Capabilities, Fallback  # noqa: E402
from dlspec.session import Options, prepare  # noqa: E402
from dlspec.step import Context, Objective, OptimizerStep, Term  # noqa: E402
from dlspec.tasks import TaskType  # noqa: E402
from dlspec.trainer import Trainer  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CUDA, CPU = torch.device("cuda"), torch.device("cpu")


def cfg(**kw: Any) -> Any:
    import types

    base = {"channels_last": "auto", "compile": False, "cuda_graph": "auto", "precision": "fp32", "fused": "auto",
            "sync_batchnorm": True}
    return types.SimpleNamespace(**{**base, **kw})


# --- a step of its own: an objective of two weighted terms --------------------------------------------------

class TwoTerms(OptimizerStep):
    """CrossEntropyLoss + 0.5 × MultiMarginLoss on the one output: the form an objective of several terms takes."""

    @property
    def objective(self) -> Objective:
        out = self.outputs[0]
        return Objective((Term(torch.nn.CrossEntropyLoss(), out), Term(torch.nn.MultiMarginLoss(), out, weight=0.5)))


class MissingTarget(OptimizerStep):
    """A second term over a target the batch does not have: the trial step must meet it, at the loss."""

    @property
    def objective(self) -> Objective:
        out = self.outputs[0]
        return Objective((Term(torch.nn.CrossEntropyLoss(), out), Term(torch.nn.MSELoss(), out, target="mask")))


@pytest.fixture
def own_tasks():
    for name, step in (("two_terms", "TwoTerms"), ("missing_target", "MissingTarget")):
        tasks.register(TaskType(name, "a test task", "classification", "dlspec.tasks.supervised:Supervised",
                                step=f"test_step:{step}"))
    yield
    for name in ("two_terms", "missing_target"):
        tasks.TASKS.pop(name, None)


def test_a_step_of_two_weighted_terms_trains_as_a_hand_written_loop(tmp_path, capsys, own_tasks):
    """A task whose entry names its own step: the trainer takes it without a change, and its objective is the
    plain sum the loop writes, bit for bit."""
    text = BLOBS.replace("  data: {name: tiny_blobs}\n", "  data: {name: tiny_blobs}\n  task: two_terms\n")
    d, _ = train(tmp_path, capsys, text)
    F = torch.nn.functional
    model, want = reference_loop(str(d / "spec.yaml"), load_data("tiny_blobs"), epochs=2, batch_size=32, lr=0.1,
                                 loss_fn=lambda o, y: F.cross_entropy(o, y) + 0.5 * F.multi_margin_loss(o, y),
                                 classification=True)
    ck = checkpoint(d)
    assert [r["train_loss"] for r in ck["history"]] == pytest.approx([w["train_loss"] for w in want], rel=1e-6)
    for k, v in model.state_dict().items():
        assert torch.equal(ck["model"][k], v), k


def test_the_trial_step_takes_the_run_step(tmp_path, capsys, own_tasks):
    """The trial step before the run drives the run's own step: a term it cannot compute is refused before a run
    folder exists, at the loss."""
    text = BLOBS.replace("  data: {name: tiny_blobs}\n", "  data: {name: tiny_blobs}\n  task: missing_target\n")
    rc, out, err = dlspec_main(capsys, "run", write(tmp_path, text), "--out", tmp_path / "runs")
    assert rc == 1 and "torch fails computing the loss (KeyError: 'mask')" in err, err
    assert not (tmp_path / "runs").exists()


# --- the batch ---------------------------------------------------------------------------------------------

def test_a_batch_names_its_inputs_and_targets():
    x, y = torch.arange(12.0).reshape(6, 2), torch.arange(6)
    from dlspec.data import Split

    split = Split(x, y)
    feed = Feed(["image", "label"])  # today's data gives one input: the first name the step reads
    b = feed.take(split, torch.tensor([4, 1]))
    assert list(b.inputs) == ["image"] and list(b.targets) == [TARGET] and b.size == 2
    assert torch.equal(b.inputs["image"], x[[4, 1]]) and torch.equal(b.targets[TARGET], y[[4, 1]])
    g = feed.gather(split, torch.tensor([4, 1]))
    assert torch.equal(g.inputs["image"], b.inputs["image"]) and torch.equal(g.targets[TARGET], b.targets[TARGET])
    r = feed.rows(split, 2, 5)
    assert torch.equal(r.inputs["image"], x[2:5]) and (r.share, r.part) == (1.0, None)


# --- the plan ----------------------------------------------------------------------------------------------

CONV = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2), torch.nn.Flatten())
GAN_REASONS = {"graph": "the adversarial task alternates two networks and two optimizers (eager steps)",
               "compile": "the adversarial task runs its networks itself",
               "channels_last": "the adversarial task runs its networks itself"}


def gan(model: Any = CONV) -> Capabilities:
    return Capabilities(model, 3, (("Adam", {}), ("SGD", {})), **GAN_REASONS)


def test_the_plan_is_frozen_and_fallbacks_are_kept_beside_it():
    p = plan.plan(cfg(), CUDA, Capabilities(CONV, 3, (("SGD", {}),)))
    assert p.graph and p.name == "cuda-graph"
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.graph = False  # type: ignore[misc]
    ran = p.ran([Fallback("graph", "cuda graph: off from here (RuntimeError: x)")])
    assert (p.graph, p.name, p.fallbacks) == (True, "cuda-graph", ())  # the plan as chosen stays as it was
    assert (ran.graph, ran.tensor_lr, ran.name) == (False, False, "eager")
    d = ran.as_dict()
    assert d["why"] == [*p.why, "cuda graph: off from here (RuntimeError: x)"]
    assert d["fallbacks"] == ["cuda graph: off from here (RuntimeError: x)"]


def test_a_step_that_cannot_be_captured_says_why_once():
    """Before, a GAN's plan on CUDA said both `cuda graph: the whole training step is captured` and `cuda graph:
    off, ...`: the step's reason was written into the plan afterwards."""
    p = plan.plan(cfg(), CUDA, gan())
    graph_lines = [w for w in p.why if w.startswith("cuda graph")]
    assert not p.graph and graph_lines == [f"cuda graph: off, {GAN_REASONS['graph']}"]


def test_what_the_options_ask_and_the_step_cannot_take():
    """compile and channels_last asked for (or chosen by auto) on a step that runs its networks itself: one line,
    and neither is on; nothing said when neither is asked for."""
    p = plan.plan(cfg(compile=True), CPU, gan())
    assert (p.compile, p.channels_last) == (None, False)
    assert "compile, channels_last: off, the adversarial task runs its networks itself" in p.why
    assert not any(w.startswith("channels_last: auto") for w in p.why)
    quiet = plan.plan(cfg(channels_last=False), CPU, gan(torch.nn.Linear(2, 2)))
    assert not any("compile" in w for w in quiet.why)


@pytest.mark.parametrize("device, want", [
    (CUDA, ["ddp: 2 processes (nccl), DistributedDataParallel; cuda graph: off, its capture does not take DDP's "
            "all-reduce", "sync_batchnorm: on, BatchNorm over the whole batch"]),
    (CPU, ["ddp: 2 processes (gloo), DistributedDataParallel",
           "sync_batchnorm: off, each process normalises its part of the batch (torch's SyncBatchNorm needs CUDA)"]),
])
def test_several_processes_in_the_plan(device, want):
    p = plan.plan(cfg(channels_last=False), device, Capabilities(CONV, 3, (("SGD", {}),)), world=2)
    assert [w for w in p.why if w.startswith(("ddp", "sync_batchnorm", "cuda graph"))] == want
    assert not p.graph and p.sync_batchnorm is (device.type == "cuda")


def test_each_optimizer_of_a_step_gets_its_own_fused_choice():
    p = plan.plan(cfg(), CPU, Capabilities(torch.nn.Linear(2, 2), 1, (("Adam", {}), ("SGD", {}))))
    want = plan.fused_step_works("Adam", "cpu")
    assert p.fused_each == (want, False) and p.fused is want
    assert [w for w in p.why if w.startswith("fused")] == (["fused: Adam's fused step (auto: faster on the CPU)"]
                                                           if want else [])


def test_evaluation_only_has_no_graph_and_no_fused_step():
    p = plan.plan(cfg(), CUDA, Capabilities(CONV, 3, ()))
    assert not p.graph and not p.fused and not any("cuda graph" in w for w in p.why)


# --- the trainer drives the step -----------------------------------------------------------------------------

def test_a_compiler_failure_is_recorded_beside_the_plan(tmp_path, monkeypatch):
    def broken(model: Any, mode: str = "default") -> Any:
        def call(*x: Any) -> Any:
            raise RuntimeError("no C++ compiler")
        return call

    monkeypatch.setattr(torch, "compile", broken)
    s = prepare(write(tmp_path, BLOBS), ["train.compile=true"], Options(progress=False, quiet=True))
    tr = Trainer(s, Options(progress=False, quiet=True))
    assert tr.plan.compile == "default"
    tr.train_epoch(None)
    assert tr.plan.compile == "default" and tr.plan.name == "compile(default)"  # the plan as chosen
    assert tr.ran().name == "eager" and tr.ran().fallbacks == (Fallback("compile", "compile: off, it failed "
                                                                                  "(RuntimeError)"),)


def test_evaluation_under_several_processes_takes_one_process_noise(tmp_path, capsys):
    """A GAN's evaluation cut into the processes' parts of each batch draws, for every sample, the noise one
    process draws: the parts' sums add up to the one process's."""
    from test_tasks import GAN

    s = prepare(write(tmp_path, GAN), [], Options(progress=False, quiet=True), training=False)
    step = s.task.make(Context.of(s), s.task_args).step
    split = s.bundle.test
    feed = Feed(step.data_inputs)

    def sums(parts: list[Batch]) -> dict[str, float]:
        meter = step.new_meter()
        for b in parts:  # each process: its own evaluation noise, its part of the batch
            step.start_eval()
            meter.count += step.evaluate(b, meter)
        return meter.result()

    whole = sums([feed.rows(split, 0, len(split))])
    parts = []
    for rank in (0, 1):
        at = distributed.part(len(split), distributed.World(rank, 2))
        b = feed.rows(split, at.start, at.stop)
        b.part = (at.start, at.stop, len(split))
        parts.append(b)
    got = sums(parts)
    assert got == pytest.approx(whole, rel=1e-6) and math.isfinite(whole["d_loss"])


# --- task facts in the task entries --------------------------------------------------------------------------

def test_a_data_sets_default_task_is_in_the_task_entry(monkeypatch):
    from dlspec.data.base import DataFacts

    text = DataFacts("char_text", (None,), "long", (None,), "long", "classification", 65)
    assert tasks.default_task(text) == "language_model"
    monkeypatch.setattr(tasks.TASKS["language_model"], "default_for", ())
    assert tasks.default_task(text) == "classification"  # the data's own, once no entry claims it


def test_predict_and_generate_follow_the_entry(tmp_path, capsys, monkeypatch):
    d, _ = train(tmp_path, capsys, BLOBS, "train.epochs=1", "--quiet")
    args = (d / "spec.yaml", "--checkpoint", d / "checkpoint.pt")
    rc, out, err = dlspec_main(capsys, "predict", *args, "-n", "2")
    assert rc == 0 and out.startswith("sample   0: predicted"), err
    monkeypatch.setattr(tasks.TASKS["classification"], "predict", None)
    monkeypatch.setattr(tasks.TASKS["classification"], "generate", None)
    rc, out, err = dlspec_main(capsys, "predict", *args)
    assert rc == 2 and err == "dlspec predict: the classification task has nothing to predict\n"
    rc, out, err = dlspec_main(capsys, "generate", *args)
    assert rc == 2 and err.startswith("dlspec generate: the classification task has nothing to generate (the tasks "
                                      "that do: ") and "adversarial" in err


def test_predict_of_a_generator_says_it_has_nothing_to_predict(tmp_path, capsys):
    """It was an internal error (exit 70: the ModuleDict of the two networks has no forward)."""
    from test_tasks import GAN

    d, _ = train(tmp_path, capsys, GAN, "train.epochs=1", "train.task.adversarial.samples=0", "--quiet")
    rc, out, err = dlspec_main(capsys, "predict", d / "spec.yaml", "--checkpoint", d / "checkpoint.pt")
    assert (rc, err) == (2, "dlspec predict: the adversarial task has nothing to predict; dlspec generate draws its "
                            "samples\n")


def test_several_networks_train_with_the_tasks_whose_entry_trains_networks(monkeypatch, tmp_path):
    from test_tasks import GAN

    import dlspec

    text = GAN.replace("  task: {adversarial: {discriminator_optimizer: {SGD: {lr: 0.05}}}}\n", "")
    (d,) = [x for x in dlspec.check(dlspec.load(write(tmp_path, text))).diagnostics if x.severity == "error"]
    assert "trains with `train.task: adversarial`" in d.message
    monkeypatch.setitem(tasks.TASKS, "pix2pix", dataclasses.replace(tasks.TASKS["adversarial"], name="pix2pix"))
    (d,) = [x for x in dlspec.check(dlspec.load(write(tmp_path, text))).diagnostics if x.severity == "error"]
    assert "trains with `train.task: adversarial or pix2pix`" in d.message


# --- no second copy of a step ------------------------------------------------------------------------------

def _source(module: str) -> ast.Module:
    return ast.parse((ROOT / "dlspec" / module).read_text(encoding="utf-8"))


def _name_tests(tree: ast.Module) -> list[str]:
    """The task names compared with in a module (`task.name == "adversarial"`, `name in ("a", "b")`), other
    than with a task's loss-level `kind`."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Compare) or (isinstance(node.left, ast.Attribute) and node.left.attr == "kind"):
            continue
        found += [c.value for side in [node.left, *node.comparators] for c in ast.walk(side)
                  if isinstance(c, ast.Constant) and c.value in tasks.TASKS]
    return found


@pytest.mark.parametrize("module", ["trainer.py", "train.py", "graphs.py", "preflight.py", "plan.py", "step.py",
                                    "traincheck.py", "cli.py", "tasks/__init__.py"])
def test_the_running_side_tests_no_task_name(module):
    """The trainer, what drives the step and the commands test no task's name and no own-step flag: what differs
    between tasks is in their entries and their steps."""
    tree = _source(module)
    assert _name_tests(tree) == []
    assert "own_step" not in {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    assert _name_tests(ast.parse('if task.name == "adversarial":\n    pass')) == ["adversarial"]  # (it finds one)


def test_the_trial_step_borrows_nothing_from_the_trainer():
    imports = [n for n in ast.walk(_source("preflight.py")) if isinstance(n, ast.ImportFrom)]
    assert not [n for n in imports if n.module and "trainer" in n.module]
