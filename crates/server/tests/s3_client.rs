//! The S3 client (`ferry_server::storage::s3`) against a real S3 server: SeaweedFS on loopback.
//!
//! Start one and export what it wrote, then run these tests:
//!
//! ```text
//! scripts/seaweedfs.sh start /tmp/ferry-s3
//! set -a; . /tmp/ferry-s3/env; set +a
//! cargo test -p ferry-server --test s3_client
//! scripts/seaweedfs.sh stop /tmp/ferry-s3
//! ```
//!
//! Each test works under a prefix of its own, so they run in parallel and leave nothing behind
//! when they pass. A few tests use stand-in servers on loopback (a closed port, one that never
//! answers, one whose body stalls) for the failure cases.

use std::collections::BTreeSet;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use ferry_server::storage::s3::{
    Bucket, CompletedPart, ObjectReader, S3Config, S3Error, S3Timeouts,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const MIB: usize = 1024 * 1024;

const HOW_TO_START: &str =
    "S3_ENDPOINT is not set: these tests need an S3 server. Start SeaweedFS \
     on loopback and export its settings, then run the tests again:\n\
     \n    scripts/seaweedfs.sh start /tmp/ferry-s3\
     \n    set -a; . /tmp/ferry-s3/env; set +a\
     \n    cargo test -p ferry-server --test s3_client\
     \n    scripts/seaweedfs.sh stop /tmp/ferry-s3\n";

/// The configuration from the environment, under a prefix of the test's own.
fn config(test: &str) -> S3Config {
    if std::env::var("S3_ENDPOINT").map_or(true, |v| v.is_empty()) {
        panic!("{HOW_TO_START}");
    }
    let mut cfg = S3Config::from_env().unwrap_or_else(|e| panic!("{e}\n{HOW_TO_START}"));
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    cfg.prefix = format!("ferry-tests/{test}-{}-{nanos}/", std::process::id());
    cfg
}

async fn bucket(test: &str) -> Bucket {
    let cfg = config(test);
    Bucket::connect(&cfg)
        .await
        .unwrap_or_else(|e| panic!("connecting to {cfg:?}: {e}\n{HOW_TO_START}"))
}

/// `len` bytes that differ with `seed` and along the way.
fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| ((i as u64 * 31 + u64::from(seed) * 7 + (i as u64 >> 13)) % 251) as u8)
        .collect()
}

/// Everything a reader gives, checking that no chunk is large (no whole-object buffering).
async fn read_all(r: &mut ObjectReader) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(chunk) = r.next_chunk().await.expect("reading the body") {
        assert!(chunk.len() <= 4 * MIB, "a chunk of {} bytes", chunk.len());
        out.extend_from_slice(&chunk);
    }
    out
}

async fn get(b: &Bucket, key: &str, start: u64, end: Option<u64>) -> Vec<u8> {
    let mut r = b.get_range(key, start, end).await.expect("get_range");
    read_all(&mut r).await
}

fn meta(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_reports_bad_credentials_and_missing_buckets() {
    let good = config("connect");
    Bucket::connect(&good)
        .await
        .expect("connect with good credentials");
    let endpoint = good.endpoint.clone().expect("endpoint");

    let mut bad = good.clone();
    bad.access_key_id = Some("ferrytest".into());
    bad.secret_access_key = Some("not-the-secret".into());
    let e = Bucket::connect(&bad).await.expect_err("wrong secret");
    let shown = e.to_string();
    assert!(matches!(e, S3Error::Denied(_)), "{e:?}");
    assert!(
        shown.contains(&endpoint) && shown.contains(&good.bucket),
        "{shown}"
    );
    assert!(!shown.contains("not-the-secret"), "{shown}");

    let mut missing = good.clone();
    missing.bucket = "ferry-no-such-bucket".into();
    let e = Bucket::connect(&missing).await.expect_err("missing bucket");
    assert!(matches!(e, S3Error::Invalid(_)), "{e:?}");
    assert!(e.to_string().contains("ferry-no-such-bucket"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_head_get_delete_with_metadata() {
    let b = bucket("basic").await;
    let body = data(300_000, 1);
    let m = meta(&[
        ("owner", "alice"),
        ("Mixed-Case", "Value 1; x=y"),
        ("mtime", "1700000000"),
    ]);
    b.put("dir/file.bin", Bytes::from(body.clone()), &m)
        .await
        .expect("put");

    let h = b.head("dir/file.bin").await.expect("head").expect("exists");
    assert_eq!(h.size, body.len() as u64);
    assert!(!h.etag.is_empty() && !h.etag.contains('"'), "{:?}", h.etag);
    let age = SystemTime::now()
        .duration_since(h.last_modified)
        .unwrap_or_default();
    assert!(
        age < Duration::from_secs(300),
        "last_modified {:?}",
        h.last_modified
    );
    assert_eq!(h.metadata.get("owner").map(String::as_str), Some("alice"));
    assert_eq!(
        h.metadata.get("mixed-case").map(String::as_str),
        Some("Value 1; x=y")
    );
    assert_eq!(
        h.metadata.get("mtime").map(String::as_str),
        Some("1700000000")
    );

    assert_eq!(get(&b, "dir/file.bin", 0, None).await, body);
    assert!(b.head("dir/nothing").await.expect("head missing").is_none());
    assert!(matches!(
        b.get_range("dir/nothing", 0, None).await,
        Err(S3Error::NotFound)
    ));

    // Keys with spaces, `+`, `%` and non-ASCII survive the trip (and the copy source encoding).
    let odd = "odd name+%25 é/ü.txt";
    b.put(odd, Bytes::from_static(b"odd"), &[])
        .await
        .expect("put odd");
    assert_eq!(get(&b, odd, 0, None).await, b"odd");
    b.copy(odd, "odd copy", 3).await.expect("copy odd");
    assert_eq!(get(&b, "odd copy", 0, None).await, b"odd");

    // An empty object reads as empty, whole or from 0.
    b.put("empty", Bytes::new(), &[]).await.expect("put empty");
    assert_eq!(
        b.head("empty").await.expect("head").expect("exists").size,
        0
    );
    assert!(get(&b, "empty", 0, None).await.is_empty());

    assert!(matches!(
        b.put("bad-meta", Bytes::new(), &meta(&[("a b", "x")]))
            .await,
        Err(S3Error::Invalid(_))
    ));

    for k in ["dir/file.bin", odd, "odd copy", "empty"] {
        b.delete(k).await.expect("delete");
        assert!(b.head(k).await.expect("head").is_none(), "{k} still there");
    }
    b.delete("dir/file.bin")
        .await
        .expect("deleting a missing key is fine");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranged_get_streams_the_asked_bytes() {
    let b = bucket("range").await;
    let body = data(3 * MIB + 17, 2);
    let n = body.len() as u64;
    b.put("r", Bytes::from(body.clone()), &[])
        .await
        .expect("put");

    assert_eq!(get(&b, "r", 10, Some(20)).await, &body[10..20]);
    assert_eq!(get(&b, "r", 1_000_000, None).await, &body[1_000_000..]);
    assert_eq!(get(&b, "r", 0, Some(n)).await, body);
    assert_eq!(get(&b, "r", n - 1, None).await, &body[body.len() - 1..]);
    let mut r = b.get_range("r", 5, Some(105)).await.expect("get");
    assert_eq!(r.object_size(), n);
    assert_eq!(r.remaining(), 100);
    assert_eq!(read_all(&mut r).await, &body[5..105]);
    // REST at the end of the file: nothing to send, no error. Beyond it: an error.
    assert!(get(&b, "r", n, None).await.is_empty());
    assert!(get(&b, "r", 7, Some(7)).await.is_empty());
    assert!(matches!(
        b.get_range("r", n + 1, None).await,
        Err(S3Error::Invalid(_))
    ));
    b.delete("r").await.expect("delete");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_upload_resumes_from_list_parts() {
    let b = bucket("multipart").await;
    let key = "big/upload.bin";
    let parts_data = [data(5 * MIB, 3), data(5 * MIB, 4), data(5 * MIB + 1234, 5)];
    let id = b
        .create_multipart(key, &meta(&[("owner", "bob")]))
        .await
        .expect("create");

    let p1 = b
        .upload_part(key, &id, 1, Bytes::from(parts_data[0].clone()))
        .await
        .expect("part 1");
    let p2 = b
        .upload_part(key, &id, 2, Bytes::from(parts_data[1].clone()))
        .await
        .expect("part 2");
    // A retried part (same number, same bytes): SeaweedFS then lists part 2 twice.
    let p2_again = b
        .upload_part(key, &id, 2, Bytes::from(parts_data[1].clone()))
        .await
        .expect("part 2 again");
    assert_eq!(p2.etag, p2_again.etag);

    // The connection dropped here. Resume: which upload, and which parts does it have?
    let pending = b
        .list_multipart_uploads("big/")
        .await
        .expect("list uploads");
    let found = pending
        .iter()
        .find(|u| u.upload_id == id)
        .unwrap_or_else(|| panic!("upload {id} not in {pending:?}"));
    assert_eq!(found.key, key);
    assert!(found.initiated.is_some());

    let listed = b.list_parts(key, &id).await.expect("list parts");
    let summary: Vec<(i32, u64, &str)> = listed
        .iter()
        .map(|p| (p.part_number, p.size, p.etag.as_str()))
        .collect();
    assert_eq!(
        summary,
        vec![
            (1, 5 * MIB as u64, p1.etag.as_str()),
            (2, 5 * MIB as u64, p2.etag.as_str())
        ]
    );
    let resume_at: u64 = listed.iter().map(|p| p.size).sum();
    assert_eq!(resume_at, 10 * MIB as u64);

    let p3 = b
        .upload_part(key, &id, 3, Bytes::from(parts_data[2].clone()))
        .await
        .expect("part 3");
    let mut parts: Vec<CompletedPart> = listed.iter().map(CompletedPart::from).collect();
    parts.push(p3);
    b.complete_multipart(key, &id, &parts)
        .await
        .expect("complete");
    // Completing again (a retry after a lost response) is harmless.
    b.complete_multipart(key, &id, &parts)
        .await
        .expect("complete again");

    let whole: Vec<u8> = parts_data.concat();
    let h = b.head(key).await.expect("head").expect("exists");
    assert_eq!(h.size, whole.len() as u64);
    assert_eq!(h.metadata.get("owner").map(String::as_str), Some("bob"));
    let boundary = 5 * MIB as u64;
    assert_eq!(
        get(&b, key, boundary - 100, Some(2 * boundary + 100)).await,
        &whole[5 * MIB - 100..10 * MIB + 100]
    );
    assert_eq!(get(&b, key, 0, None).await, whole);
    assert!(b
        .list_multipart_uploads("big/")
        .await
        .expect("list uploads")
        .iter()
        .all(|u| u.upload_id != id));
    b.delete(key).await.expect("delete");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_drops_the_upload() {
    let b = bucket("abort").await;
    let id = b.create_multipart("a", &[]).await.expect("create");
    b.upload_part("a", &id, 1, Bytes::from_static(b"part"))
        .await
        .expect("part");
    b.abort_multipart("a", &id).await.expect("abort");
    assert!(matches!(
        b.list_parts("a", &id).await,
        Err(S3Error::NotFound)
    ));
    assert!(matches!(
        b.upload_part("a", &id, 2, Bytes::from_static(b"late"))
            .await,
        Err(S3Error::NotFound)
    ));
    assert!(b.list_multipart_uploads("").await.expect("list").is_empty());
    assert!(b.head("a").await.expect("head").is_none());
    b.abort_multipart("a", &id)
        .await
        .expect("aborting twice is fine");
}

/// APPE without reading the old bytes: part 1 is (a range of) the existing object, copied by
/// the server; part 2 is the appended data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_part_copy_takes_a_range_of_an_existing_object() {
    let b = bucket("partcopy").await;
    let old = data(6 * MIB + 333, 6);
    b.put("old", Bytes::from(old.clone()), &[])
        .await
        .expect("put");
    let appended = data(1000, 7);

    let id = b.create_multipart("new", &[]).await.expect("create");
    let (start, end) = (MIB as u64, 6 * MIB as u64 + 333);
    let p1 = b
        .upload_part_copy("new", &id, 1, "old", Some((start, end)))
        .await
        .expect("part copy");
    let p2 = b
        .upload_part("new", &id, 2, Bytes::from(appended.clone()))
        .await
        .expect("part 2");
    let listed = b.list_parts("new", &id).await.expect("list parts");
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].size, end - start);
    b.complete_multipart("new", &id, &[p1, p2])
        .await
        .expect("complete");
    let mut want = old[MIB..].to_vec();
    want.extend_from_slice(&appended);
    assert_eq!(get(&b, "new", 0, None).await, want);

    // A whole-object part copy, and copy errors.
    let id = b.create_multipart("whole", &[]).await.expect("create");
    let p = b
        .upload_part_copy("whole", &id, 1, "old", None)
        .await
        .expect("whole part copy");
    b.complete_multipart("whole", &id, &[p])
        .await
        .expect("complete");
    assert_eq!(get(&b, "whole", 0, None).await, old);
    let id = b.create_multipart("x", &[]).await.expect("create");
    assert!(matches!(
        b.upload_part_copy("x", &id, 1, "no-such-source", None)
            .await,
        Err(S3Error::NotFound)
    ));
    assert!(matches!(
        b.upload_part_copy("x", &id, 1, "old", Some((0, old.len() as u64 + 10)))
            .await,
        Err(S3Error::Invalid(_))
    ));
    b.abort_multipart("x", &id).await.expect("abort");
    for k in ["old", "new", "whole"] {
        b.delete(k).await.expect("delete");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_uses_copy_object_then_multipart_above_the_threshold() {
    let b = bucket("copy").await;
    let body = data(12 * MIB + 5, 8);
    let m = meta(&[("owner", "carol")]);
    b.put("src", Bytes::from(body.clone()), &m)
        .await
        .expect("put");

    // Below the threshold: one CopyObject, metadata kept.
    b.copy("src", "small-copy", body.len() as u64)
        .await
        .expect("copy");
    assert_eq!(get(&b, "small-copy", 0, None).await, body);
    let h = b.head("small-copy").await.expect("head").expect("exists");
    assert_eq!(h.metadata.get("owner").map(String::as_str), Some("carol"));

    // Above a lowered threshold: 5 MiB parts of UploadPartCopy (3 of them), metadata kept.
    let low = b
        .with_copy_threshold(5 * MIB as u64, 5 * MIB as u64)
        .expect("threshold");
    low.copy("src", "big-copy", body.len() as u64)
        .await
        .expect("multipart copy");
    assert_eq!(get(&b, "big-copy", 0, None).await, body);
    let h = b.head("big-copy").await.expect("head").expect("exists");
    assert_eq!(h.size, body.len() as u64);
    assert!(h.etag.ends_with("-3"), "a 3-part object's ETag: {}", h.etag);
    assert_eq!(h.metadata.get("owner").map(String::as_str), Some("carol"));
    assert!(low
        .list_multipart_uploads("")
        .await
        .expect("list")
        .is_empty());

    assert!(matches!(
        low.copy("no-such", "x", 6 * MIB as u64).await,
        Err(S3Error::NotFound)
    ));
    assert!(matches!(
        b.copy("no-such", "x", 1).await,
        Err(S3Error::NotFound)
    ));
    for k in ["src", "small-copy", "big-copy"] {
        b.delete(k).await.expect("delete");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_writes_refuse_to_replace() {
    let b = bucket("cond").await;
    b.put_if_absent("k", Bytes::from_static(b"first"), &[])
        .await
        .expect("first write");
    assert!(matches!(
        b.put_if_absent("k", Bytes::from_static(b"second"), &[])
            .await,
        Err(S3Error::PreconditionFailed)
    ));
    assert_eq!(get(&b, "k", 0, None).await, b"first");

    let id = b.create_multipart("k", &[]).await.expect("create");
    let p = b
        .upload_part("k", &id, 1, Bytes::from_static(b"third"))
        .await
        .expect("part");
    assert!(matches!(
        b.complete_multipart_if_absent("k", &id, std::slice::from_ref(&p))
            .await,
        Err(S3Error::PreconditionFailed)
    ));
    assert_eq!(get(&b, "k", 0, None).await, b"first");
    b.abort_multipart("k", &id).await.expect("abort");

    let id = b.create_multipart("fresh", &[]).await.expect("create");
    let p = b
        .upload_part("fresh", &id, 1, Bytes::from_static(b"new"))
        .await
        .expect("part");
    b.complete_multipart_if_absent("fresh", &id, &[p])
        .await
        .expect("complete a new key");
    assert_eq!(get(&b, "fresh", 0, None).await, b"new");
    for k in ["k", "fresh"] {
        b.delete(k).await.expect("delete");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_pages_through_2500_keys() {
    let b = bucket("list").await;
    let mut keys: Vec<String> = (0..2500).map(|i| format!("k{i:05}")).collect();
    keys.extend((0..5).map(|i| format!("sub{i}/inner")));

    let mut tasks = tokio::task::JoinSet::new();
    let mut todo = keys.clone().into_iter();
    loop {
        while tasks.len() < 32 {
            let Some(k) = todo.next() else { break };
            let b = b.clone();
            tasks.spawn(async move { b.put(&k, Bytes::from_static(b"x"), &[]).await });
        }
        match tasks.join_next().await {
            None => break,
            Some(r) => r.expect("task").expect("put"),
        }
    }

    // No delimiter: every key, in pages of at most 1,000.
    let (mut seen, mut pages, mut token) = (BTreeSet::new(), Vec::new(), None);
    loop {
        let page = b.list_page("", None, token).await.expect("list");
        assert!(page.common_prefixes.is_empty());
        pages.push(page.objects.len());
        for o in &page.objects {
            assert_eq!(o.size, 1);
            assert!(o.last_modified.is_some());
            assert!(seen.insert(o.key.clone()), "{} listed twice", o.key);
        }
        token = page.next;
        if token.is_none() {
            break;
        }
    }
    assert_eq!(seen, keys.iter().cloned().collect::<BTreeSet<_>>());
    assert!(
        pages.len() >= 3 && pages.iter().all(|&n| n <= 1000),
        "{pages:?}"
    );

    // With "/": the 2,500 top-level keys and 5 common prefixes.
    let (mut objects, mut prefixes, mut token, mut n_pages) = (0, Vec::new(), None, 0);
    loop {
        let page = b.list_page("", Some("/"), token).await.expect("list");
        n_pages += 1;
        objects += page.objects.len();
        prefixes.extend(page.common_prefixes);
        token = page.next;
        if token.is_none() {
            break;
        }
    }
    prefixes.sort();
    assert_eq!(objects, 2500);
    assert!(n_pages >= 3, "{n_pages} pages");
    assert_eq!(
        prefixes,
        (0..5).map(|i| format!("sub{i}/")).collect::<Vec<_>>()
    );
    let sub = b
        .list_page("sub3/", Some("/"), None)
        .await
        .expect("list sub");
    assert_eq!(
        sub.objects
            .iter()
            .map(|o| o.key.as_str())
            .collect::<Vec<_>>(),
        vec!["sub3/inner"]
    );

    b.delete_many(&keys).await.expect("delete_many");
    let after = b.list_page("", None, None).await.expect("list");
    assert!(
        after.objects.is_empty() && after.next.is_none(),
        "{after:?}"
    );
}

/// Settings for the stand-in servers: short timeouts, so failures come quickly.
fn impatient(endpoint: String) -> S3Config {
    S3Config {
        endpoint: Some(endpoint),
        bucket: "b".into(),
        access_key_id: Some("k".into()),
        secret_access_key: Some("s".into()),
        path_style: true,
        timeouts: S3Timeouts {
            connect: Duration::from_secs(1),
            request: Duration::from_secs(1),
            transfer: Duration::from_secs(1),
            stall: Duration::from_secs(1),
        },
        ..S3Config::default()
    }
}

/// Reads one request head; `None` at end of stream.
async fn read_head(s: &mut tokio::net::TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte).await {
            Ok(1) => buf.push(byte[0]),
            _ => return None,
        }
    }
    Some(String::from_utf8_lossy(&buf).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unavailable_when_the_server_is_gone_or_silent() {
    // The real server's endpoint must be configured, like every test here.
    let _ = config("unavailable");

    // A closed port: connection refused, retried, then Unavailable.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let t = Instant::now();
    let e = Bucket::connect(&impatient(format!("http://127.0.0.1:{port}")))
        .await
        .expect_err("closed port");
    assert!(matches!(e, S3Error::Unavailable(_)), "{e:?}");
    assert!(e.to_string().contains(&format!("127.0.0.1:{port}")), "{e}");
    assert!(
        t.elapsed() < Duration::from_secs(15),
        "took {:?}",
        t.elapsed()
    );

    // A server that accepts and never answers: the request timeout, then Unavailable.
    let silent = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = silent.local_addr().expect("addr");
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let t = Instant::now();
    let e = Bucket::connect(&impatient(format!("http://{addr}")))
        .await
        .expect_err("silent server");
    assert!(matches!(e, S3Error::Unavailable(_)), "{e:?}");
    assert!(
        t.elapsed() < Duration::from_secs(20),
        "took {:?}",
        t.elapsed()
    );
    hold.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_body_fails_instead_of_hanging() {
    let _ = config("stall");
    // Answers HEAD with 200; GET with the first 1,000 of 1,000,000 bytes, then nothing.
    let server = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = server.local_addr().expect("addr");
    let gets = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = gets.clone();
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = server.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                while let Some(head) = read_head(&mut s).await {
                    if head.starts_with("HEAD ") {
                        let _ = s
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                            .await;
                        continue;
                    }
                    counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let start: u64 = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("range: bytes=")
                                .map(str::to_string)
                        })
                        .and_then(|r| r.split('-').next().and_then(|n| n.parse().ok()))
                        .unwrap_or(0);
                    let total = 1_000_000u64;
                    let reply = if start == 0 {
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {total}\r\nETag: \"abc\"\r\n\r\n"
                        )
                    } else {
                        format!(
                            "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\n\
                             Content-Range: bytes {start}-{}/{total}\r\nETag: \"abc\"\r\n\r\n",
                            total - start,
                            total - 1
                        )
                    };
                    let _ = s.write_all(reply.as_bytes()).await;
                    let _ = s.write_all(&[7u8; 1000]).await;
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                }
            });
        }
    });
    let b = Bucket::connect(&impatient(format!("http://{addr}")))
        .await
        .expect("connect to the stand-in");
    let mut r = b.get_range("obj", 0, None).await.expect("get");
    let t = Instant::now();
    let mut got = 0;
    let e = loop {
        match r.next_chunk().await {
            Ok(Some(c)) => got += c.len(),
            Ok(None) => panic!("the body cannot end: {got} bytes"),
            Err(e) => break e,
        }
    };
    assert!(matches!(e, S3Error::Unavailable(_)), "{e:?}");
    // The first GET and the resumed ones (from where each stopped) all stalled.
    assert_eq!(got, 3000, "bytes before giving up");
    assert_eq!(gets.load(std::sync::atomic::Ordering::SeqCst), 3);
    assert!(
        t.elapsed() < Duration::from_secs(30),
        "took {:?}",
        t.elapsed()
    );
    task.abort();
}
