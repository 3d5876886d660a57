#include "host/cpu/backend.h"

namespace actloss::detail {

std::optional<Status> cpu_softmax_forward(const SoftmaxForwardArgs&, const SoftmaxOptions&) {
  return std::nullopt;
}
std::optional<Status> cpu_softmax_backward(const SoftmaxBackwardArgs&, const SoftmaxOptions&) {
  return std::nullopt;
}

}  // namespace actloss::detail
