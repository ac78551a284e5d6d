use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use godel_guard::cli::{AuditCommand, Cli, Command, LogFormat, ServeArgs};
use godel_guard::{audit_tool, config, server};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        None => serve(cli.serve),
        Some(Command::Serve(args)) => serve(args),
        Some(Command::Audit(AuditCommand::Decrypt { key_files })) => {
            audit_tool::decrypt(&key_files, std::io::stdin().lock(), std::io::stdout().lock())
                .map_err(|e| e.to_string())
        }
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

fn serve(args: ServeArgs) -> Result<(), String> {
    let json = match args.log_format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => args.production,
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if json {
        logs.json().flatten_event(true).init();
    } else {
        logs.init();
    }
    let options = server::Options {
        listen: args.listen,
        config: args.config,
        production: args.production,
        drain_delay: Duration::from_millis(args.drain_delay_ms.unwrap_or(if args.production { 5000 } else { 0 })),
        shutdown_timeout: Duration::from_millis(args.shutdown_timeout_ms),
    };
    let runtime = tokio::runtime::Runtime::new().map_err(|e| format!("cannot start the async runtime: {e}"))?;
    runtime.block_on(server::run(options, server::shutdown_signal())).map_err(|e| {
        tracing::error!(error = %e, "guard stopped");
        e.to_string()
    })
}
