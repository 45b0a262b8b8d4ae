//! Persistence templates (`ipvsadm -p TIMEOUT -M NETMASK`).
//!
//! A persistent service remembers, per client network, which real server it
//! chose: a *template* keyed on (protocol, client address masked with the
//! service netmask, virtual address or fwmark, virtual port or 0). While a
//! template exists and its server is in the service — and not quiesced when
//! `expire_quiescent_template` is set — new connections of that client go
//! to the same server, even if it is OVERLOADed or quiesced: the template
//! check looks at neither, as in the kernel. Otherwise the scheduler
//! chooses and a new template is made.
//!
//! Timer rules (`ip_vs_conn_expire`): every reuse re-arms the template to
//! now + its timeout; when it fires while connections still depend on it,
//! it is re-armed for 60 s and its timeout becomes 60 s; it is freed only
//! on a firing with no dependent connection. A template found invalid is
//! unhashed (never found again) but lives on until its timer frees it,
//! still counted in its server's `persistconns`.

use core::net::IpAddr;
use std::collections::{BTreeSet, HashMap};

use crate::Millis;
use crate::server::{RealServerId, ServerList};

/// Timeout a template takes when it fires with connections depending on it.
pub const REARM_WHEN_CONTROLLING: Millis = 60_000;
/// ipvsadm's default persistence timeout (`-p` without a value): 360 s.
pub const DEFAULT_TIMEOUT: Millis = 360_000;

/// A service's persistence settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PersistConfig {
    /// Template timeout (`-p`).
    pub timeout: Millis,
    /// Client address granularity for IPv4 (`-M`, default 255.255.255.255).
    pub netmask_v4: u32,
    /// Client prefix length for IPv6 (default 128).
    pub prefix_v6: u8,
    /// sysctl `expire_quiescent_template`: a template whose server has
    /// weight 0 is ignored (and a new choice made).
    pub expire_quiescent_template: bool,
}

impl PersistConfig {
    /// Persistence for `timeout` with per-address granularity.
    #[must_use]
    pub const fn new(timeout: Millis) -> Self {
        Self {
            timeout,
            netmask_v4: u32::MAX,
            prefix_v6: 128,
            expire_quiescent_template: false,
        }
    }

    /// The client address masked to the template's granularity.
    #[must_use]
    pub fn client_net(&self, client: &IpAddr) -> IpAddr {
        match client {
            IpAddr::V4(a) => IpAddr::V4((u32::from(*a) & self.netmask_v4).into()),
            IpAddr::V6(a) => {
                let bits = u32::from(self.prefix_v6.min(128));
                let mask = if bits == 0 {
                    0
                } else {
                    u128::MAX << (128 - bits)
                };
                IpAddr::V6((u128::from(*a) & mask).into())
            }
        }
    }
}

/// What a template is keyed on besides protocol, client network and port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TemplateVaddr {
    /// The virtual address.
    Addr(IpAddr),
    /// A firewall mark (fwmark services, protocol IPPROTO_IP).
    Fwmark(u32),
}

/// A template's key (`<protocol, caddr & mask, 0, vaddr|fwmark, vport|0>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TemplateKey {
    /// IP protocol number (0 for fwmark templates).
    pub proto: u8,
    /// Client address masked with the service netmask.
    pub client_net: IpAddr,
    /// Virtual address or fwmark.
    pub vaddr: TemplateVaddr,
    /// The service port, or 0 (port-zero services, FTP, fwmark).
    pub vport: u16,
}

/// Identifies a live template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TemplateId(pub u32);

/// A template's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// Its key.
    pub key: TemplateKey,
    /// The server it pins clients to.
    pub server: RealServerId,
    /// Current timeout (the service's, or 60 s once it fired while
    /// controlling connections).
    pub timeout: Millis,
    /// When its timer fires.
    pub expires: Millis,
    /// Connections created under it and still alive.
    pub n_control: u32,
    /// Still findable by its key (false once invalidated).
    pub hashed: bool,
}

/// The templates of one service.
#[derive(Debug, Default, Clone)]
pub struct Templates {
    by_key: HashMap<TemplateKey, TemplateId>,
    slab: Vec<Option<Template>>,
    free: Vec<u32>,
    timers: BTreeSet<(Millis, u32)>,
}

impl Templates {
    /// No templates.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of live templates (unhashed ones included).
    #[must_use]
    pub fn len(&self) -> usize {
        self.slab.len() - self.free.len()
    }

    /// True when there is none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A template by id.
    #[must_use]
    pub fn get(&self, id: TemplateId) -> Option<&Template> {
        self.slab.get(id.0 as usize).and_then(Option::as_ref)
    }

    /// The hashed template for `key`, if any.
    #[must_use]
    pub fn find(&self, key: &TemplateKey) -> Option<TemplateId> {
        self.by_key.get(key).copied()
    }

    /// `ip_vs_ct_in_get` + `ip_vs_check_template`: the template for `key`
    /// if its server may still be used; an unusable one is unhashed (its
    /// timer keeps running).
    pub fn lookup_valid(
        &mut self,
        key: &TemplateKey,
        servers: &ServerList,
        expire_quiescent_template: bool,
    ) -> Option<(TemplateId, RealServerId)> {
        let id = self.find(key)?;
        let server = self.get(id)?.server;
        let valid = servers
            .get(server)
            .is_some_and(|s| s.is_available() && !(expire_quiescent_template && s.weight() == 0));
        if valid {
            return Some((id, server));
        }
        self.by_key.remove(key);
        if let Some(t) = self.slab[id.0 as usize].as_mut() {
            t.hashed = false;
        }
        None
    }

    /// Creates a template bound to `server` (its `persistconns` and the
    /// upper threshold rule apply). The caller then attaches the connection
    /// with [`Self::attach`].
    pub fn create(
        &mut self,
        key: TemplateKey,
        server: RealServerId,
        timeout: Millis,
        now: Millis,
        servers: &ServerList,
    ) -> TemplateId {
        servers.bind_template(server);
        let t = Template {
            key,
            server,
            timeout,
            expires: now + timeout,
            n_control: 0,
            hashed: true,
        };
        let id = match self.free.pop() {
            Some(i) => {
                self.slab[i as usize] = Some(t);
                i
            }
            None => {
                self.slab.push(Some(t));
                (self.slab.len() - 1) as u32
            }
        };
        self.by_key.insert(key, TemplateId(id));
        self.timers.insert((now + timeout, id));
        TemplateId(id)
    }

    /// A new connection is created under template `id`: it now depends on
    /// it, and the template's timer is re-armed to now + its timeout.
    pub fn attach(&mut self, id: TemplateId, now: Millis) {
        let Some(t) = self.slab.get_mut(id.0 as usize).and_then(Option::as_mut) else {
            return;
        };
        t.n_control += 1;
        self.timers.remove(&(t.expires, id.0));
        t.expires = now + t.timeout;
        self.timers.insert((t.expires, id.0));
    }

    /// A connection created under template `id` is gone. The template's
    /// timer is not touched.
    pub fn release(&mut self, id: TemplateId) {
        if let Some(t) = self.slab.get_mut(id.0 as usize).and_then(Option::as_mut) {
            t.n_control = t.n_control.saturating_sub(1);
        }
    }

    /// Calls `f` with each hashed (findable) template among the slots
    /// `from..from + budget` and returns where the next call starts, or
    /// `None` once every slot was examined: a resumable walk, so that the
    /// caller (the state sync's full transfer) can let go of the lock
    /// between chunks.
    pub fn walk(&self, from: usize, budget: usize, mut f: impl FnMut(&Template)) -> Option<usize> {
        let end = from.saturating_add(budget).min(self.slab.len());
        for t in self.slab[from.min(end)..end].iter().flatten() {
            if t.hashed {
                f(t);
            }
        }
        (end < self.slab.len()).then_some(end)
    }

    /// The peer director's template for `key` (the state sync's import):
    /// the hashed template for `key` is pinned to `server` and fires at
    /// `expires` (its timeout stays `timeout`). One pinned to another
    /// server is unhashed first, as an invalid one is, and a new one is
    /// made; a new one is bound to its server (`persistconns`).
    pub fn upsert(
        &mut self,
        key: TemplateKey,
        server: RealServerId,
        timeout: Millis,
        expires: Millis,
        servers: &ServerList,
    ) -> TemplateId {
        if let Some(id) = self.find(&key) {
            let t = self.slab[id.0 as usize]
                .as_mut()
                .expect("a hashed template is live");
            if t.server == server {
                self.timers.remove(&(t.expires, id.0));
                t.expires = expires;
                self.timers.insert((expires, id.0));
                return id;
            }
            t.hashed = false;
            self.by_key.remove(&key);
        }
        let id = self.create(key, server, timeout, expires, servers);
        // `create` armed it for `expires + timeout`: fire at `expires`.
        let t = self.slab[id.0 as usize].as_mut().expect("just made");
        self.timers.remove(&(t.expires, id.0));
        t.expires = expires;
        self.timers.insert((expires, id.0));
        id
    }

    /// Runs every template timer due at or before `now`, each at its own
    /// time: re-arm by 60 s while connections depend on it, free otherwise
    /// (unbinding it from its server). Returns the number freed.
    pub fn expire(&mut self, now: Millis, servers: &ServerList) -> usize {
        let mut freed = 0;
        while let Some(&(at, idx)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.pop_first();
            let Some(t) = self.slab[idx as usize].as_mut() else {
                continue;
            };
            if t.n_control > 0 {
                t.timeout = REARM_WHEN_CONTROLLING;
                t.expires = at + REARM_WHEN_CONTROLLING;
                self.timers.insert((t.expires, idx));
                continue;
            }
            let t = self.slab[idx as usize].take();
            if let Some(t) = t {
                if t.hashed && self.by_key.get(&t.key) == Some(&TemplateId(idx)) {
                    self.by_key.remove(&t.key);
                }
                servers.unbind_template(t.server);
            }
            self.free.push(idx);
            freed += 1;
        }
        freed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::RealServerSpec;
    use core::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn synced_templates_are_made_refreshed_and_moved_and_walked_in_chunks() {
        let mut servers = ServerList::new();
        let a = servers
            .add(&RealServerSpec::new(
                IpAddr::V4(Ipv4Addr::new(192, 0, 2, 11)),
                80,
                1,
            ))
            .unwrap();
        let b = servers
            .add(&RealServerSpec::new(
                IpAddr::V4(Ipv4Addr::new(192, 0, 2, 12)),
                80,
                1,
            ))
            .unwrap();
        let key = |last| TemplateKey {
            proto: 6,
            client_net: IpAddr::V4(Ipv4Addr::new(198, 51, 100, last)),
            vaddr: TemplateVaddr::Addr(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 10))),
            vport: 80,
        };
        let mut t = Templates::new();
        let id = t.upsert(key(1), a, 300_000, 5_000, &servers);
        assert_eq!(t.get(id).unwrap().expires, 5_000);
        assert_eq!(servers.get(a).unwrap().persistent_conns(), 1);
        assert_eq!(
            t.upsert(key(1), a, 300_000, 9_000, &servers),
            id,
            "refreshed"
        );
        assert_eq!(t.get(id).unwrap().expires, 9_000);
        assert_eq!(t.expire(8_999, &servers), 0, "the old timer is gone");
        let moved = t.upsert(key(1), b, 300_000, 9_000, &servers);
        assert_ne!(moved, id);
        assert_eq!(t.find(&key(1)), Some(moved));
        assert!(
            !t.get(id).unwrap().hashed,
            "the old one waits for its timer"
        );
        for last in 2..10 {
            t.upsert(key(last), a, 300_000, 9_000, &servers);
        }
        let mut seen = Vec::new();
        let mut at = Some(0);
        while let Some(from) = at {
            at = t.walk(from, 3, |tpl| seen.push(tpl.key));
        }
        assert_eq!(seen.len(), 9, "hashed ones only, each once");
        assert_eq!(t.expire(9_000, &servers), 10);
        assert_eq!(servers.get(a).unwrap().persistent_conns(), 0);
        assert_eq!(servers.get(b).unwrap().persistent_conns(), 0);
    }

    #[test]
    fn netmask_and_prefix_set_the_granularity() {
        let p = PersistConfig {
            netmask_v4: 0xFFFF_FF00,
            prefix_v6: 64,
            ..PersistConfig::new(300_000)
        };
        assert_eq!(
            p.client_net(&IpAddr::V4(Ipv4Addr::new(198, 51, 100, 77))),
            IpAddr::V4(Ipv4Addr::new(198, 51, 100, 0))
        );
        assert_eq!(
            p.client_net(&IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 2, 3, 4, 5, 6))),
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 2, 0, 0, 0, 0))
        );
    }
}
