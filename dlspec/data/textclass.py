"""`text_classes`: texts with class labels, as token ids from a vocabulary built on the training split.

Two layouts: a CSV file with a text column and a label column, or a folder of class folders holding one text
per .txt file (torchvision's ImageFolder layout: FOLDER/<class>/<file>.txt).  Each text is cut into tokens

    level: word   the runs of letters (the regex [^\\W\\d_]+: word characters other than digits and _);
                  everything else (spaces, digits, punctuation) separates words and is dropped
    level: char   every character, spaces and punctuation included

after lower-casing when `lower` (str.lower).  The vocabulary is built from the training texts only: id 0 is
<pad>, id 1 is <unk>, then the tokens seen at least `min_freq` times, the most frequent first (ties in the
tokens' order), at most `max_vocab` ids in all.  A token the vocabulary does not have (a test word never
seen in training) is <unk>.  Each text keeps its first `max_length` tokens, right-padded with 0:

    x = tokens        (N, max_length) int64      fields: lengths       (N,) int64  tokens per text
    y = label         (N,) int64 class ids               padding_mask  (N, max_length) bool, True at padding
                                                         (torch's key_padding_mask convention)

`Split.batch` cuts tokens and padding_mask to the longest text of a batch.  numpy and torch are imported
inside the loader only: `dlspec check` stays torch-free.
"""

from __future__ import annotations

import math
import os
import re
import time
from collections import Counter
from collections.abc import Iterable
from typing import Any

from ..readers import CsvReader, ReadError, bound_words, bounds, is_number, one_line, read_text
from ..registry import Arg, Bool, Choice, Float, Int, OneOf, Optional_
from ..safeio import shown
from .base import Bundle, DataError, DataFacts, DatasetType, FieldFacts, Seed, register
from .common import (
    Text,
    check_memory,
    column_index,
    files_below,
    find_path,
    make_split,
    resolve,
    split_fraction,
    subset_indices,
)
from .files import Delimiter, max_classes

PAD, UNK = 0, 1
RESERVED = ["<pad>", "<unk>"]  # ids 0 and 1
WORD = re.compile(r"[^\W\d_]+")  # a run of letters
MAX_LENGTH = 1 << 20  # tokens a text keeps, at most (max_length's bound)
MAX_VOCAB = 1_000_000  # ids of a vocabulary, at most (max_vocab's bound)
TEXT_EXTENSIONS = (".txt",)
TEXT_BYTES_PER_BYTE = 4  # a text kept as a Python string, and its tokens while they are counted
ID_BYTES = 9  # per token slot: its int64 id and its bool padding flag
NAME = "text_classes"


# --- tokens and the vocabulary ------------------------------------------------------------------------


def tokenize(text: str, level: str, lower: bool) -> list[str]:
    """A text's tokens: its runs of letters (level word) or its characters (level char), lower-cased first."""
    if lower:
        text = text.lower()
    return WORD.findall(text) if level == "word" else list(text)


def build_vocab(counts: Counter[str], max_vocab: int, min_freq: int) -> list[str]:
    """The tokens by id: <pad>, <unk>, then those counted at least min_freq times, most frequent first (ties in
    the tokens' order), max_vocab in all."""
    kept = sorted((t for t, c in counts.items() if c >= min_freq), key=lambda t: (-counts[t], t))
    return RESERVED + kept[:max(0, max_vocab - len(RESERVED))]


def encode_texts(texts: list[str], vocab: list[str], level: str, lower: bool, max_length: int) -> tuple[Any, Any]:
    """(ids (N, max_length) int64 right-padded with <pad> = 0, lengths (N,) int64): each text's first
    max_length tokens, a token the vocabulary lacks as <unk> = 1."""
    import numpy as np

    index = {t: i for i, t in enumerate(vocab)}
    ids = np.zeros((len(texts), max_length), dtype=np.int64)
    lengths = np.zeros(len(texts), dtype=np.int64)
    for i, text in enumerate(texts):
        row = [index.get(t, UNK) for t in tokenize(text, level, lower)[:max_length]]
        ids[i, :len(row)] = row
        lengths[i] = len(row)
    return ids, lengths


def padding_mask(lengths: Any, max_length: int) -> Any:
    """(N, max_length) bool, True at the padding: torch's key_padding_mask convention."""
    import numpy as np

    return np.arange(max_length)[None, :] >= np.asarray(lengths)[:, None]


# --- reading ------------------------------------------------------------------------------------------


class Samples:
    """The texts of one split, their label cells, and where each is: its file and its line (None for a whole
    file); lists of plain values, so that a text costs little more than its characters."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.labels: list[str] = []
        self.files: list[str] = []  # (a CSV file's rows share one string)
        self.lines: list[int | None] = []

    def __len__(self) -> int:
        return len(self.texts)

    def take(self, index: Iterable[int]) -> Samples:
        out = Samples()
        for i in index:
            out.texts.append(self.texts[i])
            out.labels.append(self.labels[i])
            out.files.append(self.files[i])
            out.lines.append(self.lines[i])
        return out

    def at(self, i: int) -> str:
        path, line = self.files[i], self.lines[i]
        return f"{shown(path)} line {line}" if line is not None else shown(path)


def _read_error(e: ReadError, arg: str) -> DataError:
    if "CSV line" in str(e) or "field limit" in str(e):  # the fixed bounds of a CSV line and field: a long text
        return DataError(str(e), arg=arg, help="a text in a CSV file is at most 131,072 characters: put longer texts "
                         "one per file in class folders (FOLDER/<class>/<file>.txt)")
    helps = {"encoding": "save the file as UTF-8 (plain ASCII is UTF-8)",
             "ragged": "every row needs the same columns: is the delimiter right? (a text holding the delimiter "
                       "must be quoted, \"like, this\")",
             "bound": "the file is damaged, or larger than meant: raise the bound if it is not (docs/limits.md)",
             "memory": "use a smaller file, or a machine with more memory"}
    return DataError(str(e), arg=arg, help=helps.get(e.kind))


def _read_csv(path: str, a: dict[str, Any], arg: str) -> tuple[Samples, str, str]:
    """A CSV file's texts and labels (and the two columns' names), streamed by readers.CsvReader within its
    bounds; a missing label is refused at its line."""
    header = a["header"] if a["header"] != "auto" else isinstance(a["text"], str) or isinstance(a["label"], str)
    out = Samples()
    try:
        with CsvReader(path, a["delimiter"]) as reader:
            head = reader.head
            names = head[0][1] if header else None
            if header and len(head) == 1:
                raise DataError(f"{shown(path)} has a header but no data rows", arg=arg)
            t = column_index(shown(path), names, a["text"], reader.width, "text")
            lab = column_index(shown(path), names, a["label"], reader.width, "label")
            if t == lab:
                raise DataError(f"text and label are the same column ({a['text']!r}) of {shown(path)}", arg="label",
                                help="the label is a column of its own: the class of each text")
            rows = reader.rows()
            if header:
                next(rows)
            seen: dict[str, str] = {}
            for line, r in rows:
                label = r[lab].strip()
                if not label:
                    raise DataError(f"{shown(path)} line {line}: the label (column {_col(names, lab)}) is missing",
                                    arg="label", help="give every row a label, or remove the row")
                out.texts.append(r[t].strip())
                out.labels.append(seen.setdefault(label, label))  # one string per distinct label
                out.files.append(path)
                out.lines.append(line)
    except ReadError as e:
        raise _read_error(e, arg) from None
    if not out:
        raise DataError(f"{shown(path)} has no data rows", arg=arg)
    return out, names[t] if names else str(t), names[lab] if names else str(lab)


def _col(names: list[str] | None, j: int) -> str:
    return repr(names[j]) if names else str(j)


def _class_folders(folder: str, arg: str) -> list[str]:
    try:
        return sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))
    except PermissionError:
        raise DataError(f"{NAME}: permission denied: cannot read the folder '{shown(folder)}'", arg=arg,
                        help="give this user read and enter permission (chmod u+rx), or use a copy it can read") from None
    except OSError as e:
        raise DataError(f"{NAME}: cannot read the folder '{shown(folder)}' ({e.strerror or e})", arg=arg) from None


def _scan_folder(folder: str, classes: list[str] | None, arg: str) -> tuple[list[str], list[tuple[str, str]]]:
    """The class folders (sorted; hidden ones left out) and (file, class) of every .txt file below them:
    regular files only (a FIFO named x.txt is skipped), within the folder-files bound."""
    found = _class_folders(folder, arg)
    if classes is None:
        classes = found
        if not classes:
            raise DataError(f"'{shown(folder)}' has no class folders", arg=arg,
                            help=f"{NAME} reads FOLDER/<class>/<text>.txt, or a CSV file")
    else:
        extra = [c for c in found if c not in classes]
        if extra:
            raise DataError(f"'{shown(folder)}' has classes the training folder lacks: "
                            f"{', '.join(shown(c) for c in extra[:10])}", arg=arg)
    files: list[tuple[str, str]] = []
    for c in classes:
        d = os.path.join(folder, c)
        if os.path.isdir(d):
            files += [(p, c) for p in files_below(d, folder, len(files), TEXT_EXTENSIONS, NAME, "text files")]
    if not files:
        raise DataError(f"'{shown(folder)}' has no .txt files in its class folders", arg=arg,
                        help=f"{NAME} reads FOLDER/<class>/<text>.txt, one text per file (UTF-8)")
    return classes, files


def _read_files(files: list[tuple[str, str]], folder: str, arg: str) -> Samples:
    """Each file one text (UTF-8), their bytes together at most the text bound, counted before one is read."""
    limit = bounds().text_bytes
    total = 0
    for p, _ in files:
        try:
            total += os.stat(p).st_size
        except OSError:
            continue
        if total > limit:
            raise DataError(f"the texts of '{shown(folder)}' hold more than {limit:,} bytes, "
                            + bound_words("text_bytes", "the texts of a data set"), arg=arg,
                            help="use fewer or shorter texts, or raise the bound")
    check_memory(NAME, TEXT_BYTES_PER_BYTE * total, f"reading {len(files):,} texts ({total:,} bytes)", arg,
                 "use fewer texts")
    out = Samples()
    for p, c in files:
        try:
            out.texts.append(read_text(p).strip())
        except ReadError as e:
            raise _read_error(e, arg) from None
        out.labels.append(c)
        out.files.append(p)
        out.lines.append(None)
    return out


def _csv_size(path: str, arg: str) -> None:
    try:
        size = os.path.getsize(path)
    except OSError:
        return
    check_memory(NAME, TEXT_BYTES_PER_BYTE * min(size, bounds().csv_bytes), f"reading {shown(path)} ({size:,} bytes)",
                 arg, "use a smaller file")


def _find(path: str, root: str, what: str, arg: str) -> str:
    """A CSV file or a folder: whichever the first candidate that exists is (the working directory, then the root)."""
    p = os.path.expanduser(path)
    for c in [p] if os.path.isabs(p) else [p, os.path.join(root, p)]:
        if os.path.isdir(c):
            return find_path(path, root, what, arg, folder=True)
        if os.path.lexists(c):
            break
    return find_path(path, root, what, arg)


def _classes(path: str, train: Samples, test: Samples) -> list[str]:
    """The class names of a CSV's labels: numbers sorted by value (labels 0 .. K-1 keep their ids), else the
    labels sorted as text; within the class bound, and at least two."""
    every = set(train.labels) | set(test.labels)
    most = max_classes()
    if len(every) > most:
        raise DataError(f"{shown(path)}: the label column has {len(every):,} distinct labels; at most {most:,} classes "
                        "are read",
                        arg="label", help="is it the right column? (DLSPEC_MAX_CLASSES=N raises the bound)")
    if all(is_number(v) and math.isfinite(float(v)) for v in every):
        return sorted(every, key=lambda v: (float(v), v))
    return sorted(every)


def _no_tokens(empty: list[tuple[Samples, int]], level: str) -> DataError:
    """The refusal of the texts that have no tokens (an empty text; at level word, one without letters): in a
    model they would be nothing but padding.  The first in the files is named, and how many there are."""
    s, i = min(empty, key=lambda e: (e[0].files[e[1]], e[0].lines[e[1]] or 0))
    what = "is empty" if not s.texts[i] else f"has no words (runs of letters): {one_line(repr(s.texts[i]), 60)}"
    more = f" ({len(empty):,} texts have no tokens)" if len(empty) > 1 else ""
    return DataError(f"{s.at(i)}: the text {what}{more}", arg="level" if s.texts[i] else "text",
                     help="remove the texts without tokens" + (", or use level: char" if level == "word" and s.texts[i]
                                                              else ""))


def _count(train: Samples, test: Samples, level: str, lower: bool, length: int
           ) -> tuple[Counter[str], dict[str, int], dict[str, int]]:
    """One pass over the texts: the training tokens counted, each split's longest text and the texts longer
    than max_length; a DataError for the texts without tokens."""
    counts: Counter[str] = Counter()
    longest = {"train": 0, "test": 0}
    cut = {"train": 0, "test": 0}
    empty: list[tuple[Samples, int]] = []
    for split, s in (("train", train), ("test", test)):
        for i, text in enumerate(s.texts):
            tokens = tokenize(text, level, lower)
            if not tokens:
                empty.append((s, i))
            if split == "train":
                counts.update(tokens)
            longest[split] = max(longest[split], len(tokens))
            cut[split] += len(tokens) > length
    if empty:
        raise _no_tokens(empty, level)
    return counts, longest, cut


# --- the loader ---------------------------------------------------------------------------------------


def _folder_layout(path: str, a: dict[str, Any], root: str) -> tuple[Samples, Samples | None, list[str], str]:
    """(training texts, test texts or None, classes, where the split comes from) of a folder of class folders:
    FOLDER/train/ and FOLDER/test/, FOLDER and test_path, or FOLDER alone (test_fraction)."""
    if a["test_path"]:
        train_dir, test_dir = path, find_path(a["test_path"], root, f"{NAME} test_path", "test_path", folder=True)
    elif os.path.isdir(os.path.join(path, "train")) and os.path.isdir(os.path.join(path, "test")):
        train_dir, test_dir = os.path.join(path, "train"), os.path.join(path, "test")
    else:
        train_dir, test_dir = path, None
    classes, train_files = _scan_folder(train_dir, None, "path")
    test_files = _scan_folder(test_dir, classes, "test_path")[1] if test_dir is not None else []
    if len(classes) < 2:
        raise DataError(f"'{shown(train_dir)}' has one class folder ({shown(classes[0])}): a classifier needs two "
                        "or more", arg="path")
    if len(classes) > max_classes():
        raise DataError(f"'{shown(train_dir)}' has {len(classes):,} class folders; at most {max_classes():,} "
                        "classes are read", arg="path", help="DLSPEC_MAX_CLASSES=N raises the bound")
    train = _read_files(train_files, train_dir, "path")
    if test_dir is None:
        return train, None, classes, ""
    return train, _read_files(test_files, test_dir, "test_path"), classes, \
        f"train {os.path.abspath(train_dir)}, test {os.path.abspath(test_dir)}"


def _csv_layout(path: str, a: dict[str, Any], root: str) -> tuple[Samples, Samples | None, dict[str, str], str]:
    """(training texts, test texts or None, the text and label columns' names, where the split comes from) of
    a CSV file, and of test_path when given."""
    _csv_size(path, "path")
    train, text, label = _read_csv(path, a, "path")
    if not a["test_path"]:
        return train, None, {"text": text, "label": label}, ""
    tpath = find_path(a["test_path"], root, f"{NAME} test_path", "test_path")
    _csv_size(tpath, "test_path")
    return train, _read_csv(tpath, a, "test_path")[0], {"text": text, "label": label}, \
        f"test rows from {os.path.abspath(tpath)}"


def _load_text_classes(args: dict[str, Any], root: str) -> Bundle:
    import numpy as np

    t0 = time.perf_counter()
    a = resolve(NAME, args)
    path = _find(a["path"], root, NAME, "path")
    layout = "folder" if os.path.isdir(path) else "csv"
    columns: dict[str, str] = {}
    if layout == "folder":
        train, test, classes, split = _folder_layout(path, a, root)
    else:
        train, test, columns, split = _csv_layout(path, a, root)
    if test is None:
        tr, te = split_fraction(NAME, len(train), a["test_fraction"], a["seed"], f"'{shown(path)}'")
        train, test = train.take(int(i) for i in tr), train.take(int(i) for i in te)
        split = f"{len(te)} of {len(tr) + len(te)} texts held out for testing (test_fraction {a['test_fraction']}, " \
                f"seed {a['seed']})"
    if layout == "csv":  # the labels of both parts
        classes = _classes(path, train, test)
        if len(classes) < 2:
            raise DataError(f"{shown(path)} has one label ({shown(classes[0])}): a classifier needs two or more",
                            arg="label", help="is it the right column?")
    itr, ite = subset_indices(NAME, len(train), len(test), a["subset"], a["seed"])
    if itr is not None:
        train = train.take(int(i) for i in itr)
    if ite is not None:
        test = test.take(int(i) for i in ite)
    level, lower, length = a["level"], a["lower"], a["max_length"]
    counts, longest, cut = _count(train, test, level, lower, length)
    vocab = build_vocab(counts, a["max_vocab"], a["min_freq"])
    n = len(train) + len(test)
    check_memory(NAME, ID_BYTES * n * length, f"{n:,} texts of {length:,} token ids (int64) and their padding mask",
                 "max_length", "use a smaller max_length, or a subset")
    index = {c: i for i, c in enumerate(classes)}
    arrays = []
    for s in (train, test):
        ids, lengths = encode_texts(s.texts, vocab, level, lower, length)
        labels = np.array([index[c] for c in s.labels], dtype=np.int64)
        arrays.append((ids, labels, lengths))
    (xtr, ytr, ltr), (xte, yte, lte) = arrays
    known = int(lte.sum())
    unknown = int((xte == UNK).sum())
    info = {("folder" if layout == "folder" else "file"): os.path.abspath(path), **columns, "split": split,
            "level": level, "lower": lower, "max_length": length, "min_freq": a["min_freq"], "max_vocab": a["max_vocab"],
            "vocab_size": len(vocab), "distinct_training_tokens": len(counts), "longest": longest, "cut": cut,
            "test_unknown_share": round(unknown / known, 6) if known else 0.0, "subset": a["subset"],
            "seconds": round(time.perf_counter() - t0, 3), "vocab": vocab}

    def split_of(x: Any, y: Any, lengths: Any) -> Any:
        return make_split(x, y, {"lengths": lengths, "padding_mask": padding_mask(lengths, length)},
                          {"tokens": "x", "label": "y"}, ("x", "padding_mask"))

    return Bundle(NAME, split_of(xtr, ytr, ltr), split_of(xte, yte, lte), task="classification",
                  num_classes=len(classes), classes=[str(c) for c in classes], vocab=vocab, info=info)


def _facts(a: dict[str, Any]) -> DataFacts:
    """Every shape is fixed by max_length; the vocabulary and the classes are known once the texts are read."""
    length = a["max_length"]
    fields = {
        "tokens": FieldFacts((length,), "long", "x", True, "token ids, right-padded with 0 (<pad>); as x"),
        "lengths": FieldFacts((), "long", None, False, "the tokens of each text (at most max_length)"),
        "padding_mask": FieldFacts((length,), "bool", None, True, "True at padding (torch's key_padding_mask)"),
        "label": FieldFacts((), "long", "y", False, "the class id; as y"),
    }
    return DataFacts(NAME, (length,), "long", (), "long", "classification", None, False, fields)


register(DatasetType(
    NAME,
    {
        "path": Arg(Text(), doc="a CSV file (a text and a label column), or a folder of class folders of .txt files "
                                "(FOLDER/<class>/<file>.txt; with train/ and test/ inside, those)"),
        "test_path": Arg(Optional_(Text()), None, doc="the test texts: a CSV file, or a folder of class folders, as "
                                                      "path is"),
        "test_fraction": Arg(Float(0.0, 1.0, open_min=True), 0.2,
                             doc="without a test part: hold out this part of the texts (seeded)"),
        "text": Arg(OneOf(Text(), Int()), "text", doc="CSV: the text column, a name (in the header row) or an index "
                                                      "(0-based, -1 = last)"),
        "label": Arg(OneOf(Text(), Int()), "label", doc="CSV: the label column, a name or an index"),
        "header": Arg(OneOf(Choice("auto"), Bool()), "auto",
                      doc="CSV: whether the first row names the columns (auto: when text or label is a name)"),
        "delimiter": Arg(Delimiter(), ",", doc="CSV: the field delimiter"),
        "level": Arg(Choice("word", "char"), "word", doc="word: runs of letters; char: every character"),
        "lower": Arg(Bool(), True, doc="lower-case the texts before they are cut into tokens"),
        "max_length": Arg(Int(1, MAX_LENGTH), 256, doc="tokens kept of each text (the first ones); x is (N, max_length)"),
        "max_vocab": Arg(Int(3, MAX_VOCAB), 20_000, doc="ids in the vocabulary, <pad> and <unk> included"),
        "min_freq": Arg(Int(1), 1, doc="a token enters the vocabulary when the training texts hold it this often"),
        "seed": Seed(0, doc="seed for test_fraction and subset (the data's own seed; train.seed does not change it)"),
    },
    _load_text_classes,
    facts=_facts,
    doc="text classification: texts and labels from a CSV file or class folders of .txt files; x (N, max_length) "
        "token ids from a vocabulary of the training texts, fields lengths and padding_mask"))
