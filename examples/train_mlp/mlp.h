// A small multilayer perceptron classifier trained with mini-batch SGD (with momentum) on the
// CPU or a GPU. actloss supplies the nonlinear parts: hidden activations, softmax cross-entropy
// (or sigmoid + MSE) and their gradients. On the CPU (this file) matrix products and bias adds
// are plain loops, so it needs nothing but actloss and the standard library; the GPU variant
// (mlp_cuda.h, compiled in when TRAIN_MLP_CUDA is defined) keeps every tensor on the device and
// does them with cuBLAS. Copy them and change what you need.
//
// Header-only so the actloss tool's `demo` command trains exactly the same network.
#pragma once

#include <actloss/actloss.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <numeric>
#include <random>
#include <string>
#include <vector>

namespace train_mlp {

// Row-major [rows x 2] points and their class labels.
struct Dataset {
  std::int64_t rows = 0;
  std::int64_t classes = 0;
  std::vector<float> x;
  std::vector<std::int64_t> y;
};

// Interleaved spiral arms, one per class: not linearly separable, so a net without hidden layers
// cannot fit it, yet a small MLP can reach well over 90% train accuracy. Deterministic: std
// distributions are implementation-defined, so noise is derived from raw mt19937 output instead.
inline Dataset make_spirals(std::int64_t points_per_class, std::int64_t classes,
                            std::uint32_t seed = 7, float noise = 0.15f) {
  Dataset data;
  data.rows = points_per_class * classes;
  data.classes = classes;
  data.x.resize(static_cast<std::size_t>(data.rows * 2));
  data.y.resize(static_cast<std::size_t>(data.rows));
  std::mt19937 rng(seed);
  auto uniform = [&rng] { return static_cast<float>(rng()) / 4294967296.0f; };  // [0, 1)
  const float pi = 3.14159265358979f;
  for (std::int64_t c = 0; c < classes; ++c) {
    for (std::int64_t i = 0; i < points_per_class; ++i) {
      const float t = static_cast<float>(i) / static_cast<float>(points_per_class);
      // 1.75 turns per arm: enough winding that depth and nonlinearity matter.
      const float angle = t * 3.5f * pi + 2.0f * pi * static_cast<float>(c) /
                                              static_cast<float>(classes) +
                          noise * (uniform() + uniform() - 1.0f) * 2.0f;
      const std::size_t row = static_cast<std::size_t>(c * points_per_class + i);
      data.x[2 * row] = t * std::cos(angle);
      data.x[2 * row + 1] = t * std::sin(angle);
      data.y[row] = c;
    }
  }
  return data;
}

enum class Output {
  softmax_cross_entropy,  // logits -> softmax cross-entropy against the class index
  sigmoid_mse,            // logits -> per-class sigmoid -> MSE against the one-hot target
};

inline const char* to_string(Output output) {
  return output == Output::softmax_cross_entropy ? "softmax+CE" : "sigmoid+MSE";
}

struct Config {
  std::vector<std::int64_t> hidden = {64, 64};  // width of each hidden layer
  actloss::Activation activation = actloss::Activation::relu;
  Output output = Output::softmax_cross_entropy;
  float learning_rate = 0.05f;
  float momentum = 0.9f;
  std::int64_t batch = 32;
  int max_epochs = 300;
  float target_accuracy = 0.9f;
  bool stop_at_target = true;  // false: run every epoch (fixed budget comparisons)
  std::uint32_t seed = 1;      // weight init and batch order
  // cpu: plain loops here; cuda: the same net on the GPU (mlp_cuda.h), same init and batches.
  actloss::Device device = actloss::Device::cpu;
  // Called after every epoch with (epoch from 1, mean training loss, train accuracy).
  std::function<void(int, float, float)> on_epoch;
};

struct Result {
  std::string error;  // empty on success; else the failing actloss, CUDA or cuBLAS call's message
  std::int64_t steps_to_target = -1;  // SGD steps until train accuracy first reached the target
  int epochs = 0;
  std::int64_t steps = 0;
  float final_loss = 0.0f;
  float final_accuracy = 0.0f;
  std::vector<float> loss_curve;         // mean training loss of each epoch
  std::vector<double> first_grad_norms;  // ||dW_l|| (Frobenius) of each layer at the first step
};

namespace detail {

struct Layer {
  std::int64_t in = 0, out = 0;
  std::vector<float> w, b;    // w: [in x out]
  std::vector<float> dw, db;
  std::vector<float> vw, vb;  // momentum
};

// C[m x n] = A[m x k] B[k x n]; i-k-j order keeps the inner loop contiguous so it vectorizes.
inline void matmul(const float* a, const float* b, float* c, std::int64_t m, std::int64_t k,
                   std::int64_t n) {
  std::fill(c, c + m * n, 0.0f);
  for (std::int64_t i = 0; i < m; ++i)
    for (std::int64_t p = 0; p < k; ++p) {
      const float av = a[i * k + p];
      for (std::int64_t j = 0; j < n; ++j) c[i * n + j] += av * b[p * n + j];
    }
}

// C[k x n] = A[m x k]^T B[m x n] (the weight gradient).
inline void matmul_at_b(const float* a, const float* b, float* c, std::int64_t m, std::int64_t k,
                        std::int64_t n) {
  std::fill(c, c + k * n, 0.0f);
  for (std::int64_t i = 0; i < m; ++i)
    for (std::int64_t p = 0; p < k; ++p) {
      const float av = a[i * k + p];
      for (std::int64_t j = 0; j < n; ++j) c[p * n + j] += av * b[i * n + j];
    }
}

// C[m x k] = A[m x n] B[k x n]^T (the gradient flowing back to the layer's input).
inline void matmul_a_bt(const float* a, const float* b, float* c, std::int64_t m, std::int64_t n,
                        std::int64_t k) {
  for (std::int64_t i = 0; i < m; ++i)
    for (std::int64_t p = 0; p < k; ++p) {
      float sum = 0.0f;
      for (std::int64_t j = 0; j < n; ++j) sum += a[i * n + j] * b[p * n + j];
      c[i * k + p] = sum;
    }
}

// ||g|| (Frobenius), accumulated in double: gradients of deep sigmoid nets reach 1e-9 and less.
inline double frobenius_norm(const std::vector<float>& g) {
  double sq = 0.0;
  for (float v : g) sq += static_cast<double>(v) * v;
  return std::sqrt(sq);
}

inline void add_bias(float* y, const float* bias, std::int64_t rows, std::int64_t cols) {
  for (std::int64_t i = 0; i < rows; ++i)
    for (std::int64_t j = 0; j < cols; ++j) y[i * cols + j] += bias[j];
}

// The layers of a fresh net, weights drawn from config.seed; both nets start from these.
inline std::vector<Layer> make_layers(const Config& config, std::int64_t inputs,
                                      std::int64_t classes) {
  std::vector<Layer> layers;
  std::mt19937 rng(config.seed);
  std::int64_t in = inputs;
  std::vector<std::int64_t> widths = config.hidden;
  widths.push_back(classes);
  for (std::size_t l = 0; l < widths.size(); ++l) {
    Layer layer;
    layer.in = in;
    layer.out = widths[l];
    const bool hidden = l + 1 < widths.size();
    const bool rectifier = config.activation == actloss::Activation::relu ||
                           config.activation == actloss::Activation::leaky_relu ||
                           config.activation == actloss::Activation::gelu_erf ||
                           config.activation == actloss::Activation::gelu_tanh ||
                           config.activation == actloss::Activation::silu;
    // He keeps the forward variance of rectifiers (which zero half their input) constant;
    // Xavier does the same for the symmetric, unit-slope-at-0 tanh and sigmoid, and for the
    // output layer, which feeds a loss rather than another rectifier.
    const double limit =
        hidden && rectifier ? std::sqrt(6.0 / static_cast<double>(layer.in))
                            : std::sqrt(6.0 / static_cast<double>(layer.in + layer.out));
    layer.w.resize(static_cast<std::size_t>(layer.in * layer.out));
    for (float& w : layer.w) {
      // Built from raw mt19937 output (not uniform_real_distribution) so that every standard
      // library gives the same weights for the same seed.
      const double u = static_cast<double>(rng()) / 4294967296.0;
      w = static_cast<float>((2.0 * u - 1.0) * limit);
    }
    layer.b.assign(static_cast<std::size_t>(layer.out), 0.0f);
    layer.dw.assign(layer.w.size(), 0.0f);
    layer.db.assign(layer.b.size(), 0.0f);
    layer.vw.assign(layer.w.size(), 0.0f);
    layer.vb.assign(layer.b.size(), 0.0f);
    layers.push_back(std::move(layer));
    in = widths[l];
  }
  return layers;
}

// The CPU net. Its public member functions are what train_net() needs of a net (mlp_cuda.h's
// CudaNet has the same ones); inputs and labels are host arrays for both.
class Net {
 public:
  Net(const Config& config, std::int64_t inputs, std::int64_t classes)
      : config_(config), layers_(make_layers(config, inputs, classes)) {
    pre_.resize(layers_.size());
    post_.resize(layers_.size());
  }

  // Forward pass over `rows` inputs x [rows x inputs]; keeps x for backward().
  actloss::Status forward(const float* x, std::int64_t rows) {
    input_ = x;
    rows_ = rows;
    const float* in = x;
    for (std::size_t l = 0; l < layers_.size(); ++l) {
      Layer& layer = layers_[l];
      pre_[l].resize(static_cast<std::size_t>(rows * layer.out));
      matmul(in, layer.w.data(), pre_[l].data(), rows, layer.in, layer.out);
      add_bias(pre_[l].data(), layer.b.data(), rows, layer.out);
      if (l + 1 == layers_.size()) break;
      post_[l].resize(pre_[l].size());
      actloss::ActivationForwardArgs args;
      args.n = rows * layer.out;
      args.x = pre_[l].data();
      args.y = post_[l].data();
      if (actloss::Status s = actloss::activation_forward(args, options(), actloss::Exec{});
          !s.ok())
        return s;
      in = post_[l].data();
    }
    return {};
  }

  // The logits [rows x classes] of the last forward pass.
  actloss::Status logits(std::vector<float>& out) const {
    out = pre_.back();
    return {};
  }

  // Loss of the last forward pass against labels [rows], and d(loss)/d(logits) into dlogits_.
  actloss::Status loss_and_grad(const std::int64_t* labels, float& loss) {
    const std::int64_t rows = rows_;
    const std::int64_t classes = layers_.back().out;
    dlogits_.resize(static_cast<std::size_t>(rows * classes));
    if (config_.output == Output::softmax_cross_entropy) {
      actloss::CrossEntropyArgs ce;
      ce.rows = rows;
      ce.classes = classes;
      ce.logits = pre_.back().data();
      ce.targets = labels;
      ce.target_kind = actloss::TargetKind::class_index_i64;
      ce.loss = &loss;
      ce.grad = dlogits_.data();
      return actloss::cross_entropy_forward_backward(ce, actloss::CrossEntropyOptions{},
                                                     actloss::Exec{});
    }
    // Sigmoid + MSE: each class scored independently against its 0/1 target, as a regression.
    actloss::ActivationOptions sigmoid;
    sigmoid.activation = actloss::Activation::sigmoid;
    probs_.resize(dlogits_.size());
    actloss::ActivationForwardArgs fwd;
    fwd.n = rows * classes;
    fwd.x = pre_.back().data();
    fwd.y = probs_.data();
    if (actloss::Status s = actloss::activation_forward(fwd, sigmoid, actloss::Exec{}); !s.ok())
      return s;
    onehot_.assign(dlogits_.size(), 0.0f);
    for (std::int64_t i = 0; i < rows; ++i)
      onehot_[static_cast<std::size_t>(i * classes + labels[i])] = 1.0f;
    dprobs_.resize(dlogits_.size());
    actloss::MseArgs mse;
    mse.n = rows * classes;
    mse.input = probs_.data();
    mse.target = onehot_.data();
    mse.loss = &loss;
    mse.grad = dprobs_.data();
    if (actloss::Status s = actloss::mse_forward_backward(mse, actloss::MseOptions{},
                                                          actloss::Exec{});
        !s.ok())
      return s;
    actloss::ActivationBackwardArgs bwd;
    bwd.n = rows * classes;
    bwd.saved_kind = actloss::SavedTensor::output;  // sigmoid' = y (1 - y): no need to keep x
    bwd.saved = probs_.data();
    bwd.dy = dprobs_.data();
    bwd.dx = dlogits_.data();
    return actloss::activation_backward(bwd, sigmoid, actloss::Exec{});
  }

  // Fills every layer's dw, db from dlogits_ and the activations of the last forward pass.
  actloss::Status backward() {
    const std::int64_t rows = rows_;
    std::vector<float> grad = dlogits_;  // d(loss)/d(pre-activation) of the current layer
    for (std::size_t l = layers_.size(); l-- > 0;) {
      Layer& layer = layers_[l];
      const float* in = l == 0 ? input_ : post_[l - 1].data();
      matmul_at_b(in, grad.data(), layer.dw.data(), rows, layer.in, layer.out);
      std::fill(layer.db.begin(), layer.db.end(), 0.0f);
      for (std::int64_t i = 0; i < rows; ++i)
        for (std::int64_t j = 0; j < layer.out; ++j)
          layer.db[static_cast<std::size_t>(j)] +=
              grad[static_cast<std::size_t>(i * layer.out + j)];
      if (l == 0) break;
      dpost_.resize(static_cast<std::size_t>(rows * layer.in));
      matmul_a_bt(grad.data(), layer.w.data(), dpost_.data(), rows, layer.out, layer.in);
      grad.resize(dpost_.size());
      actloss::ActivationBackwardArgs args;
      args.n = rows * layer.in;
      args.saved_kind = actloss::SavedTensor::input;  // gelu and silu need x, so keep x for all
      args.saved = pre_[l - 1].data();
      args.dy = dpost_.data();
      args.dx = grad.data();
      if (actloss::Status s = actloss::activation_backward(args, options(), actloss::Exec{});
          !s.ok())
        return s;
    }
    return {};
  }

  // ||dW|| (Frobenius) of each layer, from the last backward().
  actloss::Status weight_grad_norms(std::vector<double>& norms) const {
    norms.clear();
    for (const Layer& layer : layers_) norms.push_back(frobenius_norm(layer.dw));
    return {};
  }

  actloss::Status sgd_step() {
    const float lr = config_.learning_rate;
    const float mu = config_.momentum;
    for (Layer& layer : layers_) {
      for (std::size_t i = 0; i < layer.w.size(); ++i) {
        layer.vw[i] = mu * layer.vw[i] - lr * layer.dw[i];
        layer.w[i] += layer.vw[i];
      }
      for (std::size_t i = 0; i < layer.b.size(); ++i) {
        layer.vb[i] = mu * layer.vb[i] - lr * layer.db[i];
        layer.b[i] += layer.vb[i];
      }
    }
    return {};
  }

 private:
  actloss::ActivationOptions options() const {
    actloss::ActivationOptions o;
    o.activation = config_.activation;
    return o;
  }

  Config config_;
  std::vector<Layer> layers_;
  const float* input_ = nullptr;  // the last forward pass's x and rows
  std::int64_t rows_ = 0;
  std::vector<std::vector<float>> pre_, post_;  // per layer, of the last forward pass
  std::vector<float> dlogits_, dpost_, probs_, dprobs_, onehot_;
};

inline std::int64_t count_correct(const std::vector<float>& logits, const std::int64_t* labels,
                                  std::int64_t rows, std::int64_t classes) {
  std::int64_t correct = 0;
  for (std::int64_t i = 0; i < rows; ++i) {
    const float* row = logits.data() + i * classes;
    if (std::max_element(row, row + classes) - row == labels[i]) ++correct;
  }
  return correct;
}

// The training loop, the same for both nets: shuffled mini-batches gathered on the host, one SGD
// step per batch, train accuracy over the whole set after every epoch.
template <class NetT>
Result train_net(NetT& net, const Config& config, const Dataset& data) {
  Result result;
  std::mt19937 rng(config.seed ^ 0x9e3779b9u);
  std::vector<std::int64_t> order(static_cast<std::size_t>(data.rows));
  std::iota(order.begin(), order.end(), std::int64_t{0});
  std::vector<float> bx(static_cast<std::size_t>(config.batch * 2));
  std::vector<std::int64_t> by(static_cast<std::size_t>(config.batch));
  std::vector<float> logits;

  auto fail = [&result](const char* what, const actloss::Status& s) {
    result.error = std::string(what) + ": " + s.message();
    return result;
  };

  for (int epoch = 1; epoch <= config.max_epochs; ++epoch) {
    // Fisher-Yates with raw rng output: std::shuffle's draws differ between standard libraries.
    for (std::size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[rng() % i]);
    double loss_sum = 0.0;
    std::int64_t batches = 0;
    for (std::int64_t start = 0; start < data.rows; start += config.batch) {
      const std::int64_t rows = std::min(config.batch, data.rows - start);
      for (std::int64_t i = 0; i < rows; ++i) {
        const auto src = static_cast<std::size_t>(order[static_cast<std::size_t>(start + i)]);
        bx[static_cast<std::size_t>(2 * i)] = data.x[2 * src];
        bx[static_cast<std::size_t>(2 * i + 1)] = data.x[2 * src + 1];
        by[static_cast<std::size_t>(i)] = data.y[src];
      }
      float loss = 0.0f;
      if (actloss::Status s = net.forward(bx.data(), rows); !s.ok()) return fail("forward", s);
      if (actloss::Status s = net.loss_and_grad(by.data(), loss); !s.ok())
        return fail("loss", s);
      if (actloss::Status s = net.backward(); !s.ok()) return fail("backward", s);
      if (result.steps == 0) {
        if (actloss::Status s = net.weight_grad_norms(result.first_grad_norms); !s.ok())
          return fail("gradient norms", s);
      }
      if (actloss::Status s = net.sgd_step(); !s.ok()) return fail("sgd step", s);
      ++result.steps;
      loss_sum += loss;
      ++batches;
    }
    if (actloss::Status s = net.forward(data.x.data(), data.rows); !s.ok())
      return fail("forward", s);
    if (actloss::Status s = net.logits(logits); !s.ok()) return fail("logits", s);
    const float accuracy =
        static_cast<float>(count_correct(logits, data.y.data(), data.rows, data.classes)) /
        static_cast<float>(data.rows);
    const float mean_loss = static_cast<float>(loss_sum / static_cast<double>(batches));
    result.epochs = epoch;
    result.final_loss = mean_loss;
    result.final_accuracy = accuracy;
    result.loss_curve.push_back(mean_loss);
    if (config.on_epoch) config.on_epoch(epoch, mean_loss, accuracy);
    if (accuracy >= config.target_accuracy && result.steps_to_target < 0) {
      result.steps_to_target = result.steps;
      if (config.stop_at_target) break;
    }
  }
  return result;
}

}  // namespace detail

}  // namespace train_mlp

#if defined(TRAIN_MLP_CUDA)
#include "mlp_cuda.h"  // detail::CudaNet, cuda_device_name()
#else
namespace train_mlp {
// The GPU that Device::cuda trains on; here the answer is that this build has no GPU path.
inline actloss::Status cuda_device_name(std::string& /*name*/) {
  return {actloss::StatusCode::unsupported, "",
          "this program was built without the CUDA path (TRAIN_MLP_CUDA)"};
}
}  // namespace train_mlp
#endif

namespace train_mlp {

// Trains a fresh network on `data`, on config.device. Everything (init, batch order) follows
// config.seed, so the same config gives the same result. The two devices start from the same
// weights and see the same batches; their runs drift apart only by float rounding (sums are
// ordered differently), which over hundreds of steps is visible in the last digits.
inline Result train(const Config& config, const Dataset& data) {
  if (config.device == actloss::Device::cuda) {
#if defined(TRAIN_MLP_CUDA)
    detail::CudaNet net;
    if (actloss::Status s = net.init(config, 2, data.classes, std::max(config.batch, data.rows));
        !s.ok()) {
      Result result;
      result.error = "setup: " + s.message();
      return result;
    }
    return detail::train_net(net, config, data);
#else
    std::string no_name;
    Result result;
    result.error = cuda_device_name(no_name).message();
    return result;
#endif
  }
  detail::Net net(config, 2, data.classes);
  return detail::train_net(net, config, data);
}

}  // namespace train_mlp
