//! Builds the real server's XDP decapsulation program (`xdp/decap.bpf.c`)
//! with clang so that the binary embeds the object it attaches.
//!
//! Without clang the build still succeeds, with a warning, and embeds an
//! empty object: DR set-up and kernel-tunnel decapsulation work without
//! it, and `--decap xdp` says what is missing instead of the whole crate
//! failing to build on a machine that never needs XDP.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let source = "xdp/decap.bpf.c";
    println!("cargo:rerun-if-changed={source}");
    println!("cargo:rerun-if-env-changed=CLANG");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default()).join("decap.bpf.o");
    let clang = std::env::var("CLANG").unwrap_or_else(|_| "clang".to_owned());
    let status = Command::new(&clang)
        .args([
            "-O2", "-g", "-target", "bpf", "-Wall", "-Werror", "-c", source, "-o",
        ])
        .arg(&out)
        .status();
    let failure = match status {
        Ok(s) if s.success() => return,
        Ok(s) => format!("{clang} failed to compile {source} ({s})"),
        Err(e) => format!("cannot run {clang} ({e}); install clang or set CLANG to its path"),
    };
    println!("cargo:warning={failure}: xvs-agent is built without its XDP decapsulation program");
    if let Err(e) = std::fs::write(&out, []) {
        panic!("cannot write {}: {e}", out.display());
    }
}
