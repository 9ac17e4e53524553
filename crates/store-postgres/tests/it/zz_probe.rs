//! temporary probe
use std::time::Instant;
use store::{Store, Work};
use crate::{fresh, new_run, step_commit};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe() {
    let (db, a) = fresh("probe").await;
    let now = 1_700_000_000_000i64;
    for chunk in 0..80 {
        let mut t = Vec::new();
        for i in 0..256 {
            let a = a.clone();
            t.push(tokio::spawn(async move { a.create_run(new_run(&format!("r{chunk}-{i}"), now, None)).await }));
        }
        for x in t { x.await.unwrap().unwrap(); }
        let c = a.claim("n", now + 1, now + 60_000, 256).await.unwrap();
        let mut t = Vec::new();
        for cl in c {
            let a = a.clone();
            t.push(tokio::spawn(async move { a.commit(step_commit(&cl.run.id, cl.run.rev, 1, Work::Remove, now + 2)).await }));
        }
        for x in t { x.await.unwrap().unwrap(); }
    }
    for _ in 0..3 {
        let t = Instant::now();
        a.claim("n", now + 1, now + 60_000, 256).await.unwrap();
        let c1 = t.elapsed();
        let t = Instant::now();
        a.next_due().await.unwrap();
        let c2 = t.elapsed();
        let t = Instant::now();
        a.create_run(new_run(&format!("x{}", c1.as_nanos()), now, None)).await.unwrap();
        let c3 = t.elapsed();
        eprintln!("claim {c1:?} next_due {c2:?} create {c3:?}");
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    }
    drop(a);
    db.drop_now().await.unwrap();
}
