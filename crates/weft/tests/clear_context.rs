//! `servers[].clearContext` (issue 13): a client of a listener that clears context cannot
//! steer its request with `l5d-*` headers, and the application never sees them; a listener
//! of the same router without it still honours them.

mod support;

use support::*;

/// Every `l5d-*` request header an echoing upstream received.
fn l5d_headers(r: &TestResponse) -> Vec<String> {
    r.echo()
        .headers
        .keys()
        .filter(|k| k.starts_with("l5d-"))
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_sending_l5d_headers_to_a_clear_context_server_is_served_as_if_it_had_not() {
    let books = Upstream::start("books", Behaviour::new().echo()).await;
    let attacker = Upstream::start("attacker", Behaviour::new().echo()).await;
    let disco = Disco::new();
    disco.write("books", &books.fs_line());
    let cfg = format!(
        "admin: {{ip: 127.0.0.1, port: 0}}\n\
         namers:\n  - {{kind: fs, prefix: /#/fs, rootDir: '{}'}}\n\
         routers:\n  - label: edge\n    servers:\n      - {{ip: 127.0.0.1, port: 0, clearContext: true}}\n      - {{ip: 127.0.0.1, port: 0}}\n    dtab: |\n      /svc => /#/fs;\n",
        disco.path().display()
    );
    let weft = Weft::start(bin(), &cfg).await;
    let (cleared, trusting) = match weft.routers()["edge"].as_slice() {
        [cleared, trusting] => (Client::http1(*cleared), Client::http1(*trusting)),
        other => panic!("two listeners, in config order: {other:?}"),
    };
    let to_attacker = format!("/svc/books => /$/inet/127.0.0.1/{}", attacker.port());

    let steering: [(&str, &str); 4] = [
        ("l5d-dtab", &to_attacker),
        ("l5d-ctx-dtab", &to_attacker),
        ("l5d-dst-override", "attacker-host"),
        ("l5d-anything-else", "x"),
    ];
    for (name, value) in steering {
        let r = cleared
            .get_with("books", "/", &[(name, value)])
            .await
            .expect("request");
        assert_eq!(
            (r.status.as_u16(), r.upstream()),
            (200, Some("books")),
            "{name}: {value} on the clearContext listener: {}",
            r.text()
        );
        assert_eq!(l5d_headers(&r), Vec::<String>::new(), "{name}: {value}");
    }
    // All at once, too.
    let r = cleared
        .get_with("books", "/", &steering)
        .await
        .expect("request");
    assert_eq!((r.status.as_u16(), r.upstream()), (200, Some("books")));
    assert_eq!(l5d_headers(&r), Vec::<String>::new());

    // Control: the same router's other listener honours the context, so the setting (not
    // a missing feature) is what kept the requests above on `books`.
    for name in ["l5d-dtab", "l5d-ctx-dtab"] {
        let r = trusting
            .get_with("books", "/", &[(name, &to_attacker)])
            .await
            .expect("request");
        assert_eq!(
            (r.status.as_u16(), r.upstream()),
            (200, Some("attacker")),
            "{name} on the listener without clearContext: {}",
            r.text()
        );
    }
    let r = trusting
        .get_with("books", "/", &[("l5d-dst-override", "attacker-host")])
        .await
        .expect("request");
    assert_ne!(
        r.upstream(),
        Some("books"),
        "l5d-dst-override names the destination on the listener without clearContext"
    );
    assert_eq!(
        attacker.requests(),
        2,
        "only the trusting listener reached it"
    );
}
