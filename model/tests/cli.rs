//! The checker's command line: exit codes, the JSON summary, the bug list and the explorer.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn model(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_model"))
        .args(args)
        .output()
        .expect("run the model binary")
}

fn last_json_line(output: &Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last = stdout.lines().last().expect("stdout has lines");
    serde_json::from_str(last).unwrap_or_else(|e| panic!("last line is not JSON ({e}): {last}"))
}

#[test]
fn bad_flags_exit_2_with_a_clear_error() {
    for (args, needle) in [
        (vec!["check", "--no-such-flag"], "--no-such-flag"),
        (vec!["check", "--servers", "0"], "--servers"),
        (vec!["check", "--max-term", "0"], "--max-term"),
        (
            vec!["check", "--bug", "no-such-bug"],
            "unknown bug `no-such-bug`",
        ),
        (
            vec!["check", "--network", "carrier-pigeon"],
            "unknown network",
        ),
        (
            vec!["check", "--servers", "3", "--max-crashes", "4"],
            "--max-crashes",
        ),
        (
            vec!["check", "--persist-steps", "--network", "ordered"],
            "--persist-steps needs an unordered network",
        ),
        (
            vec!["check", "--property", "NoSuchProperty"],
            "unknown property `NoSuchProperty`; the Always properties are: ElectionSafety",
        ),
        (
            vec!["check", "--property", "LeaderElected"],
            "LeaderElected is a Sometimes property",
        ),
        (
            vec!["simulate", "--property", "Nope"],
            "unknown property `Nope`",
        ),
    ] {
        let output = model(&args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}

#[test]
fn bugs_lists_one_name_per_line() {
    let output = model(&["bugs"]);
    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    let names: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let expected: Vec<&str> = model::bugs::Bug::ALL.iter().map(|b| b.name()).collect();
    assert_eq!(names, expected);
}

#[test]
fn check_json_summary_has_every_key_and_property() {
    let output = model(&[
        "check",
        "--servers",
        "3",
        "--max-term",
        "1",
        "--max-in-flight",
        "3",
        "--json",
    ]);
    assert_eq!(
        output.status.code(),
        Some(1),
        "some Sometimes targets need more bounds"
    );
    let json = last_json_line(&output);
    for key in [
        "complete",
        "unique_states",
        "states",
        "max_depth",
        "elapsed_s",
        "states_per_s",
        "properties",
    ] {
        assert!(json.get(key).is_some(), "missing {key}: {json}");
    }
    assert_eq!(json["complete"], true);
    let properties = json["properties"].as_array().unwrap();
    assert_eq!(properties.len(), model::checker::properties::ALL.len());
    let status = |name: &str| {
        properties
            .iter()
            .find(|p| p["name"] == name)
            .map(|p| p["status"].as_str().unwrap().to_string())
    };
    assert_eq!(status("ElectionSafety").as_deref(), Some("holds"));
    assert_eq!(status("EntryCommitted").as_deref(), Some("example"));
    assert_eq!(
        status("FollowerTruncatesConflict").as_deref(),
        Some("no_example")
    );
}

#[test]
fn a_planted_bug_exits_1_with_its_counterexample() {
    let output = model(&["check", "--bug", "double-vote", "--json"]);
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("Counterexample to ElectionSafety"),
        "{stdout}"
    );
    assert!(stdout.contains("Timeout"), "actions are printed: {stdout}");
    let json = last_json_line(&output);
    let violated = json["properties"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["name"] == "ElectionSafety" && p["status"] == "violated");
    assert!(violated, "{json}");
}

/// `--property` judges the named Always property alone: the search runs on past the shorter
/// violations of the others (not evaluated, reported as not judged) to the named one's own
/// counterexample, and the report says which other properties its last state breaks too.
#[test]
fn a_property_judged_alone_is_searched_past_the_others() {
    let config = [
        "check",
        "--servers",
        "3",
        "--max-term",
        "2",
        "--max-in-flight",
        "3",
        "--bug",
        "vote-without-log-check",
        "--json",
    ];
    let every = model(&config);
    assert_eq!(every.status.code(), Some(1));
    let every = last_json_line(&every);
    let alone = model(&[&config[..], &["--property", "StateMachineSafety"]].concat());
    assert_eq!(alone.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&alone.stdout);
    assert!(
        stdout.contains("Counterexample to StateMachineSafety"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("Counterexample to LeaderCompleteness"),
        "{stdout}"
    );
    assert!(
        stdout.contains("LeaderCompleteness         not judged"),
        "{stdout}"
    );
    let alone = last_json_line(&alone);
    let status = |json: &serde_json::Value, name: &str| {
        json["properties"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .map(|p| p["status"].as_str().unwrap().to_string())
            .unwrap()
    };
    assert_eq!(status(&every, "LeaderCompleteness"), "violated");
    assert_eq!(status(&alone, "LeaderCompleteness"), "not_judged");
    assert_eq!(status(&alone, "StateMachineSafety"), "violated");
    let first = |json: &serde_json::Value| json["configs"][0]["counterexamples"][0].clone();
    let (shortest, own) = (first(&every), first(&alone));
    assert_eq!(shortest["property"], "LeaderCompleteness");
    assert_eq!(own["property"], "StateMachineSafety");
    assert!(
        own["steps"].as_u64() > shortest["steps"].as_u64(),
        "{own} after {shortest}"
    );
    // Two servers that commit different entries leave one of them on a minority.
    let also: Vec<&str> = own["also"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert!(also.contains(&"NoCommitOnMinority"), "{also:?}");
}

/// A counterexample found without symmetry reduction links to the explorer started without
/// it, whose action indices the link follows.
#[test]
fn a_counterexample_without_symmetry_links_to_the_explorer_without_it() {
    let output = model(&["check", "--bug", "vote-without-log-check", "--no-symmetry"]);
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let hint = stdout
        .lines()
        .find(|l| l.contains("browse it: model explore"))
        .unwrap_or_else(|| panic!("no explorer hint: {stdout}"));
    assert!(hint.contains(" --no-symmetry "), "{hint}");
    let with = model(&[
        "check",
        "--bug",
        "vote-without-log-check",
        "--max-in-flight",
        "3",
    ]);
    let stdout = String::from_utf8_lossy(&with.stdout);
    let hint = stdout
        .lines()
        .find(|l| l.contains("browse it: model explore"))
        .unwrap_or_else(|| panic!("no explorer hint: {stdout}"));
    assert!(!hint.contains("--no-symmetry"), "{hint}");
}

fn http_get(addr: &str, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    Some(response)
}

#[test]
fn explore_serves_the_page_and_status() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_model"))
        .args(["explore", "--addr", &addr, "--max-term", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let page = loop {
        if let Some(page) = http_get(&addr, "/") {
            break page;
        }
        assert!(Instant::now() < deadline, "explorer did not start");
        std::thread::sleep(Duration::from_millis(100));
    };
    let status = http_get(&addr, "/.status").expect("status answers");
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        page.starts_with("HTTP/1.1 200") || page.starts_with("HTTP/1.0 200"),
        "{page:.200}"
    );
    assert!(page.contains("<html"), "{page:.200}");
    assert!(status.contains("unique_state_count"), "{status:.300}");
}

#[test]
fn traces_are_byte_identical_for_the_same_seed_and_flags() {
    let dir = std::env::temp_dir().join(format!("rdb-traces-{}", std::process::id()));
    let run = |out: &std::path::Path, seed: &str| {
        let output = model(&[
            "traces",
            "--out",
            out.to_str().expect("utf-8 path"),
            "--count",
            "12",
            "--seed",
            seed,
            "--no-examples",
            "--no-counterexamples",
        ]);
        assert!(output.status.success(), "{output:?}");
        let stdout = String::from_utf8_lossy(&output.stdout).to_string();
        assert!(stdout.starts_with("traces: files=12 steps="), "{stdout}");
        let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(out)
            .expect("out dir")
            .map(|entry| {
                let path = entry.expect("entry").path();
                let name = path.file_name().unwrap().to_string_lossy().to_string();
                (name, std::fs::read(&path).expect("read trace"))
            })
            .collect();
        files.sort();
        files
    };
    let first = run(&dir.join("a"), "5");
    let second = run(&dir.join("b"), "5");
    let other = run(&dir.join("c"), "6");
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(first.len(), 12);
    assert_eq!(first, second, "same seed, same flags: same bytes");
    assert_ne!(first, other, "another seed gives other walks");
    let header = String::from_utf8_lossy(&first[0].1)
        .lines()
        .next()
        .unwrap()
        .to_string();
    assert!(
        header.contains(r#""kind":"header","version":1"#),
        "{header}"
    );
}

#[test]
fn traces_refuse_bad_flags() {
    let output = model(&["traces", "--out", "/tmp/x", "--servers", "9"]);
    assert_eq!(output.status.code(), Some(2));
    let output = model(&["traces"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--out"));
}

#[test]
fn explore_on_a_busy_port_is_a_one_line_error() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let output = model(&["explore", "--addr", &addr, "--max-term", "1"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.starts_with(&format!("error: cannot listen on {addr}")),
        "{stderr}"
    );
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// The simulation finds a planted bug that no exhaustive configuration of the default suite
/// reaches (`vote-not-persisted` needs a crash while four messages are in flight), prints the
/// seed of the walk that found it, and shrinks the path before printing it.
#[test]
fn simulate_finds_a_bug_beyond_the_exhaustive_bounds_and_shrinks_it() {
    let output = model(&[
        "simulate",
        "--walks",
        "5000",
        "--seed",
        "1",
        "--bug",
        "vote-not-persisted",
        "--json",
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.starts_with("simulating from seed 1"), "{stdout}");
    let json = last_json_line(&output);
    let simulation = &json["simulation"];
    assert_eq!(simulation["violated"], "ElectionSafety", "{json}");
    assert!(simulation["walks"].as_u64().unwrap() >= 1);
    let header = stdout
        .lines()
        .find(|l| l.starts_with("Counterexample to ElectionSafety in simulation walk"))
        .unwrap_or_else(|| panic!("no counterexample header: {stdout}"));
    // "... (N steps, shrunk from M):"
    let numbers: Vec<usize> = header
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    let (steps, original) = (numbers[numbers.len() - 2], numbers[numbers.len() - 1]);
    assert!(steps <= original, "{header}");
    assert_eq!(simulation["violating_steps"].as_u64(), Some(steps as u64));
    assert!(simulation["violating_also"].is_array(), "{json}");
    assert!(stdout.contains("browse it: model explore"), "{stdout}");
}

/// Walks alone judge the Always properties: a clean simulation passes (exit 0), says which
/// Sometimes properties it did not look for instead of failing them, and prints no state count
/// it did not make.
#[test]
fn a_clean_simulation_passes_and_does_not_fail_what_it_never_looked_for() {
    let output = model(&["simulate", "--walks", "300", "--seed", "1", "--json"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(!stdout.contains("FAIL"), "{stdout}");
    assert!(!stdout.contains("total: complete"), "{stdout}");
    assert!(
        stdout.contains("EntryCommitted             not searched"),
        "{stdout}"
    );
    let verdict = stdout
        .lines()
        .rev()
        .nth(1)
        .expect("a verdict before the JSON");
    assert_eq!(verdict, "PASS", "{stdout}");
    let json = last_json_line(&output);
    assert_eq!(json["simulation"]["walks"], 300, "{json}");
    for property in json["properties"].as_array().unwrap() {
        let expected = match property["expectation"].as_str().unwrap() {
            "always" => "holds",
            _ => "not_searched",
        };
        assert_eq!(property["status"], expected, "{property}");
    }
}
