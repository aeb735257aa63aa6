//! The `weft control` file: defaults, every storage kind, and errors with their positions.

use std::path::PathBuf;

use super::*;
use crate::*;

fn control(text: &str) -> ControlConfig {
    match ControlConfig::parse(text, "conf/control.yaml") {
        Ok(c) => c,
        Err(e) => panic!("unexpected error: {e}"),
    }
}

fn control_err(text: &str) -> ConfigError {
    match ControlConfig::parse(text, "conf/control.yaml") {
        Ok(c) => panic!("accepted: {c:?}"),
        Err(e) => e,
    }
}

#[test]
fn empty_control_file_gets_the_defaults() {
    let c = control("");
    assert_eq!(c.storage, StorageConfig::Memory);
    assert_eq!(c.http_api, ControlConfig::DEFAULT_HTTP_API);
    assert_eq!(c.http_api.to_string(), "127.0.0.1:4180");
    assert_eq!(c.admin.to_string(), "127.0.0.1:9991");
    assert_eq!(c.grpc.to_string(), "127.0.0.1:4100");
    assert_eq!(c.read_access, ReadAccess::Loopback);
    assert_eq!(c.auth, ControlAuth::default());
    assert!(c.namers.is_empty());
}

#[test]
fn control_file_with_every_key() {
    let c = control(
        "storage:\n\
         \x20 kind: etcd\n\
         \x20 endpoints: [\"http://127.0.0.1:2379\", \"127.0.0.1:22379\"]\n\
         \x20 prefix: /dtabs/\n\
         \x20 user: weft\n\
         \x20 passwordFile: pw\n\
         \x20 timeout: 2s\n\
         \x20 tls: {trustCerts: [ca.pem], clientAuth: {certPath: c.pem, keyPath: k.pem}}\n\
         httpApi: {addr: 0.0.0.0:4180}\n\
         admin: {addr: 127.0.0.1:0}\n\
         grpc: {addr: 127.0.0.1:0}\n\
         auth: {tokenFile: token}\n\
         readAccess: any\n\
         namers:\n  - {kind: fs, prefix: /#/fs, rootDir: disco}\n",
    );
    let StorageConfig::Etcd(etcd) = &c.storage else {
        panic!("not etcd: {:?}", c.storage)
    };
    assert_eq!(etcd.endpoints.len(), 2);
    assert_eq!(etcd.prefix, "/dtabs/");
    assert_eq!(etcd.timeout, Duration::from_secs(2));
    assert_eq!(
        etcd.user,
        Some(("weft".into(), EtcdPassword::File(PathBuf::from("conf/pw"))))
    );
    let tls = etcd.tls.as_ref().expect("tls");
    assert_eq!(tls.trust_certs, [PathBuf::from("conf/ca.pem")]);
    assert_eq!(c.auth.token_file, Some(PathBuf::from("conf/token")));
    assert_eq!(c.read_access, ReadAccess::Any);
    assert_eq!(c.namers.len(), 1);
    let fs = control("storage: {kind: fs, dir: dtabs}\n");
    assert_eq!(
        fs.storage,
        StorageConfig::Fs {
            dir: PathBuf::from("conf/dtabs")
        }
    );
}

#[test]
fn control_file_errors_name_line_column_and_key() {
    let e = control_err("storage:\n  kind: etcd\n");
    assert_err(&e, 2, 3, Some("storage.endpoints"), "missing `endpoints`");
    let e = control_err("storage: {kind: fs}\n");
    assert_err(&e, 1, 10, Some("storage.dir"), "missing `dir`");
    let e = control_err("storage: {kind: memory, prefix: /x/}\n");
    assert_err(
        &e,
        1,
        33,
        Some("storage.prefix"),
        "applies to `kind: etcd` only",
    );
    let e = control_err("httpApi: {addr: localhost}\n");
    assert_err(&e, 1, 17, Some("httpApi.addr"), "expected ip:port");
    let e = control_err("storage: {kind: zk}\n");
    assert_eq!(e.key_path(), Some("storage.kind"), "{e}");
    let e = control_err("admin: {ip: 127.0.0.1}\n");
    assert!(e.to_string().contains("unknown field `ip`"), "{e}");
    let e = control_err("auth: {clientIds: [\"spiffe://a/b\"]}\n");
    assert_eq!(e.key_path(), Some("auth.clientIds"), "{e}");
    let e = control_err("httpApi: {addr: 127.0.0.1:4180}\nadmin: {addr: 127.0.0.1:4180}\n");
    assert_err(&e, 2, 15, Some("admin.addr"), "already used by httpApi");
}
