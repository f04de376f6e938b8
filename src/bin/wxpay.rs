//! `wxpay`: the command line of the wxpay library (feature `cli`).
//!
//! ```text
//! wxpay reconcile --date 2026-01-01 [--format text|json] [--dry-run]
//!                 [--env-file wxpay.env] [--database-url sqlite://wxpay-shop.db]
//! wxpay acknowledge --order WXP2026… [--kind BILL_MISMATCH] [--env-file …] [--database-url …]
//! ```
//!
//! `reconcile` runs the daily reconciliation of one Beijing day against
//! WeChat's trade bill ([`Payments::reconcile_day`]) with the shops'
//! configuration: the `WXPAY_*` settings from the environment or an env
//! file ([`Settings::from_env_file`]), the merchant's client certificate
//! from `WXPAY_CLIENT_*`, and the orders in `DATABASE_URL`.
//!
//! `acknowledge` records that a person has dealt with an order's open
//! attention cases ([`Payments::acknowledge`]); the next reconciliation
//! reports an acknowledged case as such, not for a person.
//!
//! Exit codes of `reconcile`: `0` nothing needs a person (a clean day, or everything found
//! was repaired or explained); `1` something needs a person (the report
//! says what; flags are recorded on the orders); `2` the run failed (the
//! configuration, the store, the bill could not be fetched); `3` the bill
//! is not ready yet (WeChat makes it after 10:00 Beijing time the next
//! day): run it again later.

use std::{path::PathBuf, process::ExitCode, sync::Arc};

use chrono::NaiveDate;
use clap::{Parser, Subcommand, ValueEnum};
use wxpay::{
    BoxError, ClientIdentity, OutTradeNo, Settings,
    flow::{AttentionKind, DailyError, DailyOptions, Payments},
    sqlx::SqlxStore,
};

#[derive(Parser, Debug)]
#[command(name = "wxpay", version, about = "wxpay: WeChat Pay for Rust web apps")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Reconciles one day against WeChat's trade bill, repairing what the
    /// payment flow can repair and flagging the rest for a person.
    Reconcile(Reconcile),
    /// Records that a person has dealt with an order's open attention
    /// cases (all, or those of `--kind`).
    Acknowledge(Acknowledge),
}

/// Where the orders are, and the settings.
#[derive(clap::Args, Debug)]
struct Common {
    /// `NAME=value` settings taking precedence over the environment (the
    /// simulator's `wxpay.env`, for instance).
    #[arg(long)]
    env_file: Option<PathBuf>,
    /// The shops' order store.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://wxpay-shop.db?mode=rwc",
        hide_env_values = true
    )]
    database_url: String,
}

#[derive(clap::Args, Debug)]
struct Acknowledge {
    /// The order (`out_trade_no`).
    #[arg(long)]
    order: String,
    /// Only the cases of this kind (e.g. `BILL_MISMATCH`).
    #[arg(long)]
    kind: Option<String>,
    #[command(flatten)]
    common: Common,
}

#[derive(clap::Args, Debug)]
struct Reconcile {
    /// The day, Beijing time (`YYYY-MM-DD`).
    #[arg(long)]
    date: NaiveDate,
    /// `text`: a summary for people; `json`: the whole report.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Report only: no repairs, no flags (WeChat is still asked, read-only).
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    common: Common,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Text,
    Json,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match Cli::parse().command {
        Command::Reconcile(args) => reconcile(&args).await,
        Command::Acknowledge(args) => acknowledge(&args).await,
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("wxpay reconcile: {e}");
            let mut source = e.source();
            while let Some(s) = source {
                eprintln!("  caused by: {s}");
                source = s.source();
            }
            ExitCode::from(2)
        }
    }
}

/// The service as the shops configure it, without checkout.
async fn payments(common: &Common) -> Result<Payments, BoxError> {
    let settings = Settings::from_env_file(common.env_file.as_deref())?;
    let store = Arc::new(SqlxStore::connect(&common.database_url).await?);
    Ok(settings
        .payments_builder(ClientIdentity::from_env()?.as_ref())?
        .store(store)
        .build()?)
}

async fn acknowledge(args: &Acknowledge) -> Result<ExitCode, BoxError> {
    let kind = match &args.kind {
        Some(k) => Some(
            serde_json::from_value::<AttentionKind>(serde_json::Value::String(k.clone()))
                .map_err(|_| format!("--kind {k}: not an attention kind (e.g. BILL_MISMATCH)"))?,
        ),
        None => None,
    };
    let no = OutTradeNo::new(args.order.clone())?;
    let (order, n) = payments(&args.common).await?.acknowledge(&no, kind).await?;
    println!(
        "{}: {n} attention case(s) acknowledged; {} recorded in all",
        order.out_trade_no,
        order.attention.len()
    );
    Ok(ExitCode::SUCCESS)
}

async fn reconcile(args: &Reconcile) -> Result<ExitCode, BoxError> {
    let payments = payments(&args.common).await?;
    let options = if args.dry_run {
        DailyOptions::dry_run()
    } else {
        DailyOptions::default()
    };
    let report = match payments.reconcile_day(args.date, options).await {
        Ok(r) => r,
        Err(DailyError::NotReady { date }) => {
            eprintln!("wxpay reconcile: WeChat's bill of {date} is not ready yet; run again later");
            return Ok(ExitCode::from(3));
        }
        Err(e) => return Err(e.into()),
    };
    match args.format {
        Format::Text => print!("{report}"),
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
    }
    Ok(if report.needs_person() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
