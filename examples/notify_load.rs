//! Load test of the payment-notify route: `wrk` against, in one process on
//! 127.0.0.1,
//!
//! - `bare`: an axum handler that reads the body and answers the SUCCESS XML;
//! - `wxpay-memory`: `wxpay_axum::router` alone, `MemoryStore`, no-op
//!   `on_paid` (what wxpay itself costs, without the shop's effect);
//! - `shop-memory`: the `axum_shop` router, orders in a `MemoryStore` (the
//!   shop's own tables, written by its `on_paid`, in a SQLite file);
//! - `shop-sqlite`: the `axum_shop` router, orders and shop tables in SQLite.
//!
//! Each shop gets `--orders` PREPAID orders and a file of their signed
//! notifies; wrk POSTs them round-robin. Run 1 (`first`) pays them (each
//! notify is a first notify until the orders run out, then duplicates: the
//! table says how many orders got paid); run 2 (`dup`) sends only the
//! bodies of the orders run 1 paid, so every request is a duplicate. Needs `wrk` on `PATH`
//! (`apt-get install wrk`); see BENCHMARKS.md.
//!
//! ```sh
//! cargo run --release --example notify_load -- --duration 10 --connections 32
//! ```

#[path = "axum_shop/app.rs"]
mod app;
#[path = "shop/mod.rs"]
mod shop;

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Command,
    sync::Arc,
    time::{Duration, Instant},
};

use clap::Parser;
use wxpay_core::{
    BoxError, OutTradeNo, SignType, TradeType,
    flow::{MemoryStore, Order, OrderState, OrderStore},
    testkit,
};

/// Command line.
#[derive(Parser, Debug)]
struct Opts {
    /// Seconds per wrk run (1 to 120).
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// wrk connections.
    #[arg(long, default_value_t = 32)]
    connections: u32,
    /// wrk threads.
    #[arg(long, default_value_t = 1)]
    threads: u32,
    /// PREPAID orders (and notify bodies) per shop (1 to 1,000,000).
    #[arg(long, default_value_t = 100_000)]
    orders: u64,
    /// PREPAID orders for `wxpay-memory` (1 to 1,000,000).
    #[arg(long, default_value_t = 300_000)]
    orders_fast: u64,
    /// Tokio worker threads of the servers (default: one per core).
    #[arg(long)]
    workers: Option<usize>,
}

const LUA: &str = r#"
-- POSTs the notify bodies of a file round-robin (one body a line); each wrk
-- thread takes every n-th body. Counts replies that are not SUCCESS.
local threads = {}
local next_id = 0
function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end
function init(args)
  bodies = {}
  for line in io.lines(args[1]) do bodies[#bodies + 1] = line end
  step = tonumber(args[2])
  idx = id
  fails = 0
  headers = { ["Content-Type"] = "text/xml" }
end
function request()
  local b = bodies[(idx % #bodies) + 1]
  idx = idx + step
  return wrk.format("POST", nil, headers, b)
end
function response(status, hdrs, body)
  if status ~= 200 or not string.find(body, "SUCCESS", 1, true) then fails = fails + 1 end
end
function done(summary, latency, requests)
  local f = 0
  for _, t in ipairs(threads) do f = f + t:get("fails") end
  io.write(string.format("NOT_SUCCESS %d\n", f))
end
"#;

struct Target {
    name: &'static str,
    addr: SocketAddr,
    store: Option<Arc<dyn OrderStore>>,
    orders: Vec<OutTradeNo>,
    lines: Vec<String>,
    bodies: PathBuf,
}

struct Run {
    target: &'static str,
    phase: &'static str,
    rps: f64,
    requests: u64,
    not_success: u64,
    p50: String,
    p99: String,
    paid: Option<usize>,
}

fn main() -> Result<(), BoxError> {
    let opts = Opts::parse();
    let orders = 1..=1_000_000;
    if !(1..=120).contains(&opts.duration)
        || !orders.contains(&opts.orders)
        || !orders.contains(&opts.orders_fast)
    {
        return Err("--duration must be 1..=120 and --orders(-fast) 1..=1000000".into());
    }
    match Command::new("wrk").arg("--version").output() {
        Ok(_) => {}
        Err(e) => {
            eprintln!(
                "wrk is not available ({e}): install it (e.g. `apt-get install wrk`) and run again"
            );
            std::process::exit(2);
        }
    }
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    if let Some(w) = opts.workers {
        rt.worker_threads(w);
    }
    let rt = rt.build()?;

    let dir = std::env::temp_dir().join(format!("wxpay_notify_load_{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = rt.block_on(run(&opts, &dir));
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn run(opts: &Opts, dir: &Path) -> Result<(), BoxError> {
    let script = dir.join("notify.lua");
    std::fs::write(&script, LUA)?;

    let bare = bare_server().await?;
    let mut targets = vec![Target {
        name: "bare",
        addr: bare,
        store: None,
        orders: Vec::new(),
        lines: Vec::new(),
        bodies: dir.join("bare.txt"),
    }];
    for (name, kind) in [
        ("wxpay-memory", Kind::Wxpay),
        ("shop-memory", Kind::ShopMemory),
        ("shop-sqlite", Kind::ShopSqlite),
    ] {
        let t0 = Instant::now();
        let n = if kind == Kind::Wxpay {
            opts.orders_fast
        } else {
            opts.orders
        };
        let target = server(name, kind, n, dir).await?;
        println!(
            "{name}: {n} PREPAID orders stored and signed in {:.1} s",
            t0.elapsed().as_secs_f64()
        );
        if targets[0].orders.is_empty() {
            // The bare handler gets the same bodies (it ignores them).
            std::fs::copy(&target.bodies, &targets[0].bodies)?;
            targets[0].orders = vec![target.orders[0].clone()];
        }
        targets.push(target);
    }

    let mut runs = Vec::new();
    for t in &targets {
        let Some(store) = &t.store else {
            let r = wrk(opts, &script, t, &t.bodies, "-")?;
            print_run(&r);
            runs.push(r);
            continue;
        };
        let mut r = wrk(opts, &script, t, &t.bodies, "first")?;
        let paid = paid_orders(store.as_ref(), &t.orders).await?;
        r.paid = Some(paid.len());
        print_run(&r);
        runs.push(r);
        if paid.is_empty() {
            continue;
        }
        let dup_bodies = dir.join(format!("{}-dup.txt", t.name));
        let mut text = String::new();
        for i in paid {
            text.push_str(&t.lines[i]);
            text.push('\n');
        }
        std::fs::write(&dup_bodies, text)?;
        let mut r = wrk(opts, &script, t, &dup_bodies, "dup")?;
        r.paid = Some(paid_orders(store.as_ref(), &t.orders).await?.len());
        print_run(&r);
        runs.push(r);
    }

    let bare_rps = runs[0].rps;
    println!();
    println!(
        "wrk -t{} -c{} -d{}s, {} orders per shop, {} for wxpay-memory, {} cores",
        opts.threads,
        opts.connections,
        opts.duration,
        opts.orders,
        opts.orders_fast,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "| target | run | req/s | vs bare | requests | orders paid | not SUCCESS | p50 | p99 |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|");
    for r in &runs {
        println!(
            "| {} | {} | {:.0} | {:.1} % | {} | {} | {} | {} | {} |",
            r.target,
            r.phase,
            r.rps,
            100.0 * r.rps / bare_rps,
            r.requests,
            r.paid.map_or("-".to_owned(), |p| p.to_string()),
            r.not_success,
            r.p50,
            r.p99,
        );
    }
    Ok(())
}

fn print_run(r: &Run) {
    println!(
        "{:<12} {:<5} {:>10.0} req/s  ({} requests, {} not SUCCESS)",
        r.target, r.phase, r.rps, r.requests, r.not_success
    );
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Wxpay,
    ShopMemory,
    ShopSqlite,
}

/// The floor: axum, reading the body, answering the fixed SUCCESS XML.
async fn bare_server() -> Result<SocketAddr, BoxError> {
    use axum::{body::Bytes, http::header::CONTENT_TYPE, routing::post};
    let app = axum::Router::new().route(
        "/pay/notify",
        post(|body: Bytes| async move {
            let _ = body.len();
            (
                [(CONTENT_TYPE, "application/xml; charset=utf-8")],
                wxpay_core::notify::reply_success(),
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}

/// The axum shop (embedded simulator config, so notifies are signed with its
/// key), or wxpay's router alone, with `orders` PREPAID orders and their
/// notify bodies in a file.
async fn server(
    name: &'static str,
    kind: Kind,
    orders: u64,
    dir: &Path,
) -> Result<Target, BoxError> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let args = shop::Args {
        listen: addr,
        sim: true,
        database_url: format!(
            "sqlite://{}?mode=rwc",
            dir.join(format!("{name}.db")).display()
        ),
        sim_sign_type: SignType::Md5,
        sim_time_scale: 1.0,
    };
    let memory_store: Arc<dyn OrderStore> = Arc::new(MemoryStore::new());
    let (shop, payments) = if kind == Kind::Wxpay {
        let sim = wxpay_sim::SimConfig::test();
        let config = wxpay_core::Config::new(sim.appid, sim.mch_id, sim.api_key);
        let payments = wxpay_core::flow::Payments::builder(config)
            .store(memory_store)
            .build()?;
        (None, payments)
    } else {
        let shop = shop::Shop::start_with(&args, addr, |b| {
            if kind == Kind::ShopMemory {
                b.store(memory_store)
            } else {
                b
            }
        })
        .await?;
        let payments = shop.payments.clone();
        (Some(shop), payments)
    };
    let store = payments.store().clone();
    let config = payments.config().clone();

    let mut text = String::new();
    let mut lines = Vec::with_capacity(orders as usize);
    let mut nos = Vec::with_capacity(orders as usize);
    let now = chrono::Utc::now();
    for i in 0..orders {
        let no = OutTradeNo::new(format!("L{}{i:09}", &name[..1]))?;
        let mut order = Order::new(
            no.clone(),
            wxpay_core::Fen(shop::VIP_MONTH_FEN),
            "wxpay shop-VIP membership",
            TradeType::Jsapi,
            SignType::Md5,
            now,
        );
        let openid = format!("oLoad{:04}", i % 1000);
        order.openid = Some(openid.clone());
        order.owner = Some(openid);
        order.attach = Some("vip-month:1".into());
        order.prepay_id = Some(format!("wx_load_{i}"));
        order.state = OrderState::Prepaid;
        store.insert(&order).await?;
        let body = testkit::signed_payment_notify(&config, &order, &format!("4200{i:024}"));
        if body.contains('\n') {
            return Err("a notify body with a newline".into());
        }
        text.push_str(&body);
        text.push('\n');
        lines.push(body);
        nos.push(no);
    }
    let bodies = dir.join(format!("{name}.txt"));
    std::fs::write(&bodies, text)?;

    match shop {
        Some(shop) => {
            tokio::spawn(app::serve(Arc::new(shop), listener));
        }
        None => {
            listener.set_nonblocking(true)?;
            let listener = tokio::net::TcpListener::from_std(listener)?;
            let app = axum::Router::new().nest("/pay", wxpay_axum::router(payments));
            tokio::spawn(async move { axum::serve(listener, app).await });
        }
    }
    Ok(Target {
        name,
        addr,
        store: Some(store),
        orders: nos,
        lines,
        bodies,
    })
}

/// One wrk run against `t`'s notify route.
fn wrk(
    opts: &Opts,
    script: &Path,
    t: &Target,
    bodies: &Path,
    phase: &'static str,
) -> Result<Run, BoxError> {
    let url = format!("http://{}/pay/notify", t.addr);
    let out = Command::new("timeout")
        .arg((opts.duration + 30).to_string())
        .arg("wrk")
        .arg(format!("-t{}", opts.threads))
        .arg(format!("-c{}", opts.connections))
        .arg(format!("-d{}s", opts.duration))
        .arg("--latency")
        .arg("-s")
        .arg(script)
        .arg(&url)
        .arg("--")
        .arg(bodies)
        .arg(opts.threads.to_string())
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "wrk failed on {}: {}\n{}",
            t.name,
            text,
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    let field = |prefix: &str| -> Option<String> {
        text.lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(prefix))
            .map(|v| v.split_whitespace().next().unwrap_or("").to_owned())
    };
    let requests = text
        .lines()
        .find(|l| l.contains("requests in"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    Ok(Run {
        target: t.name,
        phase,
        rps: field("Requests/sec:")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("no Requests/sec in wrk output:\n{text}"))?,
        requests,
        not_success: field("NOT_SUCCESS")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        p50: field("50%").unwrap_or_default(),
        p99: field("99%").unwrap_or_default(),
        paid: None,
    })
}

/// The indices of `orders` that are PAID (bounded: one read per order, 60 s
/// at most).
async fn paid_orders(
    store: &dyn OrderStore,
    orders: &[OutTradeNo],
) -> Result<Vec<usize>, BoxError> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut paid = Vec::new();
    for (i, no) in orders.iter().enumerate() {
        if Instant::now() > deadline {
            return Err("counting paid orders took over 60 s".into());
        }
        if store
            .get(no)
            .await?
            .is_some_and(|o| o.state == OrderState::Paid)
        {
            paid.push(i);
        }
    }
    Ok(paid)
}
