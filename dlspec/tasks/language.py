"""Language modelling: the next token at every step, causally (the char-RNN and GPT set-ups).

The data (char_text) gives windows of token ids or one-hot vectors and, as targets, the same windows
shifted by one; the model gives (N, T, vocabulary) scores and is trained with CrossEntropyLoss at every
step.  Nothing may see the future: an attention layer without `causal: true`, or a bidirectional
recurrent layer, would read the very token it is asked to predict — refused before the run.  After each
epoch a sample of generated text is printed and appended to samples.txt in the run folder.
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

SAMPLE_MAX = 10_000


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


class LanguageModel(Supervised):
    def describe(self) -> str:
        return "next token at every step"

    def after_epoch(self, run_dir: str, epoch: int, last: bool) -> list[str]:
        n = int(self.args["sample_length"])
        if not n or not self.tr.s.bundle.vocab:
            return []
        from ..generate import generate

        prime = self.args["prime"]
        if prime is None:  # the first characters of the test text
            x = self.tr.s.bundle.test.x[0]
            ids = (x.argmax(-1) if x.is_floating_point() else x)[:8].tolist()
            prime = "".join(self.tr.s.bundle.vocab[i] for i in ids)
        was = self.tr.model.training
        text = generate(self.tr.s, prime, n, float(self.args["temperature"]), int(self.tr.s.cfg.seed) + epoch)
        self.tr.model.train(was)
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
          "temperature": Arg(Float(0.0, 100.0, open_min=True), 0.8, doc="of the samples"),
          "prime": Arg(Optional_(Text()), None, doc="the samples' start (default: the test text's first 8 characters)")},
    contract=_contract, default_metrics=("accuracy", "perplexity")))
