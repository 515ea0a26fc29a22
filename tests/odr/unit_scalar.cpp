// Built as the scalar kernels.
#define TFORMER_SIMD_SCALAR
#define TFORMER_ODR_FUNCTION rope_scalar
#include "odr_unit.inc"
