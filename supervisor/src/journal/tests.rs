//! The journal read back after every way a crash or a disk can leave it:
//! cut at every byte of its last records, garbage appended, a byte
//! flipped; another job, another file, a second writer.

use std::path::{Path, PathBuf};

use super::record::{JobIdentity, Record};
use super::{open, JournalError, JournalOptions, Replayed, SyncPolicy};

/// A directory of this test's own, removed (with what it holds) when the
/// test ends; a failing test's stays, to be looked at.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("outlast-journal-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a temp dir");
        Scratch(dir)
    }

    fn journal(&self) -> PathBuf {
        self.0.join("journal")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn job(tasks: u64) -> JobIdentity {
    JobIdentity {
        name: "squares".into(),
        describe: format!("squares below {tasks}"),
        tasks,
        digest: 42,
    }
}

/// Opens `path` for `job(100)`: the ids of the done records it held, and
/// what it dropped.
fn reopen(path: &Path) -> Result<(Vec<u64>, Option<super::Dropped>, super::Opened), JournalError> {
    let mut ids = Vec::new();
    let opened = open(&JournalOptions::new(path), &job(100), &mut |r| {
        if let Replayed::Done { id, output } = r {
            assert_eq!(output, id.to_le_bytes(), "task {id}'s output");
            ids.push(id);
        }
    })?;
    let dropped = opened.dropped.clone();
    Ok((ids, dropped, opened))
}

fn done(id: u64) -> Record {
    Record::Done {
        id,
        attempt: 1,
        output: serde_bytes::ByteBuf::from(id.to_le_bytes().to_vec()),
    }
}

/// A journal with `n` done tasks (0..n); the offsets where each record ends.
fn written(path: &Path, n: u64) -> Vec<u64> {
    let (_, _, mut opened) = reopen(path).expect("a new journal");
    let mut ends = Vec::new();
    for id in 0..n {
        opened.writer.append(&done(id)).expect("append");
        opened.writer.end_turn().expect("write");
        ends.push(std::fs::metadata(path).expect("size").len());
    }
    opened.writer.finish().expect("finish");
    ends
}

#[test]
fn a_journal_cut_at_every_byte_of_its_last_three_records_keeps_the_records_before() {
    let scratch = Scratch::new("cut");
    let path = scratch.journal();
    let ends = written(&path, 10);
    let whole = std::fs::read(&path).expect("read");
    assert_eq!(whole.len() as u64, ends[9]);
    let cut_path = path.with_file_name("cut");
    for cut in ends[6]..=ends[9] {
        std::fs::write(&cut_path, &whole[..cut as usize]).expect("write the cut copy");
        let (ids, dropped, mut opened) = reopen(&cut_path).expect("a cut journal opens");
        let kept = ends.iter().filter(|&&end| end <= cut).count() as u64;
        assert_eq!(ids, (0..kept).collect::<Vec<_>>(), "cut at {cut}");
        let at_boundary = ends.contains(&cut);
        assert_eq!(dropped.is_none(), at_boundary, "cut at {cut}: {dropped:?}");
        if let Some(d) = &dropped {
            assert_eq!(d.at, ends[kept as usize - 1]);
            assert_eq!(d.at + d.bytes, cut);
            assert_eq!(d.why, "a record cut short");
        }
        // What comes next is appended after the kept records, and read.
        opened.writer.append(&done(50)).expect("append");
        opened.writer.finish().expect("finish");
        drop(opened);
        let (ids, dropped, _) = reopen(&cut_path).expect("reopens");
        assert_eq!(dropped, None, "cut at {cut}: nothing torn any more");
        let mut want: Vec<u64> = (0..kept).collect();
        want.push(50);
        assert_eq!(ids, want, "cut at {cut}");
    }
}

#[test]
fn garbage_after_the_last_record_is_dropped_and_said() {
    let scratch = Scratch::new("garbage");
    let path = scratch.journal();
    let ends = written(&path, 5);
    let mut bytes = std::fs::read(&path).expect("read");
    let garbage = b"\xff\xff\xff\x7fnot a record at all, and more of it";
    bytes.extend_from_slice(garbage);
    std::fs::write(&path, &bytes).expect("write");
    let (ids, dropped, _) = reopen(&path).expect("opens");
    assert_eq!(ids, [0, 1, 2, 3, 4]);
    let dropped = dropped.expect("the garbage is dropped");
    assert_eq!(dropped.at, ends[4]);
    assert_eq!(dropped.bytes, garbage.len() as u64);
    assert!(
        dropped.why.contains("more than any record") || dropped.why.contains("cut short"),
        "{dropped:?}"
    );
    assert_eq!(
        std::fs::metadata(&path).expect("size").len(),
        ends[4],
        "cut back"
    );
}

#[test]
fn a_flipped_byte_ends_the_valid_prefix_at_its_record() {
    let scratch = Scratch::new("flip");
    let path = scratch.journal();
    let ends = written(&path, 6);
    let mut bytes = std::fs::read(&path).expect("read");
    // A byte of record 3's payload (records 0..=2 end at ends[2]).
    let at = ends[2] as usize + 9;
    bytes[at] ^= 0x10;
    std::fs::write(&path, &bytes).expect("write");
    let (ids, dropped, _) = reopen(&path).expect("opens");
    assert_eq!(ids, [0, 1, 2]);
    let dropped = dropped.expect("dropped");
    assert_eq!(dropped.at, ends[2]);
    assert_eq!(dropped.why, "a checksum mismatch");
    // And a flipped length byte: the checksum covers it too.
    let scratch = Scratch::new("flip-len");
    let path = scratch.journal();
    let ends = written(&path, 6);
    let mut bytes = std::fs::read(&path).expect("read");
    bytes[ends[3] as usize] ^= 0x01;
    std::fs::write(&path, &bytes).expect("write");
    let (ids, dropped, _) = reopen(&path).expect("opens");
    assert_eq!(ids, [0, 1, 2, 3]);
    assert_eq!(dropped.expect("dropped").at, ends[3]);
}

#[test]
fn another_jobs_journal_is_refused_and_left_alone() {
    let scratch = Scratch::new("other");
    let path = scratch.journal();
    written(&path, 3);
    let before = std::fs::read(&path).expect("read");
    let err = open(&JournalOptions::new(&path), &job(99), &mut |_| {})
        .err()
        .expect("refused");
    assert!(matches!(err, JournalError::OtherJob { .. }), "{err}");
    assert!(err.to_string().contains("another job"), "{err}");
    assert_eq!(std::fs::read(&path).expect("read"), before);
}

#[test]
fn a_new_description_of_the_same_job_is_the_same_job() {
    let scratch = Scratch::new("describe");
    let path = scratch.journal();
    written(&path, 3);
    let mut same = job(100);
    same.describe = "squares below 100, started at 10:02".into();
    let mut ids = 0;
    open(&JournalOptions::new(&path), &same, &mut |_| ids += 1).expect("the same job");
    assert_eq!(ids, 3);
}

#[test]
fn a_file_that_is_not_a_journal_is_refused_and_left_alone() {
    let scratch = Scratch::new("notours");
    let path = scratch.journal();
    std::fs::write(&path, "precious data\n").expect("write");
    let err = reopen(&path).err().expect("refused");
    assert!(matches!(err, JournalError::NotAJournal(_)), "{err}");
    assert_eq!(
        std::fs::read_to_string(&path).expect("read"),
        "precious data\n"
    );
}

#[test]
fn one_run_writes_a_journal_at_a_time() {
    let scratch = Scratch::new("locked");
    let path = scratch.journal();
    let (_, _, first) = reopen(&path).expect("opens");
    let err = reopen(&path).err().expect("a second writer is refused");
    match &err {
        JournalError::InUse { holder, .. } => {
            assert_eq!(holder, &std::process::id().to_string(), "{err}")
        }
        other => panic!("{other}"),
    }
    drop(first);
    reopen(&path).expect("free again once the first is closed");
}

#[test]
fn batched_sync_syncs_at_most_every_interval_and_always_every_turn() {
    let scratch = Scratch::new("sync");
    let path = scratch.journal();
    let mut ops = JournalOptions::new(&path).sync(SyncPolicy::Always);
    let mut opened = open(&ops, &job(100), &mut |_| {}).expect("opens");
    for id in 0..5 {
        opened.writer.append(&done(id)).expect("append");
        opened.writer.end_turn().expect("turn");
    }
    opened
        .writer
        .end_turn()
        .expect("a turn with nothing settled");
    assert_eq!(
        opened.writer.counts(),
        (5, 5),
        "one sync per turn that settled"
    );
    drop(opened);
    ops.sync = SyncPolicy::Batch;
    let mut opened = open(&ops, &job(100), &mut |_| {}).expect("opens");
    for id in 5..1005 {
        opened.writer.append(&done(id)).expect("append");
        opened.writer.end_turn().expect("turn");
    }
    let (records, syncs) = opened.writer.counts();
    assert_eq!(records, 1000);
    assert!(syncs < 1000, "batched: {syncs} syncs for 1000 turns");
    opened.writer.finish().expect("finish");
    drop(opened);
    let (ids, dropped, _) = reopen(&path).expect("reopens");
    assert_eq!(dropped, None);
    assert_eq!(ids.len(), 1005);
}
