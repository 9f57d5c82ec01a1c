"""Old parameter names, kept working for one release with a DeprecationWarning, so that
renaming a parameter to the library's one name for its concept breaks no caller at once."""

from __future__ import annotations

import functools
import warnings
from typing import Any, Callable, TypeVar, cast

_F = TypeVar("_F", bound=Callable[..., Any])


def renamed(**old_to_new: str) -> Callable[[_F], _F]:
    """Let the decorated function take each old keyword as its new one (with a warning).
    ``@renamed(max_epochs="steps")`` maps ``f(max_epochs=5)`` to ``f(steps=5)``."""
    def decorate(fn: _F) -> _F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kw: Any) -> Any:
            for old, new in old_to_new.items():
                if old in kw:
                    if new in kw:
                        raise TypeError(f"{fn.__name__}() got both {old}= and {new}=; {old} is the old name of {new}")
                    warnings.warn(f"{fn.__name__}({old}=...) is deprecated and will be removed; use {new}=",
                                  DeprecationWarning, stacklevel=2)
                    kw[new] = kw.pop(old)
            return fn(*args, **kw)
        return cast(_F, wrapper)
    return decorate
