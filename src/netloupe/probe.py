"""The probe: the one place in netloupe that adds hooks to a model or changes its modes.

Everything else captures activations and gradients, applies a ReLU backward rule or turns
dropout on by entering ``with probe(model, ...)``, and the probe restores the model on
exit, exceptions included: each module's ``training`` flag, each parameter's
``requires_grad``, and no hook left behind. Parameters and buffers are never written.
"""

from __future__ import annotations

from collections import defaultdict
from typing import (
    Any,
    Callable,
    Collection,
    Dict,
    Iterable,
    List,
    Optional,
    Protocol,
    Sequence,
    Set,
    Tuple,
    Union,
)

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.autograd.graph import Node
from torch.overrides import TorchFunctionMode
from torch.utils.hooks import RemovableHandle

from .errors import NetloupeError
from .layouts import Layout, infer
from .outputs import first_tensor, tensors
from .rules import Rule, RuleLike, as_rule
from .units import UnitLike, as_unit


class HoldsModule(Protocol):
    """A model wrapper that holds its nn.Module in ``.module``, as netloupe's LoadedModel does (which
    this module cannot import: models imports the probe)."""

    @property
    def module(self) -> nn.Module: ...


#: what a probe takes as the model: an nn.Module, or a LoadedModel holding one
ModelOrLoaded = Union[nn.Module, HoldsModule]
#: the layers a probe captures: one layer (its name or module), or several names, units or modules
Layers = Union[str, nn.Module, Iterable[UnitLike]]
#: the layers captured and their calls, each call's tensor in order
_Calls = Dict[str, List[torch.Tensor]]

# Modules that are random only in training and read their own ``training`` flag.
_STOCHASTIC_MODULE_NAMES = {"DropPath", "StochasticDepth", "DropBlock2d", "DropBlock", "DropPathWithScale"}


def _dropout_family() -> Dict[Callable[..., Any], Tuple[str, int]]:
    """Dropout functions mapped to (name, position) of their training switch."""
    fam: Dict[Callable[..., Any], Tuple[str, int]] = {}
    for f in (F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout, F.feature_alpha_dropout):
        fam[f] = ("training", 2)
    for name in ("dropout", "dropout_", "alpha_dropout", "alpha_dropout_", "feature_dropout",
                 "feature_dropout_", "feature_alpha_dropout", "feature_alpha_dropout_"):
        if hasattr(torch, name):
            fam[getattr(torch, name)] = ("train", 2)
    return fam


_DROPOUT = _dropout_family()


def _is_stochastic(m: nn.Module) -> bool:
    """Random only in training: the Dropout family and drop-path / drop-block modules."""
    return isinstance(m, nn.modules.dropout._DropoutNd) or type(m).__name__ in _STOCHASTIC_MODULE_NAMES


class _ForceDropout(TorchFunctionMode):
    """Forces dropout on for any call site (nn modules and functional calls alike) and records
    each call's rate."""

    def __init__(self) -> None:
        super().__init__()
        self.dropout_rates: List[float] = []

    def __torch_function__(self, func: Callable[..., Any], types: Collection[type], args: Tuple[Any, ...] = (),
                           kwargs: Optional[Dict[str, Any]] = None) -> Any:
        # called for every torch op while active: keep the common path short
        if kwargs is None:
            kwargs = {}
        if func in _DROPOUT:
            name, pos = _DROPOUT[func]
            self.dropout_rates.append(float(args[1] if len(args) > 1 else kwargs.get("p", 0.5)))
            if len(args) > pos:
                args = args[:pos] + (True,) + args[pos + 1:]
            else:
                kwargs = {**kwargs, name: True}
        return func(*args, **kwargs)


class _ReplaceFunctions(TorchFunctionMode):
    """Calls a rule's replacement instead of each torch function it replaces, wherever called
    in the model's forward (active from its start to its end)."""

    def __init__(self, rule: Rule) -> None:
        super().__init__()
        self.rule = rule
        self.active = False
        self.replacements: Dict[Callable[..., Any], Optional[Callable[..., Any]]] = {}

    def __torch_function__(self, func: Callable[..., Any], types: Collection[type], args: Tuple[Any, ...] = (),
                           kwargs: Optional[Dict[str, Any]] = None) -> Any:
        try:
            replacement = self.replacements[func]
        except KeyError:
            replacement = self.replacements[func] = self.rule.function_hook(func)
        except TypeError:  # an unhashable callable: asked each time
            replacement = self.rule.function_hook(func)
        return (replacement or func)(*args, **(kwargs or {}))


def attention_layers(model: nn.Module) -> List[str]:
    """The modules that hold the attention probabilities of timm's attention layers (their
    ``attn_drop``, which the math path applies to them), in the model's order."""
    return [f"{name}.attn_drop" if name else "attn_drop" for name, m in model.named_modules()
            if isinstance(getattr(m, "fused_attn", None), bool) and isinstance(getattr(m, "attn_drop", None), nn.Module)]


def _unwrap(model: ModelOrLoaded) -> nn.Module:
    if isinstance(model, nn.Module):
        return model
    inner = getattr(model, "module", None)
    if isinstance(inner, nn.Module):
        return inner
    raise NetloupeError(f"expected a torch nn.Module or a netloupe LoadedModel, got {type(model).__name__}")


class Stopped(Exception):
    """Raised by a probe's hook to end a forward pass whose remaining layers nobody reads (see
    :meth:`Probe.stop_after_last`); the caller of the model catches it."""


class Probe:
    """Captures layer outputs (and their gradients) while active; see :func:`probe`."""

    def __init__(self, model: ModelOrLoaded, layers: Layers = (), *, detach: bool = False,
                 rule: Optional[RuleLike] = None, stochastic: bool = False, freeze: bool = True,
                 layer_inputs: Layers = (), attention: bool = False) -> None:
        self.rule: Optional[Rule] = None if rule is None else as_rule(rule)
        self.model = _unwrap(model)
        self.attention_layers = attention_layers(self.model) if attention else []
        given: List[UnitLike] = list(layers if not isinstance(layers, (str, nn.Module)) else [layers])
        self.layers = self._names([*given, *self.attention_layers])
        self.input_layers = self._names(layer_inputs)
        self.detach, self.stochastic = detach, stochastic
        self._freeze = freeze
        self.calls: _Calls = defaultdict(list)
        self.input_calls: _Calls = defaultdict(list)
        self._grads: Dict[Tuple[str, int], torch.Tensor] = {}
        self._handles: List[RemovableHandle] = []
        self._mode: Optional[_ForceDropout] = None
        self._functions: Optional[_ReplaceFunctions] = None
        self._rates: List[float] = []
        self._saved: Optional[Tuple[List[Tuple[nn.Module, bool]], List[nn.Parameter], List[nn.Module]]] = None
        self.input_hw: Optional[Tuple[int, int]] = None
        self._order: List[str] = []  # the layers in the order of their captures in this pass
        self._stop: Optional[Tuple[str, int]] = None

    def _names(self, layers: Layers) -> List[str]:
        if isinstance(layers, (str, nn.Module)):
            layers = [layers]
        return list(dict.fromkeys(as_unit(self.model, unit).layer for unit in layers))

    # -- results ---------------------------------------------------------------------------
    @property
    def activations(self) -> Dict[str, torch.Tensor]:
        """Layer name -> output of its latest call in the current forward pass."""
        return {name: calls[-1] for name, calls in self.calls.items() if calls}

    @property
    def layer_inputs(self) -> Dict[str, torch.Tensor]:
        """Layer name -> the first tensor argument of its latest call (for ``layer_inputs=``)."""
        return {name: calls[-1] for name, calls in self.input_calls.items() if calls}

    @property
    def gradients(self) -> Dict[str, torch.Tensor]:
        """Layer name -> gradient of the latest backward with respect to ``activations[name]``."""
        out = {}
        for name, calls in self.calls.items():
            key = (name, len(calls) - 1)
            if key in self._grads:
                out[name] = self._grads[key]
        return out

    @property
    def dropout_rates(self) -> List[float]:
        """The rate p of every dropout call switched on (``stochastic=True``) since entering, in call
        order: empty when no dropout ran, so a caller can tell "no dropout" from "dropout with p = 0"."""
        return list(self._mode.dropout_rates) if self._mode is not None else list(self._rates)

    @property
    def attentions(self) -> List[torch.Tensor]:
        """With ``attention=True``: the attention probabilities [N, heads, T, T] of every attention
        layer, in the order they ran."""
        return [self.activations[name] for name in self.attention_layers if name in self.activations]

    def layout(self, layer: str, shape: Optional[Sequence[int]] = None) -> Layout:
        """The layout of a captured layer's output (netloupe.layouts), for the latest input."""
        if shape is None:
            self._check_captured(layer)
            shape = self.activations[layer].shape
        return infer(self.model, layer, tuple(shape), self.input_hw)

    def unit_value(self, unit: UnitLike) -> torch.Tensor:
        """One number per sample for a captured unit: a neuron's value, a channel's mean, or
        the layer's mean. Raises a UnitError if the channel or position is out of range."""
        unit = as_unit(self.model, unit)
        self._check_captured(unit.layer)
        return unit.value(self.activations[unit.layer], self.layout(unit.layer))

    def _check_captured(self, layer: str) -> None:
        if layer in self.activations:
            return
        if layer in self.layers:
            raise NetloupeError(f"layer {layer!r} did not run in the model's forward pass (it is never reached, or "
                                "gives no tensor), so it has no value here; choose a layer on the path from the "
                                "input to the output (netloupe.layers(model) shows which layers run)")
        raise NetloupeError(f"layer {layer!r} was not captured; pass it to probe(model, [...]) "
                            "and run a forward pass first")

    def _start(self, module: nn.Module, args: Tuple[Any, ...]) -> None:
        """At the start of each model call: forget the last call's captures, note the input size."""
        self.clear()
        first, _ = first_tensor(args)
        self.input_hw = (first.shape[-2], first.shape[-1]) if first is not None and first.dim() >= 3 else None

    def stop_after_last(self) -> None:
        """From now on, end each forward pass with :class:`Stopped` right after the capture that
        came last in the latest pass (the same layer's same call), so that the layers after it
        are not run: for callers that read only the captures, never the output, of a model
        whose passes run the same layers in the same order."""
        if self._order:
            self._stop = (self._order[-1], len(self.calls[self._order[-1]]))

    def clear(self) -> None:
        """Forget what was captured (done automatically when the model's own forward starts)."""
        self._order.clear()
        self.calls.clear()
        self.input_calls.clear()
        self._grads.clear()

    # -- context ---------------------------------------------------------------------------
    def __enter__(self) -> "Probe":
        model = self.model
        modules = list(model.modules())
        # remember and change only what differs: flags are plain attributes, so they are set
        # directly rather than through nn.Module.__setattr__ (which is slow on big models)
        self._saved = (
            [(m, m.training) for m in modules if m.training != (self.stochastic and _is_stochastic(m))],
            [p for p in model.parameters() if p.requires_grad] if self._freeze else [],
            [m for m in modules if getattr(m, "fused_attn", False) is True] if self.attention_layers else [],
        )
        try:
            for m, training in self._saved[0]:
                object.__setattr__(m, "training", not training)
            for p in self._saved[1]:
                p.requires_grad_(False)
            for m in self._saved[2]:  # timm's fused attention never forms the attention map; its math path does
                setattr(m, "fused_attn", False)
            if (self.layers or self.input_layers or self.rule) and isinstance(model, torch.jit.ScriptModule):
                raise NetloupeError("this is a TorchScript model, which takes no hooks: capturing layers and "
                                    "backward rules need the original nn.Module (gradient methods without "
                                    "a rule, such as saliency and integrated gradients, work)")
            if self.layers or self.input_layers:
                self._handles.append(model.register_forward_pre_hook(self._start))
                named = dict(model.named_modules())
                for name in self.layers:
                    self._handles.append(named[name].register_forward_hook(self._capture_hook(name, self.calls)))
                for name in self.input_layers:
                    self._handles.append(named[name].register_forward_pre_hook(
                        self._capture_hook(name, self.input_calls)))
            if self.rule is not None:
                if self.rule.replaces_nodes:
                    self._handles.append(model.register_forward_hook(self._rule_hook))
                for name, module in model.named_modules():
                    hook = self.rule.module_hook(name, module)
                    if hook is not None:
                        self._handles.append(module.register_forward_hook(hook))
            if self.stochastic:
                self._mode = _ForceDropout()
                self._mode.__enter__()
            if self.rule is not None and self.rule.replaces_functions:
                # only inside the model's forward: the target's score and the sum a caller
                # differentiates are not the model's and keep their gradient
                self._functions = _ReplaceFunctions(self.rule)
                self._handles.append(model.register_forward_pre_hook(self._functions_on))
                self._handles.append(model.register_forward_hook(self._functions_off, always_call=True))
        except BaseException:
            self._restore()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._restore()

    def _functions_on(self, module: nn.Module, args: Tuple[Any, ...]) -> None:
        if self._functions is not None and not self._functions.active:
            self._functions.active = True
            self._functions.__enter__()

    def _functions_off(self, module: nn.Module, args: Tuple[Any, ...], output: Any) -> None:
        if self._functions is not None and self._functions.active:
            self._functions.active = False
            self._functions.__exit__(None, None, None)

    def _restore(self) -> None:
        if self._functions is not None:
            self._functions_off(self.model, (), None)
            self._functions = None
        if self._mode is not None:
            self._mode.__exit__(None, None, None)
            self._rates = self._mode.dropout_rates
            self._mode = None
        for h in self._handles:
            h.remove()
        self._handles.clear()
        if self._saved is not None:
            modules, params, attention = self._saved
            for m, training in modules:
                object.__setattr__(m, "training", training)
            for p in params:
                p.requires_grad_(True)
            for m in attention:
                setattr(m, "fused_attn", True)
            self._saved = None

    def _rule_hook(self, module: nn.Module, args: Tuple[Any, ...], output: Any) -> None:
        """After each forward of the model: hook the nodes of the new graph that the rule changes."""
        if self.rule is None:  # registered only with a rule
            return
        stack: List[Node] = [t.grad_fn for t in tensors(output) if t.grad_fn is not None]
        seen: Set[Node] = set()  # the hooks live on the graph's nodes and go with it
        while stack:
            node = stack.pop()
            if node in seen:
                continue
            seen.add(node)
            hook = self.rule.node_hook(node)
            if hook is not None:
                kind, fn = hook
                (node.register_prehook if kind == "prehook" else node.register_hook)(fn)
            stack.extend(n for n, _ in node.next_functions if n is not None)

    def _keep(self, name: str, t: torch.Tensor, calls: _Calls) -> torch.Tensor:
        """Record ``t`` for layer ``name``; returns what flows on in its place."""
        index = len(calls[name])
        if self.detach:
            calls[name].append(t.detach().clone())
            return t
        # Keep the captured tensor apart from what flows on, so that a later in-place op
        # (a ReLU(inplace=True) after this layer) cannot overwrite it.
        if torch.is_grad_enabled() and not t.requires_grad and t.is_floating_point():
            t = t.detach().requires_grad_(True)  # gradients at this layer even if the input has none
        calls[name].append(t)
        if t.requires_grad and calls is self.calls:
            t.register_hook(lambda g: self._grads.__setitem__((name, index), g))
        return t.clone()

    def _capture_hook(self, name: str, calls: _Calls) -> Callable[..., Any]:
        """A hook that records the first tensor of what it is given: as a forward hook
        (module, args, output) the output, as a pre-hook (module, args) the arguments."""
        def hook(module: nn.Module, *given: Any) -> Any:
            t, put = first_tensor(given[-1])
            if t is None or put is None:  # both or neither
                return None
            kept = self._keep(name, t, calls)
            if calls is self.calls:
                self._order.append(name)
                if self._stop == (name, len(calls[name])):
                    raise Stopped(name)
            return None if self.detach else put(kept)
        return hook


def probe(model: ModelOrLoaded, layers: Layers = (), *, detach: bool = False,
          rule: Optional[RuleLike] = None, stochastic: bool = False, freeze: bool = True, layer_inputs: Layers = (),
          attention: bool = False) -> Probe:
    """Capture activations and gradients of ``layers`` while the block runs.

    ``with probe(model, ["layer3", "layer4"]) as p: out = model(x)`` gives
    ``p.activations[name]`` (in the autograd graph unless ``detach=True``) and, after a
    backward, ``p.gradients[name]``. A module called several times keeps every call in
    ``p.calls[name]``; ``activations`` holds the latest. ``layer_inputs``: layers whose input
    (the first tensor argument) is captured too, in ``p.layer_inputs`` / ``p.input_calls``.
    attention: capture the attention probabilities of timm's attention layers (``p.attentions``);
    their fused kernel, which never forms them, is switched to the math path while active.
    ``p.layout(layer)`` tells where a captured output keeps its channels and grid.

    rule: a backward rule (netloupe.rules) by name or as a Rule: ``"guided"`` or ``"deconv"``
    change the backward of every ReLU-family op in the graph of each model call (nn.ReLU, inplace
    or reused, ``F.relu``/``torch.relu``/``relu_``, ReLU6): after the forward, hooks go on those
    autograd nodes, so the forward runs at full speed; a rule's module hooks are forward hooks
    and its function replacements (DeepLIFT's rescale rule) are called instead of the torch
    functions they replace, while the probe is active. Nothing is added to the model for good.
    stochastic: dropout (modules and functional calls) and drop-path run as in training,
    while normalization layers stay in eval mode.
    freeze: parameters stop requiring grad while active, so backward passes never write
    ``.grad`` into the model.
    The model runs in eval mode while the probe is active (so BatchNorm statistics are
    never updated), and on exit every mode, flag and hook is as it was.
    """
    return Probe(model, layers, detach=detach, rule=rule, stochastic=stochastic, freeze=freeze,
                 layer_inputs=layer_inputs, attention=attention)
