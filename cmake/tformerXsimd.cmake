# Debian's xsimd 8.1 CMake config lists a link dependency `xtl` that it never finds (linking then
# fails with "cannot find -lxtl"). xsimd is header-only and needs nothing from xtl, so when
# xtl-dev is not installed an empty imported target stands in for it. Call before
# find_package(xsimd).
macro(tformer_provide_xtl)
  if(NOT TARGET xtl)
    find_package(xtl QUIET)
  endif()
  if(NOT TARGET xtl)
    add_library(xtl INTERFACE IMPORTED)
  endif()
endmacro()
