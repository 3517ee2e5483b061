"""One encoder for the typed records reports and the manifest hold (frozen dataclasses of enums, numbers, text, tuples
and other records), its decoder, and the JSON Schema both imply, all read from the dataclasses' own type hints.

A record is written as an object of its fields: an enum as its value, a tuple or list as an array, a Path as text,
`dict[str, X]` as an object. Decoding reverses it and fills a field missing from older files with its default. The
JSON Schema of `manifest.json` (`manifest.schema.json` in the package) is generated from the same hints, so the
published schema cannot drift from what the code writes (tests/test_manifest_schema.py).
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar, Union, get_args, get_origin

Record = TypeVar("Record")
JSON_SCALARS = {str: "string", int: "integer", float: "number", bool: "boolean"}


def encode(value: Any) -> Any:
    """A record (or anything inside one) as JSON values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {field.name: encode(getattr(value, field.name)) for field in dataclasses.fields(value)}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple | list):
        return [encode(item) for item in value]
    if isinstance(value, dict):
        return {str(key): encode(item) for key, item in value.items()}
    return value


@functools.cache
def field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def decode(kind: Any, raw: Any) -> Any:
    """`raw` (JSON values) as the type `kind`; a record's missing fields take their defaults."""
    origin, args = get_origin(kind), get_args(kind)
    if origin in (Union, types.UnionType):
        if raw is None and type(None) in args:
            return None
        (inner,) = [arg for arg in args if arg is not type(None)]
        return decode(inner, raw)
    if origin is tuple:
        return tuple(decode(args[0], item) for item in raw) if len(args) == 2 and args[1] is Ellipsis else tuple(map(decode, args, raw))
    if origin is list:
        return [decode(args[0], item) for item in raw]
    if origin is dict:
        return {key: decode(args[1], item) for key, item in raw.items()}
    if isinstance(kind, type) and dataclasses.is_dataclass(kind):
        hints = field_types(kind)
        return kind(**{field.name: decode(hints[field.name], raw[field.name]) for field in dataclasses.fields(kind) if field.name in raw})
    if isinstance(kind, type) and issubclass(kind, Enum):
        return kind(raw)
    if kind is Path:
        return Path(raw)
    if kind is float:
        return float(raw)
    return raw


def json_schema(kind: Any, definitions: dict[str, Any]) -> dict[str, Any]:
    """The JSON Schema of `kind`'s encoding; records go into `definitions` (by class name) and are referenced."""
    origin, args = get_origin(kind), get_args(kind)
    if origin in (Union, types.UnionType):
        return {"anyOf": [json_schema(arg, definitions) for arg in args]}
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return {"type": "array", "items": json_schema(args[0], definitions)}
        return {"type": "array", "prefixItems": [json_schema(arg, definitions) for arg in args], "minItems": len(args), "maxItems": len(args)}
    if origin is list:
        return {"type": "array", "items": json_schema(args[0], definitions)}
    if origin is dict:
        return {"type": "object", "additionalProperties": json_schema(args[1], definitions)}
    if kind is type(None):
        return {"type": "null"}
    if kind is Any:
        return {}
    if isinstance(kind, type) and dataclasses.is_dataclass(kind):
        if kind.__name__ not in definitions:
            definitions[kind.__name__] = {}  # reserved first: a record may refer to itself
            hints = field_types(kind)
            fields = dataclasses.fields(kind)
            definitions[kind.__name__] = {
                "type": "object",
                **({"description": first_paragraph(kind.__doc__)} if kind.__doc__ and not kind.__doc__.startswith(kind.__name__ + "(") else {}),
                "properties": {field.name: json_schema(hints[field.name], definitions) for field in fields},
                "required": [field.name for field in fields if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING],
                "additionalProperties": False,
            }
        return {"$ref": f"#/$defs/{kind.__name__}"}
    if isinstance(kind, type) and issubclass(kind, Enum):
        return {"enum": [member.value for member in kind]}
    if kind is Path:
        return {"type": "string"}
    if kind is float:
        return {"type": "number"}
    if kind in JSON_SCALARS:
        return {"type": JSON_SCALARS[kind]}
    raise TypeError(f"no JSON Schema for {kind!r}")


def first_paragraph(text: str) -> str:
    return " ".join(text.strip().split("\n\n")[0].split())
