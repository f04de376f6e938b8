//! [`Catalog`]: a ready-made [`Checkout`] for a fixed price list.

use std::collections::BTreeMap;

use async_trait::async_trait;

use super::{Checkout, CheckoutRequest, Order, OrderDraft, Rejection};
use crate::Fen;

/// One thing a [`Catalog`] sells.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CatalogItem {
    /// What the client asks for (`"vip-month"`).
    pub sku: String,
    /// The goods description WeChat shows the payer (`body`, ≤ 127 bytes).
    pub body: String,
    /// The price of one unit.
    pub unit_price: Fen,
}

/// A ready-made [`Checkout`] for mini-programs that sell from a fixed price
/// list (memberships, credits, tickets…), for users signed in through
/// wxpay's [sessions](super::PaymentsBuilder::sessions).
///
/// The client sends `{"sku": "vip-month", "quantity": 2}` (`quantity` is
/// optional, 1 by default; every other field, an amount included, is
/// ignored). The order is a JSAPI order for the signed-in user: payer and
/// [`owner`](Order::owner) are their openid, the price is the catalog's
/// unit price times the quantity, and `attach` records `"{sku}:{quantity}"`
/// so that [`Catalog::line`] can tell later what a paid order bought.
///
/// Refusals: no signed-in user → `401`; a body that is not such JSON, an
/// unknown SKU, or a quantity outside `1..=max_quantity` → `400`.
///
/// ```
/// use wxpay_core::{Fen, flow::Catalog};
/// let catalog = Catalog::new()
///     .item("vip-month", "Shop-VIP month", Fen(998))
///     .max_quantity(12);
/// assert_eq!(catalog.get("vip-month").map(|i| i.unit_price), Some(Fen(998)));
/// // Payments::builder(config).sessions(…).checkout(catalog.clone())
/// ```
#[derive(Debug, Clone)]
pub struct Catalog {
    items: BTreeMap<String, CatalogItem>,
    max_quantity: u32,
}

impl Default for Catalog {
    fn default() -> Catalog {
        Catalog::new()
    }
}

impl Catalog {
    /// An empty catalog (every checkout is refused until items are added);
    /// at most 99 units per order.
    pub fn new() -> Catalog {
        Catalog {
            items: BTreeMap::new(),
            max_quantity: 99,
        }
    }

    /// Adds (or replaces) an item.
    ///
    /// # Panics
    /// At start-up, for an item WeChat or [`Catalog::line`] could not take:
    /// a SKU that is empty, longer than 64 bytes, or holds anything but
    /// ASCII letters, digits, `-`, `_` and `.`; a description that is
    /// empty or over 127 bytes; a zero price.
    pub fn item(mut self, sku: &str, body: &str, unit_price: Fen) -> Catalog {
        let sku_ok = !sku.is_empty()
            && sku.len() <= 64
            && sku
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        assert!(
            sku_ok,
            "Catalog::item: a SKU is 1 to 64 ASCII letters, digits, '-', '_' or '.': {sku:?}"
        );
        assert!(
            !body.is_empty() && body.len() <= 127,
            "Catalog::item: {sku}'s description must be 1 to 127 bytes"
        );
        assert!(unit_price.0 > 0, "Catalog::item: {sku}'s price is zero");
        let item = CatalogItem {
            sku: sku.to_owned(),
            body: body.to_owned(),
            unit_price,
        };
        self.items.insert(sku.to_owned(), item);
        self
    }

    /// The most units one order may buy (99 unless set).
    ///
    /// # Panics
    /// For `0`.
    pub fn max_quantity(mut self, max: u32) -> Catalog {
        assert!(max > 0, "Catalog::max_quantity: at least 1");
        self.max_quantity = max;
        self
    }

    /// The item with this SKU.
    pub fn get(&self, sku: &str) -> Option<&CatalogItem> {
        self.items.get(sku)
    }

    /// What an order this catalog priced bought: the item and the quantity,
    /// read back from the order's `attach`. `None` for orders it did not
    /// price or whose SKU it no longer sells. Check the order's
    /// [`state`](Order::state) before granting anything.
    pub fn line(&self, order: &Order) -> Option<(&CatalogItem, u32)> {
        let (sku, quantity) = order.attach.as_deref()?.split_once(':')?;
        let quantity: u32 = quantity.parse().ok()?;
        Some((self.items.get(sku)?, quantity))
    }
}

#[async_trait]
impl Checkout for Catalog {
    async fn order(&self, req: &CheckoutRequest) -> Result<OrderDraft, Rejection> {
        #[derive(serde::Deserialize)]
        struct Buy {
            sku: String,
            quantity: Option<u32>,
        }
        let openid = req
            .user()
            .ok_or_else(|| Rejection::unauthorized("sign in first"))?;
        let buy: Buy = req.json()?;
        let item = (self.items.get(&buy.sku))
            .ok_or_else(|| Rejection::bad_request(format!("unknown sku {:?}", buy.sku)))?;
        let quantity = buy.quantity.unwrap_or(1);
        if !(1..=self.max_quantity).contains(&quantity) {
            let max = self.max_quantity;
            return Err(Rejection::bad_request(format!(
                "quantity must be 1 to {max}"
            )));
        }
        let total = (item.unit_price.0)
            .checked_mul(u64::from(quantity))
            .ok_or_else(|| Rejection::bad_request("the order is too large"))?;
        Ok(OrderDraft::jsapi(openid, &item.body, Fen(total))
            .with_owner(openid)
            .with_attach(format!("{}:{quantity}", item.sku)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{OutTradeNo, SignType, TradeType};

    fn catalog() -> Catalog {
        Catalog::new()
            .item("vip-month", "Shop-VIP month", Fen(998))
            .item("coins.100", "100 coins", Fen(600))
            .max_quantity(12)
    }

    fn buy(body: &str) -> CheckoutRequest {
        CheckoutRequest::new(body).with_user("o-alice")
    }

    async fn refused(req: CheckoutRequest) -> (u16, String) {
        let r = catalog().order(&req).await.unwrap_err();
        (r.kind.status(), r.message)
    }

    #[tokio::test]
    async fn prices_from_the_list_for_the_signed_in_user() {
        let d = catalog()
            .order(&buy(
                r#"{"sku":"vip-month","quantity":3,"total_fee":1,"price":1}"#,
            ))
            .await
            .unwrap();
        assert_eq!(
            d.total_fee,
            Fen(3 * 998),
            "the client's amounts are ignored"
        );
        assert_eq!(d.openid.as_deref(), Some("o-alice"));
        assert_eq!(d.owner.as_deref(), Some("o-alice"));
        assert_eq!(d.trade_type, TradeType::Jsapi);
        assert_eq!(d.body, "Shop-VIP month");
        assert_eq!(d.attach.as_deref(), Some("vip-month:3"));

        let d = catalog()
            .order(&buy(r#"{"sku":"coins.100"}"#))
            .await
            .unwrap();
        assert_eq!(
            (d.total_fee, d.attach.as_deref()),
            (Fen(600), Some("coins.100:1"))
        );
    }

    #[tokio::test]
    async fn refuses_what_it_does_not_sell() {
        let anonymous = CheckoutRequest::new(r#"{"sku":"vip-month"}"#);
        assert_eq!(refused(anonymous).await, (401, "sign in first".into()));
        for body in [
            "",
            "nope",
            r#"{"quantity":1}"#,
            r#"{"sku":"gold"}"#,
            r#"{"sku":"vip-month","quantity":0}"#,
            r#"{"sku":"vip-month","quantity":13}"#,
            r#"{"sku":"vip-month","quantity":-1}"#,
            r#"{"sku":"vip-month","quantity":1.5}"#,
            r#"{"sku":"vip-month","quantity":"2"}"#,
        ] {
            assert_eq!(refused(buy(body)).await.0, 400, "{body}");
        }
        assert_eq!(
            refused(buy(r#"{"sku":"vip-month","quantity":13}"#)).await.1,
            "quantity must be 1 to 12"
        );
    }

    #[tokio::test]
    async fn an_amount_that_overflows_is_refused() {
        let c = Catalog::new()
            .item("huge", "huge", Fen(u64::MAX / 2))
            .max_quantity(3);
        let r = c.order(&buy(r#"{"sku":"huge","quantity":3}"#)).await;
        assert_eq!(r.unwrap_err().kind.status(), 400);
    }

    fn order_with(attach: Option<&str>) -> Order {
        let mut o = Order::new(
            OutTradeNo::new("C1").unwrap(),
            Fen(998),
            "Shop-VIP month",
            TradeType::Jsapi,
            SignType::Md5,
            chrono::Utc::now(),
        );
        o.attach = attach.map(str::to_owned);
        o
    }

    #[tokio::test]
    async fn line_reads_back_what_an_order_bought() {
        let c = catalog();
        let d = c
            .order(&buy(r#"{"sku":"vip-month","quantity":4}"#))
            .await
            .unwrap();
        let (item, quantity) = c.line(&order_with(d.attach.as_deref())).unwrap();
        assert_eq!((item.sku.as_str(), quantity), ("vip-month", 4));
        for attach in [
            None,
            Some("vip-month"),
            Some("gold:1"),
            Some("vip-month:x"),
            Some(""),
        ] {
            assert!(c.line(&order_with(attach)).is_none(), "{attach:?}");
        }
    }

    #[test]
    fn malformed_items_are_refused_at_start_up() {
        let bad: [(&str, &str, u64); 6] = [
            ("", "x", 1),
            ("a:b", "x", 1),
            ("vip month", "x", 1),
            (&"s".repeat(65), "x", 1),
            ("ok", "", 1),
            ("ok", "x", 0),
        ];
        for (sku, body, price) in bad {
            let r = std::panic::catch_unwind(|| Catalog::new().item(sku, body, Fen(price)));
            assert!(r.is_err(), "{sku:?} {body:?} {price} was accepted");
        }
        let long_body = "x".repeat(128);
        assert!(
            std::panic::catch_unwind(|| Catalog::new().item("ok", &long_body, Fen(1))).is_err()
        );
        assert!(std::panic::catch_unwind(|| Catalog::new().max_quantity(0)).is_err());
    }
}
