"""The ``netloupe`` command: each verb is a thin call into the library."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .errors import NetloupeError


def _device(name):
    import torch

    if name is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise NetloupeError(f"unknown device {name!r}; use cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise NetloupeError("--device cuda asked for, but no CUDA GPU is available; use --device cpu")
    return device


def _model(args):
    from .models import load_model

    kwargs = {}
    if args.weights is not None:
        kwargs["weights"] = None if args.weights == "random" else args.weights
    return load_model(args.model, device=_device(args.device), **kwargs)


def cmd_predict(args):
    from . import samples

    model = _model(args)
    sample_names = samples.names()
    images = [samples.path(i) if i in sample_names and not Path(i).exists() else i for i in args.images]
    for name, preds in zip(args.images, model.predict(images, k=args.top)):
        print(name)
        for label, p in preds:
            print(f"  {p:7.2%}  {label}")


def cmd_layers(args):
    from .models import layers

    print(layers(_model(args)))


def cmd_demo(args):
    from . import images, samples
    from .models import layers

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = _model(args)
    names = samples.names()
    preds = model.predict([samples.path(n) for n in names], k=5)
    (out / "predictions.json").write_text(json.dumps(
        {n: [{"label": l, "probability": round(p, 6)} for l, p in ps] for n, ps in zip(names, preds)}, indent=2))
    captions = [f"{n}\n{ps[0][0]} {ps[0][1]:.0%}" for n, ps in zip(names, preds)]
    thumbs = [images.to_pil(t) for t in model.preprocess.inverse(model.inputs([samples.path(n) for n in names]))]
    images.grid(thumbs, captions, ncol=4, cell=160).save(out / "predictions.png")
    (out / "layers.txt").write_text(str(layers(model)) + "\n")
    for n, ps in zip(names, preds):
        print(f"{n:12s} {ps[0][0]} ({ps[0][1]:.0%})")
    print(f"wrote predictions.json, predictions.png and layers.txt to {out.resolve()}")


def cmd_visualize(args):
    from . import images
    from .optvis import recipes

    model = _model(args)
    out = Path(args.out)
    common = dict(size=args.size, steps=args.steps, seed=args.seed, progress=not args.quiet)
    if args.diverse:
        results = [recipes.visualize_diverse(model, u, n=args.diverse, **common) for u in args.units]
    else:
        results = [recipes.visualize(model, args.units, batch_size=args.batch_size, **common)]
    pictures, captions = [], []
    for r in results:
        for pil, caption in zip(r.pils(), r.captions):
            images.save(pil, out / f"{recipes.file_name(caption)}.png")
            pictures.append(pil)
            captions.append(caption)
    images.grid(pictures, captions, ncol=args.diverse or None, cell=min(args.size, 224)).save(out / "contact_sheet.png")
    print(f"wrote {len(pictures)} PNGs and contact_sheet.png to {out.resolve()}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="netloupe", description="See what a PyTorch network has learned and why it decides.")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--model", default="default",
                        help="'default', torchvision:NAME, timm:NAME, a saved model file, or package.module:factory")
    common.add_argument("--weights", default=None,
                        help="weights file for torchvision:/timm: specs, or 'random' (default: the local cache)")
    common.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: cuda when available)")

    p = sub.add_parser("predict", parents=[common], help="top-k classes for images (paths or sample names)")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--top", type=int, default=5)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("layers", parents=[common], help="table of the model's layers with output shapes")
    p.set_defaults(func=cmd_layers)

    p = sub.add_parser("demo", parents=[common], help="run the tour on the sample photos and write the results")
    p.add_argument("--out", default="netloupe-demo")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("visualize", parents=[common], help="feature visualizations of units (one PNG each + a contact sheet)")
    p.add_argument("units", nargs="+", metavar="UNIT", help="layer, layer:channel or layer:channel@y,x (':N' is output N)")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--steps", type=int, default=512)
    p.add_argument("--diverse", type=int, default=0, metavar="N", help="N diverse images per unit")
    p.add_argument("--batch-size", type=int, default=None, help="units per optimization batch (default: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--out", default="netloupe-visualize")
    p.set_defaults(func=cmd_visualize)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.verb is None:
        parser.print_help()
        return 2
    try:
        args.func(args)
    except NetloupeError as e:
        print(f"netloupe: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # output piped into `head` and closed early
        sys.stderr.close()
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
