"""Recipes that start from a photo: DeepDream with octaves (Mordvintsev et al.), feature inversion
(Mahendran & Vedaldi 2015), caricatures (Lucid) and adversarial twins (PGD), all on the render loop.

Photos are paths, PIL images, HWC arrays, or [3, h, w] / [n, 3, h, w] tensors of RGB in [0, 1]
(what renderings return, so results chain: ``invert(model, adversarial(model, p).images, ...)``).
``dream`` keeps each photo's own size; the others work at the model's input size, files and
pictures resized and cropped by the model's Preprocess, tensors taken as they are.
"""

from __future__ import annotations

import argparse
import functools
import operator
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Union, cast

import torch
import torch.nn.functional as F
from PIL import Image

from ..errors import InputError, NetloupeError, UnitError
from ..images import ImageLike, as_pil, pil_to01, save
from ..images import grid as image_grid
from ..images import to_pil as tensor_to_pil
from ..models import LoadedModel, as_loaded, forward
from ..probe import probe
from ..runtime import generator
from ..runtime import progress as progress_bar
from ..units import UnitLike, as_unit
from ..verbs import IMAGE, IMAGES, Arg, Option, image_paths, layer_list, model_of, verb
from . import objectives as obj
from . import transforms as tf
from .classic import Ascent
from .param import Param, Size, as_mask, masked, pixels
from .param import hw as size_hw
from .param import image as noise
from .recipes import ModelLike, file_name, min_size
from .render import Rendering, model_input, render
from .transforms import TransformSpec

if TYPE_CHECKING:
    pass

#: dream's default largest photo side: larger photos are scaled down to it
MAX_SIDE = 1024
Photos = Union[ImageLike, List[ImageLike]]  # one photo (a tensor may hold several) or a list of them


@dataclass
class PhotoRendering(Rendering):
    """A rendering made from photos: the photos too (``photos`` [n, 3, h, w] in [0, 1]), shown
    first on its sheet, ``ncol`` pictures a row."""

    photos: Optional[torch.Tensor] = None
    photo_captions: Optional[List[str]] = None
    ncol: Optional[int] = None

    def grid(self, captions: Optional[Sequence[str]] = None, ncol: Optional[int] = None,
             cell: Optional[int] = None) -> Image.Image:
        """The photos, then the renderings, captioned."""
        # a rendering built without photos shows none
        shots: Union[torch.Tensor, List[torch.Tensor]] = self.photos if self.photos is not None else []
        pictures = [tensor_to_pil(p) for p in shots] + self.pils()
        caps = list(self.photo_captions or [""] * len(shots))
        caps += list(captions if captions is not None else self.captions or [""] * len(self))
        return image_grid(pictures, caps, ncol=ncol or self.ncol or len(pictures), cell=cell)

    def write(self, folder: Union[str, os.PathLike], stem: str) -> List[Path]:
        """Each rendering as ``{stem}_{caption}.png`` (its first caption line) and the sheet as
        ``contact_sheet.png``, into ``folder``; returns their paths."""
        folder = Path(folder)
        names = [file_name(c.splitlines()[0]) for c in (self.captions or [str(i) for i in range(len(self))])]
        written = [save(pil, folder / f"{stem}_{name}.png") for pil, name in zip(self.pils(), names)]
        return written + [save(self.grid(), folder / "contact_sheet.png")]


@dataclass
class Inversion(PhotoRendering):
    """Feature inversions of one photo, one layer per element; ``errors`` [layers]: the relative
    activation error ||a - a0|| / ||a0|| each reached (measured without transforms)."""

    layers: Optional[List[str]] = None
    errors: Optional[torch.Tensor] = None


@dataclass
class Adversarial(PhotoRendering):
    """Adversarial twins of ``photos`` within ``eps`` of them (L-inf, in [0, 1] pixels);
    ``before`` / ``after``: the predicted class of each photo and of its twin; ``history``: the
    attack's objective per step."""

    before: Optional[torch.Tensor] = None
    after: Optional[torch.Tensor] = None
    target: Optional[int] = None
    eps: float = 0.0

    @property
    def fooled(self) -> torch.Tensor:
        """[n] whether each twin is classified as ``target`` (untargeted: other than its photo)."""
        if self.before is None or self.after is None:
            raise NetloupeError("this Adversarial has no predictions (before, after) to compare")
        return self.after != self.before if self.target is None else self.after == self.target


@dataclass
class Caricature(PhotoRendering):
    """Caricatures of a photo at layers, one element per layer (with ``adversarial``: of the photo and
    its twin, alternating), and the attack that made the twin."""

    layers: Optional[List[str]] = None
    adversarial: Optional[Adversarial] = None


# -- inputs ------------------------------------------------------------------------------------

def _tensor01(t: torch.Tensor) -> torch.Tensor:
    t = t.detach().float().cpu()
    t = t[None] if t.dim() == 3 else t
    if t.dim() != 4 or t.shape[1] != 3:
        raise InputError(f"a photo tensor is [3, h, w] or [n, 3, h, w] RGB; got shape {tuple(t.shape)}")
    if not torch.isfinite(t).all() or t.min() < 0 or t.max() > 1:
        raise InputError("photo tensors hold RGB in [0, 1]; for a model input batch, pass "
                         "model.preprocess.inverse(x)")
    return t


def as_photos(photos: Photos, loaded: Optional[LoadedModel] = None, max_side: Optional[int] = None) -> torch.Tensor:
    """[n, 3, h, w] in [0, 1] on the CPU: each photo at its own size, or with ``loaded``, files and
    pictures resized and cropped as that model's Preprocess does. All must end up one size.
    ``max_side``: a photo (not a tensor) whose longer side is larger is first scaled down to it,
    with a warning, so that a huge photo never reaches the model at full size."""
    items = list(photos) if isinstance(photos, list) else [photos]
    if not items:
        raise InputError("no photo given; pass an image path, PIL image, numpy array or tensor in [0, 1]")
    batch: List[torch.Tensor] = []
    for item in items:
        if isinstance(item, torch.Tensor):
            batch.extend(_tensor01(item))
            continue
        pil = as_pil(item)
        if max_side is not None and max(pil.size) > max_side:
            w, h = pil.size
            scale = max_side / max(w, h)
            warnings.warn(f"a {w}x{h} photo was scaled down to {round(w * scale)}x{round(h * scale)} "
                          f"(max_side={max_side})", stacklevel=3)
            pil = pil.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.LANCZOS,
                             reducing_gap=3.0)
        batch.append(loaded.preprocess.pil_to_tensor01(pil) if loaded is not None else pil_to01(pil))
    sizes = sorted({tuple(t.shape[1:]) for t in batch})
    if len(sizes) > 1:
        raise InputError(f"the photos have different sizes {[s[1:] for s in sizes]}; give photos of one size "
                         "(or pass size=(h, w)), or call once per photo")
    return torch.stack(batch)


def _layer_names(loaded: LoadedModel, layers: Union[UnitLike, Sequence[UnitLike]]) -> List[str]:
    # a list or tuple holds several layers; anything else is one
    items = ([cast(UnitLike, layers)] if isinstance(layers, str) or not isinstance(layers, (list, tuple))
             else list(layers))
    if not items:
        raise UnitError("give at least one layer, e.g. 'blocks.2'")
    units = [as_unit(loaded.module, u) for u in items]
    for u in units:
        if u.channel is not None:
            raise UnitError(f"{u} is a unit; this takes whole layers, e.g. {u.layer!r}")
    return [u.layer for u in units]


def _non_negative(**values: object) -> None:
    for name, v in values.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0:
            raise NetloupeError(f"{name} must be a number >= 0; got {v!r}")


def _count(**values: object) -> None:
    for name, v in values.items():
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise NetloupeError(f"{name} must be an integer >= 1; got {v!r}")


def _activations(loaded: LoadedModel, images01: torch.Tensor, names: Sequence[str]) -> Dict[str, torch.Tensor]:
    """Each layer's output for the images as render shows them (no transforms), detached."""
    with probe(loaded.module, list(names), detach=True) as p, torch.no_grad():
        forward(loaded.module, (model_input(images01, loaded),))
    return {n: p.activations[n] for n in names}


def _indexed(objectives: Sequence[obj.Objective]) -> obj.Objective:
    """Objective i on batch element i (their sum, each restricted to its element)."""
    return functools.reduce(operator.add, [o.on(i) for i, o in enumerate(objectives)])


# -- DeepDream with octaves --------------------------------------------------------------------

def _dream_objective(loaded: LoadedModel, what: Union[obj.Objective, int, UnitLike]) -> obj.Objective:
    """An objective as given; a class index as its logit; a unit as from_unit; a bare layer as
    DeepDream's mean squared activation, which needs a layer with a grid."""
    if isinstance(what, obj.Objective):
        return what
    if isinstance(what, int) and not isinstance(what, bool):
        return obj.class_logit(what)
    unit = as_unit(loaded.module, cast(UnitLike, what))  # a bool too: as_unit refuses it
    if unit.channel is not None:
        return obj.from_unit(unit)
    squares = obj.deepdream(unit.layer)

    def fn(ctx: obj.Context) -> torch.Tensor:
        a = ctx.activation(unit.layer)
        if ctx.layout(unit.layer).spatial(a.shape) is None:
            raise UnitError(f"DeepDream amplifies the patterns of a layer with a grid; {unit.layer or 'the output'!r} "
                            f"gives {tuple(a.shape)}: give a convolutional layer, or a class (an int) or unit "
                            "('layer:channel') to dream of")
        return squares(ctx)
    return obj.Objective(fn, squares.name, squares.needs)


def _resized(x: torch.Tensor, hw: Sequence[int]) -> torch.Tensor:
    """``x`` [n, c, h, w] at size ``hw``; as it is when already that size."""
    if tuple(x.shape[2:]) == tuple(hw):
        return x
    return F.interpolate(x, size=tuple(hw), mode="bilinear", align_corners=False, antialias=True)


def dream(model: ModelLike, photos: Photos, layer_or_objective: Union[obj.Objective, int, UnitLike], *,
          octaves: int = 4, octave_scale: float = 1.4, steps_per_octave: int = 10, lr: float = 0.01, jitter: int = 32,
          transforms: TransformSpec = None, mask: Optional[ImageLike] = None, size: Optional[Size] = None,
          max_side: int = MAX_SIDE, seed: Optional[int] = None, progress: bool = True) -> PhotoRendering:
    """DeepDream on photos, Mordvintsev's way: the photo at ``octaves`` scales, each
    ``octave_scale`` times smaller than the next, dreamed from the smallest up; each octave starts
    from its scale of the photo plus the detail dreamed so far (dreamed minus photo), upscaled.
    Each step rolls the image by up to ``jitter`` pixels and moves it by ``lr`` per pixel on
    average (the gradient over its mean absolute value), so the result keeps the photo's size,
    and its colours wherever nothing was dreamed.

    layer_or_objective: a layer (its mean squared activation), a unit ``"layer:channel"``, a
    class index, or any objective. photos: one photo or several of one size (``size=(h, w)``
    resizes them), dreamed in one batch, each as it would be alone with the same seed.
    max_side: photos (files, pictures, arrays) with a longer side are scaled down to it first,
    with a warning (memory grows with the photo's area: an 8000 x 8000 photo would need gigabytes
    per octave); tensors are taken as they are.
    mask: where to dream (see optvis.param.as_mask); outside it the photo stays exactly as is.
    transforms: more transforms after the roll (render's ``transforms=``).
    """
    loaded = as_loaded(model)
    _count(octaves=octaves, steps_per_octave=steps_per_octave)
    _non_negative(lr=lr, jitter=jitter)
    if isinstance(octave_scale, bool) or not isinstance(octave_scale, (int, float)) or octave_scale < 1:
        raise NetloupeError(f"octave_scale is how much smaller each octave is and must be >= 1; got {octave_scale!r}")
    if isinstance(max_side, bool) or not isinstance(max_side, int) or max_side < 2:
        raise NetloupeError(f"max_side is the longest photo side dreamed at, an integer >= 2; got {max_side!r}")
    base = as_photos(photos, max_side=max_side)
    if size is not None:
        base = _resized(base, size_hw(size)).clamp(0, 1)
    objective = _dream_objective(loaded, layer_or_objective)
    h, w = base.shape[2:]
    sizes = [(round(h / octave_scale ** k), round(w / octave_scale ** k)) for k in reversed(range(octaves))]
    smallest = 2 if octaves == 1 else min_size(loaded)  # the photo itself is the user's to choose
    if min(sizes[0]) < smallest:
        raise NetloupeError(f"the smallest of {octaves} octaves of a {h}x{w} photo would be {sizes[0][0]}x"
                            f"{sizes[0][1]} px, below {smallest} px ({loaded.name}'s total stride: less than one cell "
                            "of its coarsest layer); use fewer octaves or a smaller octave_scale")
    where = None if mask is None else as_mask(mask, (h, w))  # checked before any work
    transform = tf.compose(tf.roll(jitter), transforms)
    detail = torch.zeros(base.shape[0], 3, *sizes[0])
    history: List[torch.Tensor] = []
    snapshots: Dict[int, torch.Tensor] = {}
    done = 0
    for k, hw in enumerate(sizes):
        octave = _resized(base, hw).clamp(0, 1)  # the filter may overshoot a little; a no-op at full size
        start = pixels(octave + _resized(detail, hw))
        param = start if where is None else masked(octave, _resized(where, hw).clamp(0, 1), start)
        r = render(loaded, objective, param, transforms=transform, steps=steps_per_octave, progress=progress,
                   optimizer=lambda ps: Ascent(ps, lr, normalize=True), after_step=lambda step, p: start.clamp_(),
                   seed=None if seed is None else seed + k, resize=False)
        detail = r.images.cpu() - octave
        history.append(r.history)
        done += steps_per_octave
        snapshots[done] = r.images
    n = base.shape[0]
    return PhotoRendering(r.images, torch.cat(history), snapshots, str(objective), [f"dream {objective}"] * n,
                          photos=base, photo_captions=["photo"] * n, ncol=n)


# -- feature inversion -------------------------------------------------------------------------

def _one_photo(loaded: LoadedModel, photo: Photos) -> torch.Tensor:
    photo = as_photos(photo, loaded)
    if photo.shape[0] != 1:
        raise InputError(f"this takes one photo and got {photo.shape[0]}; call it once per photo")
    return photo


def invert(model: ModelLike, photo: Photos, layers: Union[UnitLike, Sequence[UnitLike]], *, steps: int = 300,
           lr: float = 0.1, tv_weight: float = 0.1, range_weight: float = 0.05, fft: bool = True,
           decorrelate: bool = True, transforms: TransformSpec = None, mask: Optional[ImageLike] = None,
           seed: Optional[int] = None, progress: bool = True) -> Inversion:
    """Feature inversion (Mahendran & Vedaldi 2015): from noise, the image whose activations at a
    layer match the photo's, minimizing the relative error ||a - a0|| / ||a0|| plus ``tv_weight``
    times the mean absolute difference of neighbouring pixels plus ``range_weight`` times
    objectives.alpha_norm (the range prior). Several layers are inverted in one batch, one element
    per layer; ``errors`` says how close each came. transforms (none by default): render's, the
    batch cropped back to the photo's size after them; mask: invert only there, the photo
    elsewhere."""
    loaded = as_loaded(model)
    names = _layer_names(loaded, layers)
    _count(steps=steps)
    _non_negative(lr=lr, tv_weight=tv_weight, range_weight=range_weight)
    photo = _one_photo(loaded, photo)
    h, w = photo.shape[2:]
    targets = _activations(loaded, photo, names)
    matches = [obj.match(n, targets[n][0]) for n in names]
    priors = tv_weight / (3 * h * w) * obj.total_variation() + range_weight * obj.alpha_norm()
    param: Param = noise((h, w), n=len(names), fft=fft, decorrelate=decorrelate, seed=seed)
    if mask is not None:
        param = masked(photo, mask, param)
    r = render(loaded, _indexed(matches) - priors, param, transforms=tf.compose(transforms, tf.fit(h, w)),
               steps=steps, lr=lr, seed=seed, progress=progress)
    reached = _activations(loaded, r.images, names)
    errors = torch.stack([(reached[n][i] - targets[n][0]).norm() / (targets[n][0].norm() + 1e-12)
                          for i, n in enumerate(names)]).cpu()
    return Inversion(r.images, r.history, r.snapshots, r.objective,
                     [f"{n}\nerror {e:.3f}" for n, e in zip(names, errors.tolist())], photos=photo,
                     photo_captions=["photo"], layers=names, errors=errors)


# -- adversarial twins and caricatures ---------------------------------------------------------

def _logits(loaded: LoadedModel, x01: torch.Tensor) -> torch.Tensor:
    t = obj.main_output(forward(loaded.module, (model_input(x01, loaded),)))
    if t.dim() != 2:
        raise NetloupeError(f"an adversarial attack needs a classifier returning [N, classes] logits; {loaded.name} "
                            f"returns shape {tuple(t.shape)}")
    return t


def _label(loaded: LoadedModel, logits: torch.Tensor) -> List[str]:
    probs = logits.float().softmax(1)
    p, c = probs.max(1)
    names = loaded.labels if loaded.labels and len(loaded.labels) == probs.shape[1] else None
    return [f"{names[i] if names else i} {q:.0%}" for q, i in zip(p.tolist(), c.tolist())]


def adversarial(model: ModelLike, photos: Photos, target: Union[int, str, None] = None, *, eps: float = 4 / 255,
                steps: int = 10,
                step_size: Optional[float] = None, seed: Optional[int] = None, progress: bool = True) -> Adversarial:
    """Adversarial twins by projected gradient descent in input space (Madry et al.): from a random
    start within ``eps`` of each photo (L-inf, [0, 1] pixels), ``steps`` signed-gradient steps of
    ``step_size`` (default 2.5 eps / steps) that raise the cross-entropy of the photo's predicted
    class (untargeted) or lower that of ``target`` (a class index or label), each projected back
    into the eps-ball and [0, 1]."""
    loaded = as_loaded(model)
    _count(steps=steps)
    _non_negative(eps=eps, **({} if step_size is None else {"step_size": step_size}))
    x0 = as_photos(photos, loaded).to(loaded.device)
    alpha = 2.5 * eps / steps if step_size is None else step_size
    g = generator(seed, "cpu")
    delta = ((torch.rand(x0.shape, generator=g) * 2 - 1) * eps).to(x0)
    history: List[torch.Tensor] = []
    with probe(loaded.module):
        with torch.no_grad():
            start = _logits(loaded, x0)
        before = start.argmax(1)
        goal = before if target is None else torch.full_like(before, loaded.class_index(target))
        if not 0 <= int(goal[0]) < start.shape[1]:
            raise NetloupeError(f"target class {int(goal[0])} is out of range for {start.shape[1]} classes")
        sign = 1.0 if target is None else -1.0
        for _ in progress_bar(range(steps), total=steps, desc="adversarial", enabled=progress):
            x = (x0 + delta).clamp(0, 1).requires_grad_(True)
            with torch.enable_grad():
                loss = sign * F.cross_entropy(_logits(loaded, x), goal, reduction="none")
                (grad,) = torch.autograd.grad(loss.sum(), x)
            history.append(loss.detach())
            delta = (delta + alpha * grad.sign()).clamp(-eps, eps)
            delta = (x0 + delta).clamp(0, 1) - x0
        twins = (x0 + delta).clamp(0, 1)
        with torch.no_grad():
            end = _logits(loaded, twins)
    return Adversarial(twins, torch.stack(history).cpu(), {}, "adversarial", [f"twin: {c}" for c in _label(loaded, end)],
                       photos=x0, photo_captions=[f"photo: {c}" for c in _label(loaded, start)], ncol=len(x0),
                       before=before.cpu(), after=end.argmax(1).cpu(),
                       target=None if target is None else int(goal[0]), eps=float(eps))


_attack = adversarial  # inside caricature, its adversarial= flag hides the function's name


def caricature(model: ModelLike, photo: Photos, layers: Union[UnitLike, Sequence[UnitLike]], *,
               cossim_pow: float = 1.0, adversarial: bool = False, target: Union[int, str, None] = None,
               eps: float = 4 / 255, attack_steps: int = 10, steps: int = 256, lr: float = 0.05, fft: bool = True,
               decorrelate: bool = True, transforms: TransformSpec = "standard", mask: Optional[ImageLike] = None,
               seed: Optional[int] = None, progress: bool = True) -> Caricature:
    """Caricatures (Lucid): from noise, under the standard transforms, images that maximize
    dot(a, a0) * max(0.1, cos(a, a0)) ** cossim_pow at each layer, a0 the photo's activations:
    what the layer sees in the photo, exaggerated. One element per layer, in one batch.

    adversarial: also attack the photo (:func:`adversarial`, toward ``target`` or away from
    its class, ``eps``, ``attack_steps``) and caricature the twin at the same layers in the same
    batch; the sheet shows the photo and the twin, then one row per layer. mask: render only
    there, the photo (or twin) elsewhere."""
    loaded = as_loaded(model)
    names = _layer_names(loaded, layers)
    _count(steps=steps)
    _non_negative(lr=lr, cossim_pow=cossim_pow)
    photo = _one_photo(loaded, photo)
    h, w = photo.shape[2:]
    sources, labels = photo, ["photo"]
    twin: Optional[Adversarial] = None
    if adversarial:
        twin = _attack(loaded, photo, target, eps=eps, steps=attack_steps, seed=seed, progress=progress)
        # _attack captions both the photo and its twin
        sources = torch.cat([photo, twin.images.cpu()])
        labels = [cast(List[str], twin.photo_captions)[0], cast(List[str], twin.captions)[0]]
    s = len(sources)
    targets = _activations(loaded, sources, names)
    objective = _indexed([obj.direction(n, targets[n][j], cossim_pow) for n in names for j in range(s)])
    param: Param = noise((h, w), n=len(names) * s, fft=fft, decorrelate=decorrelate, seed=seed)
    if mask is not None:
        param = masked(sources.repeat(len(names), 1, 1, 1), mask, param)
    r = render(loaded, objective, param, transforms=tf.compose(transforms, tf.fit(h, w)), steps=steps, lr=lr,
               seed=seed, progress=progress)
    captions = [n + (" twin" if j == 1 else "") for n in names for j in range(s)]
    return Caricature(r.images, r.history, r.snapshots, r.objective, captions, photos=sources, photo_captions=labels,
                      ncol=s if s > 1 else len(names) + 1, layers=names, adversarial=twin)


# -- the command line ------------------------------------------------------------------------------

_LAYERS = Arg.of("--layers", required=True, help="comma-separated layer names, rendered in one batch")


@verb("dream", "DeepDream on photos, octave by octave (a PNG each + a contact sheet)", function=dream,
      out="netloupe-dream", order=50,
      args=(IMAGES, Arg.of("--layer", required=True, help="what to amplify: a layer, layer:channel, or :N for class N")),
      options={"octaves": Option("scales to dream at, each --octave-scale times smaller", minimum=1),
               "octave_scale": Option("size ratio of one octave to the next", minimum=1),
               "steps_per_octave": Option("optimization steps at each octave", minimum=1),
               "lr": Option("mean change of a pixel per step (pixels in [0, 1])", minimum=0),
               "max_side": Option("larger photos are scaled down to this longest side first", minimum=2,
                                  metavar="PX")})
def _dream_verb(args: argparse.Namespace, keywords: Dict[str, Any]) -> None:
    paths = image_paths(args.images)
    model = model_of(args)
    pictures: List[Image.Image] = []
    captions: List[str] = []
    for name, path in zip(args.images, paths):  # one call per photo: photos keep their own sizes
        r = dream(model, path, args.layer, **keywords)
        save(r.to_pil(), Path(args.out) / f"{Path(name).stem}_dream.png")
        assert r.photos is not None  # a dream holds its photo
        pictures += [tensor_to_pil(r.photos[0]), r.pils()[0]]
        captions += [Path(name).stem, f"dream {args.layer}"]
    image_grid(pictures, captions, ncol=2).save(Path(args.out) / "contact_sheet.png")
    print(f"wrote {len(paths)} dream(s) and contact_sheet.png to {Path(args.out).resolve()}")


@verb("invert", "feature inversion: images whose activations match a photo's at layers", function=invert,
      out="netloupe-invert", order=51, args=(IMAGE, _LAYERS),
      options={"steps": Option("optimization steps", minimum=1),
               "tv_weight": Option("weight of the total-variation prior", minimum=0)})
def _invert_verb(args: argparse.Namespace, keywords: Dict[str, Any]) -> None:
    (path,) = image_paths([args.image])
    r = invert(model_of(args), path, layer_list(args.layers), **keywords)
    assert r.layers is not None and r.errors is not None  # an inversion names its layers and their errors
    for layer, error in zip(r.layers, r.errors.tolist()):
        print(f"{layer}: relative activation error {error:.3f}")
    r.write(args.out, Path(args.image).stem)
    print(f"wrote {len(r.layers)} inversion(s) and contact_sheet.png to {Path(args.out).resolve()}")


@verb("caricature", "caricatures: what layers see in a photo, exaggerated (Lucid)", function=caricature,
      out="netloupe-caricature", order=52, args=(IMAGE, _LAYERS),
      options={"adversarial": Option("also caricature the photo's adversarial twin"),
               "eps": Option("the twin's largest pixel change, pixels in [0, 1] (default: 4/255)", minimum=0),
               "steps": Option("optimization steps", minimum=1)})
def _caricature_verb(args: argparse.Namespace, keywords: Dict[str, Any]) -> None:
    (path,) = image_paths([args.image])
    r = caricature(model_of(args), path, layer_list(args.layers), **keywords)
    if r.adversarial is not None:
        assert r.photos is not None and r.photo_captions is not None  # the photo and its twin, captioned
        save(r.photos[1], Path(args.out) / f"{Path(args.image).stem}_twin.png")
        print(" | ".join(r.photo_captions))
    r.write(args.out, Path(args.image).stem)
    print(f"wrote {len(r)} caricature(s) and contact_sheet.png to {Path(args.out).resolve()}")
