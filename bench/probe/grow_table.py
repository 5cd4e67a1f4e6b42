# Markdown tables of bench/probe/grow_adapters.sh rows: python3 bench/probe/grow_table.py ROWS.jsonl [held|heldb|heldc]
import json,sys
rows=[json.loads(l) for l in open(sys.argv[1])]
tag=sys.argv[2] if len(sys.argv)>2 else "held"
peft=next(r for r in rows if r['run']=='peft')['scores']
all12=next(r for r in rows if r['run']=='all12')
base={r['task']:r for r in rows if r['run']=='held'}
sel=[r for r in rows if r['run']==tag]
print("| held-out task | old 11, gates on 11 | old 11, after add-adapter | change | new task, MeteoRA | new task, PEFT | gap | add-adapter s | ÷ 12-gate training |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
d=[];g=[];q=[]
for r in sel:
    t=r['task']; b=base[t]; old=list(b['gates11'])
    a=sum(b['gates11'][k] for k in old)/len(old); x=sum(r['grown'][k] for k in old)/len(old)
    n=r['grown'][t]; p=peft[t]; ratio=r['add_seconds']/all12['seconds']
    d.append(x-a); g.append(p-n); q.append(ratio)
    print(f"| {t} | {a:.3f} | {x:.3f} | {x-a:+.3f} | {n:.2f} | {p:.2f} | {p-n:+.2f} | {r['add_seconds']:.0f} | {ratio:.2f} |")
print(f"\nchange of the old 11: worst {min(d):+.3f}, mean {sum(d)/len(d):+.3f}; new task below PEFT: worst {max(g):+.2f}, mean {sum(g)/len(g):+.2f}, within 0.05 for {sum(1 for x in g if x<=0.05)}/{len(g)}; time ratio {min(q):.2f}–{max(q):.2f} (mean {sum(q)/len(q):.2f})")
rem=[r for r in rows if r['run']=='held' and 'removed' in r]
if tag=='held':
    print("\nremove-adapter (12-task gates → without T; mean over the other 11 tasks):")
    for r in rem:
        old=list(r['removed']); x=sum(all12['scores'][k] for k in old)/len(old); y=sum(r['removed'][k] for k in old)/len(old)
        print(f"  {r['task']}: {x:.3f} → {y:.3f} ({y-x:+.3f})")
