// Trains a two-hidden-layer MLP on three interleaved spirals with actloss and exits 0 only when it
// reaches the target train accuracy within its epoch budget.
//
//   train_mlp [--device cpu|cuda]
//
// cpu (the default): plain-loop matrix products and actloss's CPU backend. cuda: every tensor on
// the GPU, cuBLAS matrix products and actloss's CUDA kernels. Exit status: 0 target reached, 1
// not reached or an error, 2 bad usage or a build without the CUDA path, 77 (the usual "skipped"
// code, which CTest's SKIP_RETURN_CODE understands) --device cuda with no CUDA device present.
#include <cstdio>
#include <cstring>
#include <string>

#include "mlp.h"

int main(int argc, char** argv) {
  train_mlp::Config config;  // 2 x 64 relu, softmax + cross-entropy, SGD with momentum 0.9
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--device") == 0 && i + 1 < argc &&
        (std::strcmp(argv[i + 1], "cpu") == 0 || std::strcmp(argv[i + 1], "cuda") == 0)) {
      config.device = std::strcmp(argv[++i], "cpu") == 0 ? actloss::Device::cpu
                                                          : actloss::Device::cuda;
    } else {
      std::fprintf(stderr, "usage: train_mlp [--device cpu|cuda]\n");
      return 2;
    }
  }

  if (config.device == actloss::Device::cuda) {
    std::string gpu;
    if (actloss::Status s = train_mlp::cuda_device_name(gpu); !s.ok()) {
      if (s.code() == actloss::StatusCode::unsupported) {
        std::fprintf(stderr, "train_mlp: --device cuda: %s\n", s.message().c_str());
        return 2;
      }
      std::printf("SKIPPED: train_mlp --device cuda: no usable CUDA device (%s)\n",
                  s.message().c_str());
      return 77;
    }
    std::printf("device: %s (cuBLAS matrix products, actloss CUDA kernels)\n", gpu.c_str());
  } else {
    std::printf("device: CPU (plain-loop matrix products, actloss CPU backend)\n");
  }

  const train_mlp::Dataset data = train_mlp::make_spirals(500, 3);
  config.target_accuracy = 0.9f;
  config.on_epoch = [](int epoch, float loss, float accuracy) {
    // Every epoch would be hundreds of lines; every tenth shows the trend.
    if (epoch == 1 || epoch % 10 == 0)
      std::printf("epoch %4d  loss %.4f  train accuracy %5.1f%%\n", epoch, loss, 100.0 * accuracy);
  };

  const train_mlp::Result result = train_mlp::train(config, data);
  if (!result.error.empty()) {
    std::fprintf(stderr, "train_mlp: %s\n", result.error.c_str());
    return 1;
  }
  if (result.steps_to_target < 0) {
    std::printf("did not reach %.0f%% train accuracy in %d epochs (final %.1f%%)\n",
                100.0 * config.target_accuracy, result.epochs, 100.0 * result.final_accuracy);
    return 1;
  }
  std::printf("reached %.1f%% train accuracy after %d epochs (%lld SGD steps), loss %.4f\n",
              100.0 * result.final_accuracy, result.epochs,
              static_cast<long long>(result.steps_to_target), result.final_loss);
  return 0;
}
