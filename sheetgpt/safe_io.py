"""Reading untrusted input files with bounds, and writing outputs that leave nothing half-done.

Every reader here takes a size cap and refuses anything that is not a regular file (a FIFO,
/dev/zero or a directory could otherwise be read without end). JSON is scanned for its nesting
depth before ``json.loads`` sees it, so a deeply nested file is one clear line, never a
RecursionError. Errors are raised as the caller's SheetGPTError subclass, so messages keep
naming the model file or the workbook they are about.
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
import sys
import tempfile
from pathlib import Path

import numpy as np

from .errors import SheetGPTError

MAX_JSON_DEPTH = 64  # config.json, vocab.json and safetensors headers nest 1-4 levels
NAME_MAX = 255  # bytes in one path component on Linux, macOS and Windows file systems

# A JSON string, or the rest of the text after an unterminated one. The closing quote is optional,
# so the pattern matches wherever a quote starts and the scan stays linear on any input.
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"?', re.S)


# Characters that would break a one-line message (or a cell) apart: C0 and C1 controls, DEL, and the
# line and paragraph separators str.splitlines() also splits on.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def kind_of(mode: int) -> str:
    """What a non-regular file is, for messages: 'a directory', 'a FIFO', 'a device'..."""
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    return "not a regular file"


def require_regular_file(path: Path, what: str, error=SheetGPTError) -> os.stat_result:
    """stat(path) (following symlinks), refusing anything but a regular file with one line."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise error(f"{path_text(path)}: no such file") from None
    except OSError as exc:
        raise error(f"{path_text(path)}: cannot be read ({exc.strerror or exc})") from None
    if not stat.S_ISREG(st.st_mode):
        raise error(f"{path_text(path)}: is {kind_of(st.st_mode)}, expected {what}") from None
    return st


def read_capped(path: Path, limit: int, what: str, error=SheetGPTError) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes (never reads more than limit + 1)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # a FIFO must not block the open
    except FileNotFoundError:
        raise error(f"{path_text(path)}: missing; {what}") from None
    except IsADirectoryError:
        raise error(f"{path_text(path)}: is a directory, expected a file") from None
    except OSError as exc:
        raise error(f"{path_text(path)}: cannot be read ({exc.strerror or exc})") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise error(f"{path_text(path)}: is {kind_of(st.st_mode)}, expected a regular file")
    with os.fdopen(fd, "rb") as f:
        if st.st_size > limit:
            raise error(f"{path_text(path)}: {st.st_size:,} bytes; such a file may have at most {limit:,} bytes")
        data = f.read(limit + 1)
    if len(data) > limit:  # grew while we read it
        raise error(f"{path_text(path)}: grew while read; such a file may have at most {limit:,} bytes")
    return data


def json_depth(data: bytes) -> int:
    """The deepest nesting of arrays/objects in JSON text (strings skipped); linear time, no recursion."""
    skeleton = np.frombuffer(_JSON_STRING.sub(b"", data), dtype=np.uint8)
    if not skeleton.size:
        return 0
    steps = np.zeros(skeleton.size, dtype=np.int64)
    steps[(skeleton == ord("[")) | (skeleton == ord("{"))] = 1
    steps[(skeleton == ord("]")) | (skeleton == ord("}"))] = -1
    return int(np.cumsum(steps).max())


def loads_bounded(data: bytes, where: str, error=SheetGPTError, invalid: str = "not JSON", max_depth=MAX_JSON_DEPTH):
    """json.loads with its nesting depth checked first; bad UTF-8 or JSON is ``error``, one line
    (``where: <invalid> (what and where)``)."""
    if json_depth(data) > max_depth:
        raise error(f"{where}: JSON nested more than {max_depth} levels deep; refusing it")
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise error(f"{where}: not UTF-8 text (byte {exc.start}); {invalid}") from None
    except json.JSONDecodeError as exc:
        raise error(f"{where}: {invalid} ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None
    except ValueError:  # an integer past sys.get_int_max_str_digits() (4,300 digits by default)
        raise error(f"{where}: holds an integer of more than {_max_digits():,} digits; refusing it") from None
    except RecursionError:  # not reachable after the depth check; kept so that it can never be a traceback
        raise error(f"{where}: JSON nested too deeply; refusing it") from None


def _max_digits() -> int:
    return getattr(sys, "get_int_max_str_digits", lambda: 4300)() or 4300


def read_json(path: Path, limit: int, what: str, error=SheetGPTError):
    """A capped regular JSON file, parsed with bounded depth."""
    return loads_bounded(read_capped(path, limit, what, error), str(path), error)


# ---- writing -----------------------------------------------------------------------------


def path_text(path) -> str:
    """A path as safe text for a cell or a message: bytes that are not UTF-8 appear as \\xNN, and
    control characters (a newline in a file name...) as escapes too, so a message stays one line.

    Lossless for reading (the escapes name the exact bytes) and always encodable as UTF-8, so a
    model directory with a Latin-1 name can go into the Guide's provenance cell.
    """
    text = os.fsencode(path).decode("utf-8", "backslashreplace")
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def check_temp_name(path: Path, temp_name: str, error=SheetGPTError) -> None:
    """Refuse an output whose hidden temporary name (written beside it, then renamed) would pass
    NAME_MAX bytes, before any work is done."""
    if len(os.fsencode(temp_name)) > NAME_MAX:
        raise error(
            f"{path_text(path)}: the file name is {len(os.fsencode(path.name))} bytes; with the temporary "
            f"suffix it is written under first it would pass the {NAME_MAX}-byte limit; choose a shorter name"
        )


def write_error(path: Path, exc: BaseException) -> SheetGPTError:
    """One line for an OSError met while writing an output (full disk, read-only place...)."""
    inner = exc.args[0] if exc.args and isinstance(exc.args[0], OSError) else exc  # xlsxwriter's FileCreateError
    code = getattr(inner, "errno", None)
    why = getattr(inner, "strerror", None) or str(inner)
    hint = {
        errno.ENOSPC: "; free some space or write elsewhere with -o",
        errno.EDQUOT: "; free some space or write elsewhere with -o",
        errno.EROFS: "; write elsewhere with -o",
        errno.EACCES: "; write elsewhere with -o",
        errno.EPERM: "; write elsewhere with -o",
        errno.ENAMETOOLONG: "; choose a shorter name",
    }.get(code, "")
    return SheetGPTError(f"{path_text(path)}: cannot write it ({why}){hint}; nothing was written")


# ---- putting a finished file in place -----------------------------------------------------

# errno values of a file system that has no hard links (FAT, exFAT, some network and FUSE mounts)
_NO_HARD_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK, errno.ENOSYS, errno.EXDEV}


def exists_error(path: Path) -> SheetGPTError:
    return SheetGPTError(f"{path_text(path)} exists; pass --force to overwrite it")


def new_file_mode() -> int:
    """The mode ``open()`` gives a new file: 0o666 less the process's umask."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def destination(path: Path, force: bool, what: str = "file") -> os.stat_result | None:
    """lstat of an output's destination: None when it is free; refused unless ``force`` and a regular
    file (a symlink, FIFO, device or directory is never replaced, even with --force)."""
    try:
        st = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):  # a directory that is missing or a file: said where it is made
        return None
    except OSError as exc:
        raise SheetGPTError(f"{path_text(path)}: cannot use it as a {what} ({exc.strerror or exc})") from None
    if not stat.S_ISREG(st.st_mode):
        raise SheetGPTError(
            f"{path_text(path)}: is {kind_of(st.st_mode)}; a {what} is written only to a new or regular file"
        )
    if not force:
        raise exists_error(path)
    return st


def publish(tmp: Path, dest: Path, force: bool, what: str = "file") -> None:
    """Put the finished temporary file ``tmp`` (beside ``dest``) at ``dest``, atomically.

    Without ``force`` nothing at ``dest`` is ever replaced, even a file created there while ``tmp``
    was written: ``os.link`` fails when the name is taken, so of two writers to one new name
    exactly one succeeds. On a file system without hard links, the name is claimed with
    ``O_CREAT | O_EXCL`` and then renamed over (the claim is an empty file for that moment).
    With ``force`` an existing regular file is replaced (``os.replace``) and keeps its mode; a new
    file gets 0o666 less the umask, as ``open()`` gives. OSError (full disk...) is the caller's.
    """
    old = destination(dest, force, what)
    os.chmod(tmp, stat.S_IMODE(old.st_mode) if old is not None else new_file_mode())
    if force:
        os.replace(tmp, dest)
        return
    try:
        os.link(tmp, dest, follow_symlinks=False)
    except FileExistsError:
        raise exists_error(dest) from None
    except OSError as exc:
        if exc.errno not in _NO_HARD_LINKS:
            raise
        try:
            os.close(os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:
            raise exists_error(dest) from None
        os.replace(tmp, dest)
        return
    Path(tmp).unlink(missing_ok=True)


# ---- reports (--json, --junit) -------------------------------------------------------------


def check_report_path(out: Path, force: bool) -> None:
    """A --json/--junit destination must be new, or a regular file with --force; its directory must exist."""
    destination(out, force, "report")
    if not out.parent.is_dir():
        raise SheetGPTError(f"{path_text(out)}: no directory {path_text(out.parent)}; create it first")


def same_file(a: Path, b: Path) -> bool:
    """The same file (hard links too), or the same place once symlinks in the directories are resolved."""
    try:
        if os.path.samefile(a, b):
            return True
    except OSError:
        pass
    return os.path.realpath(a) == os.path.realpath(b)


def check_report_paths(book: Path, outputs: dict[str, Path | None], force: bool) -> None:
    """All refusals about --json/--junit, before any checking: kinds of file, --force, clashes."""
    given = {opt: out for opt, out in outputs.items() if out is not None}
    for opt, out in given.items():
        check_report_path(out, force)
        check_temp_name(out, f".{out.name}.XXXXXXXX.part")  # mkstemp's random part is 8 characters
        if same_file(out, book):
            raise SheetGPTError(f"{opt} {path_text(out)} is the book being checked; write the report elsewhere")
    if len(given) == 2 and same_file(*given.values()):
        raise SheetGPTError(f"--json and --junit both name {path_text(given['--json'])}; give two different files")


def write_report(path: Path, text: str, force: bool) -> None:
    """Write a report beside its destination under a fresh hidden name, then ``publish`` it (the
    destination is checked again there: a file, symlink or FIFO planted meanwhile is refused)."""
    check_report_path(path, force)
    fd, tmp = None, None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            fd = None
            f.write(text)
        publish(Path(tmp), path, force, "report")
        tmp = None
    except OSError as exc:
        raise write_error(path, exc) from None
    finally:
        if fd is not None:
            os.close(fd)
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
