"""Command-line overrides: dotted ``key=value`` pairs (values parsed as YAML) applied to a grid's mapping before
it is validated, and ``covers`` to tell which override set the field an error names."""
from __future__ import annotations

import copy
import re

import yaml

from .errors import ConfigError


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply ``a.b.c=value`` overrides (value parsed as YAML). Lists of specs take ``methods.0.r=4``
    or, for a key of every element, ``methods.*.r=4``."""
    data = copy.deepcopy(data)
    for ov in overrides:
        if "=" not in ov:
            raise ConfigError(f"override '{ov}': expected key=value, e.g. train.lr=1e-4 or seeds=[1,2,3]")
        key, raw = ov.split("=", 1)
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        parts = key.strip().split(".")
        _set(data, parts, value, key)
    return data


def _set(node, parts, value, key):
    head, rest = parts[0], parts[1:]
    if isinstance(node, list):
        idx = range(len(node)) if head == "*" else [_index(head, node, key)]
        for i in idx:
            if rest:
                _set(node[i], rest, value, key)
            else:
                node[i] = value
        return
    if not isinstance(node, dict):
        raise ConfigError(f"override '{key}': '{head}' cannot be set inside a {type(node).__name__}")
    if rest:
        node.setdefault(head, {} if not rest[0].isdigit() and rest[0] != "*" else [])
        _set(node[head], rest, value, key)
    else:
        node[head] = value


def _index(head, node, key):
    try:
        i = int(head)
        node[i]
        return i
    except (ValueError, IndexError):
        raise ConfigError(f"override '{key}': '{head}' is not an index into a list of {len(node)} (use 0..{len(node) - 1} or *)")


def covers(key: str, field: str) -> bool:
    """Whether an override key (``methods.0.r``, ``methods.*.options.r``) sets the error's field
    (``methods[0].options.r``) or a field below it; option shorthand (``methods.0.r``) counts."""
    dotted = field.replace("[", ".").replace("]", "")
    pattern = r"\.".join(r"\d+" if part == "*" else re.escape(part) for part in key.strip().split("."))
    candidates = {dotted, dotted.replace(".options.", ".", 1)}
    return any(re.fullmatch(pattern + r"(\..*)?", c) for c in candidates)
