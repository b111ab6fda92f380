"""grain input pipelines: file discovery, process-count-independent batches, resumable iterators."""

import io
import logging
import pathlib
import pickle
import threading

import numpy as np
import pytest
from absl import flags
from PIL import Image

from swinjax import data
from swinjax.data import DataConfigError
from swinjax.imageio import to_float, to_uint8

SHARED = pathlib.Path(__file__).resolve().parents[2] / "shared" / "datasets"
CROP = 16


def _save(path, image, **kwargs):
    path.parent.mkdir(parents=True, exist_ok=True)
    image = image if isinstance(image, Image.Image) else Image.fromarray(image)
    image.save(path, **kwargs)
    return str(path)


def _photo(h, w, seed):
    """Smooth random colour image (so JPEG keeps it close and crops differ from each other)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (h // 4 + 1, w // 4 + 1, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((w, h), Image.Resampling.BILINEAR))


@pytest.fixture
def image_dir(tmp_path):
    """Eight good RGB images of different sizes, in nested folders and two formats."""
    root = tmp_path / "imgs"
    for i in range(8):
        sub = root / ("a" if i % 2 else "b") / ("deep" if i % 3 == 0 else "")
        ext = "png" if i % 2 else "jpg"
        _save(sub / f"img{i}.{ext}", _photo(24 + 3 * i, 40 - 2 * i, seed=i))
    return root


@pytest.fixture
def files(image_dir):
    return data.find_images([str(image_dir)])


def _take(it, n):
    return [next(it)["x"] for _ in range(n)]


def _pipeline(files, **kwargs):
    defaults = dict(crop=CROP, global_batch=8, seed=7)
    return data.train_dataset(files, **{**defaults, **kwargs})


# --------------------------------------------------------------------------------------------
# Folders


def test_find_images_is_recursive_sorted_and_filters_extensions(image_dir):
    (image_dir / "notes.txt").write_text("not an image")
    _save(image_dir / ".hidden" / "x.png", _photo(20, 20, 0))
    _save(image_dir / "b" / ".tmp.png", _photo(20, 20, 0))
    _save(image_dir / "UPPER.JPEG", _photo(20, 20, 0))
    found = data.find_images([str(image_dir)])
    assert found == sorted(found)
    assert len(found) == 9
    assert all(".hidden" not in f and ".tmp" not in f and not f.endswith(".txt") for f in found)
    assert any(f.endswith("UPPER.JPEG") for f in found)
    # Same list from a comma-separated string, and a folder given twice is listed once.
    assert data.find_images(f"{image_dir},{image_dir}") == found


def test_parse_dirs_accepts_strings_and_sequences():
    assert data.parse_dirs("/a, /b,,") == ("/a", "/b")
    assert data.parse_dirs(("/a", pathlib.Path("/b"))) == ("/a", "/b")
    assert data.parse_dirs("") == () and data.parse_dirs(None) == ()


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(DataConfigError, match="does not exist.*--config.data.train_dirs="):
        data.find_images([str(tmp_path / "nope")], purpose="train")
    with pytest.raises(DataConfigError, match="--config.data.val_dirs="):
        data.find_images(str(tmp_path / "nope"), purpose="val")
    with pytest.raises(DataConfigError, match="does not exist$"):
        data.find_images([str(tmp_path / "nope")])  # evaluation: no config key to suggest
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataConfigError, match="no images"):
        data.find_images([str(tmp_path / "empty")])


def test_test_sets_are_refused_for_training_and_validation(tmp_path):
    kodak = tmp_path / "Kodak"
    _save(kodak / "kodim01.png", _photo(20, 20, 0))
    with pytest.raises(DataConfigError, match="kodak is a test set.*data.train_dirs"):
        data.find_images([str(kodak)], purpose="train")
    with pytest.raises(DataConfigError, match="data.val_dirs"):
        data.find_images([str(kodak)], purpose="val")
    files = data.find_images([str(kodak)])  # evaluation may use it
    with pytest.raises(DataConfigError, match="test set"):
        data.train_dataset(files, crop=8, global_batch=1, seed=0)
    renamed = _save(tmp_path / "photos" / "kodim05.png", _photo(20, 20, 0))
    with pytest.raises(DataConfigError, match="test set"):
        data.train_dataset([renamed], crop=8, global_batch=1, seed=0)
    if (SHARED / "mcmaster").is_dir():
        with pytest.raises(DataConfigError, match="mcmaster"):
            data.find_images([str(SHARED / "mcmaster")], purpose="train")


def test_default_dirs_are_the_shared_training_and_validation_sets():
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} is missing")
    assert data.default_shared_dir().resolve() == SHARED.resolve()  # also via a symlink
    train = data.resolve_dirs("", purpose="train")
    assert [pathlib.Path(d).name for d in train] == list(data.TRAIN_SETS)
    assert not set(data.TEST_ONLY_SETS) & {pathlib.Path(d).name for d in train}
    val = data.resolve_dirs((), purpose="val")
    assert [pathlib.Path(d).name for d in val] == list(data.VAL_SETS)
    assert data.resolve_dirs("/x,/y", purpose="train") == ("/x", "/y")


def test_default_training_files_include_the_train_hr_subfolders():
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} is missing")
    dirs = data.resolve_dirs("", purpose="train")
    files = data.find_images(dirs, purpose="train")
    per_set = {name: sum(f"/{name}/" in f for f in files) for name in data.TRAIN_SETS}
    # bsds500 500, sun-hays80 80, wikipedia-photos 20, train-hr 27 (25 + 2 in two subfolders).
    assert per_set == {"bsds500": 500, "sun-hays80": 80, "wikipedia-photos": 20, "train-hr": 27}
    hr = SHARED / "train-hr"
    assert sum(f.startswith(str(hr / "wikipedia-commons") + "/") for f in files) == 25
    assert sum(f.startswith(str(hr / "div2k-train-diffc") + "/") for f in files) == 2
    assert len(files) == 627


def test_missing_shared_folder_names_the_config_keys(monkeypatch, tmp_path):
    from swinjax import image_files

    monkeypatch.setattr(image_files, "__file__", str(tmp_path / "repo" / "swinjax" / "data.py"))
    with pytest.raises(DataConfigError, match=r"--config\.data\.train_dirs=/path/a,/path/b"):
        data.resolve_dirs("", purpose="train")


# --------------------------------------------------------------------------------------------
# Training pipeline


def test_batches_have_the_model_layout(files):
    batches = _take(_pipeline(files), 3)
    for x in batches:
        assert x.shape == (8, CROP, CROP, 3) and x.dtype == np.float32
        assert 0.0 <= x.min() and x.max() <= 1.0
        np.testing.assert_array_equal(to_float(to_uint8(x)), x)  # exactly 8-bit levels
    assert not np.array_equal(batches[0], batches[1])


def test_same_seed_same_batches_other_seed_other_batches(files):
    a = _take(_pipeline(files, seed=3), 3)
    b = _take(_pipeline(files, seed=3), 3)
    c = _take(_pipeline(files, seed=4), 3)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], c[0])


@pytest.mark.parametrize("shard_count", [2, 4])
def test_process_batches_concatenate_to_the_global_batch(files, shard_count):
    steps = 5  # 40 examples: crosses epoch boundaries (8 files)
    whole = _take(_pipeline(files), steps)
    parts = [
        _take(_pipeline(files, shard_index=p, shard_count=shard_count), steps)
        for p in range(shard_count)
    ]
    for step in range(steps):
        assert parts[0][step].shape[0] == 8 // shard_count
        joined = np.concatenate([parts[p][step] for p in range(shard_count)])
        np.testing.assert_array_equal(joined, whole[step])


def test_restored_iterator_continues_exactly(files):
    it = _pipeline(files)
    _take(it, 3)
    state = it.get_state()
    expected = _take(it, 4)
    fresh = _pipeline(files)
    fresh.set_state(state)
    for x, y in zip(_take(fresh, 4), expected, strict=True):
        np.testing.assert_array_equal(x, y)


def _count_decodes(monkeypatch, files):
    """Records decodes of ``files`` (iterators of earlier tests may still be prefetching)."""
    calls = []
    real = data.imageio.load_image
    ours = set(files)

    def counting(path, **kwargs):
        if path in ours:
            calls.append(path)
        return real(path, **kwargs)

    monkeypatch.setattr(data.imageio, "load_image", counting)
    return calls


@pytest.mark.parametrize("threads", [1, 4])
def test_cache_on_off_or_tiny_gives_the_same_batches(files, threads):
    steps = 5  # 40 examples: five epochs of 8 files
    ref = _take(_pipeline(files, cache_mb=0, num_threads=threads), steps)
    one_image = 40 * 40 * 3 / 2**20  # MiB: one image fits at most, so every miss evicts
    for cache_mb in (data.DEFAULT_CACHE_MB, one_image):
        got = _take(_pipeline(files, cache_mb=cache_mb, num_threads=threads), steps)
        for x, y in zip(got, ref, strict=True):
            np.testing.assert_array_equal(x, y)


def test_cache_decodes_each_file_once_and_resumes_exactly(files, monkeypatch):
    calls = _count_decodes(monkeypatch, files)
    it = _pipeline(files, num_threads=1)
    first = _take(it, 3)  # three epochs of 8 files
    # Every file decoded once, then served from memory (also what was read ahead).
    assert sorted(calls) == sorted(files)
    state = it.get_state()
    expected = _take(it, 3)
    assert len(calls) == len(files)
    calls.clear()
    uncached = _take(_pipeline(files, cache_mb=0, num_threads=1), 6)
    assert len(calls) >= 6 * 8  # without the cache: one decode per example (plus read-ahead)
    resumed = _pipeline(files, num_threads=1)
    resumed.set_state(state)
    for x, y in zip(first + _take(resumed, 3), uncached, strict=True):
        np.testing.assert_array_equal(x, y)
    for x, y in zip(expected, uncached[3:], strict=True):
        np.testing.assert_array_equal(x, y)


def test_tiny_cache_budget_evicts_and_still_works(files, monkeypatch):
    calls = _count_decodes(monkeypatch, files)
    got = _take(_pipeline(files, cache_mb=1e-6, num_threads=1), 2)  # nothing fits
    assert len(calls) >= 2 * 8
    ref = _take(_pipeline(files, cache_mb=0, num_threads=1), 2)
    for x, y in zip(got, ref, strict=True):
        np.testing.assert_array_equal(x, y)
    with pytest.raises(ValueError, match="cache_mb"):
        _pipeline(files, cache_mb=-1)


def test_image_cache_is_lru_within_its_budget():
    cache = data._ImageCache(max_bytes=3 * 100)
    images = {k: np.full((10, 10), k, np.uint8) for k in range(5)}  # 100 bytes each
    for k in range(3):
        cache.put(k, images[k])
    assert cache.get(0) is images[0]  # 0 is now the most recently used
    assert not images[0].flags.writeable  # cached arrays are read-only
    cache.put(3, images[3])  # evicts 1, the least recently used
    assert cache.get(1) is None and cache.get(2) is not None
    assert len(cache) == 3 and cache.nbytes == 300 and cache.evictions == 1
    cache.put(4, np.zeros((20, 20), np.uint8))  # larger than the whole budget: not cached
    assert cache.get(4) is None and len(cache) == 3
    # Worker processes get an empty cache with the same budget (no lock, no images pickled).
    clone = pickle.loads(pickle.dumps(cache))
    assert clone.max_bytes == 300 and len(clone) == 0 and clone.get(0) is None
    disabled = data._ImageCache(0)
    disabled.put(0, images[0])
    assert disabled.get(0) is None and len(disabled) == 0


def test_image_cache_is_thread_safe():
    cache = data._ImageCache(max_bytes=50 * 64)

    def worker(seed):
        rng = np.random.default_rng(seed)
        for _ in range(2000):
            k = int(rng.integers(100))
            if cache.get(k) is None:
                cache.put(k, np.full(64, k, np.uint8))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(cache) <= 50 and cache.nbytes == 64 * len(cache) <= cache.max_bytes
    for k in range(100):
        image = cache.get(k)
        assert image is None or (image == k).all()


def test_every_epoch_is_a_new_permutation_of_all_files():
    order = data._example_order(10, seed=5)
    epochs = [[order[e * 10 + i] for i in range(10)] for e in range(3)]
    for epoch in epochs:
        assert sorted(epoch) == list(range(10))
    assert epochs[0] != epochs[1] != epochs[2]
    assert [data._example_order(10, seed=5)[i] for i in range(10)] == epochs[0]


def test_augmentation_is_only_flips_and_quarter_turns(tmp_path):
    img = _photo(CROP, CROP, seed=11)  # crop == image: only the flip and rotation vary
    path = _save(tmp_path / "one.png", img)
    variants = [np.rot90(v, k) for v in (img, img[:, ::-1]) for k in range(4)]
    seen = set()
    for x in _take(data.train_dataset([path], crop=CROP, global_batch=4, seed=0), 8):
        for row in np.round(x * 255).astype(np.uint8):
            matches = [i for i, v in enumerate(variants) if np.array_equal(row, v)]
            assert matches, "an example is not a flip/rotation of the image"
            seen.add(matches[0])
    assert len(seen) >= 6  # 32 draws over 8 variants


def test_crops_are_windows_at_varying_positions(tmp_path):
    img = np.zeros((64, 64, 3), np.uint8)
    img[..., 0] = np.arange(64)[:, None]  # row index in red
    img[..., 1] = np.arange(64)[None, :]  # column index in green
    path = _save(tmp_path / "ramp.png", img)
    corners = set()
    for x in _take(data.train_dataset([path], crop=CROP, global_batch=8, seed=1), 4):
        for row in np.round(x * 255).astype(np.uint8):
            values = row[..., :2].reshape(-1, 2)
            r0, c0 = values.min(axis=0)
            assert values.max(axis=0).tolist() == [r0 + CROP - 1, c0 + CROP - 1]
            corners.add((int(r0), int(c0)))
    assert len(corners) > 10


def test_bad_files_are_converted_or_skipped_and_counted(files, tmp_path, caplog):
    odd = tmp_path / "odd"
    extra = [
        _save(odd / "gray.png", _photo(30, 30, 1)[..., 0]),
        _save(odd / "cmyk.jpg", Image.fromarray(_photo(30, 30, 2)).convert("CMYK")),
        _save(odd / "rgba.png", np.dstack([_photo(30, 30, 3), np.full((30, 30), 9, np.uint8)])),
        _save(odd / "pal.png", Image.fromarray(_photo(30, 30, 4)).convert("P")),
        _save(odd / "small.png", _photo(CROP - 1, 50, 5)),
    ]
    (odd / "garbage.jpg").write_bytes(b"garbage" * 100)
    (odd / "empty.png").write_bytes(b"")
    extra += [str(odd / "garbage.jpg"), str(odd / "empty.png")]
    with caplog.at_level(logging.WARNING, logger="swinjax"):
        it = _pipeline(files + extra)
        for x in _take(it, 4):
            assert x.shape == (8, CROP, CROP, 3)
    report = "\n".join(r.getMessage() for r in caplog.records)
    assert "skipped 3 of 15 files (1 smaller than 16 px, 2 unreadable)" in report
    checked = data.check_images(files + extra, min_size=CROP)
    assert len(checked.usable) == 12 and checked.skipped == 3


def test_file_failing_mid_run_is_replaced_deterministically(files, tmp_path, caplog):
    buf = io.BytesIO()
    Image.fromarray(_photo(40, 40, 9)).save(buf, format="PNG")
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    mixed = sorted(files + [str(truncated)])
    with caplog.at_level(logging.WARNING, logger="swinjax"):
        a = _take(_pipeline(mixed), 3)  # 24 examples over 9 files: the bad one is drawn
    assert any("replaced 1 unusable file" in r.getMessage() for r in caplog.records)
    for x, y in zip(a, _take(_pipeline(mixed), 3), strict=True):
        np.testing.assert_array_equal(x, y)


def test_a_file_failing_mid_run_is_read_and_reported_once(files, tmp_path, caplog, monkeypatch):
    truncated = tmp_path / "truncated.png"
    buf = io.BytesIO()
    Image.fromarray(_photo(40, 40, 9)).save(buf, format="PNG")
    truncated.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    reads = []
    load = data.imageio.load_image

    def counting(path, **kwargs):
        reads.append(str(path))
        return load(path, **kwargs)

    monkeypatch.setattr(data.imageio, "load_image", counting)
    mixed = sorted(files + [str(truncated)])
    with caplog.at_level(logging.WARNING, logger="swinjax"):
        batches = _take(_pipeline(mixed, cache_mb=0), 9)  # 72 examples over 9 files
    drawn = sum(r == str(truncated) for r in reads)
    warned = [r for r in caplog.records if "unusable" in r.getMessage()]
    assert drawn == 1 and len(warned) == 1, (drawn, len(warned))
    assert all(b.shape == (8, CROP, CROP, 3) for b in batches)
    assert len(reads) > 20  # the cache is off: good files are read every time they are drawn


def test_small_images_can_be_upscaled_instead_of_skipped(tmp_path):
    small = _save(tmp_path / "small.png", _photo(10, 12, 0))
    with pytest.raises(DataConfigError, match="none of the 1 training files"):
        data.train_dataset([small], crop=CROP, global_batch=2, seed=0)
    it = data.train_dataset([small], crop=CROP, global_batch=2, seed=0, small_images="upscale")
    assert next(it)["x"].shape == (2, CROP, CROP, 3)


def test_inconsistent_arguments_are_refused(files):
    with pytest.raises(ValueError, match="multiple of the number of processes"):
        data.train_dataset(files, crop=CROP, global_batch=6, seed=0, shard_count=4)
    with pytest.raises(ValueError, match="shard_index"):
        data.train_dataset(files, crop=CROP, global_batch=8, seed=0, shard_index=2, shard_count=2)
    with pytest.raises(ValueError, match="seed"):
        data.train_dataset(files, crop=CROP, global_batch=8, seed=-1)


@pytest.fixture
def absl_flags_restored():
    """train_dataset marks absl flags parsed for grain's workers; undo that for other tests."""
    was_parsed = flags.FLAGS.is_parsed()
    yield
    if not was_parsed:
        flags.FLAGS.unparse_flags()


def test_worker_processes_give_the_same_batches_and_resume(files, absl_flags_restored):
    expected = _take(_pipeline(files, shard_index=1, shard_count=2), 6)
    it = _pipeline(files, shard_index=1, shard_count=2, num_workers=2)
    try:
        got = _take(it, 3)
        state = it.get_state()
        assert flags.FLAGS.is_parsed()
    finally:
        it.close()
    resumed = _pipeline(files, shard_index=1, shard_count=2, num_workers=2)
    try:
        resumed.set_state(state)
        got += _take(resumed, 3)
    finally:
        resumed.close()
    for x, y in zip(got, expected, strict=True):
        np.testing.assert_array_equal(x, y)


def test_real_training_photos_make_batches():
    bsds = SHARED / "bsds500"
    if not bsds.is_dir():
        pytest.skip(f"real photos not available: {bsds} is missing")
    files = data.find_images([str(bsds)], purpose="train")[:6]
    x = next(data.train_dataset(files, crop=128, global_batch=4, seed=0))["x"]
    assert x.shape == (4, 128, 128, 3) and 0.05 < x.mean() < 0.95


# --------------------------------------------------------------------------------------------
# Validation batches


def test_val_batches_are_centre_crops_padded_and_masked(tmp_path, caplog):
    images = [_photo(20 + i, 30 - i, seed=i) for i in range(5)]
    paths = [_save(tmp_path / f"v{i}.png", im) for i, im in enumerate(images)]
    paths.append(_save(tmp_path / "small.png", _photo(8, 8, 0)))
    with caplog.at_level(logging.WARNING, logger="swinjax"):
        ds = data.val_batches(paths, batch=2, crop=CROP)
    assert "skipped 1 of 6" in caplog.text
    batches = list(ds)
    assert len(batches) == 3
    for b in batches:
        assert b["x"].shape == (2, CROP, CROP, 3) and b["x"].dtype == np.float32
    masks = np.concatenate([b["mask"] for b in batches])
    assert masks.tolist() == [True] * 5 + [False]
    crops = np.concatenate([b["x"] for b in batches])
    for i, im in enumerate(images):
        top, left = (im.shape[0] - CROP) // 2, (im.shape[1] - CROP) // 2
        expected = im[top : top + CROP, left : left + CROP]
        np.testing.assert_array_equal(np.round(crops[i] * 255).astype(np.uint8), expected)
    assert (crops[5] == 0).all()
    # Re-iterable and deterministic.
    for b1, b2 in zip(batches, list(ds), strict=True):
        np.testing.assert_array_equal(b1["x"], b2["x"])


def test_val_file_failing_mid_run_is_masked_not_fatal(tmp_path):
    good = _save(tmp_path / "good.png", _photo(20, 20, 0))
    buf = io.BytesIO()
    Image.fromarray(_photo(40, 40, 1)).save(buf, format="PNG")
    bad = tmp_path / "bad.png"
    bad.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    (b,) = list(data.val_batches([good, str(bad)], batch=2, crop=CROP))
    assert b["mask"].tolist() == [True, False]


def test_real_validation_crops_load():
    div2k = SHARED / "div2k-valid-256crops"
    if not div2k.is_dir():
        pytest.skip(f"real validation crops not available: {div2k} is missing")
    files = data.find_images([str(div2k)], purpose="val")[:3]
    (b,) = list(data.val_batches(files, batch=4))
    assert b["x"].shape == (4, 256, 256, 3) and b["mask"].tolist() == [True] * 3 + [False]
