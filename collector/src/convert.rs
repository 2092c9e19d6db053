//! OTLP requests → Arrow record batches in the store's schemas.
//!
//! Records that cannot be stored faithfully (ids of the wrong length,
//! timestamps past what a signed 64-bit nanosecond count holds) are rejected
//! one by one and reported as OTLP `partial_success`; the rest of the batch
//! is kept.

use std::sync::Arc;

use base64::Engine as _;
use datafusion::arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int32Builder, Int64Builder, ListArray, ListBuilder,
    MapBuilder, RecordBatch, StringBuilder, StructArray, TimestampNanosecondBuilder, UInt32Builder,
    UInt64Builder,
};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::datatypes::{DataType, Field};
use lumen_store::schema::{self, Signal};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, InstrumentationScope, KeyValue, any_value::Value,
};
use opentelemetry_proto::tonic::metrics::v1::{
    Exemplar, exemplar, metric::Data, number_data_point, summary_data_point::ValueAtQuantile,
};
use opentelemetry_proto::tonic::resource::v1::Resource;

use crate::Result;

/// An exemplar's time, trace id and span id (hex), checked before the point is appended.
type CheckedExemplar = (i64, Option<String>, Option<String>);

/// The outcome of converting one export request.
#[derive(Debug)]
pub struct Converted {
    pub signal: Signal,
    pub batch: RecordBatch,
    pub rejected: u64,
    /// Why the first rejected record was rejected (for `partial_success.error_message`).
    pub error: Option<String>,
}

impl Converted {
    fn reject(&mut self, n: u64, why: impl FnOnce() -> String) {
        if self.error.is_none() {
            self.error = Some(why());
        }
        self.rejected += n;
    }
}

// ---------------------------------------------------------------- values

/// The type name recorded for non-string attribute values.
fn type_name(v: &Value) -> Option<&'static str> {
    match v {
        Value::StringValue(_) | Value::StringValueStrindex(_) => None,
        Value::BoolValue(_) => Some("bool"),
        Value::IntValue(_) => Some("int"),
        Value::DoubleValue(_) => Some("double"),
        Value::ArrayValue(_) => Some("array"),
        Value::KvlistValue(_) => Some("kvlist"),
        Value::BytesValue(_) => Some("bytes"),
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn to_json(v: &AnyValue) -> serde_json::Value {
    use serde_json::Value as J;
    match &v.value {
        None | Some(Value::StringValueStrindex(_)) => J::Null,
        Some(Value::StringValue(s)) => J::String(s.clone()),
        Some(Value::BoolValue(b)) => J::Bool(*b),
        Some(Value::IntValue(i)) => J::from(*i),
        Some(Value::DoubleValue(d)) => {
            serde_json::Number::from_f64(*d).map_or_else(|| J::String(d.to_string()), J::Number)
        }
        Some(Value::BytesValue(b)) => J::String(b64(b)),
        Some(Value::ArrayValue(a)) => J::Array(a.values.iter().map(to_json).collect()),
        Some(Value::KvlistValue(kv)) => J::Object(
            kv.values
                .iter()
                .map(|kv| (kv.key.clone(), kv.value.as_ref().map_or(J::Null, to_json)))
                .collect(),
        ),
    }
}

/// Renders an AnyValue as text: strings as they are, scalars in their usual
/// spelling, arrays and kvlists as JSON, bytes as base64. `None` for an empty value.
pub(crate) fn render(v: &AnyValue) -> Option<String> {
    Some(match v.value.as_ref()? {
        Value::StringValue(s) => s.clone(),
        Value::StringValueStrindex(_) => return None,
        Value::BoolValue(b) => b.to_string(),
        Value::IntValue(i) => i.to_string(),
        Value::DoubleValue(d) => d.to_string(),
        Value::BytesValue(b) => b64(b),
        Value::ArrayValue(_) | Value::KvlistValue(_) => to_json(v).to_string(),
    })
}

/// Attributes rendered once, appended to many rows (resource and scope attributes).
#[derive(Default, Clone)]
struct Rendered {
    pairs: Vec<(String, Option<String>)>,
    types: Vec<(String, &'static str)>,
}

impl Rendered {
    fn new(attrs: &[KeyValue]) -> Self {
        let mut r = Rendered {
            pairs: Vec::with_capacity(attrs.len()),
            types: Vec::new(),
        };
        for kv in attrs {
            let value = kv.value.as_ref();
            r.pairs.push((kv.key.clone(), value.and_then(render)));
            if let Some(t) = value.and_then(|v| v.value.as_ref()).and_then(type_name) {
                r.types.push((kv.key.clone(), t));
            }
        }
        r
    }

    fn service_name(&self) -> &str {
        self.pairs
            .iter()
            .find(|(k, _)| k == "service.name")
            .and_then(|(_, v)| v.as_deref())
            .unwrap_or("unknown_service")
    }
}

type StrMap = MapBuilder<StringBuilder, StringBuilder>;

// Builders are sized from a pass over the request before any row is
// appended: the memory budget charges Arrow capacity, and growth by
// doubling leaves up to half of every buffer unused (about 40% of a logs
// batch), besides copying each buffer on every growth.

/// Capacity of a string column: how many values, how many bytes.
#[derive(Default, Clone, Copy)]
struct StrCap {
    items: usize,
    bytes: usize,
}

impl StrCap {
    fn add(&mut self, len: usize, times: usize) {
        self.items += times;
        self.bytes += len * times;
    }

    fn builder(self) -> StringBuilder {
        StringBuilder::with_capacity(self.items, self.bytes)
    }
}

/// The length of a value as [`render`] writes it; a guess for JSON.
fn rendered_len(v: &AnyValue) -> usize {
    use prost::Message as _;
    match &v.value {
        Some(Value::StringValue(s)) => s.len(),
        None | Some(Value::StringValueStrindex(_)) => 0,
        Some(Value::BoolValue(_)) => 5,
        Some(Value::IntValue(i)) => {
            usize::from(*i < 0)
                + i.unsigned_abs()
                    .checked_ilog10()
                    .map_or(1, |d| d as usize + 1)
        }
        Some(Value::DoubleValue(_)) => 12,
        Some(Value::BytesValue(b)) => b.len().div_ceil(3) * 4,
        Some(Value::ArrayValue(_) | Value::KvlistValue(_)) => v.encoded_len() * 2,
    }
}

/// Capacity of an attribute map column and of its `_types` sibling.
#[derive(Default, Clone, Copy)]
struct AttrCap {
    maps: usize,
    keys: StrCap,
    values: StrCap,
    type_keys: StrCap,
    type_names: StrCap,
}

impl AttrCap {
    /// Counts `times` rows holding `attrs`.
    fn add(&mut self, attrs: &[KeyValue], times: usize) {
        self.maps += times;
        for kv in attrs {
            self.keys.add(kv.key.len(), times);
            let value = kv.value.as_ref();
            self.values.add(value.map_or(0, rendered_len), times);
            if let Some(t) = value.and_then(|v| v.value.as_ref()).and_then(type_name) {
                self.type_keys.add(kv.key.len(), times);
                self.type_names.add(t.len(), times);
            }
        }
    }
}

/// Capacity of the [`Origin`] columns.
#[derive(Default, Clone, Copy)]
struct OriginCap {
    rows: usize,
    service: StrCap,
    resource: AttrCap,
    resource_schema_url: StrCap,
    scope_name: StrCap,
    scope_version: StrCap,
    scope_attrs: AttrCap,
    scope_schema_url: StrCap,
    attrs: AttrCap,
}

impl OriginCap {
    /// Counts `rows` records under one resource and scope.
    fn add_context(
        &mut self,
        resource: Option<&Resource>,
        resource_schema_url: &str,
        scope: Option<&InstrumentationScope>,
        scope_schema_url: &str,
        rows: usize,
    ) {
        let attrs = resource.map_or(&[][..], |r| &r.attributes);
        let service = attrs
            .iter()
            .find(|kv| kv.key == "service.name")
            .and_then(|kv| kv.value.as_ref())
            .map_or("unknown_service".len(), rendered_len);
        self.rows += rows;
        self.service.add(service, rows);
        self.resource.add(attrs, rows);
        self.resource_schema_url
            .add(resource_schema_url.len(), rows);
        self.scope_name.add(scope.map_or(0, |s| s.name.len()), rows);
        self.scope_version
            .add(scope.map_or(0, |s| s.version.len()), rows);
        self.scope_attrs
            .add(scope.map_or(&[][..], |s| &s.attributes), rows);
        self.scope_schema_url.add(scope_schema_url.len(), rows);
    }
}

/// A `Map<Utf8,Utf8>` of attribute values plus, optionally, its `_types` sibling.
struct AttrCols {
    values: StrMap,
    types: Option<StrMap>,
}

impl AttrCols {
    fn with_capacity(cap: &AttrCap, with_types: bool) -> Self {
        let map = |keys: StrCap, values: StrCap| {
            MapBuilder::with_capacity(None, keys.builder(), values.builder(), cap.maps)
        };
        AttrCols {
            values: map(cap.keys, cap.values),
            types: with_types.then(|| map(cap.type_keys, cap.type_names)),
        }
    }

    fn append(&mut self, attrs: &[KeyValue]) {
        let mut any_typed = false;
        for kv in attrs {
            let value = kv.value.as_ref();
            self.values.keys().append_value(&kv.key);
            match value.and_then(|v| v.value.as_ref()) {
                // The common case, without an intermediate String.
                Some(Value::StringValue(s)) => self.values.values().append_value(s),
                _ => self.values.values().append_option(value.and_then(render)),
            }
            if let (Some(types), Some(t)) = (
                self.types.as_mut(),
                value.and_then(|v| v.value.as_ref()).and_then(type_name),
            ) {
                types.keys().append_value(&kv.key);
                types.values().append_value(t);
                any_typed = true;
            }
        }
        // Appending an entry of a map cannot fail; the builder only errors on mismatched child lengths.
        let _ = self.values.append(true);
        if let Some(types) = self.types.as_mut() {
            let _ = types.append(any_typed);
        }
    }

    fn append_rendered(&mut self, r: &Rendered) {
        for (k, v) in &r.pairs {
            self.values.keys().append_value(k);
            self.values.values().append_option(v.as_deref());
        }
        let _ = self.values.append(true);
        if let Some(types) = self.types.as_mut() {
            for (k, t) in &r.types {
                types.keys().append_value(k);
                types.values().append_value(t);
            }
            let _ = types.append(!r.types.is_empty());
        }
    }

    fn append_null(&mut self) {
        let _ = self.values.append(false);
        if let Some(t) = self.types.as_mut() {
            let _ = t.append(false);
        }
    }

    fn finish(&mut self, out: &mut Vec<ArrayRef>) {
        out.push(Arc::new(self.values.finish()));
        if let Some(t) = self.types.as_mut() {
            out.push(Arc::new(t.finish()));
        }
    }
}

/// The columns that say where a record came from, shared by all three tables.
struct Origin {
    service: StringBuilder,
    resource: AttrCols,
    resource_dropped: UInt32Builder,
    resource_schema_url: StringBuilder,
    scope_name: StringBuilder,
    scope_version: StringBuilder,
    scope_attrs: AttrCols,
    scope_dropped: UInt32Builder,
    scope_schema_url: StringBuilder,
    attrs: AttrCols,
    dropped: UInt32Builder,
}

/// Resource and scope context of the records being converted.
struct Context<'a> {
    resource: Rendered,
    service: String,
    resource_dropped: u32,
    resource_schema_url: &'a str,
    scope: Option<&'a InstrumentationScope>,
    scope_attrs: Rendered,
    scope_schema_url: &'a str,
}

impl<'a> Context<'a> {
    fn new(resource: Option<&'a Resource>, resource_schema_url: &'a str) -> Self {
        let rendered = Rendered::new(resource.map_or(&[][..], |r| &r.attributes));
        Context {
            service: rendered.service_name().to_owned(),
            resource: rendered,
            resource_dropped: resource.map_or(0, |r| r.dropped_attributes_count),
            resource_schema_url,
            scope: None,
            scope_attrs: Rendered::default(),
            scope_schema_url: "",
        }
    }

    fn with_scope(&mut self, scope: Option<&'a InstrumentationScope>, schema_url: &'a str) {
        self.scope = scope;
        self.scope_attrs = Rendered::new(scope.map_or(&[][..], |s| &s.attributes));
        self.scope_schema_url = schema_url;
    }
}

fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

impl Origin {
    fn with_capacity(cap: &OriginCap) -> Self {
        Origin {
            service: cap.service.builder(),
            resource: AttrCols::with_capacity(&cap.resource, true),
            resource_dropped: UInt32Builder::with_capacity(cap.rows),
            resource_schema_url: cap.resource_schema_url.builder(),
            scope_name: cap.scope_name.builder(),
            scope_version: cap.scope_version.builder(),
            scope_attrs: AttrCols::with_capacity(&cap.scope_attrs, false),
            scope_dropped: UInt32Builder::with_capacity(cap.rows),
            scope_schema_url: cap.scope_schema_url.builder(),
            attrs: AttrCols::with_capacity(&cap.attrs, true),
            dropped: UInt32Builder::with_capacity(cap.rows),
        }
    }

    fn append(&mut self, cx: &Context<'_>, attrs: &[KeyValue], dropped: u32) {
        self.service.append_value(&cx.service);
        self.resource.append_rendered(&cx.resource);
        self.resource_dropped.append_value(cx.resource_dropped);
        self.resource_schema_url
            .append_option(non_empty(cx.resource_schema_url));
        self.scope_name
            .append_option(cx.scope.and_then(|s| non_empty(&s.name)));
        self.scope_version
            .append_option(cx.scope.and_then(|s| non_empty(&s.version)));
        if cx.scope.is_some_and(|s| !s.attributes.is_empty()) {
            self.scope_attrs.append_rendered(&cx.scope_attrs);
        } else {
            self.scope_attrs.append_null();
        }
        self.scope_dropped
            .append_value(cx.scope.map_or(0, |s| s.dropped_attributes_count));
        self.scope_schema_url
            .append_option(non_empty(cx.scope_schema_url));
        self.attrs.append(attrs);
        self.dropped.append_value(dropped);
    }

    fn finish(&mut self, out: &mut Vec<ArrayRef>) {
        out.push(Arc::new(self.service.finish()));
        self.resource.finish(out);
        out.push(Arc::new(self.resource_dropped.finish()));
        out.push(Arc::new(self.resource_schema_url.finish()));
        out.push(Arc::new(self.scope_name.finish()));
        out.push(Arc::new(self.scope_version.finish()));
        self.scope_attrs.finish(out);
        out.push(Arc::new(self.scope_dropped.finish()));
        out.push(Arc::new(self.scope_schema_url.finish()));
        self.attrs.finish(out);
        out.push(Arc::new(self.dropped.finish()));
    }
}

fn ts_builder(cap: usize) -> TimestampNanosecondBuilder {
    TimestampNanosecondBuilder::with_capacity(cap).with_timezone("UTC")
}

// ---------------------------------------------------------------- ids and times

/// Hex of an id, `None` when absent (empty or all zero), an error when its length is wrong.
fn id_hex(bytes: &[u8], len: usize, what: &str) -> Result<Option<String>, String> {
    if bytes.is_empty() || bytes.iter().all(|b| *b == 0) {
        return Ok(None);
    }
    if bytes.len() != len {
        return Err(format!("{what} must be {len} bytes, got {}", bytes.len()));
    }
    let mut s = String::with_capacity(len * 2);
    for b in bytes {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    Ok(Some(s))
}

/// A u64 nanosecond timestamp as the i64 Arrow stores; past 2262-04-11 it does not fit.
fn ts(ns: u64, what: &str) -> Result<i64, String> {
    i64::try_from(ns)
        .map_err(|_| format!("{what} {ns} is beyond 2262-04-11, the latest time Lumen can store"))
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

// ---------------------------------------------------------------- logs

pub fn logs(req: &ExportLogsServiceRequest) -> Result<Converted> {
    let mut origin_cap = OriginCap::default();
    let [
        mut severity_cap,
        mut body_cap,
        mut body_type_cap,
        mut event_name_cap,
    ] = [StrCap::default(); 4];
    let mut ids = 0;
    for rl in &req.resource_logs {
        for sl in &rl.scope_logs {
            origin_cap.add_context(
                rl.resource.as_ref(),
                &rl.schema_url,
                sl.scope.as_ref(),
                &sl.schema_url,
                sl.log_records.len(),
            );
            for r in &sl.log_records {
                severity_cap.add(r.severity_text.len(), 1);
                body_cap.add(r.body.as_ref().map_or(0, rendered_len), 1);
                let body_type = r.body.as_ref().and_then(|v| v.value.as_ref());
                body_type_cap.add(body_type.and_then(type_name).map_or(0, str::len), 1);
                event_name_cap.add(r.event_name.len(), 1);
                ids += usize::from(!r.trace_id.is_empty());
                origin_cap.attrs.add(&r.attributes, 1);
            }
        }
    }
    let n = origin_cap.rows;
    let mut timestamp = ts_builder(n);
    let mut observed = ts_builder(n);
    let mut severity_number = Int32Builder::with_capacity(n);
    let mut severity_text = severity_cap.builder();
    let mut body = body_cap.builder();
    let mut body_type = body_type_cap.builder();
    let mut trace_id = StringBuilder::with_capacity(n, ids * 32);
    let mut span_id = StringBuilder::with_capacity(n, ids * 16);
    let mut flags = UInt32Builder::with_capacity(n);
    let mut event_name = event_name_cap.builder();
    let mut origin = Origin::with_capacity(&origin_cap);
    let mut out = Converted {
        signal: Signal::Logs,
        batch: RecordBatch::new_empty(Signal::Logs.schema()),
        rejected: 0,
        error: None,
    };
    let received = now_ns();

    for rl in &req.resource_logs {
        let mut cx = Context::new(rl.resource.as_ref(), &rl.schema_url);
        for sl in &rl.scope_logs {
            cx.with_scope(sl.scope.as_ref(), &sl.schema_url);
            for r in &sl.log_records {
                let checked = (|| -> Result<_, String> {
                    let t = ts(r.time_unix_nano, "time_unix_nano")?;
                    let o = ts(r.observed_time_unix_nano, "observed_time_unix_nano")?;
                    let tid = id_hex(&r.trace_id, 16, "trace_id")?;
                    let sid = id_hex(&r.span_id, 8, "span_id")?;
                    Ok((t, o, tid, sid))
                })();
                let (t, o, tid, sid) = match checked {
                    Ok(v) => v,
                    Err(e) => {
                        out.reject(1, || format!("log record rejected: {e}"));
                        continue;
                    }
                };
                // The spec: when the event time is unknown, the observed time stands in.
                let effective = if t != 0 {
                    t
                } else if o != 0 {
                    o
                } else {
                    received
                };
                timestamp.append_value(effective);
                observed.append_option((o != 0).then_some(o));
                severity_number.append_value(r.severity_number);
                severity_text.append_option(non_empty(&r.severity_text));
                match r.body.as_ref() {
                    Some(v) => {
                        match &v.value {
                            Some(Value::StringValue(s)) => body.append_value(s),
                            _ => body.append_option(render(v)),
                        }
                        body_type.append_option(v.value.as_ref().and_then(type_name));
                    }
                    None => {
                        body.append_null();
                        body_type.append_null();
                    }
                }
                trace_id.append_option(tid);
                span_id.append_option(sid);
                flags.append_value(r.flags);
                event_name.append_option(non_empty(&r.event_name));
                origin.append(&cx, &r.attributes, r.dropped_attributes_count);
            }
        }
    }
    let mut cols: Vec<ArrayRef> = vec![
        Arc::new(timestamp.finish()),
        Arc::new(observed.finish()),
        Arc::new(severity_number.finish()),
        Arc::new(severity_text.finish()),
        Arc::new(body.finish()),
        Arc::new(body_type.finish()),
        Arc::new(trace_id.finish()),
        Arc::new(span_id.finish()),
        Arc::new(flags.finish()),
        Arc::new(event_name.finish()),
    ];
    origin.finish(&mut cols);
    out.batch = RecordBatch::try_new(Signal::Logs.schema(), cols)?;
    Ok(out)
}

// ---------------------------------------------------------------- spans

fn span_kind(kind: i32) -> &'static str {
    match kind {
        1 => "SPAN_KIND_INTERNAL",
        2 => "SPAN_KIND_SERVER",
        3 => "SPAN_KIND_CLIENT",
        4 => "SPAN_KIND_PRODUCER",
        5 => "SPAN_KIND_CONSUMER",
        _ => "SPAN_KIND_UNSPECIFIED",
    }
}

fn status_code(code: i32) -> &'static str {
    match code {
        1 => "STATUS_CODE_OK",
        2 => "STATUS_CODE_ERROR",
        _ => "STATUS_CODE_UNSET",
    }
}

/// Child columns of a `List<Struct>`, built flat and assembled at the end.
fn list_array(field: &Field, lengths: Vec<usize>, values: StructArray) -> Result<ArrayRef> {
    let DataType::List(item) = field.data_type() else {
        return Err(crate::Error::Internal(format!(
            "{} is not a list",
            field.name()
        )));
    };
    Ok(Arc::new(ListArray::try_new(
        Arc::clone(item),
        OffsetBuffer::from_lengths(lengths),
        Arc::new(values),
        None,
    )?))
}

pub fn spans(req: &ExportTraceServiceRequest) -> Result<Converted> {
    let mut origin_cap = OriginCap::default();
    let [mut trace_state_cap, mut name_cap, mut status_message_cap] = [StrCap::default(); 3];
    let [mut ev_name_cap, mut l_state_cap] = [StrCap::default(); 2];
    let (mut ev_attrs_cap, mut l_attrs_cap) = (AttrCap::default(), AttrCap::default());
    let mut parents = 0;
    for rs in &req.resource_spans {
        for ss in &rs.scope_spans {
            origin_cap.add_context(
                rs.resource.as_ref(),
                &rs.schema_url,
                ss.scope.as_ref(),
                &ss.schema_url,
                ss.spans.len(),
            );
            for s in &ss.spans {
                parents += usize::from(!s.parent_span_id.is_empty());
                trace_state_cap.add(s.trace_state.len(), 1);
                name_cap.add(s.name.len(), 1);
                status_message_cap.add(s.status.as_ref().map_or(0, |x| x.message.len()), 1);
                for e in &s.events {
                    ev_name_cap.add(e.name.len(), 1);
                    ev_attrs_cap.add(&e.attributes, 1);
                }
                for l in &s.links {
                    l_state_cap.add(l.trace_state.len(), 1);
                    l_attrs_cap.add(&l.attributes, 1);
                }
                origin_cap.attrs.add(&s.attributes, 1);
            }
        }
    }
    let n = origin_cap.rows;
    let (events_n, links_n) = (ev_name_cap.items, l_state_cap.items);
    let mut trace_id = StringBuilder::with_capacity(n, n * 32);
    let mut span_id = StringBuilder::with_capacity(n, n * 16);
    let mut parent = StringBuilder::with_capacity(n, parents * 16);
    let mut trace_state = trace_state_cap.builder();
    let mut flags = UInt32Builder::with_capacity(n);
    let mut name = name_cap.builder();
    // The longest names of span_kind and status_code.
    let mut kind = StringBuilder::with_capacity(n, n * "SPAN_KIND_UNSPECIFIED".len());
    let mut start = ts_builder(n);
    let mut end = ts_builder(n);
    let mut duration = Int64Builder::with_capacity(n);
    let mut status = StringBuilder::with_capacity(n, n * "STATUS_CODE_ERROR".len());
    let mut status_message = status_message_cap.builder();
    let mut event_lens = Vec::with_capacity(n);
    let (mut ev_time, mut ev_name, mut ev_attrs, mut ev_dropped) = (
        ts_builder(events_n),
        ev_name_cap.builder(),
        AttrCols::with_capacity(&ev_attrs_cap, true),
        UInt32Builder::with_capacity(events_n),
    );
    let mut dropped_events = UInt32Builder::with_capacity(n);
    let mut link_lens = Vec::with_capacity(n);
    let (mut l_trace, mut l_span, mut l_state, mut l_attrs, mut l_dropped, mut l_flags) = (
        StringBuilder::with_capacity(links_n, links_n * 32),
        StringBuilder::with_capacity(links_n, links_n * 16),
        l_state_cap.builder(),
        AttrCols::with_capacity(&l_attrs_cap, true),
        UInt32Builder::with_capacity(links_n),
        UInt32Builder::with_capacity(links_n),
    );
    let mut dropped_links = UInt32Builder::with_capacity(n);
    let mut origin = Origin::with_capacity(&origin_cap);
    let mut out = Converted {
        signal: Signal::Spans,
        batch: RecordBatch::new_empty(Signal::Spans.schema()),
        rejected: 0,
        error: None,
    };

    for rs in &req.resource_spans {
        let mut cx = Context::new(rs.resource.as_ref(), &rs.schema_url);
        for ss in &rs.scope_spans {
            cx.with_scope(ss.scope.as_ref(), &ss.schema_url);
            for s in &ss.spans {
                let checked = (|| -> Result<_, String> {
                    let tid = id_hex(&s.trace_id, 16, "trace_id")?
                        .ok_or("trace_id is missing or all zero")?;
                    let sid = id_hex(&s.span_id, 8, "span_id")?
                        .ok_or("span_id is missing or all zero")?;
                    let pid = id_hex(&s.parent_span_id, 8, "parent_span_id")?;
                    let st = ts(s.start_time_unix_nano, "start_time_unix_nano")?;
                    let et = ts(s.end_time_unix_nano, "end_time_unix_nano")?;
                    let mut events = Vec::with_capacity(s.events.len());
                    for e in &s.events {
                        events.push(ts(e.time_unix_nano, "event time_unix_nano")?);
                    }
                    let mut links = Vec::with_capacity(s.links.len());
                    for l in &s.links {
                        links.push((
                            id_hex(&l.trace_id, 16, "link trace_id")?,
                            id_hex(&l.span_id, 8, "link span_id")?,
                        ));
                    }
                    Ok((tid, sid, pid, st, et, events, links))
                })();
                let (tid, sid, pid, st, et, event_times, link_ids) = match checked {
                    Ok(v) => v,
                    Err(e) => {
                        out.reject(1, || format!("span rejected: {e}"));
                        continue;
                    }
                };
                trace_id.append_value(tid);
                span_id.append_value(sid);
                parent.append_option(pid);
                trace_state.append_option(non_empty(&s.trace_state));
                flags.append_value(s.flags);
                name.append_value(&s.name);
                kind.append_value(span_kind(s.kind));
                start.append_value(st);
                end.append_value(et);
                duration.append_value(et.saturating_sub(st));
                let st_ = s.status.as_ref();
                status.append_value(status_code(st_.map_or(0, |x| x.code)));
                status_message.append_option(st_.and_then(|x| non_empty(&x.message)));
                event_lens.push(s.events.len());
                for (e, t) in s.events.iter().zip(event_times) {
                    ev_time.append_value(t);
                    ev_name.append_value(&e.name);
                    ev_attrs.append(&e.attributes);
                    ev_dropped.append_value(e.dropped_attributes_count);
                }
                dropped_events.append_value(s.dropped_events_count);
                link_lens.push(s.links.len());
                for (l, (lt, ls)) in s.links.iter().zip(link_ids) {
                    l_trace.append_option(lt);
                    l_span.append_option(ls);
                    l_state.append_option(non_empty(&l.trace_state));
                    l_attrs.append(&l.attributes);
                    l_dropped.append_value(l.dropped_attributes_count);
                    l_flags.append_value(l.flags);
                }
                dropped_links.append_value(s.dropped_links_count);
                origin.append(&cx, &s.attributes, s.dropped_attributes_count);
            }
        }
    }
    let schema = Signal::Spans.schema();
    let mut ev_cols: Vec<ArrayRef> = vec![Arc::new(ev_time.finish()), Arc::new(ev_name.finish())];
    ev_attrs.finish(&mut ev_cols);
    ev_cols.push(Arc::new(ev_dropped.finish()));
    let events = StructArray::try_new(schema::event_fields(), ev_cols, None)?;
    let mut l_cols: Vec<ArrayRef> = vec![
        Arc::new(l_trace.finish()),
        Arc::new(l_span.finish()),
        Arc::new(l_state.finish()),
    ];
    l_attrs.finish(&mut l_cols);
    l_cols.push(Arc::new(l_dropped.finish()));
    l_cols.push(Arc::new(l_flags.finish()));
    let links = StructArray::try_new(schema::link_fields(), l_cols, None)?;

    let mut cols: Vec<ArrayRef> = vec![
        Arc::new(trace_id.finish()),
        Arc::new(span_id.finish()),
        Arc::new(parent.finish()),
        Arc::new(trace_state.finish()),
        Arc::new(flags.finish()),
        Arc::new(name.finish()),
        Arc::new(kind.finish()),
        Arc::new(start.finish()),
        Arc::new(end.finish()),
        Arc::new(duration.finish()),
        Arc::new(status.finish()),
        Arc::new(status_message.finish()),
        list_array(schema.field_with_name("events")?, event_lens, events)?,
        Arc::new(dropped_events.finish()),
        list_array(schema.field_with_name("links")?, link_lens, links)?,
        Arc::new(dropped_links.finish()),
    ];
    origin.finish(&mut cols);
    out.batch = RecordBatch::try_new(schema, cols)?;
    Ok(out)
}

// ---------------------------------------------------------------- metrics

fn temporality(t: i32) -> &'static str {
    match t {
        1 => "AGGREGATION_TEMPORALITY_DELTA",
        2 => "AGGREGATION_TEMPORALITY_CUMULATIVE",
        _ => "AGGREGATION_TEMPORALITY_UNSPECIFIED",
    }
}

/// One metrics row: the values a data point of any type may carry.
#[derive(Default)]
struct Point<'a> {
    time: u64,
    start: u64,
    flags: u32,
    attributes: &'a [KeyValue],
    value: Option<f64>,
    value_int: Option<i64>,
    is_monotonic: Option<bool>,
    temporality: Option<&'static str>,
    count: Option<u64>,
    sum: Option<f64>,
    min: Option<f64>,
    max: Option<f64>,
    bucket_counts: Option<&'a [u64]>,
    explicit_bounds: Option<&'a [f64]>,
    scale: Option<i32>,
    zero_count: Option<u64>,
    zero_threshold: Option<f64>,
    positive: Option<(i32, &'a [u64])>,
    negative: Option<(i32, &'a [u64])>,
    quantiles: Option<&'a [ValueAtQuantile]>,
    exemplars: &'a [Exemplar],
}

struct MetricCols {
    name: StringBuilder,
    mtype: StringBuilder,
    description: StringBuilder,
    unit: StringBuilder,
    metadata: AttrCols,
    time: TimestampNanosecondBuilder,
    start: TimestampNanosecondBuilder,
    flags: UInt32Builder,
    value: Float64Builder,
    value_int: Int64Builder,
    is_monotonic: BooleanBuilder,
    temporality: StringBuilder,
    count: UInt64Builder,
    sum: Float64Builder,
    min: Float64Builder,
    max: Float64Builder,
    bucket_counts: ListBuilder<UInt64Builder>,
    explicit_bounds: ListBuilder<Float64Builder>,
    scale: Int32Builder,
    zero_count: UInt64Builder,
    zero_threshold: Float64Builder,
    pos_offset: Int32Builder,
    pos_counts: ListBuilder<UInt64Builder>,
    neg_offset: Int32Builder,
    neg_counts: ListBuilder<UInt64Builder>,
    quantile_lens: Vec<Option<usize>>,
    q_quantile: Float64Builder,
    q_value: Float64Builder,
    exemplar_lens: Vec<Option<usize>>,
    x_time: TimestampNanosecondBuilder,
    x_value: Float64Builder,
    x_value_int: Int64Builder,
    x_trace: StringBuilder,
    x_span: StringBuilder,
    x_attrs: AttrCols,
    origin: Origin,
}

fn append_list<B, T>(b: &mut ListBuilder<B>, v: Option<&[T]>)
where
    B: datafusion::arrow::array::ArrayBuilder + Extend<Option<T>>,
    T: Copy,
{
    match v {
        Some(v) => {
            b.values().extend(v.iter().map(|x| Some(*x)));
            b.append(true);
        }
        None => b.append(false),
    }
}

/// Capacity of the metrics columns, counted over the request's data points.
#[derive(Default)]
struct MetricCap {
    name: StrCap,
    mtype: StrCap,
    description: StrCap,
    unit: StrCap,
    metadata: AttrCap,
    temporality: StrCap,
    buckets: usize,
    bounds: usize,
    positive: usize,
    negative: usize,
    quantiles: usize,
    exemplars: usize,
    exemplar_ids: usize,
    exemplar_attrs: AttrCap,
    origin: OriginCap,
}

impl MetricCap {
    fn add(
        &mut self,
        m: &opentelemetry_proto::tonic::metrics::v1::Metric,
        mtype: &str,
        p: &Point<'_>,
    ) {
        self.name.add(m.name.len(), 1);
        self.mtype.add(mtype.len(), 1);
        self.description.add(m.description.len(), 1);
        self.unit.add(m.unit.len(), 1);
        self.metadata.add(&m.metadata, 1);
        self.temporality.add(p.temporality.map_or(0, str::len), 1);
        self.buckets += p.bucket_counts.map_or(0, <[u64]>::len);
        self.bounds += p.explicit_bounds.map_or(0, <[f64]>::len);
        self.positive += p.positive.map_or(0, |b| b.1.len());
        self.negative += p.negative.map_or(0, |b| b.1.len());
        self.quantiles += p.quantiles.map_or(0, <[ValueAtQuantile]>::len);
        self.exemplars += p.exemplars.len();
        for e in p.exemplars {
            self.exemplar_ids += usize::from(!e.trace_id.is_empty());
            self.exemplar_attrs.add(&e.filtered_attributes, 1);
        }
        self.origin.attrs.add(p.attributes, 1);
    }
}

impl MetricCols {
    fn with_capacity(cap: &MetricCap) -> Self {
        let n = cap.origin.rows;
        let x = cap.exemplars;
        MetricCols {
            name: cap.name.builder(),
            mtype: cap.mtype.builder(),
            description: cap.description.builder(),
            unit: cap.unit.builder(),
            metadata: AttrCols::with_capacity(&cap.metadata, false),
            time: ts_builder(n),
            start: ts_builder(n),
            flags: UInt32Builder::with_capacity(n),
            value: Float64Builder::with_capacity(n),
            value_int: Int64Builder::with_capacity(n),
            is_monotonic: BooleanBuilder::with_capacity(n),
            temporality: cap.temporality.builder(),
            count: UInt64Builder::with_capacity(n),
            sum: Float64Builder::with_capacity(n),
            min: Float64Builder::with_capacity(n),
            max: Float64Builder::with_capacity(n),
            bucket_counts: ListBuilder::with_capacity(UInt64Builder::with_capacity(cap.buckets), n),
            explicit_bounds: ListBuilder::with_capacity(
                Float64Builder::with_capacity(cap.bounds),
                n,
            ),
            scale: Int32Builder::with_capacity(n),
            zero_count: UInt64Builder::with_capacity(n),
            zero_threshold: Float64Builder::with_capacity(n),
            pos_offset: Int32Builder::with_capacity(n),
            pos_counts: ListBuilder::with_capacity(UInt64Builder::with_capacity(cap.positive), n),
            neg_offset: Int32Builder::with_capacity(n),
            neg_counts: ListBuilder::with_capacity(UInt64Builder::with_capacity(cap.negative), n),
            quantile_lens: Vec::with_capacity(n),
            q_quantile: Float64Builder::with_capacity(cap.quantiles),
            q_value: Float64Builder::with_capacity(cap.quantiles),
            exemplar_lens: Vec::with_capacity(n),
            x_time: ts_builder(x),
            x_value: Float64Builder::with_capacity(x),
            x_value_int: Int64Builder::with_capacity(x),
            x_trace: StringBuilder::with_capacity(x, cap.exemplar_ids * 32),
            x_span: StringBuilder::with_capacity(x, cap.exemplar_ids * 16),
            x_attrs: AttrCols::with_capacity(&cap.exemplar_attrs, true),
            origin: Origin::with_capacity(&cap.origin),
        }
    }

    /// Checks what could make the point unstorable, before anything is appended.
    fn check(p: &Point<'_>) -> Result<(i64, i64, Vec<CheckedExemplar>), String> {
        let t = ts(p.time, "time_unix_nano")?;
        let s = ts(p.start, "start_time_unix_nano")?;
        let mut ex = Vec::with_capacity(p.exemplars.len());
        for e in p.exemplars {
            ex.push((
                ts(e.time_unix_nano, "exemplar time_unix_nano")?,
                id_hex(&e.trace_id, 16, "exemplar trace_id")?,
                id_hex(&e.span_id, 8, "exemplar span_id")?,
            ));
        }
        Ok((t, s, ex))
    }

    fn push(
        &mut self,
        cx: &Context<'_>,
        m: &opentelemetry_proto::tonic::metrics::v1::Metric,
        mtype: &str,
        p: Point<'_>,
        out: &mut Converted,
    ) {
        let (t, s, ex) = match Self::check(&p) {
            Ok(v) => v,
            Err(e) => {
                out.reject(1, || {
                    format!("data point of metric {:?} rejected: {e}", m.name)
                });
                return;
            }
        };
        self.name.append_value(&m.name);
        self.mtype.append_value(mtype);
        self.description.append_option(non_empty(&m.description));
        self.unit.append_option(non_empty(&m.unit));
        if m.metadata.is_empty() {
            self.metadata.append_null();
        } else {
            self.metadata.append(&m.metadata);
        }
        self.time.append_value(t);
        self.start.append_option((s != 0).then_some(s));
        self.flags.append_value(p.flags);
        self.value.append_option(p.value);
        self.value_int.append_option(p.value_int);
        self.is_monotonic.append_option(p.is_monotonic);
        self.temporality.append_option(p.temporality);
        self.count.append_option(p.count);
        self.sum.append_option(p.sum);
        self.min.append_option(p.min);
        self.max.append_option(p.max);
        append_list(&mut self.bucket_counts, p.bucket_counts);
        append_list(&mut self.explicit_bounds, p.explicit_bounds);
        self.scale.append_option(p.scale);
        self.zero_count.append_option(p.zero_count);
        self.zero_threshold.append_option(p.zero_threshold);
        self.pos_offset.append_option(p.positive.map(|x| x.0));
        append_list(&mut self.pos_counts, p.positive.map(|x| x.1));
        self.neg_offset.append_option(p.negative.map(|x| x.0));
        append_list(&mut self.neg_counts, p.negative.map(|x| x.1));
        match p.quantiles {
            Some(q) => {
                for v in q {
                    self.q_quantile.append_value(v.quantile);
                    self.q_value.append_value(v.value);
                }
                self.quantile_lens.push(Some(q.len()));
            }
            None => self.quantile_lens.push(None),
        }
        if p.exemplars.is_empty() {
            self.exemplar_lens.push(None);
        } else {
            for (e, (et, tid, sid)) in p.exemplars.iter().zip(ex) {
                self.x_time.append_value(et);
                self.x_value.append_option(match e.value {
                    Some(exemplar::Value::AsDouble(d)) => Some(d),
                    Some(exemplar::Value::AsInt(i)) => Some(i as f64),
                    None => None,
                });
                self.x_value_int.append_option(match e.value {
                    Some(exemplar::Value::AsInt(i)) => Some(i),
                    _ => None,
                });
                self.x_trace.append_option(tid);
                self.x_span.append_option(sid);
                self.x_attrs.append(&e.filtered_attributes);
            }
            self.exemplar_lens.push(Some(p.exemplars.len()));
        }
        self.origin.append(cx, p.attributes, 0);
    }

    fn finish(mut self) -> Result<RecordBatch> {
        let schema = Signal::Metrics.schema();
        let nullable_list =
            |field: &Field, lens: Vec<Option<usize>>, values: StructArray| -> Result<ArrayRef> {
                let DataType::List(item) = field.data_type() else {
                    return Err(crate::Error::Internal(format!(
                        "{} is not a list",
                        field.name()
                    )));
                };
                let nulls: datafusion::arrow::buffer::NullBuffer =
                    lens.iter().map(Option::is_some).collect();
                let offsets = OffsetBuffer::from_lengths(lens.iter().map(|l| l.unwrap_or(0)));
                Ok(Arc::new(ListArray::try_new(
                    Arc::clone(item),
                    offsets,
                    Arc::new(values),
                    Some(nulls),
                )?))
            };
        let quantiles = StructArray::try_new(
            schema::quantile_fields(),
            vec![
                Arc::new(self.q_quantile.finish()),
                Arc::new(self.q_value.finish()),
            ],
            None,
        )?;
        let mut x_cols: Vec<ArrayRef> = vec![
            Arc::new(self.x_time.finish()),
            Arc::new(self.x_value.finish()),
            Arc::new(self.x_value_int.finish()),
            Arc::new(self.x_trace.finish()),
            Arc::new(self.x_span.finish()),
        ];
        self.x_attrs.finish(&mut x_cols);
        let exemplars = StructArray::try_new(schema::exemplar_fields(), x_cols, None)?;
        let mut metadata = Vec::new();
        self.metadata.finish(&mut metadata);
        let mut cols: Vec<ArrayRef> = vec![
            Arc::new(self.name.finish()),
            Arc::new(self.mtype.finish()),
            Arc::new(self.description.finish()),
            Arc::new(self.unit.finish()),
        ];
        cols.extend(metadata);
        cols.extend([
            Arc::new(self.time.finish()) as ArrayRef,
            Arc::new(self.start.finish()),
            Arc::new(self.flags.finish()),
            Arc::new(self.value.finish()),
            Arc::new(self.value_int.finish()),
            Arc::new(self.is_monotonic.finish()),
            Arc::new(self.temporality.finish()),
            Arc::new(self.count.finish()),
            Arc::new(self.sum.finish()),
            Arc::new(self.min.finish()),
            Arc::new(self.max.finish()),
            Arc::new(self.bucket_counts.finish()),
            Arc::new(self.explicit_bounds.finish()),
            Arc::new(self.scale.finish()),
            Arc::new(self.zero_count.finish()),
            Arc::new(self.zero_threshold.finish()),
            Arc::new(self.pos_offset.finish()),
            Arc::new(self.pos_counts.finish()),
            Arc::new(self.neg_offset.finish()),
            Arc::new(self.neg_counts.finish()),
            nullable_list(
                schema.field_with_name("quantiles")?,
                self.quantile_lens,
                quantiles,
            )?,
            nullable_list(
                schema.field_with_name("exemplars")?,
                self.exemplar_lens,
                exemplars,
            )?,
        ]);
        self.origin.finish(&mut cols);
        // Filled in by the store (`lumen_store::series`).
        let rows = cols.first().map_or(0, |c| c.len());
        cols.push(datafusion::arrow::array::new_null_array(
            &DataType::UInt64,
            rows,
        ));
        Ok(RecordBatch::try_new(schema, cols)?)
    }
}

/// Calls `f` with each data point of `d` as a row, with its metric type.
fn points<'a>(d: &'a Data, mut f: impl FnMut(&'static str, Point<'a>)) {
    match d {
        Data::Gauge(g) => {
            for dp in &g.data_points {
                let (value, value_int) = number(dp.value);
                let p = Point {
                    time: dp.time_unix_nano,
                    start: dp.start_time_unix_nano,
                    flags: dp.flags,
                    attributes: &dp.attributes,
                    value,
                    value_int,
                    exemplars: &dp.exemplars,
                    ..Default::default()
                };
                f("gauge", p);
            }
        }
        Data::Sum(s) => {
            for dp in &s.data_points {
                let (value, value_int) = number(dp.value);
                let p = Point {
                    time: dp.time_unix_nano,
                    start: dp.start_time_unix_nano,
                    flags: dp.flags,
                    attributes: &dp.attributes,
                    value,
                    value_int,
                    is_monotonic: Some(s.is_monotonic),
                    temporality: Some(temporality(s.aggregation_temporality)),
                    exemplars: &dp.exemplars,
                    ..Default::default()
                };
                f("sum", p);
            }
        }
        Data::Histogram(h) => {
            for dp in &h.data_points {
                let p = Point {
                    time: dp.time_unix_nano,
                    start: dp.start_time_unix_nano,
                    flags: dp.flags,
                    attributes: &dp.attributes,
                    temporality: Some(temporality(h.aggregation_temporality)),
                    count: Some(dp.count),
                    sum: dp.sum,
                    min: dp.min,
                    max: dp.max,
                    bucket_counts: Some(&dp.bucket_counts),
                    explicit_bounds: Some(&dp.explicit_bounds),
                    exemplars: &dp.exemplars,
                    ..Default::default()
                };
                f("histogram", p);
            }
        }
        Data::ExponentialHistogram(h) => {
            for dp in &h.data_points {
                let p = Point {
                    time: dp.time_unix_nano,
                    start: dp.start_time_unix_nano,
                    flags: dp.flags,
                    attributes: &dp.attributes,
                    temporality: Some(temporality(h.aggregation_temporality)),
                    count: Some(dp.count),
                    sum: dp.sum,
                    min: dp.min,
                    max: dp.max,
                    scale: Some(dp.scale),
                    zero_count: Some(dp.zero_count),
                    zero_threshold: Some(dp.zero_threshold),
                    positive: dp
                        .positive
                        .as_ref()
                        .map(|b| (b.offset, &b.bucket_counts[..])),
                    negative: dp
                        .negative
                        .as_ref()
                        .map(|b| (b.offset, &b.bucket_counts[..])),
                    exemplars: &dp.exemplars,
                    ..Default::default()
                };
                f("exponential_histogram", p);
            }
        }
        Data::Summary(s) => {
            for dp in &s.data_points {
                let p = Point {
                    time: dp.time_unix_nano,
                    start: dp.start_time_unix_nano,
                    flags: dp.flags,
                    attributes: &dp.attributes,
                    count: Some(dp.count),
                    sum: Some(dp.sum),
                    quantiles: Some(&dp.quantile_values),
                    ..Default::default()
                };
                f("summary", p);
            }
        }
    }
}

pub fn metrics(req: &ExportMetricsServiceRequest) -> Result<Converted> {
    let mut cap = MetricCap::default();
    for rm in &req.resource_metrics {
        for sm in &rm.scope_metrics {
            for m in &sm.metrics {
                let Some(d) = m.data.as_ref().filter(|_| !m.name.is_empty()) else {
                    continue;
                };
                cap.origin.add_context(
                    rm.resource.as_ref(),
                    &rm.schema_url,
                    sm.scope.as_ref(),
                    &sm.schema_url,
                    data_points(d),
                );
                points(d, |mtype, p| cap.add(m, mtype, &p));
            }
        }
    }
    let mut cols = MetricCols::with_capacity(&cap);
    let mut out = Converted {
        signal: Signal::Metrics,
        batch: RecordBatch::new_empty(Signal::Metrics.schema()),
        rejected: 0,
        error: None,
    };
    for rm in &req.resource_metrics {
        let mut cx = Context::new(rm.resource.as_ref(), &rm.schema_url);
        for sm in &rm.scope_metrics {
            cx.with_scope(sm.scope.as_ref(), &sm.schema_url);
            for m in &sm.metrics {
                if m.name.is_empty() {
                    let points = m.data.as_ref().map_or(1, data_points) as u64;
                    out.reject(points, || "metric rejected: its name is empty".into());
                    continue;
                }
                match &m.data {
                    None => out.reject(1, || {
                        format!("metric {:?} rejected: it has no data", m.name)
                    }),
                    Some(d) => points(d, |mtype, p| cols.push(&cx, m, mtype, p, &mut out)),
                }
            }
        }
    }
    out.batch = cols.finish()?;
    Ok(out)
}

fn data_points(d: &Data) -> usize {
    match d {
        Data::Gauge(g) => g.data_points.len(),
        Data::Sum(s) => s.data_points.len(),
        Data::Histogram(h) => h.data_points.len(),
        Data::ExponentialHistogram(h) => h.data_points.len(),
        Data::Summary(s) => s.data_points.len(),
    }
}

fn number(v: Option<number_data_point::Value>) -> (Option<f64>, Option<i64>) {
    match v {
        Some(number_data_point::Value::AsDouble(d)) => (Some(d), None),
        Some(number_data_point::Value::AsInt(i)) => (Some(i as f64), Some(i)),
        None => (None, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{ArrayValue, KeyValueList};
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, span};

    fn s(v: &str) -> AnyValue {
        AnyValue {
            value: Some(Value::StringValue(v.into())),
        }
    }

    #[test]
    fn renders_every_anyvalue_kind() {
        let nested = AnyValue {
            value: Some(Value::KvlistValue(KeyValueList {
                values: vec![KeyValue {
                    key: "inner".into(),
                    value: Some(s("x")),
                    key_strindex: 0,
                }],
            })),
        };
        let arr = AnyValue {
            value: Some(Value::ArrayValue(ArrayValue {
                values: vec![
                    s("a"),
                    AnyValue {
                        value: Some(Value::IntValue(1)),
                    },
                ],
            })),
        };
        assert_eq!(render(&nested).as_deref(), Some(r#"{"inner":"x"}"#));
        assert_eq!(render(&arr).as_deref(), Some(r#"["a",1]"#));
        assert_eq!(
            render(&AnyValue {
                value: Some(Value::DoubleValue(3.25))
            })
            .as_deref(),
            Some("3.25")
        );
        assert_eq!(
            render(&AnyValue {
                value: Some(Value::BoolValue(true))
            })
            .as_deref(),
            Some("true")
        );
        assert_eq!(
            render(&AnyValue {
                value: Some(Value::BytesValue(vec![1, 2, 3]))
            })
            .as_deref(),
            Some("AQID")
        );
        assert_eq!(render(&AnyValue { value: None }), None);
    }

    #[test]
    fn logs_convert_and_bad_records_are_rejected_alone() {
        let good = LogRecord {
            time_unix_nano: 5,
            body: Some(s("hello")),
            trace_id: vec![1; 16],
            ..Default::default()
        };
        let bad_id = LogRecord {
            trace_id: vec![1; 3],
            ..Default::default()
        };
        let too_late = LogRecord {
            time_unix_nano: u64::MAX,
            ..Default::default()
        };
        let req = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                scope_logs: vec![ScopeLogs {
                    log_records: vec![good, bad_id, too_late],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let c = logs(&req).expect("converts");
        assert_eq!(c.batch.num_rows(), 1);
        assert_eq!(c.rejected, 2);
        assert!(
            c.error
                .as_deref()
                .is_some_and(|e| e.contains("trace_id must be 16 bytes")),
            "{:?}",
            c.error
        );
    }

    #[test]
    fn spans_with_events_and_links_convert() {
        let sp = Span {
            trace_id: vec![7; 16],
            span_id: vec![8; 8],
            name: "op".into(),
            kind: 2,
            start_time_unix_nano: 10,
            end_time_unix_nano: 30,
            events: vec![span::Event {
                time_unix_nano: 15,
                name: "ev".into(),
                ..Default::default()
            }],
            links: vec![span::Link {
                trace_id: vec![9; 16],
                span_id: vec![9; 8],
                ..Default::default()
            }],
            ..Default::default()
        };
        let req = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![sp],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let c = spans(&req).expect("converts");
        assert_eq!(c.batch.num_rows(), 1);
        assert_eq!(c.rejected, 0);
    }
}
