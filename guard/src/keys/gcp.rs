//! Google Secret Manager over REST (`versions.access`), authenticated with the
//! workload-identity access token that the GKE metadata server hands the pod.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use godel_config::GcpKeySource;
use serde::Deserialize;
use zeroize::Zeroizing;

use super::KeyError;

const SECRET_MANAGER: &str = "https://secretmanager.googleapis.com";
const METADATA: &str = "http://metadata.google.internal";

#[derive(Deserialize)]
struct Token {
    access_token: String,
}

#[derive(Deserialize)]
struct Access {
    payload: Payload,
}

#[derive(Deserialize)]
struct Payload {
    data: String,
}

/// The error and its causes ("error sending request: connection refused"), without the
/// URL, which may carry the secret's name but nothing secret.
fn chain(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

pub(super) async fn access_secret(config: &GcpKeySource, field: &'static str) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    let fail = |reason: String| KeyError::Gcp { field, reason };
    if !config.secret_version.starts_with("projects/") || config.secret_version.split('/').count() != 6 {
        return Err(fail("secretVersion must look like projects/<p>/secrets/<s>/versions/<v>".into()));
    }
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| fail(format!("HTTP client: {e}")))?;
    let metadata = config.metadata_endpoint.as_deref().unwrap_or(METADATA).trim_end_matches('/');
    let token: Token = client
        .get(format!("{metadata}/computeMetadata/v1/instance/service-accounts/default/token"))
        .header("Metadata-Flavor", "Google")
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| fail(format!("no workload-identity token from the metadata server: {}", chain(e))))?
        .json()
        .await
        .map_err(|e| fail(format!("metadata server answer: {e}")))?;
    let token = Zeroizing::new(token.access_token);
    let endpoint = config.endpoint.as_deref().unwrap_or(SECRET_MANAGER).trim_end_matches('/');
    let response = client
        .get(format!("{endpoint}/v1/{}:access", config.secret_version))
        .bearer_auth(token.as_str())
        .send()
        .await
        .map_err(|e| fail(format!("request failed: {}", chain(e))))?;
    let status = response.status();
    if !status.is_success() {
        return Err(fail(format!("access to {} refused: HTTP {status}", config.secret_version)));
    }
    let access: Access = response.json().await.map_err(|e| fail(format!("unexpected answer: {e}")))?;
    let data = Zeroizing::new(access.payload.data);
    STANDARD.decode(data.as_bytes()).map(Zeroizing::new).map_err(|_| fail("payload.data is not base64".into()))
}
