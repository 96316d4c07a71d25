"""text_classes (texts with labels from a CSV file or class folders; a vocabulary of the training split) and the
named fields of a Split: checked against references computed here by hand (collections.Counter, slicing,
torch's own MultiheadAttention for the padding-mask convention), never against the loader's output alone.
"""

from __future__ import annotations

import csv
import importlib.util
import itertools
import json
import os
import subprocess
import sys
import tracemalloc
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from conftest import run_or_hang

torch = pytest.importorskip("torch")

from dlspec.data import DATASETS, DataError, load  # noqa: E402
from dlspec.data.base import DataFacts, Split  # noqa: E402
from dlspec.data.textclass import tokenize  # noqa: E402

REPO = Path(__file__).resolve().parent.parent

CORPUS = [  # (text, label): letters, digits, punctuation, case, an apostrophe, accents
    ("The cat sat on the mat.", "pets"),
    ("A dog; a DOG! Dogs bark at 3 cats", "pets"),
    ("Stocks fell 12% as markets slid", "money"),
    ("Bonds rose, stocks fell: the market's mood", "money"),
    ("The cat and the dog", "pets"),
    ("Crème brûlée costs 9 euros in Zürich", "money"),
]


def letters(text: str, lower: bool = True) -> list[str]:
    """The reference word tokenizer: maximal runs of characters for which str.isalpha() holds."""
    text = text.lower() if lower else text
    return ["".join(g) for alpha, g in itertools.groupby(text, str.isalpha) if alpha]


def reference_vocab(texts: list[str], tokens, max_vocab: int = 10**9, min_freq: int = 1) -> list[str]:
    counts: Counter[str] = Counter()
    for t in texts:
        counts.update(tokens(t))
    kept = [t for t, c in counts.items() if c >= min_freq]
    kept.sort(key=lambda t: (-counts[t], t))
    return ["<pad>", "<unk>"] + kept[:max_vocab - 2]


def write_csv(path: Path, rows: list[tuple[str, str]], header: tuple[str, ...] = ("text", "label")) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        if header:
            w.writerow(header)
        w.writerows(rows)
    return path


def raises(fn, *words: str) -> DataError:
    """fn() must raise a DataError of one line whose message and help hold every word."""
    with pytest.raises(DataError) as e:
        fn()
    err = e.value
    assert "\n" not in err.message, err.message
    text = " ".join([err.message, err.help or ""] + err.notes)
    for w in words:
        assert w in text, f"{w!r} not in {text!r}"
    return err


def decode(b, split: Split, i: int) -> list[str]:
    n = int(split.get("lengths")[i])
    return [b.vocab[int(t)] for t in split.x[i, :n]]


# --- the vocabulary, the tokens, the ids --------------------------------------------------------------


@pytest.mark.parametrize("lower", [True, False])
def test_word_vocabulary_is_the_counter_of_the_training_texts(tmp_path, lower):
    train = write_csv(tmp_path / "train.csv", CORPUS)
    test = write_csv(tmp_path / "test.csv", [("The zebra sat", "pets"), ("Markets and zebras", "money")])
    b = load("text_classes", {"path": str(train), "test_path": str(test), "lower": lower}, ".")
    texts = [t for t, _ in CORPUS]
    assert b.vocab == reference_vocab(texts, lambda t: letters(t, lower))
    assert "zebra" not in b.vocab  # the test texts add nothing to it
    assert all(tokenize(t, "word", lower) == letters(t, lower) for t in texts)
    # every training text's ids read back as its tokens (no text is longer than max_length here)
    for i, (text, _) in enumerate(CORPUS):
        assert decode(b, b.train, i) == letters(text, lower)
    # a test word the training texts lack is <unk> (id 1), the others their ids
    want = ["the" if lower else "The", "<unk>", "sat"]
    assert decode(b, b.test, 0) == want
    assert b.test.x[0, :3].tolist() == [b.vocab.index(w) for w in want]
    assert b.classes == ["money", "pets"] and b.train.y.tolist() == [1, 1, 0, 0, 1, 0]


def test_char_vocabulary_min_freq_and_max_vocab(tmp_path):
    p = write_csv(tmp_path / "t.csv", CORPUS)
    texts = [t for t, _ in CORPUS]
    b = load("text_classes", {"path": str(p), "test_path": str(p), "level": "char", "lower": False}, ".")
    assert b.vocab == reference_vocab(texts, list)
    assert " " in b.vocab and "." in b.vocab and "è" in b.vocab  # every character is a token
    b = load("text_classes", {"path": str(p), "test_path": str(p), "min_freq": 2, "max_vocab": 6}, ".")
    ref = reference_vocab(texts, letters, max_vocab=6, min_freq=2)
    assert b.vocab == ref and len(b.vocab) == 6
    # what max_vocab and min_freq leave out reads as <unk>
    full = reference_vocab(texts, letters)
    i = CORPUS.index(("The cat and the dog", "pets"))
    assert decode(b, b.train, i) == [w if w in ref else "<unk>" for w in letters(CORPUS[i][0])]
    assert full[2:6] == ref[2:6]


def test_max_length_cuts_and_pads_and_the_mask_is_true_at_padding(tmp_path):
    p = write_csv(tmp_path / "t.csv", CORPUS)
    b = load("text_classes", {"path": str(p), "test_path": str(p), "max_length": 4}, ".")
    s = b.train
    assert s.x.shape == (6, 4) and s.x.dtype == torch.int64
    for i, (text, _) in enumerate(CORPUS):
        words = letters(text)[:4]
        assert s.get("lengths")[i] == len(words)
        assert [b.vocab[t] for t in s.x[i].tolist()] == words + ["<pad>"] * (4 - len(words))
    mask = s.get("padding_mask")
    assert mask.dtype == torch.bool
    assert mask.tolist() == [[j >= int(n) for j in range(4)] for n in s.get("lengths")]
    assert b.info["cut"] == {"train": sum(len(letters(t)) > 4 for t, _ in CORPUS),
                             "test": sum(len(letters(t)) > 4 for t, _ in CORPUS)}
    assert b.info["vocab"] == b.vocab and b.info["vocab_size"] == len(b.vocab)


def test_the_padding_mask_is_torchs_key_padding_mask(tmp_path):
    """True at padding means 'ignore': attention over the padded batch with the mask gives, at each real token,
    what attention over the text alone gives."""
    p = write_csv(tmp_path / "t.csv", CORPUS)
    b = load("text_classes", {"path": str(p), "test_path": str(p), "max_length": 16}, ".")
    batch = b.train.batch(torch.arange(6))
    torch.manual_seed(0)
    emb = torch.nn.Embedding(len(b.vocab), 8)
    att = torch.nn.MultiheadAttention(8, 2, batch_first=True).eval()
    with torch.no_grad():
        e = emb(batch["tokens"])
        out, _ = att(e, e, e, key_padding_mask=batch["padding_mask"])
        for i in range(6):
            n = int(batch["lengths"][i])
            alone, _ = att(e[i:i + 1, :n], e[i:i + 1, :n], e[i:i + 1, :n])
            torch.testing.assert_close(out[i, :n], alone[0], rtol=1e-5, atol=1e-6)


# --- splits and subsets -------------------------------------------------------------------------------


def test_test_fraction_split_is_deterministic_by_seed(tmp_path):
    rows = [(f"text number {w} and {v}", "ab"[i % 2]) for i, (w, v) in
            enumerate(itertools.product(["one", "two", "three", "four", "five"], ["red", "green", "blue", "gray"]))]
    p = write_csv(tmp_path / "t.csv", rows)

    def texts(b, split):
        return [" ".join(decode(b, getattr(b, split), i)) for i in range(len(getattr(b, split)))]

    a = load("text_classes", {"path": str(p), "test_fraction": 0.25, "seed": 7}, ".")
    again = load("text_classes", {"path": str(p), "test_fraction": 0.25, "seed": 7}, ".")
    other = load("text_classes", {"path": str(p), "test_fraction": 0.25, "seed": 8}, ".")
    assert len(a.test) == 5 and len(a.train) == 15
    assert texts(a, "test") == texts(again, "test") and torch.equal(a.train.x, again.train.x)
    assert texts(a, "test") != texts(other, "test")
    every = sorted(" ".join(letters(t)) for t, _ in rows)
    assert sorted(texts(a, "train") + texts(a, "test")) == every  # a partition of the rows
    # the vocabulary is the training part's: the words of the held-out rows only are not in it
    train_words = {w for t in texts(a, "train") for w in t.split()}
    assert set(a.vocab[2:]) == train_words
    # subset: the first N after a seeded shuffle, a part of the same split
    s = load("text_classes", {"path": str(p), "test_fraction": 0.25, "seed": 7, "subset": {"train": 6, "test": 2}}, ".")
    assert len(s.train) == 6 and len(s.test) == 2
    # (its vocabulary is its own 6 training texts': a word it lacks reads <unk>, which matches any word)
    held_out = [t.split() for t in texts(a, "test")]
    for t in texts(s, "test"):
        assert any(len(h) == len(t.split()) and all(w in ("<unk>", v) for w, v in zip(t.split(), h, strict=True))
                   for h in held_out), t
    assert set(s.vocab[2:]) == {w for t in texts(s, "train") for w in t.split()}


# --- per-batch trimming and the Split API ---------------------------------------------------------------


def test_batch_trims_to_the_longest_text_as_slicing_by_hand(tmp_path):
    rows = [(" ".join(["word"] * n), "ab"[n % 2]) for n in (1, 7, 3, 12, 2, 5)]
    p = write_csv(tmp_path / "t.csv", rows)
    b = load("text_classes", {"path": str(p), "test_path": str(p), "max_length": 10}, ".")
    s = b.train
    for idx in ([0, 4], [2, 0, 5], [3], [1, 2]):
        index = torch.tensor(idx)
        got = s.batch(index)
        longest = max(min(len(rows[i][0].split()), 10) for i in idx)
        assert torch.equal(got["x"], s.x[index][:, :longest]) and torch.equal(got["tokens"], got["x"])
        assert torch.equal(got["padding_mask"], s.get("padding_mask")[index][:, :longest])
        assert torch.equal(got["lengths"], s.get("lengths")[index]) and torch.equal(got["y"], s.y[index])
        assert torch.equal(got["label"], got["y"])
        full = s.batch(index, ["tokens", "padding_mask"], trim=False)
        assert full["tokens"].shape == (len(idx), 10) and set(full) == {"tokens", "padding_mask"}
    # a subset of names: only those, cut the same way
    assert set(s.batch(torch.tensor([0]), ["lengths", "label"])) == {"lengths", "label"}


def test_split_api_keeps_x_and_y_and_carries_the_fields(tmp_path):
    x, y = torch.arange(12).reshape(4, 3), torch.tensor([0, 1, 0, 1])
    plain = Split(x, y)  # the constructor every loader and the trainer use
    assert len(plain) == 4 and plain.fields == {} and plain.names() == ["x", "y"]
    assert set(plain.batch(torch.tensor([1, 2]))) == {"x", "y"}
    s = Split(x, y, {"lengths": torch.tensor([1, 3, 2, 3])}, {"tokens": "x"}, ("x",))
    t = s.take(torch.tensor([2, 0]))
    assert torch.equal(t.x, x[[2, 0]]) and torch.equal(t.get("lengths"), torch.tensor([2, 1]))
    assert t.aliases == {"tokens": "x"} and t.padded == ("x",) and t.get("tokens") is t.x
    with pytest.raises(KeyError):
        s.get("padding_mask")


def test_static_facts_are_the_loaded_datas(tmp_path):
    """What `dlspec check` knows from the options (DatasetType.facts) is what the loaded data holds."""
    p = write_csv(tmp_path / "t.csv", CORPUS)
    args = {"path": str(p), "test_path": str(p), "max_length": 9}
    b = load("text_classes", args, ".")
    from dlspec.data.common import resolve

    facts: DataFacts = DATASETS["text_classes"].facts(resolve("text_classes", args))
    loaded = b.field_facts()
    assert set(facts.fields) == set(loaded) == {"tokens", "lengths", "padding_mask", "label"}
    for name, f in facts.fields.items():
        got = loaded[name]
        assert (f.shape, f.dtype, f.of, f.padded) == (got.shape, got.dtype, got.of, got.padded), name
    assert facts.sample_shape == b.sample_shape == (9,) and facts.x_dtype == b.x_dtype == "long"
    assert facts.field_of("x").shape == (9,) and facts.field_of("y").dtype == "long" and facts.field_of("z") is None


# --- the folder layout --------------------------------------------------------------------------------


def make_folder(root: Path, texts: dict[str, list[str]]) -> Path:
    for cls, items in texts.items():
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i, t in enumerate(items):
            (root / cls / f"{i:03d}.txt").write_text(t, encoding="utf-8")
    return root


def test_folder_of_class_folders(tmp_path):
    make_folder(tmp_path / "d" / "train", {"neg": ["bad food", "awful room\n"], "pos": ["good food", "great view"]})
    make_folder(tmp_path / "d" / "test", {"pos": ["good room"], "neg": ["bad bad wine"]})
    (tmp_path / "d" / "train" / ".cache").mkdir()  # hidden: not a class
    (tmp_path / "d" / "train" / "pos" / "notes.md").write_text("not a text")  # not .txt: left out
    os.mkfifo(tmp_path / "d" / "train" / "pos" / "pipe.txt")  # a FIFO named x.txt: skipped, never opened
    b = load("text_classes", {"path": str(tmp_path / "d")}, ".")
    assert b.classes == ["neg", "pos"] and b.train.y.tolist() == [0, 0, 1, 1] and b.test.y.tolist() == [0, 1]
    train = ["bad food", "awful room", "good food", "great view"]
    assert b.vocab == reference_vocab(train, letters)
    assert decode(b, b.test, 0) == ["bad", "bad", "<unk>"]
    assert b.info["folder"] == str(tmp_path / "d")
    # a test folder with a class the training folder lacks
    make_folder(tmp_path / "d" / "test", {"other": ["what"]})
    raises(lambda: load("text_classes", {"path": str(tmp_path / "d")}, "."), "classes the training folder lacks",
           "other")
    # no train/ and test/: test_fraction of the one folder
    b = load("text_classes", {"path": str(tmp_path / "d" / "train"), "test_fraction": 0.5}, ".")
    assert len(b.train) == 2 and len(b.test) == 2


# --- hostile input: one line each ---------------------------------------------------------------------


def test_refusals_of_csv_files(tmp_path):
    def text_classes(name: str, body: bytes | str, **args):
        p = tmp_path / name
        p.write_bytes(body.encode() if isinstance(body, str) else body)
        return lambda: load("text_classes", {"path": str(p), **args}, ".")

    raises(text_classes("empty.csv", "text,label\nhello,a\n   ,b\nfoo,a\n"), "empty.csv line 3", "the text is empty")
    e = raises(text_classes("digits.csv", "text,label\nhello,a\n123 !!,b\n42,a\n"), "digits.csv line 3",
               "has no words", "2 texts have no tokens", "level: char")
    assert e.arg == "level"
    assert len(load("text_classes", {"path": str(tmp_path / "digits.csv"), "level": "char",
                                     "test_path": str(tmp_path / "digits.csv")}, ".").vocab) > 2
    e = raises(text_classes("nolabel.csv", "text,category\nhello,a\nfoo,b\n"), "has no column 'label'",
               "columns: text, category")
    assert e.arg == "label"
    raises(text_classes("blank.csv", "text,label\nhello,a\nfoo,\nbar,b\n"), "blank.csv line 3",
           "the label (column 'label') is missing")
    raises(text_classes("same.csv", "text,label\nhello,a\nfoo,b\n", label="text"), "same column")
    raises(text_classes("one.csv", "text,label\nhello,a\nfoo,a\nbar,a\n"), "one label", "two or more")
    raises(text_classes("badutf.csv", b"text,label\nhello w\xffrld,a\nfoo,b\n"), "not UTF-8", "line 2", "UTF-8")
    raises(text_classes("ragged.csv", "text,label\nhello, world,a\nfoo,b\n"), "line 2 has 3 fields", "quoted")
    raises(text_classes("field.csv", "text,label\n" + "a" * 200_000 + ",x\nfoo,y\n"), "field limit",
           "class folders")
    raises(text_classes("header.csv", "text,label\n"), "header but no data rows")
    raises(text_classes("nothing.csv", ""), "is empty")


def test_more_classes_than_the_bound_are_refused(tmp_path, monkeypatch):
    p = write_csv(tmp_path / "t.csv", [(f"text {c}", f"c{i}") for i, c in enumerate("abcdef")])
    monkeypatch.setenv("DLSPEC_MAX_CLASSES", "5")
    raises(lambda: load("text_classes", {"path": str(p)}, "."), "6 distinct labels", "at most 5 classes",
           "DLSPEC_MAX_CLASSES")
    monkeypatch.setenv("DLSPEC_MAX_CLASSES", "6")
    assert load("text_classes", {"path": str(p), "test_path": str(p)}, ".").num_classes == 6


def test_a_gigabyte_line_and_a_gigabyte_text_are_refused_unread(tmp_path):
    """Sparse files of 10^9 bytes: the CSV line bound stops the reader after 16 MiB, the text bound before a
    byte of the .txt file is read."""
    p = tmp_path / "line.csv"
    with open(p, "wb") as f:
        f.write(b"text,label\n")
        f.truncate(10**9)
    tracemalloc.start()
    try:
        raises(lambda: load("text_classes", {"path": str(p)}, "."), "line 2 is longer than 16,777,216 bytes",
               "class folders")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20
    d = make_folder(tmp_path / "d", {"a": ["one text"], "b": ["another text"]})
    with open(d / "b" / "huge.txt", "wb") as f:
        f.truncate(10**9)
    raises(lambda: load("text_classes", {"path": str(d)}, "."), "hold more than 268,435,456 bytes",
           "DLSPEC_MAX_TEXT_BYTES")


def test_fifos_and_folders_without_texts_are_refused(tmp_path):
    fifo = tmp_path / "fifo.csv"
    os.mkfifo(fifo)
    good = write_csv(tmp_path / "good.csv", CORPUS)
    raises(lambda: load("text_classes", {"path": str(fifo)}, "."), "is a FIFO (named pipe), not a file")
    e = raises(lambda: load("text_classes", {"path": str(good), "test_path": str(fifo)}, "."), "FIFO")
    assert e.arg == "test_path"
    (tmp_path / "none" / "a").mkdir(parents=True)
    raises(lambda: load("text_classes", {"path": str(tmp_path / "none")}, "."), "has no .txt files")
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "x.txt").write_text("no class folder")
    raises(lambda: load("text_classes", {"path": str(tmp_path / "flat")}, "."), "has no class folders")
    d = make_folder(tmp_path / "one", {"only": ["a text", "b text"]})
    raises(lambda: load("text_classes", {"path": str(d)}, "."), "one class folder", "two or more")
    raises(lambda: load("text_classes", {"path": str(tmp_path / "missing.csv")}, "."), "no such file")


def test_token_ids_beyond_memory_are_refused_before_allocation(tmp_path, monkeypatch):
    p = write_csv(tmp_path / "t.csv", CORPUS)
    monkeypatch.setenv("DLSPEC_MEMORY", "1M")
    e = raises(lambda: load("text_classes", {"path": str(p), "test_path": str(p), "max_length": 100_000}, "."),
               "token ids", "max_length")
    assert e.arg == "max_length"


# --- dlspec check and dlspec run ----------------------------------------------------------------------

SPEC = """\
name: Texts
input: {{shape: [T], dtype: long}}
layers:
  - Embedding: {{num_embeddings: 40, embedding_dim: 8}}
  - Mean: 1
  - Linear: 2
train:
  data: {{name: text_classes, path: {path}, test_path: {path}, max_length: 12}}
  epochs: 1
  batch_size: 2
"""


def test_check_is_torch_free_and_run_trains_and_saves_the_vocabulary(tmp_path):
    p = write_csv(tmp_path / "t.csv", CORPUS)
    spec = tmp_path / "texts.yaml"
    spec.write_text(SPEC.format(path=p))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    code = ("import sys; from dlspec.cli import main; rc = main(['check', sys.argv[1]]); "
            "assert 'torch' not in sys.modules, 'imported torch'; sys.exit(rc)")
    r = run_or_hang([sys.executable, "-c", code, str(spec)], env=env, cwd=str(tmp_path), capture_output=True,
                    text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    # a float input on token ids: refused at the input line, statically
    bad = tmp_path / "bad.yaml"
    bad.write_text(SPEC.format(path=p).replace("input: {shape: [T], dtype: long}", "input: [12]"))
    r = run_or_hang([sys.executable, "-c", code, str(bad)], env=env, cwd=str(tmp_path), capture_output=True,
                    text=True)
    assert r.returncode == 1 and "text_classes gives integer ids but the spec's input is float" in r.stdout
    r = run_or_hang([sys.executable, "-m", "dlspec", "run", str(spec), "--out", str(tmp_path / "runs"),
                     "--no-progress"], env=env, cwd=str(tmp_path), capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    summary = json.loads(next((tmp_path / "runs").rglob("summary.json")).read_text())
    assert summary["data"]["vocab"] == reference_vocab([t for t, _ in CORPUS], letters)
    assert summary["data"]["level"] == "word" and summary["data"]["max_length"] == 12


def test_the_csv_ids_circle_ends_at_text_classes(tmp_path):
    """A CSV and a spec of token ids: the help names the two ways that work (dtype: long, text_classes)."""
    p = tmp_path / "ids.csv"
    p.write_text("a,b,c,label\n1,2,3,0\n4,5,6,1\n7,8,9,0\n3,2,1,1\n6,5,4,0\n")
    spec = tmp_path / "ids.yaml"
    spec.write_text("input: {shape: [3], dtype: long}\nlayers:\n  - Embedding: {num_embeddings: 10, embedding_dim: 4}\n"
                    "  - Flatten\n  - Linear: 2\ntrain:\n  data: {name: csv, path: ids.csv, target: label}\n"
                    "  epochs: 1\n")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    r = run_or_hang([sys.executable, "-m", "dlspec", "check", str(spec)], env=env, cwd=str(tmp_path),
                    capture_output=True, text=True)
    assert r.returncode == 1 and "write `dtype: long` under train.data" in r.stdout and "text_classes" in r.stdout
    spec.write_text(spec.read_text().replace("target: label}", "target: label, dtype: long}"))
    r = run_or_hang([sys.executable, "-m", "dlspec", "run", str(spec), "--out", str(tmp_path / "runs"),
                     "--no-progress"], env=env, cwd=str(tmp_path), capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


# --- the shipped data set and its baseline ------------------------------------------------------------


def _module(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_reviews_csv_is_what_its_script_writes_and_its_labels_follow_the_rule():
    make = _module(REPO / "examples" / "make_reviews.py", "make_reviews")
    shipped = (REPO / "examples" / "reviews.csv").read_text(encoding="ascii")
    assert shipped == make.text() and len(shipped.encode()) < 1 << 20
    good, bad = set(make.GOOD + make.LIKE), set(make.BAD + make.HATE)
    for text, label in list(csv.reader(shipped.splitlines()))[1:200]:  # the rule, read back from the words
        clauses, score = 0, 0
        words = letters(text)
        for i, w in enumerate(words):
            if w in good or w in bad:
                negated = any(v in ("not", "never") for v in words[max(0, i - 3):i]
                              if not any(x in good | bad for x in words[words.index(v, max(0, i - 3)):i]))
                score += (1 if w in good else -1) * (-1 if negated else 1)
                clauses += 1
        assert clauses % 2 == 1 and label == ("positive" if score > 0 else "negative"), text


def test_bag_of_words_counts_are_the_counter_of_each_text(tmp_path):
    base = _module(REPO / "benchmarks" / "text_baseline.py", "text_baseline")
    p = write_csv(tmp_path / "t.csv", CORPUS)
    b = load("text_classes", {"path": str(p), "test_path": str(p)}, ".")
    s = b.train
    c = base.counts(s.x, s.get("lengths"), len(b.vocab), None)
    pairs = base.training_pairs(s.x, s.get("lengths"))
    c2 = base.counts(s.x, s.get("lengths"), len(b.vocab), pairs)
    for i, (text, _) in enumerate(CORPUS):
        words = letters(text)
        want = np.zeros(len(b.vocab))
        for w, k in Counter(words).items():
            want[b.vocab.index(w)] = k
        np.testing.assert_array_equal(c[i].numpy(), want)
        got_pairs = {(b.vocab[a], b.vocab[bb]): int(c2[i, len(b.vocab) + k]) for (a, bb), k in pairs.items()
                     if c2[i, len(b.vocab) + k]}
        assert got_pairs == dict(Counter(zip(words, words[1:], strict=False)))


def test_the_shipped_example_loads_as_documented():
    b = load("text_classes", {"path": str(REPO / "examples" / "reviews.csv"), "max_length": 64}, ".")
    assert b.classes == ["negative", "positive"] and len(b.train) == 6400 and len(b.test) == 1600
    assert b.info["cut"] == {"train": 0, "test": 0} and b.info["test_unknown_share"] == 0.0
    out = subprocess.run([sys.executable, "-c", "import sys, dlspec.data; print('torch' in sys.modules)"],
                         capture_output=True, text=True, cwd=str(REPO), check=True)
    assert out.stdout.strip() == "False"
