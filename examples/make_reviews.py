"""Write examples/reviews.csv: short made-up restaurant and hotel reviews, each labelled positive or negative.

    python examples/make_reviews.py            # rewrites examples/reviews.csv (the same bytes every time)

A review is 1, 3 or 5 clauses about aspects of a stay ("the food was not very good", "i loved the view",
"a terrible wine list"), joined with "and", "but", commas or semicolons, sometimes after an opener ("honestly,").
Each clause is positive or negative: its adjective's or verb's sentiment, turned over by a "not" or "never"
in front of it.  The review's label is the sentiment of most of its clauses (an odd number: never a tie).

Why it is made this way: the words alone do not tell the label.  "the food was good, the room was not
bad and the staff were rude" and "the food was not good, the room was bad and the staff were rude" hold
the same words but for where the "not" stands, and their labels differ; a bag of words cannot see which
adjective a "not" belongs to, a model that reads the order can.  So the data set measures what reading
the order (with a padding mask, since the reviews differ in length) adds over counting words.

Deterministic: a seeded random.Random, nothing else; the file is plain ASCII, "text,label" rows.
"""

from __future__ import annotations

import csv
import io
import os
import random
import sys

SEED = 23
REVIEWS = 8_000

ASPECTS = ["food", "service", "staff", "room", "view", "price", "music", "wine", "bed", "location", "breakfast",
           "pool", "menu", "waiter", "coffee", "bathroom", "garden", "dessert", "lobby", "parking"]
GOOD = ["good", "great", "lovely", "excellent", "friendly", "clean", "delicious", "fantastic", "pleasant",
        "superb", "charming", "fresh", "perfect", "wonderful", "cosy"]
BAD = ["bad", "awful", "terrible", "rude", "dirty", "bland", "noisy", "poor", "horrible", "disappointing",
       "cold", "stale", "slow", "dreadful", "cramped"]
LIKE = ["loved", "liked", "enjoyed", "adored", "appreciated"]
HATE = ["hated", "disliked", "regretted", "loathed", "resented"]
VERY = ["", "", "", "very ", "really ", "quite ", "truly ", "rather "]
OPENERS = ["", "", "", "honestly, ", "overall, ", "i think ", "to be fair, ", "well, ", "in short, "]
JOINS = [" and ", " but ", ", ", "; ", " and ", ", and "]


def clause(rng: random.Random) -> tuple[str, int]:
    """One clause and its sentiment (+1 or -1)."""
    aspect = rng.choice(ASPECTS)
    good = rng.random() < 0.5
    negated = rng.random() < 0.25
    form = rng.randrange(3)
    if form == 0:  # the food was (not) (very) good
        be = "were" if aspect in ("staff",) else "was"
        text = f"the {aspect} {be} {'not ' if negated else ''}{rng.choice(VERY)}{rng.choice(GOOD if good else BAD)}"
    elif form == 1:  # i (never) loved the food
        verb = rng.choice(LIKE if good else HATE)
        text = f"i {'never ' if negated else ''}{verb} the {aspect}"
    else:  # (not) a (very) good food
        text = f"{'not ' if negated else ''}a {rng.choice(VERY)}{rng.choice(GOOD if good else BAD)} {aspect}"
    return text, (1 if good else -1) * (-1 if negated else 1)


def review(rng: random.Random) -> tuple[str, str]:
    n = rng.choices([1, 3, 5], weights=[2, 5, 3])[0]
    parts = [clause(rng) for _ in range(n)]
    text = parts[0][0]
    for t, _ in parts[1:]:
        text += rng.choice(JOINS) + t
    text = rng.choice(OPENERS) + text + rng.choice([".", ".", "!", ""])
    return text, "positive" if sum(s for _, s in parts) > 0 else "negative"


def rows(n: int = REVIEWS, seed: int = SEED) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    return [review(rng) for _ in range(n)]


def text(n: int = REVIEWS, seed: int = SEED) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["text", "label"])
    w.writerows(rows(n, seed))
    return out.getvalue()


if __name__ == "__main__":
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "reviews.csv")
    data = text()
    with open(path, "w", encoding="ascii", newline="") as f:
        f.write(data)
    print(f"wrote {path}: {REVIEWS:,} reviews, {len(data):,} bytes", file=sys.stderr)
