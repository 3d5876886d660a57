#include "host/cpu/backend.h"

namespace actloss::detail {

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

}  // namespace actloss::detail
