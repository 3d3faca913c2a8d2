//! Unit tests of the undo journal's rules.

use super::*;
use std::os::unix::fs::MetadataExt;

fn ident_of(f: &File) -> Ident {
    let m = f.metadata().unwrap();
    Ident { file: true, len: m.len(), dev: m.dev(), ino: m.ino(), mtime_ns: 7_000_000_123 }
}

fn target(dir: &Path, bytes: &[u8]) -> File {
    let p = dir.join("t");
    std::fs::write(&p, bytes).unwrap();
    OpenOptions::new().read(true).write(true).open(&p).unwrap()
}

/// A fresh directory with a target `t` holding `bytes`, the path of its journal `j`, its identity.
fn fixture(bytes: &[u8]) -> (tempfile::TempDir, File, PathBuf, Ident) {
    let d = tempfile::tempdir().unwrap();
    let t = target(d.path(), bytes);
    let jp = d.path().join("j");
    let id = ident_of(&t);
    (d, t, jp, id)
}

#[test]
fn rollback_restores_bytes_length_and_state_and_removes_the_journal() {
    let old: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let (d, t, jp, id) = fixture(&old);
    let mut j = Journal::create(&jp, id, Some(b"{\"old\":1}")).unwrap();
    j.save(&t, 1000, 5000).unwrap();
    t.write_all_at(&[9u8; 5000], 1000).unwrap();
    // the same range again: the first (older) contents must win
    j.save(&t, 2000, 100).unwrap();
    t.write_all_at(&[8u8; 100], 2000).unwrap();
    // grown past the old end, then a range beyond it written
    t.set_len(400_000).unwrap();
    j.save(&t, 350_000, 10).unwrap();
    t.write_all_at(&[7u8; 10], 350_000).unwrap();
    let r = j.rollback(&t).unwrap();
    assert_eq!(r.old_state.as_deref(), Some(&b"{\"old\":1}"[..]));
    assert_eq!(std::fs::read(d.path().join("t")).unwrap(), old);
    assert_eq!(t.metadata().unwrap().mtime_nsec(), 123);
    assert!(!jp.exists());
}

#[test]
fn a_torn_last_entry_is_ignored_and_an_earlier_one_applied() {
    let (d, t, jp, id) = fixture(&[1u8; 8192]);
    let mut j = Journal::create(&jp, id, None).unwrap();
    j.save(&t, 0, 100).unwrap();
    t.write_all_at(&[2u8; 100], 0).unwrap();
    j.save(&t, 4096, 100).unwrap();
    drop(j);
    // the second entry cut in the middle of its data: a crash while appending it
    let jl = std::fs::metadata(&jp).unwrap().len();
    OpenOptions::new().write(true).open(&jp).unwrap().set_len(jl - 50).unwrap();
    let r = recover(&jp, &t, &id, Path::new("t")).unwrap().unwrap();
    assert_eq!((r.ranges, r.bytes, r.old_state), (1, 100, None));
    assert_eq!(std::fs::read(d.path().join("t")).unwrap(), vec![1u8; 8192]);
    assert!(!jp.exists());
    assert!(recover(&jp, &t, &id, Path::new("t")).unwrap().is_none());
}

#[test]
fn a_journal_held_by_a_live_receive_or_for_another_file_is_refused() {
    let (_d, t, jp, id) = fixture(&[1u8; 4096]);
    let j = Journal::create(&jp, id, None).unwrap();
    let e = recover(&jp, &t, &id, Path::new("t")).unwrap_err().to_string();
    assert!(e.contains("another receive"), "{e}");
    drop(j);
    let other = Ident { ino: id.ino + 1, ..id };
    let e = recover(&jp, &t, &other, Path::new("t")).unwrap_err().to_string();
    assert!(e.contains("another file"), "{e}");
    assert!(jp.exists(), "a foreign journal was removed");
}

#[test]
fn holes_are_journaled_without_data_and_come_back_as_zeros() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("t");
    let f = File::create(&p).unwrap();
    f.set_len(1 << 20).unwrap();
    f.write_all_at(&[5u8; 4096], 0).unwrap();
    drop(f);
    let t = OpenOptions::new().read(true).write(true).open(&p).unwrap();
    let jp = d.path().join("j");
    let mut j = Journal::create(&jp, ident_of(&t), None).unwrap();
    j.save(&t, 0, 1 << 20).unwrap();
    // data entry of 4 KiB (at most a filesystem block more), not 1 MiB
    assert!(std::fs::metadata(&jp).unwrap().len() < 64 * 1024, "holes were copied into the journal");
    t.write_all_at(&[6u8; 1 << 20], 0).unwrap();
    j.rollback(&t).unwrap();
    let got = std::fs::read(&p).unwrap();
    assert!(got[..4096].iter().all(|&b| b == 5) && got[4096..].iter().all(|&b| b == 0));
}

#[test]
fn unsaved_subtracts_saved_ranges() {
    let (_d, _t, jp, id) = fixture(&[0u8; 10]);
    let mut j = Journal::create(&jp, Ident { len: 1000, ..id }, None).unwrap();
    j.mark_saved(10, 20);
    j.mark_saved(30, 40);
    assert_eq!(j.unsaved(0, 50), vec![(0, 10), (20, 30), (40, 50)]);
    assert_eq!(j.unsaved(12, 18), vec![]);
    assert_eq!(j.unsaved(15, 35), vec![(20, 30)]);
    j.mark_saved(20, 30);
    assert_eq!(j.saved.len(), 1);
    assert_eq!(j.unsaved(0, 50), vec![(0, 10), (40, 50)]);
}

#[test]
fn a_journal_cut_before_its_header_was_durable_changes_nothing() {
    let (d, t, jp, id) = fixture(&[1u8; 4096]);
    for cut in [0u64, 30, 70] {
        drop(Journal::create(&jp, id, Some(b"{\"state\":1}")).unwrap());
        OpenOptions::new().write(true).open(&jp).unwrap().set_len(cut).unwrap();
        let r = recover(&jp, &t, &id, Path::new("t")).unwrap().unwrap();
        assert!(r.torn, "a journal cut at {cut} bytes was not seen as torn");
        assert!(!jp.exists());
    }
    // A header whose checksum does not match: torn as well.
    drop(Journal::create(&jp, id, None).unwrap());
    let f = OpenOptions::new().write(true).open(&jp).unwrap();
    f.write_all_at(&[0xff], 20).unwrap();
    assert!(recover(&jp, &t, &id, Path::new("t")).unwrap().unwrap().torn);
    assert_eq!(std::fs::read(d.path().join("t")).unwrap(), vec![1u8; 4096]);
}

#[test]
fn a_reopened_journal_continues_without_saving_twice_and_rolls_back_to_the_first_contents() {
    let old: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
    let (_d, t, jp, id) = fixture(&old);
    let mut j = Journal::create(&jp, id, Some(b"{\"old\":2}")).unwrap();
    j.save(&t, 0, 10_000).unwrap();
    t.write_all_at(&[1u8; 10_000], 0).unwrap();
    drop(j); // an interrupted resumable receive keeps its journal
    let torn = std::fs::metadata(&jp).unwrap().len();
    std::io::Write::write_all(&mut OpenOptions::new().append(true).open(&jp).unwrap(), &[0x55u8; 7]).unwrap();
    let mut j = Journal::reopen(&jp, &ident_of(&t), Path::new("t")).unwrap();
    assert_eq!(std::fs::metadata(&jp).unwrap().len(), torn, "the torn tail was not cut");
    // saved before: not saved again (its first contents stay the ones played back)
    j.save(&t, 5_000, 10_000).unwrap();
    t.write_all_at(&[2u8; 10_000], 5_000).unwrap();
    assert!(std::fs::metadata(&jp).unwrap().len() < torn + 10_000, "the saved part was saved twice");
    let r = j.rollback(&t).unwrap();
    assert_eq!(r.old_state.as_deref(), Some(&b"{\"old\":2}"[..]));
    let mut got = vec![0u8; old.len()];
    t.read_exact_at(&mut got, 0).unwrap();
    assert!(got == old, "not rolled back to the contents before the first attempt");
}

#[test]
fn a_journal_of_another_file_is_not_reopened() {
    let (d, t, jp, id) = fixture(&[3u8; 4096]);
    drop(Journal::create(&jp, id, None).unwrap());
    let other = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(d.path().join("o")).unwrap();
    let e = Journal::reopen(&jp, &ident_of(&other), Path::new("o")).err().unwrap().to_string();
    assert!(e.contains("was written for another file"), "{e}");
    drop(t);
}
