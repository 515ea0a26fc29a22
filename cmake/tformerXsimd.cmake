# Debian's xsimd 8.1 CMake config lists a link dependency `xtl` that it never finds (linking then
# fails with "cannot find -lxtl"). xsimd is header-only and needs nothing from xtl, so when
# xtl-dev is not installed an empty imported target named `xtl` stands in for it, in the scope
# of the project that calls this (a consumer's find_package(tformer) included): a project that
# needs the real xtl should find_package(xtl) before tformer. Call before find_package(xsimd).
macro(tformer_provide_xtl)
  if(NOT TARGET xtl)
    find_package(xtl QUIET)
  endif()
  if(NOT TARGET xtl)
    add_library(xtl INTERFACE IMPORTED)
  endif()
endmacro()
