"""Style transfer: netloupe's ``style_transfer`` against the standard PyTorch Gatys recipe written
out below (the neural-style tutorial's: the VGG-19 features cut after the last loss layer, Gram
matrices over C * H * W, L-BFGS at lr 1 on the pixels, clamped to [0, 1] before each evaluation),
with the same layers, weights, images and number of function evaluations, side by side in one
process. Both final images are scored by the same loss function.

    PYTHONPATH=src python benchmarks/style.py --steps 100 --size 128
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

import netloupe as nl
from common import table

CONTENT, STYLE = [21], [0, 5, 10, 19, 28]  # conv4_2; conv1_1 .. conv5_1


class Recipe:
    """The tutorial's model: normalization, then VGG-19's features up to the last loss layer, with
    the ReLUs out of place so that a captured conv output is not overwritten."""

    def __init__(self, vgg: nn.Module, mean, std, content01, style01, style_weight, content_weight):
        layers = [nn.ReLU() if isinstance(m, nn.ReLU) else m for m in list(vgg.features)[:max(CONTENT + STYLE) + 1]]
        self.net = nn.Sequential(*layers).eval().requires_grad_(False)
        self.mean, self.std = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)
        self.sw, self.cw = style_weight, content_weight
        with torch.no_grad():
            self.targets = self.features(content01)
            self.grams = {i: gram(f) for i, f in self.features(style01).items()}

    def features(self, x):
        out, h = {}, (x - self.mean) / self.std
        for i, m in enumerate(self.net):
            h = m(h)
            if i in CONTENT + STYLE:
                out[i] = h
        return out

    def loss(self, x):
        f = self.features(x)
        style = sum(F.mse_loss(gram(f[i]), self.grams[i]) for i in STYLE)
        return self.sw * style + self.cw * sum(F.mse_loss(f[i], self.targets[i]) for i in CONTENT)


def gram(f):
    n, c, h, w = f.shape
    f = f.reshape(n, c, h * w)
    return f @ f.transpose(1, 2) / (c * h * w)


def run_recipe(recipe: Recipe, content01, steps):
    """The tutorial's loop: L-BFGS steps of 20 evaluations until ``steps`` evaluations."""
    x = content01.clone().requires_grad_(True)
    opt = torch.optim.LBFGS([x])
    evals = [0]

    def closure():
        with torch.no_grad():
            x.clamp_(0, 1)
        opt.zero_grad()
        loss = recipe.loss(x)
        loss.backward()
        evals[0] += 1
        return loss

    while evals[0] < steps:
        opt.step(closure)
    with torch.no_grad():
        x.clamp_(0, 1)
    return x.detach(), evals[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=100, help="function evaluations (a multiple of 20)")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=2, help="alternated runs of each; the fastest counts")
    ap.add_argument("--content", default="chelsea")
    ap.add_argument("--style", default="hubble")
    args = ap.parse_args()
    torch.manual_seed(0)
    vgg = torchvision.models.vgg19(weights=None).eval()
    pre = nl.Preprocess(size=args.size, resize=args.size)
    model = nl.LoadedModel(vgg, pre, None, "vgg19 (random weights)")
    content, style = (model.inputs(nl.samples.path(n)) for n in (args.content, args.style))
    content01, style01 = pre.inverse(content), pre.inverse(style)
    scorer = Recipe(vgg, pre.mean, pre.std, content01, style01, 1e6, 1.0)

    def recipe():  # its targets are computed in the timed part, as netloupe's are
        return run_recipe(Recipe(vgg, pre.mean, pre.std, content01, style01, 1e6, 1.0), content01, args.steps)

    def ours():
        return nl.style_transfer(model, content, style, steps=args.steps, optimizer="lbfgs",
                                 progress=False).images, args.steps

    runs = {"PyTorch tutorial recipe (features[:29], LBFGS max_iter=20)": recipe,
            "netloupe style_transfer (whole vgg19)": ours}
    best, losses = {name: float("inf") for name in runs}, {}
    for _ in range(args.repeats):  # alternated, so that a busy machine slows both alike
        for name, fn in runs.items():
            t0 = time.perf_counter()
            image, evals = fn()
            best[name] = min(best[name], (time.perf_counter() - t0) / evals)
            with torch.no_grad():
                losses[name] = scorer.loss(image).item()
            print(f"{name}: {evals} evaluations, {1000 * best[name]:.0f} ms per step (best so far), "
                  f"final loss {losses[name]:.3f}", flush=True)
    rows = [(name, args.steps, f"{1000 * best[name]:.0f} ms", f"{losses[name]:.3f}") for name in runs]
    print(table(rows, ["run", "evaluations", "per step", "final loss"]))
    (ref, ours_) = runs
    print(f"per-step ratio {best[ours_] / best[ref]:.3f}; final loss ratio {losses[ours_] / losses[ref]:.4f}")


if __name__ == "__main__":
    main()
