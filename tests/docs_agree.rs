//! The README and the crate docs against the code: every feature of
//! `Cargo.toml` is in both feature lists with the right default and the
//! right "enables", every `Stats` counter is named, and the `alf --stats`
//! line is described with the keys it prints.

use std::collections::BTreeSet;

const CARGO_TOML: &str = include_str!("../Cargo.toml");
const README: &str = include_str!("../README.md");
const LIB_RS: &str = include_str!("../src/lib.rs");
const STATS_RS: &str = include_str!("../src/source/stats.rs");
const LOAD_RS: &str = include_str!("../src/bin/alf/load.rs");

/// `[features]` of Cargo.toml: each name with what it lists.
fn features() -> Vec<(String, Vec<String>)> {
    let section = CARGO_TOML
        .split("\n[features]\n")
        .nth(1)
        .expect("a [features] table")
        .split("\n[")
        .next()
        .unwrap();
    let mut features: Vec<(String, Vec<String>)> = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in section.lines() {
        let line = line.split('#').next().unwrap().trim();
        if line.is_empty() {
            continue;
        }
        if let Some((name, rest)) = line.split_once('=') {
            current = Some((name.trim().to_owned(), rest.to_owned()));
        } else if let Some((_, rest)) = &mut current {
            rest.push_str(line);
        }
        if let Some((name, rest)) = &current {
            if rest.contains(']') {
                let items = rest
                    .trim()
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .split(',')
                    .map(|item| item.trim().trim_matches('"').to_owned())
                    .filter(|item| !item.is_empty())
                    .collect();
                features.push((name.clone(), items));
                current = None;
            }
        }
    }
    features
}

fn defaults() -> BTreeSet<String> {
    features()
        .into_iter()
        .find(|(name, _)| name == "default")
        .map(|(_, items)| items.into_iter().collect())
        .unwrap_or_default()
}

/// The other features `name` enables, directly.
fn enables(name: &str) -> BTreeSet<String> {
    let names: BTreeSet<String> = features().into_iter().map(|(n, _)| n).collect();
    features()
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, items)| items.into_iter().filter(|i| names.contains(i)).collect())
        .unwrap_or_default()
}

/// The crate docs' feature list: `- `name`...` items, each with its text.
fn lib_items() -> Vec<(String, String)> {
    let section = LIB_RS
        .split("//! # Feature flags")
        .nth(1)
        .expect("a Feature flags section in lib.rs")
        .split("//! # ")
        .next()
        .unwrap();
    let text: String = section
        .lines()
        .map(|l| l.trim_start_matches("//!").trim())
        .collect::<Vec<_>>()
        .join(" ");
    text.split(" - `")
        .skip(1)
        .map(|item| {
            let (name, rest) = item.split_once('`').unwrap();
            (name.to_owned(), rest.to_owned())
        })
        .collect()
}

/// The README's features table: name, default column, description.
fn readme_rows() -> Vec<(String, String, String)> {
    let section = README
        .split("\n## Features\n")
        .nth(1)
        .expect("a Features section in the README")
        .split("\n## ")
        .next()
        .unwrap();
    section
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let name = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
            Some((name.to_owned(), cells[2].to_owned(), cells[3].to_owned()))
        })
        .collect()
}

/// The backticked names in `text`.
fn quoted(text: &str) -> BTreeSet<String> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_feature_is_in_the_crate_docs_and_the_readme_and_nothing_else_is() {
    let features: BTreeSet<String> = features()
        .into_iter()
        .map(|(n, _)| n)
        .filter(|n| n != "default")
        .collect();
    let lib: BTreeSet<String> = lib_items().into_iter().map(|(n, _)| n).collect();
    let readme: BTreeSet<String> = readme_rows().into_iter().map(|(n, _, _)| n).collect();
    assert_eq!(lib, features, "lib.rs # Feature flags against Cargo.toml");
    assert_eq!(readme, features, "README ## Features against Cargo.toml");
}

#[test]
fn the_default_features_are_marked_default_in_both_lists() {
    let defaults = defaults();
    for (name, default, _) in readme_rows() {
        let expected = if defaults.contains(&name) {
            "yes"
        } else {
            "no"
        };
        assert_eq!(default, expected, "README: is `{name}` on by default?");
    }
    for (name, text) in lib_items() {
        assert_eq!(
            text.trim_start().starts_with("(default)"),
            defaults.contains(&name),
            "lib.rs: is `{name}` on by default?"
        );
    }
}

#[test]
fn what_a_feature_enables_is_listed_in_full_in_both_lists() {
    let lib: Vec<(String, String)> = lib_items();
    let readme = readme_rows();
    for (name, _) in features() {
        let enabled = enables(&name);
        if enabled.is_empty() || name == "default" || name == "full" {
            continue;
        }
        let (_, text) = lib.iter().find(|(n, _)| *n == name).unwrap();
        let said = text.split("(enables ").nth(1).unwrap_or_default();
        let said = quoted(said.split(')').next().unwrap());
        assert_eq!(said, enabled, "lib.rs: what `{name}` enables");
        let (_, _, text) = readme.iter().find(|(n, _, _)| *n == name).unwrap();
        let said = text.split("nables ").nth(1).unwrap_or_default();
        let said = quoted(said.split('.').next().unwrap());
        assert_eq!(said, enabled, "README: what `{name}` enables");
    }
}

#[test]
fn the_readme_names_every_stats_counter() {
    let fields: BTreeSet<String> = STATS_RS
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub "))
        .filter_map(|l| l.split_once(": u64"))
        .map(|(name, _)| name.to_owned())
        .collect();
    assert!(fields.contains("throttled"), "{fields:?}");
    let line = README
        .lines()
        .find(|l| l.contains("`TokenSource::stats()`:"))
        .expect("the README's Stats list");
    let listed = quoted(line.split("`TokenSource::stats()`:").nth(1).unwrap());
    assert_eq!(listed, fields, "README's Stats list against Stats");
}

#[test]
fn the_readme_describes_every_key_of_alf_stats() {
    let printed: BTreeSet<String> = LOAD_RS
        .split("serde_json::json!({")
        .nth(1)
        .expect("the --stats object")
        .split("})")
        .next()
        .unwrap()
        .lines()
        .filter_map(|l| l.trim().strip_prefix('"'))
        .filter_map(|l| l.split_once('"'))
        .map(|(key, _)| key.to_owned())
        .collect();
    let row = README
        .lines()
        .find(|l| l.starts_with("| `--stats` |"))
        .expect("the README's --stats row");
    let described: BTreeSet<String> = quoted(row.split("at the end:").nth(1).unwrap());
    assert_eq!(described, printed, "README's --stats keys against alf");
}
