"""`--model NAME`: a model from the local Hugging Face hub cache, never from the network.

The cache is the one ``transformers`` and ``huggingface-cli download`` fill: ``HF_HUB_CACHE``,
else ``HF_HOME/hub``, else ``$XDG_CACHE_HOME/huggingface/hub`` (``~/.cache/huggingface/hub``).
A repository ``org/name`` lives in ``models--org--name/``; its ``refs/main`` holds the commit
whose files are in ``snapshots/<commit>/``, each a symbolic link into ``blobs/``::

    models--openai-community--gpt2/
        refs/main                           "607a30d783dfa663caf39e06633721c8d4cfcd7e"
        snapshots/607a30d7.../config.json   -> ../../blobs/10c66461...
        blobs/10c66461...

The snapshot directory is then an ordinary model directory. An existing directory always wins
over a name, so ``--model gpt2`` still means ``./gpt2`` when that directory exists.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from pathlib import Path

from .errors import CheckpointError
from .safe_io import kind_of

# The hub moved the original GPT-2 family under organisations; a cache may hold either name.
ALIASES = {
    "gpt2": "openai-community/gpt2",
    "gpt2-medium": "openai-community/gpt2-medium",
    "gpt2-large": "openai-community/gpt2-large",
    "gpt2-xl": "openai-community/gpt2-xl",
    "distilgpt2": "distilbert/distilgpt2",
}
_REVERSE = {v: k for k, v in ALIASES.items()}
DOWNLOAD_FILES = '--include "*.json" "*.safetensors" "*.txt"'

_PART = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?"
_NAME = re.compile(rf"{_PART}(?:/{_PART})?")
_COMMIT = re.compile(r"[0-9a-fA-F]{40}")  # huggingface_hub writes the commit's sha1 into refs/<revision>
_REF_IS = "a ref is a regular file holding a commit id; the cache is damaged"
MAX_REF_BYTES = 128  # a ref is 40 characters (and perhaps a newline); a longer file is not a ref


def hub_cache_dir() -> Path:
    """Where the hub cache is, by the same environment variables huggingface_hub reads."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HUGGINGFACE_HUB_CACHE"):  # the older name, still honoured by huggingface_hub
        return Path(os.environ["HUGGINGFACE_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(xdg).expanduser() / "huggingface" / "hub"


def is_repo_name(text: str) -> bool:
    """'gpt2', 'openai-community/gpt2': a hub repository id (not '..', not an absolute path)."""
    return bool(_NAME.fullmatch(text)) and ".." not in text


def canonical(name: str) -> str:
    """The name to download: the organisation's form of an alias ('gpt2' -> 'openai-community/gpt2')."""
    return ALIASES.get(name, name)


def candidates(name: str) -> list[str]:
    """The repository ids a name may be cached under, the name itself first."""
    out = [name]
    for other in (ALIASES.get(name), _REVERSE.get(name)):
        if other and other not in out:
            out.append(other)
    return out


def repo_dir(cache: Path, repo: str) -> Path:
    return cache / ("models--" + repo.replace("/", "--"))


def snapshot(cache: Path, repo: str, revision: str = "main") -> Path | None:
    """The snapshot directory that refs/<revision> names, or None when the repository is not cached.

    A cached repository without refs/main (files copied by hand) is accepted when it holds exactly
    one snapshot.
    """
    d = repo_dir(cache, repo)
    if not d.is_dir():
        return None
    ref = d / "refs" / revision
    commit = read_ref(ref)
    if commit is not None:
        snap = d / "snapshots" / commit
        if not snap.is_dir():
            raise CheckpointError(
                f"{ref} names commit {commit}, but {snap} is missing; download {repo} again "
                f"(huggingface-cli download {repo} {DOWNLOAD_FILES})"
            )
        return snap
    snaps = sorted(p for p in (d / "snapshots").glob("*") if p.is_dir()) if (d / "snapshots").is_dir() else []
    if len(snaps) == 1:
        return snaps[0]
    if not snaps:
        return None
    raise CheckpointError(f"{d}: {len(snaps)} snapshots and no refs/{revision} to choose one; pass --model {snaps[-1]}")


def read_ref(ref: Path) -> str | None:
    """The commit a refs/<revision> file names, or None when there is none.

    Only a regular file (never followed through a symlink: the hub writes plain files) and at most
    MAX_REF_BYTES are read; what it holds is never repeated in a message, so a ref pointed at
    another file (/proc/self/environ, a key) shows nothing of it.
    """
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(ref, flags)
    except FileNotFoundError:
        return None
    except OSError as exc:
        why = "is a symbolic link" if exc.errno == errno.ELOOP else f"cannot be read ({exc.strerror or exc})"
        raise CheckpointError(f"{ref}: {why}; {_REF_IS}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise CheckpointError(f"{ref}: is {kind_of(st.st_mode)}; {_REF_IS}")
        data = os.read(fd, MAX_REF_BYTES + 1)
    except OSError as exc:
        raise CheckpointError(f"{ref}: cannot be read ({exc.strerror or exc}); the cache is damaged") from None
    finally:
        os.close(fd)
    commit = data.strip().decode("ascii", "replace")
    if len(data) > MAX_REF_BYTES or not _COMMIT.fullmatch(commit):
        raise CheckpointError(
            f"{ref}: does not hold a commit id (40 hexadecimal digits; this file has "
            f"{f'more than {MAX_REF_BYTES}' if len(data) > MAX_REF_BYTES else len(data)} bytes); the cache is damaged"
        )
    return commit


def not_cached(name: str, cache: Path) -> CheckpointError:
    repo = canonical(name)
    return CheckpointError(
        f"{name}: no such directory, and no model {repo} in the local Hugging Face cache ({cache}); "
        f"sheetgpt never downloads. Run: huggingface-cli download {repo} {DOWNLOAD_FILES} "
        f"-- then --model {name} works, or give the directory it prints "
        f"({repo_dir(cache, repo)}/snapshots/<commit>)"
    )


def resolve(model: str | os.PathLike) -> Path:
    """A --model value -> a model directory: the directory itself, or a hub name's cached snapshot.

    A path that exists (even a broken symlink) is returned as it is, for the loader to judge;
    so is a path that cannot be a repository id. A repository id that is not cached raises the
    one line that says how to download it.
    """
    path = Path(model)
    if path.exists() or path.is_symlink():
        return path
    text = os.fspath(model)
    if not isinstance(text, str) or not is_repo_name(text):
        return path
    cache = hub_cache_dir()
    for repo in candidates(text):
        snap = snapshot(cache, repo)
        if snap is not None:
            return snap
    raise not_cached(text, cache)


def cached_repo(path: Path) -> tuple[str, str] | None:
    """(repository id, commit) when path is a snapshot directory of a hub cache, else None."""
    snap = Path(path)
    if snap.parent.name != "snapshots" or not snap.parent.parent.name.startswith("models--"):
        return None
    return snap.parent.parent.name[len("models--") :].replace("--", "/"), snap.name


def model_name(path: Path) -> str:
    """A short name for a model directory (default output names): 'gpt2' for a cached snapshot."""
    hit = cached_repo(path)
    if hit:
        return hit[0].rsplit("/", 1)[-1]
    return Path(path).resolve().name or "model"
