//! The `tokenizer_config.json` of an export, read off the tokenizer it ships (its `tokenizer.json`), so
//! that transformers tokenizes exactly as distill does. transformers 5 builds the tokenizer of a named
//! class (`BertTokenizerFast`, `MPNetTokenizerFast`, `RobertaTokenizerFast`) anew from that class's
//! arguments, taking only the vocabulary and the post-processor from `tokenizer.json`: a `do_lower_case`
//! that says otherwise than the normaliser turns every capital into `[UNK]`. So each argument is written
//! from the pipeline itself (normaliser, pre-tokeniser, post-processor, special tokens), and a pipeline
//! that no named class rebuilds is declared `PreTrainedTokenizerFast`, which reads `tokenizer.json` as it
//! is.

use serde_json::{json, Map, Value};

/// The contents of `tokenizer_config.json` for the tokenizer whose serialisation is `tok` (the JSON of
/// `tokenizer.json`), truncating at `max_len` tokens.
pub fn tokenizer_config(tok: &Value, max_len: usize) -> Value {
    let model = &tok["model"];
    let vocab = &model["vocab"];
    let has = |t: &str| vocab.get(t).is_some() || added(tok, t);
    let post = &tok["post_processor"];
    // [CLS] A [SEP] / <s> A </s>: the tokens the post-processor itself writes.
    let (cls, sep) = match post["type"].as_str() {
        Some("BertProcessing" | "RobertaProcessing") => {
            (post["cls"][0].as_str(), post["sep"][0].as_str())
        }
        Some("TemplateProcessing") if bert_template(post).is_some() => {
            bert_template(post).map_or((None, None), |(c, s)| (Some(c), Some(s)))
        }
        _ => {
            let any = |names: [&'static str; 2]| names.into_iter().find(|t| has(t));
            (any(["[CLS]", "<s>"]), any(["[SEP]", "</s>"]))
        }
    };
    // MPNet's vocabulary has both [PAD] and <pad>: the family of the post-processor's tokens decides.
    let angled = cls.is_some_and(|c| c.starts_with('<'));
    let first = |names: [&'static str; 2]| {
        let order = if angled { [names[1], names[0]] } else { names };
        order.into_iter().find(|t| has(t))
    };
    let mut cfg = Map::new();
    let mut put = |k: &str, v: Value| {
        cfg.insert(k.to_string(), v);
    };
    put("model_max_length", json!(max_len));
    for (key, token) in [
        ("cls_token", cls),
        ("sep_token", sep),
        ("unk_token", model["unk_token"].as_str().filter(|t| has(t))),
        ("pad_token", first(["[PAD]", "<pad>"])),
        ("mask_token", first(["[MASK]", "<mask>"])),
    ] {
        if let Some(t) = token {
            put(key, json!(t));
        }
    }
    let norm = &tok["normalizer"];
    let pre = tok["pre_tokenizer"]["type"].as_str();
    // BertProcessing and the template BertTokenizerFast writes are one layout.
    let layout = match post["type"].as_str() {
        Some("TemplateProcessing") if bert_template(post).is_some() => Some("BertProcessing"),
        other => other,
    };
    let class = match (model["type"].as_str(), layout) {
        (Some("WordPiece"), Some(p))
            if norm["type"] == "BertNormalizer"
                && norm["clean_text"] == true
                && pre == Some("BertPreTokenizer")
                && (p == "BertProcessing" || p == "RobertaProcessing") =>
        {
            put("do_lower_case", norm["lowercase"].clone());
            put("strip_accents", norm["strip_accents"].clone());
            put(
                "tokenize_chinese_chars",
                norm["handle_chinese_chars"].clone(),
            );
            if p == "RobertaProcessing" {
                // MPNet's layout: <s> A </s></s> B </s>, one segment id.
                put("bos_token", json!(cls));
                put("eos_token", json!(sep));
                "MPNetTokenizerFast"
            } else {
                "BertTokenizerFast"
            }
        }
        (Some("BPE"), Some("RobertaProcessing"))
            if norm.is_null()
                && pre == Some("ByteLevel")
                && tok["decoder"]["type"] == "ByteLevel" =>
        {
            put(
                "add_prefix_space",
                tok["pre_tokenizer"]["add_prefix_space"].clone(),
            );
            put("trim_offsets", post["trim_offsets"].clone());
            put("bos_token", json!(cls));
            put("eos_token", json!(sep));
            "RobertaTokenizerFast"
        }
        _ => "PreTrainedTokenizerFast",
    };
    put("tokenizer_class", json!(class));
    Value::Object(cfg)
}

/// The `[CLS]` and `[SEP]` of a template that writes `CLS A SEP` and `CLS A SEP B SEP` with segment ids
/// 0 and 1, as `BertTokenizerFast` does; None for any other template.
fn bert_template(post: &Value) -> Option<(&str, &str)> {
    let item = |v: &Value| -> Option<(bool, String, u64)> {
        let (special, inner) = match (v.get("SpecialToken"), v.get("Sequence")) {
            (Some(t), None) => (true, t),
            (None, Some(t)) => (false, t),
            _ => return None,
        };
        Some((
            special,
            inner["id"].as_str()?.to_string(),
            inner["type_id"].as_u64()?,
        ))
    };
    let items = |k: &str| -> Option<Vec<(bool, String, u64)>> {
        post[k].as_array()?.iter().map(item).collect()
    };
    let (single, pair) = (items("single")?, items("pair")?);
    let [(true, cls, 0), (false, a, 0), (true, sep, 0)] = single.as_slice() else {
        return None;
    };
    let want = [
        (true, cls.clone(), 0),
        (false, a.clone(), 0),
        (true, sep.clone(), 0),
        (false, "B".to_string(), 1),
        (true, sep.clone(), 1),
    ];
    if a != "A" || pair != want {
        return None;
    }
    let tokens = post["special_tokens"].as_object()?;
    Some((
        tokens.get(cls)?["id"].as_str()?,
        tokens.get(sep)?["id"].as_str()?,
    ))
}

/// Whether `token` is one of the tokenizer's added tokens.
fn added(tok: &Value, token: &str) -> bool {
    tok["added_tokens"]
        .as_array()
        .is_some_and(|a| a.iter().any(|t| t["content"] == token))
}
