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
    """MultiheadAttention with query = key = value = the input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
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
