"""`dlspec schema`: the JSON Schema for editors accepts every spec the checker accepts, and rejects unknown names.

The schema is generated from the registries, so these tests also fail when a new layer, option, data set,
task or argument kind is not covered by it.
"""

from __future__ import annotations

import copy
import glob
import json
import os
import re
import subprocess
import sys

import jsonschema
import pytest

from dlspec import codes, editor_schema
from dlspec.data import DATASETS
from dlspec.registry import REGISTRY
from dlspec.schema import SPEC_SCHEMA
from dlspec.source import read
from dlspec.tasks import TASKS
from dlspec.trainspec import TRAIN_ARGS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCHEMA = editor_schema.json_schema()
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
SPECS = sorted(glob.glob(os.path.join(ROOT, "specs", "**", "*.yaml"), recursive=True))
GOOD = [p for p in SPECS if os.sep + "errors" + os.sep not in p]
ERRORS = [p for p in SPECS if os.sep + "errors" + os.sep in p]
NAME_CODES = {codes.UNKNOWN_LAYER, codes.UNKNOWN_ARGUMENT}


def _codes(path: str) -> set[str]:
    with open(path, encoding="utf-8") as f:
        found = re.findall(r"# error: *([\w, -]+)", f.read())
    return {c.strip() for line in found for c in line.split(",")}


def valid(doc: object) -> bool:
    return VALIDATOR.is_valid(doc)


def test_is_a_draft_2020_12_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"


@pytest.mark.parametrize("path", GOOD, ids=lambda p: os.path.relpath(p, ROOT))
def test_every_spec_validates(path: str) -> None:
    doc = read(path)
    assert not doc.diagnostics
    errors = [f"{list(e.absolute_path)}: {e.message[:200]}" for e in VALIDATOR.iter_errors(doc.data)]
    assert not errors


def test_the_specs_include_zoo_networks_and_blocks() -> None:
    names = {os.path.relpath(p, ROOT) for p in GOOD}
    assert "specs/dcgan.yaml" in names and any(n.startswith("specs/zoo/") for n in names)
    assert any("blocks" in (read(p).data or {}) for p in GOOD)


@pytest.mark.parametrize("path", [p for p in ERRORS if _codes(p) & NAME_CODES],
                         ids=lambda p: os.path.relpath(p, ROOT))
def test_error_specs_with_unknown_names_fail(path: str) -> None:
    doc = read(path)
    assert not valid(doc.data)


def test_some_error_specs_have_unknown_names() -> None:
    assert len([p for p in ERRORS if _codes(p) & NAME_CODES]) >= 3


BASE = {"input": [1, 28, 28], "layers": ["Flatten", {"Linear": {"out_features": 10}}],
        "train": {"data": {"name": "mnist"}, "epochs": 2}}


def _with(**changes: object) -> dict:
    doc = copy.deepcopy(BASE)
    doc.update(changes)
    return doc


def _train(**changes: object) -> dict:
    doc = copy.deepcopy(BASE)
    doc["train"].update(changes)
    return doc


def test_base_document_is_valid() -> None:
    assert valid(BASE)


@pytest.mark.parametrize("doc", [
    _with(layers=[{"Linear": {"out_features": 10, "units": 3}}]),  # unknown argument
    _with(layers=[{"Linear": {"out_featurs": 10}}]),
    _with(layers=[{"relu": {"inplac": True}}]),  # a type in another case is still checked
    _with(layers=[{"Linear": {"out_features": "ten"}}]),  # wrong types for an integer argument
    _with(layers=[{"Linear": {"out_features": 1.5}}]),
    _with(layers=[{"Linear": {"out_features": True}}]),
    _with(layers=[{"Linear": {"out_features": 0}}]),  # below its minimum
    _with(layers=[{"Linear": "ten"}]),  # a bare value of the wrong kind
    _with(layers=[{"Linear": {}}]),  # a required argument missing
    _with(layers=["Lineer"]),  # unknown layer types (capitalised: not a block)
    _with(layers=[{"Dense": 10}]),
    _with(layers=[{"Conv2d": None, "out_channels": 8}]),  # arguments at the name's indent
    _with(layers=[{"Linear": 10, "ReLU": None}]),  # two layer names
    _with(layers=[{"name": "x"}]),  # no layer name
    _with(layers=[{"Linear": 10, "repeat": 0}]),
    _with(layers=[{"Linear": 10, "expect": {"a": 1}}]),
    _with(layers=[]),
    _with(input=[0, 28]),
    _with(blocks={"Stage": ["ReLU"]}),  # block names: lower case here
    _with(blocks={"stage": {"layers": [{"Linear": {"out_featurs": 3}}]}}),
    _with(extra=1),
    _train(epoch=3),  # unknown train option
    _train(epochs="3"),
    _train(batch_size=0),
    _train(data={"name": "mnist", "subsett": {"train": 10}}),  # unknown dataset option
    _train(data={"name": "mnist", "subset": {"train": 0}}),
    _train(data={"name": "mnistt"}),
    _train(data="nonesuch"),
    _train(task={"reconstruction": {"nois": 0.3}}),  # unknown task option
    _train(task="nonesuch"),
    _train(device="gpu"),
    _train(metrics=["accuracy", "f1"]),
    {"layers": ["ReLU"]},  # no input
    {"input": [3], "inputs": {"a": [3]}, "layers": ["ReLU"]},
    {"networks": {"g": {"input": [3], "layers": ["ReLU"]}}, "layers": ["ReLU"]},
    {"networks": {"g": {"input": [3], "layers": [{"Linear": {"bogus": 1}}]}}},
    {"networks": {"g": {"input": [3], "layers": ["ReLU"], "train": {}}}},
], ids=lambda d: json.dumps(d)[:90])
def test_invalid_documents_fail(doc: dict) -> None:
    assert not valid(doc)


@pytest.mark.parametrize("doc", [
    _with(layers=["flatten", {"linear": 10}, {"ReLU": None}]),  # the checker's case-insensitive names
    _with(layers=[{"Linear": 10, "name": "fc", "expect": [10], "repeat": 2}, {"Linear": {"out_features": 5,
                                                                                      "in_features": None}}]),
    _with(input=["T", 28], layers=[{"LSTM": {"hidden_size": 8, "batch_first": True}, "expect": ["T", 8]}]),
    _with(input="1@28x28"),
    _with(input={"shape": ["T"], "dtype": "long"}, layers=[{"Embedding": {"num_embeddings": 10,
                                                                          "embedding_dim": 4}}]),
    _with(blocks={"stage": {"args": {"width": 8, "k": None}, "layers": [
        {"Conv2d": {"out_channels": "width * 2", "kernel_size": "k"}}, "ReLU"]}},
          layers=[{"stage": {"k": 3}, "repeat": 2}, "stage", {"stage": 5}, "Flatten", {"Linear": 10}]),
    _with(layers=[{"Linear": 10, "name": "a"}, {"Linear": 10, "name": "b"}, {"Add": ["a", "b"]},
                  {"Add": None, "from": [-1, "a"]}, {"Add": {"from": ["a", -2]}}]),
    _with(layers=[{"Residual": {"body": [{"Conv2d": {"out_channels": 1, "kernel_size": 3, "padding": 1}}]}},
                  {"Conv2d": {"out_channels": 4, "kernel_size": [3, 3], "padding": "same"}}]),
    _train(data="mnist", task={"reconstruction": {"noise": 0.3}}, optimizer={"SGD": {"lr": 0.1}},
           scheduler="StepLR", device="cuda:1", metrics="accuracy", early_stopping={"metric": "val_loss"}),
    _train(task=None, loss=None, data={"name": "mnist", "subset": {"train": 10, "test": 5}}),
    {"networks": {"g": {"input": [3], "layers": ["ReLU"]}, "d": {"inputs": {"x": [3]}, "layers": ["ReLU"]}}},
], ids=lambda d: json.dumps(d)[:90])
def test_valid_documents_pass(doc: dict) -> None:
    errors = [f"{list(e.absolute_path)}: {e.message[:200]}" for e in VALIDATOR.iter_errors(doc)]
    assert not errors


def test_a_misspelt_lower_case_name_reads_as_a_block() -> None:
    """The limitation the docs state: a lower-case name is a block use, which a static schema cannot know."""
    assert valid(_with(layers=["lineer"]))


def test_covers_every_layer_and_option() -> None:
    defs = SCHEMA["$defs"]
    for name, entry in REGISTRY.items():
        for prefix in ("layer.", "blockLayer."):
            mapping = defs[prefix + name]["anyOf"][0]
            assert set(mapping["properties"]) == set(entry.args) | {"from"}, name
            assert mapping["additionalProperties"] is False
        assert name in defs["layer"]["anyOf"][0]["enum"]
        assert name in defs["layer"]["anyOf"][3]["properties"]
        assert valid(_with(layers=[{name: {"no_such_argument": 1}}])) is False
        assert {k: a.doc for k, a in entry.args.items() if a.doc} == {
            k: a.doc for k, a in entry.args.items() if a.doc and a.doc in defs["layer." + name]["anyOf"][0][
                "properties"][k]["description"]}
    train = defs["train"]["properties"]
    assert set(train) == set(TRAIN_ARGS)
    for name, a in TRAIN_ARGS.items():
        assert a.kind.text[1:] in train[name]["description"], name
    datasets = train["data"]["anyOf"][1]["allOf"]
    assert [d["if"]["properties"]["name"]["const"] for d in datasets] == sorted(DATASETS)
    for d in datasets:
        entry = DATASETS[d["if"]["properties"]["name"]["const"]]
        assert set(d["then"]["properties"]) == set(entry.args) | {"name"}
    assert set(train["task"]["anyOf"][2]["properties"]) == set(TASKS)
    assert set(SCHEMA["properties"]) == set(SPEC_SCHEMA["properties"])


def test_every_argument_kind_is_known() -> None:
    tables = [e.args for e in REGISTRY.values()] + [e.args for e in DATASETS.values()] + \
        [e.args for e in TASKS.values()] + [TRAIN_ARGS]
    unknown = {type(a.kind).__name__ for t in tables for a in t.values() if not editor_schema.known_kind(a.kind)}
    assert not unknown, f"add these kinds to dlspec/editor_schema.py: {sorted(unknown)}"


def test_defaults_and_descriptions_for_hover() -> None:
    linear = SCHEMA["$defs"]["layer.Linear"]["anyOf"][0]["properties"]
    assert linear["bias"]["default"] is True and "Default: true" in linear["bias"]["description"]
    assert "Required" in linear["out_features"]["description"]
    assert "Inferred" in linear["in_features"]["description"]
    assert SCHEMA["$defs"]["train"]["properties"]["epochs"]["default"] == TRAIN_ARGS["epochs"].default


def test_command_line_output_is_deterministic_and_torch_free(tmp_path: object) -> None:
    out = os.path.join(str(tmp_path), "dlspec.schema.json")
    env = {**os.environ, "PYTHONPATH": ROOT}
    code = ("import sys; from dlspec.cli import main; rc = main(['schema', '--output', sys.argv[1]]); "
            "assert 'torch' not in sys.modules, 'imported torch'; sys.exit(rc)")
    subprocess.run([sys.executable, "-c", code, out], check=True, env=env, cwd=ROOT)
    printed = subprocess.run([sys.executable, "-m", "dlspec", "schema"], check=True, env=env, cwd=ROOT,
                             capture_output=True, text=True).stdout
    with open(out, encoding="utf-8") as f:
        written = f.read()
    assert written == printed == editor_schema.text()
    assert json.loads(written) == SCHEMA
