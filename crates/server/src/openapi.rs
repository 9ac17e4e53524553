//! The OpenAPI 3.1 document, generated from the handlers and wire types.

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::{
    calibration, error, export, forms, health, intake, integrations, reviews, runs, views,
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Countersign API",
        description = "Durable human-in-the-loop workflows. Errors are RFC 9457 problem+json with stable `type` URIs under https://countersign.dev/problems/."
    ),
    paths(
        intake::submit_run,
        intake::webhook,
        runs::list_runs,
        runs::get_run,
        runs::run_events,
        export::events,
        calibration::calibration,
        runs::retry_run,
        runs::cancel_run,
        reviews::list_reviews,
        reviews::get_review,
        reviews::decide,
        health::healthz,
        health::readyz,
        health::metrics,
        forms::show,
        forms::submit,
        integrations::slack::interactivity,
        integrations::links::show,
        integrations::links::confirm,
    ),
    components(schemas(
        error::Problem,
        error::FieldProblem,
        views::Submission,
        views::Links,
        views::RunSummary,
        views::RunPage,
        views::RunView,
        views::RunReviewView,
        views::RunReviewLinks,
        views::PositionView,
        views::StepAttempt,
        views::EffectView,
        views::EventView,
        views::EventPage,
        export::ExportEvent,
        export::ExportPage,
        calibration::CalibrationReport,
        calibration::FieldAgreement,
        calibration::WeekAgreement,
        calibration::IntervalView,
        calibration::OutcomeCounts,
        calibration::ExcludedCounts,
        calibration::Change,
        views::Health,
        reviews::ReviewPage,
        reviews::ReviewView,
        reviews::ReviewFieldView,
        reviews::ReviewActView,
        reviews::DecisionBody,
        views::RunStatusName,
        views::ReviewStatusName,
        views::DecisionName,
    )),
    modifiers(&BearerAuth),
    tags(
        (name = "runs", description = "Start, read, retry and cancel runs"),
        (name = "reviews", description = "Review tasks: read and decide (approve with edits, reject, escalate)"),
        (name = "health", description = "Probes for orchestrators"),
        (name = "forms", description = "Public HTML intake forms (no token)"),
        (name = "integrations", description = "Slack buttons and email approval links, authenticated by signatures instead of tokens"),
    )
)]
pub struct ApiDoc;

/// Declares the `bearer` scheme the paths refer to.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut http = Http::new(HttpAuthScheme::Bearer);
        http.description = Some(
            "API token from `countersign token create`; scopes: runs:read, runs:write (implies runs:read), reviews:decide, admin (implies all); `queue:NAME` entries restrict review access to those queues."
                .into(),
        );
        components.add_security_scheme("bearer", SecurityScheme::Http(http));
    }
}

/// The document as served at `/api/openapi.json`.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
