// The cuBLAS stand-in (sim/src/cublas.cpp) against naive loops in double: every transpose pair of
// Sgemm and of GemmEx (f32, f16, bf16; C of the inputs' type or f32), both Sgemv directions, Sger, Saxpy and Sscal, with padded leading dimensions, strides
// (negative ones too) and beta == 0 over NaN, which must not leak through. Linked against the
// real cuBLAS the same checks hold on a GPU; the simulator's stricter checks are sim-only.
#include <cublas_v2.h>
#include <cuda_fp16.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "test_util.h"

namespace simtest {
namespace {

#define CUBLAS_OK(expr) ASSERT_EQ((expr), CUBLAS_STATUS_SUCCESS) << #expr

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

std::vector<float> random_floats(std::size_t n, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<float> v(n);
  for (float& x : v) x = static_cast<float>(rng() % 2001) / 1000.0f - 1.0f;  // [-1, 1]
  return v;
}

// Float accumulation differs from the double reference by about k ulps of the summed magnitude.
void expect_near_sum(const std::vector<float>& got, const std::vector<double>& want,
                     const std::vector<double>& magnitude, const char* what) {
  ASSERT_EQ(got.size(), want.size());
  for (std::size_t i = 0; i < got.size(); ++i)
    ASSERT_NEAR(got[i], want[i], 1e-5 * magnitude[i] + 1e-6) << what << " at element " << i;
}

class Cublas : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(cublasCreate(&handle_), CUBLAS_STATUS_SUCCESS);
    CUDA_OK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    ASSERT_EQ(cublasSetStream(handle_, stream_), CUBLAS_STATUS_SUCCESS);
  }
  void TearDown() override {
    EXPECT_EQ(cublasDestroy(handle_), CUBLAS_STATUS_SUCCESS);
    EXPECT_EQ(cudaStreamDestroy(stream_), cudaSuccess);
  }
  cublasHandle_t handle_ = nullptr;
  cudaStream_t stream_ = nullptr;
};

TEST_F(Cublas, SgemmEveryTransposePairMatchesNaiveLoop) {
  const int m = 7, n = 5, k = 9;
  const float alpha = 0.75f, beta = -1.5f;
  for (cublasOperation_t ta : {CUBLAS_OP_N, CUBLAS_OP_T})
    for (cublasOperation_t tb : {CUBLAS_OP_N, CUBLAS_OP_T}) {
      // Column-major storage with padded leading dimensions, so a mix-up of rows, columns and
      // strides shows.
      const int a_rows = ta == CUBLAS_OP_N ? m : k, a_cols = ta == CUBLAS_OP_N ? k : m;
      const int b_rows = tb == CUBLAS_OP_N ? k : n, b_cols = tb == CUBLAS_OP_N ? n : k;
      const int lda = a_rows + 3, ldb = b_rows + 1, ldc = m + 2;
      const std::vector<float> a = random_floats(static_cast<std::size_t>(lda) * a_cols, 1);
      const std::vector<float> b = random_floats(static_cast<std::size_t>(ldb) * b_cols, 2);
      const std::vector<float> c0 = random_floats(static_cast<std::size_t>(ldc) * n, 3);
      auto op_a = [&](int i, int p) { return ta == CUBLAS_OP_N ? a[i + p * lda] : a[p + i * lda]; };
      auto op_b = [&](int p, int j) { return tb == CUBLAS_OP_N ? b[p + j * ldb] : b[j + p * ldb]; };
      std::vector<double> want(c0.begin(), c0.end()), magnitude(c0.size(), 0.0);
      for (int j = 0; j < n; ++j)
        for (int i = 0; i < m; ++i) {
          double sum = 0, mag = 0;
          for (int p = 0; p < k; ++p) {
            sum += static_cast<double>(op_a(i, p)) * op_b(p, j);
            mag += std::fabs(static_cast<double>(op_a(i, p)) * op_b(p, j));
          }
          const std::size_t at = static_cast<std::size_t>(i + j * ldc);
          want[at] = alpha * sum + beta * static_cast<double>(c0[at]);
          magnitude[at] = std::fabs(alpha) * mag + std::fabs(beta * c0[at]);
        }
      DeviceBuffer<float> da(a), db(b), dc(c0);
      CUBLAS_OK(cublasSgemm(handle_, ta, tb, m, n, k, &alpha, da.get(), lda, db.get(), ldb, &beta,
                            dc.get(), ldc));
      CUDA_OK(cudaStreamSynchronize(stream_));
      SCOPED_TRACE(testing::Message() << "transa " << ta << " transb " << tb);
      expect_near_sum(dc.to_host(), want, magnitude, "C");  // padding rows stay as they were
    }
}

TEST_F(Cublas, SgemmBetaZeroDoesNotReadC) {
  const int m = 3, n = 4, k = 2;
  const float one = 1.0f, zero = 0.0f;
  const std::vector<float> a = random_floats(m * k, 4), b = random_floats(k * n, 5);
  DeviceBuffer<float> da(a), db(b), dc(std::vector<float>(m * n, kNaN));
  CUBLAS_OK(cublasSgemm(handle_, CUBLAS_OP_N, CUBLAS_OP_N, m, n, k, &one, da.get(), m, db.get(),
                        k, &zero, dc.get(), m));
  for (float v : dc.to_host()) EXPECT_FALSE(std::isnan(v));
  // k == 0: C = beta C, and A and B are not touched (null is fine).
  const float two = 2.0f;
  DeviceBuffer<float> ones(std::vector<float>(m * n, 1.0f));
  CUBLAS_OK(cublasSgemm(handle_, CUBLAS_OP_N, CUBLAS_OP_N, m, n, 0, &one, nullptr, m, nullptr, 1,
                        &two, ones.get(), m));
  for (float v : ones.to_host()) EXPECT_EQ(v, 2.0f);
}

TEST_F(Cublas, SgemvBothDirectionsWithStrides) {
  const int m = 6, n = 4, lda = 8;
  const float alpha = 1.25f, beta = 0.5f, zero = 0.0f;
  const std::vector<float> a = random_floats(static_cast<std::size_t>(lda) * n, 6);
  for (cublasOperation_t t : {CUBLAS_OP_N, CUBLAS_OP_T}) {
    const int x_len = t == CUBLAS_OP_N ? n : m, y_len = t == CUBLAS_OP_N ? m : n;
    const int incx = 2, incy = -3;  // a negative stride walks the vector from its end
    const std::vector<float> x = random_floats(static_cast<std::size_t>(x_len) * incx, 7);
    const std::vector<float> y0 = random_floats(static_cast<std::size_t>(y_len) * 3, 8);
    std::vector<double> want(y0.begin(), y0.end()), magnitude(y0.size(), 0.0);
    std::vector<double> want_beta0(y0.size()), magnitude_beta0(y0.size(), 0.0);
    for (int i = 0; i < y_len; ++i) {
      double sum = 0, mag = 0;
      for (int p = 0; p < x_len; ++p) {
        const double av = t == CUBLAS_OP_N ? a[i + p * lda] : a[p + i * lda];
        sum += av * x[static_cast<std::size_t>(p * incx)];
        mag += std::fabs(av * x[static_cast<std::size_t>(p * incx)]);
      }
      const std::size_t at = static_cast<std::size_t>((y_len - 1 - i) * 3);
      want[at] = alpha * sum + beta * static_cast<double>(y0[at]);
      magnitude[at] = alpha * mag + std::fabs(beta * y0[at]);
      want_beta0[at] = alpha * sum;
      magnitude_beta0[at] = alpha * mag;
    }
    DeviceBuffer<float> da(a), dx(x), dy(y0);
    CUBLAS_OK(cublasSgemv(handle_, t, m, n, &alpha, da.get(), lda, dx.get(), incx, &beta,
                          dy.get(), incy));
    SCOPED_TRACE(testing::Message() << "trans " << t);
    expect_near_sum(dy.to_host(), want, magnitude, "y");

    std::vector<float> nan_y(y0.size(), kNaN);
    for (std::size_t i = 0; i < nan_y.size(); ++i)
      if (i % 3 != 0) nan_y[i] = 0.0f;  // only the strided elements start as NaN
    DeviceBuffer<float> dy0(nan_y);
    CUBLAS_OK(cublasSgemv(handle_, t, m, n, &alpha, da.get(), lda, dx.get(), incx, &zero,
                          dy0.get(), incy));
    expect_near_sum(dy0.to_host(), want_beta0, magnitude_beta0, "y with beta 0");
  }
}

TEST_F(Cublas, ZeroStrideRepeatsOneElementOfAReadOnlyVector) {
  // y = A (x0, x0, ...): the row sums of A times x0.
  const int m = 3, n = 5;
  const float one = 1.0f, zero = 0.0f, x0 = 2.0f;
  const std::vector<float> a = random_floats(m * n, 14);
  DeviceBuffer<float> da(a), dx(std::vector<float>{x0}), dy(m);
  CUBLAS_OK(cublasSgemv(handle_, CUBLAS_OP_N, m, n, &one, da.get(), m, dx.get(), 0, &zero,
                        dy.get(), 1));
  const std::vector<float> y = dy.to_host();
  for (int i = 0; i < m; ++i) {
    double want = 0;
    for (int p = 0; p < n; ++p) want += static_cast<double>(a[i + p * m]) * x0;
    EXPECT_NEAR(y[i], want, 1e-5) << i;
  }
}

TEST_F(Cublas, SgerAddsTheOuterProduct) {
  // The bias add of the training example: every column of a column-major m x n matrix gets
  // alpha x, written as A += alpha x ones^T.
  const int m = 5, n = 3, lda = 7, incx = 1, incy = 2;
  const float alpha = -0.5f;
  const std::vector<float> a0 = random_floats(static_cast<std::size_t>(lda) * n, 9);
  const std::vector<float> x = random_floats(m, 10), y = random_floats(n * incy, 11);
  std::vector<double> want(a0.begin(), a0.end()), magnitude(a0.size(), 0.0);
  for (int j = 0; j < n; ++j)
    for (int i = 0; i < m; ++i) {
      const std::size_t at = static_cast<std::size_t>(i + j * lda);
      want[at] += alpha * static_cast<double>(x[i]) * y[static_cast<std::size_t>(j * incy)];
      magnitude[at] = std::fabs(want[at]) + std::fabs(a0[at]);
    }
  DeviceBuffer<float> da(a0), dx(x), dy(y);
  CUBLAS_OK(cublasSger(handle_, m, n, &alpha, dx.get(), incx, dy.get(), incy, da.get(), lda));
  expect_near_sum(da.to_host(), want, magnitude, "A");
}

TEST_F(Cublas, SaxpyAndSscal) {
  const int n = 9;
  const std::vector<float> x = random_floats(n * 2, 12), y0 = random_floats(n, 13);
  const float alpha = 3.0f, scale = -0.25f;
  DeviceBuffer<float> dx(x), dy(y0);
  CUBLAS_OK(cublasSaxpy(handle_, n, &alpha, dx.get(), 2, dy.get(), 1));
  CUBLAS_OK(cublasSscal(handle_, n, &scale, dx.get(), 2));
  const std::vector<float> y = dy.to_host(), xs = dx.to_host();
  for (int i = 0; i < n; ++i) {
    EXPECT_FLOAT_EQ(y[i], y0[i] + alpha * x[2 * i]) << i;
    EXPECT_FLOAT_EQ(xs[2 * i], scale * x[2 * i]) << i;
    EXPECT_EQ(xs[2 * i + 1], x[2 * i + 1]) << "between the strided elements: untouched";
  }
  // Negative stride on x: y[i] += alpha x[n - 1 - i].
  DeviceBuffer<float> dz(y0), dw(std::vector<float>(x.begin(), x.begin() + n));
  CUBLAS_OK(cublasSaxpy(handle_, n, &alpha, dw.get(), -1, dz.get(), 1));
  const std::vector<float> z = dz.to_host();
  for (int i = 0; i < n; ++i) EXPECT_FLOAT_EQ(z[i], y0[i] + alpha * x[n - 1 - i]) << i;
}

TEST_F(Cublas, OrderedWithTheStreamsCopiesAndMemsets) {
  // Memset, axpy and copy back on one stream, no synchronisation in between: the copy must see
  // the axpy, and the axpy the memset.
  const int n = 64;
  const float one = 1.0f;
  DeviceBuffer<float> dx(std::vector<float>(n, 2.0f)), dy(std::vector<float>(n, 5.0f));
  std::vector<float> back(n, -1.0f);
  CUDA_OK(cudaMemsetAsync(dy.get(), 0, n * sizeof(float), stream_));
  CUBLAS_OK(cublasSaxpy(handle_, n, &one, dx.get(), 1, dy.get(), 1));
  CUDA_OK(cudaMemcpyAsync(back.data(), dy.get(), n * sizeof(float), cudaMemcpyDeviceToHost,
                          stream_));
  CUDA_OK(cudaStreamSynchronize(stream_));
  for (float v : back) ASSERT_EQ(v, 2.0f);
}

// A call on a capturing stream becomes part of the graph: nothing runs at capture, each replay
// runs it with the scalars as they were at capture (host pointer mode).
TEST_F(Cublas, CapturedIntoAGraphRunsAtEachReplay) {
  const int n = 32;
  float alpha = 1.5f;
  const std::vector<float> x = random_floats(n, 11), y0 = random_floats(n, 12);
  DeviceBuffer<float> dx(x), dy(y0);
  CUDA_OK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeGlobal));
  CUBLAS_OK(cublasSaxpy(handle_, n, &alpha, dx.get(), 1, dy.get(), 1));
  cudaGraph_t graph = nullptr;
  CUDA_OK(cudaStreamEndCapture(stream_, &graph));
  alpha = 100.0f;
  EXPECT_EQ(dy.to_host(), y0) << "ran at capture";
  cudaGraphExec_t exec = nullptr;
  CUDA_OK(cudaGraphInstantiate(&exec, graph, 0));
  for (int replay = 1; replay <= 2; ++replay) {
    CUDA_OK(cudaGraphLaunch(exec, stream_));
    CUDA_OK(cudaStreamSynchronize(stream_));
    const std::vector<float> y = dy.to_host();
    for (int i = 0; i < n; ++i) {
      float want = y0[i];
      for (int r = 0; r < replay; ++r) want += 1.5f * x[i];
      // A GPU may fuse the multiply-add: within a rounding or two of |y| <= 4.
      ASSERT_NEAR(y[i], want, 1e-6) << "replay " << replay << " element " << i;
    }
  }
  CUDA_OK(cudaGraphExecDestroy(exec));
  CUDA_OK(cudaGraphDestroy(graph));
}

// GemmEx as mixed-precision training calls it: A and B of one type, C of that type or f32,
// accumulation in float. The inputs are multiples of 1/8 in [-1, 1], exact in every type, so
// every product and partial sum is exact in float; only C's rounding to its type remains:
// within its unit roundoff (2^-8 bf16, 2^-11 f16, exact f32).
TEST_F(Cublas, GemmExMixedPrecisionMatchesNaiveLoop) {
  const int m = 6, n = 5, k = 9;
  const float alpha = 0.5f, beta = -2.0f;
  struct Types {
    cudaDataType in, out;
    double unit_roundoff;
  };
  const Types kTypes[] = {{CUDA_R_32F, CUDA_R_32F, 0.0},     {CUDA_R_16F, CUDA_R_16F, 0x1p-11},
                          {CUDA_R_16BF, CUDA_R_16BF, 0x1p-8}, {CUDA_R_16F, CUDA_R_32F, 0.0},
                          {CUDA_R_16BF, CUDA_R_32F, 0.0}};
  const auto encode = [](cudaDataType type, const std::vector<float>& values) {
    std::vector<std::uint8_t> bytes(values.size() * (type == CUDA_R_32F ? 4 : 2));
    for (std::size_t i = 0; i < values.size(); ++i) {
      if (type == CUDA_R_32F) {
        std::memcpy(bytes.data() + 4 * i, &values[i], 4);
      } else if (type == CUDA_R_16F) {
        const __half_raw h = __float2half_rn(values[i]);
        std::memcpy(bytes.data() + 2 * i, &h.x, 2);
      } else {
        std::uint32_t word;
        std::memcpy(&word, &values[i], 4);
        const auto top = static_cast<std::uint16_t>(word >> 16);  // exact: low bits are 0
        std::memcpy(bytes.data() + 2 * i, &top, 2);
      }
    }
    return bytes;
  };
  const auto decode = [](cudaDataType type, const std::vector<std::uint8_t>& bytes, int i) {
    if (type == CUDA_R_32F) {
      float v;
      std::memcpy(&v, bytes.data() + 4 * i, 4);
      return static_cast<double>(v);
    }
    std::uint16_t bits;
    std::memcpy(&bits, bytes.data() + 2 * i, 2);
    if (type == CUDA_R_16F) {
      __half_raw h;
      h.x = bits;
      return static_cast<double>(__half2float(__half(h)));
    }
    const std::uint32_t word = std::uint32_t{bits} << 16;
    float v;
    std::memcpy(&v, &word, 4);
    return static_cast<double>(v);
  };
  const auto eighths = [](std::size_t count, std::uint32_t seed) {
    std::mt19937 rng(seed);
    std::vector<float> v(count);
    for (float& x : v) x = static_cast<float>(static_cast<int>(rng() % 17) - 8) / 8.0f;
    return v;
  };
  for (const Types& t : kTypes)
    for (cublasOperation_t ta : {CUBLAS_OP_N, CUBLAS_OP_T})
      for (cublasOperation_t tb : {CUBLAS_OP_N, CUBLAS_OP_T}) {
        SCOPED_TRACE(testing::Message() << "types " << t.in << " -> " << t.out << " transa "
                                        << ta << " transb " << tb);
        const int a_rows = ta == CUBLAS_OP_N ? m : k, a_cols = ta == CUBLAS_OP_N ? k : m;
        const int b_rows = tb == CUBLAS_OP_N ? k : n, b_cols = tb == CUBLAS_OP_N ? n : k;
        const int lda = a_rows + 2, ldb = b_rows + 1, ldc = m + 3;
        const std::vector<float> a = eighths(static_cast<std::size_t>(lda) * a_cols, 11);
        const std::vector<float> b = eighths(static_cast<std::size_t>(ldb) * b_cols, 12);
        const std::vector<float> c0 = eighths(static_cast<std::size_t>(ldc) * n, 13);
        DeviceBuffer<std::uint8_t> da(encode(t.in, a)), db(encode(t.in, b)),
            dc(encode(t.out, c0));
        CUBLAS_OK(cublasGemmEx(handle_, ta, tb, m, n, k, &alpha, da.get(), t.in, lda, db.get(),
                               t.in, ldb, &beta, dc.get(), t.out, ldc, CUBLAS_COMPUTE_32F,
                               CUBLAS_GEMM_DEFAULT));
        CUDA_OK(cudaStreamSynchronize(stream_));
        const std::vector<std::uint8_t> got = dc.to_host();
        for (int j = 0; j < n; ++j)
          for (int i = 0; i < m; ++i) {
            double sum = 0;
            for (int p = 0; p < k; ++p)
              sum += static_cast<double>(ta == CUBLAS_OP_N ? a[i + p * lda] : a[p + i * lda]) *
                     (tb == CUBLAS_OP_N ? b[p + j * ldb] : b[j + p * ldb]);
            const int at = i + j * ldc;
            const double want = alpha * sum + beta * static_cast<double>(c0[at]);
            ASSERT_LE(std::fabs(decode(t.out, got, at) - want), t.unit_roundoff * std::fabs(want))
                << "C(" << i << ", " << j << ")";
          }
      }
}

TEST_F(Cublas, GemmExRefusesWhatItDoesNotModel) {
  const float one = 1.0f;
  DeviceBuffer<float> d(64);
  EXPECT_EQ(cublasGemmEx(handle_, CUBLAS_OP_N, CUBLAS_OP_N, 4, 4, 4, &one, d.get(), CUDA_R_16F, 4,
                         d.get(), CUDA_R_16BF, 4, &one, d.get(), CUDA_R_32F, 4,
                         CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
            CUBLAS_STATUS_NOT_SUPPORTED)
      << "A and B of different types";
  if (sim_build()) {
    // The real cuBLAS serves these; the stand-in models float accumulation only.
    EXPECT_EQ(cublasGemmEx(handle_, CUBLAS_OP_N, CUBLAS_OP_N, 4, 4, 4, &one, d.get(), CUDA_R_32F,
                           4, d.get(), CUDA_R_32F, 4, &one, d.get(), CUDA_R_32F, 4,
                           CUBLAS_COMPUTE_64F, CUBLAS_GEMM_DEFAULT),
              CUBLAS_STATUS_NOT_SUPPORTED);
  }
  EXPECT_EQ(cublasGemmEx(handle_, CUBLAS_OP_N, CUBLAS_OP_N, 4, 4, 4, &one, d.get(), CUDA_R_32F, 3,
                         d.get(), CUDA_R_32F, 4, &one, d.get(), CUDA_R_32F, 4,
                         CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
            CUBLAS_STATUS_INVALID_VALUE)
      << "lda < m";
}

TEST_F(Cublas, InvalidArguments) {
  const float one = 1.0f;
  DeviceBuffer<float> d(64);
  EXPECT_EQ(cublasSgemm(handle_, CUBLAS_OP_N, CUBLAS_OP_N, 4, 4, 4, &one, d.get(), 3, d.get(), 4,
                        &one, d.get(), 4),
            CUBLAS_STATUS_INVALID_VALUE)
      << "lda < m";
  EXPECT_EQ(cublasSgemm(handle_, CUBLAS_OP_N, CUBLAS_OP_N, -1, 4, 4, &one, d.get(), 4, d.get(), 4,
                        &one, d.get(), 4),
            CUBLAS_STATUS_INVALID_VALUE);
  EXPECT_EQ(cublasSger(handle_, 4, 4, &one, d.get(), 1, d.get(), 1, d.get(), 2),
            CUBLAS_STATUS_INVALID_VALUE)
      << "lda < m";
  EXPECT_STREQ(cublasGetStatusName(CUBLAS_STATUS_INVALID_VALUE), "CUBLAS_STATUS_INVALID_VALUE");
  EXPECT_STREQ(cublasGetStatusName(CUBLAS_STATUS_SUCCESS), "CUBLAS_STATUS_SUCCESS");
  EXPECT_NE(cublasGetStatusString(CUBLAS_STATUS_EXECUTION_FAILED), nullptr);

  if (sim_build()) {
    // Where a GPU would fault later, race or never notice, the simulator refuses the call.
    EXPECT_EQ(cublasSgemv(handle_, CUBLAS_OP_N, 4, 4, &one, d.get(), 4, d.get(), 1, &one,
                          d.get() + 16, 0),
              CUBLAS_STATUS_INVALID_VALUE)
        << "incy == 0: every row would write the same element";
    std::vector<float> host(64, 0.0f);
    EXPECT_EQ(cublasSaxpy(handle_, 64, &one, host.data(), 1, d.get(), 1),
              CUBLAS_STATUS_INVALID_VALUE)
        << "host pointer";
    EXPECT_EQ(cublasSgemm(handle_, CUBLAS_OP_N, CUBLAS_OP_N, 8, 8, 8, &one, d.get(), 8, d.get(), 8,
                          &one, d.get(), 9),
              CUBLAS_STATUS_INVALID_VALUE)
        << "C with ldc 9 spans 71 floats of a 64-float allocation";
    EXPECT_EQ(cublasSscal(handle_, 65, &one, d.get(), 1), CUBLAS_STATUS_INVALID_VALUE)
        << "one element past the allocation";
    cudaStream_t gone;
    CUDA_OK(cudaStreamCreate(&gone));
    CUDA_OK(cudaStreamDestroy(gone));
    EXPECT_EQ(cublasSetStream(handle_, gone), CUBLAS_STATUS_INVALID_VALUE);
    cublasHandle_t dead;
    CUBLAS_OK(cublasCreate(&dead));
    CUBLAS_OK(cublasDestroy(dead));
    EXPECT_EQ(cublasSscal(dead, 4, &one, d.get(), 1), CUBLAS_STATUS_NOT_INITIALIZED);
    EXPECT_EQ(cublasDestroy(dead), CUBLAS_STATUS_NOT_INITIALIZED);
  }
}

}  // namespace
}  // namespace simtest
