// tformer-generate: the library's main demo.
//
//   tformer-generate                      TrafficVLM (seed 003) with seeded random weights and
//                                         random vision tokens: prefill, a cached decode of 32
//                                         tokens, YES/NO classification, tokens per second, and
//                                         a check that cached decoding equals recomputation.
//   tformer-generate --checkpoint model.bin --tokenizer tokenizer.bin --prompt "Once upon"
//                    [--steps 256] [--temperature 1.0] [--top-p 0.9] [--seed 42]
//                    [--activations int8]   int8 activations for the version-2 int8 weights
//                                         text from a llama2.c checkpoint (temperature 0: greedy):
//                                         run.c's legacy .bin, export.py's version 1 (float32) or
//                                         version 2 (int8 groups, runq.c's), told by its header
//   tformer-generate --model DIR|FILE.gguf --tokens 1,5,17 [--steps 32] [--temperature T] …
//                                         a Hugging Face directory (config.json + safetensors:
//                                         Llama, Mistral, Qwen2/3, Mixtral, Qwen2/3-MoE, Gemma,
//                                         Gemma 2, Gemma 3) or a llama.cpp GGUF file (llama, qwen2,
//                                         qwen3, qwen2moe, qwen3moe, gemma, gemma2, gemma3;
//                                         Mixtral as llama with experts): prints
//                                         what it loaded, then generates from the prompt's
//                                         token ids (with a GGUF file's
//                                         vocabulary, their text too)
//   --activations int8 with --model: q8_0 and q4_0 matrices multiply int8 activations, repacked
//                                         once as q8_0x16 and q4_0x16 (the faster int8 kernel)
//   tformer-generate --model FILE.gguf --prompt "Once upon" [--steps 32] …
//                                         the same from text, through the file's SentencePiece
//                                         vocabulary (tokenizer.ggml.model llama: Llama 2,
//                                         Mistral, Gemma), stopping at its EOS
//   tformer-generate [--checkpoint model.bin | --model …] --tokens 1,5,17 --logits out.f32
//                                         teacher forcing: the logits of every position,
//                                         [tokens, vocab] little-endian float32
//   --steps N also sets the default run's decode length. --kv f16|bf16 stores the KV cache at
//   half the bytes, --kv q8 at about a quarter (int8 with a scale per token and head; default f32).
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <fstream>
#include <iostream>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "tformer/core/simd.hpp"
#include "tformer/io/checkpoint.hpp"
#include "tformer/io/gguf_tokenizer.hpp"
#include "tformer/io/llama2c.hpp"
#include "tformer/model/decoder.hpp"

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

struct Args {
  std::string checkpoint, model, tokenizer, prompt, logits_path;
  tformer::index capacity = 0;
  std::vector<std::int32_t> tokens;
  int steps = -1;
  float temperature = 1.0f, top_p = 0.9f;
  std::uint64_t seed = 42;
  tformer::Activations activations = tformer::Activations::f32;
  tformer::KVType kv = tformer::KVType::f32;
};

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr,
               "tformer-generate: %s\n"
               "usage: tformer-generate [--steps N]\n"
               "       tformer-generate --checkpoint model.bin --tokenizer tokenizer.bin "
               "--prompt TEXT [--steps N] [--temperature T] [--top-p P] [--seed S] "
               "[--activations f32|int8] [--kv f32|f16|bf16|q8]\n"
               "       tformer-generate --model DIR|FILE.gguf --tokens 1,5,17 [--steps N] "
               "[--temperature T] [--top-p P] [--seed S] [--capacity N] [--kv f32|f16|bf16|q8]\n"
               "       tformer-generate --model FILE.gguf --prompt TEXT [--steps N] …\n"
               "       tformer-generate [--checkpoint model.bin | --model DIR|FILE.gguf] "
               "--tokens 1,5,17 --logits out.f32\n",
               why);
  std::exit(2);
}

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (i + 1 >= argc) usage(("missing value after " + flag).c_str());
    const std::string value = argv[++i];
    try {
      if (flag == "--checkpoint") a.checkpoint = value;
      else if (flag == "--model") a.model = value;
      else if (flag == "--capacity") a.capacity = std::stol(value);
      else if (flag == "--tokenizer") a.tokenizer = value;
      else if (flag == "--prompt") a.prompt = value;
      else if (flag == "--logits") a.logits_path = value;
      else if (flag == "--steps") a.steps = std::stoi(value);
      else if (flag == "--temperature") a.temperature = std::stof(value);
      else if (flag == "--top-p") a.top_p = std::stof(value);
      else if (flag == "--seed") a.seed = std::stoull(value);
      else if (flag == "--kv") {
        if (value == "f32") a.kv = tformer::KVType::f32;
        else if (value == "f16") a.kv = tformer::KVType::f16;
        else if (value == "bf16") a.kv = tformer::KVType::bf16;
        else if (value == "q8")
          a.kv = tformer::KVType::q8;
        else
          usage("--kv takes f32, f16, bf16 or q8");
      } else if (flag == "--activations") {
        if (value != "f32" && value != "int8") usage("--activations takes f32 or int8");
        a.activations = value == "f32" ? tformer::Activations::f32 : tformer::Activations::int8;
      }
      else if (flag == "--tokens") {
        std::stringstream s(value);
        for (std::string t; std::getline(s, t, ',');) a.tokens.push_back(std::stoi(t));
      } else usage(("unknown option " + flag).c_str());
    } catch (const std::logic_error&) {
      usage(("bad value for " + flag + ": " + value).c_str());
    }
  }
  if (!a.logits_path.empty() && a.tokens.empty()) usage("--logits needs --tokens");
  if (!a.tokens.empty() && a.logits_path.empty() && a.model.empty())
    usage("--tokens needs --logits (or --model)");
  if (!a.model.empty() && a.tokens.empty() && a.prompt.empty())
    usage("--model needs --tokens (the prompt's ids) or --prompt (a GGUF SentencePiece vocabulary)");
  if (!a.model.empty() && !a.checkpoint.empty()) usage("--model and --checkpoint exclude each other");
  if (!a.prompt.empty() && a.model.empty() && (a.checkpoint.empty() || a.tokenizer.empty()))
    usage("--prompt needs --checkpoint and --tokenizer, or --model with a GGUF file");
  if (!a.prompt.empty() && !a.tokens.empty()) usage("--prompt and --tokens exclude each other");
  return a;
}

// Teacher forcing: logits of every position of `tokens`, written as [T, vocab] float32.
template <class Dec>
int write_logits(Dec& dec, const Args& a) {
  const auto V = dec.dims().vocab;
  const auto T = tformer::index(a.tokens.size());
  std::vector<float> logits(static_cast<std::size_t>(T * V));
  for (tformer::index done = 0; done < T;) {  // steps of max_tokens rows
    const tformer::index n = std::min(T - done, dec.options().max_tokens);
    dec.forward(0, std::span(a.tokens).subspan(std::size_t(done), std::size_t(n)),
                {logits.data() + done * V, n, V}, tformer::LogitsFor::All);
    done += n;
  }
  std::ofstream out(a.logits_path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(logits.data()), std::streamsize(logits.size() * 4));
  if (!out) throw std::runtime_error("cannot write " + a.logits_path);
  std::printf("wrote logits [%ld, %ld] float32 to %s\n", long(T), long(V), a.logits_path.c_str());
  return 0;
}

tformer::Sampler sampler_of(const Args& a) {
  return a.temperature <= 0.0f ? tformer::Sampler::greedy()
         : a.top_p < 1.0f      ? tformer::Sampler::with_top_p(a.top_p, a.temperature)
                               : tformer::Sampler::with_temperature(a.temperature);
}

int run_checkpoint(const Args& a) {
  using C = tformer::configs::Llama2c;
  const auto model = tformer::Llama2cModel::open(a.checkpoint);
  const tformer::Dims& d = model.dims();
  tformer::ModelWeights weights = model.weights();  // views: a copy to set the activations on
  tformer::set_activations(weights, a.activations);
  const tformer::WeightView& wq = weights.layers.front().wq;
  std::printf("llama2.c checkpoint %s (version %d, %s weights", a.checkpoint.c_str(),
              model.header().version, tformer::type_name(wq.type()));
  if (wq.type() == tformer::WeightType::q8_group) std::printf(" in groups of %ld", long(wq.group()));
  std::printf(", %s activations", wq.activations() == tformer::Activations::int8 ? "int8" : "f32");
  if (a.activations != wq.activations()) std::printf(" (int8 needs int8 weights in groups of 32, 64, …)");
  std::printf("): dim %ld, layers %ld, heads %ld/%ld, vocab %ld, seq_len %ld, %s head\n",
              long(d.hidden), long(d.layers), long(d.heads), long(d.kv_heads), long(d.vocab),
              long(d.max_positions), model.header().tied() ? "tied" : "own");
  tformer::Decoder<C> dec(weights, d, {.kv_type = a.kv});
  if (!a.tokens.empty()) return write_logits(dec, a);

  const auto tok = tformer::Llama2cTokenizer::open(a.tokenizer, d.vocab);
  const auto prompt = tok.encode(a.prompt, true, false);
  const tformer::index room = d.max_positions - tformer::index(prompt.size()) + 1;
  if (room < 1) throw std::runtime_error("prompt longer than the model's seq_len");
  const tformer::index steps = std::min<tformer::index>(a.steps < 0 ? 256 : a.steps, room);
  const tformer::Sampler sampler = sampler_of(a);
  tformer::Rng rng(a.seed);
  std::vector<std::int32_t> out(static_cast<std::size_t>(steps));
  const auto t0 = Clock::now();
  const tformer::index n = dec.generate(0, prompt, steps, sampler, rng, out, tformer::Llama2cTokenizer::bos);
  const double s = seconds_since(t0);
  std::int32_t prev = prompt.back();
  std::fputs(a.prompt.c_str(), stdout);
  for (tformer::index i = 0; i < n; ++i) {
    if (out[std::size_t(i)] == tformer::Llama2cTokenizer::bos) break;  // llama2.c's end of story
    std::fputs(tok.decode(prev, out[std::size_t(i)]).c_str(), stdout);
    prev = out[std::size_t(i)];
  }
  std::printf("\n\n%ld prompt + %ld generated tokens in %.3f s: %.1f tokens/s\n", long(prompt.size()),
              long(n), s, double(tformer::index(prompt.size()) + n) / s);
  return 0;
}

// A GGUF file's vocabulary (tokenizer.ggml.tokens), for printing; empty otherwise.
std::vector<std::string> gguf_vocabulary(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 || S_ISDIR(st.st_mode)) return {};
  const auto g = tformer::GgufFile::open(path);
  if (const auto* v = g.find("tokenizer.ggml.tokens"))
    if (const auto* tokens = std::get_if<std::vector<std::string>>(&v->value)) return *tokens;
  return {};
}

// A token's text: SentencePiece's "▁" as a space.
std::string piece(const std::vector<std::string>& vocab, std::int32_t id) {
  if (id < 0 || std::size_t(id) >= vocab.size()) return "";
  std::string s = vocab[std::size_t(id)];
  for (std::size_t at; (at = s.find("\xe2\x96\x81")) != std::string::npos;) s.replace(at, 3, " ");
  return s;
}

template <class C>
int generate_from(const tformer::LoadedModel& m, const Args& a) {
  const tformer::index cap = a.capacity > 0 ? a.capacity : 0;
  // --activations int8: the q8_0 / q4_0 matrices multiply int8 activations, repacked once as
  // q8_0x16 / q4_0x16 for the int8 kernel.
  tformer::ModelWeights weights = m.weights();
  tformer::set_activations(weights, a.activations);
  std::optional<tformer::RepackedWeights> repacked;
  if (a.activations == tformer::Activations::int8) {
    repacked.emplace(weights);
    std::printf(
        "int8 activations; %.2f MiB of q8_0 / q4_0 matrices repacked as q8_0x16 / q4_0x16\n",
        double(repacked->bytes()) / (1 << 20));
  }
  m.check_structure<C>();
  tformer::Decoder<C> dec(repacked ? repacked->view() : weights, m.dims(), m.params(),
                          {.capacity = cap, .kv_type = a.kv});
  std::printf("decoder: capacity %ld positions, %.2f MiB of %s cache and workspace\n",
              long(dec.options().capacity), double(dec.bytes()) / (1 << 20),
              tformer::kv_type_name(a.kv));
  if (!a.logits_path.empty()) return write_logits(dec, a);
  // --prompt: the text through the GGUF file's SentencePiece vocabulary.
  std::optional<tformer::SpmTokenizer> tok;
  if (!a.prompt.empty()) tok.emplace(tformer::SpmTokenizer::from_gguf(tformer::GgufFile::open(a.model)));
  const std::vector<std::int32_t> prompt = tok ? tok->encode(a.prompt) : a.tokens;
  const tformer::index room = dec.options().capacity - tformer::index(prompt.size()) + 1;
  if (room < 1) throw std::runtime_error("prompt longer than the decoder's capacity");
  const tformer::index steps = std::min<tformer::index>(a.steps < 0 ? 32 : a.steps, room);
  tformer::Rng rng(a.seed);
  std::vector<std::int32_t> out(static_cast<std::size_t>(steps));
  const auto t0 = Clock::now();
  const tformer::index n = dec.generate(0, prompt, steps, sampler_of(a), rng, out,
                                        tok ? tok->eos() : -1);
  const double s = seconds_since(t0);
  const std::vector<std::string> vocab = tok ? std::vector<std::string>{} : gguf_vocabulary(a.model);
  std::printf("prompt:");
  for (std::int32_t t : prompt) std::printf(" %d", t);
  std::printf("\ngenerated:");
  for (tformer::index i = 0; i < n; ++i) std::printf(" %d", out[std::size_t(i)]);
  std::printf("\n");
  if (tok) {
    std::printf("text: %s |", a.prompt.c_str());
    std::int32_t prev = prompt.back();
    for (tformer::index i = 0; i < n; ++i) {
      std::fputs(tok->decode(prev, out[std::size_t(i)]).c_str(), stdout);
      prev = out[std::size_t(i)];
    }
    std::printf("\n");
  } else if (!vocab.empty()) {
    std::printf("text: ");
    for (std::int32_t t : prompt) std::fputs(piece(vocab, t).c_str(), stdout);
    std::printf(" |");
    for (tformer::index i = 0; i < n; ++i) std::fputs(piece(vocab, out[std::size_t(i)]).c_str(), stdout);
    std::printf("\n");
  }
  std::printf("%zu prompt + %ld generated tokens in %.3f s: %.1f tokens/s\n", prompt.size(),
              long(n), s, double(tformer::index(prompt.size()) + n) / s);
  return 0;
}

// A Hugging Face directory or a GGUF file: the Config its structure needs.
int run_model(const Args& a) {
  const tformer::LoadedModel m = tformer::load_checkpoint(a.model);
  std::fputs(m.summary().c_str(), stdout);
  using namespace tformer::configs;
  const bool one_plus = m.info().norm == tformer::NormScale::OnePlusWeight;
  if (m.info().post_norms) return one_plus ? generate_from<Gemma2>(m, a) : generate_from<Gemma2Gguf>(m, a);
  if (m.info().norm == tformer::NormScale::OnePlusWeight) return generate_from<Gemma>(m, a);
  const bool interleaved = m.info().rope_layout == tformer::RopeLayout::Interleaved;
  if (m.info().ffn == tformer::FfnKind::MoE)
    return interleaved ? generate_from<MixtralInterleaved>(m, a) : generate_from<Mixtral>(m, a);
  return interleaved ? generate_from<LlamaInterleaved>(m, a) : generate_from<Llama>(m, a);
}

// The embedded default: seed 003's TrafficVLM with random weights and vision tokens.
int run_default(const Args& a) {
  using C = tformer::configs::TrafficVLM;
  const int steps = a.steps < 0 ? 32 : a.steps;
  std::printf("tformer-generate: TrafficVLM (seed 003), seeded random weights; kernels: %s\n",
              tformer::simd::arch_name);
  tformer::OwnedWeights<C> weights({}, a.seed);
  const std::vector<std::int32_t> prompt = {2, 45, 67, 12, 88, 131, 7, 3};  // [SOS] … command
  const int S = int(C::encoder_tokens);
  if (steps < 0 || steps > C::max_positions - tformer::index(prompt.size()))
    usage("--steps: at most 120 for TrafficVLM");
  tformer::Decoder<C> dec(weights.view(), {},
                         {.sequences = 1, .capacity = C::max_positions, .kv_type = a.kv});
  if (!a.tokens.empty()) {
    std::vector<float> vision(static_cast<std::size_t>(S * C::encoder_width), 0.0f);
    dec.set_encoder(0, {vision.data(), S, C::encoder_width});
    return write_logits(dec, a);
  }
  std::printf("  %ld layers, hidden %ld, heads %ld/%ld × %ld, vocab %ld; decoder memory %.2f MiB\n",
              long(C::layers), long(C::hidden), long(C::heads), long(C::kv_heads),
              long(C::head_dim), long(C::vocab), double(dec.bytes()) / (1 << 20));

  std::mt19937 rng(unsigned(a.seed));
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> vision(static_cast<std::size_t>(S * C::encoder_width));
  for (float& x : vision) x = normal(rng);

  const auto t_enc = Clock::now();
  dec.set_encoder(0, {vision.data(), S, C::encoder_width});
  const double enc_s = seconds_since(t_enc);

  // Prefill, then greedy decode with the cache, keeping every step's logits.
  const auto V = C::vocab;
  std::vector<float> step_logits(static_cast<std::size_t>((steps + 1) * V));
  std::vector<std::int32_t> tokens = prompt;
  const auto t_prefill = Clock::now();
  dec.forward(0, prompt, {step_logits.data(), 1, V});
  const double prefill_s = seconds_since(t_prefill);
  tformer::SamplerWorkspace sws(V);
  tformer::Rng unused(0);
  const auto t_decode = Clock::now();
  for (int i = 0; i < steps; ++i) {
    const std::int32_t next = tformer::sample({step_logits.data() + i * V, std::size_t(V)},
                                              tformer::Sampler::greedy(), unused, sws);
    tokens.push_back(next);
    dec.forward(0, std::span(&tokens.back(), 1), {step_logits.data() + (i + 1) * V, 1, V});
  }
  const double decode_s = seconds_since(t_decode);
  std::printf("  vision: %d tokens × %ld projected and cached for %ld layers in %.2f ms\n", S,
              long(C::encoder_width), long(C::layers), 1e3 * enc_s);
  std::printf("  prefill: %zu tokens in %.2f ms (%.0f tokens/s)\n", prompt.size(), 1e3 * prefill_s,
              double(prompt.size()) / prefill_s);
  std::printf("  decode: %d tokens in %.2f ms (%.0f tokens/s)\n", steps, 1e3 * decode_s,
              steps / decode_s);
  std::printf("  tokens:");
  for (std::size_t i = prompt.size(); i < tokens.size(); ++i) std::printf(" %d", tokens[i]);
  std::printf("\n");

  // Recompute everything in one pass on a fresh sequence: every cached step must agree.
  dec.reset(0);
  dec.set_encoder(0, {vision.data(), S, C::encoder_width});
  const auto T = tformer::index(tokens.size());
  std::vector<float> full(static_cast<std::size_t>(T * V));
  dec.forward(0, tokens, {full.data(), T, V}, tformer::LogitsFor::All);
  double worst = 0, scale = 0;
  for (int i = 0; i <= steps; ++i) {  // cached step i predicted position prompt − 1 + i
    const float* cached = step_logits.data() + i * V;
    const float* fresh = full.data() + (tformer::index(prompt.size()) - 1 + i) * V;
    for (tformer::index j = 0; j < V; ++j) {
      worst = std::max(worst, double(std::abs(cached[j] - fresh[j])));
      scale = std::max(scale, double(std::abs(fresh[j])));
    }
  }
  const bool same = worst <= 1e-5 * (1.0 + scale);
  std::printf("  cached decode vs full recomputation: max |Δlogit| %.2e over %d steps (%s)\n", worst,
              steps + 1, same ? "OK" : "MISMATCH");

  // YES/NO classification at the last position of a command (seed 003's [YES] = 4, [NO] = 5).
  dec.reset(0);
  dec.set_encoder(0, {vision.data(), S, C::encoder_width});
  const std::int32_t ids[2] = {4, 5};
  float logit[2], prob[2];
  dec.classify(0, prompt, ids, logit, prob);
  std::printf("  classify [YES]/[NO]: logits %.4f / %.4f, P(YES) = %.4f\n", logit[0], logit[1],
              prob[0]);
  return same ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  const Args args = parse(argc, argv);
  try {
    if (!args.model.empty()) return run_model(args);
    return args.checkpoint.empty() ? run_default(args) : run_checkpoint(args);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tformer-generate: %s\n", e.what());
    return 1;
  }
}
