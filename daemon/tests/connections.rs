//! Connection admission: what clients without a trusted certificate, and trusted clients
//! that stop reading, can take away from everyone else.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use hyper::{Method, StatusCode};
use tokio::io::AsyncReadExt;
use tokio::task::JoinHandle;

/// A client without a certificate that holds a connection open by asking for the server
/// info every `every`, and opens a new one `every` after the server closes it.
fn pester(client: Client, every: Duration, served: Arc<AtomicU64>) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            if let Ok(Ok(mut conn)) =
                tokio::time::timeout(Duration::from_secs(30), client.connect()).await
            {
                loop {
                    let info = request(Method::GET, "/1.0").body(empty_body()).unwrap();
                    match tokio::time::timeout(Duration::from_secs(30), conn.call(info)).await {
                        Ok(Ok(r)) if r.status == StatusCode::OK => {
                            served.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => break,
                    }
                    tokio::time::sleep(every).await;
                }
            }
            tokio::time::sleep(every).await;
        }
    })
}

/// A trusted request on a new connection; its answer and how long it took, or `None` when
/// there was no answer within `limit`.
async fn timed_trusted_request(d: &Daemon, limit: Duration) -> Option<(StatusCode, Duration)> {
    let start = Instant::now();
    let req = request(Method::GET, "/1.0/applications")
        .body(empty_body())
        .unwrap();
    match tokio::time::timeout(limit, d.reader().call(req)).await {
        Ok(Ok(r)) => Some((r.status, start.elapsed())),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certless_keep_alive_clients_do_not_starve_trusted_ones() {
    let d = Daemon::start("http: {limits: {max-connections: 20}}");
    let served = Arc::new(AtomicU64::new(0));
    // Twice the limit, each keeping its connection busy well within every timeout.
    let pests: Vec<_> = (0..40)
        .map(|_| pester(d.anonymous(), Duration::from_millis(200), served.clone()))
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    for i in 0..5 {
        let answer = timed_trusted_request(&d, Duration::from_secs(5)).await;
        eprintln!("trusted request {i} among 40 certless clients: {answer:?}");
        let (status, took) = answer.expect("a trusted request got no answer within 5 s");
        assert_eq!(status, StatusCode::OK);
        assert!(
            took < Duration::from_secs(2),
            "a trusted request took {took:?}"
        );
    }
    // Clients without a certificate are still answered, they only cannot crowd others out.
    assert!(served.load(Ordering::Relaxed) > 0);
    for pest in pests {
        pest.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_sockets_do_not_starve_trusted_ones() {
    // header-timeout is 10 s in the test config: these sockets would hold the limit that long.
    let d = Daemon::start("http: {limits: {max-connections: 20}}");
    let mut sockets = Vec::new();
    for _ in 0..40 {
        sockets.push(tokio::net::TcpStream::connect(d.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for i in 0..3 {
        let answer = timed_trusted_request(&d, Duration::from_secs(5)).await;
        eprintln!("trusted request {i} among 40 silent sockets: {answer:?}");
        let (status, took) = answer.expect("a trusted request got no answer within 5 s");
        assert_eq!(status, StatusCode::OK);
        assert!(
            took < Duration::from_secs(2),
            "a trusted request took {took:?}"
        );
    }
    drop(sockets);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_untrusted_connections_are_closed_first() {
    let d = Daemon::start("http: {limits: {untrusted-idle-timeout: 1s}}");
    let mut certless = d.anonymous().connect().await.unwrap();
    certless.get("/1.0").await.expect(200);
    let mut unknown = d.client(Some(untrusted())).connect().await.unwrap();
    unknown.get("/1.0/applications").await.expect(403);
    let mut trusted = d.reader().connect().await.unwrap();
    trusted.get("/1.0/applications").await.expect(200);

    let start = Instant::now();
    let closed = eventually(Duration::from_secs(5), || async {
        (certless.is_closed() && unknown.is_closed()).then_some(())
    })
    .await;
    let took = start.elapsed();
    assert!(
        closed.is_some(),
        "idle untrusted connections still open after {took:?}"
    );
    eprintln!("idle untrusted connections closed after {took:?}");
    assert!(took < Duration::from_secs(3), "closed only after {took:?}");
    // A trusted connection idles up to header-timeout (10 s here).
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!trusted.is_closed());
    trusted.get("/1.0/applications").await.expect(200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_download_is_cut_off_and_frees_its_slot() {
    let d = Daemon::start("http: {limits: {max-connections: 4, write-timeout: 1s}}");
    let p = d.publisher();
    let size = 64 * MIB;
    let digest = p.upload_pattern(41, size).await;
    p.publish(
        "stall",
        Some(1),
        &manifest("stall", &[]),
        &[("amd64", &digest)],
    )
    .await
    .expect(201);
    let path = "/1.0/applications/stall/versions/1/images/amd64";
    d.reader().get("/1.0/applications").await.expect(200);
    let before = rss_kib(d.pid());

    // Every slot taken by a download whose client reads the headers and then nothing.
    let mut stalled = Vec::new();
    for _ in 0..4 {
        let req = request(Method::GET, path).body(empty_body()).unwrap();
        let (conn, resp) = d.reader().send(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        stalled.push((conn, resp, Instant::now()));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let during = rss_kib(d.pid());
    eprintln!(
        "RSS {before} KiB before, {during} KiB with 4 stalled downloads ({} KiB each)",
        during.saturating_sub(before) / 4
    );
    // What a download buffers is bounded (about 2 MiB), whatever the image's size.
    assert!(
        during.saturating_sub(before) < 4 * 4 * 1024,
        "4 stalled downloads took {} KiB",
        during.saturating_sub(before)
    );

    // The write timeout cuts them, which lets the next client in.
    let answer = timed_trusted_request(&d, Duration::from_secs(10)).await;
    eprintln!("trusted request while 4 downloads stall: {answer:?}");
    let (status, took) = answer.expect("no slot was freed within 10 s");
    assert_eq!(status, StatusCode::OK);
    // Without the write timeout no slot would ever free; 8 s leaves a loaded machine room
    // to fill the four sockets' buffers before the 1 s of silence starts counting.
    assert!(
        took < Duration::from_secs(8),
        "a trusted request took {took:?}"
    );

    // Reading again, each stalled client finds its download cut short.
    for (conn, resp, started) in stalled {
        let got = tokio::time::timeout(Duration::from_secs(30), hash_body(resp)).await;
        eprintln!("stalled download after {:?}: {got:?}", started.elapsed());
        match got {
            Ok(Ok((n, _))) => assert!(n < size, "a stalled download got all {n} bytes"),
            Ok(Err(_)) => {}
            Err(_) => panic!("a stalled download is still open 30 s after its client resumed"),
        }
        drop(conn);
    }
    // A client that keeps reading gets everything.
    let (conn, resp) = d
        .reader()
        .send(request(Method::GET, path).body(empty_body()).unwrap())
        .await
        .unwrap();
    let (n, got) = hash_body(resp).await.unwrap();
    assert_eq!((n, got), (size, digest));
    drop(conn);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_paused_within_the_write_timeout_completes() {
    let d = Daemon::start("http: {limits: {write-timeout: 5s}}");
    let p = d.publisher();
    let size = 32 * MIB;
    let digest = p.upload_pattern(42, size).await;
    p.publish(
        "pause",
        Some(1),
        &manifest("pause", &[]),
        &[("amd64", &digest)],
    )
    .await
    .expect(201);
    let req = request(
        Method::GET,
        "/1.0/applications/pause/versions/1/images/amd64",
    )
    .body(empty_body())
    .unwrap();
    let (conn, resp) = d.reader().send(req).await.unwrap();
    let mut body = resp.into_body();
    let mut hasher = Hasher::default();
    let mut got = 0u64;
    let mut pauses = 0;
    while let Some(frame) = http_body_util::BodyExt::frame(&mut body).await {
        if let Ok(data) = frame.unwrap().into_data() {
            got += data.len() as u64;
            hasher.update(&data);
        }
        // Twice, long enough for the server to stop reading ahead, not to cut us off.
        if pauses < 2 && got >= (pauses + 1) * size / 3 {
            pauses += 1;
            tokio::time::sleep(Duration::from_millis(1500)).await;
        }
    }
    assert_eq!(got, size);
    assert_eq!(format!("sha256:{}", hasher.finish_hex()), digest);
    drop(conn);
}

/// Prints the daemon's memory and a trusted request's latency, first with `HOLD` certless
/// connections that each ask for the server info every 10 s (within the default
/// header-timeout) and are otherwise idle, then, on a new daemon, with `HOLD + 104` TCP
/// sockets that never start TLS. Not a regression test: `cargo test --release -p aar
/// --test connections -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn measure_idle_untrusted_sockets() {
    const HOLD: usize = 4096;
    let d = Daemon::start("http: {limits: {header-timeout: 30s}}");
    d.reader().get("/1.0/applications").await.expect(200);
    let baseline = rss_kib(d.pid());
    let open = Arc::new(AtomicU64::new(0));
    let gate = Arc::new(tokio::sync::Semaphore::new(64));
    let mut holders = Vec::new();
    for _ in 0..HOLD {
        let client = d.anonymous();
        let open = open.clone();
        let gate = gate.clone();
        holders.push(tokio::spawn(async move {
            let permit = gate.acquire_owned().await.unwrap();
            let Ok(Ok(mut conn)) =
                tokio::time::timeout(Duration::from_secs(10), client.connect()).await
            else {
                return;
            };
            let info = request(Method::GET, "/1.0").body(empty_body()).unwrap();
            if !matches!(conn.call(info).await, Ok(r) if r.status == StatusCode::OK) {
                return;
            }
            open.fetch_add(1, Ordering::Relaxed);
            drop(permit);
            let mut next = Instant::now() + Duration::from_secs(10);
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if conn.is_closed() {
                    break;
                }
                if Instant::now() >= next {
                    next += Duration::from_secs(10);
                    let info = request(Method::GET, "/1.0").body(empty_body()).unwrap();
                    if conn.call(info).await.is_err() {
                        break;
                    }
                }
            }
            open.fetch_sub(1, Ordering::Relaxed);
        }));
    }
    // Until every connection is either open or has given up.
    let _ = gate.acquire_many(64).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let with_tls = rss_kib(d.pid());
    let still = open.load(Ordering::Relaxed);
    let answer = timed_trusted_request(&d, Duration::from_secs(60)).await;
    println!(
        "{HOLD} certless keep-alive connections made, {still} still open: RSS {baseline} KiB \
         before, {with_tls} KiB with them; trusted request: {answer:?} (None: no answer in 60 s)"
    );
    for holder in holders {
        holder.abort();
    }
    drop(d);

    let d = Daemon::start("http: {limits: {header-timeout: 30s}}");
    d.reader().get("/1.0/applications").await.expect(200);
    let baseline = rss_kib(d.pid());
    let mut sockets = Vec::new();
    for _ in 0..HOLD + 104 {
        sockets.push(tokio::net::TcpStream::connect(d.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let with_raw = rss_kib(d.pid());
    let answer = timed_trusted_request(&d, Duration::from_secs(60)).await;
    let mut still_open = 0;
    for s in &mut sockets {
        let mut byte = [0u8; 1];
        if tokio::time::timeout(Duration::from_millis(1), s.read(&mut byte))
            .await
            .is_err()
        {
            still_open += 1;
        }
    }
    println!(
        "{} silent TCP sockets: RSS {baseline} KiB before, {with_raw} KiB with them; trusted \
         request: {answer:?}; {still_open} sockets still open after it",
        HOLD + 104
    );
}
