//! Unit tests of the run's temporary folder, commit and stale-folder cleanup (`output.rs`).

use super::super::rename::tests::{Scratch, folder, names, read};
use super::*;

#[test]
fn temporary_names_are_short_and_recognized() {
    let pid = std::process::id();
    let s = Scratch::new("names");
    let t = TmpDir::create(&s.0).unwrap();
    let name = t.path().file_name().unwrap().to_str().unwrap().to_string();
    assert!(name.starts_with(&format!(".int8-wgpu-tmp-{pid}-")), "{name}");
    assert!(name.len() <= 15 + 10 + 1 + 20, "{name}");
    assert_eq!(temp_folder_pid(&name), Some(pid));
    assert_eq!(read(&t.path().join(LOCK_FILE)), LOCK_TEXT);
    assert_eq!(temp_folder_pid(".int8-wgpu-tmp-12-1796011495808350829"), Some(12));
    for other in [
        ".q.int8-wgpu-tmp-12-1796011495808350829",
        ".q.int8-wgpu-tmp-12-179601.old",
        ".int8-wgpu-tmp-12-",
        ".int8-wgpu-tmp--3",
        ".int8-wgpu-tmp-12-x",
        "q.int8-wgpu-tmp-12-3",
        ".int8-wgpu-old-12-3",
        ".int8-wgpu-tmp-99999999999-3",
    ] {
        assert_eq!(temp_folder_pid(other), None, "{other}");
    }
    assert!(t.ensure_live().is_ok());
    let path = t.path().to_path_buf();
    drop(t);
    assert!(!path.exists(), "dropped uncommitted: removed");
}

#[test]
fn moving_aside_replaces_and_keeps_the_old_output_on_failure() {
    let s = Scratch::new("aside");
    let (tmp, out) = (s.0.join(".int8-wgpu-tmp-1-1"), s.0.join("out"));
    folder(&tmp, "f", "new");
    folder(&out, "g", "old");
    let aside = move_aside_and_replace(&tmp, &out).unwrap();
    assert_eq!(read(&out.join("f")), "new");
    assert_eq!(read(&aside.join("g")), "old");
    assert!(aside.file_name().unwrap().to_str().unwrap().starts_with(".int8-wgpu-old-"));
    assert_eq!(temp_folder_pid(aside.file_name().unwrap().to_str().unwrap()), None, "never removed as stale");
    // The new output is gone: the old one goes back.
    let e = move_aside_and_replace(&tmp, &out).unwrap_err();
    assert!(matches!(&e, Error::Io { op: "moving into place", .. }), "{e:?}");
    assert_eq!(read(&out.join("f")), "new");
}

#[test]
fn a_failure_to_remove_the_replaced_output_is_a_warning() {
    let s = Scratch::new("force");
    let out = s.0.join("out");
    folder(&out, "old.txt", "old");
    fs::write(out.join("model.safetensors"), "old weights").unwrap();
    let tmp = TmpDir::create(&s.0).unwrap();
    fs::write(tmp.path().join("new.txt"), "new").unwrap();
    let tmp_path = tmp.path().to_path_buf();
    let warnings =
        commit_with(tmp, &out, true, |_| Err(io::Error::new(io::ErrorKind::PermissionDenied, "refused"))).unwrap();
    assert_eq!(read(&out.join("new.txt")), "new");
    // After an exchange the old copy is at the temporary path; moved aside, elsewhere.
    let old = if tmp_path.exists() {
        tmp_path
    } else {
        s.0.join(names(&s.0).into_iter().find(|n| n.starts_with(".int8-wgpu-old-")).unwrap())
    };
    assert_eq!(read(&old.join("old.txt")), "old");
    assert_eq!(
        warnings,
        [format!(
            "the previous output was replaced, but its old copy `{}` could not be removed (refused); delete it",
            old.display()
        )]
    );
    assert!(!live().holds(&old), "no longer ours to remove on an interrupt");
}

#[test]
fn stale_folders_are_ours_of_gone_processes_and_unlocked() {
    let s = Scratch::new("stale");
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let mine = TmpDir::create(&s.0).unwrap();
    let dead_dir = s.0.join(format!(".int8-wgpu-tmp-{dead}-0"));
    let mine_unlisted = s.0.join(format!(".int8-wgpu-tmp-{}-999999", std::process::id()));
    let alive = s.0.join(".int8-wgpu-tmp-1-0"); // init
    let locked = s.0.join(format!(".int8-wgpu-tmp-{dead}-2"));
    for d in [&dead_dir, &mine_unlisted, &alive, &locked] {
        folder(d, "f", "x");
        fs::write(d.join(LOCK_FILE), LOCK_TEXT).unwrap();
    }
    let _held = try_lock(&locked.join(LOCK_FILE)).unwrap().unwrap(); // as a live run in another pid namespace
    // Named like ours but without our lock file (someone else's, or an older version's), or
    // with another text in its place, or a link in its place: never removed.
    let no_lock = s.0.join(format!(".int8-wgpu-tmp-{dead}-4"));
    let legacy = s.0.join(format!(".out.int8-wgpu-tmp-{dead}-1796011495808350829"));
    let other_text = s.0.join(format!(".int8-wgpu-tmp-{dead}-5"));
    let linked_lock = s.0.join(format!(".int8-wgpu-tmp-{dead}-6"));
    for d in [&no_lock, &legacy, &other_text, &linked_lock] {
        folder(d, "f", "x");
    }
    fs::write(other_text.join(LOCK_FILE), "mine\n").unwrap();
    std::os::unix::fs::symlink(dead_dir.join(LOCK_FILE), linked_lock.join(LOCK_FILE)).unwrap();
    // A link named like a folder of ours is not followed.
    let target = s.0.join("target");
    folder(&target, "f", "x");
    std::os::unix::fs::symlink(&target, s.0.join(format!(".int8-wgpu-tmp-{dead}-3"))).unwrap();

    assert_eq!(remove_stale(&s.0), Vec::<String>::new());
    let mut want = vec![
        mine.path().file_name().unwrap().to_string_lossy().into_owned(),
        ".int8-wgpu-tmp-1-0".to_string(),
        format!(".int8-wgpu-tmp-{dead}-2"),
        format!(".int8-wgpu-tmp-{dead}-3"),
        format!(".int8-wgpu-tmp-{dead}-4"),
        format!(".int8-wgpu-tmp-{dead}-5"),
        format!(".int8-wgpu-tmp-{dead}-6"),
        format!(".out.int8-wgpu-tmp-{dead}-1796011495808350829"),
        "target".to_string(),
    ];
    want.sort();
    assert_eq!(names(&s.0), want);
    assert_eq!(read(&target.join("f")), "x");
}
