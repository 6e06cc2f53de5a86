#include "cli/common.hpp"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "monoquant/error.hpp"

namespace monoquant::cli {
namespace {

std::atomic<int> g_signal{0};

void on_signal(int sig) {
  g_signal.store(sig);
  std::signal(sig, SIG_DFL);  // a second one ends the process
}

bool real_path(const std::string& p, std::string& out) {
  char buf[PATH_MAX];
  if (!::realpath(p.c_str(), buf)) return false;
  out = buf;
  return true;
}

}  // namespace

uint64_t parse_size(const std::string& text) {
  std::size_t i = 0;
  while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.')) ++i;
  if (i == 0) throw_invalid_argument("size '" + text + "' must start with a number (e.g. 5GB, 500MB, 2GiB)");
  double value = 0;
  try {
    value = std::stod(text.substr(0, i));
  } catch (...) {
    throw_invalid_argument("size '" + text + "' is not a number");
  }
  std::string unit = text.substr(i);
  for (char& c : unit) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  const std::map<std::string, double> units = {{"", 1},    {"B", 1},          {"KB", 1e3},        {"MB", 1e6},
                                               {"GB", 1e9}, {"TB", 1e12},      {"KIB", 1024.0},    {"MIB", 1048576.0},
                                               {"GIB", 1073741824.0}, {"TIB", 1099511627776.0}};
  const auto it = units.find(unit);
  if (it == units.end()) throw_invalid_argument("size '" + text + "': unknown unit (B, KB, MB, GB, KiB, MiB, GiB)");
  const double bytes = value * it->second;
  if (!(bytes >= 1) || bytes > 1.8e19) throw_invalid_argument("size '" + text + "' is out of range");
  return static_cast<uint64_t>(bytes);
}

bool is_directory(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

bool exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

bool same_path(const std::string& a, const std::string& b) {
  std::string ra, rb;
  if (!real_path(a, ra)) return false;
  if (!real_path(b, rb)) {
    // b does not exist yet: compare its parent.
    const auto slash = b.find_last_of('/');
    const std::string parent = slash == std::string::npos ? "." : (slash == 0 ? "/" : b.substr(0, slash));
    std::string rp;
    if (!real_path(parent, rp)) return false;
    rb = rp + "/" + b.substr(slash == std::string::npos ? 0 : slash + 1);
  }
  if (ra == rb) return true;
  return false;
}

std::string read_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw_io_error(path + ": cannot open");
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

std::map<std::string, std::string> companion_files(const std::string& dir) {
  std::map<std::string, std::string> out;
  DIR* d = ::opendir(dir.c_str());
  if (!d) return out;
  while (const dirent* e = ::readdir(d)) {
    const std::string n = e->d_name;
    const bool wanted = n.rfind("tokenizer", 0) == 0 || n == "special_tokens_map.json" || n == "vocab.txt" ||
                        n == "vocab.json" || n == "merges.txt" || n == "added_tokens.json" ||
                        n == "generation_config.json" || n == "preprocessor_config.json" || n == "chat_template.jinja" ||
                        n == "spiece.model" || n == "sentencepiece.bpe.model";
    const std::string path = dir + "/" + n;
    if (wanted && !is_directory(path)) out[n] = read_text(path);
  }
  ::closedir(d);
  return out;
}

Progress::Progress(bool quiet_) : quiet(quiet_) {
  const char* ci = std::getenv("CI");
  tty = ::isatty(2) && !(ci && *ci);
}

void Progress::step(std::size_t index, std::size_t count, const std::string& text) {
  if (quiet) return;
  if (tty) {
    const int width = 30;
    const int filled = count ? static_cast<int>(width * (index + 1) / count) : width;
    std::fprintf(stderr, "\r[%s%s] %zu/%zu %-60.60s", std::string(filled, '#').c_str(),
                 std::string(width - filled, ' ').c_str(), index + 1, count, text.c_str());
  } else {
    std::fprintf(stderr, "[%zu/%zu] %s\n", index + 1, count, text.c_str());
  }
  std::fflush(stderr);
}

void Progress::done() {
  if (!quiet && tty) std::fprintf(stderr, "\r%*s\r", 100, "");
}

void install_signal_handlers() {
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  std::signal(SIGXFSZ, SIG_IGN);
}

void check_interrupted() {
  if (const int sig = g_signal.load()) {
    throw_io_error(std::string("interrupted by ") + (sig == SIGINT ? "SIGINT" : "SIGTERM") +
                   "; nothing was written");
  }
}

}  // namespace monoquant::cli
