// MinMaxObserver: the running min and max of everything observed (the
// common statistics of ObserverBase are all it needs).
#include "observe/observer_base.hpp"

namespace monoquant::observe {
namespace {

class MinMaxObserver final : public ObserverBase {
 public:
  explicit MinMaxObserver(const ObserverOptions& options) : ObserverBase("minmax", options) {
    keep_options(false, false, false, false);
  }

 protected:
  std::unique_ptr<ObserverBase> copy() const override { return std::make_unique<MinMaxObserver>(*this); }
  void on_resize(int64_t) override {}
  void on_batch(const ChannelBatch&, const BatchStats&) override {}
  void on_merge(const ObserverBase&) override {}
  Range channel_range(int64_t c, int, Scheme) const override {
    return {min_[static_cast<std::size_t>(c)], max_[static_cast<std::size_t>(c)]};
  }
  void write_options(json&) const override {}
  void write_channel(int64_t, json&) const override {}
  void read_channel(int64_t, const json&, const std::string&) override {}
};

}  // namespace

std::unique_ptr<ObserverBase> make_minmax_observer(const ObserverOptions& options) {
  return std::make_unique<MinMaxObserver>(options);
}

}  // namespace monoquant::observe
