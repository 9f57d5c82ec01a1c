"""How accurate integrated gradients is at a given number of steps, measured against an
independent reference rather than by its own completeness gap: for each sample photo (default
model, gray baseline, the top class), the relative L1 distance of the attribution from a
``--reference``-step one, and the completeness gap, for the adaptive default and the fixed rules.

The gap is the quadrature error of the score along the path only; the attribution can be far
from converged while the gap is small, which is why the default's steps are not cut to the
point where the gap alone still looks fine.

    python benchmarks/ig_accuracy.py --steps 24,32,50 --reference 600
"""

from __future__ import annotations

import argparse

import netloupe as nl

PHOTOS = ("coffee", "chelsea", "rocket", "astronaut", "motorcycle")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", default="24,32,50")
    ap.add_argument("--methods", default="adaptive,gausslegendre")
    ap.add_argument("--reference", type=int, default=600, help="adaptive steps of the reference")
    args = ap.parse_args()
    model = nl.load_model("default")
    steps = [int(s) for s in args.steps.split(",")]
    methods = args.methods.split(",")
    print("| photo | reference gap | " + " | ".join(f"{m} {s}: gap, L1 error" for m in methods for s in steps) + " |")
    print("|---" * (2 + len(methods) * len(steps)) + "|")
    for photo in PHOTOS:
        x = nl.samples.path(photo)
        ref = nl.integrated_gradients(model, x, steps=args.reference)
        cells = [photo, f"{float(ref.delta[0] / ref.extra['gap'][0]):+.2%}"]
        for method in methods:
            for s in steps:
                r = nl.integrated_gradients(model, x, steps=s, method=method)
                err = float((r.values - ref.values).abs().sum() / ref.values.abs().sum())
                cells.append(f"{float(r.delta[0] / r.extra['gap'][0]):+.2%}, {err:.1%}")
        print("| " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
