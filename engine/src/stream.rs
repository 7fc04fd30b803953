//! The puppet as a video source for other apps: an MJPEG-over-HTTP server (what OBS's media
//! source, VLC and ffmpeg open as `http://HOST:PORT/`).
//!
//! Each frame is JPEG-encoded once, when it is published, and replaces the previous one; each
//! client has its own thread that sends the newest frame it has not sent yet. So a slow client
//! skips frames instead of queueing them, and a client that stops reading only blocks its own
//! thread until its write times out and it is dropped: publishing never waits on a client.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use image::RgbImage;
use image::codecs::jpeg::JpegEncoder;

use crate::{EngineError, Result};

/// The multipart boundary between frames.
const BOUNDARY: &str = "prioritycut-frame";
/// A client that accepts no data for this long is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a client has to send its request line.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// More clients than this get `503 Service Unavailable`.
pub const MAX_CLIENTS: usize = 16;
/// JPEG quality of the stream.
pub const JPEG_QUALITY: u8 = 85;

/// `"8080"` → `127.0.0.1:8080`; `"HOST:PORT"` as given. The default host is the loopback one,
/// so the puppet is not on the network unless asked.
pub fn stream_address(text: &str) -> Result<SocketAddr> {
    let text = text.trim();
    let with_host = if text.parse::<u16>().is_ok() {
        format!("127.0.0.1:{text}")
    } else {
        text.to_string()
    };
    with_host
        .to_socket_addrs()
        .ok()
        .and_then(|mut addresses| addresses.next())
        .ok_or_else(|| EngineError::Invalid(format!("'{text}' is not an address to listen on (PORT or HOST:PORT)")))
}

/// The newest frame and its number.
#[derive(Default)]
struct Latest {
    jpeg: Option<Arc<Vec<u8>>>,
    number: u64,
}

struct Shared {
    latest: Mutex<Latest>,
    fresh: Condvar,
    stop: AtomicBool,
    clients: AtomicUsize,
}

/// A running MJPEG server. Dropping it stops it.
pub struct MjpegServer {
    address: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for MjpegServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MjpegServer")
            .field("address", &self.address)
            .field("clients", &self.clients())
            .finish()
    }
}

impl MjpegServer {
    /// Listens on `address` (port 0: any free port; see [`MjpegServer::address`]).
    pub fn bind(address: SocketAddr) -> Result<Self> {
        let listener = TcpListener::bind(address)
            .map_err(|e| EngineError::Invalid(format!("cannot listen on {address} ({e}); is the port in use?")))?;
        let address = listener
            .local_addr()
            .map_err(|e| EngineError::Invalid(format!("cannot listen on {address} ({e})")))?;
        // Non-blocking accepts, so that a stop is noticed without a connection.
        listener
            .set_nonblocking(true)
            .map_err(|e| EngineError::Invalid(format!("cannot listen on {address} ({e})")))?;
        let shared = Arc::new(Shared {
            latest: Mutex::new(Latest::default()),
            fresh: Condvar::new(),
            stop: AtomicBool::new(false),
            clients: AtomicUsize::new(0),
        });
        let accept_shared = shared.clone();
        let accept = std::thread::Builder::new()
            .name("prioritycut-stream".into())
            .spawn(move || accept_loop(&listener, &accept_shared))
            .map_err(|e| EngineError::Invalid(format!("cannot start the stream thread: {e}")))?;
        Ok(Self {
            address,
            shared,
            accept: Some(accept),
        })
    }

    /// Where it listens.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// `http://HOST:PORT/`.
    pub fn url(&self) -> String {
        format!("http://{}/", self.address)
    }

    /// Clients connected now.
    pub fn clients(&self) -> usize {
        self.shared.clients.load(Ordering::Relaxed)
    }

    /// Makes `frame` the one every client gets next (encoded once, here). With no client
    /// connected it is not encoded at all (a JPEG of the photo's size took ~7 ms of every live
    /// frame): one that connects gets the next frame.
    pub fn publish(&self, frame: &RgbImage) -> Result<()> {
        if self.clients() == 0 {
            return Ok(());
        }
        let mut jpeg = Vec::with_capacity(64 * 1024);
        JpegEncoder::new_with_quality(&mut jpeg, JPEG_QUALITY)
            .encode_image(frame)
            .map_err(|e| EngineError::Invalid(format!("cannot encode a stream frame as JPEG ({e})")))?;
        let mut latest = self
            .shared
            .latest
            .lock()
            .map_err(|_| EngineError::Invalid("the stream state is unavailable".into()))?;
        latest.jpeg = Some(Arc::new(jpeg));
        latest.number += 1;
        self.shared.fresh.notify_all();
        Ok(())
    }
}

impl Drop for MjpegServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.shared.fresh.notify_all();
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    while !shared.stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                let client = shared.clone();
                let spawned = std::thread::Builder::new()
                    .name("prioritycut-stream-client".into())
                    .spawn(move || {
                        client.clients.fetch_add(1, Ordering::Relaxed);
                        // An error only ends this client.
                        let _ = serve(stream, &client);
                        client.clients.fetch_sub(1, Ordering::Relaxed);
                    });
                if spawned.is_err() {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(20)),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// One client: its request, then frames until it goes away, stalls, or the server stops.
fn serve(stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(READ_TIMEOUT))?;
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    stream.set_nodelay(true)?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    // The headers up to the blank line; their content does not matter.
    let mut line = String::new();
    while reader.read_line(&mut line)? > 2 {
        line.clear();
    }
    let mut out = stream;
    let mut parts = request.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if method != "GET" {
        return out.write_all(b"HTTP/1.0 405 Method Not Allowed\r\nAllow: GET\r\nContent-Length: 0\r\n\r\n");
    }
    if shared.clients.load(Ordering::Relaxed) > MAX_CLIENTS {
        return out.write_all(b"HTTP/1.0 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n");
    }
    // `/frame.jpg`: the newest frame alone (a snapshot); anything else: the stream.
    let single = path.starts_with("/frame.jpg");
    if single {
        let Some((jpeg, _)) = next_frame(shared, 0) else {
            return Ok(());
        };
        write!(
            out,
            "HTTP/1.0 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\nCache-Control: no-cache\r\n\r\n",
            jpeg.len()
        )?;
        return out.write_all(&jpeg);
    }
    write!(
        out,
        "HTTP/1.0 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary={BOUNDARY}\r\n\
         Cache-Control: no-cache, no-store\r\nPragma: no-cache\r\nConnection: close\r\n\r\n"
    )?;
    let mut sent = 0;
    while let Some((jpeg, number)) = next_frame(shared, sent) {
        write!(
            out,
            "--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n",
            jpeg.len()
        )?;
        out.write_all(&jpeg)?;
        out.write_all(b"\r\n")?;
        out.flush()?;
        sent = number;
    }
    Ok(())
}

/// Waits for a frame newer than `after`; `None` once the server stops.
fn next_frame(shared: &Shared, after: u64) -> Option<(Arc<Vec<u8>>, u64)> {
    let mut latest = shared.latest.lock().ok()?;
    loop {
        if shared.stop.load(Ordering::Relaxed) {
            return None;
        }
        if latest.number > after
            && let Some(jpeg) = &latest.jpeg
        {
            return Some((jpeg.clone(), latest.number));
        }
        latest = shared.fresh.wait_timeout(latest, Duration::from_millis(200)).ok()?.0;
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::time::Instant;

    use super::*;

    /// Noise compresses badly: ~60 KB a JPEG, so a client that does not read fills its
    /// socket's buffers within the test.
    fn frame(seed: u32) -> RgbImage {
        let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        RgbImage::from_fn(256, 192, |_, _| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let [a, b, c, _] = state.to_le_bytes();
            image::Rgb([a, b, c])
        })
    }

    /// Reads the response headers, then `count` JPEG parts of the multipart stream.
    fn read_frames(stream: &mut TcpStream, count: usize) -> (String, Vec<RgbImage>) {
        stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        let mut reader = BufReader::new(stream);
        let mut headers = String::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).expect("header line");
            if line == "\r\n" {
                break;
            }
            headers.push_str(&line);
        }
        let mut frames = Vec::new();
        while frames.len() < count {
            let mut line = String::new();
            reader.read_line(&mut line).expect("part line");
            if let Some(length) = line.strip_prefix("Content-Length: ") {
                let length: usize = length.trim().parse().expect("length");
                let mut blank = String::new();
                reader.read_line(&mut blank).expect("blank");
                let mut jpeg = vec![0; length];
                reader.read_exact(&mut jpeg).expect("jpeg");
                frames.push(image::load_from_memory(&jpeg).expect("a JPEG").to_rgb8());
            }
        }
        (headers, frames)
    }

    fn get(address: SocketAddr, path: &str) -> TcpStream {
        let mut stream = TcpStream::connect(address).expect("connect");
        write!(stream, "GET {path} HTTP/1.1\r\nHost: {address}\r\n\r\n").expect("request");
        stream
    }

    #[test]
    fn two_clients_get_frames_and_a_stalled_one_never_blocks_the_puppet() {
        let server = MjpegServer::bind(stream_address("0").expect("address")).expect("bind");
        assert!(server.address().ip().is_loopback());
        let address = server.address();
        // A client that connects, asks, and then never reads.
        let stalled = get(address, "/");
        let server = Arc::new(server);
        let publisher = server.clone();
        let publishing = std::thread::spawn(move || {
            let mut slowest = Duration::ZERO;
            for i in 0..400u32 {
                let start = Instant::now();
                publisher.publish(&frame(i)).expect("publish");
                slowest = slowest.max(start.elapsed());
                std::thread::sleep(Duration::from_millis(10));
            }
            slowest
        });
        let mut first = get(address, "/");
        let mut second = get(address, "/stream.mjpg");
        let (headers, frames) = read_frames(&mut first, 5);
        assert!(headers.starts_with("HTTP/1.0 200 OK"), "{headers}");
        assert!(
            headers.contains("multipart/x-mixed-replace; boundary=prioritycut-frame"),
            "{headers}"
        );
        assert_eq!(frames[0].dimensions(), (256, 192));
        let (_, more) = read_frames(&mut second, 5);
        assert_eq!(more.len(), 5);
        let mut snapshot = get(address, "/frame.jpg");
        let mut body = Vec::new();
        snapshot.read_to_end(&mut body).expect("snapshot");
        assert!(String::from_utf8_lossy(&body[..40]).contains("200 OK"));
        assert!(server.clients() >= 2, "{} clients", server.clients());
        // Publishing (one JPEG encode) never waited on the stalled client.
        let slowest = publishing.join().expect("publisher");
        assert!(slowest < Duration::from_millis(500), "a publish took {slowest:?}");
        // Every client has stopped reading, none has hung up: each is dropped once a write
        // times out, so no thread is left behind.
        let deadline = Instant::now() + Duration::from_secs(20);
        while server.clients() > 0 {
            assert!(
                Instant::now() < deadline,
                "{} stalled clients still held",
                server.clients()
            );
            server.publish(&frame(7)).expect("publish");
            std::thread::sleep(Duration::from_millis(50));
        }
        drop((stalled, first, second));
    }

    #[test]
    fn frames_are_encoded_only_for_clients() {
        let server = MjpegServer::bind(stream_address("0").expect("address")).expect("bind");
        server.publish(&frame(1)).expect("publish");
        let encoded = || server.shared.latest.lock().expect("latest").jpeg.is_some();
        assert!(!encoded(), "no client: nothing encoded");
        let mut client = get(server.address(), "/");
        let deadline = Instant::now() + Duration::from_secs(10);
        while server.clients() == 0 {
            assert!(Instant::now() < deadline, "the client was never accepted");
            std::thread::sleep(Duration::from_millis(10));
        }
        // The client gets the next frame published.
        server.publish(&frame(2)).expect("publish");
        assert!(encoded());
        let (_, frames) = read_frames(&mut client, 1);
        assert_eq!(frames[0].dimensions(), (256, 192));
    }

    #[test]
    fn a_port_in_use_and_a_bad_address_are_clear_errors() {
        let server = MjpegServer::bind(stream_address("127.0.0.1:0").expect("address")).expect("bind");
        let error = MjpegServer::bind(server.address()).expect_err("in use").to_string();
        assert!(
            error.contains(&server.address().to_string()) && error.contains("in use"),
            "{error}"
        );
        assert_eq!(stream_address("8090").expect("port").to_string(), "127.0.0.1:8090");
        assert!(stream_address("not an address").is_err());
    }
}
