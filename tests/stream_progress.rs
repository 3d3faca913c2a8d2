//! Receive progress inside long LINBIT chunks: the reader hands a chunk's payload to the sink in
//! pieces (written or spliced), so progress advances within a record, not only between records.

use std::io::Write;
use std::os::fd::{AsRawFd, RawFd};

use thinsend::stream::{self, linbit, ReadOptions, Sink, Start, Summary};

/// Counts how the payload arrives; splices into `file` when given one.
struct Pieces {
    file: Option<std::fs::File>,
    calls: Vec<(u64, u64)>,
}

impl Sink for Pieces {
    fn start(&mut self, _: &Start) -> thinsend::Result<()> {
        Ok(())
    }
    fn data(&mut self, offset: u64, bytes: &[u8]) -> thinsend::Result<()> {
        self.calls.push((offset, bytes.len() as u64));
        Ok(())
    }
    fn splice_target(&mut self, _: u64, _: u64) -> thinsend::Result<Option<RawFd>> {
        Ok(self.file.as_ref().map(|f| f.as_raw_fd()))
    }
    fn spliced(&mut self, offset: u64, len: u64) {
        self.calls.push((offset, len));
    }
    fn unmap(&mut self, _: u64, _: u64) -> thinsend::Result<()> {
        Ok(())
    }
    fn finish(&mut self, _: &Summary) -> thinsend::Result<()> {
        Ok(())
    }
}

fn one_chunk_stream(len: u64) -> Vec<u8> {
    let mut w = linbit::Writer::default();
    let mut st = w.begin().to_vec();
    st.extend(w.data(0, len));
    st.extend((0..len).map(|i| (i % 251) as u8));
    st.extend(w.end());
    st
}

fn read_through_pipe(st: Vec<u8>, file: Option<std::fs::File>) -> Vec<(u64, u64)> {
    let (r, w) = thinsend::io::pipe().unwrap();
    let mut w = std::fs::File::from(w);
    let writer = std::thread::spawn(move || w.write_all(&st));
    let mut sink = Pieces { file, calls: Vec::new() };
    stream::read(r.as_raw_fd(), &ReadOptions::default(), &mut sink).expect("valid stream");
    writer.join().unwrap().unwrap();
    sink.calls
}

#[test]
fn a_long_linbit_chunk_arrives_in_pieces_both_spliced_and_copied() {
    let len = 20u64 << 20;
    let dir = tempfile::tempdir().unwrap();
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(dir.path().join("t"))
        .unwrap();
    for (how, file) in [("spliced", Some(f)), ("copied", None)] {
        let calls = read_through_pipe(one_chunk_stream(len), file);
        assert!(calls.len() >= 3, "{how}: a 20 MiB chunk reached the sink in {} call(s)", calls.len());
        assert_eq!(calls.iter().map(|c| c.1).sum::<u64>(), len, "{how}: bytes");
        let mut at = 0;
        for &(o, l) in &calls {
            assert_eq!(o, at, "{how}: pieces out of order");
            at += l;
        }
    }
}
