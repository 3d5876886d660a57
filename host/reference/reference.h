// actloss CPU reference ("oracle").
//
// Every kernel of the library is judged against the functions declared here,
// so they favour being obviously right over being fast: plain loops, float64
// arithmetic and accumulation, textbook numerically stable formulas. Nothing
// here depends on other project code, so a bug elsewhere cannot leak into the
// yardstick.
//
// Conventions shared by every function
// ------------------------------------
// * Arrays are dense and row-major; element (r, c) of a rows x cols array is
//   at r * cols + c. Sizes and indices are int64_t.
// * Arguments are NOT validated (sizes, probabilities, signs): that is the
//   callers' job, and an oracle that silently "fixes" bad input would hide
//   bugs. The one exception is a hard target index: an index outside
//   [0, classes) that is not ignore_index is never used to read memory; the
//   row comes out NaN instead (it is a caller's bug, made loud).
// * NaN in gives NaN out: a NaN anywhere in an operand makes the outputs that
//   mathematically depend on it NaN (a whole softmax row, a whole
//   cross-entropy row and everything reduced from it).
// * 0 * inf is taken as 0 where a coefficient of exactly zero multiplies an
//   infinite log-term (a target weight of zero on an impossible class costs
//   nothing, as in the limit q log q -> 0). NaN still propagates.
// * Reductions: `none` keeps one value per row (cross-entropy) or element
//   (BCE, MSE); `sum` adds them; `mean` divides the sum by the documented
//   denominator. A mean over a zero denominator is 0 with a zero gradient
//   (PyTorch gives NaN there; this library chooses 0 so that an empty or
//   fully ignored batch does not poison training).
// * upstream is the incoming gradient of the reduced loss: empty means 1; for
//   sum/mean it holds one value; for none one value per row (cross-entropy)
//   or per element (BCE, MSE). grad_scale multiplies every gradient as well.
//   The forward loss values never include upstream or grad_scale.
// * The reference must be built without -ffast-math (it relies on IEEE inf
//   and NaN semantics).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace actloss::ref {

// Own enum, deliberately independent of the public API's.
enum class Reduction { none, sum, mean };

// ---------------------------------------------------------------------------
// Scalar building blocks (exposed because kernel tests need the same stable
// definitions for spot checks).
// ---------------------------------------------------------------------------

// 1 / (1 + exp(-x)), evaluated so that exp never overflows: exactly 0 and 1
// at -inf and +inf, correct to a few ulp in both tails.
double sigmoid(double x);

// log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|)); never overflows, +inf at
// +inf, 0 at -inf, full relative accuracy in the left tail.
double softplus(double x);

// 1 - tanh(x)^2 written as 1 / cosh(x)^2, which keeps full relative accuracy
// where tanh(x) rounds to +-1 (|x| >~ 19); 0 at +-inf.
double sech_squared(double x);

// ---------------------------------------------------------------------------
// Cross-entropy over the last dimension, fused with optional softcap,
// label smoothing, class weights, ignore_index and z-loss.
//
// Notation for row i: x = logits row, C = classes, eps = label_smoothing,
// w_c = class_weight[c] (1 when class_weight is empty), z = z_loss.
//
// 1. Softcap (cap = softcap): x'_c = cap * tanh(x_c / cap) when cap > 0,
//    x'_c = x_c otherwise (0 means off; negative values are rejected by
//    callers). The gradient goes through dx'/dx = 1 - tanh^2(x / cap).
// 2. lse_i = log sum_c exp(x'_c), computed as m + log1p(rest) with
//    m = max_c x'_c (first argmax k) and rest = sum_{c != k} exp(x'_c - m);
//    log1p keeps small losses of confident rows relatively accurate.
//    Log-probabilities are formed as (x'_c - m) - log1p(rest), never as
//    x'_c - lse, so logits up to +-3e38 keep their exact finite answers (in
//    double, 3e38 - (-3e38) does not overflow).
//    A row whose logits are all -inf has lse = -inf, and by the same
//    convention as softmax_forward every class has probability 0 and
//    log-probability -inf. A +inf logit (without softcap) makes the row NaN,
//    as in PyTorch.
// 3. Each row's loss is a weighted sum of the per-class terms (lse - x'_c),
//        row_loss_i = sum_c a_c * (lse_i - x'_c) + z * lse_i^2,
//    with target coefficients a_c:
//    * hard targets, y = target_index[i]:
//        a_c = (1 - eps) * w_y * [c == y] + (eps / C) * w_c.
//      This is PyTorch's cross_entropy(weight, label_smoothing) per row.
//      Row i is ignored iff y == ignore_index: row_loss 0, gradient row 0, and
//      it counts nowhere (not in the sum, smoothing, z-loss or the mean's
//      denominator). y outside [0, C) and != ignore_index: the row's loss,
//      gradient and its weight in the denominator are NaN (caller's bug).
//    * soft targets, q = target_prob row: a_c = w_c * ((1 - eps) * q_c + eps/C).
//      ignore_index plays no part.
//    The z-loss term (PaLM) is not weighted. It is skipped when z == 0, so
//    it never turns an infinite lse into NaN.
//    A class with x'_c = -inf has probability exactly 0; if its a_c > 0 the
//    row loss is +inf (never NaN). For an all -inf row the loss is therefore
//    +inf when any a_c > 0 (or z > 0) and 0 otherwise.
// 4. Reduction: loss = sum_i row_loss_i for sum (and, informationally, for
//    none); mean divides by weight_sum, where
//      weight_sum = sum over non-ignored rows of w_{y_i}  (hard targets),
//      weight_sum = rows                                (soft targets, as
//                                                        PyTorch does for
//                                                        probability targets).
//    weight_sum is reported for every reduction. Under mean, weight_sum == 0
//    (no non-ignored row, or all their weights zero) gives loss 0 and an
//    all-zero gradient.
// 5. Gradient. With p = softmax(x') and A = sum_c a_c,
//      d row_loss_i / d x'_c = A * p_c - a_c + 2 * z * lse_i * p_c,
//    where a factor p_c == 0 makes its terms exactly 0 (so a masked class
//    gets exactly -a_c, and an all -inf row gets -a). grad = that times
//    upstream (per row for none, the scalar otherwise) times grad_scale,
//    divided by weight_sum for mean, times dx'/dx for softcap.
// ---------------------------------------------------------------------------
struct CrossEntropyProblem {
  int64_t rows = 0, classes = 0;          // classes >= 1 expected
  std::vector<double> logits;             // rows * classes
  bool soft_targets = false;
  std::vector<int64_t> target_index;      // rows (hard targets)
  std::vector<double> target_prob;        // rows * classes (soft targets)
  std::vector<double> class_weight;       // empty = all ones, else classes
  int64_t ignore_index = -100;            // hard targets only
  double label_smoothing = 0, z_loss = 0, softcap = 0;
  Reduction reduction = Reduction::mean;
  double grad_scale = 1;                  // multiplies the gradient
  std::vector<double> upstream;           // empty = 1; 1 for sum/mean, rows for none
};

struct CrossEntropyResult {
  std::vector<double> row_loss;  // rows; before reduction, 0 for ignored rows
  std::vector<double> lse;       // rows; logsumexp of the (softcapped) logits,
                                 // also for ignored rows
  std::vector<double> max;       // rows; m = the largest non-NaN x'_c (-inf
                                 // when there is none)
  std::vector<double> log_sum;   // rows; log1p(rest) = lse - m (-inf for an all
                                 // -inf row, NaN for a NaN or +inf row)
  double loss = 0;               // sum or mean (none: sum of row_loss)
  double weight_sum = 0;         // mean's denominator (see 4. above)
  std::vector<double> grad;      // rows * classes (see 5. above)
};

CrossEntropyResult cross_entropy(const CrossEntropyProblem& problem);

// The gradient of cross_entropy(problem), but with probabilities taken as
// p_c = exp((x'_c - max[i]) - log_sum[i]) from saved row statistics instead
// of recomputed, the way a backward pass works. max[i] == -inf (an all -inf
// row) gives p = 0. Given the forward's max and log_sum (rounded to float,
// as an API user saves them; with max rounded, log_sum should absorb the
// rounding, lse - float(max)), this equals cross_entropy(problem).grad up to
// the rounding of the saved values, also for logits up to +-3e38, which an
// lse alone cannot give: x' - lse loses log(sum) below half an ulp of lse.
std::vector<double> cross_entropy_backward(const CrossEntropyProblem& problem,
                                           std::span<const double> max,
                                           std::span<const double> log_sum);

// Token accuracy. predicted_classes: for each of `rows` rows of `cols` values, the first index
// of the largest, a NaN counting as larger than any number (torch.argmax). token_accuracy: the
// fraction of rows whose target is not ignore_index and equals the predicted class; 0 when no
// row counts; NaN when a counted target is outside [0, classes).
std::vector<std::int64_t> predicted_classes(int64_t rows, int64_t cols,
                                            std::span<const double> values);
double token_accuracy(std::span<const std::int64_t> predicted,
                      std::span<const std::int64_t> targets, std::int64_t ignore_index,
                      std::int64_t classes);

// ---------------------------------------------------------------------------
// Linear layer, y = x w^T + b, with x [rows x in], w [out x in], b [out]
// (empty: no bias), y [rows x out]; plain double sums in index order.
// linear_backward gives, for an upstream dy [rows x out]:
//   d_input = dy w [rows x in], d_weight = dy^T x [out x in],
//   d_bias = the column sums of dy [out].
// The fused linear cross-entropy is judged against this followed by
// cross_entropy and linear_backward of its gradient.
// ---------------------------------------------------------------------------
std::vector<double> linear_forward(int64_t rows, int64_t in, int64_t out,
                                   std::span<const double> x, std::span<const double> w,
                                   std::span<const double> b);

struct LinearGradients {
  std::vector<double> d_input, d_weight, d_bias;
};

LinearGradients linear_backward(int64_t rows, int64_t in, int64_t out,
                                std::span<const double> x, std::span<const double> w,
                                std::span<const double> dy);

// ---------------------------------------------------------------------------
// Binary cross-entropy with logits (PyTorch's BCEWithLogitsLoss).
//
// For element e = (r, c): x = logits[e], y = targets[e],
// pw = pos_weight[c] (1 if empty), w = weight[e] (1 if empty):
//   loss_e = w * [ pw * y * softplus(-x) + (1 - y) * softplus(x) ]
// which equals PyTorch's w * [ (1 - y) * x + l * softplus(-x) ] with
// l = 1 + (pw - 1) * y, but adds two non-negative terms (for y in [0, 1],
// pw >= 0) instead of cancelling (1 - y) * x against softplus(-x): at
// x = -120, y = 0 this form gives exp(-120) where the other gives 0.
// Gradient: d loss_e / dx = w * [ (1 - y) * sigmoid(x) - pw * y * sigmoid(-x) ]
// (equal to w * [ (1 - y) - l * sigmoid(-x) ]).
// The 0 * inf = 0 convention applies to the coefficients pw * y, (1 - y) and
// w, so x = -inf with y = 0 (or x = +inf with y = 1) costs 0, while x = +inf
// with y = 0 costs +inf.
// mean divides by rows * cols (as PyTorch); rows * cols == 0 gives 0.
// upstream for none is per element (rows * cols).
// ---------------------------------------------------------------------------
struct BceProblem {
  int64_t rows = 0, cols = 0;
  std::vector<double> logits, targets;    // rows * cols each
  std::vector<double> pos_weight;         // cols or empty
  std::vector<double> weight;             // rows * cols or empty
  Reduction reduction = Reduction::mean;
  double grad_scale = 1;
  std::vector<double> upstream;           // empty = 1; 1 for sum/mean, rows*cols for none
};

struct BceResult {
  std::vector<double> elem_loss;  // rows * cols, before reduction
  double loss = 0;                // sum or mean (none: sum of elem_loss)
  std::vector<double> grad;       // rows * cols
};

BceResult bce_with_logits(const BceProblem& problem);

// ---------------------------------------------------------------------------
// Pointwise activations.
//
//   relu        x > 0 ? x : 0              f'(x) = x > 0 ? 1 : 0   (f'(0) = 0)
//   leaky_relu  x > 0 ? x : alpha * x      f'(x) = x > 0 ? 1 : alpha (f'(0) = alpha)
//   tanh        std::tanh(x)               f' = 1 - tanh^2 = 1 / cosh^2
//   sigmoid     sigmoid(x) above           f' = sigmoid(x) * sigmoid(-x)
//   gelu_erf    x * Phi(x) = 0.5 * x * erfc(-x / sqrt 2)
//               f' = Phi(x) + x * phi(x)
//               (erfc rather than 1 + erf: no cancellation for x << 0, so
//               x = -40 gives 0, not NaN or rounding noise)
//   gelu_tanh   0.5 * x * (1 + tanh(u)), u = sqrt(2/pi) * (x + 0.044715 x^3),
//               evaluated as x * sigmoid(2u) (same value, no cancellation)
//               f' = sigmoid(2u) + 2 x sigmoid(2u) sigmoid(-2u) u'(x)
//   silu        x * sigmoid(x)             f' = sigmoid(x) * (1 + x * sigmoid(-x))
//
// Backward functions return dx = dy * f'. A NaN x (or y) has derivative NaN,
// so dx is NaN there even where PyTorch's masked backward would give 0; a
// NaN dy gives NaN too. Infinite inputs give the limits, also where the
// formula would form inf * 0: gelu_* and silu are 0 at -inf and +inf at
// +inf, with slopes 0 and 1 (PyTorch gives NaN at -inf).
//
// activation_backward_from_output works from the saved output y and supports
// relu, leaky_relu, tanh (1 - y^2) and sigmoid (y * (1 - y)) only; for
// gelu_erf, gelu_tanh and silu (not invertible) it returns all NaN.
// leaky_relu needs alpha > 0 to recover sign(x) from y; for alpha <= 0 it
// uses y > 0 as the "x > 0" test, which is exact for alpha == 0 and wrong
// for x < 0 when alpha < 0 (callers must not save outputs in that case).
// ---------------------------------------------------------------------------
enum class Activation { relu, leaky_relu, tanh, sigmoid, gelu_erf, gelu_tanh, silu };

std::vector<double> activation_forward(Activation act, std::span<const double> x,
                                       double alpha);
std::vector<double> activation_backward_from_input(Activation act,
                                                   std::span<const double> x,
                                                   std::span<const double> dy,
                                                   double alpha);
std::vector<double> activation_backward_from_output(Activation act,
                                                    std::span<const double> y,
                                                    std::span<const double> dy,
                                                    double alpha);

// SwiGLU: y = silu(gate) * up; d_gate = dy * up * silu'(gate), d_up = dy * silu(gate), with
// silu's limits above.
std::vector<double> swiglu_forward(std::span<const double> gate, std::span<const double> up);
void swiglu_backward(std::span<const double> gate, std::span<const double> up,
                     std::span<const double> dy, std::vector<double>& d_gate,
                     std::vector<double>& d_up);

// ---------------------------------------------------------------------------
// Softmax / log-softmax over the last dimension of a rows x cols array.
//
// Forward: m = row max (first argmax k), rest = sum_{c != k} exp(x_c - m);
// softmax = exp(x - m) / (1 + rest), log_softmax = (x - m) - log1p(rest).
// * A row that is all -inf gives softmax all 0 and log_softmax all -inf,
//   never NaN (PyTorch gives NaN).
// * A +inf entry makes the row NaN, as PyTorch. A NaN entry makes the row NaN.
// Backward from the saved output y:
//   softmax:     dx = y * (dy - sum_j dy_j * y_j)
//   log_softmax: dx = dy - exp(y) * sum_j dy_j
// For an all -inf row this gives dx = 0 (softmax) and dx = dy (log_softmax,
// since exp(-inf) = 0).
// ---------------------------------------------------------------------------
std::vector<double> softmax_forward(int64_t rows, int64_t cols,
                                    std::span<const double> x, bool log);
std::vector<double> softmax_backward(int64_t rows, int64_t cols,
                                     std::span<const double> y,
                                     std::span<const double> dy, bool log);

// ---------------------------------------------------------------------------
// Mean squared error: loss_e = (input_e - target_e)^2,
// d loss_e / d input_e = 2 * (input_e - target_e).
// mean divides by n; n == 0 under mean gives 0 (PyTorch gives NaN).
// upstream for none is per element (n).
// ---------------------------------------------------------------------------
struct MseProblem {
  int64_t n = 0;
  std::vector<double> input, target;      // n each
  Reduction reduction = Reduction::mean;
  double grad_scale = 1;
  std::vector<double> upstream;           // empty = 1; 1 for sum/mean, n for none
};

struct MseResult {
  std::vector<double> elem_loss;  // n, before reduction
  double loss = 0;                // sum or mean (none: sum of elem_loss)
  std::vector<double> grad;       // n
};

MseResult mse(const MseProblem& problem);

}  // namespace actloss::ref
