"""The training commands take every field of their config as an option, so they cannot drift.

``mathforge sft`` and ``mathforge grpo`` bind their options from ``SFTConfig`` and
``GRPORunConfig`` (``mathforge.cli.options``): each field is set here through its flag on a parsed
command line, and every flag the commands ever had still parses.
"""

from __future__ import annotations

import types
import typing
from typing import Any

import click
import pytest
import typer
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from mathforge.cli import app
from mathforge.cli.options import build_config, cli_fields, flag
from mathforge.errors import MathforgeError
from mathforge.train.grpo import GRPORunConfig
from mathforge.train.sft import SFTConfig

COMMANDS: dict[str, tuple[type[BaseModel], list[str]]] = {
    "sft": (SFTConfig, ["--data", "records.jsonl", "--out", "run"]),
    "grpo": (GRPORunConfig, ["--problems", "problems.jsonl", "--out", "run"]),
}

# The options of both commands before they were bound from their configs: every one still works.
EARLIER_FLAGS = {
    "sft": "--data --out -o --base --eval-data --eval-examples --epochs --max-steps --lr --warmup "
    "--weight-decay --batch-size --grad-accum --max-length --packing --no-packing --bf16 --no-bf16 "
    "--gradient-checkpointing --no-gradient-checkpointing --logging-steps --save-steps --eval-steps "
    "--save-total-limit --seed --deepspeed --data-dir --overwrite",
    "grpo": "--problems --out -o --model --mode --rm --group --problems-per-step --steps --lr --beta "
    "--epsilon --loss --temperature --top-p --max-new-tokens --max-calls --engine --split --limit "
    "--data-dir --field-map --gen-n --gen-level --gen-seed --gen-families --bf16 --no-bf16 "
    "--gradient-checkpointing --no-gradient-checkpointing --save-steps --seed --overwrite",
}


def _command(name: str) -> click.Command:
    group: Any = typer.main.get_command(app)
    return group.commands[name]


def _settings(name: str, *args: str) -> Any:
    """The config ``mathforge NAME ARGS`` runs with (parsed as the command parses it, not run)."""
    model, required = COMMANDS[name]
    context = _command(name).make_context(name, [*required, *args])
    return build_config(model, {field: context.params[field] for field in cli_fields(model)})


def _other_value(name: str, info: FieldInfo) -> tuple[list[str], Any]:
    """Command-line arguments that set field ``name`` to a valid value other than its default."""
    option = flag(name, info)
    annotation = info.annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        annotation = next(arg for arg in typing.get_args(annotation) if arg is not type(None))
    default = info.get_default(call_default_factory=True)
    if annotation is bool:
        return ([f"--no-{option[2:]}"], False) if default else ([option], True)
    if typing.get_origin(annotation) is typing.Literal:
        choice = next(choice for choice in typing.get_args(annotation) if choice != default)
        return [option, choice], choice
    if typing.get_origin(annotation) is list:
        return [option, "first.jsonl, second.jsonl,first.jsonl"], ["first.jsonl", "second.jsonl"]
    if annotation is int:
        return [option, str((default or 0) + 1)], (default or 0) + 1
    if annotation is float:
        value = default / 2 if default else 0.5
        return [option, str(value)], value
    assert annotation is str, f"{name}: no test value for {annotation}"
    return [option, f"{name}-value"], f"{name}-value"


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_config_field_is_set_by_its_option(command: str) -> None:
    model, _ = COMMANDS[command]
    assert set(cli_fields(model)) == set(model.model_fields)  # no field is left off the command line
    for name, info in model.model_fields.items():
        args, expected = _other_value(name, info)
        assert expected != info.get_default(call_default_factory=True), name
        assert getattr(_settings(command, *args), name) == expected, f"{command} {' '.join(args)}"


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_earlier_flag_still_parses(command: str) -> None:
    options = {name for param in _command(command).params for name in [*param.opts, *param.secondary_opts]}
    missing = set(EARLIER_FLAGS[command].split()) - options
    assert not missing, f"{command} lost {sorted(missing)}"


def test_defaults_are_the_configs_and_the_embedded_model() -> None:
    from mathforge.models import DEFAULT_MODEL

    sft = _settings("sft", "-o", "elsewhere")
    assert sft == SFTConfig(data=["records.jsonl"], base=DEFAULT_MODEL, out="elsewhere")
    grpo = _settings("grpo")
    assert grpo == GRPORunConfig(model=DEFAULT_MODEL, problems="problems.jsonl", out="run")
    assert grpo.split == "train"  # GRPO reads the training split; sampling commands the test split


@pytest.mark.parametrize(
    ("command", "args", "message"),
    [
        ("sft", ["--data", " , "], "--data: List should have at least 1 item after validation, not 0"),
        ("sft", ["--lr", "0"], "--lr: Input should be greater than 0"),
        ("grpo", ["--group", "1"], "--group: Input should be greater than or equal to 2"),
        ("grpo", ["--loss", "ppo"], "--loss: Input should be 'grpo', 'dapo' or 'dr_grpo'"),
        ("grpo", ["--gen-level", "4"], "--gen-level: Input should be less than or equal to 3"),
    ],
)
def test_bad_values_name_their_option(command: str, args: list[str], message: str) -> None:
    with pytest.raises(MathforgeError) as caught:
        _settings(command, *args)
    assert str(caught.value) == message


def test_a_missing_required_setting_names_its_option() -> None:
    context = _command("grpo").make_context("grpo", ["--out", "run"])
    with pytest.raises(MathforgeError) as caught:
        build_config(GRPORunConfig, {field: context.params[field] for field in cli_fields(GRPORunConfig)})
    assert str(caught.value) == "--problems: Field required"
