//! The list-page decoder (`serde_json` then `ListPage::from_value`, as `StripeClient::list`
//! decodes a 2xx answer): any bytes are either a page holding exactly the objects sent, in
//! their order, or a `Decode` error with a short message.
#![no_main]

use cls_stripe::{ListPage, StripeError};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const FALLBACK: &str = "/v1/customers";

/// Longest error message a page may cause: messages end up in logs and in a run's stored
/// errors, so they must not grow with what a server sends.
const MAX_MESSAGE: usize = 300;

fuzz_target!(|body: &[u8]| {
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return;
    };
    match ListPage::from_value(value.clone(), FALLBACK) {
        Ok(page) => {
            let map = value.as_object().expect("only an object is a page");
            if let Some(object) = map.get("object") {
                assert_eq!(object, "list");
            }
            assert_eq!(Some(&Value::Array(page.data.clone())), map.get("data"));
            assert_eq!(Some(&Value::Bool(page.has_more)), map.get("has_more"));
            match map.get("url") {
                Some(Value::String(url)) => assert_eq!(&page.url, url),
                _ => assert_eq!(page.url, FALLBACK),
            }
        }
        Err(StripeError::Decode { message }) => {
            assert!(
                message.len() <= MAX_MESSAGE,
                "a {}-byte message",
                message.len()
            );
            assert!(!message.is_empty());
        }
        Err(other) => panic!("a page that is not a list is a Decode error, not {other:?}"),
    }
});
