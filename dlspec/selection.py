"""Stage 6d, selection: early stopping, the best epoch (best.pt), the run's final numbers, and what a resume
has left to train.  Rules only: the loop (dlspec.train) asks them at the end of each epoch.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from . import distributed, runs
from .trainspec import TRAIN_ARGS, TrainConfig

if TYPE_CHECKING:
    from .trainer import Trainer

# --- early stopping, the best epoch and the final numbers ----------------------------------------------

def restores_best(cfg: TrainConfig) -> bool:
    """Whether the run ends on the best epoch's weights (early stopping with restore_best)."""
    es = cfg.early_stopping
    return bool(es and cfg.restore_best and not str(es["metric"]).startswith("test_"))


def test_due(cfg: TrainConfig, epoch: int, last: bool, has_val: bool, restoring: bool) -> bool:
    """Whether epoch `epoch` (1-based) evaluates the test set.

    test_every asks for every k epochs.  Left null, a run without a validation split tests every eval_every
    epochs (the source material's recipes print a test line per epoch); with one, the test set is kept out
    of the run until the end: evaluating it every epoch puts it into the choice of the model (and costs a
    pass over it per epoch).  The last epoch is tested for the final numbers, unless those come from the
    best epoch's weights (restore_best), which are tested after the loop instead.
    """
    if cfg.test_every is not None:
        every = epoch % cfg.test_every == 0
    else:
        every = not has_val and epoch % cfg.eval_every == 0
    return every or (last and not restoring)


def early_stop(tr: Trainer, row: dict[str, Any], cfg: TrainConfig) -> tuple[bool, bool]:
    """Early stopping's look at an epoch's row: (the watched metric improved, so tr.best is this epoch now;
    the run should stop).  A test_ metric is never watched: the test set must not choose the model."""
    es = cfg.early_stopping
    if not es:
        return False, False
    m = es["metric"]
    if m not in row or m.startswith("test_"):
        return False, False
    mode = es.get("mode") or ("max" if "acc" in m else "min")
    delta = float(es.get("min_delta", 0.0))
    v = float(row[m])
    better = tr.best is None or (v > tr.best["value"] + delta if mode == "max" else v < tr.best["value"] - delta)
    if better:
        tr.best = {"metric": m, "value": v, "epoch": row["epoch"]}
        tr.bad_evals = 0
        return True, False
    tr.bad_evals += 1
    return False, tr.bad_evals >= int(es.get("patience", 3))


def save_best(tr: Trainer, run_dir: str) -> None:
    """best.pt: the weights of the epoch the watched metric was best at, with that epoch, metric and value
    (`dlspec eval --checkpoint RUN/best.pt` reads its "model" as it reads checkpoint.pt's)."""
    best = dict(tr.best or {})
    runs.atomic_save({"format": 1, "model": tr.model.state_dict(), **best,
                      "spec_hash": runs.spec_hash(tr.s.doc.data), "spec": runs.plain(tr.s.doc.data)},
                     os.path.join(run_dir, "best.pt"))


def final_metrics(tr: Trainer, run_dir: str, restoring: bool, say: Any) -> tuple[dict[str, float], int, str]:
    """The run's final test metrics, the epoch whose weights gave them, and a phrase saying which that is.

    With restore_best the best epoch's weights are loaded back from best.pt and the test set is evaluated
    on them, once.  Otherwise, or when there is no best.pt to load, they are the last epoch's weights: its
    test metrics when it has them, else one evaluation now.  checkpoint.pt keeps the last epoch either way.
    """
    test = tr.s.bundle.test
    best, path = tr.best, os.path.join(run_dir, "best.pt")
    if restoring and best is not None:
        restored = False
        if tr.world.main:  # rank 0 reads best.pt; the others get its weights from it
            try:
                saved = runs.load_checkpoint(path)
                if "epoch" in saved and int(saved["epoch"]) != int(best["epoch"]):  # a resume chose another best
                    raise runs.CheckpointError(path, f"holds epoch {saved['epoch']}, not the best epoch {best['epoch']}")
                tr.model.load_state_dict(saved["model"])
                restored = True
            except Exception as e:  # noqa: BLE001 - deleted, damaged, or a run folder from before best.pt
                why = "there is none" if not os.path.exists(path) else \
                    f"it {e.reason}" if isinstance(e, runs.CheckpointError) else f"{type(e).__name__}: {str(e).strip()[:200]}"
                say(f"note: cannot restore the best epoch's weights from {path} ({why}); the final numbers are the "
                    "last epoch's")
        if distributed.share_from_main(tr.model, restored, tr.world, tr.device):
            final = {f"test_{k}": v for k, v in tr.evaluate(test).items()}
            return final, int(best["epoch"]), f"best epoch {best['epoch']} ({best['metric']} {best['value']:.4f})"
    last = tr.history[-1] if tr.history else {}
    final = {k: v for k, v in last.items() if k.startswith("test_")}
    if not final:
        final = {f"test_{k}": v for k, v in tr.evaluate(test).items()}
    epoch = int(last.get("epoch", tr.epoch))
    return final, epoch, f"last epoch {epoch}"


# --- resuming ----------------------------------------------------------------------------------------------

def ended_early(st: dict[str, Any]) -> bool:
    """Whether early stopping ended the run of checkpoint `st` (one from before the flag: whether its bad
    evaluations had reached the patience of its spec's early_stopping)."""
    if "stopped_early" in st:
        return bool(st["stopped_early"])
    train = (st.get("spec") or {}).get("train")
    es = train.get("early_stopping") if isinstance(train, dict) else None
    return isinstance(es, dict) and not st.get("batch") and int(st.get("bad_evals", 0)) >= int(es.get("patience", 3))


def nothing_to_resume(st: dict[str, Any], cfg: TrainConfig) -> str | None:
    """Why the run of checkpoint `st` has nothing left to train under `cfg` (the spec it is resumed with),
    or None.  A run early stopping ended trains on when the resume asks for more epochs than it has done
    (or its early_stopping, changed, would not have stopped it)."""
    if st.get("batch"):
        return None  # stopped within an epoch
    done = int(st["epoch"])
    train = (st.get("spec") or {}).get("train")
    before = train.get("epochs", TRAIN_ARGS["epochs"].default) if isinstance(train, dict) else None
    es = cfg.early_stopping
    if ended_early(st) and es and int(st.get("bad_evals", 0)) >= int(es.get("patience", 3)) and \
            not (cfg.epochs != before and cfg.epochs > done):
        best = st.get("best") or {}
        return (f"early stopping ended it after epoch {done} of {cfg.epochs} ({best.get('metric', es['metric'])} had "
                f"not improved for {st.get('bad_evals')} evaluation(s)"
                + (f"; best {best['value']:.4f} at epoch {best['epoch']}" if "value" in best else "") + ")")
    if done >= cfg.epochs:
        return f"{done} of {cfg.epochs} epochs done" if done == cfg.epochs else \
            f"{done} epochs done (train.epochs is {cfg.epochs})"
    return None


def train_on(tr: Trainer, cfg: TrainConfig, say: Any) -> None:
    """A run early stopping had ended, resumed with more epochs: it trains on, and early stopping counts its
    patience afresh from the best so far (else the first epoch without an improvement would stop it again)."""
    es = cfg.early_stopping
    if es and tr.bad_evals >= int(es.get("patience", 3)):
        best = tr.best
        say(f"early stopping had ended this run after epoch {tr.epoch}; it watches {es['metric']} again, patience "
            f"{int(es.get('patience', 3))} from its best" + (f" ({best['value']:.4f} at epoch {best['epoch']})" if best else ""))
        tr.bad_evals = 0
    tr.stopped_early = False
