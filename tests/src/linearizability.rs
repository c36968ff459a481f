//! Linearizability of a key-value history recorded against a real cluster.
//!
//! Clients record every operation they invoke: a put of a unique value or a get, with the
//! time it was invoked, the time it completed, and how it completed: ok, failed (it certainly
//! did not take effect) or unknown (it may or may not have taken effect; Jepsen's "info").
//! Linearizability is local (Herlihy & Wing 1990, §3.3), so each key is checked on its own,
//! against a register whose value is `None` while the key is absent.
//!
//! The checker is Wing & Gong's search as improved by Lowe ("Testing for linearizability",
//! 2017): walk the call and return events in real-time order, linearize a called operation
//! when the register allows it, backtrack at a return that nothing linearized, and memoize
//! (set of linearized operations, register value) pairs already explored. An unknown put never
//! returns: it may be linearized at any point after its call, or not at all. A put whose value
//! no read ever saw changes nothing a read could tell apart, so unknown puts that no read saw
//! are dropped first, which keeps the search small. Failed operations and unknown gets have no
//! effect and are dropped too.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;

/// A value written by a put. Every put writes a value no other put writes.
pub type Value = u64;

/// What a client asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Call {
    /// Set the key to the value.
    Put(Value),
    /// Read the key.
    Get,
}

/// How an operation completed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Completion {
    /// The put was acknowledged.
    PutOk,
    /// The get answered: the value, or `None` when the key was absent.
    GetOk(Option<Value>),
    /// The operation certainly did not take effect.
    Failed,
    /// The outcome is unknown: a put may have taken effect (now or later), or not.
    Unknown,
}

/// One operation of a history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation {
    /// The client (a sequential process) that ran it.
    pub client: usize,
    /// The key it addressed.
    pub key: String,
    /// What was asked.
    pub call: Call,
    /// When it was invoked, in nanoseconds on the history's clock.
    pub invoked_ns: u64,
    /// When the client stopped waiting for it, in nanoseconds on the history's clock.
    /// Invariant: at least `invoked_ns`.
    pub completed_ns: u64,
    /// How it completed.
    pub completion: Completion,
}

impl Operation {
    /// Whether this is a put the cluster acknowledged.
    pub fn is_acknowledged_put(&self) -> bool {
        matches!(
            (self.call, self.completion),
            (Call::Put(_), Completion::PutOk)
        )
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let call = match self.call {
            Call::Put(value) => format!("put {}={value}", self.key),
            Call::Get => format!("get {}", self.key),
        };
        let completion = match self.completion {
            Completion::PutOk => "ok".to_owned(),
            Completion::GetOk(Some(value)) => format!("ok {value}"),
            Completion::GetOk(None) => "ok absent".to_owned(),
            Completion::Failed => "fail".to_owned(),
            Completion::Unknown => "unknown".to_owned(),
        };
        write!(
            f,
            "client {} {call} [{:.6}s..{:.6}s] {completion}",
            self.client,
            self.invoked_ns as f64 / 1e9,
            self.completed_ns as f64 / 1e9
        )
    }
}

/// The verdict on one key's history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A linearization exists.
    Linearizable,
    /// None exists. `stuck_at` is an operation that no linearization could place before it
    /// returned, seen when the search got furthest (for the report).
    NotLinearizable {
        /// How many operations the furthest partial linearization held.
        linearized: usize,
        /// The operation whose return ended that partial linearization.
        stuck_at: Box<Operation>,
    },
    /// The search took more than its step budget.
    Inconclusive {
        /// The steps taken.
        steps: u64,
    },
}

/// The step budget of [`check_key`] when none is given: far above what a linearizable
/// history of tens of thousands of operations needs.
pub const DEFAULT_STEP_BUDGET: u64 = 200_000_000;

/// Checks every key of `history` on its own. A key starts absent.
pub fn check_history(history: &[Operation]) -> BTreeMap<String, Verdict> {
    let mut by_key: BTreeMap<&str, Vec<Operation>> = BTreeMap::new();
    for operation in history {
        by_key
            .entry(&operation.key)
            .or_default()
            .push(operation.clone());
    }
    by_key
        .into_iter()
        .map(|(key, operations)| {
            (
                key.to_owned(),
                check_key(&operations, None, DEFAULT_STEP_BUDGET),
            )
        })
        .collect()
}

/// Checks the history of one key (every operation in `operations` addresses the same key)
/// against a register that starts with `initial`.
pub fn check_key(operations: &[Operation], initial: Option<Value>, step_budget: u64) -> Verdict {
    let relevant = relevant_operations(operations);
    let mut search = Search::new(&relevant, initial);
    search.run(step_budget)
}

/// The operations that can matter: acknowledged puts, answered gets, and the unknown puts
/// whose value some get saw.
fn relevant_operations(operations: &[Operation]) -> Vec<Operation> {
    let seen: BTreeSet<Value> = operations
        .iter()
        .filter_map(|operation| match operation.completion {
            Completion::GetOk(Some(value)) => Some(value),
            _ => None,
        })
        .collect();
    operations
        .iter()
        .filter(|operation| match (operation.call, operation.completion) {
            (_, Completion::Failed) => false,
            (Call::Get, Completion::Unknown) => false,
            (Call::Put(value), Completion::Unknown) => seen.contains(&value),
            _ => true,
        })
        .cloned()
        .collect()
}

/// One call or return event in the doubly linked list the search walks.
#[derive(Clone, Copy, Debug)]
enum Event {
    Call(usize),
    Return(usize),
}

const NIL: usize = usize::MAX;

/// Lowe's search state. Node 0 of the list is a sentinel head; node `k + 1` is `events[k]`.
struct Search<'a> {
    operations: &'a [Operation],
    initial: Option<Value>,
    events: Vec<Event>,
    next: Vec<usize>,
    prev: Vec<usize>,
    /// The list node of each operation's call and return event.
    call_node: Vec<usize>,
    return_node: Vec<usize>,
}

impl<'a> Search<'a> {
    fn new(operations: &'a [Operation], initial: Option<Value>) -> Self {
        let mut timed: Vec<(u64, u8, usize, Event)> = Vec::new();
        for (index, operation) in operations.iter().enumerate() {
            timed.push((operation.invoked_ns, 0, index, Event::Call(index)));
            // An unknown put never returns: it may take effect at any time after its call.
            let returned_ns = match operation.completion {
                Completion::Unknown => u64::MAX,
                _ => operation.completed_ns,
            };
            timed.push((returned_ns, 1, index, Event::Return(index)));
        }
        // At equal times calls come first: operations that touch count as concurrent.
        timed.sort_by_key(|&(time, order, index, _)| (time, order, index));
        let events: Vec<Event> = timed.into_iter().map(|(.., event)| event).collect();
        let nodes = events.len() + 1;
        let next = (0..nodes)
            .map(|node| if node + 1 < nodes { node + 1 } else { NIL })
            .collect();
        let prev = (0..nodes)
            .map(|node| if node == 0 { NIL } else { node - 1 })
            .collect();
        let mut call_node = vec![NIL; operations.len()];
        let mut return_node = vec![NIL; operations.len()];
        for (position, event) in events.iter().enumerate() {
            match *event {
                Event::Call(index) => call_node[index] = position + 1,
                Event::Return(index) => return_node[index] = position + 1,
            }
        }
        Search {
            operations,
            initial,
            events,
            next,
            prev,
            call_node,
            return_node,
        }
    }

    fn event(&self, node: usize) -> Event {
        self.events[node - 1]
    }

    /// The register after `operation`, or `None` if the register forbids it now.
    fn step(&self, value: Option<Value>, operation: &Operation) -> Option<Option<Value>> {
        match (operation.call, operation.completion) {
            (Call::Put(written), _) => Some(Some(written)),
            (Call::Get, Completion::GetOk(read)) => (read == value).then_some(value),
            (Call::Get, _) => unreachable!("only answered gets are searched"),
        }
    }

    fn unlink(&mut self, node: usize) {
        let (prev, next) = (self.prev[node], self.next[node]);
        self.next[prev] = next;
        if next != NIL {
            self.prev[next] = prev;
        }
    }

    /// Undoes `unlink(node)`; nodes must be relinked in the reverse order of unlinking.
    fn relink(&mut self, node: usize) {
        let (prev, next) = (self.prev[node], self.next[node]);
        self.next[prev] = node;
        if next != NIL {
            self.prev[next] = node;
        }
    }

    fn lift(&mut self, index: usize) {
        self.unlink(self.call_node[index]);
        self.unlink(self.return_node[index]);
    }

    fn unlift(&mut self, index: usize) {
        self.relink(self.return_node[index]);
        self.relink(self.call_node[index]);
    }

    fn run(&mut self, step_budget: u64) -> Verdict {
        let words = self.operations.len().div_ceil(64);
        let mut linearized = vec![0u64; words];
        let mut explored: HashSet<(Vec<u64>, Option<Value>)> = HashSet::new();
        // Linearized operations, each with the register value before it.
        let mut stack: Vec<(usize, Option<Value>)> = Vec::new();
        let mut value = self.initial;
        let mut furthest: (usize, usize) = (0, NIL);
        let mut node = self.next[0];
        let mut steps = 0u64;
        while self.next[0] != NIL {
            steps += 1;
            if steps > step_budget {
                return Verdict::Inconclusive { steps };
            }
            match self.event(node) {
                Event::Call(index) => {
                    let after = self.step(value, &self.operations[index]);
                    let fresh = after.is_some_and(|after| {
                        let mut with = linearized.clone();
                        with[index / 64] |= 1 << (index % 64);
                        explored.insert((with, after))
                    });
                    match after {
                        Some(after) if fresh => {
                            stack.push((index, value));
                            linearized[index / 64] |= 1 << (index % 64);
                            value = after;
                            self.lift(index);
                            node = self.next[0];
                        }
                        _ => node = self.next[node],
                    }
                }
                Event::Return(index) => {
                    if stack.len() >= furthest.0 {
                        furthest = (stack.len(), index);
                    }
                    let Some((top, before)) = stack.pop() else {
                        return self.not_linearizable(furthest);
                    };
                    linearized[top / 64] &= !(1 << (top % 64));
                    value = before;
                    self.unlift(top);
                    node = self.next[self.call_node[top]];
                }
            }
        }
        Verdict::Linearizable
    }

    fn not_linearizable(&self, (linearized, index): (usize, usize)) -> Verdict {
        Verdict::NotLinearizable {
            linearized,
            stuck_at: Box::new(self.operations[index].clone()),
        }
    }
}

/// The acknowledged puts that the final value of a key shows were lost.
///
/// `final_value` was read after every operation of `operations` had completed. Its put must
/// then be the last put of any linearization, so every acknowledged put that began after
/// that put had returned came later, and was lost. With the key absent at the end (or
/// holding a value nobody wrote) every acknowledged put was lost.
pub fn lost_puts(operations: &[Operation], final_value: Option<Value>) -> Vec<&Operation> {
    let acknowledged = operations
        .iter()
        .filter(|operation| operation.is_acknowledged_put());
    let last = final_value.and_then(|value| {
        operations.iter().find(|operation| {
            operation.call == Call::Put(value) && operation.completion != Completion::Failed
        })
    });
    let Some(last) = last else {
        return acknowledged.collect();
    };
    let last_returned_ns = match last.completion {
        Completion::Unknown => u64::MAX,
        _ => last.completed_ns,
    };
    acknowledged
        .filter(|operation| operation.invoked_ns > last_returned_ns)
        .collect()
}

/// Renders a history in Jepsen's style, one event per line: `invoke`, then `ok`, `fail` or
/// `info` (unknown), in time order.
pub fn render_events(history: &[Operation]) -> String {
    let mut events: Vec<(u64, u8, String)> = Vec::new();
    for operation in history {
        let call = match operation.call {
            Call::Put(value) => format!(":put {:?} {value}", operation.key),
            Call::Get => format!(":get {:?}", operation.key),
        };
        events.push((
            operation.invoked_ns,
            0,
            format!("{} :invoke {call}", operation.client),
        ));
        let completion = match operation.completion {
            Completion::PutOk => format!(":ok {call}"),
            Completion::GetOk(Some(value)) => format!(":ok {call} -> {value}"),
            Completion::GetOk(None) => format!(":ok {call} -> nil"),
            Completion::Failed => format!(":fail {call}"),
            Completion::Unknown => format!(":info {call}"),
        };
        events.push((
            operation.completed_ns,
            1,
            format!("{} {completion}", operation.client),
        ));
    }
    events.sort();
    events
        .into_iter()
        .map(|(time, _, line)| format!("{:.6} {line}\n", time as f64 / 1e9))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use stateright::semantics::register::{Register, RegisterOp, RegisterRet};
    use stateright::semantics::{ConsistencyTester, LinearizabilityTester};

    fn op(client: usize, call: Call, span: (u64, u64), completion: Completion) -> Operation {
        Operation {
            client,
            key: "k".into(),
            call,
            invoked_ns: span.0,
            completed_ns: span.1,
            completion,
        }
    }

    fn verdict(operations: &[Operation]) -> Verdict {
        check_key(operations, None, DEFAULT_STEP_BUDGET)
    }

    #[test]
    fn sequential_history_is_linearizable() {
        let history = [
            op(0, Call::Get, (0, 1), Completion::GetOk(None)),
            op(0, Call::Put(1), (2, 3), Completion::PutOk),
            op(0, Call::Get, (4, 5), Completion::GetOk(Some(1))),
            op(0, Call::Put(2), (6, 7), Completion::PutOk),
            op(0, Call::Get, (8, 9), Completion::GetOk(Some(2))),
        ];
        assert_eq!(verdict(&history), Verdict::Linearizable);
    }

    #[test]
    fn stale_read_after_a_completed_put_is_rejected() {
        let history = [
            op(0, Call::Put(1), (0, 1), Completion::PutOk),
            op(0, Call::Put(2), (2, 3), Completion::PutOk),
            op(1, Call::Get, (4, 5), Completion::GetOk(Some(1))),
        ];
        let Verdict::NotLinearizable { stuck_at, .. } = verdict(&history) else {
            panic!("a stale read must be rejected");
        };
        assert_eq!(stuck_at.call, Call::Get);
    }

    #[test]
    fn concurrent_put_may_be_seen_or_not() {
        for seen in [None, Some(1)] {
            let history = [
                op(0, Call::Put(1), (0, 10), Completion::PutOk),
                op(1, Call::Get, (2, 3), Completion::GetOk(seen)),
            ];
            assert_eq!(verdict(&history), Verdict::Linearizable, "seen {seen:?}");
        }
    }

    #[test]
    fn reads_may_not_flip_back() {
        // Once one read has seen the put, a later read must see it too.
        let history = [
            op(0, Call::Put(1), (0, 10), Completion::PutOk),
            op(1, Call::Get, (1, 2), Completion::GetOk(Some(1))),
            op(2, Call::Get, (3, 4), Completion::GetOk(None)),
        ];
        assert!(matches!(verdict(&history), Verdict::NotLinearizable { .. }));
    }

    #[test]
    fn unknown_put_may_take_effect_late_or_never() {
        let late = [
            op(0, Call::Put(1), (0, 1), Completion::Unknown),
            op(1, Call::Get, (5, 6), Completion::GetOk(None)),
            op(1, Call::Get, (7, 8), Completion::GetOk(Some(1))),
        ];
        assert_eq!(verdict(&late), Verdict::Linearizable);
        let never = [
            op(0, Call::Put(1), (0, 1), Completion::Unknown),
            op(1, Call::Get, (5, 6), Completion::GetOk(None)),
        ];
        assert_eq!(verdict(&never), Verdict::Linearizable);
    }

    #[test]
    fn failed_put_must_not_be_seen() {
        let history = [
            op(0, Call::Put(1), (0, 1), Completion::Failed),
            op(1, Call::Get, (5, 6), Completion::GetOk(Some(1))),
        ];
        assert!(matches!(verdict(&history), Verdict::NotLinearizable { .. }));
    }

    #[test]
    fn value_nobody_wrote_is_rejected() {
        let history = [op(1, Call::Get, (0, 1), Completion::GetOk(Some(7)))];
        assert!(matches!(verdict(&history), Verdict::NotLinearizable { .. }));
    }

    #[test]
    fn lost_puts_are_the_acknowledged_puts_after_the_final_value() {
        let history = [
            op(0, Call::Put(1), (0, 1), Completion::PutOk),
            op(0, Call::Put(2), (2, 3), Completion::PutOk),
            op(1, Call::Put(3), (2, 9), Completion::Unknown),
            op(0, Call::Put(4), (4, 5), Completion::PutOk),
        ];
        let lost = |value| -> Vec<Value> {
            lost_puts(&history, value)
                .iter()
                .map(|operation| match operation.call {
                    Call::Put(value) => value,
                    Call::Get => unreachable!(),
                })
                .collect()
        };
        assert_eq!(lost(Some(4)), Vec::<Value>::new());
        assert_eq!(
            lost(Some(3)),
            Vec::<Value>::new(),
            "unknown put may be last"
        );
        assert_eq!(lost(Some(2)), vec![4]);
        assert_eq!(lost(Some(1)), vec![2, 4]);
        assert_eq!(lost(None), vec![1, 2, 4]);
        assert_eq!(lost(Some(99)), vec![1, 2, 4]);
    }

    /// A small deterministic generator so the comparison below is reproducible.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, bound: u64) -> u64 {
            // xorshift64*
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % bound
        }
    }

    /// A history of a few clients on one register: each operation takes effect at a random
    /// instant inside its span (so the history is linearizable), unless `corrupt` then
    /// changes one read's answer (so it may not be).
    fn random_history(rng: &mut Rng, corrupt: bool) -> Vec<Operation> {
        let clients = 1 + rng.below(3) as usize;
        let mut free_at = vec![0u64; clients];
        let mut planned: Vec<(u64, usize, Call, u64, u64)> = Vec::new();
        let mut next_value = 1;
        for _ in 0..(2 + rng.below(7)) {
            let client = rng.below(clients as u64) as usize;
            let invoked = free_at[client] + rng.below(5);
            let completed = invoked + 1 + rng.below(12);
            let effect = invoked + rng.below(completed - invoked + 1);
            free_at[client] = completed + 1;
            let call = if rng.below(2) == 0 {
                next_value += 1;
                Call::Put(next_value - 1)
            } else {
                Call::Get
            };
            planned.push((effect, client, call, invoked, completed));
        }
        // Apply the effects in time order to learn what each read returned.
        let mut order: Vec<usize> = (0..planned.len()).collect();
        order.sort_by_key(|&index| (planned[index].0, index));
        let mut register = None;
        let mut completions = vec![Completion::Failed; planned.len()];
        for index in order {
            let (_, _, call, ..) = planned[index];
            completions[index] = match call {
                Call::Put(value) => {
                    let outcome = rng.below(6);
                    if outcome == 0 {
                        // A lost put: failed, and it did not take effect.
                        Completion::Failed
                    } else {
                        register = Some(value);
                        if outcome == 1 {
                            Completion::Unknown
                        } else {
                            Completion::PutOk
                        }
                    }
                }
                Call::Get => Completion::GetOk(register),
            };
        }
        let mut history: Vec<Operation> = planned
            .iter()
            .zip(completions)
            .map(|(&(_, client, call, invoked, completed), completion)| {
                op(client, call, (invoked, completed), completion)
            })
            .collect();
        if corrupt {
            let reads: Vec<usize> = (0..history.len())
                .filter(|&index| history[index].call == Call::Get)
                .collect();
            if !reads.is_empty() {
                let read = reads[rng.below(reads.len() as u64) as usize];
                let answer = rng.below(next_value + 1);
                history[read].completion = Completion::GetOk((answer > 0).then_some(answer));
            }
        }
        history
    }

    /// stateright's tester on the same history: call order is real-time order, and an op
    /// that never returns may be linearized or not. Each unknown put gets a thread of its
    /// own, since its client went on with the next operation.
    fn stateright_verdict(history: &[Operation]) -> bool {
        let mut events: Vec<(u64, u8, usize)> = Vec::new();
        for (index, operation) in history.iter().enumerate() {
            if operation.completion == Completion::Failed {
                continue;
            }
            if operation.call == Call::Get && operation.completion == Completion::Unknown {
                continue;
            }
            events.push((operation.invoked_ns, 0, index));
            if operation.completion != Completion::Unknown {
                events.push((operation.completed_ns, 1, index));
            }
        }
        events.sort();
        let mut tester = LinearizabilityTester::new(Register(None::<Value>));
        for (_, kind, index) in events {
            let operation = &history[index];
            let thread = match operation.completion {
                Completion::Unknown => 1000 + index,
                _ => operation.client,
            };
            if kind == 0 {
                let call = match operation.call {
                    Call::Put(value) => RegisterOp::Write(Some(value)),
                    Call::Get => RegisterOp::Read,
                };
                tester.on_invoke(thread, call).expect("valid history");
            } else {
                let ret = match operation.completion {
                    Completion::PutOk => RegisterRet::WriteOk,
                    Completion::GetOk(value) => RegisterRet::ReadOk(value),
                    _ => unreachable!("only completed operations return"),
                };
                tester.on_return(thread, ret).expect("valid history");
            }
        }
        tester.is_consistent()
    }

    #[test]
    fn agrees_with_stateright_on_random_histories() {
        let mut rng = Rng(0x5eed_1234_abcd_0001);
        let (mut linearizable, mut not) = (0, 0);
        for round in 0..4000 {
            let history = random_history(&mut rng, round % 2 == 1);
            let ours = verdict(&history);
            let theirs = stateright_verdict(&history);
            assert_eq!(
                ours == Verdict::Linearizable,
                theirs,
                "round {round}: ours {ours:?}, stateright {theirs}, history:\n{}",
                render_events(&history)
            );
            if round % 2 == 0 {
                assert_eq!(
                    ours,
                    Verdict::Linearizable,
                    "an uncorrupted history is linearizable"
                );
            }
            if theirs {
                linearizable += 1;
            } else {
                not += 1;
            }
        }
        // The comparison means something only if both answers occur often.
        assert!(linearizable > 2200 && not > 300, "{linearizable} vs {not}");
    }

    #[test]
    fn long_concurrent_history_is_checked_quickly() {
        // Four clients, 20,000 operations with overlapping spans, every read right.
        let mut rng = Rng(42);
        let mut history = Vec::new();
        let mut register = None;
        let mut next_value = 1;
        let mut time = 0u64;
        let mut pending: Vec<Option<Operation>> = vec![None; 4];
        for _ in 0..20_000 {
            time += 10;
            let client = rng.below(4) as usize;
            if let Some(operation) = pending[client].take() {
                let mut operation: Operation = operation;
                operation.completed_ns = time;
                history.push(operation);
            }
            // The operation takes effect now, at its call; it returns later.
            let (call, completion) = if rng.below(2) == 0 {
                next_value += 1;
                register = Some(next_value - 1);
                let completion = if rng.below(50) == 0 {
                    Completion::Unknown
                } else {
                    Completion::PutOk
                };
                (Call::Put(next_value - 1), completion)
            } else {
                (Call::Get, Completion::GetOk(register))
            };
            pending[client] = Some(op(client, call, (time, time), completion));
        }
        history.extend(pending.into_iter().flatten());
        assert_eq!(check_key(&history, None, 10_000_000), Verdict::Linearizable);
    }
}
