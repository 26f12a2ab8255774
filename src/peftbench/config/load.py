"""Loading a grid: YAML file (or a preset name) -> shorthand expanded -> overrides applied -> ``GridSpec``, with
pydantic's errors turned into one line that names the field, the bad value and what is allowed."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import yaml
from pydantic import BaseModel, ValidationError

from ..presets import resolve
from .errors import FIELD_ERROR, ConfigError, message
from .identity import spec_class
from .overrides import apply_overrides, covers
from .specs import GridSpec


def load_grid(path: str | Path | None = None, overrides: list[str] | None = None, data: dict | None = None) -> GridSpec:
    origin = str(path) if path else "<config>"
    if data is None:
        data = _read(path, origin)
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: the top level must be a mapping with models, methods, tasks (got {type(data).__name__})")
    data = normalise_shorthand(apply_overrides(normalise_shorthand(data), overrides or []))
    try:
        return GridSpec.model_validate(data)
    except ValidationError as err:
        field, message = format_error(err)
        culprit = next((ov for ov in reversed(overrides or []) if covers(ov.split("=", 1)[0], field)), None)
        if culprit:  # the bad value came from the command line: say so
            raise ConfigError(f"override '{culprit}' ({origin}): {field}: {message}") from None
        raise ConfigError(f"{origin}: {field}: {message}") from None


def _read(path, origin: str) -> Any:
    try:
        text = resolve(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{origin}: cannot read the grid file ({exc.strerror}); check the path")
    try:
        return yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        if isinstance(exc, yaml.reader.ReaderError):  # a character YAML does not allow (its text spans lines)
            where, problem = f" at character {exc.position + 1}", f"character {exc.character!r} is not allowed"
        else:
            problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
        raise ConfigError(f"{origin}: not valid YAML{where}: {problem}")


def format_error(err: ValidationError) -> tuple[str, str]:
    """The first error of ``err`` as (field path, one-line message), by pydantic's error type."""
    e = err.errors()[0]
    loc = ""
    for part in e["loc"]:
        loc += f"[{part}]" if isinstance(part, int) else (f".{part}" if loc else str(part))
    msg = message(e)
    if e["type"] == FIELD_ERROR:  # an error of a field below the validated one (an option, a metric)
        path = e["ctx"]["path"]
        loc = f"{loc}.{path}" if loc and path else (path or loc)
    elif e["type"] == "extra_forbidden":
        model = _model_at(e["loc"])
        allowed = ", ".join(model.model_fields) if model else "see the docs"
        msg = f"unknown field; allowed fields here: {allowed}"
    elif e["type"] == "missing":
        msg = "required field is missing"
    more = f" (+{len(err.errors()) - 1} more)" if len(err.errors()) > 1 else ""
    return loc or "<top>", msg + more


def _model_at(loc) -> Optional[type[BaseModel]]:
    model: Any = GridSpec
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        if field is None:
            return None
        model = spec_class(field.annotation) or next(
            (c for a in getattr(field.annotation, "__args__", ()) if (c := spec_class(a))), model)
    return model


def normalise_shorthand(data: dict) -> dict:
    """Allow ``models: [tiny:bert]`` and ``methods: [lora, full]`` as shorthand for full specs."""
    data = dict(data)
    for key, field in (("models", "source"), ("methods", "name")):
        if isinstance(data.get(key), list):
            data[key] = [{field: x} if isinstance(x, str) else x for x in data[key]]
    if isinstance(data.get("seeds"), int):
        data["seeds"] = [data["seeds"]]
    return data
