#!/usr/bin/env python3
"""Charts of actloss_bench / torch_compare.py JSON: GB/s against classes or elements.

    python3 benchmarks/plot.py bench.json [torch.json ...] --out-dir charts/ [--markdown t.md]

One SVG per device and op family (cuda-cross_entropy.svg, cpu-relu.svg, ...), one panel per
pass, one line per implementation and dtype, and the copy ceiling each run measured as a dashed
line. Plain Python writing SVG by hand: no plotting library is needed where the charts are made.
--markdown also writes the figures as tables (GB/s and % of the copy ceiling), for RESULTS.md.
"""

import argparse
import collections
import html
import json
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_compare import parse_name  # noqa: E402  (the one parser of benchmark names)

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
           "#17becf", "#7f7f7f", "#bcbd22"]
# Colour tells the implementation, the stroke the dtype: with both from one cycle, a dozen series
# reuse colours and actloss could not be told from a peer.
DTYPE_DASH = {"f32": "", "bf16": "7 3", "f16": "2 2"}
PASS_ORDER = ["forward", "backward", "fused", "forward_mask", "backward_mask"]
PANEL_W, PANEL_H = 360, 290
MARGIN_L, MARGIN_R, MARGIN_T, MARGIN_B = 62, 16, 44, 62
LEGEND_W = 210


def load(paths):
    """-> list of (info, GB/s), and {device: [(label, GB/s)]} ceilings."""
    points, ceilings = [], collections.defaultdict(list)
    for path in paths:
        with open(path) as f:
            document = json.load(f)
        context = document.get("context", {})
        source = os.path.basename(path)
        for device in ("cpu", "cuda"):
            value = context.get(f"actloss_{device}_copy_GBps")
            try:
                if value is not None:
                    ceilings[device].append((source, float(value)))
            except ValueError:
                pass
        for bench in document.get("benchmarks", []):
            if bench.get("error_occurred") or bench.get("run_type") == "aggregate":
                continue
            info = parse_name(bench.get("name", ""))
            if info is None:
                continue
            rate = bench.get("GB/s")
            if rate is None and bench.get("bytes_per_second"):
                rate = bench["bytes_per_second"] * 1e-9
            if rate is None or rate <= 0:
                continue
            points.append((info, float(rate)))
    return points, ceilings


def nice_step(span):
    raw = span / 5.0
    magnitude = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 2.5, 5, 10):
        if raw <= factor * magnitude:
            return factor * magnitude
    return 10 * magnitude


def x_label(value):
    for unit, size in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if value >= size and value % size == 0:
            return f"{value // size}{unit}"
    return str(value)


class YScale:
    """Linear from 0, or logarithmic when the values span more than ~30x (the CPU path at 1% of
    the copy ceiling would otherwise be a flat line on the axis)."""

    def __init__(self, values):
        top, bottom = max(values), min(values)
        self.log = bottom > 0 and top / bottom > 30
        if self.log:
            self.lo = 10 ** math.floor(math.log10(bottom))
            self.hi = 10 ** math.ceil(math.log10(top * 1.05))
        else:
            step = nice_step(top * 1.1)
            self.lo, self.hi = 0.0, step * math.ceil(top * 1.1 / step)

    def fraction(self, y):
        if self.log:
            return (math.log10(y) - math.log10(self.lo)) / (math.log10(self.hi) - math.log10(self.lo))
        return y / self.hi

    def ticks(self):
        if self.log:
            out, decade = [], self.lo
            while decade <= self.hi * 1.0001:
                out += [decade * m for m in (1, 2, 5) if decade * m <= self.hi * 1.0001]
                decade *= 10
            return out
        step = nice_step(self.hi)
        return [i * step for i in range(int(round(self.hi / step)) + 1)]


def stroke(style):
    """SVG attributes of a (colour, dash pattern) line style."""
    color, dash = style
    return f'stroke="{color}"' + (f' stroke-dasharray="{dash}"' if dash else "")


def panel(out, x0, y0, title, series, ceilings, x_values, scale, styles, x_title):
    """Draws one pass's panel with its top-left corner at (x0, y0)."""
    plot_w = PANEL_W - MARGIN_L - MARGIN_R
    plot_h = PANEL_H - MARGIN_T - MARGIN_B
    left, top = x0 + MARGIN_L, y0 + MARGIN_T
    lo, hi = math.log(min(x_values)), math.log(max(x_values))
    span = hi - lo if hi > lo else 1.0

    def px(x):
        return left + (math.log(x) - lo) / span * plot_w if hi > lo else left + plot_w / 2

    def py(y):
        return top + plot_h - scale.fraction(y) * plot_h

    out.append(f'<text x="{x0 + PANEL_W / 2:.1f}" y="{y0 + 24}" text-anchor="middle" '
               f'font-size="14" font-weight="bold">{html.escape(title)}</text>')
    out.append(f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#999"/>')
    for tick in scale.ticks():
        y = py(tick)
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="#eee"/>')
        out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11">{tick:g}</text>')
    for x in x_values:
        out.append(f'<line x1="{px(x):.1f}" y1="{top + plot_h}" x2="{px(x):.1f}" y2="{top + plot_h + 4}" stroke="#999"/>')
        # Slanted: neighbouring vocabulary sizes (32000, 50257) sit close on a log axis.
        lx, ly = px(x), top + plot_h + 14
        out.append(f'<text x="{lx:.1f}" y="{ly}" text-anchor="end" font-size="10" '
                   f'transform="rotate(-35 {lx:.1f} {ly})">{html.escape(x_label(x))}</text>')
    out.append(f'<text x="{left + plot_w / 2:.1f}" y="{y0 + PANEL_H - 8}" text-anchor="middle" '
               f'font-size="11">{x_title}</text>')
    y_title = "GB/s (log scale)" if scale.log else "GB/s"
    out.append(f'<text x="{x0 + 14}" y="{top + plot_h / 2:.1f}" text-anchor="middle" font-size="11" '
               f'transform="rotate(-90 {x0 + 14} {top + plot_h / 2:.1f})">{y_title}</text>')
    for i, (label, value) in enumerate(ceilings):
        y = py(value)
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="#000" '
                   f'stroke-dasharray="6 4"/>')
        # Each run measures its own ceiling; stacked labels keep two close values legible.
        out.append(f'<text x="{left + plot_w - 4}" y="{y - 4 - 11 * i:.1f}" text-anchor="end" '
                   f'font-size="10">copy {value:.0f} GB/s ({html.escape(label)})</text>')
    for key, pts in sorted(series.items()):
        pts = sorted(pts)
        color = styles[key][0]
        coords = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in pts)
        if len(pts) > 1:
            out.append(f'<polyline points="{coords}" fill="none" {stroke(styles[key])} stroke-width="2"/>')
        for x, y in pts:
            out.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3" fill="{color}">'
                       f'<title>{html.escape(key)}: {x} -> {y:.1f} GB/s</title></circle>')


def chart(device, op, points, ceilings):
    by_pass = collections.defaultdict(lambda: collections.defaultdict(list))
    for info, rate in points:
        by_pass[info["pass"]][f'{info["impl"]} {info["dtype"]}'].append((info["x"], rate))
    passes = [p for p in PASS_ORDER if p in by_pass] + sorted(set(by_pass) - set(PASS_ORDER))
    keys = sorted({key for series in by_pass.values() for key in series})
    impls = sorted({key.split(" ")[0] for key in keys}, key=lambda impl: (impl != "actloss", impl))
    styles = {key: (PALETTE[impls.index(key.split(" ")[0]) % len(PALETTE)],
                    DTYPE_DASH.get(key.split(" ")[1], "")) for key in keys}
    x_values = sorted({info["x"] for info, _ in points})
    scale = YScale([rate for _, rate in points] + [value for _, value in ceilings])
    row_op = "classes" in points[0][0]
    width = PANEL_W * len(passes) + LEGEND_W
    height = PANEL_H + 30
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="sans-serif">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="10" y="18" font-size="15" font-weight="bold">{html.escape(device)}: '
           f'{html.escape(op)}</text>']
    for i, pass_ in enumerate(passes):
        panel(out, PANEL_W * i, 20, pass_, by_pass[pass_], ceilings, x_values, scale, styles,
              "classes (log scale)" if row_op else "elements (log scale)")
    legend_x = PANEL_W * len(passes) + 10
    for i, key in enumerate(keys):
        y = 20 + MARGIN_T + 18 * i
        out.append(f'<line x1="{legend_x}" y1="{y}" x2="{legend_x + 24}" y2="{y}" {stroke(styles[key])} '
                   f'stroke-width="3"/>')
        out.append(f'<text x="{legend_x + 30}" y="{y + 4}" font-size="12">{html.escape(key)}</text>')
    y = 20 + MARGIN_T + 18 * len(keys)
    out.append(f'<line x1="{legend_x}" y1="{y}" x2="{legend_x + 24}" y2="{y}" stroke="#000" '
               f'stroke-dasharray="6 4"/>')
    out.append(f'<text x="{legend_x + 30}" y="{y + 4}" font-size="12">copy ceiling</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def markdown(points, ceilings):
    """One table per device and op: a row per pass, implementation and dtype, a column per size."""
    groups = collections.defaultdict(list)
    for info, rate in points:
        groups[(info["device"], info["op"])].append((info, rate))
    lines = []
    for (device, op), group in sorted(groups.items()):
        ceiling = ceilings.get(device, [(None, 0.0)])[0][1]
        sizes = sorted({info["x"] for info, _ in group})
        row_op = "classes" in group[0][0]
        cells = collections.defaultdict(dict)
        for info, rate in group:
            cells[(info["pass"], info["impl"], info["dtype"])][info["x"]] = rate
        lines.append(f"#### {device}: {op}\n")
        head = "classes" if row_op else "elements"
        lines.append(f"| pass | impl | dtype | " + " | ".join(f"{head} {x_label(x)}" for x in sizes) + " |")
        lines.append("|" + " --- |" * (3 + len(sizes)))
        order = {p: i for i, p in enumerate(PASS_ORDER)}
        for key in sorted(cells, key=lambda k: (order.get(k[0], 99), k[1], k[2])):
            row = []
            for x in sizes:
                rate = cells[key].get(x)
                if rate is None:
                    row.append("")
                elif ceiling > 0:
                    row.append(f"{rate:.2f} ({100 * rate / ceiling:.1f}%)")
                else:
                    row.append(f"{rate:.2f}")
            lines.append(f"| {key[0]} | {key[1]} | {key[2]} | " + " | ".join(row) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json", nargs="+", help="actloss_bench --benchmark_out or torch_compare.py --out files")
    parser.add_argument("--out-dir", default=".", help="where the SVG files go")
    parser.add_argument("--markdown", metavar="FILE",
                        help="also write the figures as Markdown tables: GB/s (%% of the copy ceiling)")
    args = parser.parse_args(argv)
    points, ceilings = load(args.json)
    if not points:
        print("plot.py: no benchmark results in the input", file=sys.stderr)
        return 1
    groups = collections.defaultdict(list)
    for info, rate in points:
        groups[(info["device"], info["op"])].append((info, rate))
    os.makedirs(args.out_dir, exist_ok=True)
    for (device, op), group in sorted(groups.items()):
        path = os.path.join(args.out_dir, f"{device}-{op}.svg")
        with open(path, "w") as f:
            f.write(chart(device, op, group, ceilings.get(device, [])))
        print(path)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(markdown(points, ceilings))
        print(args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
