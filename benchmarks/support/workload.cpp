#include "benchmarks/support/workload.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <utility>

#include <actloss/actloss.h>

#include "benchmarks/support/memory.h"
#include "benchmarks/support/peers.h"

namespace actloss::bench {
namespace {

// ---- the problem sets -----------------------------------------------------------------------

// Vocabulary sizes that matter in practice: small heads, GPT-2 (50257, odd on purpose), Llama 2
// (32000), Llama 3 (128256), Gemma (262144), and powers of two in between.
constexpr std::int64_t kClasses[] = {256, 1024, 4096, 32000, 50257, 128256, 262144};

constexpr std::int64_t kMiB = std::int64_t{1} << 20;
constexpr std::int64_t kGiB = std::int64_t{1} << 30;

constexpr Activation kActivations[] = {
    Activation::relu,     Activation::leaky_relu, Activation::tanh, Activation::sigmoid,
    Activation::gelu_erf, Activation::gelu_tanh,  Activation::silu};

// BCE's matrices have this many columns (a multi-label head); the element count sets the rows.
constexpr std::int64_t kBceCols = 1024;

struct Sizes {
  std::int64_t row_tensor_bytes;       // target size of one [rows x classes] tensor
  std::vector<std::int64_t> classes;   // row-wise ops
  std::vector<std::int64_t> elements;  // elementwise ops
  std::vector<DType> dtypes;           // every problem
  bool f16_subset;                     // plus f16 for a few problems
};

Sizes sizes_for(Device device, SetSize size) {
  const std::vector<std::int64_t> all_classes(std::begin(kClasses), std::end(kClasses));
  if (size == SetSize::sim) return {256 * 1024, {256, 4096, 32000}, {1 << 16}, {DType::f32}, false};
  if (device == Device::cuda) {
    if (size == SetSize::quick) {
      return {256 * kMiB, {1024, 32000, 128256}, {std::int64_t{1} << 24}, {DType::bf16}, false};
    }
    return {kGiB, all_classes, {1 << 20, 1 << 24, 1 << 28}, {DType::f32, DType::bf16}, true};
  }
  // CPU: the CPU path is the float64 reference for now (tens of ns per element, compute-bound),
  // so 16 MiB tensors say as much as larger ones would, and the set takes about a minute. It runs
  // on the GPU machine too, inside the device check's time.
  if (size == SetSize::quick) return {4 * kMiB, {1024, 32000}, {1 << 20}, {DType::f32}, false};
  return {16 * kMiB, all_classes, {1 << 20, 1 << 24}, {DType::f32, DType::bf16}, false};
}

std::int64_t rows_for(std::int64_t classes, DType dtype, std::int64_t tensor_bytes) {
  const double rows =
      static_cast<double>(tensor_bytes) / static_cast<double>(classes * dtype_size(dtype));
  return std::max<std::int64_t>(1, std::llround(rows));
}

Problem row_problem(Op op, Pass pass, DType dtype, std::int64_t classes, std::int64_t bytes) {
  Problem p;
  p.op = op;
  p.pass = pass;
  p.dtype = dtype;
  p.cols = classes;
  p.rows = rows_for(classes, dtype, bytes);
  return p;
}

Problem elementwise_problem(Op op, Activation activation, Pass pass, DType dtype, std::int64_t n) {
  Problem p;
  p.op = op;
  p.activation = activation;
  p.pass = pass;
  p.dtype = dtype;
  if (op == Op::bce_with_logits && n >= kBceCols) {
    p.rows = n / kBceCols;
    p.cols = kBceCols;
  } else {
    p.rows = 1;
    p.cols = n;
  }
  return p;
}

void add_full(std::vector<Problem>& out, const Sizes& s) {
  const Pass loss_passes[] = {Pass::forward, Pass::backward, Pass::fused};
  const Pass row_passes[] = {Pass::forward, Pass::backward};
  for (DType dtype : s.dtypes) {
    for (std::int64_t c : s.classes)
      for (Pass pass : loss_passes)
        out.push_back(row_problem(Op::cross_entropy, pass, dtype, c, s.row_tensor_bytes));
    for (Op op : {Op::softmax, Op::log_softmax})
      for (std::int64_t c : s.classes)
        for (Pass pass : row_passes)
          out.push_back(row_problem(op, pass, dtype, c, s.row_tensor_bytes));
    for (Activation a : kActivations)
      for (std::int64_t n : s.elements)
        for (Pass pass : row_passes)
          out.push_back(elementwise_problem(Op::activation, a, pass, dtype, n));
    for (std::int64_t n : s.elements)
      for (Pass pass : {Pass::forward_mask, Pass::backward_mask})
        out.push_back(elementwise_problem(Op::activation, Activation::relu, pass, dtype, n));
    for (Op op : {Op::bce_with_logits, Op::mse})
      for (std::int64_t n : s.elements)
        for (Pass pass : loss_passes)
          out.push_back(elementwise_problem(op, Activation::relu, pass, dtype, n));
    for (std::int64_t n : s.elements)
      for (Pass pass : row_passes)
        out.push_back(elementwise_problem(Op::swiglu, Activation::relu, pass, dtype, n));
  }
  if (!s.f16_subset) return;
  // f16 where it is still common: the fused loss, the forward softmax, and SiLU (gated MLPs).
  for (std::int64_t c : s.classes) {
    out.push_back(row_problem(Op::cross_entropy, Pass::fused, DType::f16, c, s.row_tensor_bytes));
    out.push_back(row_problem(Op::softmax, Pass::forward, DType::f16, c, s.row_tensor_bytes));
  }
  for (std::int64_t n : s.elements)
    for (Pass pass : row_passes)
      out.push_back(elementwise_problem(Op::activation, Activation::silu, pass, DType::f16, n));
}

// One or two problems per family, all at the set's middle sizes.
void add_quick(std::vector<Problem>& out, const Sizes& s) {
  for (DType dtype : s.dtypes) {
    for (std::int64_t c : s.classes) {
      out.push_back(row_problem(Op::cross_entropy, Pass::fused, dtype, c, s.row_tensor_bytes));
      out.push_back(row_problem(Op::softmax, Pass::forward, dtype, c, s.row_tensor_bytes));
    }
    const std::int64_t c = s.classes.back();
    out.push_back(row_problem(Op::log_softmax, Pass::backward, dtype, c, s.row_tensor_bytes));
    for (std::int64_t n : s.elements) {
      out.push_back(elementwise_problem(Op::activation, Activation::relu, Pass::forward, dtype, n));
      out.push_back(
          elementwise_problem(Op::activation, Activation::gelu_tanh, Pass::backward, dtype, n));
      out.push_back(
          elementwise_problem(Op::bce_with_logits, Activation::relu, Pass::fused, dtype, n));
      out.push_back(elementwise_problem(Op::mse, Activation::relu, Pass::fused, dtype, n));
      out.push_back(elementwise_problem(Op::swiglu, Activation::relu, Pass::backward, dtype, n));
    }
  }
}

// ---- operands -------------------------------------------------------------------------------

// Patterns repeat every 2^18 elements: enough variety for branchy code paths to see every case,
// small enough to generate on the host in milliseconds.
constexpr std::size_t kPatternElements = std::size_t{1} << 18;

Buffer uniform_tensor(Device device, std::int64_t count, DType dtype, double low, double high,
                      std::uint64_t seed) {
  Buffer buffer(device, static_cast<std::size_t>(count * dtype_size(dtype)));
  const std::size_t pattern =
      std::min<std::size_t>(static_cast<std::size_t>(count), kPatternElements);
  fill_tiled(buffer, uniform_pattern(pattern, dtype, low, high, seed));
  return buffer;
}

Buffer f32_tensor(Device device, std::int64_t count, double low, double high, std::uint64_t seed) {
  return uniform_tensor(device, count, DType::f32, low, high, seed);
}

Buffer class_targets(Device device, std::int64_t rows, std::int64_t classes, std::uint64_t seed) {
  Buffer buffer(device, static_cast<std::size_t>(rows) * sizeof(std::int64_t));
  const std::size_t pattern =
      std::min<std::size_t>(static_cast<std::size_t>(rows), kPatternElements);
  fill_tiled(buffer, class_pattern(pattern, classes, seed));
  return buffer;
}

Buffer zeroed(Device device, std::int64_t bytes) {
  Buffer buffer(device, static_cast<std::size_t>(bytes));
  // Written once so that the first timed run does not pay for first-touch page faults (CPU).
  buffer.fill_bytes(0);
  return buffer;
}

Buffer output_tensor(Device device, std::int64_t count, DType dtype) {
  return zeroed(device, count * dtype_size(dtype));
}

Buffer mask_words(Device device, std::int64_t n, std::uint64_t seed) {
  const std::int64_t words = relu_mask_words(n);
  Buffer buffer(device, static_cast<std::size_t>(words) * 4);
  std::vector<std::uint8_t> pattern(
      std::min<std::size_t>(static_cast<std::size_t>(words), kPatternElements) * 4);
  Random random(seed);
  for (std::uint8_t& byte : pattern) byte = static_cast<std::uint8_t>(random.next());
  fill_tiled(buffer, pattern);
  return buffer;
}

Exec exec_for(Device device) {
  Exec exec;
  exec.device = device;
  if (device == Device::cuda) exec.stream = bench_stream();
  return exec;
}

void check(const Status& status, const char* what) {
  if (!status.ok()) throw std::runtime_error(std::string(what) + ": " + status.message());
}

std::uint64_t seed_of(int slot, int operand) {
  return 0x5EEDull * 1000 + static_cast<std::uint64_t>(slot) * 16 +
         static_cast<std::uint64_t>(operand);
}

// ---- cross-entropy --------------------------------------------------------------------------

class CrossEntropyWorkload final : public Workload {
 public:
  CrossEntropyWorkload(const Case& c, int slots) : Workload(slots), case_(c) {
    const Problem& p = c.problem;
    const Device d = c.device;
    const bool unfused = c.impl == Impl::unfused;
    const bool thrust = c.impl == Impl::thrust_cub;
    const double log_c = std::log(static_cast<double>(p.cols));
    for (int s = 0; s < slots; ++s) {
      Slot slot;
      slot.logits = uniform_tensor(d, p.elements(), p.dtype, -4.0, 4.0, seed_of(s, 0));
      // Probabilities that sum to about 1 a row; the time does not depend on their values.
      slot.targets = p.probability_targets
                         ? uniform_tensor(d, p.elements(), p.dtype, 0.0,
                                          2.0 / static_cast<double>(p.cols), seed_of(s, 1))
                         : class_targets(d, p.rows, p.cols, seed_of(s, 1));
      slot.loss = output_tensor(d, 1, DType::f32);
      // Forward saves the row statistics for backward (CrossEntropyRowStats: the max and the log
      // of the sum, both about 4 and log C for these logits); forward_backward writes lse. The
      // Thrust/CUB peer keeps its own two floats a row (max, sum) in every pass; in backward,
      // these values serve it as well (positive sums: finite gradients).
      if (p.pass == Pass::backward) {
        slot.stats = f32_tensor(d, 2 * p.rows, log_c, log_c + 4.0, seed_of(s, 2));
      } else if (p.pass == Pass::forward || thrust) {
        slot.stats = output_tensor(d, 2 * p.rows, DType::f32);
      } else if (!unfused) {
        slot.lse = output_tensor(d, p.rows, DType::f32);
      }
      if (p.pass != Pass::forward) slot.grad = output_tensor(d, p.elements(), p.dtype);
      if (unfused) slot.scratch = output_tensor(d, p.elements(), p.dtype);
      slots_.push_back(std::move(slot));
    }
#if ACTLOSS_BENCH_THRUST
    // CUB's temporary storage, once for every slot: the runs are queued one after another on
    // one stream.
    if (thrust) temp_ = Buffer(d, peers::thrust_cross_entropy_temp_bytes(thrust_args(0)));
#endif
  }

  void run(int s) override {
    Slot& slot = slots_.at(static_cast<std::size_t>(s));
    const Problem& p = case_.problem;
    if (case_.impl == Impl::unfused) {
#if ACTLOSS_BENCH_UNFUSED
      peers::unfused_cross_entropy(slot.logits.data(), p.dtype, slot.targets.as<std::int64_t>(),
                                   p.rows, p.cols, slot.scratch.data(), slot.loss.as<float>(),
                                   slot.grad.data(), bench_stream());
      return;
#else
      throw std::runtime_error("the unfused baseline is built with nvcc only");
#endif
    }
    if (case_.impl == Impl::thrust_cub) {
#if ACTLOSS_BENCH_THRUST
      using peers::ThrustPass;
      const ThrustPass pass = p.pass == Pass::forward    ? ThrustPass::forward
                              : p.pass == Pass::backward ? ThrustPass::backward
                                                         : ThrustPass::forward_backward;
      (void)peers::thrust_cross_entropy(pass, thrust_args(s), bench_stream());
      return;
#else
      throw std::runtime_error("the Thrust/CUB baseline is built with nvcc only");
#endif
    }
    CrossEntropyArgs args;
    args.rows = p.rows;
    args.classes = p.cols;
    args.logits = slot.logits.data();
    args.logits_dtype = p.dtype;
    args.targets = slot.targets.data();
    args.target_kind = TargetKind::class_index_i64;
    if (p.probability_targets) {
      args.target_kind = TargetKind::probabilities;
      args.target_dtype = p.dtype;
      args.target_row_stride = p.cols;
    }
    args.loss = slot.loss.as<float>();
    args.grad = slot.grad.data();
    args.grad_dtype = p.dtype;
    const Exec exec = exec_for(case_.device);
    CrossEntropyOptions options;
    options.label_smoothing = cross_entropy_label_smoothing();
    switch (p.pass) {
      case Pass::forward:
        args.stats = slot.stats.as<CrossEntropyRowStats>();
        check(cross_entropy_forward(args, options, exec), "cross_entropy_forward");
        break;
      case Pass::backward:
        args.saved_stats = slot.stats.as<CrossEntropyRowStats>();
        check(cross_entropy_backward(args, options, exec), "cross_entropy_backward");
        break;
      default:
        args.lse = slot.lse.as<float>();
        check(cross_entropy_forward_backward(args, options, exec),
              "cross_entropy_forward_backward");
        break;
    }
  }

 private:
  struct Slot {
    Buffer logits, targets, lse, stats, loss, grad, scratch;
  };

#if ACTLOSS_BENCH_THRUST
  // Slot s's buffers as the Thrust/CUB peer takes them; its stats are [max of every row | sum of
  // every row].
  peers::ThrustCrossEntropyArgs thrust_args(int s) const {
    const Slot& slot = slots_.at(static_cast<std::size_t>(s));
    const Problem& p = case_.problem;
    peers::ThrustCrossEntropyArgs args;
    args.logits = slot.logits.data();
    args.dtype = p.dtype;
    args.targets = slot.targets.as<std::int64_t>();
    args.rows = p.rows;
    args.classes = p.cols;
    args.row_max = slot.stats.as<float>();
    args.row_sum = slot.stats.as<float>() + p.rows;
    args.grad = slot.grad.data();
    args.temp = temp_.data();
    args.temp_bytes = temp_.bytes();
    return args;
  }
#endif

  Case case_;
  std::vector<Slot> slots_;
  Buffer temp_;
};

// ---- softmax / log-softmax ------------------------------------------------------------------

class SoftmaxWorkload final : public Workload {
 public:
  SoftmaxWorkload(const Case& c, int slots) : Workload(slots), case_(c) {
    const Problem& p = c.problem;
    const Device d = c.device;
    const bool log = p.op == Op::log_softmax;
    for (int s = 0; s < slots; ++s) {
      Slot slot;
      if (p.pass == Pass::forward) {
        slot.in = uniform_tensor(d, p.elements(), p.dtype, -4.0, 4.0, seed_of(s, 0));
      } else {
        // A plausible forward output: probabilities, or log-probabilities.
        const double low = log ? -12.0 : 0.0;
        const double high = log ? 0.0 : 2.0 / static_cast<double>(p.cols);
        slot.in = uniform_tensor(d, p.elements(), p.dtype, low, high, seed_of(s, 0));
        slot.dy = uniform_tensor(d, p.elements(), p.dtype, -1.0, 1.0, seed_of(s, 1));
      }
      slot.out = output_tensor(d, p.elements(), p.dtype);
      slots_.push_back(std::move(slot));
    }
  }

  void run(int s) override {
    Slot& slot = slots_.at(static_cast<std::size_t>(s));
    const Problem& p = case_.problem;
    const bool log = p.op == Op::log_softmax;
    const bool forward = p.pass == Pass::forward;
    switch (case_.impl) {
      case Impl::cudnn:
#if ACTLOSS_BENCH_CUDNN
        if (forward) {
          peers::cudnn_softmax_forward(log, p.dtype, p.rows, p.cols, slot.in.data(),
                                       slot.out.data(), bench_stream());
        } else {
          peers::cudnn_softmax_backward(log, p.dtype, p.rows, p.cols, slot.in.data(),
                                        slot.dy.data(), slot.out.data(), bench_stream());
        }
        return;
#else
        break;
#endif
      case Impl::onednn:
#if ACTLOSS_BENCH_ONEDNN
        if (forward) {
          peers::onednn_softmax_forward(log, p.dtype, p.rows, p.cols, slot.in.data(),
                                        slot.out.data());
        } else {
          peers::onednn_softmax_backward(log, p.dtype, p.rows, p.cols, slot.in.data(),
                                         slot.dy.data(), slot.out.data());
        }
        return;
#else
        break;
#endif
      case Impl::actloss: {
        SoftmaxOptions options;
        options.log = log;
        const Exec exec = exec_for(case_.device);
        if (forward) {
          SoftmaxForwardArgs args;
          args.rows = p.rows;
          args.cols = p.cols;
          args.x = slot.in.data();
          args.x_dtype = p.dtype;
          args.y = slot.out.data();
          args.y_dtype = p.dtype;
          check(softmax_forward(args, options, exec), "softmax_forward");
        } else {
          SoftmaxBackwardArgs args;
          args.rows = p.rows;
          args.cols = p.cols;
          args.y = slot.in.data();
          args.y_dtype = p.dtype;
          args.dy = slot.dy.data();
          args.dy_dtype = p.dtype;
          args.dx = slot.out.data();
          args.dx_dtype = p.dtype;
          check(softmax_backward(args, options, exec), "softmax_backward");
        }
        return;
      }
      default: break;
    }
    throw std::runtime_error(std::string("no softmax in ") + to_string(case_.impl));
  }

 private:
  struct Slot {
    Buffer in, dy, out;
  };
  Case case_;
  std::vector<Slot> slots_;
};

// ---- activations ----------------------------------------------------------------------------

constexpr float kLeakyAlpha = 0.01f;

class ActivationWorkload final : public Workload {
 public:
  ActivationWorkload(const Case& c, int slots) : Workload(slots), case_(c) {
    const Problem& p = c.problem;
    const Device d = c.device;
    const std::int64_t n = p.elements();
    for (int s = 0; s < slots; ++s) {
      Slot slot;
      switch (p.pass) {
        case Pass::forward:
        case Pass::forward_mask:
          slot.x = uniform_tensor(d, n, p.dtype, -4.0, 4.0, seed_of(s, 0));
          slot.out = output_tensor(d, n, p.dtype);
          if (p.pass == Pass::forward_mask) slot.mask = zeroed(d, relu_mask_words(n) * 4);
          break;
        case Pass::backward_mask:
          slot.mask = mask_words(d, n, seed_of(s, 0));
          slot.dy = uniform_tensor(d, n, p.dtype, -1.0, 1.0, seed_of(s, 1));
          slot.out = output_tensor(d, n, p.dtype);
          break;
        default:
          slot.x = uniform_tensor(d, n, p.dtype, -4.0, 4.0, seed_of(s, 0));
          slot.dy = uniform_tensor(d, n, p.dtype, -1.0, 1.0, seed_of(s, 1));
          slot.out = output_tensor(d, n, p.dtype);
          // cuDNN's backward wants the forward output too (not counted: the formula is the
          // minimum, and cuDNN's extra read is its own cost).
          if (c.impl == Impl::cudnn)
            slot.y = uniform_tensor(d, n, p.dtype, -1.0, 4.0, seed_of(s, 2));
          break;
      }
      slots_.push_back(std::move(slot));
    }
  }

  void run(int s) override {
    Slot& slot = slots_.at(static_cast<std::size_t>(s));
    const Problem& p = case_.problem;
    const std::int64_t n = p.elements();
    const bool forward = p.pass == Pass::forward || p.pass == Pass::forward_mask;
    switch (case_.impl) {
      case Impl::cudnn:
#if ACTLOSS_BENCH_CUDNN
        if (forward) {
          peers::cudnn_activation_forward(p.activation, p.dtype, n, slot.x.data(), slot.out.data(),
                                          bench_stream());
        } else {
          peers::cudnn_activation_backward(p.activation, p.dtype, n, slot.x.data(), slot.y.data(),
                                           slot.dy.data(), slot.out.data(), bench_stream());
        }
        return;
#else
        break;
#endif
      case Impl::onednn:
#if ACTLOSS_BENCH_ONEDNN
        if (forward) {
          peers::onednn_activation_forward(p.activation, kLeakyAlpha, p.dtype, n, slot.x.data(),
                                           slot.out.data());
        } else {
          peers::onednn_activation_backward(p.activation, kLeakyAlpha, p.dtype, n, slot.x.data(),
                                            slot.dy.data(), slot.out.data());
        }
        return;
#else
        break;
#endif
      case Impl::actloss: {
        const ActivationOptions options{p.activation, kLeakyAlpha};
        const Exec exec = exec_for(case_.device);
        if (forward) {
          ActivationForwardArgs args;
          args.n = n;
          args.x = slot.x.data();
          args.x_dtype = p.dtype;
          args.y = slot.out.data();
          args.y_dtype = p.dtype;
          if (p.pass == Pass::forward_mask) args.relu_mask = slot.mask.as<std::uint32_t>();
          check(activation_forward(args, options, exec), "activation_forward");
        } else {
          ActivationBackwardArgs args;
          args.n = n;
          if (p.pass == Pass::backward_mask) {
            args.saved_kind = SavedTensor::relu_mask;
            args.saved = slot.mask.data();
          } else {
            args.saved_kind = SavedTensor::input;
            args.saved = slot.x.data();
          }
          args.saved_dtype = p.dtype;
          args.dy = slot.dy.data();
          args.dy_dtype = p.dtype;
          args.dx = slot.out.data();
          args.dx_dtype = p.dtype;
          check(activation_backward(args, options, exec), "activation_backward");
        }
        return;
      }
      default: break;
    }
    throw std::runtime_error(std::string("no activation in ") + to_string(case_.impl));
  }

 private:
  struct Slot {
    Buffer x, y, dy, out, mask;
  };
  Case case_;
  std::vector<Slot> slots_;
};

// ---- SwiGLU ---------------------------------------------------------------------------------

class SwigluWorkload final : public Workload {
 public:
  SwigluWorkload(const Case& c, int slots) : Workload(slots), case_(c) {
    const Problem& p = c.problem;
    const Device d = c.device;
    const std::int64_t n = p.elements();
    for (int s = 0; s < slots; ++s) {
      Slot slot;
      slot.gate = uniform_tensor(d, n, p.dtype, -4.0, 4.0, seed_of(s, 0));
      slot.up = uniform_tensor(d, n, p.dtype, -4.0, 4.0, seed_of(s, 1));
      slot.out = output_tensor(d, n, p.dtype);
      if (p.pass != Pass::forward) {
        slot.dy = uniform_tensor(d, n, p.dtype, -1.0, 1.0, seed_of(s, 2));
        slot.d_up = output_tensor(d, n, p.dtype);
      }
      slots_.push_back(std::move(slot));
    }
  }

  void run(int s) override {
    Slot& slot = slots_.at(static_cast<std::size_t>(s));
    const Problem& p = case_.problem;
    if (case_.impl != Impl::actloss) {
      throw std::runtime_error(std::string("no swiglu in ") + to_string(case_.impl));
    }
    const Exec exec = exec_for(case_.device);
    if (p.pass == Pass::forward) {
      SwigluForwardArgs args;
      args.n = p.elements();
      args.gate = slot.gate.data();
      args.gate_dtype = p.dtype;
      args.up = slot.up.data();
      args.up_dtype = p.dtype;
      args.y = slot.out.data();
      args.y_dtype = p.dtype;
      check(swiglu_forward(args, exec), "swiglu_forward");
      return;
    }
    SwigluBackwardArgs args;
    args.n = p.elements();
    args.gate = slot.gate.data();
    args.gate_dtype = p.dtype;
    args.up = slot.up.data();
    args.up_dtype = p.dtype;
    args.dy = slot.dy.data();
    args.dy_dtype = p.dtype;
    args.d_gate = slot.out.data();
    args.d_gate_dtype = p.dtype;
    args.d_up = slot.d_up.data();
    args.d_up_dtype = p.dtype;
    check(swiglu_backward(args, exec), "swiglu_backward");
  }

 private:
  struct Slot {
    Buffer gate, up, dy, out, d_up;  // out is y forward, d_gate backward
  };
  Case case_;
  std::vector<Slot> slots_;
};

// ---- BCE and MSE ----------------------------------------------------------------------------

class PointwiseLossWorkload final : public Workload {
 public:
  PointwiseLossWorkload(const Case& c, int slots) : Workload(slots), case_(c) {
    const Problem& p = c.problem;
    const Device d = c.device;
    const bool bce = p.op == Op::bce_with_logits;
    for (int s = 0; s < slots; ++s) {
      Slot slot;
      slot.input = uniform_tensor(d, p.elements(), p.dtype, -4.0, 4.0, seed_of(s, 0));
      slot.target = uniform_tensor(d, p.elements(), p.dtype, bce ? 0.0 : -4.0, bce ? 1.0 : 4.0,
                                   seed_of(s, 1));
      slot.loss = output_tensor(d, 1, DType::f32);
      if (p.pass != Pass::forward) slot.grad = output_tensor(d, p.elements(), p.dtype);
      slots_.push_back(std::move(slot));
    }
  }

  void run(int s) override {
    Slot& slot = slots_.at(static_cast<std::size_t>(s));
    const Problem& p = case_.problem;
    const Exec exec = exec_for(case_.device);
    if (p.op == Op::bce_with_logits) {
      BceArgs args;
      args.rows = p.rows;
      args.cols = p.cols;
      args.logits = slot.input.data();
      args.logits_dtype = p.dtype;
      args.targets = slot.target.data();
      args.target_dtype = p.dtype;
      args.loss = slot.loss.as<float>();
      args.grad = slot.grad.data();
      args.grad_dtype = p.dtype;
      const BceOptions options;
      switch (p.pass) {
        case Pass::forward:
          check(bce_with_logits_forward(args, options, exec), "bce_forward");
          break;
        case Pass::backward:
          check(bce_with_logits_backward(args, options, exec), "bce_backward");
          break;
        default:
          check(bce_with_logits_forward_backward(args, options, exec), "bce_forward_backward");
      }
      return;
    }
    MseArgs args;
    args.n = p.elements();
    args.input = slot.input.data();
    args.input_dtype = p.dtype;
    args.target = slot.target.data();
    args.target_dtype = p.dtype;
    args.loss = slot.loss.as<float>();
    args.grad = slot.grad.data();
    args.grad_dtype = p.dtype;
    const MseOptions options;
    switch (p.pass) {
      case Pass::forward: check(mse_forward(args, options, exec), "mse_forward"); break;
      case Pass::backward: check(mse_backward(args, options, exec), "mse_backward"); break;
      default: check(mse_forward_backward(args, options, exec), "mse_forward_backward");
    }
  }

 private:
  struct Slot {
    Buffer input, target, loss, grad;
  };
  Case case_;
  std::vector<Slot> slots_;
};

}  // namespace

// ---- names ----------------------------------------------------------------------------------

const char* to_string(Op op) {
  switch (op) {
    case Op::cross_entropy: return "cross_entropy";
    case Op::bce_with_logits: return "bce_with_logits";
    case Op::softmax: return "softmax";
    case Op::log_softmax: return "log_softmax";
    case Op::activation: return "activation";
    case Op::mse: return "mse";
    case Op::swiglu: return "swiglu";
  }
  return "invalid";
}

const char* to_string(Pass pass) {
  switch (pass) {
    case Pass::forward: return "forward";
    case Pass::backward: return "backward";
    case Pass::fused: return "fused";
    case Pass::forward_mask: return "forward_mask";
    case Pass::backward_mask: return "backward_mask";
  }
  return "invalid";
}

const char* to_string(Impl impl) {
  switch (impl) {
    case Impl::actloss: return "actloss";
    case Impl::unfused: return "unfused";
    case Impl::thrust_cub: return "thrust_cub";
    case Impl::cudnn: return "cudnn";
    case Impl::onednn: return "onednn";
  }
  return "invalid";
}

std::string op_name(const Problem& problem) {
  if (problem.op == Op::activation) return actloss::to_string(problem.activation);
  if (problem.probability_targets) return "cross_entropy_probabilities";
  return to_string(problem.op);
}

bool is_row_op(Op op) {
  return op == Op::cross_entropy || op == Op::softmax || op == Op::log_softmax;
}

std::string case_name(const Case& c) {
  const Problem& p = c.problem;
  std::string name = std::string(actloss::to_string(c.device)) + "/" + to_string(c.impl) + "/" +
                     op_name(p) + "/" + to_string(p.pass) + "/" + actloss::to_string(p.dtype) + "/";
  if (is_row_op(p.op)) {
    name += "classes:" + std::to_string(p.cols) + "/rows:" + std::to_string(p.rows);
  } else {
    name += "n:" + std::to_string(p.elements());
  }
  return name;
}

std::vector<Problem> problem_set(Device device, SetSize size) {
  const Sizes sizes = sizes_for(device, size);
  std::vector<Problem> out;
  if (size == SetSize::full) {
    add_full(out, sizes);
  } else {
    add_quick(out, sizes);
  }
  if (cross_entropy_probability_targets()) {
    for (Problem& p : out) p.probability_targets = p.op == Op::cross_entropy;
  }
  return out;
}

std::vector<Impl> implementations(Device device) {
  std::vector<Impl> impls{Impl::actloss};
  if (device == Device::cuda) {
#if ACTLOSS_BENCH_UNFUSED
    impls.push_back(Impl::unfused);
#endif
#if ACTLOSS_BENCH_THRUST
    impls.push_back(Impl::thrust_cub);
#endif
#if ACTLOSS_BENCH_CUDNN
    if (peers::cudnn_available(nullptr)) impls.push_back(Impl::cudnn);
#endif
  } else {
#if ACTLOSS_BENCH_ONEDNN
    impls.push_back(Impl::onednn);
#endif
  }
  return impls;
}

namespace {
float label_smoothing_for_cross_entropy = 0.0f;
}  // namespace

void set_cross_entropy_label_smoothing(float eps) { label_smoothing_for_cross_entropy = eps; }
float cross_entropy_label_smoothing() { return label_smoothing_for_cross_entropy; }

namespace {
bool probability_targets_for_cross_entropy = false;
}  // namespace

void set_cross_entropy_probability_targets(bool on) { probability_targets_for_cross_entropy = on; }
bool cross_entropy_probability_targets() { return probability_targets_for_cross_entropy; }

bool implements(Impl impl, Device device, const Problem& p, std::string* why) {
  auto no = [why](const char* reason) {
    if (why != nullptr) *why = reason;
    return false;
  };
  const bool softmax_like = p.op == Op::softmax || p.op == Op::log_softmax;
  const bool plain_activation =
      p.op == Op::activation && (p.pass == Pass::forward || p.pass == Pass::backward);
  // cuDNN's legacy API and oneDNN's eltwise take one input: neither has a gated unit to compare.
  if (p.op == Op::swiglu && impl != Impl::actloss) return no("no fused SwiGLU");
  switch (impl) {
    case Impl::actloss:
      if (device == Device::cuda && !cuda_backend_built()) return no("built without CUDA");
      return true;
    case Impl::unfused:
#if ACTLOSS_BENCH_UNFUSED
      if (device != Device::cuda) return no("CUDA only");
      if (p.op != Op::cross_entropy || p.pass != Pass::fused) return no("cross-entropy fused only");
      if (cross_entropy_label_smoothing() != 0.0f) return no("no label smoothing");
      if (p.probability_targets) return no("class-index targets only");
      return true;
#else
      return no("built with nvcc only");
#endif
    case Impl::thrust_cub:
#if ACTLOSS_BENCH_THRUST
      if (device != Device::cuda) return no("CUDA only");
      if (p.op != Op::cross_entropy) return no("cross-entropy only");
      if (p.dtype != DType::f32 && p.dtype != DType::bf16) return no("f32 and bf16 only");
      if (cross_entropy_label_smoothing() != 0.0f) return no("no label smoothing");
      if (p.probability_targets) return no("class-index targets only");
      return true;
#else
      return no("built with nvcc only");
#endif
    case Impl::cudnn:
#if ACTLOSS_BENCH_CUDNN
    {
      std::string reason;
      if (device != Device::cuda) return no("CUDA only");
      if (!peers::cudnn_available(&reason)) {
        if (why != nullptr) *why = reason;
        return false;
      }
      const bool backward = p.pass == Pass::backward;
      if (softmax_like) {
        if (!peers::cudnn_supports_softmax(p.op == Op::log_softmax, backward, p.dtype))
          return no("cuDNN rejects this dtype");
        return true;
      }
      if (!plain_activation || !peers::cudnn_has_activation(p.activation))
        return no("not in cuDNN's legacy API");
      if (!peers::cudnn_supports_activation(p.activation, backward, p.dtype))
        return no("cuDNN rejects this dtype");
      return true;
    }
#else
      return no("no cuDNN in this build");
#endif
    case Impl::onednn:
#if ACTLOSS_BENCH_ONEDNN
      if (device != Device::cpu) return no("CPU only");
      if (softmax_like) {
        if (!peers::onednn_supports(true, p.pass == Pass::backward, p.dtype))
          return no("oneDNN rejects this dtype");
        return true;
      }
      if (!plain_activation || !peers::onednn_has_activation(p.activation))
        return no("not a oneDNN eltwise algorithm");
      if (!peers::onednn_supports(false, p.pass == Pass::backward, p.dtype))
        return no("oneDNN rejects this dtype");
      return true;
#else
      return no("no oneDNN in this build");
#endif
  }
  (void)softmax_like;
  (void)plain_activation;
  return no("unknown implementation");
}

int rotation_slots(Device device, const Problem& problem) {
  if (device != Device::cuda || simulated_cuda()) return 1;
  const double per_copy = static_cast<double>(min_bytes(problem));
  const double llc = static_cast<double>(last_level_cache_bytes(device));
  int slots = static_cast<int>(std::ceil(3.0 * llc / per_copy));
  const int bound = static_cast<int>(256.0 * kMiB / per_copy);
  slots = std::min(slots, std::max(bound, 1));
  return std::max(slots, 1);
}

std::unique_ptr<Workload> make_workload(const Case& c, int slots) {
  std::string why;
  if (!implements(c.impl, c.device, c.problem, &why)) {
    throw std::runtime_error(case_name(c) + ": " + why);
  }
  slots = std::max(slots, 1);
  switch (c.problem.op) {
    case Op::cross_entropy: return std::make_unique<CrossEntropyWorkload>(c, slots);
    case Op::softmax:
    case Op::log_softmax: return std::make_unique<SoftmaxWorkload>(c, slots);
    case Op::activation: return std::make_unique<ActivationWorkload>(c, slots);
    case Op::bce_with_logits:
    case Op::mse: return std::make_unique<PointwiseLossWorkload>(c, slots);
    case Op::swiglu: return std::make_unique<SwigluWorkload>(c, slots);
  }
  throw std::runtime_error("unknown op");
}

}  // namespace actloss::bench
