//! The dashboard: a few static files embedded in the binary and served at `/` and under
//! `/dashboard/`. Plain HTML, CSS and JavaScript with inline SVG charts: no build step, no
//! network at run time, nothing to vendor (`docs/dashboard.md` says why).
//!
//! Pages only read the admin API (`/overview.json`, `/service.json`, `/objectives.json`,
//! `/delegator.json`, `/config.json`, `/tap`). Text from requests (paths, hosts, service
//! names) is only ever set as DOM text, and the content security policy refuses inline and
//! foreign scripts, so a hostile request cannot script the page.

use bytes::Bytes;
use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full};

use crate::respond::Rsp;

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// Scripts and styles from this origin only; no inline script, no frames, no form posts.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// (path, content type, body).
const ASSETS: &[(&str, &str, &str)] = &[
    ("/", HTML, include_str!("../assets/index.html")),
    (
        "/dashboard/style.css",
        CSS,
        include_str!("../assets/style.css"),
    ),
    ("/dashboard/app.js", JS, include_str!("../assets/app.js")),
    ("/dashboard/tree.js", JS, include_str!("../assets/tree.js")),
    (
        "/dashboard/overview.js",
        JS,
        include_str!("../assets/overview.js"),
    ),
    (
        "/dashboard/service.js",
        JS,
        include_str!("../assets/service.js"),
    ),
    (
        "/dashboard/playground.js",
        JS,
        include_str!("../assets/playground.js"),
    ),
    ("/dashboard/tap.js", JS, include_str!("../assets/tap.js")),
    (
        "/dashboard/objectives.js",
        JS,
        include_str!("../assets/objectives.js"),
    ),
];

/// Whether `path` is one of the dashboard's files.
pub(crate) fn is_asset(path: &str) -> bool {
    ASSETS.iter().any(|(p, _, _)| *p == path)
}

/// Serves the dashboard file at `path` (404 for any other path).
pub(crate) fn asset(path: &str) -> Rsp {
    let Some((_, content_type, body)) = ASSETS.iter().find(|(p, _, _)| *p == path) else {
        return crate::respond::respond(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "not found\n".into(),
        );
    };
    let mut rsp = Response::new(Full::new(Bytes::from_static(body.as_bytes())).boxed());
    let h = rsp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("content-security-policy", HeaderValue::from_static(POLICY));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    rsp
}
