"""Recipes from photos on the default model: inverting K layers of one photo in one call (one
batch element per layer) against K single calls, and DeepDream's speed over 4 octaves of a
512 px photo.

    PYTHONPATH=src python benchmarks/photo.py --steps 20
"""

from __future__ import annotations

import argparse

import torch

import netloupe as nl
from common import measure, table
from netloupe import samples


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", default="blocks.1,blocks.3,blocks.5")
    ap.add_argument("--steps", type=int, default=20, help="inversion steps per call")
    ap.add_argument("--dream-layer", default="blocks.4")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    model = nl.load_model("default", device=args.device)
    photo = samples.path("chelsea")
    layers = args.layers.split(",")
    kw = dict(steps=args.steps, seed=0, progress=False)

    batched, mem_b = measure(lambda: nl.invert(model, photo, layers, **kw), args.device, repeats=args.repeats)
    single, mem_s = measure(lambda: [nl.invert(model, photo, [layer], **kw) for layer in layers], args.device,
                            repeats=args.repeats)
    together = nl.invert(model, photo, layers, **kw).errors
    alone = torch.cat([nl.invert(model, photo, [layer], **kw).errors for layer in layers])
    print(f"default model, chelsea at 224 px, invert {layers} ({args.steps} steps), torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {args.device}; median of {args.repeats}\n")
    print(table([[f"one call, a batch of {len(layers)}", f"{batched:.1f}", f"{mem_b:.0f}",
                  ", ".join(f"{e:.3f}" for e in together.tolist())],
                 [f"{len(layers)} single calls", f"{single:.1f}", f"{mem_s:.0f}",
                  ", ".join(f"{e:.3f}" for e in alone.tolist())]],
                ["run", "wall s", "peak extra MiB", "relative errors reached"]))
    print(f"\nspeed-up of one call over {len(layers)} single calls: {single / batched:.2f}x (target >= 1.5x)\n")

    astronaut = samples.path("astronaut")  # 512 x 512
    steps = 4 * 10
    secs, mem = measure(lambda: nl.dream(model, astronaut, args.dream_layer, octaves=4, steps_per_octave=10, seed=0,
                                         progress=False), args.device, repeats=1)
    sides = ", ".join(str(round(512 / 1.4 ** k)) for k in reversed(range(4)))
    print(f"dream astronaut (512 x 512) at {args.dream_layer}, 4 octaves x 10 steps ({sides} px): "
          f"{secs:.1f} s, {steps / secs:.2f} steps/s, peak extra {mem:.0f} MiB")


if __name__ == "__main__":
    main()
