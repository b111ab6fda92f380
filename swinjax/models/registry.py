"""Model ids and construction. Ids are explicit strings stored in files and checkpoints."""

from __future__ import annotations

from typing import Any

import ml_collections

from swinjax.models.codec import Codec

#: Every architecture id a config may carry (tiny variants are the same code, smaller widths).
MODEL_IDS: tuple[str, ...] = (
    "swincoder",
    "swincoder-tiny",
    "swincoder-ref",
    "swinnpe",
    "swinnpe-tiny",
    "swint-charm",
    "swint-charm-tiny",
)


def build_codec(config: Any, dtype: Any = None) -> Codec:
    """Builds the :class:`Codec` for ``config.model`` (a ConfigDict, frozen here).

    Raises:
        ValueError: unknown ``model.id``.
    """
    model = config.model if hasattr(config, "model") else config
    if model.id not in MODEL_IDS:
        raise ValueError(f"unknown model id {model.id!r}; known: {', '.join(MODEL_IDS)}")
    frozen = ml_collections.FrozenConfigDict(model)
    return Codec(frozen, dtype)
