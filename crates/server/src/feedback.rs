//! `POST /api/v1/feedback`: what a unit (a user) thinks — a satisfaction
//! score and/or a complaint — attributed to the variant it was served like
//! any tracked event, so ordinary metrics over it (satisfaction, complaint
//! rate) work in experiments, gates and guards: the seed's "significant user
//! complaints" trigger.
//!
//! A score becomes the event `satisfaction_survey` (value 1–5, attribute
//! `satisfied` for 4 and 5); a complaint the event `complaint` (attributes
//! `category` and `text`). Text is stored as given; whatever shows it
//! escapes it (the API returns it as a JSON string).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use ingest::SubmitError;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::auth;
use crate::error::{ApiError, ApiJson, ApiQuery};
use crate::events::EventsQuery;
use crate::state::AppState;

/// Largest accepted feedback body.
pub const MAX_FEEDBACK_BODY_BYTES: usize = 16 * 1024;
/// Longest complaint text, in characters.
pub const MAX_TEXT_CHARS: usize = 4000;
/// Longest complaint category.
pub const MAX_CATEGORY_LEN: usize = 64;
/// The event a score becomes.
pub const SCORE_EVENT: &str = "satisfaction_survey";
/// The event a complaint becomes.
pub const COMPLAINT_EVENT: &str = "complaint";

/// One unit's feedback.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Feedback {
    /// The unit, as in evaluation contexts and events.
    pub targeting_key: String,
    /// Satisfaction from 1 (very unhappy) to 5 (very happy).
    pub score: Option<i64>,
    pub complaint: Option<Complaint>,
    /// RFC 3339; default now.
    pub timestamp: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Complaint {
    /// Lowercase letters, digits, `-` and `_` (`wrong_result`, `slow`).
    pub category: String,
    /// What the user wrote; up to 4,000 characters.
    #[serde(default)]
    pub text: String,
}

#[derive(Serialize, ToSchema)]
pub struct FeedbackAccepted {
    /// Events committed: one per score or complaint.
    pub accepted: usize,
    pub batch: i64,
}

#[utoipa::path(post, path = "/api/v1/feedback", tag = "events", params(EventsQuery),
    request_body = Feedback,
    responses((status = 200, body = FeedbackAccepted), (status = 400, body = crate::error::ErrorBody),
        (status = 413, body = crate::error::ErrorBody), (status = 429, body = crate::error::ErrorBody)))]
pub async fn submit(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<EventsQuery>,
    ApiJson(feedback): ApiJson<Feedback>,
) -> Result<Json<FeedbackAccepted>, ApiError> {
    let principal = auth::authenticate(&state, &headers)?;
    let environment = auth::evaluation_environment(&principal, q.environment.as_deref())?;
    if !state.has_environment(&environment) {
        return Err(ApiError::not_found(format!(
            "environment `{environment}` was not found"
        )));
    }
    let body = events_of(&feedback).map_err(ApiError::bad_request)?;
    let body = serde_json::to_vec(&body).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let no_exposures = |_: &str, _: &str| Ok(());
    let events = ingest::parse_json_batch(&body, crate::now_ms(), &no_exposures)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let receipt = state
        .ingest
        .submit(&environment, None, &events)
        .await
        .map_err(|e| match e {
            SubmitError::Overloaded => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "overloaded", e.to_string())
            }
            SubmitError::Closed | SubmitError::Failed(_) => {
                tracing::error!(message = "Feedback was not stored.", error = %e);
                ApiError::unavailable("the feedback could not be stored; retry shortly")
            }
        })?;
    Ok(Json(FeedbackAccepted {
        accepted: receipt.accepted,
        batch: receipt.batch_id,
    }))
}

/// The `{"events": […]}` batch a feedback becomes, or what is wrong with it.
pub fn events_of(feedback: &Feedback) -> Result<Value, String> {
    if feedback.score.is_none() && feedback.complaint.is_none() {
        return Err("give a `score` (1 to 5), a `complaint`, or both".to_owned());
    }
    let mut events = Vec::new();
    let stamp = |mut event: Value| {
        if let Some(timestamp) = &feedback.timestamp {
            event["timestamp"] = json!(timestamp);
        }
        event
    };
    if let Some(score) = feedback.score {
        if !(1..=5).contains(&score) {
            return Err(format!("`score` is {score}; it must be 1 to 5"));
        }
        events.push(stamp(json!({
            "kind": "track", "name": SCORE_EVENT, "targetingKey": feedback.targeting_key,
            "value": score, "attributes": {"satisfied": score >= 4}
        })));
    }
    if let Some(complaint) = &feedback.complaint {
        let category = &complaint.category;
        if category.is_empty()
            || category.len() > MAX_CATEGORY_LEN
            || !category
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        {
            return Err(format!(
                "`complaint.category` {category:?} must be 1 to {MAX_CATEGORY_LEN} lowercase \
                 letters, digits, `-` or `_` (e.g. \"wrong_result\")"
            ));
        }
        let chars = complaint.text.chars().count();
        if chars > MAX_TEXT_CHARS {
            return Err(format!(
                "`complaint.text` has {chars} characters; at most {MAX_TEXT_CHARS} are kept"
            ));
        }
        events.push(stamp(json!({
            "kind": "track", "name": COMPLAINT_EVENT, "targetingKey": feedback.targeting_key,
            "attributes": {"category": category, "text": complaint.text}
        })));
    }
    Ok(json!({ "events": events }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feedback(value: Value) -> Feedback {
        serde_json::from_value(value).expect("feedback")
    }

    #[test]
    fn a_score_and_a_complaint_become_two_events() {
        let body = events_of(&feedback(json!({
            "targetingKey": "u-1", "score": 2,
            "complaint": {"category": "wrong_result", "text": "<b>2+2=5</b>"}
        })))
        .expect("valid");
        let events = body["events"].as_array().expect("events");
        assert_eq!(events.len(), 2);
        assert_eq!(events[0]["name"], SCORE_EVENT);
        assert_eq!(events[0]["value"], 2);
        assert_eq!(events[0]["attributes"]["satisfied"], false);
        assert_eq!(events[1]["name"], COMPLAINT_EVENT);
        // Stored as given.
        assert_eq!(events[1]["attributes"]["text"], "<b>2+2=5</b>");
    }

    #[test]
    fn bad_feedback_names_the_problem() {
        for (value, fragment) in [
            (json!({"targetingKey": "u"}), "give a `score`"),
            (
                json!({"targetingKey": "u", "score": 6}),
                "it must be 1 to 5",
            ),
            (
                json!({"targetingKey": "u", "score": 0}),
                "it must be 1 to 5",
            ),
            (
                json!({"targetingKey": "u", "complaint": {"category": "Bad Thing"}}),
                "`complaint.category`",
            ),
            (
                json!({"targetingKey": "u", "complaint": {"category": "x", "text": "é".repeat(4001)}}),
                "4001 characters",
            ),
        ] {
            let error = events_of(&feedback(value.clone())).expect_err("refused");
            assert!(error.contains(fragment), "{value}: {error}");
        }
    }
}
