# tformer's instruction-set levels at build time (include/tformer/core/isa.hpp at run time).
#
#   tformer_isa_compile_options(<isa> <options-var> <definitions-var>)
#       The flags that build code for one level: scalar, sse2, sse4_2, avx2_fma, avx512.
#
#   tformer_add_isa_variants(<target> SOURCES <src>... ISAS <isa>... [LINK_LIBRARIES <lib>...])
#       Compiles SOURCES once per level into <target> (an object library each,
#       <target>_isa_<isa>, with the level's flags and TFORMER_ISA_VARIANT=<isa>), and defines
#       TFORMER_ISA_VARIANT_<isa> on <target> for each, which TFORMER_DECLARE_ISA_VARIANTS and
#       TFORMER_ISA_VARIANTS in tformer/core/isa.hpp read. A variant source defines its entry
#       points in namespace <yours>::TFORMER_ISA_NS; the program picks one at startup with
#       tformer::select_isa_variant (environment variable TFORMER_ISA to force a level).
#       The variants get <target>'s include directories and definitions (but TFORMER_SIMD_SCALAR:
#       the level is the variant's), and link tformer::tformer
#       and LINK_LIBRARIES; not <target>'s compile options (they would bring its -march).
#       Each variant also gets its own copy of every inline function from outside tformer's
#       namespaces (Eigen's GEMM, the standard library), which the linker would otherwise keep
#       once for all of them: its objects are linked into one relocatable object whose weak
#       symbols are made local (tformerIsaLocalize.cmake; GNU ld (ld.bfd) and objcopy, ELF). Where those
#       tools are missing the variants share such code with each other and with <target>'s own
#       sources, which come first on the link line: build those for the lowest level you ship
#       (docs/CONVENTIONS.md, "Instruction sets").
#       Call TFORMER_DECLARE_ISA_VARIANTS at global scope.

# The levels, lowest first (a variable for the including directory; the functions below do not
# depend on it, so they work from any directory of a project that includes this file).
set(TFORMER_ISA_LEVELS scalar sse2 sse4_2 avx2_fma avx512)

function(tformer_isa_compile_options isa options_var definitions_var)
  set(definitions "")
  set(options "")
  if(isa STREQUAL "scalar")
    set(definitions TFORMER_SIMD_SCALAR)
  elseif(NOT CMAKE_SYSTEM_PROCESSOR MATCHES "x86_64|AMD64|amd64")
    message(FATAL_ERROR "tformer: ISA level '${isa}' is an x86-64 level; this is ${CMAKE_SYSTEM_PROCESSOR}")
  elseif(isa STREQUAL "sse2")
    set(options -march=x86-64)
  elseif(isa STREQUAL "sse4_2")
    set(options -march=x86-64-v2)
  elseif(isa STREQUAL "avx2_fma")
    set(options -march=x86-64-v3)
  elseif(isa STREQUAL "avx512")
    set(options -march=x86-64-v4)
  else()
    message(FATAL_ERROR "tformer: unknown ISA level '${isa}' (one of: scalar sse2 sse4_2 avx2_fma avx512)")
  endif()
  set(${options_var} ${options} PARENT_SCOPE)
  set(${definitions_var} ${definitions} PARENT_SCOPE)
endfunction()

function(tformer_add_isa_variants target)
  set(levels scalar sse2 sse4_2 avx2_fma avx512)
  set(localize_script ${CMAKE_CURRENT_FUNCTION_LIST_DIR}/tformerIsaLocalize.cmake)
  cmake_parse_arguments(ARG "" "" "SOURCES;ISAS;LINK_LIBRARIES" ${ARGN})
  # The partial link needs GNU ld's --force-group-allocation (lld has no such option).
  find_program(TFORMER_GNU_LD NAMES ld.bfd ld)
  set(gnu_ld "")
  if(TFORMER_GNU_LD)
    execute_process(COMMAND ${TFORMER_GNU_LD} --help OUTPUT_VARIABLE ld_help ERROR_QUIET)
    if(ld_help MATCHES "--force-group-allocation")
      set(gnu_ld ${TFORMER_GNU_LD})
    endif()
  endif()
  if(NOT ARG_SOURCES OR NOT ARG_ISAS)
    message(FATAL_ERROR "tformer_add_isa_variants(${target} SOURCES ... ISAS ...): both are needed")
  endif()
  foreach(isa IN LISTS ARG_ISAS)
    if(NOT isa IN_LIST levels)
      message(FATAL_ERROR "tformer_add_isa_variants: unknown level '${isa}' (one of: ${levels})")
    endif()
  endforeach()
  foreach(isa IN LISTS levels)  # lowest level first
    if(NOT isa IN_LIST ARG_ISAS)
      continue()
    endif()
    tformer_isa_compile_options(${isa} options definitions)
    set(lib ${target}_isa_${isa})
    add_library(${lib} OBJECT ${ARG_SOURCES})
    target_link_libraries(${lib} PRIVATE tformer::tformer ${ARG_LINK_LIBRARIES})
    target_include_directories(${lib} PRIVATE $<TARGET_PROPERTY:${target},INCLUDE_DIRECTORIES>)
    # <target>'s definitions (its dependencies' included) but the ones that choose a level.
    target_compile_definitions(${lib} PRIVATE
      "$<FILTER:$<TARGET_PROPERTY:${target},COMPILE_DEFINITIONS>,EXCLUDE,^TFORMER_(SIMD_SCALAR|ISA_VARIANT)>"
      ${definitions} TFORMER_ISA_VARIANT=${isa})
    target_compile_options(${lib} PRIVATE ${options})
    # Compiler IR (LTO) would reach ld -r and objcopy unlocalised, and be merged at the link.
    set_target_properties(${lib} PROPERTIES INTERPROCEDURAL_OPTIMIZATION OFF)
    if(gnu_ld AND CMAKE_NM AND CMAKE_OBJCOPY AND CMAKE_EXECUTABLE_FORMAT STREQUAL "ELF")
      # GCC makes static locals of inline functions STB_GNU_UNIQUE, which objcopy cannot make
      # local; weak instead.
      if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
        target_compile_options(${lib} PRIVATE -fno-gnu-unique)
      endif()
      set(out ${CMAKE_CURRENT_BINARY_DIR}/${lib}.o)
      add_custom_command(OUTPUT ${out}
        COMMAND ${CMAKE_COMMAND} -DOUTPUT=${out} "-DOBJECTS=$<TARGET_OBJECTS:${lib}>"
          -DLINKER=${gnu_ld} -DNM=${CMAKE_NM} -DOBJCOPY=${CMAKE_OBJCOPY}
          -P ${localize_script}
        DEPENDS ${lib} $<TARGET_OBJECTS:${lib}> ${localize_script}
        COMMENT "tformer: ${lib}, its own copy of Eigen and the standard library"
        VERBATIM)
      set_source_files_properties(${out} PROPERTIES EXTERNAL_OBJECT TRUE GENERATED TRUE)
      target_sources(${target} PRIVATE ${out})
    else()
      target_sources(${target} PRIVATE $<TARGET_OBJECTS:${lib}>)
    endif()
    target_compile_definitions(${target} PRIVATE TFORMER_ISA_VARIANT_${isa}=1)
  endforeach()
  foreach(library IN LISTS ARG_LINK_LIBRARIES)  # the objects' own link dependencies
    target_link_libraries(${target} PRIVATE $<LINK_ONLY:${library}>)
  endforeach()
endfunction()
