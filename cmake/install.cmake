# The engine as an installable library (issue 9): libmdps with the public
# API of include/mdps (C++ and C), installed with its headers, a CMake
# package (find_package(mdps) -> mdps::mdps) and a pkg-config file (mdps.pc).
#
# libmdps is shared by default: it absorbs the static engine (and the CUDA
# backend when built) and exports only the API. With BUILD_SHARED_LIBS=OFF it
# is static, and mdps.pc / mdpsConfig.cmake name every library a static link
# needs (the engine archive, OpenBLAS, stb, libpng, libjpeg, pthread, libstdc++, CUDA).
# Included by the top-level CMakeLists.txt after the engine and CUDA targets.
option(BUILD_SHARED_LIBS "Build libmdps as a shared library" ON)
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

file(GLOB MDPS_API_SOURCES CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/api/*.cpp)
add_library(mdps_lib ${MDPS_API_SOURCES})
set_target_properties(mdps_lib PROPERTIES OUTPUT_NAME mdps VERSION ${PROJECT_VERSION}
  SOVERSION ${PROJECT_VERSION_MAJOR}.${PROJECT_VERSION_MINOR})
target_link_libraries(mdps_lib PRIVATE mdps_engine)
target_include_directories(mdps_lib PUBLIC $<BUILD_INTERFACE:${CMAKE_SOURCE_DIR}/include>)
# An installed library finds presets by name in its own share folder.
target_compile_definitions(mdps_lib PRIVATE
  MDPS_API_PRESET_DIR="${CMAKE_INSTALL_FULL_DATADIR}/mdps/presets")
if(BUILD_SHARED_LIBS)
  # The engine's symbols stay inside libmdps.so, so an application may link
  # its own copy of anything without clashes; the API's own objects export.
  target_link_options(mdps_lib PRIVATE -Wl,--exclude-libs,ALL -Wl,--no-undefined)
endif()

# What a link against the installed static library needs beyond libmdps.a.
set(MDPS_STATIC_LIBS "-lmdps_engine")
set(MDPS_STATIC_CMAKE_LIBS "\${_mdps_libdir}/libmdps_engine.a")
if(MDPS_WITH_CUDA)
  # The CUDA backend's objects are inside libmdps_engine.a; only the CUDA libraries remain.
  string(APPEND MDPS_STATIC_LIBS " -L${CUDAToolkit_LIBRARY_DIR} -lcudart -lcublas ${CUDNN_LIBRARY}")
  string(APPEND MDPS_STATIC_CMAKE_LIBS
         ";${CUDAToolkit_LIBRARY_DIR}/libcudart.so;${CUDAToolkit_LIBRARY_DIR}/libcublas.so;${CUDNN_LIBRARY}")
endif()
string(APPEND MDPS_STATIC_LIBS " ${OPENBLAS_LIBRARY} ${STB_LIBRARY} -lpng -ljpeg -lpthread -lstdc++ -lm")
string(APPEND MDPS_STATIC_CMAKE_LIBS ";${OPENBLAS_LIBRARY};${STB_LIBRARY};-lpng;-ljpeg;-lpthread;-lstdc++;-lm")
if(BUILD_SHARED_LIBS)
  set(MDPS_PC_LIBS "-lmdps")
  set(MDPS_PC_LIBS_PRIVATE "")
  set(MDPS_CONFIG_LIB_TYPE SHARED)
  set(MDPS_CONFIG_LIB_FILE "${CMAKE_SHARED_LIBRARY_PREFIX}mdps${CMAKE_SHARED_LIBRARY_SUFFIX}")
  set(MDPS_CONFIG_LINK "")
else()
  set(MDPS_PC_LIBS "-lmdps ${MDPS_STATIC_LIBS}")
  set(MDPS_PC_LIBS_PRIVATE "")
  set(MDPS_CONFIG_LIB_TYPE STATIC)
  set(MDPS_CONFIG_LIB_FILE "${CMAKE_STATIC_LIBRARY_PREFIX}mdps${CMAKE_STATIC_LIBRARY_SUFFIX}")
  set(MDPS_CONFIG_LINK "${MDPS_STATIC_CMAKE_LIBS}")
endif()

configure_file(${CMAKE_SOURCE_DIR}/cmake/mdps.pc.in ${CMAKE_BINARY_DIR}/mdps.pc @ONLY)
configure_file(${CMAKE_SOURCE_DIR}/cmake/mdpsConfig.cmake.in ${CMAKE_BINARY_DIR}/mdpsConfig.cmake @ONLY)
write_basic_package_version_file(${CMAKE_BINARY_DIR}/mdpsConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)

install(TARGETS mdps_lib
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
if(NOT BUILD_SHARED_LIBS)
  install(TARGETS mdps_engine ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
endif()
install(TARGETS mdps RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(DIRECTORY ${CMAKE_SOURCE_DIR}/include/mdps DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(DIRECTORY ${CMAKE_SOURCE_DIR}/presets/ DESTINATION ${CMAKE_INSTALL_DATADIR}/mdps/presets)
install(FILES ${CMAKE_BINARY_DIR}/mdps.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
install(FILES ${CMAKE_BINARY_DIR}/mdpsConfig.cmake ${CMAKE_BINARY_DIR}/mdpsConfigVersion.cmake
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/mdps)
