"""The strict base of every config model: ConfigError, number checks, `_Strict`, `Seed`."""

from __future__ import annotations

import types
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

class ConfigError(ValueError):
    """A params file or override is invalid; the message names the key."""


def _strict_number(annotation: Any, value: Any) -> str | None:
    """Why `value` is not acceptable for a field of type `annotation`, or None.

    Ints are strict (YAML's `true` or `4.0` is not an iteration count); a float field takes an
    int or a numeric string (YAML 1.1 reads `1e-4` as a string) but not a bool.
    """
    origin = get_origin(annotation)
    if origin is Annotated:
        return _strict_number(get_args(annotation)[0], value)
    if annotation is int:
        if type(value) is not int:
            return f"must be an integer, not {type(value).__name__}"
    elif annotation is float:
        if isinstance(value, bool):
            return "must be a number, not bool"
    elif origin in (Union, types.UnionType):
        if value is None and type(None) in get_args(annotation):
            return None
        numeric = [a for a in get_args(annotation) if a in (int, float)]
        if len(numeric) == 1:
            return _strict_number(numeric[0], value)
    elif origin is list and isinstance(value, list) and get_args(annotation):
        for item in value:
            why = _strict_number(get_args(annotation)[0], item)
            if why:
                return f"every item {why} (got {item!r})"
    return None


class _Strict(BaseModel):
    # allow_inf_nan=False: every float field must be finite (`rl.lr: .inf` or `nan` is an error)
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _strict_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        why = _strict_number(cls.model_fields[info.field_name].annotation, value)
        if why:
            raise ValueError(why)
        return value


# what numpy, torch and python's random all accept as a seed
Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]
