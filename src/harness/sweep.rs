//! The sweep's grid and the TOML table edits that place a sweep point into a spec.

use crate::config::SpecError;
use toml::{Table, Value};

/// Every combination of the sweep's values, the first key varying slowest.
pub fn grid(sweep: &[(String, Vec<Value>)]) -> Vec<Vec<(String, Value)>> {
    let mut points = vec![Vec::new()];
    for (key, values) in sweep {
        points = points
            .into_iter()
            .flat_map(|point| {
                values.iter().map(move |v| {
                    let mut p = point.clone();
                    p.push((key.clone(), v.clone()));
                    p
                })
            })
            .collect();
    }
    points
}

/// A sweep point as `key = value, ...`, for messages.
pub fn describe_point(point: &[(String, Value)]) -> String {
    let parts: Vec<String> = point.iter().map(|(k, v)| format!("{k} = {v}")).collect();
    if parts.is_empty() {
        "the base spec".into()
    } else {
        parts.join(", ")
    }
}

/// Adds the sweep point to an error's message.
pub fn at_point(e: SpecError, point: &str) -> SpecError {
    match e {
        SpecError::Invalid {
            path,
            key,
            value,
            allowed,
        } => SpecError::Invalid {
            path,
            key,
            value,
            allowed: format!("{allowed} (at sweep point: {point})"),
        },
        SpecError::Parse { path, message } => SpecError::Parse {
            path,
            message: format!("{message} (at sweep point: {point})"),
        },
        other => other,
    }
}

/// Sets `a.b.c` in a TOML table, creating the tables on the way.
pub fn set_path(table: &mut Table, key: &str, value: Value) {
    let mut parts: Vec<&str> = key.split('.').collect();
    let last = parts.pop().expect("split yields one part");
    let mut here = table;
    for part in parts {
        let entry = here.entry(part).or_insert_with(|| Value::Table(Table::new()));
        if !entry.is_table() {
            *entry = Value::Table(Table::new());
        }
        here = entry.as_table_mut().expect("made a table");
    }
    here.insert(last.to_string(), value);
}

/// Deep-merges `over` into `base`: tables merge key by key, anything else replaces.
pub fn merge(base: &mut Table, over: Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(Value::Table(b)), Value::Table(o)) => merge(b, o),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grids_vary_the_last_key_fastest_and_paths_create_tables() {
        let sweep = vec![
            ("a".to_string(), vec![Value::Integer(1), Value::Integer(2)]),
            (
                "b.c".to_string(),
                vec![Value::Integer(3), Value::Integer(4), Value::Integer(5)],
            ),
        ];
        let points = grid(&sweep);
        assert_eq!(points.len(), 6);
        assert_eq!(
            points[1],
            vec![("a".into(), Value::Integer(1)), ("b.c".into(), Value::Integer(4))]
        );
        let mut t = Table::new();
        set_path(&mut t, "b.c", Value::Integer(7));
        assert_eq!(t["b"]["c"].as_integer(), Some(7));
        assert_eq!(grid(&[]), vec![Vec::new()]);
    }
}
