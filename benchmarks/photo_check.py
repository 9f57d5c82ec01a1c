"""Recipes from photos on the default model, checked and pictured: feature inversion of chelsea
at an early, a middle and a late layer in one call (the early layer must come within a relative
activation error of 0.1), DeepDream with octaves on a photo, and caricatures of chelsea and of
its adversarial twin. Writes docs/images/photo_invert.png, photo_dream.png, photo_caricature.png.

    PYTHONPATH=src python benchmarks/photo_check.py
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import netloupe as nl
from netloupe import samples


def timed(label, fn):
    t0 = time.perf_counter()
    out = fn()
    print(f"{label}: {time.perf_counter() - t0:.0f} s")
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", default="blocks.1,blocks.3,blocks.5", help="early, middle and late layers to invert")
    ap.add_argument("--steps", type=int, default=300, help="inversion steps")
    ap.add_argument("--dream-photo", default="astronaut")
    ap.add_argument("--dream-layer", default="blocks.4")
    ap.add_argument("--caricature-layers", default="blocks.2,blocks.4,blocks.6")
    ap.add_argument("--caricature-steps", type=int, default=160)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="docs/images")
    args = ap.parse_args()
    out = Path(args.out)
    model = nl.load_model()
    chelsea = samples.path("chelsea")

    layers = args.layers.split(",")
    inv = timed(f"invert chelsea at {layers}, {args.steps} steps, one batch",
                lambda: nl.invert(model, chelsea, layers, steps=args.steps, seed=args.seed, progress=False))
    print("| layer | relative activation error |\n|---|---|")
    for layer, error in zip(inv.layers, inv.errors.tolist()):
        print(f"| {layer} | {error:.3f} |")
    inv.grid(cell=224).save(out / "photo_invert.png")

    dreamed = timed(f"dream {args.dream_photo} at {args.dream_layer}, 4 octaves x 10 steps",
                    lambda: nl.dream(model, samples.path(args.dream_photo), args.dream_layer, seed=args.seed,
                                     progress=False))
    dreamed.grid(cell=384).save(out / "photo_dream.png")

    car_layers = args.caricature_layers.split(",")
    car = timed(f"caricature chelsea and its adversarial twin at {car_layers}, {args.caricature_steps} steps",
                lambda: nl.caricature(model, chelsea, car_layers, adversarial=True, steps=args.caricature_steps,
                                      seed=args.seed, progress=False))
    print(" | ".join(car.photo_captions))
    car.grid(cell=192).save(out / "photo_caricature.png")

    fooled = bool(car.adversarial.fooled[0])
    ok = inv.errors[0] < 0.1 and fooled
    print(f"early-layer error {inv.errors[0]:.3f} (< 0.1: {'yes' if inv.errors[0] < 0.1 else 'NO'}), "
          f"twin classified differently: {'yes' if fooled else 'NO'}")
    print("\nCHECK", "PASSED" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
