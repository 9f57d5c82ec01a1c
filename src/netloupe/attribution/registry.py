"""Attribution methods by name. One decorator on a method registers it for everything that
lists methods: ``attribute(name)``, SmoothGrad's ``method=``, the sanity checks, the contact
sheet, the command line and the tests (zennit's register_composite is the model)."""

from __future__ import annotations

import difflib
import inspect
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, TypeVar, Union, overload

import torch.nn as nn

from ..errors import InputError, NetloupeError

if TYPE_CHECKING:
    from ..models import ModelLike
    from .inputs import MethodInputs
    from .result import Attribution

#: an attribution method: (model, inputs, target, ...) -> Attribution
MethodFn = Callable[..., "Attribution"]
_F = TypeVar("_F", bound=MethodFn)


@dataclass(frozen=True)
class Method:
    """A registered attribution method; calling it calls the method.

    view: how its map is best looked at ("overlay" on the input, or "raw" signed detail);
    caption: what a reader should know when looking at its picture; quick: settings for a
    fast run (tests, previews); takes_layer: whether it explains a layer (a CAM); applies:
    whether it works on a model at all (attention rollout needs attention layers); elsewhere
    it raises a NetloupeError and "all" leaves it out."""

    name: str
    fn: MethodFn
    view: str = "overlay"
    caption: str = ""
    quick: Dict[str, Any] = field(default_factory=dict)
    rank: int = 100
    needs: Optional[Callable[[nn.Module], bool]] = None  # module -> bool, for methods that work on some models only

    def applies(self, module: nn.Module) -> bool:
        return self.needs is None or bool(self.needs(module))

    @property
    def takes_layer(self) -> bool:
        return "layer" in inspect.signature(self.fn).parameters

    def __call__(self, *args: Any, **kw: Any) -> Attribution:
        return self.fn(*args, **kw)


#: Every registered method by name, ordered by rank (then by registration): gradients first,
#: then path and noise methods, CAMs, perturbation.
METHODS: Dict[str, Method] = {}

VIEWS = ("overlay", "raw")


def register(name: Optional[str] = None, *, view: str = "overlay", caption: str = "",
             quick: Optional[Dict[str, Any]] = None, rank: int = 100,
             needs: Optional[Callable[[nn.Module], bool]] = None) -> Callable[[_F], _F]:
    """Register the decorated attribution method (model, inputs, target, ...) -> Attribution
    under ``name`` (default: the function's name); ``rank`` places it in listings; ``needs``
    (module -> bool) says which models it works on, when not all."""
    if view not in VIEWS:
        raise NetloupeError(f"view must be one of {', '.join(VIEWS)}; got {view!r}")

    def decorate(fn: _F) -> _F:
        key = name or fn.__name__
        METHODS[key] = Method(key, fn, view, caption or key, dict(quick or {}), rank, needs)
        ordered = sorted(METHODS.values(), key=lambda m: m.rank)  # stable: equal ranks keep their order
        METHODS.clear()
        METHODS.update((m.name, m) for m in ordered)
        return fn
    return decorate


@overload
def lookup(method: str) -> Method: ...
@overload
def lookup(method: MethodFn) -> MethodFn: ...
def lookup(method: Union[str, MethodFn]) -> MethodFn:
    """The method a name stands for (a function is taken as is); an unknown name lists the known ones."""
    if callable(method) and not isinstance(method, str):
        return method
    if method not in METHODS:
        near = difflib.get_close_matches(str(method).lower().replace("-", "_"), list(METHODS), n=1, cutoff=0.6)
        hint = f"did you mean {near[0]}? " if near else ""
        raise InputError(f"unknown attribution method {method!r}; {hint}choose one of {', '.join(METHODS)}")
    return METHODS[method]


def attribute(model: ModelLike, inputs: MethodInputs, *name: str, **kw: Any) -> Attribution:
    """Run an attribution method by name (a key of METHODS) with its keyword arguments:
    ``attribute(model, x, method="grad_cam")``, or with the name third,
    ``attribute(model, x, "smoothgrad", method="guided_backprop")`` where the method has a
    ``method=`` of its own (SmoothGrad's base method)."""
    if len(name) > 1:
        raise InputError("attribute takes one method name")
    method = name[0] if name else kw.pop("method", "saliency")
    if not isinstance(method, str):
        raise InputError(f"attribute takes a method name, one of {', '.join(METHODS)}; got {type(method).__name__}")
    return lookup(method)(model, inputs, **kw)
