//! README.md's "Quality on a real model" carries the tables that `cargo run --release --example
//! embed -- --quality` wrote to docs/quality.md, verbatim: a rerun that changes a figure makes
//! this test fail until the README is updated, so the README cannot drift from the command.
//! Text only: no GPU, no checkpoint.

use std::path::Path;

/// The markdown tables of `text`: each maximal run of lines that start with `|`.
fn tables(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        if line.starts_with('|') {
            current.push_str(line);
            current.push('\n');
        } else if !current.is_empty() {
            out.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

#[test]
fn readme_carries_the_quality_tables() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("docs/quality.md")).expect("docs/quality.md");
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    assert!(
        doc.contains("Made by `cargo run --release --example embed -- --quality` at commit"),
        "docs/quality.md does not say which command and commit made it"
    );
    let made = doc.lines().find(|l| l.starts_with("Made by")).unwrap();
    assert!(!made.contains("uncommitted"), "docs/quality.md was made from uncommitted sources: {made}");
    let doc_tables = tables(&doc);
    assert_eq!(doc_tables.len(), 3, "docs/quality.md: the schemes, the figures and the outlier columns");
    let readme_tables = tables(&readme);
    for (i, t) in doc_tables.iter().enumerate() {
        let first = t.lines().next().unwrap_or("");
        let same_header = readme_tables.iter().find(|r| r.lines().next() == Some(first));
        assert_eq!(
            same_header.map(String::as_str),
            Some(t.as_str()),
            "README.md's copy of docs/quality.md's table {i} differs: rerun `embed --quality` and copy its tables"
        );
    }
    assert!(readme.contains("docs/quality.md"), "README.md does not point at docs/quality.md");
}

#[test]
fn tables_are_found() {
    let text = "intro\n| a | b |\n|---|---|\n| 1 | 2 |\n\ntext\n| c |\n";
    assert_eq!(tables(text), ["| a | b |\n|---|---|\n| 1 | 2 |\n", "| c |\n"]);
}
