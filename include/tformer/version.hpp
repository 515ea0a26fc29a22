// The library's version; CMakeLists.txt reads it from here, so it is stated once.
#pragma once

#define TFORMER_VERSION_MAJOR 0
#define TFORMER_VERSION_MINOR 1
#define TFORMER_VERSION_PATCH 0
#define TFORMER_VERSION_STRING "0.1.0"
