"""Codecs, keyed by explicit string ids (never registry positions)."""

from swinjax.models.codec import Codec
from swinjax.models.registry import MODEL_IDS, build_codec

__all__ = ["MODEL_IDS", "Codec", "build_codec"]
