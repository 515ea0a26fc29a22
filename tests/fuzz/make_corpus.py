#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets.

tests/fuzz/corpus/ (llama2c_fuzz.cpp): legacy, version 1 and version 2 models, a header alone, a
tokenizer. Each input starts with one selector byte (even: model reader, odd: tokenizer reader of
vocab 1 + (selector / 2) % 64), then the file bytes.

tests/fuzz/corpus_tokenizer/ (tokenizer_fuzz.cpp): a flags byte (bit 0 BOS, bit 1 EOS), int32
vocab_size, int32 prompt length, the prompt, then a tokenizer.bin.

Run once; the outputs are committed."""
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


def tokenizer(pieces, scores=None):
    out = struct.pack("<i", max(1, max(len(p) for p in pieces)))
    for i, p in enumerate(pieces):
        score = rng.uniform(-10, 0) if scores is None else scores[i]
        out += struct.pack("<fi", score, len(p)) + p
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

# The tokenizer target's seeds: llama2.c's layout (specials, 256 byte tokens, merges), a small
# vocabulary without byte tokens, scores that tie or are not finite with empty and repeated pieces,
# a vocabulary too small for BOS, and invalid UTF-8.
layout = [b"<unk>", b"\n<s>\n", b"\n</s>\n"] + [b"<0x%02X>" % b for b in range(256)]
words = [b" ", b"h", b"e", b"l", b"o", b"w", b"r", b"d", b"he", b"ll", b"hell", b"hello", b" hello",
         b" w", b"or", b"ld", b"orld", b" world", "\u00e9".encode(), " \u00e9".encode()]
odd = [b"a", b"b", b"", b"ab", b"ab", b"aa", b"aaa", b"ba", b"bb", b"aab"]
odd_scores = [-1.0, -1.0, 0.0, -1.0, 5.0, float("nan"), -1e10, float("-inf"), float("inf"), -0.0]


def tokenizer_input(flags, vocab, prompt, file):
    return struct.pack("<Bii", flags, vocab, len(prompt)) + prompt + file


tokenizer_files = {
    "layout": tokenizer_input(1, len(layout) + len(words), "hello world \u00e9\u20ac!".encode(),
                              tokenizer(layout + words)),
    "small": tokenizer_input(3, 8, b"abab ba", tokenizer([b"<unk>", b"\n<s>\n", b"\n</s>\n", b" ", b"a", b"b", b"ab", b" ab"])),
    "odd_scores": tokenizer_input(0, 3 + len(odd), b"aaaa bbbb abab",
                                  tokenizer([b"<unk>", b"<s>", b"</s>"] + odd, [0, 0, 0] + odd_scores)),
    "no_bos": tokenizer_input(1, 1, b"", tokenizer([b"<unk>"])),
    "bad_utf8": tokenizer_input(2, len(layout) + len(words), b"\xc3\xa9\xff\x80\xe2\x82 hello\xf0\x9f\x98",
                                tokenizer(layout + words)),
}
tokenizer_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus_tokenizer")
os.makedirs(tokenizer_dir, exist_ok=True)
for name, data in tokenizer_files.items():
    with open(os.path.join(tokenizer_dir, name), "wb") as f:
        f.write(data)
