# cmake -DRELEASE_DIR=... -DCONSUMER_DIR=... -DWORK_DIR=... -DCXX=... -P run_consumers.cmake
# Installs RELEASE_DIR into WORK_DIR/prefix, checks what landed there, then
# builds and runs tests/packaging/consumer three ways: find_package with the
# shared library, find_package with the static one, and pkg-config. Every
# step has a time limit; WORK_DIR is removed at the end, pass or fail.
cmake_minimum_required(VERSION 3.25)
foreach(var RELEASE_DIR CONSUMER_DIR WORK_DIR CXX)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "run_consumers.cmake: -D${var}= is required")
  endif()
endforeach()

set(prefix ${WORK_DIR}/prefix)

function(fail why)
  file(REMOVE_RECURSE ${WORK_DIR})
  message(FATAL_ERROR "packaging: ${why}")
endfunction()

# Runs a command (at most `seconds`), fails the test with its output if it fails.
function(step what seconds)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE result OUTPUT_VARIABLE out ERROR_VARIABLE err
                  TIMEOUT ${seconds})
  if(NOT result EQUAL 0)
    fail("${what} failed (${result}):\n${ARGN}\n${out}${err}")
  endif()
  set(step_output "${out}" PARENT_SCOPE)
endfunction()

# The consumer must have printed its granted timeout (the client asked for 6s).
function(check_run what output)
  if(NOT output MATCHES "granted timeout 6s\n")
    fail("${what}: expected \"granted timeout 6s\", got:\n${output}")
  endif()
  message(STATUS "${what}: ${output}")
endfunction()

if(NOT EXISTS ${RELEASE_DIR}/cmake_install.cmake)
  fail("${RELEASE_DIR} is not a configured build tree: run `make build-release` (make test does) first")
endif()
file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR})

step("cmake --install ${RELEASE_DIR}" 120 ${CMAKE_COMMAND} --install ${RELEASE_DIR} --prefix ${prefix})

# What docs/INSTALL.md promises.
set(expected bin/lifeline include/lifeline/result.hpp include/lifeline/engine/server_session.hpp
             include/lifeline/sys/socket_options.hpp lib/liblifeline.a lib/liblifeline.so lib/liblifeline.so.0
             lib/liblifeline.so.0.1.0 lib/liblifeline_preload.so lib/cmake/lifeline/lifelineConfig.cmake
             lib/cmake/lifeline/lifelineConfigVersion.cmake lib/cmake/lifeline/lifelineTargets.cmake
             lib/pkgconfig/lifeline.pc lib/systemd/system/lifeline-serve.service
             share/doc/lifeline/examples/90-lifeline-keepalive.conf)
find_program(HELP2MAN help2man)
if(HELP2MAN)
  list(APPEND expected share/man/man1/lifeline.1)
endif()
foreach(file IN LISTS expected)
  if(NOT EXISTS ${prefix}/${file})
    fail("cmake --install did not install ${file}")
  endif()
endforeach()
file(GLOB internal ${prefix}/include/core ${prefix}/include/runtime ${prefix}/include/net)
if(internal)
  fail("internal headers were installed: ${internal}")
endif()
file(STRINGS ${prefix}/lib/systemd/system/lifeline-serve.service exec REGEX "^ExecStart=")
if(NOT exec MATCHES "^ExecStart=${prefix}/bin/lifeline serve")
  fail("the unit does not start the installed binary: ${exec}")
endif()

# The installed `lifeline run` finds the installed preload library.
step("lifeline run from the prefix" 30 ${prefix}/bin/lifeline run --keepalive 5s:1s:2 -- /usr/bin/env)
if(NOT step_output MATCHES "LD_PRELOAD=${prefix}/lib/liblifeline_preload.so")
  fail("the installed lifeline run does not preload ${prefix}/lib/liblifeline_preload.so:\n${step_output}")
endif()

# 1 and 2: find_package(lifeline CONFIG), shared then static.
foreach(kind shared static)
  set(build ${WORK_DIR}/find_package_${kind})
  set(use_static OFF)
  if(kind STREQUAL "static")
    set(use_static ON)
  endif()
  step("configuring the find_package consumer (${kind})" 120 ${CMAKE_COMMAND} -S ${CONSUMER_DIR} -B ${build}
       -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_CXX_COMPILER=${CXX} -DCMAKE_BUILD_TYPE=Release
       -DLIFELINE_USE_STATIC_LIBS=${use_static} -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF)
  step("building the find_package consumer (${kind})" 300 ${CMAKE_COMMAND} --build ${build})
  # The shared build must use the installed library, found through its RPATH.
  step("running the find_package consumer (${kind})" 30 ${build}/consumer)
  check_run("find_package (${kind})" "${step_output}")
endforeach()

# 3: pkg-config --cflags --libs lifeline and a bare compiler command.
find_program(PKG_CONFIG pkg-config)
if(NOT PKG_CONFIG)
  fail("pkg-config not found")
endif()
set(ENV{PKG_CONFIG_PATH} ${prefix}/lib/pkgconfig)
step("pkg-config --cflags --libs lifeline" 30 ${PKG_CONFIG} --cflags --libs lifeline)
string(STRIP "${step_output}" flags)
separate_arguments(flags UNIX_COMMAND "${flags}")
step("building the pkg-config consumer" 300 ${CXX} -std=c++20 ${CONSUMER_DIR}/main.cpp ${flags}
     -o ${WORK_DIR}/pkg_config_consumer)
step("running the pkg-config consumer" 30 ${CMAKE_COMMAND} -E env LD_LIBRARY_PATH=${prefix}/lib
     ${WORK_DIR}/pkg_config_consumer)
check_run("pkg-config" "${step_output}")

file(REMOVE_RECURSE ${WORK_DIR})
message(STATUS "packaging: installed, and built and ran 3 consumers against ${prefix}")
