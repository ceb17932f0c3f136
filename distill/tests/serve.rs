//! `distill serve` as a real process on a tiny random model (modeling::testutil::tiny_checkpoint): its
//! answers equal `distill predict`'s, concurrent requests share forwards, every error is JSON with the
//! right status, and SIGTERM/SIGINT end it with status 0.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test may fail loudly
#![allow(unsafe_code)] // tests may signal their child processes

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::server::{close, model, Server};
use modeling::testutil::sentence;
use serde_json::{json, Value};

#[test]
fn serve_matches_predict_batches_concurrent_requests_and_stops_on_sigterm() {
    let tmp = tempfile::tempdir().unwrap();
    let m = model(tmp.path(), 2);
    // Inputs of several lengths, one past --max-len (truncated alike by both), one pair.
    let long = "the movie was good and ".repeat(30);
    let texts: Vec<String> = (0..5)
        .map(|k| sentence(k).0)
        .chain([long.clone(), "good film\tbad plot".to_string()])
        .collect();
    let out = Command::new(common::server::BIN)
        .arg("predict")
        .arg(&m)
        .args(["--max-len", "32"])
        .args(&texts)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let expected: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(expected.len(), texts.len());

    let s = Server::start(&m, &["--max-len", "32", "--max-wait-ms", "20"]);
    let (status, h) = s.call("GET", "/health", None);
    assert_eq!(status, 200);
    assert_eq!(h["status"], "ok");
    assert_eq!(h["labels"], json!(["0", "1"]));
    assert_eq!(h["max_len"], 32);
    assert_eq!(h["max_batch"], 32);
    assert_eq!(h["model_dir"], m.display().to_string());
    assert_eq!(h["runtime"], "candle");

    let (singles, pairs): (Vec<&str>, Vec<Option<&str>>) = texts
        .iter()
        .map(|t| match t.split_once('\t') {
            Some((a, b)) => (a, Some(b)),
            None => (t.as_str(), None),
        })
        .unzip();
    let got = s.predict(&json!({"texts": singles, "text_pairs": pairs}));
    assert_eq!(got.len(), expected.len());
    for (g, e) in got.iter().zip(&expected) {
        close(g, e);
    }
    // Without pairs, and the one-text form.
    let got = s.predict(&json!({"texts": &singles[..5]}));
    for (g, e) in got.iter().zip(&expected) {
        close(g, e);
    }
    let one = s.predict(&json!({"text": "good film", "text_pair": "bad plot"}));
    close(&one[0], &expected[6]);

    // 16 clients × 4 requests at once: right answers, fewer forwards than requests.
    let (r0, b0, e0) = s.stats();
    std::thread::scope(|scope| {
        for c in 0..16 {
            let (s, expected, singles) = (&s, &expected, &singles);
            scope.spawn(move || {
                for r in 0..4 {
                    let k = (c + r) % 5;
                    let n = 1 + (c + r) % 2;
                    let texts: Vec<&str> = (0..n).map(|j| singles[(k + j) % 5]).collect();
                    let got = s.predict(&json!({ "texts": texts }));
                    assert_eq!(got.len(), n);
                    for (j, g) in got.iter().enumerate() {
                        close(g, &expected[(k + j) % 5]);
                    }
                }
            });
        }
    });
    let (r1, b1, e1) = s.stats();
    let examples: u64 = (0..16)
        .flat_map(|c| (0..4).map(move |r| 1 + ((c + r) % 2) as u64))
        .sum();
    assert_eq!(r1 - r0, 64);
    assert_eq!(e1 - e0, examples);
    assert!(b1 - b0 < 64, "{} batches for 64 requests", b1 - b0);

    let t = Instant::now();
    let status = s.stop(libc::SIGTERM);
    assert_eq!(status.code(), Some(0));
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
}

#[test]
fn serve_errors_are_json_with_their_status() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(
        &model(tmp.path(), 2),
        &["--max-body-bytes", "4096", "--max-texts", "8"],
    );
    let big = json!({ "texts": ["good film ".repeat(1000)] }).to_string();
    let nine = json!({ "texts": vec!["good"; 9] }).to_string();
    for (method, path, body, status, needle) in [
        (
            "POST",
            "/predict",
            "{\"texts\": [\"a\"",
            400,
            "not valid JSON",
        ),
        ("POST", "/predict", "", 400, "not valid JSON"),
        ("POST", "/predict", big.as_str(), 413, "--max-body-bytes"),
        ("POST", "/predict", nine.as_str(), 413, "--max-texts"),
        ("POST", "/predict", "{\"texts\": []}", 422, "empty"),
        // Blank inputs would get a label from the special tokens alone: refused, by index.
        (
            "POST",
            "/predict",
            "{\"texts\": [\"good\", \" \\n\"]}",
            422,
            "input 1: the text is empty or whitespace only",
        ),
        (
            "POST",
            "/predict",
            "{\"inputs\": [[\"good\"], [\"bad\", \"\"]]}",
            422,
            "input 1: the second text of the pair is empty",
        ),
        (
            "POST",
            "/predict",
            "{\"texts\": [1, 2]}",
            422,
            "invalid type",
        ),
        (
            "POST",
            "/predict",
            "{\"texts\": \"a\"}",
            422,
            "invalid type",
        ),
        ("POST", "/predict", "[\"a\"]", 422, "invalid type"),
        (
            "POST",
            "/predict",
            "{\"txt\": [\"a\"]}",
            422,
            "unknown field",
        ),
        ("POST", "/predict", "{}", 422, "`texts`"),
        (
            "POST",
            "/predict",
            "{\"texts\": [\"a\", \"b\"], \"text_pairs\": [\"c\"]}",
            422,
            "text_pairs",
        ),
        (
            "POST",
            "/predict",
            "{\"text\": \"a\", \"texts\": [\"b\"]}",
            422,
            "not both",
        ),
        ("GET", "/predict", "", 405, "method"),
        ("GET", "/nowhere", "", 404, "no such route"),
    ] {
        let body = (method == "POST").then_some(body);
        let (got, v) = s.call(method, path, body);
        assert_eq!(got, status, "{method} {path} {body:?}: {v}");
        let msg = v["error"].as_str().unwrap_or_else(|| panic!("{v}"));
        assert!(msg.contains(needle), "{method} {path} {body:?}: {msg}");
    }
    // Still serving after all that; then SIGINT ends it cleanly too.
    assert_eq!(s.predict(&json!({"text": "good"})).len(), 1);
    assert_eq!(s.stop(libc::SIGINT).code(), Some(0));
}

#[test]
fn serve_regression_finishes_in_flight_requests_and_refuses_a_model_without_a_head() {
    let tmp = tempfile::tempdir().unwrap();
    // A long batching wait keeps the request in flight while SIGTERM arrives: it is still answered.
    let s = Server::start(&model(tmp.path(), 1), &["--max-wait-ms", "1000"]);
    let t = Instant::now();
    let got = std::thread::scope(|scope| {
        let pending = scope.spawn(|| s.predict(&json!({"texts": ["good film", "bad film"]})));
        std::thread::sleep(Duration::from_millis(300));
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(s.child.id() as i32, libc::SIGTERM) }, 0);
        pending.join().unwrap()
    });
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "{:?}",
        t.elapsed()
    );
    for g in &got {
        assert!(g["score"].is_f64() && g.get("label").is_none(), "{g}");
        assert_eq!(g["logits"].as_array().unwrap().len(), 1);
    }
    assert_eq!(s.stop(0).code(), Some(0));

    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/tiny/teacher");
    let out = Command::new(common::server::BIN)
        .args(["serve", "--port", "0"])
        .arg(&root)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no classification head"), "{err}");
    assert!(out.stdout.is_empty());
}

#[test]
fn serve_speaks_text_embeddings_inference_and_prometheus() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&model(tmp.path(), 2), &["--max-len", "16"]);
    let logits = |text: &str, pair: Option<&str>| -> Vec<f64> {
        let body = match pair {
            Some(p) => json!({"text": text, "text_pair": p}),
            None => json!({"text": text}),
        };
        s.predict(&body)[0]["logits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()
    };
    // The scores text-embeddings-inference gives: softmax (or the raw logits), every label, best first.
    let expect = |l: &[f64], raw: bool| -> Vec<(String, f64)> {
        let z: f64 = l.iter().map(|x| x.exp()).sum();
        let mut v: Vec<(String, f64)> = l
            .iter()
            .enumerate()
            .map(|(k, x)| (k.to_string(), if raw { *x } else { x.exp() / z }))
            .collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1));
        v
    };
    let check = |got: &Value, want: &[(String, f64)]| {
        let got = got.as_array().unwrap();
        assert_eq!(got.len(), want.len(), "{got:?}");
        for (g, (label, score)) in got.iter().zip(want) {
            assert_eq!(g["label"], label.as_str(), "{got:?}");
            assert!(
                (g["score"].as_f64().unwrap() - score).abs() < 1e-5,
                "{got:?}"
            );
        }
    };
    let (status, v) = s.call("POST", "/predict", Some(r#"{"inputs": "a fine film"}"#));
    assert_eq!(status, 200, "{v}");
    check(&v, &expect(&logits("a fine film", None), false));
    let (_, v) = s.call(
        "POST",
        "/predict",
        Some(r#"{"inputs": ["a fine film", "dull"]}"#),
    );
    check(&v, &expect(&logits("a fine film", Some("dull")), false));
    let (status, v) = s.call(
        "POST",
        "/predict",
        Some(r#"{"inputs": [["a fine film"], ["good", "bad"]], "raw_scores": true}"#),
    );
    assert_eq!(status, 200, "{v}");
    check(&v[0], &expect(&logits("a fine film", None), true));
    check(&v[1], &expect(&logits("good", Some("bad")), true));
    // Past --max-len: an error unless truncation is asked for, as text-embeddings-inference does.
    let long = "the movie was good and ".repeat(10);
    let (status, v) = s.call(
        "POST",
        "/predict",
        Some(&json!({"inputs": long}).to_string()),
    );
    assert_eq!(status, 413, "{v}");
    assert!(v["error"].as_str().unwrap().contains("truncate"), "{v}");
    let (status, _) = s.call(
        "POST",
        "/predict",
        Some(&json!({"inputs": long, "truncate": true}).to_string()),
    );
    assert_eq!(status, 200);
    let (status, v) = s.call(
        "POST",
        "/predict",
        Some(r#"{"inputs": "a", "normalize": true}"#),
    );
    assert_eq!(status, 422, "{v}");

    // /metrics, read by a Prometheus text-format parser.
    let text = ureq::get(&format!("{}/metrics", s.url))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    let value = |name: &str, labels: &[(&str, &str)]| -> Option<prometheus_parse::Value> {
        scrape
            .samples
            .iter()
            .find(|x| x.metric == name && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
            .map(|x| x.value.clone())
    };
    let count = |v: Option<prometheus_parse::Value>| match v {
        Some(prometheus_parse::Value::Counter(c) | prometheus_parse::Value::Untyped(c)) => c,
        other => panic!("{other:?}\n{text}"),
    };
    // Eight /predict answers of 200 (four in our shape for the logits above, four in
    // text-embeddings-inference's), one 413, one 422.
    let ok = count(value(
        "distill_requests_total",
        &[("route", "/predict"), ("code", "200")],
    ));
    assert_eq!(ok, 8.0, "{text}");
    assert_eq!(
        count(value(
            "distill_requests_total",
            &[("route", "/predict"), ("code", "413")]
        )),
        1.0
    );
    assert_eq!(
        count(value(
            "distill_requests_total",
            &[("route", "/predict"), ("code", "422")]
        )),
        1.0
    );
    assert_eq!(
        count(value("distill_request_duration_seconds_count", &[])),
        10.0
    );
    match value("distill_request_duration_seconds", &[]) {
        Some(prometheus_parse::Value::Histogram(buckets)) => {
            assert_eq!(buckets.last().unwrap().count, 10.0, "{text}");
            assert!(
                buckets.windows(2).all(|w| w[0].count <= w[1].count),
                "{text}"
            );
        }
        other => panic!("{other:?}\n{text}"),
    }
    let forwards = count(value("distill_forwards_total", &[]));
    assert!(forwards >= 1.0, "{text}");
    assert_eq!(
        count(value("distill_batch_size_count", &[])),
        forwards,
        "{text}"
    );
    assert_eq!(count(value("distill_failed_forwards_total", &[])), 0.0);
    assert_eq!(s.stop(libc::SIGTERM).code(), Some(0));
}

#[test]
fn serve_runs_a_request_larger_than_max_batch_as_forwards_of_max_batch() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&model(tmp.path(), 2), &["--max-batch", "8"]);
    let texts: Vec<String> = (0..20).map(|k| sentence(k).0).collect();
    let got = s.predict(&json!({ "texts": texts }));
    assert_eq!(got.len(), 20);
    let (_, st) = s.call("GET", "/stats", None);
    // 8 + 8 + 4: one request, three forwards, none past --max-batch.
    assert_eq!(st["requests"], 1, "{st}");
    assert_eq!(st["batches"], 3, "{st}");
    assert_eq!(st["examples"], 20, "{st}");
    assert_eq!(st["largest_batch"], 8, "{st}");
    let text = ureq::get(&format!("{}/metrics", s.url))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    let sizes = scrape
        .samples
        .iter()
        .find(|x| x.metric == "distill_batch_size")
        .map(|x| x.value.clone());
    match sizes {
        Some(prometheus_parse::Value::Histogram(buckets)) => {
            let at = |le: f64| buckets.iter().find(|b| b.less_than == le).unwrap().count;
            assert_eq!(at(4.0), 1.0, "{text}");
            assert_eq!(at(8.0), 3.0, "{text}");
            assert_eq!(buckets.last().unwrap().count, 3.0, "{text}");
        }
        other => panic!("{other:?}\n{text}"),
    }
    // The same answers as each text alone.
    for (t, g) in texts.iter().zip(&got) {
        close(g, &s.predict(&json!({ "text": t }))[0]);
    }
    assert_eq!(s.stop(libc::SIGTERM).code(), Some(0));
}

/// An embedding run's export (configs/tiny-embedding.yaml) served on `/embed`: the same embeddings as
/// `distill embed`, text-embeddings-inference's request and answer shapes, and `/predict` refused.
#[test]
fn serve_embeds_as_distill_embed_does() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("emb");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let run = Command::new(common::server::BIN)
        .args(["-q", "run", "configs/tiny-embedding.yaml", "--set"])
        .arg(format!("output_dir={}", out.display()))
        .env("DISTILL_CACHE", "off")
        .current_dir(root)
        .output()
        .unwrap();
    assert!(run.status.success(), "{run:?}");
    let m = out.join("export");
    let texts = ["the film was great !", "Héllo Wörld, 日本語"];
    let cli = Command::new(common::server::BIN)
        .arg("embed")
        .arg(&m)
        .args(texts)
        .output()
        .unwrap();
    assert!(cli.status.success(), "{cli:?}");
    let expected: Vec<Value> = String::from_utf8(cli.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["embedding"].clone())
        .collect();

    let s = Server::start(&m, &["--max-len", "32"]);
    let (status, h) = s.call("GET", "/health", None);
    assert_eq!(status, 200);
    assert_eq!(h["task"], "embedding");
    assert_eq!(h["dimensions"], 32);
    let (status, got) = s.call(
        "POST",
        "/embed",
        Some(&json!({ "inputs": texts }).to_string()),
    );
    assert_eq!(status, 200, "{got}");
    let got = got.as_array().unwrap();
    assert_eq!(got.len(), 2);
    for (g, e) in got.iter().zip(&expected) {
        let (g, e) = (g.as_array().unwrap(), e.as_array().unwrap());
        assert_eq!(g.len(), e.len());
        for (a, b) in g.iter().zip(e) {
            assert!((a.as_f64().unwrap() - b.as_f64().unwrap()).abs() < 1e-5);
        }
    }
    // One text: still a list of lists, as text-embeddings-inference answers.
    let (status, one) = s.call("POST", "/embed", Some(r#"{"inputs": "the film"}"#));
    assert_eq!(status, 200);
    assert_eq!(one.as_array().unwrap().len(), 1);
    let long = json!({ "inputs": "good film ".repeat(40) }).to_string();
    let (status, e) = s.call("POST", "/embed", Some(&long));
    assert_eq!(status, 413, "{e}");
    let long = json!({ "inputs": "good film ".repeat(40), "truncate": true }).to_string();
    assert_eq!(s.call("POST", "/embed", Some(&long)).0, 200);
    let (status, e) = s.call("POST", "/predict", Some(r#"{"texts": ["a"]}"#));
    assert_eq!(status, 422);
    assert!(e["error"].as_str().unwrap().contains("/embed"), "{e}");
    assert_eq!(s.stop(libc::SIGTERM).code(), Some(0));
}
