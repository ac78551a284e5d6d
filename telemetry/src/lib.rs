//! Logs and traces, set up once per process for the guard and the operator.
//!
//! Logs go to stderr through an `EnvFilter` (`RUST_LOG`, `info` by default), as before.
//! Traces are off unless an OTLP endpoint is configured (the policy's
//! `telemetry.otlpEndpoint`, or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` /
//! `OTEL_EXPORTER_OTLP_ENDPOINT`). Off, the subscriber is the log layer alone with a
//! global filter, and the spans meant for traces (`debug` spans) cost a level check. On,
//! the log layer keeps its filter as a per-layer one beside a second layer, with its own
//! filter, that turns the project's spans into OpenTelemetry spans; a batch processor
//! exports them over OTLP/HTTP from a thread of its own. The logs read the same either way.

use std::sync::atomic::{AtomicBool, Ordering};

use godel_config::TelemetryConfig;
use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{SpanExporter, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing::Level;
use tracing_subscriber::filter::{EnvFilter, filter_fn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

/// Set once traces are exported: the guard adds its per-request server span only then.
static EXPORTING: AtomicBool = AtomicBool::new(false);

const ENDPOINT_VARS: [&str; 2] = ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"];

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("cannot build the OTLP span exporter: {0}")]
    Exporter(#[source] opentelemetry_otlp::ExporterBuildError),
    #[error("OTEL_TRACES_SAMPLER_ARG must be a number between 0 and 1")]
    SamplerArg,
    #[error("a global tracing subscriber is already installed: {0}")]
    Subscriber(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// How a process logs and whether it traces.
pub struct Settings<'a> {
    /// `service.name` of the spans unless `OTEL_SERVICE_NAME` says otherwise.
    pub service: &'static str,
    /// One JSON object per log line (production) rather than text.
    pub json: bool,
    /// The policy's telemetry section, if it has one.
    pub telemetry: Option<&'a TelemetryConfig>,
}

/// The installed subscriber's exporter; [`Telemetry::shutdown`] sends what is buffered.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are exported.
    pub fn traces(&self) -> bool {
        self.provider.is_some()
    }

    /// Exports the spans still buffered; call once the process has stopped serving.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(e) = provider.shutdown()
        {
            tracing::warn!(error = %e, "spans still buffered were not exported");
        }
    }
}

/// Whether this process exports traces (set by [`init`]).
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// Installs the global subscriber: logs always, traces when an endpoint is configured.
pub fn init(settings: &Settings<'_>) -> Result<Telemetry, TelemetryError> {
    let provider = tracer_provider(settings)?;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let Some(provider) = provider else {
        // Traces off: the log subscriber alone, its filter global, so every callsite it
        // disables costs a level check and nothing more.
        let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
        let installed = if settings.json { logs.json().flatten_event(true).try_init() } else { logs.try_init() };
        installed.map_err(TelemetryError::Subscriber)?;
        return Ok(Telemetry { provider: None });
    };
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let logs: Box<dyn Layer<Registry> + Send + Sync> =
        if settings.json { logs.json().flatten_event(true).boxed() } else { logs.boxed() };
    let traces = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer(settings.service))
        .with_threads(false)
        .with_tracked_inactivity(false)
        .with_filter(filter_fn(|meta| {
            meta.target().starts_with("godel") && (meta.is_span() || *meta.level() <= Level::INFO)
        }));
    tracing_subscriber::registry()
        .with(logs.with_filter(filter))
        .with(traces)
        .try_init()
        .map_err(|e| TelemetryError::Subscriber(e.into()))?;
    EXPORTING.store(true, Ordering::Relaxed);
    tracing::info!(service = settings.service, "exporting traces over OTLP/HTTP");
    Ok(Telemetry { provider: Some(provider) })
}

/// The OTLP exporter and sampler, or `None` when no endpoint is configured or
/// `OTEL_SDK_DISABLED` is `true`.
fn tracer_provider(settings: &Settings<'_>) -> Result<Option<SdkTracerProvider>, TelemetryError> {
    let configured = settings.telemetry.and_then(|t| t.otlp_endpoint.as_deref());
    let from_env = ENDPOINT_VARS.iter().any(|var| std::env::var(var).is_ok_and(|v| !v.trim().is_empty()));
    let disabled = std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.trim().eq_ignore_ascii_case("true"));
    if disabled || (configured.is_none() && !from_env) {
        return Ok(None);
    }
    let mut exporter = SpanExporter::builder().with_http();
    if let Some(base) = configured {
        // The policy's endpoint is a base URL, like OTEL_EXPORTER_OTLP_ENDPOINT.
        exporter = exporter.with_endpoint(format!("{}/v1/traces", base.trim_end_matches('/')));
    }
    let exporter = exporter.build().map_err(TelemetryError::Exporter)?;
    let ratio = match settings.telemetry.and_then(|t| t.sampling_ratio) {
        Some(ratio) => ratio,
        None => sampler_arg()?,
    };
    let mut resource = Resource::builder().with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")));
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name(settings.service);
    }
    Ok(Some(
        SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(ratio))))
            .with_resource(resource.build())
            .build(),
    ))
}

/// `OTEL_TRACES_SAMPLER_ARG`, the standard ratio variable; 1 when unset.
fn sampler_arg() -> Result<f64, TelemetryError> {
    match std::env::var("OTEL_TRACES_SAMPLER_ARG") {
        Err(_) => Ok(1.0),
        Ok(text) => text.trim().parse().ok().filter(|r| (0.0..=1.0).contains(r)).ok_or(TelemetryError::SamplerArg),
    }
}
