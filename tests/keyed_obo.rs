//! On behalf of each caller: an axum gateway exchanges each caller's token
//! (RFC 8693) for a downstream one, cached per caller, keyed by the
//! token's fingerprint, never longer than the caller's token lives; and
//! keys reach logs as fingerprints only.

mod support;

use std::{
    net::SocketAddr,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use axum::{
    extract::State,
    http::{HeaderMap, StatusCode},
    routing::get,
    Router,
};
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use support::{
    alf_error, capture_tracing, endpoint_builder, get as get_request, guard, hold_clock,
    hyper_client, HyperClient, ResourceServer, TokenServer,
};
use tower::{ServiceBuilder, ServiceExt};
use tower_alf::{
    grant::{SubjectToken, TokenExchange},
    keyed::{CallerToken, KeyedBearerAuth, TokenSources},
    BearerAuthLayer, TokenEndpoint, TokenSource,
};

/// An unsigned JWT for `sub` that expires `exp_in` seconds from now on the
/// wall clock (negative: already expired).
fn jwt(sub: &str, exp_in: i64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let part = |json: String| URL_SAFE_NO_PAD.encode(json);
    format!(
        "{}.{}.c2ln",
        part(r#"{"alg":"none","typ":"JWT"}"#.to_owned()),
        part(format!(r#"{{"sub":"{sub}","exp":{}}}"#, now + exp_in)),
    )
}

fn on_behalf_of(endpoint: TokenEndpoint) -> TokenSources<CallerToken> {
    TokenSources::on_behalf_of(move |caller: &CallerToken| {
        let exchange = TokenExchange::new(endpoint.clone(), caller.subject())
            .audience("https://orders.internal");
        Ok(TokenSource::new(exchange))
    })
    .build()
}

type Downstream =
    KeyedBearerAuth<HyperClient, CallerToken, tower_alf::keyed::FromExtension<CallerToken>>;

#[derive(Clone)]
struct Gateway {
    downstream: Downstream,
    url: String,
}

/// The gateway's handler: the caller's token, as a key, goes with the
/// downstream request; the caller's token itself does not.
async fn orders(State(gateway): State<Gateway>, headers: HeaderMap) -> (StatusCode, Bytes) {
    let Some(caller) = CallerToken::from_headers(&headers) else {
        return (StatusCode::UNAUTHORIZED, Bytes::new());
    };
    let mut request = get_request(&gateway.url);
    request.extensions_mut().insert(caller);
    match gateway.downstream.oneshot(request).await {
        Ok(response) => {
            let status = response.status();
            let body = response.into_body().collect().await.unwrap().to_bytes();
            (status, body)
        }
        Err(error) => (StatusCode::BAD_GATEWAY, Bytes::from(error.to_string())),
    }
}

async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

async fn call_gateway(gateway: SocketAddr, caller_token: &str) -> (StatusCode, String) {
    let request = http::Request::get(format!("http://{gateway}/orders"))
        .header("authorization", format!("Bearer {caller_token}"))
        .body(Full::<Bytes>::default())
        .unwrap();
    let response = hyper_client().request(request).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn a_gateway_exchanges_each_callers_token_once_and_forwards_with_it() {
    let (logs, _capture) = capture_tracing();
    let sts = TokenServer::start().await;
    sts.token_prefix("downstream-");
    let api = ResourceServer::start().await;
    let callers = on_behalf_of(endpoint_builder(&sts).build().unwrap());
    let downstream = ServiceBuilder::new()
        .layer(BearerAuthLayer::keyed_by_extension(callers.clone()))
        .service(hyper_client());
    let gateway = serve(
        Router::new()
            .route("/orders", get(orders))
            .with_state(Gateway {
                downstream,
                url: api.url("/api/orders"),
            }),
    )
    .await;

    let alice = jwt("alice", 3600);
    let bob = jwt("bob", 3600);
    for caller in [&alice, &bob, &alice, &alice, &bob] {
        let (status, body) = guard(call_gateway(gateway, caller), "the gateway").await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    let exchanges = sts.seen();
    assert_eq!(exchanges.len(), 2, "one exchange per caller");
    for (seen, subject) in exchanges.iter().zip([&alice, &bob]) {
        assert_eq!(
            seen.field("grant_type"),
            Some("urn:ietf:params:oauth:grant-type:token-exchange")
        );
        assert_eq!(seen.field("subject_token"), Some(subject.as_str()));
        assert_eq!(
            seen.field("subject_token_type"),
            Some(SubjectToken::ACCESS_TOKEN)
        );
        assert_eq!(seen.field("audience"), Some("https://orders.internal"));
    }
    let forwarded: Vec<_> = api.tokens().into_iter().flatten().collect();
    assert_eq!(
        forwarded,
        [
            "downstream-1",
            "downstream-2",
            "downstream-1",
            "downstream-1",
            "downstream-2"
        ],
        "each caller's requests went with that caller's exchanged token"
    );
    assert_eq!(callers.stats().live_keys, 2);

    let logs = logs.text();
    assert!(callers
        .stats_for(&CallerToken::new(alice.as_str()))
        .is_some());
    assert!(
        logs.contains("keyed_token{key="),
        "spans name the key: {logs}"
    );
    assert!(
        !logs.contains(&alice) && !logs.contains(&bob),
        "no caller token in logs"
    );
    assert!(!logs.contains("downstream-1"), "no exchanged token in logs");
}

#[tokio::test(start_paused = true)]
async fn an_exchanged_token_is_not_used_past_the_callers_own_expiry() {
    let _clock = hold_clock();
    let sts = TokenServer::start().await;
    let callers = on_behalf_of(endpoint_builder(&sts).build().unwrap());
    let caller = CallerToken::new(jwt("carol", 120));
    assert!(caller.expires_at().is_some(), "exp read from the JWT");

    let first = guard(callers.token(&caller), "an exchange").await.unwrap();
    tokio::time::advance(Duration::from_secs(100)).await;
    let again = guard(callers.token(&caller), "the cached token")
        .await
        .unwrap();
    assert_eq!(
        again.id(),
        first.id(),
        "within the caller's lifetime: cached"
    );
    assert_eq!(sts.requests(), 1);

    // The exchanged token lasts an hour, but carol's own token is gone at 120 s.
    tokio::time::advance(Duration::from_secs(21)).await;
    assert!(
        callers.get(&caller).is_none(),
        "the entry ended with the caller's token"
    );
    assert_eq!(callers.stats().live_keys, 0);
}

#[tokio::test]
async fn an_expired_callers_token_is_not_exchanged() {
    let sts = TokenServer::start().await;
    let api = ResourceServer::start().await;
    let callers = on_behalf_of(endpoint_builder(&sts).build().unwrap());
    let client = ServiceBuilder::new()
        .layer(BearerAuthLayer::keyed_by_extension(callers.clone()))
        .service(hyper_client());
    let mut request = get_request(&api.url("/api/orders"));
    request
        .extensions_mut()
        .insert(CallerToken::new(jwt("dave", -10)));

    let error = client.oneshot(request).await.unwrap_err();
    assert!(alf_error(&error).is_permanent(), "{error}");
    assert_eq!(sts.requests(), 0, "no exchange");
    assert_eq!(api.requests(), 0, "not sent");
    assert_eq!(callers.stats().factory_failures, 1);
}

#[test]
fn a_caller_token_is_compared_and_shown_by_fingerprint_only() {
    let mut headers = HeaderMap::new();
    headers.insert("authorization", "bearer opaque-Xy7".parse().unwrap());
    let caller = CallerToken::from_headers(&headers).unwrap();
    assert_eq!(caller, CallerToken::new("opaque-Xy7"));
    assert_ne!(caller, CallerToken::new("opaque-Xy8"));
    assert!(!format!("{caller:?}").contains("opaque-Xy7"));
    assert_eq!(
        caller.remaining(),
        CallerToken::DEFAULT_LIFETIME,
        "opaque: the default"
    );
    for bad in ["Basic abc", "Bearer", "Bearer ", "Bearer a b"] {
        headers.insert("authorization", bad.parse().unwrap());
        assert!(CallerToken::from_headers(&headers).is_none(), "{bad:?}");
    }
}
