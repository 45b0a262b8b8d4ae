//! Replays every scenario in `tests/scenarios/*.json` through the built
//! `xvs-schedsim` and compares its output with the hand-derived
//! `*.expected` file beside it (see `tests/scenarios/README.md` for how
//! each expectation follows from the kernel's rules).

#![expect(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] functions: a failure should panic"
)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn schedsim() -> Command {
    Command::new(env!("CARGO_BIN_EXE_xvs-schedsim"))
}

fn scenarios_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios")
}

#[test]
fn every_scenario_matches_its_hand_derived_expectation() {
    let mut scenarios: Vec<PathBuf> = std::fs::read_dir(scenarios_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    scenarios.sort();
    assert!(
        scenarios.len() >= 17,
        "scenarios missing: found {}",
        scenarios.len()
    );
    let mut failures = Vec::new();
    for scenario in &scenarios {
        let expected_path = scenario.with_extension("expected");
        let expected = std::fs::read_to_string(&expected_path)
            .unwrap_or_else(|e| panic!("{}: {e}", expected_path.display()));
        let out = schedsim().arg(scenario).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            failures.push(format!(
                "{}: exit {:?}: {}",
                scenario.display(),
                out.status.code(),
                String::from_utf8_lossy(&out.stderr)
            ));
        } else if stdout != expected {
            failures.push(format!(
                "{}:\n  got      {:?}\n  expected {:?}",
                scenario.display(),
                stdout.split_whitespace().collect::<Vec<_>>(),
                expected.split_whitespace().collect::<Vec<_>>()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn run_text(text: &str) -> (Option<i32>, String, String) {
    let dir = std::env::temp_dir().join(format!("xvs-schedsim-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("s{}.json", text.len()));
    std::fs::write(&path, text).unwrap();
    let out = schedsim().arg(&path).output().unwrap();
    let _ = std::fs::remove_file(&path);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn malformed_scenario_exits_2_naming_the_event_index_and_field() {
    let (code, stdout, stderr) = run_text(
        r#"{"scheduler": "rr",
            "servers": [{"addr": "10.0.0.1", "port": 80, "weight": 1}],
            "events": [
              {"op": "new", "client": "198.51.100.1", "cport": 1000},
              {"op": "tick", "seconds": 5},
              {"op": "end", "conn": "zero"}
            ]}"#,
    );
    assert_eq!(code, Some(2), "stderr: {stderr}");
    assert!(stdout.is_empty(), "nothing printed on error: {stdout:?}");
    assert!(stderr.contains("event 2"), "{stderr}");
    assert!(stderr.contains("\"conn\""), "{stderr}");

    let (code, _, stderr) = run_text(
        r#"{"scheduler": "rr", "servers": [],
            "events": [{"op": "weight", "server": 4, "weight": 1}]}"#,
    );
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("event 0 (weight)") && stderr.contains("\"server\""),
        "{stderr}"
    );

    let (code, _, stderr) = run_text(r#"{"scheduler": "nope", "servers": [], "events": []}"#);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("\"scheduler\"") && stderr.contains("nope"),
        "{stderr}"
    );

    let (code, _, stderr) = run_text("{not json");
    assert_eq!(code, Some(2));
    assert!(stderr.contains("not valid JSON"), "{stderr}");
}

#[test]
fn help_documents_the_scenario_format() {
    let out = schedsim().arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for word in [
        "SCENARIO FORMAT",
        "\"op\":\"new\"",
        "tick",
        "sched_flags",
        "exit status 2",
    ] {
        assert!(text.contains(word), "--help lacks {word:?}");
    }
}
