// The state of cuda/elementwise.cuh: the tests' cap on the grid (see block_limit_for_testing
// there) and the switch back to one pack per thread per step (packs_per_step_for_testing).
// Library code never sets them.
#include "cuda/elementwise.cuh"

#include <atomic>

namespace actloss::cuda::ew {
namespace {

std::atomic<std::int64_t> block_limit{0};
std::atomic<int> packs_per_step{0};

}  // namespace

std::int64_t block_limit_for_testing() { return block_limit.load(std::memory_order_relaxed); }
int packs_per_step_for_testing() { return packs_per_step.load(std::memory_order_relaxed); }

}  // namespace actloss::cuda::ew

namespace actloss::detail {

void cuda_set_elementwise_block_limit_for_testing(std::int64_t blocks) {
  cuda::ew::block_limit.store(blocks, std::memory_order_relaxed);
}

void cuda_set_elementwise_packs_per_step_for_testing(int packs) {
  cuda::ew::packs_per_step.store(packs == 1 ? 1 : 0, std::memory_order_relaxed);
}

}  // namespace actloss::detail
