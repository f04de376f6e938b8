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

/// A store whose transitions ignore `from`: the kit must catch it.
struct NoCas(MemoryStore);

#[async_trait::async_trait]
impl wxpay_core::flow::OrderStore for NoCas {
    async fn insert(
        &self,
        o: &wxpay_core::flow::Order,
    ) -> Result<(), wxpay_core::flow::StoreError> {
        self.0.insert(o).await
    }
    async fn get(
        &self,
        no: &wxpay_core::OutTradeNo,
    ) -> Result<Option<wxpay_core::flow::Order>, wxpay_core::flow::StoreError> {
        self.0.get(no).await
    }
    async fn transition(
        &self,
        t: &wxpay_core::flow::Transition,
    ) -> Result<wxpay_core::flow::TransitionOutcome, wxpay_core::flow::StoreError> {
        let mut any = t.clone();
        any.from = wxpay_core::flow::OrderState::ALL.to_vec();
        self.0.transition(&any).await
    }
    async fn claim_fulfilment(
        &self,
        no: &wxpay_core::OutTradeNo,
        now: chrono::DateTime<chrono::Utc>,
        lease: std::time::Duration,
    ) -> Result<bool, wxpay_core::flow::StoreError> {
        self.0.claim_fulfilment(no, now, lease).await
    }
    async fn complete_fulfilment(
        &self,
        no: &wxpay_core::OutTradeNo,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), wxpay_core::flow::StoreError> {
        self.0.complete_fulfilment(no, at).await
    }
}

#[tokio::test]
async fn the_kit_catches_a_store_without_compare_and_set() {
    let run = tokio::spawn(check_order_store(Arc::new(NoCas(MemoryStore::new()))));
    let e = run.await.unwrap_err();
    assert!(e.is_panic());
    let msg = e.into_panic();
    let msg = msg.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        msg.contains("OrderStore conformance [transition compare-and-set]"),
        "{msg}"
    );
}
