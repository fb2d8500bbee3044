//! `--metrics-listen`: a small HTTP/1.1 server on core 0 answering
//! `GET /metrics` with `exporter`'s text. One scrape at a time, each
//! bounded: a request head of at most 8 KiB, each read within 2 s and the
//! whole scrape within 5 s, then the reply and close. Figures are gathered over the mesh as `stats` gathers
//! them; the latency histograms are read from each core's lock.
//!
//! Owns the metrics socket; the text is `exporter`'s, the gathering
//! `conn`'s.

use std::rc::Rc;
use std::time::Duration;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};

use crate::exporter::{self, Scrape};
use crate::route::Core;
use crate::route::mesh::ConnWait;

use super::conn::{gather_counters, gather_repl, server_info};

const MAX_HEAD: usize = 8 * 1024;
const TIMEOUT: Duration = Duration::from_secs(2);
const SCRAPE_DEADLINE: Duration = Duration::from_secs(5);

/// Serve scrapes until shutdown.
pub async fn serve(core: Rc<Core>, listener: TcpListener) {
    while let Some(stream) = core.accept_until_stop("metrics: ", || listener.accept()).await {
        // A client that trickles its request in cannot hold the endpoint
        // longer than this, whatever each read's timeout.
        let deadline = async {
            glommio::timer::sleep(SCRAPE_DEADLINE).await;
            Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "scrape took too long"))
        };
        // Reply slots of its own: a scrape cut off mid-gather leaves them
        // to the replies still on their way.
        let wait = Rc::new(ConnWait::default());
        if let Err(e) = futures_lite::future::or(scrape(&core, &wait, stream), deadline).await {
            log::debug!("metrics: {e}");
        }
    }
}

async fn scrape(core: &Rc<Core>, wait: &Rc<ConnWait>, mut stream: TcpStream) -> std::io::Result<()> {
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        if head.len() > MAX_HEAD {
            return reply(&mut stream, "431 Request Header Fields Too Large", "text/plain", "request head too large\n")
                .await;
        }
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = head.split(|&b| b == b'\n').next().unwrap_or(b"");
    let mut words = line.split(|&b| b == b' ').filter(|w| !w.is_empty());
    let (method, target) = (words.next().unwrap_or(b""), words.next().unwrap_or(b""));
    let path = target.split(|&b| b == b'?').next().unwrap_or(b"");
    if method != b"GET" && method != b"HEAD" {
        return reply(&mut stream, "405 Method Not Allowed", "text/plain", "only GET\n").await;
    }
    match path {
        b"/metrics" => {
            let body = render(core, wait).await;
            let ctype = "text/plain; version=0.0.4; charset=utf-8";
            if method == b"HEAD" {
                return reply(&mut stream, "200 OK", ctype, "").await;
            }
            reply(&mut stream, "200 OK", ctype, &body).await
        }
        b"/" => reply(&mut stream, "200 OK", "text/plain", "memcore: metrics at /metrics\n").await,
        _ => reply(&mut stream, "404 Not Found", "text/plain", "not found; metrics at /metrics\n").await,
    }
}

async fn reply(stream: &mut TcpStream, status: &str, ctype: &str, body: &str) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.close().await
}

/// Gather every core's figures and render them.
async fn render(core: &Rc<Core>, wait: &Rc<ConnWait>) -> String {
    let per_core = gather_counters(core, wait).await;
    let figures = gather_repl(core, wait).await;
    let mut repl: Vec<(String, String)> = Vec::new();
    crate::repl::report(core.global.repl.as_ref(), &figures, &mut |name, value| {
        repl.push((name.to_string(), value.to_string()))
    });
    let info = server_info(core);
    let ((us, uu), (ss, su)) = crate::stats::rusage();
    let cpu = (us as f64 + uu as f64 / 1e6, ss as f64 + su as f64 / 1e6);
    let latency = core.global.latency.merged();
    exporter::render(&Scrape { info: &info, cpu, per_core: &per_core, latency: &latency, repl: &repl })
}
