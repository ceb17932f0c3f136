//! `/predict` request bodies through `distill::serve::parse_request`, the parser `distill serve` runs on
//! every body: any bytes give either inputs within the limit or one of the documented statuses (400 for a
//! body that is not JSON, 413 for too many texts, 422 for JSON of the wrong shape or a blank text) with a
//! message.
#![no_main]

use libfuzzer_sys::fuzz_target;

const MAX_TEXTS: usize = 8;

fuzz_target!(|data: &[u8]| {
    match distill::serve::parse_request(data, MAX_TEXTS) {
        Ok(inputs) => {
            assert!(!inputs.is_empty() && inputs.len() <= MAX_TEXTS);
            // Blank texts are refused (422), never classified.
            let blank = |t: &str| t.trim().is_empty();
            assert!(inputs
                .iter()
                .all(|(a, b)| !blank(a) && !b.as_deref().is_some_and(blank)));
        }
        Err((status, message)) => {
            assert!([400, 413, 422].contains(&status), "{status}: {message}");
            assert!(!message.is_empty());
        }
    }
});
