// CUDA graphs. Every op family captures into a graph on a stream that has seen an actloss call,
// and each replay writes exactly what an eager call on the same inputs writes, reading the
// inputs as they are at replay time. Nothing that CUDA forbids during capture runs (a forbidden
// call invalidates the capture, and cudaStreamEndCapture then fails); with a workspace given,
// capture and replay allocate nothing. The simulator records captured launches and memsets and
// refuses what CUDA refuses during capture (sim/README.md), so CI checks the same.
#include <cstdint>
#include <functional>
#include <vector>

#if defined(ACTLOSS_SIM)
#include <simcuda/sim_control.h>
#endif

#include "tests/cuda/support.h"

namespace actloss::test {
namespace {

constexpr std::int64_t kRows = 37, kClasses = 1000, kBceCols = 100, kElements = 5000;
// The linear cross-entropy reads its hidden states from the logits' buffer (the first kHidden
// of each row) and its weight [kClasses x kHidden] from dy's.
constexpr std::int64_t kHidden = 16;

// The inputs and outputs of one call of every op family, and the calls themselves.
struct Workload {
  DeviceBuffer logits, labels, bce_logits, bce_targets, mse_input, mse_target, act_input, dy;
  DeviceBuffer ce_loss, ce_grad, probs, softmax_dx, bce_loss, bce_grad, mse_loss, mse_grad,
      act_y, act_dx, linear_loss, d_hidden, d_weight;
  CrossEntropyArgs ce;
  CrossEntropyOptions ce_options;
  BceArgs bce;
  MseArgs mse;
  LinearCrossEntropyArgs linear;
  LinearCrossEntropyOptions linear_options;

  explicit Workload(std::uint64_t seed)
      : logits(sizeof(float) * kRows * kClasses),
        labels(sizeof(std::int64_t) * kRows),
        bce_logits(sizeof(float) * kRows * kBceCols),
        bce_targets(sizeof(float) * kRows * kBceCols),
        mse_input(sizeof(float) * kElements),
        mse_target(sizeof(float) * kElements),
        act_input(sizeof(float) * kElements),
        dy(sizeof(float) * kRows * kClasses),
        ce_loss(sizeof(float)),
        ce_grad(sizeof(float) * kRows * kClasses),
        probs(sizeof(float) * kRows * kClasses),
        softmax_dx(sizeof(float) * kRows * kClasses),
        bce_loss(sizeof(float)),
        bce_grad(sizeof(float) * kRows * kBceCols),
        mse_loss(sizeof(float)),
        mse_grad(sizeof(float) * kElements),
        act_y(sizeof(float) * kElements),
        act_dx(sizeof(float) * kElements),
        linear_loss(sizeof(float)),
        d_hidden(sizeof(float) * kRows * kHidden),
        d_weight(sizeof(float) * kClasses * kHidden) {
    upload_inputs(seed);
    ce.rows = kRows;
    ce.classes = kClasses;
    ce.logits = logits.get();
    ce.targets = labels.get();
    ce.target_kind = TargetKind::class_index_i64;
    ce.loss = ce_loss.as<float>();
    ce.grad = ce_grad.get();
    ce_options.label_smoothing = 0.1f;  // mean over class targets: the pre-pass runs too
    bce.rows = kRows;
    bce.cols = kBceCols;
    bce.logits = bce_logits.get();
    bce.targets = bce_targets.get();
    bce.loss = bce_loss.as<float>();
    bce.grad = bce_grad.get();
    mse.n = kElements;
    mse.input = mse_input.get();
    mse.target = mse_target.get();
    mse.loss = mse_loss.as<float>();
    mse.grad = mse_grad.get();
    linear.tokens = kRows;
    linear.hidden_size = kHidden;
    linear.classes = kClasses;
    linear.hidden = logits.get();
    linear.hidden_row_stride = kClasses;
    linear.weight = dy.get();
    linear.targets = labels.get();
    linear.loss = linear_loss.as<float>();
    linear.d_hidden = d_hidden.get();
    linear.d_weight = d_weight.get();
    linear_options.loss = ce_options;
    linear_options.max_chunk_tokens = 10;  // four chunks, GEMMs and cross-entropy in each
  }

  void upload_inputs(std::uint64_t seed) {
    const auto upload = [](DeviceBuffer& buffer, const std::vector<double>& values) {
      const std::vector<float> narrow(values.begin(), values.end());
      buffer.upload_bytes(narrow.data(), narrow.size() * sizeof(float));
    };
    upload(logits, random_values(std::size_t(kRows * kClasses), -8, 8, seed));
    std::vector<std::int64_t> y(kRows);
    for (std::int64_t r = 0; r < kRows; ++r)
      y[std::size_t(r)] = r == 5 ? -100 : std::int64_t((r * 31 + seed) % kClasses);
    labels.upload_bytes(y.data(), y.size() * sizeof(std::int64_t));
    upload(bce_logits, random_values(std::size_t(kRows * kBceCols), -5, 5, seed + 1));
    upload(bce_targets, random_values(std::size_t(kRows * kBceCols), 0, 1, seed + 2));
    upload(mse_input, random_values(std::size_t(kElements), -3, 3, seed + 3));
    upload(mse_target, random_values(std::size_t(kElements), -3, 3, seed + 4));
    upload(act_input, random_values(std::size_t(kElements), -4, 4, seed + 5));
    upload(dy, random_values(std::size_t(kRows * kClasses), -1, 1, seed + 6));
  }

  std::vector<DeviceBuffer*> outputs() {
    return {&ce_loss, &ce_grad, &probs,  &softmax_dx, &bce_loss, &bce_grad,
            &mse_loss, &mse_grad, &act_y, &act_dx, &linear_loss, &d_hidden, &d_weight};
  }

  // The bytes of the workspace every reduced call here fits in.
  std::size_t workspace_bytes(const Exec& exec) const {
    std::size_t most = 0, bytes = 0;
    EXPECT_TRUE(cross_entropy_workspace_size(ce, ce_options, exec, &bytes).ok());
    most = std::max(most, bytes);
    EXPECT_TRUE(bce_with_logits_workspace_size(bce, BceOptions{}, exec, &bytes).ok());
    most = std::max(most, bytes);
    MseOptions sum;
    sum.reduction = Reduction::sum;
    EXPECT_TRUE(mse_workspace_size(mse, sum, exec, &bytes).ok());
    most = std::max(most, bytes);
    EXPECT_TRUE(linear_cross_entropy_workspace_size(linear, linear_options, exec, &bytes).ok());
    return std::max(most, bytes);
  }

  Status run(const Exec& exec) const {
    if (Status s = cross_entropy_forward_backward(ce, ce_options, exec); !s.ok()) return s;
    SoftmaxForwardArgs forward;
    forward.rows = kRows;
    forward.cols = kClasses;
    forward.x = logits.get();
    forward.y = probs.get();
    if (Status s = softmax_forward(forward, SoftmaxOptions{}, exec); !s.ok()) return s;
    SoftmaxBackwardArgs backward;
    backward.rows = kRows;
    backward.cols = kClasses;
    backward.y = probs.get();
    backward.dy = dy.get();
    backward.dx = softmax_dx.get();
    if (Status s = softmax_backward(backward, SoftmaxOptions{}, exec); !s.ok()) return s;
    if (Status s = bce_with_logits_forward_backward(bce, BceOptions{}, exec); !s.ok()) return s;
    MseOptions sum;
    sum.reduction = Reduction::sum;
    if (Status s = mse_forward_backward(mse, sum, exec); !s.ok()) return s;
    if (Status s = linear_cross_entropy_forward_backward(linear, linear_options, exec); !s.ok())
      return s;
    ActivationOptions gelu;
    gelu.activation = Activation::gelu_tanh;
    ActivationForwardArgs act;
    act.n = kElements;
    act.x = act_input.get();
    act.y = act_y.get();
    if (Status s = activation_forward(act, gelu, exec); !s.ok()) return s;
    ActivationBackwardArgs act_back;
    act_back.n = kElements;
    act_back.saved = act_input.get();
    act_back.dy = mse_grad.get();
    act_back.dx = act_dx.get();
    return activation_backward(act_back, gelu, exec);
  }

  std::vector<std::uint8_t> output_bytes() {
    std::vector<std::uint8_t> all;
    for (DeviceBuffer* out : outputs()) {
      const std::vector<std::uint8_t> bytes = out->download_bytes();
      all.insert(all.end(), bytes.begin(), bytes.end());
    }
    return all;
  }
  // The memsets run on the legacy stream, which a non-blocking stream does not wait for.
  void poison_outputs() {
    for (DeviceBuffer* out : outputs()) out->fill_bytes(kPoisonByte);
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  }
};

// A captured, instantiated graph.
class CapturedGraph {
 public:
  // Captures `work` on `stream`; the capture must survive it.
  CapturedGraph(cudaStream_t stream, const std::function<Status()>& work) {
    EXPECT_EQ(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal), cudaSuccess);
    const Status status = work();
    cudaGraph_t graph = nullptr;
    const cudaError_t end = cudaStreamEndCapture(stream, &graph);
    EXPECT_TRUE(status.ok()) << status.message();
    EXPECT_EQ(end, cudaSuccess) << "a call that CUDA forbids during capture ran: "
                                << cudaGetErrorName(end);
    if (graph == nullptr) return;
    EXPECT_EQ(cudaGraphInstantiate(&exec_, graph, 0), cudaSuccess);
    EXPECT_EQ(cudaGraphDestroy(graph), cudaSuccess);  // the executable graph keeps what it needs
  }
  ~CapturedGraph() {
    if (exec_ != nullptr) (void)cudaGraphExecDestroy(exec_);
  }
  CapturedGraph(const CapturedGraph&) = delete;
  CapturedGraph& operator=(const CapturedGraph&) = delete;
  bool ok() const { return exec_ != nullptr; }
  void replay(cudaStream_t stream) const {
    ASSERT_EQ(cudaGraphLaunch(exec_, stream), cudaSuccess);
    ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
  }

 private:
  cudaGraphExec_t exec_ = nullptr;
};

std::uint64_t device_allocations() {
#if defined(ACTLOSS_SIM)
  return simcuda::sim::device_allocations();
#else
  return 0;  // not observable on a GPU; the capture itself still checks the calls
#endif
}

void expect_replays_match_eager(bool with_workspace) {
  const TestStream stream;
  Exec exec = cuda_exec();
  exec.stream = stream.get();
  Workload work(1);
  DeviceBuffer workspace(work.workspace_bytes(exec));
  if (with_workspace) exec.workspace = Workspace{workspace.get(), workspace.bytes()};

  // Eagerly first: the stream's first call also gives it its data-error record.
  ASSERT_TRUE(work.run(exec).ok());
  ASSERT_EQ(cudaStreamSynchronize(stream.get()), cudaSuccess);
  const std::vector<std::uint8_t> eager = work.output_bytes();

  const std::uint64_t allocations = device_allocations();
  const CapturedGraph graph(stream.get(), [&] { return work.run(exec); });
  ASSERT_TRUE(graph.ok());
  work.poison_outputs();
  graph.replay(stream.get());
  EXPECT_EQ(work.output_bytes(), eager) << "first replay";
  graph.replay(stream.get());
  EXPECT_EQ(work.output_bytes(), eager) << "second replay";
  if (with_workspace) {
    EXPECT_EQ(device_allocations(), allocations) << "allocated in a graph";
  }

  // New inputs in the same buffers: the replay reads them, as an eager call does.
  work.upload_inputs(2);
  ASSERT_TRUE(work.run(exec).ok());
  ASSERT_EQ(cudaStreamSynchronize(stream.get()), cudaSuccess);
  const std::vector<std::uint8_t> eager_new = work.output_bytes();
  ASSERT_NE(eager_new, eager);
  work.poison_outputs();
  graph.replay(stream.get());
  EXPECT_EQ(work.output_bytes(), eager_new) << "replay on new inputs";
  EXPECT_TRUE(take_device_error(exec).ok());
}

TEST(CudaGraph, EveryOpReplaysItsEagerResultWithAWorkspace) {
  ACTLOSS_REQUIRE_CUDA_DEVICE();
  expect_replays_match_eager(true);
}

// Without a workspace the reduced losses allocate with cudaMallocAsync, which a graph captures
// as memory nodes.
TEST(CudaGraph, EveryOpReplaysItsEagerResultWithoutAWorkspace) {
  ACTLOSS_REQUIRE_CUDA_DEVICE();
  expect_replays_match_eager(false);
}

// A stream's first cross-entropy call cannot create its data-error record while capturing
// (that would allocate and zero device memory outside the graph): it is refused by name, and
// the capture goes on unharmed. With a record of the caller's own it captures.
TEST(CudaGraph, FirstCallOnACapturingStreamNeedsARecord) {
  ACTLOSS_REQUIRE_CUDA_DEVICE();
  const TestStream stream;
  Exec exec = cuda_exec();
  exec.stream = stream.get();
  Workload work(3);
  work.poison_outputs();
  Status refused;
  {
    const CapturedGraph graph(stream.get(), [&] {
      refused = cross_entropy_forward_backward(work.ce, work.ce_options, exec);
      // Something to capture, so that the graph is not empty: the capture went on.
      EXPECT_EQ(cudaMemsetAsync(work.ce_grad.get(), 0, sizeof(float), stream.get()), cudaSuccess);
      return Status{};
    });
    EXPECT_TRUE(graph.ok());
  }
  EXPECT_EQ(refused.code(), StatusCode::unsupported);
  EXPECT_EQ(refused.argument(), "exec.device_error") << refused.message();
  for (std::uint8_t byte : work.ce_loss.download_bytes()) ASSERT_EQ(byte, kPoisonByte);

  DeviceBuffer record(sizeof(DeviceError));
  record.fill_bytes(0);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);  // as in Workload::poison_outputs
  exec.device_error = record.as<DeviceError>();
  std::vector<std::int64_t> labels(kRows, 1);
  labels[7] = kClasses;  // out of range: the replay records it in the caller's record
  work.labels.upload_bytes(labels.data(), labels.size() * sizeof(std::int64_t));
  const CapturedGraph graph(stream.get(), [&] {
    return cross_entropy_forward_backward(work.ce, work.ce_options, exec);
  });
  ASSERT_TRUE(graph.ok());
  graph.replay(stream.get());
  const Status error = take_device_error(exec);
  EXPECT_EQ(error.code(), StatusCode::out_of_range);
  EXPECT_NE(error.message().find("row 7"), std::string::npos) << error.message();
}

}  // namespace
}  // namespace actloss::test
