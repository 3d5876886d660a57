// The net of mlp.h on a GPU. Every tensor lives in device memory and every operation is queued on
// one stream: matrix products, bias adds, bias gradients and the SGD update are cuBLAS calls;
// activations and losses are actloss calls with Exec{Device::cuda, stream}. With softmax
// cross-entropy, the output layer's loss and its gradients (of its weight, its bias and its
// input) come from one call of actloss's fused linear cross-entropy, which recomputes the logits
// from the layer's input chunk by chunk (forward() still writes them, for the accuracy). There is
// no kernel of its own, so this is plain C++: compile it with the host compiler and link cuBLAS
// and the CUDA runtime. Only batches (gathered on the host), one loss per step and the logits once per epoch
// cross the bus. Device memory is held in thrust::device_vector (Thrust's headers come with the
// CUDA toolkit) and handed to cuBLAS and actloss as raw pointers.
//
// Part of mlp.h, which includes it when TRAIN_MLP_CUDA is defined: include mlp.h, not this file.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <thrust/device_vector.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <exception>
#include <memory>
#include <string>
#include <vector>

namespace train_mlp {

namespace detail {

inline actloss::Status cuda_failure(const char* expr, cudaError_t e) {
  return {actloss::StatusCode::cuda_error, "",
          std::string(expr) + " failed with " + cudaGetErrorName(e) + ": " + cudaGetErrorString(e)};
}

inline actloss::Status cublas_failure(const char* expr, cublasStatus_t s) {
  return {actloss::StatusCode::cuda_error, "",
          std::string(expr) + " failed with " + cublasGetStatusName(s) + ": " +
              cublasGetStatusString(s)};
}

// Each returns early with a Status naming the failed call, so errors reach Result::error the way
// actloss's own do; nothing here throws or exits.
#define TRAIN_MLP_CUDA_TRY(expr)                                                         \
  do {                                                                                   \
    if (const cudaError_t train_mlp_e = (expr); train_mlp_e != cudaSuccess)              \
      return ::train_mlp::detail::cuda_failure(#expr, train_mlp_e);                      \
  } while (0)
#define TRAIN_MLP_CUBLAS_TRY(expr)                                                       \
  do {                                                                                   \
    if (const cublasStatus_t train_mlp_s = (expr); train_mlp_s != CUBLAS_STATUS_SUCCESS) \
      return ::train_mlp::detail::cublas_failure(#expr, train_mlp_s);                    \
  } while (0)
#define TRAIN_MLP_TRY(expr)                                                              \
  do {                                                                                   \
    if (actloss::Status train_mlp_st = (expr); !train_mlp_st.ok()) return train_mlp_st; \
  } while (0)

// The host compiler cannot build Thrust's kernels, so a device_vector here is only ever filled
// from a host vector (a cudaMemcpy, no kernel) and moved, never copied or resized on the device
// (containers of them are made at their full size); everything that computes is cuBLAS or actloss.
// Thrust throws where an allocation or a copy fails: init() turns that into a Status.
template <class T>
thrust::device_vector<T> device_zeros(std::size_t size) {
  return thrust::device_vector<T>(std::vector<T>(size));
}

template <class T>
T* raw(thrust::device_vector<T>& v) {
  return thrust::raw_pointer_cast(v.data());
}

struct StreamDeleter {
  void operator()(cudaStream_t s) const { cudaStreamDestroy(s); }
};
struct CublasDeleter {
  void operator()(cublasHandle_t h) const { cublasDestroy(h); }
};

struct DeviceLayer {
  int in = 0, out = 0;
  // w: row-major [in x out], as in mlp.h; the output layer's is [out x in] (one row per class,
  // as torch.nn.Linear and actloss's linear cross-entropy hold it), and so is its dw.
  bool classes_major = false;
  thrust::device_vector<float> w, b;
  thrust::device_vector<float> dw, db;
  thrust::device_vector<float> vw, vb;  // momentum
};

// The same net as mlp.h's Net, with the same member functions for train_net(); x and labels are
// host arrays, copied in, and logits() copies out.
class CudaNet {
 public:
  // Creates the stream and the cuBLAS handle, uploads make_layers()'s weights (so both nets start
  // alike) and allocates every activation for up to max_rows inputs: the whole data set, for the
  // accuracy pass.
  actloss::Status init(const Config& config, std::int64_t inputs, std::int64_t classes,
                       std::int64_t max_rows) {
    config_ = config;
    inputs_ = inputs;
    max_rows_ = max_rows;
    std::vector<Layer> host = make_layers(config, inputs, classes);
    // cuBLAS takes int sizes.
    for (const Layer& layer : host)
      if (max_rows > INT_MAX / std::max(layer.in, layer.out))
        return {actloss::StatusCode::invalid_argument, "max_rows",
                "max_rows: rows x layer width must fit in an int for cuBLAS"};

    cudaStream_t stream = nullptr;
    TRAIN_MLP_CUDA_TRY(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    stream_.reset(stream);
    cublasHandle_t handle = nullptr;
    TRAIN_MLP_CUBLAS_TRY(cublasCreate(&handle));
    cublas_.reset(handle);
    TRAIN_MLP_CUBLAS_TRY(cublasSetStream(handle, stream));

    const auto rows = static_cast<std::size_t>(max_rows);
    const std::size_t count = host.size();
    layers_ = std::vector<DeviceLayer>(count);
    pre_ = std::vector<thrust::device_vector<float>>(count);
    post_ = std::vector<thrust::device_vector<float>>(count);
    dpre_ = std::vector<thrust::device_vector<float>>(count);
    try {
      for (std::size_t l = 0; l < count; ++l) {
        const Layer& h = host[l];
        DeviceLayer& d = layers_[l];
        d.in = static_cast<int>(h.in);
        d.out = static_cast<int>(h.out);
        d.classes_major = l + 1 == count;
        d.w = d.classes_major ? transposed(h.w, h.in, h.out) : h.w;
        d.b = h.b;
        d.dw = device_zeros<float>(h.w.size());
        d.db = device_zeros<float>(h.b.size());
        d.vw = device_zeros<float>(h.w.size());
        d.vb = device_zeros<float>(h.b.size());
        pre_[l] = device_zeros<float>(rows * h.out);
        post_[l] = device_zeros<float>(rows * h.out);
        dpre_[l] = device_zeros<float>(rows * h.out);
      }
      x_ = device_zeros<float>(rows * static_cast<std::size_t>(inputs));
      // d(loss)/d(input) of a net without hidden layers: the fused loss writes it, nothing reads
      // it.
      if (count == 1) dx_ = device_zeros<float>(rows * static_cast<std::size_t>(inputs));
      labels_ = device_zeros<std::int64_t>(rows);
      loss_ = device_zeros<float>(1);
      // Bias add and bias gradient are rank-1 products with a vector of ones (see forward()).
      ones_ = std::vector<float>(rows, 1.0f);
      if (config.output == Output::sigmoid_mse) {
        const std::size_t n = rows * static_cast<std::size_t>(classes);
        probs_ = device_zeros<float>(n);
        dprobs_ = device_zeros<float>(n);
        onehot_ = device_zeros<float>(n);
      }
    } catch (const std::exception& e) {
      return {actloss::StatusCode::cuda_error, "", std::string("device memory: ") + e.what()};
    }
    return {};
  }

  // Copies x [rows x inputs] to the device and runs the forward pass there.
  actloss::Status forward(const float* x, std::int64_t rows) {
    if (rows > max_rows_)
      return {actloss::StatusCode::invalid_argument, "rows", "rows: more than init's max_rows"};
    rows_ = rows;
    const int m = static_cast<int>(rows);
    TRAIN_MLP_CUDA_TRY(cudaMemcpyAsync(raw(x_), x,
                                       static_cast<std::size_t>(rows * inputs_) * sizeof(float),
                                       cudaMemcpyHostToDevice, stream()));
    const float* in = raw(x_);
    const float one = 1.0f;
    for (std::size_t l = 0; l < layers_.size(); ++l) {
      DeviceLayer& layer = layers_[l];
      float* pre = raw(pre_[l]);
      TRAIN_MLP_TRY(
          gemm(false, layer.classes_major, m, layer.out, layer.in, in, raw(layer.w), pre));
      // pre += ones b^T. Row-major pre [rows x out] is column-major [out x rows] (see gemm()), so
      // in cuBLAS's terms that is A[out x rows] += b ones^T, one ger.
      TRAIN_MLP_CUBLAS_TRY(cublasSger(handle(), layer.out, m, &one, raw(layer.b), 1, raw(ones_),
                                      1, pre, layer.out));
      if (l + 1 == layers_.size()) break;
      actloss::ActivationForwardArgs args;
      args.n = rows * layer.out;
      args.x = pre;
      args.y = raw(post_[l]);
      TRAIN_MLP_TRY(actloss::activation_forward(args, options(), exec()));
      in = raw(post_[l]);
    }
    return {};
  }

  actloss::Status logits(std::vector<float>& out) {
    const std::size_t n = static_cast<std::size_t>(rows_ * layers_.back().out);
    out.resize(n);
    TRAIN_MLP_CUDA_TRY(cudaMemcpyAsync(out.data(), raw(pre_.back()), n * sizeof(float),
                                       cudaMemcpyDeviceToHost, stream()));
    TRAIN_MLP_CUDA_TRY(cudaStreamSynchronize(stream()));
    return {};
  }

  // Loss of the last forward pass against labels [rows] (host), and d(loss)/d(logits); with
  // softmax cross-entropy, the output layer's dw and db and d(loss)/d(its input) instead.
  actloss::Status loss_and_grad(const std::int64_t* labels, float& loss) {
    const std::int64_t rows = rows_;
    const std::int64_t classes = layers_.back().out;
    float* dlogits = raw(dpre_.back());
    if (fused_output_layer()) {
      TRAIN_MLP_CUDA_TRY(cudaMemcpyAsync(raw(labels_), labels,
                                         static_cast<std::size_t>(rows) * sizeof(std::int64_t),
                                         cudaMemcpyHostToDevice, stream()));
      // The output layer's input, hidden [rows x in], times its weight [classes x in], plus its
      // bias, into the mean cross-entropy: loss, d_hidden, d_weight and d_bias in one call.
      DeviceLayer& head = layers_.back();
      const std::size_t below = layers_.size() - 1;
      actloss::LinearCrossEntropyArgs lce;
      lce.tokens = rows;
      lce.hidden_size = head.in;
      lce.classes = head.out;
      lce.hidden = below == 0 ? raw(x_) : raw(post_[below - 1]);
      lce.weight = raw(head.w);
      lce.bias = raw(head.b);
      lce.targets = raw(labels_);
      lce.target_kind = actloss::TargetKind::class_index_i64;
      lce.loss = raw(loss_);
      lce.d_hidden = below == 0 ? raw(dx_) : raw(dpre_[below - 1]);
      lce.d_weight = raw(head.dw);
      lce.d_bias = raw(head.db);
      lce.blas_handle = handle();  // the GEMMs run on this example's handle and stream
      TRAIN_MLP_TRY(actloss::linear_cross_entropy_forward_backward(
          lce, actloss::LinearCrossEntropyOptions{}, exec()));
    } else {
      // The one-hot targets are built on the host: a few hundred bytes per batch.
      onehot_host_.assign(static_cast<std::size_t>(rows * classes), 0.0f);
      for (std::int64_t i = 0; i < rows; ++i)
        onehot_host_[static_cast<std::size_t>(i * classes + labels[i])] = 1.0f;
      TRAIN_MLP_CUDA_TRY(cudaMemcpyAsync(raw(onehot_), onehot_host_.data(),
                                         onehot_host_.size() * sizeof(float),
                                         cudaMemcpyHostToDevice, stream()));
      actloss::ActivationOptions sigmoid;
      sigmoid.activation = actloss::Activation::sigmoid;
      actloss::ActivationForwardArgs fwd;
      fwd.n = rows * classes;
      fwd.x = raw(pre_.back());
      fwd.y = raw(probs_);
      TRAIN_MLP_TRY(actloss::activation_forward(fwd, sigmoid, exec()));
      actloss::MseArgs mse;
      mse.n = rows * classes;
      mse.input = raw(probs_);
      mse.target = raw(onehot_);
      mse.loss = raw(loss_);
      mse.grad = raw(dprobs_);
      TRAIN_MLP_TRY(actloss::mse_forward_backward(mse, actloss::MseOptions{}, exec()));
      actloss::ActivationBackwardArgs bwd;
      bwd.n = rows * classes;
      bwd.saved_kind = actloss::SavedTensor::output;
      bwd.saved = raw(probs_);
      bwd.dy = raw(dprobs_);
      bwd.dx = dlogits;
      TRAIN_MLP_TRY(actloss::activation_backward(bwd, sigmoid, exec()));
    }
    // A copy and a wait per step keep the example simple; a trainer that only logs the loss
    // would sum it on the device and read it once per epoch.
    TRAIN_MLP_CUDA_TRY(cudaMemcpyAsync(&loss, raw(loss_), sizeof(float), cudaMemcpyDeviceToHost,
                                       stream()));
    TRAIN_MLP_CUDA_TRY(cudaStreamSynchronize(stream()));
    return {};
  }

  // Every layer's dw, db from d(loss)/d(logits) and the activations of the last forward pass.
  actloss::Status backward() {
    const int m = static_cast<int>(rows_);
    const float one = 1.0f, zero = 0.0f;
    std::size_t top = layers_.size();
    if (fused_output_layer()) {
      // loss_and_grad gave the output layer's gradients and d(loss)/d(post) of the layer below.
      --top;
      if (top == 0) return {};
      TRAIN_MLP_TRY(activation_backward_in_place(top - 1));
    }
    for (std::size_t l = top; l-- > 0;) {
      DeviceLayer& layer = layers_[l];
      const float* in = l == 0 ? raw(x_) : raw(post_[l - 1]);
      const float* grad = raw(dpre_[l]);  // d(loss)/d(pre-activation), [rows x out]
      if (layer.classes_major) {
        // dW [out x in] = grad^T in.
        TRAIN_MLP_TRY(gemm(true, false, layer.out, layer.in, m, grad, in, raw(layer.dw)));
      } else {
        // dW [in x out] = in^T grad.
        TRAIN_MLP_TRY(gemm(true, false, layer.in, layer.out, m, in, grad, raw(layer.dw)));
      }
      // db = grad^T ones: column-major, grad is [out x rows], so a plain gemv.
      TRAIN_MLP_CUBLAS_TRY(cublasSgemv(handle(), CUBLAS_OP_N, layer.out, m, &one, grad, layer.out,
                                       raw(ones_), 1, &zero, raw(layer.db), 1));
      if (l == 0) break;
      // d(loss)/d(post) of the layer below = grad W^T, then through its activation in place.
      float* below = raw(dpre_[l - 1]);
      TRAIN_MLP_TRY(gemm(false, !layer.classes_major, m, layer.in, layer.out, grad,
                         raw(layer.w), below));
      TRAIN_MLP_TRY(activation_backward_in_place(l - 1));
    }
    return {};
  }

  // ||dW|| of each layer, computed on the host in double as mlp.h's Net does.
  actloss::Status weight_grad_norms(std::vector<double>& norms) {
    std::vector<std::vector<float>> dw(layers_.size());
    for (std::size_t l = 0; l < layers_.size(); ++l) {
      dw[l].resize(layers_[l].dw.size());
      TRAIN_MLP_CUDA_TRY(cudaMemcpyAsync(dw[l].data(), raw(layers_[l].dw),
                                         dw[l].size() * sizeof(float), cudaMemcpyDeviceToHost,
                                         stream()));
    }
    TRAIN_MLP_CUDA_TRY(cudaStreamSynchronize(stream()));
    norms.clear();
    for (const std::vector<float>& g : dw) norms.push_back(frobenius_norm(g));
    return {};
  }

  // v = mu v - lr dW; W += v (and the same for b), as three BLAS-1 calls per tensor.
  actloss::Status sgd_step() {
    const float mu = config_.momentum, minus_lr = -config_.learning_rate, one = 1.0f;
    struct Tensor {
      float* param;
      const float* grad;
      float* velocity;
      int n;
    };
    for (DeviceLayer& layer : layers_) {
      const Tensor tensors[] = {
          {raw(layer.w), raw(layer.dw), raw(layer.vw), static_cast<int>(layer.w.size())},
          {raw(layer.b), raw(layer.db), raw(layer.vb), static_cast<int>(layer.b.size())}};
      for (const Tensor& t : tensors) {
        TRAIN_MLP_CUBLAS_TRY(cublasSscal(handle(), t.n, &mu, t.velocity, 1));
        TRAIN_MLP_CUBLAS_TRY(cublasSaxpy(handle(), t.n, &minus_lr, t.grad, 1, t.velocity, 1));
        TRAIN_MLP_CUBLAS_TRY(cublasSaxpy(handle(), t.n, &one, t.velocity, 1, t.param, 1));
      }
    }
    return {};
  }

 private:
  // Row-major C [m x n] = op(A) op(B), op(A) [m x k] and op(B) [k x n]; trans_a means A is stored
  // [k x m] (likewise B). cuBLAS is column-major, and a row-major [r x c] matrix is, byte for
  // byte, the column-major [c x r] matrix of its transpose. So this asks cuBLAS for
  // C^T = op(B)^T op(A)^T: B first, m and n swapped, each transpose flag kept with its operand,
  // and each leading dimension the row length of the matrix as stored.
  actloss::Status gemm(bool trans_a, bool trans_b, int m, int n, int k, const float* a,
                       const float* b, float* c) {
    const float one = 1.0f, zero = 0.0f;
    TRAIN_MLP_CUBLAS_TRY(cublasSgemm(handle(), trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                                     trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, n, m, k, &one, b,
                                     trans_b ? k : n, a, trans_a ? m : k, &zero, c, n));
    return {};
  }

  bool fused_output_layer() const { return config_.output == Output::softmax_cross_entropy; }

  // dpre_[l] holds d(loss)/d(post-activation) of layer l; turns it into d(loss)/d(pre).
  actloss::Status activation_backward_in_place(std::size_t l) {
    actloss::ActivationBackwardArgs args;
    args.n = rows_ * layers_[l].out;
    args.saved_kind = actloss::SavedTensor::input;  // gelu and silu need x, so keep x for all
    args.saved = raw(pre_[l]);
    args.dy = raw(dpre_[l]);
    args.dx = raw(dpre_[l]);
    return actloss::activation_backward(args, options(), exec());
  }

  // Row-major [rows x cols] -> row-major [cols x rows].
  static std::vector<float> transposed(const std::vector<float>& m, std::int64_t rows,
                                       std::int64_t cols) {
    std::vector<float> t(m.size());
    for (std::int64_t r = 0; r < rows; ++r)
      for (std::int64_t c = 0; c < cols; ++c)
        t[static_cast<std::size_t>(c * rows + r)] = m[static_cast<std::size_t>(r * cols + c)];
    return t;
  }

  actloss::ActivationOptions options() const {
    actloss::ActivationOptions o;
    o.activation = config_.activation;
    return o;
  }
  cudaStream_t stream() const { return stream_.get(); }
  cublasHandle_t handle() const { return cublas_.get(); }
  actloss::Exec exec() const { return actloss::Exec{actloss::Device::cuda, stream(), nullptr}; }

  Config config_;
  std::int64_t inputs_ = 0, max_rows_ = 0, rows_ = 0;
  // Declared first so they are destroyed last, after the buffers that work on them.
  std::unique_ptr<CUstream_st, StreamDeleter> stream_;
  std::unique_ptr<cublasContext, CublasDeleter> cublas_;
  std::vector<DeviceLayer> layers_;
  // Per layer, for up to max_rows rows: pre-activations, activations, d(loss)/d(pre).
  std::vector<thrust::device_vector<float>> pre_, post_, dpre_;
  thrust::device_vector<float> x_, dx_, ones_, loss_, probs_, dprobs_, onehot_;
  thrust::device_vector<std::int64_t> labels_;
  std::vector<float> onehot_host_;
};

}  // namespace detail

// The name of the GPU that Device::cuda trains on, as cudaGetDeviceProperties reports it; a
// cuda_error status when there is none (no device, no driver).
inline actloss::Status cuda_device_name(std::string& name) {
  int count = 0;
  if (const cudaError_t e = cudaGetDeviceCount(&count); e != cudaSuccess) {
    (void)cudaGetLastError();  // "no device" is the answer here, not an error for later calls
    return detail::cuda_failure("cudaGetDeviceCount(&count)", e);
  }
  if (count == 0)
    return {actloss::StatusCode::cuda_error, "", "cudaGetDeviceCount reports no CUDA device"};
  int device = 0;
  TRAIN_MLP_CUDA_TRY(cudaGetDevice(&device));
  cudaDeviceProp properties{};
  TRAIN_MLP_CUDA_TRY(cudaGetDeviceProperties(&properties, device));
  name = properties.name;
  return {};
}

}  // namespace train_mlp
