"""Files decode to the encoder's symbols on other machine configurations.

The decoder's only decisions are scale indexes; they come from float64 entropy parameters plus
the encoder's pinned indexes near table boundaries (:mod:`swinjax.compression`). Checked here:

* the entropy-parameter programs hold no float32 value (a float32 step would bring back
  differences of ~1e-5 between instruction-set levels, 10^4 times the pinning margin);
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

import jax
import jax.numpy as jnp
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


# Primitives that only pass values on (their sub-jaxprs are checked) or broadcast a constant.
_PASS_THROUGH = {"custom_vjp_call", "custom_jvp_call", "pjit", "jit", "closed_call"}


def _low_precision_values(jaxpr) -> set[str]:
    """Computations in ``jaxpr`` (and its sub-jaxprs) that produce float values below float64.

    A call's operands and a broadcast constant are no computation: the custom-derivative Dense
    passes unused float32 LayerNorm placeholders to its GELU form.
    """
    found = set()
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        literal = name == "broadcast_in_dim" and all(hasattr(v, "val") for v in eqn.invars)
        if name not in _PASS_THROUGH and not literal:
            for v in eqn.outvars:
                dt = v.aval.dtype
                if jnp.issubdtype(dt, jnp.floating) and dt != jnp.float64:
                    found.add(f"{name}:{dt}")
        for p in eqn.params.values():
            for sub in p if isinstance(p, (tuple, list)) else (p,):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    found |= _low_precision_values(inner)
    return found


def test_entropy_parameter_programs_are_float64_throughout(shipped):
    c, p = shipped.module, shipped.params64
    with jax.enable_x64(True):
        lm = jnp.full((1,), 256.0, jnp.float64)
        z_sym = jnp.zeros((1, 2, 3, int(shipped.model_config.hyper_channels)), jnp.int32)
        jaxpr = jax.make_jaxpr(lambda s: compression._hyper(c, p, s))(z_sym)
        found = _low_precision_values(jaxpr.jaxpr)
        state, _ = compression._hyper(c, p, z_sym)
        for k in range(shipped.num_groups):

            def params(st, k=k):
                return compression._group_params(c, shipped.scale_table, 1e-9, k, p, st, lm)

            def fill(st, m, k=k):
                return compression._fill(c, k, p, st, jnp.zeros(m.shape, jnp.int32), m, lm)

            found |= _low_precision_values(jax.make_jaxpr(params)(state).jaxpr)
            mu = params(state)[0]
            found |= _low_precision_values(jax.make_jaxpr(fill)(state, mu).jaxpr)
            state = fill(state, mu)
    assert found == set()


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
