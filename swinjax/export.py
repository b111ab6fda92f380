"""Exported inference models: writing, reading and finding them (shipped models included).

The *export* is what compress, decompress and evaluation load: a directory with ``model.json``
(format, model id, config hash, the model config, the step, the stored parameter dtype),
``params.msgpack`` (Flax serialization of the parameters, host numpy arrays, float32 or float16)
and ``tables.npz`` (the integer coding tables of z and y, built once by :func:`build_tables` and
never rebuilt when decoding). Loading one restores parameters only: no optimizer state, no
trainer, no Orbax.

*Shipped models* are exports inside the package (``swinjax/weights/<name>/``, package data, found
through :mod:`importlib.resources`), so an installed swinjax compresses, decompresses and
evaluates without a checkpoint of the user's own: :func:`resolve_ckpt` turns ``--ckpt`` (a name,
a path, or nothing for :data:`DEFAULT_MODEL`) into a directory, and :func:`shipped_model_for`
finds the model that wrote a file from the model id in its header. Training workdirs are turned
into exports by :func:`swinjax.checkpoint.load_model`.

A *decoder export* (:func:`export_decoder`) holds only a synthesis transform ``g_s`` fine-tuned for
another export whose encoder and entropy models it leaves as they are (SwinCoder's perceptual
stages, Li et al., CLIC 2025, §II-B, in their frozen-encoder reading): its ``model.json`` names the
export it pairs with (model id, config hash, name), and loading it loads that export and replaces
its ``g_s``. Files are the same bytes whichever decoder reads them; ``decoder`` ("mse" for a full
export, e.g. "perceptual") says which reconstruction one gets.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import io
import json
import os
import pathlib
from dataclasses import dataclass
from typing import Any

import flax.serialization
import jax
import ml_collections
import numpy as np

from swinjax.atomic import write_atomic

EXPORT_FORMAT = "swinjax-export"
EXPORT_VERSION = 1
# Dtypes parameters may be stored in. float16 halves the size of a shipped model (a wheel should
# stay small); loaders always get float32 back. Exports without the field are float32.
PARAM_DTYPES = ("float32", "float16")
# The shipped model that compress, evaluate.py and load_model() use when no --ckpt is given.
DEFAULT_MODEL = "swincoder-ref"


def config_hash(model: Any) -> str:
    """A stable 16-hex-digit hash of the model config (stored in files and exports)."""
    d = model.to_dict() if hasattr(model, "to_dict") else dict(model)
    blob = json.dumps(d, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def encoder_digest(params: Any) -> str:
    """A 16-hex-digit hash of every parameter outside ``g_s``: what fixes a file's bytes.

    Two exports with one model id and config hash but different training (a continued reference
    model) write different files; a decoder export records its base's digest so that it never
    decodes the files of another training of the same config.
    """
    from flax import traverse_util

    flat = traverse_util.flatten_dict(jax.device_get(params), sep="/")
    h = hashlib.sha256()
    for k in sorted(flat):
        if "/g_s/" in f"/{k}/":
            continue
        v = np.ascontiguousarray(np.asarray(flat[k], np.float32))
        h.update(k.encode() + str(v.shape).encode() + v.tobytes())
    return h.hexdigest()[:16]


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
    param_dtype: str = "float32"  # how params.msgpack stores them (params here are float32)
    decoder: str = "mse"  # which synthesis: "mse" (a full export) or a decoder export's name
    pairs_with: str | None = None  # a decoder export: the export directory whose g_s it replaces


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


def _leaf_name(path: tuple) -> str:
    return "/".join(str(getattr(k, "key", getattr(k, "name", k))) for k in path)


def round_params(params: Any, param_dtype: str) -> tuple[Any, Any]:
    """Floating-point parameters as stored in ``param_dtype``, and as a loader gets them back.

    Returns:
        ``(stored, loaded)``: host numpy trees; ``stored`` has every floating leaf in
        ``param_dtype``, ``loaded`` is ``stored`` cast back to float32 (for float32 both are the
        parameters themselves). Tables built from ``loaded`` match what a decoder loads exactly.

    Raises:
        ValueError: an unknown dtype, or a finite parameter that ``param_dtype`` cannot hold
            (float16 overflows above 65504): storing it would silently break the model.
    """
    if param_dtype not in PARAM_DTYPES:
        raise ValueError(f"param_dtype must be one of {PARAM_DTYPES}, got {param_dtype!r}")
    host = jax.tree.map(np.asarray, jax.device_get(params))
    if param_dtype == "float32":
        return host, host
    dtype = np.dtype(param_dtype)

    def store(path: tuple, a: np.ndarray) -> np.ndarray:
        if not np.issubdtype(a.dtype, np.floating):
            return a
        with np.errstate(over="ignore"):
            b = a.astype(dtype)
        bad = np.isfinite(a) & ~np.isfinite(b)
        if bad.any():
            raise ValueError(
                f"parameter {_leaf_name(path)} holds {float(np.abs(a[bad]).max()):g}, beyond "
                f"{param_dtype}'s range: export it as float32"
            )
        return b

    stored = jax.tree_util.tree_map_with_path(store, host)
    loaded = jax.tree.map(
        lambda a: a.astype(np.float32) if np.issubdtype(a.dtype, np.floating) else a, stored
    )
    return stored, loaded


def export(
    config: Any,
    params: Any,
    out_dir: str | pathlib.Path,
    step: int = 0,
    param_dtype: str = "float32",
    history: dict[str, Any] | None = None,
) -> pathlib.Path:
    """Writes an export directory (model.json, params.msgpack, tables.npz) and returns its path.

    Args:
        config: the training config (with ``.model``) or the model config itself.
        params: the parameters (device or host arrays).
        out_dir: the export directory (created if needed; files in it are replaced).
        step: the training step, recorded in model.json.
        param_dtype: ``"float32"`` or ``"float16"``, how ``params.msgpack`` stores floating
            parameters. float16 halves the size (for models shipped in the package); the coding
            tables are then built from the float16-rounded parameters, so that the encoder, the
            decoder and the tables all see exactly what :func:`load_export` returns.
        history: the whole training behind these parameters, recorded in model.json as
            ``history`` (``total_steps``, ``cpu_core_hours``, ``runs``): ``step`` is only the last
            run's step, and a model continued from another export would otherwise forget its
            past (:func:`swinjax.train_lib.train` fills it from ``init_from``).

    Raises:
        ValueError: see :func:`round_params`.
    """
    from swinjax.models import build_codec

    out = pathlib.Path(out_dir)
    stored, loaded = round_params(params, param_dtype)
    codec = build_codec(config)
    tables = build_tables(codec, loaded)
    out.mkdir(parents=True, exist_ok=True)
    model = config.model if hasattr(config, "model") else config
    meta = {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "model_id": str(model.id),
        "config_hash": config_hash(model),
        "step": int(step),
        "param_dtype": param_dtype,
        "model": model.to_dict(),
    }
    if history:
        meta["history"] = history
    write_atomic(out / "params.msgpack", flax.serialization.msgpack_serialize(stored))
    buf = io.BytesIO()
    np.savez(buf, **tables)
    write_atomic(out / "tables.npz", buf.getvalue())
    # model.json last: its presence marks a complete export.
    text = json.dumps(meta, indent=2, sort_keys=True, default=str)
    write_atomic(out / "model.json", text.encode())
    return out


def export_decoder(
    base: ExportedModel,
    params: Any,
    out_dir: str | pathlib.Path,
    step: int,
    decoder: str = "perceptual",
    base_name: str | None = None,
    training: dict[str, Any] | None = None,
) -> pathlib.Path:
    """Writes a decoder export: the ``g_s`` of ``params``, to decode ``base``'s files.

    Args:
        base: the export whose encoder, entropy models and tables the decoder pairs with.
        params: parameters of a model trained from ``base`` with everything but ``g_s`` frozen.
        out_dir: the export directory.
        step: the fine-tuning step, recorded in model.json.
        decoder: its name (``--decoder NAME`` selects it); not ``"mse"``.
        base_name: how to find ``base`` when loading: a shipped model's name or a directory
            (relative paths are taken from ``out_dir``'s parent); default: ``base``'s folder name.
        training: what to record of its training (stages, steps, CPU hours).

    Raises:
        ValueError: ``params`` differ from ``base`` outside ``g_s`` (the encoder was trained, so
            files would not be the same bytes), or ``decoder`` is ``"mse"``.
    """
    from flax import traverse_util

    if decoder == "mse":
        raise ValueError('a decoder export needs a name other than "mse"')
    flat_new = traverse_util.flatten_dict(jax.device_get(params), sep="/")
    flat_base = traverse_util.flatten_dict(base.params, sep="/")
    stored, _ = round_params(params, base.param_dtype)
    for k, v in flat_base.items():
        if "/g_s/" in f"/{k}/":
            continue
        if k not in flat_new or not np.array_equal(np.asarray(flat_new[k], np.float32), v):
            raise ValueError(
                f"parameter {k} differs from the base export {base.path}: only g_s may change "
                "for a decoder export (train with perceptual.freeze_encoder=True)"
            )
    g_s = {"params": {"g_s": stored["params"]["g_s"]}}
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    meta = {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "kind": "decoder",
        "decoder": decoder,
        "model_id": base.model_id,
        "config_hash": base.config_hash,
        "step": int(step),
        "param_dtype": base.param_dtype,
        "model": base.model.to_dict(),
        "pairs_with": {
            "name": base_name or (base.path.name if base.path else base.model_id),
            "model_id": base.model_id,
            "config_hash": base.config_hash,
            "encoder_digest": encoder_digest(base.params),
            "step": base.step,
        },
        "training": training or {},
    }
    write_atomic(out / "params.msgpack", flax.serialization.msgpack_serialize(g_s))
    text = json.dumps(meta, indent=2, sort_keys=True, default=str)
    write_atomic(out / "model.json", text.encode())
    return out


def _load_decoder(p: pathlib.Path, meta: dict[str, Any]) -> ExportedModel:
    """A decoder export: its base export (found by ``pairs_with``) with ``g_s`` replaced."""
    pair = meta.get("pairs_with") or {}
    name = str(pair.get("name", ""))
    shipped = shipped_models()
    candidates = [p.parent / name, pathlib.Path(name)]
    base_dir = next((c for c in candidates if name and (c / "model.json").is_file()), None)
    if base_dir is None and name in shipped:
        base_dir = shipped[name]
    if base_dir is None or base_dir.resolve() == p.resolve():
        raise FileNotFoundError(
            f"{p} is a {meta.get('decoder')!r} decoder for {name!r}, which is neither beside it "
            f"nor shipped (shipped: {_shipped_list()})"
        )
    base = load_export(base_dir)
    if base.pairs_with is not None:
        raise ValueError(f"{p} pairs with {base_dir}, itself a decoder export")
    if (base.model_id, base.config_hash) != (pair.get("model_id"), pair.get("config_hash")):
        raise ValueError(
            f"{p} decodes files of {pair.get('model_id')} (config {pair.get('config_hash')}), "
            f"but {base_dir} is {base.model_id} (config {base.config_hash})"
        )
    digest = pair.get("encoder_digest")
    if digest is not None and digest != encoder_digest(base.params):
        raise ValueError(
            f"{p} was trained on another {base.model_id} than {base_dir} (its encoder digest "
            f"{digest} is not {encoder_digest(base.params)}): the base model was retrained, so "
            "the decoder must be fine-tuned again (scripts/perceptual_finetune.py)"
        )
    raw = flax.serialization.msgpack_restore((p / "params.msgpack").read_bytes())
    try:
        g_s = flax.serialization.from_state_dict(base.params["params"]["g_s"], raw["params"]["g_s"])
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{p / 'params.msgpack'}: not a g_s for {base_dir} ({e})") from e
    for a, b in zip(
        jax.tree.leaves(g_s), jax.tree.leaves(base.params["params"]["g_s"]), strict=True
    ):
        if np.shape(a) != np.shape(b):
            raise ValueError(f"{p / 'params.msgpack'}: g_s shapes differ from {base_dir}'s")
    g_s = jax.tree.map(lambda a: np.asarray(a).astype(np.float32), g_s)
    params = {**base.params, "params": {**base.params["params"], "g_s": g_s}}
    return ExportedModel(
        base.model,
        params,
        base.tables,
        base.model_id,
        base.config_hash,
        int(meta["step"]),
        p,
        base.param_dtype,
        str(meta.get("decoder", "?")),
        str(base_dir),
    )


def to_config(d: dict[str, Any]) -> ml_collections.ConfigDict:
    """A ConfigDict from JSON (``model.json``, ``config.json``): lists become tuples again.

    Configs hold tuples (stage depths, window sizes); JSON turns them into lists, which would
    change the config hash and some code paths.
    """

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
    if meta.get("kind") == "decoder":
        return _load_decoder(p, meta)
    param_dtype = meta.get("param_dtype", "float32")
    if param_dtype not in PARAM_DTYPES:
        raise ValueError(f"unsupported param_dtype {param_dtype!r} in {meta_path}")
    model = to_config(meta["model"])
    target = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), abstract_params(model))
    params = flax.serialization.msgpack_restore((p / "params.msgpack").read_bytes())
    params = flax.serialization.from_state_dict(target, params)

    def as_target(path: tuple, a: Any, t: np.ndarray) -> np.ndarray:
        # float16 exports come back as float32: every program runs on what the tables were
        # built from (the float16-rounded values), whatever the storage dtype.
        a = np.asarray(a)
        if a.shape != t.shape:
            raise ValueError(
                f"{p / 'params.msgpack'}: parameter {_leaf_name(path)} has shape {a.shape}, "
                f"the model in model.json expects {t.shape}"
            )
        return a.astype(t.dtype, copy=False)

    params = jax.tree_util.tree_map_with_path(as_target, params, target)
    with np.load(p / "tables.npz") as f:
        tables = {k: f[k] for k in f.files}
    return ExportedModel(
        model,
        params,
        tables,
        meta["model_id"],
        meta["config_hash"],
        int(meta["step"]),
        p,
        param_dtype,
    )


def abstract_params(model: Any) -> Any:
    """The shapes and dtypes of a model's parameters (``jax.ShapeDtypeStruct``), computing nothing.

    Parameter shapes do not depend on the image size, so the smallest image the model takes
    (one downsampling factor square) stands in for any.

    Args:
        model: the model config (or a training config with ``.model``).
    """
    import jax.numpy as jnp

    from swinjax.models import build_codec
    from swinjax.transforms import downsampling_factor

    codec = build_codec(model)
    f = downsampling_factor(codec.model)
    x = jax.ShapeDtypeStruct((1, f, f, 3), jnp.float32)
    lm = jax.ShapeDtypeStruct((1,), jnp.float32)
    return jax.eval_shape(
        lambda x, lm: codec.init(jax.random.key(0), x, lm, jax.random.key(1)), x, lm
    )


# -- shipped models ------------------------------------------------------------------------------


def shipped_root() -> pathlib.Path:
    """The folder of the models shipped in the package (``swinjax/weights``).

    Found through :mod:`importlib.resources`, so it is the installed package's folder in a
    wheel install as well as the checkout's in an editable one.

    Raises:
        FileNotFoundError: swinjax is imported from an archive (e.g. a zip), not from files:
            exports are read as files, so shipped models need a normal installation.
    """
    root = importlib.resources.files("swinjax").joinpath("weights")
    if not isinstance(root, pathlib.Path):
        raise FileNotFoundError(
            f"swinjax is imported from {root}, not from files: shipped models need swinjax "
            "installed as files (pip install)"
        )
    return root


def shipped_models() -> dict[str, pathlib.Path]:
    """The shipped models, name -> export directory, sorted by name (none: empty).

    A name is a folder of :func:`shipped_root` holding a ``model.json``; it is what ``--ckpt
    NAME`` selects.
    """
    try:
        root = shipped_root()
    except FileNotFoundError:
        return {}
    if not root.is_dir():
        return {}
    return {d.name: d for d in sorted(root.iterdir()) if (d / "model.json").is_file()}


def _shipped_list() -> str:
    names = list(shipped_models())
    return ", ".join(names) if names else "none"


def shipped_model_for(
    model_id: str, config_hash: str | None = None, decoder: str = "mse"
) -> pathlib.Path:
    """The shipped model whose model id is ``model_id``: the decoder of a file with that id.

    Files name the model that wrote them (the container header's ``model_id``), so a file can be
    decoded without being told the model, as long as that model is shipped. When several shipped
    models share the id, the one whose config hash matches ``config_hash`` is preferred.
    ``decoder`` picks the synthesis: ``"mse"`` (the model's own) or the name of a shipped decoder
    export that pairs with it (e.g. ``"perceptual"``), which must match the hash.

    Raises:
        FileNotFoundError: no shipped model has this id (or no such decoder pairs with it); the
            message lists the shipped ones.
    """
    metas = {name: _read_meta(path) for name, path in shipped_models().items()}
    # Exact config hash first, then by name: deterministic when several share the id.
    found = sorted(
        (m.get("config_hash") != config_hash, name)
        for name, m in metas.items()
        if m.get("model_id") == model_id
        and m.get("decoder", "mse") == decoder
        and (decoder == "mse" or config_hash is None or m.get("config_hash") == config_hash)
    )
    if not found:
        listed = ", ".join(
            f"{n} (model id {m.get('model_id')}"
            + (f", decoder {m['decoder']})" if m.get("decoder", "mse") != "mse" else ")")
            for n, m in metas.items()
        )
        what = f"model id {model_id!r}" + (f" and decoder {decoder!r}" if decoder != "mse" else "")
        raise FileNotFoundError(f"no shipped model has {what} (shipped: {listed or 'none'})")
    return shipped_models()[found[0][1]]


def paired_decoders(exported: ExportedModel) -> dict[str, pathlib.Path]:
    """The shipped decoder exports that decode ``exported``'s files: decoder name -> directory."""
    out = {}
    for path in shipped_models().values():
        m = _read_meta(path)
        if m.get("kind") != "decoder":
            continue
        pair = m.get("pairs_with") or {}
        if (pair.get("model_id"), pair.get("config_hash")) != (
            exported.model_id,
            exported.config_hash,
        ) or path.resolve() == (exported.path or pathlib.Path()).resolve():
            continue
        digest = pair.get("encoder_digest")
        if digest is None or digest == encoder_digest(exported.params):
            out.setdefault(str(m.get("decoder")), path)
    return out


def history_of(export_dir: str | os.PathLike | None) -> dict[str, Any]:
    """The ``history`` an export's model.json records (``{}`` if none, or not an export)."""
    if export_dir is None:
        return {}
    h = _read_meta(pathlib.Path(export_dir)).get("history")
    return h if isinstance(h, dict) else {}


def _read_meta(export_dir: pathlib.Path) -> dict[str, Any]:
    try:
        meta = json.loads((export_dir / "model.json").read_text())
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def resolve_ckpt(arg: str | os.PathLike | None) -> pathlib.Path:
    """The directory that ``--ckpt`` means: a path as given, or a shipped model by name.

    Args:
        arg: an existing path (export directory or training workdir, used as is: it wins over a
            shipped model of the same name), the name of a shipped model (see
            :func:`shipped_models`), or ``None`` for :data:`DEFAULT_MODEL`.

    Raises:
        FileNotFoundError: ``arg`` is neither an existing path nor a shipped name, or the default
            model is not shipped; the one-line message lists the shipped names.
    """
    if arg is None:
        path = shipped_models().get(DEFAULT_MODEL)
        if path is None:
            raise FileNotFoundError(
                f"the default model {DEFAULT_MODEL!r} is not shipped with this installation "
                f"(shipped: {_shipped_list()}); give --ckpt"
            )
        return path
    p = pathlib.Path(arg)
    if p.exists():
        return p
    path = shipped_models().get(str(arg))
    if path is None:
        raise FileNotFoundError(
            f"{str(arg)!r} is neither an existing path (export directory or training workdir) "
            f"nor a shipped model (shipped: {_shipped_list()})"
        )
    return path
