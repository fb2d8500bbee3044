//! One stored item: key and value in a single allocation, plus metadata.

/// Bytes charged per item beyond key and value: the item struct, its slab
/// slot, its index slot and the allocator's header for the data block.
pub const ITEM_OVERHEAD: usize = std::mem::size_of::<Item>() + 8 + 8 + 16;

#[derive(Debug)]
pub struct Item {
    /// Key bytes followed by value bytes.
    data: Box<[u8]>,
    pub cas: u64,
    /// Absolute expiry in Unix seconds; 0 never expires.
    pub exptime: u64,
    /// Last update, Unix seconds (flush_all compares against it).
    pub time: u64,
    pub flags: u32,
    pub prev: u32,
    pub next: u32,
    key_len: u8,
    pub fetched: bool,
}

impl Item {
    /// Build an item whose value is the concatenation of `parts`.
    pub fn new(key: &[u8], parts: &[&[u8]], flags: u32, exptime: u64) -> Item {
        let len = key.len() + parts.iter().map(|p| p.len()).sum::<usize>();
        let mut data = Vec::with_capacity(len);
        data.extend_from_slice(key);
        for p in parts {
            data.extend_from_slice(p);
        }
        Item {
            data: data.into_boxed_slice(),
            cas: 0,
            exptime,
            time: 0,
            flags,
            prev: u32::MAX,
            next: u32::MAX,
            key_len: key.len() as u8,
            fetched: false,
        }
    }

    pub fn key(&self) -> &[u8] {
        &self.data[..self.key_len as usize]
    }
    pub fn value(&self) -> &[u8] {
        &self.data[self.key_len as usize..]
    }
    pub fn value_mut(&mut self) -> &mut [u8] {
        &mut self.data[self.key_len as usize..]
    }
    /// What this item costs against the memory limit.
    pub fn charge(&self) -> usize {
        self.data.len() + ITEM_OVERHEAD
    }
}
