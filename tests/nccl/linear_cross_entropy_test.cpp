// actloss::nccl::linear_cross_entropy_forward_backward and _forward with 1, 2, 4 and 8 ranks, one
// host thread and one device per rank (the simulator's virtual devices, or as many GPUs as there
// are; a rank count past the devices is skipped): the classes cut into uneven shards (one-class
// shards, shards held by ranks out of class order), each rank with its own slices of the weight,
// bias, class weights and weight gradients, under the unsharded test's option sets; against the
// float64 oracle of the whole vocabulary (tests/cuda/linear_cross_entropy_support.h): every
// rank's loss and lse the same bits, and within tolerance; every rank's d_hidden (all-reduced)
// the whole vocabulary's input gradient; every rank's d_weight and d_bias its rows of the
// oracle's; the forward-only call the same loss bits, writing no gradient; and the refusals, with
// nothing written. In an nvcc build without a GPU every test reports SKIPPED.
#include <gtest/gtest.h>

#include <actloss/nccl.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "tests/cuda/linear_cross_entropy_support.h"
#include "tests/cuda/support.h"
#include "tests/nccl/nccl_test_support.h"

namespace actloss::test {
namespace {

using namespace linear_ce;  // NOLINT(google-build-using-namespace): this file's vocabulary

// Threads mode (ThreadSanitizer: one OS thread per CUDA thread) gets 4 tokens, the others 37.
Shape shape() {
  Shape s;
  if (threads_mode()) s.tokens = 4;
  return s;
}

// Chunks of 8 tokens (37 is not a multiple), of 3 in threads mode.
std::int64_t chunk_tokens() { return threads_mode() ? 3 : 8; }

// The shards of 67 classes for a rank count, in class order: uneven, a one-class shard among
// them from 2 ranks on.
std::vector<std::int64_t> cuts_for(int ranks) {
  switch (ranks) {
    case 1: return {0, 67};
    case 2: return {0, 66, 67};
    case 4: return {0, 17, 18, 40, 67};
    default: return {0, 1, 9, 10, 30, 31, 50, 60, 67};
  }
}

// One rank's tensors on its device (Tensors: the whole hidden states and targets, its slices of
// everything per class, its outputs poisoned, or the held weight gradients; a dense d_hidden, as
// the all-reduce runs over one contiguous buffer), a second loss and lse for the forward-only
// call, and its workspace.
struct RankTensors : Tensors {
  RankTensors(const Problem& p, std::int64_t first_class, std::int64_t classes)
      : Tensors(Device::cuda, p, first_class, classes, 0),
        loss_only(memory(Device::cuda, p.loss_count() * 4)),
        lse_only(memory(Device::cuda, p.shape.tokens * 4)) {}

  Memory loss_only, lse_only;
  DeviceBuffer workspace;
};

// Every byte of a buffer still the poison.
bool all_poisoned(const Memory& m) {
  const Bytes bytes = m.download();
  return bytes == Bytes(bytes.size(), kPoisonByte);
}

struct Outcome {
  Status status;
  Bytes loss, lse, loss_only, lse_only, d_hidden, d_weight, d_bias;
  // After the forward-only call: the gradients' buffers as they were.
  bool forward_wrote_gradients = false;
};

// Rank r holds shard (r + 1) % ranks (not class order, from 2 ranks on). Every rank: a
// communicator and a stream (on_rank_communicators), its tensors and workspace, the forward-only
// call into loss_only and lse_only (the gradient pointers set, to be left alone), then
// forward_backward.
std::vector<Outcome> run_ranks(const Problem& p, int ranks, std::int64_t max_chunk) {
  const std::vector<std::int64_t> cuts = cuts_for(ranks);
  const LinearCrossEntropyOptions options = options_of(p.c, max_chunk);
  return on_rank_communicators<Outcome>(
      ranks, [&](int rank, ncclComm_t comm, const Exec& rank_exec, Outcome& out) {
        const auto k = static_cast<std::size_t>((rank + 1) % ranks);
        RankTensors t(p, cuts[k], cuts[k + 1] - cuts[k]);
        Exec exec = rank_exec;
        std::size_t bytes = 0;
        out.status =
            nccl::linear_cross_entropy_workspace_size(t.args, options, ranks, exec, &bytes);
        if (out.status.ok()) {
          t.workspace = DeviceBuffer(std::max<std::size_t>(bytes, 1));
          exec.workspace = {t.workspace.get(), bytes};
          LinearCrossEntropyArgs forward = t.args;
          forward.loss = static_cast<float*>(t.loss_only.get());
          forward.lse = static_cast<float*>(t.lse_only.get());
          out.status = nccl::linear_cross_entropy_forward(forward, t.shard, options, comm, exec);
        }
        if (out.status.ok()) {
          EXPECT_EQ(cudaStreamSynchronize(exec.stream), cudaSuccess);
          out.forward_wrote_gradients =
              !all_poisoned(t.d_hidden) || t.d_weight.download() != t.d_weight_before;
          out.status = nccl::linear_cross_entropy_forward_backward(t.args, t.shard, options,
                                                                    comm, exec);
        }
        EXPECT_EQ(cudaStreamSynchronize(exec.stream), cudaSuccess);
        out.loss = t.loss.download();
        out.lse = t.lse.download();
        out.loss_only = t.loss_only.download();
        out.lse_only = t.lse_only.download();
        out.d_hidden = t.d_hidden.download();
        out.d_weight = t.d_weight.download();
        out.d_bias = t.d_bias.download();
      });
}

// Every rank against the oracle (linear_cross_entropy_support.h states the tolerances). d_hidden is
// every rank's share rounded to the dtype, then summed by the all-reduce in the dtype (NCCL's
// partial sums rounded too): `ranks` roundings of values up to the sum of the shares' sizes.
void check_ranks(const Problem& p, int ranks, std::int64_t max_chunk,
                 const std::vector<Outcome>& got) {
  const Oracle o = oracle_of(p);
  const std::vector<std::int64_t> cuts = cuts_for(ranks);
  const Shape& s = p.shape;
  const std::int64_t chunks = (s.tokens + max_chunk - 1) / max_chunk;
  for (int rank = 0; rank < ranks; ++rank) {
    SCOPED_TRACE("rank " + std::to_string(rank));
    const Outcome& g = got[static_cast<std::size_t>(rank)];
    ASSERT_TRUE(g.status.ok()) << g.status.message();
    EXPECT_EQ(g.loss, got[0].loss) << "the loss differs from rank 0's";
    EXPECT_EQ(g.lse, got[0].lse) << "the lse differs from rank 0's";
    EXPECT_EQ(g.loss_only, g.loss)
        << "the forward-only call's loss differs from forward_backward's";
    EXPECT_EQ(g.lse_only, g.lse) << "the forward-only call's lse differs from forward_backward's";
    EXPECT_FALSE(g.forward_wrote_gradients) << "the forward-only call wrote a gradient";
    if (rank == 0) check_loss(p, o, kSharded, g.loss, g.lse);
    check_d_hidden(p, o, kSharded, cuts,
                   read_strided(g.d_hidden, s.tokens, s.hidden, s.hidden, p.dtype), ranks,
                   "d_hidden (all-reduced)");
    const auto k = static_cast<std::size_t>((rank + 1) % ranks);
    check_weight_rows(p, o, kSharded, cuts[k], cuts[k + 1] - cuts[k], g.d_weight, g.d_bias, chunks,
                      "shard " + std::to_string(k));
  }
}

class NcclLinearCrossEntropy : public ::testing::TestWithParam<int> {};

// The unsharded test's option sets, f32 and bf16 (a bf16 d_weight in one of them); in threads
// mode two of them.
TEST_P(NcclLinearCrossEntropy, EveryRankMatchesTheWholeVocabularyOracle) {
  const int ranks = GetParam();
  ACTLOSS_REQUIRE_DEVICES(ranks);
  const std::vector<Case> all = cases();
  for (std::size_t i = 0; i < all.size(); ++i) {
    if (threads_mode() && i != 0 && i != 4) continue;
    const Case& c = all[i];
    for (DType dtype : {DType::f32, DType::bf16}) {
      if (threads_mode() && (dtype == DType::bf16) != (i == 4)) continue;
      const DType d_weight_dtype = c.accumulate && c.bias ? dtype : DType::f32;
      SCOPED_TRACE(c.name + ", " + to_string(dtype) + ", d_weight " + to_string(d_weight_dtype) +
                   ", " + std::to_string(ranks) + " ranks");
      const Problem p = make_problem(c, dtype, d_weight_dtype, shape());
      check_ranks(p, ranks, chunk_tokens(), run_ranks(p, ranks, chunk_tokens()));
      if (HasFailure()) return;  // one configuration's report is enough to read
    }
  }
}

// No tokens: every rank writes a zero mean loss and zero weight gradients; nothing crosses ranks.
TEST_P(NcclLinearCrossEntropy, NoTokensGiveZeroLossAndZeroWeightGradients) {
  const int ranks = GetParam();
  ACTLOSS_REQUIRE_DEVICES(ranks);
  Shape s = shape();
  s.tokens = 0;
  const Problem p =
      make_problem(Case{.name = "no tokens", .bias = true}, DType::f32, DType::f32, s);
  const std::vector<Outcome> got = run_ranks(p, ranks, 0);
  for (int rank = 0; rank < ranks; ++rank) {
    SCOPED_TRACE("rank " + std::to_string(rank));
    const Outcome& g = got[static_cast<std::size_t>(rank)];
    ASSERT_TRUE(g.status.ok()) << g.status.message();
    EXPECT_EQ(floats_of(g.loss), std::vector<float>{0.0f});
    const auto k = static_cast<std::size_t>((rank + 1) % ranks);
    const std::vector<std::int64_t> cuts = cuts_for(ranks);
    for (double v : read_strided(g.d_weight, cuts[k + 1] - cuts[k], s.hidden, s.d_weight_stride,
                                 DType::f32))
      ASSERT_EQ(v, 0.0);
    for (float v : floats_of(g.d_bias)) ASSERT_EQ(v, 0.0f);
  }
}

INSTANTIATE_TEST_SUITE_P(Ranks, NcclLinearCrossEntropy, ::testing::Values(1, 2, 4, 8),
                         [](const ::testing::TestParamInfo<int>& ranks) {
                           return std::to_string(ranks.param) + "ranks";
                         });

// A valid call on a one-rank communicator, to break one argument at a time.
struct OneRank : OneRankComm {
  OneRank()
      : problem(make_problem(Case{.name = "refusals", .class_weight = true, .bias = true},
                             DType::f32, DType::f32, shape())),
        tensors(problem, 0, problem.shape.classes) {
    EXPECT_TRUE(nccl::linear_cross_entropy_workspace_size(tensors.args, options, 1, exec, &bytes)
                    .ok());
    use_workspace(tensors.workspace, bytes);
    // A d_hidden with room for a row stride of hidden_size + 3.
    const std::int64_t rows = problem.shape.tokens, stride = problem.shape.hidden + 3;
    tensors.d_hidden = Memory(Device::cuda, static_cast<std::size_t>(rows * stride) * 4);
    tensors.args.d_hidden = tensors.d_hidden.get();
  }

  Problem problem;
  RankTensors tensors;
  LinearCrossEntropyOptions options = options_of(problem.c, 8);
  std::size_t bytes = 0;
};

TEST(NcclLinearCrossEntropyRefusals, BadArgumentsAreRefusedWithNothingWritten) {
  ACTLOSS_REQUIRE_DEVICES(1);
  ASSERT_EQ(cudaSetDevice(0), cudaSuccess);
  const Refusal<OneRank> refusals[] = {
      // d_hidden must be dense: the all-reduce runs over one contiguous buffer.
      {"d_hidden_row_stride", false,
       [](OneRank& s) { s.tensors.args.d_hidden_row_stride = s.problem.shape.hidden + 3; },
       "d_hidden"},
      {"exec.workspace", true, [](OneRank& s) { s.exec.workspace.bytes -= 1; }},
      {"exec.workspace", true, [](OneRank& s) { s.exec.workspace = {}; }},
      {"exec.device", true, [](OneRank& s) { s.exec.device = Device::cpu; }},
      {"shard", true, [](OneRank& s) { s.tensors.shard.total_classes -= 1; }},
      {"d_hidden", false, [](OneRank& s) { s.tensors.args.d_hidden = nullptr; }},
  };
  for (const Refusal<OneRank>& c : refusals) {
    SCOPED_TRACE(c.argument);
    OneRank s;
    c.breaks(s);
    RankTensors& t = s.tensors;
    const Bytes workspace = t.workspace.download_bytes(), d_hidden = t.d_hidden.download();
    const Status status =
        nccl::linear_cross_entropy_forward_backward(t.args, t.shard, s.options, s.comm, s.exec);
    expect_refusal(status, c);
    EXPECT_EQ(cudaStreamSynchronize(s.stream.get()), cudaSuccess);
    EXPECT_TRUE(all_poisoned(t.loss));
    EXPECT_TRUE(all_poisoned(t.lse));
    EXPECT_EQ(t.d_hidden.download(), d_hidden);
    EXPECT_EQ(t.d_weight.download(), t.d_weight_before);
    EXPECT_EQ(t.d_bias.download(), t.d_bias_before);
    if (c.workspace_untouched) {
      EXPECT_EQ(t.workspace.download_bytes(), workspace);
    }
  }
}

// The workspace: the gathered statistics (ranks x tokens x 20 bytes, aligned) then the linear
// cross-entropy's own; 0 without tokens; bad queries refused by name.
TEST(NcclLinearCrossEntropyRefusals, WorkspaceQuery) {
  LinearCrossEntropyArgs args;
  args.hidden_size = 24;
  args.classes = 7;
  check_workspace_query(nccl::linear_cross_entropy_workspace_size,
                        linear_cross_entropy_shard_workspace_size, args,
                        &LinearCrossEntropyArgs::tokens,
                        [](std::size_t bytes, std::size_t gathered, std::size_t own) {
                          EXPECT_GE(bytes, gathered + own)
                              << "the gathered statistics, then the call's own";
                          EXPECT_LE(bytes, (gathered + 255) / 256 * 256 + own)
                              << "no more than an alignment's padding";
                        });
}

}  // namespace
}  // namespace actloss::test
