#!/usr/bin/env python3
"""PyTorch eager and torch.compile on the problems of actloss_bench's GPU set.

Same ops, shapes and byte formula as actloss_bench, and JSON in Google Benchmark's schema
(name, real_time, time_unit, bytes_per_second and the GB/s / copy_frac counters), so that
plot.py draws both files on one chart. Names are "cuda/torch_eager/..." and
"cuda/torch_compile/..." in actloss_bench's form.

    python3 benchmarks/torch_compare.py --out torch.json           # ~90 s on an H100
    python3 benchmarks/torch_compare.py --quick --out torch.json   # a few problems
    python3 benchmarks/torch_compare.py --check-bytes build/default/benchmarks/actloss_bench
    python3 benchmarks/torch_compare.py --filter linear_cross_entropy --out linear.json
    python3 benchmarks/torch_compare.py --ce-targets probabilities --filter cross_entropy --out p.json

The fused linear + cross-entropy's peer, F.cross_entropy(F.linear(hidden, weight), targets) in
bf16, forward and backward ("cuda/torch_eager/linear_cross_entropy/fused/bf16/tokens:..."), runs
first, eager then compiled, at actloss_bench's shapes; it reports TFLOP/s (6 N D V over the time)
and extra_bytes, the peak of torch.cuda.max_memory_allocated beyond the operands (inputs before
the call, the gradients it returns), instead of GB/s. PyTorch's d_weight is bf16 (the weight's
dtype), where actloss_bench's is float32.

With --ce-targets probabilities, as actloss_bench's --actloss_ce_targets=probabilities, the
cross-entropy problems take [rows x classes] probability targets of the logits' dtype
("cuda/torch_eager/cross_entropy_probabilities/..."): F.cross_entropy with float targets.

The shapes and the byte formula are restated here from benchmarks/support/workload.cpp and
benchmarks/byte_formulas.h (the statement of record); --check-bytes compares them with
`actloss_bench --actloss_list` and needs no PyTorch (a ctest runs it).

Results are rewritten to --out after every problem, so a run cut short by a timeout still leaves
valid JSON. Eager runs every problem first; torch.compile, whose compilations take seconds each,
then runs a priority subset until --budget seconds have passed.
"""

import argparse
import datetime
import json
import math
import os
import re
import socket
import statistics
import subprocess
import sys
import time

# ---- the problem set (mirrors benchmarks/support/workload.cpp) --------------------------------

CLASSES = [256, 1024, 4096, 32000, 50257, 128256, 262144]
ACTIVATIONS = ["relu", "leaky_relu", "tanh", "sigmoid", "gelu_erf", "gelu_tanh", "silu"]
ROW_OPS = {"cross_entropy", "softmax", "log_softmax"}
DTYPE_SIZE = {"f32": 4, "f16": 2, "bf16": 2}
BCE_COLS = 1024
KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30
LEAKY_ALPHA = 0.01


def rows_for(classes, dtype, tensor_bytes):
    # C++ rounds half away from zero (std::llround); Python's round() rounds half to even.
    return max(1, int(math.floor(tensor_bytes / (classes * DTYPE_SIZE[dtype]) + 0.5)))


class Problem:
    def __init__(self, op, pass_, dtype, rows, cols):
        self.op, self.pass_, self.dtype, self.rows, self.cols = op, pass_, dtype, rows, cols
        self.probability_targets = False  # cross_entropy only: [rows x cols] targets of dtype

    @property
    def elements(self):
        return self.rows * self.cols

    def name(self, device, impl):
        size = (f"classes:{self.cols}/rows:{self.rows}" if self.op in ROW_OPS
                else f"n:{self.elements}")
        op = "cross_entropy_probabilities" if self.probability_targets else self.op
        return f"{device}/{impl}/{op}/{self.pass_}/{self.dtype}/{size}"


def min_bytes(p):
    """benchmarks/byte_formulas.h: each input read once, each output written once."""
    n, r = p.elements, p.rows
    tensor = n * DTYPE_SIZE[p.dtype]
    loss = 4
    mask = 4 * ((n + 31) // 32)
    if p.op == "cross_entropy":
        targets, stats, lse = 8 * r, 8 * r, 4 * r  # int64 targets, saved row stats, float lse
        if p.probability_targets:
            targets = tensor
        return {"forward": tensor + targets + stats + loss,
                "backward": tensor + targets + stats + tensor}.get(
                    p.pass_, tensor + targets + lse + loss + tensor)
    if p.op in ("bce_with_logits", "mse"):
        return {"forward": 2 * tensor + loss, "backward": 3 * tensor}.get(p.pass_, 3 * tensor + loss)
    if p.op in ("softmax", "log_softmax"):
        return 2 * tensor if p.pass_ == "forward" else 3 * tensor
    if p.op == "swiglu":  # gate and up in; y out, or dy in and d_gate, d_up out
        return 3 * tensor if p.pass_ == "forward" else 5 * tensor
    return {"forward": 2 * tensor, "forward_mask": 2 * tensor + mask,
            "backward_mask": mask + 2 * tensor}.get(p.pass_, 3 * tensor)


def row_problem(op, pass_, dtype, classes, tensor_bytes):
    return Problem(op, pass_, dtype, rows_for(classes, dtype, tensor_bytes), classes)


def elementwise_problem(op, pass_, dtype, n):
    if op == "bce_with_logits" and n >= BCE_COLS:
        return Problem(op, pass_, dtype, n // BCE_COLS, BCE_COLS)
    return Problem(op, pass_, dtype, 1, n)


def sizes(device, quick):
    if device == "cuda":
        if quick:
            return dict(row_bytes=256 * MIB, classes=[1024, 32000, 128256], elements=[1 << 24],
                        dtypes=["bf16"], f16_subset=False)
        return dict(row_bytes=GIB, classes=CLASSES, elements=[1 << 20, 1 << 24, 1 << 28],
                    dtypes=["f32", "bf16"], f16_subset=True)
    if quick:
        return dict(row_bytes=4 * MIB, classes=[1024, 32000], elements=[1 << 20], dtypes=["f32"],
                    f16_subset=False)
    return dict(row_bytes=16 * MIB, classes=CLASSES, elements=[1 << 20, 1 << 24],
                dtypes=["f32", "bf16"], f16_subset=False)


def problem_set(device, quick=False, probability_targets=False):
    out = problem_set_of_class_targets(device, quick)
    for p in out:
        p.probability_targets = probability_targets and p.op == "cross_entropy"
    return out


def problem_set_of_class_targets(device, quick):
    s = sizes(device, quick)
    out = []
    if quick:
        for dtype in s["dtypes"]:
            for c in s["classes"]:
                out.append(row_problem("cross_entropy", "fused", dtype, c, s["row_bytes"]))
                out.append(row_problem("softmax", "forward", dtype, c, s["row_bytes"]))
            out.append(row_problem("log_softmax", "backward", dtype, s["classes"][-1], s["row_bytes"]))
            for n in s["elements"]:
                out.append(elementwise_problem("relu", "forward", dtype, n))
                out.append(elementwise_problem("gelu_tanh", "backward", dtype, n))
                out.append(elementwise_problem("bce_with_logits", "fused", dtype, n))
                out.append(elementwise_problem("mse", "fused", dtype, n))
                out.append(elementwise_problem("swiglu", "backward", dtype, n))
        return out
    loss_passes = ["forward", "backward", "fused"]
    for dtype in s["dtypes"]:
        for c in s["classes"]:
            for p in loss_passes:
                out.append(row_problem("cross_entropy", p, dtype, c, s["row_bytes"]))
        for op in ("softmax", "log_softmax"):
            for c in s["classes"]:
                for p in ("forward", "backward"):
                    out.append(row_problem(op, p, dtype, c, s["row_bytes"]))
        for a in ACTIVATIONS:
            for n in s["elements"]:
                for p in ("forward", "backward"):
                    out.append(elementwise_problem(a, p, dtype, n))
        for n in s["elements"]:
            for p in ("forward_mask", "backward_mask"):
                out.append(elementwise_problem("relu", p, dtype, n))
        for op in ("bce_with_logits", "mse"):
            for n in s["elements"]:
                for p in loss_passes:
                    out.append(elementwise_problem(op, p, dtype, n))
        for n in s["elements"]:
            for p in ("forward", "backward"):
                out.append(elementwise_problem("swiglu", p, dtype, n))
    if s["f16_subset"]:
        for c in s["classes"]:
            out.append(row_problem("cross_entropy", "fused", "f16", c, s["row_bytes"]))
            out.append(row_problem("softmax", "forward", "f16", c, s["row_bytes"]))
        for n in s["elements"]:
            for p in ("forward", "backward"):
                out.append(elementwise_problem("silu", p, "f16", n))
    return out


# ---- the fused linear + cross-entropy (mirrors register_linear_ce in bench_main.cpp) ----------

LINEAR_CE_SHAPES = [(8192, 4096, 32000), (8192, 4096, 128256)]  # tokens, hidden, classes


class LinearCe:
    def __init__(self, tokens, hidden, classes, dtype="bf16"):
        self.tokens, self.hidden, self.classes, self.dtype = tokens, hidden, classes, dtype

    def name(self, device, impl):
        return (f"{device}/{impl}/linear_cross_entropy/fused/{self.dtype}/tokens:{self.tokens}"
                f"/hidden:{self.hidden}/classes:{self.classes}")

    @property
    def flops(self):
        """byte_formulas.h, linear_cross_entropy_flops: three GEMMs of N D V multiply-adds."""
        return 6 * self.tokens * self.hidden * self.classes


def linear_ce_set(quick):
    return [LinearCe(*shape) for shape in (LINEAR_CE_SHAPES[:1] if quick else LINEAR_CE_SHAPES)]


def parse_name(name):
    """'cuda/actloss/cross_entropy/fused/bf16/classes:32000/rows:32768[/manual_time]' -> dict."""
    parts = name.split("/")
    if len(parts) < 6:
        return None
    info = {"device": parts[0], "impl": parts[1], "op": parts[2], "pass": parts[3], "dtype": parts[4]}
    for part in parts[5:]:
        key, sep, value = part.partition(":")
        if sep and value.isdigit():
            info[key] = int(value)
    if "classes" in info:
        info["x"] = info["classes"]
    elif "n" in info:
        info["x"] = info["n"]
    else:
        return None
    return info


# ---- --check-bytes ----------------------------------------------------------------------------

def check_bytes(executable, probability_targets=False):
    flags = ["--actloss_ce_targets=probabilities"] if probability_targets else []
    listing = subprocess.run([executable, *flags, "--actloss_list"], check=True, capture_output=True,
                             text=True)
    theirs = {entry["name"]: entry["bytes"] for entry in json.loads(listing.stdout)}
    ours = {}
    for device in ("cpu", "cuda"):
        for p in problem_set(device, probability_targets=probability_targets):
            ours[p.name(device, "actloss")] = min_bytes(p)
    problems = []
    for name in sorted(set(theirs) | set(ours)):
        if name not in theirs:
            problems.append(f"only in torch_compare.py: {name}")
        elif name not in ours:
            problems.append(f"only in actloss_bench: {name}")
        elif theirs[name] != ours[name]:
            problems.append(f"bytes differ for {name}: actloss_bench {theirs[name]}, torch_compare.py {ours[name]}")
    for line in problems:
        print(line)
    print(f"{len(ours)} problems compared, {len(problems)} differences")
    return 0 if not problems else 1


# ---- PyTorch ----------------------------------------------------------------------------------

def torch_ops(torch):
    """(op, pass) -> (setup(problem, dtype) -> tensors, run(tensors, fn_cache))."""
    F = torch.nn.functional
    aten = torch.ops.aten
    gelu_kind = {"gelu_erf": "none", "gelu_tanh": "tanh"}

    forward = {
        "relu": lambda x: F.relu(x),
        "leaky_relu": lambda x: F.leaky_relu(x, LEAKY_ALPHA),
        "tanh": lambda x: torch.tanh(x),
        "sigmoid": lambda x: torch.sigmoid(x),
        "gelu_erf": lambda x: F.gelu(x, approximate="none"),
        "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
        "silu": lambda x: F.silu(x),
    }

    # The backward kernels autograd itself runs for each activation; tanh and sigmoid start from
    # the output, the others from the input (the byte count is the same: 3 tensors).
    def activation_backward(op):
        if op == "relu":
            return lambda dy, x, y: aten.threshold_backward(dy, x, 0)
        if op == "leaky_relu":
            return lambda dy, x, y: aten.leaky_relu_backward(dy, x, LEAKY_ALPHA, False)
        if op == "tanh":
            return lambda dy, x, y: aten.tanh_backward(dy, y)
        if op == "sigmoid":
            return lambda dy, x, y: aten.sigmoid_backward(dy, y)
        if op in gelu_kind:
            kind = gelu_kind[op]
            return lambda dy, x, y: aten.gelu_backward(dy, x, approximate=kind)
        return lambda dy, x, y: aten.silu_backward(dy, x)

    return forward, activation_backward


def make_case(torch, p, compiled):
    """Tensors and a zero-argument callable that runs the problem once."""
    F = torch.nn.functional
    aten = torch.ops.aten
    dt = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}[p.dtype]
    dev = "cuda"
    forward_fns, activation_backward = torch_ops(torch)

    def maybe_compile(fn):
        return torch.compile(fn, dynamic=False) if compiled else fn

    def uniform(shape, low, high, requires_grad=False):
        t = torch.empty(shape, device=dev, dtype=dt).uniform_(low, high)
        return t.requires_grad_(requires_grad)

    if p.op in ("cross_entropy", "bce_with_logits", "mse"):
        shape = (p.rows, p.cols)
        x = uniform(shape, -4, 4, requires_grad=p.pass_ != "forward")
        if p.op == "cross_entropy":
            if p.probability_targets:
                t = uniform(shape, 0, 2.0 / p.cols)  # rows that sum to about 1, as actloss_bench's
            else:
                t = torch.randint(0, p.cols, (p.rows,), device=dev, dtype=torch.int64)
            loss_fn = maybe_compile(lambda a, b: F.cross_entropy(a, b))
        elif p.op == "bce_with_logits":
            t = uniform(shape, 0, 1)
            loss_fn = maybe_compile(lambda a, b: F.binary_cross_entropy_with_logits(a, b))
        else:
            t = uniform(shape, -4, 4)
            loss_fn = maybe_compile(lambda a, b: F.mse_loss(a, b))
        if p.pass_ == "forward":
            return lambda: loss_fn(x, t)
        if p.pass_ == "backward":
            loss = loss_fn(x, t)
            return lambda: torch.autograd.grad(loss, x, retain_graph=True)
        return lambda: torch.autograd.grad(loss_fn(x, t), x)

    if p.op in ("softmax", "log_softmax"):
        log = p.op == "log_softmax"
        shape = (p.rows, p.cols)
        if p.pass_ == "forward":
            x = uniform(shape, -4, 4)
            fn = maybe_compile((lambda a: torch.log_softmax(a, -1)) if log else (lambda a: torch.softmax(a, -1)))
            return lambda: fn(x)
        y = uniform(shape, -12, 0) if log else uniform(shape, 0, 2.0 / p.cols)
        dy = uniform(shape, -1, 1)
        if log:
            fn = maybe_compile(lambda g, out: aten._log_softmax_backward_data(g, out, -1, dt))
        else:
            fn = maybe_compile(lambda g, out: aten._softmax_backward_data(g, out, -1, dt))
        return lambda: fn(dy, y)

    if p.op == "swiglu":
        # Two separate [n] operands, as actloss_bench gives them; backward is autograd's through
        # the forward graph, both gradients at once.
        n = p.elements
        backward = p.pass_ != "forward"
        gate = uniform((n,), -4, 4, requires_grad=backward)
        up = uniform((n,), -4, 4, requires_grad=backward)
        fn = maybe_compile(lambda g, u: F.silu(g) * u)
        if not backward:
            return lambda: fn(gate, up)
        y = fn(gate, up)
        dy = uniform((n,), -1, 1)
        return lambda: torch.autograd.grad(y, (gate, up), dy, retain_graph=True)

    if p.pass_ in ("forward_mask", "backward_mask"):
        return None  # no PyTorch counterpart to a 1-bit relu mask
    n = p.elements
    x = uniform((n,), -4, 4)
    if p.pass_ == "forward":
        fn = maybe_compile(forward_fns[p.op])
        return lambda: fn(x)
    y = forward_fns[p.op](x)
    dy = uniform((n,), -1, 1)
    fn = maybe_compile(activation_backward(p.op))
    return lambda: fn(dy, x, y)


def run_linear_ce(torch, case, compiled, timer):
    """-> (median seconds, iterations, extra bytes) of forward + backward."""
    F = torch.nn.functional
    dt = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}[case.dtype]
    n, d, v = case.tokens, case.hidden, case.classes
    hidden = torch.empty((n, d), device="cuda", dtype=dt).uniform_(-1, 1).requires_grad_()
    weight = torch.empty((v, d), device="cuda", dtype=dt).uniform_(-0.05, 0.05).requires_grad_()
    targets = torch.randint(0, v, (n,), device="cuda", dtype=torch.int64)

    def loss_fn(h, w, t):
        return F.cross_entropy(F.linear(h, w), t)

    fn = torch.compile(loss_fn, dynamic=False) if compiled else loss_fn

    def step():
        return torch.autograd.grad(fn(hidden, weight, targets), (hidden, weight))

    step()  # compilation, cuBLAS's and the allocator's first-call set-up
    torch.cuda.synchronize()
    # Peak beyond the operands: the inputs are allocated before, the returned gradients are the
    # outputs; whatever else the peak held is the logits and what autograd kept of them.
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    grads = step()
    torch.cuda.synchronize()
    outputs = sum(g.numel() * g.element_size() for g in grads)
    extra = max(0, torch.cuda.max_memory_allocated() - base - outputs)
    del grads
    seconds, iterations = timer.median_seconds(step, 3, 5, 0.0)
    return seconds, iterations, extra


# torch.compile's subset, in priority order: the fused loss first (what the library is for),
# then one problem per other family.
def compile_priority(p):
    order = [("cross_entropy", "fused"), ("softmax", "forward"), ("log_softmax", "backward"),
             ("gelu_tanh", "forward"), ("silu", "backward"), ("bce_with_logits", "fused"),
             ("mse", "fused"), ("swiglu", "backward"), ("cross_entropy", "forward")]
    key = (p.op, p.pass_)
    return order.index(key) if key in order else None


class Timer:
    def __init__(self, torch):
        self.torch = torch
        props = torch.cuda.get_device_properties(0)
        l2 = getattr(props, "L2_cache_size", 50 * MIB) or 50 * MIB
        self.flush_buffer = torch.empty(2 * l2, dtype=torch.uint8, device="cuda")

    def median_seconds(self, fn, min_iterations, max_iterations, min_seconds):
        torch = self.torch
        fn()  # compilation, autotuning, allocator warm-up
        torch.cuda.synchronize()
        times = []
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        while len(times) < max_iterations and (len(times) < min_iterations or sum(times) < min_seconds):
            self.flush_buffer.zero_()  # the previous run's operands out of L2
            start.record()
            fn()
            stop.record()
            stop.synchronize()
            times.append(start.elapsed_time(stop) * 1e-3)
        return statistics.median(times), len(times)


def copy_ceiling(torch):
    src = torch.ones(GIB, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    dst.copy_(src)
    torch.cuda.synchronize()
    best = float("inf")
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    for _ in range(5):
        start.record()
        dst.copy_(src)
        stop.record()
        stop.synchronize()
        best = min(best, start.elapsed_time(stop) * 1e-3)
    del src, dst
    torch.cuda.empty_cache()
    return 2 * GIB / best


def write_json(path, context, benchmarks):
    document = {"context": context, "benchmarks": benchmarks}
    text = json.dumps(document, indent=2)
    if path in (None, "-"):
        return
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text + "\n")
    os.replace(tmp, path)


def run(args):
    started = time.monotonic()
    try:
        import torch
    except ImportError:
        print("torch_compare.py: PyTorch is not installed", file=sys.stderr)
        return 2
    context = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "host_name": socket.gethostname(),
        "executable": "benchmarks/torch_compare.py",
        "torch_version": torch.__version__,
        "library_build_type": "release",
    }
    if not torch.cuda.is_available():
        context["actloss_cuda_device"] = "none found"
        write_json(args.out, context, [])
        print("torch_compare.py: no CUDA device; wrote an empty result", file=sys.stderr)
        return 0
    props = torch.cuda.get_device_properties(0)
    context["actloss_cuda_device"] = (f"{props.name}, compute capability {props.major}.{props.minor}, "
                                      f"{props.total_memory >> 20} MiB")
    ceiling = copy_ceiling(torch)
    context["actloss_cuda_copy_GBps"] = f"{ceiling * 1e-9:.1f}"
    try:
        import torch._dynamo
        # One compiled code object serves many shapes here; without this, recompilations past the
        # default limit silently fall back to eager and would be reported as compiled.
        for knob in ("cache_size_limit", "recompile_limit"):
            if hasattr(torch._dynamo.config, knob):
                setattr(torch._dynamo.config, knob, 1024)
    except Exception:  # noqa: BLE001 - an older torch without dynamo still runs eager
        pass

    problems = problem_set("cuda", args.quick, args.ce_targets == "probabilities")
    context["actloss_ce_targets"] = args.ce_targets
    # The linear cross-entropy first, eager and compiled: its figures are the newest.
    linear = linear_ce_set(args.quick)
    plan = [(p, False) for p in linear] + [(p, True) for p in linear]
    plan += [(p, False) for p in problems]
    compiled = sorted((p for p in problems if compile_priority(p) is not None),
                      key=lambda p: (compile_priority(p), p.dtype != "bf16"))
    plan += [(p, True) for p in compiled]
    if args.filter:
        pattern = re.compile(args.filter)
        plan = [(p, c) for p, c in plan
                if pattern.search(p.name("cuda", "torch_compile" if c else "torch_eager"))]
    timer = Timer(torch)
    results = []
    budget = args.budget
    for index, (p, is_compiled) in enumerate(plan):
        elapsed = time.monotonic() - started
        if elapsed > budget:
            print(f"budget of {budget:.0f} s reached after {index} of {len(plan)} runs", file=sys.stderr)
            context["actloss_note"] = f"stopped at the {budget:.0f} s budget after {index} of {len(plan)} runs"
            break
        impl = "torch_compile" if is_compiled else "torch_eager"
        name = p.name("cuda", impl)
        entry = {"name": name, "run_name": name, "run_type": "iteration", "repetitions": 1,
                 "repetition_index": 0, "threads": 1, "family_index": index,
                 "per_family_instance_index": 0}
        try:
            if isinstance(p, LinearCe):
                seconds, iterations, extra = run_linear_ce(torch, p, is_compiled, timer)
                tflops = p.flops / seconds * 1e-12
                entry.update({"iterations": iterations, "real_time": seconds * 1e6,
                              "cpu_time": seconds * 1e6, "time_unit": "us", "TFLOP/s": tflops,
                              "extra_bytes": extra})
                print(f"{name:<72} {seconds * 1e6:12.1f} us {tflops:9.1f} TFLOP/s "
                      f"{extra / GIB:7.2f} GiB extra", flush=True)
                results.append(entry)
                write_json(args.out, context, results)
                continue
            fn = make_case(torch, p, is_compiled)
            if fn is None:
                continue
            quick_run = args.quick or p.elements * DTYPE_SIZE[p.dtype] >= 256 * MIB
            seconds, iterations = timer.median_seconds(fn, 3 if quick_run else 5, 50, 0.02)
            rate = min_bytes(p) / seconds
            entry.update({"iterations": iterations, "real_time": seconds * 1e6, "cpu_time": seconds * 1e6,
                          "time_unit": "us", "bytes_per_second": rate, "GB/s": rate * 1e-9,
                          "copy_frac": rate / ceiling})
            print(f"{name:<72} {seconds * 1e6:12.1f} us {rate * 1e-9:9.1f} GB/s", flush=True)
        except Exception as error:  # noqa: BLE001 - one failing case must not end the run
            message = f"{type(error).__name__}: {error}".splitlines()[0][:300]
            entry.update({"error_occurred": True, "error_message": message, "iterations": 0,
                          "real_time": 0, "cpu_time": 0, "time_unit": "us"})
            print(f"{name:<72} ERROR {message}", flush=True)
        finally:
            fn = None
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        results.append(entry)
        write_json(args.out, context, results)
    write_json(args.out, context, results)
    if args.out in (None, "-"):
        print(json.dumps({"context": context, "benchmarks": results}, indent=2))
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="-", help="JSON output file ('-': stdout)")
    parser.add_argument("--quick", action="store_true", help="a few problems per family")
    parser.add_argument("--budget", type=float, default=85.0,
                        help="seconds after which no new problem starts (default 85: the device "
                             "check allows 120, and one compilation can take 20)")
    parser.add_argument("--filter", metavar="REGEX",
                        help="run only the problems whose names match (e.g. linear_cross_entropy)")
    parser.add_argument("--check-bytes", metavar="ACTLOSS_BENCH",
                        help="compare names and byte counts with `ACTLOSS_BENCH --actloss_list`, then exit")
    parser.add_argument("--ce-targets", choices=("classes", "probabilities"), default="classes",
                        help="the cross-entropy problems' targets: class indices (default) or "
                             "[rows x classes] probabilities of the logits' dtype")
    args = parser.parse_args(argv)
    if args.check_bytes:
        return check_bytes(args.check_bytes, args.ce_targets == "probabilities")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
