"""Every record on persona's topics, declared once: fields, types, descriptions, limits and
the one wire encoding of each (input validation: streams/records.py; schemas: schema.py).
"""

from __future__ import annotations

import base64
import hashlib
import importlib
from dataclasses import MISSING, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar, Final

import orjson

if TYPE_CHECKING:
    from models.ads.bidding import AdRequest

# -- limits: the input decoders enforce them, the schemas state them ---------------------

MAX_ID_LENGTH: Final = 256
# Epoch milliseconds, [1970-01-01, 2100-01-01). A producer sending epoch *seconds* lands
# in January 1970 and passes here; ingest then calls it ``ts_in_seconds`` when the message
# has a Kafka timestamp and ``PERSONA_MAX_EVENT_AGE_S`` is on (``check_event_time``).
MIN_TS_MS: Final = 0
MAX_TS_MS: Final = 4_102_444_800_000
MAX_PRICE: Final = 1e7
MAX_QUANTITY: Final = 10_000
MAX_CONTEXT_KEYS: Final = 16
MAX_CONTEXT_KEY_LENGTH: Final = 64
MAX_CONTEXT_VALUE_LENGTH: Final = 256
# The wire schema this code reads. A message may say ``"schema_version": 1``; absent means 1.
SCHEMA_VERSION: Final = 1
MAX_CATEGORIES: Final = 32
MAX_TITLE_LENGTH: Final = 512
MAX_DESCRIPTION_LENGTH: Final = 4096
MAX_AD_CANDIDATES: Final = 100
MAX_FLOOR_PRICE: Final = 1e6
MAX_VALUE_PER_CLICK: Final = 1e4
MAX_VALUE_PER_CONVERSION: Final = 1e6
MAX_AD_COST: Final = 1e6
MAX_AD_REVENUE: Final = 1e9
MAX_REASON_LENGTH: Final = 256
# A dead letter carries a value whole up to this many bytes, else its first this many with
# the whole value's length and sha256. Twice the largest input ingest accepts, so every
# message that could be replayed is kept whole; base64 makes it 175 KB on the wire, far
# under the producer's 1,000,000-byte request limit at any input size.
MAX_DEAD_LETTER_RAW: Final = 128 * 1024

AD_EVENT_TYPES: Final = ("impression", "click", "conversion")
PRIVACY_ACTIONS: Final = ("erase", "opt_out", "opt_in")
CONTROL_ACTIONS: Final = ("ads_kill", "ads_resume")
AUDIENCE_ACTIONS: Final = ("join", "leave")
# What a dead letter's ``raw`` holds: the producer's bytes, or what ingest made of them.
RAW_FORMS: Final = ("original", "validated")

# ISO 4217 list one (current currencies and funds), 2025 edition including XCG (from
# 2025-03-31) and ZWG (2024), and still ANG and SLL during their changeovers; without XTS
# (reserved for testing) and XXX (no currency). Update it with ISO 4217 amendments.
CURRENCIES: Final = frozenset(
    """
    AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BOV BRL BSD
    BTN BWP BYN BZD CAD CDF CHE CHF CHW CLF CLP CNY COP COU CRC CUP CVE CZK DJF DKK DOP DZD
    EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD
    IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL
    MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN
    PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SLL SOS SRD SSP
    STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD USN UYI UYU UYW UZS VED
    VES VND VUV WST XAF XAG XAU XBA XBB XBC XBD XCD XCG XDR XOF XPD XPF XPT XSU XUA YER ZAR
    ZMW ZWG
    """.split()
)

ContextValue = str | int | float | bool


class MessageError(ValueError):
    """An internal message this code cannot read: not a JSON object, an unknown ``kind``,
    or a field missing. The text names the kind and the field, never a value."""


# -- field declarations ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ref:
    """A constant of a module too heavy to import here (models.engine pulls numpy): the
    schema generator reads it when it builds a schema."""

    module: str
    name: str

    def resolve(self) -> Any:
        return getattr(importlib.import_module(self.module), self.name)


def spec(doc: str, json: dict[str, Any] | None = None, *, wire: str | None = None,
         default: Any = MISSING, required: bool | None = None, shown: bool = True) -> Any:
    """A record field: ``doc`` (one line), its JSON Schema on a public topic (None: an
    internal field, in no public schema), its key on the wire if not its name, its default,
    whether a public message must have it (default: when the record has no default), and
    whether ``repr`` shows it."""
    return field(default=default, repr=shown,
                 metadata={"doc": doc, "json": json, "wire": wire, "required": required})


# JSON Schema fragments of the field types the decoders know; shared, never mutated.
ID: Final[dict[str, Any]] = {"type": ["string", "integer"], "maxLength": MAX_ID_LENGTH,
                             "pattern": r"\S"}
TS_IN: Final[dict[str, Any]] = {"type": ["string", "integer"], "format": "date-time",
                                "minimum": MIN_TS_MS, "exclusiveMaximum": MAX_TS_MS}
TS_OUT: Final[dict[str, Any]] = {"type": "string", "format": "date-time"}
STRING: Final[dict[str, Any]] = {"type": "string"}
INTEGER: Final[dict[str, Any]] = {"type": "integer"}
NUMBER: Final[dict[str, Any]] = {"type": "number"}
CATEGORIES: Final[dict[str, Any]] = {"type": "array", "maxItems": MAX_CATEGORIES, "items": ID}
CONTEXT: Final[dict[str, Any]] = {"type": "object"}


def amount(cap: float, *, zero_ok: bool) -> dict[str, Any]:
    """A finite number in ``(0, cap]``, or ``[0, cap]`` if ``zero_ok``."""
    return {"type": "number", "minimum" if zero_ok else "exclusiveMinimum": 0, "maximum": cap}


def choice(values: tuple[str | Ref, ...] | Ref) -> dict[str, Any]:
    """A string, exactly one of ``values`` (``Ref``s stand for the values they name)."""
    return {"type": "string", "enum": values}


_USER = ("the user: the application's id on input topics, its pseudonym (u + 32 hex) from "
         "ingest on")
_TS = ("when it happened: ISO-8601 with a zone, or epoch milliseconds (epoch ms on the "
       "internal topics)")
_RECOMMENDATION = ("the id of the recommendation it answers (recommendations topic): credits "
                   "the strategy and variant that served it")
_CONTEXT = (f"scalar hints (page, device, ...): at most {MAX_CONTEXT_KEYS} entries kept, keys "
            "named like personal data dropped")
_FP = ("hash of the normalized payload (ingest): tells a redelivery from an event id reused "
       "for another payload")
_RL = "over the user's rate limit: counted in the profile, not learned from nor served"
_ORIGIN = "where ingest read it (src, at, kts on the wire)"


# -- the records -----------------------------------------------------------------------


class _Record:
    """The one wire encoding of a record: compact JSON of ``to_dict()``."""

    __slots__ = ()

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def encode(self) -> bytes:
        return orjson.dumps(self.to_dict())


@dataclass(frozen=True, slots=True)
class Origin:
    """Where ingest read an internal message; flat on the wire (``src``, ``at``, ``kts``),
    each key present only when known.

    Never the input's bytes: internal topics carry validated fields only, and a later
    stage's dead letter names the input by ``at`` (an older writer's ``raw`` key is
    ignored)."""

    src: str | None = spec("the input topic's label (clicks, purchases, ad-requests, privacy, "
                           "ad-events, control): the metric label", default=None)
    at: tuple[str, int, int] | None = spec(
        "[topic, partition, offset] of the input message, for a later stage's dead letter",
        default=None)
    kts: int | None = spec("the input message's Kafka timestamp, epoch ms (event lag)",
                           default=None)

    def add_to(self, d: dict[str, Any]) -> dict[str, Any]:
        """``d`` with this origin's keys added."""
        if self.src is not None:
            d["src"] = self.src
        if self.at is not None:
            d["at"] = list(self.at)
        if self.kts is not None:
            d["kts"] = self.kts
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Origin:
        src, at, kts = d.get("src"), d.get("at"), d.get("kts")
        if src is None and at is None and kts is None:
            return NO_ORIGIN
        return cls(src, None if at is None else (at[0], at[1], at[2]), kts)


NO_ORIGIN: Final = Origin()


def _add_ingest_keys(d: dict[str, Any], fp: str, rl: bool, origin: Origin) -> dict[str, Any]:
    if fp:
        d["fp"] = fp
    if rl:
        d["rl"] = True
    return origin.add_to(d)


def _copy(d: dict[str, Any] | None) -> dict[str, Any] | None:
    # The record is frozen, its dicts are not: the wire form gets its own.
    return None if d is None else dict(d)


@dataclass(frozen=True, slots=True)
class Click(_Record):
    """A click: validated from ``clicks`` (``decode_click``), then on the events topic with
    what ingest adds (pseudonymous user, ``fp``, ``rl``, origin).

    >>> c = Click("e1", "u", "i9", 1, fp="0f", origin=Origin("clicks", ("clicks", 0, 7)))
    >>> c.encode()
    b'{"kind":"click","event_id":"e1","user_id":"u","item_id":"i9","ts":1,"fp":"0f","src":"clicks","at":["clicks",0,7]}'
    >>> decode_event_message(c.encode()) == c
    True
    """

    event_id: str = spec("the event's id: a redelivery repeats it and counts once per user", ID)
    user_id: str = spec(_USER, ID)
    item_id: str = spec("the item clicked", ID)
    ts_ms: int = spec(_TS, TS_IN, wire="ts")
    recommendation_id: str | None = spec(_RECOMMENDATION, ID, default=None)
    context: dict[str, ContextValue] | None = spec(_CONTEXT, CONTEXT, default=None)
    fp: str = spec(_FP, default="")
    rl: bool = spec(_RL, default=False)
    origin: Origin = spec(_ORIGIN, default=NO_ORIGIN)
    kind: ClassVar[str] = "click"

    def payload(self) -> dict[str, Any]:
        """The click as an input message (what ``fingerprint`` hashes): no ingest keys."""
        d: dict[str, Any] = {"kind": self.kind, "event_id": self.event_id,
                             "user_id": self.user_id, "item_id": self.item_id, "ts": self.ts_ms}
        if self.context is not None:
            d["context"] = dict(self.context)
        if self.recommendation_id is not None:
            d["recommendation_id"] = self.recommendation_id
        return d

    def to_dict(self) -> dict[str, Any]:
        return _add_ingest_keys(self.payload(), self.fp, self.rl, self.origin)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Click:
        return cls(d["event_id"], d["user_id"], d["item_id"], d["ts"],
                   d.get("recommendation_id"), _copy(d.get("context")), d.get("fp", ""),
                   bool(d.get("rl")), Origin.from_dict(d))


@dataclass(frozen=True, slots=True)
class Purchase(_Record):
    """A purchase: validated from ``purchases``, then on the events topic like a click.

    >>> p = Purchase("e2", "u", "i", 5, 2.5, 2, currency="EUR")
    >>> p.amount, decode_event_message(p.encode()) == p
    (5.0, True)
    """

    event_id: str = spec("the event's id: a redelivery repeats it and counts once per user", ID)
    user_id: str = spec(_USER, ID)
    item_id: str = spec("the item bought", ID)
    ts_ms: int = spec(_TS, TS_IN, wire="ts")
    price: float = spec("the unit price", amount(MAX_PRICE, zero_ok=False))
    quantity: int = spec("how many", {"type": "integer", "minimum": 1, "maximum": MAX_QUANTITY})
    currency: str | None = spec("an active ISO 4217 code, exactly (EUR, not eur)",
                                choice(tuple(sorted(CURRENCIES))), default=None)
    recommendation_id: str | None = spec(_RECOMMENDATION, ID, default=None)
    fp: str = spec(_FP, default="")
    rl: bool = spec(_RL, default=False)
    origin: Origin = spec(_ORIGIN, default=NO_ORIGIN)
    kind: ClassVar[str] = "purchase"

    @property
    def amount(self) -> float:
        return self.price * self.quantity

    def payload(self) -> dict[str, Any]:
        """The purchase as an input message (what ``fingerprint`` hashes): no ingest keys."""
        d: dict[str, Any] = {"kind": self.kind, "event_id": self.event_id,
                             "user_id": self.user_id, "item_id": self.item_id, "ts": self.ts_ms,
                             "price": self.price, "quantity": self.quantity}
        if self.currency is not None:
            d["currency"] = self.currency
        if self.recommendation_id is not None:
            d["recommendation_id"] = self.recommendation_id
        return d

    def to_dict(self) -> dict[str, Any]:
        return _add_ingest_keys(self.payload(), self.fp, self.rl, self.origin)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Purchase:
        return cls(d["event_id"], d["user_id"], d["item_id"], d["ts"], d["price"],
                   d["quantity"], d.get("currency"), d.get("recommendation_id"),
                   d.get("fp", ""), bool(d.get("rl")), Origin.from_dict(d))


Event = Click | Purchase


@dataclass(frozen=True, slots=True)
class Item:
    """One catalogue entry from the ``items`` topic (keyed by ``item_id``; a null value
    deletes the item). It stays in the worker: no wire form of its own."""

    item_id: str = spec("the item's id; the message key must name the same item", ID)
    title: str = spec("what the item is called", {"type": "string",
                                                   "maxLength": MAX_TITLE_LENGTH})
    categories: tuple[str, ...] = spec("category ids, duplicates dropped", CATEGORIES,
                                       default=())
    description: str | None = spec("free text, for content-based recommendations",
                                   {"type": "string", "maxLength": MAX_DESCRIPTION_LENGTH},
                                   default=None)
    price: float | None = spec("the unit price", amount(MAX_PRICE, zero_ok=False),
                               default=None)
    available: bool = spec("false: never recommended (absent or null: true)",
                           {"type": "boolean"}, default=True)


@dataclass(frozen=True, slots=True)
class AdCandidateMsg:
    """One ad an ``ad-requests`` message offers; values are per click / per conversion."""

    ad_id: str = spec("the ad: distinct within a request", ID)
    campaign_id: str = spec("the campaign whose budget pays for it", ID)
    value_per_click: float = spec("what a click is worth to the advertiser",
                                  amount(MAX_VALUE_PER_CLICK, zero_ok=False))
    categories: tuple[str, ...] = spec("what the ad is about (targeting, features)",
                                       CATEGORIES, default=())
    value_per_conversion: float | None = spec(
        "what a conversion is worth", amount(MAX_VALUE_PER_CONVERSION, zero_ok=False),
        default=None)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"ad_id": self.ad_id, "campaign_id": self.campaign_id,
                             "value_per_click": self.value_per_click}
        if self.categories:
            d["categories"] = list(self.categories)
        if self.value_per_conversion is not None:
            d["value_per_conversion"] = self.value_per_conversion
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AdCandidateMsg:
        return cls(d["ad_id"], d["campaign_id"], d["value_per_click"],
                   tuple(d.get("categories", ())), d.get("value_per_conversion"))


@dataclass(frozen=True, slots=True)
class AdRequestMsg(_Record):
    """An ad request, one shape from ingest to the bidder: validated from ``ad-requests``
    (1 to ``MAX_AD_CANDIDATES`` distinct ads), on the events topic with its origin, then on
    the ads topic with the user's ad ``view`` (the profile agent adds it).
    ``to_bid_request`` makes the bidder's ``AdRequest`` of it.

    >>> r = AdRequestMsg("r", "u", 5, "s", 0.1, (AdCandidateMsg("a", "c", 0.5, ("x",)),))
    >>> r.to_dict()  # doctest: +NORMALIZE_WHITESPACE
    {'kind': 'ad_request', 'request_id': 'r', 'user_id': 'u', 'ts': 5, 'slot': 's',
     'floor_price': 0.1, 'candidates': [{'ad_id': 'a', 'campaign_id': 'c',
     'value_per_click': 0.5, 'categories': ['x']}]}
    >>> from dataclasses import replace
    >>> viewed = replace(r, view={"np": True})
    >>> decode_ads_message(viewed.encode()) == viewed
    True
    """

    request_id: str = spec("the request's id: the bid answers under it, ad events name it", ID)
    user_id: str = spec(_USER, ID)
    ts_ms: int = spec(_TS, TS_IN, wire="ts")
    slot: str = spec("the ad slot to fill", ID)
    floor_price: float = spec("the lowest bid the slot takes (absent or null: 0)",
                              amount(MAX_FLOOR_PRICE, zero_ok=True), required=False)
    candidates: tuple[AdCandidateMsg, ...] = spec(
        "the ads on offer; a repeated ad_id is bad_value",
        {"type": "array", "minItems": 1, "maxItems": MAX_AD_CANDIDATES, "items": AdCandidateMsg})
    context: dict[str, ContextValue] | None = spec(_CONTEXT, CONTEXT, default=None)
    view: dict[str, Any] | None = spec(
        "the user's ad view (models.ads.pctr.user_view), added by the profile agent on the "
        "ads topic: {} no profile, {np: true} opted out", default=None)
    origin: Origin = spec(_ORIGIN, default=NO_ORIGIN)
    kind: ClassVar[str] = "ad_request"

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "kind": self.kind, "request_id": self.request_id, "user_id": self.user_id,
            "ts": self.ts_ms, "slot": self.slot, "floor_price": self.floor_price,
            "candidates": [c.to_dict() for c in self.candidates],
        }  # fmt: skip
        if self.context is not None:
            d["context"] = dict(self.context)
        if self.view is not None:
            d["view"] = self.view
        return self.origin.add_to(d)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AdRequestMsg:
        return cls(d["request_id"], d["user_id"], d["ts"], d["slot"], d.get("floor_price", 0.0),
                   tuple(AdCandidateMsg.from_dict(c) for c in d["candidates"]),
                   _copy(d.get("context")), d.get("view"), Origin.from_dict(d))


@dataclass(frozen=True, slots=True)
class AdEventMsg(_Record):
    """An ad impression, click or conversion: validated from ``ad-events``, then on the
    ads topic with its origin; ``cost``/``revenue`` default to 0.0.

    >>> e = AdEventMsg("e", "r", "a", "conversion", 5, revenue=12.5)
    >>> e.to_dict()  # doctest: +NORMALIZE_WHITESPACE
    {'kind': 'ad_event', 'event_id': 'e', 'request_id': 'r', 'ad_id': 'a',
     'type': 'conversion', 'ts': 5, 'cost': 0.0, 'revenue': 12.5}
    """

    event_id: str = spec("the event's id: a redelivery repeats it and is charged once", ID)
    request_id: str = spec("the ad request it follows (its bid)", ID)
    ad_id: str = spec("the ad shown, clicked or converted: the one bid for that request", ID)
    type: str = spec("what happened", choice(AD_EVENT_TYPES))
    ts_ms: int = spec(_TS, TS_IN, wire="ts")
    cost: float = spec("what the advertiser pays for it (absent or null: 0)",
                       amount(MAX_AD_COST, zero_ok=True), default=0.0)
    revenue: float = spec("what it earned the advertiser (absent or null: 0)",
                          amount(MAX_AD_REVENUE, zero_ok=True), default=0.0)
    origin: Origin = spec(_ORIGIN, default=NO_ORIGIN)
    kind: ClassVar[str] = "ad_event"

    def to_dict(self) -> dict[str, Any]:
        return self.origin.add_to({
            "kind": self.kind, "event_id": self.event_id, "request_id": self.request_id,
            "ad_id": self.ad_id, "type": self.type, "ts": self.ts_ms, "cost": self.cost,
            "revenue": self.revenue,
        })  # fmt: skip

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AdEventMsg:
        return cls(d["event_id"], d["request_id"], d["ad_id"], d["type"], d["ts"],
                   d.get("cost", 0.0), d.get("revenue", 0.0), Origin.from_dict(d))


def privacy_event_id(action: str, ts_ms: int) -> str:
    """The event id of a privacy request that has none: derived from the action and ts, so
    a redelivery dedupes like any event. The user id is left out, as in ``fingerprint``:
    it is unique only per user, which is where dedupe state lives."""
    return f"privacy:{action}:{ts_ms}"


@dataclass(frozen=True, slots=True)
class PrivacyMsg(_Record):
    """A privacy request (erase, opt_out, opt_in): validated from ``privacy``, then on the
    events topic, the user's own way.

    >>> p = PrivacyMsg("u", "erase", 5, "privacy:erase:5")
    >>> p.to_dict()
    {'kind': 'privacy', 'event_id': 'privacy:erase:5', 'user_id': 'u', 'action': 'erase', 'ts': 5}
    """

    user_id: str = spec(_USER, ID)
    action: str = spec("erase the user's data, or opt out of / back into personalization",
                       choice(PRIVACY_ACTIONS))
    ts_ms: int = spec(_TS, TS_IN, wire="ts")
    event_id: str = spec("the request's id (absent: derived from action and ts)", ID,
                         required=False)
    origin: Origin = spec(_ORIGIN, default=NO_ORIGIN)
    kind: ClassVar[str] = "privacy"

    def to_dict(self) -> dict[str, Any]:
        return self.origin.add_to({"kind": self.kind, "event_id": self.event_id,
                                   "user_id": self.user_id, "action": self.action,
                                   "ts": self.ts_ms})

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PrivacyMsg:
        action, ts = d["action"], d["ts"]
        return cls(d["user_id"], action, ts, d.get("event_id") or privacy_event_id(action, ts),
                   Origin.from_dict(d))


@dataclass(frozen=True, slots=True)
class ControlMsg(_Record):
    """An operator command on the ``control`` topic: the ads kill switch; then on the ads
    topic with its origin.

    >>> ControlMsg("ads_resume", 5).to_dict()
    {'kind': 'control', 'action': 'ads_resume', 'ts': 5}
    """

    action: str = spec("stop all bidding, or resume it", choice(CONTROL_ACTIONS))
    ts_ms: int = spec(_TS, TS_IN, wire="ts")
    reason: str | None = spec(f"why, for the record: cleaned, cut to {MAX_REASON_LENGTH} "
                              "characters, never refused", STRING, default=None)
    origin: Origin = spec(_ORIGIN, default=NO_ORIGIN)
    kind: ClassVar[str] = "control"

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": self.kind, "action": self.action, "ts": self.ts_ms}
        if self.reason is not None:
            d["reason"] = self.reason
        return self.origin.add_to(d)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ControlMsg:
        return cls(d["action"], d["ts"], d.get("reason"), Origin.from_dict(d))


@dataclass(frozen=True, slots=True)
class Expire(_Record):
    """The retention sweep's order to delete an idle profile, or an erase marker past its
    grace period (events topic, keyed by the user); the owner re-checks both.

    >>> Expire("u1", 7).encode()
    b'{"kind":"expire","user_id":"u1","before":7}'
    >>> Expire("u1", 0, 9).encode()
    b'{"kind":"expire","user_id":"u1","before":0,"erased_before":9}'
    """

    user_id: str = spec("the user's pseudonym")
    before_ms: int = spec("the sweep's cutoff, epoch ms: delete if idle since before it",
                          wire="before")
    erased_before_ms: int = spec("epoch ms: drop the user's erase marker if written before "
                                 "it (0: leave it)", wire="erased_before", default=0)
    kind: ClassVar[str] = "expire"

    def to_dict(self) -> dict[str, Any]:
        d = {"kind": self.kind, "user_id": self.user_id, "before": self.before_ms}
        if self.erased_before_ms:
            d["erased_before"] = self.erased_before_ms
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Expire:
        return cls(d["user_id"], d["before"], d.get("erased_before", 0))


@dataclass(frozen=True, slots=True)
class Forget(_Record):
    """The profile agent's order to the ads agent, after an erase or opt_out: drop the
    user's stored ad features (ads topic).

    >>> Forget("u1", 5).encode()
    b'{"kind":"forget","user_id":"u1","ts":5}'
    """

    user_id: str = spec("the user's pseudonym")
    ts_ms: int = spec("the privacy request's ts, epoch ms", wire="ts")
    kind: ClassVar[str] = "forget"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "user_id": self.user_id, "ts": self.ts_ms}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Forget:
        return cls(d["user_id"], d["ts"])


@dataclass(frozen=True, slots=True)
class Tick(_Record):
    """The 1 s timer's clock tick on the ads topic: closes attribution windows in quiet
    periods too.

    >>> Tick().encode()
    b'{"kind":"tick"}'
    """

    kind: ClassVar[str] = "tick"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Tick:
        return cls()


# -- the internal topics: one decoder each -----------------------------------------------

EventsMessage = Click | Purchase | AdRequestMsg | PrivacyMsg | Expire
AdsMessage = AdRequestMsg | AdEventMsg | ControlMsg | Forget | Tick

EVENTS_KINDS: Final[dict[str, Any]] = {
    c.kind: c for c in (Click, Purchase, AdRequestMsg, PrivacyMsg, Expire)}
ADS_KINDS: Final[dict[str, Any]] = {
    c.kind: c for c in (AdRequestMsg, AdEventMsg, ControlMsg, Forget, Tick)}


def decode_event_message(raw: bytes | bytearray) -> EventsMessage:
    """Read one message of the internal events topic; ``MessageError`` if it is not one.

    Trusted input (ingest and the retention sweep wrote it): no re-validation.

    >>> decode_event_message(b'{"kind": "expire", "user_id": "u1", "before": 7}')
    Expire(user_id='u1', before_ms=7, erased_before_ms=0)
    >>> decode_event_message(b'{"kind": "tick"}')  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    streams.messages.MessageError: unknown kind 'tick' on the events topic (expected click, ...)
    """
    return _decode(raw, EVENTS_KINDS, "events")  # type: ignore[no-any-return]


def decode_ads_message(raw: bytes | bytearray) -> AdsMessage:
    """Read one message of the internal ads topic; ``MessageError`` if it is not one.

    >>> decode_ads_message(b'{"kind": "tick"}')
    Tick()
    """
    return _decode(raw, ADS_KINDS, "ads")  # type: ignore[no-any-return]


def _decode(raw: bytes | bytearray, kinds: dict[str, Any], topic: str) -> Any:
    try:
        d = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise MessageError(f"a message on the {topic} topic is not JSON") from None
    kind = d.get("kind") if isinstance(d, dict) else None
    cls = kinds.get(kind) if isinstance(kind, str) else None
    if cls is None:
        shown = repr(kind[:40]) if isinstance(kind, str) else "missing"
        raise MessageError(f"unknown kind {shown} on the {topic} topic (expected "
                           f"{', '.join(kinds)})")
    try:
        return cls.from_dict(d)
    except KeyError as exc:
        raise MessageError(f"{kind} message without field {exc}") from None
    except (TypeError, ValueError, IndexError):
        # ``from None``, no text of the cause: it could quote a value.
        raise MessageError(f"{kind} message with a malformed field") from None


def to_bid_request(msg: AdRequestMsg) -> AdRequest:
    """The bidder's request (``models.ads.bidding.AdRequest``) for an ads-topic request;
    ``ValueError`` when a value is beyond the bidder's own limits.

    >>> r = AdRequestMsg("r", "u", 5, "s", 0.0, (AdCandidateMsg("a", "c", 0.5),))
    >>> to_bid_request(r).view, to_bid_request(r).user
    ({}, 'u')
    """
    # Imported here: the bidder pulls numpy, which only the ads agent needs.
    from models.ads.bidding import AdCandidate, AdRequest

    return AdRequest(
        msg.request_id, msg.user_id, msg.ts_ms, msg.slot, msg.floor_price,
        tuple(AdCandidate(c.ad_id, c.campaign_id, c.value_per_click, c.categories,
                          c.value_per_conversion) for c in msg.candidates),
        msg.context, msg.view or {},
    )  # fmt: skip


# -- fingerprints of behaviour events --------------------------------------------------

# Keys of a wire event that are not its payload: the user (see ``fingerprint``) and what
# ingest adds (``raw``: only older writers added it). A fingerprint taken before or after
# ingest is the same.
_NOT_HASHED: Final = frozenset({"user_id", "fp", "rl", "src", "at", "kts", "raw"})


def fingerprint(event: Event) -> str:
    """A short stable hash of the normalized payload, to tell a redelivery (same event id,
    same payload) from a conflict (same event id, different payload).

    The user id is left out: deduplication state is already per user, and an unkeyed hash
    over a low-entropy raw id stored in a changelog would let anyone test guesses of it.

    >>> a = Click("e", "u", "i", 5)
    >>> fingerprint(a) == fingerprint(Click("e", "other", "i", 5, rl=True))
    True
    >>> fingerprint(a) == fingerprint(Click("e", "u", "i", 6))
    False
    >>> len(fingerprint(a))
    16
    """
    return wire_fingerprint(event.payload())


def wire_fingerprint(wire: dict[str, Any]) -> str:
    """``fingerprint`` of an event in wire form (``to_dict``; its user and ingest keys are
    ignored).

    >>> e = Click("e", "u", "i", 5)
    >>> wire_fingerprint({**e.to_dict(), "user_id": "other", "fp": "x"}) == fingerprint(e)
    True
    """
    payload = orjson.dumps(
        {k: v for k, v in wire.items() if k not in _NOT_HASHED}, option=orjson.OPT_SORT_KEYS
    )
    return hashlib.blake2b(payload, digest_size=8).hexdigest()


# -- output records --------------------------------------------------------------------

_OUT_USER = "the user's pseudonym (u + 32 hex): the raw id never leaves ingest"
_OUT_TS = "when it was decided: ISO-8601 UTC, milliseconds"


def now_iso() -> str:
    """The ``ts`` of an output record made now: ISO-8601 UTC, milliseconds."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True, slots=True)
class RecommendedItem(_Record):
    """One entry of a recommendation's list."""

    item_id: str = spec("the item", STRING)
    score: float = spec("its score under the strategy that served the list (6 decimals)",
                        NUMBER)
    reason: str = spec("why: from the component that contributed most to the score", STRING)

    def to_dict(self) -> dict[str, Any]:
        return {"item_id": self.item_id, "score": self.score, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class Recommendation(_Record):
    """A ``recommendations`` record: the list served for one click or purchase."""

    recommendation_id: str = spec("the list's id, derived from the triggering event (a "
                                  "redelivery re-emits the same id)", STRING)
    user_id: str = spec(_OUT_USER, STRING)
    ts: str = spec(_OUT_TS, TS_OUT)
    strategy: str = spec("the strategy that served the list: hybrid unless the exploration "
                         "bandit chose another", choice(Ref("models.engine", "STRATEGIES")))
    propensity: float = spec("the probability the policy chose that strategy with "
                             "(off-policy evaluation)", {"type": "number", "minimum": 0,
                                                         "maximum": 1})
    variant: str = spec("the experiment variant (default outside experiments)", STRING)
    model_version: str = spec(
        "the model state that served: persona-<release>/<strategy>/ckpt-<N>, the models "
        "of checkpoint N (loaded at start or by a rollback, or saved last) and what they "
        "learned since; ckpt-0 before any checkpoint; a save or a rollback changes it",
        STRING)
    items: tuple[RecommendedItem, ...] = spec("the list, best first",
                                              {"type": "array", "items": RecommendedItem})
    trigger_event_id: str = spec("the event_id of the click or purchase it answers", STRING)

    def to_dict(self) -> dict[str, Any]:
        return {
            "recommendation_id": self.recommendation_id, "user_id": self.user_id,
            "ts": self.ts, "strategy": self.strategy, "propensity": self.propensity,
            "variant": self.variant, "model_version": self.model_version,
            "items": [i.to_dict() for i in self.items], "trigger_event_id": self.trigger_event_id,
        }  # fmt: skip


@dataclass(frozen=True, slots=True)
class AdBid(_Record):
    """An ``ad-bids`` record: a bid (ad_id, campaign_id, bid, pctr) or a no_bid_reason."""

    request_id: str = spec("the ad request answered (exactly one answer per id)", STRING)
    user_id: str = spec(_OUT_USER, STRING)
    ts: str = spec(_OUT_TS, TS_OUT)
    ad_id: str | None = spec("the ad bid for", STRING, default=None)
    campaign_id: str | None = spec("its campaign", STRING, default=None)
    bid: float | None = spec("the bid (6 decimals)", {"type": "number", "minimum": 0},
                             default=None)
    pctr: float | None = spec("the predicted click probability (8 decimals)",
                              {"type": "number", "minimum": 0, "maximum": 1}, default=None)
    no_bid_reason: str | None = spec("why there is no bid (docs/ads.md)",
                                     choice(Ref("models.ads.bidding", "NO_BID_REASONS")),
                                     default=None)
    # Exactly one of these groups is present (the schema's oneOf).
    ALTERNATIVES: ClassVar[dict[str, tuple[str, ...]]] = {
        "with a bid": ("ad_id", "campaign_id", "bid", "pctr"),
        "with no bid": ("no_bid_reason",),
    }

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"request_id": self.request_id, "user_id": self.user_id,
                             "ts": self.ts}
        if self.no_bid_reason is None:
            d.update(ad_id=self.ad_id, campaign_id=self.campaign_id, bid=self.bid,
                     pctr=self.pctr)
        else:
            d["no_bid_reason"] = self.no_bid_reason
        return d


@dataclass(frozen=True, slots=True)
class SegmentChange(_Record):
    """A ``segments`` record: the user got a segment or moved to another."""

    user_id: str = spec(_OUT_USER, STRING)
    segment: str = spec("the new segment (s0, s1, ...)", STRING)
    ts: str = spec(_OUT_TS, TS_OUT)

    def to_dict(self) -> dict[str, Any]:
        return {"user_id": self.user_id, "segment": self.segment, "ts": self.ts}


@dataclass(frozen=True, slots=True)
class AudienceChange(_Record):
    """An ``audiences`` record: the user joined or left a configured audience."""

    user_id: str = spec(_OUT_USER, STRING)
    audience: str = spec("the audience's configured name", STRING)
    action: str = spec("joined or left", choice(AUDIENCE_ACTIONS))
    ts: str = spec(_OUT_TS, TS_OUT)

    def to_dict(self) -> dict[str, Any]:
        return {"user_id": self.user_id, "audience": self.audience, "action": self.action,
                "ts": self.ts}


@dataclass(frozen=True, slots=True)
class DeadLetter(_Record):
    """A ``dead-letters`` record: an input message that was refused, and why."""

    source_topic: str = spec("the topic the message came from", STRING)
    partition: int = spec("its partition", INTEGER)
    offset: int = spec("its offset", INTEGER)
    error: str = spec("the error code (docs/contract.md, Dead-letter error codes)", choice(
        (Ref("streams.records", "ERROR_CODES"), Ref("streams.metrics", "AGENT_ERROR_CODES"))))
    detail: str = spec("the field and the rule it broke; never a payload value", STRING)
    # Not in repr: the producer's bytes may hold personal data, and reprs end up in logs.
    raw: bytes | None = spec(
        f"the message value (see raw_form), base64: whole up to {MAX_DEAD_LETTER_RAW} bytes, "
        "else its first that many; null for a tombstone",
        {"type": ["string", "null"], "contentEncoding": "base64"}, required=True, shown=False)
    ts: str = spec("when it was dead-lettered: ISO-8601 UTC, milliseconds", TS_OUT)
    raw_form: str = spec(
        "original: the producer's bytes (refused by ingest, or an agent failed on an input "
        "message); validated: what ingest forwarded, validated fields only (refused or failed "
        "after ingest; the ads agent's refusals still name the input's topic and offset)",
        choice(RAW_FORMS), default="original", required=True)
    raw_length: int | None = spec("the whole value's length in bytes; null for a tombstone",
                                  {"type": ["integer", "null"], "minimum": 0}, default=None,
                                  required=True)
    raw_sha256: str | None = spec("the whole value's SHA-256, hex; null for a tombstone",
                                  {"type": ["string", "null"], "pattern": "^[0-9a-f]{64}$"},
                                  default=None, required=True)
    raw_truncated: bool = spec(f"true: the value was over {MAX_DEAD_LETTER_RAW} bytes and raw "
                               "holds only its first bytes", {"type": "boolean"},
                               default=False, required=True)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source_topic": self.source_topic, "partition": self.partition,
            "offset": self.offset, "error": self.error, "detail": self.detail,
            "raw": None if self.raw is None else base64.b64encode(self.raw).decode("ascii"),
            "raw_form": self.raw_form, "raw_length": self.raw_length,
            "raw_sha256": self.raw_sha256, "raw_truncated": self.raw_truncated, "ts": self.ts,
        }  # fmt: skip

    @classmethod
    def of(cls, source_topic: str, partition: int, offset: int, error: str, detail: str,
           value: bytes | None, ts: str, form: str = "original") -> DeadLetter:
        """The dead letter of ``value``: whole if small, else a prefix, with its length and
        hash either way (a dead letter must fit one produce request, or it is lost).

        >>> big = b"x" * (MAX_DEAD_LETTER_RAW + 1)
        >>> d = DeadLetter.of("clicks", 0, 1, "too_large", "", big, "t")
        >>> len(d.raw), d.raw_length, d.raw_truncated
        (131072, 131073, True)
        """
        if value is None:
            return cls(source_topic, partition, offset, error, detail, None, ts, form)
        value = bytes(value)
        truncated = len(value) > MAX_DEAD_LETTER_RAW
        return cls(source_topic, partition, offset, error, detail,
                   value[:MAX_DEAD_LETTER_RAW] if truncated else value, ts, form, len(value),
                   hashlib.sha256(value).hexdigest(), truncated)
