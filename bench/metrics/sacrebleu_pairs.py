"""Hypothesis/reference pairs scored by sacrebleu (the reference implementation of BLEU), for the CPU test suite.

Run where sacrebleu is installed (the GPU machines):  python3 bench/metrics/sacrebleu_pairs.py > pairs.json
The pairs are generated here (seeded) and include empty strings, unicode, punctuation next to digits and
one-token answers. Each pair is scored as a one-sentence corpus (how TaskMetric scores one answer) and
consecutive groups of 20 pairs as corpora (how a task's BLEU is computed). Defaults of corpus_bleu throughout:
13a tokenisation, n <= 4, exp smoothing, case-sensitive.
"""
import json
import random
import sys

import sacrebleu

rng = random.Random(20261202)
WORDS = ["the", "cat", "sat", "on", "a", "mat", "dog", "runs", "3.50", "1,000", "42", "hello", "world", "naïve",
         "café", "日本語", "Привет", "😀", "don't", "e.g.", "U.S.A.", "$5", "(x)", "well-known", "C++", "x=y+1",
         "--", "...", "'quoted'", "\"dq\"", "50%", "#tag", "a/b", "end.", "Über", "straße", "ß", "İ", "ﬁ", "٣"]


def sentence(n):
    return " ".join(rng.choice(WORDS) for _ in range(n))


def mutate(ref):
    words = ref.split(" ") if ref else []
    kind = rng.random()
    if kind < 0.1:
        return ref                                     # identical
    if kind < 0.2:
        return sentence(rng.randint(1, 12))            # unrelated
    if kind < 0.25:
        return ""                                      # empty answer
    out = list(words)
    for _ in range(rng.randint(1, 4)):
        op = rng.random()
        if op < 0.4 and out:
            out[rng.randrange(len(out))] = rng.choice(WORDS)
        elif op < 0.7 and out:
            del out[rng.randrange(len(out))]
        elif op < 0.85:
            out.insert(rng.randint(0, len(out)), rng.choice(WORDS))
        elif len(out) > 1:
            i = rng.randrange(len(out) - 1)
            out[i], out[i + 1] = out[i + 1], out[i]
    text = " ".join(out)
    if rng.random() < 0.15:
        text = text.upper() if rng.random() < 0.5 else text.replace(" ", "  ")
    return text


edge = [("", ""), ("", "a"), ("a", ""), ("a", "a"), ("a", "b"), ("a b", "a b"), ("The cat.", "The cat."),
        ("the cat", "The cat"), ("café", "cafe"), ("日本語", "日本語"), ("😀 😀", "😀"), ("3.50", "3.50"),
        ("3.50", "3 . 50"), ("1,000 dogs", "1,000 dogs"), ("hello , world", "hello, world"), ("x", "x x x x"),
        ("x x x x", "x"), ("a b c d e", "a b c d e f"), ("  padded  ", "padded"), ("tab\there", "tab here"),
        ("line\nbreak", "line break"), ("&amp; &lt;", "& <"), ("<skipped>", "skipped"), ("-", "-"),
        ("a-b", "a - b"), ("U.S.A.", "U.S.A"), ("Ω", "Ω"), ("e\u0301", "é"), ("42", "42."), ("...", "…")]
pairs = list(edge)
for _ in range(300):
    ref = sentence(rng.randint(1, 16)) if rng.random() > 0.05 else ""
    pairs.append((mutate(ref), ref))

scored = [{"hypothesis": h, "reference": r, "bleu": sacrebleu.corpus_bleu([h], [[r]]).score} for h, r in pairs]
corpora = []
for start in range(0, len(pairs), 20):
    group = pairs[start:start + 20]
    corpora.append({"first": start, "count": len(group),
                    "bleu": sacrebleu.corpus_bleu([h for h, _ in group], [[r for _, r in group]]).score})
json.dump({"sacrebleu_version": sacrebleu.__version__, "settings": "corpus_bleu defaults: 13a, n<=4, exp smoothing, cased",
           "pairs": scored, "corpora": corpora}, sys.stdout, ensure_ascii=False, indent=1)
print()
