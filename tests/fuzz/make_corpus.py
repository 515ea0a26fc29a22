#!/usr/bin/env python3
"""Writes the seed corpus of the llama2.c reader fuzz target (tests/fuzz/corpus/): legacy,
version 1 and version 2 models, a header alone, a tokenizer.

Each input starts with one selector byte (even: model reader, odd: tokenizer reader of vocab
1 + (selector / 2) % 64), then the file bytes. Run once; the outputs are committed."""
import os
import random
import struct

here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
os.makedirs(here, exist_ok=True)
rng = random.Random(1)


def model(dim, hidden, layers, heads, kv, vocab, seq, tied):
    hd = dim // heads
    kvd = kv * hd
    counts = [vocab * dim, layers * dim, layers * dim * dim, layers * kvd * dim, layers * kvd * dim,
              layers * dim * dim, layers * dim, layers * hidden * dim, layers * dim * hidden,
              layers * hidden * dim, dim, 2 * seq * (hd // 2)]
    if not tied:
        counts.append(vocab * dim)
    floats = [rng.gauss(0, 0.1) for _ in range(sum(counts))]
    header = struct.pack("<7i", dim, hidden, layers, heads, kv, vocab if tied else -vocab, seq)
    return header + struct.pack("<%df" % len(floats), *floats)


def versioned(version, dim, hidden, layers, heads, kv, vocab, seq, tied, gs=0):
    """export.py's version 1 (float32) or 2 (int8 + float32 scales per group of gs)."""
    hd = dim // heads
    kvd = kv * hd
    header = struct.pack("<Ii7iB", 0x616b3432, version, dim, hidden, layers, heads, kv, vocab, seq,
                         int(tied))
    if version == 2:
        header += struct.pack("<i", gs)
    out = header + b"\0" * (256 - len(header))
    norms = 2 * layers * dim + dim
    out += struct.pack("<%df" % norms, *[rng.gauss(1, 0.1) for _ in range(norms)])
    shapes = [(1, vocab * dim)] + [(layers, n) for n in (dim * dim, kvd * dim, kvd * dim, dim * dim,
                                                          hidden * dim, dim * hidden, hidden * dim)]
    if not tied:
        shapes.append((1, vocab * dim))
    for count, n in shapes:
        for _ in range(count):
            if version == 1:
                out += struct.pack("<%df" % n, *[rng.gauss(0, 0.1) for _ in range(n)])
            else:
                out += struct.pack("<%db" % n, *[rng.randint(-127, 127) for _ in range(n)])
                out += struct.pack("<%df" % (n // gs), *[rng.uniform(0, 0.01) for _ in range(n // gs)])
    return out


def tokenizer(pieces):
    out = struct.pack("<i", max(len(p) for p in pieces))
    for p in pieces:
        out += struct.pack("<fi", rng.uniform(-10, 0), len(p)) + p
    return out


files = {
    "model_tied": b"\0" + model(8, 12, 1, 2, 1, 5, 3, True),
    "model_untied": b"\0" + model(8, 8, 2, 4, 2, 4, 2, False),
    "header_only": b"\0" + struct.pack("<7i", 8, 12, 1, 2, 1, 5, 3),
    "v1_untied": b"\0" + versioned(1, 8, 12, 1, 2, 1, 5, 3, False),
    "v2_tied": b"\0" + versioned(2, 8, 12, 2, 2, 1, 5, 3, True, 4),
    "v2_untied": b"\0" + versioned(2, 8, 8, 1, 4, 2, 4, 2, False, 8),
    "tokenizer": bytes([2 * 7 + 1]) + tokenizer([b"<unk>", b"\n<s>\n", b"\n</s>\n", b" ", b"a", b"b", b"ab", b" ab"]),
}
for name, data in files.items():
    with open(os.path.join(here, name), "wb") as f:
        f.write(data)
