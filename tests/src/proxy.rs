//! A TCP proxy in front of a server, for faults a real server cannot be made to show on its
//! own: every request delayed (a slow link or a slow node), or the link cut while the server
//! stays up.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A proxy on a free loopback port forwarding to `target`. Each chunk the client sends is held
/// for the current delay before it is forwarded; replies pass through at once. Dropping the
/// proxy stops it and closes every connection.
#[derive(Debug)]
pub struct Proxy {
    port: u16,
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    delay_ms: AtomicU64,
    down: AtomicBool,
    stopped: AtomicBool,
    connections: Mutex<Vec<TcpStream>>,
    needles: Mutex<Vec<(Vec<u8>, Arc<AtomicU64>)>>,
}

impl Proxy {
    /// Starts forwarding connections to `127.0.0.1:<target_port>`.
    ///
    /// # Panics
    /// If no loopback port can be bound.
    pub fn start(target_port: u16) -> Self {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .expect("bind a loopback port for the proxy");
        let port = listener.local_addr().expect("local address").port();
        let shared = Arc::new(Shared::default());
        let target = SocketAddr::from((Ipv4Addr::LOCALHOST, target_port));
        let accepting = shared.clone();
        std::thread::Builder::new()
            .name(format!("proxy-{port}"))
            .spawn(move || accept(&listener, target, &accepting))
            .expect("spawn the proxy thread");
        Self { port, shared }
    }

    /// The proxy's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<proxy port>/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Holds every chunk a client sends for `delay` from now on.
    pub fn set_delay(&self, delay: Duration) {
        let millis = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.shared.delay_ms.store(millis, Ordering::SeqCst);
    }

    /// Cuts every connection and refuses new ones (they are accepted and closed at once), as a
    /// network partition would look to the client, until [`Proxy::up`].
    pub fn down(&self) {
        self.shared.down.store(true, Ordering::SeqCst);
        for conn in self
            .shared
            .connections
            .lock()
            .expect("proxy lock")
            .drain(..)
        {
            let _ = conn.shutdown(Shutdown::Both);
        }
    }

    /// Forwards again after [`Proxy::down`].
    pub fn up(&self) {
        self.shared.down.store(false, Ordering::SeqCst);
    }

    /// A counter of the client chunks that contain `needle` (counted when they arrive at the
    /// proxy, before their delay), e.g. to learn that a command is on its way.
    pub fn watch(&self, needle: &str) -> Arc<AtomicU64> {
        let counter = Arc::new(AtomicU64::new(0));
        self.shared
            .needles
            .lock()
            .expect("proxy lock")
            .push((needle.as_bytes().to_vec(), counter.clone()));
        counter
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::SeqCst);
        self.down();
        // Wake the accept loop so that it sees `stopped`.
        let _ = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port));
    }
}

fn accept(listener: &TcpListener, target: SocketAddr, shared: &Arc<Shared>) {
    for client in listener.incoming() {
        if shared.stopped.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = client else { continue };
        if shared.down.load(Ordering::SeqCst) {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        }
        let Ok(server) = TcpStream::connect(target) else {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        };
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        if let Ok(mut conns) = shared.connections.lock() {
            for stream in [&client, &server] {
                if let Ok(clone) = stream.try_clone() {
                    conns.push(clone);
                }
            }
        }
        let (Ok(client_read), Ok(server_read)) = (client.try_clone(), server.try_clone()) else {
            continue;
        };
        let upstream = shared.clone();
        std::thread::spawn(move || pump(client_read, server, Some(&upstream)));
        std::thread::spawn(move || pump(server_read, client, None));
    }
}

/// Copies `from` to `to` until either side closes; client-to-server chunks are delayed and
/// matched against the needles.
fn pump(mut from: TcpStream, mut to: TcpStream, upstream: Option<&Shared>) {
    let mut buf = vec![0; 64 * 1024];
    let result: io::Result<()> = (|| loop {
        let n = from.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        if let Some(shared) = upstream {
            if let Ok(needles) = shared.needles.lock() {
                for (needle, count) in needles.iter() {
                    if buf[..n]
                        .windows(needle.len())
                        .any(|w| w == needle.as_slice())
                    {
                        count.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
            let delay = shared.delay_ms.load(Ordering::SeqCst);
            if delay > 0 {
                std::thread::sleep(Duration::from_millis(delay));
            }
            if shared.down.load(Ordering::SeqCst) {
                return Ok(());
            }
        }
        to.write_all(&buf[..n])?;
    })();
    let _ = result;
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}
