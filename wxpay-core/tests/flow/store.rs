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

/// A store whose transitions check the state but not the version (`ignore
/// the state` too when `any_state`): the kit must catch both.
struct NoCas {
    inner: MemoryStore,
    any_state: bool,
}

#[async_trait::async_trait]
impl wxpay_core::flow::OrderStore for NoCas {
    async fn insert(
        &self,
        o: &wxpay_core::flow::Order,
    ) -> Result<(), wxpay_core::flow::StoreError> {
        self.inner.insert(o).await
    }
    async fn get(
        &self,
        no: &wxpay_core::OutTradeNo,
    ) -> Result<Option<wxpay_core::flow::Order>, wxpay_core::flow::StoreError> {
        self.inner.get(no).await
    }
    async fn transition(
        &self,
        t: &wxpay_core::flow::Transition,
    ) -> Result<wxpay_core::flow::TransitionOutcome, wxpay_core::flow::StoreError> {
        // Not atomic either: it reads, then writes whatever it read.
        let Some(now) = self.inner.get(&t.out_trade_no).await? else {
            return Ok(wxpay_core::flow::TransitionOutcome::NotFound);
        };
        let mut any = t.clone();
        any.version = now.version;
        if self.any_state {
            any.from = now.state;
        }
        self.inner.transition(&any).await
    }
    async fn claim_fulfilment(
        &self,
        no: &wxpay_core::OutTradeNo,
        now: chrono::DateTime<chrono::Utc>,
        lease: std::time::Duration,
    ) -> Result<Option<wxpay_core::flow::Claim>, wxpay_core::flow::StoreError> {
        self.inner.claim_fulfilment(no, now, lease).await
    }
    async fn complete_fulfilment(
        &self,
        no: &wxpay_core::OutTradeNo,
        claim: wxpay_core::flow::Claim,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<bool, wxpay_core::flow::StoreError> {
        self.inner.complete_fulfilment(no, claim, at).await
    }
}

async fn kit_failure(store: NoCas) -> String {
    let run = tokio::spawn(check_order_store(Arc::new(store)));
    let e = run.await.unwrap_err();
    assert!(e.is_panic());
    let msg = e.into_panic();
    msg.downcast_ref::<String>().cloned().unwrap_or_default()
}

#[tokio::test]
async fn the_kit_catches_a_store_without_compare_and_set() {
    let msg = kit_failure(NoCas {
        inner: MemoryStore::new(),
        any_state: true,
    })
    .await;
    assert!(
        msg.contains("OrderStore conformance [transition compare-and-set]"),
        "{msg}"
    );
}

#[tokio::test]
async fn the_kit_catches_a_store_that_ignores_the_version() {
    let msg = kit_failure(NoCas {
        inner: MemoryStore::new(),
        any_state: false,
    })
    .await;
    assert!(
        msg.contains("OrderStore conformance [transition compare-and-set]")
            && msg.contains("ignores the version"),
        "{msg}"
    );
}
