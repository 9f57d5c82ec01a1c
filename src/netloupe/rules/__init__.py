"""Backward rules: how gradients pass through parts of a network (guided backprop's and
deconvnet's ReLU rules; propagation rules next). A rule is one class in one file of this package,
registered with :func:`register`; it only says which autograd nodes or modules it changes and how,
and ``netloupe.probe`` (the one place that adds hooks) applies it while a probe is active, so a
model is always left as found.

A rule changes the nodes of each forward's autograd graph (:meth:`Rule.node_hook`, after the
forward: the forward runs at full speed), the outputs of modules as they are made
(:meth:`Rule.module_hook`, a forward hook that may return a replacement output, e.g. one whose
backward computes relevance instead of the gradient), or torch functions wherever they are called
(:meth:`Rule.function_hook`: a module's, a functional call's or a tensor method's call of
``relu``, ``add``, ... alike, through a torch function mode while the probe is active)."""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from typing import Any, Callable, ClassVar, Dict, Optional, Tuple, Type, TypeVar, Union

import torch.nn as nn
from torch.autograd.graph import Node

from ..errors import NetloupeError

#: a hook for an autograd node: ("prehook", fn(grad_outputs) -> grad_outputs) or
#: ("hook", fn(grad_inputs, grad_outputs) -> grad_inputs)
NodeHook = Tuple[str, Callable[..., Any]]
#: a forward hook (module, args, output) -> a replacement output, or None to keep it
ModuleHook = Callable[[nn.Module, Tuple[Any, ...], Any], Any]


class Rule:
    """A backward rule. Subclasses set ``name`` and override one or both hooks; the defaults
    change nothing."""

    name: ClassVar[str] = ""

    def node_hook(self, node: Node) -> Optional[NodeHook]:
        """The hook for this node of a forward's autograd graph, or None to leave it."""
        return None

    def module_hook(self, name: str, module: nn.Module) -> Optional[ModuleHook]:
        """A forward hook for this module (``name`` in the model), or None to leave it."""
        return None

    def function_hook(self, func: Callable[..., Any]) -> Optional[Callable[..., Any]]:
        """A replacement for the torch function ``func`` (called with the same arguments), or None
        to leave it. Asked once per function; the answer is kept."""
        return None

    @property
    def replaces_nodes(self) -> bool:
        """Whether this rule changes autograd nodes (the probe then walks each forward's graph)."""
        return type(self).node_hook is not Rule.node_hook

    @property
    def replaces_functions(self) -> bool:
        """Whether this rule replaces torch functions (the probe then watches every call)."""
        return type(self).function_hook is not Rule.function_hook

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


#: every registered rule class by name
RULES: Dict[str, Type[Rule]] = {}
_R = TypeVar("_R", bound=Type[Rule])


def register(cls: _R) -> _R:
    """Register a Rule subclass under its ``name`` (``probe(model, rule=name)`` builds it with its
    defaults; an instance with other settings is passed as is)."""
    if not (isinstance(cls, type) and issubclass(cls, Rule)) or not cls.name:
        raise NetloupeError(f"register takes a Rule subclass with a name; got {cls!r}")
    RULES[cls.name] = cls
    return cls


RuleLike = Union[str, Rule]


def as_rule(rule: RuleLike) -> Rule:
    """A rule by name (built with its defaults), or a Rule as is."""
    if isinstance(rule, Rule):
        return rule
    if isinstance(rule, str) and rule in RULES:
        return RULES[rule]()
    near = difflib.get_close_matches(str(rule), list(RULES), n=1)
    raise NetloupeError(f"unknown rule {rule!r}; {f'did you mean {near[0]}? ' if near else ''}choose one of "
                        f"{', '.join(RULES)}, a netloupe.rules.Rule, or None")


for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
del _module

__all__ = ["ModuleHook", "NodeHook", "RULES", "Rule", "RuleLike", "as_rule", "register"]
