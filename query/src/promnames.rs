//! OTLP metric and attribute names as Prometheus names, following the
//! OpenTelemetry "Prometheus and OpenMetrics compatibility" specification:
//! unit suffixes from UCUM units (`s` → `_seconds`, `By/s` →
//! `_bytes_per_second`, annotations like `{request}` dropped), `_total` on
//! monotonic sums, `_ratio` on gauges of unit `1`, and invalid characters
//! replaced by `_`. Names that are already valid Prometheus names keep their
//! spelling; only suffixes are added. The Prometheus API shows these names;
//! SQL keeps the OTLP names.

/// The OTLP metric kinds, as far as naming cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Gauge,
    /// A monotonic sum: a Prometheus counter.
    Counter,
    /// A non-monotonic sum: a Prometheus gauge.
    UpDownSum,
    Histogram,
    ExponentialHistogram,
    Summary,
}

/// UCUM units and their Prometheus base-unit words.
fn unit_word(unit: &str) -> Option<&'static str> {
    Some(match unit {
        "d" => "days",
        "h" => "hours",
        "min" => "minutes",
        "s" => "seconds",
        "ms" => "milliseconds",
        "us" => "microseconds",
        "ns" => "nanoseconds",
        "By" => "bytes",
        "KiBy" => "kibibytes",
        "MiBy" => "mebibytes",
        "GiBy" => "gibibytes",
        "TiBy" => "tibibytes",
        "KBy" => "kilobytes",
        "MBy" => "megabytes",
        "GBy" => "gigabytes",
        "TBy" => "terabytes",
        "m" => "meters",
        "V" => "volts",
        "A" => "amperes",
        "J" => "joules",
        "W" => "watts",
        "g" => "grams",
        "Cel" => "celsius",
        "Hz" => "hertz",
        "%" => "percent",
        "1" => "",
        _ => return None,
    })
}

/// The singular words of "per" units (`m/s` → `meters_per_second`).
fn per_unit_word(unit: &str) -> Option<&'static str> {
    Some(match unit {
        "s" => "second",
        "m" => "minute",
        "h" => "hour",
        "d" => "day",
        "w" => "week",
        "mo" => "month",
        "y" => "year",
        _ => return None,
    })
}

/// Whether `s` is a valid metric name under the classic rules.
pub fn is_valid_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Whether `s` is a valid label name under the classic rules.
pub fn is_valid_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The runs of ASCII letters and digits of `s`.
fn words(s: &str) -> Vec<String> {
    s.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The words of a unit part, unless it is empty or an annotation (`{...}`).
fn unit_words(part: &str, word: fn(&str) -> Option<&'static str>) -> Vec<String> {
    let part = part.trim();
    if part.is_empty() || part.contains('{') || part.contains('}') {
        return Vec::new();
    }
    words(word(part).unwrap_or(part))
}

/// Whether `needle` occurs in `tokens` as consecutive tokens.
fn contains_run(tokens: &[String], needle: &[String]) -> bool {
    !needle.is_empty() && tokens.windows(needle.len()).any(|w| w == needle)
}

/// The Prometheus name of an OTLP metric (without the `_bucket`, `_sum`,
/// `_count` of histograms and summaries, which the series add).
pub fn metric_name(name: &str, unit: &str, kind: MetricKind) -> String {
    // A valid name keeps its spelling (`a__b` stays); anything else becomes
    // its words joined by `_`.
    let mut tokens: Vec<String> = if is_valid_metric_name(name) {
        name.split('_').map(str::to_owned).collect()
    } else {
        words(name)
    };
    let (main, per) = match unit.split_once('/') {
        Some((m, p)) => (m, Some(p)),
        None => (unit, None),
    };
    let main_words = unit_words(main, unit_word);
    if !main_words.is_empty() && !contains_run(&tokens, &main_words) {
        tokens.extend(main_words);
    }
    if let Some(per) = per {
        let per_words = unit_words(per, per_unit_word);
        if !per_words.is_empty() && !contains_run(&tokens, &per_words) {
            tokens.push("per".into());
            tokens.extend(per_words);
        }
    }
    match kind {
        MetricKind::Counter => {
            tokens.retain(|t| t != "total");
            tokens.push("total".into());
        }
        MetricKind::Gauge if unit.trim() == "1" => {
            tokens.retain(|t| t != "ratio");
            tokens.push("ratio".into());
        }
        _ => {}
    }
    let joined = tokens.join("_");
    if joined.starts_with(|c: char| c.is_ascii_digit()) {
        format!("_{joined}")
    } else {
        joined
    }
}

/// The Prometheus label name of an attribute key: valid names unchanged
/// (except the reserved `__` prefix, which gets a `key` prefix), other
/// characters replaced by `_`, and a `key_` prefix before a leading digit.
pub fn label_name(key: &str) -> String {
    let mut out: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() {
        return "key_".into();
    }
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert_str(0, "key_");
    } else if out.starts_with("__") {
        out.insert_str(0, "key");
    }
    out
}

/// The labels of a data point's attributes: keys that collide once
/// sanitised have their values joined with `;`, in the order of their
/// original keys.
pub fn labels<'a>(attrs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<(String, String)> {
    let mut by_label: std::collections::BTreeMap<String, Vec<(&str, &str)>> = Default::default();
    for (k, v) in attrs {
        by_label.entry(label_name(k)).or_default().push((k, v));
    }
    by_label
        .into_iter()
        .map(|(label, mut kvs)| {
            kvs.sort_by(|a, b| a.0.cmp(b.0));
            let value = kvs.iter().map(|(_, v)| *v).collect::<Vec<_>>().join(";");
            (label, value)
        })
        .collect()
}

/// `job` and `instance` of a resource: `service.namespace/service.name`
/// (or just the name) and `service.instance.id`, each absent when empty.
pub fn job_and_instance(
    service_name: Option<&str>,
    service_namespace: Option<&str>,
    instance_id: Option<&str>,
) -> (Option<String>, Option<String>) {
    let job = match (
        service_namespace.filter(|s| !s.is_empty()),
        service_name.filter(|s| !s.is_empty()),
    ) {
        (Some(ns), Some(name)) => Some(format!("{ns}/{name}")),
        (None, Some(name)) => Some(name.to_owned()),
        _ => None,
    };
    (
        job,
        instance_id.filter(|s| !s.is_empty()).map(str::to_owned),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use MetricKind::*;

    #[test]
    fn metric_names_follow_the_compatibility_spec() {
        let cases = [
            (
                "http.server.request.duration",
                "s",
                Histogram,
                "http_server_request_duration_seconds",
            ),
            (
                "http.server.active_requests",
                "{request}",
                UpDownSum,
                "http_server_active_requests",
            ),
            (
                "system.network.io",
                "By",
                Counter,
                "system_network_io_bytes_total",
            ),
            ("requests", "1", Counter, "requests_total"),
            ("requests_total", "", Counter, "requests_total"),
            ("total_requests", "", Counter, "requests_total"),
            ("cpu.utilization", "1", Gauge, "cpu_utilization_ratio"),
            ("cpu_ratio", "1", Gauge, "cpu_ratio"),
            (
                "disk.throughput",
                "By/s",
                Gauge,
                "disk_throughput_bytes_per_second",
            ),
            (
                "packets",
                "{packets}/s",
                Counter,
                "packets_per_second_total",
            ),
            ("speed", "m/s", Gauge, "speed_meters_per_second"),
            (
                "process_cpu_seconds",
                "s",
                Counter,
                "process_cpu_seconds_total",
            ),
            ("latency", "ms", Summary, "latency_milliseconds"),
            ("temp", "Cel", Gauge, "temp_celsius"),
            ("odd unit", "widgets", Gauge, "odd_unit_widgets"),
            ("2xx.count", "", Counter, "_2xx_count_total"),
            ("a__b", "", Gauge, "a__b"),
            ("ns:metric", "", Gauge, "ns:metric"),
            ("weird-name!", "", Gauge, "weird_name"),
        ];
        for (name, unit, kind, want) in cases {
            assert_eq!(
                metric_name(name, unit, kind),
                want,
                "{name} [{unit}] {kind:?}"
            );
        }
    }

    #[test]
    fn label_names_are_sanitised_and_collisions_joined() {
        assert_eq!(label_name("http.method"), "http_method");
        assert_eq!(label_name("route"), "route");
        assert_eq!(label_name("_private"), "_private");
        assert_eq!(label_name("__reserved"), "key__reserved");
        assert_eq!(label_name("0day"), "key_0day");
        assert_eq!(label_name(""), "key_");
        assert_eq!(
            labels([("a.b", "1"), ("a_b", "2"), ("c", "3")]),
            vec![("a_b".into(), "1;2".into()), ("c".into(), "3".into())]
        );
        assert!(is_valid_label_name("le") && !is_valid_label_name("a.b"));
        assert!(is_valid_metric_name("a:b_c") && !is_valid_metric_name("1a"));
    }

    #[test]
    fn job_and_instance_come_from_the_service() {
        assert_eq!(
            job_and_instance(Some("api"), Some("shop"), Some("i-1")),
            (Some("shop/api".into()), Some("i-1".into()))
        );
        assert_eq!(
            job_and_instance(Some("api"), None, None),
            (Some("api".into()), None)
        );
        assert_eq!(job_and_instance(None, Some("shop"), Some("")), (None, None));
    }
}
