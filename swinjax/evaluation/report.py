"""The evaluation's results: CompressAI-schema curves, BD-rates, the files and the text table.

Results use CompressAI's JSON schema (one file per curve; lists over rate points), so they plot
directly against ``../shared/anchors/kodak/*.json``. BD-rates (PSNR and MS-SSIM in dB,
:func:`swinjax.metrics.bd_rate`: PCHIP on log-rate over the overlapping quality range) are
computed against each classical codec and each published curve.
"""

from __future__ import annotations

import math
import pathlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from swinjax import metrics
from swinjax.evaluation.classical import ClassicalCodec
from swinjax.evaluation.common import (
    PERCEPTUAL_KEYS,
    PERCEPTUAL_LABELS,
    PERCEPTUAL_METRICS,
    EvalOptions,
    PerceptualMetric,
)
from swinjax.evaluation.plot import plot_rd

if TYPE_CHECKING:
    from swinjax.compression import ImageCodec


@dataclass
class Report:
    """What :func:`evaluate` returns: curves, per-image records, BD-rates, notes, files written."""

    model: dict[str, Any]
    codecs: dict[str, dict[str, Any]]
    per_image: list[dict[str, Any]]
    bd_rates: dict[str, dict[str, Any]]
    anchors: list[metrics.RDCurve]
    notes: list[str]
    written: list[pathlib.Path]
    # Other decoders of the same files (e.g. "perceptual"): their curves, like ``model``, each
    # with its own "bd_rates".
    decoders: dict[str, dict[str, Any]] = field(default_factory=dict)


def _mean(values: Sequence[float | None]) -> float | None:
    if not values or any(v is None for v in values):
        return None
    return float(np.mean(values))


def _curve_results(records: list[dict], key: str, settings: Sequence[Any]) -> dict[str, list]:
    """Means over images per setting, in the order of ``settings``."""
    res: dict[str, list] = {
        "bpp": [], "psnr-rgb": [], "ms-ssim-rgb": [], "ms-ssim-db-rgb": [],
        "encoding_time": [], "decoding_time": [],
    }  # fmt: skip
    for s in settings:
        rows = [r for r in records if r[key] == s]
        msssim = _mean([r["ms_ssim"] for r in rows])
        res["bpp"].append(_mean([r["bpp"] for r in rows]))
        res["psnr-rgb"].append(_mean([r["psnr"] for r in rows]))
        res["ms-ssim-rgb"].append(msssim)
        res["ms-ssim-db-rgb"].append(None if msssim is None else metrics.ms_ssim_db(msssim))
        res["encoding_time"].append(_mean([r["encoding_time"] for r in rows]))
        res["decoding_time"].append(_mean([r["decoding_time"] for r in rows]))
        for name, result_key in PERCEPTUAL_KEYS.items():
            res.setdefault(result_key, []).append(_mean([r.get(name) for r in rows]))
    return res


def as_curve(name: str, results: Mapping[str, list]) -> metrics.RDCurve:
    """The :class:`~swinjax.metrics.RDCurve` of CompressAI-schema results (nulls become NaN)."""
    clean = {k: [math.nan if v is None else v for v in vals] for k, vals in results.items()}
    keys = ("bpp", "psnr-rgb", "ms-ssim-db-rgb", *metrics.PERCEPTUAL_RESULT_KEYS)
    return metrics.curve_from_results(name, {k: clean[k] for k in keys if k in clean})


def _bd_keys() -> list[tuple[str, str]]:
    """``(bd key, label)`` of every metric a BD-rate is computed on."""
    return [("psnr", "PSNR"), ("ms-ssim-db", "MS-SSIM")] + [
        (PERCEPTUAL_KEYS[n], PERCEPTUAL_LABELS[n]) for n in PERCEPTUAL_METRICS
    ]


def bd_rates(anchor: metrics.RDCurve, test: metrics.RDCurve, method: str) -> dict[str, Any]:
    """BD-rates (%) of ``test`` against ``anchor`` on every metric the curves hold.

    Keys ``psnr``, ``ms-ssim-db`` and the perceptual result keys (``lpips-alex``, ...), each with
    ``<key>_overlap`` (the share of the test curve's quality range the anchor covers) or
    ``<key>_note`` (why it is None). The perceptual metrics are lower-is-better, so their BD-rate
    is taken on the negated metric: negative means fewer bits at equal quality for every key.
    ``method``: ``"pchip"`` or ``"cubic"`` (:func:`swinjax.metrics.bd_rate`).
    """
    out: dict[str, Any] = {}
    pairs = [("psnr", anchor.psnr, test.psnr), ("ms-ssim-db", anchor.ms_ssim_db, test.ms_ssim_db)]
    for key in metrics.PERCEPTUAL_RESULT_KEYS:
        # Lower is better: BD-rate on the negated metric, so the sign keeps its meaning.
        qa, qt = anchor.perceptual.get(key), test.perceptual.get(key)
        if qa is not None and qt is not None:
            pairs.append((key, [-v for v in qa], [-v for v in qt]))
        elif qa is not None or qt is not None:
            pairs.append((key, None, None))
    for key, qa, qt in pairs:
        if qa is None or qt is None:
            out[key] = None
            out[f"{key}_note"] = "metric not in both curves"
            continue
        try:
            out[key] = metrics.bd_rate(anchor.bpp, qa, test.bpp, qt, method=method)
            out[f"{key}_overlap"] = metrics.bd_overlap(qa, qt)
        except ValueError as e:
            out[key] = None
            out[f"{key}_note"] = str(e)
    return out


def assemble(
    opts: EvalOptions,
    codec: ImageCodec,
    lmbdas: Sequence[float | None],
    chosen: Sequence[ClassicalCodec],
    records: list[dict[str, Any]],
    anchors: list[metrics.RDCurve],
    notes: list[str],
    files: Sequence[pathlib.Path],
    perceptual: Mapping[str, PerceptualMetric],
    decoders: Sequence[str] = (),
) -> Report:
    """The :class:`Report` of a run: per-codec curves, the model's curve and its BD-rates.

    ``decoders``: the other decoders whose records (``codec`` ``"model:<name>"``) the run holds;
    each gets a curve of its own, with BD-rates against the same curves as the model's.
    """
    exported = codec.exported
    model_name = f"swinjax {exported.model_id} ({_steps(exported)})"
    dataset = {"path": str(opts.data), "images": len(files)}
    codecs = {}
    for cc in chosen:
        rows = [r for r in records if r["codec"] == cc.name]
        cres = _curve_results(rows, "setting", cc.settings)
        cres[cc.setting] = list(cc.settings)
        codecs[cc.name] = metrics.compressai_json(
            cc.name,
            f"{cc.description}. {len(files)} image(s) from {opts.data}; bpp from the encoded "
            "bytes; metrics as for the model; times = wall s/image, single-threaded.",
            cres,
            dataset=dataset,
        )
    curves = [as_curve(name, obj["results"]) for name, obj in codecs.items()] + list(anchors)
    if len(lmbdas) < 2:
        notes.append("bd-rate: needs at least 2 rate points of the model; not computed")

    def model_json(name: str, rows: list[dict[str, Any]], what: str) -> dict[str, Any]:
        res = _curve_results(rows, "lmbda", lmbdas)
        res["estimated_bpp"] = [
            _mean([r["estimated_bpp"] for r in rows if r["lmbda"] == lm]) for lm in lmbdas
        ]
        res["lmbda"] = list(lmbdas)
        desc = (
            f"{name} on {len(files)} image(s) from {opts.data}{what}. bpp: actual (file bytes x "
            "8 / pixels, header included); estimated_bpp: -log2 likelihood of y and z / pixels. "
            "PSNR and MS-SSIM on the 8-bit decoded RGB image, per image then mean; MS-SSIM 5 "
            "scales (Wang et al. 2003 weights, pytorch_msssim conventions, data range 255). "
            "Times: mean wall-clock seconds per image of compress/decompress on "
            f"{_device_name()}."
        )
        obj = metrics.compressai_json(
            name,
            desc,
            res,
            model={
                "id": exported.model_id,
                "step": exported.step,
                "config_hash": exported.config_hash,
                "variable_rate": bool(codec.model_config.get("variable_rate", False)),
                "ckpt": str(opts.ckpt) if opts.ckpt is not None else _default_model(),
            },
            dataset=dataset,
            notes=notes,
        )
        test = as_curve(name, res)
        obj["bd_rates"] = {
            "description": (
                f"BD-rate (%) of {name} against each curve (negative = fewer bits), "
                f"{'PCHIP on log-rate' if opts.bd_method == 'pchip' else 'cubic fit (VCEG-M33)'}"
                ", over the overlapping quality range only (psnr: PSNR-RGB dB; ms-ssim-db: "
                "-10 log10(1 - mean MS-SSIM); lpips-alex, lpips-vgg, dists: lower is better, so "
                "the BD-rate is taken on the negated metric and negative still means fewer bits "
                "at equal quality); *_overlap = fraction of the model's quality range covered by "
                "the anchor."
            ),
            **{c.name: bd_rates(c, test, opts.bd_method) for c in curves},
        }
        return obj

    model = model_json(model_name, [r for r in records if r["codec"] == "model"], "")
    bd = {k: v for k, v in model["bd_rates"].items() if k != "description"}
    others = {}
    for d in decoders:
        rows = [r for r in records if r["codec"] == f"model:{d}"]
        others[d] = model_json(
            f"{model_name} + {d} decoder", rows, f", the same files decoded by the {d} decoder"
        )
    return Report(model, codecs, records, bd, anchors, notes, [], others)


def _steps(exported: Any) -> str:
    """``"step N"``, or the cumulative steps and CPU hours its model card records."""
    meta = {}
    if exported.path is not None and (pathlib.Path(exported.path) / "model.json").is_file():
        import json

        meta = json.loads((pathlib.Path(exported.path) / "model.json").read_text())
    history = meta.get("history") or meta.get("training") or {}
    total = history.get("total_steps")
    if total:
        hours = history.get("cpu_core_hours")
        return f"{total:,} steps in all" + (f", {hours:g} CPU-core-h" if hours else "")
    return f"step {exported.step}"


def _default_model() -> str:
    from swinjax.export import DEFAULT_MODEL

    return DEFAULT_MODEL


def _device_name() -> str:
    import jax

    d = jax.devices()[0]
    return f"{d.platform} ({getattr(d, 'device_kind', '') or d.platform})"


def write_outputs(opts: EvalOptions, report: Report, out_path: pathlib.Path | None) -> None:
    """Writes the requested result files and plot, recording each in ``report.written``."""
    if out_path is not None:
        report.written.append(metrics.write_json_atomic(out_path, report.model))
        for name, obj in report.codecs.items():
            p = out_path.with_name(f"{out_path.stem}_{name}{out_path.suffix or '.json'}")
            report.written.append(metrics.write_json_atomic(p, obj))
        for name, obj in report.decoders.items():
            p = out_path.with_name(f"{out_path.stem}_decoder-{name}{out_path.suffix or '.json'}")
            report.written.append(metrics.write_json_atomic(p, obj))
    if opts.per_image:
        if out_path is None:
            p = pathlib.Path("results_per_image.json")
        else:
            p = out_path.with_name(f"{out_path.stem}_per_image{out_path.suffix or '.json'}")
        per = {
            "description": "one record per image and rate point; bpp actual (file bytes), "
            "estimated_bpp from the likelihoods (model only); metrics on 8-bit RGB",
            "records": report.per_image,
        }
        report.written.append(metrics.write_json_atomic(p, per))
    if opts.plot:
        curves = [as_curve(report.model["name"], report.model["results"])]
        curves += [as_curve(o["name"], o["results"]) for o in report.decoders.values()]
        curves += [as_curve(n, o["results"]) for n, o in report.codecs.items()]
        curves += report.anchors
        report.written.append(plot_rd(curves, opts.plot, title=report.model["name"]))


def _f(v: float | None, spec: str) -> str:
    return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:{spec}}"


def format_table(report: Report) -> str:
    """The table ``evaluate.py`` prints: the model's points, each codec's curve, BD-rates."""
    lines = []
    m = report.model
    r = m["results"]
    lines.append(m["name"] + f" on {m['dataset']['images']} image(s) from {m['dataset']['path']}")
    pkeys = [PERCEPTUAL_KEYS[n] for n in PERCEPTUAL_METRICS]
    head = (
        f"{'codec':<10} {'setting':>10} {'bpp':>8} {'est.bpp':>8} {'PSNR':>7} {'MS-SSIM':>8} "
        + " ".join(f"{PERCEPTUAL_LABELS[n]:>10}" for n in PERCEPTUAL_METRICS)
        + f" {'enc s':>7} {'dec s':>7}"
    )
    lines += [head, "-" * len(head)]

    def perceptual_cells(res: Mapping[str, list], i: int) -> str:
        return " ".join(_f((res.get(k) or [None] * (i + 1))[i], "10.4f") for k in pkeys)

    models = [("model", r)] + [(f"model:{d}", o["results"]) for d, o in report.decoders.items()]
    for label, res in models:
        for i, lm in enumerate(res["lmbda"]):
            setting = "fixed" if lm is None else f"λ={lm:g}"
            lines.append(
                f"{label[:10]:<10} {setting:>10} {_f(res['bpp'][i], '8.4f')} "
                f"{_f(res['estimated_bpp'][i], '8.4f')} {_f(res['psnr-rgb'][i], '7.2f')} "
                f"{_f(res['ms-ssim-rgb'][i], '8.4f')} {perceptual_cells(res, i)} "
                f"{_f(res['encoding_time'][i], '7.3f')} {_f(res['decoding_time'][i], '7.3f')}"
            )
    for name, obj in report.codecs.items():
        cr = obj["results"]
        key = next(k for k in cr if k in ("quality", "ratio", "distance"))
        for i, s in enumerate(cr[key]):
            lines.append(
                f"{name:<10} {key[0]}={s:<8g} {_f(cr['bpp'][i], '8.4f')} {'':>8} "
                f"{_f(cr['psnr-rgb'][i], '7.2f')} {_f(cr['ms-ssim-rgb'][i], '8.4f')} "
                f"{perceptual_cells(cr, i)} "
                f"{_f(cr['encoding_time'][i], '7.3f')} {_f(cr['decoding_time'][i], '7.3f')}"
            )
    tables = [("the model", report.bd_rates)] + [
        (f"the model + {d} decoder", {k: v for k, v in o["bd_rates"].items() if k != "description"})
        for d, o in report.decoders.items()
    ]
    for who, bd_rates in tables:
        if not bd_rates:
            continue
        lines.append("")
        lines.append(
            f"BD-rate of {who} vs (negative = fewer bits at equal quality, for every metric; "
            "PCHIP, overlap only):"
        )
        for name, bd in bd_rates.items():
            parts = []
            for key, label in _bd_keys():
                if key not in bd:
                    continue
                v = bd.get(key)
                if v is None:
                    why = str(bd.get(f"{key}_note", ""))
                    short = {
                        "overlap": "no overlap",
                        "at least 2": "too few points",
                        "not in both": "metric missing",
                        "same quality": "repeated quality",
                    }
                    why = next((v for k, v in short.items() if k in why), why[:40])
                    parts.append(f"{label} n/a ({why})" if why else f"{label} n/a")
                else:
                    cov = bd.get(f"{key}_overlap", 1.0)
                    flag = f" (overlap {cov:.0%})" if cov < 0.5 else ""
                    parts.append(f"{label} {v:+7.1f} %{flag}")
            lines.append(f"  {name:<40} " + "   ".join(parts[:2]))
            if parts[2:]:
                lines.append(f"  {'':<40} " + "   ".join(parts[2:]))
    if report.notes:
        lines.append("")
        lines += [f"note: {n}" for n in report.notes]
    for p in report.written:
        lines.append(f"wrote {p}")
    return "\n".join(lines)
