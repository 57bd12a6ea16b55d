"""Boundary validation of ``clicks`` and ``purchases``: one case per rule, plus properties."""

from __future__ import annotations

import pickle
import unicodedata
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.messages import decode_event_message
from streams.records import (
    CURRENCIES,
    ERROR_CODES,
    INGEST_CODES,
    MAX_CONTEXT_KEYS,
    MAX_CONTEXT_VALUE_LENGTH,
    MAX_ID_LENGTH,
    MAX_JSON_DEPTH,
    MAX_MESSAGE_BYTES,
    MAX_PRICE,
    MAX_QUANTITY,
    MAX_TS_MS,
    Click,
    Purchase,
    ValidationError,
    decode_click,
    decode_purchase,
    fingerprint,
    is_pii_key,
)


def to_wire(event: Click | Purchase) -> dict:
    """The event's wire form as a dict (its one encoding, ``encode()``, is this as JSON)."""
    return event.to_dict()


def from_wire(d: dict) -> Click | Purchase:
    """A click or purchase read back as the profile agent reads the events topic."""
    event = decode_event_message(orjson.dumps(d))
    if not isinstance(event, (Click, Purchase)):
        raise ValueError(f"not a click or purchase: {d.get('kind')!r}")
    return event

DROP = object()  # marks a field to remove from the base message
SECRET_USER = "SECRET-USER-7f3a-zz"
TS_MS = 1_714_564_800_000  # 2024-05-01T12:00:00Z

Decoder = Callable[[bytes | bytearray | None], Click | Purchase]


def click_msg(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"event_id": "e1", "user_id": "u1", "item_id": "i1", "ts": TS_MS}
    return _apply(base, fields)


def purchase_msg(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "event_id": "e1", "user_id": "u1", "item_id": "i1", "ts": TS_MS,
        "price": 9.5, "quantity": 2,
    }  # fmt: skip
    return _apply(base, fields)


def _apply(base: dict[str, Any], fields: dict[str, Any]) -> dict[str, Any]:
    for name, value in fields.items():
        if value is DROP:
            base.pop(name, None)
        else:
            base[name] = value
    return base


def enc(obj: Any) -> bytes:
    return orjson.dumps(obj)


def code_of(decode: Decoder, raw: bytes | None) -> str:
    with pytest.raises(ValidationError) as info:
        decode(raw)
    return info.value.code


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


# -- every rule, invalid side: (decoder, raw message, expected code) ------------------------

INVALID: list[tuple[str, Decoder, bytes | None, str]] = [
    ("tombstone", decode_click, None, "tombstone"),
    ("str not bytes", decode_click, "{}", "wrong_type"),  # type: ignore[list-item]
    ("too large", decode_click, enc(click_msg(pad="x" * MAX_MESSAGE_BYTES)), "too_large"),
    ("bad utf-8 byte", decode_click, b'{"event_id": "\xff"}', "not_utf8"),
    ("utf-8 surrogate", decode_click, b'"\xed\xa0\x80"', "not_utf8"),
    ("truncated json", decode_click, b'{"event_id": "e1"', "bad_json"),
    ("empty", decode_click, b"", "bad_json"),
    ("NaN literal", decode_purchase, b'{"price": NaN}', "non_finite"),
    ("Infinity literal", decode_purchase, b'{"price": Infinity}', "non_finite"),
    ("-Infinity literal", decode_purchase, '{"é": 1, "price": -Infinity}'.encode(), "non_finite"),
    ("lowercase nan", decode_purchase, b'{"price": nan}', "bad_json"),
    ("BOM", decode_click, b"\xef\xbb\xbf{}", "bad_json"),
    ("overflow to inf", decode_purchase, b'{"price": 1e400}', "non_finite"),
    ("deep", decode_click, enc(click_msg(extra=nested(MAX_JSON_DEPTH))), "too_deep"),
    ("very deep", decode_click, b"[" * 5000 + b"]" * 5000, "too_deep"),
    ("array", decode_click, b"[]", "not_object"),
    ("null", decode_click, b"null", "not_object"),
    ("string", decode_click, b'"x"', "not_object"),
    ("number", decode_click, b"1", "not_object"),
    *[
        (f"missing {f}", decode_click, enc(click_msg(**{f: DROP})), "missing_field")
        for f in ("event_id", "user_id", "item_id", "ts")
    ],
    *[
        (f"missing {f}", decode_purchase, enc(purchase_msg(**{f: DROP})), "missing_field")
        for f in ("event_id", "user_id", "item_id", "ts", "price", "quantity")
    ],
    ("null user_id", decode_click, enc(click_msg(user_id=None)), "missing_field"),
    ("null price", decode_purchase, enc(purchase_msg(price=None)), "missing_field"),
    ("bool id", decode_click, enc(click_msg(user_id=True)), "wrong_type"),
    ("float id", decode_click, enc(click_msg(user_id=12.0)), "wrong_type"),
    # Beyond 64 bits orjson yields a float, and floats are not ids.
    (
        "huge int id",
        decode_click,
        enc(click_msg(user_id=0)).replace(b'"user_id":0', b'"user_id":18446744073709551616'),
        "wrong_type",
    ),
    ("list id", decode_click, enc(click_msg(item_id=["i"])), "wrong_type"),
    ("object id", decode_click, enc(click_msg(event_id={"a": 1})), "wrong_type"),
    ("list recommendation_id", decode_click, enc(click_msg(recommendation_id=[1])), "wrong_type"),
    ("bool ts", decode_click, enc(click_msg(ts=True)), "wrong_type"),
    ("list ts", decode_click, enc(click_msg(ts=[TS_MS])), "wrong_type"),
    ("string price", decode_purchase, enc(purchase_msg(price="9.5")), "wrong_type"),
    ("bool price", decode_purchase, enc(purchase_msg(price=True)), "wrong_type"),
    ("fractional quantity", decode_purchase, enc(purchase_msg(quantity=1.5)), "wrong_type"),
    ("string quantity", decode_purchase, enc(purchase_msg(quantity="2")), "wrong_type"),
    ("bool quantity", decode_purchase, enc(purchase_msg(quantity=True)), "wrong_type"),
    ("number currency", decode_purchase, enc(purchase_msg(currency=978)), "wrong_type"),
    ("list context", decode_click, enc(click_msg(context=["page"])), "wrong_type"),
    ("string context", decode_click, enc(click_msg(context="home")), "wrong_type"),
    ("empty id", decode_click, enc(click_msg(user_id="")), "empty_id"),
    ("blank id", decode_click, enc(click_msg(item_id=" \t\n ")), "empty_id"),
    ("blank recommendation_id", decode_click, enc(click_msg(recommendation_id=" ")), "empty_id"),
    ("NUL in id", decode_click, enc(click_msg(user_id="a\x00b")), "bad_characters"),
    ("DEL in id", decode_click, enc(click_msg(user_id="a\x7fb")), "bad_characters"),
    ("tab inside id", decode_click, enc(click_msg(user_id="a\tb")), "bad_characters"),
    ("NEL inside id", decode_click, enc(click_msg(user_id="a\u0085b")), "bad_characters"),
    ("zero-width space", decode_click, enc(click_msg(user_id="a\u200bb")), "bad_characters"),
    ("bidi override", decode_click, enc(click_msg(item_id="abc\u202edef")), "bad_characters"),
    ("line separator", decode_click, enc(click_msg(event_id="a\u2028b")), "bad_characters"),
    ("too long ascii", decode_click, enc(click_msg(user_id="x" * (MAX_ID_LENGTH + 1))), "too_long"),
    (
        "too long unicode",
        decode_click,
        enc(click_msg(item_id="é" * (MAX_ID_LENGTH + 1))),
        "too_long",
    ),
    ("yesterday", decode_click, enc(click_msg(ts="yesterday")), "bad_timestamp"),
    ("empty ts", decode_click, enc(click_msg(ts="")), "bad_timestamp"),
    ("naive ts", decode_click, enc(click_msg(ts="2024-05-01T12:00:00")), "bad_timestamp"),
    ("date only", decode_click, enc(click_msg(ts="2024-05-01")), "bad_timestamp"),
    ("digits string", decode_click, enc(click_msg(ts=str(TS_MS))), "bad_timestamp"),
    ("non-ascii digits", decode_click, enc(click_msg(ts="٢٠٢٤-05-01T12:00:00Z")), "bad_timestamp"),
    ("iso before 1970", decode_click, enc(click_msg(ts="1969-12-31T23:59:59Z")), "bad_timestamp"),
    ("iso 2100", decode_click, enc(click_msg(ts="2100-01-01T00:00:00Z")), "bad_timestamp"),
    ("negative ms", decode_click, enc(click_msg(ts=-1)), "bad_timestamp"),
    ("ms at 2100", decode_click, enc(click_msg(ts=MAX_TS_MS)), "bad_timestamp"),
    ("fractional ms", decode_click, enc(click_msg(ts=TS_MS + 0.5)), "bad_timestamp"),
    ("zero price", decode_purchase, enc(purchase_msg(price=0)), "bad_price"),
    ("negative price", decode_purchase, enc(purchase_msg(price=-1.5)), "bad_price"),
    ("negative zero price", decode_purchase, enc(purchase_msg(price=-0.0)), "bad_price"),
    ("zero quantity", decode_purchase, enc(purchase_msg(quantity=0)), "bad_quantity"),
    ("negative quantity", decode_purchase, enc(purchase_msg(quantity=-3)), "bad_quantity"),
    ("lowercase currency", decode_purchase, enc(purchase_msg(currency="eur")), "unknown_currency"),
    ("4-letter currency", decode_purchase, enc(purchase_msg(currency="EURO")), "unknown_currency"),
    ("digit in currency", decode_purchase, enc(purchase_msg(currency="E1R")), "unknown_currency"),
    ("accented currency", decode_purchase, enc(purchase_msg(currency="ÉUR")), "unknown_currency"),
    ("made-up currency", decode_purchase, enc(purchase_msg(currency="ABC")), "unknown_currency"),
    ("withdrawn currency", decode_purchase, enc(purchase_msg(currency="HRK")), "unknown_currency"),
    ("no-currency code", decode_purchase, enc(purchase_msg(currency="XXX")), "unknown_currency"),
    ("newer schema", decode_click, enc(click_msg(schema_version=2)), "unsupported_version"),
    ("schema version 0", decode_purchase, enc(purchase_msg(schema_version=0)),
     "unsupported_version"),
    ("string schema version", decode_click, enc(click_msg(schema_version="2")), "wrong_type"),
    ("absurd price", decode_purchase, enc(purchase_msg(price=1e300)), "out_of_range"),
    ("price over cap", decode_purchase, enc(purchase_msg(price=MAX_PRICE + 0.01)), "out_of_range"),
    (
        "huge quantity",
        decode_purchase,
        enc(purchase_msg(quantity=MAX_QUANTITY + 1)),
        "out_of_range",
    ),
]


@pytest.mark.parametrize(
    ("decode", "raw", "code"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID]
)
def test_invalid_message_gets_exact_code(decode: Decoder, raw: bytes | None, code: str) -> None:
    assert code_of(decode, raw) == code


def test_every_error_code_is_exercised_and_documented() -> None:
    from tests.unit.test_item_records import ITEM_INVALID
    from tests.unit.test_records_ads import AD_INVALID

    # The ingest-level codes (key, Kafka timestamp) are exercised in test_input_catalogue.py.
    decoded = {c[3] for c in INVALID} | {c[2] for c in ITEM_INVALID} | {c[3] for c in AD_INVALID}
    assert decoded | INGEST_CODES == set(ERROR_CODES)
    assert all(isinstance(v, str) and v for v in ERROR_CODES.values())


def test_validation_error_shape() -> None:
    exc = ValidationError("bad_value", "field 'price' must be > 0")
    assert (exc.code, exc.detail) == ("bad_value", "field 'price' must be > 0")
    assert str(exc) == "bad_value: field 'price' must be > 0"
    back = pickle.loads(pickle.dumps(exc))
    assert (back.code, back.detail) == (exc.code, exc.detail)


def test_unknown_error_code_is_a_bug() -> None:
    with pytest.raises(ValueError):
        ValidationError("no_such_code", "x")


# -- valid side and normalization ------------------------------------------------------


def test_valid_minimal_click() -> None:
    assert decode_click(enc(click_msg())) == Click("e1", "u1", "i1", TS_MS)


def test_valid_full_purchase() -> None:
    raw = enc(purchase_msg(currency="EUR", recommendation_id="r9"))
    p = decode_purchase(raw)
    assert p == Purchase("e1", "u1", "i1", TS_MS, 9.5, 2, currency="EUR", recommendation_id="r9")
    assert p.amount == 19.0
    assert p.kind == "purchase" and Click.kind == "click"


@pytest.mark.parametrize(
    ("ts", "expected"),
    [
        ("2024-05-01T12:00:00Z", TS_MS),
        ("2024-05-01T14:00:00+02:00", TS_MS),
        ("2024-05-01T07:00:00-05:00", TS_MS),
        ("2024-05-01T12:00:00.123456Z", TS_MS + 123),  # truncated to milliseconds
        ("1970-01-01T00:00:00Z", 0),
        (TS_MS, TS_MS),
        (float(TS_MS), TS_MS),
        (0, 0),
        (MAX_TS_MS - 1, MAX_TS_MS - 1),
    ],
)
def test_valid_timestamps(ts: Any, expected: int) -> None:
    assert decode_click(enc(click_msg(ts=ts))).ts_ms == expected


def test_ids_are_trimmed() -> None:
    c = decode_click(enc(click_msg(user_id="  u1\t", item_id="\ni1 ", recommendation_id=" r ")))
    assert (c.user_id, c.item_id, c.recommendation_id) == ("u1", "i1", "r")


def test_nfc_and_nfd_spellings_are_one_id() -> None:
    nfc, nfd = "Jos\u00e9", "Jose\u0301"
    assert nfc != nfd
    assert decode_click(enc(click_msg(user_id=nfd))).user_id == nfc
    assert decode_click(enc(click_msg(user_id=nfc))).user_id == nfc


def test_id_length_is_counted_after_nfc() -> None:
    # 200 decomposed characters are 400 code points, but 200 once composed.
    assert len(decode_click(enc(click_msg(user_id="e\u0301" * 200))).user_id) == 200
    assert len(decode_click(enc(click_msg(user_id="x" * MAX_ID_LENGTH))).user_id) == MAX_ID_LENGTH


@pytest.mark.parametrize(("value", "expected"), [(123, "123"), (0, "0"), (-7, "-7")])
def test_integer_ids_become_strings(value: int, expected: str) -> None:
    c = decode_click(enc(click_msg(user_id=value, item_id=value, recommendation_id=value)))
    assert (c.user_id, c.item_id, c.recommendation_id) == (expected,) * 3
    assert c.user_id == decode_click(enc(click_msg(user_id=expected))).user_id


def test_internal_space_and_non_ascii_letters_are_kept() -> None:
    assert (
        decode_click(enc(click_msg(item_id="red shoe \u00fc\u4e2d"))).item_id
        == "red shoe \u00fc\u4e2d"
    )


def test_price_and_quantity_normalization() -> None:
    p = decode_purchase(enc(purchase_msg(price=10, quantity=1.0)))
    assert (p.price, p.quantity) == (10.0, 1)
    assert type(p.price) is float and type(p.quantity) is int
    top = decode_purchase(enc(purchase_msg(price=MAX_PRICE, quantity=MAX_QUANTITY)))
    assert (top.price, top.quantity) == (MAX_PRICE, MAX_QUANTITY)


def test_null_optionals_are_absent() -> None:
    p = decode_purchase(enc(purchase_msg(currency=None, recommendation_id=None)))
    assert p.currency is None and p.recommendation_id is None
    c = decode_click(enc(click_msg(context=None, recommendation_id=None)))
    assert c.context is None and c.recommendation_id is None


def test_unknown_and_pii_top_level_fields_are_dropped() -> None:
    raw = enc(
        purchase_msg(
            email="bob@example.com", phone="+15550100", ip="10.1.2.3", name="Bob",
            address="1 Main St", extra={"nested": [1, 2]}, note="hello",
        )
    )  # fmt: skip
    p = decode_purchase(raw)
    wire = to_wire(p)
    assert set(wire) == {"kind", "event_id", "user_id", "item_id", "ts", "price", "quantity"}
    text = repr(p) + orjson.dumps(wire).decode()
    for value in ("bob@example.com", "+15550100", "10.1.2.3", "Bob", "Main St", "hello"):
        assert value not in text


def test_context_keeps_scalars_and_drops_the_rest() -> None:
    ctx = {
        "page": "home", "position": 3, "score": 0.5, "logged_in": True,
        "nested": {"a": 1}, "list": [1], "none": None,
        "long": "x" * (MAX_CONTEXT_VALUE_LENGTH + 1), "ctrl": "a\x00b",
        "k" * 65: "long key", "": "empty key", "bad\u200bkey": 1,
        "email": "bob@example.com", "userEmail": "x", "client_ip": "10.0.0.1",
        "first-name": "Bob", "shipping.address": "Main St", "homephone": "555",
    }  # fmt: skip
    c = decode_click(enc(click_msg(context=ctx)))
    assert c.context == {"page": "home", "position": 3, "score": 0.5, "logged_in": True}
    assert type(c.context["logged_in"]) is bool


def test_context_keeps_at_most_16_keys_independent_of_order() -> None:
    keys = [f"k{i:02d}" for i in range(40)]
    forward = decode_click(enc(click_msg(context={k: 1 for k in keys}))).context
    backward = decode_click(enc(click_msg(context={k: 1 for k in reversed(keys)}))).context
    assert forward is not None and len(forward) == MAX_CONTEXT_KEYS
    assert forward == backward == {k: 1 for k in keys[:MAX_CONTEXT_KEYS]}


def test_empty_context_is_none() -> None:
    assert decode_click(enc(click_msg(context={}))).context is None
    assert decode_click(enc(click_msg(context={"email": "x"}))).context is None


def test_context_strings_are_nfc() -> None:
    c = decode_click(enc(click_msg(context={"q": "cafe\u0301"})))
    assert c.context == {"q": "caf\u00e9"}


@pytest.mark.parametrize(
    ("key", "pii"),
    [
        ("email", True), ("E-Mail", True), ("userEmail", True), ("user_email", True),
        ("phone", True), ("phoneNumber", True), ("ip", True), ("client-ip", True),
        ("name", True), ("firstName", True), ("address", True), ("billing.address", True),
        ("page", False), ("zip", False), ("device", False), ("position", False),
        ("ship_method", False), ("referrer", False),
    ],
)  # fmt: skip
def test_pii_key_detection(key: str, pii: bool) -> None:
    assert is_pii_key(key) is pii


def test_message_exactly_at_the_size_cap_is_accepted() -> None:
    base = enc(click_msg(pad=""))
    raw = enc(click_msg(pad="x" * (MAX_MESSAGE_BYTES - len(base))))
    assert len(raw) == MAX_MESSAGE_BYTES
    assert decode_click(raw) == Click("e1", "u1", "i1", TS_MS)


def test_nesting_up_to_the_limit_is_accepted() -> None:
    # The object itself is one level, so MAX_JSON_DEPTH - 1 more are allowed.
    raw = enc(click_msg(extra=nested(MAX_JSON_DEPTH - 2)))
    assert decode_click(raw).event_id == "e1"


def test_bytearray_is_accepted() -> None:
    raw = enc(click_msg())
    assert decode_click(bytearray(raw)) == decode_click(raw)


# -- no personal data in errors ----------------------------------------------------------

LEAKY: list[tuple[Decoder, dict[str, Any]]] = [
    (decode_click, click_msg(user_id=SECRET_USER, ts="not a time")),
    (decode_click, click_msg(user_id=SECRET_USER + "\x00")),
    (decode_click, click_msg(user_id=SECRET_USER + "\u202e")),
    (decode_click, click_msg(user_id=SECRET_USER * 20)),
    (decode_click, click_msg(user_id=SECRET_USER, item_id=[SECRET_USER])),
    (decode_click, click_msg(user_id=SECRET_USER, context=SECRET_USER)),
    (decode_click, click_msg(event_id=SECRET_USER, user_id=None)),
    (decode_purchase, purchase_msg(user_id=SECRET_USER, price=-1)),
    (decode_purchase, purchase_msg(user_id=SECRET_USER, quantity=SECRET_USER)),
    (decode_purchase, purchase_msg(user_id=SECRET_USER, currency=SECRET_USER)),
]


@pytest.mark.parametrize(("decode", "msg"), LEAKY)
def test_error_detail_never_contains_payload_values(decode: Decoder, msg: dict[str, Any]) -> None:
    with pytest.raises(ValidationError) as info:
        decode(enc(msg))
    exc = info.value
    assert SECRET_USER not in exc.detail
    assert SECRET_USER not in str(exc) and SECRET_USER not in repr(exc.args)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"user_id": "' + SECRET_USER.encode() + b'", "ts": ',
        b'{"user_id": "' + SECRET_USER.encode() + b'\xff"}',
        b'{"user_id": "' + SECRET_USER.encode() + b'", "price": 1e999}',
    ],
)
def test_json_errors_do_not_chain_the_raw_document(raw: bytes) -> None:
    # A chained orjson error carries the whole document in ``.doc`` into logged tracebacks.
    with pytest.raises(ValidationError) as info:
        decode_click(raw)
    assert SECRET_USER not in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__


# -- wire format and fingerprint ---------------------------------------------------------


def test_to_wire_is_json_and_redecodes() -> None:
    c = Click("e", "u", "i", 5, recommendation_id="r", context={"page": "home", "n": 2})
    p = Purchase("e", "u", "i", 5, 2.5, 3, currency="EUR", recommendation_id="r")
    assert decode_click(orjson.dumps(to_wire(c))) == c
    assert decode_purchase(orjson.dumps(to_wire(p))) == p
    assert to_wire(c)["kind"] == "click" and to_wire(p)["kind"] == "purchase"


def test_to_wire_copies_context() -> None:
    c = Click("e", "u", "i", 5, context={"page": "home"})
    to_wire(c)["context"]["page"] = "changed"
    assert c.context == {"page": "home"}


def test_from_wire_rejects_unknown_kind() -> None:
    with pytest.raises(ValueError):
        from_wire({"kind": "rating", "event_id": "e"})


def test_fingerprint_is_stable_and_payload_sensitive() -> None:
    a = decode_purchase(enc(purchase_msg(currency="EUR")))
    reordered = dict(
        reversed(list(purchase_msg(currency="EUR", ts="2024-05-01T12:00:00Z").items()))
    )
    b = decode_purchase(enc(reordered))
    assert fingerprint(a) == fingerprint(b)
    assert len(fingerprint(a)) == 16 and int(fingerprint(a), 16) >= 0
    for changed in (purchase_msg(price=9.6), purchase_msg(quantity=3), purchase_msg(item_id="i2")):
        assert fingerprint(decode_purchase(enc(changed))) != fingerprint(a)
    # Same fields, other record kind: different payload.
    assert fingerprint(Click("e", "u", "i", 5)) != fingerprint(Purchase("e", "u", "i", 5, 1.0, 1))


def test_fingerprint_ignores_the_user_id() -> None:
    assert fingerprint(Click("e", "alice", "i", 5)) == fingerprint(Click("e", "bob", "i", 5))


def test_fingerprint_ignores_context_key_order_and_nfd() -> None:
    a = decode_click(enc(click_msg(user_id="Jos\u00e9", context={"a": 1, "b": "x"})))
    b = decode_click(enc(click_msg(user_id="Jose\u0301", context={"b": "x", "a": 1})))
    assert fingerprint(a) == fingerprint(b)


# -- properties --------------------------------------------------------------------------

_BAD = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def _nfc(s: str) -> str:
    return unicodedata.normalize("NFC", s)


def _clean(s: str) -> bool:
    return all(unicodedata.category(ch) not in _BAD for ch in s)


_text = st.text(
    st.characters(blacklist_categories=("Cc", "Cf", "Cs", "Zl", "Zp")), max_size=24
).map(_nfc)
ids = _text.filter(lambda s: s != "" and s == s.strip() and len(s) <= MAX_ID_LENGTH and _clean(s))
ts_ms = st.integers(0, MAX_TS_MS - 1)
context_keys = _text.filter(lambda k: 0 < len(k) <= 64 and _clean(k) and not is_pii_key(k))
context_values = st.one_of(
    _text.filter(_clean),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
)
contexts = st.dictionaries(context_keys, context_values, max_size=MAX_CONTEXT_KEYS).map(
    lambda d: d or None
)
clicks = st.builds(Click, ids, ids, ids, ts_ms, st.none() | ids, st.none() | contexts)
purchases = st.builds(
    Purchase, ids, ids, ids, ts_ms,
    st.floats(min_value=0.0, max_value=MAX_PRICE, exclude_min=True),
    st.integers(1, MAX_QUANTITY),
    st.none() | st.sampled_from(sorted(CURRENCIES)),
    st.none() | ids,
)  # fmt: skip
events = st.one_of(clicks, purchases)


def _decoder(event: Click | Purchase) -> Decoder:
    return decode_click if isinstance(event, Click) else decode_purchase


@st.composite
def producer_spellings(draw: st.DrawFn, event: Click | Purchase) -> dict[str, Any]:
    """A message a producer might send for ``event``: other ts forms, padding, NFD, extras."""
    msg = to_wire(event)
    del msg["kind"]
    form = draw(st.sampled_from(["int", "float", "iso"]))
    if form == "float":
        msg["ts"] = float(event.ts_ms)
    elif form == "iso":
        offset = timezone(timedelta(minutes=draw(st.integers(-23 * 60, 23 * 60))))
        dt = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=event.ts_ms)
        msg["ts"] = dt.astimezone(offset).isoformat(timespec="milliseconds")
    for field in ("event_id", "user_id", "item_id", "recommendation_id"):
        if msg.get(field) is not None:
            value = msg[field]
            if draw(st.booleans()):
                value = unicodedata.normalize("NFD", value)
            msg[field] = (
                draw(st.sampled_from(["", " ", "\t"]))
                + value
                + draw(st.sampled_from(["", " ", "\n"]))
            )
    if draw(st.booleans()):
        msg["unknown_field"] = {"x": [1, 2, 3]}
        msg["email"] = "someone@example.com"
    return msg


@settings(deadline=None)
@given(st.data())
def test_valid_events_survive_encoding(data: st.DataObject) -> None:
    event = data.draw(events)
    msg = data.draw(producer_spellings(event))
    assert _decoder(event)(orjson.dumps(msg)) == event


@settings(deadline=None)
@given(events)
def test_wire_round_trip_is_exact(event: Click | Purchase) -> None:
    back = from_wire(orjson.loads(orjson.dumps(to_wire(event))))
    assert back == event and type(back) is type(event)
    assert from_wire(to_wire(event)) == event
    assert fingerprint(back) == fingerprint(event)


@settings(deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_validation_error(raw: bytes) -> None:
    for decode in (decode_click, decode_purchase):
        try:
            decode(raw)
        except ValidationError as exc:
            assert exc.code in ERROR_CODES


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)  # fmt: skip
field_names = st.sampled_from(
    ["event_id", "user_id", "item_id", "ts", "price", "quantity", "currency",
     "recommendation_id", "context", "email"]
)  # fmt: skip
# Mostly the right field names with arbitrary values, so validation goes past the first field.
messages = json_values | st.dictionaries(field_names, json_values)


@settings(deadline=None)
@given(messages)
def test_arbitrary_json_raises_only_validation_error(value: Any) -> None:
    raw = orjson.dumps(value)
    for decode in (decode_click, decode_purchase):
        try:
            event = decode(raw)
        except ValidationError as exc:
            assert exc.code in ERROR_CODES
        else:
            assert from_wire(to_wire(event)) == event
