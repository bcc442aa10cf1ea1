//! The device authorization grant (RFC 8628) against loopback endpoints:
//! what is sent, how polling paces itself (`interval`, `slow_down`, the
//! device code's expiry), how each end is reported, cancellation, and bad
//! answers from the device authorization endpoint.
//!
//! The timing tests use the scripted raw-TCP endpoint (`scripted/`), which
//! records when each request arrived on paused time: loopback delivers
//! bytes within the `write` call, so no virtual time passes during I/O and
//! the waits are asserted exactly. The request-content test uses the axum
//! token server (`support/`), which records headers and forms.

mod scripted;
mod support;

use std::{sync::Arc, time::Duration};

use scripted::{json, Endpoint, Reply};
use tokio::time::Instant;
use tower_alf::{
    grant::{DeviceAuthorization, PendingDeviceAuthorization, RefreshTokenGrant},
    ClientAuth, RetryPolicy, TokenEndpoint,
};

const DEVICE_CODE: &str = "dc-GmRhmhcxhwAzkoEqiMEg_DnyEysNkuNhszIySk9eS";

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// A device authorization answer; `extra` is spliced in (`, "interval": 0`).
fn device_answer(expires_in: &str, extra: &str) -> Reply {
    json(
        200,
        &format!(
            r#"{{"device_code":"{DEVICE_CODE}","user_code":"WDJB-MJHT",
                "verification_uri":"https://idp.example/device",
                "verification_uri_complete":"https://idp.example/device?user_code=WDJB-MJHT",
                "expires_in":{expires_in}{extra}}}"#
        ),
    )
}

fn oauth_error(code: &str) -> Reply {
    json(400, &format!(r#"{{"error":"{code}"}}"#))
}

fn pending() -> Reply {
    oauth_error("authorization_pending")
}

fn token_set() -> Reply {
    json(
        200,
        r#"{"access_token":"at-1","token_type":"Bearer","expires_in":3600,"refresh_token":"rt-1"}"#,
    )
}

/// The device and token endpoints, and a started flow.
struct Flow {
    device: Arc<Endpoint>,
    token: Arc<Endpoint>,
    pending: PendingDeviceAuthorization,
    /// When the flow started (before the device authorization request).
    started: Instant,
}

async fn start(device_reply: Reply, polls: impl IntoIterator<Item = Reply>) -> Flow {
    let device = Endpoint::start([device_reply]).await;
    let token = Endpoint::start(polls).await;
    let endpoint = TokenEndpoint::builder(&token.url)
        .client_auth(ClientAuth::basic("device-client", "secret"))
        .build()
        .unwrap();
    let started = Instant::now();
    let pending = DeviceAuthorization::new(endpoint, &device.url)
        .scope("openid")
        .start()
        .await
        .unwrap();
    Flow {
        device,
        token,
        pending,
        started,
    }
}

#[tokio::test(start_paused = true)]
async fn polls_every_5_s_by_default_and_10_s_after_one_slow_down() {
    let flow = start(
        device_answer("1800", ""),
        [
            pending(),
            pending(),
            oauth_error("slow_down"),
            pending(),
            token_set(),
        ],
    )
    .await;
    assert_eq!(flow.pending.interval(), secs(5));
    let token = flow.pending.poll().await.unwrap();
    assert_eq!(token.access_token().secret(), "at-1");
    // 5 s before the first poll, 5, 5, then 10 after the slow_down.
    assert_eq!(flow.token.requests(), 5);
    assert_eq!(flow.token.gaps(), [secs(5), secs(5), secs(10), secs(10)]);
    assert_eq!(flow.started.elapsed(), secs(35));
    assert_eq!(flow.pending.interval(), secs(10));
    assert_eq!(flow.device.requests(), 1);
}

#[tokio::test(start_paused = true)]
async fn every_slow_down_adds_5_s_to_the_servers_interval() {
    let slow = || oauth_error("slow_down");
    let flow = start(
        device_answer("1800", r#","interval":3"#),
        [slow(), slow(), slow(), token_set()],
    )
    .await;
    flow.pending.poll().await.unwrap();
    assert_eq!(flow.token.gaps(), [secs(8), secs(13), secs(18)]);
    assert_eq!(flow.started.elapsed(), secs(3 + 8 + 13 + 18));
    assert_eq!(flow.pending.interval(), secs(18));
}

#[tokio::test(start_paused = true)]
async fn slow_down_stops_adding_at_the_60_s_cap() {
    let slow = || oauth_error("slow_down");
    let flow = start(
        device_answer("1800", r#","interval":50"#),
        [slow(), slow(), slow(), token_set()],
    )
    .await;
    flow.pending.poll().await.unwrap();
    assert_eq!(flow.token.gaps(), [secs(55), secs(60), secs(60)]);
}

#[tokio::test(start_paused = true)]
async fn an_interval_of_0_is_the_default_5_s_and_one_of_10_to_the_9_is_cut_to_60_s() {
    let zero = start(device_answer("1800", r#","interval":0"#), [token_set()]).await;
    assert_eq!(zero.pending.interval(), secs(5));
    zero.pending.poll().await.unwrap();
    assert_eq!(zero.started.elapsed(), secs(5));

    let huge = start(
        device_answer("1800", r#","interval":1000000000"#),
        [pending(), token_set()],
    )
    .await;
    assert_eq!(huge.pending.interval(), secs(60));
    huge.pending.poll().await.unwrap();
    assert_eq!(huge.token.gaps(), [secs(60)]);
    assert_eq!(huge.started.elapsed(), secs(120));
}

#[tokio::test(start_paused = true)]
async fn a_huge_expires_in_is_cut_to_an_hour() {
    let flow = start(device_answer("1e30", ""), []).await;
    assert_eq!(flow.pending.expires_in(), secs(3600));
    assert_eq!(flow.pending.expires_at() - flow.started, secs(3600));
}

#[tokio::test(start_paused = true)]
async fn expired_token_from_the_server_ends_polling() {
    let flow = start(
        device_answer("1800", ""),
        [pending(), oauth_error("expired_token")],
    )
    .await;
    let e = flow.pending.poll().await.unwrap_err();
    assert!(e.is_expired_token(), "{e}");
    assert!(e.is_oauth());
    assert!(!e.is_access_denied());
    assert_eq!(flow.token.requests(), 2);
    assert_eq!(flow.started.elapsed(), secs(10));
}

#[tokio::test(start_paused = true)]
async fn access_denied_ends_polling() {
    let flow = start(
        device_answer("1800", ""),
        [pending(), pending(), oauth_error("access_denied")],
    )
    .await;
    let e = flow.pending.poll().await.unwrap_err();
    assert!(e.is_access_denied(), "{e}");
    assert!(!e.is_expired_token());
    assert_eq!(e.oauth_error().unwrap().code().as_str(), "access_denied");
    assert_eq!(flow.token.requests(), 3);
}

#[tokio::test(start_paused = true)]
async fn the_device_codes_own_expiry_ends_polling_without_a_request() {
    // Polls at 5 s and 10 s; the next would be at 15 s, past the 12 s expiry.
    let flow = start(device_answer("12", ""), [pending(), pending()]).await;
    let e = flow.pending.poll().await.unwrap_err();
    assert!(e.is_expired_token(), "{e}");
    assert!(!e.is_oauth(), "the server did not say it: {e}");
    assert_eq!(flow.token.requests(), 2);
    assert_eq!(flow.started.elapsed(), secs(10));
    // Asking again sends nothing either.
    assert!(flow.pending.poll().await.unwrap_err().is_expired_token());
    assert_eq!(flow.token.requests(), 2);
}

#[tokio::test(start_paused = true)]
async fn another_oauth_error_ends_polling_with_that_error() {
    let flow = start(device_answer("1800", ""), [oauth_error("invalid_client")]).await;
    let e = flow.pending.poll().await.unwrap_err();
    assert!(e.is_oauth());
    assert_eq!(e.oauth_error().unwrap().code().as_str(), "invalid_client");
    assert!(!e.is_access_denied() && !e.is_expired_token());
    assert_eq!(flow.token.requests(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_timed_out_poll_doubles_the_interval() {
    let device = Endpoint::start([device_answer("1800", "")]).await;
    let token = Endpoint::start([Reply::Hang, pending(), token_set()]).await;
    let endpoint = TokenEndpoint::builder(&token.url)
        .client_auth(ClientAuth::none("cli"))
        .timeout(secs(10))
        .retry(RetryPolicy::none())
        .build()
        .unwrap();
    let started = Instant::now();
    let pending = DeviceAuthorization::new(endpoint, &device.url)
        .start()
        .await
        .unwrap();
    pending.poll().await.unwrap();
    // Sent at 5 s, timed out at 15 s: RFC 8628 §3.5 backs off to 10 s.
    assert_eq!(pending.interval(), secs(10));
    assert_eq!(token.gaps(), [secs(20), secs(10)]);
    assert_eq!(started.elapsed(), secs(35));
}

#[tokio::test(start_paused = true)]
async fn a_poll_dropped_while_waiting_leaves_nothing_behind_and_resumes_on_schedule() {
    let flow = start(
        device_answer("1800", ""),
        [oauth_error("slow_down"), pending(), token_set()],
    )
    .await;
    // The first poll goes out at 5 s (slow_down: interval 10 s); the
    // future is dropped at 7 s, waiting for the second.
    tokio::select! {
        _ = flow.pending.poll() => panic!("the poll ended"),
        _ = tokio::time::sleep_until(flow.started + secs(7)) => {}
    }
    assert_eq!(flow.token.requests(), 1);
    tokio::time::sleep(secs(100)).await;
    assert_eq!(flow.token.requests(), 1, "nothing polls after the drop");

    // A new poll keeps the slowed interval: its first request is due at
    // 15 s, which has passed, then 10 s later.
    flow.pending.poll().await.unwrap();
    assert_eq!(flow.token.gaps(), [secs(102), secs(10)]);
}

#[tokio::test(start_paused = true)]
async fn a_poll_dropped_in_flight_does_not_let_the_next_one_poll_sooner() {
    let slow_answer = Reply::After(secs(3), Box::new(pending()));
    let flow = start(
        device_answer("1800", ""),
        [slow_answer, pending(), token_set()],
    )
    .await;
    // The first request is sent at 5 s and answered at 8 s; drop at 6 s.
    tokio::select! {
        _ = flow.pending.poll() => panic!("the poll ended"),
        _ = tokio::time::sleep_until(flow.started + secs(6)) => {}
    }
    assert_eq!(flow.token.requests(), 1);
    flow.pending.poll().await.unwrap();
    // The next request waited for the slot taken at 5 s: 10 s, then 15 s.
    assert_eq!(flow.token.gaps(), [secs(5), secs(5)]);
    assert_eq!(flow.started.elapsed(), secs(15));
}

#[tokio::test(start_paused = true)]
async fn many_tasks_polling_one_authorization_send_one_request_per_interval() {
    const TASKS: usize = 8;
    let mut polls = vec![pending(), pending(), pending(), token_set()];
    polls.extend((1..TASKS).map(|_| oauth_error("invalid_grant")));
    let flow = start(device_answer("1800", ""), polls).await;
    let pending = Arc::new(flow.pending);
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let pending = pending.clone();
            tokio::spawn(async move { pending.poll().await })
        })
        .collect();
    let mut tokens = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => tokens += 1,
            Err(e) => assert_eq!(e.oauth_error().unwrap().code().as_str(), "invalid_grant"),
        }
    }
    assert_eq!(tokens, 1);
    assert_eq!(flow.token.requests(), 3 + TASKS);
    assert_eq!(flow.token.gaps(), vec![secs(5); 2 + TASKS]);
}

// ===== what is sent, and the hand-over to the refresh-token grant =====

#[tokio::test(start_paused = true)]
async fn the_requests_are_authenticated_and_the_token_set_feeds_a_refresh_token_grant() {
    use support::{hold_clock, Reply as Answer, TokenServer, CLIENT_ID, CLIENT_SECRET};

    let device = TokenServer::start().await;
    device.script([Answer::json(
        200,
        serde_json::json!({
            "device_code": DEVICE_CODE, "user_code": "WDJB-MJHT",
            "verification_uri": "https://idp.example/device", "expires_in": 600,
        }),
    )]);
    let token = TokenServer::start().await;
    token.script([
        Answer::json(400, serde_json::json!({"error": "authorization_pending"})),
        Answer::json(
            200,
            serde_json::json!({
                "access_token": "at-1", "token_type": "Bearer", "expires_in": 3600,
                "refresh_token": "rt-1",
            }),
        ),
    ]);
    let _clock = hold_clock();
    let endpoint = TokenEndpoint::builder(token.url())
        .client_auth(ClientAuth::basic(CLIENT_ID, CLIENT_SECRET))
        .build()
        .unwrap();
    let pending = DeviceAuthorization::new(endpoint, device.url())
        .scope("openid")
        .scope("offline_access")
        .param("audience", "api")
        .start()
        .await
        .unwrap();
    assert_eq!(pending.user_code(), "WDJB-MJHT");
    assert_eq!(pending.verification_uri(), "https://idp.example/device");
    assert_eq!(pending.verification_uri_complete(), None);
    assert_eq!(pending.device_code().secret(), DEVICE_CODE);
    let shown = format!("{pending:?}");
    assert!(!shown.contains(DEVICE_CODE), "{shown}");
    assert!(shown.contains("WDJB-MJHT"), "{shown}");

    let seen = device.last();
    assert_eq!(
        seen.basic_credentials(),
        Some((CLIENT_ID.to_owned(), CLIENT_SECRET.to_owned()))
    );
    assert_eq!(seen.field("scope"), Some("openid offline_access"));
    assert_eq!(seen.field("audience"), Some("api"));
    assert_eq!(seen.header("accept"), Some("application/json"));

    let poll = tokio::spawn(async move {
        let token = pending.poll().await;
        (pending, token)
    });
    // The exact waits are asserted above; here the clock moves in small
    // steps, so no request is ever in flight for its 10 s timeout.
    let real = std::time::Instant::now();
    while !poll.is_finished() {
        assert!(real.elapsed() < secs(10), "the poll did not end");
        tokio::time::advance(Duration::from_millis(100)).await;
        tokio::task::yield_now().await;
    }
    let (pending, token_set) = poll.await.unwrap();
    let token_set = token_set.unwrap();
    assert_eq!(token.requests(), 2);
    for seen in token.seen() {
        assert_eq!(
            seen.field("grant_type"),
            Some("urn:ietf:params:oauth:grant-type:device_code")
        );
        assert_eq!(seen.field("device_code"), Some(DEVICE_CODE));
        assert_eq!(
            seen.basic_credentials(),
            Some((CLIENT_ID.to_owned(), CLIENT_SECRET.to_owned()))
        );
    }

    let grant = RefreshTokenGrant::from_token(pending.endpoint().clone(), token_set).unwrap();
    assert_eq!(grant.refresh_token().secret(), "rt-1");
}

// ===== bad input =====

#[tokio::test(start_paused = true)]
async fn bad_device_answers_are_typed_errors_that_never_show_the_device_code() {
    let token = Endpoint::start([]).await;
    let endpoint = TokenEndpoint::builder(&token.url)
        .client_auth(ClientAuth::none("cli"))
        .build()
        .unwrap();
    let html = Reply::Http(
        200,
        vec![("content-type", "text/html".to_owned())],
        b"<html>sign in</html>".to_vec(),
    );
    let cases = [
        (
            json(
                200,
                r#"{"user_code":"A","verification_uri":"https://x/d","expires_in":60}"#,
            ),
            "device_code is missing",
        ),
        (
            json(
                200,
                &format!(
                    r#"{{"device_code":"{DEVICE_CODE}","verification_uri":"https://x/d","expires_in":60}}"#
                ),
            ),
            "user_code is missing",
        ),
        (
            json(
                200,
                &format!(
                    r#"{{"device_code":"{DEVICE_CODE}","user_code":"A","verification_uri":"https://x/d","expires_in":60,"interval":-5}}"#
                ),
            ),
            "interval is negative",
        ),
        (
            json(
                200,
                &format!(
                    r#"{{"device_code":"{DEVICE_CODE}","user_code":"A","verification_uri":"https://x/d","expires_in":"soon"}}"#
                ),
            ),
            "expires_in is not a number",
        ),
        (html, "not a JSON object"),
    ];
    for (reply, reason) in cases {
        let device = Endpoint::start([reply]).await;
        let e = DeviceAuthorization::new(endpoint.clone(), &device.url)
            .start()
            .await
            .unwrap_err();
        assert!(e.is_invalid_response(), "{reason}: {e}");
        assert!(e.to_string().contains(reason), "{reason}: {e}");
        let shown = format!("{e} {e:?} {:?}", e.body_excerpt());
        assert!(!shown.contains(DEVICE_CODE), "{shown}");
    }
    assert_eq!(token.requests(), 0, "no poll without a device code");
}

#[tokio::test(start_paused = true)]
async fn error_answers_that_echo_the_device_code_do_not_leak_it() {
    let echo = format!(r#"{{"error":"invalid_client","device_code":"{DEVICE_CODE}"}}"#);
    let device = Endpoint::start([json(401, &echo)]).await;
    let endpoint = TokenEndpoint::builder(&device.url)
        .client_auth(ClientAuth::anonymous())
        .build()
        .unwrap();
    let e = DeviceAuthorization::new(endpoint.clone(), &device.url)
        .start()
        .await
        .unwrap_err();
    assert!(e.is_config(), "no client id: {e}");

    let endpoint = TokenEndpoint::builder(&device.url)
        .client_auth(ClientAuth::none("cli"))
        .build()
        .unwrap();
    let e = DeviceAuthorization::new(endpoint, &device.url)
        .start()
        .await
        .unwrap_err();
    assert_eq!(e.oauth_error().unwrap().code().as_str(), "invalid_client");
    let shown = format!("{e} {e:?} {:?}", e.body_excerpt());
    assert!(shown.contains("[redacted]"), "{shown}");
    assert!(!shown.contains(DEVICE_CODE), "{shown}");

    // A token endpoint that echoes the poll's form.
    let echo = format!(r#"{{"error":"invalid_grant","form":{{"device_code":"{DEVICE_CODE}"}}}}"#);
    let flow = start(device_answer("1800", ""), [json(400, &echo)]).await;
    let e = flow.pending.poll().await.unwrap_err();
    let shown = format!("{e} {e:?} {:?}", e.body_excerpt());
    assert!(!shown.contains(DEVICE_CODE), "{shown}");
}

#[tokio::test]
async fn a_plain_http_device_endpoint_off_loopback_is_refused() {
    let endpoint = TokenEndpoint::builder("https://idp.example/token")
        .client_auth(ClientAuth::none("cli"))
        .build()
        .unwrap();
    for url in [
        "http://idp.example/device",
        "ftp://idp.example/device",
        "not a url",
    ] {
        let e = DeviceAuthorization::new(endpoint.clone(), url)
            .start()
            .await
            .unwrap_err();
        assert!(e.is_config(), "{url}: {e}");
    }
}
