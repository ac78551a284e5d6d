//! The `GuardrailPolicy` custom resource: the guard's configuration (`spec.guard`, the
//! types of `godel-config`, re-exported here) plus how to run the fleet, and the
//! CustomResourceDefinition generated from them.
//!
//! The operator renders `spec.guard` into the guard's ConfigMap, and the guard reads that
//! file with the same types, so they are defined once. Defaults live in code (serde),
//! never in the CRD schema, so that a GitOps tool never sees a server-side default it did
//! not write.

mod crd;
mod policy;
mod validate;

pub use crd::{crd, crd_yaml};
pub use godel_config::*;
pub use policy::*;
pub use validate::InvalidPolicy;
