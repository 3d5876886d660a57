// SwiGLU cases: y = silu(gate) up and its backward, in every dtype pair, at sizes across the
// 8-element pack on the vector, scalar (misaligned base) and grid-stride paths, and in the layout
// of LLaMA-style MLPs: gate and up the two halves of one [rows x 2n] projection (row stride 2n,
// or 2n + pad), the outputs tensors of their own or again halves of one [rows x 2n] buffer, and
// in place (y over gate or up; d_gate over gate and d_up over up). Odd n and odd pads leave the
// halves unaligned (element by element), and every row ends in a partial pack. Inputs: random
// with planted specials in all three operands, the far tails of silu, every float binade.
//
// Error bounds (validation/tolerance.h), per output element, in units of float's roundoff
// u = 2^-24 (2^-150 absolute below float's normal range); gate, up and dy are exact as the
// device holds them. The kernels take silu(g) and silu'(g) from the sigmoid pair of
// validation/activation.cpp (sigmoid(g) within 7u for g >= 0, else 12u and 2^-147 absolute;
// sigmoid(-g) the other way round), with silu's bounds as derived there:
//  * silu(g) = g s(g): s's error times |g|, and the product: 1 rounding.
//  * silu'(g) = s(g) (1 + g s(-g)) term by term: g s(-g) carries s(-g)'s error plus 1 rounding,
//    the sum (which cancels near g = -1.28) 1 more of itself, the product with s(g) 1 more.
// Then per output:
//  * y = silu(g) up: silu's error times |up|, and the product: 1 rounding more.
//  * d_up = dy silu(g): silu's error times |dy|, and the product: 1 rounding more.
//  * d_gate = (dy up) silu'(g): dy up is 1 rounding of |dy up|, which the kernel's slope
//    multiplies; the slope's error times |dy up|; the final product 1 rounding more.
// At g = +inf, silu(g) is inf exactly and the slope is __fdividef(1, 1 + 0): 4u. At g = -inf
// both are exactly 0 (-FLT_MAX times an exact 0).
//
// Float cannot answer a few inputs the way double does, whatever the kernel: an infinite up or dy
// meeting a nonzero silu(g) or silu'(g) below float's normal range (float may round it to 0,
// inf * 0 = NaN, where double keeps inf), or meeting a slope within its error of 0 (the sign of
// inf is then the sign of rounding noise); and a finite dy up beyond float's range, which is inf
// in float where the slope may bring d_gate back within range (the kernel, as PyTorch's autograd,
// forms dy up first). make_inputs replaces such an infinity by the dtype's largest finite value,
// and such a dy by one that keeps dy up within float's range.
#include <cmath>
#include <cstdint>
#include <limits>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "validation/paths.h"
#include "validation/sigmoid_bounds.h"
#include "validation/tensors.h"
#include "validation/tolerance.h"

namespace actloss::validation {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kSub = 0x1p-150;       // one float rounding below the normal range
constexpr double kFloatMax = std::numeric_limits<float>::max();

enum class Layout : std::uint8_t {
  separate,    // gate, up, dy and every output a tensor of its own
  halves,      // gate and up the halves of one [rows x 2n] projection; outputs of their own
  halves_out,  // the same, and the outputs halves of one [rows x 2n] buffer (y: the first half)
};

struct Spec {
  Device device = Device::cpu;
  bool backward = false;
  // gate and up; dy and the outputs.
  DType in = DType::f32, out = DType::f32;
  std::int64_t rows = 1, n = 0;
  Layout layout = Layout::separate;
  std::int64_t pad = 0;  // the halves' row stride: 2n + pad
  PointPath path = PointPath::vector;
  bool misaligned = false;  // a base one element off on the grid-stride paths as well
  bool in_place = false;  // forward: y over gate (or up); backward: d_gate over gate, d_up over up
  bool over_up = false;   // forward in place: y over up
  std::string kind = "random";
};

bool halves_in(const Spec& s) { return s.layout != Layout::separate; }
std::int64_t halves_stride(const Spec& s) { return 2 * s.n + s.pad; }
std::int64_t offset_for(const Spec& s) { return s.misaligned ? 1 : offset_of(s.path); }

std::string shape_text(const Spec& s) {
  std::string text = s.layout == Layout::separate && s.rows == 1
                         ? std::to_string(s.n)
                         : std::to_string(s.rows) + "x" + std::to_string(s.n);
  if (halves_in(s)) text += " gate|up halves";
  if (s.layout == Layout::halves_out) text += s.backward ? ", d_gate|d_up halves" : ", y a half";
  if (s.pad != 0) text += " stride 2n+" + std::to_string(s.pad);
  if (s.misaligned && s.path != PointPath::scalar) text += " offset 1";
  if (s.in_place) text += s.backward ? " in place" : (s.over_up ? " y over up" : " y over gate");
  return text;
}

// Whether every operand of the launch allows 16-byte accesses (ew::vector_ok): a base that is a
// multiple of 16 bytes from the 256-byte-aligned allocation, and, where the launch is strided
// (several rows, a stride other than n), a row stride that is one too. Where it does not, the
// "vector" path runs element by element and the case says so.
bool sixteen_byte_layout(const Spec& s) {
  struct Operand {
    std::int64_t first, stride;  // elements from the allocation's base; row stride
    DType dtype;
  };
  const std::int64_t offset = offset_for(s), wide = halves_stride(s);
  const std::int64_t in_stride = halves_in(s) ? wide : s.n;
  std::vector<Operand> ops = {{offset, in_stride, s.in},
                              {offset + (halves_in(s) ? s.n : 0), in_stride, s.in}};
  if (s.backward) ops.push_back({offset, s.n, s.out});  // dy
  if (!s.in_place) {
    const bool out_halves = s.layout == Layout::halves_out;
    const std::int64_t out_stride = out_halves ? wide : s.n;
    ops.push_back({offset, out_stride, s.out});
    if (s.backward) ops.push_back({offset + (out_halves ? s.n : 0), out_stride, s.out});
  }
  bool strided = false;
  for (const Operand& o : ops) strided = strided || (s.rows > 1 && o.stride != s.n);
  for (const Operand& o : ops) {
    const std::int64_t size = dtype_size(o.dtype);
    if ((o.first * size) % 16 != 0) return false;
    if (strided && (o.stride * size) % 16 != 0) return false;
  }
  return true;
}

// ---- inputs -----------------------------------------------------------------------------------

struct Inputs {
  std::vector<double> gate, up, dy;  // dense [rows x n], as the device holds them
};

// silu(g) and silu'(g) by the reference.
struct Silu {
  double value, slope;
};

Silu silu_at(double g) {
  const double one = 1.0;
  std::vector<double> slope, value;
  ref::swiglu_backward({&g, 1}, {&one, 1}, {&one, 1}, slope, value);
  return {value[0], slope[0]};
}

double slope_error(double g);

double one_value(double value, DType dtype) { return quantize({value}, dtype)[0]; }

// The inputs float cannot answer as double does (see the top of the file), made answerable.
void keep_answerable(const Spec& s, Inputs& in) {
  const DType up_dtype = s.in, dy_dtype = s.out;
  for (std::size_t i = 0; i < in.gate.size(); ++i) {
    const double g = in.gate[i];
    const Silu f = silu_at(g);
    const bool tiny_silu = f.value != 0 && std::fabs(f.value) < 0x1p-126;
    const bool unsure_slope =
        f.slope != 0 && (std::fabs(f.slope) < 0x1p-126 || std::fabs(f.slope) <= slope_error(g));
    double& up = in.up[i];
    double& dy = in.dy[i];
    if (!s.backward) {
      if (std::isinf(up) && tiny_silu) up = std::copysign(largest_finite(up_dtype), up);
      continue;
    }
    if (std::isinf(dy) && (tiny_silu || unsure_slope))
      dy = std::copysign(largest_finite(dy_dtype), dy);
    if (std::isinf(up) && unsure_slope) up = std::copysign(largest_finite(up_dtype), up);
    // Floats multiply exactly in double: the float product overflows where this rounds to inf.
    const double m = dy * up;
    if (std::isfinite(m) && std::isinf(static_cast<float>(m)))
      dy = one_value(std::copysign(kFloatMax / 2 / std::fabs(up), dy), dy_dtype);
  }
}

Inputs make_inputs(const Spec& s) {
  const auto count = static_cast<std::size_t>(s.rows * s.n);
  const std::uint64_t seed =
      seed_of("swiglu " + s.kind + (s.backward ? " backward " : " forward ") + shape_text(s) +
              dtype_text(s.in, s.out));
  Inputs in;
  in.gate = uniform(count, -6.0, 6.0, seed);
  in.up = uniform(count, -3.0, 3.0, seed + 1);
  in.dy = uniform(count, -2.0, 2.0, seed + 2);
  if (s.kind == "random") {
    // Planted at different periods in the three operands, so that they land in packs and in
    // partial ones, and meet one another in many pairings. gate: signed zeros, f32 and f16
    // subnormals, |g| >= 20 where sigmoid saturates, -120 where silu and its slope lie below
    // float's normal range, values that overflow f16, the infinities, NaN, and -1.28, near where
    // silu' crosses 0. up and dy: signed zeros, subnormals, values near f16's largest and beyond
    // float's square root (their product overflows float), the infinities, NaN.
    static const double kGate[] = {0.0,  -0.0,  1e-40, -1e-40, 3e-6,  -3e-6,  20.0,  -20.0,
                                   25.0, -25.0, 40.0,  -40.0,  120.0, -120.0, 1e20,  -1e20,
                                   kInf, -kInf, kNaN,  0.5,    -1.28, -0.75,  -13.0, 9.0};
    static const double kUp[] = {0.0,  -0.0,  1e-40, -1e-40, 3e-6, 6e4,  -6e4,
                                 1e20, -1e20, kInf,  -kInf,  kNaN, 1e-20};
    static const double kDy[] = {0.0, -0.0, 1e-40, 1e30, -kInf, 0.0, kInf, -1e30, 6e4};
    std::size_t k = 0;
    for (std::size_t i = 2; i < count; i += 11, ++k) in.gate[i] = kGate[k % std::size(kGate)];
    k = 0;
    for (std::size_t i = 4; i < count; i += 13, ++k) in.up[i] = kUp[k % std::size(kUp)];
    k = 0;
    for (std::size_t i = 6; i < count; i += 17, ++k) in.dy[i] = kDy[k % std::size(kDy)];
    if (count > 9) in.dy[9] = kNaN;
  } else if (s.kind == "tails") {
    // |gate| in [20, 120], where sigmoid saturates and silu and its slope live in their far
    // tails (below float's range on the left), and the infinities.
    const std::vector<double> magnitude = uniform(count, 20.0, 120.0, seed + 3);
    for (std::size_t i = 0; i < count; ++i) {
      in.gate[i] = (i % 2 == 0 ? 1.0 : -1.0) * magnitude[i];
      if (i % 97 == 5) in.gate[i] = i % 2 == 0 ? kInf : -kInf;
    }
  } else if (s.kind == "sweep") {
    // Every float binade as gate, as up and as dy, each in its own order.
    in.gate = sweep_values(count, seed + 4);
    in.up = sweep_values(count, seed + 5);
    in.dy = sweep_values(count, seed + 6);
  }
  in.gate = quantize(in.gate, s.in);
  in.up = quantize(in.up, s.in);
  in.dy = quantize(in.dy, s.out);
  keep_answerable(s, in);
  return in;
}

// ---- error bounds -----------------------------------------------------------------------------

// Of the kernel's silu(g) = g s(g).
double silu_error(double g) {
  if (std::isinf(g)) return 0;
  const PairError e = pair_error(g);
  const double p = ref::sigmoid(g);
  return finite_or_zero(std::fabs(g) * (e.pos_rel * kU * p + e.pos_abs) + kU * std::fabs(g * p) +
                        kSub);
}

// Of the kernel's silu'(g) = s(g) (1 + g s(-g)).
double slope_error(double g) {
  if (std::isinf(g)) return g > 0 ? 4 * kU : 0.0;
  const PairError e = pair_error(g);
  const double p = ref::sigmoid(g), q = ref::sigmoid(-g);
  const double t = g * q, v = 1 + t;
  const double err_t = std::fabs(t) * (e.neg_rel + 1) * kU + std::fabs(g) * e.neg_abs + kSub;
  const double err_v = err_t + kU * std::fabs(v);
  return finite_or_zero(std::fabs(v) * (e.pos_rel * kU * p + e.pos_abs) + p * err_v +
                        kU * std::fabs(p * v) + kSub);
}

// silu(g) times `other` (up for y, dy for d_up), for the value `result` the reference gives.
double product_error(double g, double other, double result) {
  return finite_or_zero(std::fabs(other) * silu_error(g) + kU * std::fabs(result) + kSub);
}

// (dy up) silu'(g), for the value `d_gate` the reference gives.
double d_gate_error(double g, double up, double dy, double d_gate) {
  const double m = std::fabs(dy * up);
  const double slope_err = slope_error(g);
  const double slope = std::fabs(silu_at(g).slope);
  return finite_or_zero((kU * m + kSub) * (slope + slope_err) + m * slope_err +
                        kU * std::fabs(d_gate) + kSub);
}

// ---- operands ---------------------------------------------------------------------------------

// Two [rows x n] operands of one dtype (gate and up, or d_gate and d_up): tensors of their own,
// or the two halves of one [rows x 2n] tensor whose row stride is 2n + pad, the second half n
// elements after the first.
class Pair {
 public:
  Pair() = default;
  static Pair upload(Device device, const std::vector<double>& first,
                     const std::vector<double>& second, const Spec& s, DType dtype, bool halves) {
    Pair p = shaped(s, dtype, halves);
    if (halves) {
      std::vector<double> joined(static_cast<std::size_t>(2 * s.rows * s.n));
      for (std::size_t r = 0; r < static_cast<std::size_t>(s.rows); ++r)
        for (std::size_t c = 0; c < static_cast<std::size_t>(s.n); ++c) {
          const std::size_t n = static_cast<std::size_t>(s.n);
          joined[r * 2 * n + c] = first[r * n + c];
          joined[r * 2 * n + n + c] = second[r * n + c];
        }
      p.whole_ =
          Tensor::upload(device, joined, s.rows, 2 * s.n, dtype, halves_stride(s), offset_for(s));
    } else {
      p.first_ = Tensor::upload(device, first, s.rows, s.n, dtype, 0, offset_for(s));
      p.second_ = Tensor::upload(device, second, s.rows, s.n, dtype, 0, offset_for(s));
    }
    return p;
  }
  static Pair poisoned(Device device, const Spec& s, DType dtype, bool halves) {
    Pair p = shaped(s, dtype, halves);
    if (halves) {
      p.whole_ = Tensor::poisoned(device, s.rows, 2 * s.n, dtype, halves_stride(s), offset_for(s));
    } else {
      p.first_ = Tensor::poisoned(device, s.rows, s.n, dtype, 0, offset_for(s));
      p.second_ = Tensor::poisoned(device, s.rows, s.n, dtype, 0, offset_for(s));
    }
    return p;
  }

  void* first() const { return halves_ ? whole_.data() : first_.data(); }
  void* second() const {
    if (!halves_) return second_.data();
    return whole_.data() == nullptr ? nullptr : whole_.as<std::uint8_t>() + n_ * dtype_size(dtype_);
  }
  std::int64_t stride() const { return halves_ ? whole_.stride() : n_; }
  std::vector<double> download_first() const { return halves_ ? half(0) : first_.download(); }
  std::vector<double> download_second() const { return halves_ ? half(1) : second_.download(); }
  bool padding_intact() const {
    return halves_ ? whole_.padding_intact() : first_.padding_intact() && second_.padding_intact();
  }

 private:
  static Pair shaped(const Spec& s, DType dtype, bool halves) {
    Pair p;
    p.halves_ = halves;
    p.rows_ = s.rows;
    p.n_ = s.n;
    p.dtype_ = dtype;
    return p;
  }
  std::vector<double> half(std::size_t which) const {
    const std::vector<double> all = whole_.download();
    const auto n = static_cast<std::size_t>(n_);
    std::vector<double> out(static_cast<std::size_t>(rows_) * n);
    for (std::size_t r = 0; r < static_cast<std::size_t>(rows_); ++r)
      for (std::size_t c = 0; c < n; ++c) out[r * n + c] = all[r * 2 * n + which * n + c];
    return out;
  }

  Tensor whole_, first_, second_;
  bool halves_ = false;
  std::int64_t rows_ = 0, n_ = 0;
  DType dtype_ = DType::f32;
};

// ---- running a case ---------------------------------------------------------------------------

void check_unchanged(Outcome& outcome, const std::string& name, const std::vector<double>& got,
                     const std::vector<double>& values, DType dtype) {
  outcome.checks.push_back(compare_exact(name + " (input)", got, values, dtype));
}

void check_pair_unchanged(Outcome& outcome, const Pair& gu, const Inputs& in, DType dtype) {
  check_unchanged(outcome, "gate", gu.download_first(), in.gate, dtype);
  check_unchanged(outcome, "up", gu.download_second(), in.up, dtype);
  outcome.checks.push_back(verdict("gate|up padding (input)", gu.padding_intact(),
                                   "bytes outside the elements were written"));
}

Outcome run_forward(const Spec& s, const Inputs& in) {
  const Device device = s.device;
  const Pair gu = Pair::upload(device, in.gate, in.up, s, s.in, halves_in(s));
  // y a tensor of its own, or the first half of a [rows x 2n] buffer: its second half is then
  // padding, which must stay as it was.
  const std::int64_t y_stride = s.layout == Layout::halves_out ? halves_stride(s) : 0;
  const Tensor own_y =
      s.in_place ? Tensor() : Tensor::poisoned(device, s.rows, s.n, s.out, y_stride, offset_for(s));

  SwigluForwardArgs args;
  args.n = s.n;
  args.rows = s.rows;
  args.gate = gu.first();
  args.gate_dtype = s.in;
  args.gate_row_stride = gu.stride();
  args.up = gu.second();
  args.up_dtype = s.in;
  args.up_row_stride = gu.stride();
  args.y = s.in_place ? (s.over_up ? gu.second() : gu.first()) : own_y.data();
  args.y_dtype = s.out;
  args.y_row_stride = s.in_place ? gu.stride() : own_y.stride();
  Outcome outcome;
  {
    const PointPathScope scope(s.path);
    const Exec exec = exec_for(device);
    outcome.error = finish(exec, swiglu_forward(args, exec));
  }
  if (!outcome.error.empty()) return outcome;

  const std::vector<double> expected = ref::swiglu_forward(in.gate, in.up);
  std::vector<double> err(expected.size());
  for (std::size_t i = 0; i < err.size(); ++i)
    err[i] = product_error(in.gate[i], in.up[i], expected[i]);
  if (!s.in_place) {
    outcome.checks.push_back(compare("y", own_y.download(), expected, s.out, err));
    outcome.checks.push_back(
        verdict("y padding", own_y.padding_intact(), "written outside the elements"));
    check_pair_unchanged(outcome, gu, in, s.in);
    return outcome;
  }
  const std::vector<double> y = s.over_up ? gu.download_second() : gu.download_first();
  outcome.checks.push_back(compare("y", y, expected, s.out, err));
  if (s.over_up)
    check_unchanged(outcome, "gate", gu.download_first(), in.gate, s.in);
  else
    check_unchanged(outcome, "up", gu.download_second(), in.up, s.in);
  outcome.checks.push_back(
      verdict("gate|up padding", gu.padding_intact(), "written outside the elements"));
  return outcome;
}

Outcome run_backward(const Spec& s, const Inputs& in) {
  const Device device = s.device;
  const Pair gu = Pair::upload(device, in.gate, in.up, s, s.in, halves_in(s));
  const Tensor dy = Tensor::upload(device, in.dy, s.rows, s.n, s.out, 0, offset_for(s));
  const Pair own_grads =
      s.in_place ? Pair() : Pair::poisoned(device, s, s.out, s.layout == Layout::halves_out);
  const Pair& grads = s.in_place ? gu : own_grads;

  SwigluBackwardArgs args;
  args.n = s.n;
  args.rows = s.rows;
  args.gate = gu.first();
  args.gate_dtype = s.in;
  args.gate_row_stride = gu.stride();
  args.up = gu.second();
  args.up_dtype = s.in;
  args.up_row_stride = gu.stride();
  args.dy = dy.data();
  args.dy_dtype = s.out;
  args.dy_row_stride = dy.stride();
  args.d_gate = grads.first();
  args.d_gate_dtype = s.out;
  args.d_gate_row_stride = grads.stride();
  args.d_up = grads.second();
  args.d_up_dtype = s.out;
  args.d_up_row_stride = grads.stride();
  Outcome outcome;
  {
    const PointPathScope scope(s.path);
    const Exec exec = exec_for(device);
    outcome.error = finish(exec, swiglu_backward(args, exec));
  }
  if (!outcome.error.empty()) return outcome;

  std::vector<double> d_gate, d_up;
  ref::swiglu_backward(in.gate, in.up, in.dy, d_gate, d_up);
  std::vector<double> gate_err(d_gate.size()), up_err(d_up.size());
  for (std::size_t i = 0; i < d_gate.size(); ++i) {
    gate_err[i] = d_gate_error(in.gate[i], in.up[i], in.dy[i], d_gate[i]);
    up_err[i] = product_error(in.gate[i], in.dy[i], d_up[i]);
  }
  outcome.checks.push_back(compare("d_gate", grads.download_first(), d_gate, s.out, gate_err));
  outcome.checks.push_back(compare("d_up", grads.download_second(), d_up, s.out, up_err));
  outcome.checks.push_back(
      verdict("d_gate|d_up padding", grads.padding_intact(), "written outside the elements"));
  if (!s.in_place) check_pair_unchanged(outcome, gu, in, s.in);
  check_unchanged(outcome, "dy", dy.download(), in.dy, s.out);
  outcome.checks.push_back(verdict("dy padding (input)", dy.padding_intact(),
                                   "bytes outside the elements were written"));
  return outcome;
}

Outcome run(const Spec& s) {
  const Inputs in = make_inputs(s);
  return s.backward ? run_backward(s, in) : run_forward(s, in);
}

// ---- the cases --------------------------------------------------------------------------------

class Builder {
 public:
  Builder(Device device, std::vector<Case>& cases) : device_(device), cases_(cases) {}
  void add(Spec s) {
    s.device = device_;
    if (device_ == Device::cpu) {
      s.path = PointPath::vector;
      s.misaligned = false;
    }
    Case c;
    c.device = device_;
    c.op = "swiglu";
    c.pass = s.backward ? "backward" : "forward";
    c.dtypes = dtype_text(s.in, s.out);
    c.shape = shape_text(s);
    c.inputs = s.kind;
    c.path = point_path_name(device_, s.path);
    if (device_ == Device::cuda && s.path == PointPath::vector && !sixteen_byte_layout(s))
      c.path = "scalar (layout)";
    c.run = [s] { return run(s); };
    // The lists of cases overlap where one rotates through what another enumerates: a case
    // already there is not added twice.
    if (!names_.insert(c.name()).second) return;
    cases_.push_back(std::move(c));
  }

 private:
  Device device_;
  std::vector<Case>& cases_;
  std::set<std::string> names_;
};

struct Dtypes {
  DType in, out;
};
// Same-dtype pairs, and two mixed ones (bf16 gate and up with f32 dy and outputs; f32 gate and up
// with bf16 dy and outputs).
constexpr Dtypes kDtypePairs[] = {{DType::f32, DType::f32},
                                  {DType::f16, DType::f16},
                                  {DType::bf16, DType::bf16},
                                  {DType::bf16, DType::f32},
                                  {DType::f32, DType::bf16}};
constexpr std::size_t kPairCount = std::size(kDtypePairs);
constexpr bool kPasses[] = {false, true};  // backward?

// Across the pack (8) and several blocks of 256 threads; 4096 +- 8 around a block's first step
// of two packs a thread (512 packs).
constexpr std::int64_t kAllSizes[] = {0, 1, 7, 8, 9, 33, 1000, 4088, 4099, 4104};
constexpr std::int64_t kSomeSizes[] = {7, 33, 4099};

// The projection layouts: rows x n halves with the row stride 2n + pad. One row (the launch is
// then not strided); one element a row (every pack partial); n = 36 (f32 halves aligned with a
// partial last pack a row, 16-bit halves unaligned); aligned halves and stride with padding
// between rows; long rows; odd n and pad (nothing aligned).
struct HalvesShape {
  std::int64_t rows, n, pad;
};
constexpr HalvesShape kHalvesShapes[] = {{1, 40, 0},  {4, 1, 0},    {7, 36, 0},
                                         {33, 40, 8}, {5, 1000, 0}, {9, 33, 3}};

Spec spec(bool backward, Dtypes d, std::int64_t n, PointPath path, const char* kind = "random") {
  Spec s;
  s.backward = backward;
  s.in = d.in;
  s.out = d.out;
  s.n = n;
  s.path = path;
  s.kind = kind;
  return s;
}

Spec halves_spec(bool backward, Dtypes d, HalvesShape shape, Layout layout, PointPath path,
                 const char* kind = "random") {
  Spec s = spec(backward, d, shape.n, path, kind);
  s.rows = shape.rows;
  s.pad = shape.pad;
  s.layout = layout;
  return s;
}

Spec in_place(Spec s, bool over_up) {
  s.in_place = true;
  s.over_up = !s.backward && over_up;
  if (s.layout == Layout::halves_out) s.layout = Layout::halves;  // the outputs are the inputs
  return s;
}

void cuda_full(Builder& b) {
  const PointPath aligned_and_not[] = {PointPath::vector, PointPath::scalar};
  // One row of n: every size in f32 and f16, the other pairs at a few, aligned and misaligned.
  for (bool backward : kPasses) {
    for (const Dtypes& d : {kDtypePairs[0], kDtypePairs[1]})
      for (std::int64_t n : kAllSizes)
        for (PointPath path : aligned_and_not) b.add(spec(backward, d, n, path));
    for (std::size_t k = 2; k < kPairCount; ++k)
      for (std::int64_t n : kSomeSizes)
        for (PointPath path : aligned_and_not) b.add(spec(backward, kDtypePairs[k], n, path));
  }

  // The projection's halves: every shape, dtype pair and output layout, aligned and misaligned.
  for (bool backward : kPasses)
    for (const Dtypes& d : kDtypePairs)
      for (const HalvesShape& shape : kHalvesShapes)
        for (Layout layout : {Layout::halves, Layout::halves_out})
          for (PointPath path : aligned_and_not)
            b.add(halves_spec(backward, d, shape, layout, path));

  // In place, in every same-dtype pair: over one row, and over the projection's halves.
  for (bool backward : kPasses)
    for (std::size_t k = 0; k < 3; ++k)
      for (PointPath path : aligned_and_not)
        for (bool over_up : {false, true}) {
          if (backward && over_up) continue;  // the backward has one in-place layout
          for (std::int64_t n : {std::int64_t{33}, std::int64_t{4099}})
            b.add(in_place(spec(backward, kDtypePairs[k], n, path), over_up));
          for (const HalvesShape& shape : {kHalvesShapes[2], kHalvesShapes[3]})
            b.add(in_place(halves_spec(backward, kDtypePairs[k], shape, Layout::halves, path),
                           over_up));
        }

  int i = 0;

  // The grid-stride loops: two blocks and one, so that every thread walks many packs, aligned
  // and not, dtype pairs cycling; one row (20483 misaligned still takes several steps and ends
  // in a ragged one), and the strided one-pack loop over 33 x 1000 halves.
  for (bool backward : kPasses)
    for (PointPath path : {PointPath::grid_stride, PointPath::one_block})
      for (bool misaligned : {false, true}) {
        Spec s = spec(backward, kDtypePairs[std::size_t(i++) % kPairCount],
                      misaligned ? 20483 : 65537, path);
        s.misaligned = misaligned;
        b.add(s);
        Spec h = halves_spec(backward, kDtypePairs[std::size_t(i++) % kPairCount], {33, 1000, 8},
                             misaligned ? Layout::halves : Layout::halves_out, path);
        h.misaligned = misaligned;
        b.add(h);
      }

  // Adversarial values on every path and dtype pair: every binade, the far tails; in one row
  // and in the halves.
  for (bool backward : kPasses)
    for (const Dtypes& d : kDtypePairs) {
      for (PointPath path : kPointPaths) b.add(spec(backward, d, 4099, path, "sweep"));
      b.add(spec(backward, d, 4099, kPointPaths[std::size_t(i++) % 3], "tails"));
      for (const char* kind : {"sweep", "tails"})
        b.add(halves_spec(backward, d, {5, 1000, 0}, Layout::halves_out,
                          kPointPaths[std::size_t(i++) % 3], kind));
    }
}

// The CPU path (and the kernels' quick and smoke checks): every pass, dtype pair and input kind,
// the halves and in place, the paths rotating; at full depth (the CPU) the sizes and shapes too.
void every_kind(Builder& b, Device device, Depth depth) {
  const std::vector<PointPath> paths = point_paths(device);
  const auto path_at = [&](int k) { return paths[std::size_t(k) % paths.size()]; };
  int i = 0;
  if (depth == Depth::smoke) {
    // Every pass and path, kinds and dtype pairs cycling; the projection's halves into halves,
    // and in place over them.
    for (bool backward : kPasses) {
      for (PointPath path : paths) {
        b.add(spec(backward, kDtypePairs[std::size_t(i) % kPairCount], 1000, path,
                   i % 2 ? "sweep" : "random"));
        ++i;
      }
      b.add(halves_spec(backward, kDtypePairs[std::size_t(i++) % kPairCount], {5, 1000, 0},
                        Layout::halves_out, paths.back()));
      b.add(in_place(
          halves_spec(backward, kDtypePairs[2], {33, 40, 8}, Layout::halves, paths.front()),
          false));
    }
    return;
  }
  for (bool backward : kPasses)
    for (const Dtypes& d : kDtypePairs)
      for (const char* kind : {"random", "tails", "sweep"}) {
        b.add(spec(backward, d, 4099, path_at(i), kind));
        ++i;
      }
  // The halves, each dtype pair in both output layouts on one shape, the shapes cycling.
  std::size_t next_shape = 0;
  for (bool backward : kPasses)
    for (const Dtypes& d : kDtypePairs) {
      for (Layout layout : {Layout::halves, Layout::halves_out}) {
        b.add(halves_spec(backward, d, kHalvesShapes[next_shape % std::size(kHalvesShapes)], layout,
                          path_at(i)));
        ++i;
      }
      ++next_shape;
    }
  // In place over one row and over the halves; the forward over gate and over up.
  for (bool backward : kPasses)
    for (bool over_up : {false, true}) {
      if (backward && over_up) continue;
      const Dtypes d = kDtypePairs[std::size_t(i) % 3];
      b.add(in_place(spec(backward, d, 33, path_at(i)), over_up));
      ++i;
      b.add(in_place(halves_spec(backward, d, {7, 36, 0}, Layout::halves, path_at(i)), over_up));
      ++i;
    }
  if (depth != Depth::full) return;
  // The CPU at full depth: every size (f32 and f16 alternating), every halves shape in both
  // output layouts and in place.
  for (bool backward : kPasses) {
    for (std::int64_t n : kAllSizes) {
      if (n == 4099) continue;
      b.add(spec(backward, kDtypePairs[std::size_t(i++) % 2], n, PointPath::vector));
    }
    for (const HalvesShape& shape : kHalvesShapes) {
      for (Layout layout : {Layout::halves, Layout::halves_out})
        b.add(halves_spec(backward, kDtypePairs[std::size_t(i++) % kPairCount], shape, layout,
                          PointPath::vector));
      b.add(in_place(halves_spec(backward, kDtypePairs[std::size_t(i) % 3], shape, Layout::halves,
                                 PointPath::vector),
                     i % 2 == 1));
      ++i;
    }
  }
}

}  // namespace

void add_swiglu_cases(Device device, Depth depth, std::vector<Case>& cases) {
  Builder builder(device, cases);
  if (device == Device::cuda && depth == Depth::full) {
    cuda_full(builder);
    return;
  }
  every_kind(builder, device, depth);
}

}  // namespace actloss::validation
