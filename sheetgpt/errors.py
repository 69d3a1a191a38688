"""User-facing errors: one line, exit code 2, never a traceback.

These are plain exceptions: the reader, the engines and the loaders raise them knowing nothing of
the command line. The CLI (``cli._Group``) is the one place that maps them to ``Error: <message>``
on stderr and their exit code.
"""


class SheetGPTError(Exception):
    """Bad input from the user (a file, a prompt, an option).

    The message says what is wrong and, where it helps, what to do about it; the CLI prints it as
    ``Error: <message>`` and exits with ``exit_code``.
    """

    exit_code = 2

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def format_message(self) -> str:
        return self.message

    def __str__(self) -> str:
        return self.message


class CheckpointError(SheetGPTError):
    """A model directory that cannot be loaded; the message names the file and tensor."""


class TokenizerError(SheetGPTError):
    """Tokenizer files that cannot be read, or text that cannot be tokenized."""


class WorkbookError(SheetGPTError):
    """A workbook that cannot be read or recomputed (not a mismatch: that is exit 1)."""
