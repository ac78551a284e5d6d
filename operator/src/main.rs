use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use godel_operator::context::Context;
use godel_operator::leader::LeaderElector;
use godel_operator::metrics::Metrics;
use godel_operator::{controller, http};
use kube::{Api, Client};

#[derive(Parser)]
#[command(name = "godel-operator", version, about = "Reconciles GuardrailPolicy resources into guard fleets")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, global = true, env = "GODEL_OPERATOR_LISTEN", default_value = "0.0.0.0:8081")]
    listen: SocketAddr,
    /// Namespace of the leader-election Lease (the operator's own).
    #[arg(long, global = true, env = "POD_NAMESPACE", default_value = "godel-system")]
    namespace: String,
    /// This replica's identity in the Lease.
    #[arg(long, global = true, env = "POD_NAME")]
    identity: Option<String>,
    #[arg(long, global = true, default_value = "godel-operator-leader")]
    lease_name: String,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controller (the default).
    Run,
    /// Print the GuardrailPolicy CustomResourceDefinition as YAML.
    Crd,
    /// Print, as a YAML stream, the objects the operator would apply for a policy file
    /// (with the PrometheusRule and ServiceMonitor), after the same validation.
    Render {
        /// A GuardrailPolicy manifest (YAML or JSON).
        file: std::path::PathBuf,
    },
}

fn render(file: &std::path::Path) -> Result<String, String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let value: serde_json::Value = serde_yaml::from_str(&text).map_err(|e| format!("{}: {e}", file.display()))?;
    let mut policy: godel_crds::GuardrailPolicy =
        serde_json::from_value(value).map_err(|e| format!("{}: not a GuardrailPolicy: {e}", file.display()))?;
    policy.metadata.namespace.get_or_insert_with(|| "default".into());
    godel_operator::validate::spec(&policy)
        .map_err(|invalid| format!("{}: {}", invalid.reason.as_str(), invalid.message))?;
    let plan = godel_operator::resources::plan(&policy, "none", true).map_err(|e| e.to_string())?;
    let mut out = String::new();
    for object in plan.manifests() {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&object).map_err(|e| e.to_string())?);
    }
    Ok(out)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        Some(Command::Crd) => {
            print!("{}", godel_crds::crd_yaml());
            return ExitCode::SUCCESS;
        }
        Some(Command::Render { file }) => {
            return match render(file) {
                Ok(text) => {
                    print!("{text}");
                    ExitCode::SUCCESS
                }
                Err(message) => {
                    eprintln!("godel-operator: {message}");
                    ExitCode::FAILURE
                }
            };
        }
        Some(Command::Run) | None => {}
    }
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    // Reconcile spans are exported when OTEL_EXPORTER_OTLP_ENDPOINT is set.
    let settings = godel_telemetry::Settings { service: "godel-operator", json: true, telemetry: None };
    let telemetry = match godel_telemetry::init(&settings) {
        Ok(telemetry) => telemetry,
        Err(e) => {
            eprintln!("godel-operator: {e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("godel-operator: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            tracing::error!(%message, "operator stopped");
            ExitCode::FAILURE
        }
    };
    telemetry.shutdown();
    code
}

async fn run(cli: Cli) -> Result<(), String> {
    let client = Client::try_default().await.map_err(|e| format!("no Kubernetes client configuration: {e}"))?;
    let metrics = Metrics::default();
    let server = tokio::spawn(http::serve(cli.listen, metrics.clone()));
    let identity = cli.identity.unwrap_or_else(|| format!("godel-operator-{}", std::process::id()));
    let elector = LeaderElector::new(
        Api::namespaced(client.clone(), &cli.namespace),
        cli.lease_name,
        identity,
        Duration::from_secs(15),
    );
    let (leading_tx, mut leading_rx) = tokio::sync::watch::channel(false);
    let leader_metrics = metrics.clone();
    let campaign = async {
        elector
            .lead(|held| {
                leader_metrics.leader.set(i64::from(held));
                let _ = leading_tx.send(held);
            })
            .await;
    };
    let ctx = Arc::new(Context::new(client.clone(), metrics));
    let work = async {
        if leading_rx.wait_for(|held| *held).await.is_err() {
            return;
        }
        controller::run(client, ctx).await;
    };
    tokio::select! {
        () = campaign => Err("lost the leader Lease; exiting so a fresh replica can campaign".into()),
        () = work => Ok(()),
        result = server => Err(format!("metrics server stopped: {result:?}")),
    }
}
