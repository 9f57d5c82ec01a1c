"""How repeated work runs: batch sizes that suit the device, seeded randomness, progress bars."""

from __future__ import annotations

import contextlib
import contextvars
import weakref
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence, Sized, Tuple, TypeVar, Union, cast

import torch
from tqdm.auto import tqdm

from .errors import NetloupeError

#: what torch.device accepts: a device, its name ("cuda:0") or a CUDA index
DeviceLike = Union[torch.device, str, int]
#: ``listener(desc, done, total)``, told how far a progress bar is (see :func:`reporting`)
Listener = Callable[[str, int, Optional[int]], None]

#: ``batch_size=None``: how many items each kind of repeated work puts through one forward pass,
#: (on the CPU, on a GPU). On the CPU small chunks run faster (less memory traffic; two render
#: batches of 8 beat one of 16 by 1.3x, benchmarks/optvis.py), a GPU keeps busy with many more.
BATCH_SIZES = {
    "integrated_gradients": (8, 64),  # path points
    "smoothgrad": (8, 64),  # noisy copies
    "deeplift": (8, 64),  # (input, reference) pairs, two rows each
    "gradient_shap": (8, 64),  # points between inputs and drawn baselines
    "occlusion": (16, 256),  # occluded copies
    "metrics": (16, 128),  # deletion / insertion steps
    "render": (8, 64),  # images optimized together
    "dropout": (8, 64),  # dropout samples matched together
    "scan": (32, 128),  # images
}


def batch_size(requested: Optional[int], device: DeviceLike, work: str) -> int:
    """The user's batch size, or the default for this kind of ``work`` (a key of BATCH_SIZES)
    on ``device``."""
    if requested is not None:
        if not isinstance(requested, int) or isinstance(requested, bool) or requested < 1:
            raise NetloupeError(f"batch_size must be a positive integer or None; got {requested!r}")
        return requested
    cpu, gpu = BATCH_SIZES[work]
    return gpu if torch.device(device).type == "cuda" else cpu


def distributed(device: DeviceLike) -> Tuple[int, int, bool]:
    """(rank, world size, whether this call started the process group). Under torchrun
    (WORLD_SIZE > 1) a group is started if the caller has not, gloo on CPU and NCCL on GPU;
    whoever started it ends it (torch.distributed.destroy_process_group)."""
    import os

    import torch.distributed as dist

    if not dist.is_available():
        return 0, 1, False
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), False
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        dist.init_process_group("nccl" if torch.device(device).type == "cuda" else "gloo")
        return dist.get_rank(), dist.get_world_size(), True
    return 0, 1, False


PRECISIONS = ("auto", "float32", "bfloat16")


def check_precision(precision: object) -> None:
    if precision not in PRECISIONS:
        raise NetloupeError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")


def autocast(precision: str, device: DeviceLike) -> contextlib.AbstractContextManager[Any]:
    """The forward passes' precision: "auto" is bfloat16 autocast on a GPU that supports it
    (about twice the throughput; activations agree to about 1e-2) and float32 elsewhere;
    "bfloat16" asks for it on any device (the CPU included), "float32" never uses it."""
    check_precision(precision)
    kind = torch.device(device).type
    use = precision == "bfloat16" or (precision == "auto" and kind == "cuda" and torch.cuda.is_bf16_supported())
    return torch.autocast(kind, dtype=torch.bfloat16) if use else contextlib.nullcontext()


#: models whose forward refused a channels_last batch (a ``.view`` of a conv output): they get batches as given
_CONTIGUOUS_ONLY: "weakref.WeakSet[torch.nn.Module]" = weakref.WeakSet()
_R = TypeVar("_R")


def _fast_layout(x: torch.Tensor, min_rows: int) -> bool:
    return x.dim() == 4 and x.dtype == torch.float32 and x.device.type == "cpu" and x.shape[0] >= min_rows


def channels_last(module: torch.nn.Module, run: Callable[[Tuple[torch.Tensor, ...]], _R],
                  xs: Sequence[torch.Tensor], min_rows: int = 1) -> _R:
    """``run(xs)`` with float32 image batches (of ``min_rows`` or more) on the CPU in channels_last,
    which oneDNN's convolutions run 1.3-1.75x faster per row, forward and backward
    (benchmarks/RESULTS.md). A model whose forward cannot take that layout (a ``.view`` of a conv
    output) is remembered, weakly, and gets its batches as given from then on."""
    xs = tuple(xs)
    if module in _CONTIGUOUS_ONLY or not any(_fast_layout(x, min_rows) for x in xs):
        return run(xs)
    try:
        return run(tuple(x.contiguous(memory_format=torch.channels_last) if _fast_layout(x, min_rows) else x
                         for x in xs))
    except (RuntimeError, TypeError, AssertionError):  # what a forward that assumes its layout raises
        _CONTIGUOUS_ONLY.add(module)
        return run(xs)


def chunks(total: int, size: int) -> Iterator[slice]:
    """Slices that cover range(total) in pieces of at most ``size``."""
    for start in range(0, total, size):
        yield slice(start, min(start + size, total))


def generator(seed: Optional[int], device: DeviceLike) -> Optional[torch.Generator]:
    """A generator on ``device`` seeded with ``seed`` (None: the global RNG is used)."""
    if seed is None:
        return None
    g = torch.Generator(device=torch.device(device))
    g.manual_seed(int(seed))
    return g


def progress(iterable: Optional[Iterable[Any]], total: Optional[int] = None, desc: Optional[str] = None,
             enabled: bool = True) -> tqdm:
    """A tqdm bar over ``iterable``; ``enabled=False`` (the ``progress=False`` knob) silences it.
    Inside :func:`reporting`, the bar reports to its listener instead of the terminal."""
    listener = _listener.get()
    if listener is None:
        return tqdm(iterable, total=total, desc=desc, disable=not enabled, leave=False, dynamic_ncols=True)
    return _Reported(iterable, total=total, desc=desc, disable=True, listener=listener)


_listener: contextvars.ContextVar[Optional[Listener]] = contextvars.ContextVar("netloupe_progress", default=None)


@contextlib.contextmanager
def reporting(listener: Listener) -> Iterator[None]:
    """While active (in this thread), every progress bar calls ``listener(desc, done, total)``
    as it advances, instead of drawing itself: how a server shows the progress of its work."""
    token = _listener.set(listener)
    try:
        yield
    finally:
        _listener.reset(token)


class _Reported(tqdm):
    """A silent bar that tells a listener how far it is, for loops and for ``update()`` alike."""

    def __init__(self, iterable: Optional[Iterable[Any]] = None, *, total: Optional[int] = None,
                 desc: Optional[str] = None, listener: Listener, **kw: Any) -> None:
        if total is None and hasattr(iterable, "__len__"):
            total = len(cast(Sized, iterable))
        self._listener, self._done, self._desc, self._total = listener, 0, desc or "", total
        super().__init__(iterable, total=total, desc=desc, **kw)

    def __iter__(self) -> Iterator[Any]:
        for item in super().__iter__():
            yield item
            self.update(1)

    def update(self, n: int = 1) -> Optional[bool]:
        self._done += n
        self._listener(self._desc, self._done, self._total)
        return super().update(n)
