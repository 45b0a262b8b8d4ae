//! When a root-only test may skip, and the one way it does.
//!
//! A test may skip only when this machine lacks what it needs: root, a
//! kernel feature (network namespaces), a tool (`ip`, `nft`, `python3`…).
//! Once these checks pass, anything that goes wrong — a namespace that
//! cannot be made, an nftables ruleset refused — is the code under test or
//! the test, and fails the test: it is never a skip.
//!
//! With `XVS_REQUIRE_ALL=1` (`testbed/test.sh` exports it) a skip fails
//! too, so that a run that says "every test passed" has run every test.
//!
//! The one copy of this file serves the director's, the agent's and the
//! tools' tests (`#[path]` includes it in the other crates).
#![allow(
    dead_code,
    reason = "each test binary that includes this file uses its own part of it"
)]

use std::path::Path;

/// The variable that turns every skip into a failure.
pub const REQUIRE_ALL: &str = "XVS_REQUIRE_ALL";

/// `test` cannot run because it needs `need`, which this machine lacks:
/// says so and returns `false` (the caller returns), or fails the test
/// when `XVS_REQUIRE_ALL=1`.
pub fn skip(test: &str, need: &str) -> bool {
    if std::env::var_os(REQUIRE_ALL).is_some_and(|v| v == "1") {
        panic!(
            "{test} cannot run: it needs {need}, and {REQUIRE_ALL}=1 forbids skipping \
             (provide it, or unset {REQUIRE_ALL} to let the test skip)"
        );
    }
    eprintln!("SKIP {test}: it needs {need}");
    false
}

/// True when `test` can run: root, network namespaces when `netns`, and
/// every program of `tools` on `PATH`; otherwise [`skip`]s.
pub fn can_run(test: &str, netns: bool, tools: &[&str]) -> bool {
    if !nix::unistd::geteuid().is_root() {
        return skip(test, "root (it changes the network: run it as root)");
    }
    if netns && !Path::new("/proc/self/ns/net").exists() {
        return skip(test, "network namespaces (a kernel with CONFIG_NET_NS)");
    }
    for tool in tools {
        if !on_path(tool) {
            return skip(test, &format!("`{tool}` on PATH (install it)"));
        }
    }
    true
}

/// True when an executable file named `program` is in a directory of `PATH`.
pub fn on_path(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let Some(path) = std::env::var_os("PATH") else {
        return false;
    };
    std::env::split_paths(&path).any(|dir| {
        std::fs::metadata(dir.join(program))
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}
