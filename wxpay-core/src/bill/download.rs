//! Bill downloads: what the clients' bill calls return, and the gzip +
//! SHA-1 pipeline the bytes go through on their way to the parser.
//!
//! - [`Client::download_bill`](crate::Client::download_bill) (v2
//!   `POST /pay/downloadbill`),
//!   [`v3::Client::trade_bill`](crate::v3::Client::trade_bill) and
//!   [`v3::Client::fund_flow_bill`](crate::v3::Client::fund_flow_bill)
//!   return a [`BillDownload`]: the body still on the wire, pulled with
//!   [`BillDownload::next_chunk`], which yields **decompressed** bytes (at
//!   most [`MAX_CHUNK`] at a time, so a gzip bomb cannot blow up memory)
//!   and, once the body is exhausted, does the final checks — the gzip
//!   trailer (CRC-32 and length) and, for v3, the SHA-1 against
//!   `hash_value` (spec v3 12.3). Nothing is buffered whole: the caller does
//!   its own work (store look-ups, writes) between chunks.
//! - [`BillDecoder`] is that decoding stage alone, for bytes already held.
//!
//! **On any error the bytes already returned must be discarded**: the bill
//! is incomplete or corrupt. Apply again (v3: a fresh `download_url`).
//!
//! Gzip is recognised by its magic bytes `1f 8b`, not only by what was
//! asked for: a plain bill is text and never begins with the control
//! character `0x1f`, so a body that begins with it is gunzipped, and one
//! that begins with `0x1f` but is not a valid gzip stream is refused.
//!
//! ```
//! use wxpay_core::bill::download::{BillDecoder, BillError};
//!
//! let bill = "交易时间,公众账号ID\r\n`2026-01-01 12:01:30,`wx1\r\n";
//! let mut decoder = BillDecoder::new();
//! let mut text = decoder.push(&bill.as_bytes()[..7])?;
//! text.extend(decoder.push(&bill.as_bytes()[7..])?);
//! assert_eq!(text, bill.as_bytes());
//! let summary = decoder.finish(None)?;
//! assert_eq!((summary.bytes, summary.gzip, summary.hash_checked), (bill.len() as u64, false, false));
//!
//! // v3: the hash WeChat gave is checked at the end.
//! let mut decoder = BillDecoder::new();
//! decoder.push(bill.as_bytes())?;
//! let wrong = "0000000000000000000000000000000000000000";
//! assert!(matches!(decoder.finish(Some(wrong)), Err(BillError::HashMismatch { .. })));
//! # Ok::<(), BillError>(())
//! ```

use std::{fmt, io};

use aws_lc_rs::digest;
use flate2::{Crc, Decompress, FlushDecompress, Status};

use crate::{BodyStream, Error, Params};

/// The most decompressed bytes one [`BillDownload::next_chunk`] returns
/// (64 KiB).
pub const MAX_CHUNK: usize = 64 * 1024;

/// How much of a v2 answer is read, at most, before deciding whether it is
/// a bill or an XML error (4 KiB): an error answer is small and starts with
/// `<xml>` after optional whitespace or BOM.
pub const SNIFF_LIMIT: usize = 4 * 1024;

/// The largest XML error answer read (64 KiB); a larger one is refused.
const XML_LIMIT: usize = 64 * 1024;

/// Which trade bill (`bill_type`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TradeBillType {
    /// `ALL`: every order of the day (v3: except recharge refunds).
    #[default]
    All,
    /// `SUCCESS`: paid orders.
    Success,
    /// `REFUND`: refunds.
    Refund,
    /// `RECHARGE_REFUND`: recharge-coupon refunds.
    RechargeRefund,
}

impl TradeBillType {
    /// The wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            TradeBillType::All => "ALL",
            TradeBillType::Success => "SUCCESS",
            TradeBillType::Refund => "REFUND",
            TradeBillType::RechargeRefund => "RECHARGE_REFUND",
        }
    }
}

/// Which fund account's flow bill (v3 `account_type`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AccountType {
    /// `BASIC`: the basic account.
    #[default]
    Basic,
    /// `OPERATION`: the operation account.
    Operation,
    /// `FEES`: the fees account.
    Fees,
}

impl AccountType {
    /// The wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            AccountType::Basic => "BASIC",
            AccountType::Operation => "OPERATION",
            AccountType::Fees => "FEES",
        }
    }
}

/// How the bill is asked for (`tar_type`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Compression {
    /// No `tar_type`: the file comes as plain text.
    Plain,
    /// `tar_type=GZIP`: the file comes gzip-compressed (much smaller on
    /// the wire; decompressed on the fly).
    #[default]
    Gzip,
}

impl Compression {
    /// The `tar_type` value: `GZIP`, or empty for [`Compression::Plain`]
    /// (the parameter is left out).
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::Plain => "",
            Compression::Gzip => "GZIP",
        }
    }

    /// The `tar_type` parameter to send, if any.
    pub fn tar_type(self) -> Option<&'static str> {
        match self {
            Compression::Plain => None,
            Compression::Gzip => Some("GZIP"),
        }
    }
}

/// What a finished download came to.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Downloaded {
    /// Decompressed bytes (what the bill is).
    pub bytes: u64,
    /// SHA-1 of the decompressed bytes, lower-case hex.
    pub sha1: String,
    /// Whether [`sha1`](Downloaded::sha1) was compared with a hash WeChat
    /// gave (v3 `hash_value`: always; v2 has no hash: never).
    pub hash_checked: bool,
    /// Whether the body was gzip (recognised by its magic bytes).
    pub gzip: bool,
}

/// Why a bill could not be had.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BillError {
    /// The bill is not generated yet (v2 `Bill Creating`, v3
    /// `STATEMENT_CREATING`): try again later (bills are ready after 10:00
    /// the next day, Beijing time).
    #[error("the bill is not ready yet: {detail}")]
    NotReady {
        /// WeChat's words.
        detail: String,
    },
    /// There is no bill for that day (v2 `No Bill Exist`, v3
    /// `NO_STATEMENT_EXIST`): no trades, or no flows in that account. Do
    /// not retry.
    #[error("no bill exists for that day")]
    NoBill,
    /// The SHA-1 of the decompressed bill differs from WeChat's
    /// `hash_value`: discard what was read and apply again.
    #[error("bill hash mismatch: WeChat says {expected}, the bytes are {actual}")]
    HashMismatch {
        /// WeChat's `hash_value`.
        expected: String,
        /// The SHA-1 of the bytes received (lower-case hex).
        actual: String,
    },
    /// The body is not a valid gzip stream, or it ends before the stream does.
    #[error("the bill's gzip stream is corrupt or truncated")]
    Gzip(#[source] io::Error),
    /// The v3 `download_url` is not on the configured API host (scheme,
    /// host and port of the client's base URL): it was not fetched, so no
    /// signed request went to a host the client was not configured for.
    #[error("the bill download_url is not on the configured API host; refused")]
    ForeignDownloadUrl,
    /// The v3 answer names a hash other than `SHA1`.
    #[error("unsupported bill hash_type {hash_type:?}")]
    UnsupportedHash {
        /// The `hash_type` given.
        hash_type: String,
    },
    /// This gateway cannot download bills.
    #[error("this gateway cannot download bills")]
    Unsupported,
    /// [`BillDownload::next_chunk`] was called again after it failed.
    #[error("the bill download failed earlier; discard it and apply again")]
    Aborted,
}

impl BillError {
    /// Whether asking again may succeed: not ready yet, a hash mismatch, a
    /// corrupt gzip stream (spec v3 12.3: discard and apply again). Not
    /// for "no bill" or a refused URL.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            BillError::NotReady { .. } | BillError::HashMismatch { .. } | BillError::Gzip(_)
        )
    }

    /// The metrics label (a fixed word).
    pub(crate) fn label(&self) -> &'static str {
        match self {
            BillError::NotReady { .. } => "bill_not_ready",
            BillError::NoBill => "no_bill",
            BillError::HashMismatch { .. } => "bill_hash_mismatch",
            BillError::Gzip(_) => "bill_gzip",
            BillError::ForeignDownloadUrl => "bill_foreign_download_url",
            BillError::UnsupportedHash { .. } => "bill_unsupported_hash",
            BillError::Unsupported => "bill_unsupported",
            BillError::Aborted => "bill_aborted",
        }
    }
}

fn gzip_error(kind: io::ErrorKind, message: &'static str) -> BillError {
    BillError::Gzip(io::Error::new(kind, message))
}

/// The decoding stage of a bill download on its own: recognises gzip by
/// its magic bytes and gunzips it (several members in a row are read as
/// one file, like `gunzip` does), and hashes the decompressed bytes with
/// SHA-1. Push the body in pieces of any size, then [`finish`](BillDecoder::finish).
///
/// Memory is bounded whatever the input: a few bytes of gzip header or
/// trailer being collected ([`buffered`](BillDecoder::buffered)), the
/// inflater's fixed 32 KiB window and a 32 KiB scratch buffer; output goes
/// only where you ask ([`push_into`](BillDecoder::push_into) with a limit).
pub struct BillDecoder {
    format: Format,
    sha1: digest::Context,
    bytes: u64,
}

enum Format {
    /// No byte seen yet.
    Unknown,
    Plain,
    Gzip(Box<Gunzip>),
}

impl Default for BillDecoder {
    fn default() -> Self {
        BillDecoder::new()
    }
}

impl fmt::Debug for BillDecoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BillDecoder")
            .field("gzip", &self.is_gzip())
            .field("bytes", &self.bytes)
            .finish_non_exhaustive()
    }
}

impl BillDecoder {
    /// A decoder before the first byte.
    pub fn new() -> BillDecoder {
        BillDecoder {
            format: Format::Unknown,
            sha1: digest::Context::new(&digest::SHA1_FOR_LEGACY_USE_ONLY),
            bytes: 0,
        }
    }

    /// Decodes all of `input` (a piece of the body as received) and
    /// returns the decompressed bytes it gave. The output of one call is
    /// not bounded (a small gzip piece can inflate a lot): for bounded
    /// output use [`push_into`](BillDecoder::push_into).
    ///
    /// # Errors
    /// [`BillError::Gzip`] for a corrupt gzip stream (bad header, bad
    /// deflate data, CRC or length mismatch, data after the end).
    pub fn push(&mut self, input: &[u8]) -> Result<Vec<u8>, BillError> {
        let mut out = Vec::new();
        let mut pos = 0;
        loop {
            let before = out.len();
            pos += self.push_into(&input[pos..], &mut out, MAX_CHUNK)?;
            if pos == input.len() && out.len() == before {
                return Ok(out);
            }
        }
    }

    /// Decodes from `input` until it is used up or `max_out` decompressed
    /// bytes were appended to `out`, and returns how many bytes of `input`
    /// were used. Call it again with the rest of `input`; once all input
    /// is used, call it with an empty `input` until it appends nothing (the
    /// inflater may still hold output that did not fit) before
    /// [`finish`](BillDecoder::finish).
    ///
    /// # Errors
    /// As [`push`](BillDecoder::push).
    pub fn push_into(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        max_out: usize,
    ) -> Result<usize, BillError> {
        let start = out.len();
        let mut pos = 0;
        let result = loop {
            let room = max_out.saturating_sub(out.len() - start);
            if room == 0 {
                break Ok(());
            }
            match &mut self.format {
                Format::Unknown => {
                    let Some(&first) = input.get(pos) else {
                        break Ok(());
                    };
                    self.format = if first == 0x1f {
                        Format::Gzip(Box::new(Gunzip::new()))
                    } else {
                        Format::Plain
                    };
                }
                Format::Plain => {
                    let n = room.min(input.len() - pos);
                    if n == 0 {
                        break Ok(());
                    }
                    out.extend_from_slice(&input[pos..pos + n]);
                    pos += n;
                }
                Format::Gzip(g) => match g.step(&input[pos..], out, room) {
                    Ok(Some(used)) => pos += used,
                    Ok(None) => break Ok(()),
                    Err(e) => break Err(e),
                },
            }
        };
        let produced = &out[start..];
        self.sha1.update(produced);
        self.bytes += produced.len() as u64;
        result.map(|()| pos)
    }

    /// Decompressed bytes so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Whether the body is gzip; `None` before its first byte.
    pub fn is_gzip(&self) -> Option<bool> {
        match self.format {
            Format::Unknown => None,
            Format::Plain => Some(false),
            Format::Gzip(_) => Some(true),
        }
    }

    /// Input bytes held inside the decoder, not yet decoded: at most 10 (a
    /// gzip header or trailer being collected).
    pub fn buffered(&self) -> usize {
        match &self.format {
            Format::Gzip(g) => g.held,
            _ => 0,
        }
    }

    /// Ends the body: checks that a gzip stream is complete, then compares
    /// the SHA-1 of the decompressed bytes with `expected_sha1` (hex, any
    /// case) when given.
    ///
    /// # Errors
    /// [`BillError::Gzip`] for a gzip stream cut short;
    /// [`BillError::HashMismatch`] when the hash differs.
    pub fn finish(self, expected_sha1: Option<&str>) -> Result<Downloaded, BillError> {
        let gzip = match &self.format {
            Format::Unknown | Format::Plain => false,
            Format::Gzip(g) if g.stage == Stage::End => true,
            Format::Gzip(_) => {
                return Err(gzip_error(
                    io::ErrorKind::UnexpectedEof,
                    "the gzip stream ends early",
                ));
            }
        };
        let sha1 = hex(self.sha1.finish().as_ref());
        if let Some(expected) = expected_sha1
            && !expected.eq_ignore_ascii_case(&sha1)
        {
            return Err(BillError::HashMismatch {
                expected: expected.to_owned(),
                actual: sha1,
            });
        }
        Ok(Downloaded {
            bytes: self.bytes,
            sha1,
            hash_checked: expected_sha1.is_some(),
            gzip,
        })
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// Gzip member layout (RFC 1952): a 10-byte header (magic 1f 8b, method 8,
// flags, mtime, xfl, os), optional fields by flag, raw deflate data, then
// CRC-32 and length mod 2^32, little-endian.
const FHCRC: u8 = 0x02;
const FEXTRA: u8 = 0x04;
const FNAME: u8 = 0x08;
const FCOMMENT: u8 = 0x10;
const FRESERVED: u8 = 0xe0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Header,
    ExtraLen,
    Extra,
    Name,
    Comment,
    HeaderCrc,
    Body,
    Trailer,
    /// A member ended: the body may end here, or another member follows.
    End,
}

struct Gunzip {
    stage: Stage,
    flags: u8,
    /// Header, `XLEN`, header CRC or trailer bytes being collected.
    buf: [u8; 10],
    held: usize,
    /// `FEXTRA` bytes still to skip.
    skip: usize,
    inflate: Decompress,
    crc: Crc,
    /// The last inflate filled its output: it may hold more.
    more: bool,
    /// Where the inflater writes (copied out at once), allocated once.
    scratch: Box<[u8]>,
}

/// The size of [`Gunzip::scratch`].
const SCRATCH: usize = 32 * 1024;

impl Gunzip {
    fn new() -> Gunzip {
        Gunzip {
            stage: Stage::Header,
            flags: 0,
            buf: [0; 10],
            held: 0,
            skip: 0,
            inflate: Decompress::new(false),
            crc: Crc::new(),
            more: false,
            scratch: vec![0; SCRATCH].into_boxed_slice(),
        }
    }

    /// Collects up to `want` bytes into `buf`; `true` once complete.
    fn collect(&mut self, input: &[u8], want: usize, used: &mut usize) -> bool {
        let n = (want - self.held).min(input.len());
        self.buf[self.held..self.held + n].copy_from_slice(&input[..n]);
        self.held += n;
        *used = n;
        if self.held == want {
            self.held = 0;
            true
        } else {
            false
        }
    }

    /// The stage after `done`, by the header flags.
    fn after(&self, done: Stage) -> Stage {
        let order = [
            (Stage::ExtraLen, FEXTRA),
            (Stage::Name, FNAME),
            (Stage::Comment, FCOMMENT),
            (Stage::HeaderCrc, FHCRC),
        ];
        let from = match done {
            Stage::Header => 0,
            Stage::Extra => 1,
            Stage::Name => 2,
            Stage::Comment => 3,
            _ => 4,
        };
        order[from..]
            .iter()
            .find(|(_, flag)| self.flags & flag != 0)
            .map_or(Stage::Body, |(stage, _)| *stage)
    }

    /// One step: `Some(bytes of input used)` when it made progress (used
    /// input, produced output or moved on), `None` when it needs more input.
    fn step(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        room: usize,
    ) -> Result<Option<usize>, BillError> {
        let mut used = 0;
        match self.stage {
            Stage::Body => return self.inflate(input, out, room),
            _ if input.is_empty() => return Ok(None),
            Stage::Header => {
                if self.collect(input, 10, &mut used) {
                    let h = self.buf;
                    if h[0] != 0x1f || h[1] != 0x8b {
                        return Err(gzip_error(
                            io::ErrorKind::InvalidData,
                            "not a gzip stream (bad magic bytes)",
                        ));
                    }
                    if h[2] != 8 {
                        return Err(gzip_error(
                            io::ErrorKind::InvalidData,
                            "gzip compression method is not deflate",
                        ));
                    }
                    if h[3] & FRESERVED != 0 {
                        return Err(gzip_error(
                            io::ErrorKind::InvalidData,
                            "gzip header sets reserved flags",
                        ));
                    }
                    self.flags = h[3];
                    self.stage = self.after(Stage::Header);
                }
            }
            Stage::ExtraLen => {
                if self.collect(input, 2, &mut used) {
                    self.skip = usize::from(u16::from_le_bytes([self.buf[0], self.buf[1]]));
                    self.stage = if self.skip == 0 {
                        self.after(Stage::Extra)
                    } else {
                        Stage::Extra
                    };
                }
            }
            Stage::Extra => {
                used = self.skip.min(input.len());
                self.skip -= used;
                if self.skip == 0 {
                    self.stage = self.after(Stage::Extra);
                }
            }
            Stage::Name | Stage::Comment => match input.iter().position(|&b| b == 0) {
                Some(i) => {
                    used = i + 1;
                    self.stage = self.after(self.stage);
                }
                None => used = input.len(),
            },
            Stage::HeaderCrc => {
                if self.collect(input, 2, &mut used) {
                    self.stage = Stage::Body;
                }
            }
            Stage::Trailer => {
                if self.collect(input, 8, &mut used) {
                    let b = self.buf;
                    let crc = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                    let size = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
                    if crc != self.crc.sum() {
                        return Err(gzip_error(
                            io::ErrorKind::InvalidData,
                            "gzip CRC-32 mismatch",
                        ));
                    }
                    if size != self.crc.amount() {
                        return Err(gzip_error(
                            io::ErrorKind::InvalidData,
                            "gzip length mismatch",
                        ));
                    }
                    self.stage = Stage::End;
                }
            }
            Stage::End => {
                // Another member follows (its header is checked as usual).
                self.inflate.reset(false);
                self.crc.reset();
                self.stage = Stage::Header;
            }
        }
        Ok(Some(used))
    }

    fn inflate(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        room: usize,
    ) -> Result<Option<usize>, BillError> {
        if input.is_empty() && !self.more {
            return Ok(None);
        }
        let (in_before, out_before) = (self.inflate.total_in(), self.inflate.total_out());
        let room = room.min(self.scratch.len());
        let status = self
            .inflate
            .decompress(input, &mut self.scratch[..room], FlushDecompress::None)
            .map_err(|e| BillError::Gzip(io::Error::new(io::ErrorKind::InvalidData, e)))?;
        let made = usize::try_from(self.inflate.total_out() - out_before).unwrap_or(usize::MAX);
        let used = usize::try_from(self.inflate.total_in() - in_before).unwrap_or(usize::MAX);
        let produced = &self.scratch[..made.min(room)];
        self.crc.update(produced);
        out.extend_from_slice(produced);
        self.more = made == room;
        if status == Status::StreamEnd {
            self.stage = Stage::Trailer;
            self.more = false;
            return Ok(Some(used));
        }
        Ok((used > 0 || made > 0).then_some(used))
    }
}

/// A bill being downloaded: the body still on the wire, pulled one chunk
/// at a time with [`next_chunk`](BillDownload::next_chunk), which yields
/// the **decompressed** bytes (at most [`MAX_CHUNK`] per call) and, at the
/// end, checks the gzip trailer and WeChat's hash (v3).
///
/// **On any error, discard every byte already returned** (the bill is
/// incomplete or corrupt) and apply again; later calls give
/// [`BillError::Aborted`].
///
/// ```
/// use wxpay_core::{BodyStream, bill::download::BillDownload};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), wxpay_core::Error> {
/// let body = BodyStream::from_chunks([b"line 1\r\n".to_vec(), b"line 2\r\n".to_vec()]);
/// let mut download = BillDownload::from_body(body, Some("3bf1c4cb2a1e3b0ea56d3c6d0e2ea8d0c2a4ab2e"));
/// let mut bill = Vec::new();
/// let end = loop {
///     match download.next_chunk().await {
///         Ok(Some(chunk)) => bill.extend(chunk), // or: parse, store, …
///         Ok(None) => break Ok(()),
///         Err(e) => break Err(e), // discard `bill`: the hash did not match here
///     }
/// };
/// assert!(end.unwrap_err().to_string().contains("hash mismatch"));
/// # Ok(()) }
/// ```
pub struct BillDownload {
    body: BodyStream,
    decoder: Option<BillDecoder>,
    pending: Vec<u8>,
    pos: usize,
    expected_sha1: Option<String>,
    summary: Option<Downloaded>,
    failed: bool,
}

impl fmt::Debug for BillDownload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BillDownload")
            .field("expected_sha1", &self.expected_sha1)
            .field("summary", &self.summary)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl BillDownload {
    /// A download of `body`; `expected_sha1` is WeChat's hash of the
    /// decompressed bill (v3 `hash_value`), checked at the end.
    pub fn from_body(body: BodyStream, expected_sha1: Option<&str>) -> BillDownload {
        BillDownload::with_prefix(body, Vec::new(), expected_sha1.map(str::to_owned))
    }

    /// A download whose first bytes (`prefix`) were already read off `body`.
    pub(crate) fn with_prefix(
        body: BodyStream,
        prefix: Vec<u8>,
        expected_sha1: Option<String>,
    ) -> BillDownload {
        BillDownload {
            body,
            decoder: Some(BillDecoder::new()),
            pending: prefix,
            pos: 0,
            expected_sha1,
            summary: None,
            failed: false,
        }
    }

    /// The next decompressed bytes (at most [`MAX_CHUNK`], never empty);
    /// `Ok(None)` once the body is complete and checked — then
    /// [`summary`](BillDownload::summary) is set.
    ///
    /// # Errors
    /// [`Error::Transport`] when the body cannot be read to its end;
    /// [`Error::Bill`] with [`BillError::Gzip`] for a corrupt or truncated
    /// gzip stream, [`BillError::HashMismatch`] when the hash differs (only
    /// known at the end: instead of `Ok(None)`). After an error, discard
    /// the bytes already returned.
    pub async fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, Error> {
        if self.failed {
            return Err(BillError::Aborted.into());
        }
        loop {
            let Some(decoder) = self.decoder.as_mut() else {
                return Ok(None);
            };
            let mut out = Vec::new();
            let used = match decoder.push_into(&self.pending[self.pos..], &mut out, MAX_CHUNK) {
                Ok(used) => used,
                Err(e) => return Err(self.fail(e.into())),
            };
            self.pos += used;
            if self.pos == self.pending.len() {
                // Free the transport's chunk as soon as it is decoded.
                self.pending = Vec::new();
                self.pos = 0;
            }
            if !out.is_empty() {
                return Ok(Some(out));
            }
            if self.pos < self.pending.len() {
                if used == 0 {
                    let e =
                        gzip_error(io::ErrorKind::InvalidData, "gzip decoding made no progress");
                    return Err(self.fail(e.into()));
                }
                continue;
            }
            match self.body.next_chunk().await {
                Ok(Some(chunk)) => {
                    self.pending = chunk;
                    self.pos = 0;
                }
                Ok(None) => {
                    let decoder = self.decoder.take().expect("checked above");
                    return match decoder.finish(self.expected_sha1.as_deref()) {
                        Ok(summary) => {
                            self.summary = Some(summary);
                            Ok(None)
                        }
                        Err(e) => Err(self.fail(e.into())),
                    };
                }
                Err(e) => {
                    let e = Error::transport("the bill download broke off: incomplete", Some(e));
                    return Err(self.fail(e));
                }
            }
        }
    }

    fn fail(&mut self, e: Error) -> Error {
        self.failed = true;
        self.decoder = None;
        self.pending = Vec::new();
        self.pos = 0;
        if let Error::Bill(BillError::HashMismatch { .. }) = &e {
            tracing::warn!(error = %e, "bill download refused");
        }
        e
    }

    /// Reads the whole bill into memory (for small bills and tests): the
    /// decompressed bytes and the summary.
    ///
    /// # Errors
    /// As [`next_chunk`](BillDownload::next_chunk), and
    /// [`Error::Transport`] when the bill is longer than `limit` bytes.
    pub async fn read_to_end(mut self, limit: usize) -> Result<(Vec<u8>, Downloaded), Error> {
        let mut bill = Vec::new();
        while let Some(chunk) = self.next_chunk().await? {
            if bill.len() + chunk.len() > limit {
                return Err(Error::transport(
                    format!("the bill is longer than {limit} bytes"),
                    None,
                ));
            }
            bill.extend_from_slice(&chunk);
        }
        let summary = self.summary.take().expect("set when next_chunk ends");
        Ok((bill, summary))
    }

    /// The summary, once [`next_chunk`](BillDownload::next_chunk) gave
    /// `Ok(None)`.
    pub fn summary(&self) -> Option<&Downloaded> {
        self.summary.as_ref()
    }

    /// The summary, once finished.
    pub fn into_summary(self) -> Option<Downloaded> {
        self.summary
    }

    /// The hash the bill must have (v3 `hash_value`; `None` for v2).
    pub fn expected_sha1(&self) -> Option<&str> {
        self.expected_sha1.as_deref()
    }

    /// Decompressed bytes returned so far.
    pub fn bytes(&self) -> u64 {
        match (&self.decoder, &self.summary) {
            (Some(d), _) => d.bytes(),
            (None, Some(s)) => s.bytes,
            (None, None) => 0,
        }
    }

    /// Bytes received and not yet decoded: the rest of one transport chunk
    /// (for v2, the first one may be the ≤ [`SNIFF_LIMIT`] bytes read to
    /// tell a bill from an error) plus [`BillDecoder::buffered`].
    pub fn buffered(&self) -> usize {
        self.pending.len() - self.pos + self.decoder.as_ref().map_or(0, BillDecoder::buffered)
    }
}

/// What the first bytes of a v2 `downloadbill` answer say.
#[derive(Debug, PartialEq, Eq)]
enum Sniff {
    Bill,
    Xml,
    Undecided,
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

fn sniff(bytes: &[u8]) -> Sniff {
    if bytes.len() < BOM.len() && BOM.starts_with(bytes) {
        return Sniff::Undecided;
    }
    let rest = bytes.strip_prefix(BOM).unwrap_or(bytes).trim_ascii_start();
    let n = rest.len().min(5);
    if rest.is_empty() {
        Sniff::Undecided
    } else if !rest[..n].eq_ignore_ascii_case(&b"<xml>"[..n]) {
        Sniff::Bill
    } else if n == 5 {
        Sniff::Xml
    } else {
        Sniff::Undecided
    }
}

/// A v2 `downloadbill` answer body, told apart: a bill (with the bytes
/// already read), or the whole XML error answer.
pub(crate) enum V2Answer {
    Bill(Vec<u8>),
    Xml(Vec<u8>),
}

/// Reads as little of `body` as tells a bill from an XML error answer
/// (`<xml>` after optional whitespace or BOM), at most [`SNIFF_LIMIT`]
/// bytes beyond the first chunk; an XML answer is then read whole.
pub(crate) async fn sniff_v2(body: &mut BodyStream) -> Result<V2Answer, Error> {
    let broke = |e| Error::transport("POST /pay/downloadbill: the answer broke off", Some(e));
    let mut head = Vec::new();
    loop {
        match sniff(&head) {
            Sniff::Bill => return Ok(V2Answer::Bill(head)),
            Sniff::Xml => break,
            Sniff::Undecided if head.len() >= SNIFF_LIMIT => return Ok(V2Answer::Bill(head)),
            Sniff::Undecided => {}
        }
        match body.next_chunk().await.map_err(broke)? {
            Some(chunk) => head.extend_from_slice(&chunk),
            // Too short to be `<xml>`: a (tiny) bill.
            None => return Ok(V2Answer::Bill(head)),
        }
    }
    while let Some(chunk) = body.next_chunk().await.map_err(broke)? {
        if head.len() + chunk.len() > XML_LIMIT {
            return Err(Error::transport(
                format!("POST /pay/downloadbill answered XML longer than {XML_LIMIT} bytes"),
                None,
            ));
        }
        head.extend_from_slice(&chunk);
    }
    Ok(V2Answer::Xml(head))
}

/// The error a v2 `downloadbill` XML answer stands for.
pub(crate) fn v2_failure(answer: &Params) -> Error {
    if answer.get("return_code") != Some("FAIL") {
        return Error::transport(
            "POST /pay/downloadbill answered XML without return_code=FAIL: outcome unknown",
            None,
        );
    }
    let return_msg = answer.get("return_msg").unwrap_or("").trim();
    if return_msg.eq_ignore_ascii_case("Bill Creating") {
        BillError::NotReady {
            detail: return_msg.to_owned(),
        }
        .into()
    } else if return_msg.eq_ignore_ascii_case("No Bill Exist") {
        BillError::NoBill.into()
    } else {
        Error::Protocol {
            return_msg: return_msg.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn decode_in_pieces(body: &[u8], piece: usize) -> Result<(Vec<u8>, Downloaded), BillError> {
        let mut d = BillDecoder::new();
        let mut out = Vec::new();
        for p in body.chunks(piece) {
            out.extend(d.push(p)?);
        }
        Ok((out, d.finish(None)?))
    }

    #[test]
    fn wire_values() {
        assert_eq!(TradeBillType::RechargeRefund.as_str(), "RECHARGE_REFUND");
        assert_eq!(TradeBillType::default().as_str(), "ALL");
        assert_eq!(AccountType::Fees.as_str(), "FEES");
        assert_eq!(AccountType::default().as_str(), "BASIC");
        assert_eq!(Compression::Gzip.tar_type(), Some("GZIP"));
        assert_eq!(Compression::Plain.tar_type(), None);
        assert_eq!(Compression::Plain.as_str(), "");
    }

    #[test]
    fn gzip_split_anywhere_gives_the_same_bytes_and_hash() {
        let text: Vec<u8> = (0..5000u32)
            .flat_map(|i| format!("`{i},`row {i}\r\n").into_bytes())
            .collect();
        let gz = gzip(&text);
        let (plain, plain_sum) = decode_in_pieces(&text, 4096).unwrap();
        assert_eq!(plain, text);
        assert!(!plain_sum.gzip);
        for piece in [1, 2, 9, 10, 11, 700, gz.len()] {
            let (out, sum) = decode_in_pieces(&gz, piece).unwrap();
            assert_eq!(out, text, "piece {piece}");
            assert!(sum.gzip);
            assert_eq!(sum.sha1, plain_sum.sha1);
            assert_eq!(sum.bytes, text.len() as u64);
        }
    }

    #[test]
    fn gzip_header_fields_and_members() {
        // FEXTRA, FNAME, FCOMMENT and FHCRC set, then a second member.
        let body = gzip(b"second member\n");
        let first = gzip(b"first member\n");
        let mut flagged = vec![
            0x1f,
            0x8b,
            8,
            FEXTRA | FNAME | FCOMMENT | FHCRC,
            0,
            0,
            0,
            0,
            0,
            3,
        ];
        flagged.extend([3, 0, b'a', b'b', b'c']);
        flagged.extend(b"bill.csv\0");
        flagged.extend(b"a comment\0");
        flagged.extend([0xAA, 0xBB]);
        flagged.extend_from_slice(&first[10..]);
        flagged.extend_from_slice(&body);
        for piece in [1, 3, flagged.len()] {
            let (out, sum) = decode_in_pieces(&flagged, piece).unwrap();
            assert_eq!(out, b"first member\nsecond member\n", "piece {piece}");
            assert!(sum.gzip);
        }
    }

    #[test]
    fn corrupt_and_truncated_gzip_are_refused() {
        let gz = gzip(b"`1,`2\r\n`3,`4\r\n");
        for cut in [1, 5, 10, gz.len() / 2, gz.len() - 8, gz.len() - 1] {
            let e = decode_in_pieces(&gz[..cut], 3).unwrap_err();
            assert!(
                matches!(&e, BillError::Gzip(io) if io.kind() == io::ErrorKind::UnexpectedEof),
                "cut {cut}: {e:?}"
            );
        }
        let mut bad_crc = gz.clone();
        let n = bad_crc.len();
        bad_crc[n - 8] ^= 1;
        assert!(matches!(
            decode_in_pieces(&bad_crc, 4),
            Err(BillError::Gzip(_))
        ));
        let mut bad_len = gz.clone();
        bad_len[n - 1] ^= 1;
        assert!(matches!(
            decode_in_pieces(&bad_len, 4),
            Err(BillError::Gzip(_))
        ));
        let mut bad_magic = gz.clone();
        bad_magic[1] = 0x8c;
        assert!(matches!(
            decode_in_pieces(&bad_magic, 4),
            Err(BillError::Gzip(_))
        ));
        let mut garbage_after = gz.clone();
        garbage_after.extend_from_slice(b"0123456789");
        assert!(matches!(
            decode_in_pieces(&garbage_after, 4),
            Err(BillError::Gzip(_))
        ));
        let mut bad_deflate = gz.clone();
        bad_deflate[10] = 0xff; // reserved block type
        assert!(matches!(
            decode_in_pieces(&bad_deflate, 4),
            Err(BillError::Gzip(_))
        ));
    }

    #[test]
    fn push_into_bounds_the_output_of_a_bomb() {
        let zeros = vec![0u8; 1 << 20];
        let gz = gzip(&zeros);
        assert!(gz.len() < 4096);
        let mut d = BillDecoder::new();
        let (mut pos, mut total, mut calls) = (0, 0usize, 0);
        loop {
            let mut out = Vec::new();
            pos += d.push_into(&gz[pos..], &mut out, 1000).unwrap();
            assert!(out.len() <= 1000);
            assert!(out.iter().all(|&b| b == 0));
            assert!(d.buffered() <= 10);
            total += out.len();
            calls += 1;
            if out.is_empty() && pos == gz.len() {
                break;
            }
        }
        assert_eq!(total, zeros.len());
        assert!(calls > 1000);
        assert_eq!(d.finish(None).unwrap().bytes, 1 << 20);
    }

    #[test]
    fn hashes_compare_in_any_case() {
        let mut d = BillDecoder::new();
        d.push(b"abc").unwrap();
        // SHA-1("abc")
        let sum = d
            .finish(Some("A9993E364706816ABA3E25717850C26C9CD0D89D"))
            .unwrap();
        assert_eq!(sum.sha1, "a9993e364706816aba3e25717850c26c9cd0d89d");
        assert!(sum.hash_checked);
        let empty = BillDecoder::new().finish(None).unwrap();
        assert_eq!(empty.sha1, "da39a3ee5e6b4b0d3255bfef95601890afd80709");
        assert_eq!((empty.bytes, empty.gzip), (0, false));
    }

    #[test]
    fn sniffs_xml_however_split() {
        assert_eq!(sniff(b""), Sniff::Undecided);
        assert_eq!(sniff(b"\xEF"), Sniff::Undecided);
        assert_eq!(sniff(b"\xEF\xBB\xBF  \r\n<x"), Sniff::Undecided);
        assert_eq!(sniff(b"\xEF\xBB\xBF  \r\n<xml>"), Sniff::Xml);
        assert_eq!(sniff(b"<XML><return_code>"), Sniff::Xml);
        assert_eq!(sniff(b"\x1f\x8b"), Sniff::Bill);
        assert_eq!(sniff(b"\xEF\xBB\xBF\xE4"), Sniff::Bill);
        assert_eq!(sniff(b"\xEFx"), Sniff::Bill);
        assert_eq!(sniff(b"<xmm"), Sniff::Bill);
        assert_eq!(sniff("交易时间".as_bytes()), Sniff::Bill);
    }

    #[test]
    fn v2_failures_map_by_return_msg() {
        let fail = |msg: &str| -> Params {
            [("return_code", "FAIL"), ("return_msg", msg)]
                .into_iter()
                .collect()
        };
        assert!(v2_failure(&fail("Bill Creating")).is_bill_not_ready());
        assert!(v2_failure(&fail("No Bill Exist")).is_no_bill());
        assert!(v2_failure(&fail("NO Bill Exist")).is_no_bill());
        for msg in ["SYSTEMERROR", "CompressGZip Error", "UnCompressGZip Error"] {
            let e = v2_failure(&fail(msg));
            assert!(matches!(&e, Error::Protocol { return_msg } if return_msg == msg));
            assert!(e.is_retryable(), "{msg}");
        }
        let e = v2_failure(&fail("invalid bill_type"));
        assert!(matches!(&e, Error::Protocol { .. }) && !e.is_retryable());
        let ok: Params = [("return_code", "SUCCESS")].into_iter().collect();
        assert!(matches!(v2_failure(&ok), Error::Transport { .. }));
    }

    #[test]
    fn retry_advice() {
        assert!(
            BillError::NotReady {
                detail: String::new()
            }
            .is_retryable()
        );
        assert!(
            BillError::HashMismatch {
                expected: String::new(),
                actual: String::new()
            }
            .is_retryable()
        );
        assert!(BillError::Gzip(io::Error::other("x")).is_retryable());
        assert!(!BillError::NoBill.is_retryable());
        assert!(!BillError::ForeignDownloadUrl.is_retryable());
        assert!(!BillError::Unsupported.is_retryable());
    }
}
