// Views without copies, on the CPU path and on Device::cuda: batched [B, T, C] views of the row
// ops (cross-entropy's logits[:, :-1, :] with targets[:, 1:], softmax over a [T, B, C] tensor
// read as [B, T, C]), strided rows of the activations and MSE, and BCE's broadcast weights.
//
// Each test runs the call on the view and on a dense copy of the same elements, on the same
// device, and asserts the same bits: a row's arithmetic depends only on its values, and every
// reduction's partition only on the shape, so a layout that changes anything but addresses is a
// bug. The dense calls' values are what the validation table checks against the float64
// reference. The elements a view skips (padding, the rows it leaves out) must keep their poison.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <string>
#include <vector>

#include <actloss/actloss.h>

#include "host/half.h"
#include "tests/cuda/support.h"

namespace actloss::test {
namespace {

using Bytes = std::vector<std::uint8_t>;

Exec exec_for(Device device) {
  Exec exec;
  exec.device = device;
  return exec;
}

// A host image of `count` elements of `dtype`, poisoned.
Bytes poisoned(DType dtype, std::int64_t count) {
  return Bytes(static_cast<std::size_t>(count * dtype_size(dtype)), kPoisonByte);
}

void put(Bytes& image, DType dtype, std::int64_t index, double value) {
  host::store_from_double(image.data(), dtype, index, value);
}

// The bytes of element `index` of `dtype`.
Bytes element(const Bytes& image, DType dtype, std::int64_t index) {
  const auto size = static_cast<std::size_t>(dtype_size(dtype));
  const auto begin = image.begin() + static_cast<std::ptrdiff_t>(index * dtype_size(dtype));
  return Bytes(begin, begin + static_cast<std::ptrdiff_t>(size));
}

bool is_poison(const Bytes& image, DType dtype, std::int64_t index) {
  for (std::uint8_t byte : element(image, dtype, index))
    if (byte != kPoisonByte) return false;
  return true;
}

// Where row r of a [batches x rows_per_batch x cols] view starts.
std::int64_t start_of(std::int64_t r, std::int64_t rows_per_batch, std::int64_t row_stride,
                      std::int64_t batch_stride) {
  return (r / rows_per_batch) * batch_stride + (r % rows_per_batch) * row_stride;
}

// Asserts that the view's elements equal the dense tensor's bit for bit, and that every other
// element of the view's buffer is still poison.
void expect_view_equals_dense(const Bytes& view, const Bytes& dense, DType dtype,
                              std::int64_t rows, std::int64_t cols, std::int64_t rows_per_batch,
                              std::int64_t row_stride, std::int64_t batch_stride,
                              const char* what) {
  const std::int64_t elements = static_cast<std::int64_t>(view.size()) / dtype_size(dtype);
  std::vector<bool> in_view(static_cast<std::size_t>(elements), false);
  for (std::int64_t r = 0; r < rows; ++r) {
    for (std::int64_t c = 0; c < cols; ++c) {
      const std::int64_t at = start_of(r, rows_per_batch, row_stride, batch_stride) + c;
      in_view[static_cast<std::size_t>(at)] = true;
      ASSERT_EQ(element(view, dtype, at), element(dense, dtype, r * cols + c))
          << what << ": row " << r << ", column " << c;
    }
  }
  for (std::int64_t i = 0; i < elements; ++i) {
    if (!in_view[static_cast<std::size_t>(i)]) {
      ASSERT_TRUE(is_poison(view, dtype, i)) << what << ": element " << i << " outside the view";
    }
  }
}

// The elements of a view, densely.
Bytes gather_view(const Bytes& image, DType dtype, std::int64_t rows, std::int64_t cols,
                  std::int64_t rows_per_batch, std::int64_t row_stride,
                  std::int64_t batch_stride) {
  Bytes dense;
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t c = 0; c < cols; ++c) {
      const Bytes e =
          element(image, dtype, start_of(r, rows_per_batch, row_stride, batch_stride) + c);
      dense.insert(dense.end(), e.begin(), e.end());
    }
  return dense;
}

class Views : public testing::TestWithParam<Device> {
 protected:
  void SetUp() override {
    if (GetParam() == Device::cuda) ACTLOSS_REQUIRE_CUDA_DEVICE();
  }
  Device device() const { return GetParam(); }
  Exec exec() const { return exec_for(GetParam()); }
  // Every row dispatch path on CUDA (each addresses its rows itself); the CPU has one.
  std::vector<detail::RowAlgorithm> row_paths() const {
    if (GetParam() == Device::cpu) return {detail::RowAlgorithm::automatic};
    return {std::begin(kPaths), std::end(kPaths)};
  }
};

// Next-token cross-entropy on [B, T + 1, V] logits with padded rows: the view logits[:, :-1, :]
// with targets[:, 1:] of a [B, T + 1] int64 tensor, its gradient written into the same view of
// a second [B, T + 1, V] buffer; an odd V, so no row is 16-byte aligned everywhere.
TEST_P(Views, CrossEntropyOnNextTokenSlices) {
  const std::int64_t batches = 3, steps = 5, classes = 37, padded = 40;
  const std::int64_t rows = batches * steps;
  const std::int64_t row_stride = padded, batch_stride = (steps + 1) * padded;
  for (DType dtype : {DType::f32, DType::bf16}) {
    Bytes logits_image = poisoned(dtype, batches * batch_stride);
    const std::vector<double> values =
        random_values(static_cast<std::size_t>(batches * batch_stride), -6.0, 6.0, 11);
    for (std::int64_t i = 0; i < batches * batch_stride; ++i)
      if (i % padded < classes) put(logits_image, dtype, i, values[static_cast<std::size_t>(i)]);
    std::vector<std::int64_t> tokens(static_cast<std::size_t>(batches * (steps + 1)));
    for (std::size_t i = 0; i < tokens.size(); ++i)
      tokens[i] = static_cast<std::int64_t>((i * 13 + 5) % classes);
    tokens[7] = -100;  // one ignored position inside the view

    Memory logits(device(), logits_image.size());
    logits.upload(logits_image);
    Memory targets(device(), tokens.size() * sizeof(std::int64_t));
    Bytes token_bytes(tokens.size() * sizeof(std::int64_t));
    std::memcpy(token_bytes.data(), tokens.data(), token_bytes.size());
    targets.upload(token_bytes);

    // The dense copy of the same view.
    const Bytes dense_logits_image =
        gather_view(logits_image, dtype, rows, classes, steps, row_stride, batch_stride);
    std::vector<std::int64_t> dense_tokens;
    for (std::int64_t b = 0; b < batches; ++b)
      for (std::int64_t t = 1; t <= steps; ++t)
        dense_tokens.push_back(tokens[static_cast<std::size_t>(b * (steps + 1) + t)]);
    Memory dense_logits(device(), dense_logits_image.size());
    dense_logits.upload(dense_logits_image);
    Memory dense_targets(device(), dense_tokens.size() * sizeof(std::int64_t));
    Bytes dense_token_bytes(dense_tokens.size() * sizeof(std::int64_t));
    std::memcpy(dense_token_bytes.data(), dense_tokens.data(), dense_token_bytes.size());
    dense_targets.upload(dense_token_bytes);

    for (detail::RowAlgorithm path : row_paths()) {
      const ForcedRowPath forced(path);
      for (Reduction reduction : {Reduction::none, Reduction::mean}) {
        SCOPED_TRACE(testing::Message() << to_string(dtype) << " " << detail::to_string(path)
                                        << " " << to_string(reduction));
        const std::int64_t loss_count = reduction == Reduction::none ? rows : 1;
        CrossEntropyOptions options;
        options.reduction = reduction;
        options.label_smoothing = 0.1f;

        Memory grad(device(), logits_image.size()), loss(device(), loss_count * 4),
            lse(device(), rows * 4);
        CrossEntropyArgs view;
        view.rows = rows;
        view.classes = classes;
        view.rows_per_batch = steps;
        view.logits = logits.get();
        view.logits_dtype = dtype;
        view.logits_row_stride = row_stride;
        view.logits_batch_stride = batch_stride;
        view.targets = static_cast<const std::int64_t*>(targets.get()) + 1;
        view.target_batch_stride = steps + 1;
        view.grad = grad.get();
        view.grad_dtype = dtype;
        view.grad_row_stride = row_stride;
        view.grad_batch_stride = batch_stride;
        view.loss = static_cast<float*>(loss.get());
        view.lse = static_cast<float*>(lse.get());
        ASSERT_TRUE(cross_entropy_forward_backward(view, options, exec()).ok());

        Memory dense_grad(device(), dense_logits_image.size()),
            dense_loss(device(), loss_count * 4), dense_lse(device(), rows * 4);
        CrossEntropyArgs dense;
        dense.rows = rows;
        dense.classes = classes;
        dense.logits = dense_logits.get();
        dense.logits_dtype = dtype;
        dense.targets = dense_targets.get();
        dense.grad = dense_grad.get();
        dense.grad_dtype = dtype;
        dense.loss = static_cast<float*>(dense_loss.get());
        dense.lse = static_cast<float*>(dense_lse.get());
        ASSERT_TRUE(cross_entropy_forward_backward(dense, options, exec()).ok());
        if (device() == Device::cuda) synchronize_or_fail();

        EXPECT_EQ(loss.download(), dense_loss.download());
        EXPECT_EQ(lse.download(), dense_lse.download());
        expect_view_equals_dense(grad.download(), dense_grad.download(), dtype, rows, classes,
                                 steps, row_stride, batch_stride, "grad");
      }
    }
  }
}

// Softmax and its backward over a [T, B, C] tensor read as [B, T, C] (batch stride C, row
// stride B C): the batches lie inside each row's stride.
TEST_P(Views, SoftmaxOverATransposedBatch) {
  const std::int64_t batches = 4, steps = 3, cols = 300;
  const std::int64_t rows = batches * steps;
  const std::int64_t batch_stride = cols, row_stride = batches * cols;
  const std::int64_t elements = steps * batches * cols;
  const DType dtype = DType::f32;
  Bytes x_image = poisoned(dtype, elements), dy_image = poisoned(dtype, elements);
  const std::vector<double> xs = random_values(static_cast<std::size_t>(elements), -5, 5, 21);
  const std::vector<double> dys = random_values(static_cast<std::size_t>(elements), -1, 1, 22);
  for (std::int64_t i = 0; i < elements; ++i) {
    put(x_image, dtype, i, xs[static_cast<std::size_t>(i)]);
    put(dy_image, dtype, i, dys[static_cast<std::size_t>(i)]);
  }
  const Bytes dense_x_image =
      gather_view(x_image, dtype, rows, cols, steps, row_stride, batch_stride);
  const Bytes dense_dy_image =
      gather_view(dy_image, dtype, rows, cols, steps, row_stride, batch_stride);
  Memory x(device(), x_image.size()), dy(device(), dy_image.size());
  x.upload(x_image);
  dy.upload(dy_image);
  Memory dense_x(device(), dense_x_image.size()), dense_dy(device(), dense_dy_image.size());
  dense_x.upload(dense_x_image);
  dense_dy.upload(dense_dy_image);

  for (detail::RowAlgorithm path : row_paths()) {
    for (bool log : {false, true}) {
      const ForcedRowPath forced(path);
      SCOPED_TRACE(testing::Message() << detail::to_string(path) << (log ? " log" : ""));
      SoftmaxOptions options;
      options.log = log;
      Memory y(device(), x_image.size()), dense_y(device(), dense_x_image.size());
      SoftmaxForwardArgs forward;
      forward.rows = rows;
      forward.cols = cols;
      forward.rows_per_batch = steps;
      forward.x = x.get();
      forward.x_row_stride = row_stride;
      forward.x_batch_stride = batch_stride;
      forward.y = y.get();
      forward.y_row_stride = row_stride;
      forward.y_batch_stride = batch_stride;
      ASSERT_TRUE(softmax_forward(forward, options, exec()).ok());
      SoftmaxForwardArgs dense_forward;
      dense_forward.rows = rows;
      dense_forward.cols = cols;
      dense_forward.x = dense_x.get();
      dense_forward.y = dense_y.get();
      ASSERT_TRUE(softmax_forward(dense_forward, options, exec()).ok());

      Memory dx(device(), x_image.size()), dense_dx(device(), dense_x_image.size());
      SoftmaxBackwardArgs backward;
      backward.rows = rows;
      backward.cols = cols;
      backward.rows_per_batch = steps;
      backward.y = y.get();
      backward.y_row_stride = row_stride;
      backward.y_batch_stride = batch_stride;
      backward.dy = dy.get();
      backward.dy_row_stride = row_stride;
      backward.dy_batch_stride = batch_stride;
      backward.dx = dx.get();
      backward.dx_row_stride = row_stride;
      backward.dx_batch_stride = batch_stride;
      ASSERT_TRUE(softmax_backward(backward, options, exec()).ok());
      SoftmaxBackwardArgs dense_backward;
      dense_backward.rows = rows;
      dense_backward.cols = cols;
      dense_backward.y = dense_y.get();
      dense_backward.dy = dense_dy.get();
      dense_backward.dx = dense_dx.get();
      ASSERT_TRUE(softmax_backward(dense_backward, options, exec()).ok());
      if (device() == Device::cuda) synchronize_or_fail();

      // Every element of the [T, B, C] tensor belongs to the view, so nothing stays poison.
      expect_view_equals_dense(y.download(), dense_y.download(), dtype, rows, cols, steps,
                               row_stride, batch_stride, "y");
      expect_view_equals_dense(dx.download(), dense_dx.download(), dtype, rows, cols, steps,
                               row_stride, batch_stride, "dx");
    }
  }
}

// Elementwise ops on the left half of [rows x 2 n] tensors (half of a fused gate/up
// projection): n = 13, so no row but the first starts on a 16-byte boundary, and relu's mask
// bits of a row straddle mask words.
class StridedRows : public Views {
 protected:
  static constexpr std::int64_t kRows = 37, kCols = 13, kStride = 2 * kCols;
  Bytes wide_image(DType dtype, double low, double high, std::uint64_t seed) const {
    Bytes image = poisoned(dtype, kRows * kStride);
    const std::vector<double> values =
        random_values(static_cast<std::size_t>(kRows * kStride), low, high, seed);
    for (std::int64_t i = 0; i < kRows * kStride; ++i)
      put(image, dtype, i, values[static_cast<std::size_t>(i)]);
    return image;
  }
  static Bytes left_half(const Bytes& image, DType dtype) {
    return gather_view(image, dtype, kRows, kCols, kRows, kStride, 0);
  }
  static void expect_left_half(const Bytes& view, const Bytes& dense, DType dtype,
                               const char* what) {
    expect_view_equals_dense(view, dense, dtype, kRows, kCols, kRows, kStride, 0, what);
  }
};

TEST_P(StridedRows, ActivationsForwardAndBackward) {
  for (DType dtype : {DType::f32, DType::bf16}) {
    const Bytes x_image = wide_image(dtype, -3, 3, 31), dy_image = wide_image(dtype, -1, 1, 32);
    Memory x(device(), x_image.size()), dy(device(), dy_image.size());
    x.upload(x_image);
    dy.upload(dy_image);
    const Bytes dense_x_image = left_half(x_image, dtype), dense_dy_image = left_half(dy_image, dtype);
    Memory dense_x(device(), dense_x_image.size()), dense_dy(device(), dense_dy_image.size());
    dense_x.upload(dense_x_image);
    dense_dy.upload(dense_dy_image);
    for (Activation activation : {Activation::relu, Activation::gelu_erf, Activation::silu}) {
      SCOPED_TRACE(testing::Message() << to_string(dtype) << " " << to_string(activation));
      ActivationOptions options;
      options.activation = activation;
      const bool relu = activation == Activation::relu;
      const std::int64_t words = relu_mask_words(kRows * kCols);
      Memory y(device(), x_image.size()), dense_y(device(), dense_x_image.size());
      Memory mask(device(), words * 4), dense_mask(device(), words * 4);
      ActivationForwardArgs forward;
      forward.rows = kRows;
      forward.n = kCols;
      forward.x = x.get();
      forward.x_dtype = dtype;
      forward.x_row_stride = kStride;
      forward.y = y.get();
      forward.y_dtype = dtype;
      forward.y_row_stride = kStride;
      if (relu) forward.relu_mask = static_cast<std::uint32_t*>(mask.get());
      ASSERT_TRUE(activation_forward(forward, options, exec()).ok());
      ActivationForwardArgs dense_forward;
      dense_forward.n = kRows * kCols;
      dense_forward.x = dense_x.get();
      dense_forward.x_dtype = dtype;
      dense_forward.y = dense_y.get();
      dense_forward.y_dtype = dtype;
      if (relu) dense_forward.relu_mask = static_cast<std::uint32_t*>(dense_mask.get());
      ASSERT_TRUE(activation_forward(dense_forward, options, exec()).ok());

      // Backward from the saved input (strided like dy) and, for relu, from the mask.
      for (SavedTensor saved : {SavedTensor::input, SavedTensor::relu_mask}) {
        if (saved == SavedTensor::relu_mask && !relu) continue;
        const bool from_mask = saved == SavedTensor::relu_mask;
        Memory dx(device(), dy_image.size()), dense_dx(device(), dense_dy_image.size());
        ActivationBackwardArgs backward;
        backward.rows = kRows;
        backward.n = kCols;
        backward.saved_kind = saved;
        backward.saved = from_mask ? mask.get() : x.get();
        backward.saved_dtype = dtype;
        backward.saved_row_stride = from_mask ? 0 : kStride;
        backward.dy = dy.get();
        backward.dy_dtype = dtype;
        backward.dy_row_stride = kStride;
        backward.dx = dx.get();
        backward.dx_dtype = dtype;
        backward.dx_row_stride = kStride;
        ASSERT_TRUE(activation_backward(backward, options, exec()).ok());
        ActivationBackwardArgs dense_backward;
        dense_backward.n = kRows * kCols;
        dense_backward.saved_kind = saved;
        dense_backward.saved = from_mask ? dense_mask.get() : dense_x.get();
        dense_backward.saved_dtype = dtype;
        dense_backward.dy = dense_dy.get();
        dense_backward.dy_dtype = dtype;
        dense_backward.dx = dense_dx.get();
        dense_backward.dx_dtype = dtype;
        ASSERT_TRUE(activation_backward(dense_backward, options, exec()).ok());
        if (device() == Device::cuda) synchronize_or_fail();
        expect_left_half(dx.download(), dense_dx.download(), dtype,
                         from_mask ? "dx from the mask" : "dx from x");
      }
      if (device() == Device::cuda) synchronize_or_fail();
      expect_left_half(y.download(), dense_y.download(), dtype, "y");
      if (relu) {
        EXPECT_EQ(mask.download(), dense_mask.download());
      }
    }
  }
}

TEST_P(StridedRows, MseLossAndGradient) {
  const DType dtype = DType::f32;
  const Bytes input_image = wide_image(dtype, -2, 2, 41), target_image = wide_image(dtype, -2, 2, 42);
  Memory input(device(), input_image.size()), target(device(), target_image.size());
  input.upload(input_image);
  target.upload(target_image);
  const Bytes dense_input_image = left_half(input_image, dtype);
  const Bytes dense_target_image = left_half(target_image, dtype);
  Memory dense_input(device(), dense_input_image.size()),
      dense_target(device(), dense_target_image.size());
  dense_input.upload(dense_input_image);
  dense_target.upload(dense_target_image);
  for (Reduction reduction : {Reduction::none, Reduction::sum, Reduction::mean}) {
    SCOPED_TRACE(to_string(reduction));
    const std::int64_t loss_count = reduction == Reduction::none ? kRows * kCols : 1;
    MseOptions options;
    options.reduction = reduction;
    Memory grad(device(), input_image.size()), loss(device(), loss_count * 4);
    MseArgs view;
    view.rows = kRows;
    view.n = kCols;
    view.input = input.get();
    view.input_row_stride = kStride;
    view.target = target.get();
    view.target_row_stride = kStride;
    view.grad = grad.get();
    view.grad_row_stride = kStride;
    view.loss = static_cast<float*>(loss.get());
    ASSERT_TRUE(mse_forward_backward(view, options, exec()).ok());
    // The dense call in the same layout of rows (row stride n): a reduction's partition
    // depends on the shape, and [rows x n] is the shape of the view.
    Memory dense_grad(device(), dense_input_image.size()), dense_loss(device(), loss_count * 4);
    MseArgs dense = view;
    dense.input = dense_input.get();
    dense.input_row_stride = 0;
    dense.target = dense_target.get();
    dense.target_row_stride = 0;
    dense.grad = dense_grad.get();
    dense.grad_row_stride = 0;
    dense.loss = static_cast<float*>(dense_loss.get());
    ASSERT_TRUE(mse_forward_backward(dense, options, exec()).ok());
    if (device() == Device::cuda) synchronize_or_fail();
    expect_left_half(grad.download(), dense_grad.download(), dtype, "grad");
    if (reduction == Reduction::none) {
      EXPECT_EQ(loss.download(), dense_loss.download());
    } else {
      // Dense rows run as one long row and strided ones row by row: the partial sums differ in
      // order only. Both add the same float terms in double, far below float's precision, so
      // the rounded results are equal or one float ulp apart (2^-23 relative).
      float view_loss = 0, dense_loss_value = 0;
      const Bytes a = loss.download(), b = dense_loss.download();
      std::memcpy(&view_loss, a.data(), 4);
      std::memcpy(&dense_loss_value, b.data(), 4);
      EXPECT_NEAR(view_loss, dense_loss_value, 0x1p-23 * std::fabs(dense_loss_value));
    }
  }
}

// BCE's broadcast weights against the full [rows x cols] weight they stand for, both in a
// padded layout so that neither call flattens its rows: the same partition, the same bits.
TEST_P(Views, BceBroadcastWeightsEqualTheirFullTensor) {
  const std::int64_t rows = 9, cols = 21, stride = 24;
  const DType dtype = DType::f32;
  Bytes logits_image = poisoned(dtype, rows * stride), target_image = poisoned(dtype, rows * stride);
  const std::vector<double> xs = random_values(static_cast<std::size_t>(rows * stride), -4, 4, 51);
  const std::vector<double> ys = random_values(static_cast<std::size_t>(rows * stride), 0, 1, 52);
  for (std::int64_t i = 0; i < rows * stride; ++i) {
    put(logits_image, dtype, i, xs[static_cast<std::size_t>(i)]);
    put(target_image, dtype, i, ys[static_cast<std::size_t>(i)]);
  }
  Memory logits(device(), logits_image.size()), targets(device(), target_image.size());
  logits.upload(logits_image);
  targets.upload(target_image);
  const std::vector<double> column_weights = random_values(static_cast<std::size_t>(cols), 0.5, 2, 53);
  const std::vector<double> row_weights = random_values(static_cast<std::size_t>(rows), 0.5, 2, 54);

  for (BceWeightShape shape : {BceWeightShape::per_column, BceWeightShape::per_row}) {
    const bool per_row = shape == BceWeightShape::per_row;
    const std::vector<double>& small = per_row ? row_weights : column_weights;
    Bytes small_image = poisoned(dtype, static_cast<std::int64_t>(small.size()));
    for (std::size_t i = 0; i < small.size(); ++i) put(small_image, dtype, std::int64_t(i), small[i]);
    Bytes full_image = poisoned(dtype, rows * stride);
    for (std::int64_t r = 0; r < rows; ++r)
      for (std::int64_t c = 0; c < cols; ++c)
        put(full_image, dtype, r * stride + c,
            small[static_cast<std::size_t>(per_row ? r : c)]);
    Memory small_weight(device(), small_image.size()), full_weight(device(), full_image.size());
    small_weight.upload(small_image);
    full_weight.upload(full_image);
    for (Reduction reduction : {Reduction::none, Reduction::mean}) {
      SCOPED_TRACE(testing::Message() << (per_row ? "per_row " : "per_column ")
                                      << to_string(reduction));
      const std::int64_t loss_count = reduction == Reduction::none ? rows * cols : 1;
      BceOptions options;
      options.reduction = reduction;
      Memory grad(device(), logits_image.size()), loss(device(), loss_count * 4);
      BceArgs broadcast;
      broadcast.rows = rows;
      broadcast.cols = cols;
      broadcast.logits = logits.get();
      broadcast.logits_row_stride = stride;
      broadcast.targets = targets.get();
      broadcast.target_row_stride = stride;
      broadcast.weight = small_weight.get();
      broadcast.weight_shape = shape;
      broadcast.grad = grad.get();
      broadcast.grad_row_stride = stride;
      broadcast.loss = static_cast<float*>(loss.get());
      ASSERT_TRUE(bce_with_logits_forward_backward(broadcast, options, exec()).ok());
      Memory full_grad(device(), logits_image.size()), full_loss(device(), loss_count * 4);
      BceArgs full = broadcast;
      full.weight = full_weight.get();
      full.weight_shape = BceWeightShape::full;
      full.weight_row_stride = stride;
      full.grad = full_grad.get();
      full.loss = static_cast<float*>(full_loss.get());
      ASSERT_TRUE(bce_with_logits_forward_backward(full, options, exec()).ok());
      if (device() == Device::cuda) synchronize_or_fail();
      EXPECT_EQ(loss.download(), full_loss.download());
      EXPECT_EQ(grad.download(), full_grad.download());
    }
  }
}

// Layouts refused by name before anything is written.
TEST_P(Views, BadBatchLayoutsAreRefusedByName) {
  const std::int64_t classes = 8;
  Memory logits(device(), 6 * classes * 4), targets(device(), 6 * 8), loss(device(), 4);
  const Bytes loss_before = loss.download();
  CrossEntropyArgs args;
  args.rows = 6;
  args.classes = classes;
  args.logits = logits.get();
  args.targets = targets.get();
  args.loss = static_cast<float*>(loss.get());
  const auto refused = [&](CrossEntropyArgs bad, const char* argument) {
    const Status status = cross_entropy_forward(bad, {}, exec());
    EXPECT_EQ(status.code(), StatusCode::invalid_argument) << argument;
    EXPECT_EQ(status.argument(), argument) << status.message();
  };
  CrossEntropyArgs bad = args;
  bad.rows_per_batch = 4;  // does not divide 6
  refused(bad, "rows_per_batch");
  bad = args;
  bad.rows_per_batch = -1;
  refused(bad, "rows_per_batch");
  bad = args;
  bad.rows_per_batch = 3;
  bad.logits_batch_stride = -classes;
  refused(bad, "logits_batch_stride");
  bad = args;
  bad.rows_per_batch = 3;
  bad.logits_batch_stride = 2 * classes;  // batch 1 would start inside batch 0's last row
  refused(bad, "logits_batch_stride");
  bad = args;
  bad.rows_per_batch = 3;
  bad.target_batch_stride = 2;  // class indices of two batches would share an element
  refused(bad, "target_batch_stride");
  bad = args;
  bad.rows_per_batch = 2;
  bad.logits_batch_stride = std::int64_t{1} << 61;  // the extent overflows
  refused(bad, "logits_batch_stride");
  if (device() == Device::cuda) synchronize_or_fail();
  EXPECT_EQ(loss.download(), loss_before);
}

INSTANTIATE_TEST_SUITE_P(Devices, Views, testing::Values(Device::cpu, Device::cuda),
                         testing::PrintToStringParamName());
INSTANTIATE_TEST_SUITE_P(Devices, StridedRows, testing::Values(Device::cpu, Device::cuda),
                         testing::PrintToStringParamName());

}  // namespace
}  // namespace actloss::test
