// Argument checks shared by the public entry points (host/<op>.cpp). Each check returns ok or an
// invalid_argument Status whose argument() is the field name as spelled in the public structs
// and whose message starts with that name, so every op reports the same mistake the same way.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <sstream>
#include <string>

#include <actloss/actloss.h>

namespace actloss::host {

// Returns from the enclosing function when `expr` yields a non-ok Status.
#define ACTLOSS_TRY(expr)                                      \
  do {                                                         \
    if (::actloss::Status actloss_try_status_ = (expr);        \
        !actloss_try_status_.ok()) {                           \
      return actloss_try_status_;                              \
    }                                                          \
  } while (false)

template <class... Parts>
std::string concat(const Parts&... parts) {
  std::ostringstream out;
  out.precision(9);  // enough to show any float option exactly as the caller passed it
  (out << ... << parts);
  return out.str();
}

// A Status whose message is "<argument>: <parts...>".
template <class... Parts>
Status make_status(StatusCode code, const char* argument, const Parts&... parts) {
  return Status(code, argument, concat(argument, ": ", parts...));
}

template <class... Parts>
Status invalid(const char* argument, const Parts&... parts) {
  return make_status(StatusCode::invalid_argument, argument, parts...);
}

// Enum values can arrive as anything a caller cast into them; these say whether the value is
// one of the enumerators.
bool is_valid(DType dtype);
bool is_valid(Reduction reduction);
bool is_valid(Device device);

// Device::cpu and Device::reference: host memory, no workspace, no stream.
constexpr bool runs_on_host(Device device) { return device != Device::cuda; }

Status check_exec(const Exec& exec);                             // "exec.device"
Status check_dtype(DType dtype, const char* argument);
Status check_reduction(Reduction reduction);                     // "options.reduction"
Status check_non_negative(std::int64_t size, const char* argument);
Status check_finite(float value, const char* argument);
Status check_finite_non_negative(float value, const char* argument);
Status check_required(const void* pointer, const char* argument, const char* why);

// Replaces a 0 stride by `cols` (dense); rejects a negative stride or one below `cols`.
Status normalize_stride(std::int64_t& stride, std::int64_t cols, const char* stride_argument,
                        const char* cols_argument);

// The bytes a pass may touch through one pointer. `bytes == 0` means nothing is touched, so the
// pointer may be null and can never overlap anything.
struct Region {
  const char* argument = "";
  const void* data = nullptr;
  std::int64_t bytes = 0;
  // For recognising the documented in-place cases: same start, same element type, same strides.
  DType dtype = DType::f32;
  std::int64_t row_stride = 0;
  std::int64_t batch_stride = 0;
  // A matrix of several rows (matrix_region): row_bytes of elements every stride_bytes, so that
  // two such regions with the same stride are compared element by element (0 otherwise).
  std::int64_t rows = 0;
  std::int64_t row_bytes = 0;
  std::int64_t stride_bytes = 0;
};

// Batched row views (CrossEntropyArgs::rows_per_batch): rows_per_batch 0 becomes rows (one batch;
// 1 when there are no rows); otherwise it must divide rows. Names "rows_per_batch".
Status normalize_rows_per_batch(std::int64_t& rows_per_batch, std::int64_t rows);

// A batch stride of an operand of `rows` rows of `cols` elements, row stride already normalised:
// 0 becomes dense (rows_per_batch * row_stride, saturated); negative is refused, and so is a
// layout in which two rows would share an element: the batches must lie either beyond a batch's
// last row (batch_stride >= rows_per_batch * row_stride) or between its rows (batch_stride >=
// cols and row_stride >= batches * batch_stride, a [T, B, C] tensor viewed as [B, T, C]). With
// one batch, any value is dense.
Status normalize_batch_stride(std::int64_t& batch_stride, std::int64_t rows,
                              std::int64_t rows_per_batch, std::int64_t cols,
                              std::int64_t row_stride, const char* batch_stride_argument,
                              const char* row_stride_argument);

// A strided rows x cols operand (stride already normalised): its extent is
// ((rows - 1) * stride + cols) * dtype_size bytes. Fails when data is not aligned to the dtype's
// size, when that extent overflows int64 or when data + extent would wrap around the address
// space. The size named on overflow is the stride
// when padding made it overflow, else the dimension that is too large.
Status matrix_region(const char* argument, const void* data, DType dtype, std::int64_t rows,
                     std::int64_t cols, std::int64_t stride, const char* rows_argument,
                     const char* cols_argument, const char* stride_argument, Region& out);

// A matrix whose rows may come in batches (rows_per_batch and strides normalised). One batch is
// matrix_region, with its checks and the names they report ("rows", cols_argument,
// stride_argument). Several: the extent runs from the first element to the last,
// (batches - 1) * batch_stride + (rows_per_batch - 1) * row_stride + cols elements, and overflow
// is reported against the batch stride.
Status batched_region(const char* argument, const void* data, DType dtype, std::int64_t rows,
                      std::int64_t cols, std::int64_t row_stride, std::int64_t rows_per_batch,
                      std::int64_t batch_stride, const char* cols_argument,
                      const char* stride_argument, const char* batch_stride_argument,
                      Region& out);

// Class indices of `element_size` bytes, one per row, contiguous within each batch: one batch is
// vector_region (counted by "rows"); several, as batched_region.
Status class_index_region(const char* argument, const void* data, std::int64_t element_size,
                          std::int64_t rows, std::int64_t rows_per_batch,
                          std::int64_t batch_stride, const char* batch_stride_argument,
                          Region& out);

// `count` contiguous elements of `element_size` bytes, aligned to `alignment` bytes (0: to
// element_size).
Status vector_region(const char* argument, const void* data, std::int64_t count,
                     std::int64_t element_size, const char* count_argument, Region& out,
                     std::int64_t alignment = 0);

// The regions share a byte: their ranges [data, data + bytes) intersect and, for two matrices
// with the same row stride in bytes, some row of one meets some row of the other (so the two
// halves of a [rows x 2n] tensor are apart); empty ranges never do.
bool overlaps(const Region& a, const Region& b);

// Exactly the same view of memory: what the in-place cases require.
bool same_view(const Region& a, const Region& b);

// invalid_argument naming `output` when it overlaps any of `others`.
Status check_no_overlap(const Region& output, std::initializer_list<const Region*> others);

// Same, except that an exact same_view with `in_place_partner` is allowed (any other overlap
// with it, e.g. a different dtype or stride, is not).
Status check_no_overlap_except_in_place(const Region& output, const Region& in_place_partner,
                                        std::initializer_list<const Region*> others);

// That every region the call will touch is memory its device can use: for Device::cuda, that a
// device is usable and (unless exec.pointer_checks says none) that each buffer is
// device-accessible; for Device::cpu in a build with the CUDA backend, that no buffer is device
// memory, which the host cannot read.
Status check_memory(const Exec& exec, std::initializer_list<const Region*> regions);

// exec.workspace of an op that may use one: data and bytes given together, data aligned to 16
// bytes, the range not wrapping around and apart from every region of the call. Its size is the
// backend's to check (it depends on the device); `out` is the region the call will touch, for
// check_memory: empty on Device::cpu, which never uses a workspace.
Status check_workspace(const Exec& exec, std::initializer_list<const Region*> regions,
                       Region& out);

// The common checks of a *_workspace_size query: exec and the out pointer.
Status check_workspace_query(const Exec& exec, const std::size_t* bytes);

// The vocabulary-parallel calls' checks (cross-entropy and linear cross-entropy): a shard of
// `classes` classes that lies in [0, shard.total_classes) ("shard"), and a gather of `shards` x
// `rows` statistics (shards in [1, total_classes]: each holds a class at least), whose region
// `gathered` receives. Both pass anything when rows is 0.
Status check_shard(std::int64_t rows, std::int64_t classes, const CrossEntropyShard& shard);
Status gathered_stats_region(const CrossEntropyShardStats* gathered, std::int64_t shards,
                             std::int64_t rows, const CrossEntropyShard& shard,
                             Region& gathered_region);

}  // namespace actloss::host
