"""The verbs of the ``netloupe`` command, each declared once, in the file of the function it runs:
its name, what it says in ``--help``, its positional arguments, and the keywords of its function
that become options. An option takes its default from the function's signature (one source for
the library and the command line) and its name from the keyword (``steps_per_octave`` is
``--steps-per-octave``); a function's ``seed`` and ``progress`` become ``--seed`` and
``--quiet``, and a verb that writes files gets ``--out``. netloupe.cli builds the command from
:data:`VERBS`, so a new verb is one :func:`verb` declaration and nothing else.

The helpers here (:func:`model_of`, :func:`image_paths`, ...) are what a verb's body needs to read
its arguments the way every verb reads them."""

from __future__ import annotations

import argparse
import difflib
import inspect
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch

from .errors import InputError, NetloupeError

if TYPE_CHECKING:
    from .models import LoadedModel

#: a verb's body: (the parsed arguments, the keywords for its function) -> None
Run = Callable[[argparse.Namespace, Dict[str, Any]], None]

IMAGE_HELP = "image files, or sample photo names (chelsea, coffee, ...)"


@dataclass(frozen=True)
class Option:
    """How a keyword of a verb's function appears on the command line. ``type``: int, float, str or
    bool (a flag), taken from the default's type unless given; ``minimum``/``maximum``: numbers
    outside are refused before any work; ``flag``: another option name than the keyword's;
    ``choices``; ``metavar``."""

    help: str
    type: Optional[type] = None
    minimum: Optional[float] = None
    maximum: Optional[float] = None
    choices: Optional[Tuple[Any, ...]] = None
    flag: Optional[str] = None
    metavar: Optional[str] = None


@dataclass(frozen=True)
class Arg:
    """An argument of a verb that is not a keyword of its function (a positional, or an option the
    body reads itself): argparse's flags and keywords, as written (a ``help`` may be a function,
    called when the command is built: a list of what is registered by then)."""

    flags: Tuple[str, ...]
    settings: Dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, *flags: str, **settings: Any) -> "Arg":
        return cls(tuple(flags), settings)


#: the positional image arguments of the verbs that take photos
IMAGES = Arg.of("images", nargs="+", metavar="IMAGE", help=IMAGE_HELP)
IMAGE = Arg.of("image", metavar="IMAGE", help="an image file or a sample photo name (chelsea, coffee, ...)")


@dataclass(frozen=True)
class Verb:
    """One verb: ``run(args, keywords)`` does its work; ``function`` is the library function whose
    keywords ``options`` are (their defaults come from its signature); ``args`` its other arguments;
    ``out``: the default folder it writes to (None: it writes none)."""

    name: str
    help: str
    run: Run
    function: Optional[Callable[..., Any]] = None
    options: Dict[str, Option] = field(default_factory=dict)
    args: Tuple[Arg, ...] = ()
    out: Optional[str] = None
    order: float = 100.0

    @property
    def parameters(self) -> Dict[str, inspect.Parameter]:
        return dict(inspect.signature(self.function).parameters) if self.function is not None else {}

    def keywords(self, args: argparse.Namespace) -> Dict[str, Any]:
        """The function's keywords as the command line set them (``--quiet`` is ``progress=False``)."""
        params = self.parameters
        kw = {name: getattr(args, name) for name in self.options}
        if "seed" in params:
            kw["seed"] = args.seed
        if "progress" in params:
            kw["progress"] = not args.quiet
        return kw


#: every verb by name, in the order ``netloupe --help`` lists them
VERBS: Dict[str, Verb] = {}


def verb(name: str, help: str, *, function: Optional[Callable[..., Any]] = None,
         options: Optional[Dict[str, Option]] = None, args: Sequence[Arg] = (), out: Optional[str] = None,
         order: float = 100.0) -> Callable[[Run], Run]:
    """Declare the decorated body ``run(args, keywords)`` as the verb ``name`` (see :class:`Verb`)."""
    def declare(run: Run) -> Run:
        declared = Verb(name, help, run, function, dict(options or {}), tuple(args), out, order)
        unknown = [k for k in declared.options if k not in declared.parameters]
        if unknown:
            raise NetloupeError(f"verb {name}: {unknown} are not keywords of {getattr(function, '__name__', None)}")
        VERBS[name] = declared
        ordered = sorted(VERBS.values(), key=lambda v: v.order)  # stable: equal orders keep theirs
        VERBS.clear()
        VERBS.update((v.name, v) for v in ordered)
        return run
    return declare


# -- reading a verb's arguments -------------------------------------------------------------------

def device_of(name: Optional[str]) -> Union[str, torch.device]:
    """--device: cpu, cuda or cuda:N (default: cuda when there is one; under torchrun, the rank's GPU)."""
    if name is None:
        if not torch.cuda.is_available():
            return "cpu"
        return f"cuda:{os.environ['LOCAL_RANK']}" if "LOCAL_RANK" in os.environ else "cuda"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise NetloupeError(f"unknown device {name!r}; use cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise NetloupeError("--device cuda asked for, but no CUDA GPU is available; use --device cpu")
    return device


def model_of(args: argparse.Namespace, spec: Optional[str] = None) -> LoadedModel:
    """The model of --model (or ``spec``), with --weights and --device."""
    from .models import load_model

    kwargs: Dict[str, Any] = {}
    if args.weights is not None:
        kwargs["weights"] = None if args.weights == "random" else args.weights
    return load_model(spec or args.model, device=device_of(args.device), **kwargs)


def image_paths(items: Sequence[str]) -> List[str]:
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


def layer_list(text: str) -> List[str]:
    """A comma-separated --layers argument as a list of names."""
    return [name.strip() for name in text.split(",") if name.strip()]


def data_of(text: Optional[str]) -> Any:
    """A --data argument: a folder or list file, or the sample dataset ('samples')."""
    from . import samples

    if text == "samples" and not Path(text).exists():
        return samples.dataset()
    return text


def target_of(text: str) -> Union[str, int]:
    """--target: top, a class index, or a unit string (checked against the model by the method)."""
    if text == "top":
        return "top"
    try:
        return int(text)
    except ValueError:
        return text


def port(text: str) -> int:
    """An argparse type: a TCP port number (1-65535)."""
    value = number(int, 1)(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"a port is 1 to 65535; got {value}")
    return int(value)


def number(kind: type, minimum: Optional[float] = None, maximum: Optional[float] = None) -> Callable[[str], Any]:
    """An argparse type: an int or float within [minimum, maximum]."""
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'a whole number' if kind is int else 'a number'}"
                                             ) from None
        if minimum is not None and value < minimum:
            raise argparse.ArgumentTypeError(f"must be {minimum:g} or more; got {value}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"must be {maximum:g} or less; got {value}")
        return value
    parse.__name__ = kind.__name__
    return parse
