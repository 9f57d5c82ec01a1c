"""What the explorer page shows, computed by netloupe's public functions and nothing else: the
explorer holds no interpretability logic of its own, so the page, the command line and a notebook
show the same numbers. Fast views (predictions, a layer's channel grid, a unit's maps) run at once
on the model, one request at a time; long work (renders, scans, class maps, dropout views) runs
in a background worker on its own copy of the model, so the page stays live."""

from __future__ import annotations

import collections
import copy
import hashlib
import io
import itertools
import json
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, TypeVar, Union

import torch
from PIL import Image

from .. import images, runtime, samples
from ..attribution import METHODS, grad_cam, lookup
from ..data import IMAGE_SUFFIXES, DataLike, Source, as_source, sample_inputs
from ..dropout import augment
from ..errors import InputError, NetloupeError
from ..layouts import Layout
from ..models import LoadedModel, ModelLike, as_loaded
from ..optvis import visualize
from ..probe import probe
from ..stats import Patches, ScanResult, scan, top_patches
from ..units import Unit, check_channel

#: uploads larger than this many bytes are refused (413)
MAX_UPLOAD_BYTES = 16 * 2 ** 20
#: and so are those with more pixels than this (decompression bombs included)
MAX_UPLOAD_PIXELS = 40_000_000


@dataclass(frozen=True)
class View:
    """How a method of the Explorer is served (app.create_app reads these): its HTTP ``verb`` and
    ``path``, and what it answers with (``kind``): "json" (a dict or list), "png" (PNG bytes, a
    picture, or PNG bytes with headers) or "job" (a Job, answered by its status). ``params``: the
    method's parameters a request may set (default: all); a parameter ``ref`` is the request's
    ``input``."""

    verb: str
    path: str
    kind: str = "json"
    params: Optional[Tuple[str, ...]] = None


_M = TypeVar("_M", bound=Callable[..., Any])


def view(verb: str, path: str, kind: str = "json", params: Optional[Tuple[str, ...]] = None) -> Callable[[_M], _M]:
    """Declare the decorated Explorer method as a route (see :class:`View`)."""
    def declare(method: _M) -> _M:
        method.__view__ = View(verb, path, kind, params)  # type: ignore[attr-defined]
        return method
    return declare


class NotFound(NetloupeError):
    """Something a request names (an input, a layer, a job) that does not exist: a 404."""


class TooLarge(NetloupeError):
    """An upload over the byte or pixel limit: a 413."""


class Cancelled(Exception):
    """Raised inside a running job whose result nobody wants any more (see Worker.cancel)."""


@dataclass
class Job:
    """A piece of long work: its progress (``done`` of ``total`` in step ``desc``) and, when it is
    done, its result (a PIL image) or its error. ``auto``: started by the page on its own (not by a
    button), so newer automatic work of its kind may cancel it."""

    id: str
    kind: str
    key: tuple = ()
    state: str = "queued"  # queued, running, done, failed, cancelled
    desc: str = ""
    done: int = 0
    total: Optional[int] = None
    error: str = ""
    result: Any = None
    auto: bool = False
    cancel: bool = False
    started: float = field(default_factory=time.time)

    ENDED = ("done", "failed", "cancelled")

    def status(self) -> dict:
        return {"id": self.id, "kind": self.kind, "state": self.state, "desc": self.desc, "done": self.done,
                "total": self.total, "error": self.error}


class Worker:
    """One background thread that runs jobs in order; the same work asked twice is one job (unless
    asked ``again``); jobs can be cancelled, queued or running."""

    def __init__(self) -> None:
        self.jobs: Dict[str, Job] = {}
        self._queue: "queue.Queue[Tuple[Job, Callable[[], Any]]]" = queue.Queue()
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        threading.Thread(target=self._run, name="netloupe-explorer-worker", daemon=True).start()

    def submit(self, kind: str, key: tuple, fn: Callable[[], Any], auto: bool = False, again: bool = False) -> Job:
        with self._lock:
            for job in self.jobs.values():
                if job.kind == kind and job.key == key and job.state in ("queued", "running", "done") \
                        and not job.cancel and not (again and job.state == "done"):
                    job.auto = job.auto and auto  # asked for by a button: no longer cancelled by automatic work
                    return job
            job = Job(f"{kind}-{next(self._ids)}", kind, key, auto=auto)
            self.jobs[job.id] = job
        self._queue.put((job, fn))
        return job

    def cancel(self, kind: str, keep: tuple, running: bool) -> None:
        """Cancel the automatic jobs of ``kind`` other than ``keep``'s that have not ended: queued ones
        are skipped, running ones (if ``running``) stop at their next progress step."""
        with self._lock:
            for job in self.jobs.values():
                if job.kind == kind and job.auto and job.key != keep and job.state not in Job.ENDED \
                        and (running or job.state == "queued"):
                    job.cancel = True

    def get(self, job_id: str) -> Job:
        if job_id not in self.jobs:
            raise NotFound(f"no job {job_id!r}; jobs are started by the explorer's endpoints")
        return self.jobs[job_id]

    def _run(self) -> None:
        while True:
            job, fn = self._queue.get()
            if job.cancel:
                job.state = "cancelled"
                continue
            job.state = "running"

            def listen(desc: str, done: int, total: Optional[int], job: Job = job) -> None:
                if job.cancel:
                    raise Cancelled(job.id)
                job.desc, job.done, job.total = desc, done, total
            try:
                with runtime.reporting(listen):
                    job.result = fn()
                job.state = "done"
            except Cancelled:
                job.state = "cancelled"
            except Exception as e:  # a failed job is shown on the page; the worker goes on
                job.error, job.state = f"{type(e).__name__}: {e}" if not isinstance(e, NetloupeError) else str(e), "failed"


def png(picture: Image.Image) -> bytes:
    """A picture as PNG bytes (fast compression: these go straight to a browser)."""
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


class Explorer:
    """The state behind the page: the model, the data, scans, uploads and the worker.

    data: anything ``scan`` accepts (a folder is read only inside itself: files that a link
    takes elsewhere are left out); scan_dir: a saved ScanResult; atlas_dir: an atlas whose renders
    are shown; cache_dir: where renders are kept between runs; render_steps: optimization steps of
    a unit's feature visualization (fewer on a slow CPU)."""

    def __init__(self, model: ModelLike, data: Optional[DataLike] = None,
                 scan_dir: Union[str, os.PathLike, None] = None, atlas_dir: Union[str, os.PathLike, None] = None,
                 cache_dir: Union[str, os.PathLike, None] = None, render_steps: int = 256) -> None:
        check_saved(scan_dir, atlas_dir)
        self.model: LoadedModel = as_loaded(model)
        self.source = _inside(as_source(data), data) if data is not None else None
        self.scans: Dict[str, ScanResult] = {}
        if scan_dir is not None:
            saved = ScanResult.load(scan_dir)
            self.scans.update({layer: saved for layer in saved.layers})
        self.atlas_dir = Path(atlas_dir) if atlas_dir else None
        self.render_steps = render_steps
        self.cache_dir = Path(cache_dir or Path.home() / ".cache" / "netloupe" / "explorer") / _model_key(self.model)
        self._lock = threading.Lock()  # the model serves one fast request at a time
        self._forwards: "collections.OrderedDict[str, dict]" = collections.OrderedDict()
        self._uploads: "collections.OrderedDict[str, Image.Image]" = collections.OrderedDict()
        self._upload_ids = itertools.count(1)
        self.worker = Worker()
        self._worker_model: Optional[LoadedModel] = None
        self._layers: Optional[List[dict]] = None
        self._patches: "collections.OrderedDict[Tuple[str, int], Patches]" = collections.OrderedDict()

    # -- inputs ------------------------------------------------------------------------------
    @view("GET", "/api/info")
    def info(self) -> dict:
        """What the page needs first: the model, its layers and methods, the inputs to choose from."""
        return {"model": self.model.name, "input_size": list(self.model.input_size), "start": self.sample_input(),
                "samples": [f"sample:{n}" for n in samples.names()],
                "data": len(self.source) if self.source is not None else 0,
                "layers": self.layers(), "methods": self.class_methods(),
                "backprop": list(self.BACKPROP), "scanned": sorted(self.scans)}

    def sample_input(self) -> str:
        """The input the page starts with: a pair from the data for a two-input model, else a photo."""
        if self.source is not None and isinstance(self.source.dataset[0], tuple):
            return "data:0"
        return "sample:chelsea" if "chelsea" in samples.names() else f"sample:{samples.names()[0]}"

    @view("GET", "/api/data")
    def data_page(self, page: int = 0, per_page: int = 24) -> dict:
        if self.source is None:
            return {"total": 0, "items": []}
        if page < 0 or not 1 <= per_page <= 200:
            raise InputError("page must be >= 0 and per_page between 1 and 200")
        start = page * per_page
        ids = self.source.ids[start:start + per_page]
        return {"total": len(self.source), "items": [{"input": f"data:{start + i}", "name": _short(name)}
                                                      for i, name in enumerate(ids)]}

    def upload(self, body: bytes) -> str:
        """Keep an uploaded picture (or a webcam frame); returns its input name."""
        if len(body) > MAX_UPLOAD_BYTES:
            raise TooLarge(f"the upload has {len(body):,} bytes; the limit is {MAX_UPLOAD_BYTES:,}")
        try:
            with Image.open(io.BytesIO(body)) as im:
                if im.width * im.height > MAX_UPLOAD_PIXELS:
                    raise TooLarge(f"the upload has {im.width * im.height:,} pixels; the limit is "
                                   f"{MAX_UPLOAD_PIXELS:,}")
                im.load()
                picture = images.to_rgb(im)
        except Image.DecompressionBombError as e:
            raise TooLarge(f"the upload is refused as a decompression bomb ({e})") from None
        except (OSError, SyntaxError, ValueError, Image.UnidentifiedImageError):
            raise InputError("the upload is not an image netloupe can read; send a jpg, png, bmp or webp") from None
        key = f"upload:{next(self._upload_ids)}"
        self._uploads[key] = picture
        while len(self._uploads) > 32:
            self._uploads.popitem(last=False)
        return key

    def _sample(self, ref: str) -> Any:  # a photo, an upload or a sample of the data
        kind, _, name = ref.partition(":")
        if kind == "sample" and name in samples.names():
            return samples.image(name)
        if kind == "upload" and ref in self._uploads:
            return self._uploads[ref]
        if kind == "data" and self.source is not None and name.isdigit() and int(name) < len(self.source):
            return self.source.dataset[int(name)]
        raise NotFound(f"no input {ref!r}; inputs are sample:NAME, data:INDEX (of --data) or upload:N")

    def inputs(self, ref: str) -> Tuple[torch.Tensor, ...]:
        """The model's inputs for an input name, each a batch of one on the model's device."""
        parts = sample_inputs(self._sample(ref), self.model.preprocess)
        return tuple(t.unsqueeze(0).to(self.model.device, self.model.dtype) for t in parts)

    @view("GET", "/api/input.png", "png")
    def picture(self, ref: str, part: int = 0) -> Image.Image:
        """The input as the model sees it (after its preprocessing)."""
        x = self.inputs(ref)
        if not 0 <= part < len(x):
            raise NotFound(f"input {ref!r} has {len(x)} part(s)")
        return images.to_pil(self.model.preprocess.inverse(x[part].float().cpu())[0])

    # -- forward passes, kept per input --------------------------------------------------------
    def _forward(self, ref: str, layers: Sequence[str] = ()) -> dict:
        """The model's output on an input, and the outputs of ``layers`` (every call of each),
        from as few forward passes as the cache allows."""
        entry = self._forwards.get(ref)
        missing = [n for n in layers if entry is None or n not in entry["calls"]]
        if entry is None or missing:
            module = self.model.module
            x = self.inputs(ref)
            with self._lock, probe(module, missing, detach=True) as p, torch.no_grad():
                out = module(*x)
                calls = {k: list(v) for k, v in p.calls.items()}
                layouts = {k: p.layout(k, v[-1].shape) for k, v in calls.items() if v}
            if entry is None:
                entry = {"calls": {}, "layouts": {}, "output": out}
            entry["calls"].update(calls)
            entry["layouts"].update(layouts)
            self._forwards[ref] = entry
        self._forwards.move_to_end(ref)
        while len(self._forwards) > 8:
            self._forwards.popitem(last=False)
        return entry

    @view("GET", "/api/predict", params=("ref",))
    def predict(self, ref: str, top_k: int = 5) -> dict:
        """The input's top-k classes (none for a model whose output is not a class score vector)."""
        return {"input": ref, "predictions": self.predictions(ref, top_k)}

    def predictions(self, ref: str, top_k: int = 5) -> List[dict]:
        out = self._forward(ref)["output"]
        if not isinstance(out, torch.Tensor) or out.dim() != 2:
            return []
        probs = out.float().softmax(1)[0]
        top = probs.topk(min(top_k, len(probs)))
        labels = self.model.labels if self.model.labels and len(self.model.labels) == len(probs) else None
        return [{"class": int(i), "label": labels[int(i)] if labels else str(int(i)), "probability": float(p)}
                for p, i in zip(top.values, top.indices)]

    # -- layers ------------------------------------------------------------------------------
    def layers(self) -> List[dict]:
        """Every layer the model runs, in order, with its output shape and layout; a module run
        several times per forward (a siamese branch) is listed per call, as ``name#i``."""
        if self._layers is None:
            names = [n for n, _ in self.model.module.named_modules() if n]
            f = self._forward(self.sample_input(), names)
            self._forwards.pop(self.sample_input())  # every layer's output: too much to keep
            rows = []
            for name, calls in f["calls"].items():
                for i, a in enumerate(calls):
                    layout = f["layouts"][name]
                    rows.append({"name": name if len(calls) == 1 else f"{name}#{i}", "shape": list(a.shape[1:]),
                                 "layout": str(layout), "channels": layout.channels(a.shape),
                                 "grid": list(layout.spatial(a.shape) or [])})
            self._layers = rows
        return self._layers

    def _activation(self, ref: str, layer: str) -> Tuple[torch.Tensor, Layout]:
        name, _, call = layer.partition("#")
        if name not in dict(self.model.module.named_modules()):
            raise NotFound(f"no layer {layer!r}; the layer list names the model's layers")
        f = self._forward(ref, [name])
        calls = f["calls"].get(name)
        if not calls:
            raise NotFound(f"no layer {layer!r} ran on this input; the layer list names those that do")
        if call and (not call.isdigit() or int(call) >= len(calls)):
            raise NotFound(f"layer {name!r} ran {len(calls)} time(s); call #{call} does not exist")
        return calls[int(call or len(calls) - 1)], f["layouts"][name]

    def _maps(self, ref: str, layer: str) -> torch.Tensor:
        """A layer's channels as maps [C, h, w] (a vector layer: one 1 x 1 map per channel)."""
        a, layout = self._activation(ref, layer)
        grid = layout.grid_view(a)
        if grid is not None:
            return grid[0]
        return layout.positions(a)[0].unsqueeze(-1) if a.dim() > 2 else a[0].view(-1, 1, 1)

    @view("GET", "/api/layer.png", "png")
    def layer_grid(self, ref: str, layer: str, cmap: str = "viridis", norm: str = "channel"
                   ) -> Tuple[bytes, Dict[str, str]]:
        """Every channel's map in one tiled PNG, and where the tiles are (for the page's clicks, in
        the header X-Netloupe-Grid)."""
        maps = self._maps(ref, layer)
        picture, ncol = images.channel_grid(maps, cmap, norm)
        grid = {"channels": maps.shape[0], "cols": ncol, "tile": list(maps.shape[1:]), "pad": 1}
        return png(picture), {"X-Netloupe-Grid": json.dumps(grid)}

    # -- one unit ----------------------------------------------------------------------------
    def _unit(self, layer: str, channel: int) -> Unit:
        name = layer.partition("#")[0]
        known = {row["name"]: row for row in self.layers()}
        if layer not in known:
            raise NotFound(f"no layer {layer!r}; see the layer list")
        check_channel(layer, channel, known[layer]["channels"])
        return Unit(name, channel)

    @view("GET", "/api/unit/map.png", "png")
    def unit_map(self, ref: str, layer: str, channel: int) -> bytes:
        """The unit's activation map, large and over the input."""
        self._unit(layer, channel)
        m = self._maps(ref, layer)[channel]
        return png(images.overlay(self.picture(ref), m, cmap="jet", alpha=0.5).resize((224, 224)))

    BACKPROP = ("saliency", "guided_backprop", "deconvnet", "grad_cam")

    @view("GET", "/api/unit/backprop.png", "png")
    def unit_backprop(self, ref: str, layer: str, channel: int, method: str) -> bytes:
        """A unit's map on the input: its gradient, guided backprop, deconvnet, or Grad-CAM at the
        layer's input (which positions there drive it)."""
        unit = self._unit(layer, channel)
        if method not in self.BACKPROP:
            raise InputError(f"method must be one of {', '.join(self.BACKPROP)}; got {method!r}")
        x = self.inputs(ref)
        with self._lock:
            if method == "grad_cam":
                a = grad_cam(self.model, x if len(x) > 1 else x[0], str(unit), layer=unit.layer, layer_input=True)
                return png(a.to_pil(kind="overlay", index=0))
            a = lookup(method)(self.model, x if len(x) > 1 else x[0], str(unit))
        a = a.part(0) if a.several else a
        return png(a.to_pil(kind="raw" if method != "saliency" else "overlay", index=0))

    @view("GET", "/api/unit")
    def unit_info(self, layer: str, channel: int) -> dict:
        """What the scan knows of a unit (if its layer was scanned): statistics and the channels
        most correlated with it; and whether its render is ready."""
        self._unit(layer, channel)
        info: dict = {"layer": layer, "channel": channel, "scanned": layer in self.scans,
                      "render": self._render_file(layer, channel) is not None, "data": self.source is not None}
        if layer in self.scans:
            s = self.scans[layer][layer]
            corr = s.correlation[channel].clone()
            corr[channel] = float("nan")
            order = [int(c) for c in torch.nan_to_num(corr.abs(), nan=-1).argsort(descending=True)[:8]]
            info.update(mean=float(s.mean[channel]), max=float(s.max[channel]), dead=channel in s.dead_channels,
                        images=s.count,
                        correlated=[{"channel": c, "r": float(s.correlation[channel, c])} for c in order
                                    if not torch.isnan(s.correlation[channel, c])])
        return info

    def _top_patches(self, layer: str, channel: int) -> Patches:
        """The unit's top patches over the scanned data, kept for the last few units asked."""
        self._unit(layer, channel)
        if layer not in self.scans:
            raise NotFound(f"layer {layer!r} has not been scanned; start its scan first")
        key = (layer, channel)
        if key not in self._patches:
            result = self.scans[layer]
            with self._lock:  # top_patches runs the live model (receptive field, fired maps): one request at a time
                self._patches[key] = top_patches(result, layer, channel, model=self.model,
                                                 data=None if result.source else self.source)
            while len(self._patches) > 16:
                self._patches.popitem(last=False)
        self._patches.move_to_end(key)
        return self._patches[key]

    @view("GET", "/api/unit/patches")
    def unit_patches(self, layer: str, channel: int) -> dict:
        """Where the unit fires most over the data: each top patch's image and value (the pictures
        come from :meth:`unit_patch`)."""
        p = self._top_patches(layer, channel)
        return {"layer": layer, "channel": channel, "field": list(p.field.size), "whole": p.field.clipped,
                "patches": [{"image": _short(p.image_ids[j]), "value": float(p.values[j])} for j in range(len(p.values))]}

    @view("GET", "/api/unit/patch.png", "png")
    def unit_patch(self, layer: str, channel: int, index: int, size: int = 160) -> bytes:
        """Top patch ``index`` of the unit, ``size`` pixels per window width, cropped at its image's
        border (a deep unit's patch is its whole image with the unit's map over it)."""
        p = self._top_patches(layer, channel)
        if not 0 <= index < len(p.values):
            raise NotFound(f"the unit has {len(p.values)} top patches; there is no patch {index}")
        if not 16 <= size <= 1024:
            raise InputError(f"size must be between 16 and 1024 pixels; got {size}")
        return png(p.tile(index, size))

    @view("GET", "/api/unit/channel.png", "png")
    def unit_channel(self, ref: str, layer: str, channel: int, cmap: str = "viridis") -> bytes:
        """The unit's channel map on the input, enlarged in nearest-neighbour blocks, with its colour bar."""
        self._unit(layer, channel)
        return png(images.scaled_map(self._maps(ref, layer)[channel], cmap, side=180))

    @view("GET", "/api/unit/histogram.png", "png")
    def unit_histogram(self, layer: str, channel: int) -> bytes:
        self._unit(layer, channel)
        if layer not in self.scans:
            raise NotFound(f"layer {layer!r} has not been scanned; start its scan first")
        s = self.scans[layer][layer]
        edges, counts = s.histogram(channel)
        fig, axes = images.figure(figsize=(3.2, 1.8), dpi=100)
        ax = axes[0, 0]
        ax.stairs(counts, edges, fill=True, color="#1f77b4")
        ax.axvline(0, color="#888", lw=0.5)
        ax.set_title(f"{layer}:{channel} per-image max, {s.count} images", fontsize=7)
        ax.tick_params(labelsize=6)
        fig.tight_layout()
        return png(images.figure_to_pil(fig))

    # -- long work ---------------------------------------------------------------------------
    def _copy(self) -> LoadedModel:
        """The worker's own model: long work never holds the live model."""
        if self._worker_model is None:
            with self._lock:  # never copy the live model while a fast request has its hooks on it
                self._worker_model = copy.deepcopy(self.model)
        return self._worker_model

    def _render_file(self, layer: str, channel: int) -> Optional[Path]:
        for folder in ([self.atlas_dir / "renders"] if self.atlas_dir else []) + [self.cache_dir / "renders"]:
            path = folder / _file(layer) / f"{channel}.png"
            if path.is_file():
                return path
        return None

    @view("POST", "/api/render", "job", params=("layer", "channel", "auto", "again"))
    def start_render(self, layer: str, channel: int, steps: Optional[int] = None, size: int = 128,
                     auto: bool = False, again: bool = False) -> Job:
        """The unit's feature visualization, from the atlas or the render cache if there, else rendered
        in the background. auto: the page started it on its own for the unit it shows, so a newer
        automatic render cancels this one; again: render anew (another seed), replacing the cached one."""
        unit = self._unit(layer, channel)
        steps = steps or self.render_steps
        if "#" in layer:
            raise InputError("renders are of a layer's module; pick the layer without #i")
        key = (layer, channel, steps, size)
        if auto:
            self.worker.cancel("render", key, running=True)
        seed = sum(1 for job in self.worker.jobs.values() if job.kind == "render" and job.key == key) if again else 0

        def work() -> Image.Image:
            path = self._render_file(layer, channel)
            if path is not None and not again:
                return Image.open(path).convert("RGB")
            r = visualize(self._copy(), str(unit), size=size, steps=steps, seed=seed)
            out = self.cache_dir / "renders" / _file(layer) / f"{channel}.png"
            out.parent.mkdir(parents=True, exist_ok=True)
            r.to_pil(0).save(out)
            return r.to_pil(0)
        return self.worker.submit("render", key, work, auto=auto, again=again)

    @view("POST", "/api/scan", "job")
    def start_scan(self, layer: str, auto: bool = False, again: bool = False) -> Job:
        """Scan the layer over --data in the background (statistics, top patches, histograms). auto:
        the page started it for the layer it shows; a newer automatic scan takes the place of this
        one while it waits in the queue (a running scan goes on)."""
        source = self.source
        if source is None:
            raise InputError("there is no --data to scan; start the explorer with --data DIR")
        name, _, _ = layer.partition("#")
        self._unit(layer, 0)
        if auto:
            self.worker.cancel("scan", (name,), running=False)

        def work() -> None:
            result = scan(self._copy(), source, [name], top_k=9)
            self.scans.update({key: result for key in result.layers})
            self._patches.clear()
            return None
        return self.worker.submit("scan", (name,), work, auto=auto, again=again)

    @view("POST", "/api/class", "job")
    def start_class_map(self, ref: str, method: str, target: str = "top") -> Job:
        """Attribution ``method`` of the input for ``target`` (top, a class index, or a unit)."""
        m = lookup(method)
        x = self.inputs(ref)
        explained = int(target) if target.lstrip("-").isdigit() else target

        def work() -> Image.Image:
            a = m(self._copy(), x if len(x) > 1 else x[0], explained)
            a = a.part(0) if a.several else a
            return a.to_pil(kind=METHODS[method].view, index=0)
        return self.worker.submit("class", (ref, method, str(target)), work)

    def class_methods(self) -> List[dict]:
        return [{"name": name, "caption": m.caption} for name, m in METHODS.items() if m.applies(self.model.module)]

    @view("POST", "/api/dropout", "job")
    def start_dropout(self, ref: str, layer: str, n: int = 4) -> Job:
        x = self.inputs(ref)
        if len(x) > 1:
            raise InputError("dropout views take a one-input model")
        if not 1 <= n <= 8:
            raise InputError(f"n must be between 1 and 8; got {n}")

        def work() -> Image.Image:
            return augment(self._copy(), x[0], layer.partition("#")[0], n=n, seed=0).to_pil(cell=112)
        return self.worker.submit("dropout", (ref, layer, n), work)

    @view("GET", "/api/jobs/{job_id}")
    def job_status(self, job_id: str) -> dict:
        return self.worker.get(job_id).status()

    @view("GET", "/api/jobs/{job_id}/result.png", "png")
    def job_picture(self, job_id: str) -> bytes:
        job = self.worker.get(job_id)
        if job.state != "done" or not isinstance(job.result, Image.Image):
            raise NotFound(f"job {job_id} has no picture ({job.state}{': ' + job.error if job.error else ''})")
        return png(job.result)


def check_saved(scan_dir: Union[str, os.PathLike, None], atlas_dir: Union[str, os.PathLike, None]) -> None:
    """Refuse a saved scan or atlas folder that is not one, before any work: a scan folder holds
    what ScanResult.save writes, an atlas folder what netloupe.atlas writes."""
    if scan_dir is not None and not (Path(scan_dir) / "scan.json").is_file():
        raise InputError(f"--scan {scan_dir} is not a saved scan (a folder with scan.json and scan.npz, written by "
                         "`netloupe scan --out DIR` or result.save(DIR))")
    if atlas_dir is not None and not (Path(atlas_dir).is_dir() and (Path(atlas_dir) / "index.html").is_file()
                                      and (Path(atlas_dir) / "renders").is_dir()):
        raise InputError(f"--atlas {atlas_dir} is not an atlas (a folder with index.html and renders/, written by "
                         "`netloupe atlas --out DIR`)")


def _inside(source: Source, data: DataLike) -> Source:
    """A folder's files that really lie inside it (a link that leads out is left out)."""
    if not isinstance(data, (str, os.PathLike)) or not Path(data).is_dir():
        return source
    root = Path(data).resolve()
    keep = [i for i, path in enumerate(source.dataset) if root in Path(path).resolve().parents]
    if not keep:
        raise InputError(f"{data} holds no images inside it ({', '.join(IMAGE_SUFFIXES)})")
    return type(source)([source.dataset[i] for i in keep], [source.ids[i] for i in keep])


def _short(name: str) -> str:
    return "|".join(Path(part).name for part in name.split("|"))


def _file(layer: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in layer)


def _model_key(model: LoadedModel) -> str:
    """A short name for a model and its weights, for the render cache."""
    h = hashlib.sha1(model.name.encode())
    for name, t in itertools.islice(model.module.state_dict().items(), 0, None, 7):
        h.update(name.encode())
        h.update(t.detach().float().flatten()[:64].cpu().numpy().tobytes())
    return f"{_file(model.name)}-{h.hexdigest()[:12]}"
