// Trains a two-hidden-layer MLP on three interleaved spirals with actloss's CPU backend and exits
// 0 only when it reaches the target train accuracy within its epoch budget.
#include <cstdio>

#include "mlp.h"

int main() {
  const train_mlp::Dataset data = train_mlp::make_spirals(500, 3);

  train_mlp::Config config;  // 2 x 64 relu, softmax + cross-entropy, SGD with momentum 0.9
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
