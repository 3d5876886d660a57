// The CPU path of the public API while no fast CPU backend exists: typed, strided operands are
// gathered into dense double vectors, the float64 reference (host/reference) computes, and the
// results are rounded once into the requested output dtype. Everything is read before anything
// is written, so in-place calls (output == input) need no special care here.
#pragma once

#include <cstdint>
#include <exception>
#include <new>
#include <span>
#include <stdexcept>
#include <vector>

#include <actloss/actloss.h>

#include "host/reference/reference.h"
#include "host/validate.h"

namespace actloss::host {

// rows x cols elements of `dtype` at `data` with `row_stride` (elements) -> dense doubles.
// A null `data` with no elements gives an empty vector.
std::vector<double> gather(const void* data, DType dtype, std::int64_t rows, std::int64_t cols,
                           std::int64_t row_stride);

// Dense doubles -> rows x cols elements of `dtype`; the padding between rows is not touched.
void scatter(void* data, DType dtype, std::int64_t rows, std::int64_t cols,
             std::int64_t row_stride, std::span<const double> values);

// Rows in batches (CrossEntropyArgs::rows_per_batch, strides normalised): row r starts at
// (r / rows_per_batch) * batch_stride + (r % rows_per_batch) * row_stride elements.
struct BatchedRows {
  std::int64_t rows = 0;
  std::int64_t cols = 0;
  std::int64_t row_stride = 0;
  std::int64_t rows_per_batch = 1;
  std::int64_t batch_stride = 0;
  std::int64_t start_of(std::int64_t row) const {
    return (row / rows_per_batch) * batch_stride + (row % rows_per_batch) * row_stride;
  }
};
std::vector<double> gather(const void* data, DType dtype, const BatchedRows& layout);
void scatter(void* data, DType dtype, const BatchedRows& layout, std::span<const double> values);

std::vector<double> gather_f32(const float* data, std::int64_t count);
void scatter_f32(float* data, std::span<const double> values);
void store_f32(float* data, double value);

// Upstream gradient of a loss: `per_element` values for Reduction::none, one otherwise; a null
// pointer means 1 (the reference's empty vector).
std::vector<double> gather_upstream(const float* upstream, Reduction reduction,
                                    std::int64_t per_element);

ref::Reduction to_ref(Reduction reduction);

// Element `index` of class-index targets of `kind` (int32 or int64), read without assuming the
// pointer's alignment.
std::int64_t load_class_target(const void* targets, TargetKind kind, std::int64_t index);

// Runs the CPU computation. The public API never throws; the reference allocates, so running out
// of memory (or sizes a std::vector cannot hold) becomes `unsupported`, and anything else thrown
// is a bug. Nothing has been written when either happens, since outputs are stored last.
template <class Body>
Status run_cpu(const char* op, Body&& body) {
  try {
    body();
    return {};
  } catch (const std::bad_alloc&) {
    return Status(StatusCode::unsupported, "",
                  concat(op, ": out of host memory for the CPU path's float64 buffers"));
  } catch (const std::length_error&) {
    return Status(StatusCode::unsupported, "",
                  concat(op, ": too large for the CPU path's float64 buffers"));
  } catch (const std::exception& error) {
    return Status(StatusCode::internal, "", concat(op, ": CPU path failed: ", error.what()));
  }
}

}  // namespace actloss::host
