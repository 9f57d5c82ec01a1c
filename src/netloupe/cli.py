"""The ``netloupe`` command: each verb is a thin call into the library."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

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
    model = _model(args)
    for name, preds in zip(args.images, model.predict(_image_args(args.images), k=args.top)):
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
    from .attribution import METHODS
    from .stats import report, scan

    sheet = _contact_sheet(model, model.inputs(samples.path("chelsea")), "chelsea", list(METHODS), "top", None,
                           out / "attribution")
    print(f"attribution: every method on chelsea -> {sheet.name}")
    scanned = ["bn1", "blocks.2", "blocks.4"]
    result = scan(model, samples.dataset(16), scanned, top_k=4, progress=False)
    dead = {name: len(result[name].dead_channels) for name in scanned}
    print(f"unit statistics over 16 sample images, dead channels per layer: {dead}")
    report(result, out / "scan")
    print(f"wrote predictions.json, predictions.png, layers.txt, attribution/ and scan/index.html to {out.resolve()}")


def _target(text: str):
    if text == "top":
        return "top"
    try:
        return int(text)
    except ValueError:
        return text  # a unit string; checked against the model by the method


def _image_args(items):
    """Image arguments: file paths, or sample photo names (chelsea, coffee, ...)."""
    from . import samples

    sample_names = samples.names()
    return [samples.path(i) if i in sample_names and not Path(i).exists() else i for i in items]


# how each method is best looked at: signed fine detail as raw RGB, the rest over the photo
_RAW_VIEW = {"guided_backprop", "deconvnet", "guided_grad_cam"}
_LAYER_METHODS = {"grad_cam", "grad_cam_pp", "guided_grad_cam"}


def _contact_sheet(model, x, stem: str, methods, target, layer, out: Path) -> Path:
    """One overlay PNG per method for the single input ``x``, and (for several methods) a
    contact sheet of the input and every method side by side."""
    from . import images
    from .attribution import METHODS

    tiles, captions = [images.to_pil(model.preprocess.inverse(x)[0])], [stem]
    for method in methods:
        kw = {"layer": layer} if layer and method in _LAYER_METHODS else {}
        a = METHODS[method](model, x, target=target, **kw)
        view = "raw" if method in _RAW_VIEW else "overlay"
        a.save(out / f"{stem}_{method}.png", kind=view)
        tiles.append(a.to_pil(kind=view))
        captions.append(method)
    if isinstance(a.target, torch.Tensor) and model.labels:
        captions[0] = f"{stem}: {model.labels[int(a.target[0])]}"
    if len(methods) > 1:
        images.grid(tiles, captions, ncol=min(6, len(tiles)), cell=192).save(out / f"{stem}_all.png")
    return out / f"{stem}_all.png"


def cmd_attribute(args):
    from .attribution import METHODS

    methods = list(METHODS) if args.method == "all" else [args.method]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise NetloupeError(f"unknown method {unknown[0]!r}; choose one of {', '.join(METHODS)} or all")
    model = _model(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    x = model.inputs(_image_args(args.images))
    target = _target(args.target)
    for i, name in enumerate(args.images):
        _contact_sheet(model, x[i:i + 1], Path(name).stem, methods, target, args.layer, out)
        print(f"{name}: wrote {len(methods)} attribution(s) to {out.resolve()}")


def cmd_scan(args):
    import os

    from . import samples
    from .stats import report, scan

    model = _model(args)
    data = args.data
    if data == "samples" and not Path(data).exists():
        data = samples.dataset()
    result = scan(model, data, args.layers, top_k=args.top_k, bottom_k=args.bottom_k, bins=args.bins,
                  batch_size=args.batch_size, num_workers=args.workers)
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun every rank holds the merged result; one writes
        out = Path(args.out)
        result.save(out)
        print(report(result, out).resolve())


def cmd_dropout(args):
    from .dropout import augment

    model = _model(args)
    result = augment(model, args.layer, _image_args(args.images), n=args.n, max_epochs=args.max_epochs, seed=args.seed,
                     optimizer=args.optimizer)
    out = Path(args.out)
    grid = result.save(out / "dropout_grid.png")
    labels = model.labels
    name = lambda i: labels[i] if labels and i < len(labels) else str(i)  # noqa: E731
    for b, image in enumerate(args.images):
        print(image)
        top = None if result.original_output is None else int(result.original_output[b].flatten().argmax())
        for i in range(args.n):
            line = f"  sample {i + 1}: loss {float(result.loss[b, i]):.4g} ({'converged' if result.converged[b, i] else 'NOT converged'})"
            if top is not None and result.augmented_output is not None:
                new = int(result.augmented_output[b, i].flatten().argmax())
                line += f", top-1 {'changed to ' + name(new) if new != top else 'unchanged (' + name(top) + ')'}"
            print(line)
    print(f"wrote {grid.resolve()}")
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

    p = sub.add_parser("attribute", parents=[common], help="attribution maps (overlay PNGs; --method all: a contact sheet)")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--method", default="all", help="a method name (see netloupe.attribution.METHODS) or all")
    p.add_argument("--target", default="top", help="top, a class index, or a unit like blocks.6.0:12")
    p.add_argument("--layer", default=None, help="layer for the CAM methods (default: last spatial layer)")
    p.add_argument("--out", default="netloupe-out")
    p.set_defaults(func=cmd_attribute)

    p = sub.add_parser("dropout", parents=[common], help="what dropout does to images, in input space (Bouthillier et al.)")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--layer", required=True, help="the layer (unit) whose dropout samples are matched, e.g. classifier")
    p.add_argument("-n", type=int, default=8, help="dropout samples per image (default 8)")
    p.add_argument("--max-epochs", type=int, default=2000, help="optimizer steps per sample at most")
    p.add_argument("--optimizer", choices=["lbfgs", "adam"], default="lbfgs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="netloupe-dropout", help="folder for dropout_grid.png")
    p.set_defaults(func=cmd_dropout)

    p = sub.add_parser("demo", parents=[common], help="run the tour on the sample photos and write the results")
    p.add_argument("--out", default="netloupe-demo")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("scan", parents=[common], help="dataset-wide statistics and top-k patches of layers' channels")
    p.add_argument("data", help="a folder of images, an image list or pair list file, or 'samples'")
    p.add_argument("--layers", required=True, help="comma-separated layer names (see `netloupe layers`)")
    p.add_argument("--top-k", type=int, default=9)
    p.add_argument("--bottom-k", type=int, default=0)
    p.add_argument("--bins", type=int, default=50)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes for reading images")
    p.add_argument("--out", default="netloupe-scan")
    p.set_defaults(func=cmd_scan)
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
