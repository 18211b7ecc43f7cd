//! Integration suite with real Prometheus processes (Debian's `prometheus` package,
//! installed by scripts/test.sh): Prometheus A scrapes and remote-writes through the
//! connector; Prometheus B reads everything back through remote read; both must give
//! bit-identical PromQL answers. Plus durability across a connector SIGKILL and a
//! throttling backend, and a promtool check of every documented prometheus.yml.

mod harness;

mod configs;
mod durability;
mod promql;
mod staleness;
