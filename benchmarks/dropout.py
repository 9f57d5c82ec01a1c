"""netloupe.augment against dropviz's method: model passes and wall time to the same tolerance.

The baseline is dropviz's optimization, faithfully: Adam with torch's defaults (lr = 1e-3) on all
n samples of an input at once, the loss being the MSE averaged over all samples, stopping when
that mean falls below the tolerance -- plus optimizer.zero_grad() every step, without which it
does not converge at all. Both start from the same dropout targets (drawn once by netloupe, with
BatchNorm in eval: dropviz's own targets depend on batch statistics and cannot be reached by an
eval-mode model) and stop at the same tolerance: a fraction of the mean starting MSE.

A pass is one image through the model forward and backward; the baseline spends n per step,
netloupe one per still-running sample per step.

    PYTHONPATH=src OMP_NUM_THREADS=2 python benchmarks/dropout.py [--only default|vgg11_bn]

``--lr-scan 0.005,0.01,0.02,0.05,0.1`` instead runs netloupe alone on the default model at each
lr and prints passes and augmentation strength (mean |x~ - x|) per optimizer: what the default
optimizer was chosen on.

A run stopped by max steps before the tolerance is marked "no" and its ratio is then a lower bound.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings

import torch
import torch.nn.functional as F
import torchvision.models as tvm

import netloupe as nl


def baseline(model, layer, x, targets, tol, max_steps):
    """dropviz's loop (with zero_grad) on n copies of one input; returns (steps, passes, seconds, loss)."""
    n = targets.shape[0]
    data = x.repeat(n, 1, 1, 1).requires_grad_(True)
    opt = torch.optim.Adam([data])
    t0 = time.perf_counter()
    loss, ep = float("inf"), 0
    with nl.probe(model, [layer]) as p:  # eval mode, frozen parameters, L's true output
        while loss > tol and ep < max_steps:
            model(data)
            mse = F.mse_loss(p.activations[layer], targets)
            loss = float(mse.detach())
            if loss <= tol:
                break
            opt.zero_grad()
            mse.backward()
            opt.step()
            ep += 1
            if ep % 100 == 0:
                print(f"  dropviz step {ep}: loss {loss:.4g} (tolerance {tol:.4g})", file=sys.stderr, flush=True)
    return ep, (ep + 1) * n, time.perf_counter() - t0, loss


def starting_point(loaded, layer, x, n):
    """augment with no steps (seed 0): the dropout targets every run here shares, and in ``loss``
    the MSE at x before any step."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no steps: the "did not converge" warning is expected
        return nl.augment(loaded, x, layer, n=n, steps=0, seed=0, progress=False)


def case(name, loaded, layer, x, n, fraction, optimizers, max_steps):
    rows = []
    probe_run = starting_point(loaded, layer, x, n)
    start = probe_run.loss[0]  # MSE at x, before any step
    tol = fraction * float(start.mean())
    for opt in optimizers:
        t0 = time.perf_counter()
        r = nl.augment(loaded, x, layer, n=n, seed=0, loss_tolerance=tol, optimizer=opt, steps=max_steps,
                       progress=False)
        sec = time.perf_counter() - t0
        print(f"  netloupe {opt}: {sec:.1f} s", file=sys.stderr, flush=True)
        assert torch.equal(r.targets, probe_run.targets)
        rows.append((f"netloupe {opt}", int(r.steps.max()), r.passes - 1 - n, sec, float(r.loss.max()),
                     bool(r.converged.all())))
    steps, passes, sec, loss = baseline(loaded.module, layer, x, probe_run.targets[0], tol, max_steps)
    rows.append(("dropviz (Adam 1e-3, mean MSE, + zero_grad)", steps, passes, sec, loss, loss <= tol))
    base = rows[-1][2]
    print(f"\n### {name}, layer `{layer}`, n = {n}, input {tuple(x.shape[1:])}, tolerance {tol:.4g} "
          f"({fraction:g} x mean starting MSE {float(start.mean()):.4g})\n")
    print("| method | steps | passes | wall s | final loss (max) | reached | passes vs dropviz |")
    print("|---|---|---|---|---|---|---|")
    for label, st, ps, s, loss, ok in rows:
        print(f"| {label} | {st} | {ps} | {s:.1f} | {loss:.4g} | {'yes' if ok else 'no'} | {'>= ' if not rows[-1][5] else ''}{base / ps:.1f}x fewer |")
    return rows


def lr_scan(loaded, layer, x, n, fraction, optimizers, lrs, max_steps):
    """Passes and strength per optimizer and lr: does the size of x~ - x measure dropout or lr?"""
    tol = fraction * float(starting_point(loaded, layer, x, n).loss.mean())
    print(f"\n### lr scan: default model, layer `{layer}`, n = {n}, tolerance {tol:.4g}\n")
    print("| optimizer | lr | passes | steps per sample | all reached | mean abs(x~ - x) per sample (pixel units) |")
    print("|---|---|---|---|---|---|")
    for opt in optimizers:
        for lr in lrs:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # a run that misses the tolerance shows "no" in the table
                r = nl.augment(loaded, x, layer, n=n, seed=0, loss_tolerance=tol, optimizer=opt, lr=lr,
                               steps=max_steps, progress=False)
            strength = ", ".join(f"{v:.4f}" for v in r.strength.flatten().tolist())
            print(f"| {opt} | {lr:g} | {r.passes - 1 - n} | {r.steps.flatten().tolist()} | "
                  f"{'yes' if r.converged.all() else 'no'} | {strength} |", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--fraction", type=float, default=0.05)
    ap.add_argument("--max-steps", type=int, default=3000)
    ap.add_argument("--vgg-size", type=int, default=64)
    ap.add_argument("--vgg-n", type=int, default=2)
    ap.add_argument("--vgg-fraction", type=float, default=0.75,
                    help="random-weight VGG converges slowly for every method; a looser tolerance keeps the run short")
    ap.add_argument("--vgg-max-steps", type=int, default=150)
    ap.add_argument("--only", choices=["default", "vgg11_bn"], default=None)
    ap.add_argument("--optimizers", default="lbfgs,adam", help="netloupe optimizers to run, comma-separated")
    ap.add_argument("--lr-scan", default=None, help="comma-separated lrs: scan netloupe alone on the default model")
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")
    if args.lr_scan:
        model = nl.load_model("default")
        lr_scan(model, "classifier", model.inputs(nl.samples.path("chelsea")), args.n, args.fraction,
                args.optimizers.split(","), [float(v) for v in args.lr_scan.split(",")], 300)
        return
    if args.only in (None, "default"):
        model = nl.load_model("default")
        x = model.inputs(nl.samples.path("chelsea"))
        case("default model (EfficientNet-Lite0, ImageNet weights)", model, "classifier", x, args.n,
             args.fraction, args.optimizers.split(","), args.max_steps)
    if args.only in (None, "vgg11_bn"):
        torch.manual_seed(0)
        vgg = nl.load_model(tvm.vgg11_bn(weights=None).eval())
        x = vgg.inputs(nl.samples.path("chelsea"))
        x = F.interpolate(x, size=args.vgg_size, mode="bilinear", align_corners=False)
        case("vgg11_bn, random weights", vgg, "classifier.3", x, args.vgg_n, args.vgg_fraction, args.optimizers.split(","),
             args.vgg_max_steps)


if __name__ == "__main__":
    main()
