// The CUDA backend's entry points in a build without it. The public entry points validate their
// arguments first and only then reach these, so a Device::cuda call reports the same argument
// errors in every build and `unsupported` only for an otherwise valid request.
#include "host/backend.h"

namespace actloss::detail {
namespace {

Status not_built() {
  return Status(StatusCode::unsupported, "exec.device",
                "exec.device: actloss was built without the CUDA backend");
}

}  // namespace

Status cuda_require_device() { return not_built(); }
Status cuda_check_memory(Device device, const void*, const char*) {
  return device != Device::cuda ? Status{} : not_built();
}

Status cuda_cross_entropy(Pass, const CrossEntropyArgs&, const CrossEntropyOptions&,
                          const Exec&) {
  return not_built();
}

Status cuda_bce_with_logits(Pass, const BceArgs&, const BceOptions&, const Exec&) {
  return not_built();
}

Status cuda_linear_cross_entropy(Pass, const LinearCrossEntropyArgs&,
                                 const LinearCrossEntropyOptions&, std::int64_t, const Exec&) {
  return not_built();
}
Status cuda_linear_cross_entropy_shard_stats(const LinearCrossEntropyArgs&,
                                             const CrossEntropyShard&,
                                             const LinearCrossEntropyOptions&, std::int64_t,
                                             CrossEntropyShardStats*, const Exec&) {
  return not_built();
}
Status cuda_linear_cross_entropy_shard_finish(Pass, const LinearCrossEntropyArgs&,
                                              const CrossEntropyShard&,
                                              const LinearCrossEntropyOptions&, std::int64_t,
                                              const CrossEntropyShardStats*, std::int64_t,
                                              const Exec&) {
  return not_built();
}
Status cuda_linear_cross_entropy_shard_workspace_size(const LinearCrossEntropyArgs&,
                                                      const LinearCrossEntropyOptions&,
                                                      std::int64_t, std::int64_t, std::size_t*) {
  return not_built();
}
Status cuda_linear_cross_entropy_workspace_size(const LinearCrossEntropyArgs&,
                                                const LinearCrossEntropyOptions&, std::int64_t,
                                                bool, std::size_t*) {
  return not_built();
}

Status cuda_cross_entropy_workspace_size(const CrossEntropyArgs&, const CrossEntropyOptions&,
                                         std::size_t*) {
  return not_built();
}
Status cuda_cross_entropy_shard_workspace_size(const CrossEntropyArgs&,
                                               const CrossEntropyOptions&, std::size_t*) {
  return not_built();
}
Status cuda_cross_entropy_shard_stats(const CrossEntropyArgs&, const CrossEntropyShard&,
                                      const CrossEntropyOptions&, CrossEntropyShardStats*,
                                      const Exec&) {
  return not_built();
}
Status cuda_cross_entropy_shard_finish(const CrossEntropyArgs&, const CrossEntropyShard&,
                                       const CrossEntropyOptions&, const CrossEntropyShardStats*,
                                       std::int64_t, std::int64_t, const Exec&) {
  return not_built();
}
Status cuda_bce_workspace_size(const BceArgs&, const BceOptions&, std::size_t*) {
  return not_built();
}
Status cuda_mse_workspace_size(const MseArgs&, const MseOptions&, std::size_t*) {
  return not_built();
}

Status cuda_activation_forward(const ActivationForwardArgs&, const ActivationOptions&,
                               const Exec&) {
  return not_built();
}

Status cuda_activation_backward(const ActivationBackwardArgs&, const ActivationOptions&,
                                const Exec&) {
  return not_built();
}

Status cuda_swiglu_forward(const SwigluForwardArgs&, const Exec&) { return not_built(); }
Status cuda_swiglu_backward(const SwigluBackwardArgs&, const Exec&) { return not_built(); }

Status cuda_softmax_forward(const SoftmaxForwardArgs&, const SoftmaxOptions&, const Exec&) {
  return not_built();
}

Status cuda_softmax_backward(const SoftmaxBackwardArgs&, const SoftmaxOptions&, const Exec&) {
  return not_built();
}

Status cuda_mse(Pass, const MseArgs&, const MseOptions&, const Exec&) { return not_built(); }

Status cuda_take_device_error(const Exec&) { return not_built(); }

}  // namespace actloss::detail
