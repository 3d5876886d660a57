// actloss: check and measure the library on this machine.
//
//   actloss validate [--device cpu|cuda] [--op NAME] [--quick | --smoke] [--failures-only]
//   actloss bench    [--device cpu|cuda] [--op NAME] [--quick]
//   actloss info     [--cuda-device]
//   actloss demo     [--device cpu|cuda] [--out FILE.svg] [--quick]
//   actloss <command> --help, actloss help <command>
//
// Exit status: 0 success, 1 a check failed or a benchmark errored, 2 bad usage or an
// unavailable device.
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <vector>

#include <actloss/actloss.h>

#include "benchmarks/support/memory.h"
#include "tools/commands.h"

namespace actloss::tool {

namespace {

constexpr const char* kActivationNames[] = {"relu",     "leaky_relu", "tanh", "sigmoid",
                                            "gelu_erf", "gelu_tanh",  "silu"};
constexpr const char* kOtherNames[] = {"cross_entropy", "bce_with_logits", "softmax", "log_softmax",
                                       "mse",           "swiglu",          "linear_cross_entropy"};

bool is_activation(const std::string& name) {
  for (const char* a : kActivationNames)
    if (name == a) return true;
  return false;
}

// Short names people type.
std::string canonical(const std::string& name) {
  if (name == "ce") return "cross_entropy";
  if (name == "bce") return "bce_with_logits";
  if (name == "gelu") return "gelu_erf";
  return name;
}

void usage(std::FILE* out) {
  std::fprintf(
      out,
      "usage: actloss <command> [options]\n"
      "\n"
      "commands:\n"
      "  validate  every op x dtype x dispatch path on random and adversarial inputs,\n"
      "            against the float64 reference; exit 1 on any failure\n"
      "  bench     GB/s of each op (and of the peers this build has) against the copy\n"
      "            bandwidth measured in the same run\n"
      "  info      build options, devices, and memory bandwidth measured now\n"
      "  demo      train a small MLP: softmax+CE vs sigmoid+MSE, and gradient norms\n"
      "            by depth and activation\n"
      "\n"
      "actloss <command> --help (or actloss help <command>) lists that command's options.\n");
}

// `actloss <command> --help` and `actloss help <command>`: what that command does and only the
// options it takes.
void command_usage(const std::string& command, std::FILE* out) {
  const char* device =
      "  --device cpu|cuda  one device (default: cpu, plus cuda when this build has the\n"
      "                     CUDA backend and a device)\n";
  const char* op =
      "  --op NAME          one op: cross_entropy (ce), bce_with_logits (bce), softmax,\n"
      "                     log_softmax, mse, swiglu, linear_cross_entropy (validate only),\n"
      "                     activation (all seven), or one activation: relu, leaky_relu,\n"
      "                     tanh, sigmoid, gelu_erf, gelu_tanh, silu\n";
  if (command == "validate") {
    std::fprintf(out,
                 "usage: actloss validate [--device cpu|cuda] [--op NAME] [--quick | --smoke]\n"
                 "                        [--failures-only]\n"
                 "\n"
                 "Runs every op x dtype x dispatch path on random and adversarial inputs and\n"
                 "compares each with the float64 reference; exit 1 on any failure.\n"
                 "\n"
                 "%s%s"
                 "  --quick            a representative subset: seconds rather than minutes\n"
                 "  --smoke            a smaller subset still crossing every path (for\n"
                 "                     sanitizer builds)\n"
                 "  --failures-only    list only the failing cases\n",
                 device, op);
  } else if (command == "bench") {
    std::fprintf(out,
                 "usage: actloss bench [--device cpu|cuda] [--op NAME] [--quick]\n"
                 "\n"
                 "GB/s of each op (and of the peers this build has) against the copy bandwidth\n"
                 "measured in the same run. A simulated CUDA device is measured only when\n"
                 "--device cuda asks for it.\n"
                 "\n"
                 "%s%s"
                 "  --quick            a representative subset: seconds rather than minutes\n",
                 device, op);
  } else if (command == "info") {
    std::fprintf(out,
                 "usage: actloss info [--cuda-device]\n"
                 "\n"
                 "Build options, devices, and memory bandwidth measured now.\n"
                 "\n"
                 "  --cuda-device      print nothing; exit 0 when this build can run its CUDA\n"
                 "                     kernels here (a GPU, or the simulator), 1 otherwise\n");
  } else {
    std::fprintf(out,
                 "usage: actloss demo [--device cpu|cuda] [--out FILE.svg] [--quick]\n"
                 "\n"
                 "Trains a small MLP: softmax + cross-entropy against sigmoid + MSE, and the\n"
                 "gradient norm by depth for each activation.\n"
                 "\n"
                 "  --device cpu|cuda  where to train (default: cpu)\n"
                 "  --out FILE.svg     write the loss curves as SVG\n"
                 "  --quick            fewer steps and nets\n");
  }
}

bool known_command(const std::string& command) {
  return command == "validate" || command == "bench" || command == "info" || command == "demo";
}

bool device_usable(Device device, std::string& why) {
  if (device == Device::cpu) return true;
  if (!cuda_backend_built()) {
    why = "this build has no CUDA backend (configure with nvcc, or -DACTLOSS_SIM=ON)";
    return false;
  }
  if (!bench::cuda_device_present()) {
    why = "no CUDA device found";
    return false;
  }
  return true;
}

}  // namespace

bool op_selected(const std::string& op_filter, const std::string& name) {
  if (op_filter.empty()) return true;
  const std::string wanted = canonical(op_filter);
  return wanted == name || (wanted == "activation" && is_activation(name));
}

bool op_known(const std::string& op_filter) {
  const std::string wanted = canonical(op_filter);
  if (wanted == "activation" || is_activation(wanted)) return true;
  for (const char* name : kOtherNames)
    if (wanted == name) return true;
  return false;
}

int main_with(int argc, char** argv) {
  if (argc < 2) {
    usage(stderr);
    return 2;
  }
  const std::string command = argv[1];
  if (command == "-h" || command == "--help" || command == "help") {
    if (argc >= 3 && known_command(argv[2])) {
      command_usage(argv[2], stdout);
    } else {
      usage(stdout);
    }
    return 0;
  }
  if (!known_command(command)) {
    std::fprintf(stderr, "actloss: unknown command '%s'\n\n", command.c_str());
    usage(stderr);
    return 2;
  }

  CommonOptions options;
  bool quick = false;
  bool smoke = false;
  bool failures_only = false;
  std::string device_name;
  std::string out_path;
  bool cuda_device_query = false;
  std::string cuda_why;
  for (int i = 2; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&](const char* flag) -> std::string {
      const std::string prefix = std::string(flag) + "=";
      if (arg.rfind(prefix, 0) == 0) return arg.substr(prefix.size());
      if (i + 1 >= argc) {
        std::fprintf(stderr, "actloss: %s needs a value\n", flag);
        std::exit(2);
      }
      return argv[++i];
    };
    if (arg == "--quick") {
      quick = true;
    } else if (arg == "--smoke") {
      smoke = true;
    } else if (arg == "--failures-only") {
      failures_only = true;
    } else if (arg == "--device" || arg.rfind("--device=", 0) == 0) {
      device_name = value("--device");
    } else if (arg == "--op" || arg.rfind("--op=", 0) == 0) {
      options.op = value("--op");
    } else if (command == "info" && arg == "--cuda-device") {
      cuda_device_query = true;
    } else if (command == "demo" && (arg == "--out" || arg.rfind("--out=", 0) == 0)) {
      out_path = value("--out");
    } else if (arg == "-h" || arg == "--help") {
      command_usage(command, stdout);
      return 0;
    } else {
      std::fprintf(stderr, "actloss %s: unknown option '%s'\n", command.c_str(), arg.c_str());
      return 2;
    }
  }
  if (command == "info") return cuda_device_query ? (device_usable(Device::cuda, cuda_why) ? 0 : 1)
                                                  : info();
  if (command == "demo") {
    // One device per run: the point is the comparison between configurations, not devices.
    if (device_name.empty() || device_name == "cpu") return demo(quick, out_path, Device::cpu);
    if (device_name != "cuda") {
      std::fprintf(stderr, "actloss: --device must be cpu or cuda (got '%s')\n",
                   device_name.c_str());
      return 2;
    }
    std::string why;
    if (!device_usable(Device::cuda, why)) {
      std::fprintf(stderr, "actloss demo: --device cuda: %s\n", why.c_str());
      return 2;
    }
    return demo(quick, out_path, Device::cuda);
  }

  if (!options.op.empty() && !op_known(options.op)) {
    std::fprintf(stderr, "actloss: unknown op '%s' (see actloss %s --help)\n", options.op.c_str(),
                 command.c_str());
    return 2;
  }
  // GEMM-bound, so GB/s against the copy ceiling says nothing about it: actloss_bench times it.
  if (command == "bench" && canonical(options.op) == "linear_cross_entropy") {
    std::fprintf(stderr,
                 "actloss bench: linear_cross_entropy is not measured here (its GEMMs make GB/s "
                 "meaningless); actloss_bench --benchmark_filter=/linear_cross_entropy/ "
                 "times it\n");
    return 2;
  }
  options.depth = smoke ? Depth::smoke : quick ? Depth::quick : Depth::full;

  if (device_name.empty()) {
    options.devices.push_back(Device::cpu);
    std::string why;
    const bool simulated_bench = command == "bench" && bench::simulated_cuda();
    if (device_usable(Device::cuda, why) && !simulated_bench)
      options.devices.push_back(Device::cuda);
  } else if (device_name == "cpu" || device_name == "cuda") {
    const Device device = device_name == "cpu" ? Device::cpu : Device::cuda;
    std::string why;
    if (!device_usable(device, why)) {
      std::fprintf(stderr, "actloss %s: --device cuda: %s\n", command.c_str(), why.c_str());
      return 2;
    }
    options.devices.push_back(device);
  } else {
    std::fprintf(stderr, "actloss: --device must be cpu or cuda (got '%s')\n", device_name.c_str());
    return 2;
  }

  return command == "validate" ? validate(options, failures_only) : bench(options);
}

}  // namespace actloss::tool

int main(int argc, char** argv) {
  try {
    return actloss::tool::main_with(argc, argv);
  } catch (const std::exception& error) {
    std::fprintf(stderr, "actloss: %s\n", error.what());
    return 2;
  }
}
