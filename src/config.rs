//! Configuration: built-in defaults < TOML file (`--config`) < environment
//! (`LUMEN_*`) < command-line flags. Every option has all three spellings.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde::Deserialize;

/// Options of `lumen serve`. Flags win over `LUMEN_*` variables, which win
/// over the `--config` file, which wins over the defaults shown.
#[derive(Debug, Args, Default)]
pub(crate) struct ServeArgs {
    /// TOML file with any of the options below (keys as the flags, with `_` for `-`).
    #[arg(long, env = "LUMEN_CONFIG", value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// Where the WAL, segments and catalog live [default: ./lumen-data].
    #[arg(long, env = "LUMEN_DATA_DIR", value_name = "DIR")]
    pub(crate) data_dir: Option<PathBuf>,
    /// OTLP/gRPC listen address [default: 0.0.0.0:4317].
    #[arg(long, env = "LUMEN_OTLP_GRPC_ADDR", value_name = "HOST:PORT")]
    pub(crate) otlp_grpc_addr: Option<String>,
    /// OTLP/HTTP listen address [default: 0.0.0.0:4318].
    #[arg(long, env = "LUMEN_OTLP_HTTP_ADDR", value_name = "HOST:PORT")]
    pub(crate) otlp_http_addr: Option<String>,
    /// Query API and dashboard listen address [default: 0.0.0.0:7070].
    #[arg(long, env = "LUMEN_HTTP_ADDR", value_name = "HOST:PORT")]
    pub(crate) http_addr: Option<String>,
    /// Memory for unflushed data and in-flight requests; past it ingest is refused with retryable errors [default: 256MiB].
    #[arg(long, env = "LUMEN_MEMORY_BUDGET", value_name = "SIZE")]
    pub(crate) memory_budget: Option<String>,
    /// Largest OTLP request body, before and after decompression [default: 16MiB].
    #[arg(long, env = "LUMEN_MAX_REQUEST_SIZE", value_name = "SIZE")]
    pub(crate) max_request_size: Option<String>,
    /// Attributes kept per list (record, resource, scope, event, link); the
    /// rest are dropped and counted in `dropped_attributes_count` [default: 128].
    #[arg(long, env = "LUMEN_MAX_ATTRIBUTES", value_name = "N")]
    pub(crate) max_attributes: Option<usize>,
    /// Longest string or bytes value (attributes, log bodies); longer ones are cut [default: 32KiB].
    #[arg(long, env = "LUMEN_MAX_ATTRIBUTE_LENGTH", value_name = "SIZE")]
    pub(crate) max_attribute_length: Option<String>,
    /// Levels of arrays and maps in one attribute value or log body; a value
    /// nested deeper is cut at the limit (the container there emptied) and
    /// counted as truncated [default: 32].
    #[arg(long, env = "LUMEN_MAX_VALUE_DEPTH", value_name = "N")]
    pub(crate) max_value_depth: Option<usize>,
    /// Longest an OTLP/HTTP request body may take to arrive; slower ones get 408 [default: 30s].
    #[arg(long, env = "LUMEN_BODY_TIMEOUT", value_name = "DURATION")]
    pub(crate) body_timeout: Option<String>,
    /// Longest a client may take over a TLS handshake, or over a request's
    /// headers; slower connections are closed [default: 30s].
    #[arg(long, env = "LUMEN_HEADER_TIMEOUT", value_name = "DURATION")]
    pub(crate) header_timeout: Option<String>,
    /// PEM certificate chain: with `--tls-key`, all three listeners speak TLS only.
    #[arg(
        long,
        env = "LUMEN_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    pub(crate) tls_cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of `--tls-cert`.
    #[arg(
        long,
        env = "LUMEN_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub(crate) tls_key: Option<PathBuf>,
    /// Write a signal's buffer as a segment once it holds this much [default: 48MiB].
    #[arg(long, env = "LUMEN_FLUSH_SIZE", value_name = "SIZE")]
    pub(crate) flush_size: Option<String>,
    /// Write a non-empty buffer as a segment at least this often [default: 30s].
    #[arg(long, env = "LUMEN_FLUSH_INTERVAL", value_name = "DURATION")]
    pub(crate) flush_interval: Option<String>,
    /// A small flushed segment (under 100,000 rows) not merged with others
    /// within this time is indexed on its own; larger ones are indexed at
    /// once. Until then search scans it [default: 30s].
    #[arg(long, env = "LUMEN_INDEX_DELAY", value_name = "DURATION")]
    pub(crate) index_delay: Option<String>,
    /// Nice steps added to the compaction threads (0 to 19), so that under
    /// load ingest and queries get the CPU first [default: 10].
    #[arg(long, env = "LUMEN_COMPACTION_NICE", value_name = "N")]
    pub(crate) compaction_nice: Option<i32>,
    /// Time limit of one query: SQL, PromQL, log search and histogram, Jaeger
    /// trace search [default: 30s].
    #[arg(long, env = "LUMEN_SQL_TIMEOUT", value_name = "DURATION")]
    pub(crate) sql_timeout: Option<String>,
    /// Query API requests (SQL, search, traces, PromQL) running at once;
    /// more get a retryable 503 [default: 32].
    #[arg(long, env = "LUMEN_MAX_CONCURRENT_QUERIES", value_name = "N")]
    pub(crate) max_concurrent_queries: Option<usize>,
    /// Most rows one SQL query returns [default: 10000].
    #[arg(long, env = "LUMEN_SQL_MAX_ROWS", value_name = "N")]
    pub(crate) sql_max_rows: Option<usize>,
    /// Memory all running SQL queries may use together [default: 512MiB].
    #[arg(long, env = "LUMEN_SQL_MEMORY", value_name = "SIZE")]
    pub(crate) sql_memory: Option<String>,
    /// Memory one SQL query may use of that [default: 256MiB].
    #[arg(long, env = "LUMEN_SQL_QUERY_MEMORY", value_name = "SIZE")]
    pub(crate) sql_query_memory: Option<String>,
    /// Records a live-tail subscriber may have waiting; past it the oldest
    /// are dropped and the client told how many [default: 10000].
    #[arg(long, env = "LUMEN_TAIL_BUFFER", value_name = "N")]
    pub(crate) tail_buffer: Option<usize>,
    /// Records a second one live-tail subscriber examines; past it batches
    /// are skipped and reported as dropped, so tails cannot starve ingest
    /// [default: 5000].
    #[arg(long, env = "LUMEN_TAIL_MAX_RATE", value_name = "N")]
    pub(crate) tail_max_rate: Option<usize>,
    /// Live-tail WebSocket subscribers at once [default: 256].
    #[arg(long, env = "LUMEN_TAIL_MAX_SUBSCRIBERS", value_name = "N")]
    pub(crate) tail_max_subscribers: Option<usize>,
    /// Without tokens, send each request to the tenant its `X-Scope-OrgID`
    /// header names (as Grafana's Loki, Tempo and Mimir data sources do),
    /// opening the tenant on first use; without the header, the default
    /// tenant. With tokens the token's tenant wins [default: false].
    #[arg(long, env = "LUMEN_TENANT_HEADER", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub(crate) tenant_header: Option<bool>,
    /// Most tenants open at once, the default one included [default: 100].
    #[arg(long, env = "LUMEN_MAX_TENANTS", value_name = "N")]
    pub(crate) max_tenants: Option<usize>,
    /// Keep logs this long, e.g. `7d`; whole hours are dropped once older [default: forever].
    #[arg(long, env = "LUMEN_RETENTION_LOGS", value_name = "DURATION")]
    pub(crate) retention_logs: Option<String>,
    /// Keep spans this long [default: forever].
    #[arg(long, env = "LUMEN_RETENTION_SPANS", value_name = "DURATION")]
    pub(crate) retention_spans: Option<String>,
    /// Keep metrics this long [default: forever].
    #[arg(long, env = "LUMEN_RETENTION_METRICS", value_name = "DURATION")]
    pub(crate) retention_metrics: Option<String>,
    /// Keep segments and the catalog in an S3-compatible bucket,
    /// `s3://bucket/prefix`, instead of under the data directory (the WAL
    /// stays there). Credentials: the standard `AWS_*` variables [default: local].
    #[arg(long, env = "LUMEN_OBJECT_STORE", value_name = "URL")]
    pub(crate) object_store: Option<String>,
    /// Endpoint of a non-AWS S3 service (MinIO, R2, ...), e.g. `http://minio:9000`.
    #[arg(long, env = "LUMEN_S3_ENDPOINT", value_name = "URL")]
    pub(crate) s3_endpoint: Option<String>,
    /// S3 region [default: `AWS_REGION`, else us-east-1].
    #[arg(long, env = "LUMEN_S3_REGION", value_name = "REGION")]
    pub(crate) s3_region: Option<String>,
    /// Allow plain-HTTP S3 endpoints (local MinIO).
    #[arg(long, env = "LUMEN_S3_ALLOW_HTTP", value_name = "BOOL")]
    pub(crate) s3_allow_http: Option<bool>,
    /// Log filter, in `RUST_LOG` syntax [default: info].
    #[arg(long, env = "LUMEN_LOG", value_name = "FILTER")]
    pub(crate) log: Option<String>,
}

/// The `--config` file. Unknown keys are errors.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileConfig {
    pub(crate) data_dir: Option<PathBuf>,
    pub(crate) otlp_grpc_addr: Option<String>,
    pub(crate) otlp_http_addr: Option<String>,
    pub(crate) http_addr: Option<String>,
    pub(crate) memory_budget: Option<String>,
    pub(crate) max_request_size: Option<String>,
    pub(crate) max_attributes: Option<usize>,
    pub(crate) max_attribute_length: Option<String>,
    pub(crate) max_value_depth: Option<usize>,
    pub(crate) body_timeout: Option<String>,
    pub(crate) header_timeout: Option<String>,
    pub(crate) tls_cert: Option<PathBuf>,
    pub(crate) tls_key: Option<PathBuf>,
    pub(crate) flush_size: Option<String>,
    pub(crate) flush_interval: Option<String>,
    pub(crate) index_delay: Option<String>,
    pub(crate) compaction_nice: Option<i32>,
    pub(crate) sql_timeout: Option<String>,
    pub(crate) sql_max_rows: Option<usize>,
    pub(crate) max_concurrent_queries: Option<usize>,
    pub(crate) sql_memory: Option<String>,
    pub(crate) sql_query_memory: Option<String>,
    pub(crate) tail_buffer: Option<usize>,
    pub(crate) tail_max_subscribers: Option<usize>,
    pub(crate) tail_max_rate: Option<usize>,
    pub(crate) tenant_header: Option<bool>,
    pub(crate) max_tenants: Option<usize>,
    pub(crate) retention_logs: Option<String>,
    pub(crate) retention_spans: Option<String>,
    pub(crate) retention_metrics: Option<String>,
    pub(crate) object_store: Option<String>,
    pub(crate) s3_endpoint: Option<String>,
    pub(crate) s3_region: Option<String>,
    pub(crate) s3_allow_http: Option<bool>,
    pub(crate) log: Option<String>,
    /// `[auth]`: API tokens (file only: secrets do not belong on a command line).
    pub(crate) auth: Option<AuthFile>,
}

/// The `[auth]` table: `[[auth.tokens]]` entries, each with `name`, `token`
/// (or `sha256`), `scopes` (`ingest`, `read`, `admin`) and `tenant`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuthFile {
    #[serde(default)]
    pub(crate) tokens: Vec<lumen_store::auth::TokenConfig>,
}

/// The resolved configuration.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) data_dir: PathBuf,
    pub(crate) otlp_grpc_addr: String,
    pub(crate) otlp_http_addr: String,
    pub(crate) http_addr: String,
    pub(crate) memory_budget: usize,
    pub(crate) max_request_size: usize,
    pub(crate) max_attributes: usize,
    pub(crate) max_attribute_length: usize,
    pub(crate) max_value_depth: usize,
    pub(crate) body_timeout: Duration,
    pub(crate) header_timeout: Duration,
    /// Certificate chain and key files, when the listeners speak TLS.
    pub(crate) tls: Option<(PathBuf, PathBuf)>,
    pub(crate) flush_size: usize,
    pub(crate) flush_interval: Duration,
    pub(crate) index_delay: Duration,
    pub(crate) compaction_nice: i32,
    pub(crate) sql_timeout: Duration,
    pub(crate) sql_max_rows: usize,
    pub(crate) max_concurrent_queries: usize,
    pub(crate) sql_memory: usize,
    pub(crate) sql_query_memory: usize,
    pub(crate) tail_buffer: usize,
    pub(crate) tail_max_subscribers: usize,
    pub(crate) tail_max_rate: usize,
    pub(crate) tenant_header: bool,
    pub(crate) max_tenants: usize,
    /// Logs, spans, metrics (by `Signal::index`); `None` keeps forever.
    pub(crate) retention: [Option<Duration>; 3],
    /// Where segments and the catalog live.
    pub(crate) storage: lumen_store::objects::Storage,
    pub(crate) log: String,
    pub(crate) auth_tokens: Vec<lumen_store::auth::TokenConfig>,
}

impl FileConfig {
    pub(crate) fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("in config file {}", path.display()))
    }
}

impl Config {
    /// The configured tokens, checked.
    pub(crate) fn auth(&self) -> Result<lumen_store::auth::Auth> {
        lumen_store::auth::Auth::new(&self.auth_tokens).map_err(anyhow::Error::msg)
    }

    pub(crate) fn resolve(args: ServeArgs) -> Result<Config> {
        let file = match &args.config {
            Some(p) => FileConfig::load(p)?,
            None => FileConfig::default(),
        };
        macro_rules! pick {
            ($f:ident, $default:expr) => {
                args.$f.or(file.$f).unwrap_or_else(|| $default.into())
            };
        }
        let size =
            |name: &str, v: String| parse_size(&v).with_context(|| format!("invalid {name} {v:?}"));
        let dur = |name: &str, v: String| {
            parse_duration(&v).with_context(|| format!("invalid {name} {v:?}"))
        };
        let config = Config {
            data_dir: pick!(data_dir, "lumen-data"),
            otlp_grpc_addr: pick!(otlp_grpc_addr, "0.0.0.0:4317"),
            otlp_http_addr: pick!(otlp_http_addr, "0.0.0.0:4318"),
            http_addr: pick!(http_addr, "0.0.0.0:7070"),
            memory_budget: size("memory-budget", pick!(memory_budget, "256MiB"))?,
            max_request_size: size("max-request-size", pick!(max_request_size, "16MiB"))?,
            max_attributes: args.max_attributes.or(file.max_attributes).unwrap_or(128),
            max_attribute_length: size(
                "max-attribute-length",
                pick!(max_attribute_length, "32KiB"),
            )?,
            max_value_depth: args.max_value_depth.or(file.max_value_depth).unwrap_or(32),
            body_timeout: dur("body-timeout", pick!(body_timeout, "30s"))?,
            header_timeout: dur("header-timeout", pick!(header_timeout, "30s"))?,
            tls: match (
                args.tls_cert.or(file.tls_cert),
                args.tls_key.or(file.tls_key),
            ) {
                (Some(cert), Some(key)) => Some((cert, key)),
                (None, None) => None,
                _ => bail!("tls-cert and tls-key go together: set both or neither"),
            },
            flush_size: size("flush-size", pick!(flush_size, "48MiB"))?,
            flush_interval: dur("flush-interval", pick!(flush_interval, "30s"))?,
            index_delay: dur("index-delay", pick!(index_delay, "30s"))?,
            compaction_nice: match args.compaction_nice.or(file.compaction_nice).unwrap_or(10) {
                n @ 0..=19 => n,
                n => bail!("compaction-nice must be 0 to 19, not {n}"),
            },
            sql_timeout: dur("sql-timeout", pick!(sql_timeout, "30s"))?,
            sql_max_rows: args.sql_max_rows.or(file.sql_max_rows).unwrap_or(10_000),
            max_concurrent_queries: args
                .max_concurrent_queries
                .or(file.max_concurrent_queries)
                .unwrap_or(32),
            sql_memory: size("sql-memory", pick!(sql_memory, "512MiB"))?,
            sql_query_memory: size("sql-query-memory", pick!(sql_query_memory, "256MiB"))?,
            tail_buffer: args.tail_buffer.or(file.tail_buffer).unwrap_or(10_000),
            tail_max_subscribers: args
                .tail_max_subscribers
                .or(file.tail_max_subscribers)
                .unwrap_or(256),
            tail_max_rate: args.tail_max_rate.or(file.tail_max_rate).unwrap_or(5_000),
            tenant_header: args.tenant_header.or(file.tenant_header).unwrap_or(false),
            max_tenants: args.max_tenants.or(file.max_tenants).unwrap_or(100),
            retention: [
                args.retention_logs
                    .or(file.retention_logs)
                    .map(|v| dur("retention-logs", v))
                    .transpose()?,
                args.retention_spans
                    .or(file.retention_spans)
                    .map(|v| dur("retention-spans", v))
                    .transpose()?,
                args.retention_metrics
                    .or(file.retention_metrics)
                    .map(|v| dur("retention-metrics", v))
                    .transpose()?,
            ],
            storage: match args.object_store.or(file.object_store) {
                None => lumen_store::objects::Storage::Local,
                Some(url) => {
                    let mut s3 = lumen_store::objects::S3Config::from_url(&url)?;
                    s3.endpoint = args.s3_endpoint.or(file.s3_endpoint);
                    s3.region = args.s3_region.or(file.s3_region);
                    s3.allow_http = args.s3_allow_http.or(file.s3_allow_http).unwrap_or(false);
                    lumen_store::objects::Storage::S3(s3)
                }
            },
            log: pick!(log, "info"),
            auth_tokens: file.auth.map(|a| a.tokens).unwrap_or_default(),
        };
        config.auth()?;
        if config.memory_budget < 4 << 20 {
            bail!("memory-budget must be at least 4MiB");
        }
        if config.header_timeout.is_zero() {
            bail!("header-timeout must be positive");
        }
        if config.max_request_size == 0
            || config.sql_max_rows == 0
            || config.tail_buffer == 0
            || config.tail_max_rate == 0
        {
            bail!("max-request-size, sql-max-rows, tail-buffer and tail-max-rate must be positive");
        }
        Ok(config)
    }
}

/// Parses `1048576`, `64KiB`, `16MiB`, `1GiB`, `10MB` (decimal units too).
pub(crate) fn parse_size(s: &str) -> Result<usize> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: usize = num
        .parse()
        .context("expected a number followed by an optional unit (KiB, MiB, GiB, KB, MB, GB)")?;
    let mult: usize = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        other => bail!("unknown size unit {other:?}: use KiB, MiB, GiB, KB, MB or GB"),
    };
    n.checked_mul(mult).context("size too large")
}

/// Parses `500ms`, `30s`, `5m`, `2h`, `7d`.
pub(crate) fn parse_duration(s: &str) -> Result<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .context("expected a number followed by a unit (ms, s, m, h, d)")?;
    Ok(match unit {
        "ms" => Duration::from_millis(n),
        "s" | "" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        "d" => Duration::from_secs(n * 86400),
        other => bail!("unknown duration unit {other:?}: use ms, s, m, h or d"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("256MiB").ok(), Some(256 << 20));
        assert_eq!(parse_size("10MB").ok(), Some(10_000_000));
        assert_eq!(parse_size("4096").ok(), Some(4096));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("5 parsecs").is_err());
        assert_eq!(
            parse_duration("500ms").ok(),
            Some(Duration::from_millis(500))
        );
        assert_eq!(
            parse_duration("7d").ok(),
            Some(Duration::from_secs(7 * 86400))
        );
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn example_config_parses_and_unknown_keys_fail() {
        let example = include_str!("../lumen.example.toml");
        let parsed: FileConfig = toml::from_str(example).expect("example config parses");
        assert_eq!(parsed.memory_budget.as_deref(), Some("256MiB"));
        assert!(toml::from_str::<FileConfig>("no_such_option = 1").is_err());
    }

    /// Arguments naming a config file in `dir` that holds `text`.
    fn with_file(dir: &tempfile::TempDir, text: &str) -> ServeArgs {
        let path = dir.path().join("lumen.toml");
        std::fs::write(&path, text).expect("write");
        ServeArgs {
            config: Some(path),
            ..Default::default()
        }
    }

    #[test]
    fn flags_override_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let args = ServeArgs {
            http_addr: Some("127.0.0.1:2".into()),
            ..with_file(&dir, "http_addr = \"127.0.0.1:1\"\nsql_max_rows = 5\n")
        };
        let c = Config::resolve(args).expect("resolves");
        assert_eq!(c.http_addr, "127.0.0.1:2");
        assert_eq!(c.sql_max_rows, 5);
        assert_eq!(c.memory_budget, 256 << 20);
        assert!(matches!(c.storage, lumen_store::objects::Storage::Local));
        assert_eq!(c.compaction_nice, 10);
    }

    #[test]
    fn compaction_nice_is_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = Config::resolve(with_file(&dir, "compaction_nice = 25\n")).expect_err("range");
        assert!(
            err.to_string().contains("compaction-nice must be 0 to 19"),
            "{err}"
        );
        let c = Config::resolve(with_file(&dir, "compaction_nice = 0\n")).expect("resolves");
        assert_eq!(c.compaction_nice, 0);
    }

    #[test]
    fn object_store_url() {
        let args = ServeArgs {
            object_store: Some("s3://telemetry/lumen/prod/".into()),
            s3_endpoint: Some("http://127.0.0.1:9000".into()),
            s3_allow_http: Some(true),
            ..Default::default()
        };
        let c = Config::resolve(args).expect("resolves");
        let lumen_store::objects::Storage::S3(s3) = c.storage else {
            panic!("expected S3 storage");
        };
        assert_eq!(s3.bucket, "telemetry");
        assert_eq!(s3.prefix, "lumen/prod");
        assert_eq!(s3.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert!(s3.allow_http);
        for bad in ["gs://bucket", "s3://", "/tmp/x"] {
            let args = ServeArgs {
                object_store: Some(bad.into()),
                ..Default::default()
            };
            let err = Config::resolve(args).expect_err(bad);
            assert!(err.to_string().contains("object store URL"), "{err}");
        }
    }
}
