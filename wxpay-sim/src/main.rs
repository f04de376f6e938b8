//! `wxpay-sim`: run the WeChat Pay simulator (API v2 and v3) as a server.
//!
//! ```text
//! wxpay-sim --listen 127.0.0.1:9000 --time-scale 0.001
//! wxpay-sim --refund-delay-ms 0 --refund-notify-url http://127.0.0.1:8080/pay/refund-notify
//! wxpay-sim --verify-mode migration --keys-dir ./sim-keys   # then: source ./sim-keys/wxpay.env
//! wxpay-sim --test-keys --state ./sim-state.json             # orders survive a restart
//! wxpay-sim --fee-rate-bps 38                                 # bills charge 0.38%
//! ```
//!
//! v2 credentials come from flags or `WXPAY_APPID`, `WXPAY_MCH_ID`,
//! `WXPAY_API_KEY`, `WXPAY_APP_SECRET`; missing ones take the test values
//! of `SimConfig::test()`. v3 keys not given are generated at start
//! (`--test-keys`: the fixed keys of the spec's vectors). Secrets are never
//! printed (only written to `--keys-dir`).

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::Parser;
use tracing_subscriber::EnvFilter;
use wxpay_core::{ApiKey, AppSecret};
use wxpay_sim::{Secret, SimConfig, Simulator, V3Config, VerifyMode};

/// A local WeChat Pay simulator: API v2 (XML, `/pay/...`, also under the
/// sandbox prefix `/sandboxnew/` with `/sandboxnew/pay/getsignkey`) and API
/// v3 (JSON, RSA-signed, `/v3/...`) on one base URL, plus `jscode2session`
/// and a control API (`/sim/...`).
///
/// v3 keys that are not given are generated at start (RSA-2048,
/// self-signed certificates with 40-hex-digit serials); `--keys-dir` writes
/// them, with a `wxpay.env` for the merchant server.
#[derive(Parser)]
#[command(name = "wxpay-sim", version, about, long_about)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9000")]
    listen: SocketAddr,
    /// Mini-program AppID.
    #[arg(long, env = "WXPAY_APPID")]
    appid: Option<String>,
    /// Merchant number.
    #[arg(long, env = "WXPAY_MCH_ID")]
    mch_id: Option<String>,
    /// API v2 key.
    #[arg(long, env = "WXPAY_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Mini-program AppSecret.
    #[arg(long, env = "WXPAY_APP_SECRET", hide_env_values = true)]
    app_secret: Option<String>,
    /// Multiplies every time rule (notify retries, the 5-minute close rule,
    /// the 2-hour prepay expiry, refund processing).
    #[arg(long, default_value_t = 1.0)]
    time_scale: f64,
    /// Refund notify URL for refunds that name none (the URL configured in
    /// the merchant platform).
    #[arg(long)]
    refund_notify_url: Option<String>,
    /// How long a refund stays PROCESSING before it is final and notified,
    /// in milliseconds before --time-scale applies; 0 makes refunds final at
    /// once.
    #[arg(long, default_value_t = 60_000)]
    refund_delay_ms: u64,
    /// v3: which key signs answers and notifies: `cert` (the platform
    /// certificate), `pubkey` (the WeChat Pay public key; /v3/certificates
    /// answers 404) or `migration` (answers follow the request's
    /// Wechatpay-Serial, notifies use either at random).
    #[arg(long, default_value = "cert", value_parser = parse_mode)]
    verify_mode: VerifyMode,
    /// v3: the APIv3 key (32 characters); random when not given.
    #[arg(long, env = "WXPAY_APIV3_KEY", hide_env_values = true)]
    apiv3_key: Option<String>,
    /// v3: use the fixed test keys of the spec's vectors (APIv3 key
    /// included unless --apiv3-key) instead of generating keys. Other key
    /// flags are then ignored.
    #[arg(long)]
    test_keys: bool,
    /// v3: the merchant's API public key (SPKI PEM) that verifies its
    /// requests; needs --mch-serial.
    #[arg(long, value_name = "FILE", conflicts_with = "mch_cert")]
    mch_public_key: Option<PathBuf>,
    /// v3: the merchant's API certificate (PEM) that verifies its requests;
    /// its serial is the default of --mch-serial.
    #[arg(long, value_name = "FILE")]
    mch_cert: Option<PathBuf>,
    /// v3: the merchant's API private key (PEM), so that the simulator can
    /// hand it out (keys dir); with neither this nor a public key or
    /// certificate, a merchant key pair is generated.
    #[arg(long, value_name = "FILE")]
    mch_private_key: Option<PathBuf>,
    /// v3: the merchant API certificate serial expected in Authorization.
    #[arg(long, value_name = "HEX")]
    mch_serial: Option<String>,
    /// v3: the platform certificate's private key (PEM).
    #[arg(long, value_name = "FILE")]
    platform_key: Option<PathBuf>,
    /// v3: the platform certificate (PEM) of --platform-key; generated for
    /// it when not given.
    #[arg(long, value_name = "FILE", requires = "platform_key")]
    platform_cert: Option<PathBuf>,
    /// v3: the serial of a generated platform certificate (hex, up to 40
    /// digits).
    #[arg(long, value_name = "HEX")]
    platform_serial: Option<String>,
    /// v3: the WeChat Pay public key's private part (PEM), so that the
    /// simulator can sign with it; needs --public-key-id.
    #[arg(long, value_name = "FILE", requires = "public_key_id")]
    public_key: Option<PathBuf>,
    /// v3: the public key id, `PUB_KEY_ID_…`.
    #[arg(long, value_name = "ID")]
    public_key_id: Option<String>,
    /// v3: write the key material here at start: wxpay.env (the WXPAY_*
    /// lines of a v3 merchant for this simulator, v2 lines included),
    /// apiclient_key.pem, apiclient_cert.pem, pub_key.pem and the
    /// simulator's platform_key.pem, platform_cert.pem, pub_key_private.pem.
    #[arg(long, value_name = "DIR")]
    keys_dir: Option<PathBuf>,
    /// v3: seed for the migration-mode choice of notify key.
    #[arg(long)]
    seed: Option<u64>,
    /// Keep orders and refunds in this JSON file across restarts: loaded at
    /// start (a missing file starts empty; an unreadable or corrupt one
    /// stops the start), saved atomically when they change and on Ctrl-C /
    /// SIGTERM. Login codes, faults and the notify log are not kept. Give
    /// fixed v3 keys (--test-keys or key files) so v3 merchants still verify
    /// a restarted simulator.
    #[arg(long, value_name = "FILE")]
    state: Option<PathBuf>,
    /// Put `sign_type=HMAC-SHA256` in the payment notifies of HMAC orders.
    /// WeChat sends both shapes; by default it is left out (the shape seen
    /// from real HMAC notifies, which a merchant must verify with the
    /// order's algorithm). Some SDKs refuse a notify without it. MD5 orders'
    /// notifies always say `sign_type=MD5`.
    #[arg(long)]
    hmac_notify_sign_type: bool,
    /// Wrap Int fields (total_fee, cash_fee, refund_fee, …) of answers and
    /// notifies in CDATA too. By default they are bare, as in WeChat's
    /// answers; String fields are in CDATA either way, digits or not
    /// (time_end, transaction_id, out_trade_no), and the refund notify's
    /// req_info wraps every value, as WeChat's does.
    #[arg(long)]
    cdata_ints: bool,
    /// The fee rate of the bills, in basis points (60 = 0.60%, at most
    /// 10000): each payment's fee is its amount times the rate, rounded
    /// half up to the fen; a refund gives back its share.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u32).range(0..=10_000))]
    fee_rate_bps: u32,
}

fn parse_mode(s: &str) -> Result<VerifyMode, String> {
    s.parse()
}

fn read(path: &Option<PathBuf>) -> Result<Option<String>, Box<dyn std::error::Error>> {
    match path {
        None => Ok(None),
        Some(p) => std::fs::read_to_string(p)
            .map(Some)
            .map_err(|e| format!("cannot read {}: {e}", p.display()).into()),
    }
}

fn v3_config(args: &Args) -> Result<V3Config, Box<dyn std::error::Error>> {
    let mut v3 = if args.test_keys {
        V3Config::test()
    } else {
        let mut v3 = V3Config::generated();
        v3.mch_public_key_pem = read(&args.mch_public_key)?.or(read(&args.mch_cert)?);
        v3.mch_private_key_pem = read(&args.mch_private_key)?.map(Secret::new);
        v3.mch_serial = args.mch_serial.clone();
        v3.platform_key_pem = read(&args.platform_key)?.map(Secret::new);
        v3.platform_cert_pem = read(&args.platform_cert)?;
        v3.platform_serial = args.platform_serial.clone();
        v3.public_key_private_pem = read(&args.public_key)?.map(Secret::new);
        v3.public_key_id = args.public_key_id.clone();
        v3
    };
    if let Some(k) = &args.apiv3_key {
        v3.apiv3_key = Secret::new(k.clone());
    }
    v3.verify_mode = args.verify_mode;
    v3.keys_dir = args.keys_dir.clone();
    v3.seed = args.seed;
    Ok(v3)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let mut config = SimConfig::test();
    config.v3 = v3_config(&args)?;
    let defaults = args.api_key.is_none() || args.app_secret.is_none();
    if let Some(v) = args.appid {
        config.appid = v;
    }
    if let Some(v) = args.mch_id {
        config.mch_id = v;
    }
    if let Some(v) = args.api_key {
        config.api_key = ApiKey::new(v);
    }
    if let Some(v) = args.app_secret {
        config.app_secret = AppSecret::new(v);
    }
    config.time_scale = args.time_scale;
    config.refund_notify_url = args.refund_notify_url;
    config.refund_delay = Duration::from_millis(args.refund_delay_ms);
    config.state_file = args.state;
    config.hmac_notify_sign_type = args.hmac_notify_sign_type;
    config.cdata_ints = args.cdata_ints;
    config.fee_rate_bps = args.fee_rate_bps;
    let (appid, mch_id, scale) = (
        config.appid.clone(),
        config.mch_id.clone(),
        config.time_scale,
    );
    let sim = match Simulator::start_on(config, args.listen).await {
        Ok(sim) => sim,
        Err(e) => {
            // The whole chain, e.g. "state file x.json: corrupt: …: expected value at line 1".
            let mut msg = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                msg.push_str(": ");
                msg.push_str(&s.to_string());
                src = s.source();
            }
            eprintln!("wxpay-sim: cannot start: {msg}");
            std::process::exit(2);
        }
    };
    println!(
        "wxpay-sim listening on {} (appid {appid}, mch_id {mch_id}, time scale {scale})",
        sim.base_url()
    );
    let v3 = sim.v3_merchant();
    println!(
        "v3: verify mode {:?}, merchant serial {}, platform certificate {}, public key {}",
        v3.verify_mode, v3.mch_serial, v3.platform_serial, v3.public_key_id
    );
    if let Some(dir) = &sim.config().v3.keys_dir {
        println!("v3 keys written to {} (wxpay.env inside)", dir.display());
    }
    if defaults {
        println!("note: API key or AppSecret not given; using the built-in test values");
    }
    if let Some(path) = &sim.config().state_file {
        println!("orders kept in {}", path.display());
    }
    stopped().await;
    println!("stopping");
    sim.shutdown().await;
    Ok(())
}

/// Ctrl-C, or SIGTERM on Unix.
async fn stopped() {
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        let term = async {
            match term.as_mut() {
                Some(t) => {
                    t.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            () = term => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
