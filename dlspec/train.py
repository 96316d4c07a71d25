"""Stage 6c, train: `dlspec run`'s loop — epochs, evaluation, console lines, signals, checkpoints, summary.

Everything before the first step is in dlspec.session (`prepare`), the run's state and steps in
dlspec.trainer, the rules of early stopping, the best epoch and resuming in dlspec.selection.
The loop keeps loss/metric sums on the device and reads them once per epoch; shuffling is derived from
(seed, epoch), so a run stopped by Ctrl-C and resumed from its checkpoint ends exactly where an
uninterrupted run ends (and its timings go on from the checkpoint's).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from typing import Any

import torch

from . import distributed, runs
from .selection import early_stop, final_metrics, restores_best, save_best, test_due, train_on
from .session import Options, Session
from .trainer import Clock, Diverged, Trainer

# --- running ---------------------------------------------------------------------------------------------

def fmt_metrics(prefix: str, vals: dict[str, float]) -> str:
    """`loss 0.1234  accuracy 0.9876`: the metric names as options and metrics.csv spell them."""
    parts = [f"{k} {v:.4f}" for k, v in vals.items()]
    return (prefix + " " if prefix else "") + "  ".join(parts)


# the signals that stop a run with a checkpoint: Ctrl-C, a scheduler's or cluster's SIGTERM, a closed terminal
STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n))


class Aborted(KeyboardInterrupt):
    """A second stop signal: the run ends at once, without a checkpoint (the command exits 128 + signal)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _stop_message(signum: int) -> str:
    if signum == signal.SIGINT:
        return "interrupted: finishing this batch and saving a checkpoint (Ctrl-C again to abort)"
    name = signal.Signals(signum).name
    what = {"SIGTERM": "terminated", "SIGHUP": "hung up"}.get(name, "stopped")
    return f"{what} ({name}): finishing this batch and saving a checkpoint (a second signal aborts)"


def run(s: Session, opts: Options, run_dir: str, source_path: str, resume: dict[str, Any] | None = None,
        finish_only: bool = False) -> int:
    """Train (or go on training) the prepared session in run_dir; the exit status.

    Ctrl-C, SIGTERM and SIGHUP finish the batch in flight, save checkpoint.pt and return 128 + the signal.
    A file that cannot be written (a full disk) ends the run with one line and status 1, leaving the last
    checkpoint and the metrics.csv that goes with it.  finish_only: a resumed run with nothing left to
    train whose summary.json is missing (its writing had failed): only the final numbers and summary.json.
    """
    try:
        return _run(s, opts, run_dir, source_path, resume, finish_only)
    except runs.WriteError as e:
        print(f"dlspec: {e}; {_kept(run_dir)}", file=sys.stderr)
        return 1
    except Diverged as e:  # (every process of several finds it: the losses are summed, the weights the same)
        if s.world is None or s.world.main:
            print(f"dlspec: the training diverged at {e}; {_kept(run_dir, None)} (a smaller learning "
                  "rate, or clip_grad_norm, may keep it finite: start a new run with it)", file=sys.stderr)
        return 1
    except (RuntimeError, OSError) as e:  # a collective that failed: another process of the run is gone
        world = s.world
        if world is None or not world.distributed:
            raise
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        print(f"dlspec: process {world.rank} of {world.size}: lost the other processes ({first}); stopping"
              + (f"; {_kept(run_dir, 'continue')}" if world.main else ""), file=sys.stderr)
        return 1
    finally:
        distributed.leave()  # (several processes: out of the process group, whatever ended the run)


def _kept(run_dir: str, then: str | None = "free space and continue") -> str:
    """What a run folder keeps after a failed write (or a lost process, or a diverged step), and how to go on
    (`then`; None: not by resuming): one phrase."""
    path = os.path.join(run_dir, "checkpoint.pt")
    try:
        st = runs.load_checkpoint(path)
    except Exception:  # noqa: BLE001 - none yet (the first epoch's failed), or unreadable
        return f"no checkpoint was saved in {run_dir}" + (", so the run cannot be resumed" if then else " before")
    where = f"epoch {int(st['epoch'])}" + (f", batch {int(st['batch'])}" if st.get("batch") else "")
    return f"{run_dir} keeps the checkpoint of {where}" + \
        (f"; {then} with: dlspec run --resume {run_dir}" if then else ", from before")


def _run(s: Session, opts: Options, run_dir: str, source_path: str, resume: dict[str, Any] | None,
         finish_only: bool) -> int:
    cfg = s.cfg
    t_setup = time.perf_counter()
    tr = Trainer(s, opts)
    if resume is not None:
        tr.load(resume)
    main = tr.world.main  # rank 0 alone prints and writes (all of them, with one process)
    log = runs.MetricsLog(run_dir, tr.history)
    if resume is not None and main:
        log.write()  # metrics.csv says what the checkpoint holds (with checkpoint_every > 1 it ran ahead)
        if not finish_only:  # summary.json is a finished run's; this one goes on
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(run_dir, "summary.json"))

    def say(*a: Any) -> None:
        if opts.quiet or not main:
            return
        try:
            print(*a, flush=True)
        except OSError:  # SIGHUP: the terminal is gone; stopping (the checkpoint) must not fail on a print
            if not tr.stop_requested:
                raise

    b = s.bundle
    say(f"run {run_dir}")
    say(f"data {b.name}: {len(b.train):,} train" + (f" / {len(s.val):,} val" if s.val is not None else "")
        + f" / {len(b.test):,} test · samples {list(b.sample_shape)} · device {s.device.type}"
        + (f" · {tr.plan.precision}" if tr.plan.precision != "fp32" else ""))
    params = sum(p.numel() for p in tr.model.parameters())
    what = tr.task.describe()
    say(f"model {s.checked.spec.name}: {params:,} params" + (f" · {what}" if what else "") + f" · {tr.step.describe()}")
    say(f"path {tr.plan.name}" + "".join(f"\n  {w}" for w in tr.plan.why))
    if finish_only:
        say(f"finishing: {tr.epoch} epochs trained; summary.json was missing")
    elif resume is not None:
        say(f"resumed at epoch {tr.epoch + 1}" + (f", batch {tr.batch}" if tr.batch else ""))
        if tr.stopped_early:
            train_on(tr, cfg, say)
    watched = str((cfg.early_stopping or {}).get("metric", ""))
    if watched.startswith("test_"):
        say(f"note: early stopping ignores {watched}: the test set must not choose the model (watch a val_ metric, "
            "with val_split)")
    restoring = restores_best(cfg)

    def on_signal(signum: int, frame: Any) -> None:
        if tr.stop_requested:
            raise Aborted(signum)
        tr.stop_requested, tr.stop_signal = True, signum
        if main:  # (every process of several gets the signal; one says so)
            with contextlib.suppress(OSError):  # SIGHUP: the terminal may be gone
                print("\n" + _stop_message(signum), file=sys.stderr, flush=True)

    checkpoint = os.path.join(run_dir, "checkpoint.pt")
    base = tr.clock  # the run's time before this command (zero for a new run)
    t_start = time.perf_counter()
    train_time = 0.0  # this command's
    carried_s, carried_n = base.epoch_s, base.epoch_samples  # of the epoch a mid-epoch checkpoint cut in two

    def save(epoch_s: float = 0.0, epoch_samples: int = 0) -> None:
        # nan weights never overwrite the last checkpoint (Diverged: the run stops, the checkpoint stays)
        tr.check_finite(f"epoch {tr.epoch + 1}, batch {tr.batch}" if tr.batch else f"epoch {tr.epoch}")
        tr.clock = Clock(base.run_s + time.perf_counter() - t_start, base.train_s + train_time, epoch_s, epoch_samples)
        state = tr.state()  # on every rank: it adds up the ranks' sums
        if main:
            runs.atomic_save(state, checkpoint)

    def stop_with_checkpoint(where: str, epoch_s: float = 0.0, epoch_samples: int = 0) -> int:
        save(epoch_s, epoch_samples)
        say(f"saved {checkpoint} {where}; continue with: dlspec run --resume {run_dir}")
        return 128 + (tr.stop_signal or signal.SIGINT)

    def samples(batches: int) -> int:  # in the first `batches` batches of an epoch
        return min(batches * cfg.batch_size, len(b.train))

    old = {n: signal.signal(n, on_signal) for n in STOP_SIGNALS} if _main_thread() else {}
    try:
        while tr.epoch < cfg.epochs and not finish_only:
            ep = tr.epoch
            if tr.stop_requested:  # a signal while evaluating or saving: stop before the next epoch starts
                return stop_with_checkpoint(f"after epoch {ep}")
            bar = _progress(opts, tr.steps_per_epoch, f"epoch {ep + 1}/{cfg.epochs}", initial=tr.batch) if main \
                else None
            t0 = time.perf_counter()
            start_batch = tr.batch
            finished = tr.train_epoch(bar)
            if s.device.type == "cuda":
                torch.cuda.synchronize()
            dt = time.perf_counter() - t0
            train_time += dt
            if bar is not None:
                bar.close()
            spent = carried_s + dt  # this epoch's training time and samples, before and after a resume
            trained = carried_n + samples(tr.steps_per_epoch if finished else tr.batch) - samples(start_batch)
            carried_s, carried_n = 0.0, 0
            if not finished:
                return stop_with_checkpoint(f"at epoch {ep + 1}, batch {tr.batch}", spent, trained)
            row: dict[str, Any] = {"epoch": ep + 1}
            row.update({f"train_{k}": v for k, v in tr.totals(tr.meter).items()})
            tr.check_finite(f"epoch {ep + 1}", row)  # before it is evaluated, shown or saved
            last = tr.epoch == cfg.epochs
            evaluate = (ep + 1) % cfg.eval_every == 0 or last
            if s.val is not None and (evaluate or tr.step.plateau):  # the plateau scheduler watches val_loss every epoch
                row.update({f"val_{k}": v for k, v in tr.evaluate(s.val).items()})
            if test_due(cfg, ep + 1, last, s.val is not None, restoring):
                row.update({f"test_{k}": v for k, v in tr.evaluate(b.test).items()})
            row["lr"] = tr.lr()
            row["samples_per_s"] = trained / spent if spent > 0 else 0.0
            row["elapsed_s"] = base.run_s + time.perf_counter() - t_start
            tr.step.end_epoch(row)  # the per-epoch schedulers' steps
            tr.history.append(row)
            say(epoch_line(row, cfg.epochs))
            improved, tr.stopped_early = early_stop(tr, row, cfg)
            # best.pt, then checkpoint.pt, then metrics.csv: a write that fails (a full disk) leaves
            # metrics.csv with the rows of the checkpoint before, and best.pt at most ahead of it by
            # weights a resume computes again bit for bit
            if improved and main:
                save_best(tr, run_dir)
            saved = (ep + 1) % cfg.checkpoint_every == 0 or last or tr.stopped_early
            if saved:
                save()
            if main:
                log.add(row)
                for line in _extras(tr, run_dir, ep + 1, last, saved):  # pictures, samples: once the epoch is saved
                    say(line)
            if tr.stopped_early:
                say(f"early stopping: {watched} has not improved for {tr.bad_evals} evaluation(s)")
                break
    finally:
        for n, handler in old.items():
            signal.signal(n, handler)
    final, final_epoch, final_from = final_metrics(tr, run_dir, restoring, say)
    if not main:
        distributed.barrier(tr.world)  # leave together, once rank 0 has written the summary
        return 0
    try:
        note = runs.plot_curves(run_dir, tr.history, name=s.checked.spec.name,
                                best=tr.best if cfg.early_stopping else None)
    except Exception as e:  # noqa: BLE001 - a picture: the run is saved, its summary still to write
        note = f"note: curves.png not written ({_first_line(e)})"
    if note:
        say(note)
    run_s = base.run_s + time.perf_counter() - t_start  # over every command that trained this run
    summary = {
        "spec": source_path, "name": s.checked.spec.name, "run_dir": run_dir, "epochs": tr.epoch,
        "task": {"name": s.task.name, **s.task_args},
        "stopped_early": tr.stopped_early, "final": final, "final_epoch": final_epoch, "final_from": final_from,
        "best": tr.best, "train_time_s": round(base.train_s + train_time, 3), "wall_time_s": round(run_s, 3),
        "times_s": {"prepare": round(s.prepare_s, 3), "setup": round(t_start - t_setup, 3),
                    "train": round(base.train_s + train_time, 3), "run": round(run_s, 3),
                    **({"since_command_start": round(time.perf_counter() - opts.started, 3)}
                       if opts.started is not None else {})},
        "device": str(s.device),
        "device_name": torch.cuda.get_device_name(s.device) if s.device.type == "cuda" else _cpu_name(),
        "threads": torch.get_num_threads(), "threads_requested": opts.threads, "processes": tr.world.size,
        "precision": tr.plan.precision, "path": tr.ran().name, "plan": tr.ran().as_dict(),
        "params": sum(p.numel() for p in tr.model.parameters()),
        "data": {"name": b.name, "train": len(b.train), "val": len(s.val) if s.val is not None else 0,
                 "test": len(b.test), **b.info},
        "spec_hash": runs.spec_hash(s.doc.data), "overrides": s.overrides, "versions": runs.versions(),
    }
    baseline = tr.task.baseline()
    if baseline:
        summary["baseline"] = baseline
    runs.write_summary(run_dir, summary)
    say("test " + fmt_metrics("", {k[5:]: v for k, v in final.items()})
        + "".join(f" │ {k.replace('_', ' ')} {v:.4f}" for k, v in baseline.items())
        + (f" │ weights of the {final_from}" if cfg.early_stopping else ""))
    distributed.barrier(tr.world)
    return 0


def _first_line(e: BaseException) -> str:
    text = (str(e).strip().splitlines() or [""])[0][:200]
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _extras(tr: Trainer, run_dir: str, epoch: int, last: bool, saved: bool) -> list[str]:
    """The task's lines and pictures after an epoch (samples.txt, samples.png, reconstructions.png), made once
    the epoch is saved: when one fails (a full disk, a sample torch refuses), the run says so in one line and
    goes on; the epoch is not lost."""
    try:
        return list(tr.task.after_epoch(run_dir, epoch, last))
    except Exception as e:  # noqa: BLE001 - anything: what is saved stays saved
        return [f"note: epoch {epoch}: the {tr.s.task.name} task's samples failed ({_first_line(e)}); "
                + ("the epoch is saved, " if saved else "") + "the run goes on"]


def epoch_line(row: dict[str, Any], epochs: int) -> str:
    parts = [f"epoch {row['epoch']:>{len(str(epochs))}}/{epochs}"]
    for split in ("train", "val", "test"):
        vals = {k[len(split) + 1:]: v for k, v in row.items() if k.startswith(split + "_")}
        if vals:
            parts.append(fmt_metrics(split, vals))
    parts.append(f"{row['samples_per_s']:,.0f} samples/s")
    parts.append(f"{row['elapsed_s']:.1f}s")
    return " │ ".join(parts)


def _progress(opts: Options, total: int, desc: str, initial: int = 0) -> Any:
    if not opts.progress or opts.quiet or not sys.stderr.isatty():
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, initial=initial, desc=desc, unit="batch", leave=False, dynamic_ncols=True,
                mininterval=0.25)


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _cpu_name() -> str:
    return f"{runs.cpu_model()} ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads)"
