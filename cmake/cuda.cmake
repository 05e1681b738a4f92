# The CUDA backend (kernels/cuda/): hand-written kernels compiled by nvcc for
# sm_80 and sm_90 as machine code plus compute_90 PTX (so newer GPUs JIT it),
# warnings as errors in device and host code; cuBLAS and cuDNN for products
# and convolutions. Included by the top-level CMakeLists.txt when nvcc exists.
if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES OR CMAKE_CUDA_ARCHITECTURES STREQUAL "")
  set(CMAKE_CUDA_ARCHITECTURES "80-real;90-real;90-virtual")
endif()
set(CMAKE_CUDA_STANDARD 17)
set(CMAKE_CUDA_STANDARD_REQUIRED ON)
enable_language(CUDA)
find_package(CUDAToolkit REQUIRED)

find_path(CUDNN_INCLUDE_DIR cudnn.h
  HINTS ${CUDAToolkit_INCLUDE_DIRS} /usr/local/cuda/include /usr/include /usr/include/x86_64-linux-gnu)
find_library(CUDNN_LIBRARY NAMES cudnn
  HINTS ${CUDAToolkit_LIBRARY_DIR} /usr/local/cuda/lib64 /usr/local/cuda/lib /usr/lib/x86_64-linux-gnu)
if(NOT CUDNN_INCLUDE_DIR OR NOT CUDNN_LIBRARY)
  message(FATAL_ERROR "cuDNN not found (cudnn.h / libcudnn): install cuDNN for this CUDA toolkit")
endif()

file(GLOB MDPS_CUDA_SOURCES CONFIGURE_DEPENDS
  ${CMAKE_SOURCE_DIR}/kernels/cuda/*.cu
  ${CMAKE_SOURCE_DIR}/kernels/cuda/*.cpp)
# An object library: its objects go into mdps_engine (the one archive the
# command line, the tests and libmdps link), so the engine and the backend do
# not link to each other; the registry reaches the backend through the
# generated backend list (CMakeLists.txt, MDPS_BACKENDS).
add_library(mdps_cuda OBJECT ${MDPS_CUDA_SOURCES})
# The directory-wide -Wall/-Wextra are host-compiler flags nvcc rejects; this
# target states its own warning policy per language instead.
set_property(TARGET mdps_cuda PROPERTY COMPILE_OPTIONS "")
target_compile_options(mdps_cuda PRIVATE
  $<$<COMPILE_LANGUAGE:CUDA>:-Werror=all-warnings -Xcompiler=-Wall,-Wextra,-Wno-unused-parameter,-Werror>
  $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wno-unused-parameter -Werror>)
if(MDPS_COVERAGE)
  target_compile_options(mdps_cuda PRIVATE $<$<COMPILE_LANGUAGE:CXX>:--coverage -O0>)
endif()
target_include_directories(mdps_cuda PUBLIC ${CMAKE_SOURCE_DIR} ${CBLAS_INCLUDE_DIR} ${CUDNN_INCLUDE_DIR})
target_link_libraries(mdps_cuda PUBLIC CUDA::cudart CUDA::cublas ${CUDNN_LIBRARY})
target_sources(mdps_engine PRIVATE $<TARGET_OBJECTS:mdps_cuda>)
target_include_directories(mdps_engine PUBLIC ${CUDNN_INCLUDE_DIR})
target_link_libraries(mdps_engine PUBLIC CUDA::cudart CUDA::cublas ${CUDNN_LIBRARY})
