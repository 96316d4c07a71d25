"""`dlspec export`: each form against dlspec.build's model (the reference), on inputs the exporter never saw.

python: for every spec in specs/ and specs/zoo/, the generated file imports nothing of dlspec, has the same
parameter count, takes dlspec.build's state dict as it is and gives the same outputs; the shape written in the
comment of each line of forward is the shape torch really gives there.  TorchScript and torch.export: the
recurrent, graph, attention and several-network specs, reloaded from the file.  ONNX (skipped without the
`onnx` extra): outputs under onnxruntime, and an axis the model fixes is refused rather than misread.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
sys.path.insert(0, os.path.dirname(__file__))
import dlspec  # noqa: E402
from dlspec import cli, dims, export  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "specs").glob("*.yaml")) + sorted((ROOT / "specs" / "zoo").glob("*.yaml"))
# the traced forms: recurrent (LSTM, GRU, RNN), graph (from:, several outputs), attention, several networks
TRACED = ["lenet", "lstm_rows", "gru_stack", "char_rnn", "rnn_series", "resnet_tiny", "inception_tiny",
          "transformer_tiny", "row_transformer", "dcgan", "zoo/seq2seq_encoder", "zoo/unet", "zoo/gpt_char",
          "zoo/cvae"]  # two inputs (an image and labels), Reparameterize


def spec_path(name: str) -> Path:
    return ROOT / "specs" / f"{name}.yaml"


def built(path: Path) -> tuple[Any, Any]:
    checked = dlspec.check(str(path))
    assert checked.ok
    torch.manual_seed(0)
    model = dlspec.build(checked).eval()
    for m in model.modules():  # BatchNorm statistics that are not the identity: a lost buffer would show
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 1.5)
    return checked, model


def networks(checked: Any, model: Any) -> list[tuple[str | None, Any, Any]]:
    return [(n, c, model[n]) for n, c in checked.networks.items()] if checked.networks else [(None, checked, model)]


def fresh_input(net: Any, batch: int = 4, grow: int = 2) -> tuple:
    """A batch the exporter did not trace or check with: 4 samples, symbolic sizes `grow` divisors larger."""
    values = {s: v + grow * (net.spec.symbols.get(s, 1) or 1) for s, v in export.symbol_values(net).items()}
    return export.example_inputs(net, batch=batch, bindings=values, seed=7)


def close(a: Any, b: Any, tol: float = 1e-4, equal_nan: bool = False) -> None:
    a = a if isinstance(a, (tuple, list)) else (a,)
    b = b if isinstance(b, (tuple, list)) else (b,)
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        y = torch.as_tensor(y)
        assert tuple(x.shape) == tuple(y.shape)
        torch.testing.assert_close(y.to(x.dtype), x, atol=tol, rtol=tol, equal_nan=equal_nan)


# --- python --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.relative_to(ROOT / "specs").with_suffix("").as_posix())
def test_python_export_is_the_built_model(path: Path, tmp_path: Path) -> None:
    checked, model = built(path)
    out = tmp_path / "exported.py"
    text = export.python_source(checked, model, str(path), None, out.name)
    out.write_text(text, encoding="utf-8")
    imported = {a.name.split(".")[0] for node in ast.walk(ast.parse(text)) if isinstance(node, ast.Import)
                for a in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(ast.parse(text))
                 if isinstance(node, ast.ImportFrom) and node.module}
    assert imported <= {"__future__", "collections", "pathlib", "typing", "torch"}, imported
    mod = export.load_python(str(out))
    top = getattr(mod, export.top_class(checked))()
    assert sum(p.numel() for p in top.parameters()) == sum(p.numel() for p in model.parameters())
    top.load_state_dict(model.state_dict())  # strict: the same names and shapes
    top.eval()
    with torch.no_grad():
        for name, net, m in networks(checked, model):
            x = fresh_input(net)
            close(m(*x), (getattr(top, name) if name else top)(*x), tol=0)


from dlspec.registry import REGISTRY  # noqa: E402

LAYER_CASES = [pytest.param(name, i, id=f"{name}-{i}") for name in sorted(REGISTRY)
               for i in range(len(REGISTRY[name].examples))]


@pytest.mark.parametrize("name, i", LAYER_CASES)
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_every_layer_example_exports(name: str, i: int, tmp_path: Path) -> None:
    """Each registry entry's examples (so a new layer type is covered once it has examples): the python file
    gives dlspec.build's outputs with its weights."""
    from conftest import spec_text

    entry = REGISTRY[name]
    ex = entry.examples[i]
    layer: dict[str, Any] = {name: ex.args}
    if entry.arity != 1:
        layer["from"] = ["input", "input"]
    checked = dlspec.check(dlspec.loads(spec_text([layer], ex.input, ex.dtype)))
    if not checked.ok or (entry.torch_min and not hasattr(torch.nn, name) and not entry.structural):
        pytest.skip("not buildable with this torch")
    torch.manual_seed(0)
    model = dlspec.build(checked).eval()
    out = tmp_path / "layer.py"
    out.write_text(export.python_source(checked, model, "layer", None), encoding="utf-8")
    top = getattr(export.load_python(str(out)), export.top_class(checked))()
    top.load_state_dict(model.state_dict())
    top.eval()
    x = export.example_inputs(checked, batch=3, seed=3)
    if ex.dtype == "long":
        x = (torch.randint(0, ex.args.get("num_embeddings", 2), x[0].shape),)
    with torch.no_grad():  # (nan where both give nan: Log of the negative values of a random batch)
        close(model(*x), top(*x), tol=0, equal_nan=True)


def _forward_shapes(text: str) -> tuple[str, list[tuple[int, str]]]:
    """The source with every commented forward line followed by a record of its variable's shape: (the new
    source, [(record index, the comment's shape)])."""
    out, wanted = [], []
    for line in text.splitlines():
        out.append(line)
        m = re.match(r"^(\s+)(\w+)(?:, _)? = .*#\s*(\(.*\))(?: long)?$", line)
        if m and not line.lstrip().startswith("#"):
            indent, var, shape = m.groups()
            out.append(f"{indent}SHAPES.append(tuple({var}.shape))")
            wanted.append((len(wanted), shape))
    return "SHAPES: list = []\n" + "\n".join(out).replace("from __future__ import annotations\n", ""), wanted


@pytest.mark.parametrize("name", ["lenet", "lstm_rows", "resnet_tiny", "inception_tiny", "transformer_tiny",
                                  "zoo/unet", "zoo/seq2seq_encoder", "dcgan"])
def test_each_forward_comment_is_the_shape_torch_gives(name: str, tmp_path: Path) -> None:
    """The shapes in the comments are the checker's; here each is compared with the tensor's real shape."""
    checked, model = built(spec_path(name))
    text, wanted = _forward_shapes(export.python_source(checked, model, name, None))
    assert len(wanted) >= len(checked.rows) or len(wanted) >= 3
    ns: dict[str, Any] = {"__name__": "shapes", "__file__": str(tmp_path / "x.py")}
    exec(compile(text, "shapes", "exec"), ns)  # noqa: S102 - the generated file, instrumented
    top = ns[export.top_class(checked)]().eval()
    got = []
    with torch.no_grad():
        for net_name, net, _ in networks(checked, model):
            x = fresh_input(net, batch=5)
            bindings = {s: v + 2 * (net.spec.symbols.get(s, 1) or 1) for s, v in export.symbol_values(net).items()}
            bindings["N"] = 5
            ns["SHAPES"].clear()
            (getattr(top, net_name) if net_name else top)(*x)
            got.extend((tuple(ns["SHAPES"]), bindings))
    records = [(shape, b) for shapes, b in zip(got[::2], got[1::2], strict=True) for shape in shapes]
    assert len(records) == len(wanted)
    for (real, b), (_, comment) in zip(records, wanted, strict=True):
        want = tuple(5 if part.strip() == "N" else int(dims.evaluate(part.strip(), b))
                     for part in comment.strip("()").split(",") if part.strip())
        assert real == want, f"{comment} in the comment, {real} from torch"


def test_the_file_runs_on_its_own(tmp_path: Path) -> None:
    """`python lenet.py` in a fresh interpreter that cannot import dlspec prints the checker's output shape."""
    checked, model = built(spec_path("lenet"))
    out = tmp_path / "lenet.py"
    export.write_python(checked, model, str(out), "specs/lenet.yaml", model.state_dict())
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    r = subprocess.run([sys.executable, "-I", str(out)], capture_output=True, text=True, cwd=tmp_path, env=env,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "(2, 10)"
    assert (tmp_path / "lenet.pt").is_file()


# --- TorchScript, torch.export ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", TRACED)
def test_torchscript_and_exported_program(name: str, tmp_path: Path) -> None:
    checked, model = built(spec_path(name))
    ts = export.write(checked, model, "torchscript", str(tmp_path / "m.torchscript.pt"), name)
    ep = export.write(checked, model, "exported-program", str(tmp_path / "m.pt2"), name)
    for w in ts + ep:
        assert w.difference is not None and w.difference <= export.TOLERANCE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for (_, net, m), a, b in zip(networks(checked, model), ts, ep, strict=True):
            scripted = torch.jit.load(a.path)
            program = torch.export.load(b.path).module()
            fixed = "fixed by torch.export" in b.what
            x = fresh_input(net, grow=0 if fixed else 2)
            with torch.no_grad():
                want = m(*x)
                close(want, scripted(*x))
                close(want, program(*x))


def test_lstm_models_script(tmp_path: Path) -> None:
    """torch.jit.script takes the exported LSTM model (it refused dlspec.build's, whose LSTM returns its sequence)."""
    checked, model = built(spec_path("lstm_rows"))
    (w,) = export.write(checked, model, "torchscript", str(tmp_path / "m.torchscript.pt"), "lstm_rows")
    assert "scripted" in w.what and "traced" not in w.what


# --- ONNX ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["lenet", "lstm_rows", "resnet_tiny", "transformer_tiny", "char_rnn", "dcgan",
                                  "zoo/unet", "zoo/cvae"])
def test_onnx_under_onnxruntime(name: str, tmp_path: Path) -> None:
    pytest.importorskip("onnxscript")
    ort = pytest.importorskip("onnxruntime")
    import onnx

    checked, model = built(spec_path(name))
    written = export.write(checked, model, "onnx", str(tmp_path / "m.onnx"), name)
    for (_, net, m), w in zip(networks(checked, model), written, strict=True):
        proto = onnx.load(w.path)
        assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
        sess = ort.InferenceSession(w.path, providers=["CPUExecutionProvider"])
        fixed = "fixed by torch.export" in w.what
        x = fresh_input(net, grow=0 if fixed else 2)
        got = sess.run(None, {i.name: t.numpy() for i, t in zip(sess.get_inputs(), x, strict=True)})
        with torch.no_grad():
            close(m(*x), got if len(got) > 1 else got[0])
        if fixed:  # another T is refused by onnxruntime, not computed with the traced number of steps
            with pytest.raises(Exception, match="(?i)dimension|shape"):
                y = fresh_input(net, grow=2)
                sess.run(None, {i.name: t.numpy() for i, t in zip(sess.get_inputs(), y, strict=True)})


# --- the command ---------------------------------------------------------------------------------------

def run(capsys: Any, *argv: Any) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = cli.main(["export", *map(str, argv)])
    c = capsys.readouterr()
    return rc, c.out, c.err


SMALL = ["train.data.n_train=40", "train.data.n_test=10"]


def test_a_trained_run_exports_with_its_weights(tmp_path: Path, capsys: Any, monkeypatch: Any) -> None:
    """From a run folder: the .py and its .pt give the checkpoint's model's outputs on the run's test data."""
    monkeypatch.chdir(ROOT)
    assert cli.main(["run", "specs/quickstart.yaml", *SMALL, "train.epochs=1", "--out", str(tmp_path / "runs"),
                     "--no-progress", "--quiet"]) == 0
    (folder,) = list((tmp_path / "runs").glob("*/*"))
    rc, out, err = run(capsys, folder, "--out", tmp_path / "qs.py")
    assert rc == 0, err
    assert "wrote" in out and "max |difference| from dlspec.build 0\n" in out
    assert (tmp_path / "qs.pt").is_file()
    from dlspec.session import Options, prepare

    s = prepare(str(folder / "spec.yaml"), [], Options(progress=False, quiet=True), training=False)
    s.model.load_state_dict(torch.load(folder / "checkpoint.pt", weights_only=False)["model"])
    s.model.eval()
    mod = export.load_python(str(tmp_path / "qs.py"))
    exported = mod.load().eval()  # its default: the sibling qs.pt
    x = s.bundle.test.x[:10].float()
    with torch.no_grad():
        torch.testing.assert_close(exported(x), s.model(x), atol=0, rtol=0)
    rc, _, err = run(capsys, folder, "--out", tmp_path / "qs.py")
    assert rc == 2 and "exists" in err  # nothing already written is replaced without --force
    assert run(capsys, folder, "--out", tmp_path / "qs.py", "--force")[0] == 0


@pytest.mark.parametrize("args, message", [
    (["specs/errors/forgotten_flatten.yaml"], "has errors: nothing exported"),
    (["specs/char_rnn.yaml", "--size", "T=1"], "--size T must be from 2"),
    (["specs/char_rnn.yaml", "--size", "Q=10"], "no symbolic size Q"),
    (["specs/char_rnn.yaml", "--size", "T"], "--size takes NAME=N"),
    (["specs/lenet.yaml", "--checkpoint", "missing.pt"], "no checkpoint file missing.pt"),
])
def test_refusals(args: list[str], message: str, tmp_path: Path, capsys: Any, monkeypatch: Any) -> None:
    monkeypatch.chdir(ROOT)
    rc, out, err = run(capsys, *args, "--out", tmp_path / "x.py")
    assert rc in (1, 2) and message in err and "Traceback" not in err
    assert not (tmp_path / "x.py").exists()


def test_a_checkpoint_of_another_model_is_named(tmp_path: Path, capsys: Any, monkeypatch: Any) -> None:
    monkeypatch.chdir(ROOT)
    assert cli.main(["run", "specs/quickstart.yaml", *SMALL, "train.epochs=1", "--out", str(tmp_path / "runs"),
                     "--no-progress", "--quiet"]) == 0
    (folder,) = list((tmp_path / "runs").glob("*/*"))
    rc, _, err = run(capsys, "specs/lenet.yaml", "--checkpoint", folder / "checkpoint.pt", "--out", tmp_path / "x.py")
    assert rc == 1 and "holds another model than specs/lenet.yaml: layers.0:" in err
    assert not (tmp_path / "x.py").exists()


def test_size_sets_the_traced_length(tmp_path: Path, capsys: Any, monkeypatch: Any) -> None:
    """An RNN that torch.export unrolls: --size T=N is the length the program takes."""
    monkeypatch.chdir(ROOT)
    rc, out, err = run(capsys, "specs/char_rnn.yaml", "--to", "exported-program", "--size", "T=9",
                       "--out", tmp_path / "c.pt2")
    assert rc == 0, err
    assert "fixed by torch.export at T=9" in out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.export.load(tmp_path / "c.pt2").module()
    assert tuple(program(torch.randn(5, 9, 62)).shape) == (5, 9, 62)
