"""The README's pictures of style transfer and of Yosinski et al.'s regularized visualizations, on
the default model, on the CPU (a few minutes):

    PYTHONPATH=src python examples/photo_style.py --out docs/images

``--yosinski-steps 0`` makes the style transfer picture only, ``--style-steps 0`` the other.
Style transfer: plain Gatys (smoothing "none") with tv_weight 3e-3, 300 Adam steps, the setting
that measured best in benchmarks/style_quality.py (benchmarks/RESULTS.md, "Style transfer quality").
"""

from __future__ import annotations

import argparse
from pathlib import Path

import netloupe as nl
from netloupe import images
from netloupe.optvis import classic


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="docs/images")
    ap.add_argument("--style-steps", type=int, default=300)
    ap.add_argument("--optimizer", default="adam")
    ap.add_argument("--tv-weight", type=float, default=3e-3)
    ap.add_argument("--smoothing", default="none", help="none, softmax (SWAG) or auto")
    ap.add_argument("--yosinski-steps", type=int, default=200)
    args = ap.parse_args()
    out = Path(args.out)
    m = nl.load_model()

    if args.style_steps:  # 0 skips it
        content, style = nl.samples.path("chelsea"), nl.samples.path("hubble")
        r = nl.style_transfer(m, content, style, steps=args.style_steps, optimizer=args.optimizer,
                              tv_weight=args.tv_weight, smoothing=args.smoothing)
        photos = [images.to_pil(t) for t in m.preprocess.inverse(m.inputs([content, style]))]
        captions = ["content: chelsea", "style: hubble", f"style_transfer ({args.optimizer}, tv_weight {args.tv_weight:g})"]
        images.grid(photos + [r.to_pil()], captions, ncol=3, cell=224).save(out / "photo_style.png")
        print(f"style transfer: loss {r.history[0, 0]:.4g} -> {r.history[-1, 0]:.4g}")

    if not args.yosinski_steps:  # 0 skips it
        return
    layer, channels = "blocks.4", [0, 1, 2, 3]  # the channels of the Lucid pictures above
    v = nl.visualize(m, [f"{layer}:{c}" for c in channels], algorithm="yosinski", preset=3, size=128,
                     steps=args.yosinski_steps, seed=0)
    shown = [images.to_pil(t) for t in classic.stretch(v.images, m.preprocess.mean)]
    images.grid(shown, [f"{layer}:{c} (preset 3)" for c in channels], ncol=4, cell=160).save(out / "yosinski.png")
    print("yosinski channel means, first -> last step:",
          [f"{a:.2f} -> {b:.2f}" for a, b in zip(v.history[0].tolist(), v.history[-1].tolist())])


if __name__ == "__main__":
    main()
