"""Experiment specs: YAML -> typed, validated config objects.

A grid is models x methods x tasks x seeds plus shared training settings (``specs.py``). Every field can be
overridden from the command line with dotted ``key=value`` pairs, values parsed as YAML (``overrides.py``).
What enters a run's id and a task's features key is marked on the fields (``identity.py``). Errors are one
line: the field path, the bad value and what is allowed (``load.py`` reads pydantic's error types).
"""
from .errors import FIELD_ERROR, ConfigError, field_error
from .identity import FEATURES, Identity, config_hash, safe_name
from .load import load_grid
from .overrides import apply_overrides
from .specs import (AnalysisSpec, DataSpec, GenerationSpec, GridSpec, LauncherSpec, MethodSpec, ModelSpec,
                    OptunaSpec, QuantizationSpec, RangeSpec, ReportSpec,
                    RunSpec, SweepSpec, TaskSpec, TrainSpec, at_point, combos, expand, features_fields, identity, registered,
                    run_spec, validate_options, variants)

__all__ = ["FIELD_ERROR", "AnalysisSpec", "ConfigError", "DataSpec", "FEATURES", "GenerationSpec", "GridSpec", "Identity",
           "LauncherSpec", "MethodSpec", "ModelSpec", "OptunaSpec", "QuantizationSpec", "RangeSpec", "ReportSpec", "RunSpec", "SweepSpec", "TaskSpec", "TrainSpec",
           "apply_overrides", "at_point", "combos", "config_hash", "expand", "features_fields", "field_error", "identity",
           "load_grid", "registered", "run_spec", "safe_name", "validate_options", "variants"]
