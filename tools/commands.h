// The actloss tool's subcommands. Each returns the process exit status.
#pragma once

#include <string>
#include <vector>

#include <actloss/types.h>

namespace actloss::tool {

// How much of the case space a command covers.
enum class Depth {
  smoke,  // a sample of every op that still crosses every dispatch path: sanitizer builds
  quick,  // every op x pass x dtype x input kind once, paths in rotation: seconds
  full,   // every path x shape x input kind
};

struct CommonOptions {
  std::vector<Device> devices;  // resolved: never empty
  std::string op;               // "" = every op; else an op or activation name, or "activation"
  Depth depth = Depth::full;
};

// True when `name` passes the --op filter (`op_filter` empty, equal, or a family alias).
bool op_selected(const std::string& op_filter, const std::string& name);
// Whether --op names something known (for a helpful error rather than an empty table).
bool op_known(const std::string& op_filter);

int validate(const CommonOptions& options, bool failures_only);
int bench(const CommonOptions& options);
int info();
// Trains examples/train_mlp under several configurations on `device`; writes loss curves to
// `svg_path` when not empty.
int demo(bool quick, const std::string& svg_path, Device device);

}  // namespace actloss::tool
