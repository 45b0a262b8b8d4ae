//! Parsing, loading and the cross-field checks that run after
//! deserialisation; writing a config back ([`ClusterConfig::to_toml`]).

use super::*;

/// A field path under construction.
pub(super) fn path(steps: &[PathStep]) -> Vec<PathStep> {
    steps.to_vec()
}

pub(super) fn key(k: &str) -> PathStep {
    PathStep::Key(k.to_owned())
}

impl ClusterConfig {
    /// Reads and checks a configuration file.
    ///
    /// # Errors
    /// [`ConfigError::Read`] when the file cannot be read,
    /// [`ConfigError::Invalid`] when it is not a valid configuration.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let source = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&path.display().to_string(), &source)
    }

    /// Parses and checks configuration text; `file` names it in errors.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] when it is not a valid configuration.
    pub fn parse(file: &str, source: &str) -> Result<Self, ConfigError> {
        let config: Self = toml::from_str(source).map_err(|e| {
            let offset = e.span().map_or(0, |s| s.start);
            ConfigError::Invalid(Box::new(InvalidConfig {
                file: file.to_owned(),
                at: line_col(source, offset),
                field: render_path(&path_at(source, offset)),
                problem: Problem::Value(e.message().trim_end().to_owned()),
            }))
        })?;
        match config.check(source) {
            Ok(()) => Ok(config),
            Err((steps, problem)) => Err(ConfigError::Invalid(Box::new(InvalidConfig {
                file: file.to_owned(),
                at: line_col(source, offset_of(source, &steps)),
                field: render_path(&steps),
                problem,
            }))),
        }
    }

    /// Writes the configuration as TOML in the file format.
    ///
    /// # Errors
    /// Only if serialisation itself fails (it does not for valid configs).
    pub fn to_toml(&self) -> Result<String, toml::ser::Error> {
        toml::to_string_pretty(self)
    }

    /// The effective protocol timeouts.
    #[must_use]
    pub fn timeouts(&self) -> Timeouts {
        self.timeouts.effective()
    }

    /// Cross-field checks; the first failure with its field path.
    /// `source` is read only to name the line of a duplicate's first
    /// occurrence.
    fn check(&self, source: &str) -> Result<(), (Vec<PathStep>, Problem)> {
        let line_of = |p: &[PathStep]| line_col(source, offset_of(source, p)).line;

        for (i, iface) in self.interfaces.iter().enumerate() {
            if let Some(j) = self.interfaces[..i]
                .iter()
                .position(|o| o.name == iface.name)
            {
                return Err((
                    path(&[key("interfaces"), PathStep::Index(i), key("name")]),
                    Problem::DuplicateInterface {
                        name: iface.name.clone(),
                        first_line: line_of(&[key("interfaces"), PathStep::Index(j), key("name")]),
                    },
                ));
            }
            for (g, gateway) in iface.gateways.iter().enumerate() {
                let at = path(&[
                    key("interfaces"),
                    PathStep::Index(i),
                    key("gateways"),
                    PathStep::Index(g),
                ]);
                // Without addresses the live director takes them from the
                // kernel; the kernel then vouches for the gateway's route.
                if !iface.addresses.is_empty()
                    && !iface.addresses.iter().any(|n| n.contains(*gateway))
                {
                    return Err((
                        at,
                        Problem::GatewayNotOnLink {
                            interface: iface.name.clone(),
                            gateway: *gateway,
                        },
                    ));
                }
                if iface.gateways[..g]
                    .iter()
                    .any(|o| o.is_ipv4() == gateway.is_ipv4())
                {
                    let family = if gateway.is_ipv4() { "IPv4" } else { "IPv6" };
                    return Err((
                        at,
                        Problem::DuplicateGateway {
                            interface: iface.name.clone(),
                            family,
                        },
                    ));
                }
            }
        }

        for (i, svc) in self.services.iter().enumerate() {
            let at = |rest: &[PathStep]| {
                let mut p = vec![key("services"), PathStep::Index(i)];
                p.extend_from_slice(rest);
                p
            };
            if let Some(j) = self.services[..i]
                .iter()
                .position(|o| (o.proto, o.vip, o.port) == (svc.proto, svc.vip, svc.port))
            {
                return Err((
                    at(&[]),
                    Problem::DuplicateService {
                        proto: format!("{:?}", svc.proto).to_lowercase(),
                        vip: svc.vip,
                        port: svc.port,
                        first_line: line_of(&[key("services"), PathStep::Index(j)]),
                    },
                ));
            }
            if svc.scheduler.trim().is_empty() {
                return Err((at(&[key("scheduler")]), Problem::EmptyScheduler));
            }
            for (f, flag) in svc.sched_flags.iter().enumerate() {
                if svc.scheduler != flag.scheduler() {
                    return Err((
                        at(&[key("sched_flags"), PathStep::Index(f)]),
                        Problem::FlagWithoutScheduler {
                            flag: flag.name(),
                            needs: flag.scheduler(),
                            scheduler: svc.scheduler.clone(),
                        },
                    ));
                }
            }
            if svc.port == 0 && svc.persistence.is_none() {
                return Err((at(&[key("port")]), Problem::ZeroPortNotPersistent));
            }
            if let Some(Persistence {
                netmask: Some(prefix),
                ..
            }) = svc.persistence
            {
                let (family, max) = if svc.vip.is_ipv4() {
                    ("IPv4", 32)
                } else {
                    ("IPv6", 128)
                };
                if prefix > max {
                    return Err((
                        at(&[key("persistence"), key("netmask")]),
                        Problem::NetmaskFamily {
                            prefix,
                            family,
                            max,
                        },
                    ));
                }
            }
            let servers = svc
                .real_servers
                .iter()
                .enumerate()
                .map(|(r, rs)| (at(&[key("real_servers"), PathStep::Index(r)]), rs))
                .chain(svc.fallback.iter().map(|rs| (at(&[key("fallback")]), rs)));
            for (rs_path, rs) in servers {
                let field = |k: &str| {
                    let mut p = rs_path.clone();
                    p.push(key(k));
                    p
                };
                if rs.method != ForwardMethod::Tunnel && rs.address.is_ipv4() != svc.vip.is_ipv4() {
                    return Err((
                        field("address"),
                        Problem::FamilyMismatch {
                            method: rs.method,
                            vip: svc.vip,
                            server: rs.address,
                        },
                    ));
                }
                if let Some(rport) = rs.port
                    && rs.method != ForwardMethod::Nat
                    && rport != svc.port
                {
                    return Err((
                        field("port"),
                        Problem::PortChange {
                            method: rs.method,
                            vport: svc.port,
                            rport,
                        },
                    ));
                }
                if rs.l_threshold > rs.u_threshold {
                    return Err((
                        field("l_threshold"),
                        Problem::ThresholdOrder {
                            lower: rs.l_threshold,
                            upper: rs.u_threshold,
                        },
                    ));
                }
            }
            crate::health::config::check_service(svc, &at)
                .map_err(|(p, problem)| (p, Problem::Health(problem)))?;
            for (r, rs) in svc.real_servers.iter().enumerate() {
                let port = rs.effective_port(svc.port);
                if let Some(first) = svc.real_servers[..r]
                    .iter()
                    .position(|o| (o.address, o.effective_port(svc.port)) == (rs.address, port))
                {
                    return Err((
                        at(&[key("real_servers"), PathStep::Index(r)]),
                        Problem::DuplicateRealServer {
                            address: rs.address,
                            port,
                            first_line: line_of(&at(&[
                                key("real_servers"),
                                PathStep::Index(first),
                            ])),
                        },
                    ));
                }
            }
        }

        if let Some(agents) = &self.agents {
            if agents.keys.is_empty() {
                return Err((path(&[key("agents")]), Problem::NoAgentKey));
            }
            let at = |k: usize, field: &str| {
                path(&[key("agents"), key("keys"), PathStep::Index(k), key(field)])
            };
            for (k, agent_key) in agents.keys.iter().enumerate() {
                if let Some(first) = agents.keys[..k].iter().position(|o| o.id == agent_key.id) {
                    return Err((
                        at(k, "id"),
                        Problem::DuplicateAgentKey {
                            id: agent_key.id,
                            first_line: line_of(&at(first, "id")),
                        },
                    ));
                }
                agent_key
                    .read()
                    .map_err(|e| (at(k, "file"), Problem::AgentKey(e)))?;
            }
        }

        let names: Vec<&str> = self.interfaces.iter().map(|i| i.name.as_str()).collect();
        if let Some(ha) = &self.ha {
            ha.check(&names).map_err(|(field, problem)| {
                (path(&[key("ha"), key(field)]), Problem::Ha(problem))
            })?;
        }
        if let Some(sync) = &self.sync {
            sync.check(&names, self.ha.as_ref())
                .map_err(|(field, problem)| {
                    (path(&[key("sync"), key(field)]), Problem::Sync(problem))
                })?;
        }
        for (n, nb) in self.neighbours.iter().enumerate() {
            if !names.contains(&nb.interface.as_str()) {
                let known = if names.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", names.join(", "))
                };
                return Err((
                    path(&[key("neighbours"), PathStep::Index(n), key("interface")]),
                    Problem::UnknownInterface {
                        name: nb.interface.clone(),
                        known,
                    },
                ));
            }
            if let Some(j) = self.neighbours[..n].iter().position(|o| {
                (o.interface.as_str(), o.address) == (nb.interface.as_str(), nb.address)
            }) {
                return Err((
                    path(&[key("neighbours"), PathStep::Index(n)]),
                    Problem::DuplicateNeighbour {
                        interface: nb.interface.clone(),
                        address: nb.address,
                        first_line: line_of(&[key("neighbours"), PathStep::Index(j)]),
                    },
                ));
            }
        }
        Ok(())
    }
}
