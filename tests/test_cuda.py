"""The CUDA-graph path on a real GPU (skipped without CUDA: CI has none; run on a GPU machine with
`python -m pytest tests/test_cuda.py`, or through benchmarks/gpu_session.sh).

The reference is the eager path on the same GPU (`cuda_graph: false`): the same spec must give the same
losses within rounding (cuDNN may pick other algorithms inside a capture), and the run must really have
replayed graphs (its summary says `cuda-graph`, with no capture failure).
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

from test_steps import ADAM_ONECYCLE, CNN, LSTM_ROWS, losses, run, tiny_images  # noqa: E402,F401 - tiny_images: the data


def close(a: list[tuple[float, float, float]], b: list[tuple[float, float, float]], rel: float = 1e-3) -> None:
    assert len(a) == len(b)
    for (x, y, lr), (x0, y0, lr0) in zip(a, b, strict=True):
        assert x == pytest.approx(x0, rel=rel) and y == pytest.approx(y0, rel=rel) and lr == pytest.approx(lr0)


@pytest.mark.parametrize("name, text", [("sgd-steplr-bn-dropout", CNN), ("adam-onecycle", ADAM_ONECYCLE),
                                        ("bf16", CNN.replace("clip_grad_norm: 5.0", "precision: bf16"))])
def test_cuda_graph_path_matches_eager_on_the_gpu(tmp_path, capsys, name, text):
    text = text.replace("device: cpu", "device: cuda")
    eager, _, _ = run(tmp_path, capsys, text, out="eager")
    graph, s, stdout = run(tmp_path, capsys, text, "train.cuda_graph=auto", out="graph")
    assert s["path"].startswith("cuda-graph"), s["plan"]["why"]
    assert "graph path off" not in stdout
    close(losses(graph), losses(eager), rel=5e-2 if name == "bf16" else 1e-3)


def test_lstm_graph_matches_eager_on_the_gpu(tmp_path, capsys):
    text = LSTM_ROWS.replace("device: cpu", "device: cuda")
    eager, _, _ = run(tmp_path, capsys, text, out="eager")
    graph, s, stdout = run(tmp_path, capsys, text, "train.cuda_graph=auto", out="graph")
    assert s["path"] == "cuda-graph", s["plan"]["why"]
    assert "graph path off" not in stdout
    close(losses(graph), losses(eager))


def test_a_step_that_reads_back_to_the_host_falls_back_cleanly(tmp_path, capsys, monkeypatch):
    """A training step with a host read (here an added .item()) fails in the warm-up, which runs under CUDA's
    sync debug mode, before any capture began: the run says so, and goes on eagerly from the restored state,
    on the default stream, to the eager run's results."""
    from dlspec import step

    text = CNN.replace("device: cpu", "device: cuda")
    eager, _, _ = run(tmp_path, capsys, text, out="eager")
    real = step.OptimizerStep.captured

    def captured(self, batch):
        count = real(self, batch)
        self.meter.sums[next(iter(self.meter.sums))].sum().item()  # a host read: not capturable
        return count

    monkeypatch.setattr(step.OptimizerStep, "captured", captured)
    graph, s, stdout = run(tmp_path, capsys, text, "train.cuda_graph=auto", out="graph")
    assert "CUDA graph path off" in stdout and s["path"] == "eager"
    assert torch.cuda.current_stream() == torch.cuda.default_stream()
    close(losses(graph), losses(eager))


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_cuda_graph_on_the_second_device(tmp_path, capsys):
    text = CNN.replace("device: cpu", "device: 'cuda:1'")
    eager, _, _ = run(tmp_path, capsys, text, out="eager")
    graph, s, stdout = run(tmp_path, capsys, text, "train.cuda_graph=auto", out="graph")
    assert s["path"].startswith("cuda-graph") and "graph path off" not in stdout
    close(losses(graph), losses(eager))
