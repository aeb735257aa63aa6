use std::time::Duration;

use super::*;

fn p(s: &str) -> Path {
    Path::read(s).unwrap()
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Waits (up to 5 s of real time) until the receiver holds a value matching `pred`.
async fn until(
    rx: &mut watch::Receiver<Resolution>,
    what: &str,
    pred: impl FnMut(&Resolution) -> bool,
) -> Resolution {
    let got = {
        let wait = rx.wait_for(pred);
        match tokio::time::timeout(Duration::from_secs(5), wait).await {
            Ok(Ok(r)) => Some(r.clone()),
            _ => None,
        }
    };
    got.unwrap_or_else(|| panic!("timed out waiting for {what}; have {:?}", *rx.borrow()))
}

fn ports(r: &Resolution) -> Vec<u16> {
    match r {
        Resolution::Bound(b) => b.addrs.iter().map(|a| a.addr.port()).collect(),
        _ => vec![],
    }
}

#[test]
fn parses_lines_comments_and_weights() {
    let text = b"# rates\n127.0.0.1 8080\n\n  10.0.0.2   8081 * 2.5  # heavier\nlocalhost 9000\n::1 80 * 0\n";
    let addrs = parse_addrs(text).unwrap();
    assert_eq!(
        addrs,
        [
            Address {
                addr: addr("127.0.0.1:8080"),
                weight: 1.0,
                meta: None,
            },
            Address {
                addr: addr("10.0.0.2:8081"),
                weight: 2.5,
                meta: None,
            },
            Address {
                addr: addr("127.0.0.1:9000"),
                weight: 1.0,
                meta: None,
            },
            Address {
                addr: addr("[::1]:80"),
                weight: 0.0,
                meta: None,
            },
        ]
    );
    assert_eq!(parse_addrs(b"").unwrap(), []);
    assert_eq!(parse_addrs(b"\r\n# only\r\n").unwrap(), []);
    assert_eq!(parse_addrs(b"127.0.0.1 80\r\n").unwrap().len(), 1);
}

#[test]
fn bad_lines_name_the_line() {
    let cases: &[(&[u8], usize, &str)] = &[
        (b"127.0.0.1 80\nexample.com 80", 2, "is not an IP address"),
        (b"127.0.0.1", 1, "expected `host port`"),
        (b"127.0.0.1 80 90", 1, "expected `host port`"),
        (b"127.0.0.1 80 * 2 extra", 1, "expected `host port`"),
        (b"\n\n127.0.0.1 0", 3, "port \"0\""),
        (b"127.0.0.1 65536", 1, "port"),
        (b"127.0.0.1 80 * -1", 1, "weight"),
        (b"127.0.0.1 80 * NaN", 1, "weight"),
        (b"127.0.0.1 80 * inf", 1, "weight"),
        (b"127.0.0.1 80\n\xff\xfe", 2, "UTF-8"),
    ];
    for (text, line, problem) in cases {
        let (n, msg) = parse_addrs(text).unwrap_err();
        assert_eq!(n, *line, "{msg}");
        assert!(msg.contains(problem), "{msg:?} should mention {problem:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_created_edited_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    let namer = FsNamer::new(dir.path().to_path_buf());
    let mut rx = namer.lookup(&p("/rates/extra"));
    assert_eq!(
        *rx.borrow_and_update(),
        Resolution::Neg,
        "missing file is Neg"
    );

    std::fs::write(dir.path().join("rates"), "127.0.0.1 8080\n").unwrap();
    let r = until(&mut rx, "created", |r| ports(r) == [8080]).await;
    let Resolution::Bound(b) = r else {
        unreachable!()
    };
    assert_eq!(b.id, p("/#/fs/rates"));

    std::fs::write(
        dir.path().join("rates"),
        "127.0.0.1 8080\n127.0.0.1 8081 * 3\n",
    )
    .unwrap();
    let r = until(&mut rx, "edited", |r| ports(r) == [8080, 8081]).await;
    let Resolution::Bound(b) = r else {
        unreachable!()
    };
    assert_eq!(b.addrs[1].weight, 3.0);

    std::fs::remove_file(dir.path().join("rates")).unwrap();
    until(&mut rx, "removed", |r| *r == Resolution::Neg).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaced_by_rename_like_an_editor() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rates"), "127.0.0.1 1\n").unwrap();
    let namer = FsNamer::new(dir.path().to_path_buf());
    let mut rx = namer.lookup(&p("/rates"));
    assert_eq!(ports(&rx.borrow_and_update()), [1]);
    // Editors write a hidden temporary file and rename it over the original.
    std::fs::write(dir.path().join(".rates.tmp"), "127.0.0.1 2\n").unwrap();
    std::fs::rename(dir.path().join(".rates.tmp"), dir.path().join("rates")).unwrap();
    until(&mut rx, "renamed over", |r| ports(r) == [2]).await;
    assert!(namer.errors().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_file_is_bound_and_empty() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("idle"), "# nobody home\n").unwrap();
    let namer = FsNamer::with_prefix(dir.path().to_path_buf(), p("/#/disco"));
    let r = namer.lookup(&p("/idle")).borrow().clone();
    let Resolution::Bound(b) = r else {
        panic!("{r:?}")
    };
    assert_eq!(b.id, p("/#/disco/idle"));
    assert!(b.addrs.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_line_keeps_last_good_set() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rates");
    std::fs::write(&file, "127.0.0.1 8080\n").unwrap();
    let namer = FsNamer::new(dir.path().to_path_buf());
    let mut rx = namer.lookup(&p("/rates"));
    assert_eq!(ports(&rx.borrow_and_update()), [8080]);

    std::fs::write(&file, "127.0.0.1 9090\n127.0.0.1 nope\n").unwrap();
    let error = async {
        while namer.errors().is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), error)
        .await
        .unwrap();
    let errors = namer.errors();
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].ends_with("rates:2: port \"nope\" is not in 1..65535"),
        "{errors:?}"
    );
    assert!(errors[0].starts_with(&dir.path().display().to_string()));
    assert_eq!(ports(&rx.borrow()), [8080], "last good set stays in use");

    std::fs::write(&file, "127.0.0.1 9090\n").unwrap();
    until(&mut rx, "fixed", |r| ports(r) == [9090]).await;
    assert!(namer.errors().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_file_without_last_good_set_fails() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("broken"),
        "127.0.0.1 80\n\nsomething odd here\n",
    )
    .unwrap();
    let namer = FsNamer::new(dir.path().to_path_buf());
    let r = namer.lookup(&p("/broken")).borrow().clone();
    let Resolution::Failed(msg) = r else {
        panic!("{r:?}")
    };
    assert!(
        msg.ends_with(
            "broken:3: expected `host port` or `host port * weight`, found \"something odd here\""
        ),
        "{msg}"
    );
    // Hidden files and backups are not services.
    std::fs::write(dir.path().join(".swap"), "junk").unwrap();
    std::fs::write(dir.path().join("rates~"), "junk").unwrap();
    namer.inner.scan(true);
    assert_eq!(namer.errors().len(), 1);
    assert_eq!(
        *namer.lookup(&Path::from_labels(["rates~"])).borrow(),
        Resolution::Neg
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_created_later_is_picked_up() {
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("disco");
    let namer = FsNamer::new(dir.clone());
    let mut rx = namer.lookup(&p("/late"));
    assert_eq!(*rx.borrow_and_update(), Resolution::Neg);
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("late"), "127.0.0.1 7\n").unwrap();
    until(&mut rx, "late file", |r| ports(r) == [7]).await;
}

#[tokio::test]
async fn status_follows_bad_and_fixed_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rates"), "127.0.0.1 8080\n").unwrap();
    let namer = FsNamer::new(dir.path().to_path_buf());
    let status = namer.status().expect("fs reports status");
    assert_eq!(status.state(), crate::NamerState::Ok);
    std::fs::write(dir.path().join("rates"), "127.0.0.1 notaport\n").unwrap();
    let stale = wait_for(|| status.state() == crate::NamerState::Stale).await;
    assert!(stale, "a bad file after a good scan is stale: {status:?}");
    assert!(status.snapshot().errors >= 1);
    std::fs::write(dir.path().join("rates"), "127.0.0.1 8081\n").unwrap();
    assert!(
        wait_for(|| status.state() == crate::NamerState::Ok).await,
        "{status:?}"
    );
}

async fn wait_for(mut f: impl FnMut() -> bool) -> bool {
    for _ in 0..200 {
        if f() {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn a_file_being_rewritten_in_place_is_read_once_it_is_quiet() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rates");
    std::fs::write(&file, "127.0.0.1 8080\n").unwrap();
    let namer = FsNamer::new(dir.path().to_path_buf());
    let rx = namer.lookup(&p("/rates"));
    let count = |rx: &watch::Receiver<Resolution>| match &*rx.borrow() {
        Resolution::Bound(b) => b.addrs.len(),
        other => panic!("{other:?}"),
    };
    assert_eq!(count(&rx), 1);
    // Truncated, about to be written again (an editor saving in place): not published yet.
    std::fs::File::create(&file).unwrap();
    assert!(
        namer.inner.scan(false),
        "a file changed just now should be settling"
    );
    assert_eq!(
        count(&rx),
        1,
        "a half-written file must not replace the endpoints"
    );
    // Still empty once quiet: then it really is empty.
    // File modification times are wall-clock time: real time must pass.
    tokio::time::sleep(super::SETTLE + Duration::from_millis(20)).await;
    assert!(!namer.inner.scan(false));
    assert_eq!(count(&rx), 0);
}
