//! A router's `interpreter`: defaults, the control keys, and refusals naming the key.

use std::path::PathBuf;

use super::*;

fn router(interpreter: &str) -> String {
    format!(
        "admin: {{port: 9991}}\nrouters:\n  - label: out\n    servers: [{{port: 4140}}]\n    interpreter: {interpreter}\n"
    )
}

#[test]
fn default_and_control() {
    let c = parse("routers:\n  - label: out\n    servers: [{port: 4140}]\n");
    assert_eq!(c.routers[0].interpreter, InterpreterConfig::Default);
    let c = parse(&router("{kind: default}"));
    assert_eq!(c.routers[0].interpreter, InterpreterConfig::Default);

    let c = parse(&router(
        "{kind: control, addresses: [127.0.0.1:4321, 'control.example:4321', '[::1]:4321'], namespace: prod, cacheFile: state/out.cache}",
    ));
    let InterpreterConfig::Control(ctl) = &c.routers[0].interpreter else {
        panic!("{:?}", c.routers[0].interpreter)
    };
    assert_eq!(
        ctl.addresses,
        ["127.0.0.1:4321", "control.example:4321", "[::1]:4321"]
    );
    assert_eq!(ctl.namespace, "prod");
    assert_eq!(ctl.cache_file, Some(PathBuf::from("state/out.cache")));
    super::accepts::assert_round_trips(&c);

    // Defaults: namespace `default`, a cache file named after the admin port and router.
    let c = parse(&router("{kind: control, addresses: [127.0.0.1:4321]}"));
    let InterpreterConfig::Control(ctl) = &c.routers[0].interpreter else {
        panic!()
    };
    assert_eq!(ctl.namespace, "default");
    let expected = std::env::temp_dir().join("weft-9991-out.control-cache");
    assert_eq!(ctl.cache_file.as_deref(), Some(expected.as_path()));
}

#[test]
fn control_refusals_name_the_key() {
    let e = err(&router("{kind: control}"));
    assert_err(
        &e,
        5,
        18,
        Some("routers[0].interpreter.addresses"),
        "missing `addresses`",
    );
    let e = err(&router("{kind: control, addresses: [localhost]}"));
    assert_err(
        &e,
        5,
        46,
        Some("routers[0].interpreter.addresses[0]"),
        "is not host:port",
    );
    let e = err(&router(
        "{kind: io.l5d.namerd, dst: /$/inet/namerd/4100, namespace: default}",
    ));
    assert_err(
        &e,
        5,
        25,
        Some("routers[0].interpreter.kind"),
        "kind: control",
    );
    let e = err(&router("{kind: default, namespace: x}"));
    assert_err(
        &e,
        5,
        45,
        Some("routers[0].interpreter.namespace"),
        "not a setting of kind `default`",
    );
    let e = err(&router("{kind: control, addresses: [a:1], nope: 1}"));
    assert!(e.message().contains("nope"), "{e}");
}
