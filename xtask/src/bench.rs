//! `cargo xtask bench`: runs the criterion benches and turns their results into the report and table.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::command;
use crate::targets::{self, Rule, TARGETS};

/// The committed results, merged across runs so a run of one concern keeps the others' figures.
const RESULTS_FILE: &str = "docs/benchmarks.json";
const TABLE_FILE: &str = "docs/benchmarks.md";
const CHART_FILE: &str = "docs/benchmarks.svg";
const TABLE_START: &str = "<!-- bench-table:start -->";
const TABLE_END: &str = "<!-- bench-table:end -->";
const TARGETS_START: &str = "<!-- bench-targets:start -->";
const TARGETS_END: &str = "<!-- bench-targets:end -->";

#[derive(Debug, Default)]
pub(crate) struct Options {
    concerns: Vec<String>,
    quick: bool,
    check: bool,
    report_only: bool,
}

impl Options {
    pub(crate) fn parse(arguments: &[String]) -> anyhow::Result<Self> {
        let mut options = Self::default();
        for argument in arguments {
            match argument.as_str() {
                "--quick" => options.quick = true,
                "--check" => options.check = true,
                "--report" => options.report_only = true,
                flag if flag.starts_with('-') => {
                    bail!("unknown flag `{flag}` (expected --quick, --check or --report)")
                }
                concern => options.concerns.push(concern.to_owned()),
            }
        }
        Ok(options)
    }

    pub(crate) fn check_only() -> Self {
        Self { check: true, ..Self::default() }
    }
}

pub(crate) fn run(options: &Options) -> anyhow::Result<()> {
    if options.check {
        let mut failures = Vec::new();
        // The dev profile: `--check` proves the benches build and link, without the bench profile's LTO time.
        // The whole workspace with all features, as the tests select it, so the dependencies built for the tests
        // are reused.
        let build = ["build", "--workspace", "--all-features", "--benches"];
        command::step(&mut failures, "compile the benches", &mut command::cargo(&build));
        return command::finish(&failures);
    }
    if options.report_only {
        let results = read_results()?;
        write_table(&results)?;
        write_chart(&results)?;
        eprintln!("xtask: regenerated {TABLE_FILE} and {CHART_FILE} from {RESULTS_FILE}");
        return Ok(());
    }
    let available = bench_targets()?;
    let concerns =
        if options.concerns.is_empty() { available.clone() } else { options.concerns.clone() };
    for concern in &concerns {
        if !available.contains(concern) {
            bail!("no bench target `{concern}`; the targets are: {}", available.join(", "));
        }
    }
    let target_dir = target_dir()?;
    let report_dir = target_dir.join("bench-report");
    std::fs::create_dir_all(&report_dir)?;
    let extra_file = report_dir.join("extra.jsonl");
    let _ = std::fs::remove_file(&extra_file);

    let started = SystemTime::now();
    // Only the pool's benches need PostgreSQL; the others run without one, so tell rather than fail.
    let database = match crate::postgres::provide() {
        Ok(database) => {
            eprintln!("xtask: PostgreSQL for the benches: {}", database.description());
            Some(database)
        }
        Err(error) => {
            eprintln!(
                "xtask: no PostgreSQL for the benches ({error:#}); benches that need one will say so"
            );
            None
        }
    };
    let mut failures = Vec::new();
    let mut completed = Vec::new();
    for concern in &concerns {
        let mut bench = command::cargo(&["bench", "-p", "benches", "--bench", concern]);
        bench.env("AQUEDUCT_BENCH_REPORT_DIR", &report_dir);
        // Criterion writes where the report reader looks, whatever the bench's working directory.
        bench.env("CRITERION_HOME", target_dir.join("criterion"));
        if options.quick {
            bench.env("AQUEDUCT_BENCH_QUICK", "1");
        }
        if let Some(database) = &database {
            bench.env("DATABASE_URL", database.url());
        }
        let failed_before = failures.len();
        command::step(&mut failures, &format!("bench {concern}"), &mut bench);
        if failures.len() == failed_before {
            completed.push(concern.clone());
        }
    }

    let mut fresh = criterion_results(&target_dir.join("criterion"), started, &concerns)?;
    fresh.extend(extra_results(&extra_file)?);
    // Only a concern whose bench ran to the end replaces its recorded figures; a failed one keeps them.
    let merged = merge(read_results()?, fresh, &completed);
    let document = json!({ "results": merged, "peers": peer_versions()? });
    let text = serde_json::to_string_pretty(&document)? + "\n";
    std::fs::write(report_dir.join("summary.json"), &text)?;
    std::fs::write(RESULTS_FILE, &text)?;
    write_table(&merged)?;
    write_chart(&merged)?;
    eprintln!(
        "xtask: wrote {}, {RESULTS_FILE}, {TABLE_FILE} and {CHART_FILE}",
        report_dir.join("summary.json").display()
    );
    command::finish(&failures)
}

/// The `[[bench]]` targets of the `benches` package.
fn bench_targets() -> anyhow::Result<Vec<String>> {
    let metadata = command::metadata()?;
    let packages = metadata["packages"].as_array().context("cargo metadata lists packages")?;
    let benches = packages
        .iter()
        .find(|package| package["name"] == "benches")
        .context("no `benches` package")?;
    let mut names: Vec<String> = benches["targets"]
        .as_array()
        .context("a package has targets")?
        .iter()
        .filter(|target| {
            target["kind"].as_array().is_some_and(|kinds| kinds.iter().any(|kind| kind == "bench"))
        })
        .filter_map(|target| target["name"].as_str().map(str::to_owned))
        .collect();
    names.sort();
    Ok(names)
}

fn target_dir() -> anyhow::Result<PathBuf> {
    let metadata = command::metadata()?;
    metadata["target_directory"]
        .as_str()
        .map(PathBuf::from)
        .context("cargo metadata names the target directory")
}

/// Reads criterion's `new/benchmark.json` and `new/estimates.json` written since `started`.
fn criterion_results(
    folder: &Path,
    started: SystemTime,
    concerns: &[String],
) -> anyhow::Result<Vec<Value>> {
    let mut results = Vec::new();
    let mut pending = vec![folder.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.filter_map(Result::ok) {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            let is_benchmark = path.file_name().is_some_and(|name| name == "benchmark.json")
                && path.parent().and_then(Path::file_name).is_some_and(|name| name == "new");
            let fresh = entry
                .metadata()
                .and_then(|meta| meta.modified())
                .is_ok_and(|modified| modified >= started);
            if !is_benchmark || !fresh {
                continue;
            }
            let benchmark: Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
            let estimates_path = path.with_file_name("estimates.json");
            let estimates: Value = serde_json::from_str(&std::fs::read_to_string(&estimates_path)?)
                .with_context(|| format!("cannot read {}", estimates_path.display()))?;
            let group = benchmark["group_id"].as_str().unwrap_or_default();
            let Some((concern, workload)) = group.split_once('/') else { continue };
            if !concerns.iter().any(|wanted| wanted == concern) {
                continue;
            }
            let function = benchmark["function_id"].as_str().filter(|name| !name.is_empty());
            let value = benchmark["value_str"].as_str().filter(|value| !value.is_empty());
            // `BenchmarkId::from_parameter(name)` stores the contender as the value, with no function id.
            let (workload, contender) = match (function, value) {
                (Some(function), Some(value)) => (format!("{workload} ({value})"), function),
                (Some(function), None) => (workload.to_owned(), function),
                (None, Some(value)) => (workload.to_owned(), value),
                (None, None) => (workload.to_owned(), "unnamed"),
            };
            let median = estimates["median"]["point_estimate"]
                .as_f64()
                .context("criterion estimates have a median")?;
            results.push(json!({
                "concern": concern, "workload": workload, "contender": contender, "median_ns": median,
            }));
        }
    }
    Ok(results)
}

/// Reads the figures benches recorded with `benches::record_extra`, one JSON object per line.
fn extra_results(file: &Path) -> anyhow::Result<Vec<Value>> {
    let Ok(text) = std::fs::read_to_string(file) else { return Ok(Vec::new()) };
    let mut results = Vec::new();
    for line in text.lines().filter(|line| !line.trim().is_empty()) {
        let extra: Value = serde_json::from_str(line)
            .with_context(|| format!("bad line in {}: {line}", file.display()))?;
        let metric = extra["metric"].as_str().unwrap_or("value");
        results.push(json!({
            "concern": extra["concern"], "workload": extra["workload"], "contender": extra["contender"],
            metric: extra["value"],
        }));
    }
    Ok(results)
}

fn read_results() -> anyhow::Result<Vec<Value>> {
    let Ok(text) = std::fs::read_to_string(RESULTS_FILE) else { return Ok(Vec::new()) };
    let document: Value =
        serde_json::from_str(&text).with_context(|| format!("{RESULTS_FILE} is not valid JSON"))?;
    Ok(document["results"].as_array().cloned().unwrap_or_default())
}

type Key = (String, String, String);

fn key(result: &Value) -> Key {
    let field = |name: &str| result[name].as_str().unwrap_or_default().to_owned();
    (field("concern"), field("workload"), field("contender"))
}

/// Drops the old results of the `replaced` concerns and keeps the others; merges fresh rows (time and
/// extra figures) over them by key.
fn merge(old: Vec<Value>, fresh: Vec<Value>, replaced: &[String]) -> Vec<Value> {
    let mut rows: BTreeMap<Key, Value> = BTreeMap::new();
    for result in old {
        let key = key(&result);
        if !replaced.contains(&key.0) {
            rows.insert(key, result);
        }
    }
    for result in fresh {
        let entry = rows.entry(key(&result)).or_insert_with(|| json!({}));
        if let (Some(target), Some(source)) = (entry.as_object_mut(), result.as_object()) {
            for (name, value) in source {
                target.insert(name.clone(), value.clone());
            }
        }
    }
    rows.into_values().collect()
}

fn is_peer(contender: &str) -> bool {
    !contender.starts_with("aqueduct")
        && !contender.starts_with("baseline")
        && contender != "inline"
}

/// The results grouped by `(concern, workload)`, in order.
fn by_workload(results: &[Value]) -> BTreeMap<(String, String), Vec<&Value>> {
    let mut workloads: BTreeMap<(String, String), Vec<&Value>> = BTreeMap::new();
    for result in results {
        let (concern, workload, _) = key(result);
        workloads.entry((concern, workload)).or_default().push(result);
    }
    workloads
}

/// The smallest median among a workload's peers; infinite when no peer has one.
fn best_peer_median(rows: &[&Value]) -> f64 {
    rows.iter()
        .filter(|row| is_peer(row["contender"].as_str().unwrap_or_default()))
        .filter_map(|row| row["median_ns"].as_f64())
        .fold(f64::INFINITY, f64::min)
}

/// Regenerates the table between the markers in `docs/benchmarks.md`.
fn write_table(results: &[Value]) -> anyhow::Result<()> {
    let mut table = String::new();
    table.push_str(
        "| concern | workload | contender | median | ratio to best peer | other figures |\n",
    );
    table.push_str("|---|---|---|---:|---:|---|\n");
    for ((concern, workload), rows) in &by_workload(results) {
        let best_peer = best_peer_median(rows);
        for row in rows {
            let contender = row["contender"].as_str().unwrap_or_default();
            let median = row["median_ns"].as_f64();
            let ratio = match median {
                Some(median) if best_peer.is_finite() && best_peer > 0.0 => {
                    format!("{:.2}×", median / best_peer)
                }
                _ => "–".to_owned(),
            };
            let others: Vec<String> = row
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(name, _)| {
                    !["concern", "workload", "contender", "median_ns"].contains(&name.as_str())
                })
                .map(|(name, value)| format!("{name} = {}", format_number(value)))
                .collect();
            let median = median.map_or_else(|| "–".to_owned(), format_duration);
            writeln!(
                table,
                "| {concern} | {workload} | {contender} | {median} | {ratio} | {} |",
                others.join(", ")
            )?;
        }
    }
    let current =
        std::fs::read_to_string(TABLE_FILE).with_context(|| format!("cannot read {TABLE_FILE}"))?;
    let updated = replace_between(&current, TABLE_START, TABLE_END, &table)?;
    let updated = replace_between(&updated, TARGETS_START, TARGETS_END, &targets::table(results))?;
    std::fs::write(TABLE_FILE, updated)?;
    Ok(())
}

/// `text` with what lies between the `start` and `end` markers replaced by `content`.
fn replace_between(text: &str, start: &str, end: &str, content: &str) -> anyhow::Result<String> {
    let (Some(from), Some(to)) = (text.find(start), text.find(end)) else {
        bail!("{TABLE_FILE} lacks the markers {start} and {end}");
    };
    Ok(format!("{}{start}\n{content}{}", &text[..from], &text[to..]))
}

/// An SVG bar chart: one bar per ratio target, the measured ratio over the target's limit (1.0 = the limit).
fn write_chart(results: &[Value]) -> anyhow::Result<()> {
    let mut bars = Vec::new();
    for target in TARGETS {
        let Rule::RatioAtMost { reference, limit } = target.rule else { continue };
        let (Some(ours), Some(theirs)) = (
            targets::lookup(results, target.concern, target.ours),
            targets::lookup(results, target.concern, reference),
        ) else {
            continue;
        };
        if theirs > 0.0 {
            let label = format!(
                "#{} {} / {} / {} vs {} (limit {limit:.2}×)",
                target.issue,
                target.concern,
                target.ours.workload,
                target.ours.contender,
                reference.contender
            );
            bars.push((label, ours / theirs / limit));
        }
    }
    let row_height = 22.0;
    let label_width = 640.0;
    let bar_space = 360.0;
    let max_ratio = bars.iter().map(|(_, ratio)| *ratio).fold(2.0_f64, f64::max).min(10.0);
    let height = row_height * (bars.len() as f64 + 3.0);
    let width = label_width + bar_space + 80.0;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"8\" y=\"16\" font-weight=\"bold\">each ratio target of the issues: the measured ratio over the target's limit (at or left of the line: met)</text>\n"
    );
    for (index, (label, ratio)) in bars.iter().enumerate() {
        let y = row_height * (index as f64 + 1.5);
        let length = bar_space * ratio.min(max_ratio) / max_ratio;
        let colour = if *ratio <= 1.0 { "#2e8b57" } else { "#c0392b" };
        writeln!(
            svg,
            "<text x=\"{:.0}\" y=\"{:.0}\" text-anchor=\"end\">{}</text>",
            label_width - 6.0,
            y + 14.0,
            escape(label)
        )?;
        writeln!(
            svg,
            "<rect x=\"{label_width}\" y=\"{:.0}\" width=\"{length:.1}\" height=\"16\" fill=\"{colour}\"/>",
            y + 2.0
        )?;
        writeln!(
            svg,
            "<text x=\"{:.0}\" y=\"{:.0}\">{ratio:.2}</text>",
            label_width + length + 4.0,
            y + 14.0
        )?;
    }
    let parity = label_width + bar_space / max_ratio;
    writeln!(
        svg,
        "<line x1=\"{parity:.1}\" y1=\"{row_height}\" x2=\"{parity:.1}\" y2=\"{:.0}\" stroke=\"black\" stroke-dasharray=\"4 3\"/>",
        height - row_height
    )?;
    svg.push_str("</svg>\n");
    std::fs::write(CHART_FILE, svg)?;
    Ok(())
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

pub(crate) fn format_duration(nanos: f64) -> String {
    if nanos >= 1e9 {
        format!("{:.3} s", nanos / 1e9)
    } else if nanos >= 1e6 {
        format!("{:.3} ms", nanos / 1e6)
    } else if nanos >= 1e3 {
        format!("{:.3} µs", nanos / 1e3)
    } else {
        format!("{nanos:.1} ns")
    }
}

fn format_number(value: &Value) -> String {
    match value.as_f64() {
        Some(number) if number.fract() == 0.0 && number.abs() < 1e15 => format!("{number:.0}"),
        Some(number) => format!("{number:.3}"),
        None => value.to_string(),
    }
}

/// The versions of the peer crates the benches were built against, from `Cargo.lock`.
fn peer_versions() -> anyhow::Result<BTreeMap<String, String>> {
    Ok(peer_versions_in(&std::fs::read_to_string("Cargo.lock").unwrap_or_default()))
}

/// The peers' versions in the text of a `Cargo.lock`; a peer locked at several versions lists them all.
fn peer_versions_in(lock: &str) -> BTreeMap<String, String> {
    const PEERS: [&str; 16] = [
        "tokio",
        "futures",
        "governor",
        "leaky-bucket",
        "backon",
        "tokio-retry2",
        "deadpool",
        "deadpool-postgres",
        "bb8",
        "kanal",
        "flume",
        "async-channel",
        "rayon",
        "futures-concurrency",
        "dataloader",
        "criterion",
    ];
    let mut versions: BTreeMap<String, String> = BTreeMap::new();
    let mut name = None;
    for line in lock.lines() {
        if let Some(value) = line.strip_prefix("name = ") {
            name = Some(value.trim_matches('"').to_owned());
        } else if let (Some(value), Some(current)) = (line.strip_prefix("version = "), name.take())
        {
            if PEERS.contains(&current.as_str()) {
                let version = value.trim_matches('"');
                versions
                    .entry(current)
                    .and_modify(|known| {
                        known.push_str(", ");
                        known.push_str(version);
                    })
                    .or_insert_with(|| version.to_owned());
            }
        }
    }
    versions
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{merge, peer_versions_in};

    #[test]
    fn every_locked_version_of_a_peer_is_recorded() {
        let lock = "[[package]]\nname = \"deadpool\"\nversion = \"0.12.2\"\n\n\
                    [[package]]\nname = \"deadpool\"\nversion = \"0.13.1\"\n\n\
                    [[package]]\nname = \"serde\"\nversion = \"1.0.0\"\n";
        let versions = peer_versions_in(lock);
        assert_eq!(versions.get("deadpool").map(String::as_str), Some("0.12.2, 0.13.1"));
        assert_eq!(versions.len(), 1, "only peers are recorded: {versions:?}");
    }

    #[test]
    fn merge_replaces_completed_concerns_and_keeps_the_figures_of_failed_ones() {
        let old = vec![
            json!({ "concern": "timeout", "workload": "ready", "contender": "aqueduct", "median_ns": 5.0 }),
            json!({ "concern": "timeout", "workload": "gone", "contender": "aqueduct", "median_ns": 6.0 }),
            json!({ "concern": "retry", "workload": "success", "contender": "aqueduct", "median_ns": 7.0 }),
            json!({ "concern": "retry", "workload": "zero delay", "contender": "aqueduct", "median_ns": 8.0 }),
        ];
        // `timeout` completed; `retry` failed after one workload; `pool` was not run.
        let fresh = vec![
            json!({ "concern": "timeout", "workload": "ready", "contender": "aqueduct", "median_ns": 4.0 }),
            json!({ "concern": "retry", "workload": "success", "contender": "aqueduct", "median_ns": 9.0 }),
        ];
        let merged = merge(old, fresh, &["timeout".to_owned()]);
        let medians: Vec<(&str, &str, f64)> = merged
            .iter()
            .map(|row| {
                let text = |name: &str| row[name].as_str().unwrap_or_default();
                (text("concern"), text("workload"), row["median_ns"].as_f64().unwrap_or_default())
            })
            .collect();
        assert_eq!(
            medians,
            [("retry", "success", 9.0), ("retry", "zero delay", 8.0), ("timeout", "ready", 4.0)]
        );
    }
}
