#!/usr/bin/env python3
"""Prepares a `demo --from-scratch` build for shipping as models/meteora-demo (issue #14; maintainers' tool).

    python3 scripts/ship_demo_models.py BUILD [--install]

BUILD holds base/, adapters/ and lora-b/ as `demo --from-scratch` wrote them (bench/device-demo.sh PART=full brings
them back as demo-models.tar.gz.part-*). The script stages a copy without the training logs (metrics.jsonl), takes
those files out of each folder's meteora-card.json, checks every remaining sealed file against its card (a damaged
transfer stops here), checks the 40 MB budget, and prints the model card's file table (bytes, SHA-256). With
--install it swaps the staged copy in for models/meteora-demo, keeping the folder's README.md with its file table
replaced; the README's prose (recipe, command, machine, time, measurements) stays for you to update.
"""
import hashlib, json, os, shutil, sys, tempfile

BUDGET = 40_000_000
DROPPED = {"metrics.jsonl"}
SHIPPED = ["base", "adapters", "lora-b"]


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fail(message):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(1)


def main(argv):
    if len(argv) not in (2, 3) or (len(argv) == 3 and argv[2] != "--install"):
        fail("usage: scripts/ship_demo_models.py BUILD [--install]")
    build, install = argv[1], len(argv) == 3
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    target = os.path.join(repo, "models", "meteora-demo")
    for part in SHIPPED:
        if not os.path.isdir(os.path.join(build, part)):
            fail(f"{os.path.join(build, part)}: not found (BUILD must hold {', '.join(SHIPPED)})")

    stage = tempfile.mkdtemp(prefix="meteora-demo.", dir=os.path.join(repo, "models"))
    try:
        for part in SHIPPED:
            shutil.copytree(os.path.join(build, part), os.path.join(stage, part),
                            ignore=lambda d, names: [n for n in names if n in DROPPED])
        # Cards: drop the entries of files not shipped, then check every entry against the staged file.
        for folder, _, files in os.walk(stage):
            if "meteora-card.json" not in files:
                continue
            card_path = os.path.join(folder, "meteora-card.json")
            with open(card_path) as f:
                card = json.load(f)
            for name in DROPPED:
                card["sha256"].pop(name, None)
            for rel, expected in card["sha256"].items():
                path = os.path.join(folder, rel)
                if not os.path.isfile(path):
                    fail(f"{path}: listed in its meteora-card.json but missing")
                if sha256(path) != expected:
                    fail(f"{path}: SHA-256 differs from its meteora-card.json (damaged in transfer?)")
            with open(card_path, "w") as f:
                json.dump(card, f, indent=2)
            # A folder's own model card (base/README.md, not sealed) lists its files: drop the rows of files not shipped.
            own = os.path.join(folder, "README.md")
            if os.path.isfile(own):
                with open(own) as f:
                    lines = f.readlines()
                kept = [l for l in lines if not any(l.startswith(f"| {name} |") for name in DROPPED)]
                if len(kept) != len(lines):
                    with open(own, "w") as f:
                        f.writelines(kept)
        rows, total = [], 0
        for folder, dirs, files in os.walk(stage):
            dirs.sort()
            for name in sorted(files):
                path = os.path.join(folder, name)
                rel = os.path.relpath(path, stage)
                size = os.path.getsize(path)
                total += size
                rows.append((rel, size, sha256(path)))
        rows.sort()
        readme = os.path.join(target, "README.md")
        readme_size = os.path.getsize(readme) if os.path.isfile(readme) else 0
        if total + readme_size > BUDGET:
            fail(f"{total + readme_size:,} bytes with the README: over the {BUDGET:,}-byte budget")
        table = ["## Files (SHA-256)", "", "| file | bytes | SHA-256 |", "| --- | ---: | --- |"]
        table += [f"| {rel} | {size:,} | `{digest}` |" for rel, size, digest in rows]
        print("\n".join(table))
        print(f"\n{len(rows)} files, {total:,} bytes (+ README.md)", file=sys.stderr)
        if not install:
            return
        if os.path.isfile(readme):
            with open(readme) as f:
                text = f.read()
            head = text.split("## Files (SHA-256)")[0].rstrip() + "\n\n"
            with open(os.path.join(stage, "README.md"), "w") as f:
                f.write(head + "\n".join(table) + "\n")
        old = target + ".old"
        if os.path.exists(old):
            shutil.rmtree(old)
        if os.path.exists(target):
            os.rename(target, old)
        os.rename(stage, target)
        stage = None
        if os.path.exists(old):
            shutil.rmtree(old)
        print(f"installed in {target}; update its README.md's recipe and numbers, then docs/RESULTS.md", file=sys.stderr)
    finally:
        if stage and os.path.exists(stage):
            shutil.rmtree(stage)


if __name__ == "__main__":
    main(sys.argv)
