//! Vocabulary transfer (Fast Vocabulary Transfer, Gee et al. 2022): a student with its own tokenizer
//! starts each word embedding from the teacher's. A token the teacher's vocabulary has keeps its row;
//! the special tokens take the teacher's of the same role (`[CLS]` the teacher's `<s>`); any other token
//! is the mean of the rows of the pieces the teacher's tokenizer makes of its text (a cased `Paris`
//! becomes the uncased teacher's `paris`; `##ing` its `##ing`, else the pieces of `ing`).

use modeling::select::VocabMap;
use modeling::TextTokenizer;

use crate::{Error, Result};

/// For each student token id, the teacher rows its embedding starts as the mean of.
pub fn vocab_map(student: &TextTokenizer, teacher: &TextTokenizer) -> Result<VocabMap> {
    let err =
        |e: modeling::Error| Error::Msg(format!("student.tokenizer: vocabulary transfer: {e}"));
    let (s, t) = (
        student.special_tokens().map_err(err)?,
        teacher.special_tokens().map_err(err)?,
    );
    let unk = |tok: &TextTokenizer| ["[UNK]", "<unk>"].iter().find_map(|u| tok.token_to_id(u));
    let roles = [
        (Some(s.cls), Some(t.cls)),
        (Some(s.sep), Some(t.sep)),
        (Some(s.pad), Some(t.pad)),
        (Some(s.mask), Some(t.mask)),
        (unk(student), unk(teacher)),
    ];
    let n = student.vocab_size();
    let mut map: VocabMap = vec![Vec::new(); n];
    let mut texts: Vec<(usize, String)> = Vec::new();
    for (id, rows) in map.iter_mut().enumerate() {
        let id32 = id as u32;
        if let Some((_, Some(tid))) = roles.iter().find(|(sid, _)| *sid == Some(id32)) {
            rows.push(*tid);
            continue;
        }
        let Some(token) = student.id_to_token(id32) else {
            continue;
        };
        if let Some(tid) = teacher.token_to_id(&token) {
            rows.push(tid);
            continue;
        }
        // The token as text: `##ing` -> `ing`, byte-level `Ġword` -> ` word`.
        let text = match token.strip_prefix("##") {
            Some(rest) if !rest.is_empty() => rest.to_string(),
            _ => student.decode(&[id32]).map_err(err)?,
        };
        texts.push((id, text));
    }
    let plain = teacher.plain().map_err(err)?;
    let words: Vec<String> = texts.iter().map(|(_, t)| t.clone()).collect();
    let pieces = plain.encode_batch(&words).map_err(err)?;
    let fallback = unk(teacher).unwrap_or(t.pad);
    for ((id, _), ids) in texts.into_iter().zip(pieces) {
        map[id] = if ids.is_empty() { vec![fallback] } else { ids };
    }
    Ok(map)
}
