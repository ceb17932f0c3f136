//! A `distill serve` process for the tests: started on a free port, called with ureq, stopped by a signal
//! (or killed when a test fails first); the tiny model it serves; logits compared within 1e-5.
#![allow(unsafe_code)] // tests may signal their child processes

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use modeling::testutil::{tiny_checkpoint, tiny_config};
use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_distill");

/// A running server; killed on drop if a test failed before stopping it.
pub struct Server {
    pub child: Child,
    pub url: String,
}

impl Server {
    pub fn start(model: &Path, extra: &[&str]) -> Server {
        Self::start_env(model, extra, &[])
    }

    /// `start` with environment variables set for the server.
    pub fn start_env(model: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let log = std::fs::File::create(model.with_extension("log")).unwrap();
        let mut child = Command::new(BIN)
            .arg("serve")
            .arg(model)
            .args(["--port", "0"])
            .args(extra)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(30)).unwrap();
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        Server { child, url }
    }

    /// (status, JSON body) of a request; the body must be JSON whatever the status.
    pub fn call(&self, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(30))
            .build();
        let req = agent
            .request(method, &format!("{}{path}", self.url))
            .set("Content-Type", "application/json");
        let res = match body {
            Some(b) => req.send_string(b),
            None => req.call(),
        };
        let (status, resp) = match res {
            Ok(r) => (r.status(), r),
            Err(ureq::Error::Status(s, r)) => (s, r),
            Err(e) => panic!("{method} {path}: {e}"),
        };
        let text = resp.into_string().unwrap();
        let v = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{method} {path} {status}: body not JSON ({e}): {text}"));
        (status, v)
    }

    pub fn predict(&self, body: &Value) -> Vec<Value> {
        let (status, v) = self.call("POST", "/predict", Some(&body.to_string()));
        assert_eq!(status, 200, "{v}");
        v["predictions"].as_array().unwrap().clone()
    }

    pub fn stats(&self) -> (u64, u64, u64) {
        let (_, v) = self.call("GET", "/stats", None);
        let g = |k: &str| v[k].as_u64().unwrap();
        (g("requests"), g("batches"), g("examples"))
    }

    /// Sends `signal` (0: none, already sent) and waits for the exit status (at most 15 s).
    pub fn stop(mut self, signal: i32) -> std::process::ExitStatus {
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, signal) }, 0);
        let t = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(
                t.elapsed() < Duration::from_secs(15),
                "no exit after signal"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn model(dir: &Path, num_labels: usize) -> std::path::PathBuf {
    let m = dir.join(format!("model{num_labels}"));
    std::fs::create_dir_all(&m).unwrap();
    tiny_checkpoint(&m, &tiny_config(), Some(num_labels), 7).unwrap();
    m
}

pub fn close(a: &Value, b: &Value) {
    let f = |v: &Value| v.as_f64().unwrap();
    assert!((f(&a["score"]) - f(&b["score"])).abs() < 1e-5, "{a} vs {b}");
    let (la, lb) = (
        a["logits"].as_array().unwrap(),
        b["logits"].as_array().unwrap(),
    );
    assert_eq!(la.len(), lb.len());
    for (x, y) in la.iter().zip(lb) {
        assert!((f(x) - f(y)).abs() < 1e-5, "{a} vs {b}");
    }
    assert_eq!(a["label"], b["label"]);
    assert_eq!(a["label_id"], b["label_id"]);
}
