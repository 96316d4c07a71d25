"""Language modelling: the next token at every step, causally (the char-RNN and GPT set-ups).

The data (char_text) gives windows of token ids or one-hot vectors and, as targets, the same windows
shifted by one; the model gives (N, T, vocabulary) scores and is trained with CrossEntropyLoss at every
step.  Nothing may see the future: an attention layer without `causal: true`, or a bidirectional
recurrent layer, would read the very token it is asked to predict — refused before the run.  After each
epoch a sample of generated text is printed and appended to samples.txt in the run folder; its options are
checked before the first step: `temperature` by `dlspec check` (at least MIN_TEMPERATURE), `prime` against
the text's vocabulary as soon as the text is loaded.
"""

from __future__ import annotations

import os
from typing import Any

from .. import codes
from ..data.base import DataFacts
from ..data.common import Text
from ..diagnostics import Diagnostic, diag
from ..registry import Arg, Float, Int, Optional_
from . import TaskType, register
from .supervised import Supervised

SAMPLE_MAX = 10_000  # characters of a sample after each epoch (sample_length), and of its prime
# The lowest temperature a sample is drawn at (here and `dlspec generate --temperature`): float32's smallest
# normal number, 2**-126 ≈ 1.18e-38.  The scores are shifted by their maximum before they are divided by the
# temperature, so the largest is 0 and the others are ≤ 0: softmax((logits - max) / T) is then finite for every
# finite logit (a quotient that overflows is -inf, whose exp is 0, and the largest gives exp(0) = 1), as long
# as T is a float32 number > 0 that no device flushes to zero, which a subnormal one (below 2**-126) may be.
# (1e-300 is 0 in float32: 0 / 0 is nan, and torch.multinomial fails on it.)
MIN_TEMPERATURE = 2.0 ** -126
MAX_TEMPERATURE = 100.0  # beyond it the samples are uniform noise


class Temperature(Float):
    """A sampling temperature: MIN_TEMPERATURE to MAX_TEMPERATURE."""

    def __init__(self) -> None:
        super().__init__(MIN_TEMPERATURE, MAX_TEMPERATURE)
        self.text = "a number from 1.18e-38 (2**-126, float32's smallest normal number) to 100"


class Prime(Text):
    """The start of the samples: a non-empty text of at most SAMPLE_MAX characters."""

    text = f"a non-empty text of at most {SAMPLE_MAX:,} characters"

    def check(self, v: Any) -> str | None:
        return super().check(v) or (f"must be {self.text}, not {len(v):,}" if len(v) > SAMPLE_MAX else None)


def _contract(checked: Any, facts: DataFacts, args: dict[str, Any], path: tuple[Any, ...]) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    where = path or ("train",)
    if facts.target_shape is not None and len(facts.target_shape) < 1:
        out.append(diag("error", codes.TRAIN, f"language_model learns the next token at every step, but {facts.name} "
                        "gives one target per sample", where, key=not path,
                        help="use char_text data (or task: classification for one label per sample)"))
        return out
    for r in checked.all_rows():
        if not r.entry.mixes_steps:
            continue
        if "causal" in r.entry.args and not r.args.get("causal"):
            out.append(diag("error", codes.TRAIN, f"{r.entry.name} attends to every step, the later ones too: a language "
                            "model would read the very token it must predict", r.item.args_path, key=True,
                            layer=r.item.index, help=f"add causal: true to {r.entry.name} (each step then sees only the "
                            "steps before it)"))
        elif r.args.get("bidirectional"):
            out.append(diag("error", codes.TRAIN, f"a bidirectional {r.entry.name} reads each sequence backwards too: a "
                            "language model would see the tokens it must predict", r.item.args_path, key=True,
                            layer=r.item.index, help="write bidirectional: false"))
    return out


def _loaded(bundle: Any, args: dict[str, Any], path: tuple[Any, ...]) -> list[Diagnostic]:
    """The prime against the vocabulary of the text as loaded (known only then): each of its characters
    must be one the model has learned, or the first sample, after an epoch of training, fails."""
    prime, vocab = args.get("prime"), bundle.vocab
    if not prime or not vocab or not int(args.get("sample_length") or 0):
        return []
    known = set(vocab)
    unknown = sorted({c for c in prime if c not in known})
    if not unknown:
        return []
    shown = ", ".join(repr(c) for c in unknown[:20]) + (f" and {len(unknown) - 20} more" if len(unknown) > 20 else "")
    where = (path + ("language_model", "prime")) if path else ("train",)
    return [diag("error", codes.TRAIN, f"prime has {len(unknown)} character{'s' if len(unknown) != 1 else ''} that "
                 f"{bundle.name}'s vocabulary does not have: {shown}", where, key=not path,
                 notes=[f"the vocabulary ({len(vocab)} characters): {''.join(vocab)!r}"[:300]],
                 help="start the samples with characters of the text (or leave prime out: the test text's first "
                      "8 characters)")]


class LanguageModel(Supervised):
    def describe(self) -> str:
        return "next token at every step"

    def after_epoch(self, run_dir: str, epoch: int, last: bool) -> list[str]:
        n = int(self.args["sample_length"])
        ctx = self.ctx
        if not n or not ctx.bundle.vocab:
            return []
        from ..generate import generate

        prime = self.args["prime"]
        if prime is None:  # the first characters of the test text
            x = ctx.bundle.test.x[0]
            ids = (x.argmax(-1) if x.is_floating_point() else x)[:8].tolist()
            prime = "".join(ctx.bundle.vocab[i] for i in ids)
        was = ctx.model.training
        text = generate(ctx, prime, n, float(self.args["temperature"]), int(ctx.cfg.seed) + epoch)
        ctx.model.train(was)
        from .. import runs

        path = os.path.join(run_dir, "samples.txt")
        old = ""
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                old = f.read()
        runs.write_atomic(path, (old + f"--- epoch {epoch}\n{text}\n").encode("utf-8"))
        return ["sample: " + repr(text[:160]) + ("…" if len(text) > 160 else "")]


register(TaskType(
    "language_model", "the next token at every step, causally (char_text data)", "classification",
    "dlspec.tasks.language:LanguageModel",
    args={"sample_length": Arg(Int(0, SAMPLE_MAX), 200, doc="characters generated after each epoch (0: none)"),
          "temperature": Arg(Temperature(), 0.8, doc="of the samples (at least 2**-126: see MIN_TEMPERATURE)"),
          "prime": Arg(Optional_(Prime()), None, doc="the samples' start, in characters of the text (default: the "
                       "test text's first 8 characters)")},
    contract=_contract, loaded=_loaded, default_metrics=("accuracy", "perplexity"), default_for=("char_text",)))
