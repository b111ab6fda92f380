"""The RD plot of an evaluation, drawn with matplotlib.

PSNR and MS-SSIM (dB) against bpp and, when measured, LPIPS-Alex, LPIPS-VGG and DISTS (lower is
better).
"""

from __future__ import annotations

import math
import os
import pathlib
from collections.abc import Sequence

from swinjax import metrics
from swinjax.atomic import write_atomic

# The model is drawn in red, thicker, on top; the other curves take matplotlib's colour cycle
# without its red ("C3"), each the same colour in both panels.
MODEL_COLOUR = "#d62728"
_OTHER_COLOURS = ("C0", "C1", "C2", "C4", "C5", "C6", "C7", "C8", "C9")
FIGURE_SIZE = (15.0, 6.4)  # inches; at DPI, a 1500 x 640 PNG (two panels)
FIGURE_SIZE_PERCEPTUAL = (18.0, 11.0)  # five panels on two rows
PERCEPTUAL_PANELS = (("LPIPS-Alex", "lpips-alex"), ("LPIPS-VGG", "lpips-vgg"), ("DISTS", "dists"))
DPI = 100


def _label(name: str, width: int = 56) -> str:
    """A legend label of at most ``width`` characters that keeps the name's start and end.

    Curves of one model differ at the end of their names (``... + perceptual decoder``); cutting
    only the end would give them one label and drop a curve from the legend.
    """
    if len(name) <= width:
        return name
    half = (width - 3) // 2
    return f"{name[:half]}...{name[-half:]}"


def plot_rd(
    curves: Sequence[metrics.RDCurve],
    path: str | os.PathLike,
    title: str = "",
    overwrite: bool = True,
) -> pathlib.Path:
    """Draws PSNR-vs-bpp and MS-SSIM(dB)-vs-bpp panels with every curve and writes a PNG.

    Where any curve carries LPIPS-Alex, LPIPS-VGG or DISTS (``RDCurve.perceptual``), a second
    row adds one panel each (lower is better; the axis is labelled so).

    The first curve is the model. The x axis runs from 0 to the larger of 1.3 x the model's
    highest rate and 2 bpp (or the highest rate of any curve, if lower): published anchors reach
    4 bpp, which would squeeze a learned codec's low-rate curve into a corner.

    Args:
        curves: RD curves (:class:`swinjax.metrics.RDCurve`), the model's first.
        path: the PNG to write (atomically).
        title: a line above the panels.
        overwrite: replace an existing file.

    Returns:
        The path written.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is false.
    """
    from matplotlib.figure import Figure

    model_bpp = [v for v in (curves[0].bpp if curves else []) if math.isfinite(v)]
    all_bpp = [v for c in curves for v in c.bpp if math.isfinite(v)] or [1.0]
    x_hi = max(max(model_bpp, default=0.0) * 1.3, min(max(all_bpp), 2.0))
    # A Figure without pyplot: no global state, no GUI backend, safe in threads and notebooks.
    panels = [("PSNR-RGB [dB]", "psnr"), ("MS-SSIM-RGB [dB]", "ms_ssim_db")]
    panels += [
        (f"{label} (lower is better)", key)
        for label, key in PERCEPTUAL_PANELS
        # a metric that was not computed comes as nulls (NaN): no empty panel for it
        if any(math.isfinite(v) for c in curves for v in c.perceptual.get(key, []))
    ]
    size = FIGURE_SIZE if len(panels) == 2 else FIGURE_SIZE_PERCEPTUAL
    fig = Figure(figsize=size, dpi=DPI, layout="constrained")
    fig.suptitle(title or "rate-distortion")
    if len(panels) == 2:
        axes = list(fig.subplots(1, 2))
    else:
        grid = fig.subplots(2, 3)
        cells = [grid[0][0], grid[0][1], *grid[1]]
        axes = cells[: len(panels)]
        for ax in [grid[0][2], *cells[len(panels) :]]:
            ax.set_axis_off()
    handles = {}

    def values(c: metrics.RDCurve, attr: str) -> list[float]:
        if attr in ("psnr", "ms_ssim_db"):
            return getattr(c, attr) or []
        return c.perceptual.get(attr, [])

    for ax, (label, attr) in zip(axes, panels, strict=True):
        for i, c in enumerate(curves):
            pts = sorted(
                (x, y)
                for x, y in zip(c.bpp, values(c, attr), strict=False)
                if math.isfinite(x) and math.isfinite(y) and x <= x_hi
            )
            if not pts:
                continue
            xs, ys = zip(*pts, strict=True)
            style = {"color": MODEL_COLOUR, "linewidth": 3, "zorder": 3}
            if i:
                style = {"color": _OTHER_COLOURS[(i - 1) % len(_OTHER_COLOURS)], "linewidth": 1.5}
            (line,) = ax.plot(xs, ys, marker="o", markersize=4, **style)
            handles.setdefault(_label(c.name), line)
        ax.set_xlim(0.0, x_hi)
        ax.set_xlabel("bpp")
        ax.set_ylabel(label)
        ax.grid(True, color="#e8e8e8")
    fig.legend(handles.values(), handles.keys(), loc="outside right upper", fontsize="small")
    return write_atomic(path, lambda f: fig.savefig(f, format="png"), overwrite=overwrite)
