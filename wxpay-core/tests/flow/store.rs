use std::sync::Arc;

use wxpay_core::{flow::MemoryStore, testkit::check_order_store};

#[tokio::test]
async fn memory_store_passes_the_conformance_kit() {
    check_order_store(Arc::new(MemoryStore::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_store_passes_twice_on_one_store_multithreaded() {
    let store = Arc::new(MemoryStore::new());
    check_order_store(store.clone()).await;
    check_order_store(store).await;
}
