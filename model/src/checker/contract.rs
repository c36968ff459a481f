//! The contract of one Peer step, checked on every step the model takes.
//!
//! The Always properties judge states: what servers hold and commit. A step can break the
//! Peer's documented contract long before any state shows it (an acknowledgement of entries a
//! follower does not hold, a changed term that is not persisted, a rejection hint past the
//! request) or without any state ever showing it within the bounds. This module states that
//! contract from the documentation of [`Output`], [`Persist`] and [`Message`], independently of
//! how the Peer computes its answers, and [`violation`] returns the first clause a step breaks.
//! The model reports it as the property `OutputContract`.
//!
//! [`Persist`]: crate::peer::Persist

use crate::peer::{Deviation, Entry, Flow, Index, Message, NodeId, Output, Peer, Role, Timer};

/// What a step was given.
pub enum Input<'a, C> {
    /// A message from another server.
    Message(NodeId, &'a Message<C>),
    /// A timer fired.
    Timeout(Timer),
    /// A client proposal that the Peer accepted.
    Propose(&'a [C]),
    /// A request to hand leadership over to this server, which the leader accepted.
    Transfer(NodeId),
}

fn term_at<C>(log: &[Entry<C>], index: Index) -> Option<u64> {
    if index == 0 {
        return Some(0);
    }
    log.get(index as usize - 1).map(|e| e.term)
}

/// The first index at which two logs differ (1-based), if they differ.
fn first_difference<C: PartialEq>(a: &[Entry<C>], b: &[Entry<C>]) -> Option<Index> {
    let shared = a.len().min(b.len());
    (0..shared)
        .find(|&k| a[k] != b[k])
        .or((a.len() != b.len()).then_some(shared))
        .map(|k| k as Index + 1)
}

/// Whether `log` holds `entries` right after `prev` (the §5.3 Log Matching promise of an
/// acknowledgement).
fn holds<C: PartialEq>(log: &[Entry<C>], prev: Index, entries: &[Entry<C>]) -> bool {
    let start = prev as usize;
    log.get(start..start + entries.len()) == Some(entries)
}

/// The first clause of the start contract that a server coming up from `durable` breaks, if
/// any: it holds what storage kept, follows no leader, sends and writes nothing, and arms its
/// election timer. A server that starts without that timer never campaigns: a cluster whose
/// servers all restart together would never elect a leader.
pub fn start_violation<C: Clone + PartialEq + std::fmt::Debug + crate::Payload, D: Deviation>(
    durable: &crate::peer::Durable<C>,
    peer: &Peer<C, D>,
    output: &Output<C>,
) -> Option<String> {
    if peer.durable() != durable {
        return Some("a start changed the durable state it restored".into());
    }
    if !matches!(peer.role(), Role::Follower { leader: None }) {
        return Some(format!(
            "a start made a {} (a server comes up a follower of no leader)",
            peer.role_kind()
        ));
    }
    if output.messages().next().is_some() || output.persist.is_needed() {
        return Some("a start sent a message or asked to persist".into());
    }
    let armed = output
        .timers
        .contains(&crate::peer::TimerCommand::Set(Timer::Election));
    (!armed).then(|| "a start did not arm the election timer".into())
}

/// The first clause of the step contract that this step breaks, if any.
pub fn violation<C: Clone + PartialEq + std::fmt::Debug + crate::Payload, D: Deviation>(
    before: &Peer<C, D>,
    input: &Input<C>,
    after: &Peer<C, D>,
    output: &Output<C>,
) -> Option<String> {
    let me = after.id();
    // Every message carries the sender's term after the step, goes to another member, and
    // only a leader's AppendEntries may leave before the persist.
    for (to, message) in output.messages() {
        // A pre-vote request proposes the next term; a granted pre-vote answer repeats the
        // request's term (checked with the request below).
        let carried = match message {
            Message::PreVoteRequest { .. } => after.term() + 1,
            Message::PreVoteResponse { granted: true, .. } => message.term(),
            _ => after.term(),
        };
        if message.term() != carried {
            return Some(format!(
                "sent {} with term {} while in term {}",
                message.kind(),
                message.term(),
                after.term()
            ));
        }
        if *to == me || !after.config().members.contains(to) {
            return Some(format!(
                "sent {} to {to}, not another member",
                message.kind()
            ));
        }
        if let Message::AppendEntriesRequest {
            prev_log_index,
            prev_log_term,
            entries,
            leader_commit,
            ..
        } = message
        {
            if after.role_kind() != crate::peer::RoleKind::Leader {
                return Some("a server that is not the leader sent AppendEntries".into());
            }
            if term_at(after.log(), *prev_log_index) != Some(*prev_log_term)
                || !holds(after.log(), *prev_log_index, entries)
            {
                return Some(format!(
                    "AppendEntries to {to} (prev {prev_log_index}/{prev_log_term}, {} entries) \
                     does not match the leader's log",
                    entries.len()
                ));
            }
            // A message carries at least one entry when the leader's log goes on past its
            // prev index (`RaftLog::batch_from`): an empty AppendEntries is a heartbeat at the
            // end of the log, never a way to send nothing.
            if entries.is_empty() && *prev_log_index < after.last_index() {
                return Some(format!(
                    "AppendEntries to {to} after index {prev_log_index} carries no entry, though \
                     the leader's log goes on to {}",
                    after.last_index()
                ));
            }
            // ... and it carries as many as its caps allow (`FlowControl`): it stops before
            // the end of the log only at `max_entries` entries, or where the next entry would
            // take its commands past `max_bytes`. Fewer is not unsafe, but it is not what the
            // Peer promises its operator: a follower far behind would catch up one entry at a
            // time.
            let flow = after.config().flow;
            let bytes = entries
                .iter()
                .map(Entry::size)
                .fold(0u64, u64::saturating_add);
            // ... and no more than they allow: a message may pass the byte cap only with its
            // one entry.
            if entries.len() as u64 > flow.max_entries
                || (entries.len() > 1 && bytes > flow.max_bytes)
            {
                return Some(format!(
                    "AppendEntries to {to} after index {prev_log_index} carries {} entries \
                     ({bytes} bytes), past its caps ({} entries, {} bytes)",
                    entries.len(),
                    flow.max_entries,
                    flow.max_bytes
                ));
            }
            let follows = after.log().get(*prev_log_index as usize + entries.len());
            if let (false, Some(next)) = (entries.is_empty(), follows) {
                let capped = entries.len() as u64 >= flow.max_entries
                    || bytes.saturating_add(next.size()) > flow.max_bytes;
                if !capped {
                    return Some(format!(
                        "AppendEntries to {to} after index {prev_log_index} carries {} entries \
                         ({bytes} bytes), though the leader's log goes on to {} and neither \
                         cap ({} entries, {} bytes) stops it there",
                        entries.len(),
                        after.last_index(),
                        flow.max_entries,
                        flow.max_bytes
                    ));
                }
            }
            if *leader_commit > after.commit_index() {
                return Some(format!(
                    "AppendEntries carries commit {leader_commit} past the leader's {}",
                    after.commit_index()
                ));
            }
            // ... and not short of it: the step commits first and sends after, or the
            // follower learns of the commit a message late.
            if *leader_commit < after.commit_index() {
                return Some(format!(
                    "AppendEntries carries commit {leader_commit} short of the leader's {}",
                    after.commit_index()
                ));
            }
            // A pipelined AppendEntries is counted in the window it leaves through
            // (`Flow::Replicate`): once sent, the leader's record of what is in flight to that
            // follower holds its last index and its bytes, until an acknowledgement or a
            // heartbeat (never the same step) frees it. A message the window does not count
            // lets the leader send past `max_inflight`.
            let inflight = match after.role() {
                Role::Leader { progress, .. } => progress.get(to).and_then(|p| match &p.flow {
                    Flow::Replicate { inflight } => Some(inflight),
                    Flow::Probe { .. } => None,
                }),
                _ => None,
            };
            // An empty AppendEntries is a probe, or the heartbeat's message when there is
            // nothing else to send: a pipelined follower with nothing to send hears nothing
            // between heartbeats.
            let heartbeat = matches!(input, Input::Timeout(Timer::Heartbeat));
            if entries.is_empty() && inflight.is_some() && !heartbeat {
                return Some(format!(
                    "an empty AppendEntries to the pipelined follower {to} outside a heartbeat"
                ));
            }
            if let (false, Some(inflight)) = (entries.is_empty(), inflight) {
                let last = prev_log_index + entries.len() as Index;
                if !inflight.messages().any(|sent| sent == (last, bytes)) {
                    return Some(format!(
                        "AppendEntries to {to} up to index {last} ({bytes} bytes) left through \
                         the window, which does not count it (in flight: {:?})",
                        inflight.messages().collect::<Vec<_>>()
                    ));
                }
            }
        }
    }
    // A TimeoutNow goes only from a leader handing leadership to that server, once the
    // server's log matches the leader's (§3.10).
    for (to, message) in output.messages() {
        if let Message::TimeoutNow { .. } = message {
            let matched = match after.role() {
                Role::Leader { progress, .. } => progress.get(to).map(|p| p.matched),
                _ => None,
            };
            if after.transferee() != Some(*to) || matched != Some(after.last_index()) {
                return Some(format!(
                    "sent TimeoutNow to {to} (transferring to {:?}, its match {matched:?}, last \
                     index {})",
                    after.transferee(),
                    after.last_index()
                ));
            }
        }
    }
    for (to, message) in &output.send_now {
        if !matches!(message, Message::AppendEntriesRequest { .. }) {
            return Some(format!(
                "{} to {to} may not leave before the persist",
                message.kind()
            ));
        }
    }
    // What changed in the durable state is asked to be persisted.
    if (after.term(), after.voted_for()) != (before.term(), before.voted_for())
        && !output.persist.hard_state
    {
        return Some("term or vote changed without asking to persist it".into());
    }
    // Storage writes the log from an index it can reach: one past what was there at most
    // (indexes start at 1).
    if let Some(from) = output.persist.log_from {
        if from == 0 || from > before.last_index() + 1 {
            return Some(format!(
                "the persist asks for the log from index {from}, outside 1..={}",
                before.last_index() + 1
            ));
        }
    }
    if let Some(first) = first_difference(before.log(), after.log()) {
        if first <= after.last_index() && output.persist.log_from.is_none_or(|from| from > first) {
            return Some(format!(
                "the log changed from index {first} but the persist asks for {:?}",
                output.persist.log_from
            ));
        }
    }
    // What the Peer tells its driver agrees with its state: the leader it knows, the entries
    // it reads out by index.
    let leader = match after.role() {
        Role::Follower { leader } => *leader,
        Role::Leader { .. } => Some(me),
        Role::PreCandidate { .. } | Role::Candidate { .. } => None,
    };
    if after.leader() != leader {
        return Some(format!(
            "reports leader {:?} as a {} that knows {leader:?}",
            after.leader(),
            after.role_kind()
        ));
    }
    for index in 0..=after.log().len() + 1 {
        let stored = index.checked_sub(1).and_then(|i| after.log().get(i));
        if after.entry(index as Index) != stored {
            return Some(format!("reads the entry at index {index} wrongly"));
        }
    }
    // The commit index is reported when, and only when, it moved.
    let moved = (after.commit_index() != before.commit_index()).then_some(after.commit_index());
    if output.commit != moved {
        return Some(format!(
            "commit went from {} to {} but the output reports {:?}",
            before.commit_index(),
            after.commit_index(),
            output.commit
        ));
    }
    if let Some(broken) = leader_duties(after) {
        return Some(broken);
    }
    // What a leader knows a follower stores only grows within its term.
    if let (
        Role::Leader {
            progress,
            heard_from,
            ..
        },
        Role::Leader {
            progress: earlier,
            heard_from: heard_before,
            ..
        },
    ) = (after.role(), before.role())
    {
        if after.term() == before.term() {
            for (follower, was) in earlier {
                let now = progress.get(follower).map(|p| p.matched);
                if now.is_none_or(|now| now < was.matched) {
                    return Some(format!(
                        "the match index of {follower} went from {} to {now:?} within term {}",
                        was.matched,
                        after.term()
                    ));
                }
            }
            // Check-quorum hears a follower only through an AppendEntries answer of the
            // leader's term (a stale answer, given to an earlier term's leader, says nothing
            // of whether the follower is reachable now); only a check forgets.
            let answered = match input {
                Input::Message(from, Message::AppendEntriesResponse { term, .. })
                    if *term == after.term() =>
                {
                    Some(*from)
                }
                _ => None,
            };
            let checked = matches!(input, Input::Timeout(Timer::Election));
            if let Some(stranger) = heard_from
                .iter()
                .find(|id| !heard_before.contains(id) && Some(**id) != answered)
            {
                return Some(format!(
                    "a leader counts {stranger} as heard from without an AppendEntries answer \
                     of its term {} from it",
                    after.term()
                ));
            }
            if !checked && heard_before.iter().any(|id| !heard_from.contains(id)) {
                return Some("a leader forgot whom it heard from outside a check-quorum".into());
            }
            // A pipelined follower's window forgets a message only once an acknowledgement
            // covers it, or on a heartbeat the oldest message of a full window (FlowControl):
            // forgetting one still in flight lets the leader send past the window.
            let flow = after.config().flow;
            for (follower, was) in earlier {
                let (Flow::Replicate { inflight: old }, Some(Flow::Replicate { inflight: new })) =
                    (&was.flow, progress.get(follower).map(|p| &p.flow))
                else {
                    continue;
                };
                let acked = match input {
                    Input::Message(
                        from,
                        Message::AppendEntriesResponse {
                            term,
                            success: true,
                            index,
                        },
                    ) if from == follower && *term == after.term() => Some(*index),
                    _ => None,
                };
                let full = window_full(old, &flow);
                let heartbeat = matches!(input, Input::Timeout(Timer::Heartbeat));
                let oldest = old.messages().next();
                let forgotten = old.messages().find(|sent| {
                    !new.messages().any(|kept| kept == *sent)
                        && acked.is_none_or(|index| sent.0 > index)
                        && !(heartbeat && full && Some(*sent) == oldest)
                });
                if let Some((last, _)) = forgotten {
                    return Some(format!(
                        "the window of {follower} forgot its message up to {last}, still in \
                         flight"
                    ));
                }
            }
        }
    }
    // A new leader appends exactly one blank entry of its term (§8), and nothing else.
    let elected = became_leader(before, after);
    if elected {
        let blank = Entry {
            term: after.term(),
            command: None,
        };
        let appended = after.log().len() == before.log().len() + 1
            && after.log().starts_with(before.log())
            && after.log().last() == Some(&blank);
        if !appended {
            return Some(format!(
                "a new leader of term {} must append exactly one blank entry of its term (§8)",
                after.term()
            ));
        }
    }
    match input {
        Input::Message(_, message) if sticky(before, message) => {
            // Leader stickiness (§9.6): the request is ignored whole.
            let unchanged = after.durable() == before.durable()
                && after.role() == before.role()
                && after.commit_index() == before.commit_index();
            (!unchanged || output.messages().next().is_some() || output.persist.is_needed()).then(
                || {
                    format!(
                        "a server with a leader of term {} acted on a {} of term {}",
                        before.term(),
                        message.kind(),
                        message.term()
                    )
                },
            )
        }
        Input::Message(_, message)
            if senders_term(message).is_some_and(|term| after.term() < term) =>
        {
            Some(format!(
                "handled a {} of term {} and stayed in term {} (§5.1)",
                message.kind(),
                message.term(),
                after.term()
            ))
        }
        Input::Message(from, message) => message_clause(before, *from, message, after, output),
        Input::Timeout(Timer::Election) if before.role_kind() == crate::peer::RoleKind::Leader => {
            // Check-quorum: a leader stays leader exactly when it heard from a majority (itself
            // included) since the last check; a majority is more than half of the members.
            let Role::Leader { heard_from, .. } = before.role() else {
                unreachable!("the guard above")
            };
            let heard = heard_from.len() + 1;
            let members = before.config().members.len();
            let stays = 2 * heard > members;
            let is_leader = after.role_kind() == crate::peer::RoleKind::Leader;
            if stays != is_leader || after.term() != before.term() {
                return Some(format!(
                    "check-quorum heard from {heard} of {members} and the leader {}",
                    if is_leader { "stayed" } else { "stepped down" }
                ));
            }
            // A transfer has one election timeout to complete (§3.10).
            after
                .transferee()
                .map(|to| {
                    format!(
                        "a leader still transfers leadership to {to} after its election timeout"
                    )
                })
                .or_else(|| {
                    // A leader that stays starts a new period: it has heard from no one since.
                    let Role::Leader { heard_from, .. } = after.role() else {
                        return None;
                    };
                    (!heard_from.is_empty()).then(|| {
                        format!(
                        "check-quorum kept the leader but still counts {heard_from:?} as heard \
                         from in the next period"
                    )
                    })
                })
        }
        Input::Timeout(Timer::Election) if before.config().pre_vote => {
            // Pre-vote: the server asks, in its own term, whether it could win the next one.
            // (A cluster of one goes on to the election at once.)
            if after.term() != before.term() {
                return (!elected || after.term() != before.term() + 1)
                    .then(|| "a pre-vote round must keep the term".into());
            }
            if after.role_kind() != crate::peer::RoleKind::PreCandidate
                || after.log() != before.log()
            {
                return Some(format!(
                    "an election timeout left a {} a {} (pre-vote makes a pre-candidate)",
                    before.role_kind(),
                    after.role_kind()
                ));
            }
            let others = after.config().members.len() - 1;
            let requests = output
                .messages()
                .filter(|(_, m)| {
                    matches!(m, Message::PreVoteRequest { last_log_index, last_log_term, .. }
                        if *last_log_index == after.last_index() && *last_log_term == after.last_term())
                })
                .count();
            (requests != others).then(|| {
                format!("a pre-candidate asked {requests} of {others} servers with its last entry")
            })
        }
        Input::Timeout(Timer::Election) if before.role_kind() != crate::peer::RoleKind::Leader => {
            let voted_self = after.voted_for() == Some(me);
            // A cluster of one elects itself at once and appends its blank entry (checked
            // above); otherwise the log stays as it was.
            let log_kept = elected || after.log() == before.log();
            if after.term() != before.term() + 1 || !voted_self || !log_kept {
                return Some(
                    "an election must take the next term, vote for itself, and keep the log".into(),
                );
            }
            let others = after.config().members.len() - 1;
            let requests = output
                .send_after_persist
                .iter()
                .filter(|(_, m)| {
                    matches!(m, Message::RequestVoteRequest { last_log_index, last_log_term, transfer: false, .. }
                        if *last_log_index == after.last_index() && *last_log_term == after.last_term())
                })
                .count();
            (requests != others && after.role_kind() != crate::peer::RoleKind::Leader).then(|| {
                format!("a candidate asked {requests} of {others} servers with its last entry")
            })
        }
        Input::Timeout(Timer::Heartbeat)
            if before.role_kind() == crate::peer::RoleKind::Leader
                && after.role_kind() == crate::peer::RoleKind::Leader =>
        {
            if after.log() != before.log() {
                return Some("a timer changed the log".to_string());
            }
            // The heartbeat reaches every follower (§5.2), whatever its progress: a probe in
            // flight goes again, a full window forgets its oldest message, and an empty
            // AppendEntries goes when there is nothing else.
            let me = after.id();
            after
                .config()
                .members
                .iter()
                .filter(|m| **m != me)
                .find(|m| {
                    !output.messages().any(|(to, message)| {
                        to == *m && matches!(message, Message::AppendEntriesRequest { .. })
                    })
                })
                .map(|m| format!("a leader's heartbeat sent {m} nothing"))
        }
        Input::Timeout(_) => {
            (after.log() != before.log()).then(|| "a timer changed the log".to_string())
        }
        Input::Propose(_) if before.transferee().is_some() => Some(format!(
            "a leader transferring leadership to {:?} accepted a proposal (§3.10)",
            before.transferee()
        )),
        Input::Transfer(to) => {
            let unchanged = after.durable() == before.durable()
                && after.commit_index() == before.commit_index()
                && after.role_kind() == crate::peer::RoleKind::Leader;
            if !unchanged || after.transferee() != Some(*to) {
                return Some(format!(
                    "a transfer to {to} left a {} transferring to {:?}, or changed its state",
                    after.role_kind(),
                    after.transferee()
                ));
            }
            if let Some((other, message)) = output.messages().find(|(other, _)| other != to) {
                return Some(format!(
                    "a transfer to {to} sent a {} to {other}",
                    message.kind()
                ));
            }
            // A target whose log already matches is told to take over at once.
            let caught_up = match before.role() {
                Role::Leader { progress, .. } => {
                    progress.get(to).map(|p| p.matched) == Some(before.last_index())
                }
                _ => false,
            };
            let told = output
                .messages()
                .any(|(_, m)| matches!(m, Message::TimeoutNow { .. }));
            (caught_up && !told)
                .then(|| format!("a transfer to {to}, whose log matches, sent it no TimeoutNow"))
        }
        Input::Propose(commands) => {
            let grown = before.log().len() + commands.len() == after.log().len()
                && after.log().starts_with(before.log())
                && after.log()[before.log().len()..]
                    .iter()
                    .zip(commands.iter())
                    .all(|(e, c)| e.term == after.term() && e.command.as_ref() == Some(c));
            (!grown)
                .then(|| "a proposal must append exactly its commands in the current term".into())
        }
    }
}

fn message_clause<C: Clone + PartialEq + std::fmt::Debug + crate::Payload, D: Deviation>(
    before: &Peer<C, D>,
    from: NodeId,
    message: &Message<C>,
    after: &Peer<C, D>,
    output: &Output<C>,
) -> Option<String> {
    let replies: Vec<&Message<C>> = output
        .messages()
        .filter(|(to, _)| *to == from)
        .map(|(_, m)| m)
        .collect();
    match message {
        Message::RequestVoteRequest {
            term,
            last_log_index,
            last_log_term,
            ..
        } => {
            let [Message::RequestVoteResponse { granted, .. }] = replies[..] else {
                return Some("a vote request must get exactly one answer".into());
            };
            if *granted && (after.voted_for() != Some(from) || *term != after.term()) {
                return Some(format!(
                    "granted a vote in term {term} while voting for {:?} in term {}",
                    after.voted_for(),
                    after.term()
                ));
            }
            // The other direction of Figure 2's rule: a vote that is free, asked for in the
            // current term by a candidate whose log is at least as up-to-date, is granted.
            // (Granting what the rule refuses is left to the safety properties.)
            let vote_free =
                *term > before.term() || before.voted_for().is_none_or(|vote| vote == from);
            let up_to_date =
                (*last_log_term, *last_log_index) >= (before.last_term(), before.last_index());
            if !granted && *term >= before.term() && vote_free && up_to_date {
                return Some(format!(
                    "refused a free vote in term {term} to an up-to-date candidate {from}"
                ));
            }
            // A vote request of the server's own term changes its role in no way: a candidate
            // of that term goes on campaigning, its leader goes on leading (a newer term made
            // it a follower before this clause).
            if *term == before.term() && after.role_kind() != before.role_kind() {
                return Some(format!(
                    "a vote request of its own term {term} made a {} a {}",
                    before.role_kind(),
                    after.role_kind()
                ));
            }
            None
        }
        Message::AppendEntriesRequest {
            term,
            prev_log_index,
            prev_log_term,
            entries,
            leader_commit,
        } => {
            let answers: Vec<_> = replies
                .iter()
                .filter_map(|m| match m {
                    Message::AppendEntriesResponse { success, index, .. } => {
                        Some((*success, *index))
                    }
                    _ => None,
                })
                .collect();
            let [(success, index)] = answers[..] else {
                return Some("an append must get exactly one answer".into());
            };
            let consistent = *term == after.term()
                && term_at(before.log(), *prev_log_index) == Some(*prev_log_term);
            if success != consistent {
                return Some(format!(
                    "answered {} to an append (term {term}, prev {prev_log_index}/{prev_log_term}) \
                     that is {}",
                    if success { "success" } else { "failure" },
                    if consistent { "consistent" } else { "not consistent" }
                ));
            }
            // The leader of the current term is followed (§5.2: a candidate gives up).
            if *term == after.term()
                && !matches!(after.role(), Role::Follower { leader: Some(l) } if *l == from)
            {
                return Some(format!(
                    "an append of the current term {term} from {from} left the server a {}",
                    after.role_kind()
                ));
            }
            let last_new = prev_log_index + entries.len() as Index;
            if success {
                if index != last_new {
                    return Some(format!(
                        "acknowledged index {index}; the request covered up to {last_new}"
                    ));
                }
                if !holds(after.log(), *prev_log_index, entries) {
                    return Some("acknowledged entries that the log does not hold".into());
                }
                // Entries past the request survive unless they conflicted with it.
                let conflict = entries.iter().enumerate().any(|(k, e)| {
                    term_at(before.log(), prev_log_index + 1 + k as Index)
                        .is_some_and(|t| t != e.term)
                });
                if !conflict && after.log().len() < before.log().len() {
                    return Some("an append without a conflict shortened the log".into());
                }
                if before.log()[..(*prev_log_index as usize).min(before.log().len())]
                    != after.log()[..(*prev_log_index as usize).min(after.log().len())]
                {
                    return Some("an append changed entries before its prev index".into());
                }
                // Figure 2: the commit index moves to min(leader commit, last new entry) when
                // that is higher, and nowhere else. Higher commits what the request did not
                // check; lower leaves the follower a message behind.
                let allowed = before.commit_index().max((*leader_commit).min(last_new));
                if after.commit_index() > allowed {
                    return Some(format!(
                        "committed {} past min(leader commit {leader_commit}, last new {last_new})",
                        after.commit_index()
                    ));
                }
                if after.commit_index() < allowed {
                    return Some(format!(
                        "committed {} short of min(leader commit {leader_commit}, last new \
                         {last_new})",
                        after.commit_index()
                    ));
                }
            } else {
                if after.log() != before.log() || after.commit_index() != before.commit_index() {
                    return Some("a rejected append changed the log or the commit index".into());
                }
                if *term == after.term() && index >= *prev_log_index {
                    return Some(format!(
                        "the rejection hint {index} is not below the prev index {prev_log_index}"
                    ));
                }
                // The hint skips at once what cannot match: past the end of the log, the last
                // entry; within it, the whole run of the conflicting entry's term back to the
                // commit index (`rejection_hint`). A smaller hint sends entries the follower
                // already stores; a larger one costs a round trip per entry.
                if *term == after.term() {
                    let expected = if *prev_log_index > before.last_index() {
                        before.last_index()
                    } else {
                        let conflict = term_at(before.log(), *prev_log_index);
                        (0..*prev_log_index)
                            .rev()
                            .find(|&i| {
                                i <= before.commit_index() || term_at(before.log(), i) != conflict
                            })
                            .unwrap_or(0)
                    };
                    if index != expected {
                        return Some(format!(
                            "the rejection hint {index} for prev {prev_log_index}/{prev_log_term} \
                             should be {expected}, the highest index that may still match"
                        ));
                    }
                }
            }
            None
        }
        Message::RequestVoteResponse {
            term,
            granted: true,
        } if *term == before.term() && before.role_kind() == crate::peer::RoleKind::Candidate => {
            let members = after.config().members.len();
            match after.role() {
                Role::Leader { .. } => None,
                Role::Candidate { votes } if !votes.contains(&from) => Some(format!(
                    "a candidate did not count the vote {from} granted in term {term}"
                )),
                // Votes from a majority (more than half of the members) make a leader.
                Role::Candidate { votes } if 2 * votes.len() > members => Some(format!(
                    "a candidate with {} votes of {members} did not become leader",
                    votes.len()
                )),
                Role::Candidate { .. } => None,
                Role::Follower { .. } | Role::PreCandidate { .. } => Some(format!(
                    "a candidate became a {} on a vote granted in term {term}",
                    after.role_kind()
                )),
            }
        }
        Message::PreVoteRequest {
            term,
            last_log_index,
            last_log_term,
        } => {
            let [Message::PreVoteResponse {
                term: answered,
                granted,
            }] = replies[..]
            else {
                return Some("a pre-vote request must get exactly one answer".into());
            };
            // Granted exactly when a vote could be: a newer term and a log at least as
            // up-to-date (§5.4.1); the vote already cast in an older term does not matter.
            let up_to_date =
                (*last_log_term, *last_log_index) >= (before.last_term(), before.last_index());
            let grant = *term > before.term() && up_to_date;
            if *granted != grant {
                return Some(format!(
                    "{} a pre-vote for term {term} (own term {}, candidate's log {}/{}, own {}/{})",
                    if *granted { "granted" } else { "refused" },
                    before.term(),
                    last_log_index,
                    last_log_term,
                    before.last_index(),
                    before.last_term()
                ));
            }
            let expected = if *granted { *term } else { after.term() };
            if *answered != expected {
                return Some(format!(
                    "answered a pre-vote for term {term} with term {answered}"
                ));
            }
            None
        }
        Message::PreVoteResponse {
            term,
            granted: true,
        } if *term == before.term() + 1
            && before.role_kind() == crate::peer::RoleKind::PreCandidate =>
        {
            let members = after.config().members.len();
            match after.role() {
                Role::PreCandidate { votes } if !votes.contains(&from) => Some(format!(
                    "a pre-candidate did not count the pre-vote {from} granted for term {term}"
                )),
                // Pre-votes from a majority start the election: the next term, a vote for
                // itself, a vote request to every other server.
                Role::PreCandidate { votes } if 2 * votes.len() > members => Some(format!(
                    "a pre-candidate with {} pre-votes of {members} did not start the election",
                    votes.len()
                )),
                Role::PreCandidate { .. } => None,
                Role::Candidate { .. } | Role::Leader { .. } => {
                    // An ordinary election: only a TimeoutNow makes a campaign a transfer's,
                    // which servers following a live leader answer despite leader stickiness.
                    let asked = output
                        .messages()
                        .filter(|(_, m)| {
                            matches!(m, Message::RequestVoteRequest { transfer: false, last_log_index, last_log_term, .. }
                                if *last_log_index == after.last_index() && *last_log_term == after.last_term())
                        })
                        .count();
                    (after.term() != *term
                        || after.voted_for() != Some(after.id())
                        || asked != members - 1)
                        .then(|| {
                            format!(
                                "an election after a pre-vote must take term {term}, vote for \
                                 itself and ask every other server"
                            )
                        })
                }
                Role::Follower { .. } => Some(format!(
                    "a pre-candidate became a follower on a pre-vote granted for term {term}"
                )),
            }
        }
        Message::TimeoutNow { term } => {
            // The leader of the term (or a newer one) hands leadership over: a follower starts
            // the election of the next term at once, without pre-vote, and says why it runs.
            let takes_over = *term > before.term()
                || (*term == before.term()
                    && before.role_kind() == crate::peer::RoleKind::Follower);
            if !takes_over {
                let unchanged = after.durable() == before.durable()
                    && after.role() == before.role()
                    && output.messages().next().is_none();
                return (!unchanged).then(|| {
                    format!(
                        "a {} of term {} acted on a TimeoutNow of term {term}",
                        before.role_kind(),
                        before.term()
                    )
                });
            }
            let others = after.config().members.len() - 1;
            let asked = output
                .send_after_persist
                .iter()
                .filter(|(_, m)| {
                    matches!(m, Message::RequestVoteRequest { transfer: true, last_log_index, last_log_term, .. }
                        if *last_log_index == after.last_index() && *last_log_term == after.last_term())
                })
                .count();
            let campaigns = matches!(
                after.role_kind(),
                crate::peer::RoleKind::Candidate | crate::peer::RoleKind::Leader
            );
            (!campaigns
                || after.term() != term + 1
                || after.voted_for() != Some(after.id())
                || (after.role_kind() == crate::peer::RoleKind::Candidate && asked != others))
                .then(|| {
                    format!(
                        "a TimeoutNow of term {term} left a {} in term {} that asked {asked} of \
                         {others} servers for a transfer vote",
                        after.role_kind(),
                        after.term()
                    )
                })
        }
        Message::PreVoteResponse { .. } => (after.log() != before.log()
            || output.messages().next().is_some())
        .then(|| "a pre-vote answer changed the log or sent a message".to_string()),
        // A vote answer counts only for a candidate of its term: any other server, a
        // pre-candidate of that term included, changes nothing on it (a newer term made it a
        // follower before this clause).
        Message::RequestVoteResponse { term, .. }
            if !(*term == before.term()
                && before.role_kind() == crate::peer::RoleKind::Candidate)
                && *term <= before.term()
                && (after.role() != before.role()
                    || after.durable() != before.durable()
                    || output.messages().next().is_some()) =>
        {
            Some(format!(
                "a vote answer of term {term} changed a {} of term {}",
                before.role_kind(),
                before.term()
            ))
        }
        Message::RequestVoteResponse { .. } | Message::AppendEntriesResponse { .. } => {
            if after.log() != before.log() && !became_leader(before, after) {
                return Some(format!("a {} changed the log", message.kind()));
            }
            if let (
                Role::Leader { progress, .. },
                Message::AppendEntriesResponse {
                    success: true,
                    index,
                    term,
                },
            ) = (after.role(), message)
            {
                let matched = progress.get(&from).map(|p| p.matched);
                if *term == after.term()
                    && matched.is_some_and(|m| m < (*index).min(after.last_index()))
                {
                    return Some(format!(
                        "an acknowledgement of {index} left the match index of {from} at {matched:?}"
                    ));
                }
                if *term != after.term() && matched != before_matched(before, from) {
                    return Some(format!(
                        "an acknowledgement of term {term} moved the match index of {from}"
                    ));
                }
                // A stale acknowledgement (below the match, overtaken by a later one) says
                // nothing new: the follower's progress stays as it was, probing or not.
                let was = match before.role() {
                    Role::Leader { progress, .. } => progress.get(&from),
                    _ => None,
                };
                if *term == after.term()
                    && before.term() == after.term()
                    && was.is_some_and(|was| *index < was.matched)
                    && progress.get(&from) != was
                {
                    return Some(format!(
                        "a stale acknowledgement of {index} from {from} changed its progress \
                         ({was:?} -> {:?})",
                        progress.get(&from)
                    ));
                }
                // An acknowledgement that is not stale tells the leader where the follower's
                // log stands: it pipelines to it from then on (`Flow::Replicate`).
                let pipelined = progress
                    .get(&from)
                    .is_some_and(|p| matches!(p.flow, Flow::Replicate { .. }));
                let fresh = before_matched(before, from).is_some_and(|m| *index >= m);
                if *term == after.term()
                    && before.term() == after.term()
                    && fresh
                    && *index <= after.last_index()
                    && !pipelined
                {
                    return Some(format!(
                        "an acknowledgement of {index} from {from} left it probed, not pipelined"
                    ));
                }
            }
            if let (
                Role::Leader { progress, .. },
                Role::Leader {
                    progress: earlier, ..
                },
                Message::AppendEntriesResponse {
                    success: false,
                    index,
                    term,
                },
            ) = (after.role(), before.role(), message)
            {
                if *term == before.term() && after.term() == before.term() {
                    let broken = rejection_clause(
                        from,
                        *index,
                        earlier.get(&from),
                        progress.get(&from),
                        &replies,
                    );
                    if broken.is_some() {
                        return broken;
                    }
                }
            }
            // Check-quorum counts every answer of the leader's term, a rejection too: a follower
            // being repaired is reachable, and a leader that heard it must not step down.
            if let (Role::Leader { heard_from, .. }, Message::AppendEntriesResponse { term, .. }) =
                (after.role(), message)
            {
                if *term == after.term() && !heard_from.contains(&from) {
                    return Some(format!(
                        "a leader heard an AppendEntries answer of its term {term} from {from} \
                         and does not count it as heard from"
                    ));
                }
            }
            None
        }
    }
}

/// What a leader owes after every step, whatever the step was: it has committed every entry of
/// its term that a majority stores (§5.4.2, counted here server by server from the match
/// indexes, the leader's own log counting for itself), and it has sent each follower what that
/// follower's progress lets leave now (`FlowControl`): nothing stays unsent for a follower whose
/// probe is not in flight, or whose window has room while entries past its next index wait.
/// Neither omission breaks safety; each leaves the cluster waiting for a heartbeat or forever.
fn leader_duties<C: Clone + std::fmt::Debug + crate::Payload, D: Deviation>(
    after: &Peer<C, D>,
) -> Option<String> {
    let Role::Leader { progress, .. } = after.role() else {
        return None;
    };
    let leader = Leader {
        me: after.id(),
        members: &after.config().members,
        log: after.log(),
        term: after.term(),
        commit: after.commit_index(),
        flow: after.config().flow,
    };
    leader.owes(|follower| progress.get(follower))
}

/// What [`leader_duties`] reads of a leader, besides its progress.
struct Leader<'a, C> {
    me: NodeId,
    members: &'a [NodeId],
    log: &'a [Entry<C>],
    term: u64,
    commit: Index,
    flow: crate::peer::FlowControl,
}

impl<C> Leader<'_, C> {
    fn owes<'p>(
        &self,
        progress: impl Fn(&NodeId) -> Option<&'p crate::peer::Progress>,
    ) -> Option<String> {
        let last = self.log.len() as Index;
        let members = self.members.len();
        for index in (self.commit + 1..=last).rev() {
            if term_at(self.log, index) != Some(self.term) {
                continue;
            }
            let count = self
                .members
                .iter()
                .filter(|m| **m == self.me || progress(m).is_some_and(|p| p.matched >= index))
                .count();
            if 2 * count > members {
                return Some(format!(
                    "a leader of term {} left its commit index at {} though {count} of \
                     {members} servers store its entry {index} of that term (§5.4.2)",
                    self.term, self.commit
                ));
            }
        }
        for to in self.members.iter().filter(|m| **m != self.me) {
            let Some(p) = progress(to) else {
                return Some(format!("a leader keeps no progress for the member {to}"));
            };
            let waiting = match &p.flow {
                Flow::Probe { paused } => !paused,
                Flow::Replicate { inflight } => {
                    !window_full(inflight, &self.flow) && p.next <= last
                }
            };
            if waiting {
                return Some(format!(
                    "a leader left {to} with something to send unsent (next {}, {:?}, last \
                     index {last})",
                    p.next, p.flow
                ));
            }
        }
        None
    }
}

/// How a leader answers a rejection of its term from `from` whose hint is `hint` (§5.3, with
/// the hint of `rejection_hint`): a rejection whose hint lies below its prev index, `next -
/// 1`, makes the leader probe again right after the hint, but never at or below the match
/// index; any other rejection is stale, answered by a message already overtaken, and changes
/// nothing. A hint below the match index while pipelining is not stale: the hint skips the
/// whole run of the follower's conflicting term down to its commit index, which can reach
/// below the entries it acknowledged, and a leader that ignored it would leave that follower
/// refusing every later message. Ignoring a rejection leaves the follower behind; acting on a
/// stale one sends entries twice.
fn rejection_clause<C>(
    from: NodeId,
    hint: Index,
    before: Option<&crate::peer::Progress>,
    after: Option<&crate::peer::Progress>,
    replies: &[&Message<C>],
) -> Option<String> {
    let Some(p) = before else {
        return Some(format!("a leader keeps no progress for {from}"));
    };
    let current = hint + 1 < p.next;
    if !current {
        return (after != Some(p) || !replies.is_empty()).then(|| {
            format!(
                "a stale rejection from {from} (hint {hint}, next {}, match {}) changed its \
                 progress or sent it a message",
                p.next, p.matched
            )
        });
    }
    let probe = hint.max(p.matched);
    let probed = replies.iter().any(|m| {
        matches!(m, Message::AppendEntriesRequest { prev_log_index, .. } if *prev_log_index == probe)
    });
    (!probed).then(|| {
        format!(
            "a rejection from {from} with hint {hint} (next {}, match {}) was not answered by a \
             probe after index {probe}",
            p.next, p.matched
        )
    })
}

/// Whether a pipelined follower's window has no room: `max_inflight` messages or
/// `max_inflight_bytes` bytes in flight, counted from the messages themselves, not with the
/// window's own counters.
fn window_full(inflight: &crate::peer::Inflight, flow: &crate::peer::FlowControl) -> bool {
    let bytes = inflight
        .messages()
        .fold(0u64, |sum, (_, b)| sum.saturating_add(b));
    inflight.messages().count() >= flow.max_inflight || bytes >= flow.max_inflight_bytes
}

/// The term the sender of `message` was in when it sent it, when the message says so: the
/// term a receiver in an older one must move to (§5.1). Written out for every kind, not with
/// the Peer's `Message::sender_term`: a pre-vote request and a granted pre-vote answer carry the
/// proposed next term, which no server is in yet (§9.6); a refused pre-vote answer carries the
/// voter's own term, which a pre-candidate left behind must follow.
fn senders_term<C>(message: &Message<C>) -> Option<u64> {
    match message {
        Message::PreVoteRequest { .. } => None,
        Message::PreVoteResponse { granted: true, .. } => None,
        Message::PreVoteResponse {
            term,
            granted: false,
        } => Some(*term),
        Message::RequestVoteRequest { term, .. }
        | Message::RequestVoteResponse { term, .. }
        | Message::AppendEntriesRequest { term, .. }
        | Message::AppendEntriesResponse { term, .. }
        | Message::TimeoutNow { term } => Some(*term),
    }
}

/// Whether a server ignores `message` by leader stickiness (§9.6): with pre-vote on, a request
/// for a vote or a pre-vote of a newer term reaching a server that follows a leader of its
/// term, or leads it, unless it asks on behalf of a leadership transfer. Written from the
/// definition, not with the Peer's own test.
fn sticky<C: Clone + std::fmt::Debug + crate::Payload, D: Deviation>(
    before: &Peer<C, D>,
    message: &Message<C>,
) -> bool {
    // A vote request on behalf of a leadership transfer is answered (§3.10).
    let asks = matches!(
        message,
        Message::RequestVoteRequest {
            transfer: false,
            ..
        } | Message::PreVoteRequest { .. }
    );
    let has_leader = matches!(
        before.role(),
        Role::Follower { leader: Some(_) } | Role::Leader { .. }
    );
    before.config().pre_vote && asks && message.term() > before.term() && has_leader
}

/// Whether a pre-vote moved a server's term or vote: asking for pre-votes, answering one, or
/// counting a granted answer may change neither, except that pre-votes from a majority start
/// the election of the next term (§9.6). Always: `PreVoteChangesNothing`.
pub fn pre_vote_moved_term<C: Clone + std::fmt::Debug + crate::Payload, D: Deviation>(
    before: &Peer<C, D>,
    input: &Input<C>,
    after: &Peer<C, D>,
) -> bool {
    use crate::peer::RoleKind::{Candidate, Leader, PreCandidate};
    let moved = (after.term(), after.voted_for()) != (before.term(), before.voted_for());
    let started_election =
        || after.term() == before.term() + 1 && matches!(after.role_kind(), Candidate | Leader);
    match input {
        Input::Message(_, Message::PreVoteRequest { .. }) => moved,
        Input::Message(_, Message::PreVoteResponse { granted: true, .. }) => {
            moved && !(before.role_kind() == PreCandidate && started_election())
        }
        Input::Timeout(Timer::Election)
            if before.config().pre_vote && before.role_kind() != Leader =>
        {
            moved && !started_election()
        }
        _ => false,
    }
}

/// Whether the step made the server the leader of a term it did not lead before.
fn became_leader<C: Clone + std::fmt::Debug + crate::Payload, D: Deviation>(
    before: &Peer<C, D>,
    after: &Peer<C, D>,
) -> bool {
    use crate::peer::RoleKind::Leader;
    after.role_kind() == Leader && (before.role_kind() != Leader || before.term() != after.term())
}

fn before_matched<C: Clone + std::fmt::Debug + crate::Payload, D: Deviation>(
    before: &Peer<C, D>,
    follower: NodeId,
) -> Option<Index> {
    match before.role() {
        Role::Leader { progress, .. } => progress.get(&follower).map(|p| p.matched),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer::{log_of_terms, Config, Durable, FlowControl, RoleKind};

    /// Server 1 of three, in term 2 with log terms [1, 1, 2], its configuration adjusted by
    /// `adjust`.
    fn server_one(adjust: impl FnOnce(&mut Config)) -> Peer<u8> {
        let durable = Durable {
            term: 2,
            voted_for: None,
            log: log_of_terms(&[1, 1, 2]),
        };
        let mut config = Config::new(1, vec![1, 2, 3]);
        adjust(&mut config);
        Peer::<u8>::restore(config, durable)
            .expect("a valid durable state")
            .0
    }

    /// A candidate of term 3 with log terms [1, 1, 2], and the leader it becomes on a vote,
    /// with the output of that step.
    fn election(flow: FlowControl) -> (Peer<u8>, Peer<u8>, Output<u8>, Message<u8>) {
        let mut peer = server_one(|config| config.flow = flow);
        peer.handle_timeout(Timer::Election);
        let before = peer.clone();
        let vote = Message::RequestVoteResponse {
            term: 3,
            granted: true,
        };
        let output = peer
            .handle_message(2, vote.clone())
            .expect("a vote is accepted");
        assert_eq!(peer.role_kind(), RoleKind::Leader);
        (before, peer, output, vote)
    }

    #[test]
    fn a_new_leaders_step_keeps_the_contract() {
        let (before, after, output, vote) = election(FlowControl::UNLIMITED);
        assert_eq!(
            violation(&before, &Input::Message(2, &vote), &after, &output),
            None
        );
    }

    /// An AppendEntries that stops before the end of the log with no cap reached breaks the
    /// contract, and the report says how many entries it carried; one that stops at the
    /// entry cap, or where the next entry would pass the byte cap, does not.
    #[test]
    fn an_append_that_stops_short_of_its_caps_breaks_the_contract() {
        // Two entries after `prev`, of the leader's log [1, 1, 2, 3 (its blank entry)].
        let short = |after: &Peer<u8>, prev: usize| Message::AppendEntriesRequest {
            term: 3,
            prev_log_index: prev as u64,
            prev_log_term: if prev == 0 {
                0
            } else {
                after.log()[prev - 1].term
            },
            entries: after.log()[prev..prev + 2].to_vec(),
            leader_commit: after.commit_index(),
        };
        let (before, after, mut output, vote) = election(FlowControl::UNLIMITED);
        output.send_now.push((3, short(&after, 1)));
        let broken = violation(&before, &Input::Message(2, &vote), &after, &output)
            .expect("a short AppendEntries breaks the contract");
        assert!(
            broken.starts_with("AppendEntries to 3 after index 1 carries 2 entries (2 bytes)"),
            "{broken}"
        );

        let two = FlowControl {
            max_entries: 2,
            ..FlowControl::UNLIMITED
        };
        // After index 0: two one-byte commands, and a third follows, which would make 3 bytes.
        let two_bytes = FlowControl {
            max_bytes: 2,
            ..FlowControl::UNLIMITED
        };
        let three_bytes = FlowControl {
            max_bytes: 3,
            ..FlowControl::UNLIMITED
        };
        for (flow, breaks) in [(two, false), (two_bytes, false), (three_bytes, true)] {
            let (before, after, mut output, vote) = election(flow);
            output.send_now.push((3, short(&after, 0)));
            let broken = violation(&before, &Input::Message(2, &vote), &after, &output);
            assert_eq!(
                broken.is_some_and(|b| b.contains("neither cap (18446744073709551615 entries")),
                breaks,
                "{flow:?}"
            );
        }
        // Past a cap: two entries where one is allowed, or two commands past one byte.
        let one = FlowControl {
            max_entries: 1,
            ..FlowControl::UNLIMITED
        };
        let one_byte = FlowControl {
            max_bytes: 1,
            ..FlowControl::UNLIMITED
        };
        for flow in [one, one_byte] {
            let (before, after, mut output, vote) = election(flow);
            output.send_now.push((3, short(&after, 0)));
            let broken = violation(&before, &Input::Message(2, &vote), &after, &output);
            assert_eq!(
                broken,
                Some(format!(
                    "AppendEntries to 3 after index 0 carries 2 entries (2 bytes), past its caps \
                     ({} entries, {} bytes)",
                    flow.max_entries, flow.max_bytes
                )),
                "{flow:?}"
            );
        }
    }

    /// A pipelined AppendEntries that the leader's window does not count breaks the contract;
    /// the leader's own pipelined message, which the window counts, does not.
    #[test]
    fn a_pipelined_append_the_window_does_not_count_breaks_the_contract() {
        // One entry per message, so that a message ending before the end of the log is whole.
        let one = FlowControl {
            max_entries: 1,
            ..FlowControl::UNLIMITED
        };
        let (_, mut leader, _, _) = election(one);
        // Server 2 acknowledges the whole log, blank entry included: it is pipelined to now,
        // with nothing in flight.
        let ack = Message::AppendEntriesResponse {
            term: 3,
            success: true,
            index: 4,
        };
        leader.handle_message(2, ack).expect("an ack is accepted");
        let before = leader.clone();
        let (_, output) = leader
            .propose(vec![7])
            .expect("the leader accepts a proposal");
        let input = Input::Propose(&[7]);
        let sent = output
            .messages()
            .find(|(to, m)| *to == 2 && matches!(m, Message::AppendEntriesRequest { .. }))
            .expect("the new entry goes to server 2");
        assert!(matches!(
            sent.1,
            Message::AppendEntriesRequest { prev_log_index: 4, ref entries, .. } if entries.len() == 1
        ));
        assert_eq!(violation(&before, &input, &leader, &output), None);

        // The same step, with the blank entry (index 4, 0 bytes) sent to server 2 once more:
        // its acknowledgement freed it, so the window does not count it.
        let mut forged = output.clone();
        forged.send_now.push((
            2,
            Message::AppendEntriesRequest {
                term: 3,
                prev_log_index: 3,
                prev_log_term: 2,
                entries: leader.log()[3..4].to_vec(),
                leader_commit: leader.commit_index(),
            },
        ));
        let broken = violation(&before, &input, &leader, &forged)
            .expect("an uncounted pipelined AppendEntries breaks the contract");
        assert!(
            broken.starts_with(
                "AppendEntries to 2 up to index 4 (0 bytes) left through the window, which \
                 does not count it (in flight: [(5, 1)])"
            ),
            "{broken}"
        );
    }

    fn probing(next: Index, matched: Index, paused: bool) -> crate::peer::Progress {
        crate::peer::Progress {
            next,
            matched,
            flow: Flow::Probe { paused },
        }
    }

    fn pipelining(next: Index, matched: Index) -> crate::peer::Progress {
        crate::peer::Progress {
            next,
            matched,
            flow: Flow::Replicate {
                inflight: Default::default(),
            },
        }
    }

    /// A leader (server 1 of three, term 3, log terms [1, 1, 2, 3]) owes the commit of an entry
    /// of its term that it and one follower store, and nothing for an earlier term's entry; it
    /// owes a message to a follower whose probe is not in flight, or whose window has room
    /// while entries wait.
    #[test]
    fn a_leader_owes_the_commit_of_a_majority_entry_and_what_progress_lets_leave() {
        let members = [1, 2, 3];
        let log = log_of_terms(&[1, 1, 2, 3]);
        let leader = |commit| Leader {
            me: 1,
            members: &members,
            log: &log,
            term: 3,
            commit,
            flow: FlowControl::UNLIMITED,
        };
        let settled = [(2, pipelining(5, 4)), (3, probing(4, 0, true))];
        let owes = |leader: &Leader<u8>, progress: &[(NodeId, crate::peer::Progress)]| {
            let progress: std::collections::BTreeMap<_, _> = progress.iter().cloned().collect();
            leader.owes(|id| progress.get(id))
        };
        let broken = owes(&leader(3), &settled).expect("entry 4 is on a majority");
        assert_eq!(
            broken,
            "a leader of term 3 left its commit index at 3 though 2 of 3 servers store its \
             entry 4 of that term (§5.4.2)"
        );
        assert_eq!(owes(&leader(4), &settled), None);
        // Entry 3 (term 2) on a majority is not the leader's to commit by counting.
        let earlier = [(2, probing(4, 3, true)), (3, probing(4, 0, true))];
        assert_eq!(owes(&leader(2), &earlier), None);

        let unsent = owes(
            &leader(4),
            &[(2, pipelining(5, 4)), (3, probing(4, 0, false))],
        )
        .expect("a probe not in flight");
        assert!(unsent.starts_with("a leader left 3 with something to send unsent (next 4"));
        let unsent = owes(
            &leader(4),
            &[(2, pipelining(4, 3)), (3, probing(4, 0, true))],
        )
        .expect("an empty window with entry 4 to send");
        assert!(unsent.starts_with("a leader left 2 with something to send unsent (next 4"));
        let missing = owes(&leader(4), &[(2, pipelining(5, 4))]).expect("no progress for 3");
        assert_eq!(missing, "a leader keeps no progress for the member 3");
    }

    /// A rejection whose hint lies below the follower's last prev index is answered by a probe
    /// right after the hint, never at or below the match index (pipelining or not); a stale
    /// one (hint at or past that prev index) changes nothing and sends nothing.
    #[test]
    fn a_rejection_is_answered_by_a_probe_after_its_hint_and_a_stale_one_by_nothing() {
        let probe = |prev_log_index| Message::<u8>::AppendEntriesRequest {
            term: 3,
            prev_log_index,
            prev_log_term: 1,
            entries: Vec::new(),
            leader_commit: 0,
        };
        let before = probing(5, 1, true);
        let backed = probing(3, 1, true);
        let sent = probe(2);
        assert_eq!(
            rejection_clause(2, 2, Some(&before), Some(&backed), &[&sent]),
            None
        );
        let broken = rejection_clause::<u8>(2, 2, Some(&before), Some(&before), &[])
            .expect("an ignored rejection");
        assert_eq!(
            broken,
            "a rejection from 2 with hint 2 (next 5, match 1) was not answered by a probe after \
             index 2"
        );
        let wrong = probe(3);
        assert!(rejection_clause(2, 2, Some(&before), Some(&backed), &[&wrong]).is_some());
        // Below the match, the probe goes right after the match.
        let at_match = probe(1);
        assert_eq!(
            rejection_clause(2, 0, Some(&before), Some(&backed), &[&at_match]),
            None
        );
        // Stale: the hint is the prev index of the probe in flight.
        assert_eq!(
            rejection_clause::<u8>(2, 4, Some(&before), Some(&before), &[]),
            None
        );
        let broken = rejection_clause(2, 4, Some(&before), Some(&backed), &[&sent])
            .expect("acting on a stale rejection");
        assert!(broken.starts_with("a stale rejection from 2 (hint 4, next 5, match 1)"));
        // Below the match while pipelining: not stale (the hint may have skipped a term run
        // reaching below the match), answered by a probe right after the match.
        let pipelined = pipelining(6, 3);
        assert_eq!(
            rejection_clause::<u8>(2, 2, Some(&pipelined), Some(&pipelined), &[]),
            Some(
                "a rejection from 2 with hint 2 (next 6, match 3) was not answered by a probe \
                 after index 3"
                    .to_string()
            )
        );
        assert_eq!(
            rejection_clause(2, 2, Some(&pipelined), Some(&backed), &[&probe(3)]),
            None
        );
    }

    /// A follower (log terms [1, 1, 2, 2], nothing committed) rejecting a request of its term
    /// at index 4 hints 2, skipping the run of term 2; at index 6, past its log, its last
    /// index 4. Any other hint breaks the contract.
    #[test]
    fn a_rejection_hint_skips_the_conflicting_term() {
        let durable = Durable {
            term: 3,
            voted_for: None,
            log: log_of_terms(&[1, 1, 2, 2]),
        };
        let (follower, _) =
            Peer::<u8>::restore(Config::new(2, vec![1, 2, 3]), durable).expect("a valid state");
        for (prev, hint) in [(4, 2), (6, 4)] {
            let request = Message::AppendEntriesRequest {
                term: 3,
                prev_log_index: prev,
                prev_log_term: 3,
                entries: Vec::new(),
                leader_commit: 0,
            };
            let mut after = follower.clone();
            let mut output = after
                .handle_message(1, request.clone())
                .expect("a request is accepted");
            let input = Input::Message(1, &request);
            assert_eq!(violation(&follower, &input, &after, &output), None);
            let answered = output
                .send_after_persist
                .iter()
                .map(|(_, m)| m.clone())
                .collect::<Vec<_>>();
            assert_eq!(
                answered,
                vec![Message::AppendEntriesResponse {
                    term: 3,
                    success: false,
                    index: hint
                }]
            );
            output.send_after_persist[0].1 = Message::AppendEntriesResponse {
                term: 3,
                success: false,
                index: hint - 1,
            };
            let broken = violation(&follower, &input, &after, &output).expect("a short hint");
            assert_eq!(
                broken,
                format!(
                    "the rejection hint {} for prev {prev}/3 should be {hint}, the highest index \
                     that may still match",
                    hint - 1
                )
            );
        }
    }

    /// A heartbeat reaches every follower; one that skips a follower breaks the contract.
    #[test]
    fn a_heartbeat_that_skips_a_follower_breaks_the_contract() {
        let (_, mut leader, _, _) = election(FlowControl::UNLIMITED);
        let before = leader.clone();
        let mut output = leader.handle_timeout(Timer::Heartbeat);
        let input = Input::Timeout(Timer::Heartbeat);
        assert_eq!(violation(&before, &input, &leader, &output), None);
        output.send_now.retain(|(to, _)| *to != 3);
        assert_eq!(
            violation(&before, &input, &leader, &output),
            Some("a leader's heartbeat sent 3 nothing".to_string())
        );
    }

    /// Within a term the match index only grows, and an acknowledgement that is not stale
    /// makes a probed follower pipelined. (The states of a correct leader, taken out of order,
    /// stand in for a faulty step.)
    #[test]
    fn a_match_index_that_falls_or_an_ack_left_probing_breaks_the_contract() {
        let (_, elected, _, _) = election(FlowControl::UNLIMITED);
        let mut acked = elected.clone();
        let ack = Message::AppendEntriesResponse {
            term: 3,
            success: true,
            index: 4,
        };
        let output = acked.handle_message(2, ack.clone()).expect("an ack");
        assert_eq!(
            violation(&elected, &Input::Message(2, &ack), &acked, &output),
            None
        );
        // From the acknowledged leader back to the new one: server 2's match falls from 4 to 0.
        let back = Output {
            commit: Some(0),
            ..Output::default()
        };
        assert_eq!(
            violation(&acked, &Input::Timeout(Timer::Heartbeat), &elected, &back),
            Some("the match index of 2 went from 4 to Some(0) within term 3".to_string())
        );
        // An acknowledgement of 0 (not below the match, 0) that leaves server 2 probed.
        let empty = Message::AppendEntriesResponse {
            term: 3,
            success: true,
            index: 0,
        };
        assert_eq!(
            violation(
                &elected,
                &Input::Message(2, &empty),
                &elected,
                &Output::default()
            ),
            Some("an acknowledgement of 0 from 2 left it probed, not pipelined".to_string())
        );
    }

    /// Outside a heartbeat, a pipelined follower with nothing to send hears nothing.
    #[test]
    fn an_empty_append_to_a_pipelined_follower_outside_a_heartbeat_breaks_the_contract() {
        let (_, mut leader, _, _) = election(FlowControl::UNLIMITED);
        let ack = Message::AppendEntriesResponse {
            term: 3,
            success: true,
            index: 4,
        };
        leader.handle_message(2, ack.clone()).expect("an ack");
        let before = leader.clone();
        let mut output = leader
            .handle_message(2, ack.clone())
            .expect("the ack again");
        let input = Input::Message(2, &ack);
        assert_eq!(violation(&before, &input, &leader, &output), None);
        output.send_now.push((
            2,
            Message::AppendEntriesRequest {
                term: 3,
                prev_log_index: 4,
                prev_log_term: 3,
                entries: Vec::new(),
                leader_commit: leader.commit_index(),
            },
        ));
        assert_eq!(
            violation(&before, &input, &leader, &output),
            Some(
                "an empty AppendEntries to the pipelined follower 2 outside a heartbeat"
                    .to_string()
            )
        );
    }

    /// Check-quorum counts every AppendEntries answer of the leader's term, a rejection too,
    /// and a check that keeps the leader starts the next period with no one heard from.
    #[test]
    fn check_quorum_counts_every_answer_and_each_check_starts_afresh() {
        let (_, elected, _, _) = election(FlowControl::UNLIMITED);
        // Server 2 holds only the first entry: its rejection is current, answered by a probe.
        let rejection = Message::AppendEntriesResponse {
            term: 3,
            success: false,
            index: 1,
        };
        let input = Input::Message(2, &rejection);
        let mut heard = elected.clone();
        let output = heard
            .handle_message(2, rejection.clone())
            .expect("a rejection");
        assert_eq!(violation(&elected, &input, &heard, &output), None);
        assert_eq!(
            violation(&elected, &input, &elected, &output),
            Some(
                "a leader heard an AppendEntries answer of its term 3 from 2 and does not count \
                 it as heard from"
                    .to_string()
            )
        );
        // An answer given to the leader of an earlier term says nothing of reachability now.
        let stale = Message::AppendEntriesResponse {
            term: 2,
            success: true,
            index: 3,
        };
        let mut unmoved = elected.clone();
        let output = unmoved
            .handle_message(2, stale.clone())
            .expect("a stale answer");
        let input = Input::Message(2, &stale);
        assert_eq!(violation(&elected, &input, &unmoved, &output), None);
        assert_eq!(
            violation(&elected, &input, &heard, &output),
            Some(
                "a leader counts 2 as heard from without an AppendEntries answer of its term 3 \
                 from it"
                    .to_string()
            )
        );
        // Heard from server 2: the check keeps the leader, and forgets whom it heard from.
        let mut checked = heard.clone();
        let output = checked.handle_timeout(Timer::Election);
        let input = Input::Timeout(Timer::Election);
        assert_eq!(checked.role_kind(), RoleKind::Leader);
        assert_eq!(violation(&heard, &input, &checked, &output), None);
        assert_eq!(
            violation(&heard, &input, &heard, &output),
            Some(
                "check-quorum kept the leader but still counts {2} as heard from in the next \
                 period"
                    .to_string()
            )
        );
    }

    /// Pre-votes from a majority start an ordinary election: its vote requests are not marked
    /// as a leadership transfer's, which servers following a live leader would answer.
    #[test]
    fn an_election_after_a_pre_vote_asks_as_an_ordinary_one() {
        let mut peer = server_one(|config| config.pre_vote = true);
        peer.handle_timeout(Timer::Election);
        assert_eq!(peer.role_kind(), RoleKind::PreCandidate);
        let before = peer.clone();
        let granted = Message::PreVoteResponse {
            term: 3,
            granted: true,
        };
        let mut output = peer
            .handle_message(2, granted.clone())
            .expect("a pre-vote is accepted");
        assert_eq!(peer.role_kind(), RoleKind::Candidate);
        let input = Input::Message(2, &granted);
        assert_eq!(violation(&before, &input, &peer, &output), None);
        for (_, message) in output
            .send_now
            .iter_mut()
            .chain(output.send_after_persist.iter_mut())
        {
            if let Message::RequestVoteRequest { transfer, .. } = message {
                *transfer = true;
            }
        }
        assert_eq!(
            violation(&before, &input, &peer, &output),
            Some(
                "an election after a pre-vote must take term 3, vote for itself and ask every \
                 other server"
                    .to_string()
            )
        );
    }

    /// A refused pre-vote answer carries the voter's own term, which a pre-candidate of an
    /// older term moves to (§5.1); a granted one carries the proposed term, which it does not.
    #[test]
    fn a_refused_pre_vote_answer_of_a_newer_term_is_followed() {
        let refused = Message::PreVoteResponse {
            term: 5,
            granted: false,
        };
        let granted = Message::<u8>::PreVoteResponse {
            term: 5,
            granted: true,
        };
        let request = Message::<u8>::PreVoteRequest {
            term: 5,
            last_log_index: 0,
            last_log_term: 0,
        };
        assert_eq!(senders_term(&refused), Some(5));
        assert_eq!(senders_term(&granted), None);
        assert_eq!(senders_term(&request), None);
        let mut peer = server_one(|config| config.pre_vote = true);
        peer.handle_timeout(Timer::Election);
        let before = peer.clone();
        let mut moved = peer.clone();
        let output = moved
            .handle_message(2, refused.clone())
            .expect("a refusal is accepted");
        let input = Input::Message(2, &refused);
        assert_eq!(moved.term(), 5);
        assert_eq!(violation(&before, &input, &moved, &output), None);
        assert_eq!(
            violation(&before, &input, &before, &Output::default()),
            Some("handled a PreVoteResponse of term 5 and stayed in term 2 (§5.1)".to_string())
        );
    }

    /// A server comes up a follower of no leader, holding what storage kept, with its election
    /// timer armed; without that timer it would never campaign.
    #[test]
    fn a_start_without_the_election_timer_breaks_the_contract() {
        let durable = Durable {
            term: 2,
            voted_for: Some(3),
            log: log_of_terms(&[1, 1, 2]),
        };
        let (peer, mut output) =
            Peer::<u8>::restore(Config::new(1, vec![1, 2, 3]), durable.clone())
                .expect("a valid durable state");
        assert_eq!(start_violation(&durable, &peer, &output), None);
        output.timers.clear();
        assert_eq!(
            start_violation(&durable, &peer, &output),
            Some("a start did not arm the election timer".to_string())
        );
    }

    /// Figure 2: a follower that accepts an append moves its commit index to min(leader
    /// commit, last new entry) when that is higher; short of it breaks the contract as past it
    /// does.
    #[test]
    fn a_follower_commits_exactly_what_the_append_allows() {
        let durable = Durable {
            term: 3,
            voted_for: None,
            log: log_of_terms(&[1, 1, 2]),
        };
        let follower = Peer::<u8>::restore(Config::new(2, vec![1, 2, 3]), durable)
            .expect("a valid durable state")
            .0;
        let append = |leader_commit| Message::AppendEntriesRequest {
            term: 3,
            prev_log_index: 3,
            prev_log_term: 2,
            entries: log_of_terms(&[3]),
            leader_commit,
        };
        let mut committed = follower.clone();
        let output = committed.handle_message(1, append(4)).expect("an append");
        assert_eq!(committed.commit_index(), 4);
        let input_message = append(4);
        let input = Input::Message(1, &input_message);
        assert_eq!(violation(&follower, &input, &committed, &output), None);
        // The same entries stored, the commit index left behind.
        let mut behind = follower.clone();
        let output = behind.handle_message(1, append(0)).expect("an append");
        assert_eq!(
            violation(&follower, &input, &behind, &output),
            Some("committed 0 short of min(leader commit 4, last new 4)".to_string())
        );
    }

    /// An AppendEntries carries the leader's commit index as the step leaves it, and a stale
    /// acknowledgement leaves the follower's progress as it was.
    #[test]
    fn appends_carry_the_commit_and_stale_acks_change_nothing() {
        let (_, elected, _, _) = election(FlowControl::UNLIMITED);
        let ack = |index| Message::AppendEntriesResponse {
            term: 3,
            success: true,
            index,
        };
        let mut acked = elected.clone();
        let output = acked.handle_message(2, ack(4)).expect("an ack");
        assert_eq!(acked.commit_index(), 4);
        assert_eq!(
            violation(&elected, &Input::Message(2, &ack(4)), &acked, &output),
            None
        );
        let mut late = output.clone();
        late.send_now.push((
            3,
            Message::AppendEntriesRequest {
                term: 3,
                prev_log_index: 3,
                prev_log_term: 2,
                entries: acked.log()[3..].to_vec(),
                leader_commit: 0,
            },
        ));
        assert_eq!(
            violation(&elected, &Input::Message(2, &ack(4)), &acked, &late),
            Some("AppendEntries carries commit 0 short of the leader's 4".to_string())
        );
        // A stale acknowledgement of 2 (behind the one of 4): nothing moves.
        let mut same = acked.clone();
        let output = same.handle_message(2, ack(2)).expect("a stale ack");
        assert_eq!(
            violation(&acked, &Input::Message(2, &ack(2)), &same, &output),
            None
        );
        // A leader that went back to probing server 2 on it breaks the contract.
        let mut probing = acked.clone();
        let rejection = Message::AppendEntriesResponse {
            term: 3,
            success: false,
            index: 3,
        };
        probing.handle_message(2, rejection).expect("a rejection");
        let broken = violation(
            &acked,
            &Input::Message(2, &ack(2)),
            &probing,
            &Output::default(),
        )
        .expect("a stale ack that changed the progress");
        assert!(
            broken.starts_with("a stale acknowledgement of 2 from 2 changed its progress"),
            "{broken}"
        );
    }

    /// A pipelined window forgets a message only once an acknowledgement covers it, or on a
    /// heartbeat the oldest of a full window: a heartbeat that drops a message of a window
    /// with room breaks the contract. (The state after an acknowledgement stands in for it.)
    #[test]
    fn a_window_with_room_keeps_its_messages_on_a_heartbeat() {
        let (_, mut leader, _, _) = election(FlowControl {
            max_entries: 1,
            max_inflight: 3,
            ..FlowControl::UNLIMITED
        });
        let ack = |index| Message::AppendEntriesResponse {
            term: 3,
            success: true,
            index,
        };
        leader.handle_message(2, ack(4)).expect("an ack");
        leader.propose(vec![7]).expect("a proposal");
        leader.propose(vec![8]).expect("a proposal");
        let Role::Leader { progress, .. } = leader.role() else {
            panic!("a leader")
        };
        let Some(Flow::Replicate { inflight }) = progress.get(&2).map(|p| &p.flow) else {
            panic!("2 is pipelined")
        };
        assert_eq!(
            inflight.messages().collect::<Vec<_>>(),
            vec![(5, 1), (6, 1)]
        );
        let input = Input::Timeout(Timer::Heartbeat);
        let mut beat = leader.clone();
        let output = beat.handle_timeout(Timer::Heartbeat);
        assert_eq!(violation(&leader, &input, &beat, &output), None);
        // Server 2's window without the message up to 5, though it has room for a third.
        let mut dropped = leader.clone();
        dropped.handle_message(2, ack(5)).expect("an ack");
        let output = Output {
            commit: Some(dropped.commit_index()),
            ..Output::default()
        };
        assert_eq!(
            violation(&leader, &input, &dropped, &output),
            Some("the window of 2 forgot its message up to 5, still in flight".to_string())
        );
    }
}
