//! prometheus-client writes OpenMetrics text; Prometheus' own text format 0.0.4 differs in
//! three ways that matter to `promtool` and older scrapers: a counter family is named with
//! its `_total` suffix, there are no `# UNIT` lines, and there is no `# EOF` terminator.

/// Rewrites OpenMetrics text from prometheus-client into Prometheus text format 0.0.4.
pub(crate) fn openmetrics_to_prometheus(om: &str) -> String {
    let mut out = String::with_capacity(om.len() + 256);
    let mut help: Option<&str> = None;
    for line in om.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        if line.starts_with("# HELP ") {
            // Held back until the TYPE line says whether the family is a counter.
            if let Some(h) = help.replace(line) {
                push(&mut out, h);
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
            let rename = kind == "counter" && !name.ends_with("_total");
            if let Some(h) = help.take() {
                if rename {
                    let text = h.strip_prefix("# HELP ").and_then(|t| t.strip_prefix(name));
                    out.push_str(&format!("# HELP {name}_total{}\n", text.unwrap_or("")));
                } else {
                    push(&mut out, h);
                }
            }
            if rename {
                out.push_str(&format!("# TYPE {name}_total counter\n"));
            } else {
                push(&mut out, line);
            }
            continue;
        }
        if let Some(h) = help.take() {
            push(&mut out, h);
        }
        push(&mut out, line);
    }
    if let Some(h) = help {
        push(&mut out, h);
    }
    out
}

fn push(out: &mut String, line: &str) {
    out.push_str(line);
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renames_counters_and_drops_openmetrics_only_lines() {
        let om = "# HELP a_requests Requests.\n# TYPE a_requests counter\na_requests_total 1\n\
                  # HELP a_lat Latency.\n# TYPE a_lat_seconds histogram\n# UNIT a_lat_seconds seconds\n\
                  a_lat_seconds_count 0\n# EOF\n";
        let text = openmetrics_to_prometheus(om);
        assert_eq!(
            text,
            "# HELP a_requests_total Requests.\n# TYPE a_requests_total counter\na_requests_total 1\n\
             # HELP a_lat Latency.\n# TYPE a_lat_seconds histogram\na_lat_seconds_count 0\n"
        );
    }
}
