"""Charts drawn on the server as inline SVG: no CDN, no JavaScript, no style attributes (the CSP forbids
inline styles; SVG presentation attributes are not styles). Every chart has a ``viewBox`` and scales to its
container's width (``width="100%"``), with a text scale (0-100%) and a title for screen readers.
"""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape

PALETTE = ("#2f6db5", "#c0392b", "#1a7f37", "#8e44ad", "#d35400", "#16838c", "#7f6a00", "#555555")


def _short(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def bars(rows: Sequence[tuple[str, str, float]], title: str) -> Markup:
    """Horizontal bars of P(correct) per skill: rows are (tag, name, p); labels are the skills' names."""
    label_w, bar_w, row_h, top = 190, 240, 22, 18
    height = top + row_h * len(rows) + 4
    out = [f'<svg class="chart" viewBox="0 0 {label_w + bar_w + 50} {height}" width="100%" role="img" '
           f'aria-label="{escape(title)}" preserveAspectRatio="xMinYMin meet"><title>{escape(title)}</title>']
    for frac in (0, 0.5, 1):  # the scale
        x = label_w + frac * bar_w
        out.append(f'<line x1="{x:.1f}" y1="{top - 4}" x2="{x:.1f}" y2="{height}" stroke="#ccc"/>'
                   f'<text x="{x:.1f}" y="{top - 7}" text-anchor="middle" class="tick">{frac:.0%}</text>')
    for n, (tag, name, p) in enumerate(rows):
        y = top + n * row_h
        out.append(f'<g class="bar" data-tag="{escape(tag)}" data-p="{p:.4f}">'
                   f'<text x="0" y="{y + 15}"><title>{escape(name)}</title>{escape(_short(name, 30))}</text>'
                   f'<rect x="{label_w}" y="{y + 3}" width="{p * bar_w:.1f}" height="16" fill="#4a78b5"/>'
                   f'<text x="{label_w + p * bar_w + 5:.1f}" y="{y + 15}">{p:.0%}</text></g>')
    out.append("</svg>")
    return Markup("".join(out))


def lines(series: Sequence[tuple[str, Sequence[tuple[int, float]]]], title: str) -> Markup:
    """P(correct) over answers given, one line per skill (name, [(answers so far, p)]), with a legend."""
    w, h, left, bottom, top = 460, 200, 40, 24, 10
    xs = [x for _, pts in series for x, _ in pts]
    x0, x1 = (min(xs), max(xs)) if xs else (0, 1)
    span = max(1, x1 - x0)

    def px(x: int) -> float:
        return left + (x - x0) / span * (w - left - 10)

    def py(p: float) -> float:
        return top + (1 - p) * (h - top - bottom)

    legend_h = 18 * len(series)
    out = [f'<svg class="chart" viewBox="0 0 {w} {h + legend_h}" width="100%" role="img" '
           f'aria-label="{escape(title)}" preserveAspectRatio="xMinYMin meet"><title>{escape(title)}</title>']
    for p in (0, 0.5, 1):
        out.append(f'<line x1="{left}" y1="{py(p):.1f}" x2="{w - 10}" y2="{py(p):.1f}" stroke="#ddd"/>'
                   f'<text x="{left - 4}" y="{py(p) + 4:.1f}" text-anchor="end" class="tick">{p:.0%}</text>')
    out.append(f'<text x="{left}" y="{h - 6}" class="tick">{x0} answers</text>'
               f'<text x="{w - 10}" y="{h - 6}" text-anchor="end" class="tick">{x1} answers</text>')
    for n, (name, pts) in enumerate(series):
        color = PALETTE[n % len(PALETTE)]
        path = " ".join(f"{px(x):.1f},{py(p):.1f}" for x, p in pts)
        out.append(f'<g class="line" data-skill="{escape(name)}" data-points="{len(pts)}">'
                   f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
        out.extend(f'<circle cx="{px(x):.1f}" cy="{py(p):.1f}" r="3" fill="{color}"/>' for x, p in pts)
        ly = h + 14 + 18 * n
        out.append(f'<rect x="{left}" y="{ly - 9}" width="12" height="10" fill="{color}"/>'
                   f'<text x="{left + 18}" y="{ly}">{escape(_short(name, 60))}</text></g>')
    out.append("</svg>")
    return Markup("".join(out))


def heat_class(p: float | None) -> str:
    """CSS class of a heatmap cell (tenths of P; ``h-none`` when unknown)."""
    return "h-none" if p is None else f"h{min(9, max(0, int(p * 10)))}"
