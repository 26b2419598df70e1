"""CLI options bound once to the fields of a pydantic config (the sampling settings of every command).

``@config_options(SamplingRunConfig, n=6)`` adds one option per field to a command (flag from
the field name, help from its description, default from the field or the override) and passes
the command ``config``: a function returning the validated config (keyword arguments override
what was given on the command line). A value the config refuses is a one-line error naming the
option. So ``eval``, ``rm data`` and later sampling commands cannot drift apart.
"""

from __future__ import annotations

import functools
import inspect
import types
import typing
from collections.abc import Callable
from typing import Annotated, Any

import typer
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from mathforge.errors import MathforgeError

ConfigFactory = Callable[..., Any]


def _extra(info: FieldInfo) -> dict[str, Any]:
    """A field's CLI hints: ``flag`` (its option name), ``short`` (a one-letter alias such as
    ``-o``) and ``cli`` (False: not an option)."""
    return info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}


def cli_fields(model: type[BaseModel]) -> dict[str, FieldInfo]:
    """The fields of ``model`` that are CLI options (all but those marked ``{"cli": False}``)."""
    return {name: info for name, info in model.model_fields.items() if _extra(info).get("cli", True)}


def flag(name: str, info: FieldInfo) -> str:
    """The option of field ``name``: its ``flag`` hint, else ``--name-with-dashes``."""
    return str(_extra(info).get("flag", "--" + name.replace("_", "-")))


def _unwrap_optional(annotation: Any) -> Any:
    """``X | None`` -> ``X``; any other annotation as it is."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        inner = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if len(inner) == 1:
            return inner[0]
    return annotation


def _is_list(annotation: Any) -> bool:
    """A list field (optional or not): given on the command line as comma-separated values."""
    return typing.get_origin(_unwrap_optional(annotation)) is list


def _cli_type(annotation: Any) -> Any:
    """What typer parses for a field: Literal values and lists are strings the config validates."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        inner = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        return _cli_type(inner[0]) | None
    if typing.get_origin(annotation) is typing.Literal or _is_list(annotation):
        return str
    return annotation


def _option(name: str, info: FieldInfo, overrides: dict[str, Any]) -> inspect.Parameter:
    if name in overrides:
        default = overrides[name]
    elif info.is_required():
        default = None
    else:
        default = info.get_default(call_default_factory=True)
    if isinstance(default, list):
        default = ",".join(default) or None
    cli_type = _cli_type(info.annotation)
    if default is None and typing.get_origin(cli_type) is not types.UnionType:
        cli_type = cli_type | None
    names = [flag(name, info)]
    if _unwrap_optional(info.annotation) is bool:
        names = [f"{names[0]}/--no-{names[0].removeprefix('--')}"]  # a switch both ways
    if "short" in _extra(info):
        names.append(str(_extra(info)["short"]))
    option = typer.Option(*names, help=info.description or "")
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=Annotated[cli_type, option]
    )


def build_config(model: type[BaseModel], given: dict[str, Any], /, **overrides: Any) -> Any:
    """``model`` from command-line values (None: not given) and overrides; errors name the option."""
    fields = cli_fields(model)
    data: dict[str, Any] = {}
    for name, value in given.items():
        if value is None:
            continue
        if _is_list(fields[name].annotation):
            value = list(dict.fromkeys(part.strip() for part in str(value).split(",") if part.strip()))
        data[name] = value
    data.update(overrides)
    try:
        return model(**data)
    except ValidationError as exc:
        error = exc.errors()[0]
        name = str(error["loc"][0]) if error["loc"] else ""
        where = flag(name, fields[name]) if name in fields else name
        raise MathforgeError(f"{where}: {error['msg']}") from None


def config_options(
    model: type[BaseModel], /, **overrides: Any
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate a command with a ``config: ConfigFactory`` parameter: typer sees one option per
    field of ``model`` instead. ``overrides`` change a field's default for this command."""
    fields = cli_fields(model)

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(command, eval_str=True)
        own = [parameter for parameter in signature.parameters.values() if parameter.name != "config"]
        added = [_option(name, info, overrides) for name, info in fields.items()]

        @functools.wraps(command)
        def wrapper(**kwargs: Any) -> Any:
            given = {name: kwargs.pop(name) for name in fields}
            return command(**kwargs, config=functools.partial(build_config, model, given))

        parameters = own + added
        wrapper.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {parameter.name: parameter.annotation for parameter in parameters}
        return wrapper

    return decorate
