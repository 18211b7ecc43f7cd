//! Integration suite with real clients nobody here wrote: Prometheus 2.x (Debian
//! stable, installed by scripts/test.sh) and 3.x, vmagent, vmctl and VictoriaMetrics
//! (Debian unstable, extracted by scripts/fetch-clients.sh; see harness::clients).
//! Prometheus A scrapes and remote-writes through the connector; Prometheus B reads
//! everything back through remote read; both must give bit-identical PromQL answers,
//! with 2.x (SAMPLES) and 3.x (STREAMED_XOR_CHUNKS). vmagent must lose nothing across
//! its zstd→snappy fallback; vmctl must import exactly what is stored. Plus
//! `read_recent`/`required_matchers`, durability across a connector SIGKILL and a
//! throttling backend, and promtool checks of every documented prometheus.yml.
//!
//! A test whose client binary is missing fails in CI (`CI` set) and otherwise skips,
//! saying so loudly on stderr.

mod harness;

mod configs;
mod durability;
mod native_histograms;
mod promql;
mod read_options;
mod rw2;
mod sigv4;
mod staleness;
mod vmagent;
mod vmctl;
