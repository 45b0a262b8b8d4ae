//! `xvs-schedsim`: replays a scheduling scenario through `xvs-sched` and
//! reports, for each new connection, the index of the chosen real server.
//!
//! The scenario is JSON (see [`HELP_FORMAT`]). It is checked field by field
//! rather than through a derived deserialiser so that every error names the
//! event index and the field, which is what a person fixing a scenario
//! needs.

use core::net::IpAddr;

use serde_json::{Map, Value};
use xvs_packet::{FlowKey, IpProtocol};
use xvs_sched::persist::PersistConfig;
use xvs_sched::{
    FixedDraws, MhTableSize, RealServerId, RealServerSpec, SchedContext, SchedOptions, Service,
    ServiceConfig, TemplateId, Templates,
};

/// The scenario format, for `--help`.
pub const HELP_FORMAT: &str = r#"SCENARIO FORMAT (JSON object):
  "scheduler": rr|wrr|lc|wlc|sed|nq|dh|sh|mh|lblc|lblcr|fo|ovf|twos
  "servers": [{"addr": IP, "port": N, "weight": W, "u_threshold"?: U, "l_threshold"?: L}, ...]
      added one by one, in order, to an empty service: the last one is
      visited first (the kernel inserts at the head). Index = position;
      servers added later by events take the next indices.
  optional: "proto": "tcp" (default) | "udp"; "vip" (default 192.0.2.1),
      "vport" (default 80); "fwmark": N (fwmark service); "sched_flags":
      ["sh-fallback","sh-port","mh-fallback","mh-port"]; "persistent":
      seconds (0 = off); "netmask": "255.255.255.0" or a prefix length;
      "expire_quiescent_template": bool; "mh_table_size": 251..131071 prime
      or 65537; "lblc_expiration"/"lblcr_expiration": seconds.
  "events": in order, on a clock starting at 0 s:
      {"op":"new","client":IP,"cport":N,"daddr"?:IP,"dport"?:N,"rand"?:[r1,r2]}
          a new connection (ids 0,1,2... in order of "new" events); TCP ones
          have just received their SYN (active). rand feeds twos, each draw
          taken modulo (sum of usable weights + 1). Prints the index or -1.
      {"op":"end","conn":N}   {"op":"inactive","conn":N}   {"op":"active","conn":N}
      {"op":"weight","server":I,"weight":W}
      {"op":"thresholds","server":I,"u":U,"l":L}
      {"op":"overload","server":I,"value":bool}
      {"op":"add","addr":IP,"port":N,"weight":W}   (a deleted addr:port comes back
          with its old index and counters)
      {"op":"del","server":I}
      {"op":"tick","seconds":S}   advance the clock; persistence templates and
          lblc/lblcr cache collection run on it.
A malformed scenario is reported with the event index and field; exit status 2."#;

/// A scenario error: where, which field, what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScenarioError {
    /// `"event 3 (end)"`, `"servers[1]"`, `"scenario"`.
    pub location: String,
    /// The field at fault.
    pub field: String,
    /// What is wrong and what would be right.
    pub message: String,
}

impl core::fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "{}: field \"{}\": {}",
            self.location, self.field, self.message
        )
    }
}

impl std::error::Error for ScenarioError {}

fn err(location: &str, field: &str, message: impl Into<String>) -> ScenarioError {
    ScenarioError {
        location: location.to_owned(),
        field: field.to_owned(),
        message: message.into(),
    }
}

/// Field readers over one JSON object, all reporting `location`.
struct Fields<'a> {
    obj: &'a Map<String, Value>,
    location: String,
}

impl<'a> Fields<'a> {
    fn new(v: &'a Value, location: String) -> Result<Self, ScenarioError> {
        let obj = v
            .as_object()
            .ok_or_else(|| err(&location, "-", "expected a JSON object"))?;
        Ok(Self { obj, location })
    }

    fn get(&self, name: &str) -> Option<&'a Value> {
        self.obj.get(name).filter(|v| !v.is_null())
    }

    fn need(&self, name: &str) -> Result<&'a Value, ScenarioError> {
        self.get(name)
            .ok_or_else(|| err(&self.location, name, "missing"))
    }

    fn uint(&self, name: &str, max: u64) -> Result<Option<u64>, ScenarioError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => match v.as_u64() {
                Some(n) if n <= max => Ok(Some(n)),
                _ => Err(err(
                    &self.location,
                    name,
                    format!("expected an integer from 0 to {max}, got {v}"),
                )),
            },
        }
    }

    fn need_uint(&self, name: &str, max: u64) -> Result<u64, ScenarioError> {
        self.need(name)?;
        self.uint(name, max).map(|v| v.unwrap_or_default())
    }

    fn ip(&self, name: &str) -> Result<Option<IpAddr>, ScenarioError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => v
                .as_str()
                .and_then(|s| s.parse().ok())
                .map(Some)
                .ok_or_else(|| {
                    err(
                        &self.location,
                        name,
                        format!("expected an IP address string such as \"10.0.0.1\", got {v}"),
                    )
                }),
        }
    }

    fn need_ip(&self, name: &str) -> Result<IpAddr, ScenarioError> {
        self.need(name)?;
        self.ip(name)?
            .ok_or_else(|| err(&self.location, name, "missing"))
    }

    fn bool(&self, name: &str) -> Result<Option<bool>, ScenarioError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => v.as_bool().map(Some).ok_or_else(|| {
                err(
                    &self.location,
                    name,
                    format!("expected true or false, got {v}"),
                )
            }),
        }
    }

    fn seconds_ms(&self, name: &str) -> Result<Option<u64>, ScenarioError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => {
                if let Some(n) = v.as_u64() {
                    return n
                        .checked_mul(1000)
                        .map(Some)
                        .ok_or_else(|| err(&self.location, name, "too large"));
                }
                match v.as_f64() {
                    Some(f) if (0.0..1e12).contains(&f) => Ok(Some((f * 1000.0).round() as u64)),
                    _ => Err(err(
                        &self.location,
                        name,
                        format!("expected a non-negative number of seconds, got {v}"),
                    )),
                }
            }
        }
    }

    /// Rejects fields this object does not know (typos would otherwise be
    /// silently ignored).
    fn only(&self, known: &[&str]) -> Result<(), ScenarioError> {
        for k in self.obj.keys() {
            if !known.contains(&k.as_str()) {
                return Err(err(
                    &self.location,
                    k,
                    format!("unknown field; expected one of: {}", known.join(", ")),
                ));
            }
        }
        Ok(())
    }
}

const MAX_WEIGHT: u64 = i32::MAX as u64;

fn server_spec(f: &Fields<'_>) -> Result<RealServerSpec, ScenarioError> {
    let spec = RealServerSpec {
        addr: f.need_ip("addr")?,
        port: f.need_uint("port", 65535)? as u16,
        weight: f.need_uint("weight", MAX_WEIGHT)? as u32,
        u_threshold: f.uint("u_threshold", MAX_WEIGHT)?.unwrap_or(0) as u32,
        l_threshold: f.uint("l_threshold", MAX_WEIGHT)?.unwrap_or(0) as u32,
    };
    if spec.l_threshold > spec.u_threshold {
        return Err(err(
            &f.location,
            "l_threshold",
            format!(
                "lower threshold {} is above upper threshold {} (the kernel refuses it with ERANGE); set l_threshold <= u_threshold",
                spec.l_threshold, spec.u_threshold
            ),
        ));
    }
    Ok(spec)
}

fn netmask(v: &Value, location: &str) -> Result<(u32, u8), ScenarioError> {
    if let Some(n) = v.as_u64()
        && n <= 128
    {
        let v4 = if n >= 32 {
            u32::MAX
        } else if n == 0 {
            0
        } else {
            u32::MAX << (32 - n)
        };
        return Ok((v4, n as u8));
    }
    if let Some(s) = v.as_str()
        && let Ok(a) = s.parse::<core::net::Ipv4Addr>()
    {
        let m = u32::from(a);
        if m.leading_ones() + m.trailing_zeros() == 32 {
            return Ok((m, 128));
        }
    }
    Err(err(
        location,
        "netmask",
        format!(
            "expected a contiguous IPv4 mask such as \"255.255.255.0\" or a prefix length 0..=128, got {v}"
        ),
    ))
}

#[derive(Debug, Clone, Copy)]
struct Conn {
    server: Option<RealServerId>,
    active: bool,
    template: Option<TemplateId>,
    ended: bool,
}

/// A scenario being replayed.
#[derive(Debug)]
struct Sim {
    service: Service,
    templates: Templates,
    proto: IpProtocol,
    vip: IpAddr,
    vport: u16,
    now: u64,
    conns: Vec<Conn>,
    draws: FixedDraws,
}

/// Replays `scenario` (JSON text) and returns the output lines (one per
/// `new` event: the server index or -1).
///
/// # Errors
/// A [`ScenarioError`] naming where the scenario is wrong.
pub fn run(scenario: &str) -> Result<Vec<i64>, ScenarioError> {
    let root: Value = serde_json::from_str(scenario).map_err(|e| {
        err(
            "scenario",
            "-",
            format!(
                "not valid JSON: {e} (line {}, column {})",
                e.line(),
                e.column()
            ),
        )
    })?;
    let top = Fields::new(&root, "scenario".to_owned())?;
    top.only(&[
        "scheduler",
        "servers",
        "proto",
        "vip",
        "vport",
        "fwmark",
        "sched_flags",
        "persistent",
        "netmask",
        "expire_quiescent_template",
        "mh_table_size",
        "lblc_expiration",
        "lblcr_expiration",
        "events",
        "comment",
    ])?;
    let mut sim = Sim::new(&top)?;
    let servers = top
        .need("servers")?
        .as_array()
        .ok_or_else(|| err("scenario", "servers", "expected an array of servers"))?;
    for (i, s) in servers.iter().enumerate() {
        let f = Fields::new(s, format!("servers[{i}]"))?;
        f.only(&["addr", "port", "weight", "u_threshold", "l_threshold"])?;
        let spec = server_spec(&f)?;
        sim.service
            .add_server(&spec)
            .map_err(|e| err(&f.location, "addr", e.to_string()))?;
    }
    let events = top
        .need("events")?
        .as_array()
        .ok_or_else(|| err("scenario", "events", "expected an array of events"))?;
    let mut out = Vec::new();
    for (i, ev) in events.iter().enumerate() {
        if let Some(line) = sim.event(i, ev)? {
            out.push(line);
        }
    }
    Ok(out)
}

impl Sim {
    fn new(top: &Fields<'_>) -> Result<Self, ScenarioError> {
        let name = top
            .need("scheduler")?
            .as_str()
            .ok_or_else(|| err("scenario", "scheduler", "expected a scheduler name string"))?;
        let proto = match top.get("proto").map(|v| v.as_str()) {
            None | Some(Some("tcp")) => IpProtocol::Tcp,
            Some(Some("udp")) => IpProtocol::Udp,
            Some(_) => return Err(err("scenario", "proto", "expected \"tcp\" or \"udp\"")),
        };
        let vip = top
            .ip("vip")?
            .unwrap_or(IpAddr::V4(core::net::Ipv4Addr::new(192, 0, 2, 1)));
        let vport = top.uint("vport", 65535)?.unwrap_or(80) as u16;
        let fwmark = top.uint("fwmark", u64::from(u32::MAX))?.unwrap_or(0) as u32;
        let mut options = SchedOptions::default();
        if let Some(flags) = top.get("sched_flags") {
            let list = flags.as_array().ok_or_else(|| {
                err(
                    "scenario",
                    "sched_flags",
                    "expected an array such as [\"sh-fallback\"]",
                )
            })?;
            for f in list {
                match f.as_str() {
                    Some("sh-fallback" | "mh-fallback") => options.flags.fallback = true,
                    Some("sh-port" | "mh-port") => options.flags.port = true,
                    _ => {
                        return Err(err(
                            "scenario",
                            "sched_flags",
                            format!(
                                "unknown flag {f}; expected sh-fallback, sh-port, mh-fallback or mh-port"
                            ),
                        ));
                    }
                }
            }
        }
        if let Some(size) = top.uint("mh_table_size", u64::from(u32::MAX))? {
            options.mh_table_size = MhTableSize::new(size as u32).ok_or_else(|| {
                err(
                    "scenario",
                    "mh_table_size",
                    format!("{size} is not a kernel table size; use one of 251 509 1021 2039 4093 8191 16381 32749 65521 131071, or 65537"),
                )
            })?;
        }
        if let Some(ms) = top.seconds_ms("lblc_expiration")? {
            options.lblc_expiration = ms;
        }
        if let Some(ms) = top.seconds_ms("lblcr_expiration")? {
            options.lblcr_expiration = ms;
        }
        let timeout = top.seconds_ms("persistent")?.unwrap_or(0);
        let eqt = top.bool("expire_quiescent_template")?.unwrap_or(false);
        let persistence = if timeout > 0 {
            let (netmask_v4, prefix_v6) = match top.get("netmask") {
                Some(v) => netmask(v, "scenario")?,
                None => (u32::MAX, 128),
            };
            Some(PersistConfig {
                timeout,
                netmask_v4,
                prefix_v6,
                expire_quiescent_template: eqt,
            })
        } else {
            None
        };
        let config = ServiceConfig {
            proto,
            vip,
            vport,
            fwmark,
            persistence,
            options,
        };
        let service = Service::new(config, name, 0)
            .map_err(|e| err("scenario", "scheduler", e.to_string()))?;
        Ok(Self {
            service,
            templates: Templates::new(),
            proto,
            vip,
            vport,
            now: 0,
            conns: Vec::new(),
            draws: FixedDraws::new(Vec::new()),
        })
    }

    fn server_id(&self, f: &Fields<'_>) -> Result<RealServerId, ScenarioError> {
        let i = f.need_uint("server", u64::from(u32::MAX))?;
        let id = RealServerId(i as u32);
        match self.service.servers().get(id) {
            Some(s) if s.is_available() => Ok(id),
            Some(_) => Err(err(
                &f.location,
                "server",
                format!("server {i} was deleted; add it again first"),
            )),
            None => Err(err(
                &f.location,
                "server",
                format!(
                    "no server {i}: only {} have been added",
                    self.service.servers().id_count()
                ),
            )),
        }
    }

    fn conn(&self, f: &Fields<'_>) -> Result<usize, ScenarioError> {
        let n = f.need_uint("conn", u64::from(u32::MAX))? as usize;
        match self.conns.get(n) {
            None => Err(err(
                &f.location,
                "conn",
                format!(
                    "no connection {n}: only {} \"new\" events so far",
                    self.conns.len()
                ),
            )),
            Some(c) if c.ended => Err(err(
                &f.location,
                "conn",
                format!("connection {n} has already ended"),
            )),
            Some(_) => Ok(n),
        }
    }

    fn event(&mut self, i: usize, ev: &Value) -> Result<Option<i64>, ScenarioError> {
        let op = ev
            .get("op")
            .and_then(Value::as_str)
            .ok_or_else(|| err(&format!("event {i}"), "op", "missing or not a string"))?;
        let f = Fields::new(ev, format!("event {i} ({op})"))?;
        match op {
            "new" => {
                f.only(&["op", "client", "cport", "daddr", "dport", "rand"])?;
                return self.new_conn(&f).map(Some);
            }
            "end" | "inactive" | "active" => {
                f.only(&["op", "conn"])?;
                let n = self.conn(&f)?;
                let c = self.conns[n];
                let Some(server) = c.server else {
                    // Not scheduled (-1): nothing to account.
                    if op == "end" {
                        self.conns[n].ended = true;
                    }
                    return Ok(None);
                };
                let servers = self.service.servers();
                match op {
                    "end" => {
                        servers.unbind_conn(server, c.active);
                        if let Some(t) = c.template {
                            self.templates.release(t);
                        }
                        self.conns[n].ended = true;
                    }
                    _ => {
                        let to_active = op == "active";
                        if self.proto != IpProtocol::Tcp {
                            return Err(err(
                                &f.location,
                                "op",
                                "only TCP connections change between active and inactive; UDP ones are always inactive",
                            ));
                        }
                        servers.conn_activity_changed(server, c.active, to_active);
                        self.conns[n].active = to_active;
                    }
                }
            }
            "weight" => {
                f.only(&["op", "server", "weight"])?;
                let id = self.server_id(&f)?;
                let w = f.need_uint("weight", MAX_WEIGHT)? as u32;
                let s = self
                    .service
                    .servers()
                    .get(id)
                    .ok_or_else(|| err(&f.location, "server", "gone"))?;
                let (u, l) = (s.u_threshold(), s.l_threshold());
                self.service
                    .edit_server(id, w, u, l)
                    .map_err(|e| err(&f.location, "weight", e.to_string()))?;
            }
            "thresholds" => {
                f.only(&["op", "server", "u", "l"])?;
                let id = self.server_id(&f)?;
                let u = f.need_uint("u", MAX_WEIGHT)? as u32;
                let l = f.need_uint("l", MAX_WEIGHT)? as u32;
                let w = self
                    .service
                    .servers()
                    .get(id)
                    .map(xvs_sched::RealServer::weight)
                    .unwrap_or_default();
                self.service
                    .edit_server(id, w, u, l)
                    .map_err(|e| err(&f.location, "l", e.to_string()))?;
            }
            "overload" => {
                f.only(&["op", "server", "value"])?;
                let id = self.server_id(&f)?;
                let v = f
                    .bool("value")?
                    .ok_or_else(|| err(&f.location, "value", "missing"))?;
                self.service.servers().set_overloaded(id, v);
            }
            "add" => {
                f.only(&["op", "addr", "port", "weight", "u_threshold", "l_threshold"])?;
                let spec = server_spec(&f)?;
                self.service
                    .add_server(&spec)
                    .map_err(|e| err(&f.location, "addr", e.to_string()))?;
            }
            "del" => {
                f.only(&["op", "server"])?;
                let id = self.server_id(&f)?;
                self.service
                    .remove_server(id)
                    .map_err(|e| err(&f.location, "server", e.to_string()))?;
            }
            "tick" => {
                f.only(&["op", "seconds"])?;
                let ms = f
                    .seconds_ms("seconds")?
                    .ok_or_else(|| err(&f.location, "seconds", "missing"))?;
                self.now += ms;
                self.templates.expire(self.now, self.service.servers());
                self.service.run_timers(self.now);
            }
            other => {
                return Err(err(
                    &f.location,
                    "op",
                    format!(
                        "unknown op {other:?}; expected new, end, inactive, active, weight, thresholds, overload, add, del or tick"
                    ),
                ));
            }
        }
        Ok(None)
    }

    fn new_conn(&mut self, f: &Fields<'_>) -> Result<i64, ScenarioError> {
        let client = f.need_ip("client")?;
        let cport = f.need_uint("cport", 65535)? as u16;
        let daddr = f.ip("daddr")?.unwrap_or(self.vip);
        let dport = f.uint("dport", 65535)?.map_or(self.vport, |p| p as u16);
        if client.is_ipv4() != daddr.is_ipv4() {
            return Err(err(
                &f.location,
                "client",
                "client and destination addresses must be of the same family",
            ));
        }
        if let Some(r) = f.get("rand") {
            let draws: Option<Vec<u32>> = r.as_array().and_then(|a| {
                a.iter()
                    .map(|x| x.as_u64().and_then(|n| u32::try_from(n).ok()))
                    .collect()
            });
            let draws = draws.ok_or_else(|| {
                err(
                    &f.location,
                    "rand",
                    "expected an array of integers such as [3, 7]",
                )
            })?;
            self.draws.set(&draws);
        }
        let flow = FlowKey {
            proto: self.proto,
            src: client,
            dst: daddr,
            sport: cport,
            dport,
        };
        let mut ctx = SchedContext {
            now: self.now,
            random: &mut self.draws,
        };
        let decision = self
            .service
            .schedule_connection(&mut self.templates, &flow, &mut ctx);
        let conn = match decision {
            Ok(d) => {
                // TCP: the SYN moves the new connection NONE → SYN_RECV,
                // an active state.
                let active = self.proto == IpProtocol::Tcp;
                if active {
                    self.service
                        .servers()
                        .conn_activity_changed(d.server, false, true);
                }
                Conn {
                    server: Some(d.server),
                    active,
                    template: d.template,
                    ended: false,
                }
            }
            Err(_) => Conn {
                server: None,
                active: false,
                template: None,
                ended: false,
            },
        };
        self.conns.push(conn);
        Ok(conn.server.map_or(-1, |s| i64::from(s.0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_event_and_field() {
        let e = run(
            r#"{"scheduler":"rr","servers":[],"events":[{"op":"tick","seconds":1},{"op":"end"}]}"#,
        )
        .unwrap_err();
        assert_eq!(e.location, "event 1 (end)");
        assert_eq!(e.field, "conn");
        let e = run(r#"{"scheduler":"rr","servers":[{"addr":"10.0.0.1","port":80,"weight":-1}],"events":[]}"#)
            .unwrap_err();
        assert_eq!(
            (e.location.as_str(), e.field.as_str()),
            ("servers[0]", "weight")
        );
        let e = run(
            r#"{"scheduler":"rr","servers":[],"events":[{"op":"new","client":"x","cport":1}]}"#,
        )
        .unwrap_err();
        assert_eq!(e.field, "client");
        assert!(e.to_string().starts_with("event 0 (new): field \"client\""));
    }

    #[test]
    fn a_small_rr_run() {
        let out = run(r#"{"scheduler":"rr","servers":[
            {"addr":"10.0.0.1","port":80,"weight":1},
            {"addr":"10.0.0.2","port":80,"weight":1}],
            "events":[{"op":"new","client":"198.51.100.1","cport":1000},
                      {"op":"new","client":"198.51.100.1","cport":1001},
                      {"op":"new","client":"198.51.100.1","cport":1002}]}"#)
        .unwrap();
        assert_eq!(out, vec![1, 0, 1]);
    }
}
