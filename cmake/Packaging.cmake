# Installation and packaging: the combined `lifeline` library (static and
# shared, made of the objects of the internal layer libraries), the binary, its
# man page, CMake and pkg-config metadata, a systemd unit and a sysctl example.
# Included from the top-level CMakeLists.txt after src/. See docs/INSTALL.md.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)
find_package(Threads REQUIRED)

# The layers an application may use: vocabulary, the sans-IO engine, the socket
# helpers and the runtime. Not the simulator, the lab or the load generator.
set(LIFELINE_LIBRARY_PARTS lifeline_vocabulary lifeline_core lifeline_net lifeline_runtime)
# Their objects also go into a shared library.
set_target_properties(${LIFELINE_LIBRARY_PARTS} PROPERTIES POSITION_INDEPENDENT_CODE ON)
set(_lifeline_objects "")
foreach(part IN LISTS LIFELINE_LIBRARY_PARTS)
  list(APPEND _lifeline_objects $<TARGET_OBJECTS:${part}>)
endforeach()

# What the objects need at link time. The shared library links them; a static
# user must (lifelineConfig.cmake finds them, lifeline.pc lists them).
set(_lifeline_private_links fmt::fmt PkgConfig::MNL PkgConfig::HTTPLIB PkgConfig::HIREDIS OpenSSL::SSL OpenSSL::Crypto Threads::Threads)
set(_lifeline_private_pc "fmt libmnl cpp-httplib hiredis libssl libcrypto")
if(LIFELINE_HAVE_URING)
  list(APPEND _lifeline_private_links PkgConfig::URING)
  string(APPEND _lifeline_private_pc " liburing")
endif()

set(_lifeline_public_includes $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/include>
                              $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)

add_library(lifeline_static STATIC ${_lifeline_objects})
set_target_properties(lifeline_static PROPERTIES OUTPUT_NAME lifeline EXPORT_NAME lifeline_static
                                                 POSITION_INDEPENDENT_CODE ON)
target_include_directories(lifeline_static INTERFACE ${_lifeline_public_includes})
target_compile_features(lifeline_static INTERFACE cxx_std_20)
# Installed, the pkg-config modules come from one PkgConfig::lifeline_private
# target that lifelineConfig.cmake makes.
target_link_libraries(lifeline_static INTERFACE "$<BUILD_INTERFACE:${_lifeline_private_links}>"
                                                "$<INSTALL_INTERFACE:fmt::fmt;Threads::Threads;PkgConfig::lifeline_private>")

add_library(lifeline_shared SHARED ${_lifeline_objects})
set_target_properties(lifeline_shared PROPERTIES OUTPUT_NAME lifeline EXPORT_NAME lifeline_shared
                                                 VERSION ${PROJECT_VERSION} SOVERSION ${PROJECT_VERSION_MAJOR}
                                                 POSITION_INDEPENDENT_CODE ON)
target_include_directories(lifeline_shared INTERFACE ${_lifeline_public_includes})
target_compile_features(lifeline_shared INTERFACE cxx_std_20)
# lifeline_build_options brings the sanitizer's link flags in the asan preset.
target_link_libraries(lifeline_shared PRIVATE "$<BUILD_INTERFACE:${_lifeline_private_links}>"
                                              $<BUILD_INTERFACE:lifeline_build_options>)

# For projects that add_subdirectory() this one, as for those that find_package() it.
add_library(lifeline::lifeline ALIAS lifeline_shared)
add_library(lifeline::lifeline_shared ALIAS lifeline_shared)
add_library(lifeline::lifeline_static ALIAS lifeline_static)

install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/lifeline DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
        FILES_MATCHING PATTERN "*.hpp")
install(TARGETS lifeline_static lifeline_shared EXPORT lifelineTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} NAMELINK_COMPONENT Development
        INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(TARGETS lifeline RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
# `lifeline run` looks for it at BINDIR/../LIBDIR (src/cli/CMakeLists.txt).
install(TARGETS lifeline_preload LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})

# CMake: find_package(lifeline CONFIG) gives lifeline::lifeline.
set(LIFELINE_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/lifeline)
install(EXPORT lifelineTargets NAMESPACE lifeline:: DESTINATION ${LIFELINE_CMAKE_DIR})
set(LIFELINE_PRIVATE_PC_MODULES ${_lifeline_private_pc})
configure_package_config_file(${PROJECT_SOURCE_DIR}/packaging/lifelineConfig.cmake.in
                              ${PROJECT_BINARY_DIR}/packaging/lifelineConfig.cmake
                              INSTALL_DESTINATION ${LIFELINE_CMAKE_DIR})
# 0.x: a minor release may break the API, so only the same minor version matches.
write_basic_package_version_file(${PROJECT_BINARY_DIR}/packaging/lifelineConfigVersion.cmake
                                 VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/packaging/lifelineConfig.cmake
              ${PROJECT_BINARY_DIR}/packaging/lifelineConfigVersion.cmake
        DESTINATION ${LIFELINE_CMAKE_DIR})

# pkg-config: relative to the .pc file, so `cmake --install --prefix` anywhere works.
file(RELATIVE_PATH LIFELINE_PC_TO_PREFIX /${CMAKE_INSTALL_LIBDIR}/pkgconfig /)
string(REGEX REPLACE "/$" "" LIFELINE_PC_TO_PREFIX "${LIFELINE_PC_TO_PREFIX}")
configure_file(${PROJECT_SOURCE_DIR}/packaging/lifeline.pc.in ${PROJECT_BINARY_DIR}/packaging/lifeline.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/packaging/lifeline.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)

# The man page, from `lifeline --help` (help2man). Optional: without help2man,
# or if it fails, the build goes on and says so, and nothing is installed.
set(LIFELINE_MAN_PAGE ${PROJECT_BINARY_DIR}/packaging/lifeline.1)
find_program(HELP2MAN_EXECUTABLE help2man)
if(HELP2MAN_EXECUTABLE)
  add_custom_command(OUTPUT ${LIFELINE_MAN_PAGE}
                     COMMAND ${CMAKE_COMMAND} -DHELP2MAN=${HELP2MAN_EXECUTABLE} -DBINARY=$<TARGET_FILE:lifeline>
                             -DOUTPUT=${LIFELINE_MAN_PAGE} -DVERSION=${PROJECT_VERSION}
                             -P ${PROJECT_SOURCE_DIR}/cmake/GenerateManPage.cmake
                     DEPENDS lifeline ${PROJECT_SOURCE_DIR}/cmake/GenerateManPage.cmake
                     COMMENT "Generating lifeline.1 with help2man")
  add_custom_target(lifeline_man_page ALL DEPENDS ${LIFELINE_MAN_PAGE})
else()
  message(WARNING "help2man not found (Debian: help2man; scripts/install-deps.sh installs it): "
                  "no man page will be built or installed")
endif()
install(FILES ${LIFELINE_MAN_PAGE} DESTINATION ${CMAKE_INSTALL_MANDIR}/man1 OPTIONAL)

# The systemd unit names the installed binary, so it is written at install
# time, when the prefix is known (`cmake --install --prefix` may change it).
set(LIFELINE_SYSTEMD_UNIT_DIR lib/systemd/system CACHE STRING
    "Where lifeline-serve.service goes, relative to the prefix (or absolute)")
set(_lifeline_unit ${PROJECT_BINARY_DIR}/packaging/lifeline-serve.service)
install(CODE "
  if(IS_ABSOLUTE \"${CMAKE_INSTALL_BINDIR}\")
    set(LIFELINE_INSTALLED_BINARY \"${CMAKE_INSTALL_BINDIR}/lifeline\")
  else()
    set(LIFELINE_INSTALLED_BINARY \"\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_BINDIR}/lifeline\")
  endif()
  configure_file(\"${PROJECT_SOURCE_DIR}/packaging/lifeline-serve.service.in\" \"${_lifeline_unit}\" @ONLY)
")
install(FILES ${_lifeline_unit} DESTINATION ${LIFELINE_SYSTEMD_UNIT_DIR})
install(FILES ${PROJECT_SOURCE_DIR}/packaging/90-lifeline-keepalive.conf
        DESTINATION ${CMAKE_INSTALL_DOCDIR}/examples)
