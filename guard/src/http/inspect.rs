use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;

use super::{ApiError, AppState};
use crate::engine::{InspectRequest, Verdict};

pub async fn inspect(
    State(state): State<Arc<AppState>>,
    body: Result<Json<InspectRequest>, JsonRejection>,
) -> Result<Json<Verdict>, ApiError> {
    let Json(request) = body?;
    Ok(Json(state.guard.inspect(request).await?))
}
