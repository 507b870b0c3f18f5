//! A TCP proxy in front of a database that can fall silent the way a
//! network partition does: connections stay open, nothing is answered.
//! (Stopping the database would refuse connections at once, which is a
//! different, easier fault.) `hold()` stops forwarding in both directions,
//! also for connections made while held; `release()` resumes them with
//! whatever was waiting. `requests_only()` holds only what clients send
//! while answers keep flowing back: an API server that takes requests and
//! never answers them, while the watches already open still deliver.
//! `hold_after(bytes)` holds right after a client sends those bytes: a
//! partition that begins just after a statement was sent, before its answer.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct SilentProxy {
    pub addr: SocketAddr,
    held: Arc<watch::Sender<bool>>,
    trigger: Trigger,
    task: tokio::task::JoinHandle<()>,
}

/// Bytes that, once a client has sent them, make the proxy hold.
#[derive(Clone, Default)]
struct Trigger(Arc<Mutex<Option<Vec<u8>>>>);

impl Trigger {
    /// Whether `sent` sets off the trigger (it then disarms).
    fn fires(&self, sent: &[u8]) -> bool {
        let mut armed = self.0.lock().unwrap();
        let hit = armed
            .as_ref()
            .is_some_and(|p| sent.windows(p.len()).any(|w| w == p.as_slice()));
        if hit {
            *armed = None;
        }
        hit
    }
}

/// Which way a hold stops traffic.
#[derive(Clone, Copy)]
enum Held {
    BothWays,
    Requests,
}

impl SilentProxy {
    /// Forwards 127.0.0.1:<free port> to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Self {
        Self::start_holding(upstream, Held::BothWays).await
    }

    /// Like `start`, but a hold stops only client-to-server traffic.
    pub async fn requests_only(upstream: SocketAddr) -> Self {
        Self::start_holding(upstream, Held::Requests).await
    }

    async fn start_holding(upstream: SocketAddr, way: Held) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let held = Arc::new(watch::channel(false).0);
        let trigger = Trigger::default();
        let (for_task, trigger_for_task) = (held.clone(), trigger.clone());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let hold = for_task.clone();
                let held = for_task.subscribe();
                let trigger = trigger_for_task.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    let answers_held = match way {
                        Held::BothWays => Some(held.clone()),
                        Held::Requests => None,
                    };
                    let fire = Some((trigger, hold));
                    tokio::join!(
                        pump(client_read, server_write, Some(held), fire),
                        pump(server_read, client_write, answers_held, None),
                    );
                });
            }
        });
        Self {
            addr,
            held,
            trigger,
            task,
        }
    }

    /// Holds (both ways) right after a client's next write containing
    /// `bytes` has been forwarded: the server gets the statement, the
    /// client never its answer.
    pub fn hold_after(&self, bytes: &[u8]) {
        *self.trigger.0.lock().unwrap() = Some(bytes.to_vec());
    }

    /// Whether a `hold_after` trigger has fired (or was never armed).
    pub fn triggered(&self) -> bool {
        self.trigger.0.lock().unwrap().is_none()
    }

    /// From now on nothing passes, in either direction; connections stay open.
    pub fn hold(&self) {
        self.held.send_replace(true);
    }

    pub fn release(&self) {
        self.held.send_replace(false);
    }
}

impl Drop for SilentProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies `from` to `to`, never while held (`None`: never held): bytes
/// read while held wait until release (so a statement sent into a
/// partition arrives late, as after a real one, or never if the connection
/// is dropped first).
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut held: Option<watch::Receiver<bool>>,
    fire: Option<(Trigger, Arc<watch::Sender<bool>>)>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if !released(&mut held).await {
            return;
        }
        let n = tokio::select! {
            read = from.read(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
            // Held while waiting to read: wait for release first.
            _ = until_held(&mut held) => continue,
        };
        if !released(&mut held).await {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
        if let Some((trigger, hold)) = &fire
            && trigger.fires(&buf[..n])
        {
            hold.send_replace(true);
        }
    }
}

/// Waits until not held; false once the proxy is gone.
async fn released(held: &mut Option<watch::Receiver<bool>>) -> bool {
    match held {
        Some(h) => h.wait_for(|h| !*h).await.is_ok(),
        None => true,
    }
}

async fn until_held(held: &mut Option<watch::Receiver<bool>>) {
    match held {
        Some(h) => {
            let _ = h.wait_for(|h| *h).await;
        }
        None => std::future::pending().await,
    }
}
