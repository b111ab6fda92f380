"""BD-rates between result files already written, on every metric they share: a Markdown table.

    python scripts/bd_rates.py TEST.json [TEST.json ...] --anchors A.json[,B.json ...]
        [--bd-method pchip|cubic]

``evaluate.py`` computes the same numbers for the curves of one run; this compares curves of
different runs without recomputing them: for example a model's ``results.json`` and its
``results_decoder-perceptual.json`` against the codec curves of an earlier
``evaluate.py --codecs webp,avif --out codecs/results.json`` run (``codecs/results_webp.json``,
...) that measured LPIPS and DISTS too. Files are CompressAI-schema JSON (docs/evaluation.md).
A BD-rate is the test curve's rate change at equal quality against the anchor (negative: fewer
bits), over the overlapping quality range only (the overlap is printed beside it); LPIPS and
DISTS are lower-is-better and their BD-rate is taken on the negated metric, so negative still
means fewer bits.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from swinjax.evaluation.report import as_curve, bd_rates  # noqa: E402
from swinjax.metrics import RDCurve  # noqa: E402

METRICS = (
    ("psnr", "PSNR"),
    ("ms-ssim-db", "MS-SSIM"),
    ("lpips-alex", "LPIPS-Alex"),
    ("lpips-vgg", "LPIPS-VGG"),
    ("dists", "DISTS"),
)


def read_curve(path: str) -> RDCurve:
    """The RD curve of a CompressAI-schema file, named by its ``name`` (else the file name)."""
    try:
        obj = json.loads(pathlib.Path(path).read_text())
        return as_curve(str(obj.get("name") or pathlib.Path(path).stem), obj["results"])
    except (OSError, ValueError, KeyError) as e:
        raise SystemExit(f"{path}: not a readable CompressAI-schema results file ({e})") from e


def cell(bd: dict[str, Any], key: str) -> str:
    """``-12.3 % (80 %)``: the BD-rate and the overlap, or why there is none."""
    v = bd.get(key)
    if v is None:
        return "n/a" if key in bd else ""
    overlap = bd.get(f"{key}_overlap")
    return f"{v:+.1f} %" + ("" if overlap is None else f" ({overlap:.0%})")


def main(argv: list[str] | None = None) -> int:
    """Prints one row per (test, anchor) pair and one column per shared metric."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("tests", nargs="+", help="results files of the curves to compare")
    p.add_argument("--anchors", required=True, help="comma-separated results files")
    p.add_argument("--bd-method", choices=("pchip", "cubic"), default="pchip")
    args = p.parse_args(argv)
    tests = [read_curve(t) for t in args.tests]
    anchors = [read_curve(a) for a in args.anchors.split(",") if a]
    rows = [(t.name, a.name, bd_rates(a, t, args.bd_method)) for t in tests for a in anchors]
    shown = [(k, label) for k, label in METRICS if any(cell(bd, k) for _, _, bd in rows)]
    print("| curve | against | " + " | ".join(label for _, label in shown) + " |")
    print("|---|---|" + "---:|" * len(shown))
    for test, anchor, bd in rows:
        print(f"| {test} | {anchor} | " + " | ".join(cell(bd, k) for k, _ in shown) + " |")
    print(
        f"BD-rate ({args.bd_method}; overlap of quality ranges in brackets); negative: fewer bits"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
