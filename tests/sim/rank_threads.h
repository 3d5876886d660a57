// Ranks as threads, for the tests of the NCCL stand-in (tests/sim) and of the library's NCCL
// adapter (tests/nccl): one thread per rank, each with its rank's device current.
#pragma once

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <functional>
#include <thread>
#include <vector>

namespace simtest {

// Runs body(rank) on one thread per rank, each with its rank's device current, and waits.
inline void on_rank_threads(int ranks, const std::function<void(int)>& body) {
  std::vector<std::thread> threads;
  for (int r = 0; r < ranks; ++r) {
    threads.emplace_back([&body, r] {
      ASSERT_EQ(cudaSetDevice(r), cudaSuccess);
      body(r);
    });
  }
  for (std::thread& t : threads) t.join();
}

}  // namespace simtest
