"""The bag-of-words baseline of a text_classes data set: multinomial logistic regression on word counts.

    python benchmarks/text_baseline.py                                    # examples/reviews.csv, as shipped
    python benchmarks/text_baseline.py --data "{path: examples/reviews.csv, max_length: 64}" --ngrams 2
    # also: --l2 1e-3 (weight decay of the logistic regression), --json PATH

The data set is loaded by dlspec itself (`dlspec.data.load("text_classes", ...)`), so the split, the
tokenizer and the vocabulary are the ones a `dlspec run` on the same `train.data` trains and tests on.  Each
text becomes its count vector over the vocabulary (its first max_length tokens, <pad> left out, <unk>
counted as one more word); `--ngrams 2` adds the counts of the pairs of neighbouring tokens seen in the
training texts.  A linear layer with a softmax is fitted to the whole training split by L-BFGS (full batch,
cross-entropy plus l2 × the squared weights) and the test accuracy is reported, beside the majority class's.
Deterministic: no random initialisation matters (the problem is convex), the weights start at zero.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def counts(ids: Any, lengths: Any, vocab: int, pairs: dict[tuple[int, int], int] | None) -> Any:
    """(N, vocab [+ pairs]) float32 token counts of each text (<pad> left out), then the counts of its pairs of
    neighbouring tokens that `pairs` numbers (columns vocab + k)."""
    import torch

    n, width = ids.shape
    c = torch.zeros(n, vocab + (len(pairs) if pairs else 0))
    c.scatter_add_(1, ids, torch.ones(ids.shape))
    c[:, 0] = 0  # <pad>
    if pairs:
        for i in range(n):
            row = ids[i, :int(lengths[i])].tolist()
            for a, b in zip(row, row[1:], strict=False):
                k = pairs.get((a, b))
                if k is not None:
                    c[i, vocab + k] += 1
    return c


def training_pairs(ids: Any, lengths: Any) -> dict[tuple[int, int], int]:
    """The pairs of neighbouring tokens of the training texts, numbered in the order first seen."""
    pairs: dict[tuple[int, int], int] = {}
    for i in range(ids.shape[0]):
        row = ids[i, :int(lengths[i])].tolist()
        for p in zip(row, row[1:], strict=False):
            pairs.setdefault(p, len(pairs))
    return pairs


def fit(x: Any, y: Any, classes: int, l2: float) -> Any:
    """A linear layer fitted by L-BFGS to cross-entropy + l2 · |W|², from zero weights."""
    import torch

    lin = torch.nn.Linear(x.shape[1], classes)
    torch.nn.init.zeros_(lin.weight)
    torch.nn.init.zeros_(lin.bias)
    opt = torch.optim.LBFGS(lin.parameters(), lr=1.0, max_iter=1000, tolerance_grad=1e-9, tolerance_change=1e-12,
                            history_size=20, line_search_fn="strong_wolfe")

    def closure() -> Any:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(lin(x), y) + l2 * lin.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return lin


def main(argv: list[str] | None = None) -> dict[str, Any]:
    import torch
    import yaml

    from dlspec.data import load

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="{path: examples/reviews.csv, max_length: 64}",
                    help="the text_classes options, as YAML (what train.data says, less `name`)")
    ap.add_argument("--data-root", default=".")
    ap.add_argument("--ngrams", type=int, choices=(1, 2), default=1)
    ap.add_argument("--l2", type=float, default=1e-3)
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    args = yaml.safe_load(a.data)
    b = load("text_classes", args, a.data_root)
    tr, te = b.train, b.test
    v = len(b.vocab or [])
    pairs = training_pairs(tr.x, tr.get("lengths")) if a.ngrams == 2 else None
    xtr, xte = counts(tr.x, tr.get("lengths"), v, pairs), counts(te.x, te.get("lengths"), v, pairs)
    lin = fit(xtr, tr.y, b.num_classes or 2, a.l2)
    with torch.no_grad():
        acc = {s: float((lin(x).argmax(1) == t.y).float().mean()) for s, x, t in (("train", xtr, tr), ("test", xte, te))}
    majority = float((te.y == torch.bincount(tr.y).argmax()).float().mean())
    out = {"data": args, "ngrams": a.ngrams, "l2": a.l2, "features": int(xtr.shape[1]), "train": len(tr),
           "test": len(te), "vocab_size": v, "train_accuracy": round(acc["train"], 4),
           "test_accuracy": round(acc["test"], 4), "majority_class_accuracy": round(majority, 4),
           "torch": torch.__version__}
    print(f"bag of {'words' if a.ngrams == 1 else 'words and word pairs'} ({out['features']:,} features) · "
          f"{len(tr):,} train / {len(te):,} test texts · train accuracy {acc['train']:.4f} · test accuracy "
          f"{acc['test']:.4f} · majority class {majority:.4f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)
    return out


if __name__ == "__main__":
    main()
