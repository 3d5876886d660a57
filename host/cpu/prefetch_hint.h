// Prefetches whose best form depends on the processor's vendor, measured on Intel; other
// processors keep the forms they were tuned with.
//
// The cross-entropy's next row goes into L2 (prefetcht1) on Intel processors, into L1
// (prefetcht0) elsewhere. The next row comes from memory at its latency while this one computes;
// on Intel each prefetch into L1 holds one of the core's few L1 fill buffers until its line
// arrives, which caps the bytes one core has in flight, while prefetcht1 hands the line to L2's
// deeper queue. On a 2-vCPU Xeon VM (two threads, alternating processes, medians of two),
// prefetcht1 made the cross-entropy forward 1.05-1.10x in f32 and 1.03-1.05x in bf16, and the
// fused pass 1.00-1.04x, at 4096 and 32000 classes. The other ops' prefetches of their inputs
// stay in L1 there too: the activations', a fixed distance ahead of their use, ran 4-10% slower
// into L2 (gelu, silu, tanh in bf16), and the softmax rows gained at some widths and lost at
// others (log-softmax forward, bf16: 1.04x at 128256 classes, 0.95x at 4096). On the EPYC VM the
// backend was tuned on, the L1 prefetch was measured and kept (no L2 variant measured there).
#pragma once

#include <cstdint>

#include "host/cpu/processor.h"

namespace actloss::cpu {

inline const bool prefetch_next_row_into_l2 = processor_is_intel();

// Whether a row op asks for its output's lines (into L2) during the pass that reads its inputs,
// before the pass that stores to them. On Intel a store to a line not in cache waits on that
// line's read for ownership, and the stores of a write pass drain one miss after another; a line
// already fetched by a read, held by no other core, is in cache in the exclusive state, and a
// store to it needs nothing more from memory. The read pass, whose loads the hardware
// prefetchers already stream, carries the extra reads beside its own. A plain read prefetch
// serves: prefetchw (which needs the PRFCHW target) and a prefetch into L1 were no faster
// (softmax backward f32).
// On the 2-vCPU Xeon VM, two threads, alternating processes, medians of three: softmax and
// log-softmax forward 1.1-1.25x from 1024 to 262144 classes in f32 and bf16, softmax backward
// 1.05-1.15x, the fused cross-entropy 1.10-1.27x; the log-softmax backward, whose dot pass
// reads dy alone and asks for y meanwhile, was slower with dx fetched too (bf16: 0.67-0.9x from
// 32000 classes) and fetches nothing during it. Passes that store as they read fetch their
// output a fixed distance ahead of the stores instead (kOutputFetchAheadElements). Not measured
// on AMD processors, which keep the passes as they were.
inline const bool fetch_output_before_writing = processor_is_intel();

// Rows whose bytes touched (inputs, any buffer of theirs, output) exceed this fetch no output
// lines ahead: the fetched lines would push the row's inputs out of L2 (1.25-2 MiB per core on
// current Intel) before the write pass reads them again. On the Xeon VM the fetch was no faster
// beyond it (softmax backward f32 at 262144 classes, 3 MiB a row).
constexpr std::int64_t kFetchOutputRowBytes = std::int64_t{2} << 20;

// Whether a row op's read pass fetches its output row (a row touching `row_bytes`): on the
// processors that gain by it, for an output stored through the cache, in rows that fit L2.
inline bool fetches_output_row(bool streamed, std::int64_t row_bytes) {
  return fetch_output_before_writing && !streamed && row_bytes <= kFetchOutputRowBytes;
}

// How far ahead of its stores a pass that stores as it reads fetches its output (4 KiB of f32):
// the activations, the cross-entropy backward, and the softmax backwards' write pass where the
// dot fetched nothing. Each site states what it gained; 16-bit outputs gained nothing anywhere
// (the activations: no gain to 0.91x) and fetch nothing.
constexpr std::int64_t kOutputFetchAheadElements = 1024;

// Whether such a pass fetches its output ahead: on the processors that gain by it, for a float
// output stored through the cache.
inline bool fetches_output_ahead(bool streamed, bool float_output) {
  return fetch_output_before_writing && !streamed && float_output;
}

}  // namespace actloss::cpu
