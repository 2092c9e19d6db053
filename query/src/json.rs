//! Arrow → JSON for API answers: timestamps as RFC 3339 with nanoseconds in
//! UTC, maps as objects, lists as arrays, structs as objects.

use base64::Engine as _;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{self as dt, DataType, TimeUnit};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use serde_json::{Map, Value};

use crate::Result;

/// Formats nanoseconds since the epoch as `2024-01-02T03:04:05.123456789Z`.
pub fn rfc3339_nanos(ns: i64) -> String {
    match datafusion::arrow::temporal_conversions::timestamp_ns_to_datetime(ns) {
        Some(t) => t.format("%Y-%m-%dT%H:%M:%S%.9fZ").to_string(),
        None => ns.to_string(),
    }
}

fn float(v: f64) -> Value {
    serde_json::Number::from_f64(v).map_or_else(|| Value::String(v.to_string()), Value::Number)
}

/// A column of a store batch that is missing or of the wrong type: the
/// store's schemas fix both, so this is our fault, not the client's.
pub(crate) fn missing(name: &str) -> crate::Error {
    crate::Error::Internal(format!("column {name} missing or of the wrong type"))
}

/// A `Utf8` column of a store batch.
pub(crate) fn str_col<'a>(
    b: &'a RecordBatch,
    name: &str,
) -> Result<&'a datafusion::arrow::array::StringArray> {
    b.column_by_name(name)
        .and_then(|c| c.as_string_opt::<i32>())
        .ok_or_else(|| missing(name))
}

pub use lumen_store::schema::map_entries;

/// Converts every row of `batches` to a JSON object keyed by column name.
pub fn rows(batches: &[RecordBatch]) -> Result<Vec<Map<String, Value>>> {
    let mut out = Vec::with_capacity(batches.iter().map(RecordBatch::num_rows).sum());
    for batch in batches {
        let schema = batch.schema();
        let cols: Vec<Vec<Value>> = batch.columns().iter().map(column).collect::<Result<_>>()?;
        for i in 0..batch.num_rows() {
            let mut row = Map::with_capacity(cols.len());
            for (f, c) in schema.fields().iter().zip(&cols) {
                row.insert(f.name().clone(), c[i].clone());
            }
            out.push(row);
        }
    }
    Ok(out)
}

/// One JSON value per element of `a`.
pub fn column(a: &ArrayRef) -> Result<Vec<Value>> {
    let n = a.len();
    macro_rules! prim {
        ($t:ty, $f:expr) => {{
            let arr = a.as_primitive::<$t>();
            (0..n)
                .map(|i| {
                    if arr.is_null(i) {
                        Value::Null
                    } else {
                        $f(arr.value(i))
                    }
                })
                .collect()
        }};
    }
    let values: Vec<Value> = match a.data_type() {
        DataType::Null => vec![Value::Null; n],
        DataType::Boolean => {
            let arr = a.as_boolean();
            (0..n)
                .map(|i| {
                    if arr.is_null(i) {
                        Value::Null
                    } else {
                        Value::Bool(arr.value(i))
                    }
                })
                .collect()
        }
        DataType::Int8 => prim!(dt::Int8Type, |v: i8| Value::from(v)),
        DataType::Int16 => prim!(dt::Int16Type, |v: i16| Value::from(v)),
        DataType::Int32 => prim!(dt::Int32Type, |v: i32| Value::from(v)),
        DataType::Int64 => prim!(dt::Int64Type, |v: i64| Value::from(v)),
        DataType::UInt8 => prim!(dt::UInt8Type, |v: u8| Value::from(v)),
        DataType::UInt16 => prim!(dt::UInt16Type, |v: u16| Value::from(v)),
        DataType::UInt32 => prim!(dt::UInt32Type, |v: u32| Value::from(v)),
        DataType::UInt64 => prim!(dt::UInt64Type, |v: u64| Value::from(v)),
        DataType::Float32 => prim!(dt::Float32Type, |v: f32| float(f64::from(v))),
        DataType::Float64 => prim!(dt::Float64Type, float),
        DataType::Timestamp(unit, _) => {
            let scale = match unit {
                TimeUnit::Second => 1_000_000_000,
                TimeUnit::Millisecond => 1_000_000,
                TimeUnit::Microsecond => 1_000,
                TimeUnit::Nanosecond => 1,
            };
            let cast = datafusion::arrow::compute::cast(a, &DataType::Int64)?;
            let arr = cast.as_primitive::<dt::Int64Type>();
            (0..n)
                .map(|i| {
                    if arr.is_null(i) {
                        Value::Null
                    } else {
                        Value::String(rfc3339_nanos(arr.value(i).saturating_mul(scale)))
                    }
                })
                .collect()
        }
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            let cast = datafusion::arrow::compute::cast(a, &DataType::Utf8)?;
            let arr = cast.as_string::<i32>();
            (0..n)
                .map(|i| {
                    if arr.is_null(i) {
                        Value::Null
                    } else {
                        Value::String(arr.value(i).to_owned())
                    }
                })
                .collect()
        }
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => {
            let cast = datafusion::arrow::compute::cast(a, &DataType::Binary)?;
            let arr = cast.as_binary::<i32>();
            let b64 = base64::engine::general_purpose::STANDARD;
            (0..n)
                .map(|i| {
                    if arr.is_null(i) {
                        Value::Null
                    } else {
                        Value::String(b64.encode(arr.value(i)))
                    }
                })
                .collect()
        }
        DataType::LargeList(f) => column(&datafusion::arrow::compute::cast(
            a,
            &DataType::List(f.clone()),
        )?)?,
        DataType::List(_) => {
            let arr = a.as_list::<i32>();
            let inner = column(arr.values())?;
            let offsets = arr.value_offsets();
            (0..n)
                .map(|i| {
                    if arr.is_null(i) {
                        Value::Null
                    } else {
                        Value::Array(inner[offsets[i] as usize..offsets[i + 1] as usize].to_vec())
                    }
                })
                .collect()
        }
        DataType::Struct(fields) => {
            let arr = a.as_struct();
            let children: Vec<Vec<Value>> =
                arr.columns().iter().map(column).collect::<Result<_>>()?;
            (0..n)
                .map(|i| {
                    if arr.is_null(i) {
                        Value::Null
                    } else {
                        Value::Object(
                            fields
                                .iter()
                                .zip(&children)
                                .map(|(f, c)| (f.name().clone(), c[i].clone()))
                                .collect(),
                        )
                    }
                })
                .collect()
        }
        DataType::Map(_, _) => {
            let arr = a.as_map();
            let keys = column(arr.keys())?;
            let values = column(arr.values())?;
            let offsets = arr.value_offsets();
            (0..n)
                .map(|i| {
                    if arr.is_null(i) {
                        return Value::Null;
                    }
                    let mut m = Map::new();
                    for j in offsets[i] as usize..offsets[i + 1] as usize {
                        let k = match &keys[j] {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        };
                        m.insert(k, values[j].clone());
                    }
                    Value::Object(m)
                })
                .collect()
        }
        DataType::Dictionary(_, value_type) => {
            let cast = datafusion::arrow::compute::cast(a, value_type)?;
            column(&cast)?
        }
        _ => {
            let opts = FormatOptions::default();
            let f = ArrayFormatter::try_new(a.as_ref(), &opts)?;
            (0..n)
                .map(|i| {
                    if a.is_null(i) {
                        Value::Null
                    } else {
                        Value::String(f.value(i).to_string())
                    }
                })
                .collect()
        }
    };
    Ok(values)
}
