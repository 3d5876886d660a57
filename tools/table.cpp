#include "tools/table.h"

#include <unistd.h>

#include <algorithm>
#include <cstdarg>
#include <utility>

namespace actloss::tool {

Table::Table(std::vector<Column> columns) : columns_(std::move(columns)) {}

void Table::add_row(std::vector<std::string> cells) {
  cells.resize(columns_.size());
  rows_.push_back(std::move(cells));
}

void Table::print(std::FILE* out) const {
  std::vector<std::size_t> width(columns_.size());
  for (std::size_t c = 0; c < columns_.size(); ++c) {
    width[c] = columns_[c].title.size();
    for (const auto& row : rows_) width[c] = std::max(width[c], row[c].size());
  }
  auto emit = [&](const std::vector<std::string>& cells) {
    std::string line;
    for (std::size_t c = 0; c < cells.size(); ++c) {
      const std::size_t pad = width[c] - cells[c].size();
      if (c > 0) line += "  ";
      if (columns_[c].align == Align::right) line.append(pad, ' ');
      line += cells[c];
      // No trailing blanks on the last column.
      if (columns_[c].align == Align::left && c + 1 < cells.size()) line.append(pad, ' ');
    }
    std::fprintf(out, "%s\n", line.c_str());
  };
  std::vector<std::string> titles;
  std::size_t total = 0;
  for (std::size_t c = 0; c < columns_.size(); ++c) {
    titles.push_back(columns_[c].title);
    total += width[c] + (c > 0 ? 2 : 0);
  }
  emit(titles);
  std::fprintf(out, "%s\n", std::string(total, '-').c_str());
  for (const auto& row : rows_) emit(row);
}

std::string format(const char* pattern, ...) {
  va_list args;
  va_start(args, pattern);
  va_list copy;
  va_copy(copy, args);
  const int size = std::vsnprintf(nullptr, 0, pattern, copy);
  va_end(copy);
  std::string text(static_cast<std::size_t>(std::max(size, 0)), '\0');
  std::vsnprintf(text.data(), text.size() + 1, pattern, args);
  va_end(args);
  return text;
}

Progress::Progress(std::size_t total) : total_(total), tty_(isatty(STDERR_FILENO) == 1) {}

Progress::~Progress() { finish(); }

void Progress::update(std::size_t done, const std::string& what) {
  if (!tty_) return;
  std::string line = format("[%zu/%zu] %s", done, total_, what.c_str());
  // Stay within one terminal line so that '\r' returns to its start.
  constexpr std::size_t kWidth = 79;
  if (line.size() > kWidth) line.resize(kWidth);
  std::fprintf(stderr, "\r%-79s", line.c_str());
  std::fflush(stderr);
  dirty_ = true;
}

void Progress::milestone(const std::string& line) {
  if (tty_) {
    if (dirty_) std::fprintf(stderr, "\r%79s\r", "");
    dirty_ = false;
  }
  std::fprintf(stderr, "%s\n", line.c_str());
}

void Progress::finish() {
  if (tty_ && dirty_) {
    std::fprintf(stderr, "\r%79s\r", "");
    std::fflush(stderr);
  }
  dirty_ = false;
}

}  // namespace actloss::tool
