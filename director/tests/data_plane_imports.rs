//! Dependencies run one way (issue 14): the data plane — the pipeline, the
//! connection table and the I/O backends — imports none of the control
//! plane's parts (config, control, health checks, the worker loop, the
//! daemon, the HA election, the state sync). What both planes speak lives in the leaf module
//! `xvs_director::types`; snapshots are built by the control plane and
//! only read by the data plane.
//!
//! The compiler cannot say this for modules of one crate, so this test
//! reads the sources: every non-comment line of
//! `director/src/{pipeline,conn,io}/**/*.rs` outside the test modules
//! (`#[cfg(test)] mod …` and the files they name) that names one of those
//! modules through `crate::` fails it, with the file and the line. The
//! leaf module itself (`src/types/`) names nothing of the crate at all.

use std::path::{Path, PathBuf};

/// The data plane's module folders under `src/`.
const DATA_PLANE: &[&str] = &["pipeline", "conn", "io"];

/// The control plane's modules, which the data plane must not name.
const CONTROL_PLANE: &[&str] = &["config", "control", "health", "run", "daemon", "ha", "sync"];

/// Lines that may name the control plane, each with its reason. Keep this
/// empty unless a type is on its way out of the control plane.
const ALLOWED: &[(&str, &str, &str)] = &[];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
}

/// The modules a file declares under `#[cfg(test)]` (`#[cfg(test)] mod
/// tests;`), whose files are test code.
fn test_modules(text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    lines
        .windows(2)
        .filter(|w| w[0] == "#[cfg(test)]")
        .filter_map(|w| w[1].strip_prefix("mod ")?.strip_suffix(';'))
        .map(str::to_owned)
        .collect()
}

/// Whether `line` names `crate::<module>` for one of the control plane's
/// modules, directly (`crate::config::X`) or in a group (`crate::{config, …}`).
fn names_control_plane(line: &str) -> Option<&'static str> {
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    for module in CONTROL_PLANE {
        let direct = format!("crate::{module}");
        for (at, _) in line.match_indices(&direct) {
            let after = line[at + direct.len()..].chars().next();
            if !after.is_some_and(is_ident) {
                return Some(module);
            }
        }
        if let Some(at) = line.find("crate::{") {
            let group = &line[at..];
            let group = &group[..group.find('}').unwrap_or(group.len())];
            if group
                .split(|c: char| !is_ident(c))
                .any(|word| word == *module)
            {
                return Some(module);
            }
        }
    }
    None
}

/// The lines of the non-test code in `dirs` (folders under `src`) that
/// `offends` names something for, as `src/file:line: text (what)`; a line
/// in [`ALLOWED`] is left out.
fn offences(src: &Path, dirs: &[&str], offends: fn(&str) -> Option<&'static str>) -> Vec<String> {
    let mut files = Vec::new();
    for dir in dirs {
        rust_files(&src.join(dir), &mut files);
    }
    let mut test_files = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("a readable source file");
        let dir = file.parent().expect("a file in a folder");
        for module in test_modules(&text) {
            test_files.push(dir.join(format!("{module}.rs")));
            test_files.push(dir.join(&module).join("mod.rs"));
        }
    }
    let mut found = Vec::new();
    for file in files.iter().filter(|f| !test_files.contains(f)) {
        let text = std::fs::read_to_string(file).expect("a readable source file");
        let relative = file
            .strip_prefix(src)
            .expect("under src")
            .to_string_lossy()
            .replace('\\', "/");
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let code = line.trim();
            // An inline test module at the bottom of the file (STYLE.md):
            // the rest of the file is test code. (`mod tests;` names a
            // file, skipped above.)
            if code == "#[cfg(test)]"
                && lines.get(i + 1).is_some_and(|next| {
                    let next = next.trim();
                    next.starts_with("mod ") && next.ends_with('{')
                })
            {
                break;
            }
            if code.starts_with("//") {
                continue;
            }
            let Some(what) = offends(code) else {
                continue;
            };
            if ALLOWED
                .iter()
                .any(|(f, allowed, _)| *f == relative && *allowed == code)
            {
                continue;
            }
            found.push(format!("src/{relative}:{}: {code} ({what})", i + 1));
        }
    }
    found
}

#[test]
fn the_data_plane_imports_no_control_plane() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let found = offences(&src, DATA_PLANE, names_control_plane);
    assert!(
        found.is_empty(),
        "the data plane (src/{{pipeline,conn,io}}) names the control plane; move what both \
         need to src/types/ and build it in the control plane:\n{}",
        found.join("\n")
    );
}

/// Whether `line` names any module of the crate (`crate::…`).
fn names_the_crate(line: &str) -> Option<&'static str> {
    line.contains("crate::").then_some("crate::")
}

#[test]
fn the_leaf_module_imports_nothing_of_the_crate() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let found = offences(&src, &["types"], names_the_crate);
    assert!(
        found.is_empty(),
        "src/types/ is the leaf both planes import: it must not import the rest of the crate:\n{}",
        found.join("\n")
    );
}

#[test]
fn every_allowed_line_is_still_there() {
    // An allowance outliving its line would let the line come back
    // unnoticed.
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    for (file, line, reason) in ALLOWED {
        let text = std::fs::read_to_string(src.join(file)).expect("the allowed file exists");
        assert!(
            text.lines().any(|l| l.trim() == *line),
            "src/{file} no longer has \"{line}\": drop its allowance ({reason})"
        );
    }
}

#[test]
fn the_scan_sees_each_form_of_import() {
    assert_eq!(
        names_control_plane("use crate::config::ClusterConfig;"),
        Some("config")
    );
    assert_eq!(
        names_control_plane("use crate::{conn::Millis, health};"),
        Some("health")
    );
    assert_eq!(
        names_control_plane("fn f(t: &crate::control::table::ServiceTable) {}"),
        Some("control")
    );
    assert_eq!(names_control_plane("use crate::run;"), Some("run"));
    assert_eq!(names_control_plane("use crate::runner::X;"), None);
    assert_eq!(names_control_plane("use crate::types::IfaceId;"), None);
    assert_eq!(names_control_plane("use crate::{conn, io};"), None);
    assert_eq!(
        test_modules("#[cfg(test)]\nmod tests;\nmod other;\n"),
        vec!["tests".to_owned()]
    );
}
