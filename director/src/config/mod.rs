//! The cluster configuration file (TOML): interfaces, virtual services and
//! their real servers, connection-table capacity, timeouts, the agents'
//! load reports ([`agents`]) and — for replay and tests — static
//! neighbours. `director/CONFIG.md` documents every key.
//!
//! # Contract
//! * [`ClusterConfig::load`] / [`ClusterConfig::parse`] return a config that
//!   has passed every check below, or a [`ConfigError`] naming the file,
//!   the line and column, the field path (`services[1].real_servers[0].weight`),
//!   what is wrong and what to do. Unknown keys are errors
//!   (`deny_unknown_fields`), so a typo never silently means "default".
//! * Value checks (ranges, MAC and address syntax, method words) run while
//!   deserialising and carry toml's span; cross-field checks (duplicates,
//!   address families, DR/TUN ports, interface references, thresholds)
//!   run afterwards and find their line by the field's path.
//! * The rules follow ipvsadm and the kernel: a real server's port
//!   defaults to the service's; DR and TUN cannot change the port; NAT and
//!   DR need the real server in the VIP's address family (only tunnelling
//!   may cross families); a port-0 service must be persistent; a lower
//!   threshold above the upper one is refused; `sh-*`/`mh-*` flags need
//!   their scheduler. The scheduler name is kept as written; the registry of
//!   the scheduler crate validates it when services are built.
//! * `health` tables (`[services.health]` and a real server's overrides)
//!   are [`crate::health::config`]'s: their values are checked while
//!   deserialising, their combinations by
//!   [`check_service`](crate::health::config::check_service).
//! * [`ClusterConfig::to_toml`] writes a config back in the same format, so
//!   `parse(to_toml(c)) == c`.

pub mod agents;
mod error;
pub mod ha;
pub mod location;
mod model;
pub mod sync;
mod validate;
mod values;

use core::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::de::{self, Deserializer};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};

use crate::conn::ForwardMethod;
use crate::conn::state::{TcpState, Timeouts};
use crate::health::config::{HealthConfig, HealthProblem};
use location::{LineCol, PathStep, line_col, offset_of, path_at, render_path};
use xvs_proto::{Protocol, ServiceId};

pub use crate::types::{InterfaceRole, IpNet};
pub use agents::{AgentKey, AgentsConfig, KeyProblem, SilenceAction};
pub use error::*;
pub use ha::{HaAuth, HaConfig, HaFamily, HaKeyProblem, HaProblem, TrackScript};
pub use model::*;
pub use sync::{SyncConfig, SyncProblem, SyncRole};
use values::*;

#[cfg(test)]
mod tests {

    use super::*;

    const EXAMPLE: &str = include_str!("../../../testbed/configs/nat-3rs.toml");

    /// A valid base: one interface per side, one NAT service with one server.
    fn base(extra: &str) -> String {
        format!(
            r#"[[interfaces]]
name = "c0"
role = "client"
mac = "02:00:00:00:01:01"

[[interfaces]]
name = "s0"
role = "server"
mac = "02:00:00:00:02:01"

[[services]]
proto = "tcp"
vip = "203.0.113.10"
port = 80

[[services.real_servers]]
address = "192.0.2.11"
method = "nat"
{extra}"#
        )
    }

    /// Parses `text` expecting an error; returns (line, field, problem, message).
    fn fail(text: &str) -> (usize, String, Problem, String) {
        let err = ClusterConfig::parse("cluster.toml", text).unwrap_err();
        let msg = err.to_string();
        match err {
            ConfigError::Invalid(invalid) => (invalid.at.line, invalid.field, invalid.problem, msg),
            ConfigError::Read { .. } => panic!("not a read error"),
        }
    }

    #[test]
    fn gateways_must_be_on_link_and_one_per_family() {
        let with = |gateways: &str| {
            base("").replacen(
                "mac = \"02:00:00:00:01:01\"",
                &format!("mac = \"02:00:00:00:01:01\"\naddresses = [\"198.51.100.1/24\", \"2001:db8:1::1/64\"]\ngateways = [{gateways}]"),
                1,
            )
        };
        assert!(
            ClusterConfig::parse(
                "cluster.toml",
                &with("\"198.51.100.254\", \"2001:db8:1::fe\"")
            )
            .is_ok()
        );
        let (line, field, problem, msg) = fail(&with("\"192.0.2.254\""));
        assert_eq!(
            (line, field.as_str()),
            (6, "interfaces[0].gateways[0]"),
            "{msg}"
        );
        assert!(matches!(problem, Problem::GatewayNotOnLink { .. }), "{msg}");
        let (_, field, problem, msg) = fail(&with("\"198.51.100.254\", \"198.51.100.253\""));
        assert_eq!(field, "interfaces[0].gateways[1]", "{msg}");
        assert!(
            matches!(problem, Problem::DuplicateGateway { family: "IPv4", .. }),
            "{msg}"
        );
    }

    #[test]
    fn the_example_parses_with_its_three_weighted_servers() {
        let c = ClusterConfig::parse("nat-3rs.toml", EXAMPLE).unwrap();
        assert_eq!(c.interfaces.len(), 2);
        assert_eq!(c.interfaces[0].role, InterfaceRole::Client);
        assert_eq!(c.interfaces[1].mac, Some(MacAddr([2, 0, 0, 0, 2, 1])));
        assert_eq!(c.interfaces[0].addresses[0].to_string(), "198.51.100.1/24");
        assert_eq!(c.conn_table.capacity, 1 << 20);
        assert_eq!(c.conn_table.max_destinations, 4096);
        assert_eq!(c.services.len(), 2);
        for svc in &c.services {
            assert_eq!(svc.scheduler, "wlc");
            assert_eq!(svc.port, 80);
            let weights: Vec<_> = svc.real_servers.iter().map(|r| r.weight).collect();
            assert_eq!(weights, [1, 2, 3]);
            assert!(
                svc.real_servers
                    .iter()
                    .all(|r| r.method == ForwardMethod::Nat)
            );
        }
        assert!(c.services[1].vip.is_ipv6());
        assert_eq!(c.neighbours.len(), 8);
        assert_eq!(c.timeouts().ipvsadm_triple(), (900, 120, 300));
        let file = ClusterConfig::load(Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../testbed/configs/nat-3rs.toml"
        )))
        .unwrap();
        assert_eq!(file, c);
    }

    #[test]
    fn defaults_fill_a_minimal_file_and_survive_a_round_trip() {
        let c = ClusterConfig::parse("min.toml", &base("")).unwrap();
        let svc = &c.services[0];
        assert_eq!(svc.scheduler, "wlc");
        assert!(svc.sched_flags.is_empty() && !svc.sloppy);
        assert_eq!(svc.persistence, None);
        assert_eq!(svc.fallback, None);
        let rs = &svc.real_servers[0];
        assert_eq!(
            (rs.port, rs.weight, rs.u_threshold, rs.l_threshold),
            (None, 1, 0, 0)
        );
        assert_eq!(rs.effective_port(80), 80);
        assert_eq!(c.interfaces[0].mtu, None);
        assert_eq!(c.interfaces[0].effective_mtu(), DEFAULT_MTU);
        assert_eq!(c.conn_table, ConnTableConfig::default());
        assert_eq!(c.timeouts, TimeoutsConfig::default());
        assert_eq!(c.timeouts(), Timeouts::default());
        let empty = ClusterConfig::parse("empty.toml", "").unwrap();
        assert!(empty.services.is_empty() && empty.interfaces.is_empty());
        for cfg in [c, empty, ClusterConfig::parse("x", EXAMPLE).unwrap()] {
            let text = cfg.to_toml().unwrap();
            assert_eq!(
                ClusterConfig::parse("again.toml", &text).unwrap(),
                cfg,
                "{text}"
            );
        }
    }

    #[test]
    fn a_live_interface_needs_only_its_name_and_role() {
        // The live director reads MAC, MTU, addresses and gateways from the
        // kernel; a gateway without addresses cannot be checked on-link here.
        let text =
            "[[interfaces]]\nname = \"eth0\"\nrole = \"client\"\ngateways = [\"198.51.100.254\"]\n";
        let c = ClusterConfig::parse("live.toml", text).unwrap();
        let iface = &c.interfaces[0];
        assert_eq!((iface.mac, iface.mtu), (None, None));
        assert!(iface.addresses.is_empty());
        assert_eq!(
            ClusterConfig::parse("again.toml", &c.to_toml().unwrap()).unwrap(),
            c
        );
    }

    #[test]
    fn every_optional_key_parses() {
        let text = r#"
[conn_table]
capacity = 1000

[timeouts]
tcp = 3600
tcpfin = 30
udp = 45
icmp = 10
[timeouts.tcp_states]
syn_recv = 20
established = 100
close = 5

[[services]]
proto = "udp"
vip = "2001:db8::10"
port = 0
scheduler = "mh"
sched_flags = ["mh-port", "mh-fallback"]
sloppy = true
persistence = { timeout = 600, netmask = 64 }
fallback = { address = "2001:db8::99", port = 0, method = "masq" }

[[services.real_servers]]
address = "192.0.2.11"
port = 0
method = "ipip"
weight = 0
u_threshold = 100
l_threshold = 50

[[services]]
proto = "tcp"
vip = "203.0.113.10"
port = 443
scheduler = "sh"
sched_flags = ["sh-port"]
persistence = { netmask = "255.255.255.0" }

[[services.real_servers]]
address = "192.0.2.12"
method = "Route"
"#;
        let c = ClusterConfig::parse("all.toml", text).unwrap();
        assert_eq!(c.conn_table.capacity, 1000);
        let t = c.timeouts();
        assert_eq!(
            t.ipvsadm_triple(),
            (3600, 30, 45),
            "tcp wins over tcp_states.established"
        );
        assert_eq!(t.tcp[TcpState::SynRecv as usize], 20);
        assert_eq!(t.tcp[TcpState::Close as usize], 5);
        assert_eq!(t.icmp, 10);
        let udp = &c.services[0];
        assert_eq!(udp.proto, Protocol::Udp);
        assert_eq!(udp.sched_flags, [SchedFlag::MhPort, SchedFlag::MhFallback]);
        assert_eq!(
            udp.persistence,
            Some(Persistence {
                timeout: 600,
                netmask: Some(64)
            })
        );
        assert_eq!(udp.fallback.as_ref().unwrap().method, ForwardMethod::Nat);
        assert_eq!(
            udp.real_servers[0].method,
            ForwardMethod::Tunnel,
            "TUN may cross families"
        );
        assert_eq!(udp.real_servers[0].weight, 0);
        let tcp = &c.services[1];
        assert_eq!(
            tcp.persistence,
            Some(Persistence {
                timeout: 360,
                netmask: Some(24)
            })
        );
        assert_eq!(tcp.real_servers[0].method, ForwardMethod::DirectRouting);
        let again = ClusterConfig::parse("again.toml", &c.to_toml().unwrap()).unwrap();
        assert_eq!(again, c);
    }

    #[test]
    fn the_issue_example_message_reads_as_specified() {
        let (line, field, problem, msg) = fail(&base("weight = -3\n"));
        assert_eq!(line, 19);
        assert_eq!(field, "services[0].real_servers[0].weight");
        assert!(matches!(problem, Problem::Value(_)));
        assert_eq!(
            msg,
            "cluster.toml:19:10: services[0].real_servers[0].weight: -3 is not a valid weight: use an integer from 0 to 65535"
        );
    }

    #[test]
    fn value_errors_name_line_field_and_remedy() {
        let cases: &[(&str, usize, &str, &str)] = &[
            (
                "weight = 70000\n",
                19,
                "services[0].real_servers[0].weight",
                "70000 is not a valid weight",
            ),
            (
                "port = 65536\n",
                19,
                "services[0].real_servers[0].port",
                "65536 is not a valid port",
            ),
            (
                "u_threshold = -1\n",
                19,
                "services[0].real_servers[0].u_threshold",
                "not a valid connection threshold",
            ),
            (
                "wieght = 3\n",
                19,
                "services[0].real_servers[0].wieght",
                "unknown field `wieght`",
            ),
            (
                "weight = \"heavy\"\n",
                19,
                "services[0].real_servers[0].weight",
                "invalid type",
            ),
        ];
        for (extra, line, field, words) in cases {
            let (l, f, problem, msg) = fail(&base(extra));
            assert!(matches!(problem, Problem::Value(_)), "{extra}");
            assert!(msg.contains(words), "{extra}: {msg}");
            assert_eq!((l, f.as_str()), (*line, *field), "{extra}: {msg}");
        }
    }

    #[test]
    fn bad_method_and_address_words_are_named() {
        let text = base("").replace("method = \"nat\"", "method = \"bounce\"");
        let (line, field, _, msg) = fail(&text);
        assert_eq!(
            (line, field.as_str()),
            (18, "services[0].real_servers[0].method"),
            "{msg}"
        );
        assert!(
            msg.contains("\"bounce\" is not a forwarding method: use \"nat\", \"dr\" or \"tun\""),
            "{msg}"
        );
        let text = base("").replace("192.0.2.11", "192.0.2.300");
        let (line, field, _, msg) = fail(&text);
        assert_eq!(
            (line, field.as_str()),
            (17, "services[0].real_servers[0].address"),
            "{msg}"
        );
        for (word, method) in [
            ("masq", ForwardMethod::Nat),
            ("Route", ForwardMethod::DirectRouting),
            ("gate", ForwardMethod::DirectRouting),
            ("tunnel", ForwardMethod::Tunnel),
            ("IPIP", ForwardMethod::Tunnel),
        ] {
            assert_eq!(parse_method(word), Some(method), "{word}");
        }
    }

    #[test]
    fn malformed_mac_names_its_interface_line() {
        let text = base("").replace("mac = \"02:00:00:00:02:01\"", "mac = \"02:00:00:00:02\"");
        let (line, field, _, msg) = fail(&text);
        assert_eq!((line, field.as_str()), (9, "interfaces[1].mac"), "{msg}");
        assert!(
            msg.contains("\"02:00:00:00:02\" is not a MAC address: write six hex pairs"),
            "{msg}"
        );
        for bad in [
            "02:00:00:00:02:0g",
            "02:00:00:00:02:01:03",
            "2:00:00:00:02:01",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
        }
        // The packet layer's parser also takes '-' separators.
        assert_eq!(
            "02-00-00-00-02-01".parse::<MacAddr>(),
            "02:00:00:00:02:01".parse::<MacAddr>()
        );
        assert_eq!(
            "02:AB:cd:00:00:01".parse::<MacAddr>().unwrap().to_string(),
            "02:ab:cd:00:00:01"
        );
    }

    #[test]
    fn bad_addresses_masks_and_mtus_are_value_errors() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "mac = \"02:00:00:00:02:01\"",
                "mac = \"02:00:00:00:02:01\"\naddresses = [\"192.0.2.1/33\"]",
                "bad prefix length: use 0 to 32",
            ),
            (
                "mac = \"02:00:00:00:02:01\"",
                "mac = \"02:00:00:00:02:01\"\naddresses = [\"server\"]",
                "is not an address",
            ),
            (
                "mac = \"02:00:00:00:02:01\"",
                "mac = \"02:00:00:00:02:01\"\nmtu = 40",
                "40 is not a valid MTU",
            ),
            (
                "port = 80\n",
                "port = 80\npersistence = { netmask = \"255.0.255.0\" }\n",
                "not contiguous",
            ),
            (
                "port = 80\n",
                "port = 80\npersistence = { timeout = 0 }\n",
                "0 is not a valid persistence timeout",
            ),
            (
                "role = \"server\"",
                "role = \"backend\"",
                "unknown variant `backend`",
            ),
        ];
        for (from, to, words) in cases {
            let text = base("").replacen(from, to, 1);
            assert_ne!(text, base(""));
            let (_, _, problem, msg) = fail(&text);
            assert!(matches!(problem, Problem::Value(_)));
            assert!(msg.contains(words), "{to}: {msg}");
        }
    }

    #[test]
    fn zero_capacity_is_refused_on_its_line() {
        let text = format!("{}\n[conn_table]\ncapacity = 0\n", base(""));
        let (line, field, _, msg) = fail(&text);
        assert_eq!((line, field.as_str()), (21, "conn_table.capacity"), "{msg}");
        assert!(
            msg.contains("capacity 0 cannot hold any connection: use at least 1"),
            "{msg}"
        );
    }

    #[test]
    fn max_destinations_out_of_range_is_refused_on_its_line() {
        let text = format!("{}\n[conn_table]\nmax_destinations = 0\n", base(""));
        let (line, field, _, msg) = fail(&text);
        assert_eq!(
            (line, field.as_str()),
            (21, "conn_table.max_destinations"),
            "{msg}"
        );
        assert!(
            msg.contains(
                "0 is not a valid number of destinations: use an integer from 1 to 1048576"
            ),
            "{msg}"
        );
    }

    #[test]
    fn syntax_errors_carry_their_line() {
        let text = base("weight = \n");
        let (line, _, problem, msg) = fail(&text);
        assert_eq!(line, 19, "{msg}");
        assert!(matches!(problem, Problem::Value(_)));
    }

    #[test]
    fn duplicate_service_points_at_both() {
        let text = format!(
            "{}\n[[services]]\nproto = \"tcp\"\nvip = \"203.0.113.10\"\nport = 80\n",
            base("")
        );
        let (line, field, problem, msg) = fail(&text);
        assert_eq!((line, field.as_str()), (20, "services[1]"), "{msg}");
        assert!(
            matches!(
                problem,
                Problem::DuplicateService {
                    first_line: 11,
                    port: 80,
                    ..
                }
            ),
            "{problem:?}"
        );
        assert!(msg.contains("already defined at line 11"), "{msg}");
        // Same VIP and port over UDP is another service.
        let udp = format!(
            "{}\n[[services]]\nproto = \"udp\"\nvip = \"203.0.113.10\"\nport = 80\n",
            base("")
        );
        assert!(ClusterConfig::parse("x", &udp).is_ok());
    }

    #[test]
    fn duplicate_real_server_counts_the_default_port() {
        let text = base(
            "\n[[services.real_servers]]\naddress = \"192.0.2.11\"\nport = 80\nmethod = \"nat\"\n",
        );
        let (line, field, problem, msg) = fail(&text);
        assert_eq!(
            (line, field.as_str()),
            (20, "services[0].real_servers[1]"),
            "{msg}"
        );
        assert!(
            matches!(
                problem,
                Problem::DuplicateRealServer {
                    first_line: 16,
                    port: 80,
                    ..
                }
            ),
            "{problem:?}"
        );
    }

    #[test]
    fn nat_and_dr_servers_must_share_the_vips_family() {
        for method in ["nat", "dr"] {
            let text = base("").replace(
                "address = \"192.0.2.11\"\nmethod = \"nat\"",
                &format!("address = \"2001:db8::11\"\nmethod = \"{method}\""),
            );
            let (line, field, problem, msg) = fail(&text);
            assert_eq!(
                (line, field.as_str()),
                (17, "services[0].real_servers[0].address"),
                "{msg}"
            );
            assert!(matches!(problem, Problem::FamilyMismatch { .. }));
            assert!(
                msg.contains("use a real server of the same family, or method \"tun\""),
                "{msg}"
            );
        }
        let tun = base("").replace(
            "address = \"192.0.2.11\"\nmethod = \"nat\"",
            "address = \"2001:db8::11\"\nmethod = \"tun\"",
        );
        assert!(ClusterConfig::parse("x", &tun).is_ok());
    }

    #[test]
    fn fallback_server_must_share_the_vips_family() {
        let text = base("").replace(
            "port = 80\n",
            "port = 80\nfallback = { address = \"2001:db8::99\", method = \"nat\" }\n",
        );
        let (line, field, problem, msg) = fail(&text);
        assert_eq!(
            (line, field.as_str()),
            (15, "services[0].fallback.address"),
            "{msg}"
        );
        assert!(matches!(problem, Problem::FamilyMismatch { .. }));
    }

    #[test]
    fn dr_and_tun_cannot_change_the_port() {
        for method in ["dr", "tun", "gate", "ipip"] {
            let text = base("").replace(
                "method = \"nat\"",
                &format!("method = \"{method}\"\nport = 8080"),
            );
            let (line, field, problem, msg) = fail(&text);
            assert_eq!(
                (line, field.as_str()),
                (19, "services[0].real_servers[0].port"),
                "{msg}"
            );
            assert!(matches!(
                problem,
                Problem::PortChange {
                    vport: 80,
                    rport: 8080,
                    ..
                }
            ));
            assert!(msg.contains("remove \"port\" or set it to 80"), "{msg}");
            let same = text.replace("port = 8080", "port = 80");
            assert!(ClusterConfig::parse("x", &same).is_ok());
        }
        let nat = base("port = 8080\n");
        assert!(
            ClusterConfig::parse("x", &nat).is_ok(),
            "NAT may change the port"
        );
    }

    #[test]
    fn neighbours_must_name_a_defined_interface_once() {
        let text = format!(
            "{}\n[[neighbours]]\ninterface = \"eth9\"\naddress = \"192.0.2.11\"\nmac = \"02:00:00:00:02:11\"\n",
            base("")
        );
        let (line, field, problem, msg) = fail(&text);
        assert_eq!(
            (line, field.as_str()),
            (21, "neighbours[0].interface"),
            "{msg}"
        );
        assert!(matches!(problem, Problem::UnknownInterface { .. }));
        assert!(
            msg.contains(
                "there is no interface \"eth9\": use one of the names under [[interfaces]] (c0, s0)"
            ),
            "{msg}"
        );
        let twice = format!(
            "{}\n[[neighbours]]\ninterface = \"s0\"\naddress = \"192.0.2.11\"\nmac = \"02:00:00:00:02:11\"\n\n[[neighbours]]\ninterface = \"s0\"\naddress = \"192.0.2.11\"\nmac = \"02:00:00:00:02:12\"\n",
            base("")
        );
        let (line, field, problem, _) = fail(&twice);
        assert_eq!((line, field.as_str()), (25, "neighbours[1]"));
        assert!(
            matches!(problem, Problem::DuplicateNeighbour { first_line: 20, .. }),
            "{problem:?}"
        );
    }

    #[test]
    fn duplicate_interface_names_are_refused() {
        let text = base("").replace("name = \"s0\"", "name = \"c0\"");
        let (line, field, problem, _) = fail(&text);
        assert_eq!((line, field.as_str()), (7, "interfaces[1].name"));
        assert!(
            matches!(problem, Problem::DuplicateInterface { first_line: 2, .. }),
            "{problem:?}"
        );
    }

    #[test]
    fn port_zero_needs_persistence() {
        let text = base("").replace("port = 80\n", "port = 0\n");
        let (line, field, problem, _) = fail(&text);
        assert_eq!((line, field.as_str()), (14, "services[0].port"));
        assert_eq!(problem, Problem::ZeroPortNotPersistent);
        let ok = text.replace("port = 0\n", "port = 0\npersistence = { timeout = 300 }\n");
        assert!(ClusterConfig::parse("x", &ok).is_ok());
    }

    #[test]
    fn thresholds_follow_the_kernels_order() {
        let (line, field, problem, _) = fail(&base("u_threshold = 10\nl_threshold = 20\n"));
        assert_eq!(
            (line, field.as_str()),
            (20, "services[0].real_servers[0].l_threshold")
        );
        assert_eq!(
            problem,
            Problem::ThresholdOrder {
                lower: 20,
                upper: 10
            }
        );
        let (_, _, problem, _) = fail(&base("l_threshold = 5\n"));
        assert_eq!(
            problem,
            Problem::ThresholdOrder { lower: 5, upper: 0 },
            "a lower threshold alone"
        );
    }

    #[test]
    fn scheduler_flags_need_their_scheduler() {
        let text = base("").replace("port = 80\n", "port = 80\nsched_flags = [\"sh-port\"]\n");
        let (line, field, problem, msg) = fail(&text);
        assert_eq!(
            (line, field.as_str()),
            (15, "services[0].sched_flags[0]"),
            "{msg}"
        );
        assert!(matches!(
            problem,
            Problem::FlagWithoutScheduler { needs: "sh", .. }
        ));
        let (_, _, problem, _) =
            fail(&base("").replace("port = 80\n", "port = 80\nsched_flags = [\"flag-9\"]\n"));
        assert!(matches!(problem, Problem::Value(_)));
        let (line, field, problem, _) =
            fail(&base("").replace("port = 80\n", "port = 80\nscheduler = \" \"\n"));
        assert_eq!(
            (line, field.as_str(), problem),
            (15, "services[0].scheduler", Problem::EmptyScheduler)
        );
    }

    #[test]
    fn ipv4_netmask_longer_than_32_is_refused() {
        let text = base("").replace("port = 80\n", "port = 80\npersistence = { netmask = 48 }\n");
        let (line, field, problem, _) = fail(&text);
        assert_eq!(
            (line, field.as_str()),
            (15, "services[0].persistence.netmask")
        );
        assert_eq!(
            problem,
            Problem::NetmaskFamily {
                prefix: 48,
                family: "IPv4",
                max: 32
            }
        );
    }

    #[test]
    fn an_unreadable_file_names_the_path() {
        let err = ClusterConfig::load(Path::new("/nonexistent/cluster.toml")).unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }));
        assert!(
            err.to_string()
                .starts_with("/nonexistent/cluster.toml: cannot read"),
            "{err}"
        );
        assert_eq!(err.line(), None);
    }

    /// A key file of `len` bytes with `mode`, in a directory of this test's.
    fn key_file(test: &str, len: usize, mode: u32) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("xvs-config-{test}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("agent.key");
        std::fs::write(&file, vec![0x5a; len]).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
        file
    }

    #[test]
    fn agents_are_off_unless_configured_and_take_the_policys_defaults() {
        let c = ClusterConfig::parse("cluster.toml", &base("")).unwrap();
        assert_eq!(c.agents, None);
        let key = key_file("defaults", 32, 0o600);
        let text = base(&format!(
            "\n[agents]\nkeys = [{{ id = 1, file = \"{}\" }}]\n",
            key.display()
        ));
        let c = ClusterConfig::parse("cluster.toml", &text).unwrap();
        let agents = c.agents.as_ref().unwrap();
        assert_eq!(
            agents.policy(),
            xvs_sched::feedback::WeightPolicy::default()
        );
        assert_eq!(agents.listen, "[::]:7405".parse().unwrap());
        assert_eq!(agents.max_skew, 5_000);
        assert_eq!(agents.read_keys().unwrap()[0].id(), 1);
        assert_eq!(
            ClusterConfig::parse("again.toml", &c.to_toml().unwrap()).unwrap(),
            c
        );
    }

    #[test]
    fn agents_take_every_knob() {
        let key = key_file("knobs", 32, 0o400);
        let text = base(&format!(
            r#"
[agents]
listen = "192.0.2.1"
keys = [{{ id = 1, file = "{k}" }}, {{ id = 2, file = "{k}" }}]
max_skew = "2s"
timeout = 3
on_silence = "quiesce"
cpu_weight = 2
memory_weight = 1
connections_weight = 1
cpu_full = 0.8
memory_full = 0.9
connections_full = 500
min_fraction = 0.25
smoothing = 0.5
max_step = 0.2
"#,
            k = key.display()
        ));
        let c = ClusterConfig::parse("cluster.toml", &text).unwrap();
        let agents = c.agents.as_ref().unwrap();
        assert_eq!(agents.listen, "192.0.2.1:7405".parse().unwrap());
        assert_eq!(agents.max_skew, 2_000);
        let policy = agents.policy();
        assert_eq!(policy.timeout, 3_000);
        assert_eq!(policy.on_silence, xvs_sched::feedback::OnSilence::Quiesce);
        assert_eq!(
            policy.formula,
            xvs_sched::feedback::CapacityFormula {
                cpu_weight: 2,
                memory_weight: 1,
                connections_weight: 1,
                cpu_full_permille: 800,
                memory_full_permille: 900,
                connections_full: 500,
                min_fraction_permille: 250,
            }
        );
        assert_eq!(
            (policy.smoothing_permille, policy.max_step_permille),
            (500, 200)
        );
        assert_eq!(
            agents.read_keys().unwrap().len(),
            2,
            "two keys in a rotation"
        );
        assert_eq!(
            ClusterConfig::parse("again.toml", &c.to_toml().unwrap()).unwrap(),
            c
        );
    }

    #[test]
    fn agents_problems_name_line_field_and_reason() {
        let good = key_file("problems", 32, 0o600);
        let exposed = key_file("problems-exposed", 32, 0o644);
        let short = key_file("problems-short", 8, 0o600);
        let agents = |body: &str| base(&format!("\n[agents]\n{body}\n"));
        let key = |id: u32, f: &PathBuf| format!("{{ id = {id}, file = \"{}\" }}", f.display());
        // The base is 18 lines; `[agents]` is line 20, its first key line 21.
        for (body, line, field, says) in [
            (String::new(), 20, "agents", "no key"),
            (
                format!("keys = [{}]", key(1, &exposed)),
                21,
                "agents.keys[0].file",
                "chmod 600",
            ),
            (
                format!("keys = [{}]", key(1, &short)),
                21,
                "agents.keys[0].file",
                "fewer than 16",
            ),
            (
                format!("keys = [{}, {}]", key(1, &good), key(1, &good)),
                21,
                "agents.keys[1].id",
                "already listed at line 21",
            ),
            (
                format!("keys = [{}]\nmin_fraction = 1.5", key(1, &good)),
                22,
                "agents.min_fraction",
                "from 0 to 1",
            ),
            (
                format!("keys = [{}]\nsmoothing = 0", key(1, &good)),
                22,
                "agents.smoothing",
                "above 0",
            ),
            (
                format!("keys = [{}]\nlisten = \"director\"", key(1, &good)),
                22,
                "agents.listen",
                "not an address",
            ),
            (
                format!("keys = [{}]\ntimeout = \"soon\"", key(1, &good)),
                22,
                "agents.timeout",
                "not a duration",
            ),
            (
                format!("keys = [{}]\non_silence = \"drop\"", key(1, &good)),
                22,
                "agents.on_silence",
                "restore",
            ),
        ] {
            let (at, f, _, msg) = fail(&agents(&body));
            assert_eq!((at, f.as_str()), (line, field), "{body}: {msg}");
            assert!(msg.contains(says), "{body}: {says:?} not in {msg}");
        }
    }

    #[test]
    fn ha_is_off_unless_configured_and_its_problems_name_line_and_field() {
        assert_eq!(ClusterConfig::parse("c.toml", &base("")).unwrap().ha, None);
        let good = key_file("ha", 32, 0o600);
        let ha = |body: &str| base(&format!("\n[ha]\n{body}\n"));
        let c = ClusterConfig::parse(
            "c.toml",
            &ha(&format!(
                "vrid = 51\npriority = 150\nadvert_interval = \"100ms\"\nkey_file = \"{}\"\ngateways = [\"192.0.2.1/24\"]",
                good.display()
            )),
        )
        .unwrap();
        let h = c.ha.as_ref().unwrap();
        assert_eq!((h.vrid, h.priority, h.advert_interval_cs()), (51, 150, 10));
        assert_eq!(h.read_key().unwrap().unwrap().id(), 1);
        // The base is 18 lines; `[ha]` is line 20, its first key line 21.
        for (body, line, field, says) in [
            ("vrid = 51".to_owned(), 20, "ha.key_file", "head -c 32"),
            (
                "vrid = 51\nauth = \"none\"\nadvert_interval = \"5ms\"".to_owned(),
                23,
                "ha.advert_interval",
                "steps of 10 ms",
            ),
            (
                "vrid = 51\nauth = \"none\"\ninterface = \"eth9\"".to_owned(),
                23,
                "ha.interface",
                "c0, s0",
            ),
            ("vrid = 300".to_owned(), 21, "ha.vrid", "from 1 to 255"),
            (
                "vrid = 5\nauth = \"sha1\"".to_owned(),
                22,
                "ha.auth",
                "hmac",
            ),
        ] {
            let (at, f, _, msg) = fail(&ha(&body));
            assert_eq!((at, f.as_str()), (line, field), "{body}: {msg}");
            assert!(msg.contains(says), "{body}: {says:?} not in {msg}");
        }
    }

    #[test]
    fn with_ha_the_vips_and_gateways_are_not_the_directors_own_addresses() {
        let mut c = ClusterConfig::parse(
            "c.toml",
            &base("\n[ha]\nvrid = 1\nauth = \"none\"\ngateways = [\"192.0.2.1/24\"]\n").replacen(
                "mac = \"02:00:00:00:02:01\"",
                "mac = \"02:00:00:00:02:01\"\naddresses = [\"192.0.2.1/24\", \"192.0.2.2/24\", \"203.0.113.10/32\"]",
                1,
            ),
        )
        .unwrap();
        let dropped = c.drop_floating_addresses();
        assert_eq!(dropped.len(), 2);
        let left: Vec<String> = c.interfaces[1]
            .addresses
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(left, ["192.0.2.2/24"]);
    }
}
