"""Layer-wise relevance propagation (Bach et al. 2015; the rules of Montavon et al. 2019), the
fast way: one modified backward in which the gradient carries relevance (as zennit does).

A :class:`LayerRule` says how a convolution or linear layer hands relevance to its input
(epsilon, zero, gamma, alpha-beta, z-plus, z-box, flat, w-square); a :class:`Composite` maps
each layer to a rule by type, by name or as the first layer, with zennit's standard composites
by name (:data:`COMPOSITES`). The :class:`LRP` backward rule applies a composite while a probe is
active, with the canonical forms built in rather than written into the model:

- BatchNorm right after a convolution or linear layer is merged into it (the rule sees the
  merged weights), in sequential and in residual blocks alike; any other BatchNorm passes
  relevance through;
- sums of two tensors (residual additions) split relevance in proportion to each summand
  (zennit's Norm rule), and so do average pools and means;
- activations (ReLU, ReLU6, SiLU, GELU, ...) pass relevance through unchanged;
- a product with a gate that broadcasts over it (squeeze-excitation's x * sigmoid(s)) passes all
  relevance to the gated signal and none to the gate, the gate being read as a weight;
- max pools keep their gradient (winner takes all);
- transformers: LayerNorm is read as linear (its standard deviation held constant), softmax
  attention by AttnLRP's rules or the conservative ones (see :class:`LRP`), fused attention
  (``scaled_dot_product_attention``) taken apart so that its parts get their rules, and a
  tensor times or over a number passes relevance on unchanged.

Relevance flows only through what the model computes; its parameters and buffers are never
changed (merging happens on copies inside the backward)."""

from __future__ import annotations

import difflib
import functools
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Dict, List, Optional, Sequence, Tuple, Type, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn import grad as conv_grad

from ..errors import InputError
from . import Rule, register
from .rescale import ELEMENTWISE, out_of_place

#: a layer's forward with given weights: (input, weight, bias) -> output
Forward = Callable[[torch.Tensor, torch.Tensor, Optional[torch.Tensor]], torch.Tensor]
#: a layer's transposed linear map: (gradient at its output, weight) -> gradient at its input
Transpose = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
#: (input, weight, bias) for each modified copy of a layer a rule evaluates
Parts = List[Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]]
STABILIZER = 1e-6
LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def stabilize(z: torch.Tensor, epsilon: float = STABILIZER) -> torch.Tensor:
    """z moved away from 0 by epsilon in its own direction (0 counts as positive), as zennit does."""
    return z + ((z == 0).to(z) + z.sign()) * epsilon


def _pos(t: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    return None if t is None else t.clamp(min=0)


def _neg(t: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    return None if t is None else t.clamp(max=0)


class LayerRule:
    """How a linear layer (convolution or nn.Linear) hands relevance R to its input x.

    ``parts`` lists modified copies of the layer as (input, weight, bias); each is run forward;
    ``grad_outputs`` turns R into what each copy's output is differentiated against; ``reduce``
    combines each copy's input and gradient into the input's relevance."""

    name: ClassVar[str] = ""
    multiply: ClassVar[bool] = True  # relevance = input * gradient; False: the gradient alone (flat, w²)

    def parts(self, x: torch.Tensor, w: torch.Tensor, b: Optional[torch.Tensor]) -> Parts:
        return [(x, w, b)]

    def grad_outputs(self, r: torch.Tensor, outs: List[torch.Tensor]) -> List[torch.Tensor]:
        return [r / stabilize(outs[0])]

    def reduce(self, inputs: List[torch.Tensor], grads: List[torch.Tensor]) -> torch.Tensor:
        return sum((i * g if self.multiply else g for i, g in zip(inputs, grads)), torch.zeros_like(grads[0]))

    #: parts whose output is only read (a sign), never differentiated
    read_only: ClassVar[Tuple[int, ...]] = ()

    #: the rule reads the layer as it is (one part, the input, weight and bias unchanged), so the
    #: layer's own output and its transposed map give the relevance with no extra forward
    plain: ClassVar[bool] = False

    def relevance(self, forward: Forward, x: torch.Tensor, w: torch.Tensor, b: Optional[torch.Tensor],
                  r: torch.Tensor, z: Optional[torch.Tensor] = None, transpose: Optional[Transpose] = None) -> torch.Tensor:
        """The input's relevance. ``z``: the layer's output, when known; ``transpose``: its
        transposed linear map (g, w) -> Wᵀg, when known. A part with an all-zero input and no bias
        (the negative inputs after a ReLU) has output 0 and is not run; read-only parts run
        without gradients (or are the known output)."""
        with torch._C.DisableTorchFunction():
            if self.plain and z is not None and transpose is not None:
                return x.detach() * transpose(self.grad_outputs(r, [z])[0], w)
            parts = self.parts(x.detach(), w, b)
            idle = [pb is None and not bool(i.any()) for i, _, pb in parts]
            live = [k for k, none in enumerate(idle) if not none and k not in self.read_only]
            inputs = [i.clone().requires_grad_(True) if k in live else i for k, (i, _, _) in enumerate(parts)]
            outs: List[Optional[torch.Tensor]] = [None] * len(parts)
            with torch.enable_grad():
                for k in live:
                    outs[k] = forward(inputs[k], parts[k][1], parts[k][2])
            with torch.no_grad():
                for k in self.read_only:
                    if not idle[k]:
                        outs[k] = z if z is not None and parts[k][1] is w and parts[k][2] is b else forward(*parts[k])
            like = next((o for o in outs if o is not None), None)
            if like is None:  # every part idle: no relevance passes, but the shape is needed
                with torch.no_grad():
                    like = forward(*parts[0])
            full = [torch.zeros_like(like) if o is None else o for o in outs]
            wanted = self.grad_outputs(r, full)
            with torch.enable_grad():
                found = torch.autograd.grad([full[k] for k in live], [inputs[k] for k in live],
                                            [wanted[k] for k in live])
            grads = [torch.zeros_like(i) for i in inputs]
            for k, g in zip(live, found):
                grads[k] = g
            return self.reduce([i.detach() for i in inputs], grads)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in vars(self).items())})"


#: every layer rule by name
LAYER_RULES: Dict[str, Type[LayerRule]] = {}


def layer_rule(cls: Type[LayerRule]) -> Type[LayerRule]:
    """Register a LayerRule under its name (composites and ``lrp(rule=...)`` take names)."""
    LAYER_RULES[cls.name] = cls
    return cls


@layer_rule
class Epsilon(LayerRule):
    """LRP-ε: relevance in proportion to each input's contribution z_ij, with ε absorbing weak or
    contradictory contributions (and the bias's share)."""

    name = "epsilon"
    plain = True

    def __init__(self, epsilon: float = 1e-6) -> None:
        self.epsilon = epsilon

    def grad_outputs(self, r: torch.Tensor, outs: List[torch.Tensor]) -> List[torch.Tensor]:
        return [r / stabilize(outs[0], self.epsilon)]


@layer_rule
class Zero(LayerRule):
    """LRP-0: relevance in exact proportion to each contribution (ε = 0; a zero output passes none)."""

    name = "zero"
    plain = True

    def grad_outputs(self, r: torch.Tensor, outs: List[torch.Tensor]) -> List[torch.Tensor]:
        z = outs[0]
        return [torch.where(z == 0, torch.zeros_like(r), r / torch.where(z == 0, torch.ones_like(z), z))]


@layer_rule
class ZPlus(LayerRule):
    """z⁺: only positive contributions count (positive inputs through positive weights, negative
    inputs through negative weights), the α1β0 rule for any input sign."""

    name = "zplus"

    def parts(self, x: torch.Tensor, w: torch.Tensor, b: Optional[torch.Tensor]) -> Parts:
        return [(x.clamp(min=0), w.clamp(min=0), _pos(b)), (x.clamp(max=0), w.clamp(max=0), None)]

    def grad_outputs(self, r: torch.Tensor, outs: List[torch.Tensor]) -> List[torch.Tensor]:
        g = r / stabilize(outs[0] + outs[1])
        return [g, g]


@layer_rule
class AlphaBeta(LayerRule):
    """αβ: positive contributions weighted α, negative ones β (α - β = 1)."""

    name = "alpha_beta"

    def __init__(self, alpha: float = 2.0, beta: float = 1.0) -> None:
        if alpha < 0 or beta < 0 or abs(alpha - beta - 1) > 1e-12:
            raise InputError(f"alpha-beta needs alpha, beta >= 0 and alpha - beta = 1; got alpha={alpha}, beta={beta}")
        self.alpha, self.beta = alpha, beta

    def parts(self, x: torch.Tensor, w: torch.Tensor, b: Optional[torch.Tensor]) -> Parts:
        xp, xn, wp, wn = x.clamp(min=0), x.clamp(max=0), w.clamp(min=0), w.clamp(max=0)
        return [(xp, wp, _pos(b)), (xn, wn, None), (xp, wn, _neg(b)), (xn, wp, None)]

    def grad_outputs(self, r: torch.Tensor, outs: List[torch.Tensor]) -> List[torch.Tensor]:
        g, h = r / stabilize(outs[0] + outs[1]), r / stabilize(outs[2] + outs[3])
        return [g, g, h, h]

    def reduce(self, inputs: List[torch.Tensor], grads: List[torch.Tensor]) -> torch.Tensor:
        p = [i * g for i, g in zip(inputs, grads)]
        return self.alpha * (p[0] + p[1]) - self.beta * (p[2] + p[3])


@layer_rule
class Gamma(LayerRule):
    """LRP-γ: positive contributions favoured by γ (weights w + γw⁺ for positive outputs, w + γw⁻
    for negative ones: zennit's form, defined for inputs and outputs of any sign)."""

    name = "gamma"
    read_only = (4,)

    def __init__(self, gamma: float = 0.25) -> None:
        self.gamma = gamma

    def parts(self, x: torch.Tensor, w: torch.Tensor, b: Optional[torch.Tensor]) -> Parts:
        g = self.gamma
        up, down = w + g * w.clamp(min=0), w + g * w.clamp(max=0)
        bu = None if b is None else b + g * b.clamp(min=0)
        bd = None if b is None else b + g * b.clamp(max=0)
        xp, xn = x.clamp(min=0), x.clamp(max=0)
        return [(xp, up, bu), (xn, down, None), (xp, down, bd), (xn, up, None), (x, w, b)]

    def grad_outputs(self, r: torch.Tensor, outs: List[torch.Tensor]) -> List[torch.Tensor]:
        pos = (outs[4] > 0).to(r) * r / stabilize(outs[0] + outs[1])
        neg = (outs[4] < 0).to(r) * r / stabilize(outs[2] + outs[3])
        return [pos, pos, neg, neg, torch.zeros_like(r)]

    def reduce(self, inputs: List[torch.Tensor], grads: List[torch.Tensor]) -> torch.Tensor:
        return sum((i * g for i, g in zip(inputs[:4], grads[:4])), torch.zeros_like(grads[0]))


@layer_rule
class ZBox(LayerRule):
    """z^B for the first layer: inputs bounded by ``low`` and ``high`` (numbers or tensors shaped
    like one input, e.g. the normalized image's range)."""

    name = "zbox"

    def __init__(self, low: Any = -3.0, high: Any = 3.0) -> None:
        self.low, self.high = low, high

    def parts(self, x: torch.Tensor, w: torch.Tensor, b: Optional[torch.Tensor]) -> Parts:
        low, high = _bound(self.low, x, torch.amin), _bound(self.high, x, torch.amax)
        return [(x, w, b), (low, w.clamp(min=0), _pos(b)), (high, w.clamp(max=0), _neg(b))]

    def grad_outputs(self, r: torch.Tensor, outs: List[torch.Tensor]) -> List[torch.Tensor]:
        g = r / stabilize(outs[0] - outs[1] - outs[2])
        return [g, g, g]

    def reduce(self, inputs: List[torch.Tensor], grads: List[torch.Tensor]) -> torch.Tensor:
        return inputs[0] * grads[0] - inputs[1] * grads[1] - inputs[2] * grads[2]


def _bound(value: Any, x: torch.Tensor, reduce: Callable[..., torch.Tensor]) -> torch.Tensor:
    """A bound shaped like ``x``; a bound of another grid (the layer pads its input, as "same"
    convolutions do) is taken per channel, its extreme over the grid."""
    t = torch.as_tensor(value).to(x)
    if t.dim() == x.dim() and t.shape[2:] != x.shape[2:]:
        t = reduce(t, dim=tuple(range(2, t.dim())), keepdim=True)
    return t.expand_as(x)


@layer_rule
class Flat(LayerRule):
    """Flat: relevance spread evenly over each output's receptive field (input and weights as ones)."""

    name = "flat"
    multiply = False

    def parts(self, x: torch.Tensor, w: torch.Tensor, b: Optional[torch.Tensor]) -> Parts:
        return [(torch.ones_like(x), torch.ones_like(w), None)]


@layer_rule
class WSquare(LayerRule):
    """w²: relevance in proportion to the squared weights, whatever the input."""

    name = "wsquare"
    multiply = False

    def parts(self, x: torch.Tensor, w: torch.Tensor, b: Optional[torch.Tensor]) -> Parts:
        return [(torch.ones_like(x), w * w, None if b is None else b * b)]


LayerRuleLike = Union[str, LayerRule]


def as_layer_rule(rule: LayerRuleLike) -> LayerRule:
    """A layer rule by name (with its defaults; "alpha1_beta0" and "alpha2_beta1" too) or as is."""
    if isinstance(rule, LayerRule):
        return rule
    named: Dict[str, Callable[[], LayerRule]] = {
        "alpha1_beta0": lambda: AlphaBeta(1.0, 0.0), "alpha2_beta1": lambda: AlphaBeta(2.0, 1.0), **LAYER_RULES}
    if rule in named:
        return named[rule]()
    near = difflib.get_close_matches(str(rule), list(named), n=1)
    raise InputError(f"unknown LRP rule {rule!r}; {f'did you mean {near[0]}? ' if near else ''}choose one of "
                     f"{', '.join(named)} or a netloupe.rules.lrp.LayerRule")


@dataclass
class Composite:
    """Which rule each layer gets: ``names`` (module name -> rule) first, then ``first`` for the
    first convolution or linear layer of the model (in module order), then ``layers`` (a module
    type, or a tuple of types, -> rule; the first match wins), else ``default``."""

    layers: Sequence[Tuple[Union[type, Tuple[type, ...]], LayerRuleLike]] = ()
    first: Optional[LayerRuleLike] = None
    names: Dict[str, LayerRuleLike] = field(default_factory=dict)
    default: LayerRuleLike = "epsilon"

    def rules(self, model: nn.Module) -> Dict[str, LayerRule]:
        """The rule of every convolution and linear layer of ``model``, by module name."""
        out: Dict[str, LayerRule] = {}
        first = True
        for name, module in model.named_modules():
            if not isinstance(module, LAYERS):
                continue
            if name in self.names:
                out[name] = as_layer_rule(self.names[name])
            elif first and self.first is not None:
                out[name] = as_layer_rule(self.first)
            else:
                match = next((r for types, r in self.layers if isinstance(module, types)), self.default)
                out[name] = as_layer_rule(match)
            first = False
        unknown = set(self.names) - set(out)
        if unknown:
            raise InputError(f"the composite names {', '.join(sorted(unknown))}, which are not convolution or linear "
                             "layers of this model; netloupe.layers(model) lists them")
        return out


CONVOLUTIONS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _zennit_like(conv: LayerRuleLike, first: Any = None) -> Callable[..., Composite]:
    def build(**kw: Any) -> Composite:
        return Composite(layers=[(CONVOLUTIONS, conv), (nn.Linear, Epsilon(kw.get("epsilon", 1e-6)))],
                         first=first(**kw) if callable(first) else first)
    return build


#: zennit's standard composites by name: convolutions get the named rule, linear layers ε, and
#: the first layer z^B (with the input's bounds ``low``/``high``) or flat where the name says so
COMPOSITES: Dict[str, Callable[..., Composite]] = {
    "epsilon": _zennit_like(Epsilon()),
    "epsilon_plus": _zennit_like("zplus"),
    "epsilon_plus_flat": _zennit_like("zplus", "flat"),
    "epsilon_gamma_box": _zennit_like(Gamma(), lambda **kw: ZBox(kw.get("low", -3.0), kw.get("high", 3.0))),
    "epsilon_alpha2_beta1": _zennit_like("alpha2_beta1"),
    "epsilon_alpha2_beta1_flat": _zennit_like("alpha2_beta1", "flat"),
}

CompositeLike = Union[str, Composite]


def as_composite(composite: CompositeLike, **kw: Any) -> Composite:
    """A composite by name (``low``/``high`` for z-box, ``epsilon``), or as is."""
    if isinstance(composite, Composite):
        return composite
    if composite in COMPOSITES:
        return COMPOSITES[composite](**kw)
    near = difflib.get_close_matches(str(composite), list(COMPOSITES), n=1)
    raise InputError(f"unknown composite {composite!r}; {f'did you mean {near[0]}? ' if near else ''}choose one of "
                     f"{', '.join(COMPOSITES)} or a netloupe.rules.lrp.Composite")


class _Relevance(torch.autograd.Function):
    """Forward: the layer's output as computed; backward: the rule's relevance for its input."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, out: torch.Tensor, rule: LayerRule, forward: Forward,
                w: torch.Tensor, b: Optional[torch.Tensor], transpose: Optional[Transpose] = None,
                exact: bool = False) -> torch.Tensor:
        """``exact``: ``out`` is this layer's output (not a BatchNorm's after it)."""
        if exact:
            ctx.save_for_backward(x, out)
        else:
            ctx.save_for_backward(x)
        ctx.rule, ctx.forward_fn, ctx.w, ctx.b, ctx.transpose = rule, forward, w, b, transpose
        return out.clone()

    @staticmethod
    def backward(ctx: Any, r: torch.Tensor) -> Tuple[Any, ...]:
        x, *known = ctx.saved_tensors
        z = known[0] if known else None
        return (ctx.rule.relevance(ctx.forward_fn, x, ctx.w, ctx.b, r, z, ctx.transpose),
                None, None, None, None, None, None, None)


def _merged(layer: Any, norm: Any) -> Tuple[torch.Tensor, torch.Tensor]:
    """The weight and bias of ``layer`` followed by the BatchNorm ``norm`` in eval mode, as one layer."""
    scale = norm.weight / (norm.running_var + norm.eps).sqrt() if norm.weight is not None else \
        1 / (norm.running_var + norm.eps).sqrt()
    w = layer.weight * scale.view(-1, *([1] * (layer.weight.dim() - 1)))
    bias = layer.bias if layer.bias is not None else torch.zeros_like(scale)
    b = (bias - norm.running_mean) * scale + (norm.bias if norm.bias is not None else 0)
    return w.detach(), b.detach()


def _norm_rule(inputs: Sequence[torch.Tensor], out: torch.Tensor, r: torch.Tensor,
               through: Callable[..., torch.Tensor]) -> Tuple[torch.Tensor, ...]:
    """Relevance of each input of a sum-like op in proportion to its share: inputs times the
    gradient of the op (``through``) against R / output."""
    with torch.enable_grad(), torch._C.DisableTorchFunction():
        ins = [i.detach().requires_grad_(True) for i in inputs]
        grads = torch.autograd.grad(through(*ins), ins, r / stabilize(out))
    return tuple(i * g for i, g in zip(ins, grads))


class _NormFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, fn: Callable[..., torch.Tensor], *inputs: torch.Tensor) -> torch.Tensor:
        out = fn(*inputs)
        ctx.save_for_backward(out, *inputs)
        ctx.fn = fn
        return out

    @staticmethod
    def backward(ctx: Any, r: torch.Tensor) -> Tuple[Any, ...]:
        out, *inputs = ctx.saved_tensors
        rel = _norm_rule(inputs, out, r, ctx.fn)
        return (None, *(g.sum_to_size(i.shape) if g.shape != i.shape else g for g, i in zip(rel, inputs)))


class _GateFunction(torch.autograd.Function):
    """x * gate with the gate broadcast over x: all relevance to x, none to the gate."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        return x * gate

    @staticmethod
    def backward(ctx: Any, r: torch.Tensor) -> Tuple[torch.Tensor, None]:
        return r, None


ADDS = (torch.add, torch.Tensor.add, torch.Tensor.add_, torch.Tensor.__add__, torch.Tensor.__iadd__,
        torch.Tensor.__radd__)
MULS = (torch.mul, torch.Tensor.mul, torch.Tensor.mul_, torch.Tensor.__mul__, torch.Tensor.__imul__,
        torch.Tensor.__rmul__)
LINEAR_FUNCTIONS = (F.linear, F.conv1d, F.conv2d, F.conv3d)
#: ops whose inputs share relevance in proportion to their contributions (zennit's Norm rule):
#: average pools, means and sums; softmax's rule (AttnLRP) is the same form
SHARES = (F.avg_pool1d, F.avg_pool2d, F.avg_pool3d, F.adaptive_avg_pool1d, F.adaptive_avg_pool2d,
          F.adaptive_avg_pool3d, torch.mean, torch.Tensor.mean, torch.sum, torch.Tensor.sum)
SOFTMAXES = (F.softmax, torch.softmax, torch.Tensor.softmax)
ATTENTION_RULES = ("attnlrp", "conservative")
MATMULS = (torch.matmul, torch.Tensor.matmul, torch.Tensor.__matmul__, torch.bmm, torch.Tensor.bmm)
DIVS = (torch.div, torch.Tensor.div, torch.Tensor.__truediv__)


class _Through(torch.autograd.Function):
    """A value computed elsewhere, whose backward hands the incoming relevance to ``x`` unchanged."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        return out.clone()

    @staticmethod
    def backward(ctx: Any, r: torch.Tensor) -> Tuple[torch.Tensor, None]:
        return r, None


def _two_tensors(args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Optional[Tuple[torch.Tensor, torch.Tensor]]:
    other = args[1] if len(args) > 1 else kwargs.get("other")
    if (len(args) < 1 or not isinstance(args[0], torch.Tensor) or not isinstance(other, torch.Tensor)
            or not args[0].is_floating_point() or not other.is_floating_point() or "alpha" in kwargs or len(args) > 2):
        return None
    return args[0], other


class _Bilinear(torch.autograd.Function):
    """A product of two activations (q @ kᵀ, attention @ v): AttnLRP's uniform rule, each operand
    taking half of the relevance by the ε rule with the other held constant."""

    @staticmethod
    def forward(ctx: Any, fn: Callable[..., torch.Tensor], a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        out = fn(a, b)
        ctx.save_for_backward(a, b, out)
        ctx.fn = fn
        return out

    @staticmethod
    def backward(ctx: Any, r: torch.Tensor) -> Tuple[Any, ...]:
        a, b, out = ctx.saved_tensors
        ra, rb = _norm_rule((a, b), out, r, ctx.fn)
        return None, 0.5 * ra, 0.5 * rb


def _layer_norm(x: torch.Tensor, shape: Sequence[int], weight: Optional[torch.Tensor] = None,
                bias: Optional[torch.Tensor] = None, eps: float = 1e-5) -> torch.Tensor:
    """LayerNorm read as a linear map: the standard deviation held constant (AttnLRP), so the
    ε rule applies to centring, scaling and the affine part together."""
    dims = tuple(range(-len(shape), 0))

    def linear(t: torch.Tensor) -> torch.Tensor:
        sd = (t.var(dims, unbiased=False, keepdim=True) + eps).sqrt().detach()
        y = (t - t.mean(dims, keepdim=True)) / sd
        y = y if weight is None else y * weight
        return y if bias is None else y + bias
    return _NormFunction.apply(linear, x)


def _attention(conservative: bool, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
               attn_mask: Optional[torch.Tensor] = None, dropout_p: float = 0.0, is_causal: bool = False,
               scale: Optional[float] = None, enable_gqa: bool = False) -> torch.Tensor:
    """Fused attention taken apart, so that its softmax and its two products get their rules."""
    if enable_gqa and q.shape[-3] != k.shape[-3]:
        repeat = q.shape[-3] // k.shape[-3]
        k, v = k.repeat_interleave(repeat, dim=-3), v.repeat_interleave(repeat, dim=-3)
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    scaled = _Through.apply(q, (q * scale).detach())  # a constant factor passes relevance on
    scores = _Bilinear.apply(torch.matmul, scaled, k.transpose(-2, -1))
    if is_causal:
        t, s = scores.shape[-2:]
        attn_mask = torch.ones(t, s, dtype=torch.bool, device=q.device).tril()
    if attn_mask is not None:
        masked = scores.masked_fill(~attn_mask, float("-inf")) if attn_mask.dtype == torch.bool else scores + attn_mask
        scores = _Through.apply(scores, masked.detach())
    return _product(torch.matmul, (_softmax(scores, -1), v), {}, conservative)


def _softmax(x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    """Softmax with AttnLRP's rule, x (R - s ΣR) (the shares form); its output is marked, so that
    the conservative rule can hold attention weights constant in their product with the values."""
    out = _NormFunction.apply(lambda t: torch.softmax(t, *args, **kwargs), x)
    out._netloupe_attention = True
    return out


@register
class LRP(Rule):
    """Layer-wise relevance propagation with a composite (by name or a :class:`Composite`).

    attention: how relevance crosses softmax attention. "attnlrp" (Achtibat et al. 2024): the
    softmax by its own rule, x (R - s ΣR), and each product of two activations (q kᵀ, weights
    times values) splits relevance evenly between them; the softmax's rule absorbs a little
    relevance, as a bias does. "conservative" (Ali et al. 2022): the attention weights are held
    constant, so all relevance goes through the values and is conserved exactly. Either way
    LayerNorm is read as linear (its standard deviation held constant)."""

    name = "lrp"

    def __init__(self, composite: CompositeLike = "epsilon_plus_flat", attention: str = "attnlrp",
                 **composite_kw: Any) -> None:
        if attention not in ATTENTION_RULES:
            raise InputError(f"attention must be one of {', '.join(ATTENTION_RULES)}; got {attention!r}")
        self.attention = attention
        self.composite = as_composite(composite, **composite_kw)
        self.rules: Dict[int, Tuple[nn.Module, LayerRule]] = {}  # id(weight) -> (layer, rule)

    def module_hook(self, name: str, module: nn.Module) -> Optional[Callable[..., Any]]:
        if name == "":  # the model itself comes first: settle every layer's rule, known by its weight
            named = dict(module.named_modules())
            self.rules = {id(named[n].weight): (named[n], r) for n, r in self.composite.rules(module).items()}
        return _batch_norm if isinstance(module, NORMS) else None

    def function_hook(self, func: Callable[..., Any]) -> Optional[Callable[..., Any]]:
        if func in LINEAR_FUNCTIONS:
            def layer(*args: Any, **kwargs: Any) -> Any:
                found = self.rules.get(id(args[1] if len(args) > 1 else kwargs.get("weight")))
                out = func(*args, **kwargs)
                if found is None or not isinstance(args[0], torch.Tensor):
                    return out
                module, rule = found
                rest = args[3:]

                def forward(x: torch.Tensor, w: torch.Tensor, b: Optional[torch.Tensor]) -> torch.Tensor:
                    return func(x, w, b, *rest, **{k: v for k, v in kwargs.items() if k not in ("weight", "bias")})
                bias = args[2] if len(args) > 2 else kwargs.get("bias")
                transpose = _transpose(func, args[0].shape, rest, kwargs)
                new = _Relevance.apply(args[0], out.detach(), rule, forward, args[1].detach(),
                                       None if bias is None else bias.detach(), transpose, True)
                new._netloupe_lrp = (module, args[0], rule, forward, transpose)  # for a BatchNorm right after
                return new
            return layer
        if func in ELEMENTWISE:
            def passed(*args: Any, **kwargs: Any) -> Any:
                with torch.no_grad():
                    out = out_of_place(func, args, kwargs)(args[0])
                return _Through.apply(args[0], out)
            return passed
        if func in ADDS:
            def summed(*args: Any, **kwargs: Any) -> Any:
                pair = _two_tensors(args, kwargs)
                return func(*args, **kwargs) if pair is None else _NormFunction.apply(torch.add, *pair)
            return summed
        if func in MULS:
            return lambda *args, **kwargs: _gated(func, args, kwargs)
        if func in DIVS:
            return lambda *args, **kwargs: _scaled(func, args, kwargs)
        if func in MATMULS:
            return lambda *args, **kwargs: _product(func, args, kwargs, self.attention == "conservative")
        if func in SOFTMAXES:
            return lambda x, *args, **kwargs: _softmax(x, *args, **{k: v for k, v in kwargs.items() if k != "_stacklevel"})
        if func is F.layer_norm:
            return _layer_norm
        if func is F.scaled_dot_product_attention:
            return functools.partial(_attention, self.attention == "conservative")
        if func in SHARES:
            def averaged(*args: Any, **kwargs: Any) -> Any:
                if not isinstance(args[0], torch.Tensor) or not args[0].is_floating_point():
                    return func(*args, **kwargs)
                return _NormFunction.apply(lambda t: func(t, *args[1:], **kwargs), args[0])
            return averaged
        return None

    def __repr__(self) -> str:
        return f"LRP({self.composite!r})"


_CONV_INPUT_GRADIENTS = {F.conv1d: conv_grad.conv1d_input, F.conv2d: conv_grad.conv2d_input,
                         F.conv3d: conv_grad.conv3d_input}


def _transpose(func: Callable[..., Any], shape: Sequence[int], rest: Tuple[Any, ...],
               kwargs: Dict[str, Any]) -> Optional[Transpose]:
    """The transposed map of a linear or convolution call (None where padding is given by name)."""
    if func is F.linear:
        return lambda g, w: g @ w
    names = ("stride", "padding", "dilation", "groups")
    given = dict(zip(names, rest), **{k: v for k, v in kwargs.items() if k in names})
    settings = {"stride": given.get("stride", 1), "padding": given.get("padding", 0),
                "dilation": given.get("dilation", 1), "groups": given.get("groups", 1)}
    if isinstance(settings["padding"], str):
        return None
    grad_input = _CONV_INPUT_GRADIENTS[func]
    return lambda g, w: grad_input(list(shape), w, g, **settings)


def _batch_norm(module: nn.Module, args: Tuple[Any, ...], out: Any) -> Any:
    """A BatchNorm (eval mode) right after a convolution or linear layer is merged into it: the
    layer's rule runs on the merged weights, from the layer's input. Any other passes relevance."""
    x = args[0] if args else None
    if not isinstance(x, torch.Tensor) or not isinstance(out, torch.Tensor):
        return None
    before = getattr(x, "_netloupe_lrp", None)
    if before is None or module.running_var is None:
        return _Through.apply(x, out.detach())
    layer, layer_input, rule, forward, transpose = before
    w, b = _merged(layer, module)
    # a BatchNorm of torch's own gives the merged layer's output; a subclass may add more (timm's
    # BatchNormAct2d applies its activation), and then the rule recomputes it
    exact = type(module).forward in {t.forward for t in NORMS}
    return _Relevance.apply(layer_input, out.detach(), rule, forward, w, b, transpose, exact)


def _scaled(func: Callable[..., Any], args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Optional[Any]:
    """A tensor times or over a number passes its relevance on unchanged (None: not that case)."""
    if (len(args) == 2 and not kwargs and isinstance(args[0], torch.Tensor) and args[0].is_floating_point()
            and isinstance(args[1], (int, float)) and not isinstance(args[1], bool)):
        return _Through.apply(args[0], func(*args).detach())
    return func(*args, **kwargs) if func in DIVS else None


def _product(func: Callable[..., Any], args: Tuple[Any, ...], kwargs: Dict[str, Any], conservative: bool) -> Any:
    """A matrix product: between two activations AttnLRP's uniform rule; with a constant (a
    weight), all relevance to the activation by the ε rule. ``conservative``: attention weights
    (a softmax's output) times values count as a constant times the values (Ali et al. 2022)."""
    a, b = (args + (None, None))[:2]
    if kwargs or len(args) != 2 or not isinstance(a, torch.Tensor) or not isinstance(b, torch.Tensor):
        return func(*args, **kwargs)
    if conservative and getattr(a, "_netloupe_attention", False):  # attention weights held constant
        return _NormFunction.apply(lambda t: func(a.detach(), t), b)
    if a.requires_grad and b.requires_grad:
        return _Bilinear.apply(func, a, b)
    if a.requires_grad:
        return _NormFunction.apply(lambda t: func(t, b), a)
    if b.requires_grad:
        return _NormFunction.apply(lambda t: func(a, t), b)
    return func(a, b)


def _gated(func: Callable[..., Any], args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Any:
    scaled = _scaled(func, args, kwargs)
    if scaled is not None:
        return scaled
    pair = _two_tensors(args, kwargs)
    if pair is None or pair[0].shape == pair[1].shape:
        return func(*args, **kwargs)
    x, gate = pair if pair[0].numel() >= pair[1].numel() else (pair[1], pair[0])
    if torch.broadcast_shapes(x.shape, gate.shape) != x.shape:
        return func(*args, **kwargs)
    return _GateFunction.apply(x, gate)
