// Bad inputs of the public entry points in include/tformer/core/ (see bad_input.hpp).
#include "bad_input/bad_input.hpp"
