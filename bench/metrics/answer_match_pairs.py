"""Hypothesis/reference pairs scored with the original MeteoRA evaluation's accuracy definitions, for the test suite.

    python3 bench/metrics/answer_match_pairs.py > tests/Meteora.Tests/Evaluation/answer-match-pairs.json

The original code (NJUDeepEngine/meteora, eval/clean.py + eval/eval.py) strips and lower-cases the model's output,
then compares with the lower-cased ground truth: 'exact' is equality, 'fuzzy' is containment. The two
definitions are restated below in Python, on Python's own str.strip / str.lower, which is what the C# side must
reproduce (AnswerMatch.OriginalExact / OriginalFuzzy). Pure Python: runs anywhere.
"""
import json
import random
import sys

rng = random.Random(20261202)


def original_exact(hypothesis, reference):
    return hypothesis.strip().lower() == reference.lower()


def original_fuzzy(hypothesis, reference):
    return reference.lower() in hypothesis.strip().lower()


ANSWERS = ["Paris", "paris", "42", "-7", "3.50", "valid", "invalid", "True", "FALSE", "neither", "yes", "No",
           "A", "b", "(C)", "Straße", "STRASSE", "İstanbul", "istanbul", "ΟΔΟΣ", "οδος", "ὈΔΌΣ", "Σ", "café",
           "CAFÉ", "cafe\u0301", "日本", "😀", "ǅ", "ǆ", "Ǆ", "ﬁ", "FI", "K", "\u212a", "µ", "Μ", "", " ", "\t"]
SPACES = ["", " ", "  ", "\n", "\t", "\u00a0", "\u2003", "\x1c", " \n"]


def case_variant(text):
    r = rng.random()
    return text.upper() if r < 0.25 else text.lower() if r < 0.5 else text.title() if r < 0.6 else text


def pad(text):
    return rng.choice(SPACES) + text + rng.choice(SPACES) if rng.random() < 0.4 else text


pairs = []
for _ in range(400):
    ref = rng.choice(ANSWERS)
    kind = rng.random()
    if kind < 0.35:
        hyp = case_variant(ref)                                        # same answer, other case
    elif kind < 0.6:
        hyp = f"{rng.choice(['the answer is', 'it is', 'so:', ''])} {case_variant(ref)}{rng.choice(['', '.', ' indeed'])}"
    else:
        hyp = rng.choice(ANSWERS)                                       # another answer
    hyp, ref = pad(hyp), (pad(ref) if rng.random() < 0.2 else ref)
    pairs.append({"hypothesis": hyp, "reference": ref,
                  "exact": original_exact(hyp, ref), "fuzzy": original_fuzzy(hyp, ref)})

json.dump({"source": "NJUDeepEngine/meteora eval/eval.py eval_acc after eval/clean.py clean_default",
           "python": sys.version.split()[0], "pairs": pairs}, sys.stdout, ensure_ascii=False, indent=1)
print()
