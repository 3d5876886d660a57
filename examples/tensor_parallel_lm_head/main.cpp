// A tensor-parallel language-model head over NCCL, one host thread per GPU: every rank holds the
// hidden states of all tokens and its own slice of the output layer's vocabulary, and no rank
// ever holds a whole row of logits. Per rank, on its own stream, one call,
// actloss::nccl::linear_cross_entropy_forward_backward, computes
//
//   loss       over the whole vocabulary, the same on every rank (each rank's logits
//              hidden · W_r^T are made chunk by chunk and never held whole; one ncclAllGather of
//              20 bytes per token and rank carries what the others need)
//   d_W_r      this rank's rows of the weight gradient
//   d_hidden   the input gradient of the whole vocabulary (each rank's share, one ncclAllReduce)
//
// Then it checks what every rank got against the same head computed unsharded on the CPU, and
// prints each rank's loss. It uses every GPU it finds (cudaGetDeviceCount); in actloss's
// simulator build those are the simulator's virtual devices (8), ranks as threads.
//
// Exit status: 0 when every rank agrees with the CPU, 1 on an error or a disagreement, 77 (the
// usual "skipped") when there is no CUDA device.
#include <actloss/actloss.h>
#include <actloss/nccl.h>

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

constexpr int kTokens = 64;
constexpr int kHidden = 32;
constexpr std::int64_t kVocab = 1003;  // not a multiple of the rank count: uneven shards

// Every rank makes the same inputs from these, so nothing but the statistics and d_hidden crosses
// ranks: hidden states in [-1, 1), weights in [-0.3, 0.3), and each token's next-token label.
float uniform(std::uint64_t i, std::uint64_t stream) {
  std::uint64_t z = i * 0x9e3779b97f4a7c15ull + stream * 0xbf58476d1ce4e5b9ull + 1;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  z ^= z >> 31;
  return static_cast<float>(z >> 40) / static_cast<float>(1ull << 24) * 2.0f - 1.0f;
}
float hidden_at(int t, int d) { return uniform(static_cast<std::uint64_t>(t) * kHidden + d, 1); }
float weight_at(std::int64_t v, int d) {
  return 0.3f * uniform(static_cast<std::uint64_t>(v) * kHidden + static_cast<std::uint64_t>(d), 2);
}
std::int64_t label_at(int t) {
  return static_cast<std::int64_t>((uniform(static_cast<std::uint64_t>(t), 3) + 1.0f) * 0.5f *
                                   static_cast<float>(kVocab - 1));
}

// Rank r's vocabulary shard: classes [first, first + count).
struct Shard {
  std::int64_t first = 0, count = 0;
};
Shard shard_of(int rank, int ranks) {
  const std::int64_t first = kVocab * rank / ranks;
  return {first, kVocab * (rank + 1) / ranks - first};
}

// Errors come back as text; a rank that fails says where.
#define TRY_CUDA(expr)                                                                 \
  if (const cudaError_t e_ = (expr); e_ != cudaSuccess)                                \
  return std::string(#expr) + ": " + cudaGetErrorString(e_)
#define TRY_NCCL(expr)                                                                 \
  if (const ncclResult_t r_ = (expr); r_ != ncclSuccess)                               \
  return std::string(#expr) + ": " + ncclGetErrorString(r_) + " (" + ncclGetLastError(nullptr) + ")"
#define TRY_ACTLOSS(expr)                                                              \
  if (const actloss::Status s_ = (expr); !s_.ok()) return std::string(#expr) + ": " + s_.message()

// Device memory of `count` Ts on the current device, freed with the object.
template <class T>
class DeviceArray {
 public:
  DeviceArray() = default;
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  ~DeviceArray() { (void)cudaFree(data_); }
  cudaError_t allocate(std::size_t count) { return cudaMalloc(&data_, count * sizeof(T)); }
  T* get() const { return static_cast<T*>(data_); }

 private:
  void* data_ = nullptr;
};

struct RankResult {
  std::string error;
  Shard shard;
  float loss = 0.0f;
  std::vector<float> d_hidden;  // [tokens x hidden], the same on every rank after the all-reduce
  std::vector<float> d_weight;  // [V_r x hidden], this rank's rows
};

// One rank, on its own thread and device.
std::string run_rank(int rank, int ranks, const ncclUniqueId& id, RankResult& out) {
  TRY_CUDA(cudaSetDevice(rank));
  ncclComm_t comm = nullptr;
  TRY_NCCL(ncclCommInitRank(&comm, ranks, id, rank));
  struct CommGuard {
    ncclComm_t comm;
    ~CommGuard() { (void)ncclCommDestroy(comm); }
  } comm_guard{comm};
  cudaStream_t stream = nullptr;
  TRY_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  struct StreamGuard {
    cudaStream_t stream;
    ~StreamGuard() { (void)cudaStreamDestroy(stream); }
  } stream_guard{stream};
  // This rank's inputs: all tokens' hidden states and labels, its rows of the weight.
  const Shard shard = shard_of(rank, ranks);
  out.shard = shard;
  const auto vocab = static_cast<int>(shard.count);
  std::vector<float> hidden(kTokens * kHidden), weight(static_cast<std::size_t>(vocab) * kHidden);
  std::vector<std::int64_t> labels(kTokens);
  for (int t = 0; t < kTokens; ++t) {
    labels[static_cast<std::size_t>(t)] = label_at(t);
    for (int d = 0; d < kHidden; ++d) hidden[static_cast<std::size_t>(t * kHidden + d)] = hidden_at(t, d);
  }
  for (int v = 0; v < vocab; ++v)
    for (int d = 0; d < kHidden; ++d)
      weight[static_cast<std::size_t>(v * kHidden + d)] = weight_at(shard.first + v, d);

  DeviceArray<float> d_hidden, d_weight, d_loss, d_grad_hidden, d_grad_weight;
  DeviceArray<std::int64_t> d_labels;
  TRY_CUDA(d_hidden.allocate(hidden.size()));
  TRY_CUDA(d_weight.allocate(weight.size()));
  TRY_CUDA(d_labels.allocate(labels.size()));
  TRY_CUDA(d_loss.allocate(1));
  TRY_CUDA(d_grad_hidden.allocate(hidden.size()));
  TRY_CUDA(d_grad_weight.allocate(weight.size()));
  TRY_CUDA(cudaMemcpyAsync(d_hidden.get(), hidden.data(), hidden.size() * sizeof(float),
                           cudaMemcpyHostToDevice, stream));
  TRY_CUDA(cudaMemcpyAsync(d_weight.get(), weight.data(), weight.size() * sizeof(float),
                           cudaMemcpyHostToDevice, stream));
  TRY_CUDA(cudaMemcpyAsync(d_labels.get(), labels.data(), labels.size() * sizeof(std::int64_t),
                           cudaMemcpyHostToDevice, stream));

  // The head over this rank's slice of the vocabulary; the labels index the whole vocabulary.
  actloss::LinearCrossEntropyArgs args;
  args.tokens = kTokens;
  args.hidden_size = kHidden;
  args.classes = shard.count;
  args.dtype = actloss::DType::f32;
  args.hidden = d_hidden.get();
  args.weight = d_weight.get();
  args.targets = d_labels.get();
  args.target_kind = actloss::TargetKind::class_index_i64;
  args.loss = d_loss.get();
  args.d_hidden = d_grad_hidden.get();
  args.d_weight = d_grad_weight.get();
  actloss::LinearCrossEntropyOptions options;  // mean over the tokens, ignore_index -100
  actloss::Exec exec{actloss::Device::cuda, stream};
  std::size_t bytes = 0;
  TRY_ACTLOSS(
      actloss::nccl::linear_cross_entropy_workspace_size(args, options, ranks, exec, &bytes));
  DeviceArray<std::uint8_t> workspace;  // allocate once and reuse it every step
  TRY_CUDA(workspace.allocate(bytes));
  exec.workspace = {workspace.get(), bytes};
  TRY_ACTLOSS(actloss::nccl::linear_cross_entropy_forward_backward(args, {shard.first, kVocab},
                                                                   options, comm, exec));

  out.d_weight.resize(weight.size());
  out.d_hidden.resize(hidden.size());
  TRY_CUDA(cudaMemcpyAsync(&out.loss, d_loss.get(), sizeof(float), cudaMemcpyDeviceToHost, stream));
  TRY_CUDA(cudaMemcpyAsync(out.d_hidden.data(), d_grad_hidden.get(), hidden.size() * sizeof(float),
                           cudaMemcpyDeviceToHost, stream));
  TRY_CUDA(cudaMemcpyAsync(out.d_weight.data(), d_grad_weight.get(),
                           out.d_weight.size() * sizeof(float), cudaMemcpyDeviceToHost, stream));
  TRY_CUDA(cudaStreamSynchronize(stream));
  TRY_ACTLOSS(actloss::take_device_error(exec));  // a label outside the vocabulary, if any
  return "";
}

// The same head unsharded on the CPU: whole logits, actloss's CPU backend, d_hidden = G · W,
// d_weight = G^T · hidden.
std::string unsharded_on_cpu(float& loss, std::vector<double>& d_hidden,
                             std::vector<double>& d_weight) {
  std::vector<float> logits(static_cast<std::size_t>(kTokens * kVocab));
  for (int t = 0; t < kTokens; ++t)
    for (std::int64_t v = 0; v < kVocab; ++v) {
      double sum = 0.0;
      for (int d = 0; d < kHidden; ++d) sum += static_cast<double>(hidden_at(t, d)) * weight_at(v, d);
      logits[static_cast<std::size_t>(t * kVocab + v)] = static_cast<float>(sum);
    }
  std::vector<std::int64_t> labels(kTokens);
  for (int t = 0; t < kTokens; ++t) labels[static_cast<std::size_t>(t)] = label_at(t);
  std::vector<float> grad(logits.size());
  actloss::CrossEntropyArgs args;
  args.rows = kTokens;
  args.classes = kVocab;
  args.logits = logits.data();
  args.targets = labels.data();
  args.loss = &loss;
  args.grad = grad.data();
  TRY_ACTLOSS(actloss::cross_entropy_forward_backward(args, actloss::CrossEntropyOptions{},
                                                      actloss::Exec{actloss::Device::cpu}));
  d_hidden.assign(static_cast<std::size_t>(kTokens * kHidden), 0.0);
  d_weight.assign(static_cast<std::size_t>(kVocab * kHidden), 0.0);
  for (int t = 0; t < kTokens; ++t)
    for (std::int64_t v = 0; v < kVocab; ++v) {
      const double g = grad[static_cast<std::size_t>(t * kVocab + v)];
      for (int d = 0; d < kHidden; ++d) {
        d_hidden[static_cast<std::size_t>(t * kHidden + d)] += g * weight_at(v, d);
        d_weight[static_cast<std::size_t>(v * kHidden + d)] += g * hidden_at(t, d);
      }
    }
  return "";
}

}  // namespace

int main() {
  int ranks = 0;
  if (cudaGetDeviceCount(&ranks) != cudaSuccess || ranks == 0) {
    (void)cudaGetLastError();
    std::printf("SKIPPED: tensor_parallel_lm_head: no CUDA device\n");
    return 77;
  }
  // One communicator over every device; a job of several processes shares this id by its own
  // means (MPI, a file, a TCP store) and calls ncclCommInitRank the same way.
  ncclUniqueId id;
  if (const ncclResult_t r = ncclGetUniqueId(&id); r != ncclSuccess) {
    std::fprintf(stderr, "ncclGetUniqueId: %s\n", ncclGetErrorString(r));
    return 1;
  }
  std::vector<RankResult> results(static_cast<std::size_t>(ranks));
  std::vector<std::thread> threads;
  for (int r = 0; r < ranks; ++r) {
    threads.emplace_back([&, r] {
      RankResult& out = results[static_cast<std::size_t>(r)];
      out.error = run_rank(r, ranks, id, out);
    });
  }
  for (std::thread& t : threads) t.join();

  float cpu_loss = 0.0f;
  std::vector<double> cpu_d_hidden, cpu_d_weight;
  if (const std::string error = unsharded_on_cpu(cpu_loss, cpu_d_hidden, cpu_d_weight);
      !error.empty()) {
    std::fprintf(stderr, "CPU: %s\n", error.c_str());
    return 1;
  }
  std::printf("%d ranks, %d tokens, hidden %d, vocabulary %lld\n", ranks, kTokens, kHidden,
              static_cast<long long>(kVocab));
  bool agree = true;
  for (int r = 0; r < ranks; ++r) {
    const RankResult& got = results[static_cast<std::size_t>(r)];
    if (!got.error.empty()) {
      std::fprintf(stderr, "rank %d: %s\n", r, got.error.c_str());
      agree = false;
      continue;
    }
    // Each gradient against the CPU's, relative to its largest element (d_W_r: its rows).
    const auto off = [](const std::vector<float>& gpu, const double* cpu) {
      double worst = 0.0, scale = 0.0;
      for (std::size_t i = 0; i < gpu.size(); ++i) {
        worst = std::max(worst, std::fabs(gpu[i] - cpu[i]));
        scale = std::max(scale, std::fabs(cpu[i]));
      }
      return worst / scale;
    };
    const double d_hidden_off = off(got.d_hidden, cpu_d_hidden.data());
    const double d_weight_off =
        off(got.d_weight, cpu_d_weight.data() + got.shard.first * kHidden);
    std::printf("rank %d: classes [%lld, %lld), loss %.7f, off the CPU's by %.1e (d_hidden) and "
                "%.1e (d_W_r) of their largest elements\n",
                r, static_cast<long long>(got.shard.first),
                static_cast<long long>(got.shard.first + got.shard.count), got.loss,
                d_hidden_off, d_weight_off);
    // Float GEMMs against double sums: a few float roundings of terms of size ~1.
    if (std::fabs(got.loss - cpu_loss) > 1e-4 * std::fabs(cpu_loss) || d_hidden_off > 1e-4 ||
        d_weight_off > 1e-4) {
      std::fprintf(stderr, "rank %d: disagrees with the CPU\n", r);
      agree = false;
    }
    const RankResult& first = results[0];
    if (first.error.empty() &&
        (std::memcmp(&got.loss, &first.loss, sizeof(float)) != 0 || got.d_hidden != first.d_hidden)) {
      std::fprintf(stderr, "rank %d: loss or d_hidden differs from rank 0's\n", r);
      agree = false;
    }
  }
  std::printf("unsharded on the CPU: loss %.7f\n", cpu_loss);
  if (!agree) return 1;
  std::printf("every rank: the same loss and d_hidden, as the unsharded head's\n");
  return 0;
}
