// The vocabulary-parallel cross-entropy (cross_entropy_shard_stats, an all-gather done here by
// concatenation, cross_entropy_shard_finish) on the reference, the CPU backend and CUDA (the
// simulator build, or a GPU): random problems cut into 1 to 8 shards of uneven width, one-class
// shards and shards without any row's target among them, against the unsharded call on the
// float64 reference; the reduced loss the same bits on every shard; bad shards and gathered
// buffers refused with nothing written; out-of-range targets as the unsharded call treats them.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include <actloss/cross_entropy.h>

#include "host/half.h"
#include "tests/cuda/support.h"

namespace actloss::test {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// `count` values of `dtype` where `device` computes, rounded from `values`.
Memory typed_memory(Device device, DType dtype, const std::vector<double>& values) {
  const auto size = static_cast<std::size_t>(dtype_size(dtype));
  std::vector<std::uint8_t> bytes(values.size() * size + (values.empty() ? 1 : 0));
  for (std::size_t i = 0; i < values.size(); ++i)
    host::store_from_double(bytes.data(), dtype, static_cast<std::int64_t>(i), values[i]);
  Memory memory(device, bytes.size());
  memory.upload(bytes);
  return memory;
}

template <class T>
Memory raw_memory(Device device, const std::vector<T>& values) {
  std::vector<std::uint8_t> bytes(values.size() * sizeof(T) + (values.empty() ? 1 : 0));
  if (!values.empty()) std::memcpy(bytes.data(), values.data(), values.size() * sizeof(T));
  Memory memory(device, bytes.size());
  memory.upload(bytes);
  return memory;
}

std::vector<double> as_doubles(const std::vector<std::uint8_t>& bytes, DType dtype,
                               std::size_t count) {
  std::vector<double> values(count);
  for (std::size_t i = 0; i < count; ++i)
    values[i] = host::load_as_double(bytes.data(), dtype, static_cast<std::int64_t>(i));
  return values;
}

Exec exec_on(Device device) {
  Exec exec;
  exec.device = device;
  return exec;
}

struct Problem {
  std::int64_t rows = 0, classes = 0;
  DType dtype = DType::f32;
  TargetKind kind = TargetKind::class_index_i64;
  bool weighted = false;
  CrossEntropyOptions options;
  std::vector<double> logits, probabilities, weights;
  std::vector<std::int64_t> targets;
  std::vector<std::int64_t> cuts;  // shard k holds [cuts[k], cuts[k + 1])
  std::string name;
};

Problem random_problem(std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  const auto pick = [&](std::int64_t n) {
    return static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(n));
  };
  Problem p;
  const std::int64_t row_choices[] = {1, 3, 17, 40};
  const std::int64_t class_choices[] = {1, 2, 9, 64, 257, 1000};
  p.rows = row_choices[pick(4)];
  p.classes = class_choices[pick(6)];
  p.dtype = pick(3) == 0 ? DType::bf16 : DType::f32;
  p.kind = static_cast<TargetKind>(pick(3));
  p.weighted = pick(2) == 0;
  p.options.reduction = static_cast<Reduction>(pick(3));
  if (pick(2) == 0) p.options.label_smoothing = 0.1f;
  if (pick(3) == 0) p.options.z_loss = 1e-3f;
  if (pick(3) == 0) p.options.softcap = 15.0f;
  p.options.ignore_index = -100;

  const double spread = pick(4) == 0 ? 30.0 : 4.0;
  p.logits = random_values(static_cast<std::size_t>(p.rows * p.classes), -spread, spread, seed);
  // A confident row (one logit far above the rest: a tiny loss) and masked classes.
  if (p.rows > 1 && p.classes > 1) p.logits[static_cast<std::size_t>(p.classes + 1)] = 60.0;
  for (std::size_t i = 5; i < p.logits.size(); i += 23) p.logits[i] = -kInf;
  if (p.kind == TargetKind::probabilities) {
    p.probabilities = probability_targets(p.logits, p.rows, p.classes, seed + 1);
    // Masked classes cost an infinite loss under smoothing; keep this case finite.
    p.options.label_smoothing = 0.0f;
  } else {
    p.targets.resize(static_cast<std::size_t>(p.rows));
    for (std::int64_t r = 0; r < p.rows; ++r) {
      // A target on an unmasked class; a row masked entirely (one class) is ignored.
      std::int64_t y = p.options.ignore_index;
      for (std::int64_t tries = 0; tries < 4 * p.classes && y == p.options.ignore_index; ++tries) {
        const std::int64_t c = pick(p.classes);
        if (p.logits[static_cast<std::size_t>(r * p.classes + c)] != -kInf) y = c;
      }
      p.targets[static_cast<std::size_t>(r)] = r % 7 == 3 ? p.options.ignore_index : y;
    }
    if (p.options.label_smoothing != 0.0f) {
      for (double& x : p.logits) x = x == -kInf ? -spread : x;
    }
  }
  if (p.weighted)
    p.weights = random_values(static_cast<std::size_t>(p.classes), 0.5, 2.0, seed + 2);

  // 1 to 8 shards at random cuts (one-class shards when cuts are adjacent).
  const std::int64_t shards = 1 + pick(std::min<std::int64_t>(8, p.classes));
  std::vector<std::int64_t> cuts = {0, p.classes};
  while (static_cast<std::int64_t>(cuts.size()) < shards + 1) {
    const std::int64_t cut = 1 + pick(p.classes - 1 > 0 ? p.classes - 1 : 1);
    if (cut < p.classes && std::find(cuts.begin(), cuts.end(), cut) == cuts.end())
      cuts.push_back(cut);
  }
  std::sort(cuts.begin(), cuts.end());
  p.cuts = cuts;
  p.name = "seed " + std::to_string(seed) + ": " + std::to_string(p.rows) + " x " +
           std::to_string(p.classes) + " " + to_string(p.dtype) + ", " +
           std::to_string(shards) + " shards, kind " + std::to_string(static_cast<int>(p.kind)) +
           (p.weighted ? ", weighted" : "") + ", reduction " +
           to_string(p.options.reduction) + ", smoothing " +
           std::to_string(p.options.label_smoothing) + ", z " +
           std::to_string(p.options.z_loss) + ", softcap " + std::to_string(p.options.softcap);
  return p;
}

struct Outcome {
  std::vector<double> loss, lse, grad;  // grad dense [rows x classes]
  std::vector<std::vector<std::uint8_t>> loss_bytes;  // per shard
};

// The unsharded call on the reference.
Outcome unsharded(const Problem& p) {
  const Device device = Device::reference;
  Memory logits = typed_memory(device, p.dtype, p.logits);
  Memory targets = p.kind == TargetKind::probabilities
                       ? typed_memory(device, DType::f32, p.probabilities)
                   : p.kind == TargetKind::class_index_i32
                       ? raw_memory(device, std::vector<std::int32_t>(p.targets.begin(),
                                                                      p.targets.end()))
                       : raw_memory(device, p.targets);
  std::vector<float> weights(p.weights.begin(), p.weights.end());
  Memory weight_memory = raw_memory(device, weights);
  const std::int64_t loss_count = p.options.reduction == Reduction::none ? p.rows : 1;
  Memory loss(device, static_cast<std::size_t>(loss_count) * 4);
  Memory lse(device, static_cast<std::size_t>(p.rows) * 4);
  Memory grad(device, static_cast<std::size_t>(p.rows * p.classes) * 4);
  CrossEntropyArgs a;
  a.rows = p.rows;
  a.classes = p.classes;
  a.logits = logits.get();
  a.logits_dtype = p.dtype;
  a.targets = targets.get();
  a.target_kind = p.kind;
  a.class_weight = p.weighted ? static_cast<const float*>(weight_memory.get()) : nullptr;
  a.loss = static_cast<float*>(loss.get());
  a.lse = static_cast<float*>(lse.get());
  a.grad = grad.get();
  const Status status = cross_entropy_forward_backward(a, p.options, exec_on(device));
  EXPECT_TRUE(status.ok()) << status.message();
  Outcome out;
  out.loss = as_doubles(loss.download(), DType::f32, static_cast<std::size_t>(loss_count));
  out.lse = as_doubles(lse.download(), DType::f32, static_cast<std::size_t>(p.rows));
  out.grad = as_doubles(grad.download(), DType::f32, static_cast<std::size_t>(p.rows * p.classes));
  return out;
}

// Phase 1 on every shard, the gather by concatenation, phase 2 on every shard. Each shard's
// slices are views into the whole tensors (row stride `classes`, pointers offset to the shard's
// first class), as a rank's own tensors would be dense: the strides are part of what is tested.
// In place: each shard's gradient over its own logits, in the logits' dtype.
Outcome sharded(const Problem& p, Device device, bool in_place = false) {
  const Exec exec = exec_on(device);
  Memory logits = typed_memory(device, p.dtype, p.logits);
  Memory probabilities = typed_memory(device, DType::f32, p.probabilities);
  Memory targets = p.kind == TargetKind::class_index_i32
                       ? raw_memory(device, std::vector<std::int32_t>(p.targets.begin(),
                                                                      p.targets.end()))
                       : raw_memory(device, p.targets);
  std::vector<float> weights(p.weights.begin(), p.weights.end());
  Memory weight_memory = raw_memory(device, weights);
  const std::int64_t shards = static_cast<std::int64_t>(p.cuts.size()) - 1;
  const auto element = static_cast<std::size_t>(dtype_size(p.dtype));

  const auto shard_args = [&](std::int64_t k) {
    const std::int64_t first = p.cuts[static_cast<std::size_t>(k)];
    CrossEntropyArgs a;
    a.rows = p.rows;
    a.classes = p.cuts[static_cast<std::size_t>(k) + 1] - first;
    a.logits = static_cast<const char*>(logits.get()) + static_cast<std::size_t>(first) * element;
    a.logits_dtype = p.dtype;
    a.logits_row_stride = p.classes;
    a.target_kind = p.kind;
    if (p.kind == TargetKind::probabilities) {
      a.targets = static_cast<const float*>(probabilities.get()) + first;
      a.target_row_stride = p.classes;
    } else {
      a.targets = targets.get();
    }
    if (p.weighted) a.class_weight = static_cast<const float*>(weight_memory.get()) + first;
    return a;
  };
  const auto shard_of = [&](std::int64_t k) {
    return CrossEntropyShard{p.cuts[static_cast<std::size_t>(k)], p.classes};
  };

  const std::size_t stats_bytes = static_cast<std::size_t>(p.rows) * sizeof(CrossEntropyShardStats);
  std::vector<std::uint8_t> gathered_bytes;
  for (std::int64_t k = 0; k < shards; ++k) {
    Memory stats(device, stats_bytes);
    const Status status =
        cross_entropy_shard_stats(shard_args(k), shard_of(k), p.options,
                                  static_cast<CrossEntropyShardStats*>(stats.get()), exec);
    EXPECT_TRUE(status.ok()) << "shard " << k << ": " << status.message();
    const std::vector<std::uint8_t> bytes = stats.download();
    gathered_bytes.insert(gathered_bytes.end(), bytes.begin(), bytes.end());
  }
  Memory gathered(device, gathered_bytes.size());
  gathered.upload(gathered_bytes);

  const std::int64_t loss_count = p.options.reduction == Reduction::none ? p.rows : 1;
  Memory grad(device, static_cast<std::size_t>(p.rows * p.classes) * 4);
  Outcome out;
  for (std::int64_t k = 0; k < shards; ++k) {
    Memory loss(device, static_cast<std::size_t>(loss_count) * 4);
    Memory lse(device, static_cast<std::size_t>(p.rows) * 4);
    CrossEntropyArgs a = shard_args(k);
    a.loss = static_cast<float*>(loss.get());
    a.lse = static_cast<float*>(lse.get());
    if (in_place) {
      a.grad = const_cast<void*>(a.logits);
      a.grad_dtype = p.dtype;
    } else {
      a.grad = static_cast<float*>(grad.get()) + p.cuts[static_cast<std::size_t>(k)];
    }
    a.grad_row_stride = p.classes;
    const Status status = cross_entropy_shard_finish(
        a, shard_of(k), p.options, static_cast<const CrossEntropyShardStats*>(gathered.get()),
        shards, exec);
    EXPECT_TRUE(status.ok()) << "shard " << k << ": " << status.message();
    out.loss_bytes.push_back(loss.download());
    if (k == 0) {
      out.loss = as_doubles(out.loss_bytes.back(), DType::f32,
                            static_cast<std::size_t>(loss_count));
      out.lse = as_doubles(lse.download(), DType::f32, static_cast<std::size_t>(p.rows));
    }
  }
  out.grad = in_place ? as_doubles(logits.download(), p.dtype,
                                   static_cast<std::size_t>(p.rows * p.classes))
                      : as_doubles(grad.download(), DType::f32,
                                   static_cast<std::size_t>(p.rows * p.classes));
  return out;
}

// |got - want| <= atol + rtol |want|. Each shard's statistics are rounded to float once (five
// roundings per shard and row), the kernels' exponentials and softcap are float (a few ulp),
// and every term of a row's loss is non-negative, so the loss keeps a relative accuracy of a
// few 2^-24 per term: rtol 2e-6 covers 8 shards with room. A gradient element is A p - a_c
// (times the row's multiplier, here at most 1): its terms of size up to A (< 4 with the weights
// and smoothing here) carry those relative errors, absolutely, hence atol 2e-6 A; rtol 1e-5 for
// the float exp of p (and softcap's slope).
::testing::AssertionResult near(double got, double want, double atol, double rtol) {
  if (std::isnan(want) ? std::isnan(got) : (std::isinf(want) ? got == want
                                                              : std::fabs(got - want) <=
                                                                    atol + rtol * std::fabs(want)))
    return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "got " << got << ", want " << want;
}

class ShardedCrossEntropy : public ::testing::TestWithParam<Device> {};

TEST_P(ShardedCrossEntropy, MatchesTheUnshardedCallAndAgreesAcrossShards) {
  const Device device = GetParam();
  if (device == Device::cuda) ACTLOSS_REQUIRE_CUDA_DEVICE();
  for (std::uint64_t seed = 1; seed <= 60; ++seed) {
    const Problem p = random_problem(seed);
    SCOPED_TRACE(p.name);
    const Outcome want = unsharded(p);
    const Outcome got = sharded(p, device);
    for (std::size_t k = 1; k < got.loss_bytes.size(); ++k)
      ASSERT_EQ(got.loss_bytes[k], got.loss_bytes[0]) << "shard " << k << "'s loss differs";
    for (std::size_t i = 0; i < want.loss.size(); ++i)
      EXPECT_TRUE(near(got.loss[i], want.loss[i], 1e-6, 2e-6)) << "loss[" << i << "]";
    for (std::size_t i = 0; i < want.lse.size(); ++i)
      EXPECT_TRUE(near(got.lse[i], want.lse[i], 1e-6, 2e-6)) << "lse[" << i << "]";
    int bad = 0;
    for (std::size_t i = 0; i < want.grad.size() && bad < 5; ++i) {
      const auto result = near(got.grad[i], want.grad[i], 8e-6, 1e-5);
      if (!result) {
        ++bad;
        ADD_FAILURE() << "grad[" << i / p.classes << ", " << i % p.classes << "]: "
                      << result.message();
      }
    }
  }
}

// Each shard's gradient over its own logits (f32 and bf16): the tolerance above plus the output
// dtype's rounding (2^-24, 2^-8 relative).
TEST_P(ShardedCrossEntropy, GradientInPlaceOverEachShardsLogits) {
  const Device device = GetParam();
  if (device == Device::cuda) ACTLOSS_REQUIRE_CUDA_DEVICE();
  for (std::uint64_t seed = 200; seed < 220; ++seed) {
    const Problem p = random_problem(seed);
    SCOPED_TRACE(p.name);
    const Outcome want = unsharded(p);
    const Outcome got = sharded(p, device, /*in_place=*/true);
    const double rounding = p.dtype == DType::bf16 ? 0x1p-8 : 0x1p-24;
    int bad = 0;
    for (std::size_t i = 0; i < want.grad.size() && bad < 5; ++i) {
      const auto result = near(got.grad[i], want.grad[i], 8e-6, 1e-5 + rounding);
      if (!result) {
        ++bad;
        ADD_FAILURE() << "grad[" << i / p.classes << ", " << i % p.classes << "]: "
                      << result.message();
      }
    }
  }
}

// The shards' order in the gathered buffer is the caller's: any order gives the same loss.
TEST_P(ShardedCrossEntropy, ReducedLossIsTheSameBitsOnEveryShard) {
  const Device device = GetParam();
  if (device == Device::cuda) ACTLOSS_REQUIRE_CUDA_DEVICE();
  for (std::uint64_t seed = 100; seed < 110; ++seed) {
    Problem p = random_problem(seed);
    p.options.reduction = seed % 2 == 0 ? Reduction::mean : Reduction::sum;
    SCOPED_TRACE(p.name);
    const Outcome got = sharded(p, device);
    for (std::size_t k = 1; k < got.loss_bytes.size(); ++k)
      EXPECT_EQ(got.loss_bytes[k], got.loss_bytes[0]) << "shard " << k;
  }
}

// A small valid call of each phase, to break one argument at a time.
struct ShardSetup {
  static constexpr std::int64_t rows = 3, classes = 4, total = 10, first = 4;
  Device device;
  Memory logits, targets, stats, gathered, loss, grad;
  CrossEntropyArgs args;
  CrossEntropyShard shard{first, total};
  CrossEntropyOptions options;

  explicit ShardSetup(Device d)
      : device(d),
        logits(typed_memory(d, DType::f32, random_values(rows * classes, -2, 2, 7))),
        targets(raw_memory(d, std::vector<std::int64_t>{5, 0, 9})),
        stats(d, rows * sizeof(CrossEntropyShardStats)),
        gathered(d, 3 * rows * sizeof(CrossEntropyShardStats)),
        loss(d, 4),
        grad(d, rows * classes * 4) {
    args.rows = rows;
    args.classes = classes;
    args.logits = logits.get();
    args.targets = targets.get();
    args.loss = static_cast<float*>(loss.get());
    args.grad = grad.get();
  }
};

TEST_P(ShardedCrossEntropy, BadShardsAndGatheredBuffersAreRefusedWithNothingWritten) {
  const Device device = GetParam();
  if (device == Device::cuda) ACTLOSS_REQUIRE_CUDA_DEVICE();
  struct Case {
    const char* argument;
    void (*breaks)(ShardSetup&, std::int64_t& shards);
  };
  const Case cases[] = {
      {"shard", [](ShardSetup& s, std::int64_t&) { s.shard.first_class = 7; }},
      {"shard", [](ShardSetup& s, std::int64_t&) { s.shard.total_classes = 4; }},
      {"shard", [](ShardSetup& s, std::int64_t&) {
         s.shard.first_class = std::numeric_limits<std::int64_t>::max() - 1;
         s.shard.total_classes = std::numeric_limits<std::int64_t>::max();
       }},
      {"shard.first_class", [](ShardSetup& s, std::int64_t&) { s.shard.first_class = -1; }},
      {"shard.total_classes", [](ShardSetup& s, std::int64_t&) { s.shard.total_classes = -5; }},
      {"shards", [](ShardSetup&, std::int64_t& shards) { shards = 0; }},
      {"shards", [](ShardSetup&, std::int64_t& shards) { shards = 11; }},
      {"gathered", [](ShardSetup& s, std::int64_t&) { s.gathered = Memory(s.device, 1); }},
      {"stats", [](ShardSetup& s, std::int64_t&) {
         s.args.stats = static_cast<CrossEntropyRowStats*>(s.stats.get());
       }},
      {"predicted", [](ShardSetup& s, std::int64_t&) {
         s.args.predicted = static_cast<std::int64_t*>(s.stats.get());
       }},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.argument);
    ShardSetup s(device);
    std::int64_t shards = 3;
    c.breaks(s, shards);
    const std::vector<std::uint8_t> loss_before = s.loss.download(),
                                    grad_before = s.grad.download();
    const bool gathered_case = std::string(c.argument) == "gathered";
    const Status finish = cross_entropy_shard_finish(
        s.args, s.shard, s.options,
        gathered_case ? nullptr : static_cast<const CrossEntropyShardStats*>(s.gathered.get()),
        shards, exec_on(device));
    EXPECT_FALSE(finish.ok());
    EXPECT_EQ(finish.argument(), std::string(c.argument)) << finish.message();
    EXPECT_EQ(s.loss.download(), loss_before);
    EXPECT_EQ(s.grad.download(), grad_before);
    if (std::string(c.argument).rfind("shard", 0) == 0 && std::string(c.argument) != "shards") {
      const std::vector<std::uint8_t> stats_before = s.stats.download();
      const Status stats = cross_entropy_shard_stats(
          s.args, s.shard, s.options, static_cast<CrossEntropyShardStats*>(s.stats.get()),
          exec_on(device));
      EXPECT_FALSE(stats.ok());
      EXPECT_EQ(stats.argument(), std::string(c.argument)) << stats.message();
      EXPECT_EQ(s.stats.download(), stats_before);
    }
  }
}

// A class target outside the vocabulary (not outside the shard: 9 is another shard's) is the
// unsharded call's out-of-range case: refused on the CPU with nothing written; on CUDA recorded
// for take_device_error, with a NaN loss.
TEST_P(ShardedCrossEntropy, TargetOutsideTheVocabularyIsOutOfRange) {
  const Device device = GetParam();
  if (device == Device::cuda) ACTLOSS_REQUIRE_CUDA_DEVICE();
  ShardSetup s(device);
  s.targets = raw_memory(device, std::vector<std::int64_t>{5, 10, 9});
  s.args.targets = s.targets.get();
  const Exec exec = exec_on(device);
  const std::vector<std::uint8_t> stats_before = s.stats.download();
  const Status stats = cross_entropy_shard_stats(
      s.args, s.shard, s.options, static_cast<CrossEntropyShardStats*>(s.stats.get()), exec);
  if (device != Device::cuda) {
    EXPECT_EQ(stats.code(), StatusCode::out_of_range) << stats.message();
    EXPECT_EQ(stats.argument(), std::string("targets"));
    EXPECT_EQ(s.stats.download(), stats_before);
    return;
  }
  ASSERT_TRUE(stats.ok()) << stats.message();
  const Status error = take_device_error(exec);
  EXPECT_EQ(error.code(), StatusCode::out_of_range) << error.message();
}

INSTANTIATE_TEST_SUITE_P(Devices, ShardedCrossEntropy,
                         ::testing::Values(Device::reference, Device::cpu, Device::cuda));

}  // namespace
}  // namespace actloss::test
