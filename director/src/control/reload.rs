//! What a reload cannot apply. Services, real servers, health checks,
//! timeouts, `expire_nodest_conn`, `autoreload` and the agents' keys,
//! skew and weight policy follow the file while the director runs; the
//! rest was fixed at start — the connection table is allocated once, the
//! control socket, the metrics endpoint and the agents' receiver
//! (`[agents]` itself, and its `listen`) are bound, the interfaces' sockets, MACs and MTUs and the static neighbours
//! are in use. A reload that changes any of those is refused whole, naming
//! every such key, rather than applying the rest and leaving the operator
//! to believe the file is what runs.

use core::fmt;

use crate::config::ClusterConfig;

/// A key of the file whose new value only a restart applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestartKey {
    /// Its field path (`interfaces[1].mtu`).
    pub path: String,
    /// Its running value.
    pub running: String,
    /// The file's value.
    pub file: String,
}

impl fmt::Display for RestartKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (running {}, file {})",
            self.path, self.running, self.file
        )
    }
}

/// The keys that differ between the `running` config and the re-read
/// `file` and that only a restart applies, in file order (empty: the
/// reload can apply everything that changed).
#[must_use]
pub fn restart_keys(running: &ClusterConfig, file: &ClusterConfig) -> Vec<RestartKey> {
    let mut keys = Vec::new();
    let mut differ = |path: String, a: String, b: String| {
        if a != b {
            keys.push(RestartKey {
                path,
                running: a,
                file: b,
            });
        }
    };
    let names = |c: &ClusterConfig| {
        let names: Vec<&str> = c.interfaces.iter().map(|i| i.name.as_str()).collect();
        format!("[{}]", names.join(", "))
    };
    differ("interfaces".to_owned(), names(running), names(file));
    // Field by field only for the same interfaces in the same order: after
    // a change of the list, that line says it all.
    if names(running) == names(file) {
        for (i, (a, b)) in running.interfaces.iter().zip(&file.interfaces).enumerate() {
            let at = |field: &str| format!("interfaces[{i}].{field}");
            let mac = |m: Option<crate::config::MacAddr>| {
                m.map_or_else(|| "none".to_owned(), |m| m.to_string())
            };
            let list = |v: Vec<String>| format!("[{}]", v.join(", "));
            differ(at("role"), format!("{:?}", a.role), format!("{:?}", b.role));
            differ(at("mac"), mac(a.mac), mac(b.mac));
            differ(
                at("addresses"),
                list(a.addresses.iter().map(ToString::to_string).collect()),
                list(b.addresses.iter().map(ToString::to_string).collect()),
            );
            differ(
                at("mtu"),
                a.effective_mtu().to_string(),
                b.effective_mtu().to_string(),
            );
            differ(
                at("gateways"),
                list(a.gateways.iter().map(ToString::to_string).collect()),
                list(b.gateways.iter().map(ToString::to_string).collect()),
            );
        }
    }
    differ(
        "conn_table.capacity".to_owned(),
        running.conn_table.capacity.to_string(),
        file.conn_table.capacity.to_string(),
    );
    // Workers size their per-destination arrays by it once, at start.
    differ(
        "conn_table.max_destinations".to_owned(),
        running.conn_table.max_destinations.to_string(),
        file.conn_table.max_destinations.to_string(),
    );
    let path = |p: &Option<std::path::PathBuf>| {
        p.as_ref()
            .map_or_else(|| "default".to_owned(), |p| p.display().to_string())
    };
    differ(
        "control.socket".to_owned(),
        path(&running.control.socket),
        path(&file.control.socket),
    );
    let addr =
        |a: Option<std::net::SocketAddr>| a.map_or_else(|| "off".to_owned(), |a| a.to_string());
    differ(
        "control.metrics_listen".to_owned(),
        addr(running.control.metrics_listen),
        addr(file.control.metrics_listen),
    );
    // The receiver's socket is bound once; keys, skew and the weight
    // policy follow the file.
    let listen = |c: &ClusterConfig| {
        c.agents
            .as_ref()
            .map_or_else(|| "off".to_owned(), |a| a.listen.to_string())
    };
    differ("agents.listen".to_owned(), listen(running), listen(file));
    if running.neighbours != file.neighbours {
        let count = |c: &ClusterConfig| format!("{} entries", c.neighbours.len());
        let (a, b) = (count(running), count(file));
        // Same count, other entries: say so rather than "n, n".
        let (a, b) = if a == b {
            (a, format!("{b}, changed"))
        } else {
            (a, b)
        };
        differ("neighbours".to_owned(), a, b);
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::two_interfaces;

    const BASE: &str = concat!(
        r#"
[conn_table]
capacity = 4096

[control]
socket = "/run/xvs/a.sock"
"#,
        two_interfaces!(
            c0 { "addresses = [\"198.51.100.1/24\"]\nmtu = 1500" },
            s0 { r#"addresses = ["192.0.2.1/24"]"# }
        ),
        r#"
[[services]]
proto = "tcp"
vip = "203.0.113.10"
port = 80
scheduler = "wlc"
[[services.real_servers]]
address = "192.0.2.11"
method = "nat"
"#
    );

    fn config(text: &str) -> ClusterConfig {
        ClusterConfig::parse("t.toml", text).unwrap()
    }

    #[test]
    fn what_a_reload_applies_needs_no_restart() {
        let running = config(BASE);
        let file = config(
            &BASE
                .replace("scheduler = \"wlc\"", "scheduler = \"rr\"")
                .replace(
                    "[control]",
                    "[timeouts]\ntcp = 60\n\n[control]\nautoreload = true",
                ),
        );
        assert_ne!(running, file);
        assert_eq!(restart_keys(&running, &file), []);
    }

    #[test]
    fn every_key_fixed_at_start_is_named_with_both_values() {
        let running = config(BASE);
        let file = config(
            &BASE
                .replace("capacity = 4096", "capacity = 8192\nmax_destinations = 100")
                .replace("a.sock", "b.sock")
                .replace(
                    "[control]",
                    "[control]\nmetrics_listen = \"127.0.0.1:9531\"",
                )
                .replace("mtu = 1500", "mtu = 1400")
                .replace("02:00:00:00:02:01", "02:00:00:00:02:02"),
        );
        let keys: Vec<String> = restart_keys(&running, &file)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            keys,
            [
                "interfaces[0].mtu (running 1500, file 1400)",
                "interfaces[1].mac (running 02:00:00:00:02:01, file 02:00:00:00:02:02)",
                "conn_table.capacity (running 4096, file 8192)",
                "conn_table.max_destinations (running 4096, file 100)",
                "control.socket (running /run/xvs/a.sock, file /run/xvs/b.sock)",
                "control.metrics_listen (running off, file 127.0.0.1:9531)",
            ]
        );
    }

    #[test]
    fn the_agents_receiver_is_fixed_at_start_and_its_policy_is_not() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("xvs-reload-agents-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = dir.join("k");
        std::fs::write(&key, [1u8; 32]).unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let with = |body: &str| {
            config(&format!(
                "{BASE}\n[agents]\nkeys = [{{ id = 1, file = \"{}\" }}]\n{body}\n",
                key.display()
            ))
        };
        let running = with("");
        let policy =
            with("timeout = 9\nmin_fraction = 0.2\nmax_skew = 1\non_silence = \"quiesce\"");
        assert_ne!(running, policy);
        assert_eq!(restart_keys(&running, &policy), []);
        let keys: Vec<String> = restart_keys(&running, &with("listen = \"192.0.2.1\""))
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            keys,
            ["agents.listen (running [::]:7405, file 192.0.2.1:7405)"]
        );
        let keys: Vec<String> = restart_keys(&config(BASE), &running)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(keys, ["agents.listen (running off, file [::]:7405)"]);
    }

    #[test]
    fn another_interface_list_is_one_key() {
        let running = config(BASE);
        let file = config(&BASE.replace("name = \"s0\"", "name = \"s1\""));
        let keys = restart_keys(&running, &file);
        assert_eq!(keys.len(), 1, "{keys:?}");
        assert_eq!(
            keys[0].to_string(),
            "interfaces (running [c0, s0], file [c0, s1])"
        );
    }
}
