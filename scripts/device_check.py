"""One-shot accelerator check: training throughput and MFU, 2K coding time, cross-platform decode.

    python scripts/device_check.py                 # GPU / TPU: the full check, about 5 minutes
    python scripts/device_check.py --quick         # seconds on a CPU: tiny model, small sizes
           [--configs swincoder,swinnpe,swint_charm] [--budget-s 270] [--json rows.json]

Run unchanged on any machine JAX sees (the first device of ``jax.devices()``). It prints one
table, with a line per check:

* **matmul**: a large square matmul in float32 and bfloat16, the device's achievable ceiling.
* **train step**: the full training step (codec, entropy model, losses, AdamW) of each config at
  8x256^2 (and SwinCoder at 32x256^2) in float32 and in bfloat16 (``config.dtype``): images/s,
  and the model FLOPs utilisation, ``flops per step (XLA cost analysis of the compiled step) /
  step time / peak``. The peak is the device's dense peak from :data:`PEAKS` for bfloat16 and,
  for float32, the rate XLA's default precision runs float32 matmuls at (TF32 tensor cores on
  NVIDIA Ampere and later, one bfloat16 pass on TPUs); on a device not in the table (a CPU) it is
  the matmul row measured here.
* **compress / decompress**: a 2048x1080 (2K) photo-like image through the shipped model
  (first call, which compiles, and the median of the next ones), with the file's bpp.
* **decode elsewhere**: the file written on this device decoded on the CPU of the same machine
  (``jax.devices("cpu")``, what a CPU-only receiver runs, with the hand-written CPU kernels),
  and a CPU-written file decoded here. A checksum error is reported as a failure; otherwise the
  largest difference of 8-bit pixels against the decode on the encoding device is given (the
  synthesis may round differently across platforms; the symbols may not). On a CPU-only machine
  the same check encodes with the plain-JAX layers (what an accelerator runs) and decodes with
  the CPU kernels.

``--quick`` runs every check on the tiny SwinCoder (random parameters) with batches of 2x64^2
and a 128x192 image, so that CI runs the whole script in seconds and it cannot rot. Checks run in
order of importance and stop when ``--budget-s`` is spent (the rest are listed as skipped).
Exit status 1 if a decode failed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # runs from a checkout without an install
    sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

# Dense peak TFLOP/s per JAX device: (substring of ``device.device_kind``, name, bfloat16, float32
# as XLA's default matmul precision runs it). First match wins, so specific names come first.
# Sources: NVIDIA's H200, H100, A100 and L4 datasheets (dense, without sparsity; float32 =
# TF32 tensor cores); Google Cloud TPU system architecture pages (per chip; a v2/v3 chip is two
# JAX devices, one per TensorCore).
PEAKS: tuple[tuple[str, str, float, float], ...] = (
    ("H200", "NVIDIA H200 SXM", 989.0, 494.7),
    ("H100 PCIe", "NVIDIA H100 PCIe", 756.0, 378.0),
    ("H100 NVL", "NVIDIA H100 NVL", 835.0, 417.5),
    ("H100", "NVIDIA H100 SXM", 989.0, 494.7),
    ("A100", "NVIDIA A100", 312.0, 156.0),
    ("L40S", "NVIDIA L40S", 362.0, 183.0),
    ("L4", "NVIDIA L4", 121.0, 60.0),
    ("TPU v6 lite", "TPU v6e", 918.0, 918.0),
    ("TPU v5 lite", "TPU v5e", 197.0, 197.0),
    ("TPU v5", "TPU v5p", 459.0, 459.0),
    ("TPU v4", "TPU v4", 275.0, 275.0),
    ("TPU v3", "TPU v3 (per core)", 61.5, 61.5),
    ("TPU v2", "TPU v2 (per core)", 22.5, 22.5),
)

DTYPES = ("float32", "bfloat16")


@dataclasses.dataclass
class Row:
    """One line of the table."""

    check: str
    setting: str
    dtype: str = ""
    result: str = ""
    utilisation: str = ""
    notes: str = ""
    ok: bool = True
    values: dict[str, Any] = dataclasses.field(default_factory=dict)


def peak_tflops(device_kind: str) -> tuple[str, dict[str, float]] | None:
    """``(name, {"bfloat16": peak, "float32": peak})`` for a device kind, or None if unknown."""
    for key, name, bf16, f32 in PEAKS:
        if key.lower() in device_kind.lower():
            return name, {"bfloat16": bf16, "float32": f32}
    return None


def fmt_flops(flops: float, per: str = "/s") -> str:
    """``12.3 TFLOP/s`` or, below a teraflop, ``45.6 GFLOP/s``."""
    if flops >= 1e12:
        return f"{flops / 1e12:.1f} TFLOP{per}"
    return f"{flops / 1e9:.1f} GFLOP{per}"


def flops_of(compiled: Any) -> float:
    """Flops of a compiled executable from XLA's cost analysis (0 when the backend has none)."""
    try:
        analysis = compiled.cost_analysis()
    except Exception:  # some backends do not implement it
        return 0.0
    if isinstance(analysis, list | tuple):
        analysis = analysis[0] if analysis else {}
    return float((analysis or {}).get("flops", 0.0))


def median_seconds(fn: Callable[[], Any], repeats: int) -> float:
    """Median wall-clock seconds of ``repeats`` calls of ``fn`` after one warm-up call."""
    jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def compile_options(quick: bool) -> dict[str, Any]:
    """XLA options for the programs of a check: cheap compiles in quick (CPU) mode."""
    if not quick:
        return {}
    return {"xla_backend_optimization_level": 0, "xla_cpu_use_fusion_emitters": False}


def compile_lowered(lowered: Any, quick: bool) -> Any:
    """``lowered.compile()``, with :func:`compile_options` where this XLA knows them."""
    options = compile_options(quick)
    try:
        return lowered.compile(compiler_options=options) if options else lowered.compile()
    except Exception as e:  # an XLA that does not know the option
        if options and "compile option" in str(e):
            return lowered.compile()
        raise


class Checker:
    """Runs the checks in order, within a time budget, and collects the rows."""

    def __init__(self, args: argparse.Namespace) -> None:
        """Reads the device, its peak and the budget from ``args``."""
        self.args = args
        self.quick = bool(args.quick)
        self.device = jax.devices()[0]
        self.platform = self.device.platform
        self.peak = peak_tflops(self.device.device_kind)
        self.matmul_tflops: dict[str, float] = {}
        self.rows: list[Row] = []
        self.t0 = time.perf_counter()
        self.repeats = 2 if self.quick else 5

    def left(self) -> float:
        """Seconds of the budget left."""
        return float(self.args.budget_s) - (time.perf_counter() - self.t0)

    def run(self, check: str, setting: str, dtype: str, fn: Callable[[], Row | list[Row]]) -> None:
        """Runs one check unless the budget is spent; an exception becomes a failed row."""
        if self.left() <= 0:
            self.rows.append(Row(check, setting, dtype, "skipped: time budget spent", ok=True))
            return
        t0 = time.perf_counter()
        try:
            out = fn()
        except Exception as e:  # one failing check must not hide the others
            out = Row(check, setting, dtype, f"error: {type(e).__name__}: {e}"[:160], ok=False)
        rows = out if isinstance(out, list) else [out]
        for r in rows:
            r.values.setdefault("check_seconds", round(time.perf_counter() - t0, 2))
            self.rows.append(r)
            print(
                f"  {r.check} | {r.setting} | {r.dtype} | {r.result} | {r.utilisation}", flush=True
            )

    # -- checks ---------------------------------------------------------------------------------
    def matmul(self, dtype: str) -> Row:
        """A square matmul: the device's achievable dense throughput in ``dtype``."""
        n = 512 if self.quick else 8192
        a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32).astype(dtype)
        f = jax.jit(jnp.matmul).lower(a, a).compile()
        t = median_seconds(lambda: f(a, a), self.repeats)
        tflops = 2.0 * n**3 / t / 1e12
        self.matmul_tflops[dtype] = tflops
        return Row(
            "matmul",
            f"{n}x{n}",
            dtype,
            fmt_flops(tflops * 1e12),
            self._utilisation(tflops, dtype, own=False),
            values={"tflops": tflops},
        )

    def _utilisation(self, tflops: float, dtype: str, own: bool = True) -> str:
        if self.peak is not None:
            name, peaks = self.peak
            return f"{tflops / peaks[dtype]:.1%} of {peaks[dtype]:g} ({name})"
        if own and self.matmul_tflops.get(dtype):
            ceiling = self.matmul_tflops[dtype]
            return f"{tflops / ceiling:.1%} of the matmul row"
        return ""

    def train_step(self, name: str, batch: int, crop: int, dtype: str) -> Row:
        """Images/s and MFU of the compiled training step of ``configs/<name>.py``."""
        from swinjax import sharding
        from swinjax.config_utils import load_config
        from swinjax.train_lib import Trainer

        file, _, arg = name.partition(":")
        config = load_config(str(ROOT / "configs" / f"{file}.py") + (f":{arg}" if arg else ""))
        config.batch_size, config.crop, config.dtype = batch, crop, dtype
        if self.quick:  # fewer blocks and one entropy pass: the same code, a quarter of the compile
            config.model.g_a.depths = (0,) * (len(config.model.g_a.depths) - 1) + (1,)
            config.model.g_s.depths = (1,) + (0,) * (len(config.model.g_s.depths) - 1)
            config.model.entropy.context = "noisy"
        trainer = Trainer(config, mesh=sharding.make_mesh(1, 1, devices=[self.device]))
        key = jax.random.key(0)
        state = compile_lowered(trainer._init.lower(key), self.quick)(key)
        x = jax.device_put(
            jax.random.uniform(jax.random.key(1), trainer.x_shape, jnp.float32),
            trainer.batch_sharding,
        )
        t0 = time.perf_counter()
        step = compile_lowered(trainer._step.lower(state, x, key, trainer.extra), self.quick)
        compile_s = time.perf_counter() - t0
        flops = flops_of(step)
        holder = {"state": state}

        def one() -> Any:
            holder["state"], m = step(holder["state"], x, key, trainer.extra)
            return m["loss"]

        t = median_seconds(one, self.repeats)
        loss = float(one())
        tflops = flops / t / 1e12
        memory = ""
        stats = getattr(self.device, "memory_stats", lambda: None)()
        if stats and "peak_bytes_in_use" in stats:
            memory = f", peak memory {stats['peak_bytes_in_use'] / 2**30:.1f} GiB"
        return Row(
            "train step",
            f"{name} {batch}x{crop}^2",
            dtype,
            f"{batch / t:.1f} img/s ({t * 1e3:.1f} ms/step)",
            self._utilisation(tflops, dtype) if flops else "no cost analysis",
            f"{fmt_flops(flops, '/step')}, compile {compile_s:.0f} s, loss {loss:.3g}{memory}",
            ok=bool(np.isfinite(loss)),
            values={"images_per_s": batch / t, "step_s": t, "tflops": tflops, "flops": flops},
        )

    def _export(self, tmp: pathlib.Path) -> str:
        """What to code with: ``--ckpt``, else the shipped model, or a tiny random one if quick."""
        from swinjax.config_utils import load_config
        from swinjax.export import DEFAULT_MODEL, export
        from swinjax.models import build_codec

        if self.args.ckpt or not self.quick:
            return self.args.ckpt or DEFAULT_MODEL
        config = load_config(str(ROOT / "configs" / "tiny.py"))
        codec = build_codec(config)
        args = (jnp.zeros((1, 64, 64, 3)), jnp.ones((1,)), jax.random.key(1))
        init = compile_lowered(jax.jit(codec.init).lower(jax.random.key(0), *args), True)
        return str(export(config, init(jax.random.key(0), *args), tmp / "tiny"))

    def coding(self, tmp: pathlib.Path) -> list[Row]:
        """Compress / decompress time of a 2K image, and the cross-platform decode check."""
        from swinjax.codec_cache import open_codec

        codec = open_codec(self._export(tmp))  # compiled programs shared with other users
        exported = codec.exported
        model = f"{exported.model_id} step {exported.step}"
        image = test_image(*((128, 192) if self.quick else (1080, 2048)))
        h, w = image.shape[:2]
        lmbda = float(codec.lmbda_range.check(None))
        rows = []
        t0 = time.perf_counter()
        data = codec.compress(image, lmbda)
        first_c = time.perf_counter() - t0
        t_c = median_seconds(lambda: codec.compress(image, lmbda), self.repeats)
        t0 = time.perf_counter()
        here = codec.decompress(data)
        first_d = time.perf_counter() - t0
        t_d = median_seconds(lambda: codec.decompress(data), self.repeats)
        bpp = 8 * len(data) / (h * w)
        rows.append(
            Row(
                "compress",
                f"{w}x{h}, {model}",
                "float32",
                f"{t_c:.3f} s",
                "",
                f"first call {first_c:.1f} s (compiles), {bpp:.4f} bpp at lambda {lmbda:g}",
                values={"seconds": t_c, "first_seconds": first_c, "bpp": bpp},
            )
        )
        psnr = _psnr(image, here)
        rows.append(
            Row(
                "decompress",
                f"{w}x{h}, {model}",
                "float32",
                f"{t_d:.3f} s",
                "",
                f"first call {first_d:.1f} s (compiles), PSNR {psnr:.2f} dB",
                values={"seconds": t_d, "first_seconds": first_d, "psnr_db": psnr},
            )
        )
        rows.extend(self.decode_elsewhere(codec, image, lmbda, data, here))
        return rows

    def decode_elsewhere(
        self, codec: Any, image: np.ndarray, lmbda: float, data: bytes, here: np.ndarray
    ) -> list[Row]:
        """This device's file decoded on the CPU, and a CPU file decoded here (module doc)."""
        from swinjax.compression import ImageCodec
        from swinjax.layers.ops import kernels

        exported = codec.exported
        try:
            cpu = jax.devices("cpu")[0]
        except RuntimeError:
            return [Row("decode elsewhere", "no CPU backend in this process")]
        if self.platform == "cpu":
            # One machine: the plain-JAX layers (an accelerator's) encode, the CPU kernels
            # (``codec``, traced with "auto" on the CPU) decode.
            with kernels("generic"):
                encoder = ImageCodec(exported)
                data = encoder.compress(image, lmbda)
                here = encoder.decompress(data)
            return [
                self._decode_row("cpu, plain-JAX layers -> cpu, CPU kernels", codec, data, here)
            ]
        with jax.default_device(cpu):
            on_cpu = ImageCodec(exported)
            rows = [self._decode_row(f"{self.platform} -> cpu", on_cpu, data, here)]
            cpu_data = on_cpu.compress(image, lmbda)
            cpu_here = on_cpu.decompress(cpu_data)
        row = self._decode_row(f"cpu -> {self.platform}", codec, cpu_data, cpu_here)
        same = "identical" if cpu_data == data else "different"
        row.notes = f"{row.notes}; the two encoders wrote {same} files"
        rows.append(row)
        return rows

    @staticmethod
    def _decode_row(label: str, codec: Any, data: bytes, reference: np.ndarray) -> Row:
        try:
            out = codec.decompress(data)
        except ValueError as e:
            return Row("decode elsewhere", label, "float32", "FAILED", "", str(e)[:160], ok=False)
        diff = int(np.max(np.abs(out.astype(np.int16) - reference.astype(np.int16))))
        return Row(
            "decode elsewhere",
            label,
            "float32",
            "decoded",
            "",
            f"largest 8-bit pixel difference to the encoder's own decode: {diff}",
            values={"max_pixel_diff": diff},
        )


def test_image(h: int, w: int) -> np.ndarray:
    """A photo-like ``uint8 [h, w, 3]``: the packaged Kodak crop, resized (no dataset needed)."""
    from PIL import Image

    sample = ROOT / "swinjax" / "samples" / "kodim23-crop.png"
    if sample.is_file():
        with Image.open(sample) as im:
            return np.asarray(im.convert("RGB").resize((w, h), Image.Resampling.BICUBIC))
    rng = np.random.default_rng(0)
    coarse = rng.integers(0, 256, (h // 16 + 1, w // 16 + 1, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(coarse).resize((w, h), Image.Resampling.BICUBIC))


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def print_table(checker: Checker) -> None:
    """The one table (markdown) with a header naming the device and the software."""
    d = checker.device
    peak = checker.peak[0] if checker.peak else "not in the peak table"
    print(
        f"\ndevice check {time.strftime('%Y-%m-%d')}: {d.platform} / {d.device_kind} ({peak}), "
        f"{jax.device_count()} device(s); jax {jax.__version__}; "
        f"{'quick mode, ' if checker.quick else ''}{time.perf_counter() - checker.t0:.0f} s\n"
    )
    print("| check | setting | dtype | result | utilisation | notes |")
    print("|---|---|---|---|---|---|")
    for r in checker.rows:
        print(f"| {r.check} | {r.setting} | {r.dtype} | {r.result} | {r.utilisation} | {r.notes} |")


def main(argv: list[str] | None = None) -> int:
    """Runs the checks and prints the table; 1 if a check failed."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny model and sizes (CPU, CI)")
    p.add_argument("--configs", default="swincoder,swinnpe,swint_charm")
    p.add_argument("--budget-s", type=float, default=270.0, help="stop starting checks after")
    p.add_argument("--ckpt", default="", help="model to code with (default: the shipped one)")
    p.add_argument("--json", default="", help="also write the rows to this JSON file")
    args = p.parse_args(argv)
    c = Checker(args)
    print(f"device: {c.device.platform} / {c.device.device_kind}; budget {args.budget_s:g} s")
    for dtype in DTYPES:
        c.run("matmul", "", dtype, lambda dtype=dtype: c.matmul(dtype))
    names = [n for n in args.configs.split(",") if n]
    # In order of importance: the first config at 8x256^2, the coding checks, the first config at
    # 32x256^2, the other configs. Quick mode: the tiny model at 2x64^2 and the coding checks.
    steps = [("tiny", 2, 64)] if args.quick else [(names[0], 8, 256)] if names else []
    later = [] if args.quick or not names else [(names[0], 32, 256)]
    later += [] if args.quick else [(n, 8, 256) for n in names[1:]]
    # Quick mode: bfloat16 only (float32 is the path every other test compiles).
    step_dtypes = ("bfloat16",) if args.quick else DTYPES
    with tempfile.TemporaryDirectory() as tmp:
        for name, batch, crop in steps:
            for dtype in step_dtypes:
                c.run(
                    "train step",
                    f"{name} {batch}x{crop}^2",
                    dtype,
                    _step(c, name, batch, crop, dtype),
                )
        c.run("coding", "", "float32", lambda: c.coding(pathlib.Path(tmp)))
    for name, batch, crop in later:
        for dtype in DTYPES:
            c.run(
                "train step", f"{name} {batch}x{crop}^2", dtype, _step(c, name, batch, crop, dtype)
            )
    print_table(c)
    if args.json:
        rows = [dataclasses.asdict(r) for r in c.rows]
        meta = {"device_kind": c.device.device_kind, "platform": c.platform, "quick": c.quick}
        pathlib.Path(args.json).write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    return 0 if all(r.ok for r in c.rows) else 1


def _step(c: Checker, name: str, batch: int, crop: int, dtype: str) -> Callable[[], Row]:
    return lambda: c.train_step(name, batch, crop, dtype)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
