// actloss_bench: every op of the library, forward, backward and fused, against the peers this
// build found, on CPU always and on the GPU when one is present. Each benchmark reports
//   bytes_per_second  the minimal byte count of benchmarks/byte_formulas.h over the time
//   GB/s              the same, in decimal gigabytes per second
//   copy_frac         GB/s as a fraction of a same-device copy measured by this run at start;
//                     on CPU, of the higher of two copies: a one-thread memcpy and a streaming-
//                     store copy split over the backend's threads (memory.h, CopyKind), since
//                     the threaded backend can outrun memcpy and a fraction above 1 bounds
//                     nothing
// and the JSON context carries the copy ceilings and the device names (plot.py reads them):
// actloss_cpu_copy_GBps is the ceiling copy_frac divides by, actloss_cpu_memcpy_GBps and
// actloss_cpu_stream_copy_GBps the two copies, actloss_cpu_threads their thread count.
// benchmarks/cpu_table.py sets each CPU row beside its oneDNN row from the same run.
//
// host_cost/<op>/checks:<PointerChecks> (CUDA): the host time one call takes to validate and
// enqueue its work at a tiny shape, in us_per_call, with the pointer checks and without. The
// calls are timed in batches and the stream is drained between batches, untimed, so that a full
// launch queue never blocks the timed calls. In a simulator build the kernels run inside the
// call, so the figure includes them and says nothing about a GPU.
//
// cuda/<impl>/linear_cross_entropy/fused/bf16/tokens:N/hidden:D/classes:V (GPU; in a simulator
// build, a tiny shape with --actloss_sim_gpu):
// the fused linear + cross-entropy forward and backward (impl actloss; with /chunk_tokens:C, its
// chunk set through the options), the three cuBLAS GEMMs it is made of alone (gemms), and the
// full-logits GEMM, cross_entropy_forward_backward and the two gradient GEMMs (unfused), and the
// vocabulary-parallel phases at one rank (actloss_sharded: linear_cross_entropy_shard_stats, its
// statistics as the whole gather, linear_cross_entropy_shard_finish: the logits GEMM twice); see
// benchmarks/support/linear_cross_entropy.h. GEMM-bound, so no GB/s; instead
//   TFLOP/s               6 N D V (byte_formulas.h) over the time
//   vs_gemms              the time over the bare GEMMs' time for the same shape in the same run
//                         (when their row ran first; the fused call aims at <= 1.10)
//   extra_bytes           device memory beyond the operands, as counted (the workspace; the
//                         logits, their gradient and the cross-entropy's scratch)
//   extra_bytes_measured  the same, from cudaMemGetInfo around the first run
//   extra_vs_unfused      extra_bytes over the unfused path's
//   <stage>_ms            gemms and unfused: each call's device time
// A few fixed iterations each: one GEMM of the larger shape takes tens of milliseconds.
//
// Flags besides Google Benchmark's:
//   --actloss_sim_gpu   in a simulator build, also register the (tiny) CUDA set; its timings
//                       are those of the simulator and mean nothing about a GPU
//   --actloss_list      print every problem of both full sets as JSON (name, bytes) and exit;
//                       torch_compare.py --check-bytes compares its own formulas with it
//   --actloss_row_path=NAME  force a row path (rows_per_warp, warp_per_row, block_on_chip,
//                       block_shared, cluster_shared, block_two_pass) for the cross-entropy
//                       and softmax
//                       launches, so that a card compares a new path with the one it replaces
//                       in one run; a path that cannot hold a row runs the automatic choice
//   --actloss_row_prefetch=0  the short-row paths process one row at a time instead of loading
//                       the next row before reducing the current one (the loop last measured)
//   --actloss_row_pieces=0  the row kernels move a 16-bit chunk 2 bytes past a 4-byte boundary
//                       element by element, as last measured on a card, instead of in pieces
//                       (cuda/row_common.cuh)
//   --actloss_row_lane_shift=0  the first read of a misaligned row from global memory moves
//                       chunk by chunk in the widest words each chunk's address allows, as last
//                       measured on a card, instead of in aligned 16-byte words shifted across
//                       lanes (row::load_shifted, cuda/row_common.cuh)
//   --actloss_row_occupancy=0  the row ops' grids hold as many blocks per SM as threads and
//                       shared memory allow, as last measured on a card, instead of as many as
//                       the occupancy API allows their kernels, registers included
//                       (row::count_resident_blocks, cuda/row_common.cuh)
//   --actloss_row_exp_once=0  the cross-entropy's on-chip rows take the unified kernel, as last
//                       measured on a card, instead of the kernels that keep each exponential
//                       (cuda/cross_entropy_exp_once.cu)
//   --actloss_reduce_in_kernel=0  reduced losses (sum, mean) finish in a second kernel over the
//                       per-block partials, after the cross-entropy targets' pre-pass, as last
//                       measured on a card, instead of in their kernel's last block
//                       (cuda/reduce.cuh); the JSON context records which
//   --actloss_linear_ce=0  leave out the linear cross-entropy rows (the device check runs them
//                       in a step of their own)
//   --actloss_cpu_bf16_instruction=0  the CPU backend rounds float32 to bfloat16 with integer
//                       operations even where the processor has AVX512_BF16's conversion
//                       instruction (host/cpu/bf16_conversion.h), as measured before it
//   --actloss_cpu_streaming_bytes=N  the CPU backend streams outputs from N bytes on (4194304:
//                       the 4 MiB it used before the threshold followed the last-level cache;
//                       cpu::streaming_output_bytes, host/cpu/backend.h)
//   --actloss_ce_label_smoothing=EPS  every actloss cross-entropy call smooths its targets by
//                       EPS in [0, 1] (default 0), so that a run compares the smoothed rows with
//                       a plain run's; the baselines without smoothing are left out, and the JSON
//                       context records EPS
//   --actloss_ce_targets=probabilities  every cross-entropy problem takes [rows x classes]
//                       probability targets of the logits' dtype instead of class indices (its
//                       rows are named cross_entropy_probabilities, and their bytes count the
//                       targets' tensor); the baselines, which take class indices, are left out,
//                       and the JSON context records the choice (=classes: the default)
//   --actloss_cpu_spin_us=N  the CPU backend's idle threads poll N microseconds for the next call
//                       before sleeping (0: at once, as before; the default is
//                       ACTLOSS_CPU_SPIN_US or 2000)
//   --elementwise-packs=1
//                       run the elementwise kernels (activations, SwiGLU, BCE, MSE) with one
//                       pack per thread per loop step, the loop last measured on a GPU, so that
//                       a card can compare it with the default (=default); the JSON context
//                       records which
#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <actloss/actloss.h>
#include <actloss/throwing.h>

#include "benchmarks/byte_formulas.h"
#include "benchmarks/support/memory.h"
#include "benchmarks/support/workload.h"
#if ACTLOSS_BENCH_LINEAR_CE
#include "benchmarks/support/linear_cross_entropy.h"
#endif
#if ACTLOSS_BENCH_ONEDNN
#include "benchmarks/support/peers.h"
#endif
#include "host/backend.h"
#include "host/cpu/backend.h"
#include "cuda/row_dispatch.h"

namespace {

using namespace actloss;
using namespace actloss::bench;

void run_case(benchmark::State& state, const Case& c, double ceiling_bytes_per_second) {
  try {
    const int slots = rotation_slots(c.device, c.problem);
    const std::unique_ptr<Workload> workload = make_workload(c, slots);
    std::optional<CacheFlusher> flusher;
    if (slots == 1) flusher.emplace(c.device);
    Timer timer(c.device);
    if (c.device == Device::cuda) {
      // Module loading and a peer's first-call set-up belong to no iteration.
      workload->run(0);
      synchronize(c.device);
    }
    double seconds = 0;
    int slot = 0;
    for (auto _ : state) {
      if (flusher) flusher->flush();
      timer.start();
      workload->run(slot);
      const double t = timer.stop_seconds();
      state.SetIterationTime(t);
      seconds += t;
      slot = (slot + 1) % slots;
    }
    const auto bytes = static_cast<double>(min_bytes(c.problem));
    const double iterations = static_cast<double>(state.iterations());
    state.SetBytesProcessed(state.iterations() * min_bytes(c.problem));
    const double rate = seconds > 0 ? bytes * iterations / seconds : 0.0;
    state.counters["GB/s"] = rate * 1e-9;
    state.counters["copy_frac"] =
        ceiling_bytes_per_second > 0 ? rate / ceiling_bytes_per_second : 0.0;
  } catch (const std::exception& error) {
    state.SkipWithError(error.what());
  }
}

void register_set(Device device, SetSize size, double ceiling) {
  for (const Problem& problem : problem_set(device, size)) {
    for (Impl impl : implementations(device)) {
      if (!implements(impl, device, problem)) continue;
      const Case c{device, impl, problem};
      benchmark::RegisterBenchmark(
          case_name(c).c_str(),
          [c, ceiling](benchmark::State& state) { run_case(state, c, ceiling); })
          ->UseManualTime()
          ->Unit(device == Device::cuda ? benchmark::kMicrosecond : benchmark::kMillisecond);
    }
  }
}

// Host cost per call: see the top of this file.
void run_host_cost(benchmark::State& state, const std::string& op, PointerChecks checks) {
  try {
    constexpr std::int64_t kRows = 8, kClasses = 128, kElements = 1024;
    constexpr int kBatch = 64;
    Buffer logits(Device::cuda, sizeof(float) * kRows * kClasses);
    Buffer grad(Device::cuda, sizeof(float) * kRows * kClasses);
    Buffer labels(Device::cuda, sizeof(std::int64_t) * kRows);
    Buffer loss(Device::cuda, sizeof(float));
    const std::vector<std::uint8_t> pattern = uniform_pattern(kRows * kClasses, DType::f32, -2, 2, 1);
    logits.upload(pattern.data(), pattern.size());
    const std::vector<std::uint8_t> classes = class_pattern(kRows, kClasses, 2);
    labels.upload(classes.data(), classes.size());

    Exec exec;
    exec.device = Device::cuda;
    exec.stream = bench_stream();
    exec.pointer_checks = checks;
    CrossEntropyArgs ce;
    ce.rows = kRows;
    ce.classes = kClasses;
    ce.logits = logits.data();
    ce.targets = labels.data();
    ce.loss = loss.as<float>();
    ce.grad = grad.data();
    std::size_t workspace_bytes = 0;
    check(cross_entropy_workspace_size(ce, CrossEntropyOptions{}, exec, &workspace_bytes));
    Buffer workspace(Device::cuda, workspace_bytes);
    exec.workspace = Workspace{workspace.data(), workspace.bytes()};
    SoftmaxForwardArgs softmax;
    softmax.rows = kRows;
    softmax.cols = kClasses;
    softmax.x = logits.data();
    softmax.y = grad.data();
    ActivationForwardArgs relu;
    relu.n = kElements;
    relu.x = logits.data();
    relu.y = grad.data();

    std::function<Status()> call;
    if (op == "cross_entropy_fused")
      call = [&] { return cross_entropy_forward_backward(ce, CrossEntropyOptions{}, exec); };
    else if (op == "softmax_forward")
      call = [&] { return softmax_forward(softmax, SoftmaxOptions{}, exec); };
    else
      call = [&] { return activation_forward(relu, ActivationOptions{}, exec); };
    check(call());  // first-call set-up (module load, the stream's error record) is not timed
    synchronize(Device::cuda);

    double seconds = 0;
    for (auto _ : state) {
      const auto start = std::chrono::steady_clock::now();
      for (int i = 0; i < kBatch; ++i) check(call());
      const std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - start;
      state.SetIterationTime(elapsed.count());
      seconds += elapsed.count();
      synchronize(Device::cuda);
    }
    const double calls = static_cast<double>(state.iterations()) * kBatch;
    state.counters["us_per_call"] = calls > 0 ? seconds / calls * 1e6 : 0.0;
  } catch (const std::exception& error) {
    state.SkipWithError(error.what());
  }
}

void register_host_cost() {
  for (const char* op : {"cross_entropy_fused", "softmax_forward", "relu_forward"}) {
    for (PointerChecks checks : {PointerChecks::every_call, PointerChecks::none}) {
      const std::string name = std::string("cuda/actloss/host_cost/") + op + "/checks:" +
                               (checks == PointerChecks::none ? "none" : "every_call");
      benchmark::RegisterBenchmark(name.c_str(),
                                   [op = std::string(op), checks](benchmark::State& state) {
                                     run_host_cost(state, op, checks);
                                   })
          ->UseManualTime()
          ->Unit(benchmark::kMicrosecond);
    }
  }
}

#if ACTLOSS_BENCH_LINEAR_CE
// The bare GEMMs' mean time per shape, for the vs_gemms of the rows registered after theirs.
std::map<std::string, double>& gemm_seconds() {
  static std::map<std::string, double> seconds;
  return seconds;
}

std::string shape_key(const LinearCrossEntropyShape& s) {
  return std::to_string(s.tokens) + "x" + std::to_string(s.hidden) + "x" +
         std::to_string(s.classes) + "/" + std::to_string(static_cast<int>(s.dtype));
}

benchmark::Counter bytes_counter(double bytes) {
  return benchmark::Counter(bytes, benchmark::Counter::kDefaults, benchmark::Counter::kIs1024);
}

void run_linear_ce(benchmark::State& state, const LinearCeCase& c) {
  try {
    LinearCeWorkload workload(c);
    // cuBLAS's kernel choice and the modules' loading belong to no iteration. No cache flush:
    // the weight alone is many times the L2.
    workload.run();
    synchronize(Device::cuda);
    const std::size_t measured = workload.measured_extra_bytes();
    Timer timer(Device::cuda);
    double seconds = 0;
    std::vector<std::pair<std::string, double>> stages;
    for (auto _ : state) {
      timer.start();
      workload.run();
      const double t = timer.stop_seconds();
      state.SetIterationTime(t);
      seconds += t;
      const std::vector<LinearCeStage> last = workload.last_stages();
      if (stages.empty())
        for (const LinearCeStage& stage : last) stages.emplace_back(stage.name, 0.0);
      for (std::size_t i = 0; i < last.size() && i < stages.size(); ++i)
        stages[i].second += last[i].seconds;
    }
    const double iterations = static_cast<double>(state.iterations());
    if (iterations == 0 || seconds <= 0) return;
    const double mean = seconds / iterations;
    state.counters["TFLOP/s"] =
        static_cast<double>(linear_cross_entropy_flops(c.shape)) / mean * 1e-12;
    const auto extra = static_cast<double>(workload.extra_bytes());
    state.counters["extra_bytes"] = bytes_counter(extra);
    state.counters["extra_bytes_measured"] = bytes_counter(static_cast<double>(measured));
    state.counters["extra_vs_unfused"] =
        extra / static_cast<double>(unfused_linear_ce_extra_bytes(c.shape));
    for (const auto& [name, total] : stages) state.counters[name + "_ms"] = total / iterations * 1e3;
    if (c.path == LinearCePath::fused || c.path == LinearCePath::sharded) {
      state.counters["chunk_tokens"] = static_cast<double>(workload.chunk_tokens());
      state.counters["chunks"] = static_cast<double>(workload.chunks());
    }
    const std::string key = shape_key(c.shape);
    if (c.path == LinearCePath::gemms) {
      gemm_seconds()[key] = mean;
    } else if (const auto found = gemm_seconds().find(key); found != gemm_seconds().end()) {
      state.counters["vs_gemms"] = mean / found->second;
    }
  } catch (const std::exception& error) {
    state.SkipWithError(error.what());
  }
}

// N = 8192 tokens of a 4096-wide model, Llama 2's and Llama 3's vocabularies, bf16; each path in
// the order that lets the later rows compare with the bare GEMMs. The fused call runs with its
// default chunk and with 2048 tokens per chunk: fewer chunks mean fewer passes of the float32
// d_weight accumulation through memory, for more workspace. The simulator gets a tiny shape
// that still takes several chunks, to show that every path runs.
void register_linear_ce(bool simulated) {
  std::vector<LinearCrossEntropyShape> shapes;
  if (simulated) {
    shapes.push_back({64, 32, 1000, DType::bf16});
  } else {
    shapes.push_back({8192, 4096, 32000, DType::bf16});
    shapes.push_back({8192, 4096, 128256, DType::bf16});
  }
  const std::int64_t other_chunk = simulated ? 16 : 2048;
  for (const LinearCrossEntropyShape& shape : shapes) {
    const LinearCeCase cases[] = {{LinearCePath::gemms, shape, 0},
                                  {LinearCePath::fused, shape, 0},
                                  {LinearCePath::fused, shape, other_chunk},
                                  {LinearCePath::unfused, shape, 0},
                                  {LinearCePath::sharded, shape, 0}};
    for (const LinearCeCase& c : cases) {
      benchmark::RegisterBenchmark(linear_ce_name(c).c_str(),
                                   [c](benchmark::State& state) { run_linear_ce(state, c); })
          ->UseManualTime()
          ->Iterations(simulated ? 2 : 5)
          ->Unit(benchmark::kMillisecond);
    }
  }
}
#endif

void print_problem_list() {
  std::printf("[\n");
  bool first = true;
  for (Device device : {Device::cpu, Device::cuda}) {
    for (const Problem& problem : problem_set(device, SetSize::full)) {
      const Case c{device, Impl::actloss, problem};
      std::printf("%s  {\"name\": \"%s\", \"bytes\": %lld}", first ? "" : ",\n",
                  case_name(c).c_str(), static_cast<long long>(min_bytes(problem)));
      first = false;
    }
  }
  std::printf("\n]\n");
}

std::string gbps(double bytes_per_second) {
  char text[32];
  std::snprintf(text, sizeof text, "%.1f", bytes_per_second * 1e-9);
  return text;
}

}  // namespace

int main(int argc, char** argv) {
  bool sim_gpu = false;
  bool one_pack_per_step = false;
  bool reduce_in_kernel = true;
  bool linear_ce = true;
  std::vector<char*> args;
  std::vector<std::string> rewritten;
  rewritten.reserve(static_cast<std::size_t>(argc));
  for (int i = 0; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--actloss_sim_gpu") {
      sim_gpu = true;
      continue;
    }
    if (arg == "--actloss_list") {
      print_problem_list();
      return 0;
    }
    if (const std::string flag = "--actloss_row_path="; arg.rfind(flag, 0) == 0) {
      const std::string name = arg.substr(flag.size());
      bool known = false;
      for (auto path : {detail::RowAlgorithm::rows_per_warp, detail::RowAlgorithm::warp_per_row,
                        detail::RowAlgorithm::block_on_chip, detail::RowAlgorithm::block_shared,
                        detail::RowAlgorithm::cluster_shared,
                        detail::RowAlgorithm::block_two_pass}) {
        if (name != detail::to_string(path)) continue;
        detail::set_row_algorithm_override(path);
        known = true;
      }
      if (!known) {
        std::fprintf(stderr, "actloss_bench: unknown row path '%s'\n", name.c_str());
        return 1;
      }
      continue;
    }
    if (arg == "--actloss_row_prefetch=0" || arg == "--actloss_row_prefetch=1") {
      detail::set_row_prefetch(arg.back() == '1');
      continue;
    }
    if (arg == "--actloss_row_lane_shift=0" || arg == "--actloss_row_lane_shift=1") {
      detail::set_row_lane_shift(arg.back() == '1');
      continue;
    }
    if (arg == "--actloss_cpu_bf16_instruction=0" || arg == "--actloss_cpu_bf16_instruction=1") {
      detail::cpu_set_bf16_instruction_for_testing(arg.back() == '1');
      continue;
    }
    if (const std::string flag = "--actloss_cpu_spin_us="; arg.rfind(flag, 0) == 0) {
      detail::cpu_set_pool_spin_for_testing(std::stoll(arg.substr(flag.size())) * 1000);
      continue;
    }
    if (const std::string flag = "--actloss_ce_label_smoothing="; arg.rfind(flag, 0) == 0) {
      const std::string value = arg.substr(flag.size());
      char* end = nullptr;
      const float eps = std::strtof(value.c_str(), &end);
      if (value.empty() || *end != '\0' || !(eps >= 0.0f && eps <= 1.0f)) {
        std::fprintf(stderr, "actloss_bench: --actloss_ce_label_smoothing takes a number in "
                             "[0, 1] (got '%s')\n", value.c_str());
        return 1;
      }
      set_cross_entropy_label_smoothing(eps);
      continue;
    }
    if (arg == "--actloss_ce_targets=probabilities" || arg == "--actloss_ce_targets=classes") {
      set_cross_entropy_probability_targets(arg == "--actloss_ce_targets=probabilities");
      continue;
    }
    if (const std::string flag = "--actloss_ce_targets="; arg.rfind(flag, 0) == 0) {
      std::fprintf(stderr, "actloss_bench: --actloss_ce_targets takes probabilities or classes "
                           "(got '%s')\n", arg.substr(flag.size()).c_str());
      return 1;
    }
    if (const std::string flag = "--actloss_cpu_streaming_bytes="; arg.rfind(flag, 0) == 0) {
      detail::cpu_set_streaming_output_bytes_for_testing(std::stoll(arg.substr(flag.size())));
      continue;
    }
    if (arg == "--actloss_row_occupancy=0" || arg == "--actloss_row_occupancy=1") {
      detail::set_row_occupancy_grid(arg.back() == '1');
      continue;
    }
    if (arg == "--actloss_row_exp_once=0" || arg == "--actloss_row_exp_once=1") {
      detail::set_row_exp_once(arg.back() == '1');
      continue;
    }
    if (arg == "--actloss_reduce_in_kernel=0" || arg == "--actloss_reduce_in_kernel=1") {
      reduce_in_kernel = arg.back() == '1';
      continue;
    }
    if (arg == "--actloss_linear_ce=0" || arg == "--actloss_linear_ce=1") {
      linear_ce = arg.back() == '1';
      continue;
    }
    if (arg == "--actloss_row_pieces=0" || arg == "--actloss_row_pieces=1") {
      detail::set_row_chunk_pieces(arg.back() == '1');
      continue;
    }
    if (const std::string flag = "--elementwise-packs="; arg.rfind(flag, 0) == 0) {
      const std::string value = arg.substr(flag.size());
      if (value != "1" && value != "default") {
        std::fprintf(stderr,
                     "actloss_bench: --elementwise-packs takes 1 (one pack per thread per step, "
                     "the loop last measured on a GPU) or default (got '%s')\n",
                     value.c_str());
        return 1;
      }
      one_pack_per_step = value == "1";
      continue;
    }
#if defined(ACTLOSS_BENCHMARK_MIN_TIME_IS_DOUBLE)
    // Google Benchmark before 1.8 reads --benchmark_min_time as a bare number of seconds and
    // silently falls back to 0.5 s on "0.05s", which would make a GPU run ten times longer.
    const std::string flag = "--benchmark_min_time=";
    if (arg.rfind(flag, 0) == 0 && arg.size() > flag.size() && arg.back() == 's') {
      rewritten.push_back(arg.substr(0, arg.size() - 1));
      args.push_back(rewritten.back().data());
      continue;
    }
#endif
    args.push_back(argv[i]);
  }
#if !ACTLOSS_BENCH_LINEAR_CE
  (void)linear_ce;  // this build has no such rows to leave out
#endif
  int count = static_cast<int>(args.size());
  args.push_back(nullptr);
  benchmark::Initialize(&count, args.data());
  if (benchmark::ReportUnrecognizedArguments(count, args.data())) return 1;

  benchmark::AddCustomContext("actloss_build", build_info());
  benchmark::AddCustomContext("actloss_ce_label_smoothing",
                              std::to_string(cross_entropy_label_smoothing()));
  benchmark::AddCustomContext("actloss_ce_targets",
                              cross_entropy_probability_targets() ? "probabilities" : "classes");
#if ACTLOSS_BENCH_CUDA
  detail::cuda_set_elementwise_packs_per_step_for_testing(one_pack_per_step ? 1 : 0);
  benchmark::AddCustomContext("actloss_elementwise_packs", one_pack_per_step ? "1" : "default");
  detail::cuda_set_reduced_loss_in_kernel_for_testing(reduce_in_kernel);
  benchmark::AddCustomContext("actloss_reduce_in_kernel", reduce_in_kernel ? "1" : "0");
#else
  if (one_pack_per_step || !reduce_in_kernel) {
    std::fprintf(stderr, "actloss_bench: --elementwise-packs=1 and --actloss_reduce_in_kernel=0 "
                         "need the CUDA backend, which this build lacks\n");
    return 1;
  }
#endif
  try {
    const CpuCopyCeilings cpu =
        measure_cpu_copy_ceilings(default_copy_bytes(Device::cpu), 5);
    benchmark::AddCustomContext("actloss_cpu", describe_device(Device::cpu).name);
    benchmark::AddCustomContext("actloss_cpu_copy_GBps", gbps(cpu.best_bytes_per_second()));
    benchmark::AddCustomContext("actloss_cpu_memcpy_GBps", gbps(cpu.plain.bytes_per_second));
    benchmark::AddCustomContext("actloss_cpu_stream_copy_GBps",
                                gbps(cpu.streaming.bytes_per_second));
    benchmark::AddCustomContext("actloss_cpu_stream_store", streaming_store_text());
    benchmark::AddCustomContext("actloss_cpu_threads", std::to_string(cpu_threads()));
#if ACTLOSS_BENCH_ONEDNN
    benchmark::AddCustomContext("actloss_onednn", peers::onednn_version());
#endif
    register_set(Device::cpu, SetSize::full, cpu.best_bytes_per_second());

    const bool gpu = cuda_device_present() && (!simulated_cuda() || sim_gpu);
    if (gpu) {
      const DeviceDescription device = describe_device(Device::cuda);
      const CopyCeiling copy =
          measure_copy_ceiling(Device::cuda, default_copy_bytes(Device::cuda), 5);
      benchmark::AddCustomContext("actloss_cuda_device", device.name + ", " + device.detail);
      benchmark::AddCustomContext("actloss_cuda_copy_GBps", gbps(copy.bytes_per_second));
      register_set(Device::cuda, simulated_cuda() ? SetSize::sim : SetSize::full,
                   copy.bytes_per_second);
      register_host_cost();
#if ACTLOSS_BENCH_LINEAR_CE
      if (linear_ce) register_linear_ce(simulated_cuda());
#endif
    } else {
      benchmark::AddCustomContext("actloss_cuda_device",
                                  cuda_device_present()  ? "simulator (pass --actloss_sim_gpu)"
                                  : cuda_backend_built() ? "none found"
                                                         : "CUDA backend not built");
    }
  } catch (const std::exception& error) {
    std::fprintf(stderr, "actloss_bench: %s\n", error.what());
    return 1;
  }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
