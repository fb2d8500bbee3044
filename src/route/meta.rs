//! The meta commands run on the core that owns their key: each reply is
//! built by walking the request's flag tokens in order, as memcached
//! 1.6.18's proto_text.c does, so that the order-dependent answers agree
//! (`t` before `T` shows the TTL before the change, `T` before `R` lets the
//! new TTL decide the win). The item operations are the store's
//! (`storage::meta`); what changed is shipped to the replication peers like
//! any other write (the item as stored: value, flags, expiry; the stale and
//! won marks stay on the node that set them, docs/protocol.md).
//!
//! Imports protocol, storage and stats through `Shard`; must not import
//! `server` or the mesh.

use crate::item::item_total_size;
use crate::protocol::encode::encode_u64;
use crate::protocol::meta::{self as wire, EN, MetaCmd, MetaRequest, encode_key_flag};
use crate::protocol::{KEY_MAX_LENGTH, base64};
use crate::storage::{ArithOutcome, MetaDeleteOutcome, MetaView, StoreMode, StoreOutcome};

use super::shard::{Shard, Wrote};

fn line(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(b"\r\n");
}

fn flag_num(out: &mut Vec<u8>, flag: u8, v: u64) {
    out.push(b' ');
    out.push(flag);
    encode_u64(out, v);
}

/// `t`: seconds left, -1 for never. memcached subtracts its 32-bit times
/// (seconds since 62 s before it started), so an expiry already past (its
/// time 1) wraps around; memcore answers the same for the same uptime.
fn flag_ttl(out: &mut Vec<u8>, exp: u64, now: u64, started: u64) {
    if exp == 0 {
        out.extend_from_slice(b" t-1");
    } else if exp <= now {
        let current = now.saturating_sub(started) + 62;
        flag_num(out, b't', 1u32.wrapping_sub(current as u32) as u64);
    } else {
        flag_num(out, b't', exp - now);
    }
}

/// The tokens that every reply echoes: `O` (opaque) and `k` (the key).
fn echo(out: &mut Vec<u8>, tok: &[u8], key: &[u8], binary: bool) {
    match tok[0] {
        b'O' => {
            out.push(b' ');
            out.extend_from_slice(tok);
        }
        b'k' => encode_key_flag(out, key, binary),
        _ => {}
    }
}

/// memcached's slab class for an item of `ntotal` bytes with the default
/// settings (-n 48, -f 1.25, 1 MiB pages): `me` reports it.
fn slab_class(ntotal: usize) -> usize {
    const CHUNK_MAX: usize = 512 * 1024;
    let mut size = 96usize;
    let mut class = 1;
    loop {
        if ntotal <= size {
            return class;
        }
        size = (size as f64 * 1.25) as usize;
        class += 1;
        if size as f64 >= CHUNK_MAX as f64 / 1.25 {
            return class;
        }
        size = size.div_ceil(8) * 8;
    }
}

impl Shard {
    /// One meta command (mn is answered by the dispatcher). Returns what it
    /// wrote when it changed something that was shipped to the peers.
    pub fn execute_meta(&mut self, m: &MetaRequest<'_>, now: u64, out: &mut Vec<u8>) -> Option<Wrote> {
        let mut scratch = [0u8; KEY_MAX_LENGTH];
        let key = m.stored_key(&mut scratch);
        match m.cmd {
            MetaCmd::Get => self.meta_get(m, key, now, out),
            MetaCmd::Set => self.meta_set(m, key, now, out),
            MetaCmd::Delete => self.meta_delete(m, key, now, out),
            MetaCmd::Arith => self.meta_arith(m, key, now, out),
            MetaCmd::Debug => {
                self.meta_debug(key, now, out);
                None
            }
        }
    }

    fn meta_get(&mut self, m: &MetaRequest<'_>, key: &[u8], now: u64, out: &mut Vec<u8>) -> Option<Wrote> {
        let f = m.flags;
        let mut version = if m.may_write() { self.begin_write() } else { 0 };
        let mut view = self.store.meta_view(key, now);
        let mut created = false;
        if view.is_err()
            && let Some(n) = f.vivify
        {
            let exp = self.expiry(n, now);
            if self.store.meta_vivify(key, exp, version, now) {
                created = true;
                if let Some(cas) = f.new_cas {
                    self.store.meta_set_cas(key, cas, now);
                }
                view = self.store.meta_view(key, now);
            }
        }
        let v = match view {
            // The win of a vivified item is this request's (W, not Z).
            Ok(v) => MetaView { won: v.won && !created, ..v },
            Err(_) => {
                self.counters.get_misses += 1;
                self.counters.cmd_get += 1;
                if !f.quiet {
                    out.extend_from_slice(&EN[..2]);
                    m.flag_tokens().for_each(|t| echo(out, t, key, f.base64));
                    out.extend_from_slice(b"\r\n");
                }
                return None;
            }
        };
        let start = out.len();
        if f.value {
            out.extend_from_slice(wire::VA);
            encode_u64(out, v.value_len as u64);
        } else {
            out.extend_from_slice(wire::HD);
        }
        // A vivified item has no expiry until its N token sets one.
        let mut exp = if created { 0 } else { v.exp };
        let (mut won, mut ttl_set) = (false, false);
        // Each flag appears once, so its token's number is the parsed one.
        let (ttl, viv, recache) = (f.ttl.unwrap_or(0), f.vivify.unwrap_or(0), f.recache.unwrap_or(0));
        for tok in m.flag_tokens() {
            match tok[0] {
                b'T' => {
                    ttl_set = true;
                    exp = self.expiry(ttl, now);
                }
                b'N' if created => {
                    exp = self.expiry(viv, now);
                    won = true;
                }
                b'R' => {
                    if !v.won && !created && exp != 0 && exp < self.expiry(recache, now) {
                        won = true;
                    }
                }
                b's' => flag_num(out, b's', v.value_len as u64),
                b't' => flag_ttl(out, exp, now, self.store.config().started),
                b'c' => flag_num(out, b'c', v.cas),
                b'f' => flag_num(out, b'f', v.flags as u64),
                b'l' => flag_num(out, b'l', now.saturating_sub(v.last_access)),
                b'h' => out.extend_from_slice(if v.fetched { b" h1" } else { b" h0" }),
                _ => echo(out, tok, key, v.binary_key),
            }
        }
        if v.won {
            out.extend_from_slice(b" Z");
        }
        if v.stale {
            out.extend_from_slice(b" X");
            if !v.won {
                won = true;
            }
        }
        if won {
            out.extend_from_slice(b" W");
        }
        out.extend_from_slice(b"\r\n");
        if f.value {
            if self.store.peek(key, now, |item| item.copy_value(out)) != Some(true) {
                // A corrupt stored frame: answered as a miss.
                out.truncate(start);
                self.store.drop_corrupt(key);
                self.counters.get_misses += 1;
                if !f.quiet {
                    out.extend_from_slice(EN);
                }
                return None;
            }
            out.extend_from_slice(b"\r\n");
        }
        let new_exp = (exp != v.exp).then_some(exp);
        let changed = new_exp.is_some() || (won && !v.won);
        if changed && version == 0 {
            version = self.begin_write();
        }
        self.store.meta_update(key, new_exp, won, !f.no_update, if new_exp.is_some() { version } else { 0 }, now);
        let shipped = created || new_exp.is_some();
        if shipped {
            self.ship_item(key, version, now);
        }
        let c = &mut self.counters;
        if ttl_set {
            c.cmd_touch += 1;
            c.touch_hits += 1;
        } else {
            c.cmd_get += 1;
            c.get_hits += 1;
        }
        shipped.then_some(Wrote { version })
    }

    fn meta_set(&mut self, m: &MetaRequest<'_>, key: &[u8], now: u64, out: &mut Vec<u8>) -> Option<Wrote> {
        let f = m.flags;
        if m.too_large {
            // As memcached: the old item must not outlive a failed update.
            self.counters.store_too_large += 1;
            let version = self.begin_write();
            if self.store.delete(key, now) {
                self.ship_delete(key, version, now);
            }
            line(out, wire::TOO_LARGE);
            return None;
        }
        let mut mode = match f.mode {
            b'E' => StoreMode::Add,
            b'A' => StoreMode::Append,
            b'P' => StoreMode::Prepend,
            b'R' => StoreMode::Replace,
            _ => StoreMode::Set,
        };
        if f.compare_cas.is_some() && matches!(mode, StoreMode::Set | StoreMode::Replace) {
            mode = StoreMode::Cas;
        }
        let exp = f.ttl.map_or(0, |t| self.expiry(t, now));
        let version = self.begin_write();
        let cas = f.compare_cas.unwrap_or(0);
        let invalidate = f.invalidate && mode == StoreMode::Cas;
        let (outcome, mut new_cas) =
            self.store.meta_store(mode, key, f.client_flags, exp, m.data, cas, invalidate, f.base64, version, now);
        let mut size = m.data.len() as u64;
        if outcome == StoreOutcome::Stored {
            if let Some(cas) = f.new_cas
                && self.store.meta_set_cas(key, cas, now)
            {
                new_cas = cas;
            }
            // The item's size after an append or prepend.
            size = self.store.meta_view(key, now).map_or(size, |v| v.value_len as u64);
        }
        self.count_store(mode == StoreMode::Cas, outcome);
        let code = match outcome {
            StoreOutcome::Stored => {
                self.ship_item(key, version, now);
                if f.quiet {
                    return Some(Wrote { version });
                }
                wire::HD
            }
            StoreOutcome::Exists => wire::EX,
            StoreOutcome::NotFound => wire::NF,
            StoreOutcome::NotStored => wire::NS,
            StoreOutcome::NoMemory => {
                self.counters.store_no_memory += 1;
                if mode == StoreMode::Set
                    && let Some(r) = self.repl.as_mut()
                {
                    r.ship_delete_untombed(key, version);
                }
                line(out, "SERVER_ERROR out of memory storing object");
                return None;
            }
        };
        out.extend_from_slice(code);
        for tok in m.flag_tokens() {
            match tok[0] {
                b'c' => flag_num(out, b'c', new_cas),
                b's' => flag_num(out, b's', size),
                _ => echo(out, tok, key, f.base64),
            }
        }
        out.extend_from_slice(b"\r\n");
        (outcome == StoreOutcome::Stored).then_some(Wrote { version })
    }

    fn meta_delete(&mut self, m: &MetaRequest<'_>, key: &[u8], now: u64, out: &mut Vec<u8>) -> Option<Wrote> {
        let f = m.flags;
        let version = self.begin_write();
        let exp = if f.invalidate { f.ttl.map(|t| self.expiry(t, now)) } else { None };
        // x: the item stays, emptied, with the flags and TTL given.
        let emptied = f.remove_value.then(|| (f.client_flags, f.ttl.map_or(0, |t| self.expiry(t, now))));
        let outcome = self.store.meta_delete(key, f.compare_cas, f.invalidate, exp, emptied, f.new_cas, version, now);
        let code = match outcome {
            MetaDeleteOutcome::Deleted => {
                if f.remove_value {
                    self.ship_item(key, version, now);
                } else {
                    self.ship_delete(key, version, now);
                }
                self.counters.delete_hits += 1;
                wire::HD
            }
            MetaDeleteOutcome::Invalidated => {
                self.ship_item(key, version, now);
                wire::HD
            }
            MetaDeleteOutcome::NotFound | MetaDeleteOutcome::Exists => {
                self.counters.delete_misses += 1;
                if outcome == MetaDeleteOutcome::NotFound { wire::NF } else { wire::EX }
            }
        };
        let wrote = (code == wire::HD).then_some(Wrote { version });
        if f.quiet && code == wire::HD {
            return wrote;
        }
        out.extend_from_slice(code);
        m.flag_tokens().for_each(|t| echo(out, t, key, f.base64));
        out.extend_from_slice(b"\r\n");
        wrote
    }

    fn meta_arith(&mut self, m: &MetaRequest<'_>, key: &[u8], now: u64, out: &mut Vec<u8>) -> Option<Wrote> {
        let f = m.flags;
        let incr = !f.decr;
        let version = self.begin_write();
        let mut created = false;
        let result: Result<u64, &'static [u8]> = match self.store.meta_view(key, now) {
            Ok(v) if f.compare_cas.is_some_and(|c| c != v.cas) => Err(wire::EX),
            Ok(_) => match self.store.arith(key, incr, f.delta, version, now) {
                ArithOutcome::Value(n) => {
                    let c = &mut self.counters;
                    if incr {
                        c.incr_hits += 1
                    } else {
                        c.decr_hits += 1
                    }
                    Ok(n)
                }
                ArithOutcome::NotFound => Err(wire::NF),
                ArithOutcome::NonNumeric => {
                    line(out, "CLIENT_ERROR cannot increment or decrement non-numeric value");
                    return None;
                }
                ArithOutcome::NoMemory => {
                    line(out, "SERVER_ERROR out of memory");
                    return None;
                }
            },
            Err(_) if f.vivify.is_some() => {
                let mut digits = Vec::with_capacity(20);
                encode_u64(&mut digits, f.initial);
                match self.store.store(StoreMode::Add, key, 0, 0, &digits, 0, version, now) {
                    StoreOutcome::Stored => {
                        created = true;
                        Ok(f.initial)
                    }
                    StoreOutcome::NoMemory => {
                        line(out, "SERVER_ERROR Out of memory allocating new item");
                        return None;
                    }
                    _ => Err(wire::NS),
                }
            }
            Err(_) => {
                let c = &mut self.counters;
                if incr {
                    c.incr_misses += 1
                } else {
                    c.decr_misses += 1
                }
                Err(wire::NF)
            }
        };
        let value = match result {
            Ok(n) => n,
            Err(code) => {
                out.extend_from_slice(code);
                m.flag_tokens().for_each(|t| echo(out, t, key, f.base64));
                out.extend_from_slice(b"\r\n");
                return None;
            }
        };
        if let Some(cas) = f.new_cas {
            self.store.meta_set_cas(key, cas, now);
        }
        let Ok(v) = self.store.meta_view(key, now) else {
            // Written and gone at once (a store of a few segments).
            out.extend_from_slice(wire::NF);
            out.extend_from_slice(b"\r\n");
            return None;
        };
        let mut digits = Vec::with_capacity(20);
        encode_u64(&mut digits, value);
        let start = out.len();
        if f.value {
            out.extend_from_slice(wire::VA);
            encode_u64(out, digits.len() as u64);
        } else {
            out.extend_from_slice(wire::HD);
        }
        let mut exp = if created { 0 } else { v.exp };
        let (ttl, viv) = (f.ttl.unwrap_or(0), f.vivify.unwrap_or(0));
        for tok in m.flag_tokens() {
            match tok[0] {
                b'c' => flag_num(out, b'c', v.cas),
                b't' => flag_ttl(out, exp, now, self.store.config().started),
                b'T' => exp = self.expiry(ttl, now),
                b'N' if created => exp = self.expiry(viv, now),
                _ => echo(out, tok, key, f.base64),
            }
        }
        if f.value {
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(&digits);
        }
        out.extend_from_slice(b"\r\n");
        if exp != v.exp {
            self.store.meta_update(key, Some(exp), false, false, version, now);
        }
        self.ship_item(key, version, now);
        // A quiet success says nothing; a vivified one still answers.
        if f.quiet && !created {
            out.truncate(start);
        }
        Some(Wrote { version })
    }

    fn meta_debug(&mut self, key: &[u8], now: u64, out: &mut Vec<u8>) {
        self.counters.cmd_meta += 1;
        let Ok(v) = self.store.meta_view(key, now) else {
            out.extend_from_slice(EN);
            return;
        };
        out.extend_from_slice(b"ME ");
        if v.binary_key {
            base64::encode(key, out);
        } else {
            out.extend_from_slice(key);
        }
        // memcached prints now - exptime: negative for an expiry ahead.
        let exp = if v.exp == 0 { -1 } else { now as i64 - v.exp as i64 };
        let size = item_total_size(key.len(), v.flags, v.value_len);
        let text = format!(
            " exp={exp} la={} cas={} fetch={} cls={} size={size}\r\n",
            now.saturating_sub(v.last_access),
            v.cas,
            if v.fetched { "yes" } else { "no" },
            slab_class(size),
        );
        out.extend_from_slice(text.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slab_classes_match_memcached_defaults() {
        // memcached -vv with the defaults: 96, 120, 152, 192, 240, 304 ...
        assert_eq!(slab_class(1), 1);
        assert_eq!(slab_class(96), 1);
        assert_eq!(slab_class(97), 2);
        assert_eq!(slab_class(120), 2);
        assert_eq!(slab_class(121), 3);
        assert_eq!(slab_class(152), 3);
        assert_eq!(slab_class(193), 5);
    }
}
