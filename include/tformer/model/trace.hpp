// What a Decoder step records besides its logits, on request (Hugging Face's
// output_hidden_states and output_attentions): the residual stream after every layer and the
// attention weights of chosen rows, to narrow a mismatch with another implementation down to a
// layer, a head and a key.
//
//   tformer::StepTrace trace{.hidden_states = true, .attention_rows = {4}};
//   dec.forward(0, prompt, logits, LogitsFor::Last, trace);
//   trace.hidden[2].view();                 // [rows, hidden] after layer 1
//   trace.self_attention[1][0].view();      // layer 1, row 4: [heads, keys]
//
// A step without a trace records nothing and does nothing more. A traced step computes the
// requested weights again on the slow path (attention_weights: the whole score row, in double)
// and allocates what it records; it is for debugging, not for serving.
#pragma once

#include <cstddef>
#include <vector>

#include "tformer/core/views.hpp"

namespace tformer {
inline namespace TFORMER_ARCH_NS {

// A recorded matrix, row-major and owned.
struct TraceMatrix {
  index rows = 0, cols = 0;
  std::vector<float> values = {};  // rows · cols

  MatrixView<const float> view() const noexcept { return {values.data(), rows, cols}; }
  const float* row(index r) const noexcept { return values.data() + r * cols; }
  void resize(index r, index c) {
    rows = r;
    cols = c;
    values.assign(static_cast<std::size_t>(r * c), 0.0f);
  }
};

struct StepTrace {
  // What to record, set before the call.
  bool hidden_states = false;         // the residual stream: embeddings, then after each layer
  std::vector<index> attention_rows = {};  // rows of the step (batch order) whose weights to record

  // What the call recorded (replaced by each traced call; empty where not requested).
  //
  // hidden[0]: the embeddings as the first layer reads them (× embed_scale, + the position
  // table); hidden[l + 1]: the residual stream after layer l. Each [rows, hidden].
  // final_normed: the final RMSNorm of hidden[layers], what the LM head reads. Hugging Face's
  // output_hidden_states is hidden[0 … layers − 1] followed by final_normed.
  std::vector<TraceMatrix> hidden = {};
  TraceMatrix final_normed = {};
  // self_attention[l][i]: layer l's softmax weights of row attention_rows[i], [heads, keys]:
  // keys = the row's sequence length after the step, indexed by position; keys the row does not
  // see (later, outside its window, evicted from a ring) have weight 0.
  std::vector<std::vector<TraceMatrix>> self_attention = {};
  // cross_attention[l][i]: [heads, the sequence's encoder tokens]; padding has weight 0.
  std::vector<std::vector<TraceMatrix>> cross_attention = {};
};

}  // namespace TFORMER_ARCH_NS
}  // namespace tformer
