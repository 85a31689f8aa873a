//! The performance targets the issues set, each checked against the figures of one bench run.
//!
//! A target names the workload, the aqueduct contender and what it is compared with, so the report says
//! "met", "missed" or "not measured" from the data instead of a reader picking the comparison.

use std::fmt::Write as _;

use serde_json::Value;

/// One figure of one contender in one workload: criterion's median or a figure the bench recorded itself.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Figure {
    pub(crate) workload: &'static str,
    pub(crate) contender: &'static str,
    pub(crate) metric: &'static str,
}

/// How the figure of aqueduct is judged.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Rule {
    /// `ours / reference <= limit` (times and latencies: lower is better).
    RatioAtMost { reference: Figure, limit: f64 },
    /// `ours - reference <= limit`, in the figure's unit (nanoseconds for medians).
    ExcessAtMost { reference: Figure, limit: f64, per: f64 },
    /// `ours <= limit`, in the figure's unit.
    AtMost { limit: f64 },
    /// `ours >= limit`, in the figure's unit.
    AtLeast { limit: f64 },
}

/// A performance target of an issue.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Target {
    pub(crate) issue: u32,
    pub(crate) concern: &'static str,
    pub(crate) ours: Figure,
    pub(crate) rule: Rule,
    /// The target in the issue's words.
    pub(crate) wording: &'static str,
}

const fn median(workload: &'static str, contender: &'static str) -> Figure {
    Figure { workload, contender, metric: "median_ns" }
}

const fn extra(workload: &'static str, contender: &'static str, metric: &'static str) -> Figure {
    Figure { workload, contender, metric }
}

/// Every target, in issue order.
pub(crate) const TARGETS: &[Target] = &[
    // #2 the foundation: aqueduct-timeout.
    Target {
        issue: 2,
        concern: "timeout",
        ours: median("ready future", "aqueduct"),
        rule: Rule::RatioAtMost { reference: median("ready future", "tokio"), limit: 1.1 },
        wording: "timeout of a ready future at most 1.1× tokio::time::timeout",
    },
    Target {
        issue: 2,
        concern: "timeout",
        ours: median("future that yields once", "aqueduct"),
        rule: Rule::RatioAtMost {
            reference: median("future that yields once", "tokio"),
            limit: 1.1,
        },
        wording: "timeout of a future that yields once at most 1.1× tokio::time::timeout",
    },
    // #3 aqueduct-gather.
    Target {
        issue: 3,
        concern: "gather",
        ours: extra("ready_10k", "aqueduct", "paired_ratio_to_join_all"),
        rule: Rule::AtMost { limit: 1.0 },
        wording: "in place, 10 000 ready futures: at most 1.0× join_all (time ratio, median of back-to-back pairs)",
    },
    Target {
        issue: 3,
        concern: "gather",
        ours: extra("yield_once_10k", "aqueduct", "paired_ratio_to_join_all"),
        rule: Rule::AtMost { limit: 1.0 },
        wording: "in place, 10 000 futures yielding once: at most 1.0× join_all (time ratio, median of back-to-back pairs)",
    },
    Target {
        issue: 3,
        concern: "gather",
        ours: extra("ready_10k", "aqueduct-spawned", "paired_ratio_to_JoinSet"),
        rule: Rule::AtMost { limit: 1.1 },
        wording: "spawned and ordered, 10 000 ready futures: at most 1.1× JoinSet + join_all (time ratio, median of back-to-back pairs)",
    },
    Target {
        issue: 3,
        concern: "gather",
        ours: extra("yield_once_10k", "aqueduct-spawned", "paired_ratio_to_JoinSet"),
        rule: Rule::AtMost { limit: 1.1 },
        wording: "spawned and ordered, 10 000 futures yielding once: at most 1.1× JoinSet + join_all (time ratio, median of back-to-back pairs)",
    },
    // #4 aqueduct-ratelimit.
    Target {
        issue: 4,
        concern: "ratelimit",
        ours: median("uncontended admit", "aqueduct"),
        rule: Rule::RatioAtMost { reference: median("uncontended admit", "governor"), limit: 1.2 },
        wording: "uncontended admit at most 1.2× governor with the same clock source",
    },
    Target {
        issue: 4,
        concern: "ratelimit",
        ours: median("semaphore acquire+release", "aqueduct"),
        rule: Rule::RatioAtMost {
            reference: median("semaphore acquire+release", "tokio"),
            limit: 1.0,
        },
        wording: "semaphore acquire().await + release no slower than tokio's",
    },
    Target {
        issue: 4,
        concern: "ratelimit",
        ours: median("semaphore try acquire+release", "aqueduct"),
        rule: Rule::RatioAtMost {
            reference: median("semaphore try acquire+release", "tokio"),
            limit: 1.0,
        },
        wording: "semaphore try_acquire + release no slower than tokio's",
    },
    Target {
        issue: 4,
        concern: "ratelimit",
        ours: extra("10000 waiters", "aqueduct", "polls_per_admission"),
        rule: Rule::RatioAtMost {
            reference: extra("10000 waiters", "governor", "polls_per_admission"),
            limit: 0.1,
        },
        wording: "10 000 waiters on 1 000/s: at least 10× fewer polls per admission than governor's until_ready",
    },
    // #5 aqueduct-retry.
    Target {
        issue: 5,
        concern: "retry",
        ours: median("success on first attempt", "aqueduct"),
        rule: Rule::ExcessAtMost {
            reference: median("success on first attempt", "baseline"),
            limit: 5.0,
            per: 1.0,
        },
        wording: "success on the first attempt within 5 ns of a hand-written loop",
    },
    Target {
        issue: 5,
        concern: "retry",
        ours: median("success on first attempt", "aqueduct"),
        rule: Rule::RatioAtMost {
            reference: median("success on first attempt", "backon"),
            limit: 1.0,
        },
        wording: "success on the first attempt never slower than backon",
    },
    Target {
        issue: 5,
        concern: "retry",
        ours: median("one failure then success, zero delay", "aqueduct"),
        rule: Rule::AtMost { limit: 1_000.0 },
        wording: "one failure then success with zero delay under 1 µs",
    },
    // #6 aqueduct-pool. SELECT 1 shares the two cores with PostgreSQL, so criterion's one-contender-after-another
    // timings follow the machine's drift; the bench's interleaved rounds compare contenders under the same load.
    Target {
        issue: 6,
        concern: "pool",
        ours: extra("uncontended", "aqueduct", "paired_ratio_to_deadpool"),
        rule: Rule::AtMost { limit: 1.2 },
        wording: "uncontended acquire + release at most 1.2× raw deadpool (time ratio, median of back-to-back pairs)",
    },
    Target {
        issue: 6,
        concern: "pool",
        ours: extra("contended", "aqueduct", "interleaved_p999_ns"),
        rule: Rule::RatioAtMost {
            reference: extra("contended", "deadpool", "interleaved_p999_ns"),
            limit: 1.0,
        },
        wording: "contended p99.9 acquire wait no worse than deadpool (waits of interleaved rounds)",
    },
    Target {
        issue: 6,
        concern: "pool",
        ours: extra("contended", "aqueduct", "interleaved_p999_ns"),
        rule: Rule::RatioAtMost {
            reference: extra("contended", "bb8", "interleaved_p999_ns"),
            limit: 0.1,
        },
        wording: "contended p99.9 acquire wait at least 10× better than bb8 (waits of interleaved rounds)",
    },
    Target {
        issue: 6,
        concern: "pool",
        ours: extra("select1 size 4", "aqueduct", "paired_ratio_to_deadpool"),
        rule: Rule::AtMost { limit: 1.0 },
        wording: "SELECT 1 throughput at size 4 at least deadpool's (time ratio, median of interleaved rounds)",
    },
    Target {
        issue: 6,
        concern: "pool",
        ours: extra("select1 size 4", "aqueduct", "paired_ratio_to_bb8"),
        rule: Rule::AtMost { limit: 1.0 },
        wording: "SELECT 1 throughput at size 4 at least bb8's (time ratio, median of interleaved rounds)",
    },
    Target {
        issue: 6,
        concern: "pool",
        ours: extra("select1 size 16", "aqueduct", "paired_ratio_to_deadpool"),
        rule: Rule::AtMost { limit: 1.0 },
        wording: "SELECT 1 throughput at size 16 at least deadpool's (time ratio, median of interleaved rounds)",
    },
    Target {
        issue: 6,
        concern: "pool",
        ours: extra("select1 size 16", "aqueduct", "paired_ratio_to_bb8"),
        rule: Rule::AtMost { limit: 1.0 },
        wording: "SELECT 1 throughput at size 16 at least bb8's (time ratio, median of interleaved rounds)",
    },
    // #7 aqueduct-pipeline: throughput is items over time, so "0.9× the throughput" is "time at most 1/0.9×".
    Target {
        issue: 7,
        concern: "pipeline",
        ours: extra("one-stage", "aqueduct", "paired_ratio_to_baseline-kanal"),
        rule: Rule::AtMost { limit: 1.0 / 0.9 },
        wording: "one stage: at least 0.9× the throughput of hand-written workers over kanal (time ratio, median of back-to-back pairs)",
    },
    Target {
        issue: 7,
        concern: "pipeline",
        ours: extra("three-stages", "aqueduct", "paired_ratio_to_baseline-kanal"),
        rule: Rule::AtMost { limit: 1.0 / 0.9 },
        wording: "three stages: at least 0.9× the throughput of hand-written workers over kanal (time ratio, median of back-to-back pairs)",
    },
    Target {
        issue: 7,
        concern: "pipeline",
        ours: median("one-stage", "aqueduct"),
        rule: Rule::RatioAtMost { reference: median("one-stage", "tokio-mpsc-mutex"), limit: 0.5 },
        wording: "one stage: at least 2× the throughput of the naive port",
    },
    Target {
        issue: 7,
        concern: "pipeline",
        ours: median("three-stages", "aqueduct"),
        rule: Rule::RatioAtMost {
            reference: median("three-stages", "tokio-mpsc-mutex"),
            limit: 0.5,
        },
        wording: "three stages: at least 2× the throughput of the naive port",
    },
    Target {
        issue: 7,
        concern: "pipeline",
        ours: extra("peak-memory-1m", "aqueduct", "peak_rss_bytes"),
        rule: Rule::RatioAtMost {
            reference: extra("peak-memory-100k", "aqueduct", "peak_rss_bytes"),
            limit: 1.1,
        },
        wording: "peak memory flat from 100 000 to 1 000 000 items (within 10 %)",
    },
    // #8 aqueduct-batch.
    Target {
        issue: 8,
        concern: "batch",
        ours: median("static_1ms", "aqueduct"),
        rule: Rule::RatioAtMost { reference: median("static_1ms", "baseline"), limit: 1.1 },
        wording: "static batching with a 1 ms call at most 1.1× the hand-written baseline",
    },
    Target {
        issue: 8,
        concern: "batch",
        ours: median("dynamic_10k", "aqueduct"),
        rule: Rule::ExcessAtMost {
            reference: median("dynamic_10k", "baseline"),
            limit: 1_000.0,
            per: 10_000.0,
        },
        wording: "dynamic batcher, 10 000 submitters: at most 1 µs of overhead per item over the unbatched baseline",
    },
    // #9 aqueduct-cpu-offload.
    Target {
        issue: 9,
        concern: "cpu-offload",
        ours: median("dispatch", "aqueduct"),
        rule: Rule::RatioAtMost { reference: median("dispatch", "rayon-oneshot"), limit: 1.2 },
        wording: "dispatch of 10 000 tiny jobs at most 1.2× rayon spawn + oneshot",
    },
    Target {
        issue: 9,
        concern: "cpu-offload",
        ours: median("dispatch", "aqueduct"),
        rule: Rule::RatioAtMost { reference: median("dispatch", "spawn_blocking"), limit: 0.2 },
        wording: "dispatch at least 5× cheaper than spawn_blocking",
    },
    Target {
        issue: 9,
        concern: "cpu-offload",
        ours: extra("speedup", "aqueduct", "speedup_vs_serial"),
        rule: Rule::AtLeast { limit: 1.8 },
        wording: "speedup of a CPU-heavy job set over serial at least 1.8× on 2 cores",
    },
    Target {
        issue: 9,
        concern: "cpu-offload",
        ours: extra("timer lateness", "aqueduct", "p99_lateness_ns"),
        rule: Rule::AtMost { limit: 2_000_000.0 },
        wording: "1 ms timer on the runtime late by at most 2 ms at p99 while the pool saturates both cores",
    },
];

/// The outcome of one target against the recorded figures.
#[derive(Debug, PartialEq)]
pub(crate) enum Verdict {
    Met(String),
    Missed(String),
    NotMeasured(String),
}

pub(crate) fn lookup(results: &[Value], concern: &str, figure: Figure) -> Option<f64> {
    results
        .iter()
        .find(|row| {
            row["concern"] == concern
                && row["workload"] == figure.workload
                && row["contender"] == figure.contender
        })
        .and_then(|row| row[figure.metric].as_f64())
}

fn describe(figure: Figure) -> String {
    format!("{} `{}`", figure.contender, figure.metric)
}

impl Target {
    /// Judges the target against the figures of one run.
    pub(crate) fn judge(&self, results: &[Value]) -> Verdict {
        let Some(ours) = lookup(results, self.concern, self.ours) else {
            return Verdict::NotMeasured(format!("no figure for {}", describe(self.ours)));
        };
        let reference_figure = match self.rule {
            Rule::RatioAtMost { reference, .. } | Rule::ExcessAtMost { reference, .. } => {
                Some(reference)
            }
            Rule::AtMost { .. } | Rule::AtLeast { .. } => None,
        };
        let reference = match reference_figure {
            Some(figure) => match lookup(results, self.concern, figure) {
                Some(value) if value > 0.0 => value,
                _ => return Verdict::NotMeasured(format!("no figure for {}", describe(figure))),
            },
            None => 0.0,
        };
        let show = |value: f64| {
            if self.ours.metric.ends_with("_ns") {
                crate::bench::format_duration(value)
            } else {
                format!("{value:.3}")
            }
        };
        let (met, shown) = match self.rule {
            Rule::RatioAtMost { limit, .. } => {
                let ratio = ours / reference;
                (ratio <= limit, format!("{ratio:.2}× (limit {limit:.2}×)"))
            }
            Rule::ExcessAtMost { limit, per, .. } => {
                let excess = (ours - reference) / per;
                let sign = if excess < 0.0 { "−" } else { "+" };
                (
                    excess <= limit,
                    format!(
                        "{sign}{} over the reference (limit {})",
                        show(excess.abs()),
                        show(limit)
                    ),
                )
            }
            Rule::AtMost { limit } => {
                (ours <= limit, format!("{} (limit {})", show(ours), show(limit)))
            }
            Rule::AtLeast { limit } => {
                (ours >= limit, format!("{} (at least {})", show(ours), show(limit)))
            }
        };
        if met { Verdict::Met(shown) } else { Verdict::Missed(shown) }
    }
}

/// The targets table in Markdown: issue, target, measured value, verdict.
pub(crate) fn table(results: &[Value]) -> String {
    let mut table = String::from("| issue | target | measured | verdict |\n|---|---|---|---|\n");
    for target in TARGETS {
        let (measured, verdict) = match target.judge(results) {
            Verdict::Met(shown) => (shown, "met"),
            Verdict::Missed(shown) => (shown, "**missed**"),
            Verdict::NotMeasured(why) => (why, "not measured"),
        };
        let _ =
            writeln!(table, "| #{} | {} | {measured} | {verdict} |", target.issue, target.wording);
    }
    table
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{Rule, TARGETS, Target, Verdict, extra, median};

    #[test]
    fn every_target_names_a_figure_the_committed_results_have() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../docs/benchmarks.json"
        ))
        .expect("docs/benchmarks.json is committed");
        let document: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
        let results = document["results"].as_array().expect("a results array");
        for target in TARGETS {
            let verdict = target.judge(results);
            assert!(
                !matches!(verdict, Verdict::NotMeasured(_)),
                "target `{}` of #{} is not measured by the committed results: {verdict:?}",
                target.wording,
                target.issue
            );
        }
    }

    #[test]
    fn ratios_excesses_and_absolute_limits_are_judged_from_the_figures() {
        let results = vec![
            json!({"concern": "c", "workload": "w", "contender": "aqueduct", "median_ns": 110.0, "p99": 3.0}),
            json!({"concern": "c", "workload": "w", "contender": "peer", "median_ns": 100.0}),
        ];
        let ours = median("w", "aqueduct");
        let target = |rule| Target { issue: 1, concern: "c", ours, rule, wording: "" };
        let reference = median("w", "peer");
        assert!(matches!(
            target(Rule::RatioAtMost { reference, limit: 1.2 }).judge(&results),
            Verdict::Met(_)
        ));
        assert!(matches!(
            target(Rule::RatioAtMost { reference, limit: 1.05 }).judge(&results),
            Verdict::Missed(_)
        ));
        assert!(matches!(
            target(Rule::ExcessAtMost { reference, limit: 5.0, per: 1.0 }).judge(&results),
            Verdict::Missed(_)
        ));
        assert!(matches!(
            target(Rule::ExcessAtMost { reference, limit: 1.0, per: 10.0 }).judge(&results),
            Verdict::Met(_)
        ));
        let absolute = Target {
            issue: 1,
            concern: "c",
            ours: extra("w", "aqueduct", "p99"),
            rule: Rule::AtMost { limit: 2.0 },
            wording: "",
        };
        assert!(matches!(absolute.judge(&results), Verdict::Missed(_)));
        let missing = Target { ours: median("w", "nobody"), ..absolute };
        assert!(matches!(missing.judge(&results), Verdict::NotMeasured(_)));
    }
}
