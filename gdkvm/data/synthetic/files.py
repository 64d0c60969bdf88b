"""File helpers shared by the synthetic writers: safe output folders, CSV tables, deterministic splits."""

from __future__ import annotations

import csv
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gdkvm.errors import InputError

logger = logging.getLogger(__name__)


def prepare_output(out: str | Path, overwrite: bool) -> Path:
    """Create ``out`` or accept it when empty; a non-empty folder needs ``overwrite`` (nothing is ever deleted).

    Raises:
        InputError: ``out`` is a file, a non-empty folder and ``overwrite`` is False, or cannot be created.
    """
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise InputError("exists and is not a folder", path)
    if path.is_dir() and any(path.iterdir()):
        if not overwrite:
            raise InputError("folder is not empty; pass overwrite=True (CLI: --overwrite) to write into it", path)
        logger.info("%s is not empty: files the generator writes are replaced, other files are left alone", path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(f"cannot create the output folder ({err.strerror or err})", path) from err
    return path


def write_csv(path: Path, columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> None:
    """Write ``rows`` (dicts keyed by ``columns``) as a comma-separated table with a header line."""
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(columns), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def split_of(index: int, names: tuple[str, str, str], period: int) -> str:
    """Deterministic split of case ``index`` (0-based): in each block of ``period`` cases, the 2nd goes to
    ``names[1]`` (validation), the 4th to ``names[2]`` (test), the rest to ``names[0]`` (training); every split is
    non-empty from 4 cases on, and case k's split does not depend on how many cases are written."""
    slot = index % period
    return names[1] if slot == 1 else names[2] if slot == 3 else names[0]


def fmt(value: float, digits: int = 4) -> str:
    """A float as text with at most ``digits`` decimals (trailing zeros kept off)."""
    text = f"{value:.{digits}f}".rstrip("0").rstrip(".")
    return text if text not in ("", "-0") else "0"
