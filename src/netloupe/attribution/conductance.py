"""Conductance (Dhamdhere et al. 2018) and internal influence (Leino et al. 2018): integrated
gradients that stop at a hidden layer, as captum's LayerConductance, InternalInfluence and
NeuronConductance define them. One walk along the straight path from each baseline to its input
(the path points of all samples in chunks of ``batch_size`` rows, one forward and backward per
chunk) reads the layer's activations and the target's gradient there; the methods differ only in
how they combine the two."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch

from ..errors import NetloupeError
from ..layouts import Layout
from ..probe import Probe, probe
from ..runtime import channels_last
from ..units import Unit, UnitLike, as_unit
from .cam import default_layer
from .engine import (
    Attribution,
    InputError,
    MethodInputs,
    ModelLike,
    Prepared,
    TargetLike,
    Tensors,
    chunks,
    interpolation_mode,
    make_baselines,
    pick_batch_size,
    prepare,
    target_scores,
    unpack,
    upsample,
)
from .integrated import QUADRATURES, path_points
from .registry import register

#: the fixed quadrature rules these methods take (captum's names; integrated.path_points builds them)
RULES = tuple(q for q in QUADRATURES if q != "adaptive")
#: how a layer method turns the layer's per-unit values into its map: "sum" over channels, or None (kept as they are)
REDUCTIONS = ("sum", None)

Baseline = Union[float, torch.Tensor, str, Tuple[Any, ...]]
#: (activation, the target's gradient there, layout, sample of each row) -> a scalar whose input gradient is wanted
Flow = Callable[[torch.Tensor, torch.Tensor, Layout, torch.Tensor], torch.Tensor]


def path_rule(method: str, steps: object, quadrature: object,
              extra_node: bool = False) -> Tuple[torch.Tensor, torch.Tensor]:
    """(alphas, weights) in float64 of a fixed rule with ``steps`` nodes (``steps + 1`` with
    ``extra_node``, as captum's conductance takes: it differences consecutive nodes), after
    checking ``steps`` and ``quadrature``."""
    if quadrature not in RULES:
        raise InputError(f"unknown quadrature {quadrature!r} for {method}; choose one of {', '.join(RULES)} "
                         "(the adaptive rule is integrated_gradients' own)")
    least = 2 if quadrature == "riemann_trapezoid" and not extra_node else 1
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < least:
        raise InputError(f"{method} needs steps >= {least} (an integer); got {steps!r}")
    alphas, weights = path_points(steps + 1 if extra_node else steps, str(quadrature))
    return torch.tensor(alphas, dtype=torch.float64), torch.tensor(weights, dtype=torch.float64)


def _along(a: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per-row numbers [R] shaped to broadcast over the rows of ``x``."""
    return a.to(x).view(-1, *([1] * (x.dim() - 1)))


@dataclass
class Step:
    """A chunk of path points, evaluated. Row r of the walk is node ``k = r // n`` of sample
    ``r % n``; ``act`` is the layer's output (or input) there, detached, ``grad`` the target
    score's gradient with respect to it, ``input_grads`` the input gradients of the walk's flow."""

    rows: torch.Tensor
    samples: torch.Tensor
    k: torch.Tensor
    act: torch.Tensor
    grad: torch.Tensor
    layout: Layout
    input_grads: Optional[Tuple[Optional[torch.Tensor], ...]] = None


def _evaluate(c: Prepared, p: Probe, chunk: Tensors, samples: torch.Tensor, layer: str, layer_input: bool,
              flow: Optional[Flow]) -> Tuple[torch.Tensor, torch.Tensor, Layout, Optional[Tuple[Any, ...]]]:
    """One forward and backward of a chunk of path points: the layer's tensor, the target's
    gradient there and, with a ``flow``, that flow's gradient with respect to the points."""
    xi = tuple(x.detach().requires_grad_(flow is not None) for x in chunk)
    s = c.target.score(c.extra.take(samples).call(c.loaded.module, xi), p, samples)
    captured = p.layer_inputs if layer_input else p.activations
    if layer not in captured:
        raise NetloupeError(f"layer {layer!r} did not run (or took/gave no tensor) in the forward pass; choose a "
                            "layer the model calls on the way to the target (netloupe.layers(model) lists them)")
    act = captured[layer]
    grad = (torch.autograd.grad(s.sum(), act, retain_graph=flow is not None, allow_unused=True)[0]
            if s.requires_grad else None)
    if grad is None:
        raise NetloupeError(f"the target does not depend on the {'input' if layer_input else 'output'} of layer "
                            f"{layer!r} (an unused branch?); choose a layer on the path from the input to the target")
    layout = p.layout(layer, act.shape)
    input_grads = None
    if flow is not None:
        input_grads = torch.autograd.grad(flow(act, grad, layout, samples), xi, allow_unused=True)
    return act.detach(), grad, layout, input_grads


def walk(c: Prepared, bases: Tensors, layer: str, alphas: torch.Tensor, batch_size: int,
         visit: Callable[[Step], None], layer_input: bool = False, flow: Optional[Flow] = None) -> None:
    """Evaluate every sample's path ``baseline + alpha * (x - baseline)`` at the nodes ``alphas``,
    node-major (all samples at node 0, then node 1, ...), in chunks of ``batch_size`` rows, and
    hand each evaluated chunk to ``visit`` in order."""
    n, module = c.n, c.loaded.module
    diffs = tuple(x - b for x, b in zip(c.xs, bases))
    with probe(module, c.target.layers + ([] if layer_input else [layer]),
               layer_inputs=[layer] if layer_input else ()) as p:
        for sl in chunks(len(alphas) * n, batch_size):
            rows = torch.arange(sl.start, sl.stop)
            samples, k = rows % n, rows // n
            points = tuple(b[samples] + _along(alphas[k], d) * d[samples] for b, d in zip(bases, diffs))

            def run(chunk: Tensors, samples: torch.Tensor = samples) -> Tuple[Any, ...]:
                return _evaluate(c, p, chunk, samples, layer, layer_input, flow)

            act, grad, layout, input_grads = channels_last(module, run, points)
            visit(Step(rows, samples, k, act, grad, layout, input_grads))


class Conductance:
    """Accumulates captum's layer conductance per sample, the sum over nodes k of
    grad(alpha_k) * (act(alpha_k+1) - act(alpha_k)): the target's gradient at each node times the
    change of the layer to the next node, from the chunks of a walk. Each node's rows need the previous node's, so the last ``n`` rows
    carry over between chunks."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.total: Optional[torch.Tensor] = None
        self.layout: Optional[Layout] = None
        self._carry: Optional[Tuple[torch.Tensor, torch.Tensor]] = None  # (act, grad) of the latest n rows

    def __call__(self, step: Step) -> None:
        n = self.n
        act, grad = step.act, step.grad
        if self._carry is not None:
            act, grad = torch.cat([self._carry[0], act]), torch.cat([self._carry[1], grad])
        held = act.shape[0] - len(step.rows)  # rows carried over, just before this chunk
        local = torch.arange(held, act.shape[0])
        row = local + int(step.rows[0]) - held
        new, old = local[row >= n], local[row >= n] - n  # rows from node 1 on, and their previous node's rows
        if self.total is None:
            self.total = act.new_zeros((n, *act.shape[1:]))
        if len(new):
            self.total.index_add_(0, (row[row >= n] % n).to(act.device), grad[old] * (act[new] - act[old]))
        self._carry = (act[-n:], grad[-n:])
        self.layout = step.layout


def _layer_name(c: Prepared, layer: Optional[UnitLike], layer_input: bool) -> str:
    module = c.loaded.module
    return default_layer(module, c.xs, c.extra, layer_input) if layer is None else as_unit(module, layer).layer


def _check_map(reduce: object, interpolate: Union[bool, str]) -> None:
    if reduce not in REDUCTIONS:
        raise InputError(f"reduce must be 'sum' (a map over the layer's grid) or None (the layer's per-unit "
                         f"values); got {reduce!r}")
    interpolation_mode(interpolate)


def _layer_result(c: Prepared, values: torch.Tensor, layout: Layout, layer: str, method: str, reduce: Optional[str],
                  interpolate: Union[bool, str], layer_input: bool, delta: Optional[torch.Tensor],
                  extra: Dict[str, Any]) -> Attribution:
    """The Attribution of a layer method, drawn on the first image input as the CAMs are: the
    per-unit ``values`` as they are (``reduce=None``), or summed over channels on the layer's grid
    and resized to the input."""
    drawn = next((i for i, x in enumerate(c.xs) if x.dim() == 4), 0)
    mode = None
    if reduce is not None:
        grid = layout.grid_view(values)
        if grid is None:
            raise NetloupeError(f"layer {layer!r} has {'input' if layer_input else 'output'} shape "
                                f"{tuple(values.shape)} (layout {layout}), no spatial grid to draw a map on; pass "
                                "reduce=None for its per-unit values, choose a layer with a grid, or give its "
                                "layout: load_model(model, layouts={name: ...})")
        values = grid.sum(1, keepdim=True)
        mode = interpolation_mode(interpolate)
        if mode is not None:
            if c.xs[drawn].dim() != 4:
                raise InputError("there is no image input [N, C, H, W] to resize the map to; pass interpolate=False")
            values = upsample(values, c.xs[drawn].shape[2:], mode)
    info = {"layer": layer, "layer_input": layer_input, "reduce": reduce, "interpolate": mode, "input": drawn, **extra}
    return Attribution(values, method, c.target.describe(), c.xs[drawn].detach(), c.loaded.preprocess, delta=delta,
                       extra=info)


_LAYER_OPTIONS = """

    ``layer`` defaults to the CAM layer (the last one with a spatial output); ``layer_input=True``
    explains what goes into the layer instead, through that layer (captum's attribute_to_layer_input
    differentiates the tensor itself: where it also feeds other layers, as a residual block's input
    does, captum's counts those paths too). The map (what the contact sheet shows) sums the units
    over channels on the layer's grid (prefix tokens left out) and ``interpolate`` resizes it to
    the input (True or "bilinear", "nearest", or False);
    ``reduce=None`` keeps the per-unit values in the layer's own shape ([N, C, h, w] for a conv
    layer, [N, T, D] for tokens), exactly captum's, and ``interpolate`` does not apply. quadrature:
    a fixed rule (captum's names); ``batch_size``: path points per forward pass (default: 8 on CPU,
    64 on GPU). A module the model calls more than once is read at its latest call."""


@register(quick={"steps": 3}, rank=85)
def layer_conductance(model: ModelLike, inputs: MethodInputs, target: TargetLike = "top", *,
                      layer: Optional[UnitLike] = None, baseline: Baseline = 0, steps: int = 50,
                      quadrature: str = "gausslegendre", batch_size: Optional[int] = None,
                      interpolate: Union[bool, str] = True, reduce: Optional[str] = "sum", layer_input: bool = False,
                      seed: Optional[int] = None, forward_args: object = None) -> Attribution:
    """How much of the change of the target score from baseline to input flows through each unit
    of ``layer`` (Dhamdhere et al. 2018): along the path, the score's gradient at the unit times
    the unit's change, summed over ``steps + 1`` nodes as captum does (consecutive nodes
    differenced). Conductances add up to f(x) - f(baseline): ``result.delta`` is the gap per
    sample (captum's convergence delta), small when the rule's nodes reach both ends
    (riemann_trapezoid) and ``steps`` is large."""
    alphas, _ = path_rule("layer_conductance", steps, quadrature, extra_node=True)
    _check_map(reduce, interpolate)
    c = prepare(model, inputs, target, forward_args)
    bases = make_baselines(c.xs, baseline, seed)
    name = _layer_name(c, layer, layer_input)
    bs = pick_batch_size(batch_size, c.xs[0].device, "integrated_gradients")
    acc = Conductance(c.n)
    walk(c, bases, name, alphas, bs, acc, layer_input)
    assert acc.total is not None and acc.layout is not None  # steps >= 1: the walk ran
    f = target_scores(c.loaded.module, tuple(torch.cat([x, b]) for x, b in zip(c.xs, bases)), c.target,
                      torch.arange(c.n).repeat(2), batch_size=bs, extra=c.extra)
    gap = f[:c.n] - f[c.n:]
    delta = acc.total.flatten(1).sum(1) - gap.to(acc.total)
    return _layer_result(c, acc.total, acc.layout, name, "layer_conductance", reduce, interpolate, layer_input,
                         delta.detach(), {"baseline": unpack(bases, c.several), "steps": steps,
                                          "quadrature": quadrature, "gap": gap})


@register(quick={"steps": 3}, rank=86)
def internal_influence(model: ModelLike, inputs: MethodInputs, target: TargetLike = "top", *,
                       layer: Optional[UnitLike] = None, baseline: Baseline = 0, steps: int = 50,
                       quadrature: str = "gausslegendre", batch_size: Optional[int] = None,
                       interpolate: Union[bool, str] = True, reduce: Optional[str] = "sum", layer_input: bool = False,
                       seed: Optional[int] = None, forward_args: object = None) -> Attribution:
    """The path integral of the target score's gradient with respect to each unit of ``layer``,
    from baseline to input (Leino et al. 2018): integrated gradients at a hidden layer, not
    multiplied by any change, so it has no completeness gap. The rules are integrated gradients'
    (our trapezoid's weights sum to 1, captum's to (steps-1)/steps)."""
    alphas, weights = path_rule("internal_influence", steps, quadrature)
    _check_map(reduce, interpolate)
    c = prepare(model, inputs, target, forward_args)
    bases = make_baselines(c.xs, baseline, seed)
    name = _layer_name(c, layer, layer_input)
    found: Dict[str, Any] = {}

    def visit(step: Step) -> None:
        if "total" not in found:
            found["total"] = step.grad.new_zeros((c.n, *step.grad.shape[1:]))
        found["total"].index_add_(0, step.samples.to(step.grad.device), step.grad * _along(weights[step.k], step.grad))
        found["layout"] = step.layout

    walk(c, bases, name, alphas, pick_batch_size(batch_size, c.xs[0].device, "integrated_gradients"), visit,
         layer_input)
    return _layer_result(c, found["total"], found["layout"], name, "internal_influence", reduce, interpolate,
                         layer_input, None, {"baseline": unpack(bases, c.several), "steps": steps,
                                             "quadrature": quadrature})


for _method in (layer_conductance, internal_influence):  # the options both layer methods share
    _method.__doc__ = (_method.__doc__ or "") + _LAYER_OPTIONS
del _method


def unit_flow(units: Sequence[Unit]) -> Flow:
    """The flow of the target's gradient into each sample's unit: the sum over the unit's neurons
    of (gradient, held fixed) times activation, whose input gradient is the chain rule through
    those neurons alone."""
    def flow(act: torch.Tensor, grad: torch.Tensor, layout: Layout, samples: torch.Tensor) -> torch.Tensor:
        weighted = grad * act
        picks: Dict[Unit, List[int]] = {}
        for row, s in enumerate(samples.tolist()):
            picks.setdefault(units[s], []).append(row)
        if len(picks) == 1:
            return next(iter(picks)).part(weighted, layout).sum()
        return torch.stack([u.part(weighted[rows], layout).sum() for u, rows in picks.items()]).sum()
    return flow


def top_channels(c: Prepared, bases: Tensors, layer: str, batch_size: int) -> List[Unit]:
    """Per sample, the channel of ``layer`` that carries most of the score by a one-step estimate of
    its conductance: the target's gradient at the input times the change of the channel's
    activations from the baseline, summed over its positions."""
    n, found = c.n, []

    def visit(step: Step) -> None:
        found.append(step)

    walk(c, bases, layer, torch.tensor([0.0, 1.0], dtype=torch.float64), batch_size, visit)
    act, grad = torch.cat([s.act for s in found]), torch.cat([s.grad for s in found])
    estimate = found[-1].layout.positions(grad[n:] * (act[n:] - act[:n])).sum(2)  # [n, C]
    return [Unit(layer, int(ch)) for ch in estimate.argmax(1).tolist()]


@register(quick={"steps": 3}, rank=58, caption="neuron_conductance (top channel)")
def neuron_conductance(model: ModelLike, inputs: MethodInputs, target: TargetLike = "top", *,
                       unit: Optional[UnitLike] = None, baseline: Baseline = 0, steps: int = 50,
                       quadrature: str = "gausslegendre", batch_size: Optional[int] = None,
                       seed: Optional[int] = None, forward_args: object = None) -> Attribution:
    """How much of the target score flows from each input feature through one ``unit`` (Dhamdhere et
    al. 2018; captum's NeuronConductance): (x - baseline) times the path integral of the score's
    gradient at the unit times the unit's gradient with respect to the input. A neuron
    ("layer:C@y,x", "layer:C@cls") is captum's with that index; a channel ("layer:C") is the sum
    of its neurons' conductances (over its grid, prefix tokens left out: what flows through the
    channel; captum cannot aggregate neurons here). unit=None takes, per sample, the channel of
    the CAM layer with the largest one-step estimate of its conductance (``extra["units"]`` names
    them). An input the unit does not depend on gets zeros. The rules are integrated gradients'
    (see ``quadrature`` there); ``batch_size``: path points per forward pass."""
    alphas, weights = path_rule("neuron_conductance", steps, quadrature)
    c = prepare(model, inputs, target, forward_args)
    module = c.loaded.module
    bases = make_baselines(c.xs, baseline, seed)
    bs = pick_batch_size(batch_size, c.xs[0].device, "integrated_gradients")
    if unit is None:
        units = top_channels(c, bases, default_layer(module, c.xs, c.extra), bs)
    else:
        one = as_unit(module, unit)
        if one.channel is None:
            raise InputError(f"neuron_conductance explains the flow through a channel or one neuron; got the whole layer "
                             f"{one.layer!r}: write '{one.layer}:C' (channel C) or '{one.layer}:C@y,x' (one neuron)")
        units = [one] * c.n
    totals: List[Optional[torch.Tensor]] = [None] * len(c.xs)

    def visit(step: Step) -> None:
        for i, g in enumerate(step.input_grads or ()):
            if g is not None:
                t = totals[i]
                if t is None:
                    t = totals[i] = torch.zeros_like(c.xs[i])
                t.index_add_(0, step.samples.to(g.device), g * _along(weights[step.k], g))

    walk(c, bases, units[0].layer, alphas, bs, visit, flow=unit_flow(units))
    values = tuple((x - b) * (torch.zeros_like(x) if t is None else t) for x, b, t in zip(c.xs, bases, totals))
    return c.result(values, "neuron_conductance", extra={"units": [str(u) for u in units], "layer": units[0].layer,
                                                         "baseline": unpack(bases, c.several), "steps": steps,
                                                         "quadrature": quadrature})
