//! What a new configuration changes, and whether all of it can be applied in place: pure
//! comparisons of two validated configurations, no I/O.

use std::fmt::Write as _;

use weft_config::{Config, RouterConfig};

/// How to hand a change to a process that cannot apply it in place.
const RESTART: &str =
    "restart weft, or hand its sockets to a new process with `weft proxy --upgrade`";

/// The changes of a configuration that can all be applied in place.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Plan {
    /// The namers changed: a new interpreter, and every router rebuilt on it.
    pub(crate) namers: bool,
    /// Per router, in config order: whether it is rebuilt (its settings changed, or the
    /// namers did).
    pub(crate) routers: Vec<bool>,
}

// === impl Plan ===

impl Plan {
    /// Nothing to rebuild.
    pub(crate) fn is_empty(&self) -> bool {
        !self.namers && !self.routers.contains(&true)
    }
}

/// Compares the configuration in force with a new one. `Err` lists, one line each, every
/// change that cannot be applied while running (listeners, the admin server, process-wide
/// telemetry, the identity's files): the whole new configuration is then refused.
pub(crate) fn plan(old: &Config, new: &Config) -> Result<Plan, Vec<String>> {
    let mut refused = Vec::new();
    if old.admin.addr != new.admin.addr {
        refused.push(format!(
            "admin: the admin server listens on {}; moving it to {} needs a restart ({RESTART})",
            old.admin.addr, new.admin.addr
        ));
    }
    if old.admin.shutdown_grace != new.admin.shutdown_grace {
        refused.push(format!(
            "admin.shutdownGrace: fixed at start ({:?}); {RESTART}",
            old.admin.shutdown_grace
        ));
    }
    if old.admin.drain_announce != new.admin.drain_announce {
        refused.push(format!(
            "admin.drainAnnounce: fixed at start ({:?}); {RESTART}",
            old.admin.drain_announce
        ));
    }
    let labels = |c: &Config| {
        c.routers
            .iter()
            .map(|r| r.label.clone())
            .collect::<Vec<_>>()
    };
    let (old_labels, new_labels) = (labels(old), labels(new));
    if old_labels != new_labels {
        refused.push(format!(
            "routers: the routers and their order ({}) cannot change while running (new: {}); \
             each router owns listeners; {RESTART}",
            old_labels.join(", "),
            new_labels.join(", ")
        ));
    } else {
        for (i, (o, n)) in old.routers.iter().zip(&new.routers).enumerate() {
            if let Some(why) = listeners_changed(o, n) {
                refused.push(format!(
                    "routers[{i}] ({}).servers: {why}; {RESTART}",
                    o.label
                ));
            }
        }
    }
    for (key, changed, what) in [
        (
            "tracing",
            old.tracing != new.tracing,
            "trace sampling and export are set up at start",
        ),
        (
            "statsd",
            old.statsd != new.statsd,
            "the statsd exporter is set up at start",
        ),
        (
            "identity",
            old.identity != new.identity,
            "the identity's file paths and issuer are fixed at start (their contents are \
             reloaded when the files change)",
        ),
        (
            "upgrade",
            old.upgrade != new.upgrade,
            "the upgrade socket is bound at start",
        ),
    ] {
        if changed {
            refused.push(format!("{key}: {what}; {RESTART}"));
        }
    }
    if !refused.is_empty() {
        return Err(refused);
    }
    let namers = old.namers != new.namers;
    let routers = old
        .routers
        .iter()
        .zip(&new.routers)
        .map(|(o, n)| namers || o != n)
        .collect();
    let plan = Plan { namers, routers };
    if plan.is_empty() && old != new {
        // A section this comparison does not know yet (added to `Config` without a rule
        // here): refused rather than silently left unapplied.
        return Err(vec![format!(
            "a changed section has no live reload rule; {RESTART}"
        )]);
    }
    Ok(plan)
}

/// Why a router's listeners differ, or `None` when they are the same (addresses, ingress TLS,
/// `clearContext`, in order).
fn listeners_changed(old: &RouterConfig, new: &RouterConfig) -> Option<String> {
    if old.servers == new.servers {
        return None;
    }
    let addrs = |r: &RouterConfig| {
        let mut s = String::new();
        for (i, server) in r.servers.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            let _ = write!(s, "{sep}{}", server.addr);
        }
        s
    };
    let (was, now) = (addrs(old), addrs(new));
    Some(if was != now {
        format!("a listener's address cannot change while running ({was} -> {now})")
    } else {
        format!("a listener's settings (tls, clearContext) cannot change while running ({was})")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "\
admin: {ip: 127.0.0.1, port: 9990}
namers:
  - {kind: fs, prefix: /#/fs, rootDir: /tmp/disco}
routers:
  - label: outbound
    servers: [{ip: 127.0.0.1, port: 4140}]
    dtab: /svc => /#/fs;
  - label: inbound
    servers: [{ip: 127.0.0.1, port: 4143}]
    dtab: /svc => /$/inet/127.0.0.1/8080;
";

    fn parse(text: &str) -> Config {
        Config::parse(text, "weft.yaml").expect("valid test config")
    }

    fn plan_of(new: &str) -> Result<Plan, Vec<String>> {
        plan(&parse(BASE), &parse(new))
    }

    #[test]
    fn the_same_configuration_changes_nothing() {
        let p = plan_of(BASE).expect("applies");
        assert!(p.is_empty(), "{p:?}");
    }

    #[test]
    fn a_dtab_change_rebuilds_only_its_router() {
        let p = plan_of(&BASE.replace("/#/fs;", "/$/inet/127.0.0.1/9;")).expect("applies");
        assert_eq!(
            p,
            Plan {
                namers: false,
                routers: vec![true, false]
            }
        );
    }

    #[test]
    fn client_and_service_policies_apply_in_place() {
        let new = BASE.replace(
            "    dtab: /svc => /#/fs;\n",
            "    dtab: /svc => /#/fs;\n    client: {connectTimeout: 2s}\n    service: {totalTimeout: 3s}\n",
        );
        let p = plan_of(&new).expect("applies");
        assert_eq!(p.routers, vec![true, false]);
    }

    #[test]
    fn a_namer_change_rebuilds_every_router() {
        let p = plan_of(&BASE.replace("/tmp/disco", "/tmp/disco2")).expect("applies");
        assert_eq!(
            p,
            Plan {
                namers: true,
                routers: vec![true, true]
            }
        );
    }

    #[test]
    fn a_listener_address_change_is_refused_with_a_restart_hint() {
        let why = plan_of(&BASE.replace("port: 4140", "port: 4150")).unwrap_err();
        assert_eq!(why.len(), 1, "{why:?}");
        assert!(
            why[0].starts_with("routers[0] (outbound).servers: a listener's address cannot change")
                && why[0].contains("127.0.0.1:4140 -> 127.0.0.1:4150")
                && why[0].contains("weft proxy --upgrade"),
            "{}",
            why[0]
        );
    }

    #[test]
    fn a_listener_setting_change_is_refused() {
        let new = BASE.replace(
            "{ip: 127.0.0.1, port: 4143}",
            "{ip: 127.0.0.1, port: 4143, clearContext: true}",
        );
        let why = plan_of(&new).unwrap_err();
        assert!(why[0].contains("settings (tls, clearContext)"), "{why:?}");
    }

    #[test]
    fn adding_removing_or_renaming_routers_is_refused() {
        let renamed = BASE.replace("label: inbound", "label: incoming");
        let why = plan_of(&renamed).unwrap_err();
        assert!(
            why[0].starts_with("routers: the routers and their order (outbound, inbound)"),
            "{why:?}"
        );
        let one = BASE.split("  - label: inbound").next().unwrap_or(BASE);
        assert!(plan_of(one).is_err());
    }

    #[test]
    fn admin_and_process_wide_sections_are_refused_all_together() {
        let new = BASE.replace(
            "port: 9990}",
            "port: 9991, shutdownGrace: 3s, drainAnnounce: 1s}",
        ) + "statsd: {address: 127.0.0.1:8125}\n";
        let why = plan_of(&new).unwrap_err();
        let keys: Vec<&str> = why
            .iter()
            .map(|w| w.split(':').next().unwrap_or(""))
            .collect();
        // The default upgrade socket is named after the admin port, so it moves too.
        assert_eq!(
            keys,
            [
                "admin",
                "admin.shutdownGrace",
                "admin.drainAnnounce",
                "statsd",
                "upgrade"
            ],
            "{why:?}"
        );
    }
}
