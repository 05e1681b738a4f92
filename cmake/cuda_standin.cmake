# -DMDPS_CUDA_STANDIN=ON: the CUDA backend (kernels/cuda/*.cpp and the .cu
# launchers) compiled by the host C++ compiler and linked against CPU
# stand-ins of the CUDA runtime, cuBLAS and cuDNN (tests/standin/), so that
# its host code and its kernels (through kernels/cuda/emu/cuda_emu.h) run on
# machines without a GPU. For tests only: a build with it reports stand-in
# results, never GPU results (docs/gpu.md).
#
# The stand-ins take their types, enums and prototypes from NVIDIA's own
# headers (cuda_runtime.h, cublas_v2.h, cudnn.h), so a mismatch with the real
# API does not compile. Where those headers are absent (a machine without the
# CUDA toolkit and cuDNN) the stand-in build is skipped: MDPS_WITH_STANDIN
# stays OFF and `standin-skipped.txt` in the build tree says why, which
# tools/scripts/run_tests.sh reports as a skipped stage.
set(MDPS_WITH_STANDIN OFF)
find_path(MDPS_STANDIN_CUDART_INCLUDE cuda_runtime.h HINTS /usr/local/cuda/include)
find_path(MDPS_STANDIN_CUBLAS_INCLUDE cublas_v2.h HINTS ${MDPS_STANDIN_CUDART_INCLUDE} /usr/local/cuda/include)
find_path(MDPS_STANDIN_CUDNN_INCLUDE cudnn.h
  HINTS ${MDPS_STANDIN_CUDART_INCLUDE} /usr/local/cuda/include /usr/include/x86_64-linux-gnu)
if(NOT MDPS_STANDIN_CUDART_INCLUDE OR NOT MDPS_STANDIN_CUBLAS_INCLUDE OR NOT MDPS_STANDIN_CUDNN_INCLUDE)
  set(_why "the CUDA headers are absent (cuda_runtime.h: ${MDPS_STANDIN_CUDART_INCLUDE}, cublas_v2.h: ${MDPS_STANDIN_CUBLAS_INCLUDE}, cudnn.h: ${MDPS_STANDIN_CUDNN_INCLUDE})")
  message(WARNING "MDPS_CUDA_STANDIN: ${_why}; the stand-in build is skipped")
  file(WRITE ${CMAKE_BINARY_DIR}/standin-skipped.txt "${_why}\n")
  return()
endif()
file(REMOVE ${CMAKE_BINARY_DIR}/standin-skipped.txt)
set(MDPS_WITH_STANDIN ON)
message(STATUS "mdps: CUDA backend on CPU stand-ins (headers from ${MDPS_STANDIN_CUDART_INCLUDE})")

file(GLOB MDPS_STANDIN_SOURCES CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/standin/*.cpp)
add_library(mdps_cuda_standin STATIC ${MDPS_STANDIN_SOURCES})
target_include_directories(mdps_cuda_standin PUBLIC ${CMAKE_SOURCE_DIR} ${MDPS_STANDIN_CUDART_INCLUDE}
  ${MDPS_STANDIN_CUBLAS_INCLUDE} ${MDPS_STANDIN_CUDNN_INCLUDE})
target_compile_options(mdps_cuda_standin PRIVATE -Wall -Wextra -Wno-unused-parameter -Werror)
target_link_libraries(mdps_cuda_standin PUBLIC Threads::Threads)

file(GLOB MDPS_CUDA_CPP CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/kernels/cuda/*.cpp)
file(GLOB MDPS_CUDA_CU CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/kernels/cuda/*.cu)
# The launchers are plain C++ once MDPS_LAUNCH (kernels/cuda/kernel_launch.h)
# runs their kernels through the emulation.
set_source_files_properties(${MDPS_CUDA_CU} PROPERTIES LANGUAGE CXX COMPILE_OPTIONS "-xc++")
# As in cuda.cmake: an object library whose objects go into mdps_engine (no
# link cycle); the stand-ins are an ordinary static library below both.
add_library(mdps_cuda OBJECT ${MDPS_CUDA_CPP} ${MDPS_CUDA_CU})
target_compile_options(mdps_cuda PRIVATE -Wall -Wextra -Wno-unused-parameter -Werror)
target_include_directories(mdps_cuda PUBLIC ${CMAKE_SOURCE_DIR} ${CBLAS_INCLUDE_DIR})
target_link_libraries(mdps_cuda PUBLIC mdps_cuda_standin ${CMAKE_DL_LIBS})
target_sources(mdps_engine PRIVATE $<TARGET_OBJECTS:mdps_cuda>)
target_link_libraries(mdps_engine PUBLIC mdps_cuda_standin ${CMAKE_DL_LIBS})

# -DMDPS_STANDIN_COVERAGE=ON: gcov line coverage of the backend alone
# (kernels/cuda, launchers included) under the stand-ins, for docs/gpu.md;
# the rest of the tree keeps its flags.
option(MDPS_STANDIN_COVERAGE "gcov instrumentation of mdps_cuda in the stand-in build" OFF)
if(MDPS_STANDIN_COVERAGE)
  target_compile_options(mdps_cuda PRIVATE --coverage -O0)
  target_link_options(mdps_engine INTERFACE --coverage)
endif()
