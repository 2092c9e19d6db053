//! The Arrow schemas of the three tables. DESIGN.md fixes the documented
//! columns; the extra ones keep every OTLP field (dropped counts, scope
//! attributes, attribute value types) so nothing a client sent is lost.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};

/// One of the three telemetry signals. Its `u8` tag is part of the WAL format.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Signal {
    Logs,
    Spans,
    Metrics,
}

impl Signal {
    pub const ALL: [Signal; 3] = [Signal::Logs, Signal::Spans, Signal::Metrics];

    /// The SQL table name, also used for directory names and metric labels.
    pub fn table(self) -> &'static str {
        match self {
            Signal::Logs => "logs",
            Signal::Spans => "spans",
            Signal::Metrics => "metrics",
        }
    }

    pub fn tag(self) -> u8 {
        match self {
            Signal::Logs => 1,
            Signal::Spans => 2,
            Signal::Metrics => 3,
        }
    }

    pub fn from_tag(tag: u8) -> Option<Self> {
        match tag {
            1 => Some(Signal::Logs),
            2 => Some(Signal::Spans),
            3 => Some(Signal::Metrics),
            _ => None,
        }
    }

    pub fn index(self) -> usize {
        self.tag() as usize - 1
    }

    pub fn schema(self) -> SchemaRef {
        match self {
            Signal::Logs => LOGS.clone(),
            Signal::Spans => SPANS.clone(),
            Signal::Metrics => METRICS.clone(),
        }
    }

    /// The column holding each row's point in time, used for pruning.
    pub fn time_column(self) -> &'static str {
        match self {
            Signal::Logs | Signal::Metrics => "timestamp",
            Signal::Spans => "start_time",
        }
    }
}

impl std::fmt::Display for Signal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.table())
    }
}

/// `Timestamp(ns, "UTC")`.
pub fn ts_type() -> DataType {
    DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()))
}

/// The (key, value) pairs of row `i` of a `Map<Utf8, Utf8>` column, in
/// order; NULL values as "", a NULL map as no pairs.
pub fn map_entries(m: &datafusion::arrow::array::MapArray, i: usize) -> Vec<(String, String)> {
    use datafusion::arrow::array::{Array, AsArray};
    if m.is_null(i) {
        return Vec::new();
    }
    let e = m.value(i);
    let (Some(k), Some(v)) = (
        e.column(0).as_string_opt::<i32>(),
        e.column(1).as_string_opt::<i32>(),
    ) else {
        return Vec::new();
    };
    (0..k.len())
        .map(|j| {
            let val = if v.is_valid(j) { v.value(j) } else { "" };
            (k.value(j).to_owned(), val.to_owned())
        })
        .collect()
}

/// The field of a `Map<Utf8, Utf8>` as arrow's `MapBuilder` makes it.
pub fn map_field(name: &str, nullable: bool) -> Field {
    let entries = Field::new(
        "entries",
        DataType::Struct(Fields::from(vec![
            Field::new("keys", DataType::Utf8, false),
            Field::new("values", DataType::Utf8, true),
        ])),
        false,
    );
    Field::new(name, DataType::Map(Arc::new(entries), false), nullable)
}

/// The list item field as arrow's `ListBuilder` makes it.
pub fn list_of(name: &str, item: DataType, nullable: bool) -> Field {
    Field::new(
        name,
        DataType::List(Arc::new(Field::new("item", item, true))),
        nullable,
    )
}

pub fn event_fields() -> Fields {
    Fields::from(vec![
        Field::new("time", ts_type(), true),
        Field::new("name", DataType::Utf8, true),
        map_field("attributes", true),
        map_field("attribute_types", true),
        Field::new("dropped_attributes_count", DataType::UInt32, true),
    ])
}

pub fn link_fields() -> Fields {
    Fields::from(vec![
        Field::new("trace_id", DataType::Utf8, true),
        Field::new("span_id", DataType::Utf8, true),
        Field::new("trace_state", DataType::Utf8, true),
        map_field("attributes", true),
        map_field("attribute_types", true),
        Field::new("dropped_attributes_count", DataType::UInt32, true),
        Field::new("flags", DataType::UInt32, true),
    ])
}

pub fn quantile_fields() -> Fields {
    Fields::from(vec![
        Field::new("quantile", DataType::Float64, true),
        Field::new("value", DataType::Float64, true),
    ])
}

pub fn exemplar_fields() -> Fields {
    Fields::from(vec![
        Field::new("time", ts_type(), true),
        Field::new("value", DataType::Float64, true),
        Field::new("value_int", DataType::Int64, true),
        Field::new("trace_id", DataType::Utf8, true),
        Field::new("span_id", DataType::Utf8, true),
        map_field("filtered_attributes", true),
        map_field("filtered_attribute_types", true),
    ])
}

/// Columns shared by the three tables that describe where a record came from.
fn origin_fields(record_attrs: &str, record_attr_types: &str) -> Vec<Field> {
    vec![
        Field::new("service_name", DataType::Utf8, false),
        map_field("resource_attributes", false),
        // Keys of `resource_attributes` whose OTLP value was not a string,
        // mapped to their type (`int`, `double`, `bool`, `bytes`, `array`, `kvlist`).
        map_field("resource_attribute_types", true),
        Field::new("resource_dropped_attributes_count", DataType::UInt32, false),
        Field::new("resource_schema_url", DataType::Utf8, true),
        Field::new("scope_name", DataType::Utf8, true),
        Field::new("scope_version", DataType::Utf8, true),
        map_field("scope_attributes", true),
        Field::new("scope_dropped_attributes_count", DataType::UInt32, false),
        Field::new("scope_schema_url", DataType::Utf8, true),
        map_field(record_attrs, false),
        map_field(record_attr_types, true),
        Field::new("dropped_attributes_count", DataType::UInt32, false),
    ]
}

static LOGS: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut fields = vec![
        Field::new("timestamp", ts_type(), false),
        Field::new("observed_timestamp", ts_type(), true),
        Field::new("severity_number", DataType::Int32, false),
        Field::new("severity_text", DataType::Utf8, true),
        Field::new("body", DataType::Utf8, true),
        // `string`, `int`, ... when the body was not a plain string.
        Field::new("body_type", DataType::Utf8, true),
        Field::new("trace_id", DataType::Utf8, true),
        Field::new("span_id", DataType::Utf8, true),
        Field::new("flags", DataType::UInt32, false),
        Field::new("event_name", DataType::Utf8, true),
    ];
    fields.extend(origin_fields("log_attributes", "log_attribute_types"));
    Arc::new(Schema::new(fields))
});

static SPANS: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut fields = vec![
        Field::new("trace_id", DataType::Utf8, false),
        Field::new("span_id", DataType::Utf8, false),
        Field::new("parent_span_id", DataType::Utf8, true),
        Field::new("trace_state", DataType::Utf8, true),
        Field::new("flags", DataType::UInt32, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("start_time", ts_type(), false),
        Field::new("end_time", ts_type(), false),
        Field::new("duration_ns", DataType::Int64, false),
        Field::new("status_code", DataType::Utf8, false),
        Field::new("status_message", DataType::Utf8, true),
        list_of("events", DataType::Struct(event_fields()), false),
        Field::new("dropped_events_count", DataType::UInt32, false),
        list_of("links", DataType::Struct(link_fields()), false),
        Field::new("dropped_links_count", DataType::UInt32, false),
    ];
    fields.extend(origin_fields("span_attributes", "span_attribute_types"));
    Arc::new(Schema::new(fields))
});

static METRICS: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut fields = vec![
        Field::new("metric_name", DataType::Utf8, false),
        Field::new("metric_type", DataType::Utf8, false),
        Field::new("description", DataType::Utf8, true),
        Field::new("unit", DataType::Utf8, true),
        map_field("metric_metadata", true),
        Field::new("timestamp", ts_type(), false),
        Field::new("start_timestamp", ts_type(), true),
        Field::new("flags", DataType::UInt32, false),
        Field::new("value", DataType::Float64, true),
        // The exact value when the data point was an integer (`as_int`).
        Field::new("value_int", DataType::Int64, true),
        Field::new("is_monotonic", DataType::Boolean, true),
        Field::new("aggregation_temporality", DataType::Utf8, true),
        Field::new("count", DataType::UInt64, true),
        Field::new("sum", DataType::Float64, true),
        Field::new("min", DataType::Float64, true),
        Field::new("max", DataType::Float64, true),
        list_of("bucket_counts", DataType::UInt64, true),
        list_of("explicit_bounds", DataType::Float64, true),
        Field::new("scale", DataType::Int32, true),
        Field::new("zero_count", DataType::UInt64, true),
        Field::new("zero_threshold", DataType::Float64, true),
        Field::new("positive_offset", DataType::Int32, true),
        list_of("positive_bucket_counts", DataType::UInt64, true),
        Field::new("negative_offset", DataType::Int32, true),
        list_of("negative_bucket_counts", DataType::UInt64, true),
        list_of("quantiles", DataType::Struct(quantile_fields()), true),
        list_of("exemplars", DataType::Struct(exemplar_fields()), true),
    ];
    fields.extend(origin_fields("attributes", "attribute_types"));
    // The stream a point belongs to ([`crate::series`]): segments are sorted
    // by it, so a series' points are one run of rows.
    fields.push(Field::new("series_id", DataType::UInt64, true));
    Arc::new(Schema::new(fields))
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_columns_exist_with_their_types() {
        let logs = Signal::Logs.schema();
        for (name, ty) in [
            ("timestamp", ts_type()),
            ("service_name", DataType::Utf8),
            ("severity_number", DataType::Int32),
            ("body", DataType::Utf8),
            ("flags", DataType::UInt32),
        ] {
            assert_eq!(
                logs.field_with_name(name)
                    .map(|f| f.data_type().clone())
                    .ok(),
                Some(ty)
            );
        }
        for name in [
            "log_attributes",
            "log_attribute_types",
            "resource_attributes",
        ] {
            assert!(matches!(
                logs.field_with_name(name).map(|f| f.data_type()),
                Ok(DataType::Map(..))
            ));
        }
        let spans = Signal::Spans.schema();
        for name in [
            "span_attributes",
            "span_attribute_types",
            "events",
            "links",
            "duration_ns",
        ] {
            assert!(spans.field_with_name(name).is_ok(), "{name}");
        }
        let metrics = Signal::Metrics.schema();
        for name in [
            "attributes",
            "attribute_types",
            "quantiles",
            "bucket_counts",
            "explicit_bounds",
        ] {
            assert!(metrics.field_with_name(name).is_ok(), "{name}");
        }
    }
}
