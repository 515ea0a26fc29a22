#!/usr/bin/env python3
"""Writes the seed corpus of safetensors_fuzz.cpp: small valid safetensors files, each input a
selector byte (its low 3 bits: the misalignment of the fuzz target's copy) and then the file.
Written with the standard library only, from the format's description (8-byte little-endian
header size N, N bytes of JSON, the data buffer), not with the reader or the official library.
  tests/fuzz/make_safetensors_corpus.py tests/fuzz/corpus_safetensors

Run once; the outputs are committed."""
import json
import os
import random
import struct
import sys

rng = random.Random(20261201)
SIZES = {"F32": 4, "F16": 2, "BF16": 2, "U8": 1, "I8": 1, "BOOL": 1, "I32": 4, "I64": 8,
         "F64": 8, "U16": 2}


def tensor_file(tensors, metadata=None, pad=8):
    """tensors: [(name, dtype, shape)], random data, in the order given; the header padded with
    spaces so the buffer starts at a multiple of `pad`."""
    header, data = {}, b""
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape in tensors:
        n = SIZES[dtype]
        for d in shape:
            n *= d
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + n]}
        data += bytes(rng.randrange(256) for _ in range(n))
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((-(8 + len(text))) % pad)
    return struct.pack("<Q", len(text)) + text + data


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "corpus_safetensors")
    os.makedirs(out, exist_ok=True)
    files = {
        "empty": (0, tensor_file([])),
        "float_types": (0, tensor_file(
            [("w.f32", "F32", [2, 3]), ("w.f16", "F16", [3, 4]), ("w.bf16", "BF16", [2, 4]),
             ("norm", "BF16", [4])], {"format": "pt"})),
        "mixed": (3, tensor_file(
            [("ids", "I64", [2]), ("mask", "BOOL", [3]), ("scalar", "F32", []),
             ("empty", "F16", [0, 5]), ("q", "I8", [2, 2]), ("x", "F64", [1])])),
        "unaligned": (0, tensor_file(
            [("b", "U8", [1]), ("w", "F32", [2, 2]), ("h", "F16", [3])], pad=1)),
        "metadata": (1, tensor_file([("t", "U16", [2, 1])], {"a": "1", "b": "caf\u00e9"})),
    }
    for name, (selector, body) in files.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(bytes([selector]) + body)


if __name__ == "__main__":
    main()
