//! Configuration through the environment and a TOML file, as a user sets it.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use common::TestServer;

#[test]
fn environment_and_config_file_set_options() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("lumen.toml");
    std::fs::write(&file, "sql_max_rows = 7\nsql_timeout = \"10s\"\n").unwrap();
    // The file says 7 rows; the environment wins with 3.
    let server = TestServer::start_with_env(
        &["--config", file.to_str().unwrap()],
        &[("LUMEN_SQL_MAX_ROWS", "3")],
    );
    let r = server.sql("SELECT * FROM generate_series(1, 100)");
    assert_eq!(r["rows"].as_array().unwrap().len(), 3);
    assert_eq!(r["truncated"], true);
}

#[test]
fn unknown_config_keys_and_bad_values_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("lumen.toml");
    std::fs::write(&file, "memory_budjet = \"1GiB\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_lumen"))
        .args(["serve", "--config", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown field `memory_budjet`"), "{err}");

    let out = Command::new(env!("CARGO_BIN_EXE_lumen"))
        .args(["serve", "--memory-budget", "lots"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("invalid memory-budget \"lots\""), "{err}");
}
