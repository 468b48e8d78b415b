"""What to extract: a pydantic model class or a JSON-schema dict, as one :class:`Schema`.

A :class:`Schema` knows the JSON schema sent to the server (vLLM structured outputs), the
pandas dtype of each top-level field's column, and how to validate one decoded answer:
with pydantic when a model class was given (pydantic is imported only then), with the
``jsonschema`` package for a dict. Validation is strict and never raises: it returns the
values or an error naming the field.

Column dtypes follow the schema: ``integer`` -> ``Int64``, ``number`` -> ``Float64``,
``boolean`` -> ``boolean``, ``string`` (and string enums) -> ``string``; objects, arrays and
anything else stay Python objects (``object``). ``Optional[...]`` / ``anyOf [X, null]`` /
``"type": [X, "null"]`` take X's dtype.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from caprl_nb.errors import ConfigError, ValidationError, row_error

__all__ = ["Schema", "as_schema"]

_DTYPES = {"integer": "Int64", "number": "Float64", "boolean": "boolean", "string": "string"}


@dataclass(frozen=True, eq=False)
class Schema:
    """A JSON schema for one object answer, its column dtypes and a strict validator."""

    json_schema: dict[str, Any]
    name: str
    model: Any = None  # the pydantic model class, when one was given
    dtypes: dict[str, str] = field(default_factory=dict)
    _validator: Any = None

    @property
    def fields(self) -> list[str]:
        return list(self.dtypes)

    def validate(self, value: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
        """``(values, None)`` if ``value`` satisfies the schema, else ``(None, "ValidationError: ...")``.

        With a pydantic model the values are the model's JSON-mode dump (by alias), so
        defaults are filled in and columns hold JSON types.
        """
        values, problem = self.validated(value)
        return values, None if problem is None else row_error(problem)

    def validated(self, value: dict[str, Any]) -> tuple[dict[str, Any] | None, ValidationError | None]:
        """As :meth:`validate`, the failure as a :class:`caprl_nb.errors.ValidationError`."""
        if self.model is not None:
            return self._validate_pydantic(value)
        errors = sorted(self._validator.iter_errors(value), key=lambda e: list(e.absolute_path))
        if not errors:
            return value, None
        from jsonschema.exceptions import best_match

        first = best_match(errors)
        where = _path(list(first.absolute_path))
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        prefix = f"field {where}: " if where else ""
        return None, ValidationError(f"{prefix}{_short(first.message)}{more}")

    def _validate_pydantic(
        self, value: dict[str, Any]
    ) -> tuple[dict[str, Any] | None, ValidationError | None]:
        import pydantic

        try:
            # JSON mode, strict: "3" is not an int, but ISO dates and enum values are accepted
            # as the JSON the schema describes.
            instance = self.model.model_validate_json(json.dumps(value), strict=True)
        except pydantic.ValidationError as exc:
            problems = exc.errors(include_url=False)
            first = problems[0]
            where = _path(list(first.get("loc", ())))
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            prefix = f"field {where}: " if where else ""
            return None, ValidationError(f"{prefix}{_short(first['msg'])}{more}")
        return instance.model_dump(mode="json", by_alias=True), None


def _path(parts: list[Any]) -> str:
    if not parts:
        return ""
    text = str(parts[0])
    for part in parts[1:]:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return repr(text)


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit] + "…"


def as_schema(schema: Any) -> Schema:
    """A :class:`Schema` from a pydantic model class, a JSON-schema dict, or a :class:`Schema`."""
    if isinstance(schema, Schema):
        return schema
    if isinstance(schema, dict):
        return _from_dict(schema)
    if isinstance(schema, type) and hasattr(schema, "model_json_schema"):
        json_schema = schema.model_json_schema(by_alias=True)
        return Schema(json_schema, _name(schema.__name__), schema, _dtypes(json_schema))
    msg = (
        f"schema must be a pydantic model class or a JSON-schema dict, not {type(schema).__name__}. "
        "For example: class Invoice(pydantic.BaseModel): total: float; or "
        "{'type': 'object', 'properties': {'total': {'type': 'number'}}}."
    )
    raise ConfigError(msg)


def _from_dict(schema: dict[str, Any]) -> Schema:
    import jsonschema

    try:
        cls = jsonschema.validators.validator_for(schema)
        cls.check_schema(schema)
    except jsonschema.exceptions.SchemaError as exc:
        msg = f"The schema is not a valid JSON schema: {_short(exc.message)}. Fix it and run again."
        raise ConfigError(msg) from exc
    try:
        json.dumps(schema)
    except (TypeError, ValueError) as exc:
        msg = f"The schema must be plain JSON (it is sent to the server): {exc}."
        raise ConfigError(msg) from exc
    return Schema(schema, _name(schema.get("title")), None, _dtypes(schema), cls(schema))


def _name(title: Any) -> str:
    """A response_format name: letters, digits, ``_`` and ``-`` only, at most 64."""
    text = re.sub(r"[^A-Za-z0-9_-]+", "_", str(title or "")).strip("_")[:64]
    return text or "answer"


def _dtypes(schema: dict[str, Any]) -> dict[str, str]:
    """Column dtype of each top-level property, in the schema's order."""
    if _types(schema, schema) != {"object"} or not isinstance(schema.get("properties"), dict) \
            or not schema["properties"]:
        msg = (
            "extract needs a schema for one JSON object with named fields: "
            "{'type': 'object', 'properties': {...}} (a pydantic model class is one)."
        )
        raise ConfigError(msg)
    dtypes = {}
    for name, prop in schema["properties"].items():
        types = _types(prop, schema) - {"null"}
        if len(types) == 1:
            dtypes[str(name)] = _DTYPES.get(next(iter(types)), "object")
        elif types == {"integer", "number"}:
            dtypes[str(name)] = "Float64"
        else:
            dtypes[str(name)] = "object"
    return dtypes


def _types(prop: Any, root: dict[str, Any], depth: int = 0) -> set[str]:
    """The JSON types a (sub)schema allows, following local ``$ref`` s and ``anyOf``/``oneOf``."""
    if not isinstance(prop, dict) or depth > 20:
        return {"any"}
    if "$ref" in prop and isinstance(prop["$ref"], str) and prop["$ref"].startswith("#/"):
        target: Any = root
        for part in prop["$ref"][2:].split("/"):
            target = target.get(part.replace("~1", "/").replace("~0", "~"), {}) \
                if isinstance(target, dict) else {}
        return _types(target, root, depth + 1)
    if "type" in prop:
        kinds = prop["type"]
        return {kinds} if isinstance(kinds, str) else {str(k) for k in kinds}
    for key in ("anyOf", "oneOf"):
        if isinstance(prop.get(key), list):
            out: set[str] = set()
            for option in prop[key]:
                out |= _types(option, root, depth + 1)
            return out
    if isinstance(prop.get("enum"), list) and prop["enum"]:
        return {_json_type(v) for v in prop["enum"]}
    if "const" in prop:
        return {_json_type(prop["const"])}
    if isinstance(prop.get("allOf"), list) and len(prop["allOf"]) == 1:
        return _types(prop["allOf"][0], root, depth + 1)
    if "properties" in prop:
        return {"object"}
    return {"any"}


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "object" if isinstance(value, dict) else "array"


def column(values: list[Any], dtype: str) -> pd.api.extensions.ExtensionArray | list[Any]:
    """One result column: ``values`` (None where missing) as ``dtype``, objects as they are."""
    if dtype == "object":
        out = pd.array([None] * len(values), dtype=object)
        for i, value in enumerate(values):
            out[i] = value
        return out
    try:
        return pd.array(values, dtype=dtype)  # type: ignore[call-overload]  # pandas-stubs: dtype names as literals only
    except (TypeError, ValueError, OverflowError):
        # Validation guarantees the JSON type, but an integer beyond int64 cannot be Int64.
        return column(values, "object")
