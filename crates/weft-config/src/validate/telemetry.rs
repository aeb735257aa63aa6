//! `tracing`, `statsd` and a router's `accessLog`.

use std::net::Ipv6Addr;
use std::path::Path as FsPath;

use super::{dur, invalid, Result};
use crate::locate::KeyPath;
use crate::raw::*;
use crate::*;

pub(super) fn tracing(raw: RawTracing, p: &KeyPath) -> Result<TracingConfig> {
    let d = TracingConfig::default();
    let sample_rate = raw.sample_rate.unwrap_or(d.sample_rate);
    // Written so that NaN fails too.
    if !(0.0..=1.0).contains(&sample_rate) {
        return invalid(
            &p.key("sampleRate"),
            format!("sampleRate {sample_rate} out of range: expected a fraction from 0.0 to 1.0"),
        );
    }
    let service_name = match raw.service_name {
        None => d.service_name,
        Some(n) if n.trim().is_empty() => {
            return invalid(&p.key("serviceName"), "serviceName must not be empty")
        }
        Some(n) => n,
    };
    Ok(TracingConfig {
        sample_rate,
        otlp: raw
            .otlp
            .map(|e| exporter(e, &p.key("otlp"), "http://127.0.0.1:4318/v1/traces"))
            .transpose()?,
        zipkin: raw
            .zipkin
            .map(|e| exporter(e, &p.key("zipkin"), "http://127.0.0.1:9411/api/v2/spans"))
            .transpose()?,
        service_name,
    })
}

fn exporter(raw: RawExporter, p: &KeyPath, example: &str) -> Result<ExporterConfig> {
    let p = p.key("endpoint");
    let Some(text) = raw.endpoint else {
        return invalid(
            &p,
            format!("missing `endpoint`: the collector's URL, like {example}"),
        );
    };
    let expected = format!("expected an http URL with a host and a path, like {example}");
    let Ok(endpoint) = text.trim().parse::<http::Uri>() else {
        return invalid(&p, format!("invalid URL \"{text}\": {expected}"));
    };
    match endpoint.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return invalid(
                &p,
                format!("https is not supported for span export: send to a local collector over http, like {example}"),
            )
        }
        _ => return invalid(&p, format!("invalid URL \"{text}\": {expected}")),
    }
    if endpoint.host().is_none_or(str::is_empty) {
        return invalid(&p, format!("invalid URL \"{text}\": {expected}"));
    }
    Ok(ExporterConfig { endpoint })
}

pub(super) fn statsd(raw: RawStatsd, p: &KeyPath) -> Result<StatsdConfig> {
    let Some(address) = raw.address else {
        return invalid(
            &p.key("address"),
            "missing `address`: the statsd collector's host:port, like 127.0.0.1:8125",
        );
    };
    if !valid_host_port(&address) {
        return invalid(
            &p.key("address"),
            format!("invalid address \"{address}\": expected host:port with a port from 1 to 65535, like 127.0.0.1:8125 or [::1]:8125"),
        );
    }
    let prefix = raw
        .prefix
        .unwrap_or_else(|| StatsdConfig::DEFAULT_PREFIX.to_owned());
    let chars_ok = prefix
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
    if !chars_ok || prefix.starts_with('.') || prefix.ends_with('.') || prefix.contains("..") {
        return invalid(
            &p.key("prefix"),
            format!("invalid prefix \"{prefix}\": expected letters, digits, '_', '-' and dots between them, like weft or prod.weft"),
        );
    }
    Ok(StatsdConfig {
        address,
        prefix,
        interval: dur(
            raw.interval,
            StatsdConfig::DEFAULT_INTERVAL,
            true,
            &p.key("interval"),
        )?,
    })
}

/// `host:port` where host is a DNS name, an IPv4 address, or an IPv6 address in brackets.
fn valid_host_port(s: &str) -> bool {
    let Some((host, port)) = s.rsplit_once(':') else {
        return false;
    };
    if !matches!(port.parse::<u16>(), Ok(p) if p != 0) {
        return false;
    }
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return v6.parse::<Ipv6Addr>().is_ok();
    }
    !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
}

pub(super) fn access_log(
    raw: RawAccessLog,
    p: &KeyPath,
    base_dir: &FsPath,
) -> Result<AccessLogConfig> {
    let path = match raw.path.as_deref() {
        None | Some("") => {
            return invalid(
                &p.key("path"),
                "missing `path`: a file to append to, or \"-\" for standard output",
            )
        }
        Some("-") => AccessLogTarget::Stdout,
        Some(file) => AccessLogTarget::File(base_dir.join(file)),
    };
    Ok(AccessLogConfig {
        path,
        format: raw.format.unwrap_or_default(),
    })
}
