//! The `health` tables of the cluster configuration as written: their
//! schema, deserialisation, defaults and checks. What they resolve to, one
//! [`CheckSpec`](super::spec::CheckSpec) per real server, is [`super::spec`].
//!
//! # Contract
//! * `[services.health]` sets how every real server of a service is
//!   checked; `[services.real_servers.health]` overrides any of its keys
//!   for one server. A service with neither has no health checking: its
//!   servers are always in rotation, as before health checks existed.
//! * Value checks (ranges, durations, command lists) run while
//!   deserialising and carry toml's span; cross-field checks run in
//!   [`check_service`] on the merged view and report the table a key was
//!   written in.
//! * Defaults follow ldirectord where it has one (`failures` 1 =
//!   `failurecount`, `verify_certificate` off, quiescent off as its code
//!   does, request "/"), keepalived for `alpha` and the success count, and
//!   a 10 s interval (ldirectord's `checkinterval`). Timeouts default to 5 s
//!   for both phases: ldirectord's 30 s negotiate timeout would leave a hung
//!   server in rotation for half a minute per failure.

use std::path::PathBuf;
use std::time::Duration;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};

use crate::config::VirtualService;
use crate::config::location::PathStep;
use xvs_proto::Protocol;

/// Default time between two checks of a server.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
/// Default connect timeout (also ping and external commands).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default negotiate timeout (TLS handshake, request and answer).
pub const DEFAULT_NEGOTIATE_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest duration accepted anywhere in a `health` table.
pub const MAX_DURATION: Duration = Duration::from_secs(86_400);
/// The largest failure or success count.
pub const MAX_COUNT: u32 = 1000;
/// The most bytes of an answer a negotiate check reads; a `receive` text
/// must fit in half of it.
pub const MAX_ANSWER: usize = 64 * 1024;

/// A `health` table, as written: every key optional so that a real
/// server's table overrides only what it names.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HealthConfig {
    /// Which check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check: Option<CheckKind>,
    /// What a negotiate check speaks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<NegotiateService>,
    /// Time between the starts of two checks.
    #[serde(with = "opt_duration", skip_serializing_if = "Option::is_none")]
    pub interval: Option<Duration>,
    /// Connect timeout; also bounds ping and external checks.
    #[serde(with = "opt_duration", skip_serializing_if = "Option::is_none")]
    pub connect_timeout: Option<Duration>,
    /// Negotiate timeout: TLS handshake, request and answer.
    #[serde(with = "opt_duration", skip_serializing_if = "Option::is_none")]
    pub negotiate_timeout: Option<Duration>,
    /// Consecutive failures before a server goes down.
    #[serde(deserialize_with = "de_count", skip_serializing_if = "Option::is_none")]
    pub failures: Option<u32>,
    /// Consecutive successes before a down server comes back.
    #[serde(deserialize_with = "de_count", skip_serializing_if = "Option::is_none")]
    pub successes: Option<u32>,
    /// HTTP path, or the raw line(s) a `tcp` negotiate check sends.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    /// HTTP `Host` header and TLS server name.
    #[serde(
        deserialize_with = "de_virtualhost",
        skip_serializing_if = "Option::is_none"
    )]
    pub virtualhost: Option<String>,
    /// Accepted HTTP status codes; absent = any 2xx.
    #[serde(
        deserialize_with = "de_status",
        skip_serializing_if = "Option::is_none"
    )]
    pub expect_status: Option<Vec<u16>>,
    /// Text the answer must contain.
    #[serde(
        deserialize_with = "de_receive",
        skip_serializing_if = "Option::is_none"
    )]
    pub receive: Option<String>,
    /// Verify the server's certificate (https).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verify_certificate: Option<bool>,
    /// PEM file of the CA certificates to trust instead of the host's store.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Port to check, if not the real server's.
    #[serde(
        deserialize_with = "de_check_port",
        skip_serializing_if = "Option::is_none"
    )]
    pub port: Option<u16>,
    /// External check: program and arguments.
    #[serde(
        deserialize_with = "de_command",
        skip_serializing_if = "Option::is_none"
    )]
    pub command: Option<Vec<String>>,
    /// Program and arguments run on every transition.
    #[serde(
        deserialize_with = "de_command",
        skip_serializing_if = "Option::is_none"
    )]
    pub hook: Option<Vec<String>>,
    /// Down = weight 0 (connections drain) rather than removal. Service only.
    #[serde(alias = "inhibit_on_failure", skip_serializing_if = "Option::is_none")]
    pub quiescent: Option<bool>,
    /// Start down until the first passed check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alpha: Option<bool>,
    /// Let the data path's passive reports count as results.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub passive: Option<bool>,
}

/// `check = …`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckKind {
    /// TCP connect.
    Connect,
    /// Request and expected answer (HTTP, HTTPS or raw TCP).
    Negotiate,
    /// ICMP echo.
    Ping,
    /// An operator's command; exit 0 = up.
    External,
    /// Always up, never checked.
    On,
    /// Always down (never in rotation).
    Off,
}

impl CheckKind {
    pub(super) const fn name(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Negotiate => "negotiate",
            Self::Ping => "ping",
            Self::External => "external",
            Self::On => "on",
            Self::Off => "off",
        }
    }
}

/// `service = …` of a negotiate check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NegotiateService {
    /// HTTP/1.1 GET.
    Http,
    /// HTTP/1.1 GET over TLS.
    Https,
    /// Send `request` as is, expect `receive`.
    Tcp,
}

// ---- the merged view -----------------------------------------------------------

/// The merged view: the server's keys over the service's.
pub(super) fn merged(svc: Option<&HealthConfig>, rs: Option<&HealthConfig>) -> HealthConfig {
    let base = svc.cloned().unwrap_or_default();
    let Some(o) = rs else { return base };
    let o = o.clone();
    HealthConfig {
        check: o.check.or(base.check),
        service: o.service.or(base.service),
        interval: o.interval.or(base.interval),
        connect_timeout: o.connect_timeout.or(base.connect_timeout),
        negotiate_timeout: o.negotiate_timeout.or(base.negotiate_timeout),
        failures: o.failures.or(base.failures),
        successes: o.successes.or(base.successes),
        request: o.request.or(base.request),
        virtualhost: o.virtualhost.or(base.virtualhost),
        expect_status: o.expect_status.or(base.expect_status),
        receive: o.receive.or(base.receive),
        verify_certificate: o.verify_certificate.or(base.verify_certificate),
        ca_file: o.ca_file.or(base.ca_file),
        port: o.port.or(base.port),
        command: o.command.or(base.command),
        hook: o.hook.or(base.hook),
        quiescent: o.quiescent.or(base.quiescent),
        alpha: o.alpha.or(base.alpha),
        passive: o.passive.or(base.passive),
    }
}

impl HealthConfig {
    /// Whether a key that only a negotiate check uses is set.
    fn has_negotiate_keys(&self) -> bool {
        self.service.is_some()
            || self.request.is_some()
            || self.receive.is_some()
            || self.virtualhost.is_some()
            || self.expect_status.is_some()
            || self.verify_certificate.is_some()
            || self.ca_file.is_some()
    }

    /// The check: as written, else negotiate when a negotiate key is set,
    /// else connect (TCP) or ping (UDP — ldirectord's connect check for UDP).
    pub(super) fn effective_check(&self, proto: Protocol) -> CheckKind {
        self.check.unwrap_or(if self.has_negotiate_keys() {
            CheckKind::Negotiate
        } else if proto == Protocol::Udp {
            CheckKind::Ping
        } else {
            CheckKind::Connect
        })
    }

    /// The negotiate protocol: as written, else https when TLS keys are set
    /// or the check port is 443, else http.
    pub(super) fn effective_service(&self, port: u16) -> NegotiateService {
        self.service.unwrap_or(
            if self.verify_certificate.is_some() || self.ca_file.is_some() || port == 443 {
                NegotiateService::Https
            } else {
                NegotiateService::Http
            },
        )
    }

    /// The keys set in this table, by name.
    fn set_keys(&self) -> Vec<&'static str> {
        let mut keys = Vec::new();
        let mut add = |set: bool, name| {
            if set {
                keys.push(name);
            }
        };
        add(self.service.is_some(), "service");
        add(self.request.is_some(), "request");
        add(self.receive.is_some(), "receive");
        add(self.virtualhost.is_some(), "virtualhost");
        add(self.expect_status.is_some(), "expect_status");
        add(self.verify_certificate.is_some(), "verify_certificate");
        add(self.ca_file.is_some(), "ca_file");
        add(self.port.is_some(), "port");
        add(self.command.is_some(), "command");
        add(self.connect_timeout.is_some(), "connect_timeout");
        add(self.negotiate_timeout.is_some(), "negotiate_timeout");
        keys
    }
}

/// The keys a check uses besides the common ones (interval, counts, hook,
/// quiescent, alpha, passive).
fn keys_used_by(kind: CheckKind) -> &'static [&'static str] {
    match kind {
        CheckKind::Connect => &["port", "connect_timeout"],
        CheckKind::Negotiate => &[
            "service",
            "request",
            "receive",
            "virtualhost",
            "expect_status",
            "verify_certificate",
            "ca_file",
            "port",
            "connect_timeout",
            "negotiate_timeout",
        ],
        CheckKind::Ping => &["connect_timeout"],
        CheckKind::External => &["command", "connect_timeout"],
        CheckKind::On | CheckKind::Off => &[],
    }
}

// ---- cross-field checks ---------------------------------------------------------

/// A `health` table that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HealthProblem {
    /// A key the table's own `check` never uses.
    #[error(
        "\"{key}\" has no meaning for check = \"{check}\": remove it, or change the check (it is used by {users})"
    )]
    KeyNotUsed {
        /// The key.
        key: &'static str,
        /// The check.
        check: &'static str,
        /// Checks that use it.
        users: &'static str,
    },
    /// `check = "external"` without a command.
    #[error(
        "check = \"external\" needs a command: add command = [\"/path/to/program\", \"arg\"…] (it gets VIP VPORT RIP RPORT appended)"
    )]
    ExternalWithoutCommand,
    /// A raw TCP negotiate without `receive`.
    #[error(
        "service = \"tcp\" needs the text to expect: add receive = \"…\" (and request = \"…\" unless the server speaks first)"
    )]
    TcpWithoutReceive,
    /// An HTTP-only key on a raw TCP negotiate check.
    #[error("\"{key}\" is for HTTP and HTTPS checks, not service = \"tcp\": remove it")]
    HttpKeyOnTcp {
        /// The key.
        key: &'static str,
    },
    /// A TLS key on a plain HTTP check.
    #[error("\"{key}\" is for HTTPS checks: set service = \"https\" or remove it")]
    TlsKeyOnHttp {
        /// The key.
        key: &'static str,
    },
    /// `ca_file` with verification turned off.
    #[error(
        "ca_file is only read when certificates are verified: remove it or set verify_certificate = true"
    )]
    CaFileWithoutVerify,
    /// A TCP check on a UDP service.
    #[error(
        "check = \"{check}\" speaks TCP and this is a UDP service: use check = \"ping\" or \"external\""
    )]
    TcpCheckOnUdp {
        /// The check.
        check: &'static str,
    },
    /// A connect or negotiate check of a port-0 server.
    #[error(
        "the real server's port is 0 (every port), so a {check} check has no port to connect to: add port = N to the health table"
    )]
    NoCheckPort {
        /// The check.
        check: &'static str,
    },
    /// An HTTP path with spaces or control characters.
    #[error(
        "\"{request}\" is not an HTTP path: write a path without spaces or control characters, like \"/health?full=1\""
    )]
    BadHttpPath {
        /// As written.
        request: String,
    },
    /// `quiescent` on a real server.
    #[error("quiescent is chosen per service: move it to the service's [services.health] table")]
    QuiescentPerServer,
    /// A health table on the fallback server.
    #[error(
        "the fallback server is not health-checked (it is used when every real server is down): remove its health table"
    )]
    FallbackChecked,
}

fn key(k: &str) -> PathStep {
    PathStep::Key(k.to_owned())
}

/// Checks every `health` table of a service; `at` turns a path inside the
/// service into the full field path.
///
/// # Errors
/// The first problem with the path of the key (or table) it concerns.
pub fn check_service(
    svc: &VirtualService,
    at: &dyn Fn(&[PathStep]) -> Vec<PathStep>,
) -> Result<(), (Vec<PathStep>, HealthProblem)> {
    if let Some(fb) = &svc.fallback
        && fb.health.is_some()
    {
        return Err((
            at(&[key("fallback"), key("health")]),
            HealthProblem::FallbackChecked,
        ));
    }
    let svc_table = [key("health")];
    if let Some(h) = &svc.health {
        check_table(h, &at(&svc_table))?;
    }
    for (r, rs) in svc.real_servers.iter().enumerate() {
        let rs_table = [key("real_servers"), PathStep::Index(r), key("health")];
        if let Some(h) = &rs.health {
            if h.quiescent.is_some() {
                return Err((
                    at(&[
                        key("real_servers"),
                        PathStep::Index(r),
                        key("health"),
                        key("quiescent"),
                    ]),
                    HealthProblem::QuiescentPerServer,
                ));
            }
            check_table(h, &at(&rs_table))?;
        }
        if svc.health.is_none() && rs.health.is_none() {
            continue;
        }
        let h = merged(svc.health.as_ref(), rs.health.as_ref());
        // Where a key of the merged view was written.
        let origin = |set_by_server: bool, k: &str| {
            let mut p = if set_by_server {
                at(&rs_table)
            } else {
                at(&svc_table)
            };
            p.push(key(k));
            p
        };
        let by_server = |f: fn(&HealthConfig) -> bool| rs.health.as_ref().is_some_and(f);
        let check_at = origin(by_server(|h| h.check.is_some()), "check");
        let kind = h.effective_check(svc.proto);
        let port = h.port.unwrap_or_else(|| rs.effective_port(svc.port));
        match kind {
            CheckKind::Connect | CheckKind::Negotiate if svc.proto == Protocol::Udp => {
                return Err((
                    check_at,
                    HealthProblem::TcpCheckOnUdp { check: kind.name() },
                ));
            }
            CheckKind::Connect | CheckKind::Negotiate if port == 0 => {
                return Err((check_at, HealthProblem::NoCheckPort { check: kind.name() }));
            }
            CheckKind::External if h.command.is_none() => {
                return Err((check_at, HealthProblem::ExternalWithoutCommand));
            }
            _ => {}
        }
        if kind != CheckKind::Negotiate {
            continue;
        }
        let service = h.effective_service(port);
        let service_at = origin(by_server(|h| h.service.is_some()), "service");
        match service {
            NegotiateService::Tcp => {
                if h.receive.is_none() {
                    return Err((service_at, HealthProblem::TcpWithoutReceive));
                }
                let http_keys: [KeyIsSet; 4] = [
                    ("virtualhost", |h| h.virtualhost.is_some()),
                    ("expect_status", |h| h.expect_status.is_some()),
                    ("verify_certificate", |h| h.verify_certificate.is_some()),
                    ("ca_file", |h| h.ca_file.is_some()),
                ];
                for (k, set) in http_keys {
                    if set(&h) {
                        return Err((
                            origin(by_server(set), k),
                            HealthProblem::HttpKeyOnTcp { key: k },
                        ));
                    }
                }
            }
            NegotiateService::Http | NegotiateService::Https => {
                if service == NegotiateService::Http {
                    let tls_keys: [KeyIsSet; 2] = [
                        ("verify_certificate", |h| h.verify_certificate.is_some()),
                        ("ca_file", |h| h.ca_file.is_some()),
                    ];
                    for (k, set) in tls_keys {
                        if set(&h) {
                            return Err((
                                origin(by_server(set), k),
                                HealthProblem::TlsKeyOnHttp { key: k },
                            ));
                        }
                    }
                }
                if h.ca_file.is_some() && h.verify_certificate == Some(false) {
                    return Err((
                        origin(by_server(|h| h.ca_file.is_some()), "ca_file"),
                        HealthProblem::CaFileWithoutVerify,
                    ));
                }
                if let Some(request) = &h.request
                    && request.chars().any(|c| c.is_whitespace() || c.is_control())
                {
                    return Err((
                        origin(by_server(|h| h.request.is_some()), "request"),
                        HealthProblem::BadHttpPath {
                            request: request.clone(),
                        },
                    ));
                }
            }
        }
    }
    Ok(())
}

/// A key's name and whether a table sets it.
type KeyIsSet = (&'static str, fn(&HealthConfig) -> bool);

/// Checks within one table: a key its own `check` never uses.
fn check_table(h: &HealthConfig, table: &[PathStep]) -> Result<(), (Vec<PathStep>, HealthProblem)> {
    let Some(kind) = h.check else { return Ok(()) };
    let used = keys_used_by(kind);
    for k in h.set_keys() {
        if !used.contains(&k) {
            let mut p = table.to_vec();
            p.push(key(k));
            let users = match k {
                "port" => "connect and negotiate",
                "command" => "external",
                "connect_timeout" => "connect, negotiate, ping and external",
                _ => "negotiate",
            };
            return Err((
                p,
                HealthProblem::KeyNotUsed {
                    key: k,
                    check: kind.name(),
                    users,
                },
            ));
        }
    }
    Ok(())
}

// ---- value checks ---------------------------------------------------------------

/// Why a duration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Neither seconds nor a number with a known unit.
    #[error(
        "\"{text}\" is not a duration: write seconds (10, 0.5) or a number with a unit: \"500ms\", \"2s\", \"1m\""
    )]
    NotADuration {
        /// What was written.
        text: String,
    },
    /// Shorter than 1 ms, longer than [`MAX_DURATION`], or not finite.
    #[error("{written} is out of range: use 1ms to {max_secs} seconds")]
    OutOfRange {
        /// What was written.
        written: String,
        /// [`MAX_DURATION`] in seconds.
        max_secs: u64,
    },
}

/// Parses a duration: a number of seconds (`10`, `0.5`), or text with a unit
/// (`"500ms"`, `"2s"`, `"1.5s"`, `"1m"`, `"250us"`); a bare number in text
/// is seconds. Precision is one microsecond; 1 ms to 1 day is accepted.
///
/// # Errors
/// [`DurationError`]: what is wrong and how to write it.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let not_a_duration = || DurationError::NotADuration {
        text: text.to_owned(),
    };
    let scale = match unit.trim() {
        "" | "s" => 1.0,
        "ms" => 1e-3,
        "us" | "µs" => 1e-6,
        "m" | "min" => 60.0,
        _ => return Err(not_a_duration()),
    };
    let value: f64 = number.parse().map_err(|_| not_a_duration())?;
    seconds(value * scale, text)
}

fn seconds(secs: f64, written: &str) -> Result<Duration, DurationError> {
    let micros = (secs * 1e6).round();
    if !micros.is_finite() || micros < 1000.0 || micros > MAX_DURATION.as_micros() as f64 {
        return Err(DurationError::OutOfRange {
            written: written.to_owned(),
            max_secs: MAX_DURATION.as_secs(),
        });
    }
    Ok(Duration::from_micros(micros as u64))
}

/// Writes a duration in the largest unit that keeps it exact.
#[must_use]
pub fn format_duration(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else if d.subsec_nanos().is_multiple_of(1_000_000) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}us", d.as_micros())
    }
}

mod opt_duration {
    use super::*;

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Written {
        Int(i64),
        Float(f64),
        Text(String),
    }

    pub(super) fn serialize<S: serde::Serializer>(
        d: &Option<Duration>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&format_duration(*d)),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        let parsed = match Written::deserialize(d)? {
            Written::Int(i) => seconds(i as f64, &i.to_string()),
            Written::Float(f) => seconds(f, &f.to_string()),
            Written::Text(t) => parse_duration(&t),
        };
        parsed.map(Some).map_err(de::Error::custom)
    }
}

fn de_count<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    let v = i64::deserialize(d)?;
    if (1..=i64::from(MAX_COUNT)).contains(&v) {
        Ok(Some(v as u32))
    } else {
        Err(de::Error::custom(format!(
            "{v} is not a valid count: use an integer from 1 to {MAX_COUNT}"
        )))
    }
}

fn de_check_port<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u16>, D::Error> {
    let v = i64::deserialize(d)?;
    if (1..=65535).contains(&v) {
        Ok(Some(v as u16))
    } else {
        Err(de::Error::custom(format!(
            "{v} is not a valid check port: use an integer from 1 to 65535"
        )))
    }
}

fn de_status<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u16>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Written {
        One(i64),
        Many(Vec<i64>),
    }
    let codes = match Written::deserialize(d)? {
        Written::One(c) => vec![c],
        Written::Many(c) => c,
    };
    if codes.is_empty() {
        return Err(de::Error::custom(
            "an empty list accepts no status: give one or more codes (e.g. [200, 204]) or remove the key to accept any 2xx",
        ));
    }
    codes
        .into_iter()
        .map(|c| {
            if (100..=599).contains(&c) {
                Ok(c as u16)
            } else {
                Err(de::Error::custom(format!(
                    "{c} is not an HTTP status code: use 100 to 599"
                )))
            }
        })
        .collect::<Result<Vec<u16>, D::Error>>()
        .map(Some)
}

fn de_virtualhost<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let host = String::deserialize(d)?;
    if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(de::Error::custom(format!(
            "\"{host}\" is not a host name: write a name like \"www.example.com\" (no spaces), or remove the key to send the server's address"
        )));
    }
    Ok(Some(host))
}

fn de_receive<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let text = String::deserialize(d)?;
    if text.is_empty() {
        return Err(de::Error::custom(
            "an empty receive text matches anything: remove the key or give the text the answer must contain",
        ));
    }
    if text.len() > MAX_ANSWER / 2 {
        return Err(de::Error::custom(format!(
            "a receive text of {} bytes is longer than a check reads of the answer: keep it under {} bytes",
            text.len(),
            MAX_ANSWER / 2
        )));
    }
    Ok(Some(text))
}

fn de_command<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Written {
        List(Vec<String>),
        Text(String),
    }
    match Written::deserialize(d)? {
        Written::Text(t) => Err(de::Error::custom(format!(
            "\"{t}\" is a string: write the program and its arguments as a list, like [\"/usr/local/bin/check\", \"--quiet\"] (no shell runs it)"
        ))),
        Written::List(list) => match list.first() {
            None => Err(de::Error::custom(
                "an empty command runs nothing: give the program and its arguments, like [\"/usr/local/bin/check\"]",
            )),
            Some(p) if p.trim().is_empty() => Err(de::Error::custom(
                "the program name is empty: the list starts with the program to run",
            )),
            Some(_) => Ok(Some(list)),
        },
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::config::{ClusterConfig, ConfigError, Problem};
    use crate::health::spec::{Check, targets};

    pub(in crate::health) fn parse(text: &str) -> Result<ClusterConfig, ConfigError> {
        ClusterConfig::parse("cluster.toml", text)
    }

    /// (line, field, message) of an invalid config.
    fn fail(text: &str) -> (usize, String, String) {
        let err = parse(text).unwrap_err();
        (
            err.line().unwrap(),
            err.field().unwrap().to_owned(),
            err.to_string(),
        )
    }

    pub(in crate::health) fn service(proto: &str, health: &str, servers: &str) -> String {
        format!(
            "[[services]]\nproto = \"{proto}\"\nvip = \"203.0.113.10\"\nport = 80\n\n[services.health]\n{health}\n{servers}"
        )
    }

    pub(in crate::health) const TWO_SERVERS: &str = "
[[services.real_servers]]
address = \"192.0.2.11\"

[[services.real_servers]]
address = \"192.0.2.12\"
";

    #[test]
    fn durations_parse_in_every_written_form() {
        let ok = [
            ("10", 10_000_000),
            ("0.5", 500_000),
            ("500ms", 500_000),
            ("1.5s", 1_500_000),
            ("2 s", 2_000_000),
            ("1m", 60_000_000),
            ("1500us", 1_500),
        ];
        for (text, micros) in ok {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_micros(micros)),
                "{text}"
            );
        }
        for bad in [
            "",
            "ms",
            "5 parsecs",
            "-1",
            "0",
            "0.1ms",
            "2d",
            "1e3",
            "NaN",
            "90000",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        for d in [
            Duration::from_secs(3),
            Duration::from_millis(20),
            Duration::from_micros(1500),
        ] {
            assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }
    }

    #[test]
    fn value_errors_carry_line_field_and_remedy() {
        let cases = [
            (
                "interval = \"5 parsecs\"",
                "services[0].health.interval",
                "not a duration",
            ),
            (
                "interval = 0",
                "services[0].health.interval",
                "out of range",
            ),
            (
                "interval = -3",
                "services[0].health.interval",
                "out of range",
            ),
            (
                "failures = 0",
                "services[0].health.failures",
                "from 1 to 1000",
            ),
            (
                "successes = 100000",
                "services[0].health.successes",
                "from 1 to 1000",
            ),
            (
                "expect_status = 99",
                "services[0].health.expect_status",
                "100 to 599",
            ),
            (
                "expect_status = []",
                "services[0].health.expect_status",
                "no status",
            ),
            ("port = 0", "services[0].health.port", "1 to 65535"),
            (
                "command = \"/bin/check --x\"",
                "services[0].health.command",
                "as a list",
            ),
            ("hook = []", "services[0].health.hook", "runs nothing"),
            (
                "hook = [\"\"]",
                "services[0].health.hook",
                "program name is empty",
            ),
            (
                "virtualhost = \"a b\"",
                "services[0].health.virtualhost",
                "not a host name",
            ),
            (
                "receive = \"\"",
                "services[0].health.receive",
                "matches anything",
            ),
            (
                "check = \"telnet\"",
                "services[0].health.check",
                "unknown variant",
            ),
            (
                "chekc = \"ping\"",
                "services[0].health.chekc",
                "unknown field",
            ),
        ];
        for (line, field, text) in cases {
            let (l, f, msg) = fail(&service("tcp", line, TWO_SERVERS));
            assert_eq!((l, f.as_str()), (7, field), "{line}: {msg}");
            assert!(msg.contains(text), "{line}: {msg}");
            assert!(msg.starts_with("cluster.toml:7:"), "{msg}");
        }
    }

    #[test]
    fn cross_field_errors_name_the_key_where_it_was_written() {
        let server = |health: &str| {
            format!(
                "[[services.real_servers]]\naddress = \"192.0.2.11\"\n[services.real_servers.health]\n{health}\n"
            )
        };
        type Case = (String, &'static str, fn(&HealthProblem) -> bool);
        let cases: Vec<Case> = vec![
            (
                service("tcp", "check = \"connect\"\nreceive = \"x\"", TWO_SERVERS),
                "services[0].health.receive",
                |p| matches!(p, HealthProblem::KeyNotUsed { key: "receive", .. }),
            ),
            (
                service("tcp", "check = \"ping\"\nport = 81", TWO_SERVERS),
                "services[0].health.port",
                |p| matches!(p, HealthProblem::KeyNotUsed { key: "port", .. }),
            ),
            (
                service("tcp", "check = \"external\"", TWO_SERVERS),
                "services[0].health.check",
                |p| *p == HealthProblem::ExternalWithoutCommand,
            ),
            (
                service("tcp", "", &server("check = \"external\"")),
                "services[0].real_servers[0].health.check",
                |p| *p == HealthProblem::ExternalWithoutCommand,
            ),
            (
                service("tcp", "service = \"tcp\"", TWO_SERVERS),
                "services[0].health.service",
                |p| *p == HealthProblem::TcpWithoutReceive,
            ),
            (
                service(
                    "tcp",
                    "service = \"tcp\"\nreceive = \"x\"",
                    &server("virtualhost = \"h\""),
                ),
                "services[0].real_servers[0].health.virtualhost",
                |p| *p == HealthProblem::HttpKeyOnTcp { key: "virtualhost" },
            ),
            (
                service(
                    "tcp",
                    "service = \"http\"\nverify_certificate = true",
                    TWO_SERVERS,
                ),
                "services[0].health.verify_certificate",
                |p| {
                    *p == HealthProblem::TlsKeyOnHttp {
                        key: "verify_certificate",
                    }
                },
            ),
            (
                service(
                    "tcp",
                    "ca_file = \"/ca.pem\"\nverify_certificate = false",
                    TWO_SERVERS,
                ),
                "services[0].health.ca_file",
                |p| *p == HealthProblem::CaFileWithoutVerify,
            ),
            (
                service("udp", "check = \"connect\"", TWO_SERVERS),
                "services[0].health.check",
                |p| *p == HealthProblem::TcpCheckOnUdp { check: "connect" },
            ),
            (
                service("tcp", "request = \"/a b\"", TWO_SERVERS),
                "services[0].health.request",
                |p| matches!(p, HealthProblem::BadHttpPath { .. }),
            ),
            (
                service("tcp", "", &server("quiescent = true")),
                "services[0].real_servers[0].health.quiescent",
                |p| *p == HealthProblem::QuiescentPerServer,
            ),
            (
                service(
                    "tcp",
                    "",
                    "[services.fallback]\naddress = \"127.0.0.1\"\n[services.fallback.health]\ncheck = \"on\"\n",
                ),
                "services[0].fallback.health",
                |p| *p == HealthProblem::FallbackChecked,
            ),
        ];
        for (text, field, is) in cases {
            let err = parse(&text).unwrap_err();
            let msg = err.to_string();
            assert_eq!(err.field(), Some(field), "{msg}\n{text}");
            let Some(Problem::Health(p)) = err.problem() else {
                panic!("{msg}")
            };
            assert!(is(p), "{msg}");
            let line = err.line().unwrap();
            let written = text.lines().nth(line - 1).unwrap();
            let last = field.rsplit('.').next().unwrap();
            assert!(
                written.contains(last) || written.starts_with('['),
                "line {line} is `{written}` for {field}"
            );
        }
    }

    #[test]
    fn a_port_zero_service_needs_a_check_port() {
        let text = "[[services]]\nproto = \"tcp\"\nvip = \"203.0.113.10\"\nport = 0\npersistence = {}\n[services.health]\ncheck = \"connect\"\n[[services.real_servers]]\naddress = \"192.0.2.11\"\n";
        let err = parse(text).unwrap_err();
        assert_eq!(
            err.problem(),
            Some(&Problem::Health(HealthProblem::NoCheckPort {
                check: "connect"
            }))
        );
        let fixed = text.replace("check = \"connect\"", "check = \"connect\"\nport = 80");
        let c = parse(&fixed).unwrap();
        assert!(matches!(
            targets(&c)[0].spec.check,
            Check::Connect { port: 80, .. }
        ));
        // A target's key keeps the real server's own port.
        assert_eq!(targets(&c)[0].key.server.port(), 0);
    }

    #[test]
    fn on_and_off_need_nothing_else() {
        let c = parse(&service("tcp", "check = \"off\"", TWO_SERVERS)).unwrap();
        assert_eq!(targets(&c)[0].spec.check, Check::Off);
        let c = parse(&service("udp", "check = \"on\"", TWO_SERVERS)).unwrap();
        assert_eq!(targets(&c)[0].spec.check, Check::On);
    }
}
