// Small things every subcommand needs: paths, sizes, terminals, interrupts.
#pragma once

#include <cstdint>
#include <map>
#include <string>

namespace monoquant::cli {

// "5GB", "500MB", "2GiB", "1048576" -> bytes (throws invalid_argument).
uint64_t parse_size(const std::string& text);

bool is_directory(const std::string& path);
bool exists(const std::string& path);
// True when a and b name the same file or directory (b need not exist yet).
bool same_path(const std::string& a, const std::string& b);
std::string read_text(const std::string& path);  // throws io

// The files of a transformers model directory besides its weights that a
// quantized copy needs (tokenizer, generation and preprocessing configs), name -> contents.
std::map<std::string, std::string> companion_files(const std::string& dir);

// Progress goes to stderr: a rewritten line on a terminal (and not under CI),
// a line per step otherwise; nothing when quiet.
struct Progress {
  bool quiet = false;
  bool tty = false;
  Progress(bool quiet_);
  void step(std::size_t index, std::size_t count, const std::string& text);
  void done();
};

// SIGINT / SIGTERM set a flag that long loops poll (check_interrupted throws
// an io error), so that temporary files are dropped and the exit is clean; a
// second signal kills at once. SIGXFSZ (ulimit -f) is ignored so that the
// write fails with EFBIG and is reported.
void install_signal_handlers();
void check_interrupted();

}  // namespace monoquant::cli
