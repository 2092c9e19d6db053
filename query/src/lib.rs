//! The HTTP API on :7070: health, Lumen's own metrics, SQL, and the embedded
//! dashboard. Errors become `{"error": "..."}` with a status code in one
//! place ([`Error::into_response`]).

pub mod jaeger;
pub mod json;
pub mod lang;
pub mod prom;
pub mod promnames;
pub mod promql;
pub mod search;
pub mod sql;
pub mod table;
pub mod tail;
pub mod udf;

use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use lumen_store::Store;
use lumen_store::auth::{Auth, Scope};
use lumen_store::tenants::Tenants;
use rust_embed::RustEmbed;

pub use sql::{SqlEngine, SqlLimits};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Syntax(lang::SyntaxError),
    #[error("{0}")]
    Timeout(String),
    #[error("{0}")]
    ResourcesExhausted(String),
    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<datafusion::arrow::error::ArrowError> for Error {
    fn from(e: datafusion::arrow::error::ArrowError) -> Self {
        Error::Internal(e.to_string())
    }
}

impl Error {
    /// Sorts DataFusion's errors into the client's fault and ours.
    pub fn from_datafusion(e: datafusion::error::DataFusionError) -> Self {
        use datafusion::error::DataFusionError as D;
        match e.find_root() {
            D::ResourcesExhausted(m) => {
                Error::ResourcesExhausted(format!("query exceeded its memory limit: {m}"))
            }
            D::Internal(_)
            | D::IoError(_)
            | D::ObjectStore(_)
            | D::ParquetError(_)
            | D::External(_) => Error::Internal(e.to_string()),
            // Parse, plan, schema, "not implemented" and execution errors come from the query text.
            _ => Error::BadRequest(e.to_string()),
        }
    }

    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Error::BadRequest(_) | Error::Syntax(_) => StatusCode::BAD_REQUEST,
            Error::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            Error::ResourcesExhausted(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        if matches!(self, Error::Internal(_)) {
            tracing::error!(error = %self, "query failed");
        }
        let body = match &self {
            Error::Syntax(e) => {
                serde_json::json!({ "error": self.to_string(), "position": e.position })
            }
            _ => serde_json::json!({ "error": self.to_string() }),
        };
        (self.status(), Json(body)).into_response()
    }
}

/// What the HTTP handlers share.
pub struct AppState {
    pub store: Arc<Store>,
    pub sql: SqlEngine,
    pub tail: tail::TailLimits,
    tail_permits: Arc<tokio::sync::Semaphore>,
    pub auth: Arc<Auth>,
}

impl AppState {
    /// A tenant's query state over its `store`; `permits` bounds live-tail
    /// subscribers across all tenants.
    pub fn new(
        store: Arc<Store>,
        sql: SqlEngine,
        tail: tail::TailLimits,
        auth: Arc<Auth>,
        permits: Arc<tokio::sync::Semaphore>,
    ) -> Self {
        AppState {
            store,
            sql,
            tail,
            tail_permits: permits,
            auth,
        }
    }
}

/// The scope a path needs: `/health` and the dashboard's files are open
/// (they hold no data), `/metrics` is for admins, the APIs for readers.
fn scope_of(path: &str) -> Option<Scope> {
    if path == "/metrics" {
        Some(Scope::Admin)
    } else if path.starts_with("/api/") && path != "/api/openapi.json" {
        Some(Scope::Read)
    } else {
        None
    }
}

/// How the API serves its tenants.
#[derive(Clone)]
pub struct ApiConfig {
    pub sql: SqlLimits,
    pub tail: tail::TailLimits,
    /// Queries running at once, all tenants together (the tail has its own).
    pub max_concurrent_queries: usize,
    /// Without tokens, take the tenant from `X-Scope-OrgID`.
    pub tenant_header: bool,
}

/// The API of each tenant, and who may use which.
struct Dispatch {
    auth: Arc<Auth>,
    tenants: Arc<Tenants>,
    config: ApiConfig,
    routers: std::sync::RwLock<std::collections::HashMap<String, Router>>,
    queries: Arc<tokio::sync::Semaphore>,
    /// Live-tail subscribers, all tenants together.
    tail_permits: Arc<tokio::sync::Semaphore>,
    /// SQL memory, all tenants together.
    sql_pool: Arc<dyn datafusion::execution::memory_pool::MemoryPool>,
}

impl Dispatch {
    fn tenant_router(&self, store: Arc<Store>) -> Result<Router> {
        let sql = SqlEngine::new(
            Arc::clone(&store),
            self.config.sql.clone(),
            Arc::clone(&self.sql_pool),
        )?;
        Ok(tenant_router(Arc::new(AppState::new(
            store,
            sql,
            self.config.tail.clone(),
            Arc::clone(&self.auth),
            Arc::clone(&self.tail_permits),
        ))))
    }

    fn cached(&self, tenant: &str) -> Option<Router> {
        self.routers
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(tenant)
            .cloned()
    }

    /// The API of `tenant`, opening the tenant (header mode) or building
    /// its state (a tenant the collector opened since) on first use.
    async fn router_for(&self, tenant: &str) -> Result<Router> {
        if let Some(r) = self.cached(tenant) {
            return Ok(r);
        }
        let store = match self.tenants.open_async(tenant).await {
            Ok(s) => s,
            Err(lumen_store::Error::Tenant(msg)) => return Err(Error::BadRequest(msg)),
            Err(e) => return Err(Error::Internal(e.to_string())),
        };
        let mut routers = self
            .routers
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(r) = routers.get(tenant) {
            return Ok(r.clone());
        }
        let r = self.tenant_router(store)?;
        routers.insert(tenant.to_owned(), r.clone());
        Ok(r)
    }
}

/// Sends a request to its tenant's API: the token's tenant with tokens
/// configured (after checking the path's scope: 401 with `WWW-Authenticate`
/// for none or a wrong token, 403 for one without the scope), else the
/// default tenant, or with `--tenant-header` the one `X-Scope-OrgID` names.
/// Browsers cannot set headers on a WebSocket, so the tail also takes
/// `?access_token=`.
async fn dispatch(State(d): State<Arc<Dispatch>>, req: axum::extract::Request) -> Response {
    use tower::ServiceExt as _;
    let scope = scope_of(req.uri().path());
    let tenant = match scope {
        Some(scope) if d.auth.enabled() => match authenticate(&d.auth, &req, scope) {
            Ok(t) => t,
            Err(res) => return *res,
        },
        // `/metrics` (admin) too: a tenant's store gauges are its own.
        Some(Scope::Read | Scope::Admin) if d.config.tenant_header => {
            match lumen_store::tenants::from_header(
                req.headers()
                    .get(lumen_store::tenants::TENANT_HEADER)
                    .map(|v| v.as_bytes()),
            ) {
                Ok(t) => t,
                Err(msg) => return Error::BadRequest(msg).into_response(),
            }
        }
        _ => lumen_store::auth::DEFAULT_TENANT.to_owned(),
    };
    let router = match d.router_for(&tenant).await {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let path = req.uri().path();
    let _permit = if path.starts_with("/api/") && path != "/api/v1/tail" {
        match Arc::clone(&d.queries).try_acquire_owned() {
            Ok(p) => Some(p),
            Err(_) => {
                let msg = "too many queries at once (--max-concurrent-queries); retry shortly";
                let body = serde_json::json!({
                    "error": msg, "status": "error", "errorType": "unavailable",
                    "errors": [{ "code": 503, "msg": msg }],
                });
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [(header::RETRY_AFTER, "1")],
                    Json(body),
                )
                    .into_response();
            }
        }
    } else {
        None
    };
    match router.clone().oneshot(req).await {
        Ok(res) => res,
        Err(never) => match never {},
    }
}

/// The tenant of a request's token, if it has `scope`; else the refusal.
fn authenticate(
    auth: &Auth,
    req: &axum::extract::Request,
    scope: Scope,
) -> std::result::Result<String, Box<Response>> {
    let mut token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(lumen_store::auth::token_from_authorization);
    if token.is_none() && req.uri().path() == "/api/v1/tail" {
        token = axum::extract::Query::<std::collections::HashMap<String, String>>::try_from_uri(
            req.uri(),
        )
        .ok()
        .and_then(|q| q.0.get("access_token").cloned());
    }
    match auth.check(token.as_deref(), scope) {
        Ok(p) => Ok(p.tenant),
        Err(e) => {
            let status = if e.is_forbidden() {
                StatusCode::FORBIDDEN
            } else {
                StatusCode::UNAUTHORIZED
            };
            // One body that reads as Lumen's, Prometheus's and Jaeger's error shapes.
            let body = serde_json::json!({
                "error": e.to_string(),
                "status": "error",
                "errorType": if e.is_forbidden() { "forbidden" } else { "unauthorized" },
                "errors": [{ "code": status.as_u16(), "msg": e.to_string() }],
            });
            let mut res = (status, Json(body)).into_response();
            if !e.is_forbidden() {
                res.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    axum::http::HeaderValue::from_static("Bearer realm=\"lumen\""),
                );
            }
            Err(Box::new(res))
        }
    }
}

#[derive(RustEmbed)]
#[folder = "../ui/"]
struct Ui;

/// The HTTP API and dashboard over each tenant's store, behind the token
/// check. Tenants opened later get their API on first use.
pub fn router(auth: Arc<Auth>, tenants: Arc<Tenants>, config: ApiConfig) -> Result<Router> {
    let d = Dispatch {
        auth,
        tenants: Arc::clone(&tenants),
        queries: Arc::new(tokio::sync::Semaphore::new(
            config.max_concurrent_queries.max(1),
        )),
        tail_permits: Arc::new(tokio::sync::Semaphore::new(config.tail.max_subscribers)),
        sql_pool: SqlEngine::memory_pool(&config.sql),
        config,
        routers: Default::default(),
    };
    let mut routers = std::collections::HashMap::new();
    for (name, store) in tenants.all() {
        routers.insert(name, d.tenant_router(store)?);
    }
    *d.routers
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = routers;
    Ok(Router::new().fallback(dispatch).with_state(Arc::new(d)))
}

/// One tenant's API.
fn tenant_router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/api/v1/sql", post(sql_query))
        .route("/api/v1/logs/search", get(logs_search))
        .route("/api/v1/logs/histogram", get(logs_histogram))
        .route("/api/v1/tail", get(tail::tail))
        .route("/api/openapi.json", get(openapi))
        .route("/api/v1/query", get(prom::query).post(prom::query))
        .route(
            "/api/v1/query_range",
            get(prom::query_range).post(prom::query_range),
        )
        .route(
            "/api/v1/query_exemplars",
            get(prom::query_exemplars).post(prom::query_exemplars),
        )
        .route("/api/v1/labels", get(prom::labels).post(prom::labels))
        .route(
            "/api/v1/label/{name}/values",
            get(prom::label_values).post(prom::label_values),
        )
        .route("/api/v1/series", get(prom::series).post(prom::series))
        .route("/api/v1/metadata", get(prom::metadata).post(prom::metadata))
        .route("/api/v1/status/buildinfo", get(prom::buildinfo))
        .route(
            "/api/v1/format_query",
            get(prom::format_query).post(prom::format_query),
        )
        .route("/api/services", get(jaeger::services))
        .route(
            "/api/services/{service}/operations",
            get(jaeger::service_operations),
        )
        .route("/api/operations", get(jaeger::operations))
        .route("/api/traces", get(jaeger::find_traces))
        .route("/api/traces/{trace_id}", get(jaeger::get_trace))
        .route("/api/dependencies", get(jaeger::dependencies))
        .fallback(get(static_file))
        .with_state(state)
}

/// The OpenAPI description of the endpoints.
async fn openapi() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("openapi.json"),
    )
}

async fn health() -> impl IntoResponse {
    (StatusCode::OK, "ok\n")
}

async fn metrics(State(s): State<Arc<AppState>>) -> impl IntoResponse {
    let mut body = s.store.metrics().render(&s.store.gauges());
    let (missing, invalid, forbidden) = s.auth.failures();
    body.push_str(&format!(
        "# HELP lumen_auth_failures_total Requests refused for their credentials, by reason.\n# TYPE lumen_auth_failures_total counter\nlumen_auth_failures_total{{reason=\"missing\"}} {missing}\nlumen_auth_failures_total{{reason=\"invalid\"}} {invalid}\nlumen_auth_failures_total{{reason=\"forbidden\"}} {forbidden}\n"
    ));
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SqlRequest {
    query: String,
}

async fn sql_query(
    State(s): State<Arc<AppState>>,
    body: axum::body::Bytes,
) -> Result<Json<sql::SqlResult>> {
    let req: SqlRequest = serde_json::from_slice(&body).map_err(|e| {
        Error::BadRequest(format!(
            "expected a JSON body {{\"query\": \"SELECT ...\"}}: {e}"
        ))
    })?;
    let started = Instant::now();
    let result = s.sql.run(&req.query).await;
    let m = s.store.metrics();
    m.query_seconds.observe(started.elapsed().as_secs_f64());
    if result.is_err() {
        m.queries_failed
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    Ok(Json(result?))
}

/// Query-string parameters, rejecting any the endpoint does not know.
pub(crate) fn params(
    pairs: Vec<(String, String)>,
    known: &[&str],
) -> Result<std::collections::HashMap<String, String>> {
    let mut out = std::collections::HashMap::new();
    for (k, v) in pairs {
        if !known.contains(&k.as_str()) {
            return Err(Error::BadRequest(format!(
                "unknown parameter {k:?} (expected one of: {})",
                known.join(", ")
            )));
        }
        if out.insert(k.clone(), v).is_some() {
            return Err(Error::BadRequest(format!("parameter {k:?} given twice")));
        }
    }
    Ok(out)
}

pub(crate) fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// `start`/`end`: RFC 3339, Unix seconds (fractional allowed), `now` or
/// `now-15m` (units ms, s, m, h, d, w).
pub fn parse_time(name: &str, s: &str, now: i64) -> Result<i64> {
    let bad = |why: &str| {
        Error::BadRequest(format!(
            "{name}={s:?}: {why} (expected RFC 3339 like 2024-05-01T12:00:00Z, Unix seconds like 1714564800.5, now or now-15m)"
        ))
    };
    let s = s.trim();
    if let Some(rest) = s.strip_prefix("now") {
        if rest.is_empty() {
            return Ok(now);
        }
        let (sign, amount) = match rest.as_bytes()[0] {
            b'-' => (-1i128, &rest[1..]),
            b'+' => (1i128, &rest[1..]),
            _ => return Err(bad("expected - or + after now")),
        };
        let digits = amount.trim_end_matches(|c: char| c.is_ascii_alphabetic());
        let unit = &amount[digits.len()..];
        let n: i128 = digits
            .parse()
            .map_err(|_| bad("expected a number after now-"))?;
        let scale: i128 = match unit {
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "d" => 86_400_000_000_000,
            "w" => 604_800_000_000_000,
            _ => return Err(bad("unknown unit")),
        };
        let t = i128::from(now) + sign * n * scale;
        return i64::try_from(t).map_err(|_| bad("out of range"));
    }
    if s.bytes()
        .all(|b| b.is_ascii_digit() || b == b'.' || b == b'-')
        && !s.is_empty()
    {
        let (int, frac) = s.split_once('.').unwrap_or((s, ""));
        if frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("at most 9 decimals"));
        }
        let secs: i128 = int.parse().map_err(|_| bad("not a number"))?;
        let frac_ns: i128 = format!("{frac:0<9}")
            .parse()
            .map_err(|_| bad("not a number"))?;
        let t = secs * 1_000_000_000 + if secs < 0 { -frac_ns } else { frac_ns };
        return i64::try_from(t).map_err(|_| bad("out of range"));
    }
    datafusion::arrow::compute::kernels::cast_utils::string_to_timestamp_nanos(s)
        .map_err(|_| bad("not a time"))
}

/// The `start`, `end` and `q` shared by search and histogram.
fn query_and_range(
    p: &std::collections::HashMap<String, String>,
) -> Result<(lumen_store::index::Query, i64, i64)> {
    let now = now_ns();
    let start = p
        .get("start")
        .map(|s| parse_time("start", s, now))
        .transpose()?
        .unwrap_or(i64::MIN);
    let end = p
        .get("end")
        .map(|s| parse_time("end", s, now))
        .transpose()?
        .unwrap_or(i64::MAX);
    if start > end {
        return Err(Error::BadRequest("start is after end".into()));
    }
    let q = lang::parse(p.get("q").map_or("", String::as_str), lang::Target::Logs)
        .map_err(Error::Syntax)?;
    Ok((q, start, end))
}

fn count_param(
    p: &std::collections::HashMap<String, String>,
    name: &str,
    default: usize,
    max: usize,
) -> Result<usize> {
    match p.get(name) {
        None => Ok(default),
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| {
                Error::BadRequest(format!(
                    "{name}={v:?}: expected a whole number from 1 to {max}"
                ))
            }),
    }
}

pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(format!("search task failed: {e}")))?
}

async fn logs_search(
    State(s): State<Arc<AppState>>,
    axum::extract::Query(pairs): axum::extract::Query<Vec<(String, String)>>,
) -> Result<Json<search::Page>> {
    let p = params(pairs, &["q", "start", "end", "limit", "cursor"])?;
    let (query, start, end) = query_and_range(&p)?;
    let req = search::SearchRequest {
        query,
        start,
        end,
        limit: count_param(&p, "limit", 100, search::MAX_LIMIT)?,
        cursor: p
            .get("cursor")
            .map(|c| search::Cursor::decode(c))
            .transpose()?,
        deadline: Some(Instant::now() + s.sql.limits().timeout),
    };
    let started = Instant::now();
    let store = Arc::clone(&s.store);
    let page = blocking(move || search::search(&store, &req)).await;
    s.store
        .metrics()
        .query_seconds
        .observe(started.elapsed().as_secs_f64());
    Ok(Json(page?))
}

async fn logs_histogram(
    State(s): State<Arc<AppState>>,
    axum::extract::Query(pairs): axum::extract::Query<Vec<(String, String)>>,
) -> Result<Json<search::Histogram>> {
    let p = params(pairs, &["q", "start", "end", "buckets"])?;
    let (query, start, end) = query_and_range(&p)?;
    let buckets = count_param(&p, "buckets", 60, search::MAX_BUCKETS)?;
    let store = Arc::clone(&s.store);
    let deadline = Some(Instant::now() + s.sql.limits().timeout);
    Ok(Json(
        blocking(move || search::histogram(&store, &query, start, end, buckets, deadline)).await?,
    ))
}

/// The dashboard's files: gzip-compressed when the client takes it (each
/// file compressed once per content hash), with an `ETag` so a reload
/// revalidates instead of downloading again.
async fn static_file(uri: Uri, headers: HeaderMap) -> Response {
    let path = uri.path().trim_start_matches('/');
    let path = if path.is_empty() { "index.html" } else { path };
    let Some(file) = Ui::get(path) else {
        return (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({ "error": format!("no such page: /{path}") })),
        )
            .into_response();
    };
    let mime = match path.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("js") | Some("mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("json") => "application/json",
        Some("png") => "image/png",
        Some("md") => "text/markdown; charset=utf-8",
        _ => "application/octet-stream",
    };
    let hash = file.metadata.sha256_hash();
    let etag: String = std::iter::once("\"".to_owned())
        .chain(hash[..12].iter().map(|b| format!("{b:02x}")))
        .chain(std::iter::once("\"".to_owned()))
        .collect();
    let base = [
        (header::CONTENT_TYPE, mime.to_owned()),
        (header::ETAG, etag.clone()),
        (header::CACHE_CONTROL, "no-cache".to_owned()),
        (header::VARY, "accept-encoding".to_owned()),
    ];
    let matches_etag = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    if matches_etag {
        return (StatusCode::NOT_MODIFIED, base).into_response();
    }
    let gzip_ok = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|e| e.trim().starts_with("gzip")));
    if gzip_ok && !mime.starts_with("image/png") {
        let body = gzipped(path, hash, &file.data);
        return (base, [(header::CONTENT_ENCODING, "gzip")], body).into_response();
    }
    (base, file.data).into_response()
}

/// `data` gzip-compressed, cached by path and content hash.
fn gzipped(path: &str, hash: [u8; 32], data: &[u8]) -> axum::body::Bytes {
    use std::collections::HashMap;
    use std::io::Write;
    use std::sync::{Mutex, OnceLock};
    type Cache = Mutex<HashMap<(String, [u8; 32]), axum::body::Bytes>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let key = (path.to_owned(), hash);
    if let Some(b) = cache.lock().ok().and_then(|c| c.get(&key).cloned()) {
        return b;
    }
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let out = match enc.write_all(data).and_then(|()| enc.finish()) {
        Ok(v) => axum::body::Bytes::from(v),
        // Writing to a Vec does not fail; were it to, serve it plain.
        Err(_) => return axum::body::Bytes::copy_from_slice(data),
    };
    if let Ok(mut c) = cache.lock() {
        c.insert(key, out.clone());
    }
    out
}
