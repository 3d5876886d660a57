// Names kernels for abort messages. launch() only has the kernel's address;
// dladdr knows exported symbols only, so for kernels in an executable (the
// usual case) the ELF symbol table of the file is searched as well.
#include "engine.h"

#include <cxxabi.h>
#include <dlfcn.h>
#include <elf.h>
#include <fcntl.h>
#include <link.h>
#include <unistd.h>

#include <cstdlib>
#include <vector>

namespace simcuda::detail {
namespace {

std::string demangle(const char* name) {
  int status = 0;
  char* d = abi::__cxa_demangle(name, nullptr, nullptr, &status);
  if (status != 0 || d == nullptr) return name;
  std::string out(d);
  std::free(d);
  return out;
}

struct Object {
  std::string path;
  std::uintptr_t base = 0;
  bool found = false;
};

int find_object(dl_phdr_info* info, std::size_t, void* data) {
  auto* q = static_cast<std::pair<std::uintptr_t, Object>*>(data);
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    if (ph.p_type != PT_LOAD) continue;
    const std::uintptr_t lo = info->dlpi_addr + ph.p_vaddr;
    if (q->first >= lo && q->first < lo + ph.p_memsz) {
      // The main program is listed first, with an empty name.
      q->second.path = (info->dlpi_name && *info->dlpi_name) ? info->dlpi_name : "/proc/self/exe";
      q->second.base = info->dlpi_addr;
      q->second.found = true;
      return 1;
    }
  }
  return 0;
}

bool read_at(int fd, void* buf, std::size_t n, off_t off) {
  auto* p = static_cast<char*>(buf);
  while (n > 0) {
    const ssize_t r = pread(fd, p, n, off);
    if (r <= 0) return false;
    p += r;
    n -= static_cast<std::size_t>(r);
    off += r;
  }
  return true;
}

std::string from_symtab(const std::string& path, std::uintptr_t offset) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return {};
  std::string result;
  ElfW(Ehdr) eh;
  if (read_at(fd, &eh, sizeof eh, 0) && std::memcmp(eh.e_ident, ELFMAG, SELFMAG) == 0 &&
      eh.e_shentsize == sizeof(ElfW(Shdr))) {
    std::vector<ElfW(Shdr)> sh(eh.e_shnum);
    if (read_at(fd, sh.data(), sh.size() * sizeof(ElfW(Shdr)), static_cast<off_t>(eh.e_shoff))) {
      for (const auto& s : sh) {
        if ((s.sh_type != SHT_SYMTAB && s.sh_type != SHT_DYNSYM) || s.sh_link >= sh.size()) continue;
        std::vector<ElfW(Sym)> syms(s.sh_size / sizeof(ElfW(Sym)));
        if (!read_at(fd, syms.data(), syms.size() * sizeof(ElfW(Sym)), static_cast<off_t>(s.sh_offset)))
          continue;
        for (const auto& sym : syms) {
          if (ELF64_ST_TYPE(sym.st_info) != STT_FUNC || sym.st_value != offset) continue;
          const ElfW(Shdr)& strtab = sh[s.sh_link];
          if (sym.st_name >= strtab.sh_size) continue;
          std::string name(256, '\0');
          std::size_t got = 0;
          // Read the name in chunks until its terminator.
          while (true) {
            const std::size_t want = std::min<std::size_t>(256, strtab.sh_size - sym.st_name - got);
            if (want == 0) break;
            name.resize(got + want);
            if (!read_at(fd, name.data() + got, want, static_cast<off_t>(strtab.sh_offset + sym.st_name + got)))
              break;
            const std::size_t z = name.find('\0', got);
            got += want;
            if (z != std::string::npos) {
              name.resize(z);
              break;
            }
          }
          result = demangle(name.c_str());
          break;
        }
        if (!result.empty()) break;
      }
    }
  }
  close(fd);
  return result;
}

}  // namespace

std::string symbol_name(const void* fn) {
  Dl_info info{};
  if (dladdr(fn, &info) != 0 && info.dli_sname != nullptr && info.dli_saddr == fn) {
    return demangle(info.dli_sname);
  }
  std::pair<std::uintptr_t, Object> q{reinterpret_cast<std::uintptr_t>(fn), {}};
  dl_iterate_phdr(&find_object, &q);
  if (q.second.found) {
    std::string name = from_symtab(q.second.path, q.first - q.second.base);
    if (!name.empty()) return name;
  }
  char buf[40];
  std::snprintf(buf, sizeof buf, "kernel@%p", fn);
  return buf;
}

}  // namespace simcuda::detail
