#!/usr/bin/env python3
"""The CPU rows of one actloss_bench run beside oneDNN's, as a Markdown table.

    actloss_bench --benchmark_filter='^cpu/' --benchmark_min_time=0.05s \\
        --benchmark_out=cpu.json --benchmark_out_format=json
    python3 benchmarks/cpu_table.py cpu.json [--all] [--out table.md]

One line per CPU actloss row that has a oneDNN row of the same op, pass, dtype and shape in the
same file: both GB/s, their ratio (above 1: actloss is faster) and actloss's fraction of the
streaming-copy ceiling. Both rows come from one process, so they saw the same machine, the same
load and the same copy ceilings; rows of different runs are not paired, since the machine this
project measures on is shared and drifts by tens of percent between runs. --all also lists the
actloss rows that oneDNN has no counterpart for (SwiGLU, the losses). Repeated rows
(--benchmark_repetitions) count by their median.

A file from before the streaming copy (no actloss_cpu_stream_copy_GBps in its context) gets no
fraction column values. --expect-onednn fails when no row was paired, so that a build with the
peer notices when the names stop matching.
"""

import argparse
import collections
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_compare import parse_name  # noqa: E402  (the one parser of benchmark names)


def shape_of(info):
    if "classes" in info:
        return f"classes:{info['classes']}/rows:{info.get('rows', '?')}"
    return f"n:{info['n']}"


def rates(document):
    """-> {(impl, op, pass, dtype, shape): GB/s} for the CPU rows, in the file's order."""
    runs = collections.OrderedDict()
    medians = {}
    for bench in document.get("benchmarks", []):
        if bench.get("error_occurred"):
            continue
        name = bench.get("run_name") or bench.get("name", "")
        info = parse_name(name)
        if info is None or info["device"] != "cpu":
            continue
        rate = bench.get("GB/s")
        if rate is None and bench.get("bytes_per_second"):
            rate = bench["bytes_per_second"] * 1e-9
        if rate is None:
            continue
        key = (info["impl"], info["op"], info["pass"], info["dtype"], shape_of(info))
        if bench.get("run_type") == "aggregate":
            # --benchmark_report_aggregates_only leaves only these; the median is the one that a
            # burst of other work on the machine moves least.
            if bench.get("aggregate_name") == "median":
                medians[key] = float(rate)
                runs.setdefault(key, [])
            continue
        runs.setdefault(key, []).append(float(rate))
    out = collections.OrderedDict()
    for key, values in runs.items():
        if key in medians:
            out[key] = medians[key]
        elif values:
            out[key] = statistics.median(values)
    return out


def context_gbps(context, key):
    try:
        value = float(context.get(key, ""))
    except ValueError:
        return None
    return value if value > 0 else None


def table(document, include_unpaired):
    """-> (Markdown text, number of paired rows, number of actloss rows)."""
    context = document.get("context", {})
    memcpy = context_gbps(context, "actloss_cpu_memcpy_GBps")
    stream = context_gbps(context, "actloss_cpu_stream_copy_GBps")
    ceiling = context_gbps(context, "actloss_cpu_copy_GBps")
    lines = []
    cpu = context.get("actloss_cpu", "not named")
    threads = context.get("actloss_cpu_threads", "not recorded")
    onednn = context.get("actloss_onednn", "not recorded")
    lines.append(f"CPU: {cpu}; CPU backend threads: {threads}; oneDNN: {onednn}.")
    if stream is not None:
        store = context.get("actloss_cpu_stream_store", "streaming")
        memcpy_text = f"{memcpy:.1f}" if memcpy is not None else "?"
        ceiling_text = f"{ceiling:.1f}" if ceiling is not None else "?"
        lines.append(f"Copies in the same run: streaming ({store} stores) {stream:.1f} GB/s, "
                     f"one-thread memcpy {memcpy_text} GB/s; copy_frac divides by the higher, "
                     f"{ceiling_text} GB/s.")
    else:
        ceiling_text = f"{ceiling:.1f} GB/s" if ceiling is not None else "none"
        lines.append(f"This run measured no streaming copy (an older actloss_bench); its copy "
                     f"ceiling: {ceiling_text}. The fraction column is left empty.")
    lines.append("")
    lines.append("| op | pass | dtype | shape | actloss GB/s | oneDNN GB/s | actloss / oneDNN "
                 "| actloss % of stream copy |")
    lines.append("| --- | --- | --- | --- | ---: | ---: | ---: | ---: |")
    measured = rates(document)
    paired = 0
    actloss_rows = 0
    for key, rate in measured.items():
        impl, op, pass_, dtype, shape = key
        if impl != "actloss":
            continue
        actloss_rows += 1
        peer = measured.get(("onednn",) + key[1:])
        if peer is None and not include_unpaired:
            continue
        if peer is not None:
            paired += 1
        peer_text = f"{peer:.2f}" if peer is not None else "-"
        ratio_text = f"{rate / peer:.2f}x" if peer else "-"
        fraction_text = f"{100 * rate / stream:.1f}%" if stream else "-"
        lines.append(f"| {op} | {pass_} | {dtype} | {shape} | {rate:.2f} | {peer_text} | "
                     f"{ratio_text} | {fraction_text} |")
    lines.append("")
    return "\n".join(lines), paired, actloss_rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json", help="actloss_bench --benchmark_out file (JSON format)")
    parser.add_argument("--all", action="store_true",
                        help="also list the actloss rows that have no oneDNN counterpart")
    parser.add_argument("--out", metavar="FILE", help="write the table here instead of stdout")
    parser.add_argument("--expect-onednn", action="store_true",
                        help="fail when no actloss row has a oneDNN row to pair with")
    args = parser.parse_args(argv)
    with open(args.json) as f:
        document = json.load(f)
    text, paired, actloss_rows = table(document, args.all)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
        print(args.out)
    else:
        print(text)
    if actloss_rows == 0:
        print("cpu_table.py: no CPU actloss rows in the input", file=sys.stderr)
        return 1
    if args.expect_onednn and paired == 0:
        print("cpu_table.py: no actloss row has a oneDNN row of the same op, pass, dtype and shape",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
