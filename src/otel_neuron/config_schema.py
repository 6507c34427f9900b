"""The structural checks of schemas/monitor-config.schema.json, applied without jsonschema.

The schema file stays the contract (editors, docs and `jsonschema` read it); this module applies the
few JSON Schema keywords it uses, with jsonschema's semantics and in jsonschema's order, so loading a
configuration does not import jsonschema, its format checkers and its metaschemas (a large share
of a monitor's start-up time and resident memory). A keyword this module does not apply makes
`SchemaChecker` refuse the schema rather than skip it, so the schema cannot grow a check that goes
unenforced; tests/unit/test_config_schema.py holds every verdict to jsonschema's.

    checker = SchemaChecker(load_schema("monitor-config.schema.json"))
    for error in checker.iter_errors(document):
        print(error.absolute_path, error.validator, error.message)
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

# Keywords that only describe: they never fail a document.
_ANNOTATIONS = frozenset({"$schema", "$id", "$defs", "$comment", "title", "description", "examples"})

_TYPES: dict[str, Callable[[Any], bool]] = {
    "object": lambda value: isinstance(value, dict),
    "array": lambda value: isinstance(value, list),
    "string": lambda value: isinstance(value, str),
    "boolean": lambda value: isinstance(value, bool),
    "null": lambda value: value is None,
    "number": lambda value: isinstance(value, (int, float)) and not isinstance(value, bool),
    "integer": lambda value: (
        (isinstance(value, int) and not isinstance(value, bool))
        or (isinstance(value, float) and value.is_integer())
    ),
}


Path = tuple[str | int, ...]


@dataclass(frozen=True)
class SchemaError:
    """One violation, named as jsonschema's ValidationError names it."""

    validator: str  # the keyword that failed
    validator_value: Any  # its value in the schema
    instance: Any  # the part of the document it failed on
    schema: Mapping[str, Any]  # the (sub)schema holding the keyword
    absolute_path: Path  # where in the document
    message: str


# A keyword's check: (instance, the keyword's value, the schema holding it, path) -> violations.
_Check = Callable[[Any, Any, Mapping[str, Any], Path], Iterator[SchemaError]]


class SchemaChecker:
    """Checks documents against a schema made of the keywords below; raises ValueError at
    construction for a schema using any other, or a `$ref` that is not local."""

    def __init__(self, schema: Mapping[str, Any]) -> None:
        self._root = schema
        self._keywords: dict[str, _Check] = {
            "$ref": self._ref,
            "type": self._type,
            "enum": self._enum,
            "pattern": self._pattern,
            "minLength": self._min_length,
            "maxLength": self._max_length,
            "maxItems": self._max_items,
            "items": self._items,
            "properties": self._properties,
            "additionalProperties": self._additional_properties,
            "required": self._required,
        }
        self._check_known(schema, "#")

    def iter_errors(self, instance: Any) -> Iterator[SchemaError]:
        """Every violation, in the order jsonschema yields them."""
        return self._descend(instance, self._root, ())

    def _check_known(self, schema: Mapping[str, Any], where: str) -> None:
        for keyword, value in schema.items():
            if keyword not in self._keywords and keyword not in _ANNOTATIONS:
                raise ValueError(
                    f"{where}: the JSON Schema keyword {keyword!r} is not checked by config_schema"
                )
            if keyword == "$ref":
                self._resolve(value)
            elif keyword == "type":
                unknown = [name for name in _listed(value) if name not in _TYPES]
                if unknown:
                    raise ValueError(f"{where}: unknown type {unknown[0]!r}")
        for keyword in ("items", "additionalProperties"):
            if isinstance(schema.get(keyword), dict):
                self._check_known(schema[keyword], f"{where}/{keyword}")
        for name, subschema in schema.get("properties", {}).items():
            self._check_known(subschema, f"{where}/properties/{name}")
        for name, subschema in schema.get("$defs", {}).items():
            self._check_known(subschema, f"{where}/$defs/{name}")

    def _resolve(self, reference: str) -> Mapping[str, Any]:
        if not reference.startswith("#/"):
            raise ValueError(f"$ref {reference!r} is not a reference inside the schema")
        target: Any = self._root
        for part in reference[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(target, dict) or part not in target:
                raise ValueError(f"$ref {reference!r} leads nowhere")
            target = target[part]
        resolved: Mapping[str, Any] = target
        return resolved

    def _descend(self, instance: Any, schema: Mapping[str, Any], path: Path) -> Iterator[SchemaError]:
        for keyword, value in schema.items():
            check = self._keywords.get(keyword)
            if check is not None:
                yield from check(instance, value, schema, path)

    def _ref(
        self, instance: Any, reference: str, schema: Mapping[str, Any], path: Path
    ) -> Iterator[SchemaError]:
        yield from self._descend(instance, self._resolve(reference), path)

    def _type(
        self, instance: Any, types: Any, schema: Mapping[str, Any], path: Path
    ) -> Iterator[SchemaError]:
        names = _listed(types)
        if not any(_TYPES[name](instance) for name in names):
            shown = ", ".join(repr(name) for name in names)
            yield SchemaError("type", types, instance, schema, path, f"{instance!r} is not of type {shown}")

    def _enum(
        self, instance: Any, values: list[Any], schema: Mapping[str, Any], path: Path
    ) -> Iterator[SchemaError]:
        if not any(_equal(value, instance) for value in values):
            yield SchemaError(
                "enum", values, instance, schema, path, f"{instance!r} is not one of {values!r}"
            )

    def _pattern(
        self, instance: Any, pattern: str, schema: Mapping[str, Any], path: Path
    ) -> Iterator[SchemaError]:
        if isinstance(instance, str) and not re.search(pattern, instance):
            message = f"{instance!r} does not match {pattern!r}"
            yield SchemaError("pattern", pattern, instance, schema, path, message)

    def _min_length(
        self, instance: Any, limit: int, schema: Mapping[str, Any], path: Path
    ) -> Iterator[SchemaError]:
        if isinstance(instance, str) and len(instance) < limit:
            message = f"{instance!r} should be non-empty" if limit == 1 else f"{instance!r} is too short"
            yield SchemaError("minLength", limit, instance, schema, path, message)

    def _max_length(
        self, instance: Any, limit: int, schema: Mapping[str, Any], path: Path
    ) -> Iterator[SchemaError]:
        if isinstance(instance, str) and len(instance) > limit:
            yield SchemaError("maxLength", limit, instance, schema, path, f"{instance!r} is too long")

    def _max_items(
        self, instance: Any, limit: int, schema: Mapping[str, Any], path: Path
    ) -> Iterator[SchemaError]:
        if isinstance(instance, list) and len(instance) > limit:
            yield SchemaError("maxItems", limit, instance, schema, path, f"{instance!r} is too long")

    def _items(
        self, instance: Any, items: Mapping[str, Any], schema: Mapping[str, Any], path: Path
    ) -> Iterator[SchemaError]:
        if isinstance(instance, list):
            for index, item in enumerate(instance):
                yield from self._descend(item, items, (*path, index))

    def _properties(
        self,
        instance: Any,
        properties: Mapping[str, Mapping[str, Any]],
        schema: Mapping[str, Any],
        path: Path,
    ) -> Iterator[SchemaError]:
        if isinstance(instance, dict):
            for name, subschema in properties.items():
                if name in instance:
                    yield from self._descend(instance[name], subschema, (*path, name))

    def _additional_properties(
        self, instance: Any, allowed: Any, schema: Mapping[str, Any], path: Path
    ) -> Iterator[SchemaError]:
        if not isinstance(instance, dict):
            return
        extras = [name for name in instance if name not in schema.get("properties", {})]
        if isinstance(allowed, dict):
            for name in extras:
                yield from self._descend(instance[name], allowed, (*path, name))
        elif allowed is False and extras:
            names = ", ".join(repr(name) for name in sorted(extras, key=str))
            verb = "was" if len(extras) == 1 else "were"
            message = f"Additional properties are not allowed ({names} {verb} unexpected)"
            yield SchemaError("additionalProperties", allowed, instance, schema, path, message)

    def _required(
        self, instance: Any, names: list[str], schema: Mapping[str, Any], path: Path
    ) -> Iterator[SchemaError]:
        if isinstance(instance, dict):
            for name in names:
                if name not in instance:
                    yield SchemaError(
                        "required", names, instance, schema, path, f"{name!r} is a required property"
                    )


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _equal(one: Any, two: Any) -> bool:
    """JSON equality as jsonschema has it: true is not 1, 1 is 1.0, lists and objects compare deep."""
    if one is two:
        return True
    if isinstance(one, str) or isinstance(two, str):
        return bool(one == two)
    if isinstance(one, list) and isinstance(two, list):
        return len(one) == len(two) and all(_equal(a, b) for a, b in zip(one, two, strict=True))
    if isinstance(one, dict) and isinstance(two, dict):
        return one.keys() == two.keys() and all(_equal(one[key], two[key]) for key in one)
    return bool(_unbool(one) == _unbool(two))


def _unbool(value: Any) -> Any:
    return ("boolean", value) if isinstance(value, bool) else value
