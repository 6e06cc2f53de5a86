"""Progress bars for long work: tqdm when it is installed and a person is
watching (stderr is a terminal and CI is not set); silent otherwise."""

from __future__ import annotations

import os
import sys
from typing import Iterable, Optional, TypeVar

T = TypeVar("T")


def progress_enabled() -> bool:
    if os.environ.get("CI") or os.environ.get("MONOQUANT_NO_PROGRESS"):
        return False
    return sys.stderr.isatty()


def progress(items: Iterable[T], total: Optional[int] = None, desc: str = "") -> Iterable[T]:
    if not progress_enabled():
        return items
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return items
    return tqdm(items, total=total, desc=desc, leave=False)
