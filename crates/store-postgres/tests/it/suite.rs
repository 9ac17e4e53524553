//! The store behaviour suite (`store::suite`), unchanged, against PostgreSQL:
//! each case on its own fresh database.

use std::sync::Arc;

use store::Store;

use crate::store_postgres::PgStore;
use crate::store_postgres::scratch::ScratchDb;

/// A fresh database (dropped with the guard) and a store on it.
async fn open() -> (ScratchDb, Arc<dyn Store>) {
    let db = ScratchDb::for_test("suite")
        .await
        .expect("a scratch database");
    let store = PgStore::connect(db.url()).await.expect("connect");
    (db, Arc::new(store))
}

store::store_suite!(open);
