#include <actloss/actloss.h>

#include "host/backend.h"
#include "host/cpu/backend.h"
#include "host/validate.h"

#ifndef ACTLOSS_VERSION_STRING
#define ACTLOSS_VERSION_STRING "0.1.0"
#endif

namespace actloss {

// Out-of-range enum values get a fixed marker rather than nullptr so that callers can print the
// result unconditionally.
const char* to_string(DType dtype) {
  switch (dtype) {
    case DType::f32: return "f32";
    case DType::f16: return "f16";
    case DType::bf16: return "bf16";
  }
  return "invalid DType";
}

const char* to_string(Reduction reduction) {
  switch (reduction) {
    case Reduction::none: return "none";
    case Reduction::sum: return "sum";
    case Reduction::mean: return "mean";
  }
  return "invalid Reduction";
}

const char* to_string(Device device) {
  switch (device) {
    case Device::cpu: return "cpu";
    case Device::cuda: return "cuda";
    case Device::reference: return "reference";
  }
  return "invalid Device";
}

const char* to_string(StatusCode code) {
  switch (code) {
    case StatusCode::ok: return "ok";
    case StatusCode::invalid_argument: return "invalid_argument";
    case StatusCode::out_of_range: return "out_of_range";
    case StatusCode::unsupported: return "unsupported";
    case StatusCode::cuda_error: return "cuda_error";
    case StatusCode::internal: return "internal";
    case StatusCode::no_device: return "no_device";
  }
  return "invalid StatusCode";
}

const char* to_string(Activation activation) {
  switch (activation) {
    case Activation::relu: return "relu";
    case Activation::leaky_relu: return "leaky_relu";
    case Activation::tanh: return "tanh";
    case Activation::sigmoid: return "sigmoid";
    case Activation::gelu_erf: return "gelu_erf";
    case Activation::gelu_tanh: return "gelu_tanh";
    case Activation::silu: return "silu";
  }
  return "invalid Activation";
}

const char* build_info() {
#if defined(ACTLOSS_WITH_CUDA) && defined(ACTLOSS_SIM)
  return "actloss " ACTLOSS_VERSION_STRING " (cpu, cuda-sim)";
#elif defined(ACTLOSS_WITH_CUDA)
  return "actloss " ACTLOSS_VERSION_STRING " (cpu, cuda)";
#else
  return "actloss " ACTLOSS_VERSION_STRING " (cpu)";
#endif
}

const char* cpu_backend() { return detail::cpu_backend_description(); }

bool cuda_backend_built() {
#ifdef ACTLOSS_WITH_CUDA
  return true;
#else
  return false;
#endif
}

Status take_device_error(const Exec& exec) {
  ACTLOSS_TRY(host::check_exec(exec));
  if (exec.device == Device::cuda) return detail::cuda_take_device_error(exec);

  // CPU ops report data errors directly; only a record the caller filled (or carried over from
  // a CUDA call) can hold one here.
  DeviceError* record = exec.device_error;
  if (record == nullptr || record->code == 0) return {};
  const DeviceError seen = *record;
  *record = DeviceError{};

  auto code = static_cast<StatusCode>(seen.code);
  const bool known_code = seen.code > 0 && seen.code <= static_cast<int>(StatusCode::internal);
  if (!known_code) code = StatusCode::internal;
  const char* argument =
      seen.argument == static_cast<std::int32_t>(detail::DeviceErrorArgument::targets)
          ? "targets"
          : "";
  if (*argument == '\0') {
    return Status(code, "",
                  host::concat("device error record: code ", seen.code, " at index ",
                               seen.index, ", value ", seen.value));
  }
  return host::make_status(code, argument, "row ", seen.index, " has value ", seen.value,
                           ", outside [0, classes) and not ignore_index");
}

}  // namespace actloss
