"""Loading ``configs/*.py`` files: ``get_config(arg)`` modules in the big_vision style.

Config files are plain Python files, not a package, so that ``--config configs/swinnpe.py:tiny``
works from any working directory. A variant derives from its base by loading the sibling file with
:func:`load_sibling` and changing what differs, never by copying it.
"""

from __future__ import annotations

import importlib.util
import pathlib
import sys
from types import ModuleType

import ml_collections


def load_module(path: str | pathlib.Path) -> ModuleType:
    """Imports a config file by path (cached per resolved path)."""
    path = pathlib.Path(path).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    name = f"swinjax_config_{path.stem}_{abs(hash(str(path)))}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import config file {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def load_sibling(this_file: str, stem: str) -> ModuleType:
    """Imports ``<dir of this_file>/<stem>.py``: how a variant reaches its base config."""
    return load_module(pathlib.Path(this_file).parent / f"{stem}.py")


def load_config(spec: str) -> ml_collections.ConfigDict:
    """Loads ``path/to/config.py[:arg]`` the way absl's ``config_flags`` does.

    Args:
        spec: a config file path, optionally followed by ``:arg`` passed to ``get_config``.

    Returns:
        The ConfigDict returned by ``get_config``.
    """
    path, _, arg = spec.partition(":")
    module = load_module(path)
    if not hasattr(module, "get_config"):
        raise ValueError(f"{path} has no get_config()")
    return module.get_config(arg) if arg else module.get_config()
