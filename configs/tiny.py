"""Tiny SwinCoder for CPU tests and quick end-to-end checks (same structure, small widths).

python -m swinjax macs --config configs/tiny.py
"""

import ml_collections

from swinjax.config_utils import load_sibling


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The SwinCoder config with :func:`apply_tiny` applied."""
    if arg:
        raise ValueError(f"configs/tiny.py takes no argument, got {arg!r}")
    return load_sibling(__file__, "swincoder").get_config("tiny")
