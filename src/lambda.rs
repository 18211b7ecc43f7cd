//! AWS Lambda mode: the same axum router as the standalone server, fed by API Gateway
//! events (REST API v1 and HTTP API v2 payloads) through lambda_http.
//!
//! Detected like the upstream (`LAMBDA_TASK_ROOT` non-empty), or by `AWS_LAMBDA_RUNTIME_API`,
//! which the Lambda runtime always sets. Configuration comes from the upstream's snake_case
//! environment variables (`env`). A missing or invalid variable does not stop the function:
//! it starts and answers every request with 400 naming the variable, because a function that
//! exits at init is restarted on every invocation and its callers only ever see 502s.
//! Request bodies arrive base64-decoded from lambda_http; response bodies are buffered and
//! sent back base64-encoded when binary (`service`).

pub mod env;
pub mod service;

use std::convert::Infallible;
use std::process::ExitCode;

use crate::config::Config;
use crate::{app, server, telemetry};

/// Variables the Lambda runtime client needs (it panics without them); checked up front so a
/// run outside Lambda with `LAMBDA_TASK_ROOT` set gets a message instead.
const RUNTIME_VARIABLES: &[&str] = &[
    "AWS_LAMBDA_RUNTIME_API",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_VERSION",
];

fn non_empty(name: &str) -> bool {
    std::env::var_os(name).is_some_and(|v| !v.is_empty())
}

/// Whether this process runs inside AWS Lambda.
pub fn detected() -> bool {
    non_empty("LAMBDA_TASK_ROOT") || non_empty("AWS_LAMBDA_RUNTIME_API")
}

fn getenv(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Entry point of the binary in Lambda mode; the command line is ignored.
pub fn main() -> ExitCode {
    telemetry::init(&env::log_config_from_env(getenv));
    let missing: Vec<&str> = RUNTIME_VARIABLES
        .iter()
        .copied()
        .filter(|v| !non_empty(v))
        .collect();
    if !missing.is_empty() {
        eprintln!(
            "error: Lambda mode (LAMBDA_TASK_ROOT or AWS_LAMBDA_RUNTIME_API is set) needs the \
             Lambda runtime's variables, missing: {}; unset LAMBDA_TASK_ROOT and \
             AWS_LAMBDA_RUNTIME_API to run the standalone server",
            missing.join(", ")
        );
        return ExitCode::from(1);
    }
    if getenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE").is_some_and(|v| v.parse::<i32>().is_err()) {
        eprintln!("error: AWS_LAMBDA_FUNCTION_MEMORY_SIZE must be an integer");
        return ExitCode::from(1);
    }
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
    match rt.block_on(run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "Lambda runtime stopped");
            eprintln!("error: Lambda runtime stopped: {e}");
            ExitCode::from(1)
        }
    }
}

/// Builds the router from the environment and serves events until the runtime stops.
pub async fn run() -> Result<(), lambda_http::Error> {
    let router = match Config::from_lambda_env(getenv) {
        Ok(config) => {
            tracing::info!(
                database = %config.destination.default_database,
                table = %config.destination.default_table,
                sigv4_auth = config.sigv4_auth,
                region = %config.region,
                "Lambda function configured"
            );
            match server::Runtime::build(config).await {
                Ok(runtime) => service::dispatching_router(app(runtime.state)),
                Err(e) => {
                    tracing::error!(error = format!("{e:#}"), "startup failed");
                    service::misconfigured_router(format!("the function cannot start: {e:#}"))
                }
            }
        }
        Err(e) => {
            tracing::error!(variable = e.variable, error = %e,
                "misconfigured; every request will be answered with 400 until it is fixed");
            service::misconfigured_router(e.to_string())
        }
    };
    lambda_http::run(lambda_http::service_fn(move |req| {
        let router = router.clone();
        async move { Ok::<_, Infallible>(service::handle(router, req).await) }
    }))
    .await
}
