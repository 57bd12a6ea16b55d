"""Boundary validation of ``ad-requests``, ``ad-events``, ``privacy`` and ``control``, and the
wire forms of the internal topics: one case per rule, plus properties."""

from __future__ import annotations

import math
import traceback
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.messages import NO_ORIGIN
from streams.records import (
    AD_EVENT_TYPES,
    CONTROL_ACTIONS,
    ERROR_CODES,
    INGEST_CODES,
    MAX_AD_CANDIDATES,
    MAX_AD_COST,
    MAX_AD_REVENUE,
    MAX_CATEGORIES,
    MAX_FLOOR_PRICE,
    MAX_ID_LENGTH,
    MAX_REASON_LENGTH,
    MAX_VALUE_PER_CLICK,
    MAX_VALUE_PER_CONVERSION,
    PRIVACY_ACTIONS,
    AdCandidateMsg,
    AdEventMsg,
    AdRequestMsg,
    ControlMsg,
    PrivacyMsg,
    ValidationError,
    decode_ad_event,
    decode_ad_request,
    decode_control,
    decode_privacy,
)

# Each message's one wire form (encode() writes it as JSON) and its decoder on the
# internal topic.
ad_request_to_wire = AdRequestMsg.to_dict
ad_event_to_wire, ad_event_from_wire = AdEventMsg.to_dict, AdEventMsg.from_dict
privacy_to_wire, privacy_from_wire = PrivacyMsg.to_dict, PrivacyMsg.from_dict
control_to_wire, control_from_wire = ControlMsg.to_dict, ControlMsg.from_dict


def ad_request_from_wire(d: dict) -> AdRequestMsg:
    """The request as its producer sent it: what ingest and the profile agent add on the
    internal topics (origin, ``view``) left out."""
    return replace(AdRequestMsg.from_dict(d), view=None, origin=NO_ORIGIN)

DROP = object()  # marks a field to remove from the base message
SECRET = "SECRET-USER-7f3a-zz"
TS_MS = 1_714_564_800_000  # 2024-05-01T12:00:00Z

Msg = AdRequestMsg | AdEventMsg | PrivacyMsg | ControlMsg
Decoder = Callable[[bytes | bytearray | None], Msg]
DECODERS: tuple[Decoder, ...] = (decode_ad_request, decode_ad_event, decode_privacy, decode_control)


def _apply(base: dict[str, Any], fields: dict[str, Any]) -> dict[str, Any]:
    for name, value in fields.items():
        if value is DROP:
            base.pop(name, None)
        else:
            base[name] = value
    return base


def cand(**fields: Any) -> dict[str, Any]:
    return _apply({"ad_id": "a1", "campaign_id": "c1", "value_per_click": 0.5}, fields)


def request_msg(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "request_id": "r1", "user_id": "u1", "ts": TS_MS, "slot": "top", "floor_price": 0.1,
        "candidates": [cand(), cand(ad_id="a2", campaign_id="c2", value_per_click=1.5)],
    }  # fmt: skip
    return _apply(base, fields)


def with_cand(**fields: Any) -> dict[str, Any]:
    """A request whose only candidate has ``fields`` changed."""
    return request_msg(candidates=[cand(**fields)])


def event_msg(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "event_id": "e1", "request_id": "r1", "ad_id": "a1", "type": "click", "ts": TS_MS,
    }  # fmt: skip
    return _apply(base, fields)


def privacy_msg(**fields: Any) -> dict[str, Any]:
    return _apply({"user_id": "u1", "action": "erase", "ts": TS_MS}, fields)


def control_msg(**fields: Any) -> dict[str, Any]:
    return _apply({"action": "ads_kill", "ts": TS_MS}, fields)


def enc(obj: Any) -> bytes:
    return orjson.dumps(obj)


def code_of(decode: Decoder, raw: bytes | None) -> str:
    with pytest.raises(ValidationError) as info:
        decode(raw)
    return info.value.code


# -- every rule, invalid side: (name, decoder, raw message, expected code) ----------------

REQ, EVT, PRV, CTL = decode_ad_request, decode_ad_event, decode_privacy, decode_control

AD_INVALID: list[tuple[str, Decoder, bytes | None, str]] = [
    *[(f"{d.__name__} tombstone", d, None, "tombstone") for d in DECODERS],
    *[(f"{d.__name__} array", d, b"[]", "not_object") for d in DECODERS],
    *[(f"{d.__name__} bad json", d, b'{"ts": ', "bad_json") for d in DECODERS],
    *[
        (f"request missing {f}", REQ, enc(request_msg(**{f: DROP})), "missing_field")
        for f in ("request_id", "user_id", "ts", "slot", "candidates")
    ],
    *[
        (f"candidate missing {f}", REQ, enc(with_cand(**{f: DROP})), "missing_field")
        for f in ("ad_id", "campaign_id", "value_per_click")
    ],
    ("null candidates", REQ, enc(request_msg(candidates=None)), "missing_field"),
    ("null candidate ad_id", REQ, enc(with_cand(ad_id=None)), "missing_field"),
    ("candidates object", REQ, enc(request_msg(candidates={"ad_id": "a"})), "wrong_type"),
    ("candidate not object", REQ, enc(request_msg(candidates=["a1"])), "wrong_type"),
    ("bool slot", REQ, enc(request_msg(slot=True)), "wrong_type"),
    ("float user_id", REQ, enc(request_msg(user_id=1.0)), "wrong_type"),
    ("string floor", REQ, enc(request_msg(floor_price="0.1")), "wrong_type"),
    ("bool floor", REQ, enc(request_msg(floor_price=True)), "wrong_type"),
    ("bool value_per_click", REQ, enc(with_cand(value_per_click=True)), "wrong_type"),
    ("string value_per_click", REQ, enc(with_cand(value_per_click="1")), "wrong_type"),
    ("list value_per_conv", REQ, enc(with_cand(value_per_conversion=[1])), "wrong_type"),
    ("categories string", REQ, enc(with_cand(categories="shoes")), "wrong_type"),
    ("null category", REQ, enc(with_cand(categories=["a", None])), "wrong_type"),
    ("category object", REQ, enc(with_cand(categories=[{"a": 1}])), "wrong_type"),
    ("context list", REQ, enc(request_msg(context=["page"])), "wrong_type"),
    ("empty slot", REQ, enc(request_msg(slot=" ")), "empty_id"),
    ("empty ad_id", REQ, enc(with_cand(ad_id="")), "empty_id"),
    ("empty category", REQ, enc(with_cand(categories=["a", " "])), "empty_id"),
    ("bidi campaign_id", REQ, enc(with_cand(campaign_id="c\u202e1")), "bad_characters"),
    ("NUL request_id", REQ, enc(request_msg(request_id="r\x001")), "bad_characters"),
    ("long slot", REQ, enc(request_msg(slot="s" * (MAX_ID_LENGTH + 1))), "too_long"),
    ("long category", REQ, enc(with_cand(categories=["c" * (MAX_ID_LENGTH + 1)])), "too_long"),
    ("bad request ts", REQ, enc(request_msg(ts="yesterday")), "bad_timestamp"),
    ("naive request ts", REQ, enc(request_msg(ts="2024-05-01T12:00:00")), "bad_timestamp"),
    ("floor overflows", REQ, b'{"floor_price": 1e400}', "non_finite"),
    ("value overflows", REQ, enc(request_msg()).replace(b"1.5", b"1e999"), "non_finite"),
    ("negative floor", REQ, enc(request_msg(floor_price=-0.01)), "bad_value"),
    ("zero value_per_click", REQ, enc(with_cand(value_per_click=0)), "bad_value"),
    ("-0.0 value_per_click", REQ, enc(with_cand(value_per_click=-0.0)), "bad_value"),
    ("negative value_per_click", REQ, enc(with_cand(value_per_click=-1)), "bad_value"),
    ("zero value_per_conv", REQ, enc(with_cand(value_per_conversion=0.0)), "bad_value"),
    ("no candidates", REQ, enc(request_msg(candidates=[])), "bad_value"),
    ("duplicate ad_id", REQ, enc(request_msg(candidates=[cand(), cand()])), "bad_value"),
    (
        "duplicate ad_id after normalization",
        REQ,
        enc(request_msg(candidates=[cand(ad_id=7), cand(ad_id=" 7 ", campaign_id="c2")])),
        "bad_value",
    ),
    ("floor over cap", REQ, enc(request_msg(floor_price=MAX_FLOOR_PRICE * 1.01)), "out_of_range"),
    ("absurd floor", REQ, enc(request_msg(floor_price=1e300)), "out_of_range"),
    ("huge int floor", REQ, enc(request_msg(floor_price=2**63)), "out_of_range"),
    (
        "value_per_click over cap",
        REQ,
        enc(with_cand(value_per_click=MAX_VALUE_PER_CLICK + 0.01)),
        "out_of_range",
    ),
    (
        "value_per_conversion over cap",
        REQ,
        enc(with_cand(value_per_conversion=MAX_VALUE_PER_CONVERSION * 2)),
        "out_of_range",
    ),
    (
        "too many candidates",
        REQ,
        enc(request_msg(candidates=[cand(ad_id=i) for i in range(MAX_AD_CANDIDATES + 1)])),
        "field_too_large",
    ),
    (
        "too many categories",
        REQ,
        enc(with_cand(categories=[str(i) for i in range(MAX_CATEGORIES + 1)])),
        "field_too_large",
    ),
    *[
        (f"event missing {f}", EVT, enc(event_msg(**{f: DROP})), "missing_field")
        for f in ("event_id", "request_id", "ad_id", "type", "ts")
    ],
    ("numeric type", EVT, enc(event_msg(type=1)), "wrong_type"),
    ("string cost", EVT, enc(event_msg(cost="0.2")), "wrong_type"),
    ("bool revenue", EVT, enc(event_msg(revenue=False)), "wrong_type"),
    ("list ad_id", EVT, enc(event_msg(ad_id=["a1"])), "wrong_type"),
    ("empty event_id", EVT, enc(event_msg(event_id="\t")), "empty_id"),
    ("zero-width request_id", EVT, enc(event_msg(request_id="r\u200b1")), "bad_characters"),
    ("long ad_id", EVT, enc(event_msg(ad_id="a" * (MAX_ID_LENGTH + 1))), "too_long"),
    ("event ms at 2100", EVT, enc(event_msg(ts=4_102_444_800_000)), "bad_timestamp"),
    ("cost overflows", EVT, b'{"cost": -1e999}', "non_finite"),
    ("unknown type", EVT, enc(event_msg(type="view")), "unknown_type"),
    ("type not trimmed", EVT, enc(event_msg(type=" click")), "unknown_type"),
    ("type case", EVT, enc(event_msg(type="Click")), "unknown_type"),
    ("empty type", EVT, enc(event_msg(type="")), "unknown_type"),
    ("negative cost", EVT, enc(event_msg(cost=-0.5)), "bad_value"),
    ("negative revenue", EVT, enc(event_msg(revenue=-1)), "bad_value"),
    ("cost over cap", EVT, enc(event_msg(cost=MAX_AD_COST * 1.5)), "out_of_range"),
    ("revenue over cap", EVT, enc(event_msg(revenue=MAX_AD_REVENUE * 1.5)), "out_of_range"),
    *[
        (f"privacy missing {f}", PRV, enc(privacy_msg(**{f: DROP})), "missing_field")
        for f in ("user_id", "action", "ts")
    ],
    ("bool action", PRV, enc(privacy_msg(action=True)), "wrong_type"),
    ("object event_id", PRV, enc(privacy_msg(event_id={"a": 1})), "wrong_type"),
    ("blank privacy event_id", PRV, enc(privacy_msg(event_id="  ")), "empty_id"),
    ("privacy user ctrl", PRV, enc(privacy_msg(user_id="u\x1b1")), "bad_characters"),
    ("long privacy user", PRV, enc(privacy_msg(user_id="u" * (MAX_ID_LENGTH + 1))), "too_long"),
    ("negative privacy ts", PRV, enc(privacy_msg(ts=-1)), "bad_timestamp"),
    ("unknown privacy action", PRV, enc(privacy_msg(action="delete")), "unknown_type"),
    ("control action as privacy", PRV, enc(privacy_msg(action="ads_kill")), "unknown_type"),
    *[
        (f"control missing {f}", CTL, enc(control_msg(**{f: DROP})), "missing_field")
        for f in ("action", "ts")
    ],
    ("list action", CTL, enc(control_msg(action=["ads_kill"])), "wrong_type"),
    ("numeric reason", CTL, enc(control_msg(reason=5)), "wrong_type"),
    ("object reason", CTL, enc(control_msg(reason={"why": "x"})), "wrong_type"),
    ("fractional control ts", CTL, enc(control_msg(ts=1.5)), "bad_timestamp"),
    ("unknown control action", CTL, enc(control_msg(action="kill")), "unknown_type"),
    ("privacy action as control", CTL, enc(control_msg(action="opt_out")), "unknown_type"),
    ("newer ad schema", EVT, enc(event_msg(schema_version=3)), "unsupported_version"),
]


@pytest.mark.parametrize(
    ("decode", "raw", "code"), [c[1:] for c in AD_INVALID], ids=[c[0] for c in AD_INVALID]
)
def test_invalid_message_gets_exact_code(decode: Decoder, raw: bytes | None, code: str) -> None:
    assert code_of(decode, raw) == code


def test_table_covers_every_code_these_topics_can_raise() -> None:
    # INGEST_CODES come from the key and Kafka timestamp (test_input_catalogue.py);
    # too_large/not_utf8/too_deep are message-level and shared (test_records.py covers
    # them for every decoder through _load_object); price, quantity and currency rules
    # belong to purchases (and items).
    field_level = set(ERROR_CODES) - INGEST_CODES - {
        "too_large", "not_utf8", "too_deep", "bad_price", "bad_quantity", "unknown_currency"}
    assert {c[3] for c in AD_INVALID} == field_level


@pytest.mark.parametrize("decode", DECODERS)
@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b'{"a": "\xff"}', "not_utf8"),
        (b'{"a": ' + b"[" * 10 + b"]" * 10 + b"}", "too_deep"),
        (b'"x"', "not_object"),
    ],
)
def test_message_level_rules_hold_for_every_decoder(decode: Decoder, raw: bytes, code: str) -> None:
    assert code_of(decode, raw) == code


# -- valid side and normalization ------------------------------------------------------


def test_valid_ad_request() -> None:
    ctx = {"page": "home", "device": "mobile", "email": "bob@example.com"}
    raw = enc(
        request_msg(
            user_id=" u1 ",
            candidates=[
                cand(categories=["shoes", "sale", "shoes"], value_per_conversion=20, x=1),
                cand(ad_id=2, campaign_id=3, value_per_click=1),
            ],
            context=ctx,
            unknown={"nested": [1]},
        )
    )
    assert decode_ad_request(raw) == AdRequestMsg(
        "r1", "u1", TS_MS, "top", 0.1,
        (
            AdCandidateMsg("a1", "c1", 0.5, ("shoes", "sale"), 20.0),
            AdCandidateMsg("2", "3", 1.0),
        ),
        {"device": "mobile", "page": "home"},
    )  # fmt: skip


@pytest.mark.parametrize("floor", [DROP, None, 0, 0.0, -0.0])
def test_floor_price_is_optional_and_zero_when_absent(floor: Any) -> None:
    r = decode_ad_request(enc(request_msg(floor_price=floor)))
    assert r.floor_price == 0.0 and math.copysign(1.0, r.floor_price) == 1.0


def test_numbers_are_floats_and_caps_are_inclusive() -> None:
    r = decode_ad_request(
        enc(
            request_msg(
                floor_price=MAX_FLOOR_PRICE,
                candidates=[
                    cand(value_per_click=MAX_VALUE_PER_CLICK,
                         value_per_conversion=MAX_VALUE_PER_CONVERSION),
                ],
            )
        )
    )  # fmt: skip
    c = r.candidates[0]
    assert (r.floor_price, c.value_per_click, c.value_per_conversion) == (
        MAX_FLOOR_PRICE, MAX_VALUE_PER_CLICK, MAX_VALUE_PER_CONVERSION,
    )  # fmt: skip
    assert {type(x) for x in (r.floor_price, c.value_per_click, c.value_per_conversion)} == {float}
    e = decode_ad_event(enc(event_msg(cost=MAX_AD_COST, revenue=int(MAX_AD_REVENUE))))
    assert (e.cost, e.revenue) == (MAX_AD_COST, MAX_AD_REVENUE) and type(e.revenue) is float


def test_candidates_up_to_the_cap_and_their_order_are_kept() -> None:
    ids = [f"ad{i}" for i in reversed(range(MAX_AD_CANDIDATES))]
    r = decode_ad_request(enc(request_msg(candidates=[cand(ad_id=i) for i in ids])))
    assert [c.ad_id for c in r.candidates] == ids


def test_same_ad_in_two_requests_or_two_campaigns_is_fine_but_not_twice_in_one() -> None:
    one = [cand(ad_id="a", campaign_id="c1"), cand(ad_id="b", campaign_id="c1")]
    assert len(decode_ad_request(enc(request_msg(candidates=one))).candidates) == 2
    twice = [cand(ad_id="a", campaign_id="c1"), cand(ad_id="a", campaign_id="c2")]
    with pytest.raises(ValidationError) as info:
        decode_ad_request(enc(request_msg(candidates=twice)))
    assert info.value.code == "bad_value" and "candidates[1].ad_id" in info.value.detail


def test_candidate_categories_normalize_like_items() -> None:
    nfd, nfc = "Cafe\u0301", "Café"
    r = decode_ad_request(enc(with_cand(categories=[nfd, f" {nfc} ", 5, "5"])))
    assert r.candidates[0].categories == (nfc, "5")
    assert decode_ad_request(enc(with_cand(categories=None))).candidates[0].categories == ()
    assert decode_ad_request(enc(with_cand(categories=[]))).candidates[0].categories == ()


@pytest.mark.parametrize(("value", "expected"), [(123, "123"), (0, "0"), (-7, "-7")])
def test_numeric_ids_become_strings(value: int, expected: str) -> None:
    r = decode_ad_request(
        enc(request_msg(request_id=value, user_id=value, slot=value, candidates=[
            cand(ad_id=value, campaign_id=value, categories=[value])]))
    )  # fmt: skip
    c = r.candidates[0]
    assert (r.request_id, r.user_id, r.slot, c.ad_id, c.campaign_id) == (expected,) * 5
    assert c.categories == (expected,)
    e = decode_ad_event(enc(event_msg(event_id=value, request_id=value, ad_id=value)))
    assert (e.event_id, e.request_id, e.ad_id) == (expected,) * 3
    p = decode_privacy(enc(privacy_msg(user_id=value, event_id=value)))
    assert (p.user_id, p.event_id) == (expected, expected)


def test_context_pii_keys_are_dropped() -> None:
    ctx = {
        "page": "home", "slot_position": 2, "email": "bob@example.com", "userEmail": "x",
        "client_ip": "10.0.0.1", "first-name": "Bob", "homephone": "555", "ipAddress": "1",
        "nested": {"a": 1}, "ctrl": "a\x00b",
    }  # fmt: skip
    r = decode_ad_request(enc(request_msg(context=ctx)))
    assert r.context == {"page": "home", "slot_position": 2}
    text = repr(r) + orjson.dumps(ad_request_to_wire(r)).decode()
    for value in ("bob@example.com", "10.0.0.1", "Bob", "555"):
        assert value not in text
    assert decode_ad_request(enc(request_msg(context={"email": "x"}))).context is None


def test_unknown_fields_are_not_stored() -> None:
    r = decode_ad_request(enc(request_msg(email=SECRET, candidates=[cand(note=SECRET)])))
    e = decode_ad_event(enc(event_msg(user_email=SECRET)))
    p = decode_privacy(enc(privacy_msg(name=SECRET)))
    c = decode_control(enc(control_msg(operator=SECRET)))
    wires = [ad_request_to_wire(r), ad_event_to_wire(e), privacy_to_wire(p), control_to_wire(c)]
    for m in (r, e, p, c):
        assert SECRET not in repr(m)
    assert SECRET not in orjson.dumps(wires).decode()


def test_valid_ad_event() -> None:
    e = decode_ad_event(enc(event_msg(type="conversion", cost=0.25, revenue=40)))
    assert e == AdEventMsg("e1", "r1", "a1", "conversion", TS_MS, 0.25, 40.0)
    assert e.kind == "ad_event"


@pytest.mark.parametrize("kind", AD_EVENT_TYPES)
def test_every_event_type_is_accepted_and_amounts_default_to_zero(kind: str) -> None:
    e = decode_ad_event(enc(event_msg(type=kind, cost=None)))
    assert (e.type, e.cost, e.revenue) == (kind, 0.0, 0.0)


def test_negative_zero_amounts_become_zero() -> None:
    e = decode_ad_event(enc(event_msg(cost=-0.0, revenue=-0.0)))
    assert math.copysign(1.0, e.cost) == math.copysign(1.0, e.revenue) == 1.0
    assert ad_event_to_wire(e) == ad_event_to_wire(decode_ad_event(enc(event_msg())))


@pytest.mark.parametrize("action", PRIVACY_ACTIONS)
def test_valid_privacy(action: str) -> None:
    p = decode_privacy(enc(privacy_msg(action=action, event_id=" p-1 ")))
    assert p == PrivacyMsg("u1", action, TS_MS, "p-1")


def test_privacy_event_id_is_derived_deterministically() -> None:
    ms = decode_privacy(enc(privacy_msg(action="opt_out")))
    iso = decode_privacy(enc(privacy_msg(action="opt_out", ts="2024-05-01T14:00:00+02:00")))
    # A redelivery, whatever spelling of ts, dedupes; another action or time does not.
    assert ms.event_id == iso.event_id == f"privacy:opt_out:{TS_MS}"
    assert decode_privacy(enc(privacy_msg(action="opt_in"))).event_id != ms.event_id
    assert decode_privacy(enc(privacy_msg(action="opt_out", ts=TS_MS + 1))).event_id != ms.event_id
    # The raw user id never enters the derived id (it would end up in dedupe state).
    p = decode_privacy(enc(privacy_msg(user_id=SECRET)))
    assert SECRET not in p.event_id
    assert p.event_id == decode_privacy(enc(privacy_msg(user_id="other"))).event_id
    assert decode_privacy(enc(privacy_msg(event_id=None))).event_id == f"privacy:erase:{TS_MS}"


@pytest.mark.parametrize("action", CONTROL_ACTIONS)
def test_valid_control(action: str) -> None:
    assert decode_control(enc(control_msg(action=action))) == ControlMsg(action, TS_MS)


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ("budget check", "budget check"),
        ("  two\n lines\t here ", "two lines here"),
        ("a\x00b\u202ec\u200bd", "a b c d"),
        ("Cafe\u0301", "Café"),
        ("", None),
        (" \x01\u2028 ", None),
        (None, None),
        ("x" * (MAX_REASON_LENGTH + 50), "x" * MAX_REASON_LENGTH),
        ("x" * 50_000, "x" * MAX_REASON_LENGTH),
        ("w " * 200, ("w " * 128).rstrip()),
    ],
)
def test_control_reason_is_cleaned_never_refused(reason: str | None, expected: str | None) -> None:
    # A kill switch must not be refused over its comment.
    c = decode_control(enc(control_msg(reason=reason)))
    assert c.action == "ads_kill" and c.reason == expected
    assert c.reason is None or len(c.reason) <= MAX_REASON_LENGTH


# -- no personal data in errors ----------------------------------------------------------

LEAKY: list[tuple[Decoder, dict[str, Any]]] = [
    (REQ, request_msg(user_id=SECRET, ts="not a time")),
    (REQ, request_msg(user_id=SECRET + "\u202e")),
    (REQ, request_msg(user_id=SECRET, slot=[SECRET])),
    (REQ, request_msg(user_id=SECRET, floor_price=SECRET)),
    (REQ, request_msg(user_id=SECRET, candidates=SECRET)),
    (REQ, request_msg(user_id=SECRET, candidates=[SECRET])),
    (REQ, request_msg(candidates=[cand(ad_id=SECRET), cand(ad_id=SECRET)])),
    (REQ, request_msg(candidates=[cand(categories=[SECRET, SECRET + "\x00"])])),
    (REQ, request_msg(candidates=[cand(ad_id=SECRET, value_per_click=SECRET)])),
    (REQ, request_msg(context=SECRET)),
    (EVT, event_msg(ad_id=SECRET, type=SECRET)),
    (EVT, event_msg(request_id=SECRET, cost=-1)),
    (PRV, privacy_msg(user_id=SECRET, action=SECRET)),
    (PRV, privacy_msg(user_id=SECRET * 20)),
    (CTL, control_msg(action=SECRET, reason=SECRET)),
]


@pytest.mark.parametrize(("decode", "msg"), LEAKY)
def test_error_detail_never_contains_payload_values(decode: Decoder, msg: dict[str, Any]) -> None:
    with pytest.raises(ValidationError) as info:
        decode(enc(msg))
    exc = info.value
    assert SECRET not in str(exc) and SECRET not in repr(exc.args)
    # Nor does the traceback a logger would print (no chained exception carrying it).
    assert SECRET not in "".join(traceback.format_exception(exc))


# -- wire forms -------------------------------------------------------------------------


def test_ad_request_wire_is_json_and_decodes_again() -> None:
    r = decode_ad_request(
        enc(request_msg(context={"page": "home"}, candidates=[
            cand(categories=["x"], value_per_conversion=3.5), cand(ad_id="a2")]))
    )  # fmt: skip
    wire = ad_request_to_wire(r)
    assert wire["kind"] == "ad_request" and wire["ts"] == TS_MS
    assert wire["candidates"][1] == {"ad_id": "a2", "campaign_id": "c1", "value_per_click": 0.5}
    assert wire["context"] == {"page": "home"}
    raw = orjson.dumps(wire)
    assert decode_ad_request(raw) == r
    assert ad_request_from_wire(orjson.loads(raw)) == r
    # Keys added downstream (a user view, say) do not get in the way.
    assert ad_request_from_wire({**wire, "view": {"np": True}}) == r


def test_ad_request_wire_copies_context_and_leaves_out_none() -> None:
    r = AdRequestMsg("r", "u", 1, "s", 0.0, (AdCandidateMsg("a", "c", 1.0),), {"page": "x"})
    wire = ad_request_to_wire(r)
    wire["context"]["page"] = "changed"
    assert r.context == {"page": "x"}
    bare = ad_request_to_wire(AdRequestMsg("r", "u", 1, "s", 0.0, (AdCandidateMsg("a", "c", 1.0),)))
    assert "context" not in bare and set(bare["candidates"][0]) == {
        "ad_id", "campaign_id", "value_per_click",
    }  # fmt: skip


def test_other_wire_forms_decode_again() -> None:
    e = decode_ad_event(enc(event_msg(cost=0.1)))
    p = decode_privacy(enc(privacy_msg()))
    c = decode_control(enc(control_msg(reason="why")))
    c0 = decode_control(enc(control_msg()))
    cases: list[tuple[Msg, Any, Any, Decoder, str]] = [
        (e, ad_event_to_wire, ad_event_from_wire, decode_ad_event, "ad_event"),
        (p, privacy_to_wire, privacy_from_wire, decode_privacy, "privacy"),
        (c, control_to_wire, control_from_wire, decode_control, "control"),
        (c0, control_to_wire, control_from_wire, decode_control, "control"),
    ]
    for msg, to_wire, from_wire, decode, kind in cases:
        wire = orjson.loads(orjson.dumps(to_wire(msg)))
        assert wire["kind"] == kind == msg.kind
        assert from_wire(wire) == msg and decode(orjson.dumps(wire)) == msg
    assert "reason" not in control_to_wire(c0)


# -- properties --------------------------------------------------------------------------

ids = st.integers(0, 9).flatmap(
    lambda i: (
        st.text(st.characters(codec="utf-8"), max_size=12)
        if i == 0
        else st.integers(-(2**63), 2**64 - 1)
        if i == 1
        else st.text("ab7 -_.\u00e9e\u0301\u4e2d", min_size=1, max_size=12)
    )
)
numbers = (
    st.floats(allow_nan=False, allow_infinity=False)
    | st.floats(-1.0, 2e4)
    | st.integers(-(2**63), 2**64 - 1)
    | st.sampled_from([0, -0.0, MAX_FLOOR_PRICE, MAX_VALUE_PER_CLICK, 5e-324])
)


def amounts(cap: float) -> st.SearchStrategy[Any]:
    """Numbers mostly in ``[0, cap]``, often right at the cap or just past it (where an
    off-by-a-little cap would show), plus the edges and anything at all."""
    return st.sampled_from(["any", "edge", "near_cap", "in_range"]).flatmap(
        lambda how: {
            "any": numbers,
            "edge": st.sampled_from([0, -0.0, 1, 5e-324, cap, math.nextafter(cap, math.inf)]),
            "near_cap": st.floats(cap * 0.999, cap * 1.001),
            "in_range": st.floats(0.0, cap),
        }[how]
    )


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=12,
)  # fmt: skip


def field(good: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A valid-looking value most of the time, anything JSON otherwise: so validation gets
    past the first field, and some messages decode."""
    return st.integers(0, 19).flatmap(lambda i: json_values if i == 0 else good)


def maybe(fields: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """Objects with all of ``fields`` (now and then only some), and maybe unknown ones."""
    unknown = {"extra": json_values, "email": st.just(SECRET)}
    return st.integers(0, 4).flatmap(
        lambda i: st.fixed_dictionaries(fields if i else {}, optional=unknown if i else fields)
    )


timestamps = st.integers(-5, 4_102_444_800_005) | st.just("2024-05-01T12:00:00Z")
candidates = maybe({
    "ad_id": field(ids), "campaign_id": field(ids),
    "value_per_click": field(amounts(MAX_VALUE_PER_CLICK)),
    "categories": field(st.lists(ids, max_size=MAX_CATEGORIES + 2)),
    "value_per_conversion": field(amounts(MAX_VALUE_PER_CONVERSION) | st.none()),
})  # fmt: skip
requests = maybe({
    "request_id": field(ids), "user_id": field(ids), "ts": field(timestamps),
    "slot": field(ids), "floor_price": field(amounts(MAX_FLOOR_PRICE) | st.none()),
    "candidates": field(st.lists(candidates, max_size=4)),
    "context": field(st.dictionaries(st.text(max_size=10), json_values, max_size=5)),
})  # fmt: skip
safe_ids = st.text("ab7 -_.\u00e9e\u0301\u4e2d", min_size=1, max_size=12).filter(str.strip)
# Near-valid requests decode often enough to put the caps and the round trip to work.
near_valid_requests = st.fixed_dictionaries(
    {
        "request_id": safe_ids, "user_id": safe_ids | st.integers(0, 10**9),
        "ts": st.integers(0, 4_102_444_799_999), "slot": safe_ids,
        "candidates": st.lists(
            st.fixed_dictionaries(
                {"ad_id": safe_ids, "campaign_id": safe_ids,
                 "value_per_click": amounts(MAX_VALUE_PER_CLICK)},
                optional={"categories": st.lists(safe_ids, max_size=MAX_CATEGORIES),
                          "value_per_conversion": amounts(MAX_VALUE_PER_CONVERSION)},
            ),
            min_size=1, max_size=4, unique_by=lambda c: c["ad_id"].strip(),
        ),
    },
    optional={
        "floor_price": amounts(MAX_FLOOR_PRICE),
        "context": st.dictionaries(st.text(max_size=10), json_values, max_size=5),
    },
)  # fmt: skip
near_valid_events = st.fixed_dictionaries(
    {
        "event_id": safe_ids, "request_id": safe_ids, "ad_id": safe_ids,
        "type": st.sampled_from(AD_EVENT_TYPES), "ts": st.integers(0, 4_102_444_799_999),
    },
    optional={"cost": amounts(MAX_AD_COST), "revenue": amounts(MAX_AD_REVENUE)},
)  # fmt: skip
events = maybe({
    "event_id": field(ids), "request_id": field(ids), "ad_id": field(ids),
    "type": field(st.sampled_from([*AD_EVENT_TYPES, "view"])), "ts": field(timestamps),
    "cost": field(amounts(MAX_AD_COST) | st.none()),
    "revenue": field(amounts(MAX_AD_REVENUE) | st.none()),
})  # fmt: skip
privacies = maybe({
    "user_id": field(ids), "action": field(st.sampled_from([*PRIVACY_ACTIONS, "delete"])),
    "ts": field(timestamps), "event_id": field(ids | st.none()),
})  # fmt: skip
controls = maybe({
    "action": field(st.sampled_from([*CONTROL_ACTIONS, "kill"])), "ts": field(timestamps),
    "reason": field(st.text(st.characters(codec="utf-8"), max_size=400) | st.none()),
})  # fmt: skip

WIRE = {
    AdRequestMsg: (decode_ad_request, ad_request_to_wire, ad_request_from_wire),
    AdEventMsg: (decode_ad_event, ad_event_to_wire, ad_event_from_wire),
    PrivacyMsg: (decode_privacy, privacy_to_wire, privacy_from_wire),
    ControlMsg: (decode_control, control_to_wire, control_from_wire),
}


def check_decoded(msg: Msg) -> None:
    """Numbers finite, within caps, of the right types; the wire form round-trips."""

    def within(x: float, low: float, cap: float, *, zero_ok: bool) -> bool:
        return (
            type(x) is float and math.isfinite(x) and (x >= low if zero_ok else x > low)
            and x <= cap and math.copysign(1.0, x) == 1.0
        )  # fmt: skip

    assert 0 <= msg.ts_ms < 4_102_444_800_000 and type(msg.ts_ms) is int
    if isinstance(msg, AdRequestMsg):
        assert within(msg.floor_price, 0, MAX_FLOOR_PRICE, zero_ok=True)
        assert 1 <= len(msg.candidates) <= MAX_AD_CANDIDATES
        assert len({c.ad_id for c in msg.candidates}) == len(msg.candidates)
        for c in msg.candidates:
            assert within(c.value_per_click, 0, MAX_VALUE_PER_CLICK, zero_ok=False)
            vpc = c.value_per_conversion
            assert vpc is None or within(vpc, 0, MAX_VALUE_PER_CONVERSION, zero_ok=False)
            assert len(c.categories) <= MAX_CATEGORIES
            assert len(set(c.categories)) == len(c.categories)
        for v in (msg.context or {}).values():
            assert not isinstance(v, float) or math.isfinite(v)
    elif isinstance(msg, AdEventMsg):
        assert msg.type in AD_EVENT_TYPES
        assert within(msg.cost, 0, MAX_AD_COST, zero_ok=True)
        assert within(msg.revenue, 0, MAX_AD_REVENUE, zero_ok=True)
    elif isinstance(msg, PrivacyMsg):
        assert msg.action in PRIVACY_ACTIONS and msg.event_id
    else:
        assert msg.action in CONTROL_ACTIONS
        assert msg.reason is None or 0 < len(msg.reason) <= MAX_REASON_LENGTH
    decode, to_wire, from_wire = WIRE[type(msg)]
    raw = orjson.dumps(to_wire(msg))
    assert from_wire(orjson.loads(raw)) == msg
    assert decode(raw) == msg


@settings(deadline=None, max_examples=300)
@given(
    st.one_of(
        st.tuples(st.just(decode_ad_request), requests | near_valid_requests),
        st.tuples(st.just(decode_ad_event), events),
        st.tuples(st.just(decode_privacy), privacies),
        st.tuples(st.just(decode_control), controls),
    )
)
def test_any_message_decodes_or_raises_a_known_code(case: tuple[Decoder, dict[str, Any]]) -> None:
    decode, obj = case
    try:
        msg = decode(orjson.dumps(obj))
    except ValidationError as exc:
        assert exc.code in ERROR_CODES
        assert SECRET not in str(exc)
    else:
        check_decoded(msg)
        assert SECRET not in repr(msg)


FIELD_NAMES = st.sampled_from(
    ["request_id", "user_id", "ts", "slot", "floor_price", "candidates", "context", "event_id",
     "ad_id", "type", "cost", "revenue", "action", "reason"]
)  # fmt: skip


@settings(deadline=None, max_examples=300)
@given(
    st.tuples(st.just(decode_ad_request), near_valid_requests)
    | st.tuples(st.just(decode_ad_event), near_valid_events)
)
def test_decoded_numbers_stay_within_caps(case: tuple[Decoder, dict[str, Any]]) -> None:
    decode, obj = case
    try:
        msg = decode(orjson.dumps(obj))
    except ValidationError as exc:
        assert exc.code in {"bad_value", "out_of_range", "field_too_large"}
    else:
        check_decoded(msg)


@settings(deadline=None)
@given(json_values | st.dictionaries(FIELD_NAMES, json_values))
def test_any_json_raises_only_validation_error(value: Any) -> None:
    raw = orjson.dumps(value)
    for decode in DECODERS:
        try:
            msg = decode(raw)
        except ValidationError as exc:
            assert exc.code in ERROR_CODES
        else:
            check_decoded(msg)


@settings(deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_raise_only_validation_error(raw: bytes) -> None:
    for decode in DECODERS:
        try:
            decode(raw)
        except ValidationError as exc:
            assert exc.code in ERROR_CODES


def test_the_property_strategies_reach_the_valid_side() -> None:
    # Guards against a generator so broken that the properties only ever see errors.
    @settings(deadline=None, max_examples=200, database=None)
    @given(requests | near_valid_requests, events, privacies, controls)
    def run(r: dict[str, Any], e: dict[str, Any], p: dict[str, Any], c: dict[str, Any]) -> None:
        for decode, obj in zip(DECODERS, (r, e, p, c), strict=True):
            try:
                decode(orjson.dumps(obj))
            except ValidationError:
                continue
            decoded.add(decode.__name__)

    decoded: set[str] = set()
    run()
    assert decoded == {d.__name__ for d in DECODERS}
