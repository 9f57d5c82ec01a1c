"""What a module gives back may be a tensor, or a tuple, list, named tuple or dict holding
tensors (a detector's boxes and scores, a segmentation model's {"out": ...}): these find the
tensors in it, in one place for every method."""

from __future__ import annotations

from typing import Any, Callable, Iterator, Optional, Tuple

import torch

#: puts a replacement tensor back where :func:`first_tensor` found the first one
Put = Callable[[torch.Tensor], Any]


def first_tensor(output: Any) -> Tuple[Optional[torch.Tensor], Optional[Put]]:
    """The first tensor in a module output (or arguments) and a function that puts a replacement
    back; (None, None) when there is none."""
    if isinstance(output, torch.Tensor):
        return output, lambda t: t
    if isinstance(output, (tuple, list)):
        for i, item in enumerate(output):
            if isinstance(item, torch.Tensor):
                def put_at(t: torch.Tensor, i: int = i) -> Any:
                    items = list(output)
                    items[i] = t
                    if isinstance(output, list):
                        return items
                    return type(output)(*items) if hasattr(output, "_fields") else tuple(items)
                return item, put_at
    if isinstance(output, dict):
        for k, item in output.items():
            if isinstance(item, torch.Tensor):
                def put_key(t: torch.Tensor, k: Any = k) -> Any:
                    new = type(output)(output)
                    new[k] = t
                    return new
                return item, put_key
    return None, None


def tensors(output: Any) -> Iterator[torch.Tensor]:
    """Every tensor in a (nested) model output."""
    if isinstance(output, torch.Tensor):
        yield output
    elif isinstance(output, (tuple, list)):
        for item in output:
            yield from tensors(item)
    elif isinstance(output, dict):
        for item in output.values():
            yield from tensors(item)
