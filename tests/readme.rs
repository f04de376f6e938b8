//! The README's axum snippet is `examples/readme_axum.rs` (which CI
//! compiles, with the `axum` and `sqlx` features): the two must not drift.

/// The lines of `text` between `start` and `end` (exclusive), each
/// trimmed of `indent` leading spaces.
fn between<'a>(text: &'a str, start: &str, end: &str, indent: usize) -> Vec<&'a str> {
    let from = text
        .find(start)
        .unwrap_or_else(|| panic!("{start:?} not found"))
        + start.len();
    let rest = &text[from..];
    let to = rest
        .find(end)
        .unwrap_or_else(|| panic!("{end:?} not found"));
    rest[..to]
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            l.get(indent.min(l.len() - l.trim_start().len())..)
                .unwrap_or(l)
        })
        .collect()
}

#[test]
fn the_readme_axum_snippet_is_the_compiled_example() {
    let readme = include_str!("../README.md");
    let example = include_str!("../examples/readme_axum.rs");
    let snippet = between(
        readme,
        "## Mounting it in an axum app\n\n```rust,ignore\n",
        "```",
        0,
    );
    let compiled = between(example, "// README: begin\n", "// README: end", 4);
    assert!(snippet.len() > 10, "{snippet:?}");
    assert_eq!(
        snippet, compiled,
        "README.md and examples/readme_axum.rs differ"
    );
}
