"""`dlspec generate`: sample text from a char_text model, one character at a time.

When every layer works on each time step by itself (recurrent layers, Embedding, Linear, activations,
Dropout, LayerNorm), the recurrent layers' hidden state is carried from step to step (each step feeds one
character), so generating N characters costs N single-step forward passes, not N passes over a growing
prefix.  A model with a layer that mixes time steps otherwise (a causal Transformer, a convolution over
time) has no state to carry: it is run over the last `window` characters at every step — the context it
was trained on, the data's seq_len, and at most its positional embedding's length — so the context
slides along the text.  `top_k` keeps only the k likeliest characters before sampling (a k beyond the
vocabulary keeps them all).

Each character is drawn from softmax((logits − max) / T), the distribution of softmax(logits / T), whose
exponents stay finite for every T from MIN_TEMPERATURE up (the likeliest character's term is exp(0) = 1, the others' exp of a number ≤ 0): a tiny T
samples the likeliest character (greedy) instead of dividing into inf − inf = nan.  An empty prime starts the text from one character drawn uniformly (seeded), which the
`length` characters then follow.
"""

from __future__ import annotations

from typing import Any, cast

import torch
from torch import nn

from .infer import Checked, Row
from .modules import SpecModel
from .tasks import language

MAX_LENGTH = 1_000_000  # characters one `dlspec generate` writes (--length), and the most a prime may hold
# The temperature's range is the language-model task's (`train.task.language_model.temperature`): see there.
MIN_TEMPERATURE, MAX_TEMPERATURE = language.MIN_TEMPERATURE, language.MAX_TEMPERATURE


class GenerateError(ValueError):
    """A request generate() refuses (a temperature out of range, a prime with unknown characters) or a model
    whose scores are not numbers: one line for the user.  status: the exit status (2: an option, 1: the model)."""

    def __init__(self, message: str, status: int = 2):
        super().__init__(message)
        self.status = status


def _per_step(row: Row) -> bool:
    ps = row.entry.per_step
    return bool(ps(row.args) if callable(ps) else ps)


def stepwise(checked: Checked, model: nn.Module) -> bool:
    """Can the model be run one time step at a time with its recurrent state carried?  Each layer type says in
    the registry whether it maps each step on its own (`per_step`) and whether it carries a state (`stateful`)."""
    return isinstance(model, SpecModel) and len(list(model.children())) == len(checked.rows) \
        and all(_per_step(r) for r in checked.rows)


def _forward(checked: Checked, model: nn.Module, x: torch.Tensor, state: dict[int, Any]) -> torch.Tensor:
    for i, (row, layer) in enumerate(zip(checked.rows, model.children(), strict=True)):
        if row.entry.stateful:
            x, state[i] = cast(Any, layer).step(x, state.get(i))  # the registry says it has step()
        else:
            x = layer(x)
    return x


def window(s: Any) -> int | None:
    """The most steps a model without carried state reads at once: the data's seq_len, and no more than a
    positional embedding's length; None when neither bounds it."""
    sizes = [int(r.args["length"]) for r in s.checked.all_rows() if r.entry.family == "tokens" and "length" in r.args]
    seq = (s.bundle.info or {}).get("seq_len")
    if isinstance(seq, int):
        sizes.append(seq)
    return min(sizes) if sizes else None


def generate(s: Any, prime: str, length: int, temperature: float, seed: int, top_k: int | None = None) -> str:
    """`prime`, then `length` characters sampled from the model at `temperature` (GenerateError for a request
    out of range, before the model runs)."""
    from .safeio import shown

    vocab = s.bundle.vocab
    if not vocab:
        raise GenerateError(f"{s.bundle.name} is not a char_text dataset: nothing to generate")
    if not MIN_TEMPERATURE <= temperature <= MAX_TEMPERATURE:  # (nan too)
        raise GenerateError(f"--temperature must be from {MIN_TEMPERATURE:.3g} (2**-126, the smallest normal float32) "
                            f"to {MAX_TEMPERATURE:g}, not {temperature}")
    if not 0 <= length <= MAX_LENGTH:
        raise GenerateError(f"--length must be from 0 to {MAX_LENGTH:,}, not {length}")
    if top_k is not None and not 1 <= top_k:
        raise GenerateError(f"--top-k must be at least 1, not {top_k}")
    if len(prime) > MAX_LENGTH:
        raise GenerateError(f"--prime holds {len(prime):,} characters, more than the {MAX_LENGTH:,} it may have")
    index = {c: i for i, c in enumerate(vocab)}
    unknown = sorted({c for c in prime if c not in index})
    if unknown:
        raise GenerateError(f"--prime has characters that are not in the vocabulary ({len(vocab)} characters of "
                            f"{s.bundle.name}): " + shown(repr("".join(unknown[:20])))
                            + (f" and {len(unknown) - 20} more" if len(unknown) > 20 else ""))
    ids = [index[c] for c in prime] or [int(torch.randint(len(vocab), (1,), generator=torch.Generator().manual_seed(seed)))]
    one_hot = s.bundle.x_dtype == "float"
    g = torch.Generator().manual_seed(seed)

    def encode(seq: list[int]) -> torch.Tensor:
        t = torch.tensor([seq], dtype=torch.long)
        if one_hot:
            t = torch.nn.functional.one_hot(t, len(vocab)).float()
        return t.to(s.device)

    model = s.model.eval()
    carry = stepwise(s.checked, model)
    span = None if carry else window(s)
    state: dict[int, Any] = {}
    out_ids = list(ids)

    def context() -> torch.Tensor:
        return encode(out_ids[-span:] if span else out_ids)

    with torch.no_grad():
        logits = (_forward(s.checked, model, encode(ids), state) if carry else model(context()))[0, -1]
        for i in range(length):
            scores = logits.float().cpu()
            if not bool(torch.isfinite(scores).all()):
                raise GenerateError("the model's scores are not all finite numbers (nan or inf): its weights are "
                                    "broken (a training run that diverged?)", status=1)
            scores = (scores - scores.max()) / temperature  # ≤ 0, the largest 0: finite from MIN_TEMPERATURE up
            if top_k is not None and top_k < scores.numel():
                kth = torch.topk(scores, top_k).values[-1]
                scores = scores.masked_fill(scores < kth, float("-inf"))
            nxt = int(torch.multinomial(torch.softmax(scores, -1), 1, generator=g))
            out_ids.append(nxt)
            if i + 1 < length:  # the last character needs no forward pass
                logits = (_forward(s.checked, model, encode([nxt]), state) if carry else model(context()))[0, -1]
    return "".join(vocab[i] for i in out_ids)
