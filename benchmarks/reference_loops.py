"""Hand-written reference training loops: what `dlspec run` is compared against.

Four recipes, written the way the PyTorch teaching texts write them: a Dataset that holds the uint8 images
and applies a per-sample transform in __getitem__ (ToTensor, Normalize — re-implemented here, so that
torchvision is not needed), a shuffling DataLoader, the usual zero_grad / backward / step loop with a running
loss via loss.item() and a running accuracy per batch, and an evaluation pass over the test set under
torch.no_grad() after every epoch.

    python benchmarks/reference_loops.py lenet --seeds 0 1 2 --json /tmp/ref/lenet.json
    python benchmarks/reference_loops.py mnist_cnn --subset 200 --epochs 1     # smoke test

| recipe     | data                                   | model                                      | training                     |
|------------|----------------------------------------|--------------------------------------------|------------------------------|
| lenet      | Fashion-MNIST, x/255                   | d2l LeNet (sigmoid, avg-pool, xavier init) | batch 256, SGD 0.9, 10 ep    |
| simple_cnn | Fashion-MNIST, Normalize(0.5, 0.5)     | conv32-relu-maxpool, fc128, fc10           | batch 32, Adam 1e-3, 5 ep    |
| mnist_cnn  | MNIST, Normalize(0.1307, 0.3081)       | conv32, conv64 (relu, maxpool), fc128, fc10| batch 64, SGD 0.01, 10 ep    |
| lstm_rows  | MNIST, x/255, image = 28 rows of 28    | LSTM(28, 100), last step -> Linear(100, 10)| batch 32, SGD 0.01, 20 ep    |

Data: torchvision's layout, <data-root>/{MNIST,FashionMNIST}/raw/*-ubyte.gz, read with gzip + numpy.
--data-root defaults to $DLSPEC_DATA, else ../shared/data relative to the repository.
"""

from __future__ import annotations

import argparse
import datetime
import gzip
import importlib.util
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

HAVE_PIL = importlib.util.find_spec("PIL") is not None

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_DATA = os.environ.get("DLSPEC_DATA") or os.path.join(os.path.dirname(ROOT), "shared", "data")


# ---------------------------------------------------------------------------------------------- data


def read_idx(path: str) -> np.ndarray:
    """An IDX file (gzipped or not) as a numpy uint8 array: (N, rows, cols) for images, (N,) for labels."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    magic = int.from_bytes(data[0:4], "big")
    if magic >> 8 != 0x08:  # 0x08 = unsigned byte
        raise ValueError(f"{path}: not a uint8 IDX file (magic {magic:#010x})")
    ndim = magic & 0xFF
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims).copy()


class ToTensor:
    """torchvision.transforms.ToTensor for a grayscale image: float32 1×H×W in [0, 1].

    Takes what IdxImages gives: a PIL image, as torchvision's MNIST does (then the same steps as
    torchvision's to_tensor: np.array copy, view H×W×C, permute, float, /255), or a uint8 array (--no-pil).
    """

    def __call__(self, img: Any) -> torch.Tensor:
        if isinstance(img, np.ndarray):
            return torch.from_numpy(img).unsqueeze(0).contiguous().to(torch.float32).div(255)
        t = torch.from_numpy(np.array(img, np.uint8, copy=True))
        t = t.view(img.size[1], img.size[0], len(img.getbands())).permute((2, 0, 1)).contiguous()
        return t.to(dtype=torch.float32).div(255)


class Normalize:
    """torchvision.transforms.Normalize: (x - mean) / std per channel."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]):
        self.mean = torch.as_tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.as_tensor(std, dtype=torch.float32).view(-1, 1, 1)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x.sub(self.mean).div(self.std)


class Compose:
    def __init__(self, transforms: list[Callable[[Any], Any]]):
        self.transforms = transforms

    def __call__(self, x: Any) -> Any:
        for t in self.transforms:
            x = t(x)
        return x


class IdxImages(Dataset):
    """MNIST / FashionMNIST from torchvision's raw folder: uint8 images in memory, transform per sample."""

    def __init__(self, root: str, name: str, train: bool, transform: Callable[[np.ndarray], torch.Tensor],
                 subset: int | None = None):
        prefix = "train" if train else "t10k"
        raw = os.path.join(root, name, "raw")
        self.images = read_idx(os.path.join(raw, f"{prefix}-images-idx3-ubyte.gz"))
        self.labels = read_idx(os.path.join(raw, f"{prefix}-labels-idx1-ubyte.gz"))
        if subset is not None:
            self.images, self.labels = self.images[:subset], self.labels[:subset]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    # as torchvision's MNIST.__getitem__: Image.fromarray(img, mode="L") before the transform; without Pillow
    # the transform gets the uint8 array (lighter, so the source-style loop is faster, not slower)
    pil = HAVE_PIL

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        img = self.images[i]
        if self.pil:
            from PIL import Image

            img = Image.fromarray(img, mode="L")
        return self.transform(img), int(self.labels[i])


# --------------------------------------------------------------------------------------------- models


def lenet() -> nn.Module:
    """d2l.ai chapter 7.6 (LeNet), with d2l's init_weights: xavier_uniform_ on Linear and Conv2d weights."""
    net = nn.Sequential(
        nn.Conv2d(1, 6, kernel_size=5, padding=2), nn.Sigmoid(),
        nn.AvgPool2d(kernel_size=2, stride=2),
        nn.Conv2d(6, 16, kernel_size=5), nn.Sigmoid(),
        nn.AvgPool2d(kernel_size=2, stride=2),
        nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120), nn.Sigmoid(),
        nn.Linear(120, 84), nn.Sigmoid(),
        nn.Linear(84, 10))

    def init_weights(m: nn.Module) -> None:
        if type(m) is nn.Linear or type(m) is nn.Conv2d:
            nn.init.xavier_uniform_(m.weight)

    net.apply(init_weights)
    return net


class SimpleCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, kernel_size=3, stride=1, padding=1)
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)
        self.fc1 = nn.Linear(32 * 14 * 14, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(torch.relu(self.conv1(x)))
        x = x.view(-1, 32 * 14 * 14)
        x = torch.relu(self.fc1(x))
        return self.fc2(x)


class MnistCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3)
        self.conv2 = nn.Conv2d(32, 64, 3)
        self.fc1 = nn.Linear(64 * 5 * 5, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = torch.max_pool2d(torch.relu(self.conv2(x)), 2)
        x = torch.flatten(x, 1)
        x = torch.relu(self.fc1(x))
        return self.fc2(x)


class RowLSTM(nn.Module):
    """Reads a 28×28 image as a sequence of 28 rows of 28 pixels; classifies from the last step's output."""

    def __init__(self, input_size: int = 28, hidden_size: int = 100, num_classes: int = 10):
        super().__init__()
        self.lstm = nn.LSTM(input_size, hidden_size, batch_first=True)
        self.fc = nn.Linear(hidden_size, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.view(-1, 28, 28)  # (B, 1, 28, 28) -> (B, 28 steps, 28 features)
        out, _ = self.lstm(x)
        return self.fc(out[:, -1, :])


# -------------------------------------------------------------------------------------------- recipes


@dataclass
class Recipe:
    dataset: str
    transform: Callable[[], Callable[[np.ndarray], torch.Tensor]]
    model: Callable[[], nn.Module]
    optimizer: Callable[[Any], torch.optim.Optimizer]
    batch_size: int
    epochs: int
    reported: float
    describe: str


RECIPES: dict[str, Recipe] = {
    "lenet": Recipe(
        "FashionMNIST", lambda: ToTensor(), lenet,
        lambda p: torch.optim.SGD(p, lr=0.9), 256, 10, 0.798,
        "Fashion-MNIST x/255; d2l LeNet (sigmoid, avgpool, xavier); SGD lr 0.9; batch 256"),
    "simple_cnn": Recipe(
        "FashionMNIST", lambda: Compose([ToTensor(), Normalize((0.5,), (0.5,))]), SimpleCNN,
        lambda p: torch.optim.Adam(p, lr=1e-3), 32, 5, 0.912,
        "Fashion-MNIST Normalize(0.5, 0.5); conv32-relu-maxpool-fc128-fc10; Adam 1e-3; batch 32"),
    "mnist_cnn": Recipe(
        "MNIST", lambda: Compose([ToTensor(), Normalize((0.1307,), (0.3081,))]), MnistCNN,
        lambda p: torch.optim.SGD(p, lr=0.01), 64, 10, 0.988,
        "MNIST Normalize(0.1307, 0.3081); conv32-conv64 (relu, maxpool)-fc128-fc10; SGD lr 0.01; batch 64"),
    "lstm_rows": Recipe(
        "MNIST", lambda: ToTensor(), RowLSTM,
        lambda p: torch.optim.SGD(p, lr=0.01), 32, 20, 0.970,
        "MNIST x/255 as 28 rows; LSTM(28, 100) last step -> Linear(100, 10); SGD lr 0.01; batch 32"),
}


# ------------------------------------------------------------------------------------------- training


def evaluate(model: nn.Module, loader: DataLoader) -> float:
    model.eval()
    correct, total = 0, 0
    with torch.no_grad():
        for x, y in loader:
            out = model(x)
            correct += (out.argmax(1) == y).sum().item()
            total += y.size(0)
    return correct / total


def train_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, criterion: nn.Module,
                loader: DataLoader, device: torch.device | str | None = None) -> tuple[float, int, int]:
    """One pass over the loader as the texts write it: (summed loss, correct, samples), read per batch.

    device: where the model is, when not the CPU; each batch is moved there with .to(device), as the texts do.
    """
    model.train()
    running_loss, correct, seen = 0.0, 0, 0
    for x, y in loader:
        if device is not None:
            x, y = x.to(device), y.to(device)
        optimizer.zero_grad()
        out = model(x)
        loss = criterion(out, y)
        loss.backward()
        optimizer.step()
        running_loss += loss.item() * y.size(0)
        correct += (out.argmax(1) == y).sum().item()
        seen += y.size(0)
    return running_loss, correct, seen


def train_one_seed(recipe: Recipe, train_set: Dataset, test_set: Dataset, seed: int, epochs: int,
                   workers: int) -> dict[str, Any]:
    torch.manual_seed(seed)
    model = recipe.model()
    optimizer = recipe.optimizer(model.parameters())
    criterion = nn.CrossEntropyLoss()
    train_loader = DataLoader(train_set, batch_size=recipe.batch_size, shuffle=True, num_workers=workers)
    test_loader = DataLoader(test_set, batch_size=recipe.batch_size, shuffle=False, num_workers=workers)

    history = []
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        running_loss, correct, seen = train_epoch(model, optimizer, criterion, train_loader)
        train_s = time.perf_counter() - t0
        test_acc = evaluate(model, test_loader)
        elapsed = time.perf_counter() - start
        row = {"epoch": epoch, "train_loss": running_loss / seen, "train_acc": correct / seen, "test_acc": test_acc,
               "samples_per_s": seen / train_s, "train_s": train_s, "epoch_s": time.perf_counter() - t0,
               "elapsed_s": elapsed}
        history.append(row)
        print(f"  seed {seed} epoch {epoch:2d}/{epochs}  train loss {row['train_loss']:.4f}  "
              f"train acc {row['train_acc']:.4f}  test acc {test_acc:.4f}  "
              f"{row['samples_per_s']:7.0f} samples/s  elapsed {elapsed:7.1f} s", flush=True)
    wall = time.perf_counter() - start
    total_train_s = sum(r["train_s"] for r in history)
    return {"seed": seed, "test_acc": history[-1]["test_acc"], "best_test_acc": max(r["test_acc"] for r in history),
            "final_train_loss": history[-1]["train_loss"], "wall_s": wall,
            "samples_per_s": len(train_set) * len(history) / total_train_s, "epochs": history}


def machine_info() -> dict[str, Any]:
    from dlspec.runs import cpu_model

    return {"cpu": cpu_model(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(), "platform": platform.platform(),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("recipe", choices=sorted(RECIPES))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--epochs", type=int, help="default: the recipe's")
    ap.add_argument("--data-root", default=DEFAULT_DATA, metavar="DIR",
                    help="folder holding MNIST/ and FashionMNIST/ (default: $DLSPEC_DATA, else ../shared/data)")
    ap.add_argument("--subset", type=int, metavar="N", help="use only the first N train and N test samples")
    ap.add_argument("--workers", type=int, default=0, help="DataLoader num_workers (default 0)")
    ap.add_argument("--no-pil", action="store_true",
                    help="hand the transform uint8 arrays instead of PIL images (lighter than torchvision's MNIST)")
    ap.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's own choice)")
    ap.add_argument("--json", metavar="PATH", help="write the results here")
    args = ap.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    recipe = RECIPES[args.recipe]
    epochs = args.epochs or recipe.epochs
    t0 = time.perf_counter()
    IdxImages.pil = HAVE_PIL and not args.no_pil
    if not HAVE_PIL and not args.no_pil:
        print("(no Pillow here: the transform gets uint8 arrays, as with --no-pil)", flush=True)
    train_set = IdxImages(args.data_root, recipe.dataset, True, recipe.transform(), args.subset)
    test_set = IdxImages(args.data_root, recipe.dataset, False, recipe.transform(), args.subset)
    load_s = time.perf_counter() - t0
    machine = machine_info()
    print(f"{args.recipe}: {recipe.describe}; {epochs} epochs; {len(train_set)} train / {len(test_set)} test "
          f"(read in {load_s:.1f} s); workers {args.workers}", flush=True)

    runs = [train_one_seed(recipe, train_set, test_set, seed, epochs, args.workers) for seed in args.seeds]

    accs = [r["test_acc"] for r in runs]
    mean = statistics.fmean(accs)
    std = statistics.stdev(accs) if len(accs) > 1 else 0.0
    print()
    for r in runs:
        print(f"{args.recipe} seed {r['seed']}: test acc {r['test_acc']:.4f} (best {r['best_test_acc']:.4f})  "
              f"wall {r['wall_s']:.1f} s  {r['samples_per_s']:.0f} samples/s")
    print(f"{args.recipe}: test acc {mean:.4f} ± {std:.4f} over {len(accs)} seed(s) (sample std)  "
          f"[the texts report {recipe.reported:.3f}]")
    print(f"machine: {machine['cpu']}, {machine['cores']} cores, torch threads {machine['torch_threads']}; "
          f"torch {machine['torch']}; Python {machine['python']}; {machine['date']}")

    if args.json:
        result = {"recipe": args.recipe, "description": recipe.describe, "dataset": recipe.dataset,
                  "batch_size": recipe.batch_size, "epochs": epochs, "subset": args.subset, "workers": args.workers,
                  "seeds": args.seeds, "reported_test_acc": recipe.reported,
                  "test_acc_mean": mean, "test_acc_std": std, "runs": runs, "machine": machine,
                  "argv": sys.argv}
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
