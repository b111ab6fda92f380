"""Speed of the transforms on the local backend, against a float32 matmul ceiling.

    python benchmarks/transforms.py [--configs swincoder,swinnpe,swint_charm] [--repeats 5] [--json]

For each config and each workload (batch 1 x 768x512 and batch 8 x 256x256) it times, after
compilation, the median of ``--repeats`` runs of

* ``fwd``: the training forward pass below, returning the loss;
* ``fwd+bwd``: the same loss and its gradient with respect to every parameter,

where the training forward pass is ``x -> g_a -> y + U(-1/2, 1/2) -> h_a -> z + U(-1/2, 1/2) ->
h_s`` and ``g_s(y_tilde) -> x_hat`` with ``loss = MSE(x, x_hat) + mean(h_s(z_tilde)^2)`` (a cheap
stand-in for the rate term, so the benchmark measures the transforms and not an entropy model).
SwinCoder's g_a / g_s also get the lambda embedding (one lambda per example).

Achieved GFLOP/s = flops of the compiled program (XLA cost analysis, which counts a multiply-add as
two flops and includes elementwise work) / median time. The ceiling is the GFLOP/s of a large square
float32 matmul (the size with the best median at start, 1024 or 2048) timed in the same process,
once after every timed workload call: each row's ratio is its GFLOP/s over the median of those
interleaved matmuls or of the matmuls timed at start, whichever is higher (on a loaded machine the
matmul loses more to contention than the memory-bound transforms, so the higher one is the
conservative choice). The load average is printed: compare numbers from quiet runs only.

The benchmark scripts and the speeds measured with them (2-core CPU) are in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import sys
import time
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from swinjax.config_utils import load_config
from swinjax.layers.adaln import LambdaEmbedding
from swinjax.lmbda import lmbda_range
from swinjax.transforms import build_transforms

ROOT = pathlib.Path(__file__).resolve().parents[1]
WORKLOADS = ((1, 512, 768), (8, 256, 256))


def flops_of(compiled: Any) -> float:
    """Flops of a compiled executable from XLA's cost analysis (a dict in jax 0.10)."""
    analysis = compiled.cost_analysis()
    if isinstance(analysis, list | tuple):  # older jax: one dict per computation
        analysis = analysis[0]
    return float(analysis.get("flops", 0.0))


def time_compiled(fn: Any, args: tuple, repeats: int) -> list[float]:
    """Wall-clock seconds of ``repeats`` calls after one warm-up call."""
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return times


class MatmulCeiling:
    """A square float32 matmul: the machine's dense-GEMM throughput, re-measured on demand.

    The benchmark times one matmul right after every timed workload call, so that the ratio of
    each row is taken against the ceiling of the same moment (a shared machine's load varies).
    """

    def __init__(self, n: int = 2048) -> None:
        rng = np.random.default_rng(0)
        self.n = n
        self.args = tuple(jnp.asarray(rng.standard_normal((n, n), np.float32)) for _ in range(2))
        self.fn = jax.jit(jnp.matmul).lower(*self.args).compile()
        self.flops = flops_of(self.fn) or 2.0 * n**3
        jax.block_until_ready(self.fn(*self.args))

    def sample(self) -> float:
        """GFLOP/s of one call."""
        t0 = time.perf_counter()
        jax.block_until_ready(self.fn(*self.args))
        return self.flops / (time.perf_counter() - t0) / 1e9


def matmul_ceiling(repeats: int, sizes: tuple[int, ...] = (1024, 2048)) -> dict[str, float]:
    """Best (over sizes) median GFLOP/s of a square float32 matmul, and its best single run."""
    best: dict[str, float] = {"gflops_median": 0.0, "gflops_best": 0.0, "n": 0}
    for n in sizes:
        mm = MatmulCeiling(n)
        samples = [mm.sample() for _ in range(max(repeats, 5))]
        med = statistics.median(samples)
        if med > best["gflops_median"]:
            best = {"gflops_median": med, "gflops_best": max(samples), "n": n}
    return best


class TrainingForward(nn.Module):
    """The benchmark workload: transforms, additive uniform noise, MSE + stand-in rate."""

    model: Any

    def setup(self) -> None:
        """Builds the four transforms (and the lambda embedding for variable-rate models)."""
        t = build_transforms(self.model)
        self.g_a, self.g_s, self.h_a, self.h_s = t["g_a"], t["g_s"], t["h_a"], t["h_s"]
        if self.model.variable_rate:
            lm = self.model.lmbda
            self.embed = LambdaEmbedding(int(lm.embedding), float(lm.min), float(lm.max))

    def __call__(self, x: jax.Array, lmbda: jax.Array, key: jax.Array) -> jax.Array:
        """Returns the scalar loss."""
        emb = self.embed(lmbda) if self.model.variable_rate else None
        y = self.g_a(x, emb) if emb is not None else self.g_a(x)
        ky, kz = jax.random.split(key)
        y_tilde = y + jax.random.uniform(ky, y.shape, y.dtype, -0.5, 0.5)
        z = self.h_a(y_tilde)
        z_tilde = z + jax.random.uniform(kz, z.shape, z.dtype, -0.5, 0.5)
        features = self.h_s(z_tilde)
        x_hat = self.g_s(y_tilde, emb) if emb is not None else self.g_s(y_tilde)
        return jnp.mean((x_hat - x) ** 2) + jnp.mean(features**2)


def bench_config(
    name: str, repeats: int, ceiling: MatmulCeiling, start_ceiling: float
) -> list[dict[str, Any]]:
    """Rows (one per workload and pass) for ``configs/<name>.py``."""
    config = load_config(str(ROOT / "configs" / f"{name}.py"))
    module = TrainingForward(config.model)
    rows = []
    for batch, h, w in WORKLOADS:
        rng = np.random.default_rng(1)
        x = jnp.asarray(rng.uniform(size=(batch, h, w, 3)).astype(np.float32))
        lmbda = (
            lmbda_range(config).sample(jax.random.key(3), batch)
            if config.model.variable_rate
            else jnp.ones((batch,), jnp.float32)
        )
        key = jax.random.key(2)
        params = jax.jit(module.init)(jax.random.key(0), x, lmbda, key)

        def loss(p: Any, x: jax.Array, lmbda: jax.Array, key: jax.Array) -> jax.Array:
            return module.apply(p, x, lmbda, key)

        for pass_name, fn in (("fwd", loss), ("fwd+bwd", jax.value_and_grad(loss))):
            t0 = time.perf_counter()
            compiled = jax.jit(fn).lower(params, x, lmbda, key).compile()
            compile_s = time.perf_counter() - t0
            flops = flops_of(compiled)
            args = (params, x, lmbda, key)
            jax.block_until_ready(compiled(*args))
            times, ceilings = [], []
            for _ in range(repeats):
                times += time_compiled(compiled, args, 1)[-1:]
                ceilings.append(ceiling.sample())
            med = statistics.median(times)
            gflops = flops / med / 1e9
            # The conservative ceiling: the better of the start and interleaved medians (on a loaded
            # machine the interleaved matmuls lose more to contention than a memory-bound program).
            ceil = max(statistics.median(ceilings), start_ceiling)
            rows.append(
                {
                    "config": name,
                    "batch": batch,
                    "height": h,
                    "width": w,
                    "pass": pass_name,
                    "median_ms": med * 1e3,
                    "min_ms": min(times) * 1e3,
                    "compile_s": compile_s,
                    "gflop": flops / 1e9,
                    "gflops_per_s": gflops,
                    "interleaved_ceiling_gflops_per_s": statistics.median(ceilings),
                    "ceiling_gflops_per_s": ceil,
                    "ceiling_ratio": gflops / ceil,
                }
            )
            print(f"  {name} {batch}x{h}x{w} {pass_name}: {med * 1e3:.0f} ms", file=sys.stderr)
    return rows


def main(argv: list[str] | None = None) -> None:
    """Parses flags, measures the ceiling, then every config; prints markdown tables."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", default="swincoder,swinnpe,swint_charm")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    args = parser.parse_args(argv)

    start = matmul_ceiling(args.repeats)
    print(
        f"backend: {jax.default_backend()} ({jax.device_count()} device(s), "
        f"{jax.devices()[0].device_kind}), jax {jax.__version__}"
    )
    print(
        f"float32 matmul ceiling at start: {start['gflops_median']:.1f} GFLOP/s median "
        f"({start['gflops_best']:.1f} best) at n={start['n']}; load average "
        f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs"
    )
    print(
        f"each row's ceiling: the better of that and the median of {args.repeats} n={start['n']} "
        "matmuls timed between its repeats (interleaved)"
    )
    ceiling = MatmulCeiling(int(start["n"]))
    all_rows = []
    for name in [c for c in args.configs.split(",") if c]:
        rows = bench_config(name, args.repeats, ceiling, start["gflops_median"])
        all_rows += rows
        print(f"\n### {name}\n")
        print(
            "| workload | pass | median ms | min ms | GFLOP | GFLOP/s | interleaved ceiling | "
            "% of ceiling |"
        )
        print("|---|---|---:|---:|---:|---:|---:|---:|")
        for r in rows:
            print(
                f"| {r['batch']}x{r['height']}x{r['width']} | {r['pass']} | "
                f"{r['median_ms']:.0f} | {r['min_ms']:.0f} | {r['gflop']:.1f} | "
                f"{r['gflops_per_s']:.1f} | {r['interleaved_ceiling_gflops_per_s']:.1f} | "
                f"{100 * r['ceiling_ratio']:.1f} |"
            )
        sys.stdout.flush()
    print(f"\nload average at end: {os.getloadavg()[0]:.2f}")
    if args.json:
        print(
            json.dumps(
                {
                    "backend": jax.default_backend(),
                    "jax": jax.__version__,
                    "ceiling_at_start": start,
                    "rows": all_rows,
                }
            )
        )


if __name__ == "__main__":
    main()
