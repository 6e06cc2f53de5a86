// The checkpoint pipeline for Python: plan + quantize a state dict in memory
// (the same plan and tensors as `monoquant quantize`), and write a quantized
// model's tensors with its metadata through the streaming writer.
#include <nanobind/stl/map.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include "convert.hpp"
#include "input_tensors.hpp"
#include "monoquant/error.hpp"
#include "monoquant/pipeline/compressed_layout.hpp"
#include "monoquant/pipeline/model_metadata.hpp"
#include "monoquant/pipeline/plan.hpp"
#include "monoquant/pipeline/quantize_checkpoint.hpp"

namespace monoquant::python {
namespace {

using namespace monoquant::pipeline;

LayerScheme scheme_from_dict(const nb::dict& d) {
  LayerScheme s;
  s.format = parse_weight_format(nb::cast<std::string>(d["format"]));
  s.mode = parse_linear_mode(nb::cast<std::string>(d["mode"]));
  s.group_size = nb::cast<int64_t>(d["group_size"]);
  s.scale_method = parse_scale_method(nb::cast<std::string>(d["scale_method"]));
  s.act_symmetric = nb::cast<bool>(d["act_symmetric"]);
  s.full_range = d.contains("full_range") ? nb::cast<bool>(d["full_range"]) : true;
  s.weight_symmetric = d.contains("weight_symmetric") ? nb::cast<bool>(d["weight_symmetric"]) : true;
  s.int8_bits = d.contains("int8_bits") ? nb::cast<int>(d["int8_bits"]) : 8;
  return s;
}

nb::dict scheme_dict(const LayerScheme& s) {
  nb::dict d;
  d["format"] = std::string(name_of(s.format));
  d["mode"] = std::string(name_of(s.mode));
  d["group_size"] = s.group_size;
  d["scale_method"] = std::string(name_of(s.scale_method));
  d["act_symmetric"] = s.act_symmetric;
  d["full_range"] = s.full_range;
  d["weight_symmetric"] = s.weight_symmetric;
  d["int8_bits"] = s.int8_bits;
  return d;
}

PlanRules rules_from_dict(const nb::dict& d) {
  PlanRules r;
  r.scheme = scheme_from_dict(nb::cast<nb::dict>(d["scheme"]));
  r.skip = nb::cast<std::vector<std::string>>(d["skip"]);
  r.only = nb::cast<std::vector<std::string>>(d["only"]);
  r.include = nb::cast<std::vector<std::string>>(d["include"]);
  for (const std::string& o : nb::cast<std::vector<std::string>>(d["overrides"])) r.overrides.push_back(parse_override(o));
  r.min_params = nb::cast<int64_t>(d["min_params"]);
  r.quality_defaults = nb::cast<bool>(d["quality_defaults"]);
  r.quantize_embeddings = nb::cast<bool>(d["quantize_embeddings"]);
  r.explicit_group_size = nb::cast<bool>(d["explicit_group_size"]);
  if (d.contains("recipe") && !d["recipe"].is_none()) r.recipe = parse_recipe(nb::cast<std::string>(d["recipe"]), r.scheme);
  return r;
}

nb::dict rule_dict(const RecipeRule& r) {
  nb::dict d;
  d["match"] = r.match;
  if (r.scheme) d["scheme"] = scheme_dict(*r.scheme);
  else d["scheme"] = nb::none();
  d["explicit_group_size"] = r.explicit_group_size;
  d["method"] = r.method;
  return d;
}

RecipeRule rule_from_dict(const nb::dict& d) {
  RecipeRule r;
  r.match = nb::cast<std::string>(d["match"]);
  if (!d["scheme"].is_none()) r.scheme = scheme_from_dict(nb::cast<nb::dict>(d["scheme"]));
  r.explicit_group_size = nb::cast<bool>(d["explicit_group_size"]);
  r.method = nb::cast<std::string>(d["method"]);
  return r;
}

}  // namespace

void bind_pipeline(nb::module_& m) {
  m.def(
      "quantize_state_dict",
      [](const nb::list& items, const nb::dict& rules_dict) {
        io::InputTensors in = io::input_tensors(items);
        const PlanRules rules = rules_from_dict(rules_dict);
        std::vector<TensorInfo> infos;
        for (const auto& t : in.tensors) infos.push_back({t.name, t.dtype, t.shape, std::nullopt});
        const Plan plan = make_plan(infos, rules);
        std::vector<EntryOutputs> outputs(plan.entries.size());
        {
          nb::gil_scoped_release release;
          for (std::size_t i = 0; i < plan.entries.size(); ++i) {
            if (!plan.entries[i].quantize) continue;
            const auto& t = in.tensors[i];
            io::TensorRecord r;
            r.name = t.name;
            r.dtype = t.dtype;
            r.shape = t.shape;
            r.strides = contiguous_strides(t.shape);
            r.storage = t.data;
            r.storage_bytes = io::checked_nbytes(t.dtype, t.shape, t.name);
            outputs[i] = produce_outputs(plan.entries[i], r);
          }
        }
        nb::list entries;
        for (std::size_t i = 0; i < plan.entries.size(); ++i) {
          const PlanEntry& e = plan.entries[i];
          nb::dict d;
          d["tensor"] = e.tensor;
          d["module"] = e.module;
          d["role"] = std::string(name_of(e.role));
          d["quantize"] = e.quantize;
          d["reason"] = e.reason;
          if (e.quantize) {
            d["scheme"] = scheme_dict(e.scheme);
            d["label"] = e.scheme.label();
            d["sqnr_db"] = outputs[i].sqnr_db;
            d["weight_bytes"] = outputs[i].weight_bytes;
            nb::dict tensors;
            const auto specs = output_specs(e);
            for (std::size_t j = 0; j < specs.size(); ++j) {
              Tensor t = std::move(outputs[i].owned[j]);
              tensors[nb::str(specs[j].name.c_str())] = to_torch(std::move(t));
            }
            d["tensors"] = tensors;
          }
          entries.append(d);
        }
        nb::dict out;
        out["entries"] = entries;
        out["warnings"] = plan.warnings;
        out["notes"] = plan.notes;
        return out;
      },
      nb::arg("tensors"), nb::arg("rules"),
      "Plan and quantize a state dict with the checkpoint pipeline's rules (what `monoquant quantize` does).");
  m.def(
      "resolve_recipe_rule",
      [](const std::string& key, const std::string& spec_json, const nb::dict& call) {
        return rule_dict(resolve_recipe_rule(key, spec_json, scheme_from_dict(call)));
      },
      nb::arg("key"), nb::arg("spec_json"), nb::arg("call_scheme"),
      "One recipe rule resolved against the call's scheme (pipeline/recipe.hpp): the CLI's --recipe uses the same.");
  m.def(
      "recipe_to_json",
      [](const nb::list& rules) {
        std::vector<RecipeRule> rs;
        for (nb::handle h : rules) rs.push_back(rule_from_dict(nb::cast<nb::dict>(h)));
        return recipe_to_json(rs);
      },
      nb::arg("rules"), "The canonical JSON of resolved recipe rules, as a file's metadata stores it.");
  m.def(
      "compressed_tensors",
      [](const std::string& module, const nb::dict& scheme, const AnyArray& codes, const AnyArray& scales, int64_t n,
         int64_t k, const std::string& weight_dtype, double act_scale, int64_t act_zero_point,
         const std::optional<AnyArray>& zero_points) {
        PlanEntry e;
        e.module = module;
        e.tensor = module.empty() ? "weight" : module + ".weight";
        e.quantize = true;
        e.scheme = scheme_from_dict(scheme);
        e.shape = {n, k};
        const auto dt = io::parse_torch_name(weight_dtype);
        if (!dt) throw_invalid_argument("unknown weight dtype '" + weight_dtype + "'");
        e.dtype = *dt;
        e.activation = {static_cast<float>(act_scale), static_cast<int32_t>(act_zero_point)};
        const TensorView c = to_view(codes, "codes");
        const TensorView s = to_view(scales, "scales");
        const TensorView z = zero_points ? to_view(*zero_points, "zero_points") : TensorView{};
        std::vector<Tensor> out;
        {
          nb::gil_scoped_release release;
          out = compressed_tensors_from_codes(e, c, s, z);
        }
        const auto specs = output_specs(e);
        nb::dict d;
        for (std::size_t i = 0; i < specs.size(); ++i) d[nb::str(specs[i].name.c_str())] = to_torch(std::move(out[i]));
        return d;
      },
      nb::arg("module"), nb::arg("scheme"), nb::arg("codes"), nb::arg("scales"), nb::arg("out_features"),
      nb::arg("in_features"), nb::arg("weight_dtype"), nb::arg("act_scale"), nb::arg("act_zero_point"),
      nb::arg("zero_points") = nb::none(),
      "The compressed-tensors tensors of one quantized layer from its canonical codes, scales and (asymmetric "
      "weights) int32 zero points [N, groups].");
  m.def(
      "write_quantized_model",
      [](const std::string& path, const nb::list& items, const nb::list& records, const std::string& config_json,
         uint64_t max_shard_bytes, const std::string& recipe_json) {
        io::InputTensors in = io::input_tensors(items);
        std::vector<ModuleRecord> recs;
        for (nb::handle h : records) {
          const nb::dict d = nb::cast<nb::dict>(h);
          ModuleRecord r;
          r.name = nb::cast<std::string>(d["name"]);
          r.scheme = scheme_from_dict(nb::cast<nb::dict>(d["scheme"]));
          r.type = nb::cast<std::string>(d["type"]);
          r.shape = nb::cast<std::vector<int64_t>>(d["shape"]);
          r.float_dtype = nb::cast<std::string>(d["float_dtype"]);
          r.extra_json = nb::cast<std::string>(d["extra_json"]);
          recs.push_back(std::move(r));
        }
        std::vector<io::TensorSpec> specs;
        for (const auto& t : in.tensors) specs.push_back({t.name, t.dtype, t.shape});
        WriteOptions o;
        o.output = path;
        o.kind = io::output_kind_for_path(path);
        o.max_shard_bytes = max_shard_bytes;
        o.config_json = config_json;
        o.recipe_json = recipe_json;
        nb::gil_scoped_release release;
        auto writer = open_quantized_writer(o, std::move(specs), recs);
        for (std::size_t i = 0; i < in.tensors.size(); ++i) {
          const auto& t = in.tensors[i];
          writer->write(i, t.data, io::checked_nbytes(t.dtype, t.shape, t.name));
        }
        writer->commit();
      },
      nb::arg("path"), nb::arg("tensors"), nb::arg("records"), nb::arg("config_json"), nb::arg("max_shard_bytes"),
      nb::arg("recipe_json") = "",
      "Write a quantized model's tensors with its metadata (and config.json for a directory).");
}

}  // namespace monoquant::python
