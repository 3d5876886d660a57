// Fuzz target: cross_entropy_forward, _backward and _forward_backward, and the vocabulary-parallel
// cross_entropy_shard_stats and _finish (see fuzz_support.h).
#include "tests/fuzz/fuzz_support.h"

namespace {

using namespace actloss;
using fuzz::Buffers;
using fuzz::element_size;
using fuzz::extent;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider in(data, size);
  // 0-2: forward, backward, forward_backward; 3, 4: the sharded calls' two phases.
  const int pass = in.ConsumeIntegralInRange<int>(0, 4);
  CrossEntropyArgs a;
  CrossEntropyOptions o;
  a.rows = fuzz::size(in, 9);
  a.classes = fuzz::size(in, 70);
  if (in.ConsumeIntegralInRange<int>(0, 3) == 0) a.rows_per_batch = fuzz::size(in, 4);
  a.logits_dtype = fuzz::enum_value<DType>(in, 3);
  a.target_kind = fuzz::enum_value<TargetKind>(in, 3);
  a.target_dtype = fuzz::enum_value<DType>(in, 3);
  a.grad_dtype = fuzz::enum_value<DType>(in, 3);
  a.logits_row_stride = fuzz::stride(in, a.classes);
  a.target_row_stride = fuzz::stride(in, a.classes);
  a.grad_row_stride = fuzz::stride(in, a.classes);
  std::int64_t batch_length = 0;
  if (__builtin_mul_overflow(a.rows_per_batch, a.classes, &batch_length))
    batch_length = std::numeric_limits<std::int64_t>::max();
  if (a.rows_per_batch != 0) {
    a.logits_batch_stride = fuzz::stride(in, batch_length);
    a.target_batch_stride = fuzz::stride(in, batch_length);
    a.grad_batch_stride = fuzz::stride(in, batch_length);
  }
  o.reduction = fuzz::enum_value<Reduction>(in, 3);
  o.ignore_index = in.ConsumeBool() ? -100 : in.ConsumeIntegralInRange<std::int64_t>(-2, 80);
  o.label_smoothing = fuzz::option(in, 0.1f);
  o.z_loss = fuzz::option(in, 1e-3f);
  o.softcap = fuzz::option(in, 5.0f);
  a.grad_scale = fuzz::option(in, 1.0f);
  const CrossEntropyShard shard = fuzz::shard(in, a.classes, 80, 150);
  const std::int64_t shards = fuzz::shard_count(in);

  const bool soft = a.target_kind == TargetKind::probabilities;
  const std::int64_t index_size = a.target_kind == TargetKind::class_index_i32 ? 4 : 8;
  const __int128 per_row = o.reduction == Reduction::none ? __int128{a.rows} : 1;
  Buffers b(in);
  const int logits = b.add(extent(a.rows, a.classes, a.logits_row_stride,
                                  element_size(a.logits_dtype), a.rows_per_batch,
                                  a.logits_batch_stride),
                           16, true);
  const int targets =
      soft ? b.add(extent(a.rows, a.classes, a.target_row_stride, element_size(a.target_dtype),
                          a.rows_per_batch, a.target_batch_stride),
                   16, true)
           : b.add(extent(a.rows, 1, 1, index_size, a.rows_per_batch, a.target_batch_stride),
                   index_size, true);
  const int weight = b.add(__int128{a.classes} * 4, 4, false);
  const int loss = b.add(per_row * 4, 4, pass != 1);
  const int lse = b.add(__int128{a.rows} * 4, 4, false);
  const int stats = b.add(__int128{a.rows} * 8, 4, false);
  const int predicted = b.add(__int128{a.rows} * 8, 8, false);
  const int accuracy = b.add(4, 4, false);
  const int saved = b.add(__int128{a.rows} * 8, 4, pass == 1);
  const bool in_place = in.ConsumeIntegralInRange<int>(0, 3) == 0;
  const int grad = in_place ? logits
                            : b.add(extent(a.rows, a.classes, a.grad_row_stride,
                                           element_size(a.grad_dtype), a.rows_per_batch,
                                           a.grad_batch_stride),
                                    16, pass != 0);
  const int upstream = b.add(per_row * 4, 4, false);
  const int shard_stats = b.add(__int128{a.rows} * 20, 4, pass == 3);
  const int gathered = b.add(fuzz::elements(shards, a.rows) * 20, 4, pass == 4);
  for (int out : {loss, lse, stats, predicted, accuracy, grad, shard_stats}) b.output(out);
  // The sharded calls refuse the unsharded call's extra outputs; mostly leave them out.
  const bool sharded_outputs_only = pass >= 3 && in.ConsumeIntegralInRange<int>(0, 3) != 0;

  fuzz::run_and_check(in, b, [&](const Exec& exec, std::uint8_t* arena, std::uint8_t* big) {
    CrossEntropyArgs c = a;
    c.logits = b.at(arena, big, logits);
    c.targets = b.at(arena, big, targets);
    c.class_weight = b.at<const float>(arena, big, weight);
    c.loss = b.at<float>(arena, big, loss);
    c.lse = b.at<float>(arena, big, lse);
    c.stats = b.at<CrossEntropyRowStats>(arena, big, stats);
    c.predicted = b.at<std::int64_t>(arena, big, predicted);
    c.accuracy = b.at<float>(arena, big, accuracy);
    c.saved_stats = b.at<const CrossEntropyRowStats>(arena, big, saved);
    c.grad = b.at(arena, big, grad);
    c.upstream_grad = b.at<const float>(arena, big, upstream);
    if (sharded_outputs_only) {
      c.stats = nullptr;
      c.saved_stats = nullptr;
      c.predicted = nullptr;
      c.accuracy = nullptr;
    }
    switch (pass) {
      case 0: return cross_entropy_forward(c, o, exec);
      case 1: return cross_entropy_backward(c, o, exec);
      case 2: return cross_entropy_forward_backward(c, o, exec);
      case 3:
        return cross_entropy_shard_stats(
            c, shard, o, b.at<CrossEntropyShardStats>(arena, big, shard_stats), exec);
      default:
        return cross_entropy_shard_finish(
            c, shard, o, b.at<const CrossEntropyShardStats>(arena, big, gathered), shards, exec);
    }
  });
  return 0;
}
