"""`char_text`: character-level language modelling over a text file (the char-RNN set-up).

The vocabulary is the sorted set of the characters of the whole file (so the test part has no unknown
characters); the last `test_fraction` of the text is the test part.  Each sample is a window of
`seq_len` characters, and its target the next character at every step:

    x[i] = text[s : s + seq_len]          (one-hot (T, V) floats, or (T,) int64 ids)
    y[i] = text[s + 1 : s + seq_len + 1]  (T,) int64 ids          with s = i · step
"""

from __future__ import annotations

import os
import time
from typing import Any

from ..readers import ReadError, bounds, read_text
from ..registry import Arg, Choice, Float, Int, Optional_
from .base import Bundle, DataError, DataFacts, DatasetType, Seed, register
from .common import Text, check_memory, find_path, make_split, resolve, take_subset

ONE_HOT_LIMIT = 2 << 30  # bytes: above this, one-hot windows are refused (use ids and an Embedding)
TEXT_BYTES_PER_CHAR = 28  # reading: the text, its UTF-32 codes, np.unique's sorted copy and inverse, the int64 ids


def _windows(ids: Any, seq_len: int, step: int) -> tuple[Any, Any]:
    from numpy.lib.stride_tricks import sliding_window_view

    n = (len(ids) - 1 - seq_len) // step + 1 if len(ids) > seq_len else 0
    if n <= 0:
        return ids[:0].reshape(0, seq_len), ids[:0].reshape(0, seq_len)
    w = sliding_window_view(ids, seq_len + 1)[::step][:n]
    return w[:, :-1].copy(), w[:, 1:].copy()


def _load_char_text(args: dict[str, Any], root: str) -> Bundle:
    import numpy as np

    t0 = time.perf_counter()
    a = resolve("char_text", args)
    path = find_path(a["path"], root, "char_text")
    try:
        size = os.path.getsize(path)
    except OSError:
        size = 0
    check_memory("char_text", TEXT_BYTES_PER_CHAR * min(size, bounds().text_bytes), f"reading {path} ({size:,} bytes)",
                 "path", "use a shorter text")
    try:
        text = read_text(path)  # universal newlines: \r\n reads as \n; at most the text bound
    except ReadError as e:
        raise DataError(str(e), arg="path", help="save the file as UTF-8 (plain ASCII is UTF-8)" if e.kind == "encoding"
                        else "use a shorter text, or raise the bound" if e.kind == "bound" else None) from None
    seq_len, step = a["seq_len"], a["step"] or a["seq_len"]
    cut = int(len(text) * (1 - a["test_fraction"]))
    for part, n in (("training", cut), ("test", len(text) - cut)):
        if n < seq_len + 1:
            raise DataError(f"{path} has {len(text)} characters: its {part} part ({n}) is shorter than seq_len + 1 "
                            f"({seq_len + 1})", arg="seq_len",
                            help="use a longer text, a shorter seq_len, or another test_fraction")
    codes = np.frombuffer(text.encode("utf-32-le"), dtype="<u4")
    vocab_codes, ids = np.unique(codes, return_inverse=True)
    ids = ids.astype(np.int64)
    vocab = [chr(c) for c in vocab_codes]
    windows = sum(max(0, (n - 1 - seq_len) // step + 1) for n in (cut, len(text) - cut))
    check_memory("char_text", 2 * 8 * windows * seq_len, f"{windows:,} windows of {seq_len:,} characters (inputs "
                 "and targets, int64)", "step", "use a larger step (fewer, less overlapping windows), a shorter seq_len, "
                 "or a subset")
    xtr, ytr = _windows(ids[:cut], seq_len, step)
    xte, yte = _windows(ids[cut:], seq_len, step)
    xtr, ytr, xte, yte = take_subset("char_text", xtr, ytr, xte, yte, a["subset"], a["seed"])
    v = len(vocab)
    if a["encoding"] == "one_hot":
        size = (len(xtr) + len(xte)) * seq_len * v * 4
        if size > ONE_HOT_LIMIT:
            raise DataError(f"char_text one-hot windows would take {size / 2**30:.1f} GiB ({len(xtr) + len(xte)} "
                            f"windows × {seq_len} steps × {v} characters)", arg="encoding",
                            help="use encoding: ids with an Embedding layer, a larger step, or a subset")
        eye = np.eye(v, dtype=np.float32)
        xtr, xte = eye[xtr], eye[xte]
    info = {"file": os.path.abspath(path), "characters": len(text), "train_characters": cut,
            "test_characters": len(text) - cut, "vocab_size": v, "seq_len": seq_len, "step": step,
            "encoding": a["encoding"], "subset": a["subset"],
            "seconds": round(time.perf_counter() - t0, 3)}
    return Bundle("char_text", make_split(xtr, ytr), make_split(xte, yte), task="classification", num_classes=v,
                  vocab=vocab, info=info)


register(DatasetType(
    "char_text",
    {
        "path": Arg(Text(), doc="a UTF-8 text file, e.g. examples/shakespeare.txt"),
        "seq_len": Arg(Int(1), 64, doc="characters per sample (time steps T)"),
        "step": Arg(Optional_(Int(1)), None, doc="characters between window starts (default: seq_len, no overlap)"),
        "encoding": Arg(Choice("one_hot", "ids"), "one_hot",
                        doc="one_hot: x float (N, T, V); ids: x int64 (N, T) for an Embedding"),
        "test_fraction": Arg(Float(0.0, 0.9, open_min=True), 0.1, doc="the last part of the text is the test part"),
        "seed": Seed(0, doc="seed for subset (the data's own seed; train.seed does not change it)"),
    },
    _load_char_text,
    # the vocabulary (one-hot width, class count) is known only once the text is read
    facts=lambda a: DataFacts("char_text", (a["seq_len"],) if a["encoding"] == "ids" else (a["seq_len"], None),
                              "long" if a["encoding"] == "ids" else "float", (a["seq_len"],), "long", "classification",
                              None, False, ids_help="write `encoding: ids` under train.data"),
    doc="character-level language modelling: next character at every step; y (N, T) ids, vocab in the bundle"))
