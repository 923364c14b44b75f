//! The layout rules of docs/ARCHITECTURE.md, checked on the source text: no import cycle
//! between files or between rooms (top-level modules), nothing below the command layer
//! imports it, no file over 600 lines, no function over 80 lines outside the listed hot paths.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Functions allowed past 80 lines, each with why: only hot paths, where one loop in one
/// place reads better than a split.
const LONG_FUNCTIONS: &[(&str, &str)] = &[(
    "memory::bank::search::search_blocked",
    "the blocked top-k search's hot loop (one pass over the bank per query block)",
)];

const MAX_FILE_LINES: usize = 600;
const MAX_FN_LINES: usize = 80;

/// A module path (`["harness", "runner"]`) for every file under `src/`.
fn modules() -> BTreeMap<Vec<String>, PathBuf> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = BTreeMap::new();
    for entry in walkdir::WalkDir::new(&src) {
        let entry = entry.unwrap();
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let rel = path.strip_prefix(&src).unwrap().with_extension("");
        let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
        if parts.last().is_some_and(|p| p == "mod") {
            parts.pop();
        }
        if parts == ["lib"] || parts == ["main"] {
            parts.clear();
        }
        out.insert(parts, path.to_path_buf());
    }
    out
}

/// The code of a file without comments and without its `#[cfg(test)]` tail.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let text = text.split("#[cfg(test)]").next().unwrap();
    text.lines()
        .map(|l| l.split("//").next().unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The modules `module` (at `path`) names through `crate::…` and `super::…` paths.
fn imports(module: &[String], path: &Path, all: &BTreeMap<Vec<String>, PathBuf>) -> BTreeSet<Vec<String>> {
    let text = code(path);
    let mut out = BTreeSet::new();
    let bytes = text.as_bytes();
    let is_word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    for start in ["crate::", "super::"] {
        let mut from = 0;
        while let Some(i) = text[from..].find(start).map(|i| i + from) {
            from = i + start.len();
            if i > 0 && (is_word(bytes[i - 1]) || bytes[i - 1] == b':') {
                continue;
            }
            let mut base: Vec<String> = if start == "crate::" {
                vec![]
            } else {
                module[..module.len().saturating_sub(1)].to_vec()
            };
            let rest = &text[from..];
            let path_end = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(rest.len());
            let mut segs: Vec<&str> = rest[..path_end].split("::").filter(|s| !s.is_empty()).collect();
            while segs.first() == Some(&"super") {
                segs.remove(0);
                base.pop();
            }
            let mut targets = vec![segs.iter().map(|s| s.to_string()).collect::<Vec<_>>()];
            // `use crate::a::{b, c::d}`: each item may be a module of its own.
            if rest[path_end..].starts_with('{') {
                let group = &rest[path_end + 1..rest[path_end..].find('}').map_or(path_end + 1, |j| path_end + j)];
                for item in group.split(',') {
                    let head = item.trim().split("::").next().unwrap_or("").trim();
                    if !head.is_empty() && head != "self" {
                        let mut t = targets[0].clone();
                        t.push(head.to_string());
                        targets.push(t);
                    }
                }
            }
            for t in targets {
                let full: Vec<String> = base.iter().cloned().chain(t).collect();
                if let Some(found) = (1..=full.len())
                    .rev()
                    .map(|n| full[..n].to_vec())
                    .find(|m| all.contains_key(m))
                {
                    // A module naming its own ancestors (their re-exports) is not an edge.
                    if found != module && !module.starts_with(&found) {
                        out.insert(found);
                    }
                }
            }
        }
    }
    out
}

/// Strongly connected components with more than one node (Tarjan).
fn cycles<N: Ord + Clone>(edges: &BTreeMap<N, BTreeSet<N>>) -> Vec<Vec<N>> {
    struct State<N> {
        index: BTreeMap<N, usize>,
        low: BTreeMap<N, usize>,
        stack: Vec<N>,
        on: BTreeSet<N>,
        out: Vec<Vec<N>>,
    }
    fn visit<N: Ord + Clone>(v: &N, edges: &BTreeMap<N, BTreeSet<N>>, s: &mut State<N>) {
        let i = s.index.len();
        s.index.insert(v.clone(), i);
        s.low.insert(v.clone(), i);
        s.stack.push(v.clone());
        s.on.insert(v.clone());
        for w in edges.get(v).into_iter().flatten() {
            if !s.index.contains_key(w) {
                visit(w, edges, s);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if s.on.contains(w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut comp = vec![];
            loop {
                let w = s.stack.pop().unwrap();
                s.on.remove(&w);
                let done = &w == v;
                comp.push(w);
                if done {
                    break;
                }
            }
            if comp.len() > 1 {
                s.out.push(comp);
            }
        }
    }
    let mut s = State {
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: vec![],
        on: BTreeSet::new(),
        out: vec![],
    };
    for v in edges.keys() {
        if !s.index.contains_key(v) {
            visit(v, edges, &mut s);
        }
    }
    s.out
}

fn graph() -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let all = modules();
    all.iter().map(|(m, p)| (m.clone(), imports(m, p, &all))).collect()
}

#[test]
fn no_import_cycle_between_files_or_rooms() {
    let files = graph();
    let file_cycles = cycles(&files);
    assert!(file_cycles.is_empty(), "file-level import cycles: {file_cycles:?}");
    let mut rooms: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (m, targets) in &files {
        let Some(room) = m.first() else { continue };
        for t in targets.iter().filter_map(|t| t.first()).filter(|t| *t != room) {
            rooms.entry(room.clone()).or_default().insert(t.clone());
        }
    }
    let room_cycles = cycles(&rooms);
    assert!(
        room_cycles.is_empty(),
        "room-level import cycles: {room_cycles:?}\nroom graph: {rooms:#?}"
    );
}

#[test]
fn nothing_below_the_command_layer_imports_it() {
    for (m, targets) in graph() {
        let room = m.first().map(String::as_str).unwrap_or("");
        if ["cli", "commands", ""].contains(&room) {
            continue;
        }
        for t in targets {
            let top = t.first().map(String::as_str).unwrap_or("");
            assert!(
                top != "cli" && top != "commands",
                "src/{} imports {} (only main.rs, cli.rs and commands/ may)",
                m.join("/"),
                t.join("::")
            );
        }
    }
}

#[test]
fn files_and_functions_stay_short() {
    let mut long = vec![];
    for (m, path) in modules() {
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines.len() <= MAX_FILE_LINES,
            "{} has {} lines (at most {MAX_FILE_LINES}): split it by concern",
            path.display(),
            lines.len()
        );
        for (i, line) in lines.iter().enumerate() {
            let trimmed = line.trim_start();
            let indent = line.len() - trimmed.len();
            let is_fn = [
                "fn ",
                "pub fn ",
                "pub(crate) fn ",
                "pub(super) fn ",
                "const fn ",
                "pub const fn ",
            ]
            .iter()
            .any(|p| trimmed.starts_with(p));
            if !is_fn || line.ends_with(';') {
                continue;
            }
            let close = format!("{}}}", " ".repeat(indent));
            let Some(end) = lines[i..].iter().position(|l| *l == close) else {
                continue;
            };
            let name = trimmed
                .split("fn ")
                .nth(1)
                .unwrap()
                .split(['(', '<'])
                .next()
                .unwrap()
                .to_string();
            let key = format!("{}::{name}", m.join("::"));
            if end + 1 > MAX_FN_LINES && !LONG_FUNCTIONS.iter().any(|(k, _)| *k == key) {
                long.push(format!("{key} ({} lines, {}:{})", end + 1, path.display(), i + 1));
            }
        }
    }
    assert!(long.is_empty(), "functions over {MAX_FN_LINES} lines: {long:#?}");
}
