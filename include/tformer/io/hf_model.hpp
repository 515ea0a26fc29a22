// A Hugging Face model directory (config.json + model.safetensors, or shards listed by
// model.safetensors.index.json) loaded as a LoadedModel: config.json read into Dims and
// ModelParams (io/hf_config.hpp), the matrices as typed views in place (F32, F16, BF16), norm
// vectors and MoE routers copied to f32.
//
//   LoadedModel m = load_hf("Llama-3.2-1B");
//   auto dec = m.decoder<configs::Llama>({.capacity = 4096});
//
// Tensor names (the Llama, Mistral, Qwen2/3, Mixtral, Qwen2/3-MoE, Gemma and Gemma 2 modeling
// code's; N a layer, E an expert):
//   model.embed_tokens.weight              embedding [V, H]
//   model.norm.weight                      final_norm
//   lm_head.weight                         lm_head (absent, or ignored, when tie_word_embeddings:
//                                          Hugging Face then uses the embedding, whatever the file)
//   model.layers.N.input_layernorm         attn_norm            (.weight, as every name below)
//   model.layers.N.self_attn.{q,k,v,o}_proj  wq, wk, wv, wo     (rows in rotate-half order:
//                                          loaded as stored, RopeLayout::RotateHalf)
//   model.layers.N.self_attn.{q,k,v,o}_proj.bias  bq, bk, bv (qwen2; llama's attention_bias: bo too)
//   model.layers.N.self_attn.{q,k}_norm    q_norm, k_norm (qwen3)
//   model.layers.N.post_attention_layernorm  ffn_norm (the FFN's input norm, despite its name;
//                                          gemma2: post_attn_norm, the attention output's)
//   model.layers.N.pre_feedforward_layernorm, post_feedforward_layernorm
//                                          ffn_norm, post_ffn_norm (gemma2)
//   model.layers.N.mlp.{gate,up,down}_proj   ffn.gate, ffn.up, ffn.down
//   model.layers.N.block_sparse_moe.gate   router [E, H] (mixtral)
//   model.layers.N.block_sparse_moe.experts.E.{w1,w3,w2}  experts[E].gate, .up, .down
//   model.layers.N.mlp.gate                router [E, H] (qwen2_moe, qwen3_moe)
//   model.layers.N.mlp.experts.E.{gate,up,down}_proj  experts[E].gate, .up, .down
//   model.layers.N.mlp.shared_expert.{gate,up,down}_proj  shared_expert (qwen2_moe)
//   model.layers.N.mlp.shared_expert_gate  shared_expert_gate [1, H] (qwen2_moe, to f32)
// model.layers.N.self_attn.rotary_emb.inv_freq (a buffer some old checkpoints kept) is skipped;
// any other tensor is an error, never ignored. A multimodal Gemma 3 (config model_type gemma3)
// names its language model language_model.model.… with language_model.lm_head (transformers
// 4.50), or model.language_model.… with lm_head (4.52 on); its vision_tower.… and
// multi_modal_projector.… tensors (either prefix) are not read.
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include "tformer/io/hf_config.hpp"
#include "tformer/io/loaded_model.hpp"
#include "tformer/io/safetensors.hpp"

namespace tformer {
inline namespace TFORMER_ARCH_NS {

// Reads the model directory `dir` (see the header comment); FileMode as for SafetensorsModel.
inline LoadedModel load_hf(const std::string& dir, FileMode mode = FileMode::Map) {
  const std::string config = (std::filesystem::path(dir) / "config.json").string();
  LoadedModel m;
  CheckpointInfo& info = m.mutable_info();
  info = read_hf_config(config);
  auto files = std::make_shared<SafetensorsModel>(SafetensorsModel::open(dir, mode));
  const SafetensorsModel& st = *files;
  const std::string where = "load_hf: " + dir;
  const Dims& d = info.dims;
  const index H = d.hidden, qd = d.heads * d.head_dim, kvd = d.kv_heads * d.head_dim;

  detail::TensorReader<SafetensorsModel> read(st, m, where);
  // A multimodal Gemma 3: its language model's names (transformers 4.50's, or 4.52's and later),
  // and the vision tower's tensors, which are not read.
  std::string model = "model.", head = "lm_head.weight";
  if (info.family == "gemma3") {
    if (st.find("language_model.model.embed_tokens.weight")) {
      model = "language_model.model.";
      head = "language_model.lm_head.weight";
    } else {
      model = "model.language_model.";
    }
    st.for_each([&](const SafetensorsFile&, const SafetensorsTensor& t) {
      for (const char* vision : {"vision_tower.", "multi_modal_projector.", "model.vision_tower.",
                                 "model.multi_modal_projector."})
        if (t.name.starts_with(vision)) read.mark_read(t.name);
    });
  }
  ModelWeights& w = m.mutable_weights();
  w.embedding = read.weight(model + "embed_tokens.weight", d.vocab, H);
  w.final_norm = read.vector(model + "norm.weight", H);
  if (!info.tied)
    w.lm_head = read.weight(head, d.vocab, H);
  else if (st.find(head))
    read.mark_read(head);  // tied: Hugging Face uses the embedding in its place
  w.layers.resize(static_cast<std::size_t>(d.layers));
  for (index l = 0; l < d.layers; ++l) {
    LayerWeights& lw = w.layers[static_cast<std::size_t>(l)];
    const std::string b = model + "layers." + std::to_string(l) + ".";
    lw.attn_norm = read.vector(b + "input_layernorm.weight", H);
    lw.wq = read.weight(b + "self_attn.q_proj.weight", qd, H);
    lw.wk = read.weight(b + "self_attn.k_proj.weight", kvd, H);
    lw.wv = read.weight(b + "self_attn.v_proj.weight", kvd, H);
    lw.wo = read.weight(b + "self_attn.o_proj.weight", H, qd);
    if (info.qkv_bias) {
      lw.bq = read.vector(b + "self_attn.q_proj.bias", qd);
      lw.bk = read.vector(b + "self_attn.k_proj.bias", kvd);
      lw.bv = read.vector(b + "self_attn.v_proj.bias", kvd);
    }
    if (info.o_bias) lw.bo = read.vector(b + "self_attn.o_proj.bias", H);
    if (info.params.qk_norm) {
      lw.q_norm = read.vector(b + "self_attn.q_norm.weight", d.head_dim);
      lw.k_norm = read.vector(b + "self_attn.k_norm.weight", d.head_dim);
    }
    read.mark_read(b + "self_attn.rotary_emb.inv_freq");  // older files: recomputed, not read
    if (info.post_norms) {  // Gemma 2: post_attention_layernorm is the attention output's
      lw.post_attn_norm = read.vector(b + "post_attention_layernorm.weight", H);
      lw.ffn_norm = read.vector(b + "pre_feedforward_layernorm.weight", H);
      lw.post_ffn_norm = read.vector(b + "post_feedforward_layernorm.weight", H);
    } else {
      lw.ffn_norm = read.vector(b + "post_attention_layernorm.weight", H);
    }
    if (info.ffn == FfnKind::MoE) {
      // Mixtral's block_sparse_moe with w1/w3/w2; Qwen2/3-MoE's mlp with {gate,up,down}_proj
      // (and Qwen2-MoE's shared expert).
      const bool mixtral = info.family == "mixtral";
      const std::string block = b + (mixtral ? "block_sparse_moe." : "mlp.");
      const std::string router = block + "gate.weight";
      const SafetensorsTensor& t = st.at(router);
      if (t.shape != std::vector<index>{d.experts, H}) [[unlikely]]
        detail::fail_check(where, "tensor '" + router + "' shape",
                           "[" + std::to_string(d.experts) + ", " + std::to_string(H) + "]",
                           "[" + std::to_string(t.shape.empty() ? 0 : t.shape[0]) + ", …] (" +
                               std::to_string(t.shape.size()) + " dims)");
      read.mark_read(router);
      const std::span<float> r = m.own_vector(d.experts * H);
      st.to_f32(router, r);
      lw.router = MatrixView<const float>(r.data(), d.experts, H);
      for (index e = 0; e < d.experts; ++e) {
        const std::string x = block + "experts." + std::to_string(e) + ".";
        lw.experts.push_back(
            {read.weight(x + (mixtral ? "w1.weight" : "gate_proj.weight"), d.intermediate, H),
             read.weight(x + (mixtral ? "w3.weight" : "up_proj.weight"), d.intermediate, H),
             read.weight(x + (mixtral ? "w2.weight" : "down_proj.weight"), H, d.intermediate)});
      }
      if (const index S = d.shared_intermediate; S > 0) {  // Qwen2-MoE
        const std::string x = block + "shared_expert.";
        lw.shared_expert = {read.weight(x + "gate_proj.weight", S, H),
                            read.weight(x + "up_proj.weight", S, H),
                            read.weight(x + "down_proj.weight", H, S)};
        const WeightView gate = read.weight(block + "shared_expert_gate.weight", 1, H);
        const std::span<float> g = m.own_vector(H);
        convert_kernels::decode_range(gate, 0, 0, H, g.data());
        lw.shared_expert_gate = MatrixView<const float>(g.data(), 1, H);
      }
    } else {
      lw.ffn = {read.weight(b + "mlp.gate_proj.weight", d.intermediate, H),
                read.weight(b + "mlp.up_proj.weight", d.intermediate, H),
                read.weight(b + "mlp.down_proj.weight", H, d.intermediate)};
    }
  }
  std::size_t bytes = 0;
  const std::string known =
      model + "embed_tokens, " + model + "norm, " + head + ", " + model + "layers.N.…";
  st.for_each([&](const SafetensorsFile&, const SafetensorsTensor& t) {
    read.check_read(t.name, known);
    bytes += t.bytes.size();
  });
  m.hold(std::move(files), dir, bytes);
  return m;
}

}  // namespace TFORMER_ARCH_NS
}  // namespace tformer
