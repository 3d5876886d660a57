// The smallest useful program: a cross-entropy loss and its gradient, and a BCE-with-logits loss,
// on the CPU. The same calls run on a GPU with Device::cuda, device pointers and a stream.
#include <actloss/actloss.h>

#include <cstdint>
#include <cstdio>
#include <vector>

namespace {

bool report(const char* what, const actloss::Status& status) {
  if (status.ok()) return true;
  std::fprintf(stderr, "%s failed: %s\n", what, status.message().c_str());
  return false;
}

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
