#!/usr/bin/env bash
# Plants every bug of the catalogue in turn and runs the default check on it
# (`model check --bug NAME`: the default suite, then the default simulation budget). Prints one
# line per bug: the exit code, the seconds it took, the property reported first and where it
# was caught. Exits 1 if any bug is not caught or is caught first as another property than
# the catalogue names.
#
#   scripts/check-bugs.sh                  # every bug
#   scripts/check-bugs.sh double-vote ...  # some of them
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -p model --quiet
model=target/release/model
if [[ $# -gt 0 ]]; then
  bugs=("$@")
else
  mapfile -t bugs < <("$model" bugs | awk '{print $1}')
fi
failed=0
printf '%-38s %-24s %-24s %8s  %s\n' BUG EXPECTED REPORTED SECONDS "CAUGHT IN"
for bug in "${bugs[@]}"; do
  expected=$("$model" bugs | awk -v b="$bug" '$1 == b {print $2}')
  start=$(date +%s%N)
  set +e
  json=$("$model" check --bug "$bug" --json 2>/dev/null | tail -1)
  code=$?
  set -e
  seconds=$(awk -v a="$start" -v b="$(date +%s%N)" 'BEGIN { printf "%.1f", (b - a) / 1e9 }')
  read -r reported where < <(python3 -c '
import json, sys
d = json.loads(sys.argv[1])
violated = [p["name"] for p in d["properties"] if p["status"] == "violated"]
sim = d.get("simulation") or {}
if sim.get("violated"):
    where = "simulation seed %s" % sim["violating_seed"]
else:
    caught = [c["name"] for c in d["configs"] if c["violated"]]
    where = caught[0].split(" / ")[-1] if caught else "-"
print(violated[0] if violated else "-", where)
' "$json")
  printf '%-38s %-24s %-24s %8s  %s\n' "$bug" "$expected" "$reported" "$seconds" "$where"
  if [[ $code -ne 1 || $reported != "$expected" ]]; then
    failed=1
  fi
done
exit $failed
