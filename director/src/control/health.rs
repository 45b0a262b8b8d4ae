//! Health checks applied to the service table: what ldirectord did with
//! ipvsadm, done on the table directly.
//!
//! A real server that goes down is quiesced (weight 0: no new connections,
//! established ones drain) when its service is `quiescent`, or else
//! deleted from the table (its connections drain as after `xvsadm -d`);
//! when it comes back its weight, or the server itself, is restored. While
//! every real server of a service is down, its `fallback` server (if any)
//! gets the new connections; the first one back ends that. A reload
//! re-applies the file and then the current down states, so a server that
//! is down stays out of rotation whatever the file says about its weight.

use std::collections::HashMap;

use crossbeam::channel::Sender;

use crate::config::ClusterConfig;
use crate::control::plane::ControlMsg;
use crate::control::proto::{ServerParams, ServiceId};
use crate::control::table::ServiceTable;
use crate::health::{HealthSink, Reason, TargetKey};

/// Sends the checker's transitions to the main thread.
#[derive(Debug)]
pub struct ChannelSink(pub Sender<ControlMsg>);

impl HealthSink for ChannelSink {
    fn transition(&self, target: &TargetKey, up: bool, reason: &Reason) {
        let _ = self.0.send(ControlMsg::Health {
            target: *target,
            up,
            reason: reason.to_string(),
        });
    }
}

/// The real servers that are down, and what they were when they went
/// down (restored when they come back).
#[derive(Debug, Clone, Default)]
pub struct HealthOverrides {
    down: HashMap<TargetKey, ServerParams>,
    quiescent: HashMap<ServiceId, bool>,
}

fn current(table: &ServiceTable, target: &TargetKey) -> Option<ServerParams> {
    table.server(target.service, target.server.ip(), target.server.port())
}

impl HealthOverrides {
    /// Reads each service's `quiescent` from `config`.
    pub fn configure(&mut self, config: &ClusterConfig) {
        self.quiescent = config
            .services
            .iter()
            .map(|svc| {
                let key = crate::control::table::service_params_of(svc).id;
                (key, crate::health::quiescent(svc))
            })
            .collect();
    }

    /// True when `target` is down.
    #[must_use]
    pub fn is_down(&self, target: &TargetKey) -> bool {
        self.down.contains_key(target)
    }

    /// Takes `target` out of rotation (quiesced or deleted). Returns true
    /// when the table changed.
    pub fn down(&mut self, table: &mut ServiceTable, target: &TargetKey) -> bool {
        if self.down.contains_key(target) {
            return false;
        }
        let Some(params) = current(table, target) else {
            return false;
        };
        let id = target.service;
        let changed = self.take_out(table, id, &params);
        self.down.insert(*target, params);
        changed
    }

    fn take_out(&self, table: &mut ServiceTable, id: ServiceId, params: &ServerParams) -> bool {
        if self.quiescent.get(&id).copied().unwrap_or(false) {
            let quiesced = ServerParams {
                weight: 0,
                ..*params
            };
            table.edit_server(id, &quiesced).is_ok()
        } else {
            table.delete_server(id, params.addr, params.port).is_ok()
        }
    }

    /// Puts `target` back as it was when it went down. Returns true when
    /// the table changed.
    pub fn up(&mut self, table: &mut ServiceTable, target: &TargetKey) -> bool {
        let Some(saved) = self.down.remove(target) else {
            return false;
        };
        let id = target.service;
        match current(table, target) {
            // Quiesced: back to its weight (unless an operator set another
            // meanwhile).
            Some(now) if now.weight == 0 => table.edit_server(id, &saved).is_ok(),
            Some(_) => false,
            // Deleted: added again, same destination number and counters.
            None => table.add_server(id, &saved).is_ok(),
        }
    }

    /// After a reload: forgets targets the file no longer has, and takes
    /// the ones still down out of rotation again (with the file's values
    /// saved for their return).
    pub fn reapply(&mut self, table: &mut ServiceTable, targets: &[TargetKey]) {
        self.down.retain(|k, _| targets.contains(k));
        let keys: Vec<TargetKey> = self.down.keys().copied().collect();
        for key in keys {
            let id = key.service;
            match current(table, &key) {
                Some(params)
                    if params.weight != 0 || !self.quiescent.get(&id).copied().unwrap_or(false) =>
                {
                    self.take_out(table, id, &params);
                    self.down.insert(key, params);
                }
                // Already out of rotation (quiesced, or deleted by the file).
                _ => {}
            }
        }
    }
}

/// The data path's passive reports, by destination number, turned into
/// the checker's targets (the map follows every published state).
#[derive(Debug)]
pub struct PassiveReporter {
    targets: arc_swap::ArcSwap<Vec<Option<TargetKey>>>,
    handle: crate::health::PassiveHandle,
}

impl PassiveReporter {
    /// A reporter sending to `handle`.
    #[must_use]
    pub fn new(handle: crate::health::PassiveHandle) -> Self {
        Self {
            targets: arc_swap::ArcSwap::from_pointee(Vec::new()),
            handle,
        }
    }

    /// Maps destination numbers to targets as `snapshot` has them.
    pub fn follow(&self, snapshot: &crate::pipeline::Snapshot) {
        let map = snapshot
            .dests
            .iter()
            .map(|d| {
                d.server?;
                let svc = &snapshot.services[d.service as usize];
                Some(TargetKey {
                    service: ServiceId {
                        proto: svc.params.id.proto,
                        vip: svc.vip,
                        port: svc.port,
                    },
                    server: std::net::SocketAddr::new(d.addr, d.port),
                })
            })
            .collect();
        self.targets.store(std::sync::Arc::new(map));
    }
}

impl crate::pipeline::PassiveSink for PassiveReporter {
    fn report(&self, dest: crate::pipeline::DestIndex, failed: bool) {
        if let Some(Some(target)) = self.targets.load().get(dest as usize) {
            self.handle.report(target, failed);
        }
    }
}
