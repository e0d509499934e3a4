//! The house plan in `src/lib.rs` holds: every top-level module of the
//! library stands on a floor, and every `crate::…` path in its code (not in
//! comments, not in `#[cfg(test)]` code) names a module on a lower floor.
//! Imports that only go down cannot form a circle, so this also keeps the
//! module graph free of cycles. And the spine and its stages name no
//! protocol's types (`rmcp`).
//!
//! The code is read the way the compiler reads it: from `src/lib.rs`,
//! following `mod` declarations (and `#[path]`) into files, parsed with
//! `syn`; paths are found in the token stream, so a `crate::x` inside a
//! macro call (`tracing::info!`, `json!`) counts too, and one in a comment
//! or a string never does.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use proc_macro2::{TokenStream, TokenTree};
use quote::ToTokens;

/// What [`imports`] lists for a module whose code names the MCP SDK.
const RMCP: &str = "rmcp (the MCP SDK)";

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The floors table of `src/lib.rs`: rows `| N | `a`, `b` | … |`.
fn floors() -> BTreeMap<String, u32> {
    let lib = std::fs::read_to_string(src().join("lib.rs")).expect("src/lib.rs");
    let mut floors = BTreeMap::new();
    for line in lib.lines() {
        let Some(row) = line.strip_prefix("//! |") else {
            continue;
        };
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let Ok(floor) = cells[0].parse::<u32>() else {
            continue;
        };
        for module in cells[1].split(',') {
            let module = module.trim().trim_matches('`');
            assert!(
                floors.insert(module.to_string(), floor).is_none(),
                "src/lib.rs: `{module}` is on two floors"
            );
        }
    }
    assert!(!floors.is_empty(), "src/lib.rs has no floors table");
    floors
}

fn is_test_only(attrs: &[syn::Attribute]) -> bool {
    attrs
        .iter()
        .any(|a| a.path().is_ident("cfg") && a.to_token_stream().to_string().contains("test"))
}

fn path_attr(attrs: &[syn::Attribute]) -> Option<String> {
    attrs.iter().find_map(|a| match &a.meta {
        syn::Meta::NameValue(nv) if nv.path.is_ident("path") => match &nv.value {
            syn::Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Str(s),
                ..
            }) => Some(s.value()),
            _ => None,
        },
        _ => None,
    })
}

/// Every `crate::X` in `tokens`, and `rmcp` if the MCP SDK is named.
fn crate_paths(tokens: TokenStream, found: &mut BTreeSet<String>) {
    let tokens: Vec<TokenTree> = tokens.into_iter().collect();
    for (i, token) in tokens.iter().enumerate() {
        match token {
            TokenTree::Group(g) => crate_paths(g.stream(), found),
            TokenTree::Ident(id) if id == "rmcp" => {
                found.insert(RMCP.to_string());
            }
            TokenTree::Ident(id) if id == "crate" => {
                // `crate` `:` `:` then a name, or a `{…}` group of names.
                let (Some(TokenTree::Punct(a)), Some(TokenTree::Punct(b))) =
                    (tokens.get(i + 1), tokens.get(i + 2))
                else {
                    continue;
                };
                if a.as_char() != ':' || b.as_char() != ':' {
                    continue;
                }
                match tokens.get(i + 3) {
                    Some(TokenTree::Ident(name)) => {
                        found.insert(name.to_string());
                    }
                    Some(TokenTree::Group(group)) => {
                        let mut first = true;
                        for t in group.stream() {
                            match t {
                                TokenTree::Ident(name) if first => {
                                    found.insert(name.to_string());
                                    first = false;
                                }
                                TokenTree::Punct(p) if p.as_char() == ',' => first = true,
                                _ => {}
                            }
                        }
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
}

/// One file's non-test items: their `crate::X` paths, and the files of
/// the modules they declare.
fn read(file: &Path, dir: &Path, found: &mut BTreeSet<String>, files: &mut Vec<PathBuf>) {
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let parsed = syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    items(&parsed.items, dir, found, files);
}

fn items(list: &[syn::Item], dir: &Path, found: &mut BTreeSet<String>, files: &mut Vec<PathBuf>) {
    for item in list {
        if let syn::Item::Mod(m) = item {
            if is_test_only(&m.attrs) {
                continue;
            }
            let name = m.ident.to_string();
            match &m.content {
                Some((_, inner)) => items(inner, &dir.join(&name), found, files),
                None => {
                    let file = match path_attr(&m.attrs) {
                        Some(p) => dir.join(p),
                        None if dir.join(format!("{name}.rs")).exists() => {
                            dir.join(format!("{name}.rs"))
                        }
                        None => dir.join(&name).join("mod.rs"),
                    };
                    files.push(file);
                }
            }
            continue;
        }
        let attrs: &[syn::Attribute] = match item {
            syn::Item::Fn(i) => &i.attrs,
            syn::Item::Impl(i) => &i.attrs,
            syn::Item::Use(i) => &i.attrs,
            syn::Item::Const(i) => &i.attrs,
            syn::Item::Static(i) => &i.attrs,
            syn::Item::Struct(i) => &i.attrs,
            syn::Item::Enum(i) => &i.attrs,
            syn::Item::Trait(i) => &i.attrs,
            syn::Item::Macro(i) => &i.attrs,
            _ => &[],
        };
        if !is_test_only(attrs) {
            crate_paths(item.to_token_stream(), found);
        }
    }
}

/// Each top-level module and the top-level modules its code names.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let src = src();
    let lib = syn::parse_file(&std::fs::read_to_string(src.join("lib.rs")).expect("lib.rs"))
        .expect("lib.rs parses");
    let mut graph = BTreeMap::new();
    for item in &lib.items {
        let syn::Item::Mod(m) = item else { continue };
        let name = m.ident.to_string();
        let mut found = BTreeSet::new();
        let mut files = Vec::new();
        items(std::slice::from_ref(item), &src, &mut found, &mut files);
        while let Some(file) = files.pop() {
            // A file's own modules live in the folder named after it
            // (`a/mod.rs` → `a/`, `a.rs` → `a/`).
            let dir = match file.file_name().and_then(|f| f.to_str()) {
                Some("mod.rs") => file.parent().expect("a folder").to_path_buf(),
                _ => file.with_extension(""),
            };
            read(&file, &dir, &mut found, &mut files);
        }
        found.remove(&name);
        graph.insert(name, found);
    }
    graph
}

#[test]
fn no_module_imports_a_module_above_its_floor() {
    let floors = floors();
    let graph = imports();
    let mut wrong = Vec::new();
    for module in graph.keys() {
        if !floors.contains_key(module) {
            wrong.push(format!(
                "`{module}` is on no floor: add it to the table in src/lib.rs"
            ));
        }
    }
    for module in floors.keys() {
        if !graph.contains_key(module) {
            wrong.push(format!(
                "src/lib.rs puts `{module}` on a floor, but there is no such module"
            ));
        }
    }
    for (module, names) in &graph {
        let Some(&floor) = floors.get(module) else {
            continue;
        };
        for name in names {
            // Anything else after `crate::` (a macro, an item re-exported
            // at the root) is not a module of the plan.
            let Some(&other) = floors.get(name) else {
                continue;
            };
            if other >= floor {
                wrong.push(format!(
                    "`{module}` (floor {floor}) imports `{name}` (floor {other}): imports only go down"
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "the house plan is broken:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_spine_and_its_stages_know_no_protocol() {
    // MCP's types stay in the MCP front end: a second front end (the LLM
    // API) reuses the spine and the stages as they are.
    let graph = imports();
    let speaking: Vec<&str> = [
        "call",
        "pipeline",
        "authenticate",
        "authorize",
        "guardrails",
        "approvals",
        "integrity",
        "audit",
    ]
    .into_iter()
    .filter(|m| graph[*m].contains(RMCP))
    .collect();
    assert!(speaking.is_empty(), "these name rmcp: {speaking:?}");
}

#[test]
fn the_plan_check_sees_imports() {
    // The checker itself: a module with no imports at all would pass
    // vacuously, so it must find the spine's known ones.
    let graph = imports();
    let pipeline = &graph["pipeline"];
    for lower in ["audit", "authorize", "call"] {
        assert!(
            pipeline.contains(lower),
            "pipeline imports {lower}: {pipeline:?}"
        );
    }
    assert!(!graph["util"].iter().any(|m| graph.contains_key(m)));
    assert!(graph["mcp"].contains(RMCP), "the MCP front end names rmcp");
}
