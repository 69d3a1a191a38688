"""User-facing errors: one line, exit code 2, never a traceback."""

import click


class SheetGPTError(click.ClickException):
    """Bad input from the user (a file, a prompt, an option).

    click prints it as ``Error: <message>`` and exits with code 2. The message says
    what is wrong and, where it helps, what to do about it.
    """

    exit_code = 2


class CheckpointError(SheetGPTError):
    """A model directory that cannot be loaded; the message names the file and tensor."""


class TokenizerError(SheetGPTError):
    """Tokenizer files that cannot be read, or text that cannot be tokenized."""


class WorkbookError(SheetGPTError):
    """A workbook that cannot be read or recomputed (not a mismatch: that is exit 1)."""
