//! `longmem bench --quick`: every group runs and lands in bench.csv and BENCH.md. (The
//! numbers themselves are checked by the invariant tests: blocked search = dense search in
//! tests/memory_bank.rs, the running top-k = a full sort in kernels/.)

mod common;

use assert_cmd::Command;

/// bench.csv as maps from column name to value.
fn read_rows(path: &std::path::Path) -> Vec<std::collections::HashMap<String, String>> {
    let mut reader = csv::Reader::from_path(path).unwrap();
    reader.deserialize().map(|r| r.unwrap()).collect()
}

#[test]
fn quick_bench_writes_every_group() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bench");
    Command::cargo_bin("longmem")
        .unwrap()
        .args(["-q", "bench", "--quick", "--samples", "2", "--out"])
        .arg(&out)
        .assert()
        .success();
    let rows = read_rows(&out.join("bench.csv"));
    for group in ["peak", "retrieval", "scaling", "write", "bank", "model"] {
        assert!(rows.iter().any(|r| r["group"] == group), "no `{group}` rows");
    }
    for r in rows
        .iter()
        .filter(|r| ["retrieval", "scaling", "write", "model"].contains(&r["group"].as_str()))
    {
        let col = |name: &str| r[name].parse::<f64>().unwrap();
        assert!(col("samples") >= 1.0, "{r:?}");
        assert!(
            0.0 < col("min_ms") && col("min_ms") <= col("median_ms") && col("median_ms") <= col("max_ms"),
            "{r:?}"
        );
    }
    // Every method's forward and training step, and a write that crosses the ring's end.
    for name in [
        "longmem eval forward",
        "memtrm train step",
        "plain eval forward",
        "write a segment across the ring's end",
    ] {
        assert!(rows.iter().any(|r| r["name"] == name), "no `{name}` row");
    }
    // The bank holds keys, values and chunk keys and next to nothing else.
    let md = std::fs::read_to_string(out.join("BENCH.md")).unwrap();
    for r in rows.iter().filter(|r| r["group"] == "bank") {
        let ratio: f64 = r["note"].rsplit("ratio ").next().unwrap().parse().unwrap();
        assert!((1.0..1.05).contains(&ratio), "{r:?}");
    }
    assert!(
        md.contains("## Goals") && md.contains("libtorch") && md.contains("commit"),
        "{md}"
    );
    // faiss runs where Python has it, and then agrees on every id; otherwise it is skipped,
    // saying so (`just test-faiss` installs it and fails where it cannot run).
    match rows.iter().find(|r| r["name"].starts_with("faiss")) {
        Some(r) => assert!(r["note"].contains("100.000% same set"), "{r:?}"),
        None => {
            assert!(md.contains("faiss: skipped"), "{md}");
            let why = md
                .split("faiss: skipped: ")
                .nth(1)
                .and_then(|rest| rest.lines().next())
                .unwrap_or("");
            common::skip("faiss", &format!("its faiss comparison did not run: {why}"));
        }
    }
}

#[test]
fn a_missing_faiss_is_skipped_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    Command::cargo_bin("longmem")
        .unwrap()
        .args([
            "-q",
            "bench",
            "--quick",
            "--samples",
            "1",
            "--only",
            "retrieval",
            "--python",
            "/no/such/python",
            "--out",
        ])
        .arg(dir.path())
        .assert()
        .success();
    let md = std::fs::read_to_string(dir.path().join("BENCH.md")).unwrap();
    assert!(
        md.contains("faiss: skipped: `/no/such/python` could not be started"),
        "{md}"
    );
    assert!(!md.contains("## Models"), "--only retrieval ran the models:\n{md}");
}
