//! `model`: the checker's command line. See README.md, "Checking the model".

use clap::{Args, Parser, Subcommand};
use model::bugs::Bug;
use model::checker::simulate::SimulationPlan;
use model::checker::{check, ModelConfig, NetworkKind};
use stateright::Model;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

// The checker allocates and frees a state per transition; mimalloc makes that markedly cheaper.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exhaustively checks rdb's Raft Peer with stateright.
///
/// With no subcommand it runs `check` on the default suite of configurations.
#[derive(Parser, Debug)]
#[command(name = "model", version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    check: CheckArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Explore every reachable state and check every property (the default).
    Check(CheckArgs),
    /// Serve stateright's web explorer for one configuration.
    Explore(ExploreArgs),
    /// List the planted bugs, one per line: NAME, the property the default check reports
    /// first, what goes wrong, and the published report it is taken from.
    Bugs,
    /// Seeded random walks through large configurations (up to five servers, many terms,
    /// crashes, loss, duplication), checking every Always property at every step.
    Simulate(SimulateArgs),
    /// Write traces (JSON Lines) for conformance replay and TLA+ trace validation: seeded
    /// random walks, one per Sometimes example, one per planted bug's counterexample.
    Traces(TracesArgs),
}

/// The model's dimensions. Giving any of them checks that one configuration instead of the
/// default suite; unset dimensions take the defaults shown.
#[derive(Args, Debug, Clone, Default)]
struct Dimensions {
    /// Number of servers, 1 to 5 [default: 3].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=5))]
    servers: Option<u64>,
    /// Highest term any server may reach, at least 1 [default: 2].
    #[arg(long, value_name = "T", value_parser = clap::value_parser!(u64).range(1..))]
    max_term: Option<u64>,
    /// Number of client requests (each a distinct value), 0 to 8 [default: 1].
    #[arg(long, value_name = "R", value_parser = clap::value_parser!(u64).range(0..=8))]
    client_requests: Option<u64>,
    /// How many servers may be crashed at once; a crashed server recovers from its Durable
    /// state [default: 0].
    #[arg(long, value_name = "C", value_parser = clap::value_parser!(u64).range(0..=5))]
    max_crashes: Option<u64>,
    /// Network semantics: unordered, duplicating or ordered [default: unordered].
    #[arg(long, value_name = "KIND", value_parser = parse_network)]
    network: Option<NetworkKind>,
    /// Let the network lose messages.
    #[arg(long)]
    lossy: bool,
    /// At most this many messages in flight, at least 1 [default: 3].
    #[arg(long, value_name = "M", value_parser = clap::value_parser!(u64).range(1..=64))]
    max_in_flight: Option<u64>,
    /// Never fire leaders' heartbeat timers (replication still happens on proposals).
    #[arg(long)]
    no_heartbeats: bool,
    /// Flow control: at most this many entries in one AppendEntries, at least 1
    /// [default: no cap].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=64))]
    batch: Option<u64>,
    /// Flow control: at most this many AppendEntries with entries in flight to one follower,
    /// at least 1 [default: no cap].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=64))]
    window: Option<u64>,
    /// Pre-vote and leader stickiness (§9.6) on every server.
    #[arg(long)]
    pre_vote: bool,
    /// Operators who each ask a server of their choice, once, to take over leadership
    /// (leadership transfer, §3.10), at most 2 [default: 0].
    #[arg(long, value_name = "T", value_parser = clap::value_parser!(u64).range(0..=2))]
    transfers: Option<u64>,
    /// Persistence as a step of its own: a step's writes reach storage later, entry by entry,
    /// and a crash in between loses what was not written (needs an unordered network).
    #[arg(long)]
    persist_steps: bool,
    /// Turn symmetry reduction off (explore with BFS, every permutation of server ids).
    #[arg(long)]
    no_symmetry: bool,
}

impl Dimensions {
    fn any(&self) -> bool {
        self.servers.is_some()
            || self.max_term.is_some()
            || self.client_requests.is_some()
            || self.max_crashes.is_some()
            || self.network.is_some()
            || self.lossy
            || self.max_in_flight.is_some()
            || self.no_symmetry
            || self.no_heartbeats
            || self.batch.is_some()
            || self.window.is_some()
            || self.pre_vote
            || self.transfers.is_some()
            || self.persist_steps
    }

    fn apply(&self, mut config: ModelConfig) -> ModelConfig {
        if let Some(servers) = self.servers {
            config.servers = servers as usize;
        }
        if let Some(max_term) = self.max_term {
            config.max_term = max_term;
        }
        if let Some(requests) = self.client_requests {
            config.client_requests = requests as usize;
        }
        if let Some(crashes) = self.max_crashes {
            config.max_crashes = crashes as usize;
        }
        if let Some(network) = self.network {
            config.network = network;
        }
        config.lossy |= self.lossy;
        if let Some(max) = self.max_in_flight {
            config.max_in_flight = max as usize;
        }
        if self.no_heartbeats {
            config.heartbeats = false;
        }
        if let Some(batch) = self.batch {
            config.batch = Some(batch);
        }
        if let Some(window) = self.window {
            config.window = Some(window as usize);
        }
        config.pre_vote |= self.pre_vote;
        if let Some(transfers) = self.transfers {
            config.transfers = transfers as usize;
        }
        if self.no_symmetry {
            config.symmetry = false;
        }
        config.persist_steps |= self.persist_steps;
        config
    }
}

#[derive(Args, Debug, Clone, Default)]
struct CheckArgs {
    #[command(flatten)]
    dimensions: Dimensions,
    /// Plant a bug from the catalogue (see `model bugs`).
    #[arg(long, value_name = "NAME", value_parser = parse_bug)]
    bug: Option<Bug>,
    /// Judge only this Always property (repeat the flag for several); the others are not
    /// evaluated, so the search goes on past their violations [default: every one].
    #[arg(long = "property", value_name = "NAME")]
    properties: Vec<String>,
    /// Checker threads [default: the number of cores].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=256))]
    threads: Option<u64>,
    /// Also print the summary as one JSON object on the last line of stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct SimulateArgs {
    /// Seed of the first walk; walk i uses seed S + i and draws its configuration from it.
    #[arg(long, value_name = "S", default_value_t = 1)]
    seed: u64,
    /// Walk for this many seconds [default: 30 unless --walks is given].
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=86_400))]
    seconds: Option<u64>,
    /// Stop after this many walks.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    walks: Option<u64>,
    /// At most this many steps per walk.
    #[arg(long, value_name = "STEPS", default_value_t = 250, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    max_steps: u64,
    /// Plant a bug from the catalogue (see `model bugs`).
    #[arg(long, value_name = "NAME", value_parser = parse_bug)]
    bug: Option<Bug>,
    /// Judge only this Always property (repeat the flag for several) [default: every one].
    #[arg(long = "property", value_name = "NAME")]
    properties: Vec<String>,
    /// Worker threads [default: the number of cores].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=256))]
    threads: Option<u64>,
    /// Also print the summary as one JSON object on the last line of stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct ExploreArgs {
    /// Address to serve on (keep it on loopback).
    #[arg(long, default_value = "127.0.0.1:3000")]
    addr: SocketAddr,
    #[command(flatten)]
    dimensions: Dimensions,
    /// Plant a bug from the catalogue (see `model bugs`).
    #[arg(long, value_name = "NAME", value_parser = parse_bug)]
    bug: Option<Bug>,
}

fn parse_network(name: &str) -> Result<NetworkKind, String> {
    name.parse()
}

fn parse_bug(name: &str) -> Result<Bug, String> {
    name.parse()
}

/// The configurations a check or explore runs: one configuration when a dimension or a bug is
#[derive(Args, Debug)]
struct TracesArgs {
    /// Directory to write the trace files into (created if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Number of random walks.
    #[arg(long, value_name = "N", default_value_t = 500)]
    count: usize,
    /// Seed of the first walk; walk i uses seed S + i.
    #[arg(long, value_name = "S", default_value_t = 1)]
    seed: u64,
    /// At most this many steps per walk.
    #[arg(long, value_name = "STEPS", default_value_t = 40, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    max_steps: u64,
    /// Skip the Sometimes examples (their search takes the longest).
    #[arg(long)]
    no_examples: bool,
    /// Skip the planted bugs' counterexamples.
    #[arg(long)]
    no_counterexamples: bool,
    /// Walk this one configuration instead of the four walk configurations.
    #[command(flatten)]
    dimensions: Dimensions,
}

/// given, the default suite otherwise.
fn configurations(dimensions: &Dimensions, bug: Option<Bug>) -> Vec<ModelConfig> {
    match (dimensions.any(), bug) {
        (false, None) => ModelConfig::default_suite(),
        (false, Some(bug)) => ModelConfig::bug_suite(bug),
        (true, bug) => {
            let mut config = dimensions.apply(ModelConfig::default());
            config.name = match bug {
                Some(bug) => format!("bug {bug}"),
                None => "custom".into(),
            };
            config.bug = bug;
            config.stop_at_first_violation = bug.is_some();
            vec![config]
        }
    }
}

fn usage_error(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(2)
}

/// The mask of `--property` names (`None` when none is given: every property is judged).
fn judged(names: &[String]) -> Result<Option<u32>, String> {
    if names.is_empty() {
        return Ok(None);
    }
    model::checker::properties::always_mask(names).map(Some)
}

fn run_check(args: CheckArgs) -> ExitCode {
    let judged = match judged(&args.properties) {
        Ok(judged) => judged,
        Err(why) => return usage_error(&why),
    };
    let mut configs = configurations(&args.dimensions, args.bug);
    for config in &mut configs {
        if let Err(why) = config.validate() {
            return usage_error(&why);
        }
        config.judged = judged;
    }
    let threads = threads(args.threads);
    // The default suite ends with a fixed-seed simulation budget; a chosen configuration is
    // checked on its own.
    let simulation = (!args.dimensions.any()).then(|| SimulationPlan {
        judged,
        ..SimulationPlan::default_budget(args.bug, threads)
    });
    let report = check(
        &configs,
        simulation.as_ref(),
        threads,
        Duration::from_secs(5),
        &mut |line| eprintln!("{line}"),
    );
    println!("{}", report.summary());
    if args.json {
        println!("{}", report.to_json());
    }
    if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn threads(chosen: Option<u64>) -> usize {
    chosen.map_or_else(
        || std::thread::available_parallelism().map_or(1, |n| n.get()),
        |n| n as usize,
    )
}

fn run_simulate(args: SimulateArgs) -> ExitCode {
    let judged = match judged(&args.properties) {
        Ok(judged) => judged,
        Err(why) => return usage_error(&why),
    };
    let plan = SimulationPlan {
        judged,
        seed: args.seed,
        walks: args.walks.map(|w| w as usize),
        time: match (args.seconds, args.walks) {
            (Some(secs), _) => Some(Duration::from_secs(secs)),
            (None, Some(_)) => None,
            (None, None) => Some(Duration::from_secs(30)),
        },
        max_steps: args.max_steps as usize,
        bug: args.bug,
        threads: threads(args.threads),
        persist_steps: true,
    };
    println!(
        "simulating from seed {} ({} steps per walk at most{})",
        plan.seed,
        plan.max_steps,
        plan.bug.map_or(String::new(), |b| format!(", bug {b}"))
    );
    let report = check(
        &[],
        Some(&plan),
        plan.threads,
        Duration::from_secs(5),
        &mut |line| eprintln!("{line}"),
    );
    println!("{}", report.summary());
    if args.json {
        println!("{}", report.to_json());
    }
    if report.violated() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn run_explore(args: ExploreArgs) -> ExitCode {
    let mut configs = configurations(&args.dimensions, args.bug);
    // The explorer shows one configuration: the first of the suite unless one was chosen.
    let config = configs.remove(0);
    if let Err(why) = config.validate() {
        return usage_error(&why);
    }
    // The explorer panics when it cannot listen; find out first and say so in one line.
    if let Err(error) = std::net::TcpListener::bind(args.addr) {
        eprintln!(
            "error: cannot listen on {}: {error} (is another explorer running? choose another \
             port with --addr)",
            args.addr
        );
        return ExitCode::from(2);
    }
    println!("Exploring [{config}]");
    println!("Open http://{}/ (Ctrl-C to stop)", args.addr);
    if config.symmetry {
        model::checker::symmetric::Symmetric(config.into_model())
            .checker()
            .serve(args.addr);
    } else {
        config.into_model().checker().serve(args.addr);
    }
    ExitCode::SUCCESS
}

fn run_traces(args: TracesArgs) -> ExitCode {
    use model::checker::trace;
    let walk_configs = if args.dimensions.any() {
        let mut config = args.dimensions.apply(trace::walk_configs().remove(0));
        config.name = "walk-custom".into();
        config.symmetry = false;
        vec![config]
    } else {
        trace::walk_configs()
    };
    for config in &walk_configs {
        if let Err(why) = config.validate() {
            return usage_error(&why);
        }
    }
    if let Err(error) = std::fs::create_dir_all(&args.out) {
        eprintln!("error: creating {}: {error}", args.out.display());
        return ExitCode::from(2);
    }
    let mut traces = Vec::new();
    eprintln!(
        "writing {} random walks from seed {}",
        args.count, args.seed
    );
    for i in 0..args.count {
        let seed = args.seed.wrapping_add(i as u64);
        let config = &walk_configs[i % walk_configs.len()];
        let name = format!("walk-{seed:06}");
        traces.push(trace::random_walk(
            config,
            seed,
            args.max_steps as usize,
            name,
        ));
    }
    if !args.no_examples {
        traces.extend(trace::examples(&mut |line| eprintln!("{line}")));
    }
    if !args.no_counterexamples {
        for bug in Bug::traced() {
            eprintln!("searching for the counterexample of {bug}");
            match trace::counterexample(bug) {
                Some(found) => traces.push(found),
                None => eprintln!("warning: no counterexample found for {bug}"),
            }
        }
    }
    let mut steps = 0;
    for found in &traces {
        steps += found.steps.len();
        let path = args.out.join(format!("{}.jsonl", found.header.name));
        if let Err(error) = std::fs::write(&path, found.to_jsonl()) {
            eprintln!("error: writing {}: {error}", path.display());
            return ExitCode::from(1);
        }
    }
    let crash_traces = traces.iter().filter(|t| t.has_crash()).count();
    println!(
        "traces: files={} steps={steps} crash_traces={crash_traces} out={}",
        traces.len(),
        args.out.display()
    );
    ExitCode::SUCCESS
}

/// mimalloc's `mi_option_purge_delay` (mimalloc.h, v2 and v3 alike: the option after
/// `mi_option_eager_commit_delay`, 14 in `libmimalloc_sys`).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

fn main() -> ExitCode {
    // A breadth-first search frees a whole level of states and then allocates the next one:
    // keeping freed memory instead of returning it to the system spares the page faults of
    // taking it back (a sixth of the default check's time).
    // SAFETY: sets a plain integer option of the allocator; any value is valid for it.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    let cli = Cli::parse();
    match cli.command {
        None => run_check(cli.check),
        Some(Command::Check(args)) => run_check(args),
        Some(Command::Explore(args)) => run_explore(args),
        Some(Command::Traces(args)) => run_traces(args),
        Some(Command::Simulate(args)) => run_simulate(args),
        Some(Command::Bugs) => {
            let width = Bug::ALL.iter().map(|b| b.name().len()).max().unwrap_or(0);
            for bug in Bug::ALL {
                println!(
                    "{:<width$} {:<24} {} ({})",
                    bug.name(),
                    bug.expected_violation(),
                    bug.description(),
                    bug.source()
                );
            }
            ExitCode::SUCCESS
        }
    }
}
