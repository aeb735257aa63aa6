//! A router's `interpreter`: its own namers (`default`) or the control plane (`control`).

use std::path::Path as FsPath;

use super::{invalid, not_for_kind, Result};
use crate::locate::KeyPath;
use crate::raw::*;
use crate::*;

pub(super) fn interpreter(
    raw: RawInterpreter,
    p: &KeyPath,
    base_dir: &FsPath,
    admin_port: u16,
    label: &str,
) -> Result<InterpreterConfig> {
    let kind =
        match raw.kind {
            None => {
                return invalid(
                    &p.key("kind"),
                    "missing `kind`: `default` (this file's namers) or `control` (weft control)",
                )
            }
            Some(InterpreterKindName::Namerd) => return invalid(
                &p.key("kind"),
                "Linkerd 1's namerd interpreters speak namerd's own protocols; weft proxies ask \
                 `weft control`: write `kind: control` with `addresses: [host:port, ...]` and \
                 `namespace`",
            ),
            Some(k) => k,
        };
    if raw.dst.is_some() {
        return invalid(
            &p.key("dst"),
            "`dst` is Linkerd 1's namerd address; weft's is `addresses: [host:port, ...]` with \
             `kind: control`",
        );
    }
    if let InterpreterKindName::Default = kind {
        for (key, set) in [
            ("addresses", raw.addresses.is_some()),
            ("namespace", raw.namespace.is_some()),
            ("cacheFile", raw.cache_file.is_some()),
        ] {
            if set {
                return not_for_kind(&p.key(key), "default");
            }
        }
        return Ok(InterpreterConfig::Default);
    }
    let addresses =
        match raw.addresses {
            Some(a) if !a.is_empty() => a,
            _ => return invalid(
                &p.key("addresses"),
                "missing `addresses`: the control instances, like [control-1:4321, control-2:4321]",
            ),
        };
    for (i, a) in addresses.iter().enumerate() {
        let port_ok = a.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
        });
        if !port_ok || a.contains('/') {
            return invalid(
                &p.key("addresses").index(i),
                format!("{a:?} is not host:port (e.g. 127.0.0.1:4321, control.example:4321, [::1]:4321)"),
            );
        }
    }
    let namespace = raw
        .namespace
        .unwrap_or_else(|| ControlInterpreterConfig::DEFAULT_NAMESPACE.to_owned());
    if namespace.is_empty() || namespace.contains(['/', ' ']) {
        return invalid(
            &p.key("namespace"),
            format!("invalid namespace {namespace:?}: expected a name without '/' or spaces"),
        );
    }
    let cache_file = match raw.cache_file {
        Some(f) if f.is_empty() => {
            return invalid(&p.key("cacheFile"), "empty `cacheFile`: a file path")
        }
        Some(f) => Some(base_dir.join(f)),
        None if admin_port == 0 => None,
        None => Some(std::env::temp_dir().join(format!("weft-{admin_port}-{label}.control-cache"))),
    };
    Ok(InterpreterConfig::Control(ControlInterpreterConfig {
        addresses,
        namespace,
        cache_file,
    }))
}
