"""`dlspec generate`: sample text from a char_text model, one character at a time.

When every layer works on each time step by itself (recurrent layers, Embedding, Linear, activations,
Dropout, LayerNorm), the recurrent layers' hidden state is carried from step to step (each step feeds one
character), so generating N characters costs N single-step forward passes, not N passes over a growing
prefix.  A model with a layer that mixes time steps otherwise (a causal Transformer, a convolution over
time) has no state to carry: it is run over the last `window` characters at every step — the context it
was trained on, the data's seq_len, and at most its positional embedding's length — so the context
slides along the text.  `top_k` keeps only the k likeliest characters before sampling.
"""

from __future__ import annotations

from typing import Any, cast

import torch
from torch import nn

from .infer import Checked, Row
from .modules import SpecModel

MAX_LENGTH = 1_000_000  # characters one `dlspec generate` writes (--length)


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
    vocab = s.bundle.vocab
    if not vocab:
        raise ValueError(f"{s.bundle.name} is not a char_text dataset: nothing to generate")
    if not 0 < temperature < float("inf"):  # (nan too)
        raise ValueError(f"--temperature must be a number > 0, not {temperature}")
    if not 0 <= length <= MAX_LENGTH:
        raise ValueError(f"--length must be from 0 to {MAX_LENGTH:,}, not {length}")
    if top_k is not None and not 1 <= top_k:
        raise ValueError(f"--top-k must be at least 1, not {top_k}")
    index = {c: i for i, c in enumerate(vocab)}
    unknown = sorted({c for c in prime if c not in index})
    if unknown:
        raise ValueError(f"--prime has characters that are not in the vocabulary: {''.join(unknown)!r}")
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
            scores = (scores - scores.max()) / temperature  # ≤ 0, the largest 0: finite (tasks.language.MIN_TEMPERATURE)
            if top_k is not None and top_k < scores.numel():
                kth = torch.topk(scores, top_k).values[-1]
                scores = scores.masked_fill(scores < kth, float("-inf"))
            nxt = int(torch.multinomial(torch.softmax(scores, -1), 1, generator=g))
            out_ids.append(nxt)
            if i + 1 < length:  # the last character needs no forward pass
                logits = (_forward(s.checked, model, encode([nxt]), state) if carry else model(context()))[0, -1]
    return "".join(vocab[i] for i in out_ids)
