#!/usr/bin/env python3
"""Writes the seed corpus of gguf_fuzz.cpp: tests/fuzz/corpus_gguf/.

Each input is one selector byte (its low 2 bits: the misalignment of the fuzz target's copy;
0 here) followed by a GGUF file written from ggml's docs/gguf.md with the standard library only:
metadata of every value type (a nested array and general.alignment included) and tensors of
every type tformer reads (f32, f16, bf16, q8_0, q4_0) plus one it lists but refuses (q4_K).

Run once; the outputs are committed."""
import os
import random
import struct

here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus_gguf")
os.makedirs(here, exist_ok=True)
rng = random.Random(1)

F32, F16, Q4_0, Q8_0, Q4_K, BF16 = 0, 1, 2, 8, 12, 30


def s(text):
    b = text.encode()
    return struct.pack("<Q", len(b)) + b


def kv(key, vtype, payload):
    return s(key) + struct.pack("<I", vtype) + payload


def half():
    """Random finite f16 bits with a normal exponent (block scales too)."""
    return struct.pack("<H", rng.randrange(2) << 15 | rng.randrange(5, 21) << 10 | rng.randrange(1024))


def tensor_bytes(ggml_type, rows, cols):
    out = b""
    for _ in range(rows):
        if ggml_type == F32:
            out += struct.pack("<%df" % cols, *[rng.gauss(0, 1) for _ in range(cols)])
        elif ggml_type == F16:
            out += b"".join(half() for _ in range(cols))
        elif ggml_type == BF16:
            out += b"".join(struct.pack("<H", rng.randrange(0x3c00, 0x4100)) for _ in range(cols))
        elif ggml_type == Q8_0:
            out += b"".join(half() + bytes(rng.randrange(256) for _ in range(32)) for _ in range(cols // 32))
        elif ggml_type == Q4_0:
            out += b"".join(half() + bytes(rng.randrange(256) for _ in range(16)) for _ in range(cols // 32))
        elif ggml_type == Q4_K:
            out += bytes(rng.randrange(256) for _ in range(144 * (cols // 256)))
    return out


def gguf(kvs, tensors, alignment=32, version=3):
    """tensors: (name, ggml_type, dims [ne0, ne1, ...], data bytes)."""
    out = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(kvs)) + b"".join(kvs)
    offset = 0
    offsets = []
    for name, ggml_type, dims, data in tensors:
        offsets.append(offset)
        out += s(name) + struct.pack("<I", len(dims)) + struct.pack("<%dQ" % len(dims), *dims)
        out += struct.pack("<IQ", ggml_type, offset)
        offset = (offset + len(data) + alignment - 1) // alignment * alignment
    out += b"\0" * (-len(out) % alignment)
    start = len(out)
    for (name, ggml_type, dims, data), off in zip(tensors, offsets):
        out += b"\0" * (start + off - len(out)) + data
    return out


def write(name, data):
    with open(os.path.join(here, name), "wb") as f:
        f.write(b"\0" + data)


metadata = [
    kv("general.architecture", 8, s("llama")),
    kv("llama.block_count", 4, struct.pack("<I", 1)),
    kv("llama.context_length", 10, struct.pack("<Q", 64)),
    kv("llama.attention.layer_norm_rms_epsilon", 6, struct.pack("<f", 1e-5)),
    kv("t.u8", 0, b"\x07"), kv("t.i8", 1, b"\xf9"), kv("t.u16", 2, struct.pack("<H", 7)),
    kv("t.i16", 3, struct.pack("<h", -7)), kv("t.i32", 5, struct.pack("<i", -7)),
    kv("t.bool", 7, b"\x01"), kv("t.i64", 11, struct.pack("<q", -7)),
    kv("t.f64", 12, struct.pack("<d", 0.5)),
    kv("tokenizer.ggml.tokens", 9, struct.pack("<IQ", 8, 3) + s("<s>") + s("a") + s("bc")),
    kv("tokenizer.ggml.scores", 9, struct.pack("<IQ3f", 6, 3, 0.0, -1.0, -2.0)),
    kv("t.nested", 9, struct.pack("<IQ", 9, 2) + struct.pack("<IQ2I", 4, 2, 1, 2) + struct.pack("<IQ", 8, 1) + s("x")),
]

write("all_types", gguf(metadata, [
    ("token_embd.weight", Q8_0, [64, 3], tensor_bytes(Q8_0, 3, 64)),
    ("blk.0.attn_q.weight", Q4_0, [32, 2], tensor_bytes(Q4_0, 2, 32)),
    ("blk.0.attn_k.weight", F16, [8, 2], tensor_bytes(F16, 2, 8)),
    ("blk.0.attn_v.weight", BF16, [8, 2], tensor_bytes(BF16, 2, 8)),
    ("output_norm.weight", F32, [8], tensor_bytes(F32, 1, 8)),
    ("blk.0.ffn_up.weight", Q4_K, [256], tensor_bytes(Q4_K, 1, 256)),
]))
write("aligned_64_v2", gguf([kv("general.alignment", 4, struct.pack("<I", 64))], [
    ("a", F32, [4, 2, 1], tensor_bytes(F32, 2, 4)),
    ("b", F16, [3], tensor_bytes(F16, 1, 3)),
], alignment=64, version=2))
write("aligned_8", gguf([kv("general.alignment", 4, struct.pack("<I", 8))], [
    ("v", BF16, [5], tensor_bytes(BF16, 1, 5)),
    ("m", Q8_0, [32, 1, 2], tensor_bytes(Q8_0, 2, 32)),
], alignment=8))
write("metadata_only", gguf(metadata[:6], []))
write("empty_tensor", gguf([], [("e", F32, [0, 3], b""), ("f", F32, [2], tensor_bytes(F32, 1, 2))]))
