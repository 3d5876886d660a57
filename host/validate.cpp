#include "host/validate.h"

#include <cmath>
#include <cstdint>

#include "host/backend.h"

namespace actloss::host {

bool is_valid(DType dtype) { return dtype_size(dtype) != 0; }

bool is_valid(Reduction reduction) {
  switch (reduction) {
    case Reduction::none:
    case Reduction::sum:
    case Reduction::mean: return true;
  }
  return false;
}

bool is_valid(Device device) {
  switch (device) {
    case Device::cpu:
    case Device::cuda:
    case Device::reference: return true;
  }
  return false;
}

Status check_exec(const Exec& exec) {
  if (!is_valid(exec.device)) {
    return invalid("exec.device", "not a Device value (got ", static_cast<int>(exec.device), ")");
  }
  if (exec.pointer_checks != PointerChecks::every_call &&
      exec.pointer_checks != PointerChecks::none) {
    return invalid("exec.pointer_checks", "not a PointerChecks value (got ",
                   static_cast<int>(exec.pointer_checks), ")");
  }
  return {};
}

Status check_dtype(DType dtype, const char* argument) {
  if (!is_valid(dtype)) {
    return invalid(argument, "not a DType value (got ", static_cast<int>(dtype), ")");
  }
  return {};
}

Status check_reduction(Reduction reduction) {
  if (!is_valid(reduction)) {
    return invalid("options.reduction", "not a Reduction value (got ",
                   static_cast<int>(reduction), ")");
  }
  return {};
}

Status check_non_negative(std::int64_t size, const char* argument) {
  if (size < 0) return invalid(argument, "must be >= 0 (got ", size, ")");
  return {};
}

Status check_finite(float value, const char* argument) {
  if (!std::isfinite(value)) return invalid(argument, "must be finite (got ", value, ")");
  return {};
}

Status check_finite_non_negative(float value, const char* argument) {
  // Written so that NaN fails too.
  if (!(std::isfinite(value) && value >= 0.0f)) {
    return invalid(argument, "must be finite and >= 0 (got ", value, ")");
  }
  return {};
}

Status check_required(const void* pointer, const char* argument, const char* why) {
  if (pointer == nullptr) return invalid(argument, "must not be null (", why, ")");
  return {};
}

Status normalize_stride(std::int64_t& stride, std::int64_t cols, const char* stride_argument,
                        const char* cols_argument) {
  if (stride == 0) stride = cols;
  if (stride < cols) {
    // Also catches negative strides: cols is already known to be >= 0.
    return invalid(stride_argument, "must be 0 (dense) or >= ", cols_argument, " (got ", stride,
                   ", ", cols_argument, " ", cols, ")");
  }
  return {};
}

Status normalize_rows_per_batch(std::int64_t& rows_per_batch, std::int64_t rows) {
  if (rows_per_batch < 0) {
    return invalid("rows_per_batch", "must be >= 0 (got ", rows_per_batch, "; 0: one batch)");
  }
  if (rows_per_batch == 0) {
    rows_per_batch = rows > 0 ? rows : 1;
    return {};
  }
  if (rows % rows_per_batch != 0) {
    return invalid("rows_per_batch", "must divide rows (got ", rows_per_batch, ", rows ", rows,
                   ")");
  }
  return {};
}

Status normalize_batch_stride(std::int64_t& batch_stride, std::int64_t rows,
                              std::int64_t rows_per_batch, std::int64_t cols,
                              std::int64_t row_stride, const char* batch_stride_argument,
                              const char* row_stride_argument) {
  if (batch_stride < 0) {
    return invalid(batch_stride_argument, "must be >= 0 (got ", batch_stride, "; 0: dense)");
  }
  std::int64_t dense = 0;
  if (__builtin_mul_overflow(rows_per_batch, row_stride, &dense)) dense = INT64_MAX;
  const std::int64_t batches = rows_per_batch > 0 ? rows / rows_per_batch : 0;
  if (batch_stride == 0 || batches <= 1) {
    batch_stride = dense;
    return {};
  }
  if (batch_stride >= dense) return {};
  // Batches interleaved with the rows: each row of a batch falls between two rows of the others.
  std::int64_t batches_span = 0;
  const bool interleaved = batch_stride >= cols &&
                           !__builtin_mul_overflow(batches, batch_stride, &batches_span) &&
                           (rows_per_batch == 1 || row_stride >= batches_span);
  if (interleaved) return {};
  return invalid(batch_stride_argument, "rows of different batches would share elements (got ",
                 batch_stride, " with ", row_stride_argument, " ", row_stride, ", ", cols,
                 " columns, ", rows_per_batch, " rows per batch, ", batches,
                 " batches); use 0 (dense), at least rows_per_batch * row stride (",
                 dense, "), or a batch inside each row's stride");
}

namespace {

Status finish_region(const char* argument, const void* data, std::int64_t bytes,
                     std::int64_t alignment, Region& out) {
  // A misaligned element faults on a GPU (and is undefined behaviour on a CPU).
  const auto address = reinterpret_cast<std::uintptr_t>(data);
  if (data != nullptr && bytes > 0 && address % static_cast<std::uintptr_t>(alignment) != 0) {
    return invalid(argument, "must be aligned to ", alignment, " bytes, as its elements are (got ",
                   data, ")");
  }
  std::uintptr_t end = 0;
  if (data != nullptr &&
      __builtin_add_overflow(reinterpret_cast<std::uintptr_t>(data),
                             static_cast<std::uintptr_t>(bytes), &end)) {
    return invalid(argument, "the ", bytes, " bytes it spans wrap around the address space");
  }
  out.argument = argument;
  out.data = data;
  out.bytes = bytes;
  return {};
}

}  // namespace

Status matrix_region(const char* argument, const void* data, DType dtype, std::int64_t rows,
                     std::int64_t cols, std::int64_t stride, const char* rows_argument,
                     const char* cols_argument, const char* stride_argument, Region& out) {
  out = Region{};
  out.dtype = dtype;
  out.row_stride = stride;
  const std::int64_t element_size = dtype_size(dtype);
  if (rows == 0 || cols == 0) return finish_region(argument, data, 0, element_size, out);

  std::int64_t dense = 0;
  const bool dense_overflows = __builtin_mul_overflow(rows, cols, &dense) ||
                               __builtin_mul_overflow(dense, element_size, &dense);
  std::int64_t bytes = 0;
  const bool overflows = __builtin_mul_overflow(rows - 1, stride, &bytes) ||
                         __builtin_add_overflow(bytes, cols, &bytes) ||
                         __builtin_mul_overflow(bytes, element_size, &bytes);
  if (overflows) {
    const char* culprit = !dense_overflows ? stride_argument
                          : rows > 1        ? rows_argument
                                            : cols_argument;
    return invalid(culprit, "the extent of ", argument, " (", rows, " rows of ", cols,
                   " elements, row stride ", stride, ", ", element_size,
                   " bytes each) overflows int64");
  }
  if (rows > 1) {
    out.rows = rows;
    out.row_bytes = cols * element_size;
    out.stride_bytes = stride * element_size;
  }
  return finish_region(argument, data, bytes, element_size, out);
}

namespace {

// The extent of several batches of rows, in bytes, from the first element to the last.
Status batches_extent(const char* argument, const void* data, std::int64_t element_size,
                      std::int64_t rows, std::int64_t cols, std::int64_t row_stride,
                      std::int64_t rows_per_batch, std::int64_t batch_stride,
                      const char* batch_stride_argument, Region& out) {
  out.row_stride = row_stride;
  out.batch_stride = batch_stride;
  const std::int64_t batches = rows / rows_per_batch;
  std::int64_t batch_part = 0, row_part = 0, bytes = 0;
  const bool overflows = __builtin_mul_overflow(batches - 1, batch_stride, &batch_part) ||
                         __builtin_mul_overflow(rows_per_batch - 1, row_stride, &row_part) ||
                         __builtin_add_overflow(batch_part, row_part, &bytes) ||
                         __builtin_add_overflow(bytes, cols, &bytes) ||
                         __builtin_mul_overflow(bytes, element_size, &bytes);
  if (overflows) {
    return invalid(batch_stride_argument, "the extent of ", argument, " (", batches,
                   " batches of ", rows_per_batch, " rows of ", cols, " elements, batch stride ",
                   batch_stride, ", row stride ", row_stride, ", ", element_size,
                   " bytes each) overflows int64");
  }
  return finish_region(argument, data, bytes, element_size, out);
}

}  // namespace

Status batched_region(const char* argument, const void* data, DType dtype, std::int64_t rows,
                      std::int64_t cols, std::int64_t row_stride, std::int64_t rows_per_batch,
                      std::int64_t batch_stride, const char* cols_argument,
                      const char* stride_argument, const char* batch_stride_argument,
                      Region& out) {
  if (rows_per_batch >= rows || cols == 0) {
    return matrix_region(argument, data, dtype, rows, cols, row_stride, "rows", cols_argument,
                         stride_argument, out);
  }
  out = Region{};
  out.dtype = dtype;
  return batches_extent(argument, data, dtype_size(dtype), rows, cols, row_stride,
                        rows_per_batch, batch_stride, batch_stride_argument, out);
}

Status class_index_region(const char* argument, const void* data, std::int64_t element_size,
                          std::int64_t rows, std::int64_t rows_per_batch,
                          std::int64_t batch_stride, const char* batch_stride_argument,
                          Region& out) {
  if (rows_per_batch >= rows) return vector_region(argument, data, rows, element_size, "rows", out);
  out = Region{};
  return batches_extent(argument, data, element_size, rows, 1, 1, rows_per_batch, batch_stride,
                        batch_stride_argument, out);
}

Status vector_region(const char* argument, const void* data, std::int64_t count,
                     std::int64_t element_size, const char* count_argument, Region& out,
                     std::int64_t alignment) {
  out = Region{};
  out.row_stride = count;
  std::int64_t bytes = 0;
  if (__builtin_mul_overflow(count, element_size, &bytes)) {
    return invalid(count_argument, "the extent of ", argument, " (", count, " elements of ",
                   element_size, " bytes) overflows int64");
  }
  return finish_region(argument, data, bytes, alignment != 0 ? alignment : element_size, out);
}

namespace {

std::int64_t floor_div(std::int64_t a, std::int64_t b) {  // b > 0
  return a / b - (a % b != 0 && a < 0 ? 1 : 0);
}

}  // namespace

bool overlaps(const Region& a, const Region& b) {
  if (a.bytes == 0 || b.bytes == 0 || a.data == nullptr || b.data == nullptr) return false;
  // Compare as integers: relational operators on pointers into different objects are
  // unspecified.
  const auto a_begin = reinterpret_cast<std::uintptr_t>(a.data);
  const auto b_begin = reinterpret_cast<std::uintptr_t>(b.data);
  const bool ranges_meet = a_begin < b_begin + static_cast<std::uintptr_t>(b.bytes) &&
                           b_begin < a_begin + static_cast<std::uintptr_t>(a.bytes);
  if (!ranges_meet) return false;
  const std::int64_t stride = a.stride_bytes;
  if (stride == 0 || b.stride_bytes != stride) return true;
  // Row i of a is a + i S + [0, wa), row j of b is b + j S + [0, wb), wa and wb <= S; with
  // delta = b - a they meet where delta - wa < (i - j) S < delta + wb. The ranges meet, so
  // |delta| is below either extent.
  const auto delta = static_cast<std::int64_t>(b_begin - a_begin);
  const std::int64_t k_low = floor_div(delta - a.row_bytes, stride) + 1;
  const std::int64_t k_high = -floor_div(-(delta + b.row_bytes), stride) - 1;
  const std::int64_t low = k_low > -(b.rows - 1) ? k_low : -(b.rows - 1);
  const std::int64_t high = k_high < a.rows - 1 ? k_high : a.rows - 1;
  return low <= high;
}

bool same_view(const Region& a, const Region& b) {
  return a.data == b.data && a.dtype == b.dtype && a.row_stride == b.row_stride &&
         a.batch_stride == b.batch_stride && a.bytes == b.bytes;
}

Status check_no_overlap(const Region& output, std::initializer_list<const Region*> others) {
  for (const Region* other : others) {
    if (overlaps(output, *other)) {
      return invalid(output.argument, "overlaps ", other->argument,
                     " (outputs may not share memory with inputs or other outputs)");
    }
  }
  return {};
}

Status check_no_overlap_except_in_place(const Region& output, const Region& in_place_partner,
                                        std::initializer_list<const Region*> others) {
  if (overlaps(output, in_place_partner) && !same_view(output, in_place_partner)) {
    return invalid(output.argument, "overlaps ", in_place_partner.argument,
                   "; in place needs the same pointer, dtype and strides, and any other "
                   "overlap is not allowed");
  }
  return check_no_overlap(output, others);
}

Status check_workspace(const Exec& exec, std::initializer_list<const Region*> regions,
                       Region& out) {
  const Workspace& workspace = exec.workspace;
  out = Region{"exec.workspace", workspace.data, 0};
  if (workspace.data == nullptr) {
    if (workspace.bytes != 0) {
      return invalid("exec.workspace", "bytes is ", workspace.bytes,
                     " but data is null (give both, or neither to let the call allocate)");
    }
    return {};
  }
  if (reinterpret_cast<std::uintptr_t>(workspace.data) % 16 != 0) {
    return invalid("exec.workspace", "data must be aligned to 16 bytes (got address ",
                   workspace.data, ")");
  }
  const auto address = reinterpret_cast<std::uintptr_t>(workspace.data);
  if (workspace.bytes > static_cast<std::size_t>(INT64_MAX) ||
      address + workspace.bytes < address) {
    return invalid("exec.workspace", "bytes ", workspace.bytes,
                   " runs past the end of the address space");
  }
  out.bytes = static_cast<std::int64_t>(workspace.bytes);
  for (const Region* region : regions) {
    if (overlaps(out, *region)) {
      return invalid("exec.workspace", "overlaps ", region->argument,
                     " (the workspace must be apart from every buffer of the call)");
    }
  }
  if (runs_on_host(exec.device)) out.bytes = 0;
  return {};
}

Status check_workspace_query(const Exec& exec, const std::size_t* bytes) {
  ACTLOSS_TRY(check_exec(exec));
  if (bytes == nullptr) return invalid("bytes", "must not be null (where the size is written)");
  return {};
}

Status check_memory(const Exec& exec, std::initializer_list<const Region*> regions) {
  if (exec.device == Device::cuda) ACTLOSS_TRY(detail::cuda_require_device());
  if (exec.pointer_checks == PointerChecks::none) return {};
  for (const Region* region : regions) {
    if (region->bytes == 0 || region->data == nullptr) continue;
    ACTLOSS_TRY(detail::cuda_check_memory(exec.device, region->data, region->argument));
  }
  return {};
}

Status check_shard(std::int64_t rows, std::int64_t classes, const CrossEntropyShard& shard) {
  ACTLOSS_TRY(check_non_negative(shard.first_class, "shard.first_class"));
  ACTLOSS_TRY(check_non_negative(shard.total_classes, "shard.total_classes"));
  if (rows > 0 && (shard.first_class >= shard.total_classes ||
                   classes > shard.total_classes - shard.first_class)) {
    // No first_class + classes here: both may be near 2^63.
    return invalid("shard", classes, " classes from class ", shard.first_class,
                   " do not fit in the vocabulary of shard.total_classes = ",
                   shard.total_classes);
  }
  return {};
}

Status gathered_stats_region(const CrossEntropyShardStats* gathered, std::int64_t shards,
                             std::int64_t rows, const CrossEntropyShard& shard,
                             Region& gathered_region) {
  ACTLOSS_TRY(check_non_negative(shards, "shards"));
  if (rows > 0 && (shards == 0 || shards > shard.total_classes)) {
    return invalid("shards", "must be in [1, shard.total_classes = ", shard.total_classes,
                   "] (got ", shards, "): every shard holds a class at least");
  }
  std::int64_t count = 0;
  if (__builtin_mul_overflow(shards, rows, &count)) {
    return invalid("shards", shards, " x ", rows, " rows of statistics overflow");
  }
  ACTLOSS_TRY(vector_region("gathered", gathered, count, sizeof(CrossEntropyShardStats),
                            "shards x rows", gathered_region, alignof(CrossEntropyShardStats)));
  if (rows > 0) ACTLOSS_TRY(check_required(gathered, "gathered", "rows > 0"));
  return {};
}

}  // namespace actloss::host
