"""The quick top-level test must agree with the JSON Schema it stands in for (jsonschema is the reference).

Documents start valid and get zero to three random mutations, so both sides of every rule are exercised.
"""

from __future__ import annotations

import jsonschema
from hypothesis import given, settings
from hypothesis import strategies as st

from dlspec.schema import BODY_KEYS, SPEC_SCHEMA, quick_valid

VALIDATOR = jsonschema.Draft202012Validator(SPEC_SCHEMA)

junk = st.one_of(st.none(), st.booleans(), st.integers(-2, 30), st.floats(allow_nan=False, width=16),
                 st.sampled_from(["T", "", "a b", "9a", "long", "1@28x28"]), st.just([]), st.just({}),
                 st.lists(st.integers(-1, 3), max_size=2), st.dictionaries(st.sampled_from(["a", "shape"]),
                                                                           st.integers(), max_size=2))
good_dim = st.one_of(st.integers(1, 30), st.sampled_from(["T", "L", "_x"]))
good_shape = st.lists(good_dim, min_size=1, max_size=4)
good_input = st.one_of(good_shape, st.just("1@28x28"),
                       st.fixed_dictionaries({"shape": good_shape},
                                             optional={"dtype": st.sampled_from(["long", "float", "int64"])}))
good_doc = st.fixed_dictionaries(
    {"input": good_input, "layers": st.lists(st.one_of(st.just("ReLU"), junk), min_size=1, max_size=3)},
    optional={"name": st.text(max_size=5), "description": st.text(max_size=5),
              "blocks": st.dictionaries(st.sampled_from(["a", "b"]), st.lists(junk, min_size=1, max_size=2), max_size=2),
              "train": st.dictionaries(st.sampled_from(["epochs", "x"]), junk, max_size=2)})


@st.composite
def mutate(draw, doc):
    doc = dict(doc)
    for _ in range(draw(st.integers(0, 3))):
        where = draw(st.sampled_from(["drop", "top", "input", "input.shape", "input.dtype", "input.extra",
                                      "dim", "blocks", "layers", "networks"]))
        if where == "drop" and doc:
            doc.pop(draw(st.sampled_from(sorted(doc))))
        elif where == "top":
            doc[draw(st.sampled_from(["name", "description", "layers", "blocks", "train", "extra", "input",
                                      "networks"]))] = draw(junk)
        elif where.startswith("input") and isinstance(doc.get("input"), dict):
            key = where.split(".", 1)[1] if "." in where else "shape"
            doc["input"] = {**doc["input"], key: draw(junk)}
        elif where == "input":
            doc["input"] = draw(junk)
        elif where == "dim" and isinstance(doc.get("input"), list):
            doc["input"] = doc["input"] + [draw(junk)]
        elif where == "blocks":
            doc["blocks"] = {"a": draw(junk)}
        elif where == "layers":
            doc["layers"] = draw(junk)
        elif where == "networks":  # several networks: the top-level body moved into one, or left beside it
            doc["networks"] = draw(st.dictionaries(st.sampled_from(["g", "d"]), st.one_of(junk, st.just(
                {"input": [4], "layers": ["ReLU"]})), max_size=2))
            for k in BODY_KEYS if draw(st.booleans()) else ():
                doc.pop(k, None)
    return doc


@settings(max_examples=1500, deadline=None, derandomize=True)
@given(good_doc.flatmap(mutate))
def test_quick_check_agrees_with_the_json_schema(doc):
    assert quick_valid(doc) == VALIDATOR.is_valid(doc), doc


def test_a_real_spec_passes_both():
    doc = {"name": "x", "input": [1, 28, 28], "layers": ["ReLU"], "blocks": {"b": ["ReLU"]}, "train": {}}
    assert quick_valid(doc) and VALIDATOR.is_valid(doc)
