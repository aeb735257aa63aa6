//! Scalar values of the YAML file (durations, addresses, ports, header names, paths): how they
//! are read, with error messages that say what was expected, and how they are written back.
//!
//! Each reader raises its error while the YAML deserializer sits on the offending scalar, so
//! the error carries that scalar's line and column.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serializer};

use crate::naming;

const DURATION_EXPECTED: &str = "expected a number with a unit, like 250ms or 10s";

// === impl Dur ===

/// A duration read from a string with a unit (`250ms`, `10s`, `1m 30s`), via humantime.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Dur(pub(crate) Duration);

/// Parses a duration string; the error is the full message shown to the operator.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(format!(
            "invalid duration \"{s}\": a unit is needed, like {t}s or {t}ms"
        ));
    }
    humantime::parse_duration(t)
        .map_err(|_| format!("invalid duration \"{s}\": {DURATION_EXPECTED}"))
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Dur;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration with a unit, like 250ms or 10s")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Dur, E> {
                parse_duration(s).map(Dur).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Dur, E> {
                Err(E::custom(format!(
                    "invalid duration `{n}`: a unit is needed, like {n}s or {n}ms"
                )))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Dur, E> {
                Err(E::custom(format!(
                    "invalid duration `{n}`: {DURATION_EXPECTED}"
                )))
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<Dur, E> {
                Err(E::custom(format!(
                    "invalid duration `{n}`: a unit is needed, like {n}s"
                )))
            }
        }
        d.deserialize_any(V)
    }
}

/// Writes a duration the way the file spells it (`10s`, `250ms`, `1m 30s`).
pub(crate) fn ser_duration<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_duration(*d))
}

/// Writes an optional duration; `None` is skipped by the caller's `skip_serializing_if`.
pub(crate) fn ser_opt_duration<S: Serializer>(
    d: &Option<Duration>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => ser_duration(d, s),
        None => s.serialize_none(),
    }
}

// === impl Ip ===

/// An IPv4 or IPv6 address written as a string.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ip(pub(crate) IpAddr);

impl<'de> Deserialize<'de> for Ip {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Ip;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an IP address like 127.0.0.1 or \"::1\"")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Ip, E> {
                s.trim().parse().map(Ip).map_err(|_| {
                    E::custom(format!(
                        "invalid IP address \"{s}\": expected an IPv4 or IPv6 address, like 127.0.0.1 or \"::1\""
                    ))
                })
            }
        }
        d.deserialize_str(V)
    }
}

// === impl Port ===

/// A TCP port, `0..=65535`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Port(pub(crate) u16);

impl<'de> Deserialize<'de> for Port {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Port;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a port number from 0 to 65535")
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Port, E> {
                u16::try_from(n)
                    .map(Port)
                    .map_err(|_| E::custom(format!("port {n} out of range: expected 0 to 65535")))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Port, E> {
                match u64::try_from(n) {
                    Ok(n) => self.visit_u64(n),
                    Err(_) => Err(E::custom(format!(
                        "port {n} out of range: expected 0 to 65535"
                    ))),
                }
            }
        }
        d.deserialize_any(V)
    }
}

// === impl PortOrName ===

/// A port given by number (`0..=65535`) or by name (`http`), as Kubernetes service ports are.
#[derive(Debug, Clone)]
pub(crate) enum PortOrName {
    Number(u16),
    Name(String),
}

impl<'de> Deserialize<'de> for PortOrName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = PortOrName;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a port number from 0 to 65535 or a port name")
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<PortOrName, E> {
                u16::try_from(n)
                    .map(PortOrName::Number)
                    .map_err(|_| E::custom(format!("port {n} out of range: expected 0 to 65535")))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<PortOrName, E> {
                match u64::try_from(n) {
                    Ok(n) => self.visit_u64(n),
                    Err(_) => Err(E::custom(format!(
                        "port {n} out of range: expected 0 to 65535"
                    ))),
                }
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<PortOrName, E> {
                Ok(PortOrName::Name(s.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

// === impl Header ===

/// An HTTP header name; stored lower-case.
#[derive(Debug, Clone)]
pub(crate) struct Header(pub(crate) http::HeaderName);

impl<'de> Deserialize<'de> for Header {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Header;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an HTTP header name like host or l5d-name")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Header, E> {
                http::HeaderName::from_bytes(s.as_bytes())
                    .map(Header)
                    .map_err(|_| {
                        E::custom(format!(
                            "invalid header name \"{s}\": expected an HTTP header name like host or l5d-name"
                        ))
                    })
            }
        }
        d.deserialize_str(V)
    }
}

/// Writes a header name as its lower-case string.
pub(crate) fn ser_header<S: Serializer>(h: &http::HeaderName, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(h.as_str())
}

// === impl NamePath ===

/// A weft name path like `/svc` or `/#/fs`.
#[derive(Debug, Clone)]
pub(crate) struct NamePath(pub(crate) naming::Path);

impl<'de> Deserialize<'de> for NamePath {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = NamePath;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a path like /svc/foo")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<NamePath, E> {
                naming::Path::read(s)
                    .map(NamePath)
                    .map_err(|e| E::custom(format!("{e} in \"{s}\"")))
            }
        }
        d.deserialize_str(V)
    }
}

/// Writes any `Display` value (a dtab) as a string.
pub(crate) fn ser_display<T: fmt::Display, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

// === impl Percent ===

/// A percentage written as a string with a `%` sign (`99.9%`), kept as the number before the
/// sign (99.9). A bare number is refused: `0.999` and `99.9` would both be plausible.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Percent(pub(crate) f64);

impl<'de> Deserialize<'de> for Percent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Percent;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a percentage like 99.9%")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Percent, E> {
                let n = s
                    .trim()
                    .strip_suffix('%')
                    .and_then(|n| n.trim().parse::<f64>().ok());
                match n {
                    Some(n) if n.is_finite() => Ok(Percent(n)),
                    _ => Err(E::custom(format!(
                        "invalid percentage \"{s}\": expected a number and a % sign, like 99.9%"
                    ))),
                }
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<Percent, E> {
                Err(E::custom(format!(
                    "invalid percentage `{n}`: write it with a % sign, like 99.9%"
                )))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Percent, E> {
                self.visit_f64(n as f64)
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Percent, E> {
                self.visit_f64(n as f64)
            }
        }
        d.deserialize_any(V)
    }
}
