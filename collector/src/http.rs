//! OTLP/HTTP: `POST /v1/logs`, `/v1/metrics`, `/v1/traces` with protobuf or
//! JSON bodies, optionally gzip, deflate or zstd compressed. Answers use the
//! request's encoding; errors carry a `google.rpc.Status` as the spec asks.

use std::io::Read;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use http_body_util::BodyExt;
use lumen_store::Signal;
use prost::Message;

use crate::grpc::{Kind, Logs, Metrics, Traces};
use crate::{Collector, Error, Result};

#[derive(Clone, Copy, PartialEq, Debug)]
enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        }
    }
}

/// `google.rpc.Status`, the body of OTLP/HTTP error answers.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

pub fn router(collector: Arc<Collector>) -> Router {
    Router::new()
        .route("/v1/logs", post(export::<Logs>))
        .route("/v1/traces", post(export::<Traces>))
        .route("/v1/metrics", post(export::<Metrics>))
        // Size is enforced by `read_body`, before and after decompression.
        .layer(DefaultBodyLimit::disable())
        .with_state(collector)
}

fn media_type(headers: &HeaderMap) -> Result<Encoding> {
    let raw = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = raw
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "application/x-protobuf" | "application/protobuf" => Ok(Encoding::Protobuf),
        "application/json" => Ok(Encoding::Json),
        "" => Err(Error::UnsupportedMediaType(
            "missing Content-Type: use application/x-protobuf or application/json".into(),
        )),
        other => Err(Error::UnsupportedMediaType(format!(
            "unsupported Content-Type {other:?}: use application/x-protobuf or application/json"
        ))),
    }
}

/// Past this, an oversized body is no longer drained before answering 413.
const DRAIN_LIMIT: u64 = 64 << 20;

/// Reads the body, refusing it past `max` bytes on the wire or once decompressed.
/// Reads and discards a body (up to [`DRAIN_LIMIT`] bytes, within
/// `timeout`), so a client refused before its body was read gets to read
/// the answer instead of a reset connection while it is still sending.
async fn drain(mut body: Body, timeout: std::time::Duration) {
    let _ = tokio::time::timeout(timeout, async {
        let mut seen = 0u64;
        while let Some(Ok(frame)) = body.frame().await {
            seen += frame.data_ref().map_or(0, |d| d.len() as u64);
            if seen > DRAIN_LIMIT {
                break;
            }
        }
    })
    .await;
}

async fn read_body(headers: &HeaderMap, body: Body, max: usize) -> Result<Vec<u8>> {
    let too_large =
        |what: &str| Error::PayloadTooLarge(format!("{what} exceeds the limit of {max} bytes"));
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut body = body;
    let mut raw = Vec::with_capacity(declared.map_or(64 << 10, |l| l.min(max as u64) as usize));
    let mut over = declared.is_some_and(|l| l > max as u64);
    let mut seen: u64 = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame
            .map_err(|e| Error::InvalidArgument(format!("could not read request body: {e}")))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        seen += data.len() as u64;
        if over || raw.len() + data.len() > max {
            over = true;
            raw = Vec::new();
            // Drain a bounded amount so the client gets to read the 413 instead of a reset.
            if seen > DRAIN_LIMIT {
                break;
            }
            continue;
        }
        raw.extend_from_slice(&data);
    }
    if over {
        return Err(too_large("request body"));
    }
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase())
        .unwrap_or_default();
    let decoder: Box<dyn Read + '_> = match encoding.as_str() {
        "" | "identity" => return Ok(raw),
        "gzip" | "x-gzip" => Box::new(flate2::read::MultiGzDecoder::new(&raw[..])),
        // HTTP's "deflate" is zlib-wrapped; some clients send raw deflate.
        "deflate" if raw.first().is_some_and(|b| b & 0x0f == 8) => {
            Box::new(flate2::read::ZlibDecoder::new(&raw[..]))
        }
        "deflate" => Box::new(flate2::read::DeflateDecoder::new(&raw[..])),
        "zstd" => Box::new(
            zstd::stream::read::Decoder::new(&raw[..])
                .map_err(|e| Error::InvalidArgument(format!("bad zstd stream: {e}")))?,
        ),
        other => {
            return Err(Error::UnsupportedMediaType(format!(
                "unsupported Content-Encoding {other:?}: use gzip, deflate, zstd or none"
            )));
        }
    };
    let mut out = Vec::with_capacity((raw.len() * 4).min(max));
    // Read one byte past the limit to tell "exactly at" from "over" (a bomb).
    match decoder.take(max as u64 + 1).read_to_end(&mut out) {
        Ok(_) if out.len() > max => Err(too_large("decompressed request body")),
        Ok(_) => Ok(out),
        Err(e) => Err(Error::InvalidArgument(format!(
            "could not decompress {encoding} body: {e}"
        ))),
    }
}

fn decode<K: Kind>(enc: Encoding, bytes: &[u8]) -> Result<K::Req>
where
    K::Req: serde::de::DeserializeOwned,
{
    crate::decode_body(enc == Encoding::Json, bytes)
}

fn encode<T: Message + serde::Serialize>(enc: Encoding, status: StatusCode, msg: &T) -> Response {
    let body = match enc {
        Encoding::Protobuf => msg.encode_to_vec(),
        Encoding::Json => serde_json::to_vec(msg).unwrap_or_default(),
    };
    (status, [(header::CONTENT_TYPE, enc.content_type())], body).into_response()
}

fn error_response(enc: Encoding, e: &Error) -> Response {
    let status = RpcStatus {
        code: e.grpc_code() as i32,
        message: e.to_string(),
    };
    let mut res = encode(enc, e.http_status(), &status);
    if e.is_retryable() {
        res.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(crate::RETRY_AFTER.as_secs()),
        );
    }
    res
}

async fn export<K: Kind>(
    State(collector): State<Arc<Collector>>,
    headers: HeaderMap,
    body: Body,
) -> Response
where
    K::Req: serde::de::DeserializeOwned,
{
    let signal: Signal = K::SIGNAL;
    // Answer in the request's encoding; when that is what's wrong, in JSON.
    let enc = match media_type(&headers) {
        Ok(enc) => enc,
        Err(e) => {
            collector.invalid(signal);
            return error_response(Encoding::Json, &e);
        }
    };
    let store = match collector.authorize(&headers).await {
        Ok(store) => store,
        Err(e) => {
            collector.invalid(signal);
            let mut res = error_response(enc, &e);
            if matches!(e, Error::Unauthenticated(_)) {
                res.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"lumen\""),
                );
            }
            return res;
        }
    };
    let result = async {
        let wire = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
        // A client that trickles its body (slowloris) holds memory and a
        // connection: it gets until the deadline.
        let limit = collector.limits().body_timeout;
        // Reserve before reading so a flood of large bodies cannot pass the budget.
        let early = match collector.reserve(
            signal,
            wire.unwrap_or(64 << 10)
                .min(collector.limits().max_request_bytes),
        ) {
            Ok(r) => r,
            Err(e) => {
                drain(body, limit).await;
                return Err(e);
            }
        };
        let bytes = tokio::time::timeout(
            limit,
            read_body(&headers, body, collector.limits().max_request_bytes),
        )
        .await
        .map_err(|_| {
            Error::RequestTimeout(format!(
                "the request body did not arrive within {} s",
                limit.as_secs_f64()
            ))
        })??;
        drop(early);
        let _reservation = collector.reserve(signal, bytes.len())?;
        let req = decode::<K>(enc, &bytes)?;
        drop(bytes);
        collector.ingest(&store, K::wrap(req)).await
    }
    .await;
    match result {
        Ok(accepted) if enc == Encoding::Json => {
            // By hand: the JSON mapping spells int64 as a string, prost-serde as a number.
            let body = if accepted.rejected > 0 {
                serde_json::json!({ "partialSuccess": {
                    K::REJECTED_JSON: accepted.rejected.to_string(),
                    "errorMessage": accepted.error_message,
                }})
            } else {
                serde_json::json!({})
            };
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, enc.content_type())],
                body.to_string(),
            )
                .into_response()
        }
        Ok(accepted) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, enc.content_type())],
            K::respond(accepted).encode_to_vec(),
        )
            .into_response(),
        Err(e) => {
            if !e.is_retryable() {
                collector.invalid(signal);
            }
            error_response(enc, &e)
        }
    }
}
