-------------------------------- MODULE Raft --------------------------------
(***************************************************************************)
(* rdb's Raft protocol, stated from the one place it is implemented: the   *)
(* sans-IO Peer in model/src/peer/mod.rs. Each action is one call into the *)
(* Peer (a timer firing, a message handled, a proposal) or one event of    *)
(* its environment (a crash, a recovery, a lost message), and carries the  *)
(* name the model's traces give that step. The invariants carry the names  *)
(* of the model's Always properties (model/src/checker/properties.rs).     *)
(* tla/README.md maps both to the code.                                    *)
(*                                                                         *)
(* Scope, as in the Peer: elections with the up-to-date check (§5.4.1);    *)
(* AppendEntries with the consistency check, truncation of conflicting     *)
(* entries only and a back-off hint that skips a whole conflicting term;   *)
(* flow control (probe, then pipelining within a window, MaxBatch entries  *)
(* per message); commit of current-term entries by majority (§5.4.2);      *)
(* heartbeats; check-quorum; a new leader's blank entry (§8), whose        *)
(* command is Nil; with PreVote, pre-vote and leader stickiness (§9.6).    *)
(*                                                                         *)
(* Persistence: a step that changes a server's term, vote or log asks for  *)
(* them to be persisted (Output.persist), and the model saves them before  *)
(* anything the step sends can be received. The persisted state is         *)
(* therefore always currentTerm, votedFor and log, and Crash keeps exactly *)
(* those three.                                                            *)
(***************************************************************************)
EXTENDS Naturals, Sequences, FiniteSets, Bags

CONSTANTS
    Server,       \* The servers of the cluster.
    Value,        \* The commands clients may propose.
    Nil,          \* No server: no vote cast, no leader known.
    Duplicating,  \* TRUE: a delivered message stays in flight and may be delivered again.
    Lossy,        \* TRUE: the network may lose a message in flight.
    MaxBatch,     \* FlowControl.max_entries: at most this many entries in one AppendEntries.
    Window,       \* FlowControl.max_inflight: pipelined AppendEntries in flight per follower.
    PreVote,      \* Config.pre_vote: pre-vote and leader stickiness (§9.6).
    Transfers     \* TRUE: leaders may be asked to hand leadership over (§3.10).

VARIABLES
    \* Durable (model/src/peer/types.rs), per server.
    currentTerm,  \* Durable.term: the latest term the server has seen.
    votedFor,     \* Durable.voted_for: its vote in currentTerm, or Nil.
    log,          \* Durable.log: a sequence of [term, command] records; a blank
                  \* entry's command is Nil.
    \* The Peer's volatile state, per server.
    commitIndex,  \* Peer.commit_index.
    role,         \* "Follower", "PreCandidate", "Candidate" or "Leader" (Role).
    leader,       \* Peer::leader(): a follower's known leader, a leader itself, or Nil.
    votes,        \* Role::Candidate.votes: servers that granted their vote, or
                  \* Role::PreCandidate.votes: servers that would; {} otherwise.
    nextIndex,    \* Role::Leader.progress[j].next; 0 where there is no progress entry.
    matchIndex,   \* Role::Leader.progress[j].matched; 0 where there is no progress entry.
    flowState,    \* Role::Leader.progress[j].flow: "Probe" (Flow::Probe, not paused),
                  \* "ProbeSent" (paused), "Replicate"; "None" where there is no progress.
    inflight,     \* Flow::Replicate's window: the last index of each AppendEntries in
                  \* flight, oldest first; << >> otherwise.
    heardFrom,    \* Role::Leader.heard_from (check-quorum); {} otherwise.
    transferee,   \* Role::Leader.transferee: the server leadership is being handed to
                  \* (§3.10), or Nil.
    \* The environment.
    crashed,      \* Whether the server is down. Its last state stays until it recovers.
    messages,     \* The network: a bag of messages in flight.
    \* History (ghost variables, as the model's Ghost in model/src/checker/actor.rs): no
    \* action reads them; RecordHistory sets them on every step of Next.
    regressedTerm,   \* Ghost.regressed_term: the server's term ever went down.
    regressedCommit  \* Ghost.regressed_commit: a running server's commit index went down.

durableVars == <<currentTerm, votedFor, log>>
roleVars == <<role, leader, votes, nextIndex, matchIndex, flowState, inflight, heardFrom,
              transferee>>
historyVars == <<regressedTerm, regressedCommit>>
vars == <<currentTerm, votedFor, log, commitIndex, role, leader, votes,
          nextIndex, matchIndex, flowState, inflight, heardFrom, transferee, crashed, messages,
          historyVars>>

-----------------------------------------------------------------------------
(* Helpers. Actions stay small and call these for the values they compute. *)

Majority == Cardinality(Server) \div 2 + 1    \* quorum::majority
Min(a, b) == IF a <= b THEN a ELSE b
Max(a, b) == IF a >= b THEN a ELSE b
SetMax(S) == CHOOSE x \in S : \A y \in S : x >= y
SetMin(S) == CHOOSE x \in S : \A y \in S : x <= y
Others(i) == Server \ {i}
NoProgress == [j \in Server |-> 0]
NoFlow == [j \in Server |-> "None"]
NoInflight == [j \in Server |-> << >>]

\* Peer::term_at: the term of the entry at k; 0 for index 0 or past the end.
TermAt(xlog, k) == IF k = 0 \/ k > Len(xlog) THEN 0 ELSE xlog[k].term
LastTerm(xlog) == TermAt(xlog, Len(xlog))

IsPrefix(s, t) == Len(s) <= Len(t) /\ SubSeq(t, 1, Len(s)) = s
Committed(i) == SubSeq(log[i], 1, commitIndex[i])

\* Log a is at least as up-to-date as log b (§5.4.1).
AtLeastAsUpToDate(a, b) ==
    \/ LastTerm(a) > LastTerm(b)
    \/ LastTerm(a) = LastTerm(b) /\ Len(a) >= Len(b)

\* The network. A step consumes at most one message and sends a set of messages
\* (distinct: they differ in their receiver).
Consume(m) == IF Duplicating THEN messages ELSE messages (-) SetToBag({m})
Send(ms) == SetToBag(ms)

\* Flow control (Peer::send_append, model/src/peer/progress.rs). A follower whose position is
\* not known is probed: one AppendEntries after next - 1, then "ProbeSent" until its answer
\* or the next heartbeat. An acknowledged follower is pipelined ("Replicate"): one message
\* per batch of at most MaxBatch entries from next on, next moving past each, while fewer
\* than Window are in flight. Bytes are not modelled: a command of the model is one byte, so
\* a byte cap would be an entry cap.

\* The AppendEntries from leader i to j after index prev: at most MaxBatch entries, with
\* the leader's term and the commit index commit.
AppendAfter(i, j, prev, xlog, commit) ==
    [type |-> "AppendEntriesRequest", term |-> currentTerm[i],
     prev_log_index |-> prev, prev_log_term |-> TermAt(xlog, prev),
     entries |-> SubSeq(xlog, prev + 1, Min(prev + MaxBatch, Len(xlog))),
     leader_commit |-> commit, from |-> i, to |-> j]

\* Progress::resume on a heartbeat (hb): a full window forgets its oldest message.
Resumed(st, infl, hb) ==
    IF hb /\ st = "Replicate" /\ Len(infl) >= Window THEN Tail(infl) ELSE infl

\* How many pipelined messages leave from next with infl in flight: one per batch of the
\* entries from next on, while the window has room.
Pipelined(next, infl, xlog) ==
    IF next > Len(xlog) THEN 0
    ELSE Min(Window - Len(infl), (Len(xlog) - next + MaxBatch) \div MaxBatch)

\* The last index of the first t pipelined messages from next.
BatchesEnd(next, t, xlog) == Min(next - 1 + t * MaxBatch, Len(xlog))

\* What leader i sends j whose progress is (next, st, infl): Peer::send_append, on a
\* heartbeat when hb. A heartbeat always sends something: an empty AppendEntries when
\* nothing else may leave.
SendSet(i, j, next, st, infl, xlog, commit, hb) ==
    LET k == Pipelined(next, Resumed(st, infl, hb), xlog)
    IN CASE st = "Probe" \/ (st = "ProbeSent" /\ hb) ->
              {AppendAfter(i, j, next - 1, xlog, commit)}
         [] st = "Replicate" /\ k > 0 ->
              {AppendAfter(i, j, BatchesEnd(next, t - 1, xlog), xlog, commit) : t \in 1..k}
         [] st = "Replicate" /\ hb ->
              {AppendAfter(i, j, next - 1, xlog, commit)}
         [] OTHER -> {}

\* The progress after SendSet: a probe is paused, a pipelined follower's next moves past
\* what was sent and its window holds each message's last index.
NextAfter(next, st, infl, xlog, hb) ==
    LET k == Pipelined(next, Resumed(st, infl, hb), xlog)
    IN IF st = "Replicate" /\ k > 0 THEN BatchesEnd(next, k, xlog) + 1 ELSE next
FlowAfter(st, hb) == IF st = "Probe" \/ (st = "ProbeSent" /\ hb) THEN "ProbeSent" ELSE st
InflightAfter(next, st, infl, xlog, hb) ==
    LET r == Resumed(st, infl, hb)
    IN IF st = "Replicate"
       THEN r \o [t \in 1..Pipelined(next, r, xlog) |-> BatchesEnd(next, t, xlog)]
       ELSE infl

\* Peer::broadcast_append (hb FALSE) or Peer::broadcast_heartbeat (hb TRUE) of leader i
\* with log xlog and commit index commit: the messages and every follower's new progress.
BroadcastMsgs(i, xlog, commit, hb) ==
    UNION {SendSet(i, j, nextIndex[i][j], flowState[i][j], inflight[i][j], xlog, commit, hb) :
             j \in Others(i)}
Broadcast(i, xlog, hb) ==
    /\ nextIndex' = [nextIndex EXCEPT ![i] =
          [j \in Server |-> IF j = i THEN 0
                            ELSE NextAfter(nextIndex[i][j], flowState[i][j], inflight[i][j],
                                           xlog, hb)]]
    /\ flowState' = [flowState EXCEPT ![i] =
          [j \in Server |-> IF j = i THEN "None" ELSE FlowAfter(flowState[i][j], hb)]]
    /\ inflight' = [inflight EXCEPT ![i] =
          [j \in Server |-> IF j = i THEN << >>
                            ELSE InflightAfter(nextIndex[i][j], flowState[i][j],
                                               inflight[i][j], xlog, hb)]]

\* Progress::acknowledge of index idx: a stale one changes nothing; an answered probe
\* pipelines right after idx; a pipelined follower frees the messages ending at or
\* before idx (a prefix of its window, whose indexes increase).
AckNext(next, match, st, idx) ==
    IF idx < match THEN next ELSE IF st = "Replicate" THEN Max(next, idx + 1) ELSE idx + 1
AckFlow(match, st, idx) == IF idx < match THEN st ELSE "Replicate"
AckInflight(match, st, infl, idx) ==
    IF idx < match \/ st /= "Replicate" THEN infl
    ELSE SubSeq(infl, Cardinality({t \in 1..Len(infl) : infl[t] <= idx}) + 1, Len(infl))

\* Servers that store index k by leader i's knowledge, the leader included.
Agree(i, xmatch, k) == {i} \cup {j \in Others(i) : xmatch[j] >= k}

\* Peer::maybe_commit: the highest index stored on a majority, if that entry is of the
\* current term (§5.4.2); otherwise the commit index stays.
NewCommitIndex(i, xlog, xmatch) ==
    LET quorumIndex ==
            SetMax({k \in 0..Len(xlog) : Cardinality(Agree(i, xmatch, k)) >= Majority})
    IN IF quorumIndex > commitIndex[i] /\ TermAt(xlog, quorumIndex) = currentTerm[i]
       THEN quorumIndex
       ELSE commitIndex[i]

\* Peer::handle_request_vote_request's decision, after observe_term: the candidate's term
\* is the receiver's (possibly just adopted) term, the receiver is a follower that has not
\* voted for another in it (§5.2), and the candidate's log is at least as up-to-date.
GrantsVote(i, j, m) ==
    LET newer == m.term > currentTerm[i]
    IN /\ m.term >= currentTerm[i]
       /\ newer \/ role[i] \in {"Follower", "PreCandidate"}
       /\ newer \/ votedFor[i] = Nil \/ votedFor[i] = j
       /\ \/ m.last_log_term > LastTerm(log[i])
          \/ m.last_log_term = LastTerm(log[i]) /\ m.last_log_index >= Len(log[i])

\* Peer::handle_pre_vote_request's decision: the proposed term is newer than the receiver's
\* and the asker's log is at least as up-to-date. The vote already cast does not matter.
GrantsPreVote(i, m) ==
    /\ m.term > currentTerm[i]
    /\ \/ m.last_log_term > LastTerm(log[i])
       \/ m.last_log_term = LastTerm(log[i]) /\ m.last_log_index >= Len(log[i])

\* Leader stickiness (Peer::ignores): with pre-vote, a server that follows a leader of its
\* term, or leads it, ignores a request for a vote or a pre-vote of a newer term, unless
\* the vote is asked for on behalf of a leadership transfer.
Sticky(i, m) ==
    /\ PreVote
    /\ m.type \in {"RequestVoteRequest", "PreVoteRequest"}
    /\ ~(m.type = "RequestVoteRequest" /\ m.transfer)
    /\ m.term > currentTerm[i]
    /\ \/ role[i] = "Leader"
       \/ role[i] = "Follower" /\ leader[i] /= Nil

\* A candidate counts a vote granted in its term.
CountsVote(i, m) == m.term = currentTerm[i] /\ m.granted /\ role[i] = "Candidate"

\* The AppendEntries consistency check (§5.3): i's log holds the entry before the new ones.
LogOk(i, m) ==
    m.prev_log_index <= Len(log[i]) /\ TermAt(log[i], m.prev_log_index) = m.prev_log_term

\* Peer::rejection_hint: the highest index at which i's log may still match the leader's
\* when the entry at prev did not. The whole run of the conflicting term is skipped, but
\* never below the commit index.
RejectionHint(i, prev) ==
    IF prev > Len(log[i]) THEN Len(log[i])
    ELSE IF prev = 0 THEN 0
    ELSE SetMax({k \in 0..(prev - 1) :
                   k <= commitIndex[i] \/ TermAt(log[i], k) /= TermAt(log[i], prev)})

\* Peer::append_entries: entries already present with the same term are kept; the log is
\* cut at the first entry that conflicts or is missing, and the rest appended (§5.3). A
\* stale or reordered request therefore never truncates what a later one appended.
NewEntries(xlog, prev, entries) ==
    {k \in 1..Len(entries) : prev + k > Len(xlog) \/ xlog[prev + k].term /= entries[k].term}
AppendedLog(xlog, prev, entries) ==
    IF NewEntries(xlog, prev, entries) = {} THEN xlog
    ELSE LET k == SetMin(NewEntries(xlog, prev, entries))
         IN SubSeq(xlog, 1, prev + k - 1) \o SubSeq(entries, k, Len(entries))

AppendEntriesResponse(i, j, term, success, index) ==
    [type |-> "AppendEntriesResponse", term |-> term, success |-> success, index |-> index,
     from |-> i, to |-> j]

-----------------------------------------------------------------------------
(* Role changes, each setting every role variable of server i. *)

\* Role::Follower { leader: l }.
BecomeFollower(i, l) ==
    /\ role' = [role EXCEPT ![i] = "Follower"]
    /\ leader' = [leader EXCEPT ![i] = l]
    /\ votes' = [votes EXCEPT ![i] = {}]
    /\ nextIndex' = [nextIndex EXCEPT ![i] = NoProgress]
    /\ matchIndex' = [matchIndex EXCEPT ![i] = NoProgress]
    /\ flowState' = [flowState EXCEPT ![i] = NoFlow]
    /\ inflight' = [inflight EXCEPT ![i] = NoInflight]
    /\ heardFrom' = [heardFrom EXCEPT ![i] = {}]
    /\ transferee' = [transferee EXCEPT ![i] = Nil]

\* Role::Candidate { votes: {i} }.
BecomeCandidate(i) ==
    /\ role' = [role EXCEPT ![i] = "Candidate"]
    /\ leader' = [leader EXCEPT ![i] = Nil]
    /\ votes' = [votes EXCEPT ![i] = {i}]
    /\ nextIndex' = [nextIndex EXCEPT ![i] = NoProgress]
    /\ matchIndex' = [matchIndex EXCEPT ![i] = NoProgress]
    /\ flowState' = [flowState EXCEPT ![i] = NoFlow]
    /\ inflight' = [inflight EXCEPT ![i] = NoInflight]
    /\ heardFrom' = [heardFrom EXCEPT ![i] = {}]
    /\ transferee' = [transferee EXCEPT ![i] = Nil]

\* Role::PreCandidate { votes: {i} }.
BecomePreCandidate(i) ==
    /\ role' = [role EXCEPT ![i] = "PreCandidate"]
    /\ leader' = [leader EXCEPT ![i] = Nil]
    /\ votes' = [votes EXCEPT ![i] = {i}]
    /\ nextIndex' = [nextIndex EXCEPT ![i] = NoProgress]
    /\ matchIndex' = [matchIndex EXCEPT ![i] = NoProgress]
    /\ flowState' = [flowState EXCEPT ![i] = NoFlow]
    /\ inflight' = [inflight EXCEPT ![i] = NoInflight]
    /\ heardFrom' = [heardFrom EXCEPT ![i] = {}]
    /\ transferee' = [transferee EXCEPT ![i] = Nil]

\* The blank entry a new leader of term t appends (§8): an entry without a command. Once it
\* commits, so does every entry of an earlier term before it.
BlankEntry(t) == [term |-> t, command |-> Nil]
WithBlank(i, t) == Append(log[i], BlankEntry(t))

\* Peer::maybe_become_leader on a majority of votes in term t: the new leader appends its
\* blank entry, every follower is probed just past the leader's earlier log (so the probe
\* carries the blank entry) and nothing is known to match. The caller sends the probes of
\* Peer::broadcast_append (NewLeaderAppends), so every follower's probe is in flight.
BecomeLeader(i, t) ==
    /\ log' = [log EXCEPT ![i] = WithBlank(i, t)]
    /\ role' = [role EXCEPT ![i] = "Leader"]
    /\ leader' = [leader EXCEPT ![i] = i]
    /\ votes' = [votes EXCEPT ![i] = {}]
    /\ nextIndex' = [nextIndex EXCEPT ![i] =
          [j \in Server |-> IF j = i THEN 0 ELSE Len(log[i]) + 1]]
    /\ matchIndex' = [matchIndex EXCEPT ![i] = NoProgress]
    /\ flowState' = [flowState EXCEPT ![i] =
          [j \in Server |-> IF j = i THEN "None" ELSE "ProbeSent"]]
    /\ inflight' = [inflight EXCEPT ![i] = NoInflight]
    /\ heardFrom' = [heardFrom EXCEPT ![i] = {}]
    /\ transferee' = [transferee EXCEPT ![i] = Nil]

\* What a new leader of term t sends: a probe after its earlier last entry, with its blank
\* entry, to every follower.
NewLeaderAppends(i, t) ==
    {AppendAfter(i, j, Len(log[i]), WithBlank(i, t), commitIndex[i]) : j \in Others(i)}

-----------------------------------------------------------------------------
(* Initial state: every server a follower of term 0 with an empty log, as *)
(* Peer::restore(config, Durable::default()) builds it.                    *)

Init ==
    /\ currentTerm = [i \in Server |-> 0]
    /\ votedFor = [i \in Server |-> Nil]
    /\ log = [i \in Server |-> << >>]
    /\ commitIndex = [i \in Server |-> 0]
    /\ role = [i \in Server |-> "Follower"]
    /\ leader = [i \in Server |-> Nil]
    /\ votes = [i \in Server |-> {}]
    /\ nextIndex = [i \in Server |-> NoProgress]
    /\ matchIndex = [i \in Server |-> NoProgress]
    /\ flowState = [i \in Server |-> NoFlow]
    /\ inflight = [i \in Server |-> NoInflight]
    /\ heardFrom = [i \in Server |-> {}]
    /\ transferee = [i \in Server |-> Nil]
    /\ crashed = [i \in Server |-> FALSE]
    /\ messages = EmptyBag
    /\ regressedTerm = [i \in Server |-> FALSE]
    /\ regressedCommit = [i \in Server |-> FALSE]

-----------------------------------------------------------------------------
(* Timers: Peer::handle_timeout. *)

\* A leader's election timer: Peer::check_quorum. A leader that heard from a majority
\* (itself included) since the last check starts counting again; one that did not steps
\* down, keeping its term and vote. Only AppendEntries responses of its term count. Either
\* way a leadership transfer that has not completed is given up (§3.10).
CheckQuorum(i) ==
    /\ UNCHANGED <<durableVars, commitIndex, crashed, messages>>
    /\ IF Cardinality(heardFrom[i]) + 1 >= Majority
       THEN /\ heardFrom' = [heardFrom EXCEPT ![i] = {}]
            /\ transferee' = [transferee EXCEPT ![i] = Nil]
            /\ UNCHANGED <<role, leader, votes, nextIndex, matchIndex, flowState, inflight>>
       ELSE BecomeFollower(i, Nil)

\* The RequestVote that server i sends every other server when it starts an election in
\* term t, with its last log index and term; tr says a leader handed leadership over.
VoteRequests(i, t, tr) ==
    {[type |-> "RequestVoteRequest", term |-> t,
      last_log_index |-> Len(log[i]), last_log_term |-> LastTerm(log[i]),
      transfer |-> tr, from |-> i, to |-> j] : j \in Others(i)}

\* A follower's or candidate's election timer: Peer::start_election. A new term, a vote
\* for itself (persisted before the requests leave), and a RequestVote to every other
\* server with its last log index and term. A cluster of one elects itself at once and
\* commits its blank entry.
StartElection(i) ==
    /\ currentTerm' = [currentTerm EXCEPT ![i] = @ + 1]
    /\ votedFor' = [votedFor EXCEPT ![i] = i]
    /\ messages' = messages (+) Send(VoteRequests(i, currentTerm[i] + 1, FALSE))
    /\ UNCHANGED crashed
    /\ IF Majority = 1
       THEN /\ BecomeLeader(i, currentTerm[i] + 1)
            /\ commitIndex' = [commitIndex EXCEPT ![i] = Len(log[i]) + 1]
       ELSE /\ BecomeCandidate(i)
            /\ UNCHANGED <<log, commitIndex>>

\* With pre-vote, a follower's or candidate's election timer: Peer::start_pre_vote. In its
\* own term, with its vote unchanged, it asks every other server whether it would vote for
\* it in the next term. A cluster of one goes on to the election at once.
StartPreVote(i) ==
    IF Majority = 1
    THEN StartElection(i)
    ELSE /\ messages' = messages (+)
                Send({[type |-> "PreVoteRequest", term |-> currentTerm[i] + 1,
                       last_log_index |-> Len(log[i]), last_log_term |-> LastTerm(log[i]),
                       from |-> i, to |-> j] : j \in Others(i)})
         /\ BecomePreCandidate(i)
         /\ UNCHANGED <<durableVars, commitIndex, crashed>>

\* Timer::Election fires on a running server (the timer is always armed on one).
ElectionTimeout(i) ==
    /\ ~crashed[i]
    /\ IF role[i] = "Leader" THEN CheckQuorum(i)
       ELSE IF PreVote THEN StartPreVote(i)
       ELSE StartElection(i)

\* Timer::Heartbeat fires on a leader: every follower hears from it (Peer::broadcast_heartbeat):
\* a paused probe goes again, a full window forgets its oldest message.
HeartbeatTimeout(i) ==
    /\ ~crashed[i]
    /\ role[i] = "Leader"
    /\ messages' = messages (+) Send(BroadcastMsgs(i, log[i], commitIndex[i], TRUE))
    /\ Broadcast(i, log[i], TRUE)
    /\ UNCHANGED <<durableVars, commitIndex, role, leader, votes, matchIndex, heardFrom,
                   transferee, crashed>>

-----------------------------------------------------------------------------
(* Client proposals: Peer::propose on the leader. *)

\* The leader appends the command in its term and sends every follower what flow control
\* lets it (these sends may overlap with persisting the entry: Output.send_now). Only in a
\* cluster of one does it commit at once.
ClientRequest(i, v) ==
    /\ ~crashed[i]
    /\ role[i] = "Leader"
    /\ transferee[i] = Nil
    /\ log' = [log EXCEPT ![i] = Append(@, [term |-> currentTerm[i], command |-> v])]
    /\ messages' = messages (+) Send(BroadcastMsgs(i, log'[i], commitIndex[i], FALSE))
    /\ Broadcast(i, log'[i], FALSE)
    /\ commitIndex' = [commitIndex EXCEPT ![i] = NewCommitIndex(i, log'[i], matchIndex[i])]
    /\ UNCHANGED <<currentTerm, votedFor, role, leader, votes, matchIndex, heardFrom,
                   transferee, crashed>>

-----------------------------------------------------------------------------
(* Leadership transfer (§3.10): Peer::transfer_leadership on the leader.  *)

\* The TimeoutNow leader i sends j: take over now.
TimeoutNowTo(i, j) == [type |-> "TimeoutNow", term |-> currentTerm[i], from |-> i, to |-> j]

\* Leader i is asked to hand leadership to j. It takes no proposals from now on (see
\* ClientRequest). A target whose log matches the leader's is told to take over at once;
\* otherwise it gets what flow control lets the leader send, and the TimeoutNow follows
\* its acknowledgement of the leader's last entry (HandleAppendEntriesResponse).
TransferLeadership(i, j) ==
    /\ Transfers
    /\ ~crashed[i]
    /\ role[i] = "Leader"
    /\ j \in Others(i)
    /\ transferee' = [transferee EXCEPT ![i] = j]
    /\ UNCHANGED <<durableVars, commitIndex, role, leader, votes, matchIndex, heardFrom,
                   crashed>>
    /\ IF matchIndex[i][j] = Len(log[i])
       THEN /\ messages' = messages (+) Send({TimeoutNowTo(i, j)})
            /\ UNCHANGED <<nextIndex, flowState, inflight>>
       ELSE LET next == nextIndex[i][j]
                st == flowState[i][j]
                infl == inflight[i][j]
            IN /\ messages' = messages (+)
                     Send(SendSet(i, j, next, st, infl, log[i], commitIndex[i], FALSE))
               /\ nextIndex' = [nextIndex EXCEPT ![i][j] = NextAfter(next, st, infl, log[i], FALSE)]
               /\ flowState' = [flowState EXCEPT ![i][j] = FlowAfter(st, FALSE)]
               /\ inflight' = [inflight EXCEPT ![i][j] = InflightAfter(next, st, infl, log[i], FALSE)]

-----------------------------------------------------------------------------
(* Messages: Peer::handle_message, server i handling message m from j. Every *)
(* handler first applies Peer::observe_term: a message of a newer term makes  *)
(* the receiver a follower of that term with no vote and no known leader.     *)

\* Peer::observe_term alone, for a response of a newer term (nothing else happens then).
StepDown(i, term) ==
    /\ currentTerm' = [currentTerm EXCEPT ![i] = term]
    /\ votedFor' = [votedFor EXCEPT ![i] = Nil]
    /\ BecomeFollower(i, Nil)

\* A request a sticky server ignores: consumed, nothing else happens.
Ignore(i, m) ==
    /\ messages' = Consume(m)
    /\ UNCHANGED <<durableVars, commitIndex, roleVars, crashed>>

\* Peer::handle_request_vote_request: grant or refuse, and answer with the term.
HandleVoteRequest(i, j, m) ==
    /\ currentTerm' = [currentTerm EXCEPT ![i] = Max(@, m.term)]
    /\ votedFor' = [votedFor EXCEPT ![i] = IF GrantsVote(i, j, m) THEN j
                                            ELSE IF m.term > currentTerm[i] THEN Nil
                                            ELSE @]
    /\ messages' = Consume(m) (+)
          Send({[type |-> "RequestVoteResponse", term |-> Max(currentTerm[i], m.term),
                 granted |-> GrantsVote(i, j, m), from |-> i, to |-> j]})
    /\ UNCHANGED <<log, commitIndex, crashed>>
    /\ IF m.term > currentTerm[i] THEN BecomeFollower(i, Nil) ELSE UNCHANGED roleVars

\* The same, unless stickiness ignores the request.
HandleRequestVoteRequest(i, j, m) ==
    /\ m.type = "RequestVoteRequest"
    /\ ~crashed[i]
    /\ IF Sticky(i, m) THEN Ignore(i, m) ELSE HandleVoteRequest(i, j, m)

\* Peer::handle_request_vote_response: a candidate counts a granted vote of its term and
\* becomes leader on a majority. Anything else changes nothing beyond observe_term.
HandleRequestVoteResponse(i, j, m) ==
    /\ m.type = "RequestVoteResponse"
    /\ ~crashed[i]
    /\ UNCHANGED <<commitIndex, crashed>>
    /\ IF m.term > currentTerm[i]
       THEN /\ StepDown(i, m.term)
            /\ messages' = Consume(m)
            /\ UNCHANGED log
       ELSE IF CountsVote(i, m) /\ Cardinality(votes[i] \cup {j}) >= Majority
       THEN /\ BecomeLeader(i, currentTerm[i])
            /\ messages' = Consume(m) (+) Send(NewLeaderAppends(i, currentTerm[i]))
            /\ UNCHANGED <<currentTerm, votedFor>>
       ELSE IF CountsVote(i, m)
       THEN /\ votes' = [votes EXCEPT ![i] = @ \cup {j}]
            /\ messages' = Consume(m)
            /\ UNCHANGED <<log, currentTerm, votedFor, role, leader, nextIndex, matchIndex,
                           flowState, inflight, heardFrom, transferee>>
       ELSE /\ messages' = Consume(m)
            /\ UNCHANGED <<log, currentTerm, votedFor, roleVars>>

\* Peer::handle_pre_vote_request: answer whether the vote would be granted, changing
\* nothing: a granted answer carries the proposed term, a refusal the receiver's own.
HandlePreVoteRequest(i, j, m) ==
    /\ m.type = "PreVoteRequest"
    /\ ~crashed[i]
    /\ IF Sticky(i, m)
       THEN Ignore(i, m)
       ELSE /\ messages' = Consume(m) (+)
                  Send({[type |-> "PreVoteResponse",
                         term |-> IF GrantsPreVote(i, m) THEN m.term ELSE currentTerm[i],
                         granted |-> GrantsPreVote(i, m), from |-> i, to |-> j]})
            /\ UNCHANGED <<durableVars, commitIndex, roleVars, crashed>>

\* Peer::handle_pre_vote_response. A refusal of a newer term is a newer term (observe_term);
\* a granted answer for the next term counts, and a majority starts the election.
HandlePreVoteResponse(i, j, m) ==
    /\ m.type = "PreVoteResponse"
    /\ ~crashed[i]
    /\ UNCHANGED <<commitIndex, crashed, log>>
    /\ LET counts == m.granted /\ m.term = currentTerm[i] + 1 /\ role[i] = "PreCandidate"
       IN IF ~m.granted /\ m.term > currentTerm[i]
          THEN /\ StepDown(i, m.term)
               /\ messages' = Consume(m)
          ELSE IF counts /\ Cardinality(votes[i] \cup {j}) >= Majority
          THEN /\ currentTerm' = [currentTerm EXCEPT ![i] = @ + 1]
               /\ votedFor' = [votedFor EXCEPT ![i] = i]
               /\ messages' = Consume(m) (+) Send(VoteRequests(i, currentTerm[i] + 1, FALSE))
               /\ BecomeCandidate(i)
          ELSE IF counts
          THEN /\ votes' = [votes EXCEPT ![i] = @ \cup {j}]
               /\ messages' = Consume(m)
               /\ UNCHANGED <<currentTerm, votedFor, role, leader, nextIndex, matchIndex,
                              flowState, inflight, heardFrom, transferee>>
          ELSE /\ messages' = Consume(m)
               /\ UNCHANGED <<currentTerm, votedFor, roleVars>>

\* Peer::handle_append_entries_request. A request of an older term is refused with the
\* receiver's term. Otherwise the receiver follows the sender in that term (a candidate
\* gives up, §5.2) and checks its log (§5.3): on a mismatch it refuses with the back-off
\* hint; on a match it stores the entries, learns the commit index up to the last of them
\* and acknowledges that index.
HandleAppendEntriesRequest(i, j, m) ==
    /\ m.type = "AppendEntriesRequest"
    /\ ~crashed[i]
    /\ UNCHANGED crashed
    /\ IF m.term < currentTerm[i]
       THEN /\ messages' = Consume(m) (+)
                  Send({AppendEntriesResponse(i, j, currentTerm[i], FALSE, 0)})
            /\ UNCHANGED <<durableVars, commitIndex, roleVars>>
       ELSE /\ currentTerm' = [currentTerm EXCEPT ![i] = m.term]
            /\ votedFor' = [votedFor EXCEPT ![i] = IF m.term > currentTerm[i] THEN Nil ELSE @]
            /\ BecomeFollower(i, j)
            /\ IF LogOk(i, m)
               THEN /\ log' = [log EXCEPT ![i] =
                                  AppendedLog(@, m.prev_log_index, m.entries)]
                    /\ commitIndex' = [commitIndex EXCEPT ![i] =
                          Max(@, Min(m.leader_commit, m.prev_log_index + Len(m.entries)))]
                    /\ messages' = Consume(m) (+)
                          Send({AppendEntriesResponse(i, j, m.term, TRUE,
                                                      m.prev_log_index + Len(m.entries))})
               ELSE /\ messages' = Consume(m) (+)
                          Send({AppendEntriesResponse(i, j, m.term, FALSE,
                                                      RejectionHint(i, m.prev_log_index))})
                    /\ UNCHANGED <<log, commitIndex>>

\* Peer::handle_append_entries_response. The leader of the response's term notes that it
\* heard from the sender (check-quorum). On success it acknowledges the index (never past
\* its own log), commits what a majority stores, and sends what flow control now lets it.
\* On a refusal it probes again after the hint, never at or below what is known to match
\* (a hint below the match, pipelining or not, is answered by a probe right after it); a
\* hint at or past next - 1 is stale.
HandleAppendEntriesResponse(i, j, m) ==
    /\ m.type = "AppendEntriesResponse"
    /\ ~crashed[i]
    /\ UNCHANGED crashed
    /\ IF m.term > currentTerm[i]
       THEN /\ StepDown(i, m.term)
            /\ messages' = Consume(m)
            /\ UNCHANGED <<log, commitIndex>>
       ELSE IF m.term = currentTerm[i] /\ role[i] = "Leader"
       THEN /\ heardFrom' = [heardFrom EXCEPT ![i] = @ \cup {j}]
            /\ UNCHANGED <<currentTerm, votedFor, log, role, leader, votes, transferee>>
            /\ IF m.success
               THEN LET idx == Min(m.index, Len(log[i]))
                        next == AckNext(nextIndex[i][j], matchIndex[i][j], flowState[i][j], idx)
                        st == AckFlow(matchIndex[i][j], flowState[i][j], idx)
                        infl == AckInflight(matchIndex[i][j], flowState[i][j], inflight[i][j],
                                            idx)
                    IN /\ matchIndex' = [matchIndex EXCEPT ![i][j] = Max(@, idx)]
                       /\ commitIndex' = [commitIndex EXCEPT ![i] =
                                             NewCommitIndex(i, log[i], matchIndex'[i])]
                       /\ nextIndex' = [nextIndex EXCEPT ![i][j] =
                                           NextAfter(next, st, infl, log[i], FALSE)]
                       /\ flowState' = [flowState EXCEPT ![i][j] = FlowAfter(st, FALSE)]
                       /\ inflight' = [inflight EXCEPT ![i][j] =
                                          InflightAfter(next, st, infl, log[i], FALSE)]
                       /\ messages' = Consume(m) (+)
                             Send(SendSet(i, j, next, st, infl, log[i], commitIndex'[i],
                                          FALSE)) (+)
                             \* A transferee whose log now matches is told to take over.
                             Send(IF transferee[i] = j /\ matchIndex'[i][j] = Len(log[i])
                                  THEN {TimeoutNowTo(i, j)} ELSE {})
               ELSE IF m.index + 1 < nextIndex[i][j]
               THEN /\ nextIndex' = [nextIndex EXCEPT ![i][j] = Max(m.index, matchIndex[i][j]) + 1]
                    /\ flowState' = [flowState EXCEPT ![i][j] = "ProbeSent"]
                    /\ inflight' = [inflight EXCEPT ![i][j] = << >>]
                    /\ messages' = Consume(m) (+)
                          Send({AppendAfter(i, j, Max(m.index, matchIndex[i][j]), log[i],
                                            commitIndex[i])})
                    /\ UNCHANGED <<matchIndex, commitIndex>>
               ELSE /\ messages' = Consume(m)
                    /\ UNCHANGED <<nextIndex, matchIndex, flowState, inflight, commitIndex>>
       ELSE /\ messages' = Consume(m)
            /\ UNCHANGED <<durableVars, commitIndex, roleVars>>

\* Peer::handle_timeout_now. The leader of the message's term (or of a newer one than the
\* receiver's) hands leadership over: a follower starts the election of the next term at
\* once, without pre-vote, asking for votes on behalf of the transfer. A stale TimeoutNow,
\* or one reaching a server that campaigns in that term already, changes nothing.
HandleTimeoutNow(i, j, m) ==
    /\ m.type = "TimeoutNow"
    /\ ~crashed[i]
    /\ UNCHANGED <<log, commitIndex, crashed>>
    /\ IF m.term > currentTerm[i] \/ (m.term = currentTerm[i] /\ role[i] = "Follower")
       THEN /\ currentTerm' = [currentTerm EXCEPT ![i] = m.term + 1]
            /\ votedFor' = [votedFor EXCEPT ![i] = i]
            /\ messages' = Consume(m) (+) Send(VoteRequests(i, m.term + 1, TRUE))
            /\ BecomeCandidate(i)
       ELSE /\ messages' = Consume(m)
            /\ UNCHANGED <<currentTerm, votedFor, roleVars>>

-----------------------------------------------------------------------------
(* The environment. *)

\* The server stops. Only its persisted term, vote and log matter when it recovers. As in
\* the model, its commit index stays visible to the invariants until then (it was true
\* when the server crashed); its role state is gone. Messages to it stay in flight.
Crash(i) ==
    /\ ~crashed[i]
    /\ crashed' = [crashed EXCEPT ![i] = TRUE]
    /\ BecomeFollower(i, Nil)
    /\ UNCHANGED <<durableVars, commitIndex, messages>>

\* Peer::restore from what it persisted: a follower with commit index 0, no known leader.
Recover(i) ==
    /\ crashed[i]
    /\ crashed' = [crashed EXCEPT ![i] = FALSE]
    /\ commitIndex' = [commitIndex EXCEPT ![i] = 0]
    /\ BecomeFollower(i, Nil)
    /\ UNCHANGED <<durableVars, messages>>

\* The network loses one copy of a message in flight.
DropMessage(m) ==
    /\ Lossy
    /\ messages' = messages (-) SetToBag({m})
    /\ UNCHANGED <<durableVars, commitIndex, roleVars, crashed>>

-----------------------------------------------------------------------------

\* The history of a step: a server's term going down (even across a crash and recovery),
\* or the commit index of a server that is running before and after the step going down.
\* A flag once set stays set.
RecordHistory ==
    /\ regressedTerm' =
          [i \in Server |-> regressedTerm[i] \/ currentTerm'[i] < currentTerm[i]]
    /\ regressedCommit' =
          [i \in Server |-> regressedCommit[i] \/
                            (~crashed[i] /\ ~crashed'[i] /\ commitIndex'[i] < commitIndex[i])]

\* Every step is one action, together with RecordHistory. Each message handler is tried
\* only on messages of its type, so that a checker need not instantiate every handler for
\* every message.
Next ==
    /\ \/ \E i \in Server : ElectionTimeout(i)
       \/ \E i \in Server : HeartbeatTimeout(i)
       \/ \E i \in Server : \E v \in Value : ClientRequest(i, v)
       \/ \E m \in BagToSet(messages) :
             m.type = "RequestVoteRequest" /\ HandleRequestVoteRequest(m.to, m.from, m)
       \/ \E m \in BagToSet(messages) :
             m.type = "RequestVoteResponse" /\ HandleRequestVoteResponse(m.to, m.from, m)
       \/ \E m \in BagToSet(messages) :
             m.type = "PreVoteRequest" /\ HandlePreVoteRequest(m.to, m.from, m)
       \/ \E m \in BagToSet(messages) :
             m.type = "PreVoteResponse" /\ HandlePreVoteResponse(m.to, m.from, m)
       \/ \E m \in BagToSet(messages) :
             m.type = "AppendEntriesRequest" /\ HandleAppendEntriesRequest(m.to, m.from, m)
       \/ \E m \in BagToSet(messages) :
             m.type = "AppendEntriesResponse" /\ HandleAppendEntriesResponse(m.to, m.from, m)
       \/ \E i, j \in Server : TransferLeadership(i, j)
       \/ \E m \in BagToSet(messages) :
             m.type = "TimeoutNow" /\ HandleTimeoutNow(m.to, m.from, m)
       \/ \E i \in Server : Crash(i)
       \/ \E i \in Server : Recover(i)
       \/ \E m \in BagToSet(messages) : DropMessage(m)
    /\ RecordHistory

Spec == Init /\ [][Next]_vars

-----------------------------------------------------------------------------
(* Invariants, named as the model's Always properties. As in the model, a   *)
(* crashed server's last log and commit index count (they were true when it *)
(* crashed), while only running servers count as leaders. The two about     *)
(* history read the ghost variables that RecordHistory keeps.               *)

LiveLeaders == {i \in Server : ~crashed[i] /\ role[i] = "Leader"}

\* At most one leader per term (§5.2).
ElectionSafety ==
    \A i, j \in LiveLeaders : currentTerm[i] = currentTerm[j] => i = j

\* Two logs with an entry of the same index and term agree up to it (§5.3).
LogMatching ==
    \A i \in Server : \A j \in Others(i) :
        \A k \in 1..Min(Len(log[i]), Len(log[j])) :
            log[i][k].term = log[j][k].term => SubSeq(log[i], 1, k) = SubSeq(log[j], 1, k)

\* A leader holds every entry committed in its term or before (§5.4). A server of a
\* later term may know of commits the leader cannot.
LeaderCompleteness ==
    \A l \in LiveLeaders, i \in Server :
        currentTerm[i] > currentTerm[l] \/ IsPrefix(Committed(i), log[l])

\* A server whose log is at least as up-to-date as a majority's logs (so it could win
\* their votes, §5.4.1) holds every committed entry.
ElectableHoldsCommitted ==
    \A c \in Server :
        \/ \A i \in Server : IsPrefix(Committed(i), log[c])
        \/ Cardinality({v \in Server : AtLeastAsUpToDate(log[c], log[v])}) < Majority

\* No two servers commit different entries at one index (§5.4.3).
StateMachineSafety ==
    \A i \in Server : \A j \in Others(i) :
        SubSeq(log[i], 1, Min(commitIndex[i], commitIndex[j]))
            = SubSeq(log[j], 1, Min(commitIndex[i], commitIndex[j]))

\* Every committed entry is in the persisted log of a majority.
NoCommitOnMinority ==
    \A i \in Server :
        commitIndex[i] = 0
            \/ Cardinality({j \in Server : IsPrefix(Committed(i), log[j])}) >= Majority

\* What a running server has committed is in its own persisted log, so it survives a
\* crash of that server.
CommittedSurvivesCrash ==
    \A i \in Server : ~crashed[i] => commitIndex[i] <= Len(log[i])

\* A leader's progress of each follower stays in range: matched < next <= last + 1, a
\* follower still in the leader's term holds the leader's log up to matched (it acknowledged
\* those entries in that term, and only that term's leader can have changed its log since), at
\* most Window messages in flight, in order, each ending after matched and before next. (The
\* model also counts bytes in flight; the spec does not model bytes.)
FlowControlWindow ==
    \A i \in LiveLeaders, j \in Others(i) :
        /\ matchIndex[i][j] < nextIndex[i][j]
        /\ nextIndex[i][j] <= Len(log[i]) + 1
        /\ currentTerm[j] = currentTerm[i] =>
              /\ matchIndex[i][j] <= Len(log[j])
              /\ SubSeq(log[j], 1, matchIndex[i][j]) = SubSeq(log[i], 1, matchIndex[i][j])
        /\ Len(inflight[i][j]) <= Window
        /\ \A t \in 1..Len(inflight[i][j]) :
              /\ matchIndex[i][j] < inflight[i][j][t]
              /\ inflight[i][j][t] < nextIndex[i][j]
              /\ t > 1 => inflight[i][j][t - 1] < inflight[i][j][t]

\* A server's term never decreases, not even across a crash (it is persisted).
MonotonicTerm ==
    \A i \in Server : ~regressedTerm[i]

\* A running server's commit index never decreases (a recovered server starts at 0).
MonotonicCommit ==
    \A i \in Server : ~regressedCommit[i]

=============================================================================
