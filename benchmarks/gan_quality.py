"""How good are the DCGAN's digits?  A classifier trained by `dlspec run` on real MNIST labels judges
1,000 generated samples: the share it classifies with a top-class probability above 0.9, and the class
histogram (a generator that has collapsed onto a few modes leaves digits out).

    python benchmarks/gan_quality.py [--gan RUN_DIR] [--classifier RUN_DIR] [--data-root ../shared/data]

Without --gan / --classifier it trains them first with `dlspec run specs/dcgan.yaml` and
`dlspec run specs/mlp.yaml` (or --classifier-spec; minutes on a 2-core CPU).  The generated images are mapped from the GAN's
data scaling back to pixels (x·std + mean of its train.data.normalize) and into the classifier's.
For reference it prints the same two numbers for 1,000 real MNIST test images and for 1,000 images of
uniform noise.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def train(spec: str, data_root: str, out: str, *overrides: str) -> str:
    p = subprocess.run([sys.executable, "-m", "dlspec", "run", spec, "--data-root", data_root, "--out", out,
                        "--no-progress", *overrides], cwd=ROOT, capture_output=True, text=True)
    if p.returncode:
        raise SystemExit(p.stdout[-2000:] + p.stderr[-2000:])
    return next(line.split(" ", 1)[1] for line in p.stdout.splitlines() if line.startswith("run "))


def session(run_dir: str, data_root: str) -> object:
    import torch

    from dlspec.session import Options, prepare

    s = prepare(os.path.join(run_dir, "spec.yaml"), [], Options(data_root=data_root, progress=False, quiet=True),
                training=False)
    s.model.load_state_dict(torch.load(os.path.join(run_dir, "checkpoint.pt"), map_location="cpu",
                                       weights_only=True)["model"])
    s.model.eval()
    return s


def scaling(s: object) -> tuple[float, float]:
    norm = s.cfg.data_args.get("normalize")  # type: ignore[attr-defined]
    if isinstance(norm, (list, tuple)):  # ((means), (stds)) as the options resolve it
        return float(norm[0][0]), float(norm[1][0])
    return 0.0, 1.0


def judge(clf: object, pixels: object) -> tuple[float, list[int]]:
    import torch

    mean, std = scaling(clf)
    with torch.no_grad():
        p = clf.model((pixels - mean) / std).softmax(-1)  # type: ignore[attr-defined,operator]
    top = p.max(-1)
    return float((top.values > 0.9).float().mean()), torch.bincount(top.indices, minlength=10).tolist()


def main() -> None:
    import torch

    from dlspec.step import make_task

    ap = argparse.ArgumentParser()
    ap.add_argument("--gan")
    ap.add_argument("--classifier")
    ap.add_argument("--classifier-spec", default="specs/mlp.yaml", help="trained when --classifier is not given")
    ap.add_argument("--data-root", default=os.path.join(ROOT, "..", "shared", "data"))
    ap.add_argument("--out", default=os.path.join(ROOT, "runs", "gan_quality"))
    ap.add_argument("-n", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--epochs", type=int, help="train the DCGAN this many epochs (default: the spec's 5)")
    a = ap.parse_args()
    gan_dir = a.gan or train("specs/dcgan.yaml", a.data_root, a.out,
                             *([f"train.epochs={a.epochs}"] if a.epochs else []))
    clf_dir = a.classifier or train(a.classifier_spec, a.data_root, a.out)
    gan, clf = session(gan_dir, a.data_root), session(clf_dir, a.data_root)
    step: Any = make_task(gan).step  # the GAN's step (dlspec.tasks.adversarial_step)
    mean, std = scaling(gan)
    fake = step.samples(a.n, a.seed) * std + mean  # back to pixels 0..1
    real = clf.bundle.test.x[:a.n] * scaling(clf)[1] + scaling(clf)[0]
    noise = torch.rand(a.n, 1, 28, 28, generator=torch.Generator().manual_seed(a.seed))
    out = {}
    for name, x in (("generated", fake.clamp(0, 1)), ("real test images", real), ("uniform noise", noise)):
        share, hist = judge(clf, x)
        out[name] = {"confident_share": share, "histogram": hist}
        print(f"{name:>17}: top-class probability > 0.9 for {share:.3f} · classes 0-9: {hist}")
    with open(os.path.join(gan_dir, "quality.json"), "w") as f:
        json.dump({"gan": gan_dir, "classifier": clf_dir, "n": a.n, "seed": a.seed, **out}, f, indent=1)
    print(f"gan {gan_dir} · classifier {clf_dir}")


if __name__ == "__main__":
    main()
