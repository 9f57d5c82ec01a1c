"""What a module gives back may be a tensor, or a tuple, list, named tuple or dict holding
tensors (a detector's boxes and scores, a segmentation model's {"out": ...}): these find the
tensors in it, in one place for every method."""

from __future__ import annotations

import torch


def first_tensor(output):
    """The first tensor in a module output (or arguments) and a function that puts a replacement
    back; (None, None) when there is none."""
    if isinstance(output, torch.Tensor):
        return output, lambda t: t
    if isinstance(output, (tuple, list)):
        for i, item in enumerate(output):
            if isinstance(item, torch.Tensor):
                def put(t, i=i):
                    items = list(output)
                    items[i] = t
                    if isinstance(output, list):
                        return items
                    return type(output)(*items) if hasattr(output, "_fields") else tuple(items)
                return item, put
    if isinstance(output, dict):
        for k, item in output.items():
            if isinstance(item, torch.Tensor):
                def put(t, k=k):
                    new = type(output)(output)
                    new[k] = t
                    return new
                return item, put
    return None, None


def tensors(output):
    """Every tensor in a (nested) model output."""
    if isinstance(output, torch.Tensor):
        yield output
    elif isinstance(output, (tuple, list)):
        for item in output:
            yield from tensors(item)
    elif isinstance(output, dict):
        for item in output.values():
            yield from tensors(item)
