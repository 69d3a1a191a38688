"""The `sheetgpt` command: one click group, one subcommand per verb.

Each verb lives in its own module; this file only assembles them.
"""

from __future__ import annotations

import click

from . import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.version_option(__version__, prog_name="sheetgpt")
def main() -> None:
    """Turn a GPT-2 family model into a real spreadsheet and prove it correct."""


def _register() -> None:
    """Each verb's module adds one line here."""
    from .cli_book import build_cmd, check_cmd
    from .cli_predict import predict_cmd
    from .cli_tokenize import bpe_learn_cmd, tokenize_cmd

    commands = [build_cmd, check_cmd, tokenize_cmd, bpe_learn_cmd, predict_cmd]
    for cmd in commands:
        main.add_command(cmd)


_register()
