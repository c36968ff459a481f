//! Running the checker over one configuration or a suite, with progress and a summary.

use super::engine::{RaftAction, Search, Stall};
use super::properties::{self, Expect};
use super::simulate::{self, SimulationPlan, SimulationReport};
use super::{ModelConfig, RaftModel, RaftState};
use stateright::{Model, Path};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// The verdict on one property.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PropertyStatus {
    /// An Always property held in every state.
    Holds,
    /// An Always property failed in some state.
    Violated,
    /// A Sometimes property held in some state.
    Example,
    /// A Sometimes property held in no state.
    NoExample,
    /// A Sometimes property no search looked for: a run of random walks alone judges the
    /// Always properties only.
    NotSearched,
    /// An Always property the run was told not to evaluate (`--property` named others).
    NotJudged,
}

impl PropertyStatus {
    /// The name used in reports and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            PropertyStatus::Holds => "holds",
            PropertyStatus::Violated => "violated",
            PropertyStatus::Example => "example",
            PropertyStatus::NoExample => "no_example",
            PropertyStatus::NotSearched => "not_searched",
            PropertyStatus::NotJudged => "not_judged",
        }
    }

    /// Whether this verdict is what the property asks for.
    pub fn is_good(self) -> bool {
        matches!(
            self,
            PropertyStatus::Holds
                | PropertyStatus::Example
                | PropertyStatus::NotSearched
                | PropertyStatus::NotJudged
        )
    }
}

/// One property's verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PropertyReport {
    /// Property name.
    pub name: &'static str,
    /// Always or Sometimes.
    pub expectation: Expect,
    /// The verdict.
    pub status: PropertyStatus,
}

/// A discovered path: a counterexample to an Always property or an example of a Sometimes one.
#[derive(Clone, Debug)]
pub struct Discovery {
    /// The property.
    pub property: &'static str,
    /// The steps, each an action followed by a one-line view of every server after it.
    pub steps: Vec<String>,
    /// The path as the explorer encodes it (open `/#/steps/<encoded>`).
    pub encoded: String,
    /// Whether `encoded` is a path of the explorer that reduces symmetry (the default) or of
    /// the one started with `--no-symmetry`.
    pub symmetric_link: bool,
    /// For a PeerInvariant or OutputContract violation: which server broke and how (empty
    /// for the other properties).
    pub faults: Vec<String>,
    /// For a counterexample: the other Always properties its last state violates, judged by
    /// this run or not, in report order. The property reported is the first of those the
    /// shortest path reaches; these show what else the same state breaks.
    pub also: Vec<&'static str>,
}

/// The result of checking one configuration.
#[derive(Clone, Debug)]
pub struct ConfigReport {
    /// The configuration.
    pub config: ModelConfig,
    /// Whether every reachable state within the bounds was explored.
    pub complete: bool,
    /// Distinct states (up to symmetry when it is on).
    pub unique_states: usize,
    /// States generated, duplicates included.
    pub states: usize,
    /// Longest path explored.
    pub max_depth: usize,
    /// Wall time.
    pub elapsed: Duration,
    /// Verdicts, in [`properties::ALL`] order.
    pub properties: Vec<PropertyReport>,
    /// Counterexamples of violated Always properties.
    pub counterexamples: Vec<Discovery>,
    /// Paths of the Sometimes examples.
    pub examples: Vec<Discovery>,
}

/// The result of checking a suite.
#[derive(Clone, Debug)]
pub struct CheckReport {
    /// One report per configuration.
    pub configs: Vec<ConfigReport>,
    /// The random simulation run after the exhaustive configurations, if one ran.
    pub simulation: Option<SimulationReport>,
    /// The Always properties judged ([`ModelConfig::judged`]); `None`: every one.
    pub judged: Option<u32>,
}

impl CheckReport {
    /// Every configuration was explored completely.
    pub fn complete(&self) -> bool {
        self.configs.iter().all(|c| c.complete)
    }
    /// Total distinct states.
    pub fn unique_states(&self) -> usize {
        self.configs.iter().map(|c| c.unique_states).sum()
    }
    /// Total generated states.
    pub fn states(&self) -> usize {
        self.configs.iter().map(|c| c.states).sum()
    }
    /// Deepest path in any configuration.
    pub fn max_depth(&self) -> usize {
        self.configs.iter().map(|c| c.max_depth).max().unwrap_or(0)
    }
    /// Total wall time.
    pub fn elapsed(&self) -> Duration {
        self.configs.iter().map(|c| c.elapsed).sum()
    }
    /// Distinct states per second over the suite.
    pub fn states_per_second(&self) -> f64 {
        self.unique_states() as f64 / self.elapsed().as_secs_f64().max(1e-9)
    }

    /// Verdicts over the suite: an Always property is violated if any configuration violates
    /// it; a Sometimes property has an example if any configuration has one.
    pub fn properties(&self) -> Vec<PropertyReport> {
        properties::ALL
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let statuses = self.configs.iter().map(|c| {
                    c.properties
                        .iter()
                        .find(|r| r.name == p.name)
                        .expect("every configuration reports every property")
                        .status
                });
                let simulated = self
                    .simulation
                    .as_ref()
                    .and_then(|s| s.finding.as_ref())
                    .is_some_and(|f| f.property == p.name);
                let status = match p.expectation {
                    Expect::Always if !properties::judges_always(self.judged, i) => {
                        PropertyStatus::NotJudged
                    }
                    Expect::Always
                        if simulated || statuses.clone().any(|s| s == PropertyStatus::Violated) =>
                    {
                        PropertyStatus::Violated
                    }
                    Expect::Always => PropertyStatus::Holds,
                    Expect::Sometimes if self.configs.is_empty() => PropertyStatus::NotSearched,
                    Expect::Sometimes if statuses.clone().any(|s| s == PropertyStatus::Example) => {
                        PropertyStatus::Example
                    }
                    Expect::Sometimes => PropertyStatus::NoExample,
                };
                PropertyReport {
                    name: p.name,
                    expectation: p.expectation,
                    status,
                }
            })
            .collect()
    }

    /// The status of one property over the suite.
    pub fn status(&self, name: &str) -> Option<PropertyStatus> {
        self.properties()
            .into_iter()
            .find(|p| p.name == name)
            .map(|p| p.status)
    }

    /// Passed: complete, every Always holds and every Sometimes looked for has an example.
    pub fn passed(&self) -> bool {
        self.complete() && self.properties().iter().all(|p| p.status.is_good())
    }

    /// Whether some configuration or the simulation found a counterexample.
    pub fn violated(&self) -> bool {
        self.configs.iter().any(|c| !c.counterexamples.is_empty())
            || self
                .simulation
                .as_ref()
                .is_some_and(|s| s.finding.is_some())
    }

    /// The summary as one JSON object.
    pub fn to_json(&self) -> serde_json::Value {
        let properties: Vec<_> = self
            .properties()
            .iter()
            .map(|p| {
                serde_json::json!({
                    "name": p.name,
                    "expectation": match p.expectation {
                        Expect::Always => "always",
                        Expect::Sometimes => "sometimes",
                    },
                    "status": p.status.as_str(),
                })
            })
            .collect();
        let configs: Vec<_> = self
            .configs
            .iter()
            .map(|c| {
                serde_json::json!({
                    "name": c.config.name,
                    "config": c.config.to_string(),
                    "complete": c.complete,
                    "unique_states": c.unique_states,
                    "states": c.states,
                    "max_depth": c.max_depth,
                    "elapsed_s": round3(c.elapsed.as_secs_f64()),
                    "states_per_s": round3(c.unique_states as f64 / c.elapsed.as_secs_f64().max(1e-9)),
                    "violated": c.counterexamples.iter().map(|d| d.property).collect::<Vec<_>>(),
                    "counterexamples": c.counterexamples.iter().map(|d| serde_json::json!({
                        "property": d.property,
                        "steps": d.steps.len(),
                        "also": d.also,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        let simulation = self.simulation.as_ref().map(|s| {
            serde_json::json!({
                "seed": s.seed,
                "walks": s.walks,
                "steps": s.steps,
                "elapsed_s": round3(s.elapsed.as_secs_f64()),
                "violated": s.finding.as_ref().map(|f| f.property),
                "violating_seed": s.finding.as_ref().map(|f| f.seed),
                "violating_steps": s.finding.as_ref().map(|f| simulate::steps_of(&f.path)),
                "violating_also": s.finding.as_ref().map(|f| {
                    also_violated(&f.config.clone().into_model(), f.property, f.path.last_state())
                }),
            })
        });
        serde_json::json!({
            "simulation": simulation,
            "complete": self.complete(),
            "unique_states": self.unique_states(),
            "states": self.states(),
            "max_depth": self.max_depth(),
            "elapsed_s": round3(self.elapsed().as_secs_f64()),
            "states_per_s": round3(self.states_per_second()),
            "properties": properties,
            "configs": configs,
        })
    }

    /// The human-readable summary.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        for c in &self.configs {
            for d in &c.counterexamples {
                let _ = writeln!(
                    out,
                    "\nCounterexample to {} in [{}] ({} steps):",
                    d.property,
                    c.config.name,
                    d.steps.len()
                );
                write_path(&mut out, d, &c.config);
            }
        }
        if let Some(finding) = self.simulation.as_ref().and_then(|s| s.finding.as_ref()) {
            let discovery = describe_path(finding.property, &finding.config, &finding.path);
            let _ = writeln!(
                out,
                "\nCounterexample to {} in simulation walk {} ({} steps, shrunk from {}):",
                finding.property,
                finding.seed,
                discovery.steps.len(),
                finding.original_steps
            );
            write_path(&mut out, &discovery, &finding.config);
        }
        let _ = writeln!(out, "\nSummary");
        for c in &self.configs {
            let _ = writeln!(
                out,
                "  [{}] {} unique={} states={} depth={} {:.1}s",
                c.config.name,
                if c.complete { "complete" } else { "INCOMPLETE" },
                c.unique_states,
                c.states,
                c.max_depth,
                c.elapsed.as_secs_f64()
            );
        }
        if let Some(s) = &self.simulation {
            let _ = writeln!(
                out,
                "  [simulation] seed={} walks={} steps={} {:.1}s{}",
                s.seed,
                s.walks,
                s.steps,
                s.elapsed.as_secs_f64(),
                s.finding.as_ref().map_or(String::new(), |f| format!(
                    " violated={} at seed {}",
                    f.property, f.seed
                ))
            );
        }
        // Walks alone explore no state space to count.
        if !self.configs.is_empty() {
            let _ = writeln!(
                out,
                "  total: complete={} unique={} states={} max_depth={} elapsed={:.1}s rate={:.0} \
                 states/s",
                self.complete(),
                self.unique_states(),
                self.states(),
                self.max_depth(),
                self.elapsed().as_secs_f64(),
                self.states_per_second()
            );
        }
        // A run that stopped at its first counterexample did not look for examples.
        let stopped = self
            .configs
            .iter()
            .any(|c| c.config.stop_at_first_violation && !c.counterexamples.is_empty())
            || self
                .simulation
                .as_ref()
                .is_some_and(|s| s.finding.is_some());
        for p in self.properties() {
            let unsearched = if stopped && p.expectation == Expect::Sometimes {
                Some("stopped at the first violation")
            } else if p.status == PropertyStatus::NotSearched {
                Some("walks judge Always properties only")
            } else {
                None
            };
            if let Some(why) = unsearched {
                let _ = writeln!(out, "  -    sometimes {:<26} not searched ({why})", p.name);
                continue;
            }
            if p.status == PropertyStatus::NotJudged {
                let _ = writeln!(
                    out,
                    "  -    always    {:<26} not judged (--property names others)",
                    p.name
                );
                continue;
            }
            let mark = if p.status.is_good() { "ok  " } else { "FAIL" };
            let expectation = match p.expectation {
                Expect::Always => "always   ",
                Expect::Sometimes => "sometimes",
            };
            let _ = writeln!(
                out,
                "  {mark} {expectation} {:<26} {}",
                p.name,
                p.status.as_str()
            );
        }
        let verdict = if self.passed() { "PASS" } else { "FAIL" };
        let _ = write!(out, "{verdict}");
        out
    }
}

/// A discovery's steps, what broke (for the Peer's own properties), and the explorer link.
fn write_path(out: &mut String, d: &Discovery, config: &ModelConfig) {
    for step in &d.steps {
        let _ = writeln!(out, "  {step}");
    }
    for fault in &d.faults {
        let _ = writeln!(out, "  {fault}");
    }
    if !d.also.is_empty() {
        let _ = writeln!(out, "  the last state also violates: {}", d.also.join(", "));
    }
    let explorer = ModelConfig {
        symmetry: d.symmetric_link,
        ..config.clone()
    };
    let _ = writeln!(
        out,
        "  browse it: model explore {} then open http://127.0.0.1:3000/#/steps/{}",
        explore_flags(&explorer),
        d.encoded
    );
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The flags that reproduce a configuration (for the explorer hint).
pub fn explore_flags(c: &ModelConfig) -> String {
    let mut flags = format!(
        "--servers {} --max-term {} --client-requests {} --max-crashes {} --network {} \
         --max-in-flight {}",
        c.servers, c.max_term, c.client_requests, c.max_crashes, c.network, c.max_in_flight
    );
    if c.lossy {
        flags.push_str(" --lossy");
    }
    if let Some(batch) = c.batch {
        flags.push_str(&format!(" --batch {batch}"));
    }
    if let Some(window) = c.window {
        flags.push_str(&format!(" --window {window}"));
    }
    if !c.heartbeats {
        flags.push_str(" --no-heartbeats");
    }
    if c.pre_vote {
        flags.push_str(" --pre-vote");
    }
    if c.transfers > 0 {
        let _ = write!(flags, " --transfers {}", c.transfers);
    }
    if c.persist_steps {
        flags.push_str(" --persist-steps");
    }
    if !c.symmetry {
        flags.push_str(" --no-symmetry");
    }
    if let Some(bug) = c.bug {
        let _ = write!(flags, " --bug {bug}");
    }
    flags
}

/// Checks every configuration in turn, then runs the simulation if one is planned (and no
/// planted bug was caught already), printing progress lines to `progress` (one every
/// `interval`), and returns the report.
pub fn check(
    configs: &[ModelConfig],
    simulation: Option<&SimulationPlan>,
    threads: usize,
    interval: Duration,
    progress: &mut dyn FnMut(&str),
) -> CheckReport {
    let mut reports = Vec::new();
    for config in configs {
        let report = check_one(config, threads, interval, progress);
        // A planted bug needs one counterexample; the rest of the suite is not needed.
        let caught = config.stop_at_first_violation && !report.counterexamples.is_empty();
        reports.push(report);
        if caught {
            break;
        }
    }
    let caught = reports
        .iter()
        .any(|r| r.config.stop_at_first_violation && !r.counterexamples.is_empty());
    // What the run judged: the configurations' choice, or the walks' when there is none.
    let judged = configs
        .first()
        .map_or(simulation.and_then(|plan| plan.judged), |c| c.judged);
    let simulation = match simulation {
        Some(plan) if !caught => {
            progress(&format!(
                "simulating: seed={} walks={} max_steps={}",
                plan.seed,
                plan.walks.map_or("unbounded".into(), |w| w.to_string()),
                plan.max_steps
            ));
            Some(simulate::simulate(
                plan,
                interval,
                progress,
                Some((STEP_BUDGET, &print_walk_stall)),
            ))
        }
        _ => None,
    };
    CheckReport {
        configs: reports,
        simulation,
        judged,
    }
}

fn check_one(
    config: &ModelConfig,
    threads: usize,
    interval: Duration,
    progress: &mut dyn FnMut(&str),
) -> ConfigReport {
    progress(&format!("checking {config}"));
    let start = Instant::now();
    let model = config.clone().into_model();
    let search = Search {
        model: &model,
        symmetry: config.symmetry,
        threads,
        // A planted bug only needs its first (shortest) counterexample.
        stop_on_violation: config.stop_at_first_violation,
        max_states: None,
        interval,
        stall: Some((STEP_BUDGET, &|stall| print_stall(&model, config, stall))),
    };
    let outcome = search.run(&mut |unique, states, depth| {
        let secs = start.elapsed().as_secs_f64();
        progress(&format!(
            "  [{}] {:.0}s unique={unique} states={states} depth={depth} {:.0} states/s",
            config.name,
            secs,
            unique as f64 / secs.max(1e-9)
        ))
    });
    let elapsed = start.elapsed();
    let mut reports = Vec::new();
    let mut counterexamples = Vec::new();
    let mut examples = Vec::new();
    for (index, p) in properties::ALL.iter().enumerate() {
        let discovery = outcome.discoveries.get(p.name);
        let status = match (p.expectation, discovery.is_some()) {
            (Expect::Always, _) if !config.judges(index) => PropertyStatus::NotJudged,
            (Expect::Always, true) => PropertyStatus::Violated,
            (Expect::Always, false) => PropertyStatus::Holds,
            (Expect::Sometimes, true) => PropertyStatus::Example,
            (Expect::Sometimes, false) => PropertyStatus::NoExample,
        };
        if let Some(path) = discovery {
            let found = describe(&model, p.name, path.clone());
            match p.expectation {
                Expect::Always => counterexamples.push(found),
                Expect::Sometimes => examples.push(found),
            }
        }
        reports.push(PropertyReport {
            name: p.name,
            expectation: p.expectation,
            status,
        });
    }
    // A bug run stops at its first counterexample, by design; that stop is not incomplete.
    let complete =
        outcome.complete || (config.stop_at_first_violation && !counterexamples.is_empty());
    let report = ConfigReport {
        config: config.clone(),
        complete,
        unique_states: outcome.unique_states,
        states: outcome.states,
        max_depth: outcome.max_depth,
        elapsed,
        properties: reports,
        counterexamples,
        examples,
    };
    progress(&format!(
        "  [{}] done: unique={} states={} depth={} {:.1}s",
        config.name,
        report.unique_states,
        report.states,
        report.max_depth,
        elapsed.as_secs_f64()
    ));
    report
}

/// How long the expansion of one state (its properties and each of its steps) may take before
/// the search is declared stuck: a state takes microseconds, so only a step that loops or
/// waits forever comes near it.
pub const STEP_BUDGET: Duration = Duration::from_secs(60);

/// Prints a stuck step: the path to the state it was taken from, and which of that state's
/// steps do not return. The process then exits with status 1 (see [`Search::stall`]).
fn print_stall(model: &RaftModel, config: &ModelConfig, stall: Stall) {
    let waited = stall.waited.as_secs_f64();
    let what = if stall.judging {
        "judging the properties of the last state below did not end".to_string()
    } else if stall.actions.is_empty() {
        "a step from the last state below did not return, but every one of them returns when \
         tried again: the machine may be too busy, not the Peer stuck"
            .to_string()
    } else {
        let actions: Vec<String> = stall
            .actions
            .iter()
            .map(|a| model.format_action(a))
            .collect();
        format!(
            "from the last state below, this step does not return (tried again for as long): {}",
            actions.join("; ")
        )
    };
    let d = describe(model, "Stall", stall.path);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "STALL [{}]: a worker spent {waited:.0} s on one state; the search cannot go on.\n  {what}",
        config.name
    );
    write_path(&mut out, &d, config);
    print!("{out}");
    let _ = std::io::Write::flush(&mut std::io::stdout());
}

/// Prints a stuck step of a simulation walk, as [`print_stall`] does for the exhaustive search.
pub(super) fn print_walk_stall(config: &ModelConfig, stall: Stall) {
    print_stall(&config.clone().into_model(), config, stall);
}

/// A discovery of `config`'s model, described.
pub fn describe_path(
    property: &'static str,
    config: &ModelConfig,
    path: &Path<RaftState, RaftAction>,
) -> Discovery {
    describe(&config.clone().into_model(), property, path.clone())
}

fn describe(
    model: &RaftModel,
    property: &'static str,
    path: Path<RaftState, RaftAction>,
) -> Discovery {
    // The explorer reduces symmetry as the check does (see `symmetric`), unless it is off.
    // Should the symmetric explorer not follow the path, the link is one for the explorer
    // without symmetry reduction, which follows any path of the model.
    let symmetric = model
        .cfg
        .symmetry
        .then(|| super::symmetric::encode(model, &path))
        .flatten();
    let symmetric_link = symmetric.is_some();
    let encoded = symmetric.unwrap_or_else(|| path.encode(model));
    let last = path.last_state();
    let mut faults: Vec<String> = last
        .actor_states
        .iter()
        .enumerate()
        .filter_map(|(i, s)| {
            let server = s.server()?;
            let fault = match property {
                "OutputContract" => server.ghost.contract_broken.clone()?,
                "PeerInvariant" => match super::actor::guarded(|| properties::peer_fault(server)) {
                    Ok(fault) => fault?,
                    Err(panic) => format!("its invariant check panicked: {panic}"),
                },
                _ => return None,
            };
            Some(format!("S{i}: {fault}"))
        })
        .collect();
    if property == "PeerInvariant" && faults.is_empty() {
        // No server's own check failed: evaluating a property panicked in a Peer accessor.
        faults = properties::ALL
            .iter()
            .filter_map(|p| {
                let panic = p.holds(model, last).err()?;
                Some(format!("evaluating {} panicked: {panic}", p.name))
            })
            .collect();
    }
    let also = also_violated(model, property, last);
    // Each state is paired with the action taken from it; the next pair holds the result.
    let pairs = path.into_vec();
    let steps = pairs
        .windows(2)
        .enumerate()
        .filter_map(|(i, w)| {
            let action = w[0].1.as_ref()?;
            Some(format!(
                "{}. {}  =>  {}",
                i + 1,
                model.format_action(action),
                servers_line(&w[1].0)
            ))
        })
        .collect();
    Discovery {
        property,
        steps,
        encoded,
        symmetric_link,
        faults,
        also,
    }
}

/// For a counterexample to the Always property `property`: the other Always properties that
/// `last`, its last state, violates (whether the run judged them or not), in report order. A
/// property whose evaluation panics counts as violated. Nothing for a Sometimes property.
fn also_violated(model: &RaftModel, property: &'static str, last: &RaftState) -> Vec<&'static str> {
    if !properties::by_name(property).is_some_and(|p| p.expectation == Expect::Always) {
        return Vec::new();
    }
    properties::ALL
        .iter()
        .filter(|p| p.expectation == Expect::Always && p.name != property)
        .filter(|p| !p.holds(model, last).unwrap_or(false))
        .map(|p| p.name)
        .collect()
}

/// One line per state: every server's role, term, vote, log and commit index.
pub fn servers_line(state: &RaftState) -> String {
    let mut line = String::new();
    for (i, s) in state.actor_states.iter().enumerate() {
        let Some(server) = s.server() else { continue };
        let peer = &server.peer;
        let role = if state.crashed[i] {
            "crashed".to_string()
        } else {
            peer.role_kind().to_string()
        };
        let vote = peer.voted_for().map_or("-".into(), |v| v.to_string());
        let _ = write!(
            line,
            "{}S{i}[{role} t{} v{vote} log{:?} c{}]",
            if i == 0 { "" } else { " " },
            peer.term(),
            peer.log(),
            peer.commit_index()
        );
    }
    line
}
