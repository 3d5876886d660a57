// The fused linear + cross-entropy (include/actloss/linear_cross_entropy.h) against what it
// replaces, forward and backward on a CUDA device, each path with its operands allocated and
// filled (hidden, weight, int64 targets, a mean loss, d_hidden of the inputs' dtype, float32
// d_weight), ready to run repeatedly:
//   fused    linear_cross_entropy_forward_backward with a workspace of
//            linear_cross_entropy_workspace_size, so that the call allocates nothing
//   gemms    the three GEMMs the fused call is made of, alone and at full size: logits = H W^T
//            (float32), d_hidden = G W (dtype), d_weight = G^T H (float32), G of dtype: the floor
//            that the fused call's time is compared with
//   unfused  the full-logits GEMM, cross_entropy_forward_backward on the [N x V] float32 logits
//            (gradient of dtype), then the two gradient GEMMs: what a framework runs eagerly
// Every GEMM is the fused call's own: cublasGemmEx through the library's table (cuda/blas.h),
// inputs of dtype, float32 compute, the default algorithm, on the library's handle for this
// thread. Going through that table, rather than linking libcublas, keeps the benchmark binary
// starting on a machine that has only the driver and the toolkit's libcublas.so, as the library
// does.
//
// Built where ACTLOSS_BENCH_LINEAR_CE is 1: nvcc builds, and simulator builds (where the GEMMs
// are the simulator's stand-ins and only tiny shapes make sense).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "benchmarks/byte_formulas.h"

namespace actloss::bench {

enum class LinearCePath : std::uint8_t { fused, gemms, unfused, sharded };

// "actloss", "gemms", "unfused", "actloss_sharded": the implementation part of a benchmark name.
const char* to_string(LinearCePath path);

struct LinearCeCase {
  LinearCePath path = LinearCePath::fused;
  LinearCrossEntropyShape shape;
  // fused only: tokens per chunk, through LinearCrossEntropyOptions::chunk_bytes; 0 for the
  // library's default.
  std::int64_t chunk_tokens = 0;
};

// "cuda/<impl>/linear_cross_entropy/fused/<dtype>/tokens:N/hidden:D/classes:V[/chunk_tokens:C]".
std::string linear_ce_name(const LinearCeCase& c);

// One stage of a run and its device time, for the paths made of separate calls.
struct LinearCeStage {
  const char* name;  // "logits", "cross_entropy", "d_hidden", "d_weight"
  double seconds;
};

class LinearCeWorkload {
 public:
  // Allocates and fills the operands, creates the thread's cuBLAS handle and runs a tiny GEMM on
  // it (so that what cuBLAS keeps for itself is not charged to whichever path comes first), then
  // allocates the path's own buffers. Throws std::runtime_error.
  explicit LinearCeWorkload(const LinearCeCase& c);
  ~LinearCeWorkload();
  LinearCeWorkload(const LinearCeWorkload&) = delete;
  LinearCeWorkload& operator=(const LinearCeWorkload&) = delete;

  // Enqueues one forward and backward on bench_stream(). Throws on a failed call.
  void run();

  // The device time of each stage of the last run (waits for it); empty for the fused path.
  std::vector<LinearCeStage> last_stages();

  // Device memory the path needs beyond the operands (linear_cross_entropy_operand_bytes), as
  // counted: the workspace for fused; logits, gradient and the cross-entropy's workspace for
  // unfused; logits and gradient for the bare GEMMs.
  std::size_t extra_bytes() const;

  // The same, as measured: the drop in free device memory (cudaMemGetInfo) from after the
  // operands were allocated to the end of the first run, which also catches whatever a call
  // allocates for itself and keeps. Call after one run and a synchronize.
  std::size_t measured_extra_bytes() const;

  // fused: tokens per chunk and chunks, as the library chose them; 0 for the other paths.
  std::int64_t chunk_tokens() const;
  std::int64_t chunks() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// The unfused path's extra_bytes() for `shape`, without allocating it (the cross-entropy's
// workspace is asked of the library for the current device).
std::size_t unfused_linear_ce_extra_bytes(const LinearCrossEntropyShape& shape);

}  // namespace actloss::bench
