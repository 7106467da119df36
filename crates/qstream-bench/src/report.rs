//! Figures from every round, their medians, the ratios between stacks, and how they are shown:
//! a table for people and JSON for tools.

use serde_json::{Value, json};

/// One figure of one run.
#[derive(Clone, Debug)]
pub(crate) struct Measure {
    /// The scenario and its parameters, e.g. `churn c=100`.
    pub(crate) scenario: String,
    /// What was measured, e.g. `throughput`.
    pub(crate) metric: &'static str,
    /// Its unit, e.g. `MB/s`.
    pub(crate) unit: &'static str,
    /// Whether a larger value is the better one.
    pub(crate) higher_is_better: bool,
    /// The value, if this stack and platform can produce it.
    pub(crate) value: Option<f64>,
}

impl Measure {
    /// A figure where more is better.
    pub(crate) fn higher(
        scenario: &str,
        metric: &'static str,
        unit: &'static str,
        value: Option<f64>,
    ) -> Self {
        Self {
            scenario: scenario.to_owned(),
            metric,
            unit,
            higher_is_better: true,
            value,
        }
    }

    /// A figure where less is better.
    pub(crate) fn lower(
        scenario: &str,
        metric: &'static str,
        unit: &'static str,
        value: Option<f64>,
    ) -> Self {
        Self {
            higher_is_better: false,
            ..Self::higher(scenario, metric, unit, value)
        }
    }
}

/// Every figure of one (scenario, metric) row, by stack, over the rounds.
struct Row {
    scenario: String,
    metric: &'static str,
    unit: &'static str,
    higher_is_better: bool,
    samples: Vec<Vec<f64>>,
}

/// All figures of a benchmark, by stack.
pub(crate) struct Report {
    stacks: Vec<&'static str>,
    /// The ratios shown: (numerator, denominator) columns.
    ratios: Vec<(usize, usize)>,
    rows: Vec<Row>,
    failures: Vec<String>,
}

fn median(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

impl Report {
    /// An empty report over `stacks`; the first is the one the ratios are about: its figure
    /// over each other's.
    pub(crate) fn new(stacks: Vec<&'static str>) -> Self {
        let ratios = (1..stacks.len()).map(|other| (0, other)).collect();
        Self {
            stacks,
            ratios,
            rows: Vec::new(),
            failures: Vec::new(),
        }
    }

    /// An empty report over `stacks` whose ratios are every other stack's figure over that of
    /// `reference`.
    pub(crate) fn against(stacks: Vec<&'static str>, reference: &str) -> Self {
        let reference = stacks
            .iter()
            .position(|s| *s == reference)
            .expect("the reference is one of the stacks");
        let ratios = (0..stacks.len())
            .filter(|&s| s != reference)
            .map(|s| (s, reference))
            .collect();
        Self {
            ratios,
            ..Self::new(stacks)
        }
    }

    /// Whether the report has figures or failures.
    pub(crate) fn is_empty(&self) -> bool {
        self.rows.is_empty() && self.failures.is_empty()
    }

    /// The ratios' names, `numerator/denominator`.
    fn ratio_names(&self) -> Vec<String> {
        self.ratios
            .iter()
            .map(|&(n, d)| format!("{}/{}", self.stacks[n], self.stacks[d]))
            .collect()
    }

    /// Adds the figures of one run of `stack`.
    pub(crate) fn add(&mut self, stack: &str, measures: Vec<Measure>) {
        let column = self
            .stacks
            .iter()
            .position(|s| *s == stack)
            .expect("a known stack");
        for measure in measures {
            let index = match self
                .rows
                .iter()
                .position(|r| r.scenario == measure.scenario && r.metric == measure.metric)
            {
                Some(index) => index,
                None => {
                    self.rows.push(Row {
                        scenario: measure.scenario.clone(),
                        metric: measure.metric,
                        unit: measure.unit,
                        higher_is_better: measure.higher_is_better,
                        samples: vec![Vec::new(); self.stacks.len()],
                    });
                    self.rows.len() - 1
                }
            };
            if let Some(value) = measure.value {
                self.rows[index].samples[column].push(value);
            }
        }
    }

    /// Records that a run failed.
    pub(crate) fn fail(&mut self, failure: String) {
        self.failures.push(failure);
    }

    /// The runs that failed.
    pub(crate) fn failures(&self) -> &[String] {
        &self.failures
    }

    /// The medians of a row, by stack.
    fn medians(row: &Row) -> Vec<Option<f64>> {
        row.samples.iter().map(|s| median(s)).collect()
    }

    /// The ratios of the row's medians; none where either is missing or not finite (a run
    /// that did not finish).
    fn ratios(&self, row: &Row) -> Vec<Option<f64>> {
        let medians = Self::medians(row);
        self.ratios
            .iter()
            .map(|&(n, d)| {
                let (ours, theirs) = (medians[n]?, medians[d]?);
                let ratio = ours / theirs;
                (theirs != 0.0 && ratio.is_finite()).then_some(ratio)
            })
            .collect()
    }

    /// The table: one row per figure, medians per stack, then the ratios.
    pub(crate) fn table(&self) -> String {
        let mut header = vec!["scenario".to_owned(), "metric".to_owned()];
        header.extend(self.stacks.iter().map(|s| s.to_string()));
        header.extend(self.ratio_names());
        let mut lines = vec![header];
        for row in &self.rows {
            let better = if row.higher_is_better { "↑" } else { "↓" };
            let unit = if row.unit.is_empty() {
                String::new()
            } else {
                format!(" ({})", row.unit)
            };
            let mut line = vec![
                row.scenario.clone(),
                format!("{}{unit} {better}", row.metric),
            ];
            line.extend(Self::medians(row).into_iter().map(|m| number(m, 1)));
            line.extend(self.ratios(row).into_iter().map(|r| match r {
                Some(r) => format!("{r:.2}×"),
                None => "–".to_owned(),
            }));
            lines.push(line);
        }
        let columns = lines[0].len();
        let widths: Vec<usize> = (0..columns)
            .map(|c| {
                lines
                    .iter()
                    .map(|l| l[c].chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for (i, line) in lines.iter().enumerate() {
            let cells: Vec<String> = line
                .iter()
                .zip(&widths)
                .enumerate()
                .map(|(c, (cell, width))| {
                    let pad = width - cell.chars().count();
                    if c < 2 {
                        format!("{cell}{}", " ".repeat(pad))
                    } else {
                        format!("{}{cell}", " ".repeat(pad))
                    }
                })
                .collect();
            out.push_str(&format!("| {} |\n", cells.join(" | ")));
            if i == 0 {
                let rule: Vec<String> = widths
                    .iter()
                    .enumerate()
                    .map(|(c, w)| {
                        if c < 2 {
                            "-".repeat(*w)
                        } else {
                            format!("{}:", "-".repeat(w - 1))
                        }
                    })
                    .collect();
                out.push_str(&format!("| {} |\n", rule.join(" | ")));
            }
        }
        out
    }

    /// The report as JSON: every sample, the medians and the ratios, with `context`.
    pub(crate) fn json(&self, context: Value) -> Value {
        let rows: Vec<Value> = self
            .rows
            .iter()
            .map(|row| {
                let medians = Self::medians(row);
                let ratios = self.ratios(row);
                json!({
                    "scenario": row.scenario,
                    "metric": row.metric,
                    "unit": row.unit,
                    "higher_is_better": row.higher_is_better,
                    "samples": self.stacks.iter().zip(&row.samples)
                        .map(|(s, v)| (s.to_string(), json!(v)))
                        .collect::<serde_json::Map<_, _>>(),
                    "median": self.stacks.iter().zip(&medians)
                        .map(|(s, m)| (s.to_string(), json!(m)))
                        .collect::<serde_json::Map<_, _>>(),
                    "ratio": self.ratio_names().into_iter().zip(&ratios)
                        .map(|(name, r)| (name, json!(r)))
                        .collect::<serde_json::Map<_, _>>(),
                })
            })
            .collect();
        json!({ "context": context, "results": rows, "failures": self.failures })
    }
}

/// A figure with `decimals` places below 100 and none above, or a dash when absent.
fn number(value: Option<f64>, decimals: usize) -> String {
    match value {
        None => "–".to_owned(),
        Some(v) if v.is_infinite() => "∞".to_owned(),
        Some(v) if v.abs() >= 100.0 => format!("{v:.0}"),
        Some(v) if v.abs() >= 10.0 => format!("{v:.decimals$}"),
        Some(v) => format!("{v:.3}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_ratios_follow_the_samples() {
        let mut report = Report::new(vec!["a", "b"]);
        for (a, b) in [(10.0, 5.0), (30.0, 5.0), (20.0, 10.0)] {
            report.add("a", vec![Measure::higher("s", "m", "u", Some(a))]);
            report.add("b", vec![Measure::higher("s", "m", "u", Some(b))]);
        }
        let row = &report.rows[0];
        assert_eq!(Report::medians(row), vec![Some(20.0), Some(5.0)]);
        assert_eq!(report.ratios(row), vec![Some(4.0)]);
        assert!(report.table().contains("4.00×"));
        assert_eq!(median(&[1.0, 2.0, 3.0, 4.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn ratios_against_a_reference_skip_runs_that_did_not_finish() {
        let mut report = Report::against(vec!["a", "b", "ref"], "ref");
        report.add("a", vec![Measure::lower("s", "time", "s", Some(1.0))]);
        report.add(
            "b",
            vec![Measure::lower("s", "time", "s", Some(f64::INFINITY))],
        );
        report.add("ref", vec![Measure::lower("s", "time", "s", Some(2.0))]);
        let row = &report.rows[0];
        assert_eq!(report.ratios(row), vec![Some(0.5), None]);
        let table = report.table();
        assert!(
            table.contains("a/ref") && table.contains("b/ref"),
            "{table}"
        );
        assert!(table.contains("∞") && table.contains("0.50×"), "{table}");
    }
}
