"""DeepLIFT's rescale rule (Shrikumar et al. 2017): through each nonlinearity, the gradient is
replaced by the multiplier (f(x) - f(x')) / (x - x') between an input x and its reference x'.

The batch holds the inputs in its first half and their references in its second (as captum
runs DeepLIFT), so each nonlinearity sees both. Every call site is changed: nn modules,
functional calls, tensor methods, reused and in-place activations; elementwise nonlinearities
(the ReLU family, ReLU6, SiLU, GELU, sigmoid, tanh, ELU, softplus, hard-swish, ...) and max pools
(captum's rule for them). Linear parts (convolutions, sums, products, normalization, softmax)
keep their gradient, as in captum."""

from __future__ import annotations

import inspect
from typing import Any, Callable, Dict, Optional, Tuple

import torch
import torch.nn.functional as F

from . import Rule, register

#: where |x - x'| is below this, the ordinary gradient is used (captum's default)
EPS = 1e-10


def _elementwise() -> Tuple[Callable[..., Any], ...]:
    names = ("relu", "relu6", "hardtanh", "elu", "leaky_relu", "silu", "gelu", "sigmoid", "tanh", "softplus",
             "hardswish", "hardsigmoid", "mish", "selu", "celu")
    found = [getattr(F, n) for n in names if hasattr(F, n)]
    found += [getattr(torch, n) for n in ("relu", "relu_", "sigmoid", "tanh", "selu", "celu") if hasattr(torch, n)]
    found += [getattr(torch.Tensor, n) for n in ("relu", "relu_", "sigmoid", "sigmoid_", "tanh", "tanh_")]
    return tuple(found)


ELEMENTWISE = _elementwise()
MAX_POOLS = (F.max_pool1d, F.max_pool2d, F.max_pool3d)
# in-place tensor methods and their out-of-place twins: the rule returns a new tensor
_OUT_OF_PLACE = {torch.Tensor.relu_: torch.relu, torch.Tensor.sigmoid_: torch.sigmoid,
                 torch.Tensor.tanh_: torch.tanh, torch.relu_: torch.relu}


def _halves(t: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    n = t.shape[0] // 2
    return t[:n], t[n:]


def _both(t: torch.Tensor) -> torch.Tensor:
    """A per-pair tensor for both halves of the batch."""
    return torch.cat([t, t])


def out_of_place(func: Callable[..., Any], args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Callable[[torch.Tensor], torch.Tensor]:
    """``func`` as a function of its first argument, never in place."""
    func = _OUT_OF_PLACE.get(func, func)
    try:
        bound = inspect.signature(func).bind(None, *args[1:], **kwargs)
    except (TypeError, ValueError):  # a builtin without a signature: no inplace argument
        return lambda t: func(t, *args[1:], **kwargs)
    if "inplace" in bound.arguments:
        bound.arguments["inplace"] = False
    rest, named = bound.args[1:], bound.kwargs
    return lambda t: func(t, *rest, **named)


def _gradient(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """The ordinary gradient of ``f`` at ``x`` (the probe's replacements switched off)."""
    with torch.enable_grad(), torch._C.DisableTorchFunction():
        xx = x.detach().requires_grad_(True)
        return torch.autograd.grad(f(xx), xx, g)[0]


class _RescaleFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, f: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        y = f(x)
        ctx.save_for_backward(x, y)
        ctx.f = f
        return y

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> Tuple[torch.Tensor, None]:
        x, y = ctx.saved_tensors
        x0, x1 = _halves(x)
        y0, y1 = _halves(y)
        dx, dy = _both(x0 - x1), _both(y0 - y1)
        return torch.where(dx.abs() < EPS, _gradient(ctx.f, x, g), g * dy / dx), None


class _MaxPoolFunction(torch.autograd.Function):
    """Captum's max-pool multiplier: each window's change of max, routed to the position that is
    the max for the input or for the reference, over that position's change. Routed as the max's
    gradient routes (a position that is the max of two overlapping windows gets both; captum's
    unpooling keeps one, so its sums fall short on overlapping pools such as ResNet's stem)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, pool: Callable[..., Any], kw: Dict[str, Any]) -> torch.Tensor:
        y = pool(x, **kw)
        ctx.save_for_backward(x, y)
        ctx.pool, ctx.kw = pool, kw
        return y

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> Tuple[Optional[torch.Tensor], None, None]:
        x, y = ctx.saved_tensors
        x0, x1 = _halves(x)
        y0, y1 = _halves(y)
        top = torch.max(y0, y1)

        def pool(t: torch.Tensor) -> torch.Tensor:
            return ctx.pool(t, **ctx.kw)

        m0, m1 = _halves(_gradient(pool, x, g * torch.cat([top - y1, y0 - top])))
        dx = _both(x0 - x1)
        return torch.where(dx.abs() < EPS, _gradient(pool, x, g), _both(m0 + m1) / dx), None, None


def _pool_arguments(args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Dict[str, Any]:
    names = ("kernel_size", "stride", "padding", "dilation", "ceil_mode")
    return dict(zip(names, args[1:]), **{k: v for k, v in kwargs.items() if k in names})


@register
class Rescale(Rule):
    """DeepLIFT's rescale rule over a batch of inputs followed by their references."""

    name = "rescale"

    def function_hook(self, func: Callable[..., Any]) -> Optional[Callable[..., Any]]:
        if func in MAX_POOLS:
            def pooled(*args: Any, **kwargs: Any) -> Any:
                if kwargs.get("return_indices") or (len(args) > 6 and args[6]):
                    return func(*args, **kwargs)  # a caller that takes the indices keeps the gradient
                return _MaxPoolFunction.apply(args[0], func, _pool_arguments(args, kwargs))
            return pooled
        if func in ELEMENTWISE:
            def rescaled(*args: Any, **kwargs: Any) -> Any:
                return _RescaleFunction.apply(args[0], out_of_place(func, args, kwargs))
            return rescaled
        return None
