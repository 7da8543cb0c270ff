//! The OpenAPI document served at `/openapi.json`, generated from the handlers'
//! annotations so it cannot drift from the code.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::admin;
use crate::ofrep;

#[derive(OpenApi)]
#[openapi(
    info(title = "Rollgate", description = "Feature flags, guarded rollouts and experiments. OFREP evaluation under /ofrep/v1, admin API under /api/v1."),
    paths(
        ofrep::evaluate_flag_doc,
        ofrep::evaluate_flags_doc,
        admin::list_environments,
        admin::create_environment,
        admin::apply,
        admin::export,
        admin::list_flags,
        admin::create_flag,
        admin::get_flag,
        admin::put_flag,
        admin::delete_flag,
        admin::enable_flag,
        admin::disable_flag,
        admin::flag_history,
        admin::flag_version,
        admin::restore_flag,
        admin::list_segments,
        admin::get_segment,
        admin::put_segment,
        admin::delete_segment,
        admin::list_metrics,
        admin::get_metric,
        crate::series::series,
        admin::list_experiments,
        admin::get_experiment,
        admin::experiment_results,
        crate::rollouts::get_rollout,
        crate::rollouts::command,
        crate::reports::report,
        crate::status_page::status_page,
        crate::status_page::status_json,
        crate::events::ingest,
        crate::feedback::submit,
        admin::list_tokens,
        admin::create_token,
        admin::revoke_token,
        admin::list_audit,
        crate::notify::list_deliveries,
        crate::incidents::list_incidents,
        crate::incidents::get_incident,
        crate::incidents::act,
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
