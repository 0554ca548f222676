#!/usr/bin/env python3
"""Draws bench/growth.sh's results as an SVG, by hand (standard library only).

Usage: python3 bench/growth_plot.py growth.csv out.svg

Three panels over the same logarithmic N axis: the server's CPU per heartbeat
round trip, its user-space memory per connection (with the 256-byte target of
issue 18), and the kernel's memory per connection pair. Each panel shades the
band from its smallest point to 1.2 times that: "flat within 20 %" means every
point lies in the band. Points whose run failed (rc != 0) or lack a figure are
left out, and the caption says so.
"""

import csv
import math
import sys
from xml.sax.saxutils import escape

WIDTH = 720
PANEL_HEIGHT = 220
LEFT, RIGHT, TOP, GAP, BOTTOM = 80, 30, 62, 70, 60


def read_points(path):
    """Rows of the CSV as dicts, with n as an int; failed runs are kept and flagged."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        row["n"] = int(row["n"])
    return rows


def number(row, key):
    """The row's figure under key as a float, or None when it is missing."""
    value = row.get(key, "")
    try:
        return float(value)
    except ValueError:
        return None


def nice_ceiling(value):
    """A round number at or above value, for an axis's top (1, 2, 2.5, 5 x 10^k)."""
    if value <= 0:
        return 1.0
    exponent = math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if step * 10**exponent >= value:
            return step * 10**exponent
    return 10 ** (exponent + 1)


def label_n(n):
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n >= 1000 and n % 1000 == 0:
        return f"{n // 1000}k"
    return str(n)


def panel(out, index, title, unit, points, all_n, target=None):
    """One panel: points is a list of (n, value); all_n every N run; target an optional dashed line."""
    n_min, n_max = min(all_n), max(all_n)
    top = TOP + index * (PANEL_HEIGHT + GAP)
    plot_w = WIDTH - LEFT - RIGHT
    values = [v for _, v in points]
    y_max = nice_ceiling(max(values + ([target] if target else [])) * 1.15) if values else 1.0

    # Half a step of margin on either side, so the end points clear the frame.
    lo, hi = math.log10(n_min) - 0.15, math.log10(n_max) + 0.15

    def x_of(n):
        return LEFT + (math.log10(n) - lo) / (hi - lo) * plot_w

    def y_of(v):
        return top + PANEL_HEIGHT - v / y_max * PANEL_HEIGHT

    out.append(f'<text x="{LEFT}" y="{top - 12}" font-weight="bold">{escape(title)}</text>')
    if values:
        low = min(values)
        ratio = max(values) / low if low > 0 else float("inf")
        verdict = "flat within 20 %" if ratio <= 1.2 else "not flat within 20 %"
        out.append(
            f'<text x="{WIDTH - RIGHT - 8}" y="{top + 18}" text-anchor="end">max / min = {ratio:.2f} ({verdict})</text>'
        )
        band_top = min(low * 1.2, y_max)
        out.append(
            f'<rect x="{LEFT}" y="{y_of(band_top):.1f}" width="{plot_w}" height="{y_of(low) - y_of(band_top):.1f}" '
            'fill="#2a7" fill-opacity="0.15"/>'
        )
    # Axes, horizontal grid lines and their labels.
    out.append(
        f'<rect x="{LEFT}" y="{top}" width="{plot_w}" height="{PANEL_HEIGHT}" fill="none" stroke="#888"/>'
    )
    for i in range(6):
        v = y_max * i / 5
        y = y_of(v)
        out.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{LEFT + plot_w}" y2="{y:.1f}" stroke="#ddd"/>')
        text = f"{v:,.0f}" if y_max >= 50 else f"{v:g}"
        out.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{text}</text>')
    out.append(
        f'<text transform="translate({LEFT - 58},{top + PANEL_HEIGHT / 2}) rotate(-90)" text-anchor="middle">'
        f"{escape(unit)}</text>"
    )
    for n in sorted(set(all_n)):
        x = x_of(n)
        out.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + PANEL_HEIGHT}" stroke="#eee"/>')
        out.append(f'<text x="{x:.1f}" y="{top + PANEL_HEIGHT + 16}" text-anchor="middle">{label_n(n)}</text>')
    if target is not None:
        y = y_of(target)
        out.append(
            f'<line x1="{LEFT}" y1="{y:.1f}" x2="{LEFT + plot_w}" y2="{y:.1f}" stroke="#c33" stroke-dasharray="6,4"/>'
        )
        out.append(f'<text x="{LEFT + 6}" y="{y - 5:.1f}" fill="#c33">target {target:g} B</text>')
    path = " ".join(f"{x_of(n):.1f},{y_of(v):.1f}" for n, v in points)
    if points:
        out.append(f'<polyline points="{path}" fill="none" stroke="#25a" stroke-width="2"/>')
    for n, v in points:
        x, y = x_of(n), y_of(v)
        out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="#25a"/>')
        text = f"{v:.1f}" if v < 100 else f"{v:,.0f}"
        out.append(f'<text x="{x:.1f}" y="{y - 9:.1f}" text-anchor="middle" font-size="11">{text}</text>')


def main(argv):
    if len(argv) != 3:
        sys.stderr.write("usage: growth_plot.py growth.csv out.svg\n")
        return 2
    rows = read_points(argv[1])
    good = [r for r in rows if r.get("rc", "0") == "0"]
    left_out = [label_n(r["n"]) for r in rows if r not in good]
    if not rows:
        sys.stderr.write("growth_plot.py: no rows in the CSV\n")
        return 1
    n_values = [r["n"] for r in rows]
    n_min, n_max = min(n_values), max(n_values)

    def series(key):
        return sorted((r["n"], v) for r in good if (v := number(r, key)) is not None)

    height = TOP + 3 * PANEL_HEIGHT + 2 * GAP + BOTTOM
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        'font-family="sans-serif" font-size="12">',
        f'<rect width="{WIDTH}" height="{height}" fill="white"/>',
    ]
    hb = rows[0].get("heartbeat_s", "?")
    out.append(
        f'<text x="{WIDTH / 2}" y="20" text-anchor="middle" font-size="14" font-weight="bold">'
        f"lifeline serve: growth from {label_n(n_min)} to {label_n(n_max)} connections (heartbeat {hb} s, "
        "19,000 per worker)</text>"
    )
    panel(out, 0, "Server CPU per heartbeat round trip", "µs", series("cpu_us_per_rt"), n_values)
    panel(
        out,
        1,
        "Server user-space memory per connection (RSS growth; client ids)",
        "bytes",
        series("rss_above_idle_b_per_conn"),
        n_values,
        target=256,
    )
    panel(out, 2, "Kernel memory per connection pair (Slab growth)", "bytes", series("slab_b_per_pair"), n_values)
    caption = "Shaded: from the smallest point to 1.2 times it. x: connections, logarithmic."
    if left_out:
        caption += " Left out (run failed): " + ", ".join(left_out) + "."
    out.append(f'<text x="{LEFT}" y="{height - 16}" font-size="11">{escape(caption)}</text>')
    out.append("</svg>")
    with open(argv[2], "w", encoding="utf-8") as f:
        f.write("\n".join(out) + "\n")
    print(f"chart: {argv[2]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
