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
from pathlib import Path

import numpy as np

from .errors import SheetGPTError

MAX_JSON_DEPTH = 64  # config.json, vocab.json and safetensors headers nest 1-4 levels
NAME_MAX = 255  # bytes in one path component on Linux, macOS and Windows file systems

# A JSON string, or the rest of the text after an unterminated one. The closing quote is optional,
# so the pattern matches wherever a quote starts and the scan stays linear on any input.
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"?', re.S)


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
        raise error(f"{path}: no such file") from None
    except OSError as exc:
        raise error(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if not stat.S_ISREG(st.st_mode):
        raise error(f"{path}: is {kind_of(st.st_mode)}, expected {what}") from None
    return st


def read_capped(path: Path, limit: int, what: str, error=SheetGPTError) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes (never reads more than limit + 1)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # a FIFO must not block the open
    except FileNotFoundError:
        raise error(f"{path}: missing; {what}") from None
    except IsADirectoryError:
        raise error(f"{path}: is a directory, expected a file") from None
    except OSError as exc:
        raise error(f"{path}: cannot be read ({exc.strerror or exc})") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise error(f"{path}: is {kind_of(st.st_mode)}, expected a regular file")
    with os.fdopen(fd, "rb") as f:
        if st.st_size > limit:
            raise error(f"{path}: {st.st_size:,} bytes; such a file may have at most {limit:,} bytes")
        data = f.read(limit + 1)
    if len(data) > limit:  # grew while we read it
        raise error(f"{path}: grew while read; such a file may have at most {limit:,} bytes")
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
    except RecursionError:  # not reachable after the depth check; kept so that it can never be a traceback
        raise error(f"{where}: JSON nested too deeply; refusing it") from None


def read_json(path: Path, limit: int, what: str, error=SheetGPTError):
    """A capped regular JSON file, parsed with bounded depth."""
    return loads_bounded(read_capped(path, limit, what, error), str(path), error)


# ---- writing -----------------------------------------------------------------------------


def path_text(path) -> str:
    """A path as safe text for a cell or a message: bytes that are not UTF-8 appear as \\xNN.

    Lossless for reading (the escapes name the exact bytes) and always encodable as UTF-8, so a
    model directory with a Latin-1 name can go into the Guide's provenance cell.
    """
    return os.fsencode(path).decode("utf-8", "backslashreplace")


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
