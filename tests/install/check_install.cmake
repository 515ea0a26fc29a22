# Installs the build tree into a fresh prefix, then configures, builds and runs a separate
# consumer project against it with find_package(tformer CONFIG REQUIRED).
# Arguments: -DBUILD_DIR= -DCONSUMER_DIR= -DWORK_DIR= -DCXX_COMPILER=
file(REMOVE_RECURSE "${WORK_DIR}")
set(prefix "${WORK_DIR}/prefix")

function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE result OUTPUT_VARIABLE out ERROR_VARIABLE err)
  message("${out}${err}")
  if(NOT result EQUAL 0)
    message(FATAL_ERROR "failed (${result}): ${ARGN}")
  endif()
  set(last_output "${out}" PARENT_SCOPE)
endfunction()

run(${CMAKE_COMMAND} --install "${BUILD_DIR}" --prefix "${prefix}")
run(${CMAKE_COMMAND} -S "${CONSUMER_DIR}" -B "${WORK_DIR}/build"
    -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_CXX_COMPILER=${CXX_COMPILER}
    -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF)
if(NOT last_output MATCHES "tformer found at ${prefix}/")
  message(FATAL_ERROR "the consumer did not find tformer in ${prefix}")
endif()
run(${CMAKE_COMMAND} --build "${WORK_DIR}/build")
run("${WORK_DIR}/build/consumer")
# The checkpoint readers' target, when nlohmann_json was found (install-deps installs it).
if(EXISTS "${WORK_DIR}/build/checkpoint_consumer")
  run("${WORK_DIR}/build/checkpoint_consumer")
  if(NOT last_output MATCHES "checkpoint consumer: OK")
    message(FATAL_ERROR "the checkpoint consumer did not print OK")
  endif()
else()
  message(FATAL_ERROR "checkpoint_consumer was not built: tformer::checkpoints not exported")
endif()
