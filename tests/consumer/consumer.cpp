// Uses only the installed headers and library; checks one closed form so a broken install fails.
#include <actloss/actloss.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <vector>

int main() {
  // Uniform logits: the loss of any label is log(classes).
  const std::int64_t classes = 7;
  const std::vector<float> logits(classes, 0.25f);
  const std::int32_t label = 3;
  float loss = -1.0f;
  actloss::CrossEntropyArgs args;
  args.rows = 1;
  args.classes = classes;
  args.logits = logits.data();
  args.targets = &label;
  args.target_kind = actloss::TargetKind::class_index_i32;
  args.loss = &loss;
  const actloss::Status status =
      actloss::cross_entropy_forward(args, actloss::CrossEntropyOptions{}, actloss::Exec{});
  if (!status.ok()) {
    std::fprintf(stderr, "consumer: %s\n", status.message().c_str());
    return 1;
  }
  const double expected = std::log(static_cast<double>(classes));
  std::printf("consumer: loss %.7f, expected log(7) = %.7f (%s)\n", loss, expected,
              actloss::build_info());
  return std::fabs(loss - expected) <= 1e-6 * expected ? 0 : 1;
}
