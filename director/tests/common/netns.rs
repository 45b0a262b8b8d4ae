//! The director's namespace and a peer's, that the namespace tests make
//! and veth pairs join; deleted on drop, even after a failed assertion.
#![allow(
    dead_code,
    reason = "each test binary that includes this file uses its own part of it"
)]

use std::fs::File;

use nix::sched::{CloneFlags, setns};

use super::ip;

/// Two network namespaces, `director` and `peer`, deleted on drop (the
/// veth pairs in them with them).
#[derive(Debug)]
pub struct Namespaces {
    pub director: String,
    pub peer: String,
}

impl Namespaces {
    /// Adds both namespaces. Built before the first command, so that a
    /// failure half-way is cleaned up by Drop.
    pub fn add(director: String, peer: String) -> Result<Self, String> {
        let netns = Self { director, peer };
        ip(&["netns", "add", &netns.director])?;
        ip(&["netns", "add", &netns.peer])?;
        Ok(netns)
    }

    /// A veth pair: `dev` in the director's namespace, `peer_dev` in the
    /// peer's.
    pub fn veth(&self, dev: &str, peer_dev: &str) -> Result<(), String> {
        ip(&[
            "-n",
            &self.director,
            "link",
            "add",
            dev,
            "type",
            "veth",
            "peer",
            "name",
            peer_dev,
            "netns",
            &self.peer,
        ])
    }

    /// Runs `f` on a thread inside the director's namespace (netlink
    /// sockets, and threads started from it, live there too).
    pub fn in_director<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        in_namespace(&self.director, f)
    }

    /// Runs `f` on a thread inside the peer's namespace (a socket opened
    /// there stays there when `f` hands it back).
    pub fn in_peer<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        in_namespace(&self.peer, f)
    }
}

/// Runs `f` on a thread that first enters the namespace `name`.
fn in_namespace<T: Send + 'static>(name: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{name}");
    std::thread::spawn(move || {
        let ns = File::open(&path).expect("the namespace opens");
        setns(&ns, CloneFlags::CLONE_NEWNET).expect("setns into the namespace");
        f()
    })
    .join()
    .expect("the thread in the namespace did not panic")
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        // Deleting the namespaces deletes the veth pairs with them.
        let _ = ip(&["netns", "del", &self.director]);
        let _ = ip(&["netns", "del", &self.peer]);
    }
}
