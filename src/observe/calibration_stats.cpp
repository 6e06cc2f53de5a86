// Calibration statistics files (calibration_stats.hpp; docs/FORMAT.md).
#include "monoquant/calibration_stats.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <utility>

#include "monoquant/error.hpp"
#include "observe/observer_base.hpp"

namespace monoquant {

namespace {

using observe::json;

constexpr const char* kFormat = "monoquant.calibration";
constexpr int kVersion = 1;
// A histogram channel is at most ~100 KB of JSON; this allows thousands.
constexpr std::size_t kMaxFileBytes = std::size_t{2} << 30;

std::string errno_text() { return std::strerror(errno); }

}  // namespace

const Observer* CalibrationStats::find(std::string_view module, std::string_view tensor) const {
  for (const auto& e : entries) {
    if (e.module == module && e.tensor == tensor) return e.observer.get();
  }
  return nullptr;
}

std::string calibration_to_json(const std::vector<CalibrationEntryView>& entries,
                                const std::map<std::string, std::string>& metadata) {
  json doc;
  doc["format"] = kFormat;
  doc["version"] = kVersion;
  json meta = json::object();
  for (const auto& [k, v] : metadata) meta[k] = v;
  doc["metadata"] = std::move(meta);
  json modules = json::object();
  std::set<std::pair<std::string, std::string>> seen;
  for (const auto& e : entries) {
    if (e.tensor.empty()) throw_invalid_argument("calibration entry for '" + e.module + "' has no tensor name");
    if (e.observer == nullptr) throw_invalid_argument("calibration entry '" + e.module + "' has no observer");
    if (!seen.emplace(e.module, e.tensor).second) {
      throw_invalid_argument("calibration entry '" + e.module + "' / '" + e.tensor + "' appears twice");
    }
    const auto* base = dynamic_cast<const observe::ObserverBase*>(e.observer);
    json state = base ? base->to_json() : json::parse(e.observer->save_state());
    modules[e.module][e.tensor] = std::move(state);
  }
  doc["modules"] = std::move(modules);
  return doc.dump();
}

CalibrationStats calibration_from_json(std::string_view text, const std::string& source) {
  json doc;
  try {
    doc = json::parse(text.begin(), text.end());
  } catch (const std::exception& e) {
    throw_format_error(source + ": not valid JSON (" + e.what() + ")");
  }
  if (!doc.is_object()) throw_format_error(source + ": a calibration file holds one JSON object");
  const auto fmt = doc.find("format");
  if (fmt == doc.end() || !fmt->is_string() || fmt->get<std::string>() != kFormat) {
    throw_format_error(source + ": not a monoquant calibration file ('format' is not \"" + kFormat + "\")");
  }
  const int64_t version = observe::read_int(doc, "version", source);
  if (version > kVersion) {
    throw_unsupported(source + ": calibration file version " + std::to_string(version) +
                      " is newer than this monoquant reads (" + std::to_string(kVersion) + "); upgrade monoquant");
  }
  if (version < 1) throw_format_error(source + ": bad calibration file version " + std::to_string(version));
  CalibrationStats stats;
  if (doc.contains("metadata")) {
    const json& meta = doc["metadata"];
    if (!meta.is_object()) throw_format_error(source + ": 'metadata' must be an object");
    for (const auto& [k, v] : meta.items()) {
      if (!v.is_string()) throw_format_error(source + ": metadata '" + k + "' must be a string");
      stats.metadata[k] = v.get<std::string>();
    }
  }
  const json& modules = observe::require(doc, "modules", source);
  if (!modules.is_object()) throw_format_error(source + ": 'modules' must be an object");
  for (const auto& [module, tensors] : modules.items()) {
    if (!tensors.is_object()) throw_format_error(source + ": module '" + module + "' must map tensor names to observers");
    for (const auto& [tensor, state] : tensors.items()) {
      CalibrationEntry e;
      e.module = module;
      e.tensor = tensor;
      e.observer = observe::observer_from_json(state, source + ": " + module + " / " + tensor);
      stats.entries.push_back(std::move(e));
    }
  }
  return stats;
}

void save_calibration(const std::string& path, const std::vector<CalibrationEntryView>& entries,
                      const std::map<std::string, std::string>& metadata) {
  const std::string text = calibration_to_json(entries, metadata);
  const std::string tmp = path + ".tmp" + std::to_string(::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw_io_error(path + ": cannot create " + tmp + ": " + errno_text());
  std::size_t done = 0;
  while (done < text.size()) {
    const ssize_t w = ::write(fd, text.data() + done, text.size() - done);
    if (w < 0) {
      if (errno == EINTR) continue;
      const std::string why = errno_text();
      ::close(fd);
      ::unlink(tmp.c_str());
      throw_io_error(path + ": write failed: " + why);
    }
    done += static_cast<std::size_t>(w);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    const std::string why = errno_text();
    ::unlink(tmp.c_str());
    throw_io_error(path + ": cannot flush to disk: " + why);
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string why = errno_text();
    ::unlink(tmp.c_str());
    throw_io_error(path + ": cannot rename " + tmp + " into place: " + why);
  }
}

CalibrationStats load_calibration(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) throw_io_error(path + ": cannot open: " + errno_text());
  if (!S_ISREG(st.st_mode)) throw_io_error(path + ": not a regular file");
  if (static_cast<std::size_t>(st.st_size) > kMaxFileBytes) {
    throw_format_error(path + ": " + std::to_string(st.st_size) + " bytes is too large for a calibration file");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) throw_io_error(path + ": cannot open: " + errno_text());
  std::ostringstream buf;
  buf << in.rdbuf();
  if (in.bad()) throw_io_error(path + ": read failed");
  return calibration_from_json(buf.str(), path);
}

}  // namespace monoquant
