"""The ``netloupe`` command, built from the verbs declared beside their functions (netloupe.verbs):
this file declares the tour's own verbs (predict, layers, demo), turns every declaration into a
subcommand, and makes every mistake end in one line and exit code 2."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import inspect
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, NoReturn, Optional, Sequence, Union

import torch

from .errors import NetloupeError
from .verbs import IMAGES, VERBS, Arg, Option, Verb, image_paths, model_of, number, verb

#: the modules that declare verbs, imported before the command is built
VERB_MODULES = ("netloupe.attribution.sheet", "netloupe.optvis.recipes", "netloupe.optvis.photo",
                "netloupe.optvis.style", "netloupe.dropout", "netloupe.stats.report", "netloupe.compare.report",
                "netloupe.explorer.app", "netloupe.explorer.atlas")


@verb("predict", "top-k classes for images (paths or sample names)", order=10,
      args=(IMAGES, Arg.of("--top-k", type=number(int, 1), default=5, metavar="K",
                           help="how many classes to list per image")))
def _predict(args: argparse.Namespace, keywords: Dict[str, Any]) -> None:
    paths = image_paths(args.images)
    model = model_of(args)
    for name, preds in zip(args.images, model.predict(paths, top_k=args.top_k)):
        print(name)
        for label, p in preds:
            print(f"  {p:7.2%}  {label}")


@verb("layers", "table of the model's layers with output shapes and parameters", order=20)
def _layers(args: argparse.Namespace, keywords: Dict[str, Any]) -> None:
    from .models import layers

    print(layers(model_of(args)))


@verb("demo", "run the tour on the sample photos and write the results", out="netloupe-demo", order=200)
def _demo(args: argparse.Namespace, keywords: Dict[str, Any]) -> None:
    from . import images, samples
    from .attribution import contact_sheet
    from .models import layers
    from .reports import report
    from .stats import scan

    out = Path(args.out)
    model = model_of(args)
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
    contact_sheet(model, samples.path("chelsea"), title="chelsea").write(out / "attribution", "chelsea")
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


# -- building the command ---------------------------------------------------------------------------

class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors end like every other netloupe error: one line, exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"netloupe: error: {message} (see `{self.prog} --help`)\n")


class _Help(argparse.HelpFormatter):
    """Help in which every option states its default: a value is appended, a flag reads 'off',
    a required option says so; help that words its own default is left as written."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if not action.option_strings or action.default is argparse.SUPPRESS or "(default:" in text:
            return text
        if action.required:
            return f"{text} (required)"
        if action.default is None:
            return f"{text} (default: none)"
        return f"{text} (default: {'off' if action.default is False else '%(default)s'})"


def _add_option(parser: argparse.ArgumentParser, name: str, option: Option, param: inspect.Parameter) -> None:
    """A keyword of a verb's function as an option, its default the function's."""
    default = param.default
    kind = option.type or (type(default) if default is not None else str)
    flag = option.flag or "--" + name.replace("_", "-")
    if kind is bool:
        parser.add_argument(flag, dest=name, action="store_false" if default else "store_true", help=option.help)
        return
    convert = number(kind, option.minimum, option.maximum) if kind in (int, float) else kind
    parser.add_argument(flag, dest=name, type=convert, default=default, choices=option.choices,
                        metavar=option.metavar or (None if option.choices else {int: "N", float: "X"}.get(kind)),
                        help=option.help)


def _add_verb(sub: Any, common: argparse.ArgumentParser, v: Verb) -> None:
    p = sub.add_parser(v.name, parents=[common], help=v.help, formatter_class=_Help, allow_abbrev=False)
    p.set_defaults(verb_declared=v)
    for arg in v.args:
        p.add_argument(*arg.flags, **{k: (val() if k == "help" and callable(val) else val)
                                      for k, val in arg.settings.items()})
    params = v.parameters
    for name, option in v.options.items():
        _add_option(p, name, option, params[name])
    if "seed" in params:
        p.add_argument("--seed", type=int, default=params["seed"].default,
                       help="random seed (default: a fresh one each run)" if params["seed"].default is None
                       else "random seed")
    if "progress" in params:
        p.add_argument("--quiet", action="store_true", help="no progress bar")
    if v.out is not None:
        p.add_argument("--out", default=v.out, metavar="DIR", help="folder for what it writes")


def build_parser() -> argparse.ArgumentParser:
    """The command: every declared verb (netloupe.verbs.VERBS) with the options common to all."""
    from PIL import Image

    for module in VERB_MODULES:
        importlib.import_module(module)
    parser = _Parser(prog="netloupe", description="See what a PyTorch network has learned and why it decides.",
                     formatter_class=_Help, allow_abbrev=False)
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    common = _Parser(add_help=False, allow_abbrev=False)
    common.add_argument("--model", default="default", help="'default' (EfficientNet-Lite0, ImageNet), torchvision:NAME, "
                        "timm:NAME, a saved model file, or package.module:factory")
    common.add_argument("--weights", default=None, help="weights file for torchvision:/timm: specs, or 'random' "
                        "(default: the pretrained file in the local cache)")
    common.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda when available, else cpu)")
    common.add_argument("--max-pixels", type=number(int, 1, None), default=Image.MAX_IMAGE_PIXELS, metavar="N",
                        help="refuse images of more than N pixels (Pillow's guard against decompression bombs); "
                        "raise it for huge images you trust")
    for v in VERBS.values():
        _add_verb(sub, common, v)
    return parser


# -- running it -------------------------------------------------------------------------------------

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
            f"{found} does not work with torch {torch.__version__} ({reason}): they are from different builds; "
            "install a matching pair, e.g. `python -m pip install --force-reinstall torch torchvision --index-url "
            "https://download.pytorch.org/whl/cpu` (CPU) or the same without --index-url (CUDA)") from None


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
def _out_folder(out: Union[str, os.PathLike, None], name: str) -> Iterator[None]:
    """--out: a folder (not a picture's name), created before any work (so a place that cannot be
    written is refused at once); if the run then fails, what it created there is removed (a folder
    that existed before is left as it is)."""
    from .data import IMAGE_SUFFIXES

    if out is None:
        yield
        return
    out = Path(out)
    if out.suffix.lower() in IMAGE_SUFFIXES:
        raise NetloupeError(f"--out {out} names a picture; {name} writes a folder (pictures and more): give a folder "
                            "name")
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
        (out / ".netloupe-write-test").touch()
        (out / ".netloupe-write-test").unlink()
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


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, or a usage error already printed
        return e.code if isinstance(e.code, int) else 2
    if args.verb is None:
        parser.print_help()
        return 2
    declared: Verb = args.verb_declared
    try:
        _check_torchvision()
        with _pixel_limit(args.max_pixels), _out_folder(getattr(args, "out", None), declared.name):
            declared.run(args, declared.keywords(args))
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
