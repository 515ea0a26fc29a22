# cmake -DPROGRAM=<tformer_odr_tests> -DNM=<nm> -DLEVELS=<n> -P check_copies.cmake
# Inspects the linked program: Eigen's GEMV kernel (general_matrix_vector_product<…>::run, what
# linear() runs for one token), a weak symbol that a plain link merges into one copy for every
# level, must be defined once per instruction-set level, each copy local to its variant, and
# never global.
execute_process(COMMAND ${NM} -C ${PROGRAM} OUTPUT_VARIABLE symbols RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "nm ${PROGRAM} failed")
endif()
string(REGEX MATCHALL "[^\n]+" lines "${symbols}")
set(local 0)
set(global 0)
foreach(line IN LISTS lines)
  if(line MATCHES "^[0-9a-f]+ ([A-Za-z]) Eigen::internal::general_matrix_vector_product<.*>::run\\(")
    if(CMAKE_MATCH_1 STREQUAL "t")
      math(EXPR local "${local} + 1")
    else()
      math(EXPR global "${global} + 1")
    endif()
  endif()
endforeach()
message("Eigen GEMV kernel in ${PROGRAM}: ${local} local copies, ${global} global")
if(global GREATER 0 OR local LESS LEVELS)
  message(FATAL_ERROR "expected at least ${LEVELS} local copies (one per level) and no global one")
endif()
