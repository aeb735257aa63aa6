//! Bound clients and their endpoints, read back from `weft_endpoints`,
//! `weft_endpoints_ejected` and `weft_endpoint_requests_total` for the service page.

use std::collections::BTreeMap;

use serde::Serialize;

use super::parse::split;
use super::History;

/// One bound client of a router (`GET /service.json`).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientRow {
    /// The router label.
    pub router: String,
    /// The bound id, e.g. `/#/fs/books`.
    pub client: String,
    /// Endpoints in its balancer now.
    pub endpoints: u64,
    /// Endpoints ejected by failure accrual now.
    pub ejected: u64,
    /// Attempts sent to each endpoint since start, sorted by address.
    pub endpoint_requests: Vec<EndpointRow>,
}

/// One endpoint of a client.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointRow {
    /// `ip:port`.
    pub endpoint: String,
    /// Attempts sent to it since start.
    pub requests: u64,
    /// Its share of the client's attempts, 0..=1.
    pub share: f64,
}

// === impl History ===

impl History {
    /// The bound clients of `router` with their endpoints, sorted by id.
    pub fn clients(&self, router: &str) -> Vec<ClientRow> {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.inner.registry);
        let mut clients: Vec<ClientRow> = parse(&text)
            .into_values()
            .filter(|c| c.router == router)
            .collect();
        for c in &mut clients {
            let total: u64 = c.endpoint_requests.iter().map(|e| e.requests).sum();
            for e in &mut c.endpoint_requests {
                e.share = if total == 0 {
                    0.0
                } else {
                    e.requests as f64 / total as f64
                };
            }
            c.endpoint_requests
                .sort_by(|a, b| a.endpoint.cmp(&b.endpoint));
        }
        clients
    }
}

fn parse(text: &str) -> BTreeMap<(String, String), ClientRow> {
    let mut out: BTreeMap<(String, String), ClientRow> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((name, labels, value)) = split(line) else {
            continue;
        };
        let get = |k: &str| labels.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let (Some(router), Some(client)) = (get("router"), get("client")) else {
            continue;
        };
        let row = out
            .entry((router.clone(), client.clone()))
            .or_insert_with(|| ClientRow {
                router,
                client,
                ..ClientRow::default()
            });
        let n = value.max(0.0) as u64;
        match name {
            "weft_endpoints" => row.endpoints = n,
            "weft_endpoints_ejected" => row.ejected = n,
            "weft_endpoint_requests_total" => row.endpoint_requests.push(EndpointRow {
                endpoint: get("endpoint").unwrap_or_default(),
                requests: n,
                share: 0.0,
            }),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::Metrics;

    #[test]
    fn clients_show_endpoint_shares() {
        let m = Metrics::new("test");
        let c = m.router("out").client("/#/fs/books");
        c.set_endpoints(2);
        c.endpoint_requests("10.0.0.1:80").inc_by(3);
        c.endpoint_requests("10.0.0.2:80").inc();
        m.router("other").client("/#/fs/x").set_endpoints(1);
        let rows = m.history().clients("out");
        assert_eq!(rows.len(), 1);
        assert_eq!((rows[0].endpoints, rows[0].ejected), (2, 0));
        assert_eq!(rows[0].endpoint_requests[0].share, 0.75);
        assert_eq!(rows[0].endpoint_requests[1].endpoint, "10.0.0.2:80");
    }
}
