//! Trace context headers, pure functions over `http::HeaderMap`: W3C Trace Context
//! (`traceparent`, `tracestate`; <https://www.w3.org/TR/trace-context/>) and B3, both the
//! multi-header (`x-b3-*`) and the single-header (`b3`) form
//! (<https://github.com/openzipkin/b3-propagation>).
//!
//! Extraction prefers `traceparent`, then `b3`, then `x-b3-*`: the first well-formed one wins
//! and a malformed header is ignored as if absent (the W3C spec's rule: restart the trace).

use std::fmt;

use http::header::{HeaderMap, HeaderName, HeaderValue};

pub(crate) const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
pub(crate) const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
pub(crate) const B3: HeaderName = HeaderName::from_static("b3");
pub(crate) const B3_TRACE_ID: HeaderName = HeaderName::from_static("x-b3-traceid");
pub(crate) const B3_SPAN_ID: HeaderName = HeaderName::from_static("x-b3-spanid");
pub(crate) const B3_PARENT: HeaderName = HeaderName::from_static("x-b3-parentspanid");
pub(crate) const B3_SAMPLED: HeaderName = HeaderName::from_static("x-b3-sampled");
pub(crate) const B3_FLAGS: HeaderName = HeaderName::from_static("x-b3-flags");

/// A 128-bit trace id, never all zeroes. Displays as 32 lower-case hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceId(pub [u8; 16]);

/// A 64-bit span id, never all zeroes. Displays as 16 lower-case hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpanId(pub [u8; 8]);

// === impl TraceId / SpanId ===

impl TraceId {
    /// A random, non-zero trace id.
    pub fn random() -> TraceId {
        loop {
            let id = fastrand::u128(..).to_be_bytes();
            if id != [0; 16] {
                return TraceId(id);
            }
        }
    }

    /// Reads 32 hex digits, or 16 (a 64-bit B3 id, zero-padded on the left as B3 says).
    /// Upper-case digits are accepted only when `any_case` (B3; W3C wants lower case).
    fn parse(s: &str, any_case: bool) -> Option<TraceId> {
        let mut id = [0u8; 16];
        match s.len() {
            32 => hex_into(s, &mut id, any_case)?,
            16 => hex_into(s, &mut id[8..], any_case)?,
            _ => return None,
        }
        (id != [0; 16]).then_some(TraceId(id))
    }
}

impl SpanId {
    /// A random, non-zero span id.
    pub fn random() -> SpanId {
        loop {
            let id = fastrand::u64(..).to_be_bytes();
            if id != [0; 8] {
                return SpanId(id);
            }
        }
    }

    fn parse(s: &str, any_case: bool) -> Option<SpanId> {
        let mut id = [0u8; 8];
        if s.len() != 16 {
            return None;
        }
        hex_into(s, &mut id, any_case)?;
        (id != [0; 8]).then_some(SpanId(id))
    }
}

fn hex_into(s: &str, out: &mut [u8], any_case: bool) -> Option<()> {
    fn nibble(b: u8, any_case: bool) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            b'A'..=b'F' if any_case => Some(b - b'A' + 10),
            _ => None,
        }
    }
    let bytes = s.as_bytes();
    if bytes.len() != out.len() * 2 {
        return None;
    }
    for (o, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        *o = nibble(pair[0], any_case)? << 4 | nibble(pair[1], any_case)?;
    }
    Some(())
}

fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    bytes.iter().try_for_each(|b| write!(f, "{b:02x}"))
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceId({self})")
    }
}

impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Debug for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpanId({self})")
    }
}

/// Which header family a context arrived in; injection answers in the same B3 form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `traceparent` (and `tracestate`).
    W3c,
    /// The single `b3` header.
    B3Single,
    /// The `x-b3-*` headers.
    B3Multi,
}

/// The trace context received with a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Incoming {
    /// The caller's trace and span, if it sent well-formed ids.
    pub parent: Option<Parent>,
    /// The caller's sampling decision, if it made one. B3 may send a decision without ids
    /// (`b3: 0`, `x-b3-sampled: 0` alone).
    pub sampled: Option<bool>,
    /// The header family it came in; `None` when no trace header was present.
    pub format: Option<Format>,
}

/// The caller's span: the parent of ours.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parent {
    /// The trace it belongs to.
    pub trace_id: TraceId,
    /// The caller's span id.
    pub span_id: SpanId,
    /// W3C `tracestate`, passed on unchanged (several headers joined with `,`).
    pub tracestate: Option<HeaderValue>,
}

/// Reads the trace context of a request: `traceparent` first, then `b3`, then `x-b3-*`.
pub fn extract(headers: &HeaderMap) -> Incoming {
    if let Some((parent, sampled)) = headers.get(TRACEPARENT).and_then(parse_traceparent) {
        let tracestate = join_tracestate(headers);
        return Incoming {
            parent: Some(Parent {
                tracestate,
                ..parent
            }),
            sampled: Some(sampled),
            format: Some(Format::W3c),
        };
    }
    if let Some((parent, sampled)) = headers.get(B3).and_then(parse_b3_single) {
        return Incoming {
            parent,
            sampled,
            format: Some(Format::B3Single),
        };
    }
    if let Some((parent, sampled)) = parse_b3_multi(headers) {
        return Incoming {
            parent,
            sampled,
            format: Some(Format::B3Multi),
        };
    }
    Incoming {
        parent: None,
        sampled: None,
        format: None,
    }
}

/// `version-traceid-parentid-flags`, e.g.
/// `00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01` (W3C Trace Context §3.2).
/// Returns the parent and the sampled flag (bit 0 of the flags).
fn parse_traceparent(v: &HeaderValue) -> Option<(Parent, bool)> {
    let s = v.to_str().ok()?.trim();
    let mut parts = s.splitn(5, '-');
    let version = parts.next()?;
    let trace_id = parts.next()?;
    let span_id = parts.next()?;
    let flags = parts.next()?;
    let rest = parts.next();
    let mut ver = [0u8; 1];
    hex_into(version, &mut ver, false)?;
    // Version ff is invalid; version 00 has exactly four fields; a later version may append
    // fields after a '-', which a 00 reader ignores (§3.2.4).
    if ver[0] == 0xff || (ver[0] == 0 && rest.is_some()) {
        return None;
    }
    let mut fl = [0u8; 1];
    hex_into(flags, &mut fl, false)?;
    let parent = Parent {
        trace_id: TraceId::parse(trace_id, false).filter(|_| trace_id.len() == 32)?,
        span_id: SpanId::parse(span_id, false)?,
        tracestate: None,
    };
    Some((parent, fl[0] & 1 == 1))
}

fn join_tracestate(headers: &HeaderMap) -> Option<HeaderValue> {
    let mut values = headers.get_all(TRACESTATE).iter();
    let first = values.next()?;
    let mut joined = first.as_bytes().to_vec();
    for v in values {
        joined.extend_from_slice(b",");
        joined.extend_from_slice(v.as_bytes());
    }
    HeaderValue::from_bytes(&joined).ok()
}

fn parse_b3_sampled(s: &str) -> Option<bool> {
    match s {
        "1" | "d" | "true" => Some(true),
        "0" | "false" => Some(false),
        _ => None,
    }
}

/// `{TraceId}-{SpanId}-{SamplingState}-{ParentSpanId}` with the last two optional, or a lone
/// `{SamplingState}` (`0`, `1`, `d`).
fn parse_b3_single(v: &HeaderValue) -> Option<(Option<Parent>, Option<bool>)> {
    let s = v.to_str().ok()?.trim();
    let parts: Vec<&str> = s.split('-').collect();
    match parts.as_slice() {
        [state] => Some((None, Some(parse_b3_sampled(state)?))),
        [trace, span, rest @ ..] if rest.len() <= 2 => {
            let sampled = match rest.first() {
                Some(state) => Some(parse_b3_sampled(state)?),
                None => None,
            };
            if let Some(parent) = rest.get(1) {
                SpanId::parse(parent, true)?;
            }
            let parent = Parent {
                trace_id: TraceId::parse(trace, true)?,
                span_id: SpanId::parse(span, true)?,
                tracestate: None,
            };
            Some((Some(parent), sampled))
        }
        _ => None,
    }
}

/// `x-b3-traceid`, `x-b3-spanid`, `x-b3-sampled`, `x-b3-flags` (`1` = debug, implies sampled).
/// `None` when none of them is present or the ids are malformed.
fn parse_b3_multi(headers: &HeaderMap) -> Option<(Option<Parent>, Option<bool>)> {
    let get = |n: &HeaderName| headers.get(n).and_then(|v| v.to_str().ok()).map(str::trim);
    let debug = get(&B3_FLAGS) == Some("1");
    let sampled = if debug {
        Some(true)
    } else {
        get(&B3_SAMPLED).and_then(parse_b3_sampled)
    };
    let parent = match (get(&B3_TRACE_ID), get(&B3_SPAN_ID)) {
        (Some(t), Some(s)) => Some(Parent {
            trace_id: TraceId::parse(t, true)?,
            span_id: SpanId::parse(s, true)?,
            tracestate: None,
        }),
        (None, None) => None,
        _ => return None,
    };
    (parent.is_some() || sampled.is_some()).then_some((parent, sampled))
}

/// Writes our span's context for the upstream: `traceparent` (and the caller's `tracestate`)
/// always, and B3 in the form the caller used (`b3` if it sent `b3`, `x-b3-*` otherwise).
/// Stale trace headers of the other forms are replaced or removed, so the upstream never
/// sees two different parents.
pub(crate) fn inject(
    headers: &mut HeaderMap,
    trace_id: TraceId,
    span_id: SpanId,
    parent: Option<SpanId>,
    sampled: bool,
    tracestate: Option<&HeaderValue>,
    b3_single: bool,
) {
    let flag = if sampled { "1" } else { "0" };
    headers.insert(
        TRACEPARENT,
        header_value(format!(
            "00-{trace_id}-{span_id}-{}",
            if sampled { "01" } else { "00" }
        )),
    );
    headers.remove(TRACESTATE);
    if let Some(ts) = tracestate {
        headers.insert(TRACESTATE, ts.clone());
    }
    for h in [B3, B3_TRACE_ID, B3_SPAN_ID, B3_PARENT, B3_SAMPLED, B3_FLAGS] {
        headers.remove(h);
    }
    if b3_single {
        let mut v = format!("{trace_id}-{span_id}-{flag}");
        if let Some(p) = parent {
            v.push_str(&format!("-{p}"));
        }
        headers.insert(B3, header_value(v));
    } else {
        headers.insert(B3_TRACE_ID, header_value(trace_id.to_string()));
        headers.insert(B3_SPAN_ID, header_value(span_id.to_string()));
        if let Some(p) = parent {
            headers.insert(B3_PARENT, header_value(p.to_string()));
        }
        headers.insert(B3_SAMPLED, HeaderValue::from_static(flag));
    }
}

fn header_value(s: String) -> HeaderValue {
    // Only hex digits and '-' are ever formatted here, all valid header bytes.
    HeaderValue::try_from(s).expect("hex ids are valid header values")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn tid(s: &str) -> TraceId {
        TraceId::parse(s, true).unwrap()
    }

    fn sid(s: &str) -> SpanId {
        SpanId::parse(s, true).unwrap()
    }

    // The examples of W3C Trace Context, §3.2.2.
    #[test]
    fn traceparent_spec_examples() {
        let h = headers(&[
            (
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
            ("tracestate", "rojo=00f067aa0ba902b7"),
            ("tracestate", "congo=t61rcWkgMzE"),
        ]);
        let inc = extract(&h);
        let p = inc.parent.unwrap();
        assert_eq!(p.trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(p.span_id.to_string(), "00f067aa0ba902b7");
        assert_eq!(
            p.tracestate.unwrap(),
            "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"
        );
        assert_eq!(inc.sampled, Some(true));
        assert_eq!(inc.format, Some(Format::W3c));

        let h = headers(&[(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
        )]);
        assert_eq!(extract(&h).sampled, Some(false));
    }

    #[test]
    fn traceparent_rejects_malformed() {
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01", // zero trace id
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", // zero span id
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", // version ff
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", // upper case
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x", // v00 with extra
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",  // short trace id
            "00-4bf92f3577b34da6-00f067aa0ba902b7-01",                 // 64-bit trace id
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",    // no flags
            "0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "",
        ] {
            let h = headers(&[("traceparent", bad)]);
            assert_eq!(extract(&h).parent, None, "{bad}");
        }
        // A future version may append fields.
        let h = headers(&[(
            "traceparent",
            "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-holds",
        )]);
        assert!(extract(&h).parent.is_some());
    }

    // The examples of the B3 propagation README.
    #[test]
    fn b3_multi_spec_example() {
        let h = headers(&[
            ("X-B3-TraceId", "80f198ee56343ba864fe8b2a57d3eff7"),
            ("X-B3-ParentSpanId", "05e3ac9a4f6e3b90"),
            ("X-B3-SpanId", "e457b5a2e4d86bd1"),
            ("X-B3-Sampled", "1"),
        ]);
        let inc = extract(&h);
        let p = inc.parent.unwrap();
        assert_eq!(p.trace_id, tid("80f198ee56343ba864fe8b2a57d3eff7"));
        assert_eq!(p.span_id, sid("e457b5a2e4d86bd1"));
        assert_eq!(inc.sampled, Some(true));
        assert_eq!(inc.format, Some(Format::B3Multi));
    }

    #[test]
    fn b3_multi_64_bit_ids_debug_and_deny() {
        let h = headers(&[
            ("x-b3-traceid", "a3ce929d0e0e4736"),
            ("x-b3-spanid", "00F067AA0BA902B7"),
            ("x-b3-flags", "1"),
        ]);
        let inc = extract(&h);
        assert_eq!(
            inc.parent.unwrap().trace_id.to_string(),
            "0000000000000000a3ce929d0e0e4736"
        );
        assert_eq!(inc.sampled, Some(true));

        let inc = extract(&headers(&[("x-b3-sampled", "0")]));
        assert_eq!((inc.parent, inc.sampled), (None, Some(false)));

        // A trace id without a span id is malformed: ignored.
        let inc = extract(&headers(&[("x-b3-traceid", "a3ce929d0e0e4736")]));
        assert_eq!(inc.format, None);
    }

    #[test]
    fn b3_single_spec_examples() {
        let h = headers(&[(
            "b3",
            "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90",
        )]);
        let inc = extract(&h);
        let p = inc.parent.unwrap();
        assert_eq!(p.trace_id, tid("80f198ee56343ba864fe8b2a57d3eff7"));
        assert_eq!(p.span_id, sid("e457b5a2e4d86bd1"));
        assert_eq!(inc.sampled, Some(true));
        assert_eq!(inc.format, Some(Format::B3Single));

        let inc = extract(&headers(&[("b3", "0")]));
        assert_eq!((inc.parent, inc.sampled), (None, Some(false)));
        let inc = extract(&headers(&[("b3", "d")]));
        assert_eq!(inc.sampled, Some(true));
        let inc = extract(&headers(&[("b3", "a3ce929d0e0e4736-00f067aa0ba902b7")]));
        assert_eq!((inc.parent.is_some(), inc.sampled), (true, None));
        for bad in [
            "x",
            "a3ce929d0e0e4736",
            "a3ce929d0e0e4736-00f067aa0ba902b7-2",
            "1-2-3-4-5",
        ] {
            assert_eq!(extract(&headers(&[("b3", bad)])).format, None, "{bad}");
        }
    }

    #[test]
    fn traceparent_wins_over_b3() {
        let h = headers(&[
            ("b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-0"),
            (
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
        ]);
        let inc = extract(&h);
        assert_eq!(inc.format, Some(Format::W3c));
        assert_eq!(inc.sampled, Some(true));
    }

    #[test]
    fn inject_writes_our_span_as_the_parent() {
        let trace = tid("4bf92f3577b34da6a3ce929d0e0e4736");
        let ours = sid("1111111111111111");
        let theirs = sid("00f067aa0ba902b7");
        let mut h = headers(&[
            ("tracestate", "rojo=00f067aa0ba902b7"),
            ("x-b3-flags", "1"),
            ("b3", "stale"),
        ]);
        let ts = HeaderValue::from_static("rojo=00f067aa0ba902b7");
        inject(&mut h, trace, ours, Some(theirs), true, Some(&ts), false);
        assert_eq!(
            h["traceparent"],
            "00-4bf92f3577b34da6a3ce929d0e0e4736-1111111111111111-01"
        );
        assert_eq!(h["tracestate"], "rojo=00f067aa0ba902b7");
        assert_eq!(h["x-b3-traceid"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(h["x-b3-spanid"], "1111111111111111");
        assert_eq!(h["x-b3-parentspanid"], "00f067aa0ba902b7");
        assert_eq!(h["x-b3-sampled"], "1");
        assert!(h.get("b3").is_none() && h.get("x-b3-flags").is_none());
        // What we wrote reads back as our span.
        let back = extract(&h).parent.unwrap();
        assert_eq!((back.trace_id, back.span_id), (trace, ours));

        let mut h = HeaderMap::new();
        inject(&mut h, trace, ours, Some(theirs), false, None, true);
        assert_eq!(
            h["b3"],
            "4bf92f3577b34da6a3ce929d0e0e4736-1111111111111111-0-00f067aa0ba902b7"
        );
        assert_eq!(
            h["traceparent"],
            "00-4bf92f3577b34da6a3ce929d0e0e4736-1111111111111111-00"
        );
        assert!(h.get("x-b3-traceid").is_none() && h.get("tracestate").is_none());
    }
}
