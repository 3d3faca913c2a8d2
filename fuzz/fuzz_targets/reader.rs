//! libFuzzer target over the metadata reader: any bytes as an image, opened live and as a metadata
//! snapshot, dumped (XML, JSON) and listed. Errors are expected; panics and hangs are bugs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use thinsend::block::MetadataDev;
use thinsend::superblock::Source;
use thinsend::{dump, ls, pool::Pool};

fuzz_target!(|data: &[u8]| {
    for source in [Source::Live, Source::Snapshot(None)] {
        let Ok(dev) = MetadataDev::from_bytes("fuzz", data.to_vec()) else { return };
        let Ok(pool) = Pool::from_dev(dev, source) else { continue };
        let mut sink = std::io::sink();
        for format in [dump::Format::Xml, dump::Format::Json] {
            let _ = dump::dump(&pool, &dump::Options { format, dev_ids: vec![], skip_mappings: false }, &mut sink);
        }
        if let Ok(rows) = ls::rows(&pool) {
            let fields: Vec<ls::Field> = ls::ALL_FIELDS.iter().map(|(_, f)| *f).collect();
            let _ = ls::write_table(&pool, &rows, &fields, true, &mut sink);
        }
    }
});
