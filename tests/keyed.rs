//! Keyed token sources through one layer: per-key single flight, per-key
//! invalidation, factory failures, pass-through without a key, per-request
//! parameters, against a real token endpoint over loopback.

mod support;

use std::{
    collections::{HashMap, HashSet},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
};

use bytes::Bytes;
use http::{header::AUTHORIZATION, Request, Response};
use http_body_util::Full;
use support::{
    alf_error, endpoint_builder, get, guard, hyper_client, send, ResourceServer, TokenServer,
};
use tower::{BoxError, Service, ServiceBuilder, ServiceExt};
use tower_alf::{
    grant::ClientCredentials,
    keyed::{TokenParams, TokenSources},
    BearerAuthLayer, Error, TokenEndpoint, TokenSource,
};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Tenant(String);

/// One client-credentials source per tenant, asking for scope `tenant:<id>`.
fn tenants(endpoint: TokenEndpoint) -> TokenSources<Tenant> {
    TokenSources::new(move |tenant: &Tenant| {
        Ok(TokenSource::builder(
            ClientCredentials::new(endpoint.clone()).scope(format!("tenant:{}", tenant.0)),
        )
        .jitter(0.0)
        .build())
    })
}

/// An inner service that answers with the `Authorization` it got (or none).
fn echo_authorization() -> impl tower::Service<
    Request<Full<Bytes>>,
    Response = Response<String>,
    Error = BoxError,
    Future: Send,
> + Clone
       + Send {
    tower::service_fn(|request: Request<Full<Bytes>>| async move {
        let header = request
            .headers()
            .get(AUTHORIZATION)
            .map(|value| value.to_str().unwrap().to_owned())
            .unwrap_or_default();
        Ok::<_, BoxError>(Response::new(header))
    })
}

fn for_tenant(tenant: &str) -> Request<Full<Bytes>> {
    let mut request = get("https://api.example/orders");
    request.extensions_mut().insert(Tenant(tenant.to_owned()));
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_concurrent_first_requests_over_100_keys_make_100_fetches() {
    let server = TokenServer::start().await;
    let gate = server.hold();
    let sources = tenants(endpoint_builder(&server).build().unwrap());
    let client = ServiceBuilder::new()
        .layer(BearerAuthLayer::keyed_by_extension(sources.clone()))
        .service(echo_authorization());

    let calls: Vec<_> = (0..10_000)
        .map(|n| {
            let client = client.clone();
            let tenant = format!("t{}", n % 100);
            tokio::spawn(async move {
                let answer = client.oneshot(for_tenant(&tenant)).await.unwrap();
                (tenant, answer.into_body())
            })
        })
        .collect();
    guard(server.requests_reached(100), "a fetch per key").await;
    gate.open();
    let mut tokens: HashMap<String, HashSet<String>> = HashMap::new();
    for call in calls {
        let (tenant, token) = guard(call, "every request to end").await.unwrap();
        tokens.entry(tenant).or_default().insert(token);
    }

    assert_eq!(server.requests(), 100, "exactly one fetch per key");
    let scopes: HashSet<String> = server
        .seen()
        .iter()
        .map(|seen| seen.field("scope").unwrap().to_owned())
        .collect();
    assert_eq!(scopes.len(), 100, "each key asked for its own token once");
    assert_eq!(tokens.len(), 100);
    assert!(
        tokens.values().all(|set| set.len() == 1),
        "every request of a key got that key's one token"
    );
    let distinct: HashSet<_> = tokens.values().flatten().collect();
    assert_eq!(distinct.len(), 100, "no two keys share a token");
    let stats = sources.stats();
    assert_eq!((stats.live_keys, stats.created), (100, 100));
    assert_eq!(stats.total.fetches, 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_tasks_over_a_few_keys_make_one_fetch_per_key_each_counted_apart() {
    let server = TokenServer::start().await;
    let sources = tenants(endpoint_builder(&server).build().unwrap());
    let client = ServiceBuilder::new()
        .layer(BearerAuthLayer::keyed_by_extension(sources.clone()))
        .service(echo_authorization());
    let calls: Vec<_> = (0..64)
        .map(|n| {
            let mut client = client.clone();
            tokio::spawn(async move {
                for i in 0..50 {
                    let tenant = format!("t{}", (n + i) % 4);
                    let answer = client
                        .ready()
                        .await
                        .unwrap()
                        .call(for_tenant(&tenant))
                        .await
                        .unwrap();
                    assert!(answer.body().starts_with("Bearer tok-"));
                }
            })
        })
        .collect();
    for call in calls {
        guard(call, "a task to end").await.unwrap();
    }
    assert_eq!(server.requests(), 4);
    for n in 0..4 {
        let stats = sources.stats_for(&Tenant(format!("t{n}"))).unwrap();
        assert_eq!(stats.fetches, 1, "tenant t{n}");
    }
}

#[tokio::test]
async fn a_401_for_one_tenant_refreshes_that_tenant_only() {
    let server = TokenServer::start().await;
    let api = ResourceServer::start().await;
    let sources = tenants(endpoint_builder(&server).build().unwrap());
    let client = ServiceBuilder::new()
        .layer(BearerAuthLayer::keyed_by_extension(sources.clone()))
        .service(hyper_client());
    let request = |tenant: &str| {
        let mut request = get(&api.url("/api/orders"));
        request.extensions_mut().insert(Tenant(tenant.to_owned()));
        request
    };

    let a = send(&client, request("a")).await.unwrap().token();
    let b = send(&client, request("b")).await.unwrap().token();
    assert_ne!(a, b);
    api.reject(&a);
    let a2 = send(&client, request("a")).await.unwrap().token();
    assert_ne!(a2, a, "tenant a's request was replayed with a new token");
    let b2 = send(&client, request("b")).await.unwrap().token();
    assert_eq!(b2, b, "tenant b's token was not touched");

    assert_eq!(server.requests(), 3);
    let scopes: Vec<_> = server
        .seen()
        .iter()
        .map(|seen| seen.field("scope").unwrap().to_owned())
        .collect();
    assert_eq!(scopes, ["tenant:a", "tenant:b", "tenant:a"]);
    let stats_a = sources.stats_for(&Tenant("a".into())).unwrap();
    let stats_b = sources.stats_for(&Tenant("b".into())).unwrap();
    assert_eq!((stats_a.fetches, stats_a.replays), (2, 1));
    assert_eq!((stats_b.fetches, stats_b.replays), (1, 0));
    assert_eq!(sources.stats().total.replays, 1);
}

#[tokio::test]
async fn a_request_without_a_key_passes_through_untouched() {
    let server = TokenServer::start().await;
    let sources = tenants(endpoint_builder(&server).build().unwrap());
    let client = ServiceBuilder::new()
        .layer(BearerAuthLayer::keyed(
            sources.clone(),
            |request: &Request<Full<Bytes>>| {
                let tenant = request.headers().get("x-tenant")?.to_str().ok()?;
                Some(Tenant(tenant.to_owned()))
            },
        ))
        .service(echo_authorization());

    let answer = client
        .clone()
        .oneshot(get("https://api.example/health"))
        .await
        .unwrap();
    assert_eq!(answer.body(), "", "no token");
    assert_eq!(server.requests(), 0);
    assert!(sources.is_empty());

    let mut request = get("https://api.example/orders");
    request
        .headers_mut()
        .insert("x-tenant", "acme".parse().unwrap());
    let answer = client.oneshot(request).await.unwrap();
    assert_eq!(answer.body(), "Bearer tok-1");
}

#[tokio::test]
async fn a_failing_factory_fails_that_request_only_and_keeps_nothing() {
    let server = TokenServer::start().await;
    let endpoint = endpoint_builder(&server).build().unwrap();
    let made = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&made);
    let sources = TokenSources::new(move |tenant: &Tenant| {
        counter.fetch_add(1, Ordering::SeqCst);
        if tenant.0 == "unknown" {
            return Err(Error::permanent("no configuration for this tenant"));
        }
        Ok(TokenSource::new(ClientCredentials::new(endpoint.clone())))
    });
    let client = ServiceBuilder::new()
        .layer(BearerAuthLayer::keyed_by_extension(sources.clone()))
        .service(echo_authorization());

    let error = client
        .clone()
        .oneshot(for_tenant("unknown"))
        .await
        .unwrap_err();
    let error = alf_error(&error);
    assert!(error.is_permanent(), "{error}");
    assert!(error
        .to_string()
        .contains("no configuration for this tenant"));
    let ok = client.clone().oneshot(for_tenant("acme")).await.unwrap();
    assert_eq!(ok.body(), "Bearer tok-1");
    assert!(client.oneshot(for_tenant("unknown")).await.is_err());

    assert_eq!(made.load(Ordering::SeqCst), 3, "a failure is not kept");
    let stats = sources.stats();
    assert_eq!((stats.live_keys, stats.factory_failures), (1, 2));
    assert_eq!(server.requests(), 1);
}

#[tokio::test]
async fn requests_that_differ_only_in_scope_order_share_a_token() {
    let server = TokenServer::start().await;
    let endpoint = endpoint_builder(&server).build().unwrap();
    let sources = TokenSources::new(move |params: &TokenParams| {
        Ok(TokenSource::new(
            params.apply(ClientCredentials::new(endpoint.clone())),
        ))
    });
    let client = ServiceBuilder::new()
        .layer(BearerAuthLayer::keyed_by_extension(sources.clone()))
        .service(echo_authorization());
    let send_with = |params: TokenParams| {
        let client = client.clone();
        async move {
            let mut request = get("https://api.example/orders");
            request.extensions_mut().insert(params);
            client.oneshot(request).await.unwrap().into_body()
        }
    };

    let read_write = send_with(
        TokenParams::builder()
            .scope("orders:read")
            .scope("orders:write")
            .audience("https://orders.example")
            .build(),
    )
    .await;
    let write_read = send_with(
        TokenParams::builder()
            .scopes(["orders:write", "orders:read", "orders:read"])
            .audience("https://orders.example")
            .build(),
    )
    .await;
    assert_eq!(read_write, write_read, "one token for both orders");
    let other_audience = send_with(
        TokenParams::builder()
            .scope("orders:read")
            .scope("orders:write")
            .audience("https://billing.example")
            .build(),
    )
    .await;
    assert_ne!(other_audience, read_write, "every parameter counts");

    assert_eq!(server.requests(), 2);
    let first = &server.seen()[0];
    assert_eq!(first.field("scope"), Some("orders:read orders:write"));
    assert_eq!(first.field("audience"), Some("https://orders.example"));
    assert_eq!(sources.len(), 2);
}
