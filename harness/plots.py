"""Static SVG plots for the site, drawn without any network or plotting library: scatter with a fitted
line and its bootstrap band, line charts by layer. Every text is escaped; every plot carries a title and
a description for screen readers."""

from __future__ import annotations

import hashlib
import html
import math

W, H, PAD = 460, 300, 46
PALETTE = ["#2456a6", "#c03030", "#2e8b57", "#b8860b", "#6a3d9a", "#1f7a8c", "#d95f02", "#555555", "#e7298a", "#66a61e"]


def _e(s) -> str:
    return html.escape(str(s), quote=True)


def _range(values: list[float], pad_frac: float = 0.06, include_zero: bool = False) -> tuple[float, float]:
    vals = [v for v in values if v is not None and math.isfinite(v)] + ([0.0] if include_zero else [])
    if not vals:
        return 0.0, 1.0
    lo, hi = min(vals), max(vals)
    if hi - lo < 1e-12:
        return lo - 0.5, hi + 0.5
    return lo - pad_frac * (hi - lo), hi + pad_frac * (hi - lo)


def _frame(title: str, desc: str, xlabel: str, ylabel: str, xr, yr, body: list[str], w=W, h=H, extra_w: int = 0) -> str:
    """The axes, ticks and labels of a plot area w x h; `extra_w` more pixels on the right (a legend)."""
    sx = lambda x: PAD + (x - xr[0]) / (xr[1] - xr[0]) * (w - 1.5 * PAD)
    sy = lambda y: h - PAD - (y - yr[0]) / (yr[1] - yr[0]) * (h - 1.5 * PAD)
    ticks = []
    for i in range(5):
        xv, yv = xr[0] + (xr[1] - xr[0]) * i / 4, yr[0] + (yr[1] - yr[0]) * i / 4
        ticks.append(f'<text class="tick" x="{sx(xv):.1f}" y="{h - PAD + 15}" text-anchor="middle">{xv:.3g}</text>')
        ticks.append(f'<text class="tick" x="{PAD - 5}" y="{sy(yv) + 4:.1f}" text-anchor="end">{yv:.3g}</text>')
        ticks.append(f'<line class="grid" x1="{PAD}" y1="{sy(yv):.1f}" x2="{w - PAD / 2}" y2="{sy(yv):.1f}"/>')
    uid = hashlib.sha1(f"{title}|{desc}|{xlabel}|{ylabel}".encode()).hexdigest()[:10]
    return (f'<svg class="plot" role="img" aria-labelledby="t{uid} d{uid}" width="{w + extra_w}" height="{h}" viewBox="0 0 {w + extra_w} {h}" '
            f'xmlns="http://www.w3.org/2000/svg"><title id="t{uid}">{_e(title)}</title><desc id="d{uid}">{_e(desc)}</desc>'
            + "".join(ticks)
            + f'<text class="label" x="{w / 2:.0f}" y="{h - 8}" text-anchor="middle">{_e(xlabel)}</text>'
            + f'<text class="label" x="13" y="{h / 2:.0f}" transform="rotate(-90 13 {h / 2:.0f})" text-anchor="middle">{_e(ylabel)}</text>'
            + "".join(b(sx, sy) if callable(b) else b for b in body) + "</svg>")


def scatter(points: list[dict], title: str, xlabel: str, ylabel: str, fit: dict | None = None, desc: str = "") -> str:
    """points: [{x, y, label}]; fit: {slope, intercept, band: [(x, lo, hi), ...]} or None."""
    xs, ys = [p["x"] for p in points], [p["y"] for p in points]
    band = (fit or {}).get("band") or []
    xr = _range(xs)
    yr = _range(ys + [b[1] for b in band] + [b[2] for b in band], include_zero=True)
    body = []
    if band:
        def draw_band(sx, sy):
            up = " ".join(f"{sx(x):.1f},{sy(hi):.1f}" for x, lo, hi in band)
            down = " ".join(f"{sx(x):.1f},{sy(lo):.1f}" for x, lo, hi in reversed(band))
            return f'<polygon class="band" points="{up} {down}"/>'
        body.append(draw_band)
    body.append(lambda sx, sy: f'<line class="zero" x1="{PAD}" y1="{sy(0):.1f}" x2="{W - PAD / 2}" y2="{sy(0):.1f}"/>')
    if fit and fit.get("slope") is not None:
        body.append(lambda sx, sy: f'<line class="fit" x1="{sx(xr[0]):.1f}" y1="{sy(fit["intercept"] + fit["slope"] * xr[0]):.1f}" '
                                   f'x2="{sx(xr[1]):.1f}" y2="{sy(fit["intercept"] + fit["slope"] * xr[1]):.1f}"/>')
    for p in points:
        body.append(lambda sx, sy, p=p: f'<circle cx="{sx(p["x"]):.1f}" cy="{sy(p["y"]):.1f}" r="4.5">'
                                        f'<title>{_e(p["label"])}: {p["x"]:.3f}, {p["y"]:.2f}</title></circle>')
    return _frame(title, desc or f"Scatter of {len(points)} points.", xlabel, ylabel, xr, yr, body)


def lines(series: dict[str, list[float]], title: str, xlabel: str, ylabel: str, desc: str = "", max_legend: int = 10) -> str:
    """series: name -> y values at x = 0, 1, 2, ... (e.g. CKA by layer)."""
    ys = [v for vals in series.values() for v in vals]
    n = max((len(v) for v in series.values()), default=1)
    xr, yr = (0.0, max(1.0, n - 1.0)), _range(ys)
    body = []
    for i, (name, vals) in enumerate(series.items()):
        color = PALETTE[i % len(PALETTE)]
        body.append(lambda sx, sy, vals=vals, color=color, name=name: (
            f'<polyline class="series" stroke="{color}" points="'
            + " ".join(f"{sx(x):.1f},{sy(v):.1f}" for x, v in enumerate(vals)) + f'"><title>{_e(name)}</title></polyline>'))
    names = list(series)
    legend = "".join(f'<text class="legend" x="{W + 4}" y="{PAD / 2 + 14 * i + 8}" fill="{PALETTE[i % len(PALETTE)]}">{_e(name)}</text>'
                     for i, name in enumerate(names[:max_legend]))
    if len(names) > max_legend:
        legend += f'<text class="legend" x="{W + 4}" y="{PAD / 2 + 14 * max_legend + 8}">and {len(names) - max_legend} more</text>'
    width = max([len(n) for n in names[:max_legend]] + [8]) * 7
    return _frame(title, desc or f"{len(series)} lines over {n} points.", xlabel, ylabel, xr, yr, body + [legend],
                  h=max(H, PAD + 14 * (min(len(names), max_legend) + 1)), extra_w=width)


def heatmap(rows: list[str], cols: list[str], values: dict[tuple[str, str], float], title: str, desc: str = "",
            lo: float = 0.0, hi: float = 100.0, cell: int = 16) -> str:
    """A rows x cols grid of coloured cells (red at or below `lo`, through white, to blue at or above `hi`; grey
    where there is no value), each with its value in a tooltip; row labels left, column labels rotated on top."""
    left = max([len(r) for r in rows] + [4]) * 7 + 8
    top = max([len(c) for c in cols] + [4]) * 6 + 12
    w, h = left + cell * len(cols) + 8, top + cell * len(rows) + 8

    def colour(v: float) -> str:
        t = min(1.0, max(0.0, (v - lo) / (hi - lo))) if hi > lo else 0.5
        if t < 0.5:  # red (#c03030) to white
            k = t / 0.5
            return f"rgb({int(192 + 63 * k)},{int(48 + 207 * k)},{int(48 + 207 * k)})"
        k = (t - 0.5) / 0.5  # white to blue (#2456a6)
        return f"rgb({int(255 - 219 * k)},{int(255 - 169 * k)},{int(255 - 89 * k)})"

    uid = hashlib.sha1(f"{title}|{desc}|{len(rows)}x{len(cols)}".encode()).hexdigest()[:10]
    parts = [f'<svg class="plot heatmap" role="img" aria-labelledby="t{uid} d{uid}" width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
             f'xmlns="http://www.w3.org/2000/svg"><title id="t{uid}">{_e(title)}</title><desc id="d{uid}">{_e(desc)}</desc>']
    for j, c in enumerate(cols):
        x = left + cell * j + cell / 2
        parts.append(f'<text class="tick" x="{x:.1f}" y="{top - 4}" transform="rotate(-60 {x:.1f} {top - 4})">{_e(c)}</text>')
    for i, r in enumerate(rows):
        y = top + cell * i
        parts.append(f'<text class="tick" x="{left - 4}" y="{y + cell * 0.75:.1f}" text-anchor="end">{_e(r)}</text>')
        for j, c in enumerate(cols):
            v = values.get((r, c))
            ok = v is not None and math.isfinite(v)
            fill = colour(v) if ok else "#dddddd"
            tip = f"{r} on {c}: {v:.1f}" if ok else f"{r} on {c}: no score"
            parts.append(f'<rect x="{left + cell * j}" y="{y}" width="{cell - 1}" height="{cell - 1}" fill="{fill}">'
                         f'<title>{_e(tip)}</title></rect>')
    return "".join(parts) + "</svg>"
