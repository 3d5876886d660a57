// MSE cases: every pass, reduction and dtype combination, sizes across the 8-element pack, the
// vector, scalar and grid-stride paths, upstream gradients, and adversarial inputs (every float
// binade in pairs, differences beyond float's range, a large first term among many tiny ones).
//
// Error bounds (validation/tolerance.h), per element with d = x - t:
//  * loss d^2: the difference and the square each rounded once: 2 roundings of d^2.
//  * sum / mean: every element's bound, plus the float sum of each 8-element pack (7 roundings
//    of the pack's terms); packs go into double, then a fixed-order double reduction.
//  * gradient 2 d grad_scale / n upstream: the difference, grad_scale / n (rounded from double),
//    the upstream product and the final product: 4 roundings. The halving that keeps a
//    difference beyond float's range finite is exact.
#include <cmath>
#include <limits>
#include <string>

#include "validation/paths.h"
#include "validation/tensors.h"
#include "validation/tolerance.h"

namespace actloss::validation {
namespace {

struct Spec {
  Device device = Device::cpu;
  Pass pass = Pass::forward;
  Reduction reduction = Reduction::mean;
  DType input = DType::f32, target = DType::f32, grad = DType::f32;
  std::int64_t n = 0;
  PointPath path = PointPath::vector;
  bool misaligned = false;  // a base one element off on the grid-stride paths as well
  bool upstream = false;
  bool loss = true;  // forward_backward: the loss is optional there
  float grad_scale = 0.75f;
  std::string kind = "random";
};

struct Inputs {
  std::vector<double> input, target, upstream;  // as the device holds them
};

Inputs make_inputs(const Spec& s) {
  const auto n = static_cast<std::size_t>(s.n);
  const std::uint64_t seed =
      seed_of("mse " + s.kind + std::to_string(s.n) + to_string(s.input) + to_string(s.target));
  Inputs in;
  in.input = uniform(n, -4.0, 4.0, seed);
  in.target = uniform(n, -4.0, 4.0, seed + 1);
  if (s.kind == "random") {
    // Signed zeros, subnormals, values near f16's largest, and targets equal to inputs.
    static const double kSpecials[] = {0.0, -0.0, 1e-40, -1e-40, 3e-6, 6e4, -6e4, 1e-3, 2.5};
    std::size_t k = 0;
    for (std::size_t i = 2; i < n; i += 7, ++k) in.input[i] = kSpecials[k % std::size(kSpecials)];
    for (std::size_t i = 5; i < n; i += 13) in.target[i] = in.input[i];
  } else if (s.kind == "sweep") {
    // Every binade as input and as target, in every pairing the shuffles make, and the pairs
    // (+-3e38, -+3e38) whose difference overflows float while the gradient does not.
    in.input = sweep_values(n, seed + 2);
    in.target = sweep_values(n, seed + 3);
    for (std::size_t i = 0; i + 1 < n; i += 97) {
      in.input[i] = i % 2 ? 3e38 : -3e38;
      in.target[i] = -in.input[i];
    }
  } else if (s.kind == "large difference") {
    // Differences near and beyond float's range: squares overflow, means and gradients need not.
    const double big = s.input == DType::f16 ? 3e4 : 1.7e38;
    in.input = uniform(n, -big, big, seed + 2);
    in.target = uniform(n, -big, big, seed + 3);
  } else if (s.kind == "large first") {
    // One large term, then many tiny ones: a float accumulator would lose every tiny pack
    // (1e6 + 0.02 is 1e6 in float); the sum must keep them.
    for (std::size_t i = 0; i < n; ++i) {
      in.input[i] = i == 0 ? 1e3 : 0.05;
      in.target[i] = 0.0;
    }
  }
  in.input = quantize(in.input, s.input);
  in.target = quantize(in.target, s.target);
  in.upstream = quantize(uniform(s.reduction == Reduction::none ? n : 1, -2.0, 2.0, seed + 4),
                         DType::f32);
  return in;
}

Status call(Pass pass, const MseArgs& args, Reduction reduction, const Exec& exec) {
  const MseOptions options{reduction};
  switch (pass) {
    case Pass::forward: return mse_forward(args, options, exec);
    case Pass::backward: return mse_backward(args, options, exec);
    case Pass::forward_backward: return mse_forward_backward(args, options, exec);
  }
  return Status(StatusCode::internal, "", "bad pass");
}

Outcome run(const Spec& s) {
  const Device device = s.device;
  const bool per_element = s.reduction == Reduction::none;
  const bool wants_loss = s.pass == Pass::forward || (s.pass == Pass::forward_backward && s.loss);
  const bool wants_grad = s.pass != Pass::forward;
  const std::int64_t offset = s.misaligned ? 1 : offset_of(s.path);
  const Inputs in = make_inputs(s);

  const Tensor input = Tensor::upload(device, in.input, 1, s.n, s.input, 0, offset);
  const Tensor target = Tensor::upload(device, in.target, 1, s.n, s.target, 0, offset);
  const std::int64_t loss_count = per_element ? s.n : 1;
  const Tensor loss = Tensor::poisoned(device, 1, loss_count, DType::f32, 0, offset);
  const Tensor grad = Tensor::poisoned(device, 1, s.n, s.grad, 0, offset);
  const Tensor upstream = Tensor::upload(device, in.upstream, 1,
                                         static_cast<std::int64_t>(in.upstream.size()),
                                         DType::f32, 0, offset);
  MseArgs args;
  args.n = s.n;
  args.input = input.data();
  args.input_dtype = s.input;
  args.target = target.data();
  args.target_dtype = s.target;
  if (wants_loss) args.loss = loss.as<float>();
  if (wants_grad) {
    args.grad = grad.data();
    args.grad_dtype = s.grad;
    args.grad_scale = s.grad_scale;
    if (s.upstream) args.upstream_grad = upstream.as<float>();
  }
  Outcome outcome;
  {
    const PointPathScope scope(s.path);
    const Exec exec = exec_for(device);
    outcome.error = finish(exec, call(s.pass, args, s.reduction, exec));
  }
  if (!outcome.error.empty()) return outcome;

  ref::MseProblem problem;
  problem.n = s.n;
  problem.input = in.input;
  problem.target = in.target;
  problem.reduction = to_ref(s.reduction);
  problem.grad_scale = s.grad_scale;
  if (s.upstream) problem.upstream = in.upstream;
  const ref::MseResult expected = ref::mse(problem);

  std::vector<double> loss_error(static_cast<std::size_t>(s.n)), grad_error(loss_error.size());
  double sum_error = 0;
  for (std::size_t i = 0; i < loss_error.size(); ++i) {
    const double l = expected.elem_loss[i];
    loss_error[i] = std::isfinite(l) ? 2 * kU * l : 0.0;
    sum_error += std::isfinite(l) ? 9 * kU * l : 0.0;
    const double g = expected.grad[i];
    grad_error[i] = std::isfinite(g) ? 4 * kU * std::fabs(g) : 0.0;
  }
  if (s.reduction == Reduction::mean && s.n > 0) sum_error /= static_cast<double>(s.n);

  if (!wants_loss) {
    outcome.checks.push_back(verdict("loss", loss.untouched(), "written although not asked for"));
  } else if (per_element) {
    outcome.checks.push_back(compare("loss", loss.download(), expected.elem_loss, DType::f32, loss_error));
  } else {
    outcome.checks.push_back(compare("loss", loss.download(), {expected.loss}, DType::f32, {sum_error}));
  }
  outcome.checks.push_back(verdict("loss padding", loss.padding_intact(), "written past the end"));
  if (wants_grad) {
    outcome.checks.push_back(compare("grad", grad.download(), expected.grad, s.grad, grad_error));
    outcome.checks.push_back(verdict("grad padding", grad.padding_intact(), "written past the end"));
  } else {
    outcome.checks.push_back(verdict("grad", grad.untouched(), "written although not asked for"));
  }
  return outcome;
}

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
    c.op = "mse";
    c.pass = to_string(s.pass);
    c.dtypes = s.input == s.target ? dtype_text(s.input, s.grad)
                                   : std::string(actloss::to_string(s.input)) + "/" +
                                         actloss::to_string(s.target) + "->" +
                                         actloss::to_string(s.grad);
    c.shape = std::to_string(s.n);
    if (s.misaligned && s.path != PointPath::scalar) c.shape += " offset 1";
    c.inputs = s.kind + " " + actloss::to_string(s.reduction) + (s.upstream ? " upstream" : "") +
               (s.pass == Pass::forward_backward && !s.loss ? " no-loss" : "");
    c.path = point_path_name(device_, s.path);
    c.run = [s] { return run(s); };
    cases_.push_back(std::move(c));
  }

 private:
  Device device_;
  std::vector<Case>& cases_;
};

struct Dtypes {
  DType input, target, grad;
};
constexpr Dtypes kDtypeSets[] = {{DType::f32, DType::f32, DType::f32},
                                 {DType::f16, DType::f16, DType::f16},
                                 {DType::bf16, DType::bf16, DType::bf16},
                                 {DType::f16, DType::f32, DType::bf16}};

// Across the 8-element pack and several blocks of 256 threads; 4096 +- 8 around a block's first
// step of two packs a thread (512 packs).
constexpr std::int64_t kAllSizes[] = {0, 1, 3, 4, 5, 31, 32, 33, 1000, 4088, 4099, 4104, 65537};
constexpr std::int64_t kSomeSizes[] = {5, 33, 4099};

}  // namespace

void add_mse_cases(Device device, Depth depth, std::vector<Case>& cases) {
  Builder b(device, cases);
  const bool full = depth == Depth::full;
  const std::vector<PointPath> paths = point_paths(device);
  int i = 0;
  // Every pass, reduction and size in f32 (full); every dtype set at a few sizes.
  if (full) {
    for (Pass pass : kPasses)
      for (Reduction reduction : kReductions)
        for (std::int64_t n : kAllSizes)
          for (PointPath path : paths) {
            Spec s;
            s.pass = pass;
            s.reduction = reduction;
            s.n = n;
            s.path = path;
            s.upstream = (n + i++) % 2 == 0;
            b.add(s);
          }
  }
  for (const Dtypes& d : kDtypeSets)
    for (Pass pass : kPasses)
      for (Reduction reduction : kReductions) {
        if (full && d.input == DType::f32 && d.grad == DType::f32) continue;  // covered above
        const std::vector<std::int64_t> sizes =
            full ? std::vector<std::int64_t>(std::begin(kSomeSizes), std::end(kSomeSizes))
                 : std::vector<std::int64_t>{4099};
        for (std::int64_t n : sizes) {
          if (!full && reduction != kReductions[i % 3]) continue;
          Spec s;
          s.pass = pass;
          s.reduction = reduction;
          s.input = d.input;
          s.target = d.target;
          s.grad = d.grad;
          s.n = n;
          s.path = paths[std::size_t(i) % paths.size()];
          s.upstream = i % 2 == 0;
          s.loss = n != 33;
          b.add(s);
          ++i;
        }
      }
  if (depth == Depth::smoke) return;
  // The grid-stride loops on a misaligned base (element by element): several steps, the last
  // ragged, every pass and dtype set.
  if (device == Device::cuda && full)
    for (const Dtypes& d : kDtypeSets)
      for (Pass pass : kPasses)
        for (PointPath path : {PointPath::grid_stride, PointPath::one_block}) {
          Spec s;
          s.pass = pass;
          s.reduction = kReductions[i % 3];
          s.input = d.input;
          s.target = d.target;
          s.grad = d.grad;
          s.n = 20483;
          s.path = path;
          s.misaligned = true;
          s.upstream = i % 2 == 0;
          b.add(s);
          ++i;
        }
  // Adversarial inputs on every path and dtype set, every pass.
  for (const Dtypes& d : kDtypeSets)
    for (const char* kind : {"sweep", "large difference"})
      for (Pass pass : kPasses)
        for (PointPath path : paths) {
          if (!full && path != paths[std::size_t(i) % paths.size()]) continue;
          Spec s;
          s.kind = kind;
          s.pass = pass;
          s.reduction = kReductions[i % 3];
          s.input = d.input;
          s.target = d.target;
          s.grad = d.grad;
          s.n = 4099;
          s.path = path;
          s.upstream = i % 2 == 0;
          b.add(s);
          ++i;
        }
  // The accumulator: one large term and 2^18 tiny ones, summed by one block (128 packs for its
  // first thread, each below half an ulp of the large term in float).
  for (Reduction reduction : {Reduction::sum, Reduction::mean}) {
    Spec s;
    s.kind = "large first";
    s.reduction = reduction;
    s.n = (1 << 18) + 1;
    s.path = device == Device::cpu ? PointPath::vector : PointPath::one_block;
    b.add(s);
  }
}

}  // namespace actloss::validation
