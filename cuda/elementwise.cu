// The one piece of state of cuda/elementwise.cuh: the tests' cap on the grid (see
// block_limit_for_testing there). Library code never sets it.
#include "cuda/elementwise.cuh"

#include <atomic>

namespace actloss::cuda::ew {
namespace {

std::atomic<std::int64_t> block_limit{0};

}  // namespace

std::int64_t block_limit_for_testing() { return block_limit.load(std::memory_order_relaxed); }

}  // namespace actloss::cuda::ew

namespace actloss::detail {

void cuda_set_elementwise_block_limit_for_testing(std::int64_t blocks) {
  cuda::ew::block_limit.store(blocks, std::memory_order_relaxed);
}

}  // namespace actloss::detail
