"""The `dlspec` command line: check (and, later, run)."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from dataclasses import dataclass
from typing import Any

from . import codes, dims

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs", "off")  # --compile MODE
_STARTED = time.perf_counter()  # the command's start, for summary.json's timings (after Python's own start-up)


def _color(mode: str) -> bool:
    if mode == "always":
        return True
    if mode == "never":
        return False
    return sys.stdout.isatty() and not os.environ.get("NO_COLOR")


def cmd_check(args: argparse.Namespace) -> int:
    from . import check, load, safeio
    from .report import render_text, to_json

    if args.diagram is not None:
        try:
            safeio.check_output(args.diagram, "picture")
        except safeio.FileRefused as e:
            print(f"dlspec check: --diagram: {e}", file=sys.stderr)
            return 2
    results = []
    unreadable = False
    for path in args.specs:
        spec = load(path)
        unreadable |= any(d.code == codes.IO for d in spec.diagnostics)
        results.append(check(spec))
    if args.diagram is not None:
        from .diagram import render

        if len(results) != 1:
            print("dlspec check: --diagram draws one spec; give one file", file=sys.stderr)
            return 2
        try:
            why, how = render(results[0], args.diagram)
        except safeio.WriteError as e:
            print(f"dlspec check: {e}; the diagram is not written", file=sys.stderr)
            return 1
        if why:
            print(f"dlspec check: {why}", file=sys.stderr)
            if results[0].ok:
                return 2
        else:
            print(f"wrote {safeio.shown(args.diagram)} ({how})", file=sys.stderr)
    if args.format == "dot":
        from .diagram import to_dot

        print("\n".join(to_dot(c) for c in results), end="")
    elif args.format == "json":
        docs = [to_json(c) for c in results]
        print(json.dumps(docs if len(docs) > 1 else docs[0], indent=2, default=str))  # (a spec holds plain values)
    else:
        color = _color(args.color)
        print("\n\n".join(render_text(c, color, args.depth) for c in results))
    if unreadable:
        return 2
    return 1 if any(not c.ok for c in results) else 0


def cmd_layers(args: argparse.Namespace) -> int:
    from .diagnostics import did_you_mean
    from .registry import REGISTRY, lookup

    if args.name:
        e = lookup(args.name)
        if e is None:
            hint = did_you_mean(args.name, list(REGISTRY))
            print(f"dlspec: unknown layer type '{args.name}'" + (f"; did you mean '{hint}'?" if hint else ""),
                  file=sys.stderr)
            return 2
        print(e.name + (f" — {e.doc}" if e.doc else ""))
        for name, a in e.args.items():
            if a.inferred:
                d = "inferred from the input when omitted"
            elif a.required:
                d = "required"
            else:
                d = f"default {a.default!r}"
            print(f"  {name:24} {a.kind.text}; {d}")
        return 0
    by_family: dict[str, list[str]] = {}
    for e in REGISTRY.values():
        by_family.setdefault(e.family, []).append(e.name)
    for fam, ns in by_family.items():
        print(f"{fam:11} " + ", ".join(sorted(ns)))
    return 0


def _refused(e: Any) -> int:
    from .diagnostics import locate, render, sort_key

    if getattr(e, "quiet", False):  # another process of this machine says it
        return _status(e)
    from .safeio import shown

    for line in map(shown, e.message.splitlines()):  # (indented lines go on the line before)
        print(line if line.startswith(" ") else f"dlspec: {line}", file=sys.stderr)
    color = _color("auto") and sys.stderr.isatty()
    for d in e.diagnostics:
        locate(d, e.doc)
    for d in sorted(e.diagnostics, key=lambda d: (d.severity != "error", sort_key(d))):
        print(render(d, color=color, doc=e.doc) + "\n", file=sys.stderr)
    n = sum(1 for d in e.diagnostics if d.severity == "error")
    if n:
        print(f"dlspec: not started: {n} error{'s' if n != 1 else ''}", file=sys.stderr)
    return _status(e)


def _status(e: Any) -> int:
    if any(d.code == codes.IO for d in e.diagnostics):
        return 2  # the spec file itself cannot be read: a usage error, as for `dlspec check`
    return int(e.status)


def _options(args: argparse.Namespace) -> Any:
    from .session import Options

    return Options(data_root=args.data_root, out=getattr(args, "out", "runs") or "runs", device=args.device,
                   epochs=getattr(args, "epochs", None), progress=not getattr(args, "no_progress", False),
                   quiet=getattr(args, "quiet", False), threads=getattr(args, "threads", None), started=_STARTED)


def _speed_overrides(args: argparse.Namespace) -> list[str]:
    """--precision, --channels-last, --compile, --cuda-graph, --fused and --eager as train.* overrides."""
    word = {"on": "true", "off": "false", "auto": "auto"}
    items = []
    if args.eager:
        items += ["train.channels_last=false", "train.compile=false", "train.cuda_graph=false", "train.fused=false"]
    if args.precision:
        items.append(f"train.precision={args.precision}")
    if args.channels_last:
        items.append(f"train.channels_last={word[args.channels_last]}")
    if args.compile:
        items.append(f"train.compile={'false' if args.compile == 'off' else args.compile}")
    if args.cuda_graph:
        items.append(f"train.cuda_graph={word[args.cuda_graph]}")
    if args.fused:
        items.append(f"train.fused={word[args.fused]}")
    return items


def cmd_run(args: argparse.Namespace) -> int:
    import os

    from . import distributed, runs
    from .distributed import from_env
    from .session import Refused, agree, prepare
    from .train import run

    if getattr(args, "nproc", None):
        return _launch(args)
    opts = _options(args)
    overrides = list(args.overrides)
    spec_path = args.spec
    if spec_path and "=" in spec_path and not os.path.exists(spec_path):
        overrides.insert(0, spec_path)
        spec_path = None
    overrides += _speed_overrides(args)
    try:
        if args.resume:
            return _resume(args, opts, spec_path, overrides)
        if not spec_path:
            print("dlspec run: give a spec file (or --resume RUN_DIR)", file=sys.stderr)
            return 2
        why = runs.unwritable(opts.out) if from_env().main else None  # (rank 0 alone writes)
        if why:  # before any data is loaded
            raise Refused([], message=f"--out {opts.out}: {why}", status=2)
        s = prepare(spec_path, overrides, opts)
        if s.world is not None and not s.world.main:  # rank 0 writes the run folder; the others train
            return run(s, opts, "", spec_path)
        try:
            run_dir = runs.new_run_dir(opts.out, s.checked.spec.name)
            lock = runs.lock_run_dir(run_dir)  # a new folder: a lock others see while this run writes it
        except (OSError, runs.WriteError) as e:
            reason = str(e) if isinstance(e, runs.WriteError) else _reason(e)
            print(f"dlspec: cannot make a run folder in {opts.out}: {reason}", file=sys.stderr)
            return 2
        with lock:
            if lock.note and not opts.quiet:
                print(lock.note, file=sys.stderr)
            try:
                runs.write_spec(run_dir, s.doc.data, spec_path, s.overrides)
            except runs.WriteError as e:
                print(f"dlspec: {e}; the run did not start", file=sys.stderr)
                lock.release()
                with contextlib.suppress(OSError):
                    os.rmdir(run_dir)  # made by this command, and empty
                return 1
            from .diagnostics import render

            for w in s.warnings:
                print(render(w, doc=s.doc) + "\n", file=sys.stderr)
            return run(s, opts, run_dir, spec_path)
    except Refused as e:
        world = from_env()
        if world.distributed and not e.agreed:  # refused before preparing: the other processes hear it too
            e = agree(world, e) or e
        status = _refused(e)
        if e.together:
            distributed.together(world)
        distributed.leave()
        return status


def _launch(args: argparse.Namespace) -> int:
    """dlspec run --nproc K: the same command in K processes, started by torch's own launcher (torchrun, as
    `python -m torch.distributed.run --standalone --nproc-per-node K -m dlspec run ...`); its exit status."""

    if os.environ.get("WORLD_SIZE"):
        print("dlspec run: --nproc inside torchrun: leave it out (torchrun already started the processes)",
              file=sys.stderr)
        return 2
    words, skip = [], False
    for w in args.argv:
        if skip:
            skip = False
        elif w == "--nproc":
            skip = True
        elif not w.startswith("--nproc="):
            words.append(w)
    problem = _world_refusal(args)
    if problem:
        print(f"dlspec run: {problem}", file=sys.stderr)
        return 2
    if "OMP_NUM_THREADS" not in os.environ and args.threads is None:  # the cores shared out between the processes
        os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // args.nproc))
    import logging

    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser
    from torch.distributed.run import run as torchrun

    # its log lines of a failed process (a W and an E line, with its own words): said here in one line instead
    logging.getLogger("torch.distributed.elastic.multiprocessing.api").setLevel(logging.CRITICAL)
    launch = get_args_parser().parse_args(["--standalone", f"--nproc-per-node={args.nproc}", "--module", "dlspec",
                                           *words])
    try:
        torchrun(launch)
    except ChildFailedError as e:  # each process said why on its own; here, which one failed first
        rank, failure = e.get_first_failure()
        code = int(failure.exitcode)
        codes_ = {int(f.exitcode) for f in e.failures.values()}
        if len(e.failures) == args.nproc and codes_ == {code} and code > 0:  # they stopped alike (a refusal)
            return code if code < 256 else 1
        how = f"was killed by signal {-code}" if code < 0 else f"ended with status {code}"
        print(f"dlspec run: process {rank} of {args.nproc} {how}; torchrun stopped the others", file=sys.stderr)
        return code if 0 < code < 256 else 1
    except KeyboardInterrupt:  # torchrun passed the signal on; its processes saved and stopped
        return 130
    except SignalException as e:  # (the same, as torchrun's agent reports Ctrl-C, SIGTERM, SIGHUP)
        return 128 + int(e.sigval)
    return 0


def _world_refusal(args: argparse.Namespace) -> str | None:
    """What K processes cannot run, found before they start: a batch size that does not divide among them
    (anything else wrong with the spec each process reports as one process would)."""
    from .schema import parse_spec
    from .session import Refused, load_document

    if not args.spec or not os.path.isfile(args.spec):
        return None
    try:
        doc = load_document(args.spec, list(args.overrides))
    except Refused:
        return None
    if doc.data is None:
        return None
    bs = getattr(parse_spec(doc).train_config, "batch_size", None)
    if isinstance(bs, int) and bs % args.nproc:
        return (f"train.batch_size {bs} is not divisible by --nproc {args.nproc}: give a multiple of {args.nproc} "
                "(each process takes an equal part of every batch)")
    return None


def _reason(e: OSError) -> str:
    """`permission denied (PATH)`: an OSError in one line, as strerror says it."""
    text = os.strerror(e.errno) if e.errno else str(e)
    return text[:1].lower() + text[1:] + (f" ({e.filename})" if e.filename else "")


def _resume(args: argparse.Namespace, opts: Any, spec_path: str | None, overrides: list[str]) -> int:
    """dlspec run --resume RUN_DIR: the run folder locked, its checkpoint verified, the spec compared."""
    from . import runs
    from .session import Refused, load_document, prepare
    from .train import run

    ckpt_path = os.path.join(args.resume, "checkpoint.pt")
    if not os.path.lexists(ckpt_path):  # (a FIFO or a folder in its place: load_checkpoint refuses it unread)
        raise Refused([], message=f"no checkpoint.pt in {args.resume}", status=2)
    from .distributed import from_env

    main = from_env().main  # of several processes, rank 0 locks the folder and writes into it
    try:
        lock: Any = runs.lock_run_dir(args.resume) if main else _Unlocked()
    except runs.RunInUse as e:
        raise Refused([], message=str(e), status=1) from None
    except runs.WriteError as e:
        raise Refused([], message=f"cannot resume {args.resume}: {e}", status=2) from None
    with lock:
        if lock.note and not opts.quiet:
            print(lock.note, file=sys.stderr)
        try:
            ckpt = runs.load_checkpoint(ckpt_path)
        except runs.CheckpointError as e:
            raise Refused([], message=f"cannot resume {args.resume}: {e}", status=2) from None
        src = spec_path or os.path.join(args.resume, "spec.yaml")
        items = overrides + ([f"train.epochs={opts.epochs}"] if opts.epochs is not None else []) + \
            ([f"train.device={opts.device}"] if opts.device else [])
        doc = load_document(src, items)
        if doc.data is not None and runs.spec_hash(doc.data) != ckpt.get("spec_hash"):
            changes = runs.diff(ckpt.get("spec"), doc.data)
            raise Refused([], status=1, message="\n".join(
                [f"{src} differs from the spec of the checkpoint in {args.resume}; refusing to resume:"]
                + [f"  {c}" for c in changes[:20]]
                + [f"  ({runs.may_change()} may change; start a new run for anything else)"]))
        why = _nothing_to_resume(ckpt, doc)
        finish_only = False
        if why:  # before any data is loaded; the run folder stays as it is
            if os.path.isfile(os.path.join(args.resume, "summary.json")):
                if not opts.quiet:
                    print(f"dlspec: {args.resume} is finished: {why}; nothing to resume\n  to train it further: "
                          f"dlspec run --resume {args.resume} --epochs M, with M larger than {int(ckpt['epoch'])}")
                return 0
            finish_only = True  # trained to the end, but writing summary.json failed: finish that
        opts.epochs = opts.device = None  # already applied
        s = prepare(src, [], opts, doc=doc)
        if runs.plain(doc.data) != ckpt.get("spec") and main:  # e.g. more epochs: spec.yaml says what now runs
            try:
                runs.write_spec(args.resume, doc.data, src, s.overrides)
            except runs.WriteError as e:
                print(f"dlspec: {e}; not resumed, {args.resume} is as it was", file=sys.stderr)
                return 1
        return run(s, opts, args.resume, src, resume=ckpt, finish_only=finish_only)


class _Unlocked(contextlib.AbstractContextManager):
    """The run folder's lock for the processes other than rank 0 (which holds the real one)."""

    note = None

    def __exit__(self, *exc: Any) -> None:
        return None


def _nothing_to_resume(ckpt: dict[str, Any], doc: Any) -> str | None:
    """Why a run is finished under the spec it is resumed with (None also when that spec has errors:
    preparing the run reports them)."""
    from .schema import parse_spec
    from .selection import nothing_to_resume

    cfg = parse_spec(doc).train_config if doc.data is not None and not doc.diagnostics else None
    return nothing_to_resume(ckpt, cfg) if cfg is not None else None


def run_folder(args: argparse.Namespace) -> None:
    """A run folder given as the spec: its spec.yaml, and its checkpoint.pt unless --checkpoint says another."""
    import os

    if os.path.isdir(args.spec):
        folder = args.spec
        args.spec = os.path.join(folder, "spec.yaml")
        if not getattr(args, "checkpoint", None) and os.path.isfile(os.path.join(folder, "checkpoint.pt")):
            args.checkpoint = os.path.join(folder, "checkpoint.pt")


def _read_checkpoint(path: str) -> dict[str, Any]:
    """A checkpoint file, verified; Refused when it is missing (status 2) or damaged."""
    from . import runs
    from .session import Refused

    if not os.path.lexists(path):
        raise Refused([], message=f"no checkpoint file {path}", status=2)
    try:
        return runs.load_checkpoint(path)  # (a FIFO, a device, a folder: refused before it is opened)
    except runs.CheckpointError as e:
        raise Refused([], message=str(e), status=2 if e.not_a_file else 1) from None


def _checked_alone(spec: Any, refusal: str = "") -> Any:
    """The checked spec, or the exit status when it has errors (they are printed, then `refusal` if given)."""
    from . import check
    from .report import render_diagnostics

    checked = check(spec)
    if checked.ok:
        return checked
    print(render_diagnostics(checked), file=sys.stderr)
    if refusal:
        print(refusal, file=sys.stderr)
    return 2 if any(d.code == codes.IO for d in spec.diagnostics) else 1


def _built_alone(args: argparse.Namespace, checked: Any, ckpt: dict[str, Any] | None) -> Any:
    """The model of a checked spec without its data, in eval mode: fresh weights drawn with train.seed (0
    without `train:`), or the checkpoint's (Refused when they are another model's); the exit status 1 instead
    when its weights would not fit."""
    import torch

    from .builder import ResourceError, build_checked

    torch.manual_seed(int(getattr(checked.spec.train_config, "seed", 0) or 0))  # as `dlspec run` draws them
    try:
        model = build_checked(checked)
    except ResourceError as e:
        print(str(e), file=sys.stderr)
        return 1
    if ckpt is not None:
        _load_weights(args, ckpt, checked, model)
    return model.eval()


def _session_with_checkpoint(args: argparse.Namespace) -> Any:
    """The prepared session of eval / predict / generate with the checkpoint's weights in its model; Refused
    when the checkpoint is missing or damaged (before any data is loaded) or is another model's."""

    from .session import Refused, prepare

    opts = _options(args)
    run_folder(args)
    if not args.checkpoint:
        raise Refused([], message=f"{args.spec}: give --checkpoint PATH (the weights), or the run folder instead of "
                      "the spec", status=2)
    ckpt = _read_checkpoint(args.checkpoint)  # before loading any data
    s = prepare(args.spec, list(args.overrides), opts, training=False)
    _load_weights(args, ckpt, s.checked, s.model)
    s.model.eval()
    return s, opts


def _load_weights(args: argparse.Namespace, ckpt: dict[str, Any], checked: Any, model: Any) -> None:
    """The checkpoint's weights into the spec's model; Refused, naming the first difference, when they belong to
    another model."""
    from . import runs
    from .session import Refused

    old = runs.spec_model_layers(ckpt["spec"]) if isinstance(ckpt.get("spec"), dict) else None
    differs = runs.model_difference(old, runs.model_layers(checked), args.spec) if old is not None else None
    if differs:  # weights of the same shapes can belong to another model (AvgPool2d and MaxPool2d, ...)
        raise Refused([], message=f"{args.checkpoint} holds another model than {args.spec}: {differs} (use the "
                      "spec.yaml of the checkpoint's run)")
    wrong = runs.weights_difference(ckpt["model"], model.state_dict())
    if wrong:
        raise Refused([], message=f"cannot load {args.checkpoint} into {args.spec}'s model: {wrong}")
    try:
        model.load_state_dict(ckpt["model"])
    except Exception as e:  # noqa: BLE001 - what the names and shapes do not show (a dtype torch refuses, ...)
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        msg = " ".join(lines[:2]) if len(lines) > 1 and lines[0].endswith(":") else lines[0] if lines else type(e).__name__
        raise Refused([], message=f"cannot load {args.checkpoint} into {args.spec}'s model: {msg}") from None


def _with_checkpoint(command: Any) -> Any:
    """eval / predict / generate: `command(args, session, opts)` once the spec's model holds the checkpoint;
    a refused spec, data set or checkpoint is reported instead."""
    def run_command(args: argparse.Namespace) -> int:
        from .session import Refused

        try:
            s, opts = _session_with_checkpoint(args)
        except Refused as e:
            return _refused(e)
        return command(args, s, opts)
    return run_command


@_with_checkpoint
def cmd_eval(args: argparse.Namespace, s: Any, opts: Any) -> int:
    from .train import fmt_metrics
    from .trainer import Trainer

    tr = Trainer(s, opts, training=False)
    vals = tr.evaluate(s.bundle.test)
    print(f"{s.bundle.name} test ({len(s.bundle.test):,} samples): " + fmt_metrics("", vals))
    return 0


def _picture_path(command: str, given: str | None, default: str) -> str | None:
    """--image of predict / generate: the path (default: `default` in the current folder), or None once the
    refusal is printed (an empty path, a FIFO, a device, a folder, a missing folder)."""
    from . import safeio

    path = default if given is None else given
    try:
        safeio.check_output(path, "picture")
    except safeio.FileRefused as e:
        print(f"dlspec {command}: --image: {e}", file=sys.stderr)
        return None
    return path


def _save_picture(command: str, fig: Any, path: str) -> bool:
    """The figure as a PNG at path, whole or not at all; False once a failed write is printed (one line)."""
    from . import safeio
    from .pictures import save_figure

    try:
        save_figure(fig(), path)
    except safeio.WriteError as e:
        print(f"dlspec {command}: {e}; the picture is not written", file=sys.stderr)
        return False
    return True


def _predict_reconstruction(args: argparse.Namespace, s: Any, task: Any) -> int:
    """predict of a task whose entry says "reconstructions": the first n test samples, their reconstructions as a
    PNG, and the MSE of each."""
    from .pictures import image_rows
    from .safeio import shown
    from .tasks.reconstruction import reconstruct

    path = _picture_path("predict", args.image, "reconstructions.png")
    if path is None:
        return 2
    n = min(args.n, len(s.bundle.test))
    clean, noised, out = reconstruct(task, n)
    for i in range(n):
        print(f"sample {i:>3}: reconstruction mse {float(((out[i] - clean[i]) ** 2).mean()):.5f}")
    rows = [("input", clean)] + ([("corrupted", noised)] if task.corrupts else []) + [("output", out)]
    title = f"{s.checked.spec.name} · {os.path.basename(args.checkpoint)}"
    try:
        if not _save_picture("predict", lambda: image_rows(rows, title, shared=True), path):
            return 1
    except ImportError:
        print("dlspec predict: the picture needs matplotlib (pip install 'dlspec[plot]')", file=sys.stderr)
        return 1
    print(f"wrote {shown(path)}: {n} test samples (rows: " + ", ".join(label for label, _ in rows) + ")")
    return 0


def _describe(out: Any, target: Any, s: Any, threshold: Any, classify: bool = True) -> tuple[str, bool | None]:
    """A prediction as words (and, with a class target, whether it is right): the class and its probability
    for a classifier, the values otherwise."""
    import torch

    names = s.bundle.classes

    def lab(c: int) -> str:
        return f"{c} ({names[c]})" if names and c < len(names) and names[c] != str(c) else str(c)

    if s.task.kind == "classification" and classify:  # (the targets the loss sees: class ids)
        if threshold is not None:  # one logit (or probability) for class 1
            p1 = out.reshape(()) if threshold == 0.5 else out.reshape(()).sigmoid()
            p = torch.stack([1 - p1, p1])
        else:
            p = out.softmax(-1)
        k = int(p.argmax())
        text = f"predicted {lab(k)} p={float(p[k]):.3f}"
        if target is None:
            return text, None
        right = k == int(target)
        return text + f" · target {lab(int(target))} {'✓' if right else '✗'}", right
    pv = [round(float(v), 4) for v in out.flatten()[:6]]
    text = f"predicted {pv if len(pv) > 1 else pv[0]}"
    if target is not None:
        tv = [round(float(v), 4) for v in torch.as_tensor(target).float().flatten()[:6]]
        text += f" · target {tv if len(tv) > 1 else tv[0]}"
    return text, None


def _predict_inputs(args: argparse.Namespace, s: Any, task: Any) -> int:
    """predict --input: the user's images, folders, CSV rows and .npy arrays, prepared as the data set's
    samples; a line each, and the accuracy over those whose folder or column gives the class."""
    import torch

    from .batch import Feed
    from .inputs import InputError, collect, id_range
    from .objectives import binary_threshold
    from .tasks import names_where

    if not s.task.own_inputs:
        print(f"dlspec predict: --input takes a model of task {' or '.join(names_where(lambda t: t.own_inputs))}; "
              f"{args.spec} is task {s.task.name}", file=sys.stderr)
        return 2
    try:
        samples = collect([p for group in args.input for p in group], s.bundle, id_range(s.model, s.bundle))
    except InputError as e:
        print(f"dlspec predict: {e}", file=sys.stderr)
        return 2
    threshold = binary_threshold(s.resolved)
    right = judged = 0
    width = min(max(len(x.source) for x in samples), 60)
    for i in range(0, len(samples), 256):
        chunk = samples[i:i + 256]
        try:
            out = _outputs(task, Feed(task.step.data_inputs).of(torch.stack([c.x for c in chunk]).to(s.device)))
        except RuntimeError as e:  # what torch refuses for these values (ids beyond the vocabulary, ...)
            print(f"dlspec predict: the model cannot run on {chunk[0].source}: {str(e).splitlines()[0][:200]}",
                  file=sys.stderr)
            return 2
        for c, o in zip(chunk, out, strict=True):
            text, ok = _describe(o, c.target, s, threshold)
            print(f"{c.source:<{width}}  {text}")
            if ok is not None:
                judged += 1
                right += ok
    if judged:
        print(f"accuracy {right / judged:.4f} ({right} of {judged} inputs with a known class)")
    return 0


def _outputs(task: Any, batch: Any) -> Any:
    """The main output of the task's step for a batch (the plain model, in evaluation mode), on the CPU."""
    step = task.step
    return step.predict(batch)[step.outputs[0]].float().cpu()


def _predict_outputs(args: argparse.Namespace, s: Any, task: Any) -> int:
    """predict of a task whose entry says "outputs": each of the first n test samples' output, against its target."""
    from .batch import Feed
    from .objectives import binary_threshold

    test = s.bundle.test
    n = min(args.n, len(test))
    out = _outputs(task, Feed(task.step.data_inputs).rows(test, 0, n).to(s.device))
    threshold = binary_threshold(s.resolved)
    for i in range(n):
        y = test.y[i]
        print(f"sample {i:>3}: " + _describe(out[i], y, s, threshold, classify=y.dim() == 0)[0])
    return 0


PREDICT = {"outputs": _predict_outputs, "reconstructions": _predict_reconstruction}  # by the entry's `predict`


@_with_checkpoint
def cmd_predict(args: argparse.Namespace, s: Any, opts: Any) -> int:
    from .step import make_task

    task = make_task(s)
    if args.input:
        return _predict_inputs(args, s, task)
    if s.task.predict is None:
        print(f"dlspec predict: the {s.task.name} task has nothing to predict"
              + ("; dlspec generate draws its samples" if s.task.generate else ""), file=sys.stderr)
        return 2
    return PREDICT[s.task.predict](args, s, task)


def _generate_samples(args: argparse.Namespace, s: Any) -> int:
    """generate of a task whose entry says "samples": n samples of the generator from noise seeded --seed, as a PNG
    grid."""
    from .pictures import image_grid
    from .safeio import shown
    from .step import make_task
    from .tasks.adversarial import GRID_MAX

    n = args.n or 64
    if n > GRID_MAX:
        print(f"dlspec generate: -n must be at most {GRID_MAX} for a picture, not {n}", file=sys.stderr)
        return 2
    path = _picture_path("generate", args.image, "samples.png")
    if path is None:
        return 2
    task: Any = make_task(s)
    batch, span = task.step.samples(n, args.seed), task.span()
    title = f"{s.checked.spec.name} · seed {args.seed}"
    try:
        if not _save_picture("generate", lambda: image_grid(batch, columns=min(8, n), title=title, span=span), path):
            return 1
    except ImportError:
        print("dlspec generate: the picture needs matplotlib (pip install 'dlspec[plot]')", file=sys.stderr)
        return 1
    print(f"wrote {shown(path)}: {n} samples of {task.step.g_name} (noise seed {args.seed})")
    return 0


def _generate_text(args: argparse.Namespace, s: Any) -> int:
    """generate of a task whose entry says "text": --length characters after --prime."""
    from .generate import GenerateError, generate

    try:
        text = generate(s, args.prime or "", 200 if args.length is None else args.length,
                        0.8 if args.temperature is None else args.temperature, args.seed, args.top_k)
    except GenerateError as e:
        print(f"dlspec generate: {e}", file=sys.stderr)
        return e.status
    print(text)
    return 0


GENERATE = {"text": _generate_text, "samples": _generate_samples}  # by the entry's `generate`
# per kind of generation: who makes it ({tasks}: the tasks whose entry says so), its own options (refused for
# another kind), and all it takes, as the refusal says them
GENERATORS = {"text": ("a language model", ("--prime", "--length", "--temperature", "--top-k"),
                       "--prime, --length, --temperature, --top-k and --seed"),
              "samples": ("a generator (task {tasks})", ("-n", "--image"), "-n, --seed and --image")}


def _who(mode: str) -> str:
    """`a generator (task adversarial)`: who makes this kind of generation."""
    from .tasks import names_where

    return GENERATORS[mode][0].format(tasks=" or ".join(names_where(lambda t: t.generate == mode)))


def _misplaced_option(args: argparse.Namespace, mode: str) -> str | None:
    """The refusal of an option that is another kind of generation's (-n for text, --prime for a picture)."""
    given = {"--prime": args.prime, "--length": args.length, "--temperature": args.temperature,
             "--top-k": args.top_k, "-n": args.n, "--image": args.image}
    for other, (_, options, _) in GENERATORS.items():
        flag = next((f for f in options if given[f] is not None), None) if other != mode else None
        if flag is not None:
            return f"{flag} is for {_who(other)}; {_who(mode)} takes {GENERATORS[mode][2]}"
    return None


@_with_checkpoint
def cmd_generate(args: argparse.Namespace, s: Any, opts: Any) -> int:
    from .tasks import names_where

    mode = s.task.generate
    if mode is None:
        makers = ", ".join(names_where(lambda t: t.generate is not None))
        print(f"dlspec generate: the {s.task.name} task has nothing to generate (the tasks that do: {makers})",
              file=sys.stderr)
        return 2
    misplaced = _misplaced_option(args, mode)
    if misplaced:
        print(f"dlspec generate: {misplaced}", file=sys.stderr)
        return 2
    return GENERATE[mode](args, s)


@dataclass
class _Shown:
    """What `dlspec show` runs: a network's model and checked spec, its data set (None: the spec has no
    `train:` section, or the network does not read the data's samples) and device."""

    model: Any
    checked: Any
    bundle: Any
    device: Any
    name: str  # the spec's name, with the network's for one of several


def _show_target(args: argparse.Namespace) -> _Shown | int:
    """The model `dlspec show` draws: the checkpoint's weights, or fresh ones (train.seed); a session with its
    data set when the spec has a `train:` section, else the spec alone (inputs: --npy, --image or random)."""
    import torch

    from . import load
    from .safeio import shown
    from .session import prepare

    run_folder(args)
    spec = load(args.spec)
    args.spec_has_data = spec.train is not None
    if spec.train is not None:
        if args.checkpoint:
            sess, _ = _session_with_checkpoint(args)
        else:
            sess = prepare(args.spec, list(args.overrides), _options(args), training=False)
        model, checked, bundle, device = sess.model, sess.checked, sess.bundle, sess.device
    else:
        checked = _checked_alone(spec)
        if isinstance(checked, int):
            return checked
        model = _built_alone(args, checked, _read_checkpoint(args.checkpoint) if args.checkpoint else None)
        if isinstance(model, int):
            return model
        bundle, device = None, torch.device("cpu")
    model.eval()
    name = checked.spec.name
    if checked.networks:
        if args.network not in checked.networks:
            names = ", ".join(checked.networks)
            print(f"dlspec show: {shown(args.spec)} has several networks: give --network NAME ({shown(names)})"
                  if args.network is None else
                  f"dlspec show: no network '{shown(args.network)}' in {shown(args.spec)}: {shown(names)}",
                  file=sys.stderr)
            return 2
        checked, model, name = checked.networks[args.network], model[args.network], f"{name} · {args.network}"
    elif args.network is not None:
        print(f"dlspec show: {shown(args.spec)} has one network; --network is for a spec of several", file=sys.stderr)
        return 2
    if len(checked.spec.inputs) > 1:
        print(f"dlspec show: {shown(name)} reads {len(checked.spec.inputs)} inputs; show runs a network of one",
              file=sys.stderr)
        return 2
    if bundle is not None and not _reads_samples(bundle, checked.spec.input):
        bundle = None  # a GAN's generator reads noise, not the data's images
    return _Shown(model, checked, bundle, device, name)


def _reads_samples(bundle: Any, inp: Any) -> bool:
    """Whether a network's input is the data set's samples (its fixed sizes equal, its symbolic ones any)."""
    shape = tuple(bundle.sample_shape)
    return inp is not None and len(shape) == len(inp.shape) and all(
        not isinstance(d, int) or d == s for d, s in zip(inp.shape, shape, strict=True))


def _random_sample(checked: Any) -> Any:
    """A random input of the network's shape (seeded: the same each time), symbolic sizes at export's values."""
    from .export import example_inputs

    return example_inputs(checked, batch=1, seed=0)[0][0]


def _show_folder(args: argparse.Namespace, name: str) -> str:
    """Where `dlspec show` writes: --out, or show/NAME (the spec's name as one file-name part, so a name such as
    `/tmp/x` or `../x` stays under show/); FileRefused for a path that is not a folder."""
    from . import safeio

    if args.out is not None:
        safeio.check_output_folder(args.out, "folder for the pictures")
        return str(args.out)
    folder = safeio.inside("show", safeio.file_part(name.replace(" · ", "_"), "spec"))
    safeio.check_output_folder(folder, "folder for the pictures")
    return folder


def _show_files(out_dir: str, names: list[str]) -> list[str]:
    """The pictures' paths in out_dir, each checked to stay there (a symlink out of it is refused) and not to be
    a FIFO, a device or a folder already."""
    from . import safeio

    paths = [safeio.inside(out_dir, safeio.file_part(n)) for n in names]
    if os.path.isdir(out_dir):
        for p in paths:
            safeio.check_output(p, "picture")
    return paths


def _show_options(args: argparse.Namespace) -> str | None:
    """An option of `dlspec show` that cannot apply, whatever the spec: the refusal, else None."""
    for flag, value in (("--checkpoint", args.checkpoint), ("--npy", args.npy), ("--image", args.image),
                        ("--network", args.network)):
        if value == "":
            return f"{flag}: an empty value names nothing"
    if args.npy and args.image:
        return "--npy and --image each give the input: give one"
    if args.sample is not None and (args.npy or args.image):
        return "--sample picks a test sample of the data set; with --npy or --image the input is that file"
    return None


def cmd_show(args: argparse.Namespace) -> int:
    from . import safeio, show
    from .safeio import shown
    from .session import Refused

    why = _show_options(args)
    if why:
        print(f"dlspec show: {why}", file=sys.stderr)
        return 2
    try:
        target = _show_target(args)
    except Refused as e:
        return _refused(e)
    if isinstance(target, int):
        return target
    b = target.bundle
    if args.sample is not None and b is None:
        print("dlspec show: --sample picks a test sample of the spec's data set, and this network reads none "
              "(--npy or --image give an input)", file=sys.stderr)
        return 2
    where = "--out: " if args.out is not None else ""
    try:
        out_dir = _show_folder(args, target.name)
    except safeio.FileRefused as e:
        print(f"dlspec show: {where}{e}", file=sys.stderr)
        return 2
    from .export import symbol_values

    shape = tuple(b.sample_shape) if b is not None else tuple(
        dims.evaluate(d, symbol_values(target.checked)) for d in target.checked.spec.input.shape)
    dtype = b.x_dtype if b is not None else target.checked.spec.input.dtype
    sample = args.sample or 0
    try:
        if args.npy:
            x = show.load_npy(args.npy, shape, dtype, target.model, b)
            source = shown(args.npy)
        elif args.image:
            info: dict[str, Any] = b.info if b is not None else {}
            norm: dict[str, Any] = info["normalize"] if isinstance(info.get("normalize"), dict) else {}
            x = show.load_image(args.image, shape, float(info.get("scale") or 255), norm.get("mean"), norm.get("std"))
            source = shown(args.image)
        elif b is None:
            x = _random_sample(target.checked)
            source = "a random input " + dims.fmt_shape(tuple(x.shape), batch=False) + (
                "" if args.spec_has_data else " (the spec has no data set: --npy or --image give one)")
        else:
            if not 0 <= sample < len(b.test):
                raise show.ShowError(f"--sample must be from 0 to {len(b.test) - 1} (the test split's samples)")
            x = b.test.x[sample]
            label = b.test.y[sample]
            source = f"{b.name} test sample {sample}" + (f" (label {int(label)})" if label.dim() == 0 else "")
        outs = show.run_layers(target.model, x.unsqueeze(0).to(target.device))
        chosen = show.pick(outs, target.model, args.layers)
        paths = _show_files(out_dir, [f"{o.index:02d}_{o.name}.png" for o in chosen] + ["kernels.png"] * args.weights)
    except show.ShowError as e:
        print(f"dlspec show: {shown(str(e))}", file=sys.stderr)
        return 2
    except safeio.FileRefused as e:
        print(f"dlspec show: {where}{e}", file=sys.stderr)
        return 2
    except RuntimeError as e:  # what torch refuses for this input (a file of the wrong range of ids, ...)
        print(f"dlspec show: the model cannot run on {shown(args.npy or args.image)}: "
              f"{str(e).splitlines()[0][:200]}", file=sys.stderr)
        return 2
    s = target
    print(f"{shown(s.name)} on {source}" + (f", weights of {shown(args.checkpoint)}" if args.checkpoint else
                                            ", fresh weights (no --checkpoint)"))
    print("\n".join(show.stats_table(outs)))
    return _write_pictures(s, chosen, paths, out_dir, source, args.weights)


def _write_pictures(s: Any, chosen: list[Any], paths: list[str], out_dir: str, source: str, weights: bool) -> int:
    """show's pictures into out_dir, all or none: drawn one at a time, moved in once every one is written; a
    failed write (a full disk) leaves the folder as it was, and removes it if show made it."""
    from . import safeio, show
    from .safeio import shown

    written: list[str] = []

    def pictures() -> Any:
        for o, path in zip(chosen, paths, strict=False):  # (paths ends with kernels.png under --weights)
            png, what = show.draw(o, f"{s.name} · layer {o.index} {o.name} ({o.kind}) · {source}")
            written.append(f"  {shown(path)}: {what}")
            yield path, png
        if weights:
            drawn = show.draw_kernels(s.model, f"{s.name} · first Conv2d's kernels")
            if drawn is None:
                written.append("  (no Conv2d: no kernels to draw)")
                return
            written.append(f"  {shown(paths[-1])}: {drawn[1]}")
            yield paths[-1], drawn[0]

    made: list[str] = []
    try:
        made = safeio.make_folders(out_dir)
        n = len(safeio.write_together(pictures()))
    except ImportError:
        safeio.remove_folders(made)
        print("dlspec show: the pictures need matplotlib (pip install 'dlspec[plot]')", file=sys.stderr)
        return 1
    except safeio.WriteError as e:
        safeio.remove_folders(made)
        print(f"dlspec show: {e}; no picture written", file=sys.stderr)
        return 1
    print(f"wrote {n} picture(s) into {shown(out_dir)}:")
    print("\n".join(written))
    return 0


EXPORT_SIZE_MAX = 65_536  # --size T=N: the traced value of a symbolic size (an RNN export unrolls N steps)


def _export_sizes(words: list[str]) -> dict[str, int]:
    """--size T=100 ...: the symbolic sizes to trace with; ValueError with the reason."""
    out = {}
    for w in words:
        name, sep, value = w.partition("=")
        if not sep or not name.isidentifier() or not value.strip().isdigit():
            raise ValueError(f"--size takes NAME=N (e.g. T=100), not {w!r}")
        n = int(value)
        if not 2 <= n <= EXPORT_SIZE_MAX:
            raise ValueError(f"--size {name} must be from 2 to {EXPORT_SIZE_MAX:,}, not {n:,}")
        out[name] = n
    return out


def _export_path(args: argparse.Namespace, checked: Any) -> str:
    """--out, or NAME + the format's suffix in the current folder (NAME: the spec file's, made importable: one
    file-name part of letters, digits and _, whatever the file or the spec's name holds)."""
    import re

    from .export import SUFFIX
    from .safeio import file_part

    if args.out is not None:
        return str(args.out)
    stem = os.path.splitext(os.path.basename(args.spec))[0]
    if stem == "spec":  # a run folder's spec.yaml: the spec's name
        stem = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", checked.spec.name).lower()
    stem = re.sub(r"\W", "_", file_part(stem, "model"))
    return ("_" + stem if stem[0].isdigit() else stem) + SUFFIX[args.to]


def _export_refusal(paths: list[str], force: bool) -> tuple[str, int] | None:
    """(why, exit status) when the files an export writes cannot be written there, before anything is made:
    a path that is a device, a FIFO or a folder (safeio.check_output), a folder that cannot be made or written
    in, a file that exists (without --force); else None."""
    from .runs import unwritable
    from .safeio import FileRefused, check_output, shown

    for p in paths:
        if not p or os.path.lexists(p):
            try:
                check_output(p, "file to write")
            except FileRefused as e:
                return str(e), 2
        if p.endswith(("/", os.sep)):
            return f"{shown(p)} is a folder's path: give the path of a file to write", 2
        why = unwritable(os.path.dirname(os.path.abspath(p)))
        if why is not None:
            return f"cannot write {shown(p)}: {why}", 2
        if os.path.lexists(p) and not force:
            return f"{shown(p)} exists: give another --out, or --force to replace it", 2
    return None


def _made_folders(folder: str) -> list[str]:
    """Make `folder` and its missing parents; those made, outermost first (OSError when one cannot be)."""
    made: list[str] = []
    p = os.path.abspath(folder)
    while not os.path.exists(p):
        made.insert(0, p)
        p = os.path.dirname(p)
    for d in made:
        os.mkdir(d)
    return made


def _magnitude(d: float) -> str:
    """0, or the power of ten above a difference (< 1e-06): what float reordering gives differs by machine."""
    import math

    if d == 0:
        return "0"
    if not math.isfinite(d):
        return "inf (the outputs differ in shape)"
    return f"< 1e{math.floor(math.log10(d)) + 1:+03d}"


def cmd_export(args: argparse.Namespace) -> int:
    """dlspec export: the spec's model as plain PyTorch source, ONNX, TorchScript or an ExportedProgram, with
    the checkpoint's weights when one is given (a run folder: its checkpoint.pt), each file checked against
    dlspec.build's model."""
    from . import export, load
    from .safeio import WriteError, shown
    from .session import Refused

    run_folder(args)
    try:
        sizes = _export_sizes(args.size or [])
    except ValueError as e:
        print(f"dlspec export: {e}", file=sys.stderr)
        return 2
    checked = _checked_alone(load(args.spec), f"dlspec export: {shown(args.spec)} has errors: nothing exported")
    if isinstance(checked, int):
        return checked
    unknown = sorted(set(sizes) - set().union(*(export.symbol_values(n) for n in (
        list(checked.networks.values()) or [checked]))))
    if unknown:
        print(f"dlspec export: --size {unknown[0]}: {args.spec}'s inputs have no symbolic size {unknown[0]}",
              file=sys.stderr)
        return 2
    try:
        ckpt = _read_checkpoint(args.checkpoint) if args.checkpoint else None
    except Refused as e:
        return _refused(e)
    path = _export_path(args, checked)
    targets = export.destinations(checked, args.to, path, weights=ckpt is not None)
    if len(set(map(os.path.abspath, targets))) < len(targets):
        print(f"dlspec export: --out {shown(path)}: the weights go beside the .py file as {shown(targets[-1])}, "
              "the same file: give a path ending in .py", file=sys.stderr)
        return 2
    refusal = _export_refusal(targets, args.force)
    if refusal is not None:
        print(f"dlspec export: {refusal[0]}", file=sys.stderr)
        return refusal[1]
    made: list[str] = []
    try:
        model = _built_alone(args, checked, ckpt)
        if isinstance(model, int):
            return model
        made = _made_folders(os.path.dirname(os.path.abspath(path)))
        written = export.write(checked, model, args.to, path, args.spec,
                               model.state_dict() if ckpt is not None else None, sizes)
    except (Refused, export.ExportError, WriteError, OSError) as e:
        for d in reversed(made):  # the folders made for the files, which are not there
            with contextlib.suppress(OSError):
                os.rmdir(d)
        if isinstance(e, Refused):
            return _refused(e)
        if isinstance(e, WriteError):
            print(f"dlspec export: {e}: nothing was written", file=sys.stderr)
        elif isinstance(e, OSError):
            print(f"dlspec export: cannot write {shown(path)}: {e.strerror or e}: nothing was written", file=sys.stderr)
        else:
            print(f"dlspec export: {shown(e)}", file=sys.stderr)
        return 1
    weights_of = f"the weights of {shown(args.checkpoint)}" if ckpt is not None else \
        "fresh weights (train.seed; no --checkpoint)"
    print(f"{shown(checked.spec.name)}, {weights_of}:")
    bad = False
    for w in written:
        line = f"  wrote {shown(w.path)}: {shown(w.what)}"
        if w.difference is not None:
            same = w.difference <= export.TOLERANCE
            bad |= not same
            line += (f"\n    checked: {w.note}, max |difference| from dlspec.build {_magnitude(w.difference)}"
                     + ("" if same else f" (more than {export.TOLERANCE:g}: this export is not faithful)"))
        elif w.note:
            line += f"\n    {w.note}"
        print(line)
    return 1 if bad else 0


def cmd_datasets(args: argparse.Namespace) -> int:
    from .data import DATASETS

    for name, e in sorted(DATASETS.items()):
        opts = ", ".join(e.args)
        print(f"{name:14} {e.doc}" + (f" [needs {e.needs}]" if e.needs else ""))
        print(f"{'':14} options: {opts}")
    return 0


def cmd_codes(args: argparse.Namespace) -> int:
    from .diagnostics import CODES

    for code, text in CODES.items():
        print(f"{code:18} {text}")
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from . import safeio
    from .editor_schema import text

    if args.output is None:
        sys.stdout.write(text())
        return 0
    try:
        safeio.check_output(args.output, "file")
    except safeio.FileRefused as e:
        print(f"dlspec schema: --output: {e}", file=sys.stderr)
        return 2
    try:
        safeio.write_atomic(args.output, text().encode("utf-8"))
    except safeio.WriteError as e:
        print(f"dlspec schema: {e}; nothing written", file=sys.stderr)
        return 1
    return 0


def _positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {text!r}")
    return n


def _threads(text: str) -> int:
    from .trainspec import MAX_THREADS_PER_CPU

    n = _positive(text)
    most = MAX_THREADS_PER_CPU * (os.cpu_count() or 1)
    if n > most:
        raise argparse.ArgumentTypeError(f"must be at most {most} ({MAX_THREADS_PER_CPU} × the {os.cpu_count() or 1} "
                                         f"CPUs of this machine), not {text}")
    return n


def _bounded(low: int, high: int, what: str) -> Any:
    """An argparse type: an integer from low to high."""
    def parse(text: str) -> int:
        try:
            n = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {what}, not {text!r}") from None
        if not low <= n <= high:
            raise argparse.ArgumentTypeError(f"must be {what} (from {low:,} to {high:,}), not {text}")
        return n
    return parse


def parser() -> argparse.ArgumentParser:
    from . import __version__
    from .data.base import SEED_MAX

    p = argparse.ArgumentParser(prog="dlspec", description="Declarative model specs for PyTorch.")
    p.add_argument("--version", action="version", version=f"dlspec {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    c = sub.add_parser("check", help="infer shapes, params and MACs, check the train: section; report mistakes (never imports torch)")
    c.add_argument("specs", nargs="+", metavar="SPEC", help="spec files (YAML)")
    c.add_argument("--format", choices=("text", "json", "dot"), default="text",
                   help="dot: the network as a Graphviz diagram (dot -Tsvg draws it)")
    c.add_argument("--diagram", metavar="FILE", help="also draw the diagram into FILE (.svg, .png, .pdf) with Graphviz")
    c.add_argument("--color", choices=("auto", "always", "never"), default="auto")
    c.add_argument("--depth", type=_bounded(0, 1000, "--depth"), metavar="N",
                   help="the table's nested rows down to N levels (0: the top-level entries only; default: all)")
    c.set_defaults(func=cmd_check, command_parser=c)
    ly = sub.add_parser("layers", help="list the layer types, or one type's arguments")
    ly.add_argument("name", nargs="?")
    ly.set_defaults(func=cmd_layers, command_parser=ly)
    co = sub.add_parser("codes", help="list the diagnostic codes")
    co.set_defaults(func=cmd_codes, command_parser=co)
    ds = sub.add_parser("datasets", help="list the datasets `train.data` can name")
    ds.set_defaults(func=cmd_datasets, command_parser=ds)
    sc = sub.add_parser("schema", help="print a JSON Schema of the spec language, for editors (yaml-language-server)")
    sc.add_argument("--output", "-o", metavar="PATH", help="write it to PATH instead of standard output")
    sc.set_defaults(func=cmd_schema, command_parser=sc)

    def common(q: argparse.ArgumentParser) -> None:
        q.add_argument("--data-root", metavar="DIR", help="where datasets live (default: $DLSPEC_DATA, else ./data)")
        q.add_argument("--device", help="auto, cpu, cuda, cuda:N (overrides train.device)")
        q.add_argument("--threads", type=_threads, metavar="N",
                       help="CPU threads for torch (torch.set_num_threads; default: torch's own choice; at most "
                       "4 × the CPUs)")

    r = sub.add_parser("run", help="train what the spec describes (its train: section)")
    r.add_argument("spec", nargs="?", metavar="SPEC")
    r.add_argument("overrides", nargs="*", metavar="PATH=VALUE", help="e.g. train.epochs=3 train.optimizer.SGD.lr=0.1")
    r.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its checkpoint.pt")
    r.add_argument("--epochs", type=int, help="overrides train.epochs")
    r.add_argument("--out", metavar="DIR", default="runs", help="runs folder (default: runs)")
    r.add_argument("--quiet", action="store_true", help="print nothing but errors")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    r.add_argument("--nproc", type=_bounded(1, 1024, "a number of processes"), metavar="K",
                   help="train in K processes on this machine (torchrun, DistributedDataParallel; gloo on the CPU, "
                   "one GPU each with CUDA): the same results as one process with the same batch_size")
    f = r.add_argument_group("speed (each overrides the train: option of the same name; see README, Training fast)")
    f.add_argument("--precision", choices=("fp32", "bf16", "fp16", "auto"),
                   help="bf16/fp16 autocast (fp16: CUDA only); auto: bf16 where the CPU has it natively")
    f.add_argument("--channels-last", choices=("auto", "on", "off"), help="channels-last memory format for conv nets")
    f.add_argument("--compile", nargs="?", const="default", metavar="MODE", choices=COMPILE_MODES,
                   help="torch.compile the model (MODE: default, reduce-overhead, max-autotune, ...; off)")
    f.add_argument("--cuda-graph", choices=("auto", "on", "off"), help="capture the training step in a CUDA graph")
    f.add_argument("--fused", choices=("auto", "on", "off"), help="the optimizer's fused step (torch's fused=True)")
    f.add_argument("--eager", action="store_true",
                   help="the plain path: no channels_last, compile, CUDA graph or fused optimizer step (for debugging "
                   "and comparison)")
    common(r)
    r.set_defaults(func=cmd_run, command_parser=r)
    from .export import FORMATS

    e = sub.add_parser("export", help="write the model as plain PyTorch source (python), ONNX, TorchScript or a "
                       "torch.export ExportedProgram, checked against dlspec.build")
    e.add_argument("spec", metavar="SPEC|RUN_DIR", help="a spec, or a run folder (its spec.yaml and checkpoint.pt)")
    e.add_argument("--to", choices=FORMATS, default="python", help="the form (default python)")
    e.add_argument("--checkpoint", metavar="PATH", help="the weights (default: a run folder's checkpoint.pt; a "
                   "spec alone: fresh weights)")
    e.add_argument("--out", "-o", metavar="PATH", help="the file (default: the spec's name + .py, .onnx, "
                   ".torchscript.pt or .pt2 in the current folder)")
    e.add_argument("--size", action="append", metavar="NAME=N", help="the value a symbolic input size is traced with "
                   f"(e.g. T=100, once per size; from 2 to {EXPORT_SIZE_MAX:,}): where the model makes it a constant (an RNN "
                   "unrolled by torch.export), the only value the file accepts")
    e.add_argument("--force", action="store_true", help="replace files that exist")
    e.set_defaults(func=cmd_export, command_parser=e)

    w = sub.add_parser("show", help="draw what each layer makes of one input (feature maps, sequences) and "
                       "print its statistics")
    w.add_argument("spec", metavar="SPEC|RUN_DIR", help="a spec, or a run folder (its spec.yaml and checkpoint.pt)")
    w.add_argument("overrides", nargs="*", metavar="PATH=VALUE")
    w.add_argument("--checkpoint", metavar="PATH", help="the weights (default: fresh ones, seeded by train.seed)")
    w.add_argument("--sample", type=int, metavar="K", help="the data set's test sample K (default 0)")
    w.add_argument("--npy", metavar="PATH", help="a .npy array of one sample instead")
    w.add_argument("--image", metavar="PATH", help="an image file instead (resized and normalised as the data set's)")
    w.add_argument("--layers", metavar="LIST", help="indices or names, comma-separated, or `all` (default: every "
                   "convolution, pooling and recurrent layer)")
    w.add_argument("--weights", action="store_true", help="also draw the first convolution's kernels")
    w.add_argument("--network", metavar="NAME", help="a spec of several networks (a GAN): the one to draw")
    w.add_argument("--out", metavar="DIR", help="where the pictures go (default show/NAME)")
    common(w)
    w.set_defaults(func=cmd_show, command_parser=w)
    for name, fn, hlp in (("eval", cmd_eval, "test metrics of a checkpoint"),
                          ("predict", cmd_predict, "predictions for a few test samples, or for your own files (--input)"),
                          ("generate", cmd_generate, "sample text from a language model, or images from a generator")):
        q = sub.add_parser(name, help=hlp)
        q.add_argument("spec", metavar="SPEC|RUN_DIR", help="a spec, or a run folder (its spec.yaml and checkpoint.pt)")
        q.add_argument("overrides", nargs="*", metavar="PATH=VALUE")
        q.add_argument("--checkpoint", metavar="PATH", help="the weights (required with a spec file; default for a "
                       "run folder: its checkpoint.pt)")
        common(q)
        if name == "predict":
            q.add_argument("-n", type=_positive, default=10, help="how many test samples (default 10)")
            q.add_argument("--input", nargs="+", action="append", metavar="PATH",
                           help="your own inputs instead of test samples: image files, folders of them (a "
                           "subfolder named after a class gives the target), CSV files, .npy arrays")
            q.add_argument("--image", metavar="PNG", help="reconstruction: where the picture goes (default "
                           "reconstructions.png)")
        if name == "generate":
            q.add_argument("--prime", help="text to start from (default: one character drawn at random)")
            q.add_argument("--length", type=int, help="characters to generate after the prime (default 200, at "
                           "most 1,000,000)")
            q.add_argument("--temperature", type=float, help="of the sampling (default 0.8; from 2**-126 to 100: "
                           "near 0 the likeliest character, 1 the model's probabilities)")
            q.add_argument("--top-k", type=_positive, default=None, metavar="K",
                           help="sample from the K likeliest characters only")
            q.add_argument("-n", type=_positive, default=None, help="a generator (task adversarial): how many "
                           "samples in the picture (default 64)")
            q.add_argument("--image", metavar="PNG", help="a generator: where the picture goes (default samples.png)")
            q.add_argument("--seed", type=_bounded(0, SEED_MAX, "a seed"), default=0)
        q.set_defaults(func=fn, command_parser=q)
    return p


def _compile_mode_apart(argv: list[str]) -> list[str]:
    """`--compile` takes an optional MODE, and argparse would take the next word for it whatever it is: a
    spec file or a PATH=VALUE after `--compile` is left to be what it is (`--compile=default` instead)."""
    out = list(argv)
    for i, a in enumerate(argv[:-1]):
        nxt = argv[i + 1]
        if a == "--compile" and nxt not in COMPILE_MODES and not nxt.startswith("-") and \
                ("=" in nxt or nxt.endswith((".yaml", ".yml")) or os.path.isfile(nxt)):
            out[i] = "--compile=default"
    return out


def _is_override(word: str) -> bool:
    return "=" in word and not word.startswith("-")


def _take_overrides(args: argparse.Namespace, extras: list[str]) -> None:
    """PATH=VALUE words after an option join `overrides` (argparse fills a positional list from one run of
    words only); anything else left over (an unknown --flag, a word that is not PATH=VALUE) is a usage
    error of the subcommand, exit status 2."""
    takes = isinstance(getattr(args, "overrides", None), list)
    if takes:
        args.overrides += [a for a in extras if _is_override(a)]
    stray = [a for a in extras if not (takes and _is_override(a))]
    stray += [a for a in getattr(args, "overrides", None) or [] if not _is_override(a)]
    if not stray:
        return
    if takes:
        args.overrides = [a for a in args.overrides if _is_override(a)]
    sub: argparse.ArgumentParser = args.command_parser
    msg = "unrecognized arguments: " + " ".join(stray)
    flags = [s[2:] for a in sub._actions for s in a.option_strings if s.startswith("--")]
    from .diagnostics import did_you_mean

    hints = [f"did you mean --{h}?" for w in stray if w.startswith("--")
             for h in [did_you_mean(w[2:].split("=", 1)[0], flags)] if h]
    if takes and any(not w.startswith("-") for w in stray):
        hints.append("an override is PATH=VALUE, e.g. train.epochs=3")
    sub.error(msg + (f" ({'; '.join(hints)})" if hints else ""))


class StdoutError(OSError):
    """A write to standard output failed (a full disk behind `> file`, an I/O error): the command's output is
    lost, which is not a bug of dlspec's; main() says so in one line.  (A closed pipe stays a BrokenPipeError.)"""


class _GuardedStdout:
    """sys.stdout while dlspec runs: the same stream, whose failed writes raise StdoutError (told apart from a
    command's own OSErrors) and are remembered (`failed`), so that main() tells them even where a caller
    swallowed the error (argparse's --help does); a closed pipe is still a BrokenPipeError, and not a failure."""

    def __init__(self, stream: Any):
        self._stream = stream
        self.failed: OSError | None = None
        self.closed_pipe = False

    def _guard(self, call: Any, *a: Any) -> Any:
        try:
            return call(*a)
        except BrokenPipeError:
            self.closed_pipe = True
            raise
        except OSError as e:
            self.failed = self.failed or e
            raise StdoutError(e.errno, e.strerror) from None

    def write(self, text: str) -> Any:
        return self._guard(self._stream.write, text)

    def flush(self) -> None:
        self._guard(self._stream.flush)

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding, ...
        return getattr(self._stream, name)


def _drop_stdout(stream: Any) -> None:
    """After a failed (or closed) standard output: its descriptor onto /dev/null, so that the flush at Python's
    exit finds nothing to fail on (the recipe of Python's signal docs for SIGPIPE)."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        return  # not a file descriptor (a test's capture): nothing is flushed at exit
    with contextlib.suppress(OSError):
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, fd)
        os.close(null)


def main(argv: list[str] | None = None) -> int:
    """The command line: the command's exit status.  A failed write to standard output (a full disk, an I/O
    error) is one line and status 1, whatever the command; a closed pipe (`| head`) ends it silently, status 0."""
    stdout = sys.stdout
    guarded = _GuardedStdout(stdout)
    sys.stdout = guarded  # type: ignore[assignment]
    rc = 0
    try:
        rc = _main(argv)
        sys.stdout.flush()  # here, not at Python's exit: a full disk is told now
    except SystemExit:  # argparse's --help and --version (0), a usage error (2)
        with contextlib.suppress(OSError):
            sys.stdout.flush()
        if guarded.failed is None:
            raise
    except BrokenPipeError:
        if guarded.closed_pipe:  # (standard output's, not another pipe's)
            _drop_stdout(stdout)
        return 0
    except StdoutError:
        pass  # told below
    finally:
        sys.stdout = stdout
    if guarded.failed is not None:
        _drop_stdout(stdout)
        e = guarded.failed
        reason = os.strerror(e.errno) if e.errno else (str(e) or type(e).__name__)
        print(f"dlspec: cannot write to standard output: {reason[:1].lower() + reason[1:]}", file=sys.stderr)
        return rc or 1  # (a command that had failed keeps its status)
    return rc


def _main(argv: list[str] | None) -> int:
    p = parser()
    args, extras = p.parse_known_args(_compile_mode_apart(sys.argv[1:] if argv is None else list(argv)))
    if not getattr(args, "func", None):
        if extras:
            p.error("unrecognized arguments: " + " ".join(extras))
        p.print_help(sys.stderr)
        return 2
    _take_overrides(args, extras)
    args.argv = sys.argv[1:] if argv is None else list(argv)
    try:
        rc: Any = args.func(args)
    except KeyboardInterrupt as e:  # a second Ctrl-C (or SIGTERM, SIGHUP) while a run stops: 128 + the signal
        return 128 + int(getattr(e, "signum", 2))
    except (BrokenPipeError, StdoutError):
        raise
    except Exception as e:  # a bug of dlspec's, not the user's mistake: one line, and how to see more
        if os.environ.get("DLSPEC_DEBUG"):
            raise
        first = (str(e).strip().splitlines() or [""])[0][:300]
        print(f"dlspec: internal error ({type(e).__name__}: {first}); this is a bug in dlspec, not in your spec: "
              "please report it with the spec (DLSPEC_DEBUG=1 shows the traceback)", file=sys.stderr)
        return 70
    return int(rc)
