"""Several networks in one spec (`networks:`): the form and its mistakes, each network checked exactly as a spec of
that one network (rows, totals and every diagnostic, positioned inside the network's section), the built
nn.ModuleDict against hand-written torch modules, the command line, the `train:` refusal, and mutations of the
feature that these tests must catch."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import torch
from torch import nn

import dlspec
from dlspec import schema
from dlspec.cli import main
from dlspec.report import table_rows, to_json, totals_line

ROOT = Path(__file__).resolve().parent.parent
DCGAN = ROOT / "specs" / "dcgan.yaml"

# --- a spec of three networks, and each network body as a spec of its own ------------------------------------

HEAD = "name: Three\n"
BLOCKS = """\
blocks:
  up:
    args: {channels: null}
    layers:
      - ConvTranspose2d: {out_channels: channels, kernel_size: 4, stride: 2, padding: 1, bias: false}
      - BatchNorm2d
      - ReLU
  down:
    - Conv2d: {out_channels: 8, kernel_size: 3, stride: 2, padding: 1}
    - LeakyReLU: 0.2
"""
# (with mistakes: the clean bodies are these with FIXES applied)
BODIES = {
    "gen": """\
input: [16]
layers:
  - Linear: {out_features: 512}
  - Unflatten: {dim: 1, unflattened_size: [32, 4, 4]}
  - up: {channels: 16}
    expect: 16@8x8
  - up: {channels: 8}
    expect: 8@15x15
  - Conv2d: {out_channels: 1, kernel_size: 3, padding: 1}
  - Tanh
""",
    "disc": """\
input: [1, 16, 16]
layers:
  - down:
    name: stem
  - Conv2d: {out_channels: 8, kernel_size: 3, padding: 1}
  - Add: [-1, stem]
  - Flatten:
    name: flat
  - Linear: {in_features: 500, out_features: 1}
    name: logit
  - Linear: {out_features: 3, from: flat}
    name: aux
outputs: [logit, aux]
""",
    "seq": """\
inputs: {x: [4, L], c: [3]}
symbols: {L: {divisible_by: 2}}
layers:
  - MaxPool1d: 2
    from: x
  - Upsample: {scale_factor: 2}
  - Add: [-1, x]
    name: merged
  - Linear: {out_features: 4, from: c}
    name: cond
  - Softmax: {from: cond}
outputs: [merged, cond]
""",
}
FIXES = [("8@15x15", "8@16x16"), ("in_features: 500", "in_features: 512"), ("  - Softmax: {from: cond}\n", "")]


def clean(text: str) -> str:
    for a, b in FIXES:
        text = text.replace(a, b)
    return text


def combined(bodies: dict[str, str]) -> tuple[str, dict[str, int]]:
    """The spec of all the networks, and for each how many lines further down its body is than in its own spec."""
    text = HEAD + BLOCKS + "networks:\n"
    shift = {}
    for name, body in bodies.items():
        text += f"  {name}:\n"
        shift[name] = text.count("\n") - (HEAD + BLOCKS).count("\n")
        text += textwrap.indent(body, "    ")
    return text, shift


def own(body: str) -> str:
    """A network's body as a spec of that one network (the same blocks)."""
    return HEAD + BLOCKS + body


def facts(d: Any, shift: int = 0, cols: int = 0) -> tuple[Any, ...]:
    """Everything a diagnostic says, its position moved by (shift lines, cols columns)."""
    def moved(note: str) -> str:
        return re.sub(r"used at line (\d+)", lambda m: f"used at line {int(m.group(1)) + shift}", note)

    return (d.severity, d.code, d.message, d.line + shift, d.column + cols, (d.end_column or 0) + cols if d.end_column
            else None, d.layer, [moved(n) for n in d.notes], d.help)


def assert_checked_like_own_specs(bodies: dict[str, str]) -> None:
    """Each network of the combined spec: the rows, totals and JSON layers of its body checked as its own spec,
    and the same diagnostics, positioned inside its section (its own spec's, moved down and 4 columns right, its
    path under networks.NAME; a diagnostic inside a block stays at the block)."""
    text, shift = combined(bodies)
    checked = dlspec.check(dlspec.loads(text, "three.yaml"))
    assert list(checked.networks) == list(bodies)
    assert checked.rows == [] and checked.output is None and checked.outputs == []
    want_all = []
    for name, body in bodies.items():
        net = checked.networks[name]
        alone = dlspec.check(dlspec.loads(own(body), "three.yaml"))
        assert table_rows(net) == table_rows(alone)
        assert totals_line(net) == totals_line(alone)
        assert to_json(net)["layers"] == to_json(alone)["layers"]
        assert (net.params, net.macs, net.output, net.outputs) == (alone.params, alone.macs, alone.output,
                                                                    alone.outputs)
        want = []
        for d in alone.diagnostics:
            inside = d.path[:1] != ("blocks",)
            want.append(facts(d, shift[name], 4) if inside else facts(d))
            if inside:
                assert d.path[:1] in [(k,) for k in schema.BODY_KEYS], d.path
        got = [facts(d) for d in net.diagnostics]
        assert got == want, name
        for d in net.diagnostics:
            if d.path[:1] != ("blocks",):
                assert d.path[:2] == ("networks", name), d.path
        want_all += got
    assert sorted(map(str, want_all)) == sorted(str(facts(d)) for d in checked.diagnostics)
    assert checked.params == sum(n.params for n in checked.networks.values())


def test_each_network_is_checked_as_its_own_spec() -> None:
    """Blocks with and without arguments, `expect:`, graph form (`name:`, `from:`, merges, `outputs:`), several
    inputs, `symbols:`; an error in each of two networks and a warning in the third."""
    assert_checked_like_own_specs(BODIES)
    text, _ = combined(BODIES)
    checked = dlspec.check(dlspec.loads(text, "three.yaml"))
    assert sorted((d.severity, d.code) for d in checked.diagnostics) == [
        ("error", "expect-mismatch"), ("error", "shape-mismatch"), ("warning", "implicit-dim")]


def test_clean_networks_check_like_their_own_specs() -> None:
    bodies = {k: clean(v) for k, v in BODIES.items()}
    assert_checked_like_own_specs(bodies)
    checked = dlspec.check(dlspec.loads(combined(bodies)[0], "three.yaml"))
    assert checked.ok and checked.diagnostics == []


def test_shape_error_inside_a_network_is_positioned_there() -> None:
    text, _ = combined(BODIES)
    checked = dlspec.check(dlspec.loads(text, "three.yaml"))
    (d,) = [d for d in checked.errors if d.code == "shape-mismatch"]
    line = text.splitlines().index("      - Linear: {in_features: 500, out_features: 1}") + 1
    assert (d.line, d.column, d.end_column) == (line, 31, 34)
    assert d.path == ("networks", "disc", "layers", 4, "Linear", "in_features") and d.layer == 4
    assert d.message == "Linear expects in_features 500 but receives 512"
    assert d in checked.networks["disc"].diagnostics
    assert d not in checked.networks["gen"].diagnostics and not checked.networks["disc"].ok
    assert checked.networks["seq"].ok


def test_a_block_error_names_the_network_use() -> None:
    bad = BLOCKS.replace("kernel_size: 3, stride: 2", "kernel_size: 99, stride: 2")
    text = HEAD + bad + "networks:\n  disc:\n" + textwrap.indent(BODIES["disc"], "    ")
    checked = dlspec.check(dlspec.loads(text, "x.yaml"))
    (d,) = [d for d in checked.errors if d.code == "kernel-too-large"]
    use = text.splitlines().index("      - down:") + 1
    assert d.path[:2] == ("blocks", "down") and f"in block down, used at line {use}" in d.notes


# --- the form ---------------------------------------------------------------------------------------------

def diagnose(text: str) -> list[tuple[int | None, int | None, str, str]]:
    checked = dlspec.check(dlspec.loads(text, "spec.yaml"))
    json.dumps(to_json(checked))
    from dlspec.report import render_text

    render_text(checked)
    return [(d.line, d.column, str(d.code), d.message) for d in checked.diagnostics]


NET = "networks:\n  g:\n    input: [4]\n    layers: [ReLU]\n"


def test_both_forms_is_an_error_at_each_top_level_key() -> None:
    got = diagnose("input: [4]\nlayers: [ReLU]\n" + NET)
    assert got == [(1, 1, "spec-structure", "a spec with `networks:` has no top-level `input:`: each network has its own"),
                   (2, 1, "spec-structure", "a spec with `networks:` has no top-level `layers:`: each network has its own")]
    c = dlspec.check(dlspec.loads("symbols: {H: {divisible_by: 2}}\n" + NET))
    assert [(d.line, d.help) for d in c.diagnostics] == [
        (1, "move `symbols:` into the network it belongs to, under `networks:`; or, for a spec of one network, "
            "remove `networks:`")]


def test_neither_form() -> None:
    got = diagnose("name: x\nblocks: {b: [ReLU]}\n")
    assert [(line, code) for line, _, code, _ in got] == [(1, "missing-input"), (1, "spec-structure")]
    c = dlspec.check(dlspec.loads("name: x\ninput: [4]\n"))
    (d,) = c.diagnostics
    assert d.message == "the spec has no `layers:`" and "`networks:` for several networks" in (d.help or "")
    assert diagnose("networks: {}\n") == [
        (1, 11, "spec-structure", "`networks` must map each network's name to its `input:` and `layers:`")]
    assert [code for _, _, code, _ in diagnose("networks: [a, b]\n")] == ["spec-structure"]


@pytest.mark.parametrize("name, words", [
    ("1st", "network name 1st is not a name"),
    ("_g", "network name '_g' is taken by torch's nn.ModuleDict"),
    ("train", "network name 'train' is taken by torch's nn.ModuleDict"),
    ("forward", "network name 'forward' is taken by torch's nn.ModuleDict"),
    ("b", "network name 'b' is also the name of a block"),
    ("linear", "network name 'linear' is the name of the layer type Linear"),
])
def test_bad_network_names(name: str, words: str) -> None:
    text = f"blocks: {{b: [ReLU]}}\nnetworks:\n  {name}:\n    input: [4]\n    layers: [ReLU]\n"
    assert diagnose(text) == [(3, 3, "spec-structure", words + (", which `dlspec.build` gives" if "taken" in words
                                                               else ""))]


def test_module_attributes_cover_torch() -> None:
    """Every public attribute of this torch's nn.ModuleDict is refused as a network name (build would fail)."""
    real = {n for n in dir(nn.ModuleDict()) if not n.startswith("_")}
    assert real <= schema.MODULE_ATTRIBUTES, sorted(real - schema.MODULE_ATTRIBUTES)


def test_network_body_mistakes() -> None:
    text = """\
networks:
  g:
    input: [4]
    layer: [ReLU]
    train: {epochs: 1}
  d:
    layers: [ReLU]
    outputs: 3
  e: 3
  f:
    input: [4]
    inputs: {a: [4]}
    layers: []
"""
    assert diagnose(text) == [
        (2, 3, "spec-structure", "network 'g' has no `layers:`"),
        (4, 5, "spec-structure", "network 'g' has no key 'layer'"),
        (5, 5, "spec-structure", "network 'g' has no key 'train'"),
        (7, 5, "missing-input", "network 'd' has no `input` shape"),
        (8, 14, "spec-structure", "`networks.d.outputs` must be of type array or string, got 3"),
        (9, 6, "spec-structure", "network 'e' is a mapping with `input:` and `layers:`, got 3"),
        (12, 5, "spec-structure", "network 'f' has both `input:` and `inputs:`"),
        (13, 13, "spec-structure", "`networks.f.layers` must not be empty"),
    ]
    helps = {d.message: d.help for d in dlspec.check(dlspec.loads(text)).diagnostics}
    assert helps["network 'g' has no key 'layer'"] == "did you mean 'layers'?"
    assert helps["network 'g' has no key 'train'"] == "`train:` belongs at the top level, beside `networks:`"


def test_an_input_mistake_inside_a_network() -> None:
    got = diagnose("networks:\n  g:\n    input: [4, 0]\n    layers: [ReLU]\n")
    assert got == [(3, 16, "invalid-input", "input sizes are positive, got 0")]
    got = diagnose("networks:\n  d:\n    input: [28, 28, 1]\n    layers:\n      - Conv2d: {out_channels: 4, "
                   "kernel_size: 3}\n")
    assert [(line, code) for line, _, code, _ in got] == [(3, "channels-last")]
    got = diagnose("networks:\n  d:\n    input: [4]\n    layers: [ReLU]\n    outputs: [nope]\n")
    assert got == [(5, 15, "reference", "no layer or input named 'nope' to output")]


def test_at_most_16_networks() -> None:
    body = "    input: [4]\n    layers: [ReLU]\n"
    ok = "networks:\n" + "".join(f"  n{i}:\n{body}" for i in range(schema.MAX_NETWORKS))
    assert dlspec.check(dlspec.loads(ok)).ok and len(dlspec.check(dlspec.loads(ok)).networks) == 16
    over = ok + f"  n16:\n{body}"
    assert diagnose(over) == [(3 * 16 + 2, 3, "limit", "the spec has more than the 16 networks a spec may hold")]


def test_the_layer_bound_counts_every_network(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DLSPEC_MAX_LAYERS", "5")
    text = "networks:\n" + "".join(f"  n{i}:\n    input: [4]\n    layers: [ReLU, ReLU, ReLU]\n" for i in range(2))
    (d,) = dlspec.check(dlspec.loads(text)).diagnostics
    assert d.code == "limit" and d.path[:2] == ("networks", "n1") and d.line == 7


SCHEMA_DOCS = [
    {"networks": {"g": {"input": [4], "layers": ["ReLU"]}}},
    {"networks": {"g": {}}, "blocks": {"b": ["ReLU"]}, "train": {}, "name": "x"},
    {"networks": {"g": 3}},
    {"networks": {}},
    {"networks": []},
    {"networks": {"g": {}}, "layers": ["ReLU"]},
    {"networks": {"g": {}}, "input": [4]},
    {"networks": {"g": {}}, "symbols": {}},
    {"networks": {"g": {}}, "outputs": "a"},
    {"networks": {"g": {}}, "inputs": {"a": [1]}},
    {"input": [4], "layers": ["ReLU"]},
    {"input": [4]},
    {},
]


@pytest.mark.parametrize("doc", SCHEMA_DOCS, ids=str)
def test_quick_check_agrees_with_the_json_schema(doc: dict[str, Any]) -> None:
    assert schema.quick_valid(doc) == jsonschema.Draft202012Validator(schema.SPEC_SCHEMA).is_valid(doc)


# --- building: against hand-written torch modules -----------------------------------------------------------

def torch_dcgan() -> tuple[nn.Sequential, nn.Sequential]:
    """The DCGAN of specs/dcgan.yaml written in torch: the PyTorch tutorial's layers, for 28×28."""
    g = nn.Sequential(nn.Linear(100, 128 * 7 * 7, bias=False), nn.Unflatten(1, (128, 7, 7)), nn.BatchNorm2d(128),
                      nn.ReLU(), nn.ConvTranspose2d(128, 64, 4, 2, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
                      nn.ConvTranspose2d(64, 1, 4, 2, 1, bias=False), nn.Tanh())
    d = nn.Sequential(nn.Conv2d(1, 64, 4, 2, 1, bias=False), nn.LeakyReLU(0.2),
                      nn.Conv2d(64, 128, 4, 2, 1, bias=False), nn.BatchNorm2d(128), nn.LeakyReLU(0.2), nn.Flatten(),
                      nn.Linear(128 * 7 * 7, 1))
    return g, d


def assert_dcgan_is_torch() -> None:
    checked = dlspec.check(str(DCGAN))
    assert checked.ok, [d.message for d in checked.diagnostics]
    built = dlspec.build(checked)
    assert isinstance(built, nn.ModuleDict) and list(built.keys()) == ["generator", "discriminator"]
    assert built.spec_name == "DCGAN" and built["generator"].spec_name == "generator"
    torch.manual_seed(0)
    inputs = {"generator": torch.randn(5, 100), "discriminator": torch.randn(5, 1, 28, 28)}
    for name, ref in zip(["generator", "discriminator"], torch_dcgan(), strict=True):
        model, net = built[name], checked.networks[name]
        assert [type(m) for m in model.children()] == [type(m) for m in ref.children()]
        assert [p.shape for p in model.parameters()] == [p.shape for p in ref.parameters()]
        assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in ref.parameters()) == net.params
        model.load_state_dict(dict(zip(model.state_dict(), ref.state_dict().values(), strict=True)))
        for mode in ("train", "eval"):
            getattr(model, mode)()
            getattr(ref, mode)()
            with torch.no_grad():
                y, want = model(inputs[name]), ref(inputs[name])
            assert y.shape == want.shape == (5, *net.output.shape)  # type: ignore[union-attr]
            assert torch.equal(y, want), (name, mode)
    assert checked.params == sum(p.numel() for p in built.parameters()) == 759_680 + 138_625
    assert [checked.networks["generator"].output.shape, checked.networks["discriminator"].output.shape] == [  # type: ignore[union-attr]
        (1, 28, 28), (1,)]


def test_dcgan_builds_what_torch_builds() -> None:
    assert_dcgan_is_torch()


def test_each_built_network_is_what_its_own_spec_builds() -> None:
    bodies = {k: clean(v) for k, v in BODIES.items()}
    built = dlspec.build(dlspec.loads(combined(bodies)[0]))
    assert isinstance(built, nn.ModuleDict) and list(built) == list(bodies)
    torch.manual_seed(1)
    args = {"gen": (torch.randn(2, 16),), "disc": (torch.randn(2, 1, 16, 16),),
            "seq": (torch.randn(2, 4, 6), torch.randn(2, 3))}
    for name, body in bodies.items():
        alone = dlspec.build(dlspec.loads(own(body)))
        member = built[name]
        assert type(member) is type(alone) and str(member) == str(alone)
        assert [n for n, _ in member.named_parameters()] == [n for n, _ in alone.named_parameters()]
        alone.load_state_dict(member.state_dict())
        member.eval()
        alone.eval()
        with torch.no_grad():
            y, want = member(*args[name]), alone(*args[name])
        for a, b in zip(y if isinstance(y, tuple) else (y,), want if isinstance(want, tuple) else (want,), strict=True):
            assert torch.equal(a, b)


def test_build_refuses_a_networks_spec_with_errors() -> None:
    with pytest.raises(dlspec.SpecError) as e:
        dlspec.build(dlspec.loads(combined(BODIES)[0], "three.yaml"))
    assert "three.yaml:" in str(e.value) and "in_features 500" in str(e.value)


# --- the command line -------------------------------------------------------------------------------------

def check_cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[str, int]:
    monkeypatch.chdir(ROOT)
    capsys.readouterr()
    rc = main(["check", "--color", "never", *args])
    return capsys.readouterr().out, rc


def test_cli_check_prints_a_table_per_network(capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    out, rc = check_cli(capsys, monkeypatch, "specs/dcgan.yaml")
    assert rc == 0, out
    parts = out.split("\n\n")
    assert parts[0] == "specs/dcgan.yaml: DCGAN"
    assert parts[1] == "network generator" and parts[4] == "network discriminator"
    assert parts[2].splitlines()[0].split() == ["#", "layer", "output", "map", "params", "MACs"]
    assert "0  Linear(100→6272)" in parts[2] and "8  Tanh" in parts[2]
    assert parts[3].splitlines()[0] == ("output (N, 1, 28, 28) · params 759,680 (3.04 MB as float32) · non-trainable "
                                        "386 (BatchNorm running statistics) · MACs 7.25 M per sample")
    assert parts[3].splitlines()[1].startswith("activations per sample: ")
    assert "6  Linear(6272→1)" in parts[5]
    assert parts[6].splitlines()[0] == ("output (N, 1) · params 138,625 (0.55 MB as float32) · non-trainable 257 "
                                        "(BatchNorm running statistics) · MACs 6.63 M per sample")
    assert parts[7] == "2 networks (generator, discriminator) · params 898,305 (3.59 MB as float32) in all"
    assert parts[8] == "specs/dcgan.yaml: ok\n"
    checked = dlspec.check(str(DCGAN))
    for name in checked.networks:
        from dlspec.report import render_table

        assert render_table(checked.networks[name]) in out


def test_cli_check_json_lists_each_network(capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    out, rc = check_cli(capsys, monkeypatch, "--format", "json", "specs/dcgan.yaml")
    doc = json.loads(out)
    assert rc == 0 and doc["ok"] is True and doc["diagnostics"] == []
    assert (doc["input"], doc["output"], doc["layers"], doc["params"]) == (None, None, [], 898_305)
    assert list(doc["networks"]) == ["generator", "discriminator"]
    g, d = doc["networks"]["generator"], doc["networks"]["discriminator"]
    assert (g["input"], g["output"], g["params"]) == (["N", 100], ["N", 1, 28, 28], 759_680)
    assert (d["input"], d["output"], d["params"]) == (["N", 1, 28, 28], ["N", 1], 138_625)
    assert [layer["type"] for layer in d["layers"]] == ["Conv2d", "LeakyReLU", "Conv2d", "BatchNorm2d", "LeakyReLU",
                                                        "Flatten", "Linear"]


def test_cli_check_errors_in_a_networks_spec(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "three.yaml").write_text(combined(BODIES)[0])
    out, rc = check_cli(capsys, monkeypatch, str(tmp_path / "three.yaml"))
    assert rc == 1
    assert "network gen\n" in out and "network disc\n" in out and "network seq\n" in out
    assert "3 networks (gen, disc, seq) · params" in out and "three.yaml: 2 errors, 1 warning" in out
    assert re.search(r"three\.yaml:\d+:31: error\[shape-mismatch\]", out)


# --- train: -----------------------------------------------------------------------------------------------

def test_train_section_of_several_networks_is_refused_at_train() -> None:
    text = NET + "train:\n  data: {name: mnist}\n  epochs: 1\n"
    checked = dlspec.check(dlspec.loads(text))
    (d,) = checked.diagnostics
    assert (d.line, d.column, d.code) == (5, 1, "train")
    assert d.message == "a spec of several networks (`networks:` g) trains with `train.task: adversarial`"
    assert "leave `train:` out" in (d.help or "")


def test_a_task_other_than_adversarial_is_refused_at_task() -> None:
    checked = dlspec.check(dlspec.loads(NET + "train:\n  task: classify\n  data: {name: mnist}\n"))
    mine = [d for d in checked.diagnostics if "several networks" in d.message]
    assert [(d.line, d.column, d.message.split(", not ")[-1]) for d in mine] == [(6, 9, "classify")]
    checked = dlspec.check(dlspec.loads(NET + "train:\n  task: adversarial\n  data: {name: mnist}\n"))
    assert not [d for d in checked.diagnostics if "several networks" in d.message]  # the adversarial task's


def test_no_contract_check_for_several_networks() -> None:
    """The data↔model↔loss contract is one model's: a discriminator giving (N, 1) for MNIST's 10 classes is not a
    `classes` error, nor is the generator's input a `data-shape` one."""
    text = DCGAN.read_text().split("\ntrain:")[0] + "\ntrain:\n  data: {name: mnist}\n  loss: CrossEntropyLoss\n"
    codes = [d.code for d in dlspec.check(dlspec.loads(text)).diagnostics]
    assert codes == ["train"]


def test_networks_refusal_without_train() -> None:
    from dlspec.traincheck import networks_refusal

    d = networks_refusal(dlspec.check(dlspec.loads(DCGAN.read_text().split("\ntrain:")[0])))
    assert d is not None and d.path == () and "trains with `train.task: adversarial`" in d.message
    assert networks_refusal(dlspec.check(str(ROOT / "specs" / "lenet.yaml"))) is None
    assert networks_refusal(dlspec.check(str(DCGAN))) is None  # its train: says task: adversarial


def test_run_refuses_several_networks(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "gan.yaml").write_text(NET + "train:\n  data: {name: shapes, n_train: 10, n_test: 10}\n  epochs: 1\n")
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    rc = main(["run", "gan.yaml"])
    err = capsys.readouterr().err
    assert rc == 1 and not (tmp_path / "runs").exists()
    assert "gan.yaml:5:1: error[train]: a spec of several networks (`networks:` g) trains with `train.task: " \
           "adversarial`" in err
    assert "dlspec: not started: 1 error" in err and "Traceback" not in err


# --- mutations: each breaks the feature, and the tests above must fail ----------------------------------

def test_mutations_are_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    import dlspec.builder
    import dlspec.infer

    body = schema._body

    def unplaced(doc: Any, spec: Any, data: Any, diags: Any, read: int = 0) -> int:
        spec.base = ()  # a network's paths as if at the top level
        return body(doc, spec, data, diags, read)

    with monkeypatch.context() as m:
        m.setattr(schema, "_body", unplaced)
        with pytest.raises(AssertionError):
            assert_checked_like_own_specs(BODIES)

    network = dlspec.infer._check_network

    def first_input(spec: Any) -> Any:
        if spec.base:  # every network checked with the first network's input
            first = next(iter(spec.doc.data["networks"]))
            spec.input = schema._parse_input(spec.doc, spec.doc.data["networks"][first]["input"])[0]
        return network(spec)

    with monkeypatch.context() as m:
        m.setattr(dlspec.infer, "_check_network", first_input)
        with pytest.raises(AssertionError):
            assert_checked_like_own_specs({k: clean(v) for k, v in BODIES.items()})

    build = dlspec.builder.build_network

    def first_network(checked: Any) -> Any:
        from dlspec.infer import Checked

        if isinstance(checked, Checked) and checked.spec.base:  # every member built as the generator
            return build(dlspec.check(str(DCGAN)).networks["generator"])
        return build(checked)

    with monkeypatch.context() as m:
        m.setattr(dlspec.builder, "build_network", first_network)
        with pytest.raises(AssertionError):
            assert_dcgan_is_torch()
    assert_dcgan_is_torch()  # and unmutated, it passes
