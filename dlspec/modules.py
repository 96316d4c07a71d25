"""torch modules for what a layer list needs and torch.nn lacks.  Imported only when building."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class _SequenceOutput:
    """Mixin for recurrent layers: on a layer list they give their output sequence, not (output, state)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, T, F) -> (N, T, H·dirs)
        return super().forward(x)[0]  # type: ignore[misc]

    def step(self, x: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        """(output, new state): for generation that carries the hidden state from call to call."""
        return super().forward(x, state)  # type: ignore[misc]


class RNN(_SequenceOutput, nn.RNN):  # type: ignore[misc]
    pass


class LSTM(_SequenceOutput, nn.LSTM):  # type: ignore[misc]
    pass


class GRU(_SequenceOutput, nn.GRU):  # type: ignore[misc]
    pass


class SelfAttention(nn.MultiheadAttention):
    """MultiheadAttention with query = key = value = the input; `causal` masks each step from later ones."""

    def __init__(self, *args: Any, causal: bool = False, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.causal = causal

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        if self.causal:
            t = x.shape[1] if self.batch_first else x.shape[0]
            return super().forward(x, x, x, need_weights=False, attn_mask=causal_mask(t, x.device), is_causal=True)[0]
        return super().forward(x, x, x, need_weights=False)[0]


class SpecModel(nn.Sequential):
    """The model a spec describes: its layers in order, named as in the spec's table (conv1, relu1, ...)."""


class Residual(nn.Module):
    """x + body(x), or shortcut(x) + body(x)."""

    def __init__(self, body: nn.Module, shortcut: nn.Module | None = None):
        super().__init__()
        self.body = body
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x if self.shortcut is None else self.shortcut(x)) + self.body(x)


class Concat(nn.Module):
    def __init__(self, branches: list[nn.Module], dim: int = 1):
        super().__init__()
        self.branches = nn.ModuleList(branches)
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([b(x) for b in self.branches], dim=self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class Last(nn.Module):
    """The last time step: (N, T, F) -> (N, F)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, -1]


class Reshape(nn.Module):
    def __init__(self, shape: tuple[int, ...]):
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], *self.shape)

    def extra_repr(self) -> str:
        return f"N, {', '.join(map(str, self.shape))}"


class Permute(nn.Module):
    def __init__(self, dims: tuple[int, ...]):
        super().__init__()
        self.dims = tuple(dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(*self.dims)

    def extra_repr(self) -> str:
        return ", ".join(map(str, self.dims))


# --- merges and graphs: what `from:` draws -------------------------------------------------------------

class Add(nn.Module):
    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        out = xs[0]
        for x in xs[1:]:
            out = out + x
        return out


class Multiply(nn.Module):
    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        out = xs[0]
        for x in xs[1:]:
            out = out * x
        return out


class Average(nn.Module):
    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return torch.stack(torch.broadcast_tensors(*xs)).mean(0)


class Maximum(nn.Module):
    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        out = xs[0]
        for x in xs[1:]:
            out = torch.maximum(out, x)
        return out


class Concatenate(nn.Module):
    def __init__(self, dim: int = 1):
        super().__init__()
        self.dim = dim

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return torch.cat(xs, dim=self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


# --- element-wise math, and sampling ---------------------------------------------------------------------

class Exp(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.exp(x)


class Log(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log(x)


class Scale(nn.Module):
    """x * factor, a constant."""

    def __init__(self, factor: float):
        super().__init__()
        self.factor = float(factor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor

    def extra_repr(self) -> str:
        return f"factor={self.factor}"


class Reparameterize(nn.Module):
    """A sample of N(mu, exp(logvar)) that gradients flow through (Kingma & Welling 2014): mu + eps * exp(logvar / 2)
    with eps ~ N(0, 1) drawn from torch's global generator (torch.manual_seed repeats it, and a checkpoint that
    saves torch's RNG state resumes it); mu itself when evaluating (the same output on every call)."""

    def forward(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:  # (N, *S), (N, *S) -> (N, *S)
        if not self.training:
            return mu
        return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)


Ref = Any  # a `from:` entry: a name (str) or an entry position (int, already made absolute)


class Graph(nn.Module):
    """A layer list whose entries read named tensors (`from:`), several inputs or several outputs.

    Its modules are its attributes, named as in a plain list (conv1, relu1, ...: the same state_dict keys);
    `steps` says, for each module in order, what it reads (None: the previous output), the entry it belongs
    to and whether it is that entry's last repetition (whose output later entries can read), and the name
    that output gets.  forward(*inputs) returns the output, or a tuple of the outputs in `outputs:` order.
    """

    def __init__(self, modules: dict[str, nn.Module], steps: list[tuple[str, list[Ref] | None, int, bool, str | None]],
                 inputs: list[str], outputs: list[str]):
        super().__init__()
        for name, m in modules.items():
            self.add_module(name, m)
        self.steps = steps
        self.input_names = inputs
        self.output_names = outputs

    def forward(self, *xs: torch.Tensor) -> Any:
        env: dict[str, torch.Tensor] = dict(zip(self.input_names, xs, strict=False))
        env["input"] = xs[0]
        outs: dict[int, torch.Tensor] = {}
        x = xs[0]
        for name, refs, pos, last, named in self.steps:
            args = [x] if refs is None else [env[r] if isinstance(r, str) else outs[r] for r in refs]
            x = getattr(self, name)(*args)
            if last:
                outs[pos] = x
                if named is not None:
                    env[named] = x
        if not self.output_names:
            return x
        if len(self.output_names) == 1:
            return env[self.output_names[0]]
        return tuple(env[n] for n in self.output_names)


# --- slicing, selecting, reducing ------------------------------------------------------------------------

class Narrow(nn.Module):
    def __init__(self, dim: int, start: int, length: int):
        super().__init__()
        self.dim, self.start, self.length = dim, start, length

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.narrow(self.dim, self.start, self.length)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, start={self.start}, length={self.length}"


class Chunk(nn.Module):
    def __init__(self, chunks: int, index: int, dim: int = 1):
        super().__init__()
        self.chunks, self.index, self.dim = chunks, index, dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.chunk(self.chunks, self.dim)[self.index]

    def extra_repr(self) -> str:
        return f"chunks={self.chunks}, index={self.index}, dim={self.dim}"


class Select(nn.Module):
    def __init__(self, dim: int, index: int):
        super().__init__()
        self.dim, self.index = dim, index

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.select(self.dim, self.index)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, index={self.index}"


class _Reduce(nn.Module):
    def __init__(self, dim: Any, keepdim: bool = False):
        super().__init__()
        self.dim = tuple(dim) if isinstance(dim, (list, tuple)) else dim
        self.keepdim = keepdim

    def extra_repr(self) -> str:
        return f"dim={self.dim}, keepdim={self.keepdim}"


class Mean(_Reduce):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(self.dim, keepdim=self.keepdim)


class Max(_Reduce):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.amax(self.dim, keepdim=self.keepdim)


class Sum(_Reduce):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.sum(self.dim, keepdim=self.keepdim)


# --- attention with a causal mask; the two-input layers ---------------------------------------------------

def causal_mask(t: int, device: Any) -> torch.Tensor:
    """True above the diagonal: step i may not attend to steps after it."""
    return torch.ones(t, t, dtype=torch.bool, device=device).triu(1)


class EncoderLayer(nn.TransformerEncoderLayer):
    """torch's TransformerEncoderLayer, with `causal` (each step attends only to itself and the steps before)."""

    def __init__(self, *args: Any, causal: bool = False, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.causal = causal

    def forward(self, src: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:  # type: ignore[override]
        if self.causal and not args and "src_mask" not in kwargs:
            t = src.shape[1] if self.self_attn.batch_first else src.shape[0]
            return super().forward(src, src_mask=causal_mask(t, src.device), is_causal=True)
        return super().forward(src, *args, **kwargs)


class DecoderLayer(nn.TransformerDecoderLayer):
    """torch's TransformerDecoderLayer reading (target, memory); `causal` masks the target's later steps."""

    def __init__(self, *args: Any, causal: bool = False, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.causal = causal

    def forward(self, tgt: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        if not self.causal:
            return super().forward(tgt, memory)
        t = tgt.shape[1] if self.self_attn.batch_first else tgt.shape[0]
        return super().forward(tgt, memory, tgt_mask=causal_mask(t, tgt.device), tgt_is_causal=True)


class Transformer(nn.Transformer):
    """torch's Transformer reading (source, target); `causal` masks the target's later steps."""

    def __init__(self, *args: Any, causal: bool = False, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.causal = causal

    def forward(self, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        if not self.causal:
            return super().forward(src, tgt)
        t = tgt.shape[1] if self.batch_first else tgt.shape[0]
        return super().forward(src, tgt, tgt_mask=causal_mask(t, tgt.device), tgt_is_causal=True)


# --- learned tensors -----------------------------------------------------------------------------------

class ClassToken(nn.Module):
    """Prepends a learned token to a sequence (N, T, F) -> (N, T+1, F), as ViT's class token (zeros at first)."""

    def __init__(self, embed_dim: int):
        super().__init__()
        self.token = nn.Parameter(torch.zeros(1, 1, embed_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.token.expand(x.shape[0], -1, -1), x], dim=1)


class PositionalEmbedding(nn.Module):
    """Adds a learned vector per position (N, T, F): the first T of `length` (normal(std) at first, as ViT)."""

    def __init__(self, embed_dim: int, length: int, std: float = 0.02):
        super().__init__()
        self.embedding = nn.Parameter(torch.empty(1, length, embed_dim).normal_(std=std))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.embedding[:, : x.shape[1]]


class SinusoidalPositionalEncoding(nn.Module):
    """Adds sin(pos / base^(2i/F)) and cos(...) to the even and odd features (Vaswani et al. 2017)."""

    def __init__(self, embed_dim: int, base: float = 10000.0):
        super().__init__()
        self.embed_dim, self.base = embed_dim, base

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t, d = x.shape[1], self.embed_dim
        pos = torch.arange(t, device=x.device, dtype=torch.float32)[:, None]
        freq = torch.pow(self.base, -torch.arange(0, d, 2, device=x.device, dtype=torch.float32) / d)
        pe = torch.zeros(t, d, device=x.device, dtype=torch.float32)
        pe[:, 0::2] = torch.sin(pos * freq)
        pe[:, 1::2] = torch.cos(pos * freq)
        return x + pe.to(x.dtype)

    def extra_repr(self) -> str:
        return f"{self.embed_dim}, base={self.base:g}"


class Parameter(nn.Module):
    """A learned tensor of `shape`, the same for every sample: (N, *shape); the input gives the batch size."""

    def __init__(self, shape: Any, init: str = "normal", std: float = 1.0):
        super().__init__()
        w = torch.empty(*shape)
        {"zeros": nn.init.zeros_, "ones": nn.init.ones_, "normal": lambda t: nn.init.normal_(t, std=std),
         "trunc_normal": lambda t: nn.init.trunc_normal_(t, std=std), "uniform": nn.init.uniform_,
         "xavier_uniform": lambda t: nn.init.xavier_uniform_(t) if t.dim() >= 2 else nn.init.uniform_(t)}[init](w)
        self.value = nn.Parameter(w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.value.expand(x.shape[0], *self.value.shape)
        # without autograd a view of a parameter would still claim to need grad: hand out a plain tensor
        return out if torch.is_grad_enabled() else out.clone()
