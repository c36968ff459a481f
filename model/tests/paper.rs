//! One test per claim of the Raft paper (Ongaro and Ousterhout, "In Search of an Understandable
//! Consensus Algorithm", extended version), checked against the sans-IO [`Peer`] by feeding it
//! inputs by hand and asserting on its [`Output`].

use model::{
    Config, Durable, Entry, FlowControl, Index, Message, NodeId, Output, Peer, PeerError, Persist,
    Role, RoleKind, Term, Timer, TimerCommand,
};

type P = Peer<String>;
type Msg = Message<String>;

fn members(n: u64) -> Vec<NodeId> {
    (1..=n).collect()
}

/// Stands for a leader's blank entry (§8) in the `(term, command)` lists below.
const BLANK: &str = "<blank>";

fn log(entries: &[(Term, &str)]) -> Vec<Entry<String>> {
    entries
        .iter()
        .map(|(term, command)| Entry {
            term: *term,
            command: (*command != BLANK).then(|| command.to_string()),
        })
        .collect()
}

/// Server `id` of an `n`-server cluster, restored from the given durable state.
fn restore(
    id: NodeId,
    n: u64,
    term: Term,
    voted_for: Option<NodeId>,
    entries: &[(Term, &str)],
) -> P {
    let config = Config::new(id, members(n));
    let durable = Durable {
        term,
        voted_for,
        log: log(entries),
    };
    Peer::restore(config, durable)
        .expect("valid durable state")
        .0
}

/// Server `id` restored at `term` with `entries`, then elected leader of `term + 1` with the
/// votes of `voters`. The election's output is discarded.
fn leader(id: NodeId, n: u64, term: Term, entries: &[(Term, &str)], voters: &[NodeId]) -> P {
    let mut peer = restore(id, n, term, None, entries);
    peer.handle_timeout(Timer::Election);
    for voter in voters {
        peer.handle_message(*voter, vote_resp(term + 1, true))
            .unwrap();
    }
    assert_eq!(peer.role_kind(), RoleKind::Leader);
    peer
}

fn vote_req(term: Term, last_log_index: Index, last_log_term: Term) -> Msg {
    Message::RequestVoteRequest {
        term,
        last_log_index,
        last_log_term,
        transfer: false,
    }
}

fn vote_resp(term: Term, granted: bool) -> Msg {
    Message::RequestVoteResponse { term, granted }
}

fn append(
    term: Term,
    prev_log_index: Index,
    prev_log_term: Term,
    entries: &[(Term, &str)],
    leader_commit: Index,
) -> Msg {
    Message::AppendEntriesRequest {
        term,
        prev_log_index,
        prev_log_term,
        entries: log(entries),
        leader_commit,
    }
}

fn ack(term: Term, success: bool, index: Index) -> Msg {
    Message::AppendEntriesResponse {
        term,
        success,
        index,
    }
}

/// The next and matched index of follower `of`.
fn progress(peer: &P, of: NodeId) -> (Index, Index) {
    match peer.role() {
        Role::Leader { progress, .. } => (progress[&of].next, progress[&of].matched),
        role => panic!("{} is not the leader: {role:?}", peer.id()),
    }
}

fn heard_from(peer: &P) -> Vec<NodeId> {
    match peer.role() {
        Role::Leader { heard_from, .. } => heard_from.iter().copied().collect(),
        role => panic!("{} is not the leader: {role:?}", peer.id()),
    }
}

fn persist(hard_state: bool, log_from: Option<Index>) -> Persist {
    Persist {
        hard_state,
        log_from,
    }
}

/// Only the listed parts set; the rest empty.
fn output(
    persist: Persist,
    send_now: Vec<(NodeId, Msg)>,
    send_after_persist: Vec<(NodeId, Msg)>,
    commit: Option<Index>,
    timers: Vec<TimerCommand>,
) -> Output<String> {
    Output {
        persist,
        send_now,
        send_after_persist,
        commit,
        timers,
    }
}

fn no_persist() -> Persist {
    Persist::default()
}

use TimerCommand::{Cancel, Set};

// ----- §5.1 Raft basics -----

/// §5.1: "If a candidate or leader discovers that its term is out of date, it immediately
/// reverts to follower state." A leader learns of term 3 from a follower's response.
#[test]
fn s5_1_leader_with_stale_term_steps_down() {
    let mut peer = leader(1, 3, 1, &[], &[2]);
    assert_eq!(peer.term(), 2);

    let out = peer.handle_message(3, ack(3, false, 0)).unwrap();
    assert_eq!(
        out,
        output(
            persist(true, None),
            vec![],
            vec![],
            None,
            vec![Cancel(Timer::Heartbeat), Set(Timer::Election)],
        )
    );
    assert_eq!(peer.role(), &Role::Follower { leader: None });
    assert_eq!(peer.term(), 3);
    assert_eq!(peer.voted_for(), None, "the vote belonged to term 2");
    assert_eq!(
        peer.propose(vec!["x".into()]).unwrap_err(),
        PeerError::NotLeader { leader: None }
    );
}

/// §5.1: a candidate that learns of a higher term (here from a refused vote) reverts to
/// follower of that term; it keeps its election timer.
#[test]
fn s5_1_candidate_with_stale_term_steps_down() {
    let mut peer = restore(1, 3, 0, None, &[]);
    peer.handle_timeout(Timer::Election);
    assert_eq!((peer.role_kind(), peer.term()), (RoleKind::Candidate, 1));

    let out = peer.handle_message(2, vote_resp(2, false)).unwrap();
    assert_eq!(
        out,
        output(persist(true, None), vec![], vec![], None, vec![])
    );
    assert_eq!(peer.role(), &Role::Follower { leader: None });
    assert_eq!((peer.term(), peer.voted_for()), (2, None));
}

/// §5.1: "If a server receives a request with a stale term number, it rejects the request."
/// The answer carries the current term so the sender can update itself; nothing changes here,
/// and the election timer is not reset by a stale leader.
#[test]
fn s5_1_request_with_stale_term_is_rejected() {
    let mut peer = restore(2, 3, 3, Some(3), &[(1, "a")]);
    let before = peer.clone();

    let out = peer
        .handle_message(1, append(2, 1, 1, &[(2, "b")], 1))
        .unwrap();
    assert_eq!(
        out,
        output(
            no_persist(),
            vec![],
            vec![(1, ack(3, false, 0))],
            None,
            vec![]
        )
    );
    let out = peer.handle_message(1, vote_req(2, 5, 2)).unwrap();
    assert_eq!(
        out,
        output(
            no_persist(),
            vec![],
            vec![(1, vote_resp(3, false))],
            None,
            vec![]
        )
    );
    assert_eq!(peer, before);
}

/// §5.1: "If one server's current term is smaller than the other's, then it updates its
/// current term to the larger value." A follower hearing from the leader of a newer term
/// adopts the term, forgets its old vote and follows that leader.
#[test]
fn s5_1_follower_adopts_higher_term() {
    let mut peer = restore(2, 3, 1, Some(1), &[]);
    let out = peer.handle_message(3, append(4, 0, 0, &[], 0)).unwrap();
    assert_eq!(
        out,
        output(
            persist(true, None),
            vec![],
            vec![(3, ack(4, true, 0))],
            None,
            vec![Set(Timer::Election)],
        )
    );
    assert_eq!((peer.term(), peer.voted_for()), (4, None));
    assert_eq!(peer.leader(), Some(3));
}

// ----- §5.2 Leader election -----

/// §5.2: "Each server will vote for at most one candidate in a given term, on a first-come-
/// first-served basis." A retransmitted request from the same candidate is granted again
/// without a new write; a vote in a later term is a new vote.
#[test]
fn s5_2_one_vote_per_term() {
    let mut voter = restore(3, 3, 0, None, &[]);

    let out = voter.handle_message(1, vote_req(1, 0, 0)).unwrap();
    assert_eq!(
        out,
        output(
            persist(true, None),
            vec![],
            vec![(1, vote_resp(1, true))],
            None,
            vec![Set(Timer::Election)],
        )
    );
    assert_eq!(voter.voted_for(), Some(1));

    let out = voter.handle_message(2, vote_req(1, 0, 0)).unwrap();
    assert_eq!(
        out,
        output(
            no_persist(),
            vec![],
            vec![(2, vote_resp(1, false))],
            None,
            vec![]
        )
    );
    assert_eq!(voter.voted_for(), Some(1));

    let out = voter.handle_message(1, vote_req(1, 0, 0)).unwrap();
    assert_eq!(
        out,
        output(
            no_persist(),
            vec![],
            vec![(1, vote_resp(1, true))],
            None,
            vec![Set(Timer::Election)],
        )
    );

    let out = voter.handle_message(2, vote_req(2, 0, 0)).unwrap();
    assert_eq!(out.persist, persist(true, None));
    assert_eq!(out.send_after_persist, vec![(2, vote_resp(2, true))]);
    assert_eq!((voter.term(), voter.voted_for()), (2, Some(2)));
}

/// §5.2: a candidate has voted for itself in its term, so it refuses every other candidate of
/// that term.
#[test]
fn s5_2_candidate_refuses_other_candidates_of_its_term() {
    let mut peer = restore(1, 3, 0, None, &[]);
    peer.handle_timeout(Timer::Election);
    let out = peer.handle_message(2, vote_req(1, 0, 0)).unwrap();
    assert_eq!(
        out,
        output(
            no_persist(),
            vec![],
            vec![(2, vote_resp(1, false))],
            None,
            vec![]
        )
    );
    assert_eq!(peer.role_kind(), RoleKind::Candidate);
}

/// §5.2: "A candidate wins an election if it receives votes from a majority of the servers in
/// the full cluster for the same term." Refusals, votes of another term and a duplicated vote
/// do not count; the third vote of five makes it leader, and it sends its blank entry at once.
#[test]
fn s5_2_candidate_becomes_leader_on_majority() {
    let mut peer = restore(1, 5, 1, None, &[(1, "a")]);
    let out = peer.handle_timeout(Timer::Election);
    let request = vote_req(2, 1, 1);
    assert_eq!(
        out,
        output(
            persist(true, None),
            vec![],
            (2..=5).map(|to| (to, request.clone())).collect(),
            None,
            vec![Set(Timer::Election)],
        )
    );

    assert!(peer
        .handle_message(2, vote_resp(2, false))
        .unwrap()
        .is_empty());
    assert!(peer
        .handle_message(4, vote_resp(1, true))
        .unwrap()
        .is_empty());
    assert!(peer
        .handle_message(3, vote_resp(2, true))
        .unwrap()
        .is_empty());
    assert!(peer
        .handle_message(3, vote_resp(2, true))
        .unwrap()
        .is_empty());
    assert_eq!(peer.role_kind(), RoleKind::Candidate, "two votes of five");

    let out = peer.handle_message(5, vote_resp(2, true)).unwrap();
    assert_eq!(peer.role_kind(), RoleKind::Leader);
    // §8: the new leader appends a blank entry of its term and probes every follower with it.
    assert_eq!(peer.log(), &log(&[(1, "a"), (2, BLANK)])[..]);
    let probe = append(2, 1, 1, &[(2, BLANK)], 0);
    assert_eq!(
        out,
        output(
            persist(false, Some(2)),
            (2..=5).map(|to| (to, probe.clone())).collect(),
            vec![],
            None,
            vec![Set(Timer::Heartbeat), Set(Timer::Election)],
        )
    );
    for id in 2..=5 {
        assert_eq!(progress(&peer, id), (2, 0));
    }

    assert!(peer
        .handle_message(4, vote_resp(2, true))
        .unwrap()
        .is_empty());
}

/// §5.2: a server alone in its cluster is a majority by itself, and commits its blank entry
/// (§8) and then each proposal on its own.
#[test]
fn s5_2_single_server_elects_itself() {
    let mut peer = restore(1, 1, 0, None, &[]);
    let out = peer.handle_timeout(Timer::Election);
    assert_eq!(peer.role_kind(), RoleKind::Leader);
    assert_eq!(out.persist, persist(true, Some(1)));
    assert_eq!(out.commit, Some(1));
    assert!(out.send_now.is_empty() && out.send_after_persist.is_empty());

    let (index, out) = peer.propose(vec!["x".into()]).unwrap();
    assert_eq!(index, 2);
    assert_eq!(out.persist, persist(false, Some(2)));
    assert_eq!(
        out.commit,
        Some(2),
        "applied only after the persist, per the contract"
    );
}

/// §5.2: "If the leader's term (included in its RPC) is at least as large as the candidate's
/// current term, then the candidate recognizes the leader as legitimate and returns to
/// follower state." An AppendEntries of an older term does not make it step down.
#[test]
fn s5_2_candidate_steps_down_on_append_entries_of_its_term() {
    let mut peer = restore(1, 3, 1, None, &[]);
    peer.handle_timeout(Timer::Election);
    assert_eq!((peer.role_kind(), peer.term()), (RoleKind::Candidate, 2));

    let out = peer.handle_message(2, append(1, 0, 0, &[], 0)).unwrap();
    assert_eq!(
        out,
        output(
            no_persist(),
            vec![],
            vec![(2, ack(2, false, 0))],
            None,
            vec![]
        )
    );
    assert_eq!(peer.role_kind(), RoleKind::Candidate);

    let out = peer.handle_message(3, append(2, 0, 0, &[], 0)).unwrap();
    assert_eq!(
        out,
        output(
            no_persist(),
            vec![],
            vec![(3, ack(2, true, 0))],
            None,
            vec![Set(Timer::Election)],
        )
    );
    assert_eq!(peer.role(), &Role::Follower { leader: Some(3) });
    assert_eq!(
        (peer.term(), peer.voted_for()),
        (2, Some(1)),
        "same term, vote kept"
    );
}

// ----- §5.3 Log replication -----

/// §5.3: "If the follower does not find an entry in its log with the same index and term, then
/// it refuses the new entries", and "After a rejection, the leader decrements nextIndex and
/// retries". Here the rejection carries a hint that skips the follower's whole run of the
/// conflicting term (the optimization at the end of §5.3), and the leader retries from it.
#[test]
fn s5_3_consistency_check_rejects_with_hint_and_leader_retries_lower() {
    let mut follower = restore(
        2,
        3,
        2,
        None,
        &[(1, "a"), (1, "b"), (2, "x"), (2, "y"), (2, "z")],
    );
    // A leader of term 3 whose entries 3 and 4 (term 1) conflict with the follower's run of
    // term 2; its blank entry is index 5.
    let mut leader = leader(1, 3, 2, &[(1, "a"), (1, "b"), (1, "c"), (1, "d")], &[3]);
    assert_eq!(leader.term(), 3);
    // The new leader probes each follower with its blank entry, just after its earlier last
    // entry; the probe to 2 is lost, and the heartbeat probes again.
    assert_eq!(progress(&leader, 2), (5, 0));
    let out = leader.handle_timeout(Timer::Heartbeat);
    let probe = append(3, 4, 1, &[(3, BLANK)], 0);
    assert_eq!(out.send_now[0], (2, probe.clone()));

    // Index 4 has term 2 at the follower, not 1: refused. Indexes 3..=5 are its run of term
    // 2, so the hint is 2.
    let out = follower.handle_message(1, probe).unwrap();
    assert_eq!(
        out,
        output(
            persist(true, None),
            vec![],
            vec![(1, ack(3, false, 2))],
            None,
            vec![Set(Timer::Election)],
        )
    );
    assert_eq!(
        follower.log(),
        &log(&[(1, "a"), (1, "b"), (2, "x"), (2, "y"), (2, "z")])[..]
    );

    let out = leader.handle_message(2, ack(3, false, 2)).unwrap();
    let retry = append(3, 2, 1, &[(1, "c"), (1, "d"), (3, BLANK)], 0);
    assert_eq!(
        out,
        output(no_persist(), vec![(2, retry.clone())], vec![], None, vec![])
    );

    let out = follower.handle_message(1, retry).unwrap();
    assert_eq!(
        out,
        output(
            persist(false, Some(3)),
            vec![],
            vec![(1, ack(3, true, 5))],
            None,
            vec![Set(Timer::Election)],
        )
    );
    assert_eq!(follower.log(), leader.log());

    // The blank entry of term 3 on a majority commits it and every entry before it (§8).
    let out = leader.handle_message(2, ack(3, true, 5)).unwrap();
    assert_eq!(out.commit, Some(5));
    assert_eq!(progress(&leader, 2), (6, 5));
}

/// §5.3: the back-off hint. A follower whose log is too short answers with its last index; the
/// hint never goes below the follower's commit index (committed entries match the leader's).
#[test]
fn s5_3_rejection_hint_bounds() {
    let mut short = restore(2, 3, 1, None, &[(1, "a")]);
    let out = short.handle_message(1, append(1, 3, 1, &[], 0)).unwrap();
    assert_eq!(out.send_after_persist, vec![(1, ack(1, false, 1))]);

    let mut follower = restore(2, 3, 2, None, &[(1, "a"), (2, "b"), (2, "c")]);
    // Commit index 2 learned from the leader of term 2.
    let out = follower.handle_message(1, append(2, 2, 2, &[], 2)).unwrap();
    assert_eq!(out.commit, Some(2));
    // A leader of term 3 whose entry 3 has term 3: the run of term 2 stops at the commit index.
    let out = follower.handle_message(3, append(3, 3, 3, &[], 2)).unwrap();
    assert_eq!(out.send_after_persist, vec![(3, ack(3, false, 2))]);
}

/// §5.3: the leader backs off but never below what it knows the follower stores. A rejection
/// whose hint lies below the matched index, pipelined or not, is answered by a probe just
/// after the matched index (the hint may have skipped a term run that reaches below it).
#[test]
fn s5_3_leader_backs_off_no_lower_than_matched() {
    let mut leader = leader(1, 3, 0, &[], &[2]);
    leader.propose(vec!["a".into(), "b".into()]).unwrap();
    // The answer to the new leader's probe arrives after 2 stored the blank entry and both
    // commands.
    leader.handle_message(2, ack(1, true, 3)).unwrap();
    assert_eq!(progress(&leader, 2), (4, 3));

    let out = leader.handle_message(2, ack(1, false, 0)).unwrap();
    assert_eq!(
        out.send_now,
        vec![(2, append(1, 3, 1, &[], 3))],
        "a pipelined follower's rejection below the match: a probe right after it"
    );
    assert_eq!(progress(&leader, 2), (4, 3));
    // The probe is answered: 2 is pipelined again.
    leader.handle_message(2, ack(1, true, 3)).unwrap();

    // Entry 4 is pipelined; a rejection at 3 (say 2 lost it and the heartbeat after it was
    // refused) sends 2 back to probing from 4.
    let (_, out) = leader.propose(vec!["c".into()]).unwrap();
    let append_c = append(1, 3, 1, &[(1, "c")], 3);
    assert_eq!(out.send_now, vec![(2, append_c.clone())]);
    assert_eq!(progress(&leader, 2), (5, 3));
    let out = leader.handle_message(2, ack(1, false, 3)).unwrap();
    assert_eq!(out.send_now, vec![(2, append_c.clone())]);
    assert_eq!(progress(&leader, 2), (4, 3));
    // A late rejection below the match while probing: probed again from 4, not lower.
    leader.handle_timeout(Timer::Heartbeat);
    let out = leader.handle_message(2, ack(1, false, 0)).unwrap();
    assert_eq!(out.send_now, vec![(2, append_c)]);
    assert_eq!(progress(&leader, 2), (4, 3));
}

/// §5.3 and Figure 2 (AppendEntries receiver, step 3): "If an existing entry conflicts with a
/// new one (same index but different terms), delete the existing entry and all that follow
/// it." Entry 1 matches and is kept; 2 and 3 are replaced; the log is persisted from 2.
#[test]
fn s5_3_conflicting_entries_are_deleted() {
    let mut follower = restore(2, 3, 2, None, &[(1, "a"), (2, "b"), (2, "c")]);
    let out = follower
        .handle_message(1, append(3, 0, 0, &[(1, "a"), (3, "x")], 0))
        .unwrap();
    assert_eq!(
        out,
        output(
            persist(true, Some(2)),
            vec![],
            vec![(1, ack(3, true, 2))],
            None,
            vec![Set(Timer::Election)],
        )
    );
    assert_eq!(follower.log(), &log(&[(1, "a"), (3, "x")])[..]);
}

/// §5.3 and Figure 2 (step 4, "Append any new entries not already in the log"): entries that
/// are already present with the same term are kept, so an AppendEntries that arrives late
/// (reordered behind a longer one of the same leader) truncates nothing; the leader, in turn,
/// does not lower what it knows the follower matches when the late acknowledgement arrives.
#[test]
fn s5_3_matching_entries_are_kept_for_a_stale_append() {
    let mut follower = restore(2, 3, 1, Some(1), &[(1, "a"), (1, "b"), (1, "c")]);

    let out = follower
        .handle_message(1, append(1, 0, 0, &[(1, "a")], 0))
        .unwrap();
    assert_eq!(
        out,
        output(
            no_persist(),
            vec![],
            vec![(1, ack(1, true, 1))],
            None,
            vec![Set(Timer::Election)],
        )
    );
    assert_eq!(follower.log().len(), 3, "nothing truncated");

    let out = follower
        .handle_message(1, append(1, 1, 1, &[(1, "b")], 0))
        .unwrap();
    assert_eq!(out.persist, no_persist());
    assert_eq!(out.send_after_persist, vec![(1, ack(1, true, 2))]);

    // Overlapping: c is kept, d is new; only d is written.
    let out = follower
        .handle_message(1, append(1, 2, 1, &[(1, "c"), (1, "d")], 0))
        .unwrap();
    assert_eq!(out.persist, persist(false, Some(4)));
    assert_eq!(out.send_after_persist, vec![(1, ack(1, true, 4))]);
    assert_eq!(
        follower.log(),
        &log(&[(1, "a"), (1, "b"), (1, "c"), (1, "d")])[..]
    );

    let mut leader = leader(1, 3, 0, &[], &[2]);
    leader
        .propose(vec!["a".into(), "b".into(), "c".into()])
        .unwrap();
    leader.handle_message(2, ack(1, true, 4)).unwrap();
    let out = leader.handle_message(2, ack(1, true, 1)).unwrap();
    assert!(out.is_empty());
    assert_eq!(progress(&leader, 2), (5, 4));
}

// ----- §5.4 Safety -----

/// §5.4.1: "If the logs have last entries with different terms, then the log with the later
/// term is more up-to-date." A longer log ending in an older term is refused; the voter still
/// adopts the candidate's newer term (and persists it), but casts no vote.
#[test]
fn s5_4_1_vote_refused_to_log_with_older_last_term() {
    let mut voter = restore(3, 3, 2, None, &[(1, "a"), (2, "b")]);
    let out = voter.handle_message(1, vote_req(3, 5, 1)).unwrap();
    assert_eq!(
        out,
        output(
            persist(true, None),
            vec![],
            vec![(1, vote_resp(3, false))],
            None,
            vec![],
        )
    );
    assert_eq!((voter.term(), voter.voted_for()), (3, None));

    // A shorter log ending in a newer term is more up-to-date.
    let mut voter = restore(3, 3, 3, None, &[(1, "a"), (2, "b"), (2, "c")]);
    let out = voter.handle_message(1, vote_req(4, 1, 3)).unwrap();
    assert_eq!(out.send_after_persist, vec![(1, vote_resp(4, true))]);
}

/// §5.4.1: "If the logs end with the same term, then whichever log is longer is more
/// up-to-date." A shorter log of the same last term is refused; an equal one is granted.
#[test]
fn s5_4_1_vote_refused_to_shorter_log_with_same_last_term() {
    let mut voter = restore(3, 3, 2, None, &[(1, "a"), (2, "b"), (2, "c")]);
    let out = voter.handle_message(1, vote_req(3, 2, 2)).unwrap();
    assert_eq!(out.send_after_persist, vec![(1, vote_resp(3, false))]);
    assert_eq!(voter.voted_for(), None);

    let out = voter.handle_message(2, vote_req(3, 3, 2)).unwrap();
    assert_eq!(out.send_after_persist, vec![(2, vote_resp(3, true))]);
    assert_eq!(voter.voted_for(), Some(2));
}

/// §5.4.2 (Figure 8): "Raft never commits log entries from previous terms by counting
/// replicas. Only log entries from the leader's current term are committed by counting
/// replicas; once an entry from the current term has been committed in this way, then all
/// prior entries are committed indirectly." The leader sends one entry per AppendEntries, so
/// the earlier-term entry reaches a majority before the blank entry of its term (§8) does.
#[test]
fn s5_4_2_earlier_term_entry_commits_only_under_a_current_term_entry() {
    let one_entry_per_message = Config {
        flow: FlowControl {
            max_entries: 1,
            ..FlowControl::default()
        },
        ..Config::new(1, members(3))
    };
    let durable = Durable {
        term: 3,
        voted_for: None,
        log: log(&[(2, "a")]),
    };
    let mut s1 = Peer::restore(one_entry_per_message, durable).unwrap().0;
    let mut s2 = restore(2, 3, 3, None, &[]);

    let out = s1.handle_timeout(Timer::Election);
    let (_, request) = out.send_after_persist[0].clone();
    let out = s2.handle_message(1, request).unwrap();
    let out = s1
        .handle_message(2, out.send_after_persist[0].1.clone())
        .unwrap();
    assert_eq!((s1.role_kind(), s1.term()), (RoleKind::Leader, 4));
    assert_eq!(s1.log(), &log(&[(2, "a"), (4, BLANK)])[..]);
    let probe = out.send_now[0].1.clone();
    assert_eq!(probe, append(4, 1, 2, &[(4, BLANK)], 0));

    // s2 lacks entry 1: rejected, retried with entry 1 alone, stored.
    let out = s2.handle_message(1, probe).unwrap();
    let out = s1
        .handle_message(2, out.send_after_persist[0].1.clone())
        .unwrap();
    assert_eq!(out.send_now, vec![(2, append(4, 0, 0, &[(2, "a")], 0))]);
    let out = s2.handle_message(1, out.send_now[0].1.clone()).unwrap();
    assert_eq!(out.send_after_persist, vec![(1, ack(4, true, 1))]);

    // Entry 1 (term 2) is now on s1 and s2, a majority, but is not committed; the blank
    // entry goes next.
    let out = s1.handle_message(2, ack(4, true, 1)).unwrap();
    assert_eq!(out.commit, None);
    assert_eq!(s1.commit_index(), 0);
    assert_eq!(progress(&s1, 2).1, 1);
    assert_eq!(out.send_now, vec![(2, append(4, 1, 2, &[(4, BLANK)], 0))]);

    // The blank entry of term 4 on the same majority commits both.
    let out = s2.handle_message(1, out.send_now[0].1.clone()).unwrap();
    let out = s1
        .handle_message(2, out.send_after_persist[0].1.clone())
        .unwrap();
    assert_eq!(out.commit, Some(2));
    assert_eq!(s1.commit_index(), 2);
}

// ----- Figure 2 -----

/// Figure 2, AppendEntries receiver step 5: "If leaderCommit > commitIndex, set commitIndex =
/// min(leaderCommit, index of last new entry)." Entries past the last new one are not
/// committed even if present; the commit index never goes back.
#[test]
fn figure2_commit_index_is_min_of_leader_commit_and_last_new_entry() {
    let mut follower = restore(2, 3, 1, Some(1), &[(1, "a"), (1, "b"), (1, "c")]);

    let out = follower
        .handle_message(1, append(1, 0, 0, &[(1, "a")], 3))
        .unwrap();
    assert_eq!(out.commit, Some(1));

    let out = follower
        .handle_message(1, append(1, 1, 1, &[(1, "b"), (1, "c")], 2))
        .unwrap();
    assert_eq!(out.commit, Some(2));

    // A heartbeat's last new entry is its prev_log_index.
    let out = follower.handle_message(1, append(1, 3, 1, &[], 5)).unwrap();
    assert_eq!(out.commit, Some(3));

    let out = follower.handle_message(1, append(1, 0, 0, &[], 1)).unwrap();
    assert_eq!(out.commit, None);
    assert_eq!(follower.commit_index(), 3);

    // A rejected append commits nothing.
    let mut fresh = restore(3, 3, 1, None, &[]);
    let out = fresh.handle_message(1, append(1, 2, 1, &[], 2)).unwrap();
    assert_eq!(out.commit, None);
}

// ----- Persistence and the Output ordering contract -----

/// What `persist` must say for a step that turned `before` into `after`: hard state when the
/// term or the vote changed, and the log from its first changed index.
fn required_persist(before: &Durable<String>, after: &Durable<String>) -> Persist {
    let hard_state = (before.term, before.voted_for) != (after.term, after.voted_for);
    let common = before
        .log
        .iter()
        .zip(&after.log)
        .take_while(|(a, b)| a == b)
        .count();
    let log_changed = common != before.log.len() || common != after.log.len();
    Persist {
        hard_state,
        log_from: log_changed.then_some(common as Index + 1),
    }
}

/// Figure 2 ("Persistent state on all servers, updated on stable storage before responding to
/// RPCs"): across a run through elections, replication, a conflict and a step-down, every
/// Output marks `hard_state` exactly when the term or vote changed and `log_from` exactly at
/// the first changed index.
#[test]
fn persist_marks_exactly_what_changed() {
    let mut s1 = restore(1, 3, 0, None, &[]);
    let mut s2 = restore(2, 3, 0, None, &[]);
    let mut s3 = restore(3, 3, 0, None, &[]);

    fn check(peer: &mut P, input: impl FnOnce(&mut P) -> Output<String>) -> Output<String> {
        let before = peer.durable().clone();
        let out = input(peer);
        assert_eq!(
            out.persist,
            required_persist(&before, peer.durable()),
            "{before:?} -> {:?}",
            peer.durable()
        );
        out
    }
    let msg = |out: &Output<String>, to: NodeId| {
        out.messages().find(|(t, _)| *t == to).unwrap().1.clone()
    };

    // Campaign: term and vote.
    let c = check(&mut s1, |p| p.handle_timeout(Timer::Election));
    assert!(c.persist.hard_state && c.persist.log_from.is_none());
    // Grant: term and vote.
    let g = check(&mut s2, |p| p.handle_message(1, msg(&c, 2)).unwrap());
    assert!(g.persist.hard_state);
    // Becoming leader appends the blank entry (§8): the log from 1.
    let l = check(&mut s1, |p| p.handle_message(2, msg(&g, 1)).unwrap());
    assert_eq!(l.persist, persist(false, Some(1)));
    // s3 learns term 1 and stores the blank entry.
    let a = check(&mut s3, |p| p.handle_message(1, msg(&l, 3)).unwrap());
    assert_eq!(a.persist, persist(true, Some(1)));
    // s2 is already in term 1: the blank entry only.
    let a = check(&mut s2, |p| p.handle_message(1, msg(&l, 2)).unwrap());
    assert_eq!(a.persist, persist(false, Some(1)));
    // The same append again: nothing.
    let a = check(&mut s2, |p| p.handle_message(1, msg(&l, 2)).unwrap());
    assert_eq!(a.persist, no_persist());
    check(&mut s1, |p| p.handle_message(2, msg(&a, 1)).unwrap());

    // Propose: the log from the first new index.
    let mut proposal = None;
    let prop = check(&mut s1, |p| {
        let (index, out) = p.propose(vec!["x".into(), "y".into()]).unwrap();
        proposal = Some(index);
        out
    });
    assert_eq!(proposal, Some(2));
    assert_eq!(prop.persist, persist(false, Some(2)));
    let a = check(&mut s2, |p| p.handle_message(1, msg(&prop, 2)).unwrap());
    assert_eq!(a.persist, persist(false, Some(2)));
    // The same append again: nothing.
    let a = check(&mut s2, |p| p.handle_message(1, msg(&prop, 2)).unwrap());
    assert_eq!(a.persist, no_persist());
    check(&mut s1, |p| p.handle_message(2, msg(&a, 1)).unwrap());

    // s3 campaigns (term 2) without the entries; s1 steps down on the refusal's term.
    let c3 = check(&mut s3, |p| p.handle_timeout(Timer::Election));
    let r = check(&mut s1, |p| p.handle_message(3, msg(&c3, 1)).unwrap());
    assert_eq!(r.send_after_persist, vec![(3, vote_resp(2, false))]);
    assert_eq!(r.persist, persist(true, None));

    // s1 wins term 3 with s3's vote and overwrites nothing at s3 but appends there.
    let c1 = check(&mut s1, |p| p.handle_timeout(Timer::Election));
    let g3 = check(&mut s3, |p| p.handle_message(1, msg(&c1, 3)).unwrap());
    let l = check(&mut s1, |p| p.handle_message(3, msg(&g3, 1)).unwrap());
    let rej = check(&mut s3, |p| p.handle_message(1, msg(&l, 3)).unwrap());
    let retry = check(&mut s1, |p| p.handle_message(3, msg(&rej, 1)).unwrap());
    let a = check(&mut s3, |p| p.handle_message(1, msg(&retry, 3)).unwrap());
    assert_eq!(a.persist, persist(false, Some(2)));
    assert_eq!(s3.log(), s1.log());
}

/// The Output ordering contract (Figure 2's "before responding to RPCs", and the dissertation's
/// §10.2.1 for the leader): vote requests, vote grants and append acknowledgements (successes
/// and refusals alike) wait for the persist in `send_after_persist`; only a leader's
/// AppendEntries go in `send_now`, on election, proposal, heartbeat and retry.
#[test]
fn replies_wait_for_persist_and_leader_appends_go_now() {
    let mut s1 = restore(1, 3, 0, None, &[]);
    let mut s2 = restore(2, 3, 0, None, &[]);

    let campaign = s1.handle_timeout(Timer::Election);
    assert!(campaign.send_now.is_empty());
    assert_eq!(campaign.send_after_persist.len(), 2);

    let grant = s2
        .handle_message(1, campaign.send_after_persist[0].1.clone())
        .unwrap();
    assert!(grant.send_now.is_empty());
    assert_eq!(grant.send_after_persist, vec![(1, vote_resp(1, true))]);
    assert!(grant.persist.hard_state);

    let elected = s1.handle_message(2, vote_resp(1, true)).unwrap();
    assert!(elected.send_after_persist.is_empty());
    assert_eq!(elected.persist, persist(false, Some(1)));
    let probe = append(1, 0, 0, &[(1, BLANK)], 0);
    assert_eq!(elected.send_now, vec![(2, probe.clone()), (3, probe)]);

    // 2 stores the blank entry, so the leader commits it and pipelines to 2; 3 has not
    // answered.
    let answered = s2.handle_message(1, elected.send_now[0].1.clone()).unwrap();
    assert_eq!(answered.send_after_persist, vec![(1, ack(1, true, 1))]);
    let acked = s1.handle_message(2, ack(1, true, 1)).unwrap();
    assert!(acked.send_now.is_empty());
    assert_eq!(acked.commit, Some(1));

    let (_, proposed) = s1.propose(vec!["x".into()]).unwrap();
    assert!(proposed.send_after_persist.is_empty());
    assert_eq!(proposed.persist, persist(false, Some(2)));
    assert_eq!(
        proposed.send_now,
        vec![(2, append(1, 1, 1, &[(1, "x")], 1))]
    );

    let stored = s2
        .handle_message(1, proposed.send_now[0].1.clone())
        .unwrap();
    assert!(stored.send_now.is_empty());
    assert_eq!(stored.send_after_persist, vec![(1, ack(1, true, 2))]);
    assert_eq!(stored.persist, persist(false, Some(2)));

    let heartbeat = s1.handle_timeout(Timer::Heartbeat);
    assert_eq!(heartbeat.persist, no_persist());
    assert!(heartbeat.send_after_persist.is_empty());
    assert_eq!(
        heartbeat.send_now,
        vec![
            (2, append(1, 2, 1, &[], 1)),
            (3, append(1, 0, 0, &[(1, BLANK), (1, "x")], 1)),
        ]
    );
    assert_eq!(heartbeat.timers, vec![Set(Timer::Heartbeat)]);

    // 3 never answered: the heartbeat probes it again, with entries 1 and 2. Its answer
    // waits for the persist too; the leader's next append to it goes now.
    let mut s3 = restore(3, 3, 1, None, &[]);
    let stored = s3
        .handle_message(1, heartbeat.send_now[1].1.clone())
        .unwrap();
    assert!(stored.send_now.is_empty());
    assert_eq!(stored.send_after_persist, vec![(1, ack(1, true, 2))]);
    let answered = s1.handle_message(3, ack(1, true, 2)).unwrap();
    assert_eq!(answered.commit, Some(2));
    let (_, proposed) = s1.propose(vec!["y".into()]).unwrap();
    assert!(proposed.send_after_persist.is_empty());
    assert_eq!(
        proposed.send_now,
        vec![
            (2, append(1, 2, 1, &[(1, "y")], 2)),
            (3, append(1, 2, 1, &[(1, "y")], 2)),
        ]
    );

    // A heartbeat timer that outlived its leadership does nothing.
    assert!(s2.handle_timeout(Timer::Heartbeat).is_empty());
}

// ----- Check-quorum (dissertation §6.2) -----

/// Check-quorum: a leader whose election timer fires stays leader if it heard from a majority
/// (itself included) since the last check, and starts a new period.
#[test]
fn check_quorum_leader_that_heard_from_a_majority_stays() {
    let mut peer = leader(1, 3, 0, &[], &[2]);
    peer.handle_message(3, ack(1, true, 0)).unwrap();
    assert_eq!(heard_from(&peer), vec![3]);

    let out = peer.handle_timeout(Timer::Election);
    assert_eq!(
        out,
        output(
            no_persist(),
            vec![],
            vec![],
            None,
            vec![Set(Timer::Election)]
        )
    );
    assert_eq!(peer.role_kind(), RoleKind::Leader);
    assert!(heard_from(&peer).is_empty(), "a new period starts");
}

/// Check-quorum: a leader that heard from no majority in the last period steps down, in the
/// same term, cancels its heartbeat and arms its election timer. The vote it received (a
/// RequestVoteResponse) and responses of another term do not count as hearing from a follower.
#[test]
fn check_quorum_leader_without_a_majority_steps_down() {
    let mut peer = leader(1, 3, 0, &[], &[2]);
    let _ = peer.handle_message(3, vote_resp(1, true)).unwrap();
    let _ = peer.handle_message(3, ack(0, true, 0)).unwrap();
    assert!(heard_from(&peer).is_empty());

    let out = peer.handle_timeout(Timer::Election);
    assert_eq!(
        out,
        output(
            no_persist(),
            vec![],
            vec![],
            None,
            vec![Cancel(Timer::Heartbeat), Set(Timer::Election)],
        )
    );
    assert_eq!(peer.role(), &Role::Follower { leader: None });
    assert_eq!((peer.term(), peer.voted_for()), (1, Some(1)));
    assert_eq!(
        peer.propose(vec!["x".into()]).unwrap_err(),
        PeerError::NotLeader { leader: None }
    );

    // Five servers: one follower heard is two of five, not a majority.
    let mut peer = leader(1, 5, 0, &[], &[2, 3]);
    peer.handle_message(2, ack(1, false, 0)).unwrap();
    peer.handle_timeout(Timer::Election);
    assert_eq!(peer.role_kind(), RoleKind::Follower);

    // The period resets: heard in the first period only is not enough for the second.
    let mut peer = leader(1, 3, 0, &[], &[2]);
    peer.handle_message(2, ack(1, true, 0)).unwrap();
    peer.handle_timeout(Timer::Election);
    assert_eq!(peer.role_kind(), RoleKind::Leader);
    peer.handle_timeout(Timer::Election);
    assert_eq!(peer.role_kind(), RoleKind::Follower);
}
