"""Fine-tune the default model on the sample photos, a checkpoint per epoch, then compare the
checkpoints with the base model: which layers moved, and which channels most.

Runs offline on a CPU in a few minutes:

    python examples/finetune_and_compare.py --out finetune/ [--pictures docs/images]

The task: tell the eight sample photos apart from crops of them (48 images, 8 classes), with a
new 8-way head on EfficientNet-Lite0; every layer is trained. The comparisons (netloupe.compare)
run over the same images: every checkpoint by data and weights at four layers (CKA between the
layers, a trajectory over epochs), and the last one by renders too at one layer.
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import torch
import torch.nn as nn
from PIL import Image

import netloupe as nl

LAYERS = ["blocks.1", "blocks.3", "blocks.5", "conv_head"]
RENDERED = "blocks.5"


def dataset(model):
    """The sample dataset's 48 crops as a batch, each labelled with the photo it comes from."""
    data = nl.samples.dataset(48)
    photos = sorted({name.split("-")[0] for name in data.names})
    labels = torch.tensor([photos.index(name.split("-")[0]) for name in data.names])
    return data, model.inputs([data[i] for i in range(len(data))]), labels, photos


def finetune(base, x, labels, epochs: int, out: Path, seed: int):
    """Train a copy of ``base`` (every parameter; BatchNorm in eval, as fine-tuning a small set
    wants), saving its state dict after each epoch; returns the checkpoint paths."""
    torch.manual_seed(seed)
    net = copy.deepcopy(base.module).train()
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()
    opt = torch.optim.AdamW(net.parameters(), lr=3e-4, weight_decay=1e-4)
    paths = []
    g = torch.Generator().manual_seed(seed)
    for epoch in range(1, epochs + 1):
        order = torch.randperm(len(x), generator=g)
        total, correct = 0.0, 0
        for start in range(0, len(x), 8):
            idx = order[start:start + 8]
            logits = net(x[idx])
            loss = nn.functional.cross_entropy(logits, labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
            correct += int((logits.argmax(1) == labels[idx]).sum())
        path = out / f"epoch{epoch}.pt"
        torch.save(net.state_dict(), path)
        paths.append(path)
        print(f"epoch {epoch}: loss {total / len(x):.3f}, train accuracy {correct / len(x):.0%}")
    return paths


def readme_pictures(trajectory, report_dir: Path, folder: Path):
    """The checkpoints' trajectory and CKA charts, and the report's four most changed channels in
    one picture."""
    folder.mkdir(parents=True, exist_ok=True)
    for kind in ("trajectory", "cka"):
        trajectory.save(folder / f"compare_{kind}.png", kind=kind)
    rows = [Image.open(p) for p in sorted(report_dir.glob("most_*.png"))]
    sheet = Image.new("RGB", (max(r.width for r in rows), sum(r.height for r in rows)), "white")
    for k, r in enumerate(rows):
        sheet.paste(r, (0, sum(q.height for q in rows[:k])))
    sheet.save(folder / "compare_changed.png")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--channels", type=int, default=16, help="channels per layer to compare")
    ap.add_argument("--steps", type=int, default=128, help="render steps")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="netloupe-finetune")
    ap.add_argument("--pictures", default=None, help="also write the README's pictures (compare_*.png) here")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.time()
    base = nl.load_model("default")
    data, x, labels, photos = dataset(base)
    torch.manual_seed(args.seed)
    base.module.classifier = nn.Linear(base.module.classifier.in_features, len(photos))  # the new head
    base.labels, base.name = photos, "base"
    paths = finetune(base, x, labels, args.epochs, out, args.seed)
    print(f"fine-tuned in {time.time() - start:.0f} s")
    # every checkpoint against the base, by data and weights: which layers moved, epoch by epoch
    trajectory = nl.compare([base, *paths], LAYERS, data, channels=args.channels, renders=False, seed=args.seed)
    trajectory.save(out / "trajectory")
    for layer in LAYERS:
        print(f"{layer}: similarity to the base after each epoch "
              + ", ".join(f"{trajectory.similarity(i, layer):.3f}" for i in range(1, len(trajectory.names))))
    # the last checkpoint against the base at one layer, by renders too: how the changed units look
    final = nl.compare([base, paths[-1]], [RENDERED], data, channels=args.channels, steps=args.steps, size=96,
                       seed=args.seed)
    final.save(out / "final")
    for row in final.top(5):
        print(f"most changed: {row['layer']}:{row['channel']} score {row['score']:.3f}")
    index = nl.report(final, out / "report", n=4)
    print(index.resolve())
    if args.pictures:
        readme_pictures(trajectory, index.parent, Path(args.pictures))
    print(f"done in {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
