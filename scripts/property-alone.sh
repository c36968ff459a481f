#!/usr/bin/env bash
# Which planted bugs one Always property catches on its own, and how that compares with what
# the default check reports first. For each bug it runs the default check twice:
#   model check --bug NAME                      (every property: the first violation)
#   model check --bug NAME --property PROPERTY  (only PROPERTY judged)
# and prints one line: the first violation and its length, then PROPERTY's own counterexample
# (its length, where it was found, and which other properties its last state also breaks).
# A property that is never the first violation shows here whether it still catches bugs, and
# which property gets there first. Writes nothing; exits 0, or 2 for a name that is not an
# Always property.
#
#   scripts/property-alone.sh StateMachineSafety                  # every bug
#   scripts/property-alone.sh StateMachineSafety double-vote ...  # some of them
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ $# -lt 1 ]]; then
  echo "usage: scripts/property-alone.sh PROPERTY [BUG...]" >&2
  exit 2
fi
property=$1
shift
cargo build --release -p model --quiet
model=target/release/model
# A wrong property name gets the model's own one-line error, and exit 2.
set +e
error=$("$model" check --property "$property" --servers 1 --max-term 1 --client-requests 0 \
  2>&1 >/dev/null)
code=$?
set -e
if [[ $code -eq 2 ]]; then
  echo "$error" >&2
  exit 2
fi
if [[ $# -gt 0 ]]; then
  bugs=("$@")
else
  mapfile -t bugs < <("$model" bugs | awk '{print $1}')
fi

summarise() {
  python3 -c '
import json, sys
d = json.loads(sys.argv[1])
wanted = sys.argv[2]
violated = [p["name"] for p in d["properties"] if p["status"] == "violated"]
first = wanted if wanted != "-" else (violated[0] if violated else None)
if first is None or first not in violated:
    print("- - - -")
    sys.exit(0)
sim = d.get("simulation") or {}
if sim.get("violated") == first:
    also = ",".join(sim.get("violating_also") or []) or "-"
    print(first, sim["violating_steps"], "simulation-seed-%s" % sim["violating_seed"], also)
    sys.exit(0)
for c in d["configs"]:
    for x in c.get("counterexamples", []):
        if x["property"] == first:
            also = ",".join(x["also"]) or "-"
            print(first, x["steps"], c["name"].split(" / ")[-1], also)
            sys.exit(0)
print(first, "?", "?", "-")
' "$1" "$2"
}

printf '%-38s %-24s %5s  %-18s | %5s  %-18s %s\n' BUG FIRST STEPS "WHERE" STEPS "WHERE" \
  "$property ALONE: ITS LAST STATE ALSO VIOLATES"
caught=0
for bug in "${bugs[@]}"; do
  set +e
  all=$("$model" check --bug "$bug" --json 2>/dev/null | tail -1)
  alone=$("$model" check --bug "$bug" --property "$property" --json 2>/dev/null | tail -1)
  set -e
  read -r first first_steps first_where _ < <(summarise "$all" -)
  read -r _ steps where also < <(summarise "$alone" "$property")
  if [[ $steps != "-" ]]; then
    caught=$((caught + 1))
  fi
  printf '%-38s %-24s %5s  %-18s | %5s  %-18s %s\n' "$bug" "$first" "$first_steps" \
    "$first_where" "$steps" "$where" "$also"
done
echo "$property alone catches $caught of ${#bugs[@]} bugs"
