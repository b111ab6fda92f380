"""Image folders and files: where the data sets are, which files are images, which are usable.

Shared by training, validation, evaluation and the CLI's folder mode, so every entry point finds
the same files in the same order (sorted, hidden files skipped, symlinked folders followed) and
refuses the test sets (Kodak, McMaster) for training and validation.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pathlib
import re
from collections.abc import Iterable, Sequence

from swinjax import imageio

log = logging.getLogger(__name__)

TRAIN_SETS = ("bsds500", "sun-hays80", "wikipedia-photos", "train-hr")
VAL_SETS = ("div2k-valid-256crops", "urban100-256crops")
# Test sets: the published anchors are on Kodak; training or tuning on them invalidates every
# comparison. Matched against folder names, case-insensitively.
TEST_ONLY_SETS = ("kodak", "mcmaster")
_KODAK_FILE = re.compile(r"^kodim\d\d\.", re.IGNORECASE)
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp")
_CONFIG_KEYS = {"train": "data.train_dirs", "val": "data.val_dirs"}


class DataConfigError(ValueError):
    """The configured data cannot be used (missing folder, no images, a test set for training).

    The message says which config key to change, e.g. ``--config.data.train_dirs=/a,/b``.
    """


def default_shared_dir() -> pathlib.Path:
    """``../shared/datasets`` next to the repository root (``<repo>/../shared/datasets``).

    The checkout is laid out as ``<root>/main`` (this repository) beside ``<root>/shared``; the
    data sets live in ``<root>/shared/datasets`` and are never downloaded.

    Returns:
        The resolved folder.

    Raises:
        DataConfigError: the folder does not exist; the message names the config keys to set.
    """
    shared = pathlib.Path(__file__).resolve().parents[2] / "shared" / "datasets"
    if not shared.is_dir():
        raise DataConfigError(
            f"no data folder at {shared} (the default is ../shared/datasets next to the "
            "repository); point the config at your images instead: "
            "--config.data.train_dirs=/path/a,/path/b --config.data.val_dirs=/path/c"
        )
    return shared


def parse_dirs(value: str | Sequence[str] | None) -> tuple[str, ...]:
    """Normalises a config value to a tuple of folder names.

    Config files may hold a tuple/list of paths, and the command line gives a comma-separated
    string (``--config.data.train_dirs=/a,/b``); both are accepted. Empty entries are dropped.

    Args:
        value: ``None``, a comma-separated string, or a sequence of strings/paths.

    Returns:
        The folders, in the given order (possibly empty).
    """
    if value is None:
        return ()
    if isinstance(value, str | os.PathLike):
        items: Iterable[str] = os.fspath(value).split(",")
    else:
        items = (os.fspath(v) for v in value)
    return tuple(s.strip() for s in items if s.strip())


def resolve_dirs(value: str | Sequence[str] | None, *, purpose: str) -> tuple[str, ...]:
    """The folders for ``purpose`` ("train" or "val"): the configured ones, or the defaults.

    Args:
        value: ``config.data.train_dirs`` or ``config.data.val_dirs`` (string or sequence); empty
            means the default sets under :func:`default_shared_dir`.
        purpose: ``"train"`` or ``"val"``.

    Returns:
        Folder paths as strings.

    Raises:
        DataConfigError: the defaults are needed but ``../shared/datasets`` (or one of its sets)
            is missing.
    """
    if purpose not in _CONFIG_KEYS:
        raise ValueError(f"purpose must be 'train' or 'val', got {purpose!r}")
    dirs = parse_dirs(value)
    if dirs:
        return dirs
    shared = default_shared_dir()
    names = TRAIN_SETS if purpose == "train" else VAL_SETS
    return tuple(str(shared / name) for name in names)


def refuse_test_sets(paths: Iterable[str], purpose: str) -> None:
    """Raises :class:`DataConfigError` if a path is (in) a test set: never train on Kodak."""
    key = _CONFIG_KEYS.get(purpose, "data.train_dirs")
    for path in paths:
        parts = [part.lower() for part in pathlib.Path(os.path.abspath(path)).parts]
        hit = next((name for name in TEST_ONLY_SETS if name in parts), None)
        if hit is None and _KODAK_FILE.match(pathlib.Path(path).name):
            hit = "kodak"
        if hit is not None:
            raise DataConfigError(
                f"{path}: {hit} is a test set and is never used for {purpose}ing "
                f"(never train or tune on Kodak or McMaster); remove it from "
                f"{key} (e.g. --config.{key}=/path/a,/path/b)"
            )


def find_images(
    dirs: str | Sequence[str],
    *,
    purpose: str | None = None,
) -> list[str]:
    """All image files under ``dirs``, recursively, sorted: the same list on every host and run.

    Extensions (case-insensitive): .png .jpg .jpeg .tif .tiff .webp .bmp. Hidden files and
    folders (name starting with ".") are ignored, so editor/OS litter and half-written temporary
    files are never read. Symlinked folders are followed. A file reached through two of the given
    folders is listed once.

    Args:
        dirs: folders (sequence, or one comma-separated string as on the command line).
        purpose: ``"train"`` or ``"val"`` refuses Kodak/McMaster (test sets) and names the
            matching config key in errors; ``None`` (evaluation) accepts any folder.

    Returns:
        Sorted file paths (as given, joined with the relative path inside each folder).

    Raises:
        DataConfigError: no folder given, a folder is missing or is not a folder, a folder holds
            no images, or a test set is used for training/validation.
    """
    key = _CONFIG_KEYS.get(purpose or "")
    hint = f"; set --config.{key}=/path/a,/path/b" if key else ""
    folders = parse_dirs(dirs)
    if not folders:
        raise DataConfigError(f"no image folders given{hint}")
    if purpose is not None:
        refuse_test_sets(folders, purpose)
    found: dict[str, str] = {}
    for folder in folders:
        root = pathlib.Path(folder)
        if not root.exists():
            raise DataConfigError(f"image folder {folder} does not exist{hint}")
        if not root.is_dir():
            raise DataConfigError(f"{folder} is not a folder{hint}")
        count = 0
        for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            for name in filenames:
                if name.startswith(".") or not name.lower().endswith(IMAGE_EXTENSIONS):
                    continue
                path = os.path.join(dirpath, name)
                found.setdefault(os.path.realpath(path), path)
                count += 1
        if count == 0:
            raise DataConfigError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) under {folder}{hint}")
    files = sorted(found.values())
    if purpose is not None:
        refuse_test_sets(files, purpose)
    return files


@dataclasses.dataclass(frozen=True)
class FileCheck:
    """What a header check of a file list found: the usable files and what was left out, why.

    Attributes:
        usable: files whose header is readable and whose size fits (input order kept).
        too_small: files with a side shorter than the crop.
        unreadable: ``(path, reason)`` for files that are not usable images.
    """

    usable: tuple[str, ...]
    too_small: tuple[str, ...]
    unreadable: tuple[tuple[str, str], ...]

    @property
    def skipped(self) -> int:
        """Number of files left out."""
        return len(self.too_small) + len(self.unreadable)


def check_images(
    files: Sequence[str],
    *,
    min_size: int = 0,
    max_pixels: int | None = imageio.DEFAULT_MAX_PIXELS,
    what: str = "images",
) -> FileCheck:
    """Sorts ``files`` into usable / too small / unreadable from their headers (no decoding).

    Logs one warning with the counts and a few examples when anything is left out, so a
    misconfigured folder is visible without flooding the log.

    Args:
        files: image paths.
        min_size: shortest side needed (the crop); 0 accepts any size.
        max_pixels: decompression-bomb limit of :func:`swinjax.imageio.load_image`.
        what: name used in the warning (e.g. "training images").

    Returns:
        The :class:`FileCheck`.
    """
    usable: list[str] = []
    small: list[str] = []
    bad: list[tuple[str, str]] = []
    for path in files:
        try:
            height, width = imageio.image_size(path, max_pixels=max_pixels)
        except imageio.ImageError as err:
            bad.append((path, str(err)))
            continue
        if min(height, width) < min_size:
            small.append(path)
        else:
            usable.append(path)
    result = FileCheck(tuple(usable), tuple(small), tuple(bad))
    if result.skipped:
        examples = [f"{p} (smaller than {min_size} px)" for p in small[:3]]
        examples += [reason for _, reason in bad[:3]]
        log.warning(
            "%s: skipped %d of %d files (%d smaller than %d px, %d unreadable), e.g. %s",
            what,
            result.skipped,
            len(files),
            len(small),
            min_size,
            len(bad),
            "; ".join(examples),
        )
    return result
