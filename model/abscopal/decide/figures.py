"""The comparison figure: volumes over time per schedule, drawn at the detection floor below it,
with the cured fractions, the schedules' RT and drug days marked on the time axis and the pairwise
table (with ties) in the caption."""

from __future__ import annotations

import textwrap

import numpy as np

from ..simulation.outcomes import DETECTION_FLOOR_MM3
from . import display
from .pairwise import TIE_RULE

#: end points named in the figure caption's pairwise lines (all are in the table and the JSON)
CAPTION_ENDPOINTS = ("time_to_endpoint", "cure_irradiated", "cure_abscopal", "volume_abscopal")


def _mark_schedules(ax, c, colours) -> None:
    """Each schedule's RT fractions (|) and drug doses (o) as a row of markers along the time axis."""
    trans = ax.get_xaxis_transform()  # x in days, y in axes fraction
    for k, s in enumerate(c.schedules):
        y = 0.025 + 0.04 * k
        col = colours.get(s.name, "k")
        if s.rt:
            ax.scatter([f.day for f in s.rt], [y] * len(s.rt), marker="|", s=90, color=col, transform=trans, clip_on=False)
        if s.drugs:
            ax.scatter([d.day for d in s.drugs], [y] * len(s.drugs), marker="o", s=14, color=col, transform=trans, clip_on=False)


def caption(c, width: int = 190) -> str:
    """Where the draws came from, the end-point and tie rules, and the pairwise probabilities."""
    parts = [f"Draws: {c.source}."]
    parts.append(
        f"Horizon day {c.horizon_days:g}; a mouse is removed when its tumour burden reaches {display.number(c.threshold_mm3)} mm3 "
        f"(volumes held from then on; never counted cured). Volumes below {DETECTION_FLOOR_MM3:g} mm3 are drawn at the floor. "
        "Markers: | RT fraction, o drug dose."
    )
    lines = [" ".join(parts)]
    if not len(c.pairwise):
        return "\n".join(textwrap.fill(x, width) for x in lines)
    shown = [e for e in CAPTION_ENDPOINTS if e in set(c.pairwise.endpoint)]
    for (a, b), df in c.pairwise.groupby(["a", "b"], sort=False):
        bits = []
        for _, r in df[df.endpoint.isin(shown)].iterrows():
            bits.append(
                f"{r.endpoint}: A {display.percent(r.p_a_better)}, B {display.percent(r.p_b_better)}, tie {display.percent(r.p_tie)}"
            )
        lines.append(f"A = {a} vs B = {b}: " + "; ".join(bits))
    lines.append(f"P(A better), P(B better), P(tie) over paired mice ({TIE_RULE}).")
    return "\n".join(textwrap.fill(x, width) for x in lines)


def plot_comparison(c, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    from ..io import atomic_write_figure

    panels = [(0, "Irradiated tumour", "irradiated")]
    if not c.single_tumour:
        panels.append((1, "Abscopal (distant, not irradiated) tumour", "abscopal"))
    width = 5.6 * len(panels) + 0.4
    text = caption(c, int(width * 17))
    text_h = 0.11 * (text.count("\n") + 1) + 0.15
    height = 4.4 + text_h
    fig, axes = plt.subplots(1, len(panels), figsize=(width, height), sharey=True, squeeze=False)
    axes = axes[0]
    colours: dict = {}
    top = DETECTION_FLOOR_MM3
    for ax, (j, title, site) in zip(axes, panels):
        for name, v in c.volumes.items():
            x = np.maximum(v[..., j], DETECTION_FLOOR_MM3)  # below the floor: drawn at the floor
            med = np.median(x, axis=0)
            lo, hi = np.quantile(x, [0.05, 0.95], axis=0)
            top = max(top, float(np.max(hi)))
            style = dict(color="grey", ls="--") if name == "untreated" else {}
            label = name
            if c.cured and name in c.cured:
                label = f"{name} (cured {display.percent(c.cured[name][site])})"
            (line,) = ax.plot(c.ts, med, label=label, **style)
            colours[name] = line.get_color()
            ax.fill_between(c.ts, lo, hi, alpha=0.15, color=line.get_color())
        ax.set_yscale("log")
        ax.axhline(DETECTION_FLOOR_MM3, color="k", lw=0.6, ls=":")
        ax.set_xlabel("day after tumour inoculation")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    for ax in axes:
        ax.set_ylim(DETECTION_FLOOR_MM3 / 10, top * 2)
        _mark_schedules(ax, c, colours)
    axes[0].set_ylabel("tumour volume (mm$^3$): median, 90% band")
    handles = [
        Line2D([], [], marker="|", ls="", color="k", markersize=9, label="RT fraction"),
        Line2D([], [], marker="o", ls="", color="k", markersize=4, label="drug dose"),
    ]
    axes[-1].legend(handles=handles + axes[-1].get_legend_handles_labels()[0], fontsize=7, loc="upper left")
    what = "between-mouse spread only, no parameter uncertainty" if c.spread_only else "posterior and between-mouse spread"
    title = f"Schedules compared over {c.n_draws - c.n_dropped} virtual mice ({what}), horizon day {c.horizon_days:g}"
    fig.suptitle(textwrap.fill(title, int(width * 10)), fontsize=10)
    fig.text(0.01, 0.01, text, fontsize=6, va="bottom", ha="left", family="monospace")
    fig.tight_layout(rect=(0, text_h / height, 1, 0.95))
    atomic_write_figure(fig, path)
    plt.close(fig)
