//! A scripted token endpoint over a raw loopback socket: it answers each
//! request with the next reply of its script, which lets a test send what
//! no well-behaved server would (a reset mid-body, a hang, invalid bytes).
#![allow(dead_code)] // each test file uses its own part

use std::{
    collections::VecDeque,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    time::Instant,
};

/// One scripted answer of the token endpoint.
#[derive(Clone)]
pub(crate) enum Reply {
    /// An HTTP response with these headers and body.
    Http(u16, Vec<(&'static str, String)>, Vec<u8>),
    /// Headers promising 100 bytes, 10 of them, then the connection closes.
    ResetMidBody,
    /// Reads the request and never answers.
    Hang,
    /// Waits this long (virtual time), then sends the reply.
    After(Duration, Box<Reply>),
}

pub(crate) fn json(status: u16, body: &str) -> Reply {
    let headers = vec![("content-type", "application/json".to_owned())];
    Reply::Http(status, headers, body.as_bytes().to_vec())
}

pub(crate) fn token(n: u32, expires_in: u64) -> Reply {
    json(
        200,
        &format!(r#"{{"access_token":"tok-{n}","token_type":"Bearer","expires_in":{expires_in}}}"#),
    )
}

pub(crate) struct Endpoint {
    pub(crate) url: String,
    script: Mutex<VecDeque<Reply>>,
    /// When each token request arrived (virtual time).
    arrivals: Mutex<Vec<Instant>>,
    /// Requests that found the script empty: a test bug, asserted on.
    overruns: AtomicUsize,
}

impl Endpoint {
    pub(crate) async fn start(script: impl IntoIterator<Item = Reply>) -> Arc<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = Arc::new(Self {
            url: format!("http://{}/token", listener.local_addr().unwrap()),
            script: Mutex::new(script.into_iter().collect()),
            arrivals: Mutex::new(Vec::new()),
            overruns: AtomicUsize::new(0),
        });
        let server = endpoint.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                tokio::spawn(server.clone().answer(stream));
            }
        });
        endpoint
    }

    async fn answer(self: Arc<Self>, mut stream: TcpStream) {
        if read_request(&mut stream).await.is_none() {
            return;
        }
        self.arrivals.lock().unwrap().push(Instant::now());
        let reply = self.script.lock().unwrap().pop_front();
        let Some(reply) = reply else {
            self.overruns.fetch_add(1, Ordering::SeqCst);
            return;
        };
        let mut reply = reply;
        while let Reply::After(wait, then) = reply {
            tokio::time::sleep(wait).await;
            reply = *then;
        }
        match reply {
            Reply::After(..) => unreachable!("unwrapped above"),
            Reply::Http(status, headers, body) => {
                let mut head = format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n",
                    body.len()
                );
                for (name, value) in headers {
                    head.push_str(&format!("{name}: {value}\r\n"));
                }
                head.push_str("\r\n");
                let _ = stream.write_all(head.as_bytes()).await;
                let _ = stream.write_all(&body).await;
            }
            Reply::ResetMidBody => {
                let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"access_t";
                let _ = stream.write_all(head.as_bytes()).await;
            }
            Reply::Hang => std::future::pending::<()>().await,
        }
    }

    pub(crate) fn requests(&self) -> usize {
        assert_eq!(
            self.overruns.load(Ordering::SeqCst),
            0,
            "more token requests than scripted"
        );
        self.arrivals.lock().unwrap().len()
    }

    /// Virtual time between consecutive token requests.
    pub(crate) fn gaps(&self) -> Vec<Duration> {
        let arrivals = self.arrivals.lock().unwrap();
        arrivals.windows(2).map(|w| w[1] - w[0]).collect()
    }
}

/// Reads one request (head and `content-length` body); `None` at EOF.
async fn read_request(stream: &mut TcpStream) -> Option<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some(())
}
