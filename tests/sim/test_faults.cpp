// Planted bugs: the simulator must stop with a message naming the kernel
// and the cause, never finish silently. Sim builds only (on a GPU these
// kernels hang or read garbage).
#include "sim_test_kernels.h"
#include "test_util.h"

#if defined(ACTLOSS_SIM)
#include <simcuda/sim_control.h>

namespace simtest {
namespace {

class Faults : public ::testing::Test {
 protected:
  void SetUp() override {
    // Re-executes the binary for each death test instead of forking a
    // process that already has worker threads (and keeps TSan happy).
    GTEST_FLAG_SET(death_test_style, "threadsafe");
  }
};

// Runs `launch` on a fresh 64-int device buffer.
template <class F>
void run(F launch) {
  int* out = nullptr;
  cudaMalloc(&out, 64 * sizeof(int));
  launch(out);
  cudaFree(out);
}

TEST_F(Faults, WarpDivergedBetweenBarrierAndCollective) {
  EXPECT_DEATH(run(divergent_deadlock),
               "simcuda: .*divergent_deadlock_kernel.*: block \\(0,0,0\\): warp diverged between "
               "a block barrier and a warp collective.*lanes 0-15 wait in __shfl_xor_sync.*"
               "lanes 16-31 wait in __syncthreads");
}

TEST_F(Faults, ShuffleReadsExitedLane) {
  EXPECT_DEATH(run(shuffle_reads_exited_lane),
               "simcuda: .*exited_lane_kernel.*__shfl_xor_sync reads lane 16, which has exited");
}

TEST_F(Faults, ShuffleReadsLaneOutsideTheBlock) {
  EXPECT_DEATH(run(shuffle_reads_missing_lane),
               "simcuda: .*missing_lane_kernel.*warp 1 lane 0: __shfl_down_sync reads lane 16, "
               "which does not exist \\(the block has 48 threads\\)");
}

TEST_F(Faults, SubWarpMasksAreRejected) {
  EXPECT_DEATH(run(subwarp_masks), "simcuda: .*subwarp_mask_kernel.*different masks");
}

TEST_F(Faults, MaskWithoutTheCallingLane) {
  EXPECT_DEATH(run(mask_without_self),
               "simcuda: .*mask_without_self_kernel.*__ballot_sync with mask 0xfffffffe that "
               "does not name the calling lane 0");
}

TEST_F(Faults, WatchdogTurnsAHangIntoAnAbort) {
  EXPECT_DEATH(
      {
        simcuda::sim::set_watchdog_seconds(1);
        run(spin_on_flag);
      },
      "simcuda: .*spin_on_flag_kernel.*no progress for 1 s");
}

// Thread 0's access is aligned and passes; thread 1's is four bytes off.
void misaligned(VectorFault kind) {
  unsigned char* buffer = nullptr;
  cudaMalloc(&buffer, 128);
  misaligned_vector_access(kind, buffer);
  cudaFree(buffer);
}

TEST_F(Faults, MisalignedVectorLoad) {
  EXPECT_DEATH(misaligned(VectorFault::kLoad16),
               "simcuda: .*misaligned_vector_kernel.*: block \\(0,0,0\\) thread \\(1,0,0\\): "
               "misaligned 16-byte vector load at 0x[0-9a-f]*4 in simcuda::load_vector "
               "\\(vector accesses must be aligned to their size, as on the GPU\\)");
}

TEST_F(Faults, MisalignedVectorStore) {
  EXPECT_DEATH(misaligned(VectorFault::kStore16),
               "simcuda: .*misaligned_vector_kernel.*thread \\(1,0,0\\): misaligned 16-byte "
               "vector store at 0x[0-9a-f]*4 in simcuda::store_vector ");
}

TEST_F(Faults, MisalignedStreamingVectorStore) {
  EXPECT_DEATH(misaligned(VectorFault::kStreamingStore16),
               "simcuda: .*misaligned_vector_kernel.*thread \\(1,0,0\\): misaligned 16-byte "
               "vector store at 0x[0-9a-f]*4 in simcuda::store_vector_streaming ");
}

TEST_F(Faults, MisalignedEightByteLdg) {
  EXPECT_DEATH(misaligned(VectorFault::kLdg8),
               "simcuda: .*misaligned_vector_kernel.*thread \\(1,0,0\\): misaligned 8-byte "
               "vector load at 0x[0-9a-f]*4 in __ldg ");
}

#if !defined(__SANITIZE_THREAD__)
// gtest's default ("fast") death tests fork a process whose parent already
// started the simulator's workers; the child must start its own instead of
// waiting for threads that fork did not copy. (TSan forbids creating threads
// after a multi-threaded fork, hence not under TSan.)
void multi_block_launch_then_deadlock() {
  int4* rec = nullptr;
  cudaMalloc(&rec, 64 * 64 * sizeof(int4));
  if (grid_indexing(dim3(64), dim3(64), rec) == cudaSuccess) run(divergent_deadlock);
}

TEST(FaultsAfterFork, ForkedChildRunsItsOwnWorkers) {
  GTEST_FLAG_SET(death_test_style, "fast");
  int4* rec = nullptr;
  ASSERT_EQ(cudaMalloc(&rec, 64 * 64 * sizeof(int4)), cudaSuccess);
  ASSERT_EQ(grid_indexing(dim3(64), dim3(64), rec), cudaSuccess);  // workers now exist
  cudaFree(rec);
  EXPECT_DEATH(multi_block_launch_then_deadlock(), "simcuda: .*divergent_deadlock_kernel");
}
#endif

#if defined(__SANITIZE_ADDRESS__)
void read_one_past_the_end() {
  const int n = 100;
  float* in = nullptr;
  float* out = nullptr;
  cudaMalloc(&in, n * sizeof(float));
  cudaMalloc(&out, n * sizeof(float));
  out_of_bounds_read(in, out, n);
}

// cudaMalloc allocates exactly the requested bytes, so ASan's redzone starts
// right after the last element.
TEST_F(Faults, OutOfBoundsGlobalReadIsReportedByASan) {
  EXPECT_DEATH(read_one_past_the_end(), "heap-buffer-overflow(.|\n)*READ of size 4");
}
#endif

}  // namespace
}  // namespace simtest
#endif  // ACTLOSS_SIM
