//! The export's `tokenizer_config.json` says what its `tokenizer.json` does: transformers 5 rebuilds a
//! named tokenizer class from these arguments, so a wrong `do_lower_case` (the export of an uncased MPNet
//! tokenizer used to say `false`) turns every capital into `[UNK]`. tools/parity/ci.sh checks the same
//! exports against transformers itself on mixed-case, accented and non-Latin text.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use modeling::testutil::write_vocab;
use modeling::TextTokenizer;
use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/parity")
        .join(name)
}

/// Exports the fixture `model` with `tok` and reads back the export's tokenizer_config.json.
fn exported(model: &str, tok: &TextTokenizer) -> Value {
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("export");
    modeling::export::export(&fixture(model), tok, &dest).unwrap();
    let text = std::fs::read_to_string(dest.join("tokenizer_config.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn json_tok(name: &str, max_len: usize) -> TextTokenizer {
    TextTokenizer::from_file(&fixture(name).join("tokenizer.json"), max_len, false).unwrap()
}

#[test]
fn an_uncased_mpnet_tokenizer_is_exported_as_lower_casing() {
    let c = exported("mpnet_cls", &json_tok("mpnet_cls", 64));
    assert_eq!(c["tokenizer_class"], "MPNetTokenizerFast");
    assert_eq!(c["do_lower_case"], true, "{c}");
    assert_eq!(c["strip_accents"], Value::Null);
    assert_eq!(c["tokenize_chinese_chars"], true);
    // MPNet's vocabulary has both [PAD] and <pad>: its own are the angled ones.
    for (k, v) in [
        ("cls_token", "<s>"),
        ("sep_token", "</s>"),
        ("bos_token", "<s>"),
        ("eos_token", "</s>"),
        ("pad_token", "<pad>"),
        ("mask_token", "<mask>"),
        ("unk_token", "[UNK]"),
    ] {
        assert_eq!(c[k], v, "{k} in {c}");
    }
    assert_eq!(c["model_max_length"], 64);
}

#[test]
fn a_cased_bert_tokenizer_is_exported_as_cased() {
    // The template BertTokenizerFast writes, from a tokenizer.json.
    let c = exported("bert_cls", &json_tok("bert_cls", 128));
    assert_eq!(c["tokenizer_class"], "BertTokenizerFast");
    assert_eq!(c["do_lower_case"], false, "{c}");
    assert_eq!(
        (&c["cls_token"], &c["sep_token"]),
        (&"[CLS]".into(), &"[SEP]".into())
    );
    // And one built from a vocab.txt, cased and uncased.
    let dir = tempfile::tempdir().unwrap();
    let vocab = dir.path().join("vocab.txt");
    write_vocab(&vocab).unwrap();
    for lower in [false, true] {
        let tok = TextTokenizer::from_file(&vocab, 32, lower).unwrap();
        let c = exported("bert_cls", &tok);
        assert_eq!(c["tokenizer_class"], "BertTokenizerFast");
        assert_eq!(c["do_lower_case"], lower, "{c}");
    }
}

#[test]
fn a_byte_level_bpe_tokenizer_is_exported_as_roberta() {
    let c = exported("roberta_cls", &json_tok("roberta_cls", 64));
    assert_eq!(c["tokenizer_class"], "RobertaTokenizerFast");
    assert_eq!(c["add_prefix_space"], false);
    assert_eq!(c["trim_offsets"], true);
    assert!(c.get("do_lower_case").is_none(), "{c}");
    assert_eq!(
        (&c["cls_token"], &c["pad_token"]),
        (&"<s>".into(), &"<pad>".into())
    );
}

#[test]
fn a_pipeline_no_named_class_rebuilds_is_read_as_it_is() {
    // A WordPiece tokenizer with a normaliser BertTokenizerFast would not build (NFD + lower-case only).
    let mut t: Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("bert_cls").join("tokenizer.json")).unwrap(),
    )
    .unwrap();
    t["normalizer"] = serde_json::json!({"type": "Sequence", "normalizers": [{"type": "NFD"}, {"type": "Lowercase"}]});
    let c = modeling::tokenizer_config::tokenizer_config(&t, 128);
    assert_eq!(c["tokenizer_class"], "PreTrainedTokenizerFast");
    assert!(c.get("do_lower_case").is_none(), "{c}");
    assert_eq!(c["unk_token"], "[UNK]");
}

/// MPNet's vocabulary holds BERT's `[PAD]`, `[CLS]`, `[SEP]` and `[MASK]` as ordinary tokens beside the
/// `<pad>`, `<s>`, `</s>` and `<mask>` its tokenizer registers as special and really uses: the special
/// ones are the padding, start, end and mask ids.
#[test]
fn the_special_tokens_are_the_registered_ones_when_a_vocabulary_has_both_kinds() {
    let path = fixture("mpnet_cls").join("tokenizer.json");
    let mut t: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let vocab = t["model"]["vocab"].as_object_mut().unwrap();
    let first = vocab.len() as u64;
    for (k, tok) in (first..).zip(["[PAD]", "[CLS]", "[SEP]", "[MASK]"]) {
        vocab.insert(tok.into(), k.into());
    }
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("tokenizer.json");
    std::fs::write(&p, t.to_string()).unwrap();
    let tok = TextTokenizer::from_file(&p, 32, false).unwrap();
    let id = |s: &str| tok.token_to_id(s).unwrap();
    assert_eq!(tok.pad_id(), id("<pad>"));
    let sp = tok.special_tokens().unwrap();
    assert_eq!(
        (sp.cls, sp.sep, sp.mask),
        (id("<s>"), id("</s>"), id("<mask>"))
    );
    assert!(!sp.is_special(id("[CLS]")));
}
