"""Dropout as data augmentation (Bouthillier, Konda, Vincent & Memisevic 2015, arXiv 1506.08700).

For an input x and a layer L, dropout turns L's output h into random h~_1..h~_n. Each h~_i is
the output, without dropout, of some input x~_i near x; x~_i - x is the augmentation that
dropout performs in input space. ``augment`` draws the h~_i (dropout on, BatchNorm in eval, via
``probe(stochastic=True)``) and then, with the whole model in eval mode, moves copies of x until
L's output matches each h~_i. ``sweep`` repeats this over dropout rates.

What makes it converge in fewer model passes than dropviz's loop: every sample has its own
loss, step size and stopping test (a sample that reaches its tolerance is frozen and leaves the
batch), the optimizer is L-BFGS per sample (Adam, with a step size that halves whenever its
sample's loss rises, is the alternative), and the first step is a fixed fraction of the valid
input range. benchmarks/dropout_bound.py shows how close that comes to the best any method could do.
"""

from __future__ import annotations

import argparse
import copy
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Optional, Sequence, Tuple, cast

import torch
import torch.nn as nn
from PIL import Image

from . import images as _images
from .errors import InputError, NetloupeError
from .images import Picture, Preprocess
from .models import Inputs, ModelLike, as_loaded, forward
from .outputs import first_tensor
from .probe import Probe, probe
from .runtime import batch_size as _batch_size
from .runtime import chunks
from .runtime import progress as _progress
from .units import Unit, UnitLike, as_unit
from .verbs import IMAGES, Arg, Option, image_paths, model_of, verb

if TYPE_CHECKING:
    from matplotlib.axes import Axes

OPTIMIZERS = ("lbfgs", "adam")
#: ``loss_tolerance=None``: a sample has converged once its MSE is at most this fraction of its
#: starting MSE (the MSE between L's output on x and the dropout sample h~).
TOLERANCE_FRACTION = 0.05
#: ``lr=None``: this fraction of the valid input range (1 / std of the model's normalization,
#: 2.0 for inputs in [-1, 1]): Adam's step size, and the largest pixel change of L-BFGS's first step.
LR_FRACTION = 0.01
_BETAS, _EPS = (0.9, 0.999), 1e-8
#: L-BFGS's largest pixel change per step, in units of lr: on the default model its steps stay
#: below 1.2 lr; a random-weight VGG takes longer ones (a cap of 2 cost it a third more passes).
_LBFGS_MAX_STEP = 4.0


@dataclass
class DropoutAugmentation(Picture):
    """What dropout does to B inputs in input space, n samples each.

    images [B, n, C, H, W] are the x~ in model input space, inputs [B, C, H, W] the x;
    original_output [B, ...] is the model's eval output on x, augmented_output [B, n, ...] its
    eval output on x~, target_output [B, n, ...] its output in the dropout pass that drew the
    targets [B, n, ...] (L's output h~). loss [B, n] is the final MSE between L's output on x~
    and h~ (measured at the returned x~), tolerance [B, n] what it had to reach, steps [B, n]
    the optimizer steps each sample took and passes the per-image model passes spent in all.
    Unpacks as dropviz's result: ``images, (original_output, augmented_output) = result``.
    """

    images: torch.Tensor
    inputs: torch.Tensor
    original_output: Optional[torch.Tensor]
    augmented_output: Optional[torch.Tensor]
    target_output: Optional[torch.Tensor]
    targets: torch.Tensor
    loss: torch.Tensor
    tolerance: torch.Tensor
    steps: torch.Tensor
    converged: torch.Tensor
    passes: int
    layer: str
    lr: float
    optimizer: str
    seed: Optional[int]
    preprocess: Preprocess

    def __iter__(self) -> Iterator[Any]:  # the images, then the pair of outputs
        yield self.images
        yield (self.original_output, self.augmented_output)

    @property
    def difference(self) -> torch.Tensor:
        """x~ - x in [0, 1] pixel units, [B, n, C, H, W]."""
        std = torch.as_tensor(self.preprocess.std, dtype=self.images.dtype, device=self.images.device)
        return (self.images - self.inputs[:, None]) * std.view(1, 1, -1, 1, 1)

    @property
    def strength(self) -> torch.Tensor:
        """Mean |x~ - x| per sample in [0, 1] pixel units, [B, n]."""
        return self.difference.abs().flatten(2).mean(2)

    def to_pil(self, index: Optional[int] = None, cell: int = 128, amplify: Optional[float] = None) -> Image.Image:
        """The grid: per input (input ``index`` alone, or every input), a row with x and its n
        augmentations x~, and under it a row with the differences x~ - x shown around grey,
        amplified (by default so that the largest 1% of |x~ - x| of that input saturate)."""
        pics: List[torch.Tensor] = []
        captions: List[str] = []
        rgb = lambda t: self.preprocess.inverse(t[None])[0]  # noqa: E731
        diff = self.difference
        blank = torch.ones_like(self.inputs[0])
        for b in _images.shown(index, len(self.inputs)):
            gain = amplify
            if gain is None:
                top = diff[b].abs().flatten().float().quantile(0.99) if diff[b].numel() <= 2 ** 24 else diff[b].abs().max()
                gain = 0.5 / float(top) if top > 0 else 1.0
            pics.append(rgb(self.inputs[b]))
            captions.append("input x")
            for i in range(self.images.shape[1]):
                pics.append(rgb(self.images[b, i]))
                captions.append(f"x~{i + 1} loss {float(self.loss[b, i]):.2g}")
            pics.append(blank)
            captions.append(f"x~ - x, x{gain:.3g}")
            for i in range(self.images.shape[1]):
                pics.append((0.5 + gain * diff[b, i]).clamp(0, 1))
                captions.append(f"mean |x~-x| {float(self.strength[b, i]):.3f}")
        return _images.grid(pics, captions, ncol=self.images.shape[1] + 1, cell=cell)

    def grid(self, **kw: Any) -> Image.Image:
        """Same as ``to_pil``."""
        return self.to_pil(**kw)


def _output(out: Any) -> Optional[torch.Tensor]:
    """The model output's tensor (its first, for tuples and dicts), kept apart from the graph."""
    t, _ = first_tensor(out)
    return None if t is None else t.detach()


def _mse(a: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample mean squared error."""
    return (a.float() - target.float()).pow(2).reshape(len(a), -1).mean(1)


def _eval_pass(module: nn.Module, unit: Unit, x: torch.Tensor) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """L's output and the model's output on x, everything in eval mode."""
    with probe(module, [unit.layer], detach=True) as p, torch.no_grad():
        out = forward(module, (x,))
        if unit.layer not in p.activations:
            raise NetloupeError(f"layer {unit.layer!r} did not run (or gave no tensor) in the forward pass; "
                                "choose a layer the model calls")
        return unit.part(p.activations[unit.layer], p.layout(unit.layer)), _output(out)


def _dropout_pass(module: nn.Module, unit: Unit, x: torch.Tensor, n: int, seed: Optional[int]
                  ) -> Tuple[torch.Tensor, Optional[torch.Tensor], List[float]]:
    """n dropout samples of L's output per input ([B, n, ...]), dropout on and BatchNorm in eval.

    With a seed, each input's n masks come from a generator state seeded with ``seed`` alone,
    so that an input's result does not depend on the other inputs of the batch; the caller's
    global random state is left as it was.
    """
    acts: List[torch.Tensor] = []
    outs: List[Optional[torch.Tensor]] = []
    devices = [x.device] if x.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices, enabled=seed is not None), \
            probe(module, [unit.layer], stochastic=True, detach=True) as p, torch.no_grad():
        for xi in x:
            if seed is not None:
                torch.manual_seed(seed)
            out = module(xi.unsqueeze(0).repeat(n, *([1] * xi.dim())))
            acts.append(unit.part(p.activations[unit.layer], p.layout(unit.layer)))
            outs.append(_output(out))
        rates = p.dropout_rates
    target_output = torch.stack(cast(List[torch.Tensor], outs)) if all(o is not None for o in outs) else None
    return torch.stack(acts), target_output, rates


def _rate_settings(module: nn.Module) -> Iterator[Tuple[nn.Module, str]]:
    """(module, attribute) of every dropout rate a model declares: the ``p`` of dropout modules and
    the float ``drop_rate`` that timm and torchvision models pass to F.dropout."""
    for m in module.modules():
        if isinstance(m, nn.modules.dropout._DropoutNd):
            yield m, "p"
        elif isinstance(getattr(m, "drop_rate", None), float):
            yield m, "drop_rate"


def _check_reached(module: nn.Module, unit: Unit, clean: torch.Tensor, targets: torch.Tensor,
                   rates: Sequence[float]) -> None:
    """Raise if no dropout reaches L (its output is the same with dropout on), unless every
    dropout rate the model has is 0 (then each augmentation is the input itself)."""
    scale = float(clean.abs().max()) + 1e-12
    same = torch.allclose(targets.float(), clean.float()[:, None].expand_as(targets), rtol=1e-4, atol=1e-5 * scale)
    every = list(rates) + [getattr(m, a) for m, a in _rate_settings(module)]
    if not same or (every and max(every) == 0):
        return
    if not every:
        raise NetloupeError("the model has no dropout, so there is no augmentation to show; augment needs a model "
                            "with dropout (nn.Dropout or F.dropout) before the layer")
    raise NetloupeError(f"no dropout acts before layer {unit.layer!r}: its output is the same with dropout on; "
                        "choose a layer after a dropout (e.g. the classifier that follows it)")


def _valid_range(pre: Preprocess, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per-element bounds of the model input that an image in [0, 1] maps to, widened to hold x
    (a tensor input outside the image range is never pulled into it)."""
    lo = pre.normalize(torch.zeros_like(x[:1]))
    hi = pre.normalize(torch.ones_like(x[:1]))
    return torch.minimum(lo, x), torch.maximum(hi, x)


class _Fit:
    """Optimizes one chunk of samples, each on its own loss, step size and stopping test.

    Every sample's loss is divided by its starting value, so the summed objective has
    independent per-sample gradients of size ~1; a sample that stops is frozen where its loss
    was measured and leaves the batch (later passes run on the remaining samples only).
    """

    def __init__(self, module: nn.Module, unit: Unit, x0: torch.Tensor, target: torch.Tensor, start: torch.Tensor,
                 tol: torch.Tensor, lo: Optional[torch.Tensor], hi: Optional[torch.Tensor], lr: float, optimizer: str,
                 steps: int, bar: Any) -> None:
        self.module, self.unit, self.target, self.tol = module, unit, target, tol
        self.scale = start.clamp_min(1e-30)
        self.lo, self.hi, self.lr, self.optimizer = lo, hi, lr, optimizer
        self.max_steps, self.bar = steps, bar
        m = len(x0)
        self.x = x0.clone()
        self.loss = torch.full((m,), float("nan"), device=x0.device)
        self.steps = torch.zeros(m, dtype=torch.long)
        self.converged = torch.zeros(m, dtype=torch.bool)
        self.output: Optional[torch.Tensor] = None
        self.passes = 0
        self._p: Probe  # while run() runs

    def run(self) -> _Fit:
        with probe(self.module, [self.unit.layer]) as p:
            self._p = p
            (self._adam if self.optimizer == "adam" else self._lbfgs)()
        del self._p
        return self

    def _evaluate(self, xa: torch.Tensor, idx: torch.Tensor
                  ) -> Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
        """One pass (forward + backward) over the samples ``idx`` at ``xa``: their MSE, the
        gradient of their scaled MSE and the model's output."""
        xa = xa.detach().requires_grad_(True)
        out = self.module(xa)
        self.passes += len(idx)
        loss = _mse(self.unit.part(self._p.activations[self.unit.layer], self._p.layout(self.unit.layer)), self.target[idx])
        (grad,) = torch.autograd.grad((loss / self.scale[idx]).sum(), xa)
        return loss.detach(), grad, _output(out)

    def _clamp(self, x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        return x if self.lo is None or self.hi is None else torch.maximum(torch.minimum(x, self.hi[idx]), self.lo[idx])

    def _finish(self, idx: torch.Tensor, x: torch.Tensor, loss: torch.Tensor, out: Optional[torch.Tensor],
                steps: int) -> None:
        """Freeze samples ``idx`` at ``x``, where ``loss`` and ``out`` were measured."""
        if len(idx) == 0:
            return
        self.x[idx], self.loss[idx] = x, loss.to(self.loss.dtype)
        self.converged[idx.cpu()] = (loss <= self.tol[idx]).cpu()
        self.steps[idx.cpu()] = steps
        if out is not None:
            if self.output is None:
                self.output = out.new_zeros((len(self.x),) + out.shape[1:])
            self.output[idx] = out
        self.bar.set_postfix_str(f"{int(self.converged.sum())} of {len(self.x)} samples reached their tolerance",
                                 refresh=False)

    def _adam(self) -> None:
        """Adam with a step size per sample that halves whenever its sample's loss rises."""
        (b1, b2), idx = _BETAS, torch.arange(len(self.x), device=self.x.device)
        m, v = torch.zeros_like(self.x), torch.zeros_like(self.x)
        lr = torch.full((len(self.x),), float(self.lr), device=self.x.device)
        prev = torch.full_like(lr, float("inf"))
        shape = (-1,) + (1,) * (self.x.dim() - 1)
        for step in range(self.max_steps + 1):
            loss, grad, out = self._evaluate(self.x[idx], idx)
            stop = (loss <= self.tol[idx]) | (step == self.max_steps)
            self._finish(idx[stop], self.x[idx[stop]], loss[stop], None if out is None else out[stop], step)
            keep = ~stop
            if not keep.any():
                return
            idx, grad, loss = idx[keep], grad[keep], loss[keep]
            lr[idx] = torch.where(loss > prev[idx], lr[idx] * 0.5, lr[idx])
            prev[idx] = loss
            t = step + 1
            m[idx] = b1 * m[idx] + (1 - b1) * grad
            v[idx] = b2 * v[idx] + (1 - b2) * grad * grad
            update = (m[idx] / (1 - b1 ** t)) / ((v[idx] / (1 - b2 ** t)).sqrt() + _EPS)
            self.x[idx] = self._clamp(self.x[idx] - lr[idx].view(shape) * update, idx)
            self.bar.update(1)

    def _lbfgs(self) -> None:
        """L-BFGS run independently per sample, batched: each sample has its own curvature
        history, its own step length (halved on a rise of its loss, the step then retried) and
        its own stopping test; the first step moves the largest pixel change by ``lr``, and no step
        by more than _LBFGS_MAX_STEP * lr (where the loss is nearly flat, as in a random-weight net,
        the curvature estimate would otherwise send x~ far from x for no gain)."""
        M, shape = len(self.x), self.x.shape
        flat = lambda t: t.reshape(len(t), -1)  # noqa: E731
        idx = torch.arange(M, device=self.x.device)
        loss, grad, out = self._evaluate(self.x, idx)
        x, grad = flat(self.x).clone(), flat(grad)
        outs = out
        gamma = self.lr / grad.abs().max(1).values.clamp_min(1e-30)  # initial inverse-Hessian scale
        t = torch.ones(M, device=x.device)
        S: List[torch.Tensor] = []
        Y: List[torch.Tensor] = []
        R: List[torch.Tensor] = []  # history: steps, gradient changes, 1 / (y.s) (0 where not a valid pair)
        for step in range(self.max_steps + 1):
            stop = (loss[idx] <= self.tol[idx]) | (step == self.max_steps)
            done = idx[stop]
            self._finish(done, x[done].view(-1, *shape[1:]), loss[done], None if outs is None else outs[done], step)
            idx = idx[~stop]
            if len(idx) == 0:
                return
            q = grad[idx].clone()
            alphas = []
            for s, y, r in zip(reversed(S), reversed(Y), reversed(R)):
                a = r[idx] * (s[idx] * q).sum(1)
                q -= a[:, None] * y[idx]
                alphas.append(a)
            q *= gamma[idx, None]
            for (s, y, r), a in zip(zip(S, Y, R), reversed(alphas)):
                b = r[idx] * (y[idx] * q).sum(1)
                q += (a - b)[:, None] * s[idx]
            d = -q
            uphill = (d * grad[idx]).sum(1) >= 0  # lost curvature: fall back to the scaled gradient
            d[uphill] = -gamma[idx][uphill, None] * grad[idx][uphill]
            step_ = t[idx, None] * d
            step_ *= (_LBFGS_MAX_STEP * self.lr / step_.abs().max(1, keepdim=True).values.clamp_min(1e-30)).clamp(max=1)
            trial = flat(self._clamp((x[idx] + step_).view(-1, *shape[1:]), idx))
            new_loss, new_grad, new_out = self._evaluate(trial.view(-1, *shape[1:]), idx)
            new_grad = flat(new_grad)
            better = new_loss < loss[idx]
            s_, y_ = trial - x[idx], new_grad - grad[idx]
            sy = (s_ * y_).sum(1)
            valid = better & (sy > 1e-12)
            for buf, val in ((S, s_), (Y, y_)):
                full = torch.zeros_like(x)
                full[idx] = torch.where(valid[:, None], val, torch.zeros_like(val))
                buf.append(full)
            r = torch.zeros(M, device=x.device)
            r[idx] = torch.where(valid, 1 / sy.clamp_min(1e-12), torch.zeros_like(sy))
            R.append(r)
            if len(S) > 10:
                S.pop(0), Y.pop(0), R.pop(0)
            gamma[idx] = torch.where(valid, sy / (y_ * y_).sum(1).clamp_min(1e-30), gamma[idx])
            acc = idx[better]
            x[acc], grad[acc], loss[acc] = trial[better], new_grad[better], new_loss[better]
            if outs is not None and new_out is not None:  # the model gives a tensor each pass or never
                outs[acc] = new_out[better]
            t[idx] = torch.where(better, (t[idx] * 2).clamp(max=1.0), t[idx] * 0.5)
            self.bar.update(1)


def augment(model: ModelLike, inputs: Inputs, layer: UnitLike, *, n: int = 8, steps: int = 2000,
            loss_tolerance: Optional[float] = None, lr: Optional[float] = None, batch_size: Optional[int] = None,
            seed: Optional[int] = None, clamp: bool = True, optimizer: str = "lbfgs", progress: bool = True
            ) -> DropoutAugmentation:
    """Show the augmentation that dropout performs in input space (Bouthillier et al. 2015).

    For each input x, draw n dropout samples h~ of ``layer``'s output (dropout on, BatchNorm in
    eval: its statistics are never touched), then, with the model in eval mode, find x~ starting
    from x whose output at ``layer`` matches each h~ (mean squared error).

    inputs: a batch tensor (model input space) or anything the model's Preprocess accepts.
    layer: a module of the model or a unit string (a channel or neuron restricts the match to
    it). loss_tolerance: the MSE at which a sample stops; None stops at TOLERANCE_FRACTION (5%)
    of its starting MSE (at least 1e-10 of L's mean square, float rounding). lr: None picks
    LR_FRACTION (1%) of the valid input range (Adam's step; L-BFGS's first step). steps:
    optimizer steps per sample at most. batch_size: samples optimized at once (B * n are
    chunked). seed: the same seed gives the same masks, so one input gives the same result alone
    or in a batch. clamp: keep x~ inside the valid input range ([0, 1] images after
    normalization). optimizer: "lbfgs" (default) or "adam". L-BFGS is the default because its x~
    do not depend on the step size (mean |x~ - x| stays put when lr changes 20x), while Adam's
    move every pixel by about lr per step, so their size measures lr rather than dropout.
    progress: a bar over optimizer steps that counts the samples done.
    Samples that do not reach their tolerance in ``steps`` raise a warning.
    """
    loaded = as_loaded(model)
    module = loaded.module
    if optimizer not in OPTIMIZERS:
        raise NetloupeError(f"unknown optimizer {optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
    if not isinstance(n, int) or n < 1:
        raise InputError(f"n (dropout samples per input) must be a positive integer; got {n!r}")
    if not isinstance(steps, int) or steps < 0:
        raise InputError(f"steps must be a non-negative integer; got {steps!r}")
    if lr is not None and not lr > 0:
        raise InputError(f"lr must be positive or None (automatic); got {lr!r}")
    if loss_tolerance is not None and not loss_tolerance >= 0:
        raise InputError(f"loss_tolerance must be >= 0 or None (automatic); got {loss_tolerance!r}")
    unit = as_unit(module, layer)
    x = loaded.inputs(inputs).detach()

    clean, original_output = _eval_pass(module, unit, x)
    targets, target_output, rates = _dropout_pass(module, unit, x, n, seed)
    _check_reached(module, unit, clean, targets, rates)

    B = len(x)
    flat_x = x.unsqueeze(1).expand(B, n, *x.shape[1:]).reshape(B * n, *x.shape[1:])
    flat_t = targets.reshape(B * n, *targets.shape[2:])
    start = _mse(clean.unsqueeze(1).expand_as(targets).reshape_as(flat_t), flat_t)
    if loss_tolerance is None:  # a fraction of the starting MSE, but never below float rounding of L's output
        floor = 1e-10 * clean.float().pow(2).reshape(B, -1).mean(1).repeat_interleave(n)
        tol = torch.maximum(TOLERANCE_FRACTION * start, floor)
    else:
        tol = torch.full((B * n,), float(loss_tolerance), device=x.device)
    lo: Optional[torch.Tensor] = None
    hi: Optional[torch.Tensor] = None
    if clamp:
        lo, hi = _valid_range(loaded.preprocess, flat_x)
    if lr is None:
        lr = LR_FRACTION * float(1 / torch.as_tensor(loaded.preprocess.std).mean())
    size = _batch_size(batch_size, x.device, "dropout")

    fits: List[_Fit] = []
    with _progress(None, desc=f"dropout {unit.layer}", enabled=progress) as bar:
        for part in chunks(B * n, size):
            s = slice(part.start, part.stop)
            fits.append(_Fit(module, unit, flat_x[s], flat_t[s], start[s], tol[s], None if lo is None else lo[s],
                             None if hi is None else hi[s], lr, optimizer, steps, bar).run())
    cat = lambda name: torch.cat([getattr(f, name) for f in fits])  # noqa: E731
    converged = cat("converged").view(B, n)
    if not converged.all():
        warnings.warn(f"{int((~converged).sum())} of {B * n} dropout samples did not reach their loss tolerance in "
                      f"steps={steps}; raise steps or loss_tolerance", stacklevel=3)
    outputs = None if any(f.output is None for f in fits) else cat("output")
    return DropoutAugmentation(
        images=cat("x").view(B, n, *x.shape[1:]), inputs=x, original_output=original_output,
        augmented_output=None if outputs is None else outputs.view(B, n, *outputs.shape[1:]),
        target_output=target_output, targets=targets, loss=cat("loss").view(B, n), tolerance=tol.view(B, n),
        steps=cat("steps").view(B, n), converged=converged, passes=sum(f.passes for f in fits) + B + B * n,
        layer=str(unit), lr=float(lr), optimizer=optimizer, seed=seed, preprocess=loaded.preprocess)


@dataclass
class DropoutSweep(_images.Chart):
    """Augmentation strength (mean |x~ - x| in [0, 1] pixel units) against the dropout rate.

    rates [R]; strength [R, B, n]; results holds each rate's DropoutAugmentation.
    """

    figsize = (5.4, 3.84)  # not a field: the chart's size for to_pil

    rates: List[float]
    strength: torch.Tensor
    results: List[DropoutAugmentation]
    layer: str

    def plot(self, ax: Optional[Axes] = None, index: Optional[int] = None) -> Axes:
        """Mean strength per rate, with a band of one standard deviation over the samples of input
        ``index`` (None: over every input and sample)."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(4.5, 3.2))
        strength = self.strength if index is None else self.strength[:, _images.shown(index, self.strength.shape[1])[0]]
        s = strength.flatten(1).float().cpu()
        mean, std = s.mean(1).numpy(), s.std(1, unbiased=False).numpy()
        ax.plot(self.rates, mean, "o-")
        ax.fill_between(self.rates, mean - std, mean + std, alpha=0.25)
        ax.set_xlabel("dropout rate p")
        ax.set_ylabel("mean |x~ - x| (pixel units)")
        ax.set_title(f"dropout augmentation at {self.layer}")
        ax.grid(alpha=0.3)
        return ax


def _set_rate(module: nn.Module, rate: float) -> int:
    """Set every dropout rate of ``module`` (see _rate_settings); returns how many were set."""
    settings = list(_rate_settings(module))
    for m, attr in settings:
        setattr(m, attr, rate)
    return len(settings)


def sweep(model: ModelLike, inputs: Inputs, layer: UnitLike, *, rates: Sequence[float] = (0.1, 0.3, 0.5, 0.7),
          **kwargs: Any) -> DropoutSweep:
    """Augment ``inputs`` at each dropout rate and measure how far x~ moves from x.

    Runs on a copy of the model whose dropout rates are all set to each rate in turn (the model
    given is never changed); ``kwargs`` go to :func:`augment` (n, seed, steps, ...).
    """
    rates = [float(r) for r in rates]
    if not rates or any(not 0 <= r < 1 for r in rates):
        raise InputError(f"rates must be dropout rates in [0, 1); got {rates}")
    loaded = as_loaded(model)
    unit = as_unit(loaded.module, layer)
    copy_ = copy.deepcopy(loaded)
    if _set_rate(copy_.module, 0.0) == 0:
        raise NetloupeError(f"found no dropout rate to set in {type(loaded.module).__name__} (no dropout module "
                            "and no drop_rate attribute); sweep needs a model with dropout")
    results: List[DropoutAugmentation] = []
    for r in rates:
        _set_rate(copy_.module, r)
        results.append(augment(copy_, inputs, str(unit), **kwargs))
    return DropoutSweep(rates, torch.stack([r.strength for r in results]), results, str(unit))


@verb("dropout", "what dropout does to images, in input space (Bouthillier et al.)", function=augment,
      out="netloupe-dropout", order=60,
      args=(IMAGES, Arg.of("--layer", required=True, help="the layer (unit) whose dropout samples are matched, e.g. "
                           "classifier")),
      options={"n": Option("dropout samples per image", minimum=1, flag="-n"),
               "steps": Option("optimizer steps per sample at most", minimum=0),
               "optimizer": Option("how each sample is matched", choices=OPTIMIZERS)})
def _dropout_verb(args: argparse.Namespace, keywords: Dict[str, Any]) -> None:
    paths = image_paths(args.images)
    model = model_of(args)
    result = augment(model, paths, args.layer, **keywords)
    grid = result.save(Path(args.out) / "dropout_grid.png")
    labels = model.labels
    name = lambda i: labels[i] if labels and i < len(labels) else str(i)  # noqa: E731
    for b, image in enumerate(args.images):
        print(image)
        top = None if result.original_output is None else int(result.original_output[b].flatten().argmax())
        for i in range(args.n):
            reached = "converged" if result.converged[b, i] else "NOT converged"
            line = f"  sample {i + 1}: loss {float(result.loss[b, i]):.4g} ({reached})"
            if top is not None and result.augmented_output is not None:
                new = int(result.augmented_output[b, i].flatten().argmax())
                line += f", top-1 {'changed to ' + name(new) if new != top else 'unchanged (' + name(top) + ')'}"
            print(line)
    print(f"wrote {grid.resolve()}")
