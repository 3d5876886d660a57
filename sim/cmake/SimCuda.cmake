# simcuda_add_cu_sources(<target> <source>...)
#
# Adds CUDA sources to <target> and compiles them as C++ with the host
# compiler, for the simulator build. The target must link actloss_sim (which
# brings the simcuda headers, the CUDA headers and ACTLOSS_SIM=1).
#
# With CMP0119 NEW (cmake_minimum_required >= 3.20) CMake passes `-x c++`
# itself for a LANGUAGE CXX source with a foreign extension; with it OLD it
# does not, and g++ would take a .cu file for linker input. Passing the flag
# ourselves is harmless in the first case and required in the second.
function(simcuda_add_cu_sources target)
  if(NOT TARGET ${target})
    message(FATAL_ERROR "simcuda_add_cu_sources: no target named '${target}'")
  endif()
  set(sources ${ARGN})
  if(NOT sources)
    return()
  endif()
  target_sources(${target} PRIVATE ${sources})
  set_source_files_properties(${sources} TARGET_DIRECTORY ${target}
    PROPERTIES LANGUAGE CXX)
  # `#pragma unroll` and other nvcc pragmas are unknown to g++, and GCC 12
  # cannot silence that warning from inside the header.
  set_property(SOURCE ${sources} TARGET_DIRECTORY ${target}
    APPEND PROPERTY COMPILE_OPTIONS -x c++ $<$<CXX_COMPILER_ID:GNU,Clang>:-Wno-unknown-pragmas>)
  # Kernels move registers as wider words (a chunk of halves loaded as a uint4), which CUDA
  # code does freely and nvcc compiles as meant; the host compiler's type-based alias analysis
  # would be free to reorder such accesses at -O2 and above.
  set_property(SOURCE ${sources} TARGET_DIRECTORY ${target}
    APPEND PROPERTY COMPILE_OPTIONS $<$<CXX_COMPILER_ID:GNU,Clang>:-fno-strict-aliasing>)
  # __launch_bounds__ expands to nothing on the host, so constants used only in its arguments
  # are unused there, which clang (unlike g++) reports.
  set_property(SOURCE ${sources} TARGET_DIRECTORY ${target}
    APPEND PROPERTY COMPILE_OPTIONS $<$<CXX_COMPILER_ID:Clang>:-Wno-unused-const-variable>)
  if(SIMCUDA_BOUNDS_CHECK)
    # Static __shared__ arrays are TLS or plain statics that ASan does not
    # guard; the bounds sanitizer checks indexing into fixed-size arrays.
    set_property(SOURCE ${sources} TARGET_DIRECTORY ${target}
      APPEND PROPERTY COMPILE_OPTIONS -fsanitize=bounds -fno-sanitize-recover=bounds)
    target_link_options(${target} PUBLIC -fsanitize=bounds)
  endif()
endfunction()
