"""The same training on 1 device, on a (4, 2) mesh of 8 devices, and on two processes.

Each case runs in a fresh interpreter: the device count (``XLA_FLAGS``) and
``jax.distributed.initialize`` must be set before JAX starts.
"""

import json
import os
import pathlib
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    d = tmp_path_factory.mktemp("mesh-images")
    rng = np.random.default_rng(1)
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (80, 90, 3), dtype=np.uint8)).save(d / f"{i}.png")
    return d


def _env(**extra):
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


MESH_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import jax, numpy as np
    from swinjax import data, sharding
    from swinjax.config_utils import load_config
    from swinjax.train_lib import Trainer

    config = load_config(sys.argv[1])
    config.crop, config.batch_size, config.warmup_steps = 64, 8, 1
    files = data.find_images(sys.argv[2])

    def run(mesh):
        trainer = Trainer(config, mesh=mesh)
        state = trainer.init(0)
        it = data.train_dataset(files, crop=64, global_batch=8, seed=0)
        losses = []
        for _ in range(3):
            x = sharding.global_batch_array(mesh, next(it)["x"])
            state, m = trainer.step(state, x, jax.random.key(7))
            losses.append(float(m["loss"]))
        it.close()
        return losses, jax.tree.leaves(jax.device_get(state.params))

    one = sharding.make_mesh(1, 1, devices=jax.devices()[:1])
    eight = sharding.make_mesh(4, 2)
    l1, p1 = run(one)
    l8, p8 = run(eight)
    diff = max(float(np.max(np.abs(a - b))) for a, b in zip(p1, p8))
    print(json.dumps({"devices": len(jax.devices()), "mesh": dict(eight.shape),
                      "loss_1": l1, "loss_8": l8, "max_param_diff": diff}))
    """
)


def test_a_4x2_mesh_of_8_devices_trains_like_one_device(images):
    flags = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
    env = _env(XLA_FLAGS=flags.strip())
    r = subprocess.run(
        [sys.executable, "-c", MESH_SCRIPT, str(ROOT / "configs" / "tiny.py"), str(images)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["devices"] == 8 and out["mesh"] == {"data": 4, "fsdp": 2}
    # Stated tolerance: float reassociation of sharded reductions only.
    np.testing.assert_allclose(out["loss_8"], out["loss_1"], rtol=1e-4)
    assert out["max_param_diff"] < 1e-4


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# train.py, with every image decode of this process appended to ``<log>-<process index>.txt``.
TRAIN_LOGGING_DECODES = textwrap.dedent(
    """
    import os, sys
    from swinjax import imageio
    log = sys.argv.pop(1) + "-" + os.environ["SWINJAX_PROCESS_ID"] + ".txt"
    load_image = imageio.load_image

    def logged(path, *args, **kwargs):
        with open(log, "a") as f:
            f.write(str(path) + "\\n")
        return load_image(path, *args, **kwargs)

    imageio.load_image = logged
    import train
    sys.exit(train.main(sys.argv))
    """
)


def _launch_two(workdir, images, steps, cache=None, decode_log=None):
    port = _free_port()
    procs = []
    # A persistent XLA cache shared by the launches: the restart compiles nothing new.
    cache_env = {} if cache is None else _compilation_cache_env(cache)
    for pid in range(2):
        env = _env(
            **cache_env,
            SWINJAX_COORDINATOR=f"127.0.0.1:{port}",
            SWINJAX_NUM_PROCESSES="2",
            SWINJAX_PROCESS_ID=str(pid),
            JAX_CPU_COLLECTIVES_IMPLEMENTATION="gloo",
        )
        argv = [
            sys.executable,
            *(["train.py"] if decode_log is None else ["-c", TRAIN_LOGGING_DECODES, decode_log]),
            f"--config={ROOT / 'configs' / 'tiny.py'}",
            f"--workdir={workdir}",
            f"--config.total_steps={steps}",
            "--config.crop=64",
            "--config.batch_size=4",
            "--config.log_every=1",
            "--config.checkpoint_every=2",
            "--config.eval_every=0",
            f"--config.data.train_dirs={images}",
            "--config.export_on_finish=False",
        ]
        procs.append(
            subprocess.Popen(
                argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
        )
    outs = []
    for p in procs:
        out, _ = p.communicate(timeout=900)
        outs.append(out)
        assert p.returncode == 0, out[-3000:]
    return outs


def _compilation_cache_env(cache):
    return {
        "JAX_COMPILATION_CACHE_DIR": str(cache),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "-1",
    }


@pytest.fixture(scope="module")
def many_images(tmp_path_factory):
    """More files than the test's runs draw examples: no file is drawn twice."""
    d = tmp_path_factory.mktemp("many-images")
    rng = np.random.default_rng(2)
    for i in range(48):
        Image.fromarray(rng.integers(0, 256, (72, 72, 3), dtype=np.uint8)).save(d / f"{i}.png")
    return d


def test_two_processes_train_save_and_restore(tmp_path, many_images):
    """Two processes: each decodes only its rows, checkpoints are written once, restarts resume."""
    work = tmp_path / "two"
    log = str(tmp_path / "decoded")
    _launch_two(work, many_images, steps=2, cache=tmp_path / "xla-cache", decode_log=log)
    assert (work / "checkpoints" / "2").is_dir()
    outs = _launch_two(work, many_images, steps=4, cache=tmp_path / "xla-cache", decode_log=log)
    assert "resumed from" in outs[0] and "at step 2" in outs[0]
    records = [json.loads(x) for x in (work / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4]  # written by process 0 only
    assert all(np.isfinite(r["loss"]) for r in records)

    # Input: 4 steps x 4 rows (+ read-ahead) stay within one epoch of 48 files, so every file
    # is drawn at most once. A process reading the whole global batch would decode the other
    # process's files too; each decodes only files of its own rows (at least its 2 x 4).
    decoded = [set(pathlib.Path(f"{log}-{p}.txt").read_text().split()) for p in range(2)]
    assert all(len(d) >= 8 for d in decoded), [len(d) for d in decoded]
    assert not decoded[0] & decoded[1]

    # Checkpoints: one directory per saved step for both processes (no per-process copies), and
    # its arrays stored once: the bytes the processes wrote add up to one copy of the train state
    # (parameters and AdamW's two moments; Orbax splits the replicated arrays between the
    # writers), not one copy per process.
    steps = sorted(p.name for p in (work / "checkpoints").iterdir())
    assert steps == ["2", "4"], steps
    state = work / "checkpoints" / "4" / "state"
    written = sum(f.stat().st_size for f in state.glob("ocdbt.process_*/**/*") if f.is_file())
    one_copy = 3 * _param_bytes(ROOT / "configs" / "tiny.py")
    assert 0.5 * one_copy < written < 1.25 * one_copy, (written, one_copy)


def _param_bytes(config_path):
    import jax
    import jax.numpy as jnp

    from swinjax.config_utils import load_config
    from swinjax.models import build_codec

    codec = build_codec(load_config(str(config_path)))
    x, lm = jnp.zeros((1, 64, 64, 3)), jnp.ones((1,))
    params = jax.eval_shape(codec.init, jax.random.key(0), x, lm, jax.random.key(1))
    return sum(a.size * a.dtype.itemsize for a in jax.tree.leaves(params))
