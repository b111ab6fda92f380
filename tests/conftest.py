"""Shared test set-up: JAX on CPU, tiny configs of the three architectures, cheap compiles.

``JAX_PLATFORMS`` is defaulted to cpu (these are CPU tests and must not grab an accelerator) and
XLA's backend optimisation level to 0 (compile time dominates tiny test programs); tests that need
e.g. several host devices append their flags to ``XLA_FLAGS``.
"""

import os
import pathlib

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# The test programs are tiny: XLA's CPU optimisation passes cost far more compile time than they
# save at run time. Subprocesses inherit the flag, so encoder and decoder processes compile the
# same programs. (Set before JAX starts; tests that need more flags append to it.)
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0"
    ).strip()

import jax  # noqa: E402
import pytest  # noqa: E402

from swinjax.config_utils import load_config  # noqa: E402

CONFIG_DIR = pathlib.Path(__file__).resolve().parent.parent / "configs"

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
    lowered = jax.jit(fn).lower(*args)
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


@pytest.fixture(scope="session")
def fast():
    """:func:`run_fast`: jit, compile cheaply, run once."""
    return run_fast


@pytest.fixture
def ship(monkeypatch, tmp_path_factory):
    """Stands in for the models shipped in the package, for one test.

    Returns ``add(name, export=None, model_id=None)``: ``export`` is linked in as shipped model
    ``name`` (the same directory, so cached compiled codecs are reused); without it, ``name`` is a
    decoy with only a ``model.json`` naming ``model_id`` (loading it fails, so a test notices when
    it is picked).
    """
    import json

    from swinjax import checkpoint

    root = tmp_path_factory.mktemp("shipped")
    monkeypatch.setattr(checkpoint, "shipped_root", lambda: root)

    def add(name, export=None, model_id=None):
        path = root / name
        if export is not None:
            path.symlink_to(pathlib.Path(export).resolve(), target_is_directory=True)
        else:
            path.mkdir()
            meta = {"format": checkpoint.EXPORT_FORMAT, "model_id": model_id or name}
            (path / "model.json").write_text(json.dumps(meta))
        return path

    return add
