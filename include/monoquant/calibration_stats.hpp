// Calibration statistics files: the observers of a calibration run, per
// module and tensor ("input", "output"), saved so that static quantization
// can run later (and from the CLI, without Python). The format is JSON and is
// described in docs/FORMAT.md ("Calibration statistics").
#pragma once

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "monoquant/observer.hpp"

namespace monoquant {

struct CalibrationEntry {
  std::string module;  // e.g. "encoder.layer.0.attention.self.query"
  std::string tensor;  // "input" or "output"
  std::unique_ptr<Observer> observer;
};

struct CalibrationStats {
  std::vector<CalibrationEntry> entries;
  std::map<std::string, std::string> metadata;  // free-form facts (sample count, tool versions)

  // nullptr when absent.
  const Observer* find(std::string_view module, std::string_view tensor) const;
};

// What save_calibration writes: borrowed observers.
struct CalibrationEntryView {
  std::string module;
  std::string tensor;
  const Observer* observer = nullptr;
};

std::string calibration_to_json(const std::vector<CalibrationEntryView>& entries,
                                const std::map<std::string, std::string>& metadata);
CalibrationStats calibration_from_json(std::string_view text, const std::string& source = "calibration file");

// Writes atomically (temporary file, fsync, rename). Throws io on failure and
// invalid_argument on an empty name or a duplicate (module, tensor).
void save_calibration(const std::string& path, const std::vector<CalibrationEntryView>& entries,
                      const std::map<std::string, std::string>& metadata = {});
// Throws io when the file cannot be read, format when it is not a valid
// calibration file (the message names the file), unsupported for a newer version.
CalibrationStats load_calibration(const std::string& path);

}  // namespace monoquant
