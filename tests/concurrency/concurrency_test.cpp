// Many host threads calling the ops at once, each on its own stream (CUDA) or its own buffers
// (CPU), some of them with class targets out of range: every thread's results are exactly those
// of the same calls made alone, and every thread's data errors are its own, none lost, none
// crossed. Run under ThreadSanitizer in the simulator's threads mode (scripts/test.sh, label
// "races"), and on a GPU by the device check, with 8 threads and streams
// (ACTLOSS_CONCURRENCY_THREADS=8), alone and under compute-sanitizer.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "tests/cuda/support.h"

namespace actloss::test {
namespace {

constexpr int kRounds = 3;
constexpr std::int64_t kRows = 9, kClasses = 40, kHidden = 8, kElements = 300;

using Bytes = std::vector<std::uint8_t>;

// One thread's inputs and outputs, where its device computes; thread t's bad row (odd t only)
// is row t of its cross-entropy targets.
struct Work {
  Device device;
  int thread;
  Memory logits, labels, ce_loss, ce_grad, probs, act_y, mse_loss, weight, linear_loss;

  Work(Device d, int t)
      : device(d),
        thread(t),
        logits(d, kRows * kClasses * 4),
        labels(d, kRows * 8),
        ce_loss(d, 4),
        ce_grad(d, kRows * kClasses * 4),
        probs(d, kRows * kClasses * 4),
        act_y(d, kElements * 4),
        mse_loss(d, 4),
        weight(d, kClasses * kHidden * 4),
        linear_loss(d, 4) {
    const auto floats = [](const std::vector<double>& values) {
      Bytes bytes(values.size() * 4);
      for (std::size_t i = 0; i < values.size(); ++i) {
        const auto f = static_cast<float>(values[i]);
        std::memcpy(bytes.data() + 4 * i, &f, 4);
      }
      return bytes;
    };
    logits.upload(floats(random_values(kRows * kClasses, -6, 6, 100 + t)));
    weight.upload(floats(random_values(kClasses * kHidden, -1, 1, 200 + t)));
    std::vector<std::int64_t> y(kRows);
    for (std::int64_t r = 0; r < kRows; ++r) y[std::size_t(r)] = (r * 7 + t) % kClasses;
    if (t % 2 == 1) y[std::size_t(t)] = kClasses + t;  // out of range
    Bytes label_bytes(kRows * 8);
    std::memcpy(label_bytes.data(), y.data(), label_bytes.size());
    labels.upload(label_bytes);
  }

  bool bad() const { return thread % 2 == 1; }

  // Every op family once; the statuses of the calls, then of the data-error check.
  std::vector<Status> run(const Exec& exec) {
    std::vector<Status> statuses;
    CrossEntropyArgs ce;
    ce.rows = kRows;
    ce.classes = kClasses;
    ce.logits = logits.get();
    ce.targets = labels.get();
    ce.loss = static_cast<float*>(ce_loss.get());
    ce.grad = ce_grad.get();
    statuses.push_back(cross_entropy_forward_backward(ce, {}, exec));
    SoftmaxForwardArgs softmax;
    softmax.rows = kRows;
    softmax.cols = kClasses;
    softmax.x = logits.get();
    softmax.y = probs.get();
    statuses.push_back(softmax_forward(softmax, {}, exec));
    ActivationOptions gelu;
    gelu.activation = Activation::gelu_erf;
    ActivationForwardArgs act;
    act.n = kElements;
    act.x = logits.get();
    act.y = act_y.get();
    statuses.push_back(activation_forward(act, gelu, exec));
    MseArgs mse;
    mse.n = kElements;
    mse.input = logits.get();
    mse.target = probs.get();
    mse.loss = static_cast<float*>(mse_loss.get());
    statuses.push_back(mse_forward(mse, {}, exec));
    // The linear cross-entropy's GEMMs run on each thread's own cuBLAS handle; its hidden
    // states are the first kHidden logits of each row, its targets the labels.
    LinearCrossEntropyArgs linear;
    linear.tokens = kRows;
    linear.hidden_size = kHidden;
    linear.classes = kClasses;
    linear.hidden = logits.get();
    linear.hidden_row_stride = kClasses;
    linear.weight = weight.get();
    linear.targets = labels.get();
    linear.loss = static_cast<float*>(linear_loss.get());
    statuses.push_back(linear_cross_entropy_forward(linear, {}, exec));
    if (device == Device::cuda) statuses.push_back(take_device_error(exec));
    return statuses;
  }

  Bytes outputs() const {
    Bytes all;
    for (const Memory* m : {&ce_loss, &ce_grad, &probs, &act_y, &mse_loss, &linear_loss}) {
      const Bytes bytes = m->download();
      all.insert(all.end(), bytes.begin(), bytes.end());
    }
    return all;
  }
};

// What thread t must see: on the CPU the two losses over its targets refuse a bad row by name;
// on CUDA every call is queued and the stream's one data error names the bad row.
void expect_statuses(const Work& w, const std::vector<Status>& statuses) {
  for (std::size_t i = 0; i < statuses.size(); ++i) {
    const Status& s = statuses[i];
    const bool over_targets = w.device == Device::cpu ? (i == 0 || i == 4) : i == 5;
    if (w.bad() && over_targets) {
      EXPECT_EQ(s.code(), StatusCode::out_of_range) << "thread " << w.thread << " call " << i;
      const std::string at = std::to_string(w.thread) + " has class";
      EXPECT_NE(s.message().find(at), std::string::npos) << s.message();
    } else {
      EXPECT_TRUE(s.ok()) << "thread " << w.thread << " call " << i << ": " << s.message();
    }
  }
}

class Concurrency : public testing::TestWithParam<Device> {
 protected:
  void SetUp() override {
    if (GetParam() == Device::cuda) ACTLOSS_REQUIRE_CUDA_DEVICE();
  }
  // A stream of its own for CUDA (none is needed, or creatable without a GPU, for the CPU).
  static Exec exec_for(Device device, std::unique_ptr<TestStream>& stream) {
    Exec exec;
    exec.device = device;
    if (device == Device::cuda) {
      stream = std::make_unique<TestStream>();
      exec.stream = stream->get();
    }
    return exec;
  }
};

// 4 threads unless ACTLOSS_CONCURRENCY_THREADS says otherwise, from 1 to kRows (thread t's bad
// row is row t).
int thread_count() {
  const char* text = std::getenv("ACTLOSS_CONCURRENCY_THREADS");
  const int wanted = text != nullptr ? std::atoi(text) : 4;
  return wanted >= 1 && wanted <= kRows ? wanted : 4;
}

TEST_P(Concurrency, EachThreadGetsItsOwnResultsAndErrors) {
  const Device device = GetParam();
  const int workers = thread_count();
  // Alone first: the results every thread must reproduce.
  std::vector<Bytes> alone(workers);
  for (int t = 0; t < workers; ++t) {
    Work work(device, t);
    std::unique_ptr<TestStream> stream;
    const Exec exec = exec_for(device, stream);
    expect_statuses(work, work.run(exec));
    if (device == Device::cuda) synchronize_or_fail();
    alone[std::size_t(t)] = work.outputs();
  }

  std::vector<std::thread> threads;
  std::vector<std::vector<Bytes>> together(workers);
  std::vector<std::vector<std::vector<Status>>> statuses(workers);
  for (int t = 0; t < workers; ++t) {
    threads.emplace_back([&, t] {
      Work work(device, t);
      std::unique_ptr<TestStream> stream;
      const Exec exec = exec_for(device, stream);
      for (int round = 0; round < kRounds; ++round) {
        statuses[std::size_t(t)].push_back(work.run(exec));
        if (device == Device::cuda) {
          EXPECT_EQ(cudaStreamSynchronize(exec.stream), cudaSuccess);
        }
        together[std::size_t(t)].push_back(work.outputs());
      }
    });
  }
  for (std::thread& thread : threads) thread.join();

  for (int t = 0; t < workers; ++t) {
    const Work expectation(device, t);
    for (int round = 0; round < kRounds; ++round) {
      SCOPED_TRACE("thread " + std::to_string(t) + " round " + std::to_string(round));
      expect_statuses(expectation, statuses[std::size_t(t)][std::size_t(round)]);
      EXPECT_EQ(together[std::size_t(t)][std::size_t(round)], alone[std::size_t(t)]);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Devices, Concurrency, testing::Values(Device::cpu, Device::cuda),
                         testing::PrintToStringParamName());

}  // namespace
}  // namespace actloss::test
