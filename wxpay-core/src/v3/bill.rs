//! API v3 bills (spec 12): apply for the trade or fund-flow bill (a
//! signed, verified `GET`), then download the file from the returned
//! `download_url` (a signed `GET` whose answer carries no signature) and
//! check it against `hash_value` while it streams.

use std::fmt;

use chrono::NaiveDate;

use crate::{
    FieldError, HttpMethod, HttpResponse, Transport,
    bill::download::{AccountType, BillDownload, BillError, Compression, TradeBillType},
    error::Error,
};

use super::{
    client::Client,
    error::{ApiError, Endpoint},
};

/// The most of a non-2xx download answer read (an error body is small).
const ERROR_BODY_LIMIT: usize = 64 * 1024;

/// A verified answer to a bill application (spec 12.3): where the file is
/// and the SHA-1 it must have. The `download_url` is short-lived (30 s to
/// 5 min): download at once ([`Client::download_bill_file`]).
///
/// `Debug` leaves out the URL's query (it carries a token).
#[derive(Clone, PartialEq, Eq)]
pub struct BillApplication {
    hash_type: String,
    hash_value: String,
    download_url: String,
    request_id: Option<String>,
}

impl BillApplication {
    /// `hash_type` (always `SHA1`).
    pub fn hash_type(&self) -> &str {
        &self.hash_type
    }

    /// `hash_value`: the SHA-1 of the decompressed bill, hex.
    pub fn hash_value(&self) -> &str {
        &self.hash_value
    }

    /// `download_url`, exactly as WeChat gave it. It carries a token: do
    /// not log it.
    pub fn download_url(&self) -> &str {
        &self.download_url
    }

    /// The `Request-ID` of the application's answer.
    pub fn request_id(&self) -> Option<&str> {
        self.request_id.as_deref()
    }
}

impl fmt::Debug for BillApplication {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let url = match self.download_url.split_once('?') {
            Some((base, _)) => format!("{base}?…"),
            None => self.download_url.clone(),
        };
        f.debug_struct("BillApplication")
            .field("hash_type", &self.hash_type)
            .field("hash_value", &self.hash_value)
            .field("download_url", &url)
            .field("request_id", &self.request_id)
            .finish()
    }
}

#[derive(serde::Deserialize)]
struct ApplyAnswer {
    hash_type: String,
    hash_value: String,
    download_url: String,
}

impl<T: Transport> Client<T> {
    /// `GET /v3/bill/tradebill?bill_date=yyyy-MM-dd&bill_type=…[&tar_type=GZIP]`
    /// (spec 12.1), then the file ([`Client::download_bill_file`]):
    /// the trade bill of `date` (Beijing time), streamed, its SHA-1 checked
    /// at the end. On any error — also while reading — discard what was
    /// read and call this again (a fresh `download_url`).
    ///
    /// # Errors
    /// [`Error::Bill`]: [`BillError::NotReady`] (`STATEMENT_CREATING`;
    /// try later), [`BillError::NoBill`] (`NO_STATEMENT_EXIST`: none that
    /// day), [`BillError::ForeignDownloadUrl`],
    /// [`BillError::UnsupportedHash`]; any call [`Error`] (a verified
    /// [`Error::Api`] for the other codes, [`Error::Unverified`] for a
    /// refused answer, …).
    pub async fn trade_bill(
        &self,
        date: NaiveDate,
        bill_type: TradeBillType,
        compression: Compression,
    ) -> Result<BillDownload, Error> {
        let application = self.apply_trade_bill(date, bill_type, compression).await?;
        self.download_bill_file(&application).await
    }

    /// `GET /v3/bill/fundflowbill?bill_date=yyyy-MM-dd&account_type=…[&tar_type=GZIP]`
    /// (spec 12.2), then the file: the fund-flow bill of `date`, streamed.
    ///
    /// # Errors
    /// As [`Client::trade_bill`].
    pub async fn fund_flow_bill(
        &self,
        date: NaiveDate,
        account_type: AccountType,
        compression: Compression,
    ) -> Result<BillDownload, Error> {
        let application = self
            .apply_fund_flow_bill(date, account_type, compression)
            .await?;
        self.download_bill_file(&application).await
    }

    /// The application of [`Client::trade_bill`] alone: the verified
    /// `{hash_type, hash_value, download_url}`.
    ///
    /// # Errors
    /// As [`Client::trade_bill`].
    pub async fn apply_trade_bill(
        &self,
        date: NaiveDate,
        bill_type: TradeBillType,
        compression: Compression,
    ) -> Result<BillApplication, Error> {
        let path = bill_path(
            "/v3/bill/tradebill",
            date,
            ("bill_type", bill_type.as_str()),
            compression,
        );
        self.apply(Endpoint::TradeBill, path).await
    }

    /// The application of [`Client::fund_flow_bill`] alone.
    ///
    /// # Errors
    /// As [`Client::trade_bill`].
    pub async fn apply_fund_flow_bill(
        &self,
        date: NaiveDate,
        account_type: AccountType,
        compression: Compression,
    ) -> Result<BillApplication, Error> {
        let path = bill_path(
            "/v3/bill/fundflowbill",
            date,
            ("account_type", account_type.as_str()),
            compression,
        );
        self.apply(Endpoint::FundFlowBill, path).await
    }

    pub(super) async fn apply(
        &self,
        endpoint: Endpoint,
        path: String,
    ) -> Result<BillApplication, Error> {
        let answer = match self.call(endpoint, HttpMethod::Get, path, None).await {
            Ok(answer) => answer,
            Err(Error::Api(a)) if a.verified => {
                return Err(match a.code.as_str() {
                    "NO_STATEMENT_EXIST" => BillError::NoBill.into(),
                    // Its status is unconfirmed (spec 12.5): any status.
                    "STATEMENT_CREATING" => BillError::NotReady { detail: a.message }.into(),
                    _ => Error::Api(a),
                });
            }
            Err(e) => return Err(e),
        };
        let answer = answer.parse::<ApplyAnswer>(endpoint)?;
        let request_id = answer.request_id;
        let ApplyAnswer {
            hash_type,
            hash_value,
            download_url,
        } = answer.value;
        if !hash_type.eq_ignore_ascii_case("SHA1") {
            return Err(BillError::UnsupportedHash { hash_type }.into());
        }
        if hash_value.len() != 40 || !hash_value.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(FieldError::new("hash_value", "not a SHA-1 (40 hex digits)").into());
        }
        Ok(BillApplication {
            hash_type,
            hash_value,
            download_url,
            request_id,
        })
    }

    /// Downloads the file of `application`: a signed `GET` of its
    /// `download_url`, the canonical URL being its path and query exactly
    /// as returned (spec 2.2). The URL must be on the configured API host
    /// (same scheme, host and port as the client's `api_base`), else
    /// nothing is sent: a signed `Authorization` never goes to a host the
    /// client was not configured for. The answer carries no Wechatpay
    /// signature and is not verified (spec 12.3): integrity comes from the
    /// SHA-1, which [`BillDownload::next_chunk`] checks at the end.
    ///
    /// # Errors
    /// [`Error::Bill`] with [`BillError::ForeignDownloadUrl`]; for a
    /// non-2xx answer an [`Error::Api`] (verified when the answer is
    /// signed, else unverified) when its body is a v3 error, otherwise
    /// [`Error::Transport`]; [`Error::Transport`] when the exchange fails.
    pub async fn download_bill_file(
        &self,
        application: &BillApplication,
    ) -> Result<BillDownload, Error> {
        let Some(canonical) = same_origin_path(&self.config().api_base, &application.download_url)
        else {
            tracing::warn!(
                api_base = %self.config().api_base,
                "bill download_url is not on the configured API host; not fetched"
            );
            return Err(BillError::ForeignDownloadUrl.into());
        };
        let started = std::time::Instant::now();
        let result = self.fetch(canonical, application).await;
        crate::metrics::upstream(
            "v3",
            crate::metrics::v3_endpoint(Endpoint::BillDownload),
            started,
            &result,
        );
        result
    }

    async fn fetch(
        &self,
        canonical: &str,
        application: &BillApplication,
    ) -> Result<BillDownload, Error> {
        let req = self.signed_request(
            HttpMethod::Get,
            canonical,
            application.download_url.clone(),
            None,
        )?;
        let resp = self
            .transport()
            .send_streaming(req)
            .await
            .map_err(|e| Error::transport("GET of the bill download_url failed", Some(e)))?;
        if (200..300).contains(&resp.status) {
            return Ok(BillDownload::from_body(
                resp.body,
                Some(&application.hash_value),
            ));
        }
        let status = resp.status;
        let body = resp.body.read_to_end(ERROR_BODY_LIMIT).await.map_err(|e| {
            Error::transport(
                format!("bill download answered HTTP {status}; its body broke off"),
                Some(e),
            )
        })?;
        let answer = HttpResponse {
            status,
            headers: resp.headers,
            body,
        };
        if answer.header("Wechatpay-Signature").is_some() {
            // A signed error answer: believed only once verified.
            return match self.classify(Endpoint::BillDownload, &answer, &self.keyring(None)) {
                Ok(_) => Err(Error::transport(
                    format!("bill download answered HTTP {status}"),
                    None,
                )),
                Err(e) => Err(e),
            };
        }
        let request_id = answer.header("Request-ID").map(str::to_owned);
        let e = ApiError::from_answer(
            Endpoint::BillDownload,
            status,
            &answer.body,
            request_id,
            false,
        );
        if e.code.is_empty() {
            return Err(Error::transport(
                format!("bill download answered HTTP {status}"),
                None,
            ));
        }
        Err(e.into())
    }
}

/// `path?bill_date=…&{kind}=…[&tar_type=GZIP]`, the vectors' order.
fn bill_path(path: &str, date: NaiveDate, kind: (&str, &str), compression: Compression) -> String {
    bill_path_for(path, date, kind, None, compression)
}

/// [`bill_path`] with `&sub_mchid=…` before `tar_type` (partner mode,
/// spec 15.2; the parameters stay in alphabetical order).
pub(super) fn bill_path_for(
    path: &str,
    date: NaiveDate,
    (name, value): (&str, &str),
    sub_mchid: Option<&str>,
    compression: Compression,
) -> String {
    let mut path = format!(
        "{path}?bill_date={}&{name}={value}",
        date.format("%Y-%m-%d")
    );
    if let Some(sub_mchid) = sub_mchid {
        path.push_str("&sub_mchid=");
        path.push_str(&crate::client::percent_escape(sub_mchid));
    }
    if let Some(tar_type) = compression.tar_type() {
        path.push_str("&tar_type=");
        path.push_str(tar_type);
    }
    path
}

/// The scheme, host (lower case) and port of an absolute `http`/`https`
/// URL, and the rest (path and query, without fragment). `None` for
/// anything this strict reading is not sure of (user info, backslashes,
/// spaces, non-ASCII, an odd host or port), so that it can never agree on
/// a host that an HTTP client would read differently.
fn split_url(url: &str) -> Option<((String, String, u16), &str)> {
    if !url.bytes().all(|b| b.is_ascii_graphic()) || url.contains('\\') {
        return None;
    }
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    if authority.contains('@') {
        return None;
    }
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (host, after) = v6.split_once(']')?;
            if host.is_empty()
                || !host
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
            {
                return None;
            }
            (format!("[{}]", host.to_ascii_lowercase()), after)
        }
        None => {
            let (host, after) = match authority.find(':') {
                Some(i) => authority.split_at(i),
                None => (authority, ""),
            };
            if host.is_empty()
                || !host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
            {
                return None;
            }
            (host.to_ascii_lowercase(), after)
        }
    };
    let port = match port.strip_prefix(':') {
        None if port.is_empty() => default_port,
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => p.parse().ok()?,
        _ => return None,
    };
    let tail = tail.split_once('#').map_or(tail, |(t, _)| t);
    Some(((scheme, host, port), tail))
}

/// The canonical URL (path and query) of `url` when it has the origin of
/// `base`; `None` otherwise.
fn same_origin_path<'a>(base: &str, url: &'a str) -> Option<&'a str> {
    let (base_origin, _) = split_url(base)?;
    let (origin, tail) = split_url(url)?;
    (origin == base_origin && tail.starts_with('/')).then_some(tail)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "https://api.mch.weixin.qq.com";

    #[test]
    fn paths_follow_the_vectors() {
        let date = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
        assert_eq!(
            bill_path(
                "/v3/bill/tradebill",
                date,
                ("bill_type", "ALL"),
                Compression::Gzip
            ),
            "/v3/bill/tradebill?bill_date=2026-01-01&bill_type=ALL&tar_type=GZIP"
        );
        assert_eq!(
            bill_path(
                "/v3/bill/fundflowbill",
                date,
                ("account_type", "BASIC"),
                Compression::Plain
            ),
            "/v3/bill/fundflowbill?bill_date=2026-01-01&account_type=BASIC"
        );
    }

    #[test]
    fn download_urls_on_the_configured_host_only() {
        let ok = |url| same_origin_path(BASE, url);
        assert_eq!(
            ok("https://api.mch.weixin.qq.com/v3/billdownload/file?token=T&tartype=gzip"),
            Some("/v3/billdownload/file?token=T&tartype=gzip")
        );
        assert_eq!(
            ok("HTTPS://API.mch.weixin.qq.com:443/v3/x?a=1#frag"),
            Some("/v3/x?a=1")
        );
        for foreign in [
            "https://api2.mch.weixin.qq.com/v3/billdownload/file?token=T",
            "http://api.mch.weixin.qq.com/v3/billdownload/file?token=T",
            "https://api.mch.weixin.qq.com:8443/v3/billdownload/file",
            "https://api.mch.weixin.qq.com.evil.example/v3/billdownload/file",
            "https://api.mch.weixin.qq.com@evil.example/v3/billdownload/file",
            "https://evil.example\\@api.mch.weixin.qq.com/v3/",
            "https://evil.example/@api.mch.weixin.qq.com/v3/",
            "https://api.mch.weixin.qq.com?token=T",
            "https://api.mch.weixin.qq.com:/v3/x",
            "https://api.mch.weixin.qq.com /v3/x",
            "//api.mch.weixin.qq.com/v3/x",
            "/v3/billdownload/file?token=T",
            "ftp://api.mch.weixin.qq.com/v3/x",
            "",
        ] {
            assert_eq!(ok(foreign), None, "{foreign}");
        }
        assert_eq!(
            same_origin_path(
                "http://127.0.0.1:8080",
                "http://127.0.0.1:8080/v3/billdownload/file?token=T"
            ),
            Some("/v3/billdownload/file?token=T")
        );
        assert_eq!(
            same_origin_path(
                "http://127.0.0.1:8080",
                "http://127.0.0.1:8081/v3/billdownload/file"
            ),
            None
        );
        assert_eq!(
            same_origin_path("http://[::1]:8080", "http://[::1]:8080/v3/b?t=1"),
            Some("/v3/b?t=1")
        );
        assert_eq!(
            same_origin_path("not a url", "https://api.mch.weixin.qq.com/v3/x"),
            None
        );
    }

    #[test]
    fn debug_hides_the_token() {
        let a = BillApplication {
            hash_type: "SHA1".into(),
            hash_value: "9e1118d7d571107f7bcfa73abfafa95373749f11".into(),
            download_url: "https://api.mch.weixin.qq.com/v3/billdownload/file?token=SECRET".into(),
            request_id: None,
        };
        let debug = format!("{a:?}");
        assert!(!debug.contains("SECRET"), "{debug}");
        assert!(debug.contains("/v3/billdownload/file?…"), "{debug}");
    }
}
