"""Checkpoints (Orbax: train state + data iterator) and the exported inference model.

Training checkpoints live in ``workdir/checkpoints/<step>/`` with two items: ``state`` (the whole
:class:`~swinjax.train_lib.TrainState`, sharded arrays saved by every process) and ``data`` (the
grain iterator state, one file per process). Saving is asynchronous and keeps the newest
``keep_checkpoints``; a run restarted with the same workdir resumes from the latest complete one.

The *export* is what compress, decompress and evaluation load: a directory with ``model.json``
(format, model id, config hash, the model config, the step), ``params.msgpack`` (Flax
serialization of the parameters, host numpy arrays) and ``tables.npz`` (the integer coding tables
of z and y, built once by :func:`build_tables` and never rebuilt when decoding: DESIGN.md §5
rule 1).
"""

from __future__ import annotations

import hashlib
import json
import pathlib
from dataclasses import dataclass
from typing import Any

import flax.serialization
import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

EXPORT_FORMAT = "swinjax-export"
EXPORT_VERSION = 1


def config_hash(model: Any) -> str:
    """A stable 16-hex-digit hash of the model config (stored in files and exports)."""
    d = model.to_dict() if hasattr(model, "to_dict") else dict(model)
    blob = json.dumps(d, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def checkpoint_manager(workdir: str | pathlib.Path, config: Any) -> ocp.CheckpointManager:
    """The Orbax manager of a workdir (async saves, keeps ``config.keep_checkpoints``)."""
    path = pathlib.Path(workdir).resolve() / "checkpoints"
    options = ocp.CheckpointManagerOptions(
        max_to_keep=int(config.keep_checkpoints),
        enable_async_checkpointing=True,
        create=True,
    )
    return ocp.CheckpointManager(path, options=options, item_names=("state", "data"))


@dataclass
class ExportedModel:
    """An inference checkpoint: config, parameters and coding tables."""

    model: ml_collections.ConfigDict
    params: Any
    tables: dict[str, np.ndarray]
    model_id: str
    config_hash: str
    step: int
    path: pathlib.Path | None = None  # the export directory it was read from


def build_tables(codec: Any, params: Any) -> dict[str, np.ndarray]:
    """Builds the integer coding tables of z (factorized) and y (Gaussian) from parameters.

    The explicit, typed table-building step (tfc ``_build_tables``, CompressAI ``update()``):
    run once at export, stored with the model, loaded as data by the decoder.
    """
    from swinjax.entropy.factorized import trim_table_inputs
    from swinjax.entropy.gaussian import scale_table
    from swinjax.entropy.tables import build_factorized_tables, build_gaussian_tables

    raw = trim_table_inputs(codec.apply(params, method=codec.z_table_inputs))
    z = build_factorized_tables(raw["pmf"], raw["length"], raw["offset"], raw["tail_mass"])
    y = build_gaussian_tables(scale_table())
    out = {f"z_{k}": v for k, v in z.to_arrays().items()}
    out.update({f"y_{k}": v for k, v in y.to_arrays().items()})
    return out


def export(config: Any, params: Any, out_dir: str | pathlib.Path, step: int = 0) -> pathlib.Path:
    """Writes an export directory (model.json, params.msgpack, tables.npz) and returns its path."""
    from swinjax.models import build_codec

    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    codec = build_codec(config)
    host = jax.tree.map(np.asarray, jax.device_get(params))
    tables = build_tables(codec, host)
    model = config.model if hasattr(config, "model") else config
    meta = {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "model_id": str(model.id),
        "config_hash": config_hash(model),
        "step": int(step),
        "model": model.to_dict(),
    }
    tmp = out / "params.msgpack.tmp"
    tmp.write_bytes(flax.serialization.msgpack_serialize(host))
    tmp.replace(out / "params.msgpack")
    with (out / "tables.npz.tmp").open("wb") as f:
        np.savez(f, **tables)
    (out / "tables.npz.tmp").replace(out / "tables.npz")
    # model.json last and atomically: its presence marks a complete export.
    (out / "model.json.tmp").write_text(json.dumps(meta, indent=2, sort_keys=True, default=str))
    (out / "model.json.tmp").replace(out / "model.json")
    return out


def _to_config(d: dict[str, Any]) -> ml_collections.ConfigDict:
    def tuples(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: tuples(x) for k, x in v.items()}
        if isinstance(v, list):
            return tuple(tuples(x) for x in v)
        return v

    return ml_collections.ConfigDict(tuples(d))


def load_export(path: str | pathlib.Path) -> ExportedModel:
    """Loads an export directory written by :func:`export`.

    Raises:
        FileNotFoundError / ValueError: with a message naming the missing or bad file.
    """
    p = pathlib.Path(path)
    meta_path = p / "model.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{p} is not a swinjax export (no model.json)")
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != EXPORT_FORMAT:
        raise ValueError(f"{meta_path} is not a swinjax export")
    if int(meta.get("version", -1)) != EXPORT_VERSION:
        raise ValueError(f"unsupported export version {meta.get('version')} in {meta_path}")
    model = _to_config(meta["model"])
    from swinjax.models import build_codec

    codec = build_codec(model)
    abstract = jax.eval_shape(lambda: _init_params(codec))
    target = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), abstract)
    params = flax.serialization.msgpack_restore((p / "params.msgpack").read_bytes())
    params = flax.serialization.from_state_dict(target, params)
    with np.load(p / "tables.npz") as f:
        tables = {k: f[k] for k in f.files}
    return ExportedModel(
        model, params, tables, meta["model_id"], meta["config_hash"], int(meta["step"]), p
    )


def _init_params(codec: Any) -> Any:
    import jax.numpy as jnp

    from swinjax.transforms import downsampling_factor

    f = downsampling_factor(codec.model)
    x = jnp.zeros((1, f, f, 3), jnp.float32)
    return codec.init(jax.random.key(0), x, jnp.ones((1,), jnp.float32), jax.random.key(1))


def load_model(path: str | pathlib.Path) -> ExportedModel:
    """Loads ``--ckpt``: an export directory, or a training workdir (latest step, exported).

    A workdir's latest checkpoint is exported on the fly into ``workdir/export-<step>`` (kept as a
    cache: later loads of the same step read it directly).

    Raises:
        FileNotFoundError: neither an export nor a workdir with checkpoints.
    """
    p = pathlib.Path(path)
    if (p / "model.json").is_file():
        return load_export(p)
    cfg_path = p / "config.json"
    if not (cfg_path.is_file() and (p / "checkpoints").is_dir()):
        raise FileNotFoundError(
            f"{p} is neither an export directory (model.json) nor a training workdir "
            "(config.json + checkpoints/)"
        )
    config = _to_config(json.loads(cfg_path.read_text()))
    mgr = checkpoint_manager(p, config)
    step = mgr.latest_step()
    if step is None:
        raise FileNotFoundError(f"{p / 'checkpoints'} holds no complete checkpoint")
    cache = p / f"export-{step}"
    if (cache / "model.json").is_file():
        mgr.close()
        return load_export(cache)
    from swinjax import sharding
    from swinjax.train_lib import Trainer, restore_target

    trainer = Trainer(config, mesh=sharding.make_mesh(1, 1, devices=jax.devices()[:1]))
    restored = mgr.restore(
        step, args=ocp.args.Composite(state=ocp.args.StandardRestore(restore_target(trainer)))
    )
    mgr.close()
    export(config, restored.state.params, cache, step)
    return load_export(cache)
