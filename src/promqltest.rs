//! `lumen promqltest FILE...`: runs files in Prometheus's `promqltest`
//! format against Lumen's PromQL engine and prints the pass rate per file
//! and per function family, then each failing case.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use lumen_query::promql::{Engine, promqltest};

#[derive(Debug, Args)]
pub(crate) struct PromqlTestArgs {
    /// Test files (`load`, `eval instant|range`, `expect fail`, ...).
    #[arg(required = true)]
    pub(crate) files: Vec<PathBuf>,
    /// Print only the totals and the per-family table, not each failure.
    #[arg(long)]
    pub(crate) summary: bool,
    /// Drop `__name__` where a function or operator drops it (Prometheus's
    /// default) instead of from the result only (delayed name removal, which
    /// Prometheus's own test engine enables and its test files expect).
    #[arg(long)]
    pub(crate) immediate_name_removal: bool,
}

/// Runs the files; fails (exit 1) when any case fails.
pub(crate) fn run(args: &PromqlTestArgs) -> Result<()> {
    let engine = Engine {
        delayed_name_removal: !args.immediate_name_removal,
        ..Engine::default()
    };
    let mut all = promqltest::Report::default();
    let mut out = std::io::stdout().lock();
    for f in &args.files {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        let report = promqltest::run(&text, &engine);
        let mut shown = report.render(&f.display().to_string());
        if args.summary {
            shown = shown
                .lines()
                .filter(|l| !l.starts_with("  FAIL") && !l.starts_with("      "))
                .collect::<Vec<_>>()
                .join("\n")
                + "\n";
        }
        out.write_all(shown.as_bytes())?;
        all.cases.extend(report.cases);
        all.errors.extend(report.errors);
    }
    if args.files.len() > 1 {
        let total = all.render("all files");
        let head: Vec<&str> = total
            .lines()
            .take_while(|l| !l.starts_with("  FAIL") && !l.starts_with("  ERROR"))
            .collect();
        writeln!(out, "{}", head.join("\n"))?;
    }
    if all.passed() < all.cases.len() || !all.errors.is_empty() {
        anyhow::bail!(
            "{} of {} cases failed",
            all.cases.len() - all.passed(),
            all.cases.len()
        );
    }
    Ok(())
}
