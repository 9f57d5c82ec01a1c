"""Check that feature visualizations really excite their units, and that Lucid's FFT +
decorrelated parameterization beats the plain pixel one.

For 8 channels of a middle layer of the default model, render each channel (one batch, the
standard transforms) with both parameterizations and the same steps, then measure each
rendering's channel activation WITHOUT transforms (the image resized to the model input,
normalized, one forward pass) and compare it with that channel's maximum over all sample photos.
The same measurement at earlier steps (``--curve``) shows which parameterization leads when.

The image is rendered at the model's input size (224) by default, so that the model sees each
parameterization's pixels as they are; ``--size 128`` renders at Lucid's usual size, upsampled.

    PYTHONPATH=src python benchmarks/optvis_check.py --steps 512
"""

from __future__ import annotations

import argparse
import functools
import operator
import time

import torch
import torch.nn.functional as F

import netloupe as nl
from netloupe import samples
from netloupe.optvis import image, objectives, render


def channel_means(model, layer, inputs, channels):
    with nl.probe(model.module, [layer], detach=True) as p, torch.no_grad():
        model.module(inputs)
    return p.activations[layer][:, channels].flatten(2).mean(2)  # [N, channels]


def rendering_inputs(model, images01):
    x = model.preprocess.normalize(images01.to(model.device))
    return F.interpolate(x, size=model.preprocess.hw, mode="bilinear", align_corners=False)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--layer", default="blocks.4")
    ap.add_argument("--channels", type=int, nargs="+", default=list(range(8)))
    ap.add_argument("--steps", type=int, default=512)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--curve", type=int, nargs="*", default=[16, 32, 64, 128, 256, 384],
                    help="earlier steps at which to measure the mean activation too")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--grid", default=None, help="save the FFT and pixel renderings as a grid PNG here")
    ap.add_argument("--fft-grid", default=None, help="save the FFT renderings alone as a grid PNG here")
    args = ap.parse_args()
    model = nl.load_model("default")
    chans = args.channels
    photos = model.inputs([samples.path(n) for n in samples.names()])
    photo_max = channel_means(model, args.layer, photos, chans).max(0).values
    thresholds = sorted({t for t in args.curve if t < args.steps} | {args.steps})
    objective = functools.reduce(operator.add, [objectives.channel(args.layer, c, index=i) for i, c in enumerate(chans)])
    results = {}
    for name, fft in (("fft+decorrelated", True), ("pixel", False)):
        t0 = time.time()
        param = image(args.size, n=len(chans), fft=fft, decorrelate=fft, seed=args.seed)
        r = render(model, objective, param, steps=args.steps, seed=args.seed, thresholds=thresholds, progress=False)
        curve = {t: channel_means(model, args.layer, rendering_inputs(model, im), chans).diagonal()
                 for t, im in sorted(r.snapshots.items())}
        results[name] = (r, curve, time.time() - t0)
    print(f"default model, layer {args.layer}, channels {chans}, {args.steps} steps, {args.size} px, seed {args.seed}")
    print(f"sample photos: {len(samples.names())} ({', '.join(samples.names())})\n")
    print("| channel | max over photos | FFT+decorrelated | pixel | FFT > photos | FFT > pixel |")
    print("|---|---|---|---|---|---|")
    fft_acts, pix_acts = results["fft+decorrelated"][1][args.steps], results["pixel"][1][args.steps]
    for i, c in enumerate(chans):
        print(f"| {c} | {photo_max[i]:.3f} | {fft_acts[i]:.3f} | {pix_acts[i]:.3f} | "
              f"{'yes' if fft_acts[i] > photo_max[i] else 'NO'} | {'yes' if fft_acts[i] > pix_acts[i] else 'NO'} |")
    print(f"| mean | {photo_max.mean():.3f} | {fft_acts.mean():.3f} | {pix_acts.mean():.3f} | "
          f"{int((fft_acts > photo_max).sum())}/{len(chans)} | {int((fft_acts > pix_acts).sum())}/{len(chans)} |")
    print("\nMean activation over the channels, by step:\n")
    print("| step | FFT+decorrelated | pixel | FFT ahead |")
    print("|---|---|---|---|")
    for t in thresholds:
        a, b = results["fft+decorrelated"][1][t].mean(), results["pixel"][1][t].mean()
        print(f"| {t} | {a:.3f} | {b:.3f} | {'yes' if a > b else 'NO'} |")
    for name, (_, _, secs) in results.items():
        print(f"\n{name}: {secs:.0f} s for {args.steps} steps of a batch of {len(chans)}")
    if args.grid:
        imgs = list(results["fft+decorrelated"][0].images) + list(results["pixel"][0].images)
        caps = [f"{args.layer}:{c} fft" for c in chans] + [f"{args.layer}:{c} pixel" for c in chans]
        nl.images.grid(imgs, caps, ncol=len(chans), cell=160).save(args.grid)
    if args.fft_grid:
        results["fft+decorrelated"][0].grid(ncol=len(chans) // 2 or 1, cell=192).save(args.fft_grid)
    ok = bool((fft_acts > photo_max).all() and fft_acts.mean() > pix_acts.mean())
    print("\nCHECK", "PASSED" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
