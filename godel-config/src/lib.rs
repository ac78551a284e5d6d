//! The guard's configuration: what a guard pod needs to decide on a prompt, its defaults
//! (in code, through serde, never in a schema) and the checks the types cannot express.
//!
//! The guard reads it as its config file, the detection engine builds its traps from its
//! `traps` part, and `godel-crds` embeds it as a `GuardrailPolicy`'s `spec.guard`. It
//! depends on no Kubernetes crate, so neither the engine nor the guard compiles one.

mod schema;
mod validate;

pub use schema::*;
pub use validate::{InvalidConfig, MAX_NAME_LENGTH, has_credentials};
