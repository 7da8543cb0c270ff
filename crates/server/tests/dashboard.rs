//! The dashboard in process, over a real socket: sign-in and the session
//! cookie, the redirect without one, CSRF and cross-origin refusals, escaping
//! of user text, and the flag pages' changes (toggle with confirm, restore),
//! checked through OFREP and the admin API.

mod common;

use common::browser::Browser;
use common::{ADMIN_NAME, ADMIN_TOKEN, TestServer, start};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const HOSTILE: &str = "<script>alert('x')</script>";

fn flags_doc(description: &str) -> Value {
    json!({
        "environment": "production",
        "flags": [
            {"key": "new-checkout", "type": "boolean", "description": description,
             "off_variant": "off", "variants": {"on": true, "off": false},
             "rules": [{"name": HOSTILE, "conditions": [{"attribute": "email", "op": "ends_with", "values": ["@example.com"]}],
                        "serve": {"variant": "on"}}],
             "default": {"serve": {"variant": "on"}}},
            {"key": "calc-model", "type": "string", "off_variant": "simple",
             "variants": {"simple": "simple", "advanced": "advanced"},
             "default": {"serve": {"split": {"advanced": 25, "simple": 75}}}}
        ]
    })
}

async fn flag(server: &TestServer, key: &str) -> Value {
    let reply = server
        .admin(Method::GET, &format!("/api/v1/flags/{key}"), None)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    reply.body
}

async fn started() -> TestServer {
    let server = start().await;
    let applied = server.apply(flags_doc("Checkout flow")).await;
    assert_eq!(applied.status, StatusCode::OK, "{}", applied.text);
    server
}

#[tokio::test]
async fn pages_without_a_session_redirect_to_sign_in() {
    let server = started().await;
    let browser = Browser::new(&server);
    for path in [
        "/",
        "/flags",
        "/flags/new-checkout",
        "/flags/new-checkout/toggle",
    ] {
        let page = browser.get(path).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(page.location(), "/signin", "{path}");
    }
    let page = browser
        .post_form(
            "/flags/new-checkout/toggle",
            &[("enabled", "false"), ("confirm", "yes")],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location(), "/signin");
    assert_eq!(flag(&server, "new-checkout").await["enabled"], true);

    let signin = browser.get("/signin").await;
    assert_eq!(signin.status, StatusCode::OK);
    assert!(
        signin.text.contains(r#"<label for="token">"#),
        "{}",
        signin.text
    );
    assert!(
        signin
            .text
            .contains(r#"type="password" id="token" name="token""#)
    );
    let csp = signin.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("form-action 'self'"), "{csp}");
    assert!(!csp.contains("script-src"), "{csp}");

    let status = browser.get("/status").await;
    assert_eq!(
        status.status,
        StatusCode::OK,
        "the public page stays public"
    );
    server.stop().await;
}

#[tokio::test]
async fn sign_in_refuses_wrong_and_client_tokens() {
    let server = started().await;
    let browser = Browser::new(&server);
    let wrong = browser
        .post_form("/signin", &[("token", "not-a-token")])
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.text.contains("unknown or revoked"), "{}", wrong.text);
    assert!(wrong.set_cookie().is_none());

    let empty = browser.post_form("/signin", &[("token", "")]).await;
    assert_eq!(empty.status, StatusCode::UNAUTHORIZED);

    let client = server.client_token("production").await;
    let refused = browser.post_form("/signin", &[("token", &client)]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(refused.text.contains("client token"), "{}", refused.text);
    assert!(refused.set_cookie().is_none());

    let cross = browser
        .send(
            browser
                .post("/signin", &[("token", ADMIN_TOKEN)])
                .header("origin", "https://evil.example"),
        )
        .await;
    assert_eq!(cross.status, StatusCode::FORBIDDEN);
    assert!(cross.set_cookie().is_none());
    server.stop().await;
}

#[tokio::test]
async fn the_session_cookie_is_http_only_and_strict() {
    let server = started().await;
    let mut browser = Browser::new(&server);
    let page = browser
        .post_form("/signin", &[("token", ADMIN_TOKEN)])
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    let cookie = page.set_cookie().expect("cookie").to_owned();
    assert!(cookie.starts_with("rollgate_session="), "{cookie}");
    assert!(cookie.contains("; HttpOnly"), "{cookie}");
    assert!(cookie.contains("; SameSite=Strict"), "{cookie}");
    assert!(cookie.contains("; Path=/"), "{cookie}");
    assert!(!cookie.contains("Secure"), "plain http: {cookie}");

    let behind_tls = browser
        .send(
            browser
                .post("/signin", &[("token", ADMIN_TOKEN)])
                .header("x-forwarded-proto", "https"),
        )
        .await;
    assert!(
        behind_tls.set_cookie().unwrap().contains("; Secure"),
        "{:?}",
        behind_tls.set_cookie()
    );

    browser.sign_in(ADMIN_TOKEN).await;
    let list = browser.get("/").await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.text);
    assert!(list.text.contains("new-checkout") && list.text.contains("calc-model"));
    assert!(
        list.text.contains(ADMIN_NAME),
        "the nav names who is signed in"
    );

    // A tampered cookie is no session.
    browser.cookie = browser.cookie.map(|c| c.replacen('.', "0.", 1));
    assert_eq!(browser.get("/").await.status, StatusCode::SEE_OTHER);
    server.stop().await;
}

#[tokio::test]
async fn changes_without_the_right_csrf_token_are_refused() {
    let server = started().await;
    let mut browser = Browser::new(&server);
    browser.sign_in(ADMIN_TOKEN).await;
    let csrf = browser.csrf().await;
    let path = "/flags/new-checkout/toggle";
    let base = [
        ("environment", "production"),
        ("enabled", "false"),
        ("confirm", "yes"),
    ];

    let missing = browser.post_form(path, &base).await;
    assert_eq!(missing.status, StatusCode::FORBIDDEN, "{}", missing.text);
    assert!(missing.text.contains("nothing was changed"));

    let mut wrong = base.to_vec();
    wrong.push(("csrf", "0123456789abcdef"));
    assert_eq!(
        browser.post_form(path, &wrong).await.status,
        StatusCode::FORBIDDEN
    );

    // Another session's token does not fit this one.
    let mut other = Browser::new(&server);
    other.sign_in(ADMIN_TOKEN).await;
    let mut foreign = base.to_vec();
    let other_csrf = other.csrf().await;
    assert_ne!(other_csrf, csrf);
    foreign.push(("csrf", &other_csrf));
    assert_eq!(
        browser.post_form(path, &foreign).await.status,
        StatusCode::FORBIDDEN
    );

    let mut right = base.to_vec();
    right.push(("csrf", &csrf));
    let cross = browser
        .send(
            browser
                .post(path, &right)
                .header("origin", "http://evil.example"),
        )
        .await;
    assert_eq!(cross.status, StatusCode::FORBIDDEN);

    let restore = browser
        .post_form(
            "/flags/new-checkout/versions/1/restore",
            &[("environment", "production")],
        )
        .await;
    assert_eq!(restore.status, StatusCode::FORBIDDEN);

    let unchanged = flag(&server, "new-checkout").await;
    assert_eq!(unchanged["enabled"], true);
    assert_eq!(unchanged["version"], 1);
    server.stop().await;
}

#[tokio::test]
async fn toggling_needs_a_confirmation_and_turns_the_flag_off() {
    let server = started().await;
    let mut browser = Browser::new(&server);
    browser.sign_in(ADMIN_TOKEN).await;
    let confirm = browser
        .get("/flags/new-checkout/toggle?environment=production")
        .await;
    assert_eq!(confirm.status, StatusCode::OK, "{}", confirm.text);
    assert!(
        confirm
            .text
            .contains(r#"name="confirm" value="yes" required"#)
    );
    assert!(confirm.text.contains(r#"<label for="reason">"#));
    let csrf = confirm.csrf();
    let path = "/flags/new-checkout/toggle";

    let unconfirmed = browser
        .post_form(
            path,
            &[
                ("csrf", &csrf),
                ("environment", "production"),
                ("enabled", "false"),
            ],
        )
        .await;
    assert_eq!(unconfirmed.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(flag(&server, "new-checkout").await["enabled"], true);

    let done = browser
        .post_form(
            path,
            &[
                ("csrf", &csrf),
                ("environment", "production"),
                ("enabled", "false"),
                ("confirm", "yes"),
                ("reason", "error spike"),
            ],
        )
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.text);
    assert_eq!(
        done.location(),
        "/flags/new-checkout?environment=production"
    );
    let eval = server
        .eval(ADMIN_TOKEN, "new-checkout", json!({"targetingKey": "u1"}))
        .await;
    assert_eq!(eval.body["reason"], "DISABLED", "{}", eval.text);
    assert_eq!(eval.body["value"], false);

    let audit = server
        .admin(Method::GET, "/api/v1/audit?target_key=new-checkout", None)
        .await;
    let latest = &audit.body["entries"][0];
    assert_eq!(latest["actor"], ADMIN_NAME, "{}", audit.text);
    assert_eq!(latest["reason"], "error spike");

    let page = browser
        .get("/flags/new-checkout?environment=production")
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text.contains("error spike"));
    assert!(page.text.contains("Turn on…"));

    let missing = browser
        .get("/flags/no-such-flag?environment=production")
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let no_env = browser.get("/flags?environment=nowhere").await;
    assert_eq!(no_env.status, StatusCode::NOT_FOUND);
    server.stop().await;
}

#[tokio::test]
async fn user_text_is_escaped() {
    let server = start().await;
    let applied = server.apply(flags_doc(HOSTILE)).await;
    assert_eq!(applied.status, StatusCode::OK, "{}", applied.text);
    let mut browser = Browser::new(&server);
    browser.sign_in(ADMIN_TOKEN).await;
    let csrf = browser.csrf().await;
    let toggled = browser
        .post_form(
            "/flags/new-checkout/toggle",
            &[
                ("csrf", &csrf),
                ("environment", "production"),
                ("enabled", "false"),
                ("confirm", "yes"),
                ("reason", "<script>reason()</script>"),
            ],
        )
        .await;
    assert_eq!(toggled.status, StatusCode::SEE_OTHER, "{}", toggled.text);
    for path in [
        "/flags?q=new",
        "/flags/new-checkout?environment=production",
        "/flags/new-checkout/versions/1?environment=production",
    ] {
        let page = browser.get(path).await;
        assert_eq!(page.status, StatusCode::OK, "{path}: {}", page.text);
        assert!(!page.text.contains("<script"), "{path}: {}", page.text);
        assert!(page.text.contains("&lt;script&gt;"), "{path}");
    }
    let flag_page = browser
        .get("/flags/new-checkout?environment=production")
        .await;
    assert!(
        flag_page
            .text
            .contains("&lt;script&gt;reason()&lt;/script&gt;")
    );
    assert!(
        flag_page
            .text
            .contains("&lt;script&gt;alert('x')&lt;/script&gt;")
    );
    server.stop().await;
}

#[tokio::test]
async fn search_and_the_environment_selector_filter_the_list() {
    let server = started().await;
    let created = server
        .admin(
            Method::POST,
            "/api/v1/environments",
            Some(json!({"key": "staging"})),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let mut browser = Browser::new(&server);
    browser.sign_in(ADMIN_TOKEN).await;
    let found = browser.get("/flags?q=CALC").await;
    assert!(found.text.contains("calc-model"));
    assert!(!found.text.contains("new-checkout"));
    assert!(
        found.text.contains(r#"<option value="staging">"#),
        "{}",
        found.text
    );
    let staging = browser.get("/flags?environment=staging").await;
    assert_eq!(staging.status, StatusCode::OK);
    assert!(!staging.text.contains("calc-model"));
    assert!(
        staging
            .text
            .contains(r#"<option value="staging" selected>"#)
    );
    server.stop().await;
}

#[tokio::test]
async fn a_version_shows_its_diff_and_can_be_restored() {
    let server = started().await;
    let changed = server.apply(flags_doc("Checkout flow, second take")).await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.text);
    assert_eq!(flag(&server, "new-checkout").await["version"], 2);

    let mut browser = Browser::new(&server);
    browser.sign_in(ADMIN_TOKEN).await;
    let history = browser
        .get("/flags/new-checkout?environment=production")
        .await;
    assert!(
        history
            .text
            .contains("/flags/new-checkout/versions/1?environment=production")
    );
    let version = browser
        .get("/flags/new-checkout/versions/1?environment=production")
        .await;
    assert_eq!(version.status, StatusCode::OK, "{}", version.text);
    assert!(
        version
            .text
            .contains("−   &quot;description&quot;: &quot;Checkout flow&quot;,"),
        "{}",
        version.text
    );
    assert!(
        version
            .text
            .contains("+   &quot;description&quot;: &quot;Checkout flow, second take&quot;,")
    );
    let csrf = version.csrf();
    let restored = browser
        .post_form(
            "/flags/new-checkout/versions/1/restore",
            &[
                ("csrf", &csrf),
                ("environment", "production"),
                ("reason", "back to the first"),
            ],
        )
        .await;
    assert_eq!(restored.status, StatusCode::SEE_OTHER, "{}", restored.text);
    let now = flag(&server, "new-checkout").await;
    assert_eq!(now["description"], "Checkout flow");
    assert_eq!(now["version"], 3);
    assert_eq!(now["updatedBy"], ADMIN_NAME, "{now}");

    let missing = browser
        .get("/flags/new-checkout/versions/99?environment=production")
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    server.stop().await;
}

#[tokio::test]
async fn revoking_the_token_ends_the_session() {
    let server = started().await;
    let created = server
        .admin(
            Method::POST,
            "/api/v1/tokens",
            Some(json!({"name": "release-manager", "kind": "admin"})),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let secret = created.body["secret"].as_str().unwrap().to_owned();
    let id = created.body["token"]["id"].as_i64().unwrap();
    let mut browser = Browser::new(&server);
    browser.sign_in(&secret).await;
    let page = browser.get("/").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text.contains("release-manager"));

    let revoked = server
        .admin(Method::DELETE, &format!("/api/v1/tokens/{id}"), None)
        .await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.text);
    let after = browser.get("/").await;
    assert_eq!(after.status, StatusCode::SEE_OTHER);
    assert_eq!(after.location(), "/signin");
    server.stop().await;
}

#[tokio::test]
async fn sign_out_clears_the_cookie() {
    let server = started().await;
    let mut browser = Browser::new(&server);
    browser.sign_in(ADMIN_TOKEN).await;
    let csrf = browser.csrf().await;
    let refused = browser.post_form("/signout", &[]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);

    let out = browser.post_form("/signout", &[("csrf", &csrf)]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert_eq!(out.location(), "/signin");
    let cleared = out.set_cookie().expect("a clearing cookie");
    assert!(cleared.starts_with("rollgate_session=;"), "{cleared}");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    browser.cookie = None;
    assert_eq!(browser.get("/").await.status, StatusCode::SEE_OTHER);
    server.stop().await;
}

#[tokio::test]
async fn a_session_survives_a_restart() {
    let server = started().await;
    let mut browser = Browser::new(&server);
    browser.sign_in(ADMIN_TOKEN).await;
    let cookie = browser.cookie.clone();
    let stored = server.stop_keeping_data().await;
    let server = common::start_in_with(stored, &server::ServerConfig::default()).await;
    let mut browser = Browser::new(&server);
    browser.cookie = cookie;
    let page = browser.get("/flags").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert!(page.text.contains("new-checkout"));
    server.stop().await;
}

#[tokio::test]
async fn the_list_shows_a_running_rollouts_percentage() {
    let server = start().await;
    let applied = server
        .apply(json!({
            "flags": [{
                "key": "calc-model", "type": "string", "off_variant": "simple",
                "variants": {"simple": "simple", "advanced": "advanced"},
                "default": {"serve": {"variant": "simple"}}
            }],
            "rollouts": [{
                "flag": "calc-model", "treatment": "advanced", "control": "simple",
                "phases": [
                    {"name": "beta", "percent": 5, "duration": "14d"},
                    {"name": "everyone", "percent": 100, "duration": "1d"}
                ]
            }]
        }))
        .await;
    assert_eq!(applied.status, StatusCode::OK, "{}", applied.text);
    let mut browser = Browser::new(&server);
    browser.sign_in(ADMIN_TOKEN).await;
    let before = browser.get("/flags").await;
    assert!(before.text.contains("<td>pending</td>"), "{}", before.text);

    server.start_rollout("calc-model").await;
    let list = browser.get("/flags").await;
    assert!(list.text.contains("5% · beta (running)"), "{}", list.text);
    let flag_page = browser
        .get("/flags/calc-model?environment=production")
        .await;
    assert!(flag_page.text.contains("5% · beta (running)"));
    assert!(
        flag_page.text.contains("to 5% of units"),
        "{}",
        flag_page.text
    );
    server.stop().await;
}
