"""Schemas: pydantic classes and JSON-schema dicts, column dtypes, strict validation."""

from __future__ import annotations

from typing import Literal, Optional

import pydantic
import pytest

from caprl_nb.errors import ConfigError
from caprl_nb.extract.schema import as_schema


class Address(pydantic.BaseModel):
    city: str


class Invoice(pydantic.BaseModel):
    vendor: str
    total: float
    items: int
    paid: bool
    currency: Literal["USD", "EUR"]
    note: Optional[str] = None
    address: Address
    tags: list[str] = []
    number_code: int | None = pydantic.Field(default=None, alias="code")


DICT_SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "count": {"type": "integer"},
        "score": {"type": ["number", "null"]},
        "ok": {"type": "boolean"},
        "kind": {"enum": ["a", "b"]},
        "nested": {"type": "object", "properties": {"x": {"type": "integer"}}},
        "mixed": {"anyOf": [{"type": "integer"}, {"type": "number"}]},
    },
    "required": ["name", "count"],
}


def test_pydantic_dtypes() -> None:
    schema = as_schema(Invoice)
    assert schema.dtypes == {
        "vendor": "string", "total": "Float64", "items": "Int64", "paid": "boolean",
        "currency": "string", "note": "string", "address": "object", "tags": "object",
        "code": "Int64",
    }
    assert schema.name == "Invoice"


def test_dict_dtypes() -> None:
    schema = as_schema(DICT_SCHEMA)
    assert schema.dtypes == {
        "name": "string", "count": "Int64", "score": "Float64", "ok": "boolean",
        "kind": "string", "nested": "object", "mixed": "Float64",
    }
    assert schema.name == "answer"


def test_pydantic_validation_is_strict_and_names_the_field() -> None:
    schema = as_schema(Invoice)
    good = {"vendor": "Acme", "total": 12, "items": 3, "paid": True, "currency": "USD",
            "address": {"city": "Oslo"}, "code": 7}
    values, error = schema.validate(good)
    assert error is None
    assert values["total"] == 12.0 and values["code"] == 7 and values["tags"] == []
    values, error = schema.validate({**good, "items": "3"})  # lax mode would accept "3"
    assert values is None
    assert error.startswith("ValidationError: field 'items'")
    values, error = schema.validate({**good, "address": {"city": 5}})
    assert error.startswith("ValidationError: field 'address.city'")


def test_jsonschema_validation_names_the_field() -> None:
    schema = as_schema(DICT_SCHEMA)
    assert schema.validate({"name": "x", "count": 2}) == ({"name": "x", "count": 2}, None)
    values, error = schema.validate({"name": "x", "count": "two"})
    assert values is None
    assert error.startswith("ValidationError: field 'count': 'two' is not of type 'integer'")
    _, error = schema.validate({"name": "x"})
    assert "'count' is a required property" in error
    _, error = schema.validate({"name": "x", "count": 1, "nested": {"x": 1.5}})
    assert "field 'nested.x'" in error


@pytest.mark.parametrize(
    "bad",
    [
        {"type": "array", "items": {"type": "string"}},
        {"type": "object"},
        {"type": "object", "properties": {"a": {"type": "no-such-type"}}},
        "not a schema",
        str,
    ],
)
def test_unusable_schemas_are_config_errors(bad: object) -> None:
    with pytest.raises(ConfigError):
        as_schema(bad)
