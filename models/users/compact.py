"""Table values kept in memory as their JSON bytes, not as Python objects.

A profiles record held as Python dicts, lists, strs and floats costs several times its
JSON size in RAM (a 16-character str is 65 bytes, a two-item list 72, a small dict 184):
at a million users 6.4 KB of RSS per profile, against 1.4 KB as bytes
(``bench/memory_profiles.py``).
``CompactValues`` is the mapping a table's in-memory store keeps its values in: each
value is stored as the bytes of its JSON form, exactly the bytes the table's JSON
changelog holds, and decoded on every read into a fresh object.

The round trip is the changelog's own: a value read back equals what a worker
recovering the table from its changelog would read (JSON types only; a NaN or infinite
float reads back as None, as after a recovery). A read returns a copy, so changing it in
place changes nothing stored: write it back, as a table write must be anyway (only a
write reaches the changelog).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, MutableMapping, Sequence
from typing import Any

import orjson

# The options Faust's JSON codec writes changelogs with (faust.utils.json with orjson;
# its OPT_UTC_Z only concerns datetimes, which table values never hold).
_OPTIONS = orjson.OPT_NON_STR_KEYS


def encode(value: Any) -> bytes | None:
    """The stored form of a table value: its JSON bytes (None stays None: a deleted key).

    >>> encode({"p": {"v": 1}, "t": 5}), encode(None)
    (b'{"p":{"v":1},"t":5}', None)
    """
    if value is None:
        return None
    # A copy of exactly its length: orjson's own result keeps the spare capacity of its
    # write buffer (measured: 4.1 KB of RSS per 1.5 KB value, 1.6 KB as a copy).
    return bytes(memoryview(orjson.dumps(value, option=_OPTIONS)))


def decode(raw: bytes | None) -> Any:
    """The value ``encode`` stored, as a fresh object.

    >>> decode(encode({"d": [["k", "f"]], "o": [0, 7]}))
    {'d': [['k', 'f']], 'o': [0, 7]}
    """
    return None if raw is None else orjson.loads(raw)


def make_record(profile: dict, dedupe: list, now_ms: int | None = None,
                at: Sequence[int] | None = None) -> dict:
    """A ``profiles`` table record, stamped with the time of this write (``now_ms``,
    default now): ``{"t": wall-clock ms of this write, "p": profile dict
    (models.users.profile.UserProfile.to_dict), "d": dedupe window (models.users.dedupe), "o":
    the partition, then the offset of the last message applied from each input the
    worker applies}`` (streams/tables.py says what each is for).

    Wall-clock, not the events' own time: a replay of old events (MovieLens is from
    1998) is fresh activity, and must not be expired by the next sweep. ``at`` is the
    positions after this write ("o"): see ``already_applied``.

    "t" comes first, so its JSON bytes start with it: a scan can skip the records
    touched since a cutoff without decoding them (``raw_touched_ms``).

    >>> make_record({"v": 1}, [], now_ms=5, at=(2, 41))
    {'t': 5, 'p': {'v': 1}, 'd': [], 'o': [2, 41]}
    """
    record = {"t": int(time.time() * 1000) if now_ms is None else int(now_ms),
              "p": profile, "d": dedupe}
    if at is not None:
        record["o"] = [int(x) for x in at]
    return record


def already_applied(record: dict | None, partition: int, offset: int,
                    source: int = 0) -> bool:
    """True if ``record`` already holds the message at (partition, offset) of the
    ``source``-th input the record keeps positions for (``streams.tables.SOURCES``;
    0: the events topic).

    One user's messages on each of those topics are all on one partition (their home
    partition), in offset order, and the record keeps the position of the
    last one applied from each topic, written in the same table write as the change
    itself. So a message redelivered after a crash or a rebalance is recognized exactly,
    however many of the user's events were replayed: the event-id window (``d``) stays
    for duplicates the producers send. A record from another partition (the topic was
    repartitioned) proves nothing.

    >>> already_applied({"o": [3, 41]}, 3, 41), already_applied({"o": [3, 41]}, 3, 42)
    (True, False)
    >>> already_applied({"o": [3, 41]}, 2, 7), already_applied(None, 0, 0)
    (False, False)
    >>> already_applied({"o": [3, 41, -1, 8]}, 3, 8, 2), already_applied({"o": [3, 41]}, 3, 0, 1)
    (True, False)
    """
    at = None if record is None else record.get("o")
    if not (isinstance(at, list) and len(at) > source + 1 and at[0] == partition):
        return False
    last = at[source + 1]
    return isinstance(last, int) and 0 <= offset <= last


def advance(record: dict | None, partition: int, offset: int | None = None,
            source: int = 0) -> list[int]:
    """The positions ("o") of ``record`` once the message at (partition, offset) of the
    ``source``-th input is applied too (``offset`` None: only the
    partition). Positions of another partition are dropped: they say nothing here.

    >>> advance({"o": [3, 41]}, 3, 9, 2), advance({"o": [3, 41]}, 1, 5), advance(None, 2)
    ([3, 41, -1, 9], [1, 5], [2])
    """
    at = None if record is None else record.get("o")
    out = ([int(x) for x in at] if isinstance(at, list) and at and at[0] == partition
           and all(isinstance(x, int) for x in at) else [int(partition)])
    if offset is not None:
        while len(out) < source + 2:
            out.append(-1)
        out[source + 1] = int(offset)
    return out


def partition_of(record: dict | None) -> int | None:
    """The partition a record was last written from (None: not known, a record written
    without a position)."""
    at = None if record is None else record.get("o")
    return at[0] if isinstance(at, list) and at and isinstance(at[0], int) else None


_LEADING_T = re.compile(rb'\{"t":(\d{1,16})[,}]')


def raw_touched_ms(raw: bytes | None) -> int | None:
    """The "t" of a stored record read from the start of its bytes, without decoding
    them; None if they do not start with it (a record written before "t" led).

    Exact: the first key of the top-level object can be nothing but the record's own "t".

    >>> raw_touched_ms(encode(make_record({"v": 1}, [], now_ms=1_700_000_000_000)))
    1700000000000
    >>> raw_touched_ms(b'{"p":{"v":1},"d":[],"t":5}'), raw_touched_ms(None)
    (None, None)
    """
    m = None if raw is None else _LEADING_T.match(raw)
    return None if m is None else int(m[1])


class CompactValues(MutableMapping[Any, Any]):
    """A dict whose values are kept as JSON bytes: a write encodes, a read decodes.

    >>> d = CompactValues()
    >>> d["u1"] = {"p": {"v": 1, "r": ["i1"]}, "t": 5}
    >>> d["u1"], d.raw("u1"), len(d), "u1" in d
    ({'p': {'v': 1, 'r': ['i1']}, 't': 5}, b'{"p":{"v":1,"r":["i1"]},"t":5}', 1, True)
    >>> d["u1"]["t"] = 6; d["u1"]["t"]  # a read is a copy: write it back to change it
    5
    """

    __slots__ = ("_data",)

    def __init__(self) -> None:
        self._data: dict[Any, bytes | None] = {}

    def __getitem__(self, key: Any) -> Any:
        return decode(self._data[key])

    def __setitem__(self, key: Any, value: Any) -> None:
        self._data[key] = encode(value)

    def __delitem__(self, key: Any) -> None:
        del self._data[key]

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __iter__(self) -> Iterator[Any]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def clear(self) -> None:
        self._data.clear()

    def set_raw(self, key: Any, raw: bytes | None) -> None:
        """Store bytes ``encode`` made (for a caller that needs them too: one encoding)."""
        self._data[key] = raw

    def raw(self, key: Any) -> bytes | None:
        """The stored bytes of ``key`` (KeyError if absent), without decoding them."""
        return self._data[key]

    def raw_items(self) -> Iterator[tuple[Any, bytes | None]]:
        """(key, stored bytes) pairs, without decoding: for scans that need few fields."""
        return iter(self._data.items())

    def __repr__(self) -> str:
        return f"CompactValues({len(self._data)} values)"
