use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use godel_guard::audit_tool::{self, KeyArgs};
use godel_guard::cli::{AuditCommand, Cli, Command, LogFormat, ServeArgs};
use godel_guard::{config, server};

fn main() -> ExitCode {
    // One TLS crypto provider for the whole process (KMS, Secret Manager), chosen here
    // rather than left to whichever dependency asks first.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cli = Cli::parse();
    let result = match cli.command {
        None => serve(cli.serve),
        Some(Command::Serve(args)) => serve(args),
        Some(Command::Audit(command)) => audit(command),
        Some(Command::CheckConfig { file }) => config::load(Some(&file))
            .map_err(|e| e.to_string())
            .and_then(|c| server::build_check(&c).map_err(|e| e.to_string())),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("godel-guard: {message}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Runtime::new().map_err(|e| format!("cannot start the async runtime: {e}"))
}

fn audit(command: AuditCommand) -> Result<(), String> {
    let runtime = runtime()?;
    match command {
        AuditCommand::Decrypt { key_files, kms_ciphertext_files, kms } => {
            let args = KeyArgs { key_files, kms_ciphertext_files, kms_region: kms.region, kms_endpoint: kms.endpoint };
            let ring = runtime.block_on(audit_tool::keyring(&args)).map_err(|e| e.to_string())?;
            audit_tool::decrypt(&ring, std::io::stdin().lock(), std::io::stdout().lock()).map_err(|e| e.to_string())
        }
        AuditCommand::NewDataKey { kms_key_id, kms } => {
            let line = runtime
                .block_on(audit_tool::new_data_key(&kms_key_id, kms.region.as_deref(), kms.endpoint.as_deref()))
                .map_err(|e| e.to_string())?;
            println!("{line}");
            Ok(())
        }
    }
}

fn serve(args: ServeArgs) -> Result<(), String> {
    let json = match args.log_format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => args.production,
    };
    // The config first: its telemetry section says whether traces are exported.
    let config = config::load(args.config.as_deref()).map_err(|e| e.to_string())?;
    let settings = godel_telemetry::Settings { service: "godel-guard", json, telemetry: config.telemetry.as_ref() };
    let telemetry = godel_telemetry::init(&settings).map_err(|e| e.to_string())?;
    let options = server::Options {
        listen: args.listen,
        production: args.production,
        drain_delay: Duration::from_millis(args.drain_delay_ms.unwrap_or(if args.production { 5000 } else { 0 })),
        shutdown_timeout: Duration::from_millis(args.shutdown_timeout_ms),
        fleet_size: args.fleet_size,
        header_timeout: Duration::from_millis(args.header_timeout_ms),
        idle_timeout: Duration::from_millis(args.idle_timeout_ms),
        body_timeout: Duration::from_millis(args.body_timeout_ms),
        min_body_rate: args.min_body_rate,
        max_connections: usize::try_from(args.max_connections).unwrap_or(usize::MAX),
    };
    let result = runtime()?.block_on(server::run(options, &config, server::shutdown_signal())).map_err(|e| {
        tracing::error!(error = %e, "guard stopped");
        e.to_string()
    });
    telemetry.shutdown();
    result
}
