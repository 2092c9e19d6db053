//! The `lumen` binary: `lumen serve` runs the store; `lumen loadgen` (with
//! `lumen soak-clients` as its readers) measures it; `lumen inspect` shows what a data directory holds; `lumen bench-index` times index building; `lumen promqltest`
//! runs PromQL test files against the engine.

mod benchindex;
mod benchpromql;
mod benchtail;
mod config;
mod inspect;
mod loadgen;
mod net;
mod promqltest;
mod serve;
mod soakclients;

use anyhow::Result;
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

// glibc malloc spent ~18% of ingest CPU (prost allocates every string and
// attribute; consolidation under two-thread churn); mimalloc halves that.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Lumen: an OpenTelemetry store in one binary. OTLP in (gRPC :4317, HTTP :4318);
/// SQL, search, Jaeger and Prometheus APIs and a dashboard out (:7070).
#[derive(Parser)]
#[command(name = "lumen", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run Lumen: receive OTLP, store it durably, serve queries and the dashboard.
    Serve(Box<config::ServeArgs>),
    /// Send pre-encoded OTLP batches at a server and report throughput and ack latency.
    Loadgen(loadgen::LoadgenArgs),
    /// Measure live-tail latency: acknowledgement to WebSocket frame, at a fixed rate.
    BenchTail(benchtail::BenchTailArgs),
    /// Measure index building: index a data directory's segments again (left unchanged).
    BenchIndex(benchindex::BenchIndexArgs),
    /// Measure flushing: sort and write a data directory's segments again from arrival order.
    BenchFlush(benchindex::BenchFlushArgs),
    /// Measure PromQL: load a day of counters or histograms, time range queries.
    BenchPromql(benchpromql::BenchPromqlArgs),
    /// The readers of a soak test: live-tail subscribers and a query loop.
    SoakClients(soakclients::SoakClientsArgs),
    /// Show what a data directory holds: segments, rows and bytes per signal.
    Inspect(inspect::InspectArgs),
    /// Run PromQL test files (Prometheus's promqltest format) against Lumen's engine.
    Promqltest(promqltest::PromqlTestArgs),
}

fn init_logging(filter: &str) {
    let filter = EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| EnvFilter::new(filter));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            let config = config::Config::resolve(*args)?;
            init_logging(&config.log);
            serve::run(config).await
        }
        Command::Loadgen(args) => {
            init_logging("warn");
            loadgen::run(args).await
        }
        Command::BenchTail(args) => {
            init_logging("warn");
            benchtail::run(args).await
        }
        Command::BenchPromql(args) => {
            init_logging("warn");
            benchpromql::run(args).await
        }
        Command::SoakClients(args) => {
            init_logging("warn");
            soakclients::run(args).await
        }
        Command::BenchIndex(args) => {
            init_logging("warn");
            benchindex::run(&args)
        }
        Command::BenchFlush(args) => {
            init_logging("warn");
            benchindex::run_flush(&args)
        }
        Command::Inspect(args) => inspect::run(&args),
        Command::Promqltest(args) => promqltest::run(&args),
    }
}
