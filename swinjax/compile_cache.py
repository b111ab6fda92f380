"""A persistent XLA compilation cache for the command-line tools, scoped to this machine.

Every ``python -m swinjax compress`` starts a fresh process that would otherwise compile the same
programs again (the analysis, hyperprior, one program per entropy group and the synthesis): on two
CPU cores that is most of a single image's run time. JAX can keep compiled executables on disk and
load them in later processes; :func:`enable` turns that on for ``python -m swinjax``,
``evaluate.py`` and ``train.py`` (a library user calls it, or sets JAX's own option, if they want
the same).

Where: ``$SWINJAX_COMPILE_CACHE`` if set (``off`` turns the cache off), else
``$XDG_CACHE_HOME/swinjax/xla`` (``~/.cache/swinjax/xla``), in a sub-directory named after this
machine: the jax/jaxlib versions and the host CPU's instruction-set features. JAX's cache key
already holds the program, the jaxlib version, the backend and ``XLA_FLAGS`` (so
``--xla_cpu_max_isa`` runs get their own entries), but not the host CPU's features: a cache on a
shared home directory must never hand one machine code compiled for another CPU, so each CPU gets
its own folder. A ``JAX_COMPILATION_CACHE_DIR`` (JAX's own setting) wins over all of this.

A cache that cannot be created (read-only home, full disk) is simply not used: compiling is
always the fallback, and JAX treats a bad cache entry as a miss.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import platform

ENV = "SWINJAX_COMPILE_CACHE"
# Compiles shorter than this are not written (JAX's default is 1 s): the group programs of the
# entropy model compile in ~0.2-1 s each and are many.
MIN_COMPILE_SECONDS = 0.2
# Least-recently-used entries are evicted beyond this size.
MAX_BYTES = 1 << 30
_OFF = {"", "0", "off", "none", "false", "no"}


def machine_tag() -> str:
    """A short name for this machine's compiled code: versions, architecture and CPU features.

    The features come from ``/proc/cpuinfo`` (Linux; the ``flags``/``Features`` lines) and the
    processor name elsewhere.
    """
    import jax
    import jaxlib

    features = platform.processor()
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.split(":")[0].strip() in ("flags", "Features"):
                features = " ".join(sorted(line.split(":", 1)[1].split()))
                break
    except OSError:
        pass
    text = f"{jax.__version__}|{jaxlib.__version__}|{platform.machine()}|{features}"
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    return f"jax{jax.__version__}-{platform.machine()}-{digest}"


def user_cache_root() -> pathlib.Path:
    """The user's cache folder of swinjax: ``$XDG_CACHE_HOME/swinjax`` (``~/.cache/swinjax``)."""
    base = os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache"
    return pathlib.Path(base) / "swinjax"


def default_dir() -> pathlib.Path | None:
    """The cache folder :func:`enable` would use, or None when ``SWINJAX_COMPILE_CACHE=off``."""
    env = os.environ.get(ENV)
    if env is not None:
        if env.strip().lower() in _OFF:
            return None
        root = pathlib.Path(env).expanduser()
    else:
        root = user_cache_root() / "xla"
    return root / machine_tag()


def enable() -> pathlib.Path | None:
    """Turns on JAX's persistent compilation cache in :func:`default_dir`; returns the folder.

    Call it before the first compilation. Returns JAX's folder unchanged when one is already set
    (``JAX_COMPILATION_CACHE_DIR``), and None when the cache is off or its folder cannot be made.
    """
    import jax

    current = jax.config.jax_compilation_cache_dir
    if current:
        return pathlib.Path(current)
    path = default_dir()
    if path is None:
        return None
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError:
        return None
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
    jax.config.update("jax_compilation_cache_max_size", MAX_BYTES)
    return path
