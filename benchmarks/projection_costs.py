"""MACs and parameters of SwinNPE's Q/K/V projection forms vs SwinT-ChARM at 768x512.

    python benchmarks/projection_costs.py

Prints a markdown table (XLA cost analysis, whole codec incl. ChARM, and the transforms alone)
against the published figures (SwinNPE Table I: 178 GMACs; SwinT-ChARM: 223 GMACs).
"""

from __future__ import annotations

import pathlib

from swinjax.config_utils import load_config
from swinjax.costs import cost_report

ROOT = pathlib.Path(__file__).resolve().parents[1]

FORMS = [
    ("swint-charm (linear Q/K/V + rel. pos. bias)", "swint_charm.py", {}),
    ("swinnpe, dw (depthwise 3x3 only)", "swinnpe.py", {}),
    ("swinnpe, dw_pw (depthwise 3x3 + pointwise CxC)", "swinnpe.py", {"projection": "dw_pw"}),
    ("swinnpe, dw + kv_stride 2", "swinnpe.py", {"kv_stride": 2}),
]


def main() -> None:
    print("| form | params (M) | transforms GMACs | whole codec GMACs | published |")
    print("|---|---:|---:|---:|---:|")
    for name, file, override in FORMS:
        c = load_config(str(ROOT / "configs" / file))
        m = c.model
        for spec in (m.g_a, m.g_s, m.hyper.h_a, m.hyper.h_s):
            spec.update(override)
        r = cost_report(c, 512, 768)
        macs = r["macs_per_part"]
        transforms = (macs["g_a"] + macs["g_s"] + macs["h_a"] + macs["h_s"]) / 1e9
        published = "223" if "charm" in name else ("178" if name.endswith("only)") else "-")
        print(
            f"| {name} | {r['params'] / 1e6:.2f} | {transforms:.1f} | {r['gmacs']:.1f} | "
            f"{published} |"
        )


if __name__ == "__main__":
    main()
