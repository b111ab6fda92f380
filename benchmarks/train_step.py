"""Speed of the full training step (codec + entropy model + losses + optimizer) per config.

    python benchmarks/train_step.py [--configs swincoder,swinnpe,swint_charm] [--repeats 5]
                                    [--sizes 256,128] [--mesh-overhead] [--json]

For each config and crop size it compiles :class:`swinjax.train_lib.Trainer`'s jitted step for a
global batch of 8, and reports the median step time over ``--repeats`` runs after a warm-up,
steps/s, images/s, achieved GFLOP/s (XLA cost analysis of the compiled step / median time) and
the ratio to a float32 matmul ceiling measured in the same process (benchmarks/transforms.py).

``--kernels cpu,generic`` times the step once per layer formulation (``config.kernels``: the
hand-written CPU kernels and the plain-JAX layers accelerators use), interleaved per config.

``--stages`` times SwinCoder's stage-2 and stage-3 steps (VGG16 perceptual/style losses with the
packaged ImageNet weights; plus the U-Net discriminator step) against its stage-1 step at
8 x 128^2, for the reference model (``--stages-model ref``, default) or the paper's widths
(``paper``).

``--mesh-overhead`` re-runs SwinCoder at 8 x 128^2 in a child process with 8 host devices
(``--xla_force_host_platform_device_count=8``) on a (8, 1) mesh and on one of those devices: on one
CPU the 8 "devices" share the same cores, so the ratio measures the cost of partitioning and
collectives, not a speed-up. On a GPU machine the same script reports the same table on the GPU
(and the MFU column is the ratio to that GPU's matmul ceiling).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
from typing import Any

import jax
import jax.numpy as jnp

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from transforms import flops_of, matmul_ceiling, time_compiled  # noqa: E402

from swinjax import sharding  # noqa: E402
from swinjax.config_utils import load_config  # noqa: E402
from swinjax.train_lib import Trainer  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]


def bench(
    name: str, crop: int, repeats: int, ceiling: float, mesh: Any = None, **overrides: Any
) -> dict[str, Any]:
    """Times one compiled training step of config ``name`` at 8 x crop^2."""
    file, _, arg = name.partition(":")
    file = file.removesuffix(".py")
    config = load_config(str(ROOT / "configs" / f"{file}.py") + (f":{arg}" if arg else ""))
    config.batch_size, config.crop = 8, crop
    for key, value in overrides.items():
        node = config
        *parents, leaf = key.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = value
    trainer = Trainer(config, mesh=mesh)
    state = trainer.init(0)
    x = jax.device_put(
        jax.random.uniform(jax.random.key(1), trainer.x_shape, jnp.float32), trainer.batch_sharding
    )
    key = jax.random.key(2)
    compiled = trainer._step.lower(state, x, key, trainer.extra).compile()
    flops = flops_of(compiled)
    holder = {"state": state}

    def step() -> Any:
        holder["state"], m = compiled(holder["state"], x, key, trainer.extra)
        return m["loss"]

    times = time_compiled(lambda: step(), (), repeats)
    t = statistics.median(times)
    gflops = flops / t / 1e9
    return {
        "config": name,
        "batch": f"8x{crop}^2",
        "devices": trainer.mesh.size,
        "step_s": t,
        "steps_per_s": 1 / t,
        "images_per_s": 8 / t,
        "gflops": gflops,
        "ceiling_ratio": gflops / ceiling,
    }


def stage_costs(repeats: int, ceiling: float, model: str = "ref") -> list[dict[str, Any]]:
    """Stage 1, 2 and 3 steps of SwinCoder at 8 x 128^2 (the packaged ImageNet VGG16).

    ``model``: ``"ref"`` (the shipped reference model's configs, ``swincoder_ref`` and
    ``swincoder_stage{2,3}:ref``) or ``"paper"`` (the paper's widths).
    """
    names = {
        "ref": ("swincoder_ref", "swincoder_stage2:ref", "swincoder_stage3:ref"),
        "paper": ("swincoder", "swincoder_stage2", "swincoder_stage3"),
    }[model]
    rows = []
    for stage, name in enumerate(names, start=1):
        over = {} if stage == 1 else {"perceptual.d_features": 64}
        r = bench(name, 128, repeats, ceiling, **over)
        r["config"] = f"{name} (stage {stage})"
        rows.append(r)
    return rows


def mesh_overhead(repeats: int) -> dict[str, Any]:
    """Child-process measurement: (8, 1) mesh of host devices vs one of them."""
    ceiling = matmul_ceiling(repeats)["gflops_median"]
    one = bench("swincoder", 128, repeats, ceiling, sharding.make_mesh(1, 1, jax.devices()[:1]))
    eight = bench("swincoder", 128, repeats, ceiling, sharding.make_mesh(8, 1))
    return {"one": one, "eight": eight, "overhead": eight["step_s"] / one["step_s"]}


def main(argv: list[str] | None = None) -> None:
    """Prints the table (and optionally JSON)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", default="swincoder,swinnpe,swint_charm")
    p.add_argument("--sizes", default="256,128")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument(
        "--kernels",
        default="auto",
        help="layer formulations to time, comma-separated (auto, cpu, generic): one row each",
    )
    p.add_argument("--mesh-overhead", action="store_true")
    p.add_argument("--stages", action="store_true", help="stage 2/3 step cost vs stage 1")
    p.add_argument("--stages-model", choices=("ref", "paper"), default="ref")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(mesh_overhead(args.repeats)))
        return
    ceil = matmul_ceiling(args.repeats)
    print(
        f"backend {jax.default_backend()}, {len(jax.devices())} device(s); float32 matmul "
        f"ceiling {ceil['gflops_median']:.1f} GFLOP/s (median, n={ceil['n']})"
    )
    rows = []
    print("| config | batch | kernels | step s | steps/s | images/s | GFLOP/s | / ceiling |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for name in [n for n in args.configs.split(",") if n]:
        for crop in (int(s) for s in args.sizes.split(",")):
            for kernels in args.kernels.split(","):
                r = bench(name, crop, args.repeats, ceil["gflops_median"], kernels=kernels)
                rows.append(r)
                print(
                    f"| {name} | {r['batch']} | {kernels} | {r['step_s']:.3f} | "
                    f"{r['steps_per_s']:.2f} | {r['images_per_s']:.1f} | {r['gflops']:.1f} | "
                    f"{r['ceiling_ratio']:.0%} |",
                    flush=True,
                )
    if args.stages:
        rows_s = stage_costs(args.repeats, ceil["gflops_median"], args.stages_model)
        base = rows_s[0]["step_s"]
        print(f"\n| SwinCoder ({args.stages_model}) 8x128^2 | step s | vs stage 1 |")
        print("|---|---:|---:|")
        for r in rows_s:
            print(f"| {r['config']} | {r['step_s']:.3f} | {r['step_s'] / base:.2f}x |")
        rows.extend(rows_s)
    if args.mesh_overhead:
        flags = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
        env = dict(os.environ, XLA_FLAGS=flags.strip())
        out = subprocess.run(
            [sys.executable, __file__, "--child", "--repeats", str(args.repeats)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        m = json.loads(out.stdout.strip().splitlines()[-1])
        print(
            f"\nswincoder 8x128^2: 1 device {m['one']['step_s']:.3f} s/step, (8, 1) mesh of 8 "
            f"host devices {m['eight']['step_s']:.3f} s/step: overhead {m['overhead']:.2f}x"
        )
        rows.append(m)
    if args.json:
        print(json.dumps(rows))


if __name__ == "__main__":
    main()
