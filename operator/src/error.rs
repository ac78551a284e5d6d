#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("serialization: {0}")]
    Serialize(#[from] serde_json::Error),
    #[error("GuardrailPolicy has no namespace")]
    MissingNamespace,
    #[error("a rendered object lacks apiVersion or kind")]
    MissingTypeMeta,
}
