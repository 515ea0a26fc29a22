// Bad inputs of the public entry points in include/tformer/rope/ (see bad_input.hpp).
#include "bad_input/bad_input.hpp"
