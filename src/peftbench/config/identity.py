"""What identifies a run, written on the spec fields as marks (``Annotated[type, Identity.X]``, ``FEATURES``):
``strip`` reads them. A run's id is the hash of its resolved config less what its marks leave out; the features
key of a task takes only its ``FEATURES`` fields. The marks serve the option models of methods and tasks too."""
from __future__ import annotations

import enum
import hashlib
import json
from typing import Any, Optional, get_args

from pydantic import BaseModel


class Identity(enum.Enum):
    """What a field is to a run's identity (its run id and its cell); unmarked fields are part of it."""

    NEUTRAL = "neutral"  # how a run is carried out or which runs a grid holds, not what a run computes: never in it
    ADDED = "added"  # added after results were first stored: in it only when set off its default (old ids kept)


FEATURES = "features"  # a task field the tokenised features depend on (data/cache.features_key reads only these)

def strip(model: type[BaseModel], config: dict) -> dict:
    """``config`` (a JSON dump of ``model``) less its ``Identity.NEUTRAL`` fields and its ``Identity.ADDED`` fields
    that hold their defaults, at every depth (keys ``model`` does not declare are kept)."""
    out = {}
    for name, value in config.items():
        f = model.model_fields.get(name)
        marks = f.metadata if f is not None else ()
        if Identity.NEUTRAL in marks or (Identity.ADDED in marks and value == f.get_default(call_default_factory=True)):
            continue
        nested = spec_class(f.annotation) if f is not None else None
        out[name] = strip(nested, value) if nested and isinstance(value, dict) else value
    return out


def spec_class(annotation) -> Optional[type[BaseModel]]:
    """The model class a field holds (``X`` or ``Optional[X]``), or None."""
    for a in (annotation, *get_args(annotation)):
        if isinstance(a, type) and issubclass(a, BaseModel):
            return a
    return None


def config_hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def safe_name(s: str) -> str:
    """A string usable in file names: anything but letters, digits and -_. becomes '-'."""
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in s)
