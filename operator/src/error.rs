#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("serialization: {0}")]
    Serialize(#[from] serde_json::Error),
    #[error("GuardrailPolicy has no namespace")]
    MissingNamespace,
}

impl Error {
    /// A short, bounded label for the reconcile metric.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Kube(kube::Error::Api(status)) => match status.code {
                401 | 403 => "forbidden",
                404 => "not_found",
                409 => "conflict",
                429 => "throttled",
                500..=599 => "server_error",
                _ => "api_error",
            },
            Error::Kube(_) => "unreachable",
            Error::Serialize(_) => "serialization",
            Error::MissingNamespace => "no_namespace",
        }
    }
}
