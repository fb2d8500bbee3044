//! Cost of sealing replication frames, per byte: what a link spends on a
//! frame with the MCREPL02 HMAC-SHA256 tag (a copy and the HMAC, as before
//! this change), and sealed with ChaCha20-Poly1305 (MCREPL03:
//! `wire::Session::seal` on the sending node, `open` on the receiving one,
//! ring's implementation); ring's AES-256-GCM beside it for reference. In
//! clear (`--repl-insecure`) a link spends nothing on a frame but its
//! write.
//!
//! Frames of 128 B (a heartbeat or a one-op batch), 4 KiB, 64 KiB and
//! 1 MiB (a full batch). The variants alternate within each round and the
//! figure is bytes per CPU-second of this thread
//! (CLOCK_THREAD_CPUTIME_ID), so other processes on the machine change it
//! less than a wall-clock rate (not at all in principle; shared caches and
//! frequency still do).
//!
//! Run: `cargo bench --bench repl_seal`. Env: RS_ROUNDS (default 5),
//! RS_MIB (MiB sealed per variant and round, default 256).

use hmac::{Hmac, Mac};
use memcore::repl::wire;
use sha2::Sha256;

fn thread_cpu() -> f64 {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec into `t`.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
}

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    let rounds = env_num("RS_ROUNDS", 5);
    let total = env_num("RS_MIB", 256) << 20;
    let key = [7u8; 32];
    println!("| frame | variant | MB per CPU-s, median [min .. max] over {rounds} rounds | vs HMAC tag |");
    println!("|---|---|---|---|");
    for size in [128usize, 4096, 64 << 10, 1 << 20] {
        let mut f = Vec::new();
        wire::frame(&mut f, wire::BATCH, &(0..size - 5).map(|i| i as u8).collect::<Vec<_>>());
        let n = (total / size).max(1);
        let names = [
            "HMAC-SHA256 tag (MCREPL02)",
            "ChaCha20-Poly1305 seal (MCREPL03)",
            "ChaCha20-Poly1305 open (MCREPL03)",
            "AES-256-GCM seal (not used)",
        ];
        let gcm = ring::aead::LessSafeKey::new(ring::aead::UnboundKey::new(&ring::aead::AES_256_GCM, &key).unwrap());
        let mut rates: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
        let mut out = Vec::with_capacity(size + 64);
        // One sealed copy for the open variant to open, n times over (each
        // open gets a receiver at the same count, as a fresh session).
        let mut sealed = Vec::new();
        assert!(wire::Session::keyed(&key).seal(&f, &mut sealed));
        let mut scratch = sealed.clone();
        for r in 0..rounds {
            for k in 0..names.len() {
                let v = (k + r) % names.len();
                let t = thread_cpu();
                match v {
                    0 => {
                        let mac = <Hmac<Sha256> as Mac>::new_from_slice(&key).unwrap();
                        for seq in 0..n as u64 {
                            out.clear();
                            out.extend_from_slice(&f);
                            let mut m = mac.clone();
                            m.update(&seq.to_le_bytes());
                            m.update(&f);
                            out.extend_from_slice(&m.finalize().into_bytes()[..16]);
                        }
                    }
                    1 => {
                        let mut s = wire::Session::keyed(&key);
                        for _ in 0..n {
                            out.clear();
                            assert!(s.seal(&f, &mut out));
                        }
                    }
                    3 => {
                        for seq in 0..n as u64 {
                            out.clear();
                            out.extend_from_slice(&f);
                            let mut nonce = [0u8; 12];
                            nonce[..8].copy_from_slice(&seq.to_le_bytes());
                            let (head, body) = out.split_at_mut(4);
                            let tag = gcm
                                .seal_in_place_separate_tag(
                                    ring::aead::Nonce::assume_unique_for_key(nonce),
                                    ring::aead::Aad::from(&*head),
                                    body,
                                )
                                .unwrap();
                            out.extend_from_slice(tag.as_ref());
                        }
                    }
                    _ => {
                        for _ in 0..n {
                            scratch.copy_from_slice(&sealed);
                            let (frame, tag) = scratch.split_at_mut(f.len());
                            assert!(wire::Session::keyed(&key).open(frame, tag));
                        }
                    }
                }
                std::hint::black_box(&out);
                rates[v].push((n * size) as f64 / (thread_cpu() - t) / 1e6);
            }
        }
        let med = |xs: &mut Vec<f64>| {
            xs.sort_by(f64::total_cmp);
            xs[xs.len() / 2]
        };
        let base = med(&mut rates[0].clone());
        for (name, xs) in names.iter().zip(rates.iter_mut()) {
            let m = med(xs);
            println!(
                "| {} | {name} | {m:.0} [{:.0} .. {:.0}] | {:.2} |",
                if size >= 1024 { format!("{} KiB", size >> 10) } else { format!("{size} B") },
                xs[0],
                xs[xs.len() - 1],
                m / base
            );
        }
    }
}
