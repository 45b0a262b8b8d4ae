//! Builds the director's XDP program (`xdp/xvs_redirect.bpf.c`) with clang
//! so that the binary embeds the object it loads: the program and the
//! code that fills its maps never disagree.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let source = "xdp/xvs_redirect.bpf.c";
    println!("cargo:rerun-if-changed={source}");
    println!("cargo:rerun-if-env-changed=CLANG");
    let out =
        PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default()).join("xvs_redirect.bpf.o");
    let clang = std::env::var("CLANG").unwrap_or_else(|_| "clang".to_owned());
    let status = Command::new(&clang)
        .args([
            "-O2", "-g", "-target", "bpf", "-Wall", "-Werror", "-c", source, "-o",
        ])
        .arg(&out)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!("{clang} failed to compile {source} ({s})"),
        Err(e) => panic!(
            "cannot run {clang} to build the XDP program {source}: {e}. Install clang \
             (testbed/test.sh does: apt-get install clang), or set CLANG to its path."
        ),
    }
}
