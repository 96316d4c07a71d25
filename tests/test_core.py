"""Core behaviour of the compiler stages: source positions, schema diagnostics, the shape pass, the builder.

Shapes are compared with torch's real ones in test_registry.py / test_properties.py; here we pin the
diagnostics a person reads (code, line, column, message, notes, help) and the API's contract.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import dlspec
from dlspec import dims

ROOT = Path(__file__).resolve().parent.parent


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
    assert c.rows[0].output.shape == (8, "(L-1)//2")  # (L+2-5)//2+1, written shorter
    flat = c.rows[2].output.shape[0]
    assert flat == "((L-1)//4)*8"  # ((L-3)//2+1 - 2)//2 + 1, written shorter
    for L in (9, 10, 33):
        assert dims.evaluate(flat, {"L": L}) == 8 * ((((L + 2 - 5) // 2 + 1) - 2) // 2 + 1)
    assert codes(c) == [(6, "error", "symbolic-size")]
    assert c.diagnostics[0].message == "Linear needs a fixed number of input features but receives ((L-1)//4)*8"
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
    ("input: [1, 28\nlayers: []\n", [(1, "error", "yaml-syntax")]),  # the `[` never closed
    ("layers: [ReLU]\n", [(1, "error", "missing-input")]),
    ("input: [4]\nlayer: [ReLU]\n", [(2, "error", "spec-structure")]),  # said once: unknown `layer`, did you mean
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
    """Not for the shapes, nor for the train: sections (torch's names come from the generated table, the
    datasets' facts from their options): every example spec and every mistake."""
    spec = tmp_path / "lenet.yaml"
    spec.write_text(LENET)
    root = Path(__file__).resolve().parent.parent
    specs = [str(spec)] + sorted(str(p) for p in root.glob("specs/**/*.yaml"))
    code = (f"import sys, runpy; sys.argv = ['dlspec', 'check', *{specs!r}];\n"
            "try:\n    runpy.run_module('dlspec', run_name='__main__')\n"
            "except SystemExit as e:\n    assert e.code == 1, e.code\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'numpy'))\n"
            "assert not bad, bad\nprint('NO-TORCH-OK')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "NO-TORCH-OK" in out.stdout


def test_unreadable_file_is_a_diagnostic(tmp_path):
    c = dlspec.check(str(tmp_path / "missing.yaml"))
    assert [(d.code, d.severity) for d in c.diagnostics] == [("io", "error")]
    (tmp_path / "bin.yaml").write_bytes(b"\xff\xfe\x00bad")
    c = dlspec.check(str(tmp_path / "bin.yaml"))
    assert [d.code for d in c.diagnostics] == ["io"]


# --- unknown layers, Keras names ----------------------------------------------------------------------

def table(c: dlspec.Checked) -> list[list[str]]:
    from dlspec.report import table_rows

    return table_rows(c)


def test_an_unknown_layer_stops_the_shape_pass_at_its_place():
    c = chk("""\
        input: [1, 28, 28]
        layers:
          - Conv2d: {out_channels: 8, kernel_size: 3}
          - Frobnicate: {units: 10}
          - Flatten
          - Linear: {out_features: 10}
        """)
    (d,) = c.diagnostics
    assert (d.line, d.column, d.code, d.message, d.help) == (
        4, 5, "unknown-layer", "unknown layer type 'Frobnicate'", "`dlspec layers` lists the layer types")
    # the row keeps its index; it and everything after it is unknown, and so is the output
    assert [(r.item.index, r.type, r.output) for r in c.rows[1:]] == [(1, "Frobnicate", None), (2, "Flatten", None),
                                                                        (3, "Linear", None)]
    assert c.output is None
    assert [row[:3] for row in table(c)[2:]] == [["1", "Frobnicate (unknown)", "?"], ["2", "Flatten", "?"],
                                                 ["3", "Linear", "?"]]
    from dlspec.report import totals_line

    assert totals_line(c) == ("output ? · params 80 (0.00 MB as float32) · MACs 48.67 k per sample · not counted: "
                              "1 layer with errors, 2 layers with unknown input")
    # a malformed entry keeps its place too (it used to vanish, and the pass went on without it)
    c = chk("input: [4]\nlayers: [{Linear: {out_features: 2}, bias: 3}, ReLU]\n")
    assert [(r.type, r.output) for r in c.rows] == [("?", None), ("ReLU", None)]


def test_keras_layer_names_say_what_to_write_and_carry_on_as_it():
    c = chk("""\
        input: [1, 28, 28]
        layers:
          - Conv2d: {out_channels: 8, kernel_size: 3}
          - Dense: {units: 10}
          - Flatten
          - Linear: {out_features: 10}
        """)
    assert [(d.line, d.severity, d.code) for d in c.diagnostics] == [
        (4, "error", "unknown-layer"), (4, "warning", "forgotten-flatten")]
    assert c.diagnostics[0].help == "Keras' Dense is torch's Linear: write `- Linear: {out_features: 10}`"
    assert c.rows[1].entry.name == "Linear" and c.rows[1].args["out_features"] == 10
    assert c.output is not None and c.output.shape == (10,)
    assert table(c)[2][1] == "Dense → Linear(26→10)"
    cases = {
        "MaxPooling2D: {pool_size: 2, strides: 2}": "Keras' MaxPooling2D is torch's MaxPool2d: write "
                                                   "`- MaxPool2d: {kernel_size: 2, stride: 2}`",
        "AveragePooling2D: {pool_size: 2}": "Keras' AveragePooling2D is torch's AvgPool2d: write "
                                            "`- AvgPool2d: {kernel_size: 2}`",
        "GlobalAveragePooling2D": "Keras' GlobalAveragePooling2D is torch's AdaptiveAvgPool2d + Flatten: write "
                                  "`- AdaptiveAvgPool2d: {output_size: 1}` and `- Flatten`",
        # the help names the BatchNorm for the rank the layer receives here
        "BatchNormalization": "Keras' BatchNormalization is torch's BatchNorm2d for the 4-D input (N, 3, 8, 8) it "
                              "receives here: write `- BatchNorm2d`",
        "Activation: relu": "Keras' Activation relu is torch's ReLU: write `- ReLU`",
        "Conv2DTranspose: {filters: 4, kernel_size: 2, strides: 2}":
            "Keras' Conv2DTranspose is torch's ConvTranspose2d: write "
            "`- ConvTranspose2d: {out_channels: 4, kernel_size: 2, stride: 2}`",
        "Dense: {units: 5, activation: softmax}": "Keras' Dense is torch's Linear + Softmax: write "
                                                  "`- Linear: {out_features: 5}` and `- Softmax: {dim: -1}`",
    }
    for text, want in cases.items():
        c = chk(f"input: [3, 8, 8]\nlayers:\n  - {text}\n")
        assert [(d.code, d.help) for d in c.errors] == [("unknown-layer", want)], text
        assert c.output is not None, text  # carried on as the torch layers
    # BatchNormalization is BatchNorm1d or 2d by what it receives; SimpleRNN is a batch-first RNN
    c = chk("input: [3, 8, 8]\nlayers:\n  - BatchNormalization\n  - Flatten\n  - BatchNormalization\n")
    assert [r.entry.name for r in c.rows] == ["BatchNorm2d", "Flatten", "BatchNorm1d"]
    assert c.rows[0].args["num_features"] == 3 and c.rows[2].args["num_features"] == 192
    c = chk("input: [T, 8]\nlayers:\n  - SimpleRNN: {units: 16}\n")
    assert c.errors[0].help == "Keras' SimpleRNN is torch's RNN: write `- RNN: {hidden_size: 16, batch_first: true}`"
    assert [d.code for d in c.diagnostics] == ["unknown-layer"] and c.output.shape == ("T", 16)


def test_keras_argument_names_and_activation_argument():
    c = chk("""\
        input: [1, 28, 28]
        layers:
          - Conv2D: {filters: 8, kernel_size: 3, activation: relu}
          - Flatten
          - Linear: {units: 10}
        """)
    assert [(d.line, d.column, d.code, d.message, d.help) for d in c.diagnostics] == [
        (3, 14, "unknown-argument", "Conv2d has no argument 'filters'",
         "Keras' filters is torch's out_channels: write out_channels: 8"),
        (3, 42, "unknown-argument", "Conv2d has no argument 'activation'",
         "torch layers take no activation argument: add `- ReLU` after this layer"),
        (5, 14, "unknown-argument", "Linear has no argument 'units'",
         "Keras' units is torch's out_features: write out_features: 10"),
    ]  # and no missing-argument: it carries on with out_channels 8 and out_features 10
    assert c.output.shape == (10,) and c.rows[0].args["out_channels"] == 8


# --- the shape pass ---------------------------------------------------------------------------------

def test_batchnorm1d_on_a_sequence_explains_before_the_symbolic_size():
    c = chk("input: [T, 16]\nlayers:\n  - BatchNorm1d\n")
    fix = ("to normalise the 16 features of each step use `- LayerNorm`, or `- Permute: [0, 2, 1]` to (N, 16, T) "
           "before it (and back after)")
    assert [(d.severity, d.code, d.message, d.help) for d in c.diagnostics] == [
        ("warning", "rank", "BatchNorm1d reads (N, T, 16) as (N, C, L): it normalises each of the T time steps as "
                            "a channel, not each feature", fix),
        ("error", "symbolic-size", "BatchNorm1d needs a fixed number of channels but receives T", fix),
    ]


def test_rows_with_errors_have_no_counts_and_containers_sum_their_layers():
    c = chk("""\
        input: [32, 28, 28]
        layers:
          - Conv2d: {out_channels: 64, kernel_size: 3, padding: 1, groups: 3}
          - BatchNorm2d
        """)
    assert [d.code for d in c.diagnostics] == ["groups"]
    assert (c.rows[0].params, c.rows[0].macs) == (None, None)  # not 5,824 computed with the bad groups
    assert table(c)[1][4:] == ["", ""]
    assert c.params == 128
    from dlspec.report import totals_line

    assert totals_line(c) == ("output (N, 64, 28, 28) · params 128 (0.00 MB as float32) · non-trainable 129 "
                              "(BatchNorm running statistics) · MACs 0 per sample · not counted: 1 layer with errors")
    c = chk("""\
        input: [16, 32, 32]
        layers:
          - Residual:
              - Conv2d: {out_channels: 32, kernel_size: 3, stride: 2, padding: 1}
              - BatchNorm2d
        """)
    assert [d.code for d in c.diagnostics] == ["merge-shape"]
    res = c.rows[0]
    body = res.children["body"]
    assert res.params == sum(r.params for r in body) == 4640 + 64 == c.params
    assert res.macs == sum(r.macs for r in body) == c.macs
    assert table(c)[1][4] == "4,704"


def test_concat_recovers_after_a_merge_error_and_names_the_odd_branch():
    c = chk("""\
        input: [4, 32, 32]
        layers:
          - Concat:
              - [{Conv2d: {out_channels: 8, kernel_size: 3, padding: 1}}]
              - [{Conv2d: {out_channels: 8, kernel_size: 3, stride: 2, padding: 1}}]
              - [{MaxPool2d: {kernel_size: 3, stride: 1, padding: 1}}]
          - ReLU
        """)
    (d,) = c.diagnostics
    assert d.message == ("Concat along dim 1 cannot join its branches' outputs 8@32×32, 8@16×16, 4@32×32: every "
                         "dimension but dim 1 must agree")
    assert d.notes == ["branch 1 maps 4@32×32 to 8@16×16: its size 16×16 differs from the size 32×32 of branches "
                       "0 and 2"]
    assert c.rows[0].output.shape == ("?", 32, 32) and c.output.shape == ("?", 32, 32)
    assert c.rows[0].params == 296 + 296


def test_forgotten_flatten_is_said_once_and_the_mismatch_says_add_flatten():
    c = chk("""\
        input: [1, 28, 28]
        layers:
          - Conv2d: {out_channels: 32, kernel_size: 3, padding: 1}
          - MaxPool2d: 2
          - Linear: {in_features: 6272, out_features: 128}
          - ReLU
          - Linear: {out_features: 10}
          - Flatten
          - Unflatten: {dim: 1, unflattened_size: [32, 14, 10]}
          - Linear: {out_features: 3}
        """)
    assert [(d.line, d.severity, d.code) for d in c.diagnostics] == [
        (5, "warning", "forgotten-flatten"), (5, "error", "shape-mismatch"),
        (10, "warning", "forgotten-flatten")]  # not on line 7: the same missing Flatten; again after a reshape
    assert c.diagnostics[1].help == ("add `- Flatten` before this Linear: it then receives 32@14×14 = 6272 "
                                     "features, as in_features says")


def test_each_branch_warns_for_itself():
    c = chk("""\
        input: [4, 8, 8]
        layers:
          - Concat:
              branches:
                - [{Linear: {out_features: 3}}]
                - [{Linear: {out_features: 5}}]
              dim: -1
          - Linear: {out_features: 2}
        """)
    # each branch starts from what was said before the Concat; after it, the missing Flatten was said already
    assert [(d.line, d.code) for d in c.diagnostics] == [(5, "forgotten-flatten"), (6, "forgotten-flatten")]
    assert c.output.shape == (4, 8, 2)


# --- messages and help lines ----------------------------------------------------------------------------

def test_rank_message_reads_naturally_and_says_how_to_reshape():
    c = chk("input: [784]\nlayers:\n  - Conv2d: {out_channels: 32, kernel_size: 3}\n")
    (d,) = c.diagnostics
    assert d.message == "Conv2d expects a 4-D input (N, C, H, W) but receives 2-D (N, 784)"
    assert d.help == ("reshape each sample to 1@28×28: `- Reshape: [1, 28, 28]` (or `- Unflatten: {dim: 1, "
                      "unflattened_size: [1, 28, 28]}`), or declare `input: [1, 28, 28]`")
    c = chk("input: [3072]\nlayers:\n  - ReLU\n  - Conv2d: {out_channels: 8, kernel_size: 3}\n")
    assert c.diagnostics[0].help == ("reshape each sample to 3@32×32: `- Reshape: [3, 32, 32]` (or `- Unflatten: "
                                     "{dim: 1, unflattened_size: [3, 32, 32]}`)")
    c = chk("input: [16, 5, 5]\nlayers:\n  - BatchNorm1d\n")
    (d,) = c.diagnostics
    assert d.message == ("BatchNorm1d expects a 2-D input (N, C) or a 3-D input (N, C, L) but receives 4-D "
                         "(N, 16, 5, 5)")
    assert d.help == "use BatchNorm2d, which takes a 4-D input (N, C, H, W)"
    c = chk("input: [28]\nlayers:\n  - LSTM: {hidden_size: 4, batch_first: true}\n")
    assert c.diagnostics[0].message == "LSTM expects a 3-D sequence (N, T, F) but receives 2-D (N, 28)"


def test_output_padding_invalid_argument_and_kernel_messages_have_help():
    c = chk("""\
        input: [32, 7, 7]
        layers:
          - ConvTranspose2d: {out_channels: 1, kernel_size: 3, stride: 1, padding: 1, output_padding: 1}
        """)
    assert c.diagnostics[0].help == ("remove output_padding (a larger kernel_size gives a larger output), or use "
                                     "stride ≥ 2 as in an upsampling layer")
    c = chk("input: [784]\nlayers:\n  - Dropout: {p: 50}\n  - Linear: {out_features: -1}\n"
            "  - Linear: {in_features: -1, out_features: 2}\n")
    assert [(d.message, d.help) for d in c.diagnostics] == [
        ("Dropout p cannot be 50", "p must be a number in [0.0, 1.0] (a fraction: 50% is p: 0.5)"),
        ("Linear out_features cannot be -1", 'out_features must be a positive integer: -1 does not mean "infer" here'),
        ("Linear in_features cannot be -1", "in_features must be a positive integer: leave it out and it is inferred"),
    ]
    assert table(c)[1][1] == "Dropout"  # not Dropout(p=0.5): the default that stands in for the invalid 50
    c = chk("input: [1, 4, 4]\nlayers:\n  - Conv2d: {out_channels: 2, kernel_size: 5}\n"
            "  - Conv2d: {out_channels: 2, kernel_size: 7, padding: 1}\n")
    assert c.diagnostics[0].message == "Conv2d kernel 5 is larger than the input size 4"
    c = chk("input: [1, 4, 4]\nlayers:\n  - Conv2d: {out_channels: 2, kernel_size: 7, padding: 1}\n")
    assert c.diagnostics[0].message == "Conv2d kernel 7 is larger than the padded input 6 (4 + 2·1)"


def test_yaml_error_under_a_bare_name_says_how_to_write_it():
    text = "input: [28, 28]\nlayers:\n  - LSTM: {hidden_size: 8, batch_first: true}\n  - Last\n    expect: [8]\n"
    (d,) = chk(text).diagnostics
    assert (d.line, d.code) == (5, "yaml-syntax")
    assert d.help == ("a bare name `- Last` cannot have keys: write `- Last:` (with a colon) and put `expect:` under "
                      "it at the same indent as `Last`")
    fixed = chk(text.replace("- Last\n", "- Last:\n"))  # what the help says is what YAML accepts
    assert fixed.ok and fixed.rows[1].item.expect == (8,)
    (d,) = chk("input: [1, 8, 8]\nlayers:\n  - Conv2d\n    out_channels: 4\n").diagnostics
    assert d.help == ("a bare name `- Conv2d` cannot have keys: write `- Conv2d:` (with a colon) and put its "
                      "arguments under it, indented further than `Conv2d`")
    fixed = chk("input: [1, 8, 8]\nlayers:\n  - Conv2d:\n      out_channels: 4\n      kernel_size: 3\n")
    assert fixed.ok and fixed.output.shape == (4, 6, 6)
    # written one level too deep, expect is an argument: the help says where it belongs
    (d,) = chk(text.replace("- Last\n    expect", "- Last:\n      expect")).diagnostics
    assert (d.code, d.help) == ("unknown-argument", "`expect:` belongs beside the layer name, not under it: indent "
                                                    "it like `Last`, not further")


def test_missing_input_points_at_layers():
    (d,) = chk("# a model\nname: x\nlayers:\n  - ReLU\n").diagnostics
    assert (d.line, d.column, d.end_column, d.code) == (3, 1, 7, "missing-input")
    assert d.help == ("add `input:` above `layers:` with the shape of one sample, batch left out, e.g. "
                      "`input: [1, 28, 28]`")


# --- the table ------------------------------------------------------------------------------------------

def test_table_names_labels_and_summaries():
    c = chk("""\
        input: [4, 16, 16]
        layers:
          - Conv2d: {out_channels: 8, kernel_size: 3, padding: 1}
            name: c1
          - Residual:
              body: [{Conv2d: {out_channels: 8, kernel_size: 3, padding: 1}}]
              shortcut: [Identity]
          - Concat: [[{MaxPool2d: {kernel_size: 3, stride: 1, padding: 1}}], [Identity]]
          - Upsample: {scale_factor: 2, mode: bilinear}
          - Upsample: {size: [8, 8]}
          - ConvTranspose2d: {out_channels: 4, kernel_size: 3, stride: 2, padding: 1, output_padding: 1}
          - Dropout: 0.25
          - AdaptiveAvgPool2d: 1
          - AdaptiveMaxPool2d: {output_size: [1, null]}
        """)
    assert c.ok, c.diagnostics
    assert [row[1] for row in table(c)[1:]] == [
        "c1: Conv2d(4→8, k3p1)",
        "Residual",
        "  body:",
        "    Conv2d(8→8, k3p1)",
        "  shortcut:",
        "    Identity",
        "Concat",
        "  branch 0:",
        "    MaxPool2d(k3s1p1)",
        "  branch 1:",
        "    Identity",
        "Upsample(×2, bilinear)",
        "Upsample(→8×8, nearest)",
        "ConvTranspose2d(16→4, k3s2p1op1)",
        "Dropout(p=0.25)",
        "AdaptiveAvgPool2d(→1×1)",
        "AdaptiveMaxPool2d(→1×same)",
    ]


def test_symbolic_macs_combine_like_terms_exactly():
    from dlspec.infer import sum_dims

    parts = ["T*16384", "T*16384 + (T*T)*128", "(T*65)*128", "((L-3)//2+1)*8", "((L-3)//2+1)*8", "T*T*2", 5,
             "floor(T*1.5)*4", "T-2", "T-2"]
    total = sum_dims(parts)
    assert total == "T*41088 + T*T*130 + ((L-3)//2+1)*16 + floor(T*1.5)*4 + (T-2)*2 + 5"
    for t in (1, 2, 7, 33, 100):
        for L in (5, 9, 30):
            env = {"T": t, "L": L}
            assert dims.evaluate(total, env) == sum(dims.evaluate(p, env) for p in parts)
    c = dlspec.check(str(ROOT / "specs/transformer_tiny.yaml"))
    assert c.rows[1].macs == "T*32768 + T*T*128"  # was T*16384 + T*16384 + (T*T)*128
    assert c.macs == "T*32768 + T*T*128 + 128"
    from dlspec.report import totals_line

    assert totals_line(c).endswith("MACs T*32768 + T*T*128 + 128 per sample")


def test_totals_are_the_sum_of_the_rows():
    from dlspec.report import table_rows

    for path in ("specs/resnet_tiny.yaml", "specs/errors/merge_shape.yaml", "specs/errors/kernel_too_large.yaml",
                 "specs/errors/unknown_layer.yaml"):
        c = dlspec.check(str(ROOT / path))
        top = [r for r in table_rows(c)[1:] if r[0]]  # numbered rows: the top level
        assert sum(int(r[4].replace(",", "")) for r in top if r[4]) == c.params, path
        assert sum(int(r[5].replace(",", "")) for r in top if r[5]) == c.macs, path


def test_block_module_names_keep_the_digits_apart():
    model = dlspec.build(dlspec.check(str(ROOT / "specs/resnet_tiny.yaml")))
    assert [n for n, _ in model.named_children()] == [
        "stem", "bn1", "relu1", "basic16_1", "basic16_2", "down32_1", "basic32_1", "pool1", "flatten1", "fc1"]
    model = dlspec.build(dlspec.loads("input: [4]\nlayers:\n  - Linear: {out_features: 4}\n    name: fc2\n"
                                      "    repeat: 2\n"))
    assert [n for n, _ in model.named_children()] == ["fc2_1", "fc2_2"]


@pytest.mark.parametrize("text", [
    "input: [2, 3, 4]\nlayers:\n  - Flatten: {start_dim: 3, end_dim: 2}\n",
    "input: {shape: [T], dtype: long}\nlayers:\n  - Embedding: {num_embeddings: 5, embedding_dim: 2, padding_idx: 9}\n",
    "input: [3, 4, 4]\nlayers:\n  - AdaptiveMaxPool2d: {output_size: 1, return_indices: true}\n",
    "input: [3, 4, 4]\nlayers:\n  - MaxPool2d: {kernel_size: 2, return_indices: true}\n",
    "input: [T, 3]\nlayers:\n  - LSTM: {hidden_size: 4, proj_size: 8, batch_first: true}\n",
    "input: [3, 8, 8]\nlayers:\n  - Upsample: {size: [4, 4, 4]}\n",
    "input: [3, 8, 8]\nlayers:\n  - Upsample: {scale_factor: [2, 2, 2]}\n",
    "input: [4]\nlayers:\n  - ReLU:\n    name: 1x\n  - ReLU:\n    repeat: 0\n",
    "input: [4]\nlayers:\n  - Linear: {out_features: 2, bias: 3}\n  - Conv2d: {out_channels: 2, kernel_size: [3, 3, 3]}\n",
])
def test_every_invalid_argument_says_what_is_accepted(text):
    c = chk(text)
    bad = [d for d in c.diagnostics if d.code == "invalid-argument"]
    assert bad and all(d.help for d in bad), [(d.message, d.help) for d in c.diagnostics]


def test_numbers_in_exponent_notation_are_numbers():
    # PyYAML follows YAML 1.1, where 1e-5 (no dot) would be the string "1e-5"
    c = chk("input: [4]\nlayers:\n  - BatchNorm1d: {eps: 1e-5}\n  - Dropout: 5E-1\n")
    assert c.ok, c.diagnostics
    assert c.rows[0].args["eps"] == 1e-5 and c.rows[1].args["p"] == 0.5
    from dlspec.source import parse

    assert parse("a: [1e3, -2.5e+3, 12, x1e5, 1e, e5]").data == {"a": [1000.0, -2500.0, 12, "x1e5", "1e", "e5"]}
