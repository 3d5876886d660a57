// The one tolerance rule of every validation case (validation/validation.h).
//
// Each output element a is compared with e, the float64 reference on the inputs as the device
// holds them, not rounded to the output dtype:
//
//   |a - e| <= u |e| + (1 + u) err + floor
//
//  * u: the output dtype's unit roundoff (2^-24 f32, 2^-11 f16, 2^-8 bf16). The kernel rounds its
//    float result into the output once, and may land on either neighbour of e.
//  * err: the float computation's own error bound for that element. Each op derives it beside its
//    cases from the sizes of the terms its roundings act on, the function's condition included
//    (|x f'(x)| for an activation, the terms that cancel in a gradient), in units of float's
//    roundoff 2^-24 with the counts of roundings stated, and with room for the GPU's math
//    functions at their documented worst (expf, exp2f 2 ulp; erfcf 4 ulp), which the simulator's
//    libm beats. A result that cancels is judged against the error it really carries, no more.
//    Where the computation must round to a narrower dtype on the way (the fused linear
//    cross-entropy's GEMMs take the logits' gradient in the 16-bit inputs' dtype, and a 16-bit
//    d_weight is rounded after every chunk), each such rounding enters err at that dtype's unit
//    roundoff and floor, and a GEMM's sums at gamma_{K+1} of its absolute products (validation/
//    linear_cross_entropy.cpp).
//  * floor: half the spacing of the output dtype's subnormals (2^-150 f32, 2^-25 f16, 2^-134
//    bf16): below the normal range rounding is absolute.
//
// NaN must meet NaN. An infinite e must meet the same infinity; a finite e whose allowance
// reaches past the dtype's largest finite value may also meet the infinity of its sign (the
// rounding overflowed). Where a result must be exact (mask bits, conversions at rounding ties),
// compare_exact asks for e rounded once to the dtype (round to nearest even), bit for bit but for
// the sign of zero.
#pragma once

#include <string>
#include <vector>

#include <actloss/types.h>

#include "validation/validation.h"

namespace actloss::validation {

// Float's unit roundoff: err terms are written as multiples of it.
inline constexpr double kU = 0x1p-24;

double unit_roundoff(DType dtype);
// Half the spacing of the dtype's subnormals: the rule's floor, and what any rounding into the
// dtype may lose below its normal range.
double floor_of(DType dtype);
double largest_finite(DType dtype);

// `err` per element, or empty for an exact computation (err = 0).
Check compare(const std::string& output, const std::vector<double>& actual,
              const std::vector<double>& expected, DType dtype, const std::vector<double>& err);

Check compare_exact(const std::string& output, const std::vector<double>& actual,
                    const std::vector<double>& expected, DType dtype);

// A check of something that is right or wrong as a whole ("grad padding": the bytes between
// rows were not written; "lse": not written when not asked for).
Check verdict(const std::string& output, bool pass, const std::string& failure);

}  // namespace actloss::validation
