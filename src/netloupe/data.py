"""What a dataset can be and how its samples stream to a model: folders, image lists and pair
lists, lists of images, torch Datasets and DataLoaders (every capability that reads data takes
these: scans, comparisons, the explorer, the atlas), each sample turned into the model's inputs."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, List, Optional, Protocol, Tuple, Union, cast

import numpy as np
import torch
from PIL import Image

from . import runtime
from .errors import InputError
from .images import Preprocess

#: the image files a folder of data holds (and the suffixes that make a path a picture to write)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


class MapStyle(Protocol):
    """A map-style dataset as scan reads one: ``len(data)`` samples, ``data[i]`` the i-th (a torch
    Dataset with __len__, a list, anything indexable)."""

    def __getitem__(self, index: int) -> Any: ...

    def __len__(self) -> int: ...


# what data= takes: a folder, an image (list) file, a map-style dataset or list of samples, a DataLoader
DataLike = Union[str, os.PathLike, "Source", MapStyle, "torch.utils.data.DataLoader[Any]"]
ToInputs = Callable[[Any], Any]  # one sample -> the model's inputs (a tensor or image, or a tuple of them)
Loaded = Tuple[int, Optional[Tuple[torch.Tensor, ...]], Optional[str]]  # (index, inputs or None, why not)


@dataclass
class Source:
    """Any accepted ``data`` as a map-style dataset: ``dataset[i]`` is one raw sample (a path,
    a pair of paths, a PIL image, a tensor, an (image, label) tuple...), ``ids[i]`` its name.
    ``batches`` are the index batches of a user's DataLoader (None: formed from batch_size)."""

    dataset: Any
    ids: List[str]
    batches: Optional[List[List[int]]] = None
    num_workers: int = 0

    def __len__(self) -> int:
        return len(self.ids)


def _is_image(x: object) -> bool:
    return isinstance(x, (str, os.PathLike, Image.Image, np.ndarray)) or (isinstance(x, torch.Tensor) and x.dim() >= 3)


def _list_file(path: Path) -> List[Union[str, Tuple[str, str]]]:
    """Lines of an image list: one path per line, or two (a siamese pair) separated by a tab,
    a comma or spaces; a trailing integer (a Caffe-style label) is ignored. Relative paths are
    taken from the list's folder."""
    def resolve(p: str) -> str:
        q = Path(p).expanduser()
        return str(q if q.is_absolute() or q.exists() else path.parent / q)

    items: List[Union[str, Tuple[str, str]]] = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if Path(resolve(line)).exists():
            items.append(resolve(line))
            continue
        parts = [s.strip() for s in (line.split("\t") if "\t" in line else line.split(",") if "," in line
                                     else line.split())]
        parts = [s for s in parts if s]
        if len(parts) > 1 and parts[-1].lstrip("-").isdigit():
            parts = parts[:-1]
        if len(parts) == 1:
            items.append(resolve(parts[0]))
        elif len(parts) == 2:
            items.append((resolve(parts[0]), resolve(parts[1])))
        else:
            raise InputError(f"{path}: cannot read the line {line!r}; write one image path per line, "
                             "or two paths separated by a tab for a pair")
    return items


def _name(item: object, i: int) -> str:
    if isinstance(item, (str, os.PathLike)):
        return str(item)
    if isinstance(item, tuple) and item and all(isinstance(s, (str, os.PathLike)) for s in item):
        return "|".join(map(str, item))
    return str(i)


def as_source(data: DataLike) -> Source:
    """A folder (recursive), an image-list or pair-list text file, an image file, a list of
    images/paths/pairs, a torch Dataset or a DataLoader, as a :class:`Source`."""
    from torch.utils.data import DataLoader, DistributedSampler, IterableDataset

    if isinstance(data, Source):
        return data
    if isinstance(data, DataLoader):
        if isinstance(data.dataset, IterableDataset) or data.batch_sampler is None and data.sampler is None:
            raise InputError("netloupe needs a map-style dataset (with __getitem__ and __len__) behind the DataLoader; "
                             "an IterableDataset cannot be sharded or revisited for top patches")
        inner = as_source(cast(MapStyle, data.dataset))  # map-style: as_source checks that it has a length
        if isinstance(data.sampler, DistributedSampler):  # scan shards by itself: take every sample once
            batches = [list(range(s.start, s.stop)) for s in runtime.chunks(len(inner), data.batch_size or 1)]
        elif data.batch_sampler is not None:
            batches = [list(b) for b in data.batch_sampler]
        else:
            batches = [[i] for i in data.sampler]
        src = Source(inner.dataset, inner.ids, batches, data.num_workers)
    elif isinstance(data, (str, os.PathLike)):
        path = Path(data).expanduser()
        if path.is_dir():
            files = sorted(str(p) for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            src = Source(files, files)
        elif path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
            src = Source([str(path)], [str(path)])
        elif path.is_file():
            items = _list_file(path)
            src = Source(items, [_name(it, i) for i, it in enumerate(items)])
        else:
            raise InputError(f"data {str(data)!r} does not exist; give a folder of images, an image list file, "
                             "a list of images or a torch Dataset")
    elif isinstance(data, (list, tuple)):
        items = list(data)
        src = Source(items, [_name(it, i) for i, it in enumerate(items)])
    elif hasattr(data, "__getitem__") and hasattr(data, "__len__"):
        names = getattr(data, "names", None)
        ids = [str(n) for n in names] if isinstance(names, (list, tuple)) and len(names) == len(data) \
            else [str(i) for i in range(len(data))]
        src = Source(data, ids)
    else:
        raise InputError(f"cannot read data from a {type(data).__name__}; give a folder, an image list file, a list of "
                         "images or paths, a torch Dataset or a DataLoader")
    if len(src) == 0:
        raise InputError(f"the data source {data if isinstance(data, (str, os.PathLike)) else type(data).__name__} "
                         f"holds no images; a folder is searched recursively for {', '.join(IMAGE_SUFFIXES)}")
    return src


def sample_inputs(sample: Any, preprocess: Preprocess, to_inputs: Optional[ToInputs] = None
                 ) -> Tuple[torch.Tensor, ...]:
    """One sample as the model's inputs, each an unbatched [C, H, W] tensor.

    ``to_inputs(sample)`` (if given) builds them, e.g. the two images of a pair; otherwise the
    sample's leading images are used (a pair of paths gives two inputs, an (image, label)
    tuple one). Paths, PIL images and arrays go through ``preprocess``; tensors are taken as
    already preprocessed."""
    parts = to_inputs(sample) if to_inputs is not None else sample
    if not isinstance(parts, (tuple, list)):
        parts = [parts]
    images: List[Any] = []
    for part in parts:
        if not _is_image(part):
            break
        images.append(part)
    if not images:
        raise InputError(f"a sample of type {type(parts[0]).__name__ if parts else 'empty'} holds no image; "
                         "give paths, PIL images, arrays or [C, H, W] tensors, or pass to_inputs= to build them")
    return tuple(preprocess(p)[0] for p in images)


class _Loading(torch.utils.data.Dataset):
    """Loads and preprocesses samples (in DataLoader workers too); an unreadable one becomes
    (index, None, reason) instead of an exception, so that the scan can skip it."""

    def __init__(self, source: Source, preprocess: Preprocess, to_inputs: Optional[ToInputs]) -> None:
        self.source, self.preprocess, self.to_inputs = source, preprocess, to_inputs

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int) -> Loaded:
        try:
            return i, sample_inputs(self.source.dataset[i], self.preprocess, self.to_inputs), None
        except (InputError, OSError, SyntaxError) as e:
            return i, None, str(e) or type(e).__name__


def _collate(items: List[Loaded]
             ) -> Tuple[torch.Tensor, Tuple[torch.Tensor, ...], List[Tuple[int, Optional[str]]]]:
    good = [(i, parts) for i, parts, _ in items if parts is not None]
    bad = [(i, err) for i, parts, err in items if parts is None]
    if not good:
        return torch.zeros(0, dtype=torch.long), (), bad
    shapes = {tuple(t.shape for t in parts) for _, parts in good}
    if len(shapes) > 1:
        raise InputError(f"samples in one batch have different input shapes {sorted(shapes)}; "
                         "resize them to one size (a Preprocess does) or use batch_size=1")
    stacked = tuple(torch.stack([parts[j] for _, parts in good]) for j in range(len(good[0][1])))
    return torch.tensor([i for i, _ in good], dtype=torch.long), stacked, bad


def load_batches(source: Source, preprocess: Preprocess, batches: List[List[int]],
                 to_inputs: Optional[ToInputs] = None, num_workers: int = 0) -> torch.utils.data.DataLoader[Any]:
    """The samples of ``source`` in ``batches`` (lists of indices), loaded and preprocessed (in
    ``num_workers`` processes): each item is (image ids, a tuple of input batches, the unreadable
    samples as (id, reason), which are left out)."""
    return torch.utils.data.DataLoader(_Loading(source, preprocess, to_inputs), batch_sampler=batches,
                                       num_workers=num_workers or source.num_workers, collate_fn=_collate)
