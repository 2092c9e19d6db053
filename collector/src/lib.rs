//! OTLP receivers. gRPC (`grpc`) and HTTP (`http`) are thin transports over
//! one path: decode → check the memory budget → convert to Arrow
//! (`convert`) → durable append to the store → answer with
//! `partial_success` when some records were rejected.

pub mod convert;
pub mod grpc;
pub mod http;
pub mod limits;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use datafusion::arrow::error::ArrowError;
use lumen_store::auth::{Auth, AuthError, Scope};
use lumen_store::tenants::{TENANT_HEADER, Tenants};
use lumen_store::{Signal, Store};

/// Everything that can go wrong with an export request, mapped to HTTP and
/// gRPC codes in one place ([`Error::http_status`], [`Error::grpc_code`]).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    /// Over the memory budget: retryable.
    #[error("{0}")]
    Overloaded(String),
    /// The store could not make the data durable: retryable.
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
    /// No token, or not a valid one.
    #[error("{0}")]
    Unauthenticated(String),
    /// A valid token without the `ingest` scope.
    #[error("{0}")]
    PermissionDenied(String),
    /// The body did not arrive in time.
    #[error("{0}")]
    RequestTimeout(String),
}

impl From<AuthError> for Error {
    fn from(e: AuthError) -> Self {
        if e.is_forbidden() {
            Error::PermissionDenied(e.to_string())
        } else {
            Error::Unauthenticated(e.to_string())
        }
    }
}

impl From<ArrowError> for Error {
    fn from(e: ArrowError) -> Self {
        Error::Internal(e.to_string())
    }
}

impl From<lumen_store::Error> for Error {
    fn from(e: lumen_store::Error) -> Self {
        if e.is_retryable() {
            Error::Unavailable(e.to_string())
        } else {
            Error::Internal(e.to_string())
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How long a refused client should wait before retrying.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

impl Error {
    pub fn http_status(&self) -> ::http::StatusCode {
        use ::http::StatusCode as S;
        match self {
            Error::InvalidArgument(_) => S::BAD_REQUEST,
            Error::UnsupportedMediaType(_) => S::UNSUPPORTED_MEDIA_TYPE,
            Error::PayloadTooLarge(_) => S::PAYLOAD_TOO_LARGE,
            Error::Overloaded(_) => S::TOO_MANY_REQUESTS,
            Error::Unavailable(_) => S::SERVICE_UNAVAILABLE,
            Error::Internal(_) => S::INTERNAL_SERVER_ERROR,
            Error::Unauthenticated(_) => S::UNAUTHORIZED,
            Error::PermissionDenied(_) => S::FORBIDDEN,
            Error::RequestTimeout(_) => S::REQUEST_TIMEOUT,
        }
    }

    pub fn grpc_code(&self) -> tonic::Code {
        match self {
            Error::InvalidArgument(_) | Error::UnsupportedMediaType(_) => {
                tonic::Code::InvalidArgument
            }
            // Not retryable: the same payload will be too large next time too.
            Error::PayloadTooLarge(_) => tonic::Code::ResourceExhausted,
            Error::Overloaded(_) | Error::Unavailable(_) => tonic::Code::Unavailable,
            Error::Internal(_) => tonic::Code::Internal,
            Error::Unauthenticated(_) => tonic::Code::Unauthenticated,
            Error::PermissionDenied(_) => tonic::Code::PermissionDenied,
            Error::RequestTimeout(_) => tonic::Code::DeadlineExceeded,
        }
    }

    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Overloaded(_) | Error::Unavailable(_))
    }
}

/// Limits on what one export request may be.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body, checked before and after decompression.
    pub max_request_bytes: usize,
    /// Attributes per list and value length.
    pub attributes: limits::AttributeLimits,
    /// Longest an OTLP/HTTP body may take to arrive.
    pub body_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_bytes: 16 << 20,
            attributes: limits::AttributeLimits::default(),
            body_timeout: Duration::from_secs(30),
        }
    }
}

/// A decoded OTLP export request of any signal.
pub enum Request {
    Logs(opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest),
    Traces(opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest),
    Metrics(opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest),
}

/// What was accepted: the counts for `partial_success`.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Accepted {
    pub rejected: u64,
    pub error_message: String,
}

/// The ingest path shared by both transports.
pub struct Collector {
    tenants: Arc<Tenants>,
    limits: Limits,
    auth: Arc<Auth>,
    /// Without tokens, take the tenant from `X-Scope-OrgID`.
    tenant_header: bool,
}

/// Decoded protobuf and Arrow together take a few times the wire size.
const DECODED_FACTOR: usize = 4;

impl Collector {
    pub fn new(
        tenants: Arc<Tenants>,
        limits: Limits,
        auth: Arc<Auth>,
        tenant_header: bool,
    ) -> Arc<Self> {
        Arc::new(Collector {
            tenants,
            limits,
            auth,
            tenant_header,
        })
    }

    /// The store an export goes to: its token's tenant's, after checking
    /// the `authorization` header (HTTP header or gRPC metadata) for a
    /// token with the `ingest` scope; without tokens, the default tenant's,
    /// or with `--tenant-header` the one `X-Scope-OrgID` names (opened on
    /// its first export).
    pub async fn authorize(&self, headers: &::http::HeaderMap) -> Result<Arc<Store>> {
        if !self.auth.enabled() {
            if !self.tenant_header {
                return Ok(Arc::clone(self.store()));
            }
            let org =
                lumen_store::tenants::from_header(headers.get(TENANT_HEADER).map(|v| v.as_bytes()))
                    .map_err(Error::InvalidArgument)?;
            return match self.tenants.open_async(&org).await {
                Ok(s) => Ok(s),
                Err(lumen_store::Error::Tenant(msg)) => Err(Error::InvalidArgument(msg)),
                Err(e) => Err(e.into()),
            };
        }
        let token = headers
            .get(::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(lumen_store::auth::token_from_authorization);
        let who = self.auth.check(token.as_deref(), Scope::Ingest)?;
        self.tenants
            .get(&who.tenant)
            .ok_or_else(|| Error::Internal(format!("no store for tenant {:?}", who.tenant)))
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The default tenant's store (whose metrics count requests of all).
    pub fn store(&self) -> &Arc<Store> {
        self.tenants.default_store()
    }

    /// Reserves memory for a request of `wire_bytes` from the budget all
    /// tenants share, or refuses it (retryable).
    pub fn reserve(&self, signal: Signal, wire_bytes: usize) -> Result<lumen_store::Reservation> {
        let want = wire_bytes.saturating_mul(DECODED_FACTOR).max(4096);
        let budget = self.tenants.budget();
        budget.try_reserve(want).ok_or_else(|| {
            self.store().metrics().requests_refused[signal.index()].fetch_add(1, Ordering::Relaxed);
            Error::Overloaded(format!(
                "Lumen is over its memory budget ({} MiB of unflushed data and requests); retry later",
                budget.limit() >> 20
            ))
        })
    }

    /// Counts a malformed (or unauthorised) request.
    pub fn invalid(&self, signal: Signal) {
        self.store().metrics().requests_invalid[signal.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Converts one decoded request and stores it durably in `store`.
    pub async fn ingest(&self, store: &Store, req: Request) -> Result<Accepted> {
        let (converted, applied) = convert_request(req, &self.limits.attributes)?;
        if applied.dropped > 0 || applied.truncated > 0 {
            let m = store.metrics();
            m.attributes_dropped
                .fetch_add(applied.dropped, Ordering::Relaxed);
            m.values_truncated
                .fetch_add(applied.truncated, Ordering::Relaxed);
        }
        let signal = converted.signal;
        let metrics = store.metrics();
        if converted.rejected > 0 {
            metrics.records_rejected[signal.index()]
                .fetch_add(converted.rejected, Ordering::Relaxed);
        }
        if let Err(e) = store.append(signal, converted.batch).await {
            metrics.requests_refused[signal.index()].fetch_add(1, Ordering::Relaxed);
            return Err(e.into());
        }
        Ok(Accepted {
            rejected: converted.rejected,
            error_message: converted.error.unwrap_or_default(),
        })
    }
}

/// Applies the attribute limits to a decoded request and converts it to rows.
fn convert_request(
    mut req: Request,
    limits: &limits::AttributeLimits,
) -> Result<(convert::Converted, limits::Applied)> {
    let applied = limits.apply(&mut req);
    let converted = match &req {
        Request::Logs(r) => convert::logs(r)?,
        Request::Traces(r) => convert::spans(r)?,
        Request::Metrics(r) => convert::metrics(r)?,
    };
    Ok((converted, applied))
}

/// Decodes an OTLP request body, JSON or protobuf.
pub(crate) fn decode_body<T: prost::Message + Default + serde::de::DeserializeOwned>(
    json: bool,
    bytes: &[u8],
) -> Result<T> {
    if json {
        serde_json::from_slice(bytes)
            .map_err(|e| Error::InvalidArgument(format!("malformed OTLP JSON: {e}")))
    } else {
        T::decode(bytes)
            .map_err(|e| Error::InvalidArgument(format!("malformed OTLP protobuf: {e}")))
    }
}

/// The ingest path up to the store, for the fuzz targets: decodes an OTLP
/// body of `signal` (protobuf, or JSON), applies the default limits and
/// converts it to rows, as an export does.
#[doc(hidden)]
pub fn decode_and_convert(signal: Signal, json: bool, bytes: &[u8]) -> Result<convert::Converted> {
    use opentelemetry_proto::tonic::collector::{
        logs::v1::ExportLogsServiceRequest, metrics::v1::ExportMetricsServiceRequest,
        trace::v1::ExportTraceServiceRequest,
    };
    let req = match signal {
        Signal::Logs => Request::Logs(decode_body::<ExportLogsServiceRequest>(json, bytes)?),
        Signal::Spans => Request::Traces(decode_body::<ExportTraceServiceRequest>(json, bytes)?),
        Signal::Metrics => {
            Request::Metrics(decode_body::<ExportMetricsServiceRequest>(json, bytes)?)
        }
    };
    Ok(convert_request(req, &limits::AttributeLimits::default())?.0)
}
