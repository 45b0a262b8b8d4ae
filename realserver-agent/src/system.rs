//! Everything `setup` and `teardown` do to the host goes through the
//! [`System`] trait: iproute2 commands and files under `/proc/sys` and
//! the run directory. The real implementation is [`Host`]; the tests of
//! the set-up logic use a fake, so that idempotence, roll-back and the
//! fallback from kernel tunnels to XDP are tested without root.
//!
//! iproute2 rather than netlink: `ip link set … xdp obj` loads and attaches
//! an XDP program with no foreign-function code of ours (this crate
//! forbids `unsafe`), and each step is the command an operator would type.

use std::io;
use std::path::Path;
use std::process::Command;

/// A command that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{command}` failed: {message}")]
pub struct CommandError {
    /// The command line.
    pub command: String,
    /// Its error output, or why it could not run.
    pub message: String,
}

/// The host, as set-up sees it.
pub trait System {
    /// Runs `ip` with these arguments; its standard output.
    fn ip(&mut self, args: &[&str]) -> Result<String, CommandError>;
    /// Reads a file (a sysctl under `/proc/sys`, for instance).
    fn read(&mut self, path: &Path) -> io::Result<String>;
    /// Writes a file.
    fn write(&mut self, path: &Path, bytes: &[u8]) -> io::Result<()>;
    /// Removes a file.
    fn remove(&mut self, path: &Path) -> io::Result<()>;
    /// Whether a network interface of this name exists.
    fn has_interface(&mut self, name: &str) -> bool;
}

/// The real host.
#[derive(Debug, Default)]
pub struct Host;

impl System for Host {
    fn ip(&mut self, args: &[&str]) -> Result<String, CommandError> {
        let command = format!("ip {}", args.join(" "));
        let out = Command::new("ip")
            .args(args)
            .output()
            .map_err(|e| CommandError {
                command: command.clone(),
                message: format!("cannot run ip (is iproute2 installed?): {e}"),
            })?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            let stderr = String::from_utf8_lossy(&out.stderr);
            Err(CommandError {
                command,
                message: stderr.trim().replace('\n', "; "),
            })
        }
    }

    fn read(&mut self, path: &Path) -> io::Result<String> {
        std::fs::read_to_string(path)
    }

    fn write(&mut self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        if let Some(dir) = path.parent()
            && !dir.starts_with("/proc")
        {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, bytes)
    }

    fn remove(&mut self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn has_interface(&mut self, name: &str) -> bool {
        Path::new("/sys/class/net").join(name).exists()
    }
}

/// Whether this process runs with the effective user id of root.
#[must_use]
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}
