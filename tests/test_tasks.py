"""Tasks (dlspec/tasks): reconstruction and language modelling against hand-written torch loops, their
contract checks at the right line, their pictures and text, resume, predict and generate."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")

sys.path.insert(0, os.path.dirname(__file__))
from test_train import (  # noqa: E402
    checkpoint,
    csv_rows,
    dlspec_main,
    line_of,
    load_data,
    refusal,
    train,
    write,
)
from test_train import test_datasets as _test_datasets  # noqa: E402,F401 - the fixture registering tiny_* data

import dlspec  # noqa: E402
from dlspec.session import Options, prepare  # noqa: E402

AE = """\
name: AE
input: [4]
layers:
  - Linear: {out_features: 3}
  - Tanh
  - Linear: {out_features: 4}
train:
  task: reconstruction
  data: {name: tiny_blobs}
  epochs: 2
  batch_size: 32
  optimizer: {SGD: {lr: 0.1}}
  device: cpu
"""

DAE = AE.replace("task: reconstruction", "task: {reconstruction: {noise: 0.3, mask: 0.25}}")


def reference_reconstruction(spec_path: str, data: Any, *, epochs: int, batch_size: int, lr: float, seed: int = 0,
                             noise: float = 0.0, mask: float = 0.0) -> tuple[Any, list[dict[str, float]]]:
    """Plain torch: the target is the input; the corrupted input as documented (training: the global RNG,
    noise then mask; evaluation: a generator seeded seed + 7919 at the start of every pass)."""
    torch.manual_seed(seed)
    model = dlspec.build(spec_path)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    n = len(data.train)

    def corrupt(x: Any, g: Any = None) -> Any:
        if noise:
            x = x + noise * torch.randn(x.shape, generator=g)
        if mask:
            x = x * (torch.rand(x.shape, generator=g) >= mask).float()
        return x

    rows = []
    for epoch in range(epochs):
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
        model.train()
        total = 0.0
        for b in range(math.ceil(n / batch_size)):
            x = data.train.x[perm[b * batch_size:(b + 1) * batch_size]]
            loss = torch.nn.functional.mse_loss(model(corrupt(x)), x)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(x)
        model.eval()
        with torch.no_grad():
            x = data.test.x
            test = torch.nn.functional.mse_loss(model(corrupt(x, torch.Generator().manual_seed(seed + 7919))), x)
        rows.append({"train_loss": total / n, "test_loss": test.item(), "test_mse": test.item()})
    return model, rows


@pytest.mark.parametrize("text, noise, mask", [(AE, 0.0, 0.0), (DAE, 0.3, 0.25)], ids=["plain", "denoising"])
def test_reconstruction_matches_plain_torch_loop(tmp_path, capsys, text, noise, mask):
    d, out = train(tmp_path, capsys, text)
    ck = checkpoint(d)
    model, want = reference_reconstruction(str(d / "spec.yaml"), load_data("tiny_blobs"), epochs=2, batch_size=32,
                                           lr=0.1, noise=noise, mask=mask)
    for g, w in zip(ck["history"], want, strict=True):
        for k, v in w.items():
            assert g[k] == pytest.approx(v, rel=1e-5, abs=1e-7), k
    for k, v in model.state_dict().items():  # same init, batches and noise: the same weights, bit for bit
        assert torch.equal(ck["model"][k], v), k
    assert want[1]["train_loss"] < want[0]["train_loss"]
    data = load_data("tiny_blobs")
    baseline = float(((data.test.x.double() - data.train.x.double().mean(0)) ** 2).mean())
    assert f"test mse mean image {baseline:.4f}" in out
    assert ("reconstruction of corrupted inputs" in out) == bool(noise)


def resumed_like_whole(tmp_path: Path, capsys: Any, text: str, column: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A run of 2 epochs, and one of 1 epoch resumed to 2: the same weights and `column` in metrics.csv;
    their two checkpoints, for more comparisons."""
    whole, _ = train(tmp_path, capsys, text, out="whole")
    first, _ = train(tmp_path, capsys, text, "train.epochs=1", out="first")
    rc, out, err = dlspec_main(capsys, "run", "--resume", first, "train.epochs=2")
    assert rc == 0, err
    a, b = checkpoint(whole), checkpoint(first)
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert [r[column] for r in csv_rows(whole)] == [r[column] for r in csv_rows(first)]
    return a, b


def test_denoising_resume_is_bit_exact(tmp_path, capsys):
    resumed_like_whole(tmp_path, capsys, DAE, "test_loss")


SHAPES_AE = """\
name: ShapesAE
input: [1, 12, 12]
layers:
  - Flatten:
  - Linear: 16
  - ReLU
  - Linear: 144
  - Unflatten: {dim: 1, unflattened_size: [1, 12, 12]}
  - Sigmoid
train:
  task: {reconstruction: {noise: 0.2, pictures: 4}}
  data: {name: shapes, n_train: 60, n_test: 20, size: 12, normalize: null}
  epochs: 1
  batch_size: 20
  device: cpu
"""


def test_pictures_and_predict_of_a_reconstruction(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    d, _ = train(tmp_path, capsys, SHAPES_AE)
    png = d / "reconstructions.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = tmp_path / "pred.png"
    rc, out, err = dlspec_main(capsys, "predict", d / "spec.yaml", "--checkpoint", d / "checkpoint.pt", "-n", "3",
                               "--image", image)
    assert rc == 0, err
    assert image.read_bytes()[:4] == b"\x89PNG" and f"wrote {image}" in out
    # the printed MSE of sample 0 is that of the model on its noised copy (the evaluation's fixed draw)
    s = prepare(str(d / "spec.yaml"), [], Options(progress=False, quiet=True), training=False)
    s.model.load_state_dict(checkpoint(d)["model"])
    x = s.bundle.test.x[:3]
    noised = x + 0.2 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0 + 7919))
    with torch.no_grad():
        mse0 = float(((s.model.eval()(noised)[0] - x[0]) ** 2).mean())
    assert f"sample   0: reconstruction mse {mse0:.5f}" in out


# --- the contract, before anything runs ----------------------------------------------------------------------

def diagnostics(tmp_path: Path, text: str) -> list[Any]:
    return dlspec.check(dlspec.load(write(tmp_path, text))).diagnostics


def test_reconstruction_of_another_shape_is_refused_at_the_last_layer(tmp_path, capsys):
    text = AE.replace("  - Linear: {out_features: 4}\n", "  - Linear: {out_features: 2}\n")
    d = [x for x in refusal(write(tmp_path, text)) if x.severity == "error"]  # (a test data set: known once loaded)
    assert len(d) == 1 and "must give back the input's shape: the model gives (N, 2) for inputs (N, 4)" in d[0].message
    assert d[0].line == line_of(text, "out_features: 2")
    image = SHAPES_AE.replace("  - Unflatten: {dim: 1, unflattened_size: [1, 12, 12]}\n", "")
    d = [x for x in diagnostics(tmp_path, image) if x.severity == "error"]  # dlspec check knows it already
    assert len(d) == 1 and "Unflatten: {dim: 1, unflattened_size: [1, 12, 12]}" in (d[0].help or "")
    rc, out, err = dlspec_main(capsys, "check", write(tmp_path, image))
    assert rc == 1 and f"spec.yaml:{line_of(image, 'Linear: 144')}:" in out + err


def test_task_names_and_options_are_checked(tmp_path):
    d = [x for x in diagnostics(tmp_path, AE.replace("task: reconstruction", "task: reconstuction")) if x.severity == "error"]
    assert len(d) == 1 and "unknown task 'reconstuction'" in d[0].message and "reconstruction" in (d[0].help or "")
    d = [x for x in diagnostics(tmp_path, AE.replace("task: reconstruction", "task: {reconstruction: {nosie: 0.3}}"))
         if x.severity == "error"]
    assert len(d) == 1 and "no option 'nosie'" in d[0].message and "noise" in (d[0].help or "")
    d = [x for x in diagnostics(tmp_path, AE.replace("task: reconstruction", "task: {reconstruction: {mask: 2}}"))
         if x.severity == "error"]
    assert len(d) == 1 and "mask" in d[0].message
    assert dlspec.check(dlspec.load(write(tmp_path, DAE))).ok


LM_TEXT = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n"
           "First Citizen:\nYou are all resolved rather to die than to famish?\n") * 6

LM = """\
name: TinyGPT
input: {shape: [T], dtype: long}
layers:
  - Embedding: {num_embeddings: VOCAB, embedding_dim: 16}
  - PositionalEmbedding: {length: 8}
  - TransformerEncoderLayer: {nhead: 2, dim_feedforward: 32, dropout: 0.0, batch_first: true, causal: true}
  - Linear: VOCAB
train:
  data: {name: char_text, path: TEXT, seq_len: 8, step: 4, encoding: ids}
  epochs: 2
  batch_size: 16
  optimizer: {Adam: {lr: 0.01}}
  device: cpu
"""


def lm_spec(tmp_path: Path, **replace: str) -> str:
    (tmp_path / "text.txt").write_text(LM_TEXT, encoding="utf-8")
    vocab = len(set(LM_TEXT))
    text = LM.replace("VOCAB", str(vocab)).replace("TEXT", str(tmp_path / "text.txt"))
    for a, b in replace.items():
        text = text.replace(a.replace("_", " "), b)
    return text


def test_language_model_must_be_causal(tmp_path):
    text = lm_spec(tmp_path, **{"causal: true": "causal: false"})
    d = [x for x in diagnostics(tmp_path, text) if x.severity == "error"]
    assert len(d) == 1 and "read the very token it must predict" in d[0].message
    assert d[0].line == line_of(text, "TransformerEncoderLayer") and "add causal: true" in (d[0].help or "")
    gru = lm_spec(tmp_path).replace(
        "  - PositionalEmbedding: {length: 8}\n  - TransformerEncoderLayer: {nhead: 2, dim_feedforward: 32, dropout: 0.0, "
        "batch_first: true, causal: true}\n", "  - GRU: {hidden_size: 16, batch_first: true, bidirectional: true}\n")
    d = [x for x in diagnostics(tmp_path, gru) if x.severity == "error"]
    assert len(d) == 1 and "bidirectional GRU" in d[0].message and d[0].line == line_of(gru, "GRU")
    # an explicit classification task on the same data is today's per-step classifier: allowed
    assert dlspec.check(dlspec.load(write(tmp_path, text.replace("train:\n", "train:\n  task: classification\n")))).ok


def test_language_model_on_labelled_data_is_refused(tmp_path):
    text = AE.replace("task: reconstruction", "task: language_model").replace("Linear: {out_features: 4}",
                                                                               "Linear: {out_features: 3}")
    refused = refusal(write(tmp_path, text))
    assert any("gives one target per sample" in x.message for x in refused)


def test_language_model_trains_samples_and_generates_with_a_sliding_window(tmp_path, capsys):
    d, out = train(tmp_path, capsys, lm_spec(tmp_path))
    assert "next token at every step" in out and out.count("sample: ") == 2
    samples = (d / "samples.txt").read_text(encoding="utf-8")
    assert "--- epoch 1\n" in samples and "--- epoch 2\n" in samples
    rows = csv_rows(d)
    assert float(rows[1]["train_loss"]) < float(rows[0]["train_loss"])
    assert float(rows[-1]["test_perplexity"]) == pytest.approx(math.exp(float(rows[-1]["test_loss"])), rel=1e-6)
    # generation reads at most the 8 positions the model has, sliding over a prime longer than that
    s = prepare(str(d / "spec.yaml"), [], Options(progress=False, quiet=True), training=False)
    s.model.load_state_dict(checkpoint(d)["model"])
    seen: list[int] = []
    s.model.register_forward_pre_hook(lambda m, a: seen.append(a[0].shape[1]))
    from dlspec.generate import generate

    prime = "First Citizen:\n"
    got = generate(s, prime, 12, 1.0, 5, top_k=1)
    assert max(seen) == 8 and len(got) == len(prime) + 12
    vocab = s.bundle.vocab
    ids = [vocab.index(c) for c in prime]
    with torch.no_grad():  # greedy (top-k 1) by hand, over the last 8 characters
        for _ in range(12):
            ids.append(int(s.model(torch.tensor([ids[-8:]]))[0, -1].argmax()))
    assert got == "".join(vocab[i] for i in ids)
    rc, out, err = dlspec_main(capsys, "generate", d / "spec.yaml", "--checkpoint", d / "checkpoint.pt",
                               "--prime", prime, "--length", "12", "--top-k", "1")
    assert rc == 0 and out.strip() == got.strip()


# --- adversarial -----------------------------------------------------------------------------------------------

GAN = """\
name: TinyGAN
networks:
  generator:
    input: [3]
    layers:
      - Linear: 8
      - ReLU
      - Linear: 4
  discriminator:
    input: [4]
    layers:
      - Linear: 8
      - LeakyReLU: 0.2
      - Linear: 1
train:
  task: {adversarial: {discriminator_optimizer: {SGD: {lr: 0.05}}}}
  data: {name: tiny_blobs}
  epochs: 2
  batch_size: 32
  optimizer: {Adam: {lr: 0.01, betas: [0.5, 0.999]}}
  device: cpu
"""


def reference_gan(spec_path: str, data: Any, *, epochs: int, batch_size: int, seed: int = 0
                  ) -> tuple[Any, list[dict[str, float]]]:
    """Plain torch, as documented: per batch z ~ N(0, 1) from the global RNG, one discriminator step on
    softplus(-D(x)) + softplus(D(G(z).detach())), one generator step on softplus(-D(G(z)))."""
    F = torch.nn.functional
    torch.manual_seed(seed)
    nets = dlspec.build(spec_path)
    G, D = nets["generator"], nets["discriminator"]
    opt_g = torch.optim.Adam(G.parameters(), lr=0.01, betas=(0.5, 0.999))
    opt_d = torch.optim.SGD(D.parameters(), lr=0.05)
    n = len(data.train)
    rows = []
    for epoch in range(epochs):
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
        d_sum = g_sum = 0.0
        for b in range(math.ceil(n / batch_size)):
            x = data.train.x[perm[b * batch_size:(b + 1) * batch_size]]
            fake = G(torch.randn(len(x), 3))
            d_loss = F.softplus(-D(x)).mean() + F.softplus(D(fake.detach())).mean()
            opt_d.zero_grad()
            d_loss.backward()
            opt_d.step()
            g_loss = F.softplus(-D(fake)).mean()
            opt_g.zero_grad()
            g_loss.backward()
            opt_g.step()
            d_sum += d_loss.item() * len(x)
            g_sum += g_loss.item() * len(x)
        rows.append({"train_d_loss": d_sum / n, "train_g_loss": g_sum / n})
    return nets, rows


def test_adversarial_matches_plain_torch_loop(tmp_path, capsys):
    d, out = train(tmp_path, capsys, GAN, "train.fused=false")  # torch's default Adam step, as the reference's
    ck = checkpoint(d)
    nets, want = reference_gan(str(d / "spec.yaml"), load_data("tiny_blobs"), epochs=2, batch_size=32)
    for g, w in zip(ck["history"], want, strict=True):
        for k, v in w.items():
            assert g[k] == pytest.approx(v, rel=1e-5), k
    for k, v in nets.state_dict().items():  # both networks, bit for bit
        assert torch.equal(ck["model"][k], v), k
    assert "generator Adam · discriminator SGD" in out
    assert {"test_d_loss", "test_g_loss", "test_d_real", "test_d_fake"} <= set(ck["history"][-1])


def test_adversarial_resume_is_bit_exact(tmp_path, capsys):
    a, b = resumed_like_whole(tmp_path, capsys, GAN, "test_d_loss")
    assert a["task"]["optimizers"]["generator"]["state"][0]["exp_avg"].equal(
        b["task"]["optimizers"]["generator"]["state"][0]["exp_avg"])


def test_generate_and_eval_of_a_generator(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    d, _ = train(tmp_path, capsys, GAN, "train.epochs=1")
    assert (d / "samples.png").read_bytes()[:4] == b"\x89PNG"
    image = tmp_path / "g.png"
    rc, out, err = dlspec_main(capsys, "generate", d / "spec.yaml", "--checkpoint", d / "checkpoint.pt", "-n", "9",
                               "--image", image, "--seed", "4")
    assert rc == 0, err
    assert image.read_bytes()[:4] == b"\x89PNG" and "9 samples of generator (noise seed 4)" in out
    rc, out, err = dlspec_main(capsys, "eval", d / "spec.yaml", "--checkpoint", d / "checkpoint.pt")
    assert rc == 0 and "d_loss" in out and "d_fake" in out


MNIST_GAN = GAN.replace("input: [3]", "input: [16]").replace("      - Linear: 4\n", "      - Linear: 784\n"
                        "      - Unflatten: {dim: 1, unflattened_size: [1, 28, 28]}\n      - Tanh\n").replace(
    "input: [4]", "input: [1, 28, 28]").replace("      - Linear: 8\n      - LeakyReLU", "      - Flatten:\n"
                                                 "      - Linear: 8\n      - LeakyReLU").replace(
    "data: {name: tiny_blobs}", "data: {name: mnist, normalize: [[0.5], [0.5]]}")


@pytest.mark.parametrize("change, message, at", [
    (("      - Linear: 784\n", "      - Linear: 729\n", "[1, 28, 28]}", "[1, 27, 27]}"),
     "the generator gives (N, 1, 27, 27) but the discriminator reads (N, 1, 28, 28)", "[1, 27, 27]}"),
    (("      - Linear: 1\n", "      - Linear: 2\n"), "the discriminator must give one logit per sample, not (N, 2)",
     "Linear: 2"),
    (("task: {adversarial: {", "task: {adversarial: {generator: gen, "), "the spec has no network 'gen'", "task:"),
    (("{SGD: {lr: 0.05}}", "{SGD: {lr: 0.05, momentun: 0.9}}"), "SGD has no argument 'momentun'", "momentun"),
    (("input: [1, 28, 28]", "input: [1, 32, 32]", "[1, 28, 28]}", "[1, 32, 32]}", "Linear: 784", "Linear: 1024"),
     "mnist gives samples of shape [1, 28, 28] but the discriminator reads [1, 32, 32]", "input: [1, 32, 32]"),
], ids=["generator-output", "discriminator-output", "network-name", "optimizer-argument", "data-shape"])
def test_adversarial_contract_is_checked_before_anything_runs(tmp_path, change, message, at):
    text = MNIST_GAN
    for a, b in zip(change[::2], change[1::2], strict=True):
        text = text.replace(a, b)
    assert dlspec.check(dlspec.load(write(tmp_path, MNIST_GAN))).ok
    d = [x for x in diagnostics(tmp_path, text) if x.severity == "error"]
    assert len(d) == 1 and message in d[0].message, [x.message for x in d]
    assert d[0].line == line_of(text, at)


def test_adversarial_stopped_mid_epoch_resumes_bit_exact(tmp_path, capsys, monkeypatch):
    """A stop in the middle of an epoch (what Ctrl-C asks for) saves both networks, both optimizers and the
    half epoch's sums; the resumed run ends where the uninterrupted one does."""
    import signal

    from dlspec.tasks.adversarial_step import AdversarialStep

    whole, _ = train(tmp_path, capsys, GAN, out="whole")
    real, steps = AdversarialStep.train, []

    def step(self: Any, batch: Any) -> None:
        real(self, batch)
        steps.append(1)
        if len(steps) == 8:  # batch 3 of epoch 2 (6 batches of 32 per epoch): Ctrl-C
            signal.raise_signal(signal.SIGINT)
    monkeypatch.setattr(AdversarialStep, "train", step)
    path = write(tmp_path, GAN, "stopped.yaml")
    rc, out, err = dlspec_main(capsys, "run", path, "--out", tmp_path / "stopped", "--no-progress")
    assert rc == 130 and "at epoch 2, batch 2" in out
    monkeypatch.setattr(AdversarialStep, "train", real)
    from test_train import run_dir

    d = run_dir(tmp_path / "stopped")
    rc, out, err = dlspec_main(capsys, "run", "--resume", d)
    assert rc == 0, err
    a, b = checkpoint(whole), checkpoint(d)
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert [r["train_d_loss"] for r in csv_rows(whole)] == [r["train_d_loss"] for r in csv_rows(d)]


def test_task_options_take_overrides(tmp_path, capsys):
    d, out = train(tmp_path, capsys, AE, "train.task.reconstruction.noise=0.3", "train.epochs=1")
    assert "reconstruction of corrupted inputs (noise 0.3)" in out
    assert '"noise": 0.3' in (d / "summary.json").read_text()
