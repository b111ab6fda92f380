"""Atomic file writes: the one helper behind every file swinjax writes for a user.

Compressed files, decoded PNGs, result JSON, RD plots and exported models are first written to a
hidden temporary file beside the destination (same file system), flushed to disk and then renamed
into place, so a crash or a full disk never leaves a half-written file under the final name.

A process killed outright (``kill -9``, the out-of-memory killer, a power cut) cannot remove its
temporary file. Such files have a recognisable name, ``.<name>.<8 random characters>.tmp``, and
the next write to the same destination removes the ones that have not been touched for
:data:`STALE_AFTER_S` seconds: old enough that no live writer can still own them (a writer
touches its file with every block it writes), recent enough that litter does not pile up.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import re
import tempfile
import time
from collections.abc import Callable
from typing import BinaryIO

# A temporary file older than this (by modification time) belongs to a dead writer.
STALE_AFTER_S = 15 * 60

Writer = Callable[[BinaryIO], None]


def temp_pattern(dest: pathlib.Path) -> re.Pattern[str]:
    """The names :func:`write_atomic` gives the temporary files of ``dest`` (and nothing else)."""
    return re.compile(rf"\.{re.escape(dest.name)}\.[A-Za-z0-9_]{{8}}\.tmp")


def remove_stale_temps(
    dest: pathlib.Path, older_than_s: float = STALE_AFTER_S
) -> list[pathlib.Path]:
    """Removes the temporary files of ``dest`` left by writers that died.

    Only names matching :func:`temp_pattern` and untouched for ``older_than_s`` seconds are
    removed; errors (a file already gone, no permission) are ignored, as the removal is only
    housekeeping.

    Returns:
        The files removed.
    """
    pattern = temp_pattern(dest)
    now = time.time()
    removed = []
    try:
        names = [n for n in os.listdir(dest.parent) if pattern.fullmatch(n)]
    except OSError:
        return removed
    for name in names:
        path = dest.parent / name
        with contextlib.suppress(OSError):
            if now - path.stat().st_mtime > older_than_s:
                path.unlink()
                removed.append(path)
    return removed


def write_atomic(
    path: str | os.PathLike, data: bytes | Writer, *, overwrite: bool = True
) -> pathlib.Path:
    """Writes ``data`` to ``path`` through a temporary file renamed into place.

    Args:
        path: the destination; its folder must exist.
        data: the bytes, or a function that writes the file's content to the binary stream it is
            given (e.g. ``lambda f: image.save(f, format="PNG")``), so large outputs are not
            built in memory first.
        overwrite: replace an existing file. Without it, the final step is a hard link, which
            fails if ``path`` appeared in the meantime (another process), so an existing file is
            never replaced; on file systems without hard links an existence check is used.

    Returns:
        The destination path.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is false.
        FileNotFoundError: the destination folder does not exist.
        OSError: the file cannot be written (full disk, read-only file system, no permission);
            nothing is left under the final name nor as a temporary file.
    """
    dest = pathlib.Path(path)
    if not dest.parent.is_dir():
        raise FileNotFoundError(f"{dest}: folder {dest.parent} does not exist")
    if not overwrite and dest.exists():
        raise FileExistsError(f"{dest} already exists; not overwritten")
    remove_stale_temps(dest)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp creates the file with mode 0600: give it what any new file would get.
        os.chmod(tmp, 0o666 & ~_umask())
        if overwrite:
            os.replace(tmp, dest)
        else:
            _link_new(tmp, dest)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    return dest


def _link_new(tmp: str, dest: pathlib.Path) -> None:
    """Moves ``tmp`` to ``dest`` unless ``dest`` exists (checked atomically where possible)."""
    try:
        os.link(tmp, dest)
    except FileExistsError:
        raise FileExistsError(f"{dest} already exists; not overwritten") from None
    except OSError:  # no hard links here (some network/FUSE file systems)
        if dest.exists():
            raise FileExistsError(f"{dest} already exists; not overwritten") from None
        os.replace(tmp, dest)


def _umask() -> int:
    """The process umask, read without changing it (``os.umask`` would race with other threads).

    Linux exposes it in ``/proc/self/status``; elsewhere the common default 022 is assumed.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022
