// actloss::nccl::cross_entropy with 1, 2, 4 and 8 ranks, one host thread and one device per rank
// (the simulator's virtual devices, or as many GPUs as there are; a rank count past the devices
// is skipped): random problems cut into uneven shards (one-class shards, shards without any
// row's target, shards held by ranks out of class order) under every option, each rank's loss the
// same bits on every rank and within tolerance of the unsharded call on the float64 reference,
// each rank's gradient its slice of the unsharded gradient; a captured and replayed graph; and
// the refusals, with nothing written. In an nvcc build without a GPU every test reports SKIPPED.
#include <gtest/gtest.h>

#include <actloss/nccl.h>

#include <barrier>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "host/half.h"
#include "tests/cuda/support.h"
#include "tests/nccl/nccl_test_support.h"

namespace actloss::test {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// One option set of the sharded call: everything the unsharded call takes.
struct Options {
  Options(const char* set_name) : name(set_name) {}  // NOLINT: implicit, for add({"..."})
  const char* name;
  DType dtype = DType::f32;
  TargetKind kind = TargetKind::class_index_i64;
  bool weighted = false;
  bool in_place = false;  // each rank's gradient over its own logits, in their dtype
  CrossEntropyOptions options;
};

std::vector<Options> option_sets() {
  std::vector<Options> sets;
  const auto add = [&](Options o) { sets.push_back(o); };
  add({"mean"});
  {
    Options o{"class weights, int32 targets, mean"};
    o.weighted = true;
    o.kind = TargetKind::class_index_i32;
    add(o);
  }
  {
    Options o{"ignore_index -1, sum"};
    o.options.ignore_index = -1;
    o.options.reduction = Reduction::sum;
    add(o);
  }
  {
    Options o{"label smoothing and class weights, mean"};
    o.weighted = true;
    o.options.label_smoothing = 0.1f;
    add(o);
  }
  {
    Options o{"z-loss, none"};
    o.options.z_loss = 1e-3f;
    o.options.reduction = Reduction::none;
    add(o);
  }
  {
    Options o{"softcap, bf16, mean"};
    o.dtype = DType::bf16;
    o.options.softcap = 15.0f;
    add(o);
  }
  {
    Options o{"probability targets sharded with the logits, sum"};
    o.kind = TargetKind::probabilities;
    o.options.reduction = Reduction::sum;
    add(o);
  }
  {
    Options o{"bf16 gradient in place, smoothing, z-loss, softcap, none"};
    o.dtype = DType::bf16;
    o.in_place = true;
    o.options.label_smoothing = 0.05f;
    o.options.z_loss = 1e-4f;
    o.options.softcap = 30.0f;
    o.options.reduction = Reduction::none;
    add(o);
  }
  return sets;
}

struct Problem {
  Options o{""};
  std::int64_t rows = 0, classes = 0;
  std::vector<double> logits, probabilities, weights;  // [rows x classes], [classes]
  std::vector<std::int64_t> targets;
  std::vector<std::int64_t> cuts;       // shard k holds classes [cuts[k], cuts[k + 1])
  std::vector<int> shard_of_rank;       // rank r holds shard shard_of_rank[r]
  std::string name;

  std::int64_t first(int rank) const {
    return cuts[static_cast<std::size_t>(shard_of_rank[static_cast<std::size_t>(rank)])];
  }
  std::int64_t width(int rank) const {
    const auto k = static_cast<std::size_t>(shard_of_rank[static_cast<std::size_t>(rank)]);
    return cuts[k + 1] - cuts[k];
  }
  std::int64_t loss_count() const { return o.options.reduction == Reduction::none ? rows : 1; }
};

// A problem over `ranks` shards of uneven width: shard 0 holds one class, no row's target lies in
// the last shard (with 3 ranks or more), a row is ignored, a row is confident (one logit far above
// the others), some logits are -inf (masked classes), and rank r holds shard (r + seed) % ranks.
Problem make_problem(const Options& o, int ranks, std::uint64_t seed) {
  std::mt19937_64 rng(seed * 7919 + static_cast<std::uint64_t>(ranks));
  const auto pick = [&](std::int64_t n) {
    return static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(n));
  };
  Problem p;
  p.o = o;
  // Threads mode runs one OS thread per CUDA thread: fewer rows there keep the suite short.
  const std::int64_t row_choices[] = {1, 4, 9};
  p.rows = threads_mode() ? 1 + pick(3) : row_choices[pick(3)];
  const std::int64_t class_choices[] = {ranks, ranks + 3, 37, 300};
  p.classes = std::max<std::int64_t>(class_choices[pick(4)], ranks);

  std::vector<std::int64_t> cuts = {0, p.classes};
  if (ranks > 1) cuts.push_back(1);
  while (static_cast<int>(cuts.size()) < ranks + 1) {
    const std::int64_t cut = 1 + pick(p.classes - 1);
    if (std::find(cuts.begin(), cuts.end(), cut) == cuts.end()) cuts.push_back(cut);
  }
  std::sort(cuts.begin(), cuts.end());
  p.cuts = cuts;
  for (int r = 0; r < ranks; ++r)
    p.shard_of_rank.push_back(static_cast<int>((static_cast<std::uint64_t>(r) + seed) %
                                               static_cast<std::uint64_t>(ranks)));

  const double spread = pick(3) == 0 ? 25.0 : 4.0;
  const bool smoothing = o.options.label_smoothing != 0.0f;
  p.logits = random_values(static_cast<std::size_t>(p.rows * p.classes), -spread, spread, seed);
  if (p.rows > 1 && p.classes > 1) p.logits[static_cast<std::size_t>(p.classes + 1)] = 60.0;
  // Masked classes; not under smoothing, which puts mass on every class (an infinite loss).
  if (!smoothing)
    for (std::size_t i = 3; i < p.logits.size(); i += 17) p.logits[i] = -kInf;
  const std::int64_t target_classes =
      ranks >= 3 ? cuts[static_cast<std::size_t>(ranks) - 1] : p.classes;
  if (o.kind == TargetKind::probabilities) {
    p.probabilities = probability_targets(p.logits, p.rows, p.classes, seed + 1);
  } else {
    for (std::int64_t r = 0; r < p.rows; ++r) {
      std::int64_t y = o.options.ignore_index;
      for (int tries = 0; tries < 64 && y == o.options.ignore_index; ++tries) {
        const std::int64_t c = pick(target_classes);
        if (p.logits[static_cast<std::size_t>(r * p.classes + c)] != -kInf) y = c;
      }
      p.targets.push_back(r % 4 == 2 ? o.options.ignore_index : y);
    }
  }
  if (o.weighted) p.weights = random_values(static_cast<std::size_t>(p.classes), 0.5, 2.0, seed + 2);

  p.name = std::string(o.name) + "; seed " + std::to_string(seed) + ", " + std::to_string(ranks) +
           " ranks, " + std::to_string(p.rows) + " x " + std::to_string(p.classes);
  return p;
}

std::vector<double> as_doubles(const std::vector<std::uint8_t>& bytes, DType dtype) {
  std::vector<double> values(bytes.size() / static_cast<std::size_t>(dtype_size(dtype)));
  for (std::size_t i = 0; i < values.size(); ++i)
    values[i] = host::load_as_double(bytes.data(), dtype, static_cast<std::int64_t>(i));
  return values;
}

std::vector<std::uint8_t> typed_bytes(const std::vector<double>& values, DType dtype) {
  std::vector<std::uint8_t> bytes(values.size() * static_cast<std::size_t>(dtype_size(dtype)));
  for (std::size_t i = 0; i < values.size(); ++i)
    host::store_from_double(bytes.data(), dtype, static_cast<std::int64_t>(i), values[i]);
  return bytes;
}

// Columns [first, first + width) of a [rows x classes] matrix.
std::vector<double> columns(const std::vector<double>& dense, std::int64_t rows,
                            std::int64_t classes, std::int64_t first, std::int64_t width) {
  std::vector<double> out;
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t c = first; c < first + width; ++c)
      out.push_back(dense[static_cast<std::size_t>(r * classes + c)]);
  return out;
}

struct Outcome {
  Status status;
  std::vector<std::uint8_t> loss, lse;  // bytes
  std::vector<double> grad;             // [rows x width] (the whole vocabulary's for the reference)
};

// The unsharded call on the float64 reference, from the logits as the device holds them.
Outcome unsharded(const Problem& p) {
  const std::vector<std::uint8_t> logits = typed_bytes(p.logits, p.o.dtype);
  const std::vector<float> probabilities(p.probabilities.begin(), p.probabilities.end());
  const std::vector<std::int32_t> targets32(p.targets.begin(), p.targets.end());
  const std::vector<float> weights(p.weights.begin(), p.weights.end());
  std::vector<float> loss(static_cast<std::size_t>(p.loss_count())), lse(p.rows),
      grad(static_cast<std::size_t>(p.rows * p.classes));
  CrossEntropyArgs a;
  a.rows = p.rows;
  a.classes = p.classes;
  a.logits = logits.data();
  a.logits_dtype = p.o.dtype;
  a.target_kind = p.o.kind;
  a.targets = p.o.kind == TargetKind::probabilities   ? static_cast<const void*>(probabilities.data())
              : p.o.kind == TargetKind::class_index_i32 ? static_cast<const void*>(targets32.data())
                                                        : static_cast<const void*>(p.targets.data());
  a.class_weight = p.o.weighted ? weights.data() : nullptr;
  a.loss = loss.data();
  a.lse = lse.data();
  a.grad = grad.data();
  Exec exec;
  exec.device = Device::reference;
  Outcome out;
  out.status = cross_entropy_forward_backward(a, p.o.options, exec);
  out.loss.resize(loss.size() * 4);
  std::memcpy(out.loss.data(), loss.data(), out.loss.size());
  out.lse.resize(lse.size() * 4);
  std::memcpy(out.lse.data(), lse.data(), out.lse.size());
  out.grad.assign(grad.begin(), grad.end());
  return out;
}

// One rank's tensors on its device: its slices of the logits, probability targets and class
// weights, the whole targets, its outputs (poisoned), and the workspace.
struct RankTensors {
  RankTensors(const Problem& p, int rank) : first(p.first(rank)), width(p.width(rank)) {
    const DType dtype = p.o.dtype;
    logits = upload_bytes(typed_bytes(columns(p.logits, p.rows, p.classes, first, width), dtype));
    if (p.o.kind == TargetKind::probabilities) {
      const std::vector<double> q = columns(p.probabilities, p.rows, p.classes, first, width);
      targets = upload_vector(std::vector<float>(q.begin(), q.end()));
    } else if (p.o.kind == TargetKind::class_index_i32) {
      targets = upload_vector(std::vector<std::int32_t>(p.targets.begin(), p.targets.end()));
    } else {
      targets = upload_vector(p.targets);
    }
    if (p.o.weighted) {
      weights = upload_vector(std::vector<float>(p.weights.begin() + first,
                                                 p.weights.begin() + first + width));
    }
    loss = poisoned(static_cast<std::size_t>(p.loss_count()) * 4);
    lse = poisoned(static_cast<std::size_t>(p.rows) * 4);
    if (!p.o.in_place) grad = poisoned(static_cast<std::size_t>(p.rows * width) * 4);

    args.rows = p.rows;
    args.classes = width;
    args.logits = logits.get();
    args.logits_dtype = dtype;
    args.targets = targets.get();
    args.target_kind = p.o.kind;
    args.class_weight = p.o.weighted ? weights.as<float>() : nullptr;
    args.loss = loss.as<float>();
    args.lse = lse.as<float>();
    args.grad = p.o.in_place ? logits.get() : grad.get();
    args.grad_dtype = p.o.in_place ? dtype : DType::f32;
    shard = {first, p.classes};
  }

  static DeviceBuffer upload_bytes(const std::vector<std::uint8_t>& bytes) {
    DeviceBuffer buffer(bytes.size());
    buffer.upload_bytes(bytes.data(), bytes.size());
    return buffer;
  }
  static DeviceBuffer poisoned(std::size_t bytes) {
    DeviceBuffer buffer(bytes);
    buffer.fill_bytes(kPoisonByte);
    return buffer;
  }

  Outcome outcome(const Problem& p, Status status) const {
    Outcome out;
    out.status = std::move(status);
    out.loss = loss.download_bytes();
    out.lse = lse.download_bytes();
    out.grad = p.o.in_place ? as_doubles(logits.download_bytes(), p.o.dtype)
                            : as_doubles(grad.download_bytes(), DType::f32);
    return out;
  }

  std::int64_t first, width;
  DeviceBuffer logits, targets, weights, loss, lse, grad, workspace;
  CrossEntropyArgs args;
  CrossEntropyShard shard;
};

// A communicator and a stream per rank (on_rank_communicators), the rank's tensors and its
// workspace, then `call` on them; every rank's outcome.
std::vector<Outcome> run_sharded(
    const Problem& p, int ranks,
    const std::function<Status(RankTensors&, ncclComm_t, const Exec&)>& call) {
  return on_rank_communicators<Outcome>(
      ranks, [&](int rank, ncclComm_t comm, const Exec& rank_exec, Outcome& out) {
        RankTensors t(p, rank);
        Exec exec = rank_exec;
        std::size_t bytes = 0;
        out.status = nccl::cross_entropy_workspace_size(t.args, p.o.options, ranks, exec, &bytes);
        if (out.status.ok()) {
          t.workspace = DeviceBuffer(bytes);
          exec.workspace = {t.workspace.get(), bytes};
          Status status = call(t, comm, exec);
          // The stream is non-blocking: cudaMemcpy's downloads would not wait for it.
          EXPECT_EQ(cudaStreamSynchronize(exec.stream), cudaSuccess);
          out = t.outcome(p, std::move(status));
        }
      });
}

// |got - want| <= atol + rtol |want|, the shard test's rule (tests/cuda/cross_entropy_shard_test.cpp,
// where the bounds are derived): each shard's statistics are rounded to float once, the kernels'
// exponentials and softcap are float, and every term of a row's loss is non-negative, so the
// loss keeps a relative accuracy of a few 2^-24 per shard (rtol 2e-6 covers 8); a gradient
// element A p - a_c carries those errors on terms up to A (< 4 here), hence atol 8e-6, and
// rtol 1e-5 for the float exp of p and softcap's slope.
::testing::AssertionResult near(double got, double want, double atol, double rtol) {
  if (std::isnan(want) ? std::isnan(got)
                       : (std::isinf(want) ? got == want
                                           : std::fabs(got - want) <= atol + rtol * std::fabs(want)))
    return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "got " << got << ", want " << want;
}

void expect_matches_unsharded(const Problem& p, const std::vector<Outcome>& got) {
  SCOPED_TRACE(p.name);
  const Outcome want = unsharded(p);
  ASSERT_TRUE(want.status.ok()) << want.status.message();
  const std::vector<double> want_loss = as_doubles(want.loss, DType::f32);
  const std::vector<double> want_lse = as_doubles(want.lse, DType::f32);
  // An in-place gradient is rounded to the logits' dtype: 2^-8 relative more for bf16.
  const double grad_rtol =
      1e-5 + (p.o.in_place && p.o.dtype == DType::bf16 ? 0x1p-8 : 0.0);
  for (std::size_t rank = 0; rank < got.size(); ++rank) {
    SCOPED_TRACE("rank " + std::to_string(rank));
    const Outcome& g = got[rank];
    ASSERT_TRUE(g.status.ok()) << g.status.message();
    // Every rank computes its loss and lse from the same gathered bytes.
    EXPECT_EQ(g.loss, got[0].loss) << "the loss differs between ranks";
    EXPECT_EQ(g.lse, got[0].lse) << "the lse differs between ranks";
    const std::vector<double> loss = as_doubles(g.loss, DType::f32);
    for (std::size_t i = 0; i < want_loss.size(); ++i)
      EXPECT_TRUE(near(loss[i], want_loss[i], 1e-6, 2e-6)) << "loss[" << i << "]";
    const std::vector<double> lse = as_doubles(g.lse, DType::f32);
    for (std::size_t i = 0; i < want_lse.size(); ++i)
      EXPECT_TRUE(near(lse[i], want_lse[i], 1e-6, 2e-6)) << "lse[" << i << "]";
    const int r = static_cast<int>(rank);
    const std::vector<double> slice =
        columns(want.grad, p.rows, p.classes, p.first(r), p.width(r));
    ASSERT_EQ(g.grad.size(), slice.size());
    int bad = 0;
    for (std::size_t i = 0; i < slice.size() && bad < 5; ++i) {
      if (const auto result = near(g.grad[i], slice[i], 8e-6, grad_rtol); !result) {
        ++bad;
        ADD_FAILURE() << "grad[" << i / static_cast<std::size_t>(p.width(r)) << ", "
                      << i % static_cast<std::size_t>(p.width(r)) << "] of the shard: "
                      << result.message();
      }
    }
  }
}

Status call_adapter(RankTensors& t, ncclComm_t comm, const Exec& exec, const Options& o) {
  return nccl::cross_entropy(t.args, t.shard, o.options, comm, exec);
}

class NcclCrossEntropy : public ::testing::TestWithParam<int> {};

// Every option set, and random problems besides, at this rank count.
TEST_P(NcclCrossEntropy, MatchesTheUnshardedCallOnEveryRank) {
  const int ranks = GetParam();
  ACTLOSS_REQUIRE_DEVICES(ranks);
  const std::vector<Options> sets = option_sets();
  const std::uint64_t seeds = threads_mode() ? 1 : 2;
  for (std::uint64_t seed = 1; seed <= seeds; ++seed) {
    for (const Options& o : sets) {
      const Problem p = make_problem(o, ranks, seed);
      expect_matches_unsharded(
          p, run_sharded(p, ranks, [&](RankTensors& t, ncclComm_t comm, const Exec& exec) {
            return call_adapter(t, comm, exec, o);
          }));
    }
  }
}

// Captured on every rank after a first call (which makes the stream's data-error record), then
// replayed on new logits: nothing is written while capturing, and the replay computes the new
// problem's loss and gradient.
TEST_P(NcclCrossEntropy, CapturedGraphReplaysOnNewLogits) {
  const int ranks = GetParam();
  ACTLOSS_REQUIRE_DEVICES(ranks);
  Options o{"captured: class weights, smoothing, mean"};
  o.weighted = true;
  o.options.label_smoothing = 0.1f;
  const Problem first = make_problem(o, ranks, 11);
  Problem second = first;
  for (double& x : second.logits) x = x * -0.5 + 1.0;
  second.name += ", replayed on new logits";
  std::vector<std::vector<std::uint8_t>> loss_after_capture(static_cast<std::size_t>(ranks));
  // The simulator treats every capture as global: no rank may allocate or copy synchronously
  // while another captures, hence the barriers around the captures.
  std::barrier sync(ranks);
  const std::vector<Outcome> got =
      run_sharded(first, ranks, [&](RankTensors& t, ncclComm_t comm, const Exec& exec) {
        int rank = 0;
        EXPECT_EQ(ncclCommUserRank(comm, &rank), ncclSuccess);
        const Status warm = call_adapter(t, comm, exec, o);
        // Done before the poison below (a non-blocking stream: cudaMemset would not wait).
        EXPECT_EQ(cudaStreamSynchronize(exec.stream), cudaSuccess);
        const std::vector<std::uint8_t> logits =
            typed_bytes(columns(second.logits, second.rows, second.classes, t.first, t.width),
                        o.dtype);
        t.loss.fill_bytes(kPoisonByte);
        sync.arrive_and_wait();
        cudaGraph_t graph = nullptr;
        Status captured = warm;
        if (warm.ok()) {
          EXPECT_EQ(cudaStreamBeginCapture(exec.stream, cudaStreamCaptureModeThreadLocal),
                    cudaSuccess);
          captured = call_adapter(t, comm, exec, o);
          EXPECT_EQ(cudaStreamEndCapture(exec.stream, &graph), cudaSuccess);
        }
        sync.arrive_and_wait();
        loss_after_capture[static_cast<std::size_t>(rank)] = t.loss.download_bytes();
        if (!captured.ok()) return captured;
        if (graph == nullptr) return Status(StatusCode::internal, "", "the capture made no graph");
        cudaGraphExec_t instance = nullptr;
        EXPECT_EQ(cudaGraphInstantiate(&instance, graph, 0), cudaSuccess);
        t.logits.upload_bytes(logits.data(), logits.size());
        const cudaError_t launched = cudaGraphLaunch(instance, exec.stream);
        EXPECT_EQ(cudaStreamSynchronize(exec.stream), cudaSuccess);
        EXPECT_EQ(cudaGraphExecDestroy(instance), cudaSuccess);
        EXPECT_EQ(cudaGraphDestroy(graph), cudaSuccess);
        if (launched != cudaSuccess)
          return Status(StatusCode::cuda_error, "",
                        std::string("cudaGraphLaunch: ") + cudaGetErrorString(launched));
        return Status{};
      });
  for (int r = 0; r < ranks; ++r) {
    EXPECT_EQ(loss_after_capture[static_cast<std::size_t>(r)],
              std::vector<std::uint8_t>(4, kPoisonByte))
        << "rank " << r << ": the capture wrote the loss";
  }
  expect_matches_unsharded(second, got);
}

// A valid call on a one-rank communicator, to break one argument at a time.
struct OneRank : OneRankComm {
  OneRank() : problem(make_problem(options(), 1, 5)), tensors(problem, 0) {
    std::size_t bytes = 0;
    EXPECT_TRUE(
        nccl::cross_entropy_workspace_size(tensors.args, problem.o.options, 1, exec, &bytes).ok());
    use_workspace(tensors.workspace, bytes);
  }
  static Options options() {
    Options o{"refusals"};
    o.weighted = true;
    return o;
  }

  Problem problem;
  RankTensors tensors;
  ncclComm_t comm_for_call = nullptr;  // the communicator the call gets
};

TEST(NcclCrossEntropyRefusals, BadArgumentsAreRefusedWithNothingWritten) {
  ACTLOSS_REQUIRE_DEVICES(1);
  ASSERT_EQ(cudaSetDevice(0), cudaSuccess);
  // workspace_untouched: refused before the gather; else by phase 2, where only the workspace
  // may have been written.
  const Refusal<OneRank> cases[] = {
      {"exec.device", true, [](OneRank& s) { s.exec.device = Device::cpu; }},
      {"exec.device", true, [](OneRank& s) { s.exec.device = Device::reference; }},
      {"comm", true, [](OneRank& s) { s.comm_for_call = nullptr; }},
      {"exec.workspace", true, [](OneRank& s) { s.exec.workspace = {}; }},
      {"exec.workspace", true, [](OneRank& s) { s.exec.workspace.bytes -= 1; }},
      {"exec.workspace", true,
       [](OneRank& s) { s.exec.workspace.data = static_cast<char*>(s.exec.workspace.data) + 4; }},
      {"shard.first_class", true, [](OneRank& s) { s.tensors.shard.first_class = -1; }},
      {"shard", true, [](OneRank& s) { s.tensors.shard.total_classes -= 1; }},
      {"logits", true, [](OneRank& s) { s.tensors.args.logits = nullptr; }},
      {"predicted", true,
       [](OneRank& s) { s.tensors.args.predicted = s.tensors.workspace.as<std::int64_t>(); }},
      {"grad_row_stride", false, [](OneRank& s) { s.tensors.args.grad_row_stride = -1; }},
      {"grad_scale", false,
       [](OneRank& s) { s.tensors.args.grad_scale = std::numeric_limits<float>::infinity(); }},
  };
  for (const Refusal<OneRank>& c : cases) {
    SCOPED_TRACE(c.argument);
    OneRank s;
    s.comm_for_call = s.comm;
    c.breaks(s);
    const std::vector<std::uint8_t> loss = s.tensors.loss.download_bytes(),
                                    grad = s.tensors.grad.download_bytes(),
                                    workspace = s.tensors.workspace.download_bytes();
    const Status status = nccl::cross_entropy(s.tensors.args, s.tensors.shard,
                                              s.problem.o.options, s.comm_for_call, s.exec);
    expect_refusal(status, c);
    EXPECT_EQ(cudaStreamSynchronize(s.stream.get()), cudaSuccess);
    EXPECT_EQ(s.tensors.loss.download_bytes(), loss);
    EXPECT_EQ(s.tensors.grad.download_bytes(), grad);
    if (c.workspace_untouched) {
      EXPECT_EQ(s.tensors.workspace.download_bytes(), workspace);
    }
  }
}

// The workspace: the gathered statistics (ranks x rows x 20 bytes) aligned to 16 bytes, then
// phase 2's scratch; 0 without rows; bad queries refused by name.
TEST(NcclCrossEntropyRefusals, WorkspaceQuery) {
  CrossEntropyArgs args;
  args.classes = 7;
  check_workspace_query(nccl::cross_entropy_workspace_size, cross_entropy_shard_workspace_size,
                        args, &CrossEntropyArgs::rows,
                        [](std::size_t bytes, std::size_t gathered, std::size_t finish) {
                          EXPECT_EQ(bytes, (gathered + 15) / 16 * 16 + finish)
                              << "the gathered statistics, then phase 2's scratch";
                        });
}

// The communicator must be of the current device, and hold no more ranks than classes; both
// refused before any collective, so no rank is left waiting.
TEST(NcclCrossEntropyRefusals, CommunicatorAgainstDeviceAndVocabulary) {
  ACTLOSS_REQUIRE_DEVICES(2);
  ASSERT_EQ(cudaSetDevice(0), cudaSuccess);
  {
    OneRank s;
    ncclComm_t on_device_1 = nullptr;
    const int devices[] = {1};
    ASSERT_EQ(ncclCommInitAll(&on_device_1, 1, devices), ncclSuccess);
    const Status status = nccl::cross_entropy(s.tensors.args, s.tensors.shard,
                                              s.problem.o.options, on_device_1, s.exec);
    EXPECT_EQ(status.argument(), "comm") << status.message();
    EXPECT_NE(status.message().find("cudaSetDevice(1)"), std::string::npos) << status.message();
    EXPECT_EQ(ncclCommDestroy(on_device_1), ncclSuccess);
  }
  ncclComm_t comms[2] = {};
  ASSERT_EQ(ncclCommInitAll(comms, 2, nullptr), ncclSuccess);
  Options o{"one class"};
  Problem p = make_problem(o, 1, 3);
  p.classes = 1;
  p.cuts = {0, 1};
  p.logits.assign(static_cast<std::size_t>(p.rows), 0.5);
  p.targets.assign(static_cast<std::size_t>(p.rows), 0);
  {
    TestStream stream;
    RankTensors t(p, 0);
    t.workspace = DeviceBuffer(4096);
    Exec exec;
    exec.device = Device::cuda;
    exec.stream = stream.get();
    exec.workspace = {t.workspace.get(), 4096};
    const std::vector<std::uint8_t> loss = t.loss.download_bytes();
    const Status status = nccl::cross_entropy(t.args, t.shard, o.options, comms[0], exec);
    EXPECT_EQ(status.argument(), "comm") << status.message();
    EXPECT_NE(status.message().find("2 ranks"), std::string::npos) << status.message();
    EXPECT_EQ(t.loss.download_bytes(), loss);
  }
  for (ncclComm_t c : comms) EXPECT_EQ(ncclCommDestroy(c), ncclSuccess);
}

// No rows: every rank writes a zero mean loss, and nothing crosses ranks.
TEST_P(NcclCrossEntropy, EmptyBatchGivesAZeroLoss) {
  const int ranks = GetParam();
  ACTLOSS_REQUIRE_DEVICES(ranks);
  Options o{"empty batch, mean"};
  Problem p = make_problem(o, ranks, 4);
  p.rows = 0;
  p.logits.clear();
  p.targets.clear();
  for (const Outcome& got : run_sharded(p, ranks, [&](RankTensors& t, ncclComm_t comm,
                                                      const Exec& exec) {
         return call_adapter(t, comm, exec, o);
       })) {
    ASSERT_TRUE(got.status.ok()) << got.status.message();
    EXPECT_EQ(as_doubles(got.loss, DType::f32), std::vector<double>{0.0});
  }
}

INSTANTIATE_TEST_SUITE_P(Ranks, NcclCrossEntropy, ::testing::Values(1, 2, 4, 8),
                         [](const ::testing::TestParamInfo<int>& ranks) {
                           return std::to_string(ranks.param) + "ranks";
                         });

}  // namespace
}  // namespace actloss::test
