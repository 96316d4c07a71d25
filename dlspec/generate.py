"""`dlspec generate`: sample text from a char_text model, one character at a time.

The recurrent layers' hidden state is carried from step to step (each step feeds one character), so
generating N characters costs N single-step forward passes, not N passes over a growing prefix.
"""

from __future__ import annotations

from typing import Any

import torch

from .modules import GRU, LSTM, RNN


def _forward(model: torch.nn.Module, x: torch.Tensor, state: dict[int, Any]) -> torch.Tensor:
    for i, layer in enumerate(model.children()):
        if isinstance(layer, (RNN, LSTM, GRU)):
            x, state[i] = layer.step(x, state.get(i))
        else:
            x = layer(x)
    return x


def generate(s: Any, prime: str, length: int, temperature: float, seed: int) -> str:
    vocab = s.bundle.vocab
    if not vocab:
        raise ValueError(f"{s.bundle.name} is not a char_text dataset: nothing to generate")
    if temperature <= 0:
        raise ValueError("--temperature must be > 0")
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
    state: dict[int, Any] = {}
    out_chars = list(prime) if prime else [vocab[ids[0]]]
    with torch.no_grad():
        logits = _forward(model, encode(ids), state)[0, -1]
        for _ in range(length):
            p = torch.softmax(logits.float().cpu() / temperature, -1)
            nxt = int(torch.multinomial(p, 1, generator=g))
            out_chars.append(vocab[nxt])
            logits = _forward(model, encode([nxt]), state)[0, -1]
    return "".join(out_chars)
