#!/usr/bin/env bash
# Mutation score of the default model check: cargo-mutants mutates the Peer
# (model/src/peer/*.rs) and judges every mutant with the default check
# (model/tests/mutation.rs: the exhaustive suite, then the fixed-seed simulation, each stopping
# at its first violated Always property). A mutant counts as caught only when the check reports
# a violated Always property (PeerInvariant, a panic or broken invariant of the Peer, included).
#
#   scripts/mutants.sh                 # every mutant (hours on 2 cores)
#   SHARD=0/4 scripts/mutants.sh       # one quarter of them
#   OUT=/tmp/m scripts/mutants.sh      # where cargo-mutants writes (default: mutants.out/)
#   SKIP_BASELINE=1 SHARD=1/8 ...      # skip the unmutated run (about 3 minutes) when an
#                                      # earlier shard of the same commit already passed it
#   JUDGED=file scripts/mutants.sh     # skip the mutants named in file (one `--list` name a
#                                      # line, e.g. an earlier run's caught.txt + missed.txt +
#                                      # unviable.txt + timeout.txt), to finish an interrupted run
#
# Writes the summary table to $OUT/summary.md and prints it.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo mutants --version >/dev/null 2>&1; then
  echo "== installing cargo-mutants"
  cargo install cargo-mutants --locked
fi

OUT="${OUT:-mutants.out}"
args=(--package model --file 'model/src/peer/*.rs' --test-package model --profile mutants
      --no-shuffle --output "$(dirname "$OUT")" --timeout "${TIMEOUT:-600}" --build-timeout 900)
if [[ -n "${SHARD:-}" ]]; then
  args+=(--shard "$SHARD")
fi
if [[ "${SKIP_BASELINE:-}" == 1 ]]; then
  args+=(--baseline skip)
fi
if [[ -n "${JUDGED:-}" ]]; then
  while IFS= read -r name; do
    [[ -n "$name" ]] && args+=(--exclude-re "^$(python3 -c 'import re,sys; print(re.escape(sys.argv[1]))' "$name")\$")
  done < "$JUDGED"
fi
# The judge is one ignored test; nothing else runs.
status=0
cargo mutants "${args[@]}" -- --test mutation -- --ignored || status=$?
# cargo-mutants exits 2 when some mutants were missed and 3 on timeouts: that is a result.
if [[ $status -ne 0 && $status -ne 2 && $status -ne 3 ]]; then
  echo "cargo mutants failed (exit $status)" >&2
  exit "$status"
fi
python3 scripts/mutants-summary.py "$(dirname "$OUT")/mutants.out" | tee "$(dirname "$OUT")/mutants.out/summary.md"
