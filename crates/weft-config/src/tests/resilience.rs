//! The resilience settings: attempt timeouts, retry backoff and buffering, the gRPC
//! classifier, failfast, requeues, success-rate accrual and service profiles.

use std::time::Duration;

use super::*;
use crate::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// MINIMAL with `service:` holding `lines` (each indented by six spaces): the first line of
/// `lines` is line 5 of the file.
fn with_service(lines: &str) -> String {
    with_section("service", lines)
}

/// MINIMAL with `client:` holding `lines`, as [`with_service`].
fn with_client(lines: &str) -> String {
    with_section("client", lines)
}

fn with_section(key: &str, lines: &str) -> String {
    let mut text = format!("{MINIMAL}    {key}:\n");
    for line in lines.lines() {
        text.push_str("      ");
        text.push_str(line);
        text.push('\n');
    }
    text
}

/// One profile for /svc/books with the given route lines (under `routes:`, each indented by
/// twelve spaces): the first route line is line 8 of the file.
fn with_routes(lines: &str) -> String {
    let mut text = with_service("profiles:\n  - prefix: /svc/books\n    routes:");
    for line in lines.lines() {
        text.push_str("            ");
        text.push_str(line);
        text.push('\n');
    }
    text
}

fn get() -> http::Method {
    http::Method::GET
}

// === defaults ===

#[test]
fn resilience_defaults() {
    let c = parse(MINIMAL);
    let r = &c.routers[0];
    assert_eq!(r.client.fail_fast_timeout, secs(3));
    assert_eq!(r.client.requeue_budget, RetryBudget::default());
    assert_eq!(r.client.requeue_budget.percent_can_retry, 0.2);
    assert_eq!(r.client.requeue_budget.min_retries_per_sec, 10);
    assert_eq!(r.client.requeue_budget.ttl, secs(10));
    assert_eq!(r.service.attempt_timeout, None);
    assert_eq!(
        r.service.retries.backoff,
        RetryBackoff::Jittered {
            min: ms(5),
            max: ms(50)
        }
    );
    assert_eq!(r.service.retries.buffer_bytes, 65536);
    assert!(r.service.profiles.is_empty());
    assert_eq!(r.service.profile_for(&path("/svc/books")), None);
    assert_eq!(r.service, ServiceConfig::default());
    assert_eq!(r.client, ClientConfig::default());
}

#[test]
fn resilience_kind_defaults() {
    let c = parse(&with_client(
        "failureAccrual: {kind: successRate}\nrequeueBudget: {ttl: 1s}",
    ));
    assert_eq!(
        c.routers[0].client.failure_accrual,
        FailureAccrualConfig::SuccessRate {
            success_rate: 0.8,
            requests: 20,
            backoff: Backoff::default()
        }
    );
    assert_eq!(
        c.routers[0].client.requeue_budget,
        RetryBudget {
            ttl: secs(1),
            ..RetryBudget::default()
        }
    );

    let c = parse(&with_service(
        "retries: {backoff: {kind: jittered, max: 1s}}\nresponseClassifier: {kind: grpc}",
    ));
    let s = &c.routers[0].service;
    assert_eq!(
        s.retries.backoff,
        RetryBackoff::Jittered {
            min: ms(5),
            max: secs(1)
        }
    );
    assert_eq!(s.retries.budget, RetryBudget::default());
    assert_eq!(s.response_classifier, ResponseClassifier::grpc_default());

    let c = parse(&with_service(
        "retries: {backoff: {kind: jittered}, bufferBytes: 0}\nresponseClassifier: grpc.default",
    ));
    let s = &c.routers[0].service;
    assert_eq!(s.retries.backoff, RetryBackoff::default());
    assert_eq!(s.retries.buffer_bytes, 0);
    assert_eq!(
        s.response_classifier,
        ResponseClassifier::Grpc {
            retryable_status_codes: vec![14]
        }
    );

    let c = parse(&with_routes("- {name: r, match: {method: POST}}"));
    let route = &c.routers[0].service.profiles[0].routes[0];
    assert_eq!(route.timeout, None);
    assert!(!route.is_retryable);
    assert_eq!(route.response_classifier, None);
    assert_eq!(
        route.matcher,
        RouteMatch {
            method: Some(http::Method::POST),
            path: None,
            grpc: None
        }
    );

    let c = parse(&with_service(
        "responseClassifier: {kind: grpc, retryableStatusCodes: []}",
    ));
    assert_eq!(
        c.routers[0].service.response_classifier,
        ResponseClassifier::Grpc {
            retryable_status_codes: vec![]
        }
    );
}

// === every key ===

#[test]
fn every_resilience_key() {
    let c = Config::parse(FULL, "/etc/weft/weft.yaml").unwrap();
    let r = &c.routers[0];
    assert_eq!(r.client.fail_fast_timeout, secs(5));
    assert_eq!(
        r.client.requeue_budget,
        RetryBudget {
            percent_can_retry: 0.1,
            min_retries_per_sec: 5,
            ttl: secs(20)
        }
    );
    let s = &r.service;
    assert_eq!(s.attempt_timeout, Some(secs(2)));
    assert_eq!(s.retries.backoff, RetryBackoff::Constant { delay: ms(20) });
    assert_eq!(s.retries.buffer_bytes, 1024);
    assert_eq!(s.profiles.len(), 2);

    let p = &s.profiles[0];
    assert_eq!(p.prefix, path("/http/books"));
    assert_eq!(
        p.routes[0],
        RouteConfig {
            name: "list books".into(),
            matcher: RouteMatch {
                method: Some(get()),
                path: Some(PathMatch::Prefix("/books/".into())),
                grpc: None,
            },
            timeout: Some(secs(1)),
            is_retryable: true,
            response_classifier: Some(ResponseClassifier::RetryableAll5XX),
            authorized_clients: None,
        }
    );
    assert_eq!(p.routes[1].name, "books/by-id");
    assert_eq!(
        p.routes[1].matcher.path,
        Some(PathMatch::Regex(RouteRegex::new("/books/[0-9]+").unwrap()))
    );
    assert_eq!(p.routes[2].name, "health_check.v1");
    assert_eq!(
        p.routes[2].matcher,
        RouteMatch {
            method: Some(http::Method::HEAD),
            path: Some(PathMatch::Exact("/healthz".into())),
            grpc: None,
        }
    );
    assert!(!p.routes[2].is_retryable);

    let p = &s.profiles[1];
    assert_eq!(p.prefix, path("/http/books/grpc"));
    assert_eq!(
        p.routes[0].matcher.grpc,
        Some(GrpcMatch {
            service: "books.v1.Library".into(),
            method: Some("GetBook".into())
        })
    );
    assert_eq!(
        p.routes[0].response_classifier,
        Some(ResponseClassifier::grpc_default())
    );
    assert_eq!(
        p.routes[1].matcher.grpc,
        Some(GrpcMatch {
            service: "books.v1.Library".into(),
            method: None
        })
    );
    assert_eq!(
        p.routes[1].response_classifier,
        Some(ResponseClassifier::Grpc {
            retryable_status_codes: vec![14, 4]
        })
    );

    assert_eq!(
        c.routers[2].client.failure_accrual,
        FailureAccrualConfig::SuccessRate {
            success_rate: 0.9,
            requests: 50,
            backoff: Backoff {
                min: secs(2),
                max: secs(20)
            }
        }
    );
    let s = &c.routers[4].service;
    assert_eq!(
        s.retries.backoff,
        RetryBackoff::Jittered {
            min: ms(1),
            max: secs(1)
        }
    );
    assert_eq!(s.retries.buffer_bytes, 0);
    assert_eq!(
        s.response_classifier,
        ResponseClassifier::Grpc {
            retryable_status_codes: vec![8]
        }
    );
}

#[test]
fn serialize_resilience_keys() {
    let c = Config::parse(FULL, "/etc/weft/weft.yaml").unwrap();
    let v = serde_json::to_value(&c).unwrap();
    let client = &v["routers"][0]["client"];
    assert_eq!(client["failFastTimeout"], "5s");
    assert_eq!(client["requeueBudget"]["ttl"], "20s");
    assert_eq!(client["requeueBudget"]["percentCanRetry"], 0.1);
    let s = &v["routers"][0]["service"];
    assert_eq!(s["attemptTimeout"], "2s");
    assert_eq!(
        s["retries"]["backoff"],
        serde_json::json!({"kind": "constant", "delay": "20ms"})
    );
    assert_eq!(s["retries"]["bufferBytes"], 1024);
    let route = &s["profiles"][0]["routes"][0];
    assert_eq!(
        route,
        &serde_json::json!({
            "name": "list books",
            "match": {"method": "GET", "pathPrefix": "/books/"},
            "timeout": "1s",
            "isRetryable": true,
            "responseClassifier": "retryableAll5XX"
        })
    );
    assert_eq!(s["profiles"][0]["prefix"], "/http/books");
    assert_eq!(
        s["profiles"][0]["routes"][1]["match"],
        serde_json::json!({"pathRegex": "/books/[0-9]+"})
    );
    assert!(s["profiles"][0]["routes"][1].get("timeout").is_none());
    assert!(s["profiles"][0]["routes"][1]
        .get("responseClassifier")
        .is_none());
    assert_eq!(
        s["profiles"][1]["routes"][0]["match"],
        serde_json::json!({"grpcService": "books.v1.Library", "grpcMethod": "GetBook"})
    );
    assert_eq!(
        s["profiles"][1]["routes"][1]["responseClassifier"],
        serde_json::json!({"kind": "grpc", "retryableStatusCodes": [14, 4]})
    );
    assert_eq!(
        v["routers"][2]["client"]["failureAccrual"],
        serde_json::json!({
            "kind": "successRate",
            "successRate": 0.9,
            "requests": 50,
            "backoff": {"min": "2s", "max": "20s"}
        })
    );
    assert_eq!(
        v["routers"][4]["service"]["retries"]["backoff"],
        serde_json::json!({"kind": "jittered", "min": "1ms", "max": "1s"})
    );
    let d = serde_json::to_value(Config::embedded_default()).unwrap();
    assert!(d["routers"][0]["service"].get("attemptTimeout").is_none());
    assert_eq!(
        d["routers"][0]["service"]["profiles"],
        serde_json::json!([])
    );
    assert_eq!(d["routers"][0]["client"]["failFastTimeout"], "3s");
}

// === matching ===

#[test]
fn route_match_checks_every_condition() {
    let m = RouteMatch {
        method: Some(get()),
        path: Some(PathMatch::Prefix("/books/".into())),
        grpc: None,
    };
    assert!(m.matches(&get(), "/books/1"));
    assert!(m.matches(&get(), "/books/"));
    assert!(!m.matches(&http::Method::POST, "/books/1"));
    assert!(!m.matches(&get(), "/books"));
    assert!(!m.matches(&get(), "/authors/books/"));

    let exact = RouteMatch {
        method: None,
        path: Some(PathMatch::Exact("/healthz".into())),
        grpc: None,
    };
    assert!(exact.matches(&http::Method::DELETE, "/healthz"));
    assert!(!exact.matches(&get(), "/healthz/"));
    assert!(!exact.matches(&get(), "/healthzz"));
}

#[test]
fn path_regex_matches_the_whole_path() {
    let r = RouteRegex::new("/books/[0-9]+").unwrap();
    assert_eq!(r.as_str(), "/books/[0-9]+");
    assert!(r.is_match("/books/42"));
    assert!(!r.is_match("/books/42/reviews"), "anchored at the end");
    assert!(!r.is_match("/v1/books/42"), "anchored at the start");
    // An alternation stays inside the anchors.
    let r = RouteRegex::new("/a|/b").unwrap();
    assert!(r.is_match("/a") && r.is_match("/b"));
    assert!(!r.is_match("/ab") && !r.is_match("/a/x") && !r.is_match("x/b"));
    assert_eq!(format!("{r:?}"), "RouteRegex(\"/a|/b\")");
    assert_eq!(
        RouteRegex::new("/a|/b").unwrap(),
        r,
        "equal by pattern text"
    );
    assert_ne!(RouteRegex::new("(?:/a|/b)").unwrap(), r);
    let e = RouteRegex::new("/books/(").unwrap_err();
    assert!(e.message().contains("invalid pathRegex"), "{e}");
}

#[test]
fn grpc_match_on_service_and_method() {
    let post = http::Method::POST;
    let one = RouteMatch {
        method: None,
        path: None,
        grpc: Some(GrpcMatch {
            service: "books.v1.Library".into(),
            method: Some("GetBook".into()),
        }),
    };
    assert!(one.matches(&post, "/books.v1.Library/GetBook"));
    assert!(!one.matches(&post, "/books.v1.Library/GetBooks"));
    assert!(!one.matches(&post, "/books.v1.Library/GetBook/x"));
    assert!(!one.matches(&post, "/books.v1.LibraryX/GetBook"));
    let all = RouteMatch {
        grpc: Some(GrpcMatch {
            service: "books.v1.Library".into(),
            method: None,
        }),
        ..one.clone()
    };
    assert!(all.matches(&post, "/books.v1.Library/GetBook"));
    assert!(all.matches(&post, "/books.v1.Library/ListBooks"));
    assert!(!all.matches(&post, "/books.v1.Library"));
    assert!(!all.matches(&post, "/books.v1.Libraryx/ListBooks"));
    assert!(!all.matches(&post, "books.v1.Library/ListBooks"));
}

#[test]
fn profile_for_takes_the_longest_prefix() {
    let c = Config::parse(FULL, "/etc/weft/weft.yaml").unwrap();
    let s = &c.routers[0].service;
    let books = s.profile_for(&path("/http/books")).unwrap();
    assert_eq!(books.prefix, path("/http/books"));
    let reviews = s.profile_for(&path("/http/books/reviews")).unwrap();
    assert_eq!(reviews.prefix, path("/http/books"));
    let grpc = s.profile_for(&path("/http/books/grpc/x")).unwrap();
    assert_eq!(grpc.prefix, path("/http/books/grpc"));
    assert_eq!(
        s.profile_for(&path("/http/bookshop")),
        None,
        "whole segments"
    );
    assert_eq!(s.profile_for(&path("/http")), None);
    assert_eq!(s.profile_for(&path("/svc/books")), None);

    // The first matching route wins.
    let route = books.route_for(&http::Method::HEAD, "/books/7").unwrap();
    assert_eq!(route.name, "books/by-id");
    let route = books.route_for(&get(), "/books/7").unwrap();
    assert_eq!(route.name, "list books");
    assert_eq!(books.route_for(&get(), "/authors"), None);
}

// === rejects ===

#[test]
fn timeout_and_retry_errors() {
    let e = err(&with_service("attemptTimeout: 0s"));
    assert_err(
        &e,
        5,
        23,
        Some("routers[0].service.attemptTimeout"),
        "greater than zero",
    );
    let e = err(&with_service("attemptTimeout: 5"));
    assert_err(
        &e,
        5,
        23,
        Some("routers[0].service.attemptTimeout"),
        "a unit is needed",
    );
    let e = err(&with_service("retries:\n  bufferBytes: -1"));
    assert_err(
        &e,
        6,
        22,
        Some("routers[0].service.retries.bufferBytes"),
        "expected usize",
    );
    let e = err(&with_service("retries:\n  backoff: {delay: 1s}"));
    assert_err(
        &e,
        6,
        18,
        Some("routers[0].service.retries.backoff.kind"),
        "missing `kind`: expected `constant` or `jittered`",
    );
    let e = err(&with_service("retries:\n  backoff: {kind: expo}"));
    assert_err(
        &e,
        6,
        25,
        Some("routers[0].service.retries.backoff.kind"),
        "unknown variant `expo`, expected `constant` or `jittered`",
    );
    let e = err(&with_service("retries:\n  backoff: {kind: constant}"));
    assert_err(
        &e,
        6,
        18,
        Some("routers[0].service.retries.backoff.delay"),
        "missing `delay`",
    );
    let e = err(&with_service(
        "retries:\n  backoff: {kind: constant, delay: 1ms, max: 2ms}",
    ));
    assert_err(
        &e,
        6,
        52,
        Some("routers[0].service.retries.backoff.max"),
        "not a setting of kind `constant`",
    );
    let e = err(&with_service(
        "retries:\n  backoff: {kind: jittered, delay: 1ms}",
    ));
    assert_err(
        &e,
        6,
        42,
        Some("routers[0].service.retries.backoff.delay"),
        "not a setting of kind `jittered`",
    );
    let e = err(&with_service(
        "retries:\n  backoff:\n    kind: jittered\n    min: 100ms\n    max: 10ms",
    ));
    assert_err(
        &e,
        7,
        11,
        Some("routers[0].service.retries.backoff"),
        "backoff min (100ms) is greater than max (10ms)",
    );
    let e = err(&with_service(
        "retries:\n  backoff: {kind: jittered, min: 1s}",
    ));
    assert_err(
        &e,
        6,
        18,
        Some("routers[0].service.retries.backoff"),
        "backoff min (1s) is greater than max (50ms)",
    );
    let e = err(&with_service("retries:\n  backof: {kind: jittered}"));
    assert_err(
        &e,
        6,
        9,
        Some("routers[0].service.retries"),
        "unknown field `backof`, expected one of `budget`, `backoff`, `bufferBytes`",
    );
}

#[test]
fn client_resilience_errors() {
    let e = err(&with_client("failFastTimeout: 0ms"));
    assert_err(
        &e,
        5,
        24,
        Some("routers[0].client.failFastTimeout"),
        "greater than zero",
    );
    let e = err(&with_client("requeueBudget: {percentCanRetry: 2}"));
    assert_err(
        &e,
        5,
        40,
        Some("routers[0].client.requeueBudget.percentCanRetry"),
        "out of range",
    );
    let e = err(&with_client("requeueBudget: {ttl: 0s}"));
    assert_err(
        &e,
        5,
        28,
        Some("routers[0].client.requeueBudget.ttl"),
        "greater than zero",
    );
    let e = err(&with_client("requeueBudget: {percent: 1}"));
    assert_err(
        &e,
        5,
        23,
        Some("routers[0].client.requeueBudget"),
        "unknown field `percent`",
    );
}

#[test]
fn success_rate_accrual_errors() {
    for (value, column) in [
        ("0", 56),
        ("0.0", 56),
        ("1.01", 56),
        (".nan", 56),
        ("-1", 56),
    ] {
        let e = err(&with_client(&format!(
            "failureAccrual: {{kind: successRate, successRate: {value}}}"
        )));
        assert_err(
            &e,
            5,
            column,
            Some("routers[0].client.failureAccrual.successRate"),
            "out of range: expected a fraction greater than 0.0 and at most 1.0",
        );
    }
    let c = parse(&with_client(
        "failureAccrual: {kind: successRate, successRate: 1, requests: 1}",
    ));
    assert_eq!(
        c.routers[0].client.failure_accrual,
        FailureAccrualConfig::SuccessRate {
            success_rate: 1.0,
            requests: 1,
            backoff: Backoff::default()
        }
    );
    let e = err(&with_client(
        "failureAccrual: {kind: successRate, requests: 0}",
    ));
    assert_err(
        &e,
        5,
        53,
        Some("routers[0].client.failureAccrual.requests"),
        "requests must be at least 1",
    );
    let e = err(&with_client(
        "failureAccrual: {kind: successRate, failures: 3}",
    ));
    assert_err(
        &e,
        5,
        53,
        Some("routers[0].client.failureAccrual.failures"),
        "not a setting of kind `successRate`",
    );
    let e = err(&with_client(
        "failureAccrual: {kind: consecutiveFailures, successRate: 0.5}",
    ));
    assert_err(
        &e,
        5,
        64,
        Some("routers[0].client.failureAccrual.successRate"),
        "not a setting of kind `consecutiveFailures`",
    );
    let e = err(&with_client("failureAccrual: {kind: none, requests: 3}"));
    assert_err(
        &e,
        5,
        46,
        Some("routers[0].client.failureAccrual.requests"),
        "not a setting of kind `none`",
    );
    let e = err(&with_client(
        "failureAccrual: {kind: successRate, backoff: {min: 1m, max: 1s}}",
    ));
    assert_err(
        &e,
        5,
        52,
        Some("routers[0].client.failureAccrual.backoff"),
        "backoff min (1m) is greater than max (1s)",
    );
    let e = err(&with_client("failureAccrual: {requests: 3}"));
    assert_err(
        &e,
        5,
        23,
        Some("routers[0].client.failureAccrual.kind"),
        "expected `consecutiveFailures`, `successRate` or `none`",
    );
}

#[test]
fn classifier_errors() {
    let e = err(&with_service("responseClassifier: grpc"));
    assert_err(
        &e,
        5,
        27,
        Some("routers[0].service.responseClassifier"),
        "unknown response classifier `grpc`, expected one of `nonRetryable5XX`",
    );
    let e = err(&with_service("responseClassifier: 5"));
    assert_err(
        &e,
        5,
        27,
        Some("routers[0].service.responseClassifier"),
        "invalid type: integer `5`",
    );
    let e = err(&with_service(
        "responseClassifier: {retryableStatusCodes: [14]}",
    ));
    assert_err(
        &e,
        5,
        27,
        Some("routers[0].service.responseClassifier.kind"),
        "missing `kind`: expected `grpc`",
    );
    let e = err(&with_service("responseClassifier: {kind: http}"));
    assert_err(
        &e,
        5,
        34,
        Some("routers[0].service.responseClassifier.kind"),
        "unknown variant `http`, expected `grpc`",
    );
    let e = err(&with_service(
        "responseClassifier: {kind: grpc, codes: [14]}",
    ));
    assert_err(
        &e,
        5,
        40,
        Some("routers[0].service.responseClassifier"),
        "unknown field `codes`, expected `kind` or `retryableStatusCodes`",
    );
    let e = err(&with_service(
        "responseClassifier:\n  kind: grpc\n  retryableStatusCodes: [14, 0]",
    ));
    assert_err(
        &e,
        7,
        36,
        Some("routers[0].service.responseClassifier.retryableStatusCodes[1]"),
        "gRPC status 0 (OK) is a success and cannot be retried",
    );
    let e = err(&with_service(
        "responseClassifier:\n  kind: grpc\n  retryableStatusCodes:\n    - 4\n    - 17",
    ));
    assert_err(
        &e,
        9,
        13,
        Some("routers[0].service.responseClassifier.retryableStatusCodes[1]"),
        "gRPC status 17 out of range: expected 1 to 16",
    );
    let e = err(&with_service(
        "responseClassifier: {kind: grpc, retryableStatusCodes: [14, 4, 14]}",
    ));
    assert_err(
        &e,
        5,
        70,
        Some("routers[0].service.responseClassifier.retryableStatusCodes[2]"),
        "duplicate gRPC status 14: already at retryableStatusCodes[0]",
    );
    let e = err(&with_service(
        "responseClassifier: {kind: grpc, retryableStatusCodes: [-1]}",
    ));
    assert_err(
        &e,
        5,
        63,
        Some("routers[0].service.responseClassifier.retryableStatusCodes[0]"),
        "expected u32",
    );
    // In a route too.
    let e = err(&with_routes(
        "- name: r\n  match: {method: GET}\n  responseClassifier: {kind: grpc, retryableStatusCodes: [99]}",
    ));
    assert_err(
        &e,
        10,
        71,
        Some("routers[0].service.profiles[0].routes[0].responseClassifier.retryableStatusCodes[0]"),
        "out of range",
    );
    let e = err(&with_routes(
        "- name: r\n  match: {method: GET}\n  responseClassifier: retryable",
    ));
    assert_err(
        &e,
        10,
        35,
        Some("routers[0].service.profiles[0].routes[0].responseClassifier"),
        "unknown response classifier `retryable`",
    );
}

#[test]
fn profile_errors() {
    let e = err(&with_service(
        "profiles:\n  - routes: [{name: a, match: {method: GET}}]",
    ));
    assert_err(
        &e,
        6,
        11,
        Some("routers[0].service.profiles[0].prefix"),
        "missing `prefix`",
    );
    let e = err(&with_service(
        "profiles:\n  - prefix: svc/books\n    routes: []",
    ));
    assert_err(
        &e,
        6,
        19,
        Some("routers[0].service.profiles[0].prefix"),
        "invalid path",
    );
    let e = err(&with_service(
        "profiles:\n  - prefix: /svc/books\n    routes: []",
    ));
    assert_err(
        &e,
        7,
        19,
        Some("routers[0].service.profiles[0].routes"),
        "no routes: a profile needs at least one route",
    );
    let e = err(&with_service("profiles:\n  - prefix: /svc/books"));
    assert_err(
        &e,
        6,
        11,
        Some("routers[0].service.profiles[0].routes"),
        "no routes",
    );
    let e = err(&with_service(
        "profiles:\n  - {prefix: /svc/a, routes: [{name: a, match: {method: GET}}]}\n  - {prefix: /svc/a, routes: [{name: a, match: {method: GET}}]}",
    ));
    assert_err(
        &e,
        7,
        20,
        Some("routers[0].service.profiles[1].prefix"),
        "duplicate profile prefix /svc/a: already used by profiles[0]",
    );
    let e = err(&with_service("profiles:\n  - {prefix: /svc/a, rutes: []}"));
    assert_err(
        &e,
        6,
        28,
        Some("routers[0].service.profiles[0]"),
        "unknown field `rutes`, expected `prefix` or `routes`",
    );
}

#[test]
fn route_errors() {
    let e = err(&with_routes("- match: {method: GET}"));
    assert_err(
        &e,
        8,
        15,
        Some("routers[0].service.profiles[0].routes[0].name"),
        "missing `name`",
    );
    for bad in ["\"\"", "a:b", "\"{id}\"", "caf\u{e9}"] {
        let e = err(&with_routes(&format!(
            "- name: {bad}\n  match: {{method: GET}}"
        )));
        assert_err(
            &e,
            8,
            21,
            Some("routers[0].service.profiles[0].routes[0].name"),
            "invalid route name",
        );
    }
    let e = err(&with_routes(
        "- {name: a, match: {method: GET}}\n- {name: a, match: {method: PUT}}",
    ));
    assert_err(
        &e,
        9,
        22,
        Some("routers[0].service.profiles[0].routes[1].name"),
        "duplicate route name \"a\": already used by routes[0]",
    );
    let e = err(&with_routes("- name: a"));
    assert_err(
        &e,
        8,
        15,
        Some("routers[0].service.profiles[0].routes[0].match"),
        "missing `match`",
    );
    let e = err(&with_routes("- name: a\n  match: {}"));
    assert_err(
        &e,
        9,
        22,
        Some("routers[0].service.profiles[0].routes[0].match"),
        "empty match: give at least one of",
    );
    let e = err(&with_routes(
        "- name: a\n  match: {method: GET}\n  timeout: 0s",
    ));
    assert_err(
        &e,
        10,
        24,
        Some("routers[0].service.profiles[0].routes[0].timeout"),
        "greater than zero",
    );
    let e = err(&with_routes(
        "- name: a\n  match: {method: GET}\n  isRetryable: yes",
    ));
    assert_err(
        &e,
        10,
        28,
        Some("routers[0].service.profiles[0].routes[0].isRetryable"),
        "expected a boolean",
    );
    let e = err(&with_routes(
        "- name: a\n  match: {method: GET}\n  isRetryable: true",
    ));
    assert_err(
        &e,
        10,
        28,
        Some("routers[0].service.profiles[0].routes[0].isRetryable"),
        "isRetryable has no effect: the route's response classifier nonRetryable5XX never retries",
    );
    let e = err(&with_routes(
        "- name: a\n  match: {method: GET}\n  isRetryable: true\n  responseClassifier: allSuccessful",
    ));
    assert_err(
        &e,
        10,
        28,
        Some("routers[0].service.profiles[0].routes[0].isRetryable"),
        "allSuccessful never retries",
    );
    // A classifier that retries, from the route or from the service, makes it meaningful.
    parse(&with_routes(
        "- name: a\n  match: {method: POST}\n  isRetryable: true\n  responseClassifier: retryableRead5XX",
    ));
    let c = parse(&with_service(
        "responseClassifier: retryableIdempotent5XX\nprofiles:\n  - prefix: /svc\n    routes: [{name: a, match: {method: POST}, isRetryable: true}]",
    ));
    assert!(c.routers[0].service.profiles[0].routes[0].is_retryable);
    let e = err(&with_routes(
        "- name: a\n  match: {method: GET}\n  retryable: true",
    ));
    assert_err(
        &e,
        10,
        15,
        Some("routers[0].service.profiles[0].routes[0]"),
        "unknown field `retryable`",
    );
}

#[test]
fn route_match_errors() {
    const M: &str = "routers[0].service.profiles[0].routes[0].match";
    let check = |matcher: &str, column: usize, key: &str, needle: &str| {
        let e = err(&with_routes(&format!("- name: a\n  match: {matcher}")));
        let want = if key.is_empty() {
            M.to_string()
        } else {
            format!("{M}.{key}")
        };
        assert_err(&e, 9, column, Some(&want), needle);
    };
    check("{method: get}", 31, "method", "case-sensitive, write GET");
    check(
        "{method: \"GE T\"}",
        31,
        "method",
        "invalid method \"GE T\"",
    );
    check(
        "{path: /a, pathPrefix: /b}",
        45,
        "pathPrefix",
        "only one of `path`, `pathPrefix` and `pathRegex`",
    );
    check(
        "{pathPrefix: /b, pathRegex: /c}",
        50,
        "pathRegex",
        "only one of",
    );
    check(
        "{path: books}",
        29,
        "path",
        "invalid path \"books\": expected a URI path starting with /",
    );
    check("{pathPrefix: \"\"}", 35, "pathPrefix", "starting with /");
    check(
        "{pathRegex: \"/books/(\"}",
        34,
        "pathRegex",
        "invalid pathRegex \"/books/(\": unclosed group",
    );
    check(
        "{pathRegex: \"/a{99999}{99999}\"}",
        34,
        "pathRegex",
        "invalid pathRegex",
    );
    check(
        "{grpcMethod: GetBook}",
        35,
        "grpcMethod",
        "`grpcMethod` needs `grpcService`",
    );
    check(
        "{grpcService: a.B, pathPrefix: /a}",
        36,
        "grpcService",
        "`grpcService` cannot be combined with `pathPrefix`",
    );
    check(
        "{grpcService: a/B}",
        36,
        "grpcService",
        "invalid grpcService \"a/B\"",
    );
    check(
        "{grpcService: a.B, grpcMethod: \"Get Book\"}",
        53,
        "grpcMethod",
        "invalid grpcMethod \"Get Book\"",
    );
    check(
        "{grpcService: \"\"}",
        36,
        "grpcService",
        "invalid grpcService \"\"",
    );
    check(
        "{methods: GET}",
        23,
        "",
        "unknown field `methods`, expected one of `method`, `path`, `pathPrefix`, `pathRegex`, `grpcService`, `grpcMethod`",
    );
}

#[test]
fn bad_regex_in_a_block_mapping_points_at_the_value() {
    let text = with_routes("- name: a\n  match:\n    method: GET\n    pathRegex: '[a-'\n");
    let e = err(&text);
    assert_err(
        &e,
        11,
        28,
        Some("routers[0].service.profiles[0].routes[0].match.pathRegex"),
        "invalid pathRegex \"[a-\"",
    );
    assert!(!e.message().contains('\n'), "one line: {e}");
}

#[test]
fn docs_profile_example_parses() {
    let doc = include_str!("../../../../docs/configuration.md");
    let example = doc
        .split("<!-- profile example -->\n```yaml\n")
        .nth(1)
        .and_then(|block| block.split("```").next())
        .expect("docs/configuration.md has a profile example");
    let c = Config::parse(example, "docs/weft.yaml").unwrap();
    let s = &c.routers[0].service;
    let p = s.profile_for(&path("/svc/books")).unwrap();
    assert_eq!(p.routes.len(), 2);
    assert_eq!(
        p.route_for(&get(), "/books/12").map(|r| r.name.as_str()),
        Some("get book")
    );
    assert_eq!(
        p.route_for(&http::Method::POST, "/books")
            .map(|r| r.name.as_str()),
        Some("add book")
    );
}
