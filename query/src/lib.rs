//! The HTTP API on :7070: health, Lumen's own metrics, SQL, and the embedded
//! dashboard. Errors become `{"error": "..."}` with a status code in one
//! place ([`Error::into_response`]).

pub mod json;
pub mod lang;
pub mod sql;
pub mod table;

use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use lumen_store::Store;
use rust_embed::RustEmbed;

pub use sql::{SqlEngine, SqlLimits};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    BadRequest(String),
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

    fn status(&self) -> StatusCode {
        match self {
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
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
        (
            self.status(),
            Json(serde_json::json!({ "error": self.to_string() })),
        )
            .into_response()
    }
}

/// What the HTTP handlers share.
pub struct AppState {
    pub store: Arc<Store>,
    pub sql: SqlEngine,
}

#[derive(RustEmbed)]
#[folder = "../ui/"]
struct Ui;

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/api/v1/sql", post(sql_query))
        .fallback(get(static_file))
        .with_state(state)
}

async fn health() -> impl IntoResponse {
    (StatusCode::OK, "ok\n")
}

async fn metrics(State(s): State<Arc<AppState>>) -> impl IntoResponse {
    let body = s.store.metrics().render(&s.store.gauges());
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

async fn static_file(uri: Uri) -> Response {
    let path = uri.path().trim_start_matches('/');
    let path = if path.is_empty() { "index.html" } else { path };
    match Ui::get(path) {
        Some(file) => {
            let mime = match path.rsplit('.').next() {
                Some("html") => "text/html; charset=utf-8",
                Some("js") | Some("mjs") => "text/javascript; charset=utf-8",
                Some("css") => "text/css; charset=utf-8",
                Some("svg") => "image/svg+xml",
                Some("json") => "application/json",
                Some("png") => "image/png",
                _ => "application/octet-stream",
            };
            ([(header::CONTENT_TYPE, mime)], file.data).into_response()
        }
        None => (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({ "error": format!("no such page: /{path}") })),
        )
            .into_response(),
    }
}
