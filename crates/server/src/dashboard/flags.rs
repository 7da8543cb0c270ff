//! The flag pages: the list (`/`, `/flags`), a flag (`/flags/{key}`) with its
//! variants, rules and history, a version against the current flag
//! (`/flags/{key}/versions/{version}`), and the two changes: turning a flag
//! on or off (after a confirm step) and restoring a version.

use std::sync::Arc;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use flags::{ConditionSpec, FlagSpec, ServeSpec};
use maud::{Markup, html};
use serde::Deserialize;
use store::{ApplyOptions, Change, StoredFlag};

use super::auth::{Session, check_form};
use super::{PageError, PageResult, encode, page, see_other};
use crate::auth::DEFAULT_ENVIRONMENT;
use crate::html;
use crate::rollouts;
use crate::state::AppState;

type Shared = State<Arc<AppState>>;

#[derive(Deserialize)]
pub struct ListQuery {
    environment: Option<String>,
    q: Option<String>,
}

#[derive(Deserialize)]
pub struct EnvQuery {
    environment: Option<String>,
}

/// The environment a page is about; it must exist.
async fn environment(state: &AppState, requested: Option<&str>) -> Result<String, PageError> {
    let env = requested
        .filter(|e| !e.is_empty())
        .unwrap_or(DEFAULT_ENVIRONMENT);
    if state.store.get_environment(env).await?.is_some() {
        Ok(env.to_owned())
    } else {
        Err(PageError::not_found(format!(
            "There is no environment `{env}`."
        )))
    }
}

fn flag_url(key: &str, env: &str) -> String {
    format!("/flags/{}?environment={}", encode(key), encode(env))
}

/// The rollout of a flag as the list and the flag page show it: its status
/// and, while it runs, the current phase and percentage.
async fn rollout_summary(state: &AppState, env: &str, flag: &str) -> Option<String> {
    let loaded = rollouts::load(state, env, flag).await.ok()?;
    let status = loaded.state.status.name();
    if loaded.state.is_active() {
        let phase = loaded.plan.phase(loaded.state.phase);
        Some(format!("{}% · {} ({status})", phase.percent, phase.name))
    } else {
        Some(status.to_owned())
    }
}

/// `GET /` and `GET /flags`: every flag of an environment, searchable.
pub async fn list(
    State(state): Shared,
    session: Session,
    Query(query): Query<ListQuery>,
) -> PageResult {
    let env = environment(&state, query.environment.as_deref()).await?;
    let environments = state.store.list_environments().await?;
    let needle = query.q.as_deref().unwrap_or_default().trim().to_lowercase();
    let flags: Vec<StoredFlag> = state
        .store
        .list_flags(&env)
        .await?
        .into_iter()
        .filter(|f| {
            needle.is_empty()
                || f.spec.key.to_lowercase().contains(&needle)
                || f.spec.description.to_lowercase().contains(&needle)
        })
        .collect();
    let planned: Vec<String> = state
        .store
        .list_rollouts(&env)
        .await?
        .into_iter()
        .map(|r| r.spec.flag)
        .collect();
    let mut rows = Vec::with_capacity(flags.len());
    for flag in &flags {
        let rollout = if planned.contains(&flag.spec.key) {
            rollout_summary(&state, &env, &flag.spec.key).await
        } else {
            None
        };
        rows.push((flag, rollout));
    }
    let body = html! {
        form.filters method="get" action="/flags" role="search" {
            div {
                label for="environment" { "Environment" }
                select id="environment" name="environment" {
                    @for e in &environments {
                        option value=(e.key) selected[e.key == env] { (e.key) }
                    }
                }
            }
            div {
                label for="q" { "Search key or description" }
                input type="search" id="q" name="q" value=(query.q.as_deref().unwrap_or_default());
            }
            div { button type="submit" { "Show" } }
        }
        @if rows.is_empty() {
            p { "No flags" @if !needle.is_empty() { " match this search" } " in " code { (env) } "." }
        } @else {
            div.scroll {
                table {
                    caption.muted { (rows.len()) " flags in " (env) }
                    thead { tr { th scope="col" { "Flag" } th scope="col" { "Type" } th scope="col" { "State" } th scope="col" { "Rollout" } th scope="col" { "Change" } } }
                    tbody {
                        @for (flag, rollout) in &rows {
                            tr {
                                td {
                                    a href=(flag_url(&flag.spec.key, &env)) { code { (flag.spec.key) } }
                                    @if !flag.spec.description.is_empty() {
                                        br; span.muted { (flag.spec.description) }
                                    }
                                }
                                td { (flag.spec.flag_type.to_string()) }
                                td { (enabled_label(flag.spec.enabled)) }
                                td { (rollout.as_deref().unwrap_or("—")) }
                                td { (toggle_link(&flag.spec, &env)) }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(html::respond_dashboard(
        StatusCode::OK,
        page(&session, "Flags", body),
    ))
}

fn enabled_label(enabled: bool) -> Markup {
    html! {
        @if enabled { span.ok { "On" } } @else { span.bad { "Off" } }
    }
}

fn toggle_link(flag: &FlagSpec, env: &str) -> Markup {
    let href = format!(
        "/flags/{}/toggle?environment={}",
        encode(&flag.key),
        encode(env)
    );
    html! {
        a href=(href) { @if flag.enabled { "Turn off…" } @else { "Turn on…" } span.muted { " " (flag.key) } }
    }
}

/// `GET /flags/{key}`: the flag's state, variants, rules and history.
pub async fn show(
    State(state): Shared,
    session: Session,
    Path(key): Path<String>,
    Query(query): Query<EnvQuery>,
) -> PageResult {
    let env = environment(&state, query.environment.as_deref()).await?;
    let current = state.store.get_flag(&env, &key).await?;
    let history = state.store.flag_history(&env, &key).await?;
    if current.is_none() && history.is_empty() {
        return Err(PageError::not_found(format!(
            "There is no flag `{key}` in `{env}`."
        )));
    }
    let rollout = rollout_summary(&state, &env, &key).await;
    let body = html! {
        p { a href={ "/flags?environment=" (encode(&env)) } { "← All flags in " (env) } }
        @match &current {
            None => p.notice.bad { "This flag is deleted. Restore a version below to bring it back." },
            Some(flag) => {
                @if !flag.spec.description.is_empty() { p { (flag.spec.description) } }
                dl {
                    dt { "Environment" } dd { (env) }
                    dt { "Type" } dd { (flag.spec.flag_type.to_string()) }
                    dt { "State" } dd { (enabled_label(flag.spec.enabled)) " · " (toggle_link(&flag.spec, &env)) }
                    dt { "When off, serves" } dd { code { (flag.spec.off_variant) } }
                    dt { "Rollout" } dd { (rollout.as_deref().unwrap_or("none")) }
                    dt { "Version" } dd { (flag.version) ", by " (flag.updated_by) ", " (html::time(flag.updated_at_ms)) }
                }
                h2 { "Variants" }
                div.scroll { table {
                    thead { tr { th scope="col" { "Variant" } th scope="col" { "Value" } } }
                    tbody { @for (name, value) in &flag.spec.variants {
                        tr { td { code { (name) } } td { code { (value.to_string()) } } }
                    } }
                } }
                h2 { "Rules" }
                @if flag.spec.rules.is_empty() {
                    p.muted { "No targeting rules." }
                } @else {
                    ol { @for (i, rule) in flag.spec.rules.iter().enumerate() {
                        li {
                            strong { (rule.name.clone().unwrap_or_else(|| format!("Rule {}", i + 1))) }
                            ": if "
                            @for (n, condition) in rule.conditions.iter().enumerate() {
                                @if n > 0 { " and " }
                                (condition_text(condition))
                            }
                            @if rule.conditions.is_empty() { "always" }
                            ", serve " (serve_text(&rule.serve))
                        }
                    } }
                }
                p { strong { "Otherwise" } ", serve " (serve_text(&flag.spec.default.serve)) }
            }
        }
        h2 { "History" }
        div.scroll { table {
            thead { tr { th scope="col" { "Version" } th scope="col" { "By" } th scope="col" { "When" } th scope="col" { "Reason" } th scope="col" { "" } } }
            tbody { @for v in &history {
                tr {
                    td { (v.version) @if v.spec.is_none() { " (deleted)" } }
                    td { (v.author) }
                    td { (html::time(v.created_at_ms)) }
                    td { (v.reason.as_deref().unwrap_or("")) }
                    td {
                        @if current.as_ref().is_some_and(|c| c.version == v.version) {
                            span.muted { "current" }
                        } @else if v.spec.is_some() {
                            a href={ "/flags/" (encode(&key)) "/versions/" (v.version) "?environment=" (encode(&env)) } { "Compare and restore" span.muted { " version " (v.version) } }
                        }
                    }
                }
            } }
        } }
    };
    Ok(html::respond_dashboard(
        StatusCode::OK,
        page(&session, &key, body),
    ))
}

/// A condition as people read it: `email ends with "@example.com"`.
fn condition_text(condition: &ConditionSpec) -> Markup {
    if let Some(segment) = &condition.segment {
        return html! { "in segment " code { (segment) } };
    }
    let attribute = condition.attribute.as_deref().unwrap_or("?");
    let op = condition
        .op
        .map(|op| op.as_str().replace('_', " "))
        .unwrap_or_default();
    let values: Vec<String> = match (&condition.value, &condition.values) {
        (Some(v), _) => vec![v.to_string()],
        (None, Some(vs)) => vs.iter().map(ToString::to_string).collect(),
        (None, None) => Vec::new(),
    };
    html! { code { (attribute) } " " (op) " " code { (values.join(", ")) } }
}

/// What a rule serves, as people read it: `variant on`, or
/// `a split of on 5%, off 95% to 25% of units (the rest: off)`.
fn serve_text(serve: &ServeSpec) -> Markup {
    if let Some(variant) = &serve.variant {
        return html! { "variant " code { (variant) } };
    }
    let Some(split) = &serve.split else {
        return html! { "nothing" };
    };
    let arms: Vec<String> = split
        .iter()
        .map(|(variant, weight)| format!("{variant} {}%", weight.0))
        .collect();
    html! {
        "a split of " code { (arms.join(", ")) }
        @if let Some(rollout) = serve.rollout {
            " to " (rollout.0) "% of units"
            @if let Some(otherwise) = &serve.otherwise { " (the rest: " code { (otherwise) } ")" }
        }
    }
}

/// `GET /flags/{key}/toggle`: the confirm step before turning a flag on or off.
pub async fn confirm_toggle(
    State(state): Shared,
    session: Session,
    Path(key): Path<String>,
    Query(query): Query<EnvQuery>,
) -> PageResult {
    let env = environment(&state, query.environment.as_deref()).await?;
    let flag = existing_flag(&state, &env, &key).await?;
    Ok(toggle_page(
        &session,
        &env,
        &flag.spec,
        StatusCode::OK,
        None,
    ))
}

fn toggle_page(
    session: &Session,
    env: &str,
    flag: &FlagSpec,
    status: StatusCode,
    error: Option<&str>,
) -> axum::response::Response {
    let turn_on = !flag.enabled;
    let verb = if turn_on { "on" } else { "off" };
    let title = format!("Turn {verb} {}", flag.key);
    let body = html! {
        @if let Some(error) = error { p.notice.bad role="alert" { (error) } }
        p {
            code { (flag.key) } " is " (enabled_label(flag.enabled)) " in " code { (env) } "."
            @if !turn_on { " Turned off, it serves " code { (flag.off_variant) } " to everyone." }
        }
        form method="post" action={ "/flags/" (encode(&flag.key)) "/toggle" } {
            input type="hidden" name="csrf" value=(session.csrf);
            input type="hidden" name="environment" value=(env);
            input type="hidden" name="enabled" value=(turn_on);
            label for="reason" { "Reason (kept in the audit log)" }
            textarea id="reason" name="reason" rows="3" {}
            label.check for="confirm" {
                input type="checkbox" id="confirm" name="confirm" value="yes" required;
                span { "Yes, turn " (verb) " " code { (flag.key) } " in " code { (env) } }
            }
            button type="submit" { "Turn " (verb) }
        }
        p { a href=(flag_url(&flag.key, env)) { "Cancel" } }
    };
    html::respond_dashboard(status, page(session, &title, body))
}

#[derive(Deserialize)]
pub struct ToggleForm {
    csrf: Option<String>,
    environment: Option<String>,
    enabled: Option<String>,
    confirm: Option<String>,
    reason: Option<String>,
}

async fn existing_flag(state: &AppState, env: &str, key: &str) -> Result<StoredFlag, PageError> {
    state
        .store
        .get_flag(env, key)
        .await?
        .ok_or_else(|| PageError::not_found(format!("There is no flag `{key}` in `{env}`.")))
}

fn reason_of(text: Option<&str>) -> Option<&str> {
    text.map(str::trim).filter(|r| !r.is_empty())
}

/// `POST /flags/{key}/toggle`: turns the flag on or off (the form says
/// which, so submitting it twice does not undo it), once confirmed.
pub async fn toggle(
    State(state): Shared,
    session: Session,
    headers: HeaderMap,
    Path(key): Path<String>,
    Form(form): Form<ToggleForm>,
) -> PageResult {
    check_form(&session, &headers, form.csrf.as_deref())?;
    let env = environment(&state, form.environment.as_deref()).await?;
    let flag = existing_flag(&state, &env, &key).await?;
    let enabled = match form.enabled.as_deref() {
        Some("true") => true,
        Some("false") => false,
        _ => {
            return Err(PageError::new(
                StatusCode::BAD_REQUEST,
                "The form does not say whether to turn the flag on or off.",
            ));
        }
    };
    if form.confirm.as_deref() != Some("yes") {
        return Ok(toggle_page(
            &session,
            &env,
            &flag.spec,
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("Tick the box to confirm; nothing was changed."),
        ));
    }
    if flag.spec.enabled != enabled {
        let mut spec = flag.spec;
        spec.enabled = enabled;
        state
            .store
            .apply(
                &env,
                vec![Change::UpsertFlag(spec)],
                &session.actor,
                reason_of(form.reason.as_deref()),
                ApplyOptions::default(),
            )
            .await?;
        refresh(&state, &env).await;
    }
    Ok(see_other(&flag_url(&key, &env)))
}

/// Rebuilds the environment's snapshot after a committed change, as the
/// admin API does; on failure the periodic resync catches up.
async fn refresh(state: &AppState, env: &str) {
    if let Err(error) = state.refresh_selections(env).await {
        tracing::warn!(message = "Could not refresh the flag snapshot after a dashboard change.", environment = env, %error);
    }
}

/// `GET /flags/{key}/versions/{version}`: the version against the current
/// flag, and the form that restores it.
pub async fn version(
    State(state): Shared,
    session: Session,
    Path((key, version)): Path<(String, i64)>,
    Query(query): Query<EnvQuery>,
) -> PageResult {
    let env = environment(&state, query.environment.as_deref()).await?;
    let old = state
        .store
        .flag_version(&env, &key, version)
        .await?
        .ok_or_else(|| PageError::not_found(format!("Flag `{key}` has no version {version}.")))?;
    let current = state.store.get_flag(&env, &key).await?;
    let old_text = spec_text(old.spec.as_ref());
    let current_text = spec_text(current.as_ref().map(|c| &c.spec));
    let title = format!("{key}: version {version}");
    let body = html! {
        p { a href=(flag_url(&key, &env)) { "← " (key) } }
        p {
            "Version " (version) " by " (old.author) ", " (html::time(old.created_at_ms))
            @if let Some(reason) = &old.reason { ": " (reason) }
        }
        h2 { "Changes from version " (version) " to the current flag" }
        @if old_text == current_text {
            p { "The current flag is the same as this version." }
        } @else {
            p.muted { "Lines marked − are in version " (version) " only; lines marked + are in the current flag only." }
            (diff(&old_text, &current_text))
        }
        @if old.spec.is_some() {
            h2 { "Restore this version" }
            form method="post" action={ "/flags/" (encode(&key)) "/versions/" (version) "/restore" } {
                input type="hidden" name="csrf" value=(session.csrf);
                input type="hidden" name="environment" value=(env);
                label for="reason" { "Reason (kept in the audit log)" }
                textarea id="reason" name="reason" rows="3" {}
                button type="submit" { "Restore version " (version) }
            }
        }
    };
    Ok(html::respond_dashboard(
        StatusCode::OK,
        page(&session, &title, body),
    ))
}

/// A flag as pretty JSON lines, the form the diff compares.
fn spec_text(spec: Option<&FlagSpec>) -> String {
    match spec {
        Some(spec) => serde_json::to_string_pretty(spec).unwrap_or_default() + "\n",
        None => "(deleted)\n".to_owned(),
    }
}

/// A line diff of `old` and `new`, each line marked.
fn diff(old: &str, new: &str) -> Markup {
    let diff = similar::TextDiff::from_lines(old, new);
    html! {
        pre aria-label="Differences" {
            @for change in diff.iter_all_changes() {
                @match change.tag() {
                    similar::ChangeTag::Delete => span.bad { "− " (change.value()) },
                    similar::ChangeTag::Insert => span.ok { "+ " (change.value()) },
                    similar::ChangeTag::Equal => span.muted { "  " (change.value()) },
                }
            }
        }
    }
}

#[derive(Deserialize)]
pub struct RestoreForm {
    csrf: Option<String>,
    environment: Option<String>,
    reason: Option<String>,
}

/// `POST /flags/{key}/versions/{version}/restore`: makes that version
/// current again, as a new version.
pub async fn restore(
    State(state): Shared,
    session: Session,
    headers: HeaderMap,
    Path((key, version)): Path<(String, i64)>,
    Form(form): Form<RestoreForm>,
) -> PageResult {
    check_form(&session, &headers, form.csrf.as_deref())?;
    let env = environment(&state, form.environment.as_deref()).await?;
    state
        .store
        .restore_flag(
            &env,
            &key,
            version,
            &session.actor,
            reason_of(form.reason.as_deref()),
        )
        .await?;
    refresh(&state, &env).await;
    Ok(see_other(&flag_url(&key, &env)))
}
