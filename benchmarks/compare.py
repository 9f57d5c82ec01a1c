"""netloupe.compare against what it is built on, and the memory of its streaming CKA.

    OMP_NUM_THREADS=2 python benchmarks/compare.py [--channels 64] [--steps 32] [--images 256]

Renders: compare() of two default models (the second slightly perturbed) on --channels channels
of one layer, renders only, against two visualize_channels calls with the same settings; target
ratio <= 1.1. Data: compare() without renders over N images (3 layers: correlation, top-k, CKA)
against one forward-only pass of each model over the same images; target ratio <= 1.3. Memory:
in a fresh process per size, the peak RSS of a data-only comparison over 256 to 4096 generated
images (the data itself takes no memory); it should stay flat.
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import time

import torch

import netloupe as nl
from common import Generated, high_water, reset_high_water  # beside this file: a script's folder is on its import path

LAYERS = ["blocks.2", "blocks.4", "conv_head"]


def models(size: int):
    pre = nl.Preprocess(size=size, resize=size, mean=(0.5,) * 3, std=(0.5,) * 3, interpolation="bicubic")
    a = nl.load_model("default", preprocess=pre)
    b = copy.deepcopy(a)
    b.name = "perturbed"
    with torch.no_grad():
        for p in b.module.parameters():
            p.mul_(1 + 0.01 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    return a, b


def best(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def renders(args):
    a, b = models(args.size)
    layer, channels = "blocks.4", range(args.channels)
    kw = dict(size=args.render_size, steps=args.steps, seed=0, progress=False)
    two = best(lambda: [nl.visualize_channels(m, layer, channels, **kw) for m in (a, b)], args.repeats)
    ours = best(lambda: nl.compare([a, b], [layer], channels=args.channels, steps=args.steps, size=args.render_size,
                                   progress=False), args.repeats)
    print(f"renders, {args.channels} channels of {layer}, {args.steps} steps at {args.render_size} px: compare "
          f"{ours:.1f} s, two visualize_channels {two:.1f} s, ratio {ours / two:.2f}")


def data(args):
    a, b = models(args.size)
    images = [Generated(args.images, args.size)[i] for i in range(args.images)]

    def plain():
        with torch.no_grad():
            for m in (a, b):
                for xb in torch.utils.data.DataLoader(images, batch_size=32):
                    m.module(xb)
    plain()
    forward = best(plain, args.repeats)
    ours = best(lambda: nl.compare([a, b], LAYERS, images, renders=False, progress=False), args.repeats)
    print(f"data, {args.images} images at {args.size} px, {len(LAYERS)} layers: compare {ours:.1f} s, one forward "
          f"pass of each model {forward:.1f} s, ratio {ours / forward:.2f}")


def memory_child(n: int, size: int):
    a, b = models(size)
    nl.compare([a, b], LAYERS, Generated(32, size), renders=False, progress=False)  # warm-up, allocator primed
    reset_high_water()
    nl.compare([a, b], LAYERS, Generated(n, size), renders=False, progress=False)
    print(json.dumps({"images": n, "peak_mib": high_water() / 2 ** 20}))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--channels", type=int, default=64)
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--render-size", type=int, default=64)
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--memory", default="256,1024,4096", help="dataset sizes for the memory check ('' skips it)")
    ap.add_argument("--memory-child", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_child:
        memory_child(args.memory_child, args.size)
        return
    print(f"device: cpu, torch {torch.__version__}, threads {torch.get_num_threads()}")
    renders(args)
    data(args)
    for n in [int(v) for v in args.memory.split(",") if v]:
        done = subprocess.run([sys.executable, __file__, "--memory-child", str(n), "--size", str(args.size)],
                              capture_output=True, text=True, check=True)
        row = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"memory, {row['images']} images: peak RSS {row['peak_mib']:.0f} MiB")


if __name__ == "__main__":
    main()
