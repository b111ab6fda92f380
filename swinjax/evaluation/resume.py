"""Saved evaluation rows: an interrupted run resumes, and classical-codec rows are measured once.

``python evaluate.py`` on Kodak with the perceptual metrics takes about 2.5 hours on 2 CPU cores;
an interruption (Ctrl-C, a closed Colab session, a bad image found late) should not cost the
images already done. After each image, its rows (every λ, decoder and codec setting), its notes
and whether MS-SSIM was defined for it are appended as one JSON line to a file named after a
fingerprint of everything that decides those rows except the image list: the model's and the
decoders' parameter files, the λ values, the codecs and their settings and library versions, the
perceptual metrics and their weights, ``--max-pixels``, the swinjax version and the source files
of the metric and codec code. A rerun with the same fingerprint takes the saved rows of every
image whose relative name and content digest match, and evaluates the rest; the file is removed
once the run has written its results.

The classical codecs' rows do not depend on the model: JPEG, WebP and AVIF at each setting on
one image give the same bytes and metrics in every evaluation, and they are most of a default
run's time (46 of 51 rate points per Kodak image). :class:`CodecRows` keeps them, one file per
image content and codec (name, setting, library versions), perceptual metrics, swinjax version
and metric code, so that the next evaluation of another model on the same images measures only
the model (timings in reused rows are those of the run that measured them).

Where: ``$SWINJAX_EVAL_CACHE`` if set (``off``: nothing is saved or reused), else
``$XDG_CACHE_HOME/swinjax/evaluations`` (``~/.cache/swinjax/evaluations``). A folder that
cannot be created is simply not used. ``evaluate.py --recompute`` takes none of the saved rows
(and saves its own, so that it can be resumed in turn).
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
from typing import Any

import numpy as np

from swinjax.atomic import write_atomic
from swinjax.compile_cache import user_cache_root

ENV = "SWINJAX_EVAL_CACHE"


def default_dir() -> pathlib.Path | None:
    """The folder of saved rows, or None when ``$SWINJAX_EVAL_CACHE`` is ``off``."""
    env = os.environ.get(ENV, "").strip()
    if env.lower() == "off":
        return None
    if env:
        return pathlib.Path(env).expanduser()
    return user_cache_root() / "evaluations"


def file_digest(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """sha256 (16 hex digits) of a file's bytes: an image, or an export's parameters."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()[:16]


def _plain(value: Any) -> Any:
    """Converts numpy scalars to Python numbers, for ``json.dumps``."""
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


class SavedRows:
    """The saved rows of one evaluation fingerprint: read them back, append an image's rows.

    Args:
        fingerprint: what decides the rows (a JSON-serializable dict, see the module docstring).
        resume: take rows saved by an earlier run of this fingerprint (False: start over).
        folder: where the file lives (default :func:`default_dir`; None there: do nothing).
    """

    def __init__(
        self,
        fingerprint: dict[str, Any],
        resume: bool = True,
        folder: pathlib.Path | None = None,
    ) -> None:
        blob = json.dumps(fingerprint, sort_keys=True, default=_plain)
        self.key = hashlib.sha256(blob.encode()).hexdigest()[:16]
        folder = default_dir() if folder is None else folder
        self.path: pathlib.Path | None = None
        self.saved: dict[tuple[str, str], dict[str, Any]] = {}
        if folder is None:
            return
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError:
            return  # a read-only home or a full disk: evaluate without saving
        self.path = folder / f"{self.key}.jsonl"
        if resume and self.path.is_file():
            self.saved = self._read(blob)
        else:
            self._start(blob)

    def _start(self, blob: str) -> None:
        assert self.path is not None
        try:
            self.path.write_text(json.dumps({"fingerprint": json.loads(blob)}) + "\n")
        except OSError:
            self.path = None

    def _read(self, blob: str) -> dict[tuple[str, str], dict[str, Any]]:
        """The saved images; a torn last line (the run died while writing it) is skipped."""
        assert self.path is not None
        lines = self.path.read_text().splitlines()
        try:
            head = json.loads(lines[0])["fingerprint"] if lines else None
        except (ValueError, KeyError, TypeError):
            head = None
        if head != json.loads(blob):  # another run's file under this name: start afresh
            self._start(blob)
            return {}
        out = {}
        for line in lines[1:]:
            try:
                entry = json.loads(line)
                out[(entry["image"], entry["digest"])] = entry
            except (ValueError, KeyError, TypeError):
                continue
        return out

    def get(self, image: str, digest: str) -> dict[str, Any] | None:
        """The saved entry of ``image`` with content ``digest``, or None.

        An entry holds ``records`` (the image's rows), ``notes`` and ``ms_ssim_defined``.
        """
        return self.saved.get((image, digest))

    def add(self, image: str, digest: str, entry: dict[str, Any]) -> None:
        """Appends one finished image's entry (flushed, so a kill loses at most this image)."""
        if self.path is None:
            return
        line = json.dumps({"image": image, "digest": digest, **entry}, default=_plain)
        try:
            with open(self.path, "a") as f:
                f.write(line + "\n")
                f.flush()
                os.fsync(f.fileno())
        except OSError:
            self.path = None

    def finish(self) -> None:
        """The run wrote its results: its saved rows are no longer needed."""
        if self.path is not None:
            self.path.unlink(missing_ok=True)


class CodecRows:
    """Classical-codec rows of earlier evaluations, per image content and codec.

    Args:
        context: what else decides a codec's rows (the perceptual metrics and their weights, the
            swinjax version, the digests of the code that measures a row), JSON-serializable.
        reuse: take rows saved by earlier runs (False: measure again, and save the new rows).
        folder: the evaluations folder (default :func:`default_dir`; None there: do nothing).
    """

    def __init__(
        self, context: dict[str, Any], reuse: bool = True, folder: pathlib.Path | None = None
    ) -> None:
        self.context = context
        self.reuse = reuse
        folder = default_dir() if folder is None else folder
        self.folder: pathlib.Path | None = None if folder is None else folder / "codec-rows"
        self.reused = 0

    def _file(self, image_digest: str, codec: list[Any]) -> pathlib.Path | None:
        if self.folder is None:
            return None
        blob = json.dumps(
            {"image": image_digest, "codec": codec, **self.context}, sort_keys=True, default=_plain
        )
        return self.folder / f"{hashlib.sha256(blob.encode()).hexdigest()[:16]}.json"

    def get(self, image_digest: str, codec: list[Any]) -> dict[str, dict[str, Any]]:
        """``{setting: row}`` saved for this image and codec, or ``{}``.

        ``codec`` is the codec's name, setting name and library description; nothing is
        returned when reuse is off.
        """
        path = self._file(image_digest, codec)
        if not self.reuse or path is None or not path.is_file():
            return {}
        try:
            rows = json.loads(path.read_text())["rows"]
        except (OSError, ValueError, KeyError, TypeError):
            return {}  # a damaged file is a miss
        return rows if isinstance(rows, dict) else {}

    def put(self, image_digest: str, codec: list[Any], rows: dict[str, dict[str, Any]]) -> None:
        """Saves ``{setting: row}`` for this image and codec (replacing what was saved)."""
        path = self._file(image_digest, codec)
        if path is None or not rows:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, json.dumps({"rows": rows}, default=_plain).encode())
        except OSError:
            self.folder = None  # a read-only or full disk: go on without saving
