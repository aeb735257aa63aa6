//! Header rewriting between hops: hop-by-hop headers (RFC 9110 section 7.6.1), `Via` (RFC
//! 9110 section 7.6.3, when the router adds it), the `l5d-*` context that proxies pass on
//! (per-request dtabs, the hop count that catches routing loops), and clearing that context
//! from untrusted clients (`clearContext`).

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::{Authority, PathAndQuery};
use http::{Uri, Version};
use weft_naming::Dtab;

use crate::error::{ErrorKind, ProxyError};

pub(crate) mod case;

/// Per-request dtab headers (naming.md "Which dtab applies").
// Names as `HeaderName` constants: a `&str` name is parsed and validated on every lookup.
const L5D_DTAB: HeaderName = HeaderName::from_static("l5d-dtab");
const L5D_CTX_DTAB: HeaderName = HeaderName::from_static("l5d-ctx-dtab");
/// Marks a request that a peer proxy carried over HTTP/2 and its original protocol
/// (Linkerd's header; protocols.md).
pub(crate) const ORIG_PROTO: HeaderName = HeaderName::from_static("l5d-orig-proto");
/// How many weft proxies a request has passed through, sent only to weft proxies (peers,
/// and this proxy's own listeners) and removed before the application: a request that
/// comes back too often is a routing loop, detected without `Via`.
pub(crate) const HOP_COUNT: HeaderName = HeaderName::from_static("l5d-hop-count");

pub(crate) use weft_config::ViaPolicy;

/// Headers that describe one connection, never the message (RFC 9110 section 7.6.1, plus the
/// legacy `Proxy-Connection` and `Keep-Alive` that HTTP/1.0 peers still send).
const HOP_BY_HOP_COUNT: usize = 7;
// A static, not a const: a const array of names is built (and dropped) at every use.
static HOP_BY_HOP: [HeaderName; HOP_BY_HOP_COUNT] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Removes hop-by-hop headers: the fixed set, every header named in `Connection`, and `TE`
/// unless it is exactly `trailers` (the one value HTTP/2 and gRPC allow end to end, RFC 9113
/// section 8.2.2).
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // One pass over the headers first: most messages carry no hop-by-hop header but
    // `Connection: keep-alive`, and each `remove` of an absent name still hashes it.
    let mut present = [false; HOP_BY_HOP_COUNT];
    let mut te = false;
    let mut names_options = false;
    for (name, value) in headers.iter() {
        match HOP_BY_HOP.iter().position(|h| h == name) {
            Some(i) => {
                present[i] = true;
                // Index 0 is `Connection`: its options may name more headers to remove.
                names_options |= i == 0 && !fixed_options_only(value.as_bytes());
            }
            None => te |= name == header::TE,
        }
    }
    if names_options {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .flat_map(|v| v.as_bytes().split(|b| *b == b','))
            .map(<[u8]>::trim_ascii)
            .filter(|t| !t.is_empty() && !is_fixed_option(t))
            .filter_map(|t| HeaderName::from_bytes(t).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    for (name, _) in HOP_BY_HOP.iter().zip(present).filter(|(_, p)| *p) {
        headers.remove(name);
    }
    if te
        && !headers
            .get(header::TE)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"))
    {
        headers.remove(header::TE);
    }
}

/// A `Connection` option that names no other header to remove: `close`, or one of the fixed
/// hop-by-hop set (`keep-alive` above all, the usual value), which goes anyway.
fn is_fixed_option(token: &[u8]) -> bool {
    token.eq_ignore_ascii_case(b"close")
        || HOP_BY_HOP
            .iter()
            .any(|h| token.eq_ignore_ascii_case(h.as_str().as_bytes()))
}

/// True if a `Connection` value has only fixed options (see [`is_fixed_option`]), so it
/// needs no further parsing.
fn fixed_options_only(value: &[u8]) -> bool {
    value
        .split(|b| *b == b',')
        .map(<[u8]>::trim_ascii)
        .all(|t| t.is_empty() || is_fixed_option(t))
}

/// Which of the request headers that routing acts on a request carries, from one pass over
/// its header names. Most requests carry none of them, and looking up an absent name still
/// hashes it: one pass instead of one lookup per name (`bench/profile --callgrind`).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Carried {
    /// `Via` (loop detection).
    pub(crate) via: bool,
    /// `l5d-dtab` (a per-request dtab override).
    pub(crate) dtab: bool,
    /// `l5d-ctx-dtab` (the override a previous hop forwarded).
    pub(crate) ctx_dtab: bool,
    /// `l5d-orig-proto` (an HTTP/1 request a peer proxy carried over HTTP/2).
    pub(crate) orig_proto: bool,
    /// `Upgrade` (a protocol switch, with `Connection: upgrade`).
    pub(crate) upgrade: bool,
    /// `l5d-hop-count` (the request passed through weft proxies before).
    pub(crate) hops: bool,
    /// `l5d-orig-header-case` (header spellings a peer proxy carried over HTTP/2).
    pub(crate) orig_case: bool,
    /// Any `l5d-*` header at all (what `clearContext` removes).
    pub(crate) context: bool,
}

impl Carried {
    /// Scans the names of `headers` once.
    pub(crate) fn scan(headers: &HeaderMap) -> Carried {
        let mut c = Carried::default();
        for name in headers.keys() {
            if *name == header::VIA {
                c.via = true;
            } else if *name == header::UPGRADE {
                c.upgrade = true;
            } else if name.as_str().starts_with("l5d-") {
                c.context = true;
                c.dtab |= *name == L5D_DTAB;
                c.ctx_dtab |= *name == L5D_CTX_DTAB;
                c.orig_proto |= *name == ORIG_PROTO;
                c.hops |= *name == HOP_COUNT;
                c.orig_case |= *name == case::ORIG_HEADER_CASE;
            }
        }
        c
    }
}

/// The `l5d-*` headers `clearContext` keeps: how the request was carried, not where it goes.
fn is_transport(name: &HeaderName) -> bool {
    *name == HOP_COUNT || *name == ORIG_PROTO || *name == case::ORIG_HEADER_CASE
}

/// Removes every `l5d-*` header a client sent (`clearContext`, Linkerd 1's server option):
/// per-request dtabs (`l5d-dtab`, `l5d-ctx-*`), `l5d-dst-override` and the rest, so a client
/// from outside the mesh cannot steer its request. Returns what is left to act on.
///
/// The hop count stays: a client can only make its own request fail with it, and without it
/// a loop through a `clearContext` listener (an edge router that routes to itself) would
/// never end. So do the two headers that say how the client's own request was carried
/// (`l5d-orig-proto`, `l5d-orig-header-case`): with them a client can only change the HTTP
/// version and header spelling of its own request, and without them a request from another
/// cluster's gateway would reach the application as HTTP/2 with lowercased header names.
pub(crate) fn clear_context(headers: &mut HeaderMap, carried: Carried) -> Carried {
    if !carried.context {
        return carried;
    }
    let names: Vec<HeaderName> = headers
        .keys()
        .filter(|n| n.as_str().starts_with("l5d-") && !is_transport(n))
        .cloned()
        .collect();
    for name in names {
        headers.remove(&name);
    }
    Carried {
        dtab: false,
        ctx_dtab: false,
        context: carried.hops || carried.orig_proto || carried.orig_case,
        ..carried
    }
}

/// The hop count a request carries (`l5d-hop-count`); 0 when absent or not a number.
pub(crate) fn hop_count(headers: &HeaderMap, carried: Carried) -> u32 {
    if !carried.hops {
        return 0;
    }
    headers
        .get(HOP_COUNT)
        .and_then(|v| v.to_str().ok()?.trim().parse().ok())
        .unwrap_or(0)
}

/// Counts the hops already recorded in `Via` (comma-separated entries over all `Via` lines).
pub(crate) fn via_hops(headers: &HeaderMap) -> usize {
    headers
        .get_all(header::VIA)
        .iter()
        .map(|v| {
            v.as_bytes()
                .split(|b| *b == b',')
                .filter(|e| e.iter().any(|b| !b.is_ascii_whitespace()))
                .count()
        })
        .sum()
}

/// Gives `uri` the absolute form an HTTP/2 request needs (`:scheme`, `:authority`), taking
/// the authority from `Host` when the target is in origin form (RFC 9113 section 8.3.1).
///
/// # Errors
/// `unidentified` when there is no authority, or `Host` is not one.
pub(crate) fn absolute_form(uri: &mut Uri, headers: &HeaderMap) -> Result<(), ProxyError> {
    if uri.authority().is_some() {
        return Ok(());
    }
    let authority = headers
        .get(header::HOST)
        .and_then(|h| Authority::try_from(h.as_bytes()).ok())
        .ok_or_else(|| ProxyError::new(ErrorKind::Unidentified, "no authority or Host"))?;
    let path = uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    *uri = Uri::builder()
        .scheme("http")
        .authority(authority)
        .path_and_query(path)
        .build()
        .map_err(|e| ProxyError::new(ErrorKind::Unidentified, format!("bad target: {e}")))?;
    Ok(())
}

/// Appends this proxy to `Via` for a message received with `version`.
pub(crate) fn append_via(headers: &mut HeaderMap, version: Version) {
    let entry = match version {
        Version::HTTP_2 => "2 weft",
        Version::HTTP_10 => "1.0 weft",
        _ => "1.1 weft",
    };
    headers.append(header::VIA, HeaderValue::from_static(entry));
}

/// The local dtab of a request: `l5d-ctx-dtab` then `l5d-dtab`, so the user's header wins.
/// `carried` is [`Carried::scan`] of `headers`. Errors: `BadDtabHeader` (400) naming the
/// header and the parse error.
pub(crate) fn local_dtab(headers: &HeaderMap, carried: Carried) -> Result<Dtab, ProxyError> {
    let mut local = Dtab::empty();
    if !carried.dtab && !carried.ctx_dtab {
        return Ok(local);
    }
    for name in [L5D_CTX_DTAB, L5D_DTAB] {
        for value in headers.get_all(&name) {
            let text = value.to_str().map_err(|_| {
                ProxyError::new(ErrorKind::BadDtabHeader, format!("{name} is not text"))
            })?;
            let dtab = Dtab::read(text)
                .map_err(|e| ProxyError::new(ErrorKind::BadDtabHeader, format!("{name}: {e}")))?;
            local = local.concat(&dtab);
        }
    }
    Ok(local)
}

/// Prepares a request head for the upstream: hop-by-hop headers out, `Via` in (if `via`
/// asks for it), the hop count out (the dispatcher sets it again for weft proxies), and the
/// local dtab forwarded as `l5d-ctx-dtab` (so an override follows the call graph). The target
/// stays as the client sent it (with the path replaced by `rewritten`, if given): the
/// dispatcher turns it into the form the upstream protocol needs, and the connector, not the
/// URI, decides which endpoint the connection goes to. `carried` is [`Carried::scan`] of
/// `headers`.
///
/// # Errors
/// `bad-dtab-header` when the local dtab cannot be sent on; `unidentified` when the request
/// names no authority (neither in its target nor in `Host`).
pub(crate) fn rewrite_request(
    uri: Uri,
    mut headers: HeaderMap,
    version: Version,
    local: &Dtab,
    rewritten: Option<PathAndQuery>,
    carried: Carried,
    via: ViaPolicy,
) -> Result<(Uri, HeaderMap), ProxyError> {
    strip_hop_by_hop(&mut headers);
    if via.on_requests() {
        append_via(&mut headers, version);
    }
    if carried.dtab {
        headers.remove(&L5D_DTAB);
    }
    if carried.hops {
        headers.remove(&HOP_COUNT);
    }
    if local.is_empty() {
        if carried.ctx_dtab {
            headers.remove(&L5D_CTX_DTAB);
        }
    } else {
        let value = HeaderValue::try_from(local.to_string()).map_err(|_| {
            ProxyError::new(ErrorKind::BadDtabHeader, "dtab cannot be sent as a header")
        })?;
        headers.insert(L5D_CTX_DTAB, value);
    }
    if uri.authority().is_none() && !headers.contains_key(header::HOST) {
        return Err(ProxyError::new(
            ErrorKind::Unidentified,
            "no authority or Host",
        ));
    }
    let uri = match rewritten {
        None => uri,
        Some(path) => {
            let mut parts = uri.into_parts();
            parts.path_and_query = Some(path);
            Uri::from_parts(parts)
                .map_err(|e| ProxyError::new(ErrorKind::Unidentified, format!("bad target: {e}")))?
        }
    };
    Ok((uri, headers))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn strips_fixed_and_connection_named_headers() {
        let mut h = map(&[
            ("connection", "keep-alive, x-secret"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("te", "gzip"),
            ("upgrade", "h2c"),
            ("x-kept", "yes"),
        ]);
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert_eq!(h["x-kept"], "yes");
    }

    #[test]
    fn connection_options_are_matched_without_case_and_close_is_not_a_header() {
        let mut h = map(&[
            ("connection", "Close, Keep-Alive,X-Secret"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("x-kept", "yes"),
        ]);
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert_eq!(h["x-kept"], "yes");
        // Options on a second `Connection` line count too.
        let mut h = map(&[
            ("connection", "keep-alive"),
            ("connection", "x-secret"),
            ("x-secret", "1"),
            ("x-kept", "yes"),
        ]);
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        let mut untouched = map(&[("x-kept", "yes"), ("te", "trailers")]);
        strip_hop_by_hop(&mut untouched);
        assert_eq!(untouched.len(), 2);
    }

    #[test]
    fn keeps_te_trailers_for_grpc() {
        let mut h = map(&[("te", "trailers")]);
        strip_hop_by_hop(&mut h);
        assert_eq!(h["te"], "trailers");
    }

    #[test]
    fn scan_finds_each_carried_header_and_nothing_else() {
        let none = Carried::scan(&map(&[
            ("host", "a"),
            ("l5d-other", "x"),
            ("upgrade-x", "1"),
        ]));
        assert!(!(none.via || none.dtab || none.ctx_dtab || none.orig_proto || none.upgrade));
        assert!(
            none.context && !none.hops,
            "l5d-other is context, not a hop count"
        );
        let all = Carried::scan(&map(&[
            ("via", "1.1 a"),
            ("upgrade", "websocket"),
            ("l5d-dtab", "/a=>/b"),
            ("l5d-ctx-dtab", "/c=>/d"),
            ("l5d-orig-proto", "HTTP/1.1"),
        ]));
        assert!(all.via && all.dtab && all.ctx_dtab && all.orig_proto && all.upgrade);
        // The dtab headers are only removed when carried, and then always.
        let h = map(&[("l5d-dtab", "/a=>/b"), ("l5d-ctx-dtab", "/c=>/d")]);
        let carried = Carried::scan(&h);
        let local = local_dtab(&h, carried).expect("valid dtabs");
        assert_eq!(local.to_string(), "/c => /d; /a => /b");
        let uri: Uri = "http://svc/".parse().expect("uri");
        let (_, out) = rewrite_request(
            uri,
            h,
            Version::HTTP_11,
            &Dtab::empty(),
            None,
            carried,
            ViaPolicy::Both,
        )
        .expect("rewritten");
        assert!(out.get("l5d-dtab").is_none() && out.get("l5d-ctx-dtab").is_none());
    }

    #[test]
    fn clear_context_removes_every_l5d_header_but_how_the_request_was_carried() {
        let mut h = map(&[
            ("l5d-dtab", "/svc/pay => /$/inet/attacker/80"),
            ("l5d-ctx-dtab", "/a=>/b"),
            ("l5d-dst-override", "payments"),
            ("l5d-hop-count", "3"),
            ("l5d-orig-proto", "HTTP/1.1"),
            ("l5d-orig-header-case", "Host"),
            ("host", "books"),
            ("x-l5d-not-ours", "kept"),
        ]);
        let scanned = Carried::scan(&h);
        let carried = clear_context(&mut h, scanned);
        assert_eq!(h.len(), 5, "{h:?}");
        assert!(h.contains_key("host") && h.contains_key("x-l5d-not-ours"));
        assert!(!(carried.dtab || carried.ctx_dtab));
        assert!(
            carried.orig_proto && carried.orig_case,
            "the request's own transport stays"
        );
        assert_eq!(hop_count(&h, carried), 3, "the hop count stays: loops end");
    }

    #[test]
    fn hop_count_reads_a_number_and_ignores_anything_else() {
        let h = map(&[("l5d-hop-count", " 7 ")]);
        assert_eq!(hop_count(&h, Carried::scan(&h)), 7);
        let h = map(&[("l5d-hop-count", "many")]);
        assert_eq!(hop_count(&h, Carried::scan(&h)), 0);
    }

    #[test]
    fn via_is_added_only_when_asked() {
        let uri: Uri = "http://svc/".parse().expect("uri");
        let h = map(&[("host", "svc")]);
        let carried = Carried::scan(&h);
        for (policy, added) in [
            (ViaPolicy::None, false),
            (ViaPolicy::Response, false),
            (ViaPolicy::Request, true),
            (ViaPolicy::Both, true),
        ] {
            let (_, out) = rewrite_request(
                uri.clone(),
                h.clone(),
                Version::HTTP_11,
                &Dtab::empty(),
                None,
                carried,
                policy,
            )
            .expect("rewritten");
            assert_eq!(out.contains_key("via"), added, "{policy:?}");
        }
    }

    #[test]
    fn the_target_stays_as_sent_and_http2_gets_the_absolute_form() {
        let h = map(&[("host", "books:8080")]);
        let carried = Carried::scan(&h);
        let (uri, headers) = rewrite_request(
            "/a?b=1".parse().expect("uri"),
            h.clone(),
            Version::HTTP_11,
            &Dtab::empty(),
            None,
            carried,
            ViaPolicy::None,
        )
        .expect("rewritten");
        assert_eq!(uri, "/a?b=1");
        let mut absolute = uri.clone();
        absolute_form(&mut absolute, &headers).expect("from Host");
        assert_eq!(absolute, "http://books:8080/a?b=1");
        let consumed = rewrite_request(
            "http://books/a/b".parse().expect("uri"),
            HeaderMap::new(),
            Version::HTTP_2,
            &Dtab::empty(),
            Some(PathAndQuery::from_static("/b")),
            Carried::default(),
            ViaPolicy::None,
        )
        .expect("rewritten");
        assert_eq!(consumed.0, "http://books/b");
        let nowhere = rewrite_request(
            "/".parse().expect("uri"),
            HeaderMap::new(),
            Version::HTTP_10,
            &Dtab::empty(),
            None,
            Carried::default(),
            ViaPolicy::None,
        );
        assert_eq!(
            nowhere.map(|_| ()).map_err(|e| e.kind()),
            Err(ErrorKind::Unidentified)
        );
    }

    #[test]
    fn counts_via_hops_across_lines() {
        let h = map(&[("via", "1.1 a, 1.1 b"), ("via", "2 c"), ("via", " ")]);
        assert_eq!(via_hops(&h), 3);
        let mut h = HeaderMap::new();
        append_via(&mut h, Version::HTTP_2);
        assert_eq!(h["via"], "2 weft");
    }
}
