//! OTLP/gRPC: the three `Export` methods as tonic services.
//!
//! The generated servers decode with tonic's prost codec, which answers a
//! malformed message with `INTERNAL`; OTLP clients treat that as a server
//! fault. So the services here are written against `tonic::server::Grpc` with
//! a codec that answers `INVALID_ARGUMENT` instead.

use std::convert::Infallible;
use std::marker::PhantomData;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use lumen_store::Signal;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use tonic::codec::{
    Codec, CompressionEncoding, DecodeBuf, Decoder, EnabledCompressionEncodings, EncodeBuf, Encoder,
};
use tonic::server::NamedService;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::{Accepted, Collector, Error, Request};

/// One OTLP export service: its request and response types and name.
pub trait Kind: Send + Sync + 'static {
    const SERVICE: &'static str;
    const SIGNAL: Signal;
    /// The `partial_success` count field in OTLP/JSON.
    const REJECTED_JSON: &'static str;
    type Req: prost::Message + Default + Send + 'static;
    type Resp: prost::Message + Send + 'static;
    fn wrap(req: Self::Req) -> Request;
    fn respond(a: Accepted) -> Self::Resp;
}

pub struct Logs;
pub struct Traces;
pub struct Metrics;

impl Kind for Logs {
    const SERVICE: &'static str = "opentelemetry.proto.collector.logs.v1.LogsService";
    const SIGNAL: Signal = Signal::Logs;
    const REJECTED_JSON: &'static str = "rejectedLogRecords";
    type Req = ExportLogsServiceRequest;
    type Resp = ExportLogsServiceResponse;
    fn wrap(req: Self::Req) -> Request {
        Request::Logs(req)
    }
    fn respond(a: Accepted) -> Self::Resp {
        ExportLogsServiceResponse {
            partial_success: (a.rejected > 0).then_some(ExportLogsPartialSuccess {
                rejected_log_records: a.rejected as i64,
                error_message: a.error_message,
            }),
        }
    }
}

impl Kind for Traces {
    const SERVICE: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
    const SIGNAL: Signal = Signal::Spans;
    const REJECTED_JSON: &'static str = "rejectedSpans";
    type Req = ExportTraceServiceRequest;
    type Resp = ExportTraceServiceResponse;
    fn wrap(req: Self::Req) -> Request {
        Request::Traces(req)
    }
    fn respond(a: Accepted) -> Self::Resp {
        ExportTraceServiceResponse {
            partial_success: (a.rejected > 0).then_some(ExportTracePartialSuccess {
                rejected_spans: a.rejected as i64,
                error_message: a.error_message,
            }),
        }
    }
}

impl Kind for Metrics {
    const SERVICE: &'static str = "opentelemetry.proto.collector.metrics.v1.MetricsService";
    const SIGNAL: Signal = Signal::Metrics;
    const REJECTED_JSON: &'static str = "rejectedDataPoints";
    type Req = ExportMetricsServiceRequest;
    type Resp = ExportMetricsServiceResponse;
    fn wrap(req: Self::Req) -> Request {
        Request::Metrics(req)
    }
    fn respond(a: Accepted) -> Self::Resp {
        ExportMetricsServiceResponse {
            partial_success: (a.rejected > 0).then_some(ExportMetricsPartialSuccess {
                rejected_data_points: a.rejected as i64,
                error_message: a.error_message,
            }),
        }
    }
}

/// The request as decoded plus its size on the wire (after decompression).
pub struct Decoded<T> {
    msg: T,
    wire_bytes: usize,
}

pub struct OtlpCodec<K>(PhantomData<K>);
pub struct OtlpDecoder<K>(PhantomData<K>);
pub struct OtlpEncoder<K>(PhantomData<K>);

impl<K: Kind> Codec for OtlpCodec<K> {
    type Encode = K::Resp;
    type Decode = Decoded<K::Req>;
    type Encoder = OtlpEncoder<K>;
    type Decoder = OtlpDecoder<K>;
    fn encoder(&mut self) -> Self::Encoder {
        OtlpEncoder(PhantomData)
    }
    fn decoder(&mut self) -> Self::Decoder {
        OtlpDecoder(PhantomData)
    }
}

impl<K: Kind> Decoder for OtlpDecoder<K> {
    type Item = Decoded<K::Req>;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Status> {
        use bytes::Buf;
        let wire_bytes = src.remaining();
        let msg = <K::Req as prost::Message>::decode(src)
            .map_err(|e| Status::invalid_argument(format!("malformed OTLP protobuf: {e}")))?;
        Ok(Some(Decoded { msg, wire_bytes }))
    }
}

impl<K: Kind> Encoder for OtlpEncoder<K> {
    type Item = K::Resp;
    type Error = Status;
    fn encode(&mut self, item: Self::Item, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        prost::Message::encode(&item, dst)
            .map_err(|e| Status::internal(format!("encoding response: {e}")))
    }
}

fn status(e: &Error) -> Status {
    if e.is_retryable() {
        Status::with_error_details(
            e.grpc_code(),
            e.to_string(),
            ErrorDetails::with_retry_info(Some(crate::RETRY_AFTER)),
        )
    } else {
        Status::new(e.grpc_code(), e.to_string())
    }
}

struct Export<K> {
    collector: Arc<Collector>,
    /// The tenant's store the export goes to.
    store: Arc<lumen_store::Store>,
    _k: PhantomData<K>,
}

impl<K: Kind> tonic::server::UnaryService<Decoded<K::Req>> for Export<K> {
    type Response = K::Resp;
    type Future = BoxFuture<'static, Result<tonic::Response<K::Resp>, Status>>;

    fn call(&mut self, request: tonic::Request<Decoded<K::Req>>) -> Self::Future {
        let collector = Arc::clone(&self.collector);
        let store = Arc::clone(&self.store);
        Box::pin(async move {
            let Decoded { msg, wire_bytes } = request.into_inner();
            let _reservation = collector
                .reserve(K::SIGNAL, wire_bytes)
                .map_err(|e| status(&e))?;
            match collector.ingest(&store, K::wrap(msg)).await {
                Ok(a) => Ok(tonic::Response::new(K::respond(a))),
                Err(e) => {
                    if !e.is_retryable() {
                        collector.invalid(K::SIGNAL);
                    }
                    Err(status(&e))
                }
            }
        })
    }
}

/// The tower service for one OTLP export service.
pub struct OtlpGrpc<K> {
    collector: Arc<Collector>,
    _k: PhantomData<K>,
}

impl<K> Clone for OtlpGrpc<K> {
    fn clone(&self) -> Self {
        OtlpGrpc {
            collector: Arc::clone(&self.collector),
            _k: PhantomData,
        }
    }
}

impl<K: Kind> OtlpGrpc<K> {
    pub fn new(collector: Arc<Collector>) -> Self {
        OtlpGrpc {
            collector,
            _k: PhantomData,
        }
    }
}

impl<K: Kind> NamedService for OtlpGrpc<K> {
    const NAME: &'static str = K::SERVICE;
}

impl<K, B> tower_service::Service<http::Request<B>> for OtlpGrpc<K>
where
    K: Kind,
    B: http_body::Body + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let collector = Arc::clone(&self.collector);
        let is_export = req
            .uri()
            .path()
            .strip_prefix('/')
            .and_then(|p| p.strip_prefix(K::SERVICE))
            == Some("/Export");
        Box::pin(async move {
            if !is_export {
                let mut res = http::Response::new(tonic::body::Body::default());
                let h = res.headers_mut();
                h.insert("grpc-status", (Code::Unimplemented as i32).into());
                h.insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/grpc"),
                );
                return Ok(res);
            }
            let store = match collector.authorize(req.headers()).await {
                Ok(store) => store,
                Err(e) => {
                    collector.invalid(K::SIGNAL);
                    return Ok(status(&e).into_http());
                }
            };
            let max = collector.limits().max_request_bytes;
            let mut enc = EnabledCompressionEncodings::default();
            enc.enable(CompressionEncoding::Gzip);
            let mut grpc = tonic::server::Grpc::new(OtlpCodec::<K>(PhantomData))
                .apply_compression_config(enc, enc)
                .apply_max_message_size_config(Some(max), None);
            let mut res = grpc
                .unary(
                    Export::<K> {
                        collector: Arc::clone(&collector),
                        store,
                        _k: PhantomData,
                    },
                    req,
                )
                .await;
            // tonic answers framing and decompression faults in the request
            // with INTERNAL; they are the client's, so say INVALID_ARGUMENT.
            let h = res.headers_mut();
            if h.get("grpc-status").is_some_and(|v| v.as_bytes() == b"13") {
                h.insert("grpc-status", (Code::InvalidArgument as i32).into());
                collector.invalid(K::SIGNAL);
            }
            Ok(res)
        })
    }
}
