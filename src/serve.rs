//! `lumen serve`: wires store → collector (gRPC, HTTP) → query API, and shuts
//! down cleanly: stop accepting, finish in-flight requests, flush, exit 0.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use lumen_collector::grpc::{Logs, Metrics, OtlpGrpc, Traces};
use lumen_collector::{Collector, Limits};
use lumen_query::tail::TailLimits;
use lumen_query::{ApiConfig, SqlLimits};
use lumen_store::StoreConfig;
use lumen_store::tenants::Tenants;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::Config;

async fn bind(addr: &str, what: &str) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the {what} address {addr}"))
}

/// Resolves when SIGTERM or Ctrl-C arrives.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

pub(crate) async fn run(config: Config) -> Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
    let data_dir = std::fs::canonicalize(&config.data_dir)?;
    let mut store_config = StoreConfig {
        memory_budget: config.memory_budget,
        flush_bytes: config.flush_size,
        flush_interval: config.flush_interval,
        retention: config.retention,
        storage: config.storage.clone(),
        ..StoreConfig::new(&data_dir)
    };
    store_config.compaction.index_delay = config.index_delay;
    store_config.compaction.nice = config.compaction_nice;
    // Test hook (crash tests): concatenate indexed segments however small,
    // so a test reaches that path with a few records.
    if let Some(rows) = std::env::var("LUMEN_TEST_CONCAT_MIN_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        store_config.compaction.concat_min_rows = rows;
    }
    let auth = Arc::new(config.auth()?);
    let tenant_names = auth.tenants();
    let max_tenants = config.max_tenants;
    let tenants = Arc::new(
        tokio::task::spawn_blocking(move || {
            Tenants::open(store_config, &tenant_names, max_tenants)
        })
        .await?
        .context("opening the store")?,
    );

    let collector = Collector::new(
        Arc::clone(&tenants),
        Limits {
            max_request_bytes: config.max_request_size,
            attributes: lumen_collector::limits::AttributeLimits {
                max_attributes: config.max_attributes,
                max_value_bytes: config.max_attribute_length.max(1),
                max_depth: config.max_value_depth.max(1),
            },
            body_timeout: config.body_timeout,
        },
        Arc::clone(&auth),
        config.tenant_header,
    );
    let api_config = ApiConfig {
        sql: SqlLimits {
            timeout: config.sql_timeout,
            max_rows: config.sql_max_rows,
            memory_bytes: config.sql_memory,
            query_memory_bytes: config.sql_query_memory.min(config.sql_memory),
        },
        tail: TailLimits {
            buffer_records: config.tail_buffer,
            max_subscribers: config.tail_max_subscribers,
            max_rate: config.tail_max_rate,
        },
        max_concurrent_queries: config.max_concurrent_queries,
        tenant_header: config.tenant_header,
    };
    let api_router = lumen_query::router(Arc::clone(&auth), Arc::clone(&tenants), api_config)?;

    let tls = match &config.tls {
        Some((cert, key)) => Some(crate::net::Tls::load(cert, key)?),
        None => None,
    };
    let grpc_listener = bind(&config.otlp_grpc_addr, "OTLP/gRPC").await?;
    let otlp_http_listener = bind(&config.otlp_http_addr, "OTLP/HTTP").await?;
    let http_listener = bind(&config.http_addr, "HTTP API").await?;
    let addrs: [SocketAddr; 3] = [
        grpc_listener.local_addr()?,
        otlp_http_listener.local_addr()?,
        http_listener.local_addr()?,
    ];

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|v| *v).await;
    };

    let grpc = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        // OTLP requests are large (hundreds of KiB); HTTP/2's 64 KiB default
        // windows would split each into many flow-control round trips.
        .initial_stream_window_size(Some(4 << 20))
        .initial_connection_window_size(Some(16 << 20))
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .add_service(OtlpGrpc::<Logs>::new(Arc::clone(&collector)))
        .add_service(OtlpGrpc::<Traces>::new(Arc::clone(&collector)))
        .add_service(OtlpGrpc::<Metrics>::new(Arc::clone(&collector)));
    let grpc_stop = stopped(stop_rx.clone());
    let grpc: std::pin::Pin<Box<dyn Future<Output = _> + Send>> = match &tls {
        Some(tls) => Box::pin(grpc.serve_with_incoming_shutdown(
            crate::net::tls_incoming(grpc_listener, tls.grpc.clone(), config.header_timeout),
            grpc_stop,
        )),
        None => Box::pin(grpc.serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(grpc_listener),
            grpc_stop,
        )),
    };
    let otlp_http = crate::net::serve_http(
        otlp_http_listener,
        lumen_collector::http::router(Arc::clone(&collector)),
        tls.as_ref().map(|t| t.http.clone()),
        config.header_timeout,
        stopped(stop_rx.clone()),
    );
    let api = crate::net::serve_http(
        http_listener,
        api_router,
        tls.as_ref().map(|t| t.http.clone()),
        config.header_timeout,
        stopped(stop_rx.clone()),
    );

    let grpc = tokio::spawn(async move { grpc.await.context("OTLP/gRPC server") });
    let otlp_http = tokio::spawn(async move {
        otlp_http.await;
        Ok(())
    });
    let api = tokio::spawn(async move {
        api.await;
        Ok(())
    });

    tracing::info!(otlp_grpc = %addrs[0], otlp_http = %addrs[1], http = %addrs[2], data_dir = %data_dir.display(), "lumen is ready");
    // One machine-readable line for scripts and tests that start Lumen on port 0.
    #[allow(clippy::print_stdout)]
    {
        println!(
            "lumen ready otlp_grpc={} otlp_http={} http={} tls={}",
            addrs[0],
            addrs[1],
            addrs[2],
            tls.is_some()
        );
    }

    shutdown_signal().await;
    tracing::info!("shutting down: finishing in-flight requests");
    let _ = stop_tx.send(true);
    // Long-lived connections (live tail, idle keep-alives) must not hold shutdown hostage.
    let drain = async {
        let (a, b, c): (_, _, std::result::Result<Result<()>, _>) =
            tokio::join!(grpc, otlp_http, api);
        for r in [a, b, c] {
            if let Ok(Err(e)) = r {
                tracing::warn!(error = %e, "server ended with an error");
            }
        }
    };
    if tokio::time::timeout(Duration::from_secs(10), drain)
        .await
        .is_err()
    {
        tracing::warn!("some connections did not close within 10s; closing anyway");
    }
    tracing::info!("flushing buffers");
    tokio::task::spawn_blocking(move || tenants.close())
        .await?
        .context("flushing the store")?;
    tracing::info!("bye");
    Ok(())
}
