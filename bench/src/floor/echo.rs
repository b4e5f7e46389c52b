//! Loopback round trip: a std TCP echo server on 127.0.0.1:0 and a client
//! sending 64-byte messages, both with TCP_NODELAY and blocking sockets (no
//! runtime, no framing: the cheapest round trip loopback TCP offers).

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::Instant;

use crate::stats::Latency;

const MESSAGE_BYTES: usize = 64;
/// Round trips run before sampling starts.
const WARMUP_ROUND_TRIPS: usize = 1000;

/// Measures `samples` round trips.
pub fn loopback_rtt(samples: usize) -> io::Result<Latency> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    thread::scope(|s| {
        let server = s.spawn(move || echo_one_connection(&listener));
        // The client's stream is dropped when `ping` returns, also on error,
        // so the server always sees end-of-stream and the scope can end.
        let sampled = TcpStream::connect(addr).and_then(|stream| ping(stream, samples));
        server.join().expect("the echo server does not panic")?;
        sampled
    })
}

/// Accepts one connection and echoes fixed-size messages until it closes.
fn echo_one_connection(listener: &TcpListener) -> io::Result<()> {
    let (mut stream, _) = listener.accept()?;
    stream.set_nodelay(true)?;
    let mut buf = [0u8; MESSAGE_BYTES];
    loop {
        match stream.read_exact(&mut buf) {
            Ok(()) => stream.write_all(&buf)?,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        }
    }
}

/// Sends a message, waits for its echo, and times it, `samples` times.
fn ping(mut stream: TcpStream, samples: usize) -> io::Result<Latency> {
    stream.set_nodelay(true)?;
    let out = [0x5Au8; MESSAGE_BYTES];
    let mut back = [0u8; MESSAGE_BYTES];
    let mut rtts = Vec::with_capacity(samples);
    for i in 0..WARMUP_ROUND_TRIPS + samples {
        let start = Instant::now();
        stream.write_all(&out)?;
        stream.read_exact(&mut back)?;
        if i >= WARMUP_ROUND_TRIPS {
            rtts.push(start.elapsed());
        }
    }
    Ok(Latency::from_samples(rtts).expect("at least one round trip is sampled"))
}
