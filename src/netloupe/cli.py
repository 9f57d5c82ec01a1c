"""The ``netloupe`` command: each verb is a thin call into the library."""

from __future__ import annotations

import argparse
import contextlib
import difflib
import json
import os
import shutil
import sys
from pathlib import Path
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Dict,
    Iterator,
    List,
    NoReturn,
    Optional,
    Sequence,
    Union,
    cast,
    overload,
)

import torch

from .errors import InputError, NetloupeError
from .units import Unit

if TYPE_CHECKING:
    from .attribution import ContactSheet
    from .attribution.targets import TargetLike
    from .images import ImageLike, PictureLike
    from .models import LoadedModel
    from .samples import SampleDataset


def _device(name: Optional[str]) -> Union[str, torch.device]:

    if name is None:
        if not torch.cuda.is_available():
            return "cpu"
        return f"cuda:{os.environ['LOCAL_RANK']}" if "LOCAL_RANK" in os.environ else "cuda"  # a GPU per torchrun rank
    try:
        device = torch.device(name)
    except RuntimeError:
        raise NetloupeError(f"unknown device {name!r}; use cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise NetloupeError("--device cuda asked for, but no CUDA GPU is available; use --device cpu")
    return device


def _model(args: argparse.Namespace, spec: Optional[str] = None) -> LoadedModel:
    """The model of --model (or of ``spec``), with --weights and --device."""
    from .models import load_model

    kwargs: Dict[str, Any] = {}
    if args.weights is not None:
        kwargs["weights"] = None if args.weights == "random" else args.weights
    return load_model(spec or args.model, device=_device(args.device), **kwargs)


def cmd_predict(args: argparse.Namespace) -> None:
    paths = _image_args(args.images)
    model = _model(args)
    for name, preds in zip(args.images, model.predict(paths, top_k=args.top_k)):
        print(name)
        for label, p in preds:
            print(f"  {p:7.2%}  {label}")


def cmd_layers(args: argparse.Namespace) -> None:
    from .models import layers

    print(layers(_model(args)))


def cmd_demo(args: argparse.Namespace) -> None:
    from . import images, samples
    from .models import layers

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = _model(args)
    names = samples.names()
    preds = model.predict([samples.path(n) for n in names], top_k=5)
    (out / "predictions.json").write_text(json.dumps(
        {n: [{"label": label, "probability": round(p, 6)} for label, p in ps] for n, ps in zip(names, preds)}, indent=2))
    captions = [f"{n}\n{ps[0][0]} {ps[0][1]:.0%}" for n, ps in zip(names, preds)]
    thumbs = [images.to_pil(t) for t in model.preprocess.inverse(model.inputs([samples.path(n) for n in names]))]
    images.grid(thumbs, captions, ncol=4, cell=160).save(out / "predictions.png")
    (out / "layers.txt").write_text(str(layers(model)) + "\n")
    for n, ps in zip(names, preds):
        print(f"{n:12s} {ps[0][0]} ({ps[0][1]:.0%})")
    from .stats import report, scan

    _contact_sheet(model, model.inputs(samples.path("chelsea")), "chelsea", "all", "top", None, out / "attribution")
    print("attribution: every method on chelsea -> chelsea_all.png")
    scanned = ["bn1", "blocks.2", "blocks.4"]
    result = scan(model, samples.dataset(16), scanned, top_k=4)
    dead = {name: len(result[name].dead_channels) for name in scanned}
    print(f"unit statistics over 16 sample images, dead channels per layer: {dead}")
    result.save(out / "scan")  # the scan's data beside its report: `netloupe explore --scan DIR/scan` opens it
    report(result, out / "scan")
    print(f"wrote predictions.json, predictions.png, layers.txt, attribution/ and scan/ (its data and index.html) "
          f"to {out.resolve()}")
    print(f"browse them live: netloupe explore --scan {out / 'scan'} --data samples")


def _target(text: str) -> Union[str, int]:
    if text == "top":
        return "top"
    try:
        return int(text)
    except ValueError:
        return text  # a unit string; checked against the model by the method


def _image_args(items: Sequence[str]) -> List[str]:
    """Image arguments: file paths, or sample photo names (chelsea, coffee, ...). Checked before
    any model loads, so a typo fails at once, with the nearest sample name."""
    from . import samples

    names = samples.names()
    paths: List[str] = []
    for item in items:
        if Path(item).exists():
            paths.append(item)
        elif item in names:
            paths.append(samples.path(item))
        else:
            near = difflib.get_close_matches(item, names, n=1)
            hint = f"did you mean {near[0]}? " if near else ""
            raise InputError(f"{item!r} is neither an image file (not found) nor a sample name; {hint}"
                             f"the sample names are {', '.join(names)}")
    return paths


def _contact_sheet(model: LoadedModel, x: torch.Tensor, stem: str, methods: Union[str, Sequence[str]],
                   target: TargetLike, layer: Optional[str], out: Path) -> ContactSheet:
    """One PNG per method for the single input ``x`` (raw or overlay, as the sheet shows it), and
    for several methods the contact sheet of the input and every method, with colour bars."""
    from .attribution import contact_sheet

    sheet = contact_sheet(model, x, methods, target=target, layer=layer, title=stem)
    for method, result in sheet.results.items():
        result.save(out / f"{stem}_{method}.png", kind=sheet.view(method))
    if len(sheet.results) > 1:
        sheet.save(out / f"{stem}_all.png")
    return sheet


def cmd_attribute(args: argparse.Namespace) -> None:
    from .attribution import lookup

    methods = "all" if args.method == "all" else [lookup(args.method).name]
    paths = _image_args(args.images)
    model = _model(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    x = model.inputs(paths)
    target = _target(args.target)
    for i, name in enumerate(args.images):
        sheet = _contact_sheet(model, x[i:i + 1], Path(name).stem, methods, target, args.layer, out)
        print(f"{name}: wrote {len(sheet.results)} attribution(s) to {out.resolve()}")


def cmd_scan(args: argparse.Namespace) -> None:
    import os

    from .data import IMAGE_SUFFIXES
    from .stats import report, scan

    if Path(args.out).suffix.lower() in IMAGE_SUFFIXES:
        raise NetloupeError(f"--out {args.out} names a picture; scan writes a folder (statistics, report pictures "
                            "and index.html): give a folder name")
    model = _model(args)
    data = _data(args.data)
    result = scan(model, data, args.layers, top_k=args.top_k, bottom_k=args.bottom_k, bins=args.bins,
                  batch_size=args.batch_size, num_workers=args.workers)
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun every rank holds the merged result; one writes
        out = Path(args.out)
        result.save(out)
        print(report(result, out).resolve())


def cmd_dropout(args: argparse.Namespace) -> None:
    from .dropout import augment

    paths = _image_args(args.images)
    model = _model(args)
    result = augment(model, paths, args.layer, n=args.n, steps=args.steps, seed=args.seed,
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


def cmd_visualize(args: argparse.Namespace) -> None:
    from . import images
    from .optvis import classic, recipes

    if args.diverse and args.method != "lucid":
        raise NetloupeError("--diverse renders with --method lucid only; leave out one of them")
    for unit in args.units:  # the syntax, before the model loads
        Unit.parse(unit)
    model = _model(args)
    recipes.check_units(model, args.units, args.size)  # layers, channels and positions, before any rendering
    _check_render_size(model, args.size)
    out = Path(args.out)
    common: Dict[str, Any] = dict(size=args.size, seed=args.seed, progress=not args.quiet)
    if args.steps is not None:
        common["steps"] = args.steps
    if args.diverse:
        results = [recipes.visualize_diverse(model, u, n=args.diverse, **common) for u in args.units]
    else:
        results = [recipes.visualize(model, args.units, method=args.method, preset=args.preset,
                                     batch_size=args.batch_size, **common)]
    pictures: List[PictureLike] = []
    captions: List[str] = []
    for r in results:
        assert r.captions is not None  # every render of visualize is captioned with its unit
        shown = r.images if args.method == "lucid" else classic.stretch(r.images, model.preprocess.mean)
        for pil, caption in zip(map(images.to_pil, shown), r.captions):
            images.save(pil, out / f"{recipes.file_name(caption)}.png")
            pictures.append(pil)
            captions.append(caption)
    images.grid(pictures, captions, ncol=args.diverse or None, cell=min(args.size, 224)).save(out / "contact_sheet.png")
    print(f"wrote {len(pictures)} PNGs and contact_sheet.png to {out.resolve()}")


def _check_render_size(model: LoadedModel, size: int) -> None:
    """--size of a render: at least the model's total stride (below it the coarsest layer has less
    than one cell to respond with)."""
    from .optvis import recipes

    smallest = recipes.min_size(model)
    if size < smallest:
        raise NetloupeError(f"--size {size} is below this model's minimum of {smallest} px (one cell of its "
                            f"coarsest layer); use --size {smallest} or more")


def cmd_style(args: argparse.Namespace) -> None:
    from . import images
    from .optvis import style

    content, *styles = _image_args([args.content] + args.style)
    model = _model(args)
    weights = None if args.style_weights is None else [float(w) for w in args.style_weights.split(",")]
    r = style.style_transfer(model, content, cast("List[ImageLike]", styles),  # a list of paths (list is invariant)
                             style_weights=weights, style_weight=args.style_weight, steps=args.steps,
                             optimizer=args.optimizer, seed=args.seed, progress=not args.quiet)
    out = Path(args.out)
    images.save(r.to_pil(), out / "style_transfer.png")
    photos = [images.to_pil(t) for t in model.preprocess.inverse(model.inputs([content] + styles))]
    captions = [f"content {Path(args.content).stem}"] + [f"style {Path(s).stem}" for s in args.style] + ["result"]
    images.grid(photos + [r.to_pil()], captions, ncol=len(captions)).save(out / "contact_sheet.png")
    print(f"final loss {r.history[-1, 0]:.4g}; wrote style_transfer.png and contact_sheet.png to {out.resolve()}")


def _layer_list(text: str) -> List[str]:
    """A comma-separated --layers argument as a list of names."""
    return [name.strip() for name in text.split(",") if name.strip()]


def cmd_dream(args: argparse.Namespace) -> None:
    from . import images
    from .optvis import photo

    paths = _image_args(args.images)
    model = _model(args)
    out = Path(args.out)
    pictures: List[PictureLike] = []
    captions: List[str] = []
    for name, path in zip(args.images, paths):  # one call per photo: photos keep their own sizes
        r = photo.dream(model, path, args.layer, octaves=args.octaves, octave_scale=args.octave_scale,
                        steps_per_octave=args.steps, lr=args.lr, max_side=args.max_side, seed=args.seed,
                        progress=not args.quiet)
        images.save(r.to_pil(), out / f"{Path(name).stem}_dream.png")
        assert r.photos is not None  # a dream holds its photo
        pictures += [r.photos[0], r.images[0]]
        captions += [Path(name).stem, f"dream {args.layer}"]
    images.grid(pictures, captions, ncol=2).save(out / "contact_sheet.png")
    print(f"wrote {len(paths)} dream(s) and contact_sheet.png to {out.resolve()}")


def cmd_invert(args: argparse.Namespace) -> None:
    from . import images
    from .optvis import photo, recipes

    (path,) = _image_args([args.image])
    model = _model(args)
    out = Path(args.out)
    r = photo.invert(model, path, _layer_list(args.layers), steps=args.steps, tv_weight=args.tv_weight,
                     seed=args.seed, progress=not args.quiet)
    stem = Path(args.image).stem
    assert r.layers is not None and r.errors is not None  # an inversion names its layers and their errors
    for layer, pil, error in zip(r.layers, r.pils(), r.errors.tolist()):
        images.save(pil, out / f"{stem}_{recipes.file_name(layer)}.png")
        print(f"{layer}: relative activation error {error:.3f}")
    r.grid().save(out / "contact_sheet.png")
    print(f"wrote {len(r.layers)} inversion(s) and contact_sheet.png to {out.resolve()}")


def cmd_caricature(args: argparse.Namespace) -> None:
    from . import images
    from .optvis import photo, recipes

    (path,) = _image_args([args.image])
    model = _model(args)
    out = Path(args.out)
    layers = _layer_list(args.layers)
    r = photo.caricature(model, path, layers, adversarial=args.adversarial, eps=args.eps, steps=args.steps,
                         seed=args.seed, progress=not args.quiet)
    stem = Path(args.image).stem
    suffixes = ["", "_twin"] if args.adversarial else [""]
    for i, pil in enumerate(r.pils()):
        layer, which = divmod(i, len(suffixes))
        images.save(pil, out / f"{stem}_{recipes.file_name(layers[layer])}{suffixes[which]}.png")
    if args.adversarial:
        assert r.photos is not None and r.photo_captions is not None  # the photo and its twin, captioned
        images.save(r.photos[1], out / f"{stem}_twin.png")
        print(" | ".join(r.photo_captions))
    r.grid().save(out / "contact_sheet.png")
    print(f"wrote {len(r)} caricature(s) and contact_sheet.png to {out.resolve()}")


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors end like every other netloupe error: one line, exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"netloupe: error: {message} (see `{self.prog} --help`)\n")


def _count(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer of at least ``minimum``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be {minimum} or more; got {value}")
        return value
    parse.__name__ = "count"
    return parse


def _port(text: str) -> int:
    """An argparse type: a TCP port number."""
    port = _count(1)(text)
    if port > 65535:
        raise argparse.ArgumentTypeError(f"a port is 1 to 65535; got {port}")
    return port


class _Help(argparse.HelpFormatter):
    """Help in which every option states its default: a value is appended, a flag reads 'off',
    a required option says so; help that words its own default is left as written."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if not action.option_strings or action.default is argparse.SUPPRESS or "(default:" in text:
            return text
        if action.required:
            return f"{text} (required)"
        return f"{text} (default: {'off' if action.default is False else '%(default)s'})"


def cmd_compare(args: argparse.Namespace) -> None:
    from .compare import compare, report
    from .models import LoadedModel

    out = Path(args.out)
    spec = _model(args) if any(Path(m).is_file() for m in args.models) else None
    models = [m if Path(m).is_file() else _model(args, m) for m in args.models]
    if not args.no_renders:
        _check_render_size(spec or [m for m in models if isinstance(m, LoadedModel)][0], args.size)
    channels = int(args.channels) if args.channels and args.channels.isdigit() else args.channels
    result = compare(models, args.layers, _data(args.data), channels=channels, spec=spec, steps=args.steps,
                     size=args.size, renders=not args.no_renders)
    result.save(out)
    for row in result.top(5):
        print(f"{row['layer']}:{row['channel']}  score {row['score']:.3f}")
    print(report(result, out).resolve())


def _check_address(host: str, port: int) -> None:
    """Refuse an address this machine cannot serve on (not its own, or a port in use) before the
    model loads."""
    import socket

    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, port))
    except OSError as e:
        raise NetloupeError(f"cannot serve on {host}:{port} ({e.strerror or e}); give --host an address of this "
                            "machine (127.0.0.1, or 0.0.0.0 for every interface) and --port a free port") from None


def cmd_explore(args: argparse.Namespace) -> None:
    import uvicorn

    from .explorer import Explorer
    from .explorer.app import create_app
    from .explorer.service import check_saved

    _check_address(args.host, args.port)
    check_saved(args.scan, args.atlas)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"netloupe: warning: serving on {args.host}: anyone who can reach this machine can use the explorer",
              file=sys.stderr)
    explorer = Explorer(_model(args), data=_data(args.data), scan_dir=args.scan, atlas_dir=args.atlas,
                        render_steps=args.render_steps)
    explorer.layers()  # the first forward pass, before the URL is printed
    print(f"netloupe explorer for {explorer.model.name}: open http://{args.host}:{args.port}/ (Ctrl-C stops it)")
    uvicorn.run(create_app(explorer), host=args.host, port=args.port, log_level="warning")


def cmd_atlas(args: argparse.Namespace) -> None:
    from .explorer.atlas import atlas

    model = _model(args)
    _check_render_size(model, args.size)
    index = atlas(model, args.layers, data=_data(args.data), out=args.out, steps=args.steps, size=args.size,
                  channels=args.channels, top_k=args.top_k, batch_size=args.batch_size, seed=args.seed,
                  progress=not args.quiet)
    print(index.resolve())


@overload
def _data(text: str) -> Union[str, SampleDataset]: ...
@overload
def _data(text: None) -> None: ...
def _data(text: Optional[str]) -> Union[str, SampleDataset, None]:
    """A --data argument: a folder or list file, or the sample dataset ('samples')."""
    from . import samples

    if text == "samples" and not Path(text).exists():
        return samples.dataset()
    return text


def build_parser() -> argparse.ArgumentParser:
    from PIL import Image

    from .attribution import METHODS
    from .optvis.photo import MAX_SIDE

    parser = _Parser(prog="netloupe", description="See what a PyTorch network has learned and why it decides.",
                     formatter_class=_Help)
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    common = _Parser(add_help=False)
    common.add_argument("--model", default="default", help="'default' (EfficientNet-Lite0, ImageNet), torchvision:NAME, "
                        "timm:NAME, a saved model file, or package.module:factory")
    common.add_argument("--weights", default=None, help="weights file for torchvision:/timm: specs, or 'random' "
                        "(default: the pretrained file in the local cache)")
    common.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda when available, else cpu)")
    common.add_argument("--max-pixels", type=_count(1), default=Image.MAX_IMAGE_PIXELS, metavar="N",
                        help="refuse images of more than N pixels (Pillow's guard against decompression bombs); "
                        "raise it for huge images you trust")

    def verb(name: str, func: Callable[[argparse.Namespace], None], help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[common], help=help, formatter_class=_Help)
        p.set_defaults(func=func)
        return p

    image_help = "image files, or sample photo names (chelsea, coffee, ...)"
    p = verb("predict", cmd_predict, "top-k classes for images (paths or sample names)")
    p.add_argument("images", nargs="+", metavar="IMAGE", help=image_help)
    p.add_argument("--top-k", "--top", type=_count(1), default=5, metavar="K", help="how many classes to list per image")

    verb("layers", cmd_layers, "table of the model's layers with output shapes")

    p = verb("attribute", cmd_attribute, "attribution maps (overlay PNGs; --method all: a contact sheet)")
    p.add_argument("images", nargs="+", metavar="IMAGE", help=image_help)
    p.add_argument("--method", default="all", help=f"{', '.join(METHODS)}, or all")
    p.add_argument("--target", default="top", help="top (the predicted class), a class index, or a unit like blocks.6.0:12")
    p.add_argument("--layer", default=None, help="layer for the CAM methods (default: the last spatial layer)")
    p.add_argument("--out", default="netloupe-out", metavar="DIR", help="folder for the PNGs")

    p = verb("visualize", cmd_visualize, "feature visualizations of units (one PNG each + a contact sheet)")
    p.add_argument("units", nargs="+", metavar="UNIT", help="layer, layer:channel or layer:channel@y,x (':N' is output N)")
    p.add_argument("--size", type=_count(2), default=224, help="image side in pixels; at least the model's total stride, "
                   "32 for the default model")
    p.add_argument("--method", choices=["lucid", "yosinski"], default="lucid", help="lucid (FFT image, random "
                   "transforms) or yosinski (regularized pixels, Yosinski et al. 2015)")
    p.add_argument("--preset", type=int, choices=[1, 2, 3, 4], default=3, help="with --method yosinski: the row of "
                   "the paper's Table 1 (decay, blur, clipping)")
    p.add_argument("--steps", type=_count(1), default=None, help="optimization steps (default: 512; with --method "
                   "yosinski, the preset's)")
    p.add_argument("--diverse", type=_count(0), default=0, metavar="N", help="N diverse images per unit (0: one image per unit)")
    p.add_argument("--batch-size", type=_count(1), default=None, help="units per optimization batch (default: all)")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--out", default="netloupe-visualize", metavar="DIR", help="folder for the PNGs and contact_sheet.png")

    p = verb("dream", cmd_dream, "DeepDream on photos, octave by octave (a PNG each + a contact sheet)")
    p.add_argument("images", nargs="+", metavar="IMAGE", help=image_help)
    p.add_argument("--layer", required=True, help="what to amplify: a layer, layer:channel, or :N for class N")
    p.add_argument("--octaves", type=_count(1), default=4, help="scales to dream at, each --octave-scale times smaller")
    p.add_argument("--octave-scale", type=float, default=1.4, help="size ratio of one octave to the next")
    p.add_argument("--steps", type=_count(1), default=10, help="steps per octave")
    p.add_argument("--lr", type=float, default=0.01, help="mean change of a pixel per step (pixels in [0, 1])")
    p.add_argument("--max-side", type=_count(2), default=MAX_SIDE, metavar="PX", help="larger photos are scaled down "
                   "to this longest side first")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--out", default="netloupe-dream", metavar="DIR", help="folder for the PNGs and contact_sheet.png")

    p = verb("invert", cmd_invert, "feature inversion: images whose activations match a photo's at layers")
    p.add_argument("image", metavar="IMAGE", help="an image file or a sample photo name (chelsea, coffee, ...)")
    p.add_argument("--layers", required=True, help="comma-separated layer names, inverted in one batch")
    p.add_argument("--steps", type=_count(1), default=300, help="optimization steps")
    p.add_argument("--tv-weight", type=float, default=0.1, help="weight of the total-variation prior")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--out", default="netloupe-invert", metavar="DIR", help="folder for the PNGs and contact_sheet.png")

    p = verb("caricature", cmd_caricature, "caricatures: what layers see in a photo, exaggerated (Lucid)")
    p.add_argument("image", metavar="IMAGE", help="an image file or a sample photo name (chelsea, coffee, ...)")
    p.add_argument("--layers", required=True, help="comma-separated layer names, rendered in one batch")
    p.add_argument("--adversarial", action="store_true", help="also caricature the photo's adversarial twin")
    p.add_argument("--eps", type=float, default=4 / 255, help="the twin's largest pixel change, pixels in [0, 1] (default: 4/255)")
    p.add_argument("--steps", type=_count(1), default=256, help="optimization steps")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--out", default="netloupe-caricature", metavar="DIR",
                   help="folder for the PNGs and contact_sheet.png")

    p = verb("style", cmd_style, "style transfer (Gatys et al.): a photo painted in the style of others")
    p.add_argument("content", metavar="CONTENT", help="the content photo: " + image_help)
    p.add_argument("style", nargs="+", metavar="STYLE", help="the style photo(s), blended: " + image_help)
    p.add_argument("--style-weights", default=None, metavar="W,W", help="comma-separated blend of the style photos "
                   "(default: equal)")
    p.add_argument("--style-weight", type=float, default=1e6, help="weight of the style loss against content 1")
    p.add_argument("--steps", type=_count(1), default=300, help="optimization steps (function evaluations)")
    p.add_argument("--optimizer", choices=["adam", "lbfgs"], default="adam", help="how the image is optimized")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--out", default="netloupe-style", metavar="DIR", help="folder for style_transfer.png and "
                   "contact_sheet.png")

    p = verb("dropout", cmd_dropout, "what dropout does to images, in input space (Bouthillier et al.)")
    p.add_argument("images", nargs="+", metavar="IMAGE", help=image_help)
    p.add_argument("--layer", required=True, help="the layer (unit) whose dropout samples are matched, e.g. classifier")
    p.add_argument("-n", type=_count(1), default=8, help="dropout samples per image")
    p.add_argument("--steps", "--max-epochs", type=_count(0), default=2000, help="optimizer steps per sample at most")
    p.add_argument("--optimizer", choices=["lbfgs", "adam"], default="lbfgs", help="how each sample is matched")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--out", default="netloupe-dropout", metavar="DIR", help="folder for dropout_grid.png")

    p = verb("scan", cmd_scan, "dataset-wide statistics and top-k patches of layers' channels")
    p.add_argument("data", help="a folder of images, an image list or pair list file, or 'samples'")
    p.add_argument("--layers", required=True, help="comma-separated layer names (see `netloupe layers`)")
    p.add_argument("--top-k", type=_count(1), default=9, help="highest-activating patches kept per channel")
    p.add_argument("--bottom-k", type=_count(0), default=0, help="lowest-activating patches kept per channel")
    p.add_argument("--bins", type=_count(2), default=50, help="histogram bins per channel")
    p.add_argument("--batch-size", type=_count(1), default=None,
                   help="images per batch (default: 32 on the CPU, 128 on a GPU)")
    p.add_argument("--workers", type=_count(0), default=0, help="DataLoader worker processes for reading images")
    p.add_argument("--out", default="netloupe-scan", metavar="DIR", help="folder for the statistics and index.html")

    p = verb("compare", cmd_compare, "what changed in each unit between models (a base and its fine-tuned "
             "weights, or checkpoints)")
    p.add_argument("models", nargs="+", metavar="MODEL", help="model specs, or weights files for --model's "
                   "architecture (a checkpoint sequence: base first)")
    p.add_argument("--layers", required=True, help="comma-separated layer names (see `netloupe layers`)")
    p.add_argument("--data", default=None, help="images for the data-based measures and CKA: a folder, a list file, "
                   "or 'samples'")
    p.add_argument("--channels", default=None, help="channels to compare: N (the first N) or A-B (default: all)")
    p.add_argument("--steps", type=_count(1), default=256, help="render steps per channel")
    p.add_argument("--size", type=_count(7), default=64, help="render size in pixels: at least 7 (SSIM's window) "
                   "and the model's total stride")
    p.add_argument("--no-renders", action="store_true", help="skip the render-based measures")
    p.add_argument("--out", default="netloupe-compare", metavar="DIR", help="folder for the comparison and its report")

    p = verb("explore", cmd_explore, "the live explorer: a web page over the model (the Deep Visualization Toolbox)")
    p.add_argument("--data", default=None, help="images to browse and scan: a folder, an image or pair list file, "
                   "or 'samples'")
    p.add_argument("--scan", default=None, metavar="DIR", help="a saved scan (netloupe scan --out DIR) for top "
                   "patches, histograms and correlations")
    p.add_argument("--atlas", default=None, metavar="DIR", help="an atlas (netloupe atlas --out DIR) whose renders "
                   "to show")
    p.add_argument("--host", default="127.0.0.1", help="address to serve on (another than this machine's own is "
                   "reachable by others)")
    p.add_argument("--port", type=_port, default=8000, help="port to serve on (1-65535)")
    p.add_argument("--render-steps", type=_count(1), default=256, help="optimization steps of a unit's feature "
                   "visualization")

    p = verb("atlas", cmd_atlas, "a static site of every channel of some layers: renders, top patches, histograms")
    p.add_argument("--layers", required=True, help="comma-separated layer names (see `netloupe layers`)")
    p.add_argument("--data", default=None, help="images for top patches and histograms: a folder, a list file, or "
                   "'samples' (default: renders only)")
    p.add_argument("--channels", type=_count(1), default=None, help="the first N channels of each layer "
                   "(default: all)")
    p.add_argument("--steps", type=_count(1), default=256, help="optimization steps per render")
    p.add_argument("--size", type=_count(2), default=128, help="render size in pixels")
    p.add_argument("--top-k", type=_count(1), default=9, help="top patches per channel")
    p.add_argument("--batch-size", type=_count(1), default=None, help="units rendered together (default: 8 on the "
                   "CPU, 64 on a GPU)")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--out", default="netloupe-atlas", metavar="DIR", help="folder for the site (index.html)")

    p = verb("demo", cmd_demo, "run the tour on the sample photos and write the results")
    p.add_argument("--out", default="netloupe-demo", metavar="DIR", help="folder for the results")
    return parser


@contextlib.contextmanager
def _pixel_limit(n: Optional[int]) -> Iterator[None]:
    """--max-pixels: Pillow's decompression-bomb limit for this run, restored after it."""
    from PIL import Image

    before, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, n
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = before


@contextlib.contextmanager
def _out_folder(out: Union[str, os.PathLike, None]) -> Iterator[None]:
    """--out: created before any work (so a place that cannot be written is refused at once); if
    the run then fails, what it created there is removed (a folder that existed before is left
    as it is)."""
    if out is None:
        yield
        return
    out = Path(out)
    created: Optional[Path] = None
    parent = out
    while not os.path.exists(parent):
        created, parent = parent, parent.parent
    if not parent.is_dir():
        raise NetloupeError(f"cannot write --out {out}: {parent} is a file, not a folder; choose another --out folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise NetloupeError(f"cannot write --out {out}: no permission to write in {parent}; "
                            "choose a folder you can write to")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe_file = out / ".netloupe-write-test"
        probe_file.touch()
        probe_file.unlink()
    except OSError as e:
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
        raise NetloupeError(f"cannot write --out {out}: {e.strerror or e} ({parent} is not a place for files); "
                            "choose a folder you can write to") from None
    try:
        yield
    except BrokenPipeError:  # the output's reader left; the run itself went well
        raise
    except BaseException:
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
        raise


def _check_torchvision() -> None:
    """torchvision (which timm and the sample photos need) must come from the same build as torch:
    a CPU torch beside a CUDA torchvision fails on import with a long traceback; say it in one line."""
    try:
        import torchvision  # noqa: F401
    except (RuntimeError, ImportError, OSError) as e:
        from importlib.metadata import PackageNotFoundError, version

        try:
            found = f"torchvision {version('torchvision')}"
        except PackageNotFoundError:
            found = "torchvision (not installed)"
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise NetloupeError(
            f"{found} does not work with torch {torch.__version__} ({reason}): they are from different builds; install a matching pair, e.g. `python -m pip install --force-reinstall "
            "torch torchvision --index-url https://download.pytorch.org/whl/cpu` (CPU) or the same without "
            "--index-url (CUDA)") from None


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, or a usage error already printed
        return e.code if isinstance(e.code, int) else 2
    if args.verb is None:
        parser.print_help()
        return 2
    try:
        _check_torchvision()
        with _pixel_limit(args.max_pixels), _out_folder(getattr(args, "out", None)):
            args.func(args)
    except NetloupeError as e:
        print(f"netloupe: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and closed early
        sys.stderr.close()
        return 0
    except OSError as e:  # a file or folder the run reads or writes
        where = f" {e.filename}" if e.filename else ""
        print(f"netloupe: error: cannot read or write{where}: {e.strerror or e}; check the path and its permissions",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
