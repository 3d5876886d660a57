// oneDNN's softmax and eltwise primitives as the CPU peers. oneDNN 3 replaced the operation
// descriptors of oneDNN 2 (Debian 12 ships 2.6) with primitive-descriptor constructors, so both
// spellings are here; CMake compiles this file against the installed version before using it
// and leaves the peer out when it does not compile. oneDNN runs on its threading runtime's
// threads (Debian's build: OpenMP, OMP_NUM_THREADS, default every core), the CPU backend on
// ACTLOSS_CPU_THREADS (default every hardware thread): left at their defaults, or set to the
// same count, both use the same cores, and benchmarks/cpu_table.py compares like with like.
#include <dnnl.hpp>

#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <tuple>
#include <unordered_map>

#include "benchmarks/support/peers.h"

namespace actloss::bench::peers {
namespace {

using dnnl::algorithm;
using dnnl::memory;
using dnnl::prop_kind;

struct Context {
  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  dnnl::stream stream{engine};
  std::mutex mutex;
  // A primitive per shape, built on first use: creating one costs far more than running a small
  // problem, and a framework would cache it the same way.
  std::map<std::tuple<int, int, int, int, std::int64_t, std::int64_t>, dnnl::primitive> primitives;
};

Context& context() {
  static Context c;
  return c;
}

memory::data_type data_type(DType dtype) {
  switch (dtype) {
    case DType::f32: return memory::data_type::f32;
    case DType::f16: return memory::data_type::f16;
    case DType::bf16: return memory::data_type::bf16;
  }
  return memory::data_type::f32;
}

memory::desc matrix(DType dtype, std::int64_t rows, std::int64_t cols) {
  return memory::desc({rows, cols}, data_type(dtype), memory::format_tag::ab);
}

bool eltwise_algorithm(Activation activation, algorithm& alg, float& alpha, float leaky) {
  alpha = 0.0f;
  switch (activation) {
    case Activation::relu: alg = algorithm::eltwise_relu; return true;
    case Activation::leaky_relu:
      alg = algorithm::eltwise_relu;  // alpha is the negative slope
      alpha = leaky;
      return true;
    case Activation::tanh: alg = algorithm::eltwise_tanh; return true;
    case Activation::sigmoid: alg = algorithm::eltwise_logistic; return true;
    case Activation::gelu_erf: alg = algorithm::eltwise_gelu_erf; return true;
    case Activation::gelu_tanh: alg = algorithm::eltwise_gelu_tanh; return true;
    case Activation::silu:
      alg = algorithm::eltwise_swish;  // x sigmoid(alpha x)
      alpha = 1.0f;
      return true;
  }
  return false;
}

// ---- primitive construction, per oneDNN major version ---------------------------------------

#if DNNL_VERSION_MAJOR >= 3
dnnl::softmax_forward::primitive_desc softmax_fwd_pd(bool log, const memory::desc& md) {
  return {context().engine,
          prop_kind::forward_training,
          log ? algorithm::softmax_log : algorithm::softmax_accurate,
          md,
          md,
          1};
}
dnnl::primitive softmax_primitive(bool log, bool backward, const memory::desc& md) {
  const auto forward = softmax_fwd_pd(log, md);
  if (!backward) return dnnl::softmax_forward(forward);
  return dnnl::softmax_backward(dnnl::softmax_backward::primitive_desc(
      context().engine, log ? algorithm::softmax_log : algorithm::softmax_accurate, md, md, md, 1,
      forward));
}
dnnl::primitive eltwise_primitive(algorithm alg, float alpha, bool backward,
                                  const memory::desc& md) {
  const dnnl::eltwise_forward::primitive_desc forward(context().engine, prop_kind::forward_training,
                                                      alg, md, md, alpha, 0.0f);
  if (!backward) return dnnl::eltwise_forward(forward);
  return dnnl::eltwise_backward(dnnl::eltwise_backward::primitive_desc(
      context().engine, alg, md, md, md, alpha, 0.0f, forward));
}
#else
dnnl::primitive softmax_primitive(bool log, bool backward, const memory::desc& md) {
  Context& c = context();
  if (log) {
    const dnnl::logsoftmax_forward::primitive_desc forward(
        dnnl::logsoftmax_forward::desc(prop_kind::forward_training, md, 1), c.engine);
    if (!backward) return dnnl::logsoftmax_forward(forward);
    return dnnl::logsoftmax_backward(dnnl::logsoftmax_backward::primitive_desc(
        dnnl::logsoftmax_backward::desc(md, md, 1), c.engine, forward));
  }
  const dnnl::softmax_forward::primitive_desc forward(
      dnnl::softmax_forward::desc(prop_kind::forward_training, md, 1), c.engine);
  if (!backward) return dnnl::softmax_forward(forward);
  return dnnl::softmax_backward(dnnl::softmax_backward::primitive_desc(
      dnnl::softmax_backward::desc(md, md, 1), c.engine, forward));
}
dnnl::primitive eltwise_primitive(algorithm alg, float alpha, bool backward,
                                  const memory::desc& md) {
  Context& c = context();
  const dnnl::eltwise_forward::primitive_desc forward(
      dnnl::eltwise_forward::desc(prop_kind::forward_training, alg, md, alpha, 0.0f), c.engine);
  if (!backward) return dnnl::eltwise_forward(forward);
  return dnnl::eltwise_backward(dnnl::eltwise_backward::primitive_desc(
      dnnl::eltwise_backward::desc(alg, md, md, alpha, 0.0f), c.engine, forward));
}
#endif

// kind 0: softmax (variant: log), kind 1: eltwise (variant: activation).
dnnl::primitive& cached(int kind, int variant, bool backward, DType dtype, std::int64_t rows,
                        std::int64_t cols, float leaky) {
  Context& c = context();
  std::lock_guard lock(c.mutex);
  const auto key =
      std::make_tuple(kind, variant, backward ? 1 : 0, static_cast<int>(dtype), rows, cols);
  if (auto it = c.primitives.find(key); it != c.primitives.end()) return it->second;
  const memory::desc md = matrix(dtype, rows, cols);
  dnnl::primitive p;
  if (kind == 0) {
    p = softmax_primitive(variant != 0, backward, md);
  } else {
    algorithm alg{};
    float alpha = 0;
    if (!eltwise_algorithm(static_cast<Activation>(variant), alg, alpha, leaky))
      throw std::runtime_error("oneDNN has no such eltwise algorithm");
    p = eltwise_primitive(alg, alpha, backward, md);
  }
  return c.primitives.emplace(key, std::move(p)).first->second;
}

memory wrap(DType dtype, std::int64_t rows, std::int64_t cols, const void* data) {
  return memory(matrix(dtype, rows, cols), context().engine, const_cast<void*>(data));
}

void execute(dnnl::primitive& p, const std::unordered_map<int, memory>& args) {
  Context& c = context();
  p.execute(c.stream, args);
  c.stream.wait();
}

template <class Body>
void guarded(const char* what, Body body) {
  try {
    body();
  } catch (const dnnl::error& error) {
    throw std::runtime_error(std::string("oneDNN ") + what + ": " + error.what());
  }
}

}  // namespace

std::string onednn_version() {
  const dnnl_version_t* v = dnnl_version();
  std::string text =
      std::to_string(v->major) + "." + std::to_string(v->minor) + "." + std::to_string(v->patch);
  // The runtime says which variable sets its thread count, which a comparison must match.
  switch (v->cpu_runtime) {
    case DNNL_RUNTIME_SEQ: return text + ", sequential";
    case DNNL_RUNTIME_OMP: return text + ", OpenMP threads (OMP_NUM_THREADS)";
    case DNNL_RUNTIME_TBB: return text + ", TBB threads";
    case DNNL_RUNTIME_THREADPOOL: return text + ", caller's threadpool";
    default: return text;
  }
}

bool onednn_has_activation(Activation activation) {
  algorithm alg{};
  float alpha = 0;
  return eltwise_algorithm(activation, alg, alpha, 0.01f);
}

bool onednn_supports(bool softmax, bool backward, DType dtype) {
  // Building the primitive is the test: oneDNN refuses data types the CPU cannot run (bf16
  // and f16 need AVX-512 or AMX on most versions).
  try {
    (void)cached(softmax ? 0 : 1, softmax ? 0 : static_cast<int>(Activation::relu), backward, dtype,
                 2, 64, 0.0f);
    return true;
  } catch (const std::exception&) {
    return false;
  }
}

void onednn_softmax_forward(bool log, DType dtype, std::int64_t rows, std::int64_t cols,
                            const void* x, void* y) {
  guarded("softmax forward", [&] {
    execute(
        cached(0, log ? 1 : 0, false, dtype, rows, cols, 0.0f),
        {{DNNL_ARG_SRC, wrap(dtype, rows, cols, x)}, {DNNL_ARG_DST, wrap(dtype, rows, cols, y)}});
  });
}

void onednn_softmax_backward(bool log, DType dtype, std::int64_t rows, std::int64_t cols,
                             const void* y, const void* dy, void* dx) {
  guarded("softmax backward", [&] {
    execute(cached(0, log ? 1 : 0, true, dtype, rows, cols, 0.0f),
            {{DNNL_ARG_DST, wrap(dtype, rows, cols, y)},
             {DNNL_ARG_DIFF_DST, wrap(dtype, rows, cols, dy)},
             {DNNL_ARG_DIFF_SRC, wrap(dtype, rows, cols, dx)}});
  });
}

// Elementwise problems are one row of n: oneDNN does not care about the split.
void onednn_activation_forward(Activation activation, float alpha, DType dtype, std::int64_t n,
                               const void* x, void* y) {
  guarded("eltwise forward", [&] {
    execute(cached(1, static_cast<int>(activation), false, dtype, 1, n, alpha),
            {{DNNL_ARG_SRC, wrap(dtype, 1, n, x)}, {DNNL_ARG_DST, wrap(dtype, 1, n, y)}});
  });
}

void onednn_activation_backward(Activation activation, float alpha, DType dtype, std::int64_t n,
                                const void* x, const void* dy, void* dx) {
  guarded("eltwise backward", [&] {
    execute(cached(1, static_cast<int>(activation), true, dtype, 1, n, alpha),
            {{DNNL_ARG_SRC, wrap(dtype, 1, n, x)},
             {DNNL_ARG_DIFF_DST, wrap(dtype, 1, n, dy)},
             {DNNL_ARG_DIFF_SRC, wrap(dtype, 1, n, dx)}});
  });
}

}  // namespace actloss::bench::peers
