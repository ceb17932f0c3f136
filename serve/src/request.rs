//! What `/predict` accepts and answers. Two request shapes, told apart by their keys:
//!
//! - ours: `{"texts": [..], "text_pairs": [..]}` or `{"text": .., "text_pair": ..}`, answered with
//!   `{"predictions": [{label, label_id, score, logits}, ..]}` (`distill predict`'s objects); inputs past
//!   `--max-len` are truncated;
//! - text-embeddings-inference's (`router/src/http/types.rs`, `PredictRequest`): `{"inputs": X, "truncate":
//!   bool, "raw_scores": bool}` where X is a text, a pair `[a, b]`, or a batch of either `[[a], [a, b], ..]`;
//!   answered, as its router does, with every label and its score sorted best first, for one input a list
//!   and for a batch a list of lists. Scores are softmax probabilities (a sigmoid for a one-output model)
//!   or, with `raw_scores`, the logits; an input longer than `--max-len` is an error unless `truncate`.
//!
//! `/embed` takes text-embeddings-inference's `EmbedRequest`: `{"inputs": X, "truncate": bool, "normalize":
//! bool}` where X is a text or a list of texts (its defaults: no truncation, normalised), answered with a
//! list of embeddings, one per input.
//!
//! Unknown keys are refused in every shape (422), as are malformed inputs and an input (or second text of
//! a pair) that is empty or whitespace only, named by its index from 0 (text-embeddings-inference refuses
//! empty inputs too); a body that is not JSON is 400; more than `--max-texts` inputs is 413.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use inference::{blank_part, prediction};

/// The inputs of one request: texts, each with its pair's second text if any.
pub type Inputs = Vec<(String, Option<String>)>;

/// An error response: the status and `{"error": message}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    pub fn unprocessable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }
}

/// How a request came, and so how it is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// `texts`/`text`: `{"predictions": [..]}`, always truncated.
    Ours,
    /// text-embeddings-inference with one input (a text or a pair): one list of label scores.
    TeiSingle { truncate: bool, raw_scores: bool },
    /// text-embeddings-inference with a batch: a list of such lists.
    TeiBatch { truncate: bool, raw_scores: bool },
}

impl Shape {
    /// Whether inputs past `--max-len` may be cut (else they are an error).
    pub fn truncates(&self) -> bool {
        match *self {
            Shape::Ours => true,
            Shape::TeiSingle { truncate, .. } | Shape::TeiBatch { truncate, .. } => truncate,
        }
    }
}

/// A parsed `/predict` body.
#[derive(Debug)]
pub struct Request {
    pub inputs: Inputs,
    pub shape: Shape,
}

/// Our own shape.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OwnRequest {
    texts: Option<Vec<String>>,
    text_pairs: Option<Vec<Option<String>>>,
    text: Option<String>,
    text_pair: Option<String>,
}

/// text-embeddings-inference's shape (its defaults: no truncation, probabilities).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TeiRequest {
    inputs: Value,
    #[serde(default)]
    truncate: bool,
    #[serde(default)]
    raw_scores: bool,
}

/// Parses a `/predict` body and checks it against `max_texts`.
pub fn parse(body: &[u8], max_texts: usize) -> Result<Request, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("body is not valid JSON: {e}"),
        )
    })?;
    let invalid = |e: serde_json::Error| ApiError::unprocessable(format!("invalid request: {e}"));
    let tei = value.as_object().is_some_and(|o| o.contains_key("inputs"));
    let request = if tei {
        let r: TeiRequest = serde_json::from_value(value).map_err(invalid)?;
        let (inputs, batch) = tei_inputs(r.inputs)?;
        let (truncate, raw_scores) = (r.truncate, r.raw_scores);
        Request {
            inputs,
            shape: if batch {
                Shape::TeiBatch {
                    truncate,
                    raw_scores,
                }
            } else {
                Shape::TeiSingle {
                    truncate,
                    raw_scores,
                }
            },
        }
    } else {
        let r: OwnRequest = serde_json::from_value(value).map_err(invalid)?;
        Request {
            inputs: own_inputs(r)?,
            shape: Shape::Ours,
        }
    };
    if request.inputs.is_empty() {
        return Err(ApiError::unprocessable("no inputs: the batch is empty"));
    }
    if request.inputs.len() > max_texts {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "{} texts in one request; the limit is {max_texts} (--max-texts)",
                request.inputs.len()
            ),
        ));
    }
    for (i, (text, pair)) in request.inputs.iter().enumerate() {
        if let Some(part) = blank_part(text, pair.as_deref()) {
            return Err(ApiError::unprocessable(format!(
                "input {i}: the {part} is empty or whitespace only; there is nothing to classify"
            )));
        }
    }
    Ok(request)
}

/// A parsed `/embed` body.
#[derive(Debug, PartialEq)]
pub struct EmbedRequest {
    pub inputs: Vec<String>,
    pub truncate: bool,
    pub normalize: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TeiEmbed {
    inputs: Value,
    #[serde(default)]
    truncate: bool,
    #[serde(default = "yes")]
    normalize: bool,
}

fn yes() -> bool {
    true
}

/// Parses an `/embed` body and checks it against `max_texts`.
pub fn parse_embed(body: &[u8], max_texts: usize) -> Result<EmbedRequest, ApiError> {
    let r: TeiEmbed = serde_json::from_slice::<Value>(body)
        .map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("body is not valid JSON: {e}"),
            )
        })
        .and_then(|v| {
            serde_json::from_value(v)
                .map_err(|e| ApiError::unprocessable(format!("invalid request: {e}")))
        })?;
    const EXPECTED: &str = "`inputs`: expected a string or a list of strings";
    let inputs: Vec<String> = match r.inputs {
        Value::String(s) => vec![s],
        Value::Array(items) => items
            .into_iter()
            .map(|v| match v {
                Value::String(s) => Ok(s),
                _ => Err(ApiError::unprocessable(EXPECTED)),
            })
            .collect::<Result<_, _>>()?,
        _ => return Err(ApiError::unprocessable(EXPECTED)),
    };
    if inputs.is_empty() {
        return Err(ApiError::unprocessable("no inputs: the batch is empty"));
    }
    if inputs.len() > max_texts {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "{} texts in one request; the limit is {max_texts} (--max-texts)",
                inputs.len()
            ),
        ));
    }
    if let Some(i) = inputs.iter().position(|t| t.trim().is_empty()) {
        return Err(ApiError::unprocessable(format!(
            "input {i}: the text is empty or whitespace only; there is nothing to embed"
        )));
    }
    Ok(EmbedRequest {
        inputs,
        truncate: r.truncate,
        normalize: r.normalize,
    })
}

fn own_inputs(r: OwnRequest) -> Result<Inputs, ApiError> {
    Ok(match (r.texts, r.text_pairs, r.text, r.text_pair) {
        (Some(texts), pairs, None, None) => {
            let pairs = pairs.unwrap_or_else(|| vec![None; texts.len()]);
            if pairs.len() != texts.len() {
                return Err(ApiError::unprocessable(format!(
                    "`text_pairs` has {} entries but `texts` has {}",
                    pairs.len(),
                    texts.len()
                )));
            }
            texts.into_iter().zip(pairs).collect()
        }
        (None, None, Some(text), pair) => vec![(text, pair)],
        (None, Some(_), _, _) => return Err(ApiError::unprocessable("`text_pairs` needs `texts`")),
        (None, None, None, Some(_)) => {
            return Err(ApiError::unprocessable("`text_pair` needs `text`"))
        }
        (None, None, None, None) => {
            return Err(ApiError::unprocessable(
                "give `texts` (a list of strings), `text` (one string) or `inputs` (text-embeddings-inference)",
            ))
        }
        _ => {
            return Err(ApiError::unprocessable(
                "give either `texts`/`text_pairs` or `text`/`text_pair`, not both",
            ))
        }
    })
}

/// text-embeddings-inference's `inputs`, as its router reads them: a string; `[a]` or `[a, b]` (one text or
/// a pair); or a batch `[[a], [a, b], ..]`. Returns the inputs and whether they were a batch.
fn tei_inputs(v: Value) -> Result<(Inputs, bool), ApiError> {
    const EXPECTED: &str =
        "`inputs`: expected a string, a pair of strings [string, string] or a batch of \
                            mixed strings and pairs [[string], [string, string], ...]";
    let sequence = |items: &[Value]| -> Result<(String, Option<String>), ApiError> {
        let text = |v: &Value| v.as_str().map(str::to_string);
        match items {
            [a] => Ok((
                text(a).ok_or_else(|| ApiError::unprocessable(EXPECTED))?,
                None,
            )),
            [a, b] => match (text(a), text(b)) {
                (Some(a), Some(b)) => Ok((a, Some(b))),
                _ => Err(ApiError::unprocessable(EXPECTED)),
            },
            _ => Err(ApiError::unprocessable(format!(
                "{EXPECTED}; got a sequence of {} strings",
                items.len()
            ))),
        }
    };
    match v {
        Value::String(s) => Ok((vec![(s, None)], false)),
        Value::Array(items) => match items.first() {
            None => Err(ApiError::unprocessable(format!(
                "{EXPECTED}; got an empty list"
            ))),
            Some(Value::String(_)) => Ok((vec![sequence(&items)?], false)),
            Some(Value::Array(_)) => {
                let batch = items
                    .iter()
                    .map(|item| match item {
                        Value::Array(seq) => sequence(seq),
                        _ => Err(ApiError::unprocessable(EXPECTED)),
                    })
                    .collect::<Result<Inputs, _>>()?;
                Ok((batch, true))
            }
            Some(_) => Err(ApiError::unprocessable(EXPECTED)),
        },
        _ => Err(ApiError::unprocessable(EXPECTED)),
    }
}

/// The answer to `request` from its logit rows (one per input, in order).
pub fn answer(shape: Shape, rows: &[Vec<f32>], labels: &[String]) -> Value {
    match shape {
        Shape::Ours => {
            let predictions: Vec<Value> = rows.iter().map(|r| prediction(r, labels)).collect();
            json!({ "predictions": predictions })
        }
        Shape::TeiSingle { raw_scores, .. } => rows
            .first()
            .map_or(json!([]), |r| label_scores(r, labels, raw_scores)),
        Shape::TeiBatch { raw_scores, .. } => Value::Array(
            rows.iter()
                .map(|r| label_scores(r, labels, raw_scores))
                .collect(),
        ),
    }
}

/// `[{"score": s, "label": l}, ..]` for every label, best first: softmax probabilities (a sigmoid for one
/// output), or the logits with `raw`.
fn label_scores(row: &[f32], labels: &[String], raw: bool) -> Value {
    let scores: Vec<f32> = if raw {
        row.to_vec()
    } else if row.len() == 1 {
        vec![1.0 / (1.0 + (-row[0]).exp())]
    } else {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let exp: Vec<f32> = row.iter().map(|x| (x - max).exp()).collect();
        let sum: f32 = exp.iter().sum();
        exp.iter().map(|e| e / sum).collect()
    };
    let mut out: Vec<(f32, String)> = scores
        .into_iter()
        .enumerate()
        .map(|(k, s)| (s, labels.get(k).cloned().unwrap_or_else(|| k.to_string())))
        .collect();
    out.sort_by(|a, b| b.0.total_cmp(&a.0));
    Value::Array(
        out.into_iter()
            .map(|(score, label)| json!({"score": score, "label": label}))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(body: &str) -> Result<(Inputs, Shape), u16> {
        parse(body.as_bytes(), 8)
            .map(|r| (r.inputs, r.shape))
            .map_err(|e| e.status.as_u16())
    }

    #[test]
    fn text_embeddings_inference_inputs_read_as_its_router_reads_them() {
        let one = |a: &str| (a.to_string(), None);
        let pair = |a: &str, b: &str| (a.to_string(), Some(b.to_string()));
        let single = Shape::TeiSingle {
            truncate: false,
            raw_scores: false,
        };
        assert_eq!(inputs(r#"{"inputs": "a"}"#), Ok((vec![one("a")], single)));
        assert_eq!(inputs(r#"{"inputs": ["a"]}"#), Ok((vec![one("a")], single)));
        assert_eq!(
            inputs(r#"{"inputs": ["a", "b"]}"#),
            Ok((vec![pair("a", "b")], single))
        );
        assert_eq!(
            inputs(r#"{"inputs": [["a"], ["b", "c"]], "truncate": true, "raw_scores": true}"#),
            Ok((
                vec![one("a"), pair("b", "c")],
                Shape::TeiBatch {
                    truncate: true,
                    raw_scores: true
                }
            ))
        );
        for bad in [
            r#"{"inputs": ["a", "b", "c"]}"#,
            r#"{"inputs": []}"#,
            r#"{"inputs": [["a", "b", "c"]]}"#,
            r#"{"inputs": [["a"], "b"]}"#,
            r#"{"inputs": 3}"#,
            r#"{"inputs": "a", "normalize": true}"#,
            r#"{"inputs": "a", "texts": ["b"]}"#,
        ] {
            assert_eq!(inputs(bad).map(|_| ()), Err(422), "{bad}");
        }
        assert_eq!(inputs("{not json").map(|_| ()), Err(400));
        let nine = format!(r#"{{"inputs": [{}]}}"#, [r#"["a"]"#; 9].join(","));
        assert_eq!(inputs(&nine).map(|_| ()), Err(413));
    }

    #[test]
    fn blank_inputs_are_refused_by_their_index() {
        for (body, needle) in [
            (r#"{"texts": ["good", "  "]}"#, "input 1: the text is empty"),
            (r#"{"texts": [""]}"#, "input 0: the text is empty"),
            (
                r#"{"texts": ["a", "b"], "text_pairs": [null, "\t "]}"#,
                "input 1: the second text of the pair is empty",
            ),
            (
                r#"{"text": "a", "text_pair": ""}"#,
                "input 0: the second text",
            ),
            (r#"{"inputs": " \n"}"#, "input 0: the text is empty"),
            (
                r#"{"inputs": [["a"], ["b", "c"], [""]]}"#,
                "input 2: the text",
            ),
        ] {
            let e = parse(body.as_bytes(), 8).unwrap_err();
            assert_eq!(e.status.as_u16(), 422, "{body}");
            assert!(e.message.contains(needle), "{body}: {}", e.message);
        }
        // A text with something in it besides whitespace is fine, however short.
        assert!(parse(br#"{"texts": [" a "]}"#, 8).is_ok());
    }

    #[test]
    fn embed_requests_read_as_text_embeddings_inference_reads_them() {
        let parse = |b: &str| parse_embed(b.as_bytes(), 2).map_err(|e| e.status.as_u16());
        let one = parse(r#"{"inputs": "a"}"#).unwrap();
        assert_eq!(
            (one.inputs, one.truncate, one.normalize),
            (vec!["a".to_string()], false, true)
        );
        let two = parse(r#"{"inputs": ["a", "b"], "truncate": true, "normalize": false}"#).unwrap();
        assert_eq!(
            (two.inputs.len(), two.truncate, two.normalize),
            (2, true, false)
        );
        for (bad, status) in [
            (r#"{"inputs": []}"#, 422),
            (r#"{"inputs": [["a"]]}"#, 422),
            (r#"{"inputs": 3}"#, 422),
            (r#"{"inputs": "a", "dimensions": 8}"#, 422),
            (r#"{"inputs": ["a", " "]}"#, 422),
            (r#"{"inputs": ["a", "b", "c"]}"#, 413),
            ("{oops", 400),
        ] {
            assert_eq!(parse(bad).map(|_| ()), Err(status), "{bad}");
        }
    }

    #[test]
    fn label_scores_are_sorted_probabilities_or_logits() {
        let labels = ["neg".to_string(), "pos".to_string()];
        let v = label_scores(&[0.0, 2.0], &labels, false);
        assert_eq!(v[0]["label"], "pos");
        let p = v[0]["score"].as_f64().unwrap();
        assert!((p - 1.0 / (1.0 + (-2.0f64).exp())).abs() < 1e-6, "{v}");
        let raw = label_scores(&[0.0, 2.0], &labels, true);
        assert_eq!(raw[0]["score"], 2.0);
        assert_eq!(raw[1]["score"], 0.0);
        // One output: a sigmoid, as text-embeddings-inference does.
        let one = label_scores(&[0.0], &["LABEL_0".to_string()], false);
        assert_eq!(one[0]["score"], 0.5);
    }
}
