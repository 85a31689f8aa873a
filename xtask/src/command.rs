//! Running cargo and other programs, reporting each step, and reading workspace metadata.

use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};

/// A `cargo` command using the toolchain that runs xtask (`$CARGO`), so nested runs share it.
pub(crate) fn cargo(arguments: &[&str]) -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command.args(arguments);
    command
}

/// `true` when the command runs and exits 0 (its output is discarded).
pub(crate) fn succeeds(command: &Command) -> bool {
    let mut command = clone(command);
    command.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
    command.status().is_ok_and(|status| status.success())
}

/// Runs one step with its output shown; records its name in `failures` when it fails.
pub(crate) fn step(failures: &mut Vec<String>, name: &str, command: &mut Command) {
    eprintln!("\nxtask: ==> {name}");
    let started = Instant::now();
    let status = command.status();
    let seconds = started.elapsed().as_secs_f64();
    match status {
        Ok(status) if status.success() => eprintln!("xtask: <== {name}: ok in {seconds:.1}s"),
        Ok(status) => {
            eprintln!("xtask: <== {name}: FAILED ({status}) after {seconds:.1}s");
            failures.push(name.to_owned());
        }
        Err(error) => {
            eprintln!("xtask: <== {name}: could not start: {error}");
            failures.push(name.to_owned());
        }
    }
}

/// Fails when any step failed, naming them all.
pub(crate) fn finish(failures: &[String]) -> anyhow::Result<()> {
    if failures.is_empty() {
        eprintln!("\nxtask: all steps passed");
        Ok(())
    } else {
        bail!("{} step(s) failed: {}", failures.len(), failures.join(", "))
    }
}

/// Runs a command to completion and returns its standard output, failing on a non-zero exit.
pub(crate) fn output(command: &mut Command) -> anyhow::Result<String> {
    let output = command.output().with_context(|| format!("cannot run {command:?}"))?;
    if !output.status.success() {
        bail!(
            "{command:?} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    String::from_utf8(output.stdout).context("the command printed something that is not UTF-8")
}

/// `cargo metadata` for the workspace, without dependencies.
pub(crate) fn metadata() -> anyhow::Result<serde_json::Value> {
    let text = output(&mut cargo(&["metadata", "--format-version", "1", "--no-deps"]))?;
    serde_json::from_str(&text).context("cargo metadata printed invalid JSON")
}

/// Workspace packages under `crates/` that declare features besides `default`.
pub(crate) fn packages_with_features() -> anyhow::Result<Vec<String>> {
    let metadata = metadata()?;
    let packages = metadata["packages"].as_array().context("cargo metadata lists packages")?;
    let mut names = Vec::new();
    for package in packages {
        let in_crates =
            package["manifest_path"].as_str().is_some_and(|path| path.contains("/crates/"));
        let has_features = package["features"]
            .as_object()
            .is_some_and(|features| features.keys().any(|name| name != "default"));
        if in_crates && has_features {
            names.push(package["name"].as_str().context("a package has a name")?.to_owned());
        }
    }
    names.sort();
    Ok(names)
}

fn clone(command: &Command) -> Command {
    let mut copy = Command::new(command.get_program());
    copy.args(command.get_args());
    for (key, value) in command.get_envs() {
        match value {
            Some(value) => copy.env(key, value),
            None => copy.env_remove(key),
        };
    }
    copy
}
