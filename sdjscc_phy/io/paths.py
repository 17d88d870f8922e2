"""Checks on the paths jsccflow writes, made before any long work starts.

- Names that become file or folder names (recipe stages, sweep methods, cache keys) are single plain
  path components: they cannot climb out of the folder they are written into.
- An output file (``run --output``, ``table --output``, plot files, a metric sink's ``items_csv``) must
  be writable: its folder exists or can be made, it is not a folder or a special file, and an existing
  file is only replaced when the user says so (``--force``).
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from sdjscc_phy.core.yaml_lines import brief
from sdjscc_phy.errors import JsccflowError

_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]{0,99}$")


def name_problem(name) -> str | None:
    """Why ``name`` cannot be used as one file or folder name, or None (letters, digits, ``_ . + -``; not
    starting with a dot; at most 100 characters)."""
    if isinstance(name, str) and _NAME_RE.match(name):
        return None
    return (f"must be a plain name (letters, digits, _ . + -, not starting with '.' or '-', at most 100 "
            f"characters) because it names files; got {brief(name)}")


def is_file(path: str | os.PathLike) -> bool:
    """``Path.is_file`` that answers False for any path the system rejects (a name longer than 255 bytes,
    an embedded NUL) instead of raising."""
    try:
        return Path(path).is_file()
    except (OSError, ValueError):
        return False


def check_output_file(path: str | os.PathLike, what: str, *, force: bool = False,
                      force_hint: str = "pass --force") -> Path:
    """Raise JsccflowError (one line naming ``what`` and the path) unless ``path`` can be written as a
    regular file: not a folder or special file, in a folder that exists or can be made and is writable,
    and not an existing file unless ``force`` (``force_hint`` says how to give it). Nothing is created."""
    path = Path(path).expanduser()
    try:
        info = os.stat(path)
    except FileNotFoundError:
        info = None
    except OSError as err:
        raise JsccflowError(f"{what} '{path}': cannot be written: {err.strerror}") from None
    if info is not None:
        if stat.S_ISDIR(info.st_mode):
            raise JsccflowError(f"{what} '{path}' is a folder; give a file name")
        if not stat.S_ISREG(info.st_mode):
            raise JsccflowError(f"{what} '{path}' is not a regular file (a device, pipe or socket)")
        if not force:
            raise JsccflowError(f"{what} '{path}' already exists; {force_hint} to replace it")
    folder = path.parent
    while not folder.exists() and folder != folder.parent:  # the nearest folder that exists gets written
        folder = folder.parent
    if not folder.is_dir():
        raise JsccflowError(f"{what} '{path}': '{folder}' is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise JsccflowError(f"{what} '{path}': folder '{folder}' is not writable")
    return path


def check_output_folder(path: str | os.PathLike, what: str) -> Path:
    """Raise JsccflowError unless ``path`` is a folder (or can be made as one) that this user can write."""
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise JsccflowError(f"{what} '{path}' exists and is not a folder")
    folder = path
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise JsccflowError(f"{what} '{path}': folder '{folder}' is not writable")
    return path
