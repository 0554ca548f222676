# cmake -DHELP2MAN=... -DBINARY=... -DOUTPUT=... -DVERSION=... -P GenerateManPage.cmake
# Writes OUTPUT from `BINARY --help`. On failure it warns and leaves no OUTPUT,
# so the build still succeeds (and the next build tries again).
execute_process(COMMAND ${HELP2MAN} --no-info --no-discard-stderr --section=1
                        "--name=detects dead peers on long-lived TCP connections"
                        "--version-string=lifeline ${VERSION}" --output=${OUTPUT}.tmp ${BINARY}
                RESULT_VARIABLE result OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT 60)
if(NOT result EQUAL 0)
  file(REMOVE ${OUTPUT}.tmp ${OUTPUT})
  message(WARNING "lifeline.1 not generated: help2man ${BINARY} failed (${result}): ${out}${err}\n"
                  "The build goes on; the man page will not be installed.")
  return()
endif()
file(RENAME ${OUTPUT}.tmp ${OUTPUT})
