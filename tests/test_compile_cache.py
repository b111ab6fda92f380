"""The command-line tools' persistent compilation cache: where it lives, when it is off, and that a
second ``python -m swinjax compress`` loads its programs instead of compiling them."""

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
from PIL import Image

from swinjax import compile_cache

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_the_folder_is_per_machine_under_the_user_cache(monkeypatch, tmp_path):
    monkeypatch.delenv(compile_cache.ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    path = compile_cache.default_dir()
    assert path == tmp_path / "swinjax" / "xla" / compile_cache.machine_tag()
    import jax

    assert compile_cache.machine_tag().startswith(f"jax{jax.__version__}-")
    monkeypatch.setenv(compile_cache.ENV, str(tmp_path / "mine"))
    assert compile_cache.default_dir() == tmp_path / "mine" / compile_cache.machine_tag()
    for off in ("off", "0", ""):
        monkeypatch.setenv(compile_cache.ENV, off)
        assert compile_cache.default_dir() is None


def test_the_tag_changes_with_the_cpu_features(monkeypatch):
    """Two CPUs with other instruction sets never share compiled code."""
    real = pathlib.Path.read_text
    tags = []
    for flags in ("fpu sse4_2 avx avx2", "fpu sse4_2 avx avx2 avx512f"):

        def fake(self, *a, _flags=flags, **k):
            if str(self) == "/proc/cpuinfo":
                return f"processor\t: 0\nflags\t\t: {_flags}\n"
            return real(self, *a, **k)

        monkeypatch.setattr(pathlib.Path, "read_text", fake)
        tags.append(compile_cache.machine_tag())
    assert tags[0] != tags[1]


def test_jaxs_own_setting_wins():
    """The test session sets JAX_COMPILATION_CACHE_DIR (conftest): enable() keeps it."""
    assert compile_cache.enable() == pathlib.Path(os.environ["JAX_COMPILATION_CACHE_DIR"])


# The CLI in a fresh process, counting JAX's compilation-cache events.
COUNTING_CLI = textwrap.dedent(
    """
    import collections, json, sys
    import jax.monitoring
    events = collections.Counter()
    jax.monitoring.register_event_listener(lambda name, **kw: events.update([name]))
    from swinjax import cli
    status = cli.main(sys.argv[1:])
    print("EVENTS " + json.dumps(events))
    sys.exit(status)
    """
)


def _compress(tiny_export, src, out, env):
    argv = ["--ckpt", str(tiny_export), str(src), str(out), "--lmbda", "64", "--force"]
    r = subprocess.run(
        [sys.executable, "-c", COUNTING_CLI, "compress", *argv],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    line = [x for x in r.stdout.splitlines() if x.startswith("EVENTS ")][-1]
    events = json.loads(line[7:])
    return events.get("/jax/compilation_cache/cache_hits", 0), out.read_bytes()


def test_a_second_compress_loads_its_programs_from_the_cache(tiny_export, tmp_path):
    src = tmp_path / "in.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 56, 3), np.uint8)).save(src)
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    env.update(XDG_CACHE_HOME=str(tmp_path / "cache"), JAX_PLATFORMS="cpu")
    env.pop(compile_cache.ENV, None)
    hits1, first = _compress(tiny_export, src, tmp_path / "a.swj", env)
    folders = list((tmp_path / "cache" / "swinjax" / "xla").iterdir())
    assert len(folders) == 1 and any(folders[0].iterdir())  # one machine folder, with entries
    hits2, second = _compress(tiny_export, src, tmp_path / "b.swj", env)
    assert hits1 == 0 and hits2 > 0
    assert second == first  # a loaded program codes the same bytes
