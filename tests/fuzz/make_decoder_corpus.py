#!/usr/bin/env python3
"""Writes the seed corpus of decoder_fuzz.cpp: programs of mostly valid Decoder calls (encoded as
that file's Reader reads them), so that mutations start from calls that reach the kernels.
  tests/fuzz/make_decoder_corpus.py tests/fuzz/corpus_decoder"""
import random
import sys


def tokens(r, n):
    out = [n]
    for _ in range(n):
        out += [1, r.randrange(37)]
    return out


def step(r):
    op = r.choice([0, 0, 0, 1, 2, 3, 4, 5])
    b = [1, r.randrange(2), op]  # seq 0 or 1
    if op == 0:
        b += tokens(r, r.randrange(1, 5))
    elif op == 1:
        b += tokens(r, r.randrange(1, 3)) + tokens(r, r.randrange(1, 3))
        b += [1, 1, r.randrange(2), 2]  # the other sequence, two entries, Last/All, 2 rows
    elif op == 2:
        b += [4, r.randrange(6)]  # truncate to a small length
    elif op == 4:
        b += tokens(r, r.randrange(1, 4)) + [r.randrange(1, 4), r.randrange(4), 3, 32, 4, 5, 3,
                                             29, r.randrange(256), 7]
    elif op == 5:
        b += tokens(r, r.randrange(1, 4)) + [2, 1, 4, 1, 5, 0]
    return b


def encoder(r, seq):
    rows = r.randrange(1, 6)
    b = [2, seq, rows, 1]
    for _ in range(rows * 16):
        b += [1, r.randrange(256)]
    return b + [1]  # no mask


def program(r):
    b = encoder(r, 0) + encoder(r, 1)
    for _ in range(r.randrange(4, 12)):
        b += [r.randrange(2)] + step(r)  # the Llama-shaped or the VLM decoder
    return bytes(b)


if __name__ == "__main__":
    r = random.Random(20261201)
    for i in range(12):
        with open(f"{sys.argv[1]}/program{i:02d}", "wb") as f:
            f.write(program(r))
