//! Types of the `GuardrailPolicy` custom resource.
//!
//! The guard reads the guard-relevant part of a policy's spec (`spec.guard`) as its
//! config file, and the operator renders that same part into the guard's ConfigMap, so
//! the types are defined once, here. Defaults live in code (serde), never in the CRD
//! schema, so that a GitOps tool never sees a server-side default it did not write.

mod crd;
mod guard_config;
mod policy;
mod validate;

pub use crd::{crd, crd_yaml};
pub use guard_config::*;
pub use policy::*;
pub use validate::{InvalidConfig, MAX_NAME_LENGTH};
