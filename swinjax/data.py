"""Input pipelines (grain) over folders of images: training crops and quick validation batches.

Training (:func:`train_dataset`) follows the papers' recipe: random 256x256 crops with random
flips and 90-degree rotations. Three properties matter more than speed and are tested:

* **The global batch and the data order do not depend on the number of processes.** The pipeline
  describes one global, seeded, infinite sequence of examples (shuffle per epoch, then a random
  crop seeded by the example's global position), groups it into global batches, and process ``p``
  of ``P`` keeps rows ``[p*b, (p+1)*b)`` of every global batch (``b = global_batch // P``). Every
  operation before the split is index-based (grain ``MapDataset``), so each process decodes only
  its own rows and the concatenation of the processes' batches is the single-process batch.
  (grain's record sharding, ``ShardOptions``/``ShardByJaxProcess``, interleaves examples over
  processes instead, which makes the composition of a global batch depend on the process count.)
* **Checkpointable.** The returned grain iterator has ``get_state()`` / ``set_state()``; resuming
  from a saved state yields exactly the batches an uninterrupted run would have produced (also
  with worker processes, since the split into workers happens after all index-based steps).
* **Never a crash on a bad file.** Files are checked from their headers when the pipeline is built
  (unreadable, not an image, too small for the crop: skipped and counted in one warning). A file
  that passes the header check but fails to decode later (e.g. truncated data) is replaced,
  deterministically, by the next usable file in the list, with a warning; batch shapes never
  change.

Speed: every example is a small crop of a whole decoded file (PNG/JPEG of up to ~1 MP), so the
decoded images are kept in memory (``cache_mb``, per process or per grain worker, least recently
used out first). All default training images decoded take about 0.54 GB, so after the first epoch
nothing is decoded again (benchmarks/data_pipeline.py, 2 CPU cores, batches of 8: 0.047 ->
0.003 s per batch at 128 px, 0.054 -> 0.006 s at 256 px). The cache never changes a batch: with
or without it, and after a resume, the same seed gives the same batches.

Default data (docs/training.md): training on ``../shared/datasets/{bsds500,sun-hays80,
wikipedia-photos,train-hr}`` (627 files; ``train-hr`` holds its images in two subfolders,
``wikipedia-commons/`` and ``div2k-train-diffc/``, found by the recursive search of
:func:`find_images`) and validation on the 256x256 DIV2K/Urban100 crops; Kodak and McMaster are
test sets and are refused for training and validation.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import grain
import numpy as np
from absl import flags
from PIL import Image

from swinjax import imageio
from swinjax.image_files import (
    IMAGE_EXTENSIONS,
    TEST_ONLY_SETS,
    TRAIN_SETS,
    VAL_SETS,
    DataConfigError,
    FileCheck,
    check_images,
    default_shared_dir,
    find_images,
    parse_dirs,
    refuse_test_sets,
    resolve_dirs,
)

__all__ = [
    "DEFAULT_CACHE_MB",
    "IMAGE_EXTENSIONS",
    "TEST_ONLY_SETS",
    "TRAIN_SETS",
    "VAL_SETS",
    "DataConfigError",
    "FileCheck",
    "check_images",
    "default_shared_dir",
    "find_images",
    "parse_dirs",
    "resolve_dirs",
    "train_dataset",
    "train_pipeline",
    "val_batches",
]

log = logging.getLogger(__name__)

# How many times a training example whose file fails to decode is replaced by the next file
# before giving up (only reachable when most of the data set is unreadable).
_MAX_SUBSTITUTIONS = 32
# Budget of the decoded-image cache of the training pipeline, per process or grain worker (MiB;
# config key data.cache_mb). The default training sets decoded take about 0.54 GB.
DEFAULT_CACHE_MB = 3072


# --------------------------------------------------------------------------------------------
# Training


def _upscale_to(image: np.ndarray, min_side: int) -> np.ndarray:
    """Bicubic upscale so the shorter side is ``min_side`` (aspect ratio kept)."""
    height, width = image.shape[:2]
    scale = min_side / min(height, width)
    size = (max(min_side, round(width * scale)), max(min_side, round(height * scale)))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BICUBIC))


class _ImageCache:
    """Decoded images by file index, least recently used out first, within a byte budget.

    Thread-safe (grain reads with several threads; one lock guards the dict, decoding happens
    outside it, so two threads may both decode a file that is not cached yet: harmless). Cached
    arrays are made read-only. Pickling (grain's worker processes) keeps the budget only: every
    process or worker fills its own cache.
    """

    def __init__(self, max_bytes: int):
        self.max_bytes = max(0, int(max_bytes))
        self._items: OrderedDict[int, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.nbytes = 0
        self.hits = 0
        self.misses = 0
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: int) -> np.ndarray | None:
        """The cached image of file ``key`` (now the most recently used), or ``None``."""
        if not self.max_bytes:
            return None
        with self._lock:
            image = self._items.get(key)
            if image is None:
                self.misses += 1
            else:
                self._items.move_to_end(key)
                self.hits += 1
            return image

    def put(self, key: int, image: np.ndarray) -> None:
        """Caches ``image`` (read-only from now on); evicts the least recently used to fit.

        An image larger than the whole budget is not cached (it would evict everything).
        """
        if image.nbytes > self.max_bytes:
            return
        image.setflags(write=False)
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self.nbytes -= old.nbytes
            self._items[key] = image
            self.nbytes += image.nbytes
            while self.nbytes > self.max_bytes:
                _, evicted = self._items.popitem(last=False)
                self.nbytes -= evicted.nbytes
                self.evictions += 1

    def __getstate__(self) -> dict[str, int]:
        return {"max_bytes": self.max_bytes}

    def __setstate__(self, state: dict[str, int]) -> None:
        self.__init__(state["max_bytes"])


class _RandomCropFlipRotate(grain.transforms.RandomMap):
    """File index -> ``uint8 [crop, crop, 3]``: random crop, horizontal flip, 90-degree rotation.

    grain seeds ``rng`` from the pipeline seed and the example's global position, so the result
    does not depend on which process or worker computes it. The draws are made in a fixed order
    (top, left, flip, rotation) whatever happens, and a file that fails to decode is replaced by
    the next file in the list, so substitution is deterministic as well.

    Decoded (and, with ``upscale_small``, upscaled) images are kept in an :class:`_ImageCache` of
    ``cache_bytes`` (0 disables it), keyed by file index. A file that fails to decode is
    remembered as unusable by this process: it is not read again, and its warning is given once
    (the substitution itself stays the same, so the data order does not depend on it).
    """

    def __init__(
        self,
        files: Sequence[str],
        crop: int,
        upscale_small: bool,
        max_pixels: int | None,
        cache_bytes: int = 0,
    ):
        self._files = tuple(files)
        self._crop = crop
        self._upscale_small = upscale_small
        self._max_pixels = max_pixels
        self._substitutions = 0  # per worker process; reported in the warnings
        self._unusable: dict[int, str] = {}  # file index -> why (per process)
        self.cache = _ImageCache(cache_bytes)

    def _decode(self, file_index: int) -> np.ndarray | str:
        """The usable image of one file (from the cache when there), or why it is unusable."""
        image = self.cache.get(file_index)
        if image is not None:
            return image
        path = self._files[file_index]
        try:
            image = imageio.load_image(path, max_pixels=self._max_pixels)
        except imageio.ImageError as err:
            return self._mark_unusable(file_index, str(err))
        if min(image.shape[:2]) < self._crop:
            if not self._upscale_small:
                return self._mark_unusable(
                    file_index, f"{path}: smaller than the {self._crop} px crop"
                )
            image = _upscale_to(image, self._crop)
        self.cache.put(file_index, image)
        return image

    def _mark_unusable(self, file_index: int, why: str) -> str:
        self._unusable[file_index] = why
        return why

    def _load(self, index: int) -> np.ndarray:
        n = len(self._files)
        errors = []
        new_errors = False
        for attempt in range(min(_MAX_SUBSTITUTIONS, n)):
            file_index = (index + attempt) % n
            known = self._unusable.get(file_index)
            image = known if known is not None else self._decode(file_index)
            if isinstance(image, str):
                errors.append(image)
                new_errors = new_errors or known is None
                continue
            if attempt:
                self._substitutions += attempt
            if attempt and new_errors:
                log.warning(
                    "training data: replaced %d unusable file(s) by %s "
                    "(%d replacements so far in this process): %s",
                    attempt,
                    self._files[file_index],
                    self._substitutions,
                    "; ".join(errors),
                )
            return image
        raise RuntimeError(
            f"training data: {len(errors)} consecutive files are unusable, last: {errors[-1]}"
        )

    def random_map(self, element: int, rng: np.random.Generator) -> np.ndarray:
        """Loads file ``element`` and returns an augmented square crop."""
        top_u, left_u = rng.random(2)
        flip = bool(rng.integers(2))
        quarter_turns = int(rng.integers(4))
        image = self._load(int(element))
        height, width = image.shape[:2]
        top = int(top_u * (height - self._crop + 1))
        left = int(left_u * (width - self._crop + 1))
        out = image[top : top + self._crop, left : left + self._crop]
        if flip:
            out = out[:, ::-1]
        out = np.rot90(out, quarter_turns)
        # Always a fresh array: the image may be a read-only array of the cache.
        return np.array(out, order="C")


class _ToModelBatch(grain.transforms.Map):
    """``uint8 [b, c, c, 3]`` -> ``{"x": float32 in [0, 1]}``."""

    def map(self, element: np.ndarray) -> dict[str, np.ndarray]:
        """Converts one per-process batch."""
        return {"x": imageio.to_float(element)}


def _example_order(num_files: int, seed: int) -> grain.MapDataset:
    """The global, infinite sequence of file indices: a fresh seeded permutation every epoch.

    grain's ``shuffle`` folds the epoch number into its seed, so ``shuffle`` before ``repeat``
    reshuffles each epoch while every epoch still holds every file exactly once. ``seed`` also
    seeds the downstream ``random_map`` (grain derives a distinct seed per operation).
    """
    return grain.MapDataset.range(num_files).seed(seed).shuffle().repeat(None)


def train_pipeline(
    files: Sequence[str],
    *,
    crop: int = 256,
    global_batch: int,
    seed: int,
    shard_index: int = 0,
    shard_count: int = 1,
    num_workers: int = 0,
    num_threads: int = 4,
    prefetch: int = 2,
    small_images: str = "skip",
    max_pixels: int | None = imageio.DEFAULT_MAX_PIXELS,
    cache_mb: float = DEFAULT_CACHE_MB,
) -> grain.IterDataset:
    """The training pipeline: this process's share of shuffled, augmented global batches.

    Every example is a random ``crop x crop`` window of a random image, flipped horizontally with
    probability 1/2 and rotated by a uniformly drawn multiple of 90 degrees (crops are square, so
    shapes never change). Images are reshuffled every epoch; all randomness derives from ``seed``
    and the example's position in the global sequence.

    Policies:

    * **Small images** (a side shorter than ``crop``): ``small_images="skip"`` (default) leaves
      them out when the pipeline is built, counted in one warning. Upscaling would teach the
      codec blurry content and reflection padding would teach it mirrored seams, both unlike
      real photos. ``"upscale"`` (bicubic, shorter side to ``crop``) is available for folders of
      small images.
    * **Unreadable files** (not an image, empty, corrupt header, over ``max_pixels``): left out
      when the pipeline is built, counted in the same warning. A file that decodes badly later
      (truncated data) is replaced by the next usable file of the (sorted) list, logged with a
      running count; the batch keeps its shape and the replacement is the same on every run.
    * **Grayscale, palette, CMYK, 16-bit, RGBA, EXIF-rotated** files are converted to RGB by
      :func:`swinjax.imageio.load_image` (alpha dropped).

    Args:
        files: image paths (e.g. from :func:`find_images`); Kodak/McMaster files are refused.
        crop: side of the square training crops (the full models need >= 128: a smaller crop
            changes the deepest stage's window geometry; that rule is checked by the trainer).
        global_batch: examples per step over all processes; must be divisible by
            ``shard_count``.
        seed: data seed in ``[0, 2**32)``; the same seed gives the same batches.
        shard_index: this process's index (``jax.process_index()``).
        shard_count: number of processes (``jax.process_count()``).
        num_workers: grain worker processes (0 = decode in threads of this process). With
            workers, absl flags must be parsed (they are marked parsed here if not) and the
            program's entry point needs an ``if __name__ == "__main__":`` guard.
        num_threads: decoding threads per process (or per worker).
        prefetch: batches buffered ahead (per process, or per worker; at least ``num_threads``).
        small_images: ``"skip"`` or ``"upscale"``; see above.
        max_pixels: decompression-bomb limit per image (see :func:`swinjax.imageio.load_image`).
        cache_mb: memory for decoded images, in MiB, per process (or per worker with
            ``num_workers``); least recently used images are dropped when it is full, 0
            disables the cache. The default (config ``data.cache_mb``) holds all default
            training images (about 0.54 GB decoded), so after the first epoch no file is decoded
            again. The batches are the same with any value.

    Returns:
        An infinite grain ``IterDataset`` of ``{"x": float32 [global_batch // shard_count, crop,
        crop, 3]}`` in ``[0, 1]`` (:func:`train_dataset` iterates it).

    Raises:
        DataConfigError: a test set is given, or no file is usable.
        ValueError: inconsistent sizes or seeds.
    """
    if crop <= 0:
        raise ValueError(f"crop must be positive, got {crop}")
    if global_batch <= 0 or shard_count <= 0 or global_batch % shard_count:
        raise ValueError(
            f"global_batch ({global_batch}) must be a positive multiple of the number of "
            f"processes ({shard_count})"
        )
    if not 0 <= shard_index < shard_count:
        raise ValueError(f"shard_index must be in [0, {shard_count}), got {shard_index}")
    if not 0 <= seed < 2**32:
        raise ValueError(f"seed must be in [0, 2**32), got {seed}")
    if small_images not in ("skip", "upscale"):
        raise ValueError(f"small_images must be 'skip' or 'upscale', got {small_images!r}")
    if num_workers < 0:
        raise ValueError(f"num_workers must be >= 0, got {num_workers}")
    if not cache_mb >= 0:
        raise ValueError(f"cache_mb must be >= 0 (0 disables the cache), got {cache_mb}")
    refuse_test_sets(files, "train")
    checked = check_images(
        files,
        min_size=crop if small_images == "skip" else 0,
        max_pixels=max_pixels,
        what="training images",
    )
    if not checked.usable:
        raise DataConfigError(
            f"none of the {len(files)} training files is usable (all unreadable or smaller than "
            f"the {crop} px crop); set --config.data.train_dirs=/path/a,/path/b"
        )
    per_process = global_batch // shard_count
    augment = _RandomCropFlipRotate(
        checked.usable,
        crop,
        upscale_small=small_images == "upscale",
        max_pixels=max_pixels,
        cache_bytes=int(cache_mb * 2**20),
    )
    ds = (
        _example_order(len(checked.usable), seed)
        .random_map(augment)  # seeded by the global example index
        # Per-process pieces of global batches: global batch k is the concatenation of the
        # pieces k*P .. k*P+P-1, and process p takes piece k*P+p.
        .batch(per_process, drop_remainder=True)
        .slice(slice(shard_index, None, shard_count))
        .map(_ToModelBatch())
    )
    it_ds = ds.to_iter_dataset(
        grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=max(prefetch, num_threads))
    )
    if num_workers > 0:
        _ensure_absl_flags_parsed()
        it_ds = it_ds.mp_prefetch(
            grain.MultiprocessingOptions(num_workers=num_workers, per_worker_buffer_size=prefetch)
        )
    return it_ds


def train_dataset(files: Sequence[str], **options: Any) -> grain.DatasetIterator:
    """Iterates :func:`train_pipeline` (same arguments): this process's training batches.

    Returns:
        A grain ``DatasetIterator`` with ``get_state()`` / ``set_state()`` for checkpoints (a
        small JSON-serialisable dict; ``grain.checkpoint`` handlers store it with Orbax). Call
        ``close()`` when done and drop the reference: it stops threads and worker processes (an
        iterator left to interpreter shutdown makes grain print "Exception ignored in __del__").
    """
    return iter(train_pipeline(files, **options))


def _ensure_absl_flags_parsed() -> None:
    """Marks absl flags parsed: grain reads its settings from them, also in worker processes.

    An unparsed flag registry (a library call or a test, not an ``absl.app`` program) would make
    the workers fail with ``UnparsedFlagAccessError``; marking it parsed keeps the defaults and
    does not stop a later ``FLAGS(argv)`` from parsing the real command line.
    """
    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()


# --------------------------------------------------------------------------------------------
# Validation


class _CentreCrop(grain.transforms.Map):
    """File index -> ``(uint8 [crop, crop, 3], valid)``; an unreadable file gives zeros, False."""

    def __init__(self, files: Sequence[str], crop: int, max_pixels: int | None):
        self._files = tuple(files)
        self._crop = crop
        self._max_pixels = max_pixels

    def map(self, element: int) -> tuple[np.ndarray, bool]:
        """Loads file ``element`` and cuts out its centre."""
        path = self._files[int(element)]
        c = self._crop
        try:
            image = imageio.load_image(path, max_pixels=self._max_pixels)
            if min(image.shape[:2]) < c:
                raise imageio.ImageError(f"{path}: smaller than the {c} px crop")
        except imageio.ImageError as err:
            log.warning("validation data: %s; masked out of this batch", err)
            return np.zeros((c, c, 3), np.uint8), False
        height, width = image.shape[:2]
        top, left = (height - c) // 2, (width - c) // 2
        return np.ascontiguousarray(image[top : top + c, left : left + c]), True


class _PadAndMask(grain.transforms.Map):
    """List of ``(crop, valid)`` -> ``{"x": float32 [batch, ...], "mask": bool [batch]}``."""

    def __init__(self, batch: int, crop: int):
        self._batch = batch
        self._crop = crop

    def map(self, element: Sequence[tuple[np.ndarray, bool]]) -> dict[str, np.ndarray]:
        """Stacks a (possibly partial) batch and pads it to the full batch size."""
        x = np.zeros((self._batch, self._crop, self._crop, 3), np.uint8)
        mask = np.zeros((self._batch,), bool)
        for i, (image, valid) in enumerate(element):
            x[i] = image
            mask[i] = valid
        return {"x": imageio.to_float(x), "mask": mask}


def val_batches(
    files: Sequence[str],
    batch: int,
    crop: int = 256,
    *,
    num_threads: int = 4,
    max_pixels: int | None = imageio.DEFAULT_MAX_PIXELS,
) -> grain.IterDataset:
    """Deterministic centre crops of every usable file, once, in order, for quick validation.

    Policies: files whose header is unreadable or whose shorter side is below ``crop`` are left
    out when the pipeline is built (one counted warning; validation numbers need one fixed size
    and no invented pixels). The **last partial batch is padded** to ``batch`` with zero images
    and ``mask`` is ``False`` on the padding, so every batch has one static shape (one
    compilation) and ``mean(metric[mask])`` over all batches averages each file exactly once. A
    file that fails to decode later is masked out the same way (warning), never a crash.

    Args:
        files: image paths (e.g. :func:`find_images` of the validation folders).
        batch: batch size (this process's; validation is not sharded across processes).
        crop: side of the centre crops.
        num_threads: decoding threads.
        max_pixels: decompression-bomb limit per image.

    Returns:
        A re-iterable grain ``IterDataset`` of ``{"x": float32 [batch, crop, crop, 3],
        "mask": bool [batch]}``; each ``iter()`` starts again from the first file.

    Raises:
        DataConfigError: a test set is given, or no file is usable.
    """
    if batch <= 0 or crop <= 0:
        raise ValueError(f"batch and crop must be positive, got batch={batch}, crop={crop}")
    refuse_test_sets(files, "val")
    checked = check_images(files, min_size=crop, max_pixels=max_pixels, what="validation images")
    if not checked.usable:
        raise DataConfigError(
            f"none of the {len(files)} validation files is usable (all unreadable or smaller "
            f"than the {crop} px crop); set --config.data.val_dirs=/path/a,/path/b"
        )
    ds = (
        grain.MapDataset.range(len(checked.usable))
        .map(_CentreCrop(checked.usable, crop, max_pixels))
        .batch(batch, batch_fn=list)
        .map(_PadAndMask(batch, crop))
    )
    return ds.to_iter_dataset(
        grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=num_threads)
    )
