//! Raw structs to validated types: defaults, cross-field and cross-router checks.
//!
//! Every check reports the key path of the offending value; `lib.rs` turns it into a
//! position with [`crate::locate`].

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path as FsPath;
use std::time::Duration;

use crate::locate::KeyPath;
use crate::naming;
use crate::raw::*;
use crate::values::Dur;
use crate::*;

pub(crate) mod control;
mod discovery;
mod interpreter;
mod objective;
mod service;
mod telemetry;
mod tls;

/// A validation failure: the key path, the message, and for a dtab the 1-based line and
/// column of the error inside the dtab text.
#[derive(Debug)]
pub(crate) struct Invalid {
    pub(crate) path: KeyPath,
    pub(crate) message: String,
    pub(crate) within: Option<(usize, usize)>,
}

type Result<T> = std::result::Result<T, Invalid>;

fn invalid<T>(path: &KeyPath, message: impl Into<String>) -> Result<T> {
    Err(Invalid {
        path: path.clone(),
        message: message.into(),
        within: None,
    })
}

/// `base_dir` is the config file's directory; relative `rootDir`s are joined to it.
pub(crate) fn config(raw: RawConfig, base_dir: &FsPath) -> Result<Config> {
    let root = KeyPath::default();
    let admin = admin(raw.admin.unwrap_or_default(), &root.key("admin"))?;

    let mut namers = Vec::new();
    let mut prefixes = HashSet::new();
    for (i, n) in raw.namers.unwrap_or_default().into_iter().enumerate() {
        let p = root.key("namers").index(i);
        let namer = discovery::namer(n, &p, base_dir)?;
        if !prefixes.insert(namer.prefix.clone()) {
            return invalid(
                &p.key("prefix"),
                format!("duplicate namer prefix {}", namer.prefix),
            );
        }
        namers.push(namer);
    }

    let Some(raw_routers) = raw.routers.filter(|r| !r.is_empty()) else {
        return invalid(
            &root.key("routers"),
            "no routers: the file must define at least one router under `routers`",
        );
    };
    let mut routers = Vec::new();
    let mut labels = HashMap::new();
    let mut listeners = vec![(admin.addr, root.key("admin"))];
    for (i, r) in raw_routers.into_iter().enumerate() {
        let p = root.key("routers").index(i);
        let router = router(r, &p, base_dir, admin.addr.port())?;
        if let Some(first) = labels.insert(router.label.clone(), i) {
            return invalid(
                &p.key("label"),
                format!(
                    "duplicate router label \"{}\": already used by routers[{first}]",
                    router.label
                ),
            );
        }
        for (j, server) in router.servers.iter().enumerate() {
            let sp = p.key("servers").index(j);
            if let Some((_, other)) = listeners.iter().find(|(a, _)| conflicts(*a, server.addr)) {
                return invalid(
                    &sp,
                    format!("listen address {} is already used by {other}", server.addr),
                );
            }
            listeners.push((server.addr, sp));
        }
        routers.push(router);
    }
    let tracing = raw
        .tracing
        .map(|t| telemetry::tracing(t, &root.key("tracing")))
        .transpose()?;
    let statsd = raw
        .statsd
        .map(|s| telemetry::statsd(s, &root.key("statsd")))
        .transpose()?;
    let identity = raw
        .identity
        .map(|i| tls::identity(i, &root.key("identity"), base_dir))
        .transpose()?;
    for (i, r) in routers.iter().enumerate() {
        tls::check_router(r, &root.key("routers").index(i), identity.is_some())?;
    }
    let upgrade = upgrade(raw.upgrade.unwrap_or_default(), &admin, base_dir);
    Ok(Config {
        admin,
        namers,
        routers,
        tracing,
        statsd,
        identity,
        upgrade,
    })
}

/// Two listen addresses conflict if they share a non-zero port and their IPs are equal, or one
/// is the unspecified address of the same family.
fn conflicts(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() != 0
        && a.port() == b.port()
        && a.is_ipv4() == b.is_ipv4()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

/// The upgrade socket: as configured, else derived from the admin port (none for port 0).
fn upgrade(raw: RawUpgrade, admin: &AdminConfig, base_dir: &FsPath) -> UpgradeConfig {
    let socket = match raw.socket.filter(|s| !s.is_empty()) {
        Some(path) => Some(base_dir.join(path)),
        None if admin.addr.port() == 0 => None,
        None => Some(std::env::temp_dir().join(format!("weft-{}.upgrade.sock", admin.addr.port()))),
    };
    UpgradeConfig { socket }
}

fn admin(raw: RawAdmin, p: &KeyPath) -> Result<AdminConfig> {
    let d = AdminConfig::default();
    let shutdown_grace = dur(
        raw.shutdown_grace,
        d.shutdown_grace,
        false,
        &p.key("shutdownGrace"),
    )?;
    let drain_announce = dur(
        raw.drain_announce,
        d.drain_announce,
        false,
        &p.key("drainAnnounce"),
    )?;
    Ok(AdminConfig {
        addr: SocketAddr::new(
            raw.ip.map_or(d.addr.ip(), |ip| ip.0),
            raw.port.map_or(d.addr.port(), |port| port.0),
        ),
        shutdown_grace,
        // Part of the grace: a drain never takes longer than `shutdownGrace`.
        drain_announce: drain_announce.min(shutdown_grace),
    })
}

fn not_for_kind<T>(p: &KeyPath, kind: &str) -> Result<T> {
    invalid(p, format!("not a setting of kind `{kind}`"))
}

fn router(raw: RawRouter, p: &KeyPath, base_dir: &FsPath, admin_port: u16) -> Result<RouterConfig> {
    let label = match raw.label {
        None => {
            return invalid(
                &p.key("label"),
                "missing `label`: every router needs a unique name",
            )
        }
        Some(l) => l,
    };
    if label.is_empty()
        || !label
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    {
        return invalid(
            &p.key("label"),
            format!("invalid label \"{label}\": expected letters, digits, '.', '_' or '-'"),
        );
    }
    let servers = match raw.servers {
        None => return invalid(&p.key("servers"), "missing `servers`: a router needs at least one listener, like [{ip: 127.0.0.1, port: 4140}]"),
        Some(s) if s.is_empty() => return invalid(&p.key("servers"), "no servers: a router needs at least one listener"),
        Some(s) => s,
    };
    let mut addrs = Vec::new();
    for (i, s) in servers.into_iter().enumerate() {
        let Some(port) = s.port else {
            return invalid(
                &p.key("servers").index(i).key("port"),
                "missing `port`: the port to listen on (0 for any free port)",
            );
        };
        let ip = s.ip.map_or(IpAddr::V4(Ipv4Addr::LOCALHOST), |ip| ip.0);
        let tls = s
            .tls
            .map(|t| tls::ingress_tls(t, &p.key("servers").index(i).key("tls"), base_dir))
            .transpose()?;
        addrs.push(ServerConfig {
            addr: SocketAddr::new(ip, port.0),
            tls,
            clear_context: s.clear_context.unwrap_or(false),
        });
    }
    let dtab = match raw.dtab.as_deref() {
        None => naming::Dtab::default(),
        Some(text) => naming::Dtab::read(text).map_err(|e| Invalid {
            path: p.key("dtab"),
            message: format!("invalid dtab: {}", strip_position(&e.to_string())),
            within: Some((e.line(), e.column())),
        })?,
    };
    let dst_prefix = match raw.dst_prefix {
        Some(path) => path.0,
        None => naming::Path::read(RouterConfig::DEFAULT_DST_PREFIX).map_err(|e| Invalid {
            path: p.key("dstPrefix"),
            message: e.to_string(),
            within: None,
        })?,
    };
    let max_hops = raw.max_hops.unwrap_or(RouterConfig::DEFAULT_MAX_HOPS);
    if max_hops == 0 {
        return invalid(&p.key("maxHops"), "maxHops must be at least 1");
    }
    let max_header_bytes = raw
        .max_header_bytes
        .unwrap_or(RouterConfig::DEFAULT_MAX_HEADER_BYTES);
    if max_header_bytes == 0 {
        return invalid(
            &p.key("maxHeaderBytes"),
            "maxHeaderBytes must be at least 1",
        );
    }
    let interpreter = match raw.interpreter {
        None => InterpreterConfig::Default,
        Some(i) => {
            interpreter::interpreter(i, &p.key("interpreter"), base_dir, admin_port, &label)?
        }
    };
    Ok(RouterConfig {
        interpreter,
        label,
        protocol: raw.protocol.unwrap_or_default(),
        servers: addrs,
        identifier: identifier(raw.identifier, &p.key("identifier"))?,
        dtab,
        dst_prefix,
        binding_timeout: dur(
            raw.binding_timeout,
            RouterConfig::DEFAULT_BINDING_TIMEOUT,
            true,
            &p.key("bindingTimeout"),
        )?,
        max_hops,
        max_header_bytes,
        opaque_ports: raw
            .opaque_ports
            .unwrap_or_default()
            .into_iter()
            .map(|port| port.0)
            .collect(),
        detect_timeout: dur(
            raw.detect_timeout,
            RouterConfig::DEFAULT_DETECT_TIMEOUT,
            true,
            &p.key("detectTimeout"),
        )?,
        tcp_idle_timeout: dur(
            raw.tcp_idle_timeout,
            RouterConfig::DEFAULT_TCP_IDLE_TIMEOUT,
            true,
            &p.key("tcpIdleTimeout"),
        )?,
        keep_alive_timeout: dur(
            raw.keep_alive_timeout,
            RouterConfig::DEFAULT_KEEP_ALIVE_TIMEOUT,
            true,
            &p.key("keepAliveTimeout"),
        )?,
        header_read_timeout: dur(
            raw.header_read_timeout,
            RouterConfig::DEFAULT_HEADER_READ_TIMEOUT,
            true,
            &p.key("headerReadTimeout"),
        )?,
        via: raw.via.unwrap_or_default(),
        tls: raw
            .tls
            .map(|t| tls::server_tls(t, &p.key("tls")))
            .transpose()?,
        client: client(raw.client.unwrap_or_default(), &p.key("client"), base_dir)?,
        service: service::service(raw.service.unwrap_or_default(), &p.key("service"))?,
        access_log: raw
            .access_log
            .map(|a| telemetry::access_log(a, &p.key("accessLog"), base_dir))
            .transpose()?,
    })
}

/// Drops a leading `line L, column C: ` from a dtab error: the position is reported in the
/// file's terms instead.
fn strip_position(msg: &str) -> &str {
    if let Some(rest) = msg.strip_prefix("line ") {
        if let Some((pos, tail)) = rest.split_once(": ") {
            if pos.contains(", column ") {
                return tail;
            }
        }
    }
    msg
}

/// A duration with a default; `positive` rejects zero.
fn dur(raw: Option<Dur>, default: Duration, positive: bool, p: &KeyPath) -> Result<Duration> {
    let d = raw.map_or(default, |d| d.0);
    if positive && d.is_zero() {
        return invalid(p, "must be greater than zero");
    }
    Ok(d)
}

fn identifier(raw: Option<RawIdentifier>, p: &KeyPath) -> Result<IdentifierConfig> {
    let Some(raw) = raw else {
        return Ok(IdentifierConfig::default());
    };
    let Some(kind) = raw.kind else {
        return invalid(
            &p.key("kind"),
            "missing `kind`: expected one of `header.token`, `methodAndHost`, `path`, `header`, `static`",
        );
    };
    let (name, allowed): (&str, &[&str]) = match kind {
        IdentifierKindName::HeaderToken => ("header.token", &["header"]),
        IdentifierKindName::MethodAndHost => ("methodAndHost", &[]),
        IdentifierKindName::Path => ("path", &["segments", "consume"]),
        IdentifierKindName::Header => ("header", &["header"]),
        IdentifierKindName::Static => ("static", &["path"]),
    };
    let given = [
        ("header", raw.header.is_some()),
        ("segments", raw.segments.is_some()),
        ("consume", raw.consume.is_some()),
        ("path", raw.path.is_some()),
    ];
    for (key, present) in given {
        if present && !allowed.contains(&key) {
            return not_for_kind(&p.key(key), name);
        }
    }
    Ok(match kind {
        IdentifierKindName::HeaderToken => IdentifierConfig::HeaderToken {
            header: raw.header.map_or(http::header::HOST, |h| h.0),
        },
        IdentifierKindName::MethodAndHost => IdentifierConfig::MethodAndHost,
        IdentifierKindName::Path => {
            let segments = raw.segments.unwrap_or(1);
            if segments == 0 {
                return invalid(&p.key("segments"), "segments must be at least 1");
            }
            IdentifierConfig::Path {
                segments,
                consume: raw.consume.unwrap_or(false),
            }
        }
        IdentifierKindName::Header => IdentifierConfig::Header {
            header: raw
                .header
                .map_or(http::HeaderName::from_static("l5d-name"), |h| h.0),
        },
        IdentifierKindName::Static => match raw.path {
            Some(path) => IdentifierConfig::Static { path: path.0 },
            None => {
                return invalid(
                    &p.key("path"),
                    "missing `path`: the name every request gets, like /svc/foo",
                )
            }
        },
    })
}

/// The router's `client`, and each `configs` entry as the top-level keys with its own
/// replacing them.
fn client(mut raw: RawClient, p: &KeyPath, base_dir: &FsPath) -> Result<ClientConfig> {
    if raw.prefix.is_some() {
        return invalid(
            &p.key("prefix"),
            "`prefix` belongs in an entry of `client.configs`",
        );
    }
    let entries = raw.configs.take().unwrap_or_default();
    let mut top = client_settings(raw.clone(), p, base_dir)?;
    for (i, entry) in entries.into_iter().enumerate() {
        let ep = p.key("configs").index(i);
        if entry.configs.is_some() {
            return invalid(&ep.key("configs"), "`configs` entries cannot nest");
        }
        let Some(prefix) = entry.prefix.clone() else {
            return invalid(
                &ep.key("prefix"),
                "missing `prefix`: the bound names these settings apply to, like /#/gateways",
            );
        };
        let config = client_settings(entry.over(&raw), &ep, base_dir)?;
        // Origination trust roots are loaded once per router, from the top-level `tls`.
        if let (Some(ClientTlsConfig::Origin { .. }), true) = (&config.tls, config.tls != top.tls) {
            return invalid(
                &ep.key("tls"),
                "an entry's `tls` can only be mesh TLS (`serverIdentity`); TLS to servers outside the mesh is set in the top-level `client.tls`",
            );
        }
        top.configs.push(PrefixedClientConfig {
            prefix: prefix.0,
            config,
        });
    }
    Ok(top)
}

fn client_settings(raw: RawClient, p: &KeyPath, base_dir: &FsPath) -> Result<ClientConfig> {
    let d = ClientConfig::default();
    let lb = raw.load_balancer.unwrap_or_default();
    let lbp = p.key("loadBalancer");
    // `kind` is optional and can only be `ewma`: serde has rejected anything else.
    let (None | Some(LoadBalancerKindName::Ewma)) = lb.kind;
    let load_balancer = LoadBalancerConfig {
        decay: dur(lb.decay, d.load_balancer.decay, true, &lbp.key("decay"))?,
    };
    Ok(ClientConfig {
        protocol: raw.protocol.unwrap_or_default(),
        connect_timeout: dur(
            raw.connect_timeout,
            d.connect_timeout,
            true,
            &p.key("connectTimeout"),
        )?,
        pool_idle_timeout: dur(
            raw.pool_idle_timeout,
            d.pool_idle_timeout,
            false,
            &p.key("poolIdleTimeout"),
        )?,
        load_balancer,
        failure_accrual: failure_accrual(raw.failure_accrual, &p.key("failureAccrual"))?,
        fail_fast_timeout: dur(
            raw.fail_fast_timeout,
            d.fail_fast_timeout,
            true,
            &p.key("failFastTimeout"),
        )?,
        requeue_budget: service::budget(
            raw.requeue_budget.unwrap_or_default(),
            &p.key("requeueBudget"),
        )?,
        tls: raw
            .tls
            .map(|t| tls::client_tls(t, &p.key("tls"), base_dir))
            .transpose()?,
        configs: Vec::new(),
    })
}

fn failure_accrual(raw: Option<RawFailureAccrual>, p: &KeyPath) -> Result<FailureAccrualConfig> {
    let Some(raw) = raw else {
        return Ok(FailureAccrualConfig::default());
    };
    let Some(kind) = raw.kind else {
        return invalid(
            &p.key("kind"),
            "missing `kind`: expected `consecutiveFailures`, `successRate` or `none`",
        );
    };
    let (name, allowed): (&str, &[&str]) = match kind {
        FailureAccrualKindName::ConsecutiveFailures => {
            ("consecutiveFailures", &["failures", "backoff"])
        }
        FailureAccrualKindName::SuccessRate => {
            ("successRate", &["successRate", "requests", "backoff"])
        }
        FailureAccrualKindName::None => ("none", &[]),
    };
    let given = [
        ("failures", raw.failures.is_some()),
        ("successRate", raw.success_rate.is_some()),
        ("requests", raw.requests.is_some()),
        ("backoff", raw.backoff.is_some()),
    ];
    for (key, present) in given {
        if present && !allowed.contains(&key) {
            return not_for_kind(&p.key(key), name);
        }
    }
    match kind {
        FailureAccrualKindName::None => Ok(FailureAccrualConfig::None),
        FailureAccrualKindName::ConsecutiveFailures => {
            let failures = raw
                .failures
                .unwrap_or(FailureAccrualConfig::DEFAULT_FAILURES);
            if failures == 0 {
                return invalid(&p.key("failures"), "failures must be at least 1");
            }
            Ok(FailureAccrualConfig::ConsecutiveFailures {
                failures,
                backoff: backoff(raw.backoff, &p.key("backoff"))?,
            })
        }
        FailureAccrualKindName::SuccessRate => {
            let success_rate = raw
                .success_rate
                .unwrap_or(FailureAccrualConfig::DEFAULT_SUCCESS_RATE);
            // Written so that NaN fails too.
            if !(success_rate > 0.0 && success_rate <= 1.0) {
                return invalid(
                    &p.key("successRate"),
                    format!("successRate {success_rate} out of range: expected a fraction greater than 0.0 and at most 1.0"),
                );
            }
            let requests = raw
                .requests
                .unwrap_or(FailureAccrualConfig::DEFAULT_REQUESTS);
            if requests == 0 {
                return invalid(&p.key("requests"), "requests must be at least 1");
            }
            Ok(FailureAccrualConfig::SuccessRate {
                success_rate,
                requests,
                backoff: backoff(raw.backoff, &p.key("backoff"))?,
            })
        }
    }
}

fn backoff(raw: Option<RawBackoff>, p: &KeyPath) -> Result<Backoff> {
    let b = raw.unwrap_or_default();
    let d = Backoff::default();
    let min = dur(b.min, d.min, false, &p.key("min"))?;
    let max = dur(b.max, d.max, true, &p.key("max"))?;
    min_max(min, max, p)?;
    Ok(Backoff { min, max })
}

/// Rejects a backoff whose `min` is above its `max`, at the backoff's mapping.
fn min_max(min: Duration, max: Duration, p: &KeyPath) -> Result<()> {
    if min > max {
        return invalid(
            p,
            format!(
                "backoff min ({}) is greater than max ({})",
                humantime::format_duration(min),
                humantime::format_duration(max)
            ),
        );
    }
    Ok(())
}
