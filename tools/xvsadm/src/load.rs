//! `-L --load`: per real server, the weight configured and the weight in
//! force, and its agent's last report — xvs's own listing (ipvsadm has
//! none), laid out in ipvsadm's manner: a service line, then one
//! `  -> ` line per real server, in address order.
//!
//! Figures an agent could not measure, and every figure of a server
//! without an agent, are `-`; a server out of the table (its health check
//! or its agent's `maint` took it out) has `out` for its weight.

use core::fmt::Write;
use core::net::SocketAddr;

use xvs_proto::control::{AgentView, LoadView, ServiceId};

use crate::IpvsProtocol;
use crate::format::{Names, addr_port};

/// The column titles under the service line's.
const HEADER: &str = "Prot LocalAddress:Port\n  -> RemoteAddress:Port           Weight Config Agent            State Age     Cap%   CPU%   Mem%  Load1  Estab    RxPPS    TxPPS   Rd/s   Wr/s\n";

/// The listing of `view` (only `service` when given).
#[must_use]
pub fn list_load(
    view: &LoadView,
    service: Option<ServiceId>,
    numeric: bool,
    names: &dyn Names,
) -> String {
    let mut out = String::new();
    if !view.agents {
        out.push_str("Agents off: the director's configuration has no [agents]; every weight is the configured one\n");
    }
    out.push_str(HEADER);
    for svc in &view.services {
        if service.is_some_and(|only| only != svc.id) {
            continue;
        }
        let protocol = IpvsProtocol::Supported(svc.id.proto);
        let vip = SocketAddr::new(svc.id.vip, svc.id.port);
        let _ = writeln!(
            out,
            "{:<4} {}",
            protocol.name(),
            addr_port(vip, protocol, numeric, names)
        );
        for rs in &svc.servers {
            let dest = addr_port(SocketAddr::new(rs.addr, rs.port), protocol, numeric, names);
            let weight = rs
                .weight
                .map_or_else(|| "out".to_owned(), |w| w.to_string());
            let _ = write!(
                out,
                "  -> {dest:<28} {weight:<6} {:<6} ",
                rs.configured_weight
            );
            match &rs.agent {
                Some(agent) => agent_columns(&mut out, agent),
                None => out.push_str(&format!(
                    "{:<16} {:<5} {:<6} {:>6} {:>6} {:>6} {:>6} {:>6} {:>8} {:>8} {:>6} {:>6}",
                    "-", "-", "-", "-", "-", "-", "-", "-", "-", "-", "-", "-"
                )),
            }
            out.push('\n');
        }
    }
    out
}

fn agent_columns(out: &mut String, a: &AgentView) {
    let percent = |p: Option<u16>| p.map_or_else(dash, |p| format!("{}.{}", p / 10, p % 10));
    let count = |n: Option<u32>| n.map_or_else(dash, |n| n.to_string());
    let load1 = a
        .load1_centi
        .map_or_else(dash, |l| format!("{}.{:02}", l / 100, l % 100));
    let age = format!("{}.{}s", a.age_ms / 1000, a.age_ms % 1000 / 100);
    let _ = write!(
        out,
        "{:<16} {:<5} {:<6} {:>6} {:>6} {:>6} {:>6} {:>6} {:>8} {:>8} {:>6} {:>6}",
        a.identity,
        a.state,
        age,
        percent(Some(a.capacity_permille)),
        percent(a.cpu_permille),
        percent(a.memory_permille),
        load1,
        count(a.established),
        count(a.rx_packets_per_s),
        count(a.tx_packets_per_s),
        count(a.disk_reads_per_s),
        count(a.disk_writes_per_s),
    );
}

fn dash() -> String {
    "-".to_owned()
}
