// One call for any supported checkpoint: load_checkpoint(path) reads a Hugging Face model
// directory (config.json + safetensors, io/hf_model.hpp) or a llama.cpp GGUF file
// (io/gguf_model.hpp) into a LoadedModel (io/loaded_model.hpp).
//
//   LoadedModel m = load_checkpoint(argv[1]);
//   if (m.info().rope_layout == RopeLayout::Interleaved) {    // GGUF llama
//     auto dec = m.decoder<configs::LlamaInterleaved>(options);  …
//   } else {                                                  // Hugging Face, GGUF qwen3
//     auto dec = m.decoder<configs::Llama>(options);  …       // (configs::Mixtral for MoE)
//   }
//
// llama2.c files have their own reader (io/llama2c.hpp).
#pragma once

#include <sys/stat.h>

#include <string>

#include "tformer/io/gguf_model.hpp"
#include "tformer/io/hf_model.hpp"

namespace tformer {
inline namespace TFORMER_ARCH_NS {

// A directory: load_hf; a file: load_gguf (which refuses anything but a GGUF file, naming it).
inline LoadedModel load_checkpoint(const std::string& path, FileMode mode = FileMode::Map) {
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) return load_hf(path, mode);
  return load_gguf(path, mode);
}

}  // namespace TFORMER_ARCH_NS
}  // namespace tformer
