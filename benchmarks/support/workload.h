// What is benchmarked: the problem sets (which op, pass, dtype and shape on which device), the
// implementations that can run each problem, and ready-to-run workloads with their buffers
// allocated and filled. actloss_bench wraps these in Google Benchmark; `actloss bench` times them
// with its own loop; both take their GB/s from byte_formulas.h.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "benchmarks/byte_formulas.h"

namespace actloss::bench {

enum class Impl : std::uint8_t {
  actloss,     // the library through its public API
  unfused,     // cross-entropy as an eager framework runs it: log_softmax, nll, backward (nvcc)
  thrust_cub,  // cross-entropy with Thrust and CUB alone, as a C++ CUDA user writes it (nvcc)
  cudnn,       // cuDNN's legacy softmax and activation calls (nvcc builds where cudnn.h was found)
  onednn,      // oneDNN's softmax and eltwise primitives on CPU (when libdnnl was found)
};

const char* to_string(Op op);
const char* to_string(Pass pass);
const char* to_string(Impl impl);
// The op's name in benchmark names: the activation's own name for Op::activation.
std::string op_name(const Problem& problem);

struct Case {
  Device device = Device::cpu;
  Impl impl = Impl::actloss;
  Problem problem;
};

// "<device>/<impl>/<op>/<pass>/<dtype>/classes:<C>/rows:<R>" for the row-wise ops and
// "<device>/<impl>/<op>/<pass>/<dtype>/n:<N>" for the elementwise ones. plot.py and
// torch_compare.py parse and produce exactly this form.
std::string case_name(const Case& c);

// Row-wise problems are plotted against classes, elementwise ones against elements.
bool is_row_op(Op op);

enum class SetSize : std::uint8_t {
  full,   // actloss_bench: every op, the shapes
  quick,  // `actloss bench --quick`: a few problems per family, seconds in all
  sim,    // the simulator, on request only: tiny shapes that show the path runs
};

// The problems of a set for `device` (the sizes differ: ~1 GiB tensors on a GPU, ~32 MiB on CPU).
std::vector<Problem> problem_set(Device device, SetSize size);

// Whether `impl` exists in this build and can run `problem` (a cuDNN peer for gelu does not
// exist; the unfused and Thrust/CUB baselines are cross-entropy only). `why` says why not.
bool implements(Impl impl, Device device, const Problem& problem, std::string* why = nullptr);

// The implementations this build offers on `device`, actloss first.
std::vector<Impl> implementations(Device device);

// One problem with its operands allocated and filled, ready to run repeatedly. Each of the
// `slots()` copies has its own inputs and outputs: cycling through them keeps a small problem's
// operands out of the cache that the previous run warmed (see rotation_slots()).
class Workload {
 public:
  virtual ~Workload() = default;
  int slots() const { return slots_; }
  // Enqueues one run on copy `slot` (on bench_stream() for CUDA; runs it outright on CPU).
  // Throws std::runtime_error when the implementation reports an error.
  virtual void run(int slot) = 0;

 protected:
  explicit Workload(int slots) : slots_(slots) {}

 private:
  int slots_;
};

// Copies needed so that the operands of consecutive runs together exceed the last-level cache
// three times over; 1 when one copy already does (then the caller flushes the cache instead).
// Bounded by 256 MiB of operands in all.
int rotation_slots(Device device, const Problem& problem);

// Label smoothing for actloss's cross-entropy calls: 0 (none) unless set before the workloads
// are made. The cross-entropy baselines (unfused, Thrust/CUB) have none, so implements() says
// no for them while it is set: a run with it compares actloss with its own plain run.
void set_cross_entropy_label_smoothing(float eps);
float cross_entropy_label_smoothing();

// Whether the sets' cross-entropy problems take probability targets (Problem::
// probability_targets, named cross_entropy_probabilities) instead of class indices: false unless
// set before problem_set() is called. The baselines take class indices only.
void set_cross_entropy_probability_targets(bool on);
bool cross_entropy_probability_targets();

// Allocates and fills; throws std::runtime_error (out of memory, impl unavailable).
std::unique_ptr<Workload> make_workload(const Case& c, int slots);

}  // namespace actloss::bench
