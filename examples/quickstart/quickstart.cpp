// The smallest useful program: a cross-entropy loss and its gradient, and a BCE-with-logits loss,
// on the CPU. The same calls run on a GPU with Device::cuda, device pointers and a stream: with
// actloss's CUDA backend (QUICKSTART_CUDA), the cross-entropy runs there too, its buffers in
// thrust::device_vector.
#include <actloss/actloss.h>

#include <cstdint>
#include <cstdio>
#include <vector>

#if defined(QUICKSTART_CUDA)
#include <cuda_runtime_api.h>
#include <thrust/copy.h>
#include <thrust/device_vector.h>
#endif

namespace {

bool report(const char* what, const actloss::Status& status) {
  if (status.ok()) return true;
  std::fprintf(stderr, "%s failed: %s\n", what, status.message().c_str());
  return false;
}

#if defined(QUICKSTART_CUDA)
// `ce` with its buffers on the GPU. actloss takes raw device pointers, from Thrust as from any
// framework. This file is compiled by the host compiler, which cannot build Thrust's kernels,
// so the vectors are only copied in from host vectors and out with thrust::copy.
bool cross_entropy_on_gpu(actloss::CrossEntropyArgs ce, const actloss::CrossEntropyOptions& options,
                          const std::vector<float>& logits,
                          const std::vector<std::int64_t>& labels) {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    (void)cudaGetLastError();
    std::printf("GPU: no CUDA device here, the GPU part is skipped\n");
    return true;
  }
  const thrust::device_vector<float> d_logits = logits;
  const thrust::device_vector<std::int64_t> d_labels = labels;
  thrust::device_vector<float> d_grad = std::vector<float>(logits.size());
  thrust::device_vector<float> d_loss = std::vector<float>(1);
  ce.logits = thrust::raw_pointer_cast(d_logits.data());
  ce.targets = thrust::raw_pointer_cast(d_labels.data());
  ce.loss = thrust::raw_pointer_cast(d_loss.data());
  ce.grad = thrust::raw_pointer_cast(d_grad.data());
  const actloss::Exec exec{actloss::Device::cuda, nullptr};  // the default stream, as Thrust's
  if (!report("cross_entropy_forward_backward on the GPU",
              actloss::cross_entropy_forward_backward(ce, options, exec)))
    return false;
  float loss = 0.0f;
  std::vector<float> grad(d_grad.size());
  thrust::copy(d_loss.begin(), d_loss.end(), &loss);  // waits for the kernel
  thrust::copy(d_grad.begin(), d_grad.end(), grad.begin());
  std::printf("GPU cross-entropy: %.6f, gradient row 0: %+.6f %+.6f %+.6f\n", loss, grad[0],
              grad[1], grad[2]);
  return true;
}
#endif

}  // namespace

int main() {
  // Two samples, three classes; the second sample's label is ignored (-100), as in PyTorch.
  const std::vector<float> logits = {2.0f, 0.5f, -1.0f,  //
                                     0.1f, 0.2f, 0.3f};
  const std::vector<std::int64_t> labels = {0, -100};
  std::vector<float> grad(logits.size());
  float loss = 0.0f;

  actloss::CrossEntropyArgs ce;
  ce.rows = 2;
  ce.classes = 3;
  ce.logits = logits.data();
  ce.targets = labels.data();
  ce.target_kind = actloss::TargetKind::class_index_i64;
  ce.loss = &loss;
  ce.grad = grad.data();
  actloss::CrossEntropyOptions ce_options;  // mean, ignore_index -100
  ce_options.label_smoothing = 0.1f;
  if (!report("cross_entropy_forward_backward",
              actloss::cross_entropy_forward_backward(ce, ce_options, actloss::Exec{})))
    return 1;
  std::printf("cross-entropy (mean, label_smoothing 0.1): %.6f\n", loss);
  std::printf("gradient row 0: %+.6f %+.6f %+.6f\n", grad[0], grad[1], grad[2]);
  std::printf("gradient row 1 (ignored): %+.6f %+.6f %+.6f\n", grad[3], grad[4], grad[5]);
#if defined(QUICKSTART_CUDA)
  if (!cross_entropy_on_gpu(ce, ce_options, logits, labels)) return 1;
#endif

  // Multi-label: four independent yes/no targets, the rare positive class up-weighted.
  const std::vector<float> bce_logits = {-120.0f, -2.0f, 0.0f, 3.0f};
  const std::vector<float> bce_targets = {1.0f, 0.0f, 1.0f, 1.0f};
  const std::vector<float> pos_weight = {3.0f, 3.0f, 3.0f, 3.0f};
  float bce_loss = 0.0f;
  actloss::BceArgs bce;
  bce.rows = 1;
  bce.cols = 4;
  bce.logits = bce_logits.data();
  bce.targets = bce_targets.data();
  bce.pos_weight = pos_weight.data();
  bce.loss = &bce_loss;
  if (!report("bce_with_logits_forward",
              actloss::bce_with_logits_forward(bce, actloss::BceOptions{}, actloss::Exec{})))
    return 1;
  std::printf("BCE with logits (mean, pos_weight 3, one logit at -120): %.6f\n", bce_loss);

  std::printf("%s\n", actloss::build_info());
  return 0;
}
