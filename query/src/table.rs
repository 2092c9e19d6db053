//! `logs`, `spans` and `metrics` as DataFusion tables over the store: the
//! in-memory buffer and the Parquet segments of one consistent snapshot.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::Session;
use datafusion::catalog::TableProvider;
use datafusion::common::{DFSchema, Result};
use datafusion::datasource::TableType;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::physical_plan::parquet::ParquetRowSelection;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::parquet::arrow::arrow_reader::{RowSelection, RowSelector};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::union::UnionExec;
use lumen_store::objects::Objects;
use lumen_store::{Signal, Store};

pub struct SignalTable {
    store: Arc<Store>,
    signal: Signal,
}

impl std::fmt::Debug for SignalTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SignalTable({})", self.signal)
    }
}

impl SignalTable {
    pub fn new(store: Arc<Store>, signal: Signal) -> Self {
        SignalTable { store, signal }
    }
}

/// The `[lo, hi]` nanosecond bounds that `filters` put on `column`
/// (conjunctions of comparisons with timestamp literals); unbounded sides are
/// `i64::MIN`/`i64::MAX`.
pub fn time_bounds(filters: &[Expr], column: &str) -> (i64, i64) {
    use datafusion::logical_expr::{BinaryExpr, Operator};
    use datafusion::scalar::ScalarValue;
    fn nanos(v: &ScalarValue) -> Option<i64> {
        match v {
            ScalarValue::TimestampNanosecond(Some(x), _) => Some(*x),
            ScalarValue::TimestampMicrosecond(Some(x), _) => x.checked_mul(1_000),
            ScalarValue::TimestampMillisecond(Some(x), _) => x.checked_mul(1_000_000),
            ScalarValue::TimestampSecond(Some(x), _) => x.checked_mul(1_000_000_000),
            _ => None,
        }
    }
    fn visit(e: &Expr, column: &str, lo: &mut i64, hi: &mut i64) {
        match e {
            Expr::BinaryExpr(BinaryExpr {
                left,
                op: Operator::And,
                right,
            }) => {
                visit(left, column, lo, hi);
                visit(right, column, lo, hi);
            }
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                let (op, v) = match (left.as_ref(), right.as_ref()) {
                    (Expr::Column(c), Expr::Literal(v, _)) if c.name == column => (*op, v),
                    (Expr::Literal(v, _), Expr::Column(c)) if c.name == column => match op.swap() {
                        Some(op) => (op, v),
                        None => return,
                    },
                    _ => return,
                };
                let Some(t) = nanos(v) else { return };
                match op {
                    Operator::Gt | Operator::GtEq => *lo = (*lo).max(t),
                    Operator::Lt | Operator::LtEq => *hi = (*hi).min(t),
                    Operator::Eq => {
                        *lo = (*lo).max(t);
                        *hi = (*hi).min(t);
                    }
                    _ => {}
                }
            }
            Expr::Between(b) if !b.negated => {
                if let (Expr::Column(c), Expr::Literal(l, _), Expr::Literal(h, _)) =
                    (b.expr.as_ref(), b.low.as_ref(), b.high.as_ref())
                    && c.name == column
                {
                    if let Some(l) = nanos(l) {
                        *lo = (*lo).max(l);
                    }
                    if let Some(h) = nanos(h) {
                        *hi = (*hi).min(h);
                    }
                }
            }
            _ => {}
        }
    }
    let (mut lo, mut hi) = (i64::MIN, i64::MAX);
    for f in filters {
        visit(f, column, &mut lo, &mut hi);
    }
    (lo, hi)
}

fn external(e: lumen_store::Error) -> datafusion::error::DataFusionError {
    datafusion::error::DataFusionError::External(Box::new(e))
}

/// The selection of ascending `rows` out of a file of `total` rows.
fn file_selection(rows: &[u32], total: u64) -> RowSelection {
    let mut sel: Vec<RowSelector> = crate::search::selection(rows).into();
    let end = rows.last().map_or(0, |r| u64::from(*r) + 1);
    if total > end {
        sel.push(RowSelector::skip((total - end) as usize));
    }
    RowSelection::from(sel)
}

/// Spreads batches over `n` partitions so scans run on every core.
fn partitions(batches: Vec<RecordBatch>, n: usize) -> Vec<Vec<RecordBatch>> {
    let n = n.max(1).min(batches.len().max(1));
    let mut parts = vec![Vec::new(); n];
    for (i, b) in batches.into_iter().enumerate() {
        parts[i % n].push(b);
    }
    parts
}

#[async_trait]
impl TableProvider for SignalTable {
    fn schema(&self) -> SchemaRef {
        self.signal.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        // Filters are used to prune Parquet row groups; DataFusion still applies them.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let schema = self.schema();
        let mut snap = self.store.snapshot(self.signal);
        // Prune whole segments by the catalog's time ranges before opening any file.
        let (lo, hi) = time_bounds(filters, self.signal.time_column());
        snap.segments
            .retain(|s| s.max_time >= lo && s.min_time <= hi);
        // `matches(body, '...')` on logs: the segments' indexes say which
        // rows can match; segments with none are not read at all.
        let mut selections: std::collections::HashMap<String, RowSelection> = Default::default();
        if self.signal == Signal::Logs {
            let pushed: Vec<&str> = filters
                .iter()
                .filter_map(|f| crate::udf::pushed_query(f, "body"))
                .collect();
            if !pushed.is_empty() {
                let queries = pushed
                    .iter()
                    .map(|q| crate::udf::text_query(q))
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(datafusion::error::DataFusionError::Plan)?;
                let q = lumen_store::index::Query::And(queries);
                let mut kept = Vec::with_capacity(snap.segments.len());
                for seg in snap.segments {
                    let idx = self.store.segment_index(&seg).map_err(external)?;
                    match idx {
                        None => kept.push(seg),
                        Some(idx) => {
                            let rows = idx.search(&q).map_err(external)?;
                            if !rows.is_empty() {
                                selections
                                    .insert(seg.path.clone(), file_selection(&rows, seg.rows));
                                kept.push(seg);
                            }
                        }
                    }
                }
                snap.segments = kept;
            }
        }
        let target = state.config().target_partitions();
        let mut plans: Vec<Arc<dyn ExecutionPlan>> = Vec::new();
        if !snap.batches.is_empty() {
            plans.push(MemorySourceConfig::try_new_exec(
                &partitions(snap.batches, target),
                Arc::clone(&schema),
                projection.cloned(),
            )?);
        }
        if !snap.segments.is_empty() {
            // Metric segments store an integer point's `value` as null (it is
            // `value_int as f64`): read `value_int` beside it and fill it in,
            // and never prune by stored `value` statistics.
            let wanted: Vec<usize> = projection
                .cloned()
                .unwrap_or_else(|| (0..schema.fields().len()).collect());
            let mut read = wanted.clone();
            let mut fill = false;
            if self.signal == Signal::Metrics {
                let value_idx = schema.index_of("value")?;
                let value_int_idx = schema.index_of("value_int")?;
                fill = wanted.contains(&value_idx);
                if fill && !read.contains(&value_int_idx) {
                    read.push(value_int_idx);
                }
            }
            let mut source = ParquetSource::new(Arc::clone(&schema));
            let prunable = filters.iter().filter(|f| {
                self.signal != Signal::Metrics || !f.column_refs().iter().any(|c| c.name == "value")
            });
            if let Some(pred) = conjunction(prunable.cloned()) {
                let df_schema = DFSchema::try_from(Arc::clone(&schema))?;
                if let Ok(p) = state.create_physical_expr(pred, &df_schema) {
                    source = source.with_predicate(p);
                }
            }
            let files: Vec<PartitionedFile> = snap
                .segments
                .iter()
                .map(|s| {
                    // The plan holds the segment, so retention or compaction
                    // cannot delete its file while this query may read it.
                    let f =
                        PartitionedFile::new(s.path.clone(), s.bytes).with_extension(Arc::clone(s));
                    match selections.remove(&s.path) {
                        Some(sel) => f.with_extension(ParquetRowSelection::new(sel)),
                        None => f,
                    }
                })
                .collect();
            let n = target.max(1).min(files.len());
            let mut groups: Vec<Vec<PartitionedFile>> = vec![Vec::new(); n];
            for (i, f) in files.into_iter().enumerate() {
                groups[i % n].push(f);
            }
            // Keys in the store's object store, registered with the session.
            let config = FileScanConfigBuilder::new(Objects::url(), Arc::new(source))
                .with_file_groups(groups.into_iter().map(FileGroup::new).collect())
                .with_projection_indices(Some(read.clone()))?
                .with_limit(limit)
                .build();
            let scan: Arc<dyn ExecutionPlan> = DataSourceExec::from_data_source(config);
            plans.push(if fill {
                fill_int_values(state, scan, &schema, &wanted, &read)?
            } else {
                scan
            });
        }
        if plans.is_empty() {
            let projected = match projection {
                Some(p) => Arc::new(schema.project(p)?),
                None => schema,
            };
            return Ok(Arc::new(EmptyExec::new(projected)));
        }
        UnionExec::try_new(plans)
    }
}

/// Projects `read` (the columns a metrics scan read) to `wanted`, with
/// `value` filled from `value_int` where the segment stored it as null.
fn fill_int_values(
    state: &dyn Session,
    scan: Arc<dyn ExecutionPlan>,
    schema: &SchemaRef,
    wanted: &[usize],
    read: &[usize],
) -> Result<Arc<dyn ExecutionPlan>> {
    use datafusion::logical_expr::{cast, col, when};
    use datafusion::physical_plan::projection::ProjectionExec;
    let inner = Arc::new(schema.project(read)?);
    let df_schema = DFSchema::try_from(Arc::clone(&inner))?;
    let mut exprs = Vec::with_capacity(wanted.len());
    for &i in wanted {
        let name = schema.field(i).name().clone();
        let e = if name == "value" {
            when(
                col("value").is_null(),
                cast(
                    col("value_int"),
                    datafusion::arrow::datatypes::DataType::Float64,
                ),
            )
            .otherwise(col("value"))?
        } else {
            col(name.as_str())
        };
        exprs.push((state.create_physical_expr(e, &df_schema)?, name));
    }
    Ok(Arc::new(ProjectionExec::try_new(exprs, scan)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::{col, lit};
    use datafusion::scalar::ScalarValue;

    fn ts(v: i64) -> Expr {
        lit(ScalarValue::TimestampNanosecond(
            Some(v),
            Some("UTC".into()),
        ))
    }

    #[test]
    fn time_bounds_from_filters() {
        assert_eq!(time_bounds(&[], "timestamp"), (i64::MIN, i64::MAX));
        let f = vec![
            col("timestamp")
                .gt_eq(ts(10))
                .and(col("timestamp").lt(ts(20))),
            col("body").eq(lit("x")),
        ];
        assert_eq!(time_bounds(&f, "timestamp"), (10, 20));
        assert_eq!(
            time_bounds(&[ts(5).lt(col("timestamp"))], "timestamp"),
            (5, i64::MAX)
        );
        assert_eq!(
            time_bounds(&[col("timestamp").between(ts(1), ts(2))], "timestamp"),
            (1, 2)
        );
        assert_eq!(
            time_bounds(
                &[col("timestamp").gt(ts(1)).or(col("timestamp").lt(ts(0)))],
                "timestamp"
            ),
            (i64::MIN, i64::MAX)
        );
        assert_eq!(
            time_bounds(&[col("start_time").gt(ts(3))], "timestamp"),
            (i64::MIN, i64::MAX)
        );
    }
}
