"""Shared test set-up: JAX on CPU, tiny configs of the three architectures, cheap compiles.

Everything tests share is here, as fixtures (test modules never import each other): the tiny
configs (``tiny``), fast compiles (``fast``), the tiny models' parameters (``tiny_params``), the
one tiny export of the session (``tiny_export``), photo crops (``photo``), stand-in shipped
models (``ship``) and the float64 check of a codec's entropy-parameter path
(``entropy_precisions``).

``JAX_PLATFORMS`` is defaulted to cpu (these are CPU tests and must not grab an accelerator),
XLA's backend optimisation level to 0 and its CPU fusion emitters off (compile time dominates
tiny test programs); tests that need e.g. several host devices append their flags to
``XLA_FLAGS``. The session shares one fresh JAX
compilation cache (``JAX_COMPILATION_CACHE_DIR``, unless already set): the pytest-xdist workers,
the subprocesses and the notebook's kernel inherit it, so a program that several tests compile
alike (same program, same XLA flags) is compiled once per run. It starts empty, as in CI, and is
removed at the end.
"""

import atexit
import os
import pathlib
import shutil
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# The test programs are tiny: XLA's CPU optimisation passes cost far more compile time than they
# save at run time. Subprocesses inherit the flag, so encoder and decoder processes compile the
# same programs. (Set before JAX starts; tests that need more flags append to it.)
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0"
    ).strip()

# XLA's CPU fusion emitters lengthen the compiles of the tiny test programs (a training run of
# the tiny model's stage 2 test: 54 -> 41 s without them). Probed once, in a subprocess, by the
# first process (the xdist controller): an XLA that does not know the flag would abort at start.
_NO_EMITTERS = "--xla_cpu_use_fusion_emitters=false"
if "SWINJAX_TESTS_FLAGS_PROBED" not in os.environ:
    import subprocess
    import sys

    os.environ["SWINJAX_TESTS_FLAGS_PROBED"] = "1"
    _flags = f"{os.environ['XLA_FLAGS']} {_NO_EMITTERS}"
    _probe = subprocess.run(
        [sys.executable, "-c", "import jax; jax.devices()"],
        env=dict(os.environ, XLA_FLAGS=_flags),
        capture_output=True,
    )
    if _probe.returncode == 0:
        os.environ["XLA_FLAGS"] = _flags

if not os.environ.get("JAX_COMPILATION_CACHE_DIR"):
    # Made by the first process that loads this file (the xdist controller), before the workers
    # start: they inherit the variable and use the same folder.
    _SESSION_CACHE = tempfile.mkdtemp(prefix="swinjax-tests-xla-")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _SESSION_CACHE
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")
    atexit.register(shutil.rmtree, _SESSION_CACHE, True)

# Evaluations save each finished image's rows to resume an interrupted run (keyed by the model,
# options and image contents); tests that evaluate alike must not take each other's rows. The
# test of resuming points it at a folder of its own.
os.environ.setdefault("SWINJAX_EVAL_CACHE", "off")

import jax  # noqa: E402
import pytest  # noqa: E402

from swinjax.config_utils import load_config  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
CONFIG_DIR = ROOT / "configs"
KODAK = ROOT.parent / "shared" / "datasets" / "kodak"

# name -> config spec of the tiny variant of each architecture.
TINY_CONFIGS = {
    "swincoder": f"{CONFIG_DIR / 'tiny.py'}",
    "swinnpe": f"{CONFIG_DIR / 'swinnpe.py'}:tiny",
    "swint_charm": f"{CONFIG_DIR / 'swint_charm.py'}:tiny",
}

# Per-computation compiler options (not global flags): the test programs are tiny, so XLA's CPU
# optimisation passes cost far more than they save (a tiny SwinNPE g_a backward pass compiles in
# ~2 s instead of ~15 s). Tried in order; an option this XLA does not know falls back to the next.
_FAST_COMPILE_OPTIONS = (
    {"xla_backend_optimization_level": 0, "xla_cpu_use_fusion_emitters": False},
    {"xla_backend_optimization_level": 0},
    {},
)


def load_tiny(name: str):
    """A fresh (mutable) copy of the tiny config of architecture ``name``."""
    return load_config(TINY_CONFIGS[name])


def compile_fast(fn, *args):
    """``jax.jit(fn)`` compiled for ``args`` with cheap compiler options; returns the executable.

    Static (non-array) arguments must be closed over by ``fn``.
    """
    return compile_lowered(jax.jit(fn).lower(*args))


def compile_lowered(lowered):
    """``lowered.compile()`` with the cheapest compiler options this XLA knows."""
    for i, options in enumerate(_FAST_COMPILE_OPTIONS):
        try:
            return lowered.compile(compiler_options=options)
        except Exception as e:  # an unknown option: INVALID_ARGUMENT "No such compile option"
            if i == len(_FAST_COMPILE_OPTIONS) - 1 or "compile option" not in str(e):
                raise
    raise AssertionError("unreachable")


def run_fast(fn, *args):
    """Compiles ``fn`` with :func:`compile_fast` and runs it once on ``args``."""
    return compile_fast(fn, *args)(*args)


@pytest.fixture(scope="session")
def tiny():
    """The loader :func:`load_tiny`, for tests that pick architectures themselves."""
    return load_tiny


def read_tensorboard(folder) -> dict:
    """``{tag: [(step, summary value proto)]}`` from the tensorboardX event files in ``folder``.

    Event files are TFRecords: a little-endian u64 length, its u32 CRC, the serialized ``Event``
    and the data's u32 CRC.
    """
    import struct

    from tensorboardX.proto import event_pb2

    out: dict = {}
    for f in sorted(pathlib.Path(folder).glob("events.out.tfevents.*")):
        data, i = f.read_bytes(), 0
        while i < len(data):
            (n,) = struct.unpack("<Q", data[i : i + 8])
            event = event_pb2.Event.FromString(data[i + 12 : i + 12 + n])
            i += 12 + n + 4
            for v in event.summary.value:
                out.setdefault(v.tag, []).append((event.step, v))
    return out


@pytest.fixture(scope="session")
def tensorboard_events():
    """:func:`read_tensorboard`: the summary values of a folder's event files, per tag."""
    return read_tensorboard


@pytest.fixture(scope="session")
def compiled():
    """:func:`compile_fast`: jit and compile cheaply; returns the executable."""
    return compile_fast


@pytest.fixture(scope="session")
def compiled_lowered():
    """:func:`compile_lowered`: compile an already lowered program cheaply."""
    return compile_lowered


@pytest.fixture(scope="session")
def fast():
    """:func:`run_fast`: jit, compile cheaply, run once."""
    return run_fast


_PARAMS: dict[tuple[str, int], tuple] = {}


def make_tiny_params(name: str = "swincoder", seed: int = 0) -> tuple:
    """``(config, codec, params)`` of the tiny model ``name`` (random init, host arrays), cached.

    The one way tests make a model's parameters: every test of a session that asks for the same
    architecture and seed gets the same arrays (and the compiled programs of one export).
    """
    if (name, seed) not in _PARAMS:
        import numpy as np

        from swinjax.models import build_codec

        config = load_tiny(name)
        codec = build_codec(config)
        x = np.zeros((1, 64, 64, 3), np.float32)
        lm = np.ones((1,), np.float32)
        params = run_fast(lambda: codec.init(jax.random.key(seed), x, lm, jax.random.key(1)))
        _PARAMS[(name, seed)] = (config, codec, jax.tree.map(np.asarray, params))
    return _PARAMS[(name, seed)]


@pytest.fixture(scope="session")
def tiny_params():
    """:func:`make_tiny_params`: ``(config, codec, params)`` of a tiny model."""
    return make_tiny_params


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory):
    """The export of the tiny SwinCoder (random init), made once per session.

    Every module that codes files with it shares it, so
    :func:`swinjax.evaluation.open_codec` hands them all the same compiled codec.
    """
    from swinjax.export import export

    config, _, params = make_tiny_params("swincoder")
    return export(config, params, tmp_path_factory.mktemp("tiny-export"))


def make_photo(h: int, w: int, seed: int = 0):
    """A ``uint8 [h, w, 3]`` crop of a Kodak photo (synthetic texture when ../shared is absent)."""
    import numpy as np
    from PIL import Image

    path = KODAK / f"kodim{seed % 24 + 1:02d}.png"
    if path.is_file():
        img = np.asarray(Image.open(path).convert("RGB"))
        return np.ascontiguousarray(img[50 : 50 + h, 80 : 80 + w])
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / 40.0
    base = np.stack([np.sin(xx + seed), np.cos(yy * 1.3), np.sin(xx * yy / 3)], -1)
    return np.clip(128 + 90 * base + rng.normal(0, 10, base.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="session")
def photo():
    """:func:`make_photo`: ``photo(h, w, seed)`` -> a photo crop."""
    return make_photo


@pytest.fixture
def ship(monkeypatch, tmp_path_factory):
    """Stands in for the models shipped in the package, for one test.

    Returns ``add(name, export=None, model_id=None)``: ``export`` is linked in as shipped model
    ``name`` (the same directory, so cached compiled codecs are reused); without it, ``name`` is a
    decoy with only a ``model.json`` naming ``model_id`` (loading it fails, so a test notices when
    it is picked).
    """
    import json

    from swinjax import export as exports

    root = tmp_path_factory.mktemp("shipped")
    monkeypatch.setattr(exports, "shipped_root", lambda: root)

    def add(name, export=None, model_id=None):
        path = root / name
        if export is not None:
            path.symlink_to(pathlib.Path(export).resolve(), target_is_directory=True)
        else:
            path.mkdir()
            meta = {"format": exports.EXPORT_FORMAT, "model_id": model_id or name}
            (path / "model.json").write_text(json.dumps(meta))
        return path

    return add


# Primitives that only pass values on (their sub-jaxprs are checked) or broadcast a constant.
_PASS_THROUGH = {"custom_vjp_call", "custom_jvp_call", "pjit", "jit", "closed_call"}


def _low_precision_values(jaxpr) -> set[str]:
    """Computations in ``jaxpr`` (and its sub-jaxprs) that produce float values below float64.

    A call's operands and a broadcast constant are no computation: the custom-derivative Dense
    passes unused float32 LayerNorm placeholders to its GELU form.
    """
    import jax.numpy as jnp

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


def _entropy_precisions(codec) -> set[str]:
    """Float dtypes below float64 that ``codec``'s decoder-side entropy parameters compute.

    Traces (without running) the whole chain the decoder runs: ``h_s`` from the z symbols, then
    every group's parameters and the fill that feeds its values back as context.
    """
    import jax.numpy as jnp

    from swinjax import compression

    c, p = codec.module, codec.params64

    def chain(z_sym, lm):
        state, _ = compression._hyper(c, p, z_sym)
        for k in range(codec.num_groups):
            margin = compression.PIN_MARGIN
            mu = compression._group_params(c, codec.scale_table, margin, k, p, state, lm)[0]
            state = compression._fill(c, k, p, state, jnp.zeros(mu.shape, jnp.int32), mu, lm)
        return state

    with jax.enable_x64(True):
        lm = jnp.full((1,), 256.0, jnp.float64)
        z_sym = jnp.zeros((1, 2, 3, int(codec.model_config.hyper_channels)), jnp.int32)
        return _low_precision_values(jax.make_jaxpr(chain)(z_sym, lm).jaxpr)


@pytest.fixture(scope="session")
def entropy_precisions():
    """``f(image_codec) -> set``: the float dtypes below float64 of its entropy-parameter path
    (``"primitive:dtype"`` strings; empty when everything runs in float64)."""
    return _entropy_precisions
