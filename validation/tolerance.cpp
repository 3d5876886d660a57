#include "validation/tolerance.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

#include "host/half.h"

namespace actloss::validation {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

std::string number(double value) {
  char text[32];
  std::snprintf(text, sizeof text, "%.9g", value);
  return text;
}

double rounded(double value, DType dtype) {
  unsigned char scratch[4];
  host::store_from_double(scratch, dtype, 0, value);
  return host::load_as_double(scratch, dtype, 0);
}

}  // namespace

double floor_of(DType dtype) {
  switch (dtype) {
    case DType::f16: return 0x1p-25;
    case DType::bf16: return 0x1p-134;
    case DType::f32: break;
  }
  return 0x1p-150;
}

double unit_roundoff(DType dtype) {
  switch (dtype) {
    case DType::f16: return 0x1p-11;
    case DType::bf16: return 0x1p-8;
    case DType::f32: break;
  }
  return 0x1p-24;
}

double largest_finite(DType dtype) {
  switch (dtype) {
    case DType::f16: return 65504.0;
    case DType::bf16: return 0x1.FEp127;
    case DType::f32: break;
  }
  return std::numeric_limits<float>::max();
}

Check compare(const std::string& output, const std::vector<double>& actual,
              const std::vector<double>& expected, DType dtype, const std::vector<double>& err) {
  Check check;
  check.output = output;
  check.dtype = dtype;
  if (actual.size() != expected.size() || (!err.empty() && err.size() != expected.size())) {
    check.pass = false;
    check.worst = kInf;
    check.first_failure = output + ": " + std::to_string(actual.size()) + " values, expected " +
                          std::to_string(expected.size());
    return check;
  }
  const double u = unit_roundoff(dtype);
  const double floor = floor_of(dtype);
  const double largest = largest_finite(dtype);
  for (std::size_t i = 0; i < actual.size(); ++i) {
    const double a = actual[i], e = expected[i];
    const double allowed = u * std::fabs(e) + (1 + u) * (err.empty() ? 0.0 : err[i]) + floor;
    double ratio = 0;
    if (std::isnan(allowed) && std::isfinite(e)) {
      ratio = kInf;  // an error bound that is NaN must not pass anything
    } else if (std::isnan(e) || std::isnan(a)) {
      ratio = std::isnan(e) && std::isnan(a) ? 0 : kInf;
    } else if (std::isinf(e)) {
      ratio = a == e ? 0 : kInf;
    } else if (std::isinf(a)) {
      const bool overflowed = (a > 0) == (e > 0) && std::fabs(e) + allowed >= largest;
      ratio = overflowed ? 0 : kInf;
    } else {
      const double error = std::fabs(a - e);
      ratio = error == 0 ? 0 : error / allowed;
      check.max_abs = std::max(check.max_abs, error);
      // Relative error where it means something: normal results of a well-conditioned
      // computation (a bound of at most 16 roundings of the result itself).
      const bool conditioned = err.empty() || err[i] <= 16 * kU * std::fabs(e);
      if (std::fabs(e) >= (dtype == DType::f16 ? 0x1p-14 : 0x1p-126) && conditioned)
        check.max_rel = std::max(check.max_rel, error / std::fabs(e));
    }
    check.worst = std::max(check.worst, ratio);
    if (ratio > 1 && check.pass) {
      check.pass = false;
      check.first_failure = output + "[" + std::to_string(i) + "]: got " + number(a) + ", want " +
                            number(e) + " (allowed " + number(allowed) + ")";
    }
  }
  return check;
}

Check compare_exact(const std::string& output, const std::vector<double>& actual,
                    const std::vector<double>& expected, DType dtype) {
  Check check;
  check.output = output;
  check.dtype = dtype;
  if (actual.size() != expected.size()) {
    check.pass = false;
    check.worst = kInf;
    check.first_failure = output + ": " + std::to_string(actual.size()) + " values, expected " +
                          std::to_string(expected.size());
    return check;
  }
  for (std::size_t i = 0; i < actual.size(); ++i) {
    const double want = rounded(expected[i], dtype);
    const bool same = (std::isnan(want) && std::isnan(actual[i])) || actual[i] == want;
    if (same) continue;
    check.worst = kInf;
    if (std::isfinite(actual[i]) && std::isfinite(want))
      check.max_abs = std::max(check.max_abs, std::fabs(actual[i] - want));
    if (check.pass) {
      check.pass = false;
      check.first_failure = output + "[" + std::to_string(i) + "]: got " + number(actual[i]) +
                            ", want exactly " + number(want) + " (" + number(expected[i]) +
                            " rounded to nearest even)";
    }
  }
  return check;
}

Check verdict(const std::string& output, bool pass, const std::string& failure) {
  Check check;
  check.output = output;
  check.pass = pass;
  if (!pass) {
    check.worst = kInf;
    check.first_failure = output + ": " + failure;
  }
  return check;
}

}  // namespace actloss::validation
