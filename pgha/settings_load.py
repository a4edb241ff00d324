"""Reading the settings: one YAML file, overridden by `PGHA_`-prefixed environment variables.

pydantic-settings merges the sources (keyword arguments beat the environment, which beats
the file) and pydantic checks every value against the annotations of the settings classes
in `pgha.settings`; every problem becomes one line that names the key, the file and what
was expected. This module is the only one that imports pydantic, pydantic-settings and
PyYAML for the settings: the agent runs it in a short-lived loader process
(`pgha.settings_handoff`) and never holds them itself.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import Field, TypeAdapter, ValidationError, create_model
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from pgha.errors import ConfigError
from pgha.settings import Settings
from pgha.settings_plain import plain

T = TypeVar("T")

UNKNOWN_KEY_ERRORS = ("extra_forbidden", "unexpected_keyword_argument")
"""pydantic's words for a key a section does not have (the top level, a section)."""


class _Environment(EnvSettingsSource):
    """The `PGHA_` environment, with nested keys that reach into the dataclass sections.

    pydantic-settings finds the field behind `PGHA_ETCD__ENDPOINTS` only in pydantic
    models; this teaches it the standard dataclasses the sections are, so that a list or a
    mapping given there is read as JSON, as it is for a model.
    """

    def next_field(
        self, field: FieldInfo | Any | None, key: str, case_sensitive: bool | None = None
    ) -> FieldInfo | None:
        annotation = field.annotation if isinstance(field, FieldInfo) else field
        if isinstance(annotation, type) and dataclasses.is_dataclass(annotation):
            hints = typing.get_type_hints(annotation, include_extras=True)
            for item in dataclasses.fields(annotation):
                same = item.name == key if case_sensitive else item.name.lower() == key.lower()
                if same:
                    return FieldInfo.from_annotation(hints[item.name])
            return None
        return super().next_field(field, key, case_sensitive)


class _Sources(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="PGHA_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Keyword arguments beat the environment, which beats the YAML file.
        return (init_settings, _Environment(settings_cls), YamlConfigSettingsSource(settings_cls))


def _fields_of_settings() -> dict[str, Any]:
    """The top level of `Settings` as pydantic field definitions (its sections stay the
    dataclasses they are, which pydantic validates field by field)."""
    hints = typing.get_type_hints(Settings, include_extras=True)
    fields: dict[str, Any] = {}
    for item in dataclasses.fields(Settings):
        if item.default is not dataclasses.MISSING:
            default: Any = item.default
        elif item.default_factory is not dataclasses.MISSING:
            default = Field(default_factory=item.default_factory)
        else:
            default = ...
        fields[item.name] = (hints[item.name], default)
    return fields


_SETTINGS_SOURCES = create_model("Settings", __base__=_Sources, **_fields_of_settings())


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Load settings from a YAML file (if given) and the environment.

    Raises ConfigError with one line per problem, each naming the key, the file and what
    was expected.
    """
    source = str(config_file) if config_file is not None else "environment"
    if config_file is not None:
        _check_yaml_file(config_file)
    from_file = type(
        "Settings",
        (_SETTINGS_SOURCES,),
        {"model_config": SettingsConfigDict(yaml_file=config_file)},
    )
    try:
        merged = from_file(**overrides)
    except ValidationError as exc:
        raise ConfigError([_describe(source, error) for error in exc.errors()]) from None
    try:
        # The checks across sections (the timers) run as the settings object is made.
        return Settings(**{name: getattr(merged, name) for name in _SETTINGS_SOURCES.model_fields})
    except ValueError as exc:
        raise ConfigError([f"{source}: (top level): {exc}"]) from None


def validated(section: type[T], data: Mapping[str, Any]) -> T:
    """`data` checked and converted into `section` as the same section of a file would be;
    raises ValueError (a pydantic ValidationError) when it is not valid."""
    return TypeAdapter(section).validate_python(data)


def _check_yaml_file(config_file: Path) -> None:
    try:
        text = config_file.read_text()
    except OSError as exc:
        raise ConfigError(
            [f"{config_file}: cannot read the file ({exc.strerror}); check its path and mode"]
        ) from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([f"{config_file}: not valid YAML{where}: {problem}"]) from None
    if document is not None and not isinstance(document, dict):
        raise ConfigError(
            [f"{config_file}: expected a mapping of keys at the top, got {type(document).__name__}"]
        )


def _describe(source: str, error: Any) -> str:
    key = ".".join(str(part) for part in error["loc"]) or "(top level)"
    kind = error["type"]
    if kind == "missing":
        return f"{source}: {key}: required key is missing"
    if kind in UNKNOWN_KEY_ERRORS:
        return f"{source}: {key}: unknown key (check its spelling and section)"
    message = error["msg"].removeprefix("Value error, ")
    if "input" in error and kind not in ("value_error", "assertion_error"):
        shown = error["input"]
        secret = "password" in key or "token" in key
        if isinstance(shown, (str, int, float, bool)) and not secret:
            message = f"{message} (got {shown!r})"
    return f"{source}: {key}: {message}"


def masked(settings: Settings) -> dict[str, Any]:
    """The effective settings as plain data, every secret replaced by '**********'."""
    data: dict[str, Any] = plain(settings)
    return data
