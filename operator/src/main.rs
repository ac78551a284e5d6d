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
    #[arg(long, env = "GODEL_OPERATOR_LISTEN", default_value = "0.0.0.0:8081")]
    listen: SocketAddr,
    /// Namespace of the leader-election Lease (the operator's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "godel-system")]
    namespace: String,
    /// This replica's identity in the Lease.
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    #[arg(long, default_value = "godel-operator-leader")]
    lease_name: String,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controller (the default).
    Run,
    /// Print the GuardrailPolicy CustomResourceDefinition as YAML.
    Crd,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Crd) = cli.command {
        print!("{}", godel_crds::crd_yaml());
        return ExitCode::SUCCESS;
    }
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("godel-operator: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            tracing::error!(%message, "operator stopped");
            ExitCode::FAILURE
        }
    }
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
