// The vocabulary-parallel fused linear cross-entropy (linear_cross_entropy_shard_stats, an
// all-gather done here by concatenation, linear_cross_entropy_shard_finish) on the CPU path and
// on Device::cuda, against the float64 oracle of the whole vocabulary
// (linear_cross_entropy_support.h: the unsharded test's composition, and the tolerances with
// their reasons): the classes cut into 1, 2 and 3 uneven shards (a one-class shard among them),
// each shard with its own exact-size slices of the weight, bias, class weights and weight
// gradients. Checked: the loss and lse the same bits on every shard and in the loss-only call,
// and within tolerance of the oracle; the shards' d_hidden shares summing to the oracle's
// d_hidden; each shard's d_weight and d_bias its rows of the oracle's; nothing written by phase 1
// nor past a row's elements; refusals by name with nothing written; an out-of-range target as
// the unsharded call treats it.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <actloss/actloss.h>

#include "tests/cuda/linear_cross_entropy_support.h"
#include "tests/cuda/support.h"

namespace actloss::test {
namespace {

using namespace linear_ce;  // NOLINT(google-build-using-namespace): this file's vocabulary

// Shard k holds classes [cuts[k], cuts[k + 1]): uneven, with a one-class shard first (2 shards)
// or in the middle (3 shards).
const std::vector<std::vector<std::int64_t>> kCuts = {
    {0, kClasses}, {0, 1, kClasses}, {0, 40, 41, kClasses}};

// How one sharded run is cut and chunked.
struct Sharding {
  std::vector<std::int64_t> cuts;
  std::int64_t max_chunk = 0;  // options.max_chunk_tokens; 0: the library's choice
  bool with_workspace = false;  // CUDA: exec.workspace given (else the call allocates)

  std::int64_t shards() const { return static_cast<std::int64_t>(cuts.size()) - 1; }
  std::int64_t first(std::int64_t k) const { return cuts[static_cast<std::size_t>(k)]; }
  std::int64_t width(std::int64_t k) const {
    return cuts[static_cast<std::size_t>(k) + 1] - cuts[static_cast<std::size_t>(k)];
  }
  std::string name() const {
    std::string s = std::to_string(shards()) + " shards (";
    for (std::size_t k = 0; k + 1 < cuts.size(); ++k)
      s += (k ? ", " : "") + std::to_string(cuts[k + 1] - cuts[k]);
    return s + "), chunk " + std::to_string(max_chunk) +
           (with_workspace ? ", workspace given" : "");
  }
};

// One shard's (one rank's) tensors where `device` computes (Tensors: the whole hidden states and
// targets, exact-size slices of everything per class, its outputs poisoned, or the held
// gradients for accumulate), its statistics, and the loss-only call's loss and lse.
struct ShardTensors : Tensors {
  ShardTensors(Device device, const Problem& p, std::int64_t first, std::int64_t width)
      : Tensors(device, p, first, width, kDHiddenStride),
        stats(device, kTokens * sizeof(CrossEntropyShardStats)),
        loss_only(device, static_cast<std::size_t>(p.loss_count()) * 4),
        lse_only(device, kTokens * 4) {}

  // Phase 2 for the loss alone: no gradient pointers, its own loss and lse.
  LinearCrossEntropyArgs loss_only_args() {
    LinearCrossEntropyArgs a = args;
    a.loss = static_cast<float*>(loss_only.get());
    a.lse = static_cast<float*>(lse_only.get());
    a.d_hidden = nullptr;
    a.d_hidden_row_stride = 0;
    a.d_weight = nullptr;
    a.d_weight_row_stride = 0;
    a.d_bias = nullptr;
    return a;
  }

  Memory stats, loss_only, lse_only;
};

struct ShardOutputs {
  Bytes loss, lse, loss_only, lse_only, d_hidden, d_weight, d_bias;
  Bytes d_weight_before;  // the shard's d_weight as uploaded (its padding must stay)
};

// The bytes of a strided [rows x cols] image past each row's cols elements.
Bytes padding_of(const Bytes& image, std::int64_t rows, std::int64_t cols, std::int64_t stride,
                 std::int64_t size) {
  Bytes padding;
  for (std::int64_t r = 0; r < rows; ++r) {
    const auto begin = static_cast<std::ptrdiff_t>((r * stride + cols) * size);
    const auto end = static_cast<std::ptrdiff_t>((r + 1) * stride * size);
    padding.insert(padding.end(), image.begin() + begin, image.begin() + end);
  }
  return padding;
}

// Phase 1 on every shard (with every output pointer set, which it must ignore), the gather by
// concatenation in shard order (uploaded to the device for CUDA), then on every shard phase 2
// for the loss alone and phase 2 with the gradients. The first failing status, if any.
Status run_sharded(Device device, const Problem& p, const Sharding& s,
                   std::vector<ShardOutputs>* out) {
  const LinearCrossEntropyOptions options = options_of(p.c, s.max_chunk);
  std::vector<std::unique_ptr<ShardTensors>> shards;
  for (std::int64_t k = 0; k < s.shards(); ++k)
    shards.push_back(std::make_unique<ShardTensors>(device, p, s.first(k), s.width(k)));
  std::vector<Memory> workspaces;
  workspaces.reserve(static_cast<std::size_t>(s.shards()));
  std::vector<Exec> execs;
  for (std::int64_t k = 0; k < s.shards(); ++k) {
    Exec exec;
    exec.device = device;
    std::size_t bytes = 0;
    const ShardTensors& t = *shards[static_cast<std::size_t>(k)];
    if (Status st = linear_cross_entropy_shard_workspace_size(t.args, options, exec, &bytes);
        !st.ok())
      return st;
    if (device != Device::cuda) {
      EXPECT_EQ(bytes, 0u) << "the CPU path needs no workspace";
    }
    workspaces.emplace_back(device, std::max<std::size_t>(bytes, 1));
    if (s.with_workspace && device == Device::cuda)
      exec.workspace = Workspace{workspaces.back().get(), bytes};
    execs.push_back(exec);
  }

  Bytes gathered_bytes;
  for (std::int64_t k = 0; k < s.shards(); ++k) {
    ShardTensors& t = *shards[static_cast<std::size_t>(k)];
    if (Status st = linear_cross_entropy_shard_stats(
            t.args, t.shard, options, static_cast<CrossEntropyShardStats*>(t.stats.get()),
            execs[static_cast<std::size_t>(k)]);
        !st.ok())
      return st;
  }
  if (device == Device::cuda) synchronize_or_fail();
  for (std::int64_t k = 0; k < s.shards(); ++k) {
    ShardTensors& t = *shards[static_cast<std::size_t>(k)];
    const Bytes bytes = t.stats.download();
    gathered_bytes.insert(gathered_bytes.end(), bytes.begin(), bytes.end());
    // "Ignores the outputs": phase 1 wrote none of them.
    for (const Memory* output : {&t.loss, &t.lse, &t.d_hidden}) {
      const Bytes after = output->download();
      EXPECT_EQ(after, Bytes(after.size(), kPoisonByte)) << "phase 1 wrote an output of shard "
                                                         << k;
    }
    EXPECT_EQ(t.d_weight.download(), t.d_weight_before) << "phase 1 wrote shard " << k
                                                        << "'s d_weight";
  }
  Memory gathered(device, gathered_bytes.size());
  gathered.upload(gathered_bytes);
  const auto* gathered_stats = static_cast<const CrossEntropyShardStats*>(gathered.get());

  for (std::int64_t k = 0; k < s.shards(); ++k) {
    ShardTensors& t = *shards[static_cast<std::size_t>(k)];
    const Exec& exec = execs[static_cast<std::size_t>(k)];
    if (Status st = linear_cross_entropy_shard_finish(t.loss_only_args(), t.shard, options,
                                                      gathered_stats, s.shards(), exec);
        !st.ok())
      return st;
    if (Status st = linear_cross_entropy_shard_finish(t.args, t.shard, options, gathered_stats,
                                                      s.shards(), exec);
        !st.ok())
      return st;
  }
  if (device == Device::cuda) synchronize_or_fail();
  out->clear();
  for (const auto& t : shards) {
    out->push_back({t->loss.download(), t->lse.download(), t->loss_only.download(),
                    t->lse_only.download(), t->d_hidden.download(), t->d_weight.download(),
                    t->d_bias.download(), t->d_weight_before});
  }
  return {};
}

// Every shard's outputs against the oracle (linear_cross_entropy_support.h states the
// tolerances): the loss and lse the same bits on every shard and in the loss-only call; the sum
// of the shards' d_hidden shares, taken in double here (so the only roundings of the sum are each
// share's, to the dtype); each shard's d_weight and d_bias rows.
void check(const Problem& p, const Oracle& o, const Sharding& s,
           const std::vector<ShardOutputs>& out) {
  ASSERT_EQ(static_cast<std::int64_t>(out.size()), s.shards());
  for (std::size_t k = 0; k < out.size(); ++k) {
    EXPECT_EQ(out[k].loss, out[0].loss) << "shard " << k << "'s loss differs from shard 0's";
    EXPECT_EQ(out[k].lse, out[0].lse) << "shard " << k << "'s lse differs from shard 0's";
    EXPECT_EQ(out[k].loss_only, out[k].loss)
        << "shard " << k << ": the loss-only call's loss differs from the gradient call's";
    EXPECT_EQ(out[k].lse_only, out[k].lse)
        << "shard " << k << ": the loss-only call's lse differs from the gradient call's";
  }
  check_loss(p, o, kSharded, out[0].loss, out[0].lse);

  std::vector<double> d_hidden(static_cast<std::size_t>(kTokens * kHidden), 0.0);
  for (const ShardOutputs& shard : out) {
    const std::vector<double> share =
        read_strided(shard.d_hidden, kTokens, kHidden, kDHiddenStride, p.dtype);
    for (std::size_t i = 0; i < share.size(); ++i) d_hidden[i] += share[i];
  }
  check_d_hidden(p, o, kSharded, s.cuts, d_hidden, 1.0, "d_hidden (the sum of the shares)");

  // Nothing is written past a row's elements: d_hidden's padding stays poisoned, d_weight's as
  // it was.
  const std::int64_t size = dtype_size(p.dtype), grad_size = dtype_size(p.d_weight_dtype);
  for (std::int64_t k = 0; k < s.shards(); ++k) {
    const ShardOutputs& shard = out[static_cast<std::size_t>(k)];
    const Bytes padding = padding_of(shard.d_hidden, kTokens, kHidden, kDHiddenStride, size);
    EXPECT_EQ(padding, Bytes(padding.size(), kPoisonByte)) << "shard " << k
                                                           << " wrote d_hidden's padding";
    EXPECT_EQ(padding_of(shard.d_weight, s.width(k), kHidden, kDWeightStride, grad_size),
              padding_of(shard.d_weight_before, s.width(k), kHidden, kDWeightStride, grad_size))
        << "shard " << k << " wrote d_weight's padding";
  }

  const std::int64_t chunks = s.max_chunk > 0 ? (kTokens + s.max_chunk - 1) / s.max_chunk : 1;
  for (std::int64_t k = 0; k < s.shards(); ++k) {
    const ShardOutputs& shard = out[static_cast<std::size_t>(k)];
    check_weight_rows(p, o, kSharded, s.first(k), s.width(k), shard.d_weight, shard.d_bias, chunks,
                      "shard " + std::to_string(k));
  }
}

class LinearCrossEntropyShard : public OnDevice {};

// Every option set, f32 and bf16, 1 to 3 shards, chunks of 1, 8 (not a divisor of 37) and 37
// tokens; the workspace given on some runs and allocated by the call on the others.
TEST_P(LinearCrossEntropyShard, EveryOptionMatchesTheWholeVocabularyOracle) {
  for_every_case([&](const Problem& p) {
    const Oracle o = oracle_of(p);
    for (const std::vector<std::int64_t>& cuts : kCuts) {
      for (std::int64_t chunk : {1, 8, 37}) {
        const Sharding s{cuts, chunk, chunk == 8};
        SCOPED_TRACE(s.name());
        std::vector<ShardOutputs> out;
        const Status status = run_sharded(GetParam(), p, s, &out);
        EXPECT_TRUE(status.ok()) << status.message();
        if (status.ok()) check(p, o, s, out);
        if (HasFailure()) return false;  // one configuration's report is enough to read
      }
    }
    return true;
  });
}

// d_weight and d_bias in the inputs' 16-bit dtype (one rounding per chunk), accumulated, with
// bf16 and f16 inputs.
TEST_P(LinearCrossEntropyShard, SixteenBitWeightGradient) {
  const Case c{.name = "16-bit d_weight", .smoothing = 0.05f, .bias = true, .ignore_some = true,
               .accumulate = true};
  for (DType dtype : {DType::bf16, DType::f16}) {
    SCOPED_TRACE(to_string(dtype));
    const Problem p = make_problem(c, dtype, dtype);
    const Oracle o = oracle_of(p);
    for (const Sharding& s : {Sharding{kCuts[2], 8, false}, Sharding{kCuts[1], 0, true}}) {
      SCOPED_TRACE(s.name());
      std::vector<ShardOutputs> out;
      const Status status = run_sharded(GetParam(), p, s, &out);
      ASSERT_TRUE(status.ok()) << status.message();
      check(p, o, s, out);
    }
  }
}

// The same inputs give the same bits: twice the same call, and with or without the workspace.
TEST_P(LinearCrossEntropyShard, SameBitsEveryRunWithOrWithoutWorkspace) {
  const Case c{.name = "mean", .smoothing = 0.05f, .class_weight = true, .bias = true,
               .ignore_some = true};
  const Problem p = make_problem(c, DType::bf16, DType::f32);
  std::vector<ShardOutputs> first, again, with_workspace;
  ASSERT_TRUE(run_sharded(GetParam(), p, {kCuts[2], 10, false}, &first).ok());
  ASSERT_TRUE(run_sharded(GetParam(), p, {kCuts[2], 10, false}, &again).ok());
  ASSERT_TRUE(run_sharded(GetParam(), p, {kCuts[2], 10, true}, &with_workspace).ok());
  for (const std::vector<ShardOutputs>* other : {&again, &with_workspace}) {
    for (std::size_t k = 0; k < first.size(); ++k) {
      SCOPED_TRACE("shard " + std::to_string(k));
      EXPECT_EQ(first[k].loss, (*other)[k].loss);
      EXPECT_EQ(first[k].lse, (*other)[k].lse);
      EXPECT_EQ(first[k].d_hidden, (*other)[k].d_hidden);
      EXPECT_EQ(first[k].d_weight, (*other)[k].d_weight);
      EXPECT_EQ(first[k].d_bias, (*other)[k].d_bias);
    }
  }
}

// No tokens: phase 1 writes nothing, phase 2 a zero mean loss and zero d_weight and d_bias (the
// unsharded call's "zeroed when tokens is 0"), with null statistics.
TEST_P(LinearCrossEntropyShard, NoTokensGiveZeroLossAndZeroWeightGradients) {
  const Device device = GetParam();
  const std::int64_t width = 5;
  Memory d_weight(device, width * kHidden * 4), d_bias(device, width * 4), loss(device, 4),
      d_hidden(device, 4);
  LinearCrossEntropyArgs args;
  args.hidden_size = kHidden;
  args.classes = width;
  args.d_hidden = d_hidden.get();  // given: phase 2 is the gradient pass
  args.d_weight = d_weight.get();
  args.d_bias = d_bias.get();
  args.loss = static_cast<float*>(loss.get());
  const CrossEntropyShard shard{10, kClasses};
  Exec exec;
  exec.device = device;
  std::size_t bytes = 1;
  ASSERT_TRUE(linear_cross_entropy_shard_workspace_size(args, {}, exec, &bytes).ok());
  EXPECT_EQ(bytes, 0u) << "no tokens, no workspace";
  const Status stats = linear_cross_entropy_shard_stats(args, shard, {}, nullptr, exec);
  ASSERT_TRUE(stats.ok()) << stats.message();
  const Status finish = linear_cross_entropy_shard_finish(args, shard, {}, nullptr, 3, exec);
  ASSERT_TRUE(finish.ok()) << finish.message();
  if (device == Device::cuda) synchronize_or_fail();
  for (float v : floats_of(d_weight.download())) EXPECT_EQ(v, 0.0f);
  for (float v : floats_of(d_bias.download())) EXPECT_EQ(v, 0.0f);
  EXPECT_EQ(floats_of(loss.download())[0], 0.0f);
}

// A valid last shard of three, to break one argument of one phase at a time.
TEST_P(LinearCrossEntropyShard, BadArgumentsAreNamedAndNothingIsWritten) {
  const Device device = GetParam();
  const Problem p = make_problem(Case{.name = "mean", .bias = true}, DType::f32, DType::f32);
  const Sharding s{kCuts[2], 8, false};
  // A valid gathered buffer for phase 2, from a run of the whole problem.
  Bytes gathered_bytes;
  {
    const LinearCrossEntropyOptions options = options_of(p.c, s.max_chunk);
    for (std::int64_t k = 0; k < s.shards(); ++k) {
      ShardTensors t(device, p, s.first(k), s.width(k));
      Exec exec;
      exec.device = device;
      ASSERT_TRUE(linear_cross_entropy_shard_stats(
                      t.args, t.shard, options,
                      static_cast<CrossEntropyShardStats*>(t.stats.get()), exec)
                      .ok());
      if (device == Device::cuda) synchronize_or_fail();
      const Bytes bytes = t.stats.download();
      gathered_bytes.insert(gathered_bytes.end(), bytes.begin(), bytes.end());
    }
  }

  enum class Phase { stats, finish, both };
  struct Mistake {
    const char* argument;
    const char* also;  // the other name a refusal of "one of two is required" may give, or null
    Phase phase;
    bool cuda_only;  // the workspace: CUDA's only
    void (*apply)(ShardTensors&, std::int64_t& shards, bool& gathered_null);
  };
  const Mistake mistakes[] = {
      {"shard", nullptr, Phase::both, false,
       [](ShardTensors& t, std::int64_t&, bool&) {
         // One class past the vocabulary: first_class + classes = total_classes + 1.
         t.shard.first_class = kClasses - t.args.classes + 1;
       }},
      {"shard", nullptr, Phase::both, false,
       [](ShardTensors& t, std::int64_t&, bool&) { t.shard.first_class = kClasses; }},
      {"shard.first_class", nullptr, Phase::both, false,
       [](ShardTensors& t, std::int64_t&, bool&) { t.shard.first_class = -1; }},
      {"shards", nullptr, Phase::finish, false,
       [](ShardTensors&, std::int64_t& shards, bool&) { shards = 0; }},
      {"gathered", nullptr, Phase::finish, false,
       [](ShardTensors&, std::int64_t&, bool& gathered_null) { gathered_null = true; }},
      {"d_hidden", "loss", Phase::finish, false,
       [](ShardTensors& t, std::int64_t&, bool&) {
         t.args.loss = nullptr;
         t.args.d_hidden = nullptr;
         t.args.d_hidden_row_stride = 0;
       }},
      {"hidden_row_stride", nullptr, Phase::both, false,
       [](ShardTensors& t, std::int64_t&, bool&) { t.args.hidden_row_stride = 3; }},
      // A real buffer too small (set up below): the size asked for is the more of the two
      // phases', so phase 2 with the gradients (which adds d_bias's doubles) gets one byte less
      // and phase 1 16 bytes, less than one token's logits.
      {"exec.workspace", nullptr, Phase::both, true, nullptr},
  };
  for (const Mistake& mistake : mistakes) {
    if (mistake.cuda_only && device != Device::cuda) continue;
    for (Phase phase : {Phase::stats, Phase::finish}) {
      if (mistake.phase != Phase::both && mistake.phase != phase) continue;
      SCOPED_TRACE(std::string(mistake.argument) +
                   (phase == Phase::stats ? ", phase 1" : ", phase 2"));
      ShardTensors t(device, p, s.first(2), s.width(2));  // 26 classes from class 41
      Memory gathered(device, gathered_bytes.size());
      gathered.upload(gathered_bytes);
      std::int64_t shards = s.shards();
      bool gathered_null = false;
      Exec exec;
      exec.device = device;
      LinearCrossEntropyOptions options = options_of(p.c, s.max_chunk);
      Memory workspace(device, 1 << 16);
      if (mistake.apply == nullptr) {
        std::size_t bytes = 0;
        ASSERT_TRUE(linear_cross_entropy_shard_workspace_size(t.args, options, exec, &bytes).ok());
        ASSERT_GT(bytes, 0u);
        workspace = Memory(device, bytes);
        exec.workspace = Workspace{workspace.get(), phase == Phase::stats ? 16 : bytes - 1};
      } else {
        mistake.apply(t, shards, gathered_null);
      }
      const Status status =
          phase == Phase::stats
              ? linear_cross_entropy_shard_stats(
                    t.args, t.shard, options, static_cast<CrossEntropyShardStats*>(t.stats.get()),
                    exec)
              : linear_cross_entropy_shard_finish(
                    t.args, t.shard, options,
                    gathered_null ? nullptr
                                  : static_cast<const CrossEntropyShardStats*>(gathered.get()),
                    shards, exec);
      EXPECT_EQ(status.code(), StatusCode::invalid_argument) << status.message();
      const bool named = status.argument() == mistake.argument ||
                         (mistake.also != nullptr && status.argument() == mistake.also);
      EXPECT_TRUE(named) << "named " << status.argument() << ": " << status.message();
      EXPECT_EQ(status.message().rfind(status.argument(), 0), 0u)
          << "the message starts with the argument: " << status.message();
      if (device == Device::cuda) synchronize_or_fail();
      for (const Memory* output : {&t.stats, &t.loss, &t.lse, &t.d_hidden})
        for (std::uint8_t byte : output->download()) ASSERT_EQ(byte, kPoisonByte);
      EXPECT_EQ(t.d_weight.download(), t.d_weight_before);
      EXPECT_EQ(t.d_bias.download(), t.d_bias_before);
      EXPECT_EQ(gathered.download(), gathered_bytes);
    }
  }
}

// A target outside the vocabulary (70 of 67, not merely outside a shard) is the unsharded call's
// out-of-range case: refused by both phases on the CPU, naming "targets", with nothing written;
// on CUDA recorded for take_device_error, with a NaN mean loss.
TEST_P(LinearCrossEntropyShard, TargetOutsideTheVocabularyIsOutOfRange) {
  const Device device = GetParam();
  Problem p = make_problem(Case{.name = "bad target"}, DType::f32, DType::f32);
  const std::int64_t bad = kClasses + 3;
  std::memcpy(p.targets.data() + 8 * 4, &bad, 8);
  const Sharding s{kCuts[2], 8, false};
  if (device == Device::cuda) {
    std::vector<ShardOutputs> out;
    const Status status = run_sharded(device, p, s, &out);
    ASSERT_TRUE(status.ok()) << status.message();
    for (std::size_t k = 0; k < out.size(); ++k)
      EXPECT_TRUE(std::isnan(floats_of(out[k].loss)[0])) << "shard " << k;
    Exec exec = cuda_exec();
    const Status error = take_device_error(exec);
    EXPECT_EQ(error.code(), StatusCode::out_of_range) << error.message();
    return;
  }
  const LinearCrossEntropyOptions options = options_of(p.c, s.max_chunk);
  Exec exec;
  exec.device = device;
  for (std::int64_t k = 0; k < s.shards(); ++k) {
    SCOPED_TRACE("shard " + std::to_string(k));
    ShardTensors t(device, p, s.first(k), s.width(k));
    const Status stats = linear_cross_entropy_shard_stats(
        t.args, t.shard, options, static_cast<CrossEntropyShardStats*>(t.stats.get()), exec);
    EXPECT_EQ(stats.code(), StatusCode::out_of_range) << stats.message();
    EXPECT_EQ(stats.argument(), "targets") << stats.message();
    EXPECT_NE(stats.message().find("targets"), std::string::npos) << stats.message();
    // Phase 2, from statistics of zeros (any will do: the targets are checked first).
    Memory gathered(device, static_cast<std::size_t>(s.shards() * kTokens) *
                                sizeof(CrossEntropyShardStats));
    gathered.upload(Bytes(static_cast<std::size_t>(s.shards() * kTokens) *
                              sizeof(CrossEntropyShardStats),
                          0));
    const Status finish = linear_cross_entropy_shard_finish(
        t.args, t.shard, options, static_cast<const CrossEntropyShardStats*>(gathered.get()),
        s.shards(), exec);
    EXPECT_EQ(finish.code(), StatusCode::out_of_range) << finish.message();
    EXPECT_EQ(finish.argument(), "targets") << finish.message();
    for (const Memory* output : {&t.stats, &t.loss, &t.lse, &t.d_hidden})
      for (std::uint8_t byte : output->download()) ASSERT_EQ(byte, kPoisonByte);
    EXPECT_EQ(t.d_weight.download(), t.d_weight_before);
  }
}

INSTANTIATE_TEST_SUITE_P(Devices, LinearCrossEntropyShard,
                         testing::Values(Device::cpu, Device::cuda),
                         testing::PrintToStringParamName());

}  // namespace
}  // namespace actloss::test
