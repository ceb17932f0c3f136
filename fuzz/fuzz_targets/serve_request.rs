//! `/predict` request bodies through `distill::serve::parse_request`, the parser `distill serve` runs on
//! every body: any bytes give either inputs within the limit or one of the documented statuses (400 for a
//! body that is not JSON, 413 for too many texts, 422 for JSON of the wrong shape) with a message.
#![no_main]

use libfuzzer_sys::fuzz_target;

const MAX_TEXTS: usize = 8;

fuzz_target!(|data: &[u8]| {
    match distill::serve::parse_request(data, MAX_TEXTS) {
        Ok(inputs) => assert!(!inputs.is_empty() && inputs.len() <= MAX_TEXTS),
        Err((status, message)) => {
            assert!([400, 413, 422].contains(&status), "{status}: {message}");
            assert!(!message.is_empty());
        }
    }
});
