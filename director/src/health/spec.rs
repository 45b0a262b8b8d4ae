//! What the checker runs: the runtime model a `health` table resolves to
//! ([`CheckSpec`], one per real server, every default filled in), the keys
//! that name services and targets, and the resolution itself ([`resolve`],
//! [`targets`]). The table as written, its deserialisation and its checks
//! live in [`super::config`]; this side never sees an unchecked table.

use core::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::config::{
    CheckKind, DEFAULT_CONNECT_TIMEOUT, DEFAULT_INTERVAL, DEFAULT_NEGOTIATE_TIMEOUT,
    NegotiateService, merged,
};
use crate::config::{ClusterConfig, RealServer, VirtualService};
use xvs_proto::ServiceId;

// ---- what the checker runs ------------------------------------------------------

/// How one target is checked, every default filled in.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CheckSpec {
    /// The check itself.
    pub check: Check,
    /// Time between the starts of two checks.
    pub interval: Duration,
    /// Consecutive failures before down.
    pub failures: u32,
    /// Consecutive successes before up again.
    pub successes: u32,
    /// Start down until the first passed check.
    pub alpha: bool,
    /// Passive reports of the data path count.
    pub passive: bool,
    /// Run on each transition: program and arguments.
    pub hook: Option<Vec<String>>,
}

impl CheckSpec {
    /// A spec with the given check and every other default.
    #[must_use]
    pub fn new(check: Check) -> Self {
        Self {
            check,
            interval: DEFAULT_INTERVAL,
            failures: 1,
            successes: 1,
            alpha: false,
            passive: false,
            hook: None,
        }
    }

    /// The counts of the state machine.
    #[must_use]
    pub const fn counts(&self) -> super::Counts {
        super::Counts {
            failures: self.failures,
            successes: self.successes,
        }
    }
}

/// One kind of check with its parameters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Check {
    /// Always up.
    On,
    /// Always down.
    Off,
    /// TCP connect to `port`.
    Connect {
        /// Port.
        port: u16,
        /// Connect timeout.
        timeout: Duration,
    },
    /// Connect, send a request, judge the answer.
    Negotiate(Negotiate),
    /// ICMP echo to the server's address.
    Ping {
        /// Time to wait for the reply.
        timeout: Duration,
    },
    /// `command… VIP VPORT RIP RPORT`; exit 0 = up.
    External {
        /// Program and arguments.
        command: Vec<String>,
        /// Killed after this.
        timeout: Duration,
    },
}

/// A negotiate check.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Negotiate {
    /// Port.
    pub port: u16,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// TLS handshake, request and answer.
    pub negotiate_timeout: Duration,
    /// What is said.
    pub protocol: Protocol,
}

/// What a negotiate check says.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// HTTP or HTTPS.
    Http(HttpCheck),
    /// Raw TCP: send `request` (possibly nothing), expect `receive`.
    Tcp {
        /// Bytes sent after connecting (empty: a banner protocol).
        request: String,
        /// Text the answer must contain.
        receive: String,
    },
}

/// An HTTP(S) negotiate check.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HttpCheck {
    /// `Some` for HTTPS.
    pub tls: Option<TlsCheck>,
    /// Request path, starting with `/`.
    pub path: String,
    /// `Host` header; absent: the server's address (and port).
    pub virtualhost: Option<String>,
    /// Accepted status codes; empty = any 2xx.
    pub expect_status: Vec<u16>,
    /// Text the body must contain.
    pub receive: Option<String>,
}

/// TLS settings of an HTTPS check.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TlsCheck {
    /// Verify the certificate chain and name.
    pub verify: bool,
    /// Trust these CAs instead of the host's store.
    pub ca_file: Option<PathBuf>,
}

// ---- resolution -----------------------------------------------------------------

/// Identifies a checked target: a real server of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TargetKey {
    /// The service.
    pub service: ServiceId,
    /// The real server's address and port.
    pub server: SocketAddr,
}

impl core::fmt::Display for TargetKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{} real server {}", self.service.compact(), self.server)
    }
}

/// A target and how to check it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Which.
    pub key: TargetKey,
    /// How.
    pub spec: CheckSpec,
}

/// Whether a service quiesces its down servers (weight 0) instead of
/// removing them (`quiescent`, keepalived's `inhibit_on_failure`; default
/// no, as ldirectord's code and keepalived).
#[must_use]
pub fn quiescent(svc: &VirtualService) -> bool {
    svc.health
        .as_ref()
        .and_then(|h| h.quiescent)
        .unwrap_or(false)
}

/// Every health-checked target of a checked configuration, in file order.
/// Real servers of services without any `health` table are not targets.
#[must_use]
pub fn targets(config: &ClusterConfig) -> Vec<Target> {
    config
        .services
        .iter()
        .flat_map(|svc| {
            svc.real_servers.iter().filter_map(move |rs| {
                resolve(svc, rs).map(|spec| Target {
                    key: TargetKey {
                        service: svc.id(),
                        server: SocketAddr::new(rs.address, rs.effective_port(svc.port)),
                    },
                    spec,
                })
            })
        })
        .collect()
}

/// The spec of one real server of a service, `None` if neither has a
/// `health` table. The service must have passed [`check_service`](super::config::check_service).
#[must_use]
pub fn resolve(svc: &VirtualService, rs: &RealServer) -> Option<CheckSpec> {
    if svc.health.is_none() && rs.health.is_none() {
        return None;
    }
    let h = merged(svc.health.as_ref(), rs.health.as_ref());
    let port = h.port.unwrap_or_else(|| rs.effective_port(svc.port));
    let connect_timeout = h.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT);
    let check = match h.effective_check(svc.proto) {
        CheckKind::On => Check::On,
        CheckKind::Off => Check::Off,
        CheckKind::Connect => Check::Connect {
            port,
            timeout: connect_timeout,
        },
        CheckKind::Ping => Check::Ping {
            timeout: connect_timeout,
        },
        CheckKind::External => Check::External {
            command: h.command.clone().unwrap_or_default(),
            timeout: connect_timeout,
        },
        CheckKind::Negotiate => {
            let protocol = match h.effective_service(port) {
                NegotiateService::Tcp => Protocol::Tcp {
                    request: h.request.clone().unwrap_or_default(),
                    receive: h.receive.clone().unwrap_or_default(),
                },
                service => Protocol::Http(HttpCheck {
                    tls: (service == NegotiateService::Https).then(|| TlsCheck {
                        verify: h.verify_certificate.unwrap_or(h.ca_file.is_some()),
                        ca_file: h.ca_file.clone(),
                    }),
                    path: http_path(h.request.as_deref()),
                    virtualhost: h.virtualhost.clone(),
                    expect_status: h.expect_status.clone().unwrap_or_default(),
                    receive: h.receive.clone(),
                }),
            };
            Check::Negotiate(Negotiate {
                port,
                connect_timeout,
                negotiate_timeout: h.negotiate_timeout.unwrap_or(DEFAULT_NEGOTIATE_TIMEOUT),
                protocol,
            })
        }
    };
    Some(CheckSpec {
        check,
        interval: h.interval.unwrap_or(DEFAULT_INTERVAL),
        failures: h.failures.unwrap_or(1),
        successes: h.successes.unwrap_or(1),
        alpha: h.alpha.unwrap_or(false),
        passive: h.passive.unwrap_or(false),
        hook: h.hook.clone(),
    })
}

/// ldirectord adds a leading `/`; absent means `/`.
fn http_path(request: Option<&str>) -> String {
    match request {
        None | Some("") => "/".to_owned(),
        Some(p) if p.starts_with('/') => p.to_owned(),
        Some(p) => format!("/{p}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::config::tests::{TWO_SERVERS, parse, service};

    #[test]
    fn the_documented_example_parses_as_documented() {
        const DOC: &str = include_str!("../../CONFIG.md");
        let start = DOC.find("```toml\n").unwrap() + "```toml\n".len();
        let end = start + DOC[start..].find("```").unwrap();
        let c = parse(&DOC[start..end]).unwrap();
        assert!(quiescent(&c.services[0]));
        let t = targets(&c);
        assert_eq!(t.len(), 2);
        for target in &t {
            assert_eq!(target.spec.interval, Duration::from_secs(2));
            assert_eq!((target.spec.failures, target.spec.successes), (3, 2));
            assert_eq!(target.spec.hook.as_ref().map(Vec::len), Some(2));
        }
        let Check::Negotiate(plain) = &t[0].spec.check else {
            panic!("{:?}", t[0].spec)
        };
        assert_eq!(
            (plain.port, plain.connect_timeout, plain.negotiate_timeout),
            (80, Duration::from_millis(500), Duration::from_secs(1))
        );
        let Check::Negotiate(tls) = &t[1].spec.check else {
            panic!("{:?}", t[1].spec)
        };
        assert_eq!(tls.port, 8443);
        assert_eq!(
            tls.protocol,
            Protocol::Http(HttpCheck {
                tls: Some(TlsCheck {
                    verify: true,
                    ca_file: None
                }),
                path: "/health".into(),
                virtualhost: Some("www.example.com".into()),
                expect_status: vec![],
                receive: Some("OK".into()),
            })
        );
    }

    #[test]
    fn no_health_table_means_no_targets() {
        let c = parse(
            "[[services]]\nproto = \"tcp\"\nvip = \"203.0.113.10\"\nport = 80\n[[services.real_servers]]\naddress = \"192.0.2.11\"\n",
        )
        .unwrap();
        assert!(targets(&c).is_empty());
        assert!(!quiescent(&c.services[0]));
    }

    #[test]
    fn an_empty_health_table_connects_with_ldirectord_counts() {
        let c = parse(&service("tcp", "", TWO_SERVERS)).unwrap();
        let t = targets(&c);
        assert_eq!(t.len(), 2);
        assert_eq!(t[1].key.server, "192.0.2.12:80".parse().unwrap());
        assert_eq!(
            t[0].key.service.compact().to_string(),
            "tcp:203.0.113.10:80"
        );
        let spec = &t[0].spec;
        assert_eq!(
            spec.check,
            Check::Connect {
                port: 80,
                timeout: DEFAULT_CONNECT_TIMEOUT
            }
        );
        assert_eq!(
            (spec.interval, spec.failures, spec.successes),
            (DEFAULT_INTERVAL, 1, 1)
        );
        assert!(!spec.alpha && !spec.passive && spec.hook.is_none());
    }

    #[test]
    fn a_udp_service_pings_by_default() {
        let c = parse(&service("udp", "", TWO_SERVERS)).unwrap();
        assert!(matches!(targets(&c)[0].spec.check, Check::Ping { .. }));
    }

    #[test]
    fn negotiate_keys_imply_negotiate_and_server_tables_override() {
        let text = service(
            "tcp",
            "request = \"health\"\nreceive = \"OK\"\ninterval = \"500ms\"\nconnect_timeout = 2\nnegotiate_timeout = 1.5\nfailures = 3\nsuccesses = 2\nquiescent = true\nalpha = true\npassive = true\nhook = [\"/usr/local/bin/alert\", \"-q\"]",
            "
[[services.real_servers]]
address = \"192.0.2.11\"
port = 8080
method = \"nat\"

[[services.real_servers]]
address = \"192.0.2.12\"
[services.real_servers.health]
check = \"negotiate\"
service = \"https\"
virtualhost = \"www.example.com\"
expect_status = [200, 204]
receive = \"ready\"
ca_file = \"/etc/xvs/ca.pem\"
failures = 5
",
        );
        let c = parse(&text).unwrap();
        assert!(quiescent(&c.services[0]));
        let t = targets(&c);
        let first = &t[0].spec;
        assert_eq!(first.interval, Duration::from_millis(500));
        assert_eq!((first.failures, first.successes), (3, 2));
        assert!(first.alpha && first.passive);
        assert_eq!(
            first.hook.as_deref(),
            Some(&["/usr/local/bin/alert".to_owned(), "-q".to_owned()][..])
        );
        assert_eq!(
            first.check,
            Check::Negotiate(Negotiate {
                port: 8080,
                connect_timeout: Duration::from_secs(2),
                negotiate_timeout: Duration::from_millis(1500),
                protocol: Protocol::Http(HttpCheck {
                    tls: None,
                    path: "/health".into(),
                    virtualhost: None,
                    expect_status: vec![],
                    receive: Some("OK".into()),
                }),
            })
        );
        let second = &t[1].spec;
        assert_eq!((second.failures, second.successes), (5, 2));
        let Check::Negotiate(n) = &second.check else {
            panic!("{second:?}")
        };
        assert_eq!(
            n.protocol,
            Protocol::Http(HttpCheck {
                tls: Some(TlsCheck {
                    verify: true,
                    ca_file: Some("/etc/xvs/ca.pem".into())
                }),
                path: "/health".into(),
                virtualhost: Some("www.example.com".into()),
                expect_status: vec![200, 204],
                receive: Some("ready".into()),
            })
        );
        // The health tables survive a round trip.
        assert_eq!(parse(&c.to_toml().unwrap()).unwrap(), c);
    }

    #[test]
    fn inhibit_on_failure_is_quiescent() {
        let c = parse(&service("tcp", "inhibit_on_failure = true", TWO_SERVERS)).unwrap();
        assert!(quiescent(&c.services[0]));
    }

    #[test]
    fn port_443_negotiates_https_without_verification() {
        let text = service("tcp", "check = \"negotiate\"\nport = 443", TWO_SERVERS);
        let Check::Negotiate(n) = &targets(&parse(&text).unwrap())[0].spec.check else {
            panic!()
        };
        assert_eq!(n.port, 443);
        let Protocol::Http(h) = &n.protocol else {
            panic!()
        };
        assert_eq!(
            h.tls,
            Some(TlsCheck {
                verify: false,
                ca_file: None
            })
        );
        assert_eq!(h.path, "/");
    }

    #[test]
    fn external_and_tcp_checks_resolve() {
        let text = service(
            "tcp",
            "check = \"external\"\ncommand = [\"/bin/check\", \"x\"]\nconnect_timeout = \"250ms\"",
            "[[services.real_servers]]\naddress = \"192.0.2.11\"\n[services.real_servers.health]\ncheck = \"negotiate\"\nservice = \"tcp\"\nrequest = \"PING\\r\\n\"\nreceive = \"+PONG\"\n",
        );
        let c = parse(&text).unwrap();
        // The server's own check replaces the service's; the command is
        // inherited but unused.
        assert_eq!(
            targets(&c)[0].spec.check,
            Check::Negotiate(Negotiate {
                port: 80,
                connect_timeout: Duration::from_millis(250),
                negotiate_timeout: DEFAULT_NEGOTIATE_TIMEOUT,
                protocol: Protocol::Tcp {
                    request: "PING\r\n".into(),
                    receive: "+PONG".into()
                }
            })
        );
        let c = parse(&service(
            "tcp",
            "check = \"external\"\ncommand = [\"/bin/check\"]",
            TWO_SERVERS,
        ))
        .unwrap();
        assert_eq!(
            targets(&c)[0].spec.check,
            Check::External {
                command: vec!["/bin/check".into()],
                timeout: DEFAULT_CONNECT_TIMEOUT
            }
        );
    }
}
