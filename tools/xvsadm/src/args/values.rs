//! Option values: numbers, timeouts, addresses with ports, netmasks,
//! scheduler flags, multicast groups.

use super::*;

pub(super) fn daemon_state(
    value: Option<&str>,
    error: ParseError,
) -> Result<DaemonState, ParseError> {
    match value {
        Some("master") => Ok(DaemonState::Master),
        Some("backup") => Ok(DaemonState::Backup),
        _ => Err(error),
    }
}

pub(super) fn check_name(what: &'static str, name: String) -> Result<String, ParseError> {
    if name.len() > MAX_NAME_LEN {
        return Err(ParseError::NameTooLong { what, name });
    }
    Ok(name)
}

/// A decimal number in `min..=max` (ipvsadm's `string_to_number`, without
/// `strtol`'s leading blanks and sign).
pub(super) fn parse_number(text: &str, min: u64, max: u64) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let value: u64 = text.parse().ok()?;
    (min..=max).contains(&value).then_some(value)
}

pub(super) fn parse_timeout(text: &str, min: u64) -> Result<u32, ParseError> {
    parse_number(text, min, MAX_TIMEOUT.into())
        .map(|value| value as u32)
        .ok_or_else(|| ParseError::BadTimeout(text.to_owned()))
}

/// `host[:port]`, `[v6]:port` or a bare IPv6 address (ipvsadm's
/// `parse_service`). `None` when ipvsadm would say "illegal … specified".
pub(super) fn parse_host_port(
    text: &str,
    protocol: IpvsProtocol,
    resolver: &dyn Resolver,
) -> Option<(IpAddr, Option<u16>)> {
    // All digits (or empty) is a port without a host.
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (ip, port): (IpAddr, Option<&str>) = if let Some(inner) = text.strip_prefix('[') {
        let (host, after) = inner.split_once(']')?;
        let port = after.strip_prefix(':')?;
        (IpAddr::V6(host.parse::<Ipv6Addr>().ok()?), Some(port))
    } else if let Ok(v6) = text.parse::<Ipv6Addr>() {
        (IpAddr::V6(v6), None)
    } else {
        let (host, port) = match text.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        };
        let v4 = match host.parse::<Ipv4Addr>() {
            Ok(v4) => v4,
            Err(_) => resolver.host(host)?,
        };
        (IpAddr::V4(v4), port)
    };
    let port = match port {
        None => None,
        Some(text) => Some(match parse_number(text, 0, 65_535) {
            Some(port) => port as u16,
            None => resolver.port(text, protocol)?,
        }),
    };
    Some((ip, port))
}

pub(super) fn parse_netmask(
    text: &str,
    family: AddressFamily,
    resolver: &dyn Resolver,
) -> Result<Netmask, ParseError> {
    match family {
        AddressFamily::Inet => text
            .parse::<Ipv4Addr>()
            .ok()
            .or_else(|| resolver.host(text))
            .map(Netmask::V4)
            .ok_or(ParseError::BadNetmask),
        AddressFamily::Inet6 => parse_number(text, 1, 128)
            .map(|prefix| Netmask::V6(prefix as u8))
            .ok_or(ParseError::BadIpv6Netmask),
    }
}

/// `-b flag,flag`: ipvsadm's `parse_sched_flags`.
pub(super) fn parse_sched_flags(scheduler: &str, list: &str) -> Result<SchedFlags, ParseError> {
    let mut flags = SchedFlags::NONE;
    for word in list.split(',') {
        let (flag, only_for) = match word {
            "flag-1" => (SchedFlags::FLAG_1, None),
            "flag-2" => (SchedFlags::FLAG_2, None),
            "flag-3" => (SchedFlags::FLAG_3, None),
            "sh-fallback" => (SchedFlags::FLAG_1, Some("sh")),
            "sh-port" => (SchedFlags::FLAG_2, Some("sh")),
            "mh-fallback" => (SchedFlags::FLAG_1, Some("mh")),
            "mh-port" => (SchedFlags::FLAG_2, Some("mh")),
            _ => return Err(ParseError::BadSchedFlag(word.to_owned())),
        };
        if only_for.is_some_and(|name| name != scheduler) {
            return Err(ParseError::IncompatibleSchedFlag(word.to_owned()));
        }
        flags = flags | flag;
    }
    Ok(flags)
}

pub(super) fn parse_mcast_group(text: &str) -> Result<IpAddr, ParseError> {
    if text.contains(':') {
        match text.parse::<Ipv6Addr>() {
            Ok(group) if group.is_multicast() => Ok(IpAddr::V6(group)),
            _ => Err(ParseError::BadMcastGroup {
                family: "IPv6",
                value: text.to_owned(),
            }),
        }
    } else {
        match text.parse::<Ipv4Addr>() {
            Ok(group) if group.is_multicast() => Ok(IpAddr::V4(group)),
            _ => Err(ParseError::BadMcastGroup {
                family: "IPv4",
                value: text.to_owned(),
            }),
        }
    }
}
