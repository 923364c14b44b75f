//! Run ids: `<method>-<hash>` of a run's resolved config, so identical configs share a
//! directory (also across experiments) and a changed config never reuses old results.

use crate::config::Spec;
use crate::methods::Method;

/// The spec sections that only some methods read; each method's run id and table columns
/// keep those it reads ([`Method::sections`]).
pub(super) const METHOD_SECTIONS: [&str; 3] = ["memory", "sidenet", "memtrm"];

/// The method-specific sections `method` does not read.
pub(super) fn ignored_sections(method: Method) -> Vec<&'static str> {
    METHOD_SECTIONS
        .into_iter()
        .filter(|s| !method.sections().contains(s))
        .collect()
}

/// `<method>-<hash>`: a BLAKE3 hash of the resolved config with what does not change the
/// run left out (its directory, evaluation settings, the sections its method ignores) and
/// the upstream run's id in place of the backbone weights' path, plus `salt`.
pub fn run_id(spec: &Spec, upstream: Option<&str>, salt: &str) -> String {
    let mut value = serde_json::to_value(spec).expect("specs serialise");
    let map = value.as_object_mut().expect("a spec is a JSON object");
    map.remove("icl");
    map.remove("chapterbreak");
    // K, stored once in `memory.k`, was also hashed as the SideNet's and MemTRM's
    // `k_tokens`: hashed there still, so that run ids stay what they were.
    let k = map["memory"]["k"].clone();
    for section in ["sidenet", "memtrm"] {
        if let Some(section) = map.get_mut(section).and_then(|s| s.as_object_mut()) {
            section.insert("k_tokens".into(), k.clone());
        }
    }
    if let Some(up) = upstream {
        map.insert("backbone_weights".into(), serde_json::Value::String(up.into()));
    }
    for key in ignored_sections(spec.method) {
        map.remove(key);
    }
    let text = serde_json::to_string(&value).expect("serialisable") + salt;
    let hash = blake3::hash(text.as_bytes()).to_hex();
    format!("{}-{}", spec.method, &hash[..12])
}
