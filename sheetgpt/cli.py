"""The `sheetgpt` command: one click group, one subcommand per verb.

Each verb lives in its own module; this file only assembles them, and is the one place that turns
what the package raises into what a shell sees: a user error (``errors.SheetGPTError``, which
knows nothing of click) is ``Error: <message>`` on stderr and exit 2; an interruption by SIGINT,
SIGTERM or SIGHUP runs the same cleanup and exits 128 + the signal's number; a closed standard
output (``sheetgpt check book -v | head -3``) exits quietly with 141, as a program killed by
SIGPIPE does; anything else is a bug (exit 3).
"""

from __future__ import annotations

import signal
import sys
import threading


def _interrupted_while_starting(_signum, _frame):
    """Ctrl+C while the modules (click, numpy...) are imported: nothing to clean up yet, no traceback."""
    print("Interrupted.", file=sys.stderr)
    raise SystemExit(130)


_STARTING = signal.getsignal(signal.SIGINT) is signal.default_int_handler
if _STARTING:
    signal.signal(signal.SIGINT, _interrupted_while_starting)

import contextlib  # noqa: E402
import os  # noqa: E402

import click  # noqa: E402

from . import __version__  # noqa: E402
from .errors import SheetGPTError  # noqa: E402

INTERNAL_ERROR = 3  # exit code of a bug in sheetgpt: 0 pass, 1 mismatch, 2 bad input, 3 internal error
INTERRUPTED = 130  # Ctrl+C, as shells report SIGINT (128 + 2); SIGTERM gives 143, SIGHUP 129
PIPE_CLOSED = 128 + 13  # 141: what a shell reports for a program killed by SIGPIPE (`cmd | head`)
# Signals handled as Ctrl+C is: the temporary files are removed, child processes killed, then exit 128 + n.
TERMINATING = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised where the program is, so that it unwinds as a Ctrl+C does."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


_OWNER = [0]  # the pid that installed the handlers: forked workers (deflate, reader pools) inherit them


def _raise_interrupted(signum, _frame):
    if os.getpid() != _OWNER[0]:  # a forked worker (Pool.terminate sends SIGTERM): die as it always did
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    for s in TERMINATING:  # a second signal must not cut the cleanup short
        signal.signal(s, signal.SIG_IGN)
    raise Interrupted(signum)


def _default_signals_in_child() -> None:
    """Right after a fork (the deflate and reader pools, from any thread): the child dies of SIGTERM and
    SIGHUP at once, as it did before the CLI's handler. A handler that first has to run Python code
    can miss its moment: a worker forked while Pool.terminate() ran was left waiting on the pool's queue."""
    for s in TERMINATING:
        try:
            if signal.getsignal(s) is _raise_interrupted:
                signal.signal(s, signal.SIG_DFL)
        except ValueError:
            pass


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_default_signals_in_child)


@contextlib.contextmanager
def _signals_as_interrupts():
    """SIGTERM and SIGHUP raise Interrupted while a command runs (only where their action is the
    default: under nohup, SIGHUP stays ignored)."""
    saved = {}
    _OWNER[0] = os.getpid()
    try:
        for s in TERMINATING:
            if signal.getsignal(s) == signal.SIG_DFL:
                saved[s] = signal.signal(s, _raise_interrupted)
    except ValueError:  # not the main thread: leave signals alone
        pass
    hook, sys.unraisablehook = sys.unraisablehook, _deliver_again(sys.unraisablehook)
    try:
        yield
    finally:
        sys.unraisablehook = hook
        for s, old in saved.items():
            signal.signal(s, old)


def _deliver_again(default):
    """An interrupt raised while Python ran a weakref callback or a __del__ is "ignored" there (printed
    with a traceback, and the command goes on): send the same signal again instead, so that it is
    raised where the program is, as any other interrupt."""

    def hook(args):
        exc = args.exc_value
        if isinstance(exc, KeyboardInterrupt) and os.getpid() == _OWNER[0]:
            signum = getattr(exc, "signum", signal.SIGINT)
            if signum != signal.SIGINT:
                signal.signal(signum, _raise_interrupted)
            # from another thread, a moment later: sent from here, it would be raised inside this hook
            threading.Timer(0.01, os.kill, (os.getpid(), signum)).start()
            return
        default(args)

    return hook


def _flush_stdout(quiet: bool = False) -> None:
    """Flush standard output now, inside the handlers below, rather than at interpreter exit
    (where a closed pipe would print "Exception ignored" and exit 120). ``quiet``: another
    failure is on its way out, and a closed pipe must not replace it."""
    try:
        if sys.stdout is not None:
            sys.stdout.flush()
    except BrokenPipeError:
        _silence_stdout()
        if not quiet:
            raise


def _silence_stdout() -> None:
    """After EPIPE: point file descriptor 1 at /dev/null, so that the interpreter's last flush is quiet."""
    with contextlib.suppress(OSError, ValueError, AttributeError):  # io.UnsupportedOperation is both
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


class _Group(click.Group):
    """The edge between the package and the shell: exit codes and the one line each failure prints.

    An exception no command turned into a user error is a bug in sheetgpt: one line and exit
    INTERNAL_ERROR, never 1 (which `check` uses for a mismatch) nor 2 (bad input);
    SHEETGPT_DEBUG=1 shows the traceback instead.
    """

    def make_context(self, *args, **kwargs):
        try:  # `sheetgpt --help | head -1`: the group's own options print before invoke
            return super().make_context(*args, **kwargs)
        except BrokenPipeError:
            _silence_stdout()
            raise SystemExit(PIPE_CLOSED) from None

    def invoke(self, ctx):
        try:
            with _signals_as_interrupts():
                try:
                    result = super().invoke(ctx)
                except (SystemExit, click.exceptions.Exit):
                    _flush_stdout()
                    raise
                except BaseException:
                    _flush_stdout(quiet=True)
                    raise
                _flush_stdout()
                return result
        except SheetGPTError as exc:
            click.echo(f"Error: {exc.message}", err=True)
            raise SystemExit(exc.exit_code) from None
        except BrokenPipeError:  # the reader of standard output went away (`| head`): not an error
            _silence_stdout()
            raise SystemExit(PIPE_CLOSED) from None
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except KeyboardInterrupt as exc:
            signum = getattr(exc, "signum", signal.SIGINT)
            name = signal.Signals(signum).name if signum != signal.SIGINT else ""
            click.echo(f"Interrupted ({name})." if name else "Interrupted.", err=True)
            raise SystemExit(128 + signum) from None
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
    main.add_command(_grade(check_cmd))  # an exercise book's grader: the same command, its own help


GRADE_HELP = (
    "Grade an exercise book (built with --exercise): per exercise, pass, FAIL with the first wrong cell "
    "and a diagnosis, or not done yet; every other stage is proven as check proves it (the same command)."
)


def _grade(check_cmd: click.Command) -> click.Command:
    """`sheetgpt grade`: check's options and callback, with help that says what it grades."""
    import inspect

    return click.Command(
        "grade",
        params=check_cmd.params,
        callback=check_cmd.callback,
        help=GRADE_HELP + "\n\n" + inspect.cleandoc(check_cmd.help or ""),
        short_help="Grade an exercise book: per exercise, pass, FAIL or not done yet.",
        context_settings=check_cmd.context_settings,
    )


_register()
if _STARTING:  # from here on Ctrl+C is a KeyboardInterrupt, which _Group turns into a cleanup and exit 130
    signal.signal(signal.SIGINT, signal.default_int_handler)
