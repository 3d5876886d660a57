// Optional convenience for code that prefers exceptions: wraps a Status into actloss::Error.
// Nothing in the library throws; only code that includes this header and calls check() does.
#pragma once

#include <stdexcept>

#include <actloss/types.h>

namespace actloss {

class Error : public std::runtime_error {
 public:
  explicit Error(Status status)
      : std::runtime_error(status.message()), status_(std::move(status)) {}
  const Status& status() const { return status_; }

 private:
  Status status_;
};

// Usage: actloss::check(actloss::cross_entropy_forward(args, options, exec));
inline void check(Status status) {
  if (!status.ok()) throw Error(std::move(status));
}

}  // namespace actloss
