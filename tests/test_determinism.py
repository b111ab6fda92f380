"""Files decode to the encoder's symbols on other machine configurations.

The decoder's only decisions are scale indexes; they come from float64 entropy parameters plus
the encoder's pinned indexes near table boundaries (:mod:`swinjax.compression`). Checked here:

* the shipped model's entropy-parameter programs hold no float32 value (a float32 step would
  bring back differences of ~1e-5 between instruction-set levels, 10^4 times the pinning
  margin; SwinNPE's ChARM programs are checked in ``test_compression.py``);
* the decoder uses pinned indexes: a decoder whose scales are off by 0.3 % decodes a file pinned
  at a 1 % margin and fails on one pinned at 0;
* files of the shipped model, written here, decode in fresh processes at every XLA CPU
  instruction-set level this CPU has and single-threaded (``scripts/decode_matrix.py`` runs the
  full matrix on Kodak).
"""

import json
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

from swinjax import checkpoint, compression
from swinjax.coding import container
from swinjax.compression import ImageCodec
from swinjax.imageio import load_image

ROOT = pathlib.Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "swinjax" / "samples" / "kodim23-crop.png"


@pytest.fixture(scope="module")
def shipped():
    return ImageCodec(checkpoint.load_model("swincoder-ref"))


def test_entropy_parameter_programs_are_float64_throughout(shipped, entropy_precisions):
    assert entropy_precisions(shipped) == set()


def test_the_decoder_uses_pinned_indexes(tiny_export, monkeypatch):
    exported = checkpoint.load_model(tiny_export)
    img = load_image(SAMPLE)[:64, :64]
    pinned_file = ImageCodec(exported, pin_margin=1e-2).compress(img, 64.0)
    bare_file = ImageCodec(exported, pin_margin=0.0).compress(img, 64.0)
    n_pinned = len(container.unpack(pinned_file)[0].pinned)
    assert n_pinned > 0 and container.unpack(bare_file)[0].pinned == ()
    honest = ImageCodec(exported)
    expected = honest.decompress(pinned_file)
    np.testing.assert_array_equal(honest.decompress(bare_file), expected)

    exact = compression.scale_index_and_pin
    monkeypatch.setattr(
        compression, "scale_index_and_pin", lambda s, t, m: exact(s * (1 + 3e-3), t, m)
    )
    off = ImageCodec(exported)  # traces its programs with scales 0.3 % too large
    out = off.decompress(pinned_file)
    assert np.abs(out.astype(int) - expected).max() <= 1
    with pytest.raises(container.FormatError, match="corrupt file|checksum mismatch"):
        off.decompress(bare_file)


_DECODE = """
import json, sys
import numpy as np
from swinjax.checkpoint import load_model
from swinjax.compression import ImageCodec
codec = ImageCodec(load_model("swincoder-ref"))
out = {}
for path in sys.argv[1:]:
    try:
        out[path] = codec.decompress(open(path, "rb").read()).tolist()
    except ValueError as e:
        out[path] = str(e)
print(json.dumps(out))
"""


def _configurations() -> list[tuple[str, str, list[str]]]:
    flags = set()
    for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            flags |= set(line.split(":", 1)[1].split())
    levels = [("SSE4_2", "sse4_2"), ("AVX", "avx"), ("AVX2", "avx2"), ("AVX512", "avx512f")]
    configs = [(lv, f"--xla_cpu_max_isa={lv}", []) for lv, f in levels if f in flags]
    taskset = ["taskset", "-c", "0"] if shutil.which("taskset") else []
    configs.append(("one thread", "--xla_cpu_multi_thread_eigen=false", taskset))
    return configs


@pytest.mark.skipif(not pathlib.Path("/proc/cpuinfo").exists(), reason="needs /proc/cpuinfo")
def test_shipped_files_decode_alike_at_every_isa_level_and_one_thread(shipped, tmp_path):
    img = load_image(SAMPLE)[:128, :192]
    files, expected = [], {}
    for lm in (32.0, 1024.0):
        path = tmp_path / f"crop-{lm:g}.swj"
        data = shipped.compress(img, lm)
        path.write_bytes(data)
        files.append(str(path))
        expected[str(path)] = shipped.decompress(data)
    procs = {}
    for name, flag, prefix in _configurations():
        flags = (os.environ.get("XLA_FLAGS", "") + " " + flag).strip()
        env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=flags)
        cmd = [*prefix, sys.executable, "-c", _DECODE, *files]
        procs[name] = subprocess.Popen(
            cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
    failures = []
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=600)
        assert proc.returncode == 0, f"{name}: {stderr[-2000:]}"
        for path, got in json.loads(stdout).items():
            if isinstance(got, str):
                failures.append(f"{name}, {pathlib.Path(path).name}: {got}")
                continue
            diff = np.abs(np.asarray(got, np.int16) - expected[path]).max()
            assert diff <= 2, f"{name}, {path}: pixels differ by {diff}"  # float32 synthesis
    assert not failures, failures
