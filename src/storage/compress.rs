//! Transparent zstd compression of values, one `Codec` per core.
//!
//! A value of at least `min_size` bytes is compressed when it is stored and
//! kept compressed only if that saves at least a tenth. Values that are
//! already compressed (zstd, gzip, zlib, lz4, snappy, bzip2, xz, zip, JPEG,
//! PNG, GIF, WebP signatures) or look random (most byte values present in a
//! sample) are stored as they are without trying. Clients see none of it:
//! they get back the bytes and flags they stored.
//!
//! Frames are magicless, carry no content size or dictionary id (the record
//! has both) and do carry zstd's checksum, so a corrupt frame is detected
//! rather than returned as garbage.
//!
//! Dictionaries: with `DictMode::Auto` the codec samples the values it
//! stores, hands them out as a `TrainingJob` that the server trains on a
//! helper thread (so the core never stalls; storage starts no threads), and
//! uses the dictionary it gets back for new items from then on; each item records its dictionary
//! id, so items written before keep decompressing. A core trains at most
//! `MAX_DICTS` times; dictionaries live as long as the core.
//!
//! Must not import protocol, route, repl or server.

use std::sync::Arc;

use zstd::zstd_safe::{self, CCtx, CDict, CParameter, DCtx, DDict, DParameter, FrameFormat, InBuffer, OutBuffer};

/// Values kept compressed must shrink by at least a tenth.
const MIN_SAVING_DIV: usize = 10;
/// Sample at most this many bytes before training a dictionary (less in a
/// small store: a sixteenth of its limit, at least TRAIN_BYTES_MIN).
const TRAIN_BYTES: usize = 1 << 20;
const TRAIN_BYTES_MIN: usize = 16 << 10;
/// ... or this many values, whichever comes first.
const TRAIN_SAMPLES: usize = 8_000;
/// Values longer than this are not sampled (dictionaries help small ones).
const SAMPLE_MAX: usize = 4096;
const DICT_SIZE: usize = 16 * 1024;
/// Retrain after this many items written with the current dictionary.
const RETRAIN_EVERY: u64 = 2_000_000;
pub const MAX_DICTS: usize = 4;
const WINDOW_LOG: u32 = 17;
/// After this many failed attempts in a row, only one value in BACKOFF is
/// tried (a failed attempt costs 2-3 µs for nothing).
const FAIL_STREAK: u32 = 64;
const BACKOFF: u32 = 16;
/// Compression context size beyond which it is replaced by a fresh one.
const KEEP_CONTEXT: usize = 256 * 1024;
/// What enabled compression is charged for its contexts and frame buffer:
/// a compression context up to KEEP_CONTEXT, a decompression one up to half
/// of it, the frame buffer up to KEEP_FRAME.
const CONTEXT_RESERVE: usize = KEEP_CONTEXT + KEEP_CONTEXT / 2 + KEEP_FRAME;
/// Frame buffer capacity kept between compressions.
const KEEP_FRAME: usize = 64 * 1024;
/// Distinct byte values, in percent of the sample, above which it counts as
/// random.
const DISTINCT_PERCENT: usize = 55;

#[derive(Clone, Debug, Default)]
pub enum DictMode {
    #[default]
    Off,
    Auto,
    /// A trained dictionary loaded from a file.
    Loaded(Arc<Vec<u8>>),
}

#[derive(Clone, Debug)]
pub struct CompressConfig {
    pub enabled: bool,
    pub min_size: usize,
    pub level: i32,
    pub dict: DictMode,
}

impl Default for CompressConfig {
    fn default() -> Self {
        CompressConfig { enabled: false, min_size: 128, level: 1, dict: DictMode::Off }
    }
}

#[derive(Clone, Copy, Debug, Default)]
pub struct CompressStats {
    /// Values that were tried and kept uncompressed (saved under a tenth).
    pub skipped_incompressible: u64,
    /// Values not tried: already compressed or random-looking.
    pub skipped_compressed: u64,
    pub dict_trainings: u64,
    /// Stored frames that failed to decompress (reported as misses).
    pub corrupt: u64,
}

struct Dict {
    cdict: &'static CDict<'static>,
    ddict: &'static DDict<'static>,
    memory: usize,
}

pub struct Codec {
    cfg: CompressConfig,
    cctx: CCtx<'static>,
    /// Decompression only needs shared access to the store (reads hand out
    /// `&Store`), hence the cell.
    dctx: std::cell::RefCell<DCtx<'static>>,
    /// Dictionary `id` is `dicts[id - 1]`.
    dicts: Vec<Dict>,
    /// Compression attempts that failed in a row, and attempts still to
    /// skip because of them.
    fail_streak: u32,
    backoff: u32,
    /// Sample bytes that start a training.
    train_bytes: usize,
    /// Trainings started (at most MAX_DICTS per core).
    trainings: usize,
    /// A value has been compressed (the contexts have been used).
    used: bool,
    /// Items written with the newest dictionary (for retraining).
    since_training: u64,
    samples: Vec<u8>,
    sample_sizes: Vec<usize>,
    /// Samples ready to train on, until the server takes them.
    job: Option<TrainingJob>,
    /// A job was taken and its dictionary has not come back yet.
    training: bool,
    /// The last compressed frame.
    out: Vec<u8>,
    pub stats: CompressStats,
}

/// Well-known signatures of compressed formats.
fn looks_compressed(v: &[u8]) -> bool {
    const MAGIC: &[&[u8]] = &[
        &[0x28, 0xB5, 0x2F, 0xFD],             // zstd
        &[0x1F, 0x8B],                         // gzip
        &[0x04, 0x22, 0x4D, 0x18],             // lz4 frame
        &[0xFF, 0x06, 0x00, 0x00, b's', b'N'], // snappy framed
        b"BZh",                                // bzip2
        &[0xFD, b'7', b'z', b'X', b'Z', 0x00], // xz
        b"PK\x03\x04",                         // zip
        &[0xFF, 0xD8, 0xFF],                   // JPEG
        &[0x89, b'P', b'N', b'G'],             // PNG
        b"GIF8",                               // GIF
    ];
    if MAGIC.iter().any(|m| v.starts_with(m)) {
        return true;
    }
    // zlib: CMF 0x78 and a header checksum that divides by 31.
    if v.len() >= 2 && v[0] == 0x78 && (u16::from(v[0]) << 8 | u16::from(v[1])) % 31 == 0 {
        return true;
    }
    v.len() >= 12 && &v[..4] == b"RIFF" && &v[8..12] == b"WEBP"
}

/// Random or encrypted data uses most byte values in any sample; text,
/// JSON and most binary records use few. Counting distinct bytes in up to
/// 256 bytes taken at 4 places costs far less than a compression attempt.
fn looks_random(v: &[u8]) -> bool {
    let mut seen = [0u64; 4];
    let span = 64.min(v.len());
    for k in 0..4 {
        let start = (v.len() - span) * k / 3;
        for &b in &v[start..start + span] {
            seen[(b >> 6) as usize] |= 1 << (b & 63);
        }
    }
    // The four spans overlap when the value is shorter than 256 bytes.
    let n = v.len().min(4 * span);
    let distinct: u32 = seen.iter().map(|w| w.count_ones()).sum();
    // 256 random bytes show about 162 distinct values, 128 show about 100;
    // English or JSON shows 30 to 60.
    distinct as usize * 100 > n * DISTINCT_PERCENT
}

/// Sampled values to train a zstd dictionary on: `Store::take_training`
/// hands one out, the server runs `train` off the core (it takes tens of
/// milliseconds to seconds) and gives the result to
/// `Store::install_dictionary`.
pub struct TrainingJob {
    samples: Vec<u8>,
    sizes: Vec<usize>,
}

impl TrainingJob {
    /// Train the dictionary; None (logged) when zstd cannot.
    pub fn train(self) -> Option<Vec<u8>> {
        let dict = zstd::dict::from_continuous(&self.samples, &self.sizes, DICT_SIZE);
        if let Err(e) = &dict {
            log::warn!("zstd dictionary training failed: {e}");
        }
        dict.ok()
    }
}

fn new_cctx(level: i32) -> CCtx<'static> {
    let mut c = CCtx::create();
    for p in [
        CParameter::CompressionLevel(level),
        CParameter::Format(FrameFormat::Magicless),
        CParameter::ContentSizeFlag(false),
        CParameter::DictIdFlag(false),
        CParameter::ChecksumFlag(true),
        // A 128 KiB window bounds the context's memory for large values.
        CParameter::WindowLog(WINDOW_LOG),
    ] {
        c.set_parameter(p).expect("zstd accepts its own parameters");
    }
    c
}

/// Magicless frames, decompressed into a destination that holds the whole
/// value and never moves (so zstd needs no window buffer of its own).
fn set_dparams(d: &mut DCtx<'static>) -> zstd_safe::SafeResult {
    d.set_parameter(DParameter::Format(FrameFormat::Magicless))?;
    d.set_parameter(DParameter::StableOutBuffer(true))
}

impl Codec {
    /// `limit`: the store's memory limit, which the samples must fit well
    /// within.
    pub fn new(cfg: CompressConfig, limit: usize) -> Codec {
        let mut dctx = DCtx::create();
        set_dparams(&mut dctx).expect("zstd accepts its own parameters");
        let mut codec = Codec {
            cctx: new_cctx(cfg.level),
            dctx: std::cell::RefCell::new(dctx),
            dicts: Vec::new(),
            used: false,
            trainings: 0,
            train_bytes: (limit / 16).clamp(TRAIN_BYTES_MIN, TRAIN_BYTES),
            fail_streak: 0,
            backoff: 0,
            since_training: 0,
            samples: Vec::new(),
            sample_sizes: Vec::new(),
            job: None,
            training: false,
            out: Vec::new(),
            stats: CompressStats::default(),
            cfg,
        };
        if let DictMode::Loaded(d) = &codec.cfg.dict {
            let d = d.clone();
            codec.install(&d);
        }
        codec
    }

    pub fn enabled(&self) -> bool {
        self.cfg.enabled
    }

    /// Change what a running core compresses (the server's SIGHUP reload):
    /// on or off, the smallest value, the level of values compressed from
    /// now on. Stored items are untouched; dictionaries stay.
    pub fn reconfigure(&mut self, enabled: bool, min_size: usize, level: i32) {
        if level != self.cfg.level {
            self.cctx = new_cctx(level);
        }
        self.cfg.enabled = enabled;
        self.cfg.min_size = min_size.max(1);
        self.cfg.level = level;
    }

    /// Bytes counted for contexts, buffers, dictionaries and samples. The
    /// contexts' size moves with every value (zstd sizes its tables to the
    /// input), and a read must not push a core over its limit, so enabled
    /// compression is charged a fixed reserve that the contexts are kept
    /// under (KEEP_CONTEXT, KEEP_FRAME), from its first compression on.
    pub fn memory(&self) -> usize {
        // Until the first value is compressed the contexts stay as created.
        let contexts = if self.used {
            CONTEXT_RESERVE
        } else {
            self.cctx.sizeof() + self.dctx.borrow().sizeof() + self.out.capacity()
        };
        let job = self.job.as_ref().map_or(0, |j| j.samples.capacity());
        contexts + self.dicts.iter().map(|d| d.memory).sum::<usize>() + self.samples.capacity() + job
    }

    pub fn dictionaries(&self) -> usize {
        self.dicts.len()
    }

    fn install(&mut self, raw: &[u8]) {
        if self.dicts.len() >= MAX_DICTS {
            return;
        }
        // Dictionaries live as long as the core (items may use them until
        // the end); leaking gives the contexts the 'static borrow they need.
        let cdict: &'static CDict<'static> = Box::leak(Box::new(CDict::create(raw, self.cfg.level)));
        let ddict: &'static DDict<'static> = Box::leak(Box::new(DDict::create(raw)));
        let memory = cdict.sizeof() + ddict.sizeof();
        // A compression that stopped early (the frame would not have saved
        // a tenth) leaves the context mid-frame, where zstd refuses a new
        // dictionary: start a new session first.
        let _ = self.cctx.reset(zstd_safe::ResetDirective::SessionOnly);
        if self.cctx.ref_cdict(cdict).is_err() {
            log::error!("cannot use a trained zstd dictionary; compressing without");
            return;
        }
        self.dicts.push(Dict { cdict, ddict, memory });
        self.since_training = 0;
        (self.fail_streak, self.backoff) = (0, 0);
    }

    /// Samples ready to train a dictionary on, if there are: the caller
    /// trains them off the core and gives the result to `trained`.
    pub fn take_training(&mut self) -> Option<TrainingJob> {
        let job = self.job.take()?;
        self.training = true;
        self.trainings += 1;
        Some(job)
    }

    /// The dictionary trained on the last job taken (None: training failed
    /// or never ran); sampling may start again.
    pub fn trained(&mut self, dict: Option<Vec<u8>>) {
        self.training = false;
        if let Some(raw) = dict {
            self.stats.dict_trainings += 1;
            self.install(&raw);
        }
    }

    fn sample(&mut self, v: &[u8]) {
        if !matches!(self.cfg.dict, DictMode::Auto)
            || self.job.is_some()
            || self.training
            || self.trainings >= MAX_DICTS
        {
            return;
        }
        if !self.dicts.is_empty() && self.since_training < RETRAIN_EVERY {
            return;
        }
        if v.len() > SAMPLE_MAX {
            return;
        }
        self.samples.extend_from_slice(v);
        self.sample_sizes.push(v.len());
        if self.samples.len() >= self.train_bytes || self.sample_sizes.len() >= TRAIN_SAMPLES {
            let samples = std::mem::take(&mut self.samples);
            let sizes = std::mem::take(&mut self.sample_sizes);
            self.job = Some(TrainingJob { samples, sizes });
        }
    }

    /// Compress `value` for storage. On success the frame is in
    /// `compressed()` and the result is the dictionary id it used.
    pub fn compress(&mut self, value: &[u8]) -> Option<u8> {
        if !self.cfg.enabled || value.len() < self.cfg.min_size {
            return None;
        }
        if looks_compressed(value) || looks_random(value) {
            self.stats.skipped_compressed += 1;
            return None;
        }
        self.sample(value);
        if self.backoff > 0 {
            // Long runs of values that do not compress (before a dictionary,
            // or data that zstd cannot shrink) are tried one in BACKOFF.
            self.backoff -= 1;
            self.stats.skipped_incompressible += 1;
            return None;
        }
        // A frame that does not fit in nine tenths of the value is not kept:
        // zstd stops with "destination too small".
        let limit = value.len() - value.len() / MIN_SAVING_DIV;
        self.used = true;
        self.out.clear();
        self.out.reserve(limit);
        let ok = self.cctx.compress2(&mut self.out, value).is_ok_and(|n| n <= limit);
        if self.cctx.sizeof() > KEEP_CONTEXT {
            // A large value grew the context's tables: start a small one.
            self.cctx = new_cctx(self.cfg.level);
            if let Some(d) = self.dicts.last()
                && self.cctx.ref_cdict(d.cdict).is_err()
            {
                log::error!("cannot reuse the zstd dictionary; compressing without");
            }
        }
        if !ok {
            self.stats.skipped_incompressible += 1;
            self.fail_streak += 1;
            if self.fail_streak >= FAIL_STREAK {
                self.backoff = BACKOFF - 1;
            }
            return None;
        }
        self.fail_streak = 0;
        self.since_training += 1;
        Some(self.dicts.len() as u8)
    }

    /// The frame the last successful `compress` produced.
    #[cfg(test)]
    pub fn compressed(&self) -> &[u8] {
        &self.out
    }

    /// Take the frame the last successful `compress` produced; hand the
    /// vector back with `give_back_frame` so that its capacity is reused.
    pub fn take_frame(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    pub fn give_back_frame(&mut self, v: Vec<u8>) {
        // Keep small buffers for reuse; a large value's frame is not kept
        // as memory nobody counts.
        if v.capacity() <= KEEP_FRAME {
            self.out = v;
        }
    }

    /// Append the original value, `len` bytes, decompressed from the frame
    /// split over `chunks`, to `out`. False (and `out` as it was) when the
    /// frame is corrupt.
    pub fn decompress_into<'a>(
        &self,
        dict: u8,
        chunks: impl Iterator<Item = &'a [u8]>,
        len: usize,
        out: &mut Vec<u8>,
    ) -> bool {
        let start = out.len();
        out.resize(start + len, 0);
        let ok = self.decompress_frame(dict, chunks, &mut out[start..]);
        if !ok {
            out.truncate(start);
        }
        let mut dctx = self.dctx.borrow_mut();
        if dctx.sizeof() > KEEP_CONTEXT / 2 {
            // A frame split over chunks made zstd buffer input: start small.
            let mut fresh = DCtx::create();
            if set_dparams(&mut fresh).is_ok() {
                *dctx = fresh;
            }
        }
        ok
    }

    fn decompress_frame<'a>(&self, dict: u8, chunks: impl Iterator<Item = &'a [u8]>, dst: &mut [u8]) -> bool {
        let mut dctx = self.dctx.borrow_mut();
        // A fresh session with this item's dictionary.
        if dctx.reset(zstd_safe::ResetDirective::SessionAndParameters).is_err() || set_dparams(&mut dctx).is_err() {
            return false;
        }
        if dict != 0 {
            let Some(d) = self.dicts.get(dict as usize - 1) else {
                return false;
            };
            if dctx.ref_ddict(d.ddict).is_err() {
                return false;
            }
        }
        let total = dst.len();
        let mut output = OutBuffer::around(dst);
        let mut finished = false;
        for chunk in chunks {
            let mut input = InBuffer::around(chunk);
            while input.pos() < chunk.len() {
                match dctx.decompress_stream(&mut output, &mut input) {
                    Ok(0) => finished = true,
                    Ok(_) => {}
                    Err(_) => return false,
                }
                if finished && input.pos() < chunk.len() {
                    return false; // bytes after the frame
                }
            }
        }
        finished && output.pos() == total
    }
}

impl super::Store {
    /// See `Codec::reconfigure`.
    pub fn set_compress(&mut self, enabled: bool, min_size: usize, level: i32) {
        self.codec.reconfigure(enabled, min_size, level);
        self.cfg.compress.enabled = enabled;
        self.cfg.compress.min_size = min_size.max(1);
        self.cfg.compress.level = level;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codec(min_size: usize, dict: DictMode) -> Codec {
        Codec::new(CompressConfig { enabled: true, min_size, level: 1, dict }, 64 << 20)
    }

    fn json(i: usize) -> Vec<u8> {
        format!(
            r#"{{"id":{i},"name":"user{i}","email":"user{i}@example.com","active":true,"plan":"pro","tags":["a","b"],"score":{}}}"#,
            i * 37 % 1000
        )
        .into_bytes()
    }

    fn round_trip(c: &mut Codec, v: &[u8]) -> Option<Vec<u8>> {
        let dict = c.compress(v)?;
        let frame = c.compressed().to_vec();
        let mut out = b"prefix".to_vec();
        // Split the frame in uneven chunks, as large values are.
        let chunks: Vec<&[u8]> = frame.chunks(7).collect();
        assert!(c.decompress_into(dict, chunks.into_iter(), v.len(), &mut out));
        assert_eq!(&out[..6], b"prefix");
        Some(out[6..].to_vec())
    }

    #[test]
    fn compressible_values_round_trip_and_others_are_left_alone() {
        let mut c = codec(64, DictMode::Off);
        let text = b"the quick brown fox jumps over the lazy dog ".repeat(40);
        assert_eq!(round_trip(&mut c, &text).unwrap(), text);
        assert!(c.compressed().len() < text.len() / 5);
        assert!(round_trip(&mut c, b"short").is_none(), "under min_size");
        let mut rng = 0x2545_F491_4F6C_DD1Du64;
        let random: Vec<u8> = (0..4096)
            .map(|_| {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                rng as u8
            })
            .collect();
        assert!(round_trip(&mut c, &random).is_none());
        assert_eq!(c.stats.skipped_compressed, 1, "random data is not even tried");
        let mut gz = vec![0x1F, 0x8B];
        gz.extend_from_slice(&text);
        assert!(round_trip(&mut c, &gz).is_none());
        assert_eq!(c.stats.skipped_compressed, 2);
    }

    /// zstd refuses a dictionary while a frame is unfinished, which is how
    /// a compression that did not save a tenth leaves the context.
    #[test]
    fn a_dictionary_installs_after_a_failed_compression() {
        let mut c = codec(64, DictMode::Auto);
        let mut x = 7u64;
        let noisy: Vec<u8> = (0..160)
            .map(|_| {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                33 + ((x >> 33) % 94) as u8
            })
            .collect();
        assert!(c.compress(&noisy).is_none());
        assert_eq!(c.stats.skipped_incompressible, 1, "the attempt ran and failed");
        let samples: Vec<Vec<u8>> = (0..2000).map(json).collect();
        let dict = zstd::dict::from_samples(&samples, DICT_SIZE).unwrap();
        c.install(&dict);
        assert_eq!(c.dictionaries(), 1);
        assert_eq!(c.compress(&json(5)), Some(1));
    }

    /// After a long run of values that do not compress, only one in
    /// BACKOFF is tried, until one compresses again.
    #[test]
    fn long_runs_of_failures_back_off() {
        let mut c = codec(64, DictMode::Off);
        let mut x = 7u64;
        let mut noisy = || -> Vec<u8> {
            (0..160)
                .map(|_| {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    33 + ((x >> 33) % 94) as u8
                })
                .collect()
        };
        for _ in 0..FAIL_STREAK {
            assert!(c.compress(&noisy()).is_none());
        }
        let text = b"the quick brown fox jumps over the lazy dog ".repeat(4);
        // Within the back-off even a compressible value is not tried...
        assert!(c.compress(&text).is_none());
        for _ in 0..BACKOFF - 2 {
            c.compress(&noisy());
        }
        // ...the next one is, and success ends the back-off.
        assert!(c.compress(&text).is_some());
        assert!(c.compress(&text).is_some());
    }

    #[test]
    fn corrupt_frames_are_detected() {
        let mut c = codec(64, DictMode::Off);
        let text = b"abcdefghij".repeat(100);
        c.compress(&text).unwrap();
        let frame = c.compressed().to_vec();
        for i in 0..frame.len() {
            let mut bad = frame.clone();
            bad[i] ^= 0x5A;
            let mut out = Vec::new();
            let ok = c.decompress_into(0, std::iter::once(&bad[..]), text.len(), &mut out);
            assert!(!ok || out == text, "flipping byte {i} gave garbage");
        }
        let mut out = Vec::new();
        assert!(!c.decompress_into(0, std::iter::once(&frame[..frame.len() - 1]), text.len(), &mut out));
        assert!(out.is_empty());
        assert!(!c.decompress_into(9, std::iter::once(&frame[..]), text.len(), &mut out), "unknown dictionary");
    }

    #[test]
    fn a_trained_dictionary_compresses_small_json_better_and_old_items_still_read() {
        let mut c = codec(64, DictMode::Auto);
        // Alone, one record barely compresses; two share their field names.
        let before = [json(1), json(2)].concat();
        let d0 = c.compress(&before).unwrap();
        assert_eq!(d0, 0);
        let old_frame = c.compressed().to_vec();
        let mut job = None;
        for i in 0..TRAIN_SAMPLES + 10 {
            c.compress(&json(i));
            job = job.or_else(|| c.take_training());
        }
        let job = job.expect("enough samples to train on");
        assert!(c.take_training().is_none(), "one job at a time");
        c.trained(job.train());
        assert_eq!(c.dictionaries(), 1);
        assert_eq!(c.stats.dict_trainings, 1);
        let v = json(123_456);
        let d1 = c.compress(&v).unwrap();
        assert_eq!(d1, 1);
        let with_dict = c.compressed().len();
        let mut plain = codec(64, DictMode::Off);
        plain.compress(&v);
        assert!(with_dict * 2 < plain.compressed().len().max(v.len() * 9 / 10), "{with_dict} vs {}", v.len());
        let mut out = Vec::new();
        assert!(c.decompress_into(d1, std::iter::once(c.compressed()), v.len(), &mut out));
        assert_eq!(out, v);
        let mut out = Vec::new();
        assert!(c.decompress_into(d0, std::iter::once(&old_frame[..]), before.len(), &mut out));
        assert_eq!(out, before, "items written before the dictionary still read");
    }
}
