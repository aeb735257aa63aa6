//! Zipkin v2 JSON (<https://zipkin.io/zipkin-api/#/default/post_spans>): a JSON array of
//! spans with hex ids, microsecond `timestamp` and `duration`, string `tags`.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value as Json};

use super::{SpanData, Value};

pub(crate) fn encode(spans: &[Arc<SpanData>], service_name: &str) -> Vec<u8> {
    let out: Vec<Json> = spans.iter().map(|s| span(s, service_name)).collect();
    // Serializing a `serde_json::Value` cannot fail.
    serde_json::to_vec(&out).unwrap_or_default()
}

fn span(s: &SpanData, service_name: &str) -> Json {
    let mut tags = Map::new();
    for (k, v) in s.attributes() {
        let v = match v {
            Value::Str(v) => v.to_owned(),
            Value::Int(n) => n.to_string(),
        };
        tags.insert(k.to_owned(), Json::String(v));
    }
    // Zipkin marks a failed span with an `error` tag.
    if s.is_error() && !tags.contains_key("error") {
        let status = s.status.map_or_else(String::new, |c| c.to_string());
        tags.insert("error".to_owned(), Json::String(status));
    }
    let start = micros(s.start);
    let duration = micros(s.end).saturating_sub(start).max(1);
    let mut out = json!({
        "traceId": s.trace_id.to_string(),
        "id": s.span_id.to_string(),
        "name": s.name,
        "kind": "SERVER",
        "timestamp": start,
        "duration": duration,
        "localEndpoint": {"serviceName": service_name},
        "tags": tags,
    });
    if let Some(p) = s.parent {
        out["parentId"] = Json::String(p.to_string());
    }
    out
}

fn micros(t: SystemTime) -> u64 {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}
