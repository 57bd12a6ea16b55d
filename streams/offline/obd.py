"""Locate and read the Open Bandit Dataset sample shipped in the ``obp==0.4.1`` wheel (docs/ads.md).

obp itself is never imported (it pulls in torch and scikit-learn): only its CSV files are read.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from streams.offline.datasets import installed_data_path

POLICIES = ("random", "bts")
CAMPAIGNS = ("all", "men", "women")
POOLED = "pooled"
_OBD = "obp/dataset/obd"
_INSTALL_HINT = "install it with: pip install --no-deps obp==0.4.1"
_USER_FEATURES = tuple(f"user_feature_{i}" for i in range(4))
_ITEM_CATEGORIES = ("item_feature_1", "item_feature_2", "item_feature_3")


class ObdMissing(FileNotFoundError):
    """The Open Bandit Dataset files are not installed."""


@dataclass(frozen=True, slots=True)
class Impression:
    """One logged impression: ``item_id`` was shown at ``position`` and clicked or not."""

    campaign: str
    index: int  # the row's index in its campaign file
    ts_us: int  # epoch microseconds, as logged
    item_id: str
    position: int
    click: bool
    propensity: float  # the logging policy's probability of this (item, position)
    user_features: tuple[str, ...]  # user_feature_0..3, hashed strings

    @property
    def ts_ms(self) -> int:
        return self.ts_us // 1000


@dataclass(frozen=True, slots=True)
class Item:
    """A campaign's item: one numeric feature and three hashed categorical ones."""

    item_id: str
    feature_0: float
    categories: tuple[str, ...]  # item_feature_1..3


@dataclass(slots=True)
class ObdSample:
    """Impressions to replay, oldest first, and each campaign's items by item_id."""

    policy: str
    campaign: str  # one of CAMPAIGNS, or POOLED
    impressions: list[Impression]
    items: dict[str, dict[str, Item]]  # campaign -> item_id -> Item


def obd_dir() -> Path:
    """The ``obd`` folder of the installed obp wheel, found without importing obp (its
    ``__init__`` pulls in torch)."""
    return installed_data_path("obp", _OBD, "Open Bandit Dataset", _INSTALL_HINT, ObdMissing)


def _file(policy: str, campaign: str, name: str) -> Path:
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r} (choose from {', '.join(POLICIES)})")
    if campaign not in CAMPAIGNS:
        raise ValueError(f"unknown campaign {campaign!r} (choose from {', '.join(CAMPAIGNS)})")
    path = obd_dir() / policy / campaign / name
    if not path.is_file():
        raise ObdMissing(f"Open Bandit Dataset file {path} is missing; {_INSTALL_HINT}")
    return path


def _parse_ts_us(text: str) -> int:
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        raise ValueError(f"timestamp {text!r} has no time zone")
    # integer arithmetic: a float timestamp would round some microseconds
    delta = dt - datetime.fromisoformat("1970-01-01T00:00:00+00:00")
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _columns(path: Path, header: list[str], wanted: tuple[str, ...]) -> list[int]:
    missing = [c for c in wanted if c not in header]
    if missing:
        raise ValueError(f"{path}: unexpected header, missing {', '.join(missing)}")
    return [header.index(c) for c in wanted]


def load_campaign(policy: str, campaign: str) -> list[Impression]:
    """A campaign file's impressions, in file order (the files are sorted by time)."""
    path = _file(policy, campaign, f"{campaign}.csv")
    wanted = ("", "timestamp", "item_id", "position", "click", "propensity_score",
              *_USER_FEATURES)
    rows: list[Impression] = []
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        cols = _columns(path, next(reader, []), wanted)
        i_index, i_ts, i_item, i_pos, i_click, i_prop = cols[:6]
        i_users = cols[6:]
        for fields in reader:
            if not fields:
                continue
            try:
                click = int(fields[i_click])
                if click not in (0, 1):
                    raise ValueError(f"click must be 0 or 1, got {click}")
                rows.append(Impression(
                    campaign=campaign,
                    index=int(fields[i_index]),
                    ts_us=_parse_ts_us(fields[i_ts]),
                    item_id=fields[i_item],
                    position=int(fields[i_pos]),
                    click=bool(click),
                    propensity=float(fields[i_prop]),
                    user_features=tuple(fields[i] for i in i_users),
                ))
            except (ValueError, IndexError) as exc:
                raise ValueError(f"{path}:{reader.line_num}: {exc}") from None
    return rows


def load_items(policy: str, campaign: str) -> dict[str, Item]:
    """A campaign's ``item_context.csv``: item ids are per campaign (men's 0 is not all's 0)."""
    path = _file(policy, campaign, "item_context.csv")
    items: dict[str, Item] = {}
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        cols = _columns(path, next(reader, []), ("item_id", "item_feature_0", *_ITEM_CATEGORIES))
        for fields in reader:
            if not fields:
                continue
            try:
                item_id = fields[cols[0]]
                items[item_id] = Item(item_id, float(fields[cols[1]]),
                                      tuple(fields[i] for i in cols[2:]))
            except (ValueError, IndexError) as exc:
                raise ValueError(f"{path}:{reader.line_num}: {exc}") from None
    return items


def load_obd(policy: str = "random", campaign: str = POOLED) -> ObdSample:
    """One campaign's impressions, or the three campaigns' merged (``pooled``), oldest first.

    The merge sorts by timestamp, stably: impressions sharing a microsecond keep the
    campaign order all, men, women and their file order, so every replay is the same.
    """
    campaigns = CAMPAIGNS if campaign == POOLED else (campaign,)
    if campaign != POOLED and campaign not in CAMPAIGNS:
        raise ValueError(f"unknown campaign {campaign!r} "
                         f"(choose from {POOLED}, {', '.join(CAMPAIGNS)})")
    impressions: list[Impression] = []
    items: dict[str, dict[str, Item]] = {}
    for name in campaigns:
        impressions.extend(load_campaign(policy, name))
        items[name] = load_items(policy, name)
    impressions.sort(key=lambda r: r.ts_us)
    for r in impressions:
        if r.item_id not in items[r.campaign]:
            raise ValueError(f"{policy}/{r.campaign} row {r.index}: item {r.item_id} is not "
                             "in item_context.csv")
    return ObdSample(policy, campaign, impressions, items)
