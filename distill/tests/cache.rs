//! The machine's cache of fine-tuned teachers and targets, through the real binary on the tiny config:
//! a second run into another folder fine-tunes nothing and computes no targets, and its student is the
//! same, byte for byte, as without a cache; two runs started together compute each entry once; a damaged
//! entry is recomputed with a message naming it; a killed writer and a full disk leave no entry;
//! `distill cache` lists and removes; `teacher.cache: false` stays out of it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

/// `distill ARGS` with the cache at `cache`.
fn distill(cache: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_distill"));
    c.args(args)
        .current_dir(root())
        .env("DISTILL_CACHE", cache)
        .env("NO_COLOR", "1");
    c
}

fn run(cache: &Path, out: &Path, sets: &[&str]) -> Command {
    let o = format!("output_dir={}", out.display());
    let mut args = vec!["run", "configs/tiny.yaml", "--set", &o];
    for s in sets {
        args.extend(["--set", s]);
    }
    distill(cache, &args)
}

fn ok(o: Output) -> String {
    let t = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "{t}");
    t
}

fn bytes(p: PathBuf) -> Vec<u8> {
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// `distill cache list --json`, one value per entry.
fn entries(cache: &Path) -> Vec<serde_json::Value> {
    ok(distill(cache, &["cache", "list", "--json"])
        .output()
        .unwrap())
    .lines()
    .filter(|l| l.starts_with('{'))
    .map(|l| serde_json::from_str(l).unwrap())
    .collect()
}

const FINETUNES: &str = "fine-tuning it on";
const COMPUTES: &str = "targets: wrote";

#[test]
fn a_second_run_takes_teacher_and_targets_from_the_cache_and_trains_the_same_student() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let first = ok(run(&cache, &tmp.path().join("a"), &[]).output().unwrap());
    assert!(
        first.contains(FINETUNES) && first.contains(COMPUTES),
        "{first}"
    );
    assert!(first.contains("cache: put"), "{first}");
    let second = ok(run(&cache, &tmp.path().join("b"), &[]).output().unwrap());
    assert!(
        !second.contains(FINETUNES) && !second.contains(COMPUTES),
        "{second}"
    );
    assert!(
        second.contains("took the fine-tuned teacher from the cache")
            && second.contains("targets: took them from the cache"),
        "{second}"
    );
    // The same run without a cache gives the same bytes.
    let alone = tmp.path().join("alone");
    ok(run(Path::new("off"), &alone, &[]).output().unwrap());
    for f in [
        "teacher/model/model.safetensors",
        "targets/train.safetensors",
        "student/best/model.safetensors",
        "export/model.safetensors",
    ] {
        assert!(
            bytes(tmp.path().join("b").join(f)) == bytes(alone.join(f)),
            "{f} differs"
        );
    }
    assert!(!cache.join("off").exists());
    let kinds: Vec<String> = entries(&cache)
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(kinds.len(), 2, "{kinds:?}");
    assert!(kinds.contains(&"teachers".into()) && kinds.contains(&"targets".into()));
}

#[test]
fn two_runs_started_together_compute_each_entry_once() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let spawn = |name: &str| {
        run(&cache, &tmp.path().join(name), &[])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
    };
    let (a, b) = (spawn("a"), spawn("b"));
    let logs = [
        ok(a.unwrap().wait_with_output().unwrap()),
        ok(b.unwrap().wait_with_output().unwrap()),
    ];
    let count = |needle: &str| logs.iter().filter(|l| l.contains(needle)).count();
    assert_eq!(count(FINETUNES), 1, "{logs:?}");
    assert_eq!(count(COMPUTES), 1, "{logs:?}");
    assert_eq!(entries(&cache).len(), 2);
}

#[test]
fn a_damaged_entry_is_named_and_computed_again() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    ok(run(&cache, &tmp.path().join("a"), &[]).output().unwrap());
    let teacher = entries(&cache)
        .into_iter()
        .find(|e| e["kind"] == "teachers")
        .unwrap();
    let dir = PathBuf::from(teacher["dir"].as_str().unwrap());
    let weights = dir.join("model.safetensors");
    let mut b = bytes(weights.clone());
    let last = b.len() - 1;
    b[last] ^= 0xff;
    // A new file, as a user's editor would write (the run's own folder keeps its hard link intact).
    std::fs::remove_file(&weights).unwrap();
    std::fs::write(&weights, &b).unwrap();
    let log = ok(run(&cache, &tmp.path().join("b"), &[]).output().unwrap());
    let id = &teacher["key"].as_str().unwrap()[..12];
    assert!(
        log.contains("is damaged") && log.contains(id) && log.contains("fails its checksum"),
        "{log}"
    );
    assert!(log.contains(FINETUNES), "{log}");
    assert!(
        bytes(tmp.path().join("b/teacher/model/model.safetensors"))
            == bytes(tmp.path().join("a/teacher/model/model.safetensors"))
    );
    assert_eq!(entries(&cache).len(), 2);
}

#[test]
fn a_writer_killed_while_writing_leaves_no_entry_and_the_next_run_writes_it() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    ok(run(&cache, &tmp.path().join("a"), &[]).output().unwrap());
    // What a writer killed half-way leaves: its hidden temporary, half a file in it, no entry.
    for e in entries(&cache) {
        let dir = PathBuf::from(e["dir"].as_str().unwrap());
        let key = e["key"].as_str().unwrap();
        let tmp_dir = dir.with_file_name(format!(".tmp-{key}"));
        std::fs::create_dir_all(&tmp_dir).unwrap();
        std::fs::write(tmp_dir.join("model.safetensors"), b"half").unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
    assert!(entries(&cache).is_empty());
    let log = ok(run(&cache, &tmp.path().join("b"), &[]).output().unwrap());
    assert!(log.contains(FINETUNES) && log.contains(COMPUTES), "{log}");
    let after = entries(&cache);
    assert_eq!(after.len(), 2);
    for kind in ["teachers", "targets"] {
        let names: Vec<String> = std::fs::read_dir(cache.join(kind))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| !n.starts_with('.')), "{names:?}");
    }
}

#[test]
fn a_full_disk_leaves_no_partial_entry_and_costs_the_run_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    std::fs::create_dir(&cache).unwrap();
    // The cache on a 64 KiB tmpfs: the tiny teacher's weights (112 KiB) do not fit.
    let out = tmp.path().join("a");
    let script = r#"mount -t tmpfs -o size=64k none "$CACHE" || exit 90
"$BIN" "$@"; rc=$?
cd "$CACHE" && find . -mindepth 1 -maxdepth 3 | sort > "$LIST"
exit $rc"#;
    let list = tmp.path().join("list.txt");
    let o = Command::new("unshare")
        .args(["-Urm", "sh", "-c", script, "sh", "run", "configs/tiny.yaml"])
        .args(["--set", &format!("output_dir={}", out.display())])
        .env("BIN", env!("CARGO_BIN_EXE_distill"))
        .env("CACHE", &cache)
        .env("DISTILL_CACHE", &cache)
        .env("LIST", &list)
        .current_dir(root())
        .output()
        .unwrap();
    let log = ok(o);
    assert!(
        log.contains("could not put") && log.contains("No space left on device"),
        "{log}"
    );
    assert!(out.join("export/model.safetensors").is_file());
    // Inside the tmpfs: no temporary, no teacher (it did not fit), and every entry that is there whole
    // (the small targets fit).
    let left = std::fs::read_to_string(&list).unwrap();
    let lines: Vec<&str> = left.lines().collect();
    for line in &lines {
        assert!(!line.contains("/."), "a temporary was left: {line}\n{left}");
        assert!(
            !line.starts_with("./teachers/"),
            "a teacher entry was left: {line}\n{left}"
        );
        let parts: Vec<&str> = line.split('/').collect();
        if parts.len() == 3 && parts[1] != "locks" {
            let manifest = format!("{line}/manifest.json");
            assert!(
                lines.contains(&manifest.as_str()),
                "{line} has no manifest\n{left}"
            );
        }
    }
}

#[test]
fn the_cache_command_lists_and_removes_and_a_run_can_stay_out() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    ok(run(&cache, &tmp.path().join("a"), &["teacher.cache=false"])
        .output()
        .unwrap());
    assert!(entries(&cache).is_empty());
    ok(run(&cache, &tmp.path().join("b"), &[]).output().unwrap());
    let table = ok(distill(&cache, &["cache"]).output().unwrap());
    assert!(
        table.contains("2 entries") && table.contains("teachers") && table.contains("targets"),
        "{table}"
    );
    assert!(
        table.contains("fine-tuned on sst2") && table.contains("sst2 -> "),
        "{table}"
    );
    let all = entries(&cache);
    let id = all[0]["id"].as_str().unwrap().to_string();
    let o = ok(distill(&cache, &["cache", "remove", &id]).output().unwrap());
    assert!(o.contains(&format!("removed {id}")), "{o}");
    assert_eq!(entries(&cache).len(), 1);
    let o = ok(distill(&cache, &["cache", "remove", "--older-than", "30d"])
        .output()
        .unwrap());
    assert!(!o.contains("removed"), "{o}");
    assert_eq!(entries(&cache).len(), 1);
    let o = distill(&cache, &["cache", "remove", "nosuchid"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no entry has the id `nosuchid`"));
    ok(distill(&cache, &["cache", "remove", "--all"])
        .output()
        .unwrap());
    assert!(entries(&cache).is_empty());
    // The run's own folder keeps its copies (hard links) when the cache lets go of them.
    assert!(tmp
        .path()
        .join("b/teacher/model/model.safetensors")
        .is_file());
}
