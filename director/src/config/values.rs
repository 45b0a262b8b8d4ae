//! Value checks run while deserialising, with the operator's message and
//! toml's span (ranges, capacities, netmasks).

use super::*;

pub(super) fn int_in<'de, D: Deserializer<'de>>(
    d: D,
    min: i64,
    max: i64,
    what: &str,
) -> Result<i64, D::Error> {
    let v = i64::deserialize(d)?;
    if (min..=max).contains(&v) {
        Ok(v)
    } else {
        Err(de::Error::custom(format!(
            "{v} is not a valid {what}: use an integer from {min} to {max}"
        )))
    }
}

pub(super) fn de_weight<'de, D: Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    int_in(d, 0, 65535, "weight").map(|v| v as u16)
}

pub(super) fn de_port<'de, D: Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    int_in(d, 0, 65535, "port").map(|v| v as u16)
}

pub(super) fn de_opt_port<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u16>, D::Error> {
    de_port(d).map(Some)
}

pub(super) fn de_threshold<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    int_in(d, 0, i64::from(i32::MAX), "connection threshold").map(|v| v as u32)
}

pub(super) fn de_opt_mtu<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u16>, D::Error> {
    int_in(d, 68, 65535, "MTU").map(|v| Some(v as u16))
}

pub(super) fn de_capacity<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let v = i64::deserialize(d)?;
    if v == 0 {
        return Err(de::Error::custom(
            "a connection table of capacity 0 cannot hold any connection: use at least 1 (e.g. 1048576)",
        ));
    }
    let max = i64::from(crate::conn::ConnTable::MAX_CAPACITY);
    if (1..=max).contains(&v) {
        Ok(v as u32)
    } else {
        Err(de::Error::custom(format!(
            "{v} is not a valid capacity: use an integer from 1 to {max}"
        )))
    }
}

pub(super) fn de_max_destinations<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    int_in(
        d,
        1,
        i64::from(MAX_MAX_DESTINATIONS),
        "number of destinations",
    )
    .map(|v| v as u32)
}

pub(super) fn de_persistence<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    int_in(d, 1, 2_678_400, "persistence timeout (seconds)").map(|v| v as u32)
}

pub(super) fn de_netmask<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u8>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Mask {
        Prefix(i64),
        Dotted(String),
    }
    let bad = |what: &str| {
        de::Error::custom(format!(
            "{what} is not a netmask: write a dotted IPv4 mask like \"255.255.255.0\" or a prefix length from 0 to 128"
        ))
    };
    match Mask::deserialize(d)? {
        Mask::Prefix(p) => u8::try_from(p)
            .ok()
            .filter(|&p| p <= 128)
            .map(Some)
            .ok_or_else(|| bad(&p.to_string())),
        Mask::Dotted(s) => {
            let mask: core::net::Ipv4Addr = s.parse().map_err(|_| bad(&format!("\"{s}\"")))?;
            let bits = u32::from(mask);
            let prefix = bits.leading_ones();
            if bits.checked_shl(prefix).unwrap_or(0) != 0 {
                return Err(bad(&format!("\"{s}\" (its ones are not contiguous)")));
            }
            Ok(Some(prefix as u8))
        }
    }
}

/// Durations in milliseconds, written as `health` tables write them.
pub(super) mod millis_text {
    use std::time::Duration;

    use serde::Deserialize;
    use serde::de::{self, Deserializer};
    use serde::ser::Serializer;

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Written {
        Int(i64),
        Float(f64),
        Text(String),
    }

    pub(in crate::config) fn serialize<S: Serializer>(ms: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::health::config::format_duration(
            Duration::from_millis(*ms),
        ))
    }

    pub(in crate::config) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        let text = match Written::deserialize(d)? {
            Written::Int(i) => i.to_string(),
            Written::Float(f) => f.to_string(),
            Written::Text(t) => t,
        };
        let parsed = crate::health::config::parse_duration(&text).map_err(de::Error::custom)?;
        if parsed.subsec_micros() % 1000 != 0 {
            return Err(de::Error::custom(format!(
                "\"{text}\" is finer than a millisecond: round it to whole milliseconds"
            )));
        }
        Ok(parsed.as_millis() as u64)
    }
}

/// An optional duration in milliseconds (absent: `None`).
pub(super) mod opt_millis_text {
    use serde::ser::Serializer;
    use serde::{Deserialize, Deserializer};

    pub(in crate::config) fn serialize<S: Serializer>(
        ms: &Option<u64>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match ms {
            Some(ms) => super::millis_text::serialize(ms, s),
            None => s.serialize_none(),
        }
    }

    pub(in crate::config) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<u64>, D::Error> {
        #[derive(Deserialize)]
        struct Wrapped(#[serde(with = "super::millis_text")] u64);
        Ok(Some(Wrapped::deserialize(d)?.0))
    }
}
