//! `timestream-local` binary: serves the Timestream write and query APIs from a SQLite store.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use timestream_local::{FaultOptions, Options, Server};

// Parsing WriteRecords bodies allocates a few strings per record: glibc malloc/free were half
// of the server's CPU in the load benchmark.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const AFTER_HELP: &str = "\
Both the write and the query API are served on the same listener (POST /, awsJson1_0,
X-Amz-Target: Timestream_20181101.<Operation>). Point the AWS SDKs or the AWS CLI at it with an
endpoint override, e.g.
  aws timestream-write create-database --database-name example_db \\
      --endpoint-url http://127.0.0.1:8787 --region us-east-1
DescribeEndpoints answers with this server's own host:port (as the client addressed it). The AWS
CLI/boto3 get it as `http://host:port` because botocore would otherwise switch to https; so
AWS_ENDPOINT_URL=http://127.0.0.1:8787 (which makes the CLI discover endpoints) works too.

CREDENTIALS FILE (--credentials-file)
  One key per line: `ACCESS_KEY_ID SECRET_ACCESS_KEY [token=SESSION_TOKEN]
  [actions=ACTION,...] [resources=ARN,...] [policy=FILE]`; blank lines and lines starting with #
  are ignored. With this file every request must carry a valid SigV4 signature (service
  `timestream`, any region) made with one of these keys; an unknown key is answered with
  UnrecognizedClientException, a wrong signature with InvalidSignatureException. `token=`: the
  requests must carry this session token (signed X-Amz-Security-Token). `actions=`/`resources=`
  (one Allow statement) or `policy=` (an IAM policy JSON file) limit what the key may do; an
  action outside them is refused with AccessDeniedException (HTTP 400) as by Timestream. Keys
  without them may do everything. Without the file, any credentials are accepted.

FAULT INJECTION ADMIN ENDPOINT (served to loopback clients only)
  GET    /_local/faults   current settings as JSON (counts show what is left)
  POST   /_local/faults   replace the settings, JSON body with any of:
           {\"latency_ms\": 0, \"throttle_rate\": 0.0, \"internal_error_rate\": 0.0,
            \"throttle_count\": 0, \"internal_error_count\": 0,
            \"operations\": [\"WriteRecords\", \"Query\"]}
         (missing fields = 0 / none; empty operations = WriteRecords and Query; \"*\" = all)
  DELETE /_local/faults   remove all faults
  Example: curl -X POST http://127.0.0.1:8787/_local/faults -d '{\"throttle_count\": 3}'";

/// A local server speaking the Amazon Timestream for LiveAnalytics write and query APIs.
#[derive(Parser, Debug)]
#[command(name = "timestream-local", version, after_help = AFTER_HELP)]
struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8787")]
    listen_address: SocketAddr,
    /// Directory holding the SQLite database (created if missing; data survives restarts).
    #[arg(long)]
    data_dir: PathBuf,
    /// Memory-store retention (hours) of tables created without RetentionProperties. Records
    /// older than a table's memory retention are rejected, as by Timestream.
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(i64).range(1..=8766))]
    default_memory_retention_hours: i64,
    /// File of accepted keys (`ACCESS_KEY_ID SECRET_ACCESS_KEY [fields]` per line, see below);
    /// enables SigV4 verification and, for keys naming actions, permission checks.
    #[arg(long)]
    credentials_file: Option<PathBuf>,
    /// Extra latency added to each affected call (WriteRecords and Query by default).
    #[arg(long, default_value_t = 0)]
    fault_latency_ms: u64,
    /// Share (0..1) of affected calls answered with ThrottlingException.
    #[arg(long, default_value_t = 0.0)]
    fault_throttle_rate: f64,
    /// Share (0..1) of affected calls answered with InternalServerException.
    #[arg(long, default_value_t = 0.0)]
    fault_internal_error_rate: f64,
    /// The first N affected calls are answered with ThrottlingException.
    #[arg(long, default_value_t = 0)]
    fault_throttle_count: u64,
    /// The next N affected calls are answered with InternalServerException.
    #[arg(long, default_value_t = 0)]
    fault_internal_error_count: u64,
    /// Operations affected by faults (comma separated; `*` = all). Default: WriteRecords,Query.
    #[arg(long, value_delimiter = ',')]
    fault_operations: Vec<String>,
    /// Validate WriteRecords calls and answer them as stored, but keep nothing (queries see
    /// no new rows). For measuring a client's own cost, e.g. the connector's load benchmark.
    #[arg(long)]
    discard_writes: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let a = Args::parse();
    let opts = Options {
        listen_address: a.listen_address,
        data_dir: a.data_dir,
        default_memory_retention_hours: a.default_memory_retention_hours,
        credentials_file: a.credentials_file,
        faults: FaultOptions {
            latency_ms: a.fault_latency_ms,
            throttle_rate: a.fault_throttle_rate,
            internal_error_rate: a.fault_internal_error_rate,
            throttle_count: a.fault_throttle_count,
            internal_error_count: a.fault_internal_error_count,
            operations: a.fault_operations,
        },
        discard_writes: a.discard_writes,
    };
    let server = Server::start(opts).await?;
    println!("timestream-local listening on {}", server.url());
    shutdown_signal().await;
    tracing::info!("shutting down");
    server.shutdown().await;
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
