"""How accurate integrated gradients is at a given number of steps, measured against an
independent reference rather than by its own completeness gap: for each sample photo (default
model, gray baseline, the top class), the relative L1 distance of the attribution from the
reference, and the completeness gap, for the adaptive default and the fixed rules.

The reference is a composite Gauss-Legendre rule that shares nothing with the adaptive one:
``--panels`` panels graded geometrically towards the baseline (where the score jumps), 16 nodes
each (640 gradients per photo by default). Its own completeness gap is printed beside it.

The gap is the quadrature error of the score along the path only: a signed sum of errors, small
beside the attribution's L1 mass, so it can be small while the attribution is far from
converged, and swing by several percent when one point moves.

    python benchmarks/ig_accuracy.py --steps 32,50 --panels 40
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

import netloupe as nl

PHOTOS = ("coffee", "chelsea", "rocket", "astronaut", "motorcycle")


def reference(model: nl.LoadedModel, photo: str, panels: int) -> nl.Attribution:
    """Composite 16-point Gauss-Legendre over panels [0, 1e-3, ..., 1] spaced geometrically."""
    edges = np.concatenate([[0.0], np.geomspace(1e-3, 1.0, panels)])
    x = model.inputs(nl.samples.path(photo))
    ends = nl.integrated_gradients(model, x, steps=2, quadrature="riemann_trapezoid")  # the top class, f(x) - f(0)
    total = torch.zeros_like(x, dtype=torch.float64)
    for a, b in zip(edges[:-1], edges[1:]):
        # the panel from a*x to b*x: its unmultiplied IG is the mean gradient there
        r = nl.integrated_gradients(model, b * x, ends.target, baseline=a * x, steps=16, quadrature="gausslegendre",
                                    multiply_by_inputs=False)
        total += (b - a) * r.values.double()
    values = (x * total).float()
    gap = ends.extra["gap"]
    return nl.Attribution(values, "integrated_gradients", ends.target, x, model.preprocess,
                          delta=values.flatten(1).sum(1) - gap, extra={"gap": gap})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", default="32,50")
    ap.add_argument("--methods", default="adaptive,gausslegendre")
    ap.add_argument("--panels", type=int, default=40, help="16-node Gauss-Legendre panels of the reference")
    args = ap.parse_args()
    model = nl.load_model("default")
    steps = [int(s) for s in args.steps.split(",")]
    methods = args.methods.split(",")
    print("| photo | reference gap | " + " | ".join(f"{m} {s}: gap, L1 error" for m in methods for s in steps) + " |")
    print("|---" * (2 + len(methods) * len(steps)) + "|")
    for photo in PHOTOS:
        ref = reference(model, photo, args.panels)
        cells = [photo, f"{float(ref.delta[0] / ref.extra['gap'][0]):+.2%}"]
        for method in methods:
            for s in steps:
                r = nl.integrated_gradients(model, nl.samples.path(photo), ref.target, steps=s, quadrature=method)
                err = float((r.values - ref.values).abs().sum() / ref.values.abs().sum())
                cells.append(f"{float(r.delta[0] / r.extra['gap'][0]):+.2%}, {err:.1%}")
        print("| " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
