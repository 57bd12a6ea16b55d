"""Locate and read MovieLens 100K as shipped in the ``recbole==1.2.1`` wheel
(docs/quality.md).

The data's terms forbid redistribution, so it is installed, never committed; recbole itself
is never imported (it pulls in torch): only its files are read.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from pathlib import Path

_INTER = "recbole/dataset_example/ml-100k/ml-100k.inter"
_ITEM = "recbole/dataset_example/ml-100k/ml-100k.item"
_INSTALL_HINT = "install it with: pip install --no-deps recbole==1.2.1"

Rating = tuple[str, str, float, int]


class DatasetMissing(FileNotFoundError):
    """The MovieLens files are not installed."""


def installed_data_path(package: str, relative: str, what: str, hint: str,
                        error: type[FileNotFoundError] = FileNotFoundError) -> Path:
    """Path of ``relative`` inside an installed data wheel, without importing ``package``.

    find_spec on a top-level package only locates it: its ``__init__`` is not run
    (tests/unit/test_datasets.py checks this), unlike find_spec("pkg.x"). Raises
    ``error`` naming ``what`` and the install ``hint`` when it is missing.
    """
    spec = importlib.util.find_spec(package)
    if spec is not None and spec.submodule_search_locations:
        root = Path(next(iter(spec.submodule_search_locations))).parent
        path = root / relative
    else:
        try:
            path = Path(str(importlib.metadata.distribution(package).locate_file(relative)))
        except importlib.metadata.PackageNotFoundError:
            raise error(f"{what} not found ({package} is not installed); {hint}") from None
    if not path.exists():
        raise error(f"{what}: {path} is missing; {hint}")
    return path


def _recbole_file(relative: str) -> Path:
    return installed_data_path("recbole", relative, "MovieLens 100K", _INSTALL_HINT,
                               DatasetMissing)


def movielens_100k_path() -> Path:
    """Path of ``ml-100k.inter`` (user, item, rating, timestamp), without importing recbole."""
    return _recbole_file(_INTER)


def load_movielens_100k() -> list[Rating]:
    """All 100,000 ratings as ``(user_id, item_id, rating, ts_seconds)``, oldest first.

    The sort is stable, so ratings sharing a timestamp keep their file order: every
    evaluation replays exactly the same stream.
    """
    rows: list[Rating] = []
    with movielens_100k_path().open(encoding="utf-8") as fh:
        header = fh.readline().rstrip("\n").split("\t")
        if header[:4] != ["user_id:token", "item_id:token", "rating:float", "timestamp:float"]:
            raise ValueError(f"unexpected ml-100k.inter header: {header}")
        for line in fh:
            if not line.strip():
                continue
            user, item, rating, ts = line.rstrip("\n").split("\t")[:4]
            rows.append((user, item, float(rating), int(float(ts))))
    rows.sort(key=lambda r: r[3])
    return rows


def load_movielens_items() -> dict[str, tuple[str, list[str]]]:
    """item_id -> (title, genres) from ``ml-100k.item``; {} if the wheel has no item file.

    The file spells one missing title ``unkonwn`` and its genre ``unknown``: the genre is
    dropped (it is not a category), the title kept as shipped.
    """
    try:
        path = _recbole_file(_ITEM)
    except DatasetMissing:
        return {}
    items: dict[str, tuple[str, list[str]]] = {}
    with path.open(encoding="utf-8") as fh:
        fh.readline()  # header: item_id, movie_title, release_year, class
        for line in fh:
            fields = line.rstrip("\n").split("\t")
            if len(fields) < 2 or not fields[0]:
                continue
            genres = fields[3].split() if len(fields) > 3 else []
            items[fields[0]] = (fields[1], [g for g in genres if g != "unknown"])
    return items
