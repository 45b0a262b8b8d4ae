//! Carries out a [`Plan`] on a [`System`], recording
//! each change and its undo in the [`State`] file as it goes, and undoes
//! them on `teardown`.
//!
//! - Setup skips what the state file lists, so a second run changes
//!   nothing; with more VIPs or another interface it adds only what is new.
//! - Setup records only what it changed: an address already on `lo`, or a
//!   sysctl already at its value, is listed without an undo and teardown
//!   leaves it alone.
//! - If a step fails, the steps of this run are undone before the error is
//!   returned: a failed setup leaves the host as it found it (state from
//!   earlier runs is kept).
//! - For VS/TUN with `--decap auto`, kernel tunnel devices are tried first;
//!   if one cannot be created (this kernel has no `ipip` / `ip6_tunnel`),
//!   what was made of them is undone and the XDP program is attached.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::plan::{Action, Decap, Plan, PlanError, SetupOptions, plan, sysctl_name};
use crate::state::{Done, State, StateError, Undo};
use crate::system::{CommandError, System};

/// The XDP decapsulation object, built from `xdp/decap.bpf.c` by build.rs
/// (empty when clang was missing at build time).
pub static DECAP_OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/decap.bpf.o"));

/// The name the kernel shows for our XDP program (its function name).
pub const XDP_PROGRAM_NAME: &str = "xvs_decap";

/// The default run directory.
pub const RUN_DIR: &str = "/run/xvs-agent";

/// Why setup or teardown failed.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The options cannot work.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// `--iface` names nothing.
    #[error("no interface {0} on this host (see `ip link`)")]
    NoInterface(String),
    /// The state file.
    #[error(transparent)]
    State(#[from] StateError),
    /// An iproute2 command.
    #[error(transparent)]
    Command(#[from] CommandError),
    /// A file (a sysctl, the XDP object).
    #[error("{what} {path}: {source}")]
    File {
        /// Reading or writing.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Built without clang.
    #[error(
        "this xvs-agent was built without its XDP decapsulation program (clang was missing at \
         build time): install clang and rebuild, or use --decap kernel on a kernel with ipip and \
         ip6_tunnel"
    )]
    NoXdpObject,
    /// Another XDP program is on the interface.
    #[error(
        "{dev} already runs XDP program {name:?} (id {id}); xvs-agent will not replace it: detach \
         it (ip link set dev {dev} xdp off) or use --decap kernel"
    )]
    XdpBusy {
        /// The interface.
        dev: String,
        /// The program's name.
        name: String,
        /// Its id.
        id: u64,
    },
    /// `ip -j` printed something unexpected.
    #[error("cannot read the output of `ip {0}`: {1}")]
    IpOutput(String, String),
    /// A second setup asks for another decapsulation than the first.
    #[error(
        "VS/TUN decapsulation is already set up with {0}; run `xvs-agent teardown` first to change it"
    )]
    DecapInUse(Decap),
    /// No decapsulation could be set up.
    #[error("cannot set up VS/TUN decapsulation: {}{hint}", attempts.join("; "))]
    NoDecap {
        /// What was tried and why it failed.
        attempts: Vec<String>,
        /// What the operator may do.
        hint: &'static str,
    },
    /// Teardown could not undo everything.
    #[error(
        "teardown left {} change(s) in place (still listed in the state file; fix and run \
         teardown again): {}", .0.len(), .0.join("; ")
    )]
    Incomplete(Vec<String>),
}

/// An XDP program attached to an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XdpProgram {
    /// Its id.
    pub id: u64,
    /// Its name.
    pub name: String,
    /// Attached in generic (skb) mode.
    pub generic: bool,
}

/// Sets up and tears down a real server.
#[derive(Debug)]
pub struct Agent<S: System> {
    sys: S,
    run_dir: PathBuf,
    object: &'static [u8],
    /// What was done, in an operator's words, for main to print.
    pub messages: Vec<String>,
}

impl<S: System> Agent<S> {
    /// An agent keeping its state and XDP object in `run_dir`.
    pub fn new(sys: S, run_dir: impl Into<PathBuf>) -> Self {
        Self {
            sys,
            run_dir: run_dir.into(),
            object: DECAP_OBJECT,
            messages: Vec::new(),
        }
    }

    /// The same, with another XDP object (tests).
    #[must_use]
    pub fn with_object(mut self, object: &'static [u8]) -> Self {
        self.object = object;
        self
    }

    /// The system (tests look at the fake).
    pub fn system(&self) -> &S {
        &self.sys
    }

    /// The system, to change (tests make the fake fail).
    pub fn system_mut(&mut self) -> &mut S {
        &mut self.sys
    }

    fn state_path(&self) -> PathBuf {
        self.run_dir.join("state.json")
    }

    fn object_path(&self) -> PathBuf {
        self.run_dir.join("decap.bpf.o")
    }

    fn say(&mut self, message: String) {
        self.messages.push(message);
    }

    /// Prepares the host as `opts` asks.
    pub fn setup(&mut self, opts: &SetupOptions) -> Result<(), AgentError> {
        let plan = plan(opts)?;
        if let Some(iface) = &opts.iface
            && !self.sys.has_interface(iface)
        {
            return Err(AgentError::NoInterface(iface.clone()));
        }
        let mut state = State::load(&self.state_path())?;
        let mark = state.done.len();
        let result = self.run_plan(&plan, &mut state);
        if let Err(e) = result {
            let left = self.undo_from(&mut state, mark);
            if !state
                .done
                .iter()
                .any(|d| matches!(d.action, Action::AttachXdp { .. }))
            {
                self.remove_object();
            }
            let saved = self.save_final(&state);
            if left.is_empty() && saved.is_ok() {
                self.say("setup failed: its changes were undone".to_owned());
            } else {
                self.say(format!(
                    "setup failed, and undoing it failed too: {}",
                    left.join("; ")
                ));
            }
            return Err(e);
        }
        Ok(())
    }

    fn run_plan(&mut self, plan: &Plan, state: &mut State) -> Result<(), AgentError> {
        for action in &plan.common {
            self.ensure(action, state)?;
        }
        if plan.decap.is_empty() {
            return Ok(());
        }
        let choices: Vec<_> = match state.decap {
            Some(chosen) => plan.decap.iter().filter(|(d, _)| *d == chosen).collect(),
            None => plan.decap.iter().collect(),
        };
        if choices.is_empty()
            && let Some(chosen) = state.decap
        {
            return Err(AgentError::DecapInUse(chosen));
        }
        let mut attempts = Vec::new();
        let last = choices.len();
        for (i, (decap, actions)) in choices.into_iter().enumerate() {
            let mark = state.done.len();
            match actions.iter().try_for_each(|a| self.ensure(a, state)) {
                Ok(()) => {
                    state.decap = Some(*decap);
                    state.save(&self.state_path())?;
                    self.say(format!("VS/TUN packets are decapsulated by {decap}"));
                    return Ok(());
                }
                Err(e) => {
                    let left = self.undo_from(state, mark);
                    if !left.is_empty() {
                        return Err(AgentError::Incomplete(left));
                    }
                    if i + 1 < last {
                        self.say(format!("{decap} unavailable ({e}): trying the next way"));
                    }
                    attempts.push(format!("{decap}: {e}"));
                }
            }
        }
        let tried_xdp = plan.decap.iter().any(|(d, _)| *d == Decap::Xdp);
        let hint = if tried_xdp {
            ""
        } else {
            " (a kernel without ipip/ip6_tunnel can decapsulate with XDP: --decap xdp --iface IFACE)"
        };
        Err(AgentError::NoDecap { attempts, hint })
    }

    /// Does `action` unless the state lists it, and records it.
    fn ensure(&mut self, action: &Action, state: &mut State) -> Result<(), AgentError> {
        if state.has(action) {
            self.say(format!("already done: {action}"));
            return Ok(());
        }
        let undo = self.apply(action)?;
        state.done.push(Done {
            action: action.clone(),
            undo,
        });
        state.save(&self.state_path())?;
        Ok(())
    }

    fn apply(&mut self, action: &Action) -> Result<Option<Undo>, AgentError> {
        match action {
            Action::AddAddress {
                dev,
                addr,
                prefix_len,
            } => {
                if self.has_address(dev, *addr)? {
                    self.say(format!("{addr} is already on {dev}: left as it was"));
                    return Ok(None);
                }
                let cidr = format!("{addr}/{prefix_len}");
                self.sys.ip(&["address", "add", &cidr, "dev", dev])?;
                self.say(format!("added {cidr} to {dev}"));
                Ok(Some(Undo::DeleteAddress {
                    dev: dev.clone(),
                    addr: *addr,
                    prefix_len: *prefix_len,
                }))
            }
            Action::SetSysctl { path, value } => {
                let file = Path::new("/proc/sys").join(path);
                let previous = self
                    .sys
                    .read(&file)
                    .map_err(|source| AgentError::File {
                        what: "cannot read",
                        path: file.clone(),
                        source,
                    })?
                    .trim()
                    .to_owned();
                let name = sysctl_name(path);
                if &previous == value {
                    self.say(format!("{name} is already {value}"));
                    return Ok(None);
                }
                self.sys
                    .write(&file, value.as_bytes())
                    .map_err(|source| AgentError::File {
                        what: "cannot write",
                        path: file.clone(),
                        source,
                    })?;
                self.say(format!("set {name} = {value} (was {previous})"));
                Ok(Some(Undo::RestoreSysctl {
                    path: path.clone(),
                    value: previous,
                }))
            }
            Action::CreateTunnel { name, kind } => {
                let mut args = vec!["link", "add", name.as_str()];
                args.extend_from_slice(kind.ip_link_args());
                self.sys.ip(&args)?;
                if let Err(e) = self.sys.ip(&["link", "set", "dev", name, "up"]) {
                    let _ = self.sys.ip(&["link", "del", "dev", name]);
                    return Err(e.into());
                }
                self.say(format!(
                    "created tunnel device {name} ({})",
                    kind.ip_link_args().join(" ")
                ));
                Ok(Some(Undo::DeleteLink { name: name.clone() }))
            }
            Action::AttachXdp { dev } => self.attach_xdp(dev),
        }
    }

    fn attach_xdp(&mut self, dev: &str) -> Result<Option<Undo>, AgentError> {
        if self.object.is_empty() {
            return Err(AgentError::NoXdpObject);
        }
        if let Some(prog) = self.xdp_program(dev)? {
            if prog.name == XDP_PROGRAM_NAME {
                self.say(format!(
                    "{dev} already runs {XDP_PROGRAM_NAME} (id {}): left as it was",
                    prog.id
                ));
                return Ok(None);
            }
            return Err(AgentError::XdpBusy {
                dev: dev.to_owned(),
                name: prog.name,
                id: prog.id,
            });
        }
        let object = self.object_path();
        self.sys
            .write(&object, self.object)
            .map_err(|source| AgentError::File {
                what: "cannot write the XDP object to",
                path: object.clone(),
                source,
            })?;
        let file = object.to_string_lossy().into_owned();
        let attach = |sys: &mut S, mode: &str| {
            sys.ip(&["link", "set", "dev", dev, mode, "obj", &file, "sec", "xdp"])
        };
        let generic = match attach(&mut self.sys, "xdp") {
            Ok(_) => false,
            Err(native) => match attach(&mut self.sys, "xdpgeneric") {
                Ok(_) => {
                    self.say(format!(
                        "native XDP refused on {dev} ({}): using generic XDP",
                        native.message
                    ));
                    true
                }
                Err(e) => return Err(e.into()),
            },
        };
        let mode = if generic { "generic" } else { "native" };
        self.say(format!(
            "attached {XDP_PROGRAM_NAME} to {dev} ({mode} XDP) from {file}"
        ));
        Ok(Some(Undo::DetachXdp {
            dev: dev.to_owned(),
            generic,
        }))
    }

    fn has_address(&mut self, dev: &str, addr: IpAddr) -> Result<bool, AgentError> {
        let args = ["-j", "address", "show", "dev", dev];
        let out = self.sys.ip(&args)?;
        let bad = |e: String| AgentError::IpOutput(args.join(" "), e);
        let links: serde_json::Value =
            serde_json::from_str(&out).map_err(|e| bad(e.to_string()))?;
        let found = links
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|l| l.get("addr_info")?.as_array())
            .flatten()
            .filter_map(|a| a.get("local")?.as_str()?.parse::<IpAddr>().ok())
            .any(|a| a == addr);
        Ok(found)
    }

    /// The XDP program on `dev`, if any.
    pub fn xdp_program(&mut self, dev: &str) -> Result<Option<XdpProgram>, AgentError> {
        let args = ["-j", "-d", "link", "show", "dev", dev];
        let out = self.sys.ip(&args)?;
        let bad = |e: String| AgentError::IpOutput(args.join(" "), e);
        let links: serde_json::Value =
            serde_json::from_str(&out).map_err(|e| bad(e.to_string()))?;
        let Some(xdp) = links.get(0).and_then(|l| l.get("xdp")) else {
            return Ok(None);
        };
        // Modes as the kernel numbers them: 1 driver, 2 generic (skb),
        // 3 offloaded, 4 several at once (listed under "attached").
        let mode = xdp
            .get("mode")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0);
        let progs: Vec<(u64, &serde_json::Value)> =
            match xdp.get("attached").and_then(|a| a.as_array()) {
                Some(list) => list
                    .iter()
                    .filter_map(|a| Some((a.get("mode")?.as_u64()?, a.get("prog")?)))
                    .collect(),
                None => xdp.get("prog").map(|p| vec![(mode, p)]).unwrap_or_default(),
            };
        let found = progs.iter().map(|(mode, p)| XdpProgram {
            id: p.get("id").and_then(serde_json::Value::as_u64).unwrap_or(0),
            name: p
                .get("name")
                .and_then(|n| n.as_str())
                .unwrap_or("")
                .to_owned(),
            generic: *mode == 2,
        });
        // Ours first, so that teardown finds it beside another.
        let mut found: Vec<XdpProgram> = found.collect();
        found.sort_by_key(|p| p.name != XDP_PROGRAM_NAME);
        Ok(found.into_iter().next())
    }

    /// Undoes the entries from `mark` on, newest first; returns what could
    /// not be undone (those entries stay in the state).
    fn undo_from(&mut self, state: &mut State, mark: usize) -> Vec<String> {
        let mut left = Vec::new();
        let mut i = state.done.len();
        while i > mark {
            i -= 1;
            let done = state.done[i].clone();
            let outcome = match &done.undo {
                None => Ok(()),
                Some(undo) => self.undo(undo),
            };
            match outcome {
                Ok(()) => {
                    state.done.remove(i);
                    if let Err(e) = state.save(&self.state_path()) {
                        left.push(e.to_string());
                    }
                }
                Err(e) => left.push(format!("{}: {e}", done.action)),
            }
        }
        if !state.done.iter().any(|d| {
            matches!(
                d.action,
                Action::CreateTunnel { .. } | Action::AttachXdp { .. }
            )
        }) {
            state.decap = None;
        }
        left
    }

    fn undo(&mut self, undo: &Undo) -> Result<(), AgentError> {
        match undo {
            Undo::DeleteAddress {
                dev,
                addr,
                prefix_len,
            } => {
                if !self.sys.has_interface(dev) || !self.has_address(dev, *addr)? {
                    return Ok(());
                }
                let cidr = format!("{addr}/{prefix_len}");
                self.sys.ip(&["address", "del", &cidr, "dev", dev])?;
                self.say(format!("removed {cidr} from {dev}"));
            }
            Undo::RestoreSysctl { path, value } => {
                let file = Path::new("/proc/sys").join(path);
                match self.sys.write(&file, value.as_bytes()) {
                    Ok(()) => self.say(format!("restored {} = {value}", sysctl_name(path))),
                    // The device went away, and its settings with it.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(source) => {
                        return Err(AgentError::File {
                            what: "cannot write",
                            path: file,
                            source,
                        });
                    }
                }
            }
            Undo::DeleteLink { name } => {
                if self.sys.has_interface(name) {
                    self.sys.ip(&["link", "del", "dev", name])?;
                    self.say(format!("deleted tunnel device {name}"));
                }
            }
            Undo::DetachXdp { dev, generic } => {
                if self.sys.has_interface(dev) {
                    self.detach_ours(dev, Some(*generic))?;
                }
            }
        }
        Ok(())
    }

    /// Detaches our program from `dev` if it is there (never another's).
    fn detach_ours(&mut self, dev: &str, generic: Option<bool>) -> Result<bool, AgentError> {
        let Some(prog) = self.xdp_program(dev)? else {
            return Ok(false);
        };
        if prog.name != XDP_PROGRAM_NAME {
            self.say(format!(
                "{dev} now runs XDP program {:?} (id {}), not ours: left attached",
                prog.name, prog.id
            ));
            return Ok(false);
        }
        let mode = if generic.unwrap_or(prog.generic) {
            "xdpgeneric"
        } else {
            "xdp"
        };
        self.sys.ip(&["link", "set", "dev", dev, mode, "off"])?;
        self.say(format!("detached {XDP_PROGRAM_NAME} from {dev}"));
        Ok(true)
    }

    /// Saves the state at the end of a command; with nothing left in it,
    /// the file and the run directory go (the directory only if empty: it
    /// may hold what is not ours).
    fn save_final(&self, state: &State) -> Result<(), StateError> {
        state.save(&self.state_path())?;
        if state.done.is_empty() {
            let _ = std::fs::remove_dir(&self.run_dir);
        }
        Ok(())
    }

    fn remove_object(&mut self) {
        let object = self.object_path();
        // Absent already is fine: only an attach writes it.
        let _ = self.sys.remove(&object);
    }

    /// Undoes everything the state file lists; with `iface`, also detaches
    /// our XDP program from it if the state file has lost track of it.
    pub fn teardown(&mut self, iface: Option<&str>) -> Result<(), AgentError> {
        if let Some(iface) = iface
            && !self.sys.has_interface(iface)
        {
            return Err(AgentError::NoInterface(iface.to_owned()));
        }
        let path = self.state_path();
        let mut state = State::load(&path)?;
        if state.done.is_empty() {
            self.say(format!("{}: nothing recorded to undo", path.display()));
        }
        let mut left = self.undo_from(&mut state, 0);
        if let Some(iface) = iface {
            match self.detach_ours(iface, None) {
                Ok(_) => {}
                Err(e) => left.push(e.to_string()),
            }
        }
        if state.done.is_empty() {
            self.remove_object();
        }
        self.save_final(&state)?;
        if left.is_empty() {
            Ok(())
        } else {
            Err(AgentError::Incomplete(left))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::io;

    use super::*;
    use crate::plan::{DecapMode, ForwardMethod};

    /// What a host looks like to set-up.
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    struct World {
        addrs: BTreeSet<(String, IpAddr)>,
        sysctls: BTreeMap<PathBuf, String>,
        links: BTreeSet<String>,
        /// dev → (program name, generic)
        xdp: BTreeMap<String, (String, bool)>,
    }

    #[derive(Debug)]
    struct Fake {
        world: World,
        kernel_tunnels: bool,
        native_xdp: bool,
        /// Any command containing this fails.
        fail: Option<String>,
        files: BTreeSet<PathBuf>,
    }

    fn conf(dev: &str, key: &str) -> PathBuf {
        Path::new("/proc/sys/net/ipv4/conf").join(dev).join(key)
    }

    impl Fake {
        fn new() -> Self {
            let mut world = World::default();
            for dev in ["lo", "eth0"] {
                world.links.insert(dev.into());
            }
            for dev in ["all", "lo", "eth0"] {
                for key in ["arp_ignore", "arp_announce"] {
                    world.sysctls.insert(conf(dev, key), "0".into());
                }
                world.sysctls.insert(conf(dev, "rp_filter"), "2".into());
            }
            Self {
                world,
                kernel_tunnels: false,
                native_xdp: true,
                fail: None,
                files: BTreeSet::new(),
            }
        }
    }

    fn err(message: &str) -> CommandError {
        CommandError {
            command: String::new(),
            message: message.into(),
        }
    }

    impl Fake {
        fn run(&mut self, args: &[&str]) -> Result<String, CommandError> {
            let line = args.join(" ");
            if let Some(f) = &self.fail
                && line.contains(f.as_str())
            {
                return Err(err("injected failure"));
            }
            let w = &mut self.world;
            match args {
                ["-j", "address", "show", "dev", dev] => {
                    let locals: Vec<String> = w
                        .addrs
                        .iter()
                        .filter(|(d, _)| d == dev)
                        .map(|(_, a)| format!(r#"{{"local":"{a}"}}"#))
                        .collect();
                    Ok(format!(
                        r#"[{{"ifname":"{dev}","addr_info":[{}]}}]"#,
                        locals.join(",")
                    ))
                }
                ["address", verb, cidr, "dev", dev] => {
                    let addr: IpAddr = cidr.split('/').next().unwrap().parse().unwrap();
                    let key = ((*dev).to_owned(), addr);
                    let changed = if *verb == "add" {
                        w.addrs.insert(key)
                    } else {
                        w.addrs.remove(&key)
                    };
                    if changed {
                        Ok(String::new())
                    } else {
                        Err(err("address exists / missing"))
                    }
                }
                ["link", "add", name, ..] => {
                    if !self.kernel_tunnels {
                        return Err(err("Error: Unknown device type."));
                    }
                    w.links.insert((*name).to_owned());
                    w.sysctls.insert(conf(name, "rp_filter"), "2".into());
                    Ok(String::new())
                }
                ["link", "set", "dev", _, "up"] => Ok(String::new()),
                ["link", "del", "dev", name] => {
                    w.links.remove(*name);
                    w.sysctls.remove(&conf(name, "rp_filter"));
                    Ok(String::new())
                }
                ["-j", "-d", "link", "show", "dev", dev] => Ok(match w.xdp.get(*dev) {
                    Some((name, generic)) => format!(
                        r#"[{{"ifname":"{dev}","xdp":{{"mode":{},"prog":{{"id":7,"name":"{name}"}}}}}}]"#,
                        if *generic { 2 } else { 1 }
                    ),
                    None => format!(r#"[{{"ifname":"{dev}"}}]"#),
                }),
                ["link", "set", "dev", dev, mode, "obj", file, "sec", "xdp"] => {
                    assert!(self.files.contains(Path::new(file)), "object written first");
                    if w.xdp.contains_key(*dev) {
                        return Err(err("Error: XDP program already attached."));
                    }
                    if *mode == "xdp" && !self.native_xdp {
                        return Err(err("native XDP not supported"));
                    }
                    w.xdp.insert(
                        (*dev).to_owned(),
                        (XDP_PROGRAM_NAME.into(), *mode == "xdpgeneric"),
                    );
                    Ok(String::new())
                }
                ["link", "set", "dev", dev, mode, "off"] => {
                    let (_, generic) = w.xdp.remove(*dev).unwrap();
                    assert_eq!(
                        generic,
                        *mode == "xdpgeneric",
                        "detached in the mode attached"
                    );
                    Ok(String::new())
                }
                _ => panic!("unexpected command: ip {line}"),
            }
        }
    }

    impl System for Fake {
        fn ip(&mut self, args: &[&str]) -> Result<String, CommandError> {
            let line = args.join(" ");
            self.run(args).map_err(|e| CommandError {
                command: format!("ip {line}"),
                ..e
            })
        }

        fn read(&mut self, path: &Path) -> io::Result<String> {
            self.world
                .sysctls
                .get(path)
                .map(|v| format!("{v}\n"))
                .ok_or_else(|| io::ErrorKind::NotFound.into())
        }

        fn write(&mut self, path: &Path, bytes: &[u8]) -> io::Result<()> {
            if path.starts_with("/proc/sys") {
                let v = self
                    .world
                    .sysctls
                    .get_mut(path)
                    .ok_or(io::ErrorKind::NotFound)?;
                *v = String::from_utf8(bytes.to_vec()).unwrap();
            } else {
                assert!(!bytes.is_empty());
                self.files.insert(path.to_owned());
            }
            Ok(())
        }

        fn remove(&mut self, path: &Path) -> io::Result<()> {
            if self.files.remove(path) {
                Ok(())
            } else {
                Err(io::ErrorKind::NotFound.into())
            }
        }

        fn has_interface(&mut self, name: &str) -> bool {
            self.world.links.contains(name)
        }
    }

    /// A run directory of its own for each test, removed on drop.
    struct RunDir(PathBuf);
    impl RunDir {
        fn new(test: &str) -> Self {
            let dir = std::env::temp_dir().join(format!("xvs-agent-{test}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            Self(dir)
        }
        fn state(&self) -> State {
            State::load(&self.0.join("state.json")).unwrap()
        }
    }
    impl Drop for RunDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn agent(fake: Fake, dir: &RunDir) -> Agent<Fake> {
        Agent::new(fake, &dir.0).with_object(b"\x7fELF fake object")
    }

    fn opts(
        vips: &[&str],
        method: ForwardMethod,
        iface: Option<&str>,
        decap: Option<DecapMode>,
    ) -> SetupOptions {
        SetupOptions {
            vips: vips.iter().map(|v| v.parse().unwrap()).collect(),
            method,
            iface: iface.map(str::to_owned),
            decap,
        }
    }

    fn v(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn dr_twice_is_dr_once_and_teardown_restores_the_host() {
        let dir = RunDir::new("dr");
        let mut a = agent(Fake::new(), &dir);
        let before = a.system().world.clone();
        let o = opts(
            &["192.0.2.100", "2001:db8::100"],
            ForwardMethod::DirectRouting,
            Some("eth0"),
            None,
        );
        a.setup(&o).unwrap();
        let w = &a.system().world;
        assert!(w.addrs.contains(&("lo".into(), v("192.0.2.100"))));
        assert!(w.addrs.contains(&("lo".into(), v("2001:db8::100"))));
        for dev in ["all", "lo", "eth0"] {
            assert_eq!(w.sysctls[&conf(dev, "arp_ignore")], "1");
            assert_eq!(w.sysctls[&conf(dev, "arp_announce")], "2");
        }
        let after_once = (a.system().world.clone(), dir.state());
        a.setup(&o).unwrap();
        assert_eq!(
            (a.system().world.clone(), dir.state()),
            after_once,
            "a second setup changes nothing"
        );

        a.teardown(None).unwrap();
        assert_eq!(a.system().world, before);
        assert!(!dir.0.join("state.json").exists());
    }

    #[test]
    fn teardown_leaves_what_was_there_before_setup() {
        let dir = RunDir::new("before");
        let mut fake = Fake::new();
        fake.world.addrs.insert(("lo".into(), v("192.0.2.100")));
        fake.world
            .sysctls
            .insert(conf("all", "arp_ignore"), "1".into());
        let mut a = agent(fake, &dir);
        let before = a.system().world.clone();
        a.setup(&opts(
            &["192.0.2.100"],
            ForwardMethod::DirectRouting,
            None,
            None,
        ))
        .unwrap();
        let state = dir.state();
        let undone: Vec<&Action> = state
            .done
            .iter()
            .filter(|d| d.undo.is_none())
            .map(|d| &d.action)
            .collect();
        assert_eq!(
            undone.len(),
            2,
            "address and arp_ignore were already so: {undone:?}"
        );
        a.teardown(None).unwrap();
        assert_eq!(
            a.system().world,
            before,
            "the pre-existing VIP and sysctl stay"
        );
    }

    #[test]
    fn tun_auto_falls_back_to_generic_xdp_without_kernel_tunnels() {
        let dir = RunDir::new("fallback");
        let mut fake = Fake::new();
        fake.native_xdp = false;
        let mut a = agent(fake, &dir);
        let before = a.system().world.clone();
        a.setup(&opts(
            &["192.0.2.100"],
            ForwardMethod::Tunnel,
            Some("eth0"),
            None,
        ))
        .unwrap();
        let w = &a.system().world;
        assert_eq!(w.links, before.links, "no tunnel device left behind");
        assert_eq!(
            w.sysctls[&conf("all", "rp_filter")],
            "2",
            "the kernel attempt's rp_filter was undone"
        );
        assert_eq!(w.xdp["eth0"], (XDP_PROGRAM_NAME.to_owned(), true));
        assert_eq!(dir.state().decap, Some(Decap::Xdp));
        assert!(
            a.messages.iter().any(|m| m.contains("Unknown device type")),
            "{:?}",
            a.messages
        );

        a.setup(&opts(
            &["192.0.2.100"],
            ForwardMethod::Tunnel,
            Some("eth0"),
            None,
        ))
        .unwrap();
        assert_eq!(a.system().world.xdp.len(), 1);
        a.teardown(None).unwrap();
        assert_eq!(a.system().world, before);
        assert!(a.system().files.is_empty(), "the object file is removed");
    }

    #[test]
    fn tun_with_kernel_tunnels_uses_them_with_rp_filter_off() {
        let dir = RunDir::new("kernel");
        let mut fake = Fake::new();
        fake.kernel_tunnels = true;
        let mut a = agent(fake, &dir);
        let before = a.system().world.clone();
        a.setup(&opts(
            &["192.0.2.100"],
            ForwardMethod::Tunnel,
            Some("eth0"),
            None,
        ))
        .unwrap();
        let w = &a.system().world;
        assert!(w.links.contains("xvs-tun4") && w.links.contains("xvs-tun6"));
        for dev in ["all", "xvs-tun4", "xvs-tun6"] {
            assert_eq!(w.sysctls[&conf(dev, "rp_filter")], "0", "{dev}");
        }
        assert!(w.xdp.is_empty());
        assert_eq!(dir.state().decap, Some(Decap::Kernel));

        let err = a
            .setup(&opts(
                &["192.0.2.100"],
                ForwardMethod::Tunnel,
                Some("eth0"),
                Some(DecapMode::Xdp),
            ))
            .unwrap_err();
        assert!(
            matches!(err, AgentError::DecapInUse(Decap::Kernel)),
            "{err}"
        );

        a.teardown(None).unwrap();
        assert_eq!(a.system().world, before);
    }

    #[test]
    fn a_failed_setup_undoes_its_own_steps_only() {
        let dir = RunDir::new("rollback");
        let mut a = agent(Fake::new(), &dir);
        let before = a.system().world.clone();
        a.setup(&opts(
            &["192.0.2.100"],
            ForwardMethod::DirectRouting,
            None,
            None,
        ))
        .unwrap();
        let first = (a.system().world.clone(), dir.state());

        a.system_mut().fail = Some("address add 192.0.2.101".into());
        let err = a
            .setup(&opts(
                &["192.0.2.100", "192.0.2.101"],
                ForwardMethod::DirectRouting,
                Some("eth0"),
                None,
            ))
            .unwrap_err();
        assert!(err.to_string().contains("192.0.2.101"), "{err}");
        assert_eq!(
            (a.system().world.clone(), dir.state()),
            first,
            "the first setup stays, the second is gone"
        );

        a.system_mut().fail = None;
        a.teardown(None).unwrap();
        assert_eq!(a.system().world, before);
    }

    #[test]
    fn refusals_change_nothing() {
        let dir = RunDir::new("refusals");
        let tun = |iface: Option<&str>, decap| {
            opts(&["192.0.2.100"], ForwardMethod::Tunnel, iface, decap)
        };

        let mut busy = Fake::new();
        busy.world
            .xdp
            .insert("eth0".into(), ("someone_else".into(), false));
        let mut a = agent(busy, &dir);
        let before = a.system().world.clone();
        let err = a
            .setup(&tun(Some("eth0"), Some(DecapMode::Xdp)))
            .unwrap_err();
        assert!(
            matches!(&err, AgentError::NoDecap { attempts, .. } if attempts[0].contains("someone_else")),
            "{err}"
        );
        assert_eq!(a.system().world, before);
        assert!(
            !dir.0.exists(),
            "a failed first setup leaves no run directory"
        );

        let mut a = Agent::new(Fake::new(), &dir.0).with_object(b"");
        let err = a
            .setup(&tun(Some("eth0"), Some(DecapMode::Xdp)))
            .unwrap_err();
        assert!(err.to_string().contains("built without its XDP"), "{err}");

        let mut a = agent(Fake::new(), &dir);
        let err = a.setup(&tun(Some("eth9"), None)).unwrap_err();
        assert!(
            matches!(err, AgentError::NoInterface(ref i) if i == "eth9"),
            "{err}"
        );
        let err = a.setup(&tun(None, None)).unwrap_err();
        assert!(err.to_string().contains("--decap xdp --iface"), "{err}");
        assert!(err.to_string().contains("Unknown device type"), "{err}");
        assert_eq!(a.system().world, Fake::new().world);
    }

    #[test]
    fn teardown_with_an_interface_detaches_our_program_the_state_lost() {
        let dir = RunDir::new("lost");
        let mut fake = Fake::new();
        fake.world
            .xdp
            .insert("eth0".into(), (XDP_PROGRAM_NAME.into(), true));
        let mut a = agent(fake, &dir);
        a.teardown(Some("eth0")).unwrap();
        assert!(a.system().world.xdp.is_empty());

        let mut other = Fake::new();
        other
            .world
            .xdp
            .insert("eth0".into(), ("someone_else".into(), false));
        let mut a = agent(other, &dir);
        a.teardown(Some("eth0")).unwrap();
        assert_eq!(a.system().world.xdp.len(), 1, "another's program stays");
    }
}
