//! TCP proxies in front of a real server: one that a test can cut and
//! restore (a network partition between one replica and Redis, while the
//! others still reach it), and one that logs the commands sent to Redis and
//! holds its replies (to see what a request sends before any answer).
#![allow(dead_code)] // each test binary uses its own subset

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt, copy_bidirectional},
    net::{TcpListener, TcpStream},
    sync::watch,
    task::JoinHandle,
};

/// Forwards connections to `upstream` until cut.
pub(crate) struct Proxy {
    addr: SocketAddr,
    cut: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free loopback port.
    pub(crate) async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (cut, cuts) = watch::channel(false);
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                if *cuts.borrow() {
                    // Partitioned: the connection closes at once.
                    continue;
                }
                let mut cuts = cuts.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = copy_bidirectional(&mut client, &mut server) => {}
                        _ = cuts.wait_for(|cut| *cut) => {}
                    }
                });
            }
        });
        Self { addr, cut, task }
    }

    /// `redis://` on the proxy.
    pub(crate) fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// Closes every connection, and every new one, until restored.
    pub(crate) fn cut(&self) {
        self.cut.send_replace(true);
    }

    /// Forwards new connections again.
    pub(crate) fn restore(&self) {
        self.cut.send_replace(false);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A command a client sent through a [`RedisProxy`].
#[derive(Debug, Clone)]
pub(crate) struct Command {
    /// The command's name, upper case (`EVALSHA`, `PING`, …).
    pub(crate) name: String,
    /// The keys of a script (`EVAL`, `EVALSHA`); empty for other commands.
    pub(crate) keys: Vec<String>,
    /// It reached the server while the replies were held: its client sent
    /// it without having received any reply since [`RedisProxy::hold`].
    pub(crate) held: bool,
}

impl Command {
    /// A script call (`EVAL` or `EVALSHA`).
    pub(crate) fn is_script(&self) -> bool {
        self.name == "EVAL" || self.name == "EVALSHA"
    }

    /// A script whose first key ends with `suffix`.
    pub(crate) fn is_script_on(&self, suffix: &str) -> bool {
        self.is_script() && self.keys.first().is_some_and(|k| k.ends_with(suffix))
    }
}

/// A TCP proxy in front of a redis-server that reads what clients send and
/// can hold what the server answers: bytes from a client reach the server
/// at once, and every command is logged (with a notification); bytes from
/// the server reach the client at once, or, between [`hold`](Self::hold)
/// and [`release`](Self::release), only at the release.
pub(crate) struct RedisProxy {
    addr: SocketAddr,
    log: Arc<Mutex<Vec<Command>>>,
    seen: watch::Receiver<usize>,
    hold: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl RedisProxy {
    /// Listens on a free loopback port.
    pub(crate) async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (seen_tx, seen) = watch::channel(0);
        let seen_tx = Arc::new(seen_tx);
        let (hold, holds) = watch::channel(false);
        let task = tokio::spawn({
            let log = Arc::clone(&log);
            async move {
                loop {
                    let Ok((client, _)) = listener.accept().await else {
                        return;
                    };
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        continue;
                    };
                    let _ = (client.set_nodelay(true), server.set_nodelay(true));
                    let (mut from_client, mut to_client) = client.into_split();
                    let (mut from_server, mut to_server) = server.into_split();
                    let (log, seen_tx, sent_held) =
                        (Arc::clone(&log), Arc::clone(&seen_tx), holds.clone());
                    tokio::spawn(async move {
                        let mut parser = Parser::default();
                        let mut buf = vec![0; 64 * 1024];
                        loop {
                            let n = match from_client.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => n,
                            };
                            if to_server.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                            let held = *sent_held.borrow();
                            let commands = parser.feed(&buf[..n]);
                            if !commands.is_empty() {
                                let mut log = log.lock().unwrap();
                                for (name, keys) in commands {
                                    log.push(Command { name, keys, held });
                                }
                                seen_tx.send_replace(log.len());
                            }
                        }
                    });
                    let mut holds = holds.clone();
                    tokio::spawn(async move {
                        let mut buf = vec![0; 64 * 1024];
                        loop {
                            let n = match from_server.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => n,
                            };
                            if holds.wait_for(|held| !*held).await.is_err() {
                                return;
                            }
                            if to_client.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    });
                }
            }
        });
        Self {
            addr,
            log,
            seen,
            hold,
            task,
        }
    }

    /// `redis://` on the proxy.
    pub(crate) fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// Holds every reply of the server until [`release`](Self::release).
    pub(crate) fn hold(&self) {
        self.hold.send_replace(true);
    }

    /// Delivers the replies held, and the next ones at once.
    pub(crate) fn release(&self) {
        self.hold.send_replace(false);
    }

    /// The commands sent so far, in the order they reached the proxy.
    pub(crate) fn commands(&self) -> Vec<Command> {
        self.log.lock().unwrap().clone()
    }

    /// Waits (up to 10 s) until the commands sent so far satisfy `done`,
    /// woken by each command that arrives.
    pub(crate) async fn until(&self, what: &str, mut done: impl FnMut(&[Command]) -> bool) {
        let mut seen = self.seen.clone();
        tokio::time::timeout(std::time::Duration::from_secs(10), async {
            loop {
                if done(&self.log.lock().unwrap()) {
                    return;
                }
                seen.changed().await.unwrap();
            }
        })
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
    }
}

impl Drop for RedisProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads RESP commands (arrays of bulk strings, as clients send them) from
/// a byte stream cut anywhere.
#[derive(Default)]
struct Parser {
    pending: Vec<u8>,
}

impl Parser {
    /// The commands completed by `bytes`: each name, upper case, and a
    /// script's keys.
    fn feed(&mut self, bytes: &[u8]) -> Vec<(String, Vec<String>)> {
        self.pending.extend_from_slice(bytes);
        let mut commands = Vec::new();
        while let Some((args, used)) = Self::command(&self.pending) {
            self.pending.drain(..used);
            let Some(name) = args.first() else { continue };
            let name = String::from_utf8_lossy(name).to_uppercase();
            let keys = if name == "EVAL" || name == "EVALSHA" {
                let count = args
                    .get(2)
                    .and_then(|n| std::str::from_utf8(n).ok()?.parse::<usize>().ok())
                    .unwrap_or(0);
                args.iter()
                    .skip(3)
                    .take(count)
                    .map(|k| String::from_utf8_lossy(k).into_owned())
                    .collect()
            } else {
                Vec::new()
            };
            commands.push((name, keys));
        }
        commands
    }

    /// One whole command at the start of `buf`, and the bytes it took.
    fn command(buf: &[u8]) -> Option<(Vec<Vec<u8>>, usize)> {
        let (count, mut at) = Self::line(buf, 0, b'*')?;
        let mut args = Vec::with_capacity(count);
        for _ in 0..count {
            let (len, start) = Self::line(buf, at, b'$')?;
            let end = start + len;
            if buf.len() < end + 2 {
                return None;
            }
            args.push(buf[start..end].to_vec());
            at = end + 2;
        }
        Some((args, at))
    }

    /// The number on the line at `at` that starts with `kind`, and where
    /// the next line starts.
    fn line(buf: &[u8], at: usize, kind: u8) -> Option<(usize, usize)> {
        let rest = buf.get(at..)?;
        let end = rest.windows(2).position(|w| w == b"\r\n")?;
        let line = &rest[..end];
        assert_eq!(line.first(), Some(&kind), "a client sent a RESP command");
        let n = std::str::from_utf8(&line[1..]).ok()?.parse().ok()?;
        Some((n, at + end + 2))
    }
}
