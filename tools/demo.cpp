// actloss demo: trains the MLP of examples/train_mlp under several configurations and shows two
// textbook effects with the library's own ops: softmax cross-entropy learns faster than sigmoid
// outputs + MSE (whose gradient fades as the sigmoid saturates), and deep sigmoid nets pass back
// vanishing gradients to their first layers where tanh and rectifiers do not. On the CPU by
// default; with --device cuda the same nets train on the GPU (cuBLAS matrix products, actloss's
// CUDA kernels), from the same seeds.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <actloss/actloss.h>

#include "examples/train_mlp/mlp.h"
#include "tools/commands.h"
#include "tools/table.h"

namespace actloss::tool {

namespace {

struct Run {
  std::string name;
  train_mlp::Config config;
  train_mlp::Result result;
};

struct Curves {
  std::string title;
  std::vector<const Run*> runs;
};

// Epoch ticks: 1, then multiples of a 1-2-5 step giving at most about six intervals.
std::vector<std::size_t> epoch_ticks(std::size_t epochs) {
  std::size_t step = 1;
  for (std::size_t scale = 1; (epochs - 1) / step > 6; scale *= 10) {
    for (std::size_t m : {1, 2, 5}) {
      step = m * scale;
      if ((epochs - 1) / step <= 6) break;
    }
  }
  std::vector<std::size_t> ticks{1};
  for (std::size_t e = step; e <= epochs; e += step)
    if (e > 1) ticks.push_back(e);
  return ticks;
}

// Loss ticks on the log axis [lo, hi] (decimal exponents): every decade; 2x and 5x of each when
// the range spans less than three decades; every multiple when it spans less than one.
std::vector<double> loss_ticks(double lo, double hi) {
  std::vector<double> ticks;
  const int first = static_cast<int>(std::floor(lo)), last = static_cast<int>(std::ceil(hi));
  const std::vector<double> multiples = hi - lo < 1.0   ? std::vector<double>{1, 2, 3, 4, 5, 6, 7, 8, 9}
                                        : hi - lo < 3.0 ? std::vector<double>{1, 2, 5}
                                                        : std::vector<double>{1};
  for (int d = first; d <= last; ++d)
    for (double m : multiples) {
      const double l = d + std::log10(m);
      if (l >= lo - 1e-9 && l <= hi + 1e-9) ticks.push_back(l);
    }
  return ticks;
}

// Panels two to a row, loss on a log axis against epoch: losses of CE and MSE differ by an
// order of magnitude, and a log axis keeps both readable. Every axis has ticks, labels and a
// light grid; each run has its own colour and dash pattern, so that curves which lie on top of
// each other (sigmoid and tanh early on) stay distinguishable.
std::string svg(const std::vector<Curves>& panels) {
  const double panel_w = 540, panel_h = 390, margin = 58, legend_w = 150;
  const std::size_t per_row = 2, grid_rows = (panels.size() + per_row - 1) / per_row;
  const double width = per_row * (panel_w + legend_w);
  static const char* const kColors[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728",
                                        "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                                        "#bcbd22", "#17becf", "#000000", "#aec7e8"};
  static const char* const kDashes[] = {"none", "7,3", "2,2", "9,3,2,3", "4,4", "12,4"};
  std::string out = format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
      "font-family=\"sans-serif\" font-size=\"11\">\n<rect width=\"100%%\" height=\"100%%\" "
      "fill=\"white\"/>\n",
      width, grid_rows * panel_h + 20);
  for (std::size_t p = 0; p < panels.size(); ++p) {
    const Curves& panel = panels[p];
    const double x0 = (p % per_row) * (panel_w + legend_w) + margin;
    const double y0 = (p / per_row) * panel_h + margin - 10;
    const double w = panel_w - 1.3 * margin, h = panel_h - 2 * margin;
    double lo = 1e30, hi = -1e30;
    std::size_t epochs = 1;
    for (const Run* run : panel.runs)
      for (float loss : run->result.loss_curve) {
        const double l = std::log10(std::max(static_cast<double>(loss), 1e-6));
        lo = std::min(lo, l);
        hi = std::max(hi, l);
        epochs = std::max(epochs, run->result.loss_curve.size());
      }
    if (!(hi > lo)) hi = lo + 1;
    const auto x_of = [&](double epoch) {
      return x0 + (epochs > 1 ? w * (epoch - 1) / static_cast<double>(epochs - 1) : 0.0);
    };
    const auto y_of = [&](double l) { return y0 + h * (hi - l) / (hi - lo); };
    out += format("<text x=\"%.0f\" y=\"%.0f\" font-size=\"13\">%s</text>\n", x0, y0 - 12,
                  panel.title.c_str());
    out += "<g class=\"loss-ticks\">\n";
    for (double l : loss_ticks(lo, hi)) {
      const double y = y_of(l);
      out += format("<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e3e3e3\"/>"
                    "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#666\"/>"
                    "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%.3g</text>\n",
                    x0, y, x0 + w, y, x0 - 4, y, x0, y, x0 - 6, y + 4, std::pow(10.0, l));
    }
    out += "</g>\n<g class=\"epoch-ticks\">\n";
    for (std::size_t e : epoch_ticks(epochs)) {
      const double x = x_of(static_cast<double>(e));
      out += format("<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e3e3e3\"/>"
                    "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#666\"/>"
                    "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%zu</text>\n",
                    x, y0, x, y0 + h, x, y0 + h, x, y0 + h + 4, x, y0 + h + 16, e);
    }
    out += "</g>\n";
    out += format(
        "<rect x=\"%.0f\" y=\"%.0f\" width=\"%.0f\" height=\"%.0f\" fill=\"none\" "
        "stroke=\"#999\"/>\n",
        x0, y0, w, h);
    out += format("<text class=\"axis-title\" x=\"%.0f\" y=\"%.0f\" text-anchor=\"middle\">"
                  "epoch</text>\n",
                  x0 + w / 2, y0 + h + 32);
    out += format("<text class=\"axis-title\" text-anchor=\"middle\" "
                  "transform=\"translate(%.0f,%.0f) rotate(-90)\">loss (log scale)</text>\n",
                  x0 - margin + 12, y0 + h / 2);
    for (std::size_t r = 0; r < panel.runs.size(); ++r) {
      const Run& run = *panel.runs[r];
      const char* color = kColors[r % (sizeof kColors / sizeof kColors[0])];
      const char* dash = kDashes[r % (sizeof kDashes / sizeof kDashes[0])];
      out += format("<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.6\" "
                    "stroke-dasharray=\"%s\" points=\"",
                    color, dash);
      const std::vector<float>& curve = run.result.loss_curve;
      for (std::size_t e = 0; e < curve.size(); ++e) {
        const double l = std::log10(std::max(static_cast<double>(curve[e]), 1e-6));
        out += format("%s%.1f,%.1f", e ? " " : "", x_of(static_cast<double>(e + 1)), y_of(l));
      }
      out += "\"/>\n";
      const double ly = y0 + 10 + 15 * r;
      out += format("<line x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\" stroke=\"%s\" "
                    "stroke-width=\"2\" stroke-dasharray=\"%s\"/>\n",
                    x0 + w + 10, ly - 4, x0 + w + 34, ly - 4, color, dash);
      out += format("<text x=\"%.0f\" y=\"%.0f\">%s</text>\n", x0 + w + 38, ly, run.name.c_str());
    }
  }
  out += "</svg>\n";
  return out;
}

}  // namespace

int demo(bool quick, const std::string& svg_path, Device device) {
  std::string where = "the CPU";
  if (device == Device::cuda) {
    std::string gpu;
    if (const Status s = train_mlp::cuda_device_name(gpu); !s.ok()) {
      std::fprintf(stderr, "actloss demo: --device cuda: %s\n", s.message().c_str());
      return 2;
    }
    where = gpu + " (cuBLAS matrix products)";
  }
  const train_mlp::Dataset data = train_mlp::make_spirals(500, 3);
  // Fixed budgets rather than stopping at the target, so that every configuration's final loss
  // and accuracy and its whole curve are comparable.
  const int loss_epochs = quick ? 60 : 200;
  const int depth_epochs = quick ? 40 : 120;
  const float target = 0.95f;

  std::vector<Run> loss_runs;
  for (train_mlp::Output output :
       {train_mlp::Output::softmax_cross_entropy, train_mlp::Output::sigmoid_mse}) {
    Run run;
    run.name = train_mlp::to_string(output);
    run.config.output = output;
    run.config.max_epochs = loss_epochs;
    run.config.target_accuracy = target;
    run.config.stop_at_target = false;
    run.config.device = device;
    loss_runs.push_back(std::move(run));
  }

  const int depths[] = {2, 6, 12};
  const Activation activations[] = {Activation::sigmoid, Activation::tanh, Activation::relu,
                                    Activation::gelu_tanh};
  std::vector<Run> depth_runs;
  for (int depth : depths)
    for (Activation activation : activations) {
      Run run;
      run.name = format("%s x%d", to_string(activation), depth);
      // Narrower than the example's net: 12 layers of 64 would cost 4x the time for the same
      // lesson.
      run.config.hidden.assign(static_cast<std::size_t>(depth), 32);
      run.config.activation = activation;
      // Momentum SGD at the example's rate (0.05) makes the 12-layer rectifier nets diverge.
      run.config.learning_rate = 0.02f;
      run.config.max_epochs = depth_epochs;
      run.config.target_accuracy = target;
      run.config.stop_at_target = false;
      run.config.device = device;
      depth_runs.push_back(std::move(run));
    }

  Progress progress(loss_runs.size() + depth_runs.size());
  std::size_t done = 0;
  for (std::vector<Run>* group : {&loss_runs, &depth_runs})
    for (Run& run : *group) {
      progress.update(done, run.name);
      run.result = train_mlp::train(run.config, data);
      if (!run.result.error.empty()) {
        progress.finish();
        std::fprintf(stderr, "actloss demo: %s: %s\n", run.name.c_str(),
                     run.result.error.c_str());
        return 1;
      }
      progress.update(++done, run.name);
    }
  progress.finish();

  std::printf("three interleaved spirals, %lld points; SGD (momentum 0.9, batch 32) on %s\n\n",
              static_cast<long long>(data.rows), where.c_str());
  std::printf("output and loss: 2 x 64 relu, lr 0.05, %d epochs\n", loss_epochs);
  Table losses({{"output+loss"},
                {format("steps to %.0f%%", 100.0 * target), Table::Align::right},
                {"final loss", Table::Align::right},
                {"accuracy", Table::Align::right}});
  for (const Run& run : loss_runs)
    losses.add_row({run.name,
                    run.result.steps_to_target < 0
                        ? format("> %lld", static_cast<long long>(run.result.steps))
                        : format("%lld", static_cast<long long>(run.result.steps_to_target)),
                    format("%.4f", run.result.final_loss),
                    format("%.1f%%", 100.0 * run.result.final_accuracy)});
  losses.print(stdout);

  std::printf("\ndepth and activation: hidden layers of 32, softmax+CE, lr 0.02, %d epochs\n",
              depth_epochs);
  Table grads({{"activation"},
               {"hidden", Table::Align::right},
               {"|dW first|", Table::Align::right},
               {"|dW last|", Table::Align::right},
               {"first/last", Table::Align::right},
               {"final loss", Table::Align::right},
               {"accuracy", Table::Align::right}});
  for (const Run& run : depth_runs) {
    const std::vector<double>& norms = run.result.first_grad_norms;
    grads.add_row({to_string(run.config.activation),
                   format("%zu", run.config.hidden.size()), format("%.3g", norms.front()),
                   format("%.3g", norms.back()),
                   format("%.3g", norms.back() > 0 ? norms.front() / norms.back() : 0.0),
                   format("%.4f", run.result.final_loss),
                   format("%.1f%%", 100.0 * run.result.final_accuracy)});
  }
  grads.print(stdout);
  std::printf("(|dW|: Frobenius norm of a layer's weight gradient at the first SGD step; first "
              "= input layer, last = output layer)\n");

  if (!svg_path.empty()) {
    // One panel per depth: twelve curves in one panel would be unreadable.
    std::vector<Curves> panels(1 + std::size(depths));
    panels[0].title = "softmax+CE vs sigmoid+MSE (2 x 64 relu)";
    for (const Run& run : loss_runs) panels[0].runs.push_back(&run);
    for (std::size_t d = 0; d < std::size(depths); ++d) {
      panels[d + 1].title = format("%d hidden layers of 32, by activation", depths[d]);
      for (const Run& run : depth_runs)
        if (run.config.hidden.size() == static_cast<std::size_t>(depths[d]))
          panels[d + 1].runs.push_back(&run);
    }
    std::ofstream file(svg_path);
    file << svg(panels);
    if (!file.flush()) {
      std::fprintf(stderr, "actloss demo: cannot write %s\n", svg_path.c_str());
      return 1;
    }
    std::printf("\nloss curves: %s\n", svg_path.c_str());
  }
  return 0;
}

}  // namespace actloss::tool
