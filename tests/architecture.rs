//! The module map holds: dependencies between the top-level modules of `src/` point one way
//! (`cli → app → transport → admin → core → layers → upstream → domain`, with `audit`,
//! `registry`, `telemetry`, `certs` and `shared` below the pipeline, `config` a leaf and `sim`
//! apart), and no import cycle joins any two of them.
//!
//! Every form of path counts: `use crate::…` lines, braced groups (`use crate::{a, b::c}`),
//! inline `crate::x::…` paths in code, and `super::` paths that climb out of a top-level
//! module. Comments and string literals do not. The check reads the source itself, so it
//! costs no build; `docs/architecture.md` draws the same map.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Where each top-level module sits. A module may import those of a lower rank; the
/// modules of [`FOUNDATION`] may also import each other, as long as no cycle forms.
const RANKS: &[(&str, u8)] = &[
    ("config", 0),
    ("proto", 0),
    ("domain", 1),
    ("audit", FOUNDATION),
    ("registry", FOUNDATION),
    ("telemetry", FOUNDATION),
    ("certs", FOUNDATION),
    ("shared", FOUNDATION),
    ("dossiers", FOUNDATION),
    ("upstream", 3),
    ("layers", 4),
    ("core", 5),
    ("admin", 6),
    ("transport", 7),
    ("app", 8),
    ("cli", 9),
];

/// Below the pipeline: stores, records, telemetry, certificates, what replicas share.
const FOUNDATION: u8 = 2;

/// The simulators stand apart: they speak the providers' protocols with the domain's
/// vocabulary and never use the gateway's modules.
const SIM_MAY_IMPORT: &[&str] = &["config", "domain", "proto"];

/// One dependency: `from` imports `to`, first seen in `file`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Edge {
    from: String,
    to: String,
    file: String,
}

/// The top-level modules `lib.rs` declares (`mod x;`, `pub mod x;`, `pub mod x { … }`).
fn top_level_modules(lib_rs: &str) -> BTreeSet<String> {
    let code = strip(lib_rs);
    let mut out = BTreeSet::new();
    let mut depth = 0usize;
    let tokens = tokens(&code);
    for (i, t) in tokens.iter().enumerate() {
        match t.as_str() {
            "{" => depth += 1,
            "}" => depth = depth.saturating_sub(1),
            "mod" if depth == 0 => {
                if let Some(name) = tokens.get(i + 1) {
                    out.insert(name.clone());
                }
            }
            _ => {}
        }
    }
    out
}

/// Source text with comments blanked and string and char literals emptied, so that only
/// code is read. Lengths of lines are not kept; only tokens matter.
fn strip(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                    depth += 1;
                    i += 2;
                } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
        } else if c == b'r' && matches!(b.get(i + 1), Some(b'"') | Some(b'#')) && {
            // A raw string r"…" or r#"…"#, not an identifier ending in r.
            let prev = i.checked_sub(1).map(|p| b[p]);
            !prev.is_some_and(|p| p.is_ascii_alphanumeric() || p == b'_')
                && b[i + 1..]
                    .iter()
                    .find(|&&x| x != b'#')
                    .is_some_and(|&x| x == b'"')
        } {
            let hashes = b[i + 1..].iter().take_while(|&&x| x == b'#').count();
            i += 2 + hashes;
            let close: Vec<u8> = std::iter::once(b'"')
                .chain(std::iter::repeat_n(b'#', hashes))
                .collect();
            while i < b.len() && !b[i..].starts_with(&close) {
                i += 1;
            }
            i += close.len();
            out.push_str("\"\"");
        } else if c == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == b'\'' {
            // A char literal ('x', '\n', '\u{..}') or a lifetime ('a): skip only the former.
            let end = if b.get(i + 1) == Some(&b'\\') {
                b[i + 3..]
                    .iter()
                    .position(|&x| x == b'\'')
                    .map(|p| i + 3 + p)
            } else {
                src[i + 1..]
                    .chars()
                    .next()
                    .map(|ch| i + 1 + ch.len_utf8())
                    .filter(|&e| b.get(e) == Some(&b'\''))
            };
            match end {
                Some(e) => {
                    out.push_str("' '");
                    i = e + 1;
                }
                None => {
                    out.push('\'');
                    i += 1;
                }
            }
        } else {
            let ch = src[i..].chars().next().expect("a char at a char boundary");
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

/// Identifiers, `::`, and single punctuation characters.
fn tokens(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = code.char_indices().peekable();
    while let Some((start, c)) = chars.next() {
        if c.is_alphanumeric() || c == '_' {
            let mut end = start + c.len_utf8();
            while let Some(&(i, n)) = chars.peek() {
                if n.is_alphanumeric() || n == '_' {
                    end = i + n.len_utf8();
                    chars.next();
                } else {
                    break;
                }
            }
            out.push(code[start..end].to_owned());
        } else if c == ':' && chars.peek().is_some_and(|&(_, n)| n == ':') {
            chars.next();
            out.push("::".into());
        } else if !c.is_whitespace() {
            out.push(c.to_string());
        }
    }
    out
}

/// The module path a file defines: `src/a/b.rs` and `src/a/b/mod.rs` are `a::b`.
fn module_path(relative: &Path) -> Vec<String> {
    let mut parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if let Some(last) = parts.pop() {
        let stem = last.trim_end_matches(".rs").to_owned();
        if stem != "mod" && stem != "lib" && stem != "main" {
            parts.push(stem);
        }
    }
    parts
}

/// The top-level modules one file's code names, with the file's own module path (to resolve
/// `super::`).
fn imports(file_module: &[String], source: &str, tops: &BTreeSet<String>) -> BTreeSet<String> {
    let code = strip(source);
    let t = tokens(&code);
    let mut out = BTreeSet::new();
    // Inline modules (`mod tests { … }`) deepen the path `super::` climbs from.
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < t.len() {
        match t[i].as_str() {
            "{" => depth += 1,
            "}" => {
                depth = depth.saturating_sub(1);
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
            }
            "mod" if t.get(i + 2).is_some_and(|x| x == "{") => {
                inline.push((t[i + 1].clone(), depth));
            }
            "crate" if t.get(i + 1).is_some_and(|x| x == "::") && !preceded_by_path(&t, i) => {
                match t.get(i + 2).map(String::as_str) {
                    Some("{") => out.extend(group_heads(&t, i + 3)),
                    Some(name) => {
                        out.insert(name.to_owned());
                    }
                    None => {}
                }
            }
            "super" if !preceded_by_path(&t, i) => {
                let mut here: Vec<String> = file_module.to_vec();
                here.extend(inline.iter().map(|(m, _)| m.clone()));
                let mut j = i;
                while t.get(j).is_some_and(|x| x == "super")
                    && t.get(j + 1).is_some_and(|x| x == "::")
                {
                    here.pop();
                    j += 2;
                }
                if here.is_empty() {
                    match t.get(j).map(String::as_str) {
                        Some("{") => out.extend(group_heads(&t, j + 1)),
                        Some(name) => {
                            out.insert(name.to_owned());
                        }
                        None => {}
                    }
                }
                i = j.max(i + 1);
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    out.retain(|m| tops.contains(m));
    out
}

/// Whether token `i` continues a path (`x::crate` cannot happen, but `$crate` and
/// `foo::super` are not the crate root's paths).
fn preceded_by_path(t: &[String], i: usize) -> bool {
    i > 0 && (t[i - 1] == "::" || t[i - 1] == "$")
}

/// The first segment of each path in a braced group starting after `{` at `start`:
/// `{a, b::c, d::{e, f}}` → a, b, d.
fn group_heads(t: &[String], start: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 1usize;
    let mut expect_head = true;
    for tok in &t[start..] {
        match tok.as_str() {
            "{" => depth += 1,
            "}" => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            "," if depth == 1 => expect_head = true,
            "self" | "*" if depth == 1 && expect_head => expect_head = false,
            name if depth == 1 && expect_head => {
                out.push(name.to_owned());
                expect_head = false;
            }
            _ => {}
        }
    }
    out
}

/// Every dependency between top-level modules of the crate whose `src/` is `root`.
fn edges(root: &Path) -> (BTreeSet<String>, Vec<Edge>) {
    let lib = std::fs::read_to_string(root.join("lib.rs")).expect("src/lib.rs");
    let tops = top_level_modules(&lib);
    let mut files = Vec::new();
    collect(root, &mut files);
    let mut out: BTreeMap<(String, String), String> = BTreeMap::new();
    for file in files {
        let relative = file.strip_prefix(root).expect("under src").to_path_buf();
        let module = module_path(&relative);
        let Some(from) = module.first().cloned() else {
            continue; // lib.rs and main.rs: the crate root
        };
        let source = std::fs::read_to_string(&file).expect("readable source");
        for to in imports(&module, &source, &tops) {
            if to != from {
                out.entry((from.clone(), to))
                    .or_insert_with(|| relative.display().to_string());
            }
        }
    }
    let edges = out
        .into_iter()
        .map(|((from, to), file)| Edge { from, to, file })
        .collect();
    (tops, edges)
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("readable dir")
        .map(|e| e.expect("dir entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            collect(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// The cycles among modules: each strongly connected component of more than one module,
/// with the edges inside it.
fn cycles(edges: &[Edge]) -> Vec<Vec<Edge>> {
    let nodes: BTreeSet<&str> = edges
        .iter()
        .flat_map(|e| [e.from.as_str(), e.to.as_str()])
        .collect();
    let reach = |from: &str| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.to_owned()];
        while let Some(n) = stack.pop() {
            for e in edges.iter().filter(|e| e.from == n) {
                if seen.insert(e.to.clone()) {
                    stack.push(e.to.clone());
                }
            }
        }
        seen
    };
    let reachable: BTreeMap<&str, BTreeSet<String>> =
        nodes.iter().map(|n| (*n, reach(n))).collect();
    let mut done = BTreeSet::new();
    let mut out = Vec::new();
    for n in &nodes {
        if done.contains(*n) || !reachable[n].contains(*n) {
            continue;
        }
        let component: BTreeSet<&str> = nodes
            .iter()
            .copied()
            .filter(|m| reachable[n].contains(*m) && reachable[m].contains(*n))
            .collect();
        done.extend(component.iter().copied());
        out.push(
            edges
                .iter()
                .filter(|e| {
                    component.contains(e.from.as_str()) && component.contains(e.to.as_str())
                })
                .cloned()
                .collect(),
        );
    }
    out
}

/// Edges that run against the ranks.
fn against_the_map(edges: &[Edge]) -> Vec<Edge> {
    let rank = |m: &str| RANKS.iter().find(|(n, _)| *n == m).map(|(_, r)| *r);
    edges
        .iter()
        .filter(|e| {
            if e.from == "sim" {
                return !SIM_MAY_IMPORT.contains(&e.to.as_str());
            }
            if e.to == "sim" {
                return e.from != "cli";
            }
            match (rank(&e.from), rank(&e.to)) {
                (Some(a), Some(b)) => !(b < a || (a == FOUNDATION && b == FOUNDATION)),
                _ => true,
            }
        })
        .cloned()
        .collect()
}

fn describe(edges: &[Edge]) -> String {
    edges
        .iter()
        .map(|e| format!("  {} → {} ({})", e.from, e.to, e.file))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn top_level_modules_form_no_cycle_and_point_one_way() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let (tops, edges) = edges(&src);
    let unranked: Vec<_> = tops
        .iter()
        .filter(|m| *m != "sim" && !RANKS.iter().any(|(n, _)| n == m))
        .collect();
    assert!(
        unranked.is_empty(),
        "new top-level modules need a place in the map (tests/architecture.rs RANKS and \
         docs/architecture.md): {unranked:?}"
    );
    let found = cycles(&edges);
    assert!(
        found.is_empty(),
        "import cycles between top-level modules:\n{}",
        found
            .iter()
            .map(|c| describe(c))
            .collect::<Vec<_>>()
            .join("\n  --\n")
    );
    let wrong = against_the_map(&edges);
    assert!(
        wrong.is_empty(),
        "imports against the module map (docs/architecture.md):\n{}",
        describe(&wrong)
    );
    // The check sees the real crate: the pipeline's own arrows are there.
    for (from, to) in [("core", "layers"), ("layers", "upstream"), ("cli", "app")] {
        assert!(
            edges.iter().any(|e| e.from == from && e.to == to),
            "expected {from} → {to} among {edges:?}"
        );
    }
}

#[test]
fn a_planted_cycle_in_the_fixture_crate_is_found() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cycle/src");
    let (_, edges) = edges(&src);
    let found = cycles(&edges);
    assert_eq!(found.len(), 1, "one cycle: {found:?}");
    let pairs: BTreeSet<(&str, &str)> = found[0]
        .iter()
        .map(|e| (e.from.as_str(), e.to.as_str()))
        .collect();
    assert_eq!(
        pairs,
        BTreeSet::from([("alpha", "beta"), ("beta", "gamma"), ("gamma", "alpha")]),
        "alpha → beta (use line), beta → gamma (braced group), gamma → alpha (super:: from \
         a nested file); delta → alpha is an inline path that forms no cycle"
    );
    assert!(
        edges.iter().any(|e| e.from == "delta" && e.to == "alpha"),
        "inline crate:: paths count: {edges:?}"
    );
    assert!(
        !edges.iter().any(|e| e.to == "epsilon"),
        "comments and strings do not count: {edges:?}"
    );
}

#[test]
fn every_form_of_path_is_seen() {
    let tops: BTreeSet<String> = ["a", "b", "c", "d", "e", "f"].map(String::from).into();
    let module = |p: &str| p.split("::").map(String::from).collect::<Vec<_>>();
    let seen = |file: &str, src: &str| imports(&module(file), src, &tops);
    assert_eq!(
        seen("a", "use crate::b::Thing;"),
        BTreeSet::from(["b".into()])
    );
    assert_eq!(
        seen("a", "use crate::{b::X, c, self as me, d::{e, f}};"),
        BTreeSet::from(["b".into(), "c".into(), "d".into()])
    );
    assert_eq!(
        seen("a", "fn f() { let x = crate::e::make(); }"),
        BTreeSet::from(["e".into()])
    );
    assert_eq!(
        seen("a::x", "use super::super::f::Y; use super::z;"),
        BTreeSet::from(["f".into()]),
        "super::super from a::x climbs to the root; super:: alone stays in a"
    );
    assert_eq!(
        seen("a", "use super::{b, c::D};"),
        BTreeSet::from(["b".into(), "c".into()])
    );
    assert_eq!(
        seen(
            "a",
            "mod tests { use super::super::b; fn t() { use super::*; } }"
        ),
        BTreeSet::from(["b".into()]),
        "inside an inline module, super:: is the file's module"
    );
    assert!(
        seen(
            "a",
            "// use crate::b;\n/* crate::c */ let s = \"crate::d\"; let r = r#\"crate::e\"#; let c = '\"'; fn x<'f>() {}"
        )
        .is_empty(),
        "comments, strings and chars are not code"
    );
    assert_eq!(
        seen("a", "let q = '\"'; use crate::c;"),
        BTreeSet::from(["c".into()]),
        "a quote in a char literal opens no string"
    );
}
