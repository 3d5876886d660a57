// Host-side controls of the simulator, for tests. Sim builds only: nothing
// here exists under nvcc, so guard uses with #if defined(ACTLOSS_SIM).
#pragma once

#include <cstdint>
#include <optional>

namespace simcuda::sim {

// Runs the fibers of each block in a pseudo-random order derived from the
// seed and the block index (fiber mode; threads mode ignores it). Overrides
// the SIMCUDA_SHUFFLE_SEED environment variable. std::nullopt restores the
// default order: thread 0, 1, ... up to each barrier.
void set_shuffle_seed(std::optional<std::uint64_t> seed);
std::optional<std::uint64_t> shuffle_seed();

// Seconds without progress before the watchdog aborts (0 disables). Overrides
// SIMCUDA_WATCHDOG_SEC.
void set_watchdog_seconds(double seconds);

// Seconds an NCCL stand-in call (actloss::sim_nccl) waits for the other ranks of its
// communicator before it fails with ncclInvalidUsage instead of hanging (0: waits for ever).
// Overrides SIMCUDA_NCCL_TIMEOUT_SEC; default 120.
void set_nccl_timeout_seconds(double seconds);
double nccl_timeout_seconds() noexcept;

// True when built with ACTLOSS_SIM_THREADS=ON (one OS thread per CUDA thread).
bool threads_mode() noexcept;

// Bytes that kernels moved through simcuda::load_vector / store_vector /
// store_vector_streaming since the last reset, by access width (4, 8 and 16
// bytes). Plain element accesses are not counted: a test compares these with
// the bytes a launch must move to see which share went out as vectors.
struct VectorTraffic {
  std::uint64_t loaded[3] = {};  // [0] 4-byte, [1] 8-byte, [2] 16-byte accesses
  std::uint64_t stored[3] = {};
  std::uint64_t loaded_16() const { return loaded[2]; }
  std::uint64_t stored_16() const { return stored[2]; }
};
VectorTraffic vector_traffic() noexcept;
void reset_vector_traffic() noexcept;

// Successful cudaMalloc and cudaMallocAsync calls since the process started, so that a test can
// see that a call given its scratch memory allocated nothing.
std::uint64_t device_allocations() noexcept;

// Kernel launches in thread-block clusters of more than one block that ran since the process
// started, so that a test can see which launches took a cluster path.
std::uint64_t cluster_launches() noexcept;

// Blocks of every kernel launch that ran since the process started (a launch's grid size), so
// that a test can see the grid a call chose.
std::uint64_t launched_blocks() noexcept;

// Registers per thread of every kernel, for the occupancy model and cudaFuncGetAttributes
// (0, the default: no register limit, and numRegs 32), so that a test can give the kernels the
// register counts that ptxas gives them on a device.
void set_registers_per_thread(int registers);

// cudaOccupancyMaxActiveBlocksPerMultiprocessor(WithFlags) calls since the process started.
std::uint64_t occupancy_queries() noexcept;

}  // namespace simcuda::sim
