//! The JSON the dashboard reads besides `/metrics`, `/delegator.json` and `/tap`:
//! `/overview.json`, `/service.json` and `/objectives.json`, all computed from the
//! in-process history (`weft_telemetry::history`), so they need no Prometheus.

use http::StatusCode;
use serde::Serialize;
use weft_naming::{DelegateNode, DelegateOutcome, Dtab, Path};
use weft_telemetry::history::{ClientRow, RouteRow};

use crate::respond::{bad_request, json, Rsp};
use crate::AdminState;

/// `GET /service.json`: one service of one router.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ServiceView {
    router: String,
    service: String,
    /// Per-route rows (the `service` field of each holds the route name).
    routes: Vec<RouteRow>,
    /// How the name binds now (`/delegator.json`'s `result`).
    binding: Option<DelegateNode>,
    /// The clients it binds to, with their endpoints.
    clients: Vec<ClientView>,
}

/// A bound client: attempts per endpoint (from its metrics) and what its balancer knows.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ClientView {
    client: String,
    endpoints: u64,
    ejected: u64,
    /// TLS towards the endpoints (`mesh: <peer SPIFFE ID>`, `origin: <name>`), `None` for
    /// plaintext.
    tls: Option<String>,
    endpoint_requests: Vec<EndpointView>,
}

/// One endpoint: its share of attempts and its balancer state.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EndpointView {
    endpoint: String,
    requests: u64,
    share: f64,
    weight: Option<f64>,
    /// Peak-EWMA latency estimate, seconds (when recent).
    latency_ewma_secs: Option<f64>,
    pending: Option<u32>,
    /// `alive`, `ejected`, `probing`; `None` when the balancer no longer has it.
    accrual: Option<&'static str>,
    ejected_for_secs: Option<f64>,
    next_probe_in_secs: Option<f64>,
}

/// `GET /overview.json`: every router and service (`weft_telemetry::history::Overview`).
pub(crate) fn overview(state: &AdminState) -> Rsp {
    to_json(&state.metrics.history().overview())
}

/// `GET /objectives.json`: every objective of every service (`weft_telemetry::slo`).
pub(crate) fn objectives(state: &AdminState) -> Rsp {
    to_json(&state.metrics.history().slo())
}

/// `GET /service.json?router=R&service=/svc/x`: routes, binding and clients of a service.
pub(crate) async fn service(state: &AdminState, query: &str) -> Rsp {
    let mut router = None;
    let mut service = None;
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        match &*k {
            "router" => router = Some(v.into_owned()),
            "service" => service = Some(v.into_owned()),
            _ => {}
        }
    }
    let (Some(label), Some(service)) = (router, service) else {
        return bad_request("missing query parameter: router and service are required");
    };
    let history = state.metrics.history();
    let routes = history.routes(&label, &service).unwrap_or_default();
    let mut binding = None;
    let mut clients = Vec::new();
    if let (Some(router), Ok(path)) = (state.routers.get(&label), Path::read(&service)) {
        let tree = router.delegate(&path, &Dtab::default()).await;
        let mut ids = Vec::new();
        bound_ids(&tree.result, &mut ids);
        clients = history
            .clients(&label)
            .into_iter()
            .filter(|c| ids.contains(&c.client))
            .map(|c| {
                let state = Path::read(&c.client)
                    .ok()
                    .and_then(|id| router.client_state(&id));
                client_view(c, state)
            })
            .collect();
        binding = Some(tree.result);
    }
    if routes.is_empty() && binding.is_none() {
        return json(
            StatusCode::NOT_FOUND,
            &serde_json::json!({"error": "no such router or service"}),
        );
    }
    to_json(&ServiceView {
        router: label,
        service,
        routes,
        binding,
        clients,
    })
}

fn client_view(c: ClientRow, state: Option<weft_proxy::ClientState>) -> ClientView {
    let endpoints = state.as_ref().map(|s| &s.endpoints[..]).unwrap_or_default();
    let endpoint_requests = c
        .endpoint_requests
        .into_iter()
        .map(|e| {
            let s = endpoints.iter().find(|s| s.addr.to_string() == e.endpoint);
            EndpointView {
                weight: s.map(|s| s.weight),
                latency_ewma_secs: s.and_then(|s| s.latency_ewma_secs),
                pending: s.map(|s| s.pending),
                accrual: s.map(|s| s.accrual),
                ejected_for_secs: s.and_then(|s| s.ejected_for_secs),
                next_probe_in_secs: s.and_then(|s| s.next_probe_in_secs),
                endpoint: e.endpoint,
                requests: e.requests,
                share: e.share,
            }
        })
        .collect();
    ClientView {
        client: c.client,
        endpoints: c.endpoints,
        ejected: c.ejected,
        tls: state.and_then(|s| s.tls),
        endpoint_requests,
    }
}

/// The bound ids of every leaf of `node`.
fn bound_ids(node: &DelegateNode, out: &mut Vec<String>) {
    match &node.outcome {
        DelegateOutcome::Bound { id, .. } => out.push(id.to_string()),
        DelegateOutcome::Delegate { delegate } => bound_ids(delegate, out),
        DelegateOutcome::Alt { alt: nodes } | DelegateOutcome::Union { union: nodes } => {
            for n in nodes {
                bound_ids(n, out);
            }
        }
        _ => {}
    }
}

fn to_json<T: Serialize>(value: &T) -> Rsp {
    match serde_json::to_value(value) {
        Ok(v) => json(StatusCode::OK, &v),
        Err(e) => json(
            StatusCode::INTERNAL_SERVER_ERROR,
            &serde_json::json!({"error": e.to_string()}),
        ),
    }
}
