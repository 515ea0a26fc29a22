// Built as the scalar kernels.
#ifndef TFORMER_SIMD_SCALAR
#define TFORMER_SIMD_SCALAR
#endif
#define TFORMER_ODR_FUNCTION rope_scalar
#define TFORMER_ODR_SWEEP sweep_scalar
#define TFORMER_ODR_ATTENTION attention_scalar
#define TFORMER_ODR_NORM_ACTIVATION norm_activation_scalar
#include "odr_unit.inc"
