"""What an attribution method feeds the model: one input or a tuple of several, plus extra
forward arguments that follow their sample whenever a method re-batches."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional, Sequence, Tuple, TypeVar, Union

import torch
import torch.nn as nn

from ..errors import InputError
from ..images import input_tensor
from ..models import Inputs, LoadedModel, forward

_T = TypeVar("_T")

Tensors = Tuple[torch.Tensor, ...]
#: what a method takes as ``inputs``: one input (anything the model's Preprocess takes, or a batch
#: tensor), or a tuple with one per model input
MethodInputs = Union[Inputs, Tuple[Inputs, ...]]


@dataclass(frozen=True)
class ForwardArgs:
    """Extra arguments of every model call after the inputs: positional ``args`` and keyword
    ``kwargs``, for a batch of ``n`` samples. A tensor whose first dimension is ``n`` is taken
    as per-sample and follows its sample when rows are re-batched; anything else passes as is."""

    args: Tuple[Any, ...] = ()
    kwargs: Optional[Dict[str, Any]] = None
    n: int = 0

    @classmethod
    def of(cls, value: object, n: int) -> "ForwardArgs":
        """A user's ``forward_args``: None, a tuple (positional), a dict (keywords), or one value."""
        if isinstance(value, ForwardArgs):
            return value
        if value is None:
            return cls((), None, n)
        if isinstance(value, dict):
            return cls((), dict(value), n)
        return cls(tuple(value) if isinstance(value, tuple) else (value,), None, n)

    def take(self, rows: torch.Tensor) -> "ForwardArgs":
        """The arguments for a batch whose row i belongs to sample ``rows[i]``."""
        if not self.args and not self.kwargs:
            return ForwardArgs((), None, len(rows))
        pick = lambda v: v[rows.to(v.device)] if self._per_sample(v) else v  # noqa: E731
        return ForwardArgs(tuple(pick(a) for a in self.args),
                           None if self.kwargs is None else {k: pick(v) for k, v in self.kwargs.items()}, len(rows))

    def _per_sample(self, v: object) -> bool:
        return isinstance(v, torch.Tensor) and v.dim() > 0 and v.shape[0] == self.n

    def call(self, module: nn.Module, xs: Sequence[torch.Tensor]) -> Any:
        """The model's output on inputs ``xs`` with these arguments."""
        return forward(module, tuple(xs) + self.args, self.kwargs)


def as_tensors(values: Union[Optional[torch.Tensor], Tuple[Optional[torch.Tensor], ...]]
               ) -> Tuple[Optional[torch.Tensor], ...]:
    """A single tensor (or None) as a one-element tuple; a tuple as is."""
    return values if isinstance(values, tuple) else (values,)


def model_inputs(loaded: LoadedModel, inputs: MethodInputs) -> Tuple[Tensors, bool]:
    """The inputs as a tuple of batches on the model's device, and whether there were several.

    One input: anything the model's Preprocess takes (paths, PIL images, arrays, lists of them,
    tensors; a [C, H, W] tensor is one image). A tuple: one item per model input, each a batch
    tensor taken as is ([N, ...], any shape) or images for the Preprocess; all with one N."""
    if not isinstance(inputs, tuple):
        return (loaded.inputs(inputs),), False
    if not inputs:
        raise InputError("got an empty tuple of inputs; give one tensor (or images) per model input")
    xs = tuple(input_tensor(x, loaded.device, loaded.dtype) if isinstance(x, torch.Tensor) else loaded.inputs(x)
               for x in inputs)
    sizes = [x.shape[0] for x in xs]
    if len(set(sizes)) > 1:
        raise InputError(f"the inputs hold different numbers of samples {sizes}; a tuple holds one batch per model "
                         "input, all of one size (for a batch of images, pass a list)")
    return xs, True


def per_input(value: Any, count: int, name: str) -> Tuple[Any, ...]:
    """A setting given once for every input, or as a tuple with one entry per input."""
    if count == 1:
        return (value,)
    if isinstance(value, tuple):
        if len(value) != count:
            raise InputError(f"{name} has {len(value)} entries for {count} inputs; give one per input, or one "
                             "value for all")
        return value
    return (value,) * count


def unpack(values: Tuple[_T, ...], several: bool) -> Union[_T, Tuple[_T, ...]]:
    """What a method returns per input: a tuple for several inputs, the tensor for one."""
    return values if several else values[0]
