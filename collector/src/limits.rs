//! Attribute limits, applied to a decoded export before conversion, as the
//! OpenTelemetry SDKs apply theirs: past `max_attributes` a list's extra
//! attributes are dropped and counted in the record's
//! `dropped_attributes_count`; a string (or bytes) value longer than
//! `max_value_bytes` is cut at a character boundary. Metric data points keep
//! their attributes (they name the series; truncating them would merge
//! series), but their values are cut too.

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};

use crate::Request;

/// What the limits changed in one request.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    pub dropped: u64,
    pub truncated: u64,
}

#[derive(Debug, Clone, Copy)]
pub struct AttributeLimits {
    pub max_attributes: usize,
    pub max_value_bytes: usize,
    /// Levels of arrays and maps in one value; a container at the limit
    /// is emptied (the decoders refuse far deeper input outright).
    pub max_depth: usize,
}

impl Default for AttributeLimits {
    fn default() -> Self {
        AttributeLimits {
            max_attributes: 128,
            max_value_bytes: 32 << 10,
            max_depth: 32,
        }
    }
}

impl AttributeLimits {
    /// Applies the limits to every attribute list of `req`.
    pub fn apply(&self, req: &mut Request) -> Applied {
        let mut a = Applied::default();
        match req {
            Request::Logs(r) => {
                for rl in &mut r.resource_logs {
                    if let Some(res) = &mut rl.resource {
                        self.list(
                            &mut res.attributes,
                            Some(&mut res.dropped_attributes_count),
                            &mut a,
                        );
                    }
                    for sl in &mut rl.scope_logs {
                        if let Some(s) = &mut sl.scope {
                            self.list(
                                &mut s.attributes,
                                Some(&mut s.dropped_attributes_count),
                                &mut a,
                            );
                        }
                        for l in &mut sl.log_records {
                            self.list(
                                &mut l.attributes,
                                Some(&mut l.dropped_attributes_count),
                                &mut a,
                            );
                            if let Some(b) = &mut l.body {
                                self.value(b, 1, &mut a);
                            }
                        }
                    }
                }
            }
            Request::Traces(r) => {
                for rs in &mut r.resource_spans {
                    if let Some(res) = &mut rs.resource {
                        self.list(
                            &mut res.attributes,
                            Some(&mut res.dropped_attributes_count),
                            &mut a,
                        );
                    }
                    for ss in &mut rs.scope_spans {
                        if let Some(s) = &mut ss.scope {
                            self.list(
                                &mut s.attributes,
                                Some(&mut s.dropped_attributes_count),
                                &mut a,
                            );
                        }
                        for sp in &mut ss.spans {
                            self.list(
                                &mut sp.attributes,
                                Some(&mut sp.dropped_attributes_count),
                                &mut a,
                            );
                            for e in &mut sp.events {
                                self.list(
                                    &mut e.attributes,
                                    Some(&mut e.dropped_attributes_count),
                                    &mut a,
                                );
                            }
                            for l in &mut sp.links {
                                self.list(
                                    &mut l.attributes,
                                    Some(&mut l.dropped_attributes_count),
                                    &mut a,
                                );
                            }
                        }
                    }
                }
            }
            Request::Metrics(r) => {
                for rm in &mut r.resource_metrics {
                    if let Some(res) = &mut rm.resource {
                        self.list(
                            &mut res.attributes,
                            Some(&mut res.dropped_attributes_count),
                            &mut a,
                        );
                    }
                    for sm in &mut rm.scope_metrics {
                        if let Some(s) = &mut sm.scope {
                            self.list(
                                &mut s.attributes,
                                Some(&mut s.dropped_attributes_count),
                                &mut a,
                            );
                        }
                    }
                }
            }
        }
        a
    }

    fn list(&self, attrs: &mut Vec<KeyValue>, dropped: Option<&mut u32>, a: &mut Applied) {
        if attrs.len() > self.max_attributes {
            let extra = attrs.len() - self.max_attributes;
            attrs.truncate(self.max_attributes);
            a.dropped += extra as u64;
            if let Some(d) = dropped {
                *d = d.saturating_add(u32::try_from(extra).unwrap_or(u32::MAX));
            }
        }
        for kv in attrs.iter_mut() {
            if let Some(v) = &mut kv.value {
                self.value(v, 1, a);
            }
        }
    }

    /// Cuts `v`, found `depth` levels deep (1: an attribute's own value).
    fn value(&self, v: &mut AnyValue, depth: usize, a: &mut Applied) {
        match &mut v.value {
            Some(Value::StringValue(s)) if s.len() > self.max_value_bytes => {
                let mut cut = self.max_value_bytes;
                while !s.is_char_boundary(cut) {
                    cut -= 1;
                }
                s.truncate(cut);
                a.truncated += 1;
            }
            Some(Value::BytesValue(b)) if b.len() > self.max_value_bytes => {
                b.truncate(self.max_value_bytes);
                a.truncated += 1;
            }
            // At the limit, a container holding containers is emptied.
            Some(Value::ArrayValue(arr))
                if depth >= self.max_depth && arr.values.iter().any(is_container) =>
            {
                arr.values.clear();
                a.truncated += 1;
            }
            Some(Value::KvlistValue(kvs))
                if depth >= self.max_depth
                    && kvs
                        .values
                        .iter()
                        .any(|kv| kv.value.as_ref().is_some_and(is_container)) =>
            {
                kvs.values.clear();
                a.truncated += 1;
            }
            Some(Value::ArrayValue(arr)) => {
                for x in &mut arr.values {
                    self.value(x, depth + 1, a);
                }
            }
            Some(Value::KvlistValue(kvs)) => {
                for kv in &mut kvs.values {
                    if let Some(x) = &mut kv.value {
                        self.value(x, depth + 1, a);
                    }
                }
            }
            _ => {}
        }
    }
}

fn is_container(v: &AnyValue) -> bool {
    matches!(v.value, Some(Value::ArrayValue(_) | Value::KvlistValue(_)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};

    fn s(v: &str) -> Option<AnyValue> {
        Some(AnyValue {
            value: Some(Value::StringValue(v.into())),
        })
    }

    #[test]
    fn extra_attributes_are_dropped_and_counted_long_values_cut() {
        let attrs: Vec<KeyValue> = (0..10)
            .map(|i| KeyValue {
                key: format!("k{i}"),
                value: s(&"é".repeat(20)),
                ..Default::default()
            })
            .collect();
        let mut req = Request::Logs(ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                scope_logs: vec![ScopeLogs {
                    log_records: vec![LogRecord {
                        attributes: attrs,
                        dropped_attributes_count: 2,
                        body: s(&"x".repeat(100)),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        });
        let limits = AttributeLimits {
            max_attributes: 4,
            max_value_bytes: 15,
            max_depth: 32,
        };
        let applied = limits.apply(&mut req);
        assert_eq!(
            applied,
            Applied {
                dropped: 6,
                truncated: 5
            }
        );
        let Request::Logs(r) = req else { panic!() };
        let l = &r.resource_logs[0].scope_logs[0].log_records[0];
        assert_eq!(l.attributes.len(), 4);
        assert_eq!(l.dropped_attributes_count, 8);
        // 15 bytes end inside the 8th "é" (2 bytes each): cut to 14.
        let Some(Value::StringValue(v)) =
            l.attributes[0].value.as_ref().and_then(|v| v.value.clone())
        else {
            panic!()
        };
        assert_eq!(v, "é".repeat(7));
    }

    /// `levels` arrays around a string.
    fn nested(levels: usize) -> AnyValue {
        let mut v = AnyValue {
            value: Some(Value::StringValue("leaf".into())),
        };
        for _ in 0..levels {
            v = AnyValue {
                value: Some(Value::ArrayValue(
                    opentelemetry_proto::tonic::common::v1::ArrayValue { values: vec![v] },
                )),
            };
        }
        v
    }

    fn depth(v: &AnyValue) -> usize {
        match &v.value {
            Some(Value::ArrayValue(a)) => 1 + a.values.iter().map(depth).max().unwrap_or(0),
            _ => 0,
        }
    }

    #[test]
    fn values_nested_past_the_depth_limit_are_cut_there() {
        let mut req = Request::Logs(ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                scope_logs: vec![ScopeLogs {
                    log_records: vec![LogRecord {
                        body: Some(nested(10)),
                        attributes: vec![
                            KeyValue {
                                key: "deep".into(),
                                value: Some(nested(5)),
                                ..Default::default()
                            },
                            KeyValue {
                                key: "fits".into(),
                                value: Some(nested(3)),
                                ..Default::default()
                            },
                        ],
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        });
        let limits = AttributeLimits {
            max_depth: 3,
            ..AttributeLimits::default()
        };
        let applied = limits.apply(&mut req);
        assert_eq!(applied.truncated, 2);
        let Request::Logs(r) = req else { panic!() };
        let l = &r.resource_logs[0].scope_logs[0].log_records[0];
        // Three levels kept, the third emptied.
        assert_eq!(depth(l.body.as_ref().expect("body")), 3);
        assert_eq!(depth(l.attributes[0].value.as_ref().expect("value")), 3);
        assert_eq!(l.attributes[1].value, Some(nested(3)));
    }
}
