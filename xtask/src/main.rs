//! `cargo xtask`: the project's automation — test, lint, bench, ci — so that local runs match CI.

mod bench;
mod command;
mod postgres;
mod targets;
#[cfg(test)]
mod tidy;

use std::path::PathBuf;

use anyhow::{Context, bail};

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  test                         every test: nextest (or cargo test) with all features (both pool backends), again with
                               default features for crates that have features, doc tests, tidy;
                               PostgreSQL is provided (DATABASE_URL, the local server, or a throw-away cluster)
  lint                         cargo fmt --check, clippy -D warnings on all targets and features, rustdoc -D warnings
  bench [CONCERN..] [--quick]  run the criterion benches side by side with the peers; writes
                               target/bench-report/summary.json and regenerates docs/benchmarks.md
  bench --check                only compile the benches
  bench --report               regenerate docs/benchmarks.md (tables, targets) and the chart from docs/benchmarks.json
  ci                           lint, test, bench --check
  demo                         every crate together: a flaky local HTTP server, retries, rate limits, the CPU
                               pool, a pipeline and batched writes to PostgreSQL (or memory, with a notice)
";

fn main() -> anyhow::Result<()> {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let root = project_root()?;
    std::env::set_current_dir(&root).with_context(|| format!("cannot enter {}", root.display()))?;
    let Some((command, rest)) = arguments.split_first() else {
        eprint!("{USAGE}");
        bail!("no command given");
    };
    match command.as_str() {
        "test" => run_tests(rest),
        "lint" => lint(rest),
        "bench" => bench::run(&bench::Options::parse(rest)?),
        "ci" => {
            lint(&[])?;
            run_tests(&[])?;
            bench::run(&bench::Options::check_only())
        }
        "demo" => demo(rest),
        "help" | "--help" | "-h" => {
            eprint!("{USAGE}");
            Ok(())
        }
        other => {
            eprint!("{USAGE}");
            bail!("unknown command `{other}`")
        }
    }
}

/// The workspace root: the parent of this crate's manifest folder.
fn project_root() -> anyhow::Result<PathBuf> {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map(PathBuf::from)
        .context("xtask lives one level below the workspace root")
}

/// `cargo xtask test`: every test of the workspace with PostgreSQL provided.
fn run_tests(arguments: &[String]) -> anyhow::Result<()> {
    if let Some(unknown) = arguments.first() {
        bail!("`cargo xtask test` takes no arguments, got `{unknown}`");
    }
    let database = postgres::provide()?;
    eprintln!("xtask: PostgreSQL for the tests: {}", database.description());
    let env = [("DATABASE_URL", database.url())];

    let nextest = command::succeeds(&command::cargo(&["nextest", "--version"]));
    if !nextest {
        eprintln!("xtask: cargo-nextest is not installed; using cargo test");
    }
    let mut failures = Vec::new();
    for (name, arguments) in test_runs(nextest, &command::packages_with_features()?) {
        let arguments: Vec<&str> = arguments.iter().map(String::as_str).collect();
        command::step(&mut failures, &name, command::cargo(&arguments).envs(env));
    }

    let doc_tests = ["test", "--doc", "--workspace", "--all-features"];
    command::step(&mut failures, "doc tests", command::cargo(&doc_tests).envs(env));
    command::finish(&failures)
}

/// The test runs of `cargo xtask test` before the doc tests: the whole workspace with every feature (the pool's
/// tests then cover both backends), then each crate with optional features again with its defaults.
///
/// Every step of `ci` selects the whole workspace with all features, so cargo resolves the same features for the
/// dependencies and builds them once; only the default-features runs rebuild the few crates whose features differ.
fn test_runs(nextest: bool, packages_with_features: &[String]) -> Vec<(String, Vec<String>)> {
    // Each run adds only what it selects to the runner: cargo and nextest reject a repeated flag.
    let runner: &[&str] =
        if nextest { &["nextest", "run", "--no-fail-fast"] } else { &["test", "--no-fail-fast"] };
    let with =
        |extra: &[&str]| runner.iter().chain(extra).map(|&argument| argument.to_owned()).collect();
    let mut runs = vec![(
        "tests (every crate, all features)".to_owned(),
        with(&["--workspace", "--all-features"]),
    )];
    for package in packages_with_features {
        // A crate whose tests all need optional features (the facade) still has to build without them.
        let no_tests: &[&str] = if nextest { &["--no-tests", "warn"] } else { &[] };
        let selection = ["--package", package.as_str()];
        let arguments: Vec<&str> = selection.iter().chain(no_tests).copied().collect();
        runs.push((format!("tests of {package} (default features)"), with(&arguments)));
    }
    runs
}

/// `cargo xtask demo`: the end-to-end tour, in release mode, against the provided PostgreSQL when there is one.
fn demo(arguments: &[String]) -> anyhow::Result<()> {
    if let Some(unknown) = arguments.first() {
        bail!("`cargo xtask demo` takes no arguments, got `{unknown}`");
    }
    let database = match postgres::provide() {
        Ok(database) => Some(database),
        Err(error) => {
            eprintln!("xtask: no PostgreSQL for the demo ({error:#}); it will write to memory");
            None
        }
    };
    let mut run = command::cargo(&[
        "run",
        "--release",
        "--package",
        "aqueduct",
        "--features",
        "full",
        "--example",
        "demo",
    ]);
    if let Some(database) = &database {
        eprintln!("xtask: PostgreSQL for the demo: {}", database.description());
        run.env("DATABASE_URL", database.url());
    } else {
        run.env_remove("DATABASE_URL");
    }
    let mut failures = Vec::new();
    command::step(&mut failures, "demo", &mut run);
    command::finish(&failures)
}

/// `cargo xtask lint`: formatting, clippy and rustdoc, all with warnings denied.
fn lint(arguments: &[String]) -> anyhow::Result<()> {
    if let Some(unknown) = arguments.first() {
        bail!("`cargo xtask lint` takes no arguments, got `{unknown}`");
    }
    let mut failures = Vec::new();
    command::step(
        &mut failures,
        "cargo fmt --check",
        &mut command::cargo(&["fmt", "--all", "--check"]),
    );
    let clippy =
        ["clippy", "--workspace", "--all-targets", "--all-features", "--", "-D", "warnings"];
    command::step(&mut failures, "clippy", &mut command::cargo(&clippy));
    let doc = ["doc", "--workspace", "--no-deps", "--all-features"];
    command::step(
        &mut failures,
        "rustdoc",
        command::cargo(&doc).env("RUSTDOCFLAGS", "-D warnings"),
    );
    command::finish(&failures)
}

#[cfg(test)]
mod tests {
    use super::test_runs;

    #[test]
    fn no_test_run_repeats_a_flag_with_or_without_nextest() {
        let packages = ["aqueduct".to_owned(), "aqueduct-pool".to_owned()];
        for nextest in [true, false] {
            let runs = test_runs(nextest, &packages);
            assert_eq!(runs.len(), 3);
            for (name, arguments) in runs {
                let flags: Vec<&String> =
                    arguments.iter().filter(|argument| argument.starts_with("--")).collect();
                for (index, flag) in flags.iter().enumerate() {
                    assert!(
                        !flags[..index].contains(flag),
                        "{name} (nextest: {nextest}) repeats {flag}: {arguments:?}"
                    );
                }
                assert!(arguments.contains(&"--no-fail-fast".to_owned()), "{name}: {arguments:?}");
            }
        }
    }
}
