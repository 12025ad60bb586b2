"""The absl flags of `pipeline.run` (and `pipeline.study`), generated from the fields of components/configs.py.

Each field made with `configs.flag(...)` is one flag, named after the field unless it says otherwise, with the
field's default, help and choices. Nested configs (PipelineConfig.train, TrainConfig.augmentation, ...) keep
flat flag names, and fields naming the same flag (--seed, --threshold) all read it.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Iterator, NamedTuple

from absl import flags

from components import configs

_DEFINE = {bool: flags.DEFINE_boolean, int: flags.DEFINE_integer, float: flags.DEFINE_float,
           str: flags.DEFINE_string, Path: flags.DEFINE_string}


class FlagField(NamedTuple):
    """One config field that a flag sets: where it is in PipelineConfig, the field and its type (None removed)."""

    path: tuple[str, ...]
    field: dataclasses.Field
    kind: type

    @property
    def name(self) -> str:
        return self.field.metadata["flag"] or self.field.name


def _without_none(kind):
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        (kind,) = [arg for arg in typing.get_args(kind) if arg is not type(None)]
    return kind


def flag_fields(cls: type = configs.PipelineConfig, path: tuple[str, ...] = ()) -> Iterator[FlagField]:
    """Every field of `cls` and of the configs nested in it that is a flag, in definition order."""
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        kind = hints[field.name]
        if dataclasses.is_dataclass(kind):
            yield from flag_fields(kind, (*path, field.name))
        elif "flag" in field.metadata:
            yield FlagField((*path, field.name), field, _without_none(kind))


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """Define one flag per flag name of `flag_fields()`; fields sharing a name must agree on all of it."""
    by_name: dict[str, list[FlagField]] = {}
    for item in flag_fields():
        by_name.setdefault(item.name, []).append(item)
    for name, items in by_name.items():
        first = items[0]
        described = {(item.kind, item.field.default, item.field.metadata["help"], item.field.metadata["choices"])
                     for item in items}
        if len(described) > 1:
            raise ValueError(f"--{name} is set by {['.'.join(item.path) for item in items]}, which disagree on "
                             f"its type, default, help or choices")
        default = first.field.default
        default = str(default) if isinstance(default, Path) else default
        choices, help_text = first.field.metadata["choices"], first.field.metadata["help"]
        if choices:
            flags.DEFINE_enum(name, default, list(choices), help_text, flag_values=flag_values)
        else:
            _DEFINE[first.kind](name, default, help_text, flag_values=flag_values)


def _value(item: FlagField, flag_values: flags.FlagValues) -> Any:
    value = flag_values[item.name].value
    if item.field.metadata["absolute"]:  # an empty path, like none, means the field's default: None
        return item.kind(Path(value).resolve()) if value else None
    return Path(value) if item.kind is Path and value is not None else value


def _build(cls: type, flag_values: flags.FlagValues, **fixed):
    hints = typing.get_type_hints(cls)
    values = dict(fixed)
    for field in dataclasses.fields(cls):
        kind = hints[field.name]
        if dataclasses.is_dataclass(kind):
            values[field.name] = _build(kind, flag_values)
        elif "flag" in field.metadata:
            values[field.name] = _value(FlagField((field.name,), field, _without_none(kind)), flag_values)
    return cls(**values)


def config_from_flags(flag_values: flags.FlagValues = flags.FLAGS, **fixed) -> configs.PipelineConfig:
    """The PipelineConfig the parsed flags describe; `fixed`: PipelineConfig fields that are not flags
    (e.g. provenance). Fields that are not flags keep their defaults."""
    return _build(configs.PipelineConfig, flag_values, **fixed)


def apply_sample_defaults(flag_values: flags.FlagValues = flags.FLAGS) -> dict[str, Any]:
    """On the embedded sample or its DICOM twin, set the flags of configs.SAMPLE_RUN_DEFAULTS that the command
    line did not give; returns what was set (nothing on any other data)."""
    samples = (configs.SAMPLE_DATA_DIR.resolve(), configs.DICOM_SAMPLE_DIR.resolve())
    if Path(flag_values["data_dir"].value).resolve() not in samples:
        return {}
    applied = {name: value for name, value in configs.SAMPLE_RUN_DEFAULTS.items() if not flag_values[name].present}
    for name, value in applied.items():
        flag_values[name].value = value
    return applied
