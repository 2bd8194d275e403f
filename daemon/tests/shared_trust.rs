//! Several daemons on one bucket share one trust store: a change made through any unit's
//! CLI applies on every unit within `storage.s3.trust-refresh-interval`, also on a
//! connection kept open; a bucket out of reach never turns into trusting everyone or
//! silently no one; and a unit's local store from before is imported once.

mod common;

use common::*;
use hyper::StatusCode;
use std::time::{Duration, Instant};

/// The bound the docs promise with the default refresh interval (2 s).
const REVOCATION_BOUND: Duration = Duration::from_secs(5);

/// Two units on one bucket, each with its own state directory and server certificate.
fn two_units(s3: &S3Server, extra: &str) -> (Daemon, Daemon) {
    let storage = s3_storage(s3, SECRET_KEY, extra);
    let a = Daemon::s3(&storage).start();
    // The second unit trusts nothing itself: whatever it accepts comes from the bucket.
    let b = Daemon::s3(&storage).no_trust().start();
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_on_one_unit_is_enforced_by_the_other_within_the_bound() {
    let s3 = S3Server::start();
    let (a, b) = two_units(&s3, "");
    assert_ne!(a.fingerprint, b.fingerprint, "two units, two certificates");

    // B never ran `aar trust add`, yet knows both certificates A's CLI trusted.
    let listed = b.trust_list_json(false);
    assert_eq!(listed.as_array().map(Vec::len), Some(2), "{listed}");
    let mut kept_alive = b.reader().connect().await.unwrap();
    kept_alive.get("/1.0/applications").await.expect(200);

    let revoked_at = Instant::now();
    a.trust_revoke(&client_id().fingerprint);
    let refused_after = loop {
        let r = kept_alive.get("/1.0/applications").await;
        if r.status == StatusCode::FORBIDDEN {
            break revoked_at.elapsed();
        }
        r.expect(200);
        assert!(
            revoked_at.elapsed() < Duration::from_secs(30),
            "the other unit never refused the revoked certificate"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    eprintln!("revocation through unit A refused by unit B after {refused_after:?}");
    assert!(
        refused_after <= REVOCATION_BOUND,
        "refused only after {refused_after:?}"
    );
    // A new connection is refused too, and the publisher is untouched.
    b.reader().get("/1.0/applications").await.expect(403);
    b.publisher().get("/1.0/applications").await.expect(200);
    // The unit whose CLI revoked learns it from the bucket too, at its own refresh, which
    // may come after B's: the same bound, counted from the revocation.
    let refused_on_a = eventually(REVOCATION_BOUND, || async {
        let r = a.reader().get("/1.0/applications").await;
        (r.status == StatusCode::FORBIDDEN).then_some(())
    })
    .await;
    assert!(
        refused_on_a.is_some() && revoked_at.elapsed() <= REVOCATION_BOUND,
        "unit A admitted the revoked certificate {:?} after the revocation",
        revoked_at.elapsed()
    );

    // A removal through B's CLI applies on A the same way.
    b.trust_remove(&publisher().fingerprint);
    let removed = eventually(REVOCATION_BOUND, || async {
        let r = a.publisher().get("/1.0/applications").await;
        (r.status == StatusCode::FORBIDDEN).then_some(())
    })
    .await;
    assert!(
        removed.is_some(),
        "unit A still admits the removed publisher"
    );
    assert_eq!(s3.keys("trust/"), vec!["trust/trust.json".to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_changes_through_two_units_are_all_kept() {
    let s3 = S3Server::start();
    let (a, b) = two_units(&s3, "");
    let ids: Vec<Identity> = (0..6)
        .map(|i| Identity::generate(&format!("ams-{i}")))
        .collect();
    // Three adds through each unit at once: conditional writes, retried on conflict.
    std::thread::scope(|scope| {
        for (i, id) in ids.iter().enumerate() {
            let unit = if i % 2 == 0 { &a } else { &b };
            scope.spawn(move || unit.trust_add(id, false));
        }
    });
    let listed = a.trust_list_json(false);
    for id in &ids {
        assert!(
            listed.to_string().contains(&id.fingerprint),
            "{} lost: {listed}",
            id.name
        );
    }
    assert_eq!(listed.as_array().map(Vec::len), Some(2 + ids.len()));
}

/// With the bucket out of reach the last list read stays in use for
/// `trust-stale-after`, then every request gets 503 (never a 200 judged by a list that
/// may lack a revocation, never a silent 403), and service comes back with the bucket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_bucket_keeps_the_list_for_a_bounded_time_then_answers_503() {
    let mut s3 = S3Server::start();
    let extra = "    trust-refresh-interval: 500ms\n    trust-stale-after: 4s\n";
    let storage = s3_storage(&s3, SECRET_KEY, extra);
    let aar = Daemon::s3(&storage).start();
    aar.reader().get("/1.0/applications").await.expect(200);

    s3.stop();
    let stopped = Instant::now();
    // Within the bound, the list read before still decides, both ways.
    aar.reader().get("/1.0/applications").await.expect(200);
    aar.client(Some(untrusted()))
        .get("/1.0/applications")
        .await
        .expect(403);
    let unavailable = eventually(Duration::from_secs(60), || async {
        let r = aar.reader().get("/1.0/applications").await;
        (r.status == StatusCode::SERVICE_UNAVAILABLE).then_some(r)
    })
    .await
    .expect("503 once the list is stale");
    let after = stopped.elapsed();
    eprintln!("trust list went stale {after:?} after the bucket stopped answering");
    assert!(
        after >= Duration::from_secs(3),
        "stale too early: {after:?}"
    );
    assert!(unavailable.header("retry-after").is_some());
    assert!(
        unavailable.error().contains("trust store"),
        "{}",
        unavailable.error()
    );
    // Nobody gets in meanwhile, the untrusted included, and nobody gets a bare 403.
    aar.client(Some(untrusted()))
        .get("/1.0/applications")
        .await
        .expect(503);
    let said = eventually(Duration::from_secs(10), || async {
        let said = aar.stderr();
        (said.contains("s3://aar0/trust/trust.json") && said.contains("answered 503"))
            .then_some(said)
    })
    .await;
    assert!(said.is_some(), "{}", aar.stderr());

    s3.resume();
    let back = eventually(Duration::from_secs(60), || async {
        let r = aar.reader().get("/1.0/applications").await;
        (r.status == StatusCode::OK).then_some(())
    })
    .await;
    assert!(
        back.is_some(),
        "trust is read again once the bucket answers"
    );
    assert!(aar.stderr().contains("answers again"), "{}", aar.stderr());
}

/// Units that each kept their own `trust.json` before the store moved into the bucket
/// converge on the union, revocations winning, and each imports its file only once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_stores_from_before_are_merged_into_the_bucket_once() {
    let s3 = S3Server::start();
    let storage = s3_storage(&s3, SECRET_KEY, "");
    // Unit A trusted the publisher and the client; unit B trusted the client and then
    // revoked it, and trusted a third AMS. Both wrote their local files with fs config.
    let a = Daemon::builder("").prepare();
    let b = Daemon::builder("").no_trust().prepare();
    let third = Identity::generate("ams-3");
    b.trust_add(client_id(), false);
    b.trust_revoke(&client_id().fingerprint);
    b.trust_add(&third, false);
    let a_state = a.state_dir.clone();
    let b_state = b.state_dir.clone();

    // The same state directories, now on S3.
    let overrides = |state: &std::path::Path| format!("state-directory: {}\n", state.display());
    let a = Daemon::builder(&overrides(&a_state))
        .storage(&storage)
        .no_trust()
        .start();
    assert!(a_state.join("trust.json.imported").exists());
    assert!(!a_state.join("trust.json").exists());
    a.publisher().get("/1.0/applications").await.expect(200);
    a.reader().get("/1.0/applications").await.expect(200);

    // B's CLI, before its daemon ever runs on S3, imports B's file.
    let b = Daemon::builder(&overrides(&b_state))
        .storage(&storage)
        .no_trust()
        .prepare();
    let revoked = b.trust_list_json(true);
    assert!(
        revoked.to_string().contains(&client_id().fingerprint),
        "{revoked}"
    );
    assert!(b_state.join("trust.json.imported").exists());
    let trusted = b.trust_list_json(false).to_string();
    assert!(trusted.contains(&publisher().fingerprint), "{trusted}");
    assert!(trusted.contains(&third.fingerprint), "{trusted}");
    assert!(!trusted.contains(&client_id().fingerprint), "{trusted}");

    // A learns of B's revocation from the bucket.
    let refused = eventually(REVOCATION_BOUND, || async {
        let r = a.reader().get("/1.0/applications").await;
        (r.status == StatusCode::FORBIDDEN).then_some(())
    })
    .await;
    assert!(refused.is_some(), "unit A still admits what unit B revoked");
    a.client(Some(&third))
        .get("/1.0/applications")
        .await
        .expect(200);

    // Importing is once: a later trust.json (an fs backup restored by hand, say) is
    // merged again, but the first import's file is not read twice.
    let before = std::fs::read(a_state.join("trust.json.imported")).unwrap();
    a.trust_list_json(false);
    assert_eq!(
        std::fs::read(a_state.join("trust.json.imported")).unwrap(),
        before
    );
}
