"""The `sheetgpt` command: one click group, one subcommand per verb.

Each verb lives in its own module; this file only assembles them.
"""

from __future__ import annotations

import os

import click

from . import __version__

INTERNAL_ERROR = 3  # exit code of a bug in sheetgpt: 0 pass, 1 mismatch, 2 bad input, 3 internal error
INTERRUPTED = 130  # Ctrl+C, as shells report SIGINT


class _Group(click.Group):
    """Last resort: an exception no command turned into a user error is a bug in sheetgpt.

    It is printed as one line and exits with INTERNAL_ERROR, never 1 (which `check` uses for
    a mismatch) nor 2 (bad input); SHEETGPT_DEBUG=1 shows the traceback instead.
    """

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            raise SystemExit(INTERRUPTED) from None
        except MemoryError:
            click.echo("out of memory: the input is too large to process on this machine", err=True)
            raise SystemExit(INTERNAL_ERROR) from None
        except Exception as exc:
            if os.environ.get("SHEETGPT_DEBUG"):
                raise
            what = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
            click.echo(
                f"internal error: {what} (a bug in sheetgpt; please report it with the command you ran; "
                "SHEETGPT_DEBUG=1 shows the traceback)",
                err=True,
            )
            raise SystemExit(INTERNAL_ERROR) from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
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
    main.add_command(check_cmd, "grade")  # an exercise book's grader: the same command


_register()
