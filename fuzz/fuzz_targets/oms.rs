//! Arbitrary bytes as a delivery to the `oms` endpoint: verify, then inspect.
//! The input layout is described in `src/lib.rs`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use terima_core::Provider;

fuzz_target!(|data: &[u8]| terima_fuzz::run(Provider::Oms, data));
