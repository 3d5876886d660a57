// Fuzz target: linear_cross_entropy_forward and _forward_backward, and the vocabulary-parallel
// linear_cross_entropy_shard_stats and _finish (see fuzz_support.h).
#include "tests/fuzz/fuzz_support.h"

namespace {

using namespace actloss;
using fuzz::Buffers;
using fuzz::element_size;
using fuzz::extent;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider in(data, size);
  // 0: forward, 1: forward_backward, 2, 3: the sharded calls' two phases.
  const int pass = in.ConsumeIntegralInRange<int>(0, 3);
  const bool gradients = pass == 1 || pass == 3;
  LinearCrossEntropyArgs a;
  LinearCrossEntropyOptions o;
  a.tokens = fuzz::size(in, 9);
  a.hidden_size = fuzz::size(in, 12);
  a.classes = fuzz::size(in, 40);
  a.dtype = fuzz::enum_value<DType>(in, 3);
  a.d_weight_dtype = fuzz::enum_value<DType>(in, 3);
  a.target_kind = fuzz::enum_value<TargetKind>(in, 3);
  a.hidden_row_stride = fuzz::stride(in, a.hidden_size);
  a.weight_row_stride = fuzz::stride(in, a.hidden_size);
  a.d_hidden_row_stride = fuzz::stride(in, a.hidden_size);
  a.d_weight_row_stride = fuzz::stride(in, a.hidden_size);
  a.accumulate = in.ConsumeBool();
  a.grad_scale = fuzz::option(in, 1.0f);
  o.loss.reduction = fuzz::enum_value<Reduction>(in, 3);
  o.loss.ignore_index = in.ConsumeBool() ? -100 : in.ConsumeIntegralInRange<std::int64_t>(-2, 50);
  o.loss.label_smoothing = fuzz::option(in, 0.1f);
  o.loss.z_loss = fuzz::option(in, 1e-3f);
  o.loss.softcap = fuzz::option(in, 5.0f);
  o.chunk_bytes = in.ConsumeBool() ? 0 : in.ConsumeIntegralInRange<std::size_t>(0, 4096);
  o.max_chunk_tokens = in.ConsumeBool() ? 0 : in.ConsumeIntegralInRange<std::int64_t>(-1, 5);
  const CrossEntropyShard shard = fuzz::shard(in, a.classes, 50, 100);
  const std::int64_t shards = fuzz::shard_count(in);

  const std::int64_t e = element_size(a.dtype);
  const std::int64_t index_size = a.target_kind == TargetKind::class_index_i32 ? 4 : 8;
  const __int128 per_row = o.loss.reduction == Reduction::none ? __int128{a.tokens} : 1;
  Buffers b(in);
  const int hidden = b.add(extent(a.tokens, a.hidden_size, a.hidden_row_stride, e), 16, true);
  const int weight = b.add(extent(a.classes, a.hidden_size, a.weight_row_stride, e), 16, true);
  const int bias = b.add(extent(1, a.classes, 0, e), 16, false);
  const int targets = b.add(extent(a.tokens, 1, 1, index_size), index_size, true);
  const int class_weight = b.add(extent(1, a.classes, 0, 4), 4, false);
  const int loss = b.add(per_row * 4, 4, pass == 0);
  const int lse = b.add(extent(1, a.tokens, 0, 4), 4, false);
  const int d_hidden =
      b.add(extent(a.tokens, a.hidden_size, a.d_hidden_row_stride, e), 16, gradients);
  const int d_weight = b.add(extent(a.classes, a.hidden_size, a.d_weight_row_stride,
                                    element_size(a.d_weight_dtype)),
                             16, gradients);
  const int d_bias = b.add(extent(1, a.classes, 0, element_size(a.d_weight_dtype)), 16, false);
  const int upstream = b.add(per_row * 4, 4, false);
  const int shard_stats = b.add(__int128{a.tokens} * 20, 4, pass == 2);
  const int gathered = b.add(fuzz::elements(shards, a.tokens) * 20, 4, pass == 3);
  for (int out : {loss, lse, d_hidden, d_weight, d_bias, shard_stats}) b.output(out);

  fuzz::run_and_check(in, b, [&](const Exec& exec, std::uint8_t* arena, std::uint8_t* big) {
    LinearCrossEntropyArgs c = a;
    c.hidden = b.at(arena, big, hidden);
    c.weight = b.at(arena, big, weight);
    c.bias = b.at(arena, big, bias);
    c.targets = b.at(arena, big, targets);
    c.class_weight = b.at<const float>(arena, big, class_weight);
    c.loss = b.at<float>(arena, big, loss);
    c.lse = b.at<float>(arena, big, lse);
    c.d_hidden = b.at(arena, big, d_hidden);
    c.d_weight = b.at(arena, big, d_weight);
    c.d_bias = b.at(arena, big, d_bias);
    c.upstream_grad = b.at<const float>(arena, big, upstream);
    switch (pass) {
      case 0: return linear_cross_entropy_forward(c, o, exec);
      case 1: return linear_cross_entropy_forward_backward(c, o, exec);
      case 2:
        return linear_cross_entropy_shard_stats(
            c, shard, o, b.at<CrossEntropyShardStats>(arena, big, shard_stats), exec);
      default:
        return linear_cross_entropy_shard_finish(
            c, shard, o, b.at<const CrossEntropyShardStats>(arena, big, gathered), shards, exec);
    }
  });
  return 0;
}
