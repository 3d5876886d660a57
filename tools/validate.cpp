// `actloss validate`: every op x pass x dtype x dispatch path, on random and adversarial inputs,
// against the float64 reference (host/reference) evaluated on the inputs as the device holds
// them (rounded to their dtype). Expected values are rounded once to the output's dtype.
//
// Tolerances: |actual - expected| <= rtol |expected| + atol * scale + floor, per element, where
//  * rtol covers the output's own rounding: float arithmetic (a few ulps, 2^-21..2^-19) plus one
//    unit of the output dtype (2^-10 f16, 2^-7 bf16) because the kernel rounds float and the
//    reference rounds double, and the two can land on neighbours;
//  * atol * scale covers cancellation: where a result is a small difference of large terms
//    (lse - x_y of a confident row, softmax-minus-one-hot, BCE's two terms near the optimum), the
//    float error is relative to those terms, not to the result. `scale` is the size of the terms
//    for that row or element, stated with each op below; atol is 2^-18 for the row ops (exp, log
//    and sums over up to 2^17 classes: comfortably under 64 float roundings of the scale) and
//    2^-21 for the pointwise ops (a handful of roundings);
//  * floor is the output dtype's smallest subnormal step, for results that underflow.
// NaN must meet NaN and an infinity the same infinity. These mirror the reasoning of the CUDA
// tests (tests/cuda/*_test.cpp) so that the tool and the test suite agree on what is correct.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

#include <actloss/actloss.h>

#include "benchmarks/support/memory.h"
#include "host/half.h"
#include "host/reference/reference.h"
#include "tools/commands.h"
#include "tools/table.h"

#if ACTLOSS_BENCH_CUDA
#include "cuda/row_dispatch.h"
#include "host/backend.h"
#endif

namespace actloss::tool {
namespace {

using bench::Buffer;
using bench::Random;

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

constexpr double kRowAtol = 0x1p-18;
constexpr double kPointwiseAtol = 0x1p-21;

enum class Pass { forward, backward, fused };

const char* pass_name(Pass pass) {
  switch (pass) {
    case Pass::forward: return "forward";
    case Pass::backward: return "backward";
    case Pass::fused: return "fused";
  }
  return "?";
}

// ---- host <-> device ------------------------------------------------------------------------

std::vector<double> quantize(const std::vector<double>& values, DType dtype) {
  std::vector<double> out(values.size());
  std::uint32_t scratch = 0;
  for (std::size_t i = 0; i < values.size(); ++i) {
    host::store_from_double(&scratch, dtype, 0, values[i]);
    out[i] = host::load_as_double(&scratch, dtype, 0);
  }
  return out;
}

std::vector<double> to_f32(const std::vector<double>& values) {
  return quantize(values, DType::f32);
}

// `offset` elements before the data: offset 1 makes every 16-byte vector access impossible, so
// the kernels take their scalar path.
Buffer upload(Device device, const std::vector<double>& values, DType dtype,
              std::int64_t offset = 0) {
  const auto size = static_cast<std::size_t>(dtype_size(dtype));
  std::vector<std::uint8_t> bytes((values.size() + static_cast<std::size_t>(offset)) * size, 0xFF);
  for (std::size_t i = 0; i < values.size(); ++i) {
    host::store_from_double(bytes.data(), dtype, static_cast<std::int64_t>(i) + offset, values[i]);
  }
  Buffer buffer(device, bytes.size());
  buffer.upload(bytes.data(), bytes.size());
  return buffer;
}

template <class T>
Buffer upload_plain(Device device, const std::vector<T>& values) {
  Buffer buffer(device, values.size() * sizeof(T));
  buffer.upload(values.data(), values.size() * sizeof(T));
  return buffer;
}

// Every byte 0xFF is NaN in f32, f16 and bf16: an element the op forgets to write fails.
Buffer poisoned(Device device, std::int64_t count, DType dtype, std::int64_t offset = 0) {
  Buffer buffer(device, static_cast<std::size_t>((count + offset) * dtype_size(dtype)));
  buffer.fill_bytes(0xFF);
  return buffer;
}

void* element(const Buffer& buffer, DType dtype, std::int64_t offset) {
  return buffer.as<char>() + offset * dtype_size(dtype);
}

std::vector<double> download(const Buffer& buffer, std::int64_t count, DType dtype,
                             std::int64_t offset = 0) {
  std::vector<std::uint8_t> bytes(buffer.bytes());
  buffer.download(bytes.data(), bytes.size());
  std::vector<double> values(static_cast<std::size_t>(count));
  for (std::int64_t i = 0; i < count; ++i) {
    values[static_cast<std::size_t>(i)] = host::load_as_double(bytes.data(), dtype, i + offset);
  }
  return values;
}

Exec exec_for(Device device) {
  Exec exec;
  exec.device = device;
  if (device == Device::cuda) exec.stream = bench::bench_stream();
  return exec;
}

// Waits for the op and collects a data error the kernels recorded; "" when all is well.
std::string finish(Device device, const Status& status) {
  if (!status.ok()) return status.message();
  bench::synchronize(device);
  const Status recorded = take_device_error(exec_for(device));
  return recorded.ok() ? "" : "device error: " + recorded.message();
}

// ---- comparison -----------------------------------------------------------------------------

struct Tolerance {
  double rtol = 0;
  double atol = 0;            // times scale[i] when scale is given
  double floor = 0;           // absolute
  std::vector<double> scale;  // per element, or empty for 1
};

// The output dtype's share of the error: one unit of its last place, and its subnormal step.
Tolerance for_output(DType dtype, Tolerance t) {
  if (dtype == DType::f16) {
    t.rtol += 0x1p-10;
    t.floor = std::max(t.floor, 0x1p-24);
  } else if (dtype == DType::bf16) {
    t.rtol += 0x1p-7;
    t.floor = std::max(t.floor, 0x1p-133);
  } else {
    t.floor = std::max(t.floor, 1e-40);  // float's subnormal range
  }
  return t;
}

std::string tolerance_text(const Tolerance& t) {
  return t.scale.empty() ? format("%.1e", t.atol + t.floor) : format("%.1e*s", t.atol);
}

struct Comparison {
  std::string output;
  double max_abs = 0;
  double max_rel = 0;
  double worst = 0;  // max of error / allowance: <= 1 passes
  std::string rtol, atol;
  bool pass = true;
  std::string first_failure;  // "index: got X, want Y"
};

Comparison compare(const std::string& name, const std::vector<double>& actual,
                   const std::vector<double>& expected, const Tolerance& t) {
  Comparison c;
  c.output = name;
  c.rtol = format("%.1e", t.rtol);
  c.atol = tolerance_text(t);
  if (actual.size() != expected.size()) {
    c.pass = false;
    c.worst = kInf;
    c.first_failure = "size mismatch";
    return c;
  }
  // Relative errors only over elements within 1e-3 of the output's largest magnitude: far below
  // that, the absolute terms govern, and a ratio to a tiny value says nothing.
  double largest = 0;
  for (double e : expected)
    if (std::isfinite(e)) largest = std::max(largest, std::fabs(e));
  const double significant = 1e-3 * largest;
  for (std::size_t i = 0; i < actual.size(); ++i) {
    const double a = actual[i];
    const double e = expected[i];
    double ratio = 0;
    if (std::isnan(e) || std::isnan(a) || std::isinf(e) || std::isinf(a)) {
      const bool same = (std::isnan(e) && std::isnan(a)) || a == e;
      if (!same) {
        ratio = kInf;
        c.max_abs = kInf;
      }
    } else {
      const double error = std::fabs(a - e);
      const double scaled = t.atol * (t.scale.empty() ? 1.0 : t.scale[i]);
      const double allowed = t.rtol * std::fabs(e) + scaled + t.floor;
      ratio = error == 0 ? 0 : allowed > 0 ? error / allowed : kInf;
      c.max_abs = std::max(c.max_abs, error);
      if (e != 0 && std::fabs(e) >= significant)
        c.max_rel = std::max(c.max_rel, error / std::fabs(e));
    }
    c.worst = std::max(c.worst, ratio);
    if (ratio > 1 && c.pass) {
      c.pass = false;
      c.first_failure = format("%s[%zu]: got %.9g, want %.9g", name.c_str(), i, a, e);
    }
  }
  return c;
}

// ---- cases ----------------------------------------------------------------------------------

struct Result {
  std::string error;  // the op or the device failed outright
  std::vector<Comparison> outputs;
};

struct Case {
  Device device = Device::cpu;
  std::string op, pass, shape, inputs, path;
  DType dtype = DType::f32;
  std::function<Result()> run;
};

std::string shape_text(std::int64_t rows, std::int64_t cols) {
  return format("%lldx%lld", static_cast<long long>(rows), static_cast<long long>(cols));
}

// Dispatch paths. On CPU there is one; on CUDA the row ops force each row algorithm and the
// pointwise ops take the vector path, the scalar path (a misaligned base) and a grid capped to
// two blocks so that the grid-stride loops run many steps.
enum class RowPath : std::uint8_t {
  cpu,
  automatic,
  rows_per_warp,
  warp_per_row,
  block_on_chip,
  block_two_pass
};
enum class PointPath : std::uint8_t { cpu, vector, scalar, grid_stride };

#if ACTLOSS_BENCH_CUDA
detail::RowAlgorithm algorithm_of(RowPath path) {
  switch (path) {
    case RowPath::rows_per_warp: return detail::RowAlgorithm::rows_per_warp;
    case RowPath::warp_per_row: return detail::RowAlgorithm::warp_per_row;
    case RowPath::block_on_chip: return detail::RowAlgorithm::block_on_chip;
    case RowPath::block_two_pass: return detail::RowAlgorithm::block_two_pass;
    default: return detail::RowAlgorithm::automatic;
  }
}
#endif

// Sets the forced row algorithm for one case and restores automatic afterwards.
class RowPathScope {
 public:
  explicit RowPathScope([[maybe_unused]] RowPath path) {
#if ACTLOSS_BENCH_CUDA
    detail::set_row_algorithm_override(algorithm_of(path));
#endif
  }
  ~RowPathScope() {
#if ACTLOSS_BENCH_CUDA
    detail::set_row_algorithm_override(detail::RowAlgorithm::automatic);
#endif
  }
  RowPathScope(const RowPathScope&) = delete;
  RowPathScope& operator=(const RowPathScope&) = delete;
};

class PointPathScope {
 public:
  explicit PointPathScope([[maybe_unused]] PointPath path) {
#if ACTLOSS_BENCH_CUDA
    if (path == PointPath::grid_stride) detail::cuda_set_elementwise_block_limit_for_testing(2);
#endif
  }
  ~PointPathScope() {
#if ACTLOSS_BENCH_CUDA
    detail::cuda_set_elementwise_block_limit_for_testing(0);
#endif
  }
  PointPathScope(const PointPathScope&) = delete;
  PointPathScope& operator=(const PointPathScope&) = delete;
};

std::int64_t offset_of(PointPath path) { return path == PointPath::scalar ? 1 : 0; }

const char* point_path_name(PointPath path) {
  switch (path) {
    case PointPath::cpu: return "cpu";
    case PointPath::vector: return "vector";
    case PointPath::scalar: return "scalar";
    case PointPath::grid_stride: return "grid-stride";
  }
  return "?";
}

// What a row path is called in the table: the algorithm that actually ran, which the dispatch
// header can tell (a forced path that cannot hold the row falls back to the automatic choice).
std::string row_path_name(RowPath path, [[maybe_unused]] int op, [[maybe_unused]] std::int64_t cols,
                          [[maybe_unused]] DType dtype) {
  if (path == RowPath::cpu) return "cpu";
#if ACTLOSS_BENCH_CUDA
  detail::set_row_algorithm_override(algorithm_of(path));
  const detail::RowAlgorithm chosen =
      detail::chosen_row_algorithm(static_cast<detail::RowOp>(op), cols, dtype);
  detail::set_row_algorithm_override(detail::RowAlgorithm::automatic);
  return detail::to_string(chosen);
#else
  return "automatic";
#endif
}

// Row op ids matching detail::RowOp, usable without the dispatch header.
constexpr int kRowOpCrossEntropy = 0;
constexpr int kRowOpSoftmaxForward = 1;
constexpr int kRowOpSoftmaxBackward = 2;

struct RowShape {
  RowPath path;
  std::int64_t rows, cols;
};

std::int64_t rows_for(std::int64_t cols) {
  return std::clamp<std::int64_t>(60000 / std::max<std::int64_t>(cols, 1), 2, 37);
}

// Shapes that each path can hold (classes within its limit for every dtype, f32 being the
// tightest), several rows per warp or block so that neighbouring rows are exercised too.
std::vector<RowShape> row_shapes(Device device, Depth depth, bool backward_softmax) {
  if (device == Device::cpu) {
    switch (depth) {
      case Depth::smoke: return {{RowPath::cpu, 5, 300}};
      case Depth::quick: return {{RowPath::cpu, 9, 1000}};
      case Depth::full:
        return {{RowPath::cpu, 37, 37}, {RowPath::cpu, 9, 1000}, {RowPath::cpu, 3, 40000}};
    }
  }
#if ACTLOSS_BENCH_CUDA
  // The longest rows each on-chip path holds in every dtype (f32 is the tightest), as the
  // dispatch itself defines them, so the largest shapes really run on the path they name.
  const detail::RowOp limit_op =
      backward_softmax ? detail::RowOp::softmax_backward : detail::RowOp::cross_entropy;
  const std::int64_t warp_max = detail::row_algorithm_max_classes(
      limit_op, detail::RowAlgorithm::warp_per_row, DType::f32);
  const std::int64_t block_max = detail::row_algorithm_max_classes(
      limit_op, detail::RowAlgorithm::block_on_chip, DType::f32);
#else
  (void)backward_softmax;  // no CUDA backend: these shapes are never run
  const std::int64_t warp_max = 1024, block_max = 16384;
#endif
  std::vector<std::pair<RowPath, std::vector<std::int64_t>>> per_path;
  switch (depth) {
    case Depth::smoke:
      per_path = {{RowPath::rows_per_warp, {37}},
                  {RowPath::warp_per_row, {500}},
                  {RowPath::block_on_chip, {3000}},
                  {RowPath::block_two_pass, {3000}}};
      break;
    case Depth::quick:
      per_path = {{RowPath::rows_per_warp, {37}},
                  {RowPath::warp_per_row, {500}},
                  {RowPath::block_on_chip, {5000}},
                  {RowPath::block_two_pass, {5000}}};
      break;
    case Depth::full:
      per_path = {{RowPath::rows_per_warp, {1, 37, 128}},
                  {RowPath::warp_per_row, {129, 500, warp_max}},
                  {RowPath::block_on_chip, {warp_max + 1, 5000, block_max}},
                  {RowPath::block_two_pass, {7, 5000, 70001}},
                  {RowPath::automatic, {50257}}};
      break;
  }
  std::vector<RowShape> shapes;
  for (const auto& [path, classes] : per_path)
    for (std::int64_t c : classes) shapes.push_back({path, rows_for(c), c});
  return shapes;
}

struct PointShape {
  PointPath path;
  std::int64_t rows, cols;
};

std::vector<PointShape> point_shapes(Device device, Depth depth, bool matrix) {
  // BCE is a matrix (pos_weight per column); activations and MSE are one row.
  auto shape = [matrix](PointPath path, std::int64_t n) {
    return matrix
               ? PointShape{path, std::max<std::int64_t>(n / 33, 1), std::min<std::int64_t>(n, 33)}
               : PointShape{path, 1, n};
  };
  if (device == Device::cpu) {
    if (depth == Depth::full)
      return {shape(PointPath::cpu, 1), shape(PointPath::cpu, 4099), shape(PointPath::cpu, 65537)};
    return {shape(PointPath::cpu, depth == Depth::smoke ? 1000 : 4099)};
  }
  const std::int64_t n = depth == Depth::smoke ? 1000 : 4099;
  std::vector<PointShape> shapes;
  for (PointPath path : {PointPath::vector, PointPath::scalar, PointPath::grid_stride}) {
    if (depth == Depth::full) {
      for (std::int64_t size :
           {std::int64_t{1}, std::int64_t{33}, std::int64_t{4099}, std::int64_t{65537}})
        shapes.push_back(shape(path, size));
    } else {
      shapes.push_back(shape(path, n));
    }
  }
  return shapes;
}

std::vector<DType> dtypes_for(Depth depth) {
  if (depth == Depth::smoke) return {DType::f32, DType::bf16};
  return {DType::f32, DType::f16, DType::bf16};
}

// Adversarial magnitudes that the dtype can hold: f16 tops out at 65504.
double big_value(DType dtype) { return dtype == DType::f16 ? 6.0e4 : 1.0e30; }

std::uint64_t seed_for(const std::string& a, std::int64_t rows, std::int64_t cols, DType dtype) {
  std::uint64_t h = 1469598103934665603ull;
  for (char ch : a) h = (h ^ static_cast<unsigned char>(ch)) * 1099511628211ull;
  return h ^ (static_cast<std::uint64_t>(rows) << 40) ^ (static_cast<std::uint64_t>(cols) << 8) ^
         static_cast<std::uint64_t>(dtype);
}

std::vector<double> uniform(std::size_t count, double low, double high, Random& random) {
  std::vector<double> v(count);
  for (double& x : v) x = random.uniform(low, high);
  return v;
}

// Which shapes a case runs on. `full` and `quick` run every kind of input on every shape their
// depth lists (quick lists one per path); `smoke` runs the random inputs on every path and each
// adversarial kind on one, rotating so that every path meets every kind across passes and dtypes.
class Selector {
 public:
  explicit Selector(Depth depth) : depth_(depth) {}
  template <class Shape>
  std::vector<Shape> pick(const std::vector<Shape>& shapes, bool random_inputs) {
    if (depth_ != Depth::smoke || random_inputs || shapes.size() <= 1) return shapes;
    return {shapes[rotation_++ % shapes.size()]};
  }

 private:
  Depth depth_;
  std::size_t rotation_ = 0;
};

// ---- cross-entropy --------------------------------------------------------------------------

struct CeInputs {
  std::int64_t rows = 0, classes = 0;
  DType dtype = DType::f32;
  std::vector<double> logits;  // as the device holds them
  TargetKind target_kind = TargetKind::class_index_i64;
  std::vector<std::int64_t> targets;
  std::vector<double> probs;    // soft targets, as the device holds them
  std::vector<double> weights;  // f32 values, or empty
  CrossEntropyOptions options;
  float grad_scale = 1.0f;
  std::vector<double> upstream;  // f32 values, or empty
};

const std::vector<std::string> kCeKinds = {"random", "outliers", "masked",
                                           "ignore", "options",  "soft"};

CeInputs ce_inputs(const std::string& kind, std::int64_t rows, std::int64_t classes, DType dtype) {
  CeInputs in;
  in.rows = rows;
  in.classes = classes;
  in.dtype = dtype;
  Random random(seed_for("ce/" + kind, rows, classes, dtype));
  const auto n = static_cast<std::size_t>(rows * classes);
  in.logits = uniform(n, -8.0, 8.0, random);
  in.targets.resize(static_cast<std::size_t>(rows));
  for (auto& t : in.targets) t = random.below(classes);
  auto at = [&](std::int64_t r, std::int64_t c) -> double& {
    return in.logits[static_cast<std::size_t>(r * classes + c)];
  };
  if (kind == "outliers") {
    // One huge logit per row, positive or negative, sometimes on the target itself; unreduced
    // loss with a per-row upstream gradient.
    const double big = big_value(dtype);
    for (std::int64_t r = 0; r < rows; ++r) {
      const std::int64_t c =
          r % 4 == 0 ? in.targets[static_cast<std::size_t>(r)] : random.below(classes);
      at(r, c) = r % 3 == 1 ? -big : big;
    }
    in.options.reduction = Reduction::none;
    in.upstream = to_f32(uniform(static_cast<std::size_t>(rows), -2.0, 2.0, random));
  } else if (kind == "masked") {
    // -inf masks (never on the target), and a fully masked row whose target is ignored.
    for (std::int64_t r = 0; r < rows; ++r)
      for (std::int64_t c = 0; c < classes; ++c)
        if (c != in.targets[static_cast<std::size_t>(r)] && random.uniform(0, 1) < 0.3)
          at(r, c) = -kInf;
    for (std::int64_t c = 0; c < classes; ++c) at(0, c) = -kInf;
    in.targets[0] = in.options.ignore_index;
  } else if (kind == "ignore") {
    // int32 targets, a non-default ignore_index on a third of the rows, the last class used.
    in.target_kind = TargetKind::class_index_i32;
    in.options.ignore_index = -1;
    in.options.reduction = Reduction::sum;
    in.grad_scale = 0.5f;
    for (std::int64_t r = 0; r < rows; ++r)
      if (r % 3 == 2) in.targets[static_cast<std::size_t>(r)] = -1;
    in.targets[0] = classes - 1;
  } else if (kind == "options") {
    // Everything at once: smoothing, class weights, z-loss, a softcap the logits exceed.
    in.logits = uniform(n, -60.0, 60.0, random);
    in.options.label_smoothing = 0.1f;
    in.options.z_loss = 1e-3f;
    in.options.softcap = 20.0f;
    in.weights = to_f32(uniform(static_cast<std::size_t>(classes), 0.25, 2.0, random));
    if (rows > 1) in.targets[1] = in.options.ignore_index;
  } else if (kind == "soft") {
    in.target_kind = TargetKind::probabilities;
    std::vector<double> q = uniform(n, 0.0, 1.0, random);
    for (std::int64_t r = 0; r < rows; ++r) {
      double sum = 0;
      for (std::int64_t c = 0; c < classes; ++c)
        sum += q[static_cast<std::size_t>(r * classes + c)];
      for (std::int64_t c = 0; c < classes; ++c)
        q[static_cast<std::size_t>(r * classes + c)] /= sum;
    }
    in.probs = quantize(q, dtype);
    in.options.label_smoothing = 0.05f;
    in.weights = to_f32(uniform(static_cast<std::size_t>(classes), 0.5, 1.5, random));
    in.upstream = {static_cast<double>(0.7f)};
  }
  in.logits = quantize(in.logits, dtype);
  return in;
}

ref::Reduction to_ref(Reduction reduction) {
  switch (reduction) {
    case Reduction::none: return ref::Reduction::none;
    case Reduction::sum: return ref::Reduction::sum;
    case Reduction::mean: return ref::Reduction::mean;
  }
  return ref::Reduction::mean;
}

ref::CrossEntropyProblem ce_problem(const CeInputs& in) {
  ref::CrossEntropyProblem p;
  p.rows = in.rows;
  p.classes = in.classes;
  p.logits = in.logits;
  p.soft_targets = in.target_kind == TargetKind::probabilities;
  if (p.soft_targets) {
    p.target_prob = in.probs;
  } else {
    p.target_index = in.targets;
  }
  p.class_weight = in.weights;
  p.ignore_index = in.options.ignore_index;
  p.label_smoothing = in.options.label_smoothing;
  p.z_loss = in.options.z_loss;
  p.softcap = in.options.softcap;
  p.reduction = to_ref(in.options.reduction);
  p.grad_scale = in.grad_scale;
  p.upstream = in.upstream;
  return p;
}

// The sizes cross-entropy's rounding acts on, per row (see the file comment):
//   lse       max |x'| + log C: the max is subtracted, log(sum) added
//   row loss  A (|lse| + max |x'|) + z lse^2, A the row's total target weight
//   grad      |f| (A + max a + 2 z |lse|), f = grad_scale * upstream / denominator
struct CeScales {
  std::vector<double> lse, row_loss, grad;  // grad per element
  double loss = 0;
};

CeScales ce_scales(const ref::CrossEntropyProblem& p, const ref::CrossEntropyResult& r) {
  CeScales s;
  const auto rows = static_cast<std::size_t>(p.rows);
  const auto classes = static_cast<std::size_t>(p.classes);
  s.lse.resize(rows);
  s.row_loss.resize(rows);
  s.grad.resize(rows * classes);
  const bool mean = p.reduction == ref::Reduction::mean;
  const double denominator = mean ? r.weight_sum : 1.0;
  const double eps = p.label_smoothing;
  for (std::size_t i = 0; i < rows; ++i) {
    double max_abs = 0;
    for (std::size_t c = 0; c < classes; ++c) {
      double x = p.logits[i * classes + c];
      if (p.softcap > 0) x = p.softcap * std::tanh(x / p.softcap);
      if (std::isfinite(x)) max_abs = std::max(max_abs, std::fabs(x));
    }
    s.lse[i] = max_abs + std::log(static_cast<double>(p.classes)) + 1.0;
    const bool ignored = !p.soft_targets && p.target_index[i] == p.ignore_index;
    if (ignored) continue;  // exact zeros expected
    double total = 0;
    double largest = 0;
    for (std::size_t c = 0; c < classes; ++c) {
      const double w = p.class_weight.empty() ? 1.0 : p.class_weight[c];
      double a = eps / static_cast<double>(p.classes) * w;
      if (p.soft_targets) {
        a = w * ((1 - eps) * p.target_prob[i * classes + c] + eps / static_cast<double>(p.classes));
      } else if (static_cast<std::int64_t>(c) == p.target_index[i]) {
        a += (1 - eps) * w;
      }
      total += a;
      largest = std::max(largest, a);
    }
    const double lse = std::isfinite(r.lse[i]) ? std::fabs(r.lse[i]) : 0.0;
    s.row_loss[i] = total * (lse + max_abs) + p.z_loss * lse * lse;
    double upstream = 1.0;
    if (!p.upstream.empty()) upstream = p.upstream[p.reduction == ref::Reduction::none ? i : 0];
    const double f = denominator != 0 ? std::fabs(p.grad_scale * upstream / denominator) : 0.0;
    for (std::size_t c = 0; c < classes; ++c)
      s.grad[i * classes + c] = f * (total + largest + 2 * p.z_loss * lse);
    s.loss += s.row_loss[i];
  }
  if (mean) s.loss = denominator != 0 ? s.loss / std::fabs(denominator) : 0.0;
  return s;
}

Result run_cross_entropy(Device device, const CeInputs& in, Pass pass, RowPath path) {
  const ref::CrossEntropyProblem problem = ce_problem(in);
  const ref::CrossEntropyResult expected = ref::cross_entropy(problem);
  const CeScales scales = ce_scales(problem, expected);
  const std::int64_t n = in.rows * in.classes;
  const bool none = in.options.reduction == Reduction::none;
  const std::int64_t loss_count = none ? in.rows : 1;

  Buffer logits = upload(device, in.logits, in.dtype);
  Buffer targets;
  if (in.target_kind == TargetKind::probabilities) {
    targets = upload(device, in.probs, in.dtype);
  } else if (in.target_kind == TargetKind::class_index_i32) {
    targets = upload_plain(device, std::vector<std::int32_t>(in.targets.begin(), in.targets.end()));
  } else {
    targets = upload_plain(device, in.targets);
  }
  Buffer weights = upload(device, in.weights, DType::f32);
  Buffer upstream = upload(device, in.upstream, DType::f32);
  Buffer loss = poisoned(device, loss_count, DType::f32);
  Buffer lse = poisoned(device, in.rows, DType::f32);
  Buffer grad = poisoned(device, n, in.dtype);
  // What a forward call saves for backward: the statistics rounded to float, log_sum taking up
  // what the max's rounding lost.
  std::vector<double> saved_max(expected.max.size()), saved_log_sum(expected.max.size());
  std::vector<CrossEntropyRowStats> saved_stats_values(expected.max.size());
  for (std::size_t i = 0; i < expected.max.size(); ++i) {
    const float max = static_cast<float>(expected.max[i]);
    const double log_sum = std::isfinite(expected.max[i])
                               ? (expected.max[i] - max) + expected.log_sum[i]
                               : expected.log_sum[i];
    saved_stats_values[i] = CrossEntropyRowStats{max, static_cast<float>(log_sum)};
    saved_max[i] = saved_stats_values[i].max;
    saved_log_sum[i] = saved_stats_values[i].log_sum;
  }
  Buffer saved_stats = upload_plain(device, saved_stats_values);

  CrossEntropyArgs args;
  args.rows = in.rows;
  args.classes = in.classes;
  args.logits = logits.data();
  args.logits_dtype = in.dtype;
  args.targets = targets.data();
  args.target_kind = in.target_kind;
  args.target_dtype = in.dtype;
  args.class_weight = in.weights.empty() ? nullptr : weights.as<float>();
  args.grad_dtype = in.dtype;
  args.grad_scale = in.grad_scale;
  args.upstream_grad = in.upstream.empty() ? nullptr : upstream.as<float>();
  if (pass != Pass::backward) {
    args.loss = loss.as<float>();
    args.lse = lse.as<float>();
  }
  if (pass != Pass::forward) args.grad = grad.data();
  if (pass == Pass::backward) args.saved_stats = saved_stats.as<CrossEntropyRowStats>();

  Result result;
  {
    const RowPathScope scope(path);
    const Exec exec = exec_for(device);
    Status status;
    switch (pass) {
      case Pass::forward: status = cross_entropy_forward(args, in.options, exec); break;
      case Pass::backward: status = cross_entropy_backward(args, in.options, exec); break;
      case Pass::fused: status = cross_entropy_forward_backward(args, in.options, exec); break;
    }
    result.error = finish(device, status);
  }
  if (!result.error.empty()) return result;

  const Tolerance f32_row{0x1p-21, kRowAtol, 0, {}};
  if (pass != Pass::backward) {
    Tolerance t = for_output(DType::f32, f32_row);
    t.scale = none ? scales.row_loss : std::vector<double>{scales.loss};
    const std::vector<double> want =
        to_f32(none ? expected.row_loss : std::vector<double>{expected.loss});
    result.outputs.push_back(compare("loss", download(loss, loss_count, DType::f32), want, t));
    Tolerance tl = for_output(DType::f32, f32_row);
    tl.scale = scales.lse;
    result.outputs.push_back(
        compare("lse", download(lse, in.rows, DType::f32), to_f32(expected.lse), tl));
  }
  if (pass != Pass::forward) {
    const std::vector<double> want = pass == Pass::backward
                                         ? ref::cross_entropy_backward(problem, saved_max,
                                                                       saved_log_sum)
                                         : expected.grad;
    Tolerance t = for_output(in.dtype, f32_row);
    t.scale = scales.grad;
    result.outputs.push_back(
        compare("grad", download(grad, n, in.dtype), quantize(want, in.dtype), t));
  }
  return result;
}

// ---- softmax / log-softmax ------------------------------------------------------------------

const std::vector<std::string> kSoftmaxKinds = {"random", "outliers", "masked"};

std::vector<double> softmax_inputs(const std::string& kind, std::int64_t rows, std::int64_t cols,
                                   DType dtype, bool log) {
  Random random(seed_for(std::string(log ? "log_softmax/" : "softmax/") + kind, rows, cols, dtype));
  std::vector<double> x = uniform(static_cast<std::size_t>(rows * cols), -8.0, 8.0, random);
  auto at = [&](std::int64_t r, std::int64_t c) -> double& {
    return x[static_cast<std::size_t>(r * cols + c)];
  };
  if (kind == "outliers") {
    const double big = big_value(dtype);
    for (std::int64_t r = 0; r < rows; ++r) at(r, random.below(cols)) = r % 2 == 0 ? big : -big;
  } else if (kind == "masked") {
    for (std::int64_t r = 0; r < rows; ++r)
      for (std::int64_t c = 0; c < cols; ++c)
        if (random.uniform(0, 1) < 0.3) at(r, c) = -kInf;
    for (std::int64_t c = 0; c < cols; ++c) at(0, c) = -kInf;  // an all -inf row: 0s, not NaN
  }
  return quantize(x, dtype);
}

Result run_softmax(Device device, bool log, const std::string& kind, std::int64_t rows,
                   std::int64_t cols, DType dtype, bool backward, RowPath path) {
  const std::vector<double> x = softmax_inputs(kind, rows, cols, dtype, log);
  const auto n = rows * cols;
  const std::vector<double> y_exact = ref::softmax_forward(rows, cols, x, log);
  Result result;
  SoftmaxOptions options;
  options.log = log;
  const Exec exec = exec_for(device);

  if (!backward) {
    Buffer x_dev = upload(device, x, dtype);
    Buffer y_dev = poisoned(device, n, dtype);
    SoftmaxForwardArgs args;
    args.rows = rows;
    args.cols = cols;
    args.x = x_dev.data();
    args.x_dtype = dtype;
    args.y = y_dev.data();
    args.y_dtype = dtype;
    {
      const RowPathScope scope(path);
      result.error = finish(device, softmax_forward(args, options, exec));
    }
    if (!result.error.empty()) return result;
    // softmax: p <= 1 and the exponent's rounding error is relative to |x - max| <= the row's
    // spread, so the error is absolute in p (scale 1). log-softmax: (x - max) - log(sum), each
    // term rounded: scale |x| + |max| + log C per element.
    Tolerance t = for_output(dtype, {0x1p-21, kRowAtol, 0, {}});
    if (log) {
      t.scale.resize(static_cast<std::size_t>(n));
      for (std::int64_t r = 0; r < rows; ++r) {
        double max_abs = 0;
        for (std::int64_t c = 0; c < cols; ++c) {
          const double v = x[static_cast<std::size_t>(r * cols + c)];
          if (std::isfinite(v)) max_abs = std::max(max_abs, std::fabs(v));
        }
        for (std::int64_t c = 0; c < cols; ++c) {
          const double v = x[static_cast<std::size_t>(r * cols + c)];
          t.scale[static_cast<std::size_t>(r * cols + c)] =
              (std::isfinite(v) ? std::fabs(v) : 0.0) + max_abs +
              std::log(static_cast<double>(cols)) + 1.0;
        }
      }
    }
    result.outputs.push_back(compare("y", download(y_dev, n, dtype), quantize(y_exact, dtype), t));
    return result;
  }

  // Backward from the saved output as a forward pass would have stored it, with upstream
  // gradients uniform in [-2, 2].
  Random random(seed_for("softmax-dy", rows, cols, dtype));
  const std::vector<double> y = quantize(y_exact, dtype);
  const std::vector<double> dy =
      quantize(uniform(static_cast<std::size_t>(n), -2.0, 2.0, random), dtype);
  Buffer y_dev = upload(device, y, dtype);
  Buffer dy_dev = upload(device, dy, dtype);
  Buffer dx_dev = poisoned(device, n, dtype);
  SoftmaxBackwardArgs args;
  args.rows = rows;
  args.cols = cols;
  args.y = y_dev.data();
  args.y_dtype = dtype;
  args.dy = dy_dev.data();
  args.dy_dtype = dtype;
  args.dx = dx_dev.data();
  args.dx_dtype = dtype;
  {
    const RowPathScope scope(path);
    result.error = finish(device, softmax_backward(args, options, exec));
  }
  if (!result.error.empty()) return result;
  // softmax:     dx = y (dy - sum(y dy))     scale |y| (|dy| + sum |y dy|)
  // log-softmax: dx = dy - exp(y) sum(dy)    scale |dy| + exp(y) sum |dy|
  Tolerance t = for_output(dtype, {0x1p-21, kRowAtol, 0, {}});
  t.scale.resize(static_cast<std::size_t>(n));
  for (std::int64_t r = 0; r < rows; ++r) {
    double dot = 0;
    double sum = 0;
    for (std::int64_t c = 0; c < cols; ++c) {
      const auto i = static_cast<std::size_t>(r * cols + c);
      if (std::isfinite(y[i])) dot += std::fabs(y[i] * dy[i]);
      sum += std::fabs(dy[i]);
    }
    for (std::int64_t c = 0; c < cols; ++c) {
      const auto i = static_cast<std::size_t>(r * cols + c);
      t.scale[i] = log ? std::fabs(dy[i]) + std::exp(y[i]) * sum
                       : std::fabs(y[i]) * (std::fabs(dy[i]) + dot);
    }
  }
  const std::vector<double> want = ref::softmax_backward(rows, cols, y, dy, log);
  result.outputs.push_back(compare("dx", download(dx_dev, n, dtype), quantize(want, dtype), t));
  return result;
}

// ---- activations ----------------------------------------------------------------------------

constexpr Activation kActivations[] = {
    Activation::relu,     Activation::leaky_relu, Activation::tanh, Activation::sigmoid,
    Activation::gelu_erf, Activation::gelu_tanh,  Activation::silu};
constexpr float kAlpha = 0.01f;

ref::Activation to_ref(Activation a) {
  switch (a) {
    case Activation::relu: return ref::Activation::relu;
    case Activation::leaky_relu: return ref::Activation::leaky_relu;
    case Activation::tanh: return ref::Activation::tanh;
    case Activation::sigmoid: return ref::Activation::sigmoid;
    case Activation::gelu_erf: return ref::Activation::gelu_erf;
    case Activation::gelu_tanh: return ref::Activation::gelu_tanh;
    case Activation::silu: return ref::Activation::silu;
  }
  return ref::Activation::relu;
}

bool has_output_slope(Activation a) {
  return a == Activation::relu || a == Activation::leaky_relu || a == Activation::tanh ||
         a == Activation::sigmoid;
}

enum class ActPass { forward, from_input, from_output, mask };

const char* act_pass_name(ActPass pass) {
  switch (pass) {
    case ActPass::forward: return "forward";
    case ActPass::from_input: return "backward";
    case ActPass::from_output: return "backward(y)";
    case ActPass::mask: return "mask";
  }
  return "?";
}

const std::vector<std::string> kActivationKinds = {"random", "tails"};

std::vector<double> activation_inputs(const std::string& kind, Activation a, std::int64_t n,
                                      DType dtype) {
  Random random(seed_for(std::string("act/") + to_string(a) + "/" + kind, 1, n, dtype));
  std::vector<double> x = uniform(static_cast<std::size_t>(n), -6.0, 6.0, random);
  if (kind == "tails") {
    // |x| >= 20, where tanh and sigmoid saturate and the derivatives live in their far tails;
    // infinities only where the function has a limit there (gelu/silu form inf * 0).
    const bool infinities = has_output_slope(a);
    for (std::size_t i = 0; i < x.size(); ++i) {
      const double magnitude = random.uniform(20.0, 120.0);
      x[i] = (i % 2 == 0 ? 1.0 : -1.0) * magnitude;
      if (infinities && i % 97 == 5) x[i] = i % 2 == 0 ? kInf : -kInf;
    }
  }
  return quantize(x, dtype);
}

// f32 arithmetic, as the CUDA activation tests reason: a few ulps for products and exp/tanh of
// exact arguments; 2^-14 for the GELUs, whose tails multiply the argument's rounding error by up
// to ~2z^2; an absolute 2^-21 (times |dy| <= 2) where a derivative crosses zero by cancellation.
Tolerance activation_tolerance(Activation a, DType out, bool backward) {
  Tolerance t;
  switch (a) {
    case Activation::relu:
    case Activation::leaky_relu: t.rtol = 0x1p-23; break;
    case Activation::tanh:
    case Activation::sigmoid: t.rtol = 0x1p-19; break;
    case Activation::silu:
      t.rtol = 0x1p-19;
      if (backward) t.atol = kPointwiseAtol * 2;
      break;
    case Activation::gelu_erf:
    case Activation::gelu_tanh:
      t.rtol = 0x1p-14;
      if (backward) t.atol = kPointwiseAtol * 2;
      break;
  }
  return for_output(out, t);
}

Result run_activation(Device device, Activation a, ActPass pass, const std::string& kind,
                      std::int64_t n, DType dtype, PointPath path) {
  const std::int64_t offset = offset_of(path);
  const std::vector<double> x = activation_inputs(kind, a, n, dtype);
  const std::vector<double> y_exact = ref::activation_forward(to_ref(a), x, kAlpha);
  const ActivationOptions options{a, kAlpha};
  const Exec exec = exec_for(device);
  Result result;

  if (pass == ActPass::forward || pass == ActPass::mask) {
    Buffer x_dev = upload(device, x, dtype, offset);
    Buffer y_dev = poisoned(device, n, dtype, offset);
    Buffer mask_dev(device, static_cast<std::size_t>(relu_mask_words(n)) * 4);
    mask_dev.fill_bytes(0xA5);  // not a valid mask for any input: unwritten words show
    ActivationForwardArgs args;
    args.n = n;
    args.x = element(x_dev, dtype, offset);
    args.x_dtype = dtype;
    args.y = element(y_dev, dtype, offset);
    args.y_dtype = dtype;
    if (pass == ActPass::mask) args.relu_mask = mask_dev.as<std::uint32_t>();
    {
      const PointPathScope scope(path);
      result.error = finish(device, activation_forward(args, options, exec));
    }
    if (!result.error.empty()) return result;
    result.outputs.push_back(compare("y", download(y_dev, n, dtype, offset),
                                     quantize(y_exact, dtype),
                                     activation_tolerance(a, dtype, false)));
    if (pass != ActPass::mask) return result;

    // The mask, bit by bit, then a backward pass from it.
    std::vector<std::uint32_t> words(static_cast<std::size_t>(relu_mask_words(n)));
    mask_dev.download(words.data(), words.size() * 4);
    std::vector<double> got_bits(static_cast<std::size_t>(n));
    std::vector<double> want_bits(static_cast<std::size_t>(n));
    for (std::int64_t i = 0; i < n; ++i) {
      got_bits[static_cast<std::size_t>(i)] =
          (words[static_cast<std::size_t>(i / 32)] >> (i % 32)) & 1u;
      want_bits[static_cast<std::size_t>(i)] = x[static_cast<std::size_t>(i)] > 0 ? 1.0 : 0.0;
    }
    result.outputs.push_back(compare("mask", got_bits, want_bits, Tolerance{}));

    Random random(seed_for("mask-dy", 1, n, dtype));
    const std::vector<double> dy =
        quantize(uniform(static_cast<std::size_t>(n), -2.0, 2.0, random), dtype);
    Buffer dy_dev = upload(device, dy, dtype, offset);
    Buffer dx_dev = poisoned(device, n, dtype, offset);
    ActivationBackwardArgs back;
    back.n = n;
    back.saved_kind = SavedTensor::relu_mask;
    back.saved = mask_dev.data();
    back.dy = element(dy_dev, dtype, offset);
    back.dy_dtype = dtype;
    back.dx = element(dx_dev, dtype, offset);
    back.dx_dtype = dtype;
    {
      const PointPathScope scope(path);
      result.error = finish(device, activation_backward(back, options, exec));
    }
    if (!result.error.empty()) return result;
    const std::vector<double> want = ref::activation_backward_from_input(to_ref(a), x, dy, kAlpha);
    result.outputs.push_back(compare("dx", download(dx_dev, n, dtype, offset),
                                     quantize(want, dtype), activation_tolerance(a, dtype, true)));
    return result;
  }

  Random random(seed_for(std::string("act-dy/") + to_string(a), 1, n, dtype));
  const std::vector<double> dy =
      quantize(uniform(static_cast<std::size_t>(n), -2.0, 2.0, random), dtype);
  const bool from_output = pass == ActPass::from_output;
  // From the output, the saved tensor is what the forward pass stored: y rounded to the dtype.
  const std::vector<double> saved = from_output ? quantize(y_exact, dtype) : x;
  Buffer saved_dev = upload(device, saved, dtype, offset);
  Buffer dy_dev = upload(device, dy, dtype, offset);
  Buffer dx_dev = poisoned(device, n, dtype, offset);
  ActivationBackwardArgs args;
  args.n = n;
  args.saved_kind = from_output ? SavedTensor::output : SavedTensor::input;
  args.saved = element(saved_dev, dtype, offset);
  args.saved_dtype = dtype;
  args.dy = element(dy_dev, dtype, offset);
  args.dy_dtype = dtype;
  args.dx = element(dx_dev, dtype, offset);
  args.dx_dtype = dtype;
  {
    const PointPathScope scope(path);
    result.error = finish(device, activation_backward(args, options, exec));
  }
  if (!result.error.empty()) return result;
  const std::vector<double> want =
      from_output ? ref::activation_backward_from_output(to_ref(a), saved, dy, kAlpha)
                  : ref::activation_backward_from_input(to_ref(a), x, dy, kAlpha);
  result.outputs.push_back(compare("dx", download(dx_dev, n, dtype, offset), quantize(want, dtype),
                                   activation_tolerance(a, dtype, true)));
  return result;
}

// ---- BCE with logits ------------------------------------------------------------------------

const std::vector<std::string> kBceKinds = {"random", "x=+-120", "sum"};

Result run_bce(Device device, const std::string& kind, std::int64_t rows, std::int64_t cols,
               DType dtype, Pass pass, PointPath path) {
  const std::int64_t offset = offset_of(path);
  const auto n = static_cast<std::size_t>(rows * cols);
  Random random(seed_for("bce/" + kind, rows, cols, dtype));
  ref::BceProblem p;
  p.rows = rows;
  p.cols = cols;
  p.logits = uniform(n, -8.0, 8.0, random);
  p.targets = uniform(n, 0.0, 1.0, random);
  BceOptions options;
  float grad_scale = 1.0f;
  if (kind == "x=+-120") {
    // Far outside where exp(-x) is representable in float, with pos_weight and weights, hard
    // and soft targets; unreduced, with an upstream gradient per element.
    constexpr double kMagnitudes[] = {120.0, 20.0, 88.0, 104.0};
    for (std::size_t i = 0; i < n; ++i) {
      p.logits[i] = (i % 2 == 0 ? 1.0 : -1.0) * kMagnitudes[(i / 2) % 4];
      if (i % 3 != 2) p.targets[i] = static_cast<double>(i % 3);
    }
    p.pos_weight = to_f32(uniform(static_cast<std::size_t>(cols), 0.5, 4.0, random));
    p.weight = quantize(uniform(n, 0.0, 2.0, random), dtype);
    options.reduction = Reduction::none;
    p.upstream = to_f32(uniform(n, -2.0, 2.0, random));
  } else if (kind == "sum") {
    options.reduction = Reduction::sum;
    grad_scale = 0.25f;
  }
  p.logits = quantize(p.logits, dtype);
  p.targets = quantize(p.targets, dtype);
  p.reduction = to_ref(options.reduction);
  p.grad_scale = grad_scale;
  const ref::BceResult expected = ref::bce_with_logits(p);
  const bool none = options.reduction == Reduction::none;
  const std::int64_t loss_count = none ? static_cast<std::int64_t>(n) : 1;

  Buffer logits = upload(device, p.logits, dtype, offset);
  Buffer targets = upload(device, p.targets, dtype, offset);
  Buffer weight = upload(device, p.weight, dtype, offset);
  Buffer pos_weight = upload(device, p.pos_weight, DType::f32);
  Buffer upstream = upload(device, p.upstream, DType::f32);
  Buffer loss = poisoned(device, loss_count, DType::f32);
  Buffer grad = poisoned(device, static_cast<std::int64_t>(n), dtype, offset);
  BceArgs args;
  args.rows = rows;
  args.cols = cols;
  args.logits = element(logits, dtype, offset);
  args.logits_dtype = dtype;
  args.targets = element(targets, dtype, offset);
  args.target_dtype = dtype;
  args.pos_weight = p.pos_weight.empty() ? nullptr : pos_weight.as<float>();
  args.weight = p.weight.empty() ? nullptr : element(weight, dtype, offset);
  args.weight_dtype = dtype;
  args.grad_dtype = dtype;
  args.grad_scale = grad_scale;
  args.upstream_grad = p.upstream.empty() ? nullptr : upstream.as<float>();
  if (pass != Pass::backward) args.loss = loss.as<float>();
  if (pass != Pass::forward) args.grad = element(grad, dtype, offset);
  Result result;
  {
    const PointPathScope scope(path);
    const Exec exec = exec_for(device);
    Status status;
    switch (pass) {
      case Pass::forward: status = bce_with_logits_forward(args, options, exec); break;
      case Pass::backward: status = bce_with_logits_backward(args, options, exec); break;
      case Pass::fused: status = bce_with_logits_forward_backward(args, options, exec); break;
    }
    result.error = finish(device, status);
  }
  if (!result.error.empty()) return result;
  if (pass != Pass::backward) {
    // Non-negative terms: relative error per element; sums add float roundings (2^-18).
    Tolerance t = for_output(DType::f32, {none ? 0x1p-19 : 0x1p-18, 0, 0, {}});
    const std::vector<double> want =
        to_f32(none ? expected.elem_loss : std::vector<double>{expected.loss});
    result.outputs.push_back(compare("loss", download(loss, loss_count, DType::f32), want, t));
  }
  if (pass != Pass::forward) {
    // The two gradient terms cancel near the optimum: the error is relative to their size,
    // |w| max(1, pw) |upstream| grad_scale / denominator.
    Tolerance t = for_output(dtype, {0x1p-19, kPointwiseAtol, 0, {}});
    t.scale.resize(n);
    const double denominator = options.reduction == Reduction::mean ? static_cast<double>(n) : 1.0;
    for (std::size_t i = 0; i < n; ++i) {
      const double w = p.weight.empty() ? 1.0 : std::fabs(p.weight[i]);
      const double pw = p.pos_weight.empty()
                            ? 1.0
                            : std::max(1.0, p.pos_weight[i % static_cast<std::size_t>(cols)]);
      const double up = p.upstream.empty() ? 1.0 : std::fabs(p.upstream[none ? i : 0]);
      t.scale[i] = w * pw * up * grad_scale / denominator;
    }
    result.outputs.push_back(compare("grad",
                                     download(grad, static_cast<std::int64_t>(n), dtype, offset),
                                     quantize(expected.grad, dtype), t));
  }
  return result;
}

// ---- MSE ------------------------------------------------------------------------------------

const std::vector<std::string> kMseKinds = {"random", "large"};

Result run_mse(Device device, const std::string& kind, std::int64_t count, DType dtype, Pass pass,
               PointPath path) {
  const std::int64_t offset = offset_of(path);
  const auto n = static_cast<std::size_t>(count);
  Random random(seed_for("mse/" + kind, 1, count, dtype));
  ref::MseProblem p;
  p.n = count;
  MseOptions options;
  if (kind == "large") {
    // Squares near float's range for f32/bf16 inputs; unreduced, with an upstream gradient.
    const double big = dtype == DType::f16 ? 6.0e4 : 1.0e18;
    p.input = uniform(n, -big, big, random);
    p.target = uniform(n, -big, big, random);
    options.reduction = Reduction::none;
    p.upstream = to_f32(uniform(n, -2.0, 2.0, random));
  } else {
    p.input = uniform(n, -4.0, 4.0, random);
    p.target = uniform(n, -4.0, 4.0, random);
  }
  p.input = quantize(p.input, dtype);
  p.target = quantize(p.target, dtype);
  p.reduction = to_ref(options.reduction);
  const ref::MseResult expected = ref::mse(p);
  const bool none = options.reduction == Reduction::none;
  const std::int64_t loss_count = none ? count : 1;

  Buffer input = upload(device, p.input, dtype, offset);
  Buffer target = upload(device, p.target, dtype, offset);
  Buffer upstream = upload(device, p.upstream, DType::f32);
  Buffer loss = poisoned(device, loss_count, DType::f32);
  Buffer grad = poisoned(device, count, dtype, offset);
  MseArgs args;
  args.n = count;
  args.input = element(input, dtype, offset);
  args.input_dtype = dtype;
  args.target = element(target, dtype, offset);
  args.target_dtype = dtype;
  args.grad_dtype = dtype;
  args.upstream_grad = p.upstream.empty() ? nullptr : upstream.as<float>();
  if (pass != Pass::backward) args.loss = loss.as<float>();
  if (pass != Pass::forward) args.grad = element(grad, dtype, offset);
  Result result;
  {
    const PointPathScope scope(path);
    const Exec exec = exec_for(device);
    Status status;
    switch (pass) {
      case Pass::forward: status = mse_forward(args, options, exec); break;
      case Pass::backward: status = mse_backward(args, options, exec); break;
      case Pass::fused: status = mse_forward_backward(args, options, exec); break;
    }
    result.error = finish(device, status);
  }
  if (!result.error.empty()) return result;
  if (pass != Pass::backward) {
    // (x - t)^2 is two float roundings; a sum of non-negative terms adds a few more.
    Tolerance t = for_output(DType::f32, {none ? 0x1p-21 : 0x1p-19, 0, 0, {}});
    const std::vector<double> want =
        to_f32(none ? expected.elem_loss : std::vector<double>{expected.loss});
    result.outputs.push_back(compare("loss", download(loss, loss_count, DType::f32), want, t));
  }
  if (pass != Pass::forward) {
    Tolerance t = for_output(dtype, {0x1p-20, 0, 0, {}});
    result.outputs.push_back(
        compare("grad", download(grad, count, dtype, offset), quantize(expected.grad, dtype), t));
  }
  return result;
}

// ---- the case list --------------------------------------------------------------------------

std::vector<Case> build_cases(Device device, const CommonOptions& options) {
  std::vector<Case> cases;
  const Depth depth = options.depth;
  const std::vector<DType> dtypes = dtypes_for(depth);
  auto wanted = [&](const std::string& op) { return op_selected(options.op, op); };
  auto add = [&](std::string op, std::string pass, DType dtype, std::string shape,
                 std::string inputs, std::string path, std::function<Result()> run) {
    cases.push_back({device, std::move(op), std::move(pass), std::move(shape), std::move(inputs),
                     std::move(path), dtype, std::move(run)});
  };
  const std::vector<std::string> smoke_ce = {"random", "outliers", "options"};
  auto kinds_at = [depth](const std::vector<std::string>& all, std::size_t smoke_count) {
    if (depth != Depth::smoke) return all;
    return std::vector<std::string>(
        all.begin(), all.begin() + static_cast<std::ptrdiff_t>(std::min(smoke_count, all.size())));
  };

  if (wanted("cross_entropy")) {
    Selector selector(depth);
    const std::vector<std::string> kinds = depth == Depth::smoke ? smoke_ce : kCeKinds;
    for (Pass pass : {Pass::forward, Pass::backward, Pass::fused})
      for (DType dtype : dtypes)
        for (const std::string& kind : kinds)
          for (const RowShape& s :
               selector.pick(row_shapes(device, depth, false), kind == "random")) {
            add("cross_entropy", pass_name(pass), dtype, shape_text(s.rows, s.cols), kind,
                row_path_name(s.path, kRowOpCrossEntropy, s.cols, dtype), [=] {
                  return run_cross_entropy(device, ce_inputs(kind, s.rows, s.cols, dtype), pass,
                                           s.path);
                });
          }
  }
  for (bool log : {false, true}) {
    const std::string op = log ? "log_softmax" : "softmax";
    if (!wanted(op)) continue;
    Selector selector(depth);
    for (bool backward : {false, true})
      for (DType dtype : dtypes)
        for (const std::string& kind : kinds_at(kSoftmaxKinds, 2))
          for (const RowShape& s :
               selector.pick(row_shapes(device, depth, backward), kind == "random")) {
            const int row_op = backward ? kRowOpSoftmaxBackward : kRowOpSoftmaxForward;
            add(op, backward ? "backward" : "forward", dtype, shape_text(s.rows, s.cols), kind,
                row_path_name(s.path, row_op, s.cols, dtype), [=] {
                  return run_softmax(device, log, kind, s.rows, s.cols, dtype, backward, s.path);
                });
          }
  }
  for (Activation a : kActivations) {
    const std::string op = to_string(a);
    if (!wanted(op)) continue;
    Selector selector(depth);
    std::vector<ActPass> passes = {ActPass::forward, ActPass::from_input};
    if (has_output_slope(a)) passes.push_back(ActPass::from_output);
    if (a == Activation::relu) passes.push_back(ActPass::mask);
    for (ActPass pass : passes)
      for (DType dtype : dtypes)
        for (const std::string& kind : kActivationKinds)
          for (const PointShape& s :
               selector.pick(point_shapes(device, depth, false), kind == "random")) {
            add(op, act_pass_name(pass), dtype, shape_text(1, s.cols), kind,
                point_path_name(s.path),
                [=] { return run_activation(device, a, pass, kind, s.cols, dtype, s.path); });
          }
  }
  if (wanted("bce_with_logits")) {
    Selector selector(depth);
    for (Pass pass : {Pass::forward, Pass::backward, Pass::fused})
      for (DType dtype : dtypes)
        for (const std::string& kind : kinds_at(kBceKinds, 2))
          for (const PointShape& s :
               selector.pick(point_shapes(device, depth, true), kind == "random")) {
            add("bce_with_logits", pass_name(pass), dtype, shape_text(s.rows, s.cols), kind,
                point_path_name(s.path),
                [=] { return run_bce(device, kind, s.rows, s.cols, dtype, pass, s.path); });
          }
  }
  if (wanted("mse")) {
    Selector selector(depth);
    for (Pass pass : {Pass::forward, Pass::backward, Pass::fused})
      for (DType dtype : dtypes)
        for (const std::string& kind : kMseKinds)
          for (const PointShape& s :
               selector.pick(point_shapes(device, depth, false), kind == "random")) {
            add("mse", pass_name(pass), dtype, shape_text(1, s.cols), kind, point_path_name(s.path),
                [=] { return run_mse(device, kind, s.cols, dtype, pass, s.path); });
          }
  }
  return cases;
}

std::string ratio_text(double ratio) { return std::isinf(ratio) ? "inf" : format("%.2f", ratio); }

std::string device_heading(Device device) {
  if (device == Device::cpu) return "cpu (the CPU path)";
  const bench::DeviceDescription d = bench::describe_device(Device::cuda);
  return "cuda: " + d.name + (bench::simulated_cuda() ? " (the simulator)" : "");
}

}  // namespace

int validate(const CommonOptions& options, bool failures_only) {
  const auto started = std::chrono::steady_clock::now();
  std::size_t total_cases = 0;
  std::size_t total_failures = 0;
  std::vector<std::string> failure_notes;
  for (Device device : options.devices) {
    std::vector<Case> cases;
    try {
      cases = build_cases(device, options);
    } catch (const std::exception& error) {
      std::fprintf(stderr, "actloss validate: %s: %s\n", to_string(device), error.what());
      return 2;
    }
    Table table({{"op"},
                 {"pass"},
                 {"dtype"},
                 {"shape"},
                 {"inputs"},
                 {"path"},
                 {"output"},
                 {"max abs err", Table::Align::right},
                 {"max rel err", Table::Align::right},
                 {"rtol", Table::Align::right},
                 {"atol", Table::Align::right},
                 {"err/tol", Table::Align::right},
                 {"result"}});
    Progress progress(cases.size());
    progress.milestone(
        format("validating %zu cases on %s", cases.size(), device_heading(device).c_str()));
    std::string last_op;
    std::size_t failures = 0;
    for (std::size_t i = 0; i < cases.size(); ++i) {
      const Case& c = cases[i];
      if (c.op != last_op) {
        last_op = c.op;
        if (i > 0)
          progress.milestone(
              format("  %s done (%zu/%zu)", cases[i - 1].op.c_str(), i, cases.size()));
      }
      progress.update(i,
                      format("%s %s %s %s %s %s", c.op.c_str(), c.pass.c_str(), to_string(c.dtype),
                             c.shape.c_str(), c.inputs.c_str(), c.path.c_str()));
      Result result;
      try {
        result = c.run();
      } catch (const std::exception& error) {
        result.error = error.what();
      }
      bool pass = result.error.empty();
      const Comparison* worst = nullptr;
      for (const Comparison& o : result.outputs) {
        pass = pass && o.pass;
        if (worst == nullptr || o.worst > worst->worst || (!o.pass && worst->pass)) worst = &o;
      }
      if (!pass) {
        ++failures;
        const std::string what =
            format("%s %s %s %s %s %s %s", to_string(device), c.op.c_str(), c.pass.c_str(),
                   to_string(c.dtype), c.shape.c_str(), c.inputs.c_str(), c.path.c_str());
        if (!result.error.empty()) {
          failure_notes.push_back(what + ": " + result.error);
        } else {
          for (const Comparison& o : result.outputs)
            if (!o.pass) failure_notes.push_back(what + ": " + o.first_failure);
        }
      }
      if (failures_only && pass) continue;
      std::vector<std::string> row = {c.op, c.pass, to_string(c.dtype), c.shape, c.inputs, c.path};
      if (worst != nullptr && result.error.empty()) {
        row.insert(row.end(),
                   {worst->output, format("%.2e", worst->max_abs), format("%.2e", worst->max_rel),
                    worst->rtol, worst->atol, ratio_text(worst->worst), pass ? "pass" : "FAIL"});
      } else {
        row.insert(row.end(), {"-", "-", "-", "-", "-", "-", "ERROR"});
      }
      table.add_row(std::move(row));
    }
    if (!cases.empty())
      progress.milestone(
          format("  %s done (%zu/%zu)", last_op.c_str(), cases.size(), cases.size()));
    progress.finish();
    std::printf("\n== %s ==\n", device_heading(device).c_str());
    if (table.rows() > 0) {
      table.print(stdout);
    } else {
      std::printf("(no %s)\n", failures_only ? "failures" : "cases");
    }
    std::printf("%zu cases, %zu failed\n", cases.size(), failures);
    total_cases += cases.size();
    total_failures += failures;
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  std::printf(
      "\nallowed error per element: rtol |expected| + atol (*s: times the size of the terms that "
      "cancel, per row or element; see tools/validate.cpp)\n"
      "max rel err: over elements at least 1e-3 of the output's largest; err/tol: the largest "
      "error over its allowance (> 1 fails); output: the one with the largest err/tol\n");
  if (!failure_notes.empty()) {
    std::printf("\nfailures:\n");
    for (const std::string& note : failure_notes) std::printf("  %s\n", note.c_str());
  }
  std::printf("\n%s: %zu cases, %zu failed, %.1f s\n", total_failures == 0 ? "PASS" : "FAIL",
              total_cases, total_failures, seconds);
  return total_failures == 0 ? 0 : 1;
}

}  // namespace actloss::tool
