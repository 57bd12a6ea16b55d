"""JSON Schemas (draft 2020-12) of the public topics and docs/contract.md's field tables,
both generated from the record declarations in streams/messages.py.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from dataclasses import MISSING, Field, fields
from pathlib import Path
from typing import Any, Final

from streams import messages as m
from streams.records import MAX_JSON_DEPTH, MAX_MESSAGE_BYTES

DRAFT: Final = "https://json-schema.org/draft/2020-12/schema"

INPUTS: Final[dict[str, type]] = {
    "clicks": m.Click, "purchases": m.Purchase, "items": m.Item,
    "ad-requests": m.AdRequestMsg, "ad-events": m.AdEventMsg, "privacy": m.PrivacyMsg,
    "control": m.ControlMsg,
}  # fmt: skip
OUTPUTS: Final[dict[str, type]] = {
    "recommendations": m.Recommendation, "ad-bids": m.AdBid, "segments": m.SegmentChange,
    "audiences": m.AudienceChange, "dead-letters": m.DeadLetter,
}  # fmt: skip
TOPICS: Final = (*INPUTS, *OUTPUTS)

# What one message of the topic is, and its key.
ABOUT: Final = {
    "clicks": "A user clicked an item. Key: the user id.",
    "purchases": "A user bought an item. Key: the user id.",
    "items": "A catalogue entry. Key: the item id; a null value (tombstone) deletes the item.",
    "ad-requests": "An ad slot to fill for a user. Key: the user id.",
    "ad-events": "An impression, click or conversion of an ad persona bid for. The key is "
                 "not used.",
    "privacy": "A user's privacy request. Key: the user id.",
    "control": "An operator's command: the ads kill switch.",
    "recommendations": "The list served for one click or purchase. Key: the user's pseudonym.",
    "ad-bids": "The answer to one ad request: a bid, or why none. Key: the user's pseudonym.",
    "segments": "A user's new segment. Key: the user's pseudonym.",
    "audiences": "A user joined or left an audience. Key: the user's pseudonym.",
    "dead-letters": "An input message persona refused, and why. No key: the input key may be "
                    "a raw user id.",
}
INPUT_RULES: Final = (
    f"UTF-8 JSON, at most {MAX_MESSAGE_BYTES} bytes and {MAX_JSON_DEPTH} levels deep. Unknown "
    "fields are dropped; an optional field may be absent or null. Ids are trimmed and "
    "NFC-normalized (123 and \"123\" are one id) and hold no control or format characters."
)
SCHEMA_VERSION_FIELD: Final[dict[str, Any]] = {
    "description": f"the schema the message follows: absent means {m.SCHEMA_VERSION}, any "
                   "other version is dead-lettered",
    "type": "integer", "enum": [m.SCHEMA_VERSION],
}  # fmt: skip


class UnknownTopic(ValueError):
    """A topic that is not one of ``TOPICS``; the message lists them."""

    def __init__(self, topic: str) -> None:
        super().__init__(f"unknown topic {topic!r}; the public topics are: {', '.join(TOPICS)}")


# -- schemas -----------------------------------------------------------------------------


def topic_schema(topic: str) -> dict[str, Any]:
    """The JSON Schema of one public topic's message values.

    >>> s = topic_schema("privacy")
    >>> s["required"], s["properties"]["action"]["enum"]
    (['user_id', 'action', 'ts'], ['erase', 'opt_out', 'opt_in'])
    """
    record, inbound = _record(topic)
    body = _object(record, inbound)
    about = ABOUT[topic]
    if inbound:
        body["properties"]["schema_version"] = _nullable(SCHEMA_VERSION_FIELD)
        body["additionalProperties"] = True
        about = f"{about} {INPUT_RULES}"
    return {"$schema": DRAFT, "$id": f"urn:persona:topic:{topic}", "title": topic,
            "description": about, **body}


def all_schemas() -> dict[str, dict[str, Any]]:
    """Every public topic's schema, keyed by topic."""
    return {topic: topic_schema(topic) for topic in TOPICS}


def schema_json(topic: str | None = None) -> str:
    """``topic``'s schema, or all of them keyed by topic, as indented JSON text."""
    value = all_schemas() if topic is None else topic_schema(topic)
    return json.dumps(value, indent=2, ensure_ascii=False)


def _record(topic: str) -> tuple[type, bool]:
    if topic in INPUTS:
        return INPUTS[topic], True
    if topic in OUTPUTS:
        return OUTPUTS[topic], False
    raise UnknownTopic(topic)


def public_fields(record: type) -> Iterator[tuple[str, Field[Any]]]:
    """(wire name, field) of each field ``record`` has on its public topic."""
    for f in fields(record):
        if f.metadata.get("json") is not None:
            yield f.metadata["wire"] or f.name, f


def is_required(f: Field[Any]) -> bool:
    """Whether a public message must have the field (non-null)."""
    required = f.metadata["required"]
    if required is not None:
        return bool(required)
    return f.default is MISSING and f.default_factory is MISSING


def _object(record: type, inbound: bool) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    required: list[str] = []
    for name, f in public_fields(record):
        prop = {"description": f.metadata["doc"], **_fragment(f.metadata["json"], inbound)}
        if is_required(f):
            required.append(name)
        elif inbound:
            # The decoders read null as absent.
            prop = _nullable(prop)
        properties[name] = prop
    out: dict[str, Any] = {"type": "object", "properties": properties, "required": required}
    alternatives = getattr(record, "ALTERNATIVES", None)
    if alternatives:
        out["oneOf"] = [{"required": list(group)} for group in alternatives.values()]
    return out


def _fragment(fragment: dict[str, Any], inbound: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in fragment.items():
        if key == "items":
            out[key] = (_object(value, inbound) if isinstance(value, type)
                        else _fragment(value, inbound))
        elif key == "enum":
            out[key] = enum_values(value)
        else:
            out[key] = list(value) if isinstance(value, (list, tuple)) else value
    return out


def enum_values(value: Any) -> list[Any]:
    """An ``enum`` declaration's values: a tuple of values and ``Ref``s (to a tuple, or a
    dict whose keys are the values), or one ``Ref``."""
    if isinstance(value, m.Ref):
        return list(value.resolve())
    out: list[Any] = []
    for v in value:
        out.extend(enum_values(v) if isinstance(v, m.Ref) else [v])
    return out


def _nullable(prop: dict[str, Any]) -> dict[str, Any]:
    types = prop["type"] if isinstance(prop["type"], list) else [prop["type"]]
    prop = {**prop, "type": [*types, "null"]}
    if "enum" in prop:
        prop["enum"] = [*prop["enum"], None]
    return prop


# -- docs/contract.md's field tables -------------------------------------------------------


def field_rows(topic: str) -> list[tuple[str, str, str, str]]:
    """(field, type, required, description) of each field of ``topic``'s messages; the
    entries of a list of objects follow their list as ``list[].field``."""
    record, inbound = _record(topic)
    rows = list(_rows(record, ""))
    if inbound:
        rows.append(("schema_version", _type_text(SCHEMA_VERSION_FIELD), "no",
                     SCHEMA_VERSION_FIELD["description"]))
    return rows


def _rows(record: type, prefix: str) -> Iterator[tuple[str, str, str, str]]:
    groups = {name: label for label, names in getattr(record, "ALTERNATIVES", {}).items()
              for name in names}
    for name, f in public_fields(record):
        fragment = f.metadata["json"]
        required = "yes" if is_required(f) else groups.get(name, "no")
        yield prefix + name, _type_text(fragment), required, f.metadata["doc"]
        items = fragment.get("items")
        if isinstance(items, type):
            yield from _rows(items, f"{prefix}{name}[].")


def _type_text(fragment: dict[str, Any]) -> str:
    types = fragment["type"] if isinstance(fragment["type"], list) else [fragment["type"]]
    rules = []
    if "enum" in fragment:
        values = enum_values(fragment["enum"])
        rules.append(", ".join(f"`{v}`" for v in values) if len(values) <= 8
                     else f"one of {len(values)} codes")
    if "const" in fragment:
        rules.append(f"= {fragment['const']}")
    if fragment.get("format") == "date-time":
        rules.append("ISO-8601")
    for key, sign in (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="),
                      ("exclusiveMaximum", "<")):
        if key in fragment:
            rules.append(f"{sign} {_number(fragment[key])}")
    if "minItems" in fragment:
        rules.append(f"{fragment['minItems']}..{fragment['maxItems']} entries")
    elif "maxItems" in fragment:
        rules.append(f"at most {fragment['maxItems']} entries")
    if "maxLength" in fragment:
        rules.append(f"at most {fragment['maxLength']} characters")
    if fragment.get("pattern") == r"\S":
        rules.append("not blank")
    text = " or ".join(types) + (f" ({', '.join(rules)})" if rules else "")
    items = fragment.get("items")
    if items is not None:
        text += " of " + ("objects" if isinstance(items, type) else _type_text(items))
    return text


def _number(x: float) -> str:
    if isinstance(x, float) and x.is_integer():
        x = int(x)
    return f"{x:,}"


def field_table(topic: str) -> str:
    """``topic``'s fields as a Markdown table."""
    lines = ["| field | type | required | description |", "|---|---|---|---|"]
    lines += [f"| `{name}` | {kind} | {required} | {doc} |"
              for name, kind, required, doc in field_rows(topic)]
    return "\n".join(lines) + "\n"


_BLOCK = re.compile(r"(<!-- fields:(?P<topic>[\w-]+) -->\n).*?(<!-- /fields:(?P=topic) -->)",
                    re.DOTALL)


def render_doc(text: str) -> str:
    """``text`` with each ``<!-- fields:TOPIC -->`` ... ``<!-- /fields:TOPIC -->`` block
    holding TOPIC's table; ``ValueError`` if a public topic has no block."""
    found: set[str] = set()

    def table(match: re.Match[str]) -> str:
        found.add(match["topic"])
        return match[1] + field_table(match["topic"]) + match[3]

    out = _BLOCK.sub(table, text)
    missing = [t for t in TOPICS if t not in found]
    if missing:
        raise ValueError(f"no <!-- fields:TOPIC --> block for: {', '.join(missing)}")
    return out


def main(argv: list[str]) -> int:
    """``python -m streams.schema write-doc|check-doc PATH``: rewrite the field tables of
    PATH (docs/contract.md), or exit 1 if they are stale."""
    if len(argv) != 2 or argv[0] not in ("write-doc", "check-doc"):
        sys.stderr.write("usage: python -m streams.schema write-doc|check-doc PATH\n")
        return 2
    path = Path(argv[1])
    text = path.read_text(encoding="utf-8")
    rendered = render_doc(text)
    if argv[0] == "check-doc":
        if rendered != text:
            sys.stderr.write(f"{path}: field tables are stale; run python -m streams.schema "
                             f"write-doc {path}\n")
            return 1
        return 0
    if rendered != text:
        path.write_text(rendered, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
