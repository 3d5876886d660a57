// The CPU backend's seam in a build without Highway: Device::cpu runs the float64 reference.
#include "host/cpu/backend.h"

namespace actloss::detail {

const char* cpu_backend_description() { return "float64 reference (built without Highway)"; }
bool cpu_set_simd_targets_for_testing(std::int64_t) { return false; }
bool cpu_set_bf16_instruction_for_testing(bool) { return false; }
void cpu_set_streaming_output_bytes_for_testing(std::int64_t) {}
std::int64_t cpu_runnable_simd_targets() { return 0; }
const char* cpu_simd_target_name(std::int64_t) { return "none"; }
void cpu_set_threads_for_testing(int) {}
void cpu_set_pool_spin_for_testing(std::int64_t) {}

std::optional<Status> cpu_activation_forward(const ActivationForwardArgs&,
                                             const ActivationOptions&) {
  return std::nullopt;
}
std::optional<Status> cpu_activation_backward(const ActivationBackwardArgs&,
                                              const ActivationOptions&) {
  return std::nullopt;
}
std::optional<Status> cpu_swiglu_forward(const SwigluForwardArgs&) { return std::nullopt; }
std::optional<Status> cpu_swiglu_backward(const SwigluBackwardArgs&) { return std::nullopt; }
std::optional<Status> cpu_softmax_forward(const SoftmaxForwardArgs&, const SoftmaxOptions&) {
  return std::nullopt;
}
std::optional<Status> cpu_softmax_backward(const SoftmaxBackwardArgs&, const SoftmaxOptions&) {
  return std::nullopt;
}
std::optional<Status> cpu_cross_entropy(Pass, const CrossEntropyArgs&,
                                        const CrossEntropyOptions&) {
  return std::nullopt;
}
std::optional<Status> cpu_bce_with_logits(Pass, const BceArgs&, const BceOptions&) {
  return std::nullopt;
}
std::optional<Status> cpu_mse(Pass, const MseArgs&, const MseOptions&) { return std::nullopt; }

}  // namespace actloss::detail
