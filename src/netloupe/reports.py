"""One ``report``: the HTML page of a result, whichever it is. A scan's (histograms, correlations,
top-k montages) and a comparison's (the most and least changed units side by side) each live
with their result; this picks the one that fits."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Union

from .compare import Comparison, comparison_report
from .errors import InputError
from .stats import ScanResult, scan_report


def report(result: Union[ScanResult, Comparison], directory: Union[str, os.PathLike], **kw: Any) -> Path:
    """Write ``result``'s report (pictures and index.html) into ``directory`` and return the
    index's path: :func:`netloupe.stats.scan_report` for a ScanResult,
    :func:`netloupe.compare.comparison_report` for a Comparison (``kw`` are theirs)."""
    if isinstance(result, ScanResult):
        return scan_report(result, directory, **kw)
    if isinstance(result, Comparison):
        return comparison_report(result, directory, **kw)
    raise InputError(f"report takes the result of netloupe.scan or netloupe.compare; got {type(result).__name__}")
