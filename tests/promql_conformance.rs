//! Runs the PromQL test files in `tests/promql/` (Prometheus's `promqltest`
//! format, written from the PromQL documentation) against Lumen's engine,
//! prints the pass rate per function family, and requires every case to
//! pass, with the metric name dropped at once (Prometheus's default) and
//! with delayed name removal (what Prometheus's test engine runs).

use lumen_query::promql::{Engine, promqltest};

#[test]
fn promql_test_files_pass() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/promql");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/promql")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "test"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 9,
        "expected the test files in {}",
        dir.display()
    );
    let mut all = promqltest::Report::default();
    let mut failed = Vec::new();
    // `*.delayed.test` files hold cases for delayed name removal only.
    let modes = |f: &std::path::PathBuf| -> Vec<bool> {
        if f.to_string_lossy().ends_with(".delayed.test") {
            vec![true]
        } else {
            vec![false, true]
        }
    };
    for (f, delayed) in files
        .iter()
        .flat_map(|f| modes(f).into_iter().map(move |m| (f, m)))
    {
        let engine = Engine {
            delayed_name_removal: delayed,
            ..Engine::default()
        };
        let text = std::fs::read_to_string(f).expect("read test file");
        let report = promqltest::run(&text, &engine);
        let name = format!(
            "{}{}",
            f.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            if delayed {
                " (delayed name removal)"
            } else {
                ""
            }
        );
        eprintln!("{}", report.render(&name));
        if report.passed() != report.cases.len() || !report.errors.is_empty() {
            failed.push(name);
        }
        all.cases.extend(report.cases);
        all.errors.extend(report.errors);
    }
    let summary = all.render("all files");
    eprintln!(
        "{}",
        summary
            .lines()
            .take_while(|l| !l.starts_with("  FAIL"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(all.cases.len() > 500, "only {} cases", all.cases.len());
    assert!(failed.is_empty(), "failing files: {failed:?}");
}
