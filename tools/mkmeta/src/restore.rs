//! `mkmeta restore`: thin_dump XML (the 0.9.0 dialect, and the 1.x one whose `<def name>` /
//! `<ref name>` carry leaves shared between devices) to a complete image.
//!
//! Each device's tree is built bottom-up: its own mappings packed into evenly filled leaves, each
//! `<ref>` contributing the def's leaves as *shared* blocks (one more reference per use). A shared
//! leaf below a third full, or own mappings too few for a leaf of their own between shared ones,
//! are copied instead, so every non-root node stays at least a third full.

use std::collections::HashMap;
use std::path::Path;

use thinsend::btree::details::DeviceDetails;
use thinsend::btree::mapping::BlockTime;
use thinsend::btree::node::Value;

use crate::error::{Error, Result};
use crate::image::{self, ImageInfo, SbState};
use crate::tm::{even_chunks, Node, Tm, Tree};
use crate::xml::{Event, Pos, SyntaxError, Tokenizer};

mod build;

/// Mapping leaves hold at most this many entries; non-root ones at least a third of it.
const LEAF_MAX: usize = 252;
const LEAF_MIN: usize = LEAF_MAX / 3;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub image: ImageInfo,
    pub devices: usize,
    pub mappings: u64,
    /// Leaf blocks referenced by more than one device.
    pub shared_leaves: usize,
    /// Things accepted but not kept (e.g. a metadata_snap attribute, corrected mapped_blocks).
    pub warnings: Vec<String>,
}

/// Restores the XML in `xml` (named `file` in messages) into an image at `out`.
pub fn restore(xml: &[u8], file: &str, out: &Path, nr_blocks: Option<u64>) -> Result<Outcome> {
    let mut r = Restorer::new(file);
    let sb = r.parse(xml)?;
    let shared_leaves = r.defs.iter().flat_map(|d| &d.blocks).filter(|b| b.is_some_and(|b| r.tm.count(b) > 1)).count();
    let info = image::write_image(&mut r.tm, &sb, nr_blocks, out)?;
    Ok(Outcome { image: info, devices: r.devices, mappings: r.mappings, shared_leaves, warnings: r.warnings })
}

/// Restores from a file.
pub fn restore_file(input: &Path, out: &Path, nr_blocks: Option<u64>) -> Result<Outcome> {
    let xml = std::fs::read(input).map_err(|e| Error::io(input, e))?;
    restore(&xml, &input.display().to_string(), out, nr_blocks)
}

/// A `<def>`: its mappings packed into leaves, each made into a block on first use.
struct Def {
    leaves: Vec<Vec<(u64, u64)>>,
    blocks: Vec<Option<u64>>,
}

/// A piece of a device's leaf sequence.
enum Unit {
    Own(Vec<(u64, u64)>),
    Shared { def: usize, leaf: usize },
}

struct Restorer {
    file: String,
    tm: Tm,
    nr_data_blocks: u64,
    defs: Vec<Def>,
    def_names: HashMap<String, usize>,
    devices: usize,
    mappings: u64,
    warnings: Vec<String>,
}

/// The attributes of one element, taken by name; leftovers are errors.
struct Attrs {
    pos: Pos,
    element: String,
    list: Vec<(String, String)>,
}

impl Attrs {
    fn take(&mut self, name: &str) -> Option<String> {
        let i = self.list.iter().position(|(n, _)| n == name)?;
        Some(self.list.remove(i).1)
    }

    fn finish(self, file: &str) -> Result<()> {
        match self.list.first() {
            None => Ok(()),
            Some((n, _)) => Err(xml_err(file, self.pos, format!("unknown attribute '{n}' on <{}>", self.element))),
        }
    }
}

fn xml_err(file: &str, pos: Pos, msg: String) -> Error {
    Error::Xml { file: file.to_string(), line: pos.line, col: pos.col, msg }
}

impl Restorer {
    fn new(file: &str) -> Self {
        Restorer {
            file: file.to_string(),
            tm: Tm::new(0),
            nr_data_blocks: 0,
            defs: Vec::new(),
            def_names: HashMap::new(),
            devices: 0,
            mappings: 0,
            warnings: Vec::new(),
        }
    }

    fn err(&self, pos: Pos, msg: impl Into<String>) -> Error {
        xml_err(&self.file, pos, msg.into())
    }

    fn syntax(&self, e: SyntaxError) -> Error {
        self.err(e.pos, e.msg)
    }

    fn next<'a>(&self, t: &mut Tokenizer<'a>) -> Result<(Pos, Event<'a>)> {
        t.next_event().map_err(|e| self.syntax(e))
    }

    fn attrs(pos: Pos, element: &str, list: Vec<(&str, String)>) -> Attrs {
        Attrs { pos, element: element.to_string(), list: list.into_iter().map(|(n, v)| (n.to_string(), v)).collect() }
    }

    fn num<T: std::str::FromStr>(&self, a: &mut Attrs, name: &str) -> Result<T> {
        let v = a.take(name).ok_or_else(|| self.err(a.pos, format!("<{}> needs the attribute '{name}'", a.element)))?;
        v.trim().parse().map_err(|_| {
            self.err(a.pos, format!("attribute '{name}' of <{}> is '{v}', not a number in range", a.element))
        })
    }

    fn opt_num<T: std::str::FromStr>(&self, a: &mut Attrs, name: &str) -> Result<Option<T>> {
        if a.list.iter().any(|(n, _)| n == name) {
            self.num(a, name).map(Some)
        } else {
            Ok(None)
        }
    }

    fn parse(&mut self, xml: &[u8]) -> Result<SbState> {
        let mut t = Tokenizer::new(xml);
        let (pos, ev) = self.next(&mut t)?;
        let Event::Start { name: "superblock", attrs, empty } = ev else {
            return Err(self.err(pos, "expected <superblock> as the first element"));
        };
        let mut a = Self::attrs(pos, "superblock", attrs);
        let _uuid = a.take("uuid").ok_or_else(|| self.err(pos, "<superblock> needs the attribute 'uuid'"))?;
        let time: u32 = self.num(&mut a, "time")?;
        let trans_id: u64 = self.num(&mut a, "transaction")?;
        let flags: u32 = self.opt_num(&mut a, "flags")?.unwrap_or(0);
        let version: u32 = self.opt_num(&mut a, "version")?.unwrap_or(2);
        let data_block_size: u32 = self.num(&mut a, "data_block_size")?;
        let nr_data_blocks: u64 = self.num(&mut a, "nr_data_blocks")?;
        if let Some(s) = self.opt_num::<u64>(&mut a, "metadata_snap")? {
            self.warnings.push(format!("metadata_snap=\"{s}\" ignored: a restored image holds no metadata snapshot"));
        }
        a.finish(&self.file)?;
        if !(128..=2_097_152).contains(&data_block_size) || data_block_size & 127 != 0 {
            return Err(self.err(
                pos,
                format!("data_block_size {data_block_size} must be a multiple of 128 sectors in 128..=2097152"),
            ));
        }
        if !(1..=2).contains(&version) {
            return Err(self.err(pos, format!("unsupported version {version} (1 or 2)")));
        }
        if nr_data_blocks > 1 << 32 {
            return Err(self.err(pos, format!("nr_data_blocks {nr_data_blocks} is larger than mkmeta supports (2^32)")));
        }
        self.nr_data_blocks = nr_data_blocks;
        self.tm = Tm::new(nr_data_blocks);
        let sb_block = self.tm.alloc();
        debug_assert_eq!(sb_block, 0);

        let devices = if empty { Vec::new() } else { self.superblock_children(&mut t)? };
        let (pos, ev) = self.next(&mut t)?;
        if ev != Event::Eof {
            return Err(self.err(pos, "content after </superblock>"));
        }

        let (top_root, details_root) = self.top_trees(devices)?;
        Ok(SbState { flags, version, time, trans_id, data_block_size, top_root, details_root, held: None })
    }

    /// The `<def>`s and `<device>`s up to `</superblock>`: (id, root, details, where) per device.
    fn superblock_children(&mut self, t: &mut Tokenizer) -> Result<Vec<(u64, u64, DeviceDetails, Pos)>> {
        let mut devices = Vec::new();
        loop {
            let (pos, ev) = self.next(t)?;
            match ev {
                Event::End { name: "superblock" } => return Ok(devices),
                Event::Start { name: "def", attrs, empty } => self.def(t, pos, attrs, empty)?,
                Event::Start { name: "device", attrs, empty } => {
                    let d = self.device(t, pos, attrs, empty)?;
                    devices.push((d.0, d.1, d.2, pos));
                }
                Event::Start { name, .. } => {
                    return Err(
                        self.err(pos, format!("unexpected <{name}> in <superblock> (expected <def> or <device>)"))
                    )
                }
                Event::End { name } => {
                    return Err(self.err(pos, format!("unexpected </{name}> (expected </superblock>)")))
                }
                Event::Eof => return Err(self.err(pos, "end of input inside <superblock>")),
            }
        }
    }

    /// The top-level mapping tree and the details tree over `devices`; returns their roots.
    fn top_trees(&mut self, mut devices: Vec<(u64, u64, DeviceDetails, Pos)>) -> Result<(u64, u64)> {
        devices.sort_by_key(|d| d.0);
        if let Some(w) = devices.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(self.err(w[1].3, format!("device {} appears twice", w[1].0)));
        }
        self.devices = devices.len();
        let tops: Vec<(u64, Vec<u8>)> = devices.iter().map(|d| (d.0, d.1.to_le_bytes().to_vec())).collect();
        let details: Vec<(u64, Vec<u8>)> = devices
            .iter()
            .map(|d| {
                let mut v = vec![0u8; DeviceDetails::SIZE];
                d.2.pack(&mut v);
                (d.0, v)
            })
            .collect();
        Ok((self.tm.build_tree(Tree::Top, &tops)?, self.tm.build_tree(Tree::Details, &details)?))
    }

    /// Reads mapping elements up to `</end>`, appending to `units` (refs allowed if `refs`).
    fn mappings(&mut self, t: &mut Tokenizer, end: &str, refs: bool, units: &mut Vec<Unit>) -> Result<()> {
        let mut last_key: Option<u64> = None;
        loop {
            let (pos, ev) = self.next(t)?;
            let (name, attrs, empty) = match ev {
                Event::End { name } if name == end => return Ok(()),
                Event::End { name } => return Err(self.err(pos, format!("unexpected </{name}> (expected </{end}>)"))),
                Event::Eof => return Err(self.err(pos, format!("end of input inside <{end}>"))),
                Event::Start { name, attrs, empty } => (name, attrs, empty),
            };
            if !empty {
                // <x ...></x> is the same as <x .../>.
                let (p2, ev2) = self.next(t)?;
                if ev2 != (Event::End { name }) {
                    return Err(self.err(p2, format!("<{name}> must be empty")));
                }
            }
            let mut a = Self::attrs(pos, name, attrs);
            let (begin, data, len, time) = match name {
                "range_mapping" => {
                    let b: u64 = self.num(&mut a, "origin_begin")?;
                    let d: u64 = self.num(&mut a, "data_begin")?;
                    let l: u64 = self.num(&mut a, "length")?;
                    let t: u32 = self.num(&mut a, "time")?;
                    (b, d, l, t)
                }
                "single_mapping" => {
                    let b: u64 = self.num(&mut a, "origin_block")?;
                    let d: u64 = self.num(&mut a, "data_block")?;
                    let t: u32 = self.num(&mut a, "time")?;
                    (b, d, 1, t)
                }
                "ref" if refs => {
                    self.push_ref(pos, a, &mut last_key, units)?;
                    continue;
                }
                _ => {
                    return Err(self.err(
                        pos,
                        format!(
                            "unexpected <{name}> in <{end}> (expected {})",
                            if refs {
                                "<range_mapping>, <single_mapping> or <ref>"
                            } else {
                                "<range_mapping> or <single_mapping>"
                            }
                        ),
                    ))
                }
            };
            a.finish(&self.file)?;
            self.push_range(pos, (begin, data, len, time), &mut last_key, units)?;
        }
    }

    /// A `<ref>`: the def's leaves, shared, after the mappings before it.
    fn push_ref(&self, pos: Pos, mut a: Attrs, last_key: &mut Option<u64>, units: &mut Vec<Unit>) -> Result<()> {
        let r = a.take("name").ok_or_else(|| self.err(pos, "<ref> needs the attribute 'name'"))?;
        a.finish(&self.file)?;
        let &def = self
            .def_names
            .get(&r)
            .ok_or_else(|| self.err(pos, format!("<ref name=\"{r}\"> before any <def name=\"{r}\">")))?;
        let d = &self.defs[def];
        if let (Some(prev), Some(first)) = (*last_key, d.leaves.first()) {
            if first[0].0 <= prev {
                return Err(self.err(
                    pos,
                    format!("<ref name=\"{r}\"> starts at block {}, not after the previous mapping {prev}", first[0].0),
                ));
            }
        }
        if let Some(l) = d.leaves.last() {
            *last_key = l.last().map(|m| m.0);
        }
        for leaf in 0..d.leaves.len() {
            units.push(Unit::Shared { def, leaf });
        }
        Ok(())
    }

    /// A range of `len` mappings from `begin` to `data` at `time`, checked, into the last own unit.
    fn push_range(
        &self,
        pos: Pos,
        (begin, data, len, time): (u64, u64, u64, u32),
        last_key: &mut Option<u64>,
        units: &mut Vec<Unit>,
    ) -> Result<()> {
        if len == 0 {
            return Err(self.err(pos, "length must be at least 1"));
        }
        if time > 0xFF_FFFF {
            return Err(self.err(pos, format!("time {time} does not fit the 24 bits a mapping holds")));
        }
        let (Some(end_block), Some(data_end)) = (begin.checked_add(len), data.checked_add(len)) else {
            return Err(self.err(pos, "range overflows"));
        };
        if data_end > self.nr_data_blocks {
            return Err(self
                .err(pos, format!("mapping beyond end of data device ({} >= {})", data_end - 1, self.nr_data_blocks)));
        }
        if last_key.is_some_and(|k| begin <= k) {
            return Err(self.err(
                pos,
                format!("mappings must be in ascending block order: block {begin} after {}", last_key.unwrap_or(0)),
            ));
        }
        *last_key = Some(end_block - 1);
        if !matches!(units.last(), Some(Unit::Own(_))) {
            units.push(Unit::Own(Vec::new()));
        }
        let Some(Unit::Own(v)) = units.last_mut() else { unreachable!("an own unit was just pushed") };
        for i in 0..len {
            let bt = BlockTime { data_block: data + i, time };
            v.push((begin + i, bt.raw()));
        }
        Ok(())
    }

    fn def(&mut self, t: &mut Tokenizer, pos: Pos, attrs: Vec<(&str, String)>, empty: bool) -> Result<()> {
        let mut a = Self::attrs(pos, "def", attrs);
        let name = a.take("name").ok_or_else(|| self.err(pos, "<def> needs the attribute 'name'"))?;
        a.finish(&self.file)?;
        if self.def_names.contains_key(&name) {
            return Err(self.err(pos, format!("<def name=\"{name}\"> defined twice")));
        }
        let mut units = Vec::new();
        if !empty {
            self.mappings(t, "def", false, &mut units)?;
        }
        let all: Vec<(u64, u64)> = units
            .into_iter()
            .flat_map(|u| match u {
                Unit::Own(v) => v,
                Unit::Shared { .. } => Vec::new(),
            })
            .collect();
        let leaves: Vec<Vec<(u64, u64)>> = even_chunks(all.len(), LEAF_MAX).map(|r| all[r].to_vec()).collect();
        let n = leaves.len();
        self.def_names.insert(name, self.defs.len());
        self.defs.push(Def { leaves, blocks: vec![None; n] });
        Ok(())
    }

    /// Returns (dev id, root, details).
    fn device(
        &mut self,
        t: &mut Tokenizer,
        pos: Pos,
        attrs: Vec<(&str, String)>,
        empty: bool,
    ) -> Result<(u64, u64, DeviceDetails)> {
        let mut a = Self::attrs(pos, "device", attrs);
        let id: u32 = self.num(&mut a, "dev_id")?;
        let mapped: u64 = self.num(&mut a, "mapped_blocks")?;
        let transaction_id: u64 = self.num(&mut a, "transaction")?;
        let creation_time: u32 = self.num(&mut a, "creation_time")?;
        let snapshotted_time: u32 = self.num(&mut a, "snap_time")?;
        a.finish(&self.file)?;
        let mut units = Vec::new();
        if !empty {
            self.mappings(t, "device", true, &mut units)?;
        }
        let (root, count) = self.build_device(units)?;
        if count != mapped {
            self.warnings.push(format!(
                "device {id}: mapped_blocks=\"{mapped}\" corrected to {count}, the number of its mappings"
            ));
        }
        self.mappings += count;
        Ok((id as u64, root, DeviceDetails { mapped_blocks: count, transaction_id, creation_time, snapshotted_time }))
    }
}
