"""Training checkpoints (Orbax): the train state and the data iterator of a workdir.

Training checkpoints live in ``workdir/checkpoints/<step>/`` with two items: ``state`` (the whole
train state: parameters, optimizer state, counters; sharded arrays saved by every process) and
``data`` (the grain iterator state, one file per process). Saving is asynchronous and keeps the
newest ``keep_checkpoints``; a run restarted with the same workdir resumes from the newest one
that reads (:func:`restore_newest_readable`).

Inference needs only the parameters: :func:`restore_params` reads them alone (no optimizer state,
no trainer), and :func:`load_model` turns a workdir into an export (:mod:`swinjax.export`) on the
fly, so ``--ckpt`` takes a workdir wherever it takes an export.
"""

from __future__ import annotations

import json
import os
import pathlib
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from swinjax.export import (
    ExportedModel,
    abstract_params,
    export,
    load_export,
    resolve_ckpt,
    to_config,
)

__all__ = [
    "checkpoint_manager",
    "latest_step",
    "load_model",
    "restore_newest_readable",
    "restore_params",
    "save",
]


def _ocp() -> Any:
    """``orbax.checkpoint``, imported when first needed (it is slow to import)."""
    import orbax.checkpoint as ocp

    return ocp


def checkpoint_manager(workdir: str | os.PathLike, keep: int) -> Any:
    """The Orbax ``CheckpointManager`` of a workdir (async saves, keeps the newest ``keep``)."""
    ocp = _ocp()
    path = pathlib.Path(workdir).resolve() / "checkpoints"
    options = ocp.CheckpointManagerOptions(
        max_to_keep=int(keep), enable_async_checkpointing=True, create=True
    )
    return ocp.CheckpointManager(path, options=options, item_names=("state", "data"))


def save(mgr: Any, step: int, state: Any, data_iter: Any) -> None:
    """Starts saving ``state`` and the grain iterator's position as checkpoint ``step``."""
    import grain

    ocp = _ocp()
    mgr.save(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), data=grain.checkpoint.CheckpointSave(data_iter)
        ),
    )


def restore_newest_readable(
    workdir: str | os.PathLike,
    keep: int,
    target: Any,
    data_iter: Any,
    log: Callable[[str], None] = print,
) -> tuple[Any, Any]:
    """The checkpoint manager and the newest checkpoint that restores (None: start afresh).

    A checkpoint that cannot be read (truncated or half-written files, e.g. a disk that filled
    up or a copy cut short) is moved aside to ``<step>.unreadable`` (kept, not deleted), with a
    one-line message naming the step and the reason, and the previous one is tried: a long run
    resumes from its last good state instead of stopping on a storage-library traceback.

    Args:
        workdir: the training workdir.
        keep: how many checkpoints the manager keeps.
        target: the abstract train state (shapes, dtypes and shardings) to restore into.
        data_iter: the grain iterator whose position is restored with the state.
        log: where the one-line messages go.

    Returns:
        ``(manager, restored)``; ``restored.state`` and ``restored.data`` or ``None``.
    """
    import grain

    ocp = _ocp()
    workdir = pathlib.Path(workdir).resolve()

    def args() -> Any:
        return ocp.args.Composite(
            state=ocp.args.StandardRestore(target),
            data=grain.checkpoint.CheckpointRestore(data_iter),
        )

    mgr = checkpoint_manager(workdir, keep)
    for step in sorted(mgr.all_steps(), reverse=True):
        try:
            return mgr, mgr.restore(step, args=args())
        except Exception as err:  # noqa: BLE001 - Orbax/tensorstore raise many kinds
            reason = (str(err).strip().splitlines() or [""])[0][:200]
            bad = workdir / "checkpoints" / str(step)
            aside = bad.with_name(f"{step}.unreadable")
            log(
                f"checkpoint at step {step} is unreadable ({type(err).__name__}: {reason}); "
                f"moved to {aside.name}, trying the previous one"
            )
            mgr.close()
            if jax.process_index() == 0:
                if aside.exists():
                    aside = bad.with_name(f"{step}.unreadable-{int(time.time())}")
                bad.rename(aside)
            if jax.process_count() > 1:
                from jax.experimental import multihost_utils

                multihost_utils.sync_global_devices(f"swinjax-skip-checkpoint-{step}")
            mgr = checkpoint_manager(workdir, keep)
    return mgr, None


def latest_step(workdir: str | os.PathLike) -> int | None:
    """The newest complete checkpoint step of a workdir (``None``: none)."""
    mgr = checkpoint_manager(workdir, 1)
    try:
        return mgr.latest_step()
    finally:
        mgr.close()


def restore_params(workdir: str | os.PathLike, step: int, model: Any) -> Any:
    """The parameters alone of checkpoint ``step``, as host numpy arrays.

    Only the ``params`` subtree of the saved train state is read (Orbax partial restore): the
    optimizer state, which is twice as large, stays on disk, and no trainer is built.

    Args:
        workdir: the training workdir.
        step: a step of :func:`latest_step` or ``all_steps``.
        model: the model config the checkpoint was trained with.
    """
    ocp = _ocp()
    path = pathlib.Path(workdir).resolve() / "checkpoints" / str(step) / "state"
    abstract = {"params": abstract_params(model)}
    restore_args = jax.tree.map(lambda s: ocp.RestoreArgs(restore_type=np.ndarray), abstract)
    with ocp.PyTreeCheckpointer() as ckptr:
        restored = ckptr.restore(
            path,
            args=ocp.args.PyTreeRestore(
                item=abstract, restore_args=restore_args, partial_restore=True
            ),
        )
    return restored["params"]


def load_model(path: str | os.PathLike | None = None) -> ExportedModel:
    """Loads ``--ckpt``: a shipped model's name, an export directory or a training workdir.

    ``path`` is resolved by :func:`swinjax.export.resolve_ckpt` (``None``: the shipped
    :data:`swinjax.export.DEFAULT_MODEL`). A workdir's latest checkpoint is exported on the fly
    into ``workdir/export-<step>`` (kept as a cache: later loads of the same step read it
    directly), from its parameters alone.

    Raises:
        FileNotFoundError: not a shipped name, and neither an export nor a workdir with
            checkpoints.
    """
    p = resolve_ckpt(path)
    if (p / "model.json").is_file():
        return load_export(p)
    cfg_path = p / "config.json"
    if not (cfg_path.is_file() and (p / "checkpoints").is_dir()):
        raise FileNotFoundError(
            f"{p} is neither an export directory (model.json) nor a training workdir "
            "(config.json + checkpoints/)"
        )
    config = to_config(json.loads(cfg_path.read_text()))
    step = latest_step(p)
    if step is None:
        raise FileNotFoundError(f"{p / 'checkpoints'} holds no complete checkpoint")
    cache = p / f"export-{step}"
    if not (cache / "model.json").is_file():
        export(config, restore_params(p, step, config.model), cache, step)
    return load_export(cache)
