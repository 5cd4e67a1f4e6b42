"""Markdown table of an add-adapter / remove-adapter check from grow_adapters.sh's rows.jsonl (docs/RESULTS.md).

    python3 bench/probe/grow_table.py OUT/rows.jsonl [RUN_TAG_PER_TASK ...]

For each held-out task: the eleven-task gates' mean over their eleven tasks, the same eleven after add-adapter,
the new task's MeteoRA and PEFT-oracle accuracy, add-adapter's seconds over the twelve-gate training's, and
remove-adapter's change on the other eleven. RUN_TAG_PER_TASK (e.g. "reverse=helde") picks which add-adapter row
to use for a task (default: the "held" row, which the full pipeline writes).
"""
import json
import sys

rows = [json.loads(line) for line in open(sys.argv[1])]
pick = dict(a.split("=") for a in sys.argv[2:])
peft = [r for r in rows if r["run"] == "peft"][-1]["scores"]
all12 = [r for r in rows if r["run"] == "all12"][-1]
held = {r["task"]: r for r in rows if r["run"] == "held"}
print("| held-out task | old 11, gates on 11 | after add-adapter | change | new task, MeteoRA | PEFT | gap | add-adapter s | ÷ 12-gate training | remove-adapter change |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
worst_old, gaps, ratios = 0.0, [], []
for task in sorted(held):
    base = held[task]["gates11"]
    tag = pick.get(task, "held")
    grown_row = held[task] if tag == "held" else [r for r in rows if r["run"] == tag and r["task"] == task][-1]
    grown = grown_row["grown"]
    old_before = sum(base.values()) / len(base)
    old_after = sum(grown[t] for t in base) / len(base)
    removed = held[task].get("removed")
    removed_change = (sum(removed[t] for t in base) / len(base) - sum(all12["scores"][t] for t in base) / len(base)) if removed else float("nan")
    secs = grown_row["add_seconds"]
    ratio = secs / all12["seconds"]
    gap = peft[task] - grown[task]
    worst_old = min(worst_old, old_after - old_before); gaps.append(gap); ratios.append(ratio)
    print(f"| {task} | {old_before:.3f} | {old_after:.3f} | {old_after - old_before:+.3f} | {grown[task]:.2f} | {peft[task]:.2f} | "
          f"{gap:+.2f} | {secs:.0f} | {ratio:.2f} | {removed_change:+.3f} |")
print()
print(f"worst old-task change {worst_old:+.3f}; new task within 0.05 of PEFT: {sum(g <= 0.05 + 1e-9 for g in gaps)}/{len(gaps)} "
      f"(largest gap {max(gaps):+.2f}); time ratio {min(ratios):.2f}–{max(ratios):.2f}; twelve-gate training {all12['seconds']:.0f} s")
