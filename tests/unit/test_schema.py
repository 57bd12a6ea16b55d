"""The public topics' JSON Schemas and docs/contract.md's field tables (streams/schema.py):
in sync with the doc, and in agreement with the decoders on real messages."""

from __future__ import annotations

import base64
import copy
import json
import math
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import typer
from typer.testing import CliRunner

from streams.cli.schema import register
from streams.messages import (
    MAX_AD_CANDIDATES,
    MAX_CATEGORIES,
    MAX_ID_LENGTH,
    AdBid,
    AudienceChange,
    DeadLetter,
    Recommendation,
    RecommendedItem,
    SegmentChange,
)
from streams.records import (
    ValidationError,
    decode_ad_event,
    decode_ad_request,
    decode_click,
    decode_control,
    decode_item,
    decode_privacy,
    decode_purchase,
)
from streams.schema import (
    DRAFT,
    INPUTS,
    OUTPUTS,
    TOPICS,
    UnknownTopic,
    all_schemas,
    field_rows,
    main,
    public_fields,
    render_doc,
    topic_schema,
)

CONTRACT = Path(__file__).resolve().parents[2] / "docs" / "contract.md"
TS = 1_714_564_800_000
USER = "u" + "3f" * 16  # a pseudonym's shape


# -- a small JSON Schema validator: the keywords the generator uses ------------------------


def _is(kind: str, value: Any) -> bool:
    if kind == "integer":  # JSON Schema: any number with a zero fractional part
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer())
    return {
        "string": isinstance(value, str),
        "number": isinstance(value, (int, float)) and not isinstance(value, bool),
        "boolean": isinstance(value, bool),
        "object": isinstance(value, dict),
        "array": isinstance(value, list),
        "null": value is None,
    }[kind]


def errors(schema: dict[str, Any], value: Any, path: str = "$") -> list[str]:
    """Why ``value`` breaks ``schema`` (empty: it is valid)."""
    types = schema.get("type")
    if types is not None:
        types = types if isinstance(types, list) else [types]
        if not any(_is(t, value) for t in types):
            return [f"{path}: not {' or '.join(types)}"]
    out = []
    # Numbers compare by value (1 and 1.0 are one), other types only with their own.
    if "enum" in schema and not any(
            value == v and (type(value) is type(v) or (_is("number", value) and _is("number", v)))
            for v in schema["enum"]):
        out.append(f"{path}: not in enum")
    if "const" in schema and value != schema["const"]:
        out.append(f"{path}: not {schema['const']}")
    if _is("number", value):
        for key, ok in (("minimum", lambda b: value >= b), ("maximum", lambda b: value <= b),
                        ("exclusiveMinimum", lambda b: value > b),
                        ("exclusiveMaximum", lambda b: value < b)):
            if key in schema and not ok(schema[key]):
                out.append(f"{path}: breaks {key}")
    if isinstance(value, str):
        if len(value) > schema.get("maxLength", math.inf):
            out.append(f"{path}: too long")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            out.append(f"{path}: does not match {schema['pattern']}")
    if isinstance(value, list):
        if not schema.get("minItems", 0) <= len(value) <= schema.get("maxItems", math.inf):
            out.append(f"{path}: wrong number of entries")
        for i, v in enumerate(value):
            out += errors(schema.get("items", {}), v, f"{path}[{i}]")
    if isinstance(value, dict):
        out += [f"{path}.{k}: missing" for k in schema.get("required", ()) if k not in value]
        for k, v in value.items():
            if k in schema.get("properties", {}):
                out += errors(schema["properties"][k], v, f"{path}.{k}")
            elif schema.get("additionalProperties") is False:
                out.append(f"{path}.{k}: not allowed")
        if "oneOf" in schema:
            matched = sum(not errors(s, value, path) for s in schema["oneOf"])
            if matched != 1:
                out.append(f"{path}: matches {matched} of oneOf")
    return out


def test_the_validator_catches_what_it_should() -> None:
    s = {"type": "object", "required": ["a"], "properties": {
        "a": {"type": "integer", "minimum": 1}, "b": {"type": "array", "maxItems": 1}}}
    assert errors(s, {"a": 1.0}) == []
    assert errors(s, {"a": True}) and errors(s, {"a": 0}) and errors(s, {})
    assert errors(s, {"a": 1, "b": [1, 2]}) and errors(s, [])


# -- docs/contract.md ----------------------------------------------------------------------


def test_contract_tables_match_the_declarations() -> None:
    text = CONTRACT.read_text(encoding="utf-8")
    assert render_doc(text) == text, (
        "docs/contract.md's field tables are stale: python -m streams.schema write-doc "
        "docs/contract.md")
    assert main(["check-doc", str(CONTRACT)]) == 0


def test_render_doc_rewrites_stale_blocks_and_wants_every_topic() -> None:
    blocks = "".join(f"<!-- fields:{t} -->\nstale\n<!-- /fields:{t} -->\n" for t in TOPICS)
    out = render_doc("intro\n" + blocks)
    assert "stale" not in out and out.startswith("intro\n")
    assert "| `candidates[].ad_id` |" in out and "| `no_bid_reason` |" in out
    with pytest.raises(ValueError, match="dead-letters"):
        render_doc(blocks.replace("fields:dead-letters", "fields:nothing"))


def test_write_doc_rewrites_a_file(tmp_path: Path) -> None:
    doc = tmp_path / "c.md"
    doc.write_text("".join(f"<!-- fields:{t} -->\n<!-- /fields:{t} -->\n" for t in TOPICS))
    assert main(["check-doc", str(doc)]) == 1
    assert main(["write-doc", str(doc)]) == 0 and main(["check-doc", str(doc)]) == 0
    assert main(["rewrite", str(doc)]) == 2


def test_rows_name_every_field_once() -> None:
    for topic in TOPICS:
        names = [row[0] for row in field_rows(topic)]
        assert len(names) == len(set(names)) and all(len(row) == 4 for row in field_rows(topic))


# -- the schemas ------------------------------------------------------------------------------


def test_every_public_topic_has_a_schema() -> None:
    schemas = all_schemas()
    assert list(schemas) == list(TOPICS) == [*INPUTS, *OUTPUTS]
    assert len(TOPICS) == 12
    for topic, schema in schemas.items():
        assert schema["$schema"] == DRAFT and schema["title"] == topic
        assert schema["type"] == "object" and set(schema["required"]) <= set(schema["properties"])
        assert json.loads(json.dumps(schema)) == schema
        assert ("schema_version" in schema["properties"]) == (topic in INPUTS)
    with pytest.raises(UnknownTopic, match="clicks, purchases"):
        topic_schema("click")


# Valid messages of each input topic: everything set, and the least that is valid.
FULL: dict[str, dict[str, Any]] = {
    "clicks": {"event_id": "e1", "user_id": "u1", "item_id": "i1", "ts": "2024-05-01T12:00:00Z",
               "recommendation_id": "r1", "context": {"page": "home"}, "schema_version": 1},
    "purchases": {"event_id": 7, "user_id": "u1", "item_id": "i1", "ts": TS, "price": 9.5,
                  "quantity": 2, "currency": "EUR", "recommendation_id": "r1"},
    "items": {"item_id": "sku-1", "title": "Mug", "categories": ["kitchen", 3],
              "description": "A mug.", "price": 4.5, "available": False},
    "ad-requests": {"request_id": "q1", "user_id": 7, "ts": TS, "slot": "top", "floor_price": 0.1,
                    "candidates": [{"ad_id": "a1", "campaign_id": "c1", "value_per_click": 0.5,
                                    "categories": ["books"], "value_per_conversion": 3.0}],
                    "context": {"page": "search"}},
    "ad-events": {"event_id": "v1", "request_id": "q1", "ad_id": "a1", "type": "conversion",
                  "ts": "2024-05-01T14:00:00+02:00", "cost": 0.2, "revenue": 40},
    "privacy": {"user_id": "u1", "action": "erase", "ts": TS, "event_id": "p1"},
    "control": {"action": "ads_kill", "ts": TS, "reason": "runaway spend"},
}  # fmt: skip
DECODE: dict[str, Callable[[bytes], Any]] = {
    "clicks": decode_click, "purchases": decode_purchase,
    "items": lambda raw: decode_item(None, raw), "ad-requests": decode_ad_request,
    "ad-events": decode_ad_event, "privacy": decode_privacy, "control": decode_control,
}  # fmt: skip


def minimal(topic: str) -> dict[str, Any]:
    schema = topic_schema(topic)
    return {k: v for k, v in FULL[topic].items() if k in schema["required"]}


def with_nulls(topic: str) -> dict[str, Any]:
    schema = topic_schema(topic)
    return {k: (v if k in schema["required"] else None) for k, v in FULL[topic].items()}


def test_examples_cover_every_input_field() -> None:
    for topic in INPUTS:
        assert set(FULL[topic]) | {"schema_version"} == set(topic_schema(topic)["properties"])


@pytest.mark.parametrize("topic", list(INPUTS))
@pytest.mark.parametrize("form", [lambda t: FULL[t], minimal, with_nulls],
                         ids=["full", "minimal", "nulls"])
def test_valid_messages_pass_the_schema_and_the_decoder(
        topic: str, form: Callable[[str], dict[str, Any]]) -> None:
    msg = form(topic)
    assert errors(topic_schema(topic), msg) == []
    DECODE[topic](orjson.dumps(msg))


def _required_paths(topic: str) -> Iterator[tuple[str, ...]]:
    schema = topic_schema(topic)
    for name in schema["required"]:
        yield (name,)
    items = schema["properties"].get("candidates", {}).get("items")
    for name in (items or {}).get("required", ()):
        yield ("candidates", 0, name)


def _set(msg: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    """A copy of ``msg`` with the field at ``path`` set to ``value`` (``_DROP``: removed)."""
    out = copy.deepcopy(msg)
    node: Any = out
    for step in path[:-1]:
        node = node[step]
    if value is _DROP:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return out


_DROP = object()
MISSING_CASES = [(t, p) for t in INPUTS for p in _required_paths(t)]


@pytest.mark.parametrize(("topic", "path"), MISSING_CASES,
                         ids=[f"{t}:{'.'.join(map(str, p))}" for t, p in MISSING_CASES])
def test_a_message_missing_a_required_field_is_refused(topic: str, path: tuple[Any, ...]) -> None:
    for value in (_DROP, None):  # absent or null: the same to the decoders
        msg = _set(FULL[topic], path, value)
        assert errors(topic_schema(topic), msg)
        with pytest.raises(ValidationError) as info:
            DECODE[topic](orjson.dumps(msg))
        assert info.value.code == "missing_field"


def _bad_values(prop: dict[str, Any]) -> Iterator[Any]:
    """Values breaking one rule of ``prop`` each: its type, enum, bounds, lengths."""
    types = prop["type"] if isinstance(prop["type"], list) else [prop["type"]]
    for value in ("x", 1.5, True, [], {}):
        if not any(_is(t, value) for t in types):
            yield value
    if "enum" in prop:
        yield "not-a-listed-value"
        numbers = [v for v in prop["enum"] if _is("integer", v)]
        if numbers:
            yield max(numbers) + 1
    if "const" in prop:
        yield prop["const"] + 1
    if "minimum" in prop:
        yield prop["minimum"] - 1
    if "exclusiveMinimum" in prop:
        yield prop["exclusiveMinimum"]
    if "maximum" in prop:
        yield prop["maximum"] * 2 + 1
    if "exclusiveMaximum" in prop:
        yield prop["exclusiveMaximum"]
    if "maxLength" in prop:
        yield "x" * (prop["maxLength"] + 1)
    if prop.get("pattern") == r"\S":
        yield " \t"
    if "minItems" in prop:
        yield []
    if "maxItems" in prop:
        entry = {"ad_id": "a", "campaign_id": "c", "value_per_click": 1} if prop["items"].get(
            "type") == "object" else "c"
        yield [entry] * (prop["maxItems"] + 1)


def _bad_cases() -> Iterator[tuple[str, tuple[Any, ...], Any]]:
    for topic in INPUTS:
        props = topic_schema(topic)["properties"]
        for name, prop in props.items():
            for value in _bad_values(prop):
                yield topic, (name,), value
        for name, prop in props.get("candidates", {}).get("items", {}).get("properties",
                                                                             {}).items():
            for value in _bad_values(prop):
                yield topic, ("candidates", 0, name), value


BAD_CASES = list(_bad_cases())


@pytest.mark.parametrize(("topic", "path", "value"), BAD_CASES,
                         ids=[f"{t}:{'.'.join(map(str, p))}:{str(v)[:12]}"
                              for t, p, v in BAD_CASES])
def test_schema_and_decoder_refuse_the_same_bad_values(topic: str, path: tuple[Any, ...],
                                                       value: Any) -> None:
    msg = _set(FULL[topic], path, value)
    assert errors(topic_schema(topic), msg), "the schema accepts what the decoder should refuse"
    with pytest.raises(ValidationError):
        DECODE[topic](orjson.dumps(msg))


def test_the_bad_cases_reach_the_caps_the_decoders_use() -> None:
    values = [v for t, p, v in BAD_CASES if t == "ad-requests" and p == ("candidates",)]
    assert any(isinstance(v, list) and len(v) == MAX_AD_CANDIDATES + 1 for v in values)
    values = [v for t, p, v in BAD_CASES if t == "items" and p == ("categories",)]
    assert any(isinstance(v, list) and len(v) == MAX_CATEGORIES + 1 for v in values)
    values = [v for t, p, v in BAD_CASES if t == "clicks" and p == ("user_id",)]
    assert "x" * (MAX_ID_LENGTH + 1) in values


# -- outputs: what the agents emit --------------------------------------------------------

OUTPUT_RECORDS = [
    Recommendation("r1", USER, "2026-01-01T00:00:00.000+00:00", "hybrid", 0.95, "default",
                   "persona-1/hybrid-v2", (RecommendedItem("i1", 0.5, "bought together"),),
                   "e1"),
    AdBid("q1", USER, "2026-01-01T00:00:00.000+00:00", "a1", "c1", 0.12, 0.01),
    AdBid("q2", USER, "2026-01-01T00:00:00.000+00:00", no_bid_reason="paced"),
    SegmentChange(USER, "s3", "2026-01-01T00:00:00.000+00:00"),
    AudienceChange(USER, "book-lovers", "join", "2026-01-01T00:00:00.000+00:00"),
    DeadLetter("clicks", 0, 17, "bad_json", "invalid JSON at char 3", b"{x",
               "2026-01-01T00:00:00.000+00:00"),
    DeadLetter("clicks", 0, 18, "tombstone", "the message value is null", None,
               "2026-01-01T00:00:00.000+00:00"),
]


@pytest.mark.parametrize("record", OUTPUT_RECORDS, ids=lambda r: type(r).__name__)
def test_output_records_encode_their_declared_fields(record: Any) -> None:
    d = orjson.loads(record.encode())
    declared = {name for name, _ in public_fields(type(record))}
    if isinstance(record, AdBid):
        assert set(d) == declared - set(AdBid.ALTERNATIVES[
            "with no bid" if record.no_bid_reason is None else "with a bid"])
    else:
        assert set(d) == declared
    if isinstance(record, DeadLetter):
        assert d["raw"] == (None if record.raw is None else base64.b64encode(record.raw).decode())
    if isinstance(record, Recommendation):
        assert d["items"] == [{"item_id": "i1", "score": 0.5, "reason": "bought together"}]


@pytest.mark.parametrize("record", OUTPUT_RECORDS, ids=lambda r: type(r).__name__)
def test_output_records_are_valid_under_their_topics_schema(record: Any) -> None:
    topic = next(t for t, cls in OUTPUTS.items() if cls is type(record))
    schema = topic_schema(topic)
    d = orjson.loads(record.encode())
    assert errors(schema, d) == []
    for name in schema["required"]:
        assert errors(schema, {k: v for k, v in d.items() if k != name})


def test_an_ad_bid_is_a_bid_or_a_reason_never_both() -> None:
    schema = topic_schema("ad-bids")
    base = {"request_id": "q", "user_id": "u", "ts": "2026-01-01T00:00:00Z"}
    bid = {"ad_id": "a", "campaign_id": "c", "bid": 0.1, "pctr": 0.01}
    assert errors(schema, {**base, **bid}) == []
    assert errors(schema, {**base, "no_bid_reason": "paced"}) == []
    assert errors(schema, {**base, **bid, "no_bid_reason": "paced"})
    assert errors(schema, base)
    assert errors(schema, {**base, "no_bid_reason": "not-a-reason"})


# -- persona schema -----------------------------------------------------------------------


def _cli() -> typer.Typer:
    app = typer.Typer()
    register(app)

    @app.command()
    def other() -> None:  # a second command, so typer keeps "schema" as a subcommand
        pass

    return app


def test_persona_schema_prints_one_topic_or_all() -> None:
    runner = CliRunner()
    one = runner.invoke(_cli(), ["schema", "ad-bids"])
    assert one.exit_code == 0 and json.loads(one.output) == topic_schema("ad-bids")
    every = runner.invoke(_cli(), ["schema"])
    assert every.exit_code == 0 and json.loads(every.output) == all_schemas()


def test_persona_schema_of_an_unknown_topic_lists_the_topics_and_exits_2() -> None:
    result = CliRunner().invoke(_cli(), ["schema", "click"])
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert "unknown topic 'click'" in text and "dead-letters" in text
