//! The store behaviour suite (`store::suite`) run against SQLite.

use std::sync::Arc;

use countersign_store_sqlite::SqliteStore;
use store::Store;

/// A fresh database in a temporary file, removed when the store drops.
async fn open() -> ((), Arc<dyn Store>) {
    (
        (),
        Arc::new(SqliteStore::open_temp().expect("open a temporary SQLite store")),
    )
}

store::store_suite!(open);

/// The same cases through `run_all`, as a backend without the macro would.
#[tokio::test]
async fn run_all_cases_in_sequence() {
    store::suite::run_all(open).await;
}
