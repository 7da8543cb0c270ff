//! A real OpenFeature client that no one here wrote — the published `open-feature`
//! SDK with the `open-feature-ofrep` provider — against the running server.
//!
//! The provider (0.1.2) reports every success with reason `STATIC` whatever the
//! server sent, so the reason the server put on the wire is checked through the
//! same endpoint with a plain HTTP call next to each SDK call.

mod common;

use common::{ADMIN_TOKEN, start, typed_flags};
use open_feature::{
    EvaluationContext, EvaluationErrorCode, EvaluationReason, OpenFeature, StructValue,
};
use open_feature_ofrep::{OfrepOptions, OfrepProvider};
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use serde_json::json;

#[tokio::test]
async fn the_published_sdk_resolves_every_kind_of_flag() {
    let server = start().await;
    assert_eq!(
        server.apply(typed_flags()).await.status,
        reqwest::StatusCode::OK
    );

    let mut headers = HeaderMap::new();
    headers.insert(
        AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {ADMIN_TOKEN}")).unwrap(),
    );
    let provider = OfrepProvider::new(OfrepOptions {
        base_url: server.url.clone(),
        headers,
        ..Default::default()
    })
    .await
    .expect("provider");
    let mut api = OpenFeature::singleton_mut().await;
    api.set_provider(provider).await;
    let client = api.create_client();
    drop(api);

    let user = EvaluationContext::default()
        .with_targeting_key("user-7")
        .with_custom_field("plan", "free");
    let wire_reason = |key: &'static str, context: serde_json::Value| {
        let server = &server;
        async move {
            server.eval(ADMIN_TOKEN, key, context).await.body["reason"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        }
    };

    let b = client
        .get_bool_details("new-checkout", Some(&user), None)
        .await
        .expect("boolean");
    assert_eq!((b.value, b.variant.as_deref()), (true, Some("on")));
    assert_eq!(b.reason, Some(EvaluationReason::Static));
    assert_eq!(
        wire_reason("new-checkout", json!({"targetingKey": "user-7"})).await,
        "STATIC"
    );

    let s = client
        .get_string_details("calc-model", Some(&user), None)
        .await
        .expect("string");
    assert_eq!(
        (s.value.as_str(), s.variant.as_deref()),
        ("simple", Some("simple"))
    );
    let tester = user.clone().with_custom_field("email", "ana@example.com");
    let s = client
        .get_string_details("calc-model", Some(&tester), None)
        .await
        .expect("string");
    assert_eq!(
        (s.value.as_str(), s.variant.as_deref()),
        ("advanced", Some("advanced"))
    );
    assert_eq!(
        wire_reason(
            "calc-model",
            json!({"targetingKey": "user-7", "email": "ana@example.com"})
        )
        .await,
        "TARGETING_MATCH"
    );

    let i = client
        .get_int_details("max-items", Some(&user), None)
        .await
        .expect("integer");
    assert_eq!((i.value, i.variant.as_deref()), (100, Some("many")));

    let f = client
        .get_float_details("discount-rate", Some(&user), None)
        .await
        .expect("float");
    assert_eq!((f.value, f.variant.as_deref()), (1.0, Some("some")));

    let o = client
        .get_struct_details::<StructValue>("ui-config", Some(&user), None)
        .await
        .expect("object");
    assert_eq!(o.variant.as_deref(), Some("fancy"));
    assert_eq!(
        o.value.fields.get("theme").and_then(|v| v.as_str()),
        Some("dark")
    );
    assert_eq!(
        o.value.fields.get("columns").and_then(|v| v.as_i64()),
        Some(3)
    );

    // A split: sticky per key, and the server's own evaluation agrees with the SDK's.
    for i in 0..20 {
        let key = format!("user-{i}");
        let ctx = EvaluationContext::default()
            .with_targeting_key(key.clone())
            .with_custom_field("plan", "pro");
        let sdk = client
            .get_string_details("calc-model", Some(&ctx), None)
            .await
            .expect("split");
        let wire = server
            .eval(
                ADMIN_TOKEN,
                "calc-model",
                json!({"targetingKey": key, "plan": "pro"}),
            )
            .await;
        assert_eq!(wire.body["reason"], "SPLIT");
        assert_eq!(Some(sdk.value.as_str()), wire.body["value"].as_str());
        assert_eq!(sdk.variant.as_deref(), wire.body["variant"].as_str());
    }

    let d = client
        .get_bool_details("legacy-export", Some(&user), None)
        .await
        .expect("disabled");
    assert_eq!((d.value, d.variant.as_deref()), (false, Some("off")));
    assert_eq!(wire_reason("legacy-export", json!({})).await, "DISABLED");

    let missing = client
        .get_bool_details("no-such-flag", Some(&user), None)
        .await;
    assert_eq!(
        missing.err().map(|e| e.code),
        Some(EvaluationErrorCode::FlagNotFound)
    );
    // The SDK's value API falls back to the code default on an error.
    assert!(
        client
            .get_bool_value("no-such-flag", Some(&user), None)
            .await
            .is_err()
    );

    server.stop().await;
}
