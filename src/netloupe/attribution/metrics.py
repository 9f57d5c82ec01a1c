"""How good is an attribution? Deletion and insertion curves (Petsiuk et al. 2018) and the
cascading model-randomization sanity check (Adebayo et al. 2018)."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn as nn

from .. import images, runtime
from ..errors import InputError
from ..models import Inputs, ModelLike, as_loaded
from ..runtime import batch_size as pick_batch_size
from ..runtime import chunks
from .engine import Attribution, TargetLike, make_baseline, resolve, target_scores
from .registry import MethodFn, lookup

if TYPE_CHECKING:
    from matplotlib.axes import Axes

#: a baseline of integrated.make_baseline: a number, a tensor, "blur" or "noise"
Baseline = Union[float, torch.Tensor, str]
#: an attribution method, by name or as a function
MethodLike = Union[str, MethodFn]


@dataclass
class Curve(images.Chart):
    """Target score as pixels are deleted (or inserted) in attribution order."""

    kind: str
    fractions: torch.Tensor  # [steps + 1], share of pixels changed
    scores: torch.Tensor  # [N, steps + 1]
    auc: torch.Tensor  # [N], area under each curve (trapezoid over fractions)
    method: str = ""

    def plot(self, ax: Optional[Axes] = None, index: Optional[int] = None) -> Axes:
        """The curve of input ``index`` (None: every input's)."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots()
        for i in images.shown(index, len(self.scores)):
            ax.plot(self.fractions.numpy(), self.scores[i].numpy(), label=f"input {i} (AUC {float(self.auc[i]):.3f})")
        ax.set_xlabel(f"fraction of pixels {'deleted' if self.kind == 'deletion' else 'inserted'}")
        ax.set_ylabel("target score")
        ax.set_title(f"{self.kind} curve {self.method}".strip())
        ax.legend(fontsize=7)
        return ax


def _curve(kind: str, model: ModelLike, inputs: Inputs, attribution: Attribution, steps: int, baseline: Baseline,
           batch_size: Optional[int], target: Optional[TargetLike]) -> Curve:
    loaded = as_loaded(model)
    x = loaded.inputs(inputs)
    if len(attribution) != x.shape[0]:
        raise InputError(f"the attribution explains {len(attribution)} inputs but {x.shape[0]} were given")
    t = resolve(loaded.module, (x,), attribution.target if target is None else target)
    heat = attribution.map()
    if heat.shape[-2:] != x.shape[-2:]:
        heat = torch.nn.functional.interpolate(heat[:, None], size=x.shape[-2:], mode="bilinear")[:, 0]
    n, hw = x.shape[0], x.shape[-2] * x.shape[-1]
    order = heat.reshape(n, hw).argsort(dim=1, descending=True).to(x.device)
    base = make_baseline(x, baseline)
    counts = [round(hw * k / steps) for k in range(steps + 1)]
    # rank of each pixel in attribution order; pixel changed at step k iff rank < counts[k]
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(hw, device=x.device).expand(n, hw))
    rank = rank.view(n, 1, *x.shape[-2:])
    start, end = (x, base) if kind == "deletion" else (base, x)
    bs = pick_batch_size(batch_size, x.device, "metrics")
    rows = torch.arange(n).repeat_interleave(steps + 1)
    ks = torch.tensor(counts).repeat(n)
    scores = torch.empty(n * (steps + 1), dtype=x.dtype, device=x.device)
    for sl in chunks(len(rows), bs):
        r, k = rows[sl], ks[sl].to(x.device).view(-1, 1, 1, 1)
        changed = rank[r] < k
        scores[sl] = target_scores(loaded.module, (torch.where(changed, end[r], start[r]),), t, r)
    scores = scores.view(n, steps + 1).detach().cpu()
    fractions = torch.tensor(counts, dtype=torch.float32) / hw
    auc = torch.from_numpy(np.trapezoid(scores.numpy(), fractions.numpy(), axis=1))
    return Curve(kind, fractions, scores, auc, attribution.method)


def deletion(model: ModelLike, inputs: Inputs, attribution: Attribution, *, steps: int = 20, baseline: Baseline = 0,
             batch_size: Optional[int] = None, target: Optional[TargetLike] = None) -> Curve:
    """Delete pixels (set to ``baseline``) from most to least attributed; a good attribution
    makes the score fall fast (low AUC)."""
    return _curve("deletion", model, inputs, attribution, steps, baseline, batch_size, target)


def insertion(model: ModelLike, inputs: Inputs, attribution: Attribution, *, steps: int = 20,
              baseline: Baseline = "blur", batch_size: Optional[int] = None,
              target: Optional[TargetLike] = None) -> Curve:
    """Insert pixels into ``baseline`` (a blurred copy by default) from most to least
    attributed; a good attribution makes the score rise fast (high AUC)."""
    return _curve("insertion", model, inputs, attribution, steps, baseline, batch_size, target)


def blocks_top_down(model: ModelLike) -> List[str]:
    """Parameterized blocks from the output end to the input end: top-level children, with
    Sequential/ModuleList containers opened one level (stages of blocks)."""
    module = as_loaded(model).module
    names: List[str] = []
    for name, child in module.named_children():
        if isinstance(child, (nn.Sequential, nn.ModuleList)) and len(child) > 1:
            names += [f"{name}.{sub}" for sub, c in child.named_children() if any(True for _ in c.parameters())]
        elif any(True for _ in child.parameters()):
            names.append(name)
    return names[::-1]


def _randomize(module: nn.Module, generator: Optional[torch.Generator]) -> None:
    """Re-initialize every parameter of ``module`` (a copy) with Gaussian noise of the
    parameter's own scale."""
    with torch.no_grad():
        for p in module.parameters():
            scale = float(p.std()) if p.numel() > 1 and float(p.std()) > 0 else 0.1
            p.copy_(torch.randn(p.shape, generator=generator).to(p) * scale)


def _spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Rank correlation with tied ranks averaged; 0 when a map is constant (no ranking at all)."""
    from scipy.stats import spearmanr

    u, v = a.detach().flatten().cpu().double().numpy(), b.detach().flatten().cpu().double().numpy()
    if np.ptp(u) == 0 or np.ptp(v) == 0:
        return 0.0
    return float(spearmanr(u, v).statistic)


@dataclass
class Randomization(images.Chart):
    """Rank correlation of |attribution| with the trained model's, as blocks are randomized
    from the top down. ``correlations[method]`` is [len(blocks) + 1, N]; row 0 is the
    trained model (1.0)."""

    blocks: List[str]
    correlations: Dict[str, np.ndarray] = field(default_factory=dict)

    def mean(self, method: str, index: Optional[int] = None) -> np.ndarray:
        """Per block, the correlation of input ``index`` (None: the mean over inputs)."""
        c = self.correlations[method]
        return c.mean(1) if index is None else c[:, images.shown(index, c.shape[1])[0]]

    def plot(self, ax: Optional[Axes] = None, index: Optional[int] = None) -> Axes:
        """The curves of input ``index`` (None: the mean over inputs)."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(8, 4))
        xs = np.arange(len(self.blocks) + 1)
        for method in self.correlations:
            ax.plot(xs, self.mean(method, index), marker="o", label=method)
        ax.set_xticks(xs)
        ax.set_xticklabels(["trained"] + self.blocks, rotation=60, ha="right", fontsize=7)
        ax.set_ylabel("Spearman rank correlation of |attribution|")
        ax.set_xlabel("randomized down to block (cascading, from the top)")
        lowest = min(float(self.mean(m, index).min()) for m in self.correlations)
        ax.set_ylim(min(-0.2, lowest - 0.05), 1.05)
        ax.axhline(0, color="gray", lw=0.5)
        ax.legend(fontsize=8)
        ax.set_title("model randomization check")
        return ax


def randomization_check(model: ModelLike, inputs: Inputs,
                        method: Union[MethodLike, List[MethodLike], Tuple[MethodLike, ...]] = "saliency", *,
                        mode: str = "cascade", target: TargetLike = "top", blocks: Optional[Sequence[str]] = None,
                        seed: Optional[int] = None, progress: bool = True, **method_kw: Any) -> Randomization:
    """Adebayo et al.'s sanity check on a copy of the model (never the user's): randomize the
    weights block by block from the top ("cascade") or one block at a time ("independent")
    and compare each attribution with the trained model's by Spearman rank correlation of
    |attribution|. A method that stays correlated is not explaining the model."""
    if mode not in ("cascade", "independent"):
        raise InputError(f"unknown mode {mode!r}; choose 'cascade' or 'independent'")
    methods = method if isinstance(method, (list, tuple)) else [method]
    fns = {m if isinstance(m, str) else getattr(m, "__name__", "method"): lookup(m) for m in methods}
    loaded = as_loaded(model)
    x = loaded.inputs(inputs)
    classes = resolve(loaded.module, (x,), target).describe()  # explain the trained model's target throughout
    blocks = blocks_top_down(loaded.module) if blocks is None else list(blocks)
    copy_model = copy.deepcopy(loaded)
    modules = dict(copy_model.module.named_modules())
    missing = [b for b in blocks if b not in modules]
    if missing:
        raise InputError(f"unknown blocks {missing}; see netloupe.layers(model)")
    pristine = copy.deepcopy(copy_model.module.state_dict())
    g = runtime.generator(seed, "cpu")
    reference = {name: fn(copy_model, x, target=classes, **method_kw).map() for name, fn in fns.items()}
    corr = {name: [[1.0] * x.shape[0]] for name in fns}
    for block in runtime.progress(blocks, desc="randomizing", enabled=progress):
        if mode == "independent":
            copy_model.module.load_state_dict(pristine)
        _randomize(modules[block], g)
        for name, fn in fns.items():
            maps = fn(copy_model, x, target=classes, **method_kw).map()
            corr[name].append([_spearman(maps[i], reference[name][i]) for i in range(x.shape[0])])
    return Randomization(blocks, {name: np.array(v) for name, v in corr.items()})
