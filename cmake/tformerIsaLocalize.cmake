# cmake -DOUTPUT=<out.o> -DOBJECTS=<a.o;b.o;...> -DLINKER=<ld> -DNM=<nm> -DOBJCOPY=<objcopy>
#       -P tformerIsaLocalize.cmake
#
# Gives one instruction-set variant its own copy of every inline function it uses from outside
# tformer's namespaces (Eigen, the standard library). Its objects are linked into one relocatable
# object with COMDAT groups dissolved (ld -r --force-group-allocation), then every weak and unique
# symbol it defines (the instantiations the linker would otherwise merge across variants) is
# made local (objcopy --localize-symbols). Its strong symbols (the entry points) stay global.
foreach(var OUTPUT OBJECTS LINKER NM OBJCOPY)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "tformerIsaLocalize.cmake: ${var} not set")
  endif()
endforeach()
execute_process(COMMAND ${LINKER} -r --force-group-allocation -o ${OUTPUT} ${OBJECTS}
  RESULT_VARIABLE rc ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "tformer: ld -r of ${OUTPUT} failed: ${err}")
endif()
# The names to localize come from the input objects: there they are still weak (W, V) or unique
# (u: static locals of inline functions and their guards), which ld -r turns into plain globals.
execute_process(COMMAND ${NM} --defined-only -P ${OBJECTS}
  OUTPUT_VARIABLE symbols RESULT_VARIABLE rc ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "tformer: nm of the objects of ${OUTPUT} failed: ${err}")
endif()
string(REGEX MATCHALL "[^\n]+" lines "${symbols}")
set(local "")
foreach(line IN LISTS lines)
  # nm -P: "name type value size"; W/V weak, u unique global.
  if(line MATCHES "^([^ ]+) [WVu] ")
    string(APPEND local "${CMAKE_MATCH_1}\n")
  endif()
endforeach()
file(WRITE ${OUTPUT}.localize "${local}")
execute_process(COMMAND ${OBJCOPY} --localize-symbols=${OUTPUT}.localize ${OUTPUT}
  RESULT_VARIABLE rc ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "tformer: objcopy of ${OUTPUT} failed: ${err}")
endif()
