// Built for the architecture's baseline (-march=x86-64 on x86-64, i.e. SSE2).
#define TFORMER_ODR_FUNCTION rope_baseline
#define TFORMER_ODR_SWEEP sweep_baseline
#define TFORMER_ODR_ATTENTION attention_baseline
#define TFORMER_ODR_NORM_ACTIVATION norm_activation_baseline
#include "odr_unit.inc"
