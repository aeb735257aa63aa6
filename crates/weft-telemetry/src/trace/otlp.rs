//! OTLP/HTTP with binary protobuf (<https://opentelemetry.io/docs/specs/otlp/#otlphttp>): an
//! `ExportTraceServiceRequest` POSTed as `application/x-protobuf`. The message types come
//! from the `opentelemetry-proto` crate (prost, generated ahead of time: no protoc needed).

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    span::SpanKind, status::StatusCode, ResourceSpans, ScopeSpans, Span, Status,
};
use prost::Message;

use super::{SpanData, Value};

/// W3C trace flags: sampled. Only sampled spans are ever exported.
const FLAG_SAMPLED: u32 = 0x01;

pub(crate) fn encode(spans: &[Arc<SpanData>], service_name: &str) -> Vec<u8> {
    request(spans, service_name).encode_to_vec()
}

pub(crate) fn request(spans: &[Arc<SpanData>], service_name: &str) -> ExportTraceServiceRequest {
    let resource = Resource {
        attributes: vec![kv("service.name", Value::Str(service_name))],
        ..Default::default()
    };
    let scope = InstrumentationScope {
        name: "weft".to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        ..Default::default()
    };
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource),
            scope_spans: vec![ScopeSpans {
                scope: Some(scope),
                spans: spans.iter().map(|s| span(s)).collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn span(s: &SpanData) -> Span {
    let status = if s.is_error() {
        Status {
            code: StatusCode::Error as i32,
            message: s.error.clone().unwrap_or_default(),
        }
    } else {
        Status::default()
    };
    Span {
        trace_id: s.trace_id.0.to_vec(),
        span_id: s.span_id.0.to_vec(),
        trace_state: s.tracestate.clone().unwrap_or_default(),
        parent_span_id: s.parent.map(|p| p.0.to_vec()).unwrap_or_default(),
        flags: FLAG_SAMPLED,
        name: s.name.clone(),
        kind: SpanKind::Server as i32,
        start_time_unix_nano: nanos(s.start),
        end_time_unix_nano: nanos(s.end),
        attributes: s.attributes().into_iter().map(|(k, v)| kv(k, v)).collect(),
        status: Some(status),
        ..Default::default()
    }
}

fn kv(key: &str, v: Value<'_>) -> KeyValue {
    let value = match v {
        Value::Str(s) => any_value::Value::StringValue(s.to_owned()),
        Value::Int(n) => any_value::Value::IntValue(n),
    };
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn nanos(t: SystemTime) -> u64 {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
