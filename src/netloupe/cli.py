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


def cmd_dropout(args):
    from . import samples
    from .dropout import augment

    model = _model(args)
    sample_names = samples.names()
    paths = [samples.path(i) if i in sample_names and not Path(i).exists() else i for i in args.images]
    result = augment(model, args.layer, paths, n=args.n, max_epochs=args.max_epochs, seed=args.seed,
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

    p = sub.add_parser("dropout", parents=[common], help="what dropout does to images, in input space (Bouthillier et al.)")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--layer", required=True, help="the layer (unit) whose dropout samples are matched, e.g. classifier")
    p.add_argument("-n", type=int, default=8, help="dropout samples per image (default 8)")
    p.add_argument("--max-epochs", type=int, default=2000, help="optimizer steps per sample at most")
    p.add_argument("--optimizer", choices=["adam", "lbfgs"], default="adam")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="netloupe-dropout", help="folder for dropout_grid.png")
    p.set_defaults(func=cmd_dropout)

    p = sub.add_parser("demo", parents=[common], help="run the tour on the sample photos and write the results")
    p.add_argument("--out", default="netloupe-demo")
    p.set_defaults(func=cmd_demo)
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
