//! Data-parallel runs end to end, the whole binary started by `mpirun` (MPI is never initialised in the
//! test process). Built with the `mpi` feature (`cargo test -p distill --features mpi --test
//! data_parallel`, as CI runs it): N ranks equal one process accumulating N micro-batches, byte for
//! byte, in training and pre-training; `fast` stays within its tolerance of `deterministic`; ranks that
//! start apart are refused; a killed rank ends the job naming it, and the same command resumes; the
//! teacher's targets are sharded over the ranks and merged. Without the feature, a process refuses to
//! be one of several ranks.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test may fail loudly

mod common;

#[cfg(not(feature = "mpi"))]
#[test]
fn without_the_mpi_feature_a_rank_of_several_is_refused() {
    use std::process::Command;
    let tmp = tempfile::tempdir().unwrap();
    let out = format!("output_dir={}", tmp.path().display());
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_distill"))
            .env("DISTILL_CACHE", "off")
            .args(args)
            .args(["--set", &out])
            .current_dir(root)
            .env("OMPI_COMM_WORLD_SIZE", "2")
            .env("OMPI_COMM_WORLD_RANK", "1")
            .output()
            .unwrap()
    };
    let o = run(&["train", "configs/tiny.yaml"]);
    common::fails(&o, &["one of several MPI ranks", "--features mpi"]);
    let o = run(&["teacher", "configs/tiny.yaml"]);
    common::fails(&o, &["--features mpi"]);
    let o = run(&["run", "configs/tiny.yaml"]);
    common::fails(&o, &["runs as one process"]);
}

#[cfg(feature = "mpi")]
mod under_mpirun {
    use std::path::{Path, PathBuf};
    use std::process::{Command, Output};

    use super::common::{ok, text};

    fn root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap()
            .to_path_buf()
    }

    /// `mpirun -np N distill ARGS` from the repository root, as root in a container if need be.
    fn mpirun(n: usize, args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut c = Command::new("mpirun");
        c.args([
            "-np",
            &n.to_string(),
            "--oversubscribe",
            "--bind-to",
            "none",
        ]);
        for (k, _) in env {
            c.args(["-x", k]);
        }
        c.arg(env!("CARGO_BIN_EXE_distill"))
            .args(args)
            .current_dir(root())
            .env("DISTILL_CACHE", "off")
            .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
            .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
            .env("OMPI_MCA_btl_vader_single_copy_mechanism", "none")
            .env("NO_COLOR", "1");
        for (k, v) in env {
            c.env(k, v);
        }
        c
    }

    /// `distill ARGS` alone.
    fn one(args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_distill"))
            .env("DISTILL_CACHE", "off")
            .args(args)
            .current_dir(root())
            .output()
            .unwrap()
    }

    fn set_out(dir: &Path) -> String {
        format!("output_dir={}", dir.display())
    }

    fn read(d: &Path, f: &str) -> Vec<u8> {
        std::fs::read(d.join(f)).unwrap_or_else(|e| panic!("{}: {e}", d.join(f).display()))
    }

    /// A run folder with the tiny config's fine-tuned teacher and targets, copied for each use.
    fn with_targets(dirs: &[&Path]) {
        let first = dirs[0];
        ok(&one(&[
            "teacher",
            "configs/tiny.yaml",
            "--set",
            &set_out(first),
        ]));
        for d in &dirs[1..] {
            let o = Command::new("cp")
                .args(["-r"])
                .arg(first)
                .arg(d)
                .output()
                .unwrap();
            assert!(o.status.success());
        }
    }

    #[test]
    fn two_and_three_ranks_equal_one_process_accumulating_their_micro_batches() {
        let tmp = tempfile::tempdir().unwrap();
        let [one_dir, two, three, acc3] =
            ["one", "two", "three", "acc3"].map(|d| tmp.path().join(d));
        with_targets(&[&one_dir, &two, &three, &acc3]);
        let cfg = "configs/tiny.yaml";
        ok(&one(&[
            "train",
            cfg,
            "--set",
            &set_out(&one_dir),
            "--set",
            "train.gradient_accumulation=2",
        ]));
        let log = ok(&mpirun(2, &["train", cfg, "--set", &set_out(&two)], &[])
            .output()
            .unwrap());
        assert!(log.contains("data-parallel: 2 processes"), "{log}");
        for f in ["student/last/model.safetensors", "student/metrics.jsonl"] {
            assert!(read(&one_dir, f) == read(&two, f), "{f} differs at 2 ranks");
        }
        let state = String::from_utf8(read(&two, "student/last/trainer_state.json")).unwrap();
        assert!(state.contains("\"world\": 2"), "{state}");

        ok(&one(&[
            "train",
            cfg,
            "--set",
            &set_out(&acc3),
            "--set",
            "train.gradient_accumulation=3",
        ]));
        ok(&mpirun(3, &["train", cfg, "--set", &set_out(&three)], &[])
            .output()
            .unwrap());
        for f in ["student/last/model.safetensors", "student/metrics.jsonl"] {
            assert!(read(&acc3, f) == read(&three, f), "{f} differs at 3 ranks");
        }

        // `fast`: MPI_Allreduce's own order of additions, within its tolerance of the ordered sum.
        let fast = tmp.path().join("fast");
        std::fs::rename(&three, &fast).unwrap();
        ok(&mpirun(
            3,
            &[
                "train",
                cfg,
                "--set",
                &set_out(&fast),
                "--set",
                "train.all_reduce=fast",
            ],
            &[],
        )
        .output()
        .unwrap());
        let load = |d: &Path| {
            candle_core::safetensors::load(
                d.join("student/last/model.safetensors"),
                &candle_core::Device::Cpu,
            )
            .unwrap()
        };
        let (a, b) = (load(&acc3), load(&fast));
        let mut worst = 0f32;
        for (name, t) in &a {
            worst = worst.max(kernels::max_abs_diff(t, &b[name]).unwrap());
        }
        eprintln!("fast against deterministic, 3 ranks: largest weight difference {worst:e}");
        assert!(worst < 1e-5, "fast strays {worst} from deterministic");

        // Run again as one process: the checkpoint of three ranks is another global batch.
        let again = ok(&one(&["train", cfg, "--set", &set_out(&acc3)]));
        assert!(
            again.contains("retraining from scratch") || again.contains("data-parallel processes"),
            "{again}"
        );
    }

    #[test]
    fn data_parallel_pre_training_equals_accumulation_too() {
        let tmp = tempfile::tempdir().unwrap();
        let (one_dir, two) = (tmp.path().join("one"), tmp.path().join("two"));
        let cfg = "configs/tiny-pretrain.yaml";
        ok(&one(&[
            "pretrain",
            cfg,
            "--set",
            &set_out(&one_dir),
            "--set",
            "train.gradient_accumulation=2",
        ]));
        ok(&mpirun(
            2,
            &[
                "pretrain",
                cfg,
                "--set",
                &set_out(&two),
                "--set",
                "train.gradient_accumulation=1",
            ],
            &[],
        )
        .output()
        .unwrap());
        for f in [
            "last/model.safetensors",
            "export/model.safetensors",
            "metrics.jsonl",
        ] {
            assert!(read(&one_dir, f) == read(&two, f), "{f} differs");
        }
    }

    #[test]
    fn ranks_that_start_from_other_weights_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("run");
        with_targets(&[&dir]);
        let out = set_out(&dir);
        let o = Command::new("mpirun")
            .env("DISTILL_CACHE", "off")
            .args(["--oversubscribe", "--bind-to", "none", "-np", "1"])
            .arg(env!("CARGO_BIN_EXE_distill"))
            .args(["train", "configs/tiny.yaml", "--set", &out, ":", "-np", "1"])
            .arg(env!("CARGO_BIN_EXE_distill"))
            .args(["train", "configs/tiny.yaml", "--set", &out])
            .args(["--set", "seed=7"])
            .current_dir(root())
            .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
            .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
            .env("OMPI_MCA_btl_vader_single_copy_mechanism", "none")
            .output()
            .unwrap();
        let t = text(&o);
        assert!(!o.status.success(), "{t}");
        assert!(t.contains("data-parallel rank"), "{t}");
    }

    #[test]
    fn a_killed_rank_ends_the_job_naming_it_and_the_same_command_resumes() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("run");
        with_targets(&[&dir]);
        let out = set_out(&dir);
        let mark = format!("{}", std::process::id());
        let args = [
            "train",
            "configs/tiny.yaml",
            "--set",
            &out,
            "--set",
            "train.epochs=400",
        ];
        let env = [("DISTILL_TEST_MARK", mark.as_str())];
        let child = mpirun(2, &args, &env)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Once a checkpoint exists, kill rank 1 (found by its environment).
        let state = dir.join("student/last/trainer_state.json");
        let start = std::time::Instant::now();
        while !state.exists() && start.elapsed().as_secs() < 60 {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        assert!(state.exists(), "no checkpoint after 60 s");
        let pid = rank_pid(&mark, 1).expect("rank 1 is running");
        assert!(Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .unwrap()
            .success());
        let o = child.wait_with_output().unwrap();
        let t = text(&o);
        assert!(!o.status.success(), "{t}");
        assert!(t.contains("rank 1"), "{t}");

        let again = ok(&mpirun(2, &args, &env).output().unwrap());
        assert!(again.contains("resuming from"), "{again}");
    }

    /// The pid of the rank started with `DISTILL_TEST_MARK=mark` and `OMPI_COMM_WORLD_RANK=rank`.
    fn rank_pid(mark: &str, rank: usize) -> Option<u32> {
        let want = [
            format!("DISTILL_TEST_MARK={mark}"),
            format!("OMPI_COMM_WORLD_RANK={rank}"),
        ];
        std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let env = std::fs::read(e.path().join("environ")).ok()?;
            let vars: Vec<&[u8]> = env.split(|&b| b == 0).collect();
            want.iter()
                .all(|w| vars.contains(&w.as_bytes()))
                .then_some(pid)
        })
    }

    #[test]
    fn the_teacher_s_targets_are_sharded_over_the_ranks_and_merged() {
        let tmp = tempfile::tempdir().unwrap();
        let (alone, ranks) = (tmp.path().join("alone"), tmp.path().join("ranks"));
        ok(&one(&[
            "teacher",
            "configs/tiny.yaml",
            "--set",
            &set_out(&alone),
        ]));
        ok(&mpirun(
            2,
            &["teacher", "configs/tiny.yaml", "--set", &set_out(&ranks)],
            &[],
        )
        .output()
        .unwrap());
        for i in 0..2 {
            let shard = format!("targets/train.shard-{i}-of-2.safetensors");
            assert!(ranks.join(&shard).is_file(), "{shard}");
        }
        let logits = |d: &Path| {
            let t = candle_core::safetensors::load(
                d.join("targets/train.safetensors"),
                &candle_core::Device::Cpu,
            )
            .unwrap();
            t["logits"].flatten_all().unwrap().to_vec1::<f32>().unwrap()
        };
        let (a, b) = (logits(&alone), logits(&ranks));
        assert_eq!(a.len(), b.len());
        let worst = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        eprintln!("sharded against one process: largest logit difference {worst:e}");
        assert!(worst < 1e-5, "sharded logits differ by {worst}");
    }
}
