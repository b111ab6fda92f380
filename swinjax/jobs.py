"""Input/output pairs of a compress or decompress run: one file, or a folder tree mirrored.

``python -m swinjax compress|decompress`` (docs/compress.md) plans its work
here before any model is loaded, so that a folder run never stops half-way over a path
problem: every output is checked first, an output that is one of the inputs is refused
whatever the flags, and the folders are made. Errors are :class:`JobError` (a ``ValueError``)
with a one-line message.
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable


class JobError(ValueError):
    """A path problem of a run (missing input, existing output, clashing names)."""


def check_output(path: str | pathlib.Path, force: bool) -> pathlib.Path:
    """Refuses a single output that exists (without ``force``), is a folder or has no folder."""
    out = pathlib.Path(path)
    if out.exists() and not force:
        raise JobError(f"{out} exists; use --force to overwrite it")
    if out.is_dir():
        raise JobError(f"{out} is a folder; give a file name (or a folder as input)")
    if not out.parent.is_dir():
        raise JobError(f"output folder {out.parent} does not exist")
    return out


def plan(
    src: str, dst: str, find: Callable[[pathlib.Path], list[pathlib.Path]], suffix: str
) -> tuple[list[tuple[pathlib.Path, pathlib.Path]], bool]:
    """``[(input, output)]`` and whether the input was a folder (whose tree is mirrored)."""
    inp, out = pathlib.Path(src), pathlib.Path(dst)
    if inp.is_dir():
        if out.exists() and not out.is_dir():
            raise JobError(f"{inp} is a folder, so the output must be a folder too: {out}")
        files = find(inp)
        if not files:
            what = "image files" if suffix == ".swj" else "*.swj files"
            raise JobError(f"{inp}: no input files found (looked for {what})")
        pairs = [(f, out / f.relative_to(inp).with_suffix(suffix)) for f in files]
        seen: dict[pathlib.Path, pathlib.Path] = {}
        for f, o in pairs:
            if o in seen:
                raise JobError(f"{seen[o]} and {f} would both be written to {o}")
            seen[o] = f
        return pairs, True
    if not inp.exists():
        raise JobError(f"{inp}: no such file or folder")
    if out.is_dir():
        out = out / inp.with_suffix(suffix).name
    return [(inp, out)], False


def find_images(folder: pathlib.Path) -> list[pathlib.Path]:
    """The images under ``folder`` (the training loader's rules); ``[]`` when there are none."""
    from swinjax.image_files import DataConfigError, find_images

    try:
        return [pathlib.Path(f) for f in find_images([str(folder)])]
    except DataConfigError:
        return []


def find_swj(folder: pathlib.Path) -> list[pathlib.Path]:
    """The ``*.swj`` files under ``folder``, hidden files and folders (partial writes) left out."""
    return sorted(
        p
        for p in folder.rglob("*.swj")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def _file_id(path: pathlib.Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino


def prepare_outputs(pairs: list[tuple[pathlib.Path, pathlib.Path]], force: bool) -> None:
    """Refuses existing outputs before any work (no half-done folder runs) and makes folders.

    An output that is one of the inputs (the same file, under any name) is refused even with
    ``--force``: writing it would destroy the user's original.
    """
    inputs = {_file_id(i): i for i, _ in pairs}
    inputs.pop(None, None)
    for _, o in pairs:
        clash = inputs.get(_file_id(o)) if o.exists() else None
        if clash is not None:
            raise JobError(
                f"{o} is an input ({clash}); refusing to write over it, even with --force"
            )
    existing = [o for _, o in pairs if o.exists()]
    if existing and not force:
        more = f" and {len(existing) - 1} more" if len(existing) > 1 else ""
        raise JobError(f"{existing[0]}{more} exist(s); use --force to overwrite")
    for _, o in pairs:
        if o.is_dir():
            raise JobError(f"{o} is a folder; cannot write a file there")
    for _, o in pairs:
        o.parent.mkdir(parents=True, exist_ok=True)
