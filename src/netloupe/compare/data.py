"""Data-based comparison, streamed: every model sees each batch once, and only running sums are
kept (float64), so memory is flat in the number of images.

Per image and channel a layer gives two numbers: its spatial maximum (what ``scan`` ranks images
by) and its spatial mean. Per channel, the correlation over images between models of the maxima,
and the overlap (Jaccard) of their top-k images. Per pair of layers, linear CKA (Kornblith et al.
2019) of the per-image channel means (the layer globally average-pooled): CKA works on any two
layers, of one model or of two different architectures, because it compares which images look
alike to each, not channel by channel."""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple, Union, cast

import torch

from .. import runtime
from ..data import DataLike, as_source, load_batches
from ..errors import InputError
from ..models import LoadedModel, ModelLike, forward
from ..probe import Probe, probe

Pair = Tuple[int, str]  # (later model i, layer)


class Moments:
    """Running sums of two sets of per-image features X [n, p], Y [n, q] (float64): enough for
    their per-column correlation (p == q) and their linear CKA."""

    def __init__(self, p: int, q: int, pairwise: bool, device: Union[str, torch.device]) -> None:
        z = lambda *shape: torch.zeros(shape, dtype=torch.float64, device=device)  # noqa: E731
        self.n = 0
        self.sx, self.sy, self.xx, self.yy, self.yx = z(p), z(q), z(p, p), z(q, q), z(q, p)
        self.pairwise = pairwise  # per-column sums of x*y, for correlation of matched channels
        self.sxy = z(p) if pairwise else None

    def add(self, x: torch.Tensor, y: torch.Tensor) -> None:
        x, y = x.double(), y.double()
        self.n += len(x)
        self.sx += x.sum(0)
        self.sy += y.sum(0)
        self.xx += x.T @ x
        self.yy += y.T @ y
        self.yx += y.T @ x
        if self.sxy is not None:  # pairwise
            self.sxy += (x * y).sum(0)

    def _centred(self) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        n = self.n
        cxx = self.xx - torch.outer(self.sx, self.sx) / n
        cyy = self.yy - torch.outer(self.sy, self.sy) / n
        cyx = self.yx - torch.outer(self.sy, self.sx) / n
        return cxx, cyy, cyx

    def cka(self) -> float:
        """Linear CKA: ||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F), with Xc, Yc centred over images."""
        cxx, cyy, cyx = self._centred()
        denominator = torch.linalg.matrix_norm(cxx) * torch.linalg.matrix_norm(cyy)
        return float((cyx ** 2).sum() / denominator) if denominator > 0 else float("nan")

    def correlation(self) -> torch.Tensor:
        """Per column, the Pearson correlation of x and y over images (NaN where either is constant)."""
        if self.sxy is None:
            raise InputError("the correlation of matched columns needs Moments(..., pairwise=True)")
        n = self.n
        cov = self.sxy - self.sx * self.sy / n
        vx = self.xx.diagonal() - self.sx ** 2 / n
        vy = self.yy.diagonal() - self.sy ** 2 / n
        r = cov / (vx * vy).sqrt()
        return torch.where((vx > 1e-12 * self.xx.diagonal().abs().clamp_min(1e-300)) & (vy > 0), r,
                           torch.full_like(r, float("nan"))).clamp(-1, 1)


class TopK:
    """The k images with the largest value of each channel, kept as a batch goes by."""

    def __init__(self, k: int) -> None:
        self.k = k
        self.values: Optional[torch.Tensor] = None
        self.images: Optional[torch.Tensor] = None

    def add(self, v: torch.Tensor, ids: torch.Tensor) -> None:  # v [n, C], ids [n]
        ids = ids.to(v.device).unsqueeze(1).expand_as(v)
        values = v if self.values is None else torch.cat([self.values, v])
        images = ids if self.images is None else torch.cat([self.images, ids])
        order = values.argsort(dim=0, descending=True, stable=True)[: self.k]
        self.values, self.images = values.gather(0, order), images.gather(0, order)


def _as_seen_by(model: LoadedModel, first: LoadedModel, x: torch.Tensor) -> torch.Tensor:
    """A batch preprocessed for the first model, as ``model`` takes it: its own normalization and size."""
    same = (tuple(model.preprocess.mean), tuple(model.preprocess.std), model.input_size) == \
        (tuple(first.preprocess.mean), tuple(first.preprocess.std), first.input_size)
    if same or x.dim() != 4:
        return x
    images01 = first.preprocess.inverse(x.float())
    if tuple(images01.shape[-2:]) != model.input_size:
        images01 = torch.nn.functional.interpolate(images01, size=model.input_size, mode="bilinear",
                                                   align_corners=False, antialias=True)
    return model.preprocess.normalize(images01)


def _features(p: Probe, layers: Sequence[str]) -> Dict[str, Tuple[torch.Tensor, torch.Tensor]]:
    """Per layer, [n, C] per-image channel maxima and means, wherever the layout keeps them."""
    out: Dict[str, Tuple[torch.Tensor, torch.Tensor]] = {}
    for name in layers:
        positions = p.layout(name).positions(p.activations[name]).double()  # [n, C, P]
        out[name] = positions.amax(2), positions.mean(2)
    return out


def data_measures(models: List[LoadedModel], layers: Sequence[str], data: DataLike, top_k: int = 9,
                  batch_size: Optional[int] = None, progress: bool = True,
                  cka_layers: Optional[Dict[int, List[str]]] = None, precision: str = "auto"
                  ) -> Tuple[Dict[Pair, torch.Tensor], Dict[Pair, torch.Tensor], Dict[int, torch.Tensor],
                             Dict[Pair, torch.Tensor], List[str]]:
    """Stream ``data`` once through every model. Returns, for every later model against the
    first: per layer the channels' correlation [C] and top-k Jaccard [C], and the CKA matrix
    between the first model's ``cka_layers[0]`` and that model's ``cka_layers[i]`` (default: the
    compared layers); plus the top-k image ids of each model and layer, and the image ids.
    precision: the forward passes' (runtime.autocast); the statistics are float64."""
    source = as_source(data)
    cka_layers = cka_layers or {i: list(layers) for i in range(len(models))}
    first = models[0]
    size = runtime.batch_size(batch_size, first.device, "scan")
    batches = [list(range(s.start, s.stop)) for s in runtime.chunks(len(source), size)]
    loader = load_batches(source, first.preprocess, batches)
    captured = {i: list(dict.fromkeys(list(layers) + cka_layers[i])) for i in range(len(models))}
    pairs: Dict[Pair, Moments] = {}
    tops: Dict[Pair, TopK] = {}
    cka: Dict[Tuple[int, str, str], Moments] = {}
    seen = 0
    with torch.no_grad(), runtime.autocast(precision, first.device):
        for images, parts, bad in runtime.progress(loader, total=len(batches), desc="compare (data)",
                                                    enabled=progress):
            seen += len(images)
            if not len(images):
                continue
            feats: List[Dict[str, Tuple[torch.Tensor, torch.Tensor]]] = []
            for i, m in enumerate(models):
                with probe(m, captured[i], detach=True) as p:
                    forward(m.module, [_as_seen_by(m, first, t).to(m.device, m.dtype) for t in parts])
                    missing = [name for name in captured[i] if name not in p.activations]
                    if missing:
                        raise InputError(f"layer {missing[0]!r} of model {i} did not run in its forward pass; choose "
                                         "layers the models run")
                    feats.append(_features(p, captured[i]))
            for i, f in enumerate(feats):
                for name in layers:
                    tops.setdefault((i, name), TopK(top_k)).add(f[name][0], images)
            for i in range(1, len(models)):
                for name in layers:
                    x, y = feats[0][name][0], feats[i][name][0]
                    if x.shape[1] != y.shape[1]:
                        raise InputError(f"layer {name!r} has {x.shape[1]} channels in the first model and {y.shape[1]} "
                                         f"in model {i}; compare models of one architecture, or give a layer mapping")
                    pairs.setdefault((i, name), Moments(x.shape[1], y.shape[1], True, "cpu")).add(x.cpu(), y.cpu())
                for a in cka_layers[0]:
                    for b in cka_layers[i]:
                        xa, yb = feats[0][a][1], feats[i][b][1]
                        cka.setdefault((i, a, b), Moments(xa.shape[1], yb.shape[1], False, "cpu")).add(xa.cpu(),
                                                                                                       yb.cpu())
    if seen < 2:
        raise InputError(f"only {seen} of the {len(source)} images could be read; a comparison over data needs 2 or "
                         "more")
    correlation = {key: m.correlation() for key, m in pairs.items()}
    jaccard: Dict[Pair, torch.Tensor] = {}
    for (i, name), _ in pairs.items():
        # every TopK in tops has taken a batch, so holds its images
        ta, tb = cast(torch.Tensor, tops[(0, name)].images), cast(torch.Tensor, tops[(i, name)].images)
        jaccard[(i, name)] = torch.tensor([len(set(ta[:, c].tolist()) & set(tb[:, c].tolist()))
                                           / len(set(ta[:, c].tolist()) | set(tb[:, c].tolist()))
                                           for c in range(ta.shape[1])], dtype=torch.float64)
    matrices: Dict[int, torch.Tensor] = {}
    for i in range(1, len(models)):
        matrices[i] = torch.tensor([[cka[(i, a, b)].cka() for b in cka_layers[i]] for a in cka_layers[0]],
                                   dtype=torch.float64)
    top_images = {key: cast(torch.Tensor, t.images).T.cpu() for key, t in tops.items()}  # [C, k]
    return correlation, jaccard, matrices, top_images, list(source.ids)


def layer_cka(model_a: ModelLike, layers_a: Sequence[str], model_b: ModelLike, layers_b: Sequence[str],
              data: DataLike, *, batch_size: Optional[int] = None, progress: bool = True,
              precision: str = "auto") -> torch.Tensor:
    """The linear CKA matrix [len(layers_a), len(layers_b)] between layers of two models, which may
    be of different architectures: both see the same images, each through its own normalization
    and input size."""
    from ..models import as_loaded

    models = [as_loaded(model_a), as_loaded(model_b)]
    *_, matrices, _, _ = data_measures(models, [], data, batch_size=batch_size, progress=progress,
                                       cka_layers={0: list(layers_a), 1: list(layers_b)}, precision=precision)
    return matrices[1]
