"""Keyed pseudonymization of user ids: raw ids never leave ingest, only these do.

A consuming application maps its own ids with the same key and ``pseudonymize``.
"""

from __future__ import annotations

import functools
import hmac

MIN_KEY_BYTES = 16
DEFAULT_CACHE_SIZE = 65_536
# 128 bits is half of SHA-256, the shortest truncation RFC 2104 §5 recommends. Collisions
# stay negligible (about 1e-21 for a billion users), and the ids stay short in table keys,
# topic keys and metrics exemplars.
_HEX_CHARS = 32


def _check_key(key: bytes) -> None:
    if not isinstance(key, (bytes, bytearray)):
        raise TypeError("the pseudonymization key must be bytes")
    if len(key) < MIN_KEY_BYTES:
        # A short key can be brute-forced, and with it every pseudonym reversed by
        # hashing candidate ids: user ids themselves have little entropy.
        raise ValueError(f"the pseudonymization key must be at least {MIN_KEY_BYTES} bytes")


def _hash(user_id: str, key: bytes) -> str:
    if not isinstance(user_id, str):
        raise TypeError("user_id must be a str (the normalized id)")
    return "u" + hmac.digest(key, user_id.encode("utf-8"), "sha256").hex()[:_HEX_CHARS]


def pseudonymize(user_id: str, key: bytes) -> str:
    """HMAC-SHA256 of the UTF-8 ``user_id`` under ``key``: ``"u"`` + 32 hex characters.

    Deterministic for one key; another key gives unrelated ids, and without the key the
    raw id cannot be recovered or confirmed. ``user_id`` should be the normalized id that
    ``streams.records`` produces (trimmed, NFC, integers as decimal strings).

    >>> key = b"0123456789abcdef"
    >>> pseudonymize("alice", key)
    'ufdbf8b1cacd3d578e062d0e41104357d'
    >>> pseudonymize("alice", key) == pseudonymize("alice", key)
    True
    >>> pseudonymize("alice", key) == pseudonymize("alice", b"another key, 16+ bytes")
    False
    """
    _check_key(key)
    return _hash(user_id, key)


class Pseudonymizer:
    """``pseudonymize`` with a fixed key and a bounded LRU cache of recent users.

    The cache holds raw ids in memory, so it is bounded, and ``clear()`` drops it (for
    example after a user asks to be erased).

    >>> p = Pseudonymizer(b"0123456789abcdef", cache_size=2)
    >>> p("alice") == pseudonymize("alice", b"0123456789abcdef")
    True
    >>> p.cache_info().currsize
    1
    >>> Pseudonymizer(b"short")
    Traceback (most recent call last):
    ...
    ValueError: the pseudonymization key must be at least 16 bytes
    """

    def __init__(self, key: bytes, cache_size: int = DEFAULT_CACHE_SIZE) -> None:
        _check_key(key)
        if cache_size < 1:
            raise ValueError("cache_size must be >= 1")
        self._key = bytes(key)
        # Per instance, not a module-level cache: two keys must never share entries.
        self._cached = functools.lru_cache(maxsize=cache_size)(self._compute)

    def _compute(self, user_id: str) -> str:
        return _hash(user_id, self._key)

    def __call__(self, user_id: str) -> str:
        return self._cached(user_id)

    def cache_info(self) -> functools._CacheInfo:
        return self._cached.cache_info()

    def clear(self) -> None:
        """Forget every cached raw id."""
        self._cached.cache_clear()

    def __repr__(self) -> str:
        # Never the key.
        return f"Pseudonymizer(cache_size={self._cached.cache_info().maxsize})"
