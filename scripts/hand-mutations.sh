#!/usr/bin/env bash
# Hand-written mutations of the Peer: the statement-level mistakes that cargo-mutants does not
# make (a forgotten line, the wrong variable, two arguments or statements swapped, an
# off-by-one in index arithmetic, the wrong half of a condition), each a patch in
# specs/003-model-check-depth/hand-mutations/ with one line on it in that folder's README.md.
# Each patch is applied to a scratch copy of HEAD (uncommitted changes are not in it) and
# judged by the judge of scripts/mutants.sh (model/tests/mutation.rs: the default suite, then
# the fixed-seed simulation, each stopping at its first violated Always property).
#
#   scripts/hand-mutations.sh           # every patch (about six minutes on 2 cores)
#   scripts/hand-mutations.sh 07 22     # the patches whose names begin with 07 or 22
#
# Prints one line per patch: caught (and the property reported), missed (and the Sometimes
# properties left without an example, if any), or that it does not apply or does not build
# (the Peer changed under it). Exits 1 if a patch is missed or does not apply or build.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
dir=$root/specs/003-model-check-depth/hand-mutations
target=${CARGO_TARGET_DIR:-$root/target}

patches=()
if [[ $# -gt 0 ]]; then
  for prefix in "$@"; do
    matched=("$dir/$prefix"*.patch)
    if [[ ! -e ${matched[0]} ]]; then
      echo "no patch in $dir begins with '$prefix'" >&2
      exit 2
    fi
    patches+=("${matched[@]}")
  done
else
  patches=("$dir"/*.patch)
fi

work=$(mktemp -d)
cleanup() {
  git -C "$root" worktree remove --force "$work/tree" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
git -C "$root" worktree add -q --detach "$work/tree" HEAD

failed=0
caught=0
printf '%-44s %8s  %s\n' PATCH SECONDS RESULT
for patch in "${patches[@]}"; do
  name=$(basename "$patch" .patch)
  git -C "$work/tree" checkout -q -- .
  start=$(date +%s)
  if ! git -C "$work/tree" apply "$patch" 2>/dev/null; then
    result="does not apply to HEAD"
    failed=1
  else
    log=$work/$name.log
    (cd "$work/tree" && CARGO_TARGET_DIR=$target cargo test -q --profile mutants -p model \
      --test mutation -- --ignored --nocapture) >"$log" 2>&1 || true
    if grep -q 'JUDGE violated' "$log"; then
      result="caught: $(grep -m1 -o 'JUDGE violated .*' "$log" | sed 's/JUDGE violated //')"
      caught=$((caught + 1))
    elif grep -q 'test result: ok' "$log"; then
      lost=$(grep -o 'JUDGE no_example [A-Za-z]*' "$log" | awk '{print $3}' | paste -sd, -)
      result="missed${lost:+ (no example of $lost)}"
      failed=1
    else
      kept=${TMPDIR:-/tmp}/hand-mutation-$name.log
      cp "$log" "$kept"
      result="does not build (see $kept)"
      failed=1
    fi
  fi
  printf '%-44s %8s  %s\n' "$name" "$(( $(date +%s) - start ))" "$result"
done
echo "caught $caught of ${#patches[@]}"
exit $failed
