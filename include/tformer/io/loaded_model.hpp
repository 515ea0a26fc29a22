// A model read from a checkpoint (io/gguf_model.hpp, io/hf_model.hpp, io/checkpoint.hpp): what
// the checkpoint says of it (CheckpointInfo: family, Dims, ModelParams, structure) and its
// weights as ModelWeights views into the files it keeps open (memory-mapped: zero copy), plus
// f32 copies of the small vectors (norm weights) stored in other types.
//
//   LoadedModel m = load_checkpoint("Llama-3.2-1B");            // a safetensors directory or .gguf
//   auto dec = m.decoder<configs::Llama>({.capacity = 4096});    // checks the Config's structure
//   std::puts(m.summary().c_str());                              // family, sizes, types, memory
//
// The decoder reads the views: the LoadedModel must outlive it (and every copy of weights()).
#pragma once

#include <cstddef>
#include <deque>
#include <map>
#include <set>
#include <span>
#include <string_view>
#include <memory>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "tformer/core/error.hpp"
#include "tformer/core/weight_view.hpp"
#include "tformer/model/config.hpp"
#include "tformer/model/decoder.hpp"
#include "tformer/model/weights.hpp"

namespace tformer {
inline namespace TFORMER_ARCH_NS {

// What a checkpoint says of its model: a reader fills it; a Decoder's Config must agree with its
// structure (LoadedModel::check_structure).
struct CheckpointInfo {
  std::string family;  // config.json's model_type, or GGUF's general.architecture
  Dims dims;
  ModelParams params;
  RopeLayout rope_layout = RopeLayout::RotateHalf;  // the order of the stored q/k rows
  FfnKind ffn = FfnKind::Dense;
  bool tied = false;     // the LM head is the embedding
  bool qkv_bias = false;  // q, k, v projections have biases (Qwen2; Llama's attention_bias)
  bool o_bias = false;    // the o projection too (Llama's attention_bias)
  NormScale norm = NormScale::Weight;  // Gemma: x̂ · (1 + w)
  bool post_norms = false;             // Gemma 2's sandwich norms
};

inline const char* layout_name(RopeLayout layout) noexcept {
  return layout == RopeLayout::Interleaved ? "Interleaved" : "RotateHalf";
}

class LoadedModel {
 public:
  LoadedModel() = default;
  LoadedModel(LoadedModel&&) = default;
  LoadedModel& operator=(LoadedModel&&) = default;
  LoadedModel(const LoadedModel&) = delete;
  LoadedModel& operator=(const LoadedModel&) = delete;

  const CheckpointInfo& info() const noexcept { return info_; }
  const Dims& dims() const noexcept { return info_.dims; }
  const ModelParams& params() const noexcept { return info_.params; }
  const ModelWeights& weights() const noexcept { return weights_; }
  const std::string& source() const noexcept { return source_; }
  // Bytes of the tensors in the checkpoint files (mapped or read), and of the f32 copies made.
  std::size_t file_bytes() const noexcept { return file_bytes_; }
  std::size_t copied_bytes() const noexcept {
    std::size_t n = 0;
    for (const auto& v : vectors_) n += v.size() * sizeof(float);
    return n;
  }

  // Throws tformer::Error unless the Config's structure is the checkpoint's: RoPE layout of the
  // stored q/k rows, FFN kind, head tying, and no block the checkpoint lacks.
  template <DecoderConfig C>
  void check_structure() const {
    const std::string where = "LoadedModel::check_structure: " + source_;
    if (C::rope_layout != info_.rope_layout) [[unlikely]]
      detail::fail_check(where, "Config::rope_layout",
                         std::string(layout_name(info_.rope_layout)) +
                             " (the order of the checkpoint's q/k rows)",
                         layout_name(C::rope_layout));
    if (C::ffn != info_.ffn) [[unlikely]]
      detail::fail_check(where, "Config::ffn", info_.ffn == FfnKind::MoE ? "MoE" : "Dense",
                         C::ffn == FfnKind::MoE ? "MoE" : C::ffn == FfnKind::TopK ? "TopK" : "Dense");
    if ((C::head == HeadKind::Tied && !info_.tied) || (C::head == HeadKind::Own && info_.tied))
        [[unlikely]]
      detail::fail_check(where, "Config::head",
                         info_.tied ? "Tied or AsLoaded (the checkpoint ties its head)"
                                    : "Own or AsLoaded (the checkpoint has its own head)",
                         C::head == HeadKind::Tied ? "Tied" : "Own");
    const auto norm_name = [](NormScale n) { return n == NormScale::Weight ? "Weight" : "OnePlusWeight"; };
    if (C::norm != info_.norm) [[unlikely]]
      detail::fail_check(where, "Config::norm", norm_name(info_.norm), norm_name(C::norm));
    if (C::post_norms != info_.post_norms) [[unlikely]]
      detail::fail_check(where, "Config::post_norms", info_.post_norms ? "true" : "false",
                         C::post_norms ? "true" : "false");
    const bool plain = !C::cross_attention && C::positions == PositionKind::Rope &&
                       C::bias == BiasKind::None && C::conv_kernel == 0 &&
                       C::givens_rotations == 0 && !C::rotation_matrix;
    if (!plain) [[unlikely]]
      detail::fail_check(where, "Config", "a decoder-only RoPE model (as loaded)",
                         "a Config with blocks the checkpoint does not have");
  }

  // A Decoder over these weights, with the checkpoint's Dims and ModelParams (check_structure
  // first). The LoadedModel must outlive it.
  template <DecoderConfig C, Executor E = SerialExecutor>
  Decoder<C, E> decoder(const DecoderOptions& options = {}, E executor = {}) const {
    check_structure<C>();
    return Decoder<C, E>(weights_, info_.dims, info_.params, options, std::forward<E>(executor));
  }

  // Family, sizes, parameters, storage types of the matrices and memory, one per line.
  std::string summary() const {
    std::ostringstream s;
    const Dims& d = info_.dims;
    const ModelParams& p = info_.params;
    s << "model: " << source_ << "\n"
      << "family: " << info_.family << " (q/k rows " << layout_name(info_.rope_layout)
      << (info_.ffn == FfnKind::MoE ? ", mixture of experts" : "")
      << (info_.tied ? ", tied head" : ", own head") << ")\n"
      << "sizes: vocab " << d.vocab << ", hidden " << d.hidden << ", intermediate "
      << d.intermediate << ", layers " << d.layers << ", heads " << d.heads << "/" << d.kv_heads
      << " × " << d.head_dim << ", max positions " << d.max_positions;
    if (d.experts > 0) s << ", experts " << d.experts << " top-" << d.top_k;
    index local = 0;
    for (index l = 0; l < d.layers; ++l) local += p.attention.window_of(l) > 0;
    s << "\nparams: rope base " << p.rope_base << ", scaling " << scaling_name(p.rope_scaling)
      << ", eps " << p.eps << ", window " << p.attention.window << " on " << local << " of "
      << d.layers << " layers" << (p.qk_norm ? ", qk-norm" : "");
    if (p.local_rope_base > 0) s << ", local layers' rope base " << p.local_rope_base;
    if (d.shared_intermediate > 0) s << ", shared expert " << d.shared_intermediate;
    if (info_.norm == NormScale::OnePlusWeight) s << ", (1 + w) norms";
    if (info_.post_norms) s << ", post-norms";
    if (p.embed_scale != 1.0f) s << ", embedding × " << p.embed_scale;
    if (p.attention_scale > 0) s << ", attention scale " << p.attention_scale;
    if (p.attention_softcap > 0) s << ", attention soft-cap " << p.attention_softcap;
    if (p.final_softcap > 0) s << ", logit soft-cap " << p.final_softcap;
    s << "\ntypes:";
    std::map<std::string, index> types;
    ModelWeights views = weights_;
    for_each_matrix(views, [&](WeightView& m, MatrixKind, const std::string&) {
      types[type_name(m.type())] += m.rows() * m.cols();
    });
    for (const auto& [name, values] : types) s << " " << name << " (" << values << " values)";
    s << "\nmemory: " << file_bytes_ << " bytes of tensors in the checkpoint files (mapped or read), "
      << copied_bytes() << " bytes of f32 copies\n";
    return s.str();
  }

  // For the loaders: keeps `files` (the readers the views point into) alive, names the model.
  void hold(std::shared_ptr<const void> files, std::string source, std::size_t bytes) {
    files_.push_back(std::move(files));
    source_ = std::move(source);
    file_bytes_ += bytes;
  }
  // For the loaders: a vector of n floats owned by the model (stable address).
  std::span<float> own_vector(index n) {
    vectors_.emplace_back(static_cast<std::size_t>(n));
    return vectors_.back();
  }
  CheckpointInfo& mutable_info() noexcept { return info_; }
  ModelWeights& mutable_weights() noexcept { return weights_; }

 private:
  static const char* scaling_name(const RopeScaling& s) noexcept {
    constexpr const char* names[] = {"none", "linear", "dynamic NTK", "YaRN", "LongRoPE / frequency factors", "Llama 3"};
    return names[s.index()];
  }

  CheckpointInfo info_;
  std::string source_;
  std::vector<std::shared_ptr<const void>> files_;
  std::size_t file_bytes_ = 0;
  std::deque<std::vector<float>> vectors_;  // f32 copies (a deque: addresses stay)
  ModelWeights weights_;
};

namespace detail {

// For the loaders: reads a checkpoint's tensors into a LoadedModel and remembers each name it
// read, so that a loader refuses the tensors it does not know instead of ignoring them. File is
// GgufFile or SafetensorsModel (weight(name, rows, cols), vector_f32(name, out)).
template <class File>
class TensorReader {
 public:
  TensorReader(const File& file, LoadedModel& model, std::string where)
      : file_(file), model_(model), where_(std::move(where)) {}

  WeightView weight(const std::string& name, index rows, index cols) {
    used_.insert(name);
    return file_.weight(name, rows, cols);
  }
  // An f32 copy of a vector of n values in the model, its size checked before allocating n.
  std::span<const float> vector(const std::string& name, index n) {
    used_.insert(name);
    const std::uint64_t have = elements(name);
    if (have != std::uint64_t(n)) [[unlikely]]
      detail::fail_check(where_, "tensor '" + name + "'",
                         "a vector of " + std::to_string(n) + " values", std::to_string(have) + " values");
    const std::span<float> out = model_.own_vector(n);
    file_.vector_f32(name, out);
    return out;
  }
  // A tensor read otherwise, or known and not needed.
  void mark_read(const std::string& name) { used_.insert(name); }
  // Throws unless `name` was read; `known` lists what this loader reads.
  void check_read(const std::string& name, std::string_view known) const {
    if (!used_.contains(name)) [[unlikely]]
      detail::fail_check(where_, "tensor '" + name + "'", "one the loader reads (" + std::string(known) + ")",
                         "a tensor it does not know");
  }

 private:
  std::uint64_t elements(const std::string& name) const {
    if constexpr (requires { file_.tensor(name).elements(); })
      return file_.tensor(name).elements();  // GGUF
    else
      return std::uint64_t(file_.at(name).elements());  // safetensors
  }

  const File& file_;
  LoadedModel& model_;
  std::string where_;
  std::set<std::string, std::less<>> used_;
};

}  // namespace detail

}  // namespace TFORMER_ARCH_NS
}  // namespace tformer
