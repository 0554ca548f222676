# Fails when README.md does not contain EXAMPLE's text verbatim.
file(READ "${EXAMPLE}" example)
file(READ "${README}" readme)
string(FIND "${readme}" "${example}" pos)
if(pos EQUAL -1)
  message(FATAL_ERROR "README.md does not contain ${EXAMPLE} verbatim: copy the file into the README's example block")
endif()
message(STATUS "README.md shows ${EXAMPLE} verbatim")
