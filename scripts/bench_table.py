"""Side-by-side table of a pytest-benchmark JSON file, with ratios to a baseline variant.

    python scripts/bench_table.py results.json [--baseline eager] [--markdown]

Rows are grouped by (benchmark group, device, shape); within a group each variant's median time
is shown with its ratio to the baseline variant's (>1 = faster than the baseline) and, where the
benchmark recorded them, throughput (items/s) and effective bandwidth (GB/s) and peak memory.
"""
import argparse
import json
from collections import defaultdict

p = argparse.ArgumentParser()
p.add_argument("json")
p.add_argument("--baseline", default="eager")
p.add_argument("--markdown", action="store_true")
args = p.parse_args()

data = json.load(open(args.json))
groups = defaultdict(dict)
for b in data["benchmarks"]:
    info = b.get("extra_info", {})
    key = (b.get("group") or b["name"].split("[")[0], info.get("device", "?"), info.get("shape", ""))
    groups[key][info.get("variant", b["name"])] = (b["stats"]["median"], info)

machine = data.get("machine_info", {})
print(f"machine: {machine.get('cpu', {}).get('brand_raw', machine.get('processor', '?'))}, "
      f"{machine.get('cpu', {}).get('count', '?')} cpus; python {machine.get('python_version', '?')}")
hdr = ["group", "device", "shape", "variant", "median", f"speed vs {args.baseline}", "items/s", "GB/s", "peak MB"]
rows = []
for (group, device, shape), variants in sorted(groups.items()):
    base = variants.get(args.baseline, (None,))[0]
    for name, (median, info) in sorted(variants.items(), key=lambda kv: kv[1][0]):
        items = info.get("items")
        nbytes = info.get("bytes")
        rows.append([group, device, shape, name,
                     f"{median * 1e3:.3f} ms",
                     f"{base / median:.2f}x" if base else "-",
                     f"{items / median:.1f}" if items else "-",
                     f"{nbytes / median / 1e9:.1f}" if nbytes else "-",
                     f"{info['peak_mb']:.0f}" if info.get("peak_mb") else "-"])
if args.markdown:
    print("| " + " | ".join(hdr) + " |")
    print("|" + "---|" * len(hdr))
    for r in rows:
        print("| " + " | ".join(r) + " |")
else:
    widths = [max(len(str(x)) for x in col) for col in zip(hdr, *rows)]
    for r in [hdr] + rows:
        print("  ".join(str(x).ljust(w) for x, w in zip(r, widths)))
