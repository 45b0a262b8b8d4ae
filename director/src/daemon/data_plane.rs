//! The data plane's set-up and tear-down: which backend drives each
//! interface, the workers and the queues they serve, the XDP program and
//! its attachments, the AF_XDP and AF_PACKET sockets, the nftables filter
//! of AF_PACKET interfaces (and, with `[ha]`, of AF_XDP ones too: see
//! [`open`]), and the hooks that keep the XDP maps and the filter in step
//! with every published state.
//!
//! The hooks are not a [`super::Part`]: the control plane calls them
//! *while* it publishes, and rolls the change back when they fail, where a
//! part only hears of a change once it is in force.

use log::{info, warn};

use crate::control::plane::{DataPlaneHooks, HookError};
use crate::io::afxdp::{AfXdpIo, AfXdpOptions};
use crate::io::mixed::MixedIo;
use crate::io::packet::{KernelFilter, PacketIo, PacketOptions};
use crate::io::queues::{self, PlanInterface, QueueCount, QueuePlan};
use crate::io::xdp::{XdpAttachment, XdpProgram};
use crate::io::{IoInterface, WorkerIo};
use crate::kernel::{self, KernelInterface};
use crate::pipeline::{IfaceId, Snapshot};
use crate::run::{Live, kernel_filter_rules, redirect_filter};

use super::Error;
use super::options::{Backend, DaemonOptions};

/// The sockets of every worker, and what was set up in the kernel for them.
pub struct Opened {
    /// One I/O handle per worker.
    pub ios: Vec<Box<dyn WorkerIo>>,
    /// The XDP program on the AF_XDP interfaces.
    pub attachments: Vec<XdpAttachment>,
    /// The hooks, holding the XDP program and the kernel filter.
    pub hooks: Hooks,
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ios: Vec<String> = self.ios.iter().map(|io| io.describe()).collect();
        f.debug_struct("Opened")
            .field("ios", &ios)
            .field("attachments", &self.attachments)
            .field("hooks", &self.hooks)
            .finish()
    }
}

/// Opens the data plane for `names` (the configuration's interfaces, in
/// order) as `options` say, with the redirect rules of `state`.
///
/// With `guard` (`[ha]`), the nftables filter that keeps the kernel out
/// of the director's traffic covers the AF_XDP interfaces too. While the
/// director runs it changes nothing there (the XDP program redirects
/// those frames before the netdev ingress hook). It is for a director
/// killed with SIGKILL: its XDP program goes with its process, the
/// floating addresses stay on its interfaces (as keepalived's do), and
/// without the filter its kernel would answer every segment of the
/// connections the new master continues with a reset, until the clients'
/// neighbour entries move. The table outlives the process (a clean stop
/// removes it; the next start replaces it).
///
/// # Errors
/// An `--iface` that does not fit, a queue plan that does not, or the XDP
/// program, a socket or the kernel filter failed.
pub fn open(
    names: &[String],
    facts: &[KernelInterface],
    state: &Snapshot,
    options: &DaemonOptions,
    guard: bool,
) -> Result<Opened, Error> {
    // Which backend drives each interface: --backend, unless --iface says
    // otherwise for it.
    let backends = interface_backends(names, options)?;
    let on = |b: Backend| -> Vec<(IfaceId, String)> {
        names
            .iter()
            .enumerate()
            .filter(|(i, _)| backends[*i] == b)
            .map(|(i, n)| (IfaceId(u16::try_from(i).unwrap_or(u16::MAX)), n.clone()))
            .collect()
    };
    let (xdp_ifaces, packet_ifaces) = (on(Backend::Xdp), on(Backend::Packet));
    let plan = plan_queues(names, &backends, facts, options)?;

    let mut xdp_ios: Vec<AfXdpIo> = Vec::new();
    let mut attachments: Vec<XdpAttachment> = Vec::new();
    let program = if xdp_ifaces.is_empty() {
        None
    } else {
        let mut program = XdpProgram::load()?;
        program.set_filter(&redirect_filter(state))?;
        let xdp_options = AfXdpOptions {
            zero_copy: options.zero_copy,
            ..AfXdpOptions::default()
        };
        for worker in 0..plan.workers {
            let ifaces = queue_interfaces(&xdp_ifaces, &plan, worker);
            xdp_ios.push(AfXdpIo::open(&ifaces, xdp_options, &mut program)?);
        }
        for (_, name) in &xdp_ifaces {
            attachments.push(program.attach(name)?);
        }
        Some(program)
    };

    let mut packet_ios: Vec<PacketIo> = Vec::new();
    let mut filter: Option<KernelFilter> = None;
    // The kernel gets a copy of every frame a packet socket sees: this
    // filter makes it drop the ones the director handles, after the
    // sockets have taken theirs; with `guard`, on the AF_XDP interfaces too.
    let filtered: Vec<String> = packet_ifaces
        .iter()
        .chain(if guard { &xdp_ifaces[..] } else { &[] })
        .map(|(_, n)| n.clone())
        .collect();
    if !filtered.is_empty() {
        let (mut ifaces, rules) = kernel_filter_rules(state);
        ifaces.retain(|f| filtered.contains(&f.name));
        filter = Some(KernelFilter::install(&ifaces, &rules)?);
    }
    if !packet_ifaces.is_empty() {
        let packet_options = PacketOptions::new(plan.workers);
        for worker in 0..plan.workers {
            packet_ios.push(PacketIo::open(
                &io_interfaces(&packet_ifaces, worker),
                &packet_options,
            )?);
        }
    }

    let xdp_ids: Vec<IfaceId> = xdp_ifaces.iter().map(|(id, _)| *id).collect();
    let mut ios: Vec<Box<dyn WorkerIo>> = Vec::new();
    let mut packet_ios = packet_ios.into_iter();
    for xdp in xdp_ios {
        match packet_ios.next() {
            Some(packet) => ios.push(Box::new(MixedIo::new(xdp, packet, &xdp_ids))),
            None => ios.push(Box::new(xdp)),
        }
    }
    for packet in packet_ios {
        ios.push(Box::new(packet));
    }
    Ok(Opened {
        ios,
        attachments,
        hooks: Hooks {
            program,
            filter,
            filtered,
        },
    })
}

/// What follows a published state outside the pipeline: the XDP
/// program's maps and the AF_PACKET kernel filter.
#[derive(Debug)]
pub struct Hooks {
    program: Option<XdpProgram>,
    filter: Option<KernelFilter>,
    /// The interfaces the kernel filter covers.
    filtered: Vec<String>,
}

impl Hooks {
    /// The XDP program, if an interface uses AF_XDP.
    #[must_use]
    pub fn program(&self) -> Option<&XdpProgram> {
        self.program.as_ref()
    }
}

impl DataPlaneHooks for Hooks {
    fn published(&mut self, snapshot: &Snapshot) -> Result<(), HookError> {
        // The first failure ends the update: the control plane then calls
        // again with the running state, which puts back whatever this one
        // changed.
        if let Some(program) = &mut self.program {
            program
                .set_filter(&redirect_filter(snapshot))
                .map_err(HookError::XdpMaps)?;
        }
        if let Some(filter) = &mut self.filter {
            let (mut ifaces, rules) = kernel_filter_rules(snapshot);
            ifaces.retain(|f| self.filtered.contains(&f.name));
            filter
                .update(&ifaces, &rules)
                .map_err(HookError::KernelFilter)?;
        }
        Ok(())
    }
}

/// The running data plane: the workers, the XDP attachments and the
/// hooks (the XDP program and the kernel filter).
#[derive(Debug)]
pub struct DataPlane {
    /// The workers.
    pub live: Live,
    /// The XDP program on the AF_XDP interfaces.
    pub attachments: Vec<XdpAttachment>,
    /// The XDP program and the kernel filter.
    pub hooks: Hooks,
    stopped: bool,
}

impl DataPlane {
    /// The data plane of running workers.
    #[must_use]
    pub fn new(live: Live, attachments: Vec<XdpAttachment>, hooks: Hooks) -> Self {
        Self {
            live,
            attachments,
            hooks,
            stopped: false,
        }
    }

    /// Stops the workers, then detaches the XDP program, then removes the
    /// kernel filter: frames go back to the kernel only once no worker
    /// takes them. The XDP program itself stays loaded (its counters are
    /// read for the last stats) until this is dropped. Once only.
    pub fn stop(&mut self) {
        if std::mem::replace(&mut self.stopped, true) {
            return;
        }
        info!("stopping: workers first, then the XDP program is detached");
        self.live.stop();
        self.attachments.clear();
        if let Some(filter) = self.hooks.filter.take()
            && let Err(e) = filter.remove()
        {
            warn!("removing the kernel filter: {e}");
        }
    }
}

/// Counts each interface's receive queues and plans the workers and the
/// queues each serves (`crate::io::queues`).
fn plan_queues(
    names: &[String],
    backends: &[Backend],
    facts: &[KernelInterface],
    options: &DaemonOptions,
) -> Result<QueuePlan, Error> {
    let cpus = std::thread::available_parallelism()
        .map_or(1, |n| u32::try_from(n.get()).unwrap_or(u32::MAX));
    let mut ifaces = Vec::with_capacity(names.len());
    for (name, backend) in names.iter().zip(backends) {
        let ifindex = facts
            .iter()
            .find(|f| f.name == *name)
            .map(|f| f.ifindex)
            .ok_or_else(|| Error::NotReported(name.clone()))?;
        let rx_queues = match (kernel::rx_queue_count(name, ifindex), options.queues) {
            (Ok(n), _) => n,
            // The operator said how many there are: trusted where they
            // cannot be counted.
            (Err(e), QueueCount::First(n)) => {
                warn!("{e}; assuming --queues {n}");
                n
            }
            (Err(e), QueueCount::All) => return Err(e.into()),
        };
        ifaces.push(PlanInterface {
            name: name.clone(),
            rx_queues,
            xdp: *backend == Backend::Xdp,
        });
    }
    let plan = queues::plan(&ifaces, options.queues, options.workers, cpus)?;
    for (i, iface) in ifaces.iter().enumerate() {
        let served = if iface.xdp {
            format!("{} served by AF_XDP", plan.served(i))
        } else {
            "all seen by AF_PACKET".to_owned()
        };
        info!(
            "interface {}: {} receive queue(s), {served}; {} worker(s)",
            iface.name, iface.rx_queues, plan.workers
        );
    }
    Ok(plan)
}

/// Worker `worker`'s AF_XDP sockets: one per queue it serves on each
/// interface.
fn queue_interfaces(
    ifaces: &[(IfaceId, String)],
    plan: &QueuePlan,
    worker: u32,
) -> Vec<IoInterface> {
    ifaces
        .iter()
        .flat_map(|(id, name)| {
            plan.queues(worker, usize::from(id.0))
                .map(move |queue| IoInterface {
                    id: *id,
                    name: name.clone(),
                    queue,
                })
        })
        .collect()
}

/// One AF_PACKET socket per interface; `queue` only names the worker (the
/// fanout group, not a NIC queue, decides what it receives).
fn io_interfaces(ifaces: &[(IfaceId, String)], queue: u32) -> Vec<IoInterface> {
    ifaces
        .iter()
        .map(|(id, name)| IoInterface {
            id: *id,
            name: name.clone(),
            queue,
        })
        .collect()
}

/// The backend of each interface (in config order): `options.backend`, or
/// what an `--iface NAME=BACKEND` says for it.
fn interface_backends(names: &[String], options: &DaemonOptions) -> Result<Vec<Backend>, Error> {
    let mut backends = vec![options.backend; names.len()];
    for spec in &options.interface_backends {
        let (name, backend) = spec
            .split_once('=')
            .ok_or_else(|| Error::IfaceSyntax { spec: spec.clone() })?;
        let backend = match backend {
            "xdp" => Backend::Xdp,
            "packet" => Backend::Packet,
            other => {
                return Err(Error::IfaceBackend {
                    spec: spec.clone(),
                    backend: other.to_owned(),
                });
            }
        };
        let i = names
            .iter()
            .position(|n| n == name)
            .ok_or_else(|| Error::IfaceUnknown {
                spec: spec.clone(),
                name: name.to_owned(),
                names: names.to_vec(),
            })?;
        backends[i] = backend;
    }
    Ok(backends)
}
