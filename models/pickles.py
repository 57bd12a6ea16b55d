"""Unpickling the worker's own checkpoints, including those written before a module moved.

A pickle names each class by its module path; when a module moves, an older checkpoint
would no longer load and a restarted worker would start cold. ``MOVED`` maps the old
paths to the new, so checkpoints written before the move still restore.
"""

from __future__ import annotations

import io
import pickle
from typing import Any

# Old module path -> new (the models/ areas became subpackages).
MOVED: dict[str, str] = {
    "models.ads": "models.ads.pctr",
    "models.bidding": "models.ads.bidding",
    "models.bandit": "models.recommenders.bandit",
    "models.rules": "models.recommenders.rules",
    "models.catalogue": "models.recommenders.catalogue",
    "models.profile": "models.users.profile",
    "models.dedupe": "models.users.dedupe",
    "models.privacy": "models.users.privacy",
    "models.ratelimit": "models.users.ratelimit",
    "models.compact": "models.users.compact",
    "models.experiments": "models.marketing.experiments",
    "models.stats": "models.marketing.stats",
    "models.attribution": "models.marketing.attribution",
    "models.segments": "models.marketing.segments",
    "models.audiences": "models.marketing.audiences",
}


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        return super().find_class(MOVED.get(module, module), name)


def loads(blob: bytes) -> Any:
    """``pickle.loads`` that follows ``MOVED``. Only for checkpoints this worker wrote
    (verified first): unpickling runs code named by the data.

    >>> import pickle
    >>> from models.recommenders.catalogue import Catalogue
    >>> old = pickle.dumps(Catalogue, protocol=0).replace(b"models.recommenders.catalogue",
    ...                                                   b"models.catalogue")
    >>> loads(old) is Catalogue
    True
    """
    return _Unpickler(io.BytesIO(blob)).load()
