"""`dlspec export` against hostile input: names that reach generated code, and where the files go.

- A spec's `name:` (free text) and the paths on the command line never become code: payloads that broke out
  of the docstring (and ran when the export check imported the file) export as text, run nothing, and the
  file still gives dlspec.build's outputs.  A property test: for any name, the file's code (every token but
  string literals and comments) is the file of a plain name's, but for the class name.
- Layer, input, block and network names that reach code are refused at their line by `dlspec check` where they
  cannot be Python names there (`training`, keywords, `_`-names, names Python reads NFKC-normalised as others);
  nn.Module's method names are stored as NAME_ (dlspec.build and the file agree, torch's own list says which).
- The files land whole or not at all: a full disk (monkeypatched, and a real tmpfs) leaves no .py without its
  .pt, no partial file, an existing file as it was; devices, FIFOs, folders and unwritable places given as
  --out are refused before anything is written.
"""

from __future__ import annotations

import ast
import errno
import io
import json
import os
import runpy
import subprocess
import sys
import tokenize
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")
import dlspec  # noqa: E402
from dlspec import cli, export, runs, safeio, schema  # noqa: E402
from dlspec.modules import Graph  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SMALL = "input: [4]\nlayers:\n  - Linear: 3\n  - Residual: {body: [Tanh]}\n"


def run(capsys: Any, *argv: Any) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = cli.main(["export", *map(str, argv)])
    c = capsys.readouterr()
    return rc, c.out, c.err


def spec(tmp_path: Path, name: str | None, body: str = SMALL, file: str = "m.yaml") -> Path:
    """A spec file whose `name:` is `name` exactly (a JSON string is a YAML double-quoted scalar)."""
    p = tmp_path / file
    p.write_text(("" if name is None else f"name: {json.dumps(name)}\n") + body, encoding="utf-8")
    return p


def checkpoint(tmp_path: Path, path: Path) -> Path:
    """A dlspec checkpoint of the spec's model (weights drawn with seed 1: not the fresh ones)."""
    torch.manual_seed(1)
    model = dlspec.build(dlspec.check(str(path)))
    ck = tmp_path / "ck.pt"
    runs.atomic_save({"model": model.state_dict()}, str(ck))
    return ck


def same_as_built(py: Path, path: Path, ck: Path | None = None) -> None:
    """The exported file, run as a script would import it, gives dlspec.build's outputs: with the checkpoint's
    weights, which its load() reads from the sibling .pt by default (else with dlspec.build's fresh ones)."""
    checked = dlspec.check(str(path))
    model = dlspec.build(checked).eval()
    if ck is not None:
        model.load_state_dict(runs.load_checkpoint(str(ck))["model"])
    ns = runpy.run_path(str(py), run_name="exported")
    exported = ns["load"]().eval() if ck is not None else ns["load"](None).eval()
    if ck is None:
        exported.load_state_dict(model.state_dict())
    x = export.example_inputs(checked, batch=3, seed=5)
    with torch.no_grad():
        torch.testing.assert_close(exported(*x), model(*x), atol=0, rtol=0)


# --- 1. a spec's name and the paths are text, never code ----------------------------------------------------

def payloads(marker: Path) -> list[str]:
    """Names that broke out of the exported file's docstrings; each would create `marker` if it ran."""
    touch = f"open({str(marker)!r}, 'w')"
    return [
        # closes the head docstring, opens a ''' string that swallows `from __future__` up to the class
        # docstring, where it closes: the payload ran at import (then NameError: name 'Path' is not defined)
        f"x\"\"\"\n''';{touch}\nclass Z:\n    \"\"\"",
        f"x\"\"\"\n{touch}\n\"\"\"",  # SyntaxError: from __future__ imports must occur at the beginning
        'a"""b',
        "ends in a backslash \\",
        "nul \x00 and bell \x07, bidi \u202e and a line\u2028separator",
        "é ☃ 名前",
    ]


@pytest.mark.parametrize("fmt", ["python", "torchscript"])
def test_a_spec_name_with_code_exports_as_text(fmt: str, tmp_path: Path, capsys: Any) -> None:
    marker = tmp_path / "PAYLOAD_RAN"
    for i, name in enumerate(payloads(marker)):
        path = spec(tmp_path, name)
        out = tmp_path / f"m{i}{export.SUFFIX[fmt]}"
        rc, stdout, err = run(capsys, path, "--to", fmt, "--out", out)
        assert rc == 0, err
        assert not marker.exists(), name
        assert stdout.splitlines()[0] == f"{safeio.shown(name)}, fresh weights (train.seed; no --checkpoint):"
        if fmt == "python":
            text = out.read_text(encoding="utf-8")
            tree = ast.parse(text)
            want = "".join(c if c.isprintable() else repr(c)[1:-1] for c in name)  # repr()'s escapes
            assert ast.get_docstring(tree, clean=False).startswith(f"{want}, exported by dlspec")  # type: ignore[union-attr]
            same_as_built(out, path)
        else:
            loaded = torch.jit.load(str(out))
            checked = dlspec.check(str(path))
            torch.manual_seed(0)
            model = dlspec.build(checked).eval()
            x = export.example_inputs(checked, batch=3, seed=5)
            torch.testing.assert_close(loaded(*x), model(*x), atol=1e-6, rtol=1e-6)
        assert not marker.exists(), name


@pytest.mark.skipif(sys.platform == "win32", reason="quotes in a file name")
def test_an_out_path_with_code_is_text(tmp_path: Path, capsys: Any) -> None:
    """The .pt's name (from --out) was pasted into load()'s default: `Path(__file__).with_name("NAME")`."""
    marker = tmp_path / "PAYLOAD_RAN"
    path = spec(tmp_path, None)
    ck = checkpoint(tmp_path, path)
    out = tmp_path / f'a")if open({str(marker)!r}, "w")else("b.py'
    rc, _, err = run(capsys, path, "--checkpoint", ck, "--out", out)
    assert rc == 0, err
    assert not marker.exists()
    assert out.with_suffix(".pt").is_file()
    same_as_built(out, path, ck)  # load() finds the sibling .pt under its odd name
    assert not marker.exists()


def _code_tokens(text: str, cls: str) -> list[tuple[int, str]]:
    """The file's tokens but for string literals and comments, its class name as CLASS."""
    toks = tokenize.generate_tokens(io.StringIO(text).readline)
    return [(t.type, "CLASS" if t.string == cls else t.string) for t in toks
            if t.type not in (tokenize.STRING, tokenize.COMMENT, tokenize.NL)]


IDENTIFIER = st.text(st.characters(categories=("Lu", "Ll", "Lo", "Nd"), include_characters="_"), min_size=1,
                     max_size=8).filter(lambda n: n.isidentifier() and schema.layer_name_problem(n) is None
                                        and n != "input")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.text(max_size=40), layers=st.lists(IDENTIFIER, min_size=3, max_size=3, unique=True))
def test_any_name_reaches_the_file_as_text(name: str, layers: list[str]) -> None:
    """Any text as the spec's name, any good identifiers as layer names: the file parses; its code is a plain
    name's file's but for the class name (the name is only in literals and comments); it gives dlspec.build's
    outputs."""
    a, b, c = (json.dumps(n, ensure_ascii=False) for n in layers)  # quoted: `Null`, `on` are not text to YAML
    body = (f"input: [4]\nlayers:\n  - Linear: 4\n    name: {a}\n  - Tanh:\n    name: {b}\n"
            f"  - Add: [{a}, {b}]\n  - Linear: 3\n    name: {c}\n")
    checked = dlspec.check(dlspec.loads("name: Plain\n" + body, "spec.yaml"))
    assert checked.ok, [d.message for d in checked.diagnostics]
    torch.manual_seed(0)
    model = dlspec.build(checked).eval()
    plain = export.python_source(checked, model, "spec.yaml", "w.pt", "m.py")
    checked.spec.name = name
    text = export.python_source(checked, model, "spec.yaml", "w.pt", "m.py")
    tree = ast.parse(text)
    cls = export.top_class(checked)
    assert cls.isascii() and cls.isidentifier()
    assert _code_tokens(text, cls) == _code_tokens(plain, "Plain")
    want = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in name)
    assert ast.get_docstring(tree, clean=False).startswith(f"{want}, exported by")  # type: ignore[union-attr]
    ns: dict[str, Any] = {"__name__": "exported", "__file__": "m.py"}
    exec(compile(tree, "m.py", "exec"), ns)  # noqa: S102 - the file under test
    top = ns[cls]().eval()
    top.load_state_dict(model.state_dict())
    x = export.example_inputs(checked, batch=3, seed=2)
    with torch.no_grad():
        torch.testing.assert_close(top(*x), model(*x), atol=0, rtol=0)


@pytest.mark.parametrize("fmt", ["python", "torchscript"])
def test_the_check_imports_no_file(fmt: str, tmp_path: Path, monkeypatch: Any) -> None:
    """The export's check (and the traced forms' module) run the source text dlspec generated, compiled in
    memory: never a file, which anything may have changed since it was written (the old check imported the
    written .py back, and ran whatever it held)."""
    import importlib.util

    imported: list[Any] = []

    def spy(*args: Any, **kwargs: Any) -> None:
        imported.append(args)
        raise AssertionError("a file was imported")

    monkeypatch.setattr(importlib.util, "spec_from_file_location", spy)
    path = spec(tmp_path, "Net")
    checked = dlspec.check(str(path))
    model = dlspec.build(checked).eval()
    (w,) = export.write(checked, model, fmt, str(tmp_path / f"net{export.SUFFIX[fmt]}"), str(path))
    assert w.difference == 0 and imported == []


# --- 2. names that reach code: refused at their line, or stored as NAME_ -----------------------------------

def diagnose(text: str) -> list[tuple[int | None, int | None, str, str, str | None]]:
    checked = dlspec.check(dlspec.loads(text, "spec.yaml"))
    return [(d.line, d.column, str(d.code), d.message, d.help) for d in checked.diagnostics]


LAYER = "input: [4]\nlayers:\n  - Linear: 4\n    name: {}\n  - ReLU\n"


@pytest.mark.parametrize("name, message, help", [
    ("training", "name 'training' is taken: every torch module holds its training flag under it (model.train() "
     "and model.eval() set it)", "give the layer another name, e.g. `name: training_`"),
    ("class", "name 'class' is a Python keyword, which Python code cannot use as a name",
     "write another name, e.g. `name: class_`"),
    ("None", "name 'None' is a Python keyword, which Python code cannot use as a name",
     "write another name, e.g. `name: None_`"),
    ("_modules", "name '_modules' starts with _, as the names torch keeps a module's own state under (_modules, "
     "_parameters, __dict__)", "write `name: modules`"),
    ("__init__", "name '__init__' starts with _, as the names torch keeps a module's own state under (_modules, "
     "_parameters, __dict__)", "write `name: init`"),
    ("ﬁ", "name 'ﬁ' is 'fi' to Python (it reads names NFKC-normalised), so exported code would not find it",
     "write `name: fi`"),
    ("ｃｏｎｖ1", "name 'ｃｏｎｖ1' is 'conv1' to Python (it reads names NFKC-normalised), so exported code would "
     "not find it", "write `name: conv1`"),
])
def test_a_layer_name_that_cannot_be_one_is_refused_at_its_line(name: str, message: str, help: str) -> None:
    assert diagnose(LAYER.format(name)) == [(4, 11, "invalid-argument", message, help)]


def test_two_names_one_to_python_are_refused() -> None:
    """`ﬁ` and `fi` are two names to YAML and dlspec.build, one to Python: the file's `self.ﬁ` is `self.fi`."""
    text = "input: [4]\nlayers:\n  - Linear: 4\n    name: fi\n  - Linear: 4\n    name: ﬁ\n"
    assert [d[:3] for d in diagnose(text)] == [(6, 11, "invalid-argument")]


@pytest.mark.parametrize("text, where, message", [
    ("inputs:\n  class: [4]\n  b: [4]\nlayers:\n  - Add: [class, b]\n", (2, 3),
     "input name 'class' is a Python keyword, which Python code cannot use as a name"),
    ("inputs:\n  ﬁ: [4]\n  fi: [4]\nlayers:\n  - Add: [fi, fi]\n", (2, 3),
     "input name 'ﬁ' is 'fi' to Python (it reads names NFKC-normalised), so exported code would not find it"),
    ("blocks:\n  def: [ReLU]\ninput: [4]\nlayers: [Linear: 4]\n", (2, 3),
     "block name 'def' is a Python keyword, which Python code cannot use as a name"),
    ("networks:\n  lambda:\n    input: [4]\n    layers: [ReLU]\n", (2, 3),
     "network name 'lambda' is a Python keyword, which Python code cannot use as a name"),
    ("networks:\n  ﬁ:\n    input: [4]\n    layers: [ReLU]\n", (2, 3),
     "network name 'ﬁ' is 'fi' to Python (it reads names NFKC-normalised), so exported code would not find it"),
])
def test_input_block_and_network_names_are_python_names(text: str, where: tuple[int, int], message: str) -> None:
    got = [d for d in diagnose(text) if d[3] == message]
    assert got and got[0][:2] == where, diagnose(text)


def _public(names: Any) -> set[str]:
    return {n for n in names if not n.startswith("_")}


def test_the_static_attribute_lists_hold_torchs() -> None:
    """`dlspec check` knows nn.Module's attribute names without torch: the lists hold every public attribute of
    the installed torch's nn.Module (its methods and its instances' `training`), nn.Sequential and dlspec's
    Graph, the modules a layer list's layers are put in."""
    module = _public(dir(torch.nn.Module)) | _public(vars(torch.nn.Module()))
    assert module <= schema.NN_MODULE_ATTRIBUTES, sorted(module - schema.NN_MODULE_ATTRIBUTES)
    containers = module | _public(dir(torch.nn.Sequential)) | _public(dir(Graph)) | \
        _public(vars(Graph({}, [], ["input"], [])))
    assert containers <= schema.LAYER_ATTRIBUTES, sorted(containers - schema.LAYER_ATTRIBUTES)
    assert "training" in module and {"append", "steps"} <= containers  # (what the lists are for)


@pytest.mark.parametrize("graph", [False, True], ids=["sequential", "graph"])
@pytest.mark.parametrize("name", ["forward", "parameters", "state_dict", "to", "cuda", "eval", "train", "type",
                                  "append", "pop", "steps", "input_names"])
def test_a_method_name_is_stored_with_an_underscore(name: str, graph: bool, tmp_path: Path, capsys: Any) -> None:
    """dlspec.build stores the layer as NAME_ (torch refuses a module under an attribute's name; nn.Sequential's
    `append` was a KeyError, Graph's `steps` a TypeError): `dlspec check` says nothing, the model's own
    attribute is untouched, `from:` reads the name, and the export's state dict and outputs are dlspec.build's."""
    text = (f"name: Net\ninput: [4]\nlayers:\n  - Linear: 4\n    name: {name}\n  - Tanh\n"
            + (f"  - Add: [-1, {name}]\n" if graph else "") + f"  - Linear: 3\n    name: {name}2\n")
    path = tmp_path / "net.yaml"
    path.write_text(text)
    checked = dlspec.check(str(path))
    assert checked.ok and not checked.diagnostics
    model = dlspec.build(checked)
    assert isinstance(model, Graph) == graph
    assert list(model.state_dict())[:2] == [f"{name}_.weight", f"{name}_.bias"]
    assert isinstance(getattr(model, f"{name}_"), torch.nn.Linear)
    assert not isinstance(getattr(model, name, None), torch.nn.Module)
    model.train()
    model.eval()
    assert model.training is False
    ck = checkpoint(tmp_path, path)
    rc, _, err = run(capsys, path, "--checkpoint", ck, "--out", tmp_path / "net.py")
    assert rc == 0, err
    same_as_built(tmp_path / "net.py", path, ck)


def test_class_names_avoid_what_the_file_defines(tmp_path: Path, capsys: Any) -> None:
    """A spec named Residual (a class the file copies in), Path (which load() uses), None (a keyword), or
    networks whose class names would be one: each class is its own."""
    for name in ("Residual", "Path", "none", "OrderedDict", "value error", "load"):
        path = spec(tmp_path, name)
        ck = checkpoint(tmp_path, path)
        out = tmp_path / "m.py"
        rc, _, err = run(capsys, path, "--checkpoint", ck, "--out", out, "--force")
        assert rc == 0, (name, err)
        same_as_built(out, path, ck)
    body = ("networks:\n  gen_a:\n    input: [4]\n    layers: [{Linear: 3}]\n"
            "  genA:\n    input: [4]\n    layers: [{Linear: 5}]\n")
    path = spec(tmp_path, "gan", body)
    rc, _, err = run(capsys, path, "--out", tmp_path / "gan.py")
    assert rc == 0, err
    classes = [n.name for n in ast.parse((tmp_path / "gan.py").read_text()).body if isinstance(n, ast.ClassDef)]
    assert len(classes) == len(set(classes)) == 3


# --- 3. the files: whole or not at all, and only where they may go ---------------------------------------

class FullDisk:
    """safeio's file writer failing like a full disk at the files whose name starts with `prefix`: half the
    bytes written, then ENOSPC (as tests/test_faults.py's)."""

    def __init__(self, monkeypatch: Any, prefix: str):
        write_file = safeio._write_file

        def failing(path: str, data: Any) -> None:
            if os.path.basename(path).startswith(f".{prefix}"):
                with open(path, "wb") as f:
                    f.write(bytes(data)[:len(data) // 2])
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
            write_file(path, data)

        monkeypatch.setattr(safeio, "_write_file", failing)


@pytest.mark.parametrize("full", ["m.py", "m.pt"])
def test_a_full_disk_leaves_no_partial_export(full: str, tmp_path: Path, capsys: Any, monkeypatch: Any) -> None:
    """The .py and its .pt: both land or neither does; files there before stay as they were."""
    path = spec(tmp_path, "M")
    ck = checkpoint(tmp_path, path)
    out = tmp_path / "out"
    out.mkdir()
    FullDisk(monkeypatch, full)
    rc, stdout, err = run(capsys, path, "--checkpoint", ck, "--out", out / "m.py")
    assert (rc, stdout) == (1, "")
    assert err == f"dlspec export: no space left on device ({out / full}): nothing was written\n"
    assert os.listdir(out) == []
    (out / "m.py").write_text("old py")
    (out / "m.pt").write_text("old pt")
    rc, _, err = run(capsys, path, "--checkpoint", ck, "--out", out / "m.py", "--force")
    assert rc == 1 and err.count("\n") == 1
    assert sorted(os.listdir(out)) == ["m.pt", "m.py"]
    assert ((out / "m.py").read_text(), (out / "m.pt").read_text()) == ("old py", "old pt")


def test_a_full_disk_leaves_no_network_of_several(tmp_path: Path, capsys: Any, monkeypatch: Any) -> None:
    """A file per network (dcgan.generator.pt2, dcgan.discriminator.pt2): all of them, or none."""
    FullDisk(monkeypatch, "dcgan.discriminator")
    rc, _, err = run(capsys, ROOT / "specs" / "dcgan.yaml", "--to", "torchscript", "--out",
                     tmp_path / "dcgan.torchscript.pt")
    assert rc == 1 and err.startswith("dlspec export: no space left on device (") and err.count("\n") == 1
    assert os.listdir(tmp_path) == []


def unshare_works() -> bool:
    try:
        return subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
                              capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="tmpfs in a mount namespace: Linux")
def test_a_real_full_tmpfs(tmp_path: Path) -> None:
    """A 128 KiB tmpfs (a private mount namespace, `unshare -rm`): LeNet's .py fits, its 240 KB .pt does not."""
    if not unshare_works():
        pytest.skip("unshare -rm with a tmpfs mount is not allowed here")
    path = ROOT / "specs" / "lenet.yaml"
    ck = checkpoint(tmp_path, path)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    script = (f"mount -t tmpfs -o size=128k tmpfs {mnt} || exit 99\n"
              f"{sys.executable} -m dlspec export {path} --checkpoint {ck} --out {mnt}/lenet.py "
              f"> {tmp_path}/out 2> {tmp_path}/err\necho $? > {tmp_path}/rc\nls -A {mnt} > {tmp_path}/ls\n")
    p = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert p.returncode == 0, p.stderr
    err = (tmp_path / "err").read_text()
    assert (tmp_path / "rc").read_text() == "1\n", err
    assert err == f"dlspec export: no space left on device ({mnt}/lenet.pt): nothing was written\n"
    assert (tmp_path / "ls").read_text() == ""


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs on this system")
    p = tmp_path / "pipe.py"
    os.mkfifo(p)
    return p


def export_process(*argv: Any, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`dlspec export` in another process (a FIFO opened for writing would block it: the timeout ends it)."""
    return subprocess.run([sys.executable, "-m", "dlspec", "export", *map(str, argv)], capture_output=True, text=True,
                          cwd=cwd, timeout=120, env=dict(os.environ, PYTHONPATH=str(ROOT)))


def test_bad_out_targets_are_refused_before_anything_is_written(tmp_path: Path, fifo: Path, capsys: Any) -> None:
    path = spec(tmp_path, "M")
    p = export_process(path, "--out", fifo, "--force", cwd=tmp_path)
    assert (p.returncode, p.stderr) == (2, f"dlspec export: {fifo} is a FIFO (named pipe): give the path of a file "
                                           "to write\n")
    plain = tmp_path / "plain"
    plain.write_text("x")
    for out, why in [("/dev/full", "/dev/full is a character device: give the path of a file to write"),
                     (tmp_path, f"{tmp_path} is a folder: give the path of a file to write"),
                     (plain / "m.py", f"cannot write {plain / 'm.py'}: not a directory ({plain} is a file)"),
                     (plain / "d" / "m.py", f"cannot write {plain / 'd' / 'm.py'}: not a directory ({plain} is a "
                      "file, so no folder can be made in it)"),
                     (plain, f"{plain} exists: give another --out, or --force to replace it"),
                     ("", "an empty path is not a file to write"),
                     (f"{tmp_path}/new/", f"{tmp_path}/new/ is a folder's path: give the path of a file to write")]:
        rc, stdout, err = run(capsys, path, "--out", out)
        assert (rc, stdout, err) == (2, "", f"dlspec export: {why}\n")
    assert plain.read_text() == "x"
    ck = checkpoint(tmp_path, path)
    rc, _, err = run(capsys, path, "--checkpoint", ck, "--out", tmp_path / "m.pt")
    assert (rc, err) == (2, f"dlspec export: --out {tmp_path / 'm.pt'}: the weights go beside the .py file as "
                            f"{tmp_path / 'm.pt'}, the same file: give a path ending in .py\n")
    assert sorted(os.listdir(tmp_path)) == ["ck.pt", "m.yaml", "pipe.py", "plain"]


def test_a_network_file_that_exists_is_not_replaced(tmp_path: Path, capsys: Any) -> None:
    """The files are the networks' (gan.g.pt2): those are the ones that must not exist without --force."""
    body = "networks:\n  g:\n    input: [4]\n    layers: [{Linear: 3}]\n  d:\n    input: [3]\n    layers: [{Linear: 1}]\n"
    path = spec(tmp_path, "gan", body)
    (tmp_path / "gan.d.torchscript.pt").write_text("mine")
    rc, _, err = run(capsys, path, "--to", "torchscript", "--out", tmp_path / "gan.torchscript.pt")
    assert (rc, err) == (2, f"dlspec export: {tmp_path / 'gan.d.torchscript.pt'} exists: give another --out, or "
                            "--force to replace it\n")
    assert (tmp_path / "gan.d.torchscript.pt").read_text() == "mine" and not (tmp_path / "gan.g.torchscript.pt").exists()


def test_an_out_in_proc_or_a_missing_folder(tmp_path: Path, capsys: Any) -> None:
    """/proc refuses the write: one line, exit 1.  A missing folder is made (and removed again when the export
    fails)."""
    path = spec(tmp_path, "M")
    rc, _, err = run(capsys, path, "--out", "/proc/self/m.py")
    assert rc in (1, 2) and err.startswith("dlspec export: ") and err.count("\n") == 1 and "internal" not in err
    rc, _, err = run(capsys, path, "--out", tmp_path / "new" / "deeper" / "m.py")
    assert rc == 0, err
    assert os.listdir(tmp_path / "new" / "deeper") == ["m.py"]


def test_the_default_out_is_one_safe_file_name(tmp_path: Path, capsys: Any, monkeypatch: Any) -> None:
    """A run folder's spec.yaml is exported under its spec's name, made one file-name part in the current folder."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    spec(run_dir, "../../Evil/" + "x" * 300, file="spec.yaml")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    rc, _, err = run(capsys, run_dir)
    assert rc == 0, err
    (made,) = os.listdir(work)
    assert made.endswith(".py") and made[:-3].isidentifier() and len(made) <= 103, made
    assert sorted(os.listdir(tmp_path)) == ["run", "work"]
