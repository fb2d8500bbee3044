//! Seeded generator of realistic JSON records for `memcore-bench
//! --data-json` (compression benchmarks, issue 7): user profiles and
//! product listings as a web application would cache them.
//!
//! A value depends only on (data seed, key, length): the same key always
//! gets the same bytes, on every run and against every server, and two keys
//! get different records. Every value is valid JSON of exactly the length
//! asked for: fields are added in a fixed order (as a serializer emits
//! them), optional ones at random, and repeated sub-records (orders,
//! activity, reviews) until the record is nearly full; a last free-text
//! field (`"note"`) is cut to fill the remaining bytes exactly.
//!
//! Field values vary the way real ones do: names, cities, brands and words
//! are drawn from lists with a skewed (log-uniform, Zipf-like) popularity,
//! ids, prices, counters and timestamps are random numbers, and avatar and
//! image URLs carry random hex ids, session ids are random UUIDs, IP
//! addresses are random. Free text is word salad from a 300-word vocabulary
//! with the same skew. No data is downloaded; nothing repeats from one
//! record to the next except the schema and the vocabularies. The longer
//! lists live in `bench/generator/data/` (one entry a line; cities.tsv has
//! four tab-separated columns), built in with `include_str!` and split at
//! compile time; their order is their popularity.
//!
//! Cost: about 0.2 µs per 200-byte value and 2 µs per 2 KiB one on one
//! core of the 2-CPU VM of docs/benchmarks.md (`memcore-bench
//! --print-values 0 --data-json mix -d 2048` times it).

use crate::keygen::Rng;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    User,
    Product,
    /// Users and products, half each (chosen per key).
    Mix,
}

impl Kind {
    pub fn parse(s: &str) -> Result<Kind, String> {
        match s {
            "user" | "users" => Ok(Kind::User),
            "product" | "products" => Ok(Kind::Product),
            "mix" | "mixed" => Ok(Kind::Mix),
            _ => Err(format!("--data-json {s:?}: use user, product or mix")),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::User => "user",
            Kind::Product => "product",
            Kind::Mix => "mix",
        }
    }
}

#[derive(Clone, Debug)]
pub struct JsonGen {
    pub kind: Kind,
    pub seed: u64,
}

/// Room kept for the closing `,"note":""}` (the note's text may be empty).
const TAIL: usize = 11;

/// A word list from `data/` (one entry a line, each line ending in `\n`),
/// split at compile time: as cheap to index as a literal array.
macro_rules! word_list {
    ($file:literal) => {{
        const TEXT: &str = include_str!(concat!("../data/", $file));
        const LIST: [&str; line_count(TEXT)] = split_lines(TEXT);
        &LIST
    }};
}

/// A tab-separated table from `data/` with four columns a line.
macro_rules! city_list {
    ($file:literal) => {{
        const TEXT: &str = include_str!(concat!("../data/", $file));
        const LIST: [(&str, &str, &str, &str); line_count(TEXT)] = split_rows(TEXT);
        &LIST
    }};
}

const fn line_count(text: &str) -> usize {
    let b = text.as_bytes();
    let (mut i, mut n) = (0, 0);
    while i < b.len() {
        if b[i] == b'\n' {
            n += 1;
        }
        i += 1;
    }
    n
}

/// Cuts `text` before the first `sep`: (field, rest after `sep`).
const fn cut(text: &str, sep: u8) -> (&str, &str) {
    let b = text.as_bytes();
    let mut i = 0;
    while b[i] != sep {
        i += 1;
    }
    let (field, rest) = text.split_at(i);
    (field, rest.split_at(1).1)
}

const fn split_lines<const N: usize>(mut text: &str) -> [&str; N] {
    let mut out = [""; N];
    let mut k = 0;
    while k < N {
        (out[k], text) = cut(text, b'\n');
        k += 1;
    }
    out
}

const fn split_rows<const N: usize>(mut text: &str) -> [(&str, &str, &str, &str); N] {
    let mut out = [("", "", "", ""); N];
    let mut k = 0;
    while k < N {
        let line;
        (line, text) = cut(text, b'\n');
        let (a, rest) = cut(line, b'\t');
        let (b, rest) = cut(rest, b'\t');
        let (c, d) = cut(rest, b'\t');
        out[k] = (a, b, c, d);
        k += 1;
    }
    out
}

const FIRST: &[&str] = word_list!("first-names.txt");
const LAST: &[&str] = word_list!("last-names.txt");
/// (city, country code, time zone, locale)
const CITIES: &[(&str, &str, &str, &str)] = city_list!("cities.tsv");
const STREETS: &[&str] = word_list!("streets.txt");
const STREET_KIND: &[&str] = &["St", "Ave", "Rd", "Blvd", "Lane", "Way", "Dr", "Ct", "Pl", "Strasse"];
const DOMAINS: &[&str] = word_list!("email-domains.txt");
const PLANS: &[&str] = &["free", "basic", "pro", "team", "enterprise"];
const THEMES: &[&str] = &["light", "dark", "system"];
const CURRENCIES: &[&str] = &["USD", "EUR", "GBP", "JPY", "CAD", "BRL", "PLN", "INR"];
const ORDER_STATUS: &[&str] = &["delivered", "shipped", "processing", "cancelled", "returned", "pending"];
const ACTIONS: &[&str] = word_list!("actions.txt");
const DEVICES: &[&str] = &["ios", "android", "web", "desktop", "tablet"];
const BRANDS: &[&str] = word_list!("brands.txt");
const CATEGORIES: &[&str] = word_list!("categories.txt");
const ADJ: &[&str] = word_list!("adjectives.txt");
const NOUNS: &[&str] = word_list!("nouns.txt");
const COLORS: &[&str] =
    &["black", "white", "silver", "navy", "red", "green", "blue", "grey", "beige", "olive", "pink", "charcoal"];
const MATERIALS: &[&str] = word_list!("materials.txt");
const SHIP: &[&str] = &["standard", "express", "next_day", "pickup", "economy"];
const WAREHOUSES: &[&str] = &["FRA1", "AMS2", "LHR3", "IAD1", "SFO2", "NRT1", "GRU1", "WAW1", "BOM2"];
/// Free-text vocabulary (about 300 words, most common first).
const WORDS: &[&str] = word_list!("words.txt");
const INTERESTS: &[&str] = word_list!("interests.txt");

/// Skewed word ranks for free text, as `zipf` draws them, indexed by 12
/// random bits (free text is most of a large record: one lookup a word).
fn word_ranks() -> &'static [u16; 4096] {
    static T: std::sync::OnceLock<[u16; 4096]> = std::sync::OnceLock::new();
    T.get_or_init(|| {
        let n = WORDS.len() as f64;
        std::array::from_fn(|i| {
            let r = ((n + 1.0).powf((i as f64 + 0.5) / 4096.0) - 1.0) as usize;
            r.min(WORDS.len() - 1) as u16
        })
    })
}

/// log2(n) within 0.01 (exponent plus a quadratic in the mantissa).
#[inline]
fn fast_log2(n: usize) -> f64 {
    let e = usize::BITS - 1 - n.leading_zeros();
    let m = n as f64 / (1u64 << e) as f64 - 1.0;
    e as f64 + m * (1.3466 - 0.3466 * m)
}

/// Appends JSON to `out`, never past `end` (the absolute length where the
/// closing tail starts).
struct W<'a> {
    out: &'a mut Vec<u8>,
    /// A cell so that `w.u(w.below(n))` reads naturally.
    rng: std::cell::Cell<Rng>,
    comma: bool,
}

impl W<'_> {
    #[inline]
    fn s(&mut self, s: &str) {
        self.out.extend_from_slice(s.as_bytes());
    }

    #[inline]
    fn b(&mut self, b: u8) {
        self.out.push(b);
    }

    #[inline]
    fn u(&mut self, v: u64) {
        crate::push_u64(self.out, v);
    }

    #[inline]
    fn below(&self, n: u64) -> u64 {
        let mut r = self.rng.take();
        let v = r.below(n);
        self.rng.set(r);
        v
    }

    #[inline]
    fn next_u64(&self) -> u64 {
        let mut r = self.rng.take();
        let v = r.next_u64();
        self.rng.set(r);
        v
    }

    #[inline]
    fn unit(&self) -> f64 {
        let mut r = self.rng.take();
        let v = r.unit();
        self.rng.set(r);
        v
    }

    /// Skewed pick: log-uniform rank, so the first entries are the most
    /// frequent (P(rank r) ~ 1/r, like word frequencies).
    #[inline]
    fn zipf<'s>(&self, list: &[&'s str]) -> &'s str {
        // (n+1)^u = 2^(u log2(n+1)), with 2^f ~ 1 + f(0.6565 + 0.344f) on
        // [0, 1) (within 0.3%: the ranks' probabilities, not the ranks, are
        // approximate).
        let x = self.unit() * fast_log2(list.len() + 1);
        let i = x as u32;
        let f = x - i as f64;
        let r = ((1u64 << i) as f64 * (1.0 + f * (0.6565 + 0.344 * f)) - 1.0) as usize;
        list[r.min(list.len() - 1)]
    }

    #[inline]
    fn pick<'s>(&self, list: &[&'s str]) -> &'s str {
        list[self.below(list.len() as u64) as usize]
    }

    fn key(&mut self, k: &str) {
        if self.comma {
            self.b(b',');
        }
        self.comma = true;
        self.b(b'"');
        self.s(k);
        self.s("\":");
    }

    fn str_field(&mut self, k: &str, v: &str) {
        self.key(k);
        self.b(b'"');
        self.s(v);
        self.b(b'"');
    }

    fn num_field(&mut self, k: &str, v: u64) {
        self.key(k);
        self.u(v);
    }

    fn bool_field(&mut self, k: &str, v: bool) {
        self.key(k);
        self.s(if v { "true" } else { "false" });
    }

    /// Decimal with two places, e.g. a price.
    fn cents(&mut self, v: u64) {
        self.u(v / 100);
        self.b(b'.');
        self.b(b'0' + (v / 10 % 10) as u8);
        self.b(b'0' + (v % 10) as u8);
    }

    fn two(&mut self, v: u64) {
        self.b(b'0' + (v / 10 % 10) as u8);
        self.b(b'0' + (v % 10) as u8);
    }

    /// An ISO-8601 UTC timestamp between 2019 and 2026, quoted.
    fn ts(&mut self) {
        let y = 2019 + self.below(8);
        let (mo, d) = (1 + self.below(12), 1 + self.below(28));
        let (h, mi, s) = (self.below(24), self.below(60), self.below(60));
        self.b(b'"');
        self.u(y);
        self.b(b'-');
        self.two(mo);
        self.b(b'-');
        self.two(d);
        self.b(b'T');
        self.two(h);
        self.b(b':');
        self.two(mi);
        self.b(b':');
        self.two(s);
        self.s("Z\"");
    }

    fn hex(&mut self, n: usize) {
        const H: &[u8; 16] = b"0123456789abcdef";
        let mut x = 0u64;
        for i in 0..n {
            if i % 16 == 0 {
                x = self.next_u64();
            }
            self.b(H[(x & 15) as usize]);
            x >>= 4;
        }
    }

    fn uuid(&mut self) {
        self.b(b'"');
        self.hex(8);
        self.b(b'-');
        self.hex(4);
        self.s("-4");
        self.hex(3);
        self.b(b'-');
        self.hex(4);
        self.b(b'-');
        self.hex(12);
        self.b(b'"');
    }

    fn ip(&mut self) {
        self.b(b'"');
        self.u(1 + self.below(223));
        for _ in 0..3 {
            self.b(b'.');
            self.u(self.below(256));
        }
        self.b(b'"');
    }

    /// Free text of `words` words, unquoted (no characters needing escapes):
    /// skewed word choice, a comma or full stop after one word in nine.
    fn text(&mut self, words: usize) {
        let ranks = word_ranks();
        for i in 0..words {
            let x = self.next_u64();
            let w = WORDS[ranks[(x >> 52) as usize] as usize];
            if i == 0 {
                self.b(w.as_bytes()[0].to_ascii_uppercase());
                self.s(&w[1..]);
            } else {
                self.b(b' ');
                self.s(w);
            }
            if i + 1 < words && x.is_multiple_of(9) {
                self.b(if (x >> 8).is_multiple_of(3) { b'.' } else { b',' });
            }
        }
        self.b(b'.');
    }

    fn text_field(&mut self, k: &str, min: usize, max: usize) {
        self.key(k);
        self.b(b'"');
        let n = min + self.below((max - min + 1) as u64) as usize;
        self.text(n);
        self.b(b'"');
    }

    fn word_array(&mut self, k: &str, list: &[&str], max: u64) {
        self.key(k);
        self.b(b'[');
        let n = 1 + self.below(max);
        for i in 0..n {
            if i > 0 {
                self.b(b',');
            }
            self.b(b'"');
            let w = self.zipf(list);
            self.s(w);
            self.b(b'"');
        }
        self.b(b']');
    }
}

/// Adds fields one at a time while they fit: each field is written, and
/// rolled back (ending the record) when it leaves less than the tail.
struct Rec<'a> {
    w: W<'a>,
    end: usize,
    full: bool,
}

impl<'a> Rec<'a> {
    /// Write one field (or array element) with `f`; false, with nothing
    /// written, when it does not fit (and from then on).
    fn add(&mut self, f: impl FnOnce(&mut W<'a>)) -> bool {
        if self.full {
            return false;
        }
        let (at, comma) = (self.w.out.len(), self.w.comma);
        f(&mut self.w);
        if self.w.out.len() > self.end {
            self.w.out.truncate(at);
            self.w.comma = comma;
            self.full = true;
            return false;
        }
        true
    }

    /// An array of up to `max` sub-records, added while they fit (with
    /// the array's closing bracket); the record is full after it unless
    /// `max` was reached.
    fn array(&mut self, k: &str, max: usize, mut elem: impl FnMut(&mut W<'a>)) {
        if self.full {
            return;
        }
        let (at, comma) = (self.w.out.len(), self.w.comma);
        self.w.key(k);
        self.w.b(b'[');
        self.end -= 1; // room for ']'
        let mut n = 0;
        while n < max && !self.full {
            let first = n == 0;
            if self.add(|w| {
                if !first {
                    w.b(b',');
                }
                elem(w)
            }) {
                n += 1;
            }
        }
        self.end += 1;
        if n == 0 {
            self.w.out.truncate(at);
            self.w.comma = comma;
        } else {
            self.w.b(b']');
        }
    }
}

impl JsonGen {
    pub fn new(kind: Kind, seed: u64) -> JsonGen {
        JsonGen { kind, seed }
    }

    /// Length of `key`'s value when lengths are drawn from [min, max].
    pub fn len_for(&self, key: u64, min: usize, max: usize) -> usize {
        if max <= min {
            return min;
        }
        let mut r = Rng::new(self.seed ^ key.wrapping_mul(0xD6E8_FEB8_6659_FD93) ^ 0x1e57);
        min + r.below((max - min + 1) as u64) as usize
    }

    /// Append `key`'s record, exactly `len` bytes of JSON, to `out`.
    pub fn write(&self, out: &mut Vec<u8>, key: u64, len: usize) {
        let start = out.len();
        let rng = Rng::new(self.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ key.wrapping_mul(0xA24B_AED4_963E_E407));
        if len < TAIL + 2 {
            // Too short for a record: a JSON string (or a digit).
            if len == 1 {
                out.push(b'0');
            } else if len >= 2 {
                out.push(b'"');
                out.extend((0..len - 2).map(|i| b'a' + ((key as usize + i) % 26) as u8));
                out.push(b'"');
            }
            return;
        }
        let product = match self.kind {
            Kind::User => false,
            Kind::Product => true,
            Kind::Mix => (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 63) == 1,
        };
        out.reserve(len);
        out.push(b'{');
        let mut rec =
            Rec { w: W { out, rng: std::cell::Cell::new(rng), comma: false }, end: start + len - TAIL, full: false };
        if product {
            product_fields(&mut rec, key);
        } else {
            user_fields(&mut rec, key);
        }
        // The note fills what is left exactly: `,"note":"<text>"}`.
        let w = &mut rec.w;
        let room = start + len - w.out.len() - TAIL;
        if w.comma {
            w.s(",\"note\":\"");
        } else {
            w.s(" \"note\":\"");
        }
        let at = w.out.len();
        while w.out.len() < at + room {
            if w.out.len() > at {
                w.b(b' ');
            }
            let word = WORDS[word_ranks()[(w.next_u64() >> 52) as usize] as usize];
            w.s(word);
        }
        w.out.truncate(at + room);
        w.s("\"}");
        debug_assert_eq!(w.out.len(), start + len);
    }
}

fn user_fields(r: &mut Rec<'_>, key: u64) {
    let first = r.w.zipf(FIRST);
    let last = r.w.zipf(LAST);
    let n = r.w.below(1000);
    let city = CITIES[r.w.below(CITIES.len() as u64) as usize];
    r.add(|w| w.num_field("id", 1_000_000 + key));
    r.add(|w| {
        w.key("username");
        w.b(b'"');
        for b in first.bytes() {
            w.b(b.to_ascii_lowercase());
        }
        w.b(if w.below(2) == 0 { b'_' } else { b'.' });
        for b in last.bytes() {
            w.b(b.to_ascii_lowercase());
        }
        w.u(n);
        w.b(b'"');
    });
    r.add(|w| {
        w.key("name");
        w.b(b'"');
        w.s(first);
        w.b(b' ');
        w.s(last);
        w.b(b'"');
    });
    r.add(|w| {
        w.key("email");
        w.b(b'"');
        for b in first.bytes() {
            w.b(b.to_ascii_lowercase());
        }
        w.b(b'.');
        for b in last.bytes() {
            w.b(b.to_ascii_lowercase());
        }
        w.u(n);
        w.b(b'@');
        let d = w.zipf(DOMAINS);
        w.s(d);
        w.b(b'"');
    });
    r.add(|w| {
        let age = 18 + w.below(60);
        w.num_field("age", age)
    });
    r.add(|w| w.str_field("country", city.1));
    r.add(|w| w.str_field("city", city.0));
    r.add(|w| {
        let p = w.zipf(PLANS);
        w.str_field("plan", p)
    });
    r.add(|w| {
        let v = w.below(4) != 0;
        w.bool_field("verified", v)
    });
    r.add(|w| {
        w.key("created_at");
        w.ts()
    });
    r.add(|w| {
        w.key("last_login");
        w.ts()
    });
    r.add(|w| w.str_field("locale", city.3));
    r.add(|w| w.str_field("timezone", city.2));
    r.add(|w| {
        w.key("avatar_url");
        w.s("\"https://cdn.example.com/avatars/");
        w.hex(32);
        w.s(".jpg\"");
    });
    if r.w.below(3) != 0 {
        r.add(|w| {
            w.key("phone");
            w.s("\"+");
            w.u(1 + w.below(98));
            w.b(b' ');
            w.u(100_000_000 + w.below(900_000_000));
            w.b(b'"');
        });
    }
    r.add(|w| {
        w.key("address");
        w.s("{\"street\":\"");
        w.u(1 + w.below(2000));
        w.b(b' ');
        let s = w.zipf(STREETS);
        w.s(s);
        w.b(b' ');
        let k = w.zipf(STREET_KIND);
        w.s(k);
        w.s("\",\"zip\":\"");
        w.u(10_000 + w.below(90_000));
        w.s("\",\"city\":\"");
        w.s(city.0);
        w.s("\",\"country\":\"");
        w.s(city.1);
        w.s("\"}");
    });
    r.add(|w| w.text_field("bio", 5, 25));
    r.add(|w| w.word_array("interests", INTERESTS, 6));
    r.add(|w| {
        w.key("preferences");
        w.s("{\"newsletter\":");
        w.s(if w.below(2) == 0 { "true" } else { "false" });
        w.s(",\"theme\":\"");
        let t = w.pick(THEMES);
        w.s(t);
        w.s("\",\"currency\":\"");
        let c = w.zipf(CURRENCIES);
        w.s(c);
        w.s("\",\"notifications\":{\"email\":");
        w.s(if w.below(3) == 0 { "false" } else { "true" });
        w.s(",\"push\":");
        w.s(if w.below(2) == 0 { "false" } else { "true" });
        w.s(",\"sms\":");
        w.s(if w.below(5) == 0 { "true" } else { "false" });
        w.s("}}");
    });
    r.add(|w| {
        w.key("stats");
        w.s("{\"followers\":");
        let f = w.below(1 << w.below(14));
        w.u(f);
        w.s(",\"following\":");
        let f = w.below(1 << w.below(10));
        w.u(f);
        w.s(",\"posts\":");
        let p = w.below(1 << w.below(9));
        w.u(p);
        w.s(",\"reviews\":");
        let p = w.below(40);
        w.u(p);
        w.s("}");
    });
    r.add(|w| {
        w.key("session_id");
        w.uuid()
    });
    r.array("recent_orders", 6, |w| {
        w.s("{\"order_id\":\"ORD-");
        w.u(10_000_000 + w.below(90_000_000));
        w.s("\",\"date\":");
        w.ts();
        w.s(",\"total\":");
        let t = 500 + w.below(50_000);
        w.cents(t);
        w.s(",\"currency\":\"");
        let c = w.zipf(CURRENCIES);
        w.s(c);
        w.s("\",\"items\":");
        w.u(1 + w.below(6));
        w.s(",\"status\":\"");
        let s = w.zipf(ORDER_STATUS);
        w.s(s);
        w.s("\"}");
    });
    // A full record ends with recent activity, as many entries as fit.
    r.array("activity", usize::MAX, |w| {
        w.s("{\"ts\":");
        w.ts();
        w.s(",\"action\":\"");
        let a = w.zipf(ACTIONS);
        w.s(a);
        w.s("\",\"device\":\"");
        let d = w.zipf(DEVICES);
        w.s(d);
        w.s("\",\"ip\":");
        w.ip();
        if w.below(2) == 0 {
            w.s(",\"product_id\":");
            w.u(100_000 + w.below(900_000));
        }
        w.s("}");
    });
}

fn product_fields(r: &mut Rec<'_>, key: u64) {
    let brand = r.w.zipf(BRANDS);
    let noun = r.w.pick(NOUNS);
    let color = r.w.zipf(COLORS);
    let cur = r.w.zipf(CURRENCIES);
    r.add(|w| w.num_field("id", 5_000_000 + key));
    r.add(|w| {
        w.key("sku");
        w.b(b'"');
        for b in brand.bytes().filter(|b| b.is_ascii_alphabetic()).take(3) {
            w.b(b.to_ascii_uppercase());
        }
        w.b(b'-');
        w.u(10_000 + w.below(90_000));
        w.b(b'-');
        for b in color.bytes().take(3) {
            w.b(b.to_ascii_uppercase());
        }
        w.b(b'"');
    });
    r.add(|w| {
        w.key("title");
        w.b(b'"');
        w.s(brand);
        w.b(b' ');
        let a = w.zipf(ADJ);
        w.s(a);
        w.b(b' ');
        w.s(noun);
        w.s(" ");
        w.b(b'A' + w.below(26) as u8);
        w.u(w.below(1000));
        w.s(", ");
        let c = color.as_bytes();
        w.b(c[0].to_ascii_uppercase());
        w.out.extend_from_slice(&c[1..]);
        w.b(b'"');
    });
    r.add(|w| w.str_field("brand", brand));
    r.add(|w| {
        let c = w.zipf(CATEGORIES);
        w.str_field("category", c)
    });
    let price = 199 + r.w.below(1 << (10 + r.w.below(8)));
    r.add(|w| {
        w.key("price");
        w.cents(price)
    });
    r.add(|w| w.str_field("currency", cur));
    if r.w.below(3) == 0 {
        r.add(|w| {
            w.key("list_price");
            w.cents(price + price * (5 + w.below(40)) / 100)
        });
    }
    r.add(|w| {
        let s = w.below(1 << w.below(11));
        w.num_field("stock", s)
    });
    r.add(|w| {
        w.key("rating");
        let x = 20 + w.below(31);
        w.u(x / 10);
        w.b(b'.');
        w.u(x % 10);
    });
    r.add(|w| {
        let n = w.below(1 << w.below(13));
        w.num_field("review_count", n)
    });
    r.add(|w| {
        let a = w.below(10) != 0;
        w.bool_field("available", a)
    });
    r.add(|w| {
        w.key("created_at");
        w.ts()
    });
    r.add(|w| {
        w.key("updated_at");
        w.ts()
    });
    r.add(|w| {
        w.key("attributes");
        w.s("{\"color\":\"");
        w.s(color);
        w.s("\",\"material\":\"");
        let m = w.zipf(MATERIALS);
        w.s(m);
        w.s("\",\"weight_g\":");
        w.u(20 + w.below(5000));
        w.s(",\"dimensions_cm\":[");
        w.u(1 + w.below(120));
        w.b(b',');
        w.u(1 + w.below(80));
        w.b(b',');
        w.u(1 + w.below(60));
        w.s("]}");
    });
    r.add(|w| w.word_array("tags", WORDS, 5));
    r.add(|w| {
        w.key("shipping");
        w.s("{\"free\":");
        w.s(if w.below(2) == 0 { "true" } else { "false" });
        w.s(",\"days\":");
        w.u(1 + w.below(14));
        w.s(",\"methods\":[");
        let n = 1 + w.below(3);
        for i in 0..n {
            if i > 0 {
                w.b(b',');
            }
            w.b(b'"');
            let s = w.zipf(SHIP);
            w.s(s);
            w.b(b'"');
        }
        w.s("],\"warehouse\":\"");
        let h = w.pick(WAREHOUSES);
        w.s(h);
        w.s("\"}");
    });
    r.add(|w| {
        w.key("images");
        w.b(b'[');
        let n = 1 + w.below(4);
        for i in 0..n {
            if i > 0 {
                w.b(b',');
            }
            w.s("\"https://img.example.com/p/");
            w.hex(24);
            w.s(if w.below(3) == 0 { ".png\"" } else { ".jpg\"" });
        }
        w.b(b']');
    });
    r.add(|w| w.text_field("description", 15, 60));
    // A full listing ends with reviews, as many as fit.
    r.array("reviews", usize::MAX, |w| {
        w.s("{\"user_id\":");
        w.u(1_000_000 + w.below(9_000_000));
        w.s(",\"author\":\"");
        let f = w.zipf(FIRST);
        w.s(f);
        w.b(b' ');
        w.b(b'A' + w.below(26) as u8);
        w.s(".\",\"rating\":");
        w.u(1 + w.below(5));
        w.s(",\"date\":");
        w.ts();
        w.s(",\"title\":\"");
        let n = 2 + w.below(5) as usize;
        w.text(n);
        w.s("\",\"text\":\"");
        let n = 8 + w.below(40) as usize;
        w.text(n);
        w.s("\",\"helpful\":");
        let h = w.below(1 << w.below(7));
        w.u(h);
        w.s(",\"verified_purchase\":");
        w.s(if w.below(4) == 0 { "false" } else { "true" });
        w.s("}");
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_length_valid_json_and_deterministic() {
        for kind in [Kind::User, Kind::Product, Kind::Mix] {
            let g = JsonGen::new(kind, 7);
            for len in [0, 1, 2, 5, 12, 13, 14, 20, 40, 64, 100, 128, 200, 333, 512, 2048, 4096, 20000] {
                for key in [0u64, 1, 2, 99, 123_456_789] {
                    let mut a = b"xx".to_vec();
                    g.write(&mut a, key, len);
                    assert_eq!(a.len(), len + 2, "{kind:?} {len} {key}");
                    let v = std::str::from_utf8(&a[2..]).unwrap();
                    if len >= TAIL + 2 {
                        assert!(v.starts_with('{') && v.ends_with("\"}"), "{v}");
                        // Balanced brackets and quotes (no escapes are ever written).
                        assert_eq!(v.matches('"').count() % 2, 0, "{v}");
                        assert_eq!(v.matches('{').count(), v.matches('}').count(), "{v}");
                        assert_eq!(v.matches('[').count(), v.matches(']').count(), "{v}");
                        assert!(!v.contains(",,") && !v.contains(",}") && !v.contains(",]") && !v.contains("[,"));
                    }
                    let mut b = Vec::new();
                    g.write(&mut b, key, len);
                    assert_eq!(&a[2..], &b[..]);
                }
            }
            let (mut x, mut y) = (Vec::new(), Vec::new());
            g.write(&mut x, 1, 2048);
            g.write(&mut y, 2, 2048);
            assert_ne!(x, y);
        }
    }
}
