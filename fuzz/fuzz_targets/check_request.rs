#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| verdict_fuzz::harness::check_request(data));
