//! A test of the source tree's shape (issue #11): no two modules import each other, so
//! that dependencies point one way and a module can be read, moved or tested with the
//! modules below it only. A parent and its own children are exempt (a `mod.rs` declares
//! its children, which use the parent's shared items through `super::`); everything else
//! counts, in every crate of the workspace. Test modules (`mod tests`) and comments are
//! ignored.
//!
//! The check reads `use crate::…`, `use super::…` (braces expanded) and inline
//! `crate::…`/`super::…` paths, and resolves each to the longest module it names.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module: its crate, then its path (`["troved", "http", "flavors"]`).
type Module = Vec<String>;

/// The `.rs` files of a crate's `src` directory, by module.
fn modules(krate: &str, src: &Path) -> BTreeMap<Module, PathBuf> {
    let mut out = BTreeMap::new();
    let mut dirs = vec![src.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(src).unwrap().with_extension("");
            let mut module = vec![krate.to_string()];
            module.extend(rel.iter().map(|c| c.to_string_lossy().into_owned()));
            if matches!(
                module.last().map(String::as_str),
                Some("mod" | "lib" | "main")
            ) {
                module.pop();
            }
            out.insert(module, path);
        }
    }
    out
}

/// The code of a file without its `mod tests` and its line comments.
fn code(text: &str) -> String {
    let text = text
        .split("#[cfg(test)]\nmod tests")
        .next()
        .unwrap_or_default();
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Expands a `use` tree (`a::{b, c::{d, e}}`) into its paths.
fn expand(tree: &str) -> Vec<String> {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        return vec![tree.split(" as ").next().unwrap_or(tree).trim().to_string()];
    };
    let prefix = &tree[..open];
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .filter(|p| !p.trim().is_empty())
        .flat_map(expand)
        .map(|p| match p.as_str() {
            "self" => prefix.trim_end_matches("::").to_string(),
            _ => format!("{prefix}{p}"),
        })
        .collect()
}

/// Every `crate::…` and `super::…` path in `code`, `use` trees expanded.
fn paths(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    for statement in code.split(';') {
        let s = statement.trim_start();
        let s = s.strip_prefix("pub ").unwrap_or(s);
        let s = s.strip_prefix("pub(crate) ").unwrap_or(s);
        let s = s.strip_prefix("pub(super) ").unwrap_or(s);
        if let Some(tree) = s.strip_prefix("use ") {
            out.extend(
                expand(tree)
                    .into_iter()
                    .filter(|p| p.starts_with("crate::") || p.starts_with("super::")),
            );
        }
    }
    let bytes = code.as_bytes();
    for anchor in ["crate::", "super::"] {
        for (at, _) in code.match_indices(anchor) {
            if at > 0 && (bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_') {
                continue;
            }
            let end = code[at..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                .map_or(code.len(), |n| at + n);
            out.push(code[at..end].trim_end_matches(':').to_string());
        }
    }
    out
}

/// The module `path` (written in `from`) names: its longest prefix that is a module.
fn resolve(from: &Module, path: &str, all: &BTreeMap<Module, PathBuf>) -> Option<Module> {
    let mut segments = path.split("::").filter(|s| !s.is_empty()).peekable();
    let mut target: Module = match segments.peek() {
        Some(&"crate") => {
            segments.next();
            vec![from[0].clone()]
        }
        // Each `super` below goes up one level from the module the file is.
        _ => from.clone(),
    };
    for s in segments {
        if s == "super" {
            target.pop();
        } else {
            target.push(s.to_string());
        }
    }
    while !target.is_empty() {
        if all.contains_key(&target) {
            return Some(target);
        }
        target.pop();
    }
    None
}

fn is_prefix(a: &Module, b: &Module) -> bool {
    b.len() >= a.len() && b[..a.len()] == a[..]
}

/// Pairs of modules that import each other (parents and their children exempt).
fn mutual_imports(root: &Path) -> BTreeSet<(String, String)> {
    let mut all = BTreeMap::new();
    for (krate, src) in [
        ("troved", "src"),
        ("aggregates", "aggregates/src"),
        ("projections", "projections/src"),
    ] {
        all.extend(modules(krate, &root.join(src)));
    }
    let mut edges: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    for (module, file) in &all {
        let text = code(&std::fs::read_to_string(file).unwrap());
        for path in paths(&text) {
            if let Some(target) = resolve(module, &path, &all) {
                if !is_prefix(&target, module) && !is_prefix(module, &target) {
                    edges.entry(module.clone()).or_default().insert(target);
                }
            }
        }
    }
    let mut pairs = BTreeSet::new();
    for (a, targets) in &edges {
        for b in targets {
            if edges.get(b).is_some_and(|back| back.contains(a)) {
                let (x, y) = if a < b { (a, b) } else { (b, a) };
                pairs.insert((x.join("::"), y.join("::")));
            }
        }
    }
    pairs
}

#[test]
fn no_two_modules_import_each_other() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let pairs = mutual_imports(root);
    assert!(
        pairs.is_empty(),
        "modules importing each other (make the dependency point one way): {pairs:?}"
    );
}

#[test]
fn the_check_finds_a_cycle_between_siblings_and_exempts_parents() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("http")).unwrap();
    for (file, text) in [
        ("lib.rs", "pub mod http;\npub mod store;\n"),
        ("store.rs", "use crate::http::{self, error::ApiError};\n"),
        (
            "http/mod.rs",
            "pub mod error;\npub mod flavors;\npub struct AppState;\n",
        ),
        (
            "http/error.rs",
            "// use crate::store;\nfn f() -> crate::store::X { todo!() }\n",
        ),
        ("http/flavors.rs", "use super::{error, AppState};\n"),
    ] {
        std::fs::write(src.join(file), text).unwrap();
    }
    for krate in ["aggregates", "projections"] {
        std::fs::create_dir_all(dir.path().join(krate).join("src")).unwrap();
    }
    let pairs = mutual_imports(dir.path());
    let expected: BTreeSet<_> = [(
        "troved::http::error".to_string(),
        "troved::store".to_string(),
    )]
    .into_iter()
    .collect();
    assert_eq!(pairs, expected);
}
