// The CPU backend's settings from the environment (ACTLOSS_CPU_THREADS, ACTLOSS_CPU_SPIN_US,
// ACTLOSS_CPU_STREAM_MIB) are whole decimal numbers, each read by the same rule: a value that is
// not one, or is below the setting's least, counts as unset, so that a typo falls back to the
// default instead of meaning 0.
#pragma once

#include <cstdlib>
#include <optional>

namespace actloss::cpu {

// `text` as a whole decimal number of at least `least`, or nothing: null, empty, anything after
// the digits, or too small. Past long long's range it reads as the nearer bound; the callers cap
// their values well inside it.
inline std::optional<long long> whole_number_from_text(const char* text, long long least) {
  if (text == nullptr) return std::nullopt;
  char* end = nullptr;
  const long long value = std::strtoll(text, &end, 10);
  if (end == text || *end != '\0' || value < least) return std::nullopt;
  return value;
}

}  // namespace actloss::cpu
