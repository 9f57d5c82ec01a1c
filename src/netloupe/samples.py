"""Offline sample photos (scikit-image's bundled colour photos) and a small demo dataset."""

from __future__ import annotations

import difflib
import os
from typing import List, Tuple

from PIL import Image, ImageOps

from .errors import InputError
from .images import load_image

# name -> file inside skimage/data that ships in the wheel (never fetched)
_FILES = {
    "chelsea": "chelsea.png",
    "coffee": "coffee.png",
    "rocket": "rocket.jpg",
    "astronaut": "astronaut.png",
    "motorcycle": "motorcycle_left.png",
    "hubble": "hubble_deep_field.jpg",
    "ihc": "ihc.png",
    "retina": "retina.jpg",
}


def _data_dir() -> str:
    import skimage

    return os.path.join(os.path.dirname(skimage.__file__), "data")


def names() -> List[str]:
    """Names of the sample photos present on this machine."""
    return [n for n, f in _FILES.items() if os.path.isfile(os.path.join(_data_dir(), f))]


def path(name: str) -> str:
    """File path of a sample photo."""
    if name not in _FILES:
        near = difflib.get_close_matches(str(name), names(), n=1)
        raise InputError(f"no sample photo named {name!r}; {f'did you mean {near[0]}? ' if near else ''}"
                         f"choose one of {', '.join(names())}")
    p = os.path.join(_data_dir(), _FILES[name])
    if not os.path.isfile(p):
        raise InputError(f"the sample photo {name!r} is missing from scikit-image's data folder {_data_dir()}")
    return p


def image(name: str) -> Image.Image:
    """A sample photo as an RGB PIL image."""
    return load_image(path(name))


# Crops as (left, top, right, bottom) shares of the photo: the full view, the four disjoint
# quadrants, then a centre crop, so that images of one photo show different content.
_CROPS = {
    "full": (0.0, 0.0, 1.0, 1.0),
    "tl": (0.0, 0.0, 0.5, 0.5),
    "tr": (0.5, 0.0, 1.0, 0.5),
    "bl": (0.0, 0.5, 0.5, 1.0),
    "br": (0.5, 0.5, 1.0, 1.0),
    "centre": (0.25, 0.25, 0.75, 0.75),
}


class SampleDataset:
    """A deterministic list of PIL images made from the sample photos: every photo's full view,
    then each quadrant, then its centre; mirror images only after every distinct crop, so that
    the first ``len(names()) * 6`` images hold no picture twice (a top-k row never shows a photo
    next to its own mirror image)."""

    def __init__(self, n: int = 32, size: int = 256) -> None:
        if n < 1:
            raise InputError(f"a sample dataset needs n >= 1 images; got {n}")
        self.size = size
        self.names: List[str] = []
        self._specs: List[Tuple[str, str, bool]] = []
        photos = names()
        variants = [(crop, flip) for flip in (False, True) for crop in _CROPS]
        for k in range(n):
            photo = photos[k % len(photos)]
            crop, flip = variants[(k // len(photos)) % len(variants)]
            self._specs.append((photo, crop, flip))
            self.names.append(f"{photo}-{crop}{'-flip' if flip else ''}")

    def __len__(self) -> int:
        return len(self._specs)

    def __getitem__(self, i: int) -> Image.Image:
        photo, crop, flip = self._specs[i]
        im = image(photo)
        w, h = im.size
        left, top, right, bottom = _CROPS[crop]
        im = im.crop((round(left * w), round(top * h), round(right * w), round(bottom * h)))
        if flip:
            im = ImageOps.mirror(im)
        return ImageOps.fit(im, (self.size, self.size), Image.Resampling.BICUBIC)


def dataset(n: int = 32, size: int = 256) -> SampleDataset:
    """``n`` deterministic images (crops of the sample photos, mirrored ones last), ``size`` pixels square."""
    return SampleDataset(n, size)
