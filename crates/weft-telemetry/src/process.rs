//! Process metrics read from `/proc/self` on each scrape: resident memory, CPU time, open file
//! descriptors and threads, with the names the Prometheus client libraries use
//! (`process_resident_memory_bytes`, `process_cpu_seconds_total`, ...), under `weft_`.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Registry, Unit};

/// Linux reports CPU time in clock ticks; 100 per second on every mainstream architecture
/// (`getconf CLK_TCK`), and reading sysconf would need `libc` for this one number.
const TICKS_PER_SECOND: f64 = 100.0;
/// `/proc/self/stat` reports RSS in pages; 4 KiB pages on x86_64 and default arm64 kernels.
const PAGE_BYTES: i64 = 4096;

pub(crate) fn register(registry: &mut Registry) {
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    registry.register_collector(Box::new(ProcessCollector { started }));
}

#[derive(Debug)]
struct ProcessCollector {
    /// When the metrics registry was made, seconds since the Unix epoch: the process's start
    /// as far as a scraper can tell (after `weft proxy --upgrade` the same admin address
    /// answers with a later value).
    started: f64,
}

struct Sample {
    cpu_seconds: f64,
    rss_bytes: i64,
    threads: i64,
    open_fds: i64,
}

impl Sample {
    /// Reads `/proc/self`; `None` off Linux or if the file has an unexpected shape.
    fn read() -> Option<Sample> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // Fields after the command name, which is in parentheses and may contain spaces.
        let rest = stat.get(stat.rfind(')')? + 2..)?;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // Field numbers from proc(5), minus the first two (pid, comm).
        let utime: f64 = fields.get(11)?.parse().ok()?;
        let stime: f64 = fields.get(12)?.parse().ok()?;
        let threads: i64 = fields.get(17)?.parse().ok()?;
        let rss_pages: i64 = fields.get(21)?.parse().ok()?;
        let open_fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as i64);
        Some(Sample {
            cpu_seconds: (utime + stime) / TICKS_PER_SECOND,
            rss_bytes: rss_pages * PAGE_BYTES,
            threads,
            open_fds,
        })
    }
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let Some(s) = Sample::read() else {
            return Ok(());
        };
        let cpu = ConstCounter::new(s.cpu_seconds);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu",
            "User and system CPU time spent",
            Some(&Unit::Seconds),
            cpu.metric_type(),
        )?)?;
        let gauges = [
            (
                "process_resident_memory",
                "Resident memory size",
                Some(Unit::Bytes),
                s.rss_bytes,
            ),
            (
                "process_open_fds",
                "Open file descriptors",
                None,
                s.open_fds,
            ),
            ("process_threads", "OS threads", None, s.threads),
        ];
        // Tasks alive in the runtime that serves the scrape (the proxy's own): a leak of
        // connections, streams or timers shows as a count that only grows.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let tasks = ConstGauge::new(runtime.metrics().num_alive_tasks() as i64);
            tasks.encode(encoder.encode_descriptor(
                "runtime_alive_tasks",
                "Tokio tasks alive in the proxy's runtime",
                None,
                tasks.metric_type(),
            )?)?;
        }
        let started = ConstGauge::new(self.started);
        started.encode(encoder.encode_descriptor(
            "process_start_time",
            "When the process started, since the Unix epoch",
            Some(&Unit::Seconds),
            started.metric_type(),
        )?)?;
        for (name, help, unit, value) in gauges {
            let gauge = ConstGauge::new(value);
            gauge.encode(encoder.encode_descriptor(
                name,
                help,
                unit.as_ref(),
                gauge.metric_type(),
            )?)?;
        }
        Ok(())
    }
}
