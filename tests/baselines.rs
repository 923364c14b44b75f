//! `baselines/published.toml` stays well-formed: every number carries its source.

#[test]
fn every_published_number_has_a_source_and_a_value() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/baselines/published.toml");
    let doc: toml::Table = std::fs::read_to_string(path).unwrap().parse().unwrap();
    let results = doc["result"].as_array().expect("[[result]] entries");
    assert!(results.len() >= 10);
    for r in results {
        let r = r.as_table().unwrap();
        assert!(r["source"].as_str().is_some_and(|s| !s.is_empty()), "{r:?}");
        assert!(
            matches!(r["confidence"].as_str(), Some("confirmed" | "secondary")),
            "{r:?}"
        );
        assert!(r.contains_key("metric") && r.contains_key("method"), "{r:?}");
        let has_value = r.get("value").and_then(|v| v.as_float()).is_some()
            || (r.get("value_min").is_some() && r.get("value_max").is_some());
        assert!(has_value, "{r:?}");
    }
}
