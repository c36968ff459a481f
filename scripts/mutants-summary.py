#!/usr/bin/env python3
"""Summarises cargo-mutants output directories as one markdown table.

    mutants-summary.py [--list NAMES] [--write OUT] DIR...

Each DIR is a cargo-mutants output directory (one per shard, or one per resumed run); a mutant
judged in several takes the outcome of the last DIR that names it. With --list (the output of
`cargo mutants --list` for the current tree), only the mutants in that list count, and the ones
not judged yet are counted as such. With --write, the merged judgments are written to OUT as
caught.txt, missed.txt, timeout.txt and unviable.txt, a directory this script reads back and
whose lists together make a `JUDGED` file for scripts/mutants.sh.
"""
import sys
from pathlib import Path

OUTCOMES = [("caught.txt", "CaughtMutant"), ("missed.txt", "MissedMutant"),
            ("timeout.txt", "Timeout"), ("unviable.txt", "Unviable")]

args = sys.argv[1:]
universe = None
write = None
while args[:1] in (["--list"], ["--write"]):
    if len(args) < 2:
        sys.exit(f"mutants-summary.py: {args[0]} needs a path")
    if args[0] == "--list":
        universe = [line for line in Path(args[1]).read_text().splitlines() if line.strip()]
    else:
        write = Path(args[1])
    args = args[2:]
outs = [Path(arg) for arg in args] or [Path("mutants.out")]
outcome_of = {}
for out in outs:
    if not out.is_dir():
        sys.exit(f"mutants-summary.py: {out} is not a cargo-mutants output directory")
    for file, summary in OUTCOMES:
        path = out / file
        if path.exists():
            for name in path.read_text().splitlines():
                if name.strip():
                    outcome_of[name] = summary
if universe is not None:
    outcome_of = {name: outcome_of[name] for name in universe if name in outcome_of}
if write is not None:
    write.mkdir(parents=True, exist_ok=True)
    for file, summary in OUTCOMES:
        names = sorted(name for name, judged in outcome_of.items() if judged == summary)
        (write / file).write_text("".join(name + "\n" for name in names))


def parts(name):
    """(where, function, mutation) of a name like `f.rs:1:2: replace a with b in F`."""
    where, _, rest = name.partition(": ")
    where = where.rsplit(":", 1)[0]
    mutation, found, function = rest.rpartition(" in ")
    if not found:
        # `replace F -> T with V`: the function is the thing replaced.
        mutation = rest
        function = rest.removeprefix("replace ").split(" -> ")[0].split(" with ")[0]
    return where, function, mutation


counts = {}
for summary in outcome_of.values():
    counts[summary] = counts.get(summary, 0) + 1
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
if universe is not None:
    print(f"| not judged yet | {len(universe) - len(outcome_of)} of {len(universe)} |")
if judged:
    print(f"\nScore: {caught}/{judged} = {100.0 * caught / judged:.1f}% of viable mutants caught "
          f"(timeouts not counted).")
rows = sorted(parts(name) + (summary,) for name, summary in outcome_of.items())
print("\n## Missed mutants\n")
print("| where | function | mutation |")
print("|---|---|---|")
for where, function, mutation, summary in rows:
    if summary == "MissedMutant":
        print(f"| {where} | {function} | `{mutation}` |")
if timeout:
    print("\n## Timeouts\n")
    for where, function, mutation, summary in rows:
        if summary == "Timeout":
            print(f"- {where} {function}: `{mutation}`")
