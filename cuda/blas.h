// The cuBLAS calls of the library (the GEMMs of cuda/linear_cross_entropy.cu), reached through a
// table. In the nvcc build libcublas is loaded when first needed, not linked: libactloss (and
// libactloss.so) carries a static CUDA runtime so that it runs where only a driver is installed,
// and the ops that use no GEMM, and every op on the CPU, must keep doing so. In the simulator
// build the table holds the simulator's stand-ins (sim/src/cublas.cpp).
#pragma once

// Before any CUDA header, as in every kernel file (see cuda/common.cuh).
#include <simcuda/simcuda.h>

#include <cublas_v2.h>

#include <actloss/types.h>

namespace actloss::cuda {

struct BlasApi {
  cublasStatus_t (*create)(cublasHandle_t*) = nullptr;
  cublasStatus_t (*destroy)(cublasHandle_t) = nullptr;
  cublasStatus_t (*set_stream)(cublasHandle_t, cudaStream_t) = nullptr;
  cublasStatus_t (*get_stream)(cublasHandle_t, cudaStream_t*) = nullptr;
  cublasStatus_t (*gemm_ex)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int,
                            const void*, const void*, cudaDataType, int, const void*,
                            cudaDataType, int, const void*, void*, cudaDataType, int,
                            cublasComputeType_t, cublasGemmAlgo_t) = nullptr;
  const char* (*status_string)(cublasStatus_t) = nullptr;
};

// The table, loaded on the first call (thread-safe); unsupported naming "exec.device" with the
// loader's reason when libcublas is missing or lacks a function.
Status blas_api(const BlasApi** api);

// A Status for a failed cuBLAS call: cuda_error naming no argument, "<what>: <cuBLAS's reason>".
Status blas_status(const BlasApi& api, cublasStatus_t status, const char* what);

// actloss's own handle for the calling thread and the current device, created on first use and
// destroyed when the thread ends.
Status thread_blas_handle(const BlasApi& api, cublasHandle_t* handle);

}  // namespace actloss::cuda
