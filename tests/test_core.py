"""Core behaviour of the compiler stages: source positions, schema diagnostics, the shape pass, the builder.

Shapes are compared with torch's real ones in test_registry.py / test_properties.py; here we pin the
diagnostics a person reads (code, line, column, message, notes, help) and the API's contract.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

import dlspec
from dlspec import dims


def chk(text: str) -> dlspec.Checked:
    return dlspec.check(dlspec.loads(textwrap.dedent(text), "spec.yaml"))


def codes(c: dlspec.Checked) -> list[tuple[int | None, str, str]]:
    return [(d.line, d.severity, d.code) for d in c.diagnostics]


LENET = """\
name: lenet
input: [1, 28, 28]
layers:
  - Conv2d: {out_channels: 6, kernel_size: 5, padding: 2}
  - Sigmoid
  - AvgPool2d: {kernel_size: 2, stride: 2}
  - Conv2d: {out_channels: 16, kernel_size: 5}
  - Sigmoid
  - AvgPool2d: {kernel_size: 2, stride: 2}
    expect: 16@5x5
  - Flatten
  - Linear: {out_features: 120}
  - Sigmoid
  - Linear: {in_features: 120, out_features: 84}
  - Sigmoid
  - Linear: {out_features: 10}
"""


def test_lenet_checks_and_infers_sizes():
    c = chk(LENET)
    assert c.ok and c.diagnostics == []
    assert c.output is not None and c.output.shape == (10,)
    assert [r.output.shape for r in c.rows][:6] == [(6, 28, 28), (6, 28, 28), (6, 14, 14), (16, 10, 10),
                                                    (16, 10, 10), (16, 5, 5)]
    assert c.rows[7].args["in_features"] == 400  # inferred
    assert c.params == 61706  # LeNet-5 on 28x28 with padding 2: the textbook count


def test_the_64x6x6_mistake_points_at_the_number_with_the_arithmetic():
    c = chk("""\
        input: [1, 28, 28]
        layers:
          - Conv2d: {out_channels: 32, kernel_size: 3}
          - ReLU
          - MaxPool2d: 2
          - Conv2d: {out_channels: 64, kernel_size: 3}
          - ReLU
          - MaxPool2d: {kernel_size: 2}
          - Flatten
          - Linear: {in_features: 2304, out_features: 128}
          - Linear: {out_features: 10}
        """)
    assert [(d.line, d.column, d.end_column, d.code, d.layer) for d in c.diagnostics] == \
        [(10, 27, 31, "shape-mismatch", 7)]
    d = c.diagnostics[0]
    assert d.message == "Linear expects in_features 2304 but receives 1600"
    assert d.notes == ["layer 6 Flatten gives 64@5×5 = 1600 features "
                       "(28 → conv3 → 26 → pool2 → 13 → conv3 → 11 → pool2 → 5)"]
    assert d.help == "write in_features: 1600, or leave it out and it is inferred"
    assert c.rows[2].args["kernel_size"] == 2  # `MaxPool2d: 2` is short for {kernel_size: 2}
    c = chk("input: [4]\nlayers:\n  - Flatten: 2\n")
    assert [(d.line, d.code) for d in c.diagnostics] == [(3, "invalid-argument")]


def test_all_errors_in_one_run_and_recovery_after_a_shape_error():
    c = chk("""\
        input: [3, 8, 8]
        layers:
          - Conv2d: {in_channels: 4, out_channels: 8, kernel_size: 3}
          - Conv2d: {out_channels: 6, kernel_size: 3, groups: 4}
          - Conv2d: {out_channels: 6, kernel_size: 9}
          - Flatten
          - Linear: {in_features: 5, out_features: 2}
        """)
    assert codes(c) == [(3, "error", "shape-mismatch"), (4, "error", "groups"), (5, "error", "kernel-too-large")]
    assert c.rows[0].output.shape == (8, 6, 6)  # carried on from what the layer declares


def test_expect_mismatch_explains_the_pooling_notation_mistake():
    c = chk("""\
        input: [1, 32, 32]
        layers:
          - Conv2d: {out_channels: 6, kernel_size: 5}
          - AvgPool2d: 2
            expect: 6@14x14
          - Conv2d: {out_channels: 16, kernel_size: 5}
            expect: [16, 10, 10]
          - AvgPool2d: {kernel_size: 2}
            expect: 6@5×5
        """)
    bad = [d for d in c.diagnostics if d.code == "expect-mismatch"]
    assert len(bad) == 1 and bad[0].line == 9 and bad[0].column == 13
    assert bad[0].message == "layer 3 AvgPool2d gives 16@5×5, not 6@5×5 as `expect` says"
    assert "AvgPool2d keeps the number of channels (16)" in bad[0].notes
    assert bad[0].help.startswith("write expect: 16@5x5")


def test_recurrent_without_batch_first_is_a_warning_not_an_error():
    c = chk("""\
        input: [28, 28]
        layers:
          - LSTM: {hidden_size: 100}
          - Last
          - Linear: {out_features: 10}
        """)
    assert c.ok
    assert codes(c) == [(3, "warning", "batch-first")]
    assert "add batch_first: true" in c.diagnostics[0].help


def test_symbolic_sizes_flow_and_stop_at_linear():
    c = chk("""\
        input: [T, 28]
        layers:
          - Conv1d: {in_channels: T, out_channels: 4, kernel_size: 3}
        """)
    # a symbol is not a written size, and the channels it would be inferred from are symbolic
    assert sorted(codes(c)) == [(3, "error", "invalid-argument"), (3, "error", "symbolic-size")]
    c = chk("""\
        input: [4, L]
        layers:
          - Conv1d: {out_channels: 8, kernel_size: 5, stride: 2, padding: 1}
          - MaxPool1d: 2
          - Flatten
          - Linear: {out_features: 3}
        """)
    assert c.rows[0].output.shape == (8, "(L-3)//2+1")
    flat = c.rows[2].output.shape[0]
    assert flat == "(((L-3)//2-1)//2+1)*8"
    for L in (9, 10, 33):
        assert dims.evaluate(flat, {"L": L}) == 8 * ((((L + 2 - 5) // 2 + 1) - 2) // 2 + 1)
    assert codes(c) == [(6, "error", "symbolic-size")]
    assert c.diagnostics[0].message == "Linear needs a fixed number of input features but receives (((L-3)//2-1)//2+1)*8"
    for L in (7, 8, 30, 31):
        assert dims.evaluate(c.rows[0].output.shape[1], {"L": L}) == (L + 2 - 5) // 2 + 1


def test_embedding_needs_ids():
    c = chk("""\
        input: [T, 16]
        layers:
          - Embedding: {num_embeddings: 100, embedding_dim: 8}
        """)
    assert codes(c) == [(3, "error", "dtype")]
    c = chk("""\
        input: {shape: [T], dtype: long}
        layers:
          - Embedding: {num_embeddings: 100, embedding_dim: 8}
          - LSTM: {hidden_size: 5, batch_first: true}
        """)
    assert c.ok and c.output.shape == ("T", 5)


# --- schema -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("input: [1, 28\nlayers: []\n", [(2, "error", "yaml-syntax")]),
    ("layers: [ReLU]\n", [(1, "error", "missing-input")]),
    ("input: [4]\nlayer: [ReLU]\n", [(1, "error", "spec-structure"), (2, "error", "spec-structure")]),
    ("input: [4]\nlayers: [ReLU]\ninput: [5]\n", [(3, "error", "duplicate-key")]),
    ("input: [0, 4]\nlayers: [ReLU]\n", [(1, "error", "invalid-input")]),
    ("input: [N, 4]\nlayers: [ReLU]\n", [(1, "error", "invalid-input")]),
    ("input: [4]\nlayers: [Relu, {Linear: {out_features: 2}, bias: 3}]\n", [(2, "error", "invalid-layer")]),
    ("- just a list\n", [(1, "error", "spec-structure")]),
    ("", [(None, "error", "spec-structure")]),
])
def test_schema_errors_are_diagnostics(text, expected):
    c = chk(text)
    assert codes(c) == expected
    assert all(d.file == "spec.yaml" for d in c.diagnostics)


def test_unknown_top_level_key_gets_did_you_mean():
    c = chk("input: [4]\nlayers: [ReLU]\nblokcs: {}\n")
    (d,) = c.diagnostics
    assert (d.line, d.column, d.code, d.help) == (3, 1, "spec-structure", "did you mean 'blocks'?")


def test_names_are_case_insensitive_and_misspellings_get_help():
    c = chk("input: [4]\nlayers:\n  - linear: {out_features: 3}\n  - relu\n  - Sigmiod\n  - Linear: {out_feature: 2}\n")
    assert [r.entry.name for r in c.rows][:2] == ["Linear", "ReLU"]
    assert [(d.line, d.code, d.help) for d in c.diagnostics] == [
        (5, "unknown-layer", "did you mean 'Sigmoid'?"),
        (6, "unknown-argument", "did you mean 'out_features'?"),
    ]


def test_blocks_repeat_residual_and_concat():
    c = chk("""\
        input: [3, 32, 32]
        blocks:
          stage:
            - Residual:
                - Conv2d: {out_channels: 16, kernel_size: 3, padding: 1}
                - BatchNorm2d
                - ReLU
        layers:
          - Conv2d: {out_channels: 16, kernel_size: 3, padding: 1}
          - stage:
            repeat: 2
          - Concat:
              - [{Conv2d: {out_channels: 8, kernel_size: 1}}]
              - [{MaxPool2d: {kernel_size: 3, stride: 1, padding: 1}}]
          - AdaptiveAvgPool2d: 1
          - Flatten
          - Linear: {out_features: 10}
        """)
    assert c.ok, c.diagnostics
    assert [r.output.shape for r in c.rows] == [(16, 32, 32), (16, 32, 32), (16, 32, 32), (24, 32, 32), (24, 1, 1),
                                               (24,), (10,)]
    block_params = 16 * 16 * 9 + 16 + 2 * 16
    assert c.rows[1].params == block_params and c.rows[2].params == block_params
    model = dlspec.build(c)
    assert sum(p.numel() for p in model.parameters()) == c.params
    import torch

    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    names = [n for n, _ in model.named_children()]
    assert names == ["conv1", "stage1", "stage2", "concat1", "pool1", "flatten1", "fc1"]


def test_residual_shape_change_is_reported():
    c = chk("""\
        input: [4, 8, 8]
        layers:
          - Residual: [{Conv2d: {out_channels: 8, kernel_size: 3, padding: 1}}]
        """)
    assert codes(c) == [(3, "error", "merge-shape")]


def test_build_refuses_a_spec_with_errors_and_prints_readably():
    with pytest.raises(dlspec.SpecError) as e:
        dlspec.build(dlspec.loads("input: [4]\nlayers:\n  - Linear: {in_features: 5, out_features: 2}\n", "x.yaml"))
    assert "x.yaml:3:27: error[shape-mismatch]" in str(e.value)
    model = dlspec.build(dlspec.loads(LENET))
    text = repr(model)
    assert "(conv1): Conv2d(1, 6, kernel_size=(5, 5), stride=(1, 1), padding=(2, 2))" in text
    assert "(fc3): Linear(in_features=84, out_features=10, bias=True)" in text


def test_user_names_and_repeat_names():
    model = dlspec.build(dlspec.loads(
        "input: [4]\nlayers:\n  - Linear: {out_features: 4}\n    name: hidden\n    repeat: 2\n  - ReLU\n"))
    assert [n for n, _ in model.named_children()] == ["hidden1", "hidden2", "relu1"]


def test_check_never_imports_torch(tmp_path):
    spec = tmp_path / "lenet.yaml"
    spec.write_text(LENET)
    code = ("import sys, runpy; sys.argv = ['dlspec', 'check', %r];\n"
            "try:\n    runpy.run_module('dlspec', run_name='__main__')\n"
            "except SystemExit as e:\n    assert e.code == 0, e.code\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'numpy'))\n"
            "assert not bad, bad\nprint('NO-TORCH-OK')" % str(spec))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "NO-TORCH-OK" in out.stdout


def test_unreadable_file_is_a_diagnostic(tmp_path):
    c = dlspec.check(str(tmp_path / "missing.yaml"))
    assert [(d.code, d.severity) for d in c.diagnostics] == [("io", "error")]
    (tmp_path / "bin.yaml").write_bytes(b"\xff\xfe\x00bad")
    c = dlspec.check(str(tmp_path / "bin.yaml"))
    assert [d.code for d in c.diagnostics] == ["io"]
