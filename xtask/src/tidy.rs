//! The tidy test: the workspace's conventions, checked on every `cargo xtask test`.

use std::path::{Path, PathBuf};

use crate::command;

/// The crates that compose others and so may depend on concern crates.
const COMPOSING_CRATES: [&str; 2] = ["aqueduct", "aqueduct-testkit"];

fn root() -> PathBuf {
    crate::project_root().expect("xtask knows the workspace root")
}

fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|name| name == "target") {
                continue;
            }
            rust_files(&path, found);
        } else if path.extension().is_some_and(|extension| extension == "rs") {
            found.push(path);
        }
    }
}

fn crate_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root().join("crates"))
        .expect("crates/ exists")
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.join("Cargo.toml").is_file())
        .collect();
    dirs.sort();
    dirs
}

fn name_of(dir: &Path) -> String {
    dir.file_name().and_then(|name| name.to_str()).unwrap_or_default().to_owned()
}

#[test]
fn every_rust_file_starts_with_a_module_doc_line() {
    let mut files = Vec::new();
    for folder in ["crates", "xtask", "benches"] {
        rust_files(&root().join(folder), &mut files);
    }
    let offenders: Vec<String> = files
        .iter()
        .filter(|path| {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            !text.trim_start().starts_with("//!")
        })
        .map(|path| path.strip_prefix(root()).unwrap_or(path).display().to_string())
        .collect();
    assert!(
        offenders.is_empty(),
        "these files must start with a `//!` line saying what they are for: {offenders:#?}"
    );
}

#[test]
fn every_crate_inherits_workspace_lints_and_rust_version() {
    let mut manifests: Vec<PathBuf> =
        crate_dirs().into_iter().map(|dir| dir.join("Cargo.toml")).collect();
    manifests.push(root().join("xtask/Cargo.toml"));
    manifests.push(root().join("benches/Cargo.toml"));
    for manifest in manifests {
        let text = std::fs::read_to_string(&manifest).expect("a manifest is readable");
        let compact: String = text.split_whitespace().collect();
        assert!(
            compact.contains("[lints]workspace=true"),
            "{} must say `[lints] workspace = true`",
            manifest.display()
        );
        assert!(
            compact.contains("rust-version.workspace=true"),
            "{} must say `rust-version.workspace = true`",
            manifest.display()
        );
    }
}

#[test]
fn concern_crates_depend_on_no_other_workspace_crate_but_core() {
    let metadata = command::metadata().expect("cargo metadata runs");
    let packages = metadata["packages"].as_array().expect("packages are listed");
    let workspace_names: Vec<&str> =
        packages.iter().filter_map(|package| package["name"].as_str()).collect();
    for package in packages {
        let name = package["name"].as_str().unwrap_or_default();
        let is_concern = name.starts_with("aqueduct-")
            && name != "aqueduct-core"
            && !COMPOSING_CRATES.contains(&name);
        if !is_concern {
            continue;
        }
        for dependency in package["dependencies"].as_array().into_iter().flatten() {
            let dependency_name = dependency["name"].as_str().unwrap_or_default();
            let is_dev = dependency["kind"] == "dev";
            if !workspace_names.contains(&dependency_name) || dependency_name == "aqueduct-core" {
                continue;
            }
            let allowed = is_dev && dependency_name == "aqueduct-testkit";
            assert!(
                allowed,
                "{name} depends on {dependency_name}: a concern crate may depend only on aqueduct-core (and dev-depend on aqueduct-testkit)"
            );
        }
    }
}

#[test]
fn published_crates_have_readme_changelog_examples_and_tests() {
    for dir in crate_dirs() {
        let manifest =
            std::fs::read_to_string(dir.join("Cargo.toml")).expect("a manifest is readable");
        if manifest.split_whitespace().collect::<String>().contains("publish=false") {
            continue;
        }
        for required in ["README.md", "CHANGELOG.md", "examples", "tests"] {
            assert!(dir.join(required).exists(), "{} lacks {required}", dir.display());
        }
        let lib = std::fs::read_to_string(dir.join("src/lib.rs")).unwrap_or_default();
        assert!(
            lib.contains("include_str!(\"../README.md\")"),
            "{}/src/lib.rs must include README.md as its crate docs",
            dir.display()
        );
    }
}

#[test]
fn the_root_readme_lists_every_crate() {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README.md exists");
    // The first cell of a table row names the crate; a mention elsewhere in the prose does not count.
    let first_cells: Vec<&str> = readme
        .lines()
        .filter(|line| line.starts_with('|'))
        .filter_map(|row| row.split('|').nth(1))
        .collect();
    for dir in crate_dirs() {
        let name = name_of(&dir);
        let quoted = format!("`{name}`");
        assert!(
            first_cells.iter().any(|cell| cell.contains(&quoted)),
            "the crate table in README.md misses `{name}`"
        );
    }
}

#[test]
fn no_placeholders_ignored_tests_or_debug_output() {
    let mut files = Vec::new();
    for folder in ["crates", "xtask", "benches"] {
        rust_files(&root().join(folder), &mut files);
    }
    let forbidden = [
        concat!("to", "do!("),
        concat!("unimpl", "emented!("),
        concat!("db", "g!("),
        concat!("#[ig", "nore"),
    ];
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        for needle in forbidden {
            assert!(!text.contains(needle), "{} contains `{needle}`", path.display());
        }
    }
}
