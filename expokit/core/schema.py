"""JSON Schemas (draft 2020-12) of expokit's files, generated from their typed models.

:func:`dataclass_schema` turns a dataclass into a schema from its type hints: ``int``,
``float``, ``bool``, ``str``, ``None``, ``Path`` (a string), ``Literal``, ``X | None``,
``tuple[...]``, ``list[...]``, ``dict[str, ...]``, NumPy arrays (nested lists), nested
dataclasses (``$defs``), ``Enum`` (its values) and defaults. Field descriptions come from
the class docstring's numpy-style ``Attributes`` or ``Parameters`` section
(``name`` or ``name1, name2`` lines, description indented below).

:func:`from_json` / :func:`to_json` load and dump a dataclass through the same type
hints, naming the field that is wrong. The registry of file kinds (which file, which model,
which reader and writer) lives above the stages, in :mod:`expokit.schemas`.

:func:`validate` checks a JSON value against the subset of JSON Schema emitted here (for
environments without the ``jsonschema`` package).
"""

from __future__ import annotations

import dataclasses
import enum
import importlib
import inspect
import re
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path, PurePath
from typing import Any, TypeVar

from expokit.core.errors import InputFileError

DRAFT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_DIR = "docs/schemas"
REGENERATE = "python scripts/gen_schemas.py"

JsonSchema = dict[str, Any]
T = TypeVar("T")


# --------------------------------------------------------------------------- docstrings

_SECTION = re.compile(r"^(Attributes|Parameters)\s*\n\s*-{3,}\s*$", re.MULTILINE)
_NEXT_SECTION = re.compile(r"^\S[^\n]*\n\s*-{3,}\s*$", re.MULTILINE)


def field_docs(cls: type) -> dict[str, str]:
    """``{field: description}`` from ``cls``'s ``Attributes``/``Parameters`` docstring section.

    A line ``a, b`` documents both fields with the indented text below it.
    """
    doc = inspect.cleandoc(cls.__doc__ or "")
    match = _SECTION.search(doc)
    if not match:
        return {}
    body = doc[match.end() :]
    end = _NEXT_SECTION.search(body)
    if end:
        body = body[: end.start()]
    docs: dict[str, str] = {}
    names: list[str] = []
    text: list[str] = []

    def flush() -> None:
        if names:
            description = " ".join(" ".join(text).split())
            for name in names:
                docs[name] = description

    for line in body.splitlines():
        if not line.strip():
            continue
        if not line[0].isspace():
            flush()
            head = line.split(":", 1)[0]
            names = [n.strip() for n in head.split(",") if n.strip().isidentifier()]
            text = []
        else:
            text.append(line.strip())
    flush()
    return docs


def _summary(cls: type) -> str | None:
    doc = inspect.cleandoc(cls.__doc__ or "")
    # dataclasses give undocumented classes a signature docstring: "Name(a: int, ...)"
    if not doc or doc.startswith(f"{cls.__name__}("):
        return None
    first = doc.split("\n\n", 1)[0]
    return " ".join(first.split())


# --------------------------------------------------------------------------- generator


def _is_ndarray(tp: Any) -> bool:
    origin = typing.get_origin(tp) or tp
    return getattr(origin, "__name__", "") == "ndarray" and getattr(
        origin, "__module__", ""
    ).startswith("numpy")


def _jsonable(value: Any) -> tuple[bool, Any]:
    """``(True, JSON value)`` for a default that has a JSON form, else ``(False, None)``."""
    if value is None or isinstance(value, bool | int | str):
        return True, value
    if isinstance(value, float):
        return (value == value and value not in (float("inf"), float("-inf"))), value
    if isinstance(value, enum.Enum):
        return _jsonable(value.value)
    if isinstance(value, PurePath):
        return True, str(value)
    if isinstance(value, list | tuple):
        items = [_jsonable(v) for v in value]
        return all(ok for ok, _ in items), [v for _, v in items]
    if isinstance(value, dict):
        pairs = [(str(k), _jsonable(v)) for k, v in value.items()]
        return all(ok for _, (ok, _) in pairs), {k: v for k, (_, v) in pairs}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _jsonable({f.name: getattr(value, f.name) for f in dataclasses.fields(value)})
    return False, None


class _Generator:
    def __init__(self, strict: bool) -> None:
        self.strict = strict
        self.defs: dict[str, JsonSchema] = {}

    def type_schema(self, tp: Any) -> JsonSchema:
        if tp is Any or tp is object:
            return {}
        if tp is None or tp is type(None):
            return {"type": "null"}
        if tp is bool:
            return {"type": "boolean"}
        if tp is int:
            return {"type": "integer"}
        if tp is float:
            return {"type": "number"}
        if tp is str:
            return {"type": "string"}
        if isinstance(tp, type) and issubclass(tp, PurePath):
            return {"type": "string"}
        if isinstance(tp, typing.TypeVar):
            return {}
        if _is_ndarray(tp):
            return {"type": "array", "description": "NumPy array as nested lists"}
        origin = typing.get_origin(tp)
        args = typing.get_args(tp)
        if origin is typing.Literal:
            values = list(args)
            return {"const": values[0]} if len(values) == 1 else {"enum": values}
        if origin is typing.Union or origin is types.UnionType:
            return self._union(args)
        if origin is tuple:
            if len(args) == 2 and args[1] is Ellipsis:
                return {"type": "array", "items": self.type_schema(args[0])}
            if not args:
                return {"type": "array"}
            return {
                "type": "array",
                "prefixItems": [self.type_schema(a) for a in args],
                "minItems": len(args),
                "maxItems": len(args),
                "items": False,
            }
        if origin in (list, set, frozenset) or (
            isinstance(origin, type) and issubclass(origin, Sequence) and origin is not str
        ):
            return {"type": "array", **({"items": self.type_schema(args[0])} if args else {})}
        if origin is dict or (isinstance(origin, type) and issubclass(origin, Mapping)):
            schema: JsonSchema = {"type": "object"}
            if len(args) == 2:
                schema["additionalProperties"] = self.type_schema(args[1])
            return schema
        if tp in (list, tuple):
            return {"type": "array"}
        if tp is dict:
            return {"type": "object"}
        if isinstance(tp, type) and issubclass(tp, enum.Enum):
            return self._enum(tp)
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            name = tp.__name__
            if name not in self.defs:
                self.defs[name] = {}  # placeholder: recursion stops here
                self.defs[name] = self.object_schema(tp)
            return {"$ref": f"#/$defs/{name}"}
        # A type with no JSON description here (a class with its own to_dict, ...).
        return {"description": f"{getattr(tp, '__name__', tp)} (shape not described)"}

    def _union(self, args: tuple[Any, ...]) -> JsonSchema:
        parts = [self.type_schema(a) for a in args]
        simple = [p for p in parts if set(p) == {"type"} and isinstance(p["type"], str)]
        if len(simple) == len(parts):
            return {"type": [p["type"] for p in parts]}
        return {"anyOf": parts}

    def _enum(self, tp: type[enum.Enum]) -> JsonSchema:
        values = [member.value for member in tp]
        schema: JsonSchema = {"enum": values}
        if all(isinstance(v, str) for v in values):
            schema = {"type": "string", "enum": values}
        elif all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            schema = {"type": "integer", "enum": values}
        summary = _summary(tp)
        if summary and not summary.startswith("An enumeration"):
            schema["description"] = summary
        return schema

    def object_schema(self, cls: type, exclude: Sequence[str] = ()) -> JsonSchema:
        hints = _type_hints(cls)
        docs = field_docs(cls)
        properties: dict[str, JsonSchema] = {}
        required: list[str] = []
        for f in dataclasses.fields(cls):
            if f.name in exclude or not f.init:
                continue
            prop = dict(self.type_schema(hints.get(f.name, Any)))
            if f.name in docs:
                prop["description"] = docs[f.name]
            if f.default is not dataclasses.MISSING:
                ok, value = _jsonable(f.default)
                if ok:
                    prop["default"] = value
            elif f.default_factory is not dataclasses.MISSING:
                ok, value = _jsonable(f.default_factory())
                if ok:
                    prop["default"] = value
            else:
                required.append(f.name)
            properties[f.name] = prop
        schema: JsonSchema = {"type": "object"}
        summary = _summary(cls)
        if summary:
            schema["description"] = summary
        schema["properties"] = properties
        if required:
            schema["required"] = required
        if self.strict and extra_keys(cls) == "forbid":
            schema["additionalProperties"] = False
        return schema


def _type_hints(cls: type) -> dict[str, Any]:
    """Resolved annotations of ``cls``; one that cannot be resolved reads as ``Any``."""
    try:
        return typing.get_type_hints(cls)
    except Exception:  # a name imported only under TYPE_CHECKING, ...
        pass
    hints: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        module = importlib.import_module(klass.__module__) if klass.__module__ else None
        namespace = dict(vars(module)) if module else {}
        for name, annotation in getattr(klass, "__annotations__", {}).items():
            if isinstance(annotation, str):
                try:
                    annotation = eval(annotation, namespace)  # type hints of our own code
                except Exception:
                    annotation = Any
            hints[name] = annotation
    return hints


def dataclass_schema(
    cls: type,
    *,
    exclude: Sequence[str] = (),
    strict: bool = True,
    title: str | None = None,
    schema_id: str | None = None,
) -> JsonSchema:
    """JSON Schema (draft 2020-12) of the JSON form of dataclass ``cls``.

    Parameters
    ----------
    cls
        A dataclass; nested dataclasses become ``$defs`` referenced by ``$ref``.
    exclude
        Fields of ``cls`` that are not in the file (in-memory only).
    strict
        ``additionalProperties: false`` on every object of a dataclass.
    title, schema_id
        ``title`` (default: the class name) and ``$id`` of the schema.
    """
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise TypeError(f"{cls!r} is not a dataclass")
    gen = _Generator(strict)
    body = gen.object_schema(cls, exclude)
    schema: JsonSchema = {"$schema": DRAFT}
    if schema_id:
        schema["$id"] = schema_id
    schema["title"] = title or cls.__name__
    schema.update(body)
    if gen.defs:
        schema["$defs"] = dict(sorted(gen.defs.items()))
    return schema


# --------------------------------------------------------------------------- typed loading

#: Class attribute of a file model saying what :func:`from_json` does with keys it does not
#: know: ``"forbid"`` (default: an error naming the key), ``"ignore"`` (dropped) or
#: ``"allow"`` (dropped too, and the schema allows them).
EXTRA_ATTR = "__json_extra__"


def extra_keys(cls: type) -> str:
    """``"forbid"``, ``"ignore"`` or ``"allow"``: ``cls``'s :data:`EXTRA_ATTR` policy."""
    return str(getattr(cls, EXTRA_ATTR, "forbid"))


class FieldError(Exception):
    """A JSON value does not fit a model: ``field`` (a JSON path such as ``a.b[2]``) and
    ``problem``. :func:`from_json` turns it into the caller's file error.

    A model's ``__post_init__`` may raise it with a path relative to the model (``"x[3]"``);
    the loader puts the model's own path in front."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"field {field!r}: {problem}")


def describe(value: object) -> str:
    """Short description of a JSON value for messages: its JSON type and a clipped repr."""
    names = {dict: "a JSON object", list: "a JSON array", str: "a string", bool: "a boolean"}
    kind = names.get(type(value), "null" if value is None else type(value).__name__)
    if isinstance(value, dict | list) or value is None:
        return kind
    return f"{kind} {repr(value)[:40]}"


def _type_name(tp: Any) -> str:
    if tp is type(None) or tp is None:
        return "null"
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    if tp in names:
        return names[tp]
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (list, tuple) or tp in (list, tuple):
        return "a JSON array"
    if origin is dict or tp is dict or dataclasses.is_dataclass(tp):
        return "a JSON object"
    return getattr(tp, "__name__", str(tp))


def _load(tp: Any, value: Any, where: str) -> Any:
    if tp is Any or tp is object or isinstance(tp, typing.TypeVar):
        return value
    if tp is None or tp is type(None):
        if value is not None:
            raise FieldError(where, f"expected null, got {describe(value)}")
        return None
    if tp is bool:
        if not isinstance(value, bool):
            raise FieldError(where, f"expected true or false, got {describe(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise FieldError(where, f"expected an integer, got {describe(value)}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise FieldError(where, f"expected a number, got {describe(value)}")
        if not (value == value and value not in (float("inf"), float("-inf"))):
            raise FieldError(where, f"expected a finite number, got {value!r}")
        return float(value)
    if tp is str or (isinstance(tp, type) and issubclass(tp, PurePath)):
        if not isinstance(value, str):
            raise FieldError(where, f"expected a string, got {describe(value)}")
        return value if tp is str else tp(value)
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Literal:
        if not any(type(value) is type(a) and value == a for a in args):
            raise FieldError(where, f"expected {_type_name(tp)}, got {describe(value)}")
        return value
    if origin is typing.Union or origin is types.UnionType:
        arms = [a for a in args if a is not type(None)]
        if value is None and len(arms) < len(args):
            return None
        errors: list[FieldError] = []
        for arm in arms:
            try:
                return _load(arm, value, where)
            except FieldError as exc:
                errors.append(exc)
        deeper = [e for e in errors if e.field != where]
        if len(errors) == 1 or deeper:
            raise (deeper or errors)[0]
        wanted = " or ".join(_type_name(a) for a in args)
        raise FieldError(where, f"expected {wanted}, got {describe(value)}")
    if origin in (list, tuple, set, frozenset) or tp in (list, tuple):
        if not isinstance(value, list):
            raise FieldError(where, f"expected a JSON array, got {describe(value)}")
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(value) != len(args):
                raise FieldError(where, f"expected {len(args)} items, got {len(value)}")
            pairs = enumerate(zip(args, value, strict=True))
            return tuple(_load(a, v, f"{where}[{i}]") for i, (a, v) in pairs)
        item = args[0] if args else Any
        items = [_load(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple or tp is tuple else items
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise FieldError(where, f"expected a JSON object, got {describe(value)}")
        item = args[1] if len(args) == 2 else Any
        return {str(k): _load(item, v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _load_object(tp, value, where)
    raise FieldError(where, f"no JSON reader for type {tp!r}")


def _load_object(cls: type, value: Any, where: str) -> Any:
    if not isinstance(value, dict):
        raise FieldError(where or "top level", f"expected a JSON object, got {describe(value)}")
    hints = _type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    prefix = f"{where}." if where else ""
    if extra_keys(cls) == "forbid":
        unknown = sorted(str(k) for k in value if k not in fields)
        if unknown:
            raise FieldError(prefix + unknown[0], "unknown field")
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        if name not in value:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise FieldError(prefix + name, "missing")
            continue
        # metadata {"checked_by_model": True}: the model's __post_init__ checks the value
        # (with its own message); the type hint still describes it in the schema.
        hint = Any if f.metadata.get("checked_by_model") else hints.get(name, Any)
        kwargs[name] = _load(hint, value[name], prefix + name)
    try:
        return cls(**kwargs)
    except FieldError as exc:  # a model's own check naming a field of its own
        raise FieldError(prefix + exc.field, exc.problem) from None
    except (TypeError, ValueError) as exc:  # the model's own checks (__post_init__)
        raise FieldError(where or "top level", str(exc)) from None


def from_json(
    cls: type[T],
    data: object,
    source: str | PurePath,
    *,
    error: Callable[[Path, str], Exception] | None = None,
    kind: str | None = None,
) -> T:
    """Build dataclass ``cls`` from the JSON value ``data`` read from ``source``.

    Every field is checked against its type hint (``int`` is never a ``bool``, ``float`` is
    finite, ``Literal`` values match exactly, nested dataclasses, lists, tuples and
    ``dict[str, X]`` recursively); a missing required field or (unless the class sets
    ``__json_extra__``) an unknown one is an error too, as is a ``ValueError`` of the
    model's own ``__post_init__``.

    Parameters
    ----------
    cls
        The file model.
    data
        The decoded JSON value.
    source
        The file, named in every error.
    error
        ``error(path, problem)`` makes the exception (default :class:`InputFileError`).
    kind
        What the file is (``"truth.json"``), put before the field in the message.

    Raises
    ------
    Exception
        ``error(source, "<kind> field '<json path>': <problem>")``.
    """
    make = error or InputFileError
    try:
        return typing.cast(T, _load_object(cls, data, ""))
    except FieldError as exc:
        head = f"{kind} " if kind else ""
        raise make(Path(source), f"{head}{exc}") from None


def to_json(obj: Any) -> Any:
    """The JSON value of a file model (inverse of :func:`from_json`): dataclasses become
    objects in field order (fields with ``metadata={"omit_if_default": True}`` left out at
    their default), tuples lists, paths strings, enums their values."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out: dict[str, Any] = {}
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            omit = f.metadata.get("omit_if_default") and f.default is not dataclasses.MISSING
            if omit and value == f.default:
                continue
            out[f.name] = to_json(value)
        return out
    if isinstance(obj, dict):
        return {str(k): to_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_json(v) for v in obj]
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, PurePath):
        return str(obj)
    return obj


# --------------------------------------------------------------------------- validator

_TYPES: dict[str, Any] = {
    "null": lambda v: v is None,
    "boolean": lambda v: isinstance(v, bool),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "string": lambda v: isinstance(v, str),
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
}


def validate(instance: Any, schema: JsonSchema, root: JsonSchema | None = None) -> list[str]:
    """Problems of ``instance`` against ``schema`` (the subset emitted here), as
    ``"<json path>: <problem>"`` lines; empty when it is valid."""
    return _check(instance, schema, root or schema, "$")


def _check(value: Any, schema: Any, root: JsonSchema, where: str) -> list[str]:
    if schema is True or schema == {}:
        return []
    if schema is False:
        return [f"{where}: not allowed"]
    if "$ref" in schema:
        ref = schema["$ref"]
        if not ref.startswith("#/$defs/"):
            return [f"{where}: unsupported $ref {ref!r}"]
        return _check(value, root["$defs"][ref.split("/")[-1]], root, where)
    problems: list[str] = []
    if "type" in schema:
        names = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_TYPES[n](value) for n in names):
            return [f"{where}: {value!r:.60} is not of type {' or '.join(names)}"]
    if "const" in schema and value != schema["const"]:
        problems.append(f"{where}: {value!r:.60} is not {schema['const']!r}")
    if "enum" in schema and value not in schema["enum"]:
        problems.append(f"{where}: {value!r:.60} is not one of {schema['enum']!r}")
    if "anyOf" in schema and all(_check(value, s, root, where) for s in schema["anyOf"]):
        problems.append(f"{where}: {value!r:.60} matches none of anyOf")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for name in schema.get("required", []):
            if name not in value:
                problems.append(f"{where}: required field {name!r} is missing")
        extra = schema.get("additionalProperties", True)
        for name, item in value.items():
            if name in props:
                problems += _check(item, props[name], root, f"{where}.{name}")
            elif extra is False:
                problems.append(f"{where}: unexpected field {name!r}")
            else:
                problems += _check(item, extra, root, f"{where}.{name}")
    if isinstance(value, list):
        prefix = schema.get("prefixItems", [])
        if "minItems" in schema and len(value) < schema["minItems"]:
            problems.append(f"{where}: fewer than {schema['minItems']} items")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            problems.append(f"{where}: more than {schema['maxItems']} items")
        for i, item in enumerate(value):
            sub = prefix[i] if i < len(prefix) else schema.get("items", True)
            problems += _check(item, sub, root, f"{where}[{i}]")
    return problems
