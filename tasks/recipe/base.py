"""What every recipe section shares: the strict base model, the recipe error, the stable hash
used for cache keys and the one "did you mean" hint of every recipe message."""

from __future__ import annotations

import difflib
import hashlib
import json
from typing import Any

from pydantic import BaseModel, ConfigDict


class RecipeError(ValueError):
    """A recipe that cannot run; the message lists every problem found."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


def stable_hash(obj: Any) -> str:
    """A short, stable digest of any JSON-able value (cache keys, suite keys)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def did_you_mean(name: Any, valid: Any, n: int = 1) -> str:
    """`; did you mean 'x'?` naming the (up to `n`) valid names closest to `name`, or "" when none is close."""
    close = difflib.get_close_matches(str(name), sorted(valid), n=n)
    return f"; did you mean {', '.join(map(repr, close))}?" if close else ""
