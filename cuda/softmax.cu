// Softmax and log-softmax over rows on CUDA, forward and backward (from the saved output).
//
// Forward: one read of the row gives its max m and s = sum exp(x - m) = 1 + rest (online: see
// cuda/row_common.cuh); then y = exp(x - m) / s, or (x - m) - log1p(rest), written once. On-chip paths
// hold the row in registers; block_shared keeps the copy it read in shared memory, and
// cluster_shared the copies its blocks read in theirs; block_two_pass reads it a second time
// (mostly from L2).
// An all -inf row has s = 0: softmax gives 0 (exp(-inf) times 1/s taken as 0) and log-softmax
// -inf, never the NaN of -inf - -inf.
// Backward: one read of y and dy gives the row's dot product (softmax: sum dy y; log-softmax:
// sum dy), in double; then dx = y (dy - dot), or dy - exp(y) sum dy, written once. y is held in
// its own dtype, dy as float (its dtype is a run-time value: it may differ from y's), in
// registers on chip, in shared memory for block_shared; block_two_pass reads them again.
#include "cuda/row_common.cuh"

namespace actloss::cuda {
namespace {

using row::kChunk;
using row::RowGroup;
using row::RowLaunch;
using row::RowTiles;

// ---------------------------------------------------------------------------------------------
// Forward.

struct SoftmaxForwardParams {
  std::int64_t rows = 0;
  int cols = 0;
  const void* x = nullptr;
  row::RowStarts x_rows;
  void* y = nullptr;
  row::RowStarts y_rows;
  bool log = false;
  int threads_per_row = 32;
  int staging_chunks = 0;  // block_shared, cluster_shared: the row is staged in shared memory
  int cluster_blocks = 1;  // cluster_shared: the blocks of a row's cluster
  bool prefetch = false;   // short rows: the next row loaded before this one is reduced
  bool chunk_pieces = true;  // misaligned chunks: row::load_chunk, row::store_chunk
  bool lane_shift = true;    // a misaligned row's first read from memory: row::load_shifted
};

// Row r of x into `row` (nothing for a row past the end).
template <class TX, class Row>
__device__ __forceinline__ void load_forward_row(const SoftmaxForwardParams& p,
                                                 const RowGroup& group, Row& row,
                                                 std::int64_t r) {
  const bool in_range = r < p.rows;
  const TX* x_row = static_cast<const TX*>(p.x) + (in_range ? p.x_rows.of(r) : 0);
  row.load(x_row, in_range ? p.cols : 0, group.rank, group.size, p.chunk_pieces, p.lane_shift);
}

// Row r, loaded by load_forward_row.
template <class TX, class TY, class Row>
__device__ __forceinline__ void softmax_forward_row(const SoftmaxForwardParams& p,
                                                    const RowGroup& group, Row& row,
                                                    std::int64_t r) {
  const bool in_range = r < p.rows;
  float m = -INFINITY;
  double rest = -1.0;
  row.for_each(
      [&](int, const float (&x)[kChunk], row::Span) { row::add_chunk_max_rest(m, rest, x); });
  group.reduce_max_rest(m, rest);
  group.order_reads_before_writes();  // y may be x
  if (!in_range) return;

  // s = 1 + rest (row_common.cuh). NaN or +inf in the row makes rest NaN, and with it every
  // output; an all -inf row has rest = -1: softmax 0, log-softmax -inf.
  const float shift = m == -INFINITY ? 0.0f : m;
  const float log_s = log1pf(static_cast<float>(rest));
  const bool no_mass = rest == -1.0;
  const float inv_s = no_mass ? 0.0f : 1.0f / (1.0f + static_cast<float>(rest));
  TY* y_row = static_cast<TY*>(p.y) + p.y_rows.of(r);
  row.for_each([&](int col0, const float (&x)[kChunk], row::Span) {
    float out[kChunk];
#pragma unroll
    for (int j = 0; j < kChunk; ++j) {
      if (p.log)
        out[j] = no_mass ? -INFINITY : (x[j] - shift) - log_s;
      else
        out[j] = row::exp_shifted(x[j], shift) * inv_s;
    }
    row::store_chunk(y_row, col0, p.cols, out, p.chunk_pieces);
  });
}

// kChunks > 0: the row in registers; 0: the row in global memory (block_two_pass), staged in
// shared memory on its first read when the plan gives a staging area (block_shared);
// row::kClusterChunks: the row over a cluster's blocks, staged in their shared memory
// (cluster_shared).
//
// Launch bounds: row::RowBounds, the largest tile being eight chunks of 16-bit x and four of f32
// (block_on_chip). The one-chunk tiles of the shortest rows, the next row's among them
// (for_each_row_tile), fit 64 registers without spilling (ptxas -v, sm_90; f32 spilled at 48):
// four blocks of 256 threads per SM. The four-chunk tile of 16-bit x (warp_per_row, 1025-2048
// columns) fits the cap of 80 registers: without it, ptxas took 111 once misaligned chunks moved
// in pieces, leaving room for two blocks of 256 instead of three.
template <class TX, int kChunks>
using ForwardBounds = row::RowBounds<kChunks, sizeof(TX) == 2 ? 8 : 4, 4, 4>;

template <class TX, class TY, int kChunks>
__global__ void __launch_bounds__(ForwardBounds<TX, kChunks>::kMaxThreads,
                                  ForwardBounds<TX, kChunks>::kMinBlocks)
    softmax_forward_kernel(SoftmaxForwardParams p) {
  __shared__ double2 exchange[row::kMaxWarps];
  SIMCUDA_DYNAMIC_SHARED(uint4, staging_area);
  constexpr bool kInCluster = kChunks == row::kClusterChunks;
  const RowGroup group = kInCluster ? RowGroup::make_cluster(exchange)
                                    : RowGroup::make(p.threads_per_row, exchange);
  const RowTiles tiles{p.rows, group.rows_per_block(), group.row_in_block()};
  if constexpr (kChunks > 0) {
    using Row = row::RegisterRow<TX, kChunks>;
    row::for_each_row_tile<Row>(
        tiles, kChunks <= 2 && p.prefetch,
        [&](Row& source, std::int64_t r) { load_forward_row<TX>(p, group, source, r); },
        [&](Row& source, std::int64_t r) { softmax_forward_row<TX, TY>(p, group, source, r); });
  } else {
    for (std::int64_t tile = group.first_tile(); tile < tiles.count();
         tile += group.tile_stride()) {
      row::GlobalRow<TX, kInCluster> source;
      // In a cluster, the cluster's exchange slot comes first (RowGroup).
      source.staging = p.staging_chunks > 0 ? staging_area + (kInCluster ? 1 : 0) : nullptr;
      source.staging_chunks = p.staging_chunks;
      load_forward_row<TX>(p, group, source, tiles.row_of(tile));
      softmax_forward_row<TX, TY>(p, group, source, tiles.row_of(tile));
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Backward.

struct SoftmaxBackwardParams {
  std::int64_t rows = 0;
  int cols = 0;
  const void* y = nullptr;
  row::RowStarts y_rows;
  const void* dy = nullptr;
  DType dy_dtype = DType::f32;
  row::RowStarts dy_rows;  // elements
  void* dx = nullptr;
  row::RowStarts dx_rows;
  bool log = false;
  int threads_per_row = 32;
  int staging_chunks = 0;    // block_shared: y and dy are staged in dynamic shared memory
  bool chunk_pieces = true;  // misaligned chunks: row::load_chunk, row::store_chunk
};

// Row sources for two tensors, as RegisterRow and GlobalRow of row_common.cuh: body(col0, y, dy,
// span) for each of the thread's chunks. Elements outside the row are -inf; bodies look at the
// span.
template <class T, int kChunks>
struct RegisterPairRow {
  row::Chunk<T> y[kChunks];
  float dy[kChunks][kChunk];
  int cols, first, step;
  bool pieces;

  __device__ __forceinline__ void load(const T* y_row, const void* dy_row, DType dy_dtype,
                                       int row_cols, int rank, int size, bool chunk_pieces) {
    pieces = chunk_pieces;
    cols = row_cols;
    first = rank;
    step = size;
#pragma unroll
    for (int k = 0; k < kChunks; ++k) {
      const int col0 = (first + k * step) * kChunk;
      if (col0 < cols) {
        row::load_chunk(y[k], y_row, col0, cols, pieces);
        row::load_chunk_as_float(dy[k], dy_row, dy_dtype, col0, cols, pieces);
      } else {
#pragma unroll
        for (int j = 0; j < kChunk; ++j) {
          y[k].v[j] = row::negative_infinity<T>();
          dy[k][j] = -INFINITY;
        }
      }
    }
  }

  template <class Body>
  __device__ __forceinline__ void for_each(Body&& body) const {
#pragma unroll
    for (int k = 0; k < kChunks; ++k) {
      const int col0 = (first + k * step) * kChunk;
      if (col0 < cols) {
        float yk[kChunk];
#pragma unroll
        for (int j = 0; j < kChunk; ++j) yk[j] = row::element(y[k], j);
        body(col0, yk, dy[k], row::span_of(col0, cols));
      }
    }
  }
};

// The pair read from global memory (block_two_pass, block_shared). With a staging area
// (block_shared) the first visit also copies y and dy (as float) into shared memory and the
// second reads them there, so each crosses the memory bus once; as GlobalRow of row_common.cuh,
// a thread stages and reads back only its own chunks (no barrier), word-planar: 16-byte word i
// of chunk c at i * staging_chunks + c, y's words first, then dy's two.
template <class T>
struct GlobalPairRow {
  static constexpr int kUnroll = 2;
  static constexpr int kYWords = sizeof(row::Chunk<T>) / 16;
  static constexpr int kDyWords = kChunk * sizeof(float) / 16;
  const T* y_row;
  const void* dy_row;
  DType dy_dtype;
  int cols, first, step;
  bool pieces;
  uint4* staging = nullptr;  // block_shared's area, or null
  int staging_chunks = 0;    // its chunks per word plane
  bool staged = false;       // a visit of this row has filled the area

  __device__ __forceinline__ void load(const T* y_data, const void* dy_data, DType dtype,
                                       int row_cols, int rank, int size, bool chunk_pieces) {
    pieces = chunk_pieces;
    y_row = y_data;
    dy_row = dy_data;
    dy_dtype = dtype;
    cols = row_cols;
    first = rank;
    step = size;
    staged = false;
  }

  __device__ __forceinline__ void stage(const row::Chunk<T>& y, const float (&dy)[kChunk],
                                        int c) const {
#pragma unroll
    for (int i = 0; i < kYWords; ++i)
      staging[i * staging_chunks + c] = reinterpret_cast<const uint4*>(y.v)[i];
#pragma unroll
    for (int i = 0; i < kDyWords; ++i) {
      uint4 word;
      word.x = __float_as_uint(dy[4 * i]);
      word.y = __float_as_uint(dy[4 * i + 1]);
      word.z = __float_as_uint(dy[4 * i + 2]);
      word.w = __float_as_uint(dy[4 * i + 3]);
      staging[(kYWords + i) * staging_chunks + c] = word;
    }
  }
  __device__ __forceinline__ void unstage(row::Chunk<T>& y, float (&dy)[kChunk], int c) const {
#pragma unroll
    for (int i = 0; i < kYWords; ++i)
      reinterpret_cast<uint4*>(y.v)[i] = staging[i * staging_chunks + c];
#pragma unroll
    for (int i = 0; i < kDyWords; ++i) {
      const uint4 word = staging[(kYWords + i) * staging_chunks + c];
      dy[4 * i] = __uint_as_float(word.x);
      dy[4 * i + 1] = __uint_as_float(word.y);
      dy[4 * i + 2] = __uint_as_float(word.z);
      dy[4 * i + 3] = __uint_as_float(word.w);
    }
  }

  template <class Body>
  __device__ __forceinline__ void visit(const row::Chunk<T>& y_raw, const float (&dy)[kChunk],
                                        int c, Body& body) const {
    float y[kChunk];
#pragma unroll
    for (int j = 0; j < kChunk; ++j) y[j] = row::element(y_raw, j);
    const int col0 = row::chunk_column(c);
    body(col0, y, dy, row::span_of(col0, cols));
  }

  template <class Body>
  __device__ __forceinline__ void for_each(Body&& body) {
    const int chunks = row::row_chunks(cols);
    if (staged) {
      for (int c = first; c < chunks; c += step) {
        row::Chunk<T> y_raw;
        float dy[kChunk];
        unstage(y_raw, dy, c);
        visit(y_raw, dy, c, body);
      }
      return;
    }
    int c = first;
    for (; c + (kUnroll - 1) * step < chunks; c += kUnroll * step) {
      row::Chunk<T> y_raw[kUnroll];
      float dy[kUnroll][kChunk];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int col0 = row::chunk_column(c + u * step);
        row::load_chunk(y_raw[u], y_row, col0, cols, pieces);
        row::load_chunk_as_float(dy[u], dy_row, dy_dtype, col0, cols, pieces);
      }
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        if (staging != nullptr) stage(y_raw[u], dy[u], c + u * step);
        visit(y_raw[u], dy[u], c + u * step, body);
      }
    }
    for (; c < chunks; c += step) {
      const int col0 = row::chunk_column(c);
      row::Chunk<T> y_raw{};  // {}: for g++ -O3 in the simulator, which cannot see the word stores
      float dy[kChunk];
      row::load_chunk(y_raw, y_row, col0, cols, pieces);
      row::load_chunk_as_float(dy, dy_row, dy_dtype, col0, cols, pieces);
      if (staging != nullptr) stage(y_raw, dy, c);
      visit(y_raw, dy, c, body);
    }
    staged = staging != nullptr;
  }
};

template <class TY, class TDX, class Row>
__device__ __forceinline__ void softmax_backward_row(const SoftmaxBackwardParams& p,
                                                     const RowGroup& group, Row& row,
                                                     std::int64_t r) {
  const bool in_range = r < p.rows;
  const TY* y_row = static_cast<const TY*>(p.y) + (in_range ? p.y_rows.of(r) : 0);
  const char* dy_row = static_cast<const char*>(p.dy) +
                       (in_range ? p.dy_rows.of(r) * dtype_size(p.dy_dtype) : 0);
  row.load(y_row, dy_row, p.dy_dtype, in_range ? p.cols : 0, group.rank, group.size,
           p.chunk_pieces);
  // softmax: sum dy y; log-softmax: sum dy. In double, where every product of two floats is
  // exact: dx = y (dy - dot) cancels to a small difference where dy is nearly dot (a confident
  // row), and float accumulation would leave an error relative to dot, not to that difference.
  double dot = 0.0;
  row.for_each([&](int, const float (&y)[kChunk], const float (&dy)[kChunk], row::Span span) {
#pragma unroll
    for (int j = 0; j < kChunk; ++j)
      if (span.has(j))
        dot += p.log ? static_cast<double>(dy[j])
                     : static_cast<double>(dy[j]) * static_cast<double>(y[j]);
  });
  dot = group.reduce_sum(dot);
  group.order_reads_before_writes();  // dx may be dy
  if (!in_range) return;

  // The row's dot product in two floats, dot = hi + lo to double precision, so that the float
  // difference (dy - hi) - lo is as accurate as a double one where dy and dot nearly cancel. A
  // dot beyond 2^100 (dy and y near float's range) could overflow hi or the difference although
  // dx is finite: such a row is done in double, apart, so that the common loop holds no double.
  TDX* dx_row = static_cast<TDX*>(p.dx) + p.dx_rows.of(r);
  if (fabs(dot) <= 0x1p100) {
    const float hi = static_cast<float>(dot);
    const float lo = static_cast<float>(dot - static_cast<double>(hi));
    row.for_each([&](int col0, const float (&y)[kChunk], const float (&dy)[kChunk], row::Span) {
      float out[kChunk];
#pragma unroll
      for (int j = 0; j < kChunk; ++j) {
        // log-softmax: a zero sum of dy contributes nothing, also where exp(y) is inf.
        out[j] = p.log ? (hi == 0.0f ? dy[j]
                                     : __fsub_rn(__fmaf_rn(-expf(y[j]), hi, dy[j]),
                                                 expf(y[j]) * lo))
                       : y[j] * __fsub_rn(__fsub_rn(dy[j], hi), lo);
      }
      row::store_chunk(dx_row, col0, p.cols, out, p.chunk_pieces);
    });
  } else {
    row.for_each([&](int col0, const float (&y)[kChunk], const float (&dy)[kChunk], row::Span) {
      float out[kChunk];
#pragma unroll
      for (int j = 0; j < kChunk; ++j) {
        const double dy_j = dy[j];
        out[j] = static_cast<float>(p.log ? dy_j - static_cast<double>(expf(y[j])) * dot
                                          : static_cast<double>(y[j]) * (dy_j - dot));
      }
      row::store_chunk(dx_row, col0, p.cols, out, p.chunk_pieces);
    });
  }
}

template <class TY, class TDX, int kChunks>
// Launch bounds: row::RowBounds, two chunks of y and dy being the largest tile.
__global__ void __launch_bounds__(row::RowBounds<kChunks, 2>::kMaxThreads,
                                  row::RowBounds<kChunks, 2>::kMinBlocks)
    softmax_backward_kernel(SoftmaxBackwardParams p) {
  __shared__ double2 exchange[row::kMaxWarps];
  SIMCUDA_DYNAMIC_SHARED(uint4, staging_area);
  const RowGroup group = RowGroup::make(p.threads_per_row, exchange);
  const RowTiles tiles{p.rows, group.rows_per_block(), group.row_in_block()};
  for (std::int64_t tile = blockIdx.x; tile < tiles.count(); tile += gridDim.x) {
    if constexpr (kChunks > 0) {
      RegisterPairRow<TY, kChunks> source;
      softmax_backward_row<TY, TDX>(p, group, source, tiles.row_of(tile));
    } else {
      GlobalPairRow<TY> source;
      source.staging = p.staging_chunks > 0 ? staging_area : nullptr;
      source.staging_chunks = p.staging_chunks;
      softmax_backward_row<TY, TDX>(p, group, source, tiles.row_of(tile));
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Launchers.

// The forward kernel of a call, handed to `run` (row::KernelLaunch, or row::KernelResidency
// while the plan is sized).
template <class Run>
Status dispatch_forward(const RowLaunch& launch, const SoftmaxForwardParams& params,
                        DType x_dtype, DType y_dtype, const Run& run) {
  return row::with_dtype("softmax", x_dtype, [&](auto x_tag) {
    return row::with_dtype("softmax", y_dtype, [&](auto y_tag) {
      using TX = typename decltype(x_tag)::type;
      using TY = typename decltype(y_tag)::type;
      // Eight chunks fit the register budget only for 16-bit inputs (row_dispatch.h).
      const cudaError_t error =
          row::launch_for_chunks<sizeof(TX) == 2 ? 8 : 4, true>(launch.chunks, [&](auto chunks) {
            return run(softmax_forward_kernel<TX, TY, decltype(chunks)::value>, launch, params);
          });
      ACTLOSS_CUDA_TRY(error);
      return Status{};
    });
  });
}

template <class Run>
Status dispatch_backward(const RowLaunch& launch, const SoftmaxBackwardParams& params,
                         DType y_dtype, DType dx_dtype, const Run& run) {
  return row::with_dtype("softmax", y_dtype, [&](auto y_tag) {
    return row::with_dtype("softmax", dx_dtype, [&](auto dx_tag) {
      using TY = typename decltype(y_tag)::type;
      using TDX = typename decltype(dx_tag)::type;
      // y and dy both stay on chip, so backward holds at most two chunks of each
      // (row_dispatch.h).
      const cudaError_t error = row::launch_for_chunks<2, false>(launch.chunks, [&](auto chunks) {
        return run(softmax_backward_kernel<TY, TDX, decltype(chunks)::value>, launch, params);
      });
      ACTLOSS_CUDA_TRY(error);
      return Status{};
    });
  });
}

}  // namespace
}  // namespace actloss::cuda

namespace actloss::detail {

Status cuda_softmax_forward(const SoftmaxForwardArgs& args, const SoftmaxOptions& options,
                            const Exec& exec) {
  using namespace actloss::cuda;
  if (args.rows == 0) return {};
  if (Status status = row::check_row_length(args.cols, "cols"); !status.ok()) return status;
  const DeviceInfo* device = nullptr;
  if (Status status = current_device_info(&device); !status.ok()) return status;

  SoftmaxForwardParams p;
  p.rows = args.rows;
  p.cols = static_cast<int>(args.cols);
  p.x = args.x;
  p.x_rows = row::row_starts(args.rows, args.rows_per_batch, args.x_row_stride,
                             args.x_batch_stride);
  p.y = args.y;
  p.y_rows = row::row_starts(args.rows, args.rows_per_batch, args.y_row_stride,
                             args.y_batch_stride);
  p.log = options.log;
  RowLaunch launch =
      row::plan_row_launch(RowOp::softmax_forward, args.rows, args.cols, args.x_dtype, *device);
  if (Status status = row::count_resident_blocks(
          launch, args.rows, *device,
          [&](const row::KernelResidency& residency) {
            return dispatch_forward(launch, p, args.x_dtype, args.y_dtype, residency);
          });
      !status.ok())
    return status;
  p.threads_per_row = launch.threads_per_row;
  p.staging_chunks = launch.staging_chunks;
  p.cluster_blocks = launch.cluster_blocks;
  p.prefetch = launch.prefetch;
  p.chunk_pieces = launch.chunk_pieces;
  p.lane_shift = launch.lane_shift;
  return dispatch_forward(launch, p, args.x_dtype, args.y_dtype, row::KernelLaunch{exec.stream});
}

Status cuda_row_geometry_for_testing(RowOp op, std::int64_t rows, std::int64_t cols, DType dtype,
                                     int* threads_per_row, int* cluster_blocks) {
  using namespace actloss::cuda;
  const DeviceInfo* device = nullptr;
  if (Status status = current_device_info(&device); !status.ok()) return status;
  const RowLaunch launch = row::plan_row_launch(op, rows, cols, dtype, *device);
  *threads_per_row = launch.threads_per_row;
  *cluster_blocks = launch.cluster_blocks;
  return {};
}

Status cuda_softmax_backward(const SoftmaxBackwardArgs& args, const SoftmaxOptions& options,
                             const Exec& exec) {
  using namespace actloss::cuda;
  if (args.rows == 0) return {};
  if (Status status = row::check_row_length(args.cols, "cols"); !status.ok()) return status;
  const DeviceInfo* device = nullptr;
  if (Status status = current_device_info(&device); !status.ok()) return status;

  SoftmaxBackwardParams p;
  p.rows = args.rows;
  p.cols = static_cast<int>(args.cols);
  p.y = args.y;
  p.y_rows = row::row_starts(args.rows, args.rows_per_batch, args.y_row_stride,
                             args.y_batch_stride);
  p.dy = args.dy;
  p.dy_dtype = args.dy_dtype;
  p.dy_rows = row::row_starts(args.rows, args.rows_per_batch, args.dy_row_stride,
                              args.dy_batch_stride);
  p.dx = args.dx;
  p.dx_rows = row::row_starts(args.rows, args.rows_per_batch, args.dx_row_stride,
                              args.dx_batch_stride);
  p.log = options.log;
  RowLaunch launch =
      row::plan_row_launch(RowOp::softmax_backward, args.rows, args.cols, args.y_dtype, *device);
  if (Status status = row::count_resident_blocks(
          launch, args.rows, *device,
          [&](const row::KernelResidency& residency) {
            return dispatch_backward(launch, p, args.y_dtype, args.dx_dtype, residency);
          });
      !status.ok())
    return status;
  p.threads_per_row = launch.threads_per_row;
  p.staging_chunks = launch.staging_chunks;
  p.chunk_pieces = launch.chunk_pieces;
  return dispatch_backward(launch, p, args.y_dtype, args.dx_dtype,
                           row::KernelLaunch{exec.stream});
}

}  // namespace actloss::detail
