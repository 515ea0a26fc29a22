// Built with the project's instruction set (-march=native in the dev preset).
#define TFORMER_ODR_FUNCTION rope_native
#define TFORMER_ODR_SWEEP sweep_native
#define TFORMER_ODR_ATTENTION attention_native
#define TFORMER_ODR_NORM_ACTIVATION norm_activation_native
#include "odr_unit.inc"
