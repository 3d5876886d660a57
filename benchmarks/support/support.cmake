# actloss_bench_support: workloads, timers, ceilings and peers shared by actloss_bench
# (benchmarks/) and the actloss tool (tools/). Included by both directories' CMakeLists, since
# either may be built without the other; the first inclusion defines the target.
if(TARGET actloss_bench_support)
  return()
endif()

set(_support_dir ${PROJECT_SOURCE_DIR}/benchmarks/support)
add_library(actloss_bench_support STATIC ${_support_dir}/memory.cpp ${_support_dir}/workload.cpp)
target_include_directories(actloss_bench_support PUBLIC ${PROJECT_SOURCE_DIR})
target_link_libraries(actloss_bench_support PUBLIC actloss::actloss)
# The CPU's streaming copy ceiling runs on the backend's thread count.
target_link_libraries(actloss_bench_support PRIVATE Threads::Threads)
actloss_set_warnings(actloss_bench_support)

if(ACTLOSS_CUDA_BACKEND)
  target_compile_definitions(actloss_bench_support PUBLIC ACTLOSS_BENCH_CUDA=1)
endif()

# Peers on the GPU: nvcc builds only (the simulator has neither nvcc nor cuDNN).
set(ACTLOSS_BENCH_PEERS "")
if(ACTLOSS_CUDA_BACKEND STREQUAL "NVCC")
  target_sources(actloss_bench_support PRIVATE ${_support_dir}/unfused_cross_entropy.cu)
  target_compile_definitions(actloss_bench_support PUBLIC ACTLOSS_BENCH_UNFUSED=1)
  target_compile_options(actloss_bench_support PRIVATE
    $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-Wall>)
  list(APPEND ACTLOSS_BENCH_PEERS unfused)
  # Thrust and CUB: headers that come with every CUDA toolkit, so no search.
  target_sources(actloss_bench_support PRIVATE ${_support_dir}/thrust_cross_entropy.cu)
  target_compile_definitions(actloss_bench_support PUBLIC ACTLOSS_BENCH_THRUST=1)
  list(APPEND ACTLOSS_BENCH_PEERS thrust_cub)

  # cuDNN: the header at build time; the library is opened at run time (dlopen), so the
  # binaries carried to a GPU machine start there whether or not it has cuDNN.
  find_path(ACTLOSS_CUDNN_INCLUDE_DIR cudnn.h
    HINTS ${CUDAToolkit_INCLUDE_DIRS} ENV CUDNN_ROOT PATH_SUFFIXES include)
  if(ACTLOSS_CUDNN_INCLUDE_DIR)
    target_sources(actloss_bench_support PRIVATE ${_support_dir}/cudnn_peer.cpp)
    set_source_files_properties(${_support_dir}/cudnn_peer.cpp PROPERTIES
      INCLUDE_DIRECTORIES ${ACTLOSS_CUDNN_INCLUDE_DIR})
    target_compile_definitions(actloss_bench_support PUBLIC ACTLOSS_BENCH_CUDNN=1)
    target_link_libraries(actloss_bench_support PRIVATE ${CMAKE_DL_LIBS})
    list(APPEND ACTLOSS_BENCH_PEERS cudnn)
  endif()
endif()

# The fused linear cross-entropy against its bare GEMMs and its unfused form. Compiled as CUDA
# in both CUDA builds (nvcc, or the simulator's front end): its cuBLAS calls go through the
# library's own table (cuda/blas.h, which starts with simcuda.h), so nothing links libcublas.
if(ACTLOSS_CUDA_BACKEND)
  set(_linear_ce ${_support_dir}/linear_cross_entropy.cu)
  if(ACTLOSS_CUDA_BACKEND STREQUAL "SIM")
    simcuda_add_cu_sources(actloss_bench_support ${_linear_ce})
  else()
    target_sources(actloss_bench_support PRIVATE ${_linear_ce})
    # simcuda.h, which the library's CUDA sources see privately.
    set_source_files_properties(${_linear_ce} PROPERTIES
      INCLUDE_DIRECTORIES ${PROJECT_SOURCE_DIR}/sim/include)
  endif()
  target_compile_definitions(actloss_bench_support PUBLIC ACTLOSS_BENCH_LINEAR_CE=1)
endif()

# oneDNN on the CPU, optional (Debian: libdnnl-dev). Found by header and library, not by its
# package config: Debian's dnnl-config.cmake requires the OpenCL headers, which libdnnl-dev does
# not pull in, and a failed find_package there is a fatal configure error even when QUIET. Used
# only when the peer source compiles against the version found: the C++ API changed in 3.0.
find_path(ACTLOSS_DNNL_INCLUDE_DIR dnnl.hpp)
find_library(ACTLOSS_DNNL_LIBRARY dnnl)
if(ACTLOSS_DNNL_INCLUDE_DIR AND ACTLOSS_DNNL_LIBRARY)
  set(_saved_try_type ${CMAKE_TRY_COMPILE_TARGET_TYPE})
  set(CMAKE_TRY_COMPILE_TARGET_TYPE STATIC_LIBRARY)
  try_compile(ACTLOSS_ONEDNN_PEER_COMPILES ${CMAKE_CURRENT_BINARY_DIR}/onednn_check
    SOURCES ${_support_dir}/onednn_peer.cpp
    CMAKE_FLAGS "-DINCLUDE_DIRECTORIES=${PROJECT_SOURCE_DIR};${PROJECT_SOURCE_DIR}/include;${ACTLOSS_DNNL_INCLUDE_DIR}"
    COMPILE_DEFINITIONS -DACTLOSS_BENCH_ONEDNN=1
    CXX_STANDARD 20
    OUTPUT_VARIABLE _onednn_output)
  set(CMAKE_TRY_COMPILE_TARGET_TYPE ${_saved_try_type})
  if(ACTLOSS_ONEDNN_PEER_COMPILES)
    target_sources(actloss_bench_support PRIVATE ${_support_dir}/onednn_peer.cpp)
    target_compile_definitions(actloss_bench_support PUBLIC ACTLOSS_BENCH_ONEDNN=1)
    # SYSTEM: its headers do not pass our -Wshadow -Werror.
    target_include_directories(actloss_bench_support SYSTEM PRIVATE ${ACTLOSS_DNNL_INCLUDE_DIR})
    target_link_libraries(actloss_bench_support PRIVATE ${ACTLOSS_DNNL_LIBRARY})
    list(APPEND ACTLOSS_BENCH_PEERS onednn)
  else()
    message(STATUS "actloss: oneDNN found but benchmarks/support/onednn_peer.cpp does not compile "
                   "against it; the oneDNN peer is left out")
  endif()
endif()

if(ACTLOSS_BENCH_PEERS)
  message(STATUS "actloss: benchmark peers: ${ACTLOSS_BENCH_PEERS}")
else()
  message(STATUS "actloss: benchmark peers: none in this build")
endif()
