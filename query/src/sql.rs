//! `POST /api/v1/sql`: read-only SQL over the store with DataFusion, with a
//! time limit, a row limit and a memory limit.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::execution::memory_pool::{
    GreedyMemoryPool, MemoryConsumer, MemoryLimit, MemoryPool, MemoryReservation,
    TrackConsumersPool,
};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::prelude::{SQLOptions, SessionConfig, SessionContext};
use futures::StreamExt;
use lumen_store::{Signal, Store};

use crate::json;
use crate::table::SignalTable;
use crate::{Error, Result};

#[derive(Debug, Clone)]
pub struct SqlLimits {
    /// A query running longer than this is cancelled.
    pub timeout: Duration,
    /// At most this many rows are returned; `truncated` says when there were more.
    pub max_rows: usize,
    /// Memory all running queries may use for sorts, joins and aggregations.
    pub memory_bytes: usize,
    /// Memory one query may use of that.
    pub query_memory_bytes: usize,
}

impl Default for SqlLimits {
    fn default() -> Self {
        SqlLimits {
            timeout: Duration::from_secs(30),
            max_rows: 10_000,
            memory_bytes: 512 << 20,
            query_memory_bytes: 256 << 20,
        }
    }
}

pub struct SqlEngine {
    ctx: SessionContext,
    limits: SqlLimits,
}

impl SqlEngine {
    /// The limits queries run under (PromQL shares the time and memory ones).
    pub fn limits(&self) -> &SqlLimits {
        &self.limits
    }
}

#[derive(Debug, serde::Serialize)]
pub struct Column {
    pub name: String,
    #[serde(rename = "type")]
    pub data_type: String,
}

#[derive(Debug, serde::Serialize)]
pub struct SqlResult {
    pub columns: Vec<Column>,
    pub rows: Vec<serde_json::Map<String, serde_json::Value>>,
    pub truncated: bool,
    pub elapsed_ms: u64,
}

impl SqlEngine {
    /// The pool of `limits.memory_bytes` that engines share: one for all
    /// tenants, so the limit holds however many there are.
    pub fn memory_pool(limits: &SqlLimits) -> Arc<dyn MemoryPool> {
        Arc::new(TrackConsumersPool::new(
            GreedyMemoryPool::new(limits.memory_bytes),
            std::num::NonZeroUsize::new(5).unwrap_or(std::num::NonZeroUsize::MIN),
        ))
    }

    /// An engine over `store`'s tables, its queries drawing on `pool`.
    pub fn new(store: Arc<Store>, limits: SqlLimits, pool: Arc<dyn MemoryPool>) -> Result<Self> {
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_pool(pool)
            .build_arc()
            .map_err(|e| Error::Internal(e.to_string()))?;
        let config = SessionConfig::new()
            .with_information_schema(true)
            .with_default_catalog_and_schema("lumen", "public");
        let ctx = SessionContext::new_with_config_rt(config, runtime);
        ctx.register_udf(crate::udf::Matches::udf());
        ctx.register_object_store(
            lumen_store::objects::Objects::url().as_ref(),
            store.objects().store(),
        );
        for signal in Signal::ALL {
            ctx.register_table(
                signal.table(),
                Arc::new(SignalTable::new(Arc::clone(&store), signal)),
            )
            .map_err(|e| Error::Internal(e.to_string()))?;
        }
        Ok(SqlEngine { ctx, limits })
    }

    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// Runs a plan built in code (the Jaeger API's), under the same time and
    /// memory limits as SQL text, and returns all its rows.
    pub async fn collect(&self, df: datafusion::dataframe::DataFrame) -> Result<Vec<RecordBatch>> {
        tokio::time::timeout(self.limits.timeout, df.collect())
            .await
            .map_err(|_| {
                Error::Timeout(format!(
                    "query exceeded the time limit of {:?}",
                    self.limits.timeout
                ))
            })?
            .map_err(Error::from_datafusion)
    }

    /// A session for one query: the shared tables and functions, with a
    /// memory pool of the query's own inside the shared one.
    fn query_context(&self) -> Result<SessionContext> {
        let shared = &self.ctx.runtime_env();
        let pool = Arc::new(QueryPool {
            shared: Arc::clone(&shared.memory_pool),
            limit: self.limits.query_memory_bytes,
            used: AtomicUsize::new(0),
        });
        let runtime = RuntimeEnvBuilder::from_runtime_env(shared)
            .with_memory_pool(pool)
            .build_arc()
            .map_err(|e| Error::Internal(e.to_string()))?;
        let state = SessionStateBuilder::new_from_existing(self.ctx.state())
            .with_runtime_env(runtime)
            .build();
        Ok(SessionContext::new_with_state(state))
    }

    /// Runs one read-only statement.
    pub async fn run(&self, query: &str) -> Result<SqlResult> {
        let started = Instant::now();
        let ctx = self.query_context()?;
        let run = async {
            let options = SQLOptions::new()
                .with_allow_ddl(false)
                .with_allow_dml(false)
                .with_allow_statements(false);
            let df = ctx
                .sql_with_options(query, options)
                .await
                .map_err(Error::from_datafusion)?;
            let schema = df.schema().as_arrow().clone();
            let mut stream = df.execute_stream().await.map_err(Error::from_datafusion)?;
            let mut batches: Vec<RecordBatch> = Vec::new();
            let mut rows = 0;
            let mut truncated = false;
            while let Some(batch) = stream.next().await {
                let batch = batch.map_err(Error::from_datafusion)?;
                let room = self.limits.max_rows - rows;
                if batch.num_rows() > room {
                    batches.push(batch.slice(0, room));
                    truncated = true;
                    break;
                }
                rows += batch.num_rows();
                batches.push(batch);
            }
            Ok::<_, Error>((schema, batches, truncated))
        };
        let (schema, batches, truncated) = tokio::time::timeout(self.limits.timeout, run)
            .await
            .map_err(|_| {
            Error::Timeout(format!(
                "query exceeded the time limit of {:?}",
                self.limits.timeout
            ))
        })??;
        let columns = schema
            .fields()
            .iter()
            .map(|f| Column {
                name: f.name().clone(),
                data_type: type_name(f.data_type()),
            })
            .collect();
        let rows = json::rows(&batches)?;
        Ok(SqlResult {
            columns,
            rows,
            truncated,
            elapsed_ms: started.elapsed().as_millis() as u64,
        })
    }
}

/// One query's share of the shared pool: reservations count against both,
/// so one query cannot take all the memory the others need.
#[derive(Debug)]
struct QueryPool {
    shared: Arc<dyn MemoryPool>,
    limit: usize,
    used: AtomicUsize,
}

impl std::fmt::Display for QueryPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "query pool: {} of {} bytes",
            self.used.load(Ordering::Relaxed),
            self.limit
        )
    }
}

impl MemoryPool for QueryPool {
    fn name(&self) -> &str {
        "lumen-query"
    }

    fn register(&self, consumer: &MemoryConsumer) {
        self.shared.register(consumer);
    }

    fn unregister(&self, consumer: &MemoryConsumer) {
        self.shared.unregister(consumer);
    }

    fn grow(&self, reservation: &MemoryReservation, additional: usize) {
        self.used.fetch_add(additional, Ordering::Relaxed);
        self.shared.grow(reservation, additional);
    }

    fn shrink(&self, reservation: &MemoryReservation, shrink: usize) {
        self.used.fetch_sub(shrink, Ordering::Relaxed);
        self.shared.shrink(reservation, shrink);
    }

    fn try_grow(
        &self,
        reservation: &MemoryReservation,
        additional: usize,
    ) -> datafusion::error::Result<()> {
        let used = self.used.fetch_add(additional, Ordering::Relaxed);
        if used + additional > self.limit {
            self.used.fetch_sub(additional, Ordering::Relaxed);
            return Err(datafusion::error::DataFusionError::ResourcesExhausted(
                format!(
                    "the query needs more than its {} MiB (sql-query-memory); \
                 add filters, a LIMIT or fewer GROUP BY keys",
                    self.limit >> 20
                ),
            ));
        }
        if let Err(e) = self.shared.try_grow(reservation, additional) {
            self.used.fetch_sub(additional, Ordering::Relaxed);
            return Err(e);
        }
        Ok(())
    }

    fn reserved(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    fn memory_limit(&self) -> MemoryLimit {
        MemoryLimit::Finite(self.limit)
    }
}

/// A short, stable spelling of an Arrow type for clients.
fn type_name(t: &DataType) -> String {
    match t {
        DataType::Timestamp(unit, tz) => {
            let unit = match unit {
                datafusion::arrow::datatypes::TimeUnit::Second => "s",
                datafusion::arrow::datatypes::TimeUnit::Millisecond => "ms",
                datafusion::arrow::datatypes::TimeUnit::Microsecond => "us",
                datafusion::arrow::datatypes::TimeUnit::Nanosecond => "ns",
            };
            match tz {
                Some(tz) => format!("Timestamp({unit}, {tz})"),
                None => format!("Timestamp({unit})"),
            }
        }
        DataType::List(f) | DataType::LargeList(f) => format!("List<{}>", type_name(f.data_type())),
        DataType::Map(entries, _) => match entries.data_type() {
            DataType::Struct(fields) if fields.len() == 2 => {
                format!(
                    "Map<{}, {}>",
                    type_name(fields[0].data_type()),
                    type_name(fields[1].data_type())
                )
            }
            other => format!("Map<{other}>"),
        },
        DataType::Struct(fields) => format!(
            "Struct<{}>",
            fields
                .iter()
                .map(|f| format!("{}: {}", f.name(), type_name(f.data_type())))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => other.to_string(),
    }
}
