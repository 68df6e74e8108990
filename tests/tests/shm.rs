//! End-to-end tests of `outlast_ipc::shm`: a segment handed to a child (fork and
//! spawn) is the same memory in both processes, and never shows in /dev/shm.

use std::sync::atomic::{AtomicU64, Ordering};

use std::time::{Duration, Instant};

use outlast_ipc::shm::{SharedMemory, ShmError};
use outlast_ipc::sync::Event;
use outlast_ipc::value::Array;
use outlast_ipc::{Process, StartMethod};
use tests::{cases, harness};

fn main() {
    outlast_ipc::init();
    harness::run(cases![
        a_child_writes_what_the_parent_reads,
        anonymous_segments_never_appear_in_dev_shm,
        an_empty_segment_is_refused,
        a_killed_creators_named_segment_is_unlinked_by_the_tracker,
        an_untracked_segment_outlives_its_creator,
        bad_names_missing_segments_and_wrong_types_are_typed_errors,
        a_forked_child_maps_only_the_segments_it_was_given,
        segments_cannot_be_resized_by_any_holder,
        a_dev_shm_without_room_is_an_error_not_a_sigbus,
    ]);
}

/// (start, end) of every ipc segment this process maps.
fn own_segment_mappings(_: ()) -> Vec<(u64, u64)> {
    tests::attack::segment_mappings(std::process::id())
}

fn a_forked_child_maps_only_the_segments_it_was_given() {
    // The parent holds several segments; the child is given one.
    let kept: Vec<SharedMemory> = (0..5)
        .map(|_| SharedMemory::anonymous(8192).expect("segment"))
        .collect();
    let lock = outlast_ipc::sync::Lock::new().expect("lock");
    let given = SharedMemory::anonymous(4096).expect("segment");
    let mut p = Process::new(add_in_child, (given, 1));
    p.start().expect("start");
    assert_eq!(p.join().expect("join"), 1);
    let mut child = Process::new(own_segment_mappings, ());
    child.start().expect("start");
    let theirs = child.join().expect("join");
    assert!(
        theirs.is_empty(),
        "the child maps {} of the parent's segments: {theirs:?}",
        theirs.len()
    );
    drop((kept, lock));
}

fn segments_cannot_be_resized_by_any_holder() {
    let shm = SharedMemory::anonymous(4096).expect("segment");
    assert!(shm.is_sealed());
    for len in [0, 1, 8192] {
        assert!(
            nix::unistd::ftruncate(shm.as_fd(), len).is_err(),
            "resized to {len}"
        );
    }
    // Still whole and usable.
    word(&shm).store(9, Ordering::SeqCst);
    assert_eq!(word(&shm).load(Ordering::SeqCst), 9);
}

/// The first word of the segment, as an atomic.
fn word(shm: &SharedMemory) -> &AtomicU64 {
    // SAFETY: the mapping is page-aligned and at least 8 bytes long, and
    // every process touches it only through atomics.
    unsafe { &*(shm.as_ptr() as *const AtomicU64) }
}

fn add_in_child((shm, n): (SharedMemory, u64)) -> u64 {
    word(&shm).fetch_add(n, Ordering::SeqCst) + n
}

fn a_child_writes_what_the_parent_reads() {
    let shm = SharedMemory::anonymous(4096).expect("segment");
    for (method, n) in [(StartMethod::Fork, 5), (StartMethod::Spawn, 7)] {
        let theirs = shm.try_clone().expect("clone");
        let mut p = Process::new(add_in_child, (theirs, n)).start_method(method);
        p.start().expect("start");
        p.join().expect("join");
    }
    assert_eq!(word(&shm).load(Ordering::SeqCst), 12);
}

fn anonymous_segments_never_appear_in_dev_shm() {
    let before = std::fs::read_dir("/dev/shm")
        .map(|d| d.count())
        .unwrap_or(0);
    let segments: Vec<_> = (0..4)
        .map(|_| SharedMemory::anonymous(1 << 20).expect("segment"))
        .collect();
    let during = std::fs::read_dir("/dev/shm")
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(before, during);
    assert_eq!(segments.len(), 4);
}

fn an_empty_segment_is_refused() {
    assert!(matches!(SharedMemory::anonymous(0), Err(ShmError::Empty)));
}

fn unique(what: &str) -> String {
    format!("ipc-test-{what}-{}", std::process::id())
}

fn in_dev_shm(name: &str) -> bool {
    std::path::Path::new("/dev/shm").join(name).exists()
}

/// Creates a named segment (tracked or not), says so, and waits to be killed.
fn create_and_wait((name, tracked, ready): (String, bool, Event)) {
    let made = if tracked {
        SharedMemory::create(&name, 4096)
    } else {
        SharedMemory::create_untracked(&name, 4096)
    };
    if made.is_ok() {
        ready.set();
    }
    std::thread::sleep(Duration::from_secs(3600));
}

fn a_killed_creators_named_segment_is_unlinked_by_the_tracker() {
    for method in [StartMethod::Fork, StartMethod::Spawn] {
        let name = unique(&format!("tracked-{method:?}"));
        let ready = Event::new().expect("event");
        let mut creator = Process::new(
            create_and_wait,
            (name.clone(), true, ready.try_clone().expect("clone")),
        )
        .start_method(method);
        creator.start().expect("start");
        assert!(
            ready.wait_timeout(Duration::from_secs(30)),
            "the creator never made it"
        );
        assert!(in_dev_shm(&name));
        creator.kill().expect("kill");
        let _ = creator.join();
        let started = Instant::now();
        while in_dev_shm(&name) {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{name} outlived its creator"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

fn an_untracked_segment_outlives_its_creator() {
    let name = unique("untracked");
    let ready = Event::new().expect("event");
    let mut creator = Process::new(
        create_and_wait,
        (name.clone(), false, ready.try_clone().expect("clone")),
    );
    creator.start().expect("start");
    assert!(ready.wait_timeout(Duration::from_secs(30)));
    creator.kill().expect("kill");
    let _ = creator.join();
    std::thread::sleep(Duration::from_millis(100));
    let shm = SharedMemory::open(&name).expect("still there");
    shm.unlink().expect("unlink");
    assert!(!in_dev_shm(&name));
}

fn bad_names_missing_segments_and_wrong_types_are_typed_errors() {
    for bad in ["", "a/b", ".", ".."] {
        assert!(
            matches!(SharedMemory::create(bad, 10), Err(ShmError::BadName(_))),
            "{bad:?}"
        );
    }
    let long = "x".repeat(300);
    assert!(matches!(
        SharedMemory::open(&long),
        Err(ShmError::BadName(_))
    ));
    let missing = unique("missing");
    assert!(matches!(
        SharedMemory::open(&missing),
        Err(ShmError::NotFound(_))
    ));
    assert!(matches!(
        Array::<u32>::open_named(&missing),
        Err(ShmError::NotFound(_))
    ));

    let name = unique("typed");
    let array = Array::<u64>::create_named(&name, &[1, 2, 3]).expect("create");
    assert!(matches!(
        SharedMemory::create(&name, 10),
        Err(ShmError::AlreadyExists(_))
    ));
    assert!(matches!(
        Array::<u32>::open_named(&name),
        Err(ShmError::WrongType {
            expected: 4,
            found: 8
        })
    ));
    let same = Array::<u64>::open_named(&name).expect("the right type opens");
    assert_eq!(same.to_vec().expect("read"), [1, 2, 3]);
    array.segment().unlink().expect("unlink");

    let plain = unique("plain");
    let raw = SharedMemory::create(&plain, 4096).expect("create");
    assert!(matches!(
        Array::<u64>::open_named(&plain),
        Err(ShmError::WrongKind)
    ));
    raw.unlink().expect("unlink");
    assert!(matches!(raw.unlink(), Err(ShmError::NotFound(_))));
    assert!(matches!(
        SharedMemory::create(&unique("zero"), 0),
        Err(ShmError::Empty)
    ));
}

/// In this process only: `/dev/shm` as a container has it, a 64 MB tmpfs
/// (a mount namespace of its own; through a user namespace when not root).
fn a_small_dev_shm_of_our_own() -> Result<(), String> {
    // SAFETY: plain calls on this single-threaded child process.
    unsafe {
        let uid = libc::geteuid();
        let gid = libc::getegid();
        if uid != 0 {
            if libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNS) != 0 {
                return Err(format!("unshare: {}", std::io::Error::last_os_error()));
            }
            let _ = std::fs::write("/proc/self/setgroups", "deny");
            std::fs::write("/proc/self/uid_map", format!("0 {uid} 1"))
                .map_err(|e| e.to_string())?;
            std::fs::write("/proc/self/gid_map", format!("0 {gid} 1"))
                .map_err(|e| e.to_string())?;
        } else if libc::unshare(libc::CLONE_NEWNS) != 0 {
            return Err(format!("unshare: {}", std::io::Error::last_os_error()));
        }
        let none = c"none";
        let root = c"/";
        if libc::mount(
            none.as_ptr(),
            root.as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ) != 0
        {
            return Err(format!(
                "make / private: {}",
                std::io::Error::last_os_error()
            ));
        }
        let tmpfs = c"tmpfs";
        let dev_shm = c"/dev/shm";
        let size = c"size=64m";
        if libc::mount(
            tmpfs.as_ptr(),
            dev_shm.as_ptr(),
            tmpfs.as_ptr(),
            0,
            size.as_ptr().cast(),
        ) != 0
        {
            return Err(format!("mount: {}", std::io::Error::last_os_error()));
        }
    }
    Ok(())
}

/// What a 64 MB `/dev/shm` says to: a 100 MB segment made here, a 10 MB
/// one, and a 100 MB one made sparse by someone else (as Python's
/// `SharedMemory(create=True)` makes them) and opened here.
fn in_a_small_dev_shm(_: ()) -> Result<(String, usize, String), String> {
    a_small_dev_shm_of_our_own()?;
    let name = format!("ipc-test-room-{}", std::process::id());
    let big = match SharedMemory::create(&name, 100 << 20) {
        Err(e @ ShmError::NoSpace { .. }) => e.to_string(),
        Err(e) => return Err(format!("another error: {e}")),
        Ok(_) => return Err("100 MB made in 64".into()),
    };
    if SharedMemory::open(&name).is_ok() {
        return Err("the refused segment's name stayed".into());
    }
    let small = SharedMemory::create(&name, 10 << 20).map_err(|e| e.to_string())?;
    // SAFETY: our own mapping of `len` bytes: every page is there.
    unsafe { std::ptr::write_bytes(small.as_ptr(), 7, small.len()) };
    let small_len = small.len();
    small.unlink().map_err(|e| e.to_string())?;
    let sparse = format!("{name}-sparse");
    let path = format!("/dev/shm/{sparse}");
    let file = std::fs::File::create(&path).map_err(|e| e.to_string())?;
    file.set_len(100 << 20).map_err(|e| e.to_string())?;
    let opened = match SharedMemory::open(&sparse) {
        Err(e @ ShmError::NoSpace { .. }) => e.to_string(),
        Err(e) => return Err(format!("another error on open: {e}")),
        Ok(_) => return Err("a sparse 100 MB opened in 64".into()),
    };
    let _ = std::fs::remove_file(&path);
    Ok((big, small_len, opened))
}

/// A container's `/dev/shm` is 64 MB: a larger named segment was made
/// (its size only set), and the first write past the room ended the
/// process with SIGBUS (Python's `SharedMemory` does the same). Now its
/// pages are reserved when it is made or opened, and no room is
/// `ShmError::NoSpace`, in words.
fn a_dev_shm_without_room_is_an_error_not_a_sigbus() {
    let mut p = Process::new(in_a_small_dev_shm, ()).start_method(StartMethod::Spawn);
    p.start().expect("start");
    let (big, small, opened) = p.join().expect("no signal").expect("the checks");
    for said in [&big, &opened] {
        assert!(
            said.contains("/dev/shm has no room for the 104857600 bytes"),
            "{said}"
        );
        assert!(said.contains("SIGBUS"), "{said}");
    }
    assert_eq!(small, 10 << 20);
}
