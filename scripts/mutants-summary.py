#!/usr/bin/env python3
"""Summarises cargo-mutants output directories (outcomes.json, one per shard) as one markdown table."""
import json
import sys
from pathlib import Path

# One or more cargo-mutants output directories (one per shard); their outcomes are merged.
outs = [Path(arg) for arg in sys.argv[1:]] or [Path("mutants.out")]
merged = []
for out in outs:
    merged.extend(json.loads((out / "outcomes.json").read_text())["outcomes"])
rows = []
counts = {}
for outcome in merged:
    scenario = outcome["scenario"]
    if scenario == "Baseline" or not isinstance(scenario, dict):
        continue
    mutant = scenario["Mutant"]
    summary = outcome["summary"]
    counts[summary] = counts.get(summary, 0) + 1
    span = mutant.get("span", {}).get("start", {})
    where = f'{mutant["file"]}:{span.get("line", "?")}'
    function = (mutant.get("function") or {}).get("function_name", "")
    rows.append((summary, where, function, mutant.get("replacement", ""), mutant.get("genre", "")))

caught = counts.get("CaughtMutant", 0)
missed = counts.get("MissedMutant", 0)
timeout = counts.get("Timeout", 0)
unviable = counts.get("Unviable", 0)
judged = caught + missed
print("| outcome | mutants |")
print("|---|---|")
print(f"| caught (a violated Always property) | {caught} |")
print(f"| missed | {missed} |")
print(f"| timeout | {timeout} |")
print(f"| unviable (does not build) | {unviable} |")
if judged:
    print(f"\nScore: {caught}/{judged} = {100.0 * caught / judged:.1f}% of viable mutants caught "
          f"(timeouts not counted).")
print("\n## Missed mutants\n")
print("| where | function | mutation |")
print("|---|---|---|")
for summary, where, function, replacement, genre in sorted(rows):
    if summary == "MissedMutant":
        print(f"| {where} | {function} | {genre}: `{replacement}` |")
if timeout:
    print("\n## Timeouts\n")
    for summary, where, function, replacement, genre in sorted(rows):
        if summary == "Timeout":
            print(f"- {where} {function}: `{replacement}`")
