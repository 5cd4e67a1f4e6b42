#!/usr/bin/env python3
"""Greedy completions from a running `meteora serve`, for comparing serving modes token for token.

usage: serve_outputs.py URL OUT.json [--concurrency N]

Asks /v1/models for every model (meteora, each adapter, base), then sends the same prompts to each, greedy
(temperature 0), 24 new tokens, meteora at top-1 and top-2 through the "meteora" extension. Requests go out
N at a time (default 8) so the server batches them. Writes {key: text} to OUT.json. Standard library only.
"""
import json, sys, urllib.request
from concurrent.futures import ThreadPoolExecutor

PROMPTS = ["The quick brown fox", "1. reverse: abc =>", "Once upon a time there was", "sort: d b a c =>",
           "Problems:\n1. upper: hello =>\n2. length: word =>\nAnswers:\n1.", "In the beginning"]

def post(url, body):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.load(r)

def main():
    url, out = sys.argv[1].rstrip("/"), sys.argv[2]
    n = int(sys.argv[sys.argv.index("--concurrency") + 1]) if "--concurrency" in sys.argv else 8
    with urllib.request.urlopen(url + "/v1/models", timeout=60) as r:
        models = [m["id"] for m in json.load(r)["data"]]
    jobs = []
    for m in models:
        variants = [("top1", {"top_k": 1}), ("top2", {"top_k": 2})] if m == "meteora" else [("", None)]
        for tag, ext in variants:
            for i, p in enumerate(PROMPTS):
                body = {"model": m, "prompt": p, "max_tokens": 24, "temperature": 0}
                if ext: body["meteora"] = ext
                jobs.append((f"{m}{'-' + tag if tag else ''}/{i}", body))
    with ThreadPoolExecutor(n) as pool:
        texts = dict(zip([k for k, _ in jobs], pool.map(lambda j: post(url + "/v1/completions", j[1])["choices"][0]["text"], jobs)))
    json.dump(texts, open(out, "w"), indent=1, sort_keys=True)
    print(f"{len(texts)} completions from {len(models)} models -> {out}")

if __name__ == "__main__":
    main()
