// The checkpoint pipeline without Python: plan rules and their reasons, the
// streaming writer (any write order, shards, nothing visible before commit),
// the compressed-tensors layout of each scheme, and a whole quantize run read
// back with the safetensors reader and the decompressor (dequantize as the
// oracle) and checked against the quantizer called directly.
#include <gtest/gtest.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <functional>
#include <cmath>
#include <cstring>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "monoquant/error.hpp"
#include "monoquant/io/compressed_tensors.hpp"
#include "monoquant/io/reader.hpp"
#include "monoquant/io/safetensors.hpp"
#include "monoquant/io/stream_writer.hpp"
#include "monoquant/pipeline/compressed_layout.hpp"
#include "monoquant/pipeline/model_metadata.hpp"
#include "monoquant/pipeline/plan.hpp"
#include "monoquant/pipeline/quantize_checkpoint.hpp"
#include "monoquant/quantize.hpp"
#include "monoquant/weight_quantizer.hpp"
#include "test_util.hpp"

using namespace monoquant;
using namespace monoquant::pipeline;
using io::FileDType;

namespace {

std::string temp_path(const std::string& name) {
  return ::testing::TempDir() + "/mq_pipe_" + std::to_string(::getpid()) + "_" + name;
}

std::set<std::string> files_in(const std::string& dir) {
  std::set<std::string> out;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (const dirent* e = ::readdir(d)) {
      const std::string n = e->d_name;
      if (n != "." && n != "..") out.insert(n);
    }
    ::closedir(d);
  }
  return out;
}

bool exists(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0;
}

std::string expect_error(const std::function<void()>& f, ErrorKind kind) {
  try {
    f();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), kind) << e.what();
    return e.what();
  }
  ADD_FAILURE() << "expected an error";
  return "";
}

std::vector<TensorInfo> bert_like() {
  return {
      {"embeddings.word_embeddings.weight", FileDType::f32, {1000, 64}, std::nullopt},
      {"embeddings.LayerNorm.weight", FileDType::f32, {64}, std::nullopt},
      {"encoder.layer.0.attention.self.query.weight", FileDType::f32, {64, 64}, std::nullopt},
      {"encoder.layer.0.attention.self.query.bias", FileDType::f32, {64}, std::nullopt},
      {"encoder.layer.0.intermediate.dense.weight", FileDType::f32, {256, 64}, std::nullopt},
      {"encoder.layer.0.output.dense.weight", FileDType::f32, {64, 256}, std::nullopt},
      {"conv.weight", FileDType::f32, {16, 8, 3, 3}, std::nullopt},
      {"tiny.weight", FileDType::f32, {4, 64}, std::nullopt},
      {"lm_head.weight", FileDType::f32, {1000, 64}, std::nullopt},
      {"position_ids", FileDType::i64, {1, 512}, std::nullopt},
  };
}

const PlanEntry& entry(const Plan& p, const std::string& tensor) {
  for (const auto& e : p.entries) {
    if (e.tensor == tensor) return e;
  }
  throw std::runtime_error("no entry " + tensor);
}

LayerScheme int4_scheme(int64_t g = 32) {
  LayerScheme s;
  s.format = WeightFormat::int4;
  s.mode = LinearMode::weight_only;
  s.group_size = g;
  return s;
}

}  // namespace

TEST(PipelinePlan, RolesFromNamesAndShapes) {
  EXPECT_EQ(role_from_name("a.b.weight", {4, 8}, FileDType::f32), TensorRole::linear_weight);
  EXPECT_EQ(role_from_name("a.b.weight", {4, 8}, FileDType::bf16), TensorRole::linear_weight);
  EXPECT_EQ(role_from_name("conv.weight", {4, 8, 3, 3}, FileDType::f32), TensorRole::conv_weight);
  EXPECT_EQ(role_from_name("conv1d.weight", {4, 8, 3}, FileDType::f32), TensorRole::conv_weight);
  EXPECT_EQ(role_from_name("model.embed_tokens.weight", {100, 8}, FileDType::f32), TensorRole::embedding);
  EXPECT_EQ(role_from_name("transformer.wte.weight", {100, 8}, FileDType::f32), TensorRole::embedding);
  EXPECT_EQ(role_from_name("lm_head.weight", {100, 8}, FileDType::f32), TensorRole::output_head);
  EXPECT_EQ(role_from_name("x.LayerNorm.weight", {8}, FileDType::f32), TensorRole::norm);
  EXPECT_EQ(role_from_name("h.0.ln_1.weight", {8}, FileDType::f32), TensorRole::norm);
  EXPECT_EQ(role_from_name("x.dense.bias", {8}, FileDType::f32), TensorRole::bias);
  EXPECT_EQ(role_from_name("scale", {8}, FileDType::f32), TensorRole::vector);
  EXPECT_EQ(role_from_name("position_ids", {1, 8}, FileDType::i64), TensorRole::other);
  EXPECT_EQ(role_from_name("q.weight", {8, 8}, FileDType::f8_e4m3), TensorRole::other);  // passed through
}

TEST(PipelinePlan, Int8DefaultsQuantizeMatricesAndKeepTheRestWithReasons) {
  PlanRules r;  // int8 dynamic
  const Plan p = make_plan(bert_like(), r);
  ASSERT_EQ(p.entries.size(), bert_like().size());
  EXPECT_TRUE(entry(p, "encoder.layer.0.attention.self.query.weight").quantize);
  EXPECT_EQ(entry(p, "encoder.layer.0.attention.self.query.weight").scheme.label(), "W8A8-dynamic");
  EXPECT_TRUE(entry(p, "conv.weight").quantize);
  EXPECT_TRUE(entry(p, "tiny.weight").quantize);  // the 512-parameter minimum is an INT4 default
  EXPECT_FALSE(entry(p, "lm_head.weight").quantize);
  EXPECT_NE(entry(p, "lm_head.weight").reason.find("output head"), std::string::npos);
  EXPECT_FALSE(entry(p, "embeddings.word_embeddings.weight").quantize);
  EXPECT_NE(entry(p, "embeddings.word_embeddings.weight").reason.find("embedding"), std::string::npos);
  EXPECT_NE(entry(p, "embeddings.LayerNorm.weight").reason.find("norm"), std::string::npos);
  EXPECT_NE(entry(p, "encoder.layer.0.attention.self.query.bias").reason.find("bias"), std::string::npos);
  EXPECT_NE(entry(p, "position_ids").reason.find("not floating"), std::string::npos);
}

TEST(PipelinePlan, Int4DefaultsMinParamsGroupsAndEmbeddingsOnRequest) {
  PlanRules r;
  r.scheme = int4_scheme(32);
  Plan p = make_plan(bert_like(), r);
  EXPECT_FALSE(entry(p, "tiny.weight").quantize);  // 256 parameters < 512
  EXPECT_NE(entry(p, "tiny.weight").reason.find("--min-params 512"), std::string::npos);
  EXPECT_FALSE(entry(p, "conv.weight").quantize);  // K = 72 is not a multiple of 32: kept (group size not explicit)
  EXPECT_NE(entry(p, "conv.weight").reason.find("K = 72"), std::string::npos);
  r.explicit_group_size = true;
  const std::string msg = expect_error([&] { make_plan(bert_like(), r); }, ErrorKind::invalid_argument);
  EXPECT_NE(msg.find("conv.weight"), std::string::npos) << msg;
  EXPECT_NE(msg.find("--group-size 24"), std::string::npos) << msg;  // the largest multiple of 8 dividing 72, <= 32
  r.explicit_group_size = false;
  r.min_params = 0;
  r.quantize_embeddings = true;
  p = make_plan(bert_like(), r);
  EXPECT_TRUE(entry(p, "tiny.weight").quantize);
  const PlanEntry& emb = entry(p, "embeddings.word_embeddings.weight");
  EXPECT_TRUE(emb.quantize);
  EXPECT_EQ(emb.scheme.mode, LinearMode::weight_only);  // looked up, not multiplied
  r.include = {"lm_head"};
  p = make_plan(bert_like(), r);
  EXPECT_TRUE(entry(p, "lm_head.weight").quantize);
  ASSERT_FALSE(p.warnings.empty());
  EXPECT_NE(p.warnings[0].find("sensitive tensor 'lm_head.weight'"), std::string::npos);
}

TEST(PipelinePlan, SkipOnlyOverrideRules) {
  PlanRules r;
  r.skip = {"re:.*intermediate.*", "conv"};
  Plan p = make_plan(bert_like(), r);
  EXPECT_FALSE(entry(p, "encoder.layer.0.intermediate.dense.weight").quantize);
  EXPECT_NE(entry(p, "encoder.layer.0.intermediate.dense.weight").reason.find("matches --skip 're:.*intermediate.*'"),
            std::string::npos);
  EXPECT_EQ(entry(p, "conv.weight").reason, "named in --skip");
  EXPECT_TRUE(entry(p, "encoder.layer.0.output.dense.weight").quantize);

  r = PlanRules{};
  r.only = {"re:.*output.*", "lm_head"};
  p = make_plan(bert_like(), r);
  EXPECT_TRUE(entry(p, "encoder.layer.0.output.dense.weight").quantize);
  EXPECT_TRUE(entry(p, "lm_head.weight").quantize);  // named in --only: the default is waived
  EXPECT_FALSE(entry(p, "encoder.layer.0.attention.self.query.weight").quantize);
  EXPECT_EQ(entry(p, "encoder.layer.0.attention.self.query.weight").reason, "not matched by --only");

  r = PlanRules{};
  r.scheme = int4_scheme(64);
  r.overrides = {parse_override("re:.*intermediate.*=8"), parse_override("re:.*output.*=16")};
  p = make_plan(bert_like(), r);
  EXPECT_EQ(entry(p, "encoder.layer.0.intermediate.dense.weight").scheme.label(), "W8A16");
  EXPECT_EQ(entry(p, "encoder.layer.0.output.dense.weight").scheme.label(), "FP16");
  EXPECT_EQ(entry(p, "encoder.layer.0.attention.self.query.weight").scheme.label(), "W4A16-g64");

  r = PlanRules{};
  r.skip = {"re:nothing_matches_this"};
  p = make_plan(bert_like(), r);
  ASSERT_EQ(p.notes.size(), 1u);
  EXPECT_NE(p.notes[0].find("matched nothing"), std::string::npos);
}

TEST(PipelinePlan, BadRulesAreErrorsThatNameThem) {
  PlanRules r;
  r.skip = {"encoder.layer.0.attention.self.qery"};
  std::string msg = expect_error([&] { make_plan(bert_like(), r); }, ErrorKind::invalid_argument);
  EXPECT_NE(msg.find("no module or tensor named 'encoder.layer.0.attention.self.qery'"), std::string::npos) << msg;
  r.skip = {"query"};
  msg = expect_error([&] { make_plan(bert_like(), r); }, ErrorKind::invalid_argument);
  EXPECT_NE(msg.find("did you mean"), std::string::npos) << msg;
  r.skip = {"re:([unclosed"};
  msg = expect_error([&] { make_plan(bert_like(), r); }, ErrorKind::invalid_argument);
  EXPECT_NE(msg.find("not a valid regular expression"), std::string::npos) << msg;
  expect_error([] { parse_override("re:.*=5"); }, ErrorKind::invalid_argument);
  expect_error([] { parse_override("no-equals"); }, ErrorKind::invalid_argument);
  PlanRules bad;
  bad.scheme = int4_scheme(12);
  expect_error([&] { make_plan(bert_like(), bad); }, ErrorKind::invalid_argument);
}

// 7-bit weights: the scheme's int8_bits round-trips through the metadata, an
// embedding keeps 8 bits, and a recorded width other than 7 or 8 is a broken file.
TEST(PipelinePlan, SevenBitWeights) {
  PlanRules r;
  r.scheme.int8_bits = 7;
  r.quantize_embeddings = true;
  bool embedding = false, linear = false;
  for (const auto& e : make_plan(bert_like(), r).entries) {
    if (!e.quantize) continue;
    if (e.role == TensorRole::embedding) {
      embedding = true;
      EXPECT_EQ(e.scheme.label(), "W8A16") << e.tensor;
    } else {
      linear = true;
      EXPECT_EQ(e.scheme.label(), "W7A8-dynamic") << e.tensor;
    }
  }
  EXPECT_TRUE(embedding && linear);
  const LayerScheme back = scheme_from_json(scheme_to_json(r.scheme));
  EXPECT_EQ(back.int8_bits, 7);
  EXPECT_EQ(back.label(), "W7A8-dynamic");
  const std::string msg =
      expect_error([] { scheme_from_json(R"({"format":"int8","mode":"dynamic","int8_bits":9})"); }, ErrorKind::format);
  EXPECT_NE(msg.find("int8_bits 9"), std::string::npos) << msg;
  LayerScheme wo;
  wo.mode = LinearMode::weight_only;
  wo.int8_bits = 7;
  expect_error([&] { wo.validate(); }, ErrorKind::invalid_argument);
}

TEST(PipelinePlan, StaticUsesCalibrationAndFallsBackToDynamic) {
  PlanRules r;
  r.scheme.mode = LinearMode::static_int8;
  r.scheme.act_symmetric = false;
  r.activations["encoder.layer.0.attention.self.query"] = {0.05f, -3};
  const Plan p = make_plan(bert_like(), r);
  const PlanEntry& q = entry(p, "encoder.layer.0.attention.self.query.weight");
  EXPECT_EQ(q.scheme.mode, LinearMode::static_int8);
  EXPECT_FLOAT_EQ(q.activation.scale, 0.05f);
  EXPECT_EQ(q.activation.zero_point, -3);
  EXPECT_EQ(entry(p, "encoder.layer.0.output.dense.weight").scheme.mode, LinearMode::dynamic_int8);
  EXPECT_FALSE(p.warnings.empty());
}

TEST(StreamWriter, AnyWriteOrderGivesTheReferenceLayout) {
  std::vector<io::TensorSpec> specs = {{"b", FileDType::f32, {3, 2}}, {"a", FileDType::i8, {5}},
                                       {"c", FileDType::i64, {2}}, {"empty", FileDType::f16, {0, 4}}};
  const std::vector<float> b = {1, 2, 3, 4, 5, 6};
  const std::vector<int8_t> a = {-1, 2, -3, 4, -5};
  const std::vector<int64_t> c = {7, -8};
  const std::string path = temp_path("order.safetensors");
  {
    io::CheckpointStreamWriter w(path, io::OutputKind::safetensors, specs, {{"note", "x"}});
    w.write(2, c.data(), 16);
    w.write(3, nullptr, 0);
    w.write(0, b.data(), 24);
    EXPECT_FALSE(exists(path));  // nothing visible before commit
    w.write(1, a.data(), 5);
    expect_error([&] { w.write(1, a.data(), 5); }, ErrorKind::invalid_argument);  // twice
    w.commit();
  }
  const io::Checkpoint ck = io::read_safetensors(path);
  ASSERT_EQ(ck.tensors.size(), 4u);
  EXPECT_EQ(ck.metadata.at("format"), "pt");
  EXPECT_EQ(ck.metadata.at("note"), "x");
  EXPECT_EQ(0, std::memcmp(ck.find("b")->data(), b.data(), 24));
  EXPECT_EQ(0, std::memcmp(ck.find("a")->data(), a.data(), 5));
  EXPECT_EQ(0, std::memcmp(ck.find("c")->data(), c.data(), 16));
  // The same bytes as the in-memory writer (which follows the reference writer's order).
  std::vector<io::TensorToWrite> mem = {{"b", FileDType::f32, {3, 2}, reinterpret_cast<const std::byte*>(b.data())},
                                        {"a", FileDType::i8, {5}, reinterpret_cast<const std::byte*>(a.data())},
                                        {"c", FileDType::i64, {2}, reinterpret_cast<const std::byte*>(c.data())},
                                        {"empty", FileDType::f16, {0, 4}, nullptr}};
  const std::string ref = temp_path("order_ref.safetensors");
  io::write_safetensors(ref, mem, {{"note", "x"}, {"format", "pt"}});
  std::ifstream f1(path, std::ios::binary), f2(ref, std::ios::binary);
  const std::string s1((std::istreambuf_iterator<char>(f1)), {}), s2((std::istreambuf_iterator<char>(f2)), {});
  EXPECT_EQ(s1, s2);
  std::remove(path.c_str());
  std::remove(ref.c_str());
}

TEST(StreamWriter, UncommittedOrIncompleteWritesLeaveNothing) {
  const std::string dir = temp_path("nothing_dir");
  std::vector<io::TensorSpec> specs = {{"x", FileDType::f32, {4}}, {"y", FileDType::f32, {4}}};
  const float v[4] = {1, 2, 3, 4};
  {
    io::CheckpointStreamWriter w(dir, io::OutputKind::directory, specs, {}, 0);
    w.write(0, v, 16);
    expect_error([&] { w.commit(); }, ErrorKind::invalid_argument);  // y never written
  }
  EXPECT_FALSE(exists(dir));  // the directory it created is gone again
  const std::string file = temp_path("nothing.safetensors");
  {
    io::CheckpointStreamWriter w(file, io::OutputKind::safetensors, specs, {});
    w.write(0, v, 16);
    w.write(1, v, 16);
  }  // destroyed without commit
  EXPECT_FALSE(exists(file));
  const std::string parent = ::testing::TempDir();
  for (const auto& n : files_in(parent)) EXPECT_EQ(n.find("mq_pipe_" + std::to_string(::getpid()) + "_nothing"), std::string::npos) << n;
}

TEST(StreamWriter, ShardsAndIndexAndExtraFiles) {
  const std::string dir = temp_path("shards");
  std::vector<io::TensorSpec> specs;
  std::vector<std::vector<float>> data;
  for (int i = 0; i < 5; ++i) {
    specs.push_back({"t" + std::to_string(i), FileDType::f32, {100}});
    data.emplace_back(100, static_cast<float>(i));
  }
  {
    io::CheckpointStreamWriter w(dir, io::OutputKind::directory, specs, {{"k", "v"}}, 900);  // 2 tensors per shard
    w.add_file("config.json", "{\"model_type\": \"x\"}\n");
    for (int i = 4; i >= 0; --i) w.write(static_cast<std::size_t>(i), data[static_cast<std::size_t>(i)].data(), 400);
    EXPECT_EQ(w.shard_count(), 3u);
    w.commit();
  }
  const auto names = files_in(dir);
  EXPECT_TRUE(names.count("model-00001-of-00003.safetensors") && names.count("model-00003-of-00003.safetensors"));
  EXPECT_TRUE(names.count("model.safetensors.index.json") && names.count("config.json"));
  const io::Checkpoint ck = io::read_safetensors_directory(dir);
  ASSERT_EQ(ck.tensors.size(), 5u);
  for (int i = 0; i < 5; ++i) {
    const auto* t = ck.find("t" + std::to_string(i));
    ASSERT_NE(t, nullptr);
    EXPECT_EQ(0, std::memcmp(t->data(), data[static_cast<std::size_t>(i)].data(), 400));
  }
  EXPECT_EQ(ck.metadata.at("k"), "v");
}

TEST(CompressedLayout, SpecsMatchTheProducedTensorsForEveryScheme) {
  std::mt19937 gen(mqtest::kSeed);
  const int64_t n = 12, k = 64;
  const auto w = mqtest::normal_floats(gen, static_cast<std::size_t>(n * k));
  io::TensorRecord r;
  r.name = "m.weight";
  r.dtype = FileDType::f32;
  r.shape = {n, k};
  r.strides = contiguous_strides(r.shape);
  r.storage = reinterpret_cast<const std::byte*>(w.data());
  r.storage_bytes = w.size() * 4;
  struct Case {
    WeightFormat format;
    LinearMode mode;
    int64_t g;
    bool sym;
    std::vector<std::string> names;
  };
  const std::vector<Case> cases = {
      {WeightFormat::int8, LinearMode::dynamic_int8, 0, true, {"m.weight", "m.weight_scale"}},
      {WeightFormat::int8, LinearMode::static_int8, 0, false, {"m.weight", "m.weight_scale", "m.input_scale", "m.input_zero_point"}},
      {WeightFormat::int8, LinearMode::weight_only, 0, true, {"m.weight_packed", "m.weight_scale", "m.weight_shape"}},
      {WeightFormat::int4, LinearMode::weight_only, 32, true, {"m.weight_packed", "m.weight_scale", "m.weight_shape"}},
      {WeightFormat::int4, LinearMode::static_int8, 16, true, {"m.weight_packed", "m.weight_scale", "m.weight_shape", "m.input_scale"}},
      {WeightFormat::f16, LinearMode::weight_only, 0, true, {"m.weight"}},
  };
  for (const Case& c : cases) {
    PlanEntry e;
    e.tensor = "m.weight";
    e.module = "m";
    e.role = TensorRole::linear_weight;
    e.shape = {n, k};
    e.quantize = true;
    e.scheme.format = c.format;
    e.scheme.mode = c.mode;
    e.scheme.group_size = c.g;
    e.scheme.act_symmetric = c.sym;
    e.activation = {0.03f, c.sym ? 0 : 5};
    const auto specs = output_specs(e);
    const EntryOutputs out = produce_outputs(e, r);
    ASSERT_EQ(specs.size(), c.names.size()) << e.scheme.label();
    ASSERT_EQ(out.bytes.size(), specs.size());
    for (std::size_t i = 0; i < specs.size(); ++i) {
      EXPECT_EQ(specs[i].name, c.names[i]) << e.scheme.label();
      EXPECT_EQ(out.bytes[i].second, io::checked_nbytes(specs[i].dtype, specs[i].shape, specs[i].name)) << specs[i].name;
    }
    if (c.format == WeightFormat::int4) {
      // weight_packed is the quantizer's own packed rows (two codes per byte, +8): no re-packing nibble by nibble.
      QuantSpec qs = e.scheme.weight_spec();
      const QuantizedTensor q = quantize_weight(TensorView(w.data(), DType::f32, {n, k}), qs, ScaleMethod::absmax, DType::f32);
      EXPECT_EQ(0, std::memcmp(out.bytes[0].first, q.codes.data(), q.codes.nbytes()));
    }
    EXPECT_GT(out.sqnr_db, c.format == WeightFormat::int4 ? 15 : 35) << e.scheme.label();
  }
}

TEST(QuantizeCheckpoint, WholeRunReadsBackAsItsDequantizeAndReports) {
  std::mt19937 gen(mqtest::kSeed + 1);
  std::vector<std::vector<float>> data;
  std::vector<io::TensorToWrite> in;
  const std::vector<std::pair<std::string, Shape>> shapes = {
      {"layers.0.q.weight", {32, 64}}, {"layers.0.q.bias", {32}}, {"layers.0.norm.weight", {64}}, {"layers.1.up.weight", {128, 64}}};
  for (const auto& [name, shape] : shapes) {
    data.push_back(mqtest::normal_floats(gen, static_cast<std::size_t>(numel_of(shape))));
    in.push_back({name, FileDType::f32, shape, reinterpret_cast<const std::byte*>(data.back().data())});
  }
  const std::string src = temp_path("src.safetensors"), dst = temp_path("dst.safetensors");
  io::write_safetensors(src, in, {{"format", "pt"}});
  const io::Checkpoint ck = io::read_safetensors(src);
  std::vector<TensorInfo> infos;
  for (const auto& t : ck.tensors) infos.push_back({t.name, t.dtype, t.shape, std::nullopt});
  PlanRules rules;
  rules.scheme = int4_scheme(32);
  rules.min_params = 0;
  const Plan plan = make_plan(infos, rules);
  WriteOptions o;
  o.output = dst;
  std::size_t calls = 0;
  const QuantizeReport rep = quantize_checkpoint(ck, plan, o, [&](std::size_t, std::size_t, const TensorReport&) { ++calls; });
  EXPECT_TRUE(rep.committed);
  EXPECT_EQ(calls, ck.tensors.size());
  EXPECT_EQ(rep.quantized_count(), 2);
  EXPECT_GT(rep.compression_ratio(), 4.0);
  EXPECT_NEAR(rep.bits_per_weight(), 4.0 + 32.0 / 32, 1e-9);  // 4-bit codes + one float32 scale per 32
  const io::Checkpoint out = io::read_safetensors(dst);
  EXPECT_NE(out.metadata.count("quantization_config"), 0u);
  EXPECT_NE(out.metadata.count("monoquant"), 0u);
  uint64_t written = 0;
  for (const auto& t : out.tensors) written += t.nbytes();
  EXPECT_EQ(written, rep.file_bytes_after);
  // Oracle: decompressing the file gives exactly monoquant's dequantize of the quantizer's own output.
  const auto deq = io::decompress_tensors(out, out.metadata.at("quantization_config"));
  for (const auto& [name, t] : deq) {
    if (name != "layers.1.up.weight") continue;
    const QuantizedTensor q = quantize_weight(TensorView(data[3].data(), DType::f32, {128, 64}),
                                              rules.scheme.weight_spec(), ScaleMethod::absmax, DType::f32);
    const Tensor want = dequantize(q);
    ASSERT_EQ(t.nbytes(), want.nbytes());
    EXPECT_EQ(0, std::memcmp(t.data(), want.data(), want.nbytes()));
  }
  // accept() refusing: nothing written.
  const std::string refused = temp_path("refused.safetensors");
  o.output = refused;
  o.accept = [](const QuantizeReport&) { return false; };
  EXPECT_FALSE(quantize_checkpoint(ck, plan, o).committed);
  EXPECT_FALSE(exists(refused));
  std::remove(src.c_str());
  std::remove(dst.c_str());
}
