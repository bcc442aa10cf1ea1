//! Keyed sources over a shared store: each key has its own store key, so a
//! fleet (here two gateways, each with its own `TokenSources`) shares each
//! tenant's token, and the fleet-wide single flight is per key. With a
//! `MemoryStore`, and with real Redis at 127.0.0.1:6379 (feature `redis`).

mod support;

use std::time::{SystemTime, UNIX_EPOCH};

use support::{endpoint_builder, guard, TokenServer};
use tower_alf::{
    grant::ClientCredentials,
    keyed::{TokenParams, TokenSources},
    store::{MemoryStore, StoreGrant, TokenStore},
    TokenEndpoint, TokenSource,
};

/// One gateway's map: a tenant is a scope set; its store key is the
/// grant's key with the tenant's parameters.
fn gateway<S>(endpoint: TokenEndpoint, store: S, namespace: String) -> TokenSources<TokenParams>
where
    S: TokenStore + Clone + Send + Sync + 'static,
{
    TokenSources::new(move |params: &TokenParams| {
        let base = ClientCredentials::new(endpoint.clone());
        let key = params.cache_key(base.cache_key().namespace(namespace.as_str()));
        let grant = params.apply(base);
        Ok(TokenSource::new(StoreGrant::new(grant, store.clone(), key)))
    })
}

fn tenant(n: usize) -> TokenParams {
    TokenParams::builder()
        .scope("orders:read")
        .audience(format!("https://tenant-{n}.example"))
        .build()
}

async fn a_fleet_shares_each_keys_token<S>(store: S, namespace: String)
where
    S: TokenStore + Clone + Send + Sync + 'static,
{
    let server = TokenServer::start().await;
    let endpoint = endpoint_builder(&server).build().unwrap();
    let one = gateway(endpoint.clone(), store.clone(), namespace.clone());
    let two = gateway(endpoint, store, namespace);

    // Eight tenants, asked for by both gateways at once.
    let gate = server.hold();
    let calls: Vec<_> = (0..8)
        .flat_map(|n| [(one.clone(), n), (two.clone(), n)])
        .map(|(sources, n)| tokio::spawn(async move { (n, sources.token(&tenant(n)).await) }))
        .collect();
    guard(server.requests_reached(8), "a fetch per tenant").await;
    gate.open();
    let mut tokens = vec![Vec::new(); 8];
    for call in calls {
        let (n, token) = guard(call, "a token").await.unwrap();
        tokens[n].push(token.unwrap().access_token().secret().to_owned());
    }

    assert_eq!(
        server.requests(),
        8,
        "one token request per tenant, fleet-wide"
    );
    for (n, pair) in tokens.iter().enumerate() {
        assert_eq!(
            pair[0], pair[1],
            "both gateways hold tenant {n}'s one token"
        );
    }
    let audiences: std::collections::HashSet<_> = server
        .seen()
        .iter()
        .map(|seen| seen.field("audience").unwrap().to_owned())
        .collect();
    assert_eq!(audiences.len(), 8, "each tenant fetched its own token");
    assert_eq!(one.stats().total.fetches + two.stats().total.fetches, 16);
}

fn namespace(test: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("alf-test:{test}:{}:{nanos}", std::process::id())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_share_each_tenants_token_through_a_memory_store() {
    a_fleet_shares_each_keys_token(MemoryStore::new(), namespace("keyed-memory")).await;
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_share_each_tenants_token_through_redis() {
    let store = tower_alf::store::RedisStore::new("redis://127.0.0.1:6379/").unwrap();
    a_fleet_shares_each_keys_token(store, namespace("keyed-redis")).await;
}
