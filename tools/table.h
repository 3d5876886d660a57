// Aligned plain-text tables and the progress line, for the actloss tool's reports.
#pragma once

#include <cstddef>
#include <cstdio>
#include <string>
#include <vector>

namespace actloss::tool {

class Table {
 public:
  enum class Align { left, right };
  struct Column {
    std::string title;
    Align align = Align::left;
  };

  explicit Table(std::vector<Column> columns);
  void add_row(std::vector<std::string> cells);
  std::size_t rows() const { return rows_.size(); }
  // Header, a rule, then the rows; columns two spaces apart, every cell padded to its column.
  void print(std::FILE* out) const;

 private:
  std::vector<Column> columns_;
  std::vector<std::vector<std::string>> rows_;
};

// printf into a std::string.
std::string format(const char* pattern, ...) __attribute__((format(printf, 1, 2)));

// A one-line progress indicator on stderr. On a terminal the line is rewritten in place with
// '\r'; elsewhere (CI logs, pipes) only `milestone()` lines are printed, so logs stay readable.
class Progress {
 public:
  explicit Progress(std::size_t total);
  ~Progress();
  void update(std::size_t done, const std::string& what);
  void milestone(const std::string& line);
  void finish();

 private:
  std::size_t total_;
  bool tty_;
  bool dirty_ = false;
};

}  // namespace actloss::tool
