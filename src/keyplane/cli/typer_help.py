"""Typer apps whose ``--help`` shows flags as flags, and whose refusals of a bad option
value are in Keyplane's words.

Typer's rich help (0.29) fills the type column of every option, flags included, so that
``--yes <bool>`` reads as if the flag took a value; its plain help leaves that column empty
for flags. A flag here gets an empty metavar, which the rich help shows in place of a type.

Typer 0.29 converts option values with pydantic and passes pydantic's sentence on
("Input should be greater than or equal to 1"); the rule is restated here with the same
words as the API's validation errors (``keyplane.kit.problems``).
Every ``keyplane`` command and group is made through ``KeyplaneTyper`` for this.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import typer
from pydantic import ValidationError
from typer._click.exceptions import BadParameter
from typer.core import TyperCommand, TyperGroup, TyperOption

from keyplane.kit.problems import describe_problem

_Function = TypeVar("_Function", bound=Callable[..., Any])


def _flags_take_no_value(params: Iterable[object]) -> None:
    for param in params:
        if isinstance(param, TyperOption) and param.is_flag and param.metavar is None:
            param.metavar = ""


def _in_keyplane_words(exc: BadParameter) -> None:
    cause = exc.__cause__
    if isinstance(cause, ValidationError) and cause.errors():
        exc.message = describe_problem(cause.errors()[0]) + "."


class _FlagsCommand(TyperCommand):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _flags_take_no_value(self.params)

    # ``Any``: the context is of Typer's private copy of click, typer._click.
    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        try:
            parsed: list[str] = super().parse_args(ctx, args)
        except BadParameter as exc:
            _in_keyplane_words(exc)
            raise
        return parsed

    # The help option is made on demand. (``Any``: the context is of Typer's private copy of
    # click, typer._click.)
    def get_help_option(self, ctx: Any) -> TyperOption | None:
        option = super().get_help_option(ctx)
        _flags_take_no_value([option])
        return option


class _FlagsGroup(TyperGroup):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _flags_take_no_value(self.params)

    def get_help_option(self, ctx: Any) -> TyperOption | None:
        option = super().get_help_option(ctx)
        _flags_take_no_value([option])
        return option


class KeyplaneTyper(typer.Typer):
    """``typer.Typer`` whose commands and groups show flags without a value placeholder."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("cls", _FlagsGroup)
        super().__init__(**kwargs)

    def command(self, name: str | None = None, **kwargs: Any) -> Callable[[_Function], _Function]:
        kwargs.setdefault("cls", _FlagsCommand)
        return super().command(name, **kwargs)
