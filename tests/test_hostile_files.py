"""Files a command reads and writes (issue 22): `show`, `generate`, `predict --image`, `check --diagram`, `schema
--output` and standard output, given hostile paths, names and option values.

Every output lands under the folder the user named and is refused before anything is written when it is a
FIFO, a device or a folder; a full disk is one line, status 1, and leaves every file as it was; a spec given
as a FIFO or a device is refused without blocking; a terminal escape in a name is printed escaped; degenerate
option values are refused in one line.  A hang is caught by a subprocess's generous timeout (never timed)."""

from __future__ import annotations

import errno
import io
import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
sys.path.insert(0, os.path.dirname(__file__))
from test_train import dlspec_main, run_dir  # noqa: E402
from test_train import test_datasets as _test_datasets  # noqa: E402,F401 - the fixture registering tiny_* data

from dlspec import cli, safeio  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
ESC = "\x1b[31m"
FIXED = """\
name: NAME
input: [1, 8, 8]
layers:
  - Conv2d: {out_channels: 2, kernel_size: 3}
  - ReLU
  - Conv2d: {out_channels: 3, kernel_size: 3}
"""
GAN = """\
name: TinyGAN
networks:
  generator:
    input: [3]
    layers:
      - Linear: 8
      - ReLU
      - Linear: 4
  discriminator:
    input: [4]
    layers:
      - Linear: 8
      - LeakyReLU: 0.2
      - Linear: 1
train:
  task: adversarial
  data: {name: tiny_blobs}
  epochs: 1
  batch_size: 32
  optimizer: {Adam: {lr: 0.01}}
  device: cpu
"""
AE = """\
name: AE
input: [4]
layers:
  - Linear: {out_features: 3}
  - Tanh
  - Linear: {out_features: 4}
train:
  task: reconstruction
  data: {name: tiny_blobs}
  epochs: 1
  batch_size: 32
  optimizer: {SGD: {lr: 0.1}}
  device: cpu
"""
CHARS = """\
name: Chars
input: {shape: [T], dtype: long}
layers:
  - Embedding: {num_embeddings: 28, embedding_dim: 8}
  - GRU: {hidden_size: 24, batch_first: true}
  - Linear: {out_features: 28}
train:
  data: {name: tiny_chars}
  epochs: 1
  batch_size: 16
  optimizer: {Adam: {lr: 0.01}}
  device: cpu
"""


def spec(folder: Path, name: str = "NAME", file: str = "spec.yaml") -> Path:
    p = folder / file
    p.write_text(FIXED.replace("name: NAME", "name: " + json.dumps(name)), encoding="utf-8")
    return p


def dlspec(*argv: Any, cwd: Path = REPO, stdout: Any = subprocess.PIPE) -> subprocess.CompletedProcess[str]:
    """dlspec in a fresh process (a hang fails the test after 120 s instead of stopping the suite)."""
    return subprocess.run([sys.executable, "-m", "dlspec", *map(str, argv)], stdout=stdout, stderr=subprocess.PIPE,
                          text=True, timeout=120, cwd=str(cwd), env={**os.environ, "PYTHONPATH": str(REPO)})


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err and "internal error" not in err, err
    return lines[0]


def files_under(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if not p.is_dir()}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: Any) -> dict[str, Path]:
    """A run folder each of a tiny generator, autoencoder and character model (trained one epoch)."""
    root = tmp_path_factory.mktemp("runs")
    out = {}
    for name, text in (("gan", GAN), ("ae", AE), ("chars", CHARS)):
        (root / f"{name}.yaml").write_text(text, encoding="utf-8")
        rc = cli.main(["run", str(root / f"{name}.yaml"), "--out", str(root / name), "--quiet", "--no-progress"])
        assert rc == 0
        out[name] = run_dir(root / name)
    return out


def hostile_outputs(tmp_path: Path) -> dict[str, Path]:
    """A FIFO, a folder and a symlink to a character device (/dev/null: if a refusal failed, the rename would
    replace the link, never the device)."""
    out = {"folder": tmp_path / "folder.png"}
    out["folder"].mkdir()
    if hasattr(os, "mkfifo"):
        out["fifo"] = tmp_path / "fifo.png"
        os.mkfifo(out["fifo"])
    if os.path.exists("/dev/null"):
        out["device"] = tmp_path / "device.png"
        os.symlink("/dev/null", out["device"])
    return out


def unchanged(outs: dict[str, Path]) -> None:
    for what, p in outs.items():
        st = os.lstat(p)
        if what == "folder":
            assert stat.S_ISDIR(st.st_mode) and not any(p.iterdir())
        elif what == "fifo":
            assert stat.S_ISFIFO(st.st_mode)
        else:
            assert stat.S_ISLNK(st.st_mode) and os.readlink(p) == "/dev/null"
    assert not [n for n in os.listdir(next(iter(outs.values())).parent) if n.endswith(".tmp")]


def enospc(monkeypatch: Any, after: int = 0) -> list[str]:
    """Every file write after the first `after` fails as on a full disk (in safeio, where all of them go)."""
    real = safeio._write_file
    calls: list[str] = []

    def full(path: str, data: Any) -> None:
        calls.append(path)
        if len(calls) > after:
            with open(path, "wb") as f:
                f.write(bytes(data)[:10])  # a part, as a real full disk leaves it
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(path, data)

    monkeypatch.setattr(safeio, "_write_file", full)
    return calls


# --- 1. show: the pictures stay under the folder named --------------------------------------------------------

@pytest.mark.parametrize("name", ["ABS", "../../escaped", "a/../../b", "..", "/"], ids=["absolute", "dots", "mixed",
                                                                                        "dotdot", "root"])
def test_a_spec_name_never_leads_show_out_of_its_folder(tmp_path, capsys, monkeypatch, name):
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    target = tmp_path / "outside"
    path = spec(work, str(target) if name == "ABS" else name)
    monkeypatch.chdir(work)
    rc, out, err = dlspec_main(capsys, "show", path)
    assert rc == 0, err
    assert not target.exists() and all(work in p.parents for p in tmp_path.rglob("*") if p.is_file())  # in the cwd
    (folder,) = (work / "show").iterdir()
    assert files_under(work / "show") == {f"{folder.name}/00_conv1.png", f"{folder.name}/02_conv2.png"}
    assert f"into show/{folder.name}:" in out
    rc, out, err = dlspec_main(capsys, "show", path, "--out", work / "o")
    assert rc == 0 and files_under(work / "o") == {"00_conv1.png", "02_conv2.png"}, err


def test_a_symlink_in_the_out_folder_is_refused(tmp_path, capsys):
    out, outside = tmp_path / "o", tmp_path / "outside.png"
    out.mkdir()
    os.symlink(outside, out / "00_conv1.png")
    rc, _, err = dlspec_main(capsys, "show", spec(tmp_path), "--out", out)
    assert rc == 2 and "leads outside" in one_line(err) and not outside.exists()


# --- 2. an output that is a FIFO, a device or a folder is refused before anything is written ------------------

@pytest.mark.parametrize("command", ["schema", "check", "show"])
def test_fifo_device_folder_outputs_of_the_torch_free_commands(tmp_path, command):
    outs = hostile_outputs(tmp_path)
    path = spec(tmp_path)
    if command == "show":  # a folder is what show writes into: a file is refused instead
        outs.pop("folder").rmdir()
        outs["file"] = tmp_path / "file"
        outs["file"].write_bytes(b"")
    kinds = {"folder": "is a folder", "fifo": "is a FIFO (named pipe)", "device": "is a character device",
             "file": "is a file"}
    for what, target in outs.items():
        argv = {"schema": ["schema", "--output", target], "check": ["check", path, "--diagram", target],
                "show": ["show", path, "--out", target]}[command]
        p = dlspec(*argv)  # (before: a FIFO blocked, a folder was an internal error, a device was replaced)
        assert p.returncode == 2 and p.stdout == "", (what, p.stderr)
        assert one_line(p.stderr) == f"dlspec {command}: --{argv[-2].lstrip('-')}: {target} {kinds[what]}: give the " \
            f"path of a {'folder for the pictures' if command == 'show' else 'file to write'}"
    if command == "show":
        assert (tmp_path / "file").read_bytes() == b"" and not stat.S_ISLNK(os.lstat(tmp_path / "file").st_mode)
        outs.pop("file")
    unchanged(outs)


def test_fifo_device_folder_pictures_of_generate_and_predict(tmp_path, capsys, runs):
    outs = hostile_outputs(tmp_path)
    for what, target in outs.items():
        for command, run in (("generate", runs["gan"]), ("predict", runs["ae"])):
            rc, out, err = dlspec_main(capsys, command, run, "--image", target)
            assert rc == 2 and out == "", (command, what, err)
            assert one_line(err).startswith(f"dlspec {command}: --image: {target}")
    unchanged(outs)
    for command, run in (("generate", runs["gan"]), ("predict", runs["ae"])):
        rc, _, err = dlspec_main(capsys, command, run, "--image", "")
        assert rc == 2 and "an empty path" in one_line(err)
        rc, _, err = dlspec_main(capsys, command, run, "--image", tmp_path / "no" / "x.png")
        assert rc == 2 and "does not exist" in one_line(err)


def test_an_output_into_proc_is_one_line(tmp_path, capsys, runs):
    if not os.path.isdir("/proc/self"):
        pytest.skip("no /proc")
    rc, _, err = dlspec_main(capsys, "generate", runs["gan"], "--image", "/proc/self/dlspec.png")
    assert rc == 1 and one_line(err).startswith("dlspec generate: ")
    rc, _, err = dlspec_main(capsys, "schema", "--output", "/proc/self/dlspec.json")
    assert rc == 1 and one_line(err).startswith("dlspec schema: ")


# --- 3. a full disk: one line, status 1, every file as it was -------------------------------------------------

def test_show_on_a_full_disk_writes_no_picture(tmp_path, capsys, monkeypatch):
    path = spec(tmp_path)
    kept = tmp_path / "kept"
    rc, _, _ = dlspec_main(capsys, "show", path, "--out", kept)
    assert rc == 0
    before = {n: (kept / n).read_bytes() for n in os.listdir(kept)}
    calls = enospc(monkeypatch, after=1)  # the first picture is written, the second is not: neither goes in
    rc, out, err = dlspec_main(capsys, "show", path, "--out", kept, "--layers", "all")
    assert rc == 1 and len(calls) == 2
    assert one_line(err) == f"dlspec show: no space left on device ({kept / '01_relu1.png'}); no picture written"
    assert {n: (kept / n).read_bytes() for n in os.listdir(kept)} == before  # no temp file, nothing replaced
    new = tmp_path / "new" / "deeper"
    rc, _, err = dlspec_main(capsys, "show", path, "--out", new)
    assert rc == 1 and "no space left on device" in one_line(err) and not (tmp_path / "new").exists()


@pytest.mark.parametrize("command", ["generate", "predict", "schema", "check"])
def test_a_full_disk_leaves_the_file_as_it_was(tmp_path, capsys, monkeypatch, runs, command):
    target = tmp_path / "old.png"
    target.write_bytes(b"what was there")
    path = spec(tmp_path)
    argv = {"generate": ["generate", runs["gan"], "--image", target], "predict": ["predict", runs["ae"], "--image", target],
            "schema": ["schema", "--output", target], "check": ["check", path, "--diagram", target]}[command]
    enospc(monkeypatch)
    rc, _, err = dlspec_main(capsys, *argv)
    assert rc == 1 and f"no space left on device ({target})" in one_line(err)
    assert target.read_bytes() == b"what was there"  # and no temp file left beside it
    assert sorted(os.listdir(tmp_path)) == ["old.png", "spec.yaml"]


# --- 4. standard output that cannot be written ----------------------------------------------------------------

@pytest.mark.parametrize("argv", [["schema"], ["check", "SPEC"], ["check", "SPEC", "--format", "json"], ["layers"],
                                  ["codes"], ["--version"], ["check", "--help"]])
def test_a_full_standard_output_is_one_line(tmp_path, argv):
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    path = spec(tmp_path)
    with open("/dev/full", "w") as full:  # (written to, as a shell's `> /dev/full` does; never replaced)
        p = dlspec(*[path if a == "SPEC" else a for a in argv], stdout=full)
    assert p.returncode == 1
    assert one_line(p.stderr) == "dlspec: cannot write to standard output: no space left on device"


def test_a_closed_pipe_ends_silently(tmp_path):
    p = subprocess.Popen([sys.executable, "-m", "dlspec", "schema"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         cwd=str(REPO), env={**os.environ, "PYTHONPATH": str(REPO)})
    assert p.stdout is not None and p.stderr is not None
    p.stdout.close()  # the reader is gone before dlspec writes: EPIPE
    err = p.stderr.read()
    assert p.wait(timeout=120) == 0 and err == b""


class _Failing(io.StringIO):
    def __init__(self, code: int):
        super().__init__()
        self.code = code

    def write(self, text: str) -> int:
        raise OSError(self.code, os.strerror(self.code))


@pytest.mark.parametrize("code", [errno.EIO, errno.ENOSPC])
def test_a_failed_write_to_standard_output_is_not_an_internal_error(tmp_path, capsys, monkeypatch, code):
    path = spec(tmp_path)
    monkeypatch.setattr(sys, "stdout", _Failing(code))
    rc = cli.main(["check", str(path)])
    err = capsys.readouterr().err
    assert rc == 1 and one_line(err) == f"dlspec: cannot write to standard output: {os.strerror(code).lower()}"
    assert isinstance(sys.stdout, _Failing)  # given back as it was


# --- 5. an empty value, a selection of nothing ----------------------------------------------------------------

def test_empty_output_paths_and_empty_selections_are_refused(tmp_path, capsys):
    path = spec(tmp_path)
    rc, out, err = dlspec_main(capsys, "schema", "--output", "")
    assert rc == 2 and out == "" and one_line(err) == "dlspec schema: --output: an empty path is not a file"
    for layers in ("", ",", " , "):
        rc, out, err = dlspec_main(capsys, "show", path, "--out", tmp_path / "o", "--layers", layers)
        assert rc == 2 and one_line(err) == (f"dlspec show: --layers {layers!r} names no layer; the layers are 0 .. 2: "
                                             "conv1, relu1, conv2, or `all`")
    assert not (tmp_path / "o").exists()
    rc, out, err = dlspec_main(capsys, "show", path, "--out", "")
    assert rc == 2 and "an empty path" in one_line(err)
    rc, out, err = dlspec_main(capsys, "show", path, "--out", tmp_path / "o", "--layers", "2,conv2,0,2")
    assert rc == 0 and out.count(".png: ") == 2 and files_under(tmp_path / "o") == {"00_conv1.png", "02_conv2.png"}
    assert out.index("02_conv2.png") < out.index("00_conv1.png")  # in the order given, each once


# --- 6. a spec file that is a FIFO, a folder or a device ------------------------------------------------------

@pytest.mark.parametrize("command", ["check", "run", "show", "export"])
def test_a_fifo_as_the_spec_is_refused_without_waiting(tmp_path, command):
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs")
    fifo = tmp_path / "spec.yaml"
    os.mkfifo(fifo)
    p = dlspec(command, fifo, cwd=tmp_path)  # (before: blocked until a writer opened the FIFO)
    assert p.returncode == 2, p.stderr
    assert f"{fifo}: error[io]: {fifo} is a FIFO (named pipe), not a spec file" in p.stdout + p.stderr


def test_a_folder_or_a_device_as_the_spec_is_the_io_diagnostic(tmp_path, capsys):
    os.symlink("/dev/zero", tmp_path / "zero.yaml")  # (before: 4 MiB of NULs read, then a diagnostic showing them)
    for path, kind in ((tmp_path, "a folder"), (tmp_path / "zero.yaml", "a character device")):
        rc, out, _ = dlspec_main(capsys, "check", path)
        assert rc == 2 and f"{path}: error[io]: {path} is {kind}, not a spec file\n" in out and len(out) < 400


# --- 7. a file name or a spec's name with terminal escapes ----------------------------------------------------

def test_a_terminal_escape_in_a_file_name_is_printed_escaped(tmp_path, capsys):
    bad = tmp_path / f"a{ESC}b.yaml"
    bad.write_text(FIXED.replace("kernel_size: 3}\n  - ReLU", "kernel_size: 30}\n  - ReLU").replace(
        "name: NAME", 'name: "n\\e[32mx"'), encoding="utf-8")
    shown = str(bad).replace("\x1b", "\\x1b")
    rc, out, err = dlspec_main(capsys, "check", bad, "--color", "never")
    assert rc == 1 and "\x1b" not in out
    assert f"{shown}: n\\x1b[32mx" in out and f"{shown}:4:44: error[kernel-too-large]" in out
    rc, out, err = dlspec_main(capsys, "check", bad, "--format", "json")
    doc = json.loads(out)
    assert doc["file"] == str(bad) and doc["name"] == "n\x1b[32mx" and doc["diagnostics"][0]["file"] == str(bad)
    ok = spec(tmp_path, "n\x1b[32mx", f"o{ESC}.yaml")
    out_dir = tmp_path / f"out{ESC}"
    rc, out, err = dlspec_main(capsys, "show", ok, "--out", out_dir)
    assert rc == 0 and "\x1b" not in out + err and f"into {str(out_dir)}:".replace("\x1b", "\\x1b") in out
    assert out.startswith("n\\x1b[32mx on a random input")
    rc, out, err = dlspec_main(capsys, "check", tmp_path / f"missing{ESC}.yaml")
    assert rc == 2 and "\x1b" not in out + err and "missing\\x1b[31m.yaml" in out


def test_a_terminal_escape_in_a_picture_path(tmp_path, capsys, runs):
    path = tmp_path / f"g{ESC}.png"
    rc, out, err = dlspec_main(capsys, "generate", runs["gan"], "--image", path, "-n", "4")
    assert rc == 0 and path.read_bytes()[:4] == b"\x89PNG" and "\x1b" not in out + err and "g\\x1b[31m.png" in out


def test_a_dollar_in_a_name_is_drawn_as_it_is(tmp_path, capsys, monkeypatch):
    """matplotlib reads `$...$` as mathtext and raises on a malformed one: a spec's name is drawn as text."""
    path = spec(tmp_path, "a$\\frac{$b")
    rc, _, err = dlspec_main(capsys, "show", path, "--out", tmp_path / "o")
    assert rc == 0, err
    monkeypatch.setenv("PATH", "")  # no Graphviz: the matplotlib drawing
    rc, _, err = dlspec_main(capsys, "check", path, "--diagram", tmp_path / "d.png")
    assert rc == 0 and (tmp_path / "d.png").read_bytes()[:4] == b"\x89PNG", err


def test_a_long_source_line_is_shown_around_the_caret():
    from dlspec.diagnostics import SOURCE_WIDTH, Diagnostic, render

    text = "x: [" + "a, " * 30_000 + "b\x1bc]"
    col = text.index("b\x1b") + 2  # 1-based: the escape character
    d = Diagnostic("error", "yaml-syntax", "bad", file="f.yaml", line=1, column=col, end_column=col + 1)
    lines = render(d, [text]).splitlines()
    assert all(len(line) <= SOURCE_WIDTH + 10 for line in lines)
    source, caret = lines[2], lines[3]
    at = caret.index("^")
    assert source[at:at + 4] == "\\x1b" and caret[at:] == "^^^^" and source[4:5] == "…"


# --- 8. option values ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("value, ok", [("1e-300", False), ("0", False), ("-1", False), ("nan", False), ("inf", False),
                                       ("101", False), ("1e-37", True), ("100", True)])
def test_the_temperature_range(capsys, runs, value, ok):
    rc, out, err = dlspec_main(capsys, "generate", runs["chars"], "--temperature", value, "--length", "5",
                               "--prime", "the")
    if ok:
        assert rc == 0 and len(out.rstrip("\n")) == 8, err
    else:
        assert rc == 2 and one_line(err) == ("dlspec generate: --temperature must be from 1.18e-38 (2**-126, the "
                                             f"smallest normal float32) to 100, not {float(value)}")


def test_a_tiny_temperature_is_greedy(capsys, runs):
    """T = 2**-126, the least: where logits / T overflows float32 (the softmax was nan, and sampling an internal
    error, before), the text is the likeliest character at each step (the model's argmax, by hand)."""
    from dlspec.generate import generate
    from dlspec.session import Options, prepare

    d = runs["chars"]
    rc, out, err = dlspec_main(capsys, "generate", d, "--temperature", "1.1754943508222875e-38", "--length", "12",
                               "--prime", "the ")
    assert rc == 0 and out.startswith("the ") and len(out) == 17, err
    s = prepare(str(d / "spec.yaml"), [], Options(progress=False, quiet=True), training=False)
    s.model.load_state_dict(torch.load(d / "checkpoint.pt", weights_only=True)["model"])
    s.model.eval()
    last = list(s.model.children())[-1]
    with torch.no_grad():
        last.weight.mul_(1000.0)  # logits of a few hundred: divided by 2**-126 they overflow
    vocab = s.bundle.vocab
    ids = [vocab.index(c) for c in "the "]
    with torch.no_grad():
        assert torch.isinf(s.model(torch.tensor([ids]))[0, -1] / 2.0 ** -126).any()  # the premise
        for _ in range(12):
            ids.append(int(s.model(torch.tensor([ids]))[0, -1].argmax()))
    assert generate(s, "the ", 12, 2.0 ** -126, seed=3) == "".join(vocab[i] for i in ids)


def test_prime_and_length_values(capsys, runs):
    from test_train import TEXT

    d = runs["chars"]
    prime = f"t{ESC}€\u202e"
    rc, out, err = dlspec_main(capsys, "generate", d, "--prime", prime, "--length", "3")
    unknown = "".join(sorted(set(prime) - set(TEXT)))
    assert rc == 2 and "\x1b" not in err and "\u202e" not in err and len(unknown) == 6
    assert one_line(err) == ("dlspec generate: --prime has characters that are not in the vocabulary (28 characters "
                             f"of tiny_chars): {safeio.shown(repr(unknown))}")
    rc, out, err = dlspec_main(capsys, "generate", d, "--prime", "the", "--length", "0")
    assert rc == 0 and out == "the\n"
    rc, out, err = dlspec_main(capsys, "generate", d, "--prime", "", "--length", "0")  # documented: one random start
    assert rc == 0 and len(out) == 2
    for argv, flag in ((["--length", "-1"], "--length must be from 0 to 1,000,000, not -1"),
                       (["-n", "4"], "-n is for a generator"), (["--image", "x.png"], "--image is for a generator")):
        rc, out, err = dlspec_main(capsys, "generate", d, *argv)
        assert rc == 2 and flag in one_line(err)
    rc, out, err = dlspec_main(capsys, "generate", runs["gan"], "--temperature", "1")
    assert rc == 2 and "--temperature is for a language model" in one_line(err)


def test_a_model_whose_scores_are_nan_is_one_line(runs):
    from dlspec.generate import GenerateError, generate
    from dlspec.session import Options, prepare

    s = prepare(str(runs["chars"] / "spec.yaml"), [], Options(progress=False, quiet=True), training=False)
    with torch.no_grad():
        next(iter(s.model.parameters())).fill_(float("nan"))
        with pytest.raises(RuntimeError):  # what sampling from nan gives (an internal error before)
            torch.multinomial(torch.softmax(s.model(torch.tensor([[1]]))[0, -1], -1), 1)
    with pytest.raises(GenerateError, match="not all finite") as e:
        generate(s, "the", 3, 0.8, 0)
    assert e.value.status == 1


@pytest.mark.parametrize("argv, message", [
    (["--sample", "3"], "--sample picks a test sample of the spec's data set, and this network reads none"),
    (["--network", ""], "--network: an empty value names nothing"),
    (["--network", "g"], "has one network; --network is for a spec of several"),
    (["--checkpoint", ""], "--checkpoint: an empty value names nothing"),
    (["--npy", ""], "--npy: an empty value names nothing"),
    (["--npy", "a.npy", "--image", "b.png"], "--npy and --image each give the input: give one"),
    (["--npy", "a.npy", "--sample", "1"], "--sample picks a test sample of the data set; with --npy or --image"),
    (["--layers", "conv9"], "--layers: no layer 'conv9'; the layers are 0 .. 2: conv1, relu1, conv2, or `all`"),
])
def test_show_options_that_cannot_apply(tmp_path, capsys, argv, message):
    rc, out, err = dlspec_main(capsys, "show", spec(tmp_path), "--out", tmp_path / "o", *argv)
    assert rc == 2 and message in one_line(err) and not (tmp_path / "o").exists()


def test_show_sample_of_a_data_set_is_bounded(tmp_path, capsys, runs):
    rc, out, err = dlspec_main(capsys, "show", runs["ae"], "--out", tmp_path / "o", "--sample", "-1")
    assert rc == 2 and "--sample must be from 0 to 63" in one_line(err)
