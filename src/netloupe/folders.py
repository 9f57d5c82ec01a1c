"""What results leave on disk: a folder of one JSON file (what the result holds) and one npz of its
arrays, never a pickle, which :class:`Stored` results write with ``save(folder)`` and read back
with ``load(folder)``; and the HTML pages of reports, from the templates each package ships
(Jinja2, every value escaped)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Dict, Tuple, Type, TypeVar, Union

import numpy as np

from .data import IMAGE_SUFFIXES
from .errors import InputError
from .images import Picture

if TYPE_CHECKING:
    import jinja2

_S = TypeVar("_S", bound="Stored")
#: a result's contents: (what the JSON file holds, the arrays by name)
Contents = Tuple[Dict[str, Any], Dict[str, np.ndarray]]


class Stored(Picture):
    """A result that saves itself as a folder ``KIND.json`` + ``KIND.npz`` (or, to a path with an
    image suffix, as its picture, as every result's save does). Subclasses give ``KIND``,
    ``FORMAT`` (raised when what is written changes), :meth:`contents` and :meth:`from_contents`."""

    KIND: ClassVar[str] = ""
    FORMAT: ClassVar[int] = 1

    def contents(self) -> Contents:  # pragma: no cover - defined by each result
        raise NotImplementedError

    @classmethod
    def from_contents(cls: Type[_S], meta: Dict[str, Any], arrays: Dict[str, np.ndarray]) -> _S:  # pragma: no cover
        raise NotImplementedError

    def save(self, path: Union[str, os.PathLike], **kw: Any) -> Path:
        """Write what ``path`` says: a path ending in an image suffix gets the picture,
        ``to_pil(**kw)``; any other path is a folder that :meth:`load` reads back."""
        if Path(path).suffix.lower() in IMAGE_SUFFIXES:
            return super().save(path, **kw)
        if kw:
            raise InputError(f"{', '.join(kw)}: options of the picture; save it to a path ending in .png, or "
                             f"leave them out to save the {self.KIND} folder")
        meta, arrays = self.contents()
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(out / f"{self.KIND}.npz", **arrays)  # type: ignore[arg-type]  # arrays by name
        (out / f"{self.KIND}.json").write_text(json.dumps({"format": self.FORMAT, **meta}, indent=1))
        return out

    @classmethod
    def load(cls: Type[_S], directory: Union[str, os.PathLike]) -> _S:
        """The result that ``save`` wrote into ``directory``."""
        d = Path(directory)
        if not (d / f"{cls.KIND}.json").is_file() or not (d / f"{cls.KIND}.npz").is_file():
            raise InputError(f"{d} holds no saved {cls.KIND} ({cls.KIND}.json and {cls.KIND}.npz); write one with "
                             "result.save(folder)")
        meta = json.loads((d / f"{cls.KIND}.json").read_text())
        if meta.get("format") != cls.FORMAT:
            raise InputError(f"{d}/{cls.KIND}.json has format {meta.get('format')}; this netloupe reads format "
                             f"{cls.FORMAT}")
        with np.load(d / f"{cls.KIND}.npz", allow_pickle=False) as npz:
            arrays = {name: npz[name].copy() for name in npz.files}
        return cls.from_contents(meta, arrays)


def template(package: str, name: str) -> jinja2.Template:
    """The page template ``name`` shipped in ``package``'s templates folder (Jinja2, every value
    HTML-escaped, an undefined name an error)."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader(package), autoescape=True, undefined=jinja2.StrictUndefined)
    return env.get_template(name)
