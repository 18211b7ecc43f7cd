//! Binary entry point: parse and validate the command line (exit 1 with a message naming
//! the flag on any error, like the upstream), set up logging, run the server.

use std::process::ExitCode;

use clap::error::ErrorKind;
use timestream_prometheus_connector::config::{CliError, Config};
use timestream_prometheus_connector::{server, telemetry};

// Every request allocates many small, short-lived buffers (decoded batches, SDK records,
// JSON bodies): mimalloc's thread-local free lists cost a fraction of glibc malloc's locking
// and consolidation, which took about a fifth of the CPU under load (issue 7 profile).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // Inside AWS Lambda there is no command line: configuration comes from the environment.
    if timestream_prometheus_connector::lambda::detected() {
        return timestream_prometheus_connector::lambda::main();
    }
    let config = match Config::from_args(std::env::args_os()) {
        Ok(c) => c,
        Err(CliError::Parse(e))
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) =>
        {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(CliError::Parse(e)) => {
            let _ = e.print();
            return ExitCode::from(1);
        }
        Err(CliError::Invalid(e)) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    telemetry::init(&config.log);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(server::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "startup failed");
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
