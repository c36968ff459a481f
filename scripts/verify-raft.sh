#!/usr/bin/env bash
# verify-raft.sh: checks rdb on three real rdb-server processes.
#
# Builds the release binaries, starts a 3-node cluster on 127.0.0.1 with its data in a
# temporary directory, and checks, with the `rdb` client:
#   - a leader is elected; writes through any node are readable from every node;
#   - `rdb transfer-leader` hands leadership to a follower, and writes go on;
#   - a follower killed with SIGKILL: writes continue; restarted, it catches up;
#   - the leader killed with SIGKILL: a new leader within 2 seconds, and every acknowledged
#     write is still there;
#   - the whole cluster stopped with SIGTERM and restarted keeps every write.
# As root it then starts a fresh cluster with every node in its own network namespace (veth
# links to a bridge), cuts the leader off from both followers with blackhole routes, and
# checks that the isolated leader commits nothing and steps down, that the majority elects a
# leader and commits, and that after healing all three converge. Not root: those checks print
# `SKIP partition: needs root`.
#
# Prints `PASS name` or `FAIL name: why` per check and a summary; exits 1 if any check failed.
# Every process and namespace it made is removed on exit, on failure and on Ctrl-C. On failure
# the nodes' logs are kept and their directory printed.
#
# With RDB_TLS=1 every check runs over mutual TLS: a test CA and certificates are made with
# scripts/make-test-ca.sh (needs openssl), each node gets its certificate and the client its
# own (through RDB_TLS_CERT, RDB_TLS_KEY and RDB_TLS_CA).
#
# Usage: scripts/verify-raft.sh          (from anywhere; no arguments)
#        RDB_TLS=1 scripts/verify-raft.sh

set -uo pipefail

# A script started in the background by another script inherits SIGINT ignored, and bash cannot
# trap a signal that was ignored on entry; start again with the default disposition, so that
# SIGINT still cleans up.
if [[ "$(trap -p INT)" == *"''"* ]] && env --default-signal=INT true 2>/dev/null; then
  exec env --default-signal=INT "$BASH" "$0" "$@"
fi

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
SERVER="$TARGET_DIR/release/rdb-server"
RDB="$TARGET_DIR/release/rdb"
STARTED_AT=$(date +%s)

WORK=""          # temporary directory: data, logs, command output
MODE=""          # loopback | netns
TAG=""           # name prefix of this run's namespaces and links (netns mode)
SUBNET=""        # first three octets of the netns subnet
declare -a PIDS=()   # PIDS[node] = pid of a running rdb-server
declare -a ADDRS=()  # ADDRS[node] = its client/peer address
declare -A ACKED=()  # key -> value of every acknowledged write
TLS_DIR=""       # with RDB_TLS=1: the test CA and certificates
BG_PID=""        # the bounded command being waited for
CLIENT_PID=""    # a client running in the background
BUILD_PID=""     # cargo, in a process group of its own
PASSED=0
FAILED=0
SKIPPED=0
SEQ=0

log() { echo "-- $*"; }
pass() { echo "PASS $1"; PASSED=$((PASSED + 1)); }
fail() { echo "FAIL $1: $2"; FAILED=$((FAILED + 1)); }
skip() { echo "SKIP $1: $2"; SKIPPED=$((SKIPPED + 1)); }

now_ms() { echo $(($(date +%s%N) / 1000000)); }

# ---------------------------------------------------------------------------------------------
# Cleanup: runs once, on any exit.

remove_namespaces() { # TAG
  local tag=$1 node
  for node in 1 2 3; do
    ip link del "${tag}v${node}" 2>/dev/null
    ip netns del "${tag}n${node}" 2>/dev/null
  done
  ip link del "${tag}b" 2>/dev/null
  return 0
}

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  if [[ -n "$BUILD_PID" ]]; then
    kill -TERM -- "-$BUILD_PID" 2>/dev/null
  fi
  local pid
  for pid in $BG_PID $CLIENT_PID; do
    kill "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  done
  local node
  for node in "${!PIDS[@]}"; do
    kill -KILL "${PIDS[$node]}" 2>/dev/null
  done
  for node in "${!PIDS[@]}"; do
    wait_gone "${PIDS[$node]}" 50
  done
  PIDS=()
  if [[ -n "$TAG" ]]; then
    remove_namespaces "$TAG"
  fi
  if [[ -n "$WORK" && -d "$WORK" ]]; then
    if ((FAILED > 0)); then
      echo "logs kept in $WORK"
    else
      rm -rf "$WORK"
    fi
  fi
  exit "$status"
}

trap cleanup EXIT
trap 'echo "interrupted"; exit 130' INT
trap 'echo "terminated"; exit 143' TERM

# Runs a command with a time limit, in the background so that Ctrl-C is handled at once.
# Its stdout goes to $WORK/out and its stderr to $WORK/err; returns its exit status.
run_bounded() { # SECONDS COMMAND...
  local limit=$1
  shift
  timeout --kill-after=2 "$limit" "$@" >"$WORK/out" 2>"$WORK/err" &
  BG_PID=$!
  wait "$BG_PID"
  local status=$?
  BG_PID=""
  return "$status"
}

# ---------------------------------------------------------------------------------------------
# The cluster.

join_addrs() { # NODE... -> comma-separated addresses
  local node out=""
  for node in "$@"; do out+="${out:+,}${ADDRS[$node]}"; done
  echo "$out"
}

start_node() { # NODE
  local node=$1 peers
  peers="1=${ADDRS[1]},2=${ADDRS[2]},3=${ADDRS[3]}"
  local args=(--id "$node" --peers "$peers" --data-dir "$WORK/$MODE/node-$node"
    --cluster-id verify-raft)
  if [[ -n "$TLS_DIR" ]]; then
    args+=(--tls-cert "$TLS_DIR/node-$node.pem" --tls-key "$TLS_DIR/node-$node-key.pem"
      --tls-ca "$TLS_DIR/ca.pem")
  fi
  if [[ "$MODE" == netns ]]; then
    # `ip netns exec` execs the server, so $! is the server's pid.
    ip netns exec "${TAG}n${node}" "$SERVER" "${args[@]}" \
      >>"$WORK/$MODE/node-$node.log" 2>&1 </dev/null &
  else
    "$SERVER" "${args[@]}" >>"$WORK/$MODE/node-$node.log" 2>&1 </dev/null &
  fi
  PIDS[node]=$!
  # Disowned: bash reaps it without printing "Killed" when the checks kill it.
  disown "$!"
}

# Waits until process PID is gone, for TENTHS tenths of a second at most.
wait_gone() { # PID TENTHS
  local waited=0
  while kill -0 "$1" 2>/dev/null && ((waited < $2)); do
    sleep 0.1
    waited=$((waited + 1))
  done
  ! kill -0 "$1" 2>/dev/null
}

kill_node() { # NODE SIGNAL: signals the node and waits (10 s at most) until it is gone
  local node=$1 signal=$2 pid=${PIDS[$1]}
  kill "-$signal" "$pid" 2>/dev/null
  if ! wait_gone "$pid" 100; then
    kill -KILL "$pid" 2>/dev/null
    wait_gone "$pid" 20
    unset "PIDS[$node]"
    return 1
  fi
  unset "PIDS[$node]"
  return 0
}

# Reads one node's status into S_ROLE, S_TERM, S_LEADER, S_LAST, S_COMMIT, S_APPLIED.
# Returns 1 when the node does not answer.
node_status() { # NODE
  S_ROLE="" S_TERM="" S_LEADER="" S_LAST="" S_COMMIT="" S_APPLIED=""
  run_bounded 5 "$RDB" --servers "${ADDRS[$1]}" status || return 1
  local line
  line=$(<"$WORK/out")
  [[ "$line" == *" role="* ]] || return 1
  field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$line"; }
  S_ROLE=$(field role)
  S_TERM=$(field term)
  S_LEADER=$(field leader)
  S_LAST=$(field last_index)
  S_COMMIT=$(field commit)
  S_APPLIED=$(field applied)
}

# Waits until one of NODES is leader of a term above MIN_TERM and every answering node of
# NODES names it. Sets LEADER and LEADER_TERM. Returns 1 after SECONDS.
wait_for_leader() { # SECONDS MIN_TERM NODE...
  local deadline=$(($(now_ms) + $1 * 1000)) min_term=$2
  shift 2
  while (($(now_ms) < deadline)); do
    local node leader="" term="" agreed=1
    for node in "$@"; do
      node_status "$node" || continue
      if [[ "$S_ROLE" == leader ]] && ((S_TERM > min_term)); then
        leader=$node
        term=$S_TERM
      fi
    done
    if [[ -n "$leader" ]]; then
      for node in "$@"; do
        node_status "$node" || continue
        [[ "$S_LEADER" == "$leader" ]] || agreed=0
      done
      if ((agreed)); then
        LEADER=$leader
        LEADER_TERM=$term
        return 0
      fi
    fi
    sleep 0.05
  done
  return 1
}

# Waits until every node of NODES answers, names the same leader, and has the same last
# index, commit index and applied index. Returns 1 after SECONDS, with the statuses in
# $LAST_STATUSES.
wait_converged() { # SECONDS NODE...
  local deadline=$(($(now_ms) + $1 * 1000))
  shift
  while true; do
    local node first="" same=1
    LAST_STATUSES=""
    for node in "$@"; do
      if ! node_status "$node"; then
        same=0
        LAST_STATUSES+="[node $node unreachable] "
        continue
      fi
      local this="leader=$S_LEADER last=$S_LAST commit=$S_COMMIT applied=$S_APPLIED"
      LAST_STATUSES+="[node $node: $this] "
      [[ "$S_LEADER" != none && "$S_LAST" == "$S_COMMIT" && "$S_COMMIT" == "$S_APPLIED" ]] ||
        same=0
      if [[ -z "$first" ]]; then first=$this; elif [[ "$this" != "$first" ]]; then same=0; fi
    done
    ((same)) && return 0
    (($(now_ms) < deadline)) || return 1
    sleep 0.1
  done
}

# Writes a fresh value to KEY through the nodes given; records it as acknowledged on success.
put_through() { # KEY NODE...
  local key=$1
  shift
  SEQ=$((SEQ + 1))
  local value="$key-$SEQ-$$"
  if run_bounded 20 "$RDB" --servers "$(join_addrs "$@")" put "$key" "$value"; then
    ACKED[$key]=$value
    return 0
  fi
  return 1
}

# Reads KEY through NODE into $GOT, giving up after SECONDS (default 20). Returns the
# client's exit status (1: absent, 124: gave up).
get_through() { # KEY NODE [SECONDS]
  GOT=""
  run_bounded "${3:-20}" "$RDB" --servers "${ADDRS[$2]}" get "$1"
  local status=$?
  GOT=$(<"$WORK/out")
  return "$status"
}

# Checks that every acknowledged write reads back through each of NODES. Sets $WHY.
acked_all_present() { # NODE...
  local node key
  for key in "${!ACKED[@]}"; do
    for node in "$@"; do
      if ! get_through "$key" "$node"; then
        WHY="get $key through node $node failed: $(tail -n1 "$WORK/err")"
        return 1
      fi
      if [[ "$GOT" != "${ACKED[$key]}" ]]; then
        WHY="get $key through node $node returned '$GOT', expected '${ACKED[$key]}'"
        return 1
      fi
    done
  done
  return 0
}

free_loopback_ports() { # -> sets ADDRS[1..3] to free 127.0.0.1 ports
  local attempt base port busy
  for attempt in 1 2 3 4 5 6 7 8 9 10; do
    base=$((20000 + (RANDOM % 20000)))
    busy=0
    for port in $((base + 1)) $((base + 2)) $((base + 3)); do
      if ss -Hltn "sport = :$port" 2>/dev/null | grep -q .; then busy=1; fi
    done
    if ((busy == 0)); then
      ADDRS[1]="127.0.0.1:$((base + 1))"
      ADDRS[2]="127.0.0.1:$((base + 2))"
      ADDRS[3]="127.0.0.1:$((base + 3))"
      return 0
    fi
  done
  return 1
}

# ---------------------------------------------------------------------------------------------
# Loopback checks.

check_leader_and_replication() {
  if wait_for_leader 10 0 1 2 3; then
    pass "leader-elected (node $LEADER, term $LEADER_TERM)"
  else
    fail leader-elected "no leader that all three nodes agree on within 10 s"
    return 1
  fi
  local node other key why=""
  for node in 1 2 3; do
    key="through-$node"
    if ! put_through "$key" "$node"; then
      why="put through node $node failed: $(tail -n1 "$WORK/err")"
      break
    fi
  done
  if [[ -z "$why" ]] && ! acked_all_present 1 2 3; then why=$WHY; fi
  if [[ -z "$why" ]] && ! wait_converged 10 1 2 3; then
    why="the nodes did not all apply the writes: $LAST_STATUSES"
  fi
  if [[ -z "$why" ]]; then
    pass "writes-through-any-node-readable-everywhere"
  else
    fail writes-through-any-node-readable-everywhere "$why"
  fi
}

# `rdb transfer-leader` hands leadership to a follower: the command answers once it leads,
# every node then names it, and writes go on with nothing lost.
check_transfer_leader() {
  wait_for_leader 10 0 1 2 3 || {
    fail transfer-leader "no leader before the transfer"
    return
  }
  local old=$LEADER old_term=$LEADER_TERM target=$((LEADER % 3 + 1)) why=""
  if ! run_bounded 20 "$RDB" --servers "$(join_addrs 1 2 3)" transfer-leader "$target"; then
    why="rdb transfer-leader $target failed: $(tail -n1 "$WORK/err")"
  elif [[ "$(<"$WORK/out")" != "OK leader=$target term="* ]]; then
    why="rdb transfer-leader $target printed '$(<"$WORK/out")'"
  elif ! wait_for_leader 10 "$old_term" 1 2 3 || [[ "$LEADER" != "$target" ]]; then
    why="after the transfer the nodes name leader ${LEADER:-none}, not $target"
  elif ! put_through after-transfer 1 2 3; then
    why="put after the transfer failed: $(tail -n1 "$WORK/err")"
  elif ! acked_all_present 1 2 3; then
    why=$WHY
  fi
  if [[ -z "$why" ]]; then
    pass "transfer-leader (node $old -> node $target, term $LEADER_TERM)"
  else
    fail transfer-leader "$why"
  fi
}

check_follower_kill() {
  wait_for_leader 10 0 1 2 3 || {
    fail follower-kill "no leader before the kill"
    return 1
  }
  local leader=$LEADER follower node
  for node in 1 2 3; do [[ $node != "$leader" ]] && follower=$node; done
  log "SIGKILL follower node $follower (leader is node $leader)"
  kill_node "$follower" KILL
  local survivors=() i why=""
  for node in 1 2 3; do [[ $node != "$follower" ]] && survivors+=("$node"); done
  for i in 1 2 3 4 5; do
    if ! put_through "follower-down-$i" "${survivors[@]}"; then
      why="put follower-down-$i failed: $(tail -n1 "$WORK/err")"
      break
    fi
  done
  if [[ -z "$why" ]] && ! acked_all_present "${survivors[@]}"; then why=$WHY; fi
  if [[ -z "$why" ]]; then
    pass "follower-kill-writes-continue"
  else
    fail follower-kill-writes-continue "$why"
  fi
  start_node "$follower"
  if wait_converged 15 1 2 3; then
    node_status "$follower"
    pass "follower-restart-catches-up (node $follower applied $S_APPLIED)"
  else
    fail follower-restart-catches-up "not converged after 15 s: $LAST_STATUSES"
  fi
}

check_leader_kill() {
  wait_for_leader 10 0 1 2 3 || {
    fail leader-kill "no leader before the kill"
    return 1
  }
  local old=$LEADER old_term=$LEADER_TERM node survivors=()
  for node in 1 2 3; do [[ $node != "$old" ]] && survivors+=("$node"); done
  log "SIGKILL leader node $old (term $old_term)"
  local killed_at
  killed_at=$(now_ms)
  kill_node "$old" KILL
  if wait_for_leader 10 "$old_term" "${survivors[@]}"; then
    local elapsed=$(($(now_ms) - killed_at))
    if ((elapsed <= 2000)); then
      pass "leader-kill-new-leader-within-2s (node $LEADER, term $LEADER_TERM, ${elapsed} ms)"
    else
      fail leader-kill-new-leader-within-2s "node $LEADER became leader after ${elapsed} ms"
    fi
  else
    fail leader-kill-new-leader-within-2s "no new leader within 10 s"
  fi
  local why=""
  if ! acked_all_present "${survivors[@]}"; then
    why=$WHY
  elif ! put_through after-leader-kill "${survivors[@]}"; then
    why="put after-leader-kill failed: $(tail -n1 "$WORK/err")"
  fi
  if [[ -z "$why" ]]; then
    pass "leader-kill-acknowledged-writes-kept (${#ACKED[@]} keys)"
  else
    fail leader-kill-acknowledged-writes-kept "$why"
  fi
  start_node "$old"
  why=""
  if ! wait_converged 15 1 2 3; then
    why="not converged after 15 s: $LAST_STATUSES"
  elif ! acked_all_present "$old"; then
    why=$WHY
  fi
  if [[ -z "$why" ]]; then
    pass "leader-restart-catches-up"
  else
    fail leader-restart-catches-up "$why"
  fi
}

check_restart_all() {
  local node ok=1
  log "SIGTERM all three nodes"
  for node in 1 2 3; do kill -TERM "${PIDS[$node]}" 2>/dev/null; done
  for node in 1 2 3; do kill_node "$node" TERM || ok=0; done
  if ((ok == 0)); then
    fail restart-all-keeps-writes "a node did not exit within 10 s of SIGTERM"
    return 1
  fi
  for node in 1 2 3; do start_node "$node"; done
  if ! wait_for_leader 15 0 1 2 3; then
    fail restart-all-keeps-writes "no leader within 15 s of the restart"
    return 1
  fi
  if acked_all_present 1 2 3; then
    pass "restart-all-keeps-writes (${#ACKED[@]} keys)"
  else
    fail restart-all-keeps-writes "$WHY"
  fi
}

# ---------------------------------------------------------------------------------------------
# Partition checks (root).

set_up_namespaces() {
  local pid=$$ node
  # Remove what an earlier run killed with SIGKILL left behind.
  local stale
  for stale in $(ip netns list 2>/dev/null | sed -n 's/^rdbv\([0-9][0-9]*\)n[0-9].*/\1/p' | sort -u); do
    [[ -d "/proc/$stale" ]] || remove_namespaces "rdbv$stale"
  done
  TAG="rdbv$pid"
  SUBNET="10.211.$((pid % 250))"
  ip link add "${TAG}b" type bridge || return 1
  ip addr add "$SUBNET.254/24" dev "${TAG}b" || return 1
  ip link set "${TAG}b" up || return 1
  for node in 1 2 3; do
    ip netns add "${TAG}n${node}" || return 1
    ip link add "${TAG}v${node}" type veth peer name eth0 netns "${TAG}n${node}" || return 1
    ip link set "${TAG}v${node}" master "${TAG}b" || return 1
    ip link set "${TAG}v${node}" up || return 1
    ip -n "${TAG}n${node}" addr add "$SUBNET.$node/24" dev eth0 || return 1
    ip -n "${TAG}n${node}" link set eth0 up || return 1
    ip -n "${TAG}n${node}" link set lo up || return 1
    ADDRS[node]="$SUBNET.$node:7001"
  done
}

# Drops every packet between NODE and the other two, in both directions; clients in this
# namespace still reach all three. With "del", removes those routes.
partition_node() { # add|del NODE
  local action=$1 node=$2 other
  for other in 1 2 3; do
    [[ $other == "$node" ]] && continue
    ip -n "${TAG}n${node}" route "$action" blackhole "$SUBNET.$other/32" || return 1
    ip -n "${TAG}n${other}" route "$action" blackhole "$SUBNET.$node/32" || return 1
  done
}

check_partition() {
  if [[ $(id -u) != 0 ]]; then
    skip partition "needs root"
    return 0
  fi
  if ! command -v ip >/dev/null; then
    fail partition "the ip command (iproute2) is missing"
    return 1
  fi
  MODE=netns
  mkdir -p "$WORK/$MODE"
  if ! set_up_namespaces; then
    fail partition "could not create the network namespaces"
    return 1
  fi
  local node
  for node in 1 2 3; do start_node "$node"; done
  if ! wait_for_leader 15 0 1 2 3; then
    fail partition "no leader in the namespaced cluster within 15 s"
    return 1
  fi
  local old=$LEADER old_term=$LEADER_TERM majority=()
  for node in 1 2 3; do [[ $node != "$old" ]] && majority+=("$node"); done
  ACKED=()
  put_through before-partition 1 2 3 || {
    fail partition "put before the partition failed: $(tail -n1 "$WORK/err")"
    return 1
  }
  wait_converged 10 1 2 3
  node_status "$old"
  local old_commit=$S_COMMIT
  log "cutting leader node $old (term $old_term, commit $old_commit) off from nodes ${majority[*]}"
  partition_node add "$old" || {
    fail partition "could not add the blackhole routes"
    return 1
  }

  # A client writes through the isolated leader only, in the background.
  timeout --kill-after=2 4 "$RDB" --servers "${ADDRS[$old]}" put isolated-key isolated-value \
    >"$WORK/isolated.out" 2>&1 &
  CLIENT_PID=$!

  local stepped_down=0 waited
  for waited in $(seq 1 100); do
    node_status "$old" && [[ "$S_ROLE" != leader ]] && {
      stepped_down=1
      break
    }
    sleep 0.1
  done
  if ((stepped_down)); then
    pass "partition-isolated-leader-steps-down (now $S_ROLE, term $S_TERM)"
  else
    fail partition-isolated-leader-steps-down "node $old still leader 10 s after the cut"
  fi

  if wait_for_leader 10 "$old_term" "${majority[@]}" &&
    put_through during-partition "${majority[@]}" &&
    node_status "$LEADER" && ((S_COMMIT > old_commit)); then
    pass "partition-majority-elects-and-commits (node $LEADER, term $LEADER_TERM, commit $S_COMMIT)"
  else
    fail partition-majority-elects-and-commits "no leader in the majority, or its put failed: $(tail -n1 "$WORK/err")"
  fi

  wait "$CLIENT_PID"
  local isolated_status=$?
  CLIENT_PID=""
  local why=""
  if ((isolated_status == 0)); then
    why="the put through the isolated leader succeeded: $(<"$WORK/isolated.out")"
  elif ! node_status "$old"; then
    why="node $old does not answer"
  elif ((S_COMMIT != old_commit)); then
    why="its commit index moved from $old_commit to $S_COMMIT"
  elif get_through before-partition "$old" 5; then
    why="a read through the isolated node answered '$GOT'"
  fi
  if [[ -z "$why" ]]; then
    pass "partition-isolated-leader-commits-nothing (commit stayed $old_commit)"
  else
    fail partition-isolated-leader-commits-nothing "$why"
  fi

  log "healing the partition"
  partition_node del "$old"
  why=""
  # The leader's blank entry commits what earlier terms left uncommitted, so the three
  # converge before any write; then they must take one and converge again.
  if ! wait_for_leader 15 0 1 2 3; then
    why="no leader that all three nodes agree on 15 s after healing"
  elif ! wait_converged 15 1 2 3; then
    why="not converged 15 s after healing, before any write: $LAST_STATUSES"
  elif ! put_through after-heal 1 2 3; then
    why="put after healing failed: $(tail -n1 "$WORK/err")"
  elif ! wait_converged 15 1 2 3; then
    why="not converged 15 s after healing: $LAST_STATUSES"
  elif ! acked_all_present 1 2 3; then
    why=$WHY
  else
    for node in 1 2 3; do
      get_through isolated-key "$node"
      if (($? != 1)); then
        why="the isolated leader's uncommitted write is visible through node $node: '$GOT'"
        break
      fi
    done
  fi
  if [[ -z "$why" ]]; then
    pass "partition-heal-converges (leader node $LEADER)"
  else
    fail partition-heal-converges "$why"
  fi
}

# ---------------------------------------------------------------------------------------------

main() {
  echo "== building: cargo build --release -p rdb-server"
  # In a process group of its own, so that an interrupt stops rustc too.
  (cd "$ROOT" && exec setsid cargo build --release -p rdb-server --bin rdb-server --bin rdb) &
  BUILD_PID=$!
  wait "$BUILD_PID" || {
    BUILD_PID=""
    echo "FAIL build: cargo build --release -p rdb-server failed"
    FAILED=1
    exit 1
  }
  BUILD_PID=""
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/verify-raft.XXXXXX")
  if [[ "${RDB_TLS:-0}" == 1 ]]; then
    echo "== mutual TLS: making a test CA in $WORK/tls"
    if ! "$ROOT/scripts/make-test-ca.sh" "$WORK/tls" 1 2 3 >/dev/null; then
      echo "FAIL setup: scripts/make-test-ca.sh failed"
      FAILED=1
      exit 1
    fi
    TLS_DIR="$WORK/tls"
    # The `rdb` client reads these.
    export RDB_TLS_CERT="$TLS_DIR/client.pem" RDB_TLS_KEY="$TLS_DIR/client-key.pem"
    export RDB_TLS_CA="$TLS_DIR/ca.pem"
  fi

  echo "== three nodes on 127.0.0.1 (data in $WORK)"
  MODE=loopback
  mkdir -p "$WORK/$MODE"
  if ! free_loopback_ports; then
    fail setup "no free ports on 127.0.0.1"
  else
    local node
    for node in 1 2 3; do start_node "$node"; done
    if check_leader_and_replication; then
      check_transfer_leader
      check_follower_kill
      check_leader_kill
      check_restart_all
    fi
    for node in "${!PIDS[@]}"; do kill_node "$node" KILL; done
  fi

  echo "== partitions: each node in its own network namespace"
  check_partition

  local elapsed=$(($(date +%s) - STARTED_AT))
  echo "== summary: $PASSED passed, $FAILED failed, $SKIPPED skipped in ${elapsed}s"
  ((FAILED == 0))
}

main
