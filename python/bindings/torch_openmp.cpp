// Shares the OpenMP runtime that torch's wheel has already loaded, so that
// the library's parallel loops run on torch's own worker threads (see
// monoquant/thread_pool.hpp for why). Nothing is linked at build time: the
// runtime is looked up among the objects already in the process, by the
// soname every libgomp carries, and used through its stable GOMP_4.0 entry
// points. Where no OpenMP runtime is loaded (torch built without it), the
// library keeps its own pool.
#include <dlfcn.h>
#include <link.h>

#include <cstring>
#include <string>

#include "monoquant/thread_pool.hpp"

namespace monoquant::python {
namespace {

using GompParallel = void (*)(void (*)(void*), void*, unsigned, unsigned);
using OmpInt = int (*)();

GompParallel g_gomp_parallel = nullptr;
OmpInt g_omp_get_max_threads = nullptr;
OmpInt g_omp_in_parallel = nullptr;
std::string g_path;

int max_threads() { return g_omp_get_max_threads(); }
bool in_parallel() { return g_omp_in_parallel() != 0; }
void run(void (*body)(void*), void* ctx, unsigned threads) { g_gomp_parallel(body, ctx, threads, 0); }

const ParallelRuntime kTorchOpenMp{"openmp (shared with torch)", max_threads, in_parallel, run};

// Every libgomp in the process; torch's own (under .../torch/lib/) is preferred
// over one another package may have brought.
int find_libgomp(dl_phdr_info* info, size_t, void* out) {
  const char* name = info->dlpi_name;
  auto& found = *static_cast<std::string*>(out);
  if (name && std::strstr(name, "libgomp")) {
    const bool torchs = std::strstr(name, "/torch/") != nullptr;
    if (found.empty() || torchs) found = name;
    if (torchs) return 1;
  }
  return 0;
}

}  // namespace

// Returns the path of the runtime now in use, or "" when none is loaded.
std::string share_openmp_runtime() {
  if (g_gomp_parallel) return g_path;
  std::string path;
  dl_iterate_phdr(find_libgomp, &path);
  if (path.empty()) return "";
  // RTLD_NOLOAD: a handle on the copy already mapped, never a second copy.
  void* lib = dlopen(path.c_str(), RTLD_NOW | RTLD_NOLOAD);
  if (!lib) return "";
  auto parallel = reinterpret_cast<GompParallel>(dlsym(lib, "GOMP_parallel"));
  auto get_max = reinterpret_cast<OmpInt>(dlsym(lib, "omp_get_max_threads"));
  auto in_par = reinterpret_cast<OmpInt>(dlsym(lib, "omp_in_parallel"));
  if (!parallel || !get_max || !in_par) return "";  // the handle stays: the library is torch's
  g_gomp_parallel = parallel;
  g_omp_get_max_threads = get_max;
  g_omp_in_parallel = in_par;
  g_path = path;
  set_parallel_runtime(&kTorchOpenMp);
  return g_path;
}

void use_own_pool() { set_parallel_runtime(nullptr); }

}  // namespace monoquant::python
