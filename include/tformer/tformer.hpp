// Umbrella header: everything tformer offers.
#pragma once

#include "tformer/core/error.hpp"
#include "tformer/core/memory.hpp"
#include "tformer/core/positions.hpp"
#include "tformer/core/simd.hpp"
#include "tformer/core/views.hpp"
#include "tformer/rope/apply.hpp"
#include "tformer/rope/scaling.hpp"
#include "tformer/rope/table.hpp"
#include "tformer/version.hpp"
